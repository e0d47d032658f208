"""The voice training recipe: corpora, speaker folds, validation runs, microphone simulation, weights, summary."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from affectlite import audio_features as af
from affectlite.labels import LABELS
from affectlite.speech_corpora import SpeechFile
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


def test_epoch_batch_shapes_labels_weights_and_normalisation() -> None:
    rng = np.random.default_rng(0)
    T = af.n_frames(af.window_samples(recipe.SPEC), recipe.SPEC)
    feats = [[(rng.standard_normal((T + 40 + i, 64)) - 8).astype(np.float32) for i in range(6)]
             for _ in recipe.VARIANTS]
    y = np.array([0, 1, 2, 3, 4, 5])
    w = np.array([1.0, 2.0, 1.0, 2.0, 1.0, 2.0], np.float32)
    X, Y, W = recipe._epoch_data(rng, feats, np.arange(6), y, recipe._noise_shape(), w)
    assert X.shape == (6, T, 64, 1) and X.dtype == np.float32
    assert np.allclose(Y.sum(axis=1), 1.0) and (Y >= 0).all()
    assert ((W >= 1.0 - 1e-6) & (W <= 2.0 + 1e-6)).all()  # mixup mixes the weights of the two clips
    assert np.isfinite(X).all() and abs(float(X.mean())) < 0.5
    # calibration windows are plain normalised crops (no augmentation)
    cal = recipe._calibration_windows(feats[0], np.arange(6), 4, 1)
    assert cal.shape == (4, T, 64, 1)
    assert np.allclose(cal.reshape(4, -1).mean(axis=1), 0.0, atol=1e-4)


def test_frequency_warp_moves_a_tone_by_the_factor_and_keeps_shape() -> None:
    sr = 16000
    t = np.arange(sr) / sr
    hz = recipe.mel_bin_hz()
    assert hz.shape == (64,) and np.all(np.diff(hz) > 0) and 50 < hz[0] < hz[-1] < 8000
    L = af.log_mel((0.3 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32), recipe.SPEC)
    peak = float(hz[L.mean(axis=0).argmax()])
    assert np.array_equal(recipe.warp_frequency(L, 1.0), L)
    for alpha in (0.8, 0.9, 1.15, 1.25):
        W = recipe.warp_frequency(L, alpha)
        assert W.shape == L.shape and W.dtype == np.float32 and np.isfinite(W).all()
        moved = float(hz[W.mean(axis=0).argmax()])
        assert abs(moved / peak - alpha) < 0.06, (alpha, peak, moved)  # one mel band is ~4% wide here
    with pytest.raises(ValueError, match="> 0"):
        recipe.warp_frequency(L, 0.0)
    # training windows with a warp range: same shapes, finite, and different from the unwarped batch
    rng_feats = np.random.default_rng(3)
    T = af.n_frames(af.window_samples(recipe.SPEC), recipe.SPEC)
    feats = [[(np.cumsum(rng_feats.standard_normal((T, 64)), axis=1) - 8).astype(np.float32) for _ in range(4)]]
    y, w = np.arange(4), np.ones(4, np.float32)
    a = recipe._epoch_data(np.random.default_rng(5), feats, np.arange(4), y, recipe._noise_shape(), w, (1.0,))
    b = recipe._epoch_data(np.random.default_rng(5), feats, np.arange(4), y, recipe._noise_shape(), w, (1.0,),
                           warp=(0.8, 1.2))
    assert a[0].shape == b[0].shape and np.isfinite(b[0]).all() and not np.allclose(a[0], b[0])


def test_ensemble_model_averages_its_members_and_survives_save_load(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")
    import keras

    members = [recipe.build_model(seed, "cnn", 0.25) for seed in (1, 2, 3)]
    ens = recipe.ensemble_model(members)
    assert recipe.ensemble_model(members[:1]) is members[0]
    x = np.random.default_rng(0).standard_normal((5, *members[0].inputs[0].shape[1:])).astype(np.float32)
    want = np.mean([m.predict(x, verbose=0) for m in members], axis=0)
    got = ens.predict(x, verbose=0)
    assert got.shape == (5, len(LABELS)) and np.allclose(got, want, atol=1e-5)
    assert not np.allclose(got, members[0].predict(x, verbose=0), atol=1e-3)  # really three different members
    ens.save(tmp_path / "e.keras")
    back = keras.models.load_model(tmp_path / "e.keras", compile=False)
    assert np.allclose(back.predict(x, verbose=0), got, atol=1e-5)


def test_speaker_normalise_removes_each_speakers_band_means_per_variant() -> None:
    rng = np.random.default_rng(2)
    offsets = {"a": rng.standard_normal(64).astype(np.float32) * 3, "b": rng.standard_normal(64).astype(np.float32)}
    spk = ["a", "a", "b", "b", "b"]
    clean = [(rng.standard_normal((50 + i, 64)) + offsets[s]).astype(np.float32) for i, s in enumerate(spk)]
    other = [m + 5.0 for m in clean]  # a second variant with its own channel offset
    out = recipe.speaker_normalise([clean, other], spk, speech_quantile=0.0)
    for v in out:
        for sp in ("a", "b"):
            rows = np.concatenate([v[i] for i, s in enumerate(spk) if s == sp])
            assert np.allclose(rows.mean(axis=0), 0.0, atol=1e-4)  # all frames count at quantile 0
    assert np.allclose(out[0][0], out[1][0], atol=1e-4)  # the variant's own offset is removed too
    assert all(o.shape == c.shape and o.dtype == np.float32 for o, c in zip(out[0], clean, strict=True))
    # the same clip of another speaker is shifted by that speaker's means: speaker-specific, not global
    assert not np.allclose((out[0][0] - clean[0])[0], (out[0][2] - clean[2])[0], atol=1e-2)


def test_warp_argument_is_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sf = pytest.importorskip("soundfile")
    clip = tmp_path / "d" / "Actor_01" / "03-01-01-01-01-01-01.flac"
    clip.parent.mkdir(parents=True)
    sf.write(str(clip), np.zeros(16000, np.float32), 16000)
    for bad in ("0.9", "1.2,0.8", "0.1,1.1", "a,b"):
        capsys.readouterr()
        assert recipe.main(["--data", str(tmp_path / "d"), "--out", str(tmp_path / "o"), "--warp", bad]) == 2
        assert "--warp must be LO,HI" in capsys.readouterr().err
    for n in ("0", "9"):
        assert recipe.main(["--data", str(tmp_path / "d"), "--out", str(tmp_path / "o"), "--ensemble", n]) == 2
        assert "--ensemble within 1..8" in capsys.readouterr().err
    for stage in ("all", "final"):  # a shipped model cannot use it: the runtime has no speaker normaliser
        assert recipe.main(["--data", str(tmp_path / "d"), "--out", str(tmp_path / "o"), "--speaker-norm",
                            "--stage", stage]) == 2
        assert "--speaker-norm is a validation experiment" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def _items() -> list[SpeechFile]:
    out = []
    for a in range(1, 11):  # 10 RAVDESS actors, odd = male
        for e in ("01", "03", "05"):
            out.append(SpeechFile(Path(f"03-01-{e}-01-01-01-{a:02d}.flac"), "neutral", "ravdess", f"ravdess:{a:02d}",
                                  "m" if a % 2 else "f"))
    for spk in ("OAF", "YAF"):
        for w in ("back", "bar", "base", "bath"):
            out.append(SpeechFile(Path(f"{spk}_{w}_angry.ogg"), "angry", "tess", f"tess:{spk}", "f"))
    return out


def test_speaker_folds_are_gender_balanced_and_one_per_speaker_when_few() -> None:
    spk = {f"r:{a}": ("m" if a % 2 else "f") for a in range(1, 21)}
    folds = recipe.make_speaker_folds(spk, 5)
    assert len(folds) == 5 and sorted(s for f in folds for s in f) == sorted(spk)
    assert all(sum(spk[s] == "m" for s in f) == 2 and len(f) == 4 for f in folds)
    assert recipe.make_speaker_folds({"tess:OAF": "f", "tess:YAF": "f"}, 5) == [["tess:OAF"], ["tess:YAF"]]


def test_validation_runs_hold_out_speakers_and_corpora() -> None:
    items = _items()
    runs = recipe.plan_runs(items, k=5)
    assert sorted(n for n in runs if n.startswith("loco")) == ["loco:ravdess", "loco:tess"]
    assert len([n for n in runs if n.startswith("lso:ravdess")]) == 5
    assert len([n for n in runs if n.startswith("lso:tess")]) == 2
    for name, r in runs.items():
        tr, val = set(r["train"].tolist()), set(r["val"].tolist())
        assert not tr & val and tr | val == set(range(len(items))), name
        val_spk = {items[i].speaker for i in val}
        assert not val_spk & {items[i].speaker for i in tr}, name  # no speaker on both sides
        if r["kind"] == "loco":
            assert {items[i].corpus for i in val} == {r["corpus"]}
            assert r["corpus"] not in {items[i].corpus for i in tr}
        else:  # leave-speakers-out trains on the other corpora too
            assert {items[i].corpus for i in tr} == {"ravdess", "tess"}
    lso0 = runs["lso:ravdess:0"]
    assert sorted({items[i].gender for i in lso0["val"]}) == ["f", "m"]
    assert recipe.plan_runs(items, which="loco").keys() == {"loco:ravdess", "loco:tess"}


def test_balanced_weights_give_every_corpus_the_same_total_and_balance_classes() -> None:
    y = np.array([0] * 30 + [1] * 10 + [0] * 4 + [2] * 4)
    g = np.array(["a"] * 40 + ["b"] * 8)
    idx = np.arange(48)
    w = recipe.balanced_weights(y, g, idx)
    assert w[g == "a"].sum() == pytest.approx(w[g == "b"].sum())
    assert w[:30].sum() == pytest.approx(w[30:40].sum())  # classes within a corpus
    assert w.mean() == pytest.approx(1.0)
    part = recipe.balanced_weights(y, g, np.arange(40))
    assert (part[40:] == 0).all() and part[:40].mean() == pytest.approx(1.0)


def test_simulated_microphone_degrades_deterministically_and_stays_valid() -> None:
    t = np.arange(32000) / 16000
    x = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    seen: set[str] = set()
    for seed in range(12):
        y1, s1 = recipe.simulate_microphone(x, np.random.default_rng(seed))
        y2, s2 = recipe.simulate_microphone(x, np.random.default_rng(seed))
        assert s1 == s2 and np.array_equal(y1, y2)
        assert y1.shape == x.shape and y1.dtype == np.float32 and np.isfinite(y1).all()
        assert np.abs(y1).max() <= 1.0 and not np.allclose(y1, x)
        seen.update(step.split()[0] for step in s1)
    assert {"reverb", "band", "clip"} <= seen  # the chain really varies


def test_validation_summary_tables_and_temperature(tmp_path: Path) -> None:
    y = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    eye = np.eye(len(LABELS))
    cfg = {"epochs": 2}

    def run(kind: str, corpus: str, idx: list[int], pred: list[int]) -> dict[str, object]:
        p = (0.7 * eye[pred] + 0.3 / len(LABELS)).tolist()
        m = recipe._metrics(y[idx], np.array(pred))
        return {"kind": kind, "corpus": corpus, "held": [corpus], "val_idx": idx, "probs_float": p,
                "probs_int8": p, "float": m, "int8": m, "train_s": 1.0}

    done = {"lso:a:0": run("lso", "a", [0, 1, 2], [0, 1, 2]), "lso:a:1": run("lso", "a", [3, 4, 5], [0, 2, 2]),
            "loco:a": run("loco", "a", [0, 1, 2, 3, 4, 5], [0, 1, 1, 0, 0, 2]),
            "loco:b": run("loco", "b", [6, 7], [0, 0])}
    (tmp_path / "cv").mkdir()
    rep = recipe.summarise(done, y, tmp_path, cfg)
    lso = rep["leave_speakers_out"]["a"]
    assert lso["int8"]["uar_pooled"] == pytest.approx((1 + 0.5 + 1) / 3)
    assert lso["int8"]["uar_min"] == pytest.approx(2 / 3) and lso["int8"]["uar_max"] == pytest.approx(1.0)
    assert rep["leave_one_corpus_out"]["b"]["int8"]["uar_pooled"] == pytest.approx(0.5)
    assert rep["leave_one_corpus_out_mean_uar"]["int8"] == pytest.approx(
        (rep["leave_one_corpus_out"]["a"]["int8"]["uar_pooled"] + 0.5) / 2)
    assert rep["temperature"] > 0 and "leave-one-corpus-out" in rep["temperature_fitted_on"]
    md = (tmp_path / "cv" / "report.md").read_text()
    assert "| a | leave-speakers-out |" in md and "| b | leave-one-corpus-out |" in md
    m = recipe._card_metrics(rep)
    assert m["int8"]["uar"] == pytest.approx(rep["leave_speakers_out_mean_uar"]["int8"])
    assert recipe._weakest(rep)[0].startswith("Weakest classes, a leave-speakers-out")


@pytest.mark.slow
@pytest.mark.convert
def test_recipe_end_to_end_on_two_tiny_corpora(tmp_path: Path) -> None:
    """Two corpora (RAVDESS-named FLAC, TESS-named Ogg/Opus) -> leave-speakers-out + leave-one-corpus-out runs,
    int8 through the runtime, the report, the LOCO outputs for the fusion recipe, and a final int8 model whose
    card carries both tables and the feature statistics the runtime's reliability uses."""
    pytest.importorskip("tensorflow")
    sf = pytest.importorskip("soundfile")
    from affectlite.card import card_path_for, load_card
    from affectlite.options import VoiceOptions
    from affectlite.voice import VoiceAnalyzer

    rng = np.random.default_rng(0)
    sr = 16000

    def clip(label: int, spk: int) -> np.ndarray:
        t = np.arange(int(sr * 1.2)) / sr
        f0 = 110 + 25 * label + 7 * spk
        x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6)) * (1 + np.sin(2 * np.pi * (2 + label) * t))
        return (0.1 * x / np.abs(x).max() + 0.003 * rng.standard_normal(t.size)).astype(np.float32)

    rav, tess = tmp_path / "rav", tmp_path / "tess"
    codes = {"neutral": "01", "happy": "03", "sad": "04", "angry": "05"}
    for actor in (1, 2, 3, 4):
        for lab, code in codes.items():
            for rep in (1, 2):
                p = rav / f"Actor_{actor:02d}" / f"03-01-{code}-01-01-{rep:02d}-{actor:02d}.flac"
                p.parent.mkdir(parents=True, exist_ok=True)
                sf.write(str(p), clip(LABELS.index(lab), actor), sr)
    for si, spk in enumerate(("OAF", "YAF")):
        for lab in codes:
            for word in ("back", "bar", "base"):
                p = tess / spk / f"{spk}_{word}_{lab}.ogg"
                p.parent.mkdir(parents=True, exist_ok=True)
                sf.write(str(p), clip(LABELS.index(lab), 10 + si), sr, format="OGG", subtype="OPUS")
    out = tmp_path / "out"
    argv = ["--data", str(rav), "--data", str(tess), "--out", str(out), "--epochs", "2", "--folds", "2",
            "--threads", "1", "--width", "0.25"]
    assert recipe.main(argv) == 0
    rep = json.loads((out / "cv" / "report.json").read_text())
    assert set(rep["leave_speakers_out"]) == {"ravdess", "tess"} and set(rep["leave_one_corpus_out"]) == {"ravdess",
                                                                                                         "tess"}
    assert len(rep["leave_speakers_out"]["ravdess"]["folds"]) == 2
    for table in ("leave_speakers_out", "leave_one_corpus_out"):
        for v in rep[table].values():
            assert 0.0 <= v["int8"]["uar_pooled"] <= 1.0 and set(v["int8"]["per_class_recall"]) == set(codes)
    z = np.load(out / "cv" / "loco_outputs.npz")
    assert z["probs"].shape == (32 + 24, len(LABELS)) and set(z["corpus"].tolist()) == {"ravdess", "tess"}
    assert ((z["reliability"] >= 0) & (z["reliability"] <= 1)).all()
    card = load_card(card_path_for(out / "voice.tflite"))
    assert "leave_one_corpus_out" in card.metrics
    assert "| tess | leave-one-corpus-out |" in card.metrics["table_markdown"]
    assert "non-commercial" in card.training["terms"] and "TESS" in card.training["data"]
    stats = card.calibration["feature_stats"]
    assert len(stats["mean"]) == 128 and stats["distance_p95"] > 0
    an = VoiceAnalyzer(VoiceOptions(model_path=str(out / "voice.tflite"), vad="none"))
    r = an.classify_clip(clip(1, 1), sr)
    an.close()
    assert r is not None and r.feature_distance is not None and r.reliability is not None
    # resumable: a second cv stage with the same settings trains nothing and gives the same report
    assert recipe.main([*argv, "--stage", "cv"]) == 0
    assert json.loads((out / "cv" / "report.json").read_text())["leave_one_corpus_out"] == rep["leave_one_corpus_out"]
    # a stored run of the same name that held out other speakers (another --folds) is trained again, not reused
    fj = out / "cv" / "lso_ravdess_0.json"
    stored = json.loads(fj.read_text())
    planned = stored["held"]
    fj.write_text(json.dumps({**stored, "held": ["99"]}))
    assert recipe.main([*argv, "--stage", "cv", "--runs", "lso", "--only", "lso:ravdess:0"]) == 0
    again = json.loads(fj.read_text())
    assert again["held"] == planned and "int8" in again
