"""Opt-in fleet telemetry for kiosks: aggregate, anonymous expression counts published to MQTT.

    python examples/fleet_mqtt.py --demo                            # try it: sample looped, 10 s windows, min 1
    python examples/fleet_mqtt.py                                   # dry run: prints what WOULD be sent
    python examples/fleet_mqtt.py --broker 127.0.0.1 --kiosk-id lobby-2 --window 60
    python examples/fleet_mqtt.py --live --broker 127.0.0.1         # camera + microphone

What is sent, once per window (default 60 s), on ``affectlite/fleet/<kiosk-id>/expressions`` (QoS 1)::

    {"schema": "affectlite.fleet/1", "kiosk": "lobby-2",
     "period_start": "2025-05-01T10:41:07Z", "period_end": "2025-05-01T10:42:07Z",
     "window_s": 60, "measured_s": 60.1, "partial": false, "min_visitors": 5,
     "visitors": 7, "results": 1534, "suppressed": false,
     "expressions": {"happy": 3, "neutral": 4, ...},     # visitors per most frequent expression
     "share": {"happy": 0.41, "neutral": 0.52, ...}}     # share of results per expression

The payload's JSON Schema ships in the package (``affectlite/schemas/fleet-1.schema.json``, see
:func:`schema_path`); ``docs/fleet.md`` describes topics, QoS, the retained ``online``/``offline`` status on
``affectlite/fleet/<kiosk-id>/status`` (the last will says ``offline``) and how to consume it.

Windows: ``period_start``/``period_end`` are UTC to the second, and each window starts where the previous one
ended. ``window_s`` is the configured length, ``measured_s`` the measured one. The window still open at
shutdown is published with ``partial: true`` (it is shorter than ``window_s``), under the same suppression
rule as any other window.

Never sent: images, audio, text, boxes, per-frame or per-person results, track ids. Windows with fewer than
``--min-visitors`` visitors (default 5) are *suppressed*: only ``visitors``/``results`` counts go out, so a
single person's expressions cannot be singled out; no expression count or share is ever published from fewer
visitors. ``visitors`` counts face tracks (a person who leaves and comes back counts twice).

Network and the offline guard: the pipeline's offline guard blocks every non-loopback connection while it
runs. The recommended set-up keeps it on: publish to a Mosquitto on the kiosk itself (``127.0.0.1``) and let
that broker bridge the ``affectlite/fleet/#`` topic to the fleet server. Publishing straight to a remote
broker needs ``--allow-network``, which turns the guard off for this process (an explicit opt-out).
Broker credentials come from ``MQTT_USERNAME``/``MQTT_PASSWORD``; ``--tls-ca`` enables TLS.

Requires ``pip install paho-mqtt`` (2.x).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import affectlite
from affectlite import EmotionPipeline, EmotionResult, PipelineOptions
from affectlite.errors import AffectliteError, ConfigError
from affectlite.labels import LABELS
from affectlite.privacy import is_loopback_host

SCHEMA = "affectlite.fleet/1"
#: Kiosk ids: they are a topic level, so no ``/``, ``+`` or ``#`` (and nothing that needs escaping).
KIOSK_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
#: Shortest window: the period timestamps have a resolution of one second.
MIN_WINDOW_S = 1.0
#: ``--demo`` settings: the bundled sample looped, short windows, no suppression threshold to speak of.
DEMO_WINDOW_S = 10.0
DEMO_MIN_VISITORS = 1


def schema_path() -> Path:
    """The path of the payload's JSON Schema (``affectlite/schemas/fleet-1.schema.json``, shipped in the package).

    Returns:
        The schema file's path inside the installed ``affectlite`` package.
    """
    return Path(str(resources.files("affectlite") / "schemas" / "fleet-1.schema.json"))


def load_schema() -> dict[str, Any]:
    """The payload's JSON Schema (draft 2020-12) as a dict, e.g. for ``jsonschema.validate``.

    Returns:
        The parsed schema.
    """
    schema: dict[str, Any] = json.loads(schema_path().read_text(encoding="utf-8"))
    return schema


def iso_utc(epoch_s: float) -> str:
    """Epoch seconds as ISO 8601 UTC, truncated to the second (``2025-05-01T10:42:07Z``).

    Args:
        epoch_s: Seconds since the Unix epoch.

    Returns:
        The timestamp string.
    """
    return dt.datetime.fromtimestamp(int(epoch_s), dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_kiosk_id(kiosk_id: str) -> str:
    """Validate a kiosk id (it becomes a topic level).

    Args:
        kiosk_id: The operator-chosen name.

    Returns:
        ``kiosk_id`` unchanged.

    Raises:
        ConfigError: it is empty, too long or has characters other than letters, digits, ``.``, ``_``, ``-``.
    """
    if not KIOSK_ID.fullmatch(kiosk_id):
        raise ConfigError(f"kiosk id {kiosk_id!r}: use 1-64 letters, digits, '.', '_' or '-' (it is a topic level)")
    return kiosk_id


class FleetAggregator:
    """Aggregates fused results into anonymous per-window counts.

    ``on_result`` runs on the pipeline's dispatch thread; :meth:`roll` on the main thread (thread-safe).
    Per-track tallies live only in memory until the window closes, then only counts leave.

    Window rule: a window closes once ``window_s`` seconds (monotonic clock) have passed; the next one starts
    at that instant, so ``period_end`` of one window is ``period_start`` of the next. A window closed early
    (``roll(force=True)``, at shutdown) is marked ``partial: true``. Every window, partial or not, carries
    expression counts and shares only when it saw at least ``min_visitors`` visitors.

    Args:
        kiosk_id: The operator-chosen name of this kiosk.
        window_s: Reporting window in seconds (at least 1: timestamps are to the second).
        min_visitors: Windows with fewer visitors carry no expression counts (k-anonymity threshold).
        clock: Monotonic clock in seconds (measures windows).
        wall: Wall clock (epoch seconds), for the period timestamps.

    Raises:
        ConfigError: a bad kiosk id, a window under 1 s or a threshold under 1.
    """

    def __init__(self, kiosk_id: str, window_s: float = 60.0, min_visitors: int = 5,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> None:
        if not window_s >= MIN_WINDOW_S:
            raise ConfigError(f"window must be >= {MIN_WINDOW_S:g} s (timestamps are to the second), got {window_s}")
        if min_visitors < 1:
            raise ConfigError(f"min_visitors must be >= 1, got {min_visitors}")
        self.kiosk_id = check_kiosk_id(kiosk_id)
        self.window_s = float(window_s)
        self.min_visitors = int(min_visitors)
        self.clock, self.wall = clock, wall
        self._lock = threading.Lock()
        self._start = clock()
        self._wall_start = int(wall())
        self._per_track: dict[int, Counter[str]] = {}
        self._share: Counter[str] = Counter()
        self._results = 0
        self.total_results = 0

    def on_result(self, r: EmotionResult) -> None:
        """Count one fused result (empty and ``unknown`` results are not expressions and are skipped).

        Args:
            r: A fused result from the pipeline.
        """
        if r.is_empty or r.label not in LABELS:
            return
        with self._lock:
            self._results += 1
            self.total_results += 1
            self._share[r.label] += 1
            if r.track_id is not None:
                self._per_track.setdefault(r.track_id, Counter())[r.label] += 1

    def roll(self, force: bool = False) -> dict[str, Any] | None:
        """The payload of the window that just closed (and start a new one), or ``None`` while it is open.

        Args:
            force: Close the window now (e.g. at shutdown); if it is shorter than ``window_s`` it is
                marked ``partial``.

        Returns:
            The payload (valid against :func:`load_schema`), or ``None``.
        """
        now = self.clock()
        wall_now = int(self.wall())
        with self._lock:
            elapsed = now - self._start
            if not force and elapsed < self.window_s:
                return None
            per_track, share, n = self._per_track, self._share, self._results
            self._per_track, self._share, self._results = {}, Counter(), 0
            start_wall = self._wall_start
            end_wall = max(wall_now, start_wall)  # a wall clock stepped back must not give a negative period
            self._start, self._wall_start = now, end_wall
        visitors = len(per_track)
        payload: dict[str, Any] = {
            "schema": SCHEMA, "kiosk": self.kiosk_id,
            "period_start": iso_utc(start_wall), "period_end": iso_utc(end_wall),
            "window_s": int(self.window_s) if self.window_s.is_integer() else self.window_s,
            "measured_s": round(elapsed, 1), "partial": elapsed < self.window_s,
            "min_visitors": self.min_visitors, "visitors": visitors, "results": n,
            "suppressed": visitors < self.min_visitors,
        }
        if not payload["suppressed"]:
            dominant = Counter(c.most_common(1)[0][0] for c in per_track.values() if c)
            payload["expressions"] = {lab: dominant.get(lab, 0) for lab in LABELS}
            payload["share"] = {lab: round(share.get(lab, 0) / n, 3) if n else 0.0 for lab in LABELS}
        return payload


class MqttPublisher:
    """A small paho-mqtt 2.x wrapper: connect, publish JSON with QoS 1, online/offline status (last will).

    Topics: ``affectlite/fleet/<kiosk_id>/expressions`` (the payloads, QoS 1, not retained) and
    ``affectlite/fleet/<kiosk_id>/status`` (``online`` on connect, ``offline`` on close or, as the broker's
    last will, when the connection drops; QoS 1, retained).

    Args:
        host: Broker host.
        port: Broker port.
        kiosk_id: Used in the topics and the client id.
        tls_ca: CA bundle path to enable TLS (``None``: plain TCP, fine for a loopback broker).
        timeout_s: How long to wait for the connection and for each publish to be acknowledged.
    """

    def __init__(self, host: str, port: int, kiosk_id: str, *, tls_ca: str | None = None,
                 timeout_s: float = 10.0) -> None:
        try:
            import paho.mqtt.client as mqtt
            from paho.mqtt.enums import CallbackAPIVersion
        except ImportError as e:
            raise AffectliteError("publishing needs paho-mqtt: pip install paho-mqtt") from e
        check_kiosk_id(kiosk_id)
        self.topic = f"affectlite/fleet/{kiosk_id}/expressions"
        self.status_topic = f"affectlite/fleet/{kiosk_id}/status"
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self._connected = threading.Event()
        self._rc: Any = None
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"affectlite-{kiosk_id}",
                                  clean_session=True)
        user = os.environ.get("MQTT_USERNAME")
        if user:
            self.client.username_pw_set(user, os.environ.get("MQTT_PASSWORD"))
        if tls_ca:
            self.client.tls_set(ca_certs=tls_ca)
        self.client.will_set(self.status_topic, "offline", qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.sent = 0

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        self._rc = reason_code
        if not getattr(reason_code, "is_failure", False):
            client.publish(self.status_topic, "online", qos=1, retain=True)
            self._connected.set()

    def connect(self) -> None:
        """Connect (blocking up to ``timeout_s``) and start the network thread.

        Raises:
            AffectliteError: the broker cannot be reached or refuses the connection.
        """
        try:
            self.client.connect(self.host, self.port, keepalive=30)
        except OSError as e:
            raise AffectliteError(f"cannot reach MQTT broker {self.host}:{self.port}: {e}") from e
        self.client.loop_start()
        if not self._connected.wait(self.timeout_s):
            self.client.loop_stop()
            raise AffectliteError(f"MQTT broker {self.host}:{self.port} did not accept the connection within "
                                  f"{self.timeout_s:g} s (reason: {self._rc})")

    def publish(self, payload: dict[str, Any]) -> bool:
        """Publish one payload as JSON (QoS 1) and wait for the broker's acknowledgement.

        Args:
            payload: A payload from :meth:`FleetAggregator.roll`.

        Returns:
            True when the broker acknowledged it; False when the connection was down or the acknowledgement
            did not come within ``timeout_s`` (paho keeps reconnecting in the background).
        """
        info = self.client.publish(self.topic, json.dumps(payload, separators=(",", ":")), qos=1)
        try:
            info.wait_for_publish(self.timeout_s)
        except (RuntimeError, ValueError):  # not connected (queue full or connection lost)
            return False
        if not info.is_published():
            return False
        self.sent += 1
        return True

    def close(self) -> None:
        """Say offline, disconnect and stop the network thread."""
        try:
            self.client.publish(self.status_topic, "offline", qos=1, retain=True).wait_for_publish(self.timeout_s)
        except (RuntimeError, ValueError):  # not connected any more
            pass
        self.client.disconnect()
        self.client.loop_stop()


def _broker(spec: str) -> tuple[str, int]:
    if spec.startswith("["):  # [::1]:1883
        host, _, rest = spec[1:].partition("]")
        return host, int(rest.lstrip(":") or 1883)
    if spec.count(":") == 1:
        host, port = spec.split(":")
        return host, int(port)
    return spec, 1883


def build_options(args: argparse.Namespace) -> PipelineOptions:
    """Pipeline options from the arguments; the offline guard stays on unless ``--allow-network``.

    Args:
        args: Parsed arguments (:func:`parse_args`).

    Returns:
        The options: camera + microphone with ``--live``, else the media files (default: the bundled sample).
    """
    opts = PipelineOptions().replace(**{"privacy.deployment_context": "kiosk",
                                        "privacy.offline_guard": not args.allow_network})
    if args.live:
        return opts
    video, audio = args.video, args.audio
    if video is None and audio is None:
        from affectlite.samples import sample_paths

        v, a = sample_paths()
        video, audio = str(v), str(a)
    ov: dict[str, Any] = {"camera.enabled": video is not None, "audio.enabled": audio is not None,
                          "camera.loop": args.loop, "audio.loop": args.loop}
    if video is not None:
        ov.update({"camera.backend": "opencv", "camera.device": video})
    if audio is not None:
        ov.update({"audio.backend": "file", "audio.device": audio})
    return opts.replace(**ov)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse the command line; ``--demo`` fills in its defaults (explicit ``--window``/``--min-visitors`` win).

    Args:
        argv: Arguments (``None``: ``sys.argv[1:]``).

    Returns:
        The arguments, with ``window`` and ``min_visitors`` always set.
    """
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="First try: --demo (add --broker 127.0.0.1 to publish to a local Mosquitto and watch it with "
               "mosquitto_sub -v -t 'affectlite/fleet/#'). Payload schema: affectlite/schemas/fleet-1.schema.json; "
               "topics and QoS: docs/fleet.md.")
    p.add_argument("--broker", help="HOST[:PORT] of the MQTT broker; without it nothing is sent (dry run)")
    p.add_argument("--allow-network", action="store_true",
                   help="allow a non-loopback broker (turns the offline guard off for this process)")
    p.add_argument("--tls-ca", help="CA bundle: connect with TLS")
    p.add_argument("--kiosk-id", default="kiosk-1", help="this kiosk's name in the fleet (default kiosk-1)")
    p.add_argument("--window", type=float, default=None,
                   help=f"reporting window in seconds, >= {MIN_WINDOW_S:g} (default 60; {DEMO_WINDOW_S:g} with --demo)")
    p.add_argument("--min-visitors", type=int, default=None,
                   help=f"suppress the expression counts of windows with fewer visitors (default 5; "
                        f"{DEMO_MIN_VISITORS} with --demo)")
    p.add_argument("--demo", action="store_true",
                   help=f"demo mode to see the shape of the data: loop the media (the bundled sample by default), "
                        f"{DEMO_WINDOW_S:g} s windows, --min-visitors {DEMO_MIN_VISITORS}. Not for production: with "
                        f"a threshold of 1 a single visitor's expressions are published")
    p.add_argument("--live", action="store_true", help="camera and microphone instead of media files")
    p.add_argument("--video", help="video file")
    p.add_argument("--audio", help="WAV/FLAC file")
    p.add_argument("--loop", action="store_true", help="loop the media files")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    args = p.parse_args(argv)
    if args.window is None:
        args.window = DEMO_WINDOW_S if args.demo else 60.0
    if args.min_visitors is None:
        args.min_visitors = DEMO_MIN_VISITORS if args.demo else 5
    if args.demo:
        args.loop = True
    return args


