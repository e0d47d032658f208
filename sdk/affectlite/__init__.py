"""affectlite: on-device emotion recognition from camera, microphone and text.

Importing affectlite is light: numpy only. Interpreters, OpenCV, audio libraries and device-profile
detection load lazily when a pipeline or classifier is created; TensorFlow is never imported.
"""

from __future__ import annotations

from .card import ModelCard, TensorSpec, load_card, save_card
from .classifier import EmotionClassifier
from .errors import (
    AffectliteError,
    BackendError,
    BackendNotInstalledError,
    CalibrationError,
    ConfigError,
    ConsentRequiredError,
    ConversionError,
    DeploymentRefusedError,
    InputError,
    ModelCardError,
    ModelError,
    ModelLoadError,
    NetworkBlockedError,
    PipelineError,
    PrivacyError,
    ProfileError,
    SourceError,
    SourceUnavailableError,
)
from .labels import LABELS, UNKNOWN
from .model import Model
from .options import (
    AudioOptions,
    CameraOptions,
    FaceOptions,
    FusionOptions,
    PipelineOptions,
    PrivacyOptions,
    QueueOptions,
    TextOptions,
    VoiceOptions,
)
from .pipeline import EmotionPipeline, PipelineStats
from .results import Box, EmotionResult, FaceResult, SourceStatus, TextResult, VoiceResult

__version__ = "0.1.0"

__all__ = [
    "LABELS",
    "UNKNOWN",
    "AffectliteError",
    "AudioOptions",
    "BackendError",
    "BackendNotInstalledError",
    "Box",
    "CalibrationError",
    "CameraOptions",
    "ConfigError",
    "ConsentRequiredError",
    "ConversionError",
    "DeploymentRefusedError",
    "EmotionClassifier",
    "EmotionPipeline",
    "EmotionResult",
    "FaceOptions",
    "FaceResult",
    "FusionOptions",
    "InputError",
    "Model",
    "ModelCard",
    "ModelCardError",
    "ModelError",
    "ModelLoadError",
    "NetworkBlockedError",
    "PipelineError",
    "PipelineOptions",
    "PipelineStats",
    "PrivacyError",
    "PrivacyOptions",
    "ProfileError",
    "QueueOptions",
    "SourceError",
    "SourceStatus",
    "SourceUnavailableError",
    "TensorSpec",
    "TextOptions",
    "TextResult",
    "VoiceOptions",
    "VoiceResult",
    "__version__",
    "load_card",
    "save_card",
]
