"""Recipe: compare late fusion with a learned fusion head on held-out pseudo-pairs, and train the head (int8).

Reproduce with::

    affectlite train fusion --fer ../shared/datasets/fer2013 --ravdess ../shared/datasets/ravdess-speech-16k \\
        --goemotions ../shared/datasets/goemotions --voice-cv RUNS/voice/cv --out DIR
    # or: python -m affectlite_convert.recipes.fusion ...

No dataset has a face, a voice and a text of the same moment, so the study uses **pseudo-pairs**: a face
image, a speech clip and a text that share a label, drawn independently. Each modality's probabilities come
from the shipped models, through the runtime code, on data those models did NOT train on:

* face: FER2013 ``public_test`` (the face model trained on ``train``);
* voice: out-of-fold clip probabilities of the voice recipe's leave-actors-out CV (``--voice-cv``; every
  clip scored by a fold model that never heard that actor), calibrated with the shipped card's temperature.
  Without ``--voice-cv`` the shipped model scores every clip: it trained on all of them, so the voice
  figures are then optimistic and the report says so;
* text: GoEmotions ``dev`` rows mapping to one label.

Each pool is split in two halves (faces and texts at random, stratified; voices by actor, 5 men and 5 women
each): pseudo-pairs from half A train the head and tune the late-fusion weights; pseudo-pairs from half B
are the held-out test. (Training the head on the modality models' own training data would teach it to
trust their over-confident training-set outputs; stacking needs held-out predictions.)

Every modality subset is scored (face, voice, text alone; each pair; all three): single modalities, late
fusion with the default weights, late fusion with weights tuned on A, and the learned head. The head is an
int8 MLP over :func:`affectlite.fusion.head_features` trained with random modality subsets, written as
``DIR/fusion.tflite`` + card; ``DIR/report.json`` and ``DIR/report.md`` hold the comparison.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from affectlite._io import atomic_write_text
from affectlite.fusion import (
    MODALITIES,
    FusionHead,
    fuse_probabilities,
    head_features,
    limit_to_evidence,
    text_reliability,
)
from affectlite.labels import LABELS
from affectlite.options import FusionOptions
from affectlite.results import TextResult
from affectlite.text import classification_metrics

log = logging.getLogger("affectlite_convert.recipes.fusion")

__all__ = ["MODEL_NAME", "Pool", "late_fuse", "main", "make_pairs", "subsets"]

MODEL_NAME = "affectlite-fusion-head"
_N = len(LABELS)


class Pool:
    """Per-sample calibrated probabilities of one modality, with labels, reliabilities and a split mask."""

    def __init__(self, name: str, probs: np.ndarray, y: np.ndarray, rel: np.ndarray, half_a: np.ndarray,
                 note: str) -> None:
        self.name = name
        self.probs = np.asarray(probs, np.float64)
        self.y = np.asarray(y, np.int64)
        self.rel = np.asarray(rel, np.float64)
        self.half_a = np.asarray(half_a, bool)
        self.note = note

    def indices(self, half: str, label: int) -> np.ndarray:
        """Sample indices of one half (``"A"``/``"B"``) and label."""
        mask = (self.half_a if half == "A" else ~self.half_a) & (self.y == label)
        return np.flatnonzero(mask)


def subsets() -> list[tuple[str, ...]]:
    """All non-empty modality subsets, singles first."""
    return [s for k in (1, 2, 3) for s in itertools.combinations(MODALITIES, k)]


def _stratified_half(y: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    half = np.zeros(len(y), bool)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        half[idx[: len(idx) // 2]] = True
    return half


# ----------------------------------------------------------------------------------------------- pools
def _model_key(path: str | os.PathLike[str]) -> str:
    """Cache key of a model: the first 12 hex digits of its file's sha256 (a changed model is re-scored)."""
    from affectlite._io import sha256_file

    return sha256_file(path)[:12]


