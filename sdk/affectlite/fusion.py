"""Multimodal fusion: face + voice + text into one calibrated, smoothed emotion estimate.

Pure and deterministic, no threads: the pipeline calls :class:`Fusion` from its dispatch thread only, and
the synchronous classifier uses the stateless :func:`fuse_once`.

Late fusion (``FusionOptions.strategy = "late"``), per result:

1. Each modality brings probabilities over :data:`~affectlite.LABELS`, already temperature-calibrated by
   its model (temperature fitted on validation data with :func:`fit_temperature`, stored in the card).
2. Each gets a weight ``w_m = base_weight[m] * reliability_m * 0.5 ** (age / half_life[m])``, where the
   reliability is the face's detection score times a face-size factor (:func:`face_reliability`), the
   voice result's reliability (voice activity x SNR x clipping x speech length x distance of its features
   from the training data, :func:`voice_reliability`), or a saturating function of the text's token count
   (:func:`text_reliability`). Evidence older than ``max_age_s[m]`` is stale and
   left out.
3. A weighted geometric pool (log-linear opinion pool) over the modalities present, with the weights
   renormalised over those present, plus a small uniform prior of weight :data:`PRIOR_WEIGHT`:
   ``log p ∝ Σ_m ŵ_m log p_m``, ``ŵ_m = w_m / (Σ_k w_k + PRIOR_WEIGHT)``. A missing or stale modality simply
   drops out; weak or old evidence alone gives a flatter (less confident) result, not a forced one.
4. The conflict rule (:func:`limit_to_evidence`): when two or more modalities contribute and their top
   labels are not all the same, no label's fused probability may exceed the largest probability a
   contributing modality gives it; the excess is moved to the labels still under their cap. Disagreement
   is never turned into certainty (agreeing modalities may still reinforce each other).
5. Temporal smoothing per face track (``"ema"``, ``"hmm"`` forward filter, or ``"none"``), followed by the
   conflict rule again against the modalities of the moment (the smoothed value, capped, is the state kept),
   so a filter that multiplies evidence cannot push a label back over its cap.
6. Valence/arousal = the probability-weighted mean of :data:`~affectlite.labels.VALENCE_AROUSAL`; label
   ``"unknown"`` when the top probability is under ``unknown_threshold``.

``strategy = "learned"`` replaces step 3 by an int8 fusion head (``models/fusion.tflite``, task
``"fusion"``) fed with :func:`head_features` (per-modality probabilities and normalised weights, zeros for a
missing modality) whenever two or more modalities contribute; a single modality passes through step 3
unchanged (a head trained on class-balanced pseudo-pairs would only re-weight its classes); steps 4-6 are
the same (the conflict rule bounds the head's output too).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import CalibrationError, ConfigError, InputError, ModelCardError, ModelError, ModelLoadError
from .labels import LABELS, UNKNOWN, VALENCE_AROUSAL
from .results import EmotionResult, FaceResult, TextResult, VoiceResult

if TYPE_CHECKING:
    from .model import Model
    from .options import FusionOptions

__all__ = [
    "DEFAULT_FUSION_HEAD",
    "MODALITIES",
    "PRIOR_WEIGHT",
    "ChangeDetector",
    "Fusion",
    "FusionHead",
    "apply_temperature",
    "expected_calibration_error",
    "face_reliability",
    "fit_temperature",
    "fuse_once",
    "fuse_probabilities",
    "head_features",
    "head_model_mismatches",
    "limit_to_evidence",
    "primary_face",
    "text_reliability",
    "valence_arousal",
    "voice_reliability",
]

#: Modalities in the order every per-modality vector uses.
MODALITIES: tuple[str, ...] = ("face", "voice", "text")

#: Weight of the uniform prior in the pool: it keeps weak, old or lone evidence from looking certain.
PRIOR_WEIGHT = 0.05

#: Face side (pixels) at and above which a face counts as fully reliable; smaller faces are down-weighted.
FACE_FULL_SIDE_PX = 96.0

#: Token count at which text reliability reaches 1 - 1/e (~0.63).
TEXT_TOKEN_SCALE = 6.0

#: The shipped learned fusion head (used with ``strategy="learned"``).
DEFAULT_FUSION_HEAD = Path(__file__).resolve().parent / "models" / "fusion.tflite"

_N = len(LABELS)
_EPS = 1e-4
_VA = np.array([VALENCE_AROUSAL[lab] for lab in LABELS], dtype=np.float64)  # (7, 2)
_STRATEGIES = ("late", "learned")
_SMOOTHING = ("ema", "none", "hmm")
_TARGETS = ("primary", "all")
_NO_TRACK = -1


# ---------------------------------------------------------------------------------------------- calibration
def _as_2d(x: Any, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] < 2:
        raise CalibrationError(f"{name} must be a 2-D array (n_samples, n_classes>=2), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise CalibrationError(f"{name} contains NaN or infinity")
    return arr


def _looks_like_probs(arr: np.ndarray) -> bool:
    return bool(np.all(arr >= 0) and np.all(arr <= 1) and np.allclose(arr.sum(axis=1), 1.0, atol=1e-3))


def _nll(logits: np.ndarray, y: np.ndarray, t: float) -> float:
    z = logits / t
    z = z - z.max(axis=1, keepdims=True)
    lse = np.log(np.exp(z).sum(axis=1))
    return float(np.mean(lse - z[np.arange(len(y)), y]))


def fit_temperature(logits_or_probs: Any, y: Any, *, kind: str = "auto", t_min: float = 0.05,
                    t_max: float = 20.0) -> float:
    """Fit the calibration temperature that minimises the negative log-likelihood on held-out data.

    ``p = softmax(logits / T)``. For probabilities, ``log(p)`` is used as the logits, so the fitted ``T`` is
    the one :meth:`affectlite.model.Model.predict_proba` applies to a softmax model's output. The NLL is
    minimised by golden-section search over ``log T`` (it is unimodal in ``T``); pure numpy.

    Args:
        logits_or_probs: ``(n, k)`` logits or probabilities of a validation set.
        y: ``(n,)`` true class indices.
        kind: ``"logits"``, ``"probs"`` or ``"auto"`` (probabilities when every row is in [0, 1] and sums
            to 1).
        t_min: Smallest temperature considered.
        t_max: Largest temperature considered.

    Returns:
        The temperature (``> 1`` softens an over-confident model, ``< 1`` sharpens an under-confident one).

    Raises:
        CalibrationError: wrong shapes, NaN, labels out of range, fewer than 2 samples, bad ``kind``.
    """
    arr = _as_2d(logits_or_probs, "logits_or_probs")
    labels = np.asarray(y)
    if labels.ndim != 1 or labels.shape[0] != arr.shape[0]:
        raise CalibrationError(f"y must be 1-D with one label per row ({arr.shape[0]}), got shape {labels.shape}")
    if arr.shape[0] < 2:
        raise CalibrationError("fit_temperature needs at least 2 validation samples")
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() >= arr.shape[1]:
        raise CalibrationError(f"y must hold integer class indices in [0, {arr.shape[1] - 1}]")
    if kind not in ("auto", "logits", "probs"):
        raise CalibrationError(f"kind must be 'auto', 'logits' or 'probs', got {kind!r}")
    if not 0 < t_min < t_max:
        raise CalibrationError(f"need 0 < t_min < t_max, got {t_min}, {t_max}")
    is_probs = kind == "probs" or (kind == "auto" and _looks_like_probs(arr))
    logits = np.log(np.clip(arr, 1e-6, 1.0)) if is_probs else arr
    lo, hi = math.log(t_min), math.log(t_max)
    g = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = lo, hi
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = _nll(logits, labels, math.exp(c)), _nll(logits, labels, math.exp(d))
    for _ in range(80):
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = _nll(logits, labels, math.exp(c))
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = _nll(logits, labels, math.exp(d))
        if b - a < 1e-6:
            break
    return float(math.exp((a + b) / 2.0))


def apply_temperature(logits_or_probs: Any, temperature: float, *, kind: str = "auto") -> np.ndarray:
    """Softmax of ``logits / T`` (probabilities are turned into logits with ``log`` first).

    Args:
        logits_or_probs: ``(k,)`` or ``(n, k)`` array.
        temperature: Positive temperature.
        kind: ``"logits"``, ``"probs"`` or ``"auto"``.

    Returns:
        ``float64`` probabilities of the same shape.

    Raises:
        CalibrationError: a non-positive temperature or a bad ``kind``.
    """
    if not (isinstance(temperature, (int, float)) and temperature > 0 and math.isfinite(temperature)):
        raise CalibrationError(f"temperature must be a positive finite number, got {temperature!r}")
    if kind not in ("auto", "logits", "probs"):
        raise CalibrationError(f"kind must be 'auto', 'logits' or 'probs', got {kind!r}")
    arr = np.asarray(logits_or_probs, dtype=np.float64)
    one = arr.ndim == 1
    arr2 = arr[None, :] if one else arr
    is_probs = kind == "probs" or (kind == "auto" and _looks_like_probs(arr2))
    z = (np.log(np.clip(arr2, 1e-6, 1.0)) if is_probs else arr2) / float(temperature)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    p: np.ndarray = e / e.sum(axis=1, keepdims=True)
    return p[0] if one else p


def expected_calibration_error(probs: Any, y: Any, *, bins: int = 15) -> float:
    """Expected calibration error of the top class: ``sum_b |acc_b - conf_b| * n_b / n``.

    Rows are binned by their highest probability into ``bins`` equal-width bins over (0, 1]; 0 is perfectly
    calibrated (the model is right 80 % of the time when it says 0.8).

    Args:
        probs: ``(n, k)`` probabilities.
        y: ``(n,)`` true class indices.
        bins: Number of confidence bins.

    Returns:
        The ECE in [0, 1].

    Raises:
        CalibrationError: wrong shapes, NaN, labels out of range, ``bins < 1``.
    """
    arr = _as_2d(probs, "probs")
    labels = np.asarray(y)
    if labels.ndim != 1 or labels.shape[0] != arr.shape[0]:
        raise CalibrationError(f"y must be 1-D with one label per row ({arr.shape[0]}), got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() >= arr.shape[1]:
        raise CalibrationError(f"y must hold integer class indices in [0, {arr.shape[1] - 1}]")
    if bins < 1:
        raise CalibrationError(f"bins must be >= 1, got {bins}")
    conf = arr.max(axis=1)
    right = (arr.argmax(axis=1) == labels).astype(np.float64)
    which = np.clip(np.ceil(conf * bins).astype(np.int64) - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        m = which == b
        if m.any():
            total += abs(float(right[m].mean()) - float(conf[m].mean())) * float(m.sum())
    return total / len(labels)


# ---------------------------------------------------------------------------------------------- reliability
def face_reliability(face: FaceResult) -> float:
    """Reliability of one face's expression estimate (0..1).

    The detector score (clipped to 0..1) times a size factor ``min(1, side / FACE_FULL_SIDE_PX)`` with
    ``side = sqrt(box area)`` (small, far faces are less reliable), floored at 0.1 for any detected face.
    """
    score = _clip01(face.detection_score)
    side = math.sqrt(face.box.area) if math.isfinite(face.box.area) else 0.0
    size = min(1.0, side / FACE_FULL_SIDE_PX) if side > 0 else 0.0
    return score * max(size, 0.1)


def voice_reliability(voice: VoiceResult) -> float:
    """Reliability of a voice estimate (0..1): its :attr:`~affectlite.results.VoiceResult.reliability` (voice
    activity x SNR x clipping x speech length x distance from the training data, see
    :func:`affectlite.voice.voice_quality`), or the voice-activity confidence for a result built without one."""
    if voice.reliability is not None:
        return _clip01(voice.reliability)
    return _clip01(voice.voice_activity)


def text_reliability(text: TextResult) -> float:
    """Reliability of a text: ``1 - exp(-n_tokens / TEXT_TOKEN_SCALE)`` (0 tokens -> 0, 6 -> 0.63, 18 -> 0.95)."""
    n = max(int(text.n_tokens), 0)
    return 1.0 - math.exp(-n / TEXT_TOKEN_SCALE)


def _clip01(v: float) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return 0.0
    return min(max(f, 0.0), 1.0) if math.isfinite(f) else 0.0


# ---------------------------------------------------------------------------------------------- pooling
def _sanitize(probs: Any, name: str) -> np.ndarray | None:
    """Probabilities as a clean float64 vector, or ``None`` when they carry no information."""
    arr = np.asarray(probs, dtype=np.float64).reshape(-1)
    if arr.shape[0] != _N:
        raise InputError(f"{name} probabilities must have {_N} values (one per label in LABELS order: "
                         f"{', '.join(LABELS)}), got {arr.shape[0]}")
    arr = np.where(np.isfinite(arr), arr, 0.0)
    arr = np.clip(arr, 0.0, None)
    s = float(arr.sum())
    if s <= 0:
        return None
    return arr / s


def valence_arousal(probs: Any) -> tuple[float, float]:
    """Valence (-1..1) and arousal (0..1): the probability-weighted mean of each label's circumplex position."""
    p = np.asarray(probs, dtype=np.float64).reshape(-1)
    s = float(p.sum())
    if p.shape[0] != _N or s <= 0 or not math.isfinite(s):
        return 0.0, 0.0
    va = (p / s) @ _VA
    return float(va[0]), float(va[1])


