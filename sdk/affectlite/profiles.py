"""Device profiles: load, validate and override them, and pick the right one for this device (``"auto"``).

A profile is a YAML file whose sections are those of :class:`~affectlite.options.PipelineOptions`
(``camera``, ``audio``, ``face``, ``voice``, ``text``, ``fusion``, ``queues``, ``privacy``) plus a few
profile-only keys:

``name``, ``description``
    Informational. ``name`` defaults to the file name without ``.yaml``.
``extends``
    Another profile (a name such as ``rpi5`` or a path relative to this file) whose values this one
    starts from; mappings merge key by key, everything else is replaced.
``status``, ``status_note``
    ``supported``, ``experimental`` or ``unsupported`` and why; ``affectlite doctor`` prints both.
``env``
    Environment quirks (``OPENBLAS_CORETYPE: ARMV8``). :meth:`Profile.apply_env` sets them in
    ``os.environ`` (without replacing values the user already set) before OpenCV is imported, and
    :meth:`Profile.env_file` renders them for the systemd unit's ``EnvironmentFile``.
``interpreter``
    Defaults for every model: ``backend`` (preference), ``num_threads`` (one number, or one per model:
    ``{face: 2, voice: 1, text: 1}``) and ``delegates`` (a list, or one list per model). A key set in the
    ``face``/``voice``/``text`` section itself wins over these defaults.
``service``
    ``network: none`` (default: the systemd unit gets no network at all) or ``loopback`` (the unit may
    talk to 127.0.0.1/::1, e.g. a local dashboard or MQTT broker).

The allowed keys of the option sections are derived from the option dataclasses, so they cannot drift;
the ranges and choices of each key are listed in this module. Every problem is reported at once, each
naming the file and line, the key path, the bad value and what is allowed.

The bundled profiles are package data (``affectlite/profiles/*.yaml``, the canonical copies);
``firmware_configs/profiles/`` in the source tree holds identical copies (a test keeps them equal).
A name is looked up in the folders of ``$AFFECTLITE_PROFILE_PATH`` (``os.pathsep``-separated), then in
``/etc/affectlite/profiles``, then among the bundled profiles. Anything that looks like a path
(contains a slash or ends in ``.yaml``/``.yml``) is read as a file.

Device detection (``"auto"``) reads ``/proc/device-tree/model`` and ``/proc/cpuinfo`` only when asked,
never at import. ``python -m affectlite.profiles`` lists, shows, validates and detects profiles (the
Raspberry Pi install script uses it).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import logging
import math
import os
import platform
import re
import struct
import sys
import types
import typing
from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError, ProfileError
from .options import PipelineOptions

__all__ = [
    "Detection",
    "Profile",
    "bundled_profiles_dir",
    "describe_detection",
    "detect_device",
    "list_profiles",
    "load_profile",
    "main",
    "parse_overrides",
    "parse_profile",
    "schema_markdown",
]

_log = logging.getLogger(__name__)

#: Sections of a profile that are not option sections.
PROFILE_ONLY_KEYS: tuple[str, ...] = ("name", "description", "extends", "status", "status_note", "env",
                                      "interpreter", "service")
_STATUS = ("supported", "experimental", "unsupported")
_NETWORK = ("none", "loopback")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PROFILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_MAX_EXTENDS = 8
_MAX_PROBLEMS = 25


# --------------------------------------------------------------------------------------------- schema


@dataclass(frozen=True)
class _Range:
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def ok(self, v: float) -> bool:
        if self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo):
            return False
        return not (self.hi is not None and (v >= self.hi if self.hi_open else v > self.hi))

    def describe(self, name: str) -> str:
        left = "" if self.lo is None else f"{_num(self.lo)} {'<' if self.lo_open else '<='} "
        right = "" if self.hi is None else f" {'<' if self.hi_open else '<='} {_num(self.hi)}"
        return f"{left}{name}{right}"


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(v)


@dataclass(frozen=True)
class _Spec:
    """What one key accepts."""

    kinds: tuple[str, ...]  # any of: bool int float str list[str] dict[str,float]
    nullable: bool = False
    range: _Range | None = None
    choices: Callable[[], tuple[str, ...]] | tuple[str, ...] | None = None
    keys: tuple[str, ...] | None = None  # allowed keys of dict kinds
    doc: str = ""

    def choice_list(self) -> tuple[str, ...] | None:
        if self.choices is None:
            return None
        return self.choices() if callable(self.choices) else self.choices

    def describe(self, name: str) -> str:
        parts: list[str] = []
        ch = self.choice_list()
        for k in self.kinds:
            if k == "str" and ch is not None:
                parts.append("one of " + ", ".join(ch))
            elif k in ("int", "float") and self.range is not None:
                parts.append(f"{'an integer' if k == 'int' else 'a number'} with {self.range.describe(name)}")
            elif k == "int":
                parts.append("an integer")
            elif k == "float":
                parts.append("a number")
            elif k == "str":
                parts.append("a non-empty string")
            elif k == "bool":
                parts.append("true or false")
            elif k == "list[str]":
                parts.append("a list of non-empty strings")
            elif k == "dict[str,float]":
                rng = f" with {self.range.describe('value')}" if self.range else ""
                parts.append(f"a mapping of {', '.join(self.keys or ())} to numbers{rng}")
        if self.nullable:
            parts.append("null")
        return " or ".join(parts)


def _backend_choices() -> tuple[str, ...]:
    from .interpreters import describe_backends  # light: probes with find_spec, imports nothing heavy

    return ("auto", *(b.name for b in describe_backends()))


_CONTEXTS = ("public", "kiosk", "retail", "robot", "home", "research", "healthcare", "workplace", "education")
_R = _Range
_THREADS = _R(1, 64)
_SECONDS = _R(0, 3600, lo_open=True)

#: Ranges and choices per ``section.key`` of the option sections. Keys absent here only have a type check
#: (free text such as paths); a test checks that every numeric key has a range and every text key either
#: has choices or is listed in :data:`_FREE_TEXT`.
_CONSTRAINTS: dict[str, dict[str, Any]] = {
    "camera.backend": {"choices": ("auto", "picamera2", "opencv", "images", "synthetic", "none")},
    "camera.device": {"range": _R(0, 63)},
    "camera.width": {"range": _R(16, 7680)},
    "camera.height": {"range": _R(16, 4320)},
    "camera.fps": {"range": _R(0, 240, lo_open=True)},
    "camera.inference_width": {"range": _R(0, 7680)},
    "camera.inference_height": {"range": _R(0, 4320)},
    "camera.max_backoff_s": {"range": _SECONDS},
    "audio.backend": {"choices": ("auto", "pyaudio", "file", "synthetic", "none")},
    "audio.device": {"range": _R(0, 255)},
    "audio.sample_rate": {"range": _R(8000, 192000)},
    "audio.chunk_ms": {"range": _R(10, 1000)},
    "audio.max_backoff_s": {"range": _SECONDS},
    "face.detector": {"choices": ("haar", "blazeface", "yunet")},
    "face.detect_every": {"range": _R(1, 120)},
    "face.detect_width": {"range": _R(0, 7680)},
    "face.detect_scale_factor": {"range": _R(1, 2, lo_open=True)},
    "face.max_faces": {"range": _R(1, 64)},
    "face.min_face_size": {"range": _R(8, 4096)},
    "face.margin": {"range": _R(0, 1)},
    "face.score_threshold": {"range": _R(0, 1)},
    "face.track_iou": {"range": _R(0, 1, lo_open=True)},
    "face.track_expiry_s": {"range": _R(0, 60, lo_open=True)},
    "face.track_min_hits": {"range": _R(1, 30)},
    "face.smoothing": {"range": _R(0, 1, hi_open=True)},
    "face.backend": {"choices": _backend_choices},
    "face.num_threads": {"range": _THREADS},
    "voice.window_s": {"range": _R(0.25, 10)},
    "voice.hop_s": {"range": _R(0.05, 10)},
    "voice.vad_threshold_db": {"range": _R(0, 60)},
    "voice.min_speech_s": {"range": _R(0, 10)},
    "voice.hangover_s": {"range": _R(0, 10)},
    "voice.backend": {"choices": _backend_choices},
    "voice.num_threads": {"range": _THREADS},
    "text.backend": {"choices": _backend_choices},
    "text.num_threads": {"range": _THREADS},
    "fusion.strategy": {"choices": ("late", "learned")},
    "fusion.weights": {"keys": ("face", "voice", "text"), "range": _R(0, 10)},
    "fusion.max_age_s": {"keys": ("face", "voice", "text"), "range": _SECONDS},
    "fusion.half_life_s": {"keys": ("face", "voice", "text"), "range": _SECONDS},
    "fusion.unknown_threshold": {"range": _R(0, 1)},
    "fusion.smoothing": {"choices": ("ema", "hmm", "none")},
    "fusion.smoothing_alpha": {"range": _R(0, 1, lo_open=True)},
    "fusion.voice_target": {"choices": ("primary", "all")},
    "queues.frames": {"range": _R(1, 64)},
    "queues.audio": {"range": _R(1, 10000)},
    "queues.results": {"range": _R(1, 10000)},
    "queues.text": {"range": _R(1, 10000)},
    "privacy.deployment_context": {"choices": _CONTEXTS},
}

#: Text keys that take any non-empty string (paths, device names, plugin names).
_FREE_TEXT: frozenset[str] = frozenset({
    "camera.device", "audio.device", "face.model_path", "face.detector_model", "face.delegates",
    "voice.model_path", "voice.vad", "voice.delegates", "text.model_path", "privacy.declared_purpose",
})


def _kinds(tp: Any) -> tuple[tuple[str, ...], bool]:
    members = typing.get_args(tp) if typing.get_origin(tp) in (types.UnionType, typing.Union) else (tp,)
    kinds: list[str] = []
    nullable = False
    for m in members:
        if m is type(None):
            nullable = True
        elif m in (bool, int, float, str):
            kinds.append(m.__name__)
        elif typing.get_origin(m) is tuple and typing.get_args(m) == (str, Ellipsis):
            kinds.append("list[str]")
        elif typing.get_origin(m) is dict and typing.get_args(m) == (str, float):
            kinds.append("dict[str,float]")
        else:
            raise TypeError(f"affectlite.profiles has no validator for option type {m!r}; extend _kinds()")
    return tuple(kinds), nullable


@cache
def _section_types() -> dict[str, type[Any]]:
    hints = typing.get_type_hints(PipelineOptions)
    return {f.name: hints[f.name] for f in dataclasses.fields(PipelineOptions) if f.name != "profile"}


@cache
def _option_schema() -> dict[str, dict[str, _Spec]]:
    """``{section: {key: spec}}`` for every option dataclass field (derived, so it never drifts)."""
    out: dict[str, dict[str, _Spec]] = {}
    for sec, cls in _section_types().items():
        hints = typing.get_type_hints(cls)
        specs: dict[str, _Spec] = {}
        for f in dataclasses.fields(cls):
            kinds, nullable = _kinds(hints[f.name])
            c = _CONSTRAINTS.get(f"{sec}.{f.name}", {})
            specs[f.name] = _Spec(kinds, nullable, c.get("range"), c.get("choices"), c.get("keys"))
        out[sec] = specs
    return out


def _models_with(key: str) -> tuple[str, ...]:
    """Model sections (face/voice/text) whose options have ``key`` (e.g. text has no delegates)."""
    schema = _option_schema()
    return tuple(m for m in ("face", "voice", "text") if key in schema[m])


def _default(section: str, key: str) -> Any:
    return getattr(_section_types()[section](), key)


# ------------------------------------------------------------------------------------------ problems


class _Problems:
    """Collects problems with their location; raises one ProfileError listing them all."""

    def __init__(self, origins: Mapping[tuple[str, ...], str], fallback: str) -> None:
        self.origins = origins
        self.fallback = fallback
        self.items: list[str] = []

    def where(self, path: tuple[str, ...]) -> str:
        for n in range(len(path), -1, -1):
            if path[:n] in self.origins:
                return self.origins[path[:n]]
        return self.fallback

    def add(self, path: tuple[str, ...], msg: str) -> None:
        key = ".".join(path) if path else "(top level)"
        self.items.append(f"{self.where(path)}: {key}: {msg}")

    @staticmethod
    def _order(item: str) -> tuple[str, int]:
        m = re.match(r"(.*?):(\d+): ", item)
        return (m.group(1), int(m.group(2))) if m else (item.split(": ", 1)[0], 0)

    def raise_if_any(self, name: str) -> None:
        if not self.items:
            return
        shown = sorted(self.items, key=self._order)[:_MAX_PROBLEMS]
        more = len(self.items) - len(shown)
        tail = f"\n  ... and {more} more" if more else ""
        n = len(self.items)
        raise ProfileError(f"profile {name!r} is invalid ({n} problem{'s' if n != 1 else ''}); fix or remove "
                           "these keys (a missing key takes its default):\n  " + "\n  ".join(shown) + tail)


def _show(v: Any) -> str:
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + "..."


def _typename(v: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "a mapping", type(None): "null"}.get(type(v), type(v).__name__)


def _did_you_mean(word: str, options: Iterable[str]) -> str:
    m = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f"; did you mean {m[0]!r}?" if m else ""


# ---------------------------------------------------------------------------------------- validation

_BAD = object()


def _check(spec: _Spec, v: Any, path: tuple[str, ...], probs: _Problems) -> Any:
    """Return the normalised value, or ``_BAD`` after recording a problem."""
    name = ".".join(path)
    if v is None:
        if spec.nullable:
            return None
        probs.add(path, f"null is not allowed; expected {spec.describe(name)}")
        return _BAD
    k = spec.kinds
    if isinstance(v, bool):
        if "bool" in k:
            return v
    elif isinstance(v, int):
        if "int" in k or "float" in k:
            if spec.range is not None and not spec.range.ok(v):
                probs.add(path, f"{_show(v)} is out of range; allowed: {spec.range.describe(name)}")
                return _BAD
            return float(v) if "int" not in k else v
    elif isinstance(v, float):
        if "float" in k:
            if not math.isfinite(v):
                probs.add(path, f"{_show(v)} is not a finite number; expected {spec.describe(name)}")
                return _BAD
            if spec.range is not None and not spec.range.ok(v):
                probs.add(path, f"{_show(v)} is out of range; allowed: {spec.range.describe(name)}")
                return _BAD
            return v
        if "int" in k:
            probs.add(path, f"{_show(v)} is not an integer; expected {spec.describe(name)}")
            return _BAD
    elif isinstance(v, str):
        if "str" in k:
            choices = spec.choice_list()
            if choices is not None and v not in choices:
                probs.add(path, f"{_show(v)} is not allowed; choose one of: {', '.join(choices)}"
                          + _did_you_mean(v, choices))
                return _BAD
            if not v.strip() or "\x00" in v:
                probs.add(path, f"{_show(v)} is empty; expected {spec.describe(name)}")
                return _BAD
            return v
    elif isinstance(v, (list, tuple)):
        if "list[str]" in k:
            bad = [x for x in v if not isinstance(x, str) or not x.strip()]
            if bad:
                probs.add(path, f"{_show(bad[0])} in the list is not a non-empty string; "
                          f"expected {spec.describe(name)}")
                return _BAD
            return list(v)
    elif isinstance(v, Mapping) and "dict[str,float]" in k:
        out: dict[str, float] = {}
        ok = True
        for kk, vv in v.items():
            if not isinstance(kk, str) or (spec.keys is not None and kk not in spec.keys):
                probs.add((*path, str(kk)), f"unknown key; allowed: {', '.join(spec.keys or ())}"
                          + _did_you_mean(str(kk), spec.keys or ()))
                ok = False
                continue
            sub = _check(_Spec(("float",), range=spec.range), vv, (*path, kk), probs)
            if sub is _BAD:
                ok = False
            else:
                out[kk] = sub
        return out if ok else _BAD
    probs.add(path, f"{_show(v)} is {_typename(v)}; expected {spec.describe(name)}")
    return _BAD


def _check_mapping(v: Any, path: tuple[str, ...], probs: _Problems) -> Mapping[Any, Any] | None:
    if isinstance(v, Mapping):
        return v
    probs.add(path, f"must be a mapping of keys, got {_typename(v)} {_show(v)}")
    return None


def _check_keys(m: Mapping[Any, Any], allowed: Sequence[str], path: tuple[str, ...],
                probs: _Problems) -> list[str]:
    """Report non-string and unknown keys; return the good ones."""
    good: list[str] = []
    for key in m:
        if not isinstance(key, str):
            hint = " (YAML reads unquoted yes/no/on/off as booleans: quote the key)" if isinstance(key, bool) else ""
            probs.add(path, f"key {_show(key)} is not a string{hint}")
        elif key not in allowed:
            probs.add((*path, key), f"unknown key; allowed in {'.'.join(path) or 'a profile'}: "
                      f"{', '.join(allowed)}" + _did_you_mean(key, allowed))
        else:
            good.append(key)
    return good


def _validate(data: Any, probs: _Problems) -> dict[str, Any]:
    """Validate a merged profile dict; returns the normalised dict (problems are collected, not raised)."""
    top = _check_mapping(data, (), probs)
    if top is None:
        return {}
    schema = _option_schema()
    allowed = (*PipelineOptions.SECTIONS, *PROFILE_ONLY_KEYS)
    out: dict[str, Any] = {}
    for key in _check_keys(top, allowed, (), probs):
        v = top[key]
        p = (key,)
        if key in schema:
            sec = _check_mapping(v, p, probs)
            if sec is None:
                continue
            norm: dict[str, Any] = {}
            for k in _check_keys(sec, tuple(schema[key]), p, probs):
                r = _check(schema[key][k], sec[k], (*p, k), probs)
                if r is not _BAD:
                    norm[k] = r
            out[key] = norm
        elif key in ("name", "description", "extends", "status_note"):
            r = _check(_Spec(("str",)), v, p, probs)
            if r is not _BAD:
                out[key] = r
        elif key == "status":
            r = _check(_Spec(("str",), choices=_STATUS), v, p, probs)
            if r is not _BAD:
                out[key] = r
        elif key == "env":
            out[key] = _validate_env(v, probs)
        elif key == "interpreter":
            out[key] = _validate_interpreter(v, probs)
        elif key == "service":
            sec = _check_mapping(v, p, probs)
            if sec is not None:
                svc: dict[str, Any] = {}
                for k in _check_keys(sec, ("network",), p, probs):
                    r = _check(_Spec(("str",), choices=_NETWORK), sec[k], (*p, k), probs)
                    if r is not _BAD:
                        svc[k] = r
                out[key] = svc
    if "name" in out and not _PROFILE_NAME.match(out["name"]):
        probs.add(("name",), f"{_show(out['name'])} is not a valid profile name; use letters, digits, '-', '_', '.'")
    _cross_checks(out, probs)
    return out


def _validate_env(v: Any, probs: _Problems) -> dict[str, str]:
    m = _check_mapping(v, ("env",), probs)
    out: dict[str, str] = {}
    if m is None:
        return out
    for k, val in m.items():
        if not isinstance(k, str) or not _ENV_NAME.match(k):
            probs.add(("env",), f"{_show(k)} is not a valid environment variable name (letters, digits, '_')")
            continue
        if isinstance(val, bool) or not isinstance(val, (str, int, float)):
            probs.add(("env", k), f"{_show(val)} is {_typename(val)}; expected a string or number "
                      "(quote true/false: \"1\")")
            continue
        s = str(val)
        if any(c in s for c in "\n\r\x00"):
            probs.add(("env", k), f"{_show(s)} contains a line break or NUL; expected a single-line value")
            continue
        out[k] = s
    return out


def _validate_interpreter(v: Any, probs: _Problems) -> dict[str, Any]:
    p = ("interpreter",)
    m = _check_mapping(v, p, probs)
    out: dict[str, Any] = {}
    if m is None:
        return out
    schema = _option_schema()
    for k in _check_keys(m, ("backend", "num_threads", "delegates"), p, probs):
        val = m[k]
        base = schema["face"][k]
        models = _models_with(k)
        if isinstance(val, Mapping):
            per: dict[str, Any] = {}
            for mk in _check_keys(val, models, (*p, k), probs):
                r = _check(schema[mk][k], val[mk], (*p, k, mk), probs)
                if r is not _BAD:
                    per[mk] = r
            out[k] = per
        else:
            r = _check(base, val, (*p, k), probs)
            if r is _BAD:
                probs.items[-1] += f" (or a mapping of {', '.join(models)} to such values)"
            else:
                out[k] = r
    return out


def _effective_sections(data: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Option sections with the ``interpreter`` defaults filled into face/voice/text where not set.

    Mapping-valued options (``fusion.weights``...) given in part keep the defaults of the other keys.
    """
    secs = {s: dict(data.get(s, {})) for s in PipelineOptions.SECTIONS if s in data}
    schema = _option_schema()
    for s, sec in secs.items():
        for k, v in sec.items():
            if isinstance(v, Mapping) and "dict[str,float]" in schema[s][k].kinds:
                sec[k] = {**_default(s, k), **v}
    interp = data.get("interpreter", {})
    for key, val in interp.items():
        for model in _models_with(key):
            mv = val.get(model, _BAD) if isinstance(val, Mapping) else val
            if mv is _BAD:
                continue
            sec = secs.setdefault(model, {})
            sec.setdefault(key, mv)
    return secs


