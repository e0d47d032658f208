"""Reliability under faults and load: unplugged sources, missing devices, slow consumers, bounded memory,
the offline guard around a running pipeline, and a short soak."""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from affectlite import EmotionResult, PipelineOptions, SourceStatus
from affectlite.cameras import Frame
from affectlite.errors import NetworkBlockedError, PrivacyError, SourceError, SourceUnavailableError
from affectlite.microphones import AudioChunk
from affectlite.pipeline import MAX_FLAPS, EmotionPipeline
from affectlite.privacy import offline_guard_active
from affectlite.testing import FakeCamera, FakeMicrophone

sys.path.insert(0, str(Path(__file__).resolve().parent / "benchmarks"))
import soak

TEST_NET = "192.0.2.1"  # RFC 5737: never routed


def opts(**kw: object) -> PipelineOptions:
    return PipelineOptions().replace(**kw) if kw else PipelineOptions()


def make(o: PipelineOptions, **kw: object) -> EmotionPipeline:
    for kind, double in soak.DOUBLES.items():
        kw.setdefault({"face": "face_analyzer_factory", "voice": "voice_analyzer_factory",
                       "text": "text_classifier_factory", "fusion": "fusion_factory"}[kind], double)
    return EmotionPipeline(o, **kw)  # type: ignore[arg-type]


class Pluggable:
    """A device that can be unplugged and replugged by the test while the pipeline runs.

    While unplugged, ``read`` raises :class:`SourceError` (like a USB camera or mic that vanished) and so
    does ``open``; every ``open`` attempt time is recorded to check the backoff.
    """

    def __init__(self, rate_hz: float) -> None:
        self.plugged = threading.Event()
        self.plugged.set()
        self.period = 1.0 / rate_hz
        self.open_times: list[float] = []
        self.reads_ok = 0
        self.reads_after_replug = 0
        self.replugged_at: float | None = None
        self.overflows = 0
        self._i = 0

    def unplug(self) -> None:
        self.plugged.clear()

    def replug(self) -> None:
        self.replugged_at = time.monotonic()
        self.plugged.set()

    def open(self) -> None:
        self.open_times.append(time.monotonic())
        if not self.plugged.is_set():
            raise SourceError(f"{self.name}: device not found (unplugged)")

    def _tick(self) -> int:
        time.sleep(self.period)
        if not self.plugged.is_set():
            raise SourceError(f"{self.name}: read failed: device unplugged")
        self.reads_ok += 1
        if self.replugged_at is not None:
            self.reads_after_replug += 1
        self._i += 1
        return self._i

    def close(self) -> None:
        pass


class PluggableCamera(Pluggable):
    name = "usb-camera"

    def read(self) -> Frame | None:
        i = self._tick()
        return Frame(np.full((60, 80, 3), (i * 7) % 256, np.uint8), time.monotonic_ns(), i)


class PluggableMicrophone(Pluggable):
    name = "usb-mic"

    def read(self) -> AudioChunk | None:
        i = self._tick()
        t = (np.arange(1600) + i * 1600) / 16000
        return AudioChunk((np.sin(2 * np.pi * 220 * t) * 8000).astype(np.int16), time.monotonic_ns(), i)


def _states(statuses: list[SourceStatus], source: str) -> list[str]:
    return [s.state for s in statuses if s.source == source]


