"""WAV/FLAC file as a microphone (paced in real time or as fast as possible)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from ..errors import SourceUnavailableError
from ._base import SAMPLE_RATE, AudioChunk, to_int16_mono


class FileMicrophone:
    """Chunks of a WAV or FLAC file, resampled to 16 kHz mono.

    Args:
        path: The audio file.
        chunk_ms: Chunk length.
        realtime: Pace chunks in real time.
        loop: Start again at the end.
    """

    def __init__(self, path: str | os.PathLike[str], *, chunk_ms: int = 100, realtime: bool = True,
                 loop: bool = False) -> None:
        self.path = Path(path)
        self.name = f"file:{self.path}"
        self.chunk = max(1, SAMPLE_RATE * chunk_ms // 1000)
        self.realtime, self.loop = realtime, loop
        self.overflows = 0
        self._data = np.zeros(0, np.int16)
        self._pos = 0
        self._index = 0
        self._t0 = 0
        self._sent = 0

    def open(self) -> None:
        """Load and resample the file.

        Raises:
            SourceUnavailableError: the file is missing or cannot be decoded.
        """
        if not self.path.is_file():
            raise SourceUnavailableError(f"audio file {self.path} does not exist")
        from ..audio_features import load_audio

        try:
            audio = load_audio(self.path, SAMPLE_RATE)
        except (OSError, RuntimeError, ValueError) as e:
            raise SourceUnavailableError(f"cannot read audio file {self.path}: {e}") from None
        self._data = to_int16_mono(audio)
        self._pos = 0
        self._t0 = time.monotonic_ns()
        self._sent = 0

    def read(self) -> AudioChunk | None:
        """Next chunk, ``None`` at the end (unless looping)."""
        if self._pos >= len(self._data):
            if not self.loop or len(self._data) == 0:
                return None
            self._pos = 0
        seg = self._data[self._pos:self._pos + self.chunk]
        self._pos += len(seg)
        ts = self._t0 + self._sent * 1_000_000_000 // SAMPLE_RATE
        if self.realtime:
            # deliver a chunk once it would have been fully recorded
            due = ts + len(seg) * 1_000_000_000 // SAMPLE_RATE
            delay = (due - time.monotonic_ns()) / 1e9
            if delay > 0:
                time.sleep(delay)
        else:
            ts = time.monotonic_ns() - len(seg) * 1_000_000_000 // SAMPLE_RATE
        self._sent += len(seg)
        chunk = AudioChunk(seg, ts, self._index)
        self._index += 1
        return chunk

    def close(self) -> None:
        """Drop the decoded audio."""
        self._data = np.zeros(0, np.int16)
