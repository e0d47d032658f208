"""A 640x480 test frame with several real faces (FER2013 public_test crops) on a textured photograph."""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: Face boxes ``(x, y, side)`` of the 5-face layout (the first ``n`` are used for ``n`` faces).
LAYOUT = ((10, 20, 160), (230, 20, 160), (450, 20, 160), (110, 300, 160), (350, 300, 160))
#: One face per class, in this order (the first image of each class folder, sorted by name).
CLASSES = ("happy", "surprise", "neutral", "angry", "sad")


def face_files(datasets: Path, n: int = 5) -> list[Path]:
    """The FER2013 public_test crops used for the faces."""
    root = datasets / "fer2013" / "public_test"
    return [sorted((root / c).glob("*.jpg"))[0] for c in CLASSES[:n]]


def multi_face_frame(datasets: Path, n: int = 5,
                     shift: tuple[int, int] = (0, 0)) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """An RGB uint8 640x480 frame with ``n`` (1-5) faces on scikit-image's brick photograph.

    Each 48x48 grey crop is enlarged to 160 px (cubic) and pasted at its :data:`LAYOUT` place moved by
    ``shift`` (at most 30 px right, 20 px down). Returns the frame and the faces' ``(x, y, side)`` boxes.
    """
    import cv2
    from skimage import data

    bg = cv2.resize(data.brick(), (640, 480), interpolation=cv2.INTER_LINEAR)
    frame = np.repeat(bg[:, :, None], 3, axis=2).copy()
    boxes = []
    for f, (x, y, s) in zip(face_files(datasets, n), LAYOUT[:n], strict=True):
        g = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)
        face = cv2.resize(g, (s, s), interpolation=cv2.INTER_CUBIC)
        x, y = x + shift[0], y + shift[1]
        frame[y:y + s, x:x + s] = face[:, :, None]
        boxes.append((x, y, s))
    return frame, boxes