def _cross_checks(data: Mapping[str, Any], probs: _Problems) -> None:
    secs = _effective_sections(data)

    def eff(section: str, key: str) -> Any:
        return secs.get(section, {}).get(key, _default(section, key))

    if "voice" in secs:
        win, hop = eff("voice", "window_s"), eff("voice", "hop_s")
        if isinstance(win, float) and isinstance(hop, float) and hop > win:
            probs.add(("voice", "hop_s"), f"{_show(hop)} is larger than voice.window_s ({_show(win)}); "
                      "allowed: voice.hop_s <= voice.window_s (windows would leave gaps)")
    if "camera" in secs:
        w, h = eff("camera", "width"), eff("camera", "height")
        iw, ih = eff("camera", "inference_width"), eff("camera", "inference_height")
        if all(isinstance(x, int) for x in (w, h, iw, ih)):
            if (iw == 0) != (ih == 0):
                probs.add(("camera", "inference_width"), f"inference size {iw}x{ih}: set both "
                          "camera.inference_width and camera.inference_height, or both to 0 (capture size)")
            elif iw > w or ih > h:
                probs.add(("camera", "inference_width"), f"inference size {iw}x{ih} is larger than the "
                          f"capture size {w}x{h}; allowed: inference_width <= width, inference_height <= height")


