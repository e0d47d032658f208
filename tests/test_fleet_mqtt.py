"""examples/fleet_mqtt.py: aggregation and anonymity rules, and publishing to a real Mosquitto broker that the
test starts on loopback (Debian package mosquitto; pip package paho-mqtt)."""

from __future__ import annotations

import itertools
import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import affectlite
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


def _validator() -> Any:
    jsonschema = pytest.importorskip("jsonschema", reason="schema checks need jsonschema (the dev extra)")
    schema = fleet.load_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


def _errors(v: Any, payload: Any) -> list[str]:
    return [f"{'/'.join(map(str, e.path))}: {e.message}" for e in v.iter_errors(payload)]


def test_aggregator_counts_visitors_by_dominant_expression_and_suppresses_small_windows() -> None:
    now, wall = [100.0], [1_700_000_123.7]
    agg = fleet.FleetAggregator("lobby", window_s=10, min_visitors=3, clock=lambda: now[0], wall=lambda: wall[0])
    for _ in range(5):
        agg.on_result(res("happy", 1))
    agg.on_result(res("sad", 1))
    for _ in range(3):
        agg.on_result(res("angry", 2))
    agg.on_result(res("neutral", 7))
    agg.on_result(res("neutral", None))          # voice-only: counts in the share, not as a visitor
    agg.on_result(EmotionResult.empty())          # nothing seen: not counted
    assert agg.roll() is None                     # window still open
    now[0] += 10.04
    wall[0] += 10.04
    p = agg.roll()
    assert p is not None
    assert p["visitors"] == 3 and p["results"] == 11 and p["suppressed"] is False
    assert p["expressions"] == {"neutral": 1, "happy": 1, "sad": 0, "angry": 1, "fear": 0, "disgust": 0,
                                "surprise": 0}
    assert p["share"]["happy"] == round(5 / 11, 3) and abs(sum(p["share"].values()) - 1) < 0.01
    # to the second, UTC; configured and measured window side by side
    assert p["period_start"] == "2023-11-14T22:15:23Z" and p["period_end"] == "2023-11-14T22:15:33Z"
    assert p["window_s"] == 10 and p["measured_s"] == 10.0 and p["partial"] is False and p["min_visitors"] == 3
    assert not (_keys(p) & FORBIDDEN_KEYS)
    # next window: one visitor only -> suppressed, no expression counts at all
    agg.on_result(res("happy", 9))
    now[0] += 10
    wall[0] += 10
    q = agg.roll()
    assert q is not None and q["suppressed"] is True and q["visitors"] == 1 and q["results"] == 1
    assert "expressions" not in q and "share" not in q
    assert q["period_start"] == p["period_end"] and q["period_end"] == "2023-11-14T22:15:43Z"
    with pytest.raises(ConfigError):
        fleet.FleetAggregator("x", window_s=0)
    with pytest.raises(ConfigError, match="to the second"):
        fleet.FleetAggregator("x", window_s=0.5)
    with pytest.raises(ConfigError):
        fleet.FleetAggregator("x", min_visitors=0)
    for bad in ("", "a/b", "a+b", "#", "x" * 65, "lobby 2"):
        with pytest.raises(ConfigError, match="topic level"):
            fleet.FleetAggregator(bad)


