"""Pydantic's validation errors in affectlite's words: key path, file and line, the value, what is allowed.

Pydantic decides *whether* a value is valid; this module says *why not*, reading the expectations from
the same JSON Schema that ``affectlite profile schema`` publishes (types, ranges, choices), so that messages
and schema cannot drift. Messages look like::

    /etc/affectlite/profiles/kiosk.yaml:2: camera.fps: -3 is out of range; allowed: 0 < camera.fps <= 240
    /etc/affectlite/profiles/kiosk.yaml:4: camera.fsp: unknown key; allowed in camera: enabled, ...; did you mean 'fps'?
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from typing import Any, NoReturn

from pydantic import BaseModel, ValidationError

from .errors import ProfileError

MAX_PROBLEMS = 25
#: Patterns of the string types in :mod:`affectlite.options` and what a value that misses them is.
_PATTERN_PROBLEMS = {
    r"^[^\x00]*[^\s\x00][^\x00]*$": "is empty",
    r"^[^\n\r\x00]*$": "contains a line break or NUL",
    r"^[A-Za-z0-9][A-Za-z0-9_.-]*$": "is not a valid profile name; use letters, digits, '-', '_', '.'",
}
_SIMPLE_TAGS = frozenset({"int", "str", "float", "bool", "none", "constrained-int", "constrained-str",
                          "constrained-float"})
_TAG = re.compile(r"[a-z][a-z-]*\[.*\]", re.S)


def show(v: Any) -> str:
    """A value as the user wrote it, shortened."""
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + "..."


def typename(v: Any) -> str:
    """``an integer``, ``a string``... for a YAML value."""
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            tuple: "a list", dict: "a mapping", type(None): "null"}.get(type(v), type(v).__name__)


def did_you_mean(word: str, options: Iterable[str]) -> str:
    """``; did you mean 'fps'?`` for a close match, else ``""``."""
    m = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f"; did you mean {m[0]!r}?" if m else ""


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(v)


# ------------------------------------------------------------------------------------------ schema reading


@cache
def schema_of(cls: type[BaseModel]) -> dict[str, Any]:
    """The JSON Schema of a model (cached)."""
    return cls.model_json_schema()


def _deref(root: Mapping[str, Any], node: Mapping[str, Any]) -> Mapping[str, Any]:
    while "$ref" in node:
        node = root["$defs"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def alternatives(root: Mapping[str, Any], node: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The members of a union (``anyOf``), each resolved; ``[node]`` for anything else."""
    node = _deref(root, node)
    if "anyOf" in node:
        return [a for m in node["anyOf"] for a in alternatives(root, m)]
    return [node]


def node_at(root: Mapping[str, Any], path: Sequence[str]) -> Mapping[str, Any] | None:
    """The schema of the key at ``path`` (``("camera", "fps")``), or None when there is no such key."""
    node: Mapping[str, Any] = root
    for key in path:
        nxt = None
        for alt in alternatives(root, node):
            props = alt.get("properties", {})
            extra = alt.get("additionalProperties")
            if key in props:
                nxt = props[key]
            elif isinstance(extra, Mapping) and key in alt.get("propertyNames", {}).get("enum", [key]):
                nxt = extra
            if nxt is not None:
                break
        if nxt is None:
            return None
        node = nxt
    return node


def bounds(node: Mapping[str, Any], name: str) -> str:
    """``0 < camera.fps <= 240`` from a schema's minimum/maximum, or ``""``."""
    left = right = ""
    if "minimum" in node:
        left = f"{_num(node['minimum'])} <= "
    elif "exclusiveMinimum" in node:
        left = f"{_num(node['exclusiveMinimum'])} < "
    if "maximum" in node:
        right = f" <= {_num(node['maximum'])}"
    elif "exclusiveMaximum" in node:
        right = f" < {_num(node['exclusiveMaximum'])}"
    return f"{left}{name}{right}" if left or right else ""


