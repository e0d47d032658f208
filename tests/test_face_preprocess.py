"""Image preprocessing shared by training, calibration and runtime (affectlite.preprocess)."""

from __future__ import annotations

import numpy as np
import pytest

from affectlite.errors import InputError, ModelCardError
from affectlite.preprocess import crop_box, parse_image_spec, prepare_face, prepare_faces, resize, to_grey

FER_SPEC = {"color": "grey", "size": [48, 48], "scale": 1 / 255, "mean": 0.5, "std": 0.25, "resize": "area",
            "crop_margin": 0.1}


def test_spec_parsing_and_errors() -> None:
    s = parse_image_spec(FER_SPEC)
    assert s.size == (48, 48) and s.channels == 1 and s.mean == (0.5,) and s.crop_margin == 0.1
    assert parse_image_spec({"color": "rgb", "mean": [0.1, 0.2, 0.3], "std": 0.5}).channels == 3
    for bad, msg in [({"color": "cmyk"}, "color"), ({"size": [48]}, "size"), ({"std": 0}, "std"),
                     ({"resize": "lanczos9"}, "resize"), ({"color": "rgb", "mean": [1, 2]}, "mean"),
                     ({"layout": "NCHW"}, "layout"), ({"scale": "x"}, "scale")]:
        with pytest.raises(ModelCardError, match=msg):
            parse_image_spec(bad)


def test_a_48x48_crop_is_only_normalised() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(48, 48), dtype=np.uint8)
    x = prepare_face(img, parse_image_spec(FER_SPEC))
    assert x.shape == (1, 48, 48, 1) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, :, :, 0], (img / 255.0 - 0.5) / 0.25, rtol=1e-5, atol=1e-5)
    # the same pixels as RGB give the same input (grey = BT.601 luma of equal channels)
    rgb = np.repeat(img[:, :, None], 3, axis=2)
    np.testing.assert_allclose(prepare_face(rgb, parse_image_spec(FER_SPEC)), x, atol=1e-5)


def test_area_resize_averages_blocks_exactly() -> None:
    img = np.arange(16, dtype=np.float32).reshape(4, 4)
    out = resize(img, (2, 2), "area")
    np.testing.assert_allclose(out, [[2.5, 4.5], [10.5, 12.5]])
    # non-integer factor: the mean brightness is preserved
    rng = np.random.default_rng(1)
    big = rng.uniform(0, 255, size=(101, 77, 3)).astype(np.float32)
    small = resize(big, (48, 48), "area")
    assert small.shape == (48, 48, 3)
    np.testing.assert_allclose(small.mean(axis=(0, 1)), big.mean(axis=(0, 1)), rtol=2e-3)


def test_area_resize_agrees_with_opencv() -> None:
    cv2 = pytest.importorskip("cv2")
    skd = pytest.importorskip("skimage.data")
    img = skd.camera()[100:292, 180:372]  # 192x192 grey
    ours = resize(img, (48, 48), "area")
    ref = cv2.resize(img, (48, 48), interpolation=cv2.INTER_AREA).astype(np.float32)
    assert np.abs(ours - ref).max() <= 1.0
    up = resize(img[:20, :20], (48, 48), "bilinear")
    ref_up = cv2.resize(img[:20, :20], (48, 48), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    assert np.abs(up - ref_up).mean() < 1.0


def test_crop_box_is_square_with_margin_and_replicates_edges() -> None:
    frame = np.arange(100 * 120, dtype=np.int64).reshape(100, 120)
    c = crop_box(frame, 40, 30, 20, 40, margin=0.25)  # 40 tall box -> 60 px square around its centre
    assert c.shape == (60, 60)
    assert c[0, 0] == frame[20, 20]
    edge = crop_box(frame, 0, 0, 30, 30, margin=0.5)  # sticks out top-left: edge pixels repeat
    assert edge.shape == (60, 60)
    assert (edge[:15, :15] == frame[0, 0]).all()


def test_bad_crops_are_input_errors() -> None:
    spec = parse_image_spec(FER_SPEC)
    with pytest.raises(InputError, match="shape"):
        prepare_face(np.zeros((4, 4, 5), dtype=np.uint8), spec)
    with pytest.raises(InputError, match="empty"):
        prepare_face(np.zeros((0, 4), dtype=np.uint8), spec)
    with pytest.raises(InputError, match="NaN"):
        prepare_face(np.full((8, 8), np.nan, dtype=np.float32), spec)
    assert prepare_faces([], spec).shape == (0, 48, 48, 1)


def test_grey_uses_bt601_weights() -> None:
    px = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255]]], dtype=np.uint8)
    np.testing.assert_allclose(to_grey(px)[0], [76.245, 149.685, 29.07], atol=1e-3)


@pytest.mark.parametrize("shape", [(192, 192), (101, 77), (101, 77, 3), (49, 60, 1)])
def test_opencv_shrink_path_equals_the_numpy_box_filter(shape: tuple[int, ...],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("cv2")
    from affectlite import preprocess as P

    img = np.random.default_rng(2).uniform(0, 255, size=shape).astype(np.float32)
    with_cv2 = P.resize(img, (48, 48), "area")
    monkeypatch.setattr(P, "_CV2", [None])  # as on a device without OpenCV
    plain = P.resize(img, (48, 48), "area")
    assert with_cv2.shape == plain.shape == (48, 48, *shape[2:])
    assert with_cv2.dtype == plain.dtype == np.float32
    np.testing.assert_allclose(with_cv2, plain, atol=1e-3)


def test_grey_needs_no_blas_and_matches_the_weighted_sum() -> None:
    rgb = np.random.default_rng(3).integers(0, 256, size=(40, 30, 3), dtype=np.uint8)
    ref = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    np.testing.assert_allclose(to_grey(rgb), ref, atol=1e-3)
