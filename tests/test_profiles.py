"""Device profiles: bundled profiles, validation messages, overrides, extends, env quirks, auto-detection."""

from __future__ import annotations

import filecmp
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from affectlite import PipelineOptions, ProfileError
from affectlite import _validation as V
from affectlite import profiles as P
from affectlite.options import ProfileDocument

REPO = Path(__file__).resolve().parents[1]
BUNDLED = P.bundled_profiles_dir()
FIRMWARE = REPO / "firmware_configs" / "profiles"
EXPECTED = {"rpi4", "rpi5", "rpi-zero2w", "jetson-nano", "jetson-orin-nano", "x86_64", "arm64"}


def write(tmp_path: Path, text: str, name: str = "p.yaml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text), encoding="utf-8")
    return p


def problems_of(exc: pytest.ExceptionInfo[ProfileError]) -> list[str]:
    return [ln.strip() for ln in str(exc.value).splitlines()[1:] if ln.strip()]


# ------------------------------------------------------------------------------------- bundled profiles


def test_every_target_has_a_bundled_profile() -> None:
    assert set(P.list_profiles()) >= EXPECTED
    assert {p.stem for p in BUNDLED.glob("*.yaml")} == EXPECTED


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bundled_profile_validates_and_builds_options(name: str) -> None:
    prof = P.load_profile(name)
    assert prof.name == name
    assert prof.source == str(BUNDLED / f"{name}.yaml")
    opts = prof.to_options()
    assert isinstance(opts, PipelineOptions)
    assert opts.profile == name
    raw = yaml.safe_load((BUNDLED / f"{name}.yaml").read_text(encoding="utf-8"))
    # The issue asks every profile to set these device-specific keys explicitly.
    for key in ("camera.backend", "camera.width", "camera.height", "camera.fps", "face.detect_every",
                "face.detect_width", "audio.backend", "audio.sample_rate", "voice.window_s", "voice.hop_s",
                "interpreter.backend", "interpreter.num_threads", "interpreter.delegates", "queues.frames",
                "queues.audio", "service.network"):
        sec, k = key.split(".")
        assert k in raw.get(sec, {}), f"{name}.yaml does not set {key}"
    # interpreter defaults land on the model sections; the values come from the file, not the defaults
    threads = raw["interpreter"]["num_threads"]
    assert opts.face.num_threads == threads["face"]
    assert opts.voice.num_threads == threads["voice"]
    assert opts.text.num_threads == threads["text"]
    assert opts.camera.fps == float(raw["camera"]["fps"])
    assert prof.network == "none"


def test_firmware_configs_copies_equal_the_packaged_profiles() -> None:
    """Canonical profiles are package data; firmware_configs/profiles must hold identical copies."""
    shipped = sorted(p.name for p in BUNDLED.glob("*.yaml"))
    copies = sorted(p.name for p in FIRMWARE.glob("*.yaml"))
    assert shipped == copies
    _, mismatch, errors = filecmp.cmpfiles(BUNDLED, FIRMWARE, shipped, shallow=False)
    assert not mismatch and not errors, (
        f"out of sync: {mismatch + errors}; run: cp sdk/affectlite/profiles/*.yaml firmware_configs/profiles/")


def test_device_specific_values() -> None:
    nano = P.load_profile("jetson-nano")
    assert nano.status == "unsupported"
    assert "3.6" in nano.data["status_note"] and "3.10" in nano.data["status_note"]
    assert nano.env == {"OPENBLAS_CORETYPE": "ARMV8"}
    orin = P.load_profile("jetson-orin-nano").to_options()
    assert orin.camera.backend == "opencv"
    assert isinstance(orin.camera.device, str) and orin.camera.device.startswith("nvarguscamerasrc")
    assert "appsink" in orin.camera.device and "\n" not in orin.camera.device
    pi5, zero = P.load_profile("rpi5").to_options(), P.load_profile("rpi-zero2w").to_options()
    assert (pi5.camera.inference_width, pi5.camera.inference_height) == (640, 360)
    assert zero.camera.fps < pi5.camera.fps and zero.face.max_faces < pi5.face.max_faces
    assert zero.queues.audio < pi5.queues.audio
    assert P.load_profile("x86_64").to_options().camera.device == 0


def test_jetson_usb_example_extends_orin() -> None:
    prof = P.load_profile(str(REPO / "firmware_configs/jetson/usb-camera.yaml"))
    assert prof.name == "jetson-orin-nano-usb"
    opts = prof.to_options()
    assert str(opts.camera.device).startswith("v4l2src device=/dev/video0")
    assert opts.face.num_threads == 3  # inherited from jetson-orin-nano
    assert prof.status == "supported"


# ------------------------------------------------------------------------------------ schema drift


def test_every_key_has_a_range_or_choices_in_the_schema() -> None:
    """Numbers have both bounds, text has choices or must be non-empty: nothing is left unchecked."""
    root = P.json_schema()
    for sec, model in PipelineOptions.section_types().items():
        for key in model.__struct_fields__:
            node = V.node_at(root, (sec, key))
            assert node is not None and node.get("description"), f"{sec}.{key} has no description"
            for alt in V.alternatives(root, node):
                items = V.alternatives(root, alt.get("items", {})) if alt.get("type") == "array" else [alt]
                values = [V._deref(root, alt["additionalProperties"])] if isinstance(
                    alt.get("additionalProperties"), dict) else items
                for a in values:
                    if a.get("type") in ("integer", "number"):
                        assert {"minimum", "exclusiveMinimum"} & set(a) and {"maximum", "exclusiveMaximum"} & set(a), \
                            f"{sec}.{key} has no range"
                    if a.get("type") == "string" and f"{sec}.{key}" != "privacy.declared_purpose":  # "": none
                        assert "enum" in a or "pattern" in a, f"{sec}.{key} accepts any string"


def test_schema_is_derived_from_the_option_models() -> None:
    root = P.json_schema()
    assert list(PipelineOptions.SECTIONS) == [s for s in ProfileDocument.__struct_fields__
                                              if s in PipelineOptions.SECTIONS]
    assert set(ProfileDocument.__struct_fields__) == {*PipelineOptions.SECTIONS, *P.PROFILE_ONLY_KEYS}
    for sec, model in PipelineOptions.section_types().items():
        node = V.node_at(root, (sec,))
        assert node is not None
        assert list(V.alternatives(root, node)[0]["properties"]) == list(model.__struct_fields__)
    assert "align" in PipelineOptions.section_types()["face"].__struct_fields__


def test_shipped_backends_match_the_interpreter_registry() -> None:
    from affectlite.interpreters import BACKENDS
    from affectlite.options import SHIPPED_BACKENDS

    assert ("auto", *BACKENDS) == SHIPPED_BACKENDS


def _affectlite_imports(module: str) -> set[str]:
    """The affectlite modules a module imports, anywhere in it (also inside functions)."""
    import ast

    tree = ast.parse((REPO / "sdk" / "affectlite" / f"{module}.py").read_text(encoding="utf-8"))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            out.update([node.module] if node.module else [a.name for a in node.names])
        elif isinstance(node, ast.Import):
            out.update(a.name.split(".", 1)[1] for a in node.names if a.name.startswith("affectlite."))
    return out


def test_imports_go_one_way() -> None:
    """devices and _profile_files below options below profiles: options never import profiles."""
    assert "profiles" not in _affectlite_imports("options")
    assert _affectlite_imports("devices") == set()  # deciding which profile fits knows nothing of validation
    assert not {"options", "profiles"} & _affectlite_imports("_profile_files")
    assert not {"options", "profiles", "_profile_files"} & _affectlite_imports("_validation")


def test_docs_reference_table_is_current() -> None:
    doc = (REPO / "docs" / "deployment.md").read_text(encoding="utf-8")
    assert P.schema_markdown() in doc, "regenerate with: affectlite profile reference"


# ------------------------------------------------------------------------------------ JSON Schema

MODELINE = "# yaml-language-server: $schema=../schemas/profile.schema.json"
SHIPPED_YAML = sorted([*BUNDLED.glob("*.yaml"), *FIRMWARE.glob("*.yaml"),
                       REPO / "firmware_configs" / "jetson" / "usb-camera.yaml"])


def jsonschema_errors(data: Any) -> list[str]:
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(P.json_schema())

    def leaves(errors: Any) -> list[str]:  # the errors inside anyOf, where the value is
        return [m for e in errors for m in (leaves(e.context) if e.context else
                                            [f"{'.'.join(map(str, e.absolute_path))}: {e.message}"])]

    return leaves(validator.iter_errors(data))


def test_schema_command_writes_the_generated_schema(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from affectlite.cli import main as cli_main

    out = tmp_path / "deep" / "profile.schema.json"
    assert cli_main(["profile", "schema", "-o", str(out)]) == 0
    written = json.loads(out.read_text(encoding="utf-8"))
    assert written == P.json_schema()
    assert written["$schema"].endswith("/2020-12/schema")
    assert written["properties"]["camera"] and "fps" in written["$defs"]["CameraOptions"]["properties"]
    assert [p.name for p in out.parent.iterdir()] == ["profile.schema.json"]  # atomic: no temporary left
    assert P.main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out) == written
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert P.main(["schema", "-o", str(blocker / "s.json")]) == 2
    assert "cannot write" in capsys.readouterr().err


@pytest.mark.parametrize("copy", [P.schema_path(), REPO / "firmware_configs" / "schemas" / "profile.schema.json"])
def test_shipped_schema_equals_the_generated_one(copy: Path) -> None:
    assert copy.read_text(encoding="utf-8") == P.json_schema_text(), (
        "regenerate: affectlite profile schema -o sdk/affectlite/schemas/profile.schema.json && "
        "cp sdk/affectlite/schemas/profile.schema.json firmware_configs/schemas/")
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.Draft202012Validator.check_schema(json.loads(copy.read_text(encoding="utf-8")))


@pytest.mark.parametrize("path", SHIPPED_YAML, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shipped_profiles_reference_the_schema_and_validate_against_it(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    first = text.splitlines()[0]
    assert first == MODELINE, f"{path}: the first line must be {MODELINE!r}"
    target = (path.parent / first.split("$schema=", 1)[1]).resolve()
    assert target.is_file(), f"{path}: the schema it names ({target}) does not exist"
    assert json.loads(target.read_text(encoding="utf-8")) == P.json_schema()
    assert jsonschema_errors(yaml.safe_load(text)) == []
    P.load_profile(str(path)).to_options()  # and our loader agrees


@pytest.mark.parametrize(("body", "schema_says", "loader_says"), [
    ("camera:\n  fps: -3\n", "camera.fps: -3 is less than or equal to the minimum of 0",
     ":4: camera.fps: -3 is out of range; allowed: 0 < camera.fps <= 240"),
    ("face:\n  detector: mtcnn\n", "face.detector: 'mtcnn' is not one of",
     ":4: face.detector: 'mtcnn' is not allowed; choose one of: haar, blazeface, yunet"),
    ("camera:\n  fsp: 10\n", "camera: Additional properties are not allowed ('fsp' was unexpected)",
     ":4: camera.fsp: unknown key; allowed in camera: enabled"),
    ("fusion:\n  weights: {face: 1, gaze: 2}\n", "fusion.weights: 'gaze' is not one of",
     "fusion.weights.gaze: unknown key; allowed: face, voice, text"),
    ("interpreter:\n  num_threads: {face: 0}\n", "interpreter.num_threads",
     ":4: interpreter.num_threads.face: 0 is out of range; allowed: 1 <= interpreter.num_threads.face <= 64"),
    ("face:\n  delegates: [a.so, '']\n", "face.delegates.1: '' does not match",
     "face.delegates: '' in the list is not a non-empty string"),
    ("env:\n  1BAD: x\n", "env: '1BAD' does not match", "'1BAD' is not a valid environment variable name"),
])
def test_a_bad_value_is_rejected_by_the_schema_and_the_loader(tmp_path: Path, body: str, schema_says: str,
                                                             loader_says: str) -> None:
    path = write(tmp_path, f"{MODELINE}\nextends: rpi5\n{body}")
    errors = jsonschema_errors(yaml.safe_load(path.read_text(encoding="utf-8")))
    assert any(schema_says in e for e in errors), errors
    with pytest.raises(ProfileError) as exc:
        P.load_profile(str(path))
    assert loader_says in str(exc.value)
    assert str(path) in str(exc.value)


def test_a_profile_that_uses_the_schema_validates_with_both(tmp_path: Path) -> None:
    path = write(tmp_path, f"""\
        {MODELINE}
        extends: rpi5
        description: kiosk in the lobby
        camera: {{fps: 12, device: /dev/video2}}
        interpreter: {{num_threads: {{face: 3}}, delegates: {{face: [libedgetpu.so.1]}}}}
        fusion: {{weights: {{text: 0.1}}}}
        env: {{OMP_NUM_THREADS: 2}}
        """)
    assert jsonschema_errors(yaml.safe_load(path.read_text(encoding="utf-8"))) == []
    prof = P.load_profile(str(path))
    opts = prof.to_options()
    assert (opts.camera.fps, opts.camera.device, opts.face.num_threads, opts.voice.num_threads) == (
        12.0, "/dev/video2", 3, 1)
    assert opts.face.delegates == ("libedgetpu.so.1",) and prof.env["OMP_NUM_THREADS"] == "2"
    assert opts.fusion.weights == {"face": 1.0, "voice": 0.8, "text": 0.1}


# ------------------------------------------------------------------------------------ options in code


def test_options_built_in_code_are_validated_with_the_same_messages() -> None:
    from affectlite.errors import ConfigError
    from affectlite.options import CameraOptions, FaceOptions, FusionOptions

    with pytest.raises(ConfigError) as exc:
        FaceOptions(max_faces=0, detector="mtcnn", delegates=("a.so", 3))  # type: ignore[arg-type]
    msg = str(exc.value)
    assert "invalid FaceOptions (3 problems)" in msg
    assert "face.max_faces: 0 is out of range; allowed: 1 <= face.max_faces <= 64" in msg
    assert "face.detector: 'mtcnn' is not allowed; choose one of: haar, blazeface, yunet" in msg
    assert "face.delegates: 3 in the list is not a non-empty string" in msg
    with pytest.raises(ConfigError, match=r"camera\.fsp: unknown key; allowed in camera: .*did you mean 'fps'"):
        PipelineOptions().replace(**{"camera.fsp": 3})
    with pytest.raises(ConfigError, match=r"unknown section 'camra'.*did you mean 'camera'"):
        PipelineOptions().replace(**{"camra.fps": 3})
    with pytest.raises(ConfigError, match=r"camera\.fps: 0 is out of range"):
        PipelineOptions().replace(**{"camera.fps": 0})
    with pytest.raises(ConfigError, match=r"voice\.hop_s: 3\.0 is larger than voice\.window_s"):
        PipelineOptions(voice={"hop_s": 3})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"fusion\.weights\.gaze: unknown key; allowed: face, voice, text"):
        FusionOptions(weights={"gaze": 1.0})  # type: ignore[dict-item]
    with pytest.raises(ConfigError, match="camera: must be a mapping of keys, got an integer 5"):
        PipelineOptions.from_dict({"camera": 5})
    cam = CameraOptions(fps=10)
    assert cam.fps == 10.0 and isinstance(cam.fps, float)
    with pytest.raises(AttributeError):
        cam.fps = 5  # type: ignore[misc]
    opts = PipelineOptions().replace(**{"face.delegates": ["x.so"], "camera.fps": 5})
    assert opts.face.delegates == ("x.so",) and opts.camera.fps == 5.0
    assert opts.replace(camera=CameraOptions(fps=7)).camera.fps == 7.0
    assert PipelineOptions() == PipelineOptions() and opts != PipelineOptions()


def test_registered_backends_are_accepted_where_the_schema_lists_the_shipped_ones() -> None:
    from affectlite.errors import ConfigError
    from affectlite.interpreters import register_backend
    from affectlite.options import FaceOptions

    with pytest.raises(ConfigError, match=r"face\.backend: 'profile-test-npu' is not allowed; choose one of: auto"):
        FaceOptions(backend="profile-test-npu")
    register_backend("profile-test-npu", lambda *a: None)  # type: ignore[arg-type,return-value]
    assert FaceOptions(backend="profile-test-npu").backend == "profile-test-npu"
    prof = P.parse_profile({"interpreter": {"backend": {"voice": "profile-test-npu"}}}, name="npu")
    assert prof.to_options().voice.backend == "profile-test-npu"
    assert "profile-test-npu" not in P.json_schema()["$defs"]["FaceOptions"]["properties"]["backend"]["enum"]


# ------------------------------------------------------------------------------------ bad profiles

BAD_CASES = [
    ("camera:\n  fps: -3\n", ":2: camera.fps: -3 is out of range; allowed: 0 < camera.fps <= 240"),
    ("camera:\n  fps: 500\n", ":2: camera.fps: 500 is out of range"),
    ("camera:\n  fsp: 10\n", ":2: camera.fsp: unknown key; allowed in camera: enabled, backend,"),
    ("camera:\n  fsp: 10\n", "did you mean 'fps'?"),
    ("camra:\n  fps: 10\n", ":1: camra: unknown key; allowed in a profile: camera, audio"),
    ("face:\n  detect_every: 2.5\n", ":2: face.detect_every: 2.5 is not an integer; expected an integer with "
                                     "1 <= face.detect_every <= 120"),
    ("face:\n  detect_every: '3'\n", "face.detect_every: '3' is a string; expected an integer"),
    ("face:\n  margin: yes\n", "face.margin: True is a boolean; expected a number with 0 <= face.margin <= 1"),
    ("face:\n  detector: mtcnn\n", "face.detector: 'mtcnn' is not allowed; choose one of: haar, blazeface, yunet"),
    ("face:\n  backend: tflite\n", "face.backend: 'tflite' is not allowed; choose one of: auto, litert,"),
    ("camera:\n  backend: null\n", "camera.backend: null is not allowed; expected one of auto, picamera2"),
    ("camera:\n  device: -1\n", "camera.device: -1 is out of range; allowed: 0 <= camera.device <= 63"),
    ("camera:\n  device: ''\n", "camera.device: '' is empty"),
    ("camera:\n  fps: .nan\n", "camera.fps: nan is not a finite number"),
    ("camera: 5\n", ":1: camera: must be a mapping of keys, got an integer 5"),
    ("fusion:\n  weights: {face: 1, gaze: 2}\n", "fusion.weights.gaze: unknown key; allowed: face, voice, text"),
    ("fusion:\n  weights: {face: -1}\n", "fusion.weights.face: -1 is out of range; allowed: 0 <= fusion.weights.face"),
    ("face:\n  delegates: [libedgetpu.so.1, 3]\n", "face.delegates: 3 in the list is not a non-empty string"),
    ("interpreter:\n  num_threads: 0\n", "interpreter.num_threads: 0 is out of range; allowed: 1 <= "
                                         "interpreter.num_threads <= 64 (or a mapping of face, voice, text"),
    ("interpreter:\n  num_threads: {face: 2, gpu: 1}\n", "interpreter.num_threads.gpu: unknown key; allowed in "
                                                         "interpreter.num_threads: face, voice, text"),
    ("interpreter:\n  delegates: {text: [x.so]}\n", "interpreter.delegates.text: unknown key; allowed in "
                                                    "interpreter.delegates: face, voice"),
    ("env:\n  OPENBLAS_CORETYPE: true\n", "env.OPENBLAS_CORETYPE: True is a boolean; expected a string or number"),
    ("env:\n  1BAD: x\n", "'1BAD' is not a valid environment variable name"),
    ("service:\n  network: full\n", "service.network: 'full' is not allowed; choose one of: none, loopback"),
    ("status: beta\n", "status: 'beta' is not allowed; choose one of: supported, experimental, unsupported"),
    ("voice:\n  window_s: 1.0\n  hop_s: 1.5\n", "voice.hop_s: 1.5 is larger than voice.window_s (1.0)"),
    ("voice:\n  hop_s: 3\n", "voice.hop_s: 3.0 is larger than voice.window_s (2.0)"),
    ("camera:\n  width: 640\n  height: 480\n  inference_width: 1280\n  inference_height: 720\n",
     "inference size 1280x720 is larger than the capture size 640x480"),
    ("camera:\n  inference_width: 320\n", "set both camera.inference_width and camera.inference_height"),
    ("privacy:\n  deployment_context: office\n", "privacy.deployment_context: 'office' is not allowed; choose "
                                                 "one of: public, kiosk"),
    ("true: 1\n", "key True is not a string (YAML reads unquoted yes/no/on/off as booleans: quote the key)"),
]


@pytest.mark.parametrize(("text", "expected"), BAD_CASES)
def test_bad_profile_messages(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ProfileError) as exc:
        P.load_profile(str(path))
    msg = str(exc.value)
    assert expected in msg
    assert str(path) in msg  # names the file
    assert "profile 'p' is invalid" in msg


def test_all_problems_reported_at_once_in_file_order(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        camera:
          fps: 0
          backend: webcam
        face:
          max_faces: 0
        queues:
          frames: 1000
        """)
    with pytest.raises(ProfileError) as exc:
        P.load_profile(str(path))
    probs = problems_of(exc)
    assert "(4 problems)" in str(exc.value)
    assert [p.split(": ")[1] for p in probs] == ["camera.fps", "camera.backend", "face.max_faces", "queues.frames"]
    assert [int(p.split(":")[1]) for p in probs] == [2, 3, 5, 7]


@pytest.mark.parametrize(("text", "expected"), [
    ("camera:\n  fps: [3\n", ":3: YAML syntax error"),
    ("camera:\n  fps: 3\n  fps: 4\n", ":3: YAML syntax error: duplicate key 'fps' (first on line 2)"),
    ("camera:\n\tfps: 3\n", "YAML syntax error"),
    ("- camera\n- face\n", "a profile must be a mapping of sections (camera:, face:, ...), got a list"),
    ("", "the profile is empty"),
    ("camera:\n  device: 2024-13-45\n", "YAML value error"),
])
def test_yaml_level_errors(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ProfileError) as exc:
        P.load_profile(str(path))
    assert expected in str(exc.value)
    assert str(path) in str(exc.value)


def test_unknown_name_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match=r"unknown profile 'rpi6'; did you mean 'rpi5'\? Available: auto, arm64"):
        P.load_profile("rpi6")
    with pytest.raises(ProfileError, match=r"profile file .*nope\.yaml does not exist"):
        P.load_profile(str(tmp_path / "nope.yaml"))
    with pytest.raises(ProfileError, match="is not a profile name or a path"):
        P.load_profile("rpi 5")
    with pytest.raises(ProfileError, match="profile must be 'auto', a profile name or a path, got None"):
        P.load_profile(None)  # type: ignore[arg-type]
    assert P.load_profile(BUNDLED / "rpi4.yaml").name == "rpi4"  # a Path object


def test_yaml_anchors_and_merge_keys_work(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        x-common: &common {face: 2, voice: 1}
        """)
    with pytest.raises(ProfileError, match="x-common: unknown key"):
        P.load_profile(str(path))
    path = write(tmp_path, """\
        camera: &cam
          fps: 12
        interpreter:
          num_threads:
            <<: {face: 3, voice: 2}
            voice: 1
        """, "anchors.yaml")
    opts = P.load_profile(str(path)).to_options()
    assert (opts.face.num_threads, opts.voice.num_threads, opts.camera.fps) == (3, 1, 12.0)


# ------------------------------------------------------------------------------------ extends


def test_extends_merges_and_child_wins(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        extends: rpi5
        description: my kiosk
        camera:
          fps: 12
        fusion:
          weights: {text: 0.1}
        service:
          network: loopback
        """, "kiosk.yaml")
    prof = P.load_profile(str(path))
    opts = prof.to_options()
    assert prof.name == "kiosk" and prof.status == "supported"
    assert opts.camera.fps == 12.0
    assert opts.camera.width == 1280  # from rpi5
    assert opts.face.num_threads == 2  # rpi5 interpreter defaults
    assert opts.fusion.weights == {"face": 1.0, "voice": 0.8, "text": 0.1}  # mapping merged key by key
    assert prof.network == "loopback"
    assert prof.env == {"LIBCAMERA_LOG_LEVELS": "*:WARN"}


def test_extends_relative_path_chain_and_errors(tmp_path: Path) -> None:
    write(tmp_path, "extends: rpi4\nface:\n  max_faces: 2\n", "base.yaml")
    sub = tmp_path / "sub"
    sub.mkdir()
    leaf = write(sub, "extends: ../base.yaml\ncamera:\n  fps: -1\n", "leaf.yaml")
    with pytest.raises(ProfileError) as exc:
        P.load_profile(str(leaf))
    assert f"{leaf}:3: camera.fps: -1 is out of range" in str(exc.value)  # located in the leaf file
    bad_base = write(tmp_path, "face:\n  max_faces: 99\n", "badbase.yaml")
    child = write(tmp_path, "extends: badbase.yaml\ncamera:\n  fps: 5\n", "child.yaml")
    with pytest.raises(ProfileError, match=re.escape(f"{bad_base}:2: face.max_faces: 99 is out of range")):
        P.load_profile(str(child))
    write(tmp_path, "extends: b.yaml\n", "a.yaml")
    write(tmp_path, "extends: a.yaml\n", "b.yaml")
    with pytest.raises(ProfileError, match="leads back to a profile already in the chain"):
        P.load_profile(str(tmp_path / "a.yaml"))
    missing = write(tmp_path, "extends: rpi9\n", "m.yaml")
    with pytest.raises(ProfileError, match=re.escape(f"{missing}:1: extends: unknown profile 'rpi9'")):
        P.load_profile(str(missing))


def test_profile_search_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "extends: arm64\ncamera:\n  fps: 7\n", "site.yaml")
    monkeypatch.setenv("AFFECTLITE_PROFILE_PATH", str(tmp_path))
    assert "site" in P.list_profiles()
    assert P.load_profile("site").to_options().camera.fps == 7.0
    etc = tmp_path / "root" / "etc" / "affectlite" / "profiles"
    etc.mkdir(parents=True)
    write(etc, "extends: x86_64\n", "lab.yaml")
    assert P.load_profile("lab", root=str(tmp_path / "root")).name == "lab"


# ------------------------------------------------------------------------------------ overrides


def test_overrides_typed_and_validated() -> None:
    prof = P.load_profile("rpi4", {"camera.fps": 10, "face.detect_every": 2, "interpreter.num_threads": 4,
                                   "voice.num_threads": 1, "env.OMP_NUM_THREADS": 1})
    opts = prof.to_options()
    assert (opts.camera.fps, opts.face.detect_every) == (10.0, 2)
    assert (opts.face.num_threads, opts.text.num_threads, opts.voice.num_threads) == (4, 4, 1)
    assert prof.env["OMP_NUM_THREADS"] == "1"
    with pytest.raises(ProfileError) as exc:
        P.load_profile("rpi4", {"camera.fps": 0})
    assert "override 'camera.fps': camera.fps: 0 is out of range; allowed: 0 < camera.fps <= 240" in str(exc.value)
    with pytest.raises(ProfileError, match=r"override 'camera.fsp': camera.fsp: unknown key.*did you mean 'fps'"):
        P.load_profile("rpi4", {"camera.fsp": 10})
    with pytest.raises(ProfileError, match=r"unknown section 'camrea'.*did you mean 'camera'"):
        P.load_profile("rpi4", {"camrea.fps": 10})
    with pytest.raises(ProfileError, match=r"camera\.fps is 15, not a mapping"):
        P.load_profile("rpi4", {"camera.fps.max": 10})
    with pytest.raises(ProfileError, match="keys are dotted paths"):
        P.load_profile("rpi4", {"camera.": 10})
    with pytest.raises(ProfileError, match="`extends` cannot be overridden"):
        P.load_profile("rpi4", {"extends": "rpi5"})


def test_overrides_through_pipeline_options() -> None:
    opts = PipelineOptions.from_profile("rpi-zero2w", overrides={"camera.fps": 5}, face__max_faces=2)
    assert (opts.camera.fps, opts.face.max_faces, opts.profile) == (5.0, 2, "rpi-zero2w")


def test_model_paths_per_modality_and_enabled_only() -> None:
    opts = PipelineOptions().replace(**{"face.model_path": "f.tflite", "audio.enabled": False})
    assert opts.model_paths() == {"face": "f.tflite", "voice": None, "text": None}
    assert opts.model_paths(enabled_only=True) == {"face": "f.tflite", "text": None}  # no audio: no voice
    assert "face" not in opts.replace(**{"camera.enabled": False}).model_paths(enabled_only=True)


def test_parse_overrides_from_cli_strings() -> None:
    ov = P.parse_overrides(["camera.fps=10", "camera.device=/dev/video2", "face.delegates=[a.so, b.so]",
                            "privacy.declared_purpose=", "camera.enabled=false", "face.margin=0.2"])
    assert ov == {"camera.fps": 10, "camera.device": "/dev/video2", "face.delegates": ["a.so", "b.so"],
                  "privacy.declared_purpose": "", "camera.enabled": False, "face.margin": 0.2}
    with pytest.raises(ProfileError, match="must look like key=value"):
        P.parse_overrides(["camera.fps"])
    with pytest.raises(ProfileError, match="not valid YAML"):
        P.parse_overrides(["camera.device=[oops"])


def test_section_keys_win_over_interpreter_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        interpreter: {backend: litert, num_threads: 3, delegates: {face: [libedgetpu.so.1]}}
        voice: {num_threads: 1}
        """)
    opts = P.load_profile(str(path)).to_options()
    assert (opts.face.backend, opts.voice.backend, opts.text.backend) == ("litert",) * 3
    assert (opts.face.num_threads, opts.voice.num_threads, opts.text.num_threads) == (3, 1, 3)
    assert opts.face.delegates == ("libedgetpu.so.1",) and opts.voice.delegates == ()


def test_get_and_to_yaml_round_trip(tmp_path: Path) -> None:
    prof = P.load_profile("rpi5")
    assert prof.get("camera.fps") == 30.0
    assert prof.get("camera.loop") is False  # default of a key the profile does not set
    assert prof.get("service.network") == "none" and prof.get("status") == "supported"
    with pytest.raises(ProfileError, match=r"unknown key 'camera\.nope'"):
        prof.get("camera.nope")
    copy = write(tmp_path, prof.to_yaml(), "copy.yaml")
    again = P.load_profile(str(copy))
    assert again.to_options() == prof.to_options()


# ------------------------------------------------------------------------------------ env quirks


def test_apply_env_keeps_user_values_unless_override() -> None:
    prof = P.load_profile("jetson-nano")
    env: dict[str, str] = {}
    assert prof.apply_env(env) == {"OPENBLAS_CORETYPE": "ARMV8"}
    assert env == {"OPENBLAS_CORETYPE": "ARMV8"}
    env = {"OPENBLAS_CORETYPE": "CORTEXA57"}
    assert prof.apply_env(env) == {}
    assert env["OPENBLAS_CORETYPE"] == "CORTEXA57"
    assert prof.apply_env(env, override=True) == {"OPENBLAS_CORETYPE": "ARMV8"}


def test_env_file_is_valid_for_sh(tmp_path: Path) -> None:
    prof = P.parse_profile({"env": {"A": 'x "y" $HOME `id` \\ z', "B": 3}}, name="t")
    f = write(tmp_path, prof.env_file(), "profile.env")
    out = subprocess.run(["sh", "-c", f'. "{f}"; printf "%s|%s" "$A" "$B"'], capture_output=True, text=True,
                         check=True).stdout
    assert out == 'x "y" $HOME `id` \\ z|3'


# ------------------------------------------------------------------------------------ detection


def fake_root(tmp_path: Path, model: str | None = None, cpuinfo: str | None = None,
              compatible: str | None = None, sys_model: str | None = None) -> str:
    root = tmp_path / "root"
    (root / "proc").mkdir(parents=True, exist_ok=True)
    if model is not None:
        (root / "proc/device-tree").mkdir(parents=True, exist_ok=True)
        (root / "proc/device-tree/model").write_bytes(model.encode() + b"\x00")
    if compatible is not None:
        (root / "proc/device-tree").mkdir(parents=True, exist_ok=True)
        (root / "proc/device-tree/compatible").write_bytes(compatible.replace(" ", "\x00").encode() + b"\x00")
    if sys_model is not None:
        (root / "sys/firmware/devicetree/base").mkdir(parents=True, exist_ok=True)
        (root / "sys/firmware/devicetree/base/model").write_bytes(sys_model.encode() + b"\x00")
    if cpuinfo is not None:
        (root / "proc/cpuinfo").write_text(cpuinfo)
    return str(root)


def arm_cpuinfo(part: str, n: int = 4, model: str | None = None) -> str:
    cores = "".join(f"processor\t: {i}\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU part\t: {part}\n\n"
                    for i in range(n))
    return cores + (f"Model\t\t: {model}\n" if model else "")


@pytest.mark.parametrize(("model", "expected", "warns"), [
    ("Raspberry Pi 5 Model B Rev 1.0", "rpi5", None),
    ("Raspberry Pi Compute Module 5 Rev 1.0", "rpi5", None),
    ("Raspberry Pi 4 Model B Rev 1.4", "rpi4", None),
    ("Raspberry Pi 400 Rev 1.0", "rpi4", None),
    ("Raspberry Pi Compute Module 4 Rev 1.0", "rpi4", None),
    ("Raspberry Pi Zero 2 W Rev 1.0", "rpi-zero2w", None),
    ("Raspberry Pi 3 Model B Plus Rev 1.3", "rpi-zero2w", None),
    ("Raspberry Pi Model B Rev 2", "rpi-zero2w", "cannot run a 64-bit OS"),
    ("NVIDIA Jetson Nano Developer Kit", "jetson-nano", "Python 3.6"),
    ("NVIDIA Jetson Orin Nano Developer Kit", "jetson-orin-nano", None),
    ("NVIDIA Jetson AGX Orin Developer Kit", "jetson-orin-nano", "other than the Orin Nano"),
    ("NVIDIA Jetson Xavier NX Developer Kit", "arm64", "only Jetson Orin"),
    ("Pine64 RockPro64 v2.1", "arm64", None),
])
def test_detect_from_device_tree(tmp_path: Path, model: str, expected: str, warns: str | None) -> None:
    root = fake_root(tmp_path, model=model, cpuinfo=arm_cpuinfo("0xd08"))
    det = P.detect_device(root)
    assert det.profile == expected
    assert det.model == model
    assert det.machine == "aarch64"  # guessed from the fake cpuinfo, not this machine
    assert (model in det.reason) if expected != "arm64" or warns else True
    if warns:
        assert any(warns in w for w in det.warnings), det.warnings
    else:
        assert not det.warnings
    assert P.load_profile("auto", root=root).name == expected


def test_detect_fallbacks(tmp_path: Path) -> None:
    # Raspberry Pi kernels also put the model into /proc/cpuinfo (containers without /proc/device-tree)
    det = P.detect_device(fake_root(tmp_path / "a", cpuinfo=arm_cpuinfo("0xd08", model="Raspberry Pi 4 Model B")))
    assert det.profile == "rpi4" and "cpuinfo" in det.reason and det.cpu == "4 x Cortex-A72"
    det = P.detect_device(fake_root(tmp_path / "b", sys_model="Raspberry Pi 5 Model B Rev 1.1"))
    assert det.profile == "rpi5" and "sys/firmware/devicetree" in det.reason
    det = P.detect_device(fake_root(tmp_path / "c", compatible="raspberrypi,5-model-b brcm,bcm2712"))
    assert det.profile == "rpi5" and "compatible" in det.reason
    det = P.detect_device(fake_root(tmp_path / "d", compatible="nvidia,p3768-0000+p3767-0005 nvidia,p3767-0005 "
                                                               "nvidia,tegra234"))
    assert det.profile == "jetson-orin-nano"
    det = P.detect_device(fake_root(tmp_path / "e", cpuinfo="vendor_id\t: GenuineIntel\nmodel name\t: Intel(R) "
                                                             "Core(TM) i5\nflags\t\t: fpu lm sse\n"))
    assert (det.profile, det.machine, det.cpu) == ("x86_64", "x86_64", "Intel(R) Core(TM) i5")
    det = P.detect_device(fake_root(tmp_path / "f", cpuinfo=arm_cpuinfo("0xd0b") + arm_cpuinfo("0xd05", 2)))
    assert det.profile == "arm64" and det.cpu == "4 x Cortex-A76 + 2 x Cortex-A55"


@pytest.mark.parametrize(("machine", "expected", "warns"), [
    ("x86_64", "x86_64", None), ("AMD64", "x86_64", None), ("aarch64", "arm64", None), ("arm64", "arm64", None),
    ("armv7l", "arm64", "32-bit ARM"), ("riscv64", "x86_64", "has no profile"),
])
def test_detect_by_machine(tmp_path: Path, machine: str, expected: str, warns: str | None) -> None:
    det = P.detect_device(fake_root(tmp_path), machine=machine)
    assert det.profile == expected and det.machine == machine
    assert bool(warns) == bool(det.warnings)
    if warns:
        assert warns in det.warnings[0]


def test_describe_detection_for_doctor(tmp_path: Path) -> None:
    root = fake_root(tmp_path, model="NVIDIA Jetson Nano Developer Kit", cpuinfo=arm_cpuinfo("0xd07"))
    text = P.describe_detection(root)
    assert "profile:   jetson-nano (auto)" in text
    assert "model:     NVIDIA Jetson Nano Developer Kit" in text
    assert "cpu:       4 x Cortex-A57" in text
    assert "status:    unsupported - JetPack 4 ships Python 3.6" in text
    assert "env:       OPENBLAS_CORETYPE=ARMV8" in text
    assert "warning:   Jetson Nano runs JetPack 4" in text
    assert "available: arm64, jetson-nano" in text
    prof = P.load_profile("auto", root=root)
    assert prof.reason.startswith("auto: /proc/device-tree/model is 'NVIDIA Jetson Nano Developer Kit'")


def test_detection_is_lazy() -> None:
    """Importing affectlite (and affectlite.profiles) reads no device file."""
    code = textwrap.dedent("""
        import sys
        opened = []
        def hook(event, args):
            if event == "open" and isinstance(args[0], str) and ("device-tree" in args[0]
                                                                 or args[0].endswith("/proc/cpuinfo")
                                                                 or "devicetree" in args[0]):
                opened.append(args[0])
        sys.addaudithook(hook)
        import affectlite, affectlite.profiles
        from affectlite import PipelineOptions
        PipelineOptions()
        assert not opened, opened
        affectlite.profiles.detect_device()
        assert any("cpuinfo" in p for p in opened), opened
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={"PYTHONPATH": str(REPO / "sdk"), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


# ------------------------------------------------------------------------------------ module CLI


def test_module_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert P.main(["get", "service.network", "--profile", "rpi5", "--set", "service.network=loopback"]) == 0
    assert capsys.readouterr().out == "loopback\n"
    assert P.main(["get", "face.num_threads", "--profile", "jetson-orin-nano"]) == 0
    assert capsys.readouterr().out == "3\n"
    out_file = tmp_path / "run" / "profile.env"
    assert P.main(["env", "--profile", "jetson-nano", "--output", str(out_file)]) == 0
    assert 'OPENBLAS_CORETYPE="ARMV8"' in out_file.read_text()
    bad = write(tmp_path, "camera:\n  fps: 0\n")
    assert P.main(["validate", "rpi4", str(bad)]) == 2
    cap = capsys.readouterr()
    assert "ok: rpi4 [supported]" in cap.out and f"{bad}:2: camera.fps: 0 is out of range" in cap.err
    assert P.main(["list"]) == 0
    assert set(capsys.readouterr().out.split()) >= EXPECTED
    assert P.main(["show", "--profile", "arm64"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["name"] == "arm64"


# ------------------------------------------------------------------------------------ property tests

hyp = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_KEYS = sorted({k for m in PipelineOptions.section_types().values() for k in m.__struct_fields__}
               | {"network", "num_threads", "backend", "delegates", "face", "voice", "text"})
_SECTIONS = [*PipelineOptions.SECTIONS, *P.PROFILE_ONLY_KEYS]
_scalars = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True)
            | st.sampled_from(["", "auto", "haar", "late", "none", "loopback", "ARMV8", "rpi5", "x\ny", "1BAD"]))
_keys = st.sampled_from([*_KEYS, "junk", "Fps"]) | st.integers(0, 3)
_values = (_scalars | st.lists(_scalars, max_size=3)
           | st.dictionaries(_keys, _scalars | st.lists(_scalars, max_size=2), max_size=3))
_sections = st.dictionaries(_keys, _values, max_size=5)
_profiles = st.dictionaries(st.sampled_from([k for k in _SECTIONS if k != "extends"] + ["junk", "camra"])
                            | st.booleans(), _sections | _values, max_size=6)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_profiles)
def test_random_profiles_validate_or_raise_profile_error(data: dict[Any, Any]) -> None:
    try:
        prof = P.parse_profile(data, source="<random>")
    except ProfileError as e:
        assert "<random>" in str(e) or "override" in str(e)
        return
    opts = prof.to_options()  # whatever validates must build options
    assert isinstance(opts, PipelineOptions)
    prof.env_file()
    prof.to_yaml()


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("camer:fps \n-[]{}'\"&*!#0123.:yes\t")), max_size=60))
def test_random_yaml_text_only_raises_profile_error(text: str) -> None:
    try:
        P.parse_profile(text, source="<text>")
    except ProfileError:
        pass


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.sampled_from(["camera.fps", "face.detect_every", "queues.frames", "voice.hop_s",
                                        "interpreter.num_threads", "face.margin", "camera.device"]),
                       _scalars, max_size=4))
def test_random_overrides(ov: dict[str, Any]) -> None:
    try:
        prof = P.load_profile("rpi4", ov)
    except ProfileError as e:
        assert "override" in str(e)
        return
    opts = prof.to_options()
    if "camera.fps" in ov:
        assert opts.camera.fps == float(ov["camera.fps"])
