"""Audio features: THE one feature code shared by training (``affectlite_convert``) and the device.

Everything a voice model sees goes through this module: loading (WAV/FLAC), resampling (windowed-sinc
polyphase, numpy only), framing, the log-mel spectrogram and the per-window normalisation. The model
card stores the full feature spec (``inputs[0].preprocessing``) and :func:`check_spec` refuses, at load
time, a spec this code cannot reproduce, so a model sees on the device exactly what it saw in training.

Feature spec (all keys required unless marked optional)::

    {"sample_rate": 16000, "n_fft": 512, "win_length": 400, "hop_length": 160, "n_mels": 64,
     "fmin": 50.0, "fmax": 8000.0, "log_offset": 1e-6, "window_s": 2.0,
     "normalisation": "window_meanstd",
     "mel_scale": "htk", "window_fn": "hann", "power": 2.0}          # optional, these are the defaults

Framing has no centre padding: a window of ``N`` samples gives ``1 + (N - win_length) // hop_length``
frames, and frame ``k`` covers samples ``[k * hop, k * hop + win_length)``. So the log-mel of a long clip
cropped at frame ``k`` equals the log-mel of the samples starting at ``k * hop``: training may compute
the log-mel once per clip and crop it, the runtime computes it per window, and both get the same numbers
(:func:`log_mel` + :func:`normalise` == :func:`compute_features`).
"""

from __future__ import annotations

import math
import os
import wave
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError, ModelCardError, SourceUnavailableError

__all__ = [
    "DEFAULT_SPEC",
    "NORMALISATIONS",
    "check_spec",
    "compute_features",
    "load_audio",
    "log_mel",
    "mel_filterbank",
    "n_frames",
    "normalise",
    "pcm_to_mono",
    "resample",
    "to_float32",
    "window_samples",
    "window_starts",
]

#: The feature spec of the shipped voice model (and the defaults of the optional keys).
DEFAULT_SPEC: dict[str, Any] = {
    "sample_rate": 16000,
    "n_fft": 512,
    "win_length": 400,
    "hop_length": 160,
    "n_mels": 64,
    "fmin": 50.0,
    "fmax": 8000.0,
    "log_offset": 1e-6,
    "window_s": 2.0,
    "normalisation": "window_meanstd",
    "mel_scale": "htk",
    "window_fn": "hann",
    "power": 2.0,
}

#: Supported normalisations: ``none``; ``window_meanstd`` (subtract the mean and divide by the standard
#: deviation of the whole window, one scalar each: gain-invariant); ``window_cmn`` (subtract each mel
#: band's mean over the window).
NORMALISATIONS = ("none", "window_meanstd", "window_cmn")
_REQUIRED = ("sample_rate", "n_fft", "win_length", "hop_length", "n_mels", "fmin", "fmax", "log_offset",
             "window_s", "normalisation")
_OPTIONAL = {"mel_scale": ("htk",), "window_fn": ("hann",), "power": (2.0, 1.0)}
_KNOWN = set(_REQUIRED) | set(_OPTIONAL) | {"n_frames"}
_STD_FLOOR = 1e-3


