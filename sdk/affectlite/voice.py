"""Voice emotion: windows of 16 kHz mono audio -> features -> int8 model -> probabilities (sync, numpy).

* :class:`VoiceEmotionClassifier` classifies one analysis window (the model card's ``window_s``).
* :class:`VoiceAnalyzer` is the streaming part used on ONE thread by the pipeline: a ring buffer over the
  microphone samples, analysis windows every ``hop_s``, voice activity detection (silence and noise give
  no result), and per-utterance aggregation: windows of one speech segment share an ``utterance_id``, and
  when the segment ends a final result (``is_final=True``) averages them.
* :func:`evaluate_voice` / :func:`eval_voice_main` evaluate a model on a folder of labelled audio
  (label folders, or the file-name conventions of RAVDESS, CREMA-D and EmoDB).

Window timeline of a stream: window ``k`` covers samples ``[k * hop, k * hop + W)`` (``W`` from the card,
``hop`` from the options), so the first window completes once ``W`` samples have arrived. At the end of a
speech segment (``hangover_s`` of non-speech) one more window, aligned with the segment's end, is
classified when the segment's last speech is not yet covered; :meth:`VoiceAnalyzer.flush` does the same at
the end of the stream (zero-padding when the whole stream is shorter than one window).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

import numpy as np

from . import audio_features as af
from ._boundary import check_float_peak, check_sample_rate
from .card import ModelCard
from .errors import ConfigError, InputError, ModelCardError, ModelLoadError
from .labels import LABELS, map_distribution
from .model import Model
from .options import VoiceOptions
from .results import VoiceResult
from .speech_corpora import list_speech_files, parse_speech_file
from .vad import VoiceActivityDetector, create_vad

__all__ = [
    "DEFAULT_MODEL",
    "VoiceAnalyzer",
    "VoiceEmotionClassifier",
    "VoiceQuality",
    "eval_voice_main",
    "evaluate_voice",
    "feature_descriptor",
    "feature_distance",
    "label_from_filename",
    "voice_quality",
]

_MODELS = Path(__file__).resolve().parent / "models"
#: The log-mel voice model: the default when the speech_embedding front end is not installed.
LOGMEL_MODEL = _MODELS / "voice_logmel.tflite"


def _default_model() -> Path:
    """``voice.tflite`` (a head on the speech_embedding front end) when the front end is installed, else the
    log-mel model (:data:`LOGMEL_MODEL`)."""
    from .speech_embedding import front_end_status

    main = _MODELS / "voice.tflite"
    if LOGMEL_MODEL.is_file() and front_end_status():
        return LOGMEL_MODEL
    return main


#: The shipped int8 voice model in use (its card is the ``.card.json`` next to it): ``voice.tflite`` on the
#: speech_embedding front end, or :data:`LOGMEL_MODEL` when that front end is not installed (offline install).
DEFAULT_MODEL = _default_model()
SAMPLE_RATE = 16000
_NS = 1_000_000_000
_VAD_BATCH = 8  # frames scored together when no window is due (adds at most 0.24 s to a segment's end)
_CLIP_LEVEL = 0.985  # |sample| at or above this counts as clipped
_SNR_FRAME = 320     # 20 ms frames for the SNR estimate


def feature_descriptor(features: np.ndarray) -> np.ndarray:
    """Each mel band's mean and standard deviation over time of normalised window features
    ``(..., frames, n_mels)`` -> ``(..., 2 * n_mels)``: what :func:`feature_distance` compares, and what the
    training recipe summarises into the card's ``calibration.feature_stats``."""
    f = np.asarray(features, np.float64)
    out: np.ndarray = np.concatenate([f.mean(axis=-2), f.std(axis=-2)], axis=-1)
    return out


def feature_distance(features: np.ndarray, stats: Any) -> float | None:
    """How far one window's normalised features ``(frames, n_mels)`` are from the model's training data.

    The descriptor is each mel band's mean and standard deviation over the window (``2 * n_mels`` values);
    ``stats`` (the card's ``calibration.feature_stats``, written by the training recipe) holds their mean
    and standard deviation over training windows. The distance is the root-mean-square z-score: about 1
    for typical training windows (the card also stores its 50th and 95th percentiles there).

    Returns:
        The distance, or ``None`` when ``stats`` is missing or does not fit the features.
    """
    if not isinstance(stats, dict) or "mean" not in stats or "std" not in stats:
        return None
    f = np.asarray(features, np.float64)
    d = feature_descriptor(f.reshape(f.shape[0], -1))
    mu = np.asarray(stats["mean"], np.float64)
    sd = np.asarray(stats["std"], np.float64)
    if mu.shape != d.shape or sd.shape != d.shape or not np.all(sd > 0):
        return None
    return float(np.sqrt(np.mean(((d - mu) / sd) ** 2)))


def _snr_db(x: np.ndarray) -> float:
    """Signal-to-noise estimate of a stretch of audio: loud (90th percentile) vs quiet (10th percentile)
    20 ms frame energy, in dB (0..60)."""
    n = x.size // _SNR_FRAME
    if n < 4:
        return 0.0
    e = np.mean(x[:n * _SNR_FRAME].astype(np.float64).reshape(n, _SNR_FRAME) ** 2, axis=1) + 1e-10
    lo, hi = np.percentile(e, [10, 90])
    return float(min(60.0, max(0.0, 10 * math.log10(hi / lo))))