def _in_bounds(node: Mapping[str, Any], v: float) -> bool:
    return not (("minimum" in node and v < node["minimum"]) or ("maximum" in node and v > node["maximum"])
                or ("exclusiveMinimum" in node and v <= node["exclusiveMinimum"])
                or ("exclusiveMaximum" in node and v >= node["exclusiveMaximum"]))


def _per_model(alt: Mapping[str, Any]) -> bool:
    """A mapping of model names to values (``interpreter.num_threads: {face: 2}``)."""
    return alt.get("type") == "object" and set(alt.get("properties", {})) <= {"face", "voice", "text"} \
        and bool(alt.get("properties"))


def describe(root: Mapping[str, Any], node: Mapping[str, Any], name: str, *, per_model: bool = True) -> str:
    """What a key accepts, in words: ``an integer with 1 <= num_threads <= 64 or null``."""
    parts: list[str] = []
    tail = ""
    for alt in alternatives(root, node):
        t = alt.get("type")
        if "enum" in alt:
            parts.append("one of " + ", ".join(map(str, alt["enum"])))
        elif t in ("integer", "number"):
            rng = bounds(alt, name)
            parts.append(("an integer" if t == "integer" else "a number") + (f" with {rng}" if rng else ""))
        elif t == "string":
            parts.append("a non-empty string" if "pattern" in alt else "a string")
        elif t == "boolean":
            parts.append("true or false")
        elif t == "array":
            items = describe(root, alt.get("items", {}), "item")
            parts.append("a list of non-empty strings" if items == "a non-empty string" else "a list")
        elif t == "object" and _per_model(alt):
            if per_model:
                tail = f"; or a mapping of {', '.join(alt['properties'])} to such values"
        elif t == "object" and isinstance(alt.get("additionalProperties"), Mapping):
            keys = alt.get("propertyNames", {}).get("enum")
            val = _deref(root, alt["additionalProperties"])
            rng = bounds(val, "value")
            parts.append(f"a mapping of {', '.join(keys) if keys else 'names'} to numbers"
                         + (f" with {rng}" if rng else ""))
        elif t == "object":
            parts.append("a mapping of keys")
        elif t == "null":
            parts.append("null")
    return " or ".join(parts) + tail


def explain(root: Mapping[str, Any], node: Mapping[str, Any], value: Any, name: str,
            choices: Sequence[str] | None = None) -> str | None:
    """Why ``value`` does not fit ``node``, in words; None when the schema alone does not say."""
    alts = alternatives(root, node)
    per_model = [a for a in alts if _per_model(a)]
    suffix = f" (or a mapping of {', '.join(per_model[0]['properties'])} to such values)" \
        if per_model and not isinstance(value, Mapping) else ""
    expected = describe(root, node, name, per_model=False)
    types = {a.get("type") for a in alts}
    numbers = [a for a in alts if a.get("type") in ("integer", "number") and "enum" not in a]
    msg: str | None = None
    if value is None:
        msg = f"null is not allowed; expected {expected}"
    elif isinstance(value, bool):
        if "boolean" not in types:
            msg = f"{show(value)} is a boolean; expected {expected}"
    elif isinstance(value, int):
        if numbers and not any(_in_bounds(a, value) for a in numbers):
            msg = f"{show(value)} is out of range; allowed: {bounds(numbers[0], name)}"
    elif isinstance(value, float):
        floats = [a for a in numbers if a.get("type") == "number"]
        if floats and not math.isfinite(value):
            msg = f"{show(value)} is not a finite number; expected {expected}"
        elif floats and not any(_in_bounds(a, value) for a in floats):
            msg = f"{show(value)} is out of range; allowed: {bounds(floats[0], name)}"
        elif numbers and not floats:
            msg = f"{show(value)} is not an integer; expected {expected}"
    elif isinstance(value, str):
        enums = [str(x) for a in alts for x in a.get("enum", ())]
        allowed = list(choices) if choices else enums
        if allowed and value not in allowed:
            msg = f"{show(value)} is not allowed; choose one of: {', '.join(allowed)}" + did_you_mean(value, allowed)
        else:
            for a in alts:
                pat = a.get("pattern")
                if a.get("type") == "string" and pat and not re.search(pat, value):
                    what = _PATTERN_PROBLEMS.get(pat, f"does not match {pat}")
                    msg = f"{show(value)} {what}" + ("" if ";" in what else f"; expected {expected}")
                    break
    elif isinstance(value, Mapping) and any(a.get("type") == "object" for a in alts):
        return None  # the problem is inside (reported at a deeper key)
    if msg is None and not (isinstance(value, (list, tuple, Mapping)) and types & {"array", "object"}):
        msg = f"{show(value)} is {typename(value)}; expected {expected}"
    return None if msg is None else msg + suffix


