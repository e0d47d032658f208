"""The fuzzing harness of issue 27 (docs/reliability.md): property tests over the public API and a CLI fuzz
table over corrupt files of every accepted format. Nothing may raise outside AffectliteError, hang, or stop a
pipeline. Bounded examples in CI; ``HYPOTHESIS_PROFILE=long`` (or ``--hypothesis-profile=long``) runs ~30x
more locally."""

from __future__ import annotations

import io
import json
import threading
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

from affectlite import EmotionClassifier, EmotionResult, PipelineOptions  # noqa: E402
from affectlite._boundary import clean_text  # noqa: E402
from affectlite.cli import main  # noqa: E402
from affectlite.errors import AffectliteError  # noqa: E402
from affectlite.testing import FakeCamera  # noqa: E402

LONG = settings.default.max_examples >= 1000


def n(k: int) -> int:
    """Examples per test: ``k`` in CI, 30x with the long profile."""
    return k * 30 if LONG else k


FAST = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]}

# every character class, lone surrogates included (st.characters() leaves out category Cs by default)
ANY_CHAR = st.characters(exclude_categories=())
TEXTS = st.one_of(
    st.text(ANY_CHAR, max_size=60),
    st.text(st.sampled_from("\x00\udcff\ud800\u202e\u05e9\u4e2d\U0001f600 a.!"), max_size=40),
    st.builds(lambda c, k: c * k, st.sampled_from(["a", "\u4e2d", "\udcff", " ", "ha "]),
              st.integers(0, 30000)),  # huge
)

DTYPES = st.sampled_from([np.float32, np.float64, np.float16, np.int16, np.int32, np.int64, np.uint8, np.int8,
                          np.uint16, np.bool_, np.complex64])


def arrays(max_dims: int, max_side: int) -> st.SearchStrategy[np.ndarray]:
    return DTYPES.flatmap(lambda dt: hnp.arrays(
        dt, hnp.array_shapes(min_dims=0, max_dims=max_dims, min_side=0, max_side=max_side),
        elements=hnp.from_dtype(np.dtype(dt), allow_nan=True, allow_infinity=True) if np.dtype(dt).kind in "fc"
        else None))


@pytest.fixture(scope="module")
def clf() -> Any:
    c = EmotionClassifier()
    try:
        c.classify(text="warm up")
    except AffectliteError as e:
        pytest.skip(f"models unavailable: {e}")
    yield c
    c.close()


@settings(max_examples=n(60), **FAST)
@given(TEXTS)
def test_any_text_is_classified_or_refused(clf: Any, text: str) -> None:
    r = clf.classify(text=text)
    assert isinstance(r, EmotionResult) and abs(sum(r.probabilities) - 1) < 1e-3
    cleaned = clean_text(text)
    cleaned.encode("utf-8")  # always encodable after the boundary


@settings(max_examples=n(40), **FAST)
@given(arrays(3, 40), st.one_of(st.integers(-10, 400_000), st.sampled_from([16000, 44100, 4000, 192000]),
                                st.floats(allow_nan=True), st.booleans()))
def test_any_audio_array_and_rate_is_classified_or_refused(clf: Any, x: np.ndarray, rate: Any) -> None:
    t0 = time.monotonic()
    try:
        r = clf.classify(audio=x, sample_rate=rate)
    except AffectliteError:
        return
    finally:
        assert time.monotonic() - t0 < 10  # no spinning on odd rates
    assert isinstance(r, EmotionResult)


@settings(max_examples=n(30), **FAST)
@given(arrays(4, 24))
def test_any_image_array_is_classified_or_refused(clf: Any, img: np.ndarray) -> None:
    try:
        r = clf.classify(image=img)
    except AffectliteError:
        return
    assert isinstance(r, EmotionResult)


@settings(max_examples=n(25), **FAST)
@given(st.lists(st.one_of(arrays(1, 4000), arrays(2, 8)), min_size=1, max_size=5))
def test_voice_stream_survives_any_chunks(clf: Any, chunks: list[np.ndarray]) -> None:
    from affectlite.voice import VoiceAnalyzer

    if clf._voice is None:
        clf.classify(audio=np.zeros(1600, np.int16))
    va: VoiceAnalyzer = clf._voice
    va.reset()
    for c in chunks:
        try:
            va.push(c, 0)
        except AffectliteError:
            pass
    # still usable after whatever came before: a good chunk goes through
    assert isinstance(va.push(np.zeros(1600, np.int16), 0), list)
    assert isinstance(va.flush(), list)


def _option_keys() -> list[str]:
    import msgspec

    d = msgspec.to_builtins(PipelineOptions())
    return sorted(f"{sec}.{k}" for sec, v in d.items() if isinstance(v, dict) for k in v)


JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(ANY_CHAR, max_size=20),
                       lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
                       max_leaves=6)


@settings(max_examples=n(40), **FAST)
@given(st.dictionaries(st.sampled_from(_option_keys()), JSONISH, min_size=1, max_size=3))
def test_any_option_override_is_accepted_or_a_config_error(ov: dict[str, Any]) -> None:
    from affectlite.errors import ConfigError

    try:
        o = PipelineOptions().replace(**ov)
    except ConfigError:
        return
    assert isinstance(o, PipelineOptions)


FRAME = st.one_of(
    hnp.arrays(np.uint8, st.tuples(st.integers(1, 40), st.integers(1, 40), st.just(3))),
    hnp.arrays(np.float32, st.tuples(st.integers(1, 20), st.integers(1, 20), st.just(3)),
               elements=st.floats(allow_nan=True, allow_infinity=True, width=32)),
    hnp.arrays(np.uint8, hnp.array_shapes(min_dims=1, max_dims=4, max_side=8)),
)


