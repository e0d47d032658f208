"""Frozen result dataclasses. Results carry labels, scores, boxes and ephemeral track ids only: never
pixels, samples or text. Nothing-seen is an empty result, never ``None``.

Probabilities are tuples aligned with :data:`affectlite.LABELS`; ``as_dict()`` gives a label -> score map.
Results are *expression estimates* (what a face, voice or text outwardly shows), not felt emotions.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .labels import LABELS, UNKNOWN

__all__ = [
    "Box",
    "EmotionResult",
    "FaceResult",
    "SourceStatus",
    "TextResult",
    "VoiceResult",
    "uniform_probabilities",
]


def uniform_probabilities() -> tuple[float, ...]:
    """A uniform distribution over :data:`LABELS`."""
    return tuple(1.0 / len(LABELS) for _ in LABELS)


def _top(probs: tuple[float, ...]) -> tuple[str, float]:
    if not probs:
        return UNKNOWN, 0.0
    i = max(range(len(probs)), key=probs.__getitem__)
    return LABELS[i], float(probs[i])


class _Scored:
    """Derives ``label``/``confidence`` from ``probabilities`` and maps them to labels (per-modality results)."""

    probabilities: tuple[float, ...]

    def __post_init__(self) -> None:
        lab, conf = _top(self.probabilities)
        object.__setattr__(self, "label", lab)
        object.__setattr__(self, "confidence", conf)

    def as_dict(self) -> dict[str, float]:
        """Probabilities as a label -> score map."""
        return dict(zip(LABELS, self.probabilities, strict=True))


@dataclass(frozen=True)
class Box:
    """A face box in pixels of the original frame: left, top, width, height."""

    x: float
    y: float
    w: float
    h: float

    @property
    def area(self) -> float:
        """Width times height (pixels squared)."""
        return max(self.w, 0.0) * max(self.h, 0.0)

    def iou(self, other: Box) -> float:
        """Intersection over union with another box (0..1)."""
        x1, y1 = max(self.x, other.x), max(self.y, other.y)
        x2, y2 = min(self.x + self.w, other.x + other.w), min(self.y + self.h, other.y + other.h)
        inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
        union = self.area + other.area - inter
        return inter / union if union > 0 else 0.0


@dataclass(frozen=True)
class FaceResult(_Scored):
    """Expression of one face in one frame.

    Attributes:
        track_id: Ephemeral id, stable while the face is tracked; never reused within a run, never
            linked to identity.
        box: Face box in frame pixels.
        detection_score: Detector confidence (0..1).
        probabilities: Calibrated expression probabilities aligned with :data:`LABELS`.
        label: Top label.
        confidence: Probability of the top label.
        timestamp_ns: Capture time of the frame (``time.monotonic_ns``).
    """

    track_id: int
    box: Box
    detection_score: float
    probabilities: tuple[float, ...]
    timestamp_ns: int = 0
    label: str = field(init=False)
    confidence: float = field(init=False)


@dataclass(frozen=True)
class VoiceResult(_Scored):
    """Voice emotion of one analysis window (or one aggregated utterance).

    Attributes:
        probabilities: Calibrated probabilities aligned with :data:`LABELS`.
        voice_activity: Voice-activity confidence of the window (0..1).
        start_ns: Capture time of the window's first sample.
        end_ns: Capture time just after the window's last sample.
        utterance_id: Counter of speech segments; windows of one segment share it.
        is_final: True for the aggregated result emitted when a speech segment ends.
        reliability: How far this estimate can be trusted (0..1): the voice activity times factors for
            the signal-to-noise ratio, clipping, the length of speech and how far the features are from
            the model's training data (see :func:`affectlite.voice.voice_quality`). Fusion uses it as the
            voice's weight. ``None`` (results built by hand): the voice activity stands in.
        snr_db: Estimated signal-to-noise ratio of the audio (dB), ``None`` when not measured.
        clipped_fraction: Fraction of samples at full scale (0..1), ``None`` when not measured.
        speech_s: Seconds of speech the estimate rests on, ``None`` when not measured.
        feature_distance: Distance of the features from the training data (1 ~ typical of training, larger
            is further), ``None`` when the model card has no feature statistics.
    """

    probabilities: tuple[float, ...]
    voice_activity: float
    start_ns: int
    end_ns: int
    utterance_id: int = 0
    is_final: bool = False
    reliability: float | None = None
    snr_db: float | None = None
    clipped_fraction: float | None = None
    speech_s: float | None = None
    feature_distance: float | None = None
    label: str = field(init=False)
    confidence: float = field(init=False)


@dataclass(frozen=True)
class TextResult(_Scored):
    """Emotion of one piece of text pushed by the app (the text itself is not kept).

    Attributes:
        probabilities: Calibrated probabilities aligned with :data:`LABELS`.
        n_tokens: Number of tokens the model saw (reliability cue; 0 when no shipped model covers the text's
            language, so fusion gives the text no weight).
        timestamp_ns: When the text was pushed.
        language: Language the text was routed by: ``"en"``, ``"zh"``, another code when no model covers it
            (``"ja"``, ``"ko"``, ``"und-Cyrl"``...), ``"und"`` for text without letters (emoji, digits), or
            ``""`` when unknown (results made before language routing).
        model: Name of the model card that classified the text (``""`` when no model did).
    """

    probabilities: tuple[float, ...]
    n_tokens: int
    timestamp_ns: int = 0
    language: str = ""
    model: str = ""
    label: str = field(init=False)
    confidence: float = field(init=False)


@dataclass(frozen=True)
class EmotionResult:
    """The fused result the pipeline delivers to ``on_result``.

    Attributes:
        label: Fused label, or ``"unknown"`` when confidence is under the threshold.
        probabilities: Fused probabilities aligned with :data:`LABELS` (uniform when nothing is seen).
        confidence: Fused confidence (0..1); 0 for an empty result.
        valence: -1 (negative) .. 1 (positive), derived from the probabilities.
        arousal: 0 (calm) .. 1 (excited), derived from the probabilities.
        faces: Per-face results of the frame (may be empty).
        voice: Latest voice result used, or ``None``.
        text: Latest text result used, or ``None``.
        modality_weights: Weight each modality got in the fusion, e.g. ``{"face": 0.6, "voice": 0.4}``.
        track_id: The face track this result is about (primary face), or ``None``.
        capture_ns: Capture time of the newest evidence (monotonic ns).
        result_ns: When the result was made (monotonic ns).
        frame_index: Index of the frame, or -1 for audio/text-driven results.
    """

    label: str
    probabilities: tuple[float, ...]
    confidence: float
    valence: float = 0.0
    arousal: float = 0.0
    faces: tuple[FaceResult, ...] = ()
    voice: VoiceResult | None = None
    text: TextResult | None = None
    modality_weights: dict[str, float] = field(default_factory=dict)
    track_id: int | None = None
    capture_ns: int = 0
    result_ns: int = 0
    frame_index: int = -1

    @classmethod
    def empty(cls, capture_ns: int = 0, result_ns: int = 0, frame_index: int = -1) -> EmotionResult:
        """The result for 'nothing seen or heard': label ``unknown``, uniform probabilities, confidence 0."""
        return cls(label=UNKNOWN, probabilities=uniform_probabilities(), confidence=0.0,
                   capture_ns=capture_ns, result_ns=result_ns, frame_index=frame_index)

    @property
    def is_empty(self) -> bool:
        """True when no modality contributed."""
        return not self.modality_weights

    def as_dict(self) -> dict[str, float]:
        """Probabilities as a label -> score map."""
        return dict(zip(LABELS, self.probabilities, strict=True))

    def to_json_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (labels, scores, boxes, track ids; no media)."""
        d = asdict(self)
        d["probabilities"] = {k: round(v, 4) for k, v in self.as_dict().items()}
        d["faces"] = [{**asdict(f), "probabilities": {k: round(v, 4) for k, v in f.as_dict().items()}}
                      for f in self.faces]
        if self.voice is not None:
            d["voice"] = {**asdict(self.voice),
                          "probabilities": {k: round(v, 4) for k, v in self.voice.as_dict().items()}}
        if self.text is not None:
            d["text"] = {**asdict(self.text),
                         "probabilities": {k: round(v, 4) for k, v in self.text.as_dict().items()}}
        return d


@dataclass(frozen=True)
class SourceStatus:
    """A change of state of a source, delivered to ``on_status``.

    Attributes:
        source: ``"camera"`` or ``"microphone"``.
        state: ``"ok"``, ``"degraded"`` (errors, reconnecting), ``"lost"`` (gave up) or ``"absent"``.
        detail: Human-readable reason.
        timestamp_ns: When it changed (monotonic ns).
    """

    source: str
    state: str
    detail: str = ""
    timestamp_ns: int = 0
