"""Fusion: calibration maths, reliability/age weighting, missing and stale modalities, smoothing, the
unknown threshold, primary-face choice, change events, and that no subset of inputs crashes it."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from affectlite.errors import CalibrationError, ConfigError, InputError
from affectlite.fusion import (
    PRIOR_WEIGHT,
    ChangeDetector,
    Fusion,
    apply_temperature,
    face_reliability,
    fit_temperature,
    fuse_once,
    fuse_probabilities,
    primary_face,
    text_reliability,
    valence_arousal,
    voice_reliability,
)
from affectlite.labels import LABELS, UNKNOWN, VALENCE_AROUSAL
from affectlite.options import FusionOptions
from affectlite.results import Box, EmotionResult, FaceResult, TextResult, VoiceResult

S = 1_000_000_000  # ns per second


def onehotish(label: str, peak: float = 0.8) -> tuple[float, ...]:
    rest = (1.0 - peak) / (len(LABELS) - 1)
    return tuple(peak if lab == label else rest for lab in LABELS)


def face(track: int, label: str, *, side: float = 120.0, x: float = 100.0, score: float = 0.9,
         peak: float = 0.8, t: int = 0) -> FaceResult:
    return FaceResult(track_id=track, box=Box(x, 100.0, side, side), detection_score=score,
                      probabilities=onehotish(label, peak), timestamp_ns=t)


def voice(label: str, end_ns: int, *, vad: float = 1.0, peak: float = 0.8) -> VoiceResult:
    return VoiceResult(probabilities=onehotish(label, peak), voice_activity=vad, start_ns=end_ns - 2 * S,
                       end_ns=end_ns)


def text(label: str, t: int, *, n_tokens: int = 12, peak: float = 0.8) -> TextResult:
    return TextResult(probabilities=onehotish(label, peak), n_tokens=n_tokens, timestamp_ns=t)


# ------------------------------------------------------------------------------------------ calibration
def _sample(p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    u = rng.random((p.shape[0], 1))
    return np.minimum((np.cumsum(p, axis=1) < u).sum(axis=1), p.shape[1] - 1)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("t_true", [0.5, 1.0, 2.5])
def test_fit_temperature_recovers_the_temperature_of_overconfident_logits(t_true: float) -> None:
    rng = np.random.default_rng(1)
    true_logits = rng.normal(0, 2.0, size=(8000, 7))
    p = _softmax(true_logits)
    y = _sample(p, rng)
    # a model that reports logits scaled by t_true is calibrated after dividing by t_true
    t = fit_temperature(true_logits * t_true, y, kind="logits")
    assert t == pytest.approx(t_true, rel=0.08)
    # the same from probabilities (log p differs from the logits only by a per-row constant; tiny
    # probabilities are clipped at 1e-6, hence the tolerance)
    t_p = fit_temperature(_softmax(true_logits * t_true), y)
    assert t_p == pytest.approx(t, rel=0.02)


def test_fit_temperature_lowers_nll_and_apply_temperature_matches() -> None:
    rng = np.random.default_rng(2)
    logits = rng.normal(0, 1.0, size=(3000, 7))
    y = _sample(_softmax(logits), rng)
    over = logits * 3.0
    t = fit_temperature(over, y, kind="logits")

    def nll(p: np.ndarray) -> float:
        return float(-np.mean(np.log(p[np.arange(len(y)), y])))

    assert nll(apply_temperature(over, t, kind="logits")) < nll(apply_temperature(over, 1.0, kind="logits"))
    np.testing.assert_allclose(apply_temperature(over, t, kind="logits"), _softmax(over / t), atol=1e-12)
    # T = 1 leaves probabilities unchanged; a huge T flattens towards uniform
    p = _softmax(over[:5])
    np.testing.assert_allclose(apply_temperature(p, 1.0), p, atol=1e-6)
    np.testing.assert_allclose(apply_temperature(p, 1e6), np.full((5, 7), 1 / 7), atol=1e-4)
    one = apply_temperature(p[0], 2.0)
    assert one.shape == (7,) and one.sum() == pytest.approx(1.0)


@pytest.mark.parametrize("x,y,match", [
    (np.zeros((5,)), np.zeros(5, int), "2-D"),
    (np.zeros((5, 7)), np.zeros(4, int), "one label per row"),
    (np.zeros((5, 7)), np.full(5, 9), r"\[0, 6\]"),
    (np.full((5, 7), np.nan), np.zeros(5, int), "NaN"),
    (np.zeros((1, 7)), np.zeros(1, int), "at least 2"),
])
def test_fit_temperature_rejects_bad_input(x: np.ndarray, y: np.ndarray, match: str) -> None:
    with pytest.raises(CalibrationError, match=match):
        fit_temperature(x, y)


def test_expected_calibration_error_maths_and_temperature_lowers_it() -> None:
    from affectlite.fusion import expected_calibration_error as ece

    # hand-made: two rows at 0.9 (one right), two at 0.6 (both right) -> |0.5-0.9|*2/4 + |1-0.6|*2/4 = 0.4
    p = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.4, 0.6]])
    assert ece(p, np.array([0, 1, 0, 1]), bins=10) == pytest.approx(0.4)
    assert ece(np.eye(3), np.arange(3)) == 0.0  # sure and right
    rng = np.random.default_rng(4)
    logits = rng.normal(0, 2.0, size=(6000, 7))
    y = _sample(_softmax(logits), rng)
    assert ece(_softmax(logits), y) < 0.03  # labels drawn from the probabilities: calibrated
    over = logits * 2.5
    t = fit_temperature(over, y, kind="logits")
    assert ece(_softmax(over), y) > 0.1 > ece(apply_temperature(over, t, kind="logits"), y) * 3
    with pytest.raises(CalibrationError, match="bins"):
        ece(p, np.array([0, 1, 0, 1]), bins=0)
    with pytest.raises(CalibrationError, match="one label per row"):
        ece(p, np.array([0, 1]))


def test_apply_temperature_rejects_bad_temperature() -> None:
    with pytest.raises(CalibrationError, match="positive"):
        apply_temperature(np.ones(7) / 7, 0.0)


# ------------------------------------------------------------------------------------------ pooling maths
def test_log_pool_maths_with_prior() -> None:
    pf = np.array(onehotish("happy", 0.7))
    pv = np.array(onehotish("sad", 0.6))
    fused, mw = fuse_probabilities({"face": pf, "voice": pv}, {"face": 0.9, "voice": 0.3})
    denom = 0.9 + 0.3 + PRIOR_WEIGHT
    expect = np.exp((0.9 * np.log(pf) + 0.3 * np.log(pv) + PRIOR_WEIGHT * np.log(np.full(7, 1 / 7))) / denom)
    expect /= expect.sum()
    np.testing.assert_allclose(fused, expect, atol=1e-12)
    assert mw == pytest.approx({"face": 0.75, "voice": 0.25})
    lin, _ = fuse_probabilities({"face": pf, "voice": pv}, {"face": 0.9, "voice": 0.3}, pool="linear")
    np.testing.assert_allclose(lin, (0.9 * pf + 0.3 * pv + PRIOR_WEIGHT / 7) / denom, atol=1e-12)


def test_agreeing_modalities_and_weak_evidence() -> None:
    strong = fuse_once(face_probs=onehotish("angry", 0.6), options=FusionOptions(unknown_threshold=0.0))
    weak = fuse_once(face_probs=onehotish("angry", 0.6), face_reliability=0.05,
                     options=FusionOptions(unknown_threshold=0.0))
    assert strong.label == weak.label == "angry"
    assert weak.confidence < strong.confidence < 0.6 + 1e-9  # weak lone evidence is flattened, never sharpened
    both = fuse_once(face_probs=onehotish("angry", 0.6), voice_probs=onehotish("angry", 0.6))
    assert both.label == "angry" and both.modality_weights.keys() == {"face", "voice"}


def test_missing_modality_renormalises() -> None:
    opts = FusionOptions()
    only_face = fuse_once(face_probs=onehotish("happy"), options=opts)
    assert only_face.modality_weights == {"face": 1.0}
    with_empty = fuse_once(face_probs=onehotish("happy"), voice_probs=None, text_probs=[0.0] * 7, options=opts)
    assert with_empty.probabilities == pytest.approx(only_face.probabilities)
    three = fuse_once(face_probs=onehotish("happy"), voice_probs=onehotish("sad"), text_probs=onehotish("fear"),
                      text_reliability=0.0, options=opts)
    assert set(three.modality_weights) == {"face", "voice"}
    assert sum(three.modality_weights.values()) == pytest.approx(1.0)
    assert three.modality_weights["face"] == pytest.approx(opts.weights["face"] /
                                                           (opts.weights["face"] + opts.weights["voice"]))


def test_nothing_gives_the_empty_result() -> None:
    r = fuse_once()
    assert r.is_empty and r.label == UNKNOWN and r.confidence == 0.0
    assert fuse_once(face_probs=onehotish("sad"), face_reliability=0.0).is_empty


def test_wrong_length_probabilities_raise_input_error() -> None:
    with pytest.raises(InputError, match="7 values"):
        fuse_once(face_probs=[0.5, 0.5])


def test_unknown_threshold() -> None:
    flat = [0.2, 0.16, 0.14, 0.13, 0.13, 0.12, 0.12]
    r = fuse_once(text_probs=flat, options=FusionOptions(unknown_threshold=0.35))
    assert r.label == UNKNOWN
    assert r.probabilities[0] == max(r.probabilities)  # the probabilities are still reported
    r2 = fuse_once(text_probs=flat, options=FusionOptions(unknown_threshold=0.1))
    assert r2.label == "neutral"
    r3 = fuse_once(text_probs=onehotish("disgust", 0.9), options=FusionOptions(unknown_threshold=0.35))
    assert r3.label == "disgust" and r3.confidence >= 0.35


def test_valence_arousal_is_the_expected_circumplex_position() -> None:
    for lab in LABELS:
        one = [1.0 if x == lab else 0.0 for x in LABELS]
        assert valence_arousal(one) == pytest.approx(VALENCE_AROUSAL[lab])
    mix = [0.5 if x in ("happy", "sad") else 0.0 for x in LABELS]
    v, a = valence_arousal(mix)
    assert v == pytest.approx((VALENCE_AROUSAL["happy"][0] + VALENCE_AROUSAL["sad"][0]) / 2)
    assert a == pytest.approx((VALENCE_AROUSAL["happy"][1] + VALENCE_AROUSAL["sad"][1]) / 2)
    r = fuse_once(face_probs=onehotish("happy", 0.95), options=FusionOptions(unknown_threshold=0))
    assert r.valence > 0.5 and r.arousal > 0.4


def test_reliabilities() -> None:
    big = face(1, "happy", side=200, score=0.9)
    small = face(2, "happy", side=24, score=0.9)
    assert face_reliability(big) == pytest.approx(0.9)
    assert face_reliability(small) == pytest.approx(0.9 * 24 / 96)
    assert face_reliability(replace(big, detection_score=float("nan"))) == 0.0
    assert voice_reliability(voice("sad", 0, vad=0.3)) == pytest.approx(0.3)
    assert voice_reliability(voice("sad", 0, vad=7.0)) == 1.0
    assert text_reliability(text("sad", 0, n_tokens=0)) == 0.0
    assert text_reliability(text("sad", 0, n_tokens=1)) < text_reliability(text("sad", 0, n_tokens=20)) < 1.0


@pytest.mark.parametrize("bad", [
    {"strategy": "magic"}, {"smoothing": "kalman"}, {"voice_target": "loudest"}, {"smoothing_alpha": 0.0},
    {"unknown_threshold": 1.5}, {"weights": {"face": -1.0}}, {"max_age_s": {"smell": 1.0}},
    {"half_life_s": {"voice": 0.0}},
])
def test_invalid_options_raise_config_error(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        Fusion(FusionOptions(**bad))  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ stateful fusion
def no_smoothing(**kw: object) -> FusionOptions:
    return FusionOptions(smoothing="none", **kw)  # type: ignore[arg-type]


def test_stale_modality_drops_out_and_age_decays_weight() -> None:
    opts = no_smoothing(weights={"face": 1.0, "voice": 1.0, "text": 1.0},
                        max_age_s={"face": 1.0, "voice": 4.0, "text": 15.0},
                        half_life_s={"face": 0.5, "voice": 2.0, "text": 6.0})
    fu = Fusion(opts)
    r0 = fu.update_voice(voice("sad", 10 * S), now_ns=10 * S)[0]
    assert r0.modality_weights == {"voice": 1.0} and r0.track_id is None and r0.frame_index == -1
    # text arrives 2 s later: the voice weight has halved (half-life 2 s), the text one is fresh
    r1 = fu.update_text(text("happy", 12 * S, n_tokens=1000), now_ns=12 * S)[0]
    assert r1.modality_weights["voice"] == pytest.approx(0.5 / 1.5, rel=1e-4)
    assert r1.voice is not None and r1.text is not None
    # 4.5 s after the voice it is stale: text alone
    r2 = fu.current(now_ns=14_500_000_000)[0]
    assert set(r2.modality_weights) == {"text"} and r2.voice is None
    # everything stale: the empty result
    r3 = fu.current(now_ns=40 * S)
    assert len(r3) == 1 and r3[0].is_empty and r3[0].label == UNKNOWN


def test_stale_face_frame_gives_audio_only_result() -> None:
    fu = Fusion(no_smoothing())
    r = fu.update_faces((face(3, "angry"),), frame_index=7, capture_ns=1 * S, now_ns=1 * S)
    assert len(r) == 1 and r[0].track_id == 3 and r[0].frame_index == 7 and r[0].faces[0].track_id == 3
    r = fu.update_voice(voice("sad", 3 * S), now_ns=3 * S)  # face frame is 2 s old > max_age 1 s
    assert r[0].track_id is None and set(r[0].modality_weights) == {"voice"}
    # a frame with no faces: the voice alone speaks
    r = fu.update_faces((), frame_index=8, capture_ns=3 * S, now_ns=3 * S)
    assert r[0].track_id is None and set(r[0].modality_weights) == {"voice"}
    assert Fusion(no_smoothing()).update_faces((), 0, 0, 0)[0].is_empty


def test_voice_goes_to_the_primary_face_or_to_all() -> None:
    faces = (face(1, "happy", side=60, x=10), face(2, "neutral", side=150, x=300))
    prim = Fusion(no_smoothing())
    prim.update_voice(voice("angry", 1 * S), now_ns=1 * S)
    out = prim.update_faces(faces, frame_index=1, capture_ns=1 * S, now_ns=1 * S)
    assert [r.track_id for r in out] == [2]
    assert set(out[0].modality_weights) == {"face", "voice"} and len(out[0].faces) == 2
    every = Fusion(no_smoothing(voice_target="all"))
    every.update_voice(voice("angry", 1 * S), now_ns=1 * S)
    out = every.update_faces(faces, frame_index=1, capture_ns=1 * S, now_ns=1 * S)
    assert sorted(r.track_id for r in out if r.track_id is not None) == [1, 2]
    assert all("voice" in r.modality_weights for r in out)


def test_primary_face_rules() -> None:
    a = face(1, "happy", side=100, x=0)
    b = face(2, "happy", side=100, x=270)
    c = face(3, "happy", side=110, x=0)
    assert primary_face([]) is None
    assert primary_face([a, c]).track_id == 3  # type: ignore[union-attr]  # largest
    assert primary_face([a, b], frame_size=(640, 480)).track_id == 2  # type: ignore[union-attr]  # central
    # hysteresis: the previous primary keeps its role while it is nearly as good
    assert primary_face([a, c], previous=1).track_id == 1  # type: ignore[union-attr]
    tiny = face(1, "happy", side=30)
    assert primary_face([tiny, c], previous=1).track_id == 3  # type: ignore[union-attr]


def test_ema_smoothing_per_track_is_exact() -> None:
    alpha = 0.4
    fu = Fusion(FusionOptions(smoothing="ema", smoothing_alpha=alpha, unknown_threshold=0.0))
    raw = Fusion(FusionOptions(smoothing="none", unknown_threshold=0.0))
    seq = ["happy", "happy", "sad", "sad", "sad"]
    prev = None
    for i, lab in enumerate(seq):
        t = i * 100_000_000
        f = (face(5, lab, t=t),)
        s = np.array(fu.update_faces(f, i, t, t)[0].probabilities)
        r = np.array(raw.update_faces(f, i, t, t)[0].probabilities)
        expect = r if prev is None else alpha * r + (1 - alpha) * prev
        np.testing.assert_allclose(s, expect, atol=1e-9)
        prev = s
    # a second track does not inherit the first one's state
    t = 600_000_000
    s2 = fu.update_faces((face(6, "fear", t=t),), 9, t, t)[0]
    r2 = raw.update_faces((face(6, "fear", t=t),), 9, t, t)[0]
    assert s2.probabilities == pytest.approx(r2.probabilities)


def test_ema_delays_a_label_flip_and_hmm_accumulates_evidence() -> None:
    fu = Fusion(FusionOptions(smoothing="ema", smoothing_alpha=0.3, unknown_threshold=0.0))
    labels = []
    for i, lab in enumerate(["happy"] * 5 + ["sad"] * 5):
        t = i * 50_000_000
        labels.append(fu.update_faces((face(1, lab, peak=0.6, t=t),), i, t, t)[0].label)
    assert labels[5] == "happy" and labels[-1] == "sad"  # one contrary frame does not flip it
    hmm = Fusion(FusionOptions(smoothing="hmm", smoothing_alpha=0.2, unknown_threshold=0.0))
    confs = []
    for i in range(4):
        t = i * 50_000_000
        confs.append(hmm.update_faces((face(1, "fear", peak=0.4, t=t),), i, t, t)[0].confidence)
    assert confs[0] < confs[1] < confs[2] and all(0 < c <= 1 for c in confs)


def test_smoothing_state_is_forgotten_after_max_age_and_on_reset() -> None:
    opts = FusionOptions(smoothing="ema", smoothing_alpha=0.2, unknown_threshold=0.0)
    fu = Fusion(opts)
    fu.update_faces((face(1, "happy"),), 0, 0, 0)
    late = 60 * S  # longer than every max_age: a fresh start
    r = fu.update_faces((face(1, "angry", t=late),), 1, late, late)[0]
    assert r.label == "angry"
    fu.update_faces((face(1, "happy", t=late),), 2, late, late)
    fu.reset()
    r = fu.update_faces((face(1, "angry", t=late),), 3, late, late)[0]
    assert r.label == "angry"


def test_results_are_deterministic() -> None:
    def run() -> list[EmotionResult]:
        fu = Fusion(FusionOptions(smoothing="hmm"))
        out = []
        out += fu.update_voice(voice("sad", 1 * S), 1 * S)
        out += fu.update_faces((face(1, "happy"), face(2, "sad", side=50)), 0, 1 * S, 1 * S)
        out += fu.update_text(text("happy", 2 * S), 2 * S)
        return out

    assert run() == run()


# ------------------------------------------------------------------------------------------ change events
def test_change_detector() -> None:
    def res(label: str, track: int | None = 1) -> EmotionResult:
        return EmotionResult(label=label, probabilities=onehotish(label if label in LABELS else "neutral"),
                             confidence=0.8, modality_weights={"face": 1.0}, track_id=track)

    cd = ChangeDetector(min_consecutive=2)
    got = [cd.update(res(lab)) for lab in ["happy", "happy", "sad", "happy", "sad", "sad", "sad", UNKNOWN,
                                           UNKNOWN]]
    assert got == [True, False, False, False, False, True, False, False, True]
    assert cd.update(res("happy", track=2)) is True  # a new track starts with a change
    assert cd.update(EmotionResult.empty()) is False
    cd1 = ChangeDetector(min_consecutive=1)
    assert [cd1.update(res(x)) for x in ["sad", "sad", "fear"]] == [True, False, True]
    with pytest.raises(ConfigError):
        ChangeDetector(0)


# ------------------------------------------------------------------------------------------ robustness
_prob = st.one_of(
    st.none(),
    st.lists(st.one_of(st.floats(min_value=-1.0, max_value=2.0), st.just(float("nan"))), min_size=7, max_size=7),
    st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=7, max_size=7),
)
_rel = st.floats(allow_nan=True, allow_infinity=True)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fp=_prob, vp=_prob, tp=_prob, fr=_rel, vr=_rel, tr=_rel,
       th=st.floats(0.0, 1.0), pool_strategy=st.sampled_from(["late", "learned"]))
def test_fuse_once_never_crashes_on_any_subset(fp: list[float] | None, vp: list[float] | None,
                                               tp: list[float] | None, fr: float, vr: float, tr: float,
                                               th: float, pool_strategy: str) -> None:
    r = fuse_once(fp, vp, tp, face_reliability=fr, voice_reliability=vr, text_reliability=tr,
                  options=FusionOptions(unknown_threshold=th, strategy=pool_strategy))
    assert len(r.probabilities) == len(LABELS)
    assert all(math.isfinite(p) and p >= 0 for p in r.probabilities)
    assert sum(r.probabilities) == pytest.approx(1.0)
    assert r.label in (*LABELS, UNKNOWN)
    assert -1.0 <= r.valence <= 1.0 and 0.0 <= r.arousal <= 1.0
    assert r.is_empty or sum(r.modality_weights.values()) == pytest.approx(1.0)


_event = st.one_of(
    st.tuples(st.just("faces"), st.lists(st.tuples(st.integers(0, 3), st.floats(0, 400), st.floats(0, 1),
                                                   st.sampled_from(LABELS)), max_size=3)),
    st.tuples(st.just("voice"), st.floats(0, 1), st.sampled_from(LABELS)),
    st.tuples(st.just("text"), st.integers(0, 40), st.sampled_from(LABELS)),
    st.tuples(st.just("reset")),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=st.lists(st.tuples(_event, st.integers(0, 3 * S)), max_size=25),
       smoothing=st.sampled_from(["ema", "none", "hmm"]), target=st.sampled_from(["primary", "all"]))
def test_stateful_fusion_never_crashes(events: list[tuple[tuple[object, ...], int]], smoothing: str,
                                       target: str) -> None:
    fu = Fusion(FusionOptions(smoothing=smoothing, voice_target=target))
    now = 0
    for i, (ev, dt) in enumerate(events):
        now += dt
        kind = ev[0]
        if kind == "faces":
            fs = tuple(FaceResult(track_id=tid, box=Box(10.0 * tid, 0.0, side, side), detection_score=sc,
                                  probabilities=onehotish(lab)) for tid, side, sc, lab in ev[1])  # type: ignore[attr-defined]
            fs = tuple({f.track_id: f for f in fs}.values())
            out = fu.update_faces(fs, i, now, now)
        elif kind == "voice":
            out = fu.update_voice(voice(ev[2], now, vad=ev[1]), now)  # type: ignore[arg-type]
        elif kind == "text":
            out = fu.update_text(text(ev[2], now, n_tokens=ev[1]), now)  # type: ignore[arg-type]
        else:
            fu.reset()
            continue
        assert len(out) >= 1
        for r in out:
            assert sum(r.probabilities) == pytest.approx(1.0)
            assert r.label in (*LABELS, UNKNOWN)
            assert r.result_ns == now


# ------------------------------------------------------------------------------------------ learned head
def test_head_features_layout() -> None:
    from affectlite.fusion import head_features

    pf = np.array(onehotish("happy", 0.9))
    x = head_features({"face": pf, "voice": None, "text": np.array(onehotish("sad"))},
                      {"face": 0.9, "voice": 0.5, "text": 0.3})
    assert x.shape == (24,) and x.dtype == np.float32
    np.testing.assert_allclose(x[:7], np.log(pf) / np.log(1e4), atol=1e-6)
    assert np.all(x[7:14] == 0)  # voice missing
    assert np.all((x[14:21] < 0) & (x[14:21] >= -1))
    np.testing.assert_allclose(x[21:], [0.75, 0.0, 0.25], atol=1e-6)
    assert np.all(head_features({}, {}) == 0)


def test_default_strategy_follows_the_fusion_study_and_the_head_is_used_for_two_modalities() -> None:
    from affectlite.card import card_path_for, load_card
    from affectlite.fusion import DEFAULT_FUSION_HEAD, FusionHead, fuse_once

    card = load_card(card_path_for(DEFAULT_FUSION_HEAD))
    assert card.task == "fusion" and "study" in card.metrics
    study = card.metrics["study"]
    # the default is what won the held-out study (with out-of-domain voice, late fusion did)
    best = "learned" if study["learned_int8"] > max(study["late_default"], study["late_tuned"]) else "late"
    assert FusionOptions().strategy == best
    head = FusionHead.load()
    pf, pv = np.array(onehotish("happy", 0.7)), np.array(onehotish("sad", 0.6))
    learned = fuse_once(face_probs=pf, voice_probs=pv, head=head, options=FusionOptions(strategy="learned"))
    late = fuse_once(face_probs=pf, voice_probs=pv, options=FusionOptions(strategy="late"))
    assert abs(sum(learned.probabilities) - 1.0) < 1e-6
    assert not np.allclose(learned.probabilities, late.probabilities, atol=1e-3)
    single = fuse_once(face_probs=pf)
    np.testing.assert_allclose(single.probabilities,
                               fuse_once(face_probs=pf, options=FusionOptions(strategy="late")).probabilities)


def test_shipped_fusion_head_was_trained_on_the_shipped_models() -> None:
    """The head learned the shipped models' confusions: a model swapped without retraining it fails here."""
    from affectlite._io import sha256_file
    from affectlite.face import DEFAULT_FACE_MODEL
    from affectlite.fusion import FusionHead, head_model_mismatches
    from affectlite.text import TEXT_MODELS
    from affectlite.voice import DEFAULT_MODEL as DEFAULT_VOICE_MODEL

    head = FusionHead.load()
    want = head.trained_for
    assert set(want) == {"face", "voice", "text"}
    for m, path in (("face", DEFAULT_FACE_MODEL), ("voice", DEFAULT_VOICE_MODEL), ("text", TEXT_MODELS["en"])):
        assert sha256_file(path) == want[m], f"{m} model changed: retrain the head (`affectlite train fusion`)"
    assert head_model_mismatches(head, {"face": None, "voice": None, "text": None}) == []