@settings(max_examples=n(8), **FAST)
@given(st.lists(FRAME, min_size=1, max_size=6), st.lists(TEXTS, max_size=4))
def test_pipeline_keeps_producing_after_any_bad_frames_and_texts(frames: list[np.ndarray], texts: list[str]) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent / "benchmarks"))
    import soak

    good = np.full((30, 30, 3), 120, np.uint8)
    seq = [*frames, good]

    class Cam(FakeCamera):  # hands the raw (possibly invalid) arrays to the face stage
        def read(self) -> Any:
            from affectlite.cameras import Frame

            if self._pos >= len(seq):
                return None
            i = self._pos
            self._pos += 1
            return Frame(seq[i], time.monotonic_ns(), i)

    got: list[EmotionResult] = []
    o = PipelineOptions().replace(**{"audio.enabled": False, "camera.every_frame": True})
    pipe = __import__("affectlite").EmotionPipeline(
        o, camera=Cam(seq), on_result=got.append, on_error=lambda e: None,
        face_analyzer_factory=soak.DoubleFace, text_classifier_factory=soak.DoubleText,
        fusion_factory=soak.DOUBLES["fusion"])
    with pipe:
        for t in texts:
            pipe.push_text(t)
        assert pipe.wait(timeout=20), "pipeline hung"
        st_ = pipe.stats()
    assert st_.state == "finished"
    assert st_.counts["face"] + st_.rejected["frames"] == len(seq)
    assert any(r.frame_index == len(seq) - 1 for r in got), "no result for the good frame after the bad ones"


# ------------------------------------------------------------------------------------ the CLI fuzz table
def _wav(rate: int = 16000, seconds: float = 0.5) -> bytes:
    b = io.BytesIO()
    with wave.open(b, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.sin(np.arange(int(rate * seconds)) * 0.05) * 8000).astype("<i2").tobytes())
    return b.getvalue()


def _png() -> bytes:
    cv2 = pytest.importorskip("cv2")
    _, buf = cv2.imencode(".png", np.full((32, 32, 3), 100, np.uint8))
    return bytes(buf)


def _npy() -> bytes:
    b = io.BytesIO()
    np.save(b, np.full((16, 16, 3), 9, np.uint8))
    return b.getvalue()


def _variants(good: bytes) -> dict[str, bytes]:
    rng = np.random.default_rng(len(good))
    big_header = bytearray(good)
    if good[:4] == b"RIFF":  # a WAV header claiming ~2 GB of data and a silly rate
        big_header[40:44] = (0x7FFFFFF0).to_bytes(4, "little")
        big_header[24:28] = (3).to_bytes(4, "little")
    if good[:4] == b"\x89PNG":  # a PNG claiming 100,000 x 100,000 pixels (30 GB decoded)
        big_header[16:24] = (100_000).to_bytes(4, "big") * 2
    return {"good": good, "empty": b"", "truncated": good[: len(good) // 2], "header_only": good[:44],
            "random": rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(), "bad_header": bytes(big_header),
            "flipped": bytes(b ^ 0x5A if i % 97 == 0 else b for i, b in enumerate(good))}


def _formats() -> list[tuple[str, str, list[str]]]:
    """(suffix, good-content maker name, argv template with {f})."""
    return [(".wav", "wav", ["classify", "--audio", "{f}"]), (".png", "png", ["classify", "--image", "{f}"]),
            (".npy", "npy", ["classify", "--image", "{f}"]), (".jpg", "png", ["classify", "--image", "{f}"]),
            (".tsv", "tsv", ["eval", "text", "--data", "{f}", "--limit", "3"]),
            (".yaml", "yaml", ["profile", "validate", "{f}"]),
            (".tflite", "tflite", ["classify", "--text", "x", "--model", "{f}"]),
            (".wav", "wav", ["run", "--audio", "{f}", "--no-camera", "--fast", "--duration", "5"])]


def _good(kind: str) -> bytes:
    root = Path(__file__).resolve().parents[1]
    return {"wav": _wav, "png": _png, "npy": _npy,
            "tsv": lambda: b"I am so happy today\t17\tid1\nthis is awful\t2\tid2\n",
            "yaml": lambda: b"extends: x86_64\ncamera:\n  fps: 10\n",
            "tflite": lambda: (root / "sdk/affectlite/models/text.tflite").read_bytes()}[kind]()


def _run_boxed(argv: list[str], timeout: float) -> int:
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["rc"] = main(argv)
        except SystemExit as e:
            out["rc"] = e.code
        except BaseException as e:
            out["exc"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f"hung: {argv}"
    assert "exc" not in out, f"{argv} raised {out.get('exc')!r}"
    return int(out["rc"])


def test_cli_fuzz_table_every_format_corrupt_truncated_oversized(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    failures = []
    for i, (suffix, kind, template) in enumerate(_formats()):
        for name, content in _variants(_good(kind)).items():
            f = tmp_path / f"{i}_{name}{suffix}"
            if kind == "tflite" and name == "good":
                (tmp_path / f"{i}_{name}{suffix}.card.json").write_text(json.dumps({"not": "a card"}))
            f.write_bytes(content)
            argv = [a.replace("{f}", str(f)) for a in template]
            rc = _run_boxed(argv, timeout=60)
            err = capsys.readouterr().err
            cmd = argv[0]
            ok = rc in (0, 2) and "Traceback" not in err and "internal error" not in err
            if rc == 2:
                ok = ok and f"affectlite {cmd}: error: " in err
            if not ok:
                failures.append((argv, rc, err[-300:]))
    # a folder where a file is expected
    rc = _run_boxed(["classify", "--audio", str(tmp_path)], timeout=30)
    err = capsys.readouterr().err
    assert rc == 2 and "affectlite classify: error:" in err
    assert not failures, failures
