"""A folder of images (or a list of paths) as a camera."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from ..errors import InputError, SourceError, SourceUnavailableError
from ._base import Frame, to_rgb_uint8

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".webp", ".npy")


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one image file as ``(H, W, 3)`` RGB uint8 (``.npy`` arrays too).

    Raises:
        SourceUnavailableError: OpenCV is missing (needed for compressed formats), or the file does not exist
            or is a folder.
        SourceError: the file cannot be decoded.
    """
    p = Path(path)
    if p.is_dir():
        raise SourceUnavailableError(f"image {p} is a folder, not an image file (for a folder of images use "
                                     "`affectlite run --images FOLDER`)")
    if not p.is_file():
        what = "is not a regular file" if p.exists() else "does not exist"
        raise SourceUnavailableError(f"image file {p} {what}")
    from .._boundary import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS, image_header_size

    try:
        size = p.stat().st_size
    except OSError as e:
        raise SourceError(f"cannot read image {p}: {e.strerror or e}") from None
    if size > MAX_IMAGE_BYTES:
        raise SourceError(f"image file {p} is {size / 2**20:.0f} MB; image files up to "
                          f"{MAX_IMAGE_BYTES // 2**20} MB are read (resize or recompress it)")
    if p.suffix.lower() == ".npy":
        try:
            arr = np.load(p, allow_pickle=False)
        except (OSError, ValueError, EOFError) as e:
            raise SourceError(f"cannot read image array {p}: {e}") from None
        if not isinstance(arr, np.ndarray):
            raise SourceError(f"cannot read image array {p}: an .npz archive, not one array")
        try:
            return to_rgb_uint8(arr)
        except (ValueError, TypeError) as e:
            raise SourceError(f"image array {p}: {e}") from None
    from .opencv import import_cv2

    cv2 = import_cv2()
    try:
        data = np.fromfile(str(p), dtype=np.uint8)
    except OSError as e:
        raise SourceError(f"cannot read image {p}: {e.strerror or e}") from None
    wh = image_header_size(data[:262144].tobytes())
    if wh is not None and wh[0] * wh[1] > MAX_IMAGE_PIXELS:  # a decompression bomb: refused before decoding
        raise SourceError(f"image {p} is {wh[0]}x{wh[1]} pixels ({wh[0] * wh[1] / 1e6:.0f} megapixels); images up "
                          f"to {MAX_IMAGE_PIXELS // 1_000_000} megapixels are read (resize it first)")
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise SourceError(f"cannot decode image {p}: not an image file or corrupt")
    if img.dtype == np.uint16:
        img = (img // 257).astype(np.uint8)
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[:, :, :3]
    return to_rgb_uint8(img, bgr=img.ndim == 3)


class ImageFolderCamera:
    """Yields the images of a folder in name order.

    A folder is a recording: image ``n`` (counting on across loops) has the media time ``n / fps`` seconds,
    paced or not, so the pipeline analyses it offline (nothing dropped, results in media-time order, the same
    results at any pace; see docs/media.md).

    A file that cannot be decoded is skipped: :meth:`read` raises :class:`~affectlite.errors.InputError`
    for it and the next call goes on with the following file (the pipeline drops, counts and reports it).

    Args:
        folder: Folder of images (``.jpg .png .bmp .pgm .ppm .webp .npy``).
        fps: Pacing rate when ``realtime``, and the media-time step between images (1 / fps seconds).
        realtime: Pace at ``fps``; otherwise as fast as possible.
        loop: Start again after the last image.

    Attributes:
        recorded: Always True: a folder of images is a recording (media-time stamps, offline analysis).
    """

    recorded = True

    def __init__(self, folder: str | os.PathLike[str], *, fps: float = 5.0, realtime: bool = False,
                 loop: bool = False) -> None:
        self.folder = Path(folder)
        self.name = f"images:{self.folder}"
        self.fps, self.realtime, self.loop = fps, realtime, loop
        self._paths: list[Path] = []
        self._pos = 0
        self._good = 0  # images decoded in this pass over the folder
        self._index = 0
        self._next_t = 0.0

    def open(self) -> None:
        """List the folder.

        Raises:
            SourceUnavailableError: the folder does not exist or holds no images.
        """
        if self.folder.is_file():
            raise SourceUnavailableError(f"{self.folder} is a file, not a folder of images (classify one image "
                                         f"with `affectlite classify --image {self.folder}`)")
        if not self.folder.is_dir():
            raise SourceUnavailableError(f"image folder {self.folder} does not exist")
        self._paths = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self._paths:
            raise SourceUnavailableError(f"image folder {self.folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        self._pos = 0
        self._good = 0
        self._next_t = time.monotonic()

    def read(self) -> Frame | None:
        """Next image, ``None`` after the last one (unless looping).

        Raises:
            InputError: this file cannot be decoded (it is skipped; call ``read`` again for the next one).
        """
        if self._pos >= len(self._paths):
            if not self.loop or not self._paths or not self._good:
                return None  # (a looping folder whose every file is bad ends too)
            self._pos = 0
            self._good = 0
        path = self._paths[self._pos]
        self._pos += 1
        if self.realtime and self.fps > 0:
            self._next_t += 1.0 / self.fps
            delay = self._next_t - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        try:
            img = read_image(path)
        except SourceError as e:  # one bad file: skip it, never restart the folder
            raise InputError(f"skipped {path.name}: {e}") from None
        self._good += 1
        period_ns = round(1e9 / self.fps) if self.fps > 0 else 200_000_000
        frame = Frame(img, self._index * period_ns, self._index)
        self._index += 1
        return frame

    def close(self) -> None:
        """Nothing to release."""
        self._paths = []
