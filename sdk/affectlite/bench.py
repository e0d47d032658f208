"""``affectlite bench``: per-stage latency, end-to-end throughput, latency, CPU and memory of the pipeline.

What it measures (on the bundled sample media by default: 640x480 30 fps video with one face + speech):

* **Stages**, one at a time, on real frames and audio windows: ``detect`` (downscale + detector),
  ``face_preprocess`` (crop to model input), ``face_model`` (interpreter + calibration), ``voice_features``
  (log-mel of one window), ``voice_model``, ``text`` (featuriser + model) and ``fusion``. Median, p95 and
  mean in milliseconds.
* **The live pipeline**, every thread running: ``realtime`` (video and audio paced at their own rate, as a
  camera would deliver them) gives capture-to-callback latency of frame results and whether it keeps up;
  ``fast`` (every video frame analysed as fast as possible, the reader waiting for the face thread; audio
  still paced like a microphone) gives the most frames per second the machine can analyse.
  Both report frames analysed per second, results per second, dropped frames, CPU time per analysed frame
  (the whole process: decode, detect, classify, voice, fusion, dispatch) and the peak RSS of the process
  while that run was going. With both paces each run has a fresh process (``python -m affectlite.bench
  --worker``), as a deployment runs one pipeline; in one process the second run would be charged with the
  first one's peak and fragmentation. A run in a process that did other work first starts a new peak window
  (Linux: ``/proc/self/clear_refs``), which still counts what that work left mapped.

``--compare A B`` runs two configurations in fresh processes, interleaved (A B B A A B ...) so drift and
thermal state hit both alike, and prints the medians and the ratio B/A. A configuration is a comma-separated
list of ``KEY=VALUE`` overrides, e.g. ``threads=1`` vs ``threads=2`` or
``face.model_path=face_float.tflite`` vs ``""`` (the defaults).

Numbers depend on the machine, its load and its governor; the JSON names the machine. Unit tests check the
shape of the output, never timings.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import AffectliteError, ConfigError, InputError

__all__ = ["SCHEMA", "TARGETS", "add_arguments", "machine_info", "parse_config", "run", "summarize"]

SCHEMA = "affectlite.bench/1"
STAGES = ("detect", "face_preprocess", "face_model", "voice_features", "voice_model", "text", "fusion")
#: Targets on a 2-core x86 with 2 interpreter threads and the 640x480 sample video (see docs/benchmarks.md).
TARGETS = {"fps": 30.0, "latency_ms_p95": 60.0, "peak_rss_mb": 150.0}
_SENTENCES = ("I am really happy with how this turned out!", "This is so frustrating, nothing works.",
              "I feel a bit down today.", "What a surprise to see you here!", "The meeting is at three.")


# ------------------------------------------------------------------------------------------------ helpers
def summarize(samples_ms: Sequence[float]) -> dict[str, float | int]:
    """``n``, ``median_ms``, ``p95_ms``, ``mean_ms``, ``min_ms``, ``max_ms`` of a list of durations (ms).

    Raises:
        InputError: no samples.
    """
    if not samples_ms:
        raise InputError("summarize() needs at least one sample")
    a = np.asarray(samples_ms, dtype=np.float64)
    return {"n": int(a.size), "median_ms": round(float(np.median(a)), 4),
            "p95_ms": round(float(np.percentile(a, 95)), 4), "mean_ms": round(float(a.mean()), 4),
            "min_ms": round(float(a.min()), 4), "max_ms": round(float(a.max()), 4)}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """The machine the figures come from: CPU model, cores usable by this process, OS, Python, libraries."""
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 1
    info: dict[str, Any] = {"cpu": _cpu_model(), "cores": os.cpu_count() or 1, "usable_cores": usable,
                            "machine": platform.machine(), "platform": platform.platform(terse=True),
                            "python": platform.python_version(), "numpy": np.__version__}
    try:
        from importlib import metadata

        for dist in ("ai-edge-litert", "tflite-runtime", "opencv-python-headless", "opencv-python"):
            try:
                info[dist] = metadata.version(dist)
            except metadata.PackageNotFoundError:
                continue
    except ImportError:  # pragma: no cover - stdlib
        pass
    load = _load_avg_1m()
    if load is not None:
        info["load_avg_1m"] = load
    return info


def _load_avg_1m() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def _peak_rss_mb() -> float:
    try:
        import resource
    except ImportError:  # Windows
        return float("nan")
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024.0 / (1024.0 if sys.platform == "darwin" else 1.0)


def _start_rss_window() -> bool:
    """Start a new peak-RSS window: Linux resets the process's ``VmHWM`` on ``5`` written to
    ``/proc/self/clear_refs`` (the peak restarts at the current RSS). ``False`` where that is unavailable."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
    except OSError:
        return False
    return True


