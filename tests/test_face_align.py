"""Eye alignment (issue 18): the geometry, the same crop in training and at run time, keypoints through tracking,
and the ``face.align`` switch."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pytest

from affectlite.detectors import Detection
from affectlite.errors import InputError
from affectlite.face import FaceAnalyzer
from affectlite.options import FaceOptions
from affectlite.preprocess import (
    ALIGN_EYE_DISTANCE,
    ALIGN_EYE_Y,
    aligned_crop,
    aligned_crop_size,
    crop_box,
    eye_alignment_matrix,
    face_crop,
    parse_image_spec,
    prepare_face,
    warp_affine,
)
from affectlite.results import FaceResult
from affectlite.tracking import IoUTracker


def _eyes(cx: float, cy: float, half: float, deg: float) -> tuple[tuple[float, float], tuple[float, float]]:
    a = math.radians(deg)
    dx, dy = half * math.cos(a), half * math.sin(a)
    return (cx - dx, cy - dy), (cx + dx, cy + dy)


def _dots(shape: tuple[int, int], pts: list[tuple[float, float]], radius: float = 4.0) -> np.ndarray:
    """Anti-aliased-free grey dots whose intensity centroids are exactly ``pts`` (continuous coordinates)."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    img = np.zeros(shape, dtype=np.float64)
    for px, py in pts:
        img += np.clip(radius + 0.5 - np.hypot(xx - px, yy - py), 0.0, 1.0)
    return np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)


def _centroids(crop: np.ndarray) -> list[tuple[float, float]]:
    """Intensity centroids of the left and right halves' bright pixels."""
    f = crop.astype(np.float64)
    f[f < 40] = 0
    h, w = f.shape
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    out = []
    for sel in (xx < w / 2, xx >= w / 2):
        m = f * sel
        out.append((float((m * xx).sum() / m.sum()), float((m * yy).sum() / m.sum())))
    return out


# ----------------------------------------------------------------------------------------------- geometry
@pytest.mark.parametrize("deg", [-50.0, -17.0, 0.0, 12.5, 33.0, 80.0])
def test_the_matrix_sends_the_eyes_to_the_canonical_points(deg: float) -> None:
    re, le = _eyes(210.0, 130.0, 27.0, deg)
    size = 96
    m = eye_alignment_matrix(re, le, size)
    u_r = m @ np.array([*re, 1.0])
    u_l = m @ np.array([*le, 1.0])
    np.testing.assert_allclose(u_r, [(0.5 - ALIGN_EYE_DISTANCE / 2) * size, ALIGN_EYE_Y * size], atol=1e-9)
    np.testing.assert_allclose(u_l, [(0.5 + ALIGN_EYE_DISTANCE / 2) * size, ALIGN_EYE_Y * size], atol=1e-9)
    # a similarity: the rotation undoes the eye line's angle, uniform scale = canonical / measured distance
    a = m[:, :2]
    scale = math.sqrt(abs(np.linalg.det(a)))
    assert scale == pytest.approx(ALIGN_EYE_DISTANCE * size / 54.0)
    assert math.degrees(math.atan2(-a[1, 0], a[0, 0])) == pytest.approx(deg)
    np.testing.assert_allclose(a @ a.T, scale**2 * np.eye(2), atol=1e-9)


@pytest.mark.parametrize("deg", [-40.0, -15.0, 0.0, 25.0, 60.0])
def test_two_dots_rotated_by_a_known_angle_come_out_level_at_the_canonical_positions(deg: float) -> None:
    re, le = _eyes(160.0, 120.0, 30.0, deg)
    img = _dots((240, 320), [re, le])
    crop = aligned_crop(img, re, le, max_size=256)  # the face's own resolution: 60 px between the eyes
    side = round(60.0 / ALIGN_EYE_DISTANCE)
    assert crop.shape == (side, side) and crop.dtype == np.uint8
    (xr, yr), (xl, yl) = _centroids(crop)
    assert yr == pytest.approx(yl, abs=0.25), "the eyes are level"
    assert yr == pytest.approx(ALIGN_EYE_Y * side, abs=0.35)
    assert xr == pytest.approx((0.5 - ALIGN_EYE_DISTANCE / 2) * side, abs=0.35)
    assert xl == pytest.approx((0.5 + ALIGN_EYE_DISTANCE / 2) * side, abs=0.35)
    # swapping the eyes turns the face upside down: the dots land on the same two places
    flipped = aligned_crop(img, le, re, max_size=256)
    np.testing.assert_allclose(sorted(_centroids(flipped)), sorted(_centroids(crop)), atol=0.35)


