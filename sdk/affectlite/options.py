"""Options of every stage as frozen msgspec structs, and the model of a profile file.

Options mirror the sections of a device profile (``affectlite/profiles/*.yaml``): ``camera``, ``audio``,
``face``, ``voice``, ``text``, ``fusion``, ``queues``, ``privacy``. Every field has a safe default, so
``PipelineOptions()`` works on any machine with the shipped models. A field's type, range, choices and
description live on the field itself (``Annotated[float, Meta(gt=0, le=240, description=...)]``) and nowhere
else: profile validation, the JSON Schema (``affectlite profile schema``) and the docs table are all derived
from these structs. To add an option, add one field here.

Building options with a bad value raises :class:`~affectlite.errors.ConfigError` naming the key path, the
value and what is allowed (``FaceOptions(max_faces=0)``); so do :meth:`PipelineOptions.replace` and
:meth:`PipelineOptions.from_profile`. (msgspec, not pydantic: pydantic added ~110 ms to ``import affectlite``
on the 2-vCPU development machine, over the 100 ms budget; msgspec adds a few milliseconds.)

Imports go one way: :mod:`affectlite.profiles` uses this module, never the other way round;
:meth:`PipelineOptions.from_profile` reads files through :mod:`affectlite._profile_files` (YAML,
``extends``, overrides) and :mod:`affectlite.devices` (which profile fits this machine).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType, field

from . import _validation
from .errors import ConfigError

__all__ = [
    "AudioOptions",
    "CameraOptions",
    "FaceOptions",
    "FusionOptions",
    "InterpreterDefaults",
    "PipelineOptions",
    "PrivacyOptions",
    "ProfileDocument",
    "QueueOptions",
    "ServiceOptions",
    "TextOptions",
    "VoiceOptions",
    "json_schema",
    "profile_sections",
]

# ------------------------------------------------------------------------------------------ shared types

#: Text that is not empty or blank and has no NUL (paths, device names, plugin names).
Text = Annotated[str, Meta(pattern=r"^[^\x00]*[^\s\x00][^\x00]*$")]
#: Interpreter threads.
Threads = Annotated[int, Meta(ge=1, le=64)]
MODALITIES: tuple[str, ...] = ("face", "voice", "text")
#: A modality name as a mapping key (checked against the schema's enum by :mod:`affectlite._validation`).
Modality = Annotated[str, Meta(extra_json_schema={"enum": list(MODALITIES)})]
#: The backends shipped with affectlite (:data:`affectlite.interpreters.BACKENDS`; a test keeps them equal).
SHIPPED_BACKENDS: tuple[str, ...] = ("auto", "litert", "tflite_runtime", "tf_lite")
#: An interpreter backend: a shipped one, or one registered with ``affectlite.interpreters.register_backend``
#: (the schema lists the shipped ones; :mod:`affectlite._validation` also accepts registered ones).
Backend = Annotated[str, Meta(extra_json_schema={"enum": list(SHIPPED_BACKENDS)}, extra={"choices": "backends"})]
_BACKEND_DOC = ("Interpreter backend: auto (the first installed of litert, tflite_runtime, tf_lite), one of those, "
                "or a backend registered with affectlite.interpreters.register_backend.")


def _doc(text: str) -> Meta:
    return Meta(description=text)


def _range(lo: float, hi: float, doc: str, *, lo_open: bool = False, hi_open: bool = False) -> Meta:
    if lo_open:
        return Meta(gt=lo, lt=hi, description=doc) if hi_open else Meta(gt=lo, le=hi, description=doc)
    return Meta(ge=lo, lt=hi, description=doc) if hi_open else Meta(ge=lo, le=hi, description=doc)


def _per_modality(face: float, voice: float, text: float) -> dict[str, float]:
    return {"face": face, "voice": voice, "text": text}


class _Options(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Frozen, unknown keys refused; every value is checked when built (:class:`ConfigError` if bad)."""

    _path: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        _validation.check_fields(self)

    def _cross_checks(self) -> list[tuple[str, str]]:
        """``(key, problem)`` for rules that involve two fields (all fields are valid on their own)."""
        return []

    @classmethod
    def default(cls, name: str) -> Any:
        """The default value of a field.

        Raises:
            KeyError: no such field.
        """
        for f in _validation.fields_of(cls):
            if f.name == name:
                return f.default_factory() if f.default is msgspec.NODEFAULT else f.default
        raise KeyError(name)