def face_pool(fer_dir: Path, model: str | None, cache: Path, seed: int) -> Pool:
    """Face probabilities of FER2013 public_test through the runtime face classifier.

    The labels are the ones the face model learned: a model whose card carries ``metrics.ferplus`` (trained on
    the FER+ votes) is scored against the FER+ majority of each image (images without a strict majority in our
    seven labels, or unmatched, left out); a FER2013-label model against the folder labels. Scoring a FER+ model
    against the FER2013 labels would teach the head FER2013's label noise and favour it unfairly.
    """
    from affectlite.card import card_path_for, load_card
    from affectlite.face import DEFAULT_FACE_MODEL as FACE_MODEL
    from affectlite.face import FaceExpressionClassifier, _list_images, _read_image

    path = Path(model or FACE_MODEL)
    f = cache / f"face_public_test_{_model_key(model or FACE_MODEL)}.npz"
    items, _ = _list_images(fer_dir / "public_test")
    if f.is_file():
        z = np.load(f)
        probs, y = z["probs"], z["y"]
    else:
        clf = FaceExpressionClassifier.create(model)
        probs = np.asarray([clf.classify_crops([_read_image(p)])[0] for p, _ in items])
        y = np.asarray([lab for _, lab in items])
        cache.mkdir(parents=True, exist_ok=True)
        np.savez(f, probs=probs, y=y)
    source = "FER2013 labels"
    if "ferplus" in load_card(card_path_for(path)).metrics:
        from .face_ferplus import load_votes, majority_labels, split_files

        majority = dict(zip(split_files(fer_dir, "public_test"), majority_labels(load_votes(fer_dir, "public_test")),
                            strict=True))
        yf = np.asarray([majority.get(p.relative_to(fer_dir).as_posix(), -1) for p, _ in items], dtype=np.int64)
        keep = yf >= 0
        probs, y = probs[keep], yf[keep]
        source = "FER+ majority labels (the face model trained on the FER+ votes)"
    return Pool("face", probs, y, np.ones(len(y)), _stratified_half(y, seed),
                f"FER2013 public_test ({len(y)} images, {source}), shipped face model (trained on FER2013 train)")


def voice_pool(ravdess_dir: Path, voice_cv: Path | None, model: str | None, cache: Path) -> Pool:
    """Voice probabilities learned trust comes from: out-of-domain when the voice validation folder is given.

    With ``voice_cv`` (the voice recipe's ``OUT/cv``), ``loco_outputs.npz`` is read: every clip of every corpus
    scored (int8, through the runtime) by the leave-one-corpus-out model that never heard its corpus, with
    its reliability, calibrated with the shipped card's temperature (fitted on those same outputs). Halves by
    speaker: RAVDESS actors 1, 2, 5, 6, 9, 10, 13, 14, 17, 18 and TESS's younger speaker in A, every other
    corpus's speakers alternating (sorted, per gender), the rest in B. Without it the shipped model scores the
    RAVDESS clips it trained on: optimistic, and the report says so.
    """
    from affectlite.card import card_path_for, load_card
    from affectlite.fusion import apply_temperature
    from affectlite.voice import DEFAULT_MODEL
    from affectlite_convert.recipes.voice import list_ravdess

    if voice_cv is not None:
        f = voice_cv / "loco_outputs.npz"
        if not f.is_file():
            raise SystemExit(f"{f} is missing: run `affectlite train voice --stage cv` (with two or more corpora) "
                             "first; it writes the leave-one-corpus-out outputs there")
        z = np.load(f)
        probs, y, rel = z["probs"], z["y"].astype(np.int64), z["reliability"]
        spk = z["speaker"].astype(str)
        half_a = np.array([s in {f"ravdess:{a:02d}" for a in (1, 2, 5, 6, 9, 10, 13, 14, 17, 18)} or s == "tess:YAF"
                           for s in spk])
        # other corpora (ASED, nEMO, TurEV-DB ...): their speakers alternate between the halves in sorted order,
        # each gender on its own
        gender = z["gender"].astype(str) if "gender" in z.files else np.array([""] * len(spk))
        for c in sorted({s.split(":")[0] for s in spk} - {"ravdess", "tess"}):
            for g in sorted(set(gender[[s.startswith(c + ":") for s in spk]].tolist())):
                ss = sorted({s for s, gg in zip(spk, gender, strict=True) if s.startswith(c + ":") and gg == g})
                half_a |= np.isin(spk, ss[0::2])
        card = load_card(card_path_for(model or DEFAULT_MODEL))
        probs = apply_temperature(np.clip(probs, 1e-6, 1.0), card.temperature, kind="probs")
        corp = {c: int((z["corpus"] == c).sum()) for c in sorted(set(z["corpus"].tolist()))}
        note = (f"{len(y)} clips ({', '.join(f'{c} {n}' for c, n in corp.items())}), int8 probabilities of the voice "
                f"recipe's leave-one-corpus-out runs (each clip scored by a model that never heard its corpus), "
                f"temperature {card.temperature:.3f} from the shipped card, runtime reliabilities")
        return Pool("voice", probs, y, np.clip(rel, 0.0, 1.0), half_a, note)
    items = list_ravdess(ravdess_dir)
    y = np.asarray([it[1] for it in items])
    actors = np.asarray([it[2] for it in items])
    half_a = np.isin(actors, [1, 2, 5, 6, 9, 10, 13, 14, 17, 18])  # 5 men (odd) + 5 women (even) per half
    f = cache / f"voice_shipped_{_model_key(model or DEFAULT_MODEL)}.npz"
    if f.is_file():
        probs = np.load(f)["probs"]
    else:
        from affectlite import audio_features as af
        from affectlite.options import VoiceOptions
        from affectlite.voice import VoiceAnalyzer

        an = VoiceAnalyzer(VoiceOptions(model_path=model, vad="none", num_threads=1))
        out = []
        for p, _, _ in items:
            r = an.classify_clip(af.load_audio(p, 16000), 16000)
            out.append(r.probabilities if r is not None else [1.0 / _N] * _N)
        probs = np.asarray(out)
        cache.mkdir(parents=True, exist_ok=True)
        np.savez(f, probs=probs)
    return Pool("voice", probs, y, np.ones(len(y)), half_a,
                f"RAVDESS actors 01-20 ({len(y)} clips) scored by the SHIPPED voice model, which trained on all "
                "of them: voice figures are optimistic")


