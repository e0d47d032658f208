"""OpenCV's Haar frontal-face cascade: the default detector, available wherever OpenCV is.

The cascade file ships with OpenCV (``cv2.data.haarcascades``). Scores come from the number of
overlapping raw detections that support a face (``detectMultiScale2``), mapped to 0..1 as
``n / (n + 3)``; the cascade itself already requires ``min_neighbors`` of them.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..errors import ModelLoadError
from .base import Detection, check_image, import_cv2

__all__ = ["CASCADE_FILE", "HaarDetector"]

CASCADE_FILE = "haarcascade_frontalface_default.xml"

#: Where distribution OpenCV builds keep the cascades (apt python3-opencv has no ``cv2.data``; the files
#: come from the ``opencv-data`` package on Debian, Ubuntu and Raspberry Pi OS, and with JetPack).
SYSTEM_CASCADE_DIRS = ("/usr/share/opencv4/haarcascades", "/usr/local/share/opencv4/haarcascades",
                       "/usr/share/opencv/haarcascades")


def _default_cascade(cv2: Any) -> str:
    dirs = [getattr(getattr(cv2, "data", None), "haarcascades", ""), *SYSTEM_CASCADE_DIRS]
    for d in dirs:
        if d and os.path.isfile(os.path.join(d, CASCADE_FILE)):
            return os.path.join(d, CASCADE_FILE)
    return os.path.join(dirs[0], CASCADE_FILE)


class HaarDetector:
    """Viola-Jones frontal-face detector (OpenCV).

    Args:
        model_path: Another cascade XML (default: OpenCV's ``haarcascade_frontalface_default.xml``).
        score_threshold: Minimum score 0..1 (see the module docstring).
        min_size: Smallest face side in pixels of the image given to :meth:`detect`.
        num_threads: Unused (OpenCV manages its own threads).
        scale_factor: Image pyramid step (1.1 is finer and about a third slower; 1.2 misses faces).
        min_neighbors: Raw detections needed to accept a face (higher: fewer false positives).

    Raises:
        BackendNotInstalledError: OpenCV is not installed.
        ModelLoadError: the cascade file is missing or invalid.
    """

    name = "haar"

    def __init__(self, model_path: str | None = None, score_threshold: float = 0.5, min_size: int = 20,
                 num_threads: int | None = 1, scale_factor: float = 1.15, min_neighbors: int = 4) -> None:
        del num_threads
        self._cv2 = cv2 = import_cv2("the Haar face detector")
        path = model_path or _default_cascade(cv2)
        if not os.path.isfile(path):
            raise ModelLoadError(f"Haar cascade {path} not found; OpenCV's data files are missing "
                                 f"(reinstall opencv-python-headless; with apt's python3-opencv: apt install "
                                 f"opencv-data) or pass detector_model=<cascade.xml>")
        self._cascade: Any = cv2.CascadeClassifier(path)
        if self._cascade.empty():
            raise ModelLoadError(f"cannot load Haar cascade {path}: not a valid cascade XML")
        self.score_threshold = float(score_threshold)
        self.min_size = max(8, int(min_size))
        self.scale_factor = float(scale_factor)
        self.min_neighbors = int(min_neighbors)

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces in an RGB uint8 image, highest score first."""
        img = check_image(image)
        cv2 = self._cv2
        grey = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY)
        grey = cv2.equalizeHist(grey)
        boxes, counts = self._cascade.detectMultiScale2(
            grey, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
            minSize=(self.min_size, self.min_size))
        out: list[Detection] = []
        for (x, y, w, h), n in zip(np.asarray(boxes).reshape(-1, 4), np.asarray(counts).reshape(-1), strict=True):
            score = float(n) / (float(n) + 3.0)
            if score >= self.score_threshold:
                out.append(Detection(float(x), float(y), float(w), float(h), score))
        out.sort(key=lambda d: -d.score)
        return out

    def close(self) -> None:
        """Drop the cascade."""
        self._cascade = None
