"""Model loading and full-integer TFLite conversion.

Every source (a ``keras.Model`` object, ``.keras``, legacy ``.h5``, a SavedModel folder, ONNX through
:mod:`affectlite_convert.onnx_import`) is first turned into a SavedModel whose serving signature has a
fixed batch of 1 and static shapes: the TFLite int8 kernels and the calibrator need static shapes, and
on-device inference runs one sample at a time anyway. Keras recurrent layers (LSTM, GRU, SimpleRNN) are
rebuilt with ``unroll=True`` (same weights) so that the TFLite calibrator never meets a ``WHILE`` loop
(it crashes on them in TF 2.21) and the recurrent maths becomes plain int8 ops.

The conversion tries ``TFLITE_BUILTINS_INT8`` only, then allows float builtins for the ops that have no
int8 kernel; :func:`analyze_ops` then lists every op that still computes in float and why.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from affectlite.errors import ConversionError, InputError

__all__ = [
    "IO_DTYPES",
    "ConvertedModel",
    "InputInfo",
    "LoadedSource",
    "analyze_ops",
    "convert_float",
    "convert_int8",
    "load_source",
]

log = logging.getLogger("affectlite_convert")

IO_DTYPES = ("int8", "uint8", "float32")
SUPPORTED = ".keras (Keras 3), .h5/.hdf5 (legacy Keras), a SavedModel folder, .onnx, or a keras.Model object"
_RNN_CLASSES = ("LSTM", "GRU", "SimpleRNN")


def _tf() -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf
    except ImportError as e:  # pragma: no cover - the [convert] extra is installed in CI
        raise ConversionError("the converter needs TensorFlow: pip install 'affectlite[convert]'") from e
    return tf


def _keras() -> Any:
    _tf()
    import keras

    return keras


@dataclass(frozen=True)
class InputInfo:
    """One model input as the source model declares it (batch dimension removed).

    Attributes:
        name: The input's name (the SavedModel signature key).
        shape: Shape without the batch dimension; ``None`` for a dimension the model leaves open.
        dtype: numpy dtype name (``float32`` for most inputs, ``int32`` for token ids).
    """

    name: str
    shape: tuple[int | None, ...]
    dtype: str


@dataclass
class LoadedSource:
    """A source model ready for conversion.

    Attributes:
        kind: ``keras``, ``h5``, ``savedmodel`` or ``onnx``.
        path: The source file or folder (``None`` for an in-memory ``keras.Model``).
        inputs: The inputs in the order the user passes arrays (Keras ``model.inputs`` order; for
            SavedModel/ONNX the signature order).
        keras_model: The Keras model when there is one (the float reference for validation).
        saved_model_dir: The SavedModel folder when the source is one (ONNX: the onnx2tf output).
        notes: Transformations applied (unrolled RNNs ...), copied into the report.
    """

    kind: str
    path: Path | None
    inputs: list[InputInfo]
    keras_model: Any = None
    saved_model_dir: Path | None = None
    notes: list[str] = field(default_factory=list)
    source_bytes: int | None = None
    tools: dict[str, str] = field(default_factory=dict)


@dataclass
class ConvertedModel:
    """The result of one TFLite conversion.

    Attributes:
        content: The ``.tflite`` flatbuffer.
        ops_sets: The op sets that were allowed for the conversion that succeeded.
        attempts: One line per attempt (what was tried and why it failed).
        signature_inputs: Signature input name for each TFLite input tensor, in TFLite order.
    """

    content: bytes
    ops_sets: list[str]
    attempts: list[str]
    notes: list[str] = field(default_factory=list)


def load_source(model: Any, *, onnx_env: str | os.PathLike[str] | None = None,
                workdir: Path | None = None) -> LoadedSource:
    """Load a model from a path or take a ``keras.Model`` object.

    Args:
        model: A path (``.keras``, ``.h5``/``.hdf5``, SavedModel folder, ``.onnx``) or a ``keras.Model``.
        onnx_env: Python environment with onnx2tf for ONNX sources (see :mod:`affectlite_convert.onnx_import`).
        workdir: Scratch folder (ONNX conversion output).

    Raises:
        ConversionError: missing file, unknown format, or a file that cannot be loaded (corrupt).
    """
    if not isinstance(model, (str, os.PathLike)):
        keras = _keras()
        if isinstance(model, keras.Model):
            return LoadedSource("keras", None, _keras_inputs(model), keras_model=model)
        raise ConversionError(f"model must be a path ({SUPPORTED}) or a keras.Model, got {type(model).__name__}")
    p = Path(model)
    if not p.exists():
        raise ConversionError(f"model {p} does not exist")
    suffix = p.suffix.lower()
    if p.is_dir():
        if not (p / "saved_model.pb").is_file() and not (p / "saved_model.pbtxt").is_file():
            raise ConversionError(f"{p} is a folder but not a TensorFlow SavedModel (no saved_model.pb in it); "
                                  f"supported: {SUPPORTED}")
        return _load_saved_model(p, "savedmodel")
    if suffix in (".keras", ".h5", ".hdf5"):
        keras = _keras()
        try:
            m = keras.models.load_model(p, compile=False)
        except Exception as e:
            raise ConversionError(f"cannot load Keras model {p}: {type(e).__name__}: {str(e)[:300]}. "
                                  "Is the file complete and saved with model.save()? Custom layers must be "
                                  "importable (registered with keras.saving.register_keras_serializable)") from e
        src = LoadedSource("keras" if suffix == ".keras" else "h5", p, _keras_inputs(m), keras_model=m)
        src.source_bytes = p.stat().st_size
        return src
    if suffix == ".onnx":
        from .onnx_import import onnx_to_saved_model

        out, version = onnx_to_saved_model(
            p, (workdir or Path(tempfile.mkdtemp(prefix="affectlite-onnx-"))) / "onnx_sm", env=onnx_env)
        src = _load_saved_model(out, "onnx")
        src.tools["onnx2tf"] = version
        src.path = p
        src.source_bytes = p.stat().st_size
        return src
    if suffix == ".tflite":
        raise ConversionError(f"{p} is already a TFLite model; the converter needs the float source model "
                              f"({SUPPORTED}) to calibrate and validate it")
    raise ConversionError(f"unknown model format {suffix or '(no extension)'!r} for {p}; supported: {SUPPORTED}")


def _keras_inputs(m: Any) -> list[InputInfo]:
    out = []
    for t in m.inputs:
        shape = tuple(None if d is None else int(d) for d in t.shape[1:])
        out.append(InputInfo(str(t.name).split(":")[0], shape, str(np.dtype(t.dtype).name)))
    return out


def _signature(loaded: Any, where: Path) -> Any:
    sigs = dict(loaded.signatures)
    if not sigs:
        raise ConversionError(f"SavedModel {where} has no signatures; save it with a serving signature "
                              "(tf.saved_model.save(obj, dir, signatures=fn.get_concrete_function(...)))")
    return sigs.get("serving_default") or next(iter(sigs.values()))


def _load_saved_model(p: Path, kind: str) -> LoadedSource:
    tf = _tf()
    try:
        loaded = tf.saved_model.load(str(p))
    except Exception as e:
        raise ConversionError(f"cannot load SavedModel {p}: {type(e).__name__}: {str(e)[:300]}") from e
    sig = _signature(loaded, p)
    specs = sig.structured_input_signature[1]
    inputs = [InputInfo(name, tuple(None if d is None else int(d) for d in spec.shape[1:]),
                        str(np.dtype(spec.dtype.as_numpy_dtype).name)) for name, spec in specs.items()]
    src = LoadedSource(kind, p, inputs, saved_model_dir=p)
    src.source_bytes = sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return src


def unroll_rnns(model: Any) -> tuple[Any, list[str]]:
    """Rebuild a Keras model with every LSTM/GRU/SimpleRNN set to ``unroll=True`` (same weights).

    Returns:
        ``(model, notes)``; the model is returned unchanged when it has no recurrent layer.

    Raises:
        ConversionError: a recurrent layer has no static sequence length, or the model cannot be cloned.
    """
    keras = _keras()
    rnn_layers = [layer for layer in _walk_layers(model) if _rnn_name(layer) and not _unrolled(layer)]
    if not rnn_layers:
        return model, []
    for layer in rnn_layers:
        try:
            steps = layer.input.shape[1] if not isinstance(layer.input, list) else layer.input[0].shape[1]
        except Exception:
            steps = -1
        if steps is None:
            raise ConversionError(f"recurrent layer {layer.name!r} has no fixed sequence length (time "
                                  "dimension None): int8 TFLite needs a static length. Rebuild the model with "
                                  "keras.Input(shape=(T, features)) and pad/truncate sequences to T")

    def clone(layer: Any) -> Any:
        cfg = layer.get_config()
        if _rnn_name(layer):
            cfg["unroll"] = True
        elif type(layer).__name__ == "Bidirectional":
            for key in ("layer", "backward_layer"):
                if isinstance(cfg.get(key), dict):
                    cfg[key]["config"]["unroll"] = True
        return layer.__class__.from_config(cfg)

    try:
        new = keras.models.clone_model(model, clone_function=clone)
        new.set_weights(model.get_weights())
    except Exception as e:
        raise ConversionError(f"the model has recurrent layers ({', '.join(lyr.name for lyr in rnn_layers)}) "
                              "that must be unrolled for int8 TFLite, but it cannot be cloned "
                              f"({type(e).__name__}: {str(e)[:200]}). Build it as a functional or Sequential "
                              "model, or set unroll=True on its recurrent layers") from e
    notes = [f"recurrent layer {lyr.name!r} ({_rnn_name(lyr)}) unrolled over its fixed sequence length for "
             "full-integer conversion (same weights)" for lyr in rnn_layers]
    return new, notes


def _walk_layers(model: Any) -> Iterator[Any]:
    for layer in getattr(model, "layers", []):
        yield layer
        if type(layer).__name__ == "Bidirectional":
            yield layer.forward_layer
        elif hasattr(layer, "layers"):
            yield from _walk_layers(layer)


def _rnn_name(layer: Any) -> str | None:
    name = type(layer).__name__
    return name if name in _RNN_CLASSES else None


def _unrolled(layer: Any) -> bool:
    return bool(getattr(layer, "unroll", False))


def export_static(src: LoadedSource, shapes: Mapping[str, tuple[int, ...]], out_dir: Path) -> Path:
    """Write a SavedModel with one serving signature of batch 1 and fully static shapes.

    Args:
        src: The loaded source.
        shapes: Per input name, the full static shape without batch (from the calibration data).
        out_dir: Folder to create.

    Returns:
        The SavedModel folder.
    """
    tf = _tf()
    names = [i.name for i in src.inputs]
    specs = [tf.TensorSpec((1, *shapes[i.name]), tf.as_dtype(i.dtype), name=i.name) for i in src.inputs]
    module = tf.Module()
    if src.keras_model is not None:
        model, notes = unroll_rnns(src.keras_model)
        src.notes.extend(n for n in notes if n not in src.notes)
        module.model = model
        multi = len(names) > 1

        def call(*args: Any) -> Any:
            out = model(list(args) if multi else args[0], training=False)
            if isinstance(out, (list, tuple)):
                return {f"output_{k}": o for k, o in enumerate(out)}
            if isinstance(out, dict):
                return out
            return {"output_0": out}
    else:
        assert src.saved_model_dir is not None
        loaded = tf.saved_model.load(str(src.saved_model_dir))
        sig = _signature(loaded, src.saved_model_dir)
        module.loaded = loaded

        def call(*args: Any) -> Any:
            return sig(**dict(zip(names, args, strict=True)))

    try:
        if src.keras_model is not None:
            keras = _keras()
            archive = keras.export.ExportArchive()
            archive.track(module.model)
            archive.add_endpoint("serving_default", tf.function(call, input_signature=specs, autograph=False))
            with _quiet():
                archive.write_out(str(out_dir), verbose=False)
        else:
            fn = tf.function(call, input_signature=specs, autograph=False)
            tf.saved_model.save(module, str(out_dir), signatures=fn.get_concrete_function())
    except ConversionError:
        raise
    except Exception as e:
        static = {k: [1, *v] for k, v in shapes.items()}
        raise ConversionError(f"could not trace the model with static shapes {static}: "
                              f"{type(e).__name__}: {str(e)[:300]}") from e
    return out_dir


def _converter(saved_model_dir: Path) -> Any:
    return _tf().lite.TFLiteConverter.from_saved_model(str(saved_model_dir))


_real_stderr: Any = None  # the terminal while _quiet() silences fd 2 (progress bars write here)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence absl/TF chatter on stderr during conversion (fd-level, restored afterwards)."""
    global _real_stderr
    if os.environ.get("AFFECTLITE_CONVERT_VERBOSE"):
        yield
        return
    import warnings

    sys.stderr.flush()
    saved = os.dup(2)
    real = os.fdopen(os.dup(saved), "w")
    try:
        with open(os.devnull, "w") as null, warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated.*")
            os.dup2(null.fileno(), 2)
            _real_stderr = real
            yield
    finally:
        _real_stderr = None
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        real.close()