def check_spec(spec: Mapping[str, Any], where: str = "feature spec") -> dict[str, Any]:
    """Validate a feature spec and return it complete (optional keys filled with their defaults).

    Args:
        spec: The ``preprocessing`` dict of a voice model's input (see the module docstring).
        where: Where the spec came from, for error messages (e.g. the card path).

    Returns:
        A new dict with every key of :data:`DEFAULT_SPEC` (plus ``n_frames`` when given).

    Raises:
        ModelCardError: a key is missing, unknown, of the wrong type or a value this code cannot
            reproduce; the message lists every problem.
    """
    if not isinstance(spec, Mapping):
        raise ModelCardError(f"{where}: the audio feature spec must be an object, got {type(spec).__name__}")
    problems: list[str] = []
    for k in _REQUIRED:
        if k not in spec:
            problems.append(f"missing key '{k}'")
    for k in spec:
        if k not in _KNOWN:
            problems.append(f"unknown key '{k}' (this affectlite supports {', '.join(sorted(_KNOWN))}; "
                            "upgrade affectlite or re-create the card)")
    out: dict[str, Any] = {k: spec.get(k, DEFAULT_SPEC[k]) for k in DEFAULT_SPEC}
    if "n_frames" in spec:
        out["n_frames"] = spec["n_frames"]

    def _num(key: str, integer: bool, lo: float, hi: float = math.inf) -> None:
        v = out[key]
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and (not integer or float(v).is_integer())
        if not ok or not lo <= float(v) <= hi:
            kind = "an integer" if integer else "a number"
            problems.append(f"'{key}' must be {kind} in [{lo}, {hi}], got {v!r}")

    _num("sample_rate", True, 1000, 384000)
    _num("n_fft", True, 16, 65536)
    _num("win_length", True, 8, 65536)
    _num("hop_length", True, 1, 65536)
    _num("n_mels", True, 1, 512)
    _num("fmin", False, 0.0)
    _num("fmax", False, 1.0)
    _num("log_offset", False, 1e-12, 1.0)
    _num("window_s", False, 0.05, 60.0)
    if not problems:
        if out["win_length"] > out["n_fft"]:
            problems.append(f"'win_length' ({out['win_length']}) must not exceed 'n_fft' ({out['n_fft']})")
        if not out["fmin"] < out["fmax"] <= out["sample_rate"] / 2:
            problems.append(f"need 0 <= fmin < fmax <= sample_rate / 2, got fmin={out['fmin']}, "
                            f"fmax={out['fmax']}, sample_rate={out['sample_rate']}")
        if window_samples(out) < out["win_length"]:
            problems.append(f"'window_s' ({out['window_s']}) is shorter than one frame")
    if out["normalisation"] not in NORMALISATIONS:
        problems.append(f"'normalisation' {out['normalisation']!r} is not one of {', '.join(NORMALISATIONS)}")
    for k, allowed in _OPTIONAL.items():
        if out[k] not in allowed:
            problems.append(f"'{k}' {out[k]!r} is not supported (allowed: {', '.join(map(repr, allowed))})")
    if not problems and "n_frames" in out and out["n_frames"] != n_frames(window_samples(out), out):
        problems.append(f"'n_frames' {out['n_frames']!r} does not match window_s/win_length/hop_length "
                        f"(which give {n_frames(window_samples(out), out)})")
    if problems:
        raise ModelCardError(f"{where}: audio feature spec not supported by this affectlite:\n  - "
                             + "\n  - ".join(problems))
    for k in ("sample_rate", "n_fft", "win_length", "hop_length", "n_mels"):
        out[k] = int(out[k])
    for k in ("fmin", "fmax", "log_offset", "window_s", "power"):
        out[k] = float(out[k])
    return out


def window_samples(spec: Mapping[str, Any]) -> int:
    """Number of samples in one analysis window (``round(window_s * sample_rate)``)."""
    return round(float(spec["window_s"]) * int(spec["sample_rate"]))


def n_frames(n_samples: int, spec: Mapping[str, Any]) -> int:
    """Number of frames :func:`log_mel` makes from ``n_samples`` samples (0 if shorter than one frame)."""
    win, hop = int(spec["win_length"]), int(spec["hop_length"])
    return 0 if n_samples < win else 1 + (n_samples - win) // hop


def window_starts(n: int, window: int, hop: int) -> list[int]:
    """Start offsets of the analysis windows that cover a clip of ``n`` units (samples or frames).

    Windows start every ``hop`` units; when the last one stops short of the end, one more window is
    aligned with the end, so every unit is covered. A clip shorter than one window gives ``[0]`` (the
    caller pads it). Training (clip evaluation) and :meth:`affectlite.voice.VoiceAnalyzer.classify_clip`
    both use this.
    """
    if n <= window:
        return [0]
    starts = list(range(0, n - window + 1, max(1, hop)))
    if starts[-1] + window < n:
        starts.append(n - window)
    return starts


