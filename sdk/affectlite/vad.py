"""Voice activity detection: Silero VAD (neural) where installed, else a numpy energy + spectral gate; plugins.

A detector sees 16 kHz float32 mono audio in fixed frames and says, per frame, whether it is speech.
Built in:

* ``"silero"``: :class:`affectlite.vad_silero.SileroVAD`, the Silero VAD v6 network (MIT) run in numpy on
  32 ms frames; its model file is fetched at install time (see that module);
* ``"energy"``: :class:`EnergyVAD` (below), numpy only, no model file;
* ``"auto"`` (the default of ``voice.vad``): ``"silero"`` when its model is installed, else ``"energy"``, with
  one log line (per process) saying why and how to install the model;
* ``"none"``: every frame is speech.

:class:`EnergyVAD` combines three cues per 30 ms frame:

* **energy gate**: frame energy at least ``threshold_db`` above an adaptive noise floor (which follows
  the quietest recent frames, so stationary noise such as fans or hiss raises the floor and is not
  speech), and above an absolute floor (-55 dBFS) so that near-silence never counts;
* **spectral gate** (on the pre-emphasised frame, which whitens rumble and brown noise): at least 30%
  of the energy in the speech band (100-4000 Hz), and either voicing (window-corrected normalised
  autocorrelation peak > 0.55 at a pitch lag of 2.5-12.5 ms, i.e. 80-400 Hz) or a clearly non-flat
  speech-band spectrum (spectral flatness < 0.15; white, pink and brown noise sit at 0.2-0.6).

Unvoiced consonants fail the voicing cue on their own; the segment logic of
:class:`affectlite.voice.VoiceAnalyzer` bridges them with its hangover.

Plugins implement :class:`VoiceActivityDetector` and are registered by name::

    affectlite.vad.register_vad("my-vad", lambda threshold_db, sample_rate: MyVAD())
    VoiceOptions(vad="my-vad")
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np

from .errors import BackendNotInstalledError, ConfigError, InputError, ModelLoadError

__all__ = [
    "BUILTIN_VADS",
    "EnergyVAD",
    "NoVAD",
    "VADFactory",
    "VoiceActivityDetector",
    "available_vads",
    "create_vad",
    "register_vad",
]

SAMPLE_RATE = 16000
#: Names :func:`create_vad` knows without plugins (they cannot be registered).
BUILTIN_VADS = ("auto", "energy", "none", "silero")

log = logging.getLogger(__name__)
_auto_logged = False


@runtime_checkable
class VoiceActivityDetector(Protocol):
    """What a voice activity detector provides (the plugin protocol).

    Attributes:
        frame_length: Samples per decision frame at 16 kHz (e.g. 480 for 30 ms).
    """

    frame_length: int

    def process(self, frames: np.ndarray) -> np.ndarray:
        """Score consecutive frames of one stream.

        Args:
            frames: float32 ``(n, frame_length)`` array: the next ``n`` frames of the stream, in order.

        Returns:
            float32 ``(n,)`` speech scores in [0, 1]; a frame is speech when its score is >= 0.5.
        """
        ...

    def reset(self) -> None:
        """Forget the stream (noise floor, state): the next frame starts a new stream."""
        ...


#: ``factory(threshold_db=..., sample_rate=...)`` -> a detector.
VADFactory = Callable[..., VoiceActivityDetector]


class NoVAD:
    """Every frame is speech (``vad="none"``): every window is classified."""

    frame_length = 480

    def process(self, frames: np.ndarray) -> np.ndarray:
        """All ones: every frame is speech."""
        return np.ones(np.asarray(frames).shape[0], dtype=np.float32)

    def reset(self) -> None:
        """Nothing to forget."""


class EnergyVAD:
    """Energy + spectral gate VAD in numpy (see the module docstring).

    Args:
        threshold_db: How far above the adaptive noise floor a frame's energy must be (dB).
        sample_rate: Must be 16000 (audio is resampled before it gets here).
        abs_floor_db: Frames quieter than this (dBFS) are never speech.
        floor_rise_db_per_s: How fast the noise floor may rise when the level goes up (dB per second);
            it falls to a quieter frame at once.
    """

    frame_length = 480  # 30 ms
    _NFFT = 1024

    def __init__(self, threshold_db: float = 12.0, sample_rate: int = SAMPLE_RATE,
                 abs_floor_db: float = -55.0, floor_rise_db_per_s: float = 3.0) -> None:
        if sample_rate != SAMPLE_RATE:
            raise ConfigError(f"EnergyVAD works on {SAMPLE_RATE} Hz audio, got sample_rate={sample_rate}")
        if not 0.0 <= float(threshold_db) <= 60.0:
            raise ConfigError(f"vad_threshold_db must be within 0..60 dB, got {threshold_db!r}")
        self.threshold_db = float(threshold_db)
        self.abs_floor_db = float(abs_floor_db)
        self._rise = float(floor_rise_db_per_s) * self.frame_length / sample_rate
        freqs = np.fft.rfftfreq(self._NFFT, 1.0 / sample_rate)
        self._band = (freqs >= 100.0) & (freqs <= 4000.0)
        self._win = np.hanning(self.frame_length).astype(np.float32)
        self._lag_lo, self._lag_hi = sample_rate // 400, sample_rate // 80
        wac = np.correlate(self._win, self._win, mode="full")[self.frame_length - 1:]
        self._win_ac = (wac / wac[0])[self._lag_lo:self._lag_hi + 1].astype(np.float64)
        self._floor: float | None = None

    def reset(self) -> None:
        """Forget the noise floor."""
        self._floor = None

    def features(self, frames: np.ndarray) -> dict[str, np.ndarray]:
        """Per-frame cues: ``energy_db``, ``band_ratio``, ``flatness``, ``voicing`` (for tuning/debugging)."""
        x = np.asarray(frames, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.frame_length:
            raise InputError(f"EnergyVAD.process: expected frames of shape (n, {self.frame_length}), "
                             f"got {list(x.shape)}")
        x = x - x.mean(axis=1, keepdims=True)
        energy_db = 10.0 * np.log10(np.mean(x.astype(np.float64) ** 2, axis=1) + 1e-12)
        # spectral cues on the pre-emphasised frame: flattens rumble/brown noise, keeps harmonics
        xe = np.concatenate([x[:, :1], x[:, 1:] - 0.97 * x[:, :-1]], axis=1)
        spec = np.fft.rfft(xe * self._win, n=self._NFFT, axis=1)
        p = spec.real ** 2 + spec.imag ** 2 + 1e-20
        band = p[:, self._band]
        band_ratio = band.sum(axis=1) / p.sum(axis=1)
        flatness = np.exp(np.log(band).mean(axis=1)) / band.mean(axis=1)
        # autocorrelation of the speech band only; a peak at the shortest lag is just low-pass noise
        ac = np.fft.irfft(np.where(self._band[None, :], p, 0.0), n=self._NFFT, axis=1)
        seg = ac[:, self._lag_lo:self._lag_hi + 1]
        norm = seg / np.maximum(ac[:, :1], 1e-20) / self._win_ac[None, :]
        k = norm.argmax(axis=1)
        voicing = np.where(k > 0, norm[np.arange(norm.shape[0]), k], 0.0)
        return {"energy_db": energy_db, "band_ratio": band_ratio, "flatness": flatness, "voicing": voicing}

    def process(self, frames: np.ndarray) -> np.ndarray:
        """Speech scores (0 or 1 softened by the energy margin) of consecutive frames; updates the floor."""
        f = self.features(frames)
        e = f["energy_db"]
        out = np.zeros(e.size, dtype=np.float32)
        spectral = (f["band_ratio"] > 0.3) & ((f["voicing"] > 0.55) | (f["flatness"] < 0.15))
        for i, ei in enumerate(e):
            if self._floor is None:
                self._floor = float(ei)
            margin = float(ei) - (self._floor + self.threshold_db)
            if ei > self.abs_floor_db and margin > 0 and spectral[i]:
                out[i] = float(min(1.0, 0.5 + margin / 20.0))
            else:
                out[i] = float(max(0.0, min(0.49, 0.25 + margin / 40.0)))
            # floor: drops to quieter frames at once, rises slowly (so speech does not lift it much)
            self._floor = float(ei) if ei < self._floor else self._floor + min(self._rise, float(ei) - self._floor)
        return out


_REGISTRY: dict[str, VADFactory] = {}


def register_vad(name: str, factory: VADFactory) -> None:
    """Register a VAD plugin under ``name`` (then ``VoiceOptions(vad=name)`` uses it).

    Args:
        name: Lower-case name; the built-in names (``"auto"``, ``"energy"``, ``"none"``, ``"silero"``)
            cannot be replaced.
        factory: Called as ``factory(threshold_db=float, sample_rate=16000)``; returns an object with
            ``frame_length``, ``process(frames)`` and ``reset()`` (:class:`VoiceActivityDetector`).

    Raises:
        ConfigError: bad name or a built-in name.
    """
    if not isinstance(name, str) or not name or name != name.strip().lower():
        raise ConfigError(f"VAD plugin name must be a non-empty lower-case string, got {name!r}")
    if name in BUILTIN_VADS:
        raise ConfigError(f"VAD name {name!r} is built in; register the plugin under another name")
    if not callable(factory):
        raise ConfigError(f"VAD factory for {name!r} must be callable, got {type(factory).__name__}")
    _REGISTRY[name] = factory


def available_vads() -> list[str]:
    """Names accepted by :func:`create_vad` (built-ins first)."""
    return [*BUILTIN_VADS, *sorted(_REGISTRY)]


def _auto_vad(threshold_db: float, sample_rate: int) -> VoiceActivityDetector:
    """Silero when its model is installed and loads, else the energy VAD (logged once per process)."""
    global _auto_logged
    from . import vad_silero

    reason = vad_silero.missing_hint()
    if reason is None:
        try:
            return vad_silero.SileroVAD(sample_rate=sample_rate)
        except (BackendNotInstalledError, ModelLoadError) as e:
            reason = str(e)
    if not _auto_logged:
        _auto_logged = True
        log.warning("voice.vad=auto: using the energy VAD because %s", reason)
    return EnergyVAD(threshold_db=threshold_db, sample_rate=sample_rate)


def create_vad(name: str, threshold_db: float = 12.0, sample_rate: int = SAMPLE_RATE) -> VoiceActivityDetector:
    """Create a VAD by name: ``"auto"``, ``"silero"``, ``"energy"``, ``"none"`` or a registered plugin.

    Args:
        name: The detector (see the module docstring).
        threshold_db: The energy VAD's threshold above its noise floor (the other built-ins ignore it).
        sample_rate: Must be 16000.

    Raises:
        ConfigError: unknown name (the message lists the available ones), a sample rate other than 16000, or
            a plugin that does not follow :class:`VoiceActivityDetector`.
        BackendNotInstalledError: ``"silero"`` and its model is not installed (the message says how to install
            it; ``"auto"`` falls back to the energy VAD instead).
        ModelLoadError: ``"silero"`` and the installed model file is not the pinned one.
    """
    if name == "energy":
        return EnergyVAD(threshold_db=threshold_db, sample_rate=sample_rate)
    if name == "none":
        return NoVAD()
    if name == "auto":
        return _auto_vad(threshold_db, sample_rate)
    if name == "silero":
        from .vad_silero import SileroVAD

        return SileroVAD(sample_rate=sample_rate)
    factory = _REGISTRY.get(name)
    if factory is None:
        raise ConfigError(f"voice.vad: unknown VAD {name!r}; available: {', '.join(available_vads())} "
                          "(register plugins with affectlite.vad.register_vad)")
    vad = factory(threshold_db=threshold_db, sample_rate=sample_rate)
    fl = getattr(vad, "frame_length", None)
    if not isinstance(vad, VoiceActivityDetector) or not isinstance(fl, int) or fl <= 0:
        raise ConfigError(f"VAD plugin {name!r} must provide an int frame_length > 0, process(frames) and "
                          "reset()")
    return vad
