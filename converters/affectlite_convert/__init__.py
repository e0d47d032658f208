"""affectlite_convert: turn a trained model into a proven full-integer int8 TFLite model with its card.

Workstation package (TensorFlow allowed); the runtime :mod:`affectlite` never imports it.

Example::

    from affectlite_convert import convert

    res = convert("face.keras", "models/face.tflite", x_calib,
                  card={"name": "my-face", "task": "face", "labels": ["neutral", "happy", ...],
                        "inputs": [{"name": "image", "kind": "image", "preprocessing": {...}}]},
                  validation=(x_test, y_test), report_dir="reports/")
    if not res.passed:
        print(res.failures)

The result: ``models/face.tflite`` (int8 inside, int8 I/O by default) and ``models/face.card.json``
(shapes/dtypes read from the converted model, sha256, float and int8 metrics, quantisation details, tool
versions) that :meth:`affectlite.model.Model.load` loads without further arguments.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import platform
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from affectlite._io import sha256_file
from affectlite.card import ModelCard, card_from_dict, card_path_for, save_card
from affectlite.errors import CalibrationError, ConversionError, InputError
from affectlite.model import Model

from . import calibration as _cal
from . import quantize as _q
from . import validate as _val

__all__ = ["ConversionResult", "__version__", "convert"]

__version__ = "0.1.0"

log = logging.getLogger("affectlite_convert")


@dataclass
class ConversionResult:
    """What :func:`convert` produced.

    Attributes:
        model_path: The written ``.tflite``.
        card_path: The written card (``<stem>.card.json``).
        card: The card as written.
        report: The full report (the same dict as the JSON report).
        float_ops: Ops that stay float, each ``{"op", "index", "subgraph", "tensor", "reason"}``.
        passed: ``True`` when the agreement/accuracy thresholds hold.
        failures: Why ``passed`` is ``False`` (empty otherwise).
        warnings: Things to look at (small calibration set, validation on the calibration set ...).
        report_paths: Report files written (``json``, ``markdown``, PNGs) when ``report_dir`` was given.
    """

    model_path: Path
    card_path: Path
    card: ModelCard
    report: dict[str, Any]
    float_ops: list[dict[str, Any]]
    passed: bool
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    report_paths: dict[str, str] = field(default_factory=dict)


def _tool_versions(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    from importlib import metadata

    tools = {"affectlite_convert": __version__, "python": platform.python_version(), "numpy": np.__version__}
    for dist in ("tensorflow", "tensorflow-cpu", "keras", "ai-edge-litert", "onnx"):
        try:
            tools[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    tools.update(extra or {})
    return tools


def _align_card_inputs(card_inputs: Any, inputs: Sequence[_q.InputInfo]) -> list[dict[str, Any]]:
    """Card input entries aligned with the model inputs (by name when names match, else by position)."""
    if card_inputs is None:
        card_inputs = []
    if not isinstance(card_inputs, list) or not all(isinstance(c, Mapping) for c in card_inputs):
        raise ConversionError("card['inputs'] must be a list of objects like {'name', 'kind', 'preprocessing'}")
    if card_inputs and len(card_inputs) != len(inputs):
        raise ConversionError(f"card lists {len(card_inputs)} input(s), the model has {len(inputs)}: "
                              f"{[i.name for i in inputs]}")
    names = [i.name for i in inputs]
    by_name = {str(c.get("name")): c for c in card_inputs}
    if card_inputs and set(by_name) == set(names):
        ordered = [by_name[n] for n in names]
    else:
        ordered = list(card_inputs) or [{} for _ in inputs]
    out = []
    for info, c in zip(inputs, ordered, strict=True):
        d = dict(c)
        d.setdefault("name", info.name)
        d.setdefault("kind", "tensor")
        d.setdefault("preprocessing", {})
        d["_model_input"] = info.name
        out.append(d)
    return out


def _tflite_order(content: bytes, src: _q.LoadedSource, shapes: Mapping[str, tuple[int, ...]],
                  details: Sequence[Mapping[str, Any]]) -> list[str]:
    names = [i.name for i in src.inputs]
    sig = _q.tflite_signature_inputs(content)
    if sig is not None and sorted(sig) == sorted(names):
        return sig
    # fall back to matching by shape (unique shapes), then by position
    order: list[str] = []
    for det in details:
        shp = tuple(int(v) for v in det["shape"][1:])
        cands = [n for n in names if shapes[n] == shp and n not in order]
        order.append(cands[0] if cands else next(n for n in names if n not in order))
    return order


def _probs(x: np.ndarray, kind: str) -> np.ndarray:
    return _val.softmax(x) if kind == "logits" else np.asarray(x, dtype=np.float64)


def convert(model: Any, output: str | os.PathLike[str], representative: Any, card: Mapping[str, Any], *,
            validation: Any = None, validation_split: str | None = None, io_dtype: str = "int8",
            per_channel: bool = True, min_samples: int = _cal.DEFAULT_MIN_SAMPLES,
            recommended_samples: int = _cal.DEFAULT_RECOMMENDED_SAMPLES, max_calibration_samples: int = 1000,
            min_agreement: float = 0.90, max_agreement_drop: float | None = None,
            max_accuracy_drop: float = 0.02, report_dir: str | os.PathLike[str] | None = None,
            allow_float_ops: bool = True, onnx_env: str | os.PathLike[str] | None = None,
            latency_threads: Sequence[int] | None = None, latency_runs: int = 30,
            progress: bool = True) -> ConversionResult:
    """Convert a float model to full-integer int8 TFLite, validate it and write it with its card.

    Args:
        model: A path (``.keras``, ``.h5``/``.hdf5``, SavedModel folder, ``.onnx``) or a ``keras.Model``.
        output: The ``.tflite`` to write; the card goes next to it as ``<stem>.card.json``.
        representative: Calibration data: an array (one-input models), a list of arrays in the model's input
            order, a dict ``{input_name: array}`` (batch-first, float, already preprocessed), or a path
            (image folder, audio folder, text file, ``.npy``/``.npz``) preprocessed with the runtime's code
            as the card input's ``preprocessing`` says.
        card: The partial card: ``name``, ``version``, ``task``, ``labels`` (required, output order),
            ``label_mapping``, ``inputs`` (``name``, ``kind``, ``preprocessing``; shapes/dtypes are filled in
            from the converted model), ``outputs`` (``name``, ``kind``: ``probabilities``/``logits``),
            ``training``, ``limitations``, ``calibration`` (temperature), optionally ``metrics``.
        validation: Held-out labelled data: ``(inputs, labels)`` with inputs in any form ``representative``
            takes (labels: ints or label names), or a path (e.g. an image folder by class). Without it the
            calibration set is used and the report says so.
        validation_split: Words for the card's ``metrics.split`` (e.g. ``"FER2013 public_test"``).
        io_dtype: ``int8`` (default), ``uint8`` or ``float32`` input/output tensors.
        per_channel: Per-channel (default) or per-tensor weight quantisation.
        min_samples: Fewer calibration samples is an error.
        recommended_samples: Fewer is a warning.
        max_calibration_samples: Use at most this many calibration samples.
        min_agreement: Lowest acceptable top-1 agreement float vs int8 (fraction).
        max_agreement_drop: Alternative to ``min_agreement``: ``min_agreement = 1 - max_agreement_drop``.
        max_accuracy_drop: Highest acceptable accuracy drop float -> int8 (fraction; needs labels).
        report_dir: Write ``<stem>.report.json``/``.report.md`` and confusion-matrix PNGs here.
        allow_float_ops: Let ops without an int8 kernel stay float (they are listed in the report).
        onnx_env: Python environment with onnx2tf for ``.onnx`` sources.
        latency_threads: Interpreter thread counts to time (default ``[1, cpu_count]``; ``[]`` skips).
        latency_runs: Timed runs per thread count.
        progress: Progress bars on stderr (only when it is a terminal).

    Returns:
        A :class:`ConversionResult`; the model and card are written even when thresholds fail
        (``passed`` is ``False`` and ``failures`` says why).

    Raises:
        ConversionError: unknown/corrupt model, conversion failure, bad card or arguments.
        CalibrationError: too few or unusable calibration samples.
        InputError: data that does not fit the model's inputs.
        ModelCardError: the finished card does not validate (e.g. a label_mapping to an unknown label).
    """
    out = Path(output)
    if out.suffix.lower() != ".tflite":
        raise ConversionError(f"output {out} must end in .tflite")
    if io_dtype not in _q.IO_DTYPES:
        raise ConversionError(f"io_dtype {io_dtype!r} is not one of {', '.join(_q.IO_DTYPES)}")
    if not isinstance(card, Mapping):
        raise ConversionError(f"card must be a dict (the partial model card), got {type(card).__name__}")
    labels = card.get("labels")
    if not isinstance(labels, list) or not labels or not all(isinstance(v, str) and v for v in labels):
        raise ConversionError("card['labels'] must list the class names in output order, e.g. "
                              "['neutral', 'happy', 'sad', 'angry', 'fear', 'disgust', 'surprise']")
    if min_samples < 1 or recommended_samples < min_samples:
        raise ConversionError(f"need 1 <= min_samples ({min_samples}) <= recommended_samples "
                              f"({recommended_samples})")
    if max_agreement_drop is not None:
        min_agreement = 1.0 - float(max_agreement_drop)
    mapping = dict(card.get("label_mapping") or {})
    warnings: list[str] = []

    with tempfile.TemporaryDirectory(prefix="affectlite-convert-") as tmp:
        work = Path(tmp)
        src = _q.load_source(model, onnx_env=onnx_env, workdir=work)
        if src.keras_model is not None and getattr(src.keras_model, "outputs", None):
            n_cls = src.keras_model.outputs[0].shape[-1]
            if n_cls is not None and int(n_cls) != len(labels):
                raise ConversionError(f"the model's first output has {n_cls} classes but card['labels'] lists "
                                      f"{len(labels)}: {labels}")
        card_inputs = _align_card_inputs(card.get("inputs"), src.inputs)
        calib = _cal.load_data(representative, src.inputs, card_inputs, labels, mapping,
                               limit=max_calibration_samples, base_dir=out.parent, what="calibration",
                               progress=progress)
        warnings += calib.warnings
        for note in _q.adapt_layout(src, calib.arrays):
            if note not in src.notes:
                src.notes.append(note)
        if calib.count > max_calibration_samples:
            # a deterministic random subset (not the first N: data is often sorted by class)
            keep = np.sort(np.random.default_rng(0).choice(calib.count, max_calibration_samples, replace=False))
            calib.arrays = {k: v[keep] for k, v in calib.arrays.items()}
            calib.labels = calib.labels[keep] if calib.labels is not None else None
            calib.source += f", random subset of {max_calibration_samples}"
        warnings += _cal.check_count(calib.count, min_samples, recommended_samples)
        shapes = _q.check_shapes(src, calib.arrays)

        static_dir = _q.export_static(src, shapes, work / "static_savedmodel")
        float_content = _q.convert_float(static_dir)
        names = [i.name for i in src.inputs]
        rep = _cal.samples(calib.arrays, names)
        converted = _q.convert_int8(static_dir, rep, io_dtype=io_dtype, per_channel=per_channel,
                                    allow_float_ops=allow_float_ops, float_content=float_content,
                                    progress=progress)
        content = converted.content
        ops = _q.analyze_ops(content)

        from affectlite.interpreters import create_interpreter

        interp, _ = create_interpreter(model_content=content)
        in_det, out_det = interp.get_input_details(), interp.get_output_details()
        order = _tflite_order(content, src, shapes, in_det)
        by_model = {c["_model_input"]: c for c in card_inputs}
        card_in = []
        for det, name in zip(in_det, order, strict=True):
            c = {k: v for k, v in by_model[name].items() if k != "_model_input"}
            c["shape"] = [int(v) for v in det["shape"]]
            c["dtype"] = str(np.dtype(det["dtype"]).name)
            card_in.append(c)
        user_outs = card.get("outputs") or []
        if not isinstance(user_outs, list):
            raise ConversionError("card['outputs'] must be a list of objects like {'name', 'kind'}")
        card_out = []
        for k, det in enumerate(out_det):
            c = dict(user_outs[k]) if k < len(user_outs) and isinstance(user_outs[k], Mapping) else {}
            c.setdefault("name", f"output_{k}")
            c.setdefault("kind", "probabilities")
            c["shape"] = [int(v) for v in det["shape"]]
            c["dtype"] = str(np.dtype(det["dtype"]).name)
            c.setdefault("preprocessing", {})
            card_out.append(c)
        n_out = card_out[0]["shape"][-1]
        if n_out != len(labels):
            raise ConversionError(f"the model's first output has {n_out} classes but card['labels'] lists "
                                  f"{len(labels)}: {labels}")
        out_kind = str(card_out[0]["kind"])

        # write the model next to its destination (same filesystem), validate it through the runtime
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{out.stem}.", suffix=".tflite", dir=out.parent)
        tmp_model = Path(tmp_name)
        try:
            try:  # mkstemp creates 0600; keep the mode of the model being replaced, else a readable 0644
                os.fchmod(fd, out.stat().st_mode & 0o777)
            except FileNotFoundError:
                os.fchmod(fd, 0o644)
            with os.fdopen(fd, "wb") as f:
                f.write(content)
                f.flush()
                os.fsync(f.fileno())
            sha = sha256_file(tmp_model)
            base = {k: v for k, v in card.items() if k not in ("inputs", "outputs")}
            card_dict: dict[str, Any] = {
                **base,
                "name": str(card.get("name") or out.stem),
                "task": str(card.get("task") or "generic"),
                "inputs": card_in, "outputs": card_out,
                "model_sha256": sha, "model_file": out.name,
            }
            draft = card_from_dict(card_dict, source=str(card_path_for(out)))
            runtime = Model.load(tmp_model, card=draft)

            # validation data
            if validation is None:
                vset = calib
                on_calib = True
                warnings.append("validated on the calibration set (no held-out data given): agreement is "
                                "optimistic and accuracy, when shown, is not a test result")
            else:
                if isinstance(validation, tuple) and len(validation) == 2:
                    vdata, vlabels = validation
                else:
                    vdata, vlabels = validation, None
                vset = _cal.load_data(vdata, src.inputs, card_inputs, labels, mapping, labels=vlabels,
                                      base_dir=out.parent, what="validation", progress=progress)
                warnings += vset.warnings
                _q.adapt_layout(src, vset.arrays)
                on_calib = False
                vshapes = _q.check_shapes(src, vset.arrays)
                if vshapes != shapes:
                    raise InputError(f"validation data shapes {vshapes} differ from the calibration shapes {shapes}")
            if vset.count == 0:
                raise CalibrationError("validation set is empty")
            q_out = _val.run_int8(runtime, vset.arrays, order, progress=progress)
            if src.keras_model is not None:
                f_out = _val.run_keras(src.keras_model, vset.arrays, names)
                float_ref = "keras model"
            else:
                f_out = _val.run_float_tflite(float_content, vset.arrays, order, progress=progress)
                float_ref = "float32 TFLite conversion of the source"
            cmp = _val.compare(_probs(f_out, out_kind), _probs(q_out, out_kind), vset.labels, labels)
            threads = list(latency_threads) if latency_threads is not None else _val.default_threads()
            latency = _val.measure_latency(
                tmp_model, vset.arrays, order, threads, runs=latency_runs,
                loader=lambda p, num_threads: Model.load(p, card=draft, num_threads=num_threads)) if threads else {}

            failures: list[str] = []
            if cmp["agreement"] < min_agreement:
                failures.append(f"top-1 agreement float vs int8 {cmp['agreement']:.4f} is below {min_agreement:.4f}")
            acc_drop = None
            if cmp["float"]:
                acc_drop = cmp["float"]["accuracy"] - cmp["int8"]["accuracy"]
                if acc_drop > max_accuracy_drop:
                    failures.append(f"accuracy drops {100 * acc_drop:.2f} points float -> int8 (allowed "
                                    f"{100 * max_accuracy_drop:.2f})")
            split = validation_split or (
                ((card.get("metrics") or {}).get("split") if isinstance(card.get("metrics"), Mapping) else None)
                if not on_calib else None) or (
                f"calibration set ({calib.source}), not held out" if on_calib else f"held-out set: {vset.source}")

            def summary(which: str) -> dict[str, Any]:
                m = cmp[which]
                if not m:
                    return {"n": cmp["n"]}
                return {"accuracy": round(m["accuracy"], 6), "macro_f1": round(m["macro_f1"], 6),
                        "per_class_accuracy": {k: (None if v is None else round(v, 6))
                                               for k, v in m["per_class_accuracy"].items()}, "n": cmp["n"]}

            user_metrics = dict(card.get("metrics") or {}) if isinstance(card.get("metrics"), Mapping) else {}
            metrics = {**user_metrics, "float": summary("float"),
                       "int8": {**summary("int8"), "agreement_with_float": round(cmp["agreement"], 6),
                                "mean_abs_prob_diff": round(cmp["mean_abs_prob_diff"], 6)},
                       "split": split, "on_calibration_set": on_calib}
            float_size = len(float_content)
            sizes = {"source_bytes": src.source_bytes, "float_tflite_bytes": float_size,
                     "int8_tflite_bytes": len(content), "int8_over_float": round(len(content) / float_size, 4)}
            quant = {
                "mode": "full-integer" if not [o for o in ops["float_ops"]
                                                if not (o["boundary"] or o["weights_only"])]
                        else "integer with float fallback",
                "io_dtype": io_dtype, "per_channel": per_channel, "ops_sets": converted.ops_sets,
                "float_ops": [{"op": o["op"], "reason": o["reason"]} for o in ops["float_ops"]],
                "calibration": {"samples": calib.count, "source": calib.source, "min_samples": min_samples,
                                "recommended_samples": recommended_samples},
                "notes": list(src.notes), "sizes": sizes,
            }
            user_tools = card.get("tools") if isinstance(card.get("tools"), Mapping) else {}
            tools = {**_tool_versions(src.tools), **(user_tools or {})}
            created = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")
            final = card_from_dict({**card_dict, "metrics": metrics, "quantization": quant, "tools": tools,
                                    "created": created, "schema_version": 1}, source=str(card_path_for(out)))
            # the file we validated is the file we ship
            if sha256_file(tmp_model) != sha:
                raise ConversionError(f"{tmp_model} changed during validation")
            os.replace(tmp_model, out)
        except BaseException:
            if tmp_model.exists():
                tmp_model.unlink()
            raise
        cpath = card_path_for(out)
        save_card(final, cpath)

    report: dict[str, Any] = {
        "name": final.name, "labels": list(labels), "passed": not failures, "failures": failures,
        "source": {"kind": src.kind, "path": str(src.path) if src.path else "<keras.Model object>"},
        "output": {"model_file": str(out), "card_file": str(cpath), "sha256": sha},
        "quantization": {**quant, "op_counts": ops["op_counts"], "attempts": converted.attempts},
        "float_ops": ops["float_ops"], "notes": list(src.notes),
        "validation": {"data": vset.source, "on_calibration_set": on_calib, "float_reference": float_ref,
                       "thresholds": {"min_agreement": min_agreement, "max_accuracy_drop": max_accuracy_drop},
                       "accuracy_drop": acc_drop, **cmp},
        "sizes": sizes, "latency_ms": latency, "tools": tools, "created": created,
        "inputs": card_in, "outputs": card_out, "warnings": warnings,
    }
    for w in warnings:
        log.warning("%s", w)
    paths: dict[str, str] = {}
    if report_dir is not None:
        from .report import write_report

        paths = write_report(report, Path(report_dir), out.stem)
    return ConversionResult(model_path=out, card_path=cpath, card=final, report=report,
                            float_ops=ops["float_ops"], passed=not failures, failures=failures, warnings=warnings,
                            report_paths=paths)
