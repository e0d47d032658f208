"""Face models on FER+ public_test: majority accuracy, original labels, contrast conditions (issue 29).

Usage::

    PYTHONPATH=sdk:converters python tests/benchmarks/face_ferplus.py --model OLD.tflite --model NEW.tflite \\
        [--data ../shared/datasets/fer2013] [--out DIR]

Every model runs through the runtime's own path (:class:`affectlite.face.FaceExpressionClassifier`: its card's
preprocessing - with or without histogram equalisation - and the int8 interpreter, one thread) on:

- the FER+ majority validation set of public_test (:func:`affectlite_convert.recipes.face_ferplus.validation_mask`:
  strict majority of the ten votes in our seven classes, matched rows, duplicates of train images removed);
- all 3,589 public_test images with their original FER2013 folder labels;
- the FER+ set under the contrast conditions of :func:`~affectlite_convert.recipes.face_ferplus.contrast_variant`
  (the stored, histogram-equalised JPEGs; raw-like contrast with random gamma; low contrast; dark; bright);
- with ``--aligned``: the FER+ set as the runtime's eye-aligned crops (BlazeFace keypoints through
  :func:`affectlite.preprocess.face_crop`, :func:`affectlite_convert.recipes.face.align_crops`; crops without
  keypoints stay as they are), as stored and raw-like - what a camera pipeline with ``face.align`` feeds the model.

Writes ``face_ferplus.json`` and ``face_ferplus.md`` (tables) into ``--out`` and prints the markdown.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "fer2013"


def measure(model: Path, data: Path, cache: Path, aligned: np.ndarray | None = None) -> dict[str, Any]:
    """All figures of one model (see the module docstring)."""
    from affectlite.labels import LABELS
    from affectlite_convert.recipes import face as F
    from affectlite_convert.recipes import face_ferplus as fp

    d = F.load_data(str(data), str(cache), "ferplus-soft", equalize=False)
    probs = fp.classify(model, d["xva_all"])
    major = fp.evaluate(probs[d["val_mask"]], d["yva"])
    orig = fp.evaluate(probs, d["yva_orig"])
    contrast = fp.contrast_table(model, d["xva"], d["yva"])
    card = json.loads(model.with_suffix(".card.json").read_text())
    if aligned is not None:
        contrast.update({f"aligned, {c}": v for c, v in fp.contrast_table(
            model, aligned[d["val_mask"]], d["yva"], conditions=("equalised (as stored)", "raw-like")).items()})
    return {"model": str(model), "card": card.get("name"), "version": card.get("version"),
            "equalize": card["inputs"][0]["preprocessing"].get("equalize", "none"),
            "ferplus_majority": major, "original_labels": orig, "contrast": contrast, "labels": list(LABELS)}


def markdown(results: list[dict[str, Any]]) -> str:
    """Ready-to-paste tables."""
    from affectlite.labels import LABELS

    name = [f"{r['card']} {r['version']}" for r in results]
    lines = ["| | " + " | ".join(name) + " |", "|---|" + "---|" * len(results)]
    lines.append("| FER+ majority accuracy (int8) | "
                 + " | ".join(f"{r['ferplus_majority']['accuracy']:.3f}" for r in results) + " |")
    lines.append("| FER+ macro recall | " + " | ".join(f"{r['ferplus_majority']['macro_recall']:.3f}"
                                                     for r in results) + " |")
    lines.append("| original FER2013 labels accuracy | "
                 + " | ".join(f"{r['original_labels']['accuracy']:.3f}" for r in results) + " |")
    for lab in LABELS:
        lines.append(f"| FER+ recall {lab} | " + " | ".join(
            f"{r['ferplus_majority']['per_class_recall'].get(lab, float('nan')):.3f}" for r in results) + " |")
    lines += ["", "FER+ majority accuracy (and fear / sad recall) by contrast condition:", "",
              "| condition | " + " | ".join(name) + " |", "|---|" + "---|" * len(results)]
    for c in results[0]["contrast"]:
        cells = []
        for r in results:
            m = r["contrast"][c]
            cells.append(f"{m['accuracy']:.3f} ({m['per_class_recall'].get('fear', float('nan')):.2f} / "
                         f"{m['per_class_recall'].get('sad', float('nan')):.2f})")
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    for r, n in zip(results, name, strict=True):
        cm = np.asarray(r["ferplus_majority"]["confusion"])
        lines += ["", f"Confusion matrix, {n} (rows: FER+ majority, columns: prediction):", "",
                  "| | " + " | ".join(LABELS) + " |", "|---|" + "---|" * len(LABELS)]
        lines += [f"| {LABELS[i]} | " + " | ".join(str(v) for v in cm[i]) + " |" for i in range(len(LABELS))]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns an exit code."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, action="append", required=True, help="face .tflite with its card")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="FER2013 root with ferplus_votes.csv")
    ap.add_argument("--cache", type=Path, default=None, help="decoded-image cache folder (default OUT/cache)")
    ap.add_argument("--out", type=Path, default=Path("face_ferplus_out"))
    ap.add_argument("--aligned", action="store_true", help="also the runtime's eye-aligned crops (BlazeFace)")
    a = ap.parse_args(argv)
    cache = a.cache if a.cache is not None else a.out / "cache"
    aligned = None
    if a.aligned:
        from affectlite_convert.recipes import face as F

        aligned_file = cache / "aligned" / "fer_public_test_48.npz"
        if aligned_file.is_file():
            with np.load(aligned_file) as z:
                aligned = z["x"]
        else:
            aligned, found = F.align_crops(F.load_split(str(a.data), "public_test", str(cache))[0])
            print(f"aligned: {int(found.sum())} of {len(found)} crops had eye keypoints", file=sys.stderr)
    results = [measure(m, a.data, cache, aligned) for m in a.model]
    a.out.mkdir(parents=True, exist_ok=True)
    from affectlite._io import atomic_write_text

    atomic_write_text(a.out / "face_ferplus.json", json.dumps(results, indent=1))
    md = markdown(results)
    atomic_write_text(a.out / "face_ferplus.md", md)
    sys.stdout.write(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
