"""Speech corpora: one set of file-name parsers for eval and training; Ogg/Opus corpora; reliability."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from affectlite import audio_features as af
from affectlite.fusion import voice_reliability
from affectlite.results import VoiceResult
from affectlite.speech_corpora import list_speech_files, parse_speech_file
from affectlite.voice import (
    DEFAULT_MODEL,
    LOGMEL_MODEL,
    VoiceAnalyzer,
    VoiceEmotionClassifier,
    eval_voice_main,
    evaluate_voice,
    feature_distance,
    voice_quality,
)

SR = 16000


@pytest.mark.parametrize(("name", "label", "speaker", "gender"), [
    ("OAF/OAF_back_angry.ogg", "angry", "tess:OAF", "f"),
    ("YAF/YAF_chair_ps.ogg", "surprise", "tess:YAF", "f"),      # pleasant surprise
    ("OAF/OA_bite_neutral.ogg", "neutral", "tess:OAF", "f"),    # the one OAF file with the OA_ prefix
    ("Actor_07/03-01-06-02-02-02-07.flac", "fear", "ravdess:07", "m"),
    ("Actor_08/03-01-02-01-01-01-08.flac", "neutral", "ravdess:08", "f"),  # calm -> neutral
    ("1001_DFA_ANG_XX.wav", "angry", "crema-d:1001", ""),
    ("16b10Wb.wav", "angry", "emodb:16", "f"),
    ("03a01Fa.wav", "happy", "emodb:03", "m"),
    ("02Fearful/f2-03-01-02-50.ogg", "fear", "ased:50", "m"),
    ("04Sad/S4-04-02-01-29.ogg", "sad", "ased:29", "f"),        # the upper-case letter: label from the folder
    ("03Happy/s4-01-01-01-01.ogg", "happy", "ased:01", "f"),    # a wrong letter: the folder still wins
    ("samples/KS0_anger_12.ogg", "angry", "nemo:KS0", "m"),
    ("samples/EB0_surprised_3.ogg", "surprise", "nemo:EB0", "f"),
    ("samples/MK0_happiness_1.ogg", "happy", "nemo:MK0", "f"),
    ("Calm/1234_sk_acik.ogg", "neutral", "turev:1234", ""),
    ("Happy/7895_mt_beste.ogg", "happy", "turev:7895", ""),
])
def test_parser_gives_label_speaker_and_gender(name: str, label: str, speaker: str, gender: str) -> None:
    f = parse_speech_file(Path("corpus") / name)
    assert (f.label, f.speaker, f.gender) == (label, speaker, gender)
    assert f.corpus == speaker.split(":")[0]


def test_parser_skips_and_folder_labels() -> None:
    assert parse_speech_file("x/03a01La.wav").label is None            # EmoDB boredom
    assert parse_speech_file("x/OAF_back_bored.ogg").convention == "unlabelled"
    f = parse_speech_file("data/happiness/take1.ogg")
    assert (f.label, f.convention, f.speaker) == ("happy", "folder", "")


def _tone_clip(seed: int, seconds: float = 1.6) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(SR * seconds)) / SR
    f0 = 120 + 80 * rng.random()
    x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 8)) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t))
    return (0.2 * x / np.abs(x).max() + 0.002 * rng.standard_normal(t.size)).astype(np.float32)


def _write_ogg_corpus(root: Path) -> list[Path]:
    import soundfile as sf

    out = []
    for spk in ("OAF", "YAF"):
        for i, (word, emo) in enumerate(zip(("back", "bar", "base", "bath"), ("angry", "happy", "ps", "sad"),
                                            strict=True)):
            p = root / spk / f"{spk}_{word}_{emo}.ogg"
            p.parent.mkdir(parents=True, exist_ok=True)
            sf.write(str(p), _tone_clip(i + 10 * len(out)), SR, format="OGG", subtype="OPUS")
            out.append(p)
    (root / "notes.txt").write_text("not audio")
    return out


def test_list_and_eval_read_an_ogg_opus_corpus(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("soundfile")
    files = _write_ogg_corpus(tmp_path)
    listed = list_speech_files(tmp_path)
    assert [f.path for f in listed] == sorted(files)
    assert {f.speaker for f in listed} == {"tess:OAF", "tess:YAF"}
    if not DEFAULT_MODEL.is_file():
        pytest.skip("shipped voice model missing")
    res = evaluate_voice(None, tmp_path)
    assert res["n"] == 8 and res["conventions"] == {"tess": 8}
    assert set(res["per_speaker_uar"]) == {"tess:OAF", "tess:YAF"}
    assert sum(map(sum, res["confusion_matrix"])) == 8
    assert eval_voice_main(argparse.Namespace(data=str(tmp_path), model=None, vad=None, limit=3, out=None)) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 3


def test_eval_voice_runs_on_each_shared_corpus_folder(shared_datasets: Path) -> None:
    """``affectlite eval voice --data DIR`` on every speech corpus folder the recipe trains on."""
    if not DEFAULT_MODEL.is_file():
        pytest.skip("shipped voice model missing")
    found = 0
    for name, convention in (("ravdess-speech-16k", "ravdess"), ("tess-16k", "tess"), ("ased-16k", "ased"),
                             ("nemo-16k", "nemo"), ("turev-16k", "turev")):
        d = shared_datasets / name
        if not d.is_dir():
            continue
        found += 1
        res = evaluate_voice(None, d, limit=24)
        assert res["n"] == 24 and res["conventions"].get(convention, 0) >= 24
        assert res["per_speaker_uar"] and res["no_speech"] == 0
    if not found:
        pytest.skip("no speech corpus in the shared datasets")


@pytest.mark.parametrize(("name", "n", "speakers", "genders", "labels"), [
    ("ased-16k", 2474, 65, {"f": 25, "m": 40}, {"neutral": 522, "fear": 510, "happy": 486, "sad": 470, "angry": 486}),
    ("nemo-16k", 4481, 9, {"f": 4, "m": 5}, {"angry": 749, "fear": 736, "happy": 749, "neutral": 809, "sad": 769,
                                             "surprise": 669}),
    ("turev-16k", 1735, 6, {"": 6}, {"angry": 487, "neutral": 408, "happy": 357, "sad": 483}),
])
def test_new_corpora_parse_every_file(shared_datasets: Path, name: str, n: int, speakers: int,
                                      genders: dict[str, int], labels: dict[str, int]) -> None:
    """ASED, nEMO, TurEV-DB: every clip labelled, speakers and (majority) genders as the README gives them."""
    d = shared_datasets / name
    if not d.is_dir():
        pytest.skip(f"{d} not present")
    files = list_speech_files(d, labelled_only=False)
    assert len(files) == n and all(f.label is not None and f.speaker for f in files)
    by_speaker = {f.speaker: f.gender for f in files}
    assert len(by_speaker) == speakers
    assert {g: list(by_speaker.values()).count(g) for g in set(by_speaker.values())} == genders
    assert {lab: sum(f.label == lab for f in files) for lab in labels} == labels
    if name == "nemo-16k":  # the padded speaker ids of data.tsv agree with the file names' genders
        import csv

        with open(d / "data.tsv", encoding="utf-8") as fh:
            tsv = {r["speaker_id"].strip(): r["gender"][0] for r in csv.DictReader(fh, delimiter="\t")}
        assert {s.split(":")[1]: g for s, g in by_speaker.items()} == tsv


# ------------------------------------------------------------------------------------------- reliability

def test_voice_quality_factors_follow_snr_clipping_length_and_distance() -> None:
    clean = _tone_clip(1, 2.0)
    clean[: SR // 2] = 0.001 * np.random.default_rng(0).standard_normal(SR // 2).astype(np.float32)  # a pause
    good = voice_quality(clean, 1.0, 2.0)
    assert good["snr_db"] > 20 and good["clipped_fraction"] == 0.0 and good["reliability"] > 0.85
    noisy = clean + 0.2 * np.random.default_rng(1).standard_normal(clean.size).astype(np.float32)
    assert voice_quality(noisy, 1.0, 2.0)["reliability"] < 0.5 * good["reliability"]
    clipped = np.clip(clean * 20, -1, 1)
    q = voice_quality(clipped, 1.0, 2.0)
    assert q["clipped_fraction"] > 0.1 and q["reliability"] <= 0.2 * 1.0 + 1e-9
    short = voice_quality(clean, 1.0, 0.3)
    assert short["reliability"] < 0.4 * good["reliability"]
    far = voice_quality(clean, 1.0, 2.0, distance=4.0, distance_p95=2.0)
    assert far["reliability"] == pytest.approx(good["reliability"] * 0.25, abs=1e-3)
    assert voice_quality(clean, 1.0, 2.0, distance=1.5, distance_p95=2.0)["reliability"] == good["reliability"]
    assert voice_quality(clean, 0.5, 2.0)["reliability"] == pytest.approx(0.5 * good["reliability"], abs=1e-3)


def test_feature_distance_is_small_in_distribution_and_large_outside() -> None:
    rng = np.random.default_rng(3)
    wins = [rng.standard_normal((198, 64)) * (1 + 0.1 * rng.random()) for _ in range(200)]
    d = np.stack([np.concatenate([w.mean(0), w.std(0)]) for w in wins])
    stats = {"mean": d.mean(0).tolist(), "std": d.std(0).tolist()}
    inside = [feature_distance(w, stats) for w in wins[:20]]
    assert all(v is not None and v < 2.0 for v in inside)
    shifted = wins[0] + np.linspace(-3, 3, 64)[None, :]   # a strong spectral tilt: another channel
    out = feature_distance(shifted, stats)
    assert out is not None and out > 5 * float(np.mean(inside))  # type: ignore[arg-type]
    assert feature_distance(wins[0], {"mean": [0.0], "std": [1.0]}) is None     # does not fit
    assert feature_distance(wins[0], None) is None


def test_analyzer_results_carry_reliability_and_fusion_uses_it() -> None:
    if not DEFAULT_MODEL.is_file():
        pytest.skip("shipped voice model missing")
    from affectlite.options import VoiceOptions

    clf = VoiceEmotionClassifier.create()
    an = VoiceAnalyzer(VoiceOptions(vad="none"), classifier=clf)
    x = np.concatenate([_tone_clip(5, 3.0), np.zeros(SR, np.float32)])
    r = an.classify_clip(x, SR)
    assert r is not None and r.reliability is not None and 0.0 < r.reliability <= 1.0
    assert r.snr_db is not None and r.speech_s is not None and r.clipped_fraction == 0.0
    if clf.feature_stats is not None:
        assert r.feature_distance is not None and r.feature_distance > 0
    bad = an.classify_clip(np.clip(x * 30, -1, 1), SR)
    assert bad is not None and bad.reliability is not None and bad.reliability < r.reliability
    windows = []
    for i in range(0, x.size, 1600):
        windows += an.push(x[i:i + 1600], 10**9 + i * 10**9 // SR)
    windows += an.flush()
    assert windows and all(w.reliability is not None and 0 <= w.reliability <= 1 for w in windows)
    assert voice_reliability(windows[0]) == pytest.approx(windows[0].reliability)
    hand = VoiceResult(probabilities=tuple([1 / 7] * 7), voice_activity=0.6, start_ns=0, end_ns=1)
    assert voice_reliability(hand) == pytest.approx(0.6)   # built without one: the voice activity
    assert "reliability" in json.dumps(windows[0].__dict__)
    an.close()


def test_reliability_is_computed_on_the_features_the_model_sees() -> None:
    """The streaming path (log-mel grid) and the one-window path give the same distance for one window."""
    model = LOGMEL_MODEL if LOGMEL_MODEL.is_file() else DEFAULT_MODEL
    if not model.is_file():
        pytest.skip("shipped voice model missing")
    clf = VoiceEmotionClassifier.create(model)
    if clf.feature_stats is None:
        pytest.skip("the shipped card has no feature statistics")
    x = _tone_clip(7, 2.0)
    a = clf.feature_distance(clf.features(x))
    b = clf.feature_distance(af.normalise(af.log_mel(x, clf.spec), clf.spec))
    assert a is not None and b is not None and abs(a - b) < 1e-3
