"""The live pipeline's orchestration: threads, queues, callbacks, lifecycle, errors (with fakes)."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from affectlite import EmotionResult, FaceResult, FusionOptions, PipelineOptions, SourceStatus, TextResult, VoiceResult
from affectlite.errors import ModelLoadError, PipelineError, SourceError
from affectlite.labels import LABELS
from affectlite.pipeline import EmotionPipeline
from affectlite.results import Box
from affectlite.testing import FakeCamera, FakeMicrophone
from affectlite.text import TEXT_MODELS


def onehot(label: str) -> tuple[float, ...]:
    return tuple(0.94 if lab == label else 0.01 for lab in LABELS)


class BrightnessFace:
    """Test double: one face per frame; 'happy' when the frame is bright, else 'sad'. Records its thread."""

    def __init__(self, opts: object, delay: float = 0.0) -> None:
        self.delay = delay
        self.threads: set[str] = set()
        self.closed = False

    def process(self, frame: np.ndarray, ts: int) -> tuple[FaceResult, ...]:
        self.threads.add(threading.current_thread().name)
        if self.delay:
            time.sleep(self.delay)
        lab = "happy" if frame.mean() > 127 else "sad"
        return (FaceResult(1, Box(10, 10, 50, 50), 0.9, onehot(lab), ts),)

    def close(self) -> None:
        self.closed = True


class ChunkVoice:
    """Test double: one voice result per 5 chunks."""

    def __init__(self, opts: object) -> None:
        self.n = 0
        self.flushed = False

    def push(self, samples: np.ndarray, ts: int) -> list[VoiceResult]:
        self.n += 1
        if self.n % 5 == 0:
            return [VoiceResult(onehot("angry"), 0.9, ts - 500_000_000, ts)]
        return []

    def flush(self) -> list[VoiceResult]:
        self.flushed = True
        return []

    def close(self) -> None:
        pass


class EchoText:
    def __init__(self, opts: object) -> None:
        pass

    def classify(self, text: str, timestamp_ns: int = 0) -> TextResult:
        return TextResult(onehot("happy" if "great" in text else "neutral"), len(text.split()), timestamp_ns)


class LastEvidenceFusion:
    """Test double: the result is the newest evidence, labelled as such."""

    def __init__(self, opts: object) -> None:
        self.threads: set[str] = set()

    def _r(self, probs: tuple[float, ...], cap: int, now: int, **kw: object) -> list[EmotionResult]:
        self.threads.add(threading.current_thread().name)
        lab = LABELS[int(np.argmax(probs))]
        return [EmotionResult(lab, probs, max(probs), capture_ns=cap, result_ns=now,
                              modality_weights={"x": 1.0}, **kw)]  # type: ignore[arg-type]

    def update_faces(self, faces, frame_index, capture_ns, now_ns):  # type: ignore[no-untyped-def]
        if not faces:
            return [EmotionResult.empty(capture_ns, now_ns, frame_index)]
        return self._r(faces[0].probabilities, capture_ns, now_ns, faces=faces, frame_index=frame_index,
                       track_id=faces[0].track_id)

    def update_voice(self, voice, now_ns):  # type: ignore[no-untyped-def]
        return self._r(voice.probabilities, voice.end_ns, now_ns, voice=voice)

    def update_text(self, text, now_ns):  # type: ignore[no-untyped-def]
        return self._r(text.probabilities, text.timestamp_ns, now_ns, text=text)


def opts(**kw: object) -> PipelineOptions:
    o = PipelineOptions().replace(**{"privacy.offline_guard": False})
    return o.replace(**kw) if kw else o


def frames(n: int, bright_from: int | None = None) -> list[np.ndarray]:
    out = []
    for i in range(n):
        v = 200 if bright_from is not None and i >= bright_from else 50
        out.append(np.full((120, 160, 3), v, np.uint8))
    return out


def make(o: PipelineOptions | None = None, face: type = BrightnessFace, **kw: object) -> EmotionPipeline:
    kw.setdefault("face_analyzer_factory", face)
    kw.setdefault("voice_analyzer_factory", ChunkVoice)
    kw.setdefault("text_classifier_factory", EchoText)
    kw.setdefault("fusion_factory", LastEvidenceFusion)
    return EmotionPipeline(o or opts(), **kw)  # type: ignore[arg-type]


def test_results_flow_from_camera_and_mic_on_the_dispatch_thread(no_leaked_threads: None) -> None:
    got: list[EmotionResult] = []
    threads: set[str] = set()

    def on_result(r: EmotionResult) -> None:
        threads.add(threading.current_thread().name)
        got.append(r)

    cam = FakeCamera.from_images(frames(40))
    mic = FakeMicrophone.silence(2.0)
    with make(on_result=on_result, camera=cam, microphone=mic) as pipe:
        assert pipe.wait(timeout=20)
        st = pipe.stats()
    assert threads == {"affectlite-dispatch"}
    labels = {r.label for r in got}
    assert "sad" in labels and "angry" in labels  # face and voice results both arrived
    assert st.counts["camera"] == 40 and st.counts["mic"] == 20
    assert st.counts["results"] == len(got)
    assert st.state == "finished"
    assert all(r.capture_ns > 0 and r.result_ns >= r.capture_ns for r in got if not r.is_empty)
    assert cam.close_calls >= 1 and not mic.is_open


def test_on_change_fires_when_label_changes() -> None:
    changes: list[tuple[str, str]] = []
    cam = FakeCamera.from_images(frames(20, bright_from=10), realtime=True, fps=100)
    o = opts(**{"audio.enabled": False})
    with make(o, on_result=lambda r: None, on_change=lambda r, prev: changes.append((prev, r.label)),
              camera=cam) as p:
        p.wait(timeout=10)
    assert changes == [("sad", "happy")]


def test_newest_frame_wins_and_drops_are_counted() -> None:
    cam = FakeCamera.from_images(frames(60))
    o = opts(**{"audio.enabled": False, "queues.frames": 1})
    slow = lambda o_: BrightnessFace(o_, delay=0.02)  # noqa: E731
    with make(o, face=slow, on_result=lambda r: None, camera=cam) as pipe:
        pipe.wait(timeout=20)
        st = pipe.stats()
    assert st.counts["camera"] == 60
    assert st.drops["frames"] > 0
    assert st.counts["face"] + st.drops["frames"] == 60


def test_every_frame_waits_for_the_face_thread_instead_of_dropping() -> None:
    cam = FakeCamera.from_images(frames(40, bright_from=20))
    o = opts(**{"audio.enabled": False, "queues.frames": 1, "camera.every_frame": True})
    slow = lambda o_: BrightnessFace(o_, delay=0.01)  # noqa: E731
    seen: list[int] = []
    with make(o, face=slow, on_result=lambda r: seen.append(r.frame_index), camera=cam) as pipe:
        pipe.wait(timeout=20)
        st = pipe.stats()
    assert st.counts["camera"] == 40
    assert st.drops["frames"] == 0
    assert st.counts["face"] == 40
    assert sorted(seen) == list(range(40))


def test_every_frame_reader_blocked_on_a_full_queue_still_stops() -> None:
    cam = FakeCamera(lambda i: np.zeros((48, 64, 3), np.uint8), n_frames=None)
    o = opts(**{"audio.enabled": False, "queues.frames": 1, "camera.every_frame": True})
    slow = lambda o_: BrightnessFace(o_, delay=0.5)  # noqa: E731
    pipe = make(o, face=slow, on_result=lambda r: None, camera=cam).start()
    time.sleep(0.3)
    t0 = time.monotonic()
    pipe.close(timeout=5)
    assert time.monotonic() - t0 < 4.0
    assert not [t for t in threading.enumerate() if t.name.startswith("affectlite")]


def test_slow_callback_never_stalls_capture_and_memory_is_bounded() -> None:
    cam = FakeCamera(lambda i: np.zeros((48, 64, 3), np.uint8), n_frames=None, realtime=True, fps=200)
    o = opts(**{"audio.enabled": False, "queues.results": 4})
    calls = []

    def slow(r: EmotionResult) -> None:
        calls.append(r)
        time.sleep(1.0)

    pipe = make(o, on_result=slow, camera=cam).start()
    time.sleep(1.5)
    st = pipe.stats()
    pipe.close(timeout=5)
    assert st.counts["camera"] > 100  # capture went on at ~200 fps while the callback slept
    assert st.queue_depths["events"] <= 4  # bounded
    assert st.drops["events"] > 50
    assert len(calls) <= 3


def test_raising_callback_goes_to_on_error_and_pipeline_keeps_running() -> None:
    errors: list[BaseException] = []
    n = {"calls": 0}

    def bad(r: EmotionResult) -> None:
        n["calls"] += 1
        raise ValueError("boom")

    cam = FakeCamera.from_images(frames(10), realtime=True, fps=50)
    with make(opts(**{"audio.enabled": False}), on_result=bad, on_error=errors.append, camera=cam) as pipe:
        pipe.wait(timeout=10)
        st = pipe.stats()
    assert n["calls"] == 10
    assert len(errors) == 10 and all(isinstance(e, ValueError) for e in errors)
    assert st.callback_errors == 10


def test_fatal_model_error_stops_pipeline_and_is_reraised() -> None:
    class Broken(BrightnessFace):
        def process(self, frame: np.ndarray, ts: int) -> tuple[FaceResult, ...]:
            raise ModelLoadError("interpreter exploded")

    cam = FakeCamera(lambda i: np.zeros((10, 10, 3), np.uint8), n_frames=None)
    pipe = make(opts(**{"audio.enabled": False}), face=Broken, on_result=lambda r: None, camera=cam)
    pipe.start()
    with pytest.raises(ModelLoadError, match="exploded"):
        pipe.wait(timeout=10)
    with pytest.raises(ModelLoadError):
        pipe.close()
    assert pipe.state == "closed"


def test_source_error_without_reconnect_is_fatal() -> None:
    cam = FakeCamera.from_images(frames(10), fail_reads=[3])
    o = opts(**{"audio.enabled": False, "camera.reconnect": False})
    with pytest.raises(SourceError, match="reconnect is disabled"), make(o, on_result=lambda r: None, camera=cam) as p:
        p.wait(timeout=10)


def test_camera_reconnects_with_backoff_and_reports_status() -> None:
    statuses: list[SourceStatus] = []
    cam = FakeCamera.from_images(frames(20), fail_reads=[5], fail_opens=0)
    o = opts(**{"audio.enabled": False, "camera.max_backoff_s": 0.1})
    with make(o, on_result=lambda r: None, on_status=statuses.append, camera=cam) as pipe:
        pipe.wait(timeout=10)
        st = pipe.stats()
    states = [s.state for s in statuses if s.source == "camera"]
    assert states[:2] == ["degraded", "ok"]
    assert st.reconnects == 1
    assert st.counts["camera"] == 19  # every frame but the failed read


def test_camera_missing_at_start_runs_audio_only() -> None:
    statuses: list[SourceStatus] = []
    got: list[EmotionResult] = []
    cam = FakeCamera.from_images(frames(5), unavailable=True)
    mic = FakeMicrophone.silence(1.0)
    with make(on_result=got.append, on_status=statuses.append, camera=cam, microphone=mic) as pipe:
        pipe.wait(timeout=10)
    assert any(s.source == "camera" and s.state == "absent" for s in statuses)
    assert got and all(r.voice is not None for r in got)


def test_start_twice_and_reuse_after_close_raise() -> None:
    pipe = make(opts(**{"audio.enabled": False}), on_result=lambda r: None,
                camera=FakeCamera.from_images(frames(2)))
    pipe.start()
    with pytest.raises(PipelineError, match="already started"):
        pipe.start()
    pipe.close()
    with pytest.raises(PipelineError, match="already started"):
        pipe.start()


def test_iterator_form_yields_results_on_caller_thread() -> None:
    cam = FakeCamera.from_images(frames(8), realtime=True, fps=50)
    pipe = make(opts(**{"audio.enabled": False}), camera=cam)
    with pipe:
        labels = [r.label for r in pipe]
    assert labels == ["sad"] * 8


def test_push_text_reaches_fusion_and_text_is_not_kept() -> None:
    got: list[EmotionResult] = []
    o = opts(**{"audio.enabled": False, "camera.enabled": False})
    with make(o, on_result=got.append) as pipe:
        pipe.push_text("this is great")
        deadline = time.monotonic() + 5
        while not got and time.monotonic() < deadline:
            time.sleep(0.01)
    assert got[0].label == "happy" and got[0].text is not None
    assert "great" not in repr(got[0])  # results carry labels and scores, never the text


def test_close_joins_every_thread_and_sensing_hook_brackets_the_run(no_leaked_threads: None) -> None:
    events: list[tuple[str, bool]] = []
    cam = FakeCamera(lambda i: np.zeros((10, 10, 3), np.uint8), n_frames=None)
    mic = FakeMicrophone(lambda i: np.zeros(1600, np.int16), n_chunks=None)
    pipe = make(on_result=lambda r: events.append(("result", True)), camera=cam, microphone=mic,
                on_sensing=lambda on: events.append(("sensing", on)))
    pipe.start()
    time.sleep(0.2)
    pipe.close()
    assert events[0] == ("sensing", True) and events[-1] == ("sensing", False)
    assert not [t for t in threading.enumerate() if t.name.startswith("affectlite")]


def test_no_source_at_all_raises_at_start() -> None:
    cam = FakeCamera.from_images(frames(2), unavailable=True)
    mic = FakeMicrophone.silence(1.0, unavailable=True)
    with pytest.raises(SourceError, match="no camera and no microphone could be opened"):
        make(on_result=lambda r: None, camera=cam, microphone=mic).start()


def test_consent_must_cover_every_sensed_modality() -> None:
    from affectlite.errors import ConsentRequiredError
    from affectlite.privacy import ConsentToken

    o = opts(**{"privacy.require_consent": True})
    camera_only = ConsentToken.grant("kiosk demo", "visitor", scope=["camera"])
    pipe = make(o, on_result=lambda r: None, camera=FakeCamera.from_images(frames(2)),
                microphone=FakeMicrophone.silence(0.5), consent=camera_only)
    with pytest.raises(ConsentRequiredError):
        pipe.start()
    full = ConsentToken.grant("kiosk demo", "visitor")
    with make(o, on_result=lambda r: None, camera=FakeCamera.from_images(frames(2)),
              microphone=FakeMicrophone.silence(0.5), consent=full) as p:
        assert p.wait(timeout=10)


def test_face_crop_accessor_is_opt_in_in_memory_and_cleared_on_close() -> None:
    cam = FakeCamera.from_images(frames(5), realtime=True, fps=50)
    o = opts(**{"audio.enabled": False})
    with make(o, on_result=lambda r: None, camera=cam) as pipe, pytest.raises(PipelineError, match="opt-in"):
        pipe.face_crop(1)
    cam = FakeCamera.from_images(frames(5), realtime=True, fps=50)
    pipe = make(o, on_result=lambda r: None, camera=cam, keep_face_crops=True).start()
    pipe.wait(timeout=10)
    crop = pipe.face_crop(1)
    assert crop is not None and crop.shape == (50, 50, 3) and crop.dtype == np.uint8  # the test double's box
    crop[:] = 0
    assert pipe.face_crop(1).max() > 0  # type: ignore[union-attr]  # a copy: the caller cannot alter the SDK's
    assert pipe.face_crop(99) is None
    pipe.close()
    assert pipe.face_crop(1) is None


def open_models() -> set[str]:
    """Names of the .tflite files this process holds open."""
    out = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.endswith(".tflite"):
                out.add(Path(target).name)
    return out


needs_proc_fd = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd (Linux)")


@needs_proc_fd
def test_close_releases_every_model_file_while_the_pipeline_object_lives() -> None:
    """The real text model and fusion head are released by close(), not by garbage collection."""
    before = open_models()
    got: list[EmotionResult] = []
    o = opts(**{"audio.enabled": False, "camera.enabled": False, "fusion.strategy": "learned"})
    pipe = EmotionPipeline(o, on_result=got.append)
    with pipe:
        pipe.push_text("what a wonderful surprise, I love it")
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            time.sleep(0.01)
        assert {TEXT_MODELS["en"].name, "fusion.tflite"} <= open_models() - before  # real models, loaded
    assert got and got[0].text is not None
    assert open_models() - before == set()  # closed: nothing held, though `pipe` is still referenced
    with pytest.raises(PipelineError):
        pipe.push_text("after close")


@needs_proc_fd
def test_classifier_close_releases_its_models_and_reloads_on_the_next_call() -> None:
    from affectlite import EmotionClassifier, PipelineOptions

    before = open_models()
    clf = EmotionClassifier(PipelineOptions().replace(**{"fusion.strategy": "learned"}))
    crop = np.full((48, 48), 128, np.uint8)  # a face crop (FER2013-like) is classified directly
    r1 = clf.classify(image=crop, text="I am so happy today")
    assert {"face.tflite", TEXT_MODELS["en"].name, "fusion.tflite"} <= open_models() - before
    clf.close()
    assert open_models() - before == set()
    r2 = clf.classify(image=crop, text="I am so happy today")  # models load again, same answer
    assert r2.label == r1.label and np.allclose(r2.probabilities, r1.probabilities)
    clf.close()


@needs_proc_fd
def test_close_releases_models_that_the_app_built_and_lent_through_factories() -> None:
    """Prebuilt text classifier and fusion (still referenced by the app): close() releases their models."""
    from affectlite.fusion import Fusion
    from affectlite.text import TextClassifier

    before = open_models()
    text, fusion = TextClassifier.create(), Fusion(FusionOptions(strategy="learned"))
    got: list[EmotionResult] = []
    o = opts(**{"audio.enabled": False, "camera.enabled": False})
    with EmotionPipeline(o, on_result=got.append, text_classifier_factory=lambda _o: text,
                         fusion_factory=lambda _o: fusion) as pipe:
        pipe.push_text("what a wonderful surprise")
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            time.sleep(0.01)
    assert got
    assert open_models() - before == set()
