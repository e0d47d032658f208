"""The ``affectlite`` command: run, doctor, classify, eval, bench (+ convert and train when the workstation
package ``affectlite_convert`` is installed).

Exit codes: 0 success, 1 failure of a check (e.g. thresholds) or an unexpected internal error, 2 bad input or
configuration, 130 Ctrl-C or SIGTERM.

The boundary rule (docs/reliability.md): every problem with what the user gave is printed as one line
``affectlite COMMAND: error: WHAT (HOW TO FIX)`` and exits 2; an unexpected internal error prints a short
``affectlite COMMAND: internal error: ...`` line naming a log file with the traceback (``-v`` prints it) and
exits 1. No raw traceback otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import importlib.util
import json
import logging
import math
import os
import platform
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .errors import AffectliteError, ConfigError

__all__ = ["build_parser", "main"]

log = logging.getLogger("affectlite.cli")


def _parse_value(v: str) -> Any:
    try:
        return json.loads(v)
    except json.JSONDecodeError:
        return v


def _overrides(pairs: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in pairs:
        if "=" not in p:
            raise ConfigError(f"--set expects KEY=VALUE (e.g. camera.fps=10), got {p!r}")
        k, v = p.split("=", 1)
        out[k.strip()] = _parse_value(v.strip())
    return out


def _positive_float(v: str) -> float:
    """argparse type: a finite number > 0 (``--duration``)."""
    try:
        f = float(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {v!r}") from None
    if not math.isfinite(f) or f <= 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {v!r}")
    return f


def _positive_int(v: str) -> int:
    """argparse type: an integer >= 1 (``--limit``)."""
    try:
        i = int(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {v!r}") from None
    if i < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {v!r}")
    return i


def _options_from_args(args: argparse.Namespace) -> Any:
    from .options import PipelineOptions

    ov = _overrides(args.set or [])
    from .media import media_available

    media = media_available()
    if getattr(args, "sample", False):
        from .samples import sample_audio, sample_video

        args.video = args.video or str(sample_video())  # one file: its own soundtrack (and subtitles)
        if not media and not args.no_audio:  # without PyAV: OpenCV frames + the same speech as a WAV
            args.audio = args.audio or str(sample_audio())
    if args.video:
        if media:  # frames, the soundtrack and subtitles with container timestamps
            ov.update({"camera.backend": "media", "camera.device": args.video, "camera.enabled": True})
            if not args.audio and args.mic is None and not args.no_audio:
                ov.update({"audio.backend": "media", "audio.device": args.video, "audio.enabled": True})
        else:
            from .media import MEDIA_HINT

            if not args.audio and not args.no_audio:
                log.warning("%s; analysing the frames only (OpenCV)", MEDIA_HINT)
            ov.update({"camera.backend": "opencv", "camera.device": args.video, "camera.enabled": True})
    if args.images:
        ov.update({"camera.backend": "images", "camera.device": args.images, "camera.enabled": True})
    if args.camera is not None:
        ov["camera.device"] = int(args.camera) if str(args.camera).isdigit() else args.camera
    if args.audio:  # beside a video read with PyAV, the audio file goes through PyAV too (one media clock)
        ov.update({"audio.backend": "media" if args.video and media else "file", "audio.device": args.audio,
                   "audio.enabled": True})
    if args.mic is not None:
        ov["audio.device"] = int(args.mic) if str(args.mic).isdigit() else args.mic
    files = bool(args.video or args.images or args.audio)
    if getattr(args, "subtitles", None) and not args.video:
        raise ConfigError("--subtitles goes with --video (the cues are timed against the video)")
    if files:
        ov.setdefault("camera.realtime", not args.fast)
        ov.setdefault("camera.every_frame", bool(args.fast))
        ov.setdefault("audio.realtime", not args.fast)
        if not (args.video or args.images or args.camera is not None):
            ov["camera.enabled"] = False
        if not (args.audio or args.mic is not None or ov.get("audio.backend") == "media"):
            ov["audio.enabled"] = False
    if args.no_camera:
        ov["camera.enabled"] = False
    if args.no_audio:
        ov["audio.enabled"] = False
    if args.no_offline_guard:
        ov["privacy.offline_guard"] = False
    profile = args.profile
    if profile == "auto" and files and not args.set:
        # files need no device profile; use the generic defaults so a laptop run is reproducible
        opts = PipelineOptions().replace(**ov)
    else:
        opts = PipelineOptions.from_profile(profile, overrides=ov)
    if not (opts.camera.enabled and opts.face.enabled) and not (opts.audio.enabled and opts.voice.enabled):
        # the command line cannot push text: with neither camera nor audio a run would idle forever
        raise ConfigError("nothing to sense: the camera and the audio are both disabled (--no-camera/--no-audio "
                          "or the profile); keep one of them, or use `affectlite classify --text` for text")
    return opts


def _cmd_run(args: argparse.Namespace) -> int:
    from .pipeline import EmotionPipeline
    from .results import EmotionResult, SourceStatus

    opts = _options_from_args(args)
    out = sys.stdout
    lock = threading.Lock()
    count = {"n": 0}
    journal = None
    if args.journal:
        from .journal import EventJournal

        journal = EventJournal(args.journal)

    def emit(obj: dict[str, Any]) -> None:
        with lock:
            out.write(json.dumps(obj) + "\n")
            out.flush()

    def on_result(r: EmotionResult) -> None:
        count["n"] += 1
        if journal is not None:
            journal.append(r)
        if args.pretty:
            faces = ", ".join(f"#{f.track_id} {f.label} {f.confidence:.2f}" for f in r.faces) or "-"
            voice = f"{r.voice.label} {r.voice.confidence:.2f}" if r.voice else "-"
            if r.voice is not None and r.voice.reliability is not None:
                voice += f" (reliability {r.voice.reliability:.2f})"
            with lock:
                out.write(f"{r.label:>8} {r.confidence:4.2f}  valence {r.valence:+.2f} arousal {r.arousal:.2f}"
                          f"  faces: {faces}  voice: {voice}"
                          + (f"  text: {r.text.label} {r.text.confidence:.2f}" if r.text else "") + "\n")
                out.flush()
        else:
            emit({"event": "result", **r.to_json_dict()})

    def on_status(s: SourceStatus) -> None:
        print(f"[{s.source}] {s.state}: {s.detail}", file=sys.stderr)

    def on_error(e: BaseException) -> None:
        print(f"error: {e}", file=sys.stderr)

    consent = None
    if args.consent:
        from .privacy import ConsentToken

        consent = ConsentToken.grant(purpose=args.consent, granted_by="cli")
    cues = run_cues(opts, getattr(args, "subtitles", None))
    pipe = EmotionPipeline(opts, on_result=on_result, on_status=on_status, on_error=on_error, consent=consent,
                           subtitles=cues)
    try:
        with pipe:
            pipe.wait(timeout=args.duration)
            if not args.pretty:
                st = pipe.stats()
                emit({"event": "stats", "state": st.state, "counts": st.counts, "drops": st.drops,
                      "latency_ms_p50": round(st.latency_ms_p50, 2), "latency_ms_p95": round(st.latency_ms_p95, 2)})
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
        return 130
    finally:
        if journal is not None:
            journal.close()
    return 0


def run_cues(opts: Any, subtitles: str | None) -> list[tuple[int, str]]:
    """The subtitle cues of a run on a video read with PyAV: ``subtitles`` (a file), the sidecar file beside
    the video, or the container's subtitle track, as ``(start_ns, text)``; empty otherwise."""
    if opts.camera.backend != "media" or not opts.camera.enabled or not opts.text.enabled:
        return []
    from .media import resolve_cues

    cues, where = resolve_cues(str(opts.camera.device), subtitles)
    if cues:
        log.info("%d subtitle cues from %s", len(cues), where)
    return [(c.start_ns, c.text) for c in cues]


