"""Subtitles and transcripts as the text modality: SubRip (``.srt``) and WebVTT (``.vtt``) cues.

A recording's cues are pushed into the pipeline as text at their start time (see
:class:`affectlite.EmotionPipeline`'s ``subtitles`` argument and :mod:`affectlite.media`). Where they come
from, in this order: an explicit file (``--subtitles FILE``), a ``.srt``/``.vtt`` beside the video with the
same stem (``talk.mp4`` -> ``talk.srt``), or a subtitle track inside the container (read by
:func:`affectlite.media.container_cues`).

Pure Python, no dependency: markup (``<i>``, ``{\\an8}``, WebVTT voice tags) is stripped, the text of a cue
is joined into one line.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError

__all__ = ["SUBTITLE_SUFFIXES", "Cue", "find_sidecar", "load_subtitles", "parse_srt", "parse_vtt"]

#: Subtitle file types read beside a video, in order of preference.
SUBTITLE_SUFFIXES = (".srt", ".vtt")

_TIME = re.compile(r"(?:(\d+):)?(\d{1,2}):(\d{2})[,.](\d{1,3})")
_ARROW = re.compile(r"^\s*(\S+)\s*-->\s*(\S+)")
_TAG = re.compile(r"<[^>]*>|\{\\[^}]*\}")


@dataclass(frozen=True)
class Cue:
    """One subtitle cue.

    Attributes:
        start_s: Start time in seconds from the start of the recording.
        end_s: End time in seconds.
        text: The cue's text, markup removed, lines joined with spaces.
    """

    start_s: float
    end_s: float
    text: str

    @property
    def start_ns(self) -> int:
        """Start time in nanoseconds (the media clock of recorded sources)."""
        return round(self.start_s * 1e9)


def _seconds(stamp: str, where: str) -> float:
    m = _TIME.fullmatch(stamp.strip())
    if m is None:
        raise InputError(f"{where}: {stamp!r} is not a time (expected HH:MM:SS,mmm or MM:SS.mmm)")
    h, mi, s, ms = m.groups()
    return int(h or 0) * 3600 + int(mi) * 60 + int(s) + int(ms.ljust(3, "0")) / 1000.0


def _clean(lines: list[str]) -> str:
    return " ".join(" ".join(_TAG.sub("", ln).split()) for ln in lines if ln.strip()).strip()


def _parse_blocks(text: str, source: str, vtt: bool) -> list[Cue]:
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    blocks = re.split(r"\n[ \t]*\n", text)
    cues: list[Cue] = []
    for bi, block in enumerate(blocks):
        lines = [ln for ln in block.split("\n")]
        while lines and not lines[0].strip():
            lines.pop(0)
        if not lines:
            continue
        if vtt and bi == 0 and lines[0].startswith("WEBVTT"):
            continue
        if vtt and lines[0].split(" ", 1)[0] in ("NOTE", "STYLE", "REGION"):
            continue
        arrow = next((i for i, ln in enumerate(lines[:3]) if "-->" in ln), None)
        if arrow is None:
            raise InputError(f"{source}: cue {bi + 1} has no 'start --> end' line: {lines[0][:60]!r}; "
                             "is it a SubRip (.srt) or WebVTT (.vtt) file?")
        m = _ARROW.match(lines[arrow])
        if m is None:
            raise InputError(f"{source}: cannot read the timing line {lines[arrow]!r}")
        where = f"{source}, cue {bi + 1}"
        start, end = _seconds(m.group(1), where), _seconds(m.group(2), where)
        if end < start:
            raise InputError(f"{where}: ends ({m.group(2)}) before it starts ({m.group(1)})")
        body = _clean(lines[arrow + 1:])
        if body:
            cues.append(Cue(start, end, body))
    cues.sort(key=lambda c: c.start_s)
    return cues


def parse_srt(text: str, source: str = "<srt>") -> list[Cue]:
    """Cues of a SubRip document, sorted by start time (empty cues skipped).

    Raises:
        InputError: a block without a timing line, or a time that cannot be read.
    """
    return _parse_blocks(text, source, vtt=False)


def parse_vtt(text: str, source: str = "<vtt>") -> list[Cue]:
    """Cues of a WebVTT document, sorted by start time (NOTE/STYLE/REGION blocks skipped).

    Raises:
        InputError: not a WebVTT document, a block without a timing line, or a bad time.
    """
    if not text.lstrip("\ufeff").startswith("WEBVTT"):
        raise InputError(f"{source}: a WebVTT file starts with 'WEBVTT'")
    return _parse_blocks(text, source, vtt=True)


def load_subtitles(path: str | os.PathLike[str]) -> list[Cue]:
    """Read a ``.srt`` or ``.vtt`` file (UTF-8, or Latin-1 when it is not UTF-8).

    Raises:
        InputError: the file is missing, of another type, or malformed.
    """
    p = Path(path)
    if p.suffix.lower() not in SUBTITLE_SUFFIXES:
        raise InputError(f"subtitles {p}: expected a .srt or .vtt file, got {p.suffix or 'no suffix'!r}")
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise InputError(f"cannot read subtitles {p}: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    return parse_vtt(text, str(p)) if p.suffix.lower() == ".vtt" else parse_srt(text, str(p))


def find_sidecar(video: str | os.PathLike[str]) -> Path | None:
    """The ``.srt``/``.vtt`` beside ``video`` with the same stem, or ``None``."""
    v = Path(video)
    for suffix in SUBTITLE_SUFFIXES:
        for cand in (v.with_suffix(suffix), v.with_suffix(suffix.upper())):
            if cand.is_file():
                return cand
    return None
