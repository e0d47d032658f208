"""Image folders are recordings, like video files read with PyAV: media-time stamps, offline analysis with
nothing dropped, and the same results whether read as fast as possible or paced in real time, with one-slot
queues or the default ones. A recording beside a live source is put on the live clock."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from affectlite import EmotionPipeline, PipelineOptions
from affectlite.cameras import ImageFolderCamera
from affectlite.samples import sample_audio, sample_video

cv2 = pytest.importorskip("cv2")

_TINY = {"queues.frames": 1, "queues.audio": 1, "queues.results": 1}


def _run(opts: PipelineOptions, slow_s: float = 0.0) -> tuple[list[dict[str, Any]], Any]:
    out: list[dict[str, Any]] = []

    def on_result(r: Any) -> None:
        out.append(r.to_json_dict())
        if slow_s:
            time.sleep(slow_s)

    with EmotionPipeline(opts, on_result=on_result) as pipe:
        assert pipe.wait(timeout=120)
        stats = pipe.stats()
    return out, stats


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 3 s of the sample's speech (real time runs stay short)."""
    x, sr = sf.read(str(sample_audio()), dtype="float32")
    p = tmp_path_factory.mktemp("rec") / "speech.wav"
    sf.write(str(p), x[: 3 * sr], sr)
    return p


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight frames of the sample video (a face) as PNG files."""
    d = tmp_path_factory.mktemp("frames")
    cap = cv2.VideoCapture(str(sample_video()))
    for i in range(8):
        ok, img = cap.read()
        assert ok
        cv2.imwrite(str(d / f"f{i:02d}.png"), img)
        for _ in range(5):
            cap.read()
    cap.release()
    return d


def test_image_folder_stamps_one_over_fps(frames: Path) -> None:
    cam = ImageFolderCamera(frames, fps=4.0, realtime=False, loop=True)
    assert cam.recorded is True
    cam.open()
    try:
        got = [cam.read() for _ in range(10)]
    finally:
        cam.close()
    assert [f.timestamp_ns for f in got if f is not None] == [i * 250_000_000 for i in range(10)]


def test_image_folder_alone_is_analysed_offline_and_deterministically(frames: Path) -> None:
    def opts(realtime: bool, **extra: Any) -> PipelineOptions:
        return PipelineOptions().replace(**{"audio.enabled": False, "camera.backend": "images",
                                            "camera.device": str(frames), "camera.fps": 8,
                                            "camera.realtime": realtime, **extra})

    fast, st = _run(opts(False, **_TINY), slow_s=0.002)
    real, _ = _run(opts(True))
    assert set(st.drops.values()) == {0} and st.counts["camera"] == st.counts["face"] == 8
    assert fast == real and len(fast) == 8
    assert [r["result_ns"] for r in fast] == [i * 125_000_000 for i in range(8)]  # media time: 1 / fps
    # a track is reported once confirmed (track_min_hits 3 passes, detect_every 3 frames): from the 7th image on
    with_face = [r for r in fast if r["faces"]]
    assert with_face and all(r["capture_ns"] == r["frame_index"] * 125_000_000 for r in with_face)
    assert np.isfinite([r["confidence"] for r in fast]).all()


def test_a_recording_beside_a_live_camera_is_put_on_the_live_clock(speech: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    pytest.importorskip("av")  # the wav read as a recording (PyAV); the synthetic camera is live
    opts = PipelineOptions().replace(**{"camera.backend": "synthetic", "camera.fps": 10,
                                        "audio.backend": "media", "audio.device": str(speech),
                                        "audio.realtime": True})
    out: list[Any] = []
    t0 = time.monotonic_ns()
    with caplog.at_level("WARNING", logger="affectlite"), EmotionPipeline(opts, on_result=out.append) as pipe:
        time.sleep(3.5)  # the 3 s file, paced, then a little of the camera alone
        assert pipe.stats().state != "finished"  # the live camera goes on
    t1 = time.monotonic_ns()
    assert "mixed" in caplog.text
    voiced = [r for r in out if r.voice is not None]
    assert voiced  # fusion saw the voice results: they are on the camera's clock, not 0..3 s
    assert all(t0 <= r.voice.start_ns <= t1 for r in voiced)
    assert all(abs(r.voice.end_ns - r.result_ns) < 1_500_000_000 for r in voiced)
