"""Throughput against the peer: the ``fer`` package and ``affectlite bench --pace fast`` on one video, side by side.

Usage::

    PYTHONPATH=sdk python tests/benchmarks/peer_fer.py [--video V.mp4] [--repeat 3] [--out peer.json]
        [--venv ~/.cache/affectlite-bench/fer-venv] [--set KEY=VALUE ...]

What it does, in one invocation on the same machine state:

1. Makes (or reuses) a virtual environment outside the repository (default
   ``~/.cache/affectlite-bench/fer-venv``, or ``$AFFECTLITE_BENCH_CACHE/fer-venv``) and installs
   ``fer==25.10.3`` into it with its real dependencies (TensorFlow, PyTorch, OpenCV contrib, ...: several GB
   and several minutes, once; ``--no-install`` refuses instead).
2. Checks the video (default: the shipped ``sample.mp4``, 640x480, 30 fps, 288 frames) and writes a small
   runner for ``fer`` into a temporary folder.
3. Runs, ``--repeat`` times each, interleaved (fer, affectlite, affectlite, fer, ...), each in a fresh process:

   - **fer**: ``FER()`` with its defaults (OpenCV Haar cascade on every frame + its TFLite mini-Xception),
     as a new user would; the loop decodes each frame with OpenCV and calls ``detect_emotions`` on it, every
     frame of the video once. Measured: load time (``import fer`` + ``FER()``), frames/s, process CPU time
     per frame (user + system, all threads, from ``getrusage``), per-frame call time p50/p95, peak RSS, share
     of frames with a face.
   - **affectlite**: ``affectlite bench --what pipeline --pace fast --no-audio`` on the same video for
     ``--duration`` seconds (the file loops): the live pipeline with every frame analysed (the reader waits
     for the face thread), detection every ``face.detect_every = 2`` frames (tracking in between), default
     detector. Measured by the bench: frames/s, process CPU per analysed frame, capture-to-callback p50/p95
     of frame results, peak RSS, pipeline start-up, share of frame results with a face; plus
     ``import affectlite`` timed in its own process. ``--realtime`` adds a run paced like a 30 fps camera
     (capture-to-callback latency when the pipeline keeps up, as in ``affectlite bench``'s targets).

4. Prints a table (medians over the repeats), the ratios affectlite / fer of frames/s and fer / affectlite of
   CPU per frame, the issue-18 goals (>= 10x fer's frames/s, p95 capture-to-callback <= 40 ms, peak RSS <=
   150 MB) and a ready-to-paste Markdown table; ``--out`` keeps everything as JSON.

No timings are asserted anywhere: they depend on the machine and its load (the JSON names both).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SDK = ROOT / "sdk"
FER_VERSION = "25.10.3"
DEFAULT_VIDEO = SDK / "affectlite" / "data" / "sample.mp4"
GOALS = {"fps_ratio": 10.0, "latency_ms_p95": 40.0, "peak_rss_mb": 150.0}

#: The fer side, run by the venv's Python: argv = video path, frame limit (0: all); prints one JSON line.
FER_RUNNER = r'''
import json, os, resource, sys, time
t0 = time.perf_counter()
c0 = time.process_time()
try:
    from fer.fer import FER          # fer 25.x
except ImportError:                  # older releases export it at the top level
    from fer import FER
import cv2
import numpy as np
detector = FER()                     # defaults: Haar cascade + the packaged TFLite mini-Xception
load_s = time.perf_counter() - t0
load_cpu_s = time.process_time() - c0
video, limit = sys.argv[1], int(sys.argv[2])
cap = cv2.VideoCapture(video)
ok, first = cap.read()
if not ok:
    raise SystemExit(f"fer runner: cannot read {video}")
detector.detect_emotions(first)      # warm-up call (not timed, as for affectlite's pipeline)
cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
calls, faces, frames = [], 0, 0
r0 = resource.getrusage(resource.RUSAGE_SELF)
w0 = time.perf_counter()
while limit <= 0 or frames < limit:
    ok, frame = cap.read()
    if not ok:
        break
    t = time.perf_counter()
    res = detector.detect_emotions(frame)
    calls.append((time.perf_counter() - t) * 1000.0)
    faces += bool(res)
    frames += 1
wall = time.perf_counter() - w0
r1 = resource.getrusage(resource.RUSAGE_SELF)
cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
calls.sort()
import fer as _fer
print(json.dumps({
    "fer": getattr(_fer, "__version__", "?"), "frames": frames, "wall_s": round(wall, 3),
    "fps": round(frames / wall, 2) if wall > 0 else None,
    "cpu_ms_per_frame": round(1000.0 * cpu / frames, 2) if frames else None,
    "cpu_utilisation": round(cpu / wall, 3) if wall > 0 else None,
    "call_ms_p50": round(float(np.percentile(calls, 50)), 2) if calls else None,
    "call_ms_p95": round(float(np.percentile(calls, 95)), 2) if calls else None,
    "frames_with_face": round(faces / frames, 4) if frames else None,
    "load_s": round(load_s, 3), "load_cpu_s": round(load_cpu_s, 3),
    "peak_rss_mb": round(r1.ru_maxrss / 1024.0, 1),
}))
'''

IMPORT_PROBE = ("import time; t = time.perf_counter(); import affectlite, affectlite.pipeline; "
                "print(round(time.perf_counter() - t, 3))")


def default_venv() -> Path:
    """``$AFFECTLITE_BENCH_CACHE/fer-venv`` or ``~/.cache/affectlite-bench/fer-venv`` (outside the repository)."""
    base = os.environ.get("AFFECTLITE_BENCH_CACHE")
    return (Path(base) if base else Path.home() / ".cache" / "affectlite-bench") / "fer-venv"


def venv_python(venv: Path) -> Path:
    """The interpreter of a virtual environment (POSIX or Windows layout)."""
    for p in (venv / "bin" / "python", venv / "Scripts" / "python.exe"):
        if p.exists():
            return p
    return venv / "bin" / "python"


def installed_fer(py: Path) -> str | None:
    """The ``fer`` version importable by ``py`` (``None``: not installed or broken)."""
    if not py.exists():
        return None
    p = subprocess.run([str(py), "-c", "from importlib.metadata import version; print(version('fer'))"],
                       capture_output=True, text=True, check=False)
    return p.stdout.strip() if p.returncode == 0 and p.stdout.strip() else None


def ensure_fer(venv: Path, version: str = FER_VERSION, install: bool = True) -> Path:
    """Make sure ``venv`` has ``fer==version`` with its dependencies; returns the venv's Python.

    Raises:
        SystemExit: it is missing and ``install`` is off, or the installation fails.
    """
    py = venv_python(venv)
    have = installed_fer(py)
    if have == version:
        return py
    if not install:
        raise SystemExit(f"{venv} has no fer=={version} (found {have!r}); run without --no-install to create it")
    if not py.exists():
        print(f"creating the virtual environment {venv}", file=sys.stderr, flush=True)
        venv.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        py = venv_python(venv)
    print(f"installing fer=={version} and its dependencies into {venv} (TensorFlow, PyTorch...: takes a while)",
          file=sys.stderr, flush=True)
    r = subprocess.run([str(py), "-m", "pip", "install", f"fer=={version}"], check=False)
    if r.returncode != 0 or installed_fer(py) != version:
        raise SystemExit(f"pip install fer=={version} into {venv} failed (exit {r.returncode}); see the output above")
    return py


def video_info(path: Path) -> dict[str, Any]:
    """Width, height, fps and frame count of a video (OpenCV).

    Raises:
        SystemExit: the file cannot be opened.
    """
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise SystemExit(f"--video {path}: cannot open")
        info = {"width": int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), "height": int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
                "fps": round(float(cap.get(cv2.CAP_PROP_FPS)), 3), "frames": int(cap.get(cv2.CAP_PROP_FRAME_COUNT))}
    finally:
        cap.release()
    return info


def run_fer(py: Path, video: Path, limit: int, workdir: Path) -> dict[str, Any]:
    """One fer run in a fresh process; the runner's JSON.

    Raises:
        SystemExit: the runner fails.
    """
    runner = workdir / "fer_runner.py"
    if not runner.exists():
        runner.write_text(FER_RUNNER)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    p = subprocess.run([str(py), str(runner), str(video), str(limit)], capture_output=True, text=True, env=env,
                       cwd=workdir, check=False)
    if p.returncode != 0:
        raise SystemExit(f"fer run failed (exit {p.returncode}):\n{p.stderr.strip()[-3000:]}")
    out: dict[str, Any] = json.loads(p.stdout.strip().splitlines()[-1])
    return out


def affectlite_argv(video: Path, duration: float, threads: int, sets: Sequence[str],
                    realtime: bool = False) -> list[str]:
    """The ``affectlite bench`` command line of the affectlite side (``face.detect_every=2`` unless set;
    ``realtime``: also a run paced like a camera, for its latency)."""
    argv = [sys.executable, "-m", "affectlite.bench", "--what", "pipeline", "--pace", "both" if realtime else "fast",
            "--no-audio",
            "--video", str(video), "--duration", str(duration), "--threads", str(threads), "--json"]
    if not any(s.strip().startswith("face.detect_every=") for s in sets):
        argv += ["--set", "face.detect_every=2"]
    for s in sets:
        argv += ["--set", s]
    return argv


def _env_with_sdk() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(SDK) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def run_affectlite(video: Path, duration: float, threads: int, sets: Sequence[str],
                   realtime: bool = False) -> dict[str, Any]:
    """One ``affectlite bench --pace fast`` run in a fresh process, plus ``import affectlite`` timed alone.

    With ``realtime`` the same process first runs the pipeline paced like a 30 fps camera and its
    capture-to-callback latency is reported too (``realtime_latency_ms_p95``); the peak RSS then covers both.

    Raises:
        SystemExit: the bench fails or reports an error.
    """
    env = _env_with_sdk()
    imp = subprocess.run([sys.executable, "-c", IMPORT_PROBE], capture_output=True, text=True, env=env, check=False)
    p = subprocess.run(affectlite_argv(video, duration, threads, sets, realtime), capture_output=True, text=True,
                       env=env, check=False)
    if p.returncode != 0:
        raise SystemExit(f"affectlite bench failed (exit {p.returncode}):\n{p.stderr.strip()[-3000:]}")
    rep = json.loads(p.stdout)
    fast = rep["pipeline"]["fast"]
    if "error" in fast:
        raise SystemExit(f"affectlite bench: {fast['error']}")
    cfg = rep["config"]
    return {"fps": fast["fps"], "frames": fast["frames_analysed"], "frames_captured": fast["frames_captured"],
            "dropped": fast["dropped"].get("frames", 0), "cpu_ms_per_frame": fast["cpu_ms_per_frame"],
            "cpu_utilisation": fast["cpu_utilisation"], "latency_ms_p50": fast["latency_ms_p50"],
            "latency_ms_p95": fast["latency_ms_p95"], "peak_rss_mb": fast["peak_rss_mb"],
            "startup_s": fast["startup_s"], "frames_with_face": fast.get("frame_results_with_face"),
            "import_s": float(imp.stdout.strip()) if imp.returncode == 0 and imp.stdout.strip() else None,
            "detector": cfg["detector"], "detect_every": cfg["detect_every"], "detect_width": cfg["detect_width"],
            "threads": cfg["threads"], "machine": rep["machine"],
            "realtime_latency_ms_p95": rep["pipeline"].get("realtime", {}).get("latency_ms_p95"),
            "realtime_fps": rep["pipeline"].get("realtime", {}).get("fps")}


def _median(runs: Sequence[dict[str, Any]], key: str) -> float | None:
    vals = [float(r[key]) for r in runs if isinstance(r.get(key), (int, float))]
    return round(statistics.median(vals), 3) if vals else None


def summarise(fer_runs: Sequence[dict[str, Any]], al_runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Medians per side, the ratios and the goals of issue 18."""
    fer = {k: _median(fer_runs, k) for k in ("fps", "cpu_ms_per_frame", "call_ms_p95", "peak_rss_mb", "load_s",
                                             "frames_with_face", "cpu_utilisation")}
    al = {k: _median(al_runs, k) for k in ("fps", "cpu_ms_per_frame", "latency_ms_p50", "latency_ms_p95",
                                           "peak_rss_mb", "startup_s", "import_s", "cpu_utilisation",
                                           "frames_with_face", "realtime_latency_ms_p95")}
    fps_ratio = round(al["fps"] / fer["fps"], 2) if al["fps"] and fer["fps"] else None
    cpu_ratio = (round(fer["cpu_ms_per_frame"] / al["cpu_ms_per_frame"], 2)
                 if al["cpu_ms_per_frame"] and fer["cpu_ms_per_frame"] else None)
    every = al_runs[0]["detect_every"] if al_runs else None
    goals = {
        "fps_ratio": {"value": fps_ratio, "goal": f">= {GOALS['fps_ratio']:g}",
                      "met": None if fps_ratio is None else fps_ratio >= GOALS["fps_ratio"]},
        "detect_every": {"value": every, "goal": "<= 2", "met": None if every is None else every <= 2},
        "latency_ms_p95": {"value": al["latency_ms_p95"], "goal": f"<= {GOALS['latency_ms_p95']:g}",
                           "met": None if al["latency_ms_p95"] is None
                           else al["latency_ms_p95"] <= GOALS["latency_ms_p95"]},
        "peak_rss_mb": {"value": al["peak_rss_mb"], "goal": f"<= {GOALS['peak_rss_mb']:g}",
                        "met": None if al["peak_rss_mb"] is None else al["peak_rss_mb"] <= GOALS["peak_rss_mb"]},
    }
    return {"fer": fer, "affectlite": al, "fps_ratio": fps_ratio, "cpu_ratio": cpu_ratio, "goals": goals}