def text_pool(goemo_dir: Path, model: str | None, cache: Path, seed: int) -> Pool:
    """Text probabilities of GoEmotions dev single-label rows through the runtime text classifier."""
    from affectlite.options import TextOptions
    from affectlite.text import (
        TEXT_MODELS,
        TextClassifier,
        goemotions_common_table,
        read_goemotions_tsv,
        single_label_rows,
    )

    text_model = model or str(TEXT_MODELS["en"])  # the model the runtime routes English text to by default
    f = cache / f"text_dev_{_model_key(text_model)}.npz"
    if f.is_file():
        z = np.load(f)
        probs, y, ntok = z["probs"], z["y"], z["ntok"]
    else:
        table = goemotions_common_table(goemo_dir)
        texts, y, _ = single_label_rows(read_goemotions_tsv(goemo_dir / "dev.tsv", list(table)), table)
        clf = TextClassifier.create(TextOptions(model_path=text_model))
        chunks = [clf.predict_proba(texts[i:i + 64]) for i in range(0, len(texts), 64)]
        probs = np.concatenate([c[0] for c in chunks])
        ntok = np.asarray([n for c in chunks for n in c[1]])
        cache.mkdir(parents=True, exist_ok=True)
        np.savez(f, probs=probs, y=y, ntok=ntok)
    rel = np.asarray([text_reliability(TextResult(tuple([1.0 / _N] * _N), int(n))) for n in ntok])
    return Pool("text", probs, y, rel, _stratified_half(y, seed + 1),
                f"GoEmotions dev single-label rows ({len(y)}), shipped text model (trained on train)")


