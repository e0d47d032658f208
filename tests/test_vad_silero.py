"""Silero VAD in numpy: exact streaming against references, the auto choice and its fallback, bad input."""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import affectlite.vad as vad_mod
from affectlite import _silero_weights as sw
from affectlite import audio_features as af
from affectlite import vad_silero as vs
from affectlite.errors import BackendNotInstalledError, ConfigError, InputError, ModelLoadError
from affectlite.options import VoiceOptions
from affectlite.vad import EnergyVAD, available_vads, create_vad, register_vad

needs_model = pytest.mark.skipif(vs.missing_hint() is not None, reason=vs.INSTALL_HINT)
ONNX = vs._wheel_model_path()
needs_onnx = pytest.mark.skipif(ONNX is None, reason="silero_vad.onnx not found: pip install --no-deps "
                                "silero-vad==6.2.3 (the ONNX references are optional)")


def _speech(tmp_path: Path) -> np.ndarray:
    """Two espeak-ng sentences with silence around them (16 kHz float32; skips without espeak-ng)."""
    exe = shutil.which("espeak-ng") or shutil.which("espeak")
    if exe is None:
        pytest.skip("espeak-ng not installed (apt-get install espeak-ng): needed to synthesise speech")
    out = tmp_path / "speech.wav"
    subprocess.run([exe, "-w", str(out), "The weather is lovely today. Shall we walk to the river?"],
                   check=True, capture_output=True, timeout=60)
    x = af.load_audio(out, 16000)
    sil = np.zeros(16000, np.float32)
    return np.concatenate([sil, x, sil]).astype(np.float32)


