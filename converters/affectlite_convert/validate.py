"""Validation: the float model and the int8 model side by side on the same samples.

The int8 model runs through :class:`affectlite.model.Model` (the runtime's own loading, quantisation and
interpreter), the float model through Keras (or the float TFLite conversion for SavedModel/ONNX sources).
Figures: top-1 agreement, accuracy and macro-F1 for both, per-class accuracy, confusion matrices, mean
absolute probability difference, file sizes and median latency with 1 and N threads.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from affectlite.model import Model

__all__ = ["classification_metrics", "compare", "measure_latency", "run_int8", "softmax"]


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64."""
    z = np.asarray(z, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=-1, keepdims=True))


def _bar(total: int, desc: str, enabled: bool) -> Any:
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, unit="sample", disable=not enabled or not sys.stderr.isatty(),
                leave=False)


def run_int8(model: Model, arrays: Mapping[str, np.ndarray], tflite_order: Sequence[str], *,
             output_index: int = 0, progress: bool = True) -> np.ndarray:
    """Run the int8 model one sample at a time (as on the device); returns dequantised outputs ``(N, C)``."""
    n = int(next(iter(arrays.values())).shape[0])
    outs = []
    bar = _bar(n, "validate int8", progress)
    for i in range(n):
        outs.append(model.run(*[arrays[name][i:i + 1] for name in tflite_order])[output_index][0])
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return np.stack(outs).astype(np.float32)


def run_float_tflite(content: bytes, arrays: Mapping[str, np.ndarray], tflite_order: Sequence[str],
                     output_index: int = 0, progress: bool = True) -> np.ndarray:
    """Run a float TFLite model sample by sample (float reference for SavedModel/ONNX sources)."""
    from affectlite.interpreters import create_interpreter

    interp, _ = create_interpreter(model_content=content)
    ins = interp.get_input_details()
    out = interp.get_output_details()[output_index]
    n = int(next(iter(arrays.values())).shape[0])
    res = []
    bar = _bar(n, "validate float", progress)
    for i in range(n):
        for det, name in zip(ins, tflite_order, strict=True):
            interp.set_tensor(det["index"], arrays[name][i:i + 1].astype(det["dtype"]))
        interp.invoke()
        res.append(np.array(interp.get_tensor(out["index"])[0], dtype=np.float32))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return np.stack(res)


def run_keras(model: Any, arrays: Mapping[str, np.ndarray], order: Sequence[str], output_index: int = 0,
              batch_size: int = 64) -> np.ndarray:
    """Run the float Keras model in batches."""
    n = int(next(iter(arrays.values())).shape[0])
    res = []
    for s in range(0, n, batch_size):
        xs = [arrays[name][s:s + batch_size] for name in order]
        out = model(xs if len(xs) > 1 else xs[0], training=False)
        if isinstance(out, dict):
            out = list(out.values())
        if isinstance(out, (list, tuple)):
            out = out[output_index]
        res.append(np.asarray(out, dtype=np.float32))
    return np.concatenate(res)


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int,
                           labels: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro-F1 (over classes present in ``y_true`` or predicted), per-class accuracy, confusion."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    present = (support + predicted) > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        prec = np.where(predicted > 0, tp / predicted, 0.0)
        rec = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(prec + rec > 0, 2 * prec * rec / (prec + rec), 0.0)
    per_class = {labels[i]: (float(tp[i] / support[i]) if support[i] > 0 else None) for i in range(n_classes)}
    return {
        "accuracy": float(tp.sum() / max(1, len(y_true))),
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "per_class_accuracy": per_class,
        "support": {labels[i]: int(support[i]) for i in range(n_classes)},
        "confusion_matrix": cm.tolist(),
    }


def compare(float_probs: np.ndarray, int8_probs: np.ndarray, y_true: np.ndarray | None,
            labels: Sequence[str]) -> dict[str, Any]:
    """Compare float and int8 probabilities (and both against labels when given).

    Returns:
        ``{"n", "agreement", "mean_abs_prob_diff", "max_abs_prob_diff", "float": {...}, "int8": {...}}``;
        the per-model dicts have accuracy/macro-F1/per-class/confusion only with labels.
    """
    fp = np.asarray(float_probs, dtype=np.float64)
    qp = np.asarray(int8_probs, dtype=np.float64)
    pf = fp.argmax(axis=1)
    pq = qp.argmax(axis=1)
    res: dict[str, Any] = {
        "n": len(fp),
        "agreement": float(np.mean(pf == pq)) if len(fp) else 0.0,
        "mean_abs_prob_diff": float(np.mean(np.abs(fp - qp))) if len(fp) else 0.0,
        "max_abs_prob_diff": float(np.max(np.abs(fp - qp))) if len(fp) else 0.0,
        "float": {},
        "int8": {},
    }
    c = len(labels)
    if y_true is not None:
        res["float"] = classification_metrics(y_true, pf, c, labels)
        res["int8"] = classification_metrics(y_true, pq, c, labels)
    # how the int8 predictions distribute against the float ones (always available)
    res["agreement_matrix"] = classification_metrics(pf, pq, c, labels)["confusion_matrix"]
    return res


def measure_latency(model_path: Path, arrays: Mapping[str, np.ndarray], tflite_order: Sequence[str],
                    threads: Sequence[int], runs: int = 30, warmup: int = 3,
                    loader: Callable[..., Model] = Model.load) -> dict[str, float]:
    """Median per-inference latency (ms, batch 1) for each thread count."""
    out: dict[str, float] = {}
    sample = [arrays[name][0:1] for name in tflite_order]
    for t in threads:
        m = loader(model_path, num_threads=t)
        for _ in range(warmup):
            m.run(*sample)
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            m.run(*sample)
            times.append((time.perf_counter() - t0) * 1e3)
        out[f"threads_{t}"] = round(statistics.median(times), 4)
    return out


def default_threads() -> list[int]:
    """``[1, N]`` where N is the number of CPUs (just ``[1]`` on a single-core machine)."""
    n = os.cpu_count() or 1
    return [1] if n <= 1 else [1, n]
