"""Bad input gives a clear affectlite error and leaves models, files and the process intact.

Covers corrupt and truncated ``.tflite`` files (a real LiteRT model, built here from the TFLite schema),
model/card mismatches, wrong-rank/dtype/NaN arrays, malformed cards and profiles (property-based), and
the audio and image preprocessing functions (property-based).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from affectlite import Model, ModelCard
from affectlite._io import sha256_file
from affectlite.card import card_from_dict, card_path_for, load_card, save_card
from affectlite.errors import (
    AffectliteError,
    ConfigError,
    InputError,
    ModelCardError,
    ModelLoadError,
    ProfileError,
)
from affectlite.labels import LABELS

ROOT = Path(__file__).resolve().parents[1]
SDK = str(ROOT / "sdk")
FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                        HealthCheck.function_scoped_fixture])

# ---------------------------------------------------------------------------------------------- a real model


def build_softmax_tflite(n: int = len(LABELS)) -> bytes:
    """A valid TFLite flatbuffer: float32 logits ``(1, n)`` -> SOFTMAX -> probabilities ``(1, n)``."""
    flatbuffers = pytest.importorskip("flatbuffers")
    schema = pytest.importorskip("ai_edge_litert.schema_py_generated")

    model = schema.ModelT()
    model.version = 3
    model.description = b"affectlite bad-input test model"
    model.buffers = [schema.BufferT() for _ in range(3)]
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.SOFTMAX
    code.version = 1
    model.operatorCodes = [code]

    def tensor(name: bytes, buf: int) -> Any:
        t = schema.TensorT()
        t.shape = np.array([1, n], np.int32)
        t.type = schema.TensorType.FLOAT32
        t.name = name
        t.buffer = buf
        return t

    sub = schema.SubGraphT()
    sub.tensors = [tensor(b"logits", 1), tensor(b"probs", 2)]
    sub.inputs = np.array([0], np.int32)
    sub.outputs = np.array([1], np.int32)
    op = schema.OperatorT()
    op.opcodeIndex = 0
    op.inputs = np.array([0], np.int32)
    op.outputs = np.array([1], np.int32)
    op.builtinOptionsType = schema.BuiltinOptions.SoftmaxOptions
    opts = schema.SoftmaxOptionsT()
    opts.beta = 1.0
    op.builtinOptions = opts
    sub.operators = [op]
    sub.name = b"main"
    model.subgraphs = [sub]
    b = flatbuffers.Builder(1024)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def softmax_card(**kw: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "schema_version": 1, "name": "softmax", "task": "generic", "labels": list(LABELS),
        "inputs": [{"name": "logits", "shape": [1, len(LABELS)], "dtype": "float32", "kind": "tensor"}],
        "outputs": [{"name": "probs", "shape": [1, len(LABELS)], "dtype": "float32", "kind": "probabilities"}],
        "calibration": {"temperature": 1.0},
    }
    d.update(kw)
    return d


@pytest.fixture
def real_model(tmp_path: Path) -> Path:
    pytest.importorskip("ai_edge_litert")
    p = tmp_path / "softmax.tflite"
    p.write_bytes(build_softmax_tflite())
    save_card(card_from_dict(softmax_card(model_sha256=sha256_file(p))), card_path_for(p))
    return p


def _fingerprint(*paths: Path) -> list[tuple[str, int]]:
    return [(sha256_file(p), p.stat().st_mtime_ns) for p in paths]


def test_real_model_loads_and_runs(real_model: Path) -> None:
    m = Model.load(real_model, backend="litert")
    logits = np.log(np.array([[1, 2, 3, 4, 5, 6, 7]], np.float32))
    p = m.predict_proba(logits)
    assert p.shape == (1, 7) and np.allclose(p, np.arange(1, 8) / 28, atol=1e-5)


_SWEEP = textwrap.dedent("""
    import json, sys, shutil
    import numpy as np
    from pathlib import Path
    from affectlite import Model
    from affectlite.card import card_from_dict, card_path_for, save_card
    from affectlite.errors import ModelCardError, ModelLoadError, InputError
    src, work, mode, card_json = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4]
    data = src.read_bytes()
    rng = np.random.default_rng(1234)
    cases = range(0, len(data), int(sys.argv[5])) if mode == "truncate" else range(int(sys.argv[5]))
    out = {}
    for k in cases:
        if mode == "truncate":
            bad = data[:k]
        else:
            arr = bytearray(data)
            for _ in range(int(rng.integers(1, 4))):
                arr[int(rng.integers(0, len(arr)))] ^= int(rng.integers(1, 256))  # always a real change
            bad = bytes(arr)
        p = work / f"m{k}.tflite"
        p.write_bytes(bad)
        save_card(card_from_dict(json.loads(card_json)), card_path_for(p))
        try:
            m = Model.load(p, backend="litert")
            try:
                m.run(np.zeros((1, 7), np.float32))
                r = "loaded"
            except (ModelLoadError, InputError) as e:
                r = "run:" + type(e).__name__
        except (ModelLoadError, ModelCardError) as e:
            r = type(e).__name__
        except Exception as e:
            r = "UNEXPECTED " + type(e).__name__ + ": " + str(e)[:120]
        out[r] = out.get(r, 0) + 1
        p.unlink()
        card_path_for(p).unlink()
    print(json.dumps(out))