def main(argv: Sequence[str] | None = None, *, options: PipelineOptions | None = None,
         pipeline_kwargs: dict[str, Any] | None = None) -> int:
    """Run the pipeline and publish (or print, in a dry run) one aggregate payload per window.

    Args:
        argv: Command-line arguments (see :func:`parse_args`).
        options: Pipeline options to use instead of the ones the arguments describe.
        pipeline_kwargs: Extra :class:`EmotionPipeline` arguments (tests pass fake sources here).

    Returns:
        The exit status: 0 done, 2 a configuration or broker error, 130 interrupted.
    """
    args = parse_args(argv)
    try:
        publisher = None
        agg = FleetAggregator(args.kiosk_id, args.window, args.min_visitors)
        if args.broker:
            host, port = _broker(args.broker)
            if not is_loopback_host(host) and not args.allow_network:
                raise ConfigError(
                    f"broker {host} is not on this device: publishing there sends data off the kiosk. Publish to "
                    "a local broker (127.0.0.1) that bridges to the fleet, or pass --allow-network to opt in "
                    "(this turns the offline guard off)")
            publisher = MqttPublisher(host, port, args.kiosk_id, tls_ca=args.tls_ca)
        opts = options or build_options(args)
        if args.demo:
            print(f"fleet_mqtt: demo mode: media looped, {agg.window_s:g} s windows, min visitors "
                  f"{agg.min_visitors} (not for production)", file=sys.stderr, flush=True)

        def emit(payload: dict[str, Any] | None) -> None:
            if payload is None:
                return
            if publisher is None:
                print("dry run, would publish:", json.dumps(payload), flush=True)
                return
            note = (" (suppressed)" if payload["suppressed"] else "") + (" (partial)" if payload["partial"] else "")
            if publisher.publish(payload):
                print(f"published window {payload['period_start']}..{payload['period_end']}: "
                      f"{payload['visitors']} visitors, {payload['results']} results{note}", flush=True)
            else:
                print(f"fleet_mqtt: window {payload['period_start']}..{payload['period_end']} not acknowledged "
                      "by the broker (connection down?); it is lost", file=sys.stderr, flush=True)

        if publisher is not None:
            publisher.connect()  # before the pipeline: a broker problem shows up before sensing starts
        deadline = None if args.duration is None else time.monotonic() + args.duration
        try:
            with EmotionPipeline(opts, on_result=agg.on_result,
                                 on_error=lambda e: print(f"pipeline: {e}", file=sys.stderr),
                                 **(pipeline_kwargs or {})) as pipe:
                while not pipe.wait(timeout=0.2):
                    emit(agg.roll())
                    if deadline is not None and time.monotonic() >= deadline:
                        break
            emit(agg.roll(force=True))
        finally:
            if publisher is not None:
                publisher.close()
    except AffectliteError as e:
        print(f"fleet_mqtt: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    print(f"fleet_mqtt: {agg.total_results} results aggregated; affectlite {affectlite.__version__}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
