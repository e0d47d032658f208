"""Recorded media and streams with sound: frames, the audio track and subtitles of one video file or URL.

Decoding uses PyAV (the ``media`` extra: ``pip install 'affectlite[media]'``; its wheels bundle FFmpeg for
x86-64 and aarch64), imported only when a source opens. Two sources read the same input:

* :class:`MediaCamera` yields the video frames (``camera.backend: media``),
* :class:`MediaMicrophone` yields the audio track as 16 kHz mono int16 chunks (``audio.backend: media``),

each with its own demuxer (the file is opened twice; a network stream gets two connections), so video and
audio decode on two threads. Timestamps come from the container, so face, voice and fusion line up:

* **Recorded** inputs (files, ``file://`` URLs, and HTTP(S) URLs of a finite file) carry *media time*: ns
  from the start of the recording. Their sources set ``recorded = True``, which makes the pipeline analyse
  offline (nothing dropped, results in media-time order, deterministic; see
  :class:`affectlite.EmotionPipeline`). ``realtime`` only paces reading at the recording's speed.
* **Live** streams (RTSP, RTMP, UDP/RTP/SRT, or a URL without a duration) map container time onto the
  ``time.monotonic_ns`` clock at the first packet; the pipeline treats them like a camera and microphone.

Frames are taken at ``fps`` of media time at most (a 30 fps file at ``fps=15`` gives every other frame; the
frames in between are decoded but not converted or analysed). Subtitles: see :mod:`affectlite.subtitles`
and :func:`container_cues`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .cameras._base import Frame
from .errors import InputError, SourceError, SourceUnavailableError
from .microphones._base import SAMPLE_RATE, AudioChunk
from .subtitles import Cue, find_sidecar, load_subtitles

__all__ = ["LIVE_SCHEMES", "MEDIA_HINT", "MediaCamera", "MediaInfo", "MediaMicrophone", "check_media_path",
           "container_cues", "import_av", "is_live_url", "media_available", "probe", "redact", "resolve_cues"]

log = logging.getLogger("affectlite.media")

MEDIA_HINT = ("PyAV is not installed, so the audio track and subtitles of a video cannot be read: "
              "pip install 'affectlite[media]' (its wheels bundle FFmpeg), or give the audio as --audio FILE.wav")

#: URL schemes of live streams (no end, no seeking): they are paced by the sender, not read offline.
LIVE_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "udp", "rtp", "srt", "tcp")

_NS = 1_000_000_000
#: A jump in the audio track's timestamps larger than this is filled with silence (resampler delay is far less).
_GAP_NS = 40_000_000


def import_av() -> Any:
    """Import PyAV lazily, with an install hint when it is missing."""
    try:
        import av
    except ImportError:
        raise SourceUnavailableError(MEDIA_HINT) from None
    return av


def media_available() -> bool:
    """True when PyAV can be imported (the ``media`` extra is installed)."""
    import importlib.util

    return importlib.util.find_spec("av") is not None


def _scheme(device: str) -> str:
    return device.split("://", 1)[0].lower() if "://" in device else ""


def is_live_url(device: str | os.PathLike[str]) -> bool:
    """True for the URL of a live stream (RTSP, RTMP, UDP, RTP, SRT, TCP)."""
    return _scheme(str(device)) in LIVE_SCHEMES


def redact(device: str) -> str:
    """``device`` with the credentials of a URL (``user:password@``) removed, for logs and messages."""
    if "://" not in device:
        return device
    scheme, rest = device.split("://", 1)
    host, sep, path = rest.partition("/")
    return f"{scheme}://{host.rsplit('@', 1)[-1]}{sep}{path}"


def _local_path(device: str) -> Path | None:
    s = _scheme(device)
    if s == "file":
        return Path(device.split("://", 1)[1])
    return None if s else Path(device)


def _open_container(device: str) -> Any:
    av = import_av()
    local = _local_path(device)
    if local is not None and not local.is_file():
        raise SourceUnavailableError(f"video file {local} does not exist")
    options = {"rtsp_transport": "tcp"} if _scheme(device) in ("rtsp", "rtsps") else {}
    try:
        return av.open(str(local) if local is not None else device, options=options, timeout=10.0)
    except av.error.FileNotFoundError:
        raise SourceUnavailableError(f"video file {device} does not exist") from None
    except (av.error.FFmpegError, OSError) as e:
        if local is not None:
            raise SourceUnavailableError(f"cannot read {device} as a video: {e}") from None
        raise SourceError(f"cannot open stream {redact(device)}: {e}") from None


def _origin_s(container: Any) -> float:
    st = container.start_time
    return float(st) / 1e6 if st is not None else 0.0


def _is_recorded(device: str, container: Any) -> bool:
    if is_live_url(device):
        return False
    return _local_path(device) is not None or container.duration is not None


@dataclass(frozen=True)
class MediaInfo:
    """What a media file holds (see :func:`probe`).

    Attributes:
        path: The file or URL.
        duration_s: Length in seconds (0 when unknown, e.g. a live stream).
        width: Frame width (0 without video).
        height: Frame height (0 without video).
        fps: Average frame rate (0 without video or when unknown).
        has_video: A video stream is present.
        has_audio: An audio stream is present.
        subtitle_tracks: Number of subtitle streams.
    """

    path: str
    duration_s: float
    width: int
    height: int
    fps: float
    has_video: bool
    has_audio: bool
    subtitle_tracks: int


def probe(device: str | os.PathLike[str]) -> MediaInfo:
    """Read a media file's header: duration, frame size and rate, which streams it has.

    Raises:
        SourceUnavailableError: PyAV missing, the file is missing or not a media file.
        SourceError: a stream URL cannot be opened.
    """
    dev = str(device)
    c = _open_container(dev)
    try:
        v = c.streams.video[0] if c.streams.video else None
        dur = float(c.duration) / 1e6 if c.duration is not None else 0.0
        rate = float(v.average_rate) if v is not None and v.average_rate else 0.0
        return MediaInfo(dev, dur, int(v.codec_context.width) if v is not None else 0,
                         int(v.codec_context.height) if v is not None else 0, rate, v is not None,
                         bool(c.streams.audio), len(c.streams.subtitles))
    finally:
        c.close()


def _sub_text(sub: Any) -> str:
    raw = getattr(sub, "dialogue", None) or getattr(sub, "text", None) or b""
    if not raw and getattr(sub, "ass", None):
        raw = bytes(sub.ass).split(b",", 8)[-1]  # ASS event line: the text is the last field
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    from .subtitles import _clean

    return _clean([text.replace("\\N", " ").replace("\\n", " ")])


def container_cues(device: str | os.PathLike[str], track: int = 0) -> list[Cue]:
    """The cues of a text subtitle track inside a container (``mov_text`` in MP4, SubRip/ASS/WebVTT in MKV).

    Returns an empty list when the file has no such track (bitmap subtitles such as DVD/PGS are skipped).

    Raises:
        SourceUnavailableError: PyAV missing, or the file cannot be read.
    """
    dev = str(device)
    c = _open_container(dev)
    try:
        if len(c.streams.subtitles) <= track:
            return []
        s = c.streams.subtitles[track]
        origin = _origin_s(c)
        cues: list[Cue] = []
        for pkt in c.demux(s):
            if pkt.pts is None or pkt.time_base is None:
                continue
            start = float(pkt.pts * pkt.time_base) - origin
            end = start + float((pkt.duration or 0) * pkt.time_base)
            try:
                decoded = pkt.decode()
            except Exception as e:  # a damaged packet: skip that cue, keep the rest
                log.info("%s: subtitle packet at %.2f s not decodable: %s", dev, start, e)
                continue
            for item in decoded:
                rects = list(item) if hasattr(item, "__iter__") else [item]
                text = " ".join(t for t in (_sub_text(r) for r in rects) if t)
                if text:
                    cues.append(Cue(max(0.0, start), max(start, end), text))
        cues.sort(key=lambda cu: cu.start_s)
        return cues
    finally:
        c.close()


def resolve_cues(video: str | os.PathLike[str] | None, subtitles: str | os.PathLike[str] | None = None
                 ) -> tuple[list[Cue], str]:
    """The text cues of a recording, and where they came from.

    Order: ``subtitles`` (an explicit ``.srt``/``.vtt``), a sidecar file beside ``video`` with the same stem,
    then the first text subtitle track in the container (only when PyAV is installed).

    Returns:
        ``(cues, source)``; ``source`` is the file path, ``"container"`` or ``""`` when there are none.

    Raises:
        InputError: an explicit subtitle file that is missing or malformed.
    """
    if subtitles is not None:
        return load_subtitles(subtitles), str(subtitles)
    if video is None:
        return [], ""
    dev = str(video)
    local = _local_path(dev)
    if local is not None:
        side = find_sidecar(local)
        if side is not None:
            return load_subtitles(side), str(side)
    if is_live_url(dev) or not media_available():
        return [], ""
    try:
        cues = container_cues(dev)
    except SourceError as e:
        log.info("no container subtitles from %s: %s", dev, e)
        return [], ""
    return cues, ("container" if cues else "")


class _Pacer:
    """Sleeps until an item's media time has passed on the wall clock (recorded inputs in real time)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._t0: int | None = None

    def wait(self, media_ns: int) -> None:
        if not self.enabled:
            return
        if self._t0 is None:
            self._t0 = time.monotonic_ns() - media_ns
        delay = (self._t0 + media_ns - time.monotonic_ns()) / 1e9
        if delay > 0:
            time.sleep(delay)


