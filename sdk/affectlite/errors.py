"""The affectlite exception tree.

Every error the SDK raises on purpose derives from :class:`AffectliteError`, so an application can
catch one type. Messages say what was wrong and how to fix it (file, key path, expected value)::

    AffectliteError
    ├── ConfigError                 bad option, profile or override (names file, key path, value, allowed)
    │   └── ProfileError            a device profile that does not validate
    ├── ModelError                  a model or its card cannot be used
    │   ├── ModelCardError          card missing/malformed, or does not match the model file/tensors
    │   └── ModelLoadError          corrupt/truncated .tflite, interpreter refused it
    ├── BackendError                an interpreter backend / delegate problem
    │   └── BackendNotInstalledError   the backend's library is missing (message has the pip command)
    ├── InputError                  bad input data: wrong rank/shape/dtype, empty or NaN audio ...
    ├── SourceError                 a camera or microphone failed
    │   └── SourceUnavailableError  the device/file/library is not there (message says how to install/fix)
    ├── PipelineError               lifecycle misuse (start twice, reuse after close) or a fatal stage error
    ├── PrivacyError                a privacy rule refused the operation
    │   ├── ConsentRequiredError    the pipeline requires a consent token and got none
    │   ├── DeploymentRefusedError  deployment context forbids emotion recognition (EU AI Act Art. 5(1)(f))
    │   └── NetworkBlockedError     the offline guard blocked a network connection
    └── ConversionError             the workstation converter could not convert or validate a model
        └── CalibrationError        calibration data missing, too small or the wrong shape
"""

from __future__ import annotations

__all__ = [
    "AffectliteError",
    "BackendError",
    "BackendNotInstalledError",
    "CalibrationError",
    "ConfigError",
    "ConsentRequiredError",
    "ConversionError",
    "DeploymentRefusedError",
    "InputError",
    "ModelCardError",
    "ModelError",
    "ModelLoadError",
    "NetworkBlockedError",
    "PipelineError",
    "PrivacyError",
    "ProfileError",
    "SourceError",
    "SourceUnavailableError",
]


class AffectliteError(Exception):
    """Base class of every error affectlite raises on purpose."""


class ConfigError(AffectliteError, ValueError):
    """An option, override or configuration value is invalid."""


class ProfileError(ConfigError):
    """A device profile does not validate (message names file, key path, value and allowed range)."""


class ModelError(AffectliteError):
    """A model cannot be used."""


class ModelCardError(ModelError):
    """A model card is missing, malformed, or does not match its model file or tensors."""


class ModelLoadError(ModelError):
    """The model file is corrupt or truncated, or the interpreter refused it."""


class BackendError(AffectliteError):
    """An interpreter backend or delegate could not be used."""


class BackendNotInstalledError(BackendError, ImportError):
    """The library of a requested backend is not installed; the message has the install command."""


class InputError(AffectliteError, ValueError):
    """Input data has the wrong rank, shape, dtype or content (empty, NaN)."""


class SourceError(AffectliteError):
    """A camera or microphone source failed."""


class SourceUnavailableError(SourceError):
    """The device, file or library behind a source is not available."""


class PipelineError(AffectliteError, RuntimeError):
    """Lifecycle misuse of a pipeline, or a fatal error inside one of its stages."""


class PrivacyError(AffectliteError):
    """A privacy rule refused the operation."""


class ConsentRequiredError(PrivacyError):
    """The pipeline is configured to require a consent token and none was given."""


class DeploymentRefusedError(PrivacyError):
    """The deployment context forbids emotion recognition without a declared medical/safety purpose."""


class NetworkBlockedError(PrivacyError, OSError):
    """The offline guard blocked a network connection attempt."""


class ConversionError(AffectliteError):
    """The converter could not convert or validate a model."""


class CalibrationError(ConversionError):
    """Calibration data is missing, too small, or has the wrong shape."""
