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