# ------------------------------------------------------------------------------------------ sections


class CameraOptions(_Options, frozen=True, kw_only=True):
    """Where frames come from (profile section ``camera``)."""

    _path = ("camera",)
    enabled: Annotated[bool, _doc("Capture video at all.")] = True
    backend: Annotated[Literal["auto", "picamera2", "opencv", "images", "media", "synthetic", "none"], _doc(
        "auto (picamera2 on a Pi, else OpenCV), picamera2, opencv, images, media (a video file or stream "
        "decoded with PyAV, container timestamps; recordings analysed offline), synthetic or none.")] = "auto"
    device: Annotated[Annotated[int, Meta(ge=0, le=63)] | Text, _doc(
        "Camera index (0), /dev/videoN, a GStreamer pipeline string, an RTSP/HTTP URL, a video file or an image "
        "folder, depending on the backend.")] = 0
    width: Annotated[int, _range(16, 7680, "Capture width in pixels.")] = 640
    height: Annotated[int, _range(16, 4320, "Capture height in pixels.")] = 480
    fps: Annotated[float, _range(0, 240, "Requested frame rate.", lo_open=True)] = 15.0
    inference_width: Annotated[int, _range(0, 7680, "Width of the low-resolution stream used for inference "
                                           "(picamera2 lores); 0 means the capture size.")] = 0
    inference_height: Annotated[int, _range(0, 4320, "Height of that stream (0 with inference_width 0).")] = 0
    realtime: Annotated[bool, _doc("For file sources, pace frames at fps (true) or read as fast as possible.")] = True
    loop: Annotated[bool, _doc("For file sources, start again at the end instead of stopping.")] = False
    every_frame: Annotated[bool, _doc(
        "Never drop a frame: the reader waits for the face thread instead (for recordings analysed offline, with "
        "realtime false). Leave it off for live cameras: waiting there only moves the drops into the driver's "
        "buffers and adds latency.")] = False
    reconnect: Annotated[bool, _doc("Reopen a failing camera with exponential backoff instead of stopping.")] = True
    max_backoff_s: Annotated[float, _range(0, 3600, "Longest wait between reconnect attempts, in seconds.",
                                           lo_open=True)] = 5.0

    def _cross_checks(self) -> list[tuple[str, str]]:
        w, h, iw, ih = self.width, self.height, self.inference_width, self.inference_height
        if (iw == 0) != (ih == 0):
            return [("inference_width", f"inference size {iw}x{ih}: set both camera.inference_width and "
                     "camera.inference_height, or both to 0 (capture size)")]
        if iw > w or ih > h:
            return [("inference_width", f"inference size {iw}x{ih} is larger than the capture size {w}x{h}; "
                     "allowed: inference_width <= width, inference_height <= height")]
        return []


class AudioOptions(_Options, frozen=True, kw_only=True):
    """Where audio comes from (profile section ``audio``). Internally audio is always 16 kHz mono int16."""

    _path = ("audio",)
    enabled: Annotated[bool, _doc("Capture audio at all.")] = True
    backend: Annotated[Literal["auto", "pyaudio", "file", "media", "synthetic", "none"], _doc(
        "auto (pyaudio), pyaudio, file, media (the audio track of a video file or stream, decoded with "
        "PyAV), synthetic or none.")] = "auto"
    device: Annotated[Annotated[int, Meta(ge=0, le=255)] | Text | None, _doc(
        "Input device index or name substring (pyaudio), a WAV/FLAC path (file), or a media file or URL "
        "(media).")] = None
    sample_rate: Annotated[int, _range(8000, 192000, "Rate to open the device at (resampled to 16 kHz when it "
                                       "differs).")] = 16000
    chunk_ms: Annotated[int, _range(10, 1000, "Size of each read, in milliseconds.")] = 100
    realtime: Annotated[bool, _doc("For file sources, pace chunks in real time.")] = True
    loop: Annotated[bool, _doc("For file sources, start again at the end.")] = False
    reconnect: Annotated[bool, _doc("Reopen a failing microphone with backoff.")] = True
    max_backoff_s: Annotated[float, _range(0, 3600, "Longest wait between reconnect attempts, in seconds.",
                                           lo_open=True)] = 5.0


