"""Histogram equalisation in the face preprocessing: the card key, the runtime, and old cards unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from affectlite.errors import InputError, ModelCardError
from affectlite.preprocess import equalize_hist, parse_image_spec, prepare_face

SPEC = {"color": "grey", "size": [48, 48], "scale": 1 / 255, "mean": 0.5, "std": 0.25, "resize": "area",
        "crop_margin": 0.1}


def _face(shared: Path, name: str = "happy") -> np.ndarray:
    cv2 = pytest.importorskip("cv2")
    f = sorted((shared / "fer2013" / "public_test" / name).iterdir())[0]
    im: np.ndarray = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)
    return im


def test_equalize_hist_is_opencvs_mapping() -> None:
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(3)
    for k in range(60):
        im = rng.normal(60 + 2 * k, 5 + k, size=(48 + k, 40)).clip(0, 255).astype(np.uint8)
        assert np.array_equal(equalize_hist(im), cv2.equalizeHist(im)), k
    flat = np.full((8, 8), 77, np.uint8)
    assert np.array_equal(equalize_hist(flat), flat)  # one grey level: unchanged (as OpenCV)
    with pytest.raises(InputError, match="2-D grey"):
        equalize_hist(np.zeros((4, 4, 3), np.uint8))


def test_equalised_input_does_not_depend_on_contrast_or_exposure(shared_datasets: Path) -> None:
    im = _face(shared_datasets)
    spec = parse_image_spec({**SPEC, "equalize": "histogram"})
    ref = prepare_face(im, spec)
    f = im.astype(np.float64) / 255
    for changed in ((f - 0.5) * 0.4 + 0.5, 0.8 * f ** 2, f ** 0.5):
        x = prepare_face(np.rint(changed * 255).astype(np.uint8), spec)
        # monotonic grey-level changes only merge neighbouring levels: the input moves by a few grey levels
        assert float(np.abs(x - ref).mean()) * 0.25 * 255 < 6.0
    plain = parse_image_spec(SPEC)
    low = np.rint(((f - 0.5) * 0.4 + 0.5) * 255).astype(np.uint8)
    assert float(np.abs(prepare_face(low, plain) - prepare_face(im, plain)).mean()) * 0.25 * 255 > 25.0


def test_card_key_is_parsed_and_old_cards_keep_the_plain_pipeline() -> None:
    assert parse_image_spec(SPEC).equalize == "none"
    assert parse_image_spec({**SPEC, "equalize": "Histogram"}).equalize == "histogram"
    with pytest.raises(ModelCardError, match="'equalize' must be one of none, histogram"):
        parse_image_spec({**SPEC, "equalize": "clahe"})
    with pytest.raises(ModelCardError, match="grey models only"):
        parse_image_spec({**SPEC, "color": "rgb", "equalize": "histogram"})
    rng = np.random.default_rng(0)
    crop = rng.integers(90, 140, size=(96, 96)).astype(np.uint8)
    x_plain = prepare_face(crop, parse_image_spec(SPEC))
    # the plain pipeline is resize -> uint8 -> normalise, with no contrast change
    assert abs(float(x_plain.std()) * 0.25 * 255 - float(crop.std()) / 2) < 15
    x_eq = prepare_face(crop, parse_image_spec({**SPEC, "equalize": "histogram"}))
    pix = np.rint((x_eq[0, :, :, 0] * 0.25 + 0.5) * 255).astype(np.uint8)
    from affectlite.preprocess import resize

    small = np.clip(np.rint(resize(crop, (48, 48), "area")), 0, 255).astype(np.uint8)
    assert np.array_equal(pix, equalize_hist(small))  # equalised after the resize, on the uint8 grid


def test_runtime_reads_equalize_from_the_model_card(tmp_path: Path, shared_datasets: Path) -> None:
    """A copy of the shipped model whose card asks for equalisation classifies the equalised crop."""
    import json
    import shutil

    from affectlite.face import DEFAULT_FACE_MODEL, FaceExpressionClassifier

    model = tmp_path / "face.tflite"
    shutil.copy(DEFAULT_FACE_MODEL, model)
    card = json.loads(DEFAULT_FACE_MODEL.with_suffix(".card.json").read_text())
    old_pre = dict(card["inputs"][0]["preprocessing"])
    card["inputs"][0]["preprocessing"]["equalize"] = "histogram"
    model.with_suffix(".card.json").write_text(json.dumps(card))
    im = _face(shared_datasets, "sad")
    low = np.rint((im.astype(np.float64) - 128) * 0.35 + 128).astype(np.uint8)
    clf = FaceExpressionClassifier.create(str(model))
    assert clf.spec.equalize == "histogram"
    (p_eq,) = clf.classify_crops([low])
    (p_ref,) = clf.classify_crops([equalize_hist(low)])
    assert np.allclose(p_eq, p_ref)
    clf.close()
    if "equalize" not in old_pre:  # the shipped card (before FER+) did not equalise: contrast reaches the model
        old = FaceExpressionClassifier.create(str(DEFAULT_FACE_MODEL))
        assert old.spec.equalize == "none"
        old.close()
