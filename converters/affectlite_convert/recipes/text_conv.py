"""Recipe: the conversational text models, English (``en-conv``) and Chinese (``zh``), int8.

Reproduce the shipped models with::

    affectlite train text --variant en-conv --data ../shared/datasets --out DIR_EN
    affectlite train text --variant zh --data ../shared/datasets --out DIR_ZH
    # (defaults: en-conv class-weight power 0.5, corpora equal; zh power 1.0, --corpus-weight
    #  xdailydialog=0.3 --corpus-weight smp2020_usual=2; both l2 4.7e-6, NB-LR)
    # settings check (several L2 / class-weight settings on the validation sets, no model written):
    affectlite train text --variant en-conv --data ../shared/datasets --out SEL --stage select

(``--variant goemotions``, the default, is the commercial GoEmotions-only recipe in
:mod:`affectlite_convert.recipes.text`.)

Data (all read through :mod:`affectlite.text_corpora`, labels mapped there):

* ``en-conv``. Train: GoEmotions ``train.tsv``, MELD ``train``, EmoryNLP (train, dev and test: none of them
  is a validation set here), DailyDialog ``train``. Validation: MELD ``dev``, DailyDialog ``validation``,
  GoEmotions ``dev.tsv``. Training texts that also occur in a validation set are removed (so dialogue
  splits stay apart even where a short turn repeats).
* ``zh``. Train: XDailyDialog zh (minus every text that is also in ``zh_dev_human.txt``), SMP2020-EWECT
  ``virus_train`` + ``virus_eval_labeled`` + half of ``usual_eval_labeled`` (by post), half of CPED ``valid``
  (by dialogue). Validation: the other half of ``usual_eval_labeled`` (the SMP2020 general-domain figure), the
  other CPED dialogues, XDailyDialog ``zh_dev_human.txt``. The halves are fixed by crc32 of the post /
  dialogue id (``--holdout-seed`` changes them).
* Within each training corpus, duplicate texts are kept once with their majority label (ties dropped).
* **Domains weighted equally**: every row gets its class weight ``(n / (k n_c)) ** power`` over the pooled
  data, then each corpus is scaled so that all corpora carry the same total weight (``--corpus-weight
  NAME=W`` scales one corpus; the shipped Chinese model gives XDailyDialog 0.3 and the in-domain SMP2020 usual
  half 2: chosen on the mean of the three Chinese validation sets, docs/research/2026-12-07-text.md). The
  naive-Bayes ratios are computed from the same weighted rows.

Model: NB-LR over the same hashed TF-IDF featuriser the runtime uses (:class:`affectlite.text.TextFeaturizer`),
one linear layer, int8 through :func:`affectlite_convert.convert`; temperature fitted on the pooled validation
logits. The Chinese featuriser keeps the default token pattern (a run of Han characters is one "word"
token), so its ``char_wb`` block gives character 1-4-grams inside each run: no segmenter.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from affectlite._io import atomic_write_bytes, atomic_write_text, sha256_file
from affectlite.card import card_path_for, load_card, save_card
from affectlite.errors import ConversionError, InputError
from affectlite.fusion import fit_temperature
from affectlite.labels import LABELS
from affectlite.text import TextClassifier, TextFeaturizer, classification_metrics, default_text_spec, smooth_idf
from affectlite.text_corpora import TextCorpus, read_text_corpus

from .text import (
    Csr,
    _calibration_rows,
    _dense,
    _export_model,
    _npy_bytes,
    sparse_logits,
    train_linear,
)

log = logging.getLogger("affectlite_convert.recipes.text_conv")

__all__ = ["VARIANTS", "build_parser", "domain_weights", "load_variant", "main", "majority_dedupe",
           "validation_scores"]

VARIANTS = ("en-conv", "zh")

#: Per variant: model name, files, featuriser shape, defaults (chosen with ``--stage select``).
_V: dict[str, dict[str, Any]] = {
    "en-conv": {"name": "affectlite-text-en-conv", "file": "text-en-conv.tflite", "idf": "text-en-conv.idf.npy",
                "word": (1, 3), "char": (1, 6), "l2": 4.7e-6, "power": 0.5, "corpus_weight": [],
                "ctx_word": (1, 2), "ctx_char": (2, 5)},
    "zh": {"name": "affectlite-text-zh", "file": "text-zh.tflite", "idf": "text-zh.idf.npy",
           "word": (1, 2), "char": (1, 4), "l2": 4.7e-6, "power": 1.0,
           "corpus_weight": ["xdailydialog=0.3", "smp2020_usual=2"], "ctx_word": (1, 2), "ctx_char": (1, 3)},
}

#: Hash buckets of each previous-turn block (``--context-weight > 0``): two blocks, 2 x 65,536 more inputs.
CONTEXT_FEATURES = 1 << 16

#: The goal metric of each validation set (``classification_metrics`` key).
#: SMP2020 has no disgust: its macro-F1 is over its own six labels, as the campaign scores it.
GOAL_METRIC = {"meld_dev": "weighted_f1", "dailydialog_validation": "micro_f1_emotions",
               "goemotions_dev": "macro_f1", "smp2020_usual_holdout": "macro_f1_true_labels",
               "cped_valid_holdout": "macro_f1", "xdailydialog_dev": "micro_f1_emotions"}


def _norm_key(t: str) -> str:
    return " ".join(t.split()).casefold()


def majority_dedupe(c: TextCorpus, exclude: set[str] = frozenset()) -> tuple[TextCorpus, dict[str, int]]:  # type: ignore[assignment]
    """Keep each text once with its majority label (ties dropped); drop texts in ``exclude`` (normalised keys)."""
    votes: dict[str, np.ndarray] = {}
    first: dict[str, int] = {}
    for i, (t, lab) in enumerate(zip(c.texts, c.y.tolist(), strict=True)):
        key = _norm_key(t)
        if key not in votes:
            votes[key] = np.zeros(len(LABELS), np.int64)
            first[key] = i
        votes[key][lab] += 1
    keep: list[int] = []
    ys: list[int] = []
    stats = {"rows": len(c), "excluded_in_validation": 0, "ties_dropped": 0}
    for key, v in votes.items():
        if key in exclude:
            stats["excluded_in_validation"] += int(v.sum())
            continue
        top = int(np.argmax(v))
        if int((v == v[top]).sum()) > 1:
            stats["ties_dropped"] += 1
            continue
        keep.append(first[key])
        ys.append(top)
    out = c.subset(keep)
    out.y = np.asarray(ys, np.int64)
    stats["kept"] = len(out)
    return out, stats


def _half(c: TextCorpus, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows whose group hashes to the held-out half, and the others."""
    h = np.asarray([zlib.crc32(f"{seed}:{g}".encode()) % 2 for g in c.groups])
    return np.flatnonzero(h == 0), np.flatnonzero(h == 1)


