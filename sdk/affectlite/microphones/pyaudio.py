"""Live microphone through PyAudio (PortAudio). Reads happen on the SDK's own capture thread in blocking mode:
no work ever runs inside a PortAudio callback. Input overflows are counted, not fatal."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..errors import SourceError, SourceUnavailableError
from ._base import SAMPLE_RATE, AudioChunk

PYAUDIO_HINT = ("PyAudio is not installed: pip install 'affectlite[audio]' (needs `sudo apt install "
                "portaudio19-dev` to build), or `sudo apt install python3-pyaudio` on Raspberry Pi OS")
PA_INPUT_OVERFLOWED = -9981


def import_pyaudio() -> Any:
    """Import PyAudio lazily with an install hint."""
    try:
        import pyaudio
    except ImportError:
        raise SourceUnavailableError(PYAUDIO_HINT) from None
    return pyaudio


def list_input_devices() -> list[dict[str, Any]]:
    """Input devices PortAudio reports: index, name, channels, default rate."""
    pa_mod = import_pyaudio()
    pa = pa_mod.PyAudio()
    try:
        out = []
        for i in range(pa.get_device_count()):
            info = pa.get_device_info_by_index(i)
            if int(info.get("maxInputChannels", 0)) > 0:
                out.append({"index": i, "name": info.get("name"), "channels": int(info["maxInputChannels"]),
                            "default_rate": float(info.get("defaultSampleRate", 0))})
        return out
    finally:
        pa.terminate()


class PyAudioMicrophone:
    """Chunks from a PortAudio input device, resampled to 16 kHz mono int16.

    Args:
        device: Device index, a name substring, or ``None`` for the default input.
        sample_rate: Rate to open the device at; when the device refuses it, its default rate (44.1/48 kHz)
            is used and audio is resampled.
        chunk_ms: Chunk length.
    """

    def __init__(self, device: int | str | None = None, *, sample_rate: int = SAMPLE_RATE, chunk_ms: int = 100) -> None:
        self.device = device
        self.name = f"pyaudio:{device if device is not None else 'default'}"
        self.requested_rate = sample_rate
        self.rate = sample_rate
        self.chunk_ms = chunk_ms
        self.overflows = 0
        self._pa: Any = None
        self._stream: Any = None
        self._index = 0

    def _resolve(self, pa: Any) -> int | None:
        if self.device is None or isinstance(self.device, int):
            return self.device
        if str(self.device).isdigit():
            return int(self.device)
        for i in range(pa.get_device_count()):
            info = pa.get_device_info_by_index(i)
            if str(self.device).lower() in str(info.get("name", "")).lower() and info.get("maxInputChannels", 0) > 0:
                return i
        raise SourceUnavailableError(f"no input device matching {self.device!r}; `affectlite doctor` lists them")

    def open(self) -> None:
        """Open the input stream (blocking mode).

        Raises:
            SourceUnavailableError: PyAudio missing or no such device.
            SourceError: the device refused every rate tried.
        """
        pa_mod = import_pyaudio()
        pa = pa_mod.PyAudio()
        try:
            idx = self._resolve(pa)
            info = pa.get_device_info_by_index(idx) if idx is not None else pa.get_default_input_device_info()
        except (OSError, ValueError) as e:
            pa.terminate()
            raise SourceUnavailableError(f"no usable input device ({e}); plug in a microphone or pick one "
                                         "with audio.device (`affectlite doctor` lists them)") from None
        rates = [self.requested_rate, int(info.get("defaultSampleRate", 48000)), 48000, 44100]
        last: Exception | None = None
        for rate in dict.fromkeys(rates):
            try:
                stream = pa.open(format=pa_mod.paInt16, channels=1, rate=rate, input=True,
                                 input_device_index=idx, frames_per_buffer=max(1, rate * self.chunk_ms // 1000))
            except (OSError, ValueError) as e:
                last = e
                continue
            self._pa, self._stream, self.rate = pa, stream, rate
            return
        pa.terminate()
        raise SourceError(f"{self.name}: the device accepted none of the rates {rates} ({last})")

    def read(self) -> AudioChunk | None:
        """Read one chunk (blocks about ``chunk_ms``); overflows are counted and the read retried.

        Raises:
            SourceError: the device went away.
        """
        if self._stream is None:
            raise SourceError(f"{self.name}: read() before open()")
        n = max(1, self.rate * self.chunk_ms // 1000)
        for _ in range(3):
            try:
                data = self._stream.read(n, exception_on_overflow=True)
                break
            except OSError as e:
                if getattr(e, "errno", None) == PA_INPUT_OVERFLOWED or "overflow" in str(e).lower():
                    self.overflows += 1
                    continue
                raise SourceError(f"{self.name}: read failed ({e}); microphone unplugged?") from None
        else:
            data = self._stream.read(n, exception_on_overflow=False)
        ts = time.monotonic_ns() - n * 1_000_000_000 // self.rate
        x = np.frombuffer(data, dtype=np.int16).copy()
        if self.rate != SAMPLE_RATE:
            from ..audio_features import resample

            x = np.clip(np.round(resample(x.astype(np.float32), self.rate, SAMPLE_RATE)), -32768, 32767
                        ).astype(np.int16)
        chunk = AudioChunk(x, ts, self._index)
        self._index += 1
        return chunk

    def close(self) -> None:
        """Close the stream and terminate PortAudio (idempotent)."""
        stream, pa = self._stream, self._pa
        self._stream = self._pa = None
        try:
            if stream is not None:
                stream.stop_stream()
                stream.close()
        finally:
            if pa is not None:
                pa.terminate()
