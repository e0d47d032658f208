"""Checking option values and explaining what is wrong: key path, file and line, the value, what is allowed.

msgspec decides *whether* a value fits a field's type and constraints; this module walks a struct's fields
so that *every* problem is found (not only the first), and says *why*, reading the expectations from the
same JSON Schema that ``affectlite profile schema`` publishes (types, ranges, choices), so that messages and
schema cannot drift. Messages look like::

    /etc/affectlite/profiles/kiosk.yaml:2: camera.fps: -3 is out of range; allowed: 0 < camera.fps <= 240
    /etc/affectlite/profiles/kiosk.yaml:4: camera.fsp: unknown key; allowed in camera: enabled, ...; did you mean 'fps'?
"""

from __future__ import annotations

import difflib
import math
import re
import reprlib
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, NoReturn

import msgspec

from .errors import ConfigError, ProfileError

MAX_PROBLEMS = 25
#: Patterns of the string types in :mod:`affectlite.options` and what a value that misses them is.
_PATTERN_PROBLEMS = {
    r"^[^\x00]*[^\s\x00][^\x00]*$": "is empty",
    r"^[^\n\r\x00]*$": "contains a line break or NUL",
    r"^[A-Za-z0-9][A-Za-z0-9_.-]*$": "is not a valid profile name; use letters, digits, '-', '_', '.'",
}


_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxtuple, _SHORT.maxdict, _SHORT.maxset = 3, 8, 8, 6, 8
_SHORT.maxstring = _SHORT.maxother = 60


def show(v: Any) -> str:
    """A value as the user wrote it, shortened (containers through reprlib: a YAML alias bomb that expands to
    billions of items is shown in microseconds, not fully repr'd)."""
    r = _SHORT.repr(v) if isinstance(v, (list, tuple, dict, set, frozenset)) else repr(v)
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
def schema_of(cls: type[msgspec.Struct]) -> dict[str, Any]:
    """The JSON Schema of a struct (cached), choices in the order the fields declare them."""
    schema = msgspec.json.schema(cls)
    defs = schema.get("$defs", {})
    for c in _structs_in(cls, set()):
        props = defs.get(c.__name__, {}).get("properties", {})
        for f in fields_of(c):
            order = [a for m in _members(f.type) if typing.get_origin(m) is typing.Literal for a in typing.get_args(m)]
            node = props.get(f.name, {})
            for alt in node.get("anyOf", [node]):
                if order and sorted(map(str, alt.get("enum", ()))) == sorted(map(str, order)):
                    alt["enum"] = order  # msgspec sorts them
    return schema


def _structs_in(cls: type[msgspec.Struct], seen: set[type[msgspec.Struct]]) -> list[type[msgspec.Struct]]:
    """``cls`` and every struct its fields hold, recursively."""
    if cls in seen:
        return []
    seen.add(cls)
    out = [cls]
    for f in fields_of(cls):
        for m in _members(f.type):
            if isinstance(m, type) and issubclass(m, msgspec.Struct):
                out += _structs_in(m, seen)
    return out


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




# ------------------------------------------------------------------------------------------ checking


@dataclass
class Problem:
    """One problem: where (``path`` from the top; ``rel`` within ``cls``), what kind, the value.

    Kinds: ``value`` (the value does not fit), ``item`` (a list item does not), ``key`` (a mapping key is not
    allowed), ``unknown`` (a struct has no such field), ``text`` (a rule over two fields, or a key that is not
    a string: ``text`` says it).
    """

    cls: type[msgspec.Struct]
    rel: tuple[str, ...]
    path: tuple[str, ...]
    kind: str
    value: Any = None
    text: str = ""
    choices: Sequence[str] | None = None

    def moved(self, prefix: tuple[str, ...]) -> Problem:
        """The same problem seen from a struct that holds this one at ``prefix``."""
        return Problem(self.cls, self.rel, prefix + self.path, self.kind, self.value, self.text, self.choices)


class Invalid(ConfigError):
    """Options built with bad values; ``problems`` lists them (the message names each one)."""

    def __init__(self, cls: type[msgspec.Struct], problems: list[Problem]) -> None:
        self.problems = problems
        prefix: tuple[str, ...] = getattr(cls, "_path", ())
        lines = [f"{'.'.join(prefix + p.path) or '(top level)'}: {message(p, prefix)}" for p in problems]
        n = len(lines)
        super().__init__(f"invalid {cls.__name__} ({n} problem{'s' if n != 1 else ''}):\n  " + "\n  ".join(lines))


