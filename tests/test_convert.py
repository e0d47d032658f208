"""Converter round trips: tiny models trained here on generated data -> int8 TFLite + card -> the runtime.

Every conversion is checked through the runtime (:class:`affectlite.model.Model` loading the written
``.tflite`` + ``.card.json`` pair) against the float model.
"""

from __future__ import annotations

import json
import os
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow", reason="the converter needs TensorFlow (pip install 'affectlite[convert]')")
keras = pytest.importorskip("keras")

from affectlite.card import card_path_for, load_card  # noqa: E402
from affectlite.errors import CalibrationError, ConversionError, InputError  # noqa: E402
from affectlite.model import Model  # noqa: E402
from affectlite_convert import ConversionResult, convert  # noqa: E402
from affectlite_convert import calibration as cal  # noqa: E402
from affectlite_convert import datasets as ds  # noqa: E402
from affectlite_convert.quantize import analyze_ops  # noqa: E402

pytestmark = pytest.mark.convert

LABELS3 = ["neutral", "happy", "sad"]
FAST = {"latency_threads": [1], "latency_runs": 3, "min_samples": 10, "progress": False}


def _image_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """12x12 RGB images whose class is the dominant colour channel, on the uint8 grid (/255)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.integers(0, 120, (n, 12, 12, 3)).astype(np.float32)
    for c in range(3):
        x[y == c, :, :, c] += 120
    return x / 255.0, y


@pytest.fixture(scope="module")
def image_model() -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    keras.utils.set_random_seed(0)
    x, y = _image_data(96, 0)
    xv, yv = _image_data(45, 1)
    m = keras.Sequential([keras.Input((12, 12, 3), name="image"),
                          keras.layers.Conv2D(4, 3, activation="relu"),
                          keras.layers.GlobalAveragePooling2D(),
                          keras.layers.Dense(3, activation="softmax")])
    _fit(m, x, y, 10, 0.05)
    return m, x, y, xv, yv


def _fit(m: Any, x: Any, y: Any, epochs: int, lr: float = 0.01) -> None:
    """Train eagerly without XLA: for toy models this is much faster than tracing/compiling a graph."""
    m.compile(keras.optimizers.Adam(lr), "sparse_categorical_crossentropy", jit_compile=False, run_eagerly=True)
    m.fit(x, y, epochs=epochs, batch_size=32, verbose=0)


def _card(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"name": "tiny", "version": "0.1.0", "task": "generic", "labels": list(LABELS3),
                            "training": {"data": "generated in the test", "terms": "n/a", "split": "generated"},
                            "limitations": ["toy model"]}
    base.update(kw)
    return base


def _check_against_float(res: ConversionResult, inputs: list[np.ndarray], float_probs: np.ndarray,
                         min_agree: float = 0.9, max_mean_diff: float = 0.05) -> None:
    """The runtime loads the written pair without arguments; int8 predictions match float within tolerance."""
    m = Model.load(res.model_path)
    assert m.card.model_sha256 == res.card.model_sha256
    q = np.concatenate([m.run(*[x[i:i + 1] for x in inputs])[0] for i in range(len(inputs[0]))])
    assert q.shape == float_probs.shape
    agree = float(np.mean(q.argmax(1) == float_probs.argmax(1)))
    diff = float(np.mean(np.abs(q - float_probs)))
    assert agree >= min_agree, (agree, diff)
    assert diff <= max_mean_diff, (agree, diff)


# ------------------------------------------------------------------------------------------ round trips

def test_keras_file_converts_with_card_report_and_metrics(image_model: Any, tmp_path: Path) -> None:
    m, x, _, xv, yv = image_model
    src = tmp_path / "tiny.keras"
    m.save(src)
    out = tmp_path / "models" / "tiny.tflite"
    res = convert(src, out, x, _card(inputs=[{"name": "image", "kind": "image"}]),
                  validation=(xv, [LABELS3[i] for i in yv]), validation_split="generated held-out split",
                  report_dir=tmp_path / "report", **FAST)
    assert res.model_path == out and out.is_file()
    assert res.card_path == card_path_for(out) and res.card_path.is_file()
    card = load_card(res.card_path)
    assert card.inputs[0].shape == (1, 12, 12, 3) and card.inputs[0].dtype == "int8"
    assert card.inputs[0].kind == "image"
    assert card.outputs[0].dtype == "int8" and card.outputs[0].shape == (1, 3)
    assert card.metrics["split"] == "generated held-out split"
    assert card.metrics["on_calibration_set"] is False
    f_acc, q_acc = card.metrics["float"]["accuracy"], card.metrics["int8"]["accuracy"]
    float_probs = np.asarray(m(xv, training=False))
    assert f_acc == pytest.approx(float(np.mean(float_probs.argmax(1) == yv)), abs=1e-6)
    assert f_acc > 0.6  # the toy model learned something
    assert abs(f_acc - q_acc) <= 0.05
    assert card.quantization["mode"] == "full-integer" and card.quantization["float_ops"] == []
    assert card.quantization["calibration"]["samples"] == len(x)
    assert card.tools["tensorflow-cpu"] or card.tools["tensorflow"]
    assert card.created and card.created.endswith("Z")
    assert res.passed and not res.failures
    assert res.report["sizes"]["source_bytes"] == src.stat().st_size
    assert res.report["latency_ms"]["threads_1"] > 0
    _check_against_float(res, [xv], float_probs)
    md = Path(res.report_paths["markdown"]).read_text()
    assert "PASSED" in md and "None: every op computes in int8" in md
    rep = json.loads(Path(res.report_paths["json"]).read_text())
    assert rep["validation"]["agreement"] == res.report["validation"]["agreement"]
    png = Path(res.report_paths["png_int8"]).read_bytes()
    assert png.startswith(b"\x89PNG")
    cv2 = pytest.importorskip("cv2")
    img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None and img.shape[0] > 100
    assert sorted(set(os.listdir(out.parent))) == ["tiny.card.json", "tiny.tflite"]  # no temp files left
    assert out.stat().st_mode & 0o777 == 0o644  # readable by a service user (mkstemp alone gives 0600)


def test_legacy_h5_converts_uint8_io_per_tensor(image_model: Any, tmp_path: Path) -> None:
    m, x, _, xv, _ = image_model
    src = tmp_path / "tiny.h5"
    m.save(src)
    res = convert(src, tmp_path / "h5.tflite", x, _card(), validation=(xv, None), io_dtype="uint8",
                  per_channel=False, **FAST)
    assert res.card.inputs[0].dtype == "uint8" and res.card.outputs[0].dtype == "uint8"
    assert res.card.quantization["per_channel"] is False
    assert res.report["source"]["kind"] == "h5"
    assert res.card.metrics["float"] == {"n": len(xv)}  # no labels: no accuracy, but agreement
    assert res.card.metrics["int8"]["agreement_with_float"] >= 0.9
    _check_against_float(res, [xv], np.asarray(m(xv, training=False)))


def test_savedmodel_converts_from_npz_with_float_io(image_model: Any, tmp_path: Path) -> None:
    m, x, y, xv, yv = image_model
    sm = tmp_path / "sm"
    m.export(sm, verbose=False)
    npz = tmp_path / "calib.npz"
    np.savez(npz, arr_0=x, y=y)
    res = convert(sm, tmp_path / "sm.tflite", npz, _card(), validation=(xv, yv), io_dtype="float32", **FAST)
    assert res.report["source"]["kind"] == "savedmodel"
    assert res.report["validation"]["float_reference"].startswith("float32 TFLite")
    assert res.card.inputs[0].dtype == "float32"
    # only the float<->int8 boundary ops of float I/O; the computation is int8
    assert res.float_ops and all(o["boundary"] for o in res.float_ops)
    assert {o["op"] for o in res.float_ops} == {"QUANTIZE", "DEQUANTIZE"}
    assert res.card.quantization["mode"] == "full-integer"
    assert res.report["quantization"]["calibration"]["source"].startswith("calib.npz")
    _check_against_float(res, [xv], np.asarray(m(xv, training=False)))


def _onnx_model(path: Path) -> tuple[np.ndarray, np.ndarray, Any]:
    """NCHW conv features (fixed) + a softmax layer trained here with numpy gradient descent."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)
    n = 60
    y = np.arange(n) % 3
    x = rng.normal(0, 0.3, (n, 2, 6, 6)).astype(np.float32)
    x[y == 1, 0] += 1.0
    x[y == 2, 1] += 1.0
    wc = rng.normal(0, 0.5, (4, 2, 3, 3)).astype(np.float32)

    def features(xx: np.ndarray) -> np.ndarray:
        patches = np.lib.stride_tricks.sliding_window_view(xx, (3, 3), axis=(2, 3))  # N,C,4,4,3,3
        conv = np.einsum("nchwij,ocij->nohw", patches, wc)
        return np.asarray(np.maximum(conv, 0).mean(axis=(2, 3)), dtype=np.float32)

    f = features(x)
    w = np.zeros((4, 3), np.float32)
    b = np.zeros(3, np.float32)
    onehot = np.eye(3, dtype=np.float32)[y]
    for _ in range(300):
        z = f @ w + b
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        g = (p - onehot) / n
        w -= 2.0 * f.T @ g
        b -= 2.0 * g.sum(0)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "wc"], ["c"]), helper.make_node("Relu", ["c"], ["r"]),
         helper.make_node("GlobalAveragePool", ["r"], ["g"]), helper.make_node("Flatten", ["g"], ["fl"]),
         helper.make_node("Gemm", ["fl", "w", "b"], ["z"]), helper.make_node("Softmax", ["z"], ["probs"])],
        "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 6, 6])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, 3])],
        [numpy_helper.from_array(wc, "wc"), numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))

    def predict(xx: np.ndarray) -> np.ndarray:
        z = features(xx) @ w + b
        e = np.exp(z - z.max(1, keepdims=True))
        return np.asarray(e / e.sum(1, keepdims=True))

    return x, y, predict


