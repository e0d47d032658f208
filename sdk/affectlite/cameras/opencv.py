"""OpenCV camera: /dev/videoN or an index (V4L2), a GStreamer pipeline string (Jetson CSI), an RTSP/HTTP URL,
or a video file."""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from ..errors import SourceError, SourceUnavailableError
from ._base import Frame

OPENCV_HINT = ("OpenCV is not installed: pip install 'affectlite[opencv]' (on a Raspberry Pi or Jetson use the "
               "distribution's package: sudo apt install python3-opencv)")


def import_cv2() -> Any:
    """Import OpenCV lazily, with an install hint when it is missing."""
    try:
        import cv2
    except ImportError:
        raise SourceUnavailableError(OPENCV_HINT) from None
    return cv2


def _kind(device: str | int) -> str:
    if isinstance(device, int) or (isinstance(device, str) and device.isdigit()):
        return "index"
    if "!" in device:
        return "gstreamer"
    if "://" in device:
        return "url"
    if device.startswith("/dev/video"):
        return "v4l2"
    return "file"


class OpenCVCamera:
    """Frames from ``cv2.VideoCapture``.

    Args:
        device: Index, ``/dev/videoN``, GStreamer pipeline (contains ``!``; must end in ``appsink``), URL or file.
        width: Requested capture width (live devices).
        height: Requested capture height.
        fps: Requested rate; for files with ``realtime`` the pacing rate (default: the file's own rate).
        realtime: Pace file frames in real time; otherwise read as fast as possible.
        loop: Restart a file at its end.
    """

    def __init__(self, device: str | int = 0, *, width: int = 640, height: int = 480, fps: float = 15.0,
                 realtime: bool = True, loop: bool = False) -> None:
        self.device = device
        self.kind = _kind(device)
        self.name = f"opencv:{device}"
        self.width, self.height, self.fps = width, height, fps
        self.realtime, self.loop = realtime, loop
        self._cap: Any = None
        self._index = 0
        self._next_t = 0.0
        self._period = 0.0

    def open(self) -> None:
        """Open the device or file.

        Raises:
            SourceUnavailableError: OpenCV missing, or the file does not exist.
            SourceError: the device could not be opened.
        """
        cv2 = import_cv2()
        if self.kind == "file" and not os.path.exists(str(self.device)):
            raise SourceUnavailableError(f"video file {self.device} does not exist")
        if self.kind == "index":
            cap = cv2.VideoCapture(int(self.device))
        elif self.kind == "gstreamer":
            cap = cv2.VideoCapture(str(self.device), cv2.CAP_GSTREAMER)
        else:
            cap = cv2.VideoCapture(str(self.device))
        if not cap.isOpened():
            cap.release()
            extra = ""
            if self.kind == "gstreamer":
                extra = " (is OpenCV built with GStreamer? `affectlite doctor` shows it; JetPack's python3-opencv is)"
            elif self.kind in ("index", "v4l2"):
                extra = " (is a camera plugged in, and is the user in the 'video' group?)"
            raise SourceError(f"could not open camera {self.device!r}{extra}")
        if self.kind in ("index", "v4l2"):
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
            cap.set(cv2.CAP_PROP_FPS, self.fps)
        file_fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        rate = file_fps if self.kind == "file" and file_fps > 0 else self.fps
        self._period = 1.0 / rate if self.realtime and self.kind == "file" and rate > 0 else 0.0
        self._next_t = time.monotonic()
        self._cap = cap

    def read(self) -> Frame | None:
        """Next RGB frame; ``None`` at the end of a file.

        Raises:
            SourceError: a live device stopped delivering frames.
        """
        if self._cap is None:
            raise SourceError(f"{self.name}: read() before open()")
        cv2 = import_cv2()
        ok, bgr = self._cap.read()
        if not ok and self.kind == "file" and self.loop:
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, bgr = self._cap.read()
        if not ok:
            if self.kind == "file":
                return None
            raise SourceError(f"{self.name}: no frame (camera unplugged or stream ended)")
        if self._period:
            self._next_t += self._period
            delay = self._next_t - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                self._next_t = time.monotonic()
        ts = time.monotonic_ns()
        rgb = np.ascontiguousarray(bgr[:, :, ::-1])
        frame = Frame(rgb, ts, self._index)
        self._index += 1
        return frame

    def close(self) -> None:
        """Release the device (idempotent)."""
        if self._cap is not None:
            self._cap.release()
            self._cap = None