# ------------------------------------------------------------------------------------------- loading


def bundled_profiles_dir() -> Path:
    """The folder of the profiles shipped inside the package (``affectlite/profiles``)."""
    return Path(__file__).resolve().with_name("profiles")


def _search_dirs(root: str) -> list[Path]:
    dirs = [Path(d) for d in os.environ.get("AFFECTLITE_PROFILE_PATH", "").split(os.pathsep) if d]
    dirs.append(Path(root) / "etc/affectlite/profiles")
    dirs.append(bundled_profiles_dir())
    return dirs


def _looks_like_path(s: str) -> bool:
    return "/" in s or os.sep in s or s.endswith((".yaml", ".yml"))


def list_profiles(*, root: str = "/") -> list[str]:
    """Names of every profile that :func:`load_profile` can find by name (bundled, /etc, search path)."""
    names: set[str] = set()
    for d in _search_dirs(root):
        if d.is_dir():
            names.update(p.stem for p in d.glob("*.yaml") if _PROFILE_NAME.match(p.stem))
    return sorted(names)


def _resolve(ref: str, root: str, relative_to: Path | None = None) -> Path:
    if _looks_like_path(ref):
        p = Path(ref).expanduser()
        if not p.is_absolute() and relative_to is not None:
            p = relative_to / p
        if not p.is_file():
            raise ProfileError(f"profile file {p} does not exist; pass an existing YAML file or one of the "
                               f"profile names: {', '.join(list_profiles(root=root))}")
        return p
    if not _PROFILE_NAME.match(ref):
        raise ProfileError(f"{ref!r} is not a profile name or a path; use one of: auto, "
                           f"{', '.join(list_profiles(root=root))}, or a path to a .yaml file")
    for d in _search_dirs(root):
        p = d / f"{ref}.yaml"
        if p.is_file():
            return p
    names = list_profiles(root=root)
    raise ProfileError(f"unknown profile {ref!r}{_did_you_mean(ref, names)} Available: auto, {', '.join(names)}; "
                       "or pass the path of your own YAML file (see firmware_configs/ for examples)")


