"""OpenCV YuNet detector (``cv2.FaceDetectorYN``), used when the user supplies its ONNX file.

affectlite does not ship or download YuNet: pass the path of ``face_detection_yunet_2023mar.onnx``
(from the OpenCV model zoo) as ``FaceOptions.detector_model``. Needs OpenCV >= 4.8.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..errors import BackendNotInstalledError, ConfigError, ModelLoadError
from .base import Detection, check_image, import_cv2

__all__ = ["YuNetDetector"]

_HINT = ("the YuNet detector needs its ONNX file: download face_detection_yunet_2023mar.onnx from the OpenCV "
         "model zoo and set detector_model=<path> (FaceOptions / profile face.detector_model)")


class YuNetDetector:
    """YuNet face detector via ``cv2.FaceDetectorYN``.

    Args:
        model_path: Path of the YuNet ``.onnx`` file (required).
        score_threshold: Minimum score 0..1.
        min_size: Smallest face side in pixels of the image given to :meth:`detect`.
        num_threads: Unused (OpenCV manages its threads).
        nms_threshold: IoU for OpenCV's NMS.
        top_k: Most candidates kept before NMS.

    Raises:
        ConfigError: no model path given.
        BackendNotInstalledError: OpenCV missing or too old to have ``FaceDetectorYN``.
        ModelLoadError: the file is missing or OpenCV cannot read it.
    """

    name = "yunet"

    def __init__(self, model_path: str | None = None, score_threshold: float = 0.5, min_size: int = 20,
                 num_threads: int | None = 1, nms_threshold: float = 0.3, top_k: int = 500) -> None:
        del num_threads
        if not model_path:
            raise ConfigError(_HINT)
        if not os.path.isfile(model_path):
            raise ModelLoadError(f"YuNet model {model_path} does not exist; {_HINT}")
        cv2 = import_cv2("the YuNet face detector")
        if not hasattr(cv2, "FaceDetectorYN"):
            raise BackendNotInstalledError(f"OpenCV {cv2.__version__} has no FaceDetectorYN; "
                                           "pip install 'opencv-python-headless>=4.8,<5'")
        try:
            self._det: Any = cv2.FaceDetectorYN.create(model_path, "", (320, 320), float(score_threshold),
                                                       float(nms_threshold), int(top_k))
        except cv2.error as e:
            raise ModelLoadError(f"OpenCV cannot load YuNet model {model_path}: {e}") from None
        self._cv2 = cv2
        self._size: tuple[int, int] = (320, 320)
        self.score_threshold = float(score_threshold)
        self.min_size = int(min_size)

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces in an RGB uint8 image, highest score first."""
        img = check_image(image)
        if self._det is None:
            raise ModelLoadError("YuNetDetector is closed")
        h, w = img.shape[:2]
        if (w, h) != self._size:
            self._det.setInputSize((w, h))
            self._size = (w, h)
        bgr = np.ascontiguousarray(img[:, :, ::-1])
        _, faces = self._det.detect(bgr)
        out: list[Detection] = []
        if faces is None:
            return out
        for f in np.asarray(faces, dtype=np.float64).reshape(-1, 15):
            x, y, bw, bh = (float(v) for v in f[:4])
            score = float(f[14])
            if score < self.score_threshold or min(bw, bh) < self.min_size:
                continue
            lms = tuple((float(f[4 + 2 * k]), float(f[5 + 2 * k])) for k in range(5))
            out.append(Detection(x, y, bw, bh, score, lms))
        out.sort(key=lambda d: -d.score)
        return out

    def close(self) -> None:
        """Release the OpenCV detector."""
        self._det = None
