"""Image preprocessing shared by training, converter calibration and the runtime (numpy only).

A face model's card describes its image input in ``inputs[0].preprocessing``::

    {"color": "grey" | "rgb", "size": [48, 48], "scale": 0.00392156862745098,
     "mean": 0.5077, "std": 0.255,          # float, or one value per channel
     "resize": "area" | "bilinear" | "nearest", "crop_margin": 0.15, "layout": "NHWC",
     "equalize": "none" | "histogram"}         # optional, default "none"

The model input is ``(equalize(resize(colour(crop))) * scale - mean) / std`` as float32, shape ``(1, H, W, C)``.
``"equalize": "histogram"`` (grey models only) histogram-equalises the resized crop on the uint8 grid
(:func:`equalize_hist`, the same mapping as OpenCV's ``equalizeHist``), as FER2013's training JPEGs were:
camera crops then reach the model with the contrast it was trained on. Cards without the key (every card
written before it existed) keep the plain pipeline.
:func:`parse_image_spec` validates the dict once; :func:`prepare_face` applies it to one crop. The
training recipe (``affectlite_convert.recipes.face``) uses the same arithmetic, so what the device computes
is what the model was trained and calibrated on.

Resizing is implemented here in numpy (area = exact box filter with fractional pixel coverage, computed as
two small matrix products), so results do not depend on whether OpenCV is installed.

**Eye alignment** (:func:`aligned_crop`): when the detector gives eye keypoints (BlazeFace), the crop is the
similarity transform (rotation, uniform scale, shift) that puts the subject's right and left eye at the
canonical positions :data:`ALIGN_EYE_Y` / :data:`ALIGN_EYE_DISTANCE`, i.e. where they sit in FER2013's
training crops, level. The same function serves the runtime (``FaceAnalyzer``) and the training recipe
(``affectlite_convert.recipes.face.align_crops``); it is numpy-only bilinear sampling, so the crop does not
depend on OpenCV either. Boxes without keypoints (Haar) use :func:`crop_box`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import InputError, ModelCardError

__all__ = [
    "ALIGN_EYE_DISTANCE",
    "ALIGN_EYE_Y",
    "ImageSpec",
    "aligned_crop",
    "aligned_crop_size",
    "crop_box",
    "equalize_hist",
    "eye_alignment_matrix",
    "face_crop",
    "parse_image_spec",
    "prepare_face",
    "prepare_faces",
    "resize",
    "square_box",
    "to_grey",
    "to_rgb",
    "warp_affine",
]

#: ITU-R BT.601 luma weights (what OpenCV's RGB2GRAY and most JPEG decoders use).
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
_RESIZE_MODES = ("area", "bilinear", "nearest")
_EQUALIZE_MODES = ("none", "histogram")


@dataclass(frozen=True)
class ImageSpec:
    """A validated image preprocessing spec (see the module docstring).

    Attributes:
        color: ``"grey"`` (1 channel) or ``"rgb"`` (3 channels).
        size: Model input ``(height, width)``.
        scale: Multiplier applied to uint8 pixel values.
        mean: Subtracted after scaling (one value, or one per channel).
        std: Divides after subtracting the mean (one value, or one per channel).
        resize: Interpolation: ``"area"``, ``"bilinear"`` or ``"nearest"``.
        crop_margin: Margin around a detector box the model was trained with (fraction of the box side).
        equalize: ``"none"`` or ``"histogram"`` (histogram equalisation of the resized grey crop,
            :func:`equalize_hist`).
    """

    color: str = "grey"
    size: tuple[int, int] = (48, 48)
    scale: float = 1.0 / 255.0
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    resize: str = "area"
    crop_margin: float = 0.15
    equalize: str = "none"

    @property
    def channels(self) -> int:
        """Number of channels of the model input."""
        return 1 if self.color == "grey" else 3


def _floats(v: Any, name: str, n: int, where: str) -> tuple[float, ...]:
    vals = list(v) if isinstance(v, (list, tuple)) else [v]
    if not vals or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
                           for x in vals):
        raise ModelCardError(f"{where}: '{name}' must be a finite number or a list of {n}, got {v!r}")
    if len(vals) not in (1, n):
        raise ModelCardError(f"{where}: '{name}' has {len(vals)} values, expected 1 or {n}")
    return tuple(float(x) for x in vals)


def parse_image_spec(pre: Mapping[str, Any], where: str = "card input 0 preprocessing") -> ImageSpec:
    """Validate a card's image preprocessing dict.

    Args:
        pre: The ``preprocessing`` mapping of an ``image`` input.
        where: Context for error messages.

    Returns:
        The parsed :class:`ImageSpec`.

    Raises:
        ModelCardError: a key has a wrong type or value (the message names the key and the allowed values).
    """
    color = str(pre.get("color", "grey")).lower()
    if color in ("gray", "grayscale", "greyscale", "l"):
        color = "grey"
    if color not in ("grey", "rgb"):
        raise ModelCardError(f"{where}: 'color' must be 'grey' or 'rgb', got {pre.get('color')!r}")
    size = pre.get("size", [48, 48])
    if (not isinstance(size, (list, tuple)) or len(size) != 2
            or not all(isinstance(s, int) and not isinstance(s, bool) and 4 <= s <= 4096 for s in size)):
        raise ModelCardError(f"{where}: 'size' must be [height, width] integers in 4..4096, got {size!r}")
    n = 1 if color == "grey" else 3
    scale = _floats(pre.get("scale", 1.0 / 255.0), "scale", 1, where)[0]
    mean = _floats(pre.get("mean", 0.0), "mean", n, where)
    std = _floats(pre.get("std", 1.0), "std", n, where)
    if any(s <= 0 for s in std):
        raise ModelCardError(f"{where}: 'std' must be > 0, got {pre.get('std')!r}")
    mode = str(pre.get("resize", "area")).lower()
    if mode not in _RESIZE_MODES:
        raise ModelCardError(f"{where}: 'resize' must be one of {', '.join(_RESIZE_MODES)}, got {mode!r}")
    margin = _floats(pre.get("crop_margin", 0.15), "crop_margin", 1, where)[0]
    if not 0.0 <= margin <= 2.0:
        raise ModelCardError(f"{where}: 'crop_margin' must be in 0..2, got {margin}")
    layout = str(pre.get("layout", "NHWC")).upper()
    if layout != "NHWC":
        raise ModelCardError(f"{where}: only layout 'NHWC' is supported, got {layout!r}")
    equalize = str(pre.get("equalize", "none")).lower()
    if equalize not in _EQUALIZE_MODES:
        raise ModelCardError(f"{where}: 'equalize' must be one of {', '.join(_EQUALIZE_MODES)}, got "
                             f"{pre.get('equalize')!r}")
    if equalize != "none" and color != "grey":
        raise ModelCardError(f"{where}: 'equalize': {equalize!r} is defined for grey models only "
                             f"('color': 'grey'), got 'color': {color!r}")
    return ImageSpec(color=color, size=(int(size[0]), int(size[1])), scale=scale, mean=mean, std=std,
                     resize=mode, crop_margin=margin, equalize=equalize)


# --------------------------------------------------------------------------------------------- colour
def _as_image(image: np.ndarray, what: str = "image") -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[:, :, :3]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] != 3):
        raise InputError(f"{what} must be HxW grey or HxWx3 RGB, got shape {list(arr.shape)}")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise InputError(f"{what} is empty (shape {list(arr.shape)})")
    if arr.dtype != np.uint8:
        if arr.dtype.kind == "f":
            if not np.all(np.isfinite(arr)):
                raise InputError(f"{what} contains NaN or infinity")
            hi = float(arr.max()) if arr.size else 0.0
            arr = arr * 255.0 if hi <= 1.0 else arr  # float images in 0..1 or 0..255
        elif arr.dtype.kind not in "iub":
            raise InputError(f"{what} must be uint8 (or float/int pixels), got dtype {arr.dtype}")
        arr = np.clip(np.rint(arr.astype(np.float64)), 0, 255).astype(np.uint8)
    return arr


_CV2: list[Any] = []


def _cv2() -> Any:
    """OpenCV when installed (cached), else None: only an accelerator here, never required."""
    if not _CV2:
        mod: Any = None
        try:
            import cv2 as mod
        except ImportError:
            pass
        _CV2.append(mod)
    return _CV2[0]


def to_grey(image: np.ndarray) -> np.ndarray:
    """RGB (or grey) uint8 image -> float32 grey ``(H, W)`` in 0..255 (BT.601 luma)."""
    arr = _as_image(image)
    if arr.ndim == 2:
        return arr.astype(np.float32)
    # per-channel multiply-adds, not ``@ _LUMA``: a matrix-vector product over every pixel goes to BLAS, whose
    # worker threads (OpenBLAS) then spin between frames and burn a core on small devices
    f = arr.astype(np.float32)
    out: np.ndarray = f[..., 0] * _LUMA[0] + f[..., 1] * _LUMA[1] + f[..., 2] * _LUMA[2]
    return out


def to_rgb(image: np.ndarray) -> np.ndarray:
    """Grey or RGB uint8 image -> float32 RGB ``(H, W, 3)`` in 0..255."""
    arr = _as_image(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    return arr.astype(np.float32)


# --------------------------------------------------------------------------------------------- resize
@functools.lru_cache(maxsize=64)
def _area_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights: output pixel i averages input [i*s, (i+1)*s) with fractional coverage."""
    s = n_in / n_out
    m = np.zeros((n_out, n_in), dtype=np.float32)
    for i in range(n_out):
        a, b = i * s, (i + 1) * s
        j0, j1 = math.floor(a), min(math.ceil(b), n_in)
        for j in range(j0, j1):
            m[i, j] = min(b, j + 1) - max(a, j)
        m[i] /= m[i].sum()
    m.setflags(write=False)
    return m


