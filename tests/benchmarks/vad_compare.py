"""Compare the VADs (energy vs Silero): speech found on clean corpus clips, false speech on noise, music and
babble, the voice reliability of clean clips, and each VAD's real-time factor on one core.

Usage::

    python tests/benchmarks/vad_compare.py [--vads energy,silero] [--every 10] [--seconds 60] [--json OUT]

* **Speech found** (RAVDESS actors 01-20 and TESS from ``../shared/datasets``, every ``--every``-th clip): the
  share of clips :meth:`VoiceAnalyzer.classify_clip` finds speech in (a clip counts when it holds at least
  ``min_speech_s`` of speech), the share of each clip's frames marked speech, the same with white noise and
  babble added at 10 dB and 0 dB SNR, and the **voice reliability** of the clean clips' results (mean and
  median: what fusion weighs the voice with), from ``classify_clip`` and from the final results of each clip
  streamed through ``push``/``flush`` (what a live pipeline fuses).
* **False speech** on ``--seconds`` of synthesised non-speech, streamed in 100 ms chunks through a
  :class:`VoiceAnalyzer` with the default settings: white and pink noise (steady and as bursts after
  silence), music (additive-synthesis chords with note changes, a plucked melody with vibrato), and babble
  (8 overlapped corpus speakers, what a crowd sounds like from a distance). Reported: the share of frames
  marked speech and the utterances emitted per minute (each would be classified and fused as a voice).
* **RTF** of each VAD alone on one core (BLAS threads pinned to 1): 60 s of speech scored in the batches
  the analyzer uses (8 frames), best of 3.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # one core, before numpy loads BLAS
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "sdk"))

from affectlite import audio_features as af  # noqa: E402
from affectlite.options import VoiceOptions  # noqa: E402
from affectlite.vad import create_vad  # noqa: E402
from affectlite.voice import VoiceAnalyzer, VoiceEmotionClassifier  # noqa: E402

SR = 16000
DATA = Path(os.environ.get("AFFECTLITE_DATASETS", ROOT.parent / "shared" / "datasets"))


def _coloured(power: float, n: int, rng: np.random.Generator, rms: float) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / SR)
    spec[1:] /= f[1:] ** (power / 2)
    spec[0] = 0
    x = np.fft.irfft(spec, n)
    return (x * (rms / x.std())).astype(np.float32)


def _music(seconds: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    n = int(seconds * SR)
    t = np.arange(n) / SR
    # chords: root-position triads, 8 harmonics with 1/k amplitude, a new chord every 0.5-1.5 s
    chords = np.zeros(n)
    pos = 0
    while pos < n:
        dur = int(rng.uniform(0.5, 1.5) * SR)
        root = 110.0 * 2 ** (rng.integers(0, 24) / 12)
        seg = np.arange(min(dur, n - pos)) / SR
        env = np.minimum(1.0, seg / 0.02) * np.exp(-seg / 1.2)
        for semis in (0, 4, 7):
            f0 = root * 2 ** (semis / 12)
            for k in range(1, 9):
                if f0 * k < 7000:
                    chords[pos:pos + seg.size] += env * np.sin(2 * np.pi * f0 * k * seg + rng.uniform(0, 6.3)) / k
        pos += dur
    # plucked melody with vibrato (5.5 Hz, +-1.5 %), notes of 0.15-0.6 s
    melody = np.zeros(n)
    pos = 0
    while pos < n:
        dur = int(rng.uniform(0.15, 0.6) * SR)
        f0 = 220.0 * 2 ** (rng.integers(0, 24) / 12)
        seg = np.arange(min(dur, n - pos)) / SR
        phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.015 * np.sin(2 * np.pi * 5.5 * seg))) / SR
        env = np.minimum(1.0, seg / 0.01) * np.exp(-seg / 0.3)
        melody[pos:pos + seg.size] = env * sum(np.sin(k * phase) / k ** 1.5 for k in range(1, 7))
        pos += dur
    del t
    return {"music: chords": (0.1 * chords / chords.std()).astype(np.float32),
            "music: melody": (0.1 * melody / melody.std()).astype(np.float32)}


def _clips(every: int) -> dict[str, list[Path]]:
    out = {"RAVDESS": sorted((DATA / "ravdess-speech-16k").glob("Actor_*/*.flac"))[::every],
           "TESS": sorted((DATA / "tess-16k").glob("*/*.ogg"))[::every * 2]}
    return {k: v for k, v in out.items() if v}


def _babble(seconds: float, rng: np.random.Generator, talkers: int = 8) -> np.ndarray:
    files = sorted((DATA / "ravdess-speech-16k").glob("Actor_*/*.flac"))
    n = int(seconds * SR)
    out = np.zeros(n)
    for _ in range(talkers):  # each talker: clips of one speaker back to back from a random offset
        actor = int(rng.integers(1, 21))
        own = [f for f in files if f.parent.name == f"Actor_{actor:02d}"]
        stream = np.concatenate([af.load_audio(own[int(i)], SR) for i in rng.integers(0, len(own), 40)])
        stream = np.roll(np.resize(stream, n), int(rng.integers(0, n)))
        out += stream / (stream.std() + 1e-9)
    return (0.05 * out / out.std()).astype(np.float32)


def _add(x: np.ndarray, noise: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    a = int(rng.integers(0, noise.size - x.size))
    nz = noise[a:a + x.size]
    p_x = float(np.mean(x[np.abs(x) > 0.1 * np.abs(x).max()] ** 2))  # speech power (not counting silence)
    y = x + nz * np.sqrt(p_x / (np.mean(nz ** 2) * 10 ** (snr_db / 10)))
    return np.clip(y, -1.0, 1.0).astype(np.float32)


_SENTENCES = [
    "The weather is lovely today.", "Shall we walk down to the river after lunch?",
    "I can't believe you forgot my birthday again.", "Please put the blue box on the top shelf.",
    "We will arrive at nine in the morning.", "Nobody told me the meeting had been cancelled.",
    "Turn left at the second traffic light.", "That was the best concert I have ever seen.",
    "Could you repeat the last number, please?", "The children are playing in the garden.",
]


def _espeak_track(seconds: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray] | None:
    """espeak-ng sentences at known places between 1-3 s gaps: the track and its per-sample speech mask
    (from the first to the last sample above 1 % of the utterance's peak: pauses inside a sentence count as
    speech)."""
    exe = shutil.which("espeak-ng") or shutil.which("espeak")
    if exe is None:
        return None
    utts = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, text in enumerate(_SENTENCES):
            out = Path(tmp) / f"{i}.wav"
            subprocess.run([exe, "-s", str(140 + 10 * (i % 4)), "-w", str(out), text], check=True,
                           capture_output=True, timeout=60)
            y = af.load_audio(out, SR)
            on = np.flatnonzero(np.abs(y) > 0.01 * np.abs(y).max())
            utts.append(0.3 * y[on[0]:on[-1] + 1] / np.abs(y).max())
    n = int(seconds * SR)
    x = np.zeros(n, np.float32)
    mask = np.zeros(n, bool)
    pos = int(rng.uniform(1, 3) * SR)
    k = 0
    while pos + utts[k % len(utts)].size < n:
        u = utts[k % len(utts)]
        x[pos:pos + u.size] = u
        mask[pos:pos + u.size] = True
        pos += u.size + int(rng.uniform(1, 3) * SR)
        k += 1
    return x, mask


def _frame_scores(vad_name: str, x: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Frame recall inside the utterances and false alarms outside (0.2 s after each utterance not counted)."""
    v = create_vad(vad_name)
    fl = v.frame_length
    n = x.size // fl
    speech = v.process(x[:n * fl].reshape(n, fl)) >= 0.5
    truth = mask[:n * fl].reshape(n, fl).mean(axis=1) >= 0.5
    guard = truth.copy()
    g = int(0.2 * SR / fl)
    for i in np.flatnonzero(truth):
        guard[i:i + g + 1] = True
    return {"recall": round(float(speech[truth].mean()), 4), "false_alarm": round(float(speech[~guard].mean()), 4)}


