"""The face detector protocol, its result type and the registry of detector plugins.

A detector takes an RGB uint8 frame and returns :class:`Detection` boxes in that frame's pixels. Detectors
are plugins: :func:`register_detector` adds one under a name, :func:`create_detector` builds it. A detector
whose library (OpenCV) or model file is missing stays listed by :func:`available_detectors` with
``available=False`` and a hint, and :func:`create_detector` raises
:class:`~affectlite.errors.BackendNotInstalledError` with the command that fixes it.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..errors import BackendNotInstalledError, ConfigError

__all__ = [
    "OPENCV_HINT",
    "Detection",
    "DetectorInfo",
    "FaceDetector",
    "available_detectors",
    "create_detector",
    "import_cv2",
    "register_detector",
]

OPENCV_HINT = "install OpenCV: pip install 'affectlite[opencv]' (or opencv-python-headless>=4.8,<5)"


@dataclass(frozen=True)
class Detection:
    """One detected face.

    Attributes:
        x: Box left, pixels of the image given to the detector.
        y: Box top.
        w: Box width.
        h: Box height.
        score: Confidence 0..1.
        landmarks: Optional ``(x, y)`` keypoints (eyes, nose, mouth, ...), same pixels.
    """

    x: float
    y: float
    w: float
    h: float
    score: float
    landmarks: tuple[tuple[float, float], ...] = ()

    def scaled(self, s: float) -> Detection:
        """The same detection with every coordinate multiplied by ``s``."""
        return Detection(self.x * s, self.y * s, self.w * s, self.h * s, self.score,
                         tuple((px * s, py * s) for px, py in self.landmarks))


@runtime_checkable
class FaceDetector(Protocol):
    """What every detector plugin implements. Not re-entrant: one instance per thread."""

    name: str

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces in an ``(H, W, 3)`` RGB uint8 image, best first."""
        ...

    def close(self) -> None:
        """Release resources (interpreters, cascades)."""
        ...


DetectorFactory = Callable[..., FaceDetector]


@dataclass(frozen=True)
class DetectorInfo:
    """A registered detector.

    Attributes:
        name: Registry name (``"haar"``, ``"blazeface"``, ``"yunet"``).
        factory: Called as ``factory(model_path=..., score_threshold=..., min_size=..., num_threads=...)``.
        check: Returns ``None`` when usable, else a hint saying how to make it usable.
        description: One line for ``affectlite doctor``.
    """

    name: str
    factory: DetectorFactory
    check: Callable[[], str | None]
    description: str


_REGISTRY: dict[str, DetectorInfo] = {}


def register_detector(name: str, factory: DetectorFactory, *, check: Callable[[], str | None] | None = None,
                      description: str = "") -> None:
    """Register (or replace) a detector plugin.

    Args:
        name: Registry name, used by ``FaceOptions.detector``.
        factory: Builds the detector; receives keyword arguments ``model_path``, ``score_threshold``,
            ``min_size`` (pixels of the image given to ``detect``) and ``num_threads``.
        check: Availability check returning ``None`` or an install hint.
        description: One line describing it.
    """
    _REGISTRY[name] = DetectorInfo(name, factory, check or (lambda: None), description)


def available_detectors() -> dict[str, tuple[bool, str]]:
    """Every registered detector -> ``(usable, description or install hint)``."""
    out: dict[str, tuple[bool, str]] = {}
    for name, info in _REGISTRY.items():
        hint = info.check()
        out[name] = (hint is None, info.description if hint is None else hint)
    return out


