"""Pretrained speech front end: Google's speech_embedding (Lin et al. 2020) as shipped by openWakeWord 0.5.1.

Two third-party TFLite models, run through affectlite's own interpreter layer (never TensorFlow):

* ``melspectrogram.tflite``: raw 16 kHz audio (float32 on the int16 scale, i.e. samples x 32767) ->
  32-band log-mel frames every 10 ms (25 ms windows); openWakeWord rescales them as ``x / 10 + 2`` to match
  Google's original model, and so does this module. Digital silence gives -8 after that rescaling, far below any
  real microphone's noise floor, so frames are floored at :data:`MEL_FLOOR` (a noise floor ~110 dB below full
  scale): zero padding then looks like a very quiet room instead of an out-of-range input.
* ``embedding_model.tflite``: 76 mel frames (0.775 s) -> one 96-d embedding; taken every 8 frames (80 ms).

A 2 s window (32,000 samples) gives 197 mel frames and 16 embeddings.

The files are not in the repository: ``setup.py`` downloads the ``openwakeword==0.5.1`` wheel with
``pip download --no-deps`` at install time, checks its sha256 and both models' sha256, and keeps only the two
models and the wheel's licence in ``affectlite/models/third_party/``. Offline installs still succeed; the voice
path then uses the log-mel model and logs how to fix it (:func:`front_end_status`).

Terms: the speech_embedding backbone is Google's (Apache-2.0 on TF Hub); openWakeWord's code is Apache-2.0 but
its README states CC BY-NC-SA 4.0 for the models it ships. The stricter one (non-commercial, share-alike) is
recorded for these files and the voice model built on them.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ._io import sha256_file
from .errors import InputError, ModelLoadError

__all__ = [
    "EMBEDDING_DIM",
    "EMBEDDING_FILE",
    "EMBEDDING_SHA256",
    "FRONT_END_DIR",
    "FRONT_END_NAME",
    "FRONT_END_TERMS",
    "HOP_FRAMES",
    "LICENSE_FILE",
    "MEL_FILE",
    "MEL_FLOOR",
    "MEL_SHA256",
    "WINDOW_FRAMES",
    "SpeechEmbedding",
    "front_end_status",
    "n_embeddings",
    "n_mel_frames",
]

#: Where setup.py puts the files (git-ignored).
FRONT_END_DIR = Path(__file__).resolve().parent / "models" / "third_party"
#: Source wheel (kept in sync with setup.py).
WHEEL = "openwakeword==0.5.1"
MEL_FILE = "speech_embedding_melspectrogram.tflite"
MEL_SHA256 = "96fa0adccb6e8cf95cb14465409a1a2898ee4a96a85bb9ed3c7eb0e68bf163e8"
EMBEDDING_FILE = "speech_embedding.tflite"
EMBEDDING_SHA256 = "c0aea21eb84a4ce90a08c870da41b7a7173b45269e6a3207c71d67c40f3a59d8"
LICENSE_FILE = "openwakeword-0.5.1.LICENSE.txt"
#: The name voice model cards use for this front end (``inputs[0].preprocessing.front_end``).
FRONT_END_NAME = "speech_embedding/openwakeword-0.5.1"
FRONT_END_TERMS = ("Google speech_embedding (Lin et al. 2020; Apache-2.0 on TF Hub) as shipped in openwakeword "
                   "0.5.1, whose models are stated CC BY-NC-SA 4.0: the stricter terms (non-commercial, "
                   "share-alike) apply")
SAMPLE_RATE = 16000
HOP = 160
WINDOW_FRAMES = 76
HOP_FRAMES = 8
EMBEDDING_DIM = 96
N_MELS = 32
#: Floor of the rescaled log-mel (see the module docstring).
MEL_FLOOR = 0.0
_INT16 = 32767.0


def n_mel_frames(n_samples: int) -> int:
    """Mel frames the melspectrogram model gives for ``n_samples`` samples (``ceil(n / 160 - 3)``)."""
    return max(0, int(np.ceil(n_samples / HOP - 3)))


def n_embeddings(n_frames: int) -> int:
    """Embeddings from ``n_frames`` mel frames (one per 8 frames once 76 are there)."""
    return 0 if n_frames < WINDOW_FRAMES else 1 + (n_frames - WINDOW_FRAMES) // HOP_FRAMES


def front_end_status(directory: str | os.PathLike[str] | None = None, *, check_hash: bool = False) -> str:
    """``""`` when both front-end files are installed, else what is missing and how to fix it.

    Args:
        directory: Where to look (default :data:`FRONT_END_DIR`).
        check_hash: Also compare the files' sha256 with the pinned ones (reads 2.4 MB).
    """
    d = Path(directory) if directory is not None else FRONT_END_DIR
    missing = [f for f in (MEL_FILE, EMBEDDING_FILE) if not (d / f).is_file()]
    fix = ("reinstall affectlite with network access (setup.py fetches them from the openwakeword==0.5.1 wheel), "
           "or run: python setup.py build_py")
    if missing:
        return f"speech_embedding front end not installed ({', '.join(missing)} missing in {d}); {fix}"
    if check_hash:
        for f, want in ((MEL_FILE, MEL_SHA256), (EMBEDDING_FILE, EMBEDDING_SHA256)):
            got = sha256_file(d / f)
            if got != want:
                return f"{d / f} has sha256 {got}, expected {want}; {fix}"
    return ""


class SpeechEmbedding:
    """The two front-end models, one interpreter each. Not thread-safe: create one per thread.

    Args:
        directory: Folder with the two files (default :data:`FRONT_END_DIR`).
        backend: Interpreter backend (``"auto"``, ``"litert"``, ...).
        num_threads: Interpreter threads.

    Raises:
        ModelLoadError: the files are missing (the message says how to install them) or corrupt.
    """

    def __init__(self, directory: str | os.PathLike[str] | None = None, *, backend: str = "auto",
                 num_threads: int | None = 1) -> None:
        from .interpreters import create_interpreter

        d = Path(directory) if directory is not None else FRONT_END_DIR
        why = front_end_status(d)
        if why:
            raise ModelLoadError(why)
        self._mel_n = 2 * SAMPLE_RATE
        self._mel, self.backend = create_interpreter(d / MEL_FILE, backend=backend, num_threads=num_threads,
                                                     input_shapes=[(1, self._mel_n)])
        self._emb_n = 16
        self._emb, _ = create_interpreter(d / EMBEDDING_FILE, backend=backend, num_threads=num_threads,
                                          input_shapes=[(self._emb_n, WINDOW_FRAMES, N_MELS, 1)])
        self._mel_in = int(self._mel.get_input_details()[0]["index"])
        self._mel_out = int(self._mel.get_output_details()[0]["index"])
        self._emb_in = int(self._emb.get_input_details()[0]["index"])
        self._emb_out = int(self._emb.get_output_details()[0]["index"])

    def mel(self, samples: np.ndarray) -> np.ndarray:
        """Rescaled, floored log-mel frames ``(n_mel_frames(len), 32)`` of float samples in [-1, 1].

        Raises:
            InputError: not 1-D, non-finite, or shorter than 640 samples (one frame).
        """
        x = np.asarray(samples, np.float32)
        if x.ndim != 1 or not np.isfinite(x).all():
            raise InputError("speech_embedding: samples must be 1-D finite float audio in [-1, 1]")
        if n_mel_frames(x.size) < 1:
            raise InputError(f"speech_embedding: {x.size} samples is too short (at least {4 * HOP + 1})")
        if x.size != self._mel_n:
            self._mel.resize_tensor_input(self._mel_in, [1, x.size], strict=False)
            self._mel.allocate_tensors()
            self._mel_n = x.size
        self._mel.set_tensor(self._mel_in, (x * _INT16)[None, :])
        self._mel.invoke()
        m = np.asarray(self._mel.get_tensor(self._mel_out), np.float32).reshape(-1, N_MELS)
        out: np.ndarray = np.maximum(m / 10.0 + 2.0, MEL_FLOOR).astype(np.float32)
        return out

    def embed(self, mel: np.ndarray) -> np.ndarray:
        """Embeddings ``(n_embeddings(frames), 96)`` of rescaled mel frames ``(frames, 32)``."""
        m = np.asarray(mel, np.float32)
        n = n_embeddings(m.shape[0])
        if n == 0:
            return np.zeros((0, EMBEDDING_DIM), np.float32)
        idx = np.arange(n)[:, None] * HOP_FRAMES + np.arange(WINDOW_FRAMES)[None, :]
        batch = m[idx][..., None]
        if n != self._emb_n:
            self._emb.resize_tensor_input(self._emb_in, [n, WINDOW_FRAMES, N_MELS, 1], strict=False)
            self._emb.allocate_tensors()
            self._emb_n = n
        self._emb.set_tensor(self._emb_in, np.ascontiguousarray(batch))
        self._emb.invoke()
        return np.asarray(self._emb.get_tensor(self._emb_out), np.float32).reshape(n, EMBEDDING_DIM)

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        """Embeddings of float samples in [-1, 1]: :meth:`embed` of :meth:`mel`."""
        return self.embed(self.mel(samples))
