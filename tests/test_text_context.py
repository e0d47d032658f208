"""Previous-turn context in the text featuriser, corpora and recipe (issue 25 (1), "if it pays").

A featuriser may carry blocks over the previous turn of the conversation (``source: "context"``): they own
their slice of the vector and their hash namespace, are empty without a previous turn, and leave a
featuriser without them untouched. The corpus readers give each utterance its real previous turn (also one
whose label was skipped). No TensorFlow needed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from affectlite.errors import InputError, ModelCardError
from affectlite.text import TextFeaturizer, default_text_spec
from affectlite.text_corpora import dedupe_corpus, read_text_corpus
from affectlite_convert.recipes.text_conv import CONTEXT_FEATURES, load_variant, majority_dedupe, text_spec

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets"
needs_data = pytest.mark.skipif(not (DATA / "meld").is_dir(), reason=f"datasets not found at {DATA}")


def _ctx_featurizer(weight: float = 0.5) -> TextFeaturizer:
    return TextFeaturizer.from_spec(text_spec("en-conv", 1 << 10, 1 << 10, weight))


def test_context_blocks_own_their_slice_and_are_empty_without_a_previous_turn() -> None:
    f = _ctx_featurizer()
    assert f.uses_context and f.dim == 2 * 1024 + 2 * CONTEXT_FEATURES
    alone, _, n = f.features("What?")
    for ctx in (None, ""):
        idx, _, _ = f.features("What?", ctx)
        np.testing.assert_array_equal(idx, alone)
    assert alone.max() < 2048  # the utterance's blocks only
    idx, val, n2 = f.features("What?", "I got married yesterday.")
    assert n2 == n == 2  # tokens of the utterance, not of its context
    ctx_part = idx >= 2048
    assert ctx_part.any() and (~ctx_part).any()
    assert np.linalg.norm(val) == pytest.approx(1.0, abs=1e-6)
    # down-weighted: each context block is scaled by 0.5 after its own L2 normalisation
    assert np.linalg.norm(val[ctx_part]) == pytest.approx(np.linalg.norm(val[~ctx_part]) * 0.5, rel=1e-5)
    # the same word as text and as context hashes to other buckets (the block name seeds the hash)
    from affectlite.text import FeatureBlock

    g = TextFeaturizer([FeatureBlock("word", "word", 1, 1, 1 << 16),
                        FeatureBlock("ctx_word", "word", 1, 1, 1 << 16, 0.5, "context")])
    a, _, _ = g.features("married", "married")
    assert len(a) == 2 and a[1] - (1 << 16) != a[0]


def test_a_text_without_tokens_gives_nothing_whatever_its_context() -> None:
    idx, val, n = _ctx_featurizer().features("   ", "I got married yesterday.")
    assert len(idx) == len(val) == n == 0


def test_a_featuriser_without_context_blocks_ignores_the_context() -> None:
    f = TextFeaturizer.from_spec(default_text_spec(1 << 10, 1 << 10))
    assert not f.uses_context
    a = f.transform(["What?", "no way"])
    b = f.transform(["What?", "no way"], ["I got married.", None])
    np.testing.assert_array_equal(a, b)


def test_spec_round_trip_keeps_the_context_blocks() -> None:
    f = _ctx_featurizer(0.3)
    spec = f.to_spec()
    assert [b.get("source", "text") for b in spec["blocks"]] == ["text", "text", "context", "context"]
    g = TextFeaturizer.from_spec(spec)
    texts, ctx = ["What?", "ok then", "wow"], ["I got married.", "", None]
    np.testing.assert_array_equal(f.transform(texts, ctx), g.transform(texts, ctx))
    plain = TextFeaturizer.from_spec(default_text_spec()).to_spec()
    assert all("source" not in b for b in plain["blocks"])  # old cards' specs are written as before
    bad = dict(spec, blocks=[*spec["blocks"][:3], dict(spec["blocks"][3], source="speaker")])
    with pytest.raises(ModelCardError, match="source"):
        TextFeaturizer.from_spec(bad)


def test_contexts_must_match_the_texts() -> None:
    f = _ctx_featurizer()
    with pytest.raises(InputError, match="one previous turn"):
        f.transform(["a", "b"], ["x"])
    with pytest.raises(InputError, match="context item 1"):
        f.transform(["a", "b"], ["x", 3])  # type: ignore[list-item]


def test_corpus_readers_give_the_real_previous_turn(tmp_path: Path) -> None:
    p = tmp_path / "dev_sent_emo.csv"
    p.write_text("Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID\n"
                 "1,I got married.,A,joy,positive,0,0\n2,What?,B,surprise,negative,0,1\n"
                 "3,Hi.,C,neutral,neutral,1,0\n", encoding="utf-8")
    c = read_text_corpus(p)
    assert c.contexts == ["", "I got married.", ""]
    emory = tmp_path / "emorynlp_dev_final.csv"  # the Peaceful turn is skipped but is still the next one's context
    emory.write_text("Utterance,Speaker,Emotion,Scene_ID,Utterance_ID,Season,Episode\n"
                     "Calm down.,A,Peaceful,1,1,1,1\nI am so mad!,B,Mad,1,2,1,1\n", encoding="utf-8")
    e = read_text_corpus(emory)
    assert e.texts == ["I am so mad!"] and e.contexts == ["Calm down."]
    sub = c.subset([2, 1])
    assert sub.contexts == ["", "I got married."]
    assert dedupe_corpus(c)[0].contexts == c.contexts


@needs_data
def test_real_corpora_have_previous_turns_where_they_are_dialogue() -> None:
    meld = read_text_corpus(DATA / "meld" / "dev_sent_emo.csv")
    assert (meld.texts[1], meld.contexts[1]) == ("What?", "Oh my God, he’s lost it. He’s totally lost it.")
    assert meld.contexts[0] == "" and sum(1 for x in meld.contexts if x) == 995
    ge = read_text_corpus(DATA / "goemotions" / "dev.tsv")
    assert not any(ge.contexts)  # Reddit comments: no previous turn
    cped = read_text_corpus(DATA / "zh" / "cped" / "valid_split.csv")
    assert len(cped.contexts) == len(cped) and sum(1 for x in cped.contexts if x) > 0.8 * len(cped)


@needs_data
def test_training_rows_keep_their_context_through_dedupe() -> None:
    d = load_variant("en-conv", DATA)
    meld = d["train"]["meld"]
    assert len(meld.contexts) == len(meld) and sum(1 for x in meld.contexts if x) > 0.8 * len(meld)
    out, _ = majority_dedupe(meld)
    assert len(out.contexts) == len(out)
