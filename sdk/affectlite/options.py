"""Options of every stage as frozen pydantic models, and the model of a profile file.

Options mirror the sections of a device profile (``affectlite/profiles/*.yaml``): ``camera``, ``audio``,
``face``, ``voice``, ``text``, ``fusion``, ``queues``, ``privacy``. Every field has a safe default, so
``PipelineOptions()`` works on any machine with the shipped models. A field's type, range, choices and
description live on the field itself and nowhere else: profile validation, the JSON Schema
(``affectlite profile schema``) and the docs table are all derived from these models. To add an option, add
one field here.

Building a model with a bad value raises :class:`~affectlite.errors.ConfigError` naming the key path, the
value and what is allowed (``FaceOptions(max_faces=0)``); so do :meth:`PipelineOptions.replace` and
:meth:`PipelineOptions.from_profile`.

Imports go one way: :mod:`affectlite.profiles` uses this module, never the other way round;
:meth:`PipelineOptions.from_profile` reads files through :mod:`affectlite._profile_files` (YAML,
``extends``, overrides) and :mod:`affectlite.devices` (which profile fits this machine).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

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
]

# ------------------------------------------------------------------------------------------ shared types

#: Text that is not empty or blank and has no NUL (paths, device names, plugin names).
Text = Annotated[str, Strict(), StringConstraints(pattern=r"^[^\x00]*[^\s\x00][^\x00]*$")]
#: Interpreter threads.
Threads = Annotated[int, Strict(), Field(ge=1, le=64)]
MODALITIES: tuple[str, ...] = ("face", "voice", "text")


def _check_modality(v: str) -> str:
    if v not in MODALITIES:
        raise PydanticCustomError("enum", "not a modality", {"choices": list(MODALITIES)})
    return v


#: A modality name as a mapping key (typed ``str`` so that ``dict[str, float]`` code keeps working).
Modality = Annotated[str, Strict(), AfterValidator(_check_modality),
                     WithJsonSchema({"type": "string", "enum": list(MODALITIES)})]
#: The backends shipped with affectlite (:data:`affectlite.interpreters.BACKENDS`; a test keeps them equal).
SHIPPED_BACKENDS: tuple[str, ...] = ("auto", "litert", "tflite_runtime", "tf_lite")


def _check_backend(v: str) -> str:
    if v in SHIPPED_BACKENDS:
        return v
    from .interpreters import describe_backends  # light: probes with find_spec, imports nothing heavy

    choices = ("auto", *(b.name for b in describe_backends()))
    if v not in choices:
        raise PydanticCustomError("enum", "not a known backend", {"choices": list(choices)})
    return v


#: An interpreter backend: a shipped one, or one registered with ``affectlite.interpreters.register_backend``.
Backend = Annotated[str, Strict(), AfterValidator(_check_backend),
                    Field(json_schema_extra={"enum": list(SHIPPED_BACKENDS)})]
_BACKEND_DOC = ("Interpreter backend: auto (the first installed of litert, tflite_runtime, tf_lite), one of those, "
                "or a backend registered with affectlite.interpreters.register_backend.")


def _seconds(default: float, doc: str, hi: float = 3600) -> Any:
    return Field(default, gt=0, le=hi, strict=True, allow_inf_nan=False, description=doc)


def _number(default: float, lo: float, hi: float, doc: str, *, lo_open: bool = False, hi_open: bool = False) -> Any:
    return Field(default, strict=True, allow_inf_nan=False, description=doc, gt=lo if lo_open else None,
                 ge=None if lo_open else lo, lt=hi if hi_open else None, le=None if hi_open else hi)


def _integer(default: int, lo: int, hi: int, doc: str) -> Any:
    return Field(default, ge=lo, le=hi, strict=True, description=doc)


def _flag(default: bool, doc: str) -> Any:
    return Field(default, strict=True, description=doc)


def _per_modality(face: float, voice: float, text: float) -> dict[str, float]:
    return {"face": face, "voice": voice, "text": text}


def _cross(key: str, message: str) -> PydanticCustomError:
    """A problem that involves two fields, reported at ``key`` (see :mod:`affectlite._validation`)."""
    return PydanticCustomError("cross_field", "{message}", {"key": key, "message": message})


class _Model(BaseModel):
    """Frozen, unknown keys refused; a bad value raises :class:`ConfigError` with the project's messages."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=False)
    _path: ClassVar[tuple[str, ...]] = ()

    def __init__(self, /, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as e:
            probs = _validation.problems(e, type(self), prefix=self._path)
            n = len(probs)
            raise ConfigError(f"invalid {type(self).__name__} ({n} problem{'s' if n != 1 else ''}):\n  "
                              + "\n  ".join(probs)) from None

    # Only a direct call translates errors: nested models validate inside their parent, whose error then
    # names the whole key path (pydantic's own marker, as on BaseModel.__init__ and RootModel.__init__).
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------------------ sections


class CameraOptions(_Model):
    """Where frames come from (profile section ``camera``)."""

    _path = ("camera",)
    enabled: bool = _flag(True, "Capture video at all.")
    backend: Literal["auto", "picamera2", "opencv", "images", "synthetic", "none"] = Field(
        "auto", description="auto (picamera2 on a Pi, else OpenCV), picamera2, opencv, images, "
        "synthetic or none.")
    device: Annotated[int, Strict(), Field(ge=0, le=63)] | Text = Field(
        0, description="Camera index (0), /dev/videoN, a GStreamer pipeline string, an RTSP/HTTP URL, a video "
        "file or an image folder, depending on the backend.")
    width: int = _integer(640, 16, 7680, "Capture width in pixels.")
    height: int = _integer(480, 16, 4320, "Capture height in pixels.")
    fps: float = _number(15.0, 0, 240, "Requested frame rate.", lo_open=True)
    inference_width: int = _integer(0, 0, 7680, "Width of the low-resolution stream used for inference "
                                    "(picamera2 lores); 0 means the capture size.")
    inference_height: int = _integer(0, 0, 4320, "Height of that stream (0 with inference_width 0).")
    realtime: bool = _flag(True, "For file sources, pace frames at fps (true) or read as fast as possible.")
    loop: bool = _flag(False, "For file sources, start again at the end instead of stopping.")
    every_frame: bool = _flag(False, "Never drop a frame: the reader waits for the face thread instead (for "
                              "recordings analysed offline, with realtime false). Leave it off for live cameras: "
                              "waiting there only moves the drops into the driver's buffers and adds latency.")
    reconnect: bool = _flag(True, "Reopen a failing camera with exponential backoff instead of stopping.")
    max_backoff_s: float = _seconds(5.0, "Longest wait between reconnect attempts, in seconds.")

    @model_validator(mode="after")
    def _inference_size(self) -> CameraOptions:
        w, h, iw, ih = self.width, self.height, self.inference_width, self.inference_height
        if (iw == 0) != (ih == 0):
            raise _cross("inference_width", f"inference size {iw}x{ih}: set both camera.inference_width and "
                         "camera.inference_height, or both to 0 (capture size)")
        if iw > w or ih > h:
            raise _cross("inference_width", f"inference size {iw}x{ih} is larger than the capture size {w}x{h}; "
                         "allowed: inference_width <= width, inference_height <= height")
        return self


class AudioOptions(_Model):
    """Where audio comes from (profile section ``audio``). Internally audio is always 16 kHz mono int16."""

    _path = ("audio",)
    enabled: bool = _flag(True, "Capture audio at all.")
    backend: Literal["auto", "pyaudio", "file", "synthetic", "none"] = Field(
        "auto", description="auto (pyaudio), pyaudio, file, synthetic or none.")
    device: Annotated[int, Strict(), Field(ge=0, le=255)] | Text | None = Field(
        None, description="Input device index or name substring (pyaudio), or a WAV/FLAC path (file).")
    sample_rate: int = _integer(16000, 8000, 192000, "Rate to open the device at (resampled to 16 kHz when it "
                                "differs).")
    chunk_ms: int = _integer(100, 10, 1000, "Size of each read, in milliseconds.")
    realtime: bool = _flag(True, "For file sources, pace chunks in real time.")
    loop: bool = _flag(False, "For file sources, start again at the end.")
    reconnect: bool = _flag(True, "Reopen a failing microphone with backoff.")
    max_backoff_s: float = _seconds(5.0, "Longest wait between reconnect attempts, in seconds.")


class FaceOptions(_Model):
    """Face detection, tracking and expression classification (profile section ``face``)."""

    _path = ("face",)
    enabled: bool = _flag(True, "Run the face path.")
    model_path: Text | None = Field(None, description="Expression model (null: the shipped int8 default).")
    detector: Literal["haar", "blazeface", "yunet"] = Field(
        "blazeface", description="blazeface (default; falls back to haar with a warning when its model file is "
        "not installed), haar (OpenCV) or yunet.")
    detector_model: Text | None = Field(None, description="Model file for detectors that need one (YuNet ONNX; "
                                        "BlazeFace override).")
    detect_every: int = _integer(3, 1, 120, "Run the detector every Nth frame, track in between.")
    detect_width: int = _integer(320, 0, 7680, "Downscale frames to this width for detection (0: no downscale).")
    detect_scale_factor: float = _number(
        1.15, 1, 2, "Image-pyramid step of the Haar detector (1.1 searches finer and costs about a third more CPU "
        "than the default 1.15; 1.2 and above miss faces; other detectors ignore it).", lo_open=True)
    max_faces: int = _integer(4, 1, 64, "Most faces classified per frame (largest first).")
    min_face_size: int = _integer(48, 8, 4096, "Smallest face side in pixels of the original frame (default: the "
                                  "expression model's 48-pixel input; lower it for far-away faces at the cost of "
                                  "detection time).")
    margin: float = _number(0.15, 0, 1, "Extra crop margin around the box, as a fraction of its size.")
    align: bool = _flag(True, "When the detector gives eye keypoints (BlazeFace, YuNet), rotate the crop so the "
                        "eyes are level and size it from the inter-ocular distance, like the training crops; boxes "
                        "without keypoints (Haar) are cropped from the box as before.")
    score_threshold: float = _number(0.5, 0, 1, "Minimum detector score.")
    track_iou: float = _number(0.3, 0, 1, "IoU to match a detection to a track.", lo_open=True)
    track_expiry_s: float = _seconds(1.0, "A track unseen this long is dropped (its id is never reused).", hi=60)
    track_min_hits: int = _integer(3, 1, 30, "Consecutive detection passes that confirm a new face before it is "
                                   "reported (1: at once). Suppresses sporadic false detections on background at "
                                   "the cost of a short delay: (track_min_hits - 1) * detect_every frames.")
    smoothing: float = _number(0.0, 0, 1, "EMA factor for per-track probabilities (0: none).", hi_open=True)
    flip_tta: bool = _flag(False, "Also classify the mirrored crop and average the two (test-time augmentation). "
                           "Doubles the expression model's time per face; the shipped model gains 65.31% -> 65.37% "
                           "on FER2013 public_test, so leave it off on a Pi.")
    backend: Backend = Field("auto", description=_BACKEND_DOC)
    num_threads: Threads | None = Field(1, description="Interpreter threads (null: the interpreter's default).")
    delegates: tuple[Text, ...] = Field((), description="Delegate library paths (Edge TPU, GPU).")


class VoiceOptions(_Model):
    """Voice activity, windowing and voice emotion classification (profile section ``voice``)."""

    _path = ("voice",)
    enabled: bool = _flag(True, "Run the voice path.")
    model_path: Text | None = Field(None, description="Voice model (null: the shipped int8 default).")
    window_s: float = _number(2.0, 0.25, 10, "Analysis window length in seconds.")
    hop_s: float = _number(0.5, 0.05, 10, "Hop between windows in seconds (at most window_s).")
    vad: Text = Field("energy", description="Voice activity detector: energy (numpy energy + spectral gate), "
                      "none, or a plugin registered with affectlite.vad.register_vad.")
    vad_threshold_db: float = _number(12.0, 0, 60, "Energy threshold above the noise floor, in dB.")
    min_speech_s: float = _number(0.3, 0, 10, "Shortest speech that counts, in seconds.")
    hangover_s: float = _number(0.5, 0, 10, "Silence that ends a speech segment, in seconds.")
    backend: Backend = Field("auto", description=_BACKEND_DOC)
    num_threads: Threads | None = Field(1, description="Interpreter threads (null: the interpreter's default).")
    delegates: tuple[Text, ...] = Field((), description="Delegate library paths.")

    @model_validator(mode="after")
    def _hop_fits_window(self) -> VoiceOptions:
        if self.hop_s > self.window_s:
            raise _cross("hop_s", f"{self.hop_s!r} is larger than voice.window_s ({self.window_s!r}); allowed: "
                         "voice.hop_s <= voice.window_s (windows would leave gaps)")
        return self


class TextOptions(_Model):
    """Text emotion classification of text pushed by the app (profile section ``text``)."""

    _path = ("text",)
    enabled: bool = _flag(True, "Accept push_text.")
    model_path: Text | None = Field(None, description="Text model (null: the shipped int8 default).")
    backend: Backend = Field("auto", description=_BACKEND_DOC)
    num_threads: Threads | None = Field(1, description="Interpreter threads (null: the interpreter's default).")


_Weight = Annotated[float, Strict(), Field(ge=0, le=10, allow_inf_nan=False)]
_Age = Annotated[float, Strict(), Field(gt=0, le=3600, allow_inf_nan=False)]


class FusionOptions(_Model):
    """How modalities are fused and smoothed (profile section ``fusion``).

    A mapping given in part in a profile (``weights: {text: 0.1}``) keeps the defaults of the other modalities.
    """

    _path = ("fusion",)
    strategy: Literal["late", "learned"] = Field(
        "late", description="late (default: calibrated, reliability-weighted late fusion) or learned "
        "(the shipped int8 fusion head whenever two or more modalities contribute). Both obey the conflict rule. "
        "The head was trained on the shipped models' outputs: with your own models use late or retrain it "
        "(affectlite train fusion). Late fusion scored macro-F1 0.750 against 0.743 for the head (docs/fusion.md).")
    weights: dict[Modality, _Weight] = Field(
        default_factory=lambda: _per_modality(1.0, 0.8, 0.6), description="Base weight per modality.")
    max_age_s: dict[Modality, _Age] = Field(
        default_factory=lambda: _per_modality(1.0, 4.0, 15.0),
        description="Evidence older than this is stale and dropped (per modality, seconds).")
    half_life_s: dict[Modality, _Age] = Field(
        default_factory=lambda: _per_modality(0.5, 2.0, 6.0),
        description="Age decay half-life per modality, in seconds.")
    unknown_threshold: float = _number(0.35, 0, 1, "Fused confidence below this gives the label unknown.")
    smoothing: Literal["ema", "hmm", "none"] = Field("ema",
                                                    description="Per face track: ema, hmm or none.")
    smoothing_alpha: float = _number(0.4, 0, 1, "EMA factor (weight of the newest result).", lo_open=True)
    voice_target: Literal["primary", "all"] = Field(
        "primary", description="Which faces the voice applies to: primary (largest, most central) "
                                            "or all.")


class QueueOptions(_Model):
    """Bounded queue sizes between threads (profile section ``queues``; drop-oldest, drops are counted)."""

    _path = ("queues",)
    frames: int = _integer(1, 1, 64, "Frames waiting for the face thread (1: the newest frame wins).")
    audio: int = _integer(50, 1, 10000, "Audio chunks waiting for the voice thread.")
    results: int = _integer(64, 1, 10000, "Results waiting for the dispatch thread.")
    text: int = _integer(16, 1, 10000, "Texts waiting to be classified.")


class PrivacyOptions(_Model):
    """Privacy guarantees (profile section ``privacy``)."""

    _path = ("privacy",)
    offline_guard: bool = _flag(True, "Block and report non-loopback network connections while the pipeline runs.")
    allow_loopback: bool = _flag(True, "Let the offline guard allow 127.0.0.1/::1 (local dashboards).")
    deployment_context: Literal["public", "kiosk", "retail", "robot", "home", "research", "healthcare",
                                "workplace", "education"] = Field(
        "public", description="Where the device runs; workplace and education need a declared "
        "medical or safety purpose (EU AI Act Art. 5(1)(f)).")
    declared_purpose: Annotated[str, Strict()] | None = Field(
        None, description="Medical or safety purpose (\"medical: ...\" or \"safety: ...\"), required for workplace "
        "and education; empty or null: none declared.")
    require_consent: bool = _flag(False, "Refuse to start without a consent token.")


# ------------------------------------------------------------------------------------------ pipeline


class PipelineOptions(_Model):
    """All options of an :class:`affectlite.EmotionPipeline`: one model per profile section.

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

    camera: CameraOptions = Field(default_factory=CameraOptions)
    audio: AudioOptions = Field(default_factory=AudioOptions)
    face: FaceOptions = Field(default_factory=FaceOptions)
    voice: VoiceOptions = Field(default_factory=VoiceOptions)
    text: TextOptions = Field(default_factory=TextOptions)
    fusion: FusionOptions = Field(default_factory=FusionOptions)
    queues: QueueOptions = Field(default_factory=QueueOptions)
    privacy: PrivacyOptions = Field(default_factory=PrivacyOptions)
    profile: str = "default"

    SECTIONS: ClassVar[tuple[str, ...]] = ("camera", "audio", "face", "voice", "text", "fusion", "queues",
                                           "privacy")

    @classmethod
    def section_types(cls) -> dict[str, type[BaseModel]]:
        """Section name -> its model class (``{"camera": CameraOptions, ...}``)."""
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
            return cls.model_validate(dict(data))
        except ValidationError as e:
            probs = _validation.problems(e, cls)
            n = len(probs)
            raise ConfigError(f"{where}: invalid options ({n} problem{'s' if n != 1 else ''}):\n  "
                              + "\n  ".join(probs)) from None

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
        merged = _profile_files.load_merged(profile, ov, top_keys=tuple(ProfileDocument.model_fields))
        doc = ProfileDocument.check(merged.data, merged.origins, merged.name, merged.source)
        # environment quirks (e.g. OPENBLAS_CORETYPE on Jetson Nano) before OpenCV is imported
        _profile_files.apply_env(doc.env_vars(), name=merged.name)
        return doc.to_options(merged.name, where=merged.source)

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
        """Copy with whole sections or dotted keys replaced and validated: ``opts.replace(**{"camera.fps": 5})``.

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
            base = cur.model_dump() if isinstance(cur, BaseModel) else dict(cur)
            top[sec] = _SECTION_TYPES[sec](**{**base, **vals})
        return PipelineOptions(**top)


_SECTION_TYPES: dict[str, type[BaseModel]] = {
    "camera": CameraOptions, "audio": AudioOptions, "face": FaceOptions, "voice": VoiceOptions,
    "text": TextOptions, "fusion": FusionOptions, "queues": QueueOptions, "privacy": PrivacyOptions,
}


# ------------------------------------------------------------------------------------------ profile file


class _PerModelThreads(_Model):
    face: Threads | None = None
    voice: Threads | None = None
    text: Threads | None = None


class _PerModelBackend(_Model):
    face: Backend | None = None
    voice: Backend | None = None
    text: Backend | None = None


class _PerModelDelegates(_Model):
    face: tuple[Text, ...] | None = None
    voice: tuple[Text, ...] | None = None


class InterpreterDefaults(_Model):
    """Defaults for every model (profile section ``interpreter``); a key set in face/voice/text wins."""

    _path = ("interpreter",)
    backend: Backend | _PerModelBackend = Field("auto", description=_BACKEND_DOC + " One value, or a mapping "
                                                "per model ({face: litert, voice: auto}).")
    num_threads: Threads | _PerModelThreads | None = Field(
        1, description="Interpreter threads: one number, or one per model ({face: 2, voice: 1, text: 1}).")
    delegates: tuple[Text, ...] | _PerModelDelegates = Field(
        (), description="Delegate library paths: a list, or one list per model ({face: [libedgetpu.so.1]}).")


class ServiceOptions(_Model):
    """How the systemd unit runs (profile section ``service``)."""

    _path = ("service",)
    network: Literal["none", "loopback"] = Field(
        "none", description="none (the unit gets no network at all) or loopback (127.0.0.1/::1 "
        "only, e.g. a local dashboard or MQTT broker).")


def _no_null(schema: dict[str, Any]) -> None:
    """In the JSON Schema, a key that may be left out but not set to null."""
    schema.update(schema.pop("anyOf")[0])
    schema.pop("default", None)


EnvName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
EnvValue = Annotated[str, Strict(), StringConstraints(pattern=r"^[^\n\r\x00]*$")] | Annotated[
    int, Strict()] | Annotated[float, Strict(), Field(allow_inf_nan=False)]
ProfileName = Annotated[str, Strict(), StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]


class ProfileDocument(_Model):
    """A device profile file: the option sections plus the profile-only keys.

    ``affectlite profile schema`` publishes this model as JSON Schema; :mod:`affectlite.profiles` loads files
    (``extends``, overrides, file and line of every key) and validates the merged result with :meth:`check`.
    """

    model_config = ConfigDict(title="affectlite device profile")
    camera: CameraOptions = Field(default_factory=CameraOptions)
    audio: AudioOptions = Field(default_factory=AudioOptions)
    face: FaceOptions = Field(default_factory=FaceOptions)
    voice: VoiceOptions = Field(default_factory=VoiceOptions)
    text: TextOptions = Field(default_factory=TextOptions)
    fusion: FusionOptions = Field(default_factory=FusionOptions)
    queues: QueueOptions = Field(default_factory=QueueOptions)
    privacy: PrivacyOptions = Field(default_factory=PrivacyOptions)
    name: ProfileName | None = Field(None, json_schema_extra=_no_null,
                                     description="Profile name; default: the file name without .yaml.")
    description: Text | None = Field(None, json_schema_extra=_no_null,
                                     description="What the profile is for (informational).")
    extends: Text | None = Field(
        None, json_schema_extra=_no_null, description="Another profile (a name such as rpi5, or a path relative "
        "to this file) whose values this one starts from; mappings merge key by key.")
    status: Literal["supported", "experimental", "unsupported"] = Field(
        "supported", description="affectlite doctor prints it with status_note.")
    status_note: Text | None = Field(None, json_schema_extra=_no_null, description="Why the status is what it is.")
    env: dict[EnvName, EnvValue] = Field(
        default_factory=dict, json_schema_extra={"additionalProperties": False},
        description="Environment quirks (OPENBLAS_CORETYPE: ARMV8), set before OpenCV is "
        "imported without replacing values the user already set; rendered into the systemd unit's "
        "EnvironmentFile. Values are single-line strings or numbers.")
    interpreter: InterpreterDefaults = Field(default_factory=InterpreterDefaults)
    service: ServiceOptions = Field(default_factory=ServiceOptions)

    #: Keys of a profile that are not option sections.
    PROFILE_ONLY_KEYS: ClassVar[tuple[str, ...]] = ("name", "description", "extends", "status", "status_note",
                                                    "env", "interpreter", "service")

    @field_validator("name", "description", "extends", "status_note", mode="before")
    @classmethod
    def _not_null(cls, v: Any) -> Any:
        if v is None:
            raise PydanticCustomError("not_null", "null is not allowed")
        return v

    @field_validator("env", mode="after")
    @classmethod
    def _env_as_text(cls, v: dict[str, str | int | float]) -> dict[str, str | int | float]:
        return {k: str(x) for k, x in v.items()}

    @classmethod
    def check(cls, data: Any, origins: Mapping[tuple[str, ...], str], name: str, source: str) -> ProfileDocument:
        """Validate a merged profile; every problem is reported at once with its file and line.

        Args:
            data: The merged profile (``extends`` resolved, overrides applied).
            origins: Key path -> ``file:line`` (or ``override 'key'``) where it was set.
            name: Profile name for the message.
            source: The leaf file, for problems without a better location.

        Raises:
            ProfileError: the profile does not validate.
        """
        found = _validation.Problems(origins, source)
        clean = _validation.drop_bad_keys(data, found)
        try:
            doc = cls.model_validate(clean)
        except ValidationError as e:
            found.add_validation_error(e, cls)
            found.fail(name)
        if found.items:  # keys that are not strings, dropped before validation
            found.fail(name)
        if doc.status != "supported":
            logging.getLogger("affectlite.profiles").warning("profile %s is %s: %s", name, doc.status,
                                                             doc.status_note or "")
        return doc

    def data(self) -> dict[str, Any]:
        """The profile as plain data: only the keys the file set, lists for tuples."""
        return self.model_dump(mode="json", exclude_unset=True, exclude={"extends"})

    def env_vars(self) -> dict[str, str]:
        """The ``env`` quirks as strings."""
        return {k: str(v) for k, v in self.env.items()}

    def sections(self) -> dict[str, dict[str, Any]]:
        """Option sections as set in the profile, with the ``interpreter`` defaults filled into face/voice/text
        where those do not set them and mappings given in part completed with their defaults."""
        secs: dict[str, dict[str, Any]] = {}
        for s in PipelineOptions.SECTIONS:
            if s in self.model_fields_set:
                sec: BaseModel = getattr(self, s)
                secs[s] = {k: getattr(sec, k) for k in sec.model_fields_set}
        fusion = secs.get("fusion")
        if fusion:
            defaults = FusionOptions()
            for k, v in fusion.items():
                if isinstance(v, dict):
                    fusion[k] = {**getattr(defaults, k), **v}
        if "interpreter" in self.model_fields_set:
            for key in self.interpreter.model_fields_set:
                val = getattr(self.interpreter, key)
                for model in ("face", "voice", "text"):
                    if key not in _SECTION_TYPES[model].model_fields:
                        continue
                    if isinstance(val, BaseModel):
                        if model not in val.model_fields_set:
                            continue
                        mv = getattr(val, model)
                    else:
                        mv = val
                    secs.setdefault(model, {}).setdefault(key, mv)
        return secs

    def to_options(self, name: str, where: str = "profile") -> PipelineOptions:
        """Build :class:`PipelineOptions` (defaults for keys the profile does not set).

        Raises:
            ConfigError: the options refused a value (cannot happen for a validated document).
        """
        return PipelineOptions.from_dict({**self.sections(), "profile": name}, where=where)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a profile file (draft 2020-12), generated from :class:`ProfileDocument`."""
    schema = ProfileDocument.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "$comment": "generated by `affectlite profile schema` from affectlite.options; do not edit",
            **schema}

