"""FER+ vote targets for the face recipe (``affectlite train face --targets ferplus-soft|ferplus-majority``).

FER+ (Barsoum et al., ICMI 2016; labels under the MIT licence) re-labelled every FER2013 image by ten crowd
annotators. ``fer2013/ferplus_votes.csv`` (see ``../shared/datasets/README.md``) gives, per image file of
``train/`` and ``public_test/``, the ten vote counts ``neutral, happiness, surprise, sadness, anger, disgust,
fear, contempt, unknown, NF`` and ``rmse``, the distance of the pixel join to the FER+ twin.

How the votes become targets (the choices of :func:`soft_targets` and :func:`majority_labels`):

- **Unmatched rows** (``rmse`` > :data:`MAX_RMSE`, 495 rows): the join is not trusted, the image is dropped
  from FER+ training and validation (its FER2013 label is not used either: it is the noisy label FER+ replaces).
- **Soft targets**: the votes of our seven classes (happiness -> happy, sadness -> sad, anger -> angry, the
  rest by name), renormalised to a distribution. Contempt, unknown and NF votes are **dropped from the
  distribution** and the image is **down-weighted by its share of valid votes** (7 of 10 valid votes ->
  weight 0.7): contempt has no class of ours, and unknown / not-a-face votes say the image is an unreliable
  example, not which of our classes it shows. Images whose most-voted category is NF (ties included), or
  with no vote in our seven, are dropped.
- **Majority labels**: the category with strictly the most of the ten votes; an image whose top category is
  contempt, unknown or NF, or whose top is tied, has no majority label (-1). Used for validation (FER+
  public_test majority accuracy) and for ``--targets ferplus-majority``.
- **Validation set**: ``public_test`` images with a majority label, matched, and not a duplicate of a
  ``train`` image (same FER+ twin, or the same pixels: FER2013 has exact duplicates across splits).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from affectlite.labels import LABELS, canonical_label

__all__ = ["COLUMNS", "CONTRAST_CONDITIONS", "MAX_RMSE", "VoteTable", "classify", "contrast_table",
           "contrast_variant", "evaluate", "load_votes", "majority_labels", "soft_targets", "split_files",
           "validation_mask"]

#: Vote columns of ``ferplus_votes.csv``, in file order.
COLUMNS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF")
#: FER+ category -> our label (the other three columns have no counterpart).
_TO_OURS = {"neutral": "neutral", "happiness": "happy", "surprise": "surprise", "sadness": "sad",
            "anger": "angry", "disgust": "disgust", "fear": "fear"}
#: Column index of each of ``LABELS`` (the model's output order).
_OUR_COLUMNS = np.array([COLUMNS.index(next(k for k, v in _TO_OURS.items() if v == lab)) for lab in LABELS])
_NF = COLUMNS.index("NF")
#: Joins farther than this (``rmse``) are treated as unmatched (datasets README).
MAX_RMSE = 40.0
_IMAGE_EXT = (".jpg", ".jpeg", ".png", ".bmp")


def split_files(data_dir: str | os.PathLike[str], split: str) -> list[str]:
    """Paths (``split/label/name.jpg``, relative to ``data_dir``) in the order of ``face.load_split``'s arrays."""
    root = Path(data_dir) / split
    if not root.is_dir():
        raise FileNotFoundError(f"no folder {root}: --data must contain '{split}/<label>/*.jpg'")
    out: list[str] = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        if canonical_label(sub.name) is None:
            continue
        out.extend(f"{split}/{sub.name}/{f.name}" for f in sorted(sub.iterdir()) if f.suffix.lower() in _IMAGE_EXT)
    return out


class VoteTable:
    """The FER+ votes of one split, row-aligned with ``face.load_split``'s arrays.

    Attributes:
        votes: ``(N, 10)`` float32 vote counts in :data:`COLUMNS` order (zeros where unmatched).
        matched: ``(N,)`` bool: the image has a row with ``rmse <= MAX_RMSE``.
        twins: FER+ image name of each row (``""`` where unmatched).
    """

    def __init__(self, votes: np.ndarray, matched: np.ndarray, twins: Sequence[str]) -> None:
        self.votes = votes
        self.matched = matched
        self.twins = list(twins)