def _check_half(c: TextCorpus, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two halves of ``c`` by group for split-half checks, independent of :func:`_half`'s hold-out split.

    CRC-32 is affine in its input, so for group ids of one length the low bit of ``crc32(f"{s}:{g}")`` is the
    same function of ``g`` for every salt ``s``: a second :func:`_half` split of a held-out half put every CPED
    dialogue (6-character ids) in one half. A cryptographic hash has no such relation.
    """
    h = np.asarray([hashlib.blake2b(f"{seed}:{g}".encode(), digest_size=8).digest()[0] % 2 for g in c.groups])
    return np.flatnonzero(h == 0), np.flatnonzero(h == 1)


def load_variant(variant: str, root: str | Path, holdout_seed: int = 0) -> dict[str, Any]:
    """Training corpora (one per domain) and validation sets of a variant.

    Returns:
        ``{"train": {domain: TextCorpus}, "val": {name: TextCorpus}, "stats": {...}}``.

    Raises:
        InputError: a corpus file is missing.
    """
    d = Path(root)

    def rd(rel: str) -> TextCorpus:
        p = d / rel
        if not p.is_file():
            raise InputError(f"{p} not found: --data must be the datasets folder (e.g. ../shared/datasets)")
        return read_text_corpus(p)

    def cat(name: str, parts: Sequence[TextCorpus]) -> TextCorpus:
        return TextCorpus(name, parts[0].format, [t for p in parts for t in p.texts],
                          np.concatenate([p.y for p in parts]), [g for p in parts for g in p.groups],
                          sum(p.n_skipped for p in parts), contexts=[c for p in parts for c in p.context_list()])

    if variant == "en-conv":
        emory = [rd(f"emorynlp/emorynlp_{s}_final.csv") for s in ("train", "dev", "test")]
        train = {"goemotions": rd("goemotions/train.tsv"), "meld": rd("meld/train_sent_emo.csv"),
                 "emorynlp": cat("emorynlp", emory), "dailydialog": rd("dailydialog/dialogues_train.txt")}
        val = {"meld_dev": rd("meld/dev_sent_emo.csv"),
               "dailydialog_validation": rd("dailydialog/dialogues_validation.txt"),
               "goemotions_dev": rd("goemotions/dev.tsv")}
    elif variant == "zh":
        usual = rd("zh/smp2020-ewect/usual_eval_labeled.txt")
        u_hold, u_fit = _half(usual, holdout_seed)
        cped = rd("zh/cped/valid_split.csv")
        c_hold, c_fit = _half(cped, holdout_seed)
        train = {"xdailydialog": rd("zh/xdailydialog/dialogues_text_Zh.txt"),
                 "smp2020_virus": cat("smp2020_virus", [rd("zh/smp2020-ewect/virus_train.txt"),
                                                        rd("zh/smp2020-ewect/virus_eval_labeled.txt")]),
                 "smp2020_usual": usual.subset(u_fit), "cped": cped.subset(c_fit)}
        val = {"smp2020_usual_holdout": usual.subset(u_hold), "cped_valid_holdout": cped.subset(c_hold),
               "xdailydialog_dev": rd("zh/xdailydialog/zh_dev_human.txt")}
    else:
        raise InputError(f"variant {variant!r} is not one of {VARIANTS}")
    exclude = {_norm_key(t) for v in val.values() for t in v.texts}
    stats: dict[str, Any] = {"train": {}, "val": {}}
    for k in list(train):
        train[k], st = majority_dedupe(train[k], exclude)
        stats["train"][k] = {**st, "class_counts": train[k].class_counts()}
    for k, v in val.items():
        stats["val"][k] = {"rows": len(v), "groups": len(set(v.groups)), "class_counts": v.class_counts(),
                           "source": v.name}
    return {"train": train, "val": val, "stats": stats}


def domain_weights(domains: Sequence[int], y: np.ndarray, power: float,
                   scale: Sequence[float] | None = None) -> np.ndarray:
    """Per-row weights: pooled class weight ``(n / (k n_c)) ** power``, then every domain scaled to the same
    total weight (times ``scale[domain]`` when given); mean 1."""
    dom = np.asarray(domains, np.int64)
    counts = np.bincount(y, minlength=len(LABELS)).astype(np.float64)
    cw = (len(y) / (len(LABELS) * np.maximum(counts, 1.0))) ** power
    w = cw[y]
    n_dom = int(dom.max()) + 1
    totals = np.bincount(dom, weights=w, minlength=n_dom)
    w = w / totals[dom]
    if scale is not None:
        w = w * np.asarray(scale, np.float64)[dom]
    out: np.ndarray = w * (len(y) / w.sum())
    return out


def validation_scores(logits: dict[str, np.ndarray], val: dict[str, TextCorpus]) -> dict[str, Any]:
    """Each validation set's metrics, its goal metric, and the mean of the goal metrics."""
    out: dict[str, Any] = {}
    goals = []
    for name, z in logits.items():
        m = classification_metrics(val[name].y, np.argmax(z, axis=1))
        g = GOAL_METRIC[name]
        out[name] = {"goal_metric": g, "goal_value": round(m[g], 4), **{k: m[k] for k in (
            "n", "accuracy", "macro_f1", "macro_f1_true_labels", "weighted_f1", "micro_f1_emotions", "per_class_f1",
            "confusion")}}
        goals.append(m[g])
    out["mean_goal"] = round(float(np.mean(goals)), 4)
    return out


def text_spec(variant: str, n_word: int, n_char: int, context_weight: float = 0.0) -> dict[str, Any]:
    """The variant's featuriser spec (no idf); ``context_weight > 0`` adds the previous-turn blocks."""
    v = _V[variant]
    spec = default_text_spec(n_word, n_char, word_ngrams=v["word"], char_ngrams=v["char"])
    if context_weight > 0:
        for name, analyzer, rng in (("ctx_word", "word", v["ctx_word"]), ("ctx_char", "char_wb", v["ctx_char"])):
            spec["blocks"].append({"name": name, "source": "context", "analyzer": analyzer, "ngram_range": list(rng),
                                   "n_features": CONTEXT_FEATURES, "weight": context_weight})
        spec["n_features"] = sum(int(b["n_features"]) for b in spec["blocks"])
    return spec


def _featurizer(variant: str, texts: Sequence[str], n_word: int, n_char: int, min_df: int,
                contexts: Sequence[str] | None = None, context_weight: float = 0.0) -> TextFeaturizer:
    feat = TextFeaturizer.from_spec(text_spec(variant, n_word, n_char, context_weight))
    df, n = feat.document_frequency(texts, contexts)
    idf = smooth_idf(df, n, min_df).astype(np.float16).astype(np.float32)
    return feat.with_idf(idf)


def _pool(train: dict[str, TextCorpus]) -> tuple[list[str], np.ndarray, list[int], list[str]]:
    texts: list[str] = []
    ys: list[np.ndarray] = []
    dom: list[int] = []
    ctx: list[str] = []
    for i, c in enumerate(train.values()):
        texts += c.texts
        ys.append(c.y)
        dom += [i] * len(c)
        ctx += c.context_list()
    return texts, np.concatenate(ys), dom, ctx


def _prepare(a: argparse.Namespace) -> tuple[dict[str, Any], TextFeaturizer, Csr, np.ndarray, list[int],
                                             dict[str, Csr]]:
    data = load_variant(a.variant, a.data, a.holdout_seed)
    log.info("data: %s", json.dumps(data["stats"]))
    cw = _corpus_weights(a)
    unknown = set(cw) - set(data["train"])
    if unknown:
        raise InputError(f"--corpus-weight names {sorted(unknown)}; this variant's corpora: {sorted(data['train'])}")
    data["train"] = {k: c for k, c in data["train"].items() if cw.get(k, 1.0) > 0}
    a.corpus_scale = [cw.get(k, 1.0) for k in data["train"]]
    texts, y, dom, ctx = _pool(data["train"])
    cw_ctx = float(a.context_weight)
    t0 = time.time()
    if a.from_run:  # the earlier run's idf (same data, same split): no refit; a sample of train for calibration
        v = _V[a.variant]
        base = TextFeaturizer.from_spec(text_spec(a.variant, a.n_word, a.n_char, cw_ctx))
        feat = base.with_idf(np.load(Path(a.from_run) / v["idf"], allow_pickle=False).astype(np.float32))
        keep = np.sort(np.random.default_rng(0).choice(len(texts), size=min(len(texts), 6000), replace=False))
        texts, ctx = [texts[int(i)] for i in keep], [ctx[int(i)] for i in keep]
        y, dom = y[keep], [dom[int(i)] for i in keep]
    elif a.idf_from:  # an earlier run's idf on the same training texts: skip the document-frequency pass
        v = _V[a.variant]
        base = TextFeaturizer.from_spec(text_spec(a.variant, a.n_word, a.n_char, cw_ctx))
        feat = base.with_idf(np.load(Path(a.idf_from) / v["idf"], allow_pickle=False).astype(np.float32))
    else:
        feat = _featurizer(a.variant, texts, a.n_word, a.n_char, a.min_df, ctx if cw_ctx > 0 else None, cw_ctx)
        log.info("idf fitted on %d texts in %.0fs", len(texts), time.time() - t0)
    x = _featurize(feat, texts, "train", ctx if cw_ctx > 0 else None)
    xv = {k: _featurize(feat, v.texts, k, v.context_list() if cw_ctx > 0 else None) for k, v in data["val"].items()}
    return data, feat, x, y, dom, xv


def _featurize(feat: TextFeaturizer, texts: Sequence[str], what: str, contexts: Sequence[str] | None = None) -> Csr:
    t0 = time.time()
    x = feat.transform_sparse(texts, contexts)
    log.info("featurised %d %s texts%s in %.1fs (%.0f nnz/text)", len(texts), what,
             " with their previous turns" if contexts is not None else "", time.time() - t0,
             len(x[1]) / max(len(texts), 1))
    return x


def _runtime_logits(clf: TextClassifier, texts: Sequence[str], contexts: Sequence[str] | None,
                    batch: int = 64) -> np.ndarray:
    """Raw (uncalibrated) logits of the int8 model, featurised exactly as at runtime (with the contexts)."""
    outs = []
    for i in range(0, len(texts), batch):
        x = clf.featurizer.transform(texts[i:i + batch], None if contexts is None else contexts[i:i + batch])
        outs.append(clf.model.run(x)[0].astype(np.float64))
    return np.concatenate(outs)


def _select(a: argparse.Namespace, out: Path) -> int:
    data, feat, x, y, dom, xv = _prepare(a)
    results = []
    for l2 in a.grid_l2:
        for power in a.grid_power:
            for dw in (True, False) if a.compare_domain_weighting else (True,):
                t0 = time.time()
                # the class weights live in sw (with domain weighting) or in train_linear (without): never both
                sw = domain_weights(dom, y, power, a.corpus_scale) if dw else None
                w, b, hist = train_linear(x, y, feat.dim, l2=l2, class_weight_power=0.0 if dw else power, nb=a.nb,
                                          steps=a.steps, sample_weight=sw)
                scores = validation_scores({k: sparse_logits(v, w, b) for k, v in xv.items()}, data["val"])
                rec = {"l2": l2, "class_weight_power": power, "domain_weighting": dw, "nb": a.nb,
                       "iterations": hist[-1]["step"], "s": round(time.time() - t0),
                       "mean_goal": scores["mean_goal"],
                       **{k: v["goal_value"] for k, v in scores.items() if isinstance(v, dict)}}
                log.info("select %s", json.dumps(rec))
                results.append({**rec, "scores": scores})
                out.mkdir(parents=True, exist_ok=True)
                atomic_write_text(out / "select.json", json.dumps({"variant": a.variant, "results": results,
                                                                   "stats": data["stats"]}, indent=2) + "\n")
    best = max(results, key=lambda r: r["mean_goal"])
    print(json.dumps({k: v for k, v in best.items() if k != "scores"}))
    return 0


def _final(a: argparse.Namespace, out: Path) -> int:
    from affectlite_convert import convert

    v = _V[a.variant]
    data, feat, x, y, dom, xv = _prepare(a)
    out.mkdir(parents=True, exist_ok=True)
    assert feat.idf is not None
    idf_path = out / v["idf"]
    atomic_write_bytes(idf_path, _npy_bytes(feat.idf.astype(np.float16)))
    spec = feat.to_spec(idf_file=v["idf"], idf_sha256=sha256_file(idf_path))
    val_texts = [t for c in data["val"].values() for t in c.texts]
    rebuilt = TextFeaturizer.from_spec(spec, base_dir=out)
    probe = val_texts[:300]
    probe_ctx = [c for v_ in data["val"].values() for c in v_.context_list()][:300] if a.context_weight > 0 else None
    if not np.array_equal(rebuilt.transform(probe, probe_ctx), feat.transform(probe, probe_ctx)):
        raise ConversionError("the featuriser rebuilt from the card spec differs from the training featuriser")
    if a.from_run:
        w, b = _load_weights(Path(a.from_run))
        hist = _load_card_field(Path(a.from_run) / v["file"], "history")
    else:
        sw = domain_weights(dom, y, a.class_weight_power, a.corpus_scale)
        # the class weights are inside sw: train_linear must not apply them a second time
        w, b, hist = train_linear(x, y, feat.dim, l2=a.l2, class_weight_power=0.0, nb=a.nb,
                                  steps=a.steps, sample_weight=sw)
        np.savez_compressed(out / "text_float_weights.npz", w=w, b=b)
    offsets = np.zeros(len(LABELS), np.float32)
    if a.offsets:
        offsets = np.asarray(json.loads(Path(a.offsets).read_text(encoding="utf-8"))["offsets"], np.float32)
        b = (b + offsets).astype(np.float32)
    f_logits = {k: sparse_logits(xx, w, b) for k, xx in xv.items()}
    float_scores = validation_scores(f_logits, data["val"])
    log.info("float validation: %s", json.dumps({k: s["goal_value"] for k, s in float_scores.items()
                                                  if isinstance(s, dict)}))
    val_y = np.concatenate([c.y for c in data["val"].values()])
    model = _export_model(w, b)
    rng = np.random.default_rng(0)
    x_cal = _dense(x, feat.dim, _calibration_rows(x, a.calibration_samples, rng).tolist())
    first = next(iter(data["val"]))
    n_check = min(len(data["val"][first]), 1200)
    x_chk = _dense(xv[first], feat.dim, list(range(n_check)))
    split = "; ".join(f"{k}: {c.name} ({len(c)} utterances, {len(set(c.groups))} dialogues/posts)"
                      for k, c in data["val"].items())
    terms = _TERMS[a.variant]
    card = {
        "name": v["name"], "version": "1.0.0", "task": "text", "labels": list(LABELS), "label_mapping": {},
        "inputs": [{"name": "features", "kind": "text_features", "preprocessing": spec}],
        "outputs": [{"name": "logits", "kind": "logits"}],
        "calibration": {"temperature": 1.0},
        "training": {"data": _DATA[a.variant], "terms": terms, "split": _SPLIT[a.variant],
                     "recipe": "affectlite_convert.recipes.text_conv", "language": a.variant.split("-")[0],
                     "config": _config(a), "data_stats": data["stats"], "history": hist,
                     "logit_offsets": {"values": [round(float(o), 4) for o in offsets],
                                       "tuned_on": _offsets_origin(a.offsets)}},
        "metrics": {"split": split},
        "limitations": _LIMITS[a.variant],
    }
    tflite = out / v["file"]
    res = convert(model, tflite, x_cal, card, validation=(x_chk, data["val"][first].y[:n_check]),
                  validation_split=f"{first} (first {n_check})", io_dtype="int8", report_dir=out / "report",
                  latency_threads=[1], progress=False)
    clf = TextClassifier.from_model(tflite, backend="auto", num_threads=1)
    q_logits = {k: _runtime_logits(clf, c.texts, c.context_list() if a.context_weight > 0 else None)
                for k, c in data["val"].items()}
    int8_scores = validation_scores(q_logits, data["val"])
    temp = fit_temperature(np.concatenate(list(q_logits.values())), val_y, kind="logits")
    metrics = dict(res.card.metrics)
    metrics["float"] = float_scores
    metrics["int8"] = {**int8_scores, "converter_check": res.card.metrics.get("int8")}
    metrics["goals"] = {k: {"metric": GOAL_METRIC[k], "float": float_scores[k]["goal_value"],
                            "int8": int8_scores[k]["goal_value"]} for k in data["val"]}
    metrics["featurizer_parity"] = "int8 figures from the runtime TextClassifier (spec + idf from the card)"
    final = res.card.with_updates(calibration={"temperature": round(temp, 4), "method": "NLL on the pooled int8 "
                                               "validation logits", "split": split}, metrics=metrics)
    save_card(final, card_path_for(tflite))
    load_card(card_path_for(tflite))
    summary = {"goals": metrics["goals"], "temperature": temp, "model_bytes": tflite.stat().st_size,
               "idf_bytes": idf_path.stat().st_size, "converter_passed": res.passed,
               "converter_failures": res.failures}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0 if res.passed else 3


_DATA = {
    "en-conv": "GoEmotions train.tsv (Reddit; Demszky et al. 2020), MELD train (Friends TV dialogue; Poria et al. "
               "2019), EmoryNLP train/dev/test (Friends; Zahiri & Choi 2018), DailyDialog train (Li et al. 2017); "
               "corpora weighted equally",
    "zh": "XDailyDialog zh (Liu et al. 2023, human translation of DailyDialog), SMP2020-EWECT Weibo posts "
          "(virus_train, virus_eval_labeled, half of usual_eval_labeled by post), CPED valid (Chen et al. 2022, "
          "Chinese TV dialogue; half of the dialogues); corpora weighted equally",
}
_TERMS = {
    "en-conv": "RESEARCH / NON-COMMERCIAL: DailyDialog is CC BY-NC-SA 4.0; MELD and EmoryNLP are GPL-3.0 "
               "repositories of dialogue from a copyrighted TV show (research use); GoEmotions Apache-2.0. For "
               "commercial use select the GoEmotions-only model (text.variant: commercial).",
    "zh": "RESEARCH / NON-COMMERCIAL: XDailyDialog data CC BY-NC-SA 4.0; SMP2020-EWECT evaluation-campaign data "
          "without licence (research use); CPED Apache-2.0 repository of dialogue from copyrighted TV series "
          "(research use).",
}
_SPLIT = {
    "en-conv": "validation sets: MELD dev, DailyDialog validation, GoEmotions dev.tsv (split by dialogue as the "
               "corpora publish them); training texts also in a validation set removed; settings chosen on the "
               "mean of MELD dev weighted-F1, DailyDialog micro-F1 over the six emotions, GoEmotions macro-F1",
    "zh": "validation sets: half of SMP2020 usual_eval_labeled (by post), half of the CPED valid dialogues (by "
          "dialogue), XDailyDialog zh_dev_human.txt; XDailyDialog training texts also in zh_dev_human removed",
}
_LIMITS = {
    "en-conv": ["English only. Bag of hashed word/char n-grams over one utterance: no context from earlier turns, "
                "no sarcasm.",
                "TV and written dialogue is mostly neutral; disgust and fear are rare in every corpus and weak.",
                "Labels of the four corpora differ in definition (GoEmotions surprise includes curiosity and "
                "confusion; DailyDialog happiness includes politeness)."],
    "zh": ["Chinese only (simplified and traditional characters are not converted into each other; the training "
           "data is simplified). Character n-grams over one utterance, no segmenter, no context.",
           "SMP2020 has no disgust; disgust and fear are rare in every corpus and weak.",
           "Weibo posts (long, emoji codes like [心]) and TV dialogue (short turns) differ a lot; CPED figures "
           "are far below the Weibo ones."],
}


def _load_weights(run: Path) -> tuple[np.ndarray, np.ndarray]:
    f = run / "text_float_weights.npz"
    if not f.is_file():
        raise InputError(f"{f} not found: --from-run must be the --out folder of a finished final run")
    with np.load(f) as z:
        return np.asarray(z["w"], np.float32), np.asarray(z["b"], np.float32)


def _load_card_field(model: Path, key: str) -> Any:
    try:
        return json.loads(card_path_for(model).read_text(encoding="utf-8"))["training"].get(key)
    except (OSError, ValueError, KeyError):
        return None


def _offsets_origin(path: str | None) -> str:
    if not path:
        return "none"
    rep = json.loads(Path(path).read_text(encoding="utf-8"))
    return str(rep.get("tuned_on", path))


#: The validation sets whose goal metrics the offsets stage maximises (their mean).
OBJECTIVE = {"en-conv": ("meld_dev", "dailydialog_validation", "goemotions_dev"),
             "zh": ("smp2020_usual_holdout", "cped_valid_holdout")}


def tune_mean_goal_offsets(logits: dict[str, np.ndarray], val: dict[str, TextCorpus], sets: Sequence[str],
                           grid: Sequence[float] = tuple(np.round(np.linspace(-1.5, 1.5, 31), 2)),
                           rounds: int = 3) -> tuple[np.ndarray, float]:
    """Per-class additive logit offsets maximising the mean goal metric over ``sets`` (coordinate ascent).

    Returns:
        ``(offsets (7,), mean goal with them)``.
    """
    def score(off: np.ndarray) -> float:
        return float(np.mean([classification_metrics(val[k].y, np.argmax(logits[k] + off, axis=1))[GOAL_METRIC[k]]
                              for k in sets]))

    off = np.zeros(len(LABELS))
    best = score(off)
    for _ in range(rounds):
        improved = False
        for c in range(len(LABELS)):
            for g in grid:
                trial = off.copy()
                trial[c] = g
                f = score(trial)
                if f > best + 1e-9:
                    best, off, improved = f, trial, True
        if not improved:
            break
    return off, best


def _offsets_stage(a: argparse.Namespace, out: Path) -> int:
    """Tune per-class logit offsets on the validation sets for the mean goal; check them split-half by
    dialogue (tuned on one half of every set's dialogues, scored on the other)."""
    if not a.from_run:
        raise InputError("--stage offsets needs --from-run DIR (a finished final run)")
    v = _V[a.variant]
    data = load_variant(a.variant, a.data, a.holdout_seed)
    base = TextFeaturizer.from_spec(text_spec(a.variant, a.n_word, a.n_char, a.context_weight))
    feat = base.with_idf(np.load(Path(a.from_run) / v["idf"], allow_pickle=False).astype(np.float32))
    w, b = _load_weights(Path(a.from_run))
    sets = OBJECTIVE[a.variant]
    val = data["val"]
    z = {k: sparse_logits(feat.transform_sparse(val[k].texts, val[k].context_list() if a.context_weight > 0
                                                else None), w, b) for k in sets}
    halves: list[dict[str, Any]] = []
    for h in (0, 1):
        tune_idx = {k: _check_half(val[k], 1000 + a.holdout_seed)[h] for k in sets}
        test_idx = {k: _check_half(val[k], 1000 + a.holdout_seed)[1 - h] for k in sets}
        off_h, _ = tune_mean_goal_offsets({k: z[k][tune_idx[k]] for k in sets},
                                          {k: val[k].subset(tune_idx[k]) for k in sets}, sets)
        tv = {k: val[k].subset(test_idx[k]) for k in sets}
        before = validation_scores({k: z[k][test_idx[k]] for k in sets}, tv)
        after = validation_scores({k: z[k][test_idx[k]] + off_h for k in sets}, tv)
        halves.append({"offsets": off_h.round(2).tolist(), "other_half_before": before["mean_goal"],
                       "other_half_after": after["mean_goal"]})
        log.info("split-half %d: %s", h, json.dumps(halves[-1]))
    off, tuned = tune_mean_goal_offsets(z, val, sets)
    before = validation_scores(z, {k: val[k] for k in sets})
    rep = {"offsets": off.round(3).tolist(), "objective_sets": list(sets), "mean_goal_before": before["mean_goal"],
           "mean_goal_after": round(tuned, 4), "split_half_check": halves,
           "tuned_on": "validation sets " + ", ".join(sets) + " (all rows; split-half check by dialogue: "
           + "; ".join(f"{x['other_half_before']:.4f} -> {x['other_half_after']:.4f}" for x in halves) + ")"}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "offsets.json", json.dumps(rep, indent=2) + "\n")
    print(json.dumps(rep))
    return 0


