"""The speech_embedding front end, the voice head recipe on it, and the runtime path that runs both."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from affectlite import speech_embedding as se
from affectlite.errors import InputError, ModelLoadError
from affectlite.labels import LABELS

SR = 16000
needs_front_end = pytest.mark.skipif(bool(se.front_end_status()), reason=se.front_end_status() or "installed")


def test_frame_and_embedding_counts() -> None:
    assert se.n_mel_frames(32000) == 197 and se.n_mel_frames(48000) == 297 and se.n_mel_frames(100) == 0
    assert se.n_embeddings(197) == 16 and se.n_embeddings(75) == 0 and se.n_embeddings(76) == 1
    assert se.n_embeddings(84) == 2


def test_missing_front_end_says_how_to_fix(tmp_path: Path) -> None:
    why = se.front_end_status(tmp_path)
    assert se.MEL_FILE in why and se.EMBEDDING_FILE in why and "reinstall" in why
    with pytest.raises(ModelLoadError, match="reinstall"):
        se.SpeechEmbedding(tmp_path)


@needs_front_end
def test_front_end_files_match_their_pins_and_shapes() -> None:
    assert se.front_end_status(check_hash=True) == ""
    fe = se.SpeechEmbedding()
    rng = np.random.default_rng(0)
    t = np.arange(2 * SR) / SR
    x = (0.1 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + 0.003 * rng.standard_normal(t.size))
    e = fe(x.astype(np.float32))
    assert e.shape == (16, 96) and e.dtype == np.float32 and np.isfinite(e).all()
    assert np.array_equal(e, fe(x.astype(np.float32)))  # deterministic
    m = fe.mel(np.zeros(SR, np.float32))  # digital silence sits on the floor, not at -8
    assert m.shape == (97, 32) and float(m.min()) == se.MEL_FLOOR
    # a 3 s clip resizes the interpreters and gives the 2 s window's embeddings as its first 16 (same audio)
    x3 = np.concatenate([x, x[:SR]]).astype(np.float32)
    e3 = fe(x3)
    assert e3.shape == (28, 96)
    assert np.allclose(e3[:15], e[:15], atol=1e-2 * float(np.abs(e).max()))
    with pytest.raises(InputError):
        fe.mel(np.zeros(100, np.float32))
    with pytest.raises(InputError):
        fe.mel(np.full(4000, np.nan, np.float32))


def test_crop_and_window_starts() -> None:
    from affectlite_convert.recipes import voice_embedding as ve

    e = np.arange(30 * 96, dtype=np.float32).reshape(30, 96)
    assert ve.clip_window_starts(16) == [0] and ve.clip_window_starts(30) == [0, 6, 12, 14]
    w = ve.clip_windows(e)
    assert w.shape == (4, 16, 96) and np.array_equal(w[-1], e[14:])
    short = ve.crop(e[:10], 0)
    assert short.shape == (16, 96) and np.array_equal(short[10:], np.repeat(e[9:10], 6, axis=0))


@pytest.mark.slow
@pytest.mark.convert
@needs_front_end
def test_head_recipe_end_to_end_and_runtime(tmp_path: Path) -> None:
    """Two tiny corpora -> cache, LSO + LOCO runs for 2 seeds (float and int8), report, LOCO outputs, final int8
    head with its card; the runtime loads it with the front end and classifies a clip and a stream."""
    pytest.importorskip("tensorflow")
    sf = pytest.importorskip("soundfile")
    from affectlite.card import card_path_for, load_card
    from affectlite.options import VoiceOptions
    from affectlite.voice import VoiceAnalyzer
    from affectlite_convert.recipes import voice_embedding as ve

    rng = np.random.default_rng(0)

    def clip(label: int, spk: int, seconds: float = 1.4) -> np.ndarray:
        t = np.arange(int(SR * seconds)) / SR
        f0 = 110 + 25 * label + 7 * spk
        x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6)) * (1 + np.sin(2 * np.pi * (2 + label) * t))
        return (0.1 * x / np.abs(x).max() + 0.003 * rng.standard_normal(t.size)).astype(np.float32)

    rav, tess = tmp_path / "rav", tmp_path / "tess"
    codes = {"neutral": "01", "happy": "03", "sad": "04", "angry": "05"}
    for actor in (1, 2, 3, 4):
        for lab, code in codes.items():
            p = rav / f"Actor_{actor:02d}" / f"03-01-{code}-01-01-01-{actor:02d}.flac"
            p.parent.mkdir(parents=True, exist_ok=True)
            sf.write(str(p), clip(LABELS.index(lab), actor, 2.6), SR)
    for si, spk in enumerate(("OAF", "YAF")):
        for lab in codes:
            for word in ("back", "bar"):
                p = tess / spk / f"{spk}_{word}_{lab}.ogg"
                p.parent.mkdir(parents=True, exist_ok=True)
                sf.write(str(p), clip(LABELS.index(lab), 10 + si), SR, format="OGG", subtype="OPUS")
    out = tmp_path / "out"
    argv = ["--data", str(rav), "--data", str(tess), "--out", str(out), "--epochs", "2", "--per-epoch", "256",
            "--folds", "2", "--seeds", "1,2", "--width", "16"]
    assert ve.main(argv) == 0
    rep = json.loads((out / "cv" / "report.json").read_text())
    assert set(rep["leave_one_corpus_out"]) == {"ravdess", "tess"} and rep["seeds"] == [1, 2]
    for v in rep["leave_one_corpus_out"].values():
        assert len(v["int8"]["uar_pooled_per_seed"]) == 2
        assert v["int8"]["uar_pooled"] == pytest.approx(np.mean(v["int8"]["uar_pooled_per_seed"]), abs=1e-3)
    assert len(rep["leave_speakers_out"]["ravdess"]["folds"]) == 4  # 2 folds x 2 seeds
    assert set(rep["loco_pooled_recall"]) == set(codes) and rep["temperature"] > 0
    z = np.load(out / "cv" / "loco_outputs.npz")
    assert z["probs"].shape == (16 + 16, len(LABELS))
    assert ((z["reliability"] > 0) & (z["reliability"] <= 1)).all() and z["reliability"].std() > 0
    card = load_card(card_path_for(out / "voice.tflite"))
    assert card.inputs[0].preprocessing["front_end"] == se.FRONT_END_NAME
    assert "CC BY-NC-SA 4.0" in card.training["terms"] and len(card.calibration["feature_stats"]["mean"]) == 192
    an = VoiceAnalyzer(VoiceOptions(model_path=str(out / "voice.tflite"), vad="none"))
    assert an.classifier.front_end is not None
    r = an.classify_clip(clip(1, 1, 3.0), SR)
    assert r is not None and abs(sum(r.probabilities) - 1) < 1e-4 and r.feature_distance is not None
    # the clip path (front end once over the clip, windows sliced) and a single window agree on a 2 s clip
    x2 = clip(2, 3, 2.0)
    r2 = an.classify_clip(x2, SR)
    assert r2 is not None
    assert np.allclose(r2.probabilities, an.classifier.classify_window(x2), atol=0.02)
    res = an.push(clip(2, 2, 3.0), 0) + an.flush()
    an.close()
    assert res and res[-1].is_final


def test_bench_reports_the_voice_path_real_time_factor() -> None:
    """``affectlite bench`` measures the whole voice path (VAD + front end + model) as a real-time factor and
    counts the bytes of the voice files in use."""
    from affectlite import audio_features as af
    from affectlite import bench
    from affectlite.options import PipelineOptions
    from affectlite.voice import DEFAULT_MODEL, VoiceEmotionClassifier

    if not DEFAULT_MODEL.is_file():
        pytest.skip("shipped voice model missing")
    clf = VoiceEmotionClassifier.create(None)
    pcm = af.load_audio(Path(af.__file__).parent / "data" / "sample.wav", SR)
    r = bench._bench_voice_stream(PipelineOptions(), clf, pcm, seconds=6.0)
    assert 0.0 < r["rtf"] < 1.0 and r["results"] > 0 and r["audio_s"] == 6.0
    assert r["voice_files_bytes"] > DEFAULT_MODEL.stat().st_size
    assert r["front_end"] == ("speech_embedding" if clf.front_end is not None else "log-mel")
    assert "voice path" in bench.format_report({
        "machine": {"cpu": "x", "usable_cores": 1, "platform": "p", "python": "3"},
        "config": {"synthetic": True, "video": None, "audio": None, "threads": 1, "detector": "d",
                   "detect_every": 1, "detect_width": 1}, "voice_path": r, "peak_rss_mb": 1.0})


def test_prosody_finds_pitch_level_and_slope_of_a_sweep() -> None:
    from affectlite import prosody as pr

    t = np.arange(2 * SR) / SR
    f = 150 * 2 ** (t / 2)  # half an octave per second, 150 -> 300 Hz
    ph = 2 * np.pi * np.cumsum(f) / SR
    x = (0.2 * sum(np.sin(k * ph) / k for k in range(1, 6))).astype(np.float32)
    e, f0 = pr.contours(x)
    assert e.shape == f0.shape == (197,) and (f0 > 0).mean() > 0.95
    feats = dict(zip(pr.FEATURE_NAMES, pr.window_features(e, f0).tolist(), strict=True))
    assert feats["pitch_level"] == pytest.approx(0.5, abs=0.05)      # median 212 Hz = 150 Hz + half an octave
    assert feats["pitch_slope"] == pytest.approx(0.5, abs=0.05)      # octaves per second
    quiet = pr.window_features(*pr.contours(np.zeros(SR, np.float32)))
    assert quiet[0] == 0.0 and np.isfinite(quiet).all()
    assert pr.contours(np.zeros(100, np.float32))[0].size == 0


def test_fusion_voice_pool_splits_new_corpora_by_speaker(tmp_path: Path) -> None:
    """The fusion recipe's voice halves: every corpus's speakers alternate between A and B (per gender), so
    both halves hold every corpus and no speaker is in both."""
    from affectlite.voice import DEFAULT_MODEL
    from affectlite_convert.recipes.fusion import voice_pool

    if not DEFAULT_MODEL.is_file():
        pytest.skip("shipped voice model missing")
    spk = ([f"ravdess:{a:02d}" for a in range(1, 21)] + ["tess:OAF", "tess:YAF"]
           + [f"ased:{a:02d}" for a in range(1, 11)] + [f"nemo:{s}" for s in ("EB0", "IC0", "KS0", "WR0")]
           + [f"turev:{s}" for s in ("1157", "1234", "1358", "1984")])
    gender = ["m" if (s.startswith("ravdess") and int(s[-2:]) % 2) or s.startswith(("nemo:K", "nemo:W", "ased:0"))
              else "f" for s in spk]
    n = len(spk)
    cv = tmp_path / "cv"
    cv.mkdir()
    np.savez(cv / "loco_outputs.npz", probs=np.full((n, 7), 1 / 7), reliability=np.ones(n), y=np.arange(n) % 7,
             corpus=np.array([s.split(":")[0] for s in spk]), speaker=np.array(spk), gender=np.array(gender),
             files=np.array([f"f{i}" for i in range(n)]))
    pool = voice_pool(tmp_path, cv, None, tmp_path / "cache")
    for c in ("ravdess", "tess", "ased", "nemo", "turev"):
        sel = np.array([s.startswith(c + ":") for s in spk])
        assert 0 < int(pool.half_a[sel].sum()) < int(sel.sum()), c
    assert int(pool.half_a[[s.startswith("ased:") for s in spk]].sum()) == 5 + 1  # 9 men: 5, 1 woman: 1


def test_train_voice_front_end_option_picks_the_recipe(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from affectlite_convert.recipes import voice as recipe

    for fe in ("speech_embedding", "logmel"):
        assert recipe.main(["--front-end", fe, "--data", str(tmp_path / "none"), "--out", str(tmp_path / "o")]) == 2
        assert "affectlite train: error: --data" in capsys.readouterr().err
    if not se.front_end_status():
        clip = tmp_path / "c" / "OAF" / "OAF_back_angry.wav"
        clip.parent.mkdir(parents=True)
        clip.write_bytes(b"")  # listed by name only: the options are refused before any audio is read
        assert recipe.main(["--front-end=speech_embedding", "--data", str(tmp_path / "c"), "--out",
                            str(tmp_path / "o"), "--variants", "mic0"]) == 2
        assert "--variants must start with clean" in capsys.readouterr().err
