"""A local, offline dashboard server for the kiosk example: stdlib HTTP + server-sent events.

* Binds to a loopback address only (``127.0.0.1`` by default); any other address is refused, and requests
  whose ``Host`` header is not a loopback name are rejected (defence against DNS rebinding).
* ``GET /`` serves ``index.html`` (inline CSS/JS, no external assets; a Content-Security-Policy forbids
  loading anything from elsewhere), ``GET /events`` is the SSE stream, ``GET /state`` a JSON snapshot
  (including ``sources``: each source's kind and state), ``POST /text`` hands a visitor's typed text to the
  app (the text is classified, never stored).
* ``GET /?snapshot=1`` serves the page with the current snapshot embedded: it renders the latest result,
  screen, sources and timeline at load, without opening the event stream (``<body data-snapshot="ready">``),
  so ``chromium --headless --screenshot`` captures real content.
* :class:`EventHub` fans events out to every connected page through bounded per-client queues (a slow
  page loses its oldest events; it never blocks the pipeline).

Only labels, scores, ephemeral track ids and boxes ever reach the page: no pixels, audio or text.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from affectlite.errors import ConfigError
from affectlite.labels import LABELS
from affectlite.privacy import is_loopback_host
from affectlite.results import EmotionResult

__all__ = ["DashboardServer", "EventHub", "result_event", "result_time_ns"]

log = logging.getLogger("kiosk.dashboard")

PAGE = Path(__file__).with_name("index.html")
#: Where ``/?snapshot=1`` embeds the snapshot in the page.
SNAPSHOT_MARK = b"<!--SNAPSHOT-->"
MAX_TEXT_BYTES = 2000
CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; "
       "img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def _probs(p: tuple[float, ...]) -> list[float]:
    return [round(float(v), 4) for v in p]


def result_time_ns(r: EmotionResult) -> int:
    """Where a result sits on its clock: its capture time, else when it was made (the pipeline always sets
    ``result_ns``; 0 is a recording's start, not a missing time)."""
    return r.capture_ns or r.result_ns


def result_event(r: EmotionResult, t0_ns: int) -> dict[str, Any]:
    """The compact, media-free JSON form of a result that the page draws.

    Args:
        r: A fused result from the pipeline.
        t0_ns: The timeline's zero on the results' clock (``t`` is seconds since then): the monotonic time
            the session started for live sources, or its counterpart in media time for recordings.
    """
    ref = result_time_ns(r)
    face = next((f for f in r.faces if f.track_id == r.track_id), r.faces[0] if r.faces else None)
    return {
        "t": round((ref - t0_ns) / 1e9, 3),
        "label": r.label,
        "confidence": round(float(r.confidence), 4),
        "valence": round(float(r.valence), 4),
        "arousal": round(float(r.arousal), 4),
        "probs": _probs(r.probabilities),
        "weights": {k: round(float(v), 3) for k, v in r.modality_weights.items()},
        "face": None if face is None else {"label": face.label, "probs": _probs(face.probabilities)},
        "voice": None if r.voice is None else {"label": r.voice.label, "probs": _probs(r.voice.probabilities)},
        "text": None if r.text is None else {"label": r.text.label, "probs": _probs(r.text.probabilities)},
        "faces": [{"id": f.track_id, "label": f.label, "confidence": round(float(f.confidence), 3),
                   "box": [round(f.box.x), round(f.box.y), round(f.box.w), round(f.box.h)]} for f in r.faces],
        "track": r.track_id,
    }


class _Client:
    def __init__(self, maxlen: int) -> None:
        self.items: deque[str] = deque(maxlen=maxlen)
        self.cond = threading.Condition()
        self.dropped = 0
        self.closed = False

    def put(self, msg: str) -> None:
        with self.cond:
            if len(self.items) == self.items.maxlen:
                self.dropped += 1
            self.items.append(msg)
            self.cond.notify()

    def take(self, timeout: float) -> list[str]:
        with self.cond:
            if not self.items and not self.closed:
                self.cond.wait(timeout)
            out = list(self.items)
            self.items.clear()
            return out


class EventHub:
    """Fan-out of JSON events to server-sent-event clients, with a snapshot for late joiners.

    Thread-safe: :meth:`publish` is called from the pipeline's dispatch thread, clients read on HTTP threads.

    Args:
        history: Result events kept for the timeline of a page that connects later.
        client_queue: Events buffered per client; a client that falls behind loses its oldest events.
    """

    def __init__(self, history: int = 600, client_queue: int = 256) -> None:
        self._lock = threading.Lock()
        self._clients: list[_Client] = []
        self._client_queue = client_queue
        self._history: deque[dict[str, Any]] = deque(maxlen=history)
        self._latest: dict[str, Any] = {}
        self.published = 0

    def publish(self, kind: str, data: Any) -> None:
        """Send an event of type ``kind`` (``result``, ``screen``, ``sensing``, ``status``, ``stats``...)."""
        msg = f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"
        with self._lock:
            self.published += 1
            self._latest[kind] = data
            if kind == "result":
                self._history.append(data)
            clients = list(self._clients)
        for c in clients:
            c.put(msg)

    def snapshot(self) -> dict[str, Any]:
        """The latest event of each kind plus the recent result history (what ``/state`` returns).

        Returns:
            ``labels``, ``latest`` (event kind -> its latest data), ``sources`` (the latest ``sources`` event:
            source -> kind and state; ``{}`` before any), ``history`` (result events) and ``clients``.
        """
        with self._lock:
            return {"labels": list(LABELS), "latest": dict(self._latest),
                    "sources": self._latest.get("sources", {}), "history": list(self._history),
                    "clients": len(self._clients)}

    @property
    def client_count(self) -> int:
        """Pages connected right now."""
        with self._lock:
            return len(self._clients)

    def _subscribe(self) -> _Client:
        c = _Client(self._client_queue)
        with self._lock:
            self._clients.append(c)
        return c

    def _unsubscribe(self, c: _Client) -> None:
        with self._lock:
            if c in self._clients:
                self._clients.remove(c)

    def close(self) -> None:
        """Wake and end every client stream."""
        with self._lock:
            clients = list(self._clients)
        for c in clients:
            with c.cond:
                c.closed = True
                c.cond.notify_all()


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - %s", self.address_string(), format % args)

    # -- helpers
    def _host_ok(self) -> bool:
        host = self.headers.get("Host", "")
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if host.startswith("[") and "]" in host:
            name = host[1:host.index("]")]
        if is_loopback_host(name):
            return True
        self._send(HTTPStatus.MISDIRECTED_REQUEST, b"dashboard is served on loopback only\n", "text/plain")
        return False

    def _send(self, status: HTTPStatus, body: bytes, ctype: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    # -- routes
    def do_GET(self) -> None:
        if not self._host_ok():
            return
        path, _, query = self.path.partition("?")
        if path in ("/", "/index.html"):
            snap = urllib.parse.parse_qs(query).get("snapshot", ["0"])[-1] not in ("", "0", "false", "no")
            page = self.server.page_bytes(self.server.hub.snapshot() if snap else None)
            self._send(HTTPStatus.OK, page, "text/html; charset=utf-8", {"Content-Security-Policy": CSP})
        elif path == "/events":
            self._events()
        elif path == "/state":
            body = json.dumps(self.server.hub.snapshot()).encode()
            self._send(HTTPStatus.OK, body, "application/json")
        elif path == "/healthz":
            self._send(HTTPStatus.OK, b"ok\n", "text/plain")
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")

    do_HEAD = do_GET

    def do_POST(self) -> None:
        try:
            n = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            n = -1
        if n < 0 or n > MAX_TEXT_BYTES:
            self.close_connection = True  # the unread body makes the connection unusable
            self._send(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, b"text too long\n", "text/plain", {"Connection": "close"})
            return
        raw = self.rfile.read(n)  # read before any answer, so keep-alive connections stay in sync
        if not self._host_ok():
            return
        if self.path.split("?", 1)[0] != "/text":
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")
            return
        origin = self.headers.get("Origin")
        if origin is not None and origin != "null" and not is_loopback_host(
                origin.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")):
            self._send(HTTPStatus.FORBIDDEN, b"cross-origin text refused\n", "text/plain")
            return
        try:
            text = json.loads(raw.decode("utf-8")).get("text")
        except (UnicodeDecodeError, json.JSONDecodeError, AttributeError):
            text = None
        if not isinstance(text, str) or not text.strip():
            self._send(HTTPStatus.BAD_REQUEST, b'expected JSON {"text": "..."}\n', "text/plain")
            return
        cb = self.server.on_text
        if cb is None:
            self._send(HTTPStatus.SERVICE_UNAVAILABLE, b"text input is disabled\n", "text/plain")
            return
        try:
            cb(text.strip())
        except Exception as e:  # the pipeline may be stopping
            log.warning("text input failed: %s", e)
            self._send(HTTPStatus.SERVICE_UNAVAILABLE, b"text input unavailable\n", "text/plain")
            return
        self._send(HTTPStatus.NO_CONTENT, b"", "text/plain")

    def _events(self) -> None:
        hub = self.server.hub
        client = hub._subscribe()
        try:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Accel-Buffering", "no")
            self.end_headers()
            self.close_connection = True
            hello = json.dumps(hub.snapshot(), separators=(",", ":"))
            self.wfile.write(f"retry: 1000\nevent: hello\ndata: {hello}\n\n".encode())
            self.wfile.flush()
            last = time.monotonic()
            while not self.server.stopping.is_set() and not client.closed:
                msgs = client.take(timeout=0.5)
                if msgs:
                    self.wfile.write("".join(msgs).encode())
                    self.wfile.flush()
                    last = time.monotonic()
                elif time.monotonic() - last > 5.0:
                    self.wfile.write(b": keep-alive\n\n")  # detects closed pages
                    self.wfile.flush()
                    last = time.monotonic()
            rest = client.take(timeout=0)  # what was published before the server stopped still goes out
            if rest:
                self.wfile.write("".join(rest).encode())
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError):
            pass
        finally:
            hub._unsubscribe(client)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], hub: EventHub, on_text: Callable[[str], None] | None,
                 page: Path) -> None:
        self.hub = hub
        self.on_text = on_text
        self.page = page
        self.stopping = threading.Event()
        super().__init__(addr, _Handler)

    def page_bytes(self, snapshot: dict[str, Any] | None = None) -> bytes:
        page = self.page.read_bytes()
        if snapshot is None:
            return page
        # a JSON data block (never executed); "<" escaped so no "</script>" can end it early
        data = json.dumps(snapshot, separators=(",", ":")).replace("<", "\\u003c").encode()
        block = b'<script type="application/json" id="snapshot-data">' + data + b"</script>"
        return page.replace(SNAPSHOT_MARK, block, 1)


