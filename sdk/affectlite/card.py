"""Model cards: the JSON sidecar that travels with every model (``model.tflite`` + ``model.card.json``).

One schema for all tasks. The card says what the model expects (tensor shapes and dtypes, and the
preprocessing of each input), what it outputs (labels in order and their mapping to the common set),
how it was trained (data, terms, split), how well it does (metrics float and int8) and the sha256 of the
model file. :func:`load_card` parses and validates it; :meth:`ModelCard.check_against` compares it with
an interpreter's tensors and the file's hash and lists exactly what does not match.

Schema (``schema_version`` 1)::

    {
      "schema_version": 1,
      "name": "affectlite-face", "version": "1.0.0",
      "task": "face" | "voice" | "text" | "fusion" | "generic",
      "labels": ["angry", ...],                       # output order
      "label_mapping": {"calm": "neutral"},           # optional: model label -> common label (null = drop)
      "inputs": [{"name": "image", "shape": [1, 48, 48, 1], "dtype": "int8",
                  "kind": "image" | "audio_features" | "text_features" | "tensor",
                  "preprocessing": {...}}],           # kind-specific, interpreted by face/voice/text
      "outputs": [{"name": "probs", "shape": [1, 7], "dtype": "int8", "kind": "probabilities" | "logits"}],
      "calibration": {"temperature": 1.0},
      "training": {"data": "...", "terms": "...", "split": "...", "recipe": "..."},
      "metrics": {"float": {...}, "int8": {...}, "split": "..."},
      "quantization": {...}, "tools": {...}, "limitations": ["..."],
      "model_sha256": "<hex>", "model_file": "face.tflite", "created": "2026-11-28T00:00:00Z"
    }
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ._io import atomic_write_text, sha256_file
from .errors import ModelCardError
from .labels import LABELS, canonical_label

__all__ = [
    "CARD_SUFFIX",
    "SCHEMA_VERSION",
    "ModelCard",
    "TensorSpec",
    "card_path_for",
    "load_card",
    "save_card",
]

SCHEMA_VERSION = 1
CARD_SUFFIX = ".card.json"
TASKS = ("face", "voice", "text", "fusion", "generic")
DTYPES = ("float32", "int8", "uint8", "int16", "int32", "int64", "float16", "bool")
INPUT_KINDS = ("image", "audio_features", "text_features", "tensor", "embedding")
OUTPUT_KINDS = ("probabilities", "logits", "embedding", "tensor")


@dataclass(frozen=True)
class TensorSpec:
    """One input or output tensor as the card describes it.

    Attributes:
        name: Tensor name (informational; matching is by position).
        shape: Shape, batch first; ``-1`` for a dynamic dimension.
        dtype: numpy dtype name, e.g. ``"int8"`` or ``"float32"``.
        kind: What the tensor carries (see the module docstring).
        preprocessing: Kind-specific preprocessing spec (image normalisation, audio feature spec,
            text featuriser spec); interpreted by :mod:`affectlite.face`, :mod:`affectlite.voice` and
            :mod:`affectlite.text`.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    kind: str = "tensor"
    preprocessing: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelCard:
    """A parsed, validated model card. See the module docstring for the JSON schema."""

    name: str
    task: str
    labels: tuple[str, ...]
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    version: str = "0.0.0"
    label_mapping: Mapping[str, str | None] = field(default_factory=dict)
    calibration: Mapping[str, Any] = field(default_factory=dict)
    training: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, Any] = field(default_factory=dict)
    quantization: Mapping[str, Any] = field(default_factory=dict)
    tools: Mapping[str, Any] = field(default_factory=dict)
    limitations: tuple[str, ...] = ()
    model_sha256: str | None = None
    model_file: str | None = None
    created: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    source: str | None = None  # where it was loaded from (not serialised)

    @property
    def temperature(self) -> float:
        """Calibration temperature (1.0 when the card has none)."""
        t = self.calibration.get("temperature", 1.0)
        return float(t) if isinstance(t, (int, float)) and t > 0 else 1.0

    def common_label(self, label: str) -> str | None:
        """Map one of this model's labels to the common set (``None``: no counterpart)."""
        if label in self.label_mapping:
            mapped: str | None = self.label_mapping[label]
            return mapped
        return canonical_label(label)

    def to_dict(self) -> dict[str, Any]:
        """Serialise to the JSON-ready dict of the schema."""
        d: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "name": self.name,
            "version": self.version,
            "task": self.task,
            "labels": list(self.labels),
            "label_mapping": dict(self.label_mapping),
            "inputs": [_spec_dict(s) for s in self.inputs],
            "outputs": [_spec_dict(s) for s in self.outputs],
            "calibration": dict(self.calibration),
            "training": dict(self.training),
            "metrics": dict(self.metrics),
            "quantization": dict(self.quantization),
            "tools": dict(self.tools),
            "limitations": list(self.limitations),
            "model_sha256": self.model_sha256,
            "model_file": self.model_file,
            "created": self.created,
        }
        d.update(self.extra)
        return d

    def with_updates(self, **changes: Any) -> ModelCard:
        """Return a copy with fields replaced (dataclasses.replace)."""
        return replace(self, **changes)

    def check_against(self, input_details: Sequence[Mapping[str, Any]],
                      output_details: Sequence[Mapping[str, Any]],
                      model_path: str | os.PathLike[str] | None = None) -> list[str]:
        """Compare the card with an interpreter's tensor details and the model file's hash.

        Args:
            input_details: ``interpreter.get_input_details()``.
            output_details: ``interpreter.get_output_details()``.
            model_path: The model file, to check ``model_sha256`` (skipped when ``None``).

        Returns:
            A list of human-readable mismatches; empty when everything matches.
        """
        problems: list[str] = []
        where = self.source or self.name
        for role, specs, details in (("inputs", self.inputs, input_details),
                                     ("outputs", self.outputs, output_details)):
            if len(specs) != len(details):
                problems.append(f"{where}: card lists {len(specs)} {role}, model has {len(details)}")
                continue
            for i, (spec, det) in enumerate(zip(specs, details, strict=True)):
                shape = tuple(int(v) for v in det.get("shape_signature", det["shape"]))
                real = tuple(int(v) for v in det["shape"])
                if not _shape_matches(spec.shape, shape) and not _shape_matches(spec.shape, real):
                    problems.append(f"{where}: {role}[{i}] ({spec.name}) shape: card says {list(spec.shape)}, "
                                    f"model has {list(real)}")
                dt = _dtype_name(det["dtype"])
                if dt != spec.dtype:
                    problems.append(f"{where}: {role}[{i}] ({spec.name}) dtype: card says {spec.dtype}, "
                                    f"model has {dt}")
        n_out = self.outputs[0].shape[-1] if self.outputs and self.outputs[0].kind in (
            "probabilities", "logits") else None
        if n_out is not None and n_out > 0 and n_out != len(self.labels):
            problems.append(f"{where}: card has {len(self.labels)} labels but output[0] has {n_out} classes")
        if model_path is not None and self.model_sha256:
            actual = sha256_file(model_path)
            if actual != self.model_sha256:
                problems.append(f"{where}: model_sha256 {self.model_sha256[:12]}... does not match the file "
                                f"{os.fspath(model_path)} (sha256 {actual[:12]}...): the model was replaced or "
                                "corrupted; re-run `affectlite convert` or restore the matching card")
        return problems


