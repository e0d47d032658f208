"""face.small_face_every: BlazeFace's small-face tiles on every Nth live detection pass (and while a small face is
tracked); still images always get the full search."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from affectlite.detectors.base import Detection
from affectlite.errors import ConfigError
from affectlite.face import FaceAnalyzer
from affectlite.options import FaceOptions

pytest.importorskip("cv2")


@pytest.fixture(autouse=True)
def _blazeface_installed() -> None:
    from affectlite.detectors import blazeface

    if blazeface.model_source() is None:
        pytest.skip("BlazeFace model not installed")


def _spy(an: FaceAnalyzer, monkeypatch: pytest.MonkeyPatch, side: float) -> list[bool]:
    """Replace the real detector's detect with one face of ``side`` px (detection scale); record tiles_enabled."""
    det: Any = an.detector
    seen: list[bool] = []

    def detect(img: np.ndarray) -> list[Detection]:
        seen.append(bool(det.tiles_enabled))
        return [Detection(100.0, 60.0, side, side, 0.95, ())]

    monkeypatch.setattr(det, "detect", detect)
    return seen


def _run(an: FaceAnalyzer, frames: int) -> None:
    frame = np.zeros((480, 640, 3), np.uint8)
    for i in range(frames):
        an.process(frame, i * 33_000_000)


@pytest.mark.parametrize("every", [1, 2, 3, 5])
def test_tiles_run_on_every_nth_detection_pass_when_no_small_face_is_tracked(
        every: int, monkeypatch: pytest.MonkeyPatch) -> None:
    an = FaceAnalyzer(FaceOptions(detector="blazeface", detect_every=2, detect_width=320, small_face_every=every))
    seen = _spy(an, monkeypatch, 120.0)  # 240 px in the 640-px frame: the whole-frame pass finds it
    _run(an, 24)
    assert len(seen) == 12  # detection on every 2nd frame, unchanged
    assert seen == [i % every == 0 for i in range(12)]
    # still images always get the full search, whatever the live schedule was doing
    an.classify_image(np.zeros((480, 640, 3), np.uint8))
    assert seen[-1] is True
    an.reset()  # the schedule starts again with a full search
    _run(an, 2)
    assert seen[-1] is True
    an.close()


def test_a_tracked_small_face_keeps_the_tiles_on(monkeypatch: pytest.MonkeyPatch) -> None:
    an = FaceAnalyzer(FaceOptions(detector="blazeface", detect_every=2, detect_width=320, small_face_every=4))
    det: Any = an.detector
    # 30 px at detection scale = 60 px in the frame: below what one whole-frame pass finds reliably
    assert 60 < det.reliable_size(480, 640) < 240
    seen = _spy(an, monkeypatch, 30.0)
    _run(an, 16)
    assert seen == [True] * 8  # first pass finds it; from then on it is tracked and small
    an.close()


def test_without_tiles_blazeface_runs_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    from affectlite.detectors.blazeface import BlazeFaceDetector

    det = BlazeFaceDetector(min_size=24)
    passes: list[tuple[float, float]] = []
    real = det._pass

    def count(img: np.ndarray, ox: float = 0.0, oy: float = 0.0) -> list[Detection]:
        passes.append((ox, oy))
        return real(img, ox, oy)

    monkeypatch.setattr(det, "_pass", count)
    img = np.full((240, 320, 3), 90, np.uint8)
    assert len(det.tiles(240, 320)) > 0  # 24-px faces in a 320-px image need tiles
    det.detect(img)
    assert len(passes) == 1 + len(det.tiles(240, 320))
    passes.clear()
    det.tiles_enabled = False
    det.detect(img)
    assert passes == [(0.0, 0.0)]
    det.close()


def test_small_face_every_is_checked() -> None:
    for bad in (0, 31):
        with pytest.raises(ConfigError, match="small_face_every"):
            FaceOptions(small_face_every=bad)
