"""examples/fleet_mqtt.py: aggregation and anonymity rules, and publishing to a real Mosquitto broker that the
test starts on loopback (Debian package mosquitto; pip package paho-mqtt)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from _examples_support import doubles, load_example, peaked, scripted_camera
from affectlite import EmotionResult, PipelineOptions
from affectlite.errors import ConfigError
from affectlite.labels import LABELS
from affectlite.results import Box, FaceResult

fleet = load_example("fleet_mqtt.py", "fleet_mqtt_example")

FORBIDDEN_KEYS = {"box", "boxes", "faces", "probabilities", "probs", "track", "track_id", "tracks", "image", "audio",
                  "text", "capture_ns", "result_ns", "timestamp_ns", "frame_index"}


def res(label: str, track: int | None = 1) -> EmotionResult:
    p = peaked(label)
    faces = (FaceResult(track, Box(1, 2, 30, 30), 0.9, p, 1),) if track is not None else ()
    return EmotionResult(label, p, max(p), faces=faces, modality_weights={"face": 1.0}, track_id=track,
                         capture_ns=1, result_ns=2)


def _keys(obj: Any) -> set[str]:
    if isinstance(obj, dict):
        out = set(obj)
        for v in obj.values():
            out |= _keys(v)
        return out
    if isinstance(obj, list):
        return set().union(*(_keys(v) for v in obj)) if obj else set()
    return set()


def test_aggregator_counts_visitors_by_dominant_expression_and_suppresses_small_windows() -> None:
    now = [100.0]
    agg = fleet.FleetAggregator("lobby", window_s=10, min_visitors=3, clock=lambda: now[0],
                                wall=lambda: 1_700_000_123.0)
    for _ in range(5):
        agg.on_result(res("happy", 1))
    agg.on_result(res("sad", 1))
    for _ in range(3):
        agg.on_result(res("angry", 2))
    agg.on_result(res("neutral", 7))
    agg.on_result(res("neutral", None))          # voice-only: counts in the share, not as a visitor
    agg.on_result(EmotionResult.empty())          # nothing seen: not counted
    assert agg.roll() is None                     # window still open
    now[0] += 10
    p = agg.roll()
    assert p is not None
    assert p["visitors"] == 3 and p["results"] == 11 and p["suppressed"] is False
    assert p["expressions"] == {"neutral": 1, "happy": 1, "sad": 0, "angry": 1, "fear": 0, "disgust": 0,
                                "surprise": 0}
    assert p["share"]["happy"] == round(5 / 11, 3) and abs(sum(p["share"].values()) - 1) < 0.01
    assert p["period_end"] == "2023-11-14T22:15Z"  # floored to the 10 s window, minute precision
    assert not (_keys(p) & FORBIDDEN_KEYS)
    # next window: one visitor only -> suppressed, no expression counts at all
    agg.on_result(res("happy", 9))
    now[0] += 10
    q = agg.roll()
    assert q is not None and q["suppressed"] is True and q["visitors"] == 1 and q["results"] == 1
    assert "expressions" not in q and "share" not in q
    assert agg.roll(force=True) == {**q, "visitors": 0, "results": 0, "window_s": 0.0}
    with pytest.raises(ConfigError):
        fleet.FleetAggregator("x", window_s=0)
    with pytest.raises(ConfigError):
        fleet.FleetAggregator("x", min_visitors=0)


def test_a_remote_broker_needs_an_explicit_opt_in(capsys: pytest.CaptureFixture[str]) -> None:
    rc = fleet.main(["--broker", "mqtt.example.com:1883", "--duration", "1"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "not on this device" in err and "--allow-network" in err
    args = fleet.parse_args(["--allow-network"])
    assert fleet.build_options(args).privacy.offline_guard is False
    assert fleet.build_options(fleet.parse_args([])).privacy.offline_guard is True
    assert fleet._broker("[::1]:1884") == ("::1", 1884)
    assert fleet._broker("127.0.0.1") == ("127.0.0.1", 1883)


# ------------------------------------------------------------------------------------------ real broker
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[int]:
    exe = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    if exe is None:
        pytest.skip("needs the Mosquitto broker (Debian package mosquitto)")
    pytest.importorskip("paho.mqtt.client", reason="needs paho-mqtt (pip install paho-mqtt)")
    port = _free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\n")
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode() if proc.stderr else ""
                    pytest.fail(f"mosquitto did not start: {err}")
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()


class Subscriber:
    def __init__(self, port: int) -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, bytes, bool]] = []
        self.ready = threading.Event()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="fleet-test-sub")
        self.c.on_connect = lambda c, u, f, rc, p: c.subscribe("affectlite/fleet/#", qos=1)
        self.c.on_subscribe = lambda c, u, mid, rcs, p: self.ready.set()
        self.c.on_message = lambda c, u, m: self.messages.append((m.topic, m.payload, bool(m.retain)))
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        assert self.ready.wait(10), "subscriber did not subscribe"

    def wait_for(self, pred: Any, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while not pred(self.messages) and time.monotonic() < deadline:
            time.sleep(0.05)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def test_publishes_aggregates_to_a_real_broker_with_the_offline_guard_on(
        mosquitto: int, capsys: pytest.CaptureFixture[str]) -> None:
    sub = Subscriber(mosquitto)
    try:
        # three visitors (tracks 1..3), in 0.6 s windows; the third window has one visitor only
        cam = scripted_camera([("happy", 12, 1), ("happy", 6, 2), ("angry", 12, 3), ("sad", 6, 4),
                               (None, 6), ("neutral", 20, 5)], fps=40)
        opts = PipelineOptions().replace(**{"audio.enabled": False, "privacy.deployment_context": "kiosk"})
        assert opts.privacy.offline_guard
        rc = fleet.main(["--broker", f"127.0.0.1:{mosquitto}", "--kiosk-id", "test-kiosk", "--window", "0.6",
                         "--min-visitors", "2", "--duration", "10"], options=opts,
                        pipeline_kwargs=doubles(camera=cam))
        out = capsys.readouterr()
        assert rc == 0, out.err
        sub.wait_for(lambda m: any(t.endswith("/status") and p == b"offline" for t, p, _ in m))
    finally:
        sub.close()
    data = [json.loads(p) for t, p, _ in sub.messages if t == "affectlite/fleet/test-kiosk/expressions"]
    status = [p.decode() for t, p, _ in sub.messages if t == "affectlite/fleet/test-kiosk/status"]
    assert status[0] == "online" and status[-1] == "offline"
    assert len(data) >= 2, out.out
    for p in data:
        assert p["schema"] == fleet.SCHEMA and p["kiosk"] == "test-kiosk"
        assert not (_keys(p) & FORBIDDEN_KEYS), p
        assert all(isinstance(v, (int, float, str, bool, dict)) for v in p.values())
        if p["suppressed"]:
            assert p["visitors"] < 2 and "expressions" not in p
        else:
            assert p["visitors"] >= 2 and sum(p["expressions"].values()) == p["visitors"]
            assert set(p["expressions"]) == set(LABELS)
    # everything counted was published, and the visitor counts add up to the 5 tracks (a track spanning
    # two windows is counted in both)
    total = sum(p["results"] for p in data)
    assert total > 0 and f"fleet_mqtt: {total} results aggregated" in out.out
    assert sum(p["visitors"] for p in data) >= 5
    seen = {lab for p in data if not p["suppressed"] for lab, n in p["expressions"].items() if n}
    assert "happy" in seen


def test_dry_run_prints_the_payload_instead_of_sending(capsys: pytest.CaptureFixture[str]) -> None:
    cam = scripted_camera([("happy", 10, 1), ("sad", 10, 2)], fps=60)
    opts = PipelineOptions().replace(**{"audio.enabled": False})
    rc = fleet.main(["--window", "30", "--min-visitors", "1", "--duration", "5"], options=opts,
                    pipeline_kwargs=doubles(camera=cam))
    out = capsys.readouterr().out
    assert rc == 0
    lines = [ln for ln in out.splitlines() if ln.startswith("dry run, would publish:")]
    assert len(lines) == 1
    p = json.loads(lines[0].split(":", 1)[1])
    assert p["visitors"] == 2 and p["expressions"]["happy"] == 1 and p["expressions"]["sad"] == 1
