"""Soak test: run the live pipeline over many synthetic frames and matching audio, watch for leaks.

Feeds ``--frames`` synthetic camera frames (default 100,000) and the matching length of synthetic voiced
audio (``frames / fps`` seconds, in 100 ms chunks) through :class:`affectlite.EmotionPipeline`, both
sources paced at ``--speed`` times real time (default 20: 300 frames/s and 200 audio chunks/s), and
samples the process's resident memory (RSS), thread count and open file descriptors. The first
``--warmup`` fraction of frames is warm-up (allocator pools, interpreter arenas, caches); memory growth
is measured from the end of warm-up to the end of the run. Prints a JSON report; exits 1 when RSS grows
more than ``--max-growth-mb`` after warm-up, or threads or fds grow.

Analyzers: ``--analyzers real`` uses the shipped models (face, voice, text, fusion); ``doubles`` uses
small stand-ins that still touch every pixel and sample (so the capture, queue and dispatch machinery is
soaked without model cost); ``auto`` (default) uses each real component that can be built and a
stand-in for the rest, and says which in the report.

Usage::

    PYTHONPATH=sdk python tests/benchmarks/soak.py --frames 100000
    PYTHONPATH=sdk python tests/benchmarks/soak.py --frames 5000 --analyzers doubles --json out.json

The module also exposes :func:`build_pipeline`, :func:`run_soak` and the stand-ins, which the
reliability tests reuse.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

_SDK = Path(__file__).resolve().parents[2] / "sdk"
if str(_SDK) not in sys.path:
    sys.path.insert(0, str(_SDK))

from affectlite.errors import AffectliteError  # noqa: E402
from affectlite.labels import LABELS  # noqa: E402
from affectlite.options import PipelineOptions  # noqa: E402
from affectlite.results import Box, EmotionResult, FaceResult, TextResult, VoiceResult  # noqa: E402

# ---------------------------------------------------------------------------------------------- stand-ins


def _probs_from(x: float) -> tuple[float, ...]:
    """A valid distribution that depends on a data statistic (so results vary with the input)."""
    k = int(abs(x) * 997) % len(LABELS)
    p = np.full(len(LABELS), 0.3 / (len(LABELS) - 1))
    p[k] = 0.7
    return tuple(float(v) for v in p)


class DoubleFace:
    """Stand-in face analyzer: one 'face' per frame whose scores depend on the mean of the frame."""

    def __init__(self, options: Any = None) -> None:
        self.closed = False
        self.frames = 0

    def process(self, frame: np.ndarray, timestamp_ns: int) -> tuple[FaceResult, ...]:
        self.frames += 1
        m = float(frame.mean()) / 255.0
        h, w = frame.shape[:2]
        return (FaceResult(track_id=1 + self.frames // 500, box=Box(w / 4, h / 4, w / 2, h / 2),
                           detection_score=0.9, probabilities=_probs_from(m + self.frames * 1e-3),
                           timestamp_ns=timestamp_ns),)

    def close(self) -> None:
        self.closed = True


class DoubleVoice:
    """Stand-in voice analyzer: a result per 2 s of audio, scored from the RMS of the window."""

    def __init__(self, options: Any = None, window: int = 32000) -> None:
        self.window = window
        self._buf: list[np.ndarray] = []
        self._n = 0
        self._start_ns = 0
        self._utt = 0

    def push(self, samples: np.ndarray, timestamp_ns: int) -> list[VoiceResult]:
        if not self._buf:
            self._start_ns = timestamp_ns
        self._buf.append(np.asarray(samples, np.int16))
        self._n += len(samples)
        if self._n < self.window:
            return []
        x = np.concatenate(self._buf).astype(np.float32) / 32768.0
        self._buf, self._n = [], 0
        self._utt += 1
        rms = float(np.sqrt(np.mean(x * x)))
        end = self._start_ns + len(x) * 1_000_000_000 // 16000
        return [VoiceResult(_probs_from(rms + self._utt * 1e-3), min(1.0, rms * 5), self._start_ns, end,
                            utterance_id=self._utt)]

    def flush(self) -> list[VoiceResult]:
        self._buf, self._n = [], 0
        return []

    def close(self) -> None:
        pass


class DoubleText:
    """Stand-in text classifier: scores from the text length (the text is not kept)."""

    def __init__(self, options: Any = None) -> None:
        pass

    def classify(self, text: str, timestamp_ns: int = 0) -> TextResult:
        return TextResult(_probs_from(len(text) / 7.0), len(text.split()), timestamp_ns)


class DoubleFusion:
    """Stand-in fusion: averages the latest face/voice/text probabilities."""

    def __init__(self, options: Any = None) -> None:
        self._last: dict[str, tuple[float, ...]] = {}

    def _emit(self, now_ns: int, **kw: Any) -> list[EmotionResult]:
        p = np.mean([np.asarray(v) for v in self._last.values()], axis=0)
        k = int(np.argmax(p))
        w = {m: 1.0 / len(self._last) for m in self._last}
        return [EmotionResult(LABELS[k], tuple(float(v) for v in p), float(p[k]), modality_weights=w,
                              result_ns=now_ns, **kw)]

    def update_faces(self, faces: tuple[FaceResult, ...], frame_index: int, capture_ns: int,
                     now_ns: int) -> list[EmotionResult]:
        if not faces:
            return [EmotionResult.empty(capture_ns, now_ns, frame_index)]
        self._last["face"] = faces[0].probabilities
        return self._emit(now_ns, faces=faces, frame_index=frame_index, capture_ns=capture_ns,
                          track_id=faces[0].track_id)

    def update_voice(self, voice: VoiceResult, now_ns: int) -> list[EmotionResult]:
        self._last["voice"] = voice.probabilities
        return self._emit(now_ns, voice=voice, capture_ns=voice.end_ns)

    def update_text(self, text: TextResult, now_ns: int) -> list[EmotionResult]:
        self._last["text"] = text.probabilities
        return self._emit(now_ns, text=text, capture_ns=text.timestamp_ns)


DOUBLES: dict[str, Callable[[Any], Any]] = {"face": DoubleFace, "voice": DoubleVoice, "text": DoubleText,
                                            "fusion": DoubleFusion}


def _real_factory(kind: str, options: PipelineOptions) -> Any:
    """Build the real component (raises ImportError/AffectliteError when it is not available)."""
    if kind == "face":
        from affectlite.face import FaceAnalyzer  # type: ignore[import-not-found,unused-ignore]

        return FaceAnalyzer(options.face)
    if kind == "voice":
        from affectlite.voice import VoiceAnalyzer  # type: ignore[import-not-found,unused-ignore]

        return VoiceAnalyzer(options.voice)
    if kind == "text":
        from affectlite.text import TextClassifier

        return TextClassifier.create(options.text)
    from affectlite.fusion import Fusion

    return Fusion(options.fusion)


def _prebuilt(inst: Any) -> Callable[[Any], Any]:
    def factory(_options: Any) -> Any:
        return inst
    return factory


def choose_analyzers(mode: str, options: PipelineOptions) -> tuple[dict[str, Callable[[Any], Any]], dict[str, str]]:
    """Factories for the pipeline and a description (``real``/``double`` and why) per component.

    Args:
        mode: ``"real"`` (fail when a real component cannot be built), ``"doubles"`` or ``"auto"``.
        options: The pipeline options the real components are built from.
    """
    factories: dict[str, Callable[[Any], Any]] = {}
    used: dict[str, str] = {}
    for kind, double in DOUBLES.items():
        if mode == "doubles":
            factories[kind], used[kind] = double, "double"
            continue
        try:
            inst = _real_factory(kind, options)
        except (ImportError, AffectliteError, OSError) as e:
            if mode == "real":
                raise
            factories[kind], used[kind] = double, f"double ({type(e).__name__}: {str(e)[:80]})"
            continue
        factories[kind], used[kind] = _prebuilt(inst), "real"
    return factories, used


class PacedMicrophone:
    """The synthetic voiced microphone, paced at ``speed`` times real time (``0``: as fast as possible)."""

    def __init__(self, seconds: float | None, *, speed: float = 1.0, chunk_ms: int = 100) -> None:
        from affectlite.microphones.synthetic import SyntheticMicrophone

        self._mic = SyntheticMicrophone("voiced", seconds=seconds, chunk_ms=chunk_ms, realtime=False)
        self.name = f"paced-{self._mic.name}"
        self.overflows = 0
        self.speed = speed
        self.chunk_s = chunk_ms / 1000
        self._i = 0
        self._t0 = 0.0

    def open(self) -> None:
        self._mic.open()
        self._i = 0
        self._t0 = time.monotonic()

    def read(self) -> Any:
        if self.speed > 0:
            delay = self._t0 + self._i * self.chunk_s / self.speed - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        self._i += 1
        return self._mic.read()

    def close(self) -> None:
        self._mic.close()


def face_sprite(face_px: int = 80) -> np.ndarray | None:
    """A face from the first frame of the shipped sample video, cropped and scaled so the face is about
    ``face_px`` pixels wide; ``None`` without OpenCV or the sample. Decoded in memory; nothing is written.
    """
    try:
        import cv2

        from affectlite.samples import sample_video

        cap = cv2.VideoCapture(str(sample_video()))
        ok, bgr = cap.read()
        cap.release()
    except (ImportError, AffectliteError):
        return None
    if not ok:
        return None
    rgb = np.ascontiguousarray(bgr[:, :, ::-1])
    try:
        from affectlite.detectors import create_detector

        faces = create_detector("haar").detect(rgb)
    except AffectliteError:
        return None
    if not faces:
        return None
    best = max(faces, key=lambda d: d.w * d.h)
    x, y, w, h = (round(v) for v in (best.x, best.y, best.w, best.h))
    m = w // 2  # keep some context around the face
    crop = rgb[max(0, y - m):y + h + m, max(0, x - m):x + w + m]
    scale = face_px / w
    small = cv2.resize(crop, (round(crop.shape[1] * scale), round(crop.shape[0] * scale)),
                       interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(small)


def build_pipeline(n_frames: int | None, *, analyzers: str = "doubles", width: int = 320, height: int = 240,
                   fps: float = 15.0, speed: float = 1.0, audio_seconds: float | None = None,
                   sprite: np.ndarray | None = None, sources: str = "synthetic",
                   options: PipelineOptions | None = None, **kw: Any) -> tuple[Any, dict[str, str]]:
    """An :class:`EmotionPipeline` on the synthetic camera and the synthetic voiced microphone.

    Args:
        n_frames: Frames the camera yields (``None``: endless).
        analyzers: See :func:`choose_analyzers`.
        width: Frame width.
        height: Frame height.
        fps: Nominal frame rate; the audio length is matched to it (``n_frames / fps`` seconds).
        speed: Pace both sources at ``speed`` times real time (``0``: as fast as possible, where the
            capture threads run flat out and most frames are dropped by design).
        audio_seconds: Audio length (default matched to the frames; endless when ``n_frames`` is ``None``).
        sprite: An image (e.g. :func:`face_sprite`) moving across the synthetic frames.
        sources: ``"synthetic"`` (the above) or ``"samples"``: the shipped sample video and speech through
            the real OpenCV and file sources, looped in real time (``n_frames``, ``fps`` and ``speed`` unused).
        options: Base options (queues, privacy...); sources are overridden.
        **kw: Passed to :class:`EmotionPipeline` (callbacks, consent ...).

    Returns:
        The pipeline (not started) and the analyzer description.
    """
    from affectlite.cameras.synthetic import SyntheticCamera
    from affectlite.pipeline import EmotionPipeline

    opts = options or PipelineOptions()
    if audio_seconds is None and n_frames is not None:
        audio_seconds = n_frames / fps
    factories, used = choose_analyzers(analyzers, opts)
    cam: Any
    mic: Any
    if sources == "samples":
        from affectlite.cameras import create_camera
        from affectlite.microphones import create_microphone
        from affectlite.samples import sample_audio, sample_video

        opts = opts.replace(**{"camera.backend": "opencv", "camera.device": str(sample_video()),
                               "camera.realtime": True, "camera.loop": True, "audio.backend": "file",
                               "audio.device": str(sample_audio()), "audio.realtime": True, "audio.loop": True})
        cam, mic = create_camera(opts.camera), create_microphone(opts.audio)
    else:
        cam = SyntheticCamera(width=width, height=height, fps=fps * speed if speed > 0 else fps,
                              n_frames=n_frames, realtime=speed > 0, sprite=sprite)
        mic = PacedMicrophone(audio_seconds, speed=speed)
    pipe = EmotionPipeline(opts, camera=cam, microphone=mic, face_analyzer_factory=factories["face"],
                           voice_analyzer_factory=factories["voice"], text_classifier_factory=factories["text"],
                           fusion_factory=factories["fusion"], **kw)
    return pipe, used


# ---------------------------------------------------------------------------------------------- probes


def rss_bytes() -> int:
    """Resident set size of this process (Linux ``/proc``; falls back to psutil)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import psutil

        return int(psutil.Process().memory_info().rss)


