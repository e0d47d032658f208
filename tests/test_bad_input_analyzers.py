"""Bad input to the real face and voice analyzers (shipped models), directly and inside a running pipeline:
a clear InputError (or an empty result), and the analyzer and the pipeline keep working afterwards."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from affectlite import EmotionResult, FaceResult, PipelineOptions, VoiceResult
from affectlite.errors import InputError
from affectlite.options import FaceOptions, VoiceOptions

MODELS = Path(__file__).resolve().parents[1] / "sdk" / "affectlite" / "models"


def _face_analyzer() -> Any:
    if not (MODELS / "face.tflite").exists():
        pytest.skip("shipped face model (sdk/affectlite/models/face.tflite) not built yet")
    pytest.importorskip("cv2")  # the default Haar detector
    from affectlite.face import FaceAnalyzer

    return FaceAnalyzer(FaceOptions(detect_every=1))


def _voice_analyzer() -> Any:
    if not (MODELS / "voice.tflite").exists():
        pytest.skip("shipped voice model (sdk/affectlite/models/voice.tflite) not built yet")
    from affectlite.voice import VoiceAnalyzer

    return VoiceAnalyzer(VoiceOptions())


@pytest.fixture(scope="module")
def face_analyzer() -> Any:
    return _face_analyzer()


@pytest.fixture(scope="module")
def voice_analyzer() -> Any:
    return _voice_analyzer()


@st.composite
def frames(draw: st.DrawFn) -> np.ndarray:
    dtype = draw(st.sampled_from([np.uint8, np.uint8, np.float32, np.int16, np.bool_]))
    h = draw(st.sampled_from([0, 1, 5, 8, 9, 48, 120, 481]))
    w = draw(st.sampled_from([0, 1, 7, 8, 33, 160, 641, 1500]))
    shape = draw(st.sampled_from([(h, w, 3), (h, w, 3), (h, w), (h, w, 1), (h, w, 4), (h, w, 2), (h,),
                                  (2, h, w, 3)]))
    fill = draw(hnp.arrays(np.uint8, 3))
    img = np.zeros(shape, np.uint8)
    if img.size:
        img[...] = fill[0]
        img.reshape(-1)[:: max(1, img.size // 97)] = fill[1]
    return img.astype(dtype)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(frames())
def test_face_analyzer_odd_frames_give_results_or_input_error(face_analyzer: Any, frame: np.ndarray) -> None:
    try:
        out = face_analyzer.process(frame, time.monotonic_ns())
    except InputError as e:
        assert str(e)
    else:
        assert isinstance(out, tuple) and all(isinstance(f, FaceResult) for f in out)
    try:
        still = face_analyzer.classify_image(frame)
    except InputError:
        pass
    else:
        for f in still:
            assert len(f.probabilities) == 7 and abs(sum(f.probabilities) - 1) < 1e-3
    # the analyzer is intact: a normal frame still works
    assert isinstance(face_analyzer.process(np.full((120, 160, 3), 128, np.uint8), time.monotonic_ns()), tuple)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(st.sampled_from([np.int16, np.float32, np.float64, np.int32, np.int64, np.uint8]),
       st.sampled_from([(0,), (1,), (37,), (1600,), (1600, 1), (1600, 2), (2, 2, 2), ()]),
       st.sampled_from([0.0, 0.3, np.nan, np.inf, 1e30]))
def test_voice_analyzer_odd_chunks_give_results_or_input_error(voice_analyzer: Any, dtype: Any,
                                                               shape: tuple[int, ...], value: float) -> None:
    with np.errstate(invalid="ignore", over="ignore"):
        x = np.full(shape, value).astype(dtype) if np.dtype(dtype).kind == "f" else \
            (np.full(shape, np.nan_to_num(value, posinf=1.0)) * 1000).astype(dtype)
    try:
        out = voice_analyzer.push(x, time.monotonic_ns())
    except InputError as e:
        assert str(e)
    else:
        assert all(isinstance(r, VoiceResult) for r in out)
    t = np.arange(1600) / 16000
    assert isinstance(voice_analyzer.push((np.sin(2 * np.pi * 200 * t) * 3000).astype(np.int16),
                                          time.monotonic_ns()), list)


def test_voice_classify_clip_bad_clips(voice_analyzer: Any) -> None:
    for bad in (np.full(32000, np.nan, np.float32), np.zeros((2, 2, 2)), np.array(["a"] * 100)):
        with pytest.raises(InputError):
            voice_analyzer.classify_clip(bad, 16000)
    with pytest.raises(InputError):
        voice_analyzer.classify_clip(np.zeros(32000, np.float32), 0)
    # silence or a too-short clip is not an error: there is simply no voice in it
    for quiet in (np.zeros(32000, np.float32), np.zeros(10, np.float32)):
        r = voice_analyzer.classify_clip(quiet, 16000)
        assert r is None or isinstance(r, VoiceResult)


def test_pipeline_survives_odd_frames_with_the_real_face_analyzer() -> None:
    _face_analyzer()  # skips when the model is missing
    from affectlite.pipeline import EmotionPipeline
    from affectlite.testing import FakeCamera

    sizes = [(120, 160), (4, 4), (480, 640), (2, 3000), (100, 100), (7, 9), (240, 320)]
    imgs = [np.full((h, w, 3), 90, np.uint8) for h, w in sizes]
    errors: list[BaseException] = []
    results: list[EmotionResult] = []
    cam = FakeCamera.from_images(imgs, realtime=True, fps=20)
    opts = PipelineOptions().replace(**{"audio.enabled": False, "text.enabled": False, "face.detect_every": 1})
    with EmotionPipeline(opts, camera=cam, on_result=results.append, on_error=errors.append) as pipe:
        assert pipe.wait(timeout=60)
        st_ = pipe.stats()
    tiny = sum(1 for h, w in sizes if h < 8 or w < 8)
    assert st_.state == "finished" and st_.counts["camera"] == len(sizes)
    assert st_.stage_errors == tiny and st_.rejected["frames"] == tiny
    # reported once (rate-limited: the first of its kind at once, then at most one summary per 10 s)
    assert sum(isinstance(e, InputError) for e in errors) == 1
    assert len(results) == len(sizes) - tiny  # every good frame still gave a result
