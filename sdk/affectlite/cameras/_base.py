"""The camera protocol and the frame type every camera source yields."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class Frame:
    """One captured frame.

    Attributes:
        image: ``(H, W, 3)`` uint8 RGB array (the inference stream where the source has two).
        timestamp_ns: Capture time from ``time.monotonic_ns()``.
        index: Frame counter of the source, from 0.
    """

    image: np.ndarray
    timestamp_ns: int
    index: int


@runtime_checkable
class CameraSource(Protocol):
    """A source of frames. ``read`` is called from one SDK capture thread only.

    ``open`` may raise :class:`affectlite.SourceUnavailableError` (library/device missing: not retried) or
    :class:`affectlite.SourceError` (retried with backoff when reconnecting is on). ``read`` returns the next
    frame, ``None`` at the end of a finite stream (files), and raises :class:`affectlite.SourceError` when the
    device fails.
    """

    name: str

    def open(self) -> None: ...

    def read(self) -> Frame | None: ...

    def close(self) -> None: ...


def to_rgb_uint8(image: np.ndarray, *, bgr: bool = False) -> np.ndarray:
    """Normalise a decoded image to ``(H, W, 3)`` uint8 RGB (grey and RGBA accepted)."""
    from ..errors import InputError

    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    elif arr.ndim == 3 and arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[:, :, :3]
    elif not (arr.ndim == 3 and arr.shape[2] == 3):
        raise InputError(f"expected an image of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {arr.shape}")
    if bgr:
        arr = arr[:, :, ::-1]
    if arr.dtype != np.uint8:
        if arr.dtype.kind == "f":
            if not np.all(np.isfinite(arr)):
                raise InputError("image contains NaN or infinity")
            mx = float(arr.max()) if arr.size else 0.0
            arr = arr * 255.0 if mx <= 1.0 else arr
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(arr)