@functools.lru_cache(maxsize=64)
def _bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of half-pixel-centred linear interpolation (edges clamped)."""
    m = np.zeros((n_out, n_in), dtype=np.float32)
    s = n_in / n_out
    for i in range(n_out):
        x = (i + 0.5) * s - 0.5
        x = min(max(x, 0.0), n_in - 1.0)
        j = math.floor(x)
        f = x - j
        m[i, j] += 1.0 - f
        if f > 0 and j + 1 < n_in:
            m[i, j + 1] += f
    m.setflags(write=False)
    return m


def resize(image: np.ndarray, size: tuple[int, int], mode: str = "area") -> np.ndarray:
    """Resize a float or uint8 ``(H, W)`` or ``(H, W, C)`` image to ``size = (height, width)``.

    Args:
        image: The image.
        size: Output ``(height, width)``.
        mode: ``"area"`` (exact box filter; for enlarging it equals bilinear-free pixel replication
            weighted by coverage), ``"bilinear"`` or ``"nearest"``.

    Returns:
        float32 image of the new size (same number of channels).
    """
    h, w = int(size[0]), int(size[1])
    img = np.asarray(image, dtype=np.float32)
    ih, iw = img.shape[:2]
    if (ih, iw) == (h, w):
        return img
    if mode == "nearest":
        ys = np.minimum(((np.arange(h) + 0.5) * ih / h).astype(np.int64), ih - 1)
        xs = np.minimum(((np.arange(w) + 0.5) * iw / w).astype(np.int64), iw - 1)
        out_n: np.ndarray = img[ys][:, xs]
        return out_n
    if mode == "area" and (ih >= h and iw >= w):
        cv2 = _cv2()
        if cv2 is not None and img.ndim in (2, 3) and (img.ndim == 2 or img.shape[2] <= 4):
            # OpenCV's INTER_AREA shrink is the same box filter (equal to the matrices below within float32
            # rounding, tested) and runs without BLAS, whose spinning worker threads cost a core per pipeline
            shrunk: np.ndarray = cv2.resize(np.ascontiguousarray(img), (w, h), interpolation=cv2.INTER_AREA)
            return shrunk.reshape((h, w, *img.shape[2:])).astype(np.float32, copy=False)
        my, mx = _area_matrix(ih, h), _area_matrix(iw, w)
    elif mode in ("area", "bilinear"):
        my = _area_matrix(ih, h) if (mode == "area" and ih >= h) else _bilinear_matrix(ih, h)
        mx = _area_matrix(iw, w) if (mode == "area" and iw >= w) else _bilinear_matrix(iw, w)
    else:
        raise InputError(f"unknown resize mode {mode!r}; use one of {', '.join(_RESIZE_MODES)}")
    if img.ndim == 2:
        out: np.ndarray = my @ img @ mx.T
        return out
    out3: np.ndarray = np.einsum("ij,jkc,lk->ilc", my, img, mx, optimize=True)
    return out3.astype(np.float32, copy=False)


# ----------------------------------------------------------------------------------------------- crops
def square_box(x: float, y: float, w: float, h: float, margin: float) -> tuple[float, float, float]:
    """A square around a box, enlarged by ``margin`` (fraction of the longer side) on every side.

    Returns:
        ``(left, top, side)`` in the same pixel units (may extend past the frame).
    """
    side = max(w, h) * (1.0 + 2.0 * margin)
    cx, cy = x + w / 2.0, y + h / 2.0
    return cx - side / 2.0, cy - side / 2.0, side


def crop_box(frame: np.ndarray, x: float, y: float, w: float, h: float, margin: float) -> np.ndarray:
    """Cut the square crop :func:`square_box` describes; parts outside the frame replicate the edge.

    Args:
        frame: ``(H, W)`` or ``(H, W, 3)`` image.
        x: Box left in pixels.
        y: Box top.
        w: Box width.
        h: Box height.
        margin: Margin fraction (see :func:`square_box`).

    Returns:
        The crop (same dtype as ``frame``), at least 1x1.
    """
    if frame.ndim not in (2, 3) or frame.shape[0] == 0 or frame.shape[1] == 0:
        raise InputError(f"crop_box: frame must be a non-empty HxW or HxWxC image, got shape {list(frame.shape)}")
    if not all(math.isfinite(v) for v in (x, y, w, h, margin)):
        raise InputError(f"crop_box: box ({x}, {y}, {w}, {h}) and margin {margin} must be finite numbers")
    fh, fw = frame.shape[:2]
    left, top, side = square_box(x, y, w, h, margin)
    s = max(1, round(side))
    x0, y0 = round(left), round(top)
    ys = np.clip(np.arange(y0, y0 + s), 0, fh - 1)
    xs = np.clip(np.arange(x0, x0 + s), 0, fw - 1)
    if x0 >= 0 and x0 + s <= fw and y0 >= 0 and y0 + s <= fh:
        out_fast: np.ndarray = frame[y0:y0 + s, x0:x0 + s]
        return out_fast
    out: np.ndarray = frame[ys][:, xs]
    return out


# -------------------------------------------------------------------------------------- eye alignment
#: Canonical height of the eyes in an aligned crop, as a fraction of its side (0 = top).
#:
#: Measured, not guessed: BlazeFace (``affectlite.detectors.blazeface``) run over 2,000 FER2013 ``train``
#: crops drawn with ``numpy.random.default_rng(0)`` (each 48x48 crop padded by 24 px of grey 128 on every
#: side, upscaled 4x with cubic interpolation to 384x384; a face was found in 1,964), keypoints mapped back to
#: the 48x48 crop: median right eye (0.3127, 0.4009), left eye (0.6811, 0.3935) of the side, eye midpoint
#: (0.4966, 0.3975), inter-ocular distance 0.3657 (IQR 0.319-0.397), eye-line angle -1.1 deg (IQR -6.8..4.8).
#: The midpoint's x is taken as 0.5 (mirror symmetry, so a flipped crop stays canonical). Command:
#: ``PYTHONPATH=sdk:converters python tests/benchmarks/face_alignment.py canonical --n 2000``.
ALIGN_EYE_Y = 0.3975
#: Canonical distance between the eye centres as a fraction of the crop side (measured as above).
ALIGN_EYE_DISTANCE = 0.3657


def _point(p: Sequence[float], name: str) -> tuple[float, float]:
    if len(p) != 2 or not all(math.isfinite(float(v)) for v in p):
        raise InputError(f"{name} must be a finite (x, y) point, got {p!r}")
    return float(p[0]), float(p[1])


def eye_alignment_matrix(right_eye: Sequence[float], left_eye: Sequence[float], size: int, *,
                         eye_y: float = ALIGN_EYE_Y, eye_distance: float = ALIGN_EYE_DISTANCE) -> np.ndarray:
    """The similarity transform from image pixels to an aligned ``size x size`` crop.

    It maps the subject's right eye (on the viewer's left in an unmirrored image) to
    ``((0.5 - eye_distance / 2) * size, eye_y * size)`` and the left eye to
    ``((0.5 + eye_distance / 2) * size, eye_y * size)``: the eyes come out level, ``eye_distance * size``
    apart. Coordinates are continuous (a pixel ``i`` covers ``[i, i + 1)``, as detector boxes are).

    Args:
        right_eye: ``(x, y)`` of the subject's right eye in image pixels (BlazeFace keypoint 0).
        left_eye: ``(x, y)`` of the subject's left eye (BlazeFace keypoint 1).
        size: Side of the output crop in pixels.
        eye_y: Canonical eye height, fraction of the side.
        eye_distance: Canonical inter-ocular distance, fraction of the side.

    Returns:
        ``(2, 3)`` float64 matrix ``M`` with ``[u, v] = M @ [x, y, 1]`` in continuous coordinates.

    Raises:
        InputError: the eyes coincide (or are not finite), or ``size``/the fractions are out of range.
    """
    (rx, ry), (lx, ly) = _point(right_eye, "right_eye"), _point(left_eye, "left_eye")
    if int(size) < 1 or not 0.0 < eye_distance < 1.0 or not 0.0 <= eye_y <= 1.0:
        raise InputError(f"eye_alignment_matrix: size must be >= 1 and 0 < eye_distance < 1, 0 <= eye_y <= 1; got "
                         f"size={size}, eye_distance={eye_distance}, eye_y={eye_y}")
    vx, vy = lx - rx, ly - ry
    dist = math.hypot(vx, vy)
    if dist < 1e-6:
        raise InputError(f"eye_alignment_matrix: the two eye points coincide ({rx}, {ry})")
    scale = eye_distance * size / dist
    c, s = vx / dist * scale, vy / dist * scale  # rotate by -angle(eye line), then scale
    a = np.array([[c, s], [-s, c]], dtype=np.float64)
    mid_src = np.array([(rx + lx) / 2.0, (ry + ly) / 2.0])
    mid_dst = np.array([0.5 * size, eye_y * size])
    t = mid_dst - a @ mid_src
    return np.concatenate([a, t[:, None]], axis=1)


def warp_affine(image: np.ndarray, matrix: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Sample ``image`` through an affine map (numpy, bilinear, edges replicated).

    Args:
        image: ``(H, W)`` or ``(H, W, C)`` image (any numeric dtype).
        matrix: ``(2, 3)`` map from image to output, continuous coordinates (see :func:`eye_alignment_matrix`).
        size: Output ``(height, width)``.

    Returns:
        float32 image of ``size`` with the channels of ``image``.

    Raises:
        InputError: the image is empty or the matrix is not an invertible ``(2, 3)`` map.
    """
    img = np.asarray(image)
    if img.ndim not in (2, 3) or img.shape[0] < 1 or img.shape[1] < 1:
        raise InputError(f"warp_affine: image must be a non-empty HxW or HxWxC array, got shape {list(img.shape)}")
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (2, 3) or not np.all(np.isfinite(m)) or abs(float(np.linalg.det(m[:, :2]))) < 1e-12:
        raise InputError(f"warp_affine: matrix must be a finite, invertible 2x3 affine map, got {m.tolist()}")
    h, w = int(size[0]), int(size[1])
    inv = np.linalg.inv(m[:, :2])
    # output pixel centre (j + 0.5, i + 0.5) -> source continuous point -> source pixel-centre coordinates
    jj, ii = np.meshgrid(np.arange(w, dtype=np.float64) + 0.5, np.arange(h, dtype=np.float64) + 0.5)
    dx, dy = jj - m[0, 2], ii - m[1, 2]
    sx = inv[0, 0] * dx + inv[0, 1] * dy - 0.5
    sy = inv[1, 0] * dx + inv[1, 1] * dy - 0.5
    ih, iw = img.shape[:2]
    sx = np.clip(sx, 0.0, iw - 1.0)
    sy = np.clip(sy, 0.0, ih - 1.0)
    x0, y0 = np.floor(sx).astype(np.int64), np.floor(sy).astype(np.int64)
    x1, y1 = np.minimum(x0 + 1, iw - 1), np.minimum(y0 + 1, ih - 1)
    fx, fy = (sx - x0).astype(np.float32), (sy - y0).astype(np.float32)
    src = img.astype(np.float32, copy=False)
    if src.ndim == 3:
        fx, fy = fx[..., None], fy[..., None]
    top = src[y0, x0] * (1.0 - fx) + src[y0, x1] * fx
    bottom = src[y1, x0] * (1.0 - fx) + src[y1, x1] * fx
    out: np.ndarray = top * (1.0 - fy) + bottom * fy
    return out.astype(np.float32, copy=False)


