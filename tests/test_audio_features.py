"""Audio feature code: resampling, framing, log-mel, spec checks, file loading, train/runtime parity."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from affectlite import audio_features as af
from affectlite.errors import InputError, ModelCardError, SourceUnavailableError

SPEC = af.DEFAULT_SPEC


def _sine(freq: float, rate: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize(("src", "dst"), [(44100, 16000), (48000, 16000), (8000, 16000), (22050, 16000),
                                          (16000, 11025)])
def test_resample_sine_matches_analytic(src: int, dst: int) -> None:
    x = _sine(440.0, src, 1.0)
    y = af.resample(x, src, dst)
    assert y.dtype == np.float32
    assert y.size == int(np.ceil(x.size * dst / src))
    ref = 0.5 * np.sin(2 * np.pi * 440.0 * np.arange(y.size) / dst)
    edge = dst // 50  # ignore the zero-padded edges
    err = np.abs(y[edge:-edge] - ref[edge:-edge]).max()
    assert err < 2e-3, f"{src}->{dst}: max error {err}"


def test_resample_removes_frequencies_above_new_nyquist() -> None:
    x = _sine(10000.0, 44100, 1.0)  # above 8 kHz: must not alias into 16 kHz output
    y = af.resample(x, 44100, 16000)
    assert np.abs(y[400:-400]).max() < 0.01
    kept = af.resample(_sine(6000.0, 44100, 1.0), 44100, 16000)  # below the 94% cutoff: kept
    assert abs(kept[400:-400].std() - 0.5 / np.sqrt(2)) < 0.01


def test_resample_identity_and_bad_rates() -> None:
    x = _sine(100.0, 16000, 0.1)
    assert np.array_equal(af.resample(x, 16000, 16000), x)
    for bad in (0, -8000, 16000.5, True):
        with pytest.raises(InputError, match="positive integer"):
            af.resample(x, bad, 16000)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="1-D"):
        af.resample(np.zeros((10, 2), np.float32), 8000, 16000)


def test_to_float32_scales_and_rejects_bad_input() -> None:
    assert af.to_float32(np.array([-32768, 0, 16384], np.int16)).tolist() == [-1.0, 0.0, 0.5]
    assert af.to_float32(np.zeros((5, 1), np.float32)).shape == (5,)
    with pytest.raises(InputError, match="empty"):
        af.to_float32(np.zeros(0, np.float32))
    with pytest.raises(InputError, match="NaN"):
        af.to_float32(np.array([0.0, np.nan], np.float32))
    with pytest.raises(InputError, match="1-D"):
        af.to_float32(np.zeros((4, 2), np.float32))


def test_framing_counts_and_window_starts() -> None:
    assert af.window_samples(SPEC) == 32000
    assert af.n_frames(32000, SPEC) == 1 + (32000 - 400) // 160 == 198
    assert af.n_frames(399, SPEC) == 0
    assert af.window_starts(100, 40, 10) == [0, 10, 20, 30, 40, 50, 60]
    assert af.window_starts(105, 40, 10) == [0, 10, 20, 30, 40, 50, 60, 65]  # last one aligned to the end
    assert af.window_starts(30, 40, 10) == [0]                               # shorter than a window
    assert af.window_starts(40, 40, 10) == [0]


def test_log_mel_of_a_tone_peaks_in_the_right_band() -> None:
    x = _sine(1000.0, 16000, 2.0)
    lm = af.log_mel(x, SPEC)
    assert lm.shape == (198, 64) and lm.dtype == np.float32
    fb = af.mel_filterbank(SPEC)
    assert fb.shape == (257, 64)
    peak_band = int(lm.mean(axis=0).argmax())
    bin_1k = round(1000 / 8000 * 256)
    assert fb[bin_1k, peak_band] == fb[bin_1k].max()  # the band whose filter covers 1 kHz most
    quiet = af.log_mel(np.zeros(16000, np.float32), SPEC)
    assert np.allclose(quiet, np.log(SPEC["log_offset"]), atol=1e-4)  # silence = the log offset floor
    with pytest.raises(InputError, match="shorter than one frame"):
        af.log_mel(np.zeros(100, np.float32), SPEC)


def test_normalisation_is_gain_invariant() -> None:
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(32000) * 0.05).astype(np.float32) + _sine(300.0, 16000, 2.0, 0.2)
    a = af.compute_features(x, SPEC)
    b = af.compute_features(x * 0.25, SPEC)
    assert abs(float(a.mean())) < 1e-4 and abs(float(a.std()) - 1.0) < 1e-3
    d = np.abs(a - b)
    assert float(np.median(d)) < 1e-3 and float(d.max()) < 0.1  # exact but for the log offset
    cmn = af.normalise(af.log_mel(x, SPEC), {**SPEC, "normalisation": "window_cmn"})
    assert np.abs(cmn.mean(axis=0)).max() < 1e-4


def test_crop_of_clip_log_mel_equals_runtime_window_features() -> None:
    """Training crops the clip's log-mel at a frame offset; the runtime computes the window's samples."""
    from affectlite_convert.recipes import voice as recipe

    rng = np.random.default_rng(2)
    n = 16000 * 3 + 123
    clip = (rng.standard_normal(n) * 0.1).astype(np.float32) + _sine(220.0, 16000, 3.1, 0.3)[:n]
    full = af.log_mel(clip, recipe.SPEC)
    T = af.n_frames(af.window_samples(recipe.SPEC), recipe.SPEC)
    hop = recipe.SPEC["hop_length"]
    for k in (0, 7, 50, full.shape[0] - T):
        train = af.normalise(recipe._crop(full, k, T), recipe.SPEC)
        runtime = af.compute_features(clip[k * hop: k * hop + af.window_samples(recipe.SPEC)], recipe.SPEC)
        assert train.shape == runtime.shape == (T, 64)
        assert np.abs(train - runtime).max() < 1e-4
    # the recipe's clip evaluation uses the runtime's window placement (0.5 s hop, last one at the end;
    # in frames, so the last window may start up to one hop_length earlier than the runtime's)
    wins = recipe._clip_windows(full)
    W = af.window_samples(recipe.SPEC)
    starts = af.window_starts(clip.size, W, 8000)
    assert wins.shape[0] == len(starts)
    for i, s in enumerate(starts[:-1]):
        assert np.abs(wins[i, ..., 0] - af.compute_features(clip[s:s + W], recipe.SPEC)).max() < 1e-4
    s_last = (full.shape[0] - T) * hop
    assert abs(starts[-1] - s_last) < hop
    assert np.abs(wins[-1, ..., 0] - af.compute_features(clip[s_last:s_last + W], recipe.SPEC)).max() < 1e-4


def test_check_spec_accepts_the_default_and_lists_every_problem() -> None:
    s = af.check_spec(SPEC)
    assert s["sample_rate"] == 16000 and s["normalisation"] == "window_meanstd"
    assert af.check_spec({**SPEC, "n_frames": 198})["n_frames"] == 198
    bad = {k: v for k, v in SPEC.items() if k != "n_mels"}
    bad.update({"hop_length": 0, "normalisation": "utterance", "dither": 1.0, "mel_scale": "slaney"})
    with pytest.raises(ModelCardError) as ei:
        af.check_spec(bad, "card.json")
    msg = str(ei.value)
    for needle in ("card.json", "missing key 'n_mels'", "unknown key 'dither'", "'hop_length'", "'utterance'",
                   "'mel_scale'"):
        assert needle in msg
    with pytest.raises(ModelCardError, match="fmax"):
        af.check_spec({**SPEC, "fmax": 12000.0})
    with pytest.raises(ModelCardError, match="n_frames"):
        af.check_spec({**SPEC, "n_frames": 200})


def _write_wav(path: Path, x: np.ndarray, rate: int, channels: int = 1, width: int = 2) -> None:
    data = np.repeat(x[:, None], channels, axis=1)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        if width == 2:
            w.writeframes((data * 32767).astype("<i2").tobytes())
        else:
            w.writeframes((data * 2147483647).astype("<i4").tobytes())


def test_load_audio_wav_resamples_and_mixes_down(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    x = _sine(440.0, 22050, 0.5)
    p = tmp_path / "a.wav"
    _write_wav(p, x, 22050, channels=2)
    y = af.load_audio(p, 16000)
    assert y.dtype == np.float32 and y.size == int(np.ceil(x.size * 16000 / 22050))
    ref = 0.5 * np.sin(2 * np.pi * 440.0 * np.arange(y.size) / 16000)
    assert np.abs(y[300:-300] - ref[300:-300]).max() < 3e-3
    # without soundfile the standard-library WAV reader gives the same samples
    import builtins

    real_import = builtins.__import__

    def no_soundfile(name: str, *a: object, **k: object) -> object:
        if name == "soundfile":
            raise ImportError("no soundfile")
        return real_import(name, *a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", no_soundfile)
    z, rate = af.load_audio_with_rate(p)
    assert rate == 22050
    assert np.abs(z - x).max() < 1e-4
    p32 = tmp_path / "b.wav"
    _write_wav(p32, x, 22050, width=4)
    assert np.abs(af.load_audio(p32, None) - x).max() < 1e-6
    flac = tmp_path / "c.flac"
    flac.write_bytes(b"fLaC")
    with pytest.raises(SourceUnavailableError, match="pip install soundfile"):
        af.load_audio(flac)


def test_load_audio_flac_and_errors(tmp_path: Path) -> None:
    sf = pytest.importorskip("soundfile")
    x = _sine(300.0, 48000, 0.3)
    p = tmp_path / "a.flac"
    sf.write(str(p), x, 48000, subtype="PCM_16")
    y = af.load_audio(p)
    assert y.size == int(np.ceil(x.size / 3))
    with pytest.raises(SourceUnavailableError, match="does not exist"):
        af.load_audio(tmp_path / "missing.wav")
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not audio at all")
    with pytest.raises(InputError, match="cannot decode"):
        af.load_audio(junk)