class VoiceQuality(TypedDict):
    """The quality fields of a :class:`~affectlite.results.VoiceResult` (see :func:`voice_quality`)."""

    reliability: float
    snr_db: float
    clipped_fraction: float
    speech_s: float
    feature_distance: float | None


def voice_quality(samples: np.ndarray, voice_activity: float, speech_s: float,
                  distance: float | None = None, distance_p95: float | None = None) -> VoiceQuality:
    """Reliability of a voice estimate and the measurements behind it (the :class:`VoiceResult` fields).

    ``reliability = voice_activity x snr x clipping x length x distance`` with:

    * snr: ``clip((snr_db - 3) / 17, 0.1, 1)`` - 20 dB or more counts fully, 3 dB or less 0.1;
    * clipping: ``clip(1 - 20 x clipped_fraction, 0.2, 1)`` - 5 % of samples at full scale gives 0.2;
    * length: ``1 - exp(-speech_s / 0.75)`` - 0.5 s of speech 0.49, 1 s 0.74, 2 s 0.93;
    * distance: 1 up to the training data's 95th percentile ``distance_p95``, then ``(p95 / distance)^2``.

    Args:
        samples: The audio the estimate came from (float32, 16 kHz).
        voice_activity: Fraction of it that is speech (0..1).
        speech_s: Seconds of speech.
        distance: :func:`feature_distance`, or ``None``.
        distance_p95: The card's ``feature_stats.distance_p95``, or ``None``.

    Returns:
        ``{"reliability", "snr_db", "clipped_fraction", "speech_s", "feature_distance"}``.
    """
    x = np.asarray(samples, np.float32)
    return quality_from_measures(_snr_db(x), float(np.mean(np.abs(x) >= _CLIP_LEVEL)) if x.size else 0.0,
                                 voice_activity, speech_s, distance, distance_p95)


def quality_from_measures(snr: float, clipped: float, voice_activity: float, speech_s: float,
                          distance: float | None = None, distance_p95: float | None = None) -> VoiceQuality:
    """:func:`voice_quality` from the measurements (SNR in dB, clipped fraction) instead of the samples,
    for audio that is measured piece by piece (a long file read window by window)."""
    f_snr = min(1.0, max(0.1, (snr - 3.0) / 17.0))
    f_clip = min(1.0, max(0.2, 1.0 - 20.0 * clipped))
    f_len = 1.0 - math.exp(-max(0.0, speech_s) / 0.75)
    f_dist = 1.0
    if distance is not None and distance_p95 and distance > distance_p95:
        f_dist = (distance_p95 / distance) ** 2
    act = min(1.0, max(0.0, float(voice_activity)))
    return {"reliability": round(act * f_snr * f_clip * f_len * f_dist, 4), "snr_db": round(snr, 2),
            "clipped_fraction": round(clipped, 5), "speech_s": round(float(speech_s), 3),
            "feature_distance": None if distance is None else round(distance, 3)}



def needs_front_end(card: ModelCard) -> bool:
    """Whether a voice model card takes speech_embedding embeddings (not log-mel features)."""
    return bool(card.inputs) and card.inputs[0].kind == "tensor" and str(
        card.inputs[0].preprocessing.get("front_end", "")).startswith("speech_embedding")


_FALLBACK_LOGGED = False


def _log_fallback_once(why: str) -> None:
    global _FALLBACK_LOGGED
    if not _FALLBACK_LOGGED:
        _FALLBACK_LOGGED = True
        import logging

        logging.getLogger("affectlite.voice").warning("voice: using the log-mel model %s: %s", LOGMEL_MODEL.name, why)