class _Loader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys (plain safe_load silently keeps the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)  # type: ignore[no-untyped-call,unused-ignore]
            try:
                hash(key)
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    None, None, f"unhashable key {key!r}", key_node.start_mark) from None
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first on line {seen[key] + 1})", key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def _lines(node: yaml.Node | None, prefix: tuple[str, ...], source: str,
           out: dict[tuple[str, ...], str]) -> None:
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode):
                path = (*prefix, str(k.value))
                out[path] = f"{source}:{k.start_mark.line + 1}"
                _lines(v, path, source, out)


def _read_yaml(text: str, source: str) -> tuple[Any, dict[tuple[str, ...], str]]:
    """Parse YAML text; return the data and a map from key path to ``file:line``."""
    try:
        loader = _Loader(text)  # the reader rejects control characters here
    except yaml.YAMLError as e:
        raise ProfileError(f"{source}: YAML error: {e}; remove the control character or save the file as "
                           "plain UTF-8 text") from None
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None  # type: ignore[no-untyped-call,unused-ignore]
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        what = " ".join(x for x in (e.context, e.problem) if x)
        raise ProfileError(f"{source}{line}: YAML syntax error: {what}; check the indentation and quoting "
                           "around that line") from None
    except yaml.YAMLError as e:
        raise ProfileError(f"{source}: YAML error: {e}") from None
    except (ValueError, OverflowError, RecursionError) as e:  # e.g. an impossible date 2024-13-45
        raise ProfileError(f"{source}: YAML value error: {e}; quote the value if it is meant as text") from None
    finally:
        loader.dispose()  # type: ignore[no-untyped-call,unused-ignore]
    origins: dict[tuple[str, ...], str] = {(): source}
    _lines(node, (), source, origins)
    return data, origins


