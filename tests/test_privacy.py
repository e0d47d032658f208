"""Privacy: offline guard, deployment gate, consent, sensing indicators and the media scan."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from affectlite.errors import (
    AffectliteError,
    ConfigError,
    ConsentRequiredError,
    DeploymentRefusedError,
    NetworkBlockedError,
    PrivacyError,
)
from affectlite.options import PrivacyOptions
from affectlite.privacy import (
    DEPLOYMENT_CONTEXTS,
    ConsentToken,
    FileFlag,
    GpioLed,
    OfflineGuard,
    SensingIndicator,
    SensingNotifier,
    check_consent,
    check_deployment,
    guard_for,
    is_loopback_host,
    offline_guard_active,
    preflight,
    scan_for_media,
)

SDK = str(Path(__file__).resolve().parents[1] / "sdk")
TEST_NET = "192.0.2.1"  # RFC 5737 documentation address: never routed


@pytest.fixture
def loopback_server():
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    yield srv
    srv.close()


# ---------------------------------------------------------------------------------------------- guard


def test_guard_blocks_non_loopback_connect_and_reports(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[str] = []
    guard = OfflineGuard(on_block=seen.append)
    with caplog.at_level(logging.WARNING, logger="affectlite.privacy"), guard:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        with pytest.raises(NetworkBlockedError, match=r"socket\.connect.*192\.0\.2\.1"):
            s.connect((TEST_NET, 80))
        with pytest.raises(NetworkBlockedError):
            s.connect_ex((TEST_NET, 443))
        s.close()
    assert guard.blocked_count == 2
    assert len(seen) == 2 and all("offline_guard" in m for m in seen)
    assert guard.last_blocked == seen[-1]
    assert sum("offline guard blocked" in r.getMessage() for r in caplog.records) == 2
    assert not guard.active and not offline_guard_active()


def test_guard_blocks_dns_udp_bind_and_ipv6() -> None:
    guard = OfflineGuard()
    with guard:
        with pytest.raises(NetworkBlockedError, match="getaddrinfo"):
            socket.getaddrinfo("example.com", 80)
        with pytest.raises(NetworkBlockedError):
            socket.gethostbyname("example.com")
        with pytest.raises(NetworkBlockedError):  # a numeric address is still an intent to leave
            socket.getaddrinfo(TEST_NET, 80)
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with pytest.raises(NetworkBlockedError, match="sendto"):
            u.sendto(b"frame", (TEST_NET, 9999))
        with pytest.raises(NetworkBlockedError, match="bind"):
            u.bind(("0.0.0.0", 0))
        with pytest.raises(NetworkBlockedError, match="bind"):
            u.bind(("", 0))
        u.close()
        if socket.has_ipv6:
            s6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            with pytest.raises(NetworkBlockedError):
                s6.connect(("2001:db8::1", 80))
            s6.close()
    assert guard.blocked_count >= 6


def test_high_level_clients_fail_cleanly_as_oserror() -> None:
    with OfflineGuard() as guard:
        with pytest.raises(urllib.error.URLError) as ei:
            urllib.request.urlopen(f"http://{TEST_NET}/upload", timeout=2)
        assert isinstance(ei.value.reason, NetworkBlockedError)
        with pytest.raises(OSError):
            socket.create_connection(("example.org", 443), timeout=2)
    assert guard.blocked_count == 2
    assert issubclass(NetworkBlockedError, OSError) and issubclass(NetworkBlockedError, AffectliteError)


def test_loopback_allowed_by_default_and_data_flows(loopback_server: socket.socket) -> None:
    port = loopback_server.getsockname()[1]
    with OfflineGuard() as guard:
        c = socket.create_connection(("127.0.0.1", port), timeout=2)
        conn, _ = loopback_server.accept()
        c.sendall(b"hello")
        assert conn.recv(5) == b"hello"
        c.close()
        conn.close()
        c2 = socket.create_connection(("localhost", port), timeout=2)  # name lookup of localhost is fine
        c2.close()
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("127.0.0.1", 0))
        u.close()
    assert guard.blocked_count == 0


def test_loopback_refused_when_not_allowed(loopback_server: socket.socket) -> None:
    port = loopback_server.getsockname()[1]
    with OfflineGuard(allow_loopback=False) as guard:
        s = socket.socket()
        with pytest.raises(NetworkBlockedError, match="allow_loopback"):
            s.connect(("127.0.0.1", port))
        s.close()
    assert guard.blocked_count == 1


def test_unix_sockets_always_allowed(tmp_path: Path) -> None:
    path = str(tmp_path / "ipc.sock")
    with OfflineGuard(allow_loopback=False) as guard:
        a, b = socket.socketpair()
        a.sendall(b"x")
        assert b.recv(1) == b"x"
        a.close()
        b.close()
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(path)
        srv.listen(1)
        cli = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        cli.connect(path)
        cli.close()
        srv.close()
    assert guard.blocked_count == 0


def test_guard_inactive_after_exit_and_reentrant() -> None:
    guard = OfflineGuard(allow_loopback=False)
    with guard:
        with guard:
            assert guard.active
        assert guard.active, "inner exit must not deactivate an outer with-block"
        with pytest.raises(NetworkBlockedError):
            socket.getaddrinfo(TEST_NET, 80)
    assert not guard.active
    # numeric lookup: no traffic, only proves the hook no longer interferes
    assert socket.getaddrinfo(TEST_NET, 80)
    guard.stop()  # extra stop is a no-op
    assert not offline_guard_active()


def test_two_guards_strictest_wins_and_both_report(loopback_server: socket.socket) -> None:
    port = loopback_server.getsockname()[1]
    lenient, strict = OfflineGuard(allow_loopback=True), OfflineGuard(allow_loopback=False)
    with lenient:
        with strict:
            s = socket.socket()
            with pytest.raises(NetworkBlockedError):
                s.connect(("127.0.0.1", port))
            s.close()
        s = socket.socket()
        s.connect(("127.0.0.1", port))  # only the lenient one left
        s.close()
    assert strict.blocked_count == 1 and lenient.blocked_count == 1


def test_guard_blocks_in_other_threads_and_survives_bad_callback() -> None:
    def bad(_msg: str) -> None:
        raise RuntimeError("callback bug")

    errors: list[BaseException] = []

    def worker() -> None:
        try:
            socket.getaddrinfo("telemetry.example.net", 443)
        except BaseException as e:
            errors.append(e)

    with OfflineGuard(on_block=bad) as guard:
        t = threading.Thread(target=worker)
        t.start()
        t.join(5)
    assert len(errors) == 1 and isinstance(errors[0], NetworkBlockedError)
    assert guard.blocked_count == 1


def test_logging_handler_that_connects_does_not_recurse() -> None:
    class PhoneHome(logging.Handler):
        def __init__(self) -> None:
            super().__init__()
            self.failures = 0

        def emit(self, record: logging.LogRecord) -> None:
            try:
                socket.create_connection((TEST_NET, 514), timeout=1)
            except NetworkBlockedError:
                self.failures += 1

    h = PhoneHome()
    logger = logging.getLogger("affectlite.privacy")
    logger.addHandler(h)
    try:
        with OfflineGuard() as guard, pytest.raises(NetworkBlockedError):
            socket.getaddrinfo("example.com", 80)
    finally:
        logger.removeHandler(h)
    assert h.failures == 1  # the handler's own attempt was blocked too, but not reported recursively
    assert guard.blocked_count == 1


def test_guard_for_options() -> None:
    g = guard_for(PrivacyOptions(allow_loopback=False))
    assert isinstance(g, OfflineGuard) and not g.allow_loopback
    off = guard_for(PrivacyOptions(offline_guard=False))
    assert not isinstance(off, OfflineGuard)
    with off:
        assert not offline_guard_active()


def test_guard_in_fresh_process_blocks_and_counts() -> None:
    code = textwrap.dedent(f"""
        import socket
        from affectlite.privacy import OfflineGuard
        from affectlite.errors import NetworkBlockedError
        g = OfflineGuard()
        with g:
            for host in ("{TEST_NET}", "example.com"):
                try:
                    socket.create_connection((host, 80), timeout=1)
                except NetworkBlockedError:
                    pass
        print("blocked", g.blocked_count)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": SDK})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "blocked 2"
    assert "offline guard blocked" in out.stderr  # logging.lastResort prints warnings


