"""Peak memory of the CLI on a long audio file (issue 27): ``classify --audio`` and ``run --audio`` on a
generated 2 h WAV must stay within the runtime's 150 MB RSS budget (before streaming: 7.9 GB and 1.4 GB).

The WAV (16 kHz mono int16, 230 MB for 2 h) is written block by block into ``--dir`` (a temp folder by
default): quiet noise with a voiced 150 Hz burst every ``--burst-every`` seconds, so the voice model runs
on some windows, not only the VAD. Each command runs in its own process; its peak RSS is that process's
``VmHWM`` (``/proc/self/status``) read at exit: unlike ``ru_maxrss`` it does not count the parent's memory
copied at fork time. Prints a JSON report; exits 1 when a peak is over ``--budget-mb``.

Usage::

    PYTHONPATH=sdk python tests/benchmarks/long_audio_rss.py              # 2 h, both commands
    PYTHONPATH=sdk python tests/benchmarks/long_audio_rss.py --hours 0.1 --run-duration 30
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def write_long_wav(path: Path, hours: float, burst_every_s: float = 60.0, seed: int = 0) -> Path:
    """A ``hours``-long 16 kHz mono WAV, written one minute at a time (never held whole in memory)."""
    rng = np.random.default_rng(seed)
    rate, n_total = 16000, int(hours * 3600 * 16000)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        done = 0
        while done < n_total:
            n = min(rate * 60, n_total - done)
            t = (done + np.arange(n)) / rate
            x = rng.normal(0, 0.002, n)
            if burst_every_s > 0:
                burst = (t % burst_every_s) < 2.0  # 2 s of a voiced tone with harmonics each period
                x += burst * 0.2 * (np.sin(2 * np.pi * 150 * t) + 0.5 * np.sin(2 * np.pi * 300 * t)
                                    + 0.25 * np.sin(2 * np.pi * 450 * t))
            w.writeframes(np.clip(x * 32767, -32768, 32767).astype("<i2").tobytes())
            done += n
    return path


_WRAP = ("import atexit, runpy, sys\n"
         "def hwm():\n"
         "    for ln in open('/proc/self/status'):\n"
         "        if ln.startswith('VmHWM:'):\n"
         "            print('@@VmHWM', int(ln.split()[1]), file=sys.stderr, flush=True)\n"
         "atexit.register(hwm)\n"
         "sys.argv = ['affectlite'] + sys.argv[1:]\n"
         "runpy.run_module('affectlite.cli', run_name='__main__')\n")


def peak_rss_mb(args: list[str], timeout_s: float) -> dict[str, Any]:
    """Run ``affectlite ARGS`` in a child process; its exit code, wall time and peak RSS (MB)."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'sdk'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    t0 = time.monotonic()
    try:
        p = subprocess.run([sys.executable, "-c", _WRAP, *args], capture_output=True, env=env, timeout=timeout_s,
                           check=False)
        code, err, out = p.returncode, p.stderr.decode(errors="replace"), p.stdout.decode(errors="replace")
    except subprocess.TimeoutExpired as e:
        code, err, out = 124, (e.stderr or b"").decode(errors="replace"), ""
    stats = None
    for ln in out.splitlines()[-1:]:  # `run` ends with its stats line (counts, drops)
        try:
            d = json.loads(ln)
        except json.JSONDecodeError:
            continue
        if isinstance(d, dict) and d.get("event") == "stats":
            stats = {k: d.get(k) for k in ("counts", "drops")}
    kb = [int(ln.split()[1]) for ln in err.splitlines() if ln.startswith("@@VmHWM")]
    return {"argv": args, "exit": code, "wall_s": round(time.monotonic() - t0, 1),
            "peak_rss_mb": round(kb[-1] / 1024, 1) if kb else None, "stats": stats,
            "stderr_tail": "\n".join(ln for ln in err.splitlines() if not ln.startswith("@@"))[-400:]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hours", type=float, default=2.0)
    ap.add_argument("--dir", default=None, help="where to write the WAV (default: a temp folder, removed after)")
    ap.add_argument("--burst-every", type=float, default=60.0)
    ap.add_argument("--run-duration", type=float, default=None,
                    help="stop `run` after this many seconds (default: the whole file, --fast)")
    ap.add_argument("--budget-mb", type=float, default=150.0)
    ap.add_argument("--timeout", type=float, default=3600.0)
    ap.add_argument("--json", default=None, help="also write the report here")
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=a.dir) as d:
        wav = write_long_wav(Path(d) / "long.wav", a.hours, a.burst_every)
        run = ["run", "--audio", str(wav), "--no-camera", "--fast"]
        if a.run_duration:
            run += ["--duration", str(a.run_duration)]
        rep: dict[str, Any] = {"hours": a.hours, "wav_mb": round(wav.stat().st_size / 2**20, 1),
                               "budget_mb": a.budget_mb,
                               "baseline": peak_rss_mb(["classify", "--text", "hi"], a.timeout),
                               "classify": peak_rss_mb(["classify", "--audio", str(wav)], a.timeout),
                               "run": peak_rss_mb(run, a.timeout)}
    rep["ok"] = all(rep[k]["exit"] == 0 and (rep[k]["peak_rss_mb"] or 1e9) <= a.budget_mb for k in ("classify", "run"))
    text = json.dumps(rep, indent=2)
    print(text)
    if a.json:
        Path(a.json).write_text(text + "\n")
    return 0 if rep["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
