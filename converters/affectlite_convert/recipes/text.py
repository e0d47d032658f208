"""Recipe: the default text emotion model, trained on GoEmotions (train split), int8.

Reproduce the shipped model with::

    affectlite train text --data ../shared/datasets/goemotions --out SEL --stage select --offset-folds 3
    affectlite train text --data ../shared/datasets/goemotions --out DIR --offsets SEL/select.json
    # or: python -m affectlite_convert.recipes.text --data ... --out DIR

What it does:

* **Labels.** The 27 GoEmotions emotions + neutral are mapped to the SDK's labels through the dataset's
  Ekman mapping (joy -> happy, anger -> angry, sadness -> sad, fear, disgust, surprise; neutral stays).
  Training keeps the rows whose labels map to exactly ONE common label (``"joy,amusement"`` is happy;
  ``"neutral,joy"`` and ``"anger,sadness"`` are dropped: a softmax over 7 classes cannot learn "both", and
  these rows are ambiguous by construction). Duplicate texts are kept once (dropped when their labels
  disagree) and texts that also occur in ``dev.tsv`` are removed from training.
* **Features.** :class:`affectlite.text.TextFeaturizer`, the code the device runs: hashed word 1-3-grams and
  char_wb 1-6-grams, 2^17 buckets each (crc32, stable across processes), sublinear TF, idf fitted on the training texts
  (stored as float16 in ``text.idf.npy`` next to the model), per-block then global L2 norm. Its full spec is
  written into the card (``inputs[0].preprocessing``).
* **Model.** A linear softmax layer (a Keras ``Dense`` over the features): multinomial logistic regression
  with L2 and class weights ``(n / (k * n_c)) ** power`` (balanced for ``power=1``), solved to convergence
  with L-BFGS (``--optimizer adam``: Keras full-batch Adam instead). By default as NB-LR (``--nb``, Wang &
  Manning 2012, one-vs-rest): class ``c``'s weights are ``w_c * r_c`` with ``r_c`` the naive-Bayes
  log-count ratios of the binarised features and the L2 prior on ``w_c``, so features that separate ``c``
  from the rest are penalised less; it exports to the same single layer. On the 10 % hold-out of train:
  plain LR (``l2`` 1.4e-6) 0.582 macro-F1 (0.598 with tuned offsets); NB-LR at ``l2`` 1.4e-6 / 4.7e-6 /
  1.4e-5 0.597 / 0.601 / 0.594 (0.603 / 0.611 / 0.611 with offsets), so ``l2 = 4.7e-6``.
  Hyper-parameters were chosen on a 10 % hold-out of train, never on dev. ``--stage select`` trains on the
  other 90 %, scores the hold-out and tunes one additive logit offset per class for macro-F1 on it
  (``OUT/select.json``; with ``--offset-folds K`` the offsets are tuned instead on the out-of-fold logits
  of a stratified K-fold CV over all of train, which the shipped model uses); ``--stage final --offsets
  OUT/select.json`` adds those offsets to the bias of the model trained on all of train.
* **int8.** The dense-input twin of the trained layer goes through :func:`affectlite_convert.convert`
  (calibration: random training rows plus the rows with the largest feature values, so short texts are not
  clipped; validation: dev single-label rows), output = logits.
* **Calibration.** The temperature is fitted (NLL, :func:`affectlite.fusion.fit_temperature`) on the int8
  model's dev logits.
* **Figures.** Float and int8 accuracy / macro-F1 on the dev single-label rows; the int8 figures come from
  the runtime classifier (featuriser rebuilt from the card, idf read from the file), which doubles as a
  training/runtime parity check.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from affectlite._io import atomic_write_bytes, atomic_write_text, sha256_file
from affectlite.card import card_path_for, load_card, save_card
from affectlite.errors import ConversionError, InputError
from affectlite.fusion import fit_temperature
from affectlite.labels import LABELS
from affectlite.text import (
    TextClassifier,
    TextFeaturizer,
    classification_metrics,
    default_text_spec,
    goemotions_common_table,
    read_goemotions_tsv,
    single_label_rows,
    smooth_idf,
)

log = logging.getLogger("affectlite_convert.recipes.text")

__all__ = ["MODEL_NAME", "Csr", "load_splits", "main", "make_featurizer", "sparse_logits", "train_linear",
           "tune_offsets"]

MODEL_NAME = "affectlite-text-goemotions"
IDF_FILE = "text.idf.npy"
MODEL_FILE = "text.tflite"

#: Defaults chosen on the 10 % train hold-out (``--stage select``).
DEFAULTS: dict[str, Any] = {
    "n_word": 1 << 17, "n_char": 1 << 17, "min_df": 2, "optimizer": "lbfgs", "steps": 300, "lr": 0.05,
    "l2": 4.7e-6,
    "class_weight_power": 1.0, "seed": 0, "nb": True,
}

Csr = tuple[np.ndarray, np.ndarray, np.ndarray]  # (indptr, indices, data)


# ------------------------------------------------------------------------------------------------- data
def _dedupe(texts: Sequence[str], y: np.ndarray, exclude: set[str]) -> tuple[list[str], np.ndarray, dict[str, int]]:
    first: dict[str, int] = {}
    conflict: set[str] = set()
    for t, lab in zip(texts, y.tolist(), strict=True):
        if t in first and first[t] != lab:
            conflict.add(t)
        first.setdefault(t, lab)
    keep_t: list[str] = []
    keep_y: list[int] = []
    seen: set[str] = set()
    stats = {"duplicates": 0, "conflicting_duplicates": len(conflict), "in_dev": 0}
    for t, lab in zip(texts, y.tolist(), strict=True):
        if t in exclude:
            stats["in_dev"] += 1
            continue
        if t in conflict:
            continue
        if t in seen:
            stats["duplicates"] += 1
            continue
        seen.add(t)
        keep_t.append(t)
        keep_y.append(lab)
    return keep_t, np.asarray(keep_y, np.int64), stats


def load_splits(data_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Read GoEmotions train/dev and keep single-label rows (see the module docstring).

    Returns:
        ``{"train": (texts, y), "dev": (texts, y), "stats": {...}}``.

    Raises:
        InputError: the folder lacks ``train.tsv``/``dev.tsv``.
    """
    d = Path(data_dir)
    for f in ("train.tsv", "dev.tsv"):
        if not (d / f).is_file():
            raise InputError(f"{d / f} not found: --data must be the GoEmotions folder with train.tsv and dev.tsv "
                             "(e.g. ../shared/datasets/goemotions)")
    table = goemotions_common_table(d)
    names = list(table)
    tr_rows = read_goemotions_tsv(d / "train.tsv", names)
    dv_rows = read_goemotions_tsv(d / "dev.tsv", names)
    tr_t, tr_y, tr_drop = single_label_rows(tr_rows, table)
    dv_t, dv_y, dv_drop = single_label_rows(dv_rows, table)
    tr_t, tr_y, dd = _dedupe(tr_t, tr_y, {t for t, _ in dv_rows})
    stats = {"train_rows": len(tr_rows), "train_multilabel_dropped": tr_drop, **dd, "train_used": len(tr_t),
             "dev_rows": len(dv_rows), "dev_multilabel_dropped": dv_drop, "dev_used": len(dv_t),
             "train_class_counts": dict(zip(LABELS, np.bincount(tr_y, minlength=len(LABELS)).tolist(),
                                            strict=True)),
             "dev_class_counts": dict(zip(LABELS, np.bincount(dv_y, minlength=len(LABELS)).tolist(),
                                          strict=True))}
    return {"train": (tr_t, tr_y), "dev": (dv_t, dv_y), "stats": stats}