def _cmd_analyze(args: argparse.Namespace) -> int:
    from . import analyze

    return analyze.run(args)


def _cmd_classify(args: argparse.Namespace) -> int:
    from .classifier import EmotionClassifier
    from .errors import InputError

    if not (args.image or args.audio or args.text is not None):
        raise InputError("give at least one of --image, --audio, --text")
    opts = _classify_options(args)
    image = None
    if args.image:
        from .cameras import read_image

        image = read_image(args.image)
    with EmotionClassifier.default(opts) as clf:
        if args.audio:  # read window by window: memory stays bounded for any length of recording
            r = clf.classify_file(audio=args.audio, image=image, text=args.text)
        else:
            r = clf.classify(image=image, text=args.text)
    print(json.dumps(r.to_json_dict(), indent=2 if args.pretty else None))
    return 0


def _classify_options(args: argparse.Namespace) -> Any:
    """Options for ``classify``: the generic defaults, or ``--profile``, with ``--model`` and ``--set``."""
    from .options import PipelineOptions

    ov = _overrides(args.set or [])
    for m in args.model or []:
        from .card import card_path_for, load_card

        mp = Path(m)
        if not mp.is_file():
            raise ConfigError(f"--model {m}: no such model file")
        card = load_card(card_path_for(mp))
        if card.task not in ("face", "voice", "text"):
            raise ConfigError(f"--model {m}: its card says task {card.task!r}; classify takes face, voice or text "
                              "models (set fusion.head_path with --set for a fusion head)")
        ov[f"{card.task}.model_path"] = str(mp)
    if args.profile is None:
        return PipelineOptions().replace(**ov) if ov else PipelineOptions()
    return PipelineOptions.from_profile(args.profile, overrides=ov)


