"""Which bundled device profile fits this machine (``"auto"``): device tree, ``/proc/cpuinfo``, CPU architecture.

Kept apart from profile validation (:mod:`affectlite.options`, :mod:`affectlite.profiles`): this module
only decides, it reads files only when :func:`detect_device` is called (never at import) and imports nothing
of affectlite.
"""

from __future__ import annotations

import platform
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Detection", "detect_device"]

_ARM_PARTS = {
    "0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55", "0xd07": "Cortex-A57",
    "0xd08": "Cortex-A72", "0xd09": "Cortex-A73", "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76",
    "0xd0c": "Neoverse-N1", "0xd0d": "Cortex-A77", "0xd41": "Cortex-A78", "0xd42": "Cortex-A78AE",
    "0xd4b": "Cortex-A78C", "0xd40": "Neoverse-V1", "0xd49": "Neoverse-N2", "0x004": "Carmel",
}


@dataclass(frozen=True)
class Detection:
    """What :func:`detect_device` found.

    Attributes:
        profile: The chosen profile name.
        reason: Why, in words.
        model: Device-tree (or cpuinfo) model string, if any.
        machine: CPU architecture (``aarch64``, ``x86_64``...).
        cpu: CPU description from ``/proc/cpuinfo`` (``4 x Cortex-A76``), if known.
        warnings: Things the user should know (32-bit OS, unsupported board).
    """

    profile: str
    reason: str
    model: str | None
    machine: str
    cpu: str | None
    warnings: tuple[str, ...] = ()


def _read_text(path: Path) -> str | None:
    try:
        return path.read_bytes().replace(b"\x00", b"\n").decode("utf-8", "replace").strip()
    except OSError:
        return None


def _cpuinfo(root: Path) -> tuple[dict[str, str], list[str], str | None]:
    """(first value of each key, CPU part ids per core, machine guess) from ``/proc/cpuinfo``."""
    text = _read_text(root / "proc/cpuinfo") or ""
    first: dict[str, str] = {}
    parts: list[str] = []
    for line in text.splitlines():
        key, sep, val = line.partition(":")
        if not sep:
            continue
        key, val = key.strip(), val.strip()
        first.setdefault(key, val)
        if key == "CPU part":
            parts.append(val.lower())
    guess = None
    if first.get("CPU architecture") == "8":
        guess = "aarch64"
    elif first.get("CPU architecture") in ("7", "6"):
        guess = f"armv{first['CPU architecture']}l"
    elif "vendor_id" in first or " lm " in f" {first.get('flags', '')} ":
        guess = "x86_64"
    return first, parts, guess


def _describe_cpu(first: Mapping[str, str], parts: Sequence[str]) -> str | None:
    if "model name" in first and "CPU part" not in first:
        return first["model name"]
    if parts:
        counts: dict[str, int] = {}
        for p in parts:
            counts[p] = counts.get(p, 0) + 1
        return " + ".join(f"{n} x {_ARM_PARTS.get(p, 'ARM part ' + p)}" for p, n in counts.items())
    return first.get("model name") or first.get("Hardware")


def _match_board(model: str) -> tuple[str, str, list[str]] | None:
    """(profile, why, warnings) for a known board model string."""
    m = model.lower()
    if "raspberry pi" in m:
        if any(s in m for s in ("raspberry pi 5", "compute module 5", "raspberry pi 500")):
            return "rpi5", "a Raspberry Pi 5 family board", []
        if any(s in m for s in ("raspberry pi 4", "compute module 4", "raspberry pi 400")):
            return "rpi4", "a Raspberry Pi 4 family board", []
        if "zero 2" in m:
            return "rpi-zero2w", "a Raspberry Pi Zero 2 W", []
        if "raspberry pi 3" in m or "compute module 3" in m:
            return ("rpi-zero2w", "a Raspberry Pi 3 (quad Cortex-A53 like the Zero 2 W: the conservative "
                    "rpi-zero2w profile fits)", [])
        return ("rpi-zero2w", "an older Raspberry Pi", [
            f"{model!r} is not a supported board: Pi 1, Pi 2 and Zero/Zero W cannot run a 64-bit OS, which "
            "affectlite needs; use a Pi Zero 2 W, 3, 4 or 5 with Raspberry Pi OS (64-bit)"])
    if "jetson" in m or "nvidia" in m:
        if "orin" in m:
            extra = [] if "orin nano" in m else [f"{model!r} is an Orin module other than the Orin Nano; the "
                                                 "jetson-orin-nano profile is a conservative fit"]
            return "jetson-orin-nano", "an NVIDIA Jetson Orin board", extra
        if "nano" in m:
            return "jetson-nano", "an NVIDIA Jetson Nano", [
                "Jetson Nano runs JetPack 4 (Ubuntu 18.04, Python 3.6): the affectlite runtime needs Python "
                ">= 3.10, so it is unsupported there except inside a container with a newer Python "
                "(see firmware_configs/jetson/README.md)"]
        return "arm64", "an NVIDIA Jetson other than Nano/Orin", [
            f"{model!r}: only Jetson Orin (JetPack 6, Python 3.10) is supported; Xavier/TX2 ship Python 3.8/3.6 "
            "(use a container with Python >= 3.10); using the generic arm64 profile"]
    return None