@pytest.mark.parametrize("which", ["camera", "microphone"])
def test_device_unplugged_reconnects_with_backoff_and_reports_status(which: str) -> None:
    statuses: list[SourceStatus] = []
    results: list[tuple[float, EmotionResult]] = []
    cam, mic = PluggableCamera(50), PluggableMicrophone(20)
    dev = cam if which == "camera" else mic
    o = opts(**{"camera.max_backoff_s": 0.4, "audio.max_backoff_s": 0.4})
    pipe = make(o, camera=cam, microphone=mic, on_status=statuses.append,
                voice_analyzer_factory=lambda _o: soak.DoubleVoice(_o, window=4800),  # a result per 0.3 s
                on_result=lambda r: results.append((time.monotonic(), r)))
    with pipe:
        time.sleep(0.5)
        dev.unplug()
        unplugged_at = time.monotonic()
        time.sleep(1.6)
        during = pipe.stats()
        dev.replug()
        time.sleep(0.8)
        after = pipe.stats()
    assert _states(statuses, which)[:2] == ["degraded", "ok"], statuses
    assert not _states(statuses, "camera" if which == "microphone" else "microphone")  # the other was fine
    assert after.reconnects == 1 and after.stage_errors >= 1
    # exponential backoff: a handful of spaced attempts during the outage, not a busy loop
    attempts = [t - unplugged_at for t in dev.open_times[1:]]
    assert 3 <= len(attempts) <= 10, attempts
    gaps = np.diff(attempts)
    assert gaps[0] < 0.75 * gaps[2], attempts  # the wait grows (0.1, 0.2, 0.4 s ...)
    assert float(np.median(gaps[2:])) <= 0.4 + 0.2, attempts  # ... and is capped at max_backoff_s
    assert dev.reads_after_replug >= 5  # capture resumed
    # the other source kept capturing during the outage, and results flowed after the reconnect
    other = "mic" if which == "camera" else "camera"
    assert during.counts[other] > after.counts[other] * 0.5 > 0
    assert dev.replugged_at is not None and any(t > dev.replugged_at + 0.1 for t, _ in results)
    kind = "faces" if which == "camera" else "voice"
    late = [r for t, r in results if dev.replugged_at is not None and t > dev.replugged_at + 0.1]
    assert any((r.faces if kind == "faces" else r.voice) for r in late), "no results from the reconnected device"


def test_microphone_overflows_are_counted_and_do_not_stop_capture() -> None:
    mic = FakeMicrophone.noise(3.0, overflow_every=4)
    cam = FakeCamera.from_images([np.zeros((40, 40, 3), np.uint8)] * 5)
    with make(opts(), camera=cam, microphone=mic, on_result=lambda r: None) as pipe:
        assert pipe.wait(timeout=20)
        st = pipe.stats()
    assert st.counts["mic"] == 30 and st.overflows == 7 and st.state == "finished"


def test_microphone_missing_at_start_runs_camera_only() -> None:
    statuses: list[SourceStatus] = []
    got: list[EmotionResult] = []
    cam = FakeCamera.from_images([np.full((40, 40, 3), 90, np.uint8)] * 12, realtime=True, fps=50)
    mic = FakeMicrophone.silence(1.0, unavailable=True)
    with make(opts(), camera=cam, microphone=mic, on_status=statuses.append, on_result=got.append) as pipe:
        assert pipe.wait(timeout=20)
    assert _states(statuses, "microphone") == ["absent"]
    assert len(got) >= 10 and all(r.faces and r.voice is None for r in got)
    assert not any(t.name == "affectlite-mic" for t in threading.enumerate())


def test_nothing_to_sense_refuses_to_start_and_leaves_nothing_running(no_leaked_threads: None) -> None:
    sensing: list[bool] = []
    cam = FakeCamera.from_images([np.zeros((8, 8, 3), np.uint8)], unavailable=True)
    mic = FakeMicrophone.silence(1.0, unavailable=True)
    pipe = make(opts(**{"text.enabled": False}), camera=cam, microphone=mic, on_result=lambda r: None,
                on_sensing=sensing.append)
    with pytest.raises(SourceUnavailableError, match=r"camera.*no such device.*microphone"):
        pipe.start()
    assert sensing == [] and not offline_guard_active() and pipe.state == "closed"


def test_camera_failing_right_after_every_reopen_is_given_up_with_a_reason(no_leaked_threads: None) -> None:
    class Flaky(FakeCamera):
        def read(self) -> Frame | None:
            self.is_open = False
            raise SourceError("fake camera: VIDIOC_DQBUF: No such device")

    statuses: list[SourceStatus] = []
    cam = Flaky.from_images([np.zeros((8, 8, 3), np.uint8)] * 3)
    mic = FakeMicrophone(lambda i: np.zeros(1600, np.int16), n_chunks=None, realtime=True)
    pipe = make(opts(**{"camera.max_backoff_s": 0.2}), camera=cam, microphone=mic, on_status=statuses.append,
                on_result=lambda r: None)
    with pipe:
        time.sleep(1.5)
        st = pipe.stats()
        assert pipe.state == "running"  # not fatal: reconnecting is on, the mic keeps going
    # each reopen succeeds and the next read fails again: degraded/ok cycles, paced by the backoff floor,
    # then the camera is given up ("failed", with the reason) instead of looping forever; the mic goes on
    assert cam.open_calls == 1 + MAX_FLAPS and st.counts["mic"] >= 5
    states = _states(statuses, "camera")
    assert states[:4] == ["degraded", "ok", "degraded", "ok"] and states[-1] == "failed", states
    failed = next(s for s in statuses if s.state == "failed")
    assert "right after reopening" in failed.detail and "VIDIOC_DQBUF" in failed.detail


