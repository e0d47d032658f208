"""Issue 27: the boundary rule. Every case of the issue is a regression test here: bad text, corrupt image
folders, out-of-range sample rates and float audio, CLI errors without tracebacks, NaN chunks and frames,
close() from a callback, flapping sources, long audio files read as streams."""

from __future__ import annotations

import logging
import math
import os
import signal
import subprocess
import sys
import threading
import time
import tracemalloc
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from affectlite import EmotionResult, PipelineOptions, SourceStatus
from affectlite._boundary import check_sample_rate, clean_text
from affectlite.cameras import Frame, ImageFolderCamera
from affectlite.cli import main
from affectlite.errors import AffectliteError, InputError, PipelineError
from affectlite.pipeline import EmotionPipeline
from affectlite.testing import FakeCamera, FakeMicrophone

sys.path.insert(0, str(Path(__file__).resolve().parent / "benchmarks"))
import soak

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": f"{ROOT / 'sdk'}{os.pathsep}{ROOT / 'converters'}"}


def make(o: PipelineOptions, **kw: Any) -> EmotionPipeline:
    for kind, double in soak.DOUBLES.items():
        if kind == "text" and kw.pop("real_text", False):
            continue
        kw.setdefault({"face": "face_analyzer_factory", "voice": "voice_analyzer_factory",
                       "text": "text_classifier_factory", "fusion": "fusion_factory"}[kind], double)
    return EmotionPipeline(o, **kw)


def frames(n: int) -> list[np.ndarray]:
    return [np.full((40, 40, 3), 30 + 20 * (i % 8), np.uint8) for i in range(n)]


def write_wav(path: Path, x: np.ndarray, rate: int = 16000) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.clip(x * 32767, -32768, 32767).astype("<i2").tobytes())
    return path


# ------------------------------------------------------------------------------------- 1. text boundary
def test_text_with_lone_surrogates_is_cleaned_once_at_the_boundary() -> None:
    assert clean_text("bad \udcff") == "bad \ufffd"
    assert clean_text("\ud83d\ude00 ok") == "\U0001f600 ok"  # a valid pair is joined, not replaced
    s = "fine, \u05e9\u05dc\u05d5\u05dd \u4f60\u597d \x00"
    assert clean_text(s) is s  # valid text (RTL, CJK, NUL) is not copied or changed
    with pytest.raises(InputError, match="decode bytes"):
        clean_text(b"bytes")


def test_lone_surrogate_in_push_text_does_not_stop_the_pipeline(no_leaked_threads: None) -> None:
    from affectlite.text import TextClassifier

    try:
        TextClassifier.create().close()
    except AffectliteError as e:
        pytest.skip(f"text model unavailable: {e}")
    got: list[EmotionResult] = []
    errors: list[BaseException] = []
    cam = FakeCamera(lambda i: frames(1)[0], n_frames=None, realtime=True, fps=40)
    o = PipelineOptions().replace(**{"audio.enabled": False})
    with make(o, camera=cam, on_result=got.append, on_error=errors.append, real_text=True) as pipe:
        time.sleep(0.3)
        for t in ("bad \udcff", "\udcff\udcfe", "ok \x00 fine", "\u202eRTL\u202c and \u4e2d\u6587"):
            pipe.push_text(t)
        time.sleep(0.5)
        before = len(got)
        time.sleep(0.4)
        st = pipe.stats()
        assert pipe.state == "running" and len(got) > before  # camera results go on
    assert st.counts["text"] == 4 and st.stage_errors == 0 and not errors


def test_cli_classify_text_from_non_utf8_argv(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "affectlite.cli", "classify", "--text", b"bad \xff\xfe sad day"],
                       capture_output=True, env=ENV, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr.decode(errors="replace")[-2000:]
    assert b"Traceback" not in r.stderr and b'"label"' in r.stdout


