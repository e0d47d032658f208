"""The voice training recipe: RAVDESS parsing, leave-actors-out folds, augmentation shapes, CV summary."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from affectlite import audio_features as af
from affectlite.labels import LABELS
from affectlite_convert.recipes import voice as recipe


def test_folds_are_gender_balanced_disjoint_and_cover_all_actors() -> None:
    folds = recipe.make_folds(list(range(1, 21)), 5)
    assert len(folds) == 5
    flat = [a for f in folds for a in f]
    assert sorted(flat) == list(range(1, 21)) and len(set(flat)) == 20
    for f in folds:
        assert len(f) == 4
        assert sum(a % 2 for a in f) == 2  # RAVDESS: odd actor = male


def test_list_ravdess_maps_labels_and_actors(tmp_path: Path) -> None:
    for name in ("03-01-02-01-01-01-07.wav", "03-01-06-02-02-02-08.flac", "03-01-08-01-01-01-07.wav",
                 "notes.txt", "1001_DFA_ANG_XX.wav"):
        p = tmp_path / "Actor_07" / name
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(b"")
    items = recipe.list_ravdess(tmp_path)
    got = sorted((p.name, LABELS[y], a) for p, y, a in items)
    assert got == [("03-01-02-01-01-01-07.wav", "neutral", 7),       # calm -> neutral
                   ("03-01-06-02-02-02-08.flac", "fear", 8),
                   ("03-01-08-01-01-01-07.wav", "surprise", 7)]
    assert recipe.main(["--data", str(tmp_path / "nothing"), "--out", str(tmp_path / "o"), "--stage", "cv"]) == 2


def test_epoch_batch_shapes_labels_and_normalisation() -> None:
    rng = np.random.default_rng(0)
    T = af.n_frames(af.window_samples(recipe.SPEC), recipe.SPEC)
    feats = [[(rng.standard_normal((T + 40 + i, 64)) - 8).astype(np.float32) for i in range(6)]
             for _ in recipe.SPEEDS]
    y = np.array([0, 1, 2, 3, 4, 5])
    X, Y, W = recipe._epoch_data(rng, feats, np.arange(6), y, recipe._noise_shape(), np.ones(7, np.float32))
    assert X.shape == (6, T, 64, 1) and X.dtype == np.float32
    assert np.allclose(Y.sum(axis=1), 1.0) and (Y >= 0).all()
    assert np.allclose(W, 1.0)
    assert np.isfinite(X).all() and abs(float(X.mean())) < 0.5
    # calibration windows are plain normalised crops (no augmentation)
    cal = recipe._calibration_windows(feats[0], np.arange(6), 4, 1)
    assert cal.shape == (4, T, 64, 1)
    assert np.allclose(cal.reshape(4, -1).mean(axis=1), 0.0, atol=1e-4)


def test_cv_summary_pools_out_of_fold_predictions(tmp_path: Path) -> None:
    y = np.array([0, 1, 2, 0, 1, 2])
    eye = np.eye(len(LABELS))
    folds = [
        {"actors": [1, 2], "val_idx": [0, 1, 2], "history": [{"epoch": 5, "val_uar": 0.5}],
         "probs_float": eye[[0, 1, 2]].tolist(), "probs_int8": eye[[0, 1, 1]].tolist(),
         "float": {"uar": 1.0, "accuracy": 1.0}, "int8": {"uar": 2 / 3, "accuracy": 2 / 3}},
        {"actors": [3, 4], "val_idx": [3, 4, 5], "history": [{"epoch": 5, "val_uar": 0.7}],
         "probs_float": eye[[0, 2, 2]].tolist(), "probs_int8": eye[[0, 2, 2]].tolist(),
         "float": {"uar": 2 / 3, "accuracy": 2 / 3}, "int8": {"uar": 2 / 3, "accuracy": 2 / 3}},
    ]
    (tmp_path / "cv").mkdir()
    rep = recipe.summarise_cv(folds, y, tmp_path)
    assert rep["float"]["uar_mean_over_folds"] == pytest.approx(5 / 6)
    assert rep["float"]["pooled"]["uar"] == pytest.approx((1 + 0.5 + 1) / 3)
    assert rep["int8"]["pooled"]["per_class_recall"]["sad"] == pytest.approx(0.5)
    assert rep["val_uar_curve"] == {"5": pytest.approx(0.6)}
    assert (tmp_path / "cv" / "report.json").is_file()
    m = recipe._cv_metrics(rep)
    assert "leave-actors-out" in m["split"] and m["int8"]["uar"] == pytest.approx(2 / 3)
    lims = recipe._limitations(["x"], rep)
    assert lims[0] == "x" and lims[1].startswith(recipe._WEAK)
