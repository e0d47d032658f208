"""Privacy guarantees: offline guard, deployment gate, consent tokens, sensing indicators, media scan.

What this module enforces, and how the pipeline uses it:

* **Nothing leaves the device.** :class:`OfflineGuard` installs a :func:`sys.addaudithook` hook (once per
  process; audit hooks cannot be removed, so the hook only acts while a guard is active) that refuses every
  ``socket.connect`` / ``connect_ex``, ``sendto``, ``sendmsg``, ``bind`` and host lookup
  (``getaddrinfo``, ``gethostbyname``, ...) aimed at a non-loopback address, raising
  :class:`~affectlite.errors.NetworkBlockedError` (an :class:`OSError`, which network libraries already
  handle) and reporting the attempt (``on_block`` callback, a ``logging`` warning, ``blocked_count``).
  Unix-domain and netlink sockets are local IPC and always allowed; loopback (``127.0.0.0/8``, ``::1``,
  ``localhost``) only with ``allow_loopback``. The pipeline holds a guard while it runs when
  ``PrivacyOptions.offline_guard`` is true (the default); setting it false is the explicit opt-out.
  Limits: the guard covers the Python process only (not child processes or native code that bypasses
  Python's socket module), and sockets connected before the guard was entered keep working.
* **People know, and some places are off limits.** :func:`check_deployment` refuses emotion recognition
  in workplaces and education institutions unless a medical or safety purpose is declared (EU AI Act,
  Art. 5(1)(f)). :class:`ConsentToken` / :func:`check_consent` let a pipeline require explicit consent.
  The ``on_sensing(active)`` hook (:class:`SensingIndicator`; :class:`GpioLed`, :class:`FileFlag`,
  :class:`SensingNotifier`) switches an LED, banner or flag on before the first inference and off
  when sensing stops.
* **No raw media at rest.** :func:`scan_for_media` finds image/audio/array/temp files created after a
  given time in the places a process can write (:func:`default_write_areas`); the test-suite runs a
  pipeline and asserts it finds nothing.

Results are *expression estimates* (what a face, voice or text outwardly shows), never felt emotions.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ._io import atomic_write_text
from .errors import (
    ConfigError,
    ConsentRequiredError,
    DeploymentRefusedError,
    NetworkBlockedError,
    PrivacyError,
)
from .options import PrivacyOptions

__all__ = [
    "DEPLOYMENT_CONTEXTS",
    "MEDIA_SUFFIXES",
    "PURPOSE_PREFIXES",
    "RESTRICTED_CONTEXTS",
    "ConsentToken",
    "FileFlag",
    "GpioLed",
    "OfflineGuard",
    "SensingIndicator",
    "SensingNotifier",
    "check_consent",
    "check_deployment",
    "default_write_areas",
    "guard_for",
    "is_loopback_host",
    "offline_guard_active",
    "preflight",
    "scan_for_media",
]

log = logging.getLogger("affectlite.privacy")

# --------------------------------------------------------------------------------------------------
# Offline guard
# --------------------------------------------------------------------------------------------------

_LOCK = threading.Lock()
_HOOK_INSTALLED = False
#: Guards currently active (a tuple, replaced on change, so the hook reads it without locking).
_ACTIVE: tuple[OfflineGuard, ...] = ()
_REPORTING = threading.local()

#: Socket families that never leave the machine (IPC with local processes or the kernel).
_LOCAL_FAMILIES = frozenset(
    int(f) for f in (getattr(socket, "AF_UNIX", None), getattr(socket, "AF_NETLINK", None)) if f is not None
)
_LOOKUP_EVENTS = frozenset({"socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex",
                            "socket.gethostbyaddr"})
_SOCKET_EVENTS = frozenset({"socket.connect", "socket.sendto", "socket.sendmsg", "socket.bind"})


def is_loopback_host(host: object) -> bool:
    """True when ``host`` names the local machine only: ``127.0.0.0/8``, ``::1``, ``localhost``.

    ``""`` and ``0.0.0.0`` (all interfaces), ``<broadcast>``, other hostnames (they need a DNS lookup)
    and anything unparseable are *not* loopback.
    """
    if isinstance(host, bytes):
        try:
            host = host.decode("ascii")
        except UnicodeDecodeError:
            return False
    if not isinstance(host, str) or not host:
        return False
    name = host.strip().rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    name = name.strip("[]")
    try:
        addr = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped.is_loopback
    return addr.is_loopback


def _describe(event: str, args: tuple[Any, ...]) -> tuple[bool, str]:
    """Decide whether a socket audit event is network traffic; return (is_network, target description)."""
    if event in _LOOKUP_EVENTS:
        host = args[0] if args else None
        if event == "socket.getaddrinfo" and host is None:
            return False, ""  # getaddrinfo(None, port): local wildcard/loopback lookup, no traffic
        return True, f"host {host!r}"
    sock = args[0] if args else None
    address = args[1] if len(args) > 1 else None
    family = getattr(sock, "family", None)
    if family is not None and int(family) in _LOCAL_FAMILIES:
        return False, ""
    if event == "socket.sendmsg" and address is None:
        return False, ""  # connected socket: its connect() was already checked
    if isinstance(address, tuple) and address:
        return True, f"address {address!r}"
    return True, f"address {address!r} (family {family!r})"


def _host_of(event: str, args: tuple[Any, ...]) -> object:
    if event in _LOOKUP_EVENTS:
        return args[0] if args else None
    address = args[1] if len(args) > 1 else None
    if isinstance(address, tuple) and address:
        return address[0]
    return None


def _audit_hook(event: str, args: tuple[Any, ...]) -> None:
    guards = _ACTIVE
    if not guards or not event.startswith("socket."):
        return
    if event not in _SOCKET_EVENTS and event not in _LOOKUP_EVENTS:
        return
    is_net, target = _describe(event, args)
    if not is_net:
        return
    allow_loopback = all(g.allow_loopback for g in guards)
    if allow_loopback and is_loopback_host(_host_of(event, args)):
        return
    message = (f"affectlite offline guard blocked {event} to {target}: the pipeline is running offline, "
               "so no data may leave the device. If this connection is intended, disable the guard "
               "explicitly (PrivacyOptions(offline_guard=False) or privacy.offline_guard: false in the "
               "profile)" + ("" if allow_loopback else ", or allow loopback (allow_loopback=True)"))
    _report(guards, message)
    raise NetworkBlockedError(message)


def _report(guards: Sequence[OfflineGuard], message: str) -> None:
    if getattr(_REPORTING, "busy", False):
        return  # a report (e.g. a logging handler) itself tried to connect: block it, do not recurse
    _REPORTING.busy = True
    try:
        for g in guards:
            with g._lock:
                g._blocked += 1
                g._last = message
        log.warning("%s", message)
        for g in guards:
            if g.on_block is not None:
                try:
                    g.on_block(message)
                except Exception:  # a broken callback must not disable the guard
                    log.exception("offline guard on_block callback raised")
    finally:
        _REPORTING.busy = False


def _install_hook() -> None:
    global _HOOK_INSTALLED
    if not _HOOK_INSTALLED:
        sys.addaudithook(_audit_hook)
        _HOOK_INSTALLED = True


def offline_guard_active() -> bool:
    """True while at least one :class:`OfflineGuard` is active in this process."""
    return bool(_ACTIVE)


class OfflineGuard:
    """Block and report non-loopback network access by this process while active.

    Use as a context manager (re-entrant: nested ``with`` blocks on the same guard, and several guards
    at once, are fine; the strictest active setting wins) or with :meth:`start` / :meth:`stop`::

        with OfflineGuard(on_block=lambda msg: alarm(msg)) as guard:
            run_kiosk()
        print(guard.blocked_count)

    Blocked calls raise :class:`~affectlite.errors.NetworkBlockedError` in the thread that made them.
    The first use installs a process-wide audit hook (``sys.addaudithook``) that stays installed but
    does nothing while no guard is active.

    Args:
        allow_loopback: Allow ``127.0.0.0/8``, ``::1`` and ``localhost`` (local dashboards, a local MQTT
            broker).
        on_block: Called with a description of each blocked attempt (in the blocked thread; exceptions
            it raises are logged and ignored).
    """

    def __init__(self, allow_loopback: bool = True, on_block: Callable[[str], None] | None = None) -> None:
        self.allow_loopback = bool(allow_loopback)
        self.on_block = on_block
        self._depth = 0
        self._blocked = 0
        self._last: str | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_options(cls, options: PrivacyOptions,
                     on_block: Callable[[str], None] | None = None) -> OfflineGuard:
        """A guard configured from :class:`~affectlite.options.PrivacyOptions` (ignores ``offline_guard``)."""
        return cls(allow_loopback=options.allow_loopback, on_block=on_block)

    @property
    def blocked_count(self) -> int:
        """Number of attempts this guard blocked (over all the times it was active)."""
        return self._blocked

    @property
    def last_blocked(self) -> str | None:
        """Description of the most recent blocked attempt, or ``None``."""
        return self._last

    @property
    def active(self) -> bool:
        """True while this guard is entered."""
        return self._depth > 0

    def start(self) -> OfflineGuard:
        """Activate the guard (nestable; each call needs a matching :meth:`stop`)."""
        global _ACTIVE
        with _LOCK:
            _install_hook()
            self._depth += 1
            if self._depth == 1:
                _ACTIVE = (*_ACTIVE, self)
        return self

    def stop(self) -> None:
        """Undo one :meth:`start`; the guard stops blocking when every start is undone. Extra calls are no-ops."""
        global _ACTIVE
        with _LOCK:
            if self._depth == 0:
                return
            self._depth -= 1
            if self._depth == 0:
                _ACTIVE = tuple(g for g in _ACTIVE if g is not self)

    def __enter__(self) -> OfflineGuard:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return (f"OfflineGuard(allow_loopback={self.allow_loopback}, active={self.active}, "
                f"blocked_count={self.blocked_count})")


def guard_for(options: PrivacyOptions,
              on_block: Callable[[str], None] | None = None) -> contextlib.AbstractContextManager[Any]:
    """The guard a pipeline should hold: an :class:`OfflineGuard` unless ``options.offline_guard`` is false.

    Returns:
        An :class:`OfflineGuard`, or a no-op context manager when the guard was explicitly disabled.
    """
    if options.offline_guard:
        return OfflineGuard.from_options(options, on_block=on_block)
    log.info("offline guard disabled by privacy.offline_guard=false: network access is not restricted")
    return contextlib.nullcontext()


# --------------------------------------------------------------------------------------------------
# Deployment gate (EU AI Act Art. 5(1)(f)) and consent
# --------------------------------------------------------------------------------------------------

#: Deployment contexts a profile may declare.
DEPLOYMENT_CONTEXTS = ("public", "kiosk", "retail", "robot", "home", "research", "healthcare",
                       "workplace", "education")
#: Contexts where emotion recognition is prohibited unless for medical or safety reasons.
RESTRICTED_CONTEXTS = ("workplace", "education")
#: Accepted prefixes of ``declared_purpose``; the rest must name the purpose.
PURPOSE_PREFIXES = ("medical", "safety")
_MIN_PURPOSE_CHARS = 8


def _parse_purpose(purpose: str | None) -> tuple[str, str] | None:
    if not isinstance(purpose, str) or ":" not in purpose:
        return None
    kind, _, what = purpose.partition(":")
    kind, what = kind.strip().lower(), what.strip()
    if kind not in PURPOSE_PREFIXES or len(what) < _MIN_PURPOSE_CHARS:
        return None
    return kind, what


def check_deployment(options: PrivacyOptions) -> None:
    """Refuse to run where emotion recognition is prohibited.

    The EU AI Act, Art. 5(1)(f), prohibits placing on the market or using AI systems that infer the
    emotions of natural persons in the areas of workplace and education institutions, except where the
    system is intended for medical or safety reasons. So for ``deployment_context`` ``"workplace"`` or
    ``"education"`` a purpose must be declared in the form ``"medical: <what it is for>"`` or
    ``"safety: <what it is for>"`` (at least 8 characters after the colon), e.g.
    ``"safety: drowsiness alert for forklift drivers"``.

    Args:
        options: The pipeline's privacy options.

    Raises:
        ConfigError: ``deployment_context`` is not one of :data:`DEPLOYMENT_CONTEXTS`.
        DeploymentRefusedError: a restricted context without a valid medical/safety purpose.
    """
    ctx = options.deployment_context
    if not isinstance(ctx, str) or ctx not in DEPLOYMENT_CONTEXTS:
        raise ConfigError(f"privacy.deployment_context: {ctx!r} is not a known deployment context; "
                          f"allowed: {', '.join(DEPLOYMENT_CONTEXTS)}")
    if ctx not in RESTRICTED_CONTEXTS:
        return
    parsed = _parse_purpose(options.declared_purpose)
    if parsed is not None:
        log.info("deployment context %r accepted for declared %s purpose: %s", ctx, parsed[0], parsed[1])
        return
    got = ("no purpose was declared" if options.declared_purpose is None
           else f"declared_purpose {options.declared_purpose!r} is not a medical or safety purpose")
    raise DeploymentRefusedError(
        f"refusing to start emotion recognition in deployment_context {ctx!r}: {got}. The EU AI Act, "
        "Art. 5(1)(f), prohibits AI systems that infer emotions of natural persons in the areas of "
        "workplace and education institutions, except where intended for medical or safety reasons. "
        "If this deployment really serves such a reason, declare it in privacy.declared_purpose as "
        "'medical: <what it is for>' or 'safety: <what it is for>' (e.g. 'safety: drowsiness alert for "
        "forklift drivers'); otherwise do not deploy emotion recognition here, or correct "
        "privacy.deployment_context if it is wrong.")


@dataclass(frozen=True)
class ConsentToken:
    """Evidence that the people sensed agreed to it: who granted it, for what, when, and its scope.

    The token is a record the application creates when it has obtained consent (a kiosk's "I agree"
    button, a signed form); the SDK checks it is present, unexpired and covers what the pipeline senses.
    It holds no personal data beyond the ``granted_by`` string the application chooses (prefer a role or
    an anonymous session id over a name).

    Attributes:
        purpose: What the sensing is for, as shown to the person.
        granted_by: Who granted it (a role or session id, e.g. ``"visitor-session-42"``).
        granted_at: Wall-clock time it was granted (seconds since the epoch).
        scope: Modalities covered: any of ``"camera"``, ``"microphone"``, ``"text"``.
        expires_at: Wall-clock expiry (seconds since the epoch), or ``None`` for no expiry.
    """

    purpose: str
    granted_by: str
    granted_at: float
    scope: tuple[str, ...] = ("camera", "microphone", "text")
    expires_at: float | None = None

    SCOPES = ("camera", "microphone", "text")

    @classmethod
    def grant(cls, purpose: str, granted_by: str, *, scope: Iterable[str] = ("camera", "microphone", "text"),
              valid_for_s: float | None = None) -> ConsentToken:
        """Record consent granted now.

        Args:
            purpose: What the sensing is for (non-empty).
            granted_by: Who granted it (non-empty; a role or session id).
            scope: Modalities covered.
            valid_for_s: Seconds until it expires (``None``: no expiry).

        Raises:
            ConfigError: empty purpose/granted_by, unknown scope, or a non-positive ``valid_for_s``.
        """
        if not isinstance(purpose, str) or not purpose.strip():
            raise ConfigError("ConsentToken.grant: purpose must be a non-empty string saying what sensing is for")
        if not isinstance(granted_by, str) or not granted_by.strip():
            raise ConfigError("ConsentToken.grant: granted_by must be a non-empty string (a role or session id)")
        sc = tuple(scope)
        bad = [s for s in sc if s not in cls.SCOPES]
        if bad or not sc:
            raise ConfigError(f"ConsentToken.grant: scope {sc!r} must be a non-empty subset of {cls.SCOPES}")
        if valid_for_s is not None and not valid_for_s > 0:
            raise ConfigError(f"ConsentToken.grant: valid_for_s must be positive or None, got {valid_for_s!r}")
        now = time.time()
        return cls(purpose=purpose.strip(), granted_by=granted_by.strip(), granted_at=now, scope=sc,
                   expires_at=None if valid_for_s is None else now + float(valid_for_s))

    def is_valid(self, now: float | None = None) -> bool:
        """True when the token is not expired (at ``now``, default the current time)."""
        t = time.time() if now is None else now
        return self.expires_at is None or t < self.expires_at


def check_consent(options: PrivacyOptions, token: ConsentToken | None, *,
                  modalities: Iterable[str] = (), now: float | None = None) -> None:
    """Check consent before sensing starts.

    Args:
        options: Privacy options; with ``require_consent`` a token is mandatory.
        token: The consent token the application obtained, or ``None``.
        modalities: What the pipeline will sense (``"camera"``, ``"microphone"``, ``"text"``); each must be
            in the token's scope.
        now: Current wall-clock time (for tests).

    Raises:
        ConsentRequiredError: consent is required but missing, or a given token is not a
            :class:`ConsentToken`, is expired, or does not cover a modality.
    """
    if token is None:
        if options.require_consent:
            raise ConsentRequiredError(
                "this pipeline requires consent (privacy.require_consent=true) and no consent token was "
                "given: obtain consent from the people sensed, then pass "
                "consent=affectlite.privacy.ConsentToken.grant(purpose, granted_by) when creating the pipeline")
        return
    if not isinstance(token, ConsentToken):
        raise ConsentRequiredError(f"consent must be an affectlite.privacy.ConsentToken, got {type(token).__name__}")
    if not token.is_valid(now):
        raise ConsentRequiredError(f"the consent token granted by {token.granted_by!r} for {token.purpose!r} "
                                   "has expired: obtain consent again")
    missing = [m for m in modalities if m not in token.scope]
    if missing:
        raise ConsentRequiredError(f"the consent token does not cover {', '.join(missing)} (its scope is "
                                   f"{', '.join(token.scope)}): obtain consent for it, or disable it")


def preflight(options: PrivacyOptions, consent: ConsentToken | None = None, *,
              modalities: Iterable[str] = ()) -> None:
    """Run every privacy check a pipeline needs before it starts sensing.

    :func:`check_deployment` then :func:`check_consent`.

    Raises:
        ConfigError: unknown deployment context.
        DeploymentRefusedError: restricted context without a medical/safety purpose.
        ConsentRequiredError: consent required but missing, expired or out of scope.
    """
    check_deployment(options)
    check_consent(options, consent, modalities=modalities)


# --------------------------------------------------------------------------------------------------
# Sensing indicators
# --------------------------------------------------------------------------------------------------


@runtime_checkable
class SensingIndicator(Protocol):
    """Anything called with ``True`` when sensing starts and ``False`` when it stops (``on_sensing``).

    A plain function works; :class:`GpioLed` and :class:`FileFlag` are ready-made ones.
    """

    def __call__(self, active: bool) -> None:
        """Show (``True``) or clear (``False``) the 'sensing' indication."""


class GpioLed:
    """Light an LED on a GPIO pin while sensing (Raspberry Pi and compatibles, via ``gpiozero``).

    Args:
        pin: GPIO pin (BCM number or a gpiozero pin name such as ``"GPIO17"``).
        active_high: False when the LED is wired to light on a low output.
    """

    def __init__(self, pin: int | str, active_high: bool = True) -> None:
        self.pin = pin
        self.active_high = active_high
        self._led: Any = None

    def _device(self) -> Any:
        if self._led is None:
            try:
                # lazy: only devices with GPIO have it
                from gpiozero import LED  # type: ignore[import-not-found,unused-ignore]
            except ImportError as e:
                raise PrivacyError("GpioLed needs gpiozero: pip install gpiozero (on Raspberry Pi OS: "
                                   "sudo apt install python3-gpiozero)") from e
            self._led = LED(self.pin, active_high=self.active_high)
        return self._led

    def __call__(self, active: bool) -> None:
        """Turn the LED on (sensing) or off."""
        led = self._device()
        if active:
            led.on()
        else:
            led.off()

    def close(self) -> None:
        """Switch the LED off and release the pin."""
        if self._led is not None:
            self._led.off()
            self._led.close()
            self._led = None


class FileFlag:
    """Write ``"1"`` (sensing) or ``"0"`` to a file, atomically, for a kiosk banner or another process.

    Args:
        path: The flag file (its folder is created if needed).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def __call__(self, active: bool) -> None:
        """Write the flag."""
        atomic_write_text(self.path, "1\n" if active else "0\n")

    def read(self) -> bool | None:
        """The current flag (``None`` when the file does not exist)."""
        try:
            return self.path.read_text(encoding="utf-8").strip() == "1"
        except FileNotFoundError:
            return None


