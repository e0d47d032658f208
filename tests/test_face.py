"""Face path end to end: the shipped int8 model with its card, analyzer on real photos and moving faces, eval."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from affectlite.errors import InputError, ModelCardError
from affectlite.face import DEFAULT_FACE_MODEL, FaceAnalyzer, FaceExpressionClassifier, eval_face_main, evaluate_face
from affectlite.labels import LABELS
from affectlite.options import FaceOptions

pytestmark = pytest.mark.skipif(not DEFAULT_FACE_MODEL.is_file(), reason=f"{DEFAULT_FACE_MODEL} not built yet")
MS = 1_000_000


@pytest.fixture(scope="module")
def clf() -> FaceExpressionClassifier:
    return FaceExpressionClassifier.create()


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    skd = pytest.importorskip("skimage.data")
    return np.ascontiguousarray(skd.astronaut())


def _fer(shared: Path, split: str = "public_test") -> Path:
    p = shared / "fer2013" / split
    if not p.is_dir():
        pytest.skip(f"FER2013 not found at {p}")
    return p


def test_shipped_model_is_int8_with_its_card(clf: FaceExpressionClassifier) -> None:
    card = clf.card
    assert card.name == "affectlite-face-ferplus" and card.task == "face"
    assert card.inputs[0].preprocessing["equalize"] == "histogram"  # trained on equalised crops (issue 29)
    assert card.labels == LABELS
    assert card.inputs[0].kind == "image" and card.inputs[0].dtype == "int8"
    assert card.inputs[0].shape[1:] == (48, 48, 1)
    assert "FER2013" in card.training["data"] and "public_test" in card.metrics.get("split", "")
    assert card.limitations
    assert DEFAULT_FACE_MODEL.stat().st_size <= 1_000_000


def test_int8_model_classifies_fer2013_images(clf: FaceExpressionClassifier, shared_datasets: Path) -> None:
    """A handful of public_test images per class: probabilities are valid and most classes are recognised."""
    cv2 = pytest.importorskip("cv2")
    root = _fer(shared_datasets)
    correct = total = 0
    for lab in ("happy", "surprise", "neutral"):  # the three clearest classes
        files = sorted((root / lab).glob("*.jpg"))[:20]
        crops = [cv2.imread(str(f), cv2.IMREAD_GRAYSCALE) for f in files]
        for p in clf.classify_crops(crops):
            assert len(p) == len(LABELS) and abs(sum(p) - 1.0) < 1e-4 and min(p) >= 0
            correct += LABELS[int(np.argmax(p))] == lab
            total += 1
    assert correct / total > 0.5, f"only {correct}/{total} right"


def test_classify_image_takes_a_fer_crop_directly(shared_datasets: Path) -> None:
    cv2 = pytest.importorskip("cv2")
    f = sorted((_fer(shared_datasets) / "happy").glob("*.jpg"))[0]
    img = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)
    fa = FaceAnalyzer(FaceOptions())
    (r,) = fa.classify_image(img)
    assert (r.box.w, r.box.h) == (48, 48) and r.detection_score == 1.0
    assert len(r.probabilities) == len(LABELS)
    fa.close()


def test_analyzer_finds_the_astronaut_and_no_face_in_coffee(astronaut: np.ndarray) -> None:
    pytest.importorskip("cv2")
    skd = pytest.importorskip("skimage.data")
    fa = FaceAnalyzer(FaceOptions(detect_width=320))
    (r,) = fa.classify_image(astronaut)
    assert 150 < r.box.x + r.box.w / 2 < 260 and 70 < r.box.y + r.box.h / 2 < 170
    assert r.label in LABELS and 0 < r.confidence <= 1
    assert fa.classify_image(np.ascontiguousarray(skd.coffee())) == ()
    fa.close()


def test_process_tracks_a_moving_face_with_one_id_and_expires_it(astronaut: np.ndarray) -> None:
    pytest.importorskip("cv2")
    from test_tracking import moving_face_frames

    fa = FaceAnalyzer(FaceOptions(detect_every=2, detect_width=0, min_face_size=30, track_expiry_s=0.3,
                                  smoothing=0.5, track_min_hits=1))
    frames = moving_face_frames(8)
    results = [fa.process(f, i * 66 * MS) for i, f in enumerate(frames)]
    assert all(len(r) == 1 for r in results)
    assert len({r[0].track_id for r in results}) == 1
    xs = [r[0].box.x for r in results]
    assert xs[-1] > xs[0] + 25  # boxes (detected and predicted) follow the face
    assert all(r[0].timestamp_ns == i * 66 * MS for i, r in enumerate(results))
    empty = np.full_like(frames[0], 120)
    t = 8 * 66 * MS
    assert fa.process(empty, t) == ()  # detection frame, nobody there
    fa.process(empty, t + 400 * MS)
    assert fa.tracker.tracks == []  # expired
    (again,) = fa.process(frames[0], t + 500 * MS)
    assert again.track_id > results[0][0].track_id
    fa.close()


def test_a_new_face_is_reported_once_confirmed(astronaut: np.ndarray) -> None:
    """Default options: a face shows up after ``track_min_hits`` detection passes, then in every frame."""
    pytest.importorskip("cv2")
    from test_tracking import moving_face_frames

    opts = FaceOptions(detect_width=0, min_face_size=30)
    fa = FaceAnalyzer(opts)
    results = [fa.process(f, i * 33 * MS) for i, f in enumerate(moving_face_frames(10, step=2))]
    delay = (opts.track_min_hits - 1) * opts.detect_every
    assert delay > 0
    assert all(r == () for r in results[:delay])
    assert all(len(r) == 1 for r in results[delay:])
    assert len({r[0].track_id for r in results[delay:]}) == 1
    fa.close()


def test_max_faces_and_min_face_size(astronaut: np.ndarray) -> None:
    pytest.importorskip("cv2")
    two = np.concatenate([astronaut, astronaut[:, ::-1]], axis=1)  # two faces side by side
    fa = FaceAnalyzer(FaceOptions(detect_width=0, max_faces=4, track_min_hits=1))
    assert len(fa.process(two, 0)) == 2
    fa1 = FaceAnalyzer(FaceOptions(detect_width=0, max_faces=1, track_min_hits=1))
    assert len(fa1.process(two, 0)) == 1
    big = FaceAnalyzer(FaceOptions(detect_width=0, min_face_size=200))
    assert big.process(two, 0) == ()


@pytest.mark.parametrize("scale", [1.1, 1.15])
def test_detect_scale_factor_reaches_the_haar_pyramid(astronaut: np.ndarray, scale: float) -> None:
    pytest.importorskip("cv2")
    fa = FaceAnalyzer(FaceOptions(detector="haar", detect_width=320, detect_scale_factor=scale))
    found = fa.classify_image(astronaut)
    assert fa.detector.scale_factor == scale  # type: ignore[attr-defined]
    assert any(150 < r.box.x + r.box.w / 2 < 260 and 70 < r.box.y + r.box.h / 2 < 170 for r in found)
    if scale == FaceOptions().detect_scale_factor:
        assert len(found) == 1  # the default pyramid gives no extra (false) face here
    fa.close()


def test_bad_frames_are_input_errors() -> None:
    fa = FaceAnalyzer(FaceOptions())
    with pytest.raises(InputError):
        fa.process(np.zeros((480, 640, 3), dtype=np.float64), 0)
    with pytest.raises(InputError):
        fa.classify_image(np.zeros((2, 3, 4, 5), dtype=np.uint8))


def test_a_non_face_model_is_refused(tmp_path: Path) -> None:
    card = json.loads(DEFAULT_FACE_MODEL.with_name("face.card.json").read_text())
    card["task"] = "voice"
    (tmp_path / "m.tflite").write_bytes(DEFAULT_FACE_MODEL.read_bytes())
    (tmp_path / "m.card.json").write_text(json.dumps(card))
    with pytest.raises(ModelCardError, match="face"):
        FaceExpressionClassifier.create(tmp_path / "m.tflite")


def test_eval_json_shape_with_synonyms_and_unknown_labels(tmp_path: Path, shared_datasets: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """A small folder with synonym names (happiness, anger) and an unknown label (contempt, skipped)."""
    root = _fer(shared_datasets)
    for src, dst in (("happy", "Happiness"), ("angry", "anger"), ("surprise", "surprised"), ("sad", "contempt")):
        d = tmp_path / dst
        d.mkdir()
        for f in sorted((root / src).glob("*.jpg"))[:6]:
            (d / f.name).write_bytes(f.read_bytes())
    res = evaluate_face(None, tmp_path)
    assert res["n"] == 18 and res["skipped"] == {"contempt": 6}
    assert set(res["per_class_recall"]) == {"happy", "angry", "surprise"}
    cm = np.asarray(res["confusion_matrix"])
    assert cm.shape == (7, 7) and cm.sum() == 18
    assert cm[LABELS.index("happy")].sum() == 6
    assert res["accuracy"] == pytest.approx(np.trace(cm) / 18, abs=1e-4)
    assert 0 <= res["macro_f1"] <= 1 and res["labels"] == list(LABELS)
    rc = eval_face_main(argparse.Namespace(data=str(tmp_path), model=None, limit=9))
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["n"] == 9
    with pytest.raises(InputError, match="not a folder"):
        evaluate_face(None, tmp_path / "missing")


def test_missing_detector_library_still_classifies_crops(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without OpenCV, crops are still classified; detection fails with the install hint."""
    from affectlite import detectors
    from affectlite.errors import BackendNotInstalledError

    def no_cv2(*a: object, **k: object) -> None:
        raise BackendNotInstalledError("the Haar face detector needs OpenCV; " + detectors.OPENCV_HINT)

    monkeypatch.setattr(detectors, "create_detector", no_cv2)
    fa = FaceAnalyzer(FaceOptions())
    (r,) = fa.classify_image(np.full((48, 48), 128, dtype=np.uint8))
    assert len(r.probabilities) == len(LABELS)
    with pytest.raises(BackendNotInstalledError, match="pip install"):
        fa.process(np.zeros((240, 320, 3), dtype=np.uint8), 0)