def fuse_probabilities(probs: Mapping[str, np.ndarray], weights: Mapping[str, float], *,
                       pool: str = "log", prior_weight: float = PRIOR_WEIGHT) -> tuple[np.ndarray, dict[str, float]]:
    """Pool per-modality probabilities with weights (the core of late fusion).

    Args:
        probs: Modality -> probabilities over :data:`LABELS` (already calibrated and sanitised).
        weights: Modality -> non-negative weight (base weight x reliability x age decay).
        pool: ``"log"`` (weighted geometric mean, the default) or ``"linear"`` (weighted arithmetic mean).
        prior_weight: Weight of the uniform prior.

    Returns:
        ``(fused, modality_weights)``: fused probabilities (sum 1) and the normalised weight of each modality
        that contributed (sums to 1; empty when none did, and then ``fused`` is uniform).
    """
    used = {m: float(weights.get(m, 0.0)) for m in probs if weights.get(m, 0.0) > 0}
    total = sum(used.values())
    uniform = np.full(_N, 1.0 / _N)
    if total <= 0:
        return uniform, {}
    denom = total + max(prior_weight, 0.0)
    if pool == "linear":
        fused = uniform * (max(prior_weight, 0.0) / denom)
        for m, w in used.items():
            fused = fused + (w / denom) * probs[m]
    else:
        logp = np.full(_N, math.log(1.0 / _N)) * (max(prior_weight, 0.0) / denom)
        for m, w in used.items():
            logp = logp + (w / denom) * np.log(np.clip(probs[m], _EPS, 1.0))
        logp -= logp.max()
        fused = np.exp(logp)
    fused = fused / fused.sum()
    return fused, {m: w / total for m, w in used.items()}