def _f(v: Any, fmt: str = ".1f") -> str:
    return "-" if v is None else format(v, fmt)


def _pct(v: Any) -> str:
    return "-" if v is None else f"{100 * v:.0f}"


def markdown(summary: dict[str, Any], meta: dict[str, Any]) -> str:
    """The ready-to-paste Markdown table."""
    f, a = summary["fer"], summary["affectlite"]
    m = meta["machine"]
    lines = [f"Video `{meta['video_name']}` ({meta['video']['width']}x{meta['video']['height']}, "
             f"{meta['video']['frames']} frames); {meta['repeat']} run(s) each, interleaved, medians; {m['cpu']}, "
             f"{m['usable_cores']} usable cores, {m['platform']}, Python {m['python']}; 1-min load average at start "
             f"{meta['load_avg_start']}.", "",
             f"| | fer {meta['fer_version']} (Haar every frame + TFLite mini-Xception) | affectlite "
             f"(`bench --pace fast`, {meta['affectlite_detector']} every {meta['detect_every']} frames, tracking "
             f"between) | ratio |", "|---|---:|---:|---:|",
             f"| frames/s, every frame analysed | {_f(f['fps'])} | {_f(a['fps'])} | "
             f"**{_f(summary['fps_ratio'], '.2f')}x** |",
             f"| CPU ms per frame (process, all threads) | {_f(f['cpu_ms_per_frame'])} | {_f(a['cpu_ms_per_frame'])} | "
             f"{_f(summary['cpu_ratio'], '.2f')}x less |",
             f"| p95 ms per frame (fer: `detect_emotions` call; affectlite: capture to callback) | "
             f"{_f(f['call_ms_p95'])} | {_f(a['latency_ms_p95'])} | |",
             *([f"| p95 capture to callback, paced like a 30 fps camera, ms | - | "
                f"{_f(a['realtime_latency_ms_p95'])} | |"] if a.get("realtime_latency_ms_p95") is not None else []),
             f"| peak RSS MB | {_f(f['peak_rss_mb'], '.0f')} | {_f(a['peak_rss_mb'], '.0f')} | |",
             f"| frames with a face found % | {_pct(f['frames_with_face'])} | {_pct(a['frames_with_face'])} | |",
             f"| start-up s (fer: import + `FER()`; affectlite: import + pipeline with models loaded) | "
             f"{_f(f['load_s'], '.2f')} | {_f((a['import_s'] or 0) + (a['startup_s'] or 0), '.2f')} | |", "",
             "| goal (issue 18) | value | met |", "|---|---:|---|"]
    for k, g in summary["goals"].items():
        met = "-" if g["met"] is None else ("yes" if g["met"] else "**no**")
        lines.append(f"| {k} {g['goal']} | {_f(g['value'], '.2f') if isinstance(g['value'], float) else g['value']} "
                     f"| {met} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns 0 (the goals are reported, not enforced, unless ``--check``)."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--video", type=Path, default=DEFAULT_VIDEO, help="640x480 video (default: the shipped sample)")
    ap.add_argument("--venv", type=Path, default=None, help=f"fer's virtual environment (default {default_venv()})")
    ap.add_argument("--fer-version", default=FER_VERSION, help=f"fer release (default {FER_VERSION})")
    ap.add_argument("--no-install", action="store_true", help="fail instead of creating the venv / installing fer")
    ap.add_argument("--frames", type=int, default=0, help="fer: analyse at most this many frames (0: all, one pass)")
    ap.add_argument("--duration", type=float, default=9.6, help="affectlite bench seconds (default 9.6; file loops)")
    ap.add_argument("--threads", type=int, default=2, help="affectlite interpreter threads (default 2)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="affectlite option override, repeatable (default adds face.detect_every=2)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per side, interleaved (default 1)")
    ap.add_argument("--realtime", action="store_true",
                    help="affectlite also runs paced like a camera (its p95 latency is reported as well)")
    ap.add_argument("--out", type=Path, default=None, help="write the JSON report here (and .md next to it)")
    ap.add_argument("--allow-any-size", action="store_true", help="do not insist on a 640x480 video")
    ap.add_argument("--check", action="store_true", help="exit 1 when a goal of issue 18 is missed")
    a = ap.parse_args(argv)
    if a.repeat < 1 or a.duration <= 0:
        raise SystemExit("--repeat must be >= 1 and --duration > 0")
    if not a.video.is_file():
        raise SystemExit(f"--video {a.video}: no such file")
    info = video_info(a.video)
    if (info["width"], info["height"]) != (640, 480) and not a.allow_any_size:
        raise SystemExit(f"--video {a.video} is {info['width']}x{info['height']}; the comparison is defined on "
                         f"640x480 (--allow-any-size to run anyway)")
    venv = a.venv or default_venv()
    py = ensure_fer(venv, a.fer_version, install=not a.no_install)
    sys.path.insert(0, str(SDK))
    from affectlite.bench import machine_info

    load0 = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    fer_runs: list[dict[str, Any]] = []
    al_runs: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="affectlite-peer-") as tmp:
        for i in range(a.repeat):
            order = ("fer", "affectlite") if i % 2 == 0 else ("affectlite", "fer")
            for side in order:
                if side == "fer":
                    r = run_fer(py, a.video.resolve(), a.frames, Path(tmp))
                    fer_runs.append(r)
                    print(f"  fer: {r['fps']} frames/s, {r['cpu_ms_per_frame']} CPU ms/frame, "
                          f"{r['peak_rss_mb']} MB", file=sys.stderr, flush=True)
                else:
                    r = run_affectlite(a.video.resolve(), a.duration, a.threads, a.set, a.realtime)
                    al_runs.append(r)
                    print(f"  affectlite: {r['fps']} frames/s, {r['cpu_ms_per_frame']} CPU ms/frame, p95 "
                          f"{r['latency_ms_p95']} ms, {r['peak_rss_mb']} MB", file=sys.stderr, flush=True)
    summary = summarise(fer_runs, al_runs)
    meta = {"video": info, "video_name": a.video.name, "repeat": a.repeat, "fer_version": fer_runs[0]["fer"],
            "affectlite_detector": al_runs[0]["detector"], "detect_every": al_runs[0]["detect_every"],
            "machine": machine_info(), "load_avg_start": load0, "seconds": round(time.perf_counter() - t0, 1),
            "affectlite_command": " ".join(affectlite_argv(Path("VIDEO"), a.duration, a.threads, a.set,
                                                           a.realtime)[1:])}
    md = markdown(summary, meta)
    print(md)
    if a.out is not None:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps({"schema": "affectlite.peer_fer/1", "meta": meta, "summary": summary,
                                     "runs": {"fer": fer_runs, "affectlite": al_runs}}, indent=2) + "\n")
        a.out.with_suffix(".md").write_text(md)
    missed = any(g["met"] is False for g in summary["goals"].values())
    return 1 if (a.check and missed) else 0


if __name__ == "__main__":
    raise SystemExit(main())
