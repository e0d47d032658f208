"""The microphone protocol and the audio chunk type. Internally audio is 16 kHz mono int16."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

#: The SDK's internal sample rate.
SAMPLE_RATE = 16000


@dataclass(frozen=True)
class AudioChunk:
    """A chunk of captured audio.

    Attributes:
        samples: 1-D int16 mono samples at :data:`SAMPLE_RATE`.
        timestamp_ns: Capture time of the first sample (``time.monotonic_ns`` clock).
        index: Chunk counter of the source.
    """

    samples: np.ndarray
    timestamp_ns: int
    index: int


@runtime_checkable
class MicrophoneSource(Protocol):
    """A source of audio chunks; ``read`` is called from one SDK capture thread only.

    ``read`` returns the next chunk, ``None`` at the end of a finite stream, and raises
    :class:`affectlite.SourceError` when the device fails. ``overflows`` counts input overruns.
    """

    name: str
    overflows: int

    def open(self) -> None: ...

    def read(self) -> AudioChunk | None: ...

    def close(self) -> None: ...


def to_int16_mono(samples: np.ndarray) -> np.ndarray:
    """Convert float (-1..1) or integer audio, mono or ``(n, channels)``, to 1-D int16 mono."""
    from ..errors import InputError

    x = np.asarray(samples)
    if x.ndim == 2:
        x = x.mean(axis=1) if x.dtype.kind == "f" else np.round(x.astype(np.int64).mean(axis=1)).astype(x.dtype)
    elif x.ndim != 1:
        raise InputError(f"audio must be 1-D (samples) or 2-D (samples, channels), got shape {x.shape}")
    if x.dtype.kind == "f":
        if not np.all(np.isfinite(x)):
            raise InputError("audio contains NaN or infinity")
        from .._boundary import check_float_peak

        x = check_float_peak(x, "audio chunk")  # beyond +-2 refused (int16-scale floats), (1, 2] clipped
        return np.clip(np.round(x * 32767.0), -32768, 32767).astype(np.int16)
    if x.dtype == np.int16:
        return x
    if x.dtype.kind in "iu":
        info = np.iinfo(x.dtype)
        if info.bits > 16:
            shifted: np.ndarray = (x.astype(np.int64) >> (info.bits - 16)).astype(np.int16)
            return shifted
        clipped: np.ndarray = np.clip(x, -32768, 32767).astype(np.int16)
        return clipped
    raise InputError(f"unsupported audio dtype {x.dtype}")
