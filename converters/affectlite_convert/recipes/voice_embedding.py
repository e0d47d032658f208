"""Recipe part: the speech_embedding cache of the voice recipe (front end run once per clip and variant).

Each clip is loaded at 16 kHz, zero-padded at the end to one 2 s window when shorter (as the runtime's
``classify_clip`` does), and run through :class:`affectlite.speech_embedding.SpeechEmbedding` (the runtime's
own front end, through affectlite's interpreter layer). The embeddings of the whole clip (one every 80 ms)
are cached; a 2 s window at runtime is 16 consecutive embeddings of its own audio, so training crops 16
consecutive cached embeddings (the windows' mel edges differ by at most one STFT frame).

Variants: ``clean``, and two simulated cheap microphones and rooms (``mic0``, ``mic1``, from
:func:`affectlite_convert.recipes.voice.simulate_microphone`, which also sets a random level between -38 and
-12 dBFS, so the head sees many input levels).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from affectlite import audio_features as af
from affectlite.speech_corpora import SpeechFile

log = logging.getLogger("affectlite_convert.recipes.voice_embedding")

__all__ = ["EMB_VARIANTS", "WINDOW_EMB", "cache_embeddings", "clip_embeddings"]

#: Embedding variants cached per clip (index 0 is the clean clip: evaluation and calibration).
EMB_VARIANTS = ("clean", "mic0", "mic1")
#: Embeddings per 2 s window.
WINDOW_EMB = 16
WINDOW_SAMPLES = 32000
SR = 16000


def _key(items: Sequence[SpeechFile]) -> str:
    h = hashlib.sha1()
    for f in items:
        h.update(f"{f.speaker}/{f.path.name}\n".encode())
    return h.hexdigest()[:12]


def clip_embeddings(fe: object, x: np.ndarray) -> np.ndarray:
    """Embeddings of one clip (float32 16 kHz), zero-padded at the end to one 2 s window when shorter."""
    if x.size < WINDOW_SAMPLES:
        x = np.concatenate([x, np.zeros(WINDOW_SAMPLES - x.size, np.float32)])
    return fe(x)  # type: ignore[operator, no-any-return]


def cache_embeddings(items: Sequence[SpeechFile], cache: Path, variants: Sequence[str] = EMB_VARIANTS,
                     ) -> list[list[np.ndarray]]:
    """Per variant, per clip: embeddings ``(n, 96)`` (float16 on disk), cached under ``cache`` by file list."""
    from affectlite.speech_embedding import SpeechEmbedding

    from .voice import simulate_microphone

    cache.mkdir(parents=True, exist_ok=True)
    key = _key(items)
    out: list[list[np.ndarray]] = []
    fe: SpeechEmbedding | None = None
    for v in variants:
        f = cache / f"emb_{v}_{key}.npz"
        if f.is_file():
            z = np.load(f)
            off = z["offsets"]
            if off.size == len(items) + 1:
                e = z["emb"].astype(np.float32)
                out.append([e[off[i]:off[i + 1]] for i in range(len(items))])
                continue
        fe = fe or SpeechEmbedding(num_threads=1)
        t0 = time.time()
        mats = []
        for i, it in enumerate(items):
            x = af.load_audio(it.path, SR)
            if v.startswith("mic"):
                x, _ = simulate_microphone(x, np.random.default_rng([int(v[3:]), i, 7]), SR)
            mats.append(clip_embeddings(fe, x))
            if i % 1000 == 999:
                log.info("embeddings %s: %d/%d clips, %.0f s", v, i + 1, len(items), time.time() - t0)
        offsets = np.concatenate([[0], np.cumsum([m.shape[0] for m in mats])]).astype(np.int64)
        tmp = cache / f".tmp_{v}.npz"
        np.savez(tmp, emb=np.concatenate(mats).astype(np.float16), offsets=offsets)
        os.replace(tmp, f)
        log.info("embedding cache %s: %d clips in %.0f s", v, len(mats), time.time() - t0)
        out.append(mats)
    return out


# ------------------------------------------------------------------------------------------------ the head

#: Share of training windows from each cached variant (clean, mic0, mic1).
VARIANT_P = (0.4, 0.3, 0.3)
#: Hop between a clip's evaluation windows in embeddings (0.48 s; the runtime's is 0.5 s).
EVAL_HOP_EMB = 6


def crop(e: np.ndarray, start: int, n: int = WINDOW_EMB) -> np.ndarray:
    """``n`` consecutive embeddings from ``start`` (repeating the last when the clip is shorter)."""
    w = e[start:start + n]
    if w.shape[0] < n:
        w = np.concatenate([w, np.repeat(w[-1:], n - w.shape[0], axis=0)]) if w.shape[0] else np.zeros(
            (n, e.shape[1]), np.float32)
    return w


def clip_window_starts(n_emb: int, n: int = WINDOW_EMB, hop: int = EVAL_HOP_EMB) -> list[int]:
    """Window starts over a clip: every ``hop`` embeddings, the last aligned with the end."""
    if n_emb <= n:
        return [0]
    starts = list(range(0, n_emb - n + 1, hop))
    if starts[-1] != n_emb - n:
        starts.append(n_emb - n)
    return starts


def clip_windows(e: np.ndarray) -> np.ndarray:
    """Every evaluation window of one clip's embeddings: ``(k, 16, 96)``."""
    return np.stack([crop(e, s) for s in clip_window_starts(e.shape[0])])