def _shape_matches(card: Sequence[int], model: Sequence[int]) -> bool:
    if len(card) != len(model):
        return False
    return all(c == m or c == -1 or m == -1 or (i == 0 and (c in (1, -1) or m in (1, -1)))
               for i, (c, m) in enumerate(zip(card, model, strict=True)))


def _dtype_name(dt: Any) -> str:
    import numpy as np

    return str(np.dtype(dt).name)


def _spec_dict(s: TensorSpec) -> dict[str, Any]:
    d = asdict(s)
    d["shape"] = list(s.shape)
    d["preprocessing"] = dict(s.preprocessing)
    return d


def card_path_for(model_path: str | os.PathLike[str]) -> Path:
    """The sidecar card path for a model file: ``face.tflite`` -> ``face.card.json``."""
    p = Path(model_path)
    return p.with_name(p.stem + CARD_SUFFIX)


def _req(d: Mapping[str, Any], key: str, typ: type | tuple[type, ...], where: str) -> Any:
    if key not in d:
        raise ModelCardError(f"{where}: missing required key '{key}'")
    v = d[key]
    if not isinstance(v, typ) or (isinstance(v, bool) and typ is not bool):
        tname = typ.__name__ if isinstance(typ, type) else " or ".join(t.__name__ for t in typ)
        raise ModelCardError(f"{where}: key '{key}' must be {tname}, got {type(v).__name__} {v!r:.60}")
    return v


def _parse_spec(d: Any, where: str, kinds: tuple[str, ...]) -> TensorSpec:
    if not isinstance(d, Mapping):
        raise ModelCardError(f"{where}: must be an object with name/shape/dtype, got {type(d).__name__}")
    name = _req(d, "name", str, where)
    shape = _req(d, "shape", list, where)
    if not shape or not all(isinstance(v, int) and not isinstance(v, bool) and (v > 0 or v == -1)
                            for v in shape):
        raise ModelCardError(f"{where}.shape: expected a non-empty list of positive ints (or -1), got {shape!r}")
    dtype = _req(d, "dtype", str, where)
    if dtype not in DTYPES:
        raise ModelCardError(f"{where}.dtype: {dtype!r} is not one of {', '.join(DTYPES)}")
    kind = d.get("kind", "tensor")
    if kind not in kinds:
        raise ModelCardError(f"{where}.kind: {kind!r} is not one of {', '.join(kinds)}")
    pre = d.get("preprocessing", {})
    if not isinstance(pre, Mapping):
        raise ModelCardError(f"{where}.preprocessing: must be an object, got {type(pre).__name__}")
    return TensorSpec(name=name, shape=tuple(shape), dtype=dtype, kind=kind, preprocessing=dict(pre))


