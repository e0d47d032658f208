"""The kiosk example: screen policy, the loopback-only SSE dashboard server, the whole app on scripted fakes,
and the page itself in headless Chromium (selenium + chromedriver; Debian packages chromium, chromium-driver)."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from _browser import headless_chromium
from _examples_support import doubles, load_example, peaked, scripted_camera, shipped_models_present
from affectlite import EmotionResult, PipelineOptions
from affectlite.errors import ConfigError
from affectlite.labels import LABELS
from affectlite.results import Box, FaceResult, TextResult

dash = load_example("kiosk/dashboard_server.py", "dashboard_server")
app = load_example("kiosk/app.py", "kiosk_app")


def result(label: str, conf: float = 0.85, t_ns: int | None = None, text: bool = False) -> EmotionResult:
    p = peaked(label, conf)
    t = time.monotonic_ns() if t_ns is None else t_ns
    face = FaceResult(3, Box(100, 80, 120, 120), 0.9, p, t)
    tr = TextResult(peaked("happy", 0.7), 4, t) if text else None
    w = {"face": 0.7, "text": 0.3} if text else {"face": 1.0}
    return EmotionResult(label, p, conf, valence=0.5 if label == "happy" else -0.3, arousal=0.4, faces=(face,),
                         text=tr, modality_weights=w, track_id=3, capture_ns=t, result_ns=t)


# ------------------------------------------------------------------------------------------ policy
def test_screen_policy_needs_dwell_then_returns_to_attract_when_idle() -> None:
    pol = app.ScreenPolicy(dwell_s=0.5, idle_s=2.0, min_confidence=0.4)
    assert pol.screen == "attract"
    assert pol.update(result("happy"), 10.0) is None           # first sighting: not yet
    assert pol.update(result("happy"), 10.3) is None
    assert pol.update(result("happy"), 10.6) == "happy"        # dwelled 0.6 s
    assert pol.update(result("happy"), 10.7) is None           # no repeat
    # a brief flicker to angry does not switch the screen
    assert pol.update(result("angry"), 10.8) is None
    assert pol.update(result("happy"), 10.9) is None
    assert pol.update(result("angry"), 11.0) is None
    assert pol.screen == "happy"
    # a low-confidence label does not count
    assert pol.update(result("sad", conf=0.2), 11.1) is None
    assert pol.update(result("sad", conf=0.2), 12.0) is None
    # neutral maps to the welcome screen
    assert pol.update(result("neutral"), 12.1) is None
    assert pol.update(result("neutral"), 12.7) == "welcome"
    # nobody there: empty results, then idle time passes
    empty = EmotionResult.empty()
    assert pol.update(empty, 13.0) is None
    assert pol.tick(14.0) is None
    assert pol.tick(14.8) == "attract"
    assert pol.tick(20.0) is None


# ------------------------------------------------------------------------------------------ server
@pytest.fixture
def server() -> Iterator[Any]:
    hub = dash.EventHub()
    texts: list[str] = []
    srv = dash.DashboardServer(hub, port=0, on_text=texts.append)
    srv.texts = texts
    with srv:
        yield srv


def _conn(srv: Any) -> http.client.HTTPConnection:
    host, port = srv.url.split("//")[1].strip("/").rsplit(":", 1)
    return http.client.HTTPConnection(host, int(port), timeout=5)


def test_dashboard_refuses_non_loopback_addresses() -> None:
    hub = dash.EventHub()
    for host in ("0.0.0.0", "", "192.168.1.10", "example.org"):
        with pytest.raises(ConfigError, match="loopback only"):
            dash.DashboardServer(hub, host=host, port=0)


def test_page_is_self_contained_and_served_with_a_strict_csp(server: Any) -> None:
    c = _conn(server)
    c.request("GET", "/")
    r = c.getresponse()
    body = r.read().decode()
    assert r.status == 200
    csp = r.getheader("Content-Security-Policy")
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp
    assert "<canvas" in body and "EventSource" in body
    # nothing is loaded from elsewhere: no external URLs in src/href attributes, no imports
    low = body.lower()
    for bad in ('src="http', "src='http", 'href="http', "href='http", "@import", "//cdn", "url(http"):
        assert bad not in low, bad


def test_requests_with_a_foreign_host_header_are_rejected(server: Any) -> None:
    c = _conn(server)
    c.request("GET", "/state", headers={"Host": "attacker.example:80"})
    r = c.getresponse()
    r.read()
    assert r.status == 421
    c.request("GET", "/state", headers={"Host": "localhost"})
    r = c.getresponse()
    assert r.status == 200 and json.loads(r.read())["labels"] == list(LABELS)


def _read_event(resp: http.client.HTTPResponse) -> tuple[str, Any]:
    kind, data = "message", ""
    while True:
        line = resp.fp.readline().decode()
        if line == "":
            raise EOFError("stream closed")
        line = line.rstrip("\n")
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            data += line[6:]
        elif line == "" and data:
            return kind, json.loads(data)


def test_sse_stream_sends_a_snapshot_then_live_events(server: Any) -> None:
    hub = server.hub
    t0 = time.monotonic_ns()
    hub.publish("result", dash.result_event(result("sad"), t0))
    c = _conn(server)
    c.request("GET", "/events")
    resp = c.getresponse()
    assert resp.status == 200 and resp.getheader("Content-Type") == "text/event-stream"
    kind, snap = _read_event(resp)
    assert kind == "hello" and snap["history"][-1]["label"] == "sad"
    deadline = time.monotonic() + 5
    while hub.client_count < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    hub.publish("result", dash.result_event(result("happy", text=True), t0))
    hub.publish("sensing", {"active": True})
    kind, ev = _read_event(resp)
    assert kind == "result" and ev["label"] == "happy" and ev["face"]["label"] == "happy"
    assert ev["text"]["label"] == "happy" and ev["voice"] is None
    assert len(ev["probs"]) == len(LABELS) and abs(sum(ev["probs"]) - 1) < 1e-3
    assert ev["faces"][0]["box"] == [100, 80, 120, 120]
    # media-free: no pixel/sample/text payloads
    assert set(ev) == {"t", "label", "confidence", "valence", "arousal", "probs", "weights", "face", "voice",
                       "text", "faces", "track"}
    assert _read_event(resp) == ("sensing", {"active": True})
    c.close()


def test_text_input_is_passed_on_and_validated(server: Any) -> None:
    c = _conn(server)
    hdr = {"Content-Type": "application/json"}
    c.request("POST", "/text", body=json.dumps({"text": "  this is great  "}), headers=hdr)
    r = c.getresponse()
    r.read()
    assert r.status == 204 and server.texts == ["this is great"]
    c.request("POST", "/text", body=json.dumps({"nope": 1}), headers=hdr)
    r = c.getresponse()
    r.read()
    assert r.status == 400
    c.request("POST", "/text", body=json.dumps({"text": "hi"}), headers={**hdr, "Origin": "http://evil.example"})
    r = c.getresponse()
    r.read()
    assert r.status == 403
    c.request("POST", "/text", body=json.dumps({"text": "x" * 5000}), headers=hdr)
    r = c.getresponse()
    r.read()
    assert r.status == 413
    assert server.texts == ["this is great"]


def test_a_slow_client_loses_old_events_without_blocking_publish() -> None:
    hub = dash.EventHub(client_queue=8)
    client = hub._subscribe()
    t0 = time.perf_counter()
    for i in range(1000):
        hub.publish("stats", {"i": i})
    assert time.perf_counter() - t0 < 2.0
    msgs = client.take(0)
    assert len(msgs) == 8 and client.dropped == 992 and '"i":999' in msgs[-1]


# ------------------------------------------------------------------------------------------ the app
def _collect_sse(url: str, out: list[tuple[str, Any]]) -> None:
    host, port = url.split("//")[1].strip("/").rsplit(":", 1)
    c = http.client.HTTPConnection(host, int(port), timeout=10)
    c.request("GET", "/events")
    resp = c.getresponse()
    try:  # to the end of the stream (the server ends it when it stops), so nothing buffered is left unread
        while True:
            out.append(_read_event(resp))
    except (EOFError, OSError, ValueError):
        pass
    finally:
        c.close()


def test_kiosk_app_adapts_the_screen_to_a_scripted_visitor(no_leaked_threads: None) -> None:
    """Nobody -> a smiling visitor -> an angry one -> nobody; the screen follows with dwell/idle times."""
    cam = scripted_camera([(None, 15), ("happy", 45), ("angry", 45), (None, 10)], fps=30)
    opts = PipelineOptions().replace(**{"audio.enabled": False, "camera.enabled": True,
                                        "privacy.deployment_context": "kiosk"})
    events: list[tuple[str, Any]] = []
    ready: dict[str, Any] = {}
    readers: list[threading.Thread] = []

    def on_ready(url: str, kiosk: Any) -> None:
        ready["url"], ready["kiosk"] = url, kiosk
        kiosk.policy.dwell_s, kiosk.policy.idle_s = 0.3, 0.25
        t = threading.Thread(target=_collect_sse, args=(url, events), daemon=True)
        t.start()
        readers.append(t)
        deadline = time.monotonic() + 5
        while kiosk.hub.client_count < 1 and time.monotonic() < deadline:
            time.sleep(0.01)

    rc = app.main(["--port", "0", "--duration", "15"], options=opts,
                  pipeline_kwargs=doubles(camera=cam), on_ready=on_ready)
    for t in readers:
        t.join(5)
        assert not t.is_alive(), "the event stream did not end when the kiosk stopped"
    assert rc == 0
    kiosk = ready["kiosk"]
    screens = [d["screen"] for k, d in events if k == "screen"]
    labels = [d["label"] for k, d in events if k == "result"]
    assert "happy" in labels and "angry" in labels
    # the screen went happy, then angry (in that order), and the sensing light was on then off
    assert "happy" in screens and "angry" in screens and screens.index("happy") < screens.index("angry")
    sensing = [d["active"] for k, d in events if k == "sensing"]
    assert sensing[-1] is False
    assert any(k == "stats" for k, _ in events)
    assert ("happy", "angry") in kiosk.changes or any(p == "happy" for p, _ in kiosk.changes)
    assert kiosk.results >= 60
    # the source badge's data: the scripted camera is a custom source; it ran ("ok"), then its stream ended
    # (the page connected once the pipeline ran: its first view is the "hello" snapshot)
    sources = [d["sources"] if k == "hello" else d for k, d in events if k in ("hello", "sources")]
    assert events[0][0] == "hello"
    assert sources and all(d["microphone"]["state"] == "off" for d in sources)
    cam_states = [d["camera"]["state"] for d in sources]
    assert sources[0]["camera"]["kind"] == "custom" and sources[0]["camera"]["backend"] == "FakeCamera"
    assert "ok" in cam_states and cam_states[-1] == "ended", cam_states
    assert kiosk.hub.snapshot()["sources"]["camera"]["state"] == "ended"


def test_kiosk_build_options_defaults_to_the_bundled_sample_media() -> None:
    args = app.parse_args([])
    opts = app.build_options(args)
    assert opts.camera.backend == "opencv" and Path(str(opts.camera.device)).name == "sample.mp4"
    assert opts.audio.backend == "file" and Path(str(opts.audio.device)).name == "sample.wav"
    assert opts.camera.loop and opts.privacy.offline_guard and opts.privacy.allow_loopback
    live = app.build_options(app.parse_args(["--live"]))
    assert live.camera.backend == "auto" and live.audio.enabled


def test_describe_sources_names_each_source_kind_without_paths_or_urls(tmp_path: Path) -> None:
    sample = app.describe_sources(app.build_options(app.parse_args([])))
    assert {k: (v["kind"], v["backend"], v["name"], v["state"]) for k, v in sample.items()} == {
        "camera": ("file", "opencv", "sample.mp4", "starting"),
        "microphone": ("file", "file", "sample.wav", "starting")}
    live = app.describe_sources(app.build_options(app.parse_args(["--live"])))
    assert (live["camera"]["kind"], live["camera"]["name"]) == ("device", "0")
    assert (live["microphone"]["kind"], live["microphone"]["name"]) == ("device", "default")
    opts = PipelineOptions().replace(**{"camera.device": "rtsp://user:secret@10.0.0.5/stream",
                                        "audio.enabled": False})
    rtsp = app.describe_sources(opts)
    assert rtsp["camera"]["kind"] == "stream" and "secret" not in json.dumps(rtsp)
    assert rtsp["microphone"] == {"source": "microphone", "kind": "none", "backend": "", "name": "", "state": "off",
                                  "detail": "disabled"}
    folder = app.describe_sources(PipelineOptions().replace(**{"camera.device": str(tmp_path)}))
    assert folder["camera"]["kind"] == "images" and folder["camera"]["name"] == tmp_path.name
    assert app.describe_sources(PipelineOptions().replace(**{"camera.backend": "picamera2"}))["camera"]["kind"] \
        == "csi"
    custom = app.describe_sources(PipelineOptions(), camera=scripted_camera([("happy", 1)]))
    assert custom["camera"]["kind"] == "custom" and custom["camera"]["name"] == "fake-camera"
    assert app.describe_sources(PipelineOptions().replace(**{"face.enabled": False}))["camera"]["state"] == "off"


def _get_state(srv: Any) -> dict[str, Any]:
    c = _conn(srv)
    c.request("GET", "/state")
    r = c.getresponse()
    assert r.status == 200
    out: dict[str, Any] = json.loads(r.read())
    c.close()
    return out


def test_state_has_the_source_status(server: Any) -> None:
    """/state's ``sources``: kind and state of each source, following the pipeline's status changes."""
    opts = app.build_options(app.parse_args([]))
    kiosk = app.Kiosk(server.hub, sources=app.describe_sources(opts))
    st = _get_state(server)["sources"]
    assert set(st) == {"camera", "microphone"} and st["camera"]["kind"] == "file"
    assert st["camera"]["state"] == st["microphone"]["state"] == "starting"
    # the microphone fails to open before the pipeline reports it running: it stays absent
    kiosk.on_status(app.SourceStatus("microphone", "absent", "no such file"))
    kiosk.sources_started()
    st = _get_state(server)["sources"]
    assert (st["camera"]["state"], st["microphone"]["state"]) == ("ok", "absent")
    assert st["microphone"]["detail"] == "no such file"
    kiosk.on_status(app.SourceStatus("camera", "degraded", "read failed; reconnecting"))
    assert _get_state(server)["sources"]["camera"]["state"] == "reconnecting"
    kiosk.on_status(app.SourceStatus("camera", "degraded", "frames too dark"))
    assert _get_state(server)["sources"]["camera"]["state"] == "degraded"
    kiosk.on_status(app.SourceStatus("camera", "ok", "reconnected"))
    assert _get_state(server)["sources"]["camera"] == {"source": "camera", "kind": "file", "backend": "opencv",
                                                        "name": "sample.mp4", "state": "ok", "detail": "reconnected"}
    kiosk.sources_stopped()
    st = _get_state(server)["sources"]
    assert (st["camera"]["state"], st["microphone"]["state"]) == ("stopped", "absent")
    assert _get_state(server)["latest"]["status"] == {"source": "camera", "state": "ok", "detail": "reconnected"}


def test_snapshot_page_embeds_the_state_safely(server: Any) -> None:
    hub = server.hub
    kiosk = app.Kiosk(hub, sources=app.describe_sources(app.build_options(app.parse_args([]))))
    kiosk.on_result(result("happy"))
    hub.publish("stats", {"note": "</script><script>alert(1)</script>"})
    c = _conn(server)
    c.request("GET", "/?snapshot=1")
    r = c.getresponse()
    body = r.read().decode()
    assert r.status == 200 and "default-src 'none'" in r.getheader("Content-Security-Policy")
    start = body.index('<script type="application/json" id="snapshot-data">') + len(
        '<script type="application/json" id="snapshot-data">')
    data = body[start:body.index("</script>", start)]
    snap = json.loads(data)  # the injected text cannot close the data block early
    assert snap["latest"]["stats"]["note"] == "</script><script>alert(1)</script>"
    assert snap["history"][-1]["label"] == "happy" and snap["sources"]["camera"]["kind"] == "file"
    c.request("GET", "/")
    plain = c.getresponse().read().decode()
    assert "snapshot-data" not in plain.replace('getElementById("snapshot-data")', "")


# ------------------------------------------------------------------------------------------ browser
def _browser() -> Any:
    """A headless Chromium driven by selenium, or skip saying what is missing."""
    return headless_chromium("kiosk", "1280,800")


def _wait(cond: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = cond()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout} s (last value {last!r})")


def _screenshot_dir() -> Path:
    d = Path(os.environ.get("AFFECTLITE_SCREENSHOTS", tempfile.gettempdir())) / "affectlite-kiosk"
    d.mkdir(parents=True, exist_ok=True)
    return d


def test_dashboard_page_in_headless_chromium_updates_and_screenshots(server: Any) -> None:
    import cv2

    drv = _browser()
    hub = server.hub
    kiosk = app.Kiosk(hub, app.ScreenPolicy(dwell_s=0.0), max_rate_hz=0,
                      sources=app.describe_sources(app.build_options(app.parse_args([]))))
    try:
        drv.get(server.url)
        body = drv.find_element("tag name", "body")
        _wait(lambda: body.get_attribute("data-connected") == "1")
        assert body.get_attribute("data-results") == "0"
        assert drv.find_element("id", "headline").text == "Hello there!"
        assert drv.find_element("id", "status").text == "camera file: starting \u00b7 microphone file: starting"
        kiosk.sources_started()
        _wait(lambda: body.get_attribute("data-sources") == "ok")
        assert drv.find_element("id", "status").text == "camera file: ok \u00b7 microphone file: ok"
        kiosk.on_sensing(True)
        _wait(lambda: body.get_attribute("data-sensing") == "1")
        assert "on" in drv.find_element("id", "sensing").get_attribute("class")
        # a visitor smiles for a while, then types something
        t0 = time.monotonic_ns()
        for i in range(40):
            conf = 0.6 + 0.3 * np.sin(i / 6)
            kiosk.on_result(result("happy", conf=float(conf), t_ns=t0 + i * 100_000_000, text=i > 20))
        _wait(lambda: body.get_attribute("data-results") == "40")
        assert body.get_attribute("data-label") == "happy"
        assert body.get_attribute("data-screen") == "happy"
        assert drv.find_element("id", "label").text.lower() == "happy"
        assert drv.find_element("id", "headline").text == app.SCREENS["happy"]["headline"]
        w_happy = float(drv.find_element("id", "bar-fused-happy").get_attribute("data-value"))
        w_sad = float(drv.find_element("id", "bar-fused-sad").get_attribute("data-value"))
        assert w_happy > 0.5 > w_sad
        assert "off" not in drv.find_element("id", "group-text").get_attribute("class")
        assert "off" in drv.find_element("id", "group-voice").get_attribute("class")
        # the timeline canvas has been drawn with coloured lines
        _wait(lambda: drv.execute_script("return window.kiosk.drawn") > 0)
        painted = drv.execute_script(
            "const c=document.getElementById('timeline');const d=c.getContext('2d')"
            ".getImageData(0,0,c.width,c.height).data;let n=0;"
            "for(let i=0;i<d.length;i+=4){if(d[i]>150&&d[i+1]>120&&d[i+2]<80)n++;}return n;")
        assert painted > 50, "no happy-coloured timeline pixels drawn"
        # typing on the page reaches the app
        box = drv.find_element("id", "textin")
        box.send_keys("the staff were great")
        drv.find_element("css selector", "#textform button").click()
        _wait(lambda: server.texts == ["the staff were great"])
        # then the visitor looks angry: screen follows
        for i in range(3):
            kiosk.on_result(result("angry", 0.8, t_ns=t0 + (41 + i) * 100_000_000))
        _wait(lambda: body.get_attribute("data-screen") == "angry")
        # the camera drops out and comes back: the badge follows
        kiosk.on_status(app.SourceStatus("camera", "degraded", "read failed; reconnecting"))
        _wait(lambda: body.get_attribute("data-camera") == "reconnecting")
        assert body.get_attribute("data-sources") == "warn"
        assert "warn" in drv.find_element("id", "status-pill").get_attribute("class")
        assert drv.find_element("id", "status").text.startswith("camera file: reconnecting")
        kiosk.on_status(app.SourceStatus("camera", "ok", "reconnected"))
        time.sleep(0.5)  # let the bar transitions finish
        _wait(lambda: "camera file: ok" in drv.find_element("id", "status").text)
        assert body.get_attribute("data-sources") == "ok"
        shot = _screenshot_dir() / "kiosk-dashboard.png"
        assert drv.save_screenshot(str(shot))
        img = cv2.imread(str(shot))
        assert img is not None and img.shape[0] >= 600 and img.shape[1] >= 1000
        assert float(img.std()) > 20, "screenshot looks blank"
        # no console errors (e.g. CSP violations, JS exceptions)
        try:
            logs = drv.get_log("browser")
        except Exception:  # some drivers do not expose logs
            logs = []
        severe = [entry for entry in logs if entry.get("level") == "SEVERE"]
        assert not severe, severe
    finally:
        drv.quit()


HAPPY_RGB, WARN_RGB, OK_RGB = (0xF5, 0xB7, 0x00), (0xFF, 0x9F, 0x0A), (0x34, 0xC7, 0x59)  # index.html colours


def _near(img_bgr: np.ndarray, rect: dict[str, float], rgb: tuple[int, int, int], tol: int = 24) -> int:
    """Pixels within ``tol`` of ``rgb`` (every channel) inside an element's rect (CSS px = image px here)."""
    x0, y0 = int(rect["x"]), int(rect["y"])
    crop = img_bgr[y0:y0 + int(rect["height"]), x0:x0 + int(rect["width"])].astype(int)
    target = np.array(rgb[::-1])
    return int(np.all(np.abs(crop - target) <= tol, axis=-1).sum())


