"""Where the pipeline bench's peak RSS goes: imports one by one, then one pipeline run sampled from smaps.

Runs the configuration of ``affectlite bench --what pipeline`` (sample video through OpenCV, sample WAV,
all default models, 2 interpreter threads) in this process for ``--duration`` seconds at ``--pace`` and
prints:

* the RSS after each import (numpy, affectlite, cv2, the LiteRT interpreter, ...), anonymous and file-backed
  apart; what the pipeline imports later is then already counted;
* at the sampled peak of the run (``/proc/self/smaps`` every 50 ms): RSS per mapped file (shared libraries,
  models) and the anonymous memory split into the main heap, the malloc arenas of other threads
  (a ``rw-p`` mapping followed by ``---p`` filling 64 MiB), and the rest (numpy buffers, thread stacks...);
* which heavy optional modules were loaded (cv2, soundfile, hashlib...).

Linux only. Usage::

    PYTHONPATH=sdk python tests/benchmarks/rss_breakdown.py [--pace fast] [--duration 10] [--json]
"""

from __future__ import annotations

import argparse
import collections
import importlib
import json
import sys
import threading
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "sdk"))

IMPORTS = ("numpy", "affectlite", "affectlite.pipeline", "cv2", "ai_edge_litert.interpreter")
WATCH = ("cv2", "soundfile", "hashlib", "scipy", "tensorflow", "PIL")


def status() -> dict[str, float]:
    out = {}
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                out[k] = int(v.split()[0]) / 1024.0
    return out


def smaps() -> dict[str, float]:
    """RSS in MB per mapped file name, plus ``[heap]``, ``arenas`` and ``other anon``."""
    maps: list[dict[str, Any]] = []
    with open("/proc/self/smaps", encoding="utf-8", errors="replace") as f:
        for line in f:
            p = line.split()
            if "-" in p[0] and not p[0].endswith(":"):
                a, b = (int(x, 16) for x in p[0].split("-"))
                maps.append({"a": a, "b": b, "perm": p[1], "name": p[5] if len(p) > 5 else "", "rss": 0})
            elif p[0] == "Rss:":
                maps[-1]["rss"] = int(p[1])
    groups: collections.Counter[str] = collections.Counter()
    for i, m in enumerate(maps):
        name = m["name"]
        if not name:
            nxt = maps[i + 1] if i + 1 < len(maps) else None
            arena = (m["perm"] == "rw-p" and nxt is not None and nxt["perm"] == "---p" and not nxt["name"]
                     and nxt["a"] == m["b"] and nxt["b"] - m["a"] == 64 << 20)
            name = "arenas (malloc, other threads)" if arena else "other anon"
        groups[name.rsplit("/", 1)[-1]] += m["rss"]
    return {k: round(v / 1024.0, 1) for k, v in groups.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pace", choices=("realtime", "fast"), default="fast")
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    rep: dict[str, Any] = {"imports": []}
    prev = status()
    rep["python_mb"] = round(prev["VmRSS"], 1)
    for mod in IMPORTS:
        try:
            importlib.import_module(mod)
        except ImportError as e:
            rep["imports"].append({"module": mod, "error": str(e)})
            continue
        s = status()
        rep["imports"].append({"module": mod, "rss_mb": round(s["VmRSS"], 1),
                               "anon_mb": round(s["RssAnon"] - prev["RssAnon"], 1),
                               "file_mb": round(s["RssFile"] - prev["RssFile"], 1)})
        prev = s

    from affectlite.bench import _options, bench_pipeline

    ns = argparse.Namespace(set=[], threads=a.threads, video=None, audio=None, no_audio=False, no_video=False,
                            synthetic=False)
    opts = _options(ns, None)
    best: list[Any] = [0.0, {}, {}]
    stop = threading.Event()

    def sampler() -> None:
        while not stop.is_set():
            s = status()
            if s["VmRSS"] > best[0]:
                best[:] = [s["VmRSS"], s, smaps()]
            stop.wait(0.05)

    th = threading.Thread(target=sampler, daemon=True)
    th.start()
    run = bench_pipeline(opts, a.duration, a.pace)
    stop.set()
    th.join()
    rep["run"] = {k: run.get(k) for k in ("pace", "fps", "latency_ms_p95", "peak_rss_mb")}
    s, groups = best[1], best[2]
    rep["sampled_peak"] = {"rss_mb": round(s["VmRSS"], 1), "anon_mb": round(s["RssAnon"], 1),
                           "file_mb": round(s["RssFile"], 1)}
    rep["by_mapping_mb"] = dict(sorted(groups.items(), key=lambda kv: -kv[1])[: a.top])
    rep["loaded"] = [m for m in WATCH if m in sys.modules]
    if a.json:
        print(json.dumps(rep, indent=2))
        return 0
    print(f"python {rep['python_mb']} MB")
    for r in rep["imports"]:
        print(f"  import {r['module']:<28} " + (f"error {r['error']}" if "error" in r else
              f"rss {r['rss_mb']:6.1f} MB (anon +{r['anon_mb']:.1f}, file +{r['file_mb']:.1f})"))
    print(f"pipeline run: {rep['run']}")
    sp = rep["sampled_peak"]
    print(f"sampled peak {sp['rss_mb']} MB (anon {sp['anon_mb']}, file-backed {sp['file_mb']}):")
    for k, v in rep["by_mapping_mb"].items():
        print(f"  {v:6.1f} MB  {k}")
    print(f"loaded: {', '.join(rep['loaded']) or '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