def test_window_rule_sub_minute_windows_chain_and_the_short_final_window_is_partial() -> None:
    """Windows shorter than a minute get distinct timestamps; a window closed early is marked partial and,
    like any window, carries no expression counts from fewer than the minimum visitors."""
    now, wall = [0.0], [1_746_095_000.0]   # 2025-05-01T10:23:20Z
    agg = fleet.FleetAggregator("k", window_s=5, min_visitors=2, clock=lambda: now[0], wall=lambda: wall[0])
    out = []
    for step in range(12):                # 12 x 1.5 s: three full windows (closed at 6, 12, 18 s) ...
        agg.on_result(res("happy", 1))
        agg.on_result(res("sad", 2 + step // 5))
        now[0] += 1.5
        wall[0] += 1.5
        p = agg.roll()
        if p is not None:
            out.append(p)
    assert [p["partial"] for p in out] == [False, False, False]
    assert [p["measured_s"] for p in out] == [6.0, 6.0, 6.0] and {p["window_s"] for p in out} == {5}
    ends = [p["period_end"] for p in out]
    assert len(set(ends)) == 3, ends                         # not floored to the minute any more
    assert ends == ["2025-05-01T10:23:26Z", "2025-05-01T10:23:32Z", "2025-05-01T10:23:38Z"]
    assert out[0]["period_start"] == "2025-05-01T10:23:20Z"
    assert [p["period_start"] for p in out[1:]] == ends[:-1]  # contiguous
    # ... and at shutdown 1.5 s of a window: one visitor -> partial and suppressed
    agg.on_result(res("angry", 9))
    now[0] += 1.5
    wall[0] += 1.5
    last = agg.roll(force=True)
    assert last is not None and last["partial"] is True and last["measured_s"] == 1.5 and last["window_s"] == 5
    assert last["suppressed"] is True and "share" not in last and "expressions" not in last
    assert last["period_start"] == ends[-1]
    # a short final window that does reach the threshold is still partial, with counts
    agg.on_result(res("angry", 10))
    agg.on_result(res("happy", 11))
    now[0] += 0.5
    last2 = agg.roll(force=True)
    assert last2 is not None and last2["partial"] is True and last2["suppressed"] is False
    assert last2["expressions"]["angry"] == 1 and last2["expressions"]["happy"] == 1
    # a forced close after a full window's time is not partial
    now[0] += 7
    assert agg.roll(force=True)["partial"] is False
    # the wall clock stepping back never gives a period that ends before it starts
    wall[0] -= 3600
    now[0] += 5
    back = agg.roll()
    assert back is not None and back["period_end"] == back["period_start"]
    v = _validator()
    for p in [*out, last, last2, back]:
        assert not _errors(v, p), _errors(v, p)


def test_expression_counts_never_come_from_fewer_than_the_minimum_visitors() -> None:
    rng = np.random.default_rng(7)
    now = [0.0]
    for min_visitors in (1, 2, 5):
        agg = fleet.FleetAggregator("k", window_s=1, min_visitors=min_visitors, clock=lambda: now[0])
        for _ in range(60):
            for _ in range(int(rng.integers(0, 12))):
                track = int(rng.integers(0, 8))
                agg.on_result(res(LABELS[int(rng.integers(0, len(LABELS)))], None if track == 0 else track))
            now[0] += float(rng.uniform(0.1, 1.5))
            p = agg.roll(force=bool(rng.random() < 0.2))
            if p is None:
                continue
            assert p["suppressed"] is (p["visitors"] < min_visitors)
            if p["suppressed"]:
                assert "expressions" not in p and "share" not in p
            else:
                assert sum(p["expressions"].values()) == p["visitors"] >= min_visitors


def test_schema_ships_in_the_package_and_rejects_what_must_not_be_sent() -> None:
    path = fleet.schema_path()
    assert path.is_file() and path.name == "fleet-1.schema.json" and path.parent.name == "schemas"
    assert path.parent.parent == Path(affectlite.__file__).parent
    schema = fleet.load_schema()
    assert schema["properties"]["schema"]["const"] == fleet.SCHEMA
    assert tuple(schema["properties"]["expressions"]["required"]) == LABELS
    assert tuple(schema["properties"]["share"]["required"]) == LABELS
    v = _validator()
    now = [0.0]
    agg = fleet.FleetAggregator("lobby-2", window_s=60, min_visitors=1, clock=lambda: now[0])
    agg.on_result(res("happy", 1))
    now[0] += 60
    good = agg.roll()
    assert good is not None and not _errors(v, good)
    bad = [
        {**good, "track_id": 1},                                    # nothing beyond the documented fields
        {**good, "suppressed": True},                               # suppressed but counts present
        {k: val for k, val in good.items() if k != "share"},        # not suppressed but counts missing
        {**good, "period_end": "2025-05-01T10:42Z"},                # the old minute precision
        {**good, "period_end": "2025-05-01T10:42:07+02:00"},        # UTC only
        {**good, "kiosk": "a/b"},                                   # a topic level
        {**good, "expressions": {**good["expressions"], "contempt": 1}},
        {**good, "share": {**good["share"], "happy": 1.5}},
        {**good, "schema": "affectlite.fleet/2"},
        {k: val for k, val in good.items() if k != "partial"},
    ]
    for b in bad:
        assert _errors(v, b), b


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
    def __init__(self, port: int, client_id: str = "fleet-test-sub") -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, bytes, bool]] = []
        self.ready = threading.Event()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
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


