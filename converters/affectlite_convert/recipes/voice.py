"""Recipe: the default voice emotion model, trained on every emotional-speech corpus given, int8.

Reproduce with::

    affectlite train voice --data ../shared/datasets/ravdess-speech-16k --data ../shared/datasets/tess-16k \\
        --out DIR
    # or: python -m affectlite_convert.recipes.voice --data ... --data ... --out DIR

Corpora are read with :mod:`affectlite.speech_corpora` (the same parsers ``affectlite eval voice`` uses):
labels mapped to :data:`affectlite.LABELS`, speakers and genders from the file names.

Stages (``--stage``):

* ``cv`` - validation that tells the truth about unseen voices, one model per run, never a random split:

  - **leave-speakers-out** within each corpus (``lso:CORPUS:K``): speaker folds balanced by gender
    (RAVDESS: 5 folds of 2 men + 2 women; TESS: one speaker per fold); the model trains on everything
    else, other corpora included;
  - **leave-one-corpus-out** (``loco:CORPUS``): train on all other corpora, test on the held one.

  Each run's clip probabilities (float and int8, the int8 ones through the runtime's own
  :meth:`affectlite.voice.VoiceAnalyzer.classify_clip`) go to ``DIR/cv/RUN.json``; ``DIR/cv/report.json``
  holds the table (UAR per corpus, per-class recall, fold spread). ``--runs loco`` runs only the
  cross-corpus runs (for comparing settings quickly).
* ``final`` - one model on all data for the chosen epochs, int8 through the converter, with the card
  (both validation tables, terms, weakest classes, known failure cases) and the training feature statistics
  the runtime uses for its out-of-distribution reliability (:mod:`affectlite.voice`).
* ``all`` (default) - both.

Features come from :mod:`affectlite.audio_features`, the code the device runs. The log-mel of each clip
is computed once per *variant* (clean; speed 0.9 / 1.1; two simulated cheap microphones and rooms, see
:func:`simulate_microphone`) and cached; training crops 2 s windows out of it, adds mel-domain noise at
0-30 dB SNR, gain, SpecAugment and mixup, and normalises each window with
:func:`affectlite.audio_features.normalise` exactly as at runtime. Each corpus gets the same total
training weight (classes balanced within it), so a corpus with many clips from few speakers does not
drown the others.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from affectlite import audio_features as af
from affectlite._io import atomic_write_text
from affectlite.labels import LABELS
from affectlite.speech_corpora import SpeechFile, list_speech_files

log = logging.getLogger("affectlite_convert.recipes.voice")

__all__ = ["CORPUS_INFO", "LABEL_MAPPING", "RAVDESS_EMOTIONS", "list_corpora", "list_ravdess", "main",
           "make_folds", "make_speaker_folds", "simulate_microphone"]

#: RAVDESS emotion codes (third field of the file name).
RAVDESS_EMOTIONS = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry",
                    "06": "fearful", "07": "disgust", "08": "surprised"}
#: Corpus labels -> common label (kept in the model card).
LABEL_MAPPING: dict[str, dict[str, str | None]] = {
    "ravdess": {"neutral": "neutral", "calm": "neutral", "happy": "happy", "sad": "sad", "angry": "angry",
                "fearful": "fear", "disgust": "disgust", "surprised": "surprise"},
    "tess": {"neutral": "neutral", "happy": "happy", "sad": "sad", "angry": "angry", "fear": "fear",
             "disgust": "disgust", "ps (pleasant surprise)": "surprise"},
    "ased": {"Neutral": "neutral", "Fearful": "fear", "Happy": "happy", "Sad": "sad", "Angry": "angry"},
    "nemo": {"neutral": "neutral", "happiness": "happy", "sadness": "sad", "anger": "angry", "fear": "fear",
             "surprised": "surprise"},
    "turev": {"Calm (sk)": "neutral", "Happy (mt)": "happy", "Sad (hl)": "sad", "Angry (kz)": "angry"},
}
#: What the card says about each corpus (description, terms).
CORPUS_INFO: dict[str, dict[str, str]] = {
    "ravdess": {"data": "RAVDESS (Livingstone & Russo 2018), audio-only speech, actors 01-20 (1,200 clips, 10 "
                        "men + 10 women, North-American English, two sentences), 16 kHz FLAC",
                "terms": "CC BY-NC-SA 4.0 (non-commercial, share-alike)"},
    "tess": {"data": "TESS, Toronto emotional speech set (Dupuis & Pichora-Fuller 2010), 2 women (aged 26 and "
                     "64), 200 words in 'Say the word ...', 2,800 clips, 16 kHz Ogg/Opus 32 kbit/s",
             "terms": "CC BY-NC-ND 4.0 (non-commercial, no derivatives of the recordings)"},
    "ased": {"data": "ASED v1, Amharic Speech Emotion Dataset (Retta et al. 2023), 65 speakers (25 women, 40 men), "
                     "2,474 clips each accepted by 5 of 8 judges, five labels (no disgust, no surprise), 16 kHz "
                     "Ogg/Opus 24 kbit/s",
             "terms": "no licence file in the source repository, published for research: research / "
                      "non-commercial"},
    "nemo": {"data": "nEMO, emotional speech in Polish (Christop 2024), 9 actors, 4,481 clips (3.1 h), six labels "
                     "(no disgust), 16 kHz Ogg/Opus 24 kbit/s",
             "terms": "CC BY-NC-SA 4.0 (non-commercial, share-alike)"},
    "turev": {"data": "TurEV-DB, Turkish emotional voice database (single words), 6 speakers, 1,735 clips, four "
                      "labels (calm -> neutral), 16 kHz Ogg/Opus 24 kbit/s",
              "terms": "CC BY-NC-ND 4.0 in its README, GPL-3.0 in its licence file: non-commercial, no "
                       "derivatives of the recordings"},
}
STRICTEST_TERMS = ("non-commercial use only: the strictest of the training corpora's terms applies (RAVDESS and "
                   "nEMO CC BY-NC-SA 4.0, TESS and TurEV-DB CC BY-NC-ND 4.0, ASED research only); do not use this "
                   "model commercially without your own data or licence")

#: Language of each corpus's speech (the card's limitations).
CORPUS_LANGUAGE = {"ravdess": "English", "tess": "English", "ased": "Amharic", "nemo": "Polish", "turev": "Turkish",
                   "crema-d": "English", "emodb": "German"}

SPEC: dict[str, Any] = dict(af.DEFAULT_SPEC)


def make_variants(speeds: Sequence[float] = (0.9, 1.1), mic: bool = True) -> tuple[tuple[str, float], ...]:
    """Feature variants: the clean clip first, then speed-perturbed copies, then two simulated microphones."""
    out: list[tuple[str, float]] = [("speed", 1.0)] + [("speed", float(v)) for v in speeds if v != 1.0]
    return tuple(out + ([("mic", 0.0), ("mic", 1.0)] if mic else []))


def variant_probs(variants: Sequence[tuple[str, float]]) -> tuple[float, ...]:
    """How often a training window comes from each variant: clean 0.3, speed copies 0.3 together and the
    microphones 0.4 together (without microphones: clean 0.5, speed copies 0.5)."""
    n_speed = sum(1 for k, v in variants if k == "speed" and v != 1.0)
    n_mic = sum(1 for k, _ in variants if k == "mic")
    clean, speed, mic = (0.3, 0.3, 0.4) if n_mic else (0.5, 0.5, 0.0)
    if not n_speed:
        clean, speed = clean + speed, 0.0
    return tuple(clean if (k, v) == ("speed", 1.0) else (speed / n_speed if k == "speed" else mic / n_mic)
                 for k, v in variants)


#: Feature variants cached per clip (default settings): (kind, parameter). Index 0 is the clean clip
#: (evaluation, calibration).
VARIANTS = make_variants()
VARIANT_P = variant_probs(VARIANTS)
EVAL_HOP_S = 0.5
#: Share of training windows that get a frequency warp when a ``--warp`` range is set.
WARP_P = 0.5
MODEL_NAME = "affectlite-voice"
#: 3.0.0: five corpora (issue 24); 2.0.0: RAVDESS + TESS.
MODEL_VERSION = "3.0.0"
#: Training settings: chosen on the leave-one-corpus-out table (see the card's training.selection).
DEFAULTS: dict[str, Any] = {"epochs": 30, "norm": "window_meanstd", "mic_aug": True, "arch": "cnn",
                            "width": 1.0, "speeds": (0.9, 1.1), "warp": (), "ensemble": 1}


# ------------------------------------------------------------------------------------------------- data

def list_corpora(data_dirs: Sequence[str | os.PathLike[str]]) -> list[SpeechFile]:
    """Every labelled clip with a known speaker under the given corpus folders (sorted, de-duplicated)."""
    seen: set[Path] = set()
    out: list[SpeechFile] = []
    for d in data_dirs:
        for f in list_speech_files(d):
            if f.speaker and f.path.resolve() not in seen:
                seen.add(f.path.resolve())
                out.append(f)
    return out


def list_ravdess(data_dir: str | os.PathLike[str]) -> list[tuple[Path, int, int]]:
    """All RAVDESS speech clips under ``data_dir``: ``(path, common label index, actor)``."""
    return [(f.path, LABELS.index(str(f.label)), int(f.speaker.split(":")[1]))
            for f in list_speech_files(data_dir) if f.convention == "ravdess"]


def make_folds(actors: Sequence[int], k: int = 5) -> list[list[int]]:
    """Gender-balanced actor folds (RAVDESS: odd actor = male): fold i gets males and females in turn."""
    males = sorted(a for a in set(actors) if a % 2 == 1)
    females = sorted(a for a in set(actors) if a % 2 == 0)
    folds: list[list[int]] = [[] for _ in range(k)]
    for i, a in enumerate(males):
        folds[(i // max(1, len(males) // k)) % k].append(a)
    for i, a in enumerate(females):
        folds[(i // max(1, len(females) // k)) % k].append(a)
    return [sorted(f) for f in folds]


def make_speaker_folds(speakers: dict[str, str], k: int = 5) -> list[list[str]]:
    """Speaker folds balanced by gender: ``speakers`` maps speaker -> ``"m"``/``"f"``/``""``.

    ``min(k, number of speakers)`` folds; each gender's speakers are dealt out in sorted order in
    contiguous blocks (the RAVDESS folds of :func:`make_folds`), so every fold gets as even a share of
    each gender as the counts allow.
    """
    k = max(1, min(k, len(speakers)))
    folds: list[list[str]] = [[] for _ in range(k)]
    offset = 0
    for g in sorted({v for v in speakers.values()}):
        group = sorted(s for s, v in speakers.items() if v == g)
        per = max(1, len(group) // k)
        for i, s in enumerate(group):
            folds[(offset + i // per) % k].append(s)
        offset += -(-len(group) // per)
    return [sorted(f) for f in folds if f]


# ---------------------------------------------------------------------------------- microphone and room

def simulate_microphone(x: np.ndarray, rng: np.random.Generator, sr: int = 16000) -> tuple[np.ndarray, list[str]]:
    """What a cheap USB/Pi microphone in a room does to a clip: a random chain of degradations.

    Each step is taken with some probability: room reverberation (synthetic exponentially decaying
    impulse response, RT60 0.15-0.9 s, direct-to-reverberant ratio 0-12 dB), band limits (high-pass
    80-400 Hz, low-pass 2.8-7.5 kHz), gain and slow automatic gain control, clipping, low-bit or
    mu-law-companded quantisation, and a real lossy codec (Ogg/Opus at 12-32 kbit/s through soundfile,
    when its libsndfile can write Opus). Additive background noise is applied later, per training window,
    in the mel domain.

    Returns:
        ``(degraded float32 samples in [-1, 1], names of the steps applied)``.
    """
    from scipy import signal

    y = np.asarray(x, np.float64)
    rms0 = float(np.sqrt(np.mean(y ** 2)) + 1e-9)
    steps: list[str] = []
    if rng.random() < 0.5:
        rt60 = rng.uniform(0.15, 0.9)
        n = int(sr * min(1.2 * rt60, 1.0))
        t = np.arange(n) / sr
        ir = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)
        ir[: int(0.002 * sr)] = 0.0
        drr = 10 ** (rng.uniform(0.0, 12.0) / 10)
        ir *= np.sqrt(1.0 / (drr * max(float(np.sum(ir ** 2)), 1e-12)))
        ir[0] = 1.0
        y = signal.fftconvolve(y, ir)[: y.size]
        steps.append(f"reverb rt60={rt60:.2f}")
    if rng.random() < 0.7:
        lo, hi = rng.uniform(80, 400), rng.uniform(2800, 7500)
        sos = signal.butter(4, [lo, hi], btype="bandpass", fs=sr, output="sos")
        y = signal.sosfilt(sos, y)
        steps.append(f"band {lo:.0f}-{hi:.0f} Hz")
    # level: the clip's RMS brought to a random level, with slow AGC-like gain wobble
    level_db = rng.uniform(-38.0, -12.0)
    y = y / (float(np.sqrt(np.mean(y ** 2))) + 1e-9) * 10 ** (level_db / 20)
    if rng.random() < 0.4:
        k = max(1, int(0.3 * sr))
        wob = np.convolve(rng.standard_normal(y.size // k + 2), np.ones(2) / 2, mode="same")
        g_db = np.interp(np.arange(y.size), np.arange(wob.size) * k, wob * rng.uniform(1.0, 5.0))
        y = y * 10 ** (g_db / 20)
        steps.append("agc")
    if rng.random() < 0.25:
        c = rng.uniform(0.2, 0.7) * float(np.max(np.abs(y)) + 1e-9)
        y = np.clip(y, -c, c) / c * min(0.99, c * 4)
        steps.append("clip")
    if rng.random() < 0.35:
        if rng.random() < 0.5:
            mu = 255.0
            comp = np.sign(y) * np.log1p(mu * np.minimum(np.abs(y), 1.0)) / np.log1p(mu)
            comp = np.round(comp * 127) / 127
            y = np.sign(comp) * np.expm1(np.abs(comp) * np.log1p(mu)) / mu
            steps.append("mu-law 8 bit")
        else:
            bits = int(rng.integers(8, 13))
            q = 2.0 ** (bits - 1)
            y = np.round(np.clip(y, -1, 1) * q) / q
            steps.append(f"pcm {bits} bit")
    if rng.random() < 0.3:
        try:
            import soundfile as sf

            buf = io.BytesIO()
            sf.write(buf, np.clip(y, -1, 1).astype(np.float32), sr, format="OGG", subtype="OPUS",
                     compression_level=float(rng.uniform(0.3, 0.9)))
            buf.seek(0)
            dec, _ = sf.read(buf, dtype="float32")
            dec = np.asarray(dec, np.float64).reshape(-1)
            y = np.concatenate([dec, np.zeros(max(0, y.size - dec.size))])[: y.size]
            steps.append("opus")
        except Exception:  # libsndfile without Opus writing: skip this step
            pass
    y = np.clip(y, -1.0, 1.0)
    if not np.isfinite(y).all() or float(np.sqrt(np.mean(y ** 2))) < 1e-7 * rms0:
        return np.asarray(x, np.float32), ["(failed: kept clean)"]
    return y.astype(np.float32), steps


def _cache_key(items: Sequence[SpeechFile]) -> str:
    h = hashlib.sha1()
    for f in items:
        h.update(f"{f.speaker}/{f.path.name}\n".encode())
    return h.hexdigest()[:12]


def _variant_name(v: tuple[str, float]) -> str:
    return f"speed{v[1]:.2f}" if v[0] == "speed" else f"mic{int(v[1])}"


def _cache_features(items: Sequence[SpeechFile], cache: Path,
                    variants: Sequence[tuple[str, float]] = VARIANTS) -> list[list[np.ndarray]]:
    """Unnormalised log-mel of each clip for each variant (cached as .npz, keyed by the file list)."""
    cache.mkdir(parents=True, exist_ok=True)
    out: list[list[np.ndarray]] = []
    sr = int(SPEC["sample_rate"])
    key = _cache_key(items)
    waves: list[np.ndarray] | None = None
    for vi, v in enumerate(variants):
        f = cache / f"logmel_{_variant_name(v)}_{key}.npz"
        if f.is_file():
            z = np.load(f)
            if len(z.files) == len(items):
                out.append([z[f"a{i}"] for i in range(len(items))])
                continue
        t0 = time.time()
        if waves is None:
            waves = [af.load_audio(it.path, sr) for it in items]
        mats = []
        for i, x in enumerate(waves):
            if v[0] == "speed" and v[1] != 1.0:
                # treat the clip as recorded at sr*speed and resample it to sr: speed perturbation
                x = af.resample(x, round(sr * v[1]), sr)
            elif v[0] == "mic":
                x, _ = simulate_microphone(x, np.random.default_rng([int(v[1]), i, 7]), sr)
            mats.append(af.log_mel(x, SPEC))
        tmp = cache / f".tmp{vi}.npz"
        arrays: dict[str, Any] = {f"a{i}": m for i, m in enumerate(mats)}
        np.savez(tmp, **arrays)
        os.replace(tmp, f)
        log.info("log-mel cache %s: %d clips in %.0f s", _variant_name(v), len(mats), time.time() - t0)
        out.append(mats)
    return out


def speaker_normalise(feats: list[list[np.ndarray]], speakers: Sequence[str],
                      speech_quantile: float = 0.3) -> list[list[np.ndarray]]:
    """Speaker-level per-band mean removal (an experiment): each clip's log-mel minus the per-band mean of its
    speaker's louder frames (above the ``speech_quantile`` of each clip's frame energy), per feature variant.

    This needs no labels (an unsupervised adaptation to a new speaker and channel); at run time it would be a
    running per-band mean over the stream's speech. The runtime has no such normaliser yet, so the recipe
    only uses it for validation runs scored in float.
    """
    spk = np.asarray(speakers)
    out: list[list[np.ndarray]] = []
    for mats in feats:
        means: dict[str, np.ndarray] = {}
        for sp in sorted(set(spk.tolist())):
            rows = []
            for i in np.flatnonzero(spk == sp):
                L = mats[i]
                e = L.mean(axis=1)
                rows.append(L[e >= np.quantile(e, speech_quantile)])
            means[sp] = np.concatenate(rows).mean(axis=0).astype(np.float32)
        out.append([(m - means[str(spk[i])][None, :]).astype(np.float32) for i, m in enumerate(mats)])
    return out


# --------------------------------------------------------------------------------------------- training

def _noise_shape() -> np.ndarray:
    rng = np.random.default_rng(0)
    x = rng.standard_normal(16000 * 4).astype(np.float32) * 0.1
    p = np.exp(af.log_mel(x, SPEC)).mean(axis=0)
    out: np.ndarray = (p / p.sum()).astype(np.float32)
    return out


def _n_frames() -> int:
    return af.n_frames(af.window_samples(SPEC), SPEC)


def _augment_window(rng: np.random.Generator, w: np.ndarray, noise: np.ndarray) -> np.ndarray:
    if rng.random() < 0.5:  # additive background noise in the mel-power domain, 0-30 dB SNR, random tilt
        p = np.exp(w.astype(np.float64))
        level = p.sum(axis=1).mean()
        snr_db = rng.uniform(0.0, 30.0)
        shape = noise * np.exp(-rng.uniform(0.0, 4.0) * np.linspace(0.0, 1.0, noise.size))
        shape /= shape.sum()
        g = level * 10 ** (-snr_db / 10)
        fluct = np.clip(1.0 + 0.3 * rng.standard_normal((w.shape[0], 1)), 0.2, None)
        w = np.log(p + g * shape[None, :] * fluct).astype(np.float32)
    if rng.random() < 0.3:  # random gain changes the log offset floor relative to the signal
        w = np.log(np.exp(w) * 10 ** (rng.uniform(-1.5, 0.5)) + float(SPEC["log_offset"])).astype(np.float32)
    return w


def _spec_augment(rng: np.random.Generator, x: np.ndarray) -> np.ndarray:
    t, f = x.shape
    for _ in range(2):
        wdt = int(rng.integers(0, 9))
        s = int(rng.integers(0, f - wdt + 1))
        x[:, s:s + wdt] = 0.0
    for _ in range(2):
        wdt = int(rng.integers(0, 21))
        s = int(rng.integers(0, t - wdt + 1))
        x[s:s + wdt, :] = 0.0
    return x


def _crop(L: np.ndarray, start: int, T: int) -> np.ndarray:
    if L.shape[0] >= start + T:
        return L[start:start + T]
    pad = np.full((start + T - L.shape[0], L.shape[1]), np.log(float(SPEC["log_offset"])), np.float32)
    return np.concatenate([L[start:], pad], axis=0)[:T]


def mel_bin_hz(spec: dict[str, Any] | None = None) -> np.ndarray:
    """Centre frequencies (Hz) of the HTK-mel bands of a feature spec (default: the recipe's)."""
    s = SPEC if spec is None else spec
    lo, hi = (2595.0 * np.log10(1.0 + float(f) / 700.0) for f in (s["fmin"], s["fmax"]))
    mels = np.linspace(lo, hi, int(s["n_mels"]) + 2)[1:-1]
    out: np.ndarray = 700.0 * (10.0 ** (mels / 2595.0) - 1.0)
    return out


def warp_frequency(L: np.ndarray, alpha: float, spec: dict[str, Any] | None = None) -> np.ndarray:
    """Vocal-tract-length perturbation of a log-mel matrix ``(frames, n_mels)``: the spectrum is scaled in
    frequency by ``alpha`` (what sat at ``f`` Hz moves to ``alpha * f``; ``alpha < 1`` lowers formants and
    harmonics, like a longer vocal tract and a lower voice), by linear interpolation between mel bands.
    Bands whose source lies outside the analysed range repeat the nearest edge band.

    Args:
        L: Unnormalised log-mel, ``(frames, n_mels)``.
        alpha: Warp factor (> 0; 1 leaves ``L`` unchanged).
        spec: Feature spec of ``L`` (default: the recipe's).

    Returns:
        The warped log-mel, same shape, float32.
    """
    if not alpha > 0:
        raise ValueError(f"warp factor must be > 0, got {alpha}")
    hz = mel_bin_hz(spec)
    mel = 2595.0 * np.log10(1.0 + hz / 700.0)
    src = 2595.0 * np.log10(1.0 + (hz / alpha) / 700.0)
    pos = np.clip(np.interp(src, mel, np.arange(hz.size, dtype=np.float64)), 0.0, hz.size - 1.0)
    i0 = np.floor(pos).astype(int)
    i1 = np.minimum(i0 + 1, hz.size - 1)
    frac = (pos - i0).astype(np.float32)
    out: np.ndarray = (L[:, i0] * (1.0 - frac) + L[:, i1] * frac).astype(np.float32)
    return out


def balanced_weights(y: np.ndarray, groups: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Per-clip training weights over ``idx``: every group (corpus) the same total, classes balanced within it.

    Returns a weight for every clip (0 outside ``idx``), mean 1 over ``idx``.
    """
    w = np.zeros(len(y), np.float64)
    gs = sorted(set(groups[idx].tolist()))
    for g in gs:
        sel = idx[groups[idx] == g]
        counts = np.bincount(y[sel], minlength=len(LABELS)).astype(np.float64)
        present = counts > 0
        for i in sel:
            w[i] = 1.0 / (counts[y[i]] * present.sum() * len(gs))
    w[idx] *= len(idx) / w[idx].sum()
    return w.astype(np.float32)


def _epoch_data(rng: np.random.Generator, feats: list[list[np.ndarray]], idx: np.ndarray, y: np.ndarray,
                noise: np.ndarray, sample_w: np.ndarray,
                variant_p: Sequence[float] | None = None,
                warp: Sequence[float] = ()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    T = _n_frames()
    n = len(idx)
    X = np.empty((n, T, int(SPEC["n_mels"])), np.float32)
    Y = np.zeros((n, len(LABELS)), np.float32)
    Wc = np.empty(n, np.float32)
    p = np.asarray(variant_p if variant_p is not None else VARIANT_P[:len(feats)], np.float64)
    p = p / p.sum()
    order = rng.permutation(idx)
    for j, i in enumerate(order):
        L = feats[int(rng.choice(len(feats), p=p))][i]
        start = int(rng.integers(0, max(1, L.shape[0] - T + 1)))
        w = _crop(L, start, T)
        if len(warp) == 2 and rng.random() < WARP_P:  # log-uniform factor within the range
            w = warp_frequency(w, float(np.exp(rng.uniform(np.log(warp[0]), np.log(warp[1])))))
        w = _augment_window(rng, w, noise)
        X[j] = _spec_augment(rng, af.normalise(w, SPEC))
        Y[j, y[i]] = 1.0
        Wc[j] = sample_w[i]
    # mixup on half of the batch pairs
    lam = rng.beta(0.4, 0.4, size=n).astype(np.float32)
    use = rng.random(n) < 0.5
    lam = np.where(use, np.maximum(lam, 1 - lam), 1.0).astype(np.float32)
    perm = rng.permutation(n)
    X = lam[:, None, None] * X + (1 - lam[:, None, None]) * X[perm]
    Y = lam[:, None] * Y + (1 - lam[:, None]) * Y[perm]
    W = (lam * Wc + (1 - lam) * Wc[perm]).astype(np.float32)
    return X[..., None], Y, W


def _clip_windows(L: np.ndarray) -> np.ndarray:
    T = _n_frames()
    hop = round(EVAL_HOP_S * SPEC["sample_rate"]) // int(SPEC["hop_length"])
    starts = af.window_starts(L.shape[0], T, hop)
    return np.stack([af.normalise(_crop(L, s, T), SPEC) for s in starts])[..., None]


# ------------------------------------------------------------------------------------------------ model

def build_model(seed: int = 0, arch: str = "cnn", width: float = 1.0) -> Any:
    """The voice network on ``(frames, n_mels, 1)`` normalised log-mel windows.

    ``arch="cnn"``: a stride-2 conv and 3 pool+conv blocks (BN, ReLU), global average pooling, softmax.
    ``arch="attn"``: the same trunk, then the frequency axis averaged and attentive pooling over time
    (a small scoring layer, softmax over frames; the attention-weighted mean beside the plain mean).
    ``width`` scales every conv's channels.
    """
    import keras
    from keras import layers

    if arch not in ("cnn", "attn"):
        raise ValueError(f"arch must be 'cnn' or 'attn', got {arch!r}")
    keras.utils.set_random_seed(seed)
    T, F = _n_frames(), int(SPEC["n_mels"])
    inp = keras.Input((T, F, 1), name="logmel")
    reg = keras.regularizers.l2(1e-4)

    def ch(c: int) -> int:
        return max(4, round(c * width))

    x = layers.Conv2D(ch(16), 3, strides=2, padding="same", use_bias=False, kernel_regularizer=reg,
                      name="conv0")(inp)
    x = layers.BatchNormalization(name="bn0")(x)
    x = layers.ReLU(name="relu0")(x)
    for i, c in enumerate((32, 64, 96), start=1):
        x = layers.MaxPooling2D(2, name=f"pool{i}")(x)
        x = layers.Conv2D(ch(c), 3, padding="same", use_bias=False, kernel_regularizer=reg, name=f"conv{i}")(x)
        x = layers.BatchNormalization(name=f"bn{i}")(x)
        x = layers.ReLU(name=f"relu{i}")(x)
    if arch == "cnn":
        x = layers.GlobalAveragePooling2D(name="gap")(x)
    else:
        t, f, c = (int(v) for v in x.shape[1:])
        x = layers.AveragePooling2D((1, f), name="freq_mean")(x)
        x = layers.Reshape((t, c), name="frames")(x)
        a = layers.Dense(32, activation="relu", name="att_hidden")(x)
        a = layers.Dense(1, name="att_score")(a)
        a = layers.Reshape((t,), name="att_flat")(a)
        a = layers.Softmax(name="att_softmax")(a)
        a = layers.Reshape((t, 1), name="att_weights")(a)
        att = layers.Multiply(name="att_mul")([x, a])
        att = layers.GlobalAveragePooling1D(name="att_pool")(att)
        att = layers.Rescaling(float(t), name="att_sum")(att)
        mean = layers.GlobalAveragePooling1D(name="time_mean")(x)
        x = layers.Concatenate(name="pooled")([mean, att])
    x = layers.Dropout(0.3, name="drop")(x)
    x = layers.Dense(len(LABELS), name="logits")(x)
    out = layers.Softmax(name="probs")(x)
    return keras.Model(inp, out, name=f"voice_{arch}")


def ensemble_model(members: Sequence[Any]) -> Any:
    """One Keras model that averages the probabilities of ``members`` (same input): a single int8 file for
    the runtime, whose output is the mean of the members' softmax outputs."""
    import keras
    from keras import layers

    if len(members) == 1:
        return members[0]
    inp = keras.Input(tuple(int(v) for v in members[0].inputs[0].shape[1:]), name="logmel")
    outs = [keras.Model(m.inputs[0], m.outputs[0], name=f"member{i}")(inp) for i, m in enumerate(members)]
    return keras.Model(inp, layers.Average(name="probs_mean")(outs), name=f"voice_ensemble{len(members)}")


def _train(feats: list[list[np.ndarray]], y: np.ndarray, train_idx: np.ndarray, epochs: int, seed: int,
           sample_w: np.ndarray, eval_idx: np.ndarray | None = None, eval_every: int = 5,
           arch: str = "cnn", width: float = 1.0,
           variant_p: Sequence[float] | None = None,
           warp: Sequence[float] = (), ensemble: int = 1) -> tuple[Any, list[dict[str, float]]]:
    """Train one model, or ``ensemble`` models with different seeds averaged into one (:func:`ensemble_model`);
    member 0 is exactly the single model of the same seed."""
    members, hist = [], []
    for k in range(ensemble):
        m, h = _train_one(feats, y, train_idx, epochs, seed + 7919 * k, sample_w, eval_idx, eval_every, arch,
                          width, variant_p, warp)
        members.append(m)
        hist.extend([{**r, "member": k} for r in h] if ensemble > 1 else h)
    model = ensemble_model(members)
    if ensemble > 1 and eval_idx is not None:
        uar = _metrics(y[eval_idx], _predict_clips(model, feats[0], eval_idx).argmax(1))["uar"]
        hist.append({"epoch": epochs, "member": -1, "val_uar": uar})
        log.info("ensemble of %d: val_uar %.3f", ensemble, uar)
    return model, hist


def _train_one(feats: list[list[np.ndarray]], y: np.ndarray, train_idx: np.ndarray, epochs: int, seed: int,
               sample_w: np.ndarray, eval_idx: np.ndarray | None = None, eval_every: int = 5,
               arch: str = "cnn", width: float = 1.0,
               variant_p: Sequence[float] | None = None,
               warp: Sequence[float] = ()) -> tuple[Any, list[dict[str, float]]]:
    import keras

    rng = np.random.default_rng(seed)
    model = build_model(seed, arch, width)
    steps = int(np.ceil(len(train_idx) / 32)) * epochs
    sched = keras.optimizers.schedules.CosineDecay(1e-4, steps, alpha=0.02, warmup_target=3e-3,
                                                   warmup_steps=max(1, steps // 15))
    model.compile(optimizer=keras.optimizers.AdamW(sched, weight_decay=1e-4),
                  loss=keras.losses.CategoricalCrossentropy(label_smoothing=0.05))
    noise = _noise_shape()
    hist: list[dict[str, float]] = []
    for ep in range(epochs):
        t0 = time.time()
        X, Y, W = _epoch_data(rng, feats, train_idx, y, noise, sample_w, variant_p, warp)
        h = model.fit(X, Y, sample_weight=W, batch_size=32, epochs=1, verbose=0, shuffle=True)
        rec = {"epoch": ep + 1, "loss": float(h.history["loss"][-1]), "s": round(time.time() - t0, 1)}
        if eval_idx is not None and ((ep + 1) % eval_every == 0 or ep + 1 == epochs):
            probs = _predict_clips(model, feats[0], eval_idx)
            rec["val_uar"] = _metrics(y[eval_idx], probs.argmax(1))["uar"]
        hist.append(rec)
        log.info("epoch %s", rec)
    return model, hist


def _predict_clips(model: Any, feats0: list[np.ndarray], idx: np.ndarray) -> np.ndarray:
    wins = [_clip_windows(feats0[i]) for i in idx]
    allw = np.concatenate(wins)
    p = model.predict(allw, batch_size=128, verbose=0)
    out, k = [], 0
    for w in wins:
        out.append(p[k:k + len(w)].mean(axis=0))
        k += len(w)
    return np.asarray(out)


def _metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    n = len(LABELS)
    cm = np.zeros((n, n), np.int64)
    for a, b in zip(y, pred, strict=True):
        cm[a, b] += 1
    rec = cm.diagonal() / np.maximum(cm.sum(1), 1)
    prec = cm.diagonal() / np.maximum(cm.sum(0), 1)
    f1 = 2 * prec * rec / np.maximum(prec + rec, 1e-12)
    present = cm.sum(1) > 0
    return {"n": int(cm.sum()), "accuracy": float(cm.diagonal().sum() / max(1, cm.sum())),
            "uar": float(rec[present].mean()), "macro_f1": float(f1[present].mean()),
            "per_class_recall": {LABELS[i]: float(rec[i]) for i in range(n) if present[i]},
            "confusion_matrix": cm.tolist(), "labels": list(LABELS)}


# ------------------------------------------------------------------------------------------- quantising

def _calibration_windows(feats0: list[np.ndarray], idx: np.ndarray, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    chosen = rng.choice(idx, size=min(n, len(idx)), replace=False)
    T = _n_frames()
    out = []
    for i in chosen:
        L = feats0[i]
        s = int(rng.integers(0, max(1, L.shape[0] - T + 1)))
        out.append(af.normalise(_crop(L, s, T), SPEC))
    return np.stack(out)[..., None].astype(np.float32)


def _feature_stats(feats0: list[np.ndarray], idx: np.ndarray, seed: int) -> dict[str, Any]:
    from affectlite.voice import feature_descriptor, feature_distance

    wins = _calibration_windows(feats0, idx, 2000, seed)
    d = feature_descriptor(wins[..., 0])
    stats: dict[str, Any] = {"mean": [round(float(v), 5) for v in d.mean(axis=0)],
                             "std": [round(float(v), 5) for v in np.maximum(d.std(axis=0), 1e-3)]}
    dist = np.array([feature_distance(w[..., 0], stats) for w in wins[:500]])
    stats["distance_p50"] = round(float(np.percentile(dist, 50)), 4)
    stats["distance_p95"] = round(float(np.percentile(dist, 95)), 4)
    stats["fitted_on"] = f"{len(wins)} clean 2 s training windows (one random crop per clip)"
    return stats


def _corpora_of(items: Sequence[SpeechFile]) -> list[str]:
    return sorted({f.corpus for f in items})


def _training_text(items: Sequence[SpeechFile]) -> tuple[str, str]:
    corpora = _corpora_of(items)
    data = "; ".join(CORPUS_INFO.get(c, {"data": c})["data"] + f" [{sum(f.corpus == c for f in items)} clips]"
                     for c in corpora)
    terms = "; ".join(f"{c}: {CORPUS_INFO.get(c, {'terms': 'see the corpus'})['terms']}" for c in corpora)
    return data, terms + ". " + STRICTEST_TERMS


def _speakers_limitation(items: Sequence[SpeechFile]) -> str:
    corpora = _corpora_of(items)
    n_spk = len({(f.corpus, f.speaker) for f in items})
    langs = sorted({CORPUS_LANGUAGE.get(c, "unknown language") for c in corpora})
    return (f"Trained on acted or elicited speech of {n_spk} adult speakers from {len(corpora)} corpora "
            f"({', '.join(corpora)}; {', '.join(langs)}): accuracy on spontaneous speech, other languages and "
            "accents, far-field or noisy microphones is lower - see the leave-one-corpus-out table for what a new "
            "corpus gets (near chance for several).")


def _card_dict(items: Sequence[SpeechFile], metrics: dict[str, Any], temperature: float, epochs: int,
               model_file: str, cfg: dict[str, Any] | None = None) -> dict[str, Any]:
    T = _n_frames()
    pre = dict(SPEC)
    pre["n_frames"] = T
    data, terms = _training_text(items)
    cfg = cfg or {}
    return {
        "schema_version": 1, "name": MODEL_NAME, "version": MODEL_VERSION, "task": "voice",
        "labels": list(LABELS),
        "label_mapping": {lab: lab for lab in LABELS},
        "dataset_label_mapping": {c: dict(LABEL_MAPPING[c]) for c in _corpora_of(items) if c in LABEL_MAPPING},
        "inputs": [{"name": "logmel", "shape": [1, T, int(SPEC["n_mels"]), 1], "dtype": "int8",
                    "kind": "audio_features", "preprocessing": pre}],
        "outputs": [{"name": "probs", "shape": [1, len(LABELS)], "dtype": "int8", "kind": "probabilities"}],
        "calibration": {"temperature": temperature,
                        "fitted_on": "int8 clip probabilities of the leave-one-corpus-out runs (every clip scored "
                                     "by a model that never heard its corpus): confidence as earned on new voices"},
        "training": {
            "data": data,
            "terms": terms,
            "split": "shipped model: all clips of all corpora; metrics: leave-speakers-out within each corpus "
                     "and leave-one-corpus-out (never a random split)",
            "epochs": epochs,
            "config": cfg,
            "recipe": "affectlite train voice "
                      + " ".join(f"--data ../shared/datasets/{d}" for d in cfg.get("data", ("ravdess-speech-16k",
                                                                                             "tess-16k")))
                      + " --out DIR (affectlite_convert.recipes.voice)",
            "augmentation": "speed 0.9/1.1; simulated microphones and rooms (synthetic-IR reverberation, band "
                            "limits, level and AGC, clipping, 8-12 bit / mu-law quantisation, Opus coding); "
                            "random 2 s crops; background noise 0-30 dB SNR (mel domain); gain; SpecAugment; "
                            "mixup; every corpus the same total weight, classes balanced within each",
        },
        "metrics": metrics,
        "limitations": [
            _speakers_limitation(items),
            "Known failure cases: synthetic (text-to-speech) voices, children's voices, tonal languages "
            "(pitch carries words there, not only emotion), whispering and singing.",
            "Outputs an estimate of the emotion a voice outwardly expresses, not what the speaker feels.",
            "Calm and neutral are merged into neutral; contempt, boredom and other states are not modelled.",
            "Windows are 2 s; a window with little speech, low SNR, clipping or features far from the training "
            "data gets a low reliability (VoiceResult.reliability), which fusion uses as the voice's weight.",
        ],
        "model_file": model_file,
    }


def _quantize(model: Any, calib: np.ndarray, out_path: Path, card: dict[str, Any],
              validation: tuple[np.ndarray, np.ndarray] | None = None, validation_split: str | None = None,
              report_dir: Path | None = None, latency: bool = False) -> dict[str, Any]:
    """int8 with int8 input/output through the converter API (:func:`affectlite_convert.convert`), which
    writes the model and its card; falls back to TensorFlow's converter when that API is absent.

    Returns:
        ``{"tool": ..., "passed": ..., "failures": [...], "report": {...}}``.
    """
    try:
        from affectlite_convert import convert as _conv
    except ImportError:  # converter package not installed: plain TFLiteConverter, card written here
        _conv = None  # type: ignore[assignment]
    if _conv is not None:
        res = _conv(model, out_path, calib, card, validation=validation, validation_split=validation_split,
                    io_dtype="int8", report_dir=report_dir, latency_threads=[1] if latency else [],
                    latency_runs=20, progress=False)
        if not res.passed:
            log.warning("converter thresholds not met for %s: %s", out_path, "; ".join(res.failures))
        return {"tool": "affectlite_convert.convert", "passed": res.passed, "failures": list(res.failures),
                "report": res.report}
    import tensorflow as tf

    def rep() -> Any:
        for i in range(len(calib)):
            yield [calib[i:i + 1]]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    data = conv.convert()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, out_path)
    _write_card(out_path, card)
    return {"tool": f"tf.lite.TFLiteConverter {tf.__version__}", "passed": True, "failures": [], "report": {}}


def _write_card(tfl: Path, card: dict[str, Any]) -> None:
    from affectlite._io import sha256_file
    from affectlite.card import card_from_dict, card_path_for, save_card

    card = dict(card)
    card["model_sha256"] = sha256_file(tfl)
    card["model_file"] = tfl.name
    card["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    save_card(card_from_dict(card, source=str(card_path_for(tfl))), card_path_for(tfl))


def _int8_eval(tfl: Path, items: Sequence[SpeechFile], idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Clip probabilities and reliabilities of the int8 model through the runtime's own classify_clip."""
    from affectlite.options import VoiceOptions
    from affectlite.voice import VoiceAnalyzer

    an = VoiceAnalyzer(VoiceOptions(model_path=str(tfl), vad="none", num_threads=1))
    try:
        out, rel = [], []
        for i in idx:
            # lossy decoders (Ogg/Opus corpora) overshoot full scale on loud clips; a microphone would clip
            x = np.clip(af.load_audio(items[i].path, int(SPEC["sample_rate"])), -1.0, 1.0)
            r = an.classify_clip(x, int(SPEC["sample_rate"]))
            out.append(r.probabilities if r is not None else [1.0 / len(LABELS)] * len(LABELS))
            rel.append(r.reliability if r is not None and r.reliability is not None else 0.0)
        return np.asarray(out), np.asarray(rel)
    finally:
        an.close()


# ----------------------------------------------------------------------------------------------- stages

def plan_runs(items: Sequence[SpeechFile], k: int = 5, which: str = "all") -> dict[str, dict[str, Any]]:
    """The validation runs: ``lso:CORPUS:K`` (speaker folds within a corpus, everything else trains) and
    ``loco:CORPUS`` (all other corpora train). ``which``: ``"all"``, ``"lso"`` or ``"loco"``.

    Returns:
        name -> ``{"kind", "corpus", "held" (speakers or corpus), "train" (indices), "val" (indices)}``.
    """
    corpus = np.array([f.corpus for f in items])
    speaker = np.array([f.speaker for f in items])
    runs: dict[str, dict[str, Any]] = {}
    corpora = sorted(set(corpus.tolist()))
    if which in ("all", "loco") and len(corpora) >= 2:
        for c in corpora:
            val = np.flatnonzero(corpus == c)
            runs[f"loco:{c}"] = {"kind": "loco", "corpus": c, "held": [c], "val": val,
                                 "train": np.flatnonzero(corpus != c)}
    if which in ("all", "lso"):
        for c in corpora:
            spk = {f.speaker: f.gender for f in items if f.corpus == c}
            if len(spk) < 2:
                continue
            for i, held in enumerate(make_speaker_folds(spk, k)):
                val = np.flatnonzero(np.isin(speaker, held))
                runs[f"lso:{c}:{i}"] = {"kind": "lso", "corpus": c, "held": held, "val": val,
                                        "train": np.flatnonzero(~np.isin(speaker, held))}
    return runs


def _cfg_variants(cfg: dict[str, Any]) -> tuple[tuple[str, float], ...]:
    return make_variants(tuple(cfg.get("speeds", (0.9, 1.1))), bool(cfg.get("mic_aug", True)))


def _cfg_variant_p(cfg: dict[str, Any]) -> tuple[float, ...]:
    return variant_probs(_cfg_variants(cfg))


def _cfg_train_kwargs(cfg: dict[str, Any]) -> dict[str, Any]:
    """The model and augmentation settings of a run config, as :func:`_train` takes them."""
    return {"arch": str(cfg["arch"]), "width": float(cfg["width"]), "variant_p": _cfg_variant_p(cfg),
            "warp": tuple(cfg.get("warp", ())), "ensemble": int(cfg.get("ensemble", 1))}


def _run_file(out: Path, name: str) -> Path:
    return out / "cv" / (name.replace(":", "_") + ".json")


def run_validation(items: Sequence[SpeechFile], feats: list[list[np.ndarray]], out: Path, cfg: dict[str, Any],
                   which: str = "all", k: int = 5, only: Sequence[str] | None = None) -> dict[str, Any] | None:
    """Train and score every validation run (resumable: a finished run with the same config is kept)."""
    y = np.array([LABELS.index(str(f.label)) for f in items])
    groups = np.array([f.corpus for f in items])
    runs = plan_runs(items, k, which)
    (out / "cv").mkdir(parents=True, exist_ok=True)
    done: dict[str, dict[str, Any]] = {}
    for ri, (name, plan) in enumerate(runs.items()):
        fj = _run_file(out, name)
        res: dict[str, Any] = json.loads(fj.read_text()) if fj.is_file() else {}
        if res and [str(h) for h in res.get("held", [])] != [str(h) for h in plan["held"]]:
            # same run name, other held-out speakers (e.g. --folds 2 after --folds 5): not this run
            log.info("run %s: the stored run held out %s, this plan holds out %s: training it again",
                     name, res.get("held"), plan["held"])
            res = {}
        if res.get("config") == cfg and "int8" in res:
            done[name] = res
            continue
        if only is not None and name not in only:
            continue
        tr, val = plan["train"], plan["val"]
        seed = int(cfg["seed"]) + ri
        if res.get("config") != cfg or "probs_float" not in res:
            log.info("run %s: held %s (%d train clips, %d val clips)", name, plan["held"], len(tr), len(val))
            t0 = time.time()
            model, hist = _train(feats, y, tr, int(cfg["epochs"]), seed, balanced_weights(y, groups, tr),
                                 eval_idx=val, **_cfg_train_kwargs(cfg))
            probs = _predict_clips(model, feats[0], val)
            res = {"run": name, "kind": plan["kind"], "corpus": plan["corpus"], "held": plan["held"],
                   "config": cfg, "history": hist, "train_s": round(time.time() - t0, 1),
                   "val_idx": val.tolist(), "val_files": [items[i].path.name for i in val],
                   "probs_float": np.round(probs, 5).tolist(), "float": _metrics(y[val], probs.argmax(1))}
            model.save(out / "cv" / (fj.stem + ".keras"))
            atomic_write_text(fj, json.dumps(res))
        try:
            import keras

            model = keras.models.load_model(out / "cv" / (fj.stem + ".keras"), compile=False)
            tfl = out / "cv" / (fj.stem + ".tflite")
            calib = _calibration_windows(feats[0], tr, 300, seed)
            vsel = np.random.default_rng(seed + 1).choice(val, size=min(len(val), 600), replace=False)
            vwin = np.concatenate([_calibration_windows(feats[0], np.array([i]), 1, seed) for i in vsel])
            q = _quantize(model, calib, tfl, _card_dict([items[i] for i in tr], {"split": f"run {name}"}, 1.0,
                                                        int(cfg["epochs"]), tfl.name, cfg),
                          validation=(vwin, y[vsel]), validation_split=f"{name}: held out {plan['held']}, "
                          "one random 2 s window per clip")
            res["converter_passed"] = q["passed"]
            p8, rel8 = _int8_eval(tfl, items, val)
            res["probs_int8"] = np.round(p8, 5).tolist()
            res["reliability_int8"] = np.round(rel8, 4).tolist()
            res["int8"] = _metrics(y[val], p8.argmax(1))
            res["int8_size_bytes"] = tfl.stat().st_size
            atomic_write_text(fj, json.dumps(res))
        except Exception as e:  # keep the float result; a re-run redoes int8 only
            log.exception("run %s int8 failed (re-run --stage cv to retry): %s", name, e)
        log.info("run %s float UAR %.3f int8 UAR %s", name, res["float"]["uar"], res.get("int8", {}).get("uar"))
        done[name] = res
    if len(done) < len(runs):
        log.info("validation: %d of %d runs done; the report comes when all are", len(done), len(runs))
        return None
    return summarise(done, y, out, cfg)


def _kind_summary(rs: list[dict[str, Any]], y: np.ndarray, kind: str) -> dict[str, Any]:
    idx = np.concatenate([r["val_idx"] for r in rs]).astype(int)
    probs = np.concatenate([r[f"probs_{kind}"] for r in rs])
    pooled = _metrics(y[idx], probs.argmax(1))
    uars = [r[kind]["uar"] for r in rs]
    return {"uar_pooled": pooled["uar"], "uar_mean_over_folds": float(np.mean(uars)),
            "uar_std_over_folds": float(np.std(uars)), "uar_min": float(np.min(uars)),
            "uar_max": float(np.max(uars)), "accuracy_pooled": pooled["accuracy"],
            "macro_f1_pooled": pooled["macro_f1"], "per_class_recall": pooled["per_class_recall"],
            "confusion_matrix": pooled["confusion_matrix"], "n": pooled["n"]}


def summarise(done: dict[str, dict[str, Any]], y: np.ndarray, out: Path, cfg: dict[str, Any]) -> dict[str, Any]:
    """The validation tables (per corpus, float and int8) and the temperature; writes ``out/cv/report.json``."""
    from affectlite.fusion import fit_temperature

    rep: dict[str, Any] = {"config": cfg, "labels": list(LABELS),
                           "clip_aggregation": "mean of window probabilities, 2 s windows every 0.5 s "
                                               "(classify_clip)",
                           "leave_speakers_out": {}, "leave_one_corpus_out": {}}
    for c in sorted({r["corpus"] for r in done.values()}):
        lso = [r for r in done.values() if r["kind"] == "lso" and r["corpus"] == c]
        if lso:
            rep["leave_speakers_out"][c] = {
                "folds": [{"held": r["held"], "float_uar": r["float"]["uar"], "int8_uar": r["int8"]["uar"]}
                          for r in lso],
                **{kind: _kind_summary(lso, y, kind) for kind in ("float", "int8")}}
        loco = [r for r in done.values() if r["kind"] == "loco" and r["corpus"] == c]
        if loco:
            rep["leave_one_corpus_out"][c] = {kind: _kind_summary(loco, y, kind) for kind in ("float", "int8")}
    for key in ("leave_speakers_out", "leave_one_corpus_out"):
        t = rep[key]
        if t:
            rep[f"{key}_mean_uar"] = {kind: float(np.mean([v[kind]["uar_pooled"] for v in t.values()]))
                                      for kind in ("float", "int8")}
    loco_runs = [r for r in done.values() if r["kind"] == "loco"]
    src = loco_runs or list(done.values())
    idx = np.concatenate([r["val_idx"] for r in src]).astype(int)
    p8 = np.concatenate([r["probs_int8"] for r in src])
    rep["temperature"] = round(float(fit_temperature(np.clip(p8, 1e-6, 1.0), y[idx], kind="probs")), 3)
    rep["temperature_fitted_on"] = ("leave-one-corpus-out int8 clip probabilities" if loco_runs
                                    else "out-of-fold int8 clip probabilities")
    rep["train_s_per_run"] = {n: r.get("train_s") for n, r in done.items()}
    atomic_write_text(out / "cv" / "report.json", json.dumps(rep, indent=2))
    atomic_write_text(out / "cv" / "report.md", report_markdown(rep))
    return rep


_TABLES = (("leave_speakers_out", "leave-speakers-out"), ("leave_one_corpus_out", "leave-one-corpus-out"))


def report_markdown(rep: dict[str, Any]) -> str:
    """The two validation tables as Markdown (README, model card)."""
    lines = ["| corpus | validation | UAR float | UAR int8 | fold spread (int8) | "
             + " | ".join(LABELS) + " |", "|---|---|---|---|---|" + "---|" * len(LABELS)]
    for key, what in _TABLES:
        for c, v in rep.get(key, {}).items():
            v8 = v["int8"]
            spread = (f"{v8['uar_min']:.2f}-{v8['uar_max']:.2f} (sd {v8['uar_std_over_folds']:.2f})"
                      if key == "leave_speakers_out" else "-")
            rec = v8["per_class_recall"]
            lines.append(f"| {c} | {what} | {v['float']['uar_pooled']:.3f} | {v8['uar_pooled']:.3f} | {spread} | "
                         + " | ".join(f"{rec[lab]:.2f}" if lab in rec else "-" for lab in LABELS) + " |")
    for key, what in _TABLES:
        m = rep.get(f"{key}_mean_uar")
        if m:
            lines.append(f"\nMean {what} UAR over corpora: float {m['float']:.3f}, int8 {m['int8']:.3f}.")
    lines.append("\nPer-class columns: int8 recall, pooled over the runs of that row.")
    return "\n".join(lines) + "\n"


def _weakest(rep: dict[str, Any]) -> list[str]:
    out = []
    for key, what in _TABLES:
        for c, v in rep.get(key, {}).items():
            rec = v["int8"]["per_class_recall"]
            cm = np.asarray(v["int8"]["confusion_matrix"])
            weak = sorted(rec, key=rec.get)[:2]
            w = LABELS.index(weak[0])
            row = cm[w].copy()
            row[w] = -1
            out.append(f"Weakest classes, {c} {what} (int8 recall): {weak[0]} {100 * rec[weak[0]]:.0f}% (most often "
                       f"taken for {LABELS[int(row.argmax())]}), {weak[1]} {100 * rec[weak[1]]:.0f}%.")
    return out


def _card_metrics(rep: dict[str, Any] | None) -> dict[str, Any]:
    metrics: dict[str, Any] = {"split": "NOT the shipped model's own test: out-of-fold figures of one model per "
                                        "validation run (same recipe and settings): leave-speakers-out within each "
                                        "corpus, and leave-one-corpus-out"}
    if rep:
        for key in ("leave_speakers_out", "leave_one_corpus_out"):
            metrics[key] = {c: {"folds": v.get("folds"),
                                **{kind: {k2: v[kind][k2] for k2 in ("uar_pooled", "uar_mean_over_folds",
                                                                     "uar_std_over_folds", "uar_min", "uar_max",
                                                                     "accuracy_pooled", "macro_f1_pooled",
                                                                     "per_class_recall", "confusion_matrix", "n")}
                                   for kind in ("float", "int8")}}
                            for c, v in rep.get(key, {}).items()}
            if f"{key}_mean_uar" in rep:
                metrics[f"{key}_mean_uar"] = rep[f"{key}_mean_uar"]
        lso = rep.get("leave_speakers_out_mean_uar")
        if lso:  # the headline figures other tools read (card.metrics["int8"]["uar"])
            metrics["float"] = {"uar": lso["float"], "note": "mean leave-speakers-out UAR over corpora"}
            metrics["int8"] = {"uar": lso["int8"], "note": "mean leave-speakers-out UAR over corpora"}
        metrics["table_markdown"] = report_markdown(rep)
        metrics["clip_aggregation"] = rep.get("clip_aggregation")
    return metrics


def run_final(items: Sequence[SpeechFile], feats: list[list[np.ndarray]], out: Path, cfg: dict[str, Any],
              rep: dict[str, Any] | None) -> Path:
    """Train on all clips, quantise to int8, write ``out/voice.tflite`` and its card."""
    y = np.array([LABELS.index(str(f.label)) for f in items])
    groups = np.array([f.corpus for f in items])
    idx = np.arange(len(items))
    t0 = time.time()
    model, hist = _train(feats, y, idx, int(cfg["epochs"]), int(cfg["seed"]) + 100, balanced_weights(y, groups, idx),
                         **_cfg_train_kwargs(cfg))
    train_s = round(time.time() - t0, 1)
    model.save(out / "voice_float.keras")
    calib = _calibration_windows(feats[0], idx, 400, int(cfg["seed"]))
    tfl = out / "voice.tflite"
    metrics = _card_metrics(rep)
    temp = float(rep.get("temperature", 1.0)) if rep else 1.0
    card = _card_dict(items, metrics, temp, int(cfg["epochs"]), tfl.name, cfg)
    card["training"] = {**card["training"], "final_loss": hist[-1]["loss"], "train_s": train_s}
    card["limitations"] = card["limitations"] + (_weakest(rep) if rep else [])
    card["calibration"] = {**card["calibration"], "feature_stats": _feature_stats(feats[0], idx, int(cfg["seed"]))}
    q = _quantize(model, calib, tfl, card, report_dir=out / "report", latency=True)
    # the converter validated on the calibration windows (agreement float vs int8 only); the card's
    # metrics stay the validation figures, the converter's check is kept beside them
    from affectlite.card import card_path_for, load_card, save_card

    written = load_card(card_path_for(tfl))
    conv_m = {k: v for k, v in written.metrics.items() if k not in metrics}
    conv_m.update({k: written.metrics[k] for k in ("float", "int8", "split") if k in written.metrics})
    final_metrics = {**metrics, "size_bytes": tfl.stat().st_size,
                     "converter_check": {**conv_m, "passed": q["passed"], "failures": q["failures"],
                                         "latency_ms": q["report"].get("latency_ms")}}
    save_card(written.with_updates(metrics=final_metrics, tools={**written.tools, "quantizer": q["tool"]}),
              card_path_for(tfl))
    return tfl


def write_loco_outputs(items: Sequence[SpeechFile], out: Path) -> Path | None:
    """``out/cv/loco_outputs.npz``: every clip's int8 probabilities from the leave-one-corpus-out run that
    never heard its corpus (file names, labels, corpora, speakers): what the fusion recipe learns trust from."""
    runs = [json.loads(p.read_text()) for p in sorted((out / "cv").glob("loco_*.json"))]
    runs = [r for r in runs if "probs_int8" in r]
    if not runs:
        return None
    idx = np.concatenate([r["val_idx"] for r in runs]).astype(int)
    probs = np.concatenate([r["probs_int8"] for r in runs])
    rel = np.concatenate([r.get("reliability_int8", np.ones(len(r["val_idx"]))) for r in runs])
    f = out / "cv" / "loco_outputs.npz"
    tmp = out / "cv" / ".loco_outputs.tmp.npz"
    np.savez(tmp, probs=probs, reliability=rel, y=np.array([LABELS.index(str(items[i].label)) for i in idx]),
             corpus=np.array([items[i].corpus for i in idx]), speaker=np.array([items[i].speaker for i in idx]),
             gender=np.array([items[i].gender for i in idx]), files=np.array([items[i].path.name for i in idx]))
    os.replace(tmp, f)
    return f


_E = "affectlite train: error:"  # the CLI's one error form (docs/reliability.md)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``affectlite train voice``.

    Args:
        argv: Command-line arguments (without the program name).

    Returns:
        Process exit status (0 on success, 2 on bad arguments or data).
    """
    args_in = list(sys.argv[1:] if argv is None else argv)
    fe = argparse.ArgumentParser(add_help=False)
    fe.add_argument("--front-end", choices=("logmel", "speech_embedding"), default="logmel")
    known, _ = fe.parse_known_args(args_in)
    if known.front_end == "speech_embedding":  # a head on the pretrained front end: its own recipe
        from .voice_embedding import main as embedding_main

        return embedding_main(args_in)
    argv = [a for a in args_in if not a.startswith("--front-end")]
    if "--front-end" in args_in:  # "--front-end logmel" as two words
        i = args_in.index("--front-end")
        argv = args_in[:i] + args_in[i + 2:]
    ap = argparse.ArgumentParser(prog="affectlite train voice", description=__doc__.split("\n")[0])
    ap.add_argument("--front-end", choices=("logmel", "speech_embedding"), default="logmel",
                    help="logmel: this recipe (the log-mel CNN); speech_embedding: a head on the pretrained front "
                         "end (affectlite_convert.recipes.voice_embedding, its own options)")
    ap.add_argument("--data", required=True, action="append",
                    help="a speech corpus folder (repeat for each corpus: RAVDESS, TESS, CREMA-D, EmoDB names)")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--stage", choices=("all", "cv", "final"), default="all")
    ap.add_argument("--runs", choices=("all", "lso", "loco"), default="all",
                    help="which validation runs --stage cv trains (loco: the cross-corpus runs only)")
    ap.add_argument("--only", default="", help="comma-separated run names (e.g. loco:tess) to train now")
    ap.add_argument("--epochs", type=int, default=DEFAULTS["epochs"])
    ap.add_argument("--norm", choices=af.NORMALISATIONS, default=DEFAULTS["norm"],
                    help="per-window normalisation of the log-mel (stored in the card)")
    ap.add_argument("--no-mic-aug", action="store_true", help="leave out the simulated-microphone variants")
    ap.add_argument("--speeds", default=",".join(str(v) for v in DEFAULTS["speeds"]),
                    help="comma-separated speed factors of the speed-perturbed copies (pitch and tempo)")
    ap.add_argument("--warp", default=",".join(str(v) for v in DEFAULTS["warp"]),
                    help="LO,HI: frequency-warp (vocal tract length) range applied to half of the training windows "
                         "(e.g. 0.85,1.15; empty: none)")
    ap.add_argument("--ensemble", type=int, default=DEFAULTS["ensemble"],
                    help="train N models with different seeds and ship their averaged probabilities as one file")
    ap.add_argument("--speaker-norm", action="store_true",
                    help="experiment: speaker-level per-band mean removal; validation runs only (--stage cv), "
                         "scored in float (the runtime has no speaker normaliser, so int8 figures are not valid)")
    ap.add_argument("--arch", choices=("cnn", "attn"), default=DEFAULTS["arch"])
    ap.add_argument("--width", type=float, default=DEFAULTS["width"])
    ap.add_argument("--folds", type=int, default=5, help="speaker folds per corpus (at most one per speaker)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=2, help="TensorFlow threads")
    ap.add_argument("--cache", default="", help="feature cache folder (default OUT/cache)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    for d in args.data:
        if not Path(d).is_dir():
            print(_E, f"--data {d} is not a folder", file=sys.stderr)
            return 2
    items = list_corpora(args.data)
    if not items:
        print(_E, f"no labelled speech clips with speakers (RAVDESS, TESS, CREMA-D or EmoDB file names) under "
              f"{', '.join(args.data)}", file=sys.stderr)
        return 2
    if not 2 <= args.epochs <= 500 or not 0.25 <= args.width <= 4 or not 1 <= args.ensemble <= 8:
        print(_E, "--epochs must be within 2..500, --width within 0.25..4 and --ensemble within 1..8",
              file=sys.stderr)
        return 2
    try:
        speeds = sorted({float(v) for v in args.speeds.split(",") if v.strip()})
    except ValueError:
        speeds = [-1.0]
    if any(not 0.5 <= v <= 2.0 for v in speeds):
        print(_E, f"--speeds must be comma-separated factors within 0.5..2, got {args.speeds!r}", file=sys.stderr)
        return 2
    if args.speaker_norm and args.stage != "cv":
        print(_E, "--speaker-norm is a validation experiment: use it with --stage cv (the runtime has no speaker "
              "normaliser, so a shipped model cannot use it)", file=sys.stderr)
        return 2
    try:
        warp = [float(v) for v in args.warp.split(",") if v.strip()]
    except ValueError:
        warp = [-1.0]
    if warp and (len(warp) != 2 or not 0.5 <= warp[0] < warp[1] <= 2.0):
        print(_E, f"--warp must be LO,HI with 0.5 <= LO < HI <= 2 (or empty), got {args.warp!r}", file=sys.stderr)
        return 2
    SPEC["normalisation"] = args.norm
    cfg = {"epochs": args.epochs, "norm": args.norm, "mic_aug": not args.no_mic_aug, "arch": args.arch,
           "width": args.width, "seed": args.seed, "corpora": _corpora_of(items), "n_clips": len(items),
           "data": [Path(d).name for d in args.data],
           "speeds": speeds, **({"warp": warp} if warp else {}),
           **({"ensemble": args.ensemble} if args.ensemble > 1 else {}),
           **({"speaker_norm": True} if args.speaker_norm else {})}
    log.info("%d clips: %s", len(items), {c: sum(f.corpus == c for f in items) for c in cfg["corpora"]})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # TensorFlow already initialised in this process (e.g. called from Python twice)
        log.info("TensorFlow already initialised: --threads left as it is")
    variants = _cfg_variants(cfg)
    feats = _cache_features(items, Path(args.cache) if args.cache else out / "cache", variants)
    if args.speaker_norm:
        feats = speaker_normalise(feats, [f.speaker for f in items])
    rep = None
    if args.stage in ("all", "cv"):
        only = [v.strip() for v in args.only.split(",") if v.strip()] or None
        rep = run_validation(items, feats, out, cfg, args.runs, args.folds, only)
        write_loco_outputs(items, out)
        if rep is not None:
            log.info("validation:\n%s", report_markdown(rep))
    elif (out / "cv" / "report.json").is_file():
        rep = json.loads((out / "cv" / "report.json").read_text())
    if args.stage in ("all", "final"):
        tfl = run_final(items, feats, out, cfg, rep)
        log.info("wrote %s (%d bytes)", tfl, tfl.stat().st_size)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
