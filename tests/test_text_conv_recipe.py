"""The conversational text recipe (affectlite_convert.recipes.text_conv): corpus weighting, deduplication,
splits by dialogue / post with no validation text in training, offsets for the mean goal metric, and the
weighted naive-Bayes ratios. No TensorFlow needed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from affectlite.labels import LABELS
from affectlite.text_corpora import TextCorpus
from affectlite_convert.recipes.text import nb_ratios
from affectlite_convert.recipes.text_conv import (
    GOAL_METRIC,
    _check_half,
    _half,
    domain_weights,
    load_variant,
    majority_dedupe,
    tune_mean_goal_offsets,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets"
needs_data = pytest.mark.skipif(not (DATA / "meld").is_dir(), reason=f"datasets not found at {DATA}")


def test_domain_weights_give_every_corpus_the_same_total() -> None:
    dom = [0] * 90 + [1] * 10
    y = np.array([0] * 80 + [1] * 10 + [0] * 5 + [2] * 5)
    for power in (0.0, 0.5, 1.0):
        w = domain_weights(dom, y, power)
        assert w.mean() == pytest.approx(1.0)
        assert w[:90].sum() == pytest.approx(w[90:].sum())  # each corpus carries half
    w = domain_weights(dom, y, 1.0)
    assert w[80] / w[0] == pytest.approx(85 / 10)  # within a corpus: pooled class weights n_neutral / n_happy
    w0 = domain_weights(dom, y, 0.0)
    assert len(set(np.round(w0[:90], 9))) == 1  # power 0: only the corpus scaling


def test_split_half_check_is_independent_of_the_holdout_split() -> None:
    # fixed-length dialogue ids, like CPED's: a second CRC-32 split of the held-out half was one-sided
    ids = [f"{i:06d}" for i in range(2000)]
    c = TextCorpus("cped:x", "cped", [f"t{i}" for i in range(2000)], np.zeros(2000, np.int64), ids)
    held = c.subset(_half(c, 0)[0])
    assert len(_half(held, 1000)[0]) in (0, len(held))  # the trap this guards against
    a, b = _check_half(held, 1000)
    assert len(a) + len(b) == len(held) and 0.4 < len(a) / len(held) < 0.6
    assert not {held.groups[i] for i in a} & {held.groups[i] for i in b}  # by dialogue


def test_majority_dedupe_and_exclusion() -> None:
    c = TextCorpus("t", "meld", ["Yeah.", "yeah. ", "Yeah.", "No!", "No!", "Hi", "Dev text"],
                   np.array([0, 0, 1, 3, 2, 1, 4]), ["a"] * 7)
    out, st = majority_dedupe(c, exclude={"dev text"})
    assert sorted(out.texts) == ["Hi", "Yeah."]  # "No!" is a tie (angry vs sad): dropped
    assert LABELS[int(out.y[out.texts.index("Yeah.")])] == "neutral"  # 2 neutral votes to 1
    assert st == {"rows": 7, "excluded_in_validation": 1, "ties_dropped": 1, "kept": 2}


def test_weighted_nb_ratios_equal_repeated_rows() -> None:
    # weight 2 on a row == that row twice
    indptr = np.array([0, 2, 3, 5])
    indices = np.array([0, 1, 1, 0, 2], np.int32)
    data = np.ones(5, np.float32)
    y = np.array([0, 1, 0])
    r_w = nb_ratios((indptr, indices, data), y, 3, weights=np.array([2.0, 1.0, 1.0]))
    rep = (np.array([0, 2, 4, 5, 7]), np.array([0, 1, 0, 1, 1, 0, 2], np.int32), np.ones(7, np.float32))
    r_rep = nb_ratios(rep, np.array([0, 0, 1, 0]), 3)
    np.testing.assert_allclose(r_w, r_rep)


def test_offsets_raise_the_mean_goal_of_a_biased_model() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 600)
    z = np.eye(7)[y] * 2.0 + rng.normal(0, 1.0, (600, 7))
    z[:, 0] += 2.5  # biased towards neutral
    val = {"meld_dev": TextCorpus("m", "meld", ["x"] * 300, y[:300], ["g"] * 300),
           "goemotions_dev": TextCorpus("g", "goemotions", ["x"] * 300, y[300:], ["g"] * 300)}
    logits = {"meld_dev": z[:300], "goemotions_dev": z[300:]}
    from affectlite.text import classification_metrics

    before = np.mean([classification_metrics(val[k].y, np.argmax(logits[k], 1))[GOAL_METRIC[k]] for k in val])
    off, after = tune_mean_goal_offsets(logits, val, list(val))
    assert after > before + 0.1 and off[0] < 0


@needs_data
@pytest.mark.parametrize("variant", ["en-conv", "zh"])
def test_splits_keep_validation_apart(variant: str) -> None:
    d = load_variant(variant, DATA)
    val_texts = {" ".join(t.split()).casefold() for c in d["val"].values() for t in c.texts}
    for name, c in d["train"].items():
        assert len(c) > 900, name
        assert not val_texts & {" ".join(t.split()).casefold() for t in c.texts}, name
        assert len({" ".join(t.split()).casefold() for t in c.texts}) == len(c), name  # deduplicated
    if variant == "zh":
        usual_fit = set(d["train"]["smp2020_usual"].groups)
        assert usual_fit and not usual_fit & set(d["val"]["smp2020_usual_holdout"].groups)  # by post
        assert not set(d["train"]["cped"].groups) & set(d["val"]["cped_valid_holdout"].groups)  # by dialogue
        assert 900 <= len(d["val"]["smp2020_usual_holdout"]) <= 1100
    else:
        assert set(d["val"]) == {"meld_dev", "dailydialog_validation", "goemotions_dev"}
