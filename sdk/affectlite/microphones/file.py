"""WAV/FLAC file as a microphone (paced in real time or as fast as possible)."""

from __future__ import annotations

import os
import time
from collections.abc import Generator
from pathlib import Path

import numpy as np

from ..errors import InputError, SourceUnavailableError
from ._base import SAMPLE_RATE, AudioChunk, to_int16_mono


class FileMicrophone:
    """Chunks of a WAV or FLAC file, resampled to 16 kHz mono.

    The file is read and resampled block by block (:func:`affectlite._audio_stream.open_audio_blocks`), so
    memory stays the same for a recording of any length.

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
        self._data = np.zeros(0, np.int16)  # the decoded block being chunked
        self._blocks: Generator[np.ndarray, None, None] | None = None
        self._any = False  # the stream gave at least one sample (looping an empty file would spin)
        self._pos = 0
        self._index = 0
        self._t0 = 0
        self._sent = 0

    def open(self) -> None:
        """Open the file and decode its first block (the rest is read as the chunks are consumed).

        Raises:
            SourceUnavailableError: the file is missing or cannot be decoded.
        """
        if self.path.is_dir():
            raise SourceUnavailableError(f"audio file {self.path} is a folder, not an audio file")
        if not self.path.is_file():
            what = "is not a regular file" if self.path.exists() else "does not exist"
            raise SourceUnavailableError(f"audio file {self.path} {what}")
        self._start_stream()
        self._t0 = time.monotonic_ns()
        self._sent = 0

    def _start_stream(self) -> None:
        from .._audio_stream import open_audio_blocks

        if self._blocks is not None:
            self._blocks.close()
            self._blocks = None
        try:
            self._blocks = open_audio_blocks(self.path, SAMPLE_RATE)
        except (OSError, RuntimeError, ValueError) as e:
            raise SourceUnavailableError(f"cannot read audio file {self.path}: {e}") from None
        self._data = np.zeros(0, np.int16)
        self._pos = 0

    def _next_block(self) -> bool:
        """Decode the next block into ``self._data``; False at the end of the file."""
        if self._blocks is None:
            return False
        try:
            block = next(self._blocks, None)
        except (OSError, RuntimeError, ValueError) as e:
            # corrupt or unreadable from here on: the rest is skipped (the pipeline drops and reports it, and the
            # next read ends the stream); reopening would start the file again and loop over its first part
            self._blocks = None
            raise InputError(f"audio file {self.path} is unreadable after {self._sent / SAMPLE_RATE:.1f} s "
                             f"({e}); the rest is skipped") from None
        if block is None:
            return False
        self._data = to_int16_mono(block)
        self._pos = 0
        self._any = True
        return True

    def read(self) -> AudioChunk | None:
        """Next chunk, ``None`` at the end (unless looping)."""
        parts: list[np.ndarray] = []
        need = self.chunk
        while need > 0:
            if self._pos >= len(self._data) and not self._next_block():
                if parts or not self.loop or not self._any:
                    break  # the last (short) chunk, or the end
                self._start_stream()  # loop: read the file again from its start
                continue
            piece = self._data[self._pos:self._pos + need]
            self._pos += len(piece)
            need -= len(piece)
            parts.append(piece)
        if not parts:
            return None
        seg = parts[0] if len(parts) == 1 else np.concatenate(parts)
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
        """Close the file and drop the decoded audio."""
        if self._blocks is not None:
            self._blocks.close()
            self._blocks = None
        self._data = np.zeros(0, np.int16)
