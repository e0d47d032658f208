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
