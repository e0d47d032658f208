"""Frozen option dataclasses for every stage, and :meth:`PipelineOptions.from_profile`.

Options mirror the sections of a device profile (``firmware_configs/*.yaml``): ``camera``, ``audio``,
``face``, ``voice``, ``text``, ``fusion``, ``queues``, ``privacy``. Every field has a safe default, so
``PipelineOptions()`` works on any machine with the shipped models.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

from .errors import ConfigError

__all__ = [
    "AudioOptions",
    "CameraOptions",
    "FaceOptions",
    "FusionOptions",
    "PipelineOptions",
    "PrivacyOptions",
    "QueueOptions",
    "TextOptions",
    "VoiceOptions",
]


@dataclass(frozen=True)
class CameraOptions:
    """Where frames come from.

    Attributes:
        enabled: Capture video at all.
        backend: ``"auto"`` (picamera2 on a Pi, else OpenCV), ``"picamera2"``, ``"opencv"``, ``"images"``,
            ``"synthetic"`` or ``"none"``.
        device: Camera index (``0``), ``/dev/videoN``, a GStreamer pipeline string, an RTSP/HTTP URL, a video
            file or an image folder, depending on the backend.
        width: Capture width in pixels.
        height: Capture height in pixels.
        fps: Requested frame rate.
        inference_width: Width of the low-resolution stream used for inference (picamera2 ``lores``);
            0 means the capture size.
        inference_height: Height of that stream.
        realtime: For file sources, pace frames at ``fps`` (True) or read as fast as possible (False).
        loop: For file sources, start again at the end instead of stopping.
        every_frame: Never drop a frame: the reader waits for the face thread instead (for recordings
            analysed offline, e.g. with ``realtime=False``: every frame is analysed, as fast as the
            pipeline can go). Leave it off for live cameras: waiting there only moves the drops into
            the driver's buffers and adds latency.
        reconnect: Reopen a failing camera with exponential backoff instead of stopping.
        max_backoff_s: Longest wait between reconnect attempts.
    """

    enabled: bool = True
    backend: str = "auto"
    device: str | int = 0
    width: int = 640
    height: int = 480
    fps: float = 15.0
    inference_width: int = 0
    inference_height: int = 0
    realtime: bool = True
    loop: bool = False
    every_frame: bool = False
    reconnect: bool = True
    max_backoff_s: float = 5.0


@dataclass(frozen=True)
class AudioOptions:
    """Where audio comes from. Internally audio is always 16 kHz mono int16.

    Attributes:
        enabled: Capture audio at all.
        backend: ``"auto"`` (pyaudio), ``"pyaudio"``, ``"file"``, ``"synthetic"`` or ``"none"``.
        device: Input device index or name substring (pyaudio), or a WAV/FLAC path (file).
        sample_rate: Rate to open the device at (resampled to 16 kHz when it differs).
        chunk_ms: Size of each read, in milliseconds.
        realtime: For file sources, pace chunks in real time.
        loop: For file sources, start again at the end.
        reconnect: Reopen a failing microphone with backoff.
        max_backoff_s: Longest wait between reconnect attempts.
    """

    enabled: bool = True
    backend: str = "auto"
    device: str | int | None = None
    sample_rate: int = 16000
    chunk_ms: int = 100
    realtime: bool = True
    loop: bool = False
    reconnect: bool = True
    max_backoff_s: float = 5.0


@dataclass(frozen=True)
class FaceOptions:
    """Face detection, tracking and expression classification.

    Attributes:
        enabled: Run the face path.
        model_path: Expression model (``None``: the shipped int8 default).
        detector: ``"blazeface"`` (default; falls back to ``"haar"`` with a warning when its model file is not
            installed), ``"haar"`` (OpenCV) or ``"yunet"``.
        detector_model: Model file for detectors that need one (YuNet ONNX; BlazeFace override).
        detect_every: Run the detector every Nth frame, track in between.
        detect_width: Downscale frames to this width for detection (0: no downscale).
        detect_scale_factor: Image-pyramid step of the Haar detector (1.1 searches finer and costs about a
            third more CPU than the default 1.15; 1.2 and above miss faces; other detectors ignore it).
        max_faces: Most faces classified per frame (largest first).
        min_face_size: Smallest face side in pixels of the original frame (default: the expression model's
            48-pixel input; lower it for far-away faces at the cost of detection time).
        margin: Extra crop margin around the box, as a fraction of its size.
        align: When the detector gives eye keypoints (BlazeFace, YuNet), rotate the crop so the eyes are level
            and size it from the inter-ocular distance, like the training crops; boxes without keypoints
            (Haar) are cropped from the box as before.
        score_threshold: Minimum detector score.
        track_iou: IoU to match a detection to a track.
        track_expiry_s: A track unseen this long is dropped (its id is never reused).
        track_min_hits: Consecutive detection passes that confirm a new face before it is reported (1: at
            once). Suppresses sporadic false detections on background at the cost of a short delay for a new
            face: ``(track_min_hits - 1) * detect_every`` frames (200 ms at the defaults and 30 fps).
        smoothing: EMA factor for per-track probabilities (0: none).
        flip_tta: Also classify the mirrored crop and average the two (test-time augmentation). Doubles the
            expression model's time per face; what it buys depends on the model (the shipped one: 65.31% ->
            65.37% on FER2013 public_test, macro-F1 0.638 -> 0.643), so leave it off on a Pi.
        backend: Interpreter backend.
        num_threads: Interpreter threads.
        delegates: Delegate library paths.
    """

    enabled: bool = True
    model_path: str | None = None
    detector: str = "blazeface"
    detector_model: str | None = None
    detect_every: int = 3
    detect_width: int = 320
    detect_scale_factor: float = 1.15
    max_faces: int = 4
    min_face_size: int = 48
    margin: float = 0.15
    align: bool = True
    score_threshold: float = 0.5
    track_iou: float = 0.3
    track_expiry_s: float = 1.0
    track_min_hits: int = 3
    smoothing: float = 0.0
    flip_tta: bool = False
    backend: str = "auto"
    num_threads: int | None = 1
    delegates: tuple[str, ...] = ()


@dataclass(frozen=True)
class VoiceOptions:
    """Voice activity, windowing and voice emotion classification.

    Attributes:
        enabled: Run the voice path.
        model_path: Voice model (``None``: the shipped int8 default).
        window_s: Analysis window length in seconds.
        hop_s: Hop between windows in seconds.
        vad: ``"energy"`` (numpy energy + spectral gate), ``"none"``, or a registered plugin.
        vad_threshold_db: Energy threshold above the noise floor.
        min_speech_s: Shortest speech that counts.
        hangover_s: Silence that ends a speech segment.
        backend: Interpreter backend.
        num_threads: Interpreter threads.
        delegates: Delegate library paths.
    """

    enabled: bool = True
    model_path: str | None = None
    window_s: float = 2.0
    hop_s: float = 0.5
    vad: str = "energy"
    vad_threshold_db: float = 12.0
    min_speech_s: float = 0.3
    hangover_s: float = 0.5
    backend: str = "auto"
    num_threads: int | None = 1
    delegates: tuple[str, ...] = ()


@dataclass(frozen=True)
class TextOptions:
    """Text emotion classification of text pushed by the app.

    Attributes:
        enabled: Accept ``push_text``.
        model_path: Text model (``None``: the shipped int8 default).
        backend: Interpreter backend.
        num_threads: Interpreter threads.
    """

    enabled: bool = True
    model_path: str | None = None
    backend: str = "auto"
    num_threads: int | None = 1


def _d(**kw: float) -> Any:
    return field(default_factory=lambda: dict(kw))


@dataclass(frozen=True)
class FusionOptions:
    """How modalities are fused and smoothed.

    Attributes:
        strategy: ``"late"`` (default: calibrated, reliability-weighted late fusion) or ``"learned"``
            (the shipped int8 fusion head whenever two or more modalities contribute, late fusion for a
            single one). Both obey the conflict rule (:func:`affectlite.fusion.limit_to_evidence`). The
            head was trained on the outputs of the shipped face, voice and text models on data they never
            saw (voice: leave-one-corpus-out outputs); with your own models use ``"late"`` or retrain it
            (``affectlite train fusion``); a model other than the ones recorded in the head's card is named
            in a warning at start. On held-out pseudo-pairs with out-of-domain voice, late fusion scored mean
            macro-F1 0.750 over the multimodal subsets against 0.743 for the head (``docs/fusion.md``), so
            late fusion is the default.
        weights: Base weight per modality.
        max_age_s: Evidence older than this is stale and dropped (per modality).
        half_life_s: Age decay half-life per modality.
        unknown_threshold: Fused confidence below this gives label ``"unknown"``.
        smoothing: ``"ema"``, ``"hmm"`` or ``"none"`` (per face track).
        smoothing_alpha: EMA factor (weight of the newest result).
        voice_target: ``"primary"`` (largest, most central face) or ``"all"`` faces.
    """

    strategy: str = "late"
    weights: dict[str, float] = _d(face=1.0, voice=0.8, text=0.6)
    max_age_s: dict[str, float] = _d(face=1.0, voice=4.0, text=15.0)
    half_life_s: dict[str, float] = _d(face=0.5, voice=2.0, text=6.0)
    unknown_threshold: float = 0.35
    smoothing: str = "ema"
    smoothing_alpha: float = 0.4
    voice_target: str = "primary"


@dataclass(frozen=True)
class QueueOptions:
    """Bounded queue sizes between threads (drop-oldest when full; drops are counted).

    Attributes:
        frames: Frames waiting for the face thread (1 = newest frame wins).
        audio: Audio chunks waiting for the voice thread.
        results: Results waiting for the dispatch thread.
        text: Texts waiting to be classified.
    """

    frames: int = 1
    audio: int = 50
    results: int = 64
    text: int = 16


@dataclass(frozen=True)
class PrivacyOptions:
    """Privacy guarantees.

    Attributes:
        offline_guard: Block and report non-loopback network connections while the pipeline runs.
        allow_loopback: Let the offline guard allow 127.0.0.1/::1 (local dashboards).
        deployment_context: ``"public"``, ``"kiosk"``, ``"retail"``, ``"robot"``, ``"home"``, ``"research"``,
            ``"healthcare"``, ``"workplace"`` or ``"education"``.
        declared_purpose: Medical or safety purpose, required for ``workplace``/``education``
            (EU AI Act Art. 5(1)(f)).
        require_consent: Refuse to start without a consent token.
    """

    offline_guard: bool = True
    allow_loopback: bool = True
    deployment_context: str = "public"
    declared_purpose: str | None = None
    require_consent: bool = False


_T = TypeVar("_T")


def _build(cls: type[_T], data: Mapping[str, Any], where: str) -> _T:
    names = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(names)}")
    kw = dict(data)
    for k, v in kw.items():
        if k == "delegates" and isinstance(v, list):
            kw[k] = tuple(v)
    return cls(**kw)


@dataclass(frozen=True)
class PipelineOptions:
    """All options of an :class:`affectlite.EmotionPipeline`.

    Attributes:
        camera: Camera source options.
        audio: Microphone source options.
        face: Face path options.
        voice: Voice path options.
        text: Text path options.
        fusion: Fusion options.
        queues: Queue sizes.
        privacy: Privacy options.
        profile: Name of the profile these options came from (informational).
    """

    camera: CameraOptions = field(default_factory=CameraOptions)
    audio: AudioOptions = field(default_factory=AudioOptions)
    face: FaceOptions = field(default_factory=FaceOptions)
    voice: VoiceOptions = field(default_factory=VoiceOptions)
    text: TextOptions = field(default_factory=TextOptions)
    fusion: FusionOptions = field(default_factory=FusionOptions)
    queues: QueueOptions = field(default_factory=QueueOptions)
    privacy: PrivacyOptions = field(default_factory=PrivacyOptions)
    profile: str = "default"

    SECTIONS = ("camera", "audio", "face", "voice", "text", "fusion", "queues", "privacy")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "options") -> PipelineOptions:
        """Build options from a nested dict (a profile's sections); unknown keys are errors."""
        kw: dict[str, Any] = {}
        for f in fields(cls):
            if f.name == "profile":
                continue
            sec = data.get(f.name)
            if sec is None:
                continue
            if not isinstance(sec, Mapping):
                raise ConfigError(f"{where}: section '{f.name}' must be a mapping, got {type(sec).__name__}")
            kw[f.name] = _build(_SECTION_TYPES[f.name], sec, f"{where}: {f.name}")
        unknown = sorted(set(data) - set(cls.SECTIONS) - {"profile"})
        if unknown:
            raise ConfigError(f"{where}: unknown section(s) {', '.join(unknown)}; allowed: {', '.join(cls.SECTIONS)}")
        if "profile" in data:
            kw["profile"] = str(data["profile"])
        try:
            return cls(**kw)
        except TypeError as e:
            raise ConfigError(f"{where}: {e}") from None

    @classmethod
    def from_profile(cls, profile: str = "auto", overrides: Mapping[str, Any] | None = None,
                     **kw_overrides: Any) -> PipelineOptions:
        """Options from a device profile, with single keys overridden.

        Args:
            profile: ``"auto"`` (detect the device, lazily), a profile name such as ``"rpi5"``, or a YAML path.
            overrides: Dotted keys to override, e.g. ``{"camera.fps": 10, "face.detect_every": 2}``.
            **kw_overrides: The same with ``__`` for the dot: ``camera__fps=10``.

        Raises:
            ProfileError: the profile does not validate (names file, key path, value and allowed range).
        """
        from .profiles import load_profile  # lazy: profile detection never runs at import

        ov = dict(overrides or {})
        ov.update({k.replace("__", "."): v for k, v in kw_overrides.items()})
        prof = load_profile(profile, overrides=ov)
        prof.apply_env()  # environment quirks (e.g. OPENBLAS_CORETYPE on Jetson Nano) before OpenCV is imported
        opts: PipelineOptions = prof.to_options()
        return opts

    def model_paths(self, *, enabled_only: bool = False) -> dict[str, str | None]:
        """Modality -> configured model path (``None``: the shipped default).

        Args:
            enabled_only: Only the modalities that will run (face needs the camera, voice the audio input).
        """
        rows = (("face", self.face.model_path, self.camera.enabled and self.face.enabled),
                ("voice", self.voice.model_path, self.audio.enabled and self.voice.enabled),
                ("text", self.text.model_path, self.text.enabled))
        return {m: path for m, path, on in rows if on or not enabled_only}

    def replace(self, **changes: Any) -> PipelineOptions:
        """Copy with whole sections or dotted keys replaced: ``opts.replace(**{"camera.fps": 5})``."""
        sections: dict[str, Any] = {}
        top: dict[str, Any] = {}
        for k, v in changes.items():
            if "." in k:
                sec, key = k.split(".", 1)
                if sec not in self.SECTIONS:
                    raise ConfigError(f"unknown section {sec!r} in override {k!r}; allowed: {', '.join(self.SECTIONS)}")
                sections.setdefault(sec, {})[key] = v
            else:
                top[k] = v
        for sec, vals in sections.items():
            cur = top.get(sec, getattr(self, sec))
            valid = {f.name for f in fields(cur)}
            bad = sorted(set(vals) - valid)
            if bad:
                raise ConfigError(f"unknown key(s) {', '.join(sec + '.' + b for b in bad)}; "
                                  f"allowed in {sec}: {', '.join(sorted(valid))}")
            top[sec] = dataclasses.replace(cur, **vals)
        return dataclasses.replace(self, **top)


_SECTION_TYPES: dict[str, type[Any]] = {
    "camera": CameraOptions, "audio": AudioOptions, "face": FaceOptions, "voice": VoiceOptions,
    "text": TextOptions, "fusion": FusionOptions, "queues": QueueOptions, "privacy": PrivacyOptions,
}
