"""Microphone sources behind one protocol (:class:`MicrophoneSource`): PyAudio, WAV/FLAC files, synthetic.
Everything is delivered as 16 kHz mono int16."""

from __future__ import annotations

from ..errors import ConfigError
from ..options import AudioOptions
from ._base import SAMPLE_RATE, AudioChunk, MicrophoneSource, to_int16_mono
from .file import FileMicrophone
from .pyaudio import PyAudioMicrophone, list_input_devices
from .synthetic import SyntheticMicrophone

__all__ = [
    "MICROPHONE_BACKENDS",
    "SAMPLE_RATE",
    "AudioChunk",
    "FileMicrophone",
    "MicrophoneSource",
    "PyAudioMicrophone",
    "SyntheticMicrophone",
    "create_microphone",
    "list_input_devices",
    "to_int16_mono",
]

MICROPHONE_BACKENDS = ("auto", "pyaudio", "file", "media", "synthetic", "none")


def create_microphone(options: AudioOptions) -> MicrophoneSource:
    """Build the microphone source the options describe (nothing is opened yet).

    ``"auto"``: a file when ``device`` is a path to a ``.wav``/``.flac``, else PyAudio.

    Raises:
        ConfigError: unknown backend.
    """
    b = options.backend
    if b not in MICROPHONE_BACKENDS:
        raise ConfigError(f"audio.backend: {b!r} is not one of {', '.join(MICROPHONE_BACKENDS)}")
    dev = options.device
    if b == "auto":
        b = "file" if isinstance(dev, str) and dev.lower().endswith((".wav", ".flac")) else "pyaudio"
    if b == "file":
        if not isinstance(dev, str):
            raise ConfigError("audio.device must be a WAV/FLAC path for the file backend")
        return FileMicrophone(dev, chunk_ms=options.chunk_ms, realtime=options.realtime, loop=options.loop)
    if b == "media":
        if not isinstance(dev, str):
            raise ConfigError("audio.device must be a media file path or URL for the media backend")
        from ..media import MediaMicrophone  # PyAV is imported when the source opens

        return MediaMicrophone(dev, chunk_ms=options.chunk_ms, realtime=options.realtime, loop=options.loop)
    if b == "synthetic":
        return SyntheticMicrophone(chunk_ms=options.chunk_ms, realtime=options.realtime)
    if b == "none":
        raise ConfigError("audio.backend is 'none': the microphone is disabled (audio.enabled=false)")
    return PyAudioMicrophone(dev, sample_rate=options.sample_rate, chunk_ms=options.chunk_ms)
