"""Representative (calibration) data: arrays, or files turned into model inputs by the runtime's own code.

Accepted forms:

* an ``np.ndarray`` (one-input models), a list/tuple of arrays (one per model input, in the model's input
  order), or a dict ``{input_name: array}``; arrays are batch-first and already preprocessed;
* ``.npy`` (one-input models) or ``.npz`` (keys = input names, or ``arr_0``, ``arr_1``... in input order;
  an optional ``y``/``labels`` key holds integer labels);
* a folder of images (flat, or one sub-folder per class): each image goes through
  ``affectlite.preprocess.preprocess_image`` with the card input's ``preprocessing``;
* a folder of WAV/FLAC files: ``affectlite.audio_features.load_audio`` + ``compute_features``;
* a text file of sentences (``.txt``; ``.tsv`` as ``text<TAB>label``):
  ``affectlite.text.TextFeaturizer.from_spec(preprocessing).transform``.

Too few samples is an error (:class:`~affectlite.errors.CalibrationError`), fewer than recommended a
warning; data is never padded out with made-up samples.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from affectlite.errors import CalibrationError, InputError
from affectlite.labels import canonical_label

from .datasets import AUDIO_SUFFIXES, IMAGE_SUFFIXES, list_files, read_image, read_text_lines
from .quantize import InputInfo

__all__ = ["CalibrationSet", "check_count", "labels_to_indices", "load_data", "samples"]

DEFAULT_MIN_SAMPLES = 20
DEFAULT_RECOMMENDED_SAMPLES = 200


@dataclass
class CalibrationSet:
    """Model-ready data.

    Attributes:
        arrays: Per input name, the batch-first array.
        labels: Integer label per sample (index into the card's labels), or ``None``.
        source: What the data came from, for the card and the report.
        warnings: Things the user should know (unmatched class names ...).
    """

    arrays: dict[str, np.ndarray]
    labels: np.ndarray | None
    source: str
    warnings: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        """Number of samples."""
        return int(next(iter(self.arrays.values())).shape[0]) if self.arrays else 0


def check_count(n: int, min_samples: int, recommended_samples: int, what: str = "calibration") -> list[str]:
    """Refuse fewer than ``min_samples``; return a warning below ``recommended_samples``.

    Raises:
        CalibrationError: ``n < min_samples``.
    """
    if n < min_samples:
        raise CalibrationError(f"{what} set has {n} sample(s); at least {min_samples} are needed to estimate "
                               f"int8 ranges (about {recommended_samples} recommended, drawn from the data the "
                               "model will see). Add data, or lower min_samples if you know what you are doing")
    if n < recommended_samples:
        return [f"{what} set has {n} samples, fewer than the recommended {recommended_samples}: int8 ranges may "
                "not cover real inputs; check the agreement figures in the report"]
    return []


def samples(arrays: Mapping[str, np.ndarray], names: Sequence[str], limit: int | None = None,
            progress: Callable[[int], Any] | None = None) -> list[dict[str, np.ndarray]]:
    """Split batch arrays into one-sample dicts ``{name: array[i:i+1]}`` (the calibrator's format)."""
    n = int(next(iter(arrays.values())).shape[0])
    if limit is not None:
        n = min(n, limit)
    return [{k: arrays[k][i:i + 1] for k in names} for i in range(n)]


def labels_to_indices(labels: Any, card_labels: Sequence[str],
                      label_mapping: Mapping[str, str | None] | None = None) -> np.ndarray:
    """Turn labels (ints, or label names / synonyms) into indices of ``card_labels``.

    Raises:
        InputError: a label that is neither a valid index nor one of the card's labels.
    """
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise InputError(f"labels must be one-dimensional, got shape {list(arr.shape)}")
    if arr.dtype.kind in "iu":
        bad = arr[(arr < 0) | (arr >= len(card_labels))]
        if bad.size:
            raise InputError(f"label index {int(bad[0])} is out of range for {len(card_labels)} labels")
        return arr.astype(np.int64)
    lookup = _label_lookup(card_labels, label_mapping or {})
    out = []
    for v in arr.tolist():
        idx = _class_index(str(v), lookup)
        if idx is None:
            raise InputError(f"label {str(v)!r} is not one of the card's labels {list(card_labels)} (or a synonym)")
        out.append(idx)
    return np.asarray(out, dtype=np.int64)


def _label_lookup(card_labels: Sequence[str], mapping: Mapping[str, str | None]) -> dict[str, int]:
    lookup: dict[str, int] = {}
    for i, lab in enumerate(card_labels):
        lookup[lab] = i
        lookup[lab.lower()] = i
        common = mapping.get(lab) or canonical_label(lab)
        if common is not None:
            lookup.setdefault(common, i)
    # synonyms of the common labels (e.g. "calm" -> neutral, "fearful" -> fear)
    return lookup


def _class_index(name: str, lookup: Mapping[str, int]) -> int | None:
    if name in lookup:
        return lookup[name]
    if name.lower() in lookup:
        return lookup[name.lower()]
    common = canonical_label(name)
    return lookup.get(common) if common is not None else None


def _cast(a: Any, info: InputInfo) -> np.ndarray:
    arr = np.asarray(a)
    if arr.dtype == object:
        raise InputError(f"input {info.name!r}: data is not a numeric array")
    want = np.dtype(info.dtype)
    if want.kind == "f":
        if arr.dtype.kind not in "fiub":
            raise InputError(f"input {info.name!r}: expected numbers, got dtype {arr.dtype}")
        arr = arr.astype(want, copy=False)
        if not np.all(np.isfinite(arr)):
            raise InputError(f"input {info.name!r}: data contains NaN or infinity")
    else:
        if arr.dtype.kind == "f" and not np.all(arr == np.round(arr)):
            raise InputError(f"input {info.name!r}: the model takes {want.name} (e.g. token ids), the data has "
                             "non-integer floats")
        arr = arr.astype(want)
    return arr


def _from_arrays(data: Any, inputs: Sequence[InputInfo], what: str) -> dict[str, np.ndarray]:
    names = [i.name for i in inputs]
    if isinstance(data, Mapping):
        missing = [n for n in names if n not in data]
        extra = [k for k in data if k not in names]
        if missing or extra:
            raise InputError(f"{what}: dict keys {sorted(map(str, data))} do not match the model inputs {names}")
        items = [data[n] for n in names]
    elif isinstance(data, np.ndarray):
        if len(inputs) != 1:
            raise InputError(f"{what}: the model has {len(inputs)} inputs {names}; pass a list of arrays in "
                             "that order (or a dict by input name), not a single array")
        items = [data]
    elif isinstance(data, (list, tuple)):
        if len(inputs) == 1 and len(data) != 1 and all(np.ndim(x) == len(inputs[0].shape) for x in data):
            items = [np.stack([np.asarray(x) for x in data])]  # a list of single samples
        else:
            if len(data) != len(inputs):
                raise InputError(f"{what}: got {len(data)} arrays for a model with {len(inputs)} input(s) "
                                 f"{names}")
            items = list(data)
    else:
        raise InputError(f"{what}: expected arrays or a path, got {type(data).__name__}")
    arrays = {info.name: _cast(a, info) for info, a in zip(inputs, items, strict=True)}
    ns = {k: (v.shape[0] if v.ndim else 0) for k, v in arrays.items()}
    if len(set(ns.values())) != 1:
        raise InputError(f"{what}: inputs have different sample counts {ns}")
    for info in inputs:
        a = arrays[info.name]
        if a.ndim != len(info.shape) + 1:
            want = ["batch", *("any" if d is None else d for d in info.shape)]
            raise InputError(f"{what}: input {info.name!r} expects shape {want}, the data has shape "
                             f"{list(a.shape)} (arrays are batch-first)")
    return arrays


def load_data(data: Any, inputs: Sequence[InputInfo], card_inputs: Sequence[Mapping[str, Any]],
              card_labels: Sequence[str], label_mapping: Mapping[str, str | None] | None = None, *,
              labels: Any = None, limit: int | None = None, base_dir: Path | None = None,
              what: str = "calibration", progress: bool = True) -> CalibrationSet:
    """Turn calibration/validation data into model-ready arrays.

    Args:
        data: Arrays (see the module docstring) or a path.
        inputs: The model inputs, in the user's order.
        card_inputs: The card's input entries in the same order (``kind`` and ``preprocessing``).
        card_labels: The card's labels (to map class folder names and string labels).
        label_mapping: The card's label mapping.
        labels: Labels for array data (ints or names), optional.
        limit: Use at most this many files from a folder (sampled evenly across classes).
        base_dir: Folder for relative files the preprocessing spec names (e.g. an IDF table).
        what: ``calibration`` or ``validation`` (for messages).
        progress: Show a progress bar when reading files.

    Raises:
        CalibrationError: unreadable/empty source, or preprocessing not available.
        InputError: arrays that do not fit the model.
    """
    if isinstance(data, (str, os.PathLike)):
        return _from_path(Path(data), inputs, card_inputs, card_labels, label_mapping or {}, limit, base_dir,
                          what, progress)
    arrays = _from_arrays(data, inputs, what)
    lab = labels_to_indices(labels, card_labels, label_mapping) if labels is not None else None
    if lab is not None and lab.shape[0] != next(iter(arrays.values())).shape[0]:
        raise InputError(f"{what}: {lab.shape[0]} labels for {next(iter(arrays.values())).shape[0]} samples")
    return CalibrationSet(arrays, lab, f"{what} arrays supplied by the caller")


def _progress(it: Sequence[Any], desc: str, enabled: bool) -> Any:
    try:
        from tqdm import tqdm
    except ImportError:
        return it
    import sys

    return tqdm(it, desc=desc, unit="file", disable=not enabled or not sys.stderr.isatty(), leave=False)


def _runtime(module: str, attr: str, owner: str) -> Any:
    try:
        mod = importlib.import_module(module)
        return getattr(mod, attr)
    except (ImportError, AttributeError) as e:
        raise CalibrationError(f"calibrating from {owner} needs {module}.{attr} (the runtime's preprocessing), "
                               f"which is not available: {e}. Pass preprocessed arrays instead") from e


def _image_preprocessor(pre: Mapping[str, Any]) -> Callable[[np.ndarray], np.ndarray]:
    """The runtime's image preprocessing for a card spec (``affectlite.preprocess``)."""
    try:
        mod = importlib.import_module("affectlite.preprocess")
    except ImportError as e:
        raise CalibrationError(f"calibrating from images needs affectlite.preprocess: {e}") from e
    if hasattr(mod, "preprocess_image"):
        fn = mod.preprocess_image
        return lambda img: np.asarray(fn(img, dict(pre)))
    try:
        spec = mod.parse_image_spec(dict(pre), "card input preprocessing")
    except Exception as e:
        raise CalibrationError(f"the card input's image preprocessing spec is not usable: {e}") from e
    return lambda img: np.asarray(mod.prepare_face(img, spec))


def _single(inputs: Sequence[InputInfo], what: str, source: str) -> InputInfo:
    if len(inputs) != 1:
        raise CalibrationError(f"{what} from {source} works for one-input models; this model has "
                               f"{len(inputs)} inputs {[i.name for i in inputs]}: pass a list of preprocessed "
                               "arrays (or a .npz keyed by input name)")
    return inputs[0]


def _fit_shape(x: np.ndarray, info: InputInfo, source: str) -> np.ndarray:
    want = info.shape
    if len(want) == x.ndim + 1 and want[-1] == 1:
        x = x[..., None]
    if len(want) != x.ndim:
        raise CalibrationError(f"preprocessing of {source} gives shape {list(x.shape)}, the model input "
                               f"{info.name!r} expects {list(want)}: check the card input's preprocessing")
    return x


def _from_path(p: Path, inputs: Sequence[InputInfo], card_inputs: Sequence[Mapping[str, Any]],
               card_labels: Sequence[str], mapping: Mapping[str, str | None], limit: int | None,
               base_dir: Path | None, what: str, progress: bool) -> CalibrationSet:
    if not p.exists():
        raise CalibrationError(f"{what} data {p} does not exist")
    suffix = p.suffix.lower()
    if p.is_file() and suffix in (".npy", ".npz"):
        return _from_numpy(p, inputs, card_labels, mapping, what)
    if p.is_file() and suffix in (".txt", ".tsv", ".text"):
        info = _single(inputs, what, f"text file {p}")
        pre = dict(card_inputs[0].get("preprocessing", {}) or {})
        texts, text_labels = read_text_lines(p)
        if limit is not None:
            texts = texts[:limit]
            text_labels = text_labels[:limit] if text_labels else None
        featurizer = _runtime("affectlite.text", "TextFeaturizer", "a text file")
        try:
            x = np.asarray(featurizer.from_spec(pre, base_dir=base_dir).transform(texts), dtype=np.float32)
        except Exception as e:
            raise CalibrationError(f"text featuriser failed on {p} with the card's preprocessing spec: {e}") from e
        arrays = {info.name: _cast(np.stack([_fit_shape(row, info, str(p)) for row in x]), info)}
        lab = None
        warnings: list[str] = []
        if text_labels is not None:
            try:
                lab = labels_to_indices(text_labels, card_labels, mapping)
            except InputError as e:
                warnings.append(f"labels in {p} ignored: {e}")
        return CalibrationSet(arrays, lab, f"text file {p.name} ({len(texts)} sentences)", warnings)
    if p.is_dir():
        kinds = [str(c.get("kind", "tensor")) for c in card_inputs]
        has_images = any(f.suffix.lower() in IMAGE_SUFFIXES for f in p.rglob("*") if f.is_file())
        kind = kinds[0] if len(kinds) == 1 else "?"
        if kind == "audio_features" or (kind != "image" and not has_images):
            return _from_audio_folder(p, inputs, card_inputs, card_labels, mapping, limit, what, progress)
        return _from_image_folder(p, inputs, card_inputs, card_labels, mapping, limit, what, progress)
    raise CalibrationError(f"{what} data {p}: unsupported file type {suffix or '(none)'}; use a folder of images "
                           "or audio files, a .txt/.tsv file of sentences, or .npy/.npz arrays")


def _folder_labels(found_labels: tuple[str, ...] | None, card_labels: Sequence[str],
                   mapping: Mapping[str, str | None], p: Path) -> tuple[np.ndarray | None, list[str]]:
    if found_labels is None:
        return None, []
    lookup = _label_lookup(card_labels, mapping)
    idx = [_class_index(c, lookup) for c in found_labels]
    unknown = sorted({c for c, i in zip(found_labels, idx, strict=True) if i is None})
    if unknown:
        return None, [f"class folders {unknown} in {p} do not match the card's labels {list(card_labels)}; "
                      "the folder is used without labels (no accuracy figures)"]
    return np.asarray(idx, dtype=np.int64), []


def _from_image_folder(p: Path, inputs: Sequence[InputInfo], card_inputs: Sequence[Mapping[str, Any]],
                       card_labels: Sequence[str], mapping: Mapping[str, str | None], limit: int | None,
                       what: str, progress: bool) -> CalibrationSet:
    info = _single(inputs, what, f"image folder {p}")
    pre = dict(card_inputs[0].get("preprocessing", {}) or {})
    preprocess = _image_preprocessor(pre)
    found = list_files(p, IMAGE_SUFFIXES, limit=limit)
    xs = []
    for f in _progress(found.files, f"{what}: images", progress):
        img = read_image(f)
        try:
            x = np.asarray(preprocess(img), dtype=np.float32)
        except Exception as e:
            raise CalibrationError(f"preprocessing {f} with the card's spec {pre} failed: {e}") from e
        if x.ndim == len(info.shape) + 1 and x.shape[0] == 1:
            x = x[0]
        xs.append(_fit_shape(x, info, str(f)))
    shapes = {x.shape for x in xs}
    if len(shapes) != 1:
        raise CalibrationError(f"images in {p} preprocess to different shapes {sorted(shapes)}; the card input's "
                               "preprocessing must resize to one size")
    lab, warnings = _folder_labels(found.labels, card_labels, mapping, p)
    layout = f"by class: {', '.join(found.classes)}" if found.labels else "flat"
    return CalibrationSet({info.name: _cast(np.stack(xs), info)}, lab,
                          f"image folder {p.name} ({len(xs)} images, {layout})", warnings)


def _from_audio_folder(p: Path, inputs: Sequence[InputInfo], card_inputs: Sequence[Mapping[str, Any]],
                       card_labels: Sequence[str], mapping: Mapping[str, str | None], limit: int | None,
                       what: str, progress: bool) -> CalibrationSet:
    info = _single(inputs, what, f"audio folder {p}")
    pre = dict(card_inputs[0].get("preprocessing", {}) or {})
    load_audio = _runtime("affectlite.audio_features", "load_audio", "audio files")
    compute = _runtime("affectlite.audio_features", "compute_features", "audio files")
    window_samples = _runtime("affectlite.audio_features", "window_samples", "audio files")
    check_spec = _runtime("affectlite.audio_features", "check_spec", "audio files")
    try:
        full = check_spec(pre, "card input preprocessing")
    except Exception as e:
        raise CalibrationError(f"the card input's audio feature spec is not usable: {e}") from e
    window = int(window_samples(full))
    found = list_files(p, AUDIO_SUFFIXES, limit=limit)
    rate = int(full["sample_rate"])
    xs = []
    for f in _progress(found.files, f"{what}: audio", progress):
        try:
            audio = np.asarray(load_audio(f, rate), dtype=np.float32)
            # one window per file, as the runtime sees it: a short clip is zero-padded at the end
            # (affectlite.voice does the same), a long one gives its centre window
            if audio.size < window:
                audio = np.concatenate([audio, np.zeros(window - audio.size, np.float32)])
            elif audio.size > window:
                start = (audio.size - window) // 2
                audio = audio[start:start + window]
            feats = np.asarray(compute(audio, full), dtype=np.float32)
        except Exception as e:
            raise CalibrationError(f"audio features for {f} with the card's spec failed: {e}") from e
        xs.append(_fit_shape(feats, info, str(f)))
    shapes = {x.shape for x in xs}
    if len(shapes) != 1:
        raise CalibrationError(f"audio in {p} gives feature arrays of different shapes {sorted(shapes)}; the model "
                               "needs a fixed number of frames")
    lab, warnings = _folder_labels(found.labels, card_labels, mapping, p)
    layout = f"by class: {', '.join(found.classes)}" if found.labels else "flat"
    return CalibrationSet({info.name: _cast(np.stack(xs), info)}, lab,
                          f"audio folder {p.name} ({len(xs)} files, {layout})", warnings)


def _from_numpy(p: Path, inputs: Sequence[InputInfo], card_labels: Sequence[str],
                mapping: Mapping[str, str | None], what: str) -> CalibrationSet:
    try:
        loaded = np.load(p, allow_pickle=False)
    except Exception as e:
        raise CalibrationError(f"cannot read {p}: {e}") from e
    names = [i.name for i in inputs]
    labels = None
    if isinstance(loaded, np.ndarray):
        data: Any = loaded
    else:
        with loaded:
            keys = list(loaded.files)
            label_key = next((k for k in ("y", "labels", "label") if k in keys), None)
            if label_key is not None:
                labels = loaded[label_key]
            if all(n in keys for n in names):
                data = {n: loaded[n] for n in names}
            elif all(f"arr_{i}" in keys for i in range(len(names))):
                data = [loaded[f"arr_{i}"] for i in range(len(names))]
            elif len(names) == 1 and "x" in keys:
                data = loaded["x"]
            else:
                raise CalibrationError(f"{p}: keys {keys} do not name the model inputs {names} (use those names, "
                                       "or arr_0, arr_1... in input order; 'x' for one input; 'y' for labels)")
    arrays = _from_arrays(data, inputs, f"{what} ({p.name})")
    lab = labels_to_indices(labels, card_labels, mapping) if labels is not None else None
    return CalibrationSet(arrays, lab, f"{p.name} ({next(iter(arrays.values())).shape[0]} samples)")
