"""``affectlite analyze INPUT... --out DIR``: analyse recordings offline and write a report per recording.

For each input (a media file, or every media file in a folder) it writes ``DIR/<stem>/``:

* ``results.jsonl``: every result, as ``affectlite run`` prints it;
* ``results.csv``: one row per time step and face track (:data:`affectlite.report.CSV_COLUMNS`);
* ``summary.json``: duration, share of time per fused label, per modality and per face track, speech time,
  the moments of largest change;
* ``report.html``: one self-contained page (timeline, summary, models and their caveats, how it was made);

and ``DIR/index.html`` linking every report when several recordings were analysed. Nothing raw (frames,
audio) is written unless ``--keep-thumbnails`` (one small face thumbnail per track, beside the report).

Recordings are analysed offline (see :class:`affectlite.EmotionPipeline`): nothing is dropped and the results
are the same on every run. Needs the ``media`` extra (PyAV) and, for the report, the ``report`` extra
(matplotlib, tqdm).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._io import atomic_write_bytes, atomic_write_text
from .errors import ConfigError, InputError, SourceUnavailableError

__all__ = ["MEDIA_SUFFIXES", "add_arguments", "analyze_file", "collect_inputs", "run"]

log = logging.getLogger("affectlite.analyze")

#: File types a folder is searched for.
MEDIA_SUFFIXES = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ts",
                  ".wav", ".flac", ".mp3", ".m4a", ".ogg", ".opus")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``affectlite analyze``."""
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="media files, or folders of them")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (one sub-folder per recording)")
    p.add_argument("--fps", type=float, default=10.0,
                   help="frames analysed per second of video (default 10; the rest are decoded, not analysed)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override an option, e.g. face.detect_every=2")
    p.add_argument("--subtitles", metavar="FILE", help="subtitles for a single INPUT (default: a .srt/.vtt "
                   "beside each video, else its subtitle track)")
    p.add_argument("--no-audio", action="store_true", help="ignore the soundtracks")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--keep-thumbnails", action="store_true",
                   help="also write one small face thumbnail per track beside the report (off: nothing raw is "
                   "written)")


def collect_inputs(inputs: Sequence[str]) -> list[Path]:
    """The media files named, folders expanded (sorted, non-recursive).

    Raises:
        InputError: an input that does not exist, or a folder without media files.
    """
    out: list[Path] = []
    for s in inputs:
        p = Path(s)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in MEDIA_SUFFIXES)
            if not found:
                raise InputError(f"{p}: no media files ({', '.join(MEDIA_SUFFIXES)}) in this folder")
            out += found
        elif p.is_file():
            out.append(p)
        else:
            raise InputError(f"{p}: no such file or folder")
    return out


def _unique_names(paths: Sequence[Path]) -> list[str]:
    seen: dict[str, int] = {}
    names = []
    for p in paths:
        n = seen.get(p.stem, 0) + 1
        seen[p.stem] = n
        names.append(p.stem if n == 1 else f"{p.stem}-{n}")
    return names


def _models(opts: Any) -> list[dict[str, Any]]:
    from .card import card_path_for, load_card

    out = []
    models_dir = Path(__file__).resolve().parent / "models"
    for modality, path in opts.model_paths(enabled_only=True).items():
        p = Path(path) if path else models_dir / f"{modality}.tflite"
        try:
            card = load_card(card_path_for(p))
        except Exception as e:  # a report without a card's caveats says so instead of failing
            out.append({"modality": modality, "name": p.name, "version": "", "limitations": [f"card unreadable: {e}"]})
            continue
        out.append({"modality": modality, "name": card.name, "version": card.version,
                    "limitations": list(card.limitations) or ["(the card lists none)"]})
    return out


def _progress(total: float, name: str, quiet: bool) -> Any:
    if quiet:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        log.warning("no progress bar: pip install 'affectlite[report]' (tqdm)")
        return None
    return tqdm(total=round(total, 1) or None, desc=name, unit="s", file=sys.stderr, dynamic_ncols=True,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} s media [{elapsed}<{remaining}, "
                "{rate_fmt}]")


