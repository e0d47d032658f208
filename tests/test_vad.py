"""Voice activity detection: silence and noise are not speech, real speech is; plugins."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from affectlite import audio_features as af
from affectlite.errors import ConfigError, InputError
from affectlite.vad import EnergyVAD, NoVAD, available_vads, create_vad, register_vad


def _frames(x: np.ndarray, fl: int = 480) -> np.ndarray:
    n = x.size // fl
    return x[: n * fl].reshape(n, fl)


def _coloured_noise(power: float, seconds: float, seed: int, rms: float = 0.05) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(16000 * seconds)
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / 16000)
    spec[1:] /= f[1:] ** (power / 2)
    spec[0] = 0
    x = np.fft.irfft(spec, n).astype(np.float32)
    out: np.ndarray = (x * (rms / x.std())).astype(np.float32)
    return out


def espeak(tmp_path: Path, text: str) -> np.ndarray:
    """Speech synthesised with espeak-ng, as 16 kHz float32 (skips when espeak-ng is absent)."""
    exe = shutil.which("espeak-ng") or shutil.which("espeak")
    if exe is None:
        pytest.skip("espeak-ng not installed (apt-get install espeak-ng): needed to synthesise speech")
    out = tmp_path / "speech.wav"
    subprocess.run([exe, "-w", str(out), text], check=True, capture_output=True, timeout=60)
    return af.load_audio(out, 16000)


@pytest.mark.parametrize("power", [0.0, 1.0, 2.0])  # white, pink, brown
def test_noise_is_not_speech_even_as_a_sudden_burst(power: float) -> None:
    for seed in range(2):
        noise = _coloured_noise(power, 4.0, seed)
        quiet = np.zeros(16000, np.float32)
        scores = EnergyVAD().process(_frames(np.concatenate([quiet, noise])))
        assert int((scores >= 0.5).sum()) == 0, f"noise power {power}, seed {seed}"


def test_silence_and_tones_are_not_speech() -> None:
    vad = EnergyVAD()
    assert (vad.process(_frames(np.zeros(48000, np.float32))) < 0.5).all()
    rng = np.random.default_rng(0)
    assert (vad.process(_frames((rng.standard_normal(48000) * 1e-4).astype(np.float32))) < 0.5).all()
    hum = (0.3 * np.sin(2 * np.pi * 50 * np.arange(48000) / 16000)).astype(np.float32)  # mains hum
    assert (EnergyVAD().process(_frames(hum)) < 0.5).all()


def test_synthesised_speech_is_speech_and_noise_floor_adapts(tmp_path: Path) -> None:
    speech = espeak(tmp_path, "Hello there. This is a test of the voice activity detector, "
                              "I am very happy to see you today.")
    pad = np.zeros(16000, np.float32)
    scores = EnergyVAD().process(_frames(np.concatenate([pad, 0.5 * speech, pad])))
    speech_frames = int((scores >= 0.5).sum())
    assert speech_frames >= 0.25 * speech.size / 480, speech_frames
    assert (scores[: 16000 // 480] < 0.5).all()  # the leading silence is not speech
    # in steady fan-like noise at 20 dB SNR the speech is still found, the noise alone is not
    noise = _coloured_noise(1.0, (speech.size + 32000) / 16000, 3, rms=0.5 * float(speech.std()) / 10)
    mixed = noise.copy()
    mixed[16000:16000 + speech.size] += 0.5 * speech
    s2 = EnergyVAD().process(_frames(mixed))
    assert int((s2 >= 0.5).sum()) >= 0.15 * speech.size / 480
    assert (s2[: 16000 // 480] < 0.5).all()


def test_ravdess_speech_is_speech(shared_datasets: Path) -> None:
    folder = shared_datasets / "ravdess-speech-16k" / "Actor_01"
    files = sorted(folder.glob("*.flac"))[:6] if folder.is_dir() else []
    if not files:
        pytest.skip(f"RAVDESS not found at {folder}")
    for f in files:
        scores = EnergyVAD().process(_frames(af.load_audio(f)))
        assert int((scores >= 0.5).sum()) >= 10, f.name  # >= 0.3 s of voiced speech in each clip


def test_vad_input_checks_and_reset() -> None:
    vad = EnergyVAD()
    with pytest.raises(InputError, match=r"\(n, 480\)"):
        vad.process(np.zeros((3, 100), np.float32))
    with pytest.raises(ConfigError, match="16000"):
        EnergyVAD(sample_rate=8000)
    with pytest.raises(ConfigError, match="vad_threshold_db"):
        EnergyVAD(threshold_db=-3)
    vad.process(_frames(np.full(4800, 0.1, np.float32)))
    vad.reset()
    assert vad._floor is None


class _LoudnessVAD:
    """A trivial plugin: speech when RMS > 0.05."""

    frame_length = 320

    def __init__(self, threshold_db: float, sample_rate: int) -> None:
        self.calls = 0

    def process(self, frames: np.ndarray) -> np.ndarray:
        self.calls += 1
        out: np.ndarray = (np.sqrt((frames ** 2).mean(axis=1)) > 0.05).astype(np.float32)
        return out

    def reset(self) -> None:
        self.calls = 0


def test_plugin_registry() -> None:
    register_vad("loudness-test", _LoudnessVAD)
    assert "loudness-test" in available_vads()
    v = create_vad("loudness-test")
    assert v.frame_length == 320
    assert v.process(np.full((2, 320), 0.1, np.float32)).tolist() == [1.0, 1.0]
    assert isinstance(create_vad("none"), NoVAD)
    assert isinstance(create_vad("energy", threshold_db=6), EnergyVAD)
    with pytest.raises(ConfigError, match=r"unknown VAD 'nope'.*auto, energy, none, silero"):
        create_vad("nope")
    with pytest.raises(ConfigError, match="built in"):
        register_vad("energy", _LoudnessVAD)
    register_vad("broken-test", lambda **k: object())  # type: ignore[arg-type,return-value]
    with pytest.raises(ConfigError, match="frame_length"):
        create_vad("broken-test")