def test_onnx_converts_through_onnx2tf(tmp_path: Path) -> None:
    from affectlite_convert.onnx_import import find_env

    try:
        find_env()
    except ConversionError as e:
        pytest.skip(f"no onnx2tf environment: {str(e).splitlines()[0][:200]}")
    import hashlib

    x, y, predict = _onnx_model(tmp_path / "tiny.onnx")
    assert np.mean(predict(x).argmax(1) == y) > 0.8  # the numpy-trained layer works
    before = hashlib.sha256((tmp_path / "tiny.onnx").read_bytes()).hexdigest()
    res = convert(tmp_path / "tiny.onnx", tmp_path / "onnx.tflite", x, _card(), validation=(x, y), **FAST)
    # issue 27: a converter never writes to its source (onnx2tf simplifies and saves over its input)
    assert hashlib.sha256((tmp_path / "tiny.onnx").read_bytes()).hexdigest() == before
    assert res.report["source"]["kind"] == "onnx" and res.card.tools.get("onnx2tf")
    assert any("NCHW data transposed to NHWC" in n for n in res.report["notes"])
    assert res.card.inputs[0].shape == (1, 6, 6, 2)  # onnx2tf gives NHWC
    _check_against_float(res, [np.ascontiguousarray(x.transpose(0, 2, 3, 1))], predict(x))