@dataclass
class _Layer:
    data: Any
    origins: dict[tuple[str, ...], str]
    source: str
    path: Path | None


def _read_file(path: Path) -> _Layer:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ProfileError(f"{path}: not UTF-8 text ({e}); save the profile as UTF-8") from None
    except OSError as e:
        raise ProfileError(f"{path}: cannot read the profile: {e.strerror or e}") from None
    data, origins = _read_yaml(text, str(path))
    if data is None:
        raise ProfileError(f"{path}: the profile is empty; add at least one section or `extends: <profile>`")
    return _Layer(data, origins, str(path), path)


def _chain(leaf: _Layer, root: str) -> list[_Layer]:
    """The leaf and the profiles it extends, base first."""
    layers = [leaf]
    seen = {str(leaf.path.resolve())} if leaf.path else set()
    cur = leaf
    while isinstance(cur.data, Mapping) and "extends" in cur.data:
        ref = cur.data["extends"]
        where = cur.origins.get(("extends",), cur.source)
        if not isinstance(ref, str) or not ref.strip():
            raise ProfileError(f"{where}: extends: {_show(ref)} must be a profile name or a path to a YAML file")
        if len(layers) > _MAX_EXTENDS:
            raise ProfileError(f"{where}: extends: more than {_MAX_EXTENDS} levels of `extends`; simplify the chain")
        try:
            path = _resolve(ref, root, cur.path.parent if cur.path else None)
        except ProfileError as e:
            raise ProfileError(f"{where}: extends: {e}") from None
        key = str(path.resolve())
        if key in seen:
            raise ProfileError(f"{where}: extends: {ref!r} leads back to a profile already in the chain "
                               f"({path}); remove the cycle")
        seen.add(key)
        cur = _read_file(path)
        layers.append(cur)
    return layers[::-1]


