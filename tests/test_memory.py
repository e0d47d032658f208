"""Memory of the runtime: what loading the default models pulls into the process (issue 25's RSS budget).

The pipeline's peak RSS is measured by ``affectlite bench --what pipeline`` (docs/benchmarks.md); these tests
pin the causes that were removed, so they do not come back unnoticed.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from affectlite._io import sha256_bytes, sha256_file

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": f"{ROOT / 'sdk'}{os.pathsep}{ROOT / 'converters'}"}


def run_py(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=ENV,
                          cwd=ROOT).stdout


@pytest.mark.parametrize("data", [b"", b"abc", bytes(range(256)) * 9000])
def test_builtin_sha256_matches_hashlib(data: bytes, tmp_path: Path) -> None:
    p = tmp_path / "f.bin"
    p.write_bytes(data)
    assert sha256_bytes(data) == hashlib.sha256(data).hexdigest()
    assert sha256_file(p) == hashlib.sha256(data).hexdigest()


def test_loading_and_hash_checking_the_default_models_does_not_load_openssl() -> None:
    # hashlib loads OpenSSL's libcrypto (+3.6 MB RSS) just to verify model files; the runtime uses the builtin
    # sha256. Every default model is loaded with its hash checked (face, voice, text incl. its idf file, fusion)
    # and the speech_embedding front end's files are hashed.
    out = run_py(
        "import sys, numpy as np, affectlite\n"
        "from affectlite import speech_embedding as se\n"
        "clf = affectlite.EmotionClassifier.default()\n"
        "t = np.arange(32000, dtype=np.float32) / 16000\n"  # no numpy.random: it imports hashlib itself
        "image = (np.arange(240 * 320 * 3) % 251).astype(np.uint8).reshape(240, 320, 3)\n"
        "r = clf.classify(image=image, audio=0.3 * np.sin(2 * np.pi * 220 * t) * np.sin(2 * np.pi * 3 * t),\n"
        "                 text='what a lovely day')\n"
        "se.front_end_status(check_hash=True)\n"
        "print(r.text is not None and r.text.label == 'happy',\n"
        "      [m for m in ('hashlib', '_hashlib', 'ssl') if m in sys.modules])")
    assert out.split("\n")[-2:] == ["True []", ""]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="peak windows use /proc/self/clear_refs")
def test_each_pipeline_bench_run_reports_its_own_peak_rss() -> None:
    # `affectlite bench` runs the realtime and the fast pipeline in one process; the second run used to be
    # charged with the first one's peak (ru_maxrss only grows). A 300 MB spike before the run must not show.
    out = run_py(
        "import resource, sys, numpy as np\n"
        "sys.path.insert(0, 'tests')\n"
        "from _examples_support import ScriptedFace, frame_for\n"
        "from affectlite import PipelineOptions, bench\n"
        "from affectlite.testing import FakeCamera\n"
        "spike = np.ones(300 * 2**20, np.uint8)\n"
        "del spike\n"
        "process_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
        "opts = PipelineOptions().replace(**{'audio.enabled': False, 'text.enabled': False})\n"
        "cam = FakeCamera.from_images([frame_for('happy')] * 50, fps=30, realtime=False)\n"
        "rep = bench.bench_pipeline(opts, 0.3, 'fast',\n"
        "                           pipeline_kwargs={'camera': cam, 'face_analyzer_factory': ScriptedFace})\n"
        "print(round(process_peak), rep['peak_rss_mb'])")
    process_peak, run_peak = (float(v) for v in out.split())
    assert process_peak > 300
    assert 10 < run_peak < process_peak - 250


@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_16", "PCM_24", "PCM_32"])
def test_integer_wav_is_read_without_soundfile_with_the_same_samples(subtype: str, tmp_path: Path) -> None:
    # libsndfile (+2 MB RSS) is only loaded for what the standard library cannot read
    import numpy as np

    from affectlite._audio_stream import iter_audio_blocks

    sf = pytest.importorskip("soundfile")
    x = np.random.default_rng(0).uniform(-1, 1, (20000, 2))
    p = tmp_path / "a.wav"
    sf.write(str(p), x, 16000, subtype=subtype)
    ref = sf.read(str(p), dtype="float32", always_2d=True)[0].mean(axis=1)
    got = np.concatenate(list(iter_audio_blocks(p, None, block_s=0.3)))
    assert got.dtype == np.float32 and np.array_equal(got, ref)
    # float WAV: the standard library cannot read it, soundfile still does
    pf = tmp_path / "f.wav"
    sf.write(str(pf), x, 16000, subtype="FLOAT")
    ref_f = sf.read(str(pf), dtype="float32", always_2d=True)[0].mean(axis=1)
    assert np.array_equal(np.concatenate(list(iter_audio_blocks(pf, None))), ref_f)


def test_the_file_microphone_on_the_sample_wav_does_not_load_soundfile() -> None:
    out = run_py("import sys\n"
                 "from affectlite.samples import sample_paths\n"
                 "from affectlite.microphones.file import FileMicrophone\n"
                 "mic = FileMicrophone(str(sample_paths()[1]), realtime=False)\n"
                 "mic.open()\n"
                 "n = sum(c.samples.size for c in iter(mic.read, None))\n"
                 "mic.close()\n"
                 "print(n, 'soundfile' in sys.modules)")
    assert out.split() == [str(16000 * 96 // 10), "False"]


def test_both_paces_run_each_pipeline_in_its_own_process(monkeypatch: pytest.MonkeyPatch) -> None:
    # a second pipeline in the same process peaked ~5 MB higher than in a fresh one (fragmentation), so
    # `affectlite bench` with both paces runs each in a worker; a single pace stays in this process
    from affectlite import bench
    from affectlite.cli import build_parser

    calls: list[tuple[str, str, str]] = []

    def fake_worker(args: argparse.Namespace, spec: str) -> dict[str, object]:
        pace = str(args.pace)
        calls.append((str(args.what), pace, spec))
        return {"pipeline": {pace: {"fps": 31.0, "latency_ms_p95": 20.0,
                                    "peak_rss_mb": 140.0 if pace == "realtime" else 145.5}}}

    monkeypatch.setattr(bench, "_run_worker", fake_worker)
    args = build_parser().parse_args(["bench", "--what", "pipeline", "--duration", "1", "--synthetic",
                                      "--set", "face.detect_every=2"])
    rep = bench.run_once(args)
    assert calls == [("pipeline", "realtime", ""), ("pipeline", "fast", "")]
    assert rep["peak_rss_mb"] == 145.5 and rep["targets"]["peak_rss_mb"]["value"] == 145.5
    assert rep["targets"]["peak_rss_mb"]["met"] is True


def test_the_bench_keeps_its_own_bookkeeping_out_of_the_pipeline_run() -> None:
    # importlib.metadata (library versions, +1 MB with the email package), statistics and subprocess are the
    # bench's, not the pipeline's: none is loaded while a pipeline run is measured; the report still names them
    out = run_py(
        "import argparse, sys\n"
        "from affectlite import bench\n"
        "seen = []\n"
        "def fake(opts, duration, pace, pipeline_kwargs=None):\n"
        "    seen.append([m for m in ('importlib.metadata', 'email', 'statistics', 'subprocess')\n"
        "                 if m in sys.modules])\n"
        "    return {'fps': 30.0, 'latency_ms_p95': 10.0, 'peak_rss_mb': 100.0}\n"
        "bench.bench_pipeline = fake\n"
        "p = argparse.ArgumentParser()\n"
        "bench.add_arguments(p)\n"
        "rep = bench.run_once(p.parse_args(['--what', 'pipeline', '--pace', 'realtime', '--synthetic']))\n"
        "m = rep['machine']\n"
        "print(seen, 'ai-edge-litert' in m or 'tflite-runtime' in m, 'load_avg_1m' in m, m['usable_cores'] > 0)")
    assert out.strip() == "[[]] True True True"