def limit_to_evidence(fused: Any, probs: Mapping[str, np.ndarray]) -> np.ndarray:
    """The conflict rule: disagreeing modalities never yield a label more probable than any of them says.

    When two or more modalities contribute and their top labels (``argmax``; a tie goes to the first label in
    :data:`LABELS` order, as in :attr:`FaceResult.label`) are not all the same, each label's fused
    probability ``q_l`` is capped at ``u_l = max_m p_m[l]``, the largest probability a contributing modality
    gives it. The excess ``E = Σ_l max(q_l - u_l, 0)`` is handed to the labels under their cap in proportion
    to their room ``u_l - min(q_l, u_l)``. Every ``p_m`` sums to 1, so ``Σ u >= 1`` and the room ``R`` is at
    least ``E``: one step is exact (each label receives ``E * room_l / R <= room_l``), the result sums to 1
    and stays within the caps up to rounding. Agreeing modalities may still reinforce each other (no cap),
    and a single modality is passed through.

    Args:
        fused: Fused probabilities over :data:`LABELS` (sum 1).
        probs: Modality -> probabilities of the modalities that contributed to ``fused`` (weight > 0),
            already sanitised (finite, non-negative).

    Returns:
        The capped probabilities (``float64``, sum 1), or ``fused`` itself as a ``float64`` vector when the
        top labels agree, fewer than two modalities contributed, or no label is over its cap.

    Raises:
        InputError: a vector does not have one value per label.
    """
    q = np.asarray(fused, dtype=np.float64).reshape(-1)
    if q.shape[0] != _N:
        raise InputError(f"fused probabilities must have {_N} values, got {q.shape[0]}")
    if len(probs) < 2:
        return q
    rows = []
    for m, p in probs.items():
        arr = np.asarray(p, dtype=np.float64).reshape(-1)
        if arr.shape[0] != _N:
            raise InputError(f"{m} probabilities must have {_N} values, got {arr.shape[0]}")
        s = float(arr.sum())
        rows.append(arr / s if s > 0 else np.full(_N, 1.0 / _N))
    if len({int(np.argmax(r)) for r in rows}) < 2:
        return q
    total = float(q.sum())
    if not (total > 0 and math.isfinite(total)):
        return q
    cap = np.max(np.stack(rows), axis=0)
    if np.all(q / total <= cap):
        return q
    q = q / total
    excess = float(np.clip(q - cap, 0.0, None).sum())
    out = np.minimum(q, cap)
    room = cap - out
    r = float(room.sum())
    if r <= 0.0:  # only by rounding: sum(cap) >= 1 guarantees room for the excess
        return np.asarray(cap / cap.sum(), dtype=np.float64)
    out = out + excess * (room / r)
    return np.asarray(out, dtype=np.float64)