class FaceOptions(_Options, frozen=True, kw_only=True):
    """Face detection, tracking and expression classification (profile section ``face``)."""

    _path = ("face",)
    enabled: Annotated[bool, _doc("Run the face path.")] = True
    model_path: Annotated[Text | None, _doc("Expression model (null: the shipped int8 default).")] = None
    detector: Annotated[Literal["haar", "blazeface", "yunet"], _doc(
        "blazeface (default; falls back to haar with a warning when its model file is not installed), haar "
        "(OpenCV) or yunet.")] = "blazeface"
    detector_model: Annotated[Text | None, _doc("Model file for detectors that need one (YuNet ONNX; BlazeFace "
                                                "override).")] = None
    detect_every: Annotated[int, _range(1, 120, "Run the detector every Nth frame, track in between.")] = 3
    detect_width: Annotated[int, _range(0, 7680, "Downscale frames to this width for detection (0: no "
                                        "downscale).")] = 320
    small_face_every: Annotated[int, _range(
        1, 30, "Live video: the detector's extra search for faces too small for one whole-frame pass (BlazeFace "
        "tiles, the larger part of its cost) runs on every Nth detection pass, and on every pass while such a "
        "small face is tracked; a new small face is then found up to N - 1 detection passes later. 1: every "
        "pass. Still images (classify_image) always get the full search.")] = 3
    detect_scale_factor: Annotated[float, _range(
        1, 2, "Image-pyramid step of the Haar detector (1.1 searches finer and costs about a third more CPU than "
        "the default 1.15; 1.2 and above miss faces; other detectors ignore it).", lo_open=True)] = 1.15
    max_faces: Annotated[int, _range(1, 64, "Most faces classified per frame (largest first).")] = 4
    min_face_size: Annotated[int, _range(8, 4096, "Smallest face side in pixels of the original frame (default: "
                                         "the expression model's 48-pixel input; lower it for far-away faces at "
                                         "the cost of detection time).")] = 48
    margin: Annotated[float, _range(0, 1, "Extra crop margin around the box, as a fraction of its size.")] = 0.15
    align: Annotated[bool, _doc(
        "When the detector gives eye keypoints (BlazeFace, YuNet), rotate the crop so the eyes are level and size "
        "it from the inter-ocular distance, like the training crops; boxes without keypoints (Haar) are cropped "
        "from the box as before.")] = True
    score_threshold: Annotated[float, _range(0, 1, "Minimum detector score.")] = 0.5
    track_iou: Annotated[float, _range(0, 1, "IoU to match a detection to a track.", lo_open=True)] = 0.3
    track_expiry_s: Annotated[float, _range(0, 60, "A track unseen this long is dropped (its id is never reused).",
                                            lo_open=True)] = 1.0
    track_min_hits: Annotated[int, _range(
        1, 30, "Consecutive detection passes that confirm a new face before it is reported (1: at once). "
        "Suppresses sporadic false detections on background at the cost of a short delay: "
        "(track_min_hits - 1) * detect_every frames.")] = 3
    smoothing: Annotated[float, _range(0, 1, "EMA factor for per-track probabilities (0: none).",
                                       hi_open=True)] = 0.0
    flip_tta: Annotated[bool, _doc(
        "Also classify the mirrored crop and average the two (test-time augmentation). Doubles the expression "
        "model's time per face; the shipped model gains 65.31% -> 65.37% on FER2013 public_test, so leave it "
        "off on a Pi.")] = False
    backend: Annotated[Backend, _doc(_BACKEND_DOC)] = "auto"
    num_threads: Annotated[Threads | None, _doc("Interpreter threads (null: the interpreter's default).")] = 1
    delegates: Annotated[tuple[Text, ...], _doc("Delegate library paths (Edge TPU, GPU).")] = ()