# ------------------------------------------------------------------------------------------ translation


def _is_tag(x: str, models: frozenset[str]) -> bool:
    """A union member tag in a pydantic error location (``constrained-int``, ``_PerModelThreads``)."""
    return x in _SIMPLE_TAGS or x in models or bool(_TAG.fullmatch(x))


def translate(e: ValidationError, cls: type[BaseModel],
              prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], str]]:
    """``(key path, message)`` for every problem of a validation error, one per key.

    Args:
        e: The error.
        cls: The model that raised it.
        prefix: Where the model sits in a profile (``("camera",)`` for :class:`CameraOptions`).
    """
    root = schema_of(cls)
    models = frozenset({*root.get("$defs", {}), cls.__name__})
    entries: list[tuple[tuple[str, ...], bool, Any, dict[str, Any]]] = []
    for err in e.errors(include_url=False):
        path: list[str] = []  # the keys of the location, without union member tags
        key_error = False
        item: Any = _NO_ITEM
        for x in err["loc"]:
            if x == "[key]":
                key_error = True
            elif isinstance(x, int):
                item = err["input"]
            elif not _is_tag(str(x), models):
                path.append(str(x))
        if err["type"] == "cross_field":
            path.append(str(err["ctx"]["key"]))
        entries.append((tuple(path), key_error, item, dict(err)))
    paths = {p for p, *_ in entries}
    out: dict[tuple[str, ...], str] = {}
    for where, key_error, item, details in entries:
        if where in out or any(len(q) > len(where) and q[: len(where)] == where for q in paths):
            continue  # a union member that did not apply, or reported at a deeper key
        out[where] = _message(root, where, key_error, item, details, prefix)
    return [(prefix + p, m) for p, m in out.items()]


class _NoItem:
    pass


_NO_ITEM = _NoItem()


def _message(root: Mapping[str, Any], path: tuple[str, ...], key_error: bool, item: Any,
             err: Mapping[str, Any], prefix: tuple[str, ...]) -> str:
    kind, value, ctx = err["type"], err["input"], err.get("ctx") or {}
    name = ".".join(prefix + path)
    if kind == "cross_field":
        return str(ctx["message"])
    if (prefix + path)[:1] == ("env",):
        return _env_message(path, key_error, value)
    parent = node_at(root, path[:-1])
    if key_error and parent is not None:
        keys = [str(k) for a in alternatives(root, parent) for k in a.get("propertyNames", {}).get("enum", ())]
        return f"unknown key; allowed: {', '.join(keys)}" + did_you_mean(path[-1], keys)
    if kind == "extra_forbidden":
        allowed = [k for a in alternatives(root, parent) for k in a.get("properties", {})] if parent else []
        where = ".".join(prefix + path[:-1]) or "a profile"
        return f"unknown key; allowed in {where}: {', '.join(allowed)}" + did_you_mean(path[-1], allowed)
    node = node_at(root, path)
    if node is None:
        return str(err["msg"])
    if not isinstance(item, _NoItem):
        arrays = [a for a in alternatives(root, node) if a.get("type") == "array"]
        if arrays:
            want = describe(root, arrays[0].get("items", {}), "item")
            return f"{show(item)} in the list is not {want}; expected {describe(root, node, name, per_model=False)}"
    objects = [a for a in alternatives(root, node) if a.get("type") != "null"]
    if not isinstance(value, Mapping) and objects and all(a.get("type") == "object" and "properties" in a
                                                          for a in objects):
        return f"must be a mapping of keys, got {typename(value)} {show(value)}"
    choices = ctx.get("choices")
    return explain(root, node, value, name, choices) or str(err["msg"])