def test_a_model_other_than_the_heads_is_named_with_what_to_do(tmp_path: Path) -> None:
    from affectlite.fusion import FusionHead, head_model_mismatches

    head = FusionHead.load()
    mine = tmp_path / "my_face.tflite"
    mine.write_bytes(b"another model")
    msgs = head_model_mismatches(head, {"face": str(mine), "text": None})
    assert len(msgs) == 1 and "face model" in msgs[0] and str(mine) in msgs[0]
    assert "fusion.strategy: late" in msgs[0] and "affectlite train fusion" in msgs[0]
    assert head_model_mismatches(head, {"face": str(tmp_path / "missing.tflite")}) == []  # its loader reports it
    # a head whose card records nothing (trained elsewhere) is not checked
    bare = FusionHead.__new__(FusionHead)
    bare.model = type("M", (), {"card": type("C", (), {"training": {}})()})()
    assert bare.trained_for == {} and head_model_mismatches(bare, {"face": str(mine)}) == []


def test_pipeline_warns_once_at_start_when_a_model_differs_from_the_heads(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from affectlite import EmotionPipeline, PipelineOptions

    mine = tmp_path / "my_text.tflite"
    mine.write_bytes(b"another text model")

    class Echo:
        def __init__(self, opts: object) -> None:
            pass

        def classify(self, text: str, timestamp_ns: int = 0) -> TextResult:
            return TextResult(onehotish("happy", 0.9), len(text.split()), timestamp_ns)

    for path, warned in ((str(mine), True), (None, False)):
        o = PipelineOptions().replace(**{"camera.enabled": False, "audio.enabled": False,
                                         "privacy.offline_guard": False, "text.model_path": path,
                                         "fusion.strategy": "learned"})
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="affectlite.pipeline"), \
                EmotionPipeline(o, text_classifier_factory=Echo) as pipe:  # type: ignore[arg-type]
            pipe.push_text("this is great")
        hits = [r for r in caplog.records if "learned fusion head" in r.getMessage()]
        assert len(hits) == (1 if warned else 0), [r.getMessage() for r in caplog.records]


def test_commercial_text_variant_is_named_to_the_head_mismatch_check() -> None:
    """text.commercial routes English to the GoEmotions model, which the shipped head did not learn: say so."""
    from affectlite.fusion import FusionHead, head_model_mismatches
    from affectlite.options import PipelineOptions
    from affectlite.text import COMMERCIAL_TEXT_MODEL

    head = FusionHead.load()
    assert head_model_mismatches(head, PipelineOptions().model_paths()) == []
    paths = PipelineOptions.from_dict({"text": {"commercial": True}}).model_paths()
    assert paths["text"] == str(COMMERCIAL_TEXT_MODEL)
    msgs = head_model_mismatches(head, paths)
    assert len(msgs) == 1 and "text model" in msgs[0] and "fusion.strategy: late" in msgs[0]