def sample_windows(rng: np.random.Generator, feats: list[list[np.ndarray]], idx: np.ndarray, y: np.ndarray,
                   w: np.ndarray, n: int, variant_p: Sequence[float] = VARIANT_P,
                   prosody: list[np.ndarray] | None = None) -> tuple[Any, np.ndarray]:
    """``n`` random training windows: clips drawn by weight ``w`` (corpus-equal, class-balanced), a random variant
    and a random 16-embedding crop each. Returns ``(X (n, 16, 96), labels (n,))``; with ``prosody`` (per clip,
    :func:`prosody_windows` of the clean clip) ``X`` is ``[embeddings, prosody (n, 10)]``."""
    p = w[idx].astype(np.float64)
    clips = rng.choice(idx, size=n, p=p / p.sum())
    vp = np.asarray(variant_p[:len(feats)], np.float64)
    vs = rng.choice(len(feats), size=n, p=vp / vp.sum())
    X = np.empty((n, WINDOW_EMB, feats[0][0].shape[1]), np.float32)
    P = np.empty((n, prosody[0].shape[1] if prosody else 0), np.float32)
    for j, (i, v) in enumerate(zip(clips, vs, strict=True)):
        e = feats[int(v)][int(i)]
        st = int(rng.integers(0, max(1, e.shape[0] - WINDOW_EMB + 1)))
        X[j] = crop(e, st)
        if prosody is not None:
            pw = prosody[int(i)]
            P[j] = pw[min(st, len(pw) - 1)]
    return ([X, P] if prosody is not None else X), y[clips]


def prosody_windows(energy: np.ndarray, f0: np.ndarray, n_emb: int) -> np.ndarray:
    """:func:`affectlite.prosody.window_features` of every 16-embedding window start of a clip (the window from
    embedding ``k`` covers contour frames ``8k .. 8k + 196``)."""
    from affectlite import prosody as pr

    n = max(1, n_emb - WINDOW_EMB + 1)
    return np.stack([pr.window_features(energy[8 * k:8 * k + 197], f0[8 * k:8 * k + 197]) for k in range(n)])