def make_featurizer(train_texts: Sequence[str], n_word: int, n_char: int, min_df: int) -> TextFeaturizer:
    """The default featuriser with idf fitted on ``train_texts`` (rounded to float16, as shipped)."""
    feat = TextFeaturizer.from_spec(default_text_spec(n_word, n_char))
    df, n = feat.document_frequency(train_texts)
    idf = smooth_idf(df, n, min_df).astype(np.float16).astype(np.float32)
    return feat.with_idf(idf)


def sparse_logits(x: Csr, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``X @ W + b`` for CSR features, in numpy (float64)."""
    indptr, indices, data = x
    n = len(indptr) - 1
    out = np.tile(b.astype(np.float64), (n, 1))
    if len(indices):
        contrib = data[:, None].astype(np.float64) * w[indices].astype(np.float64)
        rows = np.repeat(np.arange(n), np.diff(indptr))
        np.add.at(out, rows, contrib)
    return out


def _dense(x: Csr, dim: int, rows: Sequence[int] | None = None) -> np.ndarray:
    indptr, indices, data = x
    sel = range(len(indptr) - 1) if rows is None else rows
    out = np.zeros((len(sel), dim), np.float32)
    for r, i in enumerate(sel):
        out[r, indices[indptr[i]:indptr[i + 1]]] = data[indptr[i]:indptr[i + 1]]
    return out


# ------------------------------------------------------------------------------------------------- model
def _tf(threads: int | None) -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    if threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:  # already initialised
            pass
    return tf


def _class_weights(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    k = len(LABELS)
    counts = np.bincount(y, minlength=k).astype(np.float64)
    return counts, len(y) / (k * np.maximum(counts, 1.0))


def train_linear(x: Csr, y: np.ndarray, dim: int, *, optimizer: str = "lbfgs", steps: int = 300, lr: float = 0.05,
                 l2: float = 1.4e-6, class_weight_power: float = 1.0, seed: int = 0, threads: int | None = None,
                 eval_sets: Sequence[tuple[str, Csr, np.ndarray]] = (), eval_every: int = 50, nb: bool = False,
                 sample_weight: np.ndarray | None = None,
                 ) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """Train the linear softmax layer (multinomial logistic regression with class weights and L2).

    The objective is Keras' ``SparseCategoricalCrossentropy(from_logits=True)`` with per-sample class
    weights (mean over rows) plus ``l2 * sum(W**2)``. It is convex: ``optimizer="lbfgs"`` (default) solves it
    with scipy's L-BFGS-B on the sparse matrix, which reaches the optimum in a few hundred iterations;
    ``"adam"`` runs Keras full-batch Adam with cosine decay (slower to converge: on the 10 % hold-out it
    stopped about 1.5 macro-F1 points short after 400 steps). Either way the weights end up in a Keras
    ``Dense`` layer for conversion.

    Args:
        x: CSR training features.
        y: Class indices into :data:`LABELS`.
        dim: Feature dimension.
        optimizer: ``"lbfgs"`` or ``"adam"``.
        steps: L-BFGS iterations, or full-batch Adam steps.
        lr: Initial Adam learning rate (cosine-decayed to 0); unused by L-BFGS.
        l2: L2 penalty on the weights (``l2 = 1 / (2 C n)`` matches scikit-learn's ``C``).
        class_weight_power: Class weights ``(n / (k * n_c)) ** power`` (0: none, 1: balanced).
        seed: Random seed.
        threads: TensorFlow CPU threads (Adam).
        eval_sets: ``(name, csr, y)`` sets scored (macro-F1) every ``eval_every`` steps.
        eval_every: Steps between evaluations.
        nb: NB-LR (Wang & Manning 2012, multiclass one-vs-rest): class ``c``'s weights are ``W[:, c] * r_c``
            with ``r_c`` the naive-Bayes log-count ratios of the features (:func:`nb_ratios`, from ``x`` and
            ``y``) and the L2 penalty on ``W``: features that tell class ``c`` apart get a weaker prior. The
            result is still one linear layer (``W * r`` is returned), so the runtime does not change.
            L-BFGS only.
        sample_weight: Optional per-row weights multiplied into the class weights (e.g. to weight corpora
            equally); L-BFGS only.

    Returns:
        ``(W (dim, 7), b (7,), history)``.
    """
    if optimizer == "lbfgs":
        scale = nb_ratios(x, y, dim, weights=sample_weight) if nb else None
        return _train_lbfgs(x, y, dim, iters=steps, l2=l2, class_weight_power=class_weight_power,
                            eval_sets=eval_sets, eval_every=eval_every, scale=scale, sample_weight=sample_weight)
    if optimizer != "adam":
        raise ConversionError(f"optimizer must be 'lbfgs' or 'adam', got {optimizer!r}")
    if sample_weight is not None:
        raise ConversionError("per-row sample weights need the L-BFGS trainer (optimizer='lbfgs')")
    if nb:
        raise ConversionError("--nb needs the L-BFGS trainer: pass --optimizer lbfgs (the default) or --no-nb")
    tf = _tf(threads)
    import keras

    keras.utils.set_random_seed(seed)
    k = len(LABELS)
    counts, cw = _class_weights(y)
    sw = (cw ** class_weight_power)[y].astype(np.float32)

    inp = keras.Input(shape=(dim,), sparse=True, name="features")
    dense = keras.layers.Dense(k, name="logits", kernel_regularizer=keras.regularizers.L2(l2) if l2 > 0 else None,
                               kernel_initializer="zeros",
                               bias_initializer=keras.initializers.Constant(
                                   np.log(np.maximum(counts, 1.0) / len(y)).tolist()))
    model = keras.Model(inp, dense(inp))
    schedule = keras.optimizers.schedules.CosineDecay(lr, decay_steps=max(steps, 1), alpha=0.0)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=schedule),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    indptr, indices, data = x
    rows = np.repeat(np.arange(len(y)), np.diff(indptr))
    st = tf.SparseTensor(indices=np.stack([rows, indices], axis=1).astype(np.int64),
                         values=data.astype(np.float32), dense_shape=[len(y), dim])
    ds = tf.data.Dataset.from_tensors((st, y.astype(np.int32), sw)).repeat()
    history: list[dict[str, Any]] = []
    done = 0
    while done < steps:
        n = min(eval_every, steps - done)
        t0 = time.time()
        h = model.fit(ds, epochs=1, steps_per_epoch=n, verbose=0, shuffle=False)
        done += n
        w, b = (np.asarray(v) for v in dense.get_weights())
        rec: dict[str, Any] = {"step": done, "loss": round(float(h.history["loss"][-1]), 5),
                               "s": round(time.time() - t0, 1)}
        for name, xe, ye in eval_sets:
            pred = np.argmax(sparse_logits(xe, w, b), axis=1)
            rec[f"{name}_macro_f1"] = round(classification_metrics(ye, pred)["macro_f1"], 4)
        history.append(rec)
        log.info("train %s", json.dumps(rec))
    w, b = (np.asarray(v, np.float32) for v in dense.get_weights())
    return w, b, history


def nb_ratios(x: Csr, y: np.ndarray, dim: int, alpha: float = 1.0, weights: np.ndarray | None = None) -> np.ndarray:
    """Naive-Bayes log-count ratios, one column per class (class vs the rest), from binarised features.

    ``r_c = log((p_c / |p_c|_1) / (q_c / |q_c|_1))`` with ``p_c = alpha + `` the number of class-``c`` rows
    that contain each feature and ``q_c`` the same over the other rows. With ``weights`` each row counts
    with its weight (e.g. so that every corpus of a multi-corpus training set counts the same).

    Returns:
        ``(dim, 7)`` float64.
    """
    indptr, indices, data = x
    k = len(LABELS)
    rows_y = np.repeat(np.asarray(y, np.int64), np.diff(indptr))
    present = (np.asarray(data) > 0).astype(np.float64)
    if weights is not None:
        present = present * np.repeat(np.asarray(weights, np.float64), np.diff(indptr))
    counts = np.bincount(np.asarray(indices, np.int64) * k + rows_y, weights=present,
                         minlength=dim * k).reshape(dim, k)
    total = counts.sum(axis=1, keepdims=True)
    p = alpha + counts
    q = alpha + (total - counts)
    out: np.ndarray = np.log((p / p.sum(axis=0)) / (q / q.sum(axis=0)))
    return out


def _train_lbfgs(x: Csr, y: np.ndarray, dim: int, *, iters: int, l2: float, class_weight_power: float,
                 eval_sets: Sequence[tuple[str, Csr, np.ndarray]], eval_every: int, scale: np.ndarray | None = None,
                 sample_weight: np.ndarray | None = None,
                 ) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
    try:
        import scipy.optimize as so
        import scipy.sparse as sp
    except ImportError as e:  # pragma: no cover - scipy comes with the [convert] extra
        raise ConversionError("the text recipe's L-BFGS trainer needs scipy: pip install scipy, or pass "
                              "--optimizer adam") from e
    k = len(LABELS)
    n = len(y)
    counts, cw = _class_weights(y)
    sw = (cw ** class_weight_power)[y]
    if sample_weight is not None:
        sw = sw * np.asarray(sample_weight, np.float64)
    indptr, indices, data = x
    xm = sp.csr_matrix((data.astype(np.float64), indices, indptr), shape=(n, dim))
    xt = xm.T.tocsr()
    onehot = np.eye(k)[y]
    rows = np.arange(n)
    r: np.ndarray | float = 1.0 if scale is None else np.asarray(scale, np.float64)  # plain LR: no scaling

    def fg(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w = theta[:dim * k].reshape(dim, k)
        b = theta[dim * k:]
        z = np.asarray(xm @ (w * r)) + b
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        p = e / e.sum(axis=1, keepdims=True)
        loss = float(-(sw * np.log(p[rows, y] + 1e-12)).sum() / n + l2 * (w * w).sum())
        g = (p - onehot) * sw[:, None] / n
        gw = np.asarray(xt @ g) * r + 2.0 * l2 * w
        return loss, np.concatenate([gw.ravel(), g.sum(axis=0)])

    history: list[dict[str, Any]] = []
    state = {"it": 0, "t0": time.time()}

    def callback(theta: np.ndarray) -> None:
        state["it"] += 1
        if state["it"] % eval_every:
            return
        w, b = theta[:dim * k].reshape(dim, k) * r, theta[dim * k:]
        rec: dict[str, Any] = {"step": state["it"], "loss": round(fg(theta)[0], 5),
                               "s": round(time.time() - state["t0"], 1)}
        for name, xe, ye in eval_sets:
            rec[f"{name}_macro_f1"] = round(classification_metrics(
                ye, np.argmax(sparse_logits(xe, w, b), axis=1))["macro_f1"], 4)
        history.append(rec)
        log.info("train %s", json.dumps(rec))

    theta0 = np.concatenate([np.zeros(dim * k), np.log(np.maximum(counts, 1.0) / n)])
    res = so.minimize(fg, theta0, jac=True, method="L-BFGS-B", callback=callback, options={"maxiter": iters})
    w = (res.x[:dim * k].reshape(dim, k) * r).astype(np.float32)
    b = res.x[dim * k:].astype(np.float32)
    history.append({"step": int(res.nit), "loss": round(float(res.fun), 5), "converged": bool(res.success),
                    "message": str(res.message)})
    return w, b, history


def _export_model(w: np.ndarray, b: np.ndarray) -> Any:
    import keras

    inp = keras.Input(shape=(w.shape[0],), name="features")
    dense = keras.layers.Dense(w.shape[1], name="logits")
    model = keras.Model(inp, dense(inp), name="affectlite_text")
    dense.set_weights([w, b])
    return model


# ------------------------------------------------------------------------------------------------- stages
def _featurize(feat: TextFeaturizer, texts: Sequence[str], what: str) -> Csr:
    t0 = time.time()
    x = feat.transform_sparse(texts)
    log.info("featurised %d %s texts in %.1fs (%.0f nnz/text)", len(texts), what, time.time() - t0,
             len(x[1]) / max(len(texts), 1))
    return x


def _select(a: argparse.Namespace, splits: dict[str, Any], out: Path) -> int:
    """Hyper-parameter check on a 10 % hold-out of train (by text), never dev."""
    texts, y = splits["train"]
    if a.offset_folds > 1:
        return _select_cv(a, texts, y, out)
    rng = np.random.default_rng(a.seed)
    perm = rng.permutation(len(texts))
    n_hold = len(texts) // 10
    hold, fit = perm[:n_hold], perm[n_hold:]
    fit_t = [texts[i] for i in fit]
    feat = make_featurizer(fit_t, a.n_word, a.n_char, a.min_df)
    x_fit = _featurize(feat, fit_t, "train-fit")
    x_hold = _featurize(feat, [texts[i] for i in hold], "hold-out")
    w, b, hist = train_linear(x_fit, y[fit], feat.dim, optimizer=a.optimizer, steps=a.steps, lr=a.lr, l2=a.l2, nb=a.nb,
                              class_weight_power=a.class_weight_power, seed=a.seed, threads=a.threads,
                              eval_sets=[("holdout", x_hold, y[hold])])
    z = sparse_logits(x_hold, w, b)
    offsets, tuned = tune_offsets(z, y[hold])
    rep = {"config": _config(a), "history": hist,
           "best_step": max((r for r in hist if "holdout_macro_f1" in r),
                            key=lambda r: r["holdout_macro_f1"])["step"] if len(hist) > 1 else None,
           "holdout_macro_f1": classification_metrics(y[hold], np.argmax(z, axis=1))["macro_f1"],
           "holdout_macro_f1_with_offsets": tuned, "offsets": offsets.round(4).tolist(),
           "holdout_rows": int(n_hold), "offsets_from": "hold-out"}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "select.json", json.dumps(rep, indent=2) + "\n")
    print(json.dumps({k: rep[k] for k in ("best_step", "holdout_macro_f1", "holdout_macro_f1_with_offsets",
                                          "offsets")}))
    return 0


def _select_cv(a: argparse.Namespace, texts: Sequence[str], y: np.ndarray, out: Path) -> int:
    """``--stage select --offset-folds K``: the offsets from K-fold out-of-fold logits (no hold-out fit)."""
    offsets, cv = _cv_offsets(a, texts, y)
    rep = {"config": _config(a), "offsets": offsets.round(4).tolist(), "offsets_from": "cross-validation",
           "cv": cv}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "select.json", json.dumps(rep, indent=2) + "\n")
    print(json.dumps({k: rep[k] for k in ("offsets", "cv")}))
    return 0


def _cv_offsets(a: argparse.Namespace, texts: Sequence[str], y: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """Per-class logit offsets tuned on out-of-fold logits of ``a.offset_folds``-fold CV over all of train.

    A 10 % hold-out holds only ~50 fear and ~50 disgust rows, so offsets tuned there chase noise; pooled
    out-of-fold logits give every training row (500+ per rare class) to the tuning. Each fold fits its own
    idf and model on the other folds, exactly like the final stage does on all of train.
    """
    k = int(a.offset_folds)
    rng = np.random.default_rng(a.seed + 1)
    fold_of = np.empty(len(texts), np.int64)
    for c in range(len(LABELS)):  # stratified folds
        idx = rng.permutation(np.flatnonzero(y == c))
        fold_of[idx] = np.arange(len(idx)) % k
    oof = np.zeros((len(texts), len(LABELS)))
    per_fold: list[float] = []
    for f in range(k):
        fit, val = np.flatnonzero(fold_of != f), np.flatnonzero(fold_of == f)
        fit_t = [texts[int(i)] for i in fit]
        feat = make_featurizer(fit_t, a.n_word, a.n_char, a.min_df)
        x_fit = _featurize(feat, fit_t, f"fold {f + 1}/{k} fit")
        x_val = _featurize(feat, [texts[int(i)] for i in val], f"fold {f + 1}/{k} out-of-fold")
        w, b, _ = train_linear(x_fit, y[fit], feat.dim, optimizer=a.optimizer, steps=a.steps, lr=a.lr, l2=a.l2, nb=a.nb,
                               class_weight_power=a.class_weight_power, seed=a.seed, threads=a.threads)
        oof[val] = sparse_logits(x_val, w, b)
        per_fold.append(classification_metrics(y[val], np.argmax(oof[val], axis=1))["macro_f1"])
        log.info("fold %d/%d out-of-fold macro-F1 %.4f", f + 1, k, per_fold[-1])
    offsets, tuned = tune_offsets(oof, y)
    cv = {"folds": k, "rows": len(y), "oof_macro_f1": classification_metrics(y, np.argmax(oof, axis=1))["macro_f1"],
          "oof_macro_f1_with_offsets": tuned, "per_fold_macro_f1": [round(v, 4) for v in per_fold]}
    log.info("cross-validated offsets %s: out-of-fold macro-F1 %.4f -> %.4f", offsets.round(2).tolist(),
             cv["oof_macro_f1"], tuned)
    return offsets, cv


def tune_offsets(logits: np.ndarray, y: np.ndarray, grid: Sequence[float] = tuple(np.linspace(-1, 1, 21)),
                 rounds: int = 3) -> tuple[np.ndarray, float]:
    """Per-class additive logit offsets maximising macro-F1 (coordinate ascent over a grid).

    Returns:
        ``(offsets (7,), macro_f1 with them)``.
    """
    off = np.zeros(logits.shape[1])
    best = classification_metrics(y, np.argmax(logits, axis=1))["macro_f1"]
    for _ in range(rounds):
        improved = False
        for c in range(logits.shape[1]):
            for g in grid:
                trial = off.copy()
                trial[c] = g
                f1 = classification_metrics(y, np.argmax(logits + trial, axis=1))["macro_f1"]
                if f1 > best + 1e-9:
                    best, off, improved = f1, trial, True
        if not improved:
            break
    return off, float(best)


def _offsets_origin(select_json: str | None) -> str:
    if not select_json:
        return "none"
    sel = json.loads(Path(select_json).read_text(encoding="utf-8"))
    cv = sel.get("cv")
    if cv:
        return f"out-of-fold logits of {cv['folds']}-fold cross-validation over train (--stage select)"
    return "10% hold-out of train (--stage select)"


def _calibration_rows(x: Csr, n: int, rng: np.random.Generator, extremes: int = 32) -> np.ndarray:
    """Representative rows for int8 calibration: ``n`` at random plus the ``extremes`` rows with the largest
    single feature value.

    Features are L2-normalised, so the largest values come from the shortest texts ("thanks!"); a random
    sample rarely holds one, the calibrated input range then ends below them and their strongest features
    are clipped. Adding them makes the input range reach the values real inputs produce.
    """
    indptr, _, data = x
    n_rows = len(indptr) - 1
    row_max = np.zeros(n_rows, np.float32)
    nz = np.diff(indptr) > 0
    row_max[nz] = np.maximum.reduceat(data, indptr[:-1][nz])
    top = np.argsort(-row_max, kind="stable")[:extremes]
    rand = rng.choice(n_rows, size=min(n, n_rows), replace=False)
    return np.unique(np.concatenate([rand, top]))


def _config(a: argparse.Namespace) -> dict[str, Any]:
    return {k: getattr(a, k) for k in DEFAULTS}


def _final(a: argparse.Namespace, splits: dict[str, Any], out: Path) -> int:
    from affectlite_convert import convert

    tr_t, tr_y = splits["train"]
    dv_t, dv_y = splits["dev"]
    out.mkdir(parents=True, exist_ok=True)
    feat = make_featurizer(tr_t, a.n_word, a.n_char, a.min_df)
    assert feat.idf is not None
    idf_path = out / IDF_FILE
    buf = _npy_bytes(feat.idf.astype(np.float16))
    atomic_write_bytes(idf_path, buf)
    spec = feat.to_spec(idf_file=IDF_FILE, idf_sha256=sha256_file(idf_path))
    # the spec as written must rebuild exactly the training featuriser
    rebuilt = TextFeaturizer.from_spec(spec, base_dir=out)
    probe = tr_t[:200] + dv_t[:200]
    if not np.array_equal(rebuilt.transform(probe), feat.transform(probe)):
        raise ConversionError("the featuriser rebuilt from the card spec differs from the training featuriser")

    x_tr = _featurize(feat, tr_t, "train")
    x_dv = _featurize(feat, dv_t, "dev")
    w, b, hist = train_linear(x_tr, tr_y, feat.dim, optimizer=a.optimizer, steps=a.steps, lr=a.lr, l2=a.l2, nb=a.nb,
                              class_weight_power=a.class_weight_power, seed=a.seed, threads=a.threads)
    offsets = np.zeros(len(LABELS), np.float32)
    if a.offsets:
        sel = json.loads(Path(a.offsets).read_text(encoding="utf-8"))
        if sel.get("config") != _config(a):
            raise ConversionError(f"{a.offsets} was made with other settings ({sel.get('config')}); re-run "
                                  "--stage select with the same options")
        offsets = np.asarray(sel["offsets"], np.float32)
        b = (b + offsets).astype(np.float32)
    np.savez_compressed(out / "text_float_weights.npz", w=w, b=b)
    float_logits = sparse_logits(x_dv, w, b)
    float_m = classification_metrics(dv_y, np.argmax(float_logits, axis=1))
    float_t = fit_temperature(float_logits, dv_y, kind="logits")
    log.info("float dev: acc %.4f macro-F1 %.4f (T=%.3f)", float_m["accuracy"], float_m["macro_f1"], float_t)

    model = _export_model(w, b)
    rng = np.random.default_rng(a.seed)
    calib_rows = _calibration_rows(x_tr, a.calibration_samples, rng)
    x_cal = _dense(x_tr, feat.dim, calib_rows.tolist())
    n_val = len(dv_t) if a.validation_limit is None else min(a.validation_limit, len(dv_t))
    x_val = _dense(x_dv, feat.dim, list(range(n_val)))
    split = "GoEmotions dev.tsv, rows whose labels map to exactly one common label (Ekman + neutral)"
    card = {
        "name": MODEL_NAME, "version": "1.0.0", "task": "text", "labels": list(LABELS), "label_mapping": {},
        "inputs": [{"name": "features", "kind": "text_features", "preprocessing": spec}],
        "outputs": [{"name": "logits", "kind": "logits"}],
        "calibration": {"temperature": 1.0},
        "training": {
            "data": "GoEmotions train.tsv (Demszky et al., ACL 2020; Google Research): Reddit comments, 27 "
                    "emotions + neutral mapped to the common labels through the Ekman mapping",
            "terms": "Apache License 2.0 (dataset); texts are Reddit comments (names masked as [NAME]) and "
                     "contain offensive language",
            "split": "train.tsv for training (rows mapping to exactly one common label, deduplicated, texts "
                     "also in dev removed); hyper-parameters chosen on a 10% hold-out of train; figures on " + split,
            "recipe": "affectlite_convert.recipes.text",
            "config": _config(a), "data_stats": splits["stats"], "history": hist,
            "logit_offsets": {"values": [round(float(v), 4) for v in offsets],
                              "tuned_on": _offsets_origin(a.offsets), "for": "macro-F1"},
        },
        "metrics": {"split": split},
        "limitations": [
            "English only; trained on Reddit comments: informal, US-centric, young and male-skewed authors.",
            "Classifies the emotion a text expresses on its surface (bag of hashed word/char n-grams): it misses "
            "sarcasm, negation over long spans and context from earlier turns.",
            "Rare classes are weak: fear and disgust have a few hundred training rows each; surprise is "
            "largely questions/confusion (the Ekman mapping puts curiosity and confusion under surprise).",
            "Multi-label comments (e.g. neutral + an emotion) were excluded from training and evaluation.",
            "The temperature was fitted on the same dev rows the figures are reported on (argmax metrics are "
            "unaffected; calibration error on dev is optimistic).",
            "Offensive or identity-related words can shift predictions towards anger/disgust.",
        ],
    }
    tflite = out / MODEL_FILE
    res = convert(model, tflite, x_cal, card, validation=(x_val, dv_y[:n_val]), validation_split=split,
                  io_dtype=a.io_dtype, report_dir=out / "report", latency_threads=[1], progress=False)
    del x_cal, x_val
    # int8 figures through the runtime classifier: featuriser rebuilt from the card, idf read from file
    clf = TextClassifier.from_model(tflite, backend="auto", num_threads=a.threads or 1)
    q_logits = _runtime_logits(clf, dv_t)
    int8_m = classification_metrics(dv_y, np.argmax(q_logits, axis=1))
    temp = fit_temperature(q_logits, dv_y, kind="logits")
    metrics = dict(res.card.metrics)
    metrics["float"] = {**float_m, "temperature_if_float": round(float_t, 4)}
    metrics["int8"] = {**int8_m, "agreement_with_float": round(float(np.mean(
        np.argmax(q_logits, 1) == np.argmax(float_logits, 1))), 6),
        "converter_check": res.card.metrics.get("int8")}
    metrics["featurizer_parity"] = "runtime TextClassifier (spec + idf from the card) re-featurised dev"
    final = res.card.with_updates(calibration={"temperature": round(temp, 4), "method": "NLL on int8 dev logits",
                                               "split": split}, metrics=metrics)
    save_card(final, card_path_for(tflite))
    load_card(card_path_for(tflite))  # validates
    summary = {"float": {k: float_m[k] for k in ("n", "accuracy", "macro_f1")},
               "int8": {k: int8_m[k] for k in ("n", "accuracy", "macro_f1")},
               "temperature": temp, "model_bytes": tflite.stat().st_size,
               "idf_bytes": idf_path.stat().st_size, "converter_passed": res.passed,
               "converter_failures": res.failures}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0 if res.passed else 3


def _runtime_logits(clf: TextClassifier, texts: Sequence[str], batch: int = 64) -> np.ndarray:
    """Raw (uncalibrated) logits of the int8 model, featurised exactly as at runtime."""
    outs = []
    for i in range(0, len(texts), batch):
        chunk = texts[i:i + batch]
        x = clf.featurizer.transform(chunk)
        outs.append(clf.model.run(x)[0].astype(np.float64))
    return np.concatenate(outs)


def _npy_bytes(arr: np.ndarray) -> bytes:
    import io

    bio = io.BytesIO()
    np.save(bio, arr, allow_pickle=False)
    return bio.getvalue()


def build_parser() -> argparse.ArgumentParser:
    """The ``affectlite train text`` argument parser."""
    p = argparse.ArgumentParser(prog="affectlite train text", description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="GoEmotions folder with train.tsv, dev.tsv (+ emotions.txt, "
                                                 "ekman_mapping.json)")
    p.add_argument("--out", required=True, help="output folder: text.tflite, text.card.json, text.idf.npy, report")
    p.add_argument("--stage", choices=["final", "select"], default="final",
                   help="final: train on train, convert, evaluate on dev; select: hold-out check of the settings")
    p.add_argument("--n-word", type=int, default=DEFAULTS["n_word"], help="hash buckets for word 1-3-grams")
    p.add_argument("--n-char", type=int, default=DEFAULTS["n_char"], help="hash buckets for char_wb 1-6-grams")
    p.add_argument("--min-df", type=int, default=DEFAULTS["min_df"], help="buckets in fewer texts get idf 0")
    p.add_argument("--optimizer", choices=["lbfgs", "adam"], default=DEFAULTS["optimizer"])
    p.add_argument("--steps", type=int, default=DEFAULTS["steps"], help="L-BFGS iterations or full-batch Adam steps")
    p.add_argument("--lr", type=float, default=DEFAULTS["lr"])
    p.add_argument("--l2", type=float, default=DEFAULTS["l2"])
    p.add_argument("--class-weight-power", type=float, default=DEFAULTS["class_weight_power"])
    p.add_argument("--nb", action=argparse.BooleanOptionalAction, default=DEFAULTS["nb"],
                   help="NB-LR: naive-Bayes log-count-ratio scaled weights (L-BFGS only; --no-nb: plain LR)")
    p.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    p.add_argument("--threads", type=int, default=None, help="TensorFlow CPU threads")
    p.add_argument("--offsets", default=None, help="OUT/select.json of a --stage select run with the same "
                   "settings: add its per-class logit offsets to the final model's bias")
    p.add_argument("--offset-folds", type=int, default=0, help="--stage select: tune the logit offsets on "
                   "out-of-fold logits of this many CV folds over all of train (0: on the 10%% hold-out)")
    p.add_argument("--calibration-samples", type=int, default=400)
    p.add_argument("--io-dtype", choices=["int8", "float32"], default="int8",
                   help="input/output tensor type (float32: int8 inside, float logits out)")
    p.add_argument("--validation-limit", type=int, default=None, help="dev rows given to the converter's "
                   "float-vs-int8 check (all by default; the int8 figures always use all dev rows)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``affectlite train text``; returns the exit status."""
    a = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    splits = load_splits(a.data)
    log.info("data: %s", json.dumps(splits["stats"]))
    out = Path(a.out)
    if a.stage == "select":
        return _select(a, splits, out)
    return _final(a, splits, out)


if __name__ == "__main__":
    sys.exit(main())