def test_slow_callback_never_stalls_capture_and_memory_stays_bounded() -> None:
    calls: list[float] = []

    def slow(r: EmotionResult) -> None:
        calls.append(time.monotonic())
        time.sleep(1.0)

    o = opts(**{"queues.results": 8})
    pipe, _ = soak.build_pipeline(None, analyzers="doubles", width=640, height=480, fps=15, speed=10,
                                  options=o, on_result=slow)
    pipe.start()
    try:
        time.sleep(1.0)
        s1, rss1 = pipe.stats(), soak.rss_bytes()
        time.sleep(2.5)
        s2, rss2 = pipe.stats(), soak.rss_bytes()
    finally:
        pipe.close(timeout=5)
    dt = s2.uptime_s - s1.uptime_s
    cam_rate = (s2.counts["camera"] - s1.counts["camera"]) / dt
    mic_rate = (s2.counts["mic"] - s1.counts["mic"]) / dt
    assert cam_rate > 0.8 * 150, cam_rate  # 15 fps x 10: capture runs at full rate while the callback sleeps
    assert mic_rate > 0.8 * 100, mic_rate  # 10 chunks/s x 10
    assert s2.counts["face"] - s1.counts["face"] > 10 * dt  # inference keeps going too
    assert max(s2.queue_depths.values()) <= 8 and s2.drops["events"] > 100
    assert len(calls) <= 5
    assert (rss2 - rss1) / 2**20 < 20, f"RSS grew {(rss2 - rss1) / 2**20:.1f} MB in {dt:.1f} s"


def test_guard_blocks_a_connection_made_during_a_run_and_reports_it(no_leaked_threads: None) -> None:
    errors: list[BaseException] = []
    attempts: list[str] = []

    def phone_home(r: EmotionResult) -> None:
        if attempts:
            return
        try:
            socket.create_connection((TEST_NET, 443), timeout=1)
            attempts.append("connected")
        except NetworkBlockedError:
            attempts.append("blocked")
        assert offline_guard_active()

    cam = FakeCamera.from_images([np.zeros((20, 20, 3), np.uint8)] * 10, realtime=True, fps=50)
    with make(opts(**{"audio.enabled": False}), camera=cam, on_result=phone_home, on_error=errors.append) as p:
        p.wait(timeout=10)
        assert p.stats().callback_errors == 0
    assert attempts == ["blocked"]
    reported = [e for e in errors if isinstance(e, PrivacyError)]
    assert len(reported) == 1 and "192.0.2.1" in str(reported[0])
    assert not offline_guard_active()  # the guard ends with the pipeline


def test_guard_opt_out_and_loopback_setting(no_leaked_threads: None) -> None:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    port = srv.getsockname()[1]
    outcomes: dict[str, str] = {}

    def run(name: str, **kw: object) -> None:
        def cb(r: EmotionResult) -> None:
            if name in outcomes:
                return
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                outcomes[name] = "connected"
            except NetworkBlockedError:
                outcomes[name] = "blocked"

        cam = FakeCamera.from_images([np.zeros((20, 20, 3), np.uint8)] * 3)
        with make(opts(**{"audio.enabled": False, **kw}), camera=cam, on_result=cb) as p:
            p.wait(timeout=10)

    try:
        run("default")  # loopback allowed by default (local dashboards)
        run("strict", **{"privacy.allow_loopback": False})
        run("opt-out", **{"privacy.offline_guard": False, "privacy.allow_loopback": False})
    finally:
        srv.close()
    assert outcomes == {"default": "connected", "strict": "blocked", "opt-out": "connected"}


def test_consent_and_deployment_refusals_happen_before_any_sensing() -> None:
    from affectlite.errors import ConsentRequiredError, DeploymentRefusedError
    from affectlite.privacy import ConsentToken

    sensing: list[bool] = []
    cam = FakeCamera.from_images([np.zeros((8, 8, 3), np.uint8)] * 3)
    with pytest.raises(DeploymentRefusedError, match=r"Art\. 5\(1\)\(f\)"):
        make(opts(**{"privacy.deployment_context": "workplace"}), camera=cam, on_sensing=sensing.append).start()
    with pytest.raises(ConsentRequiredError):
        make(opts(**{"privacy.require_consent": True}), camera=cam, on_sensing=sensing.append).start()
    assert sensing == [] and cam.open_calls == 0  # the camera was never even opened
    tok = ConsentToken.grant("kiosk demo", "visitor-session-1")
    with make(opts(**{"privacy.require_consent": True, "audio.enabled": False}), camera=cam, consent=tok,
              on_sensing=sensing.append, on_result=lambda r: None) as p:
        p.wait(timeout=10)
    assert sensing == [True, False]