class DashboardServer:
    """The kiosk's dashboard web server, on loopback only.

    Args:
        hub: Where events come from.
        host: A loopback address (``127.0.0.1``, ``::1`` or ``localhost``); anything else raises ConfigError.
        port: TCP port (``0``: any free port; see :attr:`url`).
        on_text: Called with text typed on the page (e.g. ``pipeline.push_text``); ``None`` disables it.
        page: The HTML page to serve.

    Raises:
        ConfigError: ``host`` is not a loopback address.
        OSError: the port is taken.
    """

    def __init__(self, hub: EventHub, host: str = "127.0.0.1", port: int = 8765,
                 on_text: Callable[[str], None] | None = None, page: Path = PAGE) -> None:
        if not is_loopback_host(host):
            raise ConfigError(f"the dashboard is served on loopback only; host {host!r} is not a loopback address "
                              "(use 127.0.0.1, ::1 or localhost; put a reverse proxy in front if you really need "
                              "remote access)")
        if host == "localhost":
            host = "127.0.0.1"
        if ":" in host:
            import socket

            class _Server6(_Server):
                address_family = socket.AF_INET6
            self._srv: _Server = _Server6((host, port), hub, on_text, page)
        else:
            self._srv = _Server((host, port), hub, on_text, page)
        self.hub = hub
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The page's URL, e.g. ``http://127.0.0.1:8765/``."""
        raw, port = self._srv.server_address[:2]
        host = raw.decode() if isinstance(raw, bytes) else str(raw)
        return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"

    def start(self) -> DashboardServer:
        """Serve on a background thread."""
        self._thread = threading.Thread(target=self._srv.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="kiosk-dashboard", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving and end every event stream (idempotent)."""
        self._srv.stopping.set()
        self.hub.close()
        if self._thread is not None:
            self._srv.shutdown()
            self._thread.join(5)
            self._thread = None
        self._srv.server_close()

    def __enter__(self) -> DashboardServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