def _window_peak_rss_mb(windowed: bool) -> float:
    """Peak RSS since :func:`_start_rss_window` (``VmHWM``) when ``windowed``; else the process's peak."""
    if windowed:
        try:
            with open("/proc/self/status", encoding="ascii") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) / 1024.0
        except (OSError, ValueError, IndexError):
            pass
    return _peak_rss_mb()


def _parse_value(v: str) -> Any:
    try:
        return json.loads(v)
    except json.JSONDecodeError:
        return v


def parse_config(spec: str) -> dict[str, Any]:
    """Parse a configuration spec like ``"threads=2,face.detect_every=2"`` into overrides.

    ``threads=N`` sets the interpreter threads of the face, voice and text models; other keys are dotted
    option keys (``section.key``). An empty spec means the defaults.

    Raises:
        ConfigError: a part is not ``KEY=VALUE``.
    """
    out: dict[str, Any] = {}
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        if "=" not in part:
            raise ConfigError(f"bench configuration part {part!r} is not KEY=VALUE (e.g. threads=2 or "
                              "face.model_path=face_float.tflite)")
        k, v = part.split("=", 1)
        out[k.strip()] = _parse_value(v.strip())
    return out


def _options(args: argparse.Namespace, extra: dict[str, Any] | None = None) -> Any:
    from .options import PipelineOptions

    ov: dict[str, Any] = {}
    for pair in args.set or []:
        ov.update(parse_config(pair))
    ov.update(extra or {})
    threads = ov.pop("threads", args.threads)
    if threads is not None:
        t = int(threads)
        if t < 1:
            raise ConfigError(f"threads must be >= 1, got {threads}")
        ov.setdefault("face.num_threads", t)
        ov.setdefault("voice.num_threads", t)
        ov.setdefault("text.num_threads", t)
    video, audio = _inputs(args)
    if args.synthetic:
        ov.update({"camera.backend": "synthetic", "audio.backend": "synthetic"})
    else:
        ov.update({"camera.backend": "opencv", "camera.device": str(video)} if video else {"camera.enabled": False})
        ov.update({"audio.backend": "file", "audio.device": str(audio)} if audio else {"audio.enabled": False})
    ov.setdefault("privacy.offline_guard", True)
    return PipelineOptions().replace(**ov)


def _inputs(args: argparse.Namespace) -> tuple[str | None, str | None]:
    video, audio = args.video, args.audio
    if args.no_audio:
        audio = ""
    if args.no_video:
        video = ""
    if video is None or audio is None:
        from .samples import sample_paths

        v, a = sample_paths()
        video = str(v) if video is None else video
        audio = str(a) if audio is None else audio
    return (video or None), (audio or None)


# ------------------------------------------------------------------------------------------------ stages
def _time_calls(fn: Callable[[int], Any], n: int, warmup: int) -> dict[str, float | int]:
    """Wall-clock summary of ``n`` calls, plus the median process CPU time per call (``cpu_median_ms``: all
    threads, e.g. OpenCV's and the interpreter's; less sensitive than wall time to other load on the machine)."""
    for i in range(warmup):
        fn(i)
    wall, cpu = [], []
    for i in range(n):
        c0 = time.process_time_ns()
        t0 = time.perf_counter_ns()
        fn(i)
        wall.append((time.perf_counter_ns() - t0) / 1e6)
        cpu.append((time.process_time_ns() - c0) / 1e6)
    out = summarize(wall)
    out["cpu_median_ms"] = round(float(np.median(cpu)), 4)
    return out


def _read_frames(video: str | None, synthetic: bool, limit: int) -> list[np.ndarray]:
    if synthetic or not video:
        from .cameras.synthetic import SyntheticCamera

        cam = SyntheticCamera(width=640, height=480, n_frames=limit)
        cam.open()
        frames = []
        while (f := cam.read()) is not None:
            frames.append(f.image)
        cam.close()
        return frames
    try:
        import cv2
    except ImportError as e:
        raise AffectliteError("the bench reads video with OpenCV: pip install 'affectlite[opencv]'") from e
    cap = cv2.VideoCapture(video)
    frames = []
    try:
        while len(frames) < limit:
            ok, bgr = cap.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    finally:
        cap.release()
    if not frames:
        raise InputError(f"could not read any frame from {video}")
    return frames


def _audio(audio: str | None, synthetic: bool) -> np.ndarray:
    if synthetic or not audio:
        rng = np.random.default_rng(0)
        t = np.arange(16000 * 4) / 16000
        sig = 0.3 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t)) / 2
        out: np.ndarray = (sig + 0.01 * rng.standard_normal(t.size)).astype(np.float32)
        return out
    from .audio_features import load_audio

    return np.asarray(load_audio(audio, 16000), dtype=np.float32)