def _frames_speech(vad_name: str, x: np.ndarray) -> float:
    v = create_vad(vad_name)
    fl = v.frame_length
    n = x.size // fl
    return float((v.process(x[:n * fl].reshape(n, fl)) >= 0.5).mean()) if n else 0.0


def _stream(an: VoiceAnalyzer, x: np.ndarray) -> tuple[int, float | None]:
    """Utterances (final results) emitted, and the mean reliability of all results."""
    res = []
    for i in range(0, x.size, 1600):
        res += an.push(x[i:i + 1600], i * 62500)
    res += an.flush()
    rel = [r.reliability for r in res]
    return sum(r.is_final for r in res), (round(float(np.mean(rel)), 4) if rel else None)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--vads", default="energy,silero")
    ap.add_argument("--every", type=int, default=10, help="every N-th RAVDESS clip (TESS: every 2N-th)")
    ap.add_argument("--seconds", type=float, default=60.0, help="seconds of each non-speech signal")
    ap.add_argument("--json", default="")
    args = ap.parse_args(argv)
    vads = args.vads.split(",")
    rng = np.random.default_rng(0)
    clf = VoiceEmotionClassifier.create(None)
    analyzers = {v: VoiceAnalyzer(VoiceOptions(vad=v), classifier=clf) for v in vads}
    out: dict[str, object] = {"model": clf.card.name, "vads": vads}

    n_noise = int(args.seconds * SR)
    white = _coloured(0.0, n_noise, rng, 0.05)
    babble = _babble(args.seconds, rng) if (DATA / "ravdess-speech-16k").is_dir() else None

    # ---- speech found, reliability of clean clips
    speech: dict[str, dict[str, object]] = {}
    for corpus, files in _clips(args.every).items():
        row: dict[str, object] = {"clips": len(files)}
        audio = [np.clip(af.load_audio(f, SR), -1.0, 1.0) for f in files]  # Opus decoding can overshoot 1
        for v in vads:
            an = analyzers[v]
            res = [an.classify_clip(x, SR) for x in audio]
            rel = [r.reliability for r in res if r is not None]
            finals = [r.reliability for x in audio for r in an.push(x, 0) + an.flush() if r.is_final]  # streamed
            row[v] = {
                "clips_found": round(sum(r is not None for r in res) / len(res), 4),
                "frames_speech": round(float(np.mean([_frames_speech(v, x) for x in audio])), 4),
                "reliability_mean": round(float(np.mean(rel)), 4) if rel else None,
                "reliability_median": round(float(np.median(rel)), 4) if rel else None,
                "speech_s_mean": round(float(np.mean([r.speech_s for r in res if r is not None])), 3) if rel else None,
                "stream_utterances_per_clip": round(len(finals) / len(audio), 3),
                "stream_reliability_mean": round(float(np.mean(finals)), 4) if finals else None,
            }
            for noise_name, noise in (("white", white), ("babble", babble)):
                if noise is None:
                    continue
                for snr in (10, 0):
                    noisy = [_add(x, noise, snr, rng) for x in audio]
                    found = [an.classify_clip(x, SR) is not None for x in noisy]
                    row[v][f"found_{noise_name}_{snr}dB"] = round(float(np.mean(found)), 4)  # type: ignore[index]
        speech[corpus] = row
        print(corpus, json.dumps(row), flush=True)
    out["speech"] = speech

    # ---- false speech on non-speech
    signals: dict[str, np.ndarray] = {
        "white noise": white,
        "pink noise": _coloured(1.0, n_noise, rng, 0.05),
        "white bursts after silence": np.concatenate(
            [np.concatenate([np.zeros(SR, np.float32), _coloured(0.0, 4 * SR, rng, 0.1)])
             for _ in range(max(1, int(args.seconds // 5)))]),
        **_music(args.seconds, rng),
    }
    if babble is not None:
        signals["babble (8 talkers)"] = babble
    false: dict[str, dict[str, dict[str, float]]] = {}
    for name, x in signals.items():
        false[name] = {}
        for v in vads:
            finals, rel = _stream(analyzers[v], x)
            false[name][v] = {"frames_speech": round(_frames_speech(v, x), 4),
                              "utterances_per_min": round(finals * 60 * SR / x.size, 2),
                              "reliability_mean": rel}  # type: ignore[dict-item]
        print(name, json.dumps(false[name]), flush=True)
    out["non_speech"] = false

    # ---- frame level, against known placement: espeak-ng sentences between gaps, clean and mixed at 10 dB
    track = _espeak_track(args.seconds, rng)
    if track is not None:
        x, mask = track
        frame: dict[str, dict[str, dict[str, float]]] = {}
        backgrounds = {"silence": None, "pink noise": signals["pink noise"], "music: chords": signals["music: chords"],
                       "babble (8 talkers)": babble}
        for bname, bg in backgrounds.items():
            for snr in ((None,) if bg is None else (10, 0)):
                if bname != "silence" and bg is None:
                    continue
                label = bname if snr is None else f"{bname}, {snr} dB SNR"
                if bg is None:
                    y = x
                else:
                    gain = np.sqrt(np.mean(x[mask] ** 2) / (np.mean(bg ** 2) * 10 ** (snr / 10)))
                    y = np.clip(x + gain * np.resize(bg, x.size), -1, 1).astype(np.float32)
                frame[label] = {v: _frame_scores(v, y, mask) for v in vads}
                print(label, json.dumps(frame[label]), flush=True)
        out["espeak_frames"] = frame

    # ---- RTF of the VAD alone, one core
    files = sorted((DATA / "ravdess-speech-16k").glob("Actor_0*/*.flac"))[::7]
    pcm = (np.concatenate([af.load_audio(f, SR) for f in files])[:60 * SR] if files
           else _coloured(1.0, 60 * SR, rng, 0.05))
    rtf = {}
    for v in vads:
        det = create_vad(v)
        fl = det.frame_length
        frames = pcm[:pcm.size // fl * fl].reshape(-1, fl)
        best = float("inf")
        for _ in range(3):
            det.reset()
            t0 = time.perf_counter()
            for i in range(0, len(frames), 8):
                det.process(frames[i:i + 8])
            best = min(best, time.perf_counter() - t0)
        rtf[v] = round(best / (frames.size / SR), 5)
    try:  # the same network through onnxruntime, for the record (chunk by chunk: the LSTM state is sequential)
        import onnxruntime as ort

        from affectlite.vad_silero import _wheel_model_path

        onnx = _wheel_model_path()  # silero_vad.onnx of an installed silero-vad wheel (pip install --no-deps)
        if onnx is None:
            raise ImportError("silero_vad.onnx not found")
        so = ort.SessionOptions()
        so.intra_op_num_threads = so.inter_op_num_threads = 1
        sess = ort.InferenceSession(str(onnx), so, providers=["CPUExecutionProvider"])
        frames = pcm[:pcm.size // 512 * 512].reshape(-1, 512)
        best = float("inf")
        for _ in range(3):
            state, ctx = np.zeros((2, 1, 128), np.float32), np.zeros((1, 64), np.float32)
            t0 = time.perf_counter()
            for f in frames:
                inp = np.concatenate([ctx, f[None]], axis=1)
                _, state = sess.run(None, {"input": inp, "state": state, "sr": np.array(SR, np.int64)})
                ctx = inp[:, -64:]
            best = min(best, time.perf_counter() - t0)
        rtf["silero via onnxruntime " + ort.__version__] = round(best / (frames.size / SR), 5)
    except (ImportError, TypeError):
        pass
    out["rtf_one_core"] = rtf
    print("RTF", rtf, flush=True)
    clf.close()
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
