"""Benchmark the face path on one CPU thread: ms per face (preprocessing + int8 inference), detectors, frames.

Usage::

    PYTHONPATH=sdk python tests/benchmarks/bench_face.py [--model PATH] [--runs 300] [--json OUT]

Reports medians (and p90) of:

- ``classify_ms_per_face``: :meth:`FaceExpressionClassifier.classify_crops` on one crop of a real face
  (area resize from ~100 px, grey, normalise, quantise, invoke, dequantise, map labels). Target <= 2 ms.
- ``invoke_ms``: the interpreter's ``invoke()`` alone on the prepared input.
- ``detect_ms``: each available detector on a 320x240 frame holding the astronaut's face.
- ``frame_ms``: :meth:`FaceAnalyzer.process` per 640x480 frame with ``detect_every=3``, one face.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "sdk"))

from affectlite.detectors import available_detectors, create_detector  # noqa: E402
from affectlite.face import DEFAULT_FACE_MODEL, FaceAnalyzer, FaceExpressionClassifier  # noqa: E402
from affectlite.options import FaceOptions  # noqa: E402
from affectlite.preprocess import prepare_face  # noqa: E402


def _time(fn: Callable[[], object], runs: int, warmup: int = 10) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1000.0)
    ts.sort()
    return {"median": round(statistics.median(ts), 4), "p90": round(ts[int(0.9 * (len(ts) - 1))], 4),
            "min": round(ts[0], 4)}


def _photo() -> np.ndarray:
    try:
        import skimage.data

        return np.ascontiguousarray(skimage.data.astronaut())  # type: ignore[no-untyped-call]
    except ImportError:
        rng = np.random.default_rng(0)
        return rng.integers(0, 256, size=(512, 512, 3), dtype=np.uint8)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help=f"face model (default {DEFAULT_FACE_MODEL})")
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--json", default=None, help="also write the figures here")
    a = ap.parse_args(argv)

    photo = _photo()
    crop = photo[60:170, 170:280]  # ~110 px face crop
    clf = FaceExpressionClassifier.create(a.model, num_threads=1)
    out: dict[str, object] = {"model": clf.card.name, "model_bytes": Path(a.model or DEFAULT_FACE_MODEL).stat().st_size,
                              "backend": clf.model.backend, "threads": 1}
    out["classify_ms_per_face"] = _time(lambda: clf.classify_crops([crop]), a.runs)
    x = prepare_face(crop, clf.spec)
    clf.model.run(x)
    interp = clf.model._interp  # timing invoke() alone
    out["invoke_ms"] = _time(interp.invoke, a.runs)
    out["preprocess_ms"] = _time(lambda: prepare_face(crop, clf.spec), a.runs)

    small = photo[::2, ::2][:240, :320]
    det_ms: dict[str, object] = {}
    for name, (ok, why) in available_detectors().items():
        if not ok or name == "yunet":
            det_ms[name] = f"skipped: {why if not ok else 'needs an ONNX file'}"
            continue
        det = create_detector(name, num_threads=1, min_size=20)
        det_ms[name] = _time(lambda d=det: d.detect(small), max(20, a.runs // 10), warmup=3)  # type: ignore[misc]
        det.close()
    out["detect_ms_320x240"] = det_ms

    frame = np.zeros((480, 640, 3), dtype=np.uint8) + 100
    frame[100:612 - 200, 100:400] = photo[:312, 100:400]
    fa = FaceAnalyzer(FaceOptions(detect_every=3, detect_width=320, num_threads=1))
    ts = iter(range(0, 10**12, 66_000_000))
    out["frame_ms_640x480_detect_every_3"] = _time(lambda: fa.process(frame, next(ts)), max(30, a.runs // 5),
                                                   warmup=3)
    fa.close()
    print(json.dumps(out, indent=2))
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