def convert_float(saved_model_dir: Path) -> bytes:
    """Plain float32 TFLite conversion (the size reference, and a check for ops before calibrating)."""
    conv = _converter(saved_model_dir)
    try:
        with _quiet():
            return bytes(conv.convert())
    except Exception as e:
        raise ConversionError(f"TFLite cannot convert this model even in float: {_short(e)}") from e


def convert_int8(saved_model_dir: Path, representative: Sequence[dict[str, np.ndarray]], *,
                 io_dtype: str = "int8", per_channel: bool = True,
                 allow_float_ops: bool = True, float_content: bytes | None = None,
                 progress: bool = False) -> ConvertedModel:
    """Full-integer conversion with a representative dataset.

    Args:
        saved_model_dir: SavedModel from :func:`export_static`.
        representative: Calibration samples, each a dict ``{input_name: array with batch 1}``.
        io_dtype: Input/output tensor type: ``int8``, ``uint8`` or ``float32`` (float I/O, int8 inside).
        per_channel: Per-channel weight quantisation (``False``: per-tensor).
        allow_float_ops: Allow float builtins for ops without an int8 kernel (listed by :func:`analyze_ops`).
        float_content: The float conversion when already done (checked for WHILE loops before calibrating).
        progress: Progress bar over the calibration samples (on stderr, only when it is a terminal).

    Raises:
        ConversionError: no op set worked (message has each attempt's error).
    """
    tf = _tf()
    if io_dtype not in IO_DTYPES:
        raise ConversionError(f"io_dtype {io_dtype!r} is not one of {', '.join(IO_DTYPES)}")
    float_ops = _float_builtin_ops(float_content if float_content is not None else convert_float(saved_model_dir))
    if "WHILE" in float_ops:
        raise ConversionError("the model contains a WHILE loop (a recurrent layer that is not unrolled, or a "
                              "tf.while_loop); the TFLite int8 calibrator cannot run it. Unroll recurrent layers "
                              "(keras LSTM/GRU(unroll=True) with a fixed sequence length) before exporting")

    def rep() -> Iterator[dict[str, np.ndarray]]:
        bar = None
        out = _real_stderr or sys.stderr
        if progress and out.isatty():
            try:
                from tqdm import tqdm

                bar = tqdm(total=len(representative), desc="calibrate", unit="sample", leave=False, file=out)
            except ImportError:
                bar = None
        for sample in representative:
            yield sample
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()

    tf_io = {"int8": tf.int8, "uint8": tf.uint8, "float32": tf.float32}[io_dtype]
    plans: list[tuple[str, list[Any]]] = [("TFLITE_BUILTINS_INT8", [tf.lite.OpsSet.TFLITE_BUILTINS_INT8])]
    if allow_float_ops:
        plans.append(("TFLITE_BUILTINS_INT8+TFLITE_BUILTINS",
                      [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]))
    attempts: list[str] = []
    for label, ops in plans:
        conv = _converter(saved_model_dir)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = rep
        conv.target_spec.supported_ops = ops
        conv.inference_input_type = tf_io
        conv.inference_output_type = tf_io
        conv._experimental_disable_per_channel = not per_channel
        try:
            with _quiet():
                content = bytes(conv.convert())
        except Exception as e:
            attempts.append(f"{label}: {_short(e)}")
            log.info("conversion with %s failed: %s", label, _short(e))
            continue
        attempts.append(f"{label}: ok")
        return ConvertedModel(content, label.split("+"), attempts)
    hint = "" if allow_float_ops else " (float fallback was disabled: allow_float_ops=True may help)"
    raise ConversionError("full-integer conversion failed" + hint + ":\n  - " + "\n  - ".join(attempts))


