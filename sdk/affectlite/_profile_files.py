"""Reading profile files: search path, YAML with the file and line of every key, ``extends`` and overrides.

Nothing here knows what a valid profile is: :class:`affectlite.options.ProfileDocument` validates what
:func:`load_merged` returns, and the locations collected here put file and line into its messages.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ._validation import did_you_mean as _did_you_mean
from ._validation import show as _show
from ._validation import typename as _typename
from .errors import ProfileError

_log = logging.getLogger("affectlite.profiles")
PROFILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_PROFILE_NAME = PROFILE_NAME
_MAX_EXTENDS = 8
Origins = dict[tuple[str, ...], str]


def bundled_profiles_dir() -> Path:
    """The folder of the profiles shipped inside the package (``affectlite/profiles``)."""
    return Path(__file__).resolve().with_name("profiles")


def _search_dirs(root: str) -> list[Path]:
    dirs = [Path(d) for d in os.environ.get("AFFECTLITE_PROFILE_PATH", "").split(os.pathsep) if d]
    dirs.append(Path(root) / "etc/affectlite/profiles")
    dirs.append(bundled_profiles_dir())
    return dirs


def looks_like_path(s: str) -> bool:
    return "/" in s or os.sep in s or s.endswith((".yaml", ".yml"))


def list_profiles(*, root: str = "/") -> list[str]:
    """Names of every profile that :func:`load_profile` can find by name (bundled, /etc, search path)."""
    names: set[str] = set()
    for d in _search_dirs(root):
        if d.is_dir():
            names.update(p.stem for p in d.glob("*.yaml") if _PROFILE_NAME.match(p.stem))
    return sorted(names)


def resolve(ref: str, root: str, relative_to: Path | None = None) -> Path:
    if looks_like_path(ref):
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


def read_yaml(text: str, source: str) -> tuple[Any, dict[tuple[str, ...], str]]:
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
class Layer:
    data: Any
    origins: dict[tuple[str, ...], str]
    source: str
    path: Path | None


def read_file(path: Path) -> Layer:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ProfileError(f"{path}: not UTF-8 text ({e}); save the profile as UTF-8") from None
    except OSError as e:
        raise ProfileError(f"{path}: cannot read the profile: {e.strerror or e}") from None
    data, origins = read_yaml(text, str(path))
    if data is None:
        raise ProfileError(f"{path}: the profile is empty; add at least one section or `extends: <profile>`")
    return Layer(data, origins, str(path), path)


def chain(leaf: Layer, root: str) -> list[Layer]:
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
            path = resolve(ref, root, cur.path.parent if cur.path else None)
        except ProfileError as e:
            raise ProfileError(f"{where}: extends: {e}") from None
        key = str(path.resolve())
        if key in seen:
            raise ProfileError(f"{where}: extends: {ref!r} leads back to a profile already in the chain "
                               f"({path}); remove the cycle")
        seen.add(key)
        cur = read_file(path)
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
                     root_hint: str, allowed: Sequence[str]) -> None:
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



@dataclass
class Merged:
    """A profile with ``extends`` resolved and overrides applied, not yet validated.

    Attributes:
        data: The merged mapping (``extends`` removed).
        origins: Key path -> ``file:line`` or ``override 'key'``, for messages.
        name: ``name`` from the leaf file, else the name it was loaded by (file name without ``.yaml``).
        source: The leaf file (or what a caller called the data).
        reason: Why this profile (for ``"auto"``, what was detected).
    """

    data: dict[str, Any]
    origins: Origins
    name: str
    source: str
    reason: str


def merge_layers(layers: Sequence[Layer], overrides: Mapping[str, Any] | None, *, name_hint: str, reason: str,
                 top_keys: Sequence[str]) -> Merged:
    """Merge a chain of layers (base first) and apply overrides.

    Raises:
        ProfileError: a layer is not a mapping, or an override is malformed.
    """
    merged: dict[str, Any] = {}
    origins: Origins = {}
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
        _apply_overrides(merged, overrides, origins, name_hint, top_keys)
    name = merged.get("name")
    return Merged(merged, origins, name if isinstance(name, str) and name else name_hint, leaf.source, reason)


def load_merged(name_or_path: str | os.PathLike[str], overrides: Mapping[str, Any] | None, *, top_keys: Sequence[str],
                root: str = "/") -> Merged:
    """Find, read and merge a profile (``"auto"``, a name or a path) and apply overrides.

    Raises:
        ProfileError: the profile is missing, not valid YAML, or its ``extends`` chain is broken.
    """
    if not isinstance(name_or_path, (str, os.PathLike)) or not str(os.fspath(name_or_path)).strip():
        raise ProfileError(f"profile must be 'auto', a profile name or a path, got {_show(name_or_path)}")
    ref = str(os.fspath(name_or_path))
    if isinstance(name_or_path, os.PathLike) and not looks_like_path(ref):
        ref = os.path.join(".", ref)  # a Path object is always a file, even without a slash
    if ref == "auto":
        from .devices import detect_device

        det = detect_device(root)
        ref, reason = det.profile, f"auto: {det.reason}"
    else:
        reason = f"requested {ref!r}"
    path = resolve(ref, root)
    layers = chain(read_file(path), root)
    return merge_layers(layers, overrides, name_hint=path.stem, reason=reason, top_keys=top_keys)


def apply_env(env: Mapping[str, str], environ: MutableMapping[str, str] | None = None, *, override: bool = False,
              name: str = "") -> dict[str, str]:
    """Set environment quirks; values the environment already has are kept unless ``override``.

    Returns:
        The variables that were set.
    """
    target = os.environ if environ is None else environ
    applied: dict[str, str] = {}
    for k, v in env.items():
        if override or k not in target:
            target[k] = v
            applied[k] = v
    if environ is None and applied:
        late = [m for m in ("cv2", "numpy") if m in sys.modules]
        blas = [k for k in applied if k.startswith(("OPENBLAS_", "OMP_", "MKL_", "GOMP_"))]
        if late and blas:
            _log.info("profile %s set %s after %s was imported; if it has no effect set it in the "
                      "environment before Python starts (the systemd unit's EnvironmentFile does)",
                      name, ", ".join(blas), " and ".join(late))
    return applied
