"""Raspberry Pi camera through picamera2, using the low-resolution (``lores``) stream for inference.

picamera2 lives in the system Python on Raspberry Pi OS (``sudo apt install python3-picamera2``; create the
venv with ``--system-site-packages``). It is imported only when this source is opened.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..errors import SourceError, SourceUnavailableError
from ._base import Frame

PICAMERA2_HINT = ("picamera2 is not importable: on Raspberry Pi OS run `sudo apt install python3-picamera2` and "
                  "create the venv with `python3 -m venv --system-site-packages`; elsewhere use the opencv camera")


def yuv420_to_rgb(yuv: np.ndarray, width: int, height: int) -> np.ndarray:
    """Convert a planar I420 buffer of shape ``(height * 3 // 2, width)`` to ``(height, width, 3)`` RGB uint8."""
    y = yuv[:height, :width].astype(np.float32)
    uv = yuv[height:height + height // 2].reshape(-1)
    q = (width // 2) * (height // 2)
    u = uv[:q].reshape(height // 2, width // 2).astype(np.float32) - 128.0
    v = uv[q:2 * q].reshape(height // 2, width // 2).astype(np.float32) - 128.0
    u = u.repeat(2, axis=0).repeat(2, axis=1)[:height, :width]
    v = v.repeat(2, axis=0).repeat(2, axis=1)[:height, :width]
    r = y + 1.402 * v
    g = y - 0.344136 * u - 0.714136 * v
    b = y + 1.772 * u
    rgb: np.ndarray = np.clip(np.stack([r, g, b], axis=2), 0, 255).astype(np.uint8)
    return rgb


class Picamera2Camera:
    """Frames from picamera2's low-resolution stream (the ``main`` stream stays available for the app).

    Args:
        width: ``main`` stream width.
        height: ``main`` stream height.
        inference_width: ``lores`` width (0: use ``main`` for inference).
        inference_height: ``lores`` height.
        fps: Frame rate (FrameDurationLimits).
        camera_num: Which camera on a board with two.
    """

    def __init__(self, *, width: int = 640, height: int = 480, inference_width: int = 320,
                 inference_height: int = 240, fps: float = 15.0, camera_num: int = 0) -> None:
        self.name = f"picamera2:{camera_num}"
        self.width, self.height = width, height
        self.lw = inference_width - inference_width % 2
        self.lh = inference_height - inference_height % 2
        self.fps = fps
        self.camera_num = camera_num
        self._cam: Any = None
        self._index = 0

    def open(self) -> None:
        """Configure and start the camera.

        Raises:
            SourceUnavailableError: picamera2 is not installed.
            SourceError: no camera attached or it is busy.
        """
        try:
            from picamera2 import Picamera2
        except ImportError:
            raise SourceUnavailableError(PICAMERA2_HINT) from None
        try:
            cam = Picamera2(self.camera_num)
            us = int(1_000_000 / self.fps) if self.fps > 0 else 33333
            kw: dict[str, Any] = {"main": {"size": (self.width, self.height), "format": "RGB888"},
                                  "controls": {"FrameDurationLimits": (us, us)}}
            if self.lw and self.lh:
                kw["lores"] = {"size": (self.lw, self.lh), "format": "YUV420"}
            cam.configure(cam.create_video_configuration(**kw))
            cam.start()
        except (RuntimeError, IndexError, OSError) as e:
            raise SourceError(f"{self.name}: could not start the camera ({e}); is it connected and enabled, "
                              "and not used by another process (rpicam-hello)?") from None
        self._cam = cam

    def read(self) -> Frame | None:
        """Capture the next frame (blocks until the camera delivers one)."""
        if self._cam is None:
            raise SourceError(f"{self.name}: read() before open()")
        try:
            if self.lw and self.lh:
                yuv = self._cam.capture_array("lores")
                rgb = yuv420_to_rgb(np.asarray(yuv), self.lw, self.lh)
            else:
                arr = np.asarray(self._cam.capture_array("main"))
                rgb = np.ascontiguousarray(arr[:, :, :3][:, :, ::-1])  # picamera2 "RGB888" is B,G,R in memory
        except (RuntimeError, OSError, TimeoutError) as e:
            raise SourceError(f"{self.name}: capture failed ({e})") from None
        frame = Frame(rgb, time.monotonic_ns(), self._index)
        self._index += 1
        return frame

    def close(self) -> None:
        """Stop and release the camera (idempotent)."""
        cam, self._cam = self._cam, None
        if cam is not None:
            try:
                cam.stop()
            finally:
                cam.close()
