"""The face path: detect, track, crop, preprocess and classify facial expressions (synchronous).

- :class:`FaceExpressionClassifier` runs an expression model (default: the shipped int8
  ``models/face.tflite``) on face crops, preprocessed exactly as its card says (:mod:`affectlite.preprocess`).
- :class:`FaceAnalyzer` turns video frames into :class:`~affectlite.results.FaceResult` tuples: detection
  every ``detect_every`` frames on a frame downscaled to ``detect_width``, IoU tracking with ephemeral ids in
  between, crops (eye-aligned from the detector's keypoints when ``align`` is on, else the box with a margin;
  :func:`affectlite.preprocess.face_crop`), classification and optional per-track smoothing. Used by one thread.
- :func:`evaluate_face` / :func:`eval_face_main` score a model on a folder of labelled face images
  (``affectlite eval face --data DIR``).

Results are estimates of the displayed facial expression, not of felt emotion.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .card import ModelCard
from .detectors import DetectorChoice
from .detectors.base import Detection, FaceDetector, check_image
from .errors import BackendNotInstalledError, InputError, ModelCardError, ModelLoadError
from .labels import LABELS, canonical_label
from .model import Model
from .options import FaceOptions
from .preprocess import ImageSpec, face_crop, parse_image_spec, prepare_face
from .results import Box, FaceResult
from .tracking import IoUTracker

__all__ = [
    "DEFAULT_FACE_MODEL",
    "FaceAnalyzer",
    "FaceExpressionClassifier",
    "eval_face_main",
    "evaluate_face",
]

log = logging.getLogger(__name__)

#: The shipped int8 expression model (its card is ``face.card.json`` next to it).
DEFAULT_FACE_MODEL = Path(__file__).parent / "models" / "face.tflite"
_IMAGE_EXT = (".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".webp", ".tif", ".tiff")


class FaceExpressionClassifier:
    """An expression model plus its card's preprocessing. Not re-entrant: one per thread.

    Use :meth:`create`. Outputs are probabilities aligned with :data:`affectlite.LABELS` (a model with other
    labels is mapped through its card's ``label_mapping`` and the common synonyms).
    """

    def __init__(self, model: Model, *, flip_tta: bool = False) -> None:
        card = model.card
        self.flip_tta = bool(flip_tta)
        if not card.inputs or card.inputs[0].kind != "image":
            raise ModelCardError(f"{card.source or card.name}: a face model needs inputs[0].kind 'image', "
                                 f"got {card.inputs[0].kind if card.inputs else 'no inputs'!r}")
        self.spec: ImageSpec = parse_image_spec(card.inputs[0].preprocessing,
                                                f"{card.source or card.name}: inputs[0].preprocessing")
        shape = [int(v) for v in model.input_details[0]["shape"]]
        want = [self.spec.size[0], self.spec.size[1], self.spec.channels]
        if len(shape) != 4 or shape[1:] != want:
            raise ModelCardError(f"{card.source or card.name}: preprocessing says input {want} (HWC) but the "
                                 f"model's input tensor is {shape}")
        self.model = model
        # (n_model_labels, n_common) 0/1 matrix that sums model probabilities onto LABELS
        m = np.zeros((len(card.labels), len(LABELS)), dtype=np.float64)
        for i, lab in enumerate(card.labels):
            c = card.common_label(lab)
            if c is not None:
                m[i, LABELS.index(c)] = 1.0
        if not m.any():
            raise ModelCardError(f"{card.source or card.name}: none of the labels {list(card.labels)} maps to "
                                 f"the common set {list(LABELS)}; add a label_mapping to the card")
        self._to_common = m

    @classmethod
    def create(cls, model_path: str | os.PathLike[str] | None = None, *, backend: str = "auto",
               num_threads: int | None = 1, delegates: Sequence[str] = (),
               flip_tta: bool = False) -> FaceExpressionClassifier:
        """Load an expression model and its card.

        Args:
            model_path: A face ``.tflite`` with its ``.card.json`` (``None``: the shipped default).
            backend: Interpreter backend (``"auto"``, ``"litert"``, ``"tflite_runtime"``, ``"tf_lite"``).
            num_threads: Interpreter threads.
            delegates: Delegate library paths.
            flip_tta: Also classify the mirrored crop and average the two: twice the inference time; the gain
                depends on the model (see :attr:`affectlite.FaceOptions.flip_tta`).

        Raises:
            ModelLoadError: the file is missing or unreadable.
            ModelCardError: the card is missing, is not a face card, or does not match the model.
        """
        path = Path(model_path) if model_path is not None else DEFAULT_FACE_MODEL
        if model_path is None and not path.is_file():
            raise ModelLoadError(f"the shipped face model {path} is missing; reinstall affectlite or pass "
                                 f"model_path=<face.tflite>")
        model = Model.load(path, backend=backend, num_threads=num_threads, delegates=delegates,
                           expected_task="face")
        return cls(model, flip_tta=flip_tta)

    @property
    def card(self) -> ModelCard:
        """The model's card."""
        return self.model.card

    def _common(self, p: np.ndarray) -> tuple[float, ...]:
        q = np.asarray(p, dtype=np.float64).reshape(-1) @ self._to_common
        s = float(q.sum())
        q = q / s if s > 0 else np.full(len(LABELS), 1.0 / len(LABELS))
        return tuple(float(v) for v in q)

    def classify_prepared(self, x: np.ndarray) -> tuple[float, ...]:
        """Classify one already-preprocessed input ``(1, H, W, C)`` float32; probabilities over LABELS."""
        p = self.model.predict_proba(x)[0]
        if self.flip_tta:
            p = (p + self.model.predict_proba(x[:, :, ::-1, :])[0]) / 2
        return self._common(p)

    def classify_crops(self, crops: Sequence[np.ndarray]) -> list[tuple[float, ...]]:
        """Expression probabilities for face crops.

        Args:
            crops: Face crops, each ``(H, W)`` grey or ``(H, W, 3)`` RGB uint8 (any size; resized per card).

        Returns:
            One probability tuple per crop, aligned with :data:`affectlite.LABELS`.

        Raises:
            InputError: a crop has the wrong shape or dtype.
        """
        return [self.classify_prepared(prepare_face(c, self.spec)) for c in crops]

    def close(self) -> None:
        """Release the interpreter."""
        self.model = None  # type: ignore[assignment]


def _default_of(name: str) -> Any:
    return FaceOptions.default(name)


class FaceAnalyzer:
    """Frames in, per-face expression results out. Used by ONE thread (interpreters are not re-entrant).

    Args:
        options: Face options (detector, detection cadence and size, tracking, smoothing, model).
        lazy: Create the model and the detector on first use instead of now.

    Raises:
        ModelLoadError, ModelCardError: the expression model cannot be used (unless ``lazy``).
        ConfigError, ModelLoadError: the detector is misconfigured (unless ``lazy``).

    A detector whose library is missing (e.g. OpenCV for ``haar``) does not stop construction: face crops
    can still be classified, and detection raises :class:`~affectlite.errors.BackendNotInstalledError` with
    the install command. The crop margin is ``options.margin`` when set away from its default, otherwise the
    margin the model card was trained with (``crop_margin``).
    """

    def __init__(self, options: FaceOptions | None = None, *, lazy: bool = False) -> None:
        self.options = opts = options if options is not None else FaceOptions()
        if opts.detect_every < 1:
            raise InputError(f"face.detect_every must be >= 1, got {opts.detect_every}")
        if opts.detect_width < 0:
            raise InputError(f"face.detect_width must be >= 0 (0: no downscale), got {opts.detect_width}")
        if opts.max_faces < 1:
            raise InputError(f"face.max_faces must be >= 1, got {opts.max_faces}")
        if not 0.0 <= opts.margin <= 2.0:
            raise InputError(f"face.margin must be in 0..2, got {opts.margin}")
        self.tracker = IoUTracker(opts.track_iou, opts.track_expiry_s, opts.smoothing, max_tracks=opts.max_faces,
                                  min_hits=opts.track_min_hits)
        self._clf: FaceExpressionClassifier | None = None
        self._det: FaceDetector | None = None
        self._det_error: BackendNotInstalledError | None = None
        self._choice: DetectorChoice | None = None
        self._frames = 0
        self._detect_passes = 0
        if not lazy:
            self.classifier  # noqa: B018  (load now: a bad model fails here, not in the face thread)
            try:
                self.detector  # noqa: B018
            except BackendNotInstalledError as e:  # still usable on face crops; detection raises this
                self._det_error = e

    # ---------------------------------------------------------------------------------------- parts
    @property
    def classifier(self) -> FaceExpressionClassifier:
        """The expression classifier (loaded on first use)."""
        if self._clf is None:
            o = self.options
            self._clf = FaceExpressionClassifier.create(o.model_path, backend=o.backend, num_threads=o.num_threads,
                                                        delegates=o.delegates,
                                                        flip_tta=o.flip_tta)
        return self._clf

    @property
    def detector(self) -> FaceDetector:
        """The face detector (created on first use)."""
        if self._det_error is not None:
            raise self._det_error
        if self._det is None:
            from .detectors import create_detector

            o = self.options
            choice = self.detector_choice
            if choice.fallback:
                log.warning("face detector: %s", choice.reason)
            else:
                log.info("face detector: %s (%s)", choice.name, choice.reason)
            self._det = create_detector(choice.name, model_path=choice.model_path, score_threshold=o.score_threshold,
                                        min_size=8, num_threads=o.num_threads)
            if hasattr(self._det, "scale_factor"):  # Haar's image-pyramid step (other detectors have none)
                self._det.scale_factor = o.detect_scale_factor
        return self._det

    @property
    def detector_choice(self) -> DetectorChoice:
        """Which detector runs for ``options.detector`` and why (BlazeFace without its model: Haar)."""
        if self._choice is None:
            from .detectors import choose_detector

            self._choice = choose_detector(self.options.detector, self.options.detector_model)
        return self._choice

    @property
    def margin(self) -> float:
        """Crop margin used around detector boxes."""
        m = float(self.options.margin)
        if m == _default_of("margin"):
            return float(self.classifier.spec.crop_margin)
        return m

    def _downscale(self, img: np.ndarray) -> tuple[np.ndarray, float]:
        w = img.shape[1]
        dw = self.options.detect_width
        if dw <= 0 or w <= dw:
            return img, 1.0
        s = dw / w
        size = (max(8, round(img.shape[0] * s)), dw)
        try:
            import cv2

            small = cv2.resize(img, (size[1], size[0]), interpolation=cv2.INTER_AREA)
        except ImportError:
            from .preprocess import resize

            small = np.clip(np.rint(resize(img, size, "area")), 0, 255).astype(np.uint8)
        return small, img.shape[1] / small.shape[1]

    def crop(self, frame: np.ndarray, box: Sequence[float],
             landmarks: Sequence[Sequence[float]] = ()) -> np.ndarray:
        """The crop given to the expression model for one face (:func:`affectlite.preprocess.face_crop`).

        Eye-aligned when ``options.align`` is on and the detector gave keypoints (BlazeFace; at most twice the
        model's input side, grey for a grey model); otherwise the box with :attr:`margin`. The crop stays
        inside this process: results carry boxes and labels only.
        """
        spec = self.classifier.spec
        return face_crop(frame, box, landmarks, margin=self.margin, align=self.options.align,
                         max_size=2 * max(spec.size), grey=spec.channels == 1)

    def detect(self, frame: np.ndarray, *, small_faces: bool = True) -> list[Detection]:
        """Detections in frame pixels, filtered by score and ``min_face_size``, largest first.

        Args:
            frame: ``(H, W, 3)`` uint8 RGB frame.
            small_faces: Also run the detector's search for faces below one whole-frame pass's reach
                (BlazeFace tiles; other detectors always search every size).
        """
        img = check_image(frame)
        small, back = self._downscale(img)
        o = self.options
        if hasattr(self.detector, "tiles_enabled"):
            self.detector.tiles_enabled = bool(small_faces)
        if hasattr(self.detector, "min_size"):
            # faces smaller than min_face_size are dropped below anyway: do not search for them (the
            # cascade's cost grows quickly with the number of small scales)
            self.detector.min_size = max(8, int(o.min_face_size / back * 0.9))
        out = []
        for d in self.detector.detect(small):
            full = d.scaled(back) if back != 1.0 else d
            if full.score < o.score_threshold or min(full.w, full.h) < o.min_face_size:
                continue
            out.append(full)
        out.sort(key=lambda d: -(d.w * d.h))
        return out

    def _small_face_pass(self, height: int, width: int) -> bool:
        """Live video: whether this detection pass runs the detector's small-face search (BlazeFace tiles):
        every ``small_face_every``-th pass, and every pass while a tracked face is small enough to need it."""
        n = self._detect_passes
        self._detect_passes += 1
        det = self.detector
        reliable = float(det.reliable_size(height, width)) if hasattr(det, "reliable_size") else 0.0
        small_tracked = any(min(t.box.w, t.box.h) < reliable for t in self.tracker.tracks)
        return small_tracked or n % self.options.small_face_every == 0

    # ------------------------------------------------------------------------------------ frames
    def process(self, frame: np.ndarray, timestamp_ns: int) -> tuple[FaceResult, ...]:
        """Analyse one video frame.

        Args:
            frame: ``(H, W, 3)`` uint8 RGB frame.
            timestamp_ns: Capture time (``time.monotonic_ns()``); drives tracking expiry and smoothing.

        Returns:
            One :class:`FaceResult` per tracked face (at most ``max_faces``, largest first); ``()`` if none.

        Raises:
            InputError: the frame has the wrong shape or dtype.
        """
        img = check_image(frame)
        detect_now = self._frames % self.options.detect_every == 0
        self._frames += 1
        if detect_now:
            small = self._small_face_pass(img.shape[0], img.shape[1])
            tracks = self.tracker.update(self.detect(img, small_faces=small), int(timestamp_ns))
        else:
            tracks = self.tracker.predict(int(timestamp_ns))
        tracks = tracks[: self.options.max_faces]
        if not tracks:
            return ()
        crops = [self.crop(img, (t.box.x, t.box.y, t.box.w, t.box.h), t.landmarks) for t in tracks]
        probs = self.classifier.classify_crops(crops)
        h, w = img.shape[:2]
        return tuple(FaceResult(track_id=t.track_id, box=_clip_box(t.box, w, h), detection_score=float(t.score),
                                probabilities=self.tracker.smooth(t, p), timestamp_ns=int(timestamp_ns))
                     for t, p in zip(tracks, probs, strict=True))

    def is_face_crop(self, image: np.ndarray) -> bool:
        """Whether an image is small enough to be a face crop already (at most twice the model input)."""
        arr = np.asarray(image)
        if arr.ndim < 2:
            return False
        side = max(self.classifier.spec.size)
        return bool(max(int(arr.shape[0]), int(arr.shape[1])) <= 2 * side)

    def classify_image(self, image: np.ndarray) -> tuple[FaceResult, ...]:
        """Classify one still image (stateless: no tracking, no smoothing).

        An image no larger than twice the model input (e.g. a 48x48 FER2013 crop) is taken as a face crop
        and classified directly (box = whole image, detection score 1). Otherwise faces are detected and each
        one (at most ``max_faces``, largest first) is classified; track ids are 0, 1, ... in that order.

        Args:
            image: ``(H, W, 3)`` RGB or ``(H, W)`` grey, uint8.

        Returns:
            One result per face; ``()`` when no face is found.

        Raises:
            InputError: wrong shape or dtype.
        """
        arr = np.asarray(image)
        if arr.ndim not in (2, 3):
            raise InputError(f"image must be HxW grey or HxWx3 RGB, got shape {list(arr.shape)}")
        h, w = arr.shape[:2]
        if self.is_face_crop(arr):
            probs = self.classifier.classify_crops([arr])[0]
            return (FaceResult(0, Box(0.0, 0.0, float(w), float(h)), 1.0, probs, 0),)
        img = check_image(arr)
        dets = self.detect(img)[: self.options.max_faces]
        if not dets:
            return ()
        crops = [self.crop(img, (d.x, d.y, d.w, d.h), d.landmarks) for d in dets]
        probs_all = self.classifier.classify_crops(crops)
        return tuple(FaceResult(i, _clip_box(Box(d.x, d.y, d.w, d.h), w, h), float(d.score), p, 0)
                     for i, (d, p) in enumerate(zip(dets, probs_all, strict=True)))

    def reset(self) -> None:
        """Forget tracks and the frame counter (e.g. after a camera reconnect)."""
        self.tracker.reset()
        self._frames = 0
        self._detect_passes = 0

    def close(self) -> None:
        """Release the detector and the interpreter."""
        if self._det is not None:
            self._det.close()
            self._det = None
        if self._clf is not None:
            self._clf.close()
            self._clf = None


def _clip_box(b: Box, w: int, h: int) -> Box:
    x0, y0 = min(max(b.x, 0.0), float(w)), min(max(b.y, 0.0), float(h))
    x1, y1 = min(max(b.x + b.w, 0.0), float(w)), min(max(b.y + b.h, 0.0), float(h))
    return Box(x0, y0, x1 - x0, y1 - y0)


# ------------------------------------------------------------------------------------------ evaluation
def _read_image(path: Path) -> np.ndarray:
    from .detectors.base import import_cv2

    cv2 = import_cv2("reading image files")
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise InputError(f"cannot decode image {path}")
    if img.dtype != np.uint8:
        img = cv2.convertScaleAbs(img, alpha=255.0 / max(1.0, float(img.max())))
    if img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    elif img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    arr: np.ndarray = img
    return arr


def _list_images(data_dir: Path) -> tuple[list[tuple[Path, int]], dict[str, int]]:
    items: list[tuple[Path, int]] = []
    skipped: dict[str, int] = {}
    for sub in sorted(p for p in data_dir.iterdir() if p.is_dir()):
        files = [f for f in sorted(sub.rglob("*")) if f.suffix.lower() in _IMAGE_EXT and f.is_file()]
        lab = canonical_label(sub.name)
        if lab is None:
            if files:
                log.warning("skipping %d images in %s: label %r is not in %s", len(files), sub, sub.name,
                            ", ".join(LABELS))
                skipped[sub.name] = len(files)
            continue
        items.extend((f, LABELS.index(lab)) for f in files)
    return items, skipped


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int]) -> dict[str, Any]:
    """Accuracy, macro F1 (over labels present in ``y_true``), per-class recall and the confusion matrix."""
    k = len(LABELS)
    cm = np.zeros((k, k), dtype=np.int64)
    for t, p in zip(y_true, y_pred, strict=True):
        cm[int(t), int(p)] += 1
    n = int(cm.sum())
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    recall: dict[str, float] = {}
    f1s: list[float] = []
    for i, lab in enumerate(LABELS):
        if support[i] == 0:
            continue
        r = cm[i, i] / support[i]
        prec = cm[i, i] / predicted[i] if predicted[i] else 0.0
        recall[lab] = round(float(r), 4)
        f1s.append(float(2 * prec * r / (prec + r)) if prec + r > 0 else 0.0)
    return {
        "n": n,
        "accuracy": round(float(np.trace(cm) / n), 4) if n else 0.0,
        "macro_f1": round(float(np.mean(f1s)), 4) if f1s else 0.0,
        "per_class_recall": recall,
        "confusion_matrix": cm.tolist(),
        "labels": list(LABELS),
    }