def aligned_crop_size(right_eye: Sequence[float], left_eye: Sequence[float], *, min_size: int = 8,
                      max_size: int = 96, eye_distance: float = ALIGN_EYE_DISTANCE) -> int:
    """The side that keeps the face at its own resolution: inter-ocular distance / ``eye_distance``.

    Clamped to ``[min_size, max_size]``: :func:`prepare_face` then resizes with its area filter (a bilinear
    warp straight to 48 px would alias a large face), and ``max_size`` (default: twice a 48-px model input)
    bounds the cost of the warp for faces close to the camera.
    """
    (rx, ry), (lx, ly) = _point(right_eye, "right_eye"), _point(left_eye, "left_eye")
    natural = math.hypot(lx - rx, ly - ry) / eye_distance
    return int(min(max(round(natural), int(min_size)), int(max_size)))


def aligned_crop(image: np.ndarray, right_eye: Sequence[float], left_eye: Sequence[float],
                 size: int | None = None, *, max_size: int = 96, grey: bool = False) -> np.ndarray:
    """The eye-aligned face crop: eyes level at the canonical FER2013 positions, sized by their distance.

    This is the one crop function for keypoint detections in training and at run time.

    Args:
        image: ``(H, W)`` grey or ``(H, W, 3)`` RGB frame, uint8.
        right_eye: ``(x, y)`` of the subject's right eye in ``image`` pixels (BlazeFace keypoint 0).
        left_eye: ``(x, y)`` of the subject's left eye (BlazeFace keypoint 1).
        size: Output side (``None``: :func:`aligned_crop_size` with ``max_size``).
        max_size: Largest output side when ``size`` is ``None``.
        grey: Return a grey crop (BT.601 luma, converted before warping: a third of the work for grey models).

    Returns:
        ``(size, size)`` (grey input or ``grey``) or ``(size, size, 3)`` uint8 crop (rounded); parts outside the
        frame replicate the edge.

    Raises:
        InputError: bad image or degenerate eye points.
    """
    img = _as_image(image)
    side = aligned_crop_size(right_eye, left_eye, max_size=max_size) if size is None else int(size)
    m = eye_alignment_matrix(right_eye, left_eye, side)
    # only the part of the frame the crop samples (+2 px for the bilinear neighbours) is converted and read
    inv = np.linalg.inv(m[:, :2])
    corners = np.array([[0.0, 0.0], [side, 0.0], [0.0, side], [side, side]]) - m[:, 2]
    src = corners @ inv.T
    h, w = img.shape[:2]
    x0 = int(min(max(math.floor(src[:, 0].min()) - 2, 0), w - 1))
    y0 = int(min(max(math.floor(src[:, 1].min()) - 2, 0), h - 1))
    x1 = int(min(max(math.ceil(src[:, 0].max()) + 3, x0 + 1), w))
    y1 = int(min(max(math.ceil(src[:, 1].max()) + 3, y0 + 1), h))
    region = img[y0:y1, x0:x1]
    if grey and region.ndim == 3:
        region = to_grey(region)
    shifted = m.copy()
    shifted[:, 2] += m[:, :2] @ np.array([x0, y0], dtype=np.float64)
    out: np.ndarray = np.clip(np.rint(warp_affine(region, shifted, (side, side))), 0, 255).astype(np.uint8)
    return out