""")


def _sweep(real_model: Path, tmp_path: Path, mode: str, card: dict[str, Any], n: int = 0) -> dict[str, int]:
    """Run the corruption sweep in a child process, so a crash in native code fails the test, not pytest."""
    work = tmp_path / f"sweep-{mode}-{len(list(tmp_path.glob('sweep-*')))}"
    work.mkdir()
    out = subprocess.run([sys.executable, "-c", _SWEEP, str(real_model), str(work), mode, json.dumps(card), str(n)],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": SDK})
    assert out.returncode == 0, f"child crashed (rc {out.returncode}): {out.stderr[-2000:]}"
    result: dict[str, int] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_truncated_model_at_every_length_is_a_clear_error(real_model: Path, tmp_path: Path) -> None:
    before = _fingerprint(real_model, card_path_for(real_model))
    size = real_model.stat().st_size
    # card without a hash: the interpreter itself refuses every truncation
    res = _sweep(real_model, tmp_path, "truncate", softmax_card(), n=1)
    assert res == {"ModelLoadError": size}, res
    # card with the full file's hash: refused before the interpreter sees it
    res = _sweep(real_model, tmp_path, "truncate", softmax_card(model_sha256=sha256_file(real_model)), n=3)
    tiny = len(range(0, 16, 3))  # under 16 bytes: "truncated or empty" before anything else
    assert res == {"ModelLoadError": tiny, "ModelCardError": len(range(0, size, 3)) - tiny}, res
    assert _fingerprint(real_model, card_path_for(real_model)) == before  # originals untouched


def test_corrupted_model_never_reaches_the_interpreter_when_the_card_has_its_hash(
        real_model: Path, tmp_path: Path) -> None:
    """LiteRT can crash (SIGSEGV in allocate_tensors) on a corrupted flatbuffer, so the hash is checked first.

    Every corrupted copy is refused with a ModelCardError naming the hash mismatch, in a child process that
    would die if any copy reached native code and crashed it.
    """
    res = _sweep(real_model, tmp_path, "flip", softmax_card(model_sha256=sha256_file(real_model)), n=300)
    assert res == {"ModelCardError": 300}, res


def test_hash_mismatch_is_refused_before_any_interpreter_is_created(real_model: Path) -> None:
    from affectlite.interpreters import register_backend

    calls: list[str | None] = []

    def spy(path: str | None, content: bytes | None, threads: int | None, delegates: Any) -> Any:
        calls.append(path)
        raise AssertionError("the interpreter must not be created for a file that fails its hash")

    register_backend("hash-spy", spy)
    data = real_model.read_bytes()
    assert b"bad-input" in data
    real_model.write_bytes(data.replace(b"bad-input", b"bad-INPUT"))  # a "replaced" model: still a valid file
    with pytest.raises(ModelCardError, match=r"does not match the file .* not loaded"):
        Model.load(real_model, backend="hash-spy")
    assert calls == []
    m = Model.load(real_model, backend="litert", check_hash=False)  # explicit opt-out still possible
    assert m.card.name == "softmax"


def test_model_card_mismatch_lists_every_problem(real_model: Path, tmp_path: Path) -> None:
    bad = softmax_card(
        labels=list(LABELS[:6]),
        inputs=[{"name": "logits", "shape": [1, 5], "dtype": "int8", "kind": "tensor"}],
        outputs=[{"name": "probs", "shape": [1, 7], "dtype": "uint8", "kind": "probabilities"}],
    )
    card_file = tmp_path / "wrong.card.json"
    card_file.write_text(json.dumps(bad))
    before = _fingerprint(real_model, card_file)
    with pytest.raises(ModelCardError) as ei:
        Model.load(real_model, card=card_file, backend="litert")
    msg = str(ei.value)
    for needle in ("inputs[0] (logits) shape: card says [1, 5], model has [1, 7]",
                   "inputs[0] (logits) dtype: card says int8, model has float32",
                   "outputs[0] (probs) dtype: card says uint8, model has float32",
                   "card has 6 labels but output[0] has 7 classes"):
        assert needle in msg, (needle, msg)
    two_inputs = softmax_card(inputs=softmax_card()["inputs"] * 2)
    with pytest.raises(ModelCardError, match="card lists 2 inputs, model has 1"):
        Model.load(real_model, card=card_from_dict(two_inputs), backend="litert")
    with pytest.raises(ModelCardError, match="this is a 'generic' model, expected a 'face' model"):
        Model.load(real_model, backend="litert", expected_task="face")
    assert _fingerprint(real_model, card_file) == before


def test_missing_or_broken_card_next_to_a_good_model(real_model: Path) -> None:
    card = card_path_for(real_model)
    card.write_text('{"name": "softmax", "task": ')
    with pytest.raises(ModelCardError, match=r"not valid JSON.*line 1"):
        Model.load(real_model, backend="litert")
    card.unlink()
    with pytest.raises(ModelCardError, match="affectlite convert"):
        Model.load(real_model, backend="litert")


@pytest.mark.parametrize(("x", "needle"), [
    (np.zeros(7, np.float32), "expects shape [1, 7]"),
    (np.zeros((1, 7, 1), np.float32), "expects shape [1, 7]"),
    (np.zeros((1, 6), np.float32), "expects shape [1, 7]"),
    (np.zeros((), np.float32), "expects shape [1, 7]"),
    (np.full((1, 7), np.nan, np.float32), "NaN or infinity"),
    (np.full((2, 7), np.inf), "NaN or infinity"),
    (np.array([["a"] * 7]), "dtype <U1"),
    (np.zeros((1, 7), dtype=object), "dtype object"),
    (np.zeros((1, 7), dtype=np.complex64), "dtype complex64"),
])
def test_model_run_rejects_bad_arrays_and_keeps_working(real_model: Path, x: np.ndarray, needle: str) -> None:
    m = Model.load(real_model, backend="litert")
    good = np.log(np.arange(1, 8, dtype=np.float32))[None]
    ref = m.run(good)[0]
    with pytest.raises(InputError) as ei:
        m.run(x)
    assert needle in str(ei.value)
    with pytest.raises(InputError, match="expected 1 input"):
        m.run(good, good)
    assert np.array_equal(m.run(good)[0], ref)  # the model is intact after the bad calls
    assert m.run(np.repeat(good, 3, axis=0))[0].shape == (3, 7)  # other batch sizes are fine
    assert m.run(good.astype(np.float64))[0].shape == (1, 7)  # and other real dtypes


# ---------------------------------------------------------------------------------------------- cards

_json_scalars = (st.none() | st.booleans() | st.integers(-10**6, 10**6)
                 | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12))
_json = st.recursive(_json_scalars, lambda kids: st.lists(kids, max_size=5)
                     | st.dictionaries(st.text(max_size=10), kids, max_size=5), max_leaves=20)
_CARD_KEYS = [*softmax_card(), "label_mapping", "limitations", "model_sha256", "model_file", "version",
              "training", "metrics", "quantization", "tools", "created"]


def _parses_or_card_error(d: Any) -> ModelCard | None:
    try:
        card = card_from_dict(d, source="fuzz.card.json")
    except ModelCardError as e:
        assert "fuzz.card.json" in str(e)  # every message names its source
        return None
    # a card that parses is usable: serialisable, re-parsable, with a sane temperature
    again = card_from_dict(json.loads(json.dumps(card.to_dict())))
    assert again.labels == card.labels and again.inputs == card.inputs
    assert 0 < card.temperature < float("inf")
    return card


@FAST
@given(_json)
def test_any_json_value_parses_or_raises_model_card_error(d: Any) -> None:
    _parses_or_card_error(d)


@FAST
@given(st.lists(st.tuples(st.sampled_from(_CARD_KEYS), st.one_of(st.just("__delete__"), _json)), max_size=4),
       st.integers(0, 2))
def test_mutated_valid_card_parses_or_raises_model_card_error(edits: list[tuple[str, Any]], where: int) -> None:
    d = softmax_card()
    target: dict[str, Any] = d if where == 0 else (d["inputs"][0] if where == 1 else d["outputs"][0])
    for key, value in edits:
        if value == "__delete__":
            target.pop(key, None)
        else:
            target[key] = value
    _parses_or_card_error(d)


@FAST
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_any_card_file_content_loads_or_raises_model_card_error(tmp_path: Path, content: bytes) -> None:
    p = tmp_path / "x.card.json"
    p.write_bytes(content)
    try:
        load_card(p)
    except ModelCardError as e:
        assert str(p) in str(e)


def test_card_temperature_must_be_finite_and_positive() -> None:
    for t in (0, -1.0, float("nan"), float("inf"), "2", True):
        with pytest.raises(ModelCardError, match="temperature"):
            card_from_dict(softmax_card(calibration={"temperature": t}))


# ---------------------------------------------------------------------------------------------- profiles


def _profile_or_error(data: Any) -> None:
    from affectlite.profiles import parse_profile

    try:
        prof = parse_profile(data, source="fuzz.yaml")
    except ProfileError as e:
        assert "fuzz" in str(e) or "profile" in str(e)
        return
    prof.to_options()  # a profile that validates gives usable options


@FAST
@given(_json)
def test_any_profile_dict_validates_or_raises_profile_error(data: Any) -> None:
    pytest.importorskip("yaml")
    _profile_or_error(data)


@FAST
@given(st.dictionaries(st.sampled_from(["camera", "audio", "face", "voice", "text", "fusion", "queues",
                                        "privacy", "name", "description", "interpreter", "env", "extends"]),
                       st.dictionaries(st.sampled_from(["enabled", "backend", "fps", "width", "device",
                                                        "deployment_context", "offline_guard", "threshold",
                                                        "window_s", "frames", "num_threads", "bogus"]),
                                       _json_scalars, max_size=4) | _json_scalars, max_size=5))
def test_profile_sections_with_random_values_validate_or_raise(data: dict[str, Any]) -> None:
    pytest.importorskip("yaml")
    _profile_or_error(data)


@FAST
@given(st.text(alphabet=st.sampled_from(list("camera: fps-1\n [{}]'\"#&*!|>%@`,.0x")), max_size=120))
def test_any_profile_yaml_text_validates_or_raises_profile_error(text: str) -> None:
    pytest.importorskip("yaml")
    _profile_or_error(text)


# ---------------------------------------------------------------------------------------------- audio

_audio_dtypes = st.sampled_from([np.int16, np.int32, np.uint8, np.float32, np.float64, np.int64, np.uint16])


@st.composite
def audio_arrays(draw: st.DrawFn) -> np.ndarray:
    dtype = draw(_audio_dtypes)
    ndim = draw(st.sampled_from([0, 1, 1, 1, 2, 3]))
    n = draw(st.integers(0, 6000))
    shape = {0: (), 1: (n,), 2: (n, draw(st.integers(1, 3))), 3: (2, 2, 2)}[ndim]
    if np.dtype(dtype).kind == "f":
        elems = st.floats(-1.5, 1.5, width=32) | st.sampled_from([np.nan, np.inf, -np.inf, 0.0, 1e30, 32767.0])
    else:
        info = np.iinfo(dtype)
        elems = st.integers(int(info.min), int(info.max))
    base = draw(hnp.arrays(dtype, min(int(np.prod(shape)), 64), elements=elems))
    if int(np.prod(shape)) == 0:
        return np.zeros(shape, dtype)
    return np.resize(base, shape)


@settings(max_examples=80, deadline=None)
@given(audio_arrays())
def test_audio_features_give_finite_features_or_input_error(x: np.ndarray) -> None:
    af = pytest.importorskip("affectlite.audio_features")
    spec = dict(af.DEFAULT_SPEC)
    try:
        y = af.to_float32(x)
    except InputError:
        y = None
    else:
        assert y.dtype == np.float32 and y.ndim == 1 and np.all(np.isfinite(y))
    try:
        feats = af.compute_features(x, spec)
    except InputError as e:
        assert str(e)
        return
    assert y is not None  # features only from valid audio
    assert feats.dtype == np.float32 and feats.shape == (af.n_frames(y.size, spec), spec["n_mels"])
    assert np.all(np.isfinite(feats))


@settings(max_examples=50, deadline=None)
@given(audio_arrays(), st.sampled_from([-1, 0, 1, 8000, 11025, 16000, 22050, 44100, 48000]),
       st.sampled_from([0, 8000, 16000, 22050, 48000]))
def test_resample_gives_finite_audio_or_input_error(x: np.ndarray, src: int, dst: int) -> None:
    af = pytest.importorskip("affectlite.audio_features")
    try:
        y = af.resample(af.to_float32(x), src, dst)
    except InputError:
        return
    assert y.ndim == 1 and np.all(np.isfinite(y))
    if src != dst:
        assert y.size == -(-x.size * dst // src)


@pytest.mark.parametrize("x", [np.zeros(0, np.float32), np.full(32000, np.nan, np.float32),
                               np.zeros((2, 32000), np.float32), np.zeros(100, np.float32),
                               np.array(["x"] * 32000)])
def test_empty_nan_short_or_non_numeric_audio_is_input_error(x: np.ndarray) -> None:
    af = pytest.importorskip("affectlite.audio_features")
    with pytest.raises(InputError):
        af.compute_features(x, af.DEFAULT_SPEC)


# ---------------------------------------------------------------------------------------------- images

_img_dtypes = st.sampled_from([np.uint8, np.float32, np.float64, np.int16, np.int32, np.uint16, np.bool_])


@st.composite
def images(draw: st.DrawFn) -> np.ndarray:
    dtype = draw(_img_dtypes)
    h, w = draw(st.integers(0, 40)), draw(st.integers(0, 40))
    shape = draw(st.sampled_from([(h, w), (h, w, 1), (h, w, 3), (h, w, 4), (h,), (h, w, 3, 1)]))
    kind = np.dtype(dtype).kind
    if kind == "f":
        elems = st.floats(-1.0, 300.0, width=32) | st.sampled_from([np.nan, 0.5])
    elif kind == "b":
        elems = st.booleans()
    else:
        info = np.iinfo(dtype)
        elems = st.integers(int(info.min), int(info.max))
    n = int(np.prod(shape))
    if n == 0:
        return np.zeros(shape, dtype)
    return np.resize(draw(hnp.arrays(dtype, min(n, 64), elements=elems)), shape)


@settings(max_examples=100, deadline=None)
@given(images(), st.sampled_from(["grey", "rgb"]), st.sampled_from(["area", "bilinear", "nearest"]),
       st.sampled_from([(48, 48), (8, 12), (64, 32)]))
def test_prepare_face_gives_model_input_or_input_error(img: np.ndarray, color: str, mode: str,
                                                       size: tuple[int, int]) -> None:
    pre = pytest.importorskip("affectlite.preprocess")
    spec = pre.parse_image_spec({"color": color, "size": list(size), "scale": 1 / 255, "mean": 0.5, "std": 0.25,
                                 "resize": mode})
    try:
        x = pre.prepare_face(img, spec)
    except InputError as e:
        assert str(e)
        return
    assert x.shape == (1, *size, 1 if color == "grey" else 3) and x.dtype == np.float32
    assert np.all(np.isfinite(x))


@settings(max_examples=100, deadline=None)
@given(images(), st.tuples(*[st.floats(-100, 100) | st.just(float("nan"))] * 4), st.floats(0, 1))
def test_crop_box_of_any_box_is_a_crop_or_input_error(img: np.ndarray, box: tuple[float, ...], margin: float) -> None:
    pre = pytest.importorskip("affectlite.preprocess")
    try:
        crop = pre.crop_box(img, *box, margin)
    except InputError:
        return
    assert crop.ndim == img.ndim and crop.shape[0] == crop.shape[1] >= 1


@pytest.mark.parametrize("bad", [{"color": "cmyk"}, {"size": [0, 48]}, {"size": "48"}, {"std": 0},
                                 {"resize": "lanczos"}, {"layout": "NCHW"}, {"crop_margin": 5}])
def test_bad_image_specs_are_model_card_errors(bad: dict[str, Any]) -> None:
    pre = pytest.importorskip("affectlite.preprocess")
    spec = {"color": "grey", "size": [48, 48], "scale": 1 / 255, "mean": 0.5, "std": 0.25, **bad}
    with pytest.raises(ModelCardError):
        pre.parse_image_spec(spec)


def test_errors_are_affectlite_errors() -> None:
    for e in (InputError, ModelCardError, ModelLoadError, ProfileError, ConfigError):
        assert issubclass(e, AffectliteError)