def _cli_screenshot(url: str, out: Path) -> np.ndarray:
    """``chromium --headless --screenshot`` (no selenium, no waiting for anything): the plain way to capture the
    page that the issue's operator tried."""
    import cv2

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("needs the Debian package chromium")
    r = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        "--disable-background-networking", "--disable-component-update", "--no-first-run",
                        "--disable-extensions", "--disable-dev-shm-usage", "--window-size=1280,800",
                        f"--user-data-dir={tempfile.mkdtemp(prefix='kiosk-cli-')}", f"--screenshot={out}", url],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and out.is_file(), r.stderr[-2000:]
    img = cv2.imread(str(out))
    assert img is not None
    return img


def test_snapshot_page_shows_results_and_sources_in_a_plain_chromium_screenshot(server: Any) -> None:
    """``/?snapshot=1`` renders the latest state at load, without the event stream, so a screenshot taken
    the moment the page has loaded shows the label, the bars, the timeline and the source badge."""
    hub = server.hub
    kiosk = app.Kiosk(hub, app.ScreenPolicy(dwell_s=0.0), max_rate_hz=0,
                      sources=app.describe_sources(app.build_options(app.parse_args([]))))
    kiosk.sources_started()
    kiosk.on_sensing(True)
    t0 = time.monotonic_ns()
    for i in range(40):
        kiosk.on_result(result("happy", conf=0.85, t_ns=t0 + i * 100_000_000))
    kiosk.on_status(app.SourceStatus("microphone", "degraded", "input overflow; reconnecting"))
    # an empty dashboard for the control: same page, nothing published
    empty_hub = dash.EventHub()
    empty = dash.DashboardServer(empty_hub, port=0).start()
    drv = _browser()
    try:
        # the same viewport as the command-line screenshot below (1280x800), so element rects match its pixels
        drv.get(empty.url + "?snapshot=1")
        w, h = drv.execute_script("return [window.innerWidth, window.innerHeight]")
        size = drv.get_window_size()
        drv.set_window_size(size["width"] + 1280 - w, size["height"] + 800 - h)
        drv.get(server.url + "?snapshot=1")   # no waiting: the state is there once the page has loaded
        body = drv.find_element("tag name", "body")
        assert body.get_attribute("data-snapshot") == "ready"
        assert body.get_attribute("data-connected") == "0" and hub.client_count == 0  # no event stream
        assert body.get_attribute("data-results") == "40" and body.get_attribute("data-label") == "happy"
        assert drv.find_element("id", "label").text.lower() == "happy"
        assert drv.find_element("id", "headline").text == app.SCREENS["happy"]["headline"]
        assert drv.find_element("id", "status").text == "camera file: ok \u00b7 microphone file: reconnecting"
        assert body.get_attribute("data-sources") == "warn" and body.get_attribute("data-microphone") == "reconnecting"
        assert float(drv.find_element("id", "bar-fused-happy").get_attribute("data-value")) == 0.85
        assert drv.execute_script("return window.kiosk.drawn") >= 1
        assert drv.execute_script("return [window.innerWidth, window.innerHeight]") == [1280, 800]
        rects = {k: drv.find_element(*loc).rect for k, loc in {
            "label": ("id", "label"), "badge": ("id", "status-pill"), "bar": ("id", "bar-fused-happy"),
            "track": ("css selector", "#group-fused .row:nth-of-type(2) .track"),
            "timeline": ("id", "timeline")}.items()}
        assert rects["bar"]["width"] > 0.8 * rects["track"]["width"]   # no transition from 0 still running
        drv.get(empty.url + "?snapshot=1")
        assert drv.find_element("id", "label").text == "-"
        assert drv.find_element("id", "status").text == "sources: none"
    finally:
        drv.quit()
    # the plain command-line screenshot an operator would take
    shots = _screenshot_dir()
    img = _cli_screenshot(server.url + "?snapshot=1", shots / "kiosk-snapshot.png")
    assert img.shape[:2] == (800, 1280) and float(img.std()) > 20
    assert _near(img, rects["label"], HAPPY_RGB) > 200, "the fused label is not drawn in the screenshot"
    assert _near(img, rects["track"], HAPPY_RGB) > 0.7 * rects["track"]["width"] * rects["track"]["height"] * 0.8
    assert _near(img, rects["timeline"], HAPPY_RGB) > 50, "no happy-coloured timeline pixels"
    assert _near(img, rects["badge"], WARN_RGB, tol=16) >= 20, "the source badge's warning dot is missing"
    assert _near(img, rects["badge"], OK_RGB, tol=16) == 0
    # the control: the same checks fail on an empty dashboard
    blank = _cli_screenshot(empty.url + "?snapshot=1", shots / "kiosk-snapshot-empty.png")
    empty.close()
    assert _near(blank, rects["label"], HAPPY_RGB) == 0 and _near(blank, rects["track"], HAPPY_RGB) == 0
    assert _near(blank, rects["badge"], WARN_RGB, tol=16) == 0