def _merge(base: dict[str, Any], over: Mapping[Any, Any], origins: dict[tuple[str, ...], str],
           over_origins: Mapping[tuple[str, ...], str], prefix: tuple[str, ...] = ()) -> None:
    for k, v in over.items():
        path = (*prefix, str(k))
        if isinstance(v, Mapping) and isinstance(base.get(k), Mapping):
            merged = dict(base[k])
            _merge(merged, v, origins, over_origins, path)
            base[k] = merged
        else:
            base[k] = v
            for p in [p for p in origins if p[: len(path)] == path]:
                del origins[p]
        for p, o in over_origins.items():
            if p[: len(path)] == path:
                origins[p] = o


def _apply_overrides(data: dict[str, Any], overrides: Mapping[str, Any], origins: dict[tuple[str, ...], str],
                     root_hint: str) -> None:
    allowed = (*PipelineOptions.SECTIONS, *PROFILE_ONLY_KEYS)
    problems: list[str] = []
    for dotted, value in overrides.items():
        if not isinstance(dotted, str) or not dotted or any(not s for s in dotted.split(".")):
            problems.append(f"override {_show(dotted)}: keys are dotted paths such as 'camera.fps'")
            continue
        parts = tuple(dotted.split("."))
        if parts[0] not in allowed:
            problems.append(f"override {dotted!r}: unknown section {parts[0]!r}; allowed: {', '.join(allowed)}"
                            + _did_you_mean(parts[0], allowed))
            continue
        if parts[0] == "extends":
            problems.append(f"override {dotted!r}: `extends` cannot be overridden; load that profile instead")
            continue
        node: Any = data
        ok = True
        for i, part in enumerate(parts[:-1]):
            nxt = node.get(part)
            if nxt is None:
                nxt = {}
            elif not isinstance(nxt, Mapping):
                problems.append(f"override {dotted!r}: {'.'.join(parts[: i + 1])} is {_show(nxt)}, not a mapping; "
                                f"set {'.'.join(parts[: i + 1])} itself")
                ok = False
                break
            nxt = dict(nxt)
            node[part] = nxt
            node = nxt
        if not ok:
            continue
        node[parts[-1]] = value
        for p in [p for p in origins if p[: len(parts)] == parts]:
            del origins[p]
        origins[parts] = f"override {dotted!r}"
    if problems:
        raise ProfileError(f"invalid override(s) for profile {root_hint!r}:\n  " + "\n  ".join(problems))


def _build(layers: Sequence[_Layer], overrides: Mapping[str, Any] | None, *, name_hint: str,
           reason: str) -> Profile:
    merged: dict[str, Any] = {}
    origins: dict[tuple[str, ...], str] = {}
    leaf = layers[-1]
    for layer in layers:
        if not isinstance(layer.data, Mapping):
            raise ProfileError(f"{layer.source}: a profile must be a mapping of sections (camera:, face:, ...), "
                               f"got {_typename(layer.data)}")
        _merge(merged, layer.data, origins, layer.origins)
    if len(layers) > 1:
        # Informational keys describe one file only; the base's name/status do not carry over.
        for k in ("name", "description", "status", "status_note"):
            if k not in leaf.data:
                merged.pop(k, None)
    merged.pop("extends", None)
    origins.pop(("extends",), None)
    if overrides:
        if not isinstance(overrides, Mapping):
            raise ProfileError(f"overrides must be a mapping of dotted keys to values, got {_typename(overrides)}")
        _apply_overrides(merged, overrides, origins, name_hint)
    probs = _Problems(origins, leaf.source)
    data = _validate(merged, probs)
    name = data.get("name") or name_hint
    probs.raise_if_any(name)
    data.setdefault("name", name)
    prof = Profile(name=name, source=leaf.source, reason=reason, data=data)
    if prof.status != "supported":
        _log.warning("profile %s is %s: %s", name, prof.status, prof.data.get("status_note", ""))
    return prof


def load_profile(name_or_path: str | os.PathLike[str] = "auto", overrides: Mapping[str, Any] | None = None, *,
                 root: str = "/") -> Profile:
    """Load, merge and validate a device profile.

    Args:
        name_or_path: ``"auto"`` (detect this device, see :func:`detect_device`), a profile name such as
            ``"rpi5"`` (see :func:`list_profiles`) or the path of a YAML file.
        overrides: Dotted keys to override after loading, e.g. ``{"camera.fps": 10,
            "interpreter.num_threads": 2}``. Values are typed (use :func:`parse_overrides` for CLI strings).
        root: Filesystem root for device detection and ``/etc/affectlite/profiles`` (tests use a fake tree).

    Returns:
        The validated :class:`Profile`.

    Raises:
        ProfileError: the profile is missing, not valid YAML or does not validate; the message names the
            file and line, the key path, the bad value and what is allowed.
    """
    if not isinstance(name_or_path, (str, os.PathLike)) or not str(os.fspath(name_or_path)).strip():
        raise ProfileError(f"profile must be 'auto', a profile name or a path, got {_show(name_or_path)}")
    ref = str(os.fspath(name_or_path))
    if isinstance(name_or_path, os.PathLike) and not _looks_like_path(ref):
        ref = os.path.join(".", ref)  # a Path object is always a file, even without a slash
    if ref == "auto":
        det = detect_device(root)
        ref, reason = det.profile, f"auto: {det.reason}"
    else:
        reason = f"requested {ref!r}"
    path = _resolve(ref, root)
    layers = _chain(_read_file(path), root)
    return _build(layers, overrides, name_hint=path.stem, reason=reason)


