"""Camera sources behind one protocol (:class:`CameraSource`): picamera2, OpenCV (V4L2, GStreamer, URL, file),
image folders and synthetic. Backends import their libraries only when opened."""

from __future__ import annotations

import os
import platform
from pathlib import Path

from ..errors import ConfigError
from ..options import CameraOptions
from ._base import CameraSource, Frame, to_rgb_uint8
from .images import ImageFolderCamera, read_image
from .opencv import OpenCVCamera
from .picamera2 import Picamera2Camera, yuv420_to_rgb
from .synthetic import SyntheticCamera

__all__ = [
    "CAMERA_BACKENDS",
    "CameraSource",
    "Frame",
    "ImageFolderCamera",
    "OpenCVCamera",
    "Picamera2Camera",
    "SyntheticCamera",
    "create_camera",
    "read_image",
    "to_rgb_uint8",
    "yuv420_to_rgb",
]

CAMERA_BACKENDS = ("auto", "picamera2", "opencv", "images", "media", "synthetic", "none")


def _is_raspberry_pi() -> bool:
    try:
        return "raspberry pi" in Path("/proc/device-tree/model").read_text(errors="ignore").lower()
    except OSError:
        return False


def create_camera(options: CameraOptions) -> CameraSource:
    """Build the camera source the options describe (nothing is opened yet).

    ``"auto"``: an image folder or video file when ``device`` names one, picamera2 on a Raspberry Pi with
    picamera2 installed and a numeric device, else OpenCV.

    Raises:
        ConfigError: unknown backend.
    """
    b = options.backend
    dev = options.device
    if b not in CAMERA_BACKENDS:
        raise ConfigError(f"camera.backend: {b!r} is not one of {', '.join(CAMERA_BACKENDS)}")
    if b == "auto":
        if isinstance(dev, str) and os.path.isdir(dev):
            b = "images"
        elif isinstance(dev, int) or str(dev).isdigit():
            import importlib.util

            on_pi = platform.machine() in ("aarch64", "armv7l") and _is_raspberry_pi()
            b = "picamera2" if on_pi and importlib.util.find_spec("picamera2") is not None else "opencv"
        else:
            b = "opencv"
    if b == "picamera2":
        return Picamera2Camera(width=options.width, height=options.height,
                               inference_width=options.inference_width or options.width,
                               inference_height=options.inference_height or options.height, fps=options.fps,
                               camera_num=int(dev) if str(dev).isdigit() else 0)
    if b == "images":
        return ImageFolderCamera(str(dev), fps=options.fps, realtime=options.realtime, loop=options.loop)
    if b == "media":
        from ..media import MediaCamera  # PyAV is imported when the source opens

        return MediaCamera(str(dev), fps=options.fps, realtime=options.realtime, loop=options.loop)
    if b == "synthetic":
        return SyntheticCamera(width=options.width, height=options.height, fps=options.fps,
                               realtime=options.realtime)
    if b == "none":
        raise ConfigError("camera.backend is 'none': the camera is disabled (camera.enabled=false)")
    return OpenCVCamera(dev, width=options.width, height=options.height, fps=options.fps,
                        realtime=options.realtime, loop=options.loop)