def face_crop(frame: np.ndarray, box: Sequence[float], landmarks: Sequence[Sequence[float]] = (), *,
              margin: float, align: bool = True, max_size: int = 96, grey: bool = False) -> np.ndarray:
    """The crop the expression model sees for one detected face, in training and at run time.

    With ``align`` and at least two keypoints (the subject's right eye, then left eye: BlazeFace's order),
    the eye-aligned crop of :func:`aligned_crop`; otherwise (Haar boxes, ``align=False``, eyes less than a
    pixel apart) the square box crop of :func:`crop_box` with ``margin``.

    Args:
        frame: ``(H, W)`` or ``(H, W, 3)`` uint8 image.
        box: ``(x, y, w, h)`` of the face in ``frame`` pixels.
        landmarks: Detector keypoints in ``frame`` pixels (may be empty).
        margin: Box-crop margin (fraction of the box side; unused for aligned crops).
        align: Use the keypoints when there are any.
        max_size: Largest side of an aligned crop (see :func:`aligned_crop_size`).
        grey: Aligned crops come out grey (for grey models; box crops are returned as cut).

    Returns:
        The crop, uint8 (any size: :func:`prepare_face` resizes it as the model card says).

    Raises:
        InputError: bad frame or box.
    """
    if len(box) != 4:
        raise InputError(f"face_crop: box must be (x, y, w, h), got {box!r}")
    if align and len(landmarks) >= 2:
        (rx, ry), (lx, ly) = _point(landmarks[0], "right_eye"), _point(landmarks[1], "left_eye")
        if math.hypot(lx - rx, ly - ry) >= 1.0:
            return aligned_crop(frame, (rx, ry), (lx, ly), max_size=max_size, grey=grey)
    x, y, w, h = (float(v) for v in box)
    return crop_box(frame, x, y, w, h, margin)