class _Bad:
    pass


BAD: Any = _Bad()


@cache
def fields_of(cls: type[msgspec.Struct]) -> tuple[msgspec.structs.FieldInfo, ...]:
    """The fields of a struct, types resolved (cached: msgspec evaluates the annotations on every call)."""
    return msgspec.structs.fields(cls)


def _strip(tp: Any) -> Any:
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _members(tp: Any) -> list[Any]:
    tp = _strip(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return [m for a in typing.get_args(tp) for m in _members(a)]
    return [tp]


def _struct_in(tp: Any) -> type[msgspec.Struct] | None:
    for m in _members(tp):
        if isinstance(m, type) and issubclass(m, msgspec.Struct):
            return m
    return None


def _open_choices(tp: Any) -> str | None:
    """``"backends"`` for a type whose choices grow at run time (``Meta(extra={"choices": "backends"})``)."""
    return next((str(m.extra["choices"]) for m in _metas(tp) if m.extra and "choices" in m.extra), None)


def _backend_choices() -> list[str]:
    from .interpreters import describe_backends  # light: probes with find_spec, imports nothing heavy

    return ["auto", *(b.name for b in describe_backends())]


def check_value(tp: Any, value: Any, cls: type[msgspec.Struct], rel: tuple[str, ...], out: list[Problem]) -> Any:
    """``value`` converted to ``tp``, the type of the field at ``rel`` in ``cls``; :data:`BAD` after recording
    in ``out`` why it does not fit."""
    sub = _struct_in(tp)
    if sub is not None:
        if isinstance(value, sub):
            return value
        if isinstance(value, Mapping):
            found: list[Problem] = []
            obj = check_data(sub, value, (), found)
            out.extend(p.moved(rel) for p in found)
            return obj
    try:
        v = msgspec.convert(value, tp, strict=True)
    except msgspec.ValidationError:
        _refine(tp, value, cls, rel, out)
        return BAD
    if isinstance(v, str):  # choices that the type does not enforce (backends also take registered ones)
        enum = _extra_enum(tp)
        if enum and v not in enum:
            choices = _backend_choices() if _open_choices(tp) == "backends" else enum
            if v not in choices:
                out.append(Problem(cls, rel, rel, "value", v, choices=choices))
                return BAD
    elif isinstance(v, dict):  # keys that the type does not enforce (modalities)
        dict_type = next((m for m in _members(tp) if typing.get_origin(m) is dict), None)
        keys = _extra_enum(typing.get_args(dict_type)[0]) if dict_type is not None else []
        bad = [k for k in v if keys and k not in keys]
        out.extend(Problem(cls, (*rel, str(k)), (*rel, str(k)), "key", k, choices=keys) for k in bad)
        if bad:
            return BAD
    return v


def _metas(tp: Any) -> list[msgspec.Meta]:
    """The ``Meta`` annotations of a type and of the members of a union it is."""
    out: list[msgspec.Meta] = []
    if typing.get_origin(tp) is typing.Annotated:
        out += [m for m in typing.get_args(tp)[1:] if isinstance(m, msgspec.Meta)]
        tp = typing.get_args(tp)[0]
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        out += [m for a in typing.get_args(tp) for m in _metas(a)]
    return out


def _extra_enum(tp: Any) -> list[str]:
    """Choices declared with ``Meta(extra_json_schema={"enum": ...})`` (checked here, published in the schema)."""
    return [str(x) for m in _metas(tp) for x in (m.extra_json_schema or {}).get("enum", ())]


def _refine(tp: Any, value: Any, cls: type[msgspec.Struct], rel: tuple[str, ...], out: list[Problem]) -> None:
    """Record the most precise problem: a bad mapping key or value, a bad list item, or the value itself."""
    members = _members(tp)
    n = len(out)
    if isinstance(value, Mapping):
        dict_type = next((m for m in members if typing.get_origin(m) is dict), None)
        if dict_type is not None:
            key_type, value_type = typing.get_args(dict_type)
            for k, x in value.items():
                try:
                    msgspec.convert(k, key_type, strict=True)
                except msgspec.ValidationError:
                    out.append(Problem(cls, (*rel, str(k)), (*rel, str(k)), "key", k))
                    continue
                check_value(value_type, x, cls, (*rel, str(k)), out)
    elif isinstance(value, (list, tuple)):
        seq = next((m for m in members if typing.get_origin(m) in (tuple, list)), None)
        if seq is not None:
            for x in value:
                try:
                    msgspec.convert(x, typing.get_args(seq)[0], strict=True)
                except msgspec.ValidationError:
                    out.append(Problem(cls, rel, rel, "item", x))
                    break
    if len(out) == n:
        out.append(Problem(cls, rel, rel, "value", value))


def check_data(cls: type[msgspec.Struct], data: Mapping[Any, Any], path: tuple[str, ...], out: list[Problem]) -> Any:
    """``cls`` built from a mapping, recording every problem (paths start at ``path``); :data:`BAD` if any."""
    n = len(out)
    fields = {f.name: f for f in fields_of(cls)}
    kw: dict[str, Any] = {}
    for k, v in data.items():
        if not isinstance(k, str):
            hint = " (YAML reads unquoted yes/no/on/off as booleans: quote the key)" if isinstance(k, bool) else ""
            out.append(Problem(cls, (), path, "text", k, text=f"key {show(k)} is not a string{hint}"))
            continue
        f = fields.get(k)
        if f is None:
            out.append(Problem(cls, (k,), (*path, k), "unknown", v, choices=list(fields)))
            continue
        found: list[Problem] = []
        r = check_value(f.type, v, cls, (k,), found)
        out.extend(p.moved(path) for p in found)
        if r is not BAD:
            kw[k] = r
    if len(out) > n:
        return BAD
    try:
        return cls(**kw)
    except Invalid as e:
        out.extend(p.moved(path) for p in e.problems)
        return BAD


def check_fields(obj: msgspec.Struct) -> None:
    """Check every field of a new struct, normalising it (int to float, list to tuple, mapping to struct).

    Raises:
        Invalid: a field does not fit, or a rule over two fields fails.
    """
    cls = type(obj)
    out: list[Problem] = []
    for f in fields_of(cls):
        v = getattr(obj, f.name)
        if v is msgspec.UNSET:
            continue
        r = check_value(f.type, v, cls, (f.name,), out)
        if r is not BAD and r is not v:
            msgspec.structs.force_setattr(obj, f.name, r)
    if not out:
        cross = getattr(obj, "_cross_checks", None)
        out.extend(Problem(cls, (key,), (key,), "text", None, text=text) for key, text in (cross() if cross else ()))
    if out:
        raise Invalid(cls, out)


def build(cls: type[Any], data: Mapping[str, Any]) -> Any:
    """``cls`` from a mapping, every problem listed.

    Raises:
        Invalid: the data does not fit.
    """
    out: list[Problem] = []
    obj = check_data(cls, data, (), out)
    if out or obj is BAD:
        raise Invalid(cls, out)
    return obj


def message(p: Problem, prefix: tuple[str, ...] = ()) -> str:
    """What is wrong, in words (the key path is not included)."""
    root = schema_of(p.cls)
    name = ".".join(prefix + p.path)
    if p.kind == "text":
        return p.text
    if (prefix + p.path)[:1] == ("env",):
        return _env_message(prefix + p.path, p.kind == "key", p.value)
    if p.kind == "unknown":
        allowed = list(p.choices or ())
        where = ".".join(prefix + p.path[:-1]) or "a profile"
        return f"unknown key; allowed in {where}: {', '.join(allowed)}" + did_you_mean(p.path[-1], allowed)
    if p.kind == "key":
        keys = list(p.choices or ())
        parent = node_at(root, p.rel[:-1])
        if not keys and parent is not None:
            keys = [str(k) for a in alternatives(root, parent) for k in a.get("propertyNames", {}).get("enum", ())]
        return f"unknown key; allowed: {', '.join(keys)}" + did_you_mean(str(p.value), keys)
    node = node_at(root, p.rel)
    if node is None:
        return f"{show(p.value)} is not allowed"
    if p.kind == "item":
        arrays = [a for a in alternatives(root, node) if a.get("type") == "array"]
        want = describe(root, arrays[0].get("items", {}), "item") if arrays else "allowed"
        return f"{show(p.value)} in the list is not {want}; expected {describe(root, node, name, per_model=False)}"
    objects = [a for a in alternatives(root, node) if a.get("type") != "null"]
    if not isinstance(p.value, Mapping) and objects and all(a.get("type") == "object" and "properties" in a
                                                            for a in objects):
        return f"must be a mapping of keys, got {typename(p.value)} {show(p.value)}"
    return explain(root, node, p.value, name, p.choices) or f"{show(p.value)} is not allowed"


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