class VoiceOptions(_Options, frozen=True, kw_only=True):
    """Voice activity, windowing and voice emotion classification (profile section ``voice``)."""

    _path = ("voice",)
    enabled: Annotated[bool, _doc("Run the voice path.")] = True
    model_path: Annotated[Text | None, _doc("Voice model (null: the shipped int8 default).")] = None
    window_s: Annotated[float, _range(0.25, 10, "Analysis window length in seconds.")] = 2.0
    hop_s: Annotated[float, _range(0.05, 10, "Hop between windows in seconds (at most window_s).")] = 0.5
    vad: Annotated[Text, _doc("Voice activity detector: auto (silero when its model is installed, else energy, "
                              "logged once), silero (Silero VAD v6 neural network in numpy), energy (numpy "
                              "energy + spectral gate), none, or a plugin registered with "
                              "affectlite.vad.register_vad.")] = "auto"
    vad_threshold_db: Annotated[float, _range(0, 60, "Energy VAD only: threshold above the noise floor, "
                                                     "in dB.")] = 12.0
    min_speech_s: Annotated[float, _range(0, 10, "Shortest speech that counts, in seconds.")] = 0.3
    hangover_s: Annotated[float, _range(0, 10, "Silence that ends a speech segment, in seconds.")] = 0.5
    backend: Annotated[Backend, _doc(_BACKEND_DOC)] = "auto"
    num_threads: Annotated[Threads | None, _doc("Interpreter threads (null: the interpreter's default).")] = 1
    delegates: Annotated[tuple[Text, ...], _doc("Delegate library paths.")] = ()

    def _cross_checks(self) -> list[tuple[str, str]]:
        if self.hop_s > self.window_s:
            return [("hop_s", f"{self.hop_s!r} is larger than voice.window_s ({self.window_s!r}); allowed: "
                     "voice.hop_s <= voice.window_s (windows would leave gaps)")]
        return []


class TextOptions(_Options, frozen=True, kw_only=True):
    """Text emotion classification of text pushed by the app (profile section ``text``)."""

    _path = ("text",)
    enabled: Annotated[bool, _doc("Accept push_text.")] = True
    model_path: Annotated[Text | None, _doc(
        "One text model for every text, whatever its language (null: the shipped models, routed by language).")] = None
    backend: Annotated[Backend, _doc(_BACKEND_DOC)] = "auto"
    num_threads: Annotated[Threads | None, _doc("Interpreter threads (null: the interpreter's default).")] = 1
    language: Annotated[Literal["auto", "en", "zh"], _doc(
        "auto (detect each text's language from its script: Latin -> en, Han -> zh, other scripts get a "
        "low-reliability uniform result) or en / zh (every text goes to that language's model).")] = "auto"
    commercial: Annotated[bool, _doc(
        "Use only models trained on commercially usable data: the GoEmotions-only English model (Apache-2.0 "
        "data). The default models (English conversation, Chinese) are research / non-commercial; with "
        "commercial: true, Chinese text gets a low-reliability uniform result (docs/text.md).")] = False


_Weight = Annotated[float, Meta(ge=0, le=10)]
_Age = Annotated[float, Meta(gt=0, le=3600)]


class FusionOptions(_Options, frozen=True, kw_only=True):
    """How modalities are fused and smoothed (profile section ``fusion``).

    A mapping given in part in a profile (``weights: {text: 0.1}``) keeps the defaults of the other modalities.
    """

    _path = ("fusion",)
    strategy: Annotated[Literal["late", "learned"], _doc(
        "learned (default: the shipped int8 fusion head whenever two or more modalities contribute) or late "
        "(calibrated, reliability-weighted late fusion). Both obey the conflict rule. The head was trained on the "
        "shipped default models' outputs: with your own models (or text.commercial) use late or retrain it "
        "(affectlite train fusion). Held-out study: macro-F1 0.771 for the head against 0.707 for tuned late "
        "fusion (0.757 / 0.677 with a second split; docs/fusion.md).")] = "learned"
    weights: Annotated[dict[Modality, _Weight], _doc("Base weight per modality.")] = field(
        default_factory=lambda: _per_modality(1.0, 0.8, 0.6))
    max_age_s: Annotated[dict[Modality, _Age], _doc(
        "Evidence older than this is stale and dropped (per modality, seconds).")] = field(
        default_factory=lambda: _per_modality(1.0, 4.0, 15.0))
    half_life_s: Annotated[dict[Modality, _Age], _doc("Age decay half-life per modality, in seconds.")] = field(
        default_factory=lambda: _per_modality(0.5, 2.0, 6.0))
    unknown_threshold: Annotated[float, _range(0, 1, "Fused confidence below this gives the label unknown.")] = 0.35
    smoothing: Annotated[Literal["ema", "hmm", "none"], _doc("Per face track: ema, hmm or none.")] = "ema"
    smoothing_alpha: Annotated[float, _range(0, 1, "EMA factor (weight of the newest result).", lo_open=True)] = 0.4
    voice_target: Annotated[Literal["primary", "all"], _doc(
        "Which faces the voice applies to: primary (largest, most central) or all.")] = "primary"