def _decay(age_ns: int, half_life_s: float) -> float:
    age_s = max(age_ns, 0) / 1e9
    return float(0.5 ** (age_s / half_life_s)) if half_life_s > 0 else 1.0


def _label_conf(probs: np.ndarray, threshold: float) -> tuple[str, float]:
    i = int(np.argmax(probs))
    conf = float(probs[i])
    return (LABELS[i] if conf >= threshold else UNKNOWN), conf


# ---------------------------------------------------------------------------------------------- learned head
def head_features(probs: Mapping[str, np.ndarray | None], weights: Mapping[str, float]) -> np.ndarray:
    """Input vector of the learned fusion head (length ``3 * len(LABELS) + 3``, ``float32``).

    ``[l_face(7), l_voice(7), l_text(7), ŵ_face, ŵ_voice, ŵ_text]`` with ``l_m = ln(max(p_m, 1e-4)) / ln(1e4)``
    (log-probabilities scaled to [-1, 0], so a linear layer can express a product of experts) and ``ŵ`` the
    weights normalised to sum 1 over the modalities present. A missing modality (``None`` or weight 0) gives
    zeros. The training recipe (:mod:`affectlite_convert.recipes.fusion`) builds its pseudo-pairs with this
    same function.
    """
    present = {m: float(weights.get(m, 0.0)) for m in MODALITIES
               if probs.get(m) is not None and weights.get(m, 0.0) > 0}
    total = sum(present.values())
    out = np.zeros(3 * _N + 3, dtype=np.float32)
    scale = -math.log(_EPS)
    for i, m in enumerate(MODALITIES):
        p = probs.get(m)
        if m in present and total > 0 and p is not None:
            out[i * _N:(i + 1) * _N] = np.log(np.clip(np.asarray(p, np.float64), _EPS, 1.0)) / scale
            out[3 * _N + i] = present[m] / total
    return out


class FusionHead:
    """The learned fusion head: an int8 model of task ``"fusion"`` over :func:`head_features`."""

    def __init__(self, model: Model) -> None:
        """Wrap a loaded fusion model (use :meth:`load`)."""
        self.model = model
        n_in = model.card.inputs[0].shape[-1]
        if n_in != 3 * _N + 3:
            raise ModelCardError(f"{model.card.source or model.card.name}: a fusion head takes {3 * _N + 3} "
                                 f"inputs (3 x {_N} probabilities + 3 weights), this one takes {n_in}")
        if tuple(model.card.labels) != LABELS:
            raise ModelCardError(f"{model.card.source or model.card.name}: a fusion head must output LABELS in "
                                 f"order ({', '.join(LABELS)})")

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None, *, backend: str = "auto") -> FusionHead:
        """Load a fusion head (``None``: the shipped one).

        Raises:
            ModelLoadError: the file is missing or corrupt.
            ModelCardError: its card is not a fusion card of the right shape.
        """
        from .model import Model

        p = Path(path) if path is not None else DEFAULT_FUSION_HEAD
        if not p.is_file():
            raise ModelLoadError(f"fusion head {p} not found: use FusionOptions(strategy='late'), or train one "
                                 "with `affectlite train fusion` and pass its path")
        return cls(Model.load(p, backend=backend, num_threads=1, expected_task="fusion"))

    @property
    def trained_for(self) -> dict[str, str]:
        """Modality -> sha256 of the model whose outputs trained this head (empty: not recorded)."""
        rec = self.model.card.training.get("for_models", {})
        if not isinstance(rec, Mapping):
            return {}
        return {m: str(v["sha256"]) for m, v in rec.items()
                if m in MODALITIES and isinstance(v, Mapping) and isinstance(v.get("sha256"), str)}

    def close(self) -> None:
        """Release the interpreter and its model file (idempotent); later calls raise :class:`ModelError`."""
        self.model = None  # type: ignore[assignment]

    def __call__(self, features: np.ndarray) -> np.ndarray:
        """Fused probabilities for one :func:`head_features` vector.

        Raises:
            ModelError: the head was closed.
        """
        if self.model is None:
            raise ModelError("this FusionHead is closed; load it again (FusionHead.load())")
        p = self.model.predict_proba(np.asarray(features, np.float32).reshape(1, -1))[0].astype(np.float64)
        p = np.clip(np.where(np.isfinite(p), p, 0.0), 0.0, None)
        s = float(p.sum())
        return p / s if s > 0 else np.full(_N, 1.0 / _N)


