"""The `affectlite` command end to end (subprocesses, real models, a short video + audio file)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": f"{ROOT / 'sdk'}{os.pathsep}{ROOT / 'converters'}", "TF_CPP_MIN_LOG_LEVEL": "3"}
MODELS = ROOT / "sdk/affectlite/models"


def cli(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([sys.executable, "-m", "affectlite.cli", *args], capture_output=True, text=True, env=ENV,
                       timeout=timeout, cwd=ROOT)
    if check and r.returncode != 0:
        raise AssertionError(f"exit {r.returncode}\nstdout: {r.stdout[-2000:]}\nstderr: {r.stderr[-3000:]}")
    return r


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 3 s 320x240 video with a real face moving, and 3 s of speech (espeak-ng) or a voiced signal."""
    cv2 = pytest.importorskip("cv2")
    skdata = pytest.importorskip("skimage.data")
    d = tmp_path_factory.mktemp("media")
    face = cv2.resize(skdata.astronaut()[0:300, 100:380], (140, 150))
    vid = d / "clip.avi"
    w = cv2.VideoWriter(str(vid), cv2.VideoWriter_fourcc(*"MJPG"), 15.0, (320, 240))
    for i in range(45):
        img = np.full((240, 320, 3), 90, np.uint8)
        x = 20 + i * 2
        img[45:195, x:x + 140] = face[:, :, ::-1]
        w.write(img)
    w.release()
    wav = d / "speech.wav"
    if shutil.which("espeak-ng"):
        subprocess.run(["espeak-ng", "-s", "150", "-w", str(wav), "I cannot believe you did that to me. "
                        "This is absolutely wonderful news, thank you."], check=True)
    else:
        from affectlite.microphones import SyntheticMicrophone

        mic = SyntheticMicrophone("voiced", seconds=3.0)
        mic.open()
        x = np.concatenate([c.samples for c in iter(mic.read, None)])
        with wave.open(str(wav), "wb") as wf:
            wf.setnchannels(1)
            wf.setsampwidth(2)
            wf.setframerate(16000)
            wf.writeframes(x.tobytes())
    return vid, wav


def test_help_lists_subcommands() -> None:
    out = cli("--help").stdout
    for sub in ("run", "doctor", "classify", "eval"):
        assert sub in out


def test_doctor_json_reports_backends_models_and_profile() -> None:
    rep = json.loads(cli("doctor", "--json").stdout)
    names = {c["name"]: c for c in rep["checks"]}
    assert names["interpreter:litert"]["ok"]
    assert "affectlite[tflite]" in names["interpreter:tflite_runtime"]["detail"] or names[
        "interpreter:tflite_runtime"]["ok"]
    for task in ("face", "voice", "text"):
        assert names[f"model:{task}"]["ok"], names[f"model:{task}"]["detail"]
    assert "x86_64" in rep.get("profile", "") or "arm64" in rep.get("profile", "")
    assert rep["tensorflow_imported"] is False


def test_run_on_video_and_audio_streams_json_lines(media: tuple[Path, Path]) -> None:
    vid, wav = media
    r = cli("run", "--video", str(vid), "--audio", str(wav), "--fast", timeout=180)
    lines = [json.loads(ln) for ln in r.stdout.splitlines() if ln.strip()]
    results = [ln for ln in lines if ln["event"] == "result"]
    stats = [ln for ln in lines if ln["event"] == "stats"]
    assert results and stats and stats[0]["state"] == "finished"
    assert stats[0]["counts"]["camera"] == stats[0]["counts"]["face"] == 45  # --fast analyses every frame
    assert stats[0]["drops"]["frames"] == 0
    with_faces = [x for x in results if x["faces"]]
    assert len(with_faces) >= 10, "the astronaut's face should be found in most frames"
    assert {f["track_id"] for x in with_faces for f in x["faces"]} <= {1, 2, 3}  # one moving face, stable id
    assert any(x["voice"] for x in results), "speech should give voice results"
    for x in results:
        assert set(x["probabilities"]) == {"neutral", "happy", "sad", "angry", "fear", "disgust", "surprise"}
        assert "image" not in json.dumps(x) and "samples" not in json.dumps(x)


def test_run_pretty_and_bad_input_errors(media: tuple[Path, Path]) -> None:
    vid, _ = media
    r = cli("run", "--video", str(vid), "--fast", "--pretty", "--no-audio", timeout=180)
    assert r.stdout.strip() and not r.stdout.lstrip().startswith("{")
    bad = cli("run", "--video", "/nonexistent.mp4", "--no-audio", check=False)
    assert bad.returncode == 2 and "does not exist" in bad.stderr and "Traceback" not in bad.stderr
    bad2 = cli("run", "--set", "camera.fpz=3", check=False)
    assert bad2.returncode == 2 and "fpz" in bad2.stderr and "Traceback" not in bad2.stderr


def test_classify_text_and_image(media: tuple[Path, Path], tmp_path: Path) -> None:
    cv2 = pytest.importorskip("cv2")
    skdata = pytest.importorskip("skimage.data")
    img = tmp_path / "astronaut.png"
    cv2.imwrite(str(img), skdata.astronaut()[:, :, ::-1])
    out = json.loads(cli("classify", "--image", str(img), "--text", "I love this, it is wonderful!").stdout)
    assert out["faces"] and out["text"] is not None
    assert out["modality_weights"].keys() >= {"face", "text"}
    assert abs(sum(out["probabilities"].values()) - 1.0) < 1e-3
