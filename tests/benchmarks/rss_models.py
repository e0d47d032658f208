"""Peak RSS of a process that imports affectlite, loads the shipped int8 models and runs each once.

Usage: python tests/benchmarks/rss_models.py [--json]
Target (issue 2): under 150 MB. Prints the figure; exits 1 when over the target.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "sdk"))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main() -> int:
    t0 = time.perf_counter()
    base = peak_rss_mb()
    import numpy as np

    import affectlite
    from affectlite.face import FaceAnalyzer
    from affectlite.text import TextClassifier
    from affectlite.voice import VoiceAnalyzer

    after_import = peak_rss_mb()
    face = FaceAnalyzer(affectlite.FaceOptions())
    voice = VoiceAnalyzer(affectlite.VoiceOptions())
    text = TextClassifier.create()
    after_load = peak_rss_mb()
    rng = np.random.default_rng(0)
    face.classify_image(rng.integers(0, 255, (48, 48), dtype=np.uint8))
    face.process(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8), time.monotonic_ns())
    voice.classify_clip((rng.normal(0, 0.1, 48000)).astype(np.float32), 16000)
    text.classify("what a lovely day")
    peak = peak_rss_mb()
    out = {"python_baseline_mb": round(base, 1), "after_import_mb": round(after_import, 1),
           "after_models_loaded_mb": round(after_load, 1), "peak_after_inference_mb": round(peak, 1),
           "target_mb": 150, "ok": peak < 150, "seconds": round(time.perf_counter() - t0, 2),
           "tensorflow_imported": "tensorflow" in sys.modules}
    print(json.dumps(out) if "--json" in sys.argv else "\n".join(f"{k:>24}: {v}" for k, v in out.items()))
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