# ----------------------------------------------------------------------------------------------- pairs
def make_pairs(pools: dict[str, Pool], half: str, per_class: int, seed: int) -> dict[str, np.ndarray]:
    """Pseudo-pairs: for each label, ``per_class`` triples drawn (with replacement) from that half's pools.

    Returns:
        ``{"y": (n,), "<modality>_p": (n, 7), "<modality>_r": (n,)}``.
    """
    rng = np.random.default_rng(seed)
    ys = np.repeat(np.arange(_N), per_class)
    out: dict[str, np.ndarray] = {"y": ys}
    for m, pool in pools.items():
        idx = np.empty(len(ys), np.int64)
        for c in range(_N):
            cand = pool.indices(half, c)
            if len(cand) == 0:
                raise SystemExit(f"{m}: half {half} has no sample of class {LABELS[c]}")
            idx[ys == c] = rng.choice(cand, size=per_class, replace=True)
        out[f"{m}_p"] = pool.probs[idx]
        out[f"{m}_r"] = pool.rel[idx]
    return out


def late_fuse(pairs: dict[str, np.ndarray], subset: Sequence[str], weights: dict[str, float],
              pool: str = "log") -> np.ndarray:
    """Fused probabilities of every pair with the runtime's :func:`fuse_probabilities`."""
    n = len(pairs["y"])
    out = np.empty((n, _N))
    for i in range(n):
        probs = {m: pairs[f"{m}_p"][i] for m in subset}
        w = {m: weights[m] * float(pairs[f"{m}_r"][i]) for m in subset}
        fused, mw = fuse_probabilities(probs, w, pool=pool)
        out[i] = limit_to_evidence(fused, {m: probs[m] for m in mw})  # the runtime's conflict rule
    return out


def limit_pairs(pairs: dict[str, np.ndarray], subset: Sequence[str], weights: dict[str, float],
                fused: np.ndarray) -> np.ndarray:
    """The runtime's conflict rule (:func:`affectlite.fusion.limit_to_evidence`) on fused rows of pairs, over the
    modalities of ``subset`` that carry weight in each pair."""
    out = np.empty_like(np.asarray(fused, np.float64))
    for i in range(len(out)):
        probs = {m: pairs[f"{m}_p"][i] for m in subset if weights[m] * float(pairs[f"{m}_r"][i]) > 0}
        out[i] = limit_to_evidence(fused[i], probs)
    return out


def head_inputs(pairs: dict[str, np.ndarray], subset: Sequence[str], weights: dict[str, float]) -> np.ndarray:
    """:func:`head_features` of every pair for one subset."""
    n = len(pairs["y"])
    x = np.empty((n, 3 * _N + 3), np.float32)
    for i in range(n):
        probs = {m: (pairs[f"{m}_p"][i] if m in subset else None) for m in MODALITIES}
        w = {m: (weights[m] * float(pairs[f"{m}_r"][i]) if m in subset else 0.0) for m in MODALITIES}
        x[i] = head_features(probs, w)
    return x


def _score(y: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    m = classification_metrics(y, np.argmax(probs, axis=1))
    nll = float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y], 1e-9, 1.0))))
    return {"accuracy": round(m["accuracy"], 4), "macro_f1": round(m["macro_f1"], 4), "nll": round(nll, 4)}