@pytest.mark.parametrize(("host", "expected"), [
    ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("localhost", True), ("LOCALHOST.", True),
    ("app.localhost", True), ("::ffff:127.0.0.1", True), (b"127.0.0.1", True),
    ("", False), ("0.0.0.0", False), ("::", False), ("192.168.1.10", False), ("10.0.0.1", False),
    ("example.com", False), ("localhost.example.com", False), ("<broadcast>", False), (None, False), (80, False),
])
def test_is_loopback_host(host: object, expected: bool) -> None:
    assert is_loopback_host(host) is expected


# ---------------------------------------------------------------------------------------------- deployment


@pytest.mark.parametrize("ctx", [c for c in DEPLOYMENT_CONTEXTS if c not in ("workplace", "education")])
def test_unrestricted_contexts_start(ctx: str) -> None:
    check_deployment(PrivacyOptions(deployment_context=ctx))


@pytest.mark.parametrize("ctx", ["workplace", "education"])
@pytest.mark.parametrize("purpose", [None, "", "marketing: measure engagement of staff", "productivity",
                                     "medical:", "safety: x", "medicalcheck of staff", "medical stress study"])
def test_restricted_contexts_refused_without_medical_or_safety_purpose(ctx: str, purpose: str | None) -> None:
    with pytest.raises(DeploymentRefusedError) as ei:
        check_deployment(PrivacyOptions(deployment_context=ctx, declared_purpose=purpose))
    msg = str(ei.value)
    assert "Art. 5(1)(f)" in msg and ctx in msg
    assert "'medical: <what it is for>'" in msg and "declared_purpose" in msg
    assert isinstance(ei.value, PrivacyError)