def equalize_hist(image: np.ndarray) -> np.ndarray:
    """Histogram equalisation of a grey uint8 image (numpy; the same mapping as OpenCV's ``equalizeHist``).

    Grey level ``v`` maps to ``round((cdf(v) - cdf(v_min)) * 255 / (N - cdf(v_min)))``, with ``cdf`` the
    cumulative histogram, ``v_min`` the darkest level present and ``N`` the pixel count; an image of one grey
    level is returned unchanged. The mapping depends only on the order of the grey levels, so any
    monotonic change of brightness or contrast (gamma, gain, offset) gives the same output up to
    quantisation.

    Args:
        image: ``(H, W)`` uint8 (other dtypes are rounded and clipped to 0..255 first).

    Returns:
        ``(H, W)`` uint8.

    Raises:
        InputError: the image is not 2-D or is empty.
    """
    img = np.asarray(image)
    if img.ndim != 2 or img.size == 0:
        raise InputError(f"equalize_hist needs a non-empty 2-D grey image, got shape {img.shape}")
    if img.dtype != np.uint8:
        img = np.clip(np.rint(img.astype(np.float64)), 0, 255).astype(np.uint8)
    hist = np.bincount(img.ravel(), minlength=256)
    cdf = np.cumsum(hist)
    total = int(cdf[-1])
    lo = int(cdf[int(np.flatnonzero(hist)[0])])
    if lo == total:
        return img.copy()
    scale = 255.0 / (total - lo)
    lut = np.clip(np.rint((cdf - lo) * scale), 0, 255).astype(np.uint8)
    out: np.ndarray = lut[img]
    return out