def _check(name: str, ok: bool, detail: str) -> dict[str, Any]:
    return {"name": name, "ok": ok, "detail": detail}


def doctor_report() -> dict[str, Any]:
    """Everything ``affectlite doctor`` checks, as a dict (also used by tests)."""
    import numpy as np

    from .interpreters import describe_backends

    rep: dict[str, Any] = {"python": sys.version.split()[0], "numpy": np.__version__,
                           "platform": platform.platform(), "machine": platform.machine(), "checks": []}
    checks: list[dict[str, Any]] = rep["checks"]
    for b in describe_backends():
        checks.append(_check(f"interpreter:{b.name}", b.available, "installed" if b.available else b.reason))
    try:
        import cv2

        info = cv2.getBuildInformation()
        gst = "GStreamer:                   YES" in info or any(
            "GStreamer" in ln and "YES" in ln for ln in info.splitlines())
        checks.append(_check("opencv", True, f"{cv2.__version__}, GStreamer {'yes' if gst else 'no'}"))
    except ImportError:
        from .cameras.opencv import OPENCV_HINT

        checks.append(_check("opencv", False, OPENCV_HINT))
    if importlib.util.find_spec("picamera2") is not None:
        checks.append(_check("picamera2", True, "importable"))
    else:
        from .cameras.picamera2 import PICAMERA2_HINT

        checks.append(_check("picamera2", False, PICAMERA2_HINT))
    vids = sorted(str(p) for p in Path("/dev").glob("video*"))
    checks.append(_check("cameras", bool(vids), ", ".join(vids) if vids else
                         "no /dev/video* devices (USB/CSI camera not connected, or not in the 'video' group)"))
    try:
        from .microphones import list_input_devices

        devs = list_input_devices()
        checks.append(_check("microphones", bool(devs), "; ".join(f"{d['index']}: {d['name']} "
                                                                   f"({int(d['default_rate'])} Hz)" for d in devs)
                             or "PortAudio sees no input device"))
    except AffectliteError as e:
        checks.append(_check("microphones", False, str(e)))
    except OSError as e:
        checks.append(_check("microphones", False, f"PortAudio error: {e}"))
    checks.append(_check("soundfile", importlib.util.find_spec("soundfile") is not None,
                         "FLAC/other formats" if importlib.util.find_spec("soundfile") else
                         "not installed (WAV still works): pip install 'affectlite[files]'"))
    from .media import MEDIA_HINT, media_available

    checks.append(_check("pyav", media_available(), "a video's soundtrack and subtitles (--video, analyze)"
                         if media_available() else MEDIA_HINT))
    report_ok = all(importlib.util.find_spec(m) is not None for m in ("matplotlib", "tqdm"))
    checks.append(_check("report", report_ok, "affectlite analyze's HTML report and progress bars" if report_ok
                         else "matplotlib/tqdm not installed (analyze needs them): pip install 'affectlite[report]'"))
    models_dir = Path(__file__).parent / "models"
    for task in ("face", "voice", "text"):
        p = models_dir / f"{task}.tflite"
        if not p.exists():
            checks.append(_check(f"model:{task}", False, f"{p} missing (reinstall affectlite)"))
            continue
        try:
            from .model import Model

            m = Model.load(p, expected_task=task)
            checks.append(_check(f"model:{task}", True, f"{m.card.name} {m.card.version} via {m.backend}, "
                                 f"{p.stat().st_size // 1024} KB"))
        except AffectliteError as e:
            checks.append(_check(f"model:{task}", False, str(e)))
    try:
        from .profiles import describe_detection

        rep["profile"] = describe_detection()
        checks.append(_check("profile", True, rep["profile"]))
    except AffectliteError as e:
        checks.append(_check("profile", False, str(e)))
    except ImportError as e:
        checks.append(_check("profile", False, f"profiles unavailable: {e}"))
    checks.append(_face_detector_check(rep))
    rep["tensorflow_imported"] = "tensorflow" in sys.modules
    return rep


