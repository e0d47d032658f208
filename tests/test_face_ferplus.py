"""FER+ vote targets of the face recipe: the join, the vote rules, the validation set, the contrast conditions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from affectlite.labels import LABELS

HEADER = "file,ferplus_image,rmse,rmse_second,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"


def _tree(root: Path, files: list[str]) -> None:
    for f in files:
        (root / f).parent.mkdir(parents=True, exist_ok=True)
        (root / f).write_bytes(b"")


def test_vote_rules_on_crafted_rows(tmp_path: Path) -> None:
    from affectlite_convert.recipes import face_ferplus as fp

    train = ["train/angry/a1.jpg", "train/angry/a2.jpg", "train/fear/f1.jpg", "train/fear/f2.jpg",
             "train/happy/h1.jpg", "train/sad/s1.jpg"]
    val = ["public_test/happy/p1.jpg", "public_test/happy/p2.jpg", "public_test/sad/p3.jpg"]
    _tree(tmp_path, train + val)
    (tmp_path / "train" / "notes").mkdir()  # not a label folder: skipped, like load_split
    rows = [
        # file, twin, rmse, votes: neutral happiness surprise sadness anger disgust fear contempt unknown NF
        ("train/angry/a1.jpg", "fer1", 3.0, [2, 0, 0, 1, 5, 0, 0, 2, 0, 0]),   # anger, 8 of 10 valid
        ("train/angry/a2.jpg", "fer2", 45.0, [0, 0, 0, 0, 10, 0, 0, 0, 0, 0]),  # unmatched join
        ("train/fear/f1.jpg", "fer3", 5.0, [3, 0, 3, 0, 0, 0, 4, 0, 0, 0]),    # fear majority
        ("train/fear/f2.jpg", "fer4", 5.0, [1, 0, 0, 0, 0, 0, 0, 0, 4, 5]),    # not a face
        ("train/happy/h1.jpg", "fer5", 2.0, [0, 4, 0, 0, 0, 0, 0, 4, 2, 0]),   # tie happiness/contempt
        ("train/sad/s1.jpg", "fer6", 2.0, [0, 0, 0, 1, 0, 0, 0, 0, 6, 3]),     # unknown on top, one sad vote
        ("public_test/happy/p1.jpg", "fer5", 1.0, [0, 9, 1, 0, 0, 0, 0, 0, 0, 0]),  # twin of a train image
        ("public_test/happy/p2.jpg", "fer7", 1.0, [1, 8, 1, 0, 0, 0, 0, 0, 0, 0]),
        ("public_test/sad/p3.jpg", "fer8", 1.0, [0, 0, 0, 7, 0, 2, 0, 0, 1, 0]),
        ("train/angry/gone.jpg", "fer9", 1.0, [0, 0, 0, 0, 10, 0, 0, 0, 0, 0]),  # no such image: ignored
    ]
    (tmp_path / "ferplus_votes.csv").write_text(
        HEADER + "\n" + "\n".join(f"{f},{t},{r},60," + ",".join(map(str, v)) for f, t, r, v in rows) + "\n")

    assert fp.split_files(tmp_path, "train") == sorted(train)
    tr = fp.load_votes(tmp_path, "train", n=len(train))
    assert tr.matched.tolist() == [True, False, True, True, True, True]
    assert tr.votes[1].sum() == 0 and tr.twins[1] == ""
    soft, weight, keep = fp.soft_targets(tr)
    assert keep.tolist() == [True, False, True, False, True, True]
    a = LABELS.index
    assert soft[0, a("angry")] == pytest.approx(5 / 8) and soft[0, a("neutral")] == pytest.approx(2 / 8)
    assert weight[0] == pytest.approx(0.8)  # contempt votes dropped from the distribution and the weight
    assert soft[4, a("happy")] == pytest.approx(1.0) and weight[4] == pytest.approx(0.4)
    assert soft[5, a("sad")] == pytest.approx(1.0) and weight[5] == pytest.approx(0.1)
    assert np.allclose(soft[keep].sum(axis=1), 1.0) and (soft[~keep] == 0).all()
    assert fp.majority_labels(tr).tolist() == [a("angry"), -1, a("fear"), -1, -1, -1]

    va = fp.load_votes(tmp_path, "public_test")
    assert fp.majority_labels(va).tolist() == [a("happy"), a("happy"), a("sad")]
    assert fp.validation_mask(va, tr).tolist() == [False, True, True]  # p1 shares its FER+ twin with h1
    xtr = np.stack([np.full((4, 4), i, np.uint8) for i in range(len(train))])
    xva = np.stack([np.full((4, 4), v, np.uint8) for v in (50, 3, 60)])  # p2 has the pixels of train image 3
    assert fp.validation_mask(va, tr, xva, xtr).tolist() == [False, False, True]

    with pytest.raises(ValueError, match="would not line up"):
        fp.load_votes(tmp_path, "train", n=len(train) - 1)
    with pytest.raises(FileNotFoundError, match="--targets fer2013"):
        fp.load_votes(tmp_path, "train", csv_path=tmp_path / "missing.csv")


def test_the_shared_votes_file_reproduces_the_published_label_noise(shared_datasets: Path) -> None:
    """The README's figures: 495 unmatched rows; ~12% of fear and ~30% of disgust keep their label."""
    from affectlite_convert.recipes import face_ferplus as fp

    data = shared_datasets / "fer2013"
    tr, va = fp.load_votes(data, "train"), fp.load_votes(data, "public_test")
    assert len(tr.matched) == 28709 and len(va.matched) == 3589
    assert (~tr.matched).sum() + (~va.matched).sum() == 495
    ytr = np.array([LABELS.index(f.split("/")[1]) for f in fp.split_files(data, "train")])
    maj = fp.majority_labels(tr)
    keep = {lab: float((maj[ytr == k] == k).mean()) for k, lab in enumerate(LABELS)}
    assert 0.09 < keep["fear"] < 0.15 and 0.24 < keep["disgust"] < 0.34 and keep["happy"] > 0.85
    _, weight, ok = fp.soft_targets(tr)
    assert ok.sum() > 28000 and 0.85 < weight[ok].mean() < 0.97
    mask = fp.validation_mask(va, tr)
    assert 3200 < mask.sum() < 3589


