"""Synthetic microphone: silence, noise, a tone, or a voiced (speech-like) signal."""

from __future__ import annotations

import time

import numpy as np

from ._base import SAMPLE_RATE, AudioChunk


class SyntheticMicrophone:
    """Generated audio for demos, tests and soak runs.

    Args:
        kind: ``"silence"``, ``"noise"``, ``"tone"`` or ``"voiced"`` (harmonic buzz with syllable-rate envelope).
        seconds: Length before end of stream (``None``: endless).
        chunk_ms: Chunk length.
        realtime: Pace in real time.
        level: Peak amplitude 0..1.
        seed: Noise seed.
    """

    def __init__(self, kind: str = "voiced", *, seconds: float | None = None, chunk_ms: int = 100,
                 realtime: bool = False, level: float = 0.3, seed: int = 0) -> None:
        self.name = f"synthetic:{kind}"
        self.kind = kind
        self.total = None if seconds is None else int(seconds * SAMPLE_RATE)
        self.chunk = max(1, SAMPLE_RATE * chunk_ms // 1000)
        self.realtime, self.level = realtime, level
        self.overflows = 0
        self._rng = np.random.default_rng(seed)
        self._pos = 0
        self._index = 0
        self._t0 = 0

    def open(self) -> None:
        """Reset the generator."""
        self._pos = 0
        self._t0 = time.monotonic_ns()

    def _gen(self, n: int) -> np.ndarray:
        t = (self._pos + np.arange(n)) / SAMPLE_RATE
        if self.kind == "silence":
            x = np.zeros(n)
        elif self.kind == "noise":
            x = self._rng.normal(0, 0.3, n)
        elif self.kind == "tone":
            x = np.sin(2 * np.pi * 440 * t)
        else:
            f0 = 140 + 30 * np.sin(2 * np.pi * 0.7 * t)
            phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
            x = np.zeros(n)
            for k in range(1, 12):
                x = x + np.sin(k * phase) / k
            env = np.clip(np.sin(2 * np.pi * 3.0 * t), 0, None) ** 0.5
            x = x * env / 2.0
        return np.clip(x * self.level, -1, 1)

    def read(self) -> AudioChunk | None:
        """Next chunk; ``None`` after ``seconds``."""
        n = self.chunk
        if self.total is not None:
            n = min(n, self.total - self._pos)
            if n <= 0:
                return None
        ts = self._t0 + self._pos * 1_000_000_000 // SAMPLE_RATE
        if self.realtime:
            delay = (ts + n * 1_000_000_000 // SAMPLE_RATE - time.monotonic_ns()) / 1e9
            if delay > 0:
                time.sleep(delay)
        x = (self._gen(n) * 32767).astype(np.int16)
        self._pos += n
        chunk = AudioChunk(x, ts if self.realtime else time.monotonic_ns(), self._index)
        self._index += 1
        return chunk

    def close(self) -> None:
        """Nothing to release."""