def parse_profile(data: Mapping[str, Any] | str, *, source: str = "<profile>", name: str | None = None,
                  overrides: Mapping[str, Any] | None = None, root: str = "/") -> Profile:
    """Validate a profile given as a dict or as YAML text (no file needed).

    Args:
        data: The profile's sections, or its YAML text.
        source: What to call it in error messages.
        name: Profile name when ``data`` has no ``name`` key.
        overrides: Dotted keys to override, as in :func:`load_profile`.
        root: Root for resolving ``extends`` names in ``/etc/affectlite/profiles``.

    Raises:
        ProfileError: the data does not validate (see :func:`load_profile`).
    """
    if isinstance(data, str):
        parsed, origins = _read_yaml(data, source)
        if parsed is None:
            raise ProfileError(f"{source}: the profile is empty; add at least one section or `extends: <profile>`")
    else:
        parsed, origins = data, {(): source}
    layers = _chain(_Layer(parsed, origins, source, None), root)
    return _build(layers, overrides, name_hint=name or "custom", reason="given directly")


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """Turn CLI strings ``"camera.fps=10"`` into typed overrides (values are read as YAML scalars/lists).

    Raises:
        ProfileError: an item has no ``=`` or its value is not valid YAML.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ProfileError(f"override {item!r} must look like key=value, e.g. camera.fps=10")
        try:
            out[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as e:
            raise ProfileError(f"override {item!r}: the value is not valid YAML ({e}); quote it") from None
    return out


# ------------------------------------------------------------------------------------------- profile


@dataclass(frozen=True)
class Profile:
    """A validated device profile.

    Attributes:
        name: Profile name (``rpi5``, ``x86_64``, or the user's).
        source: The YAML file it was read from (the leaf, when it ``extends`` others).
        reason: Why it was chosen (for ``"auto"``, what was detected).
        data: The validated, merged nested dict (option sections plus ``env``, ``interpreter``,
            ``service``, ``name``, ``status``...). Treat it as read-only.
    """

    name: str
    source: str
    reason: str
    data: dict[str, Any] = field(compare=True)

    @property
    def env(self) -> dict[str, str]:
        """Environment quirks of this profile."""
        return dict(self.data.get("env", {}))

    @property
    def network(self) -> str:
        """Network access for the systemd service: ``"none"`` (default) or ``"loopback"``."""
        return str(self.data.get("service", {}).get("network", "none"))

    @property
    def status(self) -> str:
        """``supported``, ``experimental`` or ``unsupported``."""
        return str(self.data.get("status", "supported"))

    def sections(self) -> dict[str, dict[str, Any]]:
        """The option sections as passed to :meth:`PipelineOptions.from_dict` (interpreter defaults applied)."""
        return _effective_sections(self.data)

    def get(self, dotted: str) -> Any:
        """A value by dotted key; option keys the profile does not set give their default.

        Raises:
            ProfileError: the key does not exist.
        """
        parts = dotted.split(".")
        if len(parts) == 2 and parts[0] in PipelineOptions.SECTIONS:
            sec, key = parts
            if key not in _option_schema()[sec]:
                raise ProfileError(f"unknown key {dotted!r}; allowed in {sec}: {', '.join(_option_schema()[sec])}")
            return self.sections().get(sec, {}).get(key, _default(sec, key))
        if dotted == "service.network":
            return self.network
        if dotted == "status":
            return self.status
        node: Any = self.data
        for p in parts:
            if not isinstance(node, Mapping) or p not in node:
                raise ProfileError(f"profile {self.name!r} has no key {dotted!r}")
            node = node[p]
        return node

    def to_options(self) -> PipelineOptions:
        """Build :class:`PipelineOptions` (defaults for keys the profile does not set).

        Raises:
            ProfileError: the options refused a value (names the profile file).
        """
        try:
            return PipelineOptions.from_dict({**self.sections(), "profile": self.name}, where=self.source)
        except ProfileError:
            raise
        except ConfigError as e:
            raise ProfileError(f"{self.source}: {e}") from None

    def apply_env(self, environ: MutableMapping[str, str] | None = None, *, override: bool = False) -> dict[str, str]:
        """Set the profile's ``env`` quirks; call it before OpenCV/numpy-heavy code is imported.

        Values the environment already has are kept unless ``override`` is true, so a user's setting wins.

        Args:
            environ: Mapping to update (default ``os.environ``).
            override: Replace existing values.

        Returns:
            The variables that were set.
        """
        env = os.environ if environ is None else environ
        applied: dict[str, str] = {}
        for k, v in self.env.items():
            if override or k not in env:
                env[k] = v
                applied[k] = v
        if environ is None and applied:
            late = [m for m in ("cv2", "numpy") if m in sys.modules]
            blas = [k for k in applied if k.startswith(("OPENBLAS_", "OMP_", "MKL_", "GOMP_"))]
            if late and blas:
                _log.info("profile %s set %s after %s was imported; if it has no effect set it in the "
                          "environment before Python starts (the systemd unit's EnvironmentFile does)",
                          self.name, ", ".join(blas), " and ".join(late))
        return applied

    def env_file(self) -> str:
        """The ``env`` quirks as a systemd ``EnvironmentFile`` (also valid for ``sh``'s ``.``)."""
        lines = [f"# generated from affectlite profile {self.name} ({self.source}); do not edit"]
        for k, v in sorted(self.env.items()):
            q = v.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$").replace("`", "\\`")
            lines.append(f'{k}="{q}"')
        return "\n".join(lines) + "\n"

    def to_yaml(self) -> str:
        """The validated profile as YAML (``extends`` resolved, overrides applied)."""
        return yaml.safe_dump(self.data, sort_keys=False, default_flow_style=False)

    def describe(self) -> str:
        """One line: name, status, source and why it was chosen."""
        return f"{self.name} [{self.status}] from {self.source} ({self.reason})"


# -------------------------------------------------------------------------------------- detection

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


def describe_detection(root: str = "/") -> str:
    """A human-readable report of device detection for ``affectlite doctor``."""
    det = detect_device(root)
    lines = [f"profile:   {det.profile} (auto)", f"reason:    {det.reason}",
             f"machine:   {det.machine}"]
    if det.model:
        lines.append(f"model:     {det.model}")
    if det.cpu:
        lines.append(f"cpu:       {det.cpu}")
    try:
        prof = load_profile(det.profile, root=root)
        lines.append(f"file:      {prof.source}")
        lines.append(f"status:    {prof.status}" + (f" - {prof.data['status_note']}" if "status_note" in prof.data
                                                  else ""))
        if prof.env:
            lines.append("env:       " + " ".join(f"{k}={v}" for k, v in sorted(prof.env.items())))
    except ProfileError as e:
        lines.append(f"error:     {e}")
    lines.extend(f"warning:   {w}" for w in det.warnings)
    lines.append(f"available: {', '.join(list_profiles(root=root))}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------- reference


def schema_markdown() -> str:
    """A Markdown table of every profile key, its type and allowed values (for the docs)."""
    from .interpreters import BACKENDS

    rows = ["| key | allowed | default |", "|---|---|---|"]
    for sec, specs in _option_schema().items():
        for key, spec in specs.items():
            name = f"{sec}.{key}"
            d = _default(sec, key)
            d = list(d) if isinstance(d, tuple) else d
            shown = yaml.safe_dump(d, default_flow_style=True, sort_keys=False, width=1000).strip()
            shown = shown.removesuffix("...").strip()
            allowed = spec.describe(key)
            if callable(spec.choices):  # backends: the static list (registered plugins vary at run time)
                allowed = dataclasses.replace(spec, choices=("auto", *BACKENDS)).describe(key) + \
                    " (or a registered backend)"
            rows.append(f"| `{name}` | {allowed.replace('|', '/')} | `{shown}` |")
    rows += [
        "| `interpreter.backend` | one of auto, litert, tflite_runtime, tf_lite (or a registered backend); "
        "or a mapping per model | `auto` |",
        "| `interpreter.num_threads` | an integer with 1 <= num_threads <= 64 or null; or a mapping of face, "
        "voice, text to such values | `1` |",
        "| `interpreter.delegates` | a list of delegate library paths; or a mapping of face, voice to lists "
        "| `[]` |",
        "| `env.<NAME>` | a single-line string or number | |",
        "| `service.network` | one of none, loopback | `none` |",
        f"| `status` | one of {', '.join(_STATUS)} | `supported` |",
        "| `extends` | a profile name or a path relative to this file | |",
        "| `name`, `description`, `status_note` | a non-empty string | |",
    ]
    return "\n".join(rows) + "\n"


# ---------------------------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m affectlite.profiles``: list, show, get, env, detect, validate, schema."""
    ap = argparse.ArgumentParser(prog="python -m affectlite.profiles", description=main.__doc__)
    ap.add_argument("--root", default="/", help="filesystem root for detection (default /)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="list profile names")
    sub.add_parser("detect", help="show which profile 'auto' picks and why")
    sub.add_parser("schema", help="print the key reference as Markdown")
    for name, hlp in (("show", "print the validated profile as YAML"), ("env", "print the env quirks as an "
                      "EnvironmentFile"), ("get", "print one value (dotted key)")):
        p = sub.add_parser(name, help=hlp)
        if name == "get":
            p.add_argument("key")
        p.add_argument("--profile", default="auto")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a key")
        p.add_argument("--output", metavar="FILE", help="write to FILE (atomically) instead of stdout")
    v = sub.add_parser("validate", help="validate profile files or names")
    v.add_argument("profiles", nargs="+")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "list":
            print("\n".join(list_profiles(root=args.root)))
        elif args.cmd == "detect":
            print(describe_detection(args.root))
        elif args.cmd == "schema":
            sys.stdout.write(schema_markdown())
        elif args.cmd == "validate":
            for ref in args.profiles:
                prof = load_profile(ref, root=args.root)
                prof.to_options()
                print(f"ok: {prof.describe()}")
        else:
            prof = load_profile(args.profile, parse_overrides(args.set), root=args.root)
            if args.cmd == "show":
                text = prof.to_yaml()
            elif args.cmd == "env":
                text = prof.env_file()
            else:
                val = prof.get(args.key)
                text = (val if isinstance(val, str) else yaml.safe_dump(val).strip().removesuffix("...").strip()) + "\n"
            if args.output:
                from ._io import atomic_write_text

                try:
                    atomic_write_text(args.output, text)
                except OSError as e:
                    print(f"error: cannot write {args.output}: {e.strerror or e}", file=sys.stderr)
                    return 2
            else:
                sys.stdout.write(text)
    except ProfileError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