def embedding_stats(feats0: list[np.ndarray], idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and standard deviation of the training clips' clean embeddings."""
    allv = np.concatenate([feats0[i] for i in idx])
    return allv.mean(axis=0).astype(np.float32), np.maximum(allv.std(axis=0), 1e-3).astype(np.float32)


def build_head(mean: np.ndarray, std: np.ndarray, seed: int = 0, arch: str = "stats", width: int = 128,
               dropout: float = 0.3, prosody_stats: tuple[np.ndarray, np.ndarray] | None = None) -> Any:
    """The head on ``(16, 96)`` embedding windows: standardisation (constants), a shared per-embedding layer,
    pooling over time (``stats``: mean and max; ``attn``: attention-weighted mean and max), two dense layers,
    softmax over :data:`affectlite.LABELS`."""
    import keras
    from keras import layers

    from affectlite.labels import LABELS

    keras.utils.set_random_seed(seed)
    inp = keras.Input((WINDOW_EMB, int(mean.size)), name="embeddings")
    x = layers.Normalization(mean=mean, variance=std ** 2)(inp)
    x = layers.GaussianNoise(0.1)(x)
    x = layers.Dropout(0.1)(x)
    h = layers.Dense(width, activation="relu")(x)
    mx = layers.GlobalMaxPooling1D()(h)
    if arch == "attn":
        a = layers.Dense(1)(layers.Dense(32, activation="tanh")(h))
        a = layers.Softmax(axis=1)(a)
        mean_p = layers.Lambda(lambda t: keras.ops.sum(t[0] * t[1], axis=1))([h, a])
    else:
        mean_p = layers.GlobalAveragePooling1D()(h)
    inputs = [inp]
    parts = [mean_p, mx]
    if prosody_stats is not None:
        pin = keras.Input((int(prosody_stats[0].size),), name="prosody")
        inputs.append(pin)
        parts.append(layers.Dense(16, activation="relu")(layers.Normalization(
            mean=prosody_stats[0], variance=prosody_stats[1] ** 2)(pin)))
    z = layers.Concatenate()(parts)
    z = layers.Dropout(dropout)(z)
    z = layers.Dense(64, activation="relu")(z)
    z = layers.Dropout(dropout)(z)
    out = layers.Dense(len(LABELS), activation="softmax", name="probs")(z)
    model = keras.Model(inputs if len(inputs) > 1 else inp, out)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=keras.losses.CategoricalCrossentropy(
        label_smoothing=0.1), metrics=["accuracy"])
    return model


def train_head(feats: list[list[np.ndarray]], y: np.ndarray, idx: np.ndarray, w: np.ndarray, seed: int,
               epochs: int = 20, per_epoch: int = 12000, arch: str = "stats", width: int = 128,
               variant_p: Sequence[float] = VARIANT_P, prosody: list[np.ndarray] | None = None) -> Any:
    """Train one head on clips ``idx`` (weights ``w``): ``epochs`` x ``per_epoch`` fresh random windows."""
    from affectlite.labels import LABELS

    rng = np.random.default_rng(seed)
    mean, std = embedding_stats(feats[0], idx)
    pst = None
    if prosody is not None:
        allp = np.concatenate([prosody[i] for i in idx])
        pst = (allp.mean(axis=0).astype(np.float32), np.maximum(allp.std(axis=0), 1e-3).astype(np.float32))
    model = build_head(mean, std, seed, arch, width, prosody_stats=pst)
    for ep in range(epochs):
        X, lab = sample_windows(rng, feats, idx, y, w, per_epoch, variant_p, prosody)
        Y = np.eye(len(LABELS), dtype=np.float32)[lab]
        if ep == int(epochs * 0.7):
            model.optimizer.learning_rate.assign(3e-4)
        model.fit(X, Y, batch_size=128, epochs=1, verbose=0)
    return model


def predict_clips(predict: Any, feats0: list[np.ndarray], idx: np.ndarray,
                  prosody: list[np.ndarray] | None = None) -> np.ndarray:
    """Clip probabilities: mean over each clip's windows of ``predict((k, 16, 96)) -> (k, 7)`` (with ``prosody``,
    ``predict([embeddings, prosody])``)."""
    wins = [clip_windows(feats0[i]) for i in idx]
    if prosody is not None:
        pros = [prosody[i][np.minimum(clip_window_starts(feats0[i].shape[0]), len(prosody[i]) - 1)] for i in idx]
        p = predict([np.concatenate(wins), np.concatenate(pros)])
    else:
        p = predict(np.concatenate(wins))
    out, k = [], 0
    for wv in wins:
        out.append(p[k:k + len(wv)].mean(axis=0))
        k += len(wv)
    return np.asarray(out)


# ------------------------------------------------------------------------------------- validation, final

MODEL_NAME = "affectlite-voice"
_E = "affectlite train: error:"  # the CLI's one error form (docs/reliability.md)
#: Head settings, chosen on the leave-one-corpus-out table over 2 seeds (docs/voice.md).
HEAD_DEFAULTS: dict[str, Any] = {"arch": "stats", "width": 128, "epochs": 20, "per_epoch": 12000}


def _head_kwargs(cfg: dict[str, Any]) -> dict[str, Any]:
    return {k: cfg[k] for k in ("arch", "width", "epochs", "per_epoch")}