def test_the_crop_is_sized_from_the_inter_ocular_distance() -> None:
    assert aligned_crop_size((10, 10), (35.0, 10)) == round(25.0 / ALIGN_EYE_DISTANCE)
    assert aligned_crop_size((0, 0), (3, 4)) == round(5 / ALIGN_EYE_DISTANCE)
    assert aligned_crop_size((0, 0), (1, 0)) == 8  # clamped below ...
    assert aligned_crop_size((0, 0), (500, 0)) == 96  # ... and above (prepare_face area-resizes from there)
    assert aligned_crop_size((0, 0), (500, 0), max_size=150) == 150
    img = _dots((100, 100), [(30, 40), (60, 40)])
    assert aligned_crop(img, (30, 40), (60, 40), size=48).shape == (48, 48)
    assert aligned_crop(np.repeat(img[:, :, None], 3, axis=2), (30, 40), (60, 40)).shape[2] == 3


def test_only_the_sampled_region_is_read_and_grey_matches_rgb() -> None:
    rng = np.random.default_rng(6)
    frame = rng.integers(0, 256, size=(240, 320, 3), dtype=np.uint8)
    re, le = _eyes(100.0, 90.0, 20.0, 20.0)
    crop = aligned_crop(frame, re, le)
    side = crop.shape[0]
    full = warp_affine(frame, eye_alignment_matrix(re, le, side), (side, side))  # the whole frame, no cut
    assert np.abs(crop.astype(np.float32) - full).max() <= 0.5 + 1e-3
    grey = aligned_crop(frame, re, le, grey=True)
    assert grey.shape == (side, side)
    luma = crop.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    assert np.abs(grey.astype(np.float32) - luma).max() <= 1.0
    # near the frame's corner the crop replicates the edge instead of failing
    corner = aligned_crop(frame, (2.0, 3.0), (30.0, 3.0))
    assert corner.shape[:2] == (round(28 / ALIGN_EYE_DISTANCE),) * 2


def test_warp_affine_identity_shift_and_bad_input() -> None:
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, size=(20, 30, 3), dtype=np.uint8)
    np.testing.assert_allclose(warp_affine(img, np.array([[1.0, 0, 0], [0, 1.0, 0]]), (20, 30)), img)
    shifted = warp_affine(img, np.array([[1.0, 0, -5], [0, 1.0, -3]]), (10, 12))  # output (0,0) = input (5,3)
    np.testing.assert_allclose(shifted, img[3:13, 5:17])
    # half-pixel shift = mean of neighbours (bilinear)
    half = warp_affine(img[:, :, 0], np.array([[1.0, 0, -0.5], [0, 1.0, 0]]), (20, 29))
    np.testing.assert_allclose(half, (img[:, :-1, 0].astype(np.float32) + img[:, 1:, 0]) / 2, atol=1e-4)
    with pytest.raises(InputError, match="invertible"):
        warp_affine(img, np.zeros((2, 3)), (4, 4))
    with pytest.raises(InputError, match="coincide"):
        eye_alignment_matrix((5, 5), (5, 5), 48)


def test_face_crop_uses_keypoints_only_when_asked_and_present() -> None:
    rng = np.random.default_rng(4)
    frame = rng.integers(0, 256, size=(120, 160, 3), dtype=np.uint8)
    box = (50.0, 30.0, 60.0, 60.0)
    lms = ((68.0, 52.0), (92.0, 55.0), (80.0, 66.0), (80.0, 78.0), (55.0, 56.0), (105.0, 56.0))
    by_box = crop_box(frame, *box, 0.1)
    np.testing.assert_array_equal(face_crop(frame, box, (), margin=0.1), by_box)
    np.testing.assert_array_equal(face_crop(frame, box, lms, margin=0.1, align=False), by_box)
    np.testing.assert_array_equal(face_crop(frame, box, lms, margin=0.1), aligned_crop(frame, lms[0], lms[1]))
    assert not np.array_equal(face_crop(frame, box, lms, margin=0.1)[:10, :10], by_box[:10, :10])
    np.testing.assert_array_equal(face_crop(frame, box, ((70, 50), (70.2, 50)), margin=0.1), by_box)  # < 1 px


# --------------------------------------------------------------------------------- training == runtime
class _FixedDetector:
    """Returns one detection with given keypoints, scaled to the image it is given (like a real detector)."""

    name = "fixed"
    min_size = 1

    def __init__(self, box: tuple[float, ...], lms: tuple[tuple[float, float], ...], ref: int) -> None:
        self.box, self.lms, self.ref = box, lms, ref

    def detect(self, image: np.ndarray) -> list[Detection]:
        s = image.shape[1] / self.ref
        x, y, w, h = self.box
        return [Detection(x, y, w, h, 0.9, self.lms).scaled(s)]

    def close(self) -> None:
        pass


