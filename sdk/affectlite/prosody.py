"""Prosody in numpy: pitch and energy contours of 16 kHz speech and a window's summary of them.

:func:`contours` gives, every 10 ms (40 ms frames), the log energy in dB and the pitch (normalised
autocorrelation, 60-400 Hz; 0 where a frame is not voiced). :func:`window_features` summarises a window's
frames into :data:`N_FEATURES` numbers that carry how a voice moves, not what it says: voiced share, pitch
level, spread, range, slope and movement, energy spread, range and slope, and the rate of voiced stretches.
The voice recipe measures them next to the speech_embedding front end (docs/voice.md).
"""

from __future__ import annotations

import numpy as np

__all__ = ["FEATURE_NAMES", "FRAME", "HOP", "N_FEATURES", "contours", "window_features"]

SR = 16000
#: Frame length and hop in samples (40 ms, 10 ms).
FRAME = 640
HOP = 160
_NFFT = 1024
_LAG_MIN, _LAG_MAX = SR // 400, SR // 60  # 400 Hz .. 60 Hz
_VOICED = 0.45  # normalised autocorrelation peak of a voiced frame
FEATURE_NAMES = ("voiced_share", "pitch_level", "pitch_spread", "pitch_range", "pitch_slope", "pitch_motion",
                 "energy_spread", "energy_range", "energy_slope", "voiced_runs_per_s")
N_FEATURES = len(FEATURE_NAMES)


def contours(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per 10 ms frame: ``(energy_db, f0_hz)`` of float samples in [-1, 1] (``f0_hz`` 0 where unvoiced).

    Frame ``i`` covers samples ``[160 i, 160 i + 640)``; a clip shorter than one frame gives empty arrays.
    """
    x = np.asarray(samples, np.float32).reshape(-1)
    n = 0 if x.size < FRAME else 1 + (x.size - FRAME) // HOP
    if n == 0:
        return np.zeros(0, np.float32), np.zeros(0, np.float32)
    idx = np.arange(n)[:, None] * HOP + np.arange(FRAME)[None, :]
    fr = x[idx].astype(np.float64)
    fr -= fr.mean(axis=1, keepdims=True)
    energy = 10.0 * np.log10(np.mean(fr ** 2, axis=1) + 1e-10)
    spec = np.fft.rfft(fr * np.hanning(FRAME)[None, :], _NFFT, axis=1)
    ac = np.fft.irfft(np.abs(spec) ** 2, _NFFT, axis=1)
    ac = ac / np.maximum(ac[:, :1], 1e-12)
    seg = ac[:, _LAG_MIN:_LAG_MAX + 1]
    k = seg.argmax(axis=1)
    peak = seg[np.arange(n), k]
    lag = (k + _LAG_MIN).astype(np.float64)
    # parabolic interpolation around the peak
    inner = (k > 0) & (k < seg.shape[1] - 1)
    a = seg[np.arange(n), np.clip(k - 1, 0, seg.shape[1] - 1)]
    c = seg[np.arange(n), np.clip(k + 1, 0, seg.shape[1] - 1)]
    den = a - 2 * peak + c
    shift = np.where(inner & (np.abs(den) > 1e-12), 0.5 * (a - c) / np.where(np.abs(den) > 1e-12, den, 1.0), 0.0)
    f0 = SR / (lag + np.clip(shift, -0.5, 0.5))
    loud = energy > energy.max() - 35.0
    voiced = (peak >= _VOICED) & loud & (energy > -70.0)
    return energy.astype(np.float32), np.where(voiced, f0, 0.0).astype(np.float32)


def _slope(v: np.ndarray, t: np.ndarray) -> float:
    if v.size < 3 or float(np.ptp(t)) <= 0:
        return 0.0
    return float(np.polyfit(t, v, 1)[0])


def window_features(energy_db: np.ndarray, f0_hz: np.ndarray) -> np.ndarray:
    """:data:`N_FEATURES` prosody numbers of one window's frames (see :data:`FEATURE_NAMES`), each scaled to
    roughly unit range: pitch in octaves (level relative to 150 Hz), slopes per second, energy in 10 dB."""
    e = np.asarray(energy_db, np.float64)
    f = np.asarray(f0_hz, np.float64)
    out = np.zeros(N_FEATURES, np.float32)
    if e.size < 3:
        return out
    t = np.arange(e.size) * (HOP / SR)
    v = f > 0
    out[0] = float(v.mean())
    if int(v.sum()) >= 5:
        lf = np.log2(f[v])
        out[1] = float(np.median(lf) - np.log2(150.0))
        out[2] = float(lf.std())
        out[3] = float(np.percentile(lf, 90) - np.percentile(lf, 10))
        out[4] = _slope(lf, t[v])
        d = np.diff(np.log2(np.where(v, f, 1.0)))
        both = v[1:] & v[:-1]
        out[5] = float(np.mean(np.abs(d[both])) * 100) if both.any() else 0.0
    sp = e > e.max() - 35.0
    es = e[sp]
    out[6] = float(es.std() / 10)
    out[7] = float((np.percentile(es, 95) - np.percentile(es, 5)) / 10)
    out[8] = _slope(es / 10, t[sp])
    runs = int(np.sum(v[1:] & ~v[:-1]) + int(v[0]))
    out[9] = runs / max(float(t[-1] + HOP / SR), 1e-3)
    return out