def calibration_windows(feats0: list[np.ndarray], idx: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` random clean 16-embedding windows of random clips of ``idx`` (clips repeat only when ``n`` exceeds
    them)."""
    rng = np.random.default_rng(seed)
    return clip_crops(feats0, rng.choice(idx, size=n, replace=len(idx) < n), rng)


def clip_crops(feats0: list[np.ndarray], clips: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One random clean 16-embedding window of each clip in ``clips``, in that order."""
    return np.stack([crop(feats0[i], int(rng.integers(0, max(1, feats0[i].shape[0] - WINDOW_EMB + 1))))
                     for i in clips]).astype(np.float32)


def feature_stats(feats0: list[np.ndarray], idx: np.ndarray, seed: int) -> dict[str, Any]:
    """The card's ``calibration.feature_stats`` for embedding windows (what
    :func:`affectlite.voice.feature_distance` compares a runtime window with)."""
    from affectlite.voice import feature_descriptor, feature_distance

    wins = calibration_windows(feats0, idx, 2000, seed)
    d = feature_descriptor(wins)
    stats: dict[str, Any] = {"mean": [round(float(v), 5) for v in d.mean(axis=0)],
                             "std": [round(float(v), 5) for v in np.maximum(d.std(axis=0), 1e-3)]}
    dist = np.array([feature_distance(w, stats) for w in wins[:500]])
    stats["distance_p50"] = round(float(np.percentile(dist, 50)), 4)
    stats["distance_p95"] = round(float(np.percentile(dist, 95)), 4)
    stats["fitted_on"] = f"{len(wins)} clean 2 s training windows of speech_embedding (one random crop per clip)"
    return stats


def head_card(items: Sequence[SpeechFile], metrics: dict[str, Any], temperature: float, model_file: str,
              cfg: dict[str, Any]) -> dict[str, Any]:
    """The voice card of a head on the speech_embedding front end."""
    from affectlite.labels import LABELS
    from affectlite.speech_embedding import FRONT_END_NAME, FRONT_END_TERMS

    from .voice import _card_dict

    card = _card_dict(items, metrics, temperature, int(cfg["epochs"]), model_file, cfg)
    card["inputs"] = [{"name": "embeddings", "shape": [1, WINDOW_EMB, 96], "dtype": "int8", "kind": "tensor",
                       "preprocessing": {"front_end": FRONT_END_NAME, "sample_rate": SR, "window_s": 2.0,
                                         "embeddings_per_window": WINDOW_EMB, "embedding_hop_s": 0.08,
                                         "embedding_dim": 96, "mel_rescale": "x / 10 + 2, floored at 0"}}]
    card["outputs"] = [{"name": "probs", "shape": [1, len(LABELS)], "dtype": "int8", "kind": "probabilities"}]
    tr = dict(card["training"])
    tr["terms"] = tr["terms"] + " Front end: " + FRONT_END_TERMS + "."
    tr["recipe"] = ("affectlite train voice --front-end speech_embedding --data ../shared/datasets/ravdess-speech-16k "
                    "--data ../shared/datasets/tess-16k --data ../shared/datasets/ased-16k --data "
                    "../shared/datasets/nemo-16k --data ../shared/datasets/turev-16k --out DIR "
                    "(affectlite_convert.recipes.voice_embedding)")
    mics = [v for v in cfg.get("variants", ["clean"]) if v.startswith("mic")]
    tr["augmentation"] = (("the front end run once per clip on the clean clip"
                           + (f" and on {len(mics)} simulated cheap microphone(s) and room(s) (synthetic-IR "
                              "reverberation, band limits, random level -38..-12 dBFS and AGC, clipping, 8-12 bit / "
                              "mu-law quantisation, Opus coding)" if mics else " only (no simulated microphones)"))
                          + "; random 16-embedding (2 s) crops; Gaussian noise and dropout on the standardised "
                          "embeddings; label smoothing 0.1; every corpus the same total weight, classes balanced "
                          "within each")
    tr["front_end"] = FRONT_END_NAME
    card["training"] = tr
    card["limitations"] = [
        "Trained on acted or elicited speech of 102 adult speakers in five corpora and four languages (RAVDESS "
        "and TESS English, ASED Amharic, nEMO Polish, TurEV-DB Turkish single words): spontaneous speech, other "
        "languages and accents, far-field or noisy microphones get less - the leave-one-corpus-out table says how "
        "much a new corpus gets.",
        "Disgust is learnt from RAVDESS and TESS only, surprise from RAVDESS, TESS and nEMO.",
        *card["limitations"][1:],
    ]
    return card


def quantize_head(model: Any, calib: np.ndarray, out_path: Path, card: dict[str, Any],
                  validation: tuple[np.ndarray, np.ndarray] | None = None, report_dir: Path | None = None,
                  latency: bool = False) -> dict[str, Any]:
    """int8 head (int8 input and output) through the converter, card written beside it."""
    from .voice import _quantize

    return _quantize(model, calib, out_path, card, validation=validation,
                     validation_split="one random 2 s window per held-out clip" if validation else None,
                     report_dir=report_dir, latency=latency)


def int8_predict(tfl: Path) -> Any:
    """A batch predictor running an int8 head through the runtime's :class:`affectlite.model.Model`."""
    from affectlite.model import Model

    m = Model.load(tfl, expected_task="voice", num_threads=1)

    def predict(X: np.ndarray) -> np.ndarray:
        return np.concatenate([m.predict_proba(X[i:i + 256]) for i in range(0, len(X), 256)])
    return predict


def run_validation(items: Sequence[SpeechFile], feats: list[list[np.ndarray]], out: Path, cfg: dict[str, Any],
                   seeds: Sequence[int], which: str = "all", k: int = 5) -> dict[str, Any]:
    """Every validation run (leave-speakers-out folds, leave-one-corpus-out) for every seed: float and int8
    clip probabilities in ``out/cv/RUN_sSEED.json`` (resumable); returns the report (:func:`summarise`)."""
    from affectlite._io import atomic_write_text
    from affectlite.labels import LABELS

    from .voice import _metrics, balanced_weights, plan_runs

    y = np.array([LABELS.index(str(f.label)) for f in items])
    groups = np.array([f.corpus for f in items])
    runs = plan_runs(items, k, which)
    (out / "cv").mkdir(parents=True, exist_ok=True)
    done: dict[str, dict[str, Any]] = {}
    for seed in seeds:
        for ri, (name, plan) in enumerate(runs.items()):
            fj = out / "cv" / f"{name.replace(':', '_')}_s{seed}.json"
            res: dict[str, Any] = json.loads(fj.read_text()) if fj.is_file() else {}
            if res.get("config") == cfg and "int8" in res:
                done[f"{name}@{seed}"] = res
                continue
            tr, val = plan["train"], plan["val"]
            t0 = time.time()
            model = train_head(feats, y, tr, balanced_weights(y, groups, tr), seed * 1000 + ri, **_head_kwargs(cfg))
            train_s = round(time.time() - t0, 1)
            pf = predict_clips(lambda X, m=model: m.predict(X, batch_size=512, verbose=0), feats[0], val)
            tfl = out / "cv" / f"{fj.stem}.tflite"
            calib = calibration_windows(feats[0], tr, 300, seed)
            vsel = np.random.default_rng(seed + 1).choice(val, size=min(len(val), 400), replace=False)
            vwin = clip_crops(feats[0], vsel, np.random.default_rng(seed + 2))
            q = quantize_head(model, calib, tfl, head_card([items[i] for i in tr], {"split": f"run {name}"}, 1.0,
                                                          tfl.name, cfg), validation=(vwin, y[vsel]))
            p8 = predict_clips(int8_predict(tfl), feats[0], val)
            res = {"run": name, "seed": seed, "kind": plan["kind"], "corpus": plan["corpus"], "held": plan["held"],
                   "config": cfg, "train_s": train_s, "val_idx": val.tolist(),
                   "probs_float": np.round(pf, 5).tolist(), "probs_int8": np.round(p8, 5).tolist(),
                   "float": _metrics(y[val], pf.argmax(1)), "int8": _metrics(y[val], p8.argmax(1)),
                   "converter_passed": q["passed"], "int8_size_bytes": tfl.stat().st_size}
            atomic_write_text(fj, json.dumps(res))
            log.info("run %s seed %d: UAR float %.3f int8 %.3f (%.0f s)", name, seed, res["float"]["uar"],
                     res["int8"]["uar"], train_s)
            done[f"{name}@{seed}"] = res
    return summarise(done, y, out, cfg, seeds)


def summarise(done: dict[str, dict[str, Any]], y: np.ndarray, out: Path, cfg: dict[str, Any],
              seeds: Sequence[int]) -> dict[str, Any]:
    """The validation report: the voice recipe's tables for each seed, and their mean over seeds."""
    from affectlite._io import atomic_write_text
    from affectlite.fusion import fit_temperature
    from affectlite.labels import LABELS

    from . import voice as vr

    per_seed = {}
    for s in seeds:
        runs = {n.split("@")[0]: r for n, r in done.items() if r["seed"] == s}
        (out / "cv" / f"seed{s}" / "cv").mkdir(parents=True, exist_ok=True)
        rep = vr.summarise(runs, y, out / "cv" / f"seed{s}", cfg) if runs else None
        per_seed[s] = rep
    reps = [r for r in per_seed.values() if r]
    rep = dict(reps[0])
    rep["seeds"] = list(seeds)
    for key in ("leave_speakers_out", "leave_one_corpus_out"):
        rep[key] = {}
        for c in reps[0].get(key, {}):
            rep[key][c] = {}
            for kind in ("float", "int8"):
                vs = [r[key][c][kind] for r in reps]
                m = dict(vs[0])
                for k2 in ("uar_pooled", "uar_mean_over_folds", "uar_std_over_folds", "uar_min", "uar_max",
                           "accuracy_pooled", "macro_f1_pooled"):
                    m[k2] = float(np.mean([v[k2] for v in vs]))
                m["per_class_recall"] = {lab: float(np.mean([v["per_class_recall"][lab] for v in vs]))
                                         for lab in vs[0]["per_class_recall"]}
                m["confusion_matrix"] = np.sum([v["confusion_matrix"] for v in vs], axis=0).tolist()
                m["uar_pooled_per_seed"] = [round(v["uar_pooled"], 4) for v in vs]
                rep[key][c][kind] = m
            if "folds" in reps[0][key][c]:
                rep[key][c]["folds"] = [f for r in reps for f in r[key][c]["folds"]]
        if rep[key]:
            rep[f"{key}_mean_uar"] = {kind: float(np.mean([v[kind]["uar_pooled"] for v in rep[key].values()]))
                                      for kind in ("float", "int8")}
            rep[f"{key}_mean_uar_per_seed"] = [r.get(f"{key}_mean_uar") for r in reps]
    loco = [r for r in done.values() if r["kind"] == "loco"]
    pooled_idx = np.concatenate([r["val_idx"] for r in loco]).astype(int) if loco else np.zeros(0, int)
    if loco:
        p8 = np.concatenate([r["probs_int8"] for r in loco])
        pred = p8.argmax(1)
        yy = y[pooled_idx]
        rep["loco_pooled_recall"] = {lab: float(np.mean(pred[yy == i] == i)) for i, lab in enumerate(LABELS)
                                     if np.any(yy == i)}
        rep["temperature"] = round(float(fit_temperature(np.clip(p8, 1e-6, 1.0), yy, kind="probs")), 3)
        rep["temperature_fitted_on"] = (f"leave-one-corpus-out int8 clip probabilities of {len(seeds)} seeds "
                                        "(every clip scored by a head that never heard its corpus)")
    rep["clip_aggregation"] = ("mean of window probabilities, 2 s windows (16 embeddings) every 0.48 s, the last "
                               "aligned with the clip's end (classify_clip)")
    rep["train_s_per_run"] = {n: r.get("train_s") for n, r in done.items()}
    atomic_write_text(out / "cv" / "report.json", json.dumps(rep, indent=2))
    atomic_write_text(out / "cv" / "report.md", vr.report_markdown(rep))
    return rep


def clip_reliability(items: Sequence[SpeechFile], feats0: list[np.ndarray], stats: dict[str, Any] | None,
                     out: Path) -> np.ndarray:
    """Every clip's voice reliability as ``classify_clip`` with ``vad="none"`` gives it (voice activity 1, the clip's
    SNR, clipping and length, the mean feature distance of its windows against ``stats``); cached in
    ``out/reliability.npz`` (it decodes every clip once)."""
    from affectlite.voice import feature_distance, voice_quality

    f = out / "reliability.npz"
    if f.is_file():
        z = np.load(f)
        if z["rel"].size == len(items):
            return np.asarray(z["rel"], np.float64)
    p95 = float(stats["distance_p95"]) if stats and "distance_p95" in stats else None
    rel = np.empty(len(items))
    for i, it in enumerate(items):
        x = np.clip(af.load_audio(it.path, SR), -1.0, 1.0)
        d = [feature_distance(w, stats) for w in clip_windows(feats0[i])] if stats else []
        dd = [v for v in d if v is not None]
        rel[i] = voice_quality(x, 1.0, x.size / SR, float(np.mean(dd)) if dd else None, p95)["reliability"]
    np.savez(f, rel=rel)
    return rel


def write_loco_outputs(items: Sequence[SpeechFile], out: Path, seed: int,
                       reliability: np.ndarray | None = None) -> Path | None:
    """``out/cv/loco_outputs.npz`` from the leave-one-corpus-out runs of ``seed`` (the fusion recipe's input), with
    each clip's reliability (:func:`clip_reliability`; 1 when not given)."""
    from affectlite.labels import LABELS

    runs = [json.loads(p.read_text()) for p in sorted((out / "cv").glob(f"loco_*_s{seed}.json"))]
    if not runs:
        return None
    idx = np.concatenate([r["val_idx"] for r in runs]).astype(int)
    probs = np.concatenate([r["probs_int8"] for r in runs])
    rel = reliability[idx] if reliability is not None else np.ones(len(idx))
    f = out / "cv" / "loco_outputs.npz"
    tmp = out / "cv" / ".loco_outputs.tmp.npz"
    np.savez(tmp, probs=probs, reliability=rel,
             y=np.array([LABELS.index(str(items[i].label)) for i in idx]),
             corpus=np.array([items[i].corpus for i in idx]), speaker=np.array([items[i].speaker for i in idx]),
             gender=np.array([items[i].gender for i in idx]), files=np.array([items[i].path.name for i in idx]))
    os.replace(tmp, f)
    return f


def run_final(items: Sequence[SpeechFile], feats: list[list[np.ndarray]], out: Path, cfg: dict[str, Any],
              rep: dict[str, Any] | None) -> Path:
    """Train the head on all clips, int8, ``out/voice.tflite`` with its card (tables, terms, feature stats)."""
    from affectlite.card import card_path_for, load_card, save_card
    from affectlite.labels import LABELS

    from .voice import _card_metrics, _weakest, balanced_weights

    y = np.array([LABELS.index(str(f.label)) for f in items])
    groups = np.array([f.corpus for f in items])
    idx = np.arange(len(items))
    t0 = time.time()
    model = train_head(feats, y, idx, balanced_weights(y, groups, idx), int(cfg["seed"]) + 100, **_head_kwargs(cfg))
    train_s = round(time.time() - t0, 1)
    tfl = out / "voice.tflite"
    metrics = _card_metrics(rep)
    if rep:
        for k in ("seeds", "loco_pooled_recall", "leave_one_corpus_out_mean_uar_per_seed",
                  "leave_speakers_out_mean_uar_per_seed"):
            if k in rep:
                metrics[k] = rep[k]
    temp = float(rep.get("temperature", 1.0)) if rep else 1.0
    card = head_card(items, metrics, temp, tfl.name, cfg)
    card["training"] = {**card["training"], "train_s": train_s}
    card["limitations"] = card["limitations"] + (_weakest(rep) if rep else [])
    card["calibration"] = {**card["calibration"], "feature_stats": feature_stats(feats[0], idx, int(cfg["seed"]))}
    calib = calibration_windows(feats[0], idx, 500, int(cfg["seed"]))
    q = quantize_head(model, calib, tfl, card, report_dir=out / "report", latency=True)
    written = load_card(card_path_for(tfl))
    conv_m = {k: v for k, v in written.metrics.items() if k not in metrics}
    final_metrics = {**metrics, "size_bytes": tfl.stat().st_size,
                     "converter_check": {**conv_m, "passed": q["passed"], "failures": q["failures"],
                                         "latency_ms": q["report"].get("latency_ms")}}
    save_card(written.with_updates(metrics=final_metrics, tools={**written.tools, "quantizer": q["tool"]}),
              card_path_for(tfl))
    log.info("final head: %.0f s training, %d bytes", train_s, tfl.stat().st_size)
    return tfl


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``affectlite train voice --front-end speech_embedding``.

    Args:
        argv: Command-line arguments (without the program name).

    Returns:
        Process exit status (0 on success, 2 on bad arguments or data).
    """
    import argparse
    import sys

    from affectlite.speech_embedding import front_end_status

    from .voice import _corpora_of, list_corpora

    ap = argparse.ArgumentParser(prog="affectlite train voice --front-end speech_embedding",
                                 description="voice head on the speech_embedding front end, int8")
    ap.add_argument("--front-end", default="speech_embedding", choices=("speech_embedding",))
    ap.add_argument("--data", required=True, action="append", help="a speech corpus folder (repeat per corpus)")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--stage", choices=("all", "cv", "final"), default="all")
    ap.add_argument("--runs", choices=("all", "lso", "loco"), default="all")
    ap.add_argument("--seeds", default="1,2", help="comma-separated seeds of the validation runs (>= 2: decide on "
                                                   "the mean)")
    ap.add_argument("--arch", choices=("stats", "attn"), default=HEAD_DEFAULTS["arch"])
    ap.add_argument("--width", type=int, default=HEAD_DEFAULTS["width"])
    ap.add_argument("--epochs", type=int, default=HEAD_DEFAULTS["epochs"])
    ap.add_argument("--per-epoch", type=int, default=HEAD_DEFAULTS["per_epoch"], help="training windows per epoch")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1234, help="seed of the final model")
    ap.add_argument("--threads", type=int, default=1, help="TensorFlow threads")
    ap.add_argument("--cache", default="", help="embedding cache folder (default OUT/cache)")
    ap.add_argument("--variants", default=",".join(EMB_VARIANTS),
                    help="cached front-end variants to train on: clean first, then any of mic0, mic1 (simulated "
                         "microphones; each costs one more front-end pass over every clip)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    why = front_end_status(check_hash=True)
    if why:
        print(_E, f"{why}", file=sys.stderr)
        return 2
    for d in args.data:
        if not Path(d).is_dir():
            print(_E, f"--data {d} is not a folder", file=sys.stderr)
            return 2
    items = list_corpora(args.data)
    if not items:
        print(_E, f"no labelled speech clips with speakers under {', '.join(args.data)}", file=sys.stderr)
        return 2
    try:
        seeds = [int(v) for v in args.seeds.split(",") if v.strip()]
    except ValueError:
        seeds = []
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if not variants or variants[0] != "clean" or any(v not in EMB_VARIANTS for v in variants):
        print(_E, f"--variants must start with clean and name only {', '.join(EMB_VARIANTS)}", file=sys.stderr)
        return 2
    if not seeds or not 2 <= args.epochs <= 500 or not 8 <= args.width <= 1024 or args.per_epoch < 256:
        print(_E, "--seeds must be comma-separated integers, --epochs within 2..500, --width within 8..1024, "
              "--per-epoch >= 256", file=sys.stderr)
        return 2
    cfg = {"front_end": "speech_embedding", "arch": args.arch, "width": args.width, "epochs": args.epochs,
           "per_epoch": args.per_epoch, "seed": args.seed, "corpora": _corpora_of(items), "n_clips": len(items),
           "variants": variants, "variant_p": list(VARIANT_P[:len(variants)])}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        log.info("TensorFlow already initialised: --threads left as it is")
    feats = cache_embeddings(items, Path(args.cache) if args.cache else out / "cache", variants)
    rep = None
    if args.stage in ("all", "cv"):
        rep = run_validation(items, feats, out, {k: v for k, v in cfg.items() if k != "seed"}, seeds, args.runs,
                             args.folds)
        write_loco_outputs(items, out, seeds[0])
        from .voice import report_markdown

        log.info("validation:\n%s", report_markdown(rep))
    elif (out / "cv" / "report.json").is_file():
        rep = json.loads((out / "cv" / "report.json").read_text())
    if args.stage in ("all", "final"):
        tfl = run_final(items, feats, out, cfg, rep)
        log.info("wrote %s (%d bytes)", tfl, tfl.stat().st_size)
        if (out / "cv").is_dir():  # the fusion recipe's input, with reliabilities against the final card's stats
            from affectlite.card import card_path_for, load_card

            stats = load_card(card_path_for(tfl)).calibration.get("feature_stats")
            rel = clip_reliability(items, feats[0], stats if isinstance(stats, dict) else None, out)
            write_loco_outputs(items, out, seeds[0], rel)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