@pytest.fixture(scope="module")
def seed_model() -> tuple[Any, list[np.ndarray], np.ndarray]:
    """The project's seed architecture: image CNN 64x64x3 + Embedding/LSTM text + LSTM over 128-d frames."""
    keras.utils.set_random_seed(1)
    img = keras.Input((64, 64, 3), name="image")
    tok = keras.Input((6,), dtype="int32", name="tokens")
    aud = keras.Input((5, 128), name="audio")
    a = keras.layers.Conv2D(4, 3, strides=4, activation="relu")(img)
    a = keras.layers.GlobalAveragePooling2D()(a)
    b = keras.layers.LSTM(8)(keras.layers.Embedding(50, 8)(tok))
    c = keras.layers.LSTM(8)(aud)
    out = keras.layers.Dense(7, activation="softmax")(keras.layers.Concatenate()([a, b, c]))
    m = keras.Model([img, tok, aud], out)
    rng = np.random.default_rng(2)
    n = 32
    y = np.arange(n) % 7
    data = [rng.random((n, 64, 64, 3), dtype=np.float32), rng.integers(0, 50, (n, 6)).astype(np.int32),
            rng.standard_normal((n, 5, 128)).astype(np.float32)]
    data[2][:, :, :7] += 2.0 * np.eye(7, dtype=np.float32)[y][:, None, :]
    _fit(m, data, y, 2, 0.02)
    return m, data, y