def test_flip_tta_averages_the_mirrored_crop(astronaut: np.ndarray) -> None:
    crop = astronaut[60:170, 170:280]
    plain = FaceExpressionClassifier.create()
    tta = FaceExpressionClassifier.create(flip_tta=True)
    (p,) = plain.classify_crops([crop])
    (pm,) = plain.classify_crops([np.ascontiguousarray(crop[:, ::-1])])
    (pt,) = tta.classify_crops([crop])
    np.testing.assert_allclose(pt, (np.asarray(p) + np.asarray(pm)) / 2, atol=1e-6)
    # the profile option reaches the analyzer's classifier: same averaged result through FaceAnalyzer
    assert not FaceAnalyzer(FaceOptions()).classifier.flip_tta
    fa = FaceAnalyzer(FaceOptions(flip_tta=True))
    assert fa.classifier.flip_tta
    np.testing.assert_allclose(fa.classifier.classify_crops([crop])[0], pt, atol=1e-6)


def test_eval_cli_flip_tta(tmp_path: Path, astronaut: np.ndarray, capsys: pytest.CaptureFixture[str]) -> None:
    """``affectlite eval face --flip-tta`` evaluates with mirror averaging; other modalities refuse the flag."""
    cv2 = pytest.importorskip("cv2")
    from affectlite.cli import main

    d = tmp_path / "happy"
    d.mkdir()
    crop = astronaut[60:170, 170:280]
    cv2.imwrite(str(d / "a.png"), crop[:, :, ::-1])
    cv2.imwrite(str(d / "b.png"), np.ascontiguousarray(crop[:, ::-1, ::-1]))
    assert main(["eval", "face", "--data", str(tmp_path), "--flip-tta"]) == 0
    out = json.loads(capsys.readouterr().out)
    # a crop and its mirror image get the same averaged prediction
    cm = np.asarray(out["confusion_matrix"])
    assert out["n"] == 2 and int(cm[LABELS.index("happy")].max()) == 2
    assert main(["eval", "voice", "--data", str(tmp_path), "--flip-tta"]) == 2
    assert "use it with 'affectlite eval face'" in capsys.readouterr().err