class _LiveClock:
    """Maps container seconds of a live stream onto ``time.monotonic_ns`` at the first item."""

    def __init__(self) -> None:
        self._base: tuple[int, float] | None = None

    def ns(self, t_s: float) -> int:
        if self._base is None:
            self._base = (time.monotonic_ns(), t_s)
        return self._base[0] + round((t_s - self._base[1]) * _NS)


class MediaCamera:
    """Video frames of a media file or stream, with container timestamps (PyAV).

    Args:
        device: A file path, ``file://`` URL, HTTP(S) URL or live stream URL (RTSP, RTMP, UDP...).
        fps: Take at most this many frames per second of media time (0 or at least the file's rate: every
            frame). Frames in between are decoded (the codec needs them) but not converted or analysed.
        realtime: Recorded inputs: deliver each frame when its media time has passed (otherwise as fast as
            the reader takes them). Live streams are paced by the sender.
        loop: Recorded inputs: start again at the end (media time keeps increasing).
        skip_nonref: Opt-in: do not decode frames no other frame refers to (most B-frames): about a third less
            decoding, but only the reference frames can then be analysed (as few as a third of them with
            B-frame-heavy encodings), so fewer than ``fps`` frames per second may be analysed.

    Attributes:
        recorded: True for a recording (media-time stamps, offline analysis); set by :meth:`open`.
        duration_s: Length of the recording in seconds (0 when unknown); set by :meth:`open`.
    """

    def __init__(self, device: str | os.PathLike[str], *, fps: float = 15.0, realtime: bool = True,
                 loop: bool = False, skip_nonref: bool = False) -> None:
        self.device = str(device)
        self.name = f"media:{redact(self.device)}"
        self.skip_nonref = skip_nonref
        self.fps, self.realtime, self.loop = float(fps), realtime, loop
        self.recorded = not is_live_url(self.device)
        self.duration_s = 0.0
        self._c: Any = None
        self._frames: Iterator[Any] | None = None
        self._origin = 0.0
        self._offset_ns = 0
        self._last_ns = 0
        self._next_ns = 0
        self._period_ns = 0
        self._index = 0
        self._pacer = _Pacer(False)
        self._live = _LiveClock()

    def open(self) -> None:
        """Open the input and its first video stream.

        Raises:
            SourceUnavailableError: PyAV missing, the file missing, or it has no video stream.
            SourceError: a stream URL cannot be opened (retried by the pipeline when reconnecting).
        """
        self.close()
        c = _open_container(self.device)
        if not c.streams.video:
            c.close()
            raise SourceUnavailableError(f"{redact(self.device)} has no video stream (for audio only use --audio FILE)")
        v = c.streams.video[0]
        v.thread_type = "AUTO"
        if self.skip_nonref:
            v.codec_context.skip_frame = "NONREF"
        self._c = c
        self.recorded = _is_recorded(self.device, c)
        self.duration_s = float(c.duration) / 1e6 if c.duration is not None else 0.0
        self._origin = _origin_s(c)
        self._frames = iter(c.decode(v))
        self._period_ns = round(_NS / self.fps) if self.fps > 0 else 0
        self._pacer = _Pacer(self.realtime and self.recorded)
        self._live = _LiveClock()  # a reopened stream starts a new container clock
        if self._index == 0:
            self._next_ns = 0

    def _ts(self, frame: Any) -> int | None:
        t = frame.time
        if t is None:
            return None
        return self._offset_ns + round((float(t) - self._origin) * _NS)

    def read(self) -> Frame | None:
        """The next selected RGB frame; ``None`` at the end of a recording.

        Raises:
            SourceError: read before open, or the stream failed.
        """
        if self._frames is None:
            raise SourceError(f"{self.name}: read() before open()")
        av = import_av()
        while True:
            try:
                f = next(self._frames)
            except StopIteration:
                if self.recorded and self.loop and self._index > 0:
                    self._offset_ns = self._last_ns + max(self._period_ns, 1)
                    self.open()
                    continue
                if self.recorded:
                    return None
                raise SourceError(f"{self.name}: the stream ended") from None
            except av.error.FFmpegError as e:
                if self.recorded:
                    log.warning("%s: decoding stopped early: %s", self.name, e)
                    return None
                raise SourceError(f"{self.name}: {e}") from None
            ts = self._ts(f)
            if ts is None:  # no timestamp: count frames at the selected rate
                ts = self._last_ns + max(self._period_ns, 1)
            if self._period_ns and ts + self._period_ns // 100 < self._next_ns:
                continue  # decoded, not selected: skip the colour conversion too
            self._next_ns = max(self._next_ns + self._period_ns, ts) if self._period_ns else ts
            self._last_ns = ts
            rgb = f.to_ndarray(format="rgb24")
            turn = round(float(getattr(f, "rotation", 0) or 0) / 90) % 4  # phones store portrait video turned
            if turn:
                rgb = np.rot90(rgb, turn)  # shown upright, as players (and OpenCV) show it
            if self.recorded:
                self._pacer.wait(ts)
            else:
                ts = self._live.ns(ts / _NS)
            frame = Frame(np.ascontiguousarray(rgb), ts, self._index)
            self._index += 1
            return frame

    def close(self) -> None:
        """Close the input (idempotent)."""
        self._frames = None
        if self._c is not None:
            try:
                self._c.close()
            finally:
                self._c = None


