"""Conversion report: JSON (machine-readable) and Markdown with confusion-matrix images (float vs int8)."""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from affectlite._io import atomic_write_bytes, atomic_write_text

__all__ = ["confusion_png", "write_report"]


def _png(rgb: np.ndarray) -> bytes:
    """Encode an ``HxWx3`` uint8 image as PNG (zlib only; no imaging library needed)."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def confusion_png(cm: Sequence[Sequence[int]], labels: Sequence[str], title: str) -> bytes:
    """Render a confusion matrix (rows: true, columns: predicted) as a PNG heat map with counts.

    Uses OpenCV for the text when it is installed; otherwise draws the heat map only.
    """
    m = np.asarray(cm, dtype=np.float64)
    n = m.shape[0]
    cell, left, top = 56, 110, 70
    h, w = top + n * cell + 10, left + n * cell + 10
    img = np.full((h, w, 3), 255, dtype=np.uint8)
    row_sums = m.sum(axis=1, keepdims=True)
    frac = np.divide(m, row_sums, out=np.zeros_like(m), where=row_sums > 0)
    for i in range(n):
        for j in range(n):
            v = frac[i, j]
            colour = np.array([255 - 200 * v, 255 - 140 * v, 255 - 40 * v]).clip(0, 255).astype(np.uint8)
            img[top + i * cell: top + (i + 1) * cell - 1, left + j * cell: left + (j + 1) * cell - 1] = colour
    try:
        import cv2
    except ImportError:
        return _png(img)
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(img, title[:48], (6, 20), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, "rows: true, columns: predicted", (6, 40), font, 0.4, (60, 60, 60), 1, cv2.LINE_AA)
    for i in range(n):
        cv2.putText(img, labels[i][:12], (4, top + i * cell + cell // 2 + 4), font, 0.4, (0, 0, 0), 1,
                    cv2.LINE_AA)
        cv2.putText(img, labels[i][:7], (left + i * cell + 2, top - 8), font, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
        for j in range(n):
            ink = (255, 255, 255) if frac[i, j] > 0.6 else (0, 0, 0)
            cv2.putText(img, str(int(m[i, j])), (left + j * cell + 6, top + i * cell + cell // 2 + 4), font, 0.45,
                        ink, 1, cv2.LINE_AA)
    return _png(img)


def _fmt(v: Any, pct: bool = True) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{100 * v:.2f}%" if pct else f"{v:.4f}"
    return str(v)


def _markdown(r: Mapping[str, Any], images: Mapping[str, str]) -> str:
    v = r["validation"]
    q = r["quantization"]
    lines = [f"# Conversion report: {r['name']}", "",
             f"- source: `{r['source']['path']}` ({r['source']['kind']})",
             f"- output: `{r['output']['model_file']}`, sha256 `{r['output']['sha256']}`",
             f"- result: **{'PASSED' if r['passed'] else 'FAILED'}**"
             + ("" if r["passed"] else " — " + "; ".join(r["failures"])), "",
             "## Quantisation", "",
             f"- inputs/outputs: {q['io_dtype']}; weights {'per-channel' if q['per_channel'] else 'per-tensor'}",
             f"- op sets: {', '.join(q['ops_sets'])}",
             f"- calibration: {q['calibration']['samples']} samples from {q['calibration']['source']}"]
    for note in r.get("notes", []):
        lines.append(f"- note: {note}")
    lines += ["", "### Ops that stay float", ""]
    fo = r["float_ops"]
    if not fo:
        lines.append("None: every op computes in int8.")
    else:
        lines += ["| op | subgraph | index | float tensor | why |", "|---|---|---|---|---|"]
        lines += [f"| {o['op']} | {o['subgraph']} | {o['index']} | `{o['tensor']}` | {o['reason']} |" for o in fo]
    lines += ["", "### Op counts", "", ", ".join(f"{k} x{n}" for k, n in sorted(q["op_counts"].items())), "",
              "## Validation", ""]
    lines.append(f"- data: {v['data']} ({v['n']} samples)"
                 + (" — **the calibration set itself, not held-out data**" if v["on_calibration_set"] else ""))
    lines.append(f"- top-1 agreement float vs int8: {_fmt(v['agreement'])}")
    lines.append(f"- mean |p_float - p_int8|: {v['mean_abs_prob_diff']:.5f} (max {v['max_abs_prob_diff']:.5f})")
    if v["float"]:
        lines += ["", "| | float | int8 |", "|---|---|---|",
                  f"| accuracy | {_fmt(v['float']['accuracy'])} | {_fmt(v['int8']['accuracy'])} |",
                  f"| macro-F1 | {_fmt(v['float']['macro_f1'], False)} | {_fmt(v['int8']['macro_f1'], False)} |"]
        for lab in r["labels"]:
            lines.append(f"| acc. {lab} (n={v['float']['support'][lab]}) | "
                         f"{_fmt(v['float']['per_class_accuracy'][lab])} | "
                         f"{_fmt(v['int8']['per_class_accuracy'][lab])} |")
    else:
        lines.append("- no labels: accuracy and F1 not computed")
    s = r["sizes"]
    lines += ["", "## Size and latency", "", "| file | bytes |", "|---|---|"]
    for k in ("source_bytes", "float_tflite_bytes", "int8_tflite_bytes"):
        lines.append(f"| {k.replace('_bytes', '').replace('_', ' ')} | {s.get(k) if s.get(k) is not None else 'n/a'} |")
    lines.append(f"| int8 / float tflite | {_fmt(s.get('int8_over_float'))} |")
    lat = r["latency_ms"]
    if lat:
        lines += ["", "| interpreter threads | median ms / inference (batch 1) |", "|---|---|"]
        lines += [f"| {k.split('_')[1]} | {val:.3f} |" for k, val in lat.items()]
    if images:
        lines += ["", "## Confusion matrices", ""]
        lines += [f"![{k}]({name})" for k, name in images.items()]
    lines += ["", "## Tools", "", ", ".join(f"{k} {val}" for k, val in r["tools"].items())]
    if r.get("warnings"):
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in r["warnings"]]
    return "\n".join(lines) + "\n"


def write_report(report: Mapping[str, Any], report_dir: str | Path, stem: str) -> dict[str, str]:
    """Write ``<stem>.report.json``, ``<stem>.report.md`` and the confusion-matrix PNGs into ``report_dir``.

    Returns:
        ``{"json": path, "markdown": path, "<image key>": path, ...}``.
    """
    d = Path(report_dir)
    d.mkdir(parents=True, exist_ok=True)
    v = report["validation"]
    labels = list(report["labels"])
    images: dict[str, str] = {}
    mats: list[tuple[str, Any, str]] = []
    if v["float"]:
        mats += [("float", v["float"]["confusion_matrix"], "float model (rows: true label)"),
                 ("int8", v["int8"]["confusion_matrix"], "int8 model (rows: true label)")]
    mats.append(("agreement", v["agreement_matrix"], "float (rows) vs int8 (columns) predictions"))
    paths: dict[str, str] = {}
    for key, cm, title in mats:
        name = f"{stem}.confusion_{key}.png"
        atomic_write_bytes(d / name, confusion_png(cm, labels, title))
        images[key] = name
        paths[f"png_{key}"] = str(d / name)
    jp = d / f"{stem}.report.json"
    mp = d / f"{stem}.report.md"
    atomic_write_text(jp, json.dumps(report, indent=2, default=_json_default) + "\n")
    atomic_write_text(mp, _markdown(report, images))
    paths.update({"json": str(jp), "markdown": str(mp)})
    return paths


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
