"""Device profiles: load, validate and override them; their JSON Schema; ``affectlite profile``.

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
    Defaults for every model: ``backend``, ``num_threads`` and ``delegates``, one value or one per model
    (``{face: 2, voice: 1, text: 1}``). A key set in the ``face``/``voice``/``text`` section itself wins.
``service``
    ``network: none`` (default: the systemd unit gets no network at all) or ``loopback``.

What a profile may contain is the struct :class:`~affectlite.options.ProfileDocument` (types, ranges,
choices and descriptions on its fields); :func:`json_schema` publishes it for editors
(``affectlite profile schema``; the shipped profiles point at the packaged copy). Every problem is reported
at once, each naming the file and line, the key path, the bad value and what is allowed.

The bundled profiles are package data (``affectlite/profiles/*.yaml``, the canonical copies);
``firmware_configs/profiles/`` in the source tree holds identical copies (a test keeps them equal).
A name is looked up in the folders of ``$AFFECTLITE_PROFILE_PATH`` (``os.pathsep``-separated), then in
``/etc/affectlite/profiles``, then among the bundled profiles. Anything that looks like a path
(contains a slash or ends in ``.yaml``/``.yml``) is read as a file. Which profile ``"auto"`` picks is
decided by :mod:`affectlite.devices`, only when asked, never at import.

``python -m affectlite.profiles`` (or ``affectlite profile``) lists, shows, validates and detects profiles,
and writes the JSON Schema (the Raspberry Pi install script uses it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import _profile_files as files
from . import _validation
from ._profile_files import bundled_profiles_dir, list_profiles
from .devices import Detection, detect_device
from .errors import ProfileError
from .options import InterpreterDefaults, PipelineOptions, ProfileDocument, ServiceOptions, profile_sections
from .options import json_schema as _json_schema

__all__ = [
    "Detection",
    "Profile",
    "bundled_profiles_dir",
    "describe_detection",
    "detect_device",
    "json_schema",
    "list_profiles",
    "load_profile",
    "main",
    "parse_overrides",
    "parse_profile",
    "schema_markdown",
    "schema_path",
]

#: Sections of a profile that are not option sections.
PROFILE_ONLY_KEYS: tuple[str, ...] = ProfileDocument.PROFILE_ONLY_KEYS
_TOP_KEYS = ProfileDocument.__struct_fields__


# ------------------------------------------------------------------------------------------- loading


def _profile(merged: files.Merged) -> Profile:
    data = ProfileDocument.check(merged.data, merged.origins, merged.name, merged.source)
    data.setdefault("name", merged.name)
    return Profile(name=merged.name, source=merged.source, reason=merged.reason, data=data)


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
    return _profile(files.load_merged(name_or_path, overrides, top_keys=_TOP_KEYS, root=root))


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
        parsed, origins = files.read_yaml(data, source)
        if parsed is None:
            raise ProfileError(f"{source}: the profile is empty; add at least one section or `extends: <profile>`")
    else:
        parsed, origins = data, {(): source}
    layers = files.chain(files.Layer(parsed, origins, source, None), root)
    return _profile(files.merge_layers(layers, overrides, name_hint=name or "custom", reason="given directly",
                                       top_keys=_TOP_KEYS))


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
        data: The validated, merged nested dict (the keys the files set: option sections plus ``env``,
            ``interpreter``, ``service``, ``name``, ``status``...). Treat it as read-only.
    """

    name: str
    source: str
    reason: str
    data: dict[str, Any] = field(compare=True)

    @property
    def env(self) -> dict[str, str]:
        """Environment quirks of this profile."""
        return {k: str(v) for k, v in self.data.get("env", {}).items()}

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
        return profile_sections(self.data)

    def get(self, dotted: str) -> Any:
        """A value by dotted key; option keys the profile does not set give their default.

        Raises:
            ProfileError: the key does not exist.
        """
        parts = dotted.split(".")
        if len(parts) == 2 and parts[0] in PipelineOptions.SECTIONS:
            sec, key = parts
            model = PipelineOptions.section_types()[sec]
            fields = model.__struct_fields__
            if key not in fields:
                raise ProfileError(f"unknown key {dotted!r}; allowed in {sec}: {', '.join(fields)}"
                                   + _validation.did_you_mean(key, fields))
            val = self.sections().get(sec, {}).get(key, model.default(key))
            return list(val) if isinstance(val, tuple) else val
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
        except ValueError as e:  # ConfigError
            raise ProfileError(str(e)) from None

    def apply_env(self, environ: MutableMapping[str, str] | None = None, *, override: bool = False) -> dict[str, str]:
        """Set the profile's ``env`` quirks; call it before OpenCV/numpy-heavy code is imported.

        Values the environment already has are kept unless ``override`` is true, so a user's setting wins.

        Args:
            environ: Mapping to update (default ``os.environ``).
            override: Replace existing values.

        Returns:
            The variables that were set.
        """
        return files.apply_env(self.env, environ, override=override, name=self.name)

    def env_file(self) -> str:
        """The ``env`` quirks as a systemd ``EnvironmentFile`` (also valid for ``sh``'s ``.``)."""
        lines = [f"# generated from affectlite profile {self.name} ({self.source}); do not edit"]
        for k, v in sorted(self.env.items()):
            q = v.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$").replace("`", "\\`")
            lines.append(f'{k}="{q}"')
        return "\n".join(lines) + "\n"

    def to_yaml(self) -> str:
        """The validated profile as YAML (``extends`` resolved, overrides applied)."""
        first: dict[str, Any] = {k: self.data[k] for k in ("name", "description", "status", "status_note")
                                 if k in self.data}
        return yaml.safe_dump({**first, **self.data}, sort_keys=False, default_flow_style=False)

    def describe(self) -> str:
        """One line: name, status, source and why it was chosen."""
        return f"{self.name} [{self.status}] from {self.source} ({self.reason})"


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