def head_model_mismatches(head: FusionHead,
                          model_paths: Mapping[str, str | os.PathLike[str] | None]) -> list[str]:
    """The modalities whose model is not the one the head was trained on, one message each.

    The fusion recipe records the sha256 of the face, voice and text models whose outputs trained the head
    (card ``training.for_models``). The head learned those models' confusions and confidence, so with another
    model it fuses worse than late fusion might. A head without that record is not checked.

    Args:
        head: The fusion head.
        model_paths: Modality -> model file in use (``None``: the shipped default). Modalities left out (not
            used) are not checked.

    Returns:
        Messages naming the modality, the model and what to do; empty when everything matches.
    """
    from ._io import sha256_file

    wanted = head.trained_for
    out: list[str] = []
    for m, path in model_paths.items():
        if m not in wanted:
            continue
        p = Path(path) if path is not None else _default_model(m)
        try:
            got = sha256_file(p)
        except OSError:
            continue  # a missing model is reported by whoever loads it
        if got != wanted[m]:
            out.append(f"the {m} model {p} is not the one the learned fusion head was trained on (sha256 "
                       f"{got[:12]}, head expects {wanted[m][:12]}): set fusion.strategy: late, or retrain the "
                       "head on your models with `affectlite train fusion`")
    return out


def _default_model(modality: str) -> Path:
    if modality == "face":
        from .face import DEFAULT_FACE_MODEL

        return DEFAULT_FACE_MODEL
    if modality == "voice":
        from .voice import DEFAULT_MODEL

        return DEFAULT_MODEL
    from .text import TEXT_MODELS

    return TEXT_MODELS["en"]  # what English text is routed to by default (the head's text inputs came from it)


# ---------------------------------------------------------------------------------------------- options
@dataclass(frozen=True)
class _Cfg:
    strategy: str
    weights: dict[str, float]
    max_age_ns: dict[str, int]
    half_life_s: dict[str, float]
    threshold: float
    smoothing: str
    alpha: float
    target: str


def _cfg(options: FusionOptions | None) -> _Cfg:
    if options is None:
        from .options import FusionOptions as _FO

        options = _FO()

    def per_mod(name: str, d: Any, positive: bool) -> dict[str, float]:
        if not isinstance(d, Mapping):
            raise ConfigError(f"fusion.{name}: expected a mapping modality -> number, got {type(d).__name__}")
        unknown = sorted(set(d) - set(MODALITIES))
        if unknown:
            raise ConfigError(f"fusion.{name}: unknown modality {', '.join(map(str, unknown))}; "
                              f"allowed: {', '.join(MODALITIES)}")
        out = {}
        for m in MODALITIES:
            v = d.get(m, 1.0 if name == "weights" else math.inf)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v) or v < 0 or (
                    positive and v == 0):
                raise ConfigError(f"fusion.{name}.{m} = {v!r}: must be a number "
                                  f"{'> 0' if positive else '>= 0'}")
            out[m] = float(v)
        return out

    if options.strategy not in _STRATEGIES:
        raise ConfigError(f"fusion.strategy = {options.strategy!r}: allowed {', '.join(_STRATEGIES)}")
    if options.smoothing not in _SMOOTHING:
        raise ConfigError(f"fusion.smoothing = {options.smoothing!r}: allowed {', '.join(_SMOOTHING)}")
    if options.voice_target not in _TARGETS:
        raise ConfigError(f"fusion.voice_target = {options.voice_target!r}: allowed {', '.join(_TARGETS)}")
    a = options.smoothing_alpha
    if isinstance(a, bool) or not isinstance(a, (int, float)) or not 0 < a <= 1:
        raise ConfigError(f"fusion.smoothing_alpha = {a!r}: must be in (0, 1] (weight of the newest result)")
    th = options.unknown_threshold
    if isinstance(th, bool) or not isinstance(th, (int, float)) or not 0 <= th <= 1:
        raise ConfigError(f"fusion.unknown_threshold = {th!r}: must be in [0, 1]")
    ages = per_mod("max_age_s", options.max_age_s, True)
    return _Cfg(strategy=options.strategy, weights=per_mod("weights", options.weights, False),
                max_age_ns={m: (int(v * 1e9) if math.isfinite(v) else 2 ** 62) for m, v in ages.items()},
                half_life_s=per_mod("half_life_s", options.half_life_s, True), threshold=float(th),
                smoothing=options.smoothing, alpha=float(a), target=options.voice_target)