def _mosquitto_sub(port: int, *args: str) -> subprocess.Popen[str] | None:
    """A ``mosquitto_sub`` (Debian package mosquitto-clients) on the test broker, or None when not installed."""
    exe = shutil.which("mosquitto_sub")
    if exe is None:
        return None
    return subprocess.Popen([exe, "-h", "127.0.0.1", "-p", str(port), "-q", "1", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_every_published_message_validates_against_the_schema_on_a_real_broker(
        mosquitto: int, capsys: pytest.CaptureFixture[str]) -> None:
    v = _validator()
    sub = Subscriber(mosquitto)
    # a standard MQTT consumer too, when installed: what it prints must validate as well
    cli = _mosquitto_sub(mosquitto, "-t", "affectlite/fleet/+/expressions", "-W", "30")
    try:
        time.sleep(0.3 if cli is not None else 0)  # let mosquitto_sub subscribe
        # five visitors (tracks 1..5) over ~6 s, in 1 s windows: some windows have one visitor only
        cam = scripted_camera([("happy", 24, 1), ("happy", 12, 2), ("angry", 24, 3), ("sad", 12, 4),
                               (None, 12), ("neutral", 40, 5)], fps=20)
        opts = PipelineOptions().replace(**{"audio.enabled": False, "privacy.deployment_context": "kiosk"})
        assert opts.privacy.offline_guard
        rc = fleet.main(["--broker", f"127.0.0.1:{mosquitto}", "--kiosk-id", "test-kiosk", "--window", "1",
                         "--min-visitors", "2", "--duration", "20"], options=opts,
                        pipeline_kwargs=doubles(camera=cam))
        out = capsys.readouterr()
        assert rc == 0, out.err
        sub.wait_for(lambda m: any(t.endswith("/status") and p == b"offline" for t, p, _ in m))
    finally:
        sub.close()
    data_raw = [(p, r) for t, p, r in sub.messages if t == "affectlite/fleet/test-kiosk/expressions"]
    status = [(p.decode(), r) for t, p, r in sub.messages if t == "affectlite/fleet/test-kiosk/status"]
    assert {t for t, _, _ in sub.messages} <= {"affectlite/fleet/test-kiosk/expressions",
                                                 "affectlite/fleet/test-kiosk/status"}
    assert [s for s, _ in status] == ["online", "offline"]
    assert len(data_raw) >= 4, out.out
    data = []
    for raw, retained in data_raw:
        assert retained is False
        p = json.loads(raw)
        assert not _errors(v, p), (_errors(v, p), p)   # every message, against the shipped schema
        assert p["kiosk"] == "test-kiosk" and not (_keys(p) & FORBIDDEN_KEYS), p
        data.append(p)
    # the windows: 1 s configured, contiguous second-resolution periods, only the last one may be partial
    assert {p["window_s"] for p in data} == {1} and all(p["measured_s"] >= 1 for p in data[:-1])
    assert not any(p["partial"] for p in data[:-1])
    assert data[-1]["partial"] is (data[-1]["measured_s"] < 1)
    for prev, nxt in itertools.pairwise(data):
        assert nxt["period_start"] == prev["period_end"]
    assert len({p["period_end"] for p in data}) >= len(data) - 1   # sub-minute windows are told apart
    assert {p["suppressed"] for p in data} == {True, False}
    # everything counted was published, and the visitor counts add up to the 5 tracks (a track spanning
    # two windows is counted in both)
    total = sum(p["results"] for p in data)
    assert total > 0 and f"fleet_mqtt: {total} results aggregated" in out.out
    assert sum(p["visitors"] for p in data) >= 5
    seen = {lab for p in data if not p["suppressed"] for lab, n in p["expressions"].items() if n}
    assert "happy" in seen
    if cli is not None:
        cli.terminate()
        lines = [ln for ln in cli.communicate(timeout=10)[0].splitlines() if ln.strip()]
        assert [json.loads(ln) for ln in lines] == data
    # the status is retained: a consumer that connects later learns the kiosk is offline
    late = _mosquitto_sub(mosquitto, "-v", "-t", "affectlite/fleet/+/status", "-C", "1", "-W", "10")
    if late is not None:
        assert late.communicate(timeout=15)[0].strip() == "affectlite/fleet/test-kiosk/status offline"
    later = Subscriber(mosquitto, "fleet-test-late")
    try:
        later.wait_for(lambda m: bool(m), 5)
    finally:
        later.close()
    assert later.messages == [("affectlite/fleet/test-kiosk/status", b"offline", True)]


def test_last_will_says_offline_when_the_kiosk_drops_off(mosquitto: int) -> None:
    pub = fleet.MqttPublisher("127.0.0.1", mosquitto, "dropping", timeout_s=5)
    pub.connect()
    sub = Subscriber(mosquitto, "fleet-test-will")
    try:
        sub.wait_for(lambda m: bool(m), 5)
        assert sub.messages == [("affectlite/fleet/dropping/status", b"online", True)]  # retained
        # the kiosk vanishes without saying goodbye (power cut, crash): the broker publishes the last will
        pub.client.loop_stop()
        sock = pub.client.socket()
        assert sock is not None
        sock.close()
        sub.wait_for(lambda m: len(m) >= 2, 10)
    finally:
        sub.close()
    assert sub.messages[1:] == [("affectlite/fleet/dropping/status", b"offline", False)]


def test_demo_mode_loops_the_sample_with_short_windows_and_a_threshold_of_one(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "400")  # no line wrapping inside "--min-visitors"
    with pytest.raises(SystemExit):
        fleet.parse_args(["--help"])
    helptext = " ".join(capsys.readouterr().out.split())
    assert "--demo" in helptext and "10 s windows" in helptext and "--min-visitors 1" in helptext
    args = fleet.parse_args(["--demo"])
    assert args.window == 10 and args.min_visitors == 1 and args.loop
    opts = fleet.build_options(args)
    assert Path(str(opts.camera.device)).name == "sample.mp4" and opts.camera.loop and opts.audio.loop
    assert opts.privacy.offline_guard
    plain = fleet.parse_args([])
    assert plain.window == 60 and plain.min_visitors == 5 and not plain.loop
    assert fleet.parse_args(["--demo", "--window", "2", "--min-visitors", "3"]).window == 2
    assert fleet.parse_args(["--demo", "--min-visitors", "3"]).min_visitors == 3
    # a demo run (dry run) shows the data's shape at once: one visitor is enough for expression counts
    cam = scripted_camera([("happy", 30, 1)], fps=20)
    rc = fleet.main(["--demo", "--window", "1", "--duration", "3"],
                    options=PipelineOptions().replace(**{"audio.enabled": False}),
                    pipeline_kwargs=doubles(camera=cam))
    out = capsys.readouterr()
    assert rc == 0 and "demo mode" in out.err
    payloads = [json.loads(ln.split(":", 1)[1]) for ln in out.out.splitlines()
                if ln.startswith("dry run, would publish:")]
    assert payloads and all(p["min_visitors"] == 1 and p["window_s"] == 1 for p in payloads)
    assert any(not p["suppressed"] and p["expressions"]["happy"] == 1 for p in payloads)


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
    assert p["partial"] is True and p["window_s"] == 30 and p["measured_s"] < 30  # the media ended early
    assert fleet.main(["--kiosk-id", "a/b"]) == 2
