"""The text training recipe end to end on a slice of GoEmotions: data rules, training, int8 conversion, the
card's featuriser spec rebuilding the training features, and the runtime reproducing the recipe's figures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from affectlite.labels import LABELS

ROOT = Path(__file__).resolve().parents[1]
GOEMO = ROOT.parent / "shared" / "datasets" / "goemotions"
needs_goemo = pytest.mark.skipif(not (GOEMO / "train.tsv").is_file(),
                                 reason=f"GoEmotions not found at {GOEMO} (../shared/datasets/goemotions)")


def test_tune_offsets_improves_macro_f1_on_a_biased_model() -> None:
    from affectlite.text import classification_metrics
    from affectlite_convert.recipes.text import tune_offsets

    rng = np.random.default_rng(0)
    y = rng.integers(0, 7, 3000)
    logits = rng.normal(0, 1, (3000, 7))
    logits[np.arange(3000), y] += 1.5
    logits[:, 0] += 1.2  # a model biased towards class 0
    before = classification_metrics(y, logits.argmax(1))["macro_f1"]
    off, after = tune_offsets(logits, y)
    assert after > before + 0.05
    assert off[0] < 0  # the bias is taken back
    assert after == pytest.approx(classification_metrics(y, (logits + off).argmax(1))["macro_f1"])


def test_nb_ratios_by_hand() -> None:
    from affectlite_convert.recipes.text import nb_ratios

    # 3 rows, 2 features: row0 (class 0) has f0; row1 (class 1) has f0 and f1; row2 (class 1) has f1 (+ a stored 0)
    x = (np.array([0, 1, 3, 5]), np.array([0, 0, 1, 1, 0]), np.array([0.5, 0.2, 0.9, 0.4, 0.0]))
    r = nb_ratios(x, np.array([0, 1, 1]), 2)
    assert r.shape == (2, len(LABELS))
    # class 0: p = 1 + [1, 0] = [2, 1]; q = 1 + [1, 2] = [2, 3]  (the stored zero does not count)
    np.testing.assert_allclose(r[:, 0], np.log((np.array([2, 1]) / 3) / (np.array([2, 3]) / 5)))
    # class 1: p = 1 + [1, 2] = [2, 3]; q = [2, 1]
    np.testing.assert_allclose(r[:, 1], np.log((np.array([2, 3]) / 5) / (np.array([2, 1]) / 3)))
    np.testing.assert_allclose(r[:, 2:], 0.0)  # classes without rows: p = q = 1 everywhere


def test_nb_lr_reaches_its_optimum_and_stays_one_linear_layer() -> None:
    """At the optimum of the NB-LR objective, V = W * r with grad_W = (X^T G) * r + 2 l2 W = 0, i.e.
    V = -(X^T G) * r**2 / (2 l2): checked on a small random problem, so the gradient maths is right."""
    import scipy.sparse as sp

    from affectlite_convert.recipes.text import _class_weights, nb_ratios, train_linear

    rng = np.random.default_rng(0)
    n, dim = 300, 40
    y = rng.integers(0, len(LABELS), n)
    dense = (rng.random((n, dim)) < 0.15) * rng.random((n, dim))
    dense[np.arange(n), y] += 0.8  # feature c is a clue for class c
    m = sp.csr_matrix(dense)
    x = (m.indptr, m.indices, m.data)
    l2 = 1e-3
    v, b, _ = train_linear(x, y, dim, l2=l2, steps=2000, nb=True)
    z = m @ v.astype(np.float64) + b
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    _, cw = _class_weights(y)
    g = (p - np.eye(len(LABELS))[y]) * cw[y][:, None] / n
    r = nb_ratios(x, y, dim)
    np.testing.assert_allclose(v, -(m.T @ g) * r**2 / (2 * l2), rtol=0.01, atol=0.02)  # L-BFGS tolerance
    assert (z.argmax(1) == y).mean() > 0.9
    plain, _, _ = train_linear(x, y, dim, l2=l2, steps=2000)
    assert not np.allclose(plain, v, atol=1e-2)  # a different model from plain LR


def test_nb_needs_lbfgs() -> None:
    from affectlite.errors import ConversionError
    from affectlite_convert.recipes.text import train_linear

    x = (np.array([0, 1]), np.array([0]), np.array([1.0]))
    with pytest.raises(ConversionError, match="--optimizer lbfgs"):
        train_linear(x, np.array([0]), 1, optimizer="adam", nb=True)


@needs_goemo
def test_load_splits_rules() -> None:
    from affectlite_convert.recipes.text import load_splits

    s = load_splits(GOEMO)
    tr_t, tr_y = s["train"]
    dv_t, _ = s["dev"]
    st = s["stats"]
    assert len(set(tr_t)) == len(tr_t)  # deduplicated
    assert not set(tr_t) & set(dv_t)  # no dev text in training
    assert st["train_used"] == len(tr_t) and st["train_multilabel_dropped"] > 1000
    assert set(np.unique(tr_y)) == set(range(len(LABELS)))


def _goemotions_slice(tmp_path: Path, n_train: int, n_dev: int) -> Path:
    """The first rows of the shared GoEmotions train/dev TSVs (+ label files) in a temporary folder."""
    data = tmp_path / "goemo"
    data.mkdir()
    for name, n in (("train.tsv", n_train), ("dev.tsv", n_dev)):
        lines = (GOEMO / name).read_text(encoding="utf-8").splitlines(keepends=True)[:n]
        (data / name).write_text("".join(lines), encoding="utf-8")
    for name in ("emotions.txt", "ekman_mapping.json"):
        (data / name).write_text((GOEMO / name).read_text(encoding="utf-8"), encoding="utf-8")
    return data


@pytest.mark.convert
@needs_goemo
def test_recipe_end_to_end_on_a_slice(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")
    from affectlite.card import card_path_for, load_card
    from affectlite.text import TextClassifier, evaluate_text
    from affectlite_convert.recipes.text import main

    data = _goemotions_slice(tmp_path, n_train=3000, n_dev=500)
    out = tmp_path / "out"
    common = ["--data", str(data), "--out", str(out), "--n-word", "4096", "--n-char", "4096", "--steps", "80"]
    assert main([*common, "--stage", "select"]) == 0
    sel = json.loads((out / "select.json").read_text())
    assert len(sel["offsets"]) == len(LABELS)
    assert sel["holdout_macro_f1_with_offsets"] >= sel["holdout_macro_f1"]
    rc = main([*common, "--threads", "2", "--calibration-samples", "200", "--offsets", str(out / "select.json")])
    summary = json.loads((out / "summary.json").read_text())
    assert rc == 0, summary
    model = out / "text.tflite"
    card = load_card(card_path_for(model))
    assert card.task == "text" and card.inputs[0].shape[-1] == 8192 and card.temperature > 0
    assert card.training["logit_offsets"]["values"] == sel["offsets"]
    assert (out / "text.idf.npy").is_file() and card.inputs[0].preprocessing["idf_file"] == "text.idf.npy"
    # the runtime path (featuriser from the card, int8 model) reproduces the recipe's int8 figure
    res = evaluate_text(model, data / "dev.tsv")
    assert res["n"] == summary["int8"]["n"]
    assert res["macro_f1"] == pytest.approx(summary["int8"]["macro_f1"], abs=1e-6)
    assert abs(summary["int8"]["macro_f1"] - summary["float"]["macro_f1"]) < 0.03
    assert summary["float"]["accuracy"] > 0.4  # far above chance (1/7) even on this slice
    clf = TextClassifier.from_model(model)
    assert clf.classify("thank you so much, I love it").label == "happy"


@pytest.mark.convert
@needs_goemo
def test_select_with_cross_validated_offsets(tmp_path: Path) -> None:
    from affectlite_convert.recipes.text import _offsets_origin, main

    data = _goemotions_slice(tmp_path, n_train=1500, n_dev=200)
    out = tmp_path / "sel"
    assert main(["--data", str(data), "--out", str(out), "--n-word", "2048", "--n-char", "2048", "--steps", "40",
                 "--stage", "select", "--offset-folds", "3"]) == 0
    sel = json.loads((out / "select.json").read_text())
    cv = sel["cv"]
    assert sel["offsets_from"] == "cross-validation" and cv["folds"] == 3 and len(cv["per_fold_macro_f1"]) == 3
    assert cv["rows"] > 1000  # every training row is scored out of fold
    assert cv["oof_macro_f1_with_offsets"] >= cv["oof_macro_f1"]
    assert len(sel["offsets"]) == len(LABELS) and all(-1.0 <= v <= 1.0 for v in sel["offsets"])
    assert "3-fold cross-validation" in _offsets_origin(str(out / "select.json"))


def test_calibration_rows_include_the_largest_feature_values() -> None:
    from affectlite_convert.recipes.text import _calibration_rows

    rng = np.random.default_rng(0)
    n = 5000
    nnz = rng.integers(2, 40, n)
    nnz[1234] = 1  # the one-word text: a single feature of value 1.0 after L2 normalisation
    indptr = np.concatenate([[0], np.cumsum(nnz)])
    data = np.concatenate([np.full(k, 1.0 / np.sqrt(k), np.float32) for k in nnz])
    indices = np.zeros(len(data), np.int64)
    rows = _calibration_rows((indptr, indices, data), 100, np.random.default_rng(1), extremes=8)
    assert 1234 in rows and 100 <= len(rows) <= 108 and len(set(rows.tolist())) == len(rows)
    cal_max = max(data[indptr[r]:indptr[r + 1]].max() for r in rows)
    assert cal_max == data.max()