def detect_device(root: str = "/", *, machine: str | None = None) -> Detection:
    """Pick the profile for this device from the device tree, ``/proc/cpuinfo`` and the CPU architecture.

    Reads files only when called (never at import).

    Args:
        root: Filesystem root to read ``proc/device-tree/model`` and ``proc/cpuinfo`` under (tests pass a
            fake tree).
        machine: CPU architecture; default ``platform.machine()`` for the real root, or a guess from the
            fake tree's cpuinfo.

    Returns:
        The :class:`Detection`; it always names a bundled profile (with warnings when the fit is poor).
    """
    r = Path(root)
    first, parts, guess = _cpuinfo(r)
    real_root = Path(root).resolve() == Path("/")
    mach = machine or (platform.machine() if real_root or guess is None else guess)
    warnings: list[str] = []
    if real_root and mach.lower() in ("aarch64", "arm64", "x86_64", "amd64") and struct.calcsize("P") == 4:
        warnings.append(f"the kernel is 64-bit ({mach}) but this Python is 32-bit: install the 64-bit OS "
                        "(Raspberry Pi OS 64-bit); affectlite's wheels are 64-bit only")
    cpu = _describe_cpu(first, parts)

    candidates = [("proc/device-tree/model", _read_text(r / "proc/device-tree/model")),
                  ("sys/firmware/devicetree/base/model", _read_text(r / "sys/firmware/devicetree/base/model")),
                  ("proc/cpuinfo Model", first.get("Model"))]
    for where, model in candidates:
        if not model:
            continue
        hit = _match_board(model)
        if hit:
            prof, why, warn = hit
            return Detection(prof, f"/{where} is {model!r}: {why}", model, mach, cpu, tuple(warnings + warn))
    model = next((m for _, m in candidates if m), None)
    compat = _read_text(r / "proc/device-tree/compatible") or ""
    if "nvidia,p3450" in compat or "nvidia,jetson-nano" in compat:
        hit = _match_board("NVIDIA Jetson Nano")
    elif "nvidia,p3767" in compat or "nvidia,tegra234" in compat:
        hit = _match_board("NVIDIA Jetson Orin Nano")
    elif "brcm,bcm2712" in compat:
        hit = _match_board("Raspberry Pi 5")
    elif "brcm,bcm2711" in compat:
        hit = _match_board("Raspberry Pi 4")
    else:
        hit = None
    if hit:
        prof, why, warn = hit
        first_compat = compat.split()[0] if compat.split() else compat
        return Detection(prof, f"/proc/device-tree/compatible is {first_compat!r}: {why}", model, mach, cpu,
                         tuple(warnings + warn))

    m = mach.lower()
    seen = f"model {model!r}, " if model else "no known board in /proc/device-tree, "
    if m in ("x86_64", "amd64"):
        return Detection("x86_64", f"{seen}CPU architecture {mach}: generic x86-64", model, mach, cpu,
                         tuple(warnings))
    if m in ("aarch64", "arm64") or m.startswith("armv8") or m.startswith("arm64"):
        return Detection("arm64", f"{seen}CPU architecture {mach}: generic 64-bit ARM", model, mach, cpu,
                         tuple(warnings))
    if m.startswith("arm"):
        warnings.append(f"CPU architecture {mach} is 32-bit ARM: affectlite needs a 64-bit OS (aarch64)")
        return Detection("arm64", f"{seen}CPU architecture {mach}: closest is generic arm64", model, mach, cpu,
                         tuple(warnings))
    warnings.append(f"CPU architecture {mach!r} has no profile: the generic x86_64 profile is a guess; write "
                    "your own profile (see firmware_configs/)")
    return Detection("x86_64", f"{seen}CPU architecture {mach}: no matching profile, using generic x86_64",
                     model, mach, cpu, tuple(warnings))