# ---------------------------------------------------------------------------------------------- stateless
def _pool(cfg: _Cfg, probs: dict[str, np.ndarray], weights: dict[str, float],
          head: FusionHead | None) -> tuple[np.ndarray, dict[str, float]]:
    fused, mw = fuse_probabilities(probs, weights)
    if cfg.strategy == "learned" and head is not None and len(mw) >= 2:
        fused = head(head_features({m: probs.get(m) for m in MODALITIES}, weights))
    return limit_to_evidence(fused, _contributing(probs, mw)), mw


def _contributing(probs: Mapping[str, np.ndarray], mw: Mapping[str, float]) -> dict[str, np.ndarray]:
    """The probabilities of the modalities that contributed (the keys of the pool's modality weights)."""
    return {m: probs[m] for m in mw if m in probs}


def fuse_once(face_probs: Sequence[float] | np.ndarray | None = None,
              voice_probs: Sequence[float] | np.ndarray | None = None,
              text_probs: Sequence[float] | np.ndarray | None = None, *,
              face_reliability: float = 1.0, voice_reliability: float = 1.0, text_reliability: float = 1.0,
              options: FusionOptions | None = None, head: FusionHead | None = None,
              faces: tuple[FaceResult, ...] = (), voice: VoiceResult | None = None, text: TextResult | None = None,
              track_id: int | None = None, capture_ns: int = 0, result_ns: int = 0) -> EmotionResult:
    """Fuse one set of per-modality probabilities, without memory (no age decay, no smoothing).

    Used by the synchronous classifier (``classify(image=, audio=, text=)``). Any subset of modalities may be
    given, including none (then the empty result).

    Args:
        face_probs: Calibrated face probabilities over :data:`LABELS`, or ``None``.
        voice_probs: Calibrated voice probabilities, or ``None``.
        text_probs: Calibrated text probabilities, or ``None``.
        face_reliability: 0..1 (e.g. :func:`face_reliability`).
        voice_reliability: 0..1 (e.g. :func:`voice_reliability`).
        text_reliability: 0..1 (e.g. :func:`text_reliability`).
        options: Fusion options (weights, threshold, strategy); ``None`` for the defaults.
        head: A loaded :class:`FusionHead` for ``strategy="learned"`` (``None``: the shipped head is loaded).
        faces: Per-face results to attach to the output.
        voice: Voice result to attach.
        text: Text result to attach.
        track_id: Face track the result is about.
        capture_ns: Capture time to stamp on the result.
        result_ns: Result time to stamp on the result.

    Returns:
        The fused :class:`EmotionResult` (``label="unknown"`` below the threshold).

    Raises:
        InputError: a probability vector does not have one value per label.
        ConfigError: invalid options.
    """
    cfg = _cfg(options)
    probs: dict[str, np.ndarray] = {}
    weights: dict[str, float] = {}
    for m, p, r in (("face", face_probs, face_reliability), ("voice", voice_probs, voice_reliability),
                    ("text", text_probs, text_reliability)):
        if p is None:
            continue
        clean = _sanitize(p, m)
        if clean is None:
            continue
        probs[m] = clean
        weights[m] = cfg.weights[m] * _clip01(r)
    if cfg.strategy == "learned" and head is None and len(probs) >= 2:
        head = FusionHead.load()  # only when it will be used (two or more modalities)
    fused, mw = _pool(cfg, probs, weights, head)
    if not mw:
        return EmotionResult.empty(capture_ns=capture_ns, result_ns=result_ns)
    return _result(fused, mw, cfg.threshold, faces=faces, voice=voice, text=text, track_id=track_id,
                   capture_ns=capture_ns, result_ns=result_ns, frame_index=-1)


def _result(fused: np.ndarray, mw: dict[str, float], threshold: float, **kw: Any) -> EmotionResult:
    label, conf = _label_conf(fused, threshold)
    val, aro = valence_arousal(fused)
    return EmotionResult(label=label, probabilities=tuple(float(v) for v in fused), confidence=conf,
                         valence=val, arousal=aro, modality_weights={m: float(w) for m, w in mw.items()}, **kw)


def primary_face(faces: Sequence[FaceResult], frame_size: tuple[int, int] | None = None,
                 previous: int | None = None, keep_ratio: float = 0.8) -> FaceResult | None:
    """The primary face: the largest, most central one.

    Score = box area x (1 - 0.5 x distance of the box centre from the frame centre, normalised to 0..1 at the
    corners); without ``frame_size`` it is the area alone. The ``previous`` primary keeps its role while its
    score is at least ``keep_ratio`` of the best (no flicker between two similar faces).

    Args:
        faces: Faces of one frame.
        frame_size: ``(width, height)`` of the frame, if known.
        previous: Track id of the previous primary face.
        keep_ratio: Hysteresis ratio.

    Returns:
        The primary face, or ``None`` when there are no faces.
    """
    if not faces:
        return None

    def score(f: FaceResult) -> float:
        a = f.box.area if math.isfinite(f.box.area) else 0.0
        if frame_size is None or frame_size[0] <= 0 or frame_size[1] <= 0:
            return a
        w, h = frame_size
        cx, cy = f.box.x + f.box.w / 2.0, f.box.y + f.box.h / 2.0
        d = math.hypot((cx - w / 2.0) / (w / 2.0), (cy - h / 2.0) / (h / 2.0)) / math.sqrt(2.0)
        d = min(max(d, 0.0), 1.0) if math.isfinite(d) else 1.0
        return a * (1.0 - 0.5 * d)

    scores = [score(f) for f in faces]
    best = max(range(len(faces)), key=lambda i: (scores[i], -faces[i].track_id))
    if previous is not None:
        for i, f in enumerate(faces):
            if f.track_id == previous and scores[i] >= keep_ratio * scores[best]:
                return f
    return faces[best]


