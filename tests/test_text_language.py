"""Text in several languages: script-based language detection, routing to the English / Chinese models
(TextClassifier.create, EmotionClassifier.default), the commercial variant, the corpus readers behind
``affectlite eval text`` (every format), and bad strings that must never raise from deep inside."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from affectlite.card import card_path_for, load_card
from affectlite.errors import ConfigError, InputError
from affectlite.labels import LABELS
from affectlite.options import TextOptions
from affectlite.results import TextResult
from affectlite.text import (
    COMMERCIAL_TEXT_MODEL,
    TEXT_MODELS,
    TextClassifier,
    classification_metrics,
    detect_language,
    eval_text_main,
    evaluate_text,
    shipped_text_models,
)
from affectlite.text_corpora import FORMATS, dedupe_corpus, detect_format, read_text_corpus

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "datasets"
needs_data = pytest.mark.skipif(not (DATA / "meld").is_dir(), reason=f"datasets not found at {DATA}")

UNIFORM = pytest.approx([1 / 7] * 7, abs=1e-6)


# ------------------------------------------------------------------------------------------ detection
@pytest.mark.parametrize("text,lang", [
    ("I am so happy today!", "en"),
    ("Bonjour, ça va ?", "en"),            # Latin script: the English model is the only Latin-script one
    ("我今天非常生气", "zh"),
    ("我今天非常生氣！", "zh"),              # traditional characters are Han too
    ("我今天很happy", "zh"),                 # mixed, mostly Chinese
    ("Let's eat 火锅 tonight, okay?", "en"),  # mixed, mostly English
    ("今日はとても嬉しいです", "ja"),
    ("안녕하세요 반갑습니다", "ko"),
    ("Привет, как дела?", "und-Cyrl"),
    ("مرحبا كيف حالك", "und-Arab"),
    ("שלום", "und-Hebr"),
    ("Γεια σου", "und-Grek"),
    ("สวัสดีครับ", "und-Thai"),
    ("😀😀!!", "und"),
    ("123", "und"),
    ("", "und"),
    ("ＨＥＬＬＯ", "en"),                      # full-width Latin
])
def test_detect_language_by_script(text: str, lang: str) -> None:
    assert detect_language(text) == lang


def test_detect_language_refuses_non_strings_and_survives_bad_code_points() -> None:
    with pytest.raises(InputError):
        detect_language(b"bytes")  # type: ignore[arg-type]
    assert detect_language("ok \udcff fine") == "en"
    assert detect_language("\ud800" * 10) == "und"
    assert detect_language("a" * 100_000 + "中" * 100_000) == "en"  # only the first characters are looked at


# ------------------------------------------------------------------------------------------ routing
@pytest.fixture(scope="module")
def clf() -> TextClassifier:
    return TextClassifier.create()


def _card_name(path: Path) -> str:
    return load_card(card_path_for(path)).name


def test_shipped_models_exist_and_fit_the_budget() -> None:
    assert set(TEXT_MODELS) == {"en", "zh"}
    for lang, p in TEXT_MODELS.items():
        card = load_card(card_path_for(p))
        idf = p.parent / card.inputs[0].preprocessing["idf_file"]
        assert p.stat().st_size + idf.stat().st_size <= 4 * 1024 * 1024, lang  # <= 4 MB per language
        assert card.training["language"] == lang
        assert "NON-COMMERCIAL" in card.training["terms"]
        assert {"float", "int8"} <= set(card.metrics["goals"][next(iter(card.metrics["goals"]))])
    assert shipped_text_models(commercial=True) == {"en": COMMERCIAL_TEXT_MODEL}
    assert "Apache" in load_card(card_path_for(COMMERCIAL_TEXT_MODEL)).training["terms"]


def test_english_and_chinese_are_routed_to_their_models(clf: TextClassifier) -> None:
    en = clf.classify("Thank you so much, this is wonderful!")
    assert (en.language, en.model, en.label) == ("en", _card_name(TEXT_MODELS["en"]), "happy")
    zh = clf.classify("我今天非常生气")  # "I am very angry today": neutral 0.65 with the English-only model
    assert (zh.language, zh.model) == ("zh", _card_name(TEXT_MODELS["zh"]))
    assert zh.label == "angry" and zh.n_tokens > 0
    assert clf.classify("太好了，我好开心！").label == "happy"
    assert clf.classify("我好难过，想哭").label == "sad"
    mixed = clf.classify("我今天很happy，谢谢你")
    assert mixed.language == "zh" and mixed.model == zh.model


@pytest.mark.parametrize("text,label", [
    ("I'm so sorry for your loss, that's really sad.", "sad"),
    ("This makes me so angry, stop lying to everyone", "angry"),
    ("I'm really scared and nervous about the surgery", "fear"),
    ("That is disgusting, gross.", "disgust"),
    ("Oh my God!", "surprise"),
    ("The meeting is at 3pm.", "neutral"),
    ("我好难过，想哭", "sad"),
    ("我好害怕", "fear"),
    ("天哪！真的吗？", "surprise"),
    ("今天下午三点开会。", "neutral"),
])
def test_obvious_sentences_in_both_languages(clf: TextClassifier, text: str, label: str) -> None:
    assert clf.classify(text).label == label


def test_batch_mixes_languages_in_input_order(clf: TextClassifier) -> None:
    texts = ["I love this so much!", "我今天非常生气", "Привет", "Thank you!"]
    probs, n_tok = clf.predict_proba(texts)
    assert probs.shape == (4, len(LABELS))
    for i, t in enumerate(texts):
        one = clf.classify(t)
        np.testing.assert_allclose(probs[i], one.probabilities, atol=1e-6)
        assert n_tok[i] == one.n_tokens


@pytest.mark.parametrize("text,lang", [("Привет, как дела?", "und-Cyrl"), ("今日はとても嬉しいです", "ja"),
                                       ("안녕하세요 반갑습니다", "ko"), ("مرحبا كيف حالك", "und-Arab")])
def test_unsupported_language_gets_no_confident_label(clf: TextClassifier, text: str, lang: str) -> None:
    from affectlite.fusion import text_reliability

    r = clf.classify(text)
    assert r.language == lang and r.model == ""
    assert list(r.probabilities) == UNIFORM and r.confidence < 0.15
    assert r.n_tokens == 0 and text_reliability(r) == 0.0  # fusion gives it no weight


def test_text_without_letters_goes_to_the_english_model(clf: TextClassifier) -> None:
    r = clf.classify("😍😍😍")
    assert r.language == "und" and r.model == _card_name(TEXT_MODELS["en"])


def test_language_override() -> None:
    en_only = TextClassifier.create(TextOptions(language="en"))
    r = en_only.classify("我今天非常生气")
    assert (r.language, r.model) == ("en", _card_name(TEXT_MODELS["en"]))
    zh_only = TextClassifier.create(TextOptions(language="zh"))
    r = zh_only.classify("I am happy")
    assert (r.language, r.model) == ("zh", _card_name(TEXT_MODELS["zh"]))
    assert zh_only.languages[0] == "zh"


def test_commercial_variant_is_one_option() -> None:
    c = TextClassifier.create(TextOptions(commercial=True))
    r = c.classify("Thank you so much, this is wonderful!")
    assert r.model == "affectlite-text-goemotions" == _card_name(COMMERCIAL_TEXT_MODEL) and r.label == "happy"
    zh = c.classify("我今天非常生气")
    assert zh.language == "zh" and zh.model == "" and zh.n_tokens == 0  # no commercially usable Chinese model
    with pytest.raises(ConfigError, match="commercial"):
        TextClassifier.create(TextOptions(commercial=True, language="zh"))
    from affectlite.options import PipelineOptions

    opts = PipelineOptions().replace(**{"text.commercial": True})
    assert opts.text.commercial is True


def test_one_model_path_takes_every_language() -> None:
    c = TextClassifier.create(TextOptions(model_path=str(COMMERCIAL_TEXT_MODEL)))
    r = c.classify("我今天非常生气")
    assert r.language == "zh" and r.model == "affectlite-text-goemotions" and r.n_tokens > 0
    assert c.languages == ("*",)


def test_chinese_model_is_loaded_on_first_chinese_text() -> None:
    c = TextClassifier.create()
    assert not any(type(h).__name__ == "_Head" for k, h in c._heads.items() if k == "zh")
    c.classify("hello there")
    assert type(c._heads["zh"]).__name__ != "_Head"
    c.classify("你好")
    assert type(c._heads["zh"]).__name__ == "_Head"
    c.close()


def test_emotion_classifier_default_routes_chinese() -> None:
    from affectlite.classifier import EmotionClassifier

    with EmotionClassifier.default() as ec:
        res = ec.classify(text="我今天非常生气")
    assert res.text is not None and res.text.language == "zh" and res.text.label == "angry"
    assert res.label == "angry"


def test_pipeline_routes_pushed_text_by_language() -> None:
    import time

    from affectlite import EmotionResult, PipelineOptions
    from affectlite.pipeline import EmotionPipeline

    o = PipelineOptions().replace(**{"privacy.offline_guard": False, "audio.enabled": False,
                                     "camera.enabled": False})
    got: list[EmotionResult] = []
    with EmotionPipeline(o, on_result=got.append) as pipe:
        for t in ("我今天非常生气", "Привет, как дела?", "Thank you so much, I love it!"):
            n = len(got)
            pipe.push_text(t)
            deadline = time.monotonic() + 10
            while len(got) == n and time.monotonic() < deadline:
                time.sleep(0.01)
    texts = [r.text for r in got if r.text is not None]
    langs = [t.language for t in texts]
    assert langs[0] == "zh" and texts[0].label == "angry" and texts[0].model == _card_name(TEXT_MODELS["zh"])
    assert "und-Cyrl" not in langs or texts[langs.index("und-Cyrl")].n_tokens == 0
    assert texts[-1].language == "en" and texts[-1].label == "happy"


def test_text_result_stays_backward_compatible() -> None:
    r = TextResult(tuple([1 / 7] * 7), 3)
    assert r.language == "" and r.model == "" and r.n_tokens == 3


# ------------------------------------------------------------------------------------------ bad strings
BAD = ["\udcff", "ab\ud800cd", "\x00\x00", "\ufeff\u200b\u200e", "e\u0301" * 500, "🤬" * 3000, "\U0010ffff",
       "a\r\nb\tc", " " * 10_000, "\ufffd\ufffd", "x" * 5000 + "\udfff"]


@pytest.mark.parametrize("text", BAD)
def test_bad_strings_never_raise(clf: TextClassifier, text: str) -> None:
    r = clf.classify(text)
    assert len(r.probabilities) == len(LABELS) and abs(sum(r.probabilities) - 1) < 1e-4
    assert isinstance(r.language, str)


def test_random_code_points_never_raise(clf: TextClassifier) -> None:
    rng = np.random.default_rng(0)
    texts = ["".join(chr(int(c)) for c in rng.integers(0, 0x110000, size=int(n)))
             for n in rng.integers(0, 60, size=150)]
    texts += ["".join(chr(int(c)) for c in rng.integers(0xD800, 0xE000, size=5)) for _ in range(10)]
    probs, _ = clf.predict_proba(texts)
    assert np.all(np.isfinite(probs)) and np.allclose(probs.sum(axis=1), 1, atol=1e-4)


# ------------------------------------------------------------------------------------------ metrics
def test_weighted_and_emotion_micro_f1_by_hand() -> None:
    # truths: neutral x2, happy, sad; predictions: neutral, happy, happy, neutral
    m = classification_metrics([0, 0, 1, 2], [0, 1, 1, 0])
    # F1 neutral 0.5, happy 2/3, sad 0 -> weighted (2*0.5 + 1*2/3 + 0) / 4
    assert m["weighted_f1"] == pytest.approx((1 + 2 / 3) / 4)
    # emotions only: 2 emotion predictions, 2 emotion truths, 1 right -> 2*1 / (2+2)
    assert m["micro_f1_emotions"] == pytest.approx(0.5)
    assert classification_metrics([0, 0], [0, 0])["micro_f1_emotions"] == 0.0


# ------------------------------------------------------------------------------------------ corpora
def _write_corpora(d: Path) -> dict[str, tuple[Path, list[str]]]:
    """One tiny file per format, with the labels each row should map to."""
    (d / "go").mkdir()
    go = d / "go" / "dev.tsv"
    go.write_text('I love it\t17\tid1\n"so ""sad"" now"\t25\tid2\nboth\t17,25\tid3\nfine\t27\tid4\n',
                  encoding="utf-8")
    meld = d / "dev_sent_emo.csv"
    meld.write_bytes(b"Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID\n"
                     b"1,Oh my God!,Rachel,surprise,positive,0,0\n2,I hate you,Ross,anger,negative,0,1\n"
                     b"3,Yeah.,Joey,neutral,neutral,1,0\n" + b"4,It\x92s great,Joey,joy,positive,1,1\n")
    emory = d / "emorynlp_dev_final.csv"
    emory.write_text("Utterance,Speaker,Emotion,Scene_ID,Utterance_ID,Season,Episode\n"
                     "Hi,['A'],Joyful,1,1,1,1\nNo,['B'],Mad,1,2,1,1\nOk,['C'],Peaceful,2,1,1,1\n"
                     "Help,['D'],Scared,2,2,1,1\n", encoding="utf-8")
    dd = d / "dialogues_validation.txt"
    dd.write_text("Hi there ! __eou__ I am so angry . __eou__\nWow ! __eou__\n", encoding="utf-8")
    (d / "dialogues_emotion_validation.txt").write_text("0 1 \n6 \n", encoding="utf-8")
    xd = d / "dialogues_text_Zh.txt"
    xd.write_text("你好。 __eou__ 太好了！ __eou__\n坏的 __eou__ 两个 __eou__\n", encoding="utf-8")
    (d / "dialogues_emotion.txt").write_text("0 4\n5\n", encoding="utf-8")  # 2nd dialogue: count mismatch
    xh = d / "zh_dev_human.txt"
    xh.write_text("你好__eou__我很难过__eou__\ttopic\t1 2\t0 5\n", encoding="utf-8")
    smp = d / "usual_eval_labeled.txt"
    smp.write_text(json.dumps([{"id": 1, "content": "好开心[哈哈]", "label": "happy"},
                               {"id": 2, "content": "气死了", "label": "angry"}], ensure_ascii=False),
                   encoding="utf-8")
    cped = d / "valid_split.csv"
    cped.write_bytes("\ufeffTV_ID,Dialogue_ID,Utterance_ID,Speaker,Sentiment,Emotion,DA,Utterance\n"
                     "1,1_000,1_000_000,甲,negative,astonished,question,怎么了\n"
                     "1,1_000,1_000_001,乙,negative,depress,answer,唉\n"
                     "1,1_001,1_001_000,乙,negative,worried,answer,怕\n".encode("utf-8"))
    return {
        "goemotions": (go, ["happy", "sad", "neutral"]),
        "meld": (meld, ["surprise", "angry", "neutral", "happy"]),
        "emorynlp": (emory, ["happy", "angry", "fear"]),
        "dailydialog": (dd, ["neutral", "angry", "surprise"]),
        "xdailydialog": (xd, ["neutral", "happy"]),
        "xdailydialog-dev": (xh, ["neutral", "sad"]),
        "smp2020": (smp, ["happy", "angry"]),
        "cped": (cped, ["surprise", "sad"]),
    }


def test_every_format_is_read_with_its_label_mapping(tmp_path: Path) -> None:
    files = _write_corpora(tmp_path)
    seen = set()
    for key, (path, labels) in files.items():
        c = read_text_corpus(path)
        seen.add(c.format)
        assert [LABELS[i] for i in c.y] == labels, key
        assert len(c.groups) == len(c.texts)
    assert seen == set(FORMATS)
    meld = read_text_corpus(files["meld"][0])
    assert meld.texts[3] == "It\u2019s great" and meld.groups == ["0", "0", "1", "1"]  # cp1252 byte fixed
    emory = read_text_corpus(files["emorynlp"][0])
    assert emory.skipped_labels == {"peaceful": 1}
    go = read_text_corpus(files["goemotions"][0])
    assert go.texts[1] == 'so "sad" now' and go.skipped_labels == {"multi-label": 1}
    assert read_text_corpus(files["xdailydialog"][0]).skipped_labels == {"turn/label count mismatch": 2}
    assert read_text_corpus(files["cped"][0]).skipped_labels == {"worried": 1}
    assert read_text_corpus(tmp_path / "go").format == "goemotions"  # a folder: its evaluation split


def test_unknown_or_broken_files_are_input_errors(tmp_path: Path) -> None:
    (tmp_path / "x.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(InputError, match="match no known corpus"):
        read_text_corpus(tmp_path / "x.csv")
    (tmp_path / "x.bin").write_bytes(b"\x00\x01")
    with pytest.raises(InputError, match="unknown text corpus format"):
        detect_format(tmp_path / "x.bin")
    (tmp_path / "dialogues_train.txt").write_text("a __eou__\n", encoding="utf-8")
    with pytest.raises(InputError, match="labels file"):
        read_text_corpus(tmp_path / "dialogues_train.txt")
    (tmp_path / "bad.txt").write_text('[{"id": 1, "content": "x", "label": "bored"}]', encoding="utf-8")
    with pytest.raises(InputError, match="unknown label"):
        read_text_corpus(tmp_path / "bad.txt")
    with pytest.raises(InputError, match="not found"):
        read_text_corpus(tmp_path / "missing.tsv")


def test_dedupe_counts_each_text_label_pair_once(tmp_path: Path) -> None:
    c = read_text_corpus(_write_corpora(tmp_path)["meld"][0])
    c.texts[2] = "Oh  my god!"
    c.y[2] = c.y[0]
    d, removed = dedupe_corpus(c)
    assert removed == 1 and len(d) == 3


def test_eval_runs_on_every_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for key, (path, labels) in _write_corpora(tmp_path).items():
        res = evaluate_text(None, path)
        assert res["n"] == len(labels), key
        for k in ("accuracy", "macro_f1", "weighted_f1", "micro_f1_emotions", "per_class_f1"):
            assert k in res
        assert sum(res["languages"].values()) == len(labels)
    assert eval_text_main(argparse.Namespace(data=str(tmp_path / "valid_split.csv"), model=None, limit=None,
                                             dedupe=True)) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["format"] == "cped" and out["languages"] == {"zh": 2}


@needs_data
@pytest.mark.parametrize("rel,n,fmt", [
    ("meld/train_sent_emo.csv", 9989, "meld"), ("meld/dev_sent_emo.csv", 1109, "meld"),
    ("emorynlp/emorynlp_train_final.csv", 7225 - 1135, "emorynlp"),
    ("dailydialog/dialogues_validation.txt", 8069, "dailydialog"),
    ("zh/smp2020-ewect/usual_eval_labeled.txt", 2000, "smp2020"),
    ("zh/cped/valid_split.csv", 11137 - 3685, "cped"),
    ("zh/xdailydialog/zh_dev_human.txt", 8025, "xdailydialog"),
])
def test_real_corpora_read_in_full(rel: str, n: int, fmt: str) -> None:
    c = read_text_corpus(DATA / rel)
    assert c.format == fmt and len(c) == n
    assert all(isinstance(t, str) for t in c.texts)


@needs_data
def test_shipped_models_reproduce_their_card_figures() -> None:
    """Training/runtime parity on one validation set per language (int8 figures in the cards)."""
    en = load_card(card_path_for(TEXT_MODELS["en"])).metrics["goals"]
    res = evaluate_text(TEXT_MODELS["en"], DATA / "meld" / "dev_sent_emo.csv")
    assert res["weighted_f1"] == pytest.approx(en["meld_dev"]["int8"], abs=2e-3)
    zh = load_card(card_path_for(TEXT_MODELS["zh"])).metrics["goals"]
    res = evaluate_text(TEXT_MODELS["zh"], DATA / "zh" / "xdailydialog" / "zh_dev_human.txt")
    assert res["micro_f1_emotions"] == pytest.approx(zh["xdailydialog_dev"]["int8"], abs=2e-3)