def test_seed_multi_input_model_converts_and_reports_ops(seed_model: Any, tmp_path: Path) -> None:
    m, data, y = seed_model
    card = _card(name="seed", task="fusion", labels=["neutral", "happy", "sad", "angry", "fear", "disgust",
                                                    "surprise"],
                 inputs=[{"name": "image", "kind": "image"}, {"name": "tokens", "kind": "tensor"},
                         {"name": "audio", "kind": "audio_features"}])
    res = convert(m, tmp_path / "seed.tflite", data, card, validation=(data, y), report_dir=tmp_path, **FAST)
    # LSTMs are unrolled (same weights), so no WHILE loop is left and nearly all ops are int8; the report
    # says so and names each op left in float (e.g. a SPLIT of LSTM gates), with its reason
    assert sum("unrolled" in n and "LSTM" in n for n in res.report["notes"]) == 2
    counts = res.report["quantization"]["op_counts"]
    assert "WHILE" not in counts and "FULLY_CONNECTED" in counts and "CONV_2D" in counts
    assert len(res.float_ops) <= 0.1 * sum(counts.values())  # a few float islands at most
    activation_float = [o for o in res.float_ops if not (o["weights_only"] or o["boundary"])]
    assert res.card.quantization["mode"] == ("integer with float fallback" if activation_float else "full-integer")
    from ai_edge_litert.interpreter import Interpreter

    tensors = {d["name"]: d for d in Interpreter(model_path=str(res.model_path)).get_tensor_details()}
    for o in res.float_ops:  # cross-check the flatbuffer parse with the interpreter's own view
        assert o["reason"] and tensors[o["tensor"]]["dtype"] == np.float32
    assert len(res.card.quantization["float_ops"]) == len(res.float_ops)
    md = Path(res.report_paths["markdown"]).read_text()
    assert "unrolled" in md and "Ops that stay float" in md
    assert all(f"| {o['op']} |" in md for o in res.float_ops)
    # card inputs follow the TFLite tensor order, named, with their dtypes; kinds travel with the names
    by_name = {s.name: s for s in res.card.inputs}
    assert set(by_name) == {"image", "tokens", "audio"}
    assert by_name["tokens"].dtype == "int32" and by_name["tokens"].kind == "tensor"
    assert by_name["image"].dtype == "int8" and by_name["image"].shape == (1, 64, 64, 3)
    assert by_name["audio"].kind == "audio_features" and by_name["audio"].shape == (1, 5, 128)
    order = [s.name for s in res.card.inputs]
    idx = {"image": 0, "tokens": 1, "audio": 2}
    float_probs = np.asarray(m(data, training=False))
    _check_against_float(res, [data[idx[n]] for n in order], float_probs, min_agree=0.85, max_mean_diff=0.05)