def test_training_crops_equal_runtime_crops() -> None:
    """The recipe's align_crops and the runtime's FaceAnalyzer.crop + prepare_face give the same model input."""
    pytest.importorskip("cv2")
    from affectlite_convert.recipes import face as recipe

    rng = np.random.default_rng(5)
    g = rng.integers(0, 256, size=(48, 48), dtype=np.uint8)
    # keypoints in the coordinates of the recipe's padded (24 px), 4x upscaled detector input
    lms48 = ((16.3, 19.1), (32.8, 18.2), (24.0, 27.0), (24.5, 35.0), (8.0, 22.0), (40.0, 22.0))
    box48 = (6.0, 6.0, 36.0, 38.0)
    big = tuple((4 * (x + 24), 4 * (y + 24)) for x, y in lms48)
    det = _FixedDetector(tuple(4 * (v + 24) if i < 2 else 4 * v for i, v in enumerate(box48)), big, 96 * 4)
    xa, found = recipe.align_crops(g[None], det)
    assert found.tolist() == [True]
    spec = parse_image_spec(recipe.PREPROCESSING)
    fa = FaceAnalyzer(FaceOptions(detector="haar"), lazy=True)
    runtime = prepare_face(fa.crop(g, box48, lms48), spec)
    np.testing.assert_allclose(recipe.normalise(xa[0].astype(np.float32))[None, :, :, None], runtime, atol=1e-5)
    assert not np.allclose(xa[0], g), "aligned, not the raw crop"
    # without keypoints the recipe keeps the crop as it is
    xa2, found2 = recipe.align_crops(g[None], _FixedDetector(box48, (), 48))
    assert found2.tolist() == [False] and np.array_equal(xa2[0], g)


# ----------------------------------------------------------------------------------------- tracking
def test_keypoints_ride_through_tracking_onto_the_predicted_box() -> None:
    tr = IoUTracker(min_hits=1)
    d0 = Detection(100.0, 50.0, 80.0, 80.0, 0.9, ((120.0, 80.0), (160.0, 80.0)))
    (t,) = tr.update([d0], 0)
    np.testing.assert_allclose(t.landmarks, [(120.0, 80.0), (160.0, 80.0)])
    d1 = Detection(110.0, 50.0, 80.0, 80.0, 0.9, ((131.0, 79.0), (171.0, 81.0)))
    (t,) = tr.update([d1], 100_000_000)
    np.testing.assert_allclose(t.landmarks, [(131.0, 79.0), (171.0, 81.0)])
    (t,) = tr.predict(200_000_000)  # the box moves on by its velocity; the keypoints move with it
    dx = t.box.x - 110.0
    assert dx > 0
    np.testing.assert_allclose(t.landmarks, [(131.0 + dx, 79.0), (171.0 + dx, 81.0)], atol=1e-6)
    (t,) = tr.update([Detection(t.box.x, 50.0, 80.0, 80.0, 0.9)], 300_000_000)  # a detector without keypoints
    assert t.landmarks == ()


def _frame_with_face() -> tuple[np.ndarray, Any]:
    cv2 = pytest.importorskip("cv2")
    from skimage import data

    from affectlite.detectors import blazeface

    if blazeface.model_source() is None:
        pytest.skip("BlazeFace model not installed")
    frame = cv2.resize(data.brick(), (640, 480), interpolation=cv2.INTER_AREA)
    frame = np.repeat(frame[:, :, None], 3, axis=2) if frame.ndim == 2 else frame
    ast = cv2.resize(data.astronaut(), (384, 384), interpolation=cv2.INTER_AREA)
    rot = cv2.warpAffine(ast, cv2.getRotationMatrix2D((160.0, 100.0), 25.0, 1.0), (384, 384),
                         borderMode=cv2.BORDER_REFLECT)
    frame[40:424, 200:584] = rot
    return np.ascontiguousarray(frame), cv2


@pytest.mark.parametrize("align", [True, False])
def test_the_align_switch_decides_the_crop_the_model_sees(align: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    frame, _ = _frame_with_face()
    fa = FaceAnalyzer(FaceOptions(detector="blazeface", align=align, detect_every=1, track_min_hits=1))
    seen: list[np.ndarray] = []
    real = fa.classifier.classify_crops

    def spy(crops: list[np.ndarray]) -> list[tuple[float, ...]]:
        seen.extend(crops)
        return real(crops)

    monkeypatch.setattr(fa.classifier, "classify_crops", spy)
    (r,) = fa.process(frame, 0)
    (d,) = fa.detect(frame)
    assert len(d.landmarks) == 6
    tilt = math.degrees(math.atan2(d.landmarks[1][1] - d.landmarks[0][1], d.landmarks[1][0] - d.landmarks[0][0]))
    assert -35.0 < tilt < -10.0, f"the detector sees the tilt (turned 25 deg counter-clockwise): {tilt}"
    if align:
        np.testing.assert_array_equal(seen[0], aligned_crop(frame, d.landmarks[0], d.landmarks[1], grey=True))
        assert seen[0].ndim == 2 and seen[0].shape[0] <= 96
    else:
        np.testing.assert_array_equal(seen[0], crop_box(frame, d.x, d.y, d.w, d.h, fa.margin))
    # results carry boxes, labels and scores only: no keypoints, no pixels
    names = {f.name for f in dataclasses.fields(FaceResult)}
    assert not {"landmarks", "keypoints", "crop", "image"} & names
    assert r.track_id >= 1 and r.label and 0.0 < r.confidence <= 1.0
    fa.close()