_KNOWN = {"schema_version", "name", "version", "task", "labels", "label_mapping", "inputs", "outputs",
          "calibration", "training", "metrics", "quantization", "tools", "limitations", "model_sha256",
          "model_file", "created"}


def card_from_dict(d: Any, source: str = "<card>") -> ModelCard:
    """Validate a JSON-decoded card and build a :class:`ModelCard`.

    Raises:
        ModelCardError: naming the source and the key path of the first problem.
    """
    if not isinstance(d, Mapping):
        raise ModelCardError(f"{source}: a model card must be a JSON object, got {type(d).__name__}")
    sv = d.get("schema_version", SCHEMA_VERSION)
    if sv != SCHEMA_VERSION:
        raise ModelCardError(f"{source}: schema_version {sv!r} is not supported (this affectlite reads "
                             f"{SCHEMA_VERSION}); upgrade affectlite or re-create the card")
    name = _req(d, "name", str, source)
    task = _req(d, "task", str, source)
    if task not in TASKS:
        raise ModelCardError(f"{source}: task {task!r} is not one of {', '.join(TASKS)}")
    labels = _req(d, "labels", list, source)
    if not labels or not all(isinstance(v, str) and v for v in labels) or len(set(labels)) != len(labels):
        raise ModelCardError(f"{source}: labels must be a non-empty list of distinct strings, got {labels!r:.120}")
    mapping = d.get("label_mapping", {}) or {}
    if not isinstance(mapping, Mapping):
        raise ModelCardError(f"{source}: label_mapping must be an object")
    for k, v in mapping.items():
        if v is not None and v not in LABELS:
            raise ModelCardError(f"{source}: label_mapping.{k} = {v!r} is not a common label "
                                 f"({', '.join(LABELS)}) or null")
    inputs = _req(d, "inputs", list, source)
    outputs = _req(d, "outputs", list, source)
    if not inputs or not outputs:
        raise ModelCardError(f"{source}: inputs and outputs must each list at least one tensor")
    ins = tuple(_parse_spec(x, f"{source}: inputs[{i}]", INPUT_KINDS) for i, x in enumerate(inputs))
    outs = tuple(_parse_spec(x, f"{source}: outputs[{i}]", OUTPUT_KINDS) for i, x in enumerate(outputs))
    objs = {}
    for key in ("calibration", "training", "metrics", "quantization", "tools"):
        v = d.get(key, {}) or {}
        if not isinstance(v, Mapping):
            raise ModelCardError(f"{source}: {key} must be an object, got {type(v).__name__}")
        objs[key] = dict(v)
    temp = objs["calibration"].get("temperature", 1.0)
    if not isinstance(temp, (int, float)) or isinstance(temp, bool) or not 0 < temp < float("inf"):
        raise ModelCardError(f"{source}: calibration.temperature must be a positive finite number, got {temp!r}")
    lim = d.get("limitations", []) or []
    if not isinstance(lim, list) or not all(isinstance(x, str) for x in lim):
        raise ModelCardError(f"{source}: limitations must be a list of strings")
    sha = d.get("model_sha256")
    if sha is not None and (not isinstance(sha, str) or len(sha) != 64
                            or any(c not in "0123456789abcdef" for c in sha)):
        raise ModelCardError(f"{source}: model_sha256 must be 64 lowercase hex digits, got {sha!r:.80}")
    version = d.get("version", "0.0.0")
    return ModelCard(
        name=name, task=task, labels=tuple(labels), inputs=ins, outputs=outs,
        version=str(version), label_mapping=dict(mapping), limitations=tuple(lim),
        model_sha256=sha, model_file=d.get("model_file") if isinstance(d.get("model_file"), str) else None,
        created=d.get("created") if isinstance(d.get("created"), str) else None,
        extra={k: v for k, v in d.items() if k not in _KNOWN}, source=source, **objs,
    )


def load_card(path: str | os.PathLike[str]) -> ModelCard:
    """Read and validate a card file.

    Raises:
        ModelCardError: the file is missing, not JSON, or does not follow the schema.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ModelCardError(f"model card {p} not found: every model needs its card next to it "
                             f"(<model>{CARD_SUFFIX}); `affectlite convert` writes one") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ModelCardError(f"model card {p} cannot be read: {e}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ModelCardError(f"model card {p} is not valid JSON: {e.msg} at line {e.lineno} "
                             f"column {e.colno}") from None
    return card_from_dict(data, source=str(p))


def save_card(card: ModelCard, path: str | os.PathLike[str]) -> None:
    """Write a card atomically as pretty JSON."""
    atomic_write_text(path, json.dumps(card.to_dict(), indent=2, sort_keys=False) + "\n")