def test_float_only_op_is_named_with_reason(tmp_path: Path) -> None:
    keras.utils.set_random_seed(4)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((40, 8)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0).astype(int)
    inp = keras.Input((8,), name="x")
    h = keras.layers.Lambda(lambda t: keras.ops.sin(t))(keras.layers.Dense(8)(inp))
    m = keras.Model(inp, keras.layers.Dense(3, activation="softmax")(h))
    _fit(m, x, y, 2)
    res = convert(m, tmp_path / "sin.tflite", x, _card(), report_dir=tmp_path, **FAST)
    sin = [o for o in res.float_ops if o["op"] == "SIN"]
    assert sin and "no int8 kernel" in sin[0]["reason"]
    assert res.card.quantization["mode"] == "integer with float fallback"
    assert any(o["op"] == "SIN" for o in res.card.quantization["float_ops"])
    assert "| SIN |" in Path(res.report_paths["markdown"]).read_text()
    assert res.report["validation"]["on_calibration_set"] is True
    assert any("calibration set" in w for w in res.warnings)
    _check_against_float(res, [x], np.asarray(m(x, training=False)))


# ----------------------------------------------------------------------------- calibration from files

def test_image_folder_by_class_uses_runtime_preprocessing(image_model: Any, tmp_path: Path) -> None:
    cv2 = pytest.importorskip("cv2")
    pre = pytest.importorskip("affectlite.preprocess")
    m, x, y, _, _ = image_model
    root = tmp_path / "imgs"
    for i, (img, lab) in enumerate(zip(x[:60], y[:60], strict=True)):
        d = root / LABELS3[lab]
        d.mkdir(parents=True, exist_ok=True)
        rgb = np.rint(img * 255).astype(np.uint8)
        cv2.imwrite(str(d / f"{i:03d}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    spec = {"color": "rgb", "size": [12, 12], "scale": 1 / 255, "mean": 0.0, "std": 1.0}
    loaded = cal.load_data(root, [_info("image", (12, 12, 3))], [{"preprocessing": spec}], LABELS3,
                           progress=False)
    assert loaded.count == 60 and loaded.labels is not None
    ref = np.concatenate([pre.prepare_face(np.rint(im * 255).astype(np.uint8), pre.parse_image_spec(spec))
                          for im in x[:60]])
    order = np.argsort([f"{LABELS3[lab]}/{i:03d}" for i, lab in enumerate(y[:60])])
    np.testing.assert_allclose(loaded.arrays["image"], ref[order], atol=1e-6)
    np.testing.assert_array_equal(loaded.labels, y[:60][order])
    res = convert(m, tmp_path / "folder.tflite", root,
                  _card(inputs=[{"name": "image", "kind": "image", "preprocessing": spec}]),
                  validation=root, **FAST)
    assert "by class" in res.card.quantization["calibration"]["source"]
    assert res.card.metrics["float"]["accuracy"] > 0.6  # labels came from the class folders
    assert res.card.inputs[0].preprocessing == spec


def _info(name: str, shape: tuple[int | None, ...], dtype: str = "float32") -> Any:
    from affectlite_convert.quantize import InputInfo

    return InputInfo(name, shape, dtype)


def _write_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())


def test_audio_folder_uses_runtime_features(tmp_path: Path) -> None:
    af = pytest.importorskip("affectlite.audio_features")
    spec = dict(af.DEFAULT_SPEC, window_s=0.25, n_mels=16)
    full = af.check_spec(spec)
    frames = af.n_frames(af.window_samples(full), full)
    rng = np.random.default_rng(5)
    root = tmp_path / "wavs"
    root.mkdir()
    clips, y = [], []
    for i in range(24):
        t = np.arange(int(16000 * rng.uniform(0.15, 0.4))) / 16000  # shorter and longer than a window
        freq = 300.0 if i % 2 else 2500.0
        s = (0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)
        _write_wav(root / f"clip{i:02d}.wav", s, 16000)
        clips.append(s)
        y.append(i % 2)
    loaded = cal.load_data(root, [_info("mel", (frames, 16))], [{"kind": "audio_features",
                                                                 "preprocessing": spec}], ["a", "b"],
                           progress=False)
    assert loaded.labels is None and loaded.count == 24  # flat folder: no labels
    w = af.window_samples(full)
    first = af.load_audio(root / "clip00.wav", 16000)
    first = np.concatenate([first, np.zeros(max(0, w - first.size), np.float32)])
    if first.size > w:
        s0 = (first.size - w) // 2
        first = first[s0:s0 + w]
    np.testing.assert_allclose(loaded.arrays["mel"][0], af.compute_features(first, full), atol=1e-5)
    keras.utils.set_random_seed(5)
    m = keras.Sequential([keras.Input((frames, 16)), keras.layers.Flatten(),
                          keras.layers.Dense(2, activation="softmax")])
    _fit(m, loaded.arrays["mel"], np.asarray(y), 3)
    res = convert(m, tmp_path / "voice.tflite", root,
                  _card(task="voice", labels=["calm", "angry"],
                        inputs=[{"name": "mel", "kind": "audio_features", "preprocessing": spec}]), **FAST)
    assert res.card.quantization["calibration"]["source"].startswith("audio folder wavs (24 files, flat)")
    _check_against_float(res, [loaded.arrays["mel"]], np.asarray(m(loaded.arrays["mel"], training=False)))


def test_text_file_uses_runtime_featurizer(tmp_path: Path) -> None:
    text = pytest.importorskip("affectlite.text")
    spec = text.default_text_spec(n_word=32, n_char=32)
    sentences = [f"{w} day number {i}" for i in range(15) for w in ("what a great", "this is awful")]
    labels = ["happy" if s.startswith("what") else "sad" for s in sentences]
    tsv = tmp_path / "sentences.tsv"
    tsv.write_text("".join(f"{s}\t{lab}\n" for s, lab in zip(sentences, labels, strict=True)), encoding="utf-8")
    feats = text.TextFeaturizer.from_spec(spec).transform(sentences)
    keras.utils.set_random_seed(6)
    m = keras.Sequential([keras.Input((64,)), keras.layers.Dense(2, activation="softmax")])
    y = np.asarray([0 if lab == "happy" else 1 for lab in labels])
    _fit(m, feats, y, 10, 0.05)
    res = convert(m, tmp_path / "text.tflite", tsv,
                  _card(task="text", labels=["happy", "sad"],
                        inputs=[{"name": "features", "kind": "text_features", "preprocessing": spec}]), **FAST)
    assert res.report["validation"]["n"] == 30
    assert res.card.metrics["float"]["accuracy"] == 1.0  # labels from the .tsv's second column
    _check_against_float(res, [np.asarray(feats)], np.asarray(m(feats, training=False)))


# ------------------------------------------------------------------------------------------------ errors

def test_too_small_calibration_set_is_refused(image_model: Any, tmp_path: Path) -> None:
    m, x, *_ = image_model
    with pytest.raises(CalibrationError, match=r"has 5 sample\(s\); at least 10"):
        convert(m, tmp_path / "a.tflite", x[:5], _card(), **FAST)
    assert not (tmp_path / "a.tflite").exists()
    assert cal.check_count(30, 10, 200) and "fewer than the recommended 200" in cal.check_count(30, 10, 200)[0]
    assert cal.check_count(300, 10, 200) == []


def test_wrong_input_shape_is_refused(image_model: Any, tmp_path: Path) -> None:
    m, *_ = image_model
    bad = np.zeros((20, 10, 10, 3), np.float32)
    with pytest.raises(InputError, match=r"expects shape \['batch', 12, 12, 3\].*\[20, 10, 10, 3\]"):
        convert(m, tmp_path / "a.tflite", bad, _card(), **FAST)
    with pytest.raises(InputError, match="expects shape"):
        convert(m, tmp_path / "a.tflite", np.zeros((20, 12, 12), np.float32), _card(), **FAST)
    with pytest.raises(InputError, match="NaN"):
        convert(m, tmp_path / "a.tflite", np.full((20, 12, 12, 3), np.nan, np.float32), _card(), **FAST)


def test_label_count_must_match_outputs(image_model: Any, tmp_path: Path) -> None:
    m, x, *_ = image_model
    with pytest.raises(ConversionError, match=r"3 classes but card\['labels'\] lists 2"):
        convert(m, tmp_path / "a.tflite", x, _card(labels=["a", "b"]), **FAST)
    with pytest.raises(ConversionError, match="labels"):
        convert(m, tmp_path / "a.tflite", x, {"name": "x"}, **FAST)


@pytest.mark.parametrize("name,content,match", [
    ("broken.keras", b"this is not a zip file", "cannot load Keras model"),
    ("broken.h5", b"\x00" * 64, "cannot load Keras model"),
    ("broken.onnx", b"\x08\x07garbage-not-protobuf\xff\xff", "not a readable ONNX model|fails the ONNX checker"),
])
def test_corrupt_model_file_is_a_clear_error(tmp_path: Path, name: str, content: bytes, match: str) -> None:
    p = tmp_path / name
    p.write_bytes(content)
    with pytest.raises(ConversionError, match=match):
        convert(p, tmp_path / "a.tflite", np.zeros((20, 4), np.float32), _card(), **FAST)


def test_unknown_format_and_missing_model(tmp_path: Path) -> None:
    for name, match in (("model.pt", "unknown model format '.pt'"), ("model.tflite", "already a TFLite model")):
        (tmp_path / name).write_bytes(b"x" * 100)
        with pytest.raises(ConversionError, match=match):
            convert(tmp_path / name, tmp_path / "a.tflite", np.zeros((20, 4), np.float32), _card(), **FAST)
    (tmp_path / "folder").mkdir()
    with pytest.raises(ConversionError, match="not a TensorFlow SavedModel"):
        convert(tmp_path / "folder", tmp_path / "a.tflite", np.zeros((20, 4), np.float32), _card(), **FAST)
    with pytest.raises(ConversionError, match="does not exist"):
        convert(tmp_path / "nope.keras", tmp_path / "a.tflite", np.zeros((20, 4), np.float32), _card(), **FAST)
    with pytest.raises(ConversionError, match=r"must end in \.tflite"):
        convert(tmp_path / "nope.keras", tmp_path / "a.bin", np.zeros((20, 4), np.float32), _card(), **FAST)


# ------------------------------------------------------------------------------------------------- CLI

def test_cli_convert_exit_codes(image_model: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from affectlite_convert.cli import main

    m, x, y, *_ = image_model
    src = tmp_path / "tiny.keras"
    m.save(src)
    np.savez(tmp_path / "calib.npz", x=x, y=y)
    card = tmp_path / "card.json"
    card.write_text(json.dumps(_card()), encoding="utf-8")
    out = tmp_path / "cli" / "tiny.tflite"
    # agreement can never exceed 1.0: the threshold fails, the files are still written for inspection
    rc = main(["convert", str(src), "-o", str(out), "--calib", str(tmp_path / "calib.npz"), "--card", str(card),
               "--min-samples", "10", "--threads", "1", "--min-agreement", "1.01"])
    cap = capsys.readouterr()
    assert rc == 1, cap.err
    assert "FAILED: top-1 agreement" in cap.err
    assert out.is_file() and card_path_for(out).is_file()
    assert (out.parent / "tiny.report.md").is_file()
    Model.load(out)
    # bad input: exit 2 with the reason
    rc = main(["convert", str(tmp_path / "missing.keras"), "-o", str(out), "--calib", str(tmp_path / "calib.npz"),
               "--labels", "a,b,c"])
    assert rc == 2 and "does not exist" in capsys.readouterr().err
    rc = main(["convert", str(src), "-o", str(out), "--calib", str(tmp_path / "calib.npz"), "--labels", "a,b,c",
               "--min-samples", "500", "--recommended-samples", "600"])
    assert rc == 2 and "at least 500" in capsys.readouterr().err


def test_cli_registers_into_a_parser_and_train_dispatches() -> None:
    import argparse

    from affectlite_convert.cli import add_subcommands

    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command")
    add_subcommands(sub)
    a = p.parse_args(["convert", "m.keras", "-o", "x.tflite", "--calib", "d", "--io-dtype", "uint8", "--per-tensor"])
    assert a.io_dtype == "uint8" and a.per_tensor and a.func.__name__ == "cmd_convert"
    t = p.parse_args(["train", "face", "--epochs", "1", "--data", "x"])
    assert t.recipe == "face" and t.recipe_args == ["--epochs", "1", "--data", "x"]
    assert t.func.__name__ == "cmd_train"


# ----------------------------------------------------------------------------------------- unit pieces

def test_labels_to_indices_and_list_files(tmp_path: Path) -> None:
    np.testing.assert_array_equal(cal.labels_to_indices(["sad", "Happy", "calm"], LABELS3), [2, 1, 0])
    np.testing.assert_array_equal(cal.labels_to_indices(np.array([2, 0]), LABELS3), [2, 0])
    with pytest.raises(InputError, match="out of range"):
        cal.labels_to_indices([3], LABELS3)
    with pytest.raises(InputError, match="'bored' is not one of"):
        cal.labels_to_indices(["bored"], LABELS3)
    for c in ("b", "a"):
        (tmp_path / "byclass" / c).mkdir(parents=True)
        for i in range(5):
            (tmp_path / "byclass" / c / f"{i}.png").write_bytes(b"")
    found = ds.list_files(tmp_path / "byclass", ds.IMAGE_SUFFIXES, limit=4)
    assert found.classes == ("a", "b") and found.labels is not None
    assert sorted(found.labels) == ["a", "a", "b", "b"]  # sampled evenly across classes
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "x.wav").write_bytes(b"")
    assert ds.list_files(tmp_path / "flat", ds.AUDIO_SUFFIXES).labels is None
    with pytest.raises(CalibrationError, match=r"no .* files"):
        ds.list_files(tmp_path / "flat", ds.IMAGE_SUFFIXES)


def test_analyze_ops_on_a_float_model() -> None:
    inp = keras.Input((4,))
    m = keras.Model(inp, keras.layers.Dense(2)(inp))
    conv = tf.lite.TFLiteConverter.from_keras_model(m)
    ops = analyze_ops(bytes(conv.convert()))
    assert ops["op_counts"] == {"FULLY_CONNECTED": 1}
    assert [o["op"] for o in ops["float_ops"]] == ["FULLY_CONNECTED"] and not ops["float_ops"][0]["boundary"]


def test_fer2013_folder_calibration_maps_classes(shared_datasets: Path) -> None:
    """Real data: FER2013 class folders -> runtime preprocessing, labels mapped onto the common set."""
    folder = shared_datasets / "fer2013" / "public_test"
    if not folder.is_dir():
        pytest.skip(f"{folder} not found")
    pre = pytest.importorskip("affectlite.preprocess")
    from affectlite.labels import LABELS

    spec = {"color": "grey", "size": [48, 48], "scale": 1 / 255, "mean": 0.5, "std": 0.25}
    loaded = cal.load_data(folder, [_info("image", (48, 48, 1))], [{"kind": "image", "preprocessing": spec}],
                           list(LABELS), limit=21, progress=False)
    assert loaded.arrays["image"].shape == (21, 48, 48, 1)
    assert loaded.labels is not None and sorted(np.bincount(loaded.labels).tolist()) == [3] * 7
    assert "by class" in loaded.source
    found = ds.list_files(folder, ds.IMAGE_SUFFIXES, limit=21)
    ref = pre.prepare_face(ds.read_image(found.files[0]), pre.parse_image_spec(spec))[0]
    np.testing.assert_allclose(loaded.arrays["image"][0], ref, atol=1e-6)
    assert LABELS[int(loaded.labels[0])] == found.labels[0]  # type: ignore[index]