class SensingNotifier:
    """Drive an ``on_sensing`` hook exactly once per transition; used by the pipeline.

    :meth:`activate` calls ``hook(True)`` (only if not already active) and must succeed before the first
    inference: if the hook fails, people would not know they are sensed, so it raises
    :class:`~affectlite.errors.PrivacyError` and the pipeline must not start. :meth:`deactivate` calls
    ``hook(False)`` (only if active); its errors are logged, never raised, so stopping always completes.
    Thread-safe.

    Args:
        hook: The indicator, or ``None`` for none (then this only tracks the state).
    """

    def __init__(self, hook: Callable[[bool], None] | None) -> None:
        self.hook = hook
        self._active = False
        self._lock = threading.Lock()

    @property
    def active(self) -> bool:
        """True between a successful :meth:`activate` and :meth:`deactivate`."""
        return self._active

    def activate(self) -> None:
        """Signal that sensing starts.

        Raises:
            PrivacyError: the hook raised (the cause is chained).
        """
        with self._lock:
            if self._active:
                return
            if self.hook is not None:
                try:
                    self.hook(True)
                except Exception as e:
                    raise PrivacyError(f"the sensing indicator (on_sensing) failed to switch on: {e}; refusing "
                                       "to sense without telling people. Fix the indicator (LED wiring, "
                                       "flag file path) or pass on_sensing=None if there is none") from e
            self._active = True

    def deactivate(self) -> None:
        """Signal that sensing stopped (errors are logged)."""
        with self._lock:
            if not self._active:
                return
            self._active = False
            if self.hook is not None:
                try:
                    self.hook(False)
                except Exception:
                    log.exception("the sensing indicator (on_sensing) failed to switch off")