def _reference(w: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """Silero v6 written out chunk by chunk, loop by loop, in float64 (the network as PyTorch defines it)."""
    n = x.size // 512
    ctx = np.zeros(64)
    h, c = np.zeros(128), np.zeros(128)
    basis = w["stft"][:, 0, :].astype(np.float64)
    sig = lambda v: 1.0 / (1.0 + np.exp(-v))  # noqa: E731

    def conv(z: np.ndarray, W: np.ndarray, b: np.ndarray, stride: int) -> np.ndarray:
        zp = np.pad(z, ((0, 0), (1, 1)))
        t_out = (z.shape[1] + 2 - 3) // stride + 1
        return np.stack([np.einsum("oik,ik->o", W, zp[:, t * stride:t * stride + 3]) + b for t in range(t_out)],
                        axis=1)

    out = []
    for i in range(n):
        chunk = np.concatenate([ctx, x[i * 512:(i + 1) * 512].astype(np.float64)])
        ctx = chunk[-64:]
        padded = np.pad(chunk, (0, 64), mode="reflect")
        spec = np.stack([basis @ padded[t * 128:t * 128 + 256] for t in range(4)], axis=1)  # (258, 4)
        z = np.sqrt(spec[:129] ** 2 + spec[129:] ** 2)
        for k, s in ((1, 1), (2, 2), (3, 2), (4, 1)):
            z = np.maximum(conv(z, w[f"conv{k}.weight"], w[f"conv{k}.bias"], s), 0.0)
        g = w["lstm.weight_ih"] @ z[:, 0] + w["lstm.bias_ih"] + w["lstm.weight_hh"] @ h + w["lstm.bias_hh"]
        gi, gf, gg, go = np.split(g, 4)
        c = sig(gf) * c + sig(gi) * np.tanh(gg)
        h = sig(go) * np.tanh(c)
        out.append(sig(w["out.weight"][0, :, 0] @ np.maximum(h, 0.0) + w["out.bias"][0]))
    return np.asarray(out)


# --------------------------------------------------------------------------------------- the real model
@needs_model
def test_scores_equal_a_chunk_by_chunk_reference_and_any_batching(tmp_path: Path) -> None:
    x = _speech(tmp_path)
    n = x.size // 512
    frames = x[:n * 512].reshape(n, 512)
    whole = vs.SileroVAD().process(frames)
    ref = _reference(vs.load_weights(), x)
    np.testing.assert_allclose(whole, ref, atol=2e-5)
    assert (ref >= 0.5).any() and (ref < 0.5).any()  # the comparison covers both decisions
    # the same stream in uneven batches (state and context carried between calls)
    v = vs.SileroVAD()
    rng = np.random.default_rng(0)
    parts, i = [], 0
    while i < n:
        k = int(rng.integers(1, 12))
        parts.append(v.process(frames[i:i + k]))
        i += k
    np.testing.assert_allclose(np.concatenate(parts), whole, atol=1e-6)
    # reset: the same stream again gives the same scores; the state is (h, c, context)
    h, c, ctx = v.state
    assert h.shape == c.shape == (128,) and ctx.shape == (64,) and np.array_equal(ctx, frames[-1, -64:])
    v.reset()
    assert not any(a.any() for a in v.state)
    np.testing.assert_allclose(v.process(frames), whole, atol=1e-6)


@needs_onnx
def test_the_installed_weights_are_the_onnx_ones() -> None:
    packed = vs.load_weights()
    from_onnx = vs.load_weights(ONNX)
    assert packed.keys() == from_onnx.keys() == sw.TENSORS.keys()
    for k in packed:
        np.testing.assert_array_equal(packed[k], from_onnx[k])
    assert ONNX is not None
    raw = sw.read_onnx(ONNX.read_bytes())
    assert sw.unpack(sw.pack(raw)) == raw


@needs_model
@needs_onnx
def test_matches_onnxruntime_on_the_onnx_file(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime not installed: the ONNX reference is optional")
    x = _speech(tmp_path)
    n = x.size // 512
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(ONNX), so, providers=["CPUExecutionProvider"])
    state = np.zeros((2, 1, 128), np.float32)
    ctx = np.zeros((1, 64), np.float32)
    ref = []
    for i in range(n):
        inp = np.concatenate([ctx, x[None, i * 512:(i + 1) * 512]], axis=1)
        o, state = sess.run(None, {"input": inp, "state": state, "sr": np.array(16000, np.int64)})
        ctx = inp[:, -64:]
        ref.append(float(o[0, 0]))
    np.testing.assert_allclose(vs.SileroVAD().process(x[:n * 512].reshape(n, 512)), ref, atol=2e-5)


@needs_model
def test_speech_is_found_and_noise_silence_tones_are_not(tmp_path: Path) -> None:
    x = _speech(tmp_path)
    n = x.size // 512
    p = vs.SileroVAD().process(x[:n * 512].reshape(n, 512))
    lead = 16000 // 512  # the second of silence in front
    assert (p[:lead - 1] < 0.5).all()
    assert (p[lead:n - lead] >= 0.5).mean() > 0.5
    rng = np.random.default_rng(1)
    white = (0.1 * rng.standard_normal(512 * 100)).astype(np.float32)
    chord = sum(0.1 * np.sin(2 * np.pi * f * np.arange(512 * 100) / 16000) for f in (261.6, 329.6, 392.0))
    for name, sig in (("white", white), ("chord", np.asarray(chord, np.float32)),
                      ("silence", np.zeros(512 * 100, np.float32))):
        assert (vs.SileroVAD().process(sig.reshape(100, 512)) < 0.5).mean() > 0.95, name


@needs_model
def test_auto_is_silero_and_the_analyzer_uses_it(shared_datasets: Path) -> None:
    from affectlite.voice import VoiceAnalyzer

    assert isinstance(create_vad("auto"), vs.SileroVAD)
    assert isinstance(create_vad("silero"), vs.SileroVAD)
    assert VoiceOptions().vad == "auto"
    clip = sorted((shared_datasets / "ravdess-speech-16k" / "Actor_01").glob("*.flac"))[0]
    x = af.load_audio(clip, 16000)
    an = VoiceAnalyzer(VoiceOptions())
    try:
        assert an._fl == 512
        res = an.classify_clip(x, 16000)
        assert res is not None and res.speech_s > 0.5
        # streaming: one utterance, one final result
        out = an.push(x, 0) + an.flush()
        assert sum(r.is_final for r in out) == 1
    finally:
        an.close()


@needs_model
def test_bad_input() -> None:
    v = vs.SileroVAD()
    with pytest.raises(InputError, match=r"shape \(n, 512\)"):
        v.process(np.zeros((2, 480), np.float32))
    with pytest.raises(InputError, match="NaN"):
        v.process(np.full((1, 512), np.nan, np.float32))
    assert v.process(np.zeros((0, 512), np.float32)).shape == (0,)
    with pytest.raises(ConfigError, match="16000"):
        vs.SileroVAD(sample_rate=8000)


# ----------------------------------------------------------------- without the model / with a wrong file
@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(vs, "PACKAGED_MODEL", tmp_path / "missing" / vs.PACKED_FILE)
    monkeypatch.setattr(vs, "_wheel_model_path", lambda: None)
    monkeypatch.setattr(vad_mod, "_auto_logged", False)


@pytest.mark.usefixtures("no_model")
def test_auto_falls_back_to_energy_with_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    assert vs.missing_hint() == vs.INSTALL_HINT
    with caplog.at_level(logging.WARNING, logger="affectlite.vad"):
        vads = [create_vad("auto") for _ in range(3)]
    assert all(isinstance(v, EnergyVAD) for v in vads)
    msgs = [r.getMessage() for r in caplog.records if r.name == "affectlite.vad"]
    assert len(msgs) == 1 and "energy VAD" in msgs[0] and "pip install --no-deps silero-vad==6.2.3" in msgs[0]
    with pytest.raises(BackendNotInstalledError, match=r"silero-vad==6\.2\.3"):
        create_vad("silero")


def test_a_file_that_is_not_the_pinned_model_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    bad = tmp_path / vs.PACKED_FILE
    bad.write_bytes(b"\x08\x07" * 100)
    monkeypatch.setattr(vs, "PACKAGED_MODEL", bad)
    monkeypatch.setattr(vad_mod, "_auto_logged", False)
    with pytest.raises(ModelLoadError, match="sha256"):
        vs.SileroVAD()
    with pytest.raises(ModelLoadError, match="sha256"):
        vs.SileroVAD(model_path=bad)
    with pytest.raises(ModelLoadError, match="missing"):
        vs.load_weights(tmp_path / "missing.onnx")
    with caplog.at_level(logging.WARNING, logger="affectlite.vad"):
        assert isinstance(create_vad("auto"), EnergyVAD)
    assert any("sha256" in r.getMessage() for r in caplog.records)


def test_the_protobuf_reader_on_a_built_onnx_and_on_damaged_bytes() -> None:
    onnx = pytest.importorskip("onnx", reason="onnx (the convert extra) builds the test model")
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(0)
    want = {k: rng.standard_normal(shape).astype(np.float32) for k, (_, shape) in sw.TENSORS.items()}
    nodes = []
    for i, (k, (onnx_name, _)) in enumerate(sw.TENSORS.items()):
        t = numpy_helper.from_array(want[k], name=f"t{i}")
        if i % 2:  # both encodings: raw_data and float_data
            t = helper.make_tensor(f"t{i}", onnx.TensorProto.FLOAT, want[k].shape, want[k].ravel().tolist())
        nodes.append(helper.make_node("Constant", [], [sw.BRANCH + onnx_name], value=t))
    ident = helper.make_node("Identity", [sw.BRANCH + "decoder.decoder.2.bias"], ["y"])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])
    branch = helper.make_graph([*nodes, ident], "then", [], [y])
    other = helper.make_graph([helper.make_node("Constant", [], ["y"], value=numpy_helper.from_array(
        np.zeros(1, np.float32)))], "else", [], [y])
    top = helper.make_graph([helper.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=other)], "g",
                            [helper.make_tensor_value_info("c", onnx.TensorProto.BOOL, [])], [y])
    data = helper.make_model(top).SerializeToString()
    got = sw.read_onnx(data)
    for k, v in want.items():
        shape, raw = got[k]
        np.testing.assert_array_equal(np.frombuffer(raw, "<f4").reshape(shape), v)
    assert sw.unpack(sw.pack(got)) == got
    with pytest.raises(ValueError):
        sw.read_onnx(data[: len(data) // 2])
    with pytest.raises(ValueError, match="no constant"):
        sw.read_onnx(helper.make_model(helper.make_graph([], "g", [], [])).SerializeToString())
    packed = sw.pack(got)
    for damaged in (packed[:4], packed[:100], packed[:-4]):
        with pytest.raises(ValueError):
            sw.unpack(damaged)


# ------------------------------------------------------------------------------------------ options
def test_builtin_names_and_options() -> None:
    assert available_vads()[:4] == ["auto", "energy", "none", "silero"]
    for name in ("auto", "silero"):
        with pytest.raises(ConfigError, match="built in"):
            register_vad(name, lambda **k: EnergyVAD())
        assert VoiceOptions(vad=name).vad == name
    with pytest.raises(ConfigError, match=r"unknown VAD 'silerro'.*auto, energy, none, silero"):
        create_vad("silerro")
    with pytest.raises(ConfigError):
        VoiceOptions(vad="")
