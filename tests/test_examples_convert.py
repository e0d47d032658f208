"""examples/convert_your_model.py end to end: a tiny Keras model -> int8 TFLite + card -> the runtime and the
pipeline on the sample video (needs TensorFlow: the [convert] extra)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from _examples_support import load_example

pytest.importorskip("tensorflow", reason="the converter needs TensorFlow (pip install 'affectlite[convert]')")
pytest.importorskip("keras")

pytestmark = [pytest.mark.convert, pytest.mark.slow]


def test_convert_your_model_demo_runs_every_step(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ex = load_example("convert_your_model.py", "convert_your_model_example")
    out = tmp_path / "models" / "demo_face.tflite"
    rc = ex.main(["--demo", "--out", str(out), "--demo-samples", "280", "--demo-epochs", "4", "--duration", "2",
                  "--report-dir", str(tmp_path / "report")])
    text = capsys.readouterr().out
    assert rc == 0, text  # the generated demo data is learnable: the int8 checks pass
    assert out.is_file() and out.with_name("demo_face.card.json").is_file()
    card = json.loads(out.with_name("demo_face.card.json").read_text())
    assert card["task"] == "face" and card["labels"][:2] == ["neutral", "happy"]
    assert card["inputs"][0]["shape"] == [1, 48, 48, 1] and card["inputs"][0]["dtype"] == "int8"
    assert card["metrics"]["on_calibration_set"] is False  # validated on the held-out 20 %
    assert 0.0 <= card["metrics"]["int8"]["agreement_with_float"] <= 1.0
    assert any(p.suffix == ".json" for p in (tmp_path / "report").iterdir())
    assert "converted in" in text and "runtime: loaded my-face 0.1.0" in text
    assert "first frame of sample.mp4:" in text  # the sample's face was detected and classified
    line = next(ln for ln in text.splitlines() if ln.startswith("pipeline:"))
    assert int(line.split()[1]) > 0  # results came out of the pipeline with the converted model