@pytest.mark.parametrize("purpose", ["medical: pain assessment for non-verbal patients",
                                     "Safety: drowsiness alert for forklift drivers",
                                     "  safety :  fatigue warning for crane operators "])
@pytest.mark.parametrize("ctx", ["workplace", "education"])
def test_restricted_contexts_accept_declared_purpose(ctx: str, purpose: str) -> None:
    check_deployment(PrivacyOptions(deployment_context=ctx, declared_purpose=purpose))


def test_unknown_context_is_config_error() -> None:
    with pytest.raises(ConfigError, match=r"deployment_context: .office. is not allowed; choose one of: public"):
        check_deployment(PrivacyOptions(deployment_context="office"))


# ---------------------------------------------------------------------------------------------- consent


def test_consent_token_grant_and_check() -> None:
    t0 = time.time()
    tok = ConsentToken.grant("show how you feel about the exhibit", "visitor-session-42", valid_for_s=60)
    assert t0 <= tok.granted_at <= time.time() and tok.expires_at is not None
    assert tok.scope == ("camera", "microphone", "text")
    with pytest.raises(AttributeError):
        tok.purpose = "other"  # type: ignore[misc]
    opts = PrivacyOptions(require_consent=True)
    check_consent(opts, tok, modalities=("camera", "microphone"))
    with pytest.raises(ConsentRequiredError, match="expired"):
        check_consent(opts, tok, now=tok.granted_at + 61)
    cam_only = ConsentToken.grant("kiosk", "operator", scope=("camera",))
    with pytest.raises(ConsentRequiredError, match="microphone"):
        check_consent(opts, cam_only, modalities=("camera", "microphone"))


def test_consent_required_but_missing() -> None:
    with pytest.raises(ConsentRequiredError, match=r"ConsentToken\.grant"):
        check_consent(PrivacyOptions(require_consent=True), None)
    check_consent(PrivacyOptions(require_consent=False), None)
    with pytest.raises(ConsentRequiredError, match="must be"):
        check_consent(PrivacyOptions(require_consent=True), "yes")  # type: ignore[arg-type]


@pytest.mark.parametrize("kw", [dict(purpose="", granted_by="x"), dict(purpose="p", granted_by="  "),
                                dict(purpose="p", granted_by="x", scope=("face",)),
                                dict(purpose="p", granted_by="x", scope=()),
                                dict(purpose="p", granted_by="x", valid_for_s=0)])
def test_consent_grant_validates(kw: dict) -> None:
    with pytest.raises(ConfigError):
        ConsentToken.grant(**kw)


def test_preflight_runs_both_checks() -> None:
    with pytest.raises(DeploymentRefusedError):
        preflight(PrivacyOptions(deployment_context="education", require_consent=True),
                  ConsentToken.grant("p", "x"))
    with pytest.raises(ConsentRequiredError):
        preflight(PrivacyOptions(deployment_context="kiosk", require_consent=True))
    preflight(PrivacyOptions(deployment_context="kiosk", require_consent=True), ConsentToken.grant("p", "x"),
              modalities=("camera",))