def _short(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    errs = [ln for ln in lines if "error:" in ln]
    text = "; ".join(dict.fromkeys(errs[:3])) if errs else (lines[-1] if lines else "")
    return f"{type(e).__name__}: {text[:500]}"


# --------------------------------------------------------------------------------------------------- op analysis

_FLOAT_REASONS = {
    "WHILE": "control flow (a recurrent loop that was not unrolled) has no int8 form",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "the fused LSTM kernel has no int8 version for this configuration "
                                    "(int8 LSTM needs 16x8 quantisation of its cell state)",
    "BIDIRECTIONAL_SEQUENCE_LSTM": "the fused bidirectional LSTM kernel has no int8 version",
    "UNIDIRECTIONAL_SEQUENCE_RNN": "the fused RNN kernel has no int8 version",
    "CUSTOM": "a TensorFlow (Flex/custom) op outside the TFLite builtins",
    "SPLIT": "an int8 SPLIT must give all its outputs the input's scale; these outputs have different ranges "
             "(e.g. the gates of an LSTM step), so it runs in float between DEQUANTIZE and QUANTIZE",
    "DEQUANTIZE": "converts int8 back to float for a following float op",
    "QUANTIZE": "converts float to int8 at the boundary of a float region",
}


def _schema() -> Any:
    _tf()
    from tensorflow.lite.python import schema_py_generated as schema

    return schema


def analyze_ops(content: bytes) -> dict[str, Any]:
    """List the ops of a ``.tflite`` flatbuffer and those that compute in float.

    Returns:
        ``{"op_counts": {op: n}, "float_ops": [{"op", "index", "subgraph", "tensor", "reason", "boundary",
        "weights_only"}]}``; an op counts as float when one of its non-constant inputs or outputs is float32;
        ``boundary`` marks the QUANTIZE/DEQUANTIZE of float model inputs/outputs (``io_dtype="float32"``),
        ``weights_only`` ops that compute on constants only (unfolded weight reshuffles).
    """
    schema = _schema()
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    ttypes = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    m = schema.Model.GetRootAsModel(content, 0)
    counts: dict[str, int] = {}
    floats: list[dict[str, Any]] = []
    for s in range(m.SubgraphsLength()):
        g = m.Subgraphs(s)
        g_inputs = {int(g.Inputs(i)) for i in range(g.InputsLength())}
        g_outputs = {int(g.Outputs(i)) for i in range(g.OutputsLength())}
        const: set[int] = set()  # constant tensors and tensors computed from constants only
        for t in range(g.TensorsLength()):
            if m.Buffers(g.Tensors(t).Buffer()).DataLength() > 0 and t not in g_inputs:
                const.add(t)
        for k in range(g.OperatorsLength()):
            op = g.Operators(k)
            code = m.OperatorCodes(op.OpcodeIndex())
            bcode = max(int(code.BuiltinCode()), int(code.DeprecatedBuiltinCode()))
            name = names.get(bcode, f"BUILTIN_{bcode}")
            if name == "CUSTOM":
                cc = code.CustomCode()
                name = f"CUSTOM:{cc.decode() if cc else '?'}"
            counts[name] = counts.get(name, 0) + 1
            ins = [int(op.Inputs(i)) for i in range(op.InputsLength()) if int(op.Inputs(i)) >= 0]
            outs = [int(op.Outputs(i)) for i in range(op.OutputsLength())]
            weights_only = bool(ins) and all(t in const for t in ins)
            if weights_only:
                const.update(outs)
            float_tensor = None
            for t in ins + outs:
                tensor = g.Tensors(t)
                if ttypes.get(tensor.Type()) == "FLOAT32" and not (t in const and t in ins):
                    float_tensor = tensor.Name().decode(errors="replace")
                    break
            if float_tensor is not None:
                base = name.split(":")[0]
                reason = _FLOAT_REASONS.get(base, "no int8 kernel in TFLITE_BUILTINS_INT8 for this op/shape, "
                                                  "so the converter kept it in float")
                boundary = (base == "QUANTIZE" and ins[:1] and ins[0] in g_inputs) or (
                    base == "DEQUANTIZE" and outs[:1] and outs[0] in g_outputs)
                if boundary:
                    reason = ("float model input/output converted to/from int8 (io_dtype float32); the "
                              "computation itself is int8")
                elif weights_only:
                    reason = ("works on constant weights only (the converter did not fold it): a float " + base
                              + " of weights at run time, not of activations; " + reason)
                floats.append({"op": name, "index": k, "subgraph": s, "tensor": float_tensor, "reason": reason,
                               "boundary": bool(boundary), "weights_only": weights_only})
    return {"op_counts": counts, "float_ops": floats}


def _float_builtin_ops(content: bytes) -> set[str]:
    return set(analyze_ops(content)["op_counts"])


def tflite_signature_inputs(content: bytes) -> list[str] | None:
    """Signature input names in TFLite input-tensor order (``None`` when the model has no signature)."""
    schema = _schema()
    m = schema.Model.GetRootAsModel(content, 0)
    if m.SignatureDefsLength() == 0:
        return None
    sd = m.SignatureDefs(0)
    g = m.Subgraphs(sd.SubgraphIndex())
    order = [int(g.Inputs(i)) for i in range(g.InputsLength())]
    by_tensor = {}
    for i in range(sd.InputsLength()):
        tm = sd.Inputs(i)
        by_tensor[int(tm.TensorIndex())] = tm.Name().decode()
    if set(by_tensor) != set(order):
        return None
    return [by_tensor[t] for t in order]


def check_shapes(src: LoadedSource, arrays: Mapping[str, np.ndarray]) -> dict[str, tuple[int, ...]]:
    """Check calibration arrays against the model's inputs and return the static shapes (no batch).

    Raises:
        InputError: an input is missing, or its rank/shape contradicts the model.
    """
    shapes: dict[str, tuple[int, ...]] = {}
    for info in src.inputs:
        if info.name not in arrays:
            raise InputError(f"no data for model input {info.name!r}; the model's inputs are "
                             f"{[i.name for i in src.inputs]}")
        a = arrays[info.name]
        got = tuple(int(d) for d in a.shape[1:])
        if len(got) != len(info.shape) or any(w is not None and w != g for w, g in zip(info.shape, got,
                                                                                           strict=False)):
            want = ["batch", *("any" if d is None else d for d in info.shape)]
            raise InputError(f"input {info.name!r}: the model expects shape {want}, the data has shape "
                             f"{list(a.shape)} (batch first); check the preprocessing (size, channels, "
                             "sequence length) matches the model")
        shapes[info.name] = got
    return shapes


def adapt_layout(src: LoadedSource, arrays: dict[str, np.ndarray]) -> list[str]:
    """For ONNX sources, transpose NCHW arrays to the NHWC layout onnx2tf gives image inputs (in place).

    Returns:
        A note per transposed input (empty when nothing changed).
    """
    notes: list[str] = []
    if src.kind != "onnx":
        return notes
    for info in src.inputs:
        a = arrays.get(info.name)
        if a is None or a.ndim != 4 or len(info.shape) != 3:
            continue
        fits = all(w is None or w == g for w, g in zip(info.shape, a.shape[1:], strict=True))
        nhwc = (a.shape[2], a.shape[3], a.shape[1])
        if not fits and all(w is None or w == g for w, g in zip(info.shape, nhwc, strict=True)):
            arrays[info.name] = np.ascontiguousarray(a.transpose(0, 2, 3, 1))
            notes.append(f"input {info.name!r}: NCHW data transposed to NHWC, the layout onnx2tf gives the "
                         "converted model (feed NHWC to the .tflite)")
    return notes