class QueueOptions(_Options, frozen=True, kw_only=True):
    """Bounded queue sizes between threads (profile section ``queues``; drop-oldest, drops are counted)."""

    _path = ("queues",)
    frames: Annotated[int, _range(1, 64, "Frames waiting for the face thread (1: the newest frame wins).")] = 1
    audio: Annotated[int, _range(1, 10000, "Audio chunks waiting for the voice thread.")] = 50
    results: Annotated[int, _range(1, 10000, "Results waiting for the dispatch thread.")] = 64
    text: Annotated[int, _range(1, 10000, "Texts waiting to be classified.")] = 16


class PrivacyOptions(_Options, frozen=True, kw_only=True):
    """Privacy guarantees (profile section ``privacy``)."""

    _path = ("privacy",)
    offline_guard: Annotated[bool, _doc("Block and report non-loopback network connections while the pipeline "
                                        "runs.")] = True
    allow_loopback: Annotated[bool, _doc("Let the offline guard allow 127.0.0.1/::1 (local dashboards).")] = True
    deployment_context: Annotated[Literal["public", "kiosk", "retail", "robot", "home", "research", "healthcare",
                                          "workplace", "education"], _doc(
        "Where the device runs; workplace and education need a declared medical or safety purpose (EU AI Act "
        "Art. 5(1)(f)).")] = "public"
    declared_purpose: Annotated[str | None, _doc(
        "Medical or safety purpose (\"medical: ...\" or \"safety: ...\"), required for workplace and education; "
        "empty or null: none declared.")] = None
    require_consent: Annotated[bool, _doc("Refuse to start without a consent token.")] = False


# ------------------------------------------------------------------------------------------ pipeline


