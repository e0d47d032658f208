"""Generic readers for calibration and validation data: image folders, audio folders, text files, arrays.

These only find and read files; turning them into model inputs is done by the runtime's own preprocessing
(see :mod:`affectlite_convert.calibration`). Folders "by class" have one sub-folder per label
(``train/happy/*.jpg``); a flat folder has the files directly in it (no labels).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from affectlite.errors import CalibrationError

__all__ = [
    "AUDIO_SUFFIXES",
    "IMAGE_SUFFIXES",
    "LabelledFiles",
    "list_files",
    "read_image",
    "read_text_lines",
]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")


@dataclass(frozen=True)
class LabelledFiles:
    """Files found in a folder, with their class (sub-folder name) when the folder is organised by class.

    Attributes:
        files: The files, sorted (by class, then name) so that runs are reproducible.
        labels: The class of each file (``None`` for a flat folder).
        classes: The class names found, sorted.
    """

    files: tuple[Path, ...]
    labels: tuple[str, ...] | None
    classes: tuple[str, ...]


def list_files(folder: str | os.PathLike[str], suffixes: tuple[str, ...], *,
               limit: int | None = None, seed: int = 0) -> LabelledFiles:
    """Find the files with the given suffixes in ``folder`` (flat, or one level of class sub-folders).

    Args:
        folder: The folder.
        suffixes: Lower-case suffixes to accept (e.g. :data:`IMAGE_SUFFIXES`).
        limit: Keep at most this many files, sampled evenly across classes (deterministic with ``seed``).
        seed: Seed of the sampling.

    Raises:
        CalibrationError: the folder does not exist or holds no matching file.
    """
    root = Path(folder)
    if not root.is_dir():
        raise CalibrationError(f"calibration folder {root} does not exist or is not a folder")
    flat = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in suffixes)
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    by_class: dict[str, list[Path]] = {}
    if not flat and subdirs:
        for d in subdirs:
            files = sorted(p for p in d.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
            if files:
                by_class[d.name] = files
    if not flat and not by_class:
        raise CalibrationError(f"no {'/'.join(suffixes)} files in {root} (looked in the folder and in its "
                               "class sub-folders)")
    if flat:
        files = flat
        if limit is not None and len(files) > limit:
            idx = np.sort(np.random.default_rng(seed).choice(len(files), limit, replace=False))
            files = [files[int(i)] for i in idx]
        return LabelledFiles(tuple(files), None, ())
    classes = tuple(sorted(by_class))
    pairs = [(c, f) for c in classes for f in by_class[c]]
    if limit is not None and len(pairs) > limit:
        rng = np.random.default_rng(seed)
        # round-robin over shuffled classes so every class is represented
        pools = {c: list(rng.permutation(len(by_class[c]))) for c in classes}
        chosen: list[tuple[str, Path]] = []
        while len(chosen) < limit:
            for c in classes:
                if pools[c] and len(chosen) < limit:
                    chosen.append((c, by_class[c][int(pools[c].pop())]))
        pairs = sorted(chosen, key=lambda cf: (cf[0], str(cf[1])))
    return LabelledFiles(tuple(f for _, f in pairs), tuple(c for c, _ in pairs), classes)


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file as ``uint8`` RGB ``HxWx3`` (colour) or ``HxWx1`` (grey).

    Raises:
        CalibrationError: OpenCV is missing or the file is not a readable image.
    """
    try:
        import cv2
    except ImportError as e:
        raise CalibrationError("reading images needs OpenCV: pip install 'affectlite[opencv]'") from e
    data = np.fromfile(os.fspath(path), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise CalibrationError(f"{path} is not a readable image")
    if img.dtype == np.uint16:
        img = (img // 257).astype(np.uint8)
    elif img.dtype != np.uint8:
        img = np.clip(img, 0, 255).astype(np.uint8)
    if img.ndim == 2:
        return np.ascontiguousarray(img[:, :, None])
    if img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    return np.ascontiguousarray(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))


def read_text_lines(path: str | os.PathLike[str]) -> tuple[list[str], list[str] | None]:
    """Read a text file of sentences, one per line (blank lines skipped).

    A ``.tsv`` file is read as ``text<TAB>label`` when every line has a tab; otherwise the whole line is
    the text and there are no labels.

    Returns:
        ``(texts, labels or None)``.

    Raises:
        CalibrationError: the file is missing, not UTF-8 or empty.
    """
    p = Path(path)
    try:
        raw = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CalibrationError(f"text file {p} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise CalibrationError(f"text file {p} cannot be read as UTF-8: {e}") from None
    lines = [ln.rstrip("\r") for ln in raw.split("\n") if ln.strip()]
    if not lines:
        raise CalibrationError(f"text file {p} has no sentences (one per line expected)")
    if p.suffix.lower() == ".tsv" and all("\t" in ln for ln in lines):
        parts = [ln.split("\t") for ln in lines]
        return [q[0] for q in parts], [q[1].strip() for q in parts]
    return lines, None
