"""A synthetic camera: generated frames, optionally with a face image moving across them."""

from __future__ import annotations

import time

import numpy as np

from ._base import Frame, to_rgb_uint8


class SyntheticCamera:
    """Generated frames for demos, tests and soak runs.

    Args:
        width: Frame width.
        height: Frame height.
        fps: Rate when ``realtime``.
        n_frames: Frames before the end of stream (``None``: endless).
        realtime: Pace at ``fps``.
        sprite: Optional image (e.g. a face photo) pasted into each frame, moving slowly from left to right.
        seed: Noise seed.
    """

    def __init__(self, *, width: int = 640, height: int = 480, fps: float = 30.0, n_frames: int | None = None,
                 realtime: bool = False, sprite: np.ndarray | None = None, seed: int = 0) -> None:
        self.name = "synthetic"
        self.width, self.height, self.fps = width, height, fps
        self.n_frames, self.realtime = n_frames, realtime
        self.sprite = to_rgb_uint8(sprite) if sprite is not None else None
        self._rng = np.random.default_rng(seed)
        self._index = 0
        self._next_t = 0.0
        self._base = np.zeros((height, width, 3), np.uint8)

    def open(self) -> None:
        """Prepare the background."""
        yy, xx = np.mgrid[0:self.height, 0:self.width]
        self._base = np.stack([(xx * 255 // max(self.width - 1, 1)), (yy * 255 // max(self.height - 1, 1)),
                               np.full_like(xx, 96)], axis=2).astype(np.uint8)
        self._index = 0
        self._next_t = time.monotonic()

    def sprite_position(self, index: int) -> tuple[int, int]:
        """Top-left corner of the sprite in frame ``index`` (for tests of tracking)."""
        if self.sprite is None:
            return (0, 0)
        sh, sw = self.sprite.shape[:2]
        span = max(self.width - sw, 1)
        x = (index * 2) % span
        y = max((self.height - sh) // 2, 0)
        return (x, y)

    def read(self) -> Frame | None:
        """Next generated frame; ``None`` after ``n_frames``."""
        if self.n_frames is not None and self._index >= self.n_frames:
            return None
        if self.realtime and self.fps > 0:
            self._next_t += 1.0 / self.fps
            delay = self._next_t - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        img = self._base.copy()
        if self.sprite is not None:
            x, y = self.sprite_position(self._index)
            sh, sw = self.sprite.shape[:2]
            h, w = min(sh, self.height - y), min(sw, self.width - x)
            img[y:y + h, x:x + w] = self.sprite[:h, :w]
        frame = Frame(img, time.monotonic_ns(), self._index)
        self._index += 1
        return frame

    def close(self) -> None:
        """Nothing to release."""