class MediaMicrophone:
    """The audio track of a media file or stream as 16 kHz mono int16 chunks, with container timestamps.

    Args:
        device: A file path, ``file://`` URL, HTTP(S) URL or live stream URL; any format FFmpeg reads (a
            video's soundtrack, WAV, FLAC, MP3, Opus...).
        chunk_ms: Chunk length.
        realtime: Recorded inputs: deliver each chunk once its media time has passed.
        loop: Recorded inputs: start again at the end.

    Attributes:
        recorded: True for a recording (media-time stamps, offline analysis); set by :meth:`open`.
        overflows: Always 0 (a file cannot overflow).
        gaps: Jumps in the track's timestamps (over 40 ms) filled with silence, so the audio stays in sync.
        gap_s: Their total length in seconds.
    """

    def __init__(self, device: str | os.PathLike[str], *, chunk_ms: int = 100, realtime: bool = True,
                 loop: bool = False) -> None:
        self.device = str(device)
        self.name = f"media-audio:{redact(self.device)}"
        self.chunk = max(1, SAMPLE_RATE * chunk_ms // 1000)
        self.realtime, self.loop = realtime, loop
        self.recorded = not is_live_url(self.device)
        self.overflows = 0
        self.gaps = 0
        self.gap_s = 0.0
        self._c: Any = None
        self._frames: Iterator[Any] | None = None
        self._resampler: Any = None
        self._buf = np.zeros(0, np.int16)
        self._buf_ns: int | None = None
        self._eof = False
        self._origin = 0.0
        self._offset_ns = 0
        self._end_ns = 0
        self._index = 0
        self._pacer = _Pacer(False)
        self._live = _LiveClock()

    def open(self) -> None:
        """Open the input and its first audio stream.

        Raises:
            SourceUnavailableError: PyAV missing, the file missing, or it has no audio track.
            SourceError: a stream URL cannot be opened.
        """
        self.close()
        av = import_av()
        c = _open_container(self.device)
        if not c.streams.audio:
            c.close()
            raise SourceUnavailableError(f"{redact(self.device)} has no audio track: give the audio as --audio "
                                         "FILE, or use --no-audio")
        a = c.streams.audio[0]
        self._c = c
        self.recorded = _is_recorded(self.device, c)
        self._origin = _origin_s(c)
        self._frames = iter(c.decode(a))
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        self._buf = np.zeros(0, np.int16)
        self._buf_ns = None
        self._eof = False
        self._pacer = _Pacer(self.realtime and self.recorded)
        self._live = _LiveClock()

    def _fill(self) -> bool:
        """Decode more audio into the buffer; False at the end of the stream."""
        assert self._frames is not None and self._resampler is not None  # invariant: opened
        av = import_av()
        try:
            f = next(self._frames)
        except StopIteration:
            f = None
        except av.error.FFmpegError as e:
            if not self.recorded:
                raise SourceError(f"{self.name}: {e}") from None
            log.warning("%s: decoding stopped early: %s", self.name, e)
            f = None
        if f is None:
            out = self._resampler.resample(None)
            self._eof = True
        else:
            t = f.time
            if t is None:
                if self._buf_ns is None:
                    self._buf_ns = self._offset_ns
            elif self._buf_ns is None:
                self._buf_ns = self._offset_ns + round((float(t) - self._origin) * _NS)
            else:  # samples missing from the track (a cut, a lost packet): silence keeps audio on the media clock
                gap = self._offset_ns + round((float(t) - self._origin) * _NS) - (
                    self._buf_ns + self._buf.size * _NS // SAMPLE_RATE)
                if gap > _GAP_NS:
                    self.gaps += 1
                    self.gap_s += gap / _NS
                    self._buf = np.concatenate([self._buf, np.zeros(gap * SAMPLE_RATE // _NS, np.int16)])
            out = self._resampler.resample(f)
        for g in out:
            x = g.to_ndarray().reshape(-1).astype(np.int16, copy=False)
            self._buf = np.concatenate([self._buf, x]) if self._buf.size else x
        return not self._eof

    def read(self) -> AudioChunk | None:
        """The next chunk; ``None`` at the end of a recording.

        Raises:
            SourceError: read before open, or the stream failed.
        """
        if self._frames is None:
            raise SourceError(f"{self.name}: read() before open()")
        while self._buf.size < self.chunk and not self._eof:
            self._fill()
        if self._buf.size == 0:
            if self.recorded and self.loop and self._index > 0:
                self._offset_ns = self._end_ns
                self.open()
                return self.read()
            if self.recorded:
                return None
            raise SourceError(f"{self.name}: the stream ended")
        seg, self._buf = self._buf[:self.chunk], self._buf[self.chunk:]
        ts = self._buf_ns or 0
        self._buf_ns = ts + seg.size * _NS // SAMPLE_RATE
        self._end_ns = self._buf_ns
        if self.recorded:
            self._pacer.wait(self._buf_ns)  # a chunk is due once it would have been fully recorded
        else:
            ts = self._live.ns(ts / _NS)
        chunk = AudioChunk(np.ascontiguousarray(seg), ts, self._index)
        self._index += 1
        return chunk

    def close(self) -> None:
        """Close the input (idempotent)."""
        self._frames = None
        self._resampler = None
        if self._c is not None:
            try:
                self._c.close()
            finally:
                self._c = None


def check_media_path(path: str | os.PathLike[str]) -> str:
    """``path`` as a string when it is a URL or an existing file.

    Raises:
        InputError: a local path that does not exist or is a folder.
    """
    s = str(path)
    local = _local_path(s)
    if local is not None and not local.is_file():
        raise InputError(f"{s}: no such file" if not local.exists() else f"{s} is a folder, not a media file")
    return s
