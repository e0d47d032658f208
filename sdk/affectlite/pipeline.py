"""The live pipeline: capture, inference and dispatch threads joined by bounded drop-oldest queues.

Threads (all SDK-owned, named ``affectlite-*``)::

    camera  --frames (newest wins)-->  face   --+
    mic     --audio chunks--------->   voice  --+--> events --> dispatch: fusion -> on_result / on_change
    push_text --texts-------------->   text   --+                          on_status / on_error

Callback contract (``on_result``, ``on_change``, ``on_status``, ``on_error``):

* **Thread**: always the pipeline's dispatch thread (``affectlite-dispatch``), never a capture or
  inference thread, and never while an SDK lock is held.
* **Overlap**: never. Callbacks run one at a time, in order.
* **Slow callbacks**: delay later callbacks only. Capture and inference keep running; while the dispatch
  thread is busy, the events queue keeps the newest ``queues.results`` events and drops (and counts) the
  oldest ones.
* **Exceptions**: an exception raised by ``on_result``/``on_change``/``on_status`` is logged and passed to
  ``on_error``; the pipeline keeps running. An exception from ``on_error`` itself is logged only.
* ``on_sensing(active)`` is different: it is called synchronously on the thread that calls
  :meth:`EmotionPipeline.start` (``True``, before any frame or sample is analysed) and
  :meth:`EmotionPipeline.close` (``False``, after every thread stopped), so an indicator is on whenever
  sensing happens. If it raises on start, the pipeline does not start.

Bad input never stops the pipeline (see ``docs/reliability.md``): a frame, audio chunk or text that a
stage refuses (:class:`~affectlite.errors.InputError`, or an unexpected exception while analysing that one
item) is dropped, counted in :attr:`PipelineStats.rejected` and ``stage_errors``, and reported through
``on_error``, rate-limited: the first of each kind at once, then at most one summary every 10 s. A source
whose ``read`` raises :class:`~affectlite.errors.InputError` (e.g. an undecodable file in an image folder)
has that item skipped the same way. A source that reopens but fails again before delivering anything, 5
times in a row, is given up: ``on_status`` gets ``failed`` with the reason, and the other sources go on.

Fatal errors (a model that cannot run, a source that fails with reconnecting disabled, a stage failing on
50 items in a row) stop every thread and are re-raised from :meth:`EmotionPipeline.wait` and
:meth:`EmotionPipeline.close`, as an :class:`~affectlite.errors.AffectliteError` (an unexpected exception is
wrapped in :class:`~affectlite.errors.PipelineError`, the original chained as ``__cause__``).

``close()`` and ``stop()`` may be called from inside a callback: the dispatch thread is not joined with
itself; the pipeline stops after the callback returns. ``wait()`` from a callback raises
:class:`~affectlite.errors.PipelineError` (it would wait for itself).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol

import numpy as np

from ._boundary import RateLimitedLog, clean_text
from ._mediatime import CueSchedule, MediaTimeMerger
from ._queues import Closed, DropOldestQueue
from .cameras import CameraSource, Frame, create_camera
from .errors import (
    AffectliteError,
    ConfigError,
    InputError,
    PipelineError,
    PrivacyError,
    SourceError,
    SourceUnavailableError,
)
from .microphones import AudioChunk, MicrophoneSource, create_microphone
from .options import FaceOptions, FusionOptions, PipelineOptions, TextOptions, VoiceOptions
from .results import EmotionResult, FaceResult, SourceStatus, TextResult, VoiceResult

__all__ = ["EmotionPipeline", "PipelineStats"]

log = logging.getLogger("affectlite.pipeline")


class FaceAnalyzerLike(Protocol):
    """What the face thread needs (:class:`affectlite.face.FaceAnalyzer` implements it)."""

    def process(self, frame: np.ndarray, timestamp_ns: int) -> tuple[FaceResult, ...]: ...
    def close(self) -> None: ...


class VoiceAnalyzerLike(Protocol):
    """What the voice thread needs (:class:`affectlite.voice.VoiceAnalyzer` implements it)."""

    def push(self, samples: np.ndarray, timestamp_ns: int) -> list[VoiceResult]: ...
    def flush(self) -> list[VoiceResult]: ...
    def close(self) -> None: ...


class TextClassifierLike(Protocol):
    """What the text worker needs (:class:`affectlite.text.TextClassifier` implements it).

    A ``close()`` method, if it has one, is called by :meth:`EmotionPipeline.close` (to release its model).
    """

    def classify(self, text: str, timestamp_ns: int = 0) -> TextResult: ...


class FusionLike(Protocol):
    """What the dispatch thread needs (:class:`affectlite.fusion.Fusion` implements it).

    A ``close()`` method, if it has one, is called by :meth:`EmotionPipeline.close` (to release its head).
    """

    def update_faces(self, faces: tuple[FaceResult, ...], frame_index: int, capture_ns: int,
                     now_ns: int) -> list[EmotionResult]: ...
    def update_voice(self, voice: VoiceResult, now_ns: int) -> list[EmotionResult]: ...
    def update_text(self, text: TextResult, now_ns: int) -> list[EmotionResult]: ...


@dataclass(frozen=True)
class PipelineStats:
    """A snapshot of pipeline counters (see :meth:`EmotionPipeline.stats`).

    Attributes:
        state: ``"new"``, ``"running"``, ``"finished"``, ``"failed"`` or ``"closed"``.
        uptime_s: Seconds since start.
        counts: Items handled per stage: ``camera`` frames captured, ``face`` frames analysed, ``mic`` chunks,
            ``voice`` results, ``text`` results, ``results`` delivered.
        fps: ``counts`` divided by uptime, per stage.
        latency_ms_p50: Median capture-to-callback latency of delivered results (ms); 0.0 before any. Only
            results with a capture time count (an empty result of a frame without a face has none). A
            voice-driven result's capture time is the end of its voice window, and a segment's final result
            comes after the hangover, so with a microphone (synthetic or real) these figures include the
            audio chunk, hop and hangover waits (100-500 ms): they do not measure the camera path. The
            synthetic camera draws no face, so it gives no timed results at all. Judge latency with real
            faces (``--sample`` or a video) and the camera alone, or with ``affectlite bench``.
        latency_ms_p95: 95th percentile of the same (ms).
        drops: Items dropped per queue (``frames``, ``audio``, ``events``, ``text``, ``output``).
        queue_depths: Items waiting per queue now.
        callback_errors: Exceptions raised by user callbacks.
        stage_errors: Non-fatal errors in stages (bad frames, source hiccups).
        reconnects: Successful source reopenings.
        overflows: Microphone input overflows.
        rejected: Bad inputs dropped per stream (``frames``, ``audio``, ``text``): items a stage or a source
            refused (also counted in ``stage_errors``).
    """

    state: str
    uptime_s: float
    counts: dict[str, int]
    fps: dict[str, float]
    latency_ms_p50: float
    latency_ms_p95: float
    drops: dict[str, int]
    queue_depths: dict[str, int]
    callback_errors: int
    stage_errors: int
    reconnects: int
    overflows: int = 0
    rejected: dict[str, int] = field(default_factory=lambda: dict.fromkeys(("frames", "audio", "text"), 0))


#: A stage (face, voice, text) that raises an unexpected exception on this many items in a row is fatal.
MAX_CONSECUTIVE_ITEM_ERRORS = 50
#: A source that reopens and fails again before delivering anything this many times in a row is given up.
MAX_FLAPS = 5


@dataclass
class _Event:
    kind: str  # faces | voice | text
    payload: Any
    frame_index: int = -1
    capture_ns: int = 0


@dataclass
class _Counters:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("camera", "face", "mic", "voice", "text", "results"), 0))
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=2000))
    callback_errors: int = 0
    stage_errors: int = 0
    reconnects: int = 0
    rejected: dict[str, int] = field(default_factory=lambda: dict.fromkeys(("frames", "audio", "text"), 0))


_STOP_SENTINEL = object()


class EmotionPipeline:
    """Live emotion recognition from a camera, a microphone and app-pushed text.

    Use it as a context manager (``with EmotionPipeline(opts, on_result=cb) as pipe: pipe.wait()``), or,
    without ``on_result``, iterate over it to get results on your own thread::

        with EmotionPipeline(opts) as pipe:
            for result in pipe:
                print(result.label)

    Args:
        options: Pipeline options (default: :class:`PipelineOptions` defaults).
        on_result: Called with every :class:`EmotionResult`. See the module docstring for the callback
            contract (dispatch thread, serial, slow callbacks delay only callbacks, exceptions to
            ``on_error``). When ``None``, results are kept for iteration instead (bounded, drop-oldest).
        on_change: Called as ``on_change(result, previous_label)`` when the fused label of a face track (or of
            the audio/text-only stream) changes.
        on_error: Called with non-fatal exceptions (callback errors, bad frames, source hiccups).
        on_status: Called with :class:`SourceStatus` when a source degrades, reconnects, is lost or absent.
        on_sensing: Called with ``True`` before sensing starts and ``False`` after it stops (LED, banner);
            runs on the thread calling ``start``/``close``.
        consent: A consent token, required when ``options.privacy.require_consent``.
        camera: A camera source to use instead of the one ``options.camera`` describes (e.g. a fake).
        microphone: A microphone source to use instead of ``options.audio``'s.
        face_analyzer_factory: Advanced/testing: builds the face analyzer from :class:`FaceOptions`.
        voice_analyzer_factory: Advanced/testing: builds the voice analyzer from :class:`VoiceOptions`.
        text_classifier_factory: Advanced/testing: builds the text classifier from :class:`TextOptions`.
        fusion_factory: Advanced/testing: builds the fusion from :class:`FusionOptions`.
        keep_face_crops: Opt-in: keep the newest face crop of each visible track in memory for
            :meth:`face_crop` (e.g. to show the visitor their own face on the kiosk screen). Crops are never
            written anywhere, are replaced every analysed frame, dropped when a track leaves the frame, and
            cleared on close.
        subtitles: Timed texts of a recording, ``(start_ns, text)`` on the sources' clock (see
            :func:`affectlite.media.resolve_cues`): each is classified and fused as text when the media time
            reaches its start. Used with recorded sources (see below).

    **Recordings** (every source has ``recorded = True``, e.g. :class:`affectlite.media.MediaCamera` and
    :class:`affectlite.media.MediaMicrophone` on a file): nothing is dropped (each queue waits for room
    instead), face and voice events reach the fusion in media-time order with the media time as "now", so
    the results are the same on every run, paced in real time or as fast as possible. ``stats().drops``
    stays 0 and no latency is recorded (media time is not the wall clock).
    """

    def __init__(
        self,
        options: PipelineOptions | None = None,
        *,
        on_result: Callable[[EmotionResult], None] | None = None,
        on_change: Callable[[EmotionResult, str], None] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
        on_status: Callable[[SourceStatus], None] | None = None,
        on_sensing: Callable[[bool], None] | None = None,
        consent: Any = None,
        camera: CameraSource | None = None,
        microphone: MicrophoneSource | None = None,
        face_analyzer_factory: Callable[[FaceOptions], FaceAnalyzerLike] | None = None,
        voice_analyzer_factory: Callable[[VoiceOptions], VoiceAnalyzerLike] | None = None,
        text_classifier_factory: Callable[[TextOptions], TextClassifierLike] | None = None,
        fusion_factory: Callable[[FusionOptions], FusionLike] | None = None,
        keep_face_crops: bool = False,
        subtitles: Sequence[tuple[int, str]] | None = None,
    ) -> None:
        self.options = options or PipelineOptions()
        if not isinstance(self.options, PipelineOptions):
            raise ConfigError(f"options must be a PipelineOptions, got {type(self.options).__name__}")
        for cb_name, cb in (("on_result", on_result), ("on_change", on_change), ("on_error", on_error),
                            ("on_status", on_status), ("on_sensing", on_sensing)):
            if cb is not None and not callable(cb):
                raise ConfigError(f"{cb_name} must be a function (or None), got {type(cb).__name__}")
        self._on_result = on_result
        self._on_change = on_change
        self._on_error = on_error
        self._on_status = on_status
        self._on_sensing = on_sensing
        self._consent = consent
        self._camera_override = camera
        self._mic_override = microphone
        self._face_factory = face_analyzer_factory
        self._voice_factory = voice_analyzer_factory
        self._text_factory = text_classifier_factory
        self._fusion_factory = fusion_factory

        q = self.options.queues
        self._frames: DropOldestQueue[Frame] = DropOldestQueue(q.frames, "frames")
        self._audio: DropOldestQueue[AudioChunk] = DropOldestQueue(q.audio, "audio")
        self._texts: DropOldestQueue[tuple[str, int]] = DropOldestQueue(q.text, "text")
        self._events: DropOldestQueue[_Event] = DropOldestQueue(q.results, "events")
        self._notices: DropOldestQueue[SourceStatus | BaseException] = DropOldestQueue(256, "notices")
        self._output: DropOldestQueue[EmotionResult] = DropOldestQueue(q.results, "output")

        self._state = "new"
        self._state_lock = threading.Lock()
        self._stop = threading.Event()
        self._done = threading.Event()
        self._fatal: BaseException | None = None
        self._threads: list[threading.Thread] = []
        self._t0 = 0.0
        self._c = _Counters()
        self._camera: CameraSource | None = None
        self._mic: MicrophoneSource | None = None
        self._face: FaceAnalyzerLike | None = None
        self._voice: VoiceAnalyzerLike | None = None
        self._text: TextClassifierLike | None = None
        self._fusion: FusionLike | None = None
        self._producers_alive = 0
        self._producers_lock = threading.Lock()
        self._guard: Any = None
        self._sensing_on = False
        self._last_labels: dict[Any, str] = {}
        self._absent: list[str] = []
        self._keep_crops = keep_face_crops
        self._crops: dict[int, np.ndarray] = {}
        self._crops_lock = threading.Lock()
        self._limiter = RateLimitedLog(10.0)
        self._item_errors_in_row: dict[str, int] = {}
        self._recorded = False  # every source is a recording: offline analysis in media-time order
        self._cues: list[tuple[int, str]] = list(subtitles or [])
        self._voice_media_ns = 0
        self._iterating = False

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> EmotionPipeline:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc is not None:
            with contextlib.suppress(Exception):
                self.close()
            return
        self.close()

    @property
    def state(self) -> str:
        """``new``, ``running``, ``finished`` (sources ended), ``failed``, or ``closed``."""
        return self._state

    def start(self) -> EmotionPipeline:
        """Check privacy rules, load models, open sources and start the threads.

        Returns:
            ``self``, so ``with EmotionPipeline(...).start()`` and chaining work.

        Raises:
            PipelineError: started twice, or reused after close.
            DeploymentRefusedError / ConsentRequiredError: a privacy rule refused to start.
            ModelError, BackendError: a model cannot be loaded.
            SourceUnavailableError: neither camera nor microphone (nor text) is usable.
        """
        with self._state_lock:
            if self._state != "new":
                raise PipelineError(f"this pipeline was already started (state {self._state!r}); create a new "
                                    "EmotionPipeline to run again")
            self._state = "starting"
        try:
            self._start()
        except BaseException:
            self._cleanup_after_failed_start()
            raise
        return self

    def _start(self) -> None:
        from . import privacy

        opts = self.options
        privacy.check_deployment(opts.privacy)
        sensed = [m for m, on in (("camera", opts.camera.enabled and opts.face.enabled),
                                  ("microphone", opts.audio.enabled and opts.voice.enabled),
                                  ("text", opts.text.enabled)) if on]
        privacy.check_consent(opts.privacy, self._consent, modalities=sensed)
        # Build the models on the caller's thread so load errors raise here; each is then used by one thread.
        if opts.face.enabled and opts.camera.enabled:
            self._face = self._make_face()
        if opts.voice.enabled and opts.audio.enabled:
            self._voice = self._make_voice()
        if opts.text.enabled:
            self._text = self._make_text()
        self._fusion = self._make_fusion()
        if self._face is not None:
            self._camera = self._camera_override or create_camera(opts.camera)
            self._open_initial(self._camera, "camera")
        if self._voice is not None:
            self._mic = self._mic_override or create_microphone(opts.audio)
            self._open_initial(self._mic, "microphone")
        if self._camera is None and self._mic is None and (self._face is not None or self._voice is not None):
            why = "; ".join(self._absent) or "no source"
            raise SourceUnavailableError(f"no camera and no microphone could be opened ({why}); check the camera/"
                                         "audio options (`affectlite doctor` lists devices)")
        if self._camera is None and self._mic is None and self._text is None:
            raise SourceUnavailableError("nothing to sense: camera, microphone and text are all disabled")
        if opts.privacy.offline_guard:
            self._guard = privacy.OfflineGuard(allow_loopback=opts.privacy.allow_loopback,
                                               on_block=lambda msg: self._notice(PrivacyError(msg)))
            self._guard.__enter__()
        if self._on_sensing is not None:
            try:
                self._on_sensing(True)
            except Exception as e:
                raise PrivacyError(f"on_sensing(True) raised {e!r}: refusing to sense without the indicator") from e
            self._sensing_on = True
        self._t0 = time.monotonic()
        self._recorded = self._decide_recorded()
        spawn: list[tuple[str, Callable[[], None]]] = [
            ("dispatch", self._dispatch_recorded_loop if self._recorded else self._dispatch_loop)]
        if self._camera is not None:
            spawn += [("camera", self._camera_loop), ("face", self._face_loop)]
        if self._mic is not None:
            spawn += [("mic", self._mic_loop), ("voice", self._voice_loop)]
        if self._text is not None:
            spawn.append(("text", self._text_loop))
        self._producers_alive = int(self._camera is not None) + int(self._mic is not None)
        self._state = "running"
        for name, fn in spawn:
            t = threading.Thread(target=self._guarded(name, fn), name=f"affectlite-{name}", daemon=True)
            self._threads.append(t)
        for t in self._threads:
            t.start()

    def _open_initial(self, src: CameraSource | MicrophoneSource, kind: str) -> None:
        try:
            src.open()
        except SourceError as e:
            # audio-only or camera-only operation when one is missing at start
            log.warning("%s unavailable at start, continuing without it: %s", kind, e)
            self._absent.append(f"{kind}: {e}")
            self._notice(SourceStatus(kind, "absent", str(e), time.monotonic_ns()))
            with contextlib.suppress(Exception):
                src.close()
            if kind == "camera":
                self._camera = None
            else:
                self._mic = None

    def _cleanup_after_failed_start(self) -> None:
        self._stop.set()
        for src in (self._camera, self._mic):
            if src is not None:
                with contextlib.suppress(Exception):
                    src.close()
        self._close_models()
        if self._guard is not None:
            with contextlib.suppress(Exception):
                self._guard.__exit__(None, None, None)
            self._guard = None
        self._state = "closed"
        self._done.set()

    def stop(self) -> None:
        """Ask every thread to stop (non-blocking; idempotent). Use :meth:`close` to wait for them."""
        self._stop.set()
        for q in (self._frames, self._audio, self._texts):
            q.close(discard=True)
        self._events.close(discard=True)
        self._output.close()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the pipeline finishes (sources ended, :meth:`stop`, or a fatal error).

        Ctrl-C (KeyboardInterrupt) in the waiting thread propagates to the caller; ``close()`` then stops
        everything cleanly (the context manager does it for you).

        Returns:
            True when finished, False on timeout.

        Raises:
            Exception: the fatal error that stopped the pipeline.
            PipelineError: the pipeline was never started.
        """
        if self._state == "new":
            raise PipelineError("wait() before start(): use `with EmotionPipeline(...) as pipe:` or call start()")
        if threading.current_thread() in self._threads:
            raise PipelineError("wait() from a callback would wait for the callback's own thread; call stop() or "
                                "close() there instead")
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._done.is_set():
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            # short waits keep the main thread responsive to Ctrl-C
            self._done.wait(0.2 if remaining is None else min(0.2, remaining))
        self._raise_fatal()
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Stop, join every thread, release sources and models; re-raise a fatal error.

        Idempotent. Threads are joined with ``timeout`` seconds in total; a user callback that never
        returns is reported in the log (its daemon thread cannot be killed). Safe from inside a callback:
        the calling (dispatch) thread is not joined; no further callback runs once the callback returns.
        """
        if self._state in ("new", "closed"):
            self._state = "closed"
            self._raise_fatal()
            return
        self.stop()
        deadline = time.monotonic() + timeout
        me = threading.current_thread()
        for t in self._threads:
            if t is me:  # close() from a callback: this thread ends when the callback returns
                continue
            t.join(max(0.0, deadline - time.monotonic()))
            if t.is_alive():
                log.error("thread %s did not stop within %.1f s (a callback that never returns?)", t.name, timeout)
        for src in (self._camera, self._mic):
            if src is not None:
                with contextlib.suppress(Exception):
                    src.close()
        self._close_models()
        with self._crops_lock:
            self._crops = {}
        if self._guard is not None:
            with contextlib.suppress(Exception):
                self._guard.__exit__(None, None, None)
            self._guard = None
        if self._sensing_on and self._on_sensing is not None:
            self._sensing_on = False
            try:
                self._on_sensing(False)
            except Exception:
                log.exception("on_sensing(False) raised")
        self._state = "closed"
        self._done.set()
        self._raise_fatal()

    def _raise_fatal(self) -> None:
        if self._fatal is not None:
            raise self._fatal

    def _close_models(self) -> None:
        for m in (self._face, self._voice, self._text, self._fusion):
            close = getattr(m, "close", None)  # text classifiers and fusions need not have one
            if callable(close):
                with contextlib.suppress(Exception):
                    close()
        # the text model and the fusion head hold interpreters (and their open model files) too: release them
        # now, not when the closed pipeline object is garbage-collected (found by the soak: 2 fds per pipeline)
        self._text = None
        self._fusion = None

    # ------------------------------------------------------------------ public helpers
    def push_text(self, text: str, timestamp_ns: int | None = None) -> None:
        """Hand in text (chat input, on-device speech recognition) for the text modality.

        Non-blocking: the text is classified on the pipeline's text thread and never stored. When texts
        arrive faster than they are classified, the oldest waiting ones are dropped (counted).

        Raises:
            InputError: ``text`` is not a string. Invalid code points (lone surrogates) are replaced by
                U+FFFD, not refused.
            PipelineError: the pipeline is not running or text is disabled.

        Args:
            text: The text.
            timestamp_ns: When it was said, on the sources' clock (``time.monotonic_ns()`` for live sources,
                media time for recordings); default now.
        """
        text = clean_text(text, "push_text")  # the boundary: lone surrogates -> U+FFFD
        if self._state != "running":
            raise PipelineError(f"push_text on a pipeline that is {self._state!r}; start it first")
        if self._text is None:
            raise PipelineError("text is disabled (options.text.enabled=False)")
        self._texts.put((text, time.monotonic_ns() if timestamp_ns is None else int(timestamp_ns)))

    def face_crop(self, track_id: int) -> np.ndarray | None:
        """The newest RGB crop of a face track, in process memory only (opt-in, ``keep_face_crops=True``).

        The SDK never persists it; it is a copy the caller owns. Returns ``None`` when the track is not in the
        most recently analysed frame.

        Raises:
            PipelineError: the pipeline was created without ``keep_face_crops=True``.
        """
        if not self._keep_crops:
            raise PipelineError("face crops are not kept: create the pipeline with keep_face_crops=True (opt-in)")
        with self._crops_lock:
            crop = self._crops.get(track_id)
            return None if crop is None else crop.copy()

    def __iter__(self) -> Iterator[EmotionResult]:
        """Yield results on the caller's thread until the pipeline finishes (only without ``on_result``)."""
        if self._on_result is not None:
            raise PipelineError("iterate only over a pipeline created without on_result")
        self._iterating = True  # recordings: results now wait for this reader instead of being dropped
        if self._state == "new":
            self.start()
        while True:
            try:
                r = self._output.get(timeout=0.2)
            except Closed:
                break
            if r is not None:
                yield r
            elif self._done.is_set() and len(self._output) == 0:
                break
        self._raise_fatal()

    def stats(self) -> PipelineStats:
        """Snapshot of throughput, latency, drops and queue depths (cheap; any thread)."""
        up = max(time.monotonic() - self._t0, 1e-9) if self._t0 else 0.0
        lat = np.array(self._c.latencies, dtype=np.float64) if self._c.latencies else np.zeros(0)
        counts = dict(self._c.counts)
        queues: dict[str, DropOldestQueue[Any]] = {
            "frames": self._frames, "audio": self._audio, "text": self._texts, "events": self._events,
            "output": self._output}
        return PipelineStats(
            state=self._state,
            uptime_s=up,
            counts=counts,
            fps={k: (v / up if up else 0.0) for k, v in counts.items()},
            latency_ms_p50=float(np.percentile(lat, 50)) if lat.size else 0.0,
            latency_ms_p95=float(np.percentile(lat, 95)) if lat.size else 0.0,
            drops={k: q.dropped for k, q in queues.items()},
            queue_depths={k: len(q) for k, q in queues.items()},
            callback_errors=self._c.callback_errors,
            stage_errors=self._c.stage_errors,
            reconnects=self._c.reconnects,
            overflows=int(getattr(self._mic, "overflows", 0) or 0),
            rejected=dict(self._c.rejected),
        )

    # ------------------------------------------------------------------ factories
    def _make_face(self) -> FaceAnalyzerLike:
        if self._face_factory is not None:
            return self._face_factory(self.options.face)
        from .face import FaceAnalyzer

        return FaceAnalyzer(self.options.face)

    def _make_voice(self) -> VoiceAnalyzerLike:
        if self._voice_factory is not None:
            return self._voice_factory(self.options.voice)
        from .voice import VoiceAnalyzer

        return VoiceAnalyzer(self.options.voice)

    def _make_text(self) -> TextClassifierLike:
        if self._text_factory is not None:
            return self._text_factory(self.options.text)
        from .text import TextClassifier

        return TextClassifier.create(self.options.text)

    def _make_fusion(self) -> FusionLike:
        if self._fusion_factory is not None:
            return self._fusion_factory(self.options.fusion)
        from .fusion import Fusion, head_model_mismatches

        fusion = Fusion(self.options.fusion)
        if fusion.head is not None:
            for msg in head_model_mismatches(fusion.head, self.options.model_paths(enabled_only=True)):
                log.warning("%s", msg)
        return fusion

    # ------------------------------------------------------------------ threads
    def _guarded(self, name: str, fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except BaseException as e:
                self._fail(e, name)
        return run

    def _fail(self, exc: BaseException, where: str) -> None:
        if self._fatal is None:
            if not isinstance(exc, AffectliteError):  # a bug or an unforeseen input: one error type for callers
                log.error("unexpected error in the %s thread", where, exc_info=exc)
                wrapped = PipelineError(f"the {where} thread failed unexpectedly: {type(exc).__name__}: {exc} "
                                        "(please report it with the log)")
                wrapped.__cause__ = exc
                exc = wrapped
            log.error("fatal error in %s thread: %s", where, exc)
            self._fatal = exc
            self._state = "failed"
        self.stop()
        self._done.set()

    def _notice(self, item: SourceStatus | BaseException) -> None:
        self._notices.put(item)

    def _item_failed(self, stage: str, stream: str, e: Exception) -> None:
        """One frame/chunk/text refused by ``stage``: drop it, count it, report it (rate-limited).

        Raises:
            AffectliteError: ``e`` itself when it is not about the item (a model or backend error): fatal.
            PipelineError: the stage raised unexpected exceptions on too many items in a row.
        """
        if isinstance(e, AffectliteError) and not isinstance(e, InputError):
            raise e
        self._c.stage_errors += 1
        self._c.rejected[stream] += 1
        key = f"{stage}:{type(e).__name__}"
        if not isinstance(e, InputError):
            n = self._item_errors_in_row.get(stage, 0) + 1
            self._item_errors_in_row[stage] = n
            if n >= MAX_CONSECUTIVE_ITEM_ERRORS:
                raise PipelineError(f"the {stage} stage failed on {n} items in a row, last: "
                                    f"{type(e).__name__}: {e}") from e
        report, first, suppressed = self._limiter.should_report(key)
        if not report:
            return
        if first and not isinstance(e, InputError):
            log.warning("%s: dropped one item after an unexpected error", stage, exc_info=e)
        else:
            more = f" ({suppressed} more since the last report)" if suppressed else ""
            log.warning("%s: dropped a bad item: %s%s", stage, e, more)
        self._notice(e)

    def _item_ok(self, stage: str) -> None:
        if self._item_errors_in_row.get(stage):
            self._item_errors_in_row[stage] = 0

    def _producer_done(self, stream: str = "") -> None:
        with self._producers_lock:
            self._producers_alive -= 1
        if self._recorded and stream:
            self._put_event(_Event("eos", stream))

    def _reopen(self, src: CameraSource | MicrophoneSource, kind: str, err: BaseException,
                reconnect: bool, max_backoff: float) -> bool:
        """Reconnect with exponential backoff; False when stopping. Raises when reconnecting is off."""
        if not reconnect:
            raise SourceError(f"{kind} failed and reconnect is disabled: {err}") from err
        self._c.stage_errors += 1
        self._notice(SourceStatus(kind, "degraded", f"{err}; reconnecting", time.monotonic_ns()))
        delay = 0.05
        while not self._stop.is_set():
            with contextlib.suppress(Exception):
                src.close()
            if self._stop.wait(delay):
                return False
            try:
                src.open()
            except SourceError as e:
                log.info("%s reconnect failed: %s", kind, e)
                delay = min(delay * 2, max_backoff)
                continue
            self._c.reconnects += 1
            self._notice(SourceStatus(kind, "ok", "reconnected", time.monotonic_ns()))
            return True
        return False

    def _store_crops(self, image: np.ndarray, faces: tuple[FaceResult, ...]) -> None:
        h, w = image.shape[:2]
        crops: dict[int, np.ndarray] = {}
        for f in faces:
            x0, y0 = max(0, int(f.box.x)), max(0, int(f.box.y))
            x1, y1 = min(w, int(f.box.x + f.box.w)), min(h, int(f.box.y + f.box.h))
            if x1 > x0 and y1 > y0:
                crops[f.track_id] = image[y0:y1, x0:x1].copy()
        with self._crops_lock:
            self._crops = crops

    def _capture_loop(self, src: CameraSource | MicrophoneSource, kind: str, counter: str,
                      out: DropOldestQueue[Any], reconnect: bool, max_backoff_s: float,
                      wait_for_room: bool = False) -> None:
        """Read a source until it ends or the pipeline stops; reconnect on errors (shared by camera and mic)."""
        stream = "frames" if kind == "camera" else "audio"
        # a recording beside a live source: its media time (from 0) is counted from now on the live clock
        shift_ns = time.monotonic_ns() if not self._recorded and getattr(src, "recorded", False) is True else 0
        flaps = 0  # reopen -> fail again before any item, in a row
        fresh = False  # reopened and nothing delivered since
        try:
            while not self._stop.is_set():
                try:
                    item = src.read()
                except InputError as e:  # one bad item (an undecodable file, NaN samples): skip it
                    self._item_failed(kind, stream, e)
                    continue
                except Exception as e:
                    err = e if isinstance(e, SourceError) else SourceError(
                        f"{kind} read raised {type(e).__name__}: {e}")
                    if err is not e:
                        err.__cause__ = e
                    if fresh:
                        flaps += 1
                        if flaps >= MAX_FLAPS:
                            why = (f"{kind} failed again right after reopening, {flaps} times in a row "
                                   f"(last: {err}); giving up on it")
                            log.error("%s", why)
                            self._c.stage_errors += 1
                            self._notice(SourceStatus(kind, "failed", why, time.monotonic_ns()))
                            break
                    if not self._reopen(src, kind, err, reconnect, max_backoff_s):
                        break
                    fresh = True
                    continue
                if item is None:
                    self._notice(SourceStatus(kind, "ended", "end of stream", time.monotonic_ns()))
                    break
                fresh, flaps = False, 0
                if shift_ns:
                    item = dataclasses.replace(item, timestamp_ns=item.timestamp_ns + shift_ns)
                self._c.counts[counter] += 1
                if wait_for_room:
                    if not out.put_wait(item, self._stop):
                        break
                else:
                    out.put(item)
        finally:
            out.close()

    def _camera_loop(self) -> None:
        assert self._camera is not None  # invariant: thread only started with a camera
        o = self.options.camera
        self._capture_loop(self._camera, "camera", "camera", self._frames, o.reconnect, o.max_backoff_s,
                           wait_for_room=o.every_frame or self._recorded)

    def _mic_loop(self) -> None:
        assert self._mic is not None  # invariant: thread only started with a microphone
        o = self.options.audio
        # a file read as fast as possible (audio.realtime false) waits for the voice thread instead of being
        # thinned out (a 2 h WAV with --fast lost 95% of its chunks); live microphones pace themselves
        self._capture_loop(self._mic, "microphone", "mic", self._audio, o.reconnect, o.max_backoff_s,
                           wait_for_room=self._recorded or not o.realtime)

    def _face_loop(self) -> None:
        face = self._face
        assert face is not None  # invariant
        try:
            while True:
                try:
                    frame = self._frames.get()
                except Closed:
                    break
                if frame is None:
                    continue
                try:
                    faces = face.process(frame.image, frame.timestamp_ns)
                except Exception as e:
                    self._item_failed("face", "frames", e)
                    continue
                self._item_ok("face")
                self._c.counts["face"] += 1
                if self._keep_crops:
                    self._store_crops(frame.image, faces)
                self._put_event(_Event("faces", faces, frame.index, frame.timestamp_ns))
        finally:
            self._producer_done("face")

    def _voice_loop(self) -> None:
        voice = self._voice
        assert voice is not None  # invariant
        try:
            while True:
                try:
                    chunk = self._audio.get()
                except Closed:
                    if not self._stop.is_set():
                        for r in voice.flush():
                            self._emit_voice(r, self._voice_media_ns)
                    break
                if chunk is None:
                    continue
                try:
                    results = voice.push(chunk.samples, chunk.timestamp_ns)
                except Exception as e:
                    self._item_failed("voice", "audio", e)
                    continue
                self._item_ok("voice")
                end_ns = chunk.timestamp_ns + len(chunk.samples) * 1_000_000_000 // 16000
                self._voice_media_ns = max(self._voice_media_ns, end_ns)
                for r in results:
                    self._emit_voice(r, end_ns)
                if self._recorded:  # media time reached, for the merge (no result is no reason to wait)
                    self._put_event(_Event("tick", None, -1, end_ns))
        finally:
            self._producer_done("voice")

    def _emit_voice(self, r: VoiceResult, available_ns: int = 0) -> None:
        self._c.counts["voice"] += 1
        # recorded inputs: merged at the media time the result became available (the chunk's end)
        self._put_event(_Event("voice", r, -1, max(available_ns, r.end_ns) if self._recorded else r.end_ns))

    def _text_loop(self) -> None:
        text = self._text
        assert text is not None  # invariant
        while True:
            try:
                item = self._texts.get(timeout=0.5)
            except Closed:
                break
            if item is None:
                continue
            try:
                r = text.classify(item[0], item[1])
            except Exception as e:
                self._item_failed("text", "text", e)
                continue
            self._item_ok("text")
            self._c.counts["text"] += 1
            self._events.put(_Event("text", r, -1, item[1]))

    def _sources_finished(self) -> bool:
        if self._camera is None and self._mic is None:
            return False  # text-only: runs until stop()
        with self._producers_lock:
            return self._producers_alive <= 0

    def _dispatch_loop(self) -> None:
        fusion = self._fusion
        assert fusion is not None  # invariant
        try:
            while True:
                self._drain_notices()
                try:
                    ev = self._events.get(timeout=0.05)
                except Closed:
                    break
                if ev is None:
                    if self._sources_finished() and len(self._events) == 0:
                        break
                    continue
                now = time.monotonic_ns()
                if ev.kind == "faces":
                    results = fusion.update_faces(ev.payload, ev.frame_index, ev.capture_ns, now)
                elif ev.kind == "voice":
                    results = fusion.update_voice(ev.payload, now)
                else:
                    results = fusion.update_text(ev.payload, now)
                for r in results:
                    self._deliver(r)
            self._drain_notices()
        finally:
            self._output.close()
            if self._fatal is None and not self._stop.is_set():
                self._state = "finished"
            self._done.set()

    def _drain_notices(self) -> None:
        while True:
            try:
                n = self._notices.get(timeout=0)
            except Closed:
                return
            if n is None:
                return
            if isinstance(n, SourceStatus):
                self._call(self._on_status, n)
            else:
                self._report(n)

    def _deliver(self, r: EmotionResult) -> None:
        if self._state == "closed":  # close() was called from a callback: no further callbacks
            return
        # media time is not the wall clock: no latency for recordings; a result without a capture time
        # (no face, no voice) would count as 0 ms and hide the real latency of the others
        if not self._recorded and r.capture_ns:
            self._c.latencies.append((time.monotonic_ns() - r.capture_ns) / 1e6)
        self._c.counts["results"] += 1
        if self._on_result is not None:
            self._call(self._on_result, r)
        else:
            if self._recorded and self._iterating:  # nobody reading: never block (wait() must return)
                self._output.put_wait(r, self._stop)
            else:
                self._output.put(r)
        key = r.track_id if r.track_id is not None else "stream"
        prev = self._last_labels.get(key)
        if prev != r.label:
            self._last_labels[key] = r.label
            if prev is not None and self._on_change is not None:
                self._call(self._on_change, r, prev)
        if len(self._last_labels) > 256:  # forget expired tracks
            for k in list(self._last_labels)[:-64]:
                del self._last_labels[k]

    def _call(self, cb: Callable[..., None] | None, *args: Any) -> None:
        if cb is None:
            return
        try:
            cb(*args)
        except Exception as e:
            self._c.callback_errors += 1
            name = getattr(cb, "__name__", repr(cb))
            report, first, suppressed = self._limiter.should_report(f"callback:{name}:{type(e).__name__}")
            if report and first:
                log.exception("callback %s raised (the same error again is logged at most every 10 s)", name)
            elif report:
                log.warning("callback %s raised %s: %s (%d more times since the last report)", name,
                            type(e).__name__, e, suppressed)
            self._report(e)

    def _report(self, e: BaseException) -> None:
        if isinstance(e, AffectliteError) and not isinstance(e, InputError) and \
                self._limiter.should_report(f"report:{type(e).__name__}")[0]:  # bad items: logged when dropped
            log.warning("%s", e)
        if self._on_error is not None:
            try:
                self._on_error(e)
            except Exception as e2:
                report, first, suppressed = self._limiter.should_report(f"on_error:{type(e2).__name__}")
                if report and first:
                    log.exception("on_error raised (the same error again is logged at most every 10 s)")
                elif report:
                    log.warning("on_error raised %s: %s (%d more times since the last report)", type(e2).__name__,
                                e2, suppressed)

    # ------------------------------------------------------------------ recordings (offline, media time)
    def _decide_recorded(self) -> bool:
        """True when every open source is a recording (media-time stamps): analyse offline, drop nothing."""
        srcs = [s for s in (self._camera, self._mic) if s is not None]
        flags = [getattr(s, "recorded", False) is True for s in srcs]
        if any(flags) and not all(flags):
            log.warning("a recording and a live source are mixed (%s): the recording's media time is counted from "
                        "the start of the run on the live clock, so it lines up only when it is paced in real "
                        "time; give both from files (or both live) to analyse offline",
                        ", ".join(s.name for s in srcs))
        return bool(flags) and all(flags)

    def _put_event(self, ev: _Event) -> None:
        if self._recorded:
            self._events.put_wait(ev, self._stop)  # backpressure: a recording loses nothing
        else:
            self._events.put(ev)

    def _dispatch_recorded_loop(self) -> None:
        """Dispatch for recordings: face and voice events merged in media-time order, media time as "now",
        subtitle cues released (and classified, on this thread) when media time reaches them."""
        fusion = self._fusion
        assert fusion is not None  # invariant
        streams = [s for s, src in (("face", self._camera), ("voice", self._mic)) if src is not None]
        merger: MediaTimeMerger[_Event] = MediaTimeMerger(streams)
        cues = CueSchedule(self._cues if self.options.text.enabled else ())
        cue_clf = self._make_text() if len(cues) else None  # its own model: the text thread owns the other one
        try:
            while True:
                self._drain_notices()
                try:
                    ev = self._events.get(timeout=0.05)
                except Closed:
                    break
                if ev is not None:
                    if ev.kind == "eos":
                        merger.end(str(ev.payload))
                    elif ev.kind == "text":  # pushed by the app while a recording runs: at the current media time
                        for r in fusion.update_text(ev.payload, max(merger.last_key, ev.capture_ns)):
                            self._deliver(r)
                    else:
                        merger.add("face" if ev.kind == "faces" else "voice", ev.capture_ns,
                                   None if ev.kind == "tick" else ev)
                for key, e in merger.ready():
                    self._release_cues(cues, cue_clf, key)
                    if e.kind == "faces":
                        results = fusion.update_faces(e.payload, e.frame_index, e.capture_ns, key)
                    else:
                        results = fusion.update_voice(e.payload, key)
                    for r in results:
                        self._deliver(r)
                if merger.finished:
                    self._release_cues(cues, cue_clf, None)
                    break
            self._drain_notices()
        finally:
            close = getattr(cue_clf, "close", None)
            if callable(close):
                with contextlib.suppress(Exception):
                    close()
            self._output.close()
            if self._fatal is None and not self._stop.is_set():
                self._state = "finished"
            self._done.set()

    def _release_cues(self, cues: CueSchedule, clf: TextClassifierLike | None, now_ns: int | None) -> None:
        fusion = self._fusion
        if clf is None or fusion is None:
            return
        for t_ns, text in cues.due(now_ns):
            try:
                r = clf.classify(text, max(t_ns, 1))  # 0 would mean "now" to a classifier
            except Exception as e:  # one bad cue: skip it, count it, report it, keep going
                self._item_failed("text", "text", e)
                continue
            self._c.counts["text"] += 1
            for res in fusion.update_text(r, max(t_ns, 1)):
                self._deliver(res)
