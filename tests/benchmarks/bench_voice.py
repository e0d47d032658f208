"""Benchmark the voice path on one CPU core: features, int8 inference, and streaming real-time factor.

Usage::

    PYTHONPATH=sdk python tests/benchmarks/bench_voice.py [--model PATH] [--seconds 20] [--json OUT]

Streams ``--seconds`` of audio (RAVDESS speech when ../shared/datasets is present, else espeak-ng speech,
else a harmonic test signal) through :class:`affectlite.voice.VoiceAnalyzer` in 100 ms chunks with
``vad="none"`` (worst case: every window is classified), with the energy VAD and with Silero VAD (the default
where its model is installed), and reports the milliseconds of processing per second of audio (target: <= 50 ms
on one core) and the real-time factor.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "sdk"))

from affectlite import audio_features as af  # noqa: E402
from affectlite.options import VoiceOptions  # noqa: E402
from affectlite.voice import DEFAULT_MODEL, VoiceAnalyzer, VoiceEmotionClassifier  # noqa: E402

SR = 16000


def _audio(seconds: float) -> tuple[np.ndarray, str]:
    ravdess = ROOT.parent / "shared" / "datasets" / "ravdess-speech-16k"
    files = sorted(ravdess.glob("Actor_0*/*.flac"))[::7]
    if files:
        parts, n = [], 0
        for f in files:
            x = af.load_audio(f, SR)
            parts.append(x)
            n += x.size
            if n >= seconds * SR:
                break
        return np.concatenate(parts)[: int(seconds * SR)], "RAVDESS clips"
    exe = shutil.which("espeak-ng")
    if exe:
        with tempfile.TemporaryDirectory() as d:
            out = Path(d) / "s.wav"
            text = "The quick brown fox jumps over the lazy dog. " * int(seconds / 2 + 1)
            subprocess.run([exe, "-w", str(out), text], check=True, capture_output=True)
            x = af.load_audio(out, SR)
        return np.resize(x, int(seconds * SR)), "espeak-ng speech"
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * 150 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32), "tone"


def _stream(an: VoiceAnalyzer, pcm: np.ndarray) -> tuple[float, int]:
    n_res = 0
    t0 = time.perf_counter()
    for i in range(0, pcm.size, SR // 10):
        n_res += len(an.push(pcm[i:i + SR // 10], i * 1_000_000_000 // SR))
    n_res += len(an.flush())
    return time.perf_counter() - t0, n_res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=str(DEFAULT_MODEL))
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--repeats", type=int, default=3, help="best of N (other processes share the CPU)")
    ap.add_argument("--json", default="")
    args = ap.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    clf = VoiceEmotionClassifier.create(args.model, num_threads=1)
    x, source = _audio(args.seconds)
    pcm = (np.clip(x, -1, 1) * 32767).astype(np.int16)
    win = x[: clf.window_length]
    for _ in range(3):
        clf.classify_window(win)

    def best(fn: object, n: int) -> float:
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            for _ in range(n):
                fn()  # type: ignore[operator]
            times.append((time.perf_counter() - t0) / n)
        return min(times) * 1000

    feat_ms = best(lambda: af.compute_features(win, clf.spec), 20)
    feats = clf.features(win)
    infer_ms = best(lambda: clf._model.predict_proba(feats.reshape(clf._in_shape)), 20)
    window_ms = best(lambda: clf.classify_window(win), 20)
    out: dict[str, object] = {"model": args.model, "model_bytes": Path(args.model).stat().st_size,
                              "audio": source, "seconds": args.seconds, "cores": 1,
                              "features_ms_per_window": round(feat_ms, 2),
                              "inference_ms_per_window": round(infer_ms, 2),
                              "classify_window_ms": round(window_ms, 2)}
    from affectlite.vad_silero import missing_hint

    for vad in ("none", "energy", *(("silero",) if missing_hint() is None else ())):
        runs = []
        for _ in range(args.repeats):
            an = VoiceAnalyzer(VoiceOptions(model_path=args.model, vad=vad, hop_s=0.5, num_threads=1),
                               classifier=clf)
            runs.append(_stream(an, pcm))
        secs, n_res = min(runs)
        out[f"stream_vad_{vad}"] = {"ms_per_audio_second": round(1000 * secs / args.seconds, 2),
                                    "real_time_factor": round(secs / args.seconds, 4), "results": n_res}
    out["target_ms_per_audio_second"] = 50
    out["passed"] = out["stream_vad_none"]["ms_per_audio_second"] <= 50  # type: ignore[index]
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