def load_votes(data_dir: str | os.PathLike[str], split: str, n: int | None = None,
               csv_path: str | os.PathLike[str] | None = None) -> VoteTable:
    """Read ``ferplus_votes.csv`` for one split, aligned with the images ``face.load_split`` returns.

    Args:
        data_dir: The FER2013 root (holds ``ferplus_votes.csv`` unless ``csv_path`` is given).
        split: ``"train"`` or ``"public_test"``.
        n: The number of images ``load_split`` returned (checked: a mismatch means an image failed to decode
            and the rows would not line up).
        csv_path: Another location of the votes file.

    Raises:
        FileNotFoundError: no votes file.
        ValueError: the file lacks a column, or the image count does not match ``n``.
    """
    path = Path(csv_path) if csv_path is not None else Path(data_dir) / "ferplus_votes.csv"
    if not path.is_file():
        raise FileNotFoundError(f"no FER+ votes file {path}: FER+ targets need fer2013/ferplus_votes.csv "
                                "(see ../shared/datasets/README.md), or use --targets fer2013")
    files = split_files(data_dir, split)
    if n is not None and n != len(files):
        raise ValueError(f"{split}: {len(files)} image files but {n} decoded images; the vote rows would not line "
                         "up (delete the image cache and check for undecodable files)")
    index = {f: i for i, f in enumerate(files)}
    votes = np.zeros((len(files), len(COLUMNS)), np.float32)
    matched = np.zeros(len(files), bool)
    twins = [""] * len(files)
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in ("file", "ferplus_image", "rmse", *COLUMNS) if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing columns {missing}")
        for row in reader:
            i = index.get(row["file"])
            if i is None or float(row["rmse"]) > MAX_RMSE:
                continue
            votes[i] = [float(row[c]) for c in COLUMNS]
            matched[i] = True
            twins[i] = row["ferplus_image"]
    return VoteTable(votes, matched, twins)


