"""A kiosk that adapts its screen to the visitor's expression, with a live local dashboard.

Run it (no camera? it plays the bundled sample video and speech, looped)::

    python examples/kiosk/app.py                       # sample media, http://127.0.0.1:8765/
    python examples/kiosk/app.py --live                # camera 0 + default microphone
    python examples/kiosk/app.py --video clip.mp4 --audio clip.wav --port 9000

Then open the printed URL in a browser on the kiosk itself (the server listens on loopback only). The page
shows the visitor screen (its theme and message follow the fused expression, with a dwell time so it does
not flicker), the fused label, per-modality bars (fused, face, voice, text), a 60 s timeline and the
sensing indicator (lit while the camera and microphone are analysed). Visitors can also type a sentence;
it goes to ``pipeline.push_text`` and is never stored.

The "sources" badge shows each source's kind (camera: file, device, stream, csi...; microphone: file,
device...) and state (starting, ok, reconnecting, degraded, lost, absent, ended, stopped), also in ``GET /state``
under ``sources``. ``/?snapshot=1`` renders the latest state straight into the page, without waiting for the
event stream, for screenshots: ``chromium --headless --screenshot --window-size=1280,800 \
http://127.0.0.1:8765/?snapshot=1``.

Privacy: results only (labels, scores, ephemeral track ids, boxes) go to the page; nothing leaves the
device, and the pipeline's offline guard stays on (loopback is allowed for the dashboard).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # dashboard_server.py next to this file

from dashboard_server import DashboardServer, EventHub, result_event, result_time_ns

import affectlite
from affectlite import EmotionPipeline, EmotionResult, PipelineOptions, SourceStatus

log = logging.getLogger("kiosk")

# What the visitor screen shows for each expression. "attract" is the idle screen (nobody there).
SCREENS: dict[str, dict[str, str]] = {
    "attract": {"headline": "Hello there!", "message": "Step closer to get started."},
    "welcome": {"headline": "Welcome!", "message": "How can we help you today? Touch the screen to explore."},
    "happy": {"headline": "Great to see you smiling!",
              "message": "Enjoy 10% off in the cafe today - just show this screen."},
    "surprise": {"headline": "Surprised? There is more!",
                 "message": "Check out what is new this week at the information desk."},
    "sad": {"headline": "We are here to help",
            "message": "Take your time. A member of staff is happy to assist you at the desk."},
    "fear": {"headline": "Need a hand?", "message": "Help points are marked in green. Staff are close by."},
    "angry": {"headline": "Sorry for the trouble",
              "message": "We have let a colleague know - someone will be with you shortly."},
    "disgust": {"headline": "Something not right?", "message": "Tell us below and we will sort it out."},
}
LABEL_TO_SCREEN = {"neutral": "welcome", "happy": "happy", "surprise": "surprise", "sad": "sad", "fear": "fear",
                   "angry": "angry", "disgust": "disgust"}

#: Source states the dashboard shows. ``starting``: configured, pipeline not running yet; ``off``: not used.
SOURCE_STATES = ("starting", "ok", "reconnecting", "degraded", "lost", "absent", "ended", "stopped", "off")
SOURCES = ("camera", "microphone")


def _camera_kind(backend: str, device: object) -> tuple[str, str]:
    dev = str(device)
    if backend == "picamera2":
        return "csi", dev
    if backend == "images" or (backend == "auto" and os.path.isdir(dev)):
        return "images", os.path.basename(dev.rstrip("/")) or dev
    if backend == "synthetic":
        return "synthetic", ""
    if isinstance(device, int) or dev.isdigit() or dev.startswith("/dev/video"):
        return "device", dev
    if "://" in dev:
        return "stream", dev.split("://", 1)[0]  # the scheme only: URLs may carry credentials
    if "!" in dev:
        return "gstreamer", ""
    return "file", os.path.basename(dev)


def _microphone_kind(backend: str, device: object) -> tuple[str, str]:
    dev = "" if device is None else str(device)
    if backend == "file" or (backend == "auto" and dev.lower().endswith((".wav", ".flac"))):
        return "file", os.path.basename(dev)
    if backend == "synthetic":
        return "synthetic", ""
    return "device", dev or "default"


def describe_sources(opts: PipelineOptions, camera: object = None, microphone: object = None
                     ) -> dict[str, dict[str, Any]]:
    """What the pipeline will sense with, for the dashboard's source badge (before anything is opened).

    Args:
        opts: The pipeline options.
        camera: The camera source passed to the pipeline instead of ``opts.camera``'s, if any.
        microphone: The microphone source passed instead of ``opts.audio``'s, if any.

    Returns:
        ``{"camera": {...}, "microphone": {...}}``, each with ``source``, ``kind`` (``file``, ``device``,
        ``stream``, ``csi``, ``gstreamer``, ``images``, ``synthetic``, ``custom``; ``none`` when off),
        ``backend``, ``name`` (a file's base name, a device index; never a full path or URL), ``state``
        (``starting``, or ``off`` when the source is not used) and ``detail``.
    """
    out: dict[str, dict[str, Any]] = {}
    specs = (("camera", opts.camera.enabled and opts.face.enabled, camera, opts.camera.backend, opts.camera.device,
              _camera_kind),
             ("microphone", opts.audio.enabled and opts.voice.enabled, microphone, opts.audio.backend,
              opts.audio.device, _microphone_kind))
    for source, used, override, backend, device, kind_of in specs:
        if not used:
            out[source] = {"source": source, "kind": "none", "backend": "", "name": "", "state": "off",
                           "detail": "disabled"}
        elif override is not None:
            out[source] = {"source": source, "kind": "custom", "backend": type(override).__name__,
                           "name": str(getattr(override, "name", "")), "state": "starting", "detail": ""}
        else:
            kind, name = kind_of(backend, device)
            out[source] = {"source": source, "kind": kind, "backend": backend, "name": name, "state": "starting",
                           "detail": ""}
    return out


def source_state(s: SourceStatus) -> str:
    """The dashboard state for a pipeline :class:`SourceStatus` (``degraded`` while reconnecting reads
    ``reconnecting``).

    Args:
        s: The status change from ``on_status``.

    Returns:
        One of :data:`SOURCE_STATES`.
    """
    if s.state == "degraded" and "reconnecting" in s.detail:
        return "reconnecting"
    return s.state if s.state in SOURCE_STATES else "degraded"


@dataclass
class ScreenPolicy:
    """Chooses the visitor screen from fused results, with hysteresis so the screen does not flicker.

    A new screen is shown only after its label has been the fused label, at confidence
    ``>= min_confidence``, for ``dwell_s`` seconds in a row. With no evidence (empty or ``unknown`` results)
    for ``idle_s`` seconds, the idle ``attract`` screen comes back. Times are passed in (monotonic seconds),
    so the policy is deterministic and testable.

    Attributes:
        dwell_s: How long a label must persist before the screen follows it.
        idle_s: How long without a visitor before the attract screen returns.
        min_confidence: Fused confidence a label needs to count.
    """

    dwell_s: float = 0.8
    idle_s: float = 3.0
    min_confidence: float = 0.4
    screen: str = "attract"
    _candidate: str | None = None
    _since: float = 0.0
    _last_seen: float | None = None

    def update(self, r: EmotionResult, now_s: float) -> str | None:
        """Feed one fused result; returns the new screen name when the screen changes, else ``None``."""
        present = not r.is_empty and r.label in LABEL_TO_SCREEN and r.confidence >= self.min_confidence
        if not present:
            return self.tick(now_s)
        self._last_seen = now_s
        target = LABEL_TO_SCREEN[r.label]
        if target == self.screen:
            self._candidate = None
            return None
        if target != self._candidate:
            self._candidate, self._since = target, now_s
        if now_s - self._since >= self.dwell_s:
            self.screen, self._candidate = target, None
            return target
        return None

    def tick(self, now_s: float) -> str | None:
        """Advance time without evidence; returns ``"attract"`` when the visitor has left."""
        if self._last_seen is not None and now_s - self._last_seen < self.idle_s:
            return None  # still (recently) there
        self._candidate = None
        if self.screen != "attract":
            self.screen = "attract"
            return "attract"
        return None


class Kiosk:
    """Glue between the pipeline callbacks, the screen policy and the dashboard's event hub.

    All ``on_*`` methods run on the pipeline's dispatch thread (``on_sensing`` on the starting thread).

    Args:
        hub: Where dashboard events go.
        policy: The screen policy.
        max_rate_hz: Most result events per second sent to the page (label changes always go out).
        clock: Monotonic clock in seconds (tests may pass a fake one).
        sources: The sources (:func:`describe_sources`); default: none known (the badge says so).
    """

    def __init__(self, hub: EventHub, policy: ScreenPolicy | None = None, max_rate_hz: float = 15.0,
                 clock: Callable[[], float] = time.monotonic,
                 sources: dict[str, dict[str, Any]] | None = None) -> None:
        self.hub = hub
        self.policy = policy or ScreenPolicy()
        self.min_interval = 1.0 / max_rate_hz if max_rate_hz > 0 else 0.0
        self.clock = clock
        self.t0_ns = time.monotonic_ns()
        self._ref0_ns: int | None = None  # the timeline's zero on the results' clock (see on_result)
        self._last_sent = -1e9
        self._last_label: str | None = None
        self.results = 0
        self.changes: list[tuple[str, str]] = []
        self._lock = threading.Lock()  # the policy is fed from the dispatch thread and ticked from main
        self._sources_lock = threading.Lock()
        self.sources: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (sources or {}).items()}
        hub.publish("screen", {"screen": self.policy.screen, **SCREENS[self.policy.screen]})
        self._publish_sources()

    def _publish_sources(self) -> None:
        with self._sources_lock:
            snap = {k: dict(v) for k, v in self.sources.items()}
        self.hub.publish("sources", snap)

    def _set_sources(self, from_states: tuple[str, ...], to_state: str, detail: str) -> None:
        with self._sources_lock:
            for rec in self.sources.values():
                if rec["state"] in from_states:
                    rec["state"], rec["detail"] = to_state, detail
        self._publish_sources()

    def sources_started(self) -> None:
        """Call once the pipeline runs: configured sources still ``starting`` are ``ok`` (one that failed to
        open has said ``absent`` through ``on_status`` and stays so)."""
        self._set_sources(("starting",), "ok", "")

    def sources_stopped(self) -> None:
        """Call once the pipeline has stopped: sources still running read ``stopped``."""
        self._set_sources(("starting", "ok", "reconnecting", "degraded"), "stopped", "pipeline stopped")

    def on_result(self, r: EmotionResult) -> None:
        self.results += 1
        now = self.clock()
        with self._lock:
            new_screen = self.policy.update(r, now)
        if new_screen is not None:
            self.hub.publish("screen", {"screen": new_screen, **SCREENS[new_screen]})
        if self._ref0_ns is None:
            # results carry the live clock (camera, microphone) or media time from 0 (files, which the pipeline
            # analyses as recordings): put the first result at its arrival time since the start on either clock
            self._ref0_ns = result_time_ns(r) - max(0, time.monotonic_ns() - self.t0_ns)
        if r.label != self._last_label or now - self._last_sent >= self.min_interval:
            self._last_sent, self._last_label = now, r.label
            self.hub.publish("result", result_event(r, self._ref0_ns))

    def on_change(self, r: EmotionResult, previous: str) -> None:
        self.changes.append((previous, r.label))
        log.info("expression changed: %s -> %s", previous, r.label)

    def on_status(self, s: SourceStatus) -> None:
        """Record a source's state change for the badge (``sources`` event) and pass it on (``status``)."""
        with self._sources_lock:
            rec = self.sources.setdefault(s.source, {"source": s.source, "kind": "unknown", "backend": "",
                                                     "name": "", "state": "starting", "detail": ""})
            rec["state"], rec["detail"] = source_state(s), s.detail
        self.hub.publish("status", {"source": s.source, "state": s.state, "detail": s.detail})
        self._publish_sources()

    def on_sensing(self, active: bool) -> None:
        self.hub.publish("sensing", {"active": bool(active)})

    def on_error(self, e: BaseException) -> None:
        log.warning("pipeline: %s", e)

    def idle_tick(self) -> None:
        """Call now and then from the main thread: returns the screen to 'attract' when nobody is there."""
        with self._lock:
            new_screen = self.policy.tick(self.clock())
        if new_screen is not None:
            self.hub.publish("screen", {"screen": new_screen, **SCREENS[new_screen]})

    def publish_stats(self, st: affectlite.PipelineStats) -> None:
        self.hub.publish("stats", {
            "state": st.state, "uptime_s": round(st.uptime_s, 1),
            "fps_face": round(st.fps.get("face", 0.0), 2), "fps_results": round(st.fps.get("results", 0.0), 2),
            "latency_ms_p50": round(st.latency_ms_p50, 1), "latency_ms_p95": round(st.latency_ms_p95, 1),
            "dropped_frames": st.drops.get("frames", 0)})


def build_options(args: argparse.Namespace) -> PipelineOptions:
    """Pipeline options for the chosen sources (sample media by default, ``--live`` for camera + mic)."""
    opts = PipelineOptions().replace(**{"privacy.deployment_context": "kiosk"})
    if args.live:
        return opts
    video, audio = args.video, args.audio
    if video is None and audio is None:
        from affectlite.samples import sample_paths

        v, a = sample_paths()
        video, audio = str(v), str(a)
        print("kiosk: no --live/--video/--audio given: playing the bundled sample media (looped)", file=sys.stderr)
    ov: dict[str, Any] = {"camera.enabled": video is not None, "audio.enabled": audio is not None,
                          "camera.loop": not args.once, "audio.loop": not args.once}
    if video is not None:
        ov.update({"camera.backend": "opencv", "camera.device": video})
    if audio is not None:
        ov.update({"audio.backend": "file", "audio.device": audio})
    return opts.replace(**ov)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--live", action="store_true", help="use the camera and microphone")
    p.add_argument("--video", help="video file instead of the camera")
    p.add_argument("--audio", help="WAV/FLAC file instead of the microphone")
    p.add_argument("--once", action="store_true", help="play files once instead of looping")
    p.add_argument("--host", default="127.0.0.1", help="loopback address to serve on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="dashboard port (0: any free port)")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None, *, pipeline_kwargs: dict[str, Any] | None = None,
         options: PipelineOptions | None = None, on_ready: Callable[[str, Kiosk], None] | None = None,
         stop: threading.Event | None = None) -> int:
    """Run the kiosk until Ctrl-C, ``--duration`` or the end of the (non-looped) media.

    Args:
        argv: Command-line arguments.
        pipeline_kwargs: Extra :class:`EmotionPipeline` arguments (tests pass fake sources here).
        options: Pipeline options to use instead of the ones the arguments describe.
        on_ready: Called with the dashboard URL and the kiosk once the server and the pipeline run.
        stop: Set it to stop the kiosk from another thread (when embedding it).
    """
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    opts = options or build_options(args)
    hub = EventHub()
    kw = pipeline_kwargs or {}
    kiosk = Kiosk(hub, sources=describe_sources(opts, kw.get("camera"), kw.get("microphone")))
    stop = stop or threading.Event()
    pipe = EmotionPipeline(opts, on_result=kiosk.on_result, on_change=kiosk.on_change, on_error=kiosk.on_error,
                           on_status=kiosk.on_status, on_sensing=kiosk.on_sensing, **(pipeline_kwargs or {}))
    server = DashboardServer(hub, host=args.host, port=args.port, on_text=pipe.push_text)
    with server:
        print(f"kiosk dashboard: {server.url}", flush=True)
        deadline = None if args.duration is None else time.monotonic() + args.duration
        try:
            with pipe:
                kiosk.sources_started()
                if on_ready is not None:
                    on_ready(server.url, kiosk)
                while not stop.is_set():
                    timeout = 1.0 if deadline is None else min(1.0, max(0.0, deadline - time.monotonic()))
                    finished = pipe.wait(timeout=timeout)
                    kiosk.publish_stats(pipe.stats())
                    kiosk.idle_tick()
                    if finished or (deadline is not None and time.monotonic() >= deadline):
                        break
            kiosk.sources_stopped()
            kiosk.publish_stats(pipe.stats())
        except KeyboardInterrupt:
            print("kiosk: stopped", file=sys.stderr)
            return 130
    print(f"kiosk: {kiosk.results} results, screen {kiosk.policy.screen!r}, changes {len(kiosk.changes)}",
          flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