def evaluate_face(model_path: str | os.PathLike[str] | None, data_dir: str | os.PathLike[str], *,
                  limit: int | None = None, backend: str = "auto", num_threads: int | None = None,
                  flip_tta: bool = False) -> dict[str, Any]:
    """Evaluate a face expression model on a folder of labelled face crops.

    The folder holds one sub-folder per label (``angry/``, ``happiness/``, ``Surprised/``...); names are
    matched to the common labels through :func:`affectlite.labels.canonical_label`. Folders with labels
    outside the common set (e.g. ``contempt``) are skipped with a warning. Every image is classified as a
    face crop (no detection), preprocessed as the model card says.

    Args:
        model_path: The ``.tflite`` (``None``: the shipped model).
        data_dir: The labelled folder.
        limit: Evaluate at most this many images (a fixed, seeded random subset).
        backend: Interpreter backend.
        num_threads: Interpreter threads.
        flip_tta: Average with the mirrored image (see :meth:`FaceExpressionClassifier.create`).

    Returns:
        JSON-ready dict: ``n``, ``accuracy``, ``macro_f1``, ``per_class_recall``, ``confusion_matrix``
        (rows true, columns predicted, both in ``labels`` order), ``labels``, ``skipped``, ``model``,
        ``ms_per_image``.

    Raises:
        InputError: the folder does not exist or holds no usable images.
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise InputError(f"--data {root} is not a folder; expected one sub-folder of images per label")
    items, skipped = _list_images(root)
    if not items:
        raise InputError(f"no labelled images under {root}: expected sub-folders named after labels "
                         f"({', '.join(LABELS)} or synonyms) holding .jpg/.png files")
    if limit is not None and 0 < limit < len(items):
        idx = np.random.default_rng(0).permutation(len(items))[:limit]
        items = [items[i] for i in sorted(idx)]
    clf = FaceExpressionClassifier.create(model_path, backend=backend, num_threads=num_threads, flip_tta=flip_tta)
    y_true: list[int] = []
    y_pred: list[int] = []
    t0 = time.perf_counter()
    for f, y in items:
        try:
            img = _read_image(f)
        except InputError as e:
            log.warning("%s", e)
            continue
        p = clf.classify_crops([img])[0]
        y_true.append(y)
        y_pred.append(int(np.argmax(p)))
    dt = time.perf_counter() - t0
    res = classification_metrics(y_true, y_pred)
    res["skipped"] = skipped
    res["model"] = {"name": clf.card.name, "version": clf.card.version,
                    "path": str(model_path) if model_path is not None else str(DEFAULT_FACE_MODEL)}
    res["ms_per_image"] = round(1000.0 * dt / max(1, len(y_true)), 3)
    res["flip_tta"] = bool(flip_tta)
    clf.close()
    return res


def eval_face_main(args: argparse.Namespace) -> int:
    """CLI hook of ``affectlite eval face --data DIR [--model PATH] [--limit N] [--flip-tta]``: prints the JSON."""
    res = evaluate_face(getattr(args, "model", None), args.data, limit=getattr(args, "limit", None),
                        flip_tta=bool(getattr(args, "flip_tta", False)))
    print(json.dumps(res, indent=2))
    return 0 if res["n"] > 0 and not math.isnan(res["accuracy"]) else 1