class VoiceEmotionClassifier:
    """Classify one window of 16 kHz mono audio into :data:`affectlite.LABELS` probabilities.

    Not thread-safe (one interpreter): create one per thread. Use :meth:`create`.

    Attributes:
        card: The model card.
        spec: The validated audio feature spec (``card.inputs[0].preprocessing``).
    """

    def __init__(self, model: Model, front_end: Any = None) -> None:
        self._model = model
        self.card: ModelCard = model.card
        #: The speech_embedding front end (:class:`affectlite.speech_embedding.SpeechEmbedding`) of a model on
        #: embeddings, ``None`` for a log-mel model.
        self.front_end = front_end
        if needs_front_end(self.card):
            self._init_embedding_model(model)
            return
        if not self.card.inputs or self.card.inputs[0].kind != "audio_features":
            raise ModelCardError(f"{self.card.source or self.card.name}: inputs[0].kind must be "
                                 "'audio_features' for a voice model")
        where = f"{self.card.source or self.card.name}: inputs[0].preprocessing"
        self.spec: dict[str, Any] = af.check_spec(self.card.inputs[0].preprocessing, where)
        if self.spec["sample_rate"] != SAMPLE_RATE:
            raise ModelCardError(f"{where}: sample_rate {self.spec['sample_rate']} is not supported; the "
                                 f"voice path runs at {SAMPLE_RATE} Hz")
        self.window_length = af.window_samples(self.spec)
        frames = af.n_frames(self.window_length, self.spec)
        shape = tuple(int(v) for v in model.input_details[0]["shape"])
        want = (frames, self.spec["n_mels"])
        if len(shape) < 3 or tuple(shape[1:3]) != want or int(np.prod(shape[3:], dtype=np.int64)) != 1:
            raise ModelCardError(f"{where}: window_s={self.spec['window_s']} and n_mels={self.spec['n_mels']} "
                                 f"give features {list(want)}, but the model input is {list(shape)}")
        self._in_shape = (1, *shape[1:])
        stats = self.card.calibration.get("feature_stats")
        self.feature_stats: dict[str, Any] | None = stats if isinstance(stats, dict) else None
        p95 = (self.feature_stats or {}).get("distance_p95")
        self.distance_p95: float | None = float(p95) if isinstance(p95, (int, float)) and p95 > 0 else None

    def _init_embedding_model(self, model: Model) -> None:
        from . import speech_embedding as se

        where = f"{self.card.source or self.card.name}: inputs[0]"
        pre = self.card.inputs[0].preprocessing
        if self.front_end is None:
            raise ModelLoadError(f"{where}: this voice model runs on the {se.FRONT_END_NAME} front end; create it "
                                 "with VoiceEmotionClassifier.create()")
        window_s = pre.get("window_s", 2.0)
        if not isinstance(window_s, (int, float)) or window_s != 2.0:
            raise ModelCardError(f"{where}.preprocessing.window_s must be 2.0 for {se.FRONT_END_NAME}")
        shape = tuple(int(v) for v in model.input_details[0]["shape"])
        n_emb = se.n_embeddings(se.n_mel_frames(round(window_s * SAMPLE_RATE)))
        if shape[1:] != (n_emb, se.EMBEDDING_DIM):
            raise ModelCardError(f"{where}: a 2 s window gives {n_emb} x {se.EMBEDDING_DIM} embeddings, but the "
                                 f"model input is {list(shape)}")
        # the keys VoiceAnalyzer reads; hop_length / win_length are the front end's 10 ms / 25 ms frames
        self.spec = {"sample_rate": SAMPLE_RATE, "window_s": float(window_s), "n_mels": 32, "hop_length": 160,
                     "win_length": 400, "front_end": se.FRONT_END_NAME}
        self.window_length = round(float(window_s) * SAMPLE_RATE)
        self._in_shape = (1, *shape[1:])
        stats = self.card.calibration.get("feature_stats")
        self.feature_stats = stats if isinstance(stats, dict) else None
        p95 = (self.feature_stats or {}).get("distance_p95")
        self.distance_p95 = float(p95) if isinstance(p95, (int, float)) and p95 > 0 else None

    def feature_distance(self, feats: np.ndarray) -> float | None:
        """:func:`feature_distance` of normalised window features against this model's training data
        (``None`` when its card has no ``calibration.feature_stats``)."""
        return feature_distance(feats, self.feature_stats) if self.feature_stats is not None else None

    @classmethod
    def create(cls, model_path: str | os.PathLike[str] | None = None, *, backend: str = "auto",
               num_threads: int | None = 1, delegates: Sequence[str] = ()) -> VoiceEmotionClassifier:
        """Load a voice model and its card.

        Args:
            model_path: A ``.tflite`` with its ``.card.json``; ``None`` for the shipped default.
            backend: Interpreter backend (``"auto"``, ``"litert"``, ``"tflite_runtime"``, ``"tf_lite"``).
            num_threads: Interpreter threads.
            delegates: Delegate library paths.

        Raises:
            ModelLoadError: the file is missing or corrupt.
            ModelCardError: card missing/invalid, not a voice model, or a feature spec this version
                cannot compute.
        """
        path = Path(model_path) if model_path is not None else DEFAULT_MODEL
        if model_path is None and not path.is_file():
            raise ModelLoadError(f"the shipped voice model {path} is missing: reinstall affectlite, or pass "
                                 "model_path= a voice .tflite with its .card.json")
        if model_path is None and path == LOGMEL_MODEL:
            from .speech_embedding import front_end_status

            _log_fallback_once(front_end_status())
        model = Model.load(path, backend=backend, num_threads=num_threads, delegates=tuple(delegates),
                           expected_task="voice")
        front_end = None
        if needs_front_end(model.card):
            from .speech_embedding import SpeechEmbedding

            front_end = SpeechEmbedding(backend=backend, num_threads=num_threads)
        return cls(model, front_end)

    def features(self, samples: np.ndarray) -> np.ndarray:
        """Model-ready features of one window: shorter input is zero-padded at the end, longer is cut to
        its last ``window_s`` seconds."""
        x = af.to_float32(samples, "classify_window")
        w = self.window_length
        if x.size < w:
            x = np.concatenate([x, np.zeros(w - x.size, np.float32)])
        elif x.size > w:
            x = x[-w:]
        if self.front_end is not None:
            out: np.ndarray = self.front_end(x)
            return out
        return af.compute_features(x, self.spec)

    def classify_window(self, samples: np.ndarray) -> tuple[float, ...]:
        """Probabilities (aligned with :data:`affectlite.LABELS`) of one window.

        Args:
            samples: float32 (or int16) 16 kHz mono samples, ideally exactly ``window_s`` long.

        Raises:
            InputError: empty, NaN/infinite, or not 1-D.
        """
        return self.classify_features(self.features(samples))

    def classify_features(self, feats: np.ndarray) -> tuple[float, ...]:
        """Probabilities of one window given its normalised features ``(frames, n_mels)``."""
        p = self._model.predict_proba(np.asarray(feats, np.float32).reshape(self._in_shape))[0]
        return map_distribution(self.card.labels, p.tolist(), self.card.label_mapping)

    def close(self) -> None:
        """Release the interpreter (the object must not be used afterwards)."""
        self._model = None  # type: ignore[assignment]