def bench_stages(opts: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Time each stage on its own; a stage whose model is missing reports ``{"error": ...}``."""
    video, audio = _inputs(args)
    n, warm = int(args.iterations), max(1, int(args.iterations) // 20)
    out: dict[str, Any] = {}
    frames = _read_frames(video, args.synthetic, 30)
    crop: np.ndarray | None = None
    analyzer: Any = None
    try:
        from .face import FaceAnalyzer
        from .preprocess import crop_box, prepare_face

        analyzer = FaceAnalyzer(opts.face)
        out["detect"] = _time_calls(lambda i: analyzer.detect(frames[i % len(frames)]), n, warm)
        dets = [(f, analyzer.detect(f)) for f in frames[:5]]
        with_face = [(f, d[0]) for f, d in dets if d]
        out["detect"]["faces_found_in_first_5_frames"] = len(with_face)
        if with_face:
            f, d = with_face[0]
            crop = crop_box(f, d.x, d.y, d.w, d.h, analyzer.margin)
        else:  # no face (synthetic input): time the model on a centre crop
            h, w = frames[0].shape[:2]
            crop = frames[0][h // 4: 3 * h // 4, w // 3: 2 * w // 3]
        clf = analyzer.classifier
        spec = clf.spec
        out["face_preprocess"] = _time_calls(lambda i: prepare_face(crop, spec), n, warm)
        x = prepare_face(crop, spec)
        out["face_model"] = _time_calls(lambda i: clf.classify_prepared(x), n, warm)
        out["face_model"]["backend"] = clf.model.backend
        out["face_model"]["model"] = f"{clf.card.name} {clf.card.version}"
    except AffectliteError as e:
        for k in ("detect", "face_preprocess", "face_model"):
            out.setdefault(k, {"error": str(e)})
    finally:
        if analyzer is not None:
            analyzer.close()
    try:
        from . import voice as vmod
        from .model import Model

        vclf = vmod.VoiceEmotionClassifier.create(opts.voice.model_path, backend=opts.voice.backend,
                                                  num_threads=opts.voice.num_threads)
        pcm = _audio(audio, args.synthetic)
        win = vclf.window_length
        hop = max(1, win // 4)
        starts = list(range(0, max(1, pcm.size - win), hop)) or [0]
        windows = [pcm[s:s + win] for s in starts]
        out["voice_features"] = _time_calls(lambda i: vclf.features(windows[i % len(windows)]), n, warm)
        model = Model.load(opts.voice.model_path or vmod.DEFAULT_MODEL, backend=opts.voice.backend,
                           num_threads=opts.voice.num_threads, expected_task="voice")
        shape = (1, *[int(v) for v in model.input_details[0]["shape"][1:]])
        feats = [vclf.features(w).reshape(shape) for w in windows[:8]]
        out["voice_model"] = _time_calls(lambda i: model.predict_proba(feats[i % len(feats)]), n, warm)
        out["voice_model"]["backend"] = model.backend
        out["voice_model"]["model"] = f"{model.card.name} {model.card.version}"
        out["voice_features"]["window_s"] = round(win / 16000, 3)
        out["voice_features"]["front_end"] = "speech_embedding" if vclf.front_end is not None else "log-mel"
        out["voice_stream"] = _bench_voice_stream(opts, vclf, pcm)
    except AffectliteError as e:
        for k in ("voice_features", "voice_model"):
            out.setdefault(k, {"error": str(e)})
    try:
        from .text import TextClassifier

        tclf = TextClassifier.create(opts.text)
        out["text"] = _time_calls(lambda i: tclf.classify(_SENTENCES[i % len(_SENTENCES)]), n, warm)
    except AffectliteError as e:
        out["text"] = {"error": str(e)}
    try:
        out["fusion"] = _bench_fusion(opts, n, warm)
    except AffectliteError as e:
        out["fusion"] = {"error": str(e)}
    return out


def _bench_voice_stream(opts: Any, vclf: Any, pcm: np.ndarray, seconds: float = 30.0) -> dict[str, Any]:
    """Real-time factor of the whole voice path on this thread: ``seconds`` of audio (the input looped) pushed
    in 100 ms blocks through a :class:`~affectlite.voice.VoiceAnalyzer` (the configured VAD, the front end, the
    model, windows every ``hop_s``). ``rtf`` = process CPU time / audio time (0.05: 5 % of one core), and the
    bytes of the voice files in use (model, card, front end)."""
    from . import speech_embedding as se
    from .card import card_path_for
    from .voice import DEFAULT_MODEL, VoiceAnalyzer

    an = VoiceAnalyzer(opts.voice, classifier=vclf)
    n = int(seconds * 16000)
    x = np.resize(np.asarray(pcm, np.float32), n)
    block = 1600
    an.push(x[:16000], 0)  # warm-up second
    an.reset()
    c0, t0 = time.process_time_ns(), time.perf_counter_ns()
    results = 0
    for i in range(0, n, block):
        results += len(an.push(x[i:i + block], i * 62_500))
    results += len(an.flush())
    cpu_s, wall_s = (time.process_time_ns() - c0) / 1e9, (time.perf_counter_ns() - t0) / 1e9
    model = Path(opts.voice.model_path) if opts.voice.model_path else DEFAULT_MODEL
    files = [model, card_path_for(model)]
    if vclf.front_end is not None:
        files += [se.FRONT_END_DIR / se.MEL_FILE, se.FRONT_END_DIR / se.EMBEDDING_FILE]
    if type(an._vad).__name__ == "SileroVAD":  # the neural VAD's weights count too
        from .vad_silero import default_model_path

        vad_file = default_model_path()
        if vad_file is not None:
            files.append(vad_file)
    return {"audio_s": seconds, "rtf": round(cpu_s / seconds, 4), "rtf_wall": round(wall_s / seconds, 4),
            "results": results, "vad": str(opts.voice.vad), "hop_s": float(opts.voice.hop_s),
            "front_end": "speech_embedding" if vclf.front_end is not None else "log-mel",
            "voice_files_bytes": int(sum(f.stat().st_size for f in files if f.is_file())), "rtf_budget": 0.05}


def _bench_fusion(opts: Any, n: int, warm: int) -> dict[str, float | int]:
    from .fusion import Fusion
    from .labels import LABELS
    from .results import Box, FaceResult, VoiceResult

    rng = np.random.default_rng(0)
    fusion = Fusion(opts.fusion, frame_size=(640, 480))
    probs = [tuple(float(v) for v in p) for p in rng.dirichlet(np.ones(len(LABELS)), size=32)]
    base = time.monotonic_ns()

    def step(i: int) -> None:
        t = base + i * 33_000_000
        if i % 10 == 9:
            fusion.update_voice(VoiceResult(probs[i % 32], 0.9, t - 2_000_000_000, t), t)
        else:
            face = FaceResult(1, Box(200, 120, 160, 160), 0.95, probs[i % 32], t)
            fusion.update_faces((face,), i, t, t + 1_000_000)
    return _time_calls(step, n, warm)


# ------------------------------------------------------------------------------------------------ pipeline
def bench_pipeline(opts: Any, duration: float, pace: str,
                   pipeline_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run the whole pipeline for ``duration`` seconds (files looped) and measure it.

    Args:
        opts: Pipeline options (sources set).
        duration: Seconds to run.
        pace: ``"realtime"`` (video and audio files paced at their own rate) or ``"fast"`` (every video frame
            analysed, as fast as the pipeline can go: the reader waits for the face thread, so the fps is
            the pipeline's throughput and no CPU is spent decoding frames that would be dropped; audio stays
            paced, as a microphone delivers it, so the voice path costs what it costs live).
        pipeline_kwargs: Extra :class:`~affectlite.EmotionPipeline` arguments (e.g. your own camera source).
    """
    from .pipeline import EmotionPipeline
    from .results import EmotionResult

    realtime = pace == "realtime"
    o = opts.replace(**{"camera.realtime": realtime, "camera.every_frame": not realtime, "audio.realtime": True,
                        "camera.loop": True, "audio.loop": True})
    frame_lat: list[float] = []
    n_results = {"all": 0, "frames": 0, "voice": 0, "with_face": 0}
    errors: list[str] = []

    def on_result(r: EmotionResult) -> None:
        n_results["all"] += 1
        if r.frame_index >= 0:
            n_results["frames"] += 1
            n_results["with_face"] += bool(r.faces)
            if r.capture_ns:
                frame_lat.append((time.monotonic_ns() - r.capture_ns) / 1e6)
        elif r.voice is not None:
            n_results["voice"] += 1

    def on_error(e: BaseException) -> None:
        if len(errors) < 5:
            errors.append(str(e))

    gc.collect()  # what an earlier run left behind is freed before this run's peak window starts
    windowed = _start_rss_window()
    cpu0 = time.process_time()
    t_load = time.perf_counter()
    pipe = EmotionPipeline(o, on_result=on_result, on_error=on_error, **(pipeline_kwargs or {}))
    with pipe:
        load_s = time.perf_counter() - t_load
        cpu_run0 = time.process_time()
        pipe.wait(timeout=duration)
        st = pipe.stats()
        cpu_run = time.process_time() - cpu_run0
    cpu_total = time.process_time() - cpu0
    frames = int(st.counts.get("face", 0))
    up = max(st.uptime_s, 1e-9)
    lat = summarize(frame_lat) if frame_lat else None
    res: dict[str, Any] = {
        "pace": pace, "duration_s": round(up, 3), "startup_s": round(load_s, 3),
        "frames_captured": int(st.counts.get("camera", 0)), "frames_analysed": frames,
        "fps": round(frames / up, 2), "results": n_results["all"], "results_per_s": round(n_results["all"] / up, 2),
        "voice_results": int(st.counts.get("voice", 0)),
        "frame_results_with_face": (round(n_results["with_face"] / n_results["frames"], 4)
                                    if n_results["frames"] else None),
        "latency_ms_p50": round(float(lat["median_ms"]), 2) if lat else None,
        "latency_ms_p95": round(float(lat["p95_ms"]), 2) if lat else None,
        "latency_all_results_ms_p95": round(st.latency_ms_p95, 2),
        "dropped": dict(st.drops),
        "cpu_ms_per_frame": round(1000 * cpu_run / frames, 2) if frames else None,
        "cpu_utilisation": round(cpu_run / up, 3),
        "cpu_s_total": round(cpu_total, 3),
        "peak_rss_mb": round(_window_peak_rss_mb(windowed), 1),
        "state": st.state,
    }
    if errors:
        res["errors"] = errors
    return res


# ------------------------------------------------------------------------------------------------ runs
def run_once(args: argparse.Namespace, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """One configuration, in this process: pipeline runs first (so peak RSS is the pipeline's), then stages."""
    opts = _options(args, extra)
    video, audio = _inputs(args)
    from .detectors import choose_detector

    chosen = choose_detector(opts.face.detector, opts.face.detector_model)  # what runs (BlazeFace may fall back)
    load_at_start = _load_avg_1m()
    report: dict[str, Any] = {
        "schema": SCHEMA, "machine": {},  # filled after the pipeline runs: see below
        "config": {"overrides": extra or {}, "set": list(args.set or []), "threads": _threads_of(opts),
                   "video": None if args.synthetic else video, "audio": None if args.synthetic else audio,
                   "synthetic": bool(args.synthetic), "detector": chosen.name, "detector_reason": chosen.reason,
                   "align": opts.face.align, "detect_every": opts.face.detect_every,
                   "detect_width": opts.face.detect_width},
        "pipeline": {}, "stages": {},
    }
    if args.what in ("all", "pipeline"):
        paces = ("realtime", "fast") if args.pace == "both" else (args.pace,)
        for pace in paces:
            try:
                if len(paces) > 1:  # each run in a fresh process, as a deployment runs one pipeline
                    report["pipeline"][pace] = _pipeline_in_worker(args, pace)
                else:
                    report["pipeline"][pace] = bench_pipeline(opts, float(args.duration), pace)
            except AffectliteError as e:
                report["pipeline"][pace] = {"error": str(e)}
        peaks = [p["peak_rss_mb"] for p in report["pipeline"].values()
                 if isinstance(p.get("peak_rss_mb"), (int, float))]
        report["peak_rss_mb"] = max(peaks) if peaks else round(_peak_rss_mb(), 1)
    # after the pipeline runs: the library versions come from importlib.metadata (+1 MB RSS with the email
    # package), the bench's bookkeeping, not the pipeline's; the load average is the one at the start
    report["machine"] = machine_info()
    report["machine"].pop("load_avg_1m", None)
    if load_at_start is not None:
        report["machine"]["load_avg_1m"] = load_at_start
    if args.what in ("all", "stages"):
        report["stages"] = bench_stages(opts, args)
        voice_path = report["stages"].pop("voice_stream", None)  # not a per-call stage: the real-time factor
        if voice_path is not None:
            report["voice_path"] = voice_path
    if "peak_rss_mb" not in report:
        report["peak_rss_mb"] = round(_peak_rss_mb(), 1)
    report["targets"] = check_targets(report)
    return report


def _pipeline_in_worker(args: argparse.Namespace, pace: str) -> dict[str, Any]:
    """One pipeline run at ``pace`` in a fresh ``python -m affectlite.bench`` process (same options): its
    peak RSS is that of a process running one pipeline, not charged with an earlier run's leftovers
    (a second pipeline in the same process peaked ~5 MB higher, 157 vs 151 MB, allocator fragmentation)."""
    sub = argparse.Namespace(**vars(args))
    sub.what, sub.pace = "pipeline", pace
    run: dict[str, Any] = _run_worker(sub, str(getattr(args, "config", "") or ""))["pipeline"][pace]
    return run


def _threads_of(opts: Any) -> dict[str, Any]:
    return {"face": opts.face.num_threads, "voice": opts.voice.num_threads, "text": opts.text.num_threads}


def check_targets(report: dict[str, Any]) -> dict[str, Any]:
    """Compare a report with :data:`TARGETS` (fps from the fast run, latency from the realtime run)."""
    pipe = report.get("pipeline", {})
    fast, rt = pipe.get("fast", {}), pipe.get("realtime", {})
    fps = fast.get("fps") if "fps" in fast else rt.get("fps")
    lat = rt.get("latency_ms_p95") if rt.get("latency_ms_p95") is not None else fast.get("latency_ms_p95")
    rss_runs = [p["peak_rss_mb"] for p in (rt, fast) if isinstance(p.get("peak_rss_mb"), (int, float))]
    rss = max(rss_runs) if rss_runs else None  # the pipeline's peak (stage runs load extra copies)

    def t(value: Any, target: float, higher_is_better: bool) -> dict[str, Any]:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return {"value": None, "target": target, "met": None}
        met = value >= target if higher_is_better else value <= target
        return {"value": value, "target": target, "met": bool(met)}
    return {"fps": t(fps, TARGETS["fps"], True), "latency_ms_p95": t(lat, TARGETS["latency_ms_p95"], False),
            "peak_rss_mb": t(rss, TARGETS["peak_rss_mb"], False)}


def _worker_argv(args: argparse.Namespace, spec: str) -> list[str]:
    argv = [sys.executable, "-m", "affectlite.bench", "--worker", "--json", "--what", args.what, "--pace", args.pace,
            "--duration", str(args.duration), "--iterations", str(args.iterations), "--config", spec]
    if args.threads is not None:
        argv += ["--threads", str(args.threads)]
    for pair in args.set or []:
        argv += ["--set", pair]
    for flag, val in (("--video", args.video), ("--audio", args.audio)):
        if val is not None:
            argv += [flag, val]
    if args.synthetic:
        argv.append("--synthetic")
    if args.no_audio:
        argv.append("--no-audio")
    if args.no_video:
        argv.append("--no-video")
    return argv


def _run_worker(args: argparse.Namespace, spec: str) -> dict[str, Any]:
    env = dict(os.environ)
    here = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = here + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    import subprocess  # here: the pipeline's processes need none of it (bench overhead out of its peak RSS)

    p = subprocess.run(_worker_argv(args, spec), capture_output=True, text=True, env=env, check=False)
    if p.returncode != 0:
        raise AffectliteError(f"bench worker for configuration {spec!r} failed (exit {p.returncode}): "
                              f"{p.stderr.strip()[-2000:]}")
    report: dict[str, Any] = json.loads(p.stdout)
    return report


def _flat(report: dict[str, Any]) -> dict[str, float]:
    """The comparable numbers of a report, flattened (``pipeline.fast.fps``, ``stages.detect.median_ms`` ...)."""
    out: dict[str, float] = {}
    for pace, r in report.get("pipeline", {}).items():
        for k in ("fps", "results_per_s", "latency_ms_p50", "latency_ms_p95", "cpu_ms_per_frame", "peak_rss_mb"):
            v = r.get(k)
            if isinstance(v, (int, float)):
                out[f"pipeline.{pace}.{k}"] = float(v)
    for st, r in report.get("stages", {}).items():
        for k in ("median_ms", "p95_ms", "cpu_median_ms"):
            v = r.get(k)
            if isinstance(v, (int, float)):
                out[f"stages.{st}.{k}"] = float(v)
    if isinstance(report.get("peak_rss_mb"), (int, float)):
        out["peak_rss_mb"] = float(report["peak_rss_mb"])
    for k in ("rtf", "voice_files_bytes"):
        v = report.get("voice_path", {}).get(k)
        if isinstance(v, (int, float)):
            out[f"voice_path.{k}"] = float(v)
    return out


def compare(args: argparse.Namespace, a: str, b: str) -> dict[str, Any]:
    """Run configurations ``a`` and ``b`` interleaved, ``args.repeat`` times each, in fresh processes."""
    import statistics

    parse_config(a)
    parse_config(b)
    runs: dict[str, list[dict[str, Any]]] = {"a": [], "b": []}
    order = []
    for i in range(int(args.repeat)):
        order += [("a", a), ("b", b)] if i % 2 == 0 else [("b", b), ("a", a)]
    for key, spec in order:
        runs[key].append(_run_worker(args, spec))
    flat = {k: [_flat(r) for r in v] for k, v in runs.items()}
    metrics = sorted(set().union(*[set(f) for f in flat["a"] + flat["b"]]))
    rows = {}
    for m in metrics:
        va = [f[m] for f in flat["a"] if m in f]
        vb = [f[m] for f in flat["b"] if m in f]
        if not va or not vb:
            continue
        ma, mb = statistics.median(va), statistics.median(vb)
        rows[m] = {"a": round(ma, 4), "b": round(mb, 4), "ratio_b_over_a": round(mb / ma, 4) if ma else None}
    return {"schema": SCHEMA, "compare": {"a": a, "b": b, "repeat": int(args.repeat),
                                          "order": [k for k, _ in order]},
            "machine": runs["a"][0]["machine"], "metrics": rows, "runs": runs}


# ------------------------------------------------------------------------------------------------ output
def format_report(rep: dict[str, Any]) -> str:
    """A human-readable table of one report."""
    m = rep["machine"]
    c = rep["config"]
    lines = [f"affectlite bench - {m['cpu']} ({m['usable_cores']} usable cores), {m['platform']}, "
             f"Python {m['python']}, LiteRT {m.get('ai-edge-litert', '-')}",
             f"input: {'synthetic' if c['synthetic'] else Path(str(c['video'])).name if c['video'] else '-'}"
             f" + {Path(str(c['audio'])).name if c['audio'] else '-'}; threads {c['threads']}; detector "
             f"{c['detector']} every {c['detect_every']} frame(s) at {c['detect_width']} px"]
    if rep.get("stages"):
        lines += ["", f"{'stage':<16}{'n':>6}{'median ms':>11}{'p95 ms':>9}{'mean ms':>9}{'CPU ms':>9}"]
        for name in STAGES:
            s = rep["stages"].get(name)
            if s is None:
                continue
            if "error" in s:
                lines.append(f"{name:<16}  unavailable: {s['error'][:90]}")
            else:
                lines.append(f"{name:<16}{s['n']:>6}{s['median_ms']:>11.3f}{s['p95_ms']:>9.3f}{s['mean_ms']:>9.3f}"
                             f"{s['cpu_median_ms']:>9.3f}")
    vs = rep.get("voice_path")
    if vs and "error" not in vs:
        lines += ["", f"voice path (VAD {vs['vad']} + {vs['front_end']} + model, hop {vs['hop_s']} s, one thread): "
                  f"real-time factor {vs['rtf']:.4f} CPU (budget {vs['rtf_budget']}), {vs['rtf_wall']:.4f} wall; "
                  f"voice files {vs['voice_files_bytes'] / 1e6:.2f} MB"]
    for pace, p in rep.get("pipeline", {}).items():
        if "error" in p:
            lines += ["", f"pipeline ({pace}): unavailable: {p['error']}"]
            continue
        lat = (f"p50 {p['latency_ms_p50']:.1f} ms, p95 {p['latency_ms_p95']:.1f} ms"
               if p["latency_ms_p95"] is not None else "n/a")
        cpu = f"{p['cpu_ms_per_frame']:.1f} ms" if p["cpu_ms_per_frame"] is not None else "n/a"
        lines += ["", f"pipeline ({pace}, {p['duration_s']:.1f} s): {p['fps']:.1f} frames/s analysed "
                  f"({p['frames_captured']} captured, {p['dropped'].get('frames', 0)} dropped), "
                  f"{p['results_per_s']:.1f} results/s",
                  f"  capture-to-callback (frame results) {lat}; CPU per analysed frame {cpu} "
                  f"(process, {100 * p['cpu_utilisation']:.0f}% of one core); voice results {p['voice_results']}"]
    lines += ["", f"peak RSS: {rep['peak_rss_mb']:.1f} MB (process; with pipeline runs: the larger run's, each in its "
              "own process); "
              "1-min load average "
              f"at start {m.get('load_avg_1m', '-')} on {m['usable_cores']} cores"]
    tg = rep.get("targets", {})
    if tg:
        parts = []
        for key, label, unit in (("fps", "fps >=", ""), ("latency_ms_p95", "p95 latency <=", " ms"),
                                 ("peak_rss_mb", "peak RSS <=", " MB")):
            t = tg[key]
            state = "n/a" if t["met"] is None else ("ok" if t["met"] else "MISSED")
            val = "-" if t["value"] is None else f"{t['value']}"
            parts.append(f"{label} {t['target']:g}{unit}: {val} {state}")
        lines.append("targets: " + "; ".join(parts))
    return "\n".join(lines)


def format_compare(rep: dict[str, Any]) -> str:
    """A table of medians of A and B and their ratio."""
    c = rep["compare"]
    lines = [f"affectlite bench --compare: A = {c['a'] or '(defaults)'!s}, B = {c['b'] or '(defaults)'!s}; "
             f"{c['repeat']} run(s) each, interleaved {' '.join(c['order']).upper()}",
             f"machine: {rep['machine']['cpu']} ({rep['machine']['usable_cores']} usable cores)", "",
             f"{'metric':<36}{'A':>11}{'B':>11}{'B/A':>8}"]
    for name, r in rep["metrics"].items():
        ratio = "-" if r["ratio_b_over_a"] is None else f"{r['ratio_b_over_a']:.2f}"
        lines.append(f"{name:<36}{r['a']:>11.3f}{r['b']:>11.3f}{ratio:>8}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``affectlite bench`` options to ``parser``."""
    parser.add_argument("--video", default=None, help="video file (default: the bundled sample.mp4)")
    parser.add_argument("--audio", default=None, help="WAV/FLAC file (default: the bundled sample.wav)")
    parser.add_argument("--no-audio", action="store_true", help="benchmark without audio")
    parser.add_argument("--no-video", action="store_true", help="benchmark without video")
    parser.add_argument("--synthetic", action="store_true",
                        help="generated frames (no face) and a synthetic signal instead of the sample media")
    parser.add_argument("--what", choices=("all", "stages", "pipeline"), default="all", help="what to measure")
    parser.add_argument("--pace", choices=("both", "realtime", "fast"), default="both",
                        help="pipeline runs: paced like a camera, as fast as possible, or both (default)")
    parser.add_argument("--duration", type=float, default=9.6, help="seconds per pipeline run (files loop)")
    parser.add_argument("--iterations", type=int, default=200, help="timed calls per stage")
    parser.add_argument("--threads", type=int, default=2, help="interpreter threads per model (default 2)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="option override for every run, e.g. face.detect_every=2")
    parser.add_argument("--compare", nargs=2, metavar=("A", "B"),
                        help='compare two configurations, e.g. --compare threads=1 threads=2 or '
                             '--compare "face.model_path=face_float.tflite" ""')
    parser.add_argument("--repeat", type=int, default=3, help="runs per configuration with --compare")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--output", metavar="FILE", help="also write the JSON report to FILE")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--config", default="", help=argparse.SUPPRESS)


def _validate(args: argparse.Namespace) -> None:
    if not args.duration > 0 or args.duration == float("inf"):  # NaN fails the comparison too
        raise ConfigError(f"--duration must be > 0 seconds, got {args.duration}")
    if getattr(args, "output", None) and Path(args.output).is_dir():
        raise ConfigError(f"--output {args.output} is a folder; give a file name, "
                          f"e.g. {Path(args.output) / 'bench.json'}")
    if args.iterations < 1:
        raise ConfigError(f"--iterations must be >= 1, got {args.iterations}")
    if args.repeat < 1:
        raise ConfigError(f"--repeat must be >= 1, got {args.repeat}")
    if args.no_audio and args.no_video:
        raise ConfigError("--no-audio and --no-video together leave nothing to benchmark")
    for flag in ("video", "audio"):
        p = getattr(args, flag)
        if p and not args.synthetic and not Path(p).exists():
            raise InputError(f"--{flag} {p}: no such file")
    if args.audio and not args.synthetic and not args.no_audio:
        from ._audio_stream import open_audio_blocks

        try:  # decode the header and the first block now: a benchmark without its audio would say "ok"
            open_audio_blocks(args.audio).close()
        except AffectliteError as e:
            raise InputError(f"--audio {args.audio}: {e}") from None


def run(args: argparse.Namespace) -> int:
    """Run ``affectlite bench`` with parsed arguments; returns the exit code (1 when ``--check`` fails)."""
    _validate(args)
    if args.compare:
        rep = compare(args, args.compare[0], args.compare[1])
        failed = False
    else:
        rep = run_once(args, parse_config(args.config) if args.config else None)
        failed = any(t["met"] is False for t in rep["targets"].values())
    body = json.dumps(rep, indent=2, default=str)
    if args.output:
        from ._io import atomic_write_text

        atomic_write_text(args.output, body + "\n")
    if args.json:
        print(body, flush=True)
    else:
        print(format_compare(rep) if args.compare else format_report(rep), flush=True)
    return 1 if (args.check and failed) else 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m affectlite.bench``: the same as ``affectlite bench``."""
    import logging

    p = argparse.ArgumentParser(prog="affectlite bench", description=__doc__.split("\n\n")[0])
    add_arguments(p)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return run(args)
    except AffectliteError as e:
        print(f"affectlite bench: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
