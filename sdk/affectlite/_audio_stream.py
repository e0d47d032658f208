"""Audio files as streams: read block by block and resampled incrementally, so memory does not grow with the
length of a recording (a 2 h file costs the same as a 2 s one).

:func:`iter_audio_blocks` gives float32 mono blocks at the wanted rate; :class:`StreamResampler` gives the
same samples as :func:`affectlite.audio_features.resample` on the whole signal, in pieces.
"""

from __future__ import annotations

import math
import os
import wave
from collections.abc import Generator, Iterator
from pathlib import Path

import numpy as np

from . import audio_features as af
from ._boundary import check_sample_rate
from .errors import InputError, SourceUnavailableError

__all__ = ["StreamResampler", "iter_audio_blocks", "open_audio_blocks"]

#: Seconds of audio per block read from a file.
BLOCK_S = 10.0


class StreamResampler:
    """Incremental :func:`affectlite.audio_features.resample`: feed pieces, get the resampled pieces.

    The concatenated output equals ``resample(whole, src_rate, dst_rate)`` (the same filter and phases).

    Args:
        src_rate: Input rate (Hz).
        dst_rate: Output rate (Hz).
    """

    def __init__(self, src_rate: int, dst_rate: int) -> None:
        self.src, self.dst = int(src_rate), int(dst_rate)
        g = math.gcd(self.src, self.dst)
        self.up, self.down = self.dst // g, self.src // g
        self.identity = self.src == self.dst
        if not self.identity:
            if self.up <= 4096:
                self._table, self._half = af._phase_table(self.up, self.down)
            else:
                self._table = np.empty((0, 0), np.float32)
                self._half = math.ceil(af._TAPS_HALF / min(1.0, self.up / self.down))
            self._taps = np.arange(-self._half + 1, self._half + 1)
            self._r = min(1.0, self.up / self.down) * af._ROLLOFF
        # the zero-padded input stream xp (xp[j + half] = x[j]); self._buf holds xp[self._p0:]
        self._buf = np.zeros(getattr(self, "_half", 0), np.float32)
        self._p0 = 0
        self._n_in = 0
        self._n_out = 0  # outputs produced so far

    def _emit(self, n_end: int) -> np.ndarray:
        """Outputs ``self._n_out .. n_end`` from the buffer; drops input no later output needs."""
        if n_end <= self._n_out:
            return np.zeros(0, np.float32)
        out = np.empty(n_end - self._n_out, np.float32)
        chunk = max(1, (1 << 20) // self._taps.size)
        for s in range(self._n_out, n_end, chunk):
            n = np.arange(s, min(n_end, s + chunk), dtype=np.int64)
            base = (n * self.down) // self.up
            phase = (n * self.down) % self.up
            idx = base[:, None] + self._taps[None, :] + self._half - self._p0
            if self._table.size:
                h = self._table[phase]
            else:
                d = self._taps[None, :].astype(np.float64) - (phase / self.up)[:, None]
                h = af._kernel(d, self._r, self._half)
                h = (h / h.sum(axis=1, keepdims=True)).astype(np.float32)
            out[s - self._n_out:s - self._n_out + n.size] = np.einsum("ij,ij->i", self._buf[idx], h)
        self._n_out = n_end
        keep_from = (n_end * self.down) // self.up + 1  # the lowest xp index the next output reads
        if keep_from > self._p0:
            self._buf = self._buf[keep_from - self._p0:]
            self._p0 = keep_from
        return out

    def process(self, x: np.ndarray) -> np.ndarray:
        """Resample the next piece; returns the outputs whose filter taps are all known by now."""
        x = np.asarray(x, np.float32)
        if self.identity:
            return x.copy()
        self._buf = np.concatenate([self._buf, x])
        self._n_in += x.size
        avail = self._half + self._n_in  # xp samples known
        # output n needs xp up to base(n) + 2*half: the largest n with base(n) + 2*half <= avail - 1
        hi = avail - 1 - 2 * self._half
        n_end = 0 if hi < 0 else (hi * self.up) // self.down + 1
        return self._emit(min(n_end, math.ceil(self._n_in * self.up / self.down)))

    def flush(self) -> np.ndarray:
        """The remaining outputs (the zero padding after the end of the input)."""
        if self.identity:
            return np.zeros(0, np.float32)
        self._buf = np.concatenate([self._buf, np.zeros(self._half + 1, np.float32)])
        return self._emit(math.ceil(self._n_in * self.up / self.down))


def open_audio_blocks(path: str | os.PathLike[str], sample_rate: int | None = 16000,
                      block_s: float = BLOCK_S) -> Generator[np.ndarray, None, None]:
    """Open an audio file and return an iterator of its float32 mono blocks at ``sample_rate``.

    The file is opened, its header checked and its first block decoded before this returns, so a missing,
    corrupt or unsupported file raises here, not during the iteration. Close the iterator
    (``it.close()``) to release the file early.

    Raises:
        SourceUnavailableError: the file does not exist, or its format needs ``soundfile``.
        InputError: the file cannot be decoded, has no samples, or its rate is outside 4..192 kHz.
    """
    it = iter_audio_blocks(path, sample_rate, block_s)
    first = next(it, None)
    if first is None:
        raise InputError(f"audio file {path} has no samples")

    def chained() -> Generator[np.ndarray, None, None]:
        try:
            yield first
            yield from it
        finally:
            it.close()
    return chained()


def iter_audio_blocks(path: str | os.PathLike[str], sample_rate: int | None = 16000,
                      block_s: float = BLOCK_S) -> Generator[np.ndarray, None, None]:
    """Float32 mono blocks of an audio file at ``sample_rate`` (``None``: the file's rate), read lazily.

    Channels are averaged. Integer PCM WAV (8/16/24/32-bit) is read with the standard library, whether or not
    ``soundfile`` is installed (the same samples; loading libsndfile costs ~2 MB RSS); FLAC, float or
    compressed WAV and other formats need ``soundfile``. The concatenated blocks equal
    :func:`affectlite.audio_features.load_audio`.

    Raises:
        SourceUnavailableError, InputError: as :func:`open_audio_blocks` (when the iteration starts).
    """
    p = Path(path)
    if p.is_dir():
        raise SourceUnavailableError(f"audio file {p} is a folder, not an audio file")
    if not p.is_file():
        what = "is not a regular file" if p.exists() else "does not exist"
        raise SourceUnavailableError(f"audio file {p} {what}")
    is_wav = p.suffix.lower() in (".wav", ".wave")
    if is_wav:
        try:
            w = wave.open(str(p), "rb")  # noqa: SIM115 (closed by the with below; opening may raise)
        except (wave.Error, EOFError, ValueError) as e:
            wav_error: Exception | None = e  # float, extensible or compressed WAV: soundfile's, if installed
        else:
            with w:
                rate = check_sample_rate(w.getframerate(), f"audio file {p}: sample rate")
                yield from _resampled(_wav_blocks(w, p, max(1, round(block_s * rate))), rate, sample_rate, p)
            return
    try:
        import soundfile as sf
    except ImportError:
        sf = None
    if sf is not None:
        try:
            f = sf.SoundFile(os.fsencode(p))  # bytes: any file name (str must be UTF-8); closed by the with
        except Exception as e:  # soundfile raises its own LibsndfileError / RuntimeError
            raise InputError(f"cannot decode audio file {p}: {getattr(e, 'error_string', None) or e}") from None
        with f:
            rate = check_sample_rate(f.samplerate, f"audio file {p}: sample rate")
            blocks = _sf_blocks(f, p, max(1, round(block_s * rate)))
            yield from _resampled(blocks, rate, sample_rate, p)
        return
    if not is_wav:
        raise SourceUnavailableError(f"reading {p.suffix or 'this'} audio ({p}) needs soundfile: "
                                     "pip install soundfile (or pip install 'affectlite[audio]'); "
                                     "WAV files work without it")
    raise InputError(f"cannot decode WAV file {p} with the standard library ({wav_error}); float and "
                     "compressed WAV need soundfile: pip install soundfile")


def _sf_blocks(f: object, p: Path, n: int) -> Iterator[np.ndarray]:
    while True:
        try:
            data = f.read(n, dtype="float32", always_2d=True)  # type: ignore[attr-defined]
        except Exception as e:
            raise InputError(f"cannot decode audio file {p}: {getattr(e, 'error_string', None) or e}") from None
        if len(data) == 0:
            return
        yield np.asarray(data, np.float32).mean(axis=1)


def _wav_blocks(w: wave.Wave_read, p: Path, n: int) -> Iterator[np.ndarray]:
    ch, width = w.getnchannels(), w.getsampwidth()
    if width not in (1, 2, 3, 4):
        raise InputError(f"WAV file {p}: unsupported sample width {width} bytes")
    while True:
        try:
            raw = w.readframes(n)
        except (wave.Error, EOFError) as e:
            raise InputError(f"cannot decode WAV file {p}: {e}") from None
        if len(raw) < width * ch:
            return
        yield af.pcm_to_mono(raw, width, ch)


def _resampled(blocks: Iterator[np.ndarray], rate: int, sample_rate: int | None, p: Path) -> Iterator[np.ndarray]:
    rs = StreamResampler(rate, int(sample_rate)) if sample_rate is not None and sample_rate != rate else None
    for x in blocks:
        if not np.all(np.isfinite(x)):
            raise InputError(f"audio file {p} contains NaN or infinite samples")
        y = rs.process(x) if rs is not None else x
        if y.size:
            yield y
    if rs is not None:
        tail = rs.flush()
        if tail.size:
            yield tail
