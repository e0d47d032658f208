"""Deployment files: shell scripts (shellcheck), the systemd unit (systemd-analyze), first-boot configs,
the installer's refusals, and the opt-in end-to-end chroot and qemu arm64 checks."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
FW = REPO / "firmware_configs"
UNIT = FW / "systemd" / "affectlite.service"
DROPINS = FW / "systemd" / "dropins"
INSTALL = FW / "raspberrypi" / "install.sh"

SHELL_SCRIPTS = sorted({*FW.rglob("*.sh"), *(REPO / "scripts").glob("*.sh")})


def unit_settings(text: str) -> dict[str, list[str]]:
    """A systemd unit as {"Section.Key": [values...]} (keys may repeat)."""
    out: dict[str, list[str]] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return out


# ------------------------------------------------------------------------------------------ shell


def test_every_shell_script_is_executable_with_a_shebang() -> None:
    assert len(SHELL_SCRIPTS) >= 9
    for p in SHELL_SCRIPTS:
        first = p.read_text(encoding="utf-8").splitlines()[0]
        assert first.startswith("#!/"), f"{p} has no shebang"
        if p.name != "lib_chroot.sh":  # sourced, not run
            assert p.stat().st_mode & stat.S_IXUSR, f"{p} is not executable"


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed (apt install shellcheck)")
@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: str(p.relative_to(REPO)))
def test_shellcheck_clean(script: Path) -> None:
    r = subprocess.run(["shellcheck", "-x", "--severity=style", str(script)], capture_output=True, text=True,
                       cwd=script.parent)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed (apt install shellcheck)")
def test_shellcheck_catches_a_real_mistake(tmp_path: Path) -> None:
    """The check above can fail: an unquoted variable in rm is reported."""
    bad = tmp_path / "bad.sh"
    bad.write_text('#!/bin/bash\ndir=$1\nrm -rf $dir/*\n')
    assert subprocess.run(["shellcheck", str(bad)], capture_output=True).returncode != 0


def fake_bin(tmp_path: Path, **cmds: str) -> dict[str, str]:
    """PATH with stand-ins for some commands (so the installer never touches this machine)."""
    d = tmp_path / "bin"
    d.mkdir()
    for name, body in cmds.items():
        f = d / name
        f.write_text(f"#!/bin/sh\n{body}\n")
        f.chmod(0o755)
    return {"PATH": f"{d}:/usr/bin:/bin", "LANG": "C.UTF-8"}


def run_install(tmp_path: Path, *args: str, **cmds: str) -> subprocess.CompletedProcess[str]:
    env = fake_bin(tmp_path, **cmds)
    return subprocess.run(["bash", str(INSTALL), *args], capture_output=True, text=True, env=env, timeout=60)


def test_installer_help_and_argument_errors(tmp_path: Path) -> None:
    r = run_install(tmp_path, "--help")
    assert r.returncode == 0
    for opt in ("--profile", "--source", "--wheelhouse", "--network", "--app", "--no-start", "--no-apt"):
        assert opt in r.stdout
    r = subprocess.run(["bash", str(INSTALL), "--network", "wide"], capture_output=True, text=True)
    assert r.returncode == 1 and "--network must be none or loopback, got 'wide'" in r.stderr
    r = subprocess.run(["bash", str(INSTALL), "--frobnicate"], capture_output=True, text=True)
    assert r.returncode == 1 and "unknown option: --frobnicate" in r.stderr
    r = subprocess.run(["bash", str(INSTALL), "--prefix", "relative/dir"], capture_output=True, text=True)
    assert r.returncode == 1 and "must be an absolute path" in r.stderr


def test_installer_refuses_non_root(tmp_path: Path) -> None:
    r = run_install(tmp_path, id="echo 1000", dpkg="echo arm64")
    assert r.returncode == 1 and "run as root" in r.stderr


@pytest.mark.parametrize("arch", ["armhf", "armel"])
def test_installer_refuses_32_bit_os(tmp_path: Path, arch: str) -> None:
    # `id` says root and `dpkg` says 32-bit: the script must stop before touching anything.
    r = run_install(tmp_path, id="echo 0", dpkg=f"echo {arch}", **{"apt-get": "exit 99", "useradd": "exit 99"})
    assert r.returncode == 1
    assert f"this is a 32-bit OS ({arch})" in r.stderr and "Raspberry Pi OS (64-bit)" in r.stderr


def test_uninstall_help_and_bad_prefix() -> None:
    un = FW / "raspberrypi" / "uninstall.sh"
    r = subprocess.run(["bash", str(un), "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--purge" in r.stdout
    r = subprocess.run(["bash", str(un), "--prefix", "/"], capture_output=True, text=True)
    assert r.returncode == 1 and "absolute path other than /" in r.stderr


# ------------------------------------------------------------------------------------------ systemd


def test_unit_is_hardened_as_promised() -> None:
    s = unit_settings(UNIT.read_text(encoding="utf-8"))
    expect = {
        "Service.User": ["affectlite"], "Service.SupplementaryGroups": ["video audio"],
        "Service.PrivateNetwork": ["yes"], "Service.IPAddressDeny": ["any"], "Service.ProtectSystem": ["strict"],
        "Service.NoNewPrivileges": ["yes"], "Service.PrivateTmp": ["yes"], "Service.Restart": ["on-failure"],
        "Service.ProtectHome": ["yes"], "Service.CapabilityBoundingSet": [""], "Service.DevicePolicy": ["closed"],
        "Install.WantedBy": ["multi-user.target"], "Service.KillSignal": ["SIGINT"],
    }
    for key, value in expect.items():
        assert s.get(key) == value, f"{key} = {s.get(key)}"
    assert {"char-video4linux rw", "char-alsa rw"} <= set(s["Service.DeviceAllow"])
    assert s["Service.RestartSec"] and s["Unit.StartLimitIntervalSec"] and s["Unit.StartLimitBurst"]
    assert "AF_INET" not in s["Service.RestrictAddressFamilies"][0]
    assert s["Service.ExecStart"] == ["/opt/affectlite/venv/bin/affectlite run --profile ${AFFECTLITE_PROFILE} "
                                      "$AFFECTLITE_ARGS"]
    assert "affectlite.profiles env --profile ${AFFECTLITE_PROFILE} --output /run/affectlite/profile.env" in \
        s["Service.ExecStartPre"][0]
    # the user's settings file is read after the generated profile env, so it wins
    assert s["Service.EnvironmentFile"] == ["-/run/affectlite/profile.env", "-/etc/affectlite/affectlite.env"]
    loop = unit_settings((DROPINS / "network-loopback.conf").read_text(encoding="utf-8"))
    assert loop["Service.PrivateNetwork"] == ["no"] and loop["Service.IPAddressAllow"] == ["localhost"]
    assert loop["Service.IPAddressDeny"] == ["any"]


def render_unit(tmp_path: Path) -> Path:
    """The unit as install.sh renders it for --prefix tmp_path/opt, with stand-in executables."""
    prefix = tmp_path / "opt"
    for exe in ("affectlite", "python"):
        f = prefix / "venv" / "bin" / exe
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("#!/bin/sh\n")
        f.chmod(0o755)
    unit_dir = tmp_path / "units"
    unit_dir.mkdir()
    out = unit_dir / "affectlite.service"
    out.write_text(UNIT.read_text(encoding="utf-8").replace("/opt/affectlite", str(prefix)))
    return out


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemd-analyze", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "SYSTEMD_LOG_COLOR": "0"})


needs_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                   reason="systemd-analyze not installed (apt install systemd)")


@needs_analyze
def test_systemd_analyze_verify_unit(tmp_path: Path) -> None:
    unit = render_unit(tmp_path)
    r = analyze("verify", str(unit))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "" and r.stderr.strip() == "", r.stdout + r.stderr


@needs_analyze
@pytest.mark.parametrize("dropin", sorted(p.name for p in DROPINS.glob("*.conf")))
def test_systemd_analyze_verify_with_dropin(tmp_path: Path, dropin: str) -> None:
    unit = render_unit(tmp_path)
    d = unit.parent / "affectlite.service.d"
    d.mkdir()
    shutil.copy(DROPINS / dropin, d / dropin)
    r = analyze("verify", str(unit))
    assert r.returncode == 0, r.stderr
    complaints = [ln for ln in (r.stdout + r.stderr).splitlines() if ln.strip()]
    if dropin == "restart-backoff.conf":
        # RestartSteps/RestartMaxDelaySec are new in systemd 254; install.sh only installs this drop-in there
        version = int(re.findall(r"\d+", subprocess.run(["systemctl", "--version"], capture_output=True,
                                                         text=True).stdout)[0])
        if version < 254:
            complaints = [c for c in complaints if "RestartSteps" not in c and "RestartMaxDelaySec" not in c]
    assert not complaints, complaints


@needs_analyze
def test_systemd_analyze_verify_catches_a_typo(tmp_path: Path) -> None:
    unit = render_unit(tmp_path)
    unit.write_text(unit.read_text().replace("PrivateNetwork=yes", "PrivateNetwrk=yes"))
    r = analyze("verify", str(unit))
    assert "PrivateNetwrk" in r.stdout + r.stderr


@needs_analyze
def test_systemd_security_exposure_is_low(tmp_path: Path) -> None:
    unit = render_unit(tmp_path)
    r = analyze("security", "--offline=yes", str(unit))
    if r.returncode != 0 and "offline" in r.stderr:
        pytest.skip("systemd-analyze security --offline needs systemd >= 250")
    m = re.search(r"Overall exposure level for affectlite.service: ([\d.]+)", r.stdout)
    assert m, r.stdout[-500:] + r.stderr
    assert float(m.group(1)) <= 1.5, r.stdout


# ------------------------------------------------------------------------------------------ first boot


def test_cloud_init_user_data() -> None:
    text = (FW / "raspberrypi" / "cloud-init" / "user-data").read_text(encoding="utf-8")
    assert text.startswith("#cloud-config\n")
    data = yaml.safe_load(text)
    assert set(data) <= {"hostname", "write_files", "runcmd", "users", "ssh_pwauth", "timezone", "packages"}
    env = next(f for f in data["write_files"] if f["path"] == "/etc/affectlite/affectlite.env")
    assert "AFFECTLITE_PROFILE=auto" in env["content"]
    cmd = data["runcmd"][0]
    assert cmd[:2] == ["bash", "-c"] and "affectlite/raspberrypi/firstboot-install.sh" in cmd[2]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_firstrun_writes_a_valid_firstboot_unit(tmp_path: Path) -> None:
    text = (FW / "raspberrypi" / "firstrun.sh").read_text(encoding="utf-8")
    block = text[text.index("# BEGIN affectlite"):text.index("# END affectlite")]
    unit = block[block.index("<<UNIT\n") + 7:block.index("\nUNIT\n")]
    boot = tmp_path / "boot"
    script = boot / "affectlite" / "raspberrypi" / "firstboot-install.sh"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\n")
    f = tmp_path / "affectlite-firstboot.service"
    f.write_text(unit.replace("$BOOT", str(boot)))
    r = analyze("verify", str(f))
    assert r.returncode == 0 and not (r.stdout + r.stderr).strip(), r.stdout + r.stderr
    assert "After=network-online.target" in unit and "ConditionPathExists=!/var/lib/affectlite-firstboot.done" in unit


def test_pi_gen_stage_layout() -> None:
    stage = FW / "raspberrypi" / "pi-gen" / "stage-affectlite"
    assert (stage / "prerun.sh").is_file() and (stage / "EXPORT_IMAGE").is_file()
    sub = stage / "00-affectlite"
    pkgs = (sub / "00-packages-nr").read_text().split()
    assert {"python3-picamera2", "python3-opencv", "python3-venv", "python3-pyaudio"} <= set(pkgs)
    assert "install.sh" in (sub / "02-run-chroot.sh").read_text() and "--no-start" in (sub / "02-run-chroot.sh"
                                                                                          ).read_text()
    # pi-gen runs files named NN-run.sh on the host and NN-run-chroot.sh inside the image
    assert sorted(p.name for p in sub.glob("*.sh")) == ["01-run.sh", "02-run-chroot.sh"]


# ------------------------------------------------------------------------------------------ expensive


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("AFFECTLITE_CHROOT_TEST") != "1",
                    reason="end-to-end install in a Debian chroot (~5-10 min, root, network): AFFECTLITE_CHROOT_TEST=1")
def test_install_script_end_to_end_in_chroot() -> None:
    r = subprocess.run(["bash", str(REPO / "scripts" / "chroot_install_check.sh")], capture_output=True, text=True,
                       timeout=3600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "CHROOT INSTALL CHECK: PASS" in r.stdout


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("AFFECTLITE_QEMU_TEST") != "1",
                    reason="arm64 install + model comparison under qemu (root, network; cold ~1 h on 2 busy "
                           "cores, minutes with cached roots): AFFECTLITE_QEMU_TEST=1")
def test_qemu_arm64_results_match_x86() -> None:
    models = REPO / "sdk" / "affectlite" / "models"
    if not list(models.glob("*.tflite")):
        pytest.skip("no shipped models yet")
    cmd = ["bash", str(REPO / "scripts" / "qemu_arm64_check.sh"), "--models", str(models), "--reuse", "--keep"]
    media = os.environ.get("AFFECTLITE_QEMU_MEDIA")
    if media is not None:
        cmd += ["--media", media]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=5400)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "QEMU ARM64 CHECK: PASS" in r.stdout


def _probe_report(raw: list[float], probs: dict[str, float], label: str) -> dict[str, object]:
    return {"platform": {"machine": "x"}, "errors": [],
            "models": {"face": {"backend": "litert", "runs": [[{"dtype": "int8", "scale": 0.0039, "values": raw}]]}},
            "media": {"sample.wav": {"label": label, "confidence": max(probs.values()), "timestamp_ns": 5,
                                     "probabilities": probs,
                                     "voice": {"label": label, "probabilities": probs, "latency_ms": 3.0}}}}


@pytest.mark.parametrize(("raw", "probs", "label", "ok"), [
    ([-128, 5, 127], {"happy": 0.6, "sad": 0.4}, "happy", True),        # identical
    ([-127, 6, 127], {"happy": 0.64, "sad": 0.36}, "happy", True),      # 1 step, 0.04: within tolerance
    ([-128, 8, 127], {"happy": 0.6, "sad": 0.4}, "happy", False),       # 3 int8 steps
    ([-128, 5, 127], {"happy": 0.53, "sad": 0.47}, "happy", False),     # 0.07 > tol 0.05
])
def test_model_probe_compare(tmp_path: Path, raw: list[float], probs: dict[str, float], label: str, ok: bool) -> None:
    import json

    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(_probe_report([-128, 5, 127], {"happy": 0.6, "sad": 0.4}, "happy")))
    b.write_text(json.dumps(_probe_report(raw, probs, label)))
    r = subprocess.run(["python3", str(REPO / "scripts" / "model_probe.py"), "compare", str(a), str(b)],
                       capture_output=True, text=True)
    assert (r.returncode == 0) == ok, r.stdout
    assert json.loads(r.stdout)["match"] is ok


def test_model_probe_compare_labels(tmp_path: Path) -> None:
    import json

    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(_probe_report([0], {"happy": 0.50, "sad": 0.49}, "happy")))
    b.write_text(json.dumps(_probe_report([0], {"happy": 0.49, "sad": 0.50}, "sad")))  # a near tie may flip
    cmd = ["python3", str(REPO / "scripts" / "model_probe.py"), "compare", str(a), str(b)]
    assert subprocess.run(cmd, capture_output=True).returncode == 0
    a.write_text(json.dumps(_probe_report([0], {"happy": 0.8, "sad": 0.2}, "happy")))
    b.write_text(json.dumps(_probe_report([0], {"happy": 0.8, "sad": 0.2}, "sad")))  # a clear flip may not
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 1 and "label at . happy vs sad" in r.stdout