def analyze_file(path: Path, out_dir: Path, *, name: str | None = None, fps: float = 10.0,
                 overrides: dict[str, Any] | None = None, subtitles: str | None = None, audio: bool = True,
                 quiet: bool = True, keep_thumbnails: bool = False) -> dict[str, Any]:
    """Analyse one recording offline and write its results and report into ``out_dir/<name>/``.

    Args:
        path: The media file (video with or without sound, or audio only).
        out_dir: The output folder.
        name: Sub-folder name (default: the file's stem).
        fps: Frames analysed per second of video.
        overrides: Option overrides (dotted keys).
        subtitles: An explicit ``.srt``/``.vtt`` (default: beside the video, else its subtitle track).
        audio: Analyse the soundtrack.
        quiet: No progress bar.
        keep_thumbnails: Write one face thumbnail per track (PNG, 96 px) beside the report.

    Returns:
        The summary (also written to ``summary.json``).

    Raises:
        SourceUnavailableError: PyAV or matplotlib missing, or the file unreadable.
        ConfigError: a bad override.
    """
    import msgspec

    import affectlite

    from .media import probe, resolve_cues
    from .options import PipelineOptions
    from .pipeline import EmotionPipeline
    from .report import csv_rows, render_report, summarize
    from .results import EmotionResult

    info = probe(path)
    name = name or path.stem
    dest = out_dir / name
    ov: dict[str, Any] = {"camera.enabled": info.has_video, "camera.backend": "media", "camera.device": str(path),
                          "camera.fps": fps, "camera.realtime": False,
                          "audio.enabled": audio and info.has_audio, "audio.backend": "media",
                          "audio.device": str(path), "audio.realtime": False}
    ov.update(overrides or {})
    opts = PipelineOptions().replace(**ov)
    cues, cue_source = resolve_cues(path if info.has_video or subtitles else None, subtitles)
    if not (info.has_video or (audio and info.has_audio) or cues):
        raise InputError(f"{path}: nothing to analyse (no video, no audio{' used' if info.has_audio else ''}, "
                         "no subtitles)")
    from .report import CSV_COLUMNS, ResultLog

    log_rows = ResultLog()  # compact copy for the summary and the plot; the full results stream to disk
    dest.mkdir(parents=True, exist_ok=True)
    parts = {n: dest / f".{n}.partial" for n in ("results.jsonl", "results.csv")}
    jsonl = parts["results.jsonl"].open("w", encoding="utf-8")
    csv_file = parts["results.csv"].open("w", encoding="utf-8", newline="")
    w = csv.writer(csv_file, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    bar = _progress(info.duration_s, name, quiet)
    pos = {"t": 0.0}
    thumbs: dict[str, str] = {}
    pipe_ref: list[Any] = []
    lock = threading.Lock()

    def on_result(r: EmotionResult) -> None:  # dispatch thread, one at a time
        d = r.to_json_dict()
        log_rows.add(d)
        jsonl.write(json.dumps({"event": "result", **d}) + "\n")
        w.writerows(csv_rows([d]))
        t = r.capture_ns / 1e9
        if bar is not None and t > pos["t"]:
            bar.update(round(min(t, info.duration_s) - pos["t"], 3))
            pos["t"] = min(t, info.duration_s)
        if keep_thumbnails and r.track_id is not None and f"face {r.track_id}" not in thumbs and pipe_ref:
            crop = pipe_ref[0].face_crop(r.track_id)
            if crop is not None:
                with lock:
                    thumbs[f"face {r.track_id}"] = _write_thumbnail(dest, r.track_id, crop)

    errors: list[str] = []
    pipe = EmotionPipeline(opts, on_result=on_result, on_error=lambda e: errors.append(str(e)),
                           subtitles=[(c.start_ns, c.text) for c in cues], keep_face_crops=keep_thumbnails)
    pipe_ref.append(pipe)
    try:
        with pipe:
            pipe.wait()
            stats = pipe.stats()
        for f in (jsonl, csv_file):
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        for f in (jsonl, csv_file):
            f.close()
        for p in parts.values():
            p.unlink(missing_ok=True)
        raise
    finally:
        if bar is not None:
            bar.close()
    jsonl.close()
    csv_file.close()
    results = log_rows.rows
    cue_dicts = [{"start_s": c.start_s, "end_s": c.end_s, "text": c.text} for c in cues]
    summary = summarize(results, duration_s=info.duration_s, cues=cue_dicts)
    summary["drops"] = dict(stats.drops)
    summary["counts"] = dict(stats.counts)
    made_with = {"affectlite": affectlite.__version__, "input": str(path),
                 "media": {"duration_s": info.duration_s, "size": f"{info.width}x{info.height}", "fps": info.fps,
                           "audio": info.has_audio},
                 "analysed_fps": fps, "subtitles": cue_source or None, "options_overridden": overrides or {},
                 "fusion": opts.fusion.strategy, "face_detector": opts.face.detector, "voice_vad": opts.voice.vad,
                 "processing_s": round(stats.uptime_s, 2), "errors": errors[:20],
                 "options": msgspec.to_builtins(opts)}
    for n, p in parts.items():  # complete: now under their names (a reader never sees half a file)
        os.replace(p, dest / n)
    atomic_write_text(dest / "summary.json", json.dumps(summary, indent=2) + "\n")
    page = render_report(name=name, source=str(path), results=results, summary=summary, cues=cue_dicts,
                         cue_source=cue_source, models=_models(opts), made_with=made_with, thumbnails=thumbs)
    atomic_write_text(dest / "report.html", page)
    return summary


def _write_thumbnail(dest: Path, track_id: int, crop: Any) -> str:
    """A 96 px PNG of a face crop (only with --keep-thumbnails); returns its path relative to the report."""
    import numpy as np
    from matplotlib.image import imsave

    h, w = crop.shape[:2]
    step = max(1, max(h, w) // 96)
    small = np.ascontiguousarray(crop[::step, ::step])
    rel = f"thumbnails/face{track_id}.png"
    out = io.BytesIO()
    imsave(out, small, format="png")
    atomic_write_bytes(dest / rel, out.getvalue())
    return rel


def run(args: argparse.Namespace) -> int:
    """``affectlite analyze``: returns the exit code (0 all analysed, 1 some failed)."""
    from .cli import _overrides
    from .media import MEDIA_HINT, media_available
    from .report import index_html

    if not media_available():
        raise SourceUnavailableError(MEDIA_HINT)
    if args.fps <= 0:
        raise ConfigError(f"--fps must be > 0, got {args.fps}")
    paths = collect_inputs(args.inputs)
    if args.subtitles and len(paths) != 1:
        raise ConfigError("--subtitles names the subtitles of one recording; give a single INPUT (or put a "
                          ".srt/.vtt beside each video)")
    out = Path(args.out)
    overrides = _overrides(args.set or [])
    entries: list[dict[str, Any]] = []
    failed = 0
    for p, name in zip(paths, _unique_names(paths), strict=True):
        try:
            summary = analyze_file(p, out, name=name, fps=args.fps, overrides=overrides, subtitles=args.subtitles,
                                   audio=not args.no_audio, quiet=args.quiet, keep_thumbnails=args.keep_thumbnails)
        except (InputError, SourceUnavailableError) as e:
            failed += 1
            print(f"affectlite analyze: {p}: {e}", file=sys.stderr)
            entries.append({"name": name, "href": "", "error": str(e)})
            continue
        entries.append({"name": name, "href": f"{name}/report.html", "summary": summary})
        if not args.quiet:
            top = next(iter(summary["fused"].items()), ("-", 0.0))
            print(f"{name}: {summary['duration_s']:.1f} s, mostly {top[0]} ({100 * top[1]:.0f}%), "
                  f"{out / name / 'report.html'}", file=sys.stderr)
    if len(paths) > 1:
        atomic_write_text(out / "index.html", index_html(entries))
    return 1 if failed else 0