def _face_detector_check(rep: dict[str, Any]) -> dict[str, Any]:
    """Which face detector the detected profile runs and why (BlazeFace, or Haar as its fallback)."""
    from .detectors import available_detectors, choose_detector

    try:
        from .options import PipelineOptions

        fo = PipelineOptions.from_profile("auto").face
        requested, model = fo.detector, fo.detector_model
    except (AffectliteError, ImportError) as e:  # no usable profile: report the library default
        from .options import FaceOptions

        log.debug("doctor: profile not loadable (%s); using the FaceOptions defaults", e)
        requested, model = FaceOptions().detector, FaceOptions().detector_model
    ch = choose_detector(requested, model)
    usable, detail = available_detectors().get(ch.name, (False, f"{ch.name} is not registered"))
    if ch.model_path is not None:  # an explicit model file: usable when it exists (the detector checks the rest)
        usable, detail = Path(ch.model_path).is_file(), f"face.detector_model={ch.model_path} does not exist"
    rep["face_detector"] = {"requested": ch.requested, "name": ch.name, "fallback": ch.fallback,
                            "reason": ch.reason, "usable": usable}
    text = f"{ch.name} runs: {ch.reason}" if usable else f"{ch.name} cannot run: {detail}; {ch.reason}"
    return _check("face-detector", usable and not ch.fallback, text)


