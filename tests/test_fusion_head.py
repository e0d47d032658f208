"""The learned fusion head: trained on pseudo-pairs, int8 through the converter, used by strategy="learned"."""

from __future__ import annotations

import numpy as np
import pytest

from affectlite.errors import ModelError
from affectlite.fusion import Fusion, FusionHead, fuse_once
from affectlite.labels import LABELS
from affectlite.options import FusionOptions

pytest.importorskip("tensorflow")
K = len(LABELS)


def _pool(name: str, acc: float, n: int, seed: int) -> object:
    """A synthetic modality: right about ``acc`` of the time, with calibrated-looking probabilities."""
    from affectlite_convert.recipes.fusion import Pool

    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(K), n // K)
    pred = np.where(rng.random(len(y)) < acc, y, rng.integers(0, K, len(y)))
    logits = rng.normal(0, 0.5, (len(y), K))
    logits[np.arange(len(y)), pred] += 2.0
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    half = np.zeros(len(y), bool)
    half[::2] = True
    return Pool(name, p, y, np.ones(len(y)), half, f"synthetic {name}")


@pytest.fixture(scope="module")
def head_and_pairs(tmp_path_factory: pytest.TempPathFactory) -> tuple[FusionHead, dict[str, np.ndarray]]:
    from affectlite_convert.recipes.fusion import build_head, make_pairs

    pools = {"face": _pool("face", 0.6, 700, 1), "voice": _pool("voice", 0.55, 700, 2),
             "text": _pool("text", 0.5, 700, 3)}
    base = dict(FusionOptions().weights)
    pa = make_pairs(pools, "A", 150, 0)  # type: ignore[arg-type]
    pb = make_pairs(pools, "B", 150, 100)  # type: ignore[arg-type]
    out = tmp_path_factory.mktemp("head")
    made_for = {m: {"name": f"my-{m}", "sha256": f"{i}" * 64} for i, m in enumerate(("face", "voice", "text"))}
    _, tfl, res = build_head(pa, pb, base, out, notes=["synthetic"], pairs_per_class=150, epochs=25, hidden=16,
                             seed=0, threads=1, for_models=made_for)
    assert res.passed, res.failures
    head = FusionHead.load(tfl)
    assert head.trained_for == {m: v["sha256"] for m, v in made_for.items()}  # recorded in its card
    return head, pb


def test_head_is_int8_and_beats_each_single_modality_on_held_out_pairs(
        head_and_pairs: tuple[FusionHead, dict[str, np.ndarray]]) -> None:
    from affectlite_convert.recipes.fusion import head_inputs

    head, pb = head_and_pairs
    x = head_inputs(pb, ("face", "voice", "text"), dict(FusionOptions().weights))
    ph = np.stack([head(v) for v in x])
    np.testing.assert_allclose(ph.sum(1), 1.0, atol=0.02)
    acc_head = float((ph.argmax(1) == pb["y"]).mean())
    acc_face = float((pb["face_p"].argmax(1) == pb["y"]).mean())
    late = np.stack([fuse_once(face_probs=pb["face_p"][i], voice_probs=pb["voice_p"][i], text_probs=pb["text_p"][i],
                               options=FusionOptions(unknown_threshold=0.0)).probabilities for i in range(len(ph))])
    acc_late = float((late.argmax(1) == pb["y"]).mean())
    assert acc_head > acc_face + 0.03  # three independent noisy views beat the best one
    assert acc_head > acc_late - 0.08  # and is not far from late fusion (a broken head is near 1/7)


def test_learned_strategy_uses_the_head_for_two_modalities_and_passes_one_through(
        head_and_pairs: tuple[FusionHead, dict[str, np.ndarray]]) -> None:
    head, pb = head_and_pairs
    learned, late = FusionOptions(strategy="learned", unknown_threshold=0.0), FusionOptions(unknown_threshold=0.0)
    f, v = pb["face_p"][0], pb["voice_p"][0]
    one_l = fuse_once(face_probs=f, options=learned, head=head)
    one_d = fuse_once(face_probs=f, options=late, head=head)
    np.testing.assert_allclose(one_l.probabilities, one_d.probabilities, atol=1e-9)
    two_l = fuse_once(face_probs=f, voice_probs=v, options=learned, head=head)
    two_d = fuse_once(face_probs=f, voice_probs=v, options=late)
    assert not np.allclose(two_l.probabilities, two_d.probabilities, atol=1e-3)
    assert abs(sum(two_l.probabilities) - 1.0) < 1e-6
    assert fuse_once(options=learned, head=head).label == EmptyLabel.value


class EmptyLabel:
    value = fuse_once().label


def test_calibrate_head_fits_on_half_the_pairs_and_checks_on_the_other(
        head_and_pairs: tuple[FusionHead, dict[str, np.ndarray]]) -> None:
    from affectlite.fusion import apply_temperature, expected_calibration_error, fit_temperature
    from affectlite_convert.recipes.fusion import calibrate_head, head_inputs, subsets

    head, pb = head_and_pairs
    base = dict(FusionOptions().weights)
    section, m = calibrate_head(head, pb, base)
    assert section["temperature"] == m["temperature"] > 0 and "even rows" in section["split"]
    # recompute independently: raw int8 logits of the multimodal subsets, even rows fit, odd rows check
    multi = [s for s in subsets() if len(s) >= 2]
    xs = np.concatenate([head_inputs(pb, s, base) for s in multi]).astype(np.float32)
    y = np.concatenate([pb["y"] for _ in multi])
    z = np.stack([head.model.run(x[None, :])[0][0] for x in xs]).astype(np.float64)
    assert m["n_check"] == len(y) // 2
    assert section["temperature"] == pytest.approx(fit_temperature(z[::2], y[::2], kind="logits"), abs=1e-4)
    after = apply_temperature(z[1::2], section["temperature"], kind="logits")
    assert m["ece_after"] == pytest.approx(expected_calibration_error(after, y[1::2]), abs=1e-4)
    assert m["nll_after"] <= m["nll_before"] + 1e-3  # fitted on like data, it does not make the NLL worse