_FLOAT_PEAK_MAX = 2.0 ** 31  # generous (int32-range floats pass), far below float32 spectrum overflow


def to_float32(samples: np.ndarray, where: str = "audio") -> np.ndarray:
    """Validate audio and convert it to float32 mono in [-1, 1].

    int16 is scaled by 1/32768, int32 by 1/2**31, uint8 is centred, other integer widths are scaled to
    full scale the same way; float input is kept as is.

    Raises:
        InputError: not 1-D (a ``(n, 1)`` array is accepted), empty, not numeric, NaN/infinite, or float
            samples beyond +-2**31 (they would overflow the spectrum).
    """
    x = np.asarray(samples)
    if x.ndim == 2 and 1 in x.shape:
        x = x.reshape(-1)
    if x.ndim != 1:
        raise InputError(f"{where}: expected 1-D mono samples, got an array of shape {list(x.shape)}; "
                         "mix multi-channel audio down first, e.g. x.mean(axis=1)")
    if x.size == 0:
        raise InputError(f"{where}: no samples (empty array)")
    if x.dtype == np.int16:
        return x.astype(np.float32) / 32768.0
    if x.dtype == np.int32:
        return (x.astype(np.float64) / 2147483648.0).astype(np.float32)
    if x.dtype == np.uint8:
        return (x.astype(np.float32) - 128.0) / 128.0
    if x.dtype.kind not in "fiu":
        raise InputError(f"{where}: samples must be int16 or float, got dtype {x.dtype}")
    if x.dtype.kind in "iu":  # other integer widths: full-scale like int16/int32 (unsigned: centred)
        half = float(2 ** (8 * x.dtype.itemsize - 1))
        return ((x.astype(np.float64) - (half if x.dtype.kind == "u" else 0.0)) / half).astype(np.float32)
    y = x.astype(np.float32)
    if not np.all(np.isfinite(y)):
        raise InputError(f"{where}: samples contain NaN or infinity")
    peak = float(np.max(np.abs(y)))
    if peak > _FLOAT_PEAK_MAX:  # would overflow the float32 spectrum; no real recording is this loud
        raise InputError(f"{where}: float samples reach {peak:.3g}; float audio must be in [-1, 1] "
                         "(int16-range floats: divide by 32768)")
    return y


# ----------------------------------------------------------------------------------------------- resampling

_TAPS_HALF = 24  # filter half-length in output-rate (or input-rate when upsampling) samples
_KAISER_BETA = 8.0
_ROLLOFF = 0.94


@lru_cache(maxsize=32)
def _phase_table(up: int, down: int) -> tuple[np.ndarray, int]:
    r = min(1.0, up / down) * _ROLLOFF
    half = math.ceil(_TAPS_HALF / min(1.0, up / down))
    k = np.arange(-half + 1, half + 1, dtype=np.float64)
    frac = np.arange(up, dtype=np.float64)[:, None] / up
    d = k[None, :] - frac
    h = _kernel(d, r, half)
    h /= h.sum(axis=1, keepdims=True)
    return h.astype(np.float32), half


def _kernel(d: np.ndarray, r: float, half: int) -> np.ndarray:
    arg = np.clip(1.0 - (d / half) ** 2, 0.0, None)
    w = np.i0(_KAISER_BETA * np.sqrt(arg)) / np.i0(_KAISER_BETA)
    return np.asarray(r * np.sinc(r * d) * w, dtype=np.float64)


