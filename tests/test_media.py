"""Recorded media end to end (issue 26): a video's own soundtrack and subtitles, offline analysis that drops
nothing and is deterministic, streams over loopback HTTP, and ``affectlite analyze`` with its HTML report opened
in a real headless Chromium with the network disabled.

The test media are made here with ffmpeg and espeak-ng: the sample video's frames (one smiling face) with a
synthesised speech track, and a SubRip file beside it.
"""

from __future__ import annotations

import csv
import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from _browser import headless_chromium

pytest.importorskip("av")

from affectlite import EmotionPipeline, PipelineOptions
from affectlite.cli import main as cli_main
from affectlite.errors import InputError, SourceUnavailableError
from affectlite.media import MediaCamera, MediaMicrophone, container_cues, probe, resolve_cues
from affectlite.samples import sample_video
from affectlite.subtitles import find_sidecar, load_subtitles, parse_srt, parse_vtt

SRT = """1
00:00:00,500 --> 00:00:01,800
I am <i>so happy</i> today!

2
00:00:02,200 --> 00:00:03,500
This is terrible, I hate it.
"""


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"needs {name} (Debian package {name})")
    return path


@pytest.fixture(scope="module")
def talk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4 s 640x480 30 fps talking-face video (H.264 + AAC) with talk.srt beside it."""
    d = tmp_path_factory.mktemp("media")
    wav = d / "speech.wav"
    subprocess.run([_tool("espeak-ng"), "-v", "en-us", "-s", "160", "-w", str(wav),
                    "I am so happy today! This is wonderful news."], check=True, capture_output=True)
    out = d / "talk.mp4"
    subprocess.run([_tool("ffmpeg"), "-hide_banner", "-loglevel", "error", "-y", "-i", str(sample_video()),
                    "-i", str(wav), "-map", "0:v", "-map", "1:a", "-t", "4", "-af", "apad", "-c:v", "libx264",
                    "-preset", "ultrafast", "-c:a", "aac", "-ac", "1", "-ar", "22050", str(out)],
                   check=True, capture_output=True)
    (d / "talk.srt").write_text(SRT, encoding="utf-8")
    return out


def _opts(video: Path, realtime: bool = False, **extra: Any) -> PipelineOptions:
    return PipelineOptions().replace(**{
        "camera.backend": "media", "camera.device": str(video), "camera.realtime": realtime, "camera.fps": 10,
        "audio.backend": "media", "audio.device": str(video), "audio.realtime": realtime, **extra})


def _run(opts: PipelineOptions, cues: list[tuple[int, str]] | None = None, slow_s: float = 0.0
         ) -> tuple[list[dict[str, Any]], Any]:
    out: list[dict[str, Any]] = []

    def on_result(r: Any) -> None:
        out.append(r.to_json_dict())
        if slow_s:
            threading.Event().wait(slow_s)

    with EmotionPipeline(opts, on_result=on_result, subtitles=cues) as pipe:
        assert pipe.wait(timeout=120)
        stats = pipe.stats()
    return out, stats


# ------------------------------------------------------------------------------------------ subtitles


def test_srt_and_vtt_cues_are_parsed_with_markup_removed(tmp_path: Path) -> None:
    cues = parse_srt(SRT)
    assert [(c.start_s, c.end_s, c.text) for c in cues] == [
        (0.5, 1.8, "I am so happy today!"), (2.2, 3.5, "This is terrible, I hate it.")]
    vtt = ("WEBVTT\n\nNOTE a comment\n\n00:01.000 --> 00:02.000\n<v Ann>Hello {\\an8}there\n\n"
           "id2\n00:00:03.5 --> 00:04\n")
    with pytest.raises(InputError, match="not a time"):
        parse_vtt(vtt)
    cues = parse_vtt(vtt.replace("00:04\n", "00:04.000\nbye\n"))
    assert [(c.start_s, c.text) for c in cues] == [(1.0, "Hello there"), (3.5, "bye")]
    with pytest.raises(InputError, match="WEBVTT"):
        parse_vtt(SRT)
    with pytest.raises(InputError, match="no 'start --> end' line"):
        parse_srt("1\nhello\n")
    with pytest.raises(InputError, match=r"\.srt or \.vtt"):
        load_subtitles(tmp_path / "x.txt")
    (tmp_path / "v.mp4").write_bytes(b"")
    (tmp_path / "v.vtt").write_text("WEBVTT\n", encoding="utf-8")
    assert find_sidecar(tmp_path / "v.mp4") == tmp_path / "v.vtt"


def test_cues_come_from_the_sidecar_or_the_container_track(talk: Path, tmp_path: Path) -> None:
    cues, where = resolve_cues(talk)
    assert where.endswith("talk.srt") and len(cues) == 2
    muxed = tmp_path / "muxed.mp4"  # the same cues as a mov_text track inside the container, no sidecar
    subprocess.run([_tool("ffmpeg"), "-loglevel", "error", "-y", "-i", str(talk), "-i", str(talk.with_suffix(".srt")),
                    "-map", "0", "-map", "1", "-c", "copy", "-c:s", "mov_text", str(muxed)], check=True)
    inner = container_cues(muxed)
    assert [(round(c.start_s, 2), c.text) for c in inner] == [(0.5, "I am so happy today!"),
                                                             (2.2, "This is terrible, I hate it.")]
    assert resolve_cues(muxed) == (inner, "container")
    assert resolve_cues(muxed, talk.with_suffix(".srt"))[1].endswith("talk.srt")


# ------------------------------------------------------------------------------------------ sources


def test_media_sources_use_container_timestamps(talk: Path) -> None:
    info = probe(talk)
    assert (info.width, info.height, info.has_audio, round(info.fps)) == (640, 480, True, 30)
    cam = MediaCamera(talk, fps=10, realtime=False)
    cam.open()
    frames = []
    while (f := cam.read()) is not None:
        frames.append(f)
    cam.close()
    assert cam.recorded and len(frames) == 40  # 4 s at 10 of the file's 30 frames per second
    assert [round(f.timestamp_ns / 1e9, 3) for f in frames[:3]] == [0.0, 0.1, 0.2]
    assert frames[0].image.shape == (480, 640, 3)
    mic = MediaMicrophone(talk, chunk_ms=100, realtime=False)
    mic.open()
    chunks = []
    while (c := mic.read()) is not None:
        chunks.append(c)
    mic.close()
    assert mic.recorded and 39 <= len(chunks) <= 41
    assert chunks[10].timestamp_ns == pytest.approx(1.0e9, abs=0.03e9)  # AAC priming: within a frame
    assert all(c.samples.dtype.name == "int16" and c.samples.ndim == 1 for c in chunks)
    with pytest.raises(SourceUnavailableError, match="does not exist"):
        MediaCamera(talk.with_name("missing.mp4")).open()


def test_a_missing_pyav_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch, talk: Path) -> None:
    monkeypatch.setitem(sys.modules, "av", None)  # import av -> ImportError
    with pytest.raises(SourceUnavailableError, match=r"affectlite\[media\]"):
        MediaCamera(talk).open()


# ------------------------------------------------------------------------------------------ the pipeline


def test_one_video_file_gives_face_voice_and_text_results(talk: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["run", "--video", str(talk), "--fast"]) == 0
    lines = [json.loads(ln) for ln in capsys.readouterr().out.splitlines()]
    results = [ln for ln in lines if ln["event"] == "result"]
    stats = next(ln for ln in lines if ln["event"] == "stats")
    assert any(r["faces"] for r in results), "no face result"
    assert any(r["voice"] for r in results), "no voice result from the video's own soundtrack"
    texts = {r["text"]["label"] for r in results if r["text"]}
    assert texts, "no text result from talk.srt"
    assert any(set(r["modality_weights"]) >= {"face", "voice"} for r in results)
    assert stats["state"] == "finished" and stats["counts"]["mic"] >= 39 and stats["counts"]["text"] == 2
    assert set(stats["drops"].values()) == {0}
    # the text results sit at the cues' start times (media time), the first face frames at 0.1 s steps
    assert sorted({r["text"]["timestamp_ns"] for r in results if r["text"]}) == [500_000_000, 2_200_000_000]


def test_offline_drops_nothing_and_fast_equals_realtime(talk: Path) -> None:
    cues = [(c.start_ns, c.text) for c in load_subtitles(talk.with_suffix(".srt"))]
    tiny: dict[str, Any] = {"queues.frames": 1, "queues.audio": 1, "queues.results": 1}
    fast, st = _run(_opts(talk, **tiny), cues, slow_s=0.002)  # a slow callback and one-slot queues
    assert set(st.drops.values()) == {0}
    assert st.counts["camera"] == st.counts["face"] == 40 and st.counts["mic"] >= 39
    again, _ = _run(_opts(talk), cues)
    real, st_rt = _run(_opts(talk, realtime=True), cues)
    assert st_rt.uptime_s >= 3.5  # really paced
    assert fast == again == real  # deterministic: same input, same output, whatever the pace or the queues
    assert len(fast) >= 40


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_a_loopback_http_stream_with_sound_is_read(talk: Path, tmp_path: Path) -> None:
    ts = tmp_path / "web.mp4"  # index first (faststart): plain HTTP, no range requests needed
    subprocess.run([_tool("ffmpeg"), "-loglevel", "error", "-y", "-i", str(talk), "-c", "copy", "-movflags",
                    "+faststart", str(ts)], check=True)
    handler = functools.partial(_QuietHandler, directory=str(tmp_path))
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}/{ts.name}"
        out, st = _run(_opts(Path(url)).replace(**{"camera.device": url, "audio.device": url}))
    finally:
        srv.shutdown()
        srv.server_close()
    assert st.counts["camera"] == 40 and st.counts["mic"] >= 39 and set(st.drops.values()) == {0}
    assert any(r["voice"] for r in out) and any(r["faces"] for r in out)


# ------------------------------------------------------------------------------------------ analyze + report


@pytest.fixture(scope="module")
def analysed(talk: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("matplotlib")
    out = tmp_path_factory.mktemp("analysis")
    second = talk.with_name("second.mp4")
    shutil.copyfile(sample_video(), second)
    assert cli_main(["analyze", str(talk), str(second), "--out", str(out), "--quiet"]) == 0
    return out


def test_analyze_two_files_writes_both_reports_and_the_index(analysed: Path) -> None:
    for stem in ("talk", "second"):
        d = analysed / stem
        assert sorted(p.name for p in d.iterdir()) == ["report.html", "results.csv", "results.jsonl",
                                                       "summary.json"]  # nothing raw
        s = json.loads((d / "summary.json").read_text())
        assert s["duration_s"] == pytest.approx(4.0 if stem == "talk" else 9.6, abs=0.1)
        assert set(s["drops"].values()) == {0} and s["fused"] and "face 1" in s["face_tracks"]
        assert s["speech_s"] > 1.0 and s["modalities"]["voice"]
        rows = list(csv.DictReader((d / "results.csv").open()))
        jsonl = (d / "results.jsonl").read_text().splitlines()
        assert len(rows) == len(jsonl) == s["results"] > 0
        assert abs(sum(float(rows[0][f"p_{k}"]) for k in ("neutral", "happy", "sad", "angry", "fear", "disgust",
                                                             "surprise")) - 1) < 0.01
        page = (d / "report.html").read_text()
        assert "<svg" in page and "<script" not in page and "@font-face" not in page
        for external in ('src="http', "src='http", 'href="http', "url(http", "@import", "<link"):
            assert external not in page, external
    talk_summary = json.loads((analysed / "talk" / "summary.json").read_text())
    assert talk_summary["subtitle_cues"] == 2 and talk_summary["modalities"]["text"]
    index = (analysed / "index.html").read_text()
    assert 'href="talk/report.html"' in index and 'href="second/report.html"' in index


def test_report_timeline_renders_in_headless_chromium_offline(analysed: Path, tmp_path: Path) -> None:
    drv = headless_chromium("report", "1200,1000", ("--proxy-server=http://127.0.0.1:9",
                                                   "--host-resolver-rules=MAP * ~NOTFOUND"))
    try:
        drv.set_network_conditions(offline=True, latency=0, download_throughput=0, upload_throughput=0)
        drv.get((analysed / "talk" / "report.html").as_uri())
        box = drv.execute_script("""const s = document.querySelector('#timeline svg');
            const r = s.getBoundingClientRect();
            return {w: r.width, h: r.height, top: r.top, left: r.left, paths: s.querySelectorAll('path').length,
                    failed: performance.getEntriesByType('resource').length};""")
        assert box["w"] > 800 and box["h"] > 250 and box["paths"] > 30, box
        assert box["failed"] == 0, "the report loaded an external resource"
        assert "face 1" in drv.find_element("id", "tracks").text
        png = tmp_path / "report.png"
        drv.save_screenshot(str(png))
    finally:
        drv.quit()
    from matplotlib.image import imread

    img = (imread(str(png))[..., :3] * 255).round()
    top, left = int(box["top"]), int(box["left"])
    region = img[top:top + int(box["h"]), left:left + int(box["w"])]
    happy = ((abs(region[..., 0] - 0xE6) < 12) & (abs(region[..., 1] - 0x9F) < 12) & (region[..., 2] < 30)).mean()
    assert happy > 0.05, f"the timeline shows little of the face's 'happy' colour ({happy:.3f} of its pixels)"


@pytest.fixture
def no_threads_left() -> Iterator[None]:
    before = {t.name for t in threading.enumerate()}
    yield
    assert not {t.name for t in threading.enumerate() if t.name.startswith("affectlite-")} - before


def test_analyze_refuses_bad_inputs_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            no_threads_left: None) -> None:
    assert cli_main(["analyze", str(tmp_path / "nope.mp4"), "--out", str(tmp_path / "o")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert cli_main(["analyze", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "no media files" in capsys.readouterr().err
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all")
    assert cli_main(["analyze", str(bad), "--out", str(tmp_path / "o"), "--quiet"]) == 1
    assert "bad.mp4" in capsys.readouterr().err


def test_the_sample_is_one_video_with_its_own_soundtrack_and_subtitles() -> None:
    from affectlite.cli import _options_from_args, build_parser, run_cues

    opts = _options_from_args(build_parser().parse_args(["run", "--sample"]))
    video = str(sample_video())
    assert (opts.camera.backend, opts.camera.device) == ("media", video)
    assert (opts.audio.backend, opts.audio.device, opts.audio.enabled) == ("media", video, True)  # no WAV
    cues = run_cues(opts, None)
    assert [t for t, _ in cues] == [400_000_000, 2_300_000_000, 4_940_000_000]  # sample.srt beside it
    info = probe(video)
    assert info.has_audio and info.duration_s == pytest.approx(9.6, abs=0.05)
    no_audio = _options_from_args(build_parser().parse_args(["run", "--sample", "--no-audio"]))
    assert not no_audio.audio.enabled


def test_iterating_over_a_recording_gets_every_result_and_wait_alone_returns(talk: Path) -> None:
    expected, _ = _run(_opts(talk, **{"queues.results": 2}))
    with EmotionPipeline(_opts(talk, **{"queues.results": 2})) as pipe:
        got = [r.to_json_dict() for r in pipe]  # a reader on this thread: nothing dropped
        assert set(pipe.stats().drops.values()) == {0}
    assert got == expected
    with EmotionPipeline(_opts(talk, **{"queues.results": 2})) as pipe:  # nobody reads: wait() still returns
        assert pipe.wait(timeout=60)


def test_pyav_and_matplotlib_load_only_when_used() -> None:
    code = ("import sys, affectlite, affectlite.pipeline, affectlite.media, affectlite.analyze, affectlite.report, "
            "affectlite.subtitles, affectlite.cli\naffectlite.cli.build_parser()\n"
            "print([m for m in ('av', 'matplotlib', 'tqdm') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_analyze_again_gives_the_same_results_and_thumbnails_only_when_asked(analysed: Path, talk: Path,
                                                                             tmp_path: Path) -> None:
    assert cli_main(["analyze", str(talk), "--out", str(tmp_path), "--quiet", "--keep-thumbnails"]) == 0
    first, again = analysed / "talk", tmp_path / "talk"
    for name in ("results.jsonl", "results.csv"):
        assert (again / name).read_bytes() == (first / name).read_bytes(), name
    s1, s2 = (json.loads((d / "summary.json").read_text()) for d in (first, again))
    assert s1 == s2
    thumbs = sorted(p.name for p in (again / "thumbnails").iterdir())
    assert thumbs and all(n.startswith("face") and n.endswith(".png") for n in thumbs)
    assert f'src="thumbnails/{thumbs[0]}"' in (again / "report.html").read_text()
    assert not (first / "thumbnails").exists()


def test_a_live_stream_is_stamped_on_the_monotonic_clock_and_ends_with_an_error(
        talk: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    import affectlite.media as media
    from affectlite.errors import SourceError

    monkeypatch.setattr(media, "_is_recorded", lambda device, container: False)  # as if it came over RTSP
    cam = MediaCamera(talk, fps=10, realtime=True)
    before = time.monotonic_ns()
    cam.open()
    frames = [cam.read() for _ in range(5)]
    assert not cam.recorded
    ts = [f.timestamp_ns for f in frames if f is not None]
    assert before <= ts[0] <= time.monotonic_ns()
    assert [round((t - ts[0]) / 1e9, 2) for t in ts] == [0.0, 0.1, 0.2, 0.3, 0.4]  # container spacing kept
    with pytest.raises(SourceError, match="ended"):
        while True:
            cam.read()
    cam.close()


def test_without_pyav_the_sample_falls_back_to_opencv_frames_and_the_wav(monkeypatch: pytest.MonkeyPatch,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    import affectlite.media as media
    from affectlite.cli import _options_from_args, build_parser
    from affectlite.samples import sample_audio

    monkeypatch.setattr(media, "media_available", lambda: False)
    opts = _options_from_args(build_parser().parse_args(["run", "--sample"]))
    assert (opts.camera.backend, opts.audio.backend, opts.audio.device) == ("opencv", "file", str(sample_audio()))
    assert "PyAV" not in caplog.text  # the README's first command: no warning, the speech comes from the WAV
    video = _options_from_args(build_parser().parse_args(["run", "--video", str(sample_video())]))
    assert video.camera.backend == "opencv" and not video.audio.enabled
    assert "affectlite[media]" in caplog.text  # a user's video without PyAV: frames only, and how to fix it


def test_the_speed_benchmark_script_runs(talk: Path) -> None:
    """The benchmark itself (figures in docs/media.md) is not timed here; this only keeps the script working."""
    script = Path(__file__).parent / "benchmarks" / "bench_media.py"
    r = subprocess.run([sys.executable, str(script), "--video", str(talk), "--repeat", "1"], capture_output=True,
                       text=True, check=True, timeout=120)
    out = json.loads(r.stdout)
    run = out["runs"][0]
    assert run["media_s"] == pytest.approx(4.0, abs=0.1) and run["counts"]["face"] == 40
    assert set(run["drops"].values()) == {0} and out["best_x_realtime"] > 0 and run["cpu_per_media_s"] > 0


def test_stream_credentials_stay_out_of_names_and_messages() -> None:
    from affectlite.media import redact

    url = "rtsp://user:s3cret@10.0.0.5:554/cam/1?x=1"
    assert redact(url) == "rtsp://10.0.0.5:554/cam/1?x=1" and redact("/a/b.mp4") == "/a/b.mp4"
    assert "s3cret" not in MediaCamera(url).name and "s3cret" not in MediaMicrophone(url).name


def test_the_report_of_a_long_recording_stays_small() -> None:
    """An hour at 10 results per second: compact rows in memory, an SVG of bounded size (bins and merged bars)."""
    pytest.importorskip("matplotlib")
    from affectlite.labels import LABELS
    from affectlite.report import ResultLog, summarize, timeline_svg

    log = ResultLog()
    for i in range(36_000):
        lab = "happy" if (i // 600) % 2 == 0 else "sad"
        probs = {k: (0.7 if k == lab else 0.05) for k in LABELS}
        log.add({"capture_ns": i * 100_000_000, "track_id": 1, "label": lab, "probabilities": probs,
                 "faces": [{"track_id": 1, "label": lab, "confidence": 0.7}],
                 "voice": {"utterance_id": i // 50, "start_ns": (i // 50) * 5_000_000_000,
                           "end_ns": (i // 50) * 5_000_000_000 + 3_000_000_000, "label": "neutral"}})
    assert len(log.rows) == 36_000 and len({id(r["voice"]) for r in log.rows}) == 720  # voice entries shared
    summary = summarize(log.rows, duration_s=3600.0)
    assert summary["fused"] == {"happy": 0.5, "sad": 0.5} and summary["utterances"] == 720
    assert summary["face_tracks"]["face 1"]["visible_s"] == pytest.approx(3600, abs=1)
    svg = timeline_svg(log.rows, duration_s=3600.0)
    assert svg.startswith("<svg") and len(svg) < 1_500_000


def test_a_gap_in_the_audio_track_is_filled_with_silence_so_audio_stays_in_sync(talk: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.mkv"  # 0.5 s of audio removed at 1.0 s, the rest keeps its timestamps
    subprocess.run([_tool("ffmpeg"), "-loglevel", "error", "-y", "-i", str(talk), "-map", "0:v", "-map", "0:a",
                    "-c:v", "copy", "-af", "aselect='not(between(t,1,1.5))'", "-c:a", "pcm_s16le", str(cut)],
                   check=True)
    mic = MediaMicrophone(cut, realtime=False)
    mic.open()
    chunks = []
    while (c := mic.read()) is not None:
        chunks.append(c)
    mic.close()
    assert mic.gaps == 1 and mic.gap_s == pytest.approx(0.5, abs=0.03)
    assert chunks[30].timestamp_ns == pytest.approx(3.0e9, abs=0.03e9)  # still on the media clock after the gap
    assert not chunks[12].samples.any()  # 1.2 s: inside the gap, silence


def test_a_portrait_phone_video_is_turned_upright(talk: Path, tmp_path: Path) -> None:
    turned = tmp_path / "phone.mp4"  # the same frames, flagged "display turned by 90 degrees" (display matrix)
    subprocess.run([_tool("ffmpeg"), "-loglevel", "error", "-y", "-i", str(talk), "-c", "copy", "-metadata:s:v:0",
                    "rotate=90", str(turned)], check=True)
    frames = []
    for path in (talk, turned):
        cam = MediaCamera(path, fps=10, realtime=False)
        cam.open()
        f = cam.read()
        cam.close()
        assert f is not None
        frames.append(f.image)
    import numpy as np

    assert frames[1].shape == (640, 480, 3) and (frames[1] == np.rot90(frames[0], 1)).all()
    cv2 = pytest.importorskip("cv2")  # the way OpenCV (and players) show it
    cap = cv2.VideoCapture(str(turned))
    ok, bgr = cap.read()
    cap.release()
    assert ok and bgr.shape == frames[1].shape
    assert np.abs(bgr[:, :, ::-1].astype(int) - frames[1].astype(int)).mean() < 2.0


def test_run_on_a_video_opens_no_socket_and_writes_no_file(talk: Path, tmp_path: Path) -> None:
    """System-call witness for the media path (PyAV/FFmpeg included): strace of ``affectlite run --video``."""
    strace = _tool("strace")
    log = tmp_path / "strace.log"
    work = tmp_path / "cwd"
    work.mkdir()
    env = {**os.environ, "HOME": str(work), "TMPDIR": str(work)}
    r = subprocess.run([strace, "-f", "-qq", "-e", "trace=openat,connect,socket,bind", "-o", str(log),
                        sys.executable, "-m", "affectlite.cli", "run", "--video", str(talk), "--fast"],
                       cwd=work, env=env, capture_output=True, text=True, timeout=120, check=False)
    if r.returncode != 0 and "ptrace" in r.stderr:
        pytest.skip(f"strace cannot trace here: {r.stderr.strip()[:200]}")
    assert r.returncode == 0, r.stderr
    lines = log.read_text().splitlines()
    assert any(str(talk) in ln for ln in lines), "strace did not see the video being read"
    writes = [ln for ln in lines if "openat(" in ln and any(f in ln for f in ("O_WRONLY", "O_RDWR", "O_CREAT"))
              and "= -1" not in ln and "/dev/null" not in ln]
    net = [ln for ln in lines if ("connect(" in ln or "socket(" in ln or "bind(" in ln) and "= -1" not in ln]
    assert writes == [] and net == [], writes[:5] + net[:5]
    assert list(work.iterdir()) == []
    assert any(json.loads(ln).get("text") for ln in r.stdout.splitlines() if ln.startswith('{"event": "result"'))
