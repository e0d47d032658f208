"""Produce the figures of docs/benchmarks.md: run ``affectlite bench`` in the documented configurations, keep
the JSON reports, and print the Markdown tables.

    PYTHONPATH=sdk python tests/benchmarks/bench_figures.py --out-dir /tmp/bench   # ~3-4 minutes on 2 cores

Runs, each in a fresh process:
1. the default configuration (2 interpreter threads, sample video + speech): stages + paced and unpaced
   pipeline runs;
2. ``--compare threads=1 threads=2`` (interleaved, 3 runs each);
3. ``--compare face.detect_every=1 face.detect_every=3`` (detector on every frame vs every third);
4. optional ``--float-face PATH``: ``--compare face.model_path=PATH ""`` (float vs the shipped int8 model).

Not collected by pytest (no ``test_`` prefix): figures are measurements, not pass/fail checks.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def _bench(argv: list[str], out: Path) -> dict[str, Any]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "sdk"), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, "-m", "affectlite.bench", "--json", "--output", str(out), *argv]
    print("$", " ".join(cmd[1:]), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    rep: dict[str, Any] = json.loads(out.read_text())
    return rep


def _fmt(v: Any, nd: int = 1) -> str:
    return "-" if v is None else f"{v:.{nd}f}" if isinstance(v, float) else str(v)


def markdown_single(rep: dict[str, Any]) -> str:
    m = rep["machine"]
    lines = [f"Machine: {m['cpu']}, {m['usable_cores']} usable cores, {m['platform']}, Python {m['python']}, "
             f"numpy {m['numpy']}, LiteRT {m.get('ai-edge-litert', '-')}, OpenCV "
             f"{m.get('opencv-python-headless', m.get('opencv-python', '-'))}; 1-min load average at start "
             f"{m.get('load_avg_1m', '-')}.", "",
             "| stage | median ms | p95 ms |", "|---|---:|---:|"]
    for name, s in rep["stages"].items():
        if "error" in s:
            lines.append(f"| {name} | n/a | n/a |")
        else:
            lines.append(f"| {name} | {s['median_ms']:.2f} | {s['p95_ms']:.2f} |")
    lines += ["", "| pipeline run | frames/s analysed | dropped frames | capture-to-callback p50 / p95 ms | "
              "CPU ms per frame | peak RSS MB |", "|---|---:|---:|---:|---:|---:|"]
    for pace, p in rep["pipeline"].items():
        if "error" in p:
            lines.append(f"| {pace} | error: {p['error']} | | | | |")
            continue
        lines.append(f"| {pace} ({p['duration_s']:.1f} s) | {p['fps']:.1f} | {p['dropped'].get('frames', 0)} | "
                     f"{_fmt(p['latency_ms_p50'])} / {_fmt(p['latency_ms_p95'])} | {_fmt(p['cpu_ms_per_frame'])} | "
                     f"{p['peak_rss_mb']:.0f} |")
    lines += ["", "| target | value | met |", "|---|---:|---|"]
    for k, t in rep["targets"].items():
        lines.append(f"| {k} {'>=' if k == 'fps' else '<='} {t['target']:g} | {_fmt(t['value'])} | "
                     f"{'yes' if t['met'] else 'no' if t['met'] is False else 'n/a'} |")
    return "\n".join(lines)


def markdown_compare(rep: dict[str, Any], keys: list[str]) -> str:
    c = rep["compare"]
    lines = [f"A = `{c['a'] or 'defaults'}`, B = `{c['b'] or 'defaults'}`, {c['repeat']} runs each, interleaved; "
             "medians.", "", "| metric | A | B | B/A |", "|---|---:|---:|---:|"]
    for k in keys:
        r = rep["metrics"].get(k)
        if r is None:
            continue
        ratio = "-" if r["ratio_b_over_a"] is None else f"{r['ratio_b_over_a']:.2f}"
        lines.append(f"| {k} | {r['a']:.2f} | {r['b']:.2f} | {ratio} |")
    return "\n".join(lines)


KEYS = ["pipeline.fast.fps", "pipeline.realtime.fps", "pipeline.realtime.latency_ms_p95",
        "pipeline.fast.cpu_ms_per_frame", "stages.detect.median_ms", "stages.detect.cpu_median_ms",
        "stages.face_model.median_ms", "stages.face_model.cpu_median_ms", "stages.voice_model.median_ms",
        "stages.text.median_ms", "peak_rss_mb"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out-dir", default="/tmp/affectlite-bench", help="where the JSON reports go")
    p.add_argument("--duration", default="9.6", help="seconds per pipeline run")
    p.add_argument("--repeat", default="3", help="runs per configuration in the comparisons")
    p.add_argument("--float-face", help="a float face model to compare with the shipped int8 one")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="passed to every bench run")
    args = p.parse_args()
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sets = [x for kv in args.set for x in ("--set", kv)]
    common = ["--duration", args.duration, *sets]
    main_rep = _bench([*common, "--threads", "2"], out / "default.json")
    print("## Default configuration (2 threads)\n")
    print(markdown_single(main_rep))
    short = ["--duration", str(min(float(args.duration), 5.0)), "--iterations", "100", "--repeat", args.repeat, *sets]
    for name, a, b in (("threads", "threads=1", "threads=2"),
                       ("detect_every", "face.detect_every=1", "face.detect_every=3")):
        rep = _bench([*short, "--compare", a, b], out / f"compare_{name}.json")
        print(f"\n## {a} vs {b}\n")
        print(markdown_compare(rep, KEYS))
    if args.float_face:
        rep = _bench([*short, "--compare", f"face.model_path={args.float_face}", ""], out / "compare_float.json")
        print("\n## float vs int8 face model\n")
        print(markdown_compare(rep, KEYS))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