@pytest.mark.skipif(not shipped_models_present("face", "voice"), reason="shipped face/voice models not present yet")
def test_kiosk_on_the_sample_media_with_the_real_models_in_chromium() -> None:
    drv = _browser()
    ready: dict[str, Any] = {}
    done = threading.Event()

    def on_ready(url: str, kiosk: Any) -> None:
        ready["url"], ready["kiosk"] = url, kiosk
        done.set()

    rc_box: list[int] = []
    opts = app.build_options(app.parse_args([])).replace(**{"text.enabled": shipped_models_present("text")})
    stop = threading.Event()
    th = threading.Thread(target=lambda: rc_box.append(app.main(["--port", "0", "--duration", "60"], options=opts,
                                                                on_ready=on_ready, stop=stop)), daemon=True)
    th.start()
    try:
        assert done.wait(60), "kiosk did not start"
        drv.get(ready["url"])
        body = drv.find_element("tag name", "body")
        _wait(lambda: body.get_attribute("data-sensing") == "1", 10)
        start = int(body.get_attribute("data-results") or 0)
        _wait(lambda: int(body.get_attribute("data-results") or 0) > start + 3, 40)  # live updates arrive
        assert body.get_attribute("data-label") in (*LABELS, "unknown")
        # the badge: both sample files are running
        assert drv.find_element("id", "status").text == "camera file: ok \u00b7 microphone file: ok"
        drv.save_screenshot(str(_screenshot_dir() / "kiosk-sample-media.png"))
        drv.get(ready["url"] + "?snapshot=1")
        body = drv.find_element("tag name", "body")
        assert body.get_attribute("data-snapshot") == "ready" and int(body.get_attribute("data-results")) > 0
        assert drv.find_element("id", "label").text.lower() in (*LABELS, "unknown")
        assert "camera file: ok" in drv.find_element("id", "status").text
    finally:
        drv.quit()
        stop.set()
        th.join(30)
    assert rc_box == [0]


def test_kiosk_timeline_starts_near_zero_on_the_live_clock_and_on_media_time() -> None:
    for first_ns in (time.monotonic_ns(), 0):  # a camera's clock, or a recording's media time from 0
        hub = dash.EventHub()
        kiosk = app.Kiosk(hub, app.ScreenPolicy(dwell_s=0.0), max_rate_hz=0)
        for i in range(3):
            kiosk.on_result(result("happy", t_ns=first_ns + i * 500_000_000))
        ts = [e["t"] for e in hub.snapshot()["history"]]
        assert len(ts) == 3 and 0 <= ts[0] < 5  # seconds since the kiosk started, not -22,000 s
        assert ts[1] - ts[0] == pytest.approx(0.5) and ts[2] - ts[1] == pytest.approx(0.5)


def test_port_in_use_is_reported() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    try:
        with pytest.raises(OSError):
            dash.DashboardServer(dash.EventHub(), port=s.getsockname()[1])
    finally:
        s.close()
