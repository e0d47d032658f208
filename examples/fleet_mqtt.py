"""Opt-in fleet telemetry for kiosks: aggregate, anonymous expression counts published to MQTT.

    python examples/fleet_mqtt.py                                   # dry run: prints what WOULD be sent
    python examples/fleet_mqtt.py --broker 127.0.0.1 --kiosk-id lobby-2 --window 60
    python examples/fleet_mqtt.py --live --broker 127.0.0.1         # camera + microphone

What is sent, once per window (default 60 s), on ``affectlite/fleet/<kiosk-id>/expressions``::

    {"schema": "affectlite.fleet/1", "kiosk": "lobby-2", "window_s": 60, "period_end": "2025-05-01T10:42Z",
     "visitors": 7, "results": 1534, "suppressed": false,
     "expressions": {"happy": 3, "neutral": 4, ...},     # visitors per most frequent expression
     "share": {"happy": 0.41, "neutral": 0.52, ...}}     # share of results per expression

Never sent: images, audio, text, boxes, per-frame or per-person results, track ids, exact times (the period
end is floored to the window). Windows with fewer than ``--min-visitors`` visitors (default 5) are
*suppressed*: only ``visitors``/``results`` counts go out, so a single person's expressions cannot be
singled out. ``visitors`` counts face tracks (a person who leaves and comes back counts twice).

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
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import affectlite
from affectlite import EmotionPipeline, EmotionResult, PipelineOptions
from affectlite.errors import AffectliteError, ConfigError
from affectlite.labels import LABELS
from affectlite.privacy import is_loopback_host

SCHEMA = "affectlite.fleet/1"


class FleetAggregator:
    """Aggregates fused results into anonymous per-window counts.

    ``on_result`` runs on the pipeline's dispatch thread; :meth:`roll` on the main thread (thread-safe).
    Per-track tallies live only in memory until the window closes, then only counts leave.

    Args:
        kiosk_id: The operator-chosen name of this kiosk.
        window_s: Reporting window in seconds.
        min_visitors: Windows with fewer visitors carry no expression counts (k-anonymity threshold).
        clock: Monotonic clock in seconds.
        wall: Wall clock (epoch seconds), for the floored period end.
    """

    def __init__(self, kiosk_id: str, window_s: float = 60.0, min_visitors: int = 5,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> None:
        if window_s <= 0:
            raise ConfigError(f"window must be > 0 seconds, got {window_s}")
        if min_visitors < 1:
            raise ConfigError(f"min_visitors must be >= 1, got {min_visitors}")
        self.kiosk_id = kiosk_id
        self.window_s = float(window_s)
        self.min_visitors = int(min_visitors)
        self.clock, self.wall = clock, wall
        self._lock = threading.Lock()
        self._start = clock()
        self._per_track: dict[int, Counter[str]] = {}
        self._share: Counter[str] = Counter()
        self._results = 0
        self.total_results = 0

    def on_result(self, r: EmotionResult) -> None:
        """Count one fused result (empty and ``unknown`` results are not expressions and are skipped)."""
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
            force: Close the window now (e.g. at shutdown).
        """
        now = self.clock()
        with self._lock:
            elapsed = now - self._start
            if not force and elapsed < self.window_s:
                return None
            per_track, share, n = self._per_track, self._share, self._results
            self._per_track, self._share, self._results = {}, Counter(), 0
            self._start = now
        visitors = len(per_track)
        step = max(1, int(self.window_s))
        end = int(self.wall()) // step * step
        payload: dict[str, Any] = {
            "schema": SCHEMA, "kiosk": self.kiosk_id, "window_s": round(elapsed, 1),
            "period_end": dt.datetime.fromtimestamp(end, dt.timezone.utc).strftime("%Y-%m-%dT%H:%MZ"),
            "visitors": visitors, "results": n, "suppressed": visitors < self.min_visitors,
        }
        if not payload["suppressed"]:
            dominant = Counter(c.most_common(1)[0][0] for c in per_track.values() if c)
            payload["expressions"] = {lab: dominant.get(lab, 0) for lab in LABELS}
            payload["share"] = {lab: round(share.get(lab, 0) / n, 3) if n else 0.0 for lab in LABELS}
        return payload


class MqttPublisher:
    """A small paho-mqtt 2.x wrapper: connect, publish JSON with QoS 1, online/offline status (last will).

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

    def publish(self, payload: dict[str, Any]) -> None:
        """Publish one payload as JSON (QoS 1) and wait for the broker's acknowledgement."""
        info = self.client.publish(self.topic, json.dumps(payload, separators=(",", ":")), qos=1)
        info.wait_for_publish(self.timeout_s)
        self.sent += 1

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
    """Sources from the arguments; the offline guard stays on unless ``--allow-network``."""
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
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--broker", help="HOST[:PORT] of the MQTT broker; without it nothing is sent (dry run)")
    p.add_argument("--allow-network", action="store_true",
                   help="allow a non-loopback broker (turns the offline guard off for this process)")
    p.add_argument("--tls-ca", help="CA bundle: connect with TLS")
    p.add_argument("--kiosk-id", default="kiosk-1", help="this kiosk's name in the fleet (default kiosk-1)")
    p.add_argument("--window", type=float, default=60.0, help="reporting window in seconds (default 60)")
    p.add_argument("--min-visitors", type=int, default=5, help="suppress counts of smaller windows (default 5)")
    p.add_argument("--live", action="store_true", help="camera and microphone instead of media files")
    p.add_argument("--video", help="video file")
    p.add_argument("--audio", help="WAV/FLAC file")
    p.add_argument("--loop", action="store_true", help="loop the media files")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None, *, options: PipelineOptions | None = None,
         pipeline_kwargs: dict[str, Any] | None = None) -> int:
    """Run the pipeline and publish (or print, in a dry run) one aggregate payload per window."""
    args = parse_args(argv)
    try:
        publisher = None
        if args.broker:
            host, port = _broker(args.broker)
            if not is_loopback_host(host) and not args.allow_network:
                raise ConfigError(
                    f"broker {host} is not on this device: publishing there sends data off the kiosk. Publish to "
                    "a local broker (127.0.0.1) that bridges to the fleet, or pass --allow-network to opt in "
                    "(this turns the offline guard off)")
            publisher = MqttPublisher(host, port, args.kiosk_id, tls_ca=args.tls_ca)
        opts = options or build_options(args)
        agg = FleetAggregator(args.kiosk_id, args.window, args.min_visitors)

        def emit(payload: dict[str, Any] | None) -> None:
            if payload is None:
                return
            if publisher is None:
                print("dry run, would publish:", json.dumps(payload), flush=True)
            else:
                publisher.publish(payload)
                print(f"published window: {payload['visitors']} visitors, {payload['results']} results"
                      f"{' (suppressed)' if payload['suppressed'] else ''}", flush=True)

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