def test_short_soak_has_flat_threads_fds_and_memory() -> None:
    rep = soak.run_soak(4000, analyzers="doubles", width=160, height=120, fps=15, speed=40, warmup=0.25,
                        sample_s=0.25, timeout_s=60)
    assert rep["counts"]["camera"] == 4000 and rep["counts"]["face"] > 400
    assert rep["counts"]["mic"] == pytest.approx(4000 / 15 * 10, abs=1)
    assert rep["results_delivered"] > 400 and rep["callback_errors"] == 0 and rep["stage_errors"] == 0
    assert rep["threads"]["after"] == rep["threads"]["before"]
    assert rep["threads"]["min_during_after_warmup"] == rep["threads"]["max_during_after_warmup"]
    assert rep["fds"]["after"] == rep["fds"]["before"]
    assert rep["fds"]["min_during_after_warmup"] == rep["fds"]["max_during_after_warmup"]
    assert rep["rss_mb"]["growth_after_warmup"] < 5, rep["rss_mb"]


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc to count fds")
def test_repeated_pipelines_leak_no_threads_or_fds(no_leaked_threads: None) -> None:
    fds0, threads0 = soak.fd_count(), soak.os_thread_count()
    for _ in range(15):
        pipe, _used = soak.build_pipeline(30, analyzers="doubles", width=64, height=48, speed=0,
                                          on_result=lambda r: None)
        with pipe:
            pipe.wait(timeout=10)
    time.sleep(0.1)
    assert soak.fd_count() == fds0 and soak.os_thread_count() == threads0


def _state_bytes(obj: object, seen: set[int] | None = None) -> int:
    """Bytes reachable from an object's state (containers, arrays, dataclasses), without the model."""
    seen = set() if seen is None else seen
    if id(obj) in seen or callable(obj) or isinstance(obj, type):
        return 0
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        return int(obj.nbytes) + (_state_bytes(obj.base, seen) if obj.base is not None else 0)
    size = sys.getsizeof(obj)
    if isinstance(obj, dict):
        return size + sum(_state_bytes(k, seen) + _state_bytes(v, seen) for k, v in obj.items())
    if isinstance(obj, (list, tuple, set, frozenset)):
        return size + sum(_state_bytes(v, seen) for v in obj)
    if hasattr(obj, "__dict__") and not isinstance(obj, (str, bytes, int, float)):
        return size + _state_bytes(vars(obj), seen)
    return size


def test_voice_analyzer_memory_is_bounded_in_an_endless_utterance() -> None:
    """Next to a radio the VAD may never see the end of an utterance: the analyzer must not grow with it."""
    models = Path(__file__).resolve().parents[1] / "sdk" / "affectlite" / "models"
    if not (models / "voice.tflite").exists():
        pytest.skip("shipped voice model not built yet")
    from affectlite.microphones.synthetic import SyntheticMicrophone
    from affectlite.options import VoiceOptions
    from affectlite.voice import VoiceAnalyzer

    va = VoiceAnalyzer(VoiceOptions())
    mic = SyntheticMicrophone("voiced")  # speech-like, never silent for longer than the hangover
    mic.open()
    finals, sizes = 0, []
    for i in range(1200):  # 120 s of audio: ~240 windows of one utterance
        c = mic.read()
        assert c is not None
        finals += sum(r.is_final for r in va.push(c.samples, c.timestamp_ns))
        if i >= 200 and i % 25 == 0:
            state = {k: v for k, v in vars(va).items() if k not in ("classifier", "_vad")}
            sizes.append(_state_bytes(state))
    assert finals == 0, "the test signal should be one endless utterance"
    # the rolling buffers' size fluctuates between trims: compare medians of the first and last quarter
    grown = float(np.median(sizes[-10:]) - np.median(sizes[:10]))
    print("voice state growth (bytes):", grown)
    assert grown < 4_000, f"analyzer state grew {grown:.0f} bytes over 100 s of continuous speech ({sizes})"