def resample(x: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """Resample float audio with a Kaiser-windowed sinc (polyphase, numpy only).

    The anti-aliasing cutoff is 94% of the lower Nyquist frequency. Output length is
    ``ceil(len(x) * dst_rate / src_rate)``; sample ``n`` of the output is at input time
    ``n * src_rate / dst_rate``.

    Args:
        x: 1-D float samples.
        src_rate: Sample rate of ``x`` in Hz.
        dst_rate: Wanted sample rate in Hz.

    Returns:
        float32 samples at ``dst_rate``.

    Raises:
        InputError: a rate is not a positive integer, or ``x`` is not 1-D.
    """
    for name, v in (("src_rate", src_rate), ("dst_rate", dst_rate)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
            raise InputError(f"resample: {name} must be a positive integer (Hz), got {v!r}")
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 1:
        raise InputError(f"resample: expected 1-D samples, got shape {list(x.shape)}")
    src, dst = int(src_rate), int(dst_rate)
    if src == dst or x.size == 0:
        return x.copy()
    g = math.gcd(src, dst)
    up, down = dst // g, src // g
    n_out = math.ceil(x.size * up / down)
    if up <= 4096:
        table, half = _phase_table(up, down)
    else:
        table, half = np.empty((0, 0), np.float32), math.ceil(_TAPS_HALF / min(1.0, up / down))
    taps = np.arange(-half + 1, half + 1)
    xp = np.concatenate([np.zeros(half, np.float32), x, np.zeros(half + 1, np.float32)])
    out = np.empty(n_out, dtype=np.float32)
    chunk = max(1, (1 << 20) // taps.size)
    r = min(1.0, up / down) * _ROLLOFF
    for s in range(0, n_out, chunk):
        n = np.arange(s, min(n_out, s + chunk), dtype=np.int64)
        base = (n * down) // up
        phase = (n * down) % up
        idx = base[:, None] + taps[None, :] + half
        if table.size:
            h = table[phase]
        else:
            d = taps[None, :].astype(np.float64) - (phase / up)[:, None]
            h = _kernel(d, r, half)
            h = (h / h.sum(axis=1, keepdims=True)).astype(np.float32)
        out[s:s + n.size] = np.einsum("ij,ij->i", xp[idx], h)
    return out


# ------------------------------------------------------------------------------------------------ log-mel

def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    return np.asarray(2595.0 * np.log10(1.0 + f / 700.0))


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    return np.asarray(700.0 * (10.0 ** (m / 2595.0) - 1.0))


@lru_cache(maxsize=16)
def _mel_fb(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    mels = np.linspace(_hz_to_mel(np.array(fmin)), _hz_to_mel(np.array(fmax)), n_mels + 2)
    hz = _mel_to_hz(mels)
    freqs = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    lower, centre, upper = hz[:-2, None], hz[1:-1, None], hz[2:, None]
    up = (freqs[None, :] - lower) / np.maximum(centre - lower, 1e-9)
    dn = (upper - freqs[None, :]) / np.maximum(upper - centre, 1e-9)
    fb = np.clip(np.minimum(up, dn), 0.0, None)
    fb *= (2.0 / np.maximum(upper - lower, 1e-9))  # equal-area (Slaney-style) normalisation
    out: np.ndarray = fb.astype(np.float32).T.copy()  # (n_fft // 2 + 1, n_mels)
    out.setflags(write=False)
    return out


@lru_cache(maxsize=16)
def _mel_sparse(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float,
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The filterbank as (bin index, weight, segment start) for a BLAS-free sparse product: small matmuls
    through a multi-threaded BLAS are slow on busy edge CPUs."""
    fb = _mel_fb(sample_rate, n_fft, n_mels, fmin, fmax)
    bins: list[int] = []
    weights: list[float] = []
    starts: list[int] = []
    for m in range(n_mels):
        nz = np.nonzero(fb[:, m])[0]
        if nz.size == 0:  # an empty band (very narrow filters): weight 0 on bin 0
            nz = np.array([0])
        starts.append(len(bins))
        bins.extend(nz.tolist())
        weights.extend(fb[nz, m].tolist())
    return (np.asarray(bins, np.intp), np.asarray(weights, np.float32), np.asarray(starts, np.intp))


def mel_filterbank(spec: Mapping[str, Any]) -> np.ndarray:
    """The ``(n_fft // 2 + 1, n_mels)`` triangular HTK-mel filterbank of a spec (equal-area weights)."""
    s = check_spec(spec)
    return _mel_fb(s["sample_rate"], s["n_fft"], s["n_mels"], s["fmin"], s["fmax"])


@lru_cache(maxsize=8)
def _hann(n: int) -> np.ndarray:
    w = (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)).astype(np.float32)  # periodic Hann
    w.setflags(write=False)
    return w


def log_mel(samples: np.ndarray, spec: Mapping[str, Any]) -> np.ndarray:
    """Log-mel spectrogram ``(frames, n_mels)`` float32, NOT normalised.

    Frames have no centre padding (see the module docstring); each frame is Hann-windowed over
    ``win_length`` samples and zero-padded to ``n_fft``; ``log(mel_power + log_offset)``.

    Args:
        samples: 1-D float32 samples at ``spec["sample_rate"]``.
        spec: Feature spec (validated by :func:`check_spec`).

    Raises:
        InputError: fewer samples than one frame.
    """
    s = check_spec(spec)
    x = to_float32(samples, "log_mel")
    win, hop, n_fft = s["win_length"], s["hop_length"], s["n_fft"]
    nf = n_frames(x.size, s)
    if nf == 0:
        raise InputError(f"log_mel: {x.size} samples is shorter than one frame ({win} samples)")
    frames = np.lib.stride_tricks.sliding_window_view(x, win)[::hop][:nf] * _hann(win)[None, :]
    spec_c = np.fft.rfft(frames, n=n_fft, axis=1)
    p = (spec_c.real ** 2 + spec_c.imag ** 2).astype(np.float32)
    if s["power"] == 1.0:
        p = np.sqrt(p)
    bins, weights, starts = _mel_sparse(s["sample_rate"], n_fft, s["n_mels"], s["fmin"], s["fmax"])
    mel = np.add.reduceat(p[:, bins] * weights[None, :], starts, axis=1)
    out: np.ndarray = np.log(mel + np.float32(s["log_offset"])).astype(np.float32)
    if not np.all(np.isfinite(out)):  # finite but huge float samples overflow float32 power
        raise InputError(f"log_mel: samples up to {float(np.max(np.abs(x))):.3g} overflow the spectrum; float "
                         "audio must be in [-1, 1] (divide int16-range floats by 32768)")
    return out


def normalise(logmel: np.ndarray, spec: Mapping[str, Any]) -> np.ndarray:
    """Apply the spec's per-window normalisation to a ``(frames, n_mels)`` log-mel window.

    Args:
        logmel: Output of :func:`log_mel` (or a crop of it covering exactly one window).
        spec: Feature spec.

    Returns:
        float32 array of the same shape.
    """
    mode = spec.get("normalisation", "none")
    x = np.asarray(logmel, dtype=np.float32)
    if mode == "window_meanstd":
        m = x.mean(dtype=np.float64)
        sd = max(float(x.std(dtype=np.float64)), _STD_FLOOR)
        y: np.ndarray = ((x - m) / sd).astype(np.float32)
        return y
    if mode == "window_cmn":
        z: np.ndarray = (x - x.mean(axis=0, keepdims=True)).astype(np.float32)
        return z
    if mode == "none":
        return x.copy()
    raise ModelCardError(f"normalisation {mode!r} is not one of {', '.join(NORMALISATIONS)}")


def compute_features(samples: np.ndarray, spec: Mapping[str, Any]) -> np.ndarray:
    """Features of one window as a model sees them: ``normalise(log_mel(samples))``.

    Args:
        samples: 1-D float32 samples at ``spec["sample_rate"]`` (int16 is accepted and scaled).
            For a model input, pass exactly :func:`window_samples` samples.
        spec: Feature spec (see the module docstring).

    Returns:
        float32 ``(frames, n_mels)``.

    Raises:
        InputError: empty, NaN, wrong rank or shorter than one frame.
        ModelCardError: the spec is not supported.
    """
    s = check_spec(spec)
    return normalise(log_mel(samples, s), s)


# ---------------------------------------------------------------------------------------------- file I/O

def load_audio(path: str | os.PathLike[str], sample_rate: int | None = 16000) -> np.ndarray:
    """Load a WAV or FLAC file as float32 mono, resampled to ``sample_rate``.

    WAV (PCM 8/16/24/32-bit) is read with the standard library when ``soundfile`` is absent; FLAC and
    other formats need ``soundfile`` (``pip install soundfile``). Channels are averaged.

    Args:
        path: The audio file.
        sample_rate: Wanted rate in Hz; ``None`` keeps the file's rate.

    Returns:
        float32 samples in [-1, 1].

    Raises:
        SourceUnavailableError: the file does not exist, or its format needs ``soundfile``.
        InputError: the file cannot be decoded or has no samples.
    """
    x, rate = load_audio_with_rate(path)
    if sample_rate is not None and rate != sample_rate:
        x = resample(x, rate, int(sample_rate))
    return x


def load_audio_with_rate(path: str | os.PathLike[str]) -> tuple[np.ndarray, int]:
    """Like :func:`load_audio` without resampling: returns ``(float32 mono samples, file sample rate)``."""
    p = Path(path)
    if not p.is_file():
        raise SourceUnavailableError(f"audio file {p} does not exist")
    try:
        import soundfile as sf
    except ImportError:
        sf = None
    if sf is not None:
        try:
            data, rate = sf.read(os.fsencode(p), dtype="float32", always_2d=True)  # bytes: any file name
        except Exception as e:  # soundfile raises its own LibsndfileError / RuntimeError
            raise InputError(f"cannot decode audio file {p}: {getattr(e, 'error_string', None) or e}") from None
        x = np.asarray(data, dtype=np.float32).mean(axis=1)
    elif p.suffix.lower() in (".wav", ".wave"):
        x, rate = _read_wav(p)
    else:
        raise SourceUnavailableError(f"reading {p.suffix or 'this'} audio ({p}) needs soundfile: "
                                     "pip install soundfile (or pip install 'affectlite[audio]'); "
                                     "WAV files work without it")
    from ._boundary import check_sample_rate

    rate = check_sample_rate(rate, f"audio file {p}: sample rate")
    if x.size == 0:
        raise InputError(f"audio file {p} has no samples")
    if not np.all(np.isfinite(x)):
        raise InputError(f"audio file {p} contains NaN or infinite samples")
    return x.astype(np.float32, copy=False), int(rate)


def _read_wav(p: Path) -> tuple[np.ndarray, int]:
    try:
        with wave.open(str(p), "rb") as w:
            ch, width, rate, n = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
            raw = w.readframes(n)
    except (wave.Error, EOFError) as e:
        raise InputError(f"cannot decode WAV file {p} with the standard library ({e}); float and "
                         "compressed WAV need soundfile: pip install soundfile") from None
    if width not in (1, 2, 3, 4):
        raise InputError(f"WAV file {p}: unsupported sample width {width} bytes")
    return pcm_to_mono(raw, width, ch), rate


def pcm_to_mono(raw: bytes, width: int, channels: int) -> np.ndarray:
    """Little-endian integer PCM (``width`` 1-4 bytes, interleaved channels) as mono float32 in [-1, 1).

    Trailing bytes of an incomplete frame are ignored; channels are averaged.
    """
    frame = width * channels
    raw = raw[: len(raw) // frame * frame]
    if width == 1:
        x = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        x = np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
    elif width == 3:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        v = np.where(v >= 1 << 23, v - (1 << 24), v)
        x = v.astype(np.float32) / float(1 << 23)
    else:
        x = (np.frombuffer(raw, "<i4").astype(np.float64) / 2147483648.0).astype(np.float32)
    if channels > 1:
        x = x.reshape(-1, channels).mean(axis=1)
    return x.astype(np.float32, copy=False)