# --------------------------------------------------------------------------------------------------
# Media-at-rest scan
# --------------------------------------------------------------------------------------------------

#: File name suffixes of media or raw-array files that must never be written by a run.
MEDIA_SUFFIXES = frozenset({
    ".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm", ".yuv",
    ".raw", ".h264", ".mjpeg", ".mp4", ".avi", ".mkv", ".mov",
    ".wav", ".flac", ".mp3", ".ogg", ".opus", ".pcm", ".aac", ".m4a",
    ".npy", ".npz", ".pkl", ".pickle", ".tmp", ".temp",
})
_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"RIFF", b"fLaC", b"OggS", b"\x93NUMPY", b"ID3", b"GIF8", b"BM",
          b"PK\x03\x04")


def default_write_areas() -> list[Path]:
    """Folders a process could write media to: cwd, the temp dirs, ``/dev/shm`` and the user cache."""
    home = Path(os.path.expanduser("~"))
    cands = [Path.cwd(), Path(tempfile.gettempdir()), Path("/tmp"), Path("/var/tmp"), Path("/dev/shm"),
             Path(os.environ.get("XDG_CACHE_HOME") or home / ".cache")]
    out: list[Path] = []
    for c in cands:
        if c.is_dir() and c.resolve() not in {o.resolve() for o in out}:
            out.append(c)
    return out