def _tune_weights(pairs: dict[str, np.ndarray], base: dict[str, float]) -> dict[str, float]:
    """Grid-search modality weights (face fixed at 1) for mean macro-F1 over the multi-modal subsets on A."""
    grid = [0.2, 0.4, 0.6, 0.8, 1.0, 1.3, 1.7, 2.2]
    best, best_w = -1.0, dict(base)
    multi = [s for s in subsets() if len(s) > 1]
    sub = {k: v[:: max(1, len(pairs["y"]) // 2100)] for k, v in pairs.items()}
    for wv in grid:
        for wt in grid:
            w = {"face": 1.0, "voice": wv, "text": wt}
            score = float(np.mean([_score(sub["y"], late_fuse(sub, s, w))["macro_f1"] for s in multi]))
            if score > best:
                best, best_w = score, w
    return best_w


def train_head(pairs_a: dict[str, np.ndarray], weights: dict[str, float], *, epochs: int, hidden: int,
               seed: int, threads: int | None) -> Any:
    """Keras MLP over :func:`head_features`, trained on every modality subset of the A pairs."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    if threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:
            pass
    import keras

    keras.utils.set_random_seed(seed)
    xs, ys = [], []
    for s in subsets():
        xs.append(head_inputs(pairs_a, s, weights))
        ys.append(pairs_a["y"])
    x = np.concatenate(xs)
    y = np.concatenate(ys)
    inp = keras.Input(shape=(x.shape[1],), name="features")
    h = keras.layers.Dense(hidden, activation="relu", name="hidden")(inp) if hidden > 0 else inp
    out = keras.layers.Dense(_N, name="logits")(h)
    model = keras.Model(inp, out, name="affectlite_fusion_head")
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=epochs, batch_size=256, verbose=0, shuffle=True)
    return model, x


def build_head(pa: dict[str, np.ndarray], pb: dict[str, np.ndarray], base: dict[str, float], out: Path, *,
               notes: Sequence[str], pairs_per_class: int, epochs: int, hidden: int, seed: int,
               threads: int | None, for_models: dict[str, dict[str, str]] | None = None,
               ) -> tuple[Any, Path, Any]:
    """Train the head on the A pairs, quantize it to ``out/fusion.tflite`` (+ card), check it on the B pairs.

    ``for_models`` (modality -> ``{"name", "sha256"}`` of the model whose outputs trained the head) goes into
    the card as ``training.for_models``; the runtime warns when the models in use differ
    (:func:`affectlite.fusion.head_model_mismatches`).

    Returns:
        ``(float keras model, tflite path, ConversionResult)``.
    """
    from affectlite_convert import convert

    # xa: the A features of every subset, as trained on (calibration); validation: B features, all subsets
    model, xa = train_head(pa, base, epochs=epochs, hidden=hidden, seed=seed, threads=threads)
    xb = np.concatenate([head_inputs(pb, s, base) for s in subsets()])
    yb = np.concatenate([pb["y"] for _ in subsets()])
    rng = np.random.default_rng(seed)
    card = {
        "name": MODEL_NAME, "version": "1.0.0", "task": "fusion", "labels": list(LABELS), "label_mapping": {},
        "inputs": [{"name": "features", "kind": "tensor",
                    "preprocessing": {"features": "affectlite.fusion.head_features", "version": 1,
                                      "modalities": list(MODALITIES)}}],
        "outputs": [{"name": "logits", "kind": "logits"}],
        "training": {"data": "pseudo-pairs of held-out model outputs: " + "; ".join(notes),
                     "terms": "FER2013: research use, no redistribution of images; RAVDESS: CC BY-NC-SA 4.0 "
                              "(non-commercial); GoEmotions: Apache-2.0",
                     "split": "half A of each pool trains the head, half B tests it (voices split by actor)",
                     "recipe": "affectlite_convert.recipes.fusion", "pairs_per_class": pairs_per_class,
                     "epochs": epochs, "hidden": hidden, **({"for_models": for_models} if for_models else {})},
        "limitations": [
            "Trained on pseudo-pairs (independent face, voice and text sharing a label), not on real "
            "multimodal recordings: real modalities are correlated and often disagree for good reasons.",
            "Inherits the non-commercial terms of RAVDESS (the voice model's outputs were used).",
            "Learned for the shipped face/voice/text models: retrain it when any of them changes.",
        ],
    }
    calib = xa[rng.choice(len(xa), size=min(1000, len(xa)), replace=False)]
    tfl = out / "fusion.tflite"
    res = convert(model, tfl, calib, card, validation=(xb, yb), validation_split="pseudo-pairs of half B, all "
                  "modality subsets", report_dir=out / "convert_report", latency_threads=[1], progress=False)
    return model, tfl, res


def calibrate_head(head: FusionHead, pb: dict[str, np.ndarray], base: dict[str, float],
                   ) -> tuple[dict[str, Any], dict[str, float]]:
    """Fit the int8 head's temperature on half of the B pairs, check it on the other half.

    Only the subsets the head is used for (two or more modalities). The pairs are split by row parity (even
    rows fit, odd rows check), so the reported expected calibration error is measured on pairs the temperature
    never saw.

    Returns:
        ``(card calibration section, metrics)``: the temperature and the NLL / ECE before and after it.
    """
    from affectlite.fusion import apply_temperature, expected_calibration_error, fit_temperature

    multi = [s for s in subsets() if len(s) >= 2]
    xs = np.concatenate([head_inputs(pb, s, base) for s in multi]).astype(np.float32)
    y = np.concatenate([pb["y"] for _ in multi])
    logits = head.model.run(xs)[0].astype(np.float64)  # one batched call: int8 rows are independent (exact)
    fit, check = np.arange(0, len(y), 2), np.arange(1, len(y), 2)
    t = fit_temperature(logits[fit], y[fit], kind="logits")

    def nll(p: np.ndarray) -> float:
        return float(-np.mean(np.log(np.clip(p[np.arange(len(p)), y[check]], 1e-12, 1.0))))

    before = apply_temperature(logits[check], 1.0, kind="logits")
    after = apply_temperature(logits[check], t, kind="logits")
    metrics = {"temperature": round(t, 4), "n_check": len(check),
               "ece_before": round(expected_calibration_error(before, y[check]), 4),
               "ece_after": round(expected_calibration_error(after, y[check]), 4),
               "nll_before": round(nll(before), 4), "nll_after": round(nll(after), 4)}
    section = {"temperature": round(t, 4), "method": "NLL of the int8 head's logits",
               "split": "even rows of the half-B pseudo-pairs with 2+ modalities (odd rows check it)"}
    return section, metrics


# ----------------------------------------------------------------------------------------------- main
def models_used(a: argparse.Namespace) -> dict[str, dict[str, str]]:
    """Modality -> ``{"name": card name, "sha256": file sha256}`` of the models whose outputs the head learns."""
    from affectlite._io import sha256_file
    from affectlite.card import card_path_for, load_card
    from affectlite.fusion import _default_model

    out = {}
    for m, path in (("face", a.face_model), ("voice", a.voice_model), ("text", a.text_model)):
        p = Path(path) if path else _default_model(m)
        out[m] = {"name": load_card(card_path_for(p)).name, "sha256": sha256_file(p)}
    return out


def run(a: argparse.Namespace) -> dict[str, Any]:
    """The whole study; returns the report."""

    out = Path(a.out)
    cache = out / "cache"
    base = dict(FusionOptions().weights)
    pools = {
        "face": face_pool(Path(a.fer), a.face_model, cache, a.seed),
        "voice": voice_pool(Path(a.ravdess), Path(a.voice_cv) if a.voice_cv else None, a.voice_model, cache),
        "text": text_pool(Path(a.goemotions), a.text_model, cache, a.seed),
    }
    pa = make_pairs(pools, "A", a.pairs_per_class, a.seed)
    pb = make_pairs(pools, "B", a.pairs_per_class, a.seed + 100)
    tuned = _tune_weights(pa, base)
    log.info("tuned late-fusion weights on A: %s", tuned)
    model, tfl, res = build_head(pa, pb, base, out, notes=[p.note for p in pools.values()],
                                 pairs_per_class=a.pairs_per_class, epochs=a.epochs, hidden=a.hidden, seed=a.seed,
                                 threads=a.threads, for_models=models_used(a))
    from affectlite.card import card_path_for, save_card

    calibration, calib_metrics = calibrate_head(FusionHead.load(tfl), pb, base)
    log.info("head calibration: %s", calib_metrics)
    save_card(res.card.with_updates(calibration=calibration), card_path_for(tfl))
    head = FusionHead.load(tfl)

    table: dict[str, Any] = {}
    for s in subsets():
        key = "+".join(s)
        y = pb["y"]
        row: dict[str, Any] = {}
        for m in s:
            row[f"{m}_alone"] = _score(y, pb[f"{m}_p"])
        row["late_default"] = _score(y, late_fuse(pb, s, base))
        row["late_linear_pool"] = _score(y, late_fuse(pb, s, base, pool="linear"))
        row["late_tuned"] = _score(y, late_fuse(pb, s, tuned))
        xs = head_inputs(pb, s, base)
        ph = limit_pairs(pb, s, base, np.stack([head(x) for x in xs]))
        row["head_int8"] = _score(y, ph)
        row["head_float"] = _score(y, limit_pairs(pb, s, base,
                                                  _softmax(np.asarray(model.predict(xs, verbose=0), np.float64))))
        # the runtime's "learned" strategy: the head for 2+ modalities, a single one passes through
        row["learned_int8"] = row["head_int8"] if len(s) >= 2 else row["late_default"]
        table[key] = row
    multi = [k for k in table if "+" in k]

    def mean_f1(method: str) -> float:
        return round(float(np.mean([table[k][method]["macro_f1"] for k in multi])), 4)

    summary = {m: mean_f1(m) for m in ("late_default", "late_linear_pool", "late_tuned", "learned_int8")}
    summary["best_single_on_all3"] = max(table["face+voice+text"][f"{m}_alone"]["macro_f1"] for m in MODALITIES)
    winner = "learned" if summary["learned_int8"] > max(summary["late_default"], summary["late_tuned"]) else "late"
    report = {"pools": {m: {"n": len(p.y), "half_a": int(p.half_a.sum()), "note": p.note} for m, p in pools.items()},
              "pairs_per_class": a.pairs_per_class, "base_weights": base, "tuned_weights": tuned,
              "results_half_B": table, "mean_macro_f1_over_multimodal_subsets": summary,
              "recommended_strategy": winner, "converter_passed": res.passed, "converter_failures": res.failures,
              "head_bytes": tfl.stat().st_size}
    report["calibration"] = calib_metrics
    save_card(head.model.card.with_updates(metrics={**res.card.metrics, "study": summary,
                                                    "calibration": calib_metrics}), card_path_for(tfl))
    atomic_write_text(out / "report.json", json.dumps(report, indent=2) + "\n")
    atomic_write_text(out / "report.md", _markdown(report))
    return report


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    out: np.ndarray = e / e.sum(axis=1, keepdims=True)
    return out


def _markdown(rep: dict[str, Any]) -> str:
    lines = ["# Fusion study: held-out pseudo-pairs (half B)", ""]
    for m, p in rep["pools"].items():
        lines.append(f"- **{m}**: {p['note']}")
    lines += ["", f"{rep['pairs_per_class']} pairs per class per half; base weights {rep['base_weights']}, "
              f"tuned on A {rep['tuned_weights']}.", "",
              "| subset | best single | late (default) | late (linear pool) | late (tuned) | learned int8 |",
              "|---|---|---|---|---|---|"]
    for k, row in rep["results_half_B"].items():
        singles = [row[f"{m}_alone"]["macro_f1"] for m in k.split("+")]
        lines.append(f"| {k} | {max(singles):.3f} | {row['late_default']['macro_f1']:.3f} | "
                     f"{row['late_linear_pool']['macro_f1']:.3f} | {row['late_tuned']['macro_f1']:.3f} | "
                     f"{row['learned_int8']['macro_f1']:.3f} |")
    lines += ["", "Figures are macro-F1 over the 7 labels (balanced pairs, so accuracy is close).",
              f"Mean over multimodal subsets: {rep['mean_macro_f1_over_multimodal_subsets']}",
              f"Recommended default strategy: **{rep['recommended_strategy']}**", ""]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The ``affectlite train fusion`` argument parser."""
    p = argparse.ArgumentParser(prog="affectlite train fusion", description=__doc__.split("\n")[0])
    p.add_argument("--fer", required=True, help="FER2013 root (public_test/ is used)")
    p.add_argument("--ravdess", required=True, help="RAVDESS speech folder")
    p.add_argument("--goemotions", required=True, help="GoEmotions folder (dev.tsv is used)")
    p.add_argument("--voice-cv", default=None, help="the voice recipe's OUT/cv folder (its loco_outputs.npz: "
                   "leave-one-corpus-out probabilities)")
    p.add_argument("--face-model", default=None)
    p.add_argument("--voice-model", default=None)
    p.add_argument("--text-model", default=None)
    p.add_argument("--out", required=True)
    p.add_argument("--pairs-per-class", type=int, default=1500)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``affectlite train fusion``; returns the exit status."""
    a = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    rep = run(a)
    print(json.dumps(rep["mean_macro_f1_over_multimodal_subsets"], indent=2))
    print("recommended strategy:", rep["recommended_strategy"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