def create_detector(name: str, *, model_path: str | None = None, score_threshold: float = 0.5,
                    min_size: int = 20, num_threads: int | None = 1) -> FaceDetector:
    """Build a registered detector.

    Args:
        name: ``"haar"``, ``"blazeface"``, ``"yunet"`` or a name given to :func:`register_detector`.
        model_path: Model file for detectors that need one (YuNet: required; BlazeFace: optional override).
        score_threshold: Minimum confidence 0..1.
        min_size: Smallest face side in pixels of the image passed to ``detect``.
        num_threads: Threads for TFLite-based detectors.

    Raises:
        ConfigError: unknown name or bad argument.
        BackendNotInstalledError: the detector's library is missing (the message has the pip command).
        ModelLoadError: its model file is missing, altered or unreadable.
    """
    info = _REGISTRY.get(name)
    if info is None:
        raise ConfigError(f"unknown face detector {name!r}; registered: {', '.join(sorted(_REGISTRY))}")
    if not 0.0 <= score_threshold <= 1.0:
        raise ConfigError(f"score_threshold must be in 0..1, got {score_threshold}")
    return info.factory(model_path=model_path, score_threshold=score_threshold, min_size=max(1, int(min_size)),
                        num_threads=num_threads)


def import_cv2(feature: str = "this detector") -> Any:
    """Import OpenCV lazily, or raise :class:`BackendNotInstalledError` with the install command."""
    try:
        import cv2
    except ImportError as e:
        raise BackendNotInstalledError(f"{feature} needs OpenCV, which is not importable ({e}); "
                                       f"{OPENCV_HINT}") from None
    return cv2


def cv2_missing_hint() -> str | None:
    """``None`` when OpenCV is importable, else the install hint."""
    return None if importlib.util.find_spec("cv2") is not None else OPENCV_HINT


def check_image(image: np.ndarray) -> np.ndarray:
    """Validate a detector input: ``(H, W, 3)`` uint8 RGB (a grey ``(H, W)`` image is expanded)."""
    from ..errors import InputError

    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise InputError(f"detector input must be an HxWx3 RGB image, got shape {list(arr.shape)}")
    if arr.shape[2] == 4:
        arr = arr[:, :, :3]
    if arr.dtype != np.uint8:
        raise InputError(f"detector input must be uint8, got {arr.dtype}")
    if arr.shape[0] < 8 or arr.shape[1] < 8:
        raise InputError(f"detector input is too small: {arr.shape[1]}x{arr.shape[0]} pixels")
    return arr


def nms(dets: Sequence[Detection], iou_threshold: float, weighted: bool = False) -> list[Detection]:
    """Non-maximum suppression, highest score first.

    With ``weighted=True`` (BlazeFace's "weighted NMS"), each kept box is the score-weighted average of
    the boxes (and landmarks) it suppresses, which is steadier than picking one anchor.
    """
    order = sorted(dets, key=lambda d: -d.score)
    out: list[Detection] = []
    while order:
        best = order[0]
        group = [d for d in order if _iou(best, d) >= iou_threshold]
        rest = [d for d in order if _iou(best, d) < iou_threshold]
        if weighted and len(group) > 1:
            ws = np.array([d.score for d in group], dtype=np.float64)
            ws = ws / ws.sum()
            box = np.array([[d.x, d.y, d.w, d.h] for d in group], dtype=np.float64).T @ ws
            lms: tuple[tuple[float, float], ...] = ()
            if best.landmarks and all(len(d.landmarks) == len(best.landmarks) for d in group):
                arr = np.array([d.landmarks for d in group], dtype=np.float64)  # (n, k, 2)
                avg = np.tensordot(ws, arr, axes=1)
                lms = tuple((float(p[0]), float(p[1])) for p in avg)
            best = Detection(float(box[0]), float(box[1]), float(box[2]), float(box[3]), best.score, lms)
        out.append(best)
        order = rest
    return out


def _iou(a: Detection, b: Detection) -> float:
    x1, y1 = max(a.x, b.x), max(a.y, b.y)
    x2, y2 = min(a.x + a.w, b.x + b.w), min(a.y + a.h, b.y + b.h)
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = a.w * a.h + b.w * b.h - inter
    return inter / union if union > 0 else 0.0