@dataclass
class _Segment:
    uid: int
    start: int               # first speech sample
    last_speech: int         # end (exclusive) of the last speech frame
    speech_frames: int = 0
    psum: np.ndarray | None = None  # running sum of weight * window probabilities (bounded memory: a
    wsum: float = 0.0               # segment can last for hours next to a radio)
    covered_to: int = 0      # end (exclusive) of the last classified window
    n_windows: int = 0       # running sums of the windows' quality measurements
    rel_sum: float = 0.0
    snr_sum: float = 0.0
    clip_sum: float = 0.0
    dist_sum: float = 0.0
    dist_n: int = 0


class VoiceAnalyzer:
    """Streaming voice emotion on ONE thread: ring buffer, windows, VAD, classification, aggregation.

    Args:
        options: :class:`affectlite.options.VoiceOptions`. The window length comes from the model card
            (the model's input size is fixed); ``options.window_s`` must match it.

    Raises:
        ConfigError: bad hop, thresholds, unknown VAD, or a window that differs from the model's.
        ModelLoadError, ModelCardError: the model cannot be used.
    """

    def __init__(self, options: VoiceOptions,
                 classifier: VoiceEmotionClassifier | None = None) -> None:
        self.options = options
        self.classifier = classifier or VoiceEmotionClassifier.create(
            options.model_path, backend=options.backend, num_threads=options.num_threads,
            delegates=options.delegates)
        spec = self.classifier.spec
        self.window = self.classifier.window_length
        if options.window_s and abs(float(options.window_s) - spec["window_s"]) > 1e-6:
            raise ConfigError(f"voice.window_s={options.window_s} but the voice model "
                              f"{self.classifier.card.name} takes {spec['window_s']} s windows; set "
                              f"voice.window_s: {spec['window_s']} (or use a model trained for your window)")
        if not 0.05 <= float(options.hop_s) <= spec["window_s"]:
            raise ConfigError(f"voice.hop_s must be within 0.05..{spec['window_s']} s (the window), "
                              f"got {options.hop_s}")
        for name in ("min_speech_s", "hangover_s"):
            v = getattr(options, name)
            if not isinstance(v, (int, float)) or not 0.0 <= float(v) <= 10.0:
                raise ConfigError(f"voice.{name} must be a number of seconds within 0..10, got {v!r}")
        self.hop = round(float(options.hop_s) * SAMPLE_RATE)
        self._vad_name = options.vad
        self._vad = self._make_vad()
        self._fl = int(self._vad.frame_length)
        self._min_frames = max(1, math.ceil(float(options.min_speech_s) * SAMPLE_RATE / self._fl))
        self._hang = round(float(options.hangover_s) * SAMPLE_RATE)
        self._keep = self.window + self._hang + self.hop + (2 + _VAD_BATCH) * self._fl
        self._closed = False
        self._uid = 0
        self.reset()

    def _make_vad(self) -> VoiceActivityDetector:
        return create_vad(self._vad_name, threshold_db=float(self.options.vad_threshold_db),
                          sample_rate=SAMPLE_RATE)

    # ------------------------------------------------------------------------------------------- stream
    def reset(self) -> None:
        """Start a new stream (keeps the model; utterance ids keep counting up)."""
        self._buf = np.zeros(0, np.float32)     # samples [self._buf0, self._n)
        self._buf0 = 0
        self._n = 0                             # samples pushed so far
        self._vad_pos = 0                       # samples already scored by the VAD
        self._flags: list[tuple[int, bool]] = []  # (frame start sample, speech) within the buffer span
        self._next_end = self.window            # end of the next scheduled window
        self._seg: _Segment | None = None
        self._silence = 0                       # samples of non-speech since the last speech frame
        self._anchors: list[tuple[int, int]] = []  # (sample index, timestamp ns)
        # log-mel frames on the stream's frame grid (frame f covers samples f*hop_length ...), computed
        # once and shared by the overlapping windows; a window on the grid gets exactly the features
        # compute_features() gives for its samples
        self._lm = np.zeros((0, self.classifier.spec["n_mels"]), np.float32)
        self._lm0 = 0                           # frame index of self._lm[0]
        # speech_embedding models: embeddings on the stream's 80 ms grid (embedding k covers samples from
        # k * 1280), computed once and shared by the overlapping windows
        self._emb: dict[int, np.ndarray] = {}
        self._vad.reset()

    def _check_open(self) -> None:
        if self._closed:
            raise InputError("VoiceAnalyzer is closed; create a new one")

    def _ns(self, idx: int) -> int:
        a_idx, a_ns = self._anchors[0] if self._anchors else (0, 0)
        for i, t in self._anchors:
            if i <= idx:
                a_idx, a_ns = i, t
            else:
                break
        return int(a_ns + (idx - a_idx) * _NS // SAMPLE_RATE)

    def push(self, samples: np.ndarray, timestamp_ns: int) -> list[VoiceResult]:
        """Add a chunk of int16 (or float32) 16 kHz mono samples; return the results it completed.

        Args:
            samples: The next chunk of the stream.
            timestamp_ns: Capture time (``time.monotonic_ns``) of the chunk's first sample.

        Returns:
            One result per completed window that holds speech of the current segment, and a final
            aggregated result (``is_final=True``) for each speech segment that ended. Silence and noise
            give an empty list.

        Raises:
            InputError: not 1-D, NaN/infinite, or the analyzer is closed.
        """
        self._check_open()
        x = np.asarray(samples)
        if x.size == 0:
            return []
        x = check_float_peak(af.to_float32(x, "VoiceAnalyzer.push"), "VoiceAnalyzer.push")
        self._anchors.append((self._n, int(timestamp_ns)))
        self._buf = np.concatenate([self._buf, x])
        self._n += x.size
        out: list[VoiceResult] = []
        while self._next_end <= self._n:
            self._advance_vad(self._next_end, out)
            self._window(self._next_end, out)
            self._next_end += self.hop
        if self._n - self._vad_pos >= _VAD_BATCH * self._fl:  # batch small chunks (numpy call overhead)
            self._advance_vad(self._n, out)
        self._trim()
        return out

    def flush(self) -> list[VoiceResult]:
        """End of stream: classify the uncovered tail of an open speech segment and emit its final result.

        The analyzer is then ready for a new stream (:meth:`reset` is called).
        """
        self._check_open()
        out: list[VoiceResult] = []
        if self._n > 0:
            self._advance_vad(self._n, out)
            # score the last partial VAD frame too (zero-padded)
            rest = self._n - self._vad_pos
            if rest > 0:
                pad = self._fl - rest
                self._buf = np.concatenate([self._buf, np.zeros(pad, np.float32)])
                self._advance_vad(self._vad_pos + self._fl, out, limit_end=self._n)
            if self._seg is not None:
                self._end_segment(out, end=self._n)
        self.reset()
        return out

    def _trim(self) -> None:
        drop = (self._n - self._keep) - self._buf0
        if drop > 0:
            self._buf = self._buf[drop:]
            self._buf0 += drop
            self._flags = [f for f in self._flags if f[0] + self._fl > self._buf0]
        while len(self._anchors) > 1 and self._anchors[1][0] <= self._buf0:
            self._anchors.pop(0)

    def _advance_vad(self, upto: int, out: list[VoiceResult], limit_end: int | None = None) -> None:
        n = (upto - self._vad_pos) // self._fl
        if n <= 0:
            return
        a = self._vad_pos - self._buf0
        frames = self._buf[a:a + n * self._fl].reshape(n, self._fl)
        scores = self._vad.process(frames)
        for i in range(n):
            start = self._vad_pos + i * self._fl
            end = start + self._fl if limit_end is None else min(limit_end, start + self._fl)
            speech = bool(scores[i] >= 0.5)
            self._flags.append((start, speech))
            if speech:
                if self._seg is None:
                    self._uid += 1
                    self._seg = _Segment(uid=self._uid, start=start, last_speech=end)
                self._seg.last_speech = end
                self._seg.speech_frames += 1
                self._silence = 0
            elif self._seg is not None:
                self._silence += end - start
                if self._silence >= self._hang:
                    self._end_segment(out, end=end)
        self._vad_pos += n * self._fl

    def _speech_in(self, lo: int, hi: int, since: int) -> tuple[int, int]:
        tot = sp = 0
        for s, f in self._flags:
            if s >= lo and s + self._fl <= hi:
                tot += 1
                if f and s >= since:
                    sp += 1
        return sp, tot

    def _window(self, end: int, out: list[VoiceResult]) -> None:
        seg = self._seg
        if seg is None:
            return
        start = end - self.window
        sp, tot = self._speech_in(start, end, seg.start)
        if sp < self._min_frames or seg.speech_frames < self._min_frames:
            return
        out.append(self._classify(seg, start, end, sp / max(tot, 1)))

    def _classify(self, seg: _Segment, start: int, end: int, activity: float) -> VoiceResult:
        lo = max(start, self._buf0)
        x = self._buf[lo - self._buf0:end - self._buf0]
        if lo > start:  # stream shorter than a window: zero-pad in front
            x = np.concatenate([np.zeros(lo - start, np.float32), x])
        spec = self.classifier.spec
        hl = int(spec["hop_length"])
        if (self.classifier.front_end is None and start >= self._buf0 and start % hl == 0
                and end - start == self.window):
            feats = af.normalise(self._grid_frames(start // hl), spec)
        elif self.classifier.front_end is not None and end - start == self.window and start >= self._buf0 + 1280:
            feats = self._grid_embeddings(start)
        else:
            feats = self.classifier.features(x)
        probs = self.classifier.classify_features(feats)
        activity = float(min(1.0, activity))
        q = voice_quality(x, activity, activity * self.window / SAMPLE_RATE, self.classifier.feature_distance(feats),
                          self.classifier.distance_p95)
        rel = q["reliability"]
        w = max(rel, 1e-3)
        pw = np.asarray(probs, np.float64) * w
        seg.psum = pw if seg.psum is None else seg.psum + pw
        seg.wsum += w
        seg.covered_to = max(seg.covered_to, end)
        seg.n_windows += 1
        seg.rel_sum += rel
        seg.snr_sum += q["snr_db"]
        seg.clip_sum += q["clipped_fraction"]
        dist = q["feature_distance"]
        if dist is not None:
            seg.dist_sum += dist
            seg.dist_n += 1
        return VoiceResult(probabilities=probs, voice_activity=activity,
                           start_ns=self._ns(max(start, 0)), end_ns=self._ns(end), utterance_id=seg.uid, **q)

    def _grid_embeddings(self, start: int) -> np.ndarray:
        """The window's embeddings from the stream's 80 ms embedding grid (its start rounded down to the grid,
        at most 80 ms earlier), computing only the embeddings not yet cached: about 6 per 0.5 s hop instead of 16."""
        from . import speech_embedding as se

        step = se.HOP_FRAMES * se.HOP  # 1280 samples
        span = (se.WINDOW_FRAMES - 1) * se.HOP + 4 * se.HOP  # samples one embedding depends on (12,640)
        n = int(self.classifier._in_shape[1])
        k0 = start // step
        missing = [k for k in range(k0, k0 + n) if k not in self._emb]
        if missing:
            a, b = missing[0], missing[-1]
            lo, hi = a * step - self._buf0, b * step + span - self._buf0
            emb = self.classifier.front_end(self._buf[lo:hi])
            for j, k in enumerate(range(a, b + 1)):
                self._emb[k] = emb[j]
        for k in [k for k in self._emb if k < k0]:  # windows only move forward
            del self._emb[k]
        return np.stack([self._emb[k] for k in range(k0, k0 + n)])

    def _grid_frames(self, f0: int) -> np.ndarray:
        """Log-mel frames ``f0 .. f0 + frames_per_window`` of the stream (computing the missing ones)."""
        spec = self.classifier.spec
        hl, win = int(spec["hop_length"]), int(spec["win_length"])
        nfr = af.n_frames(self.window, spec)
        first = max(self._lm0 + len(self._lm), f0)
        if first > self._lm0 + len(self._lm) or f0 < self._lm0:  # not contiguous: start the cache again
            self._lm = np.zeros((0, spec["n_mels"]), np.float32)
            self._lm0 = f0
            first = f0
        if first < f0 + nfr:
            a, b = first * hl - self._buf0, (f0 + nfr - 1) * hl + win - self._buf0
            self._lm = np.concatenate([self._lm, af.log_mel(self._buf[a:b], spec)])
        lo = f0 - self._lm0
        frames = self._lm[lo:lo + nfr]
        # keep only frames later windows can still use
        keep_from = max(0, (self._buf0 + hl - 1) // hl - self._lm0)
        if keep_from > 0:
            self._lm = self._lm[keep_from:]
            self._lm0 += keep_from
        return frames

    def _end_segment(self, out: list[VoiceResult], end: int) -> None:
        seg = self._seg
        self._seg = None
        self._silence = 0
        if seg is None or seg.speech_frames < self._min_frames:
            return
        if seg.covered_to < seg.last_speech:
            w_end = min(end, self._n)
            w_start = w_end - self.window  # negative near the stream start: zero-padded in front
            sp, tot = self._speech_in(w_start, w_end, seg.start)
            out.append(self._classify(seg, w_start, w_end, sp / max(tot, 1)))
        if seg.psum is None:
            return
        p = seg.psum / seg.wsum
        p = p / p.sum()
        act = float(min(1.0, seg.speech_frames * self._fl / max(1, seg.last_speech - seg.start)))
        k = max(1, seg.n_windows)
        out.append(VoiceResult(probabilities=tuple(float(v) for v in p), voice_activity=act,
                               start_ns=self._ns(seg.start), end_ns=self._ns(seg.last_speech),
                               utterance_id=seg.uid, is_final=True, reliability=round(seg.rel_sum / k, 4),
                               snr_db=round(seg.snr_sum / k, 2), clipped_fraction=round(seg.clip_sum / k, 5),
                               speech_s=round(seg.speech_frames * self._fl / SAMPLE_RATE, 3),
                               feature_distance=round(seg.dist_sum / seg.dist_n, 3) if seg.dist_n else None))

    # ---------------------------------------------------------------------------------------------- clip
    def classify_clip(self, samples: np.ndarray, sample_rate: int) -> VoiceResult | None:
        """Classify a whole clip synchronously (independent of the stream state).

        Windows are placed with :func:`affectlite.audio_features.window_starts` (every ``hop_s``, the last
        one aligned with the end; a clip shorter than a window is zero-padded); windows holding at least
        ``min_speech_s`` of speech are classified and their probabilities averaged (weighted by voice
        activity).

        Args:
            samples: 1-D int16 or float samples, any rate.
            sample_rate: Their rate in Hz (resampled to 16 kHz).

        Returns:
            A final result (``utterance_id=0``, ``start_ns=0``, ``end_ns`` = clip duration), or ``None``
            when the clip holds no speech.

        Raises:
            InputError: empty, NaN/infinite, wrong rank, float samples beyond +-2 (peaks in (1, 2] are
                clipped), or a sample rate outside 4 kHz .. 192 kHz.
        """
        self._check_open()
        sample_rate = check_sample_rate(sample_rate, "classify_clip: sample_rate")  # 4 kHz .. 192 kHz
        x = check_float_peak(af.to_float32(samples, "classify_clip"), "classify_clip")
        if sample_rate != SAMPLE_RATE:
            x = af.resample(x, int(sample_rate), SAMPLE_RATE)
        n = x.size
        if n < self.window:
            x = np.concatenate([x, np.zeros(self.window - n, np.float32)])
        vad = self._make_vad()
        nfr = x.size // self._fl
        scores = vad.process(x[:nfr * self._fl].reshape(nfr, self._fl)) if nfr else np.zeros(0, np.float32)
        speech = scores >= 0.5
        if int(speech.sum()) < self._min_frames:
            return None
        cum = np.concatenate([[0], np.cumsum(speech)])
        probs, weights = [], []
        candidates = []
        for s in af.window_starts(x.size, self.window, self.hop):
            f0, f1 = -(-s // self._fl), min(nfr, (s + self.window) // self._fl)
            sp = int(cum[f1] - cum[f0]) if f1 > f0 else 0
            candidates.append((sp, s, sp / max(1, f1 - f0)))
        chosen = [c for c in candidates if c[0] >= self._min_frames] or [max(candidates)]
        dists = []
        for _, s, act in chosen:
            feats = self.classifier.features(x[s:s + self.window])
            probs.append(self.classifier.classify_features(feats))
            weights.append(max(act, 1e-3))
            d = self.classifier.feature_distance(feats)
            if d is not None:
                dists.append(d)
        w = np.asarray(weights)[:, None]
        p = (np.asarray(probs) * w).sum(axis=0) / w.sum()
        p = p / p.sum()
        activity = float(speech.mean())
        # reliability: the speech share of the windows classified (silence around a clip costs nothing)
        win_act = float(np.average([c[2] for c in chosen], weights=np.asarray(weights)))
        q = voice_quality(x[:max(n, 1)], win_act, int(speech.sum()) * self._fl / SAMPLE_RATE,
                          float(np.mean(dists)) if dists else None, self.classifier.distance_p95)
        return VoiceResult(probabilities=tuple(float(v) for v in p),
                           voice_activity=activity, start_ns=0,
                           end_ns=int(n * _NS // SAMPLE_RATE), utterance_id=0, is_final=True, **q)

    def close(self) -> None:
        """Release the model; further calls raise :class:`~affectlite.errors.InputError`."""
        if not self._closed:
            self._closed = True
            self.classifier.close()


# ----------------------------------------------------------------------------------------------- eval

def label_from_filename(path: str | os.PathLike[str]) -> tuple[str | None, str]:
    """The common label of a labelled audio file, and which convention gave it.

    Conventions (:mod:`affectlite.speech_corpora`, the one place the training recipe reads too), in
    order: RAVDESS (``03-01-05-02-01-02-12.wav``, third field: 01 neutral, 02 calm -> neutral, 03 happy,
    04 sad, 05 angry, 06 fearful -> fear, 07 disgust, 08 surprised -> surprise), TESS
    (``OAF_back_angry.ogg``: angry disgust fear happy neutral ps -> surprise sad), CREMA-D
    (``1001_DFA_ANG_XX.wav``: ANG DIS FEA HAP NEU SAD), EmoDB (``03a01Fa.wav``, letter 6: W anger,
    L boredom (skipped), E disgust, A fear, F happiness, T sadness, N neutral), then the name of the
    parent folder (``angry/x.wav``, synonyms such as ``happiness`` or ``fearful`` accepted).

    Returns:
        ``(label, convention)``: ``label`` is a common label, or ``None`` with convention ``"skip"``
        (a known label without counterpart, e.g. boredom or contempt) or ``"unlabelled"``.
    """
    f = parse_speech_file(path)
    return f.label, f.convention


def _metrics(y: list[int], pred: list[int]) -> dict[str, Any]:
    n = len(LABELS)
    cm = np.zeros((n, n), np.int64)
    for a, b in zip(y, pred, strict=True):
        cm[a, b] += 1
    support = cm.sum(axis=1)
    present = support > 0
    rec = cm.diagonal() / np.maximum(support, 1)
    prec = cm.diagonal() / np.maximum(cm.sum(axis=0), 1)
    f1 = 2 * prec * rec / np.maximum(prec + rec, 1e-12)
    total = int(cm.sum())
    return {
        "n": total,
        "accuracy": float(cm.diagonal().sum() / total) if total else 0.0,
        "uar": float(rec[present].mean()) if present.any() else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "per_class_recall": {LABELS[i]: float(rec[i]) for i in range(n) if present[i]},
        "confusion_matrix": cm.tolist(),
        "labels": list(LABELS),
    }


def evaluate_voice(model_path: str | os.PathLike[str] | None, data_dir: str | os.PathLike[str], *,
                   vad: str = "none", hop_s: float = 0.5, backend: str = "auto",
                   num_threads: int | None = 1, limit: int | None = None) -> dict[str, Any]:
    """Evaluate a voice model on a folder of labelled audio (WAV/FLAC/Ogg, any rate), clip by clip.

    Args:
        model_path: The model, or ``None`` for the shipped default.
        data_dir: Folder searched recursively; labels from :func:`label_from_filename`.
        vad: VAD used by :meth:`VoiceAnalyzer.classify_clip` (``"none"``: labelled clips are speech);
            clips where the VAD finds no speech count as wrong (reported as ``no_speech``).
        hop_s: Hop between the windows of a clip.
        backend: Interpreter backend.
        num_threads: Interpreter threads.
        limit: Evaluate at most this many files (sorted by path), for quick checks.

    Returns:
        JSON-ready dict: ``n``, ``accuracy``, ``uar``, ``macro_f1``, ``per_class_recall``,
        ``confusion_matrix`` (rows true, columns predicted, :data:`LABELS` order), ``labels``, plus
        ``model``, ``data``, ``conventions`` (files per naming convention), ``skipped``, ``no_speech``,
        ``unreadable`` (files that could not be decoded: skipped with a warning, not counted), and
        ``per_speaker_uar`` when the file names carry speakers (RAVDESS, TESS, CREMA-D, EmoDB).

    Raises:
        InputError: the folder does not exist or holds no labelled audio.
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise InputError(f"eval voice: {root} is not a folder")
    parsed = list_speech_files(root, labelled_only=False)
    labelled = [f for f in parsed if f.label is not None]
    conv: dict[str, int] = {}
    for f in labelled:
        conv[f.convention] = conv.get(f.convention, 0) + 1
    skipped = len(parsed) - len(labelled)
    if limit is not None:
        labelled = labelled[:limit]
    if not labelled:
        raise InputError(f"eval voice: no labelled audio files (WAV/FLAC/Ogg) under {root} ({len(parsed)} audio "
                         f"files, {skipped} without a usable label); use label folders (angry/, happy/, ...) or "
                         "RAVDESS / TESS / CREMA-D / EmoDB file names")
    clf = VoiceEmotionClassifier.create(model_path, backend=backend, num_threads=num_threads)
    an = VoiceAnalyzer(VoiceOptions(model_path=None, window_s=clf.spec["window_s"], hop_s=hop_s, vad=vad),
                       classifier=clf)
    y: list[int] = []
    pred: list[int] = []
    by_speaker: dict[str, tuple[list[int], list[int]]] = {}
    no_speech = 0
    unreadable: list[str] = []
    try:
        for f in labelled:
            lab = LABELS.index(str(f.label))
            try:  # one corrupt file is skipped (and reported), not the end of the evaluation
                x, rate = af.load_audio_with_rate(f.path)
                x = np.clip(x, -1.0, 1.0)  # lossy decoders (Ogg/Opus corpora) overshoot full scale on loud clips
                r = an.classify_clip(x, rate)
            except InputError as e:
                unreadable.append(str(f.path))
                import logging

                logging.getLogger("affectlite.voice").warning("eval voice: skipped %s", e)
                continue
            y.append(lab)
            if r is None:
                no_speech += 1
                pred.append((lab + 1) % len(LABELS))  # counts as wrong
            else:
                pred.append(int(np.argmax(r.probabilities)))
            if f.speaker:
                ys, ps = by_speaker.setdefault(f.speaker, ([], []))
                ys.append(lab)
                ps.append(pred[-1])
    finally:
        an.close()
    if not y:
        raise InputError(f"eval voice: none of the {len(labelled)} labelled audio files under {root} could be read "
                         f"(first: {unreadable[0] if unreadable else '-'})")
    res = _metrics(y, pred)
    res.update({"model": clf.card.name, "model_path": str(model_path or DEFAULT_MODEL), "data": str(root),
                "conventions": conv, "skipped": skipped, "no_speech": no_speech, "vad": vad,
                "unreadable": unreadable})
    if by_speaker:
        res["per_speaker_uar"] = {k: round(_metrics(v[0], v[1])["uar"], 4) for k, v in sorted(by_speaker.items())}
    return res


def eval_voice_main(args: argparse.Namespace) -> int:
    """CLI hook of ``affectlite eval voice --data DIR [--model PATH] [--vad NAME] [--limit N] [--out FILE]``.

    Prints the JSON of :func:`evaluate_voice` (and writes it to ``--out`` when given).

    Returns:
        0 on success, 2 when the folder holds no labelled audio or the model cannot be loaded.
    """
    from .errors import AffectliteError

    try:
        res = evaluate_voice(getattr(args, "model", None), args.data, vad=getattr(args, "vad", None) or "none",
                             limit=getattr(args, "limit", None))
    except AffectliteError as e:
        print(f"affectlite eval: error: {e}", file=sys.stderr)
        return 2
    text = json.dumps(res, indent=2)
    out = getattr(args, "out", None)
    if out:
        from ._io import atomic_write_text

        atomic_write_text(out, text + "\n")
    print(text)
    return 0