def prepare_face(crop: np.ndarray, spec: ImageSpec) -> np.ndarray:
    """One face crop -> model input ``(1, H, W, C)`` float32, exactly as the card specifies.

    Args:
        crop: ``(H, W)`` grey or ``(H, W, 3)`` RGB crop, uint8 (float 0..1 or 0..255 also accepted).
        spec: The parsed card spec.

    Raises:
        InputError: the crop has a wrong rank, channel count, dtype, or is empty.
    """
    img = to_grey(crop) if spec.channels == 1 else to_rgb(crop)
    img = resize(img, spec.size, spec.resize)
    # quantise to uint8 grid like a decoded 8-bit image, then normalise (matches training on uint8 data)
    img = np.clip(np.rint(img), 0.0, 255.0)
    if spec.equalize == "histogram" and img.ndim == 2:
        img = equalize_hist(img.astype(np.uint8)).astype(np.float32)
    if img.ndim == 2:
        img = img[:, :, None]
    mean = np.asarray(spec.mean, dtype=np.float32)
    std = np.asarray(spec.std, dtype=np.float32)
    x = (img * np.float32(spec.scale) - mean) / std
    out: np.ndarray = x[None].astype(np.float32, copy=False)
    return out


def prepare_faces(crops: Sequence[np.ndarray], spec: ImageSpec) -> np.ndarray:
    """Several crops -> a batch ``(N, H, W, C)`` float32 (``N`` may be 0)."""
    if len(crops) == 0:
        return np.zeros((0, spec.size[0], spec.size[1], spec.channels), dtype=np.float32)
    return np.concatenate([prepare_face(c, spec) for c in crops], axis=0)