def _cmd_doctor(args: argparse.Namespace) -> int:
    rep = doctor_report()
    if args.json:
        print(json.dumps(rep, indent=2))
        return 0
    print(f"affectlite doctor - Python {rep['python']}, numpy {rep['numpy']}, {rep['machine']}")
    for c in rep["checks"]:
        print(f"  [{'ok' if c['ok'] else '--'}] {c['name']:<26} {c['detail']}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    if args.flip_tta and args.modality != "face":
        raise ConfigError(f"--flip-tta mirrors images: use it with 'affectlite eval face', not {args.modality}")
    mod = importlib.import_module(f"affectlite.{args.modality}")
    fn = getattr(mod, f"eval_{args.modality}_main")
    return int(fn(args))


def _cmd_profile(args: argparse.Namespace) -> int:
    from . import profiles

    return profiles.run(args)


def _cmd_bench(args: argparse.Namespace) -> int:
    from . import bench

    return int(bench.run(args))


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``affectlite`` command."""
    p = argparse.ArgumentParser(prog="affectlite", description="On-device emotion recognition: camera, "
                                "microphone and text, fused locally. Nothing leaves the device.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging to stderr")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    r = sub.add_parser("run", help="run the live pipeline; JSON lines of results on stdout")
    r.add_argument("--profile", default="auto", help="device profile: auto, a name (rpi5, x86_64...) or a YAML path")
    r.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a profile key, e.g. camera.fps=10")
    r.add_argument("--sample", action="store_true", help="run on the shipped sample video with its own soundtrack "
                   "(no camera/mic)")
    r.add_argument("--video", help="video file or URL instead of the camera; its soundtrack is the audio (unless "
                   "--audio/--no-audio) and a .srt/.vtt beside it (same stem) or its subtitle track the text")
    r.add_argument("--subtitles", metavar="FILE", help="subtitles (.srt/.vtt) of --video, pushed as text at each "
                   "cue's start")
    r.add_argument("--images", help="folder of images instead of the camera")
    r.add_argument("--camera", help="camera index, /dev/videoN or GStreamer pipeline")
    r.add_argument("--audio", help="WAV/FLAC file instead of the microphone")
    r.add_argument("--mic", help="microphone index or name substring")
    r.add_argument("--no-camera", action="store_true", help="audio (and text) only")
    r.add_argument("--no-audio", action="store_true", help="camera (and text) only")
    r.add_argument("--fast", action="store_true",
                   help="analyse the files as fast as possible instead of in real time (a video read with PyAV "
                   "gives the same results either way: nothing is dropped)")
    r.add_argument("--duration", type=_positive_float, default=None, help="stop after this many seconds (> 0)")
    r.add_argument("--pretty", action="store_true", help="human-readable lines instead of JSON")
    r.add_argument("--consent", metavar="PURPOSE", help="grant the consent token a profile may require")
    r.add_argument("--journal", metavar="DB", help="also store results (labels and scores only) in SQLite")
    r.add_argument("--no-offline-guard", action="store_true", help="do not block network connections (opt-out)")
    r.set_defaults(func=_cmd_run)

    an = sub.add_parser("analyze", help="analyse recordings offline: results (JSONL, CSV), summary and an HTML report "
                        "per file")
    from . import analyze

    analyze.add_arguments(an)
    an.set_defaults(func=_cmd_analyze)

    d = sub.add_parser("doctor", help="list backends, cameras, microphones, models, the chosen profile "
                                      "and the face detector")
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=_cmd_doctor)

    c = sub.add_parser("classify", help="classify one image, audio clip and/or text and print the fused JSON")
    c.add_argument("--image", help="an image file (faces are detected)")
    c.add_argument("--audio", help="a WAV/FLAC file of any length (read window by window)")
    c.add_argument("--text", help="a sentence")
    c.add_argument("--model", action="append", metavar="PATH",
                   help="a converted face/voice/text .tflite to use instead of the shipped one (its card says "
                        "which); repeatable")
    c.add_argument("--profile", default=None, help="device profile to take the options from (default: the generic "
                   "defaults)")
    c.add_argument("--set", action="append", metavar="KEY=VALUE", help="override an option, e.g. "
                   "voice.hop_s=0.5")
    c.add_argument("--pretty", action="store_true")
    c.set_defaults(func=_cmd_classify)

    e = sub.add_parser("eval", help="evaluate a model on a labelled dataset; prints JSON")
    e.add_argument("modality", choices=["face", "voice", "text"])
    e.add_argument("--data", required=True, help="folder of labelled images/audio; text: a corpus file or folder "
                   "(GoEmotions TSV, MELD/EmoryNLP/CPED CSV, DailyDialog/XDailyDialog, SMP2020 JSON)")
    e.add_argument("--model", default=None, help="model .tflite (default: the shipped one)")
    e.add_argument("--limit", type=_positive_int, default=None, help="evaluate at most N samples (>= 1)")
    e.add_argument("--dedupe", action="store_true", help="text only: count each distinct (text, label) once")
    e.add_argument("--flip-tta", action="store_true",
                   help="face only: also classify each mirrored image and average (twice the model time)")
    e.set_defaults(func=_cmd_eval)

    pr = sub.add_parser("profile", help="device profiles: list, show, validate, detect, and the JSON Schema "
                                        "of profile files (schema -o FILE)")
    from . import profiles

    profiles.add_arguments(pr)
    pr.set_defaults(func=_cmd_profile)

    if importlib.util.find_spec("affectlite.bench") is not None:
        from . import bench

        b = sub.add_parser("bench", help="benchmark the pipeline or single stages")
        bench.add_arguments(b)
        b.set_defaults(func=_cmd_bench)

    if importlib.util.find_spec("affectlite_convert") is not None:
        try:
            conv = importlib.import_module("affectlite_convert.cli")
            conv.add_subcommands(sub)
        except ImportError as ex:  # partially installed workstation package
            log.debug("affectlite_convert CLI unavailable: %s", ex)
    return p


def _os_error_message(e: OSError) -> str:
    what = e.strerror or str(e)
    path = e.filename if e.filename is not None else None
    if path is None:
        return f"{what}"
    hint = {"EISDIR": "give a file, not a folder", "ENOENT": "check the path",
            "EACCES": "check the permissions", "ENOTDIR": "a part of the path is a file, not a folder",
            "ENOSPC": "free some disk space", "EROFS": "choose a writable location"}.get(
        errno.errorcode.get(e.errno or 0, ""), "check the path")
    return f"{path}: {what} ({hint})"


def _crash_log(command: str, exc: BaseException) -> str | None:
    """Write the traceback of an unexpected error to a file in the temp folder; its path, or None."""
    import tempfile
    import traceback

    from ._io import atomic_write_text

    path = Path(tempfile.gettempdir()) / f"affectlite-{command}-error-{os.getpid()}.log"
    try:
        atomic_write_text(path, "".join(traceback.format_exception(exc)))
    except OSError:
        return None
    return str(path)


#: Lines the TFLite runtime's C++ code prints on every model load; noise on a command's stderr.
_NATIVE_NOISE = (b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",)


@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Drop the interpreter's INFO line from file descriptor 2 (C++ code writes there, not to sys.stderr).

    fd 2 is pointed at a pipe for the duration; a thread forwards every other line to the real stderr.
    """
    if os.name != "posix" or os.environ.get("AFFECTLITE_NATIVE_STDERR") == "1":
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
        r, w = os.pipe()
        os.dup2(w, 2)
        os.close(w)
    except (OSError, ValueError):  # no usable fd 2 (embedded, closed): nothing to filter
        yield
        return

    def forward(out: bytes) -> bool:
        try:
            os.write(saved, out)
            return True
        except OSError:  # the real stderr is gone (closed pipe): keep draining, or writers would block
            return False

    def pump() -> None:
        rest = b""
        ok = True
        with os.fdopen(r, "rb", buffering=0) as src:
            while True:
                data = src.read(65536)
                if not data:
                    break
                rest += data
                *lines, rest = rest.split(b"\n")
                if len(rest) > 65536:  # a very long line without a newline: pass it on as it is
                    lines, rest = [*lines, rest], b""
                out = b"".join(ln + b"\n" for ln in lines if not ln.strip().startswith(_NATIVE_NOISE))
                if out and ok:
                    ok = forward(out)
        if rest and ok and not rest.strip().startswith(_NATIVE_NOISE):
            forward(rest)

    t = threading.Thread(target=pump, name="affectlite-cli-stderr", daemon=True)
    t.start()
    try:
        yield
    finally:
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()
        os.dup2(saved, 2)  # closes the pipe's last write end: the pump sees the end and finishes
        t.join(2.0)
        os.close(saved)


class _Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: the command stops cleanly (sources closed, journal flushed)."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise _Terminated()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``affectlite`` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    on_main = threading.current_thread() is threading.main_thread()
    prev_term: Any = signal.signal(signal.SIGTERM, _on_sigterm) if on_main else None
    cmd = f"affectlite {args.command}"
    try:
        with _quiet_native_stderr():
            return int(args.func(args))
    except AffectliteError as e:
        print(f"{cmd}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except OSError as e:  # a path the user gave: missing, a folder, no permission, disk full
        print(f"{cmd}: error: {_os_error_message(e)}", file=sys.stderr)
        return 2
    except UnicodeError as e:
        print(f"{cmd}: error: input is not valid UTF-8 text ({e}); convert the file to UTF-8", file=sys.stderr)
        return 2
    except Exception as e:
        import csv

        if isinstance(e, csv.Error):  # a malformed CSV/TSV the user gave (e.g. an unclosed quote)
            print(f"{cmd}: error: a CSV/TSV input is malformed ({e}); check for an unclosed quote", file=sys.stderr)
            return 2
        if args.verbose:
            traceback_text = "".join(__import__("traceback").format_exception(e))
            print(traceback_text, file=sys.stderr, end="")
            where = "the traceback is above"
        else:
            logp = _crash_log(args.command, e)
            where = f"traceback in {logp}" if logp else "run with -v for the traceback"
        print(f"{cmd}: internal error: {type(e).__name__}: {e} ({where}; please report it)", file=sys.stderr)
        return 1
    finally:
        if on_main:
            signal.signal(signal.SIGTERM, prev_term if prev_term is not None else signal.SIG_DFL)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
