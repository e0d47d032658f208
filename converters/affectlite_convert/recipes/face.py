"""Recipe: train the face expression classifier on FER2013, quantize it to int8, write its card.

The shipped model (``affectlite-face-ferplus`` 2.0.0) is trained on the FER+ votes (``--targets ferplus-soft``,
:mod:`.face_ferplus`) with runtime histogram equalisation (``--equalize``, the default with FER+ targets; the
card carries ``"equalize": "histogram"``). Its card's ``training.recipe`` holds the exact commands (three: the
run was shortened and then extended to fit a shared 2-core machine)::

    affectlite train face --data ../shared/datasets/fer2013 --out runs/face --targets ferplus-soft --epochs 14

The previous model (1.0.0, FER2013 folder labels, no equalisation; the default ``--targets fer2013``) came
from (two commands: shortened at epoch 9 from a 40- to a 32-epoch cosine schedule)::

    affectlite train face --data ../shared/datasets/fer2013 --out runs/face --width 20 --epochs 40 --stop-after 9
    affectlite train face --data ../shared/datasets/fer2013 --out runs/face --width 20 --epochs 32

or ``python -m affectlite_convert.recipes.face --data ... --out ...``. The notes on SWA, distillation and the
other architectures below concern the FER2013-label model (``--teacher``, ``--swa-epochs`` and ``--align``
work with ``--targets fer2013 --no-equalize`` only).

Steps:

1. Decode every JPEG of ``train/`` and ``public_test/`` once into a uint8 numpy cache (``--cache``,
   default ``OUT/cache``); folder names go through :func:`affectlite.labels.canonical_label` and the model
   outputs follow :data:`affectlite.labels.LABELS`.
2. Train a compact VGG-style CNN (48x48 grey input; width 20: 0.46 M parameters, ~37 M multiply-adds) with on-the-fly
   augmentation (horizontal flip, rotation +-10 deg, zoom 0.9-1.1, shift +-3 px, brightness/contrast),
   square-root inverse-frequency class weights, label smoothing 0.1, AdamW (weight decay 5e-4) with a
   half-epoch warm-up and cosine decay, batch 128, fixed seed. After each epoch the BatchNorm statistics are
   recomputed exactly on 1,024 un-augmented training images (:func:`recalibrate_bn`), the model is scored on
   ``public_test`` and checkpointed (``OUT/ckpt/last.keras`` + ``OUT/state.json`` + this log); rerunning
   the same command resumes, and a rerun with another ``--epochs`` re-anneals from the current learning
   rate to the new end. The best ``public_test`` epoch is kept as ``OUT/best.keras``.
   Optional, after a finished run: ``--swa-epochs N --swa-lr LR`` continues at a constant learning rate and
   averages the weights of those N epochs (:func:`swa`); the mean replaces ``best.keras`` only if it scores
   higher. (On the shipped run, 4 epochs at 5e-4 gave 65.1-65.2% against 65.4%: not used. A 44-epoch run of
   the same recipe also plateaued at 65.4%.)
   Optional: knowledge distillation (:func:`distil`, ``--teacher T1 --teacher T2 ...`` [``--init MODEL``])
   trains a model from scratch at ``--width`` (or fine-tunes ``--init``) towards the mean predictions of
   several trained models on each image and its mirror image. (Tried: the 44-epoch run's best, fine-tuned
   10 epochs at lr 1e-3 towards three runs of this recipe - together 66.6% on public_test with mirror
   averaging - ended at 65.2%, best epoch 65.8% amid +-0.4 epoch-to-epoch noise; from scratch, 26 epochs at
   lr 3e-3 towards the same teachers, it learned faster but ended at 65.4%: no real gain, not shipped.
   With ``--stage5 256`` - 0.83 M parameters, ~+7% latency - the same from-scratch distillation reached 65.9%
   float / 65.8% int8 (best of 26 epochs; +0.5 over the shipped model, McNemar p ~ 0.5; 5 more epochs of
   distillation fine-tuning at lr 5e-4: 65.95% float / 65.7% int8): not shipped, the larger, slower file is
   not clearly better. ``--arch dsr --stage5 512`` - depthwise-separable residual blocks with twice the
   channels in stages 3-4, 0.42 M parameters, ~27 M multiply-adds, int8 1.31 ms against 1.53 ms for the
   5-stage model in the converter's measurement - with the same distillation: it fitted more slowly (training
   accuracy 72% against 76% at the end) and reached 64.75% float / 64.3% int8 (507 KB): 1 point below the
   shipped model (McNemar p ~ 0.13), not shipped. A second generation of distillation - the 5-stage student
   (``--stage5 256``, 24 epochs) towards every distinct run of ours at >= 65% (9 models, including the
   distilled students; 67.1% on public_test together with mirror averaging) - followed a slightly higher
   curve mid-run but ended at the same level: best 65.4% float, mirror averaging 65.1%, weights of epochs
   19-24 averaged 65.2%; not converted.)
3. Quantize the best model to int8 with :func:`affectlite_convert.convert` (representative set: 100
   training images per class, preprocessed by :mod:`affectlite.preprocess`; validation on ``public_test``,
   with FER+ targets on its FER+ majority set) and write ``OUT/face.tflite`` + ``OUT/face.card.json``
   (+ ``OUT/report/``); with FER+ targets the card also gets ``metrics.ferplus`` (:func:`add_ferplus_metrics`:
   confusion matrix, original-label accuracy, contrast table).

The input preprocessing the model expects is written to its card and implemented once in
:mod:`affectlite.preprocess` (the runtime uses the same code on camera crops).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from affectlite._io import atomic_write_bytes, atomic_write_text
from affectlite.labels import LABELS, canonical_label

__all__ = ["IMAGE_SIZE", "PREPROCESSING", "TARGETS", "add_ferplus_metrics", "align_crops", "build_model",
           "equalize_images", "load_data", "load_split", "main", "preprocessing", "train"]

IMAGE_SIZE = 48
#: Channels of stages 1-4 of each architecture family of :func:`build_model`, in multiples of ``width``.
_STAGE_WIDTHS = {"vgg": (1, 2, 4, 8), "dsr": (1, 2, 8, 16)}
#: Architecture families of :func:`build_model`.
ARCHS = tuple(_STAGE_WIDTHS)
#: Mean and standard deviation of the FER2013 training pixels after scaling to [0, 1].
PIX_MEAN = 0.5077
PIX_STD = 0.2550
#: The preprocessing spec written to the card (interpreted by :mod:`affectlite.preprocess`).
PREPROCESSING: dict[str, Any] = {
    "color": "grey",
    "size": [IMAGE_SIZE, IMAGE_SIZE],
    "scale": 1.0 / 255.0,
    "mean": PIX_MEAN,
    "std": PIX_STD,
    "resize": "area",
    "crop_margin": 0.1,
    "layout": "NHWC",
}
_IMAGE_EXT = (".jpg", ".jpeg", ".png", ".bmp")
#: Training targets (``--targets``): FER2013's folder labels, or FER+ votes (:mod:`.face_ferplus`) as soft
#: distributions or majority labels.
TARGETS = ("fer2013", "ferplus-soft", "ferplus-majority")


def preprocessing(equalize: bool = False) -> dict[str, Any]:
    """The card's preprocessing spec: :data:`PREPROCESSING`, plus ``"equalize": "histogram"`` if ``equalize``."""
    return {**PREPROCESSING, **({"equalize": "histogram"} if equalize else {})}


def equalize_images(x: np.ndarray) -> np.ndarray:
    """Histogram-equalise each ``(N, H, W)`` uint8 image (the runtime's :func:`affectlite.preprocess.equalize_hist`)."""
    from affectlite.preprocess import equalize_hist

    return np.stack([equalize_hist(im) for im in x]) if len(x) else x.copy()