def soft_targets(table: VoteTable) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vote distributions over ``LABELS`` with per-image weights (see the module docstring).

    Returns:
        ``(soft, weight, keep)``: ``(N, 7)`` float32 rows summing to 1 where kept, ``(N,)`` float32 share of
        the votes that fall in our seven classes, ``(N,)`` bool images to train on.
    """
    v = table.votes
    ours = v[:, _OUR_COLUMNS]
    valid = ours.sum(axis=1)
    total = v.sum(axis=1)
    nf_top = v[:, _NF] >= np.delete(v, _NF, axis=1).max(axis=1)
    keep = table.matched & (valid > 0) & ~nf_top
    soft = np.where(keep[:, None], ours / np.maximum(valid, 1.0)[:, None], 0.0).astype(np.float32)
    weight = np.where(keep, valid / np.maximum(total, 1.0), 0.0).astype(np.float32)
    return soft, weight, keep


def majority_labels(table: VoteTable) -> np.ndarray:
    """``(N,)`` int64 index into ``LABELS`` of the strict FER+ majority, -1 where none (see the module docstring)."""
    v = table.votes
    top = v.argmax(axis=1)
    n_top = (v == v.max(axis=1, keepdims=True)).sum(axis=1)
    col_to_ours = {int(c): k for k, c in enumerate(_OUR_COLUMNS)}
    y = np.array([col_to_ours.get(int(t), -1) for t in top], dtype=np.int64)
    y[(n_top != 1) | ~table.matched] = -1
    return y


def validation_mask(val: VoteTable, train: VoteTable, x_val: np.ndarray | None = None,
                    x_train: np.ndarray | None = None) -> np.ndarray:
    """``(N,)`` bool: public_test images with a majority label that duplicate no train image.

    A duplicate shares its FER+ twin with a train image or, given the decoded images, has exactly the same
    pixels as one (FER2013 repeats images across splits; the pixel join then picks either twin, so the
    twins alone miss most of them: 280 public_test images are pixel copies of train images).
    """
    import hashlib

    in_train = set(t for t in train.twins if t)
    dup = np.array([t in in_train for t in val.twins], dtype=bool)
    if x_val is not None and x_train is not None:
        seen = {hashlib.sha1(np.ascontiguousarray(a).tobytes()).digest() for a in x_train}
        dup |= np.array([hashlib.sha1(np.ascontiguousarray(a).tobytes()).digest() in seen for a in x_val])
    out: np.ndarray = (majority_labels(val) >= 0) & ~dup
    return out


# ------------------------------------------------------------------------------------------ evaluation
#: Contrast conditions of :func:`contrast_variant`: monotonic grey-level changes of the (equalised) JPEGs.
CONTRAST_CONDITIONS = ("equalised (as stored)", "raw-like", "low contrast", "dark", "bright")


def contrast_variant(x: np.ndarray, condition: str, seed: int = 0) -> np.ndarray:
    """``(N, H, W)`` uint8 images under one of :data:`CONTRAST_CONDITIONS` (deterministic given ``seed``).

    - ``equalised (as stored)``: unchanged (the dataset's JPEGs are histogram-equalised: std ~74);
    - ``raw-like``: contrast about mid-grey scaled by 0.73 (std ~54, like raw FER2013 pixels) and a random
      gamma per image in 0.7..1.4 (exposure differences, as between cameras);
    - ``low contrast``: ``(x - 128) * 0.4 + 128`` (std ~30: a flat, hazy crop);
    - ``dark``: ``255 * 0.8 * (x / 255) ** 2`` (an under-exposed crop);
    - ``bright``: ``255 * (x / 255) ** 0.5`` (an over-exposed one).
    """
    f = np.asarray(x, np.float64) / 255.0
    if condition == "equalised (as stored)":
        return np.asarray(x, np.uint8).copy()
    if condition == "raw-like":
        g = np.random.default_rng(seed).uniform(0.7, 1.4, size=(len(f), 1, 1))
        f = (f - 0.5) * 0.73 + 0.5
        f = np.clip(f, 0.0, 1.0) ** g
    elif condition == "low contrast":
        f = (f - 0.5) * 0.4 + 0.5
    elif condition == "dark":
        f = 0.8 * f ** 2
    elif condition == "bright":
        f = f ** 0.5
    else:
        raise ValueError(f"unknown condition {condition!r}; one of {CONTRAST_CONDITIONS}")
    out: np.ndarray = np.clip(np.rint(f * 255.0), 0, 255).astype(np.uint8)
    return out


def classify(model_path: str | os.PathLike[str], x: np.ndarray) -> np.ndarray:
    """``(N, 7)`` probabilities of a face ``.tflite`` (+ card) on ``(N, H, W)`` uint8 crops, through the
    runtime's own path (:meth:`affectlite.face.FaceExpressionClassifier.classify_crops`: the card's
    preprocessing, int8 interpreter, one thread)."""
    from affectlite.face import FaceExpressionClassifier

    clf = FaceExpressionClassifier.create(str(model_path), num_threads=1)
    try:
        return np.asarray(clf.classify_crops(list(x)), np.float64)
    finally:
        clf.close()


def evaluate(probs: np.ndarray, y: np.ndarray) -> dict[str, object]:
    """Accuracy, macro recall, per-class recall and the confusion matrix (rows: truth, columns: prediction)."""
    pred = probs.argmax(axis=1)
    k = len(LABELS)
    cm = np.zeros((k, k), np.int64)
    np.add.at(cm, (y, pred), 1)
    rec = {LABELS[i]: round(float(cm[i, i] / cm[i].sum()), 4) for i in range(k) if cm[i].sum()}
    return {"accuracy": round(float((pred == y).mean()), 4), "n": len(y),
            "macro_recall": round(float(np.mean(list(rec.values()))), 4), "per_class_recall": rec,
            "confusion": cm.tolist()}


def contrast_table(model_path: str | os.PathLike[str], x: np.ndarray, y: np.ndarray,
                   classify_fn: Callable[[str | os.PathLike[str], np.ndarray], np.ndarray] = classify,
                   conditions: Sequence[str] = CONTRAST_CONDITIONS) -> dict[str, dict[str, object]]:
    """Accuracy and per-class recall of one model under each contrast condition (see :func:`contrast_variant`)."""
    out: dict[str, dict[str, object]] = {}
    for c in conditions:
        r = evaluate(classify_fn(model_path, contrast_variant(x, c)), y)
        out[c] = {key: r[key] for key in ("accuracy", "macro_recall", "per_class_recall")}
    return out