def fd_count() -> int:
    """Open file descriptors of this process (-1 where it cannot be counted)."""
    for d in ("/proc/self/fd", "/dev/fd"):
        try:
            return len(os.listdir(d)) - 1  # minus the one listdir itself holds
        except OSError:
            continue
    return -1


def os_thread_count() -> int:
    """OS threads of this process (Linux), else Python threads."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()


# ---------------------------------------------------------------------------------------------- soak


def run_soak(n_frames: int = 100_000, *, analyzers: str = "doubles", width: int = 320, height: int = 240,
             fps: float = 15.0, speed: float = 20.0, warmup: float = 0.1, sample_s: float = 0.5,
             text_every_s: float = 1.0, timeout_s: float | None = None, sprite: bool = True,
             log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the pipeline over ``n_frames`` synthetic frames plus matching audio and measure leaks.

    Returns:
        A JSON-ready report: counts, throughput, RSS (start, after warm-up, at the end of the steady state
        while still running, after close, max, growth after warm-up in MB), thread and fd counts
        before (after a short priming run)/during/after, and the analyzers used.
    """
    n_results = [0]
    labels: set[str] = set()

    faces_seen = [0]

    def on_result(r: EmotionResult) -> None:
        n_results[0] += 1
        labels.add(r.label)
        faces_seen[0] += len(r.faces)

    errors: list[str] = []
    opts = PipelineOptions().replace(**{"privacy.offline_guard": True})
    spr = face_sprite(min(80, width // 4)) if sprite else None
    # a short priming run first: one-time library pools (OpenCV, XNNPACK threads) exist before "before"
    prime, _ = build_pipeline(min(300, n_frames), analyzers=analyzers, width=width, height=height, fps=fps,
                              speed=0, sprite=spr, options=opts, on_result=lambda r: None)
    with prime:
        prime.wait(timeout=120)
    gc.collect()
    threads0, fds0, rss0 = os_thread_count(), fd_count(), rss_bytes()
    pipe, used = build_pipeline(n_frames, analyzers=analyzers, width=width, height=height, fps=fps, speed=speed,
                                sprite=spr, options=opts, on_result=on_result,
                                on_error=lambda e: errors.append(repr(e)[:200]))
    t0 = time.monotonic()
    samples: list[tuple[float, int, int, int, int]] = []  # (t, frames captured, rss, threads, fds)
    warm_frames = int(n_frames * warmup)
    rss_warm: int | None = None
    next_text = t0
    pipe.start()
    try:
        while not pipe.wait(timeout=sample_s):
            st = pipe.stats()
            frames = st.counts["camera"]
            samples.append((time.monotonic() - t0, frames, rss_bytes(), os_thread_count(), fd_count()))
            if rss_warm is None and frames >= warm_frames:
                gc.collect()
                rss_warm = rss_bytes()
            if text_every_s and time.monotonic() >= next_text:
                pipe.push_text(f"soak text {len(samples)}: this is fine")
                next_text += text_every_s
            if log is not None and len(samples) % 20 == 0:
                log(f"{frames}/{n_frames} frames, rss {samples[-1][2] / 2**20:.1f} MB, "
                    f"threads {samples[-1][3]}, fds {samples[-1][4]}")
            if timeout_s is not None and time.monotonic() - t0 > timeout_s:
                raise TimeoutError(f"soak did not finish in {timeout_s} s")
        st = pipe.stats()
    finally:
        pipe.close()
    elapsed = time.monotonic() - t0
    gc.collect()
    rss_closed = rss_bytes()
    if rss_warm is None:  # run shorter than one sample: warm-up point is the end
        rss_warm = rss_closed
    during = samples or [(elapsed, n_frames, rss_closed, os_thread_count(), fd_count())]
    # steady state: after warm-up and before the sources run out (their threads then end one by one)
    post_warm = [s for s in during if warm_frames <= s[1] <= 0.95 * n_frames] or during
    rss_end = post_warm[-1][2]  # still running: what a long-lived process would hold
    time.sleep(0.05)
    return {
        "frames_requested": n_frames,
        "audio_seconds": n_frames / fps,
        "speed": speed,
        "frame_size": [width, height],
        "analyzers": used,
        "face_sprite": spr is not None,
        "faces_seen": faces_seen[0],
        "elapsed_s": round(elapsed, 2),
        "counts": st.counts,
        "drops": st.drops,
        "capture_fps": round(st.counts["camera"] / elapsed, 1),
        "results_delivered": n_results[0],
        "distinct_labels": sorted(labels),
        "callback_errors": st.callback_errors,
        "stage_errors": st.stage_errors,
        "errors_sample": errors[:5],
        "rss_mb": {"start": round(rss0 / 2**20, 2), "after_warmup": round(rss_warm / 2**20, 2),
                   "end_running": round(rss_end / 2**20, 2), "after_close": round(rss_closed / 2**20, 2),
                   "max_after_warmup": round(max(s[2] for s in post_warm) / 2**20, 2),
                   "growth_after_warmup": round((rss_end - rss_warm) / 2**20, 2),
                   "max_growth_after_warmup": round((max(s[2] for s in post_warm) - rss_warm) / 2**20, 2)},
        "threads": {"before": threads0, "max_during": max(s[3] for s in during),
                    "min_during_after_warmup": min(s[3] for s in post_warm),
                    "max_during_after_warmup": max(s[3] for s in post_warm), "after": os_thread_count()},
        "fds": {"before": fds0, "min_during_after_warmup": min(s[4] for s in post_warm),
                "max_during_after_warmup": max(s[4] for s in post_warm), "after": fd_count()},
        "samples": len(samples),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=100_000)
    ap.add_argument("--analyzers", choices=("auto", "real", "doubles"), default="auto")
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--fps", type=float, default=15.0)
    ap.add_argument("--speed", type=float, default=20.0, help="times real time (0: unpaced)")
    ap.add_argument("--warmup", type=float, default=0.1, help="fraction of frames treated as warm-up")
    ap.add_argument("--max-growth-mb", type=float, default=5.0)
    ap.add_argument("--no-sprite", action="store_true", help="no face (from the sample video) in the frames")
    ap.add_argument("--json", type=Path, help="also write the report here")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args(argv)
    rep = run_soak(a.frames, analyzers=a.analyzers, width=a.width, height=a.height, fps=a.fps, speed=a.speed,
                   warmup=a.warmup, sprite=not a.no_sprite,
                   log=None if a.quiet else lambda m: print(m, file=sys.stderr, flush=True))
    text = json.dumps(rep, indent=2)
    print(text)
    if a.json:
        from affectlite._io import atomic_write_text

        atomic_write_text(a.json, text + "\n")
    ok = (rep["rss_mb"]["growth_after_warmup"] < a.max_growth_mb
          and rep["threads"]["after"] <= rep["threads"]["before"]
          and rep["fds"]["after"] <= rep["fds"]["before"]
          and rep["threads"]["max_during_after_warmup"] == rep["threads"]["min_during_after_warmup"]
          and rep["fds"]["max_during_after_warmup"] == rep["fds"]["min_during_after_warmup"])
    print("SOAK", "PASS" if ok else "FAIL", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
