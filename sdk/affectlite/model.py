"""One loaded model: an interpreter, its card, and int8/uint8 (de)quantisation read from tensor details."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._io import sha256_file
from .card import ModelCard, card_path_for, load_card
from .errors import InputError, ModelCardError, ModelLoadError
from .interpreters import Interpreter, create_interpreter

__all__ = ["Model", "dequantize", "quantize"]


def quantize(x: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """Quantise float data for a tensor using its own scale/zero-point (no-op for float tensors)."""
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return np.asarray(x, dtype=dtype)
    scale, zero = _qparams(detail)
    if scale == 0:
        return np.asarray(x).astype(dtype)
    info = np.iinfo(dtype)
    q = np.round(np.asarray(x, dtype=np.float32) / scale + zero)
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(q: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """Turn a quantised tensor back into float32 using its scale/zero-point (float tensors pass through)."""
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return np.asarray(q, dtype=np.float32)
    scale, zero = _qparams(detail)
    if scale == 0:
        return np.asarray(q, dtype=np.float32)
    return (np.asarray(q, dtype=np.float32) - zero) * scale


def _qparams(detail: dict[str, Any]) -> tuple[float, int]:
    qp = detail.get("quantization_parameters") or {}
    scales = qp.get("scales")
    zeros = qp.get("zero_points")
    if scales is not None and len(scales) > 0:
        return float(scales[0]), int(zeros[0]) if zeros is not None and len(zeros) else 0
    sc, zp = detail.get("quantization", (0.0, 0))
    return float(sc), int(zp)


class Model:
    """A TFLite model with its card, ready to run on float inputs.

    Not thread-safe: the interpreter is not re-entrant. Create one :class:`Model` per inference thread
    (``Model.load`` is cheap for small models), or serialise calls; :meth:`run` holds an internal lock so
    accidental sharing is safe but serialised.
    """

    def __init__(self, interpreter: Interpreter, card: ModelCard, path: Path | None, backend: str) -> None:
        self._interp = interpreter
        self.card = card
        self.path = path
        self.backend = backend
        self._in = interpreter.get_input_details()
        self._out = interpreter.get_output_details()
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, card: ModelCard | str | os.PathLike[str] | None = None,
             backend: str = "auto", num_threads: int | None = None, delegates: Sequence[str] = (),
             check_hash: bool = True, expected_task: str | None = None, default_delegates: bool = True) -> Model:
        """Load a ``.tflite`` and its card, and check that they match.

        Args:
            path: The model file.
            card: A card, a card path, or ``None`` for the sidecar ``<stem>.card.json``.
            backend: Interpreter backend (see :func:`affectlite.interpreters.create_interpreter`).
            num_threads: Interpreter threads.
            delegates: Delegate library paths.
            check_hash: Verify the card's ``model_sha256`` against the file, before the interpreter parses it
                (a corrupted model can crash a TFLite interpreter; the hash keeps damaged files out).
            expected_task: Refuse a card whose ``task`` differs (e.g. a voice model given as face model).
            default_delegates: Let the backend apply its default delegate (XNNPACK); ``False``: builtin kernels
                only (see :func:`affectlite.interpreters.create_interpreter`).

        Raises:
            ModelLoadError: file missing, corrupt or truncated.
            ModelCardError: card missing/malformed or not matching the model (every mismatch listed).
        """
        p = Path(path)
        if not p.is_file():
            raise ModelLoadError(f"model file {p} does not exist")
        if p.stat().st_size < 16:
            raise ModelLoadError(f"model file {p} is {p.stat().st_size} bytes: truncated or empty")
        c = card if isinstance(card, ModelCard) else load_card(card if card is not None else card_path_for(p))
        if expected_task is not None and c.task != expected_task:
            raise ModelCardError(f"{c.source or c.name}: this is a {c.task!r} model, expected a "
                                 f"{expected_task!r} model for {p}")
        if check_hash and c.model_sha256:
            # before any native code parses the file: a damaged flatbuffer can crash the interpreter (SIGSEGV)
            actual = sha256_file(p)
            if actual != c.model_sha256:
                raise ModelCardError(
                    f"model card does not match the model:\n  - {c.source or c.name}: model_sha256 "
                    f"{c.model_sha256[:12]}... does not match the file {p} (sha256 {actual[:12]}...): the model was "
                    "replaced, truncated or corrupted, so it was not loaded; restore the file, or re-run "
                    "`affectlite convert` to write a matching card")
        interp, used = create_interpreter(p, backend=backend, num_threads=num_threads, delegates=delegates,
                                          default_delegates=default_delegates)
        try:
            in_det, out_det = interp.get_input_details(), interp.get_output_details()
        except Exception as e:  # e.g. UnicodeDecodeError on a corrupted tensor name
            raise ModelLoadError(f"model file {p} is corrupt: its tensor details cannot be read ({e!r})") from e
        problems = c.check_against(in_det, out_det, None)  # the hash was checked above
        if problems:
            raise ModelCardError("model card does not match the model:\n  - " + "\n  - ".join(problems))
        return cls(interp, c, p, used)

    @property
    def input_details(self) -> list[dict[str, Any]]:
        """The interpreter's input tensor details."""
        return list(self._in)

    @property
    def output_details(self) -> list[dict[str, Any]]:
        """The interpreter's output tensor details."""
        return list(self._out)

    def run(self, *inputs: np.ndarray, quantized: bool = False) -> list[np.ndarray]:
        """Run one inference on float inputs; returns float32 outputs.

        Inputs are quantised with each input tensor's own scale/zero-point; outputs dequantised likewise.
        A batch dimension that differs from the model's resizes the input tensor.

        Args:
            inputs: One array per model input.
            quantized: The inputs are already in each input tensor's dtype (quantised by the caller with the
                scale/zero-point of :attr:`input_details`, e.g. a sparse text vector filled in directly):
                they are passed as they are.

        Raises:
            InputError: wrong number of inputs, or a shape the model cannot take; with ``quantized``, an input
                whose dtype is not the tensor's.
        """
        if len(inputs) != len(self._in):
            raise InputError(f"{self.card.name}: expected {len(self._in)} input(s), got {len(inputs)}")
        with self._lock:
            resized = False
            for det, x in zip(self._in, inputs, strict=True):
                arr = np.asarray(x)
                if arr.dtype.kind not in "biuf":
                    raise InputError(f"{self.card.name}: input {det['name']!r} has dtype {arr.dtype}; pass a "
                                     "real-valued numeric array (float32)")
                want = tuple(int(v) for v in det["shape"])
                if arr.shape != want:
                    if arr.ndim != len(want) or arr.shape[1:] != want[1:]:
                        raise InputError(f"{self.card.name}: input {det['name']!r} expects shape {list(want)} "
                                         f"(batch may vary), got {list(arr.shape)}")
                    self._interp.resize_tensor_input(det["index"], list(arr.shape))
                    resized = True
            if resized:
                self._interp.allocate_tensors()
                self._in = self._interp.get_input_details()
                self._out = self._interp.get_output_details()
            for det, x in zip(self._in, inputs, strict=True):
                arr = np.asarray(x)
                if quantized:
                    if arr.dtype != np.dtype(det["dtype"]):
                        raise InputError(f"{self.card.name}: input {det['name']!r} is {np.dtype(det['dtype'])}, "
                                         f"got an already-quantised array of {arr.dtype}")
                    self._interp.set_tensor(det["index"], arr)
                    continue
                if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
                    raise InputError(f"{self.card.name}: input {det['name']!r} contains NaN or infinity")
                self._interp.set_tensor(det["index"], quantize(arr, det))
            try:
                self._interp.invoke()
            except RuntimeError as e:
                raise ModelLoadError(f"{self.card.name}: inference failed: {e}") from None
            return [dequantize(self._interp.get_tensor(d["index"]), d) for d in self._out]

    def predict_proba(self, *inputs: np.ndarray, quantized: bool = False) -> np.ndarray:
        """Class probabilities ``(batch, n_labels)``, calibrated with the card's temperature.

        Works whether the model ends in a softmax (``kind: probabilities``) or emits logits. ``quantized``: as
        in :meth:`run`.
        """
        out = self.run(*inputs, quantized=quantized)[0].astype(np.float64)
        if out.ndim == 1:
            out = out[None, :]
        t = self.card.temperature
        if self.card.outputs[0].kind == "logits":
            logits = out
        else:
            logits = np.log(np.clip(out, 1e-6, 1.0))
        z = logits / t
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        probs: np.ndarray = (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
        return probs