# ---------------------------------------------------------------------------------------- schema


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a profile file, generated from :class:`ProfileDocument`."""
    return _json_schema()


def json_schema_text() -> str:
    """:func:`json_schema` as the text of the shipped ``affectlite/schemas/profile.schema.json``."""
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"


def schema_path() -> Path:
    """The JSON Schema shipped in the package (``affectlite/schemas/profile.schema.json``)."""
    return Path(__file__).resolve().with_name("schemas") / "profile.schema.json"


def _shown_default(model: Any, key: str) -> str:
    d = model.default(key)
    d = list(d) if isinstance(d, tuple) else d
    shown = yaml.safe_dump(d, default_flow_style=True, sort_keys=False, width=1000).strip()
    return shown.removesuffix("...").strip()


def schema_markdown() -> str:
    """A Markdown table of every profile key, what it accepts, its default and meaning (for the docs)."""
    root = json_schema()
    rows = ["| key | allowed | default | meaning |", "|---|---|---|---|"]

    def row(name: str, node: Mapping[str, Any], default: str) -> None:
        allowed = _validation.describe(root, node, name.rsplit(".", 1)[-1])
        doc = " ".join(str(node.get("description", "")).split())
        rows.append(f"| `{name}` | {allowed.replace('|', '/')} | {default} | {doc.replace('|', '/')} |")

    for sec, model in PipelineOptions.section_types().items():
        for key, node in _validation.alternatives(root, root["properties"][sec])[0]["properties"].items():
            row(f"{sec}.{key}", node, f"`{_shown_default(model, key)}`")
    for top, model in (("interpreter", InterpreterDefaults), ("service", ServiceOptions)):
        for key, node in _validation.alternatives(root, root["properties"][top])[0].get("properties", {}).items():
            row(f"{top}.{key}", node, f"`{_shown_default(model, key)}`")
    rows.append("| `env.<NAME>` | a single-line string or number | | "
                + " ".join(root["properties"]["env"]["description"].split()) + " |")
    for key in ("status", "extends", "name", "description", "status_note"):
        node = root["properties"][key]
        default = f"`{node['default']}`" if node.get("default") is not None else ""
        row(key, node, default)
    return "\n".join(rows) + "\n"


# ---------------------------------------------------------------------------------------------- CLI


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """The subcommands of ``affectlite profile`` / ``python -m affectlite.profiles``."""
    ap.add_argument("--root", default="/", help="filesystem root for detection (default /)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="list profile names")
    sub.add_parser("detect", help="show which profile 'auto' picks and why")
    s = sub.add_parser("schema", help="write the JSON Schema of profile files (for editors and CI)")
    s.add_argument("-o", "--output", metavar="FILE", help="write to FILE (atomically) instead of stdout")
    sub.add_parser("reference", help="print the key reference as Markdown (the table in docs/deployment.md)")
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


def _write(text: str, output: str | None) -> int:
    if not output:
        sys.stdout.write(text)
        return 0
    from ._io import atomic_write_text

    try:
        atomic_write_text(output, text)
    except OSError as e:
        print(f"affectlite profile: error: cannot write {output}: {e.strerror or e}", file=sys.stderr)
        return 2
    return 0


def run(args: argparse.Namespace) -> int:
    """Run a parsed ``affectlite profile`` command; 0 on success, 2 on a profile or file error."""
    try:
        if args.cmd == "list":
            print("\n".join(list_profiles(root=args.root)))
        elif args.cmd == "detect":
            print(describe_detection(args.root))
        elif args.cmd == "schema":
            return _write(json_schema_text(), args.output)
        elif args.cmd == "reference":
            sys.stdout.write(schema_markdown())
        elif args.cmd == "validate":  # every file is checked, then the exit code says whether all passed
            bad = 0
            for ref in args.profiles:
                try:
                    prof = load_profile(ref, root=args.root)
                    prof.to_options()
                except ProfileError as e:
                    bad += 1
                    print(f"affectlite profile: error: {e}", file=sys.stderr)
                    continue
                print(f"ok: {prof.describe()}")
            return 2 if bad else 0
        else:
            prof = load_profile(args.profile, parse_overrides(args.set), root=args.root)
            if args.cmd == "show":
                text = prof.to_yaml()
            elif args.cmd == "env":
                text = prof.env_file()
            else:
                val = prof.get(args.key)
                text = (val if isinstance(val, str) else yaml.safe_dump(val).strip().removesuffix("...").strip()) + "\n"
            return _write(text, args.output)
    except ProfileError as e:
        print(f"affectlite profile: error: {e}", file=sys.stderr)
        return 2
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m affectlite.profiles``: list, show, get, env, detect, validate, schema, reference."""
    ap = argparse.ArgumentParser(prog="python -m affectlite.profiles", description=main.__doc__)
    add_arguments(ap)
    return run(ap.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