class PipelineOptions(_Options, frozen=True, kw_only=True):
    """All options of an :class:`affectlite.EmotionPipeline`: one struct per profile section.

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

    SECTIONS: ClassVar[tuple[str, ...]] = ("camera", "audio", "face", "voice", "text", "fusion", "queues",
                                           "privacy")

    @classmethod
    def section_types(cls) -> dict[str, type[_Options]]:
        """Section name -> its struct (``{"camera": CameraOptions, ...}``)."""
        return {s: _SECTION_TYPES[s] for s in cls.SECTIONS}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "options") -> PipelineOptions:
        """Build options from a nested dict (a profile's sections); unknown keys are errors.

        Raises:
            ConfigError: a section, key or value is not allowed (every problem is listed).
        """
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where}: options must be a mapping of sections, got {type(data).__name__}")
        try:
            opts: PipelineOptions = _validation.build(cls, data)
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None
        return opts

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
        from . import _profile_files  # lazy: YAML and device detection load only when a profile is asked for

        ov = dict(overrides or {})
        ov.update({k.replace("__", "."): v for k, v in kw_overrides.items()})
        merged = _profile_files.load_merged(profile, ov, top_keys=ProfileDocument.__struct_fields__)
        data = ProfileDocument.check(merged.data, merged.origins, merged.name, merged.source)
        # environment quirks (e.g. OPENBLAS_CORETYPE on Jetson Nano) before OpenCV is imported
        _profile_files.apply_env({k: str(v) for k, v in data.get("env", {}).items()}, name=merged.name)
        return cls.from_dict({**profile_sections(data), "profile": merged.name}, where=merged.source)

    def model_paths(self, *, enabled_only: bool = False) -> dict[str, str | None]:
        """Modality -> configured model path (``None``: the shipped default).

        Args:
            enabled_only: Only the modalities that will run (face needs the camera, voice the audio input).
        """
        rows = (("face", self.face.model_path, self.camera.enabled and self.face.enabled),
                ("voice", self.voice.model_path, self.audio.enabled and self.voice.enabled),
                ("text", self.text.model_path or self._commercial_text_model(), self.text.enabled))
        return {m: path for m, path, on in rows if on or not enabled_only}

    def _commercial_text_model(self) -> str | None:
        """The GoEmotions-only model's path with ``text.commercial`` (what English text then goes to), else None."""
        if not self.text.commercial:
            return None
        from .text import COMMERCIAL_TEXT_MODEL

        return str(COMMERCIAL_TEXT_MODEL)

    def replace(self, **changes: Any) -> PipelineOptions:
        """Copy with whole sections or dotted keys replaced and checked: ``opts.replace(**{"camera.fps": 5})``.

        Raises:
            ConfigError: an unknown section or key, or a value that is not allowed.
        """
        top: dict[str, Any] = {s: getattr(self, s) for s in self.SECTIONS}
        top["profile"] = self.profile
        dotted: dict[str, dict[str, Any]] = {}
        for k, v in changes.items():
            sec, dot, key = k.partition(".")
            if sec not in top:
                raise ConfigError(f"unknown section {sec!r} in {k!r}; allowed: {', '.join(self.SECTIONS)}"
                                  + _validation.did_you_mean(sec, self.SECTIONS))
            if dot:
                dotted.setdefault(sec, {})[key] = v
            else:
                top[sec] = v
        for sec, vals in dotted.items():
            cur = top[sec]
            base = msgspec.structs.asdict(cur) if isinstance(cur, Struct) else dict(cur)
            top[sec] = _validation.build(_SECTION_TYPES[sec], {**base, **vals})
        return PipelineOptions(**top)


_SECTION_TYPES: dict[str, type[_Options]] = {
    "camera": CameraOptions, "audio": AudioOptions, "face": FaceOptions, "voice": VoiceOptions,
    "text": TextOptions, "fusion": FusionOptions, "queues": QueueOptions, "privacy": PrivacyOptions,
}


# ------------------------------------------------------------------------------------------ profile file


class _PerModelThreads(_Options, frozen=True, kw_only=True):
    face: Threads | UnsetType | None = UNSET
    voice: Threads | UnsetType | None = UNSET
    text: Threads | UnsetType | None = UNSET


class _PerModelBackend(_Options, frozen=True, kw_only=True):
    face: Backend | UnsetType = UNSET
    voice: Backend | UnsetType = UNSET
    text: Backend | UnsetType = UNSET


class _PerModelDelegates(_Options, frozen=True, kw_only=True):
    face: tuple[Text, ...] | UnsetType = UNSET
    voice: tuple[Text, ...] | UnsetType = UNSET


class InterpreterDefaults(_Options, frozen=True, kw_only=True):
    """Defaults for every model (profile section ``interpreter``); a key set in face/voice/text wins."""

    _path = ("interpreter",)
    backend: Annotated[Backend | _PerModelBackend, _doc(
        _BACKEND_DOC + " One value, or a mapping per model ({face: litert, voice: auto}).")] = "auto"
    num_threads: Annotated[Threads | _PerModelThreads | None, _doc(
        "Interpreter threads: one number, or one per model ({face: 2, voice: 1, text: 1}).")] = 1
    delegates: Annotated[tuple[Text, ...] | _PerModelDelegates, _doc(
        "Delegate library paths: a list, or one list per model ({face: [libedgetpu.so.1]}).")] = ()


class ServiceOptions(_Options, frozen=True, kw_only=True):
    """How the systemd unit runs (profile section ``service``)."""

    _path = ("service",)
    network: Annotated[Literal["none", "loopback"], _doc(
        "none (the unit gets no network at all) or loopback (127.0.0.1/::1 only, e.g. a local dashboard or MQTT "
        "broker).")] = "none"


EnvName = Annotated[str, Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
EnvValue = Annotated[str, Meta(pattern=r"^[^\n\r\x00]*$")] | int | float
ProfileName = Annotated[str, Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]


class ProfileDocument(_Options, frozen=True, kw_only=True):
    """An affectlite device profile: the option sections plus the profile-only keys.

    ``affectlite profile schema`` publishes this struct as JSON Schema; :mod:`affectlite.profiles` loads files
    (``extends``, overrides, file and line of every key) and validates the merged result with :meth:`check`.
    """

    camera: CameraOptions | UnsetType = UNSET
    audio: AudioOptions | UnsetType = UNSET
    face: FaceOptions | UnsetType = UNSET
    voice: VoiceOptions | UnsetType = UNSET
    text: TextOptions | UnsetType = UNSET
    fusion: FusionOptions | UnsetType = UNSET
    queues: QueueOptions | UnsetType = UNSET
    privacy: PrivacyOptions | UnsetType = UNSET
    name: Annotated[ProfileName, _doc("Profile name; default: the file name without .yaml.")] | UnsetType = UNSET
    description: Annotated[Text, _doc("What the profile is for (informational).")] | UnsetType = UNSET
    extends: Annotated[Text, _doc(
        "Another profile (a name such as rpi5, or a path relative to this file) whose values this one starts "
        "from; mappings merge key by key.")] | UnsetType = UNSET
    status: Annotated[Literal["supported", "experimental", "unsupported"], _doc(
        "supported (default), experimental or unsupported; affectlite doctor prints it with status_note.")
    ] | UnsetType = UNSET
    status_note: Annotated[Text, _doc("Why the status is what it is.")] | UnsetType = UNSET
    env: Annotated[dict[EnvName, EnvValue], _doc(
        "Environment quirks (OPENBLAS_CORETYPE: ARMV8), set before OpenCV is imported without replacing values "
        "the user already set; rendered into the systemd unit's EnvironmentFile. Values are single-line strings "
        "or numbers.")] | UnsetType = UNSET
    interpreter: InterpreterDefaults | UnsetType = UNSET
    service: ServiceOptions | UnsetType = UNSET

    #: Keys of a profile that are not option sections.
    PROFILE_ONLY_KEYS: ClassVar[tuple[str, ...]] = ("name", "description", "extends", "status", "status_note",
                                                    "env", "interpreter", "service")

    @classmethod
    def check(cls, data: Any, origins: Mapping[tuple[str, ...], str], name: str, source: str) -> dict[str, Any]:
        """Validate a merged profile; every problem is reported at once with its file and line.

        Args:
            data: The merged profile (``extends`` resolved, overrides applied).
            origins: Key path -> ``file:line`` (or ``override 'key'``) where it was set.
            name: Profile name for the message.
            source: The leaf file, for problems without a better location.

        Returns:
            The profile as plain data: the keys it sets, values normalised (numbers for number keys, lists,
            ``env`` values as text).

        Raises:
            ProfileError: the profile does not validate.
        """
        found = _validation.Problems(origins, source)
        clean = _validation.drop_bad_keys(data, found)
        problems: list[_validation.Problem] = []
        doc = _validation.check_data(cls, clean, (), problems)
        for p in problems:
            found.add(p.path, _validation.message(p))
        if found.items or not isinstance(doc, ProfileDocument):
            found.fail(name)
        out: dict[str, Any] = {}
        for key, given in clean.items():
            val = getattr(doc, key)
            if isinstance(val, Struct) and key in PipelineOptions.SECTIONS:
                out[key] = {k: msgspec.to_builtins(getattr(val, k)) for k in given}
            else:
                out[key] = msgspec.to_builtins(val)
        if "env" in out:
            out["env"] = {k: str(v) for k, v in out["env"].items()}
        if out.get("status", "supported") != "supported":
            logging.getLogger("affectlite.profiles").warning("profile %s is %s: %s", name, out["status"],
                                                             out.get("status_note", ""))
        return out


def profile_sections(data: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The option sections of validated profile data, as :meth:`PipelineOptions.from_dict` takes them.

    ``interpreter`` defaults are filled into face/voice/text where those do not set the key, and mappings
    given in part (``fusion.weights: {text: 0.1}``) are completed with their defaults.
    """
    secs = {s: dict(data[s]) for s in PipelineOptions.SECTIONS if isinstance(data.get(s), Mapping)}
    for k, v in secs.get("fusion", {}).items():
        if isinstance(v, Mapping):
            secs["fusion"][k] = {**FusionOptions.default(k), **v}
    interp = data.get("interpreter", {})
    for key, val in interp.items() if isinstance(interp, Mapping) else ():
        for model in MODALITIES:
            if key not in _SECTION_TYPES[model].__struct_fields__:
                continue
            if isinstance(val, Mapping):
                if model not in val:
                    continue
                val_for_model = val[model]
            else:
                val_for_model = val
            secs.setdefault(model, {}).setdefault(key, val_for_model)
    return secs


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a profile file, generated from :class:`ProfileDocument`."""
    schema: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(_validation.schema_of(ProfileDocument)))
    defs = schema["$defs"]
    root = defs.pop("ProfileDocument")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "$comment": "generated by `affectlite profile schema` from affectlite.options; do not edit",
            **root, "title": "affectlite device profile", "$defs": defs}
