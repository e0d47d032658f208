"""The boundary rule's helpers: user input is checked and repaired once, where it enters the SDK.

Every public entry point (CLI commands, :class:`~affectlite.EmotionClassifier`, the pipeline's ``push_*`` and
sources, ``eval``/``train``/``convert``/``bench``) passes what it is given through these helpers, so the
code behind them can assume clean input:

* **Text** (:func:`clean_text`): a ``str``; invalid code points (lone surrogates, what Python makes of
  non-UTF-8 bytes in argv, file names or ``errors="surrogateescape"`` reads) are replaced by U+FFFD. NUL,
  right-to-left, CJK and other valid characters are kept.
* **Sample rates** (:func:`check_sample_rate`): an integer within :data:`MIN_SAMPLE_RATE` ..
  :data:`MAX_SAMPLE_RATE` Hz, else :class:`~affectlite.errors.InputError` naming the range.
* **Float audio** (:func:`check_float_peak`): float samples belong in [-1, 1]. A peak up to
  :data:`FLOAT_CLIP_MAX` (overshoot from resampling or mixing) is clipped to [-1, 1] with a warning; a
  larger peak (e.g. floats on the int16 scale, +-32767) is refused: guessing a scale would silently change
  the label.

See ``docs/reliability.md`` for what is refused, dropped or repaired everywhere.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any

import numpy as np

from .errors import InputError

__all__ = [
    "FLOAT_CLIP_MAX",
    "MAX_IMAGE_BYTES",
    "MAX_IMAGE_PIXELS",
    "MAX_SAMPLE_RATE",
    "MIN_SAMPLE_RATE",
    "RateLimitedLog",
    "check_float_peak",
    "check_positive_number",
    "check_sample_rate",
    "clean_text",
    "image_header_size",
]

log = logging.getLogger("affectlite.boundary")

#: Lowest accepted audio sample rate (Hz): below it no speech band is left.
MIN_SAMPLE_RATE = 4_000
#: Highest accepted audio sample rate (Hz): studio rates; above it is a wrong argument, not audio.
MAX_SAMPLE_RATE = 192_000
#: Float audio peaks in (1, FLOAT_CLIP_MAX] are clipped to [-1, 1] (with a warning); above, refused.
FLOAT_CLIP_MAX = 2.0
#: Largest image read from a file, in pixels (a 40 MP photo; 8K video frames are 33 MP). A small PNG can
#: claim 100,000 x 100,000 pixels and would need 30 GB once decoded: it is refused from its header.
MAX_IMAGE_PIXELS = 40_000_000
#: Largest image file read (bytes).
MAX_IMAGE_BYTES = 200 * 2**20


def clean_text(text: Any, where: str = "text") -> str:
    """Check that ``text`` is a ``str`` and replace invalid code points (lone surrogates) with U+FFFD.

    Valid surrogate pairs (e.g. from ``surrogatepass`` decoding) are joined into their character. The
    common case (valid text) returns the same object without copying.

    Raises:
        InputError: ``text`` is not a ``str`` (bytes: decode them first).
    """
    if not isinstance(text, str):
        hint = " (decode bytes first, e.g. data.decode('utf-8', 'replace'))" if isinstance(
            text, (bytes, bytearray)) else ""
        raise InputError(f"{where} must be a str, got {type(text).__name__}{hint}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def check_sample_rate(rate: Any, where: str = "sample_rate") -> int:
    """Return ``rate`` as an ``int`` when it is an integer within 4 kHz .. 192 kHz.

    Raises:
        InputError: not an integer (``bool`` and non-integral floats too) or outside the range.
    """
    if isinstance(rate, (bool, np.bool_)) or not isinstance(rate, (int, np.integer, float, np.floating)):
        raise InputError(f"{where} must be an integer number of Hz within {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE}, "
                         f"got {rate!r}")
    if isinstance(rate, (float, np.floating)) and (not math.isfinite(rate) or rate != int(rate)):
        raise InputError(f"{where} must be an integer number of Hz within {MIN_SAMPLE_RATE}.."
                         f"{MAX_SAMPLE_RATE}, got {rate!r}")
    r = int(rate)
    if not MIN_SAMPLE_RATE <= r <= MAX_SAMPLE_RATE:
        raise InputError(f"{where}={r} Hz is outside the supported range {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz; "
                         "pass the rate the audio was recorded at (e.g. 16000, 44100, 48000)")
    return r


_warned: set[str] = set()
_warned_lock = threading.Lock()


def check_float_peak(x: np.ndarray, where: str = "audio") -> np.ndarray:
    """Apply the float-audio rule to float32 samples already checked for NaN/infinity.

    Returns ``x`` itself when its peak is within [-1, 1], a clipped copy when the peak is at most
    :data:`FLOAT_CLIP_MAX` (logged once per ``where``).

    Raises:
        InputError: the peak is above :data:`FLOAT_CLIP_MAX`.
    """
    if x.dtype.kind != "f" or x.size == 0:
        return x
    peak = float(np.max(np.abs(x)))
    if peak <= 1.0:
        return x
    if not math.isfinite(peak) or peak > FLOAT_CLIP_MAX:
        hint = " (floats on the int16 scale: divide by 32768 or pass int16)" if peak > 100 else ""
        raise InputError(f"{where}: float samples reach {peak:.6g}, float audio must be within [-1, 1]{hint}")
    with _warned_lock:
        first = where not in _warned
        _warned.add(where)
    if first:
        log.warning("%s: float samples reach %.3g; clipped to [-1, 1] (further clipping here is not logged)",
                    where, peak)
    clipped: np.ndarray = np.clip(x, -1.0, 1.0)
    return clipped


def check_positive_number(value: Any, name: str, *, allow_zero: bool = False, integer: bool = False) -> None:
    """Refuse a value that is not a finite positive number (``--duration``, ``--limit`` ...).

    Raises:
        InputError: not a number, NaN/infinite, negative, zero (unless ``allow_zero``), or not an integer
            when ``integer``.
    """
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if ok:
        ok = math.isfinite(float(value)) and (float(value) >= 0 if allow_zero else float(value) > 0)
    if ok and integer:
        ok = float(value) == int(value)
    if not ok:
        kind = "an integer" if integer else "a number"
        bound = ">= 0" if allow_zero else "> 0"
        raise InputError(f"{name} must be {kind} {bound}, got {value!r}")


class RateLimitedLog:
    """Report repeated problems without flooding: the first of each key in full, then a summary at most
    every ``interval_s`` seconds with how many were suppressed.

    Args:
        interval_s: Minimum seconds between two reports of the same key after the first.

    Thread-safe.
    """

    def __init__(self, interval_s: float = 10.0) -> None:
        self.interval_s = float(interval_s)
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def should_report(self, key: str) -> tuple[bool, bool, int]:
        """``(report, first, suppressed_since_last)`` for one more occurrence of ``key``."""
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is None:
                self._last[key] = now
                return True, True, 0
            if now - last >= self.interval_s:
                n = self._suppressed.pop(key, 0)
                self._last[key] = now
                return True, False, n
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False, False, 0


def image_header_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from the header of a PNG, JPEG, BMP, WebP or PGM/PPM file's first bytes, or
    ``None`` when the format is not recognised or the header is cut short (the decoder then decides)."""
    b = bytes(data[:262144])
    try:
        if b.startswith(b"\x89PNG\r\n\x1a\n") and b[12:16] == b"IHDR":
            return int.from_bytes(b[16:20], "big"), int.from_bytes(b[20:24], "big")
        if b.startswith(b"BM") and len(b) >= 26:
            return (abs(int.from_bytes(b[18:22], "little", signed=True)),
                    abs(int.from_bytes(b[22:26], "little", signed=True)))
        if b.startswith(b"RIFF") and b[8:12] == b"WEBP":
            kind = b[12:16]
            if kind == b"VP8X":
                return 1 + int.from_bytes(b[24:27], "little"), 1 + int.from_bytes(b[27:30], "little")
            if kind == b"VP8 ":
                return int.from_bytes(b[26:28], "little") & 0x3FFF, int.from_bytes(b[28:30], "little") & 0x3FFF
            if kind == b"VP8L":
                v = int.from_bytes(b[21:25], "little")
                return 1 + (v & 0x3FFF), 1 + ((v >> 14) & 0x3FFF)
            return None
        if b[:2] in (b"P2", b"P3", b"P5", b"P6"):
            toks: list[bytes] = []
            for line in b[2:].split(b"\n"):
                toks += line.split(b"#", 1)[0].split()
                if len(toks) >= 2:
                    return int(toks[0]), int(toks[1])
            return None
        if b.startswith(b"\xff\xd8"):
            i = 2
            while i + 9 < len(b):
                if b[i] != 0xFF:
                    return None
                m = b[i + 1]
                if m == 0xFF:  # fill byte
                    i += 1
                    continue
                if m in (0x01, *range(0xD0, 0xD9)):
                    i += 2
                    continue
                if 0xC0 <= m <= 0xCF and m not in (0xC4, 0xC8, 0xCC):
                    return int.from_bytes(b[i + 7:i + 9], "big"), int.from_bytes(b[i + 5:i + 7], "big")
                i += 2 + int.from_bytes(b[i + 2:i + 4], "big")
    except (ValueError, IndexError):
        return None
    return None