# ---------------------------------------------------------------------------------------------- stateful
@dataclass
class _Smooth:
    probs: np.ndarray
    last_ns: int


class Fusion:
    """Stateful late (or learned) fusion with age decay and per-track smoothing.

    Feed it evidence as it arrives; each ``update_*`` returns the fused result(s) after that evidence:

    * one result for the primary face (:func:`primary_face`), or one per face with ``voice_target="all"``;
    * one audio/text-only result (``track_id=None``) when no fresh face is present;
    * ``[EmotionResult.empty(...)]`` when nothing is fresh.

    Only the latest frame's faces are current: a face that leaves the frame stops being reported at once;
    its smoothing state is forgotten after the largest ``max_age_s``. Pure and deterministic given its inputs
    (times come from the arguments, never from a clock); not thread-safe (call it from one thread).
    """

    def __init__(self, options: FusionOptions, *, head: FusionHead | None = None,
                 frame_size: tuple[int, int] | None = None) -> None:
        """Create the fusion state.

        Args:
            options: Fusion options.
            head: Learned fusion head for ``strategy="learned"`` (``None``: the shipped one is loaded).
            frame_size: ``(width, height)`` of the camera frames, to find the most central face (optional;
                ``update_faces`` can also pass it).

        Raises:
            ConfigError: invalid options.
            ModelLoadError: ``strategy="learned"`` and the fusion head cannot be loaded.
        """
        self.options = options
        self._cfg = _cfg(options)
        self._owns_head = head is None and self._cfg.strategy == "learned"
        self._head = head if not self._owns_head else FusionHead.load()
        self._frame_size = frame_size
        self._forget_ns = max(v for v in self._cfg.max_age_ns.values())
        self.reset()

    def close(self) -> None:
        """Release the fusion head this object loaded itself (idempotent; a head passed in is the caller's).

        Afterwards an update that needs the learned head raises :class:`ModelError`; ``"late"`` fusion keeps
        working.
        """
        if self._owns_head and self._head is not None:
            self._head.close()

    @property
    def head(self) -> FusionHead | None:
        """The learned head in use (``None`` with ``strategy="late"``)."""
        return self._head

    def reset(self) -> None:
        """Forget all evidence and smoothing state (e.g. after a source restarts)."""
        self._faces: tuple[FaceResult, ...] = ()
        self._frame_ns = 0
        self._frame_index = -1
        self._voice: VoiceResult | None = None
        self._voice_ns = 0
        self._text: TextResult | None = None
        self._text_ns = 0
        self._primary: int | None = None
        self._smooth: dict[int, _Smooth] = {}

    # -- evidence
    def update_faces(self, faces: tuple[FaceResult, ...], frame_index: int, capture_ns: int, now_ns: int,
                     frame_size: tuple[int, int] | None = None) -> list[EmotionResult]:
        """Take the faces of a new frame (possibly none) and return the fused result(s).

        Args:
            faces: Per-face results of the frame.
            frame_index: Index of the frame.
            capture_ns: Capture time of the frame.
            now_ns: Current time (monotonic ns).
            frame_size: ``(width, height)`` of the frame, for the most-central rule.
        """
        self._faces = tuple(faces)
        self._frame_ns = int(capture_ns)
        self._frame_index = int(frame_index)
        if frame_size is not None:
            self._frame_size = frame_size
        return self._emit(now_ns)

    def update_voice(self, voice: VoiceResult, now_ns: int) -> list[EmotionResult]:
        """Take a new voice result (its capture time is ``end_ns``) and return the fused result(s)."""
        self._voice = voice
        self._voice_ns = int(voice.end_ns or voice.start_ns or now_ns)
        return self._emit(now_ns)

    def update_text(self, text: TextResult, now_ns: int) -> list[EmotionResult]:
        """Take a new text result (its time is ``timestamp_ns``) and return the fused result(s)."""
        self._text = text
        self._text_ns = int(text.timestamp_ns or now_ns)
        return self._emit(now_ns)

    def current(self, now_ns: int) -> list[EmotionResult]:
        """The fused result(s) now, without new evidence (evidence ages; stale evidence drops out)."""
        return self._emit(now_ns)

    # -- internals
    def _fresh(self, m: str, t_ns: int, now_ns: int) -> float | None:
        """Age-decay factor of evidence captured at ``t_ns``, or ``None`` when it is stale."""
        age = now_ns - t_ns
        if age > self._cfg.max_age_ns[m]:
            return None
        return _decay(age, self._cfg.half_life_s[m])

    def _shared(self, now_ns: int) -> tuple[dict[str, np.ndarray], dict[str, float], int]:
        probs: dict[str, np.ndarray] = {}
        weights: dict[str, float] = {}
        newest = 0
        if self._voice is not None:
            d = self._fresh("voice", self._voice_ns, now_ns)
            p = _sanitize(self._voice.probabilities, "voice")
            if d is not None and p is not None:
                probs["voice"] = p
                weights["voice"] = self._cfg.weights["voice"] * voice_reliability(self._voice) * d
                newest = max(newest, self._voice_ns)
        if self._text is not None:
            d = self._fresh("text", self._text_ns, now_ns)
            p = _sanitize(self._text.probabilities, "text")
            if d is not None and p is not None:
                probs["text"] = p
                weights["text"] = self._cfg.weights["text"] * text_reliability(self._text) * d
                newest = max(newest, self._text_ns)
        return probs, weights, newest

    def _emit(self, now_ns: int) -> list[EmotionResult]:
        now_ns = int(now_ns)
        self._prune(now_ns)
        shared_p, shared_w, newest = self._shared(now_ns)
        faces = self._faces
        face_decay = self._fresh("face", self._frame_ns, now_ns) if faces else None
        if face_decay is None:
            faces_now: tuple[FaceResult, ...] = ()
        else:
            faces_now = faces
        voice_used = self._voice if "voice" in shared_w else None
        text_used = self._text if "text" in shared_w else None
        out: list[EmotionResult] = []
        if faces_now:
            assert face_decay is not None
            prim = primary_face(faces_now, self._frame_size, self._primary)
            self._primary = prim.track_id if prim is not None else None
            targets = faces_now if self._cfg.target == "all" else tuple(f for f in faces_now if f is prim)
            for f in targets:
                probs = dict(shared_p)
                weights = dict(shared_w)
                p = _sanitize(f.probabilities, "face")
                if p is not None:
                    probs["face"] = p
                    weights["face"] = self._cfg.weights["face"] * face_reliability(f) * face_decay
                fused, mw = _pool(self._cfg, probs, weights, self._head)
                if not mw:
                    out.append(EmotionResult.empty(self._frame_ns, now_ns, self._frame_index))
                    continue
                fused = self._smooth_update(f.track_id, fused, now_ns, _contributing(probs, mw))
                out.append(_result(fused, mw, self._cfg.threshold, faces=faces_now, voice=voice_used,
                                   text=text_used, track_id=f.track_id, capture_ns=max(newest, self._frame_ns),
                                   result_ns=now_ns, frame_index=self._frame_index))
            return out
        self._primary = None
        fused, mw = _pool(self._cfg, shared_p, shared_w, self._head)
        if not mw:
            return [EmotionResult.empty(capture_ns=newest, result_ns=now_ns)]
        fused = self._smooth_update(_NO_TRACK, fused, now_ns, _contributing(shared_p, mw))
        return [_result(fused, mw, self._cfg.threshold, voice=voice_used, text=text_used, track_id=None,
                        capture_ns=newest, result_ns=now_ns, frame_index=-1)]

    def _smooth_update(self, key: int, fused: np.ndarray, now_ns: int,
                       evidence: Mapping[str, np.ndarray]) -> np.ndarray:
        """Smooth ``fused`` with the track's state, then apply the conflict rule against ``evidence`` (the
        modalities that contributed now); the capped value is the new state."""
        if self._cfg.smoothing == "none":
            return fused
        prev = self._smooth.get(key)
        if prev is None or now_ns - prev.last_ns > self._forget_ns or now_ns < prev.last_ns:
            new = fused
        elif self._cfg.smoothing == "ema":
            new = self._cfg.alpha * fused + (1.0 - self._cfg.alpha) * prev.probs
        else:  # hmm: forward filter with "stay" transitions, the fused distribution as the emission
            a = self._cfg.alpha
            predicted = (1.0 - a) * prev.probs + a / _N
            new = predicted * np.clip(fused, _EPS, 1.0)
        s = float(new.sum())
        new = new / s if s > 0 and math.isfinite(s) else fused
        new = limit_to_evidence(new, evidence)
        self._smooth[key] = _Smooth(new, now_ns)
        return new

    def _prune(self, now_ns: int) -> None:
        stale = [k for k, s in self._smooth.items() if now_ns - s.last_ns > self._forget_ns]
        for k in stale:
            del self._smooth[k]