# ----------------------------------------------------------------------------------------------- data
def load_split(data_dir: str | os.PathLike[str], split: str,
               cache_dir: str | os.PathLike[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Load one FER2013-style split (``DIR/split/<label>/*.jpg``) as uint8 images and label indices.

    Args:
        data_dir: The dataset root (e.g. ``../shared/datasets/fer2013``).
        split: Sub-folder, e.g. ``"train"`` or ``"public_test"``.
        cache_dir: Where to keep the decoded ``.npz`` cache (never inside the dataset folder).

    Returns:
        ``(x, y)``: ``x`` of shape (N, 48, 48) uint8, ``y`` of shape (N,) int64 indices into ``LABELS``.
    """
    import cv2  # the converter environment has OpenCV (also an SDK extra)

    root = Path(data_dir) / split
    if not root.is_dir():
        raise FileNotFoundError(f"no folder {root}: --data must contain '{split}/<label>/*.jpg'")
    cache = None
    if cache_dir is not None:
        cache = Path(cache_dir) / f"fer_{split}_{IMAGE_SIZE}.npz"
        if cache.is_file():
            with np.load(cache) as z:
                return z["x"], z["y"].astype(np.int64)
    xs: list[np.ndarray] = []
    ys: list[int] = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        lab = canonical_label(sub.name)
        if lab is None:
            print(f"warning: skipping folder {sub} (label {sub.name!r} is not in {LABELS})", file=sys.stderr)
            continue
        for f in sorted(sub.iterdir()):
            if f.suffix.lower() not in _IMAGE_EXT:
                continue
            im = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)
            if im is None:
                print(f"warning: cannot decode {f}", file=sys.stderr)
                continue
            if im.shape != (IMAGE_SIZE, IMAGE_SIZE):
                im = cv2.resize(im, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_AREA)
            xs.append(im)
            ys.append(LABELS.index(lab))
    if not xs:
        raise FileNotFoundError(f"no images under {root}")
    x = np.stack(xs).astype(np.uint8)
    y = np.asarray(ys, dtype=np.int64)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npz")
        np.savez(tmp, x=x, y=y)
        os.replace(tmp, cache)
    return x, y


def align_crops(images: np.ndarray, detector: Any = None, *, pad: float = 0.5,
                upscale: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Eye-align face crops with the runtime's own code (:func:`affectlite.preprocess.face_crop`).

    Each crop is padded with grey (``pad`` of its side on every side) and enlarged ``upscale`` times so that
    BlazeFace sees a whole face (the settings under which the canonical eye positions were measured, see
    :data:`affectlite.preprocess.ALIGN_EYE_Y`); its keypoints are mapped back to the crop, which is then cut
    by ``face_crop(..., align=True)`` with the runtime's arguments for a grey 48-px model (``FaceAnalyzer.crop``)
    and reduced to ``IMAGE_SIZE`` with the runtime's area resize and
    rounding, so a training image is exactly what :func:`affectlite.preprocess.prepare_face` would compute
    before normalising. Crops without a detection are kept as they are.

    Args:
        images: ``(N, H, W)`` uint8 grey crops.
        detector: A face detector (default: BlazeFace, score threshold 0.5).
        pad: Grey border added before detection, fraction of the side.
        upscale: Enlargement before detection.

    Returns:
        ``(aligned, found)``: ``(N, IMAGE_SIZE, IMAGE_SIZE)`` uint8 and a bool mask of crops that had keypoints.
    """
    import cv2

    from affectlite.detectors import create_detector
    from affectlite.preprocess import face_crop, resize, to_grey

    det = detector if detector is not None else create_detector("blazeface", score_threshold=0.5, min_size=1)
    if hasattr(det, "tiles_enabled"):  # the enlarged crop is one whole face: no small-face tiles (17x the cost)
        det.tiles_enabled = False
    out = np.empty((len(images), IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    found = np.zeros(len(images), dtype=bool)
    margin = float(PREPROCESSING["crop_margin"])
    for i, im in enumerate(images):
        g = np.asarray(im, dtype=np.uint8)
        h, w = g.shape[:2]
        p = round(pad * max(h, w))
        big = cv2.copyMakeBorder(g, p, p, p, p, cv2.BORDER_CONSTANT, value=128)
        big = cv2.resize(big, (big.shape[1] * upscale, big.shape[0] * upscale), interpolation=cv2.INTER_CUBIC)
        dets = [d for d in det.detect(np.repeat(big[:, :, None], 3, axis=2)) if len(d.landmarks) >= 2]
        if dets:
            d = max(dets, key=lambda d: d.score)
            back = [(x / upscale - p, y / upscale - p) for x, y in d.landmarks]
            box = (d.x / upscale - p, d.y / upscale - p, d.w / upscale, d.h / upscale)
            crop = face_crop(g, box, back, margin=margin, align=True, max_size=2 * IMAGE_SIZE, grey=True)
            found[i] = True
        else:
            crop = g
        out[i] = np.clip(np.rint(resize(to_grey(crop), (IMAGE_SIZE, IMAGE_SIZE), "area")), 0, 255).astype(np.uint8)
    if detector is None:
        det.close()
    return out, found


def aligned_cache(data_dir: str, cache_dir: str) -> str:
    """Write eye-aligned copies of the train and public_test splits where :func:`load_split` finds them.

    Returns the cache folder to pass as ``cache_dir`` to every stage (training, distillation, averaging and
    the int8 calibration then all see aligned crops, like the runtime with ``face.align: true``).
    """
    dest = Path(cache_dir) / "aligned"
    for split in ("train", "public_test"):
        f = dest / f"fer_{split}_{IMAGE_SIZE}.npz"
        if f.is_file():
            continue
        x, y = load_split(data_dir, split, cache_dir)
        xa, found = align_crops(x)
        print(f"aligned {split}: {int(found.sum())} of {len(found)} crops had eye keypoints", flush=True)
        dest.mkdir(parents=True, exist_ok=True)
        tmp = f.with_suffix(".tmp.npz")
        np.savez(tmp, x=xa, y=y)
        os.replace(tmp, f)
    return str(dest)


def normalise(x_uint8: Any) -> Any:
    """uint8 grey pixels -> the float model input (same arithmetic as ``affectlite.preprocess``)."""
    return (x_uint8 * (1.0 / 255.0) - PIX_MEAN) / PIX_STD


# ---------------------------------------------------------------------------------------------- model
def build_model(width: int = 16, dropout: float = 0.2, weight_decay: float = 0.0, stage5: int = 0,
                arch: str = "vgg") -> Any:
    """A compact VGG-style CNN: 48x48x1 normalised grey -> 7 softmax probabilities (``LABELS`` order).

    Args:
        width: Channels of the first stage (stages use width, 2w, 4w, 8w).
        dropout: Dropout before the classifier.
        weight_decay: Unused (AdamW applies decoupled weight decay); kept for experiments.
        stage5: Channels of an optional fifth stage (one 3x3 convolution after a further 2x2 pooling, at 3x3
            resolution); 0 for none. Parameters are cheap there in multiply-adds: 256 channels at width 20 add
            0.37 M parameters but only 3.3 M multiply-adds (~+7% latency).
        arch: ``"vgg"`` (the shipped family: two plain 3x3 convolutions per stage) or ``"dsr"``: stages 1-2
            as in ``"vgg"``, then depthwise-separable blocks (3x3 depthwise + 1x1 pointwise, each followed
            by BatchNorm + ReLU, a residual connection where the channels match) - three at 12x12 with 8w
            channels and two at 6x6 with 16w, and the fifth stage (if any) as one such block. At width 20 this
            buys twice the channels of ``"vgg"`` in stages 3-4 for fewer multiply-adds (int8 ~12% faster).

    Returns:
        An uncompiled ``keras.Model``.
    """
    import keras
    from keras import layers

    del weight_decay
    if stage5 < 0:
        raise ValueError(f"stage5 must be >= 0 (0: no fifth stage), got {stage5}")
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {ARCHS}, got {arch!r}")

    def cbr(x: Any, ch: int, name: str) -> Any:
        x = layers.Conv2D(ch, 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
        x = layers.BatchNormalization(name=f"{name}_bn")(x)
        return layers.ReLU(name=f"{name}_relu")(x)

    def dsr(x: Any, ch: int, name: str) -> Any:
        y = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"{name}_dw")(x)
        y = layers.BatchNormalization(name=f"{name}_dwbn")(y)
        y = layers.ReLU(name=f"{name}_dwrelu")(y)
        y = layers.Conv2D(ch, 1, use_bias=False, name=f"{name}_pw")(y)
        y = layers.BatchNormalization(name=f"{name}_bn")(y)
        if x.shape[-1] == ch:
            y = layers.Add(name=f"{name}_add")([x, y])
        return layers.ReLU(name=f"{name}_relu")(y)

    inp = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 1), name="image")
    w = width
    c3, c4 = (m * w for m in _STAGE_WIDTHS[arch][2:])
    x = cbr(inp, w, "s1a")                               # 48x48
    x = layers.MaxPooling2D(2, name="p1")(x)             # 24
    x = cbr(x, 2 * w, "s2a")
    x = cbr(x, 2 * w, "s2b")
    x = layers.MaxPooling2D(2, name="p2")(x)             # 12
    block, (n3, n4) = (dsr, (3, 2)) if arch == "dsr" else (cbr, (2, 2))  # blocks per stage at 12x12, 6x6
    for k in "abc"[:n3]:
        x = block(x, c3, f"s3{k}")
    x = layers.MaxPooling2D(2, name="p3")(x)             # 6
    for k in "abc"[:n4]:
        x = block(x, c4, f"s4{k}")
    if stage5:
        x = layers.MaxPooling2D(2, name="p4")(x)         # 3
        x = block(x, stage5, "s5a")
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(dropout, name="drop")(x)
    x = layers.Dense(len(LABELS), name="logits")(x)
    out = layers.Softmax(name="probs")(x)
    return keras.Model(inp, out, name="affectlite_face")


def _augment_batch(x: Any, seed_gen: Any, erase_prob: float = 0.0, photometric: bool = True) -> Any:
    """Random affine (flip, rotation, zoom, shift) + brightness/contrast + erasing on a float batch.

    ``x``: (B, 48, 48, 1) float32 in [0, 255]. Returns the same shape, still in [0, 255].
    ``photometric=False`` leaves brightness and contrast alone (models whose runtime equalises the histogram
    never see other contrasts; the random draws are made either way).
    """
    import tensorflow as tf

    b = tf.shape(x)[0]
    s = float(IMAGE_SIZE)
    c = (s - 1.0) / 2.0

    def u(lo: float, hi: float) -> Any:
        return seed_gen.uniform([b], lo, hi)

    ang = u(-10.0, 10.0) * (math.pi / 180.0)
    zoom = u(0.9, 1.1)
    tx = u(-3.0, 3.0)
    ty = u(-3.0, 3.0)
    flip = tf.cast(seed_gen.uniform([b]) < 0.5, tf.float32) * -2.0 + 1.0  # -1 (flip) or 1
    cos = tf.cos(ang) / zoom
    sin = tf.sin(ang) / zoom
    # output (xo, yo) -> input: xi = a0*xo + a1*yo + a2 ; yi = b0*xo + b1*yo + b2 (about the centre)
    a0 = cos * flip
    a1 = -sin
    b0 = sin * flip
    b1 = cos
    a2 = c - a0 * c - a1 * c + tx
    b2 = c - b0 * c - b1 * c + ty
    zeros = tf.zeros_like(a0)
    mat = tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
    x = tf.raw_ops.ImageProjectiveTransformV3(
        images=x, transforms=mat, output_shape=tf.constant([IMAGE_SIZE, IMAGE_SIZE]),
        fill_value=0.0, interpolation="BILINEAR", fill_mode="REFLECT")
    # brightness / contrast
    mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
    contrast = tf.reshape(u(0.7, 1.3), [-1, 1, 1, 1])
    bright = tf.reshape(u(-25.0, 25.0), [-1, 1, 1, 1])
    if photometric:
        x = (x - mean) * contrast + mean + bright
    # random erasing (one rectangle, in a fraction erase_prob of the images)
    ey = tf.reshape(u(0.0, s), [-1, 1, 1, 1])
    ex = tf.reshape(u(0.0, s), [-1, 1, 1, 1])
    eh = tf.reshape(u(6.0, 18.0), [-1, 1, 1, 1])
    ew = tf.reshape(u(6.0, 18.0), [-1, 1, 1, 1])
    on = tf.reshape(tf.cast(seed_gen.uniform([b]) < erase_prob, tf.float32), [-1, 1, 1, 1])
    grid = tf.range(s, dtype=tf.float32)
    gy = tf.reshape(grid, [1, -1, 1, 1])
    gx = tf.reshape(grid, [1, 1, -1, 1])
    inside = tf.cast((gy >= ey) & (gy < ey + eh) & (gx >= ex) & (gx < ex + ew), tf.float32) * on
    x = x * (1.0 - inside) + mean * inside
    return tf.clip_by_value(x, 0.0, 255.0)


def recalibrate_bn(model: Any, x: np.ndarray, batch_size: int = 256) -> None:
    """Set every BatchNormalization's moving mean/variance to the exact statistics of ``x``.

    Layer by layer in inference mode, on un-augmented (runtime-like) inputs. Early in training at a high
    learning rate the exponential moving averages lag far behind the weights; this makes evaluation (and the
    int8 calibration) use statistics that match the current weights.
    """
    import keras

    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for bn in bns:
        sub = keras.Model(model.inputs, bn.input)
        acts = sub.predict(x, batch_size=batch_size, verbose=0)
        axes = tuple(range(acts.ndim - 1))
        bn.moving_mean.assign(acts.mean(axis=axes).astype(np.float32))
        bn.moving_variance.assign(acts.var(axis=axes).astype(np.float32))


def _class_weights(y: np.ndarray, power: float = 0.5) -> np.ndarray:
    counts = np.bincount(y, minlength=len(LABELS)).astype(np.float64)
    w = (counts.sum() / np.maximum(counts, 1.0)) ** power
    w = w / float((w * counts).sum() / counts.sum())  # mean weight over samples = 1
    out: np.ndarray = w.astype(np.float32)
    return out


# ---------------------------------------------------------------------------------------------- train
def _resumed_cosine_class() -> Any:
    import keras

    @keras.saving.register_keras_serializable("affectlite")
    class ResumedCosine(keras.optimizers.schedules.LearningRateSchedule):  # type: ignore[misc]
        """Cosine from ``lr0`` at ``start`` to ``lr_end`` at ``end`` (used when a run's length changes)."""

        def __init__(self, lr0: float, start: int, end: int, lr_end: float) -> None:
            self.lr0, self.start, self.end, self.lr_end = float(lr0), int(start), int(end), float(lr_end)

        def __call__(self, step: Any) -> Any:
            f = keras.ops.clip((keras.ops.cast(step, "float32") - self.start) / max(1, self.end - self.start),
                               0.0, 1.0)
            return self.lr_end + (self.lr0 - self.lr_end) * 0.5 * (1.0 + keras.ops.cos(math.pi * f))

        def get_config(self) -> dict[str, Any]:
            return {"lr0": self.lr0, "start": self.start, "end": self.end, "lr_end": self.lr_end}

    return ResumedCosine


def _progress_callback() -> Any:
    import keras

    class Progress(keras.callbacks.Callback):  # type: ignore[misc]
        """Prints a line every 100 training steps (time, loss) so long runs can be watched."""

        def __init__(self, t0: float) -> None:
            super().__init__()
            self.t0 = t0

        def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            if (batch + 1) % 100 == 0:
                loss = float((logs or {}).get("loss", float("nan")))
                print(f"  step {batch + 1} {time.time() - self.t0:.0f}s loss {loss:.4f}", flush=True)

    return Progress


def _train_data(xtr: np.ndarray, ytr: np.ndarray, *, seed: int, batch_size: int, seed_gen: Any,
                soft: np.ndarray | None = None, alpha: float = 1.0, weights: np.ndarray | None = None,
                photometric: bool = True) -> Any:
    """``epoch -> tf.data.Dataset`` of augmented, normalised, class-weighted training batches.

    With ``soft`` (per-image teacher probabilities, :func:`teacher_targets`, or FER+ vote distributions)
    the target of each image is ``alpha * one_hot + (1 - alpha) * soft``; otherwise the one-hot label.
    ``weights``: per-image loss weights replacing the class weight of ``ytr``. ``photometric``: see
    :func:`_augment_batch`.
    """
    import tensorflow as tf

    cw = _class_weights(ytr)
    n_cls = len(LABELS)
    soft_arr = np.zeros((len(ytr), n_cls), np.float32) if soft is None else np.asarray(soft, np.float32)
    w_arr = cw[ytr] if weights is None else np.asarray(weights, np.float32)
    a = 1.0 if soft is None else float(alpha)

    def make_train(epoch: int) -> Any:
        ds = tf.data.Dataset.from_tensor_slices((xtr, ytr, soft_arr, w_arr))
        ds = ds.shuffle(len(ytr), seed=seed * 7919 + epoch, reshuffle_each_iteration=False)
        ds = ds.batch(batch_size, drop_remainder=False)

        def prep(xb: Any, yb: Any, sb: Any, wb: Any) -> Any:
            xf = tf.cast(xb[..., None], tf.float32)
            xf = _augment_batch(xf, seed_gen, photometric=photometric)
            yo = a * tf.one_hot(yb, n_cls) + (1.0 - a) * sb
            return normalise(xf), yo, wb

        return ds.map(prep, num_parallel_calls=1).prefetch(2)

    return make_train


def load_data(data_dir: str, cache: str, targets: str = "fer2013", equalize: bool = False) -> dict[str, Any]:
    """Training and validation arrays for ``targets`` (see :data:`TARGETS` and :mod:`.face_ferplus`).

    Returns a dict: ``xtr`` (uint8 images to train on), ``ytr`` (their hard label: the folder label, the FER+
    majority, or the top of the vote distribution), ``soft`` and ``weights`` (FER+ soft targets and per-image
    loss weights = share of valid votes x the class weight of the distribution; ``None`` otherwise),
    ``xva``/``yva`` (validation: all of public_test with folder labels, or the FER+ majority set of
    :func:`.face_ferplus.validation_mask`), ``xva_all``/``yva_orig``/``val_mask`` (all of public_test, its
    folder labels, and which rows are in the validation set). With ``equalize`` every image is
    histogram-equalised as the runtime does (:func:`equalize_images`).
    """
    if targets not in TARGETS:
        raise SystemExit(f"--targets must be one of {', '.join(TARGETS)}, got {targets!r}")
    xtr, ytr = load_split(data_dir, "train", cache)
    xva, yva = load_split(data_dir, "public_test", cache)
    if equalize:
        xtr, xva = equalize_images(xtr), equalize_images(xva)
    d: dict[str, Any] = {"xtr": xtr, "ytr": ytr, "soft": None, "weights": None, "xva": xva, "yva": yva,
                         "xva_all": xva, "yva_orig": yva, "val_mask": np.ones(len(yva), bool)}
    if targets == "fer2013":
        return d
    from . import face_ferplus as fp

    vtr = fp.load_votes(data_dir, "train", len(ytr))
    vva = fp.load_votes(data_dir, "public_test", len(yva))
    mask = fp.validation_mask(vva, vtr, load_split(data_dir, "public_test", cache)[0],
                              load_split(data_dir, "train", cache)[0])
    d.update(xva=xva[mask], yva=fp.majority_labels(vva)[mask], val_mask=mask)
    if targets == "ferplus-majority":
        maj = fp.majority_labels(vtr)
        keep = maj >= 0
        d.update(xtr=xtr[keep], ytr=maj[keep])
    else:
        soft, share, keep = fp.soft_targets(vtr)
        soft, share = soft[keep], share[keep]
        counts = soft.sum(axis=0).astype(np.float64)
        cw = (counts.sum() / np.maximum(counts, 1.0)) ** 0.5
        cw = cw / float((cw * counts).sum() / counts.sum())  # mean weight over images = 1, as _class_weights
        d.update(xtr=xtr[keep], ytr=soft.argmax(axis=1).astype(np.int64), soft=soft,
                 weights=(share * (soft @ cw)).astype(np.float32))
    return d


def _bn_calibration_images(xtr: np.ndarray, seed: int) -> Any:
    """1,024 un-augmented training images (fixed by the seed) for :func:`recalibrate_bn`."""
    cal_idx = np.random.default_rng(seed).choice(len(xtr), size=min(1024, len(xtr)), replace=False)
    return normalise(xtr[np.sort(cal_idx)][..., None].astype(np.float32))


def _compile(model: Any, lr: float, total_steps: int, warm: int, *, label_smoothing: float) -> None:
    """AdamW (weight decay 5e-4) with ``warm`` linear warm-up steps to ``lr``, then cosine to ``0.01 * lr``."""
    import keras

    sched = keras.optimizers.schedules.CosineDecay(
        0.0 if warm else lr, decay_steps=max(total_steps - warm, 1), alpha=0.01,
        warmup_target=lr if warm else None, warmup_steps=warm)
    model.compile(optimizer=keras.optimizers.AdamW(learning_rate=sched, weight_decay=5e-4),
                  loss=keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing), metrics=["accuracy"])


def _set_threads(threads: int | None) -> None:
    import tensorflow as tf

    if threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:  # TensorFlow already initialised in this process (threads stay as they are)
            pass


def train(data_dir: str, out_dir: str, *, epochs: int = 7, seed: int = 1, batch_size: int = 128,
          lr: float = 3e-3, width: int = 20, cache_dir: str | None = None, threads: int | None = None,
          max_minutes: float | None = None, stop_after: int | None = None,
          restart_lr: float | None = None, stage5: int = 0, arch: str = "vgg", targets: str = "fer2013",
          equalize: bool = False) -> dict[str, Any]:
    """Train (or resume) the classifier; returns a summary dict. See the module docstring.

    ``stage5``: channels of an optional fifth stage; ``arch``: the architecture family (:func:`build_model`).
    ``targets``: one of :data:`TARGETS` (:func:`load_data`); FER+ runs are scored and selected on the FER+
    majority labels of public_test. ``equalize``: train and validate on histogram-equalised images without
    brightness/contrast augmentation, and write ``"equalize": "histogram"`` to the card (the runtime then
    equalises every crop).

    ``restart_lr`` (with a longer ``epochs`` on a resumed run): a warm restart - the learning rate jumps back
    to this value and anneals to the new end, instead of continuing from the current (final) rate.
    """
    import keras
    import tensorflow as tf

    _set_threads(threads)
    out = Path(out_dir)
    (out / "ckpt").mkdir(parents=True, exist_ok=True)
    cache = cache_dir if cache_dir is not None else str(out / "cache")
    data = load_data(data_dir, cache, targets, equalize)
    xtr, ytr, xva, yva = data["xtr"], data["ytr"], data["xva"], data["yva"]
    print(f"train {len(ytr)} {np.bincount(ytr, minlength=len(LABELS)).tolist()}  "
          f"validation {len(yva)} {np.bincount(yva, minlength=len(LABELS)).tolist()}", flush=True)

    keras.utils.set_random_seed(seed)
    steps_per_epoch = math.ceil(len(ytr) / batch_size)
    total_steps = steps_per_epoch * epochs
    warm = min(steps_per_epoch // 2, total_steps // 10)

    state_path = out / "state.json"
    arch_cfg = {**_arch_config(width, stage5, arch), **_data_config(targets, equalize)}
    state: dict[str, Any] = {"epoch": 0, "best_acc": 0.0, "best_epoch": -1, "history": [], "initial_epochs": epochs,
                             "config": {"epochs": epochs, "seed": seed, "batch_size": batch_size, "lr": lr,
                                        **arch_cfg}}
    last = out / "ckpt" / "last.keras"
    _ResumedCosine = _resumed_cosine_class()
    if state_path.is_file() and last.is_file():
        state = json.loads(state_path.read_text())
        cfg = dict(state["config"])
        if {k: v for k, v in cfg.items() if k != "epochs"} != {"seed": seed, "batch_size": batch_size, "lr": lr,
                                                              **arch_cfg}:
            raise SystemExit(f"{out} holds a run with another config {state['config']}; use a new --out")
        model = keras.models.load_model(last, compile=True)
        if cfg["epochs"] != epochs:
            # shorten/lengthen a run: anneal from the current learning rate to the new end
            if epochs <= int(state["epoch"]):
                raise SystemExit(f"{out} already trained {state['epoch']} epochs; --epochs must be larger")
            step = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
            now = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
            if restart_lr is not None:
                now = float(restart_lr)
            model.optimizer.learning_rate = _ResumedCosine(now, step, total_steps, 0.01 * lr)
            state["config"]["epochs"] = epochs
            state.setdefault("initial_epochs", cfg["epochs"])
            change: dict[str, Any] = {"at_epoch": state["epoch"], "epochs": epochs}
            if restart_lr is not None:
                change["restart_lr"] = float(restart_lr)
            state.setdefault("schedule_changes", []).append(change)
            print(f"schedule: cosine from lr {now:.2e} at step {step} to step {total_steps}", flush=True)
        print(f"resuming after epoch {state['epoch']} (best {state['best_acc']:.4f})", flush=True)
    else:
        model = build_model(width, stage5=stage5, arch=arch)
        _compile(model, lr, total_steps, warm, label_smoothing=0.0 if targets == "ferplus-soft" else 0.1)
    model.summary(print_fn=lambda s, **_: print(s, flush=True))

    seed_gen = tf.random.Generator.from_seed(seed + 1000 * int(state["epoch"]))
    make_train = _train_data(xtr, ytr, seed=seed, batch_size=batch_size, seed_gen=seed_gen, soft=data["soft"],
                             alpha=0.0, weights=data["weights"], photometric=not equalize)
    return _run_epochs(model, state, out, make_train, epochs=epochs, steps_per_epoch=steps_per_epoch,
                       xcal_n=_bn_calibration_images(xtr, seed),
                       xva_n=normalise(xva[..., None].astype(np.float32)), yva=yva,
                       stop_after=stop_after, max_minutes=max_minutes)


def _run_epochs(model: Any, state: dict[str, Any], out: Path, make_train: Any, *, epochs: int,
                steps_per_epoch: int, xcal_n: Any, xva_n: Any, yva: np.ndarray, stop_after: int | None,
                max_minutes: float | None) -> dict[str, Any]:
    """Epochs ``state["epoch"]+1 .. epochs``: fit, recompute BatchNorm, score on public_test, checkpoint."""
    import keras

    _Progress = _progress_callback()
    last = out / "ckpt" / "last.keras"
    state_path = out / "state.json"
    t_start = time.time()
    for epoch in range(int(state["epoch"]), epochs):
        t0 = time.time()
        hist = model.fit(make_train(epoch), epochs=1, verbose=0, steps_per_epoch=steps_per_epoch,
                         callbacks=[_Progress(t0)])
        recalibrate_bn(model, xcal_n)
        probs = model.predict(xva_n, batch_size=512, verbose=0)
        acc = float((probs.argmax(1) == yva).mean())
        rec = {"epoch": epoch + 1, "loss": float(hist.history["loss"][-1]),
               "train_acc": float(hist.history["accuracy"][-1]), "val_acc": acc,
               "lr": float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)),
               "seconds": round(time.time() - t0, 1)}
        state["history"].append(rec)
        print(json.dumps(rec), flush=True)
        if acc > state["best_acc"]:
            state["best_acc"], state["best_epoch"] = acc, epoch + 1
            model.save(out / "ckpt" / "best.tmp.keras")
            os.replace(out / "ckpt" / "best.tmp.keras", out / "best.keras")
        model.save(out / "ckpt" / "last.tmp.keras")
        os.replace(out / "ckpt" / "last.tmp.keras", last)
        state["epoch"] = epoch + 1
        atomic_write_text(state_path, json.dumps(state, indent=1))
        if stop_after is not None and epoch + 1 >= stop_after and epoch + 1 < epochs:
            print(f"stopping after epoch {epoch + 1} as asked (resume by rerunning)", flush=True)
            break
        if max_minutes is not None and (time.time() - t_start) / 60.0 > max_minutes and epoch + 1 < epochs:
            print(f"stopping after {max_minutes} min (resume by rerunning)", flush=True)
            break
    return state


# ----------------------------------------------------------------------------------------- distillation
def teacher_targets(teachers: Sequence[str | os.PathLike[str]], x_uint8: np.ndarray,
                    temperature: float = 1.0) -> np.ndarray:
    """Mean class probabilities of several trained models, each on the image and its mirror image.

    Args:
        teachers: Paths of trained Keras models (``best.keras`` of earlier runs).
        x_uint8: (N, 48, 48) uint8 grey images.
        temperature: Softens (>1) or sharpens (<1) the mean: ``p ** (1 / T)``, renormalised.

    Returns:
        (N, 7) float32 rows summing to 1.
    """
    import keras

    if not teachers:
        raise ValueError("distillation needs at least one teacher model")
    x = normalise(x_uint8[..., None].astype(np.float32))
    total = np.zeros((len(x), len(LABELS)), np.float64)
    for path in teachers:
        m = keras.models.load_model(path, compile=False)
        total += m.predict(x, batch_size=512, verbose=0) + m.predict(x[:, :, ::-1, :], batch_size=512, verbose=0)
    p = np.clip(total / total.sum(axis=1, keepdims=True), 1e-8, 1.0) ** (1.0 / float(temperature))
    out: np.ndarray = (p / p.sum(axis=1, keepdims=True)).astype(np.float32)
    return out


def distil(data_dir: str, out_dir: str, *, teachers: Sequence[str], init: str | None, epochs: int,
           lr: float = 1e-3, alpha: float = 0.3, temperature: float = 1.0, width: int = 20, seed: int = 1,
           batch_size: int = 128, stage5: int = 0, arch: str = "vgg",
           cache_dir: str | None = None, threads: int | None = None, stop_after: int | None = None,
           max_minutes: float | None = None) -> dict[str, Any]:
    """Train (from scratch) or fine-tune a model towards the averaged predictions of several teachers; resumable.

    Knowledge distillation from an ensemble (Hinton et al. 2015): the teachers' mean probabilities on each
    training image and its mirror image (:func:`teacher_targets`, computed once and kept in
    ``OUT/teacher_targets.npy``) are mixed with the one-hot label (``alpha`` on the label) and the student,
    started from ``init`` (same architecture, so the int8 size and latency do not change) or from scratch at
    ``width`` (``init=None``), is trained on the usual augmented batches with a fresh AdamW + warm-up +
    cosine schedule from ``lr``. Epochs are scored
    and checkpointed as in :func:`train`; the best becomes ``OUT/best.keras``.

    Args:
        data_dir: FER2013 root with ``train/`` and ``public_test/``.
        out_dir: A new (or this run's) output folder.
        teachers: Paths of trained models whose predictions are the soft targets.
        init: Path of the trained model to start from (``None``: a new model of ``width``).
        epochs: Epochs of training.
        lr: Peak learning rate.
        alpha: Weight of the one-hot label in the target (the rest is the teachers').
        temperature: Teacher temperature (see :func:`teacher_targets`).
        width: Channels of the first stage of a new model (ignored with ``init``).
        seed: Shuffling/augmentation seed.
        batch_size: Batch size.
        stage5: Fifth-stage channels of a new model (see :func:`build_model`; ignored with ``init``).
        arch: Architecture family of a new model (see :func:`build_model`; ignored with ``init``).
        cache_dir: Decoded-image cache folder.
        threads: TensorFlow CPU threads.
        stop_after: Stop (resumably) after this epoch.
        max_minutes: Stop (resumably) after this long.

    Returns:
        The run state (``state.json``).
    """
    import keras
    import tensorflow as tf

    from affectlite._io import sha256_file

    _set_threads(threads)
    out = Path(out_dir)
    (out / "ckpt").mkdir(parents=True, exist_ok=True)
    for path in [*([init] if init else []), *teachers]:
        if not Path(path).is_file():
            raise SystemExit(f"model not found: {path} (give the best.keras of a finished run)")
    cache = cache_dir if cache_dir is not None else str(out / "cache")
    xtr, ytr = load_split(data_dir, "train", cache)
    xva, yva = load_split(data_dir, "public_test", cache)
    config = {"epochs": epochs, "seed": seed, "batch_size": batch_size, "lr": lr,
              "distil": {"init": {"path": str(init), "sha256": sha256_file(init)} if init else None,
                         "teachers": [{"path": str(t), "sha256": sha256_file(t)} for t in teachers],
                         "alpha": alpha, "temperature": temperature}}
    if not init:
        config.update(_arch_config(width, stage5, arch))
    state_path, last = out / "state.json", out / "ckpt" / "last.keras"
    steps_per_epoch = math.ceil(len(ytr) / batch_size)
    if state_path.is_file() and last.is_file():
        state: dict[str, Any] = json.loads(state_path.read_text())
        derived = ("width", "stage5", "arch") if init else ()  # read from the --init model, not given
        if {k: v for k, v in state["config"].items() if k not in derived} != config:
            raise SystemExit(f"{out} holds a run with another config {state['config']}; use a new --out")
        model = keras.models.load_model(last, compile=True)
        print(f"resuming after epoch {state['epoch']} (best {state['best_acc']:.4f})", flush=True)
    else:
        keras.utils.set_random_seed(seed)
        model = keras.models.load_model(init, compile=False) if init else build_model(width, stage5=stage5, arch=arch)
        total_steps = steps_per_epoch * epochs
        _compile(model, lr, total_steps, min(steps_per_epoch // 2, total_steps // 10), label_smoothing=0.0)
        config.update(_arch_config(*_architecture(model)))
        state = {"epoch": 0, "best_acc": 0.0, "best_epoch": -1, "history": [], "config": config}
        if init:  # the starting point, for comparison (distillation must beat it to be worth using)
            probs = model.predict(normalise(xva[..., None].astype(np.float32)), batch_size=512, verbose=0)
            state["init_acc"] = float((probs.argmax(1) == yva).mean())
            print(f"init model: public_test {state['init_acc']:.4f}", flush=True)
    targets_path = out / "teacher_targets.npy"
    if targets_path.is_file():
        soft = np.load(targets_path)
    else:
        soft = teacher_targets(teachers, xtr, temperature)
        buf = io.BytesIO()
        np.save(buf, soft)
        atomic_write_bytes(targets_path, buf.getvalue())
        agree = float((soft.argmax(1) == ytr).mean())
        print(f"teacher targets: agree with the training labels on {agree:.4f}", flush=True)
    seed_gen = tf.random.Generator.from_seed(seed + 1000 * int(state["epoch"]))
    make_train = _train_data(xtr, ytr, seed=seed, batch_size=batch_size, seed_gen=seed_gen, soft=soft,
                             alpha=alpha)
    return _run_epochs(model, state, out, make_train, epochs=epochs, steps_per_epoch=steps_per_epoch,
                       xcal_n=_bn_calibration_images(xtr, seed),
                       xva_n=normalise(xva[..., None].astype(np.float32)), yva=yva,
                       stop_after=stop_after, max_minutes=max_minutes)


# ------------------------------------------------------------------------------------ weight averaging
def swa(data_dir: str, out_dir: str, *, epochs: int, lr: float, seed: int = 1, batch_size: int = 128,
        cache_dir: str | None = None, threads: int | None = None, stop_after: int | None = None) -> dict[str, Any]:
    """Stochastic weight averaging (Izmailov et al. 2018) after a finished run; resumable.

    Continues from the run's last weights at a constant learning rate ``lr`` for ``epochs`` more epochs and
    keeps the running mean of the weights after each epoch (a larger ``epochs`` later extends the same mean).
    Each mean gets its BatchNorm statistics recomputed (:func:`recalibrate_bn`) and is scored on
    ``public_test``; one that beats the run's best becomes ``OUT/best.keras`` (what :func:`convert_best`
    converts). Recorded in ``state.json`` under ``"swa"``.

    Args:
        data_dir: FER2013 root with ``train/`` and ``public_test/``.
        out_dir: A finished :func:`train` run (``state.json`` + ``ckpt/last.keras``).
        epochs: Epochs to average over.
        lr: The constant learning rate.
        seed: The run's seed.
        batch_size: The run's batch size.
        cache_dir: Decoded-image cache folder.
        threads: TensorFlow CPU threads.
        stop_after: Stop (resumably) after this many averaging epochs.

    Returns:
        The updated run state.
    """
    import keras
    import tensorflow as tf

    _set_threads(threads)
    out = Path(out_dir)
    state_path, last = out / "state.json", out / "ckpt" / "last.keras"
    if not (state_path.is_file() and last.is_file()):
        raise SystemExit(f"{out} holds no training run (state.json + ckpt/last.keras); train first")
    state: dict[str, Any] = json.loads(state_path.read_text())
    base = int(state["epoch"])
    if base < int(state["config"]["epochs"]):
        raise SystemExit(f"{out}: the run is not finished ({base} of {state['config']['epochs']} epochs); "
                         "finish it before --swa-epochs")
    run = state.setdefault("swa", {"epochs": epochs, "lr": lr, "done": 0, "history": []})
    if run["lr"] != lr:
        raise SystemExit(f"{out} holds an averaging run at lr {run['lr']}; rerun with --swa-lr {run['lr']} "
                         "(a larger --swa-epochs extends it) or average a copy of the run")
    done = int(run["done"])
    if done >= epochs:
        return state
    run["epochs"] = epochs  # a running mean: asking for more epochs later extends it exactly
    cache = cache_dir if cache_dir is not None else str(out / "cache")
    xtr, ytr = load_split(data_dir, "train", cache)
    xva, yva = load_split(data_dir, "public_test", cache)
    xva_n = normalise(xva[..., None].astype(np.float32))
    xcal_n = _bn_calibration_images(xtr, seed)
    cur_path, avg_path = out / "ckpt" / "swa_last.keras", out / "ckpt" / "swa_mean.npz"
    keras.utils.set_random_seed(seed + base + done)
    model = keras.models.load_model(cur_path if done else last, compile=True)
    _ResumedCosine = _resumed_cosine_class()
    model.optimizer.learning_rate = _ResumedCosine(lr, 0, 1, lr)  # constant
    mean: list[np.ndarray] | None = None
    if done:
        with np.load(avg_path) as z:
            mean = [z[f"arr_{i}"] for i in range(len(z.files))]
    cfg = state["config"]
    averaged = build_model(int(cfg.get("width", 16)), stage5=int(cfg.get("stage5", 0)),
                           arch=str(cfg.get("arch", "vgg")))
    seed_gen = tf.random.Generator.from_seed(seed + 1000 * (base + done))
    make_train = _train_data(xtr, ytr, seed=seed, batch_size=batch_size, seed_gen=seed_gen)
    _Progress = _progress_callback()
    for k in range(done, epochs):
        t0 = time.time()
        model.fit(make_train(base + k), epochs=1, verbose=0, steps_per_epoch=math.ceil(len(ytr) / batch_size),
                  callbacks=[_Progress(t0)])
        w = [np.asarray(v, dtype=np.float64) for v in model.get_weights()]
        mean = w if mean is None else [m + (x - m) / (k + 1) for m, x in zip(mean, w, strict=True)]
        averaged.set_weights([m.astype(np.float32) for m in mean])
        recalibrate_bn(averaged, xcal_n)
        acc = float((averaged.predict(xva_n, batch_size=512, verbose=0).argmax(1) == yva).mean())
        rec = {"swa_epoch": k + 1, "models_averaged": k + 1, "val_acc": acc, "seconds": round(time.time() - t0, 1)}
        run["history"].append(rec)
        print(json.dumps(rec), flush=True)
        if acc > state["best_acc"]:
            state["best_acc"], state["best_epoch"], state["best_source"] = acc, base + k + 1, f"swa of {k + 1}"
            averaged.save(out / "ckpt" / "best.tmp.keras")
            os.replace(out / "ckpt" / "best.tmp.keras", out / "best.keras")
        model.save(out / "ckpt" / "swa_last.tmp.keras")
        os.replace(out / "ckpt" / "swa_last.tmp.keras", cur_path)
        atomic_write_bytes(avg_path, _npz_bytes(mean))
        run["done"] = k + 1
        atomic_write_text(state_path, json.dumps(state, indent=1))
        if stop_after is not None and k + 1 >= stop_after:
            break
    return state


def _npz_bytes(arrays: Sequence[np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, *arrays)
    return buf.getvalue()


# -------------------------------------------------------------------------------------------- convert
def fit_temperature(probs: np.ndarray, y: np.ndarray) -> float:
    """Temperature T (0.5..3) minimising the NLL of ``softmax(log(probs) / T)`` (grid search, 0.01 steps)."""
    logp = np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-7, 1.0))
    best_t, best_nll = 1.0, float("inf")
    for t in np.arange(0.5, 3.0001, 0.01):
        z = logp / t
        z = z - z.max(axis=1, keepdims=True)
        lse = np.log(np.exp(z).sum(axis=1))
        nll = float(np.mean(lse - z[np.arange(len(y)), y]))
        if nll < best_nll:
            best_t, best_nll = float(t), nll
    return round(best_t, 2)


def convert_best(data_dir: str, out_dir: str, *, seed: int = 1, cache_dir: str | None = None,
                 epochs: int | None = None) -> Path:
    """Quantize ``OUT/best.keras`` to int8 with the converter and write ``OUT/face.tflite`` + card."""
    import keras

    from affectlite.preprocess import parse_image_spec, prepare_faces
    from affectlite_convert import convert

    out = Path(out_dir)
    cache = cache_dir if cache_dir is not None else str(out / "cache")
    state = json.loads((out / "state.json").read_text()) if (out / "state.json").is_file() else {}
    targets = str(state.get("config", {}).get("targets", "fer2013"))
    equalize = bool(state.get("config", {}).get("equalize", False))
    ferplus = targets != "fer2013"
    # images as stored: the card's preprocessing (prepare_faces) equalises them if the run did
    data = load_data(data_dir, cache, targets, equalize=False)
    xtr, ytr, xva, yva = data["xtr"], data["ytr"], data["xva"], data["yva"]
    pre = preprocessing(equalize)
    model = keras.models.load_model(out / "best.keras", compile=False)
    rng = np.random.default_rng(seed)
    # representative set: 100 images per class from train (balanced), normalised like at runtime
    idx = np.concatenate([rng.choice(np.flatnonzero(ytr == k), size=min(100, int((ytr == k).sum())),
                                     replace=False) for k in range(len(LABELS))])
    spec = parse_image_spec(pre)
    rep = prepare_faces(list(xtr[idx]), spec)  # the runtime's own preprocessing code
    val = prepare_faces(list(xva), spec)
    val_name = (f"FER+ majority labels of FER2013 public_test ({len(yva):,} images: strict majority of the ten "
                "votes in our seven classes, matched rows only, duplicates of train images removed; also used "
                "for model selection)" if ferplus else
                "FER2013 public_test (3,589 images; also used for model selection)")
    pval = model.predict(val, batch_size=512, verbose=0)
    temperature = fit_temperature(pval, yva)
    pred = pval.argmax(1)
    recall = {LABELS[k]: float((pred[yva == k] == k).mean()) for k in range(len(LABELS)) if (yva == k).any()}
    worst = min(recall, key=lambda k: recall[k])
    confused = np.bincount(pred[(yva == LABELS.index(worst)) & (pred != LABELS.index(worst))],
                           minlength=len(LABELS))
    width, stage5, arch = _architecture(model)
    family = ("VGG-style CNN" if arch == "vgg" else
              "CNN: two plain 3x3 stages, then depthwise-separable residual blocks (3 at 12x12, 2 at 6x6"
              + (", 1 at 3x3)" if stage5 else ")"))
    channels = "-".join(str(width * m) for m in _STAGE_WIDTHS[arch]) + (f"-{stage5}" if stage5 else "")
    kd = state.get("config", {}).get("distil")
    method = (f"{family} {channels} channels, {model.count_params() / 1e6:.2f} M parameters; augmentation "
              + ("flip/rotate/zoom/shift (no brightness/contrast: every image is histogram-equalised in "
                 "training and at runtime); " if equalize else "flip/rotate/zoom/shift/brightness/contrast; ")
              + {"fer2013": "",
                 "ferplus-soft": "targets: the FER+ vote distribution over our seven classes (contempt, unknown "
                                 "and not-a-face votes dropped, each image weighted by its share of valid votes; "
                                 "images whose most-voted category is not-a-face and the 495 unmatched rows "
                                 "dropped); ",
                 "ferplus-majority": "targets: the FER+ strict majority label (images without one in our seven "
                                     "classes and the 495 unmatched rows dropped); "}[targets]
              + ("sqrt inverse-frequency class weights; " if not ferplus else
                 "sqrt inverse-frequency class weights (of the targets); ")
              + ("" if kd or targets == "ferplus-soft" else "label smoothing 0.1; ")
              + "AdamW + cosine; BatchNorm statistics recomputed on un-augmented training images")
    distillation: dict[str, Any] | None = None
    if kd:
        how = "then fine-tuned" if kd["init"] else "trained from scratch"
        method += (f"; {how} for {state['config']['epochs']} epochs by knowledge distillation: target = "
                   f"{kd['alpha']} x label + {1 - kd['alpha']:.2f} x the mean probabilities of "
                   f"{len(kd['teachers'])} trained models of this recipe on the image and its mirror image "
                   "(no label smoothing)")
        distillation = {
            "alpha": kd["alpha"], "temperature": kd["temperature"],
            "init": ({"sha256": kd["init"]["sha256"], "recipe": _model_recipe(kd["init"]["path"], seed)}
                     if kd["init"] else None),
            "teachers": [{"name": f"T{i + 1}", "sha256": t["sha256"], "recipe": _model_recipe(t["path"], seed)}
                         for i, t in enumerate(kd["teachers"])],
            "init_public_test_accuracy": state.get("init_acc"),
        }
    card = {
        "name": "affectlite-face-ferplus" if ferplus else "affectlite-face-fer2013",
        "version": "2.0.0" if ferplus else "1.0.0",
        "task": "face",
        "labels": list(LABELS),
        "inputs": [{"name": "image", "kind": "image", "preprocessing": pre}],
        "outputs": [{"name": "probs", "kind": "probabilities"}],
        "calibration": {"temperature": temperature,
                        "method": "temperature minimising the negative log-likelihood of the float model on "
                                  + ("FER+ public_test majority labels" if ferplus else "FER2013 public_test")},
        "training": {
            "data": ("FER2013 train split (28,709 48x48 grey face crops, ICML 2013 representation-learning "
                     "challenge), from ../shared/datasets/fer2013/train"
                     + (f", labelled with the FER+ votes (ten annotators per image, fer2013/ferplus_votes.csv; "
                        f"{len(ytr):,} images used)" if ferplus else "")),
            "terms": "FER2013: web-scraped images, research use, no explicit licence; the images are not "
                     "redistributed (only the trained weights are)"
                     + ("; FER+ labels (Barsoum et al., ICMI 2016, Microsoft): MIT licence" if ferplus else ""),
            "split": ("model selected on the FER+ majority labels of FER2013 public_test "
                      f"({len(yva):,} images); PrivateTest (the FER+ test split) held back" if ferplus else
                      "model selected on FER2013 public_test (3,589 images); PrivateTest held back"),
            "recipe": _recipe_commands(state, seed),
            "epochs": state.get("config", {}).get("epochs", epochs),
            "schedule_changes": state.get("schedule_changes", []),
            "method": method,
            "best_epoch": state.get("best_epoch"),
            **({"distillation": distillation} if distillation else {}),
        },
        "limitations": [
            *(["The FER+ labels are crowd votes on the displayed expression of small web images; the "
               "majority of ten annotators is itself wrong or ambiguous on a share of images."] if ferplus else []),
            "FER2013 has demographic biases (age, skin tone, gender presentation are not balanced) and "
            "accuracy differs between groups; it has not been audited per group.",
            "Trained on posed/web images of mostly frontal faces; profile, occluded, low-light or very small "
            "faces are less reliable.",
            "Outputs an estimate of the displayed facial expression, not of the emotion a person feels.",
            f"'{worst}' has the lowest recall ({recall[worst]:.0%} on public_test, float model; most often "
            f"mistaken for {LABELS[int(confused.argmax())]}); "
            + (f"'disgust' and 'fear' are rare under the FER+ majority ({int((yva == LABELS.index('disgust')).sum())} "
               f"and {int((yva == LABELS.index('fear')).sum())} validation images), so their figures are noisy."
               if ferplus else
               "'disgust' is rare in the training data (436 images, 56 in public_test), so its figures are noisy."),
        ],
    }
    dest = out / "face.tflite"
    res = convert(model, dest, rep, card, validation=(val, yva), validation_split=val_name,
                  report_dir=out / "report", latency_threads=[1])
    if not res.passed:
        print("conversion checks failed:\n  - " + "\n  - ".join(res.failures), file=sys.stderr)
    for w in res.warnings:
        print(f"warning: {w}", file=sys.stderr)
    if ferplus:
        add_ferplus_metrics(dest, data["xva_all"], data["yva_orig"], data["val_mask"], yva,
                            float_probs_orig=model.predict(prepare_faces(list(data["xva_all"]), spec),
                                                           batch_size=512, verbose=0))
    return dest


def add_ferplus_metrics(model_path: Path, x_all: np.ndarray, y_orig: np.ndarray, mask: np.ndarray,
                        y_major: np.ndarray, float_probs_orig: np.ndarray | None = None) -> dict[str, Any]:
    """Add the FER+ figures to a face card (``metrics.ferplus``), measured through the runtime's own path.

    Written: the int8 confusion matrix and per-class recall on the FER+ majority validation set, accuracy on
    the original FER2013 labels of all of public_test (int8, and float if ``float_probs_orig`` is given), and
    the contrast table (:func:`.face_ferplus.contrast_table`: FER+ majority accuracy and recall with the stored
    equalised images and with raw-like, low-contrast, dark and bright versions of them).

    Returns:
        The ``metrics.ferplus`` dict.
    """
    from . import face_ferplus as fp

    probs = fp.classify(model_path, x_all)
    orig = fp.evaluate(probs, y_orig)
    major = fp.evaluate(probs[mask], y_major)
    block: dict[str, Any] = {
        "majority_int8": major,
        "original_labels": {"int8_accuracy": orig["accuracy"], "n": orig["n"],
                            "per_class_recall_int8": orig["per_class_recall"],
                            **({"float_accuracy": round(float((float_probs_orig.argmax(1) == y_orig).mean()), 4)}
                               if float_probs_orig is not None else {}),
                            "split": "FER2013 public_test, original folder labels (all 3,589 images)"},
        "contrast": fp.contrast_table(model_path, x_all[mask], y_major),
        "contrast_conditions": fp.contrast_variant.__doc__.split("\n\n", 1)[1].strip() if fp.contrast_variant.__doc__
        else "",
    }
    card_path = model_path.with_suffix(".card.json")
    card = json.loads(card_path.read_text())
    card.setdefault("metrics", {})["ferplus"] = block
    atomic_write_text(card_path, json.dumps(card, indent=2) + "\n")
    return block


def _arch_config(width: int, stage5: int, arch: str = "vgg") -> dict[str, Any]:
    """The architecture keys of a run's config (``stage5`` only when there is a fifth stage, ``arch`` only
    when it is not the default ``"vgg"``, so configs of earlier runs still match)."""
    return {"width": width, **({"stage5": stage5} if stage5 else {}), **({"arch": arch} if arch != "vgg" else {})}


def _data_config(targets: str, equalize: bool) -> dict[str, Any]:
    """The data keys of a run's config (only when not the defaults, so configs of earlier runs still match)."""
    return {**({"targets": targets} if targets != "fer2013" else {}), **({"equalize": True} if equalize else {})}


def _architecture(model: Any) -> tuple[int, int, str]:
    """``(width, stage5, arch)`` of a model built by :func:`build_model` (``stage5`` 0 without a fifth stage)."""
    names = {layer.name: layer for layer in model.layers}
    if "s1a_conv" not in names:
        raise SystemExit(f"model {model.name!r} was not built by this recipe (no layer 's1a_conv')")
    arch = "dsr" if "s3a_dw" in names else "vgg"
    last = names.get("s5a_conv") or names.get("s5a_pw")
    stage5 = int(last.filters) if last is not None else 0
    return int(names["s1a_conv"].filters), stage5, arch


def _model_recipe(path: str | os.PathLike[str], seed: int) -> str:
    """The recipe of a model file that sits in its run folder (``state.json`` beside it or one level up)."""
    p = Path(path)
    for d in (p.parent, p.parent.parent):
        if (d / "state.json").is_file():
            st = json.loads((d / "state.json").read_text())
            return _recipe_commands(st, int(st.get("config", {}).get("seed", seed)))
    return "unknown (no state.json beside the model)"


def _recipe_commands(state: dict[str, Any], seed: int) -> str:
    cfg = state.get("config", {})
    kd = cfg.get("distil")
    arch = (f"--width {cfg.get('width', 16)}" + (f" --stage5 {cfg['stage5']}" if cfg.get("stage5") else "")
            + (f" --arch {cfg['arch']}" if cfg.get("arch", "vgg") != "vgg" else ""))
    if kd:
        teachers = " ".join(f"--teacher T{i + 1}.keras" for i in range(len(kd["teachers"])))
        return (f"affectlite train face --data ../shared/datasets/fer2013 --out DIR --threads 1 --seed {seed} "
                f"--epochs {cfg.get('epochs')} --lr {cfg.get('lr')} "
                + ("--init INIT.keras" if kd["init"] else arch) + f" {teachers} "
                f"--kd-alpha {kd['alpha']} --kd-temperature {kd['temperature']}")
    data = (f" --targets {cfg['targets']}" if cfg.get("targets", "fer2013") != "fer2013" else "")
    if cfg.get("equalize", False) != (cfg.get("targets", "fer2013") != "fer2013"):
        data += " --equalize" if cfg.get("equalize") else " --no-equalize"
    base = (f"affectlite train face --data ../shared/datasets/fer2013 --out DIR --threads 1 --seed {seed} "
            f"{arch}{data}")
    changes = state.get("schedule_changes", [])
    swa_args = f" --swa-epochs {state['swa']['epochs']} --swa-lr {state['swa']['lr']}" if "swa" in state else ""
    if not changes:
        return f"{base} --epochs {cfg.get('epochs')}{swa_args}"
    # the first segment ran with the original length until the first change
    cmds = []
    epochs_before = state.get("initial_epochs")
    restart = ""
    for ch in changes:
        cmds.append(f"{base} --epochs {epochs_before} --stop-after {ch['at_epoch']}{restart}")
        epochs_before = ch["epochs"]
        restart = f" --restart-lr {ch['restart_lr']}" if "restart_lr" in ch else ""
    cmds.append(f"{base} --epochs {cfg.get('epochs')}{restart}")
    return " && ".join(cmds) + swa_args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``affectlite train face``. Returns a process exit code."""
    p = argparse.ArgumentParser(prog="affectlite train face", description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="FER2013 root with train/ and public_test/")
    p.add_argument("--out", required=True, help="output folder (checkpoints, log, face.tflite + card)")
    p.add_argument("--epochs", type=int, default=7)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--width", type=int, default=20, help="channels of the first stage (shipped: 20)")
    p.add_argument("--stage5", type=int, default=0, help="channels of an optional fifth stage at 3x3 "
                   "resolution (0: none, the shipped model)")
    p.add_argument("--arch", choices=ARCHS, default="vgg", help="architecture family: vgg (shipped) or dsr "
                   "(depthwise-separable residual blocks in stages 3-5; see build_model)")
    p.add_argument("--cache", default=None, help="decoded-image cache folder (default OUT/cache)")
    p.add_argument("--threads", type=int, default=None, help="TensorFlow CPU threads")
    p.add_argument("--max-minutes", type=float, default=None, help="stop (resumably) after this long")
    p.add_argument("--stop-after", type=int, default=None, help="stop (resumably) after this epoch")
    p.add_argument("--restart-lr", type=float, default=None, help="with a larger --epochs on a resumed run: "
                   "warm restart of the cosine schedule from this learning rate")
    p.add_argument("--swa-epochs", type=int, default=0, help="after the run: average the weights over this many "
                   "more epochs at a constant --swa-lr (stochastic weight averaging)")
    p.add_argument("--swa-lr", type=float, default=5e-4, help="constant learning rate of the averaging epochs")
    p.add_argument("--teacher", action="append", default=[], metavar="MODEL.keras",
                   help="distillation: a trained model whose predictions are soft targets (repeat for an "
                        "ensemble): distillation, from scratch at --width or from --init")
    p.add_argument("--init", default=None, metavar="MODEL.keras", help="distillation: the trained model to "
                   "fine-tune (same architecture as shipped)")
    p.add_argument("--kd-alpha", type=float, default=0.3, help="distillation: weight of the one-hot label")
    p.add_argument("--kd-temperature", type=float, default=1.0, help="distillation: teacher temperature")
    p.add_argument("--targets", choices=TARGETS, default="fer2013", help="training targets: FER2013's folder "
                   "labels (the model shipped before 2.0), or the FER+ votes of fer2013/ferplus_votes.csv as "
                   "distributions (ferplus-soft) or majority labels (ferplus-majority); FER+ runs are selected "
                   "on public_test's FER+ majority labels (see affectlite_convert.recipes.face_ferplus)")
    p.add_argument("--equalize", action=argparse.BooleanOptionalAction, default=None, help="histogram-equalise "
                   "every image in training and at runtime (the card carries it); default: on with FER+ targets, "
                   "off with fer2013")
    p.add_argument("--no-convert", action="store_true", help="train only")
    p.add_argument("--align", action="store_true", help="train, validate and calibrate on eye-aligned crops "
                   "(BlazeFace keypoints through affectlite.preprocess.face_crop, as the runtime with face.align); "
                   "measured at 8 epochs: 1-4 points worse end to end than training on raw crops, so not the "
                   "default (docs/benchmarks.md)")
    a = p.parse_args(list(argv) if argv is not None else None)
    equalize = a.targets != "fer2013" if a.equalize is None else bool(a.equalize)
    if (a.targets != "fer2013" or equalize) and (a.teacher or a.swa_epochs or a.align):
        p.error("--teacher, --swa-epochs and --align work with --targets fer2013 --no-equalize only")
    if a.align:
        a.cache = aligned_cache(a.data, a.cache if a.cache is not None else str(Path(a.out) / "cache"))
    if a.init and not a.teacher:
        p.error("--init needs at least one --teacher (distillation fine-tunes --init towards the teachers)")
    if a.stage5 < 0:
        p.error(f"--stage5 must be >= 0 (0: no fifth stage), got {a.stage5}")
    if a.stage5 and a.init:
        p.error("--stage5 sets the architecture of a new model; --init fine-tunes an existing one (drop one)")
    if a.arch != "vgg" and a.init:
        p.error("--arch sets the architecture of a new model; --init fine-tunes an existing one (drop one)")
    if a.teacher:
        if not 0.0 <= a.kd_alpha <= 1.0:
            p.error(f"--kd-alpha must be in [0, 1], got {a.kd_alpha}")
        if a.kd_temperature <= 0:
            p.error(f"--kd-temperature must be > 0, got {a.kd_temperature}")
        state = distil(a.data, a.out, teachers=a.teacher, init=a.init, epochs=a.epochs, lr=a.lr,
                       alpha=a.kd_alpha, temperature=a.kd_temperature, width=a.width, seed=a.seed,
                       batch_size=a.batch_size, stage5=a.stage5, arch=a.arch,
                       cache_dir=a.cache, threads=a.threads, stop_after=a.stop_after,
                       max_minutes=a.max_minutes)
    else:
        state = train(a.data, a.out, epochs=a.epochs, seed=a.seed, batch_size=a.batch_size, lr=a.lr,
                      width=a.width, cache_dir=a.cache, threads=a.threads, max_minutes=a.max_minutes,
                      stop_after=a.stop_after, restart_lr=a.restart_lr, stage5=a.stage5, arch=a.arch,
                      targets=a.targets, equalize=equalize)
    if state["epoch"] < a.epochs:
        print(f"stopped after epoch {state['epoch']} of {a.epochs}; rerun the same command to resume")
        return 0
    if a.swa_epochs > 0:
        state = swa(a.data, a.out, epochs=a.swa_epochs, lr=a.swa_lr, seed=a.seed, batch_size=a.batch_size,
                    cache_dir=a.cache, threads=a.threads)
    print(f"best public_test accuracy (float) {state['best_acc']:.4f} at epoch {state['best_epoch']}"
          + (f" ({state['best_source']})" if "best_source" in state else ""))
    if a.no_convert:
        return 0
    dest = convert_best(a.data, a.out, seed=a.seed, cache_dir=a.cache, epochs=a.epochs)
    print(f"wrote {dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
