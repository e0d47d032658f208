"""Silero VAD v6 (MIT, Silero Team) run in numpy: a small neural voice activity detector.

The model is not committed to affectlite: ``pip install affectlite`` (``setup.py``'s build step) downloads the
``silero-vad==6.2.3`` wheel by name without its dependencies (it requires PyTorch, which is never installed),
checks the sha256 of the wheel, of ``silero_vad/data/silero_vad.onnx`` and of the licence, takes the 16 kHz
weights out of the ONNX (:mod:`affectlite._silero_weights`, standard library only) and keeps them, 1.2 MB of
float32 (:data:`PACKED_SHA256`-checked), with the licence in ``affectlite/models/third_party/`` (see the
``NOTICE.md`` there). :func:`model_source` looks there first, then for ``silero_vad.onnx`` in an installed
``silero-vad`` wheel (found without importing it); ``model_path`` may name either file. Both are always
checked against their pinned sha256.

Neither onnx nor onnxruntime is needed: a minimal protobuf reader takes the weights out of the ONNX, and numpy
evaluates the network. Per 512-sample chunk (32 ms) the model sees the chunk plus the last 64 samples of the
previous chunk (zeros at the start of a stream), reflection-pads 64 samples on the right, takes a 256-point
STFT magnitude (a fixed convolution, 4 frames at stride 128), runs four 3-tap convolutions with ReLU (strides
1, 2, 2, 1; 129 -> 128 -> 64 -> 64 -> 128 channels, 4 frames -> 1), one LSTM cell of 128 units whose state
``(h, c)`` is carried from chunk to chunk, and a 1x1 convolution with a sigmoid: the chunk's speech probability.
The stream state is therefore ``(h, c, the last 64 samples)``; :meth:`SileroVAD.reset` zeroes it. Everything
except the LSTM step is computed for a whole batch of chunks at once; feeding a stream in any split into batches
gives the same scores as feeding it whole, and the scores match onnxruntime running ``silero_vad.onnx`` chunk by
chunk to ~2e-6 (both tested).
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np

from . import _silero_weights as sw
from ._io import sha256_file
from .errors import BackendNotInstalledError, ConfigError, InputError, ModelLoadError

__all__ = ["CHUNK", "CONTEXT", "INSTALL_HINT", "PACKAGED_MODEL", "PACKED_FILE", "PACKED_SHA256", "SILERO_SHA256",
           "SileroVAD", "default_model_path", "load_weights", "missing_hint", "model_source"]

SAMPLE_RATE = 16000
#: Samples per decision (32 ms at 16 kHz), the chunk the model was trained on.
CHUNK = 512
#: Samples of the previous chunk the model sees before each chunk.
CONTEXT = 64
_PAD = 64        # reflection padding on the right
_NFFT = 256
_STRIDE = 128
_BINS = _NFFT // 2 + 1
_HIDDEN = 128
ONNX_FILE = "silero_vad.onnx"
#: sha256 of ``silero_vad/data/silero_vad.onnx`` in silero-vad 6.2.3.
SILERO_SHA256 = "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3"
PACKED_FILE = "silero_vad-6.2.3-16k.safetensors"
#: sha256 of the 16 kHz weights taken out of that ONNX by :func:`affectlite._silero_weights.pack` (setup.py).
PACKED_SHA256 = "3b09a38b43829436147b28e4d8e5e4824ad19cba96faf86eb5e09596decbcaab"
#: Where ``setup.py`` puts the weights at install time (git-ignored; see ``models/third_party/NOTICE.md``).
PACKAGED_MODEL = Path(__file__).resolve().parent / "models" / "third_party" / PACKED_FILE
INSTALL_HINT = ("the Silero VAD model is not installed (affectlite's install downloads it from the "
                "silero-vad==6.2.3 wheel and could not, e.g. offline); install it with: "
                "pip install --no-deps silero-vad==6.2.3 (or reinstall affectlite with network access)")


def _wheel_model_path() -> Path | None:
    try:
        spec = importlib.util.find_spec("silero_vad")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        p = Path(loc) / "data" / ONNX_FILE
        if p.is_file():
            return p
    return None


def model_source() -> tuple[Path, str] | None:
    """The installed weights and where they were found (``"packaged"`` or ``"silero-vad wheel"``).

    Looks for :data:`PACKED_FILE` in ``affectlite/models/third_party/`` (put there at install time) first, then
    for ``silero_vad.onnx`` in an installed ``silero-vad`` wheel (found without importing ``silero_vad``).
    ``None`` when neither has it.
    """
    if PACKAGED_MODEL.is_file():
        return PACKAGED_MODEL, "packaged"
    p = _wheel_model_path()
    return (p, "silero-vad wheel") if p is not None else None


def default_model_path() -> Path | None:
    """The installed weight file (see :func:`model_source`); ``None`` when not installed."""
    src = model_source()
    return src[0] if src is not None else None


def missing_hint() -> str | None:
    """``None`` when the weight file is installed, else the install hint."""
    return None if default_model_path() is not None else INSTALL_HINT


@functools.lru_cache(maxsize=4)
def _load(path: str, mtime_ns: int, size: int) -> dict[str, np.ndarray]:
    del mtime_ns, size  # cache key only: a replaced file is read again
    digest = sha256_file(path)
    if digest not in (PACKED_SHA256, SILERO_SHA256):
        raise ModelLoadError(f"{path}: sha256 {digest} is neither the pinned Silero VAD 6.2.3 {ONNX_FILE} "
                             f"({SILERO_SHA256}) nor its 16 kHz weights {PACKED_FILE} ({PACKED_SHA256}); "
                             f"{INSTALL_HINT}")
    data = Path(path).read_bytes()
    try:
        tensors = sw.unpack(data) if digest == PACKED_SHA256 else sw.read_onnx(data)
    except (ValueError, KeyError, TypeError, IndexError) as e:  # unreachable for the pinned files
        raise ModelLoadError(f"{path}: not a readable Silero VAD file ({e})") from e
    return {k: np.frombuffer(raw, dtype="<f4").reshape(shape).astype(np.float32) for k, (shape, raw) in tensors.items()}


def load_weights(path: str | Path | None = None) -> dict[str, np.ndarray]:
    """The Silero VAD 16 kHz tensors by name (float32; read once per file and cached, read-only arrays).

    Args:
        path: The weights (:data:`PACKED_FILE`) or ``silero_vad.onnx`` of silero-vad 6.2.3; ``None``: the
            installed ones (:func:`default_model_path`).

    Raises:
        BackendNotInstalledError: ``path`` is ``None`` and the weights are not installed.
        ModelLoadError: the file is missing, is not the pinned file, or cannot be parsed.
    """
    p = Path(path) if path is not None else default_model_path()
    if p is None:
        raise BackendNotInstalledError(INSTALL_HINT)
    try:
        st = p.stat()
    except OSError as e:
        raise ModelLoadError(f"Silero VAD weights {p}: {e.strerror or e}") from e
    w = _load(str(p), st.st_mtime_ns, st.st_size)
    for a in w.values():
        a.setflags(write=False)
    return w


def _conv1d(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int) -> np.ndarray:
    """``(n, C_in, T)`` -> ``(n, C_out, T')``: PyTorch Conv1d, kernel 3, padding 1."""
    n, cin, t = x.shape
    xp = np.zeros((n, cin, t + 2), np.float32)
    xp[:, :, 1:-1] = x
    t_out = (t + 2 - 3) // stride + 1
    idx = np.arange(t_out)[:, None] * stride + np.arange(3)[None, :]      # (t_out, 3)
    cols = xp[:, :, idx].transpose(0, 2, 1, 3).reshape(n, t_out, cin * 3)  # (n, t_out, cin*3)
    y = cols @ w.reshape(w.shape[0], cin * 3).T + b                      # (n, t_out, cout)
    out: np.ndarray = y.transpose(0, 2, 1)
    return out


class SileroVAD:
    """Silero VAD v6 in numpy, streaming (:class:`affectlite.vad.VoiceActivityDetector`).

    Scores 512-sample (32 ms) frames of 16 kHz audio with the speech probability of the network; a frame is
    speech when it is >= 0.5 (Silero's own default threshold). The detector carries the stream state (LSTM
    ``h`` and ``c``, the last 64 samples) between calls; use one instance per stream.

    Args:
        model_path: The weights (:data:`PACKED_FILE`) or ``silero_vad.onnx`` of silero-vad 6.2.3; ``None``:
            the installed ones.
        sample_rate: Must be 16000 (audio is resampled before it gets here).

    Raises:
        BackendNotInstalledError: no ``model_path`` and the weights are not installed (the message says how
            to install them).
        ModelLoadError: the file is not the pinned Silero VAD 6.2.3 weights.
        ConfigError: a sample rate other than 16000.
    """

    frame_length = CHUNK

    def __init__(self, model_path: str | Path | None = None, sample_rate: int = SAMPLE_RATE) -> None:
        if sample_rate != SAMPLE_RATE:
            raise ConfigError(f"SileroVAD works on {SAMPLE_RATE} Hz audio, got sample_rate={sample_rate}")
        w = load_weights(model_path)
        self._stft = w["stft"][:, 0, :].T.copy()                   # (256, 258)
        self._convs = [(w[f"conv{i}.weight"], w[f"conv{i}.bias"], s) for i, s in ((1, 1), (2, 2), (3, 2), (4, 1))]
        self._w_ih = w["lstm.weight_ih"].T.copy()                              # (128, 512)
        self._w_hh = w["lstm.weight_hh"].T.copy()                              # (128, 512)
        self._b = (w["lstm.bias_ih"] + w["lstm.bias_hh"]).astype(np.float32)
        self._w_out = w["out.weight"][0, :, 0].astype(np.float64)              # (128,)
        self._b_out = float(w["out.bias"][0])
        self._frame_idx = np.arange(4)[:, None] * _STRIDE + np.arange(_NFFT)[None, :]  # (4, 256)
        self.reset()

    def reset(self) -> None:
        """Forget the stream: zero LSTM state and context (the next frame starts a new stream)."""
        self._h = np.zeros(_HIDDEN, np.float32)
        self._c = np.zeros(_HIDDEN, np.float32)
        self._ctx = np.zeros(CONTEXT, np.float32)

    @property
    def state(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Copies of the stream state ``(h, c, context)`` (128, 128 and 64 float32 values)."""
        return self._h.copy(), self._c.copy(), self._ctx.copy()

    def _encode(self, frames: np.ndarray) -> np.ndarray:
        """LSTM input ``(n, 128)`` of consecutive chunks ``(n, 512)`` (uses and updates the context)."""
        n = frames.shape[0]
        x = np.concatenate([self._ctx, frames.reshape(-1)])
        self._ctx = x[-CONTEXT:].copy()
        win = np.lib.stride_tricks.sliding_window_view(x, CONTEXT + CHUNK)[::CHUNK][:n]   # (n, 576)
        # reflection padding on the right (PyTorch "reflect": the edge sample is not repeated)
        xp = np.concatenate([win, win[:, -2:-2 - _PAD:-1]], axis=1)                       # (n, 640)
        spec = xp[:, self._frame_idx] @ self._stft                                        # (n, 4, 258)
        mag = np.sqrt(spec[..., :_BINS] ** 2 + spec[..., _BINS:] ** 2).transpose(0, 2, 1)  # (n, 129, 4)
        h = mag.astype(np.float32)
        for w, b, s in self._convs:
            h = np.maximum(_conv1d(h, w, b, s), 0.0)
        out: np.ndarray = h[:, :, 0]                                                       # (n, 128)
        return out

    def process(self, frames: np.ndarray) -> np.ndarray:
        """Speech probabilities of consecutive 512-sample frames of the stream; updates the state.

        Args:
            frames: float32 ``(n, 512)``: the next ``n`` frames of the stream, in order.

        Returns:
            float32 ``(n,)`` speech probabilities in [0, 1].

        Raises:
            InputError: wrong shape, or NaN/infinite samples.
        """
        x = np.asarray(frames, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != CHUNK:
            raise InputError(f"SileroVAD.process: expected frames of shape (n, {CHUNK}), got {list(x.shape)}")
        if x.shape[0] == 0:
            return np.zeros(0, np.float32)
        if not np.isfinite(x).all():
            raise InputError("SileroVAD.process: frames contain NaN or infinite samples")
        gates_x = self._encode(x) @ self._w_ih + self._b                                  # (n, 512)
        h, c = self._h, self._c
        hs = np.empty((x.shape[0], _HIDDEN), np.float32)
        H = _HIDDEN
        for i in range(x.shape[0]):
            g = gates_x[i] + h @ self._w_hh
            sig = 1.0 / (1.0 + np.exp(-g))  # PyTorch gate order: input, forget, cell (tanh), output
            c = sig[H:2 * H] * c + sig[:H] * np.tanh(g[2 * H:3 * H])
            h = sig[3 * H:] * np.tanh(c)
            hs[i] = h
        self._h, self._c = h.astype(np.float32), c.astype(np.float32)
        logit = np.maximum(hs, 0.0).astype(np.float64) @ self._w_out + self._b_out
        out: np.ndarray = (1.0 / (1.0 + np.exp(-logit))).astype(np.float32)
        return out