def _corpus_weights(a: argparse.Namespace) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in a.corpus_weight or []:
        name, _, val = item.partition("=")
        try:
            out[name.strip()] = float(val)
        except ValueError:
            raise InputError(f"--corpus-weight {item!r}: expected NAME=NUMBER, e.g. xdailydialog=0.5") from None
        if out[name.strip()] < 0:
            raise InputError(f"--corpus-weight {item!r}: the weight must be >= 0 (0 drops the corpus)")
    return out


def _config(a: argparse.Namespace) -> dict[str, Any]:
    return {k: getattr(a, k) for k in ("variant", "n_word", "n_char", "min_df", "l2", "class_weight_power", "nb",
                                       "steps", "holdout_seed", "corpus_weight", "context_weight")}


def build_parser() -> argparse.ArgumentParser:
    """The ``affectlite train text --variant en-conv|zh`` argument parser."""
    p = argparse.ArgumentParser(prog="affectlite train text --variant en-conv|zh", description=__doc__.split("\n")[0])
    p.add_argument("--variant", choices=VARIANTS, required=True)
    p.add_argument("--data", required=True, help="the datasets folder (e.g. ../shared/datasets)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--stage", choices=["final", "select", "offsets"], default="final",
                   help="final: train, convert, card; select: compare settings on validation; offsets: tune "
                        "per-class logit offsets of a finished run (--from-run) for the mean goal metric")
    p.add_argument("--from-run", default=None, help="final/offsets: reuse this final run's float weights and idf "
                   "instead of training (e.g. to add --offsets and convert again)")
    p.add_argument("--idf-from", default=None, help="reuse the idf file of an earlier run on the same training "
                   "data (saves the document-frequency pass; the idf is identical)")
    p.add_argument("--offsets", default=None, help="final: OUT/offsets.json of --stage offsets, added to the bias")
    p.add_argument("--n-word", type=int, default=1 << 17)
    p.add_argument("--n-char", type=int, default=1 << 17)
    p.add_argument("--min-df", type=int, default=2)
    p.add_argument("--l2", type=float, default=None, help="L2 penalty (default: the variant's chosen value)")
    p.add_argument("--class-weight-power", type=float, default=None)
    p.add_argument("--nb", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--steps", type=int, default=150, help="L-BFGS iterations (the shipped models: 150)")
    p.add_argument("--corpus-weight", action="append", metavar="NAME=W", help="scale one training corpus's "
                   "total weight (default 1 each: corpora weighted equally; 0 drops it), e.g. xdailydialog=0.3")
    p.add_argument("--context-weight", type=float, default=0.0, help="> 0: add hashed n-gram blocks of the "
                   "previous turn of each utterance's dialogue (own hash space, this weight after their L2 "
                   "normalisation; GoEmotions / SMP2020 rows have none); 0: one utterance only")
    p.add_argument("--holdout-seed", type=int, default=0, help="zh: which half of usual_eval / CPED is held out")
    p.add_argument("--grid-l2", type=float, nargs="+", default=[2e-6, 4.7e-6, 1.2e-5])
    p.add_argument("--grid-power", type=float, nargs="+", default=[0.5, 1.0])
    p.add_argument("--compare-domain-weighting", action="store_true",
                   help="select: also train each setting without domain weighting")
    p.add_argument("--calibration-samples", type=int, default=400)
    p.add_argument("--threads", type=int, default=None, help="unused (kept for symmetry with the other recipes)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point (``affectlite train text --variant en-conv|zh ...``)."""
    a = build_parser().parse_args(argv)
    v = _V[a.variant]
    if a.l2 is None:
        a.l2 = v["l2"]
    if a.class_weight_power is None:
        a.class_weight_power = v["power"]
    if a.corpus_weight is None:
        a.corpus_weight = list(v["corpus_weight"])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    out = Path(a.out)
    if a.stage == "offsets":
        return _offsets_stage(a, out)
    return _select(a, out) if a.stage == "select" else _final(a, out)


if __name__ == "__main__":
    sys.exit(main())