def _looks_like_media(p: Path) -> bool:
    if p.suffix.lower() in MEDIA_SUFFIXES:
        return True
    try:
        with open(p, "rb") as f:
            head = f.read(8)
    except OSError:
        return False
    return any(head.startswith(m) for m in _MAGIC)


def _walk(root: Path, max_entries: int) -> Iterator[os.DirEntry[str]]:
    stack = [root]
    seen = 0
    while stack:
        d = stack.pop()
        try:
            with os.scandir(d) as it:
                for entry in it:
                    seen += 1
                    if seen > max_entries:
                        log.warning("scan_for_media: stopped after %d entries under %s", max_entries, root)
                        return
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(Path(entry.path))
                        elif entry.is_file(follow_symlinks=False):
                            yield entry
                    except OSError:
                        continue
        except OSError:
            continue


def scan_for_media(paths: Iterable[str | os.PathLike[str]] | None, since_ns: int, *,
                   media_only: bool = True, slack_ns: int = 20_000_000, max_entries: int = 500_000) -> list[Path]:
    """Find files created or modified since ``since_ns`` that hold (or may hold) media.

    Args:
        paths: Folders (searched recursively, symlinks not followed) or files; ``None`` for
            :func:`default_write_areas`.
        since_ns: Wall-clock time (``time.time_ns()``) taken before the run.
        media_only: Report only image/audio/array/temp files (by suffix or magic bytes); False reports
            every new file.
        slack_ns: Tolerance for file-system timestamps, which come from a coarse kernel clock that can
            lag ``time.time_ns()`` by a few milliseconds.
        max_entries: Stop walking a folder after this many entries.

    Returns:
        Sorted paths of the files found.
    """
    roots = default_write_areas() if paths is None else [Path(p) for p in paths]
    limit = since_ns - slack_ns
    found: set[Path] = set()
    for root in roots:
        if root.is_file():
            entries: Iterable[Any] = [root]
        elif root.is_dir():
            entries = _walk(root, max_entries)
        else:
            continue
        for e in entries:
            try:
                st = e.stat(follow_symlinks=False) if isinstance(e, os.DirEntry) else e.stat()
            except OSError:
                continue
            if max(st.st_mtime_ns, st.st_ctime_ns) < limit:
                continue
            p = Path(e.path) if isinstance(e, os.DirEntry) else Path(e)
            if not media_only or _looks_like_media(p):
                found.add(p)
    return sorted(found)