def test_contrast_conditions_are_monotonic_and_deterministic() -> None:
    from affectlite_convert.recipes import face_ferplus as fp

    x = np.tile(np.arange(0, 256, 16, dtype=np.uint8), (3, 16, 1))  # grey ramps
    assert np.array_equal(fp.contrast_variant(x, "equalised (as stored)"), x)
    for c in fp.CONTRAST_CONDITIONS[1:]:
        v = fp.contrast_variant(x, c, seed=1)
        assert v.dtype == np.uint8 and v.shape == x.shape
        assert (np.diff(v.astype(int), axis=2) >= 0).all(), c  # order of grey levels kept
        assert np.array_equal(v, fp.contrast_variant(x, c, seed=1))
    assert fp.contrast_variant(x, "low contrast").std() < 0.5 * x.std()
    assert fp.contrast_variant(x, "dark").mean() < x.mean() < fp.contrast_variant(x, "bright").mean()
    with pytest.raises(ValueError, match="unknown condition"):
        fp.contrast_variant(x, "sepia")
    r = fp.evaluate(np.eye(len(LABELS))[[0, 1, 1, 2]], np.array([0, 1, 2, 2]))
    assert r["accuracy"] == 0.75 and r["confusion"][2][1] == 1 and r["per_class_recall"]["sad"] == 0.5


def test_shipped_model_agrees_with_the_ferplus_majority_through_the_runtime(shared_datasets: Path) -> None:
    """The shipped int8 model, through the runtime path, on 700 FER+ majority images of public_test; the
    same images under a dark, low-contrast exposure give nearly the same answers (runtime equalisation)."""
    pytest.importorskip("cv2")
    import cv2

    from affectlite.face import DEFAULT_FACE_MODEL
    from affectlite_convert.recipes import face_ferplus as fp

    data = shared_datasets / "fer2013"
    tr, va = fp.load_votes(data, "train"), fp.load_votes(data, "public_test")
    files = fp.split_files(data, "public_test")
    idx = np.flatnonzero(fp.validation_mask(va, tr))[::4][:700]
    x = np.stack([cv2.imread(str(data / files[i]), cv2.IMREAD_GRAYSCALE) for i in idx])
    y = fp.majority_labels(va)[idx]
    r = fp.evaluate(fp.classify(DEFAULT_FACE_MODEL, x), y)
    assert r["accuracy"] > 0.78, r  # FER2013-label models reach ~0.65 here
    dim = fp.contrast_variant(fp.contrast_variant(x, "low contrast"), "dark")
    r_dim = fp.evaluate(fp.classify(DEFAULT_FACE_MODEL, dim), y)
    assert abs(float(r_dim["accuracy"]) - float(r["accuracy"])) < 0.03, (r["accuracy"], r_dim["accuracy"])