# ---------------------------------------------------------------------------------------------- sensing


def test_file_flag_is_atomic_and_readable(tmp_path: Path) -> None:
    flag = FileFlag(tmp_path / "banner" / "sensing")
    assert flag.read() is None
    assert isinstance(flag, SensingIndicator)
    flag(True)
    assert (tmp_path / "banner" / "sensing").read_text() == "1\n" and flag.read() is True
    flag(False)
    assert flag.read() is False
    assert sorted(p.name for p in (tmp_path / "banner").iterdir()) == ["sensing"]  # no temp files left


def test_sensing_notifier_fires_once_per_transition() -> None:
    calls: list[bool] = []
    n = SensingNotifier(calls.append)
    n.deactivate()  # not active: nothing
    n.activate()
    n.activate()
    assert n.active
    n.deactivate()
    n.deactivate()
    assert calls == [True, False] and not n.active


def test_sensing_notifier_refuses_when_indicator_fails_to_switch_on() -> None:
    def broken(active: bool) -> None:
        raise OSError("GPIO busy")

    n = SensingNotifier(broken)
    with pytest.raises(PrivacyError, match="GPIO busy"):
        n.activate()
    assert not n.active
    n.deactivate()  # nothing to do, no error


def test_sensing_notifier_off_errors_are_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    state: list[bool] = []

    def flaky(active: bool) -> None:
        if not active:
            raise OSError("flag dir gone")
        state.append(active)

    n = SensingNotifier(flaky)
    n.activate()
    with caplog.at_level(logging.ERROR, logger="affectlite.privacy"):
        n.deactivate()
    assert not n.active and "switch off" in caplog.text


def test_gpio_led_without_gpiozero_names_the_install() -> None:
    try:
        import gpiozero  # noqa: F401
    except ImportError:
        led = GpioLed(17)
        with pytest.raises(PrivacyError, match="pip install gpiozero"):
            led(True)
        led.close()  # never opened: no error
    else:
        pytest.skip("gpiozero is installed; the missing-library message cannot be tested here")


# ---------------------------------------------------------------------------------------------- media scan


def test_scan_for_media_finds_new_media_only(tmp_path: Path) -> None:
    old = tmp_path / "old.jpg"
    old.write_bytes(b"\xff\xd8\xff\xe0old")  # written before the run: not reported
    time.sleep(0.1)  # more than the default timestamp slack
    since = time.time_ns()
    (tmp_path / "sub" / "deep").mkdir(parents=True)
    np.save(tmp_path / "sub" / "deep" / "frame.npy", np.zeros((4, 4), np.uint8))
    (tmp_path / "clip.wav").write_bytes(b"RIFF....WAVEfmt ")
    (tmp_path / "noext").write_bytes(b"\x89PNG\r\n\x1a\n....")
    (tmp_path / "x.tmp").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("just text")
    (tmp_path / "events.db").write_bytes(b"SQLite format 3\x00")
    found = scan_for_media([tmp_path], since)
    names = sorted(p.name for p in found)
    assert names == ["clip.wav", "frame.npy", "noext", "x.tmp"]
    everything = scan_for_media([tmp_path], since, media_only=False)
    assert {p.name for p in everything} == {*names, "notes.txt", "events.db"}
    assert scan_for_media([tmp_path / "missing"], since) == []
    assert scan_for_media([tmp_path / "clip.wav"], since) == [tmp_path / "clip.wav"]


def test_scan_for_media_default_areas_include_cwd_and_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TMPDIR", str(tmp_path / "t"))
    (tmp_path / "t").mkdir()
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    since = time.time_ns()
    (tmp_path / "leak.png").write_bytes(b"\x89PNG")
    (tmp_path / "t" / "leak2.flac").write_bytes(b"fLaC")
    found = scan_for_media([tmp_path, tmp_path / "t"], since)
    assert {p.name for p in found} == {"leak.png", "leak2.flac"}
    from affectlite.privacy import default_write_areas

    areas = {p.resolve() for p in default_write_areas()}
    assert tmp_path.resolve() in areas and (tmp_path / "t").resolve() in areas