def _env_message(path: tuple[str, ...], key_error: bool, value: Any) -> str:
    if len(path) == 1:
        return f"must be a mapping of variable names to values, got {typename(value)} {show(value)}"
    if key_error:
        return f"{show(path[1])} is not a valid environment variable name (letters, digits, '_')"
    if isinstance(value, str):
        return f"{show(value)} contains a line break or NUL; expected a single-line value"
    if isinstance(value, float):
        return f"{show(value)} is not a finite number; expected a string or number"
    return f"{show(value)} is {typename(value)}; expected a string or number (quote true/false: \"1\")"


def problems(e: ValidationError, cls: type[BaseModel], prefix: tuple[str, ...] = ()) -> list[str]:
    """``key.path: message`` lines for a validation error of ``cls`` (no file locations)."""
    return [f"{'.'.join(p) or '(top level)'}: {m}" for p, m in translate(e, cls, prefix)]


# ------------------------------------------------------------------------------------------ profiles


class Problems:
    """Collects the problems of a profile with their file and line; raises one ProfileError listing all."""

    def __init__(self, origins: Mapping[tuple[str, ...], str], fallback: str) -> None:
        self.origins = origins
        self.fallback = fallback
        self.items: list[str] = []

    def where(self, path: tuple[str, ...]) -> str:
        """``file:line`` of the nearest key of ``path`` that has a location."""
        for n in range(len(path), -1, -1):
            if path[:n] in self.origins:
                return self.origins[path[:n]]
        return self.fallback

    def add(self, path: tuple[str, ...], msg: str) -> None:
        """Record a problem at a key path."""
        key = ".".join(path) if path else "(top level)"
        self.items.append(f"{self.where(path)}: {key}: {msg}")

    def add_validation_error(self, e: ValidationError, cls: type[BaseModel]) -> None:
        """Record every problem of a validation error of ``cls``."""
        for path, msg in translate(e, cls):
            self.add(path, msg)

    @staticmethod
    def _order(item: str) -> tuple[str, int]:
        m = re.match(r"(.*?):(\d+): ", item)
        return (m.group(1), int(m.group(2))) if m else (item.split(": ", 1)[0], 0)

    def fail(self, name: str) -> NoReturn:
        """Raise the ProfileError listing the problems (file order, at most :data:`MAX_PROBLEMS`)."""
        shown = sorted(self.items, key=self._order)[:MAX_PROBLEMS]
        more = len(self.items) - len(shown)
        tail = f"\n  ... and {more} more" if more else ""
        n = len(self.items)
        raise ProfileError(f"profile {name!r} is invalid ({n} problem{'s' if n != 1 else ''}); fix or remove "
                           "these keys (a missing key takes its default):\n  " + "\n  ".join(shown) + tail)


def drop_bad_keys(data: Any, found: Problems, path: tuple[str, ...] = ()) -> Any:
    """A copy of ``data`` without mapping keys that are not strings (each one recorded as a problem)."""
    if not isinstance(data, Mapping):
        return data
    out: dict[str, Any] = {}
    for k, v in data.items():
        if isinstance(k, str):
            out[k] = drop_bad_keys(v, found, (*path, k))
        else:
            hint = " (YAML reads unquoted yes/no/on/off as booleans: quote the key)" if isinstance(k, bool) else ""
            found.add(path, f"key {show(k)} is not a string{hint}")
    return out