def test_close_releases_the_head_a_fusion_loaded_itself_but_not_one_passed_in() -> None:
    from affectlite.results import TextResult, VoiceResult

    p = np.full(len(LABELS), 0.02)
    p[LABELS.index("happy")] = 1.0 - 0.02 * (len(LABELS) - 1)
    x = np.concatenate([p, p, p, np.ones(3)]).astype(np.float32)

    own = Fusion(FusionOptions(strategy="learned"))
    head = own.head
    assert head is not None and abs(float(head(x).sum()) - 1.0) < 1e-6
    own.close()
    own.close()  # idempotent
    with pytest.raises(ModelError, match="closed"):
        head(x)
    # the closed fusion still answers from one modality (no head needed) and names the problem for two
    v = VoiceResult(tuple(float(a) for a in p), 0.9, 1_000_000_000, 2_000_000_000)
    t = TextResult(tuple(float(a) for a in p), 5, 2_000_000_000)
    assert own.update_voice(v, 2_000_000_000)
    with pytest.raises(ModelError, match="closed"):
        own.update_text(t, 2_000_000_000)

    mine = FusionHead.load()
    lent = Fusion(FusionOptions(strategy="learned"), head=mine)
    lent.close()
    assert abs(float(mine(x).sum()) - 1.0) < 1e-6  # the caller's head stays usable
    mine.close()


def test_voice_pool_learns_from_leave_one_corpus_out_outputs(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """With the voice recipe's cv folder, the voice pool is its leave-one-corpus-out outputs (not the shipped
    model's scores on its own training clips), split by speaker, with the runtime reliabilities."""
    from affectlite.card import card_path_for, load_card
    from affectlite.voice import DEFAULT_MODEL
    from affectlite_convert.recipes.fusion import voice_pool

    if not DEFAULT_MODEL.is_file():
        pytest.skip("shipped voice model missing")
    rng = np.random.default_rng(0)
    spk = [f"ravdess:{a:02d}" for a in range(1, 21) for _ in range(7)] + ["tess:OAF"] * 7 + ["tess:YAF"] * 7
    n = len(spk)
    p = rng.dirichlet(np.ones(K), n)
    cv = tmp_path / "cv"
    cv.mkdir()
    with pytest.raises(SystemExit, match=r"loco_outputs\.npz"):
        voice_pool(tmp_path, cv, None, tmp_path / "cache")
    np.savez(cv / "loco_outputs.npz", probs=p, reliability=np.linspace(0.1, 0.9, n), y=np.tile(np.arange(K), n // K),
             corpus=np.array([s.split(":")[0] for s in spk]), speaker=np.array(spk), gender=np.array([""] * n),
             files=np.array([f"f{i}" for i in range(n)]))
    pool = voice_pool(tmp_path, cv, None, tmp_path / "cache")
    t = load_card(card_path_for(DEFAULT_MODEL)).temperature
    logp = np.log(np.clip(p, 1e-6, 1)) / t
    want = np.exp(logp - logp.max(1, keepdims=True))
    np.testing.assert_allclose(pool.probs, want / want.sum(1, keepdims=True), atol=1e-6)
    assert pool.rel.min() == pytest.approx(0.1) and pool.rel.max() == pytest.approx(0.9)
    a_spk = {s for s, a in zip(spk, pool.half_a, strict=True) if a}
    b_spk = {s for s, a in zip(spk, pool.half_a, strict=True) if not a}
    assert not a_spk & b_spk and "tess:YAF" in a_spk and "tess:OAF" in b_spk
    assert "leave-one-corpus-out" in pool.note


def test_recipe_scores_obey_the_runtime_conflict_rule() -> None:
    from affectlite_convert.recipes.fusion import late_fuse, limit_pairs

    face = np.full(K, 0.02)
    face[LABELS.index("sad")] = 0.88
    voice = np.full(K, 0.02)
    voice[LABELS.index("angry")] = 0.88
    pairs = {"y": np.array([0]), "face_p": face[None] / face.sum(), "voice_p": voice[None] / voice.sum(),
             "face_r": np.ones(1), "voice_r": np.ones(1)}
    w = {"face": 1.0, "voice": 1.0, "text": 1.0}
    fused = late_fuse(pairs, ("face", "voice"), w)[0]
    cap = np.maximum(pairs["face_p"][0], pairs["voice_p"][0])
    assert (fused <= cap + 1e-9).all() and fused.sum() == pytest.approx(1.0)
    sure = np.zeros((1, K))
    sure[0, LABELS.index("angry")] = 1.0
    capped = limit_pairs(pairs, ("face", "voice"), w, sure)[0]
    assert capped[LABELS.index("angry")] == pytest.approx(cap[LABELS.index("angry")])
