"""Classify a voice clip of any length window by window, with bounded memory.

:func:`classify_clip_blocks` gives what :meth:`affectlite.voice.VoiceAnalyzer.classify_clip` gives on the
whole clip (the same windows, voice activity, weights and quality measures), but keeps only about one window
of samples plus a few bytes per 20-30 ms frame: a 2 h recording costs a few MB instead of gigabytes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

from . import audio_features as af
from ._boundary import check_float_peak
from .errors import InputError
from .microphones import SAMPLE_RATE
from .results import VoiceResult

if TYPE_CHECKING:
    from .voice import VoiceAnalyzer

__all__ = ["IN_MEMORY_S", "classify_clip_blocks"]

#: Clips up to this long are classified in one piece with ``classify_clip``; longer ones window by window.
IN_MEMORY_S = 60.0
_NS = 1_000_000_000
_CLIP_LEVEL = 0.985
_SNR_FRAME = 320


def classify_clip_blocks(va: VoiceAnalyzer, blocks: Iterable[np.ndarray],
                         in_memory_s: float | None = None) -> VoiceResult | None:
    """Classify the clip made of ``blocks`` (float32 or int16 mono at 16 kHz, in order).

    Args:
        va: The voice analyzer (its model, VAD and window settings are used; its stream state is not).
        blocks: The clip's samples, piece by piece (e.g. :func:`affectlite._audio_stream.open_audio_blocks`).
        in_memory_s: Clips up to this long are joined and passed to ``classify_clip`` (identical result);
            default :data:`IN_MEMORY_S`.

    Returns:
        As :meth:`affectlite.voice.VoiceAnalyzer.classify_clip`: the final result, or ``None`` without speech.

    Raises:
        InputError: no samples, NaN/infinite samples, float samples beyond +-2.
    """
    limit = round((IN_MEMORY_S if in_memory_s is None else in_memory_s) * SAMPLE_RATE)
    head: list[np.ndarray] = []
    n_head = 0
    it = iter(blocks)
    long_clip = False
    for b in it:
        x = check_float_peak(af.to_float32(b, "classify_clip"), "classify_clip") if np.size(b) else None
        if x is None:
            continue
        head.append(x)
        n_head += x.size
        if n_head > max(limit, va.window):
            long_clip = True
            break
    if not long_clip:
        if not head:
            raise InputError("classify_clip: no samples (empty clip)")
        return va.classify_clip(np.concatenate(head), SAMPLE_RATE)
    st = _ClipStream(va)
    for x in head:
        st.feed(x)
    head.clear()
    for b in it:
        if np.size(b):
            st.feed(check_float_peak(af.to_float32(b, "classify_clip"), "classify_clip"))
    return st.finish()


class _ClipStream:
    """The state of one long clip (only used for clips longer than a window)."""

    def __init__(self, va: VoiceAnalyzer) -> None:
        va._check_open()
        self.va = va
        self.vad = va._make_vad()
        self.window, self.hop, self.fl, self.min_frames = va.window, va.hop, va._fl, va._min_frames
        self.buf = np.zeros(0, np.float32)  # samples [b0, n)
        self.b0 = 0
        self.n = 0
        self.vad_pos = 0
        self.speech = np.zeros(0, bool)  # per VAD frame
        self.next_s = 0  # next grid window start
        self.last_s = -1  # last window start classified or considered
        self.snr_rest = np.zeros(0, np.float32)
        self.energies: list[np.ndarray] = []
        self.clipped = 0
        self.probs: list[tuple[float, ...]] = []
        self.weights: list[float] = []
        self.acts: list[float] = []
        self.dists: list[float] = []
        self.best: tuple[int, int, float] | None = None
        self.best_x: np.ndarray | None = None

    def feed(self, x: np.ndarray) -> None:
        self.buf = np.concatenate([self.buf, x])
        self.n += x.size
        self.clipped += int(np.count_nonzero(np.abs(x) >= _CLIP_LEVEL))
        rest = np.concatenate([self.snr_rest, x])
        k = rest.size // _SNR_FRAME
        if k:
            e = np.mean(rest[:k * _SNR_FRAME].astype(np.float64).reshape(k, _SNR_FRAME) ** 2, axis=1) + 1e-10
            self.energies.append(e)
        self.snr_rest = rest[k * _SNR_FRAME:]
        nf = (self.n - self.vad_pos) // self.fl
        if nf > 0:
            a = self.vad_pos - self.b0
            scores = self.vad.process(self.buf[a:a + nf * self.fl].reshape(nf, self.fl))
            self.speech = np.concatenate([self.speech, np.asarray(scores) >= 0.5])
            self.vad_pos += nf * self.fl
        if self.next_s + self.window <= self.n:
            cum = np.concatenate([[0], np.cumsum(self.speech, dtype=np.int64)])
            while self.next_s + self.window <= self.n:
                self._candidate(self.next_s, cum)
                self.next_s += self.hop
        drop = min(self.next_s, self.n - self.window) - self.b0
        if drop > 0:
            self.buf = self.buf[drop:]
            self.b0 += drop

    def _candidate(self, s: int, cum: np.ndarray) -> None:
        self.last_s = s
        nfr = self.speech.size
        f0, f1 = -(-s // self.fl), min(nfr, (s + self.window) // self.fl)
        sp = int(cum[f1] - cum[f0]) if f1 > f0 else 0
        act = sp / max(1, f1 - f0)
        x = self.buf[s - self.b0:s - self.b0 + self.window]
        if sp >= self.min_frames:
            self._classify(x, act)
        elif not self.probs and (self.best is None or (sp, s, act) > self.best):
            self.best, self.best_x = (sp, s, act), x.copy()

    def _classify(self, x: np.ndarray, act: float) -> None:
        clf = self.va.classifier
        feats = clf.features(x)
        self.probs.append(clf.classify_features(feats))
        self.weights.append(max(act, 1e-3))
        self.acts.append(act)
        d = clf.feature_distance(feats)
        if d is not None:
            self.dists.append(d)

    def finish(self) -> VoiceResult | None:
        from .voice import quality_from_measures

        if self.last_s + self.window < self.n:  # one more window aligned with the end
            cum = np.concatenate([[0], np.cumsum(self.speech, dtype=np.int64)])
            self._candidate(self.n - self.window, cum)
        n_speech = int(self.speech.sum())
        if n_speech < self.min_frames:
            return None
        if not self.probs:
            assert self.best is not None and self.best_x is not None  # invariant: a window was considered
            self._classify(self.best_x, self.best[2])
        w = np.asarray(self.weights)[:, None]
        p = (np.asarray(self.probs) * w).sum(axis=0) / w.sum()
        p = p / p.sum()
        e = np.concatenate(self.energies) if self.energies else np.zeros(0)
        snr = 0.0
        if e.size >= 4:
            lo, hi = np.percentile(e, [10, 90])
            snr = float(min(60.0, max(0.0, 10 * math.log10(hi / lo))))
        win_act = float(np.average(self.acts, weights=np.asarray(self.weights)))
        q = quality_from_measures(snr, self.clipped / self.n, win_act, n_speech * self.fl / SAMPLE_RATE,
                                  float(np.mean(self.dists)) if self.dists else None,
                                  self.va.classifier.distance_p95)
        return VoiceResult(probabilities=tuple(float(v) for v in p), voice_activity=float(self.speech.mean()),
                           start_ns=0, end_ns=int(self.n * _NS // SAMPLE_RATE), utterance_id=0, is_final=True, **q)