class ChangeDetector:
    """Decides when a stream of results changed label (for ``on_change`` events), per track.

    A change is reported when a track's label differs from the last reported label of that track for
    ``min_consecutive`` results in a row (hysteresis against flicker). The first result of a track is a change
    (from nothing). ``"unknown"`` is a label like any other; empty results are ignored.
    """

    def __init__(self, min_consecutive: int = 2) -> None:
        """Create a detector.

        Raises:
            ConfigError: ``min_consecutive < 1``.
        """
        if isinstance(min_consecutive, bool) or not isinstance(min_consecutive, int) or min_consecutive < 1:
            raise ConfigError(f"min_consecutive must be an int >= 1, got {min_consecutive!r}")
        self.min_consecutive = min_consecutive
        self._stable: dict[int | None, str] = {}
        self._pending: dict[int | None, tuple[str, int]] = {}

    def update(self, result: EmotionResult) -> bool:
        """Feed one result; True when it marks a change of its track's label."""
        if result.is_empty:
            return False
        key = result.track_id
        stable = self._stable.get(key)
        if stable is None:
            self._stable[key] = result.label
            self._pending.pop(key, None)
            return True
        if result.label == stable:
            self._pending.pop(key, None)
            return False
        lab, n = self._pending.get(key, (result.label, 0))
        n = n + 1 if lab == result.label else 1
        if n >= self.min_consecutive:
            self._stable[key] = result.label
            self._pending.pop(key, None)
            return True
        self._pending[key] = (result.label, n)
        return False

    def forget(self, track_id: int | None) -> None:
        """Drop a track's state (when it expires)."""
        self._stable.pop(track_id, None)
        self._pending.pop(track_id, None)

    def reset(self) -> None:
        """Drop all state."""
        self._stable.clear()
        self._pending.clear()