# ------------------------------------------------------------------------ 2. corrupt file in an image folder
def test_image_folder_with_a_corrupt_file_skips_it_and_ends(tmp_path: Path, no_leaked_threads: None) -> None:
    for i in range(4):
        np.save(tmp_path / f"{i}_good.npy", frames(1)[0])
    (tmp_path / "1_bad.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    (tmp_path / "2_empty.png").write_bytes(b"")
    errors: list[BaseException] = []
    got: list[EmotionResult] = []
    o = PipelineOptions().replace(**{"camera.backend": "images", "camera.device": str(tmp_path),
                                     "camera.realtime": False, "camera.every_frame": True, "audio.enabled": False,
                                     "text.enabled": False})
    with make(o, on_result=got.append, on_error=errors.append) as pipe:
        assert pipe.wait(timeout=20), "the image folder never ended"
        st = pipe.stats()
    assert st.state == "finished" and st.counts["camera"] == 4 and st.rejected["frames"] == 2
    assert len(got) == 4 and [type(e) for e in errors] == [InputError]  # reported once (rate-limited)
    assert "1_bad.jpg" in str(errors[0])


def test_looping_image_folder_of_only_bad_files_ends(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"junk")
    cam = ImageFolderCamera(tmp_path, loop=True)
    cam.open()
    with pytest.raises(InputError, match=r"skipped a\.png"):
        cam.read()
    assert cam.read() is None


# ------------------------------------------------------------- 4. sample rates and float audio at the boundary
@pytest.mark.parametrize("rate", [1, 3999, 192001, 10**9, 0, -16000, 16000.5, math.nan, True, "16000"])
def test_sample_rates_outside_4k_192k_are_refused_quickly(rate: Any) -> None:
    from affectlite import EmotionClassifier

    t0 = time.monotonic()
    with pytest.raises(InputError, match=r"4000\.\.192000"):
        EmotionClassifier().classify(audio=np.zeros(16000, np.float32), sample_rate=rate)
    assert time.monotonic() - t0 < 5  # before: sample_rate=1 spun for minutes
    assert check_sample_rate(44100.0) == 44100 and check_sample_rate(np.int64(8000)) == 8000


def test_float_audio_on_the_int16_scale_is_refused_and_small_overshoot_clipped(
        caplog: pytest.LogCaptureFixture) -> None:
    from affectlite._boundary import check_float_peak

    rng = np.random.default_rng(0)
    with pytest.raises(InputError, match="int16 scale"):
        check_float_peak(rng.normal(0, 3000, 16000).astype(np.float32), "t1")
    x = np.array([0.5, -1.5, 1.2], np.float32)
    with caplog.at_level(logging.WARNING, "affectlite.boundary"):
        y = check_float_peak(x, "t2")
        check_float_peak(x, "t2")
    assert y.tolist() == [0.5, -1.0, 1.0] and sum("clipped" in r.message for r in caplog.records) == 1
    z = np.array([0.1, -1.0], np.float32)
    assert check_float_peak(z, "t3") is z


def test_wav_with_an_absurd_rate_in_its_header_is_refused(tmp_path: Path) -> None:
    from affectlite.audio_features import load_audio

    p = write_wav(tmp_path / "r1.wav", np.zeros(100), rate=1)
    with pytest.raises(InputError, match=r"sample rate=1 Hz is outside"):
        load_audio(p)


# ------------------------------------------------------------------------ 5. CLI: one error form, no traceback
def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    rc = main(argv)
    return rc, capsys.readouterr().err


def test_cli_bad_paths_and_files_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bad.tsv").write_bytes(b"hello \xff\xfe\t1\n")
    (tmp_path / "big.tsv").write_text('"' + "x" * 200_000 + "\t1\n", encoding="utf-8")
    (tmp_path / "afile").write_text("x")
    (tmp_path / "notaudio.wav").write_text("not audio")
    d = tmp_path / "dir"
    d.mkdir()
    cases = {
        "classify": [["classify", "--image", str(tmp_path / "missing.jpg")], ["classify", "--image", str(d)],
                     ["classify", "--audio", str(tmp_path / "notaudio.wav")],
                     ["classify", "--audio", str(d)], ["classify", "--model", str(tmp_path / "afile"), "--text", "x"]],
        "eval": [["eval", "text", "--data", str(tmp_path / "bad.tsv")],
                 ["eval", "text", "--data", str(tmp_path / "big.tsv")], ["eval", "voice", "--data", str(d)],
                 ["eval", "voice", "--data", str(tmp_path / "missing")], ["eval", "face", "--data", str(d / "x")]],
        "run": [["run", "--images", str(tmp_path / "afile")], ["run", "--no-camera", "--no-audio"],
                ["run", "--audio", str(tmp_path / "notaudio.wav"), "--no-camera", "--fast"],
                ["run", "--sample", "--fast", "--duration", "0.1", "--journal",
                 str(tmp_path / "afile" / "sub" / "j.db")]],
        "bench": [["bench", "--output", str(d), "--duration", "1"],
                  ["bench", "--audio", str(tmp_path / "notaudio.wav")], ["bench", "--duration", "nan"]],
    }
    for cmd, argvs in cases.items():
        for argv in argvs:
            rc, err = _cli(argv, capsys)
            assert rc == 2, (argv, rc, err)
            assert f"affectlite {cmd}: error: " in err and "Traceback" not in err, (argv, err)
    rc, err = _cli(["run", "--images", str(tmp_path / "afile")], capsys)
    assert "is a file, not a folder" in err  # not "does not exist"
    rc, err = _cli(["run", "--audio", str(d), "--no-camera"], capsys)
    assert rc == 2 and "is a folder, not an audio file" in err
    pytest.importorskip("affectlite_convert")
    for argv in (["train", "voice", "--data", str(d), "--out", str(tmp_path / "o")],
                 ["train", "voice", "--data", str(tmp_path / "afile"), "--out", str(tmp_path / "o")]):
        rc, err = _cli(argv, capsys)
        assert rc == 2 and err.startswith("affectlite train: error: "), err


@pytest.mark.parametrize("argv", [["run", "--duration", "-1"], ["run", "--duration", "0"],
                                  ["run", "--duration", "nan"], ["run", "--duration", "inf"],
                                  ["eval", "text", "--data", "x.tsv", "--limit", "0"]])
def test_cli_refuses_nonsense_durations_and_limits(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and f"affectlite {argv[0]}: error: argument" in err


def test_profile_validate_checks_every_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, err = _cli(["profile", "validate", str(tmp_path / "a.yaml"), "rpi5", str(tmp_path / "b.yaml")], capsys)
    assert rc == 2 and "a.yaml" in err and "b.yaml" in err and err.count("affectlite profile: error:") == 2


def test_unexpected_error_exits_1_with_a_short_message_and_log(monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    import affectlite.cli as cli

    def boom(args: Any) -> int:
        raise ZeroDivisionError("internal bug")

    monkeypatch.setattr(cli, "_cmd_doctor", boom)
    rc, err = _cli(["doctor"], capsys)
    assert rc == 1 and "affectlite doctor: internal error: ZeroDivisionError: internal bug" in err
    assert "Traceback" not in err
    log_path = err.split("traceback in ")[1].split(";")[0]
    assert "ZeroDivisionError" in Path(log_path).read_text()
    Path(log_path).unlink()
    rc, err = _cli(["-v", "doctor"], capsys)
    assert rc == 1 and "Traceback" in err


def test_classify_takes_model_profile_and_set(capsys: pytest.CaptureFixture[str]) -> None:
    model = ROOT / "sdk/affectlite/models/text.tflite"
    if not model.exists():
        pytest.skip("shipped text model missing")
    rc = main(["classify", "--text", "what a wonderful day", "--model", str(model), "--set", "fusion.strategy=late"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert '"label"' in out.out
    rc, err = _cli(["classify", "--text", "x", "--set", "voice.hop_s=nope"], capsys)
    assert rc == 2 and "affectlite classify: error:" in err


def test_sigterm_stops_run_like_ctrl_c(tmp_path: Path) -> None:
    p = subprocess.Popen([sys.executable, "-m", "affectlite.cli", "run", "--sample", "--no-camera"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV, cwd=tmp_path)
    try:
        assert p.stdout is not None
        p.stdout.readline()  # the pipeline is running
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130 and b"stopped" in err and b"Traceback" not in err


# -------------------------------------------------------------------- 6. a pipeline survives its inputs
def test_nan_chunk_and_nan_frame_are_dropped_counted_and_reported_once(no_leaked_threads: None) -> None:
    def chunk(i: int) -> np.ndarray:
        x = np.full(1600, 0.01 * ((i % 5) + 1), np.float32)
        if i in (3, 4, 9):
            x[7] = np.nan
        return x

    def image(i: int) -> np.ndarray:
        return np.full((40, 40, 3), np.nan if i in (2, 5) else 80.0, np.float32)

    errors: list[BaseException] = []
    got: list[EmotionResult] = []
    cam = FakeCamera(image, n_frames=40, realtime=True, fps=100)
    mic = FakeMicrophone(chunk, n_chunks=30, realtime=True, chunk_ms=20)
    with make(PipelineOptions(), camera=cam, microphone=mic, on_result=got.append, on_error=errors.append) as pipe:
        assert pipe.wait(timeout=20)
        st = pipe.stats()
    assert st.state == "finished" and st.rejected == {"frames": 2, "audio": 3, "text": 0}
    assert st.counts["camera"] == 38 and st.counts["mic"] == 27
    assert len(errors) == 2 and all(isinstance(e, InputError) for e in errors)  # once per stream and kind
    assert sum(1 for r in got if r.faces) >= 30  # results went on after the bad ones


def test_unexpected_exception_in_a_stage_drops_the_item_then_is_fatal_when_it_persists() -> None:
    class Odd(soak.DoubleFace):  # type: ignore[misc]
        def process(self, frame: np.ndarray, ts: int) -> Any:
            if frame[0, 0, 0] == 7:
                raise UnicodeEncodeError("utf-8", "x", 0, 1, "bad")
            return super().process(frame, ts)

    errors: list[BaseException] = []
    imgs = [np.full((20, 20, 3), 7 if i == 3 else 50, np.uint8) for i in range(10)]
    o = PipelineOptions().replace(**{"audio.enabled": False, "camera.every_frame": True})
    with make(o, face_analyzer_factory=Odd,
              camera=FakeCamera.from_images(imgs), on_result=lambda r: None, on_error=errors.append) as pipe:
        assert pipe.wait(timeout=20)
        st = pipe.stats()
    assert st.state == "finished" and st.counts["face"] == 9 and st.rejected["frames"] == 1
    assert [type(e) for e in errors] == [UnicodeEncodeError]
    # every frame failing: fatal after MAX_CONSECUTIVE_ITEM_ERRORS, as one AffectliteError type
    cam = FakeCamera(lambda i: np.full((20, 20, 3), 7, np.uint8), n_frames=None)
    pipe = make(PipelineOptions().replace(**{"audio.enabled": False}), face_analyzer_factory=Odd, camera=cam,
                on_result=lambda r: None)
    pipe.start()
    with pytest.raises(PipelineError, match="face stage failed on 50 items in a row") as ei:
        pipe.wait(timeout=20)
    assert isinstance(ei.value.__cause__, UnicodeEncodeError)
    with pytest.raises(PipelineError):
        pipe.close()


def test_close_from_a_callback_is_safe_and_wait_from_a_callback_refused(no_leaked_threads: None) -> None:
    errors: list[BaseException] = []
    calls = {"n": 0}
    holder: dict[str, EmotionPipeline] = {}

    def on_result(r: EmotionResult) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            holder["p"].wait(timeout=1)
        if calls["n"] == 3:
            holder["p"].close()

    cam = FakeCamera(lambda i: frames(1)[0], n_frames=None, realtime=True, fps=50)
    pipe = make(PipelineOptions().replace(**{"audio.enabled": False}), camera=cam, on_result=on_result,
                on_error=errors.append)
    holder["p"] = pipe
    pipe.start()
    deadline = time.monotonic() + 10
    while pipe.state != "closed" and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    assert pipe.state == "closed" and calls["n"] == 3
    assert [type(e) for e in errors] == [PipelineError] and "from a callback" in str(errors[0])
    pipe.close()  # idempotent from the owner's thread
    me = threading.current_thread()
    assert not any(t.name.startswith("affectlite") for t in threading.enumerate() if t is not me)


def test_raising_callback_logs_one_traceback_not_one_per_event(caplog: pytest.LogCaptureFixture) -> None:
    def bad(r: EmotionResult) -> None:
        raise ValueError("boom")

    cam = FakeCamera.from_images(frames(30))
    with caplog.at_level(logging.WARNING, "affectlite.pipeline"), \
            make(PipelineOptions().replace(**{"audio.enabled": False, "camera.every_frame": True}), on_result=bad,
                 camera=cam) as pipe:
        assert pipe.wait(timeout=20)
        st = pipe.stats()
    assert st.callback_errors == 30
    assert sum(1 for r in caplog.records if r.exc_info) == 1 and len(caplog.records) <= 3
    caplog.clear()

    def bad_on_error(e: BaseException) -> None:
        raise RuntimeError("on_error broke too")

    with caplog.at_level(logging.WARNING, "affectlite.pipeline"), \
            make(PipelineOptions().replace(**{"audio.enabled": False, "camera.every_frame": True}), on_result=bad,
                 on_error=bad_on_error, camera=FakeCamera.from_images(frames(30))) as pipe:
        assert pipe.wait(timeout=20)
    assert sum(1 for r in caplog.records if r.exc_info) == 2 and len(caplog.records) <= 5


def test_source_raising_unexpected_exceptions_is_reconnected_then_given_up() -> None:
    class Weird(FakeCamera):
        def read(self) -> Frame | None:
            raise KeyError("driver bug")

    statuses: list[SourceStatus] = []
    cam = Weird.from_images(frames(3))
    mic = FakeMicrophone(lambda i: np.zeros(1600, np.int16), n_chunks=None, realtime=True)
    o = PipelineOptions().replace(**{"camera.max_backoff_s": 0.05})
    with make(o, camera=cam, microphone=mic, on_status=statuses.append, on_result=lambda r: None) as pipe:
        deadline = time.monotonic() + 10
        while not any(s.state == "failed" for s in statuses) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pipe.state == "running"
    failed = [s for s in statuses if s.state == "failed"]
    assert failed and "KeyError" in failed[0].detail


# ---------------------------------------------------------------------- 3. long files as streams
def test_classify_file_streams_and_equals_classify_on_the_whole_clip(tmp_path: Path, shared_datasets: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import affectlite._clip_stream as cs
    from affectlite import EmotionClassifier
    from affectlite._clip_stream import classify_clip_blocks
    from affectlite.audio_features import load_audio
    from affectlite.voice import VoiceAnalyzer

    files = sorted((shared_datasets / "ravdess-speech-16k" / "Actor_01").glob("*.flac"))[:6]
    if len(files) < 6:
        pytest.skip("RAVDESS Actor_01 not found")
    monkeypatch.setattr(cs, "IN_MEMORY_S", 10.0)
    speech = np.concatenate([load_audio(f) for f in files])  # ~22 s: longer than IN_MEMORY_S
    p = write_wav(tmp_path / "long.wav", speech)
    with EmotionClassifier() as clf:
        streamed = clf.classify_file(p)  # > IN_MEMORY_S: window by window
        va: VoiceAnalyzer = clf._voice
        x = load_audio(p)
        assert x.size > cs.IN_MEMORY_S * 16000
        direct = va.classify_clip(x, 16000)
        pieces = classify_clip_blocks(va, (x[i:i + 12345] for i in range(0, x.size, 12345)), in_memory_s=5)
    assert streamed.voice is not None and direct is not None and pieces is not None
    for r in (streamed.voice, pieces):
        assert np.allclose(direct.probabilities, r.probabilities, atol=1e-6)
        assert (direct.voice_activity, direct.snr_db, direct.speech_s, direct.reliability, direct.end_ns) == \
            pytest.approx((r.voice_activity, r.snr_db, r.speech_s, r.reliability, r.end_ns))


def test_file_microphone_reads_block_by_block(tmp_path: Path) -> None:
    from affectlite.microphones import FileMicrophone

    p = write_wav(tmp_path / "ten_min.wav", np.zeros(16000 * 600), rate=48000 // 3)
    mic = FileMicrophone(p, realtime=False)
    tracemalloc.start()
    try:
        mic.open()
        for _ in range(50):
            assert mic.read() is not None
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        mic.close()
    assert peak < 4 * 2**20, peak  # the whole file decoded would be 38 MB of float32


def test_results_without_a_capture_time_do_not_hide_latency() -> None:
    class SlowSometimes(soak.DoubleFace):  # type: ignore[misc]
        def process(self, frame: np.ndarray, ts: int) -> Any:
            if frame[0, 0, 0] != 200:
                return ()  # no face: an empty result without a capture time
            time.sleep(0.03)
            return super().process(frame, ts)

    imgs = [np.full((20, 20, 3), 200 if i % 4 == 0 else 10, np.uint8) for i in range(24)]
    o = PipelineOptions().replace(**{"audio.enabled": False, "text.enabled": False, "camera.every_frame": True})
    with make(o, face_analyzer_factory=SlowSometimes, camera=FakeCamera.from_images(imgs),
              on_result=lambda r: None) as pipe:
        assert pipe.wait(timeout=20)
        st = pipe.stats()
    assert st.counts["results"] >= 20
    assert st.latency_ms_p50 >= 25, st  # before: the 0 ms of faceless results made the median 0


def test_cli_stderr_has_no_interpreter_info_line(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "affectlite.cli", "classify", "--text", "hello"],
                       capture_output=True, text=True, env=ENV, timeout=120, cwd=tmp_path)
    assert r.returncode == 0 and "XNNPACK" not in r.stderr and r.stderr.strip() == "", r.stderr
    r = subprocess.run([sys.executable, "-m", "affectlite.cli", "classify", "--image", "missing.png"],
                       capture_output=True, text=True, env=ENV, timeout=120, cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.startswith("affectlite classify: error: image file missing.png")


def test_audio_file_read_as_fast_as_possible_is_not_thinned_out() -> None:
    pushed = {"n": 0}

    class SlowVoice(soak.DoubleVoice):  # type: ignore[misc]
        def push(self, samples: np.ndarray, timestamp_ns: int) -> Any:
            pushed["n"] += 1
            time.sleep(0.002)
            return super().push(samples, timestamp_ns)

    mic = FakeMicrophone.noise(20.0, realtime=False)  # 200 chunks, delivered at once
    o = PipelineOptions().replace(**{"camera.enabled": False, "text.enabled": False, "audio.realtime": False,
                                     "queues.audio": 2})
    with make(o, microphone=mic, voice_analyzer_factory=SlowVoice, on_result=lambda r: None) as pipe:
        assert pipe.wait(timeout=30)
        st = pipe.stats()
    assert st.counts["mic"] == 200 and st.drops["audio"] == 0 and pushed["n"] == 200  # before: most dropped


def _png_bomb(w: int, h: int) -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    body = zlib.compress(b"\x00" * ((1 + w) * h), 6)  # rows of a filter byte + one grey byte per pixel
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", body) + chunk(b"IEND", b""))


def test_image_decompression_bomb_is_refused_from_its_header(tmp_path: Path) -> None:
    from affectlite.cameras import read_image
    from affectlite.errors import SourceError

    p = tmp_path / "bomb.png"
    p.write_bytes(_png_bomb(9000, 5000))  # 45 MP: ~70 kB on disk, 135 MB as RGB once decoded
    assert p.stat().st_size < 1_000_000
    tracemalloc.start()
    try:
        with pytest.raises(SourceError, match="9000x5000 pixels"):
            read_image(p)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5 * 2**20
    (tmp_path / "ok.png").write_bytes(_png_bomb(64, 48))
    assert read_image(tmp_path / "ok.png").shape == (48, 64, 3)


def test_audio_file_corrupt_midway_ends_instead_of_restarting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import affectlite._audio_stream as stream
    from affectlite.microphones import FileMicrophone

    p = write_wav(tmp_path / "a.wav", np.zeros(16000 * 3))

    def broken(path: Any, rate: Any = 16000, block_s: float = 10.0) -> Any:
        def gen() -> Any:
            for _ in range(3):
                yield np.zeros(16000, np.float32)
            raise ValueError("corrupt frame header")
        return gen()

    monkeypatch.setattr(stream, "open_audio_blocks", broken)
    errors: list[BaseException] = []
    o = PipelineOptions().replace(**{"camera.enabled": False, "text.enabled": False, "audio.realtime": False})
    with make(o, microphone=FileMicrophone(p, realtime=False), on_result=lambda r: None,
              on_error=errors.append) as pipe:
        assert pipe.wait(timeout=20), "the file was read again and again"
        st = pipe.stats()
    assert st.state == "finished" and st.counts["mic"] == 30 and st.rejected["audio"] == 1 and st.reconnects == 0
    assert "unreadable after 3.0 s" in str(errors[0])


def test_files_with_non_utf8_names_are_read(tmp_path: Path) -> None:
    """Names that are not UTF-8 (Python gives them lone surrogates) reach every reader intact."""
    from affectlite.audio_features import load_audio
    from affectlite.cameras import read_image
    from affectlite.microphones import FileMicrophone

    wav = write_wav(tmp_path / os.fsdecode(b"caf\xe9.wav"), 0.1 * np.sin(np.arange(16000) * 0.1))
    assert load_audio(wav).size == 16000
    mic = FileMicrophone(wav, realtime=False)
    mic.open()
    assert mic.read() is not None
    mic.close()
    img = tmp_path / os.fsdecode(b"\xff.npy")
    np.save(img, frames(1)[0])
    assert read_image(img).shape == (40, 40, 3)


def test_api_misuse_is_an_affectlite_error() -> None:
    from affectlite import EmotionClassifier
    from affectlite.errors import ConfigError

    with pytest.raises(ConfigError, match="PipelineOptions"):
        EmotionClassifier("rpi5")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="file path"):
        EmotionClassifier().classify_file(np.zeros(16000))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="on_result must be a function"):
        EmotionPipeline(on_result=5)  # type: ignore[arg-type]


def test_yaml_alias_bomb_in_a_profile_is_refused_quickly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for prev, cur in zip("abcdefg", "bcdefgh", strict=True):
        lines.append(f"{cur}: &{cur} [{', '.join(['*' + prev] * 9)}]")  # 9**8 = 43 million items expanded
    p = tmp_path / "laughs.yaml"
    p.write_text("\n".join([*lines, "camera:", "  fps: *h", ""]))
    t0 = time.monotonic()
    rc, err = _cli(["profile", "validate", str(p)], capsys)
    assert rc == 2 and "camera.fps" in err and "is a list" in err
    assert time.monotonic() - t0 < 5  # before: ~20 s spent in repr() of the expanded value


def test_eval_voice_skips_a_corrupt_file_and_reports_it(tmp_path: Path) -> None:
    from affectlite.voice import evaluate_voice

    (tmp_path / "happy").mkdir()
    write_wav(tmp_path / "happy" / "a.wav", 0.2 * np.sin(np.arange(32000) * 0.06))
    (tmp_path / "happy" / "b.wav").write_bytes(b"RIFF not really")
    res = evaluate_voice(None, tmp_path)
    assert res["n"] == 1 and [Path(u).name for u in res["unreadable"]] == ["b.wav"]
    (tmp_path / "happy" / "a.wav").write_bytes(b"")
    with pytest.raises(InputError, match="could be read"):
        evaluate_voice(None, tmp_path)


def test_cli_stderr_filter_never_blocks_writers_when_stderr_goes_away() -> None:
    code = ("import os, sys\n"
            "from affectlite.cli import _quiet_native_stderr\n"
            "with _quiet_native_stderr():\n"
            "    os.write(2, b'INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\\n' + b'x' * 1_000_000)\n"
            "    sys.stderr.write('after\\n')\n"
            "print('done')\n")
    r, w = os.pipe()
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=w, env=ENV)
    os.close(w)
    os.close(r)  # the reader of stderr goes away: forwarding fails, the filter must keep draining
    out, _ = p.communicate(timeout=60)
    assert p.returncode == 0 and out.strip() == b"done"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, env=ENV, timeout=60)
    assert p.returncode == 0 and b"XNNPACK" not in p.stderr and p.stderr.count(b"x") == 1_000_000
    assert p.stderr.endswith(b"after\n")


def test_read_goemotions_tsv_names_bad_encoding_and_unclosed_quotes(tmp_path: Path) -> None:
    """The public TSV reader turns a non-UTF-8 file or a runaway quote into InputError naming the file."""
    from affectlite.text import read_goemotions_tsv

    bad = tmp_path / "bad.tsv"
    bad.write_bytes(b"hello \xff\xfe\t1\n")
    with pytest.raises(InputError, match=r"bad\.tsv is not UTF-8 text .*convert it to UTF-8"):
        read_goemotions_tsv(bad)
    big = tmp_path / "big.tsv"
    big.write_text('"' + "x" * 200_000 + "\t1\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"big\.tsv: not a readable TSV .*unclosed quote"):
        read_goemotions_tsv(big)
