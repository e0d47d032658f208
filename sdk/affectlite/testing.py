"""Public fakes for tests and demos: camera, microphone, interpreter, and fake ``picamera2``/``pyaudio``
modules that behave like the real libraries (so the real source classes can be exercised without hardware).

Example::

    from affectlite.testing import FakeCamera, FakeMicrophone
    pipe = EmotionPipeline(opts, camera=FakeCamera.from_images([img] * 30), microphone=FakeMicrophone.silence(2))
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
import types
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from .cameras import Frame, to_rgb_uint8
from .errors import ModelLoadError, SourceError, SourceUnavailableError
from .microphones import SAMPLE_RATE, AudioChunk, to_int16_mono

__all__ = [
    "FakeCamera",
    "FakeInterpreter",
    "FakeMicrophone",
    "fake_picamera2_module",
    "fake_pyaudio_module",
    "install_fake_module",
]


class FakeCamera:
    """A camera that yields given images, with optional injected failures.

    Args:
        images: Images (any shape :func:`affectlite.cameras.to_rgb_uint8` accepts), or a callable
            ``index -> image`` for endless streams.
        n_frames: Frames to yield when ``images`` is a callable (``None``: endless).
        fps: Pacing when ``realtime``.
        realtime: Sleep between frames.
        fail_reads: Frame indices at which ``read`` raises :class:`SourceError` (like an unplugged camera).
        fail_opens: How many ``open`` calls fail before one succeeds (first open counts too).
        unavailable: ``open`` raises :class:`SourceUnavailableError` (device absent at start).
    """

    def __init__(self, images: Sequence[np.ndarray] | Callable[[int], np.ndarray], *, n_frames: int | None = None,
                 fps: float = 30.0, realtime: bool = False, fail_reads: Iterable[int] = (), fail_opens: int = 0,
                 unavailable: bool = False) -> None:
        self.name = "fake-camera"
        self._images = images
        self.n_frames = len(images) if not callable(images) else n_frames
        self.fps, self.realtime = fps, realtime
        self.fail_reads = set(fail_reads)
        self.fail_opens = fail_opens
        self.unavailable = unavailable
        self.open_calls = 0
        self.close_calls = 0
        self.reads = 0
        self.is_open = False
        self._pos = 0

    @classmethod
    def from_images(cls, images: Sequence[np.ndarray], **kw: Any) -> FakeCamera:
        """Yield these images once, in order."""
        return cls(list(images), **kw)

    @classmethod
    def moving_sprite(cls, sprite: np.ndarray, *, width: int = 640, height: int = 480, n_frames: int = 60,
                      step: int = 4, **kw: Any) -> FakeCamera:
        """Frames with ``sprite`` (e.g. a face photo) moving ``step`` pixels right per frame."""
        spr = to_rgb_uint8(sprite)
        sh, sw = spr.shape[:2]

        def make(i: int) -> np.ndarray:
            img = np.full((height, width, 3), 40, np.uint8)
            x = min(i * step, max(width - sw, 0))
            y = max((height - sh) // 2, 0)
            h, w = min(sh, height - y), min(sw, width - x)
            img[y:y + h, x:x + w] = spr[:h, :w]
            return img
        return cls(make, n_frames=n_frames, **kw)

    def open(self) -> None:
        """Open (or fail as configured)."""
        self.open_calls += 1
        if self.unavailable:
            raise SourceUnavailableError("fake camera: no such device")
        if self.open_calls <= self.fail_opens:
            raise SourceError(f"fake camera: open failed (attempt {self.open_calls})")
        self.is_open = True

    def read(self) -> Frame | None:
        """Next frame, ``None`` at the end; raises at the configured indices."""
        if not self.is_open:
            raise SourceError("fake camera: read on a closed camera")
        if self.n_frames is not None and self._pos >= self.n_frames:
            return None
        i = self._pos
        self._pos += 1
        self.reads += 1
        if i in self.fail_reads:
            self.is_open = False
            raise SourceError(f"fake camera: read failed at frame {i} (unplugged)")
        if self.realtime and self.fps > 0:
            time.sleep(1.0 / self.fps)
        img = self._images(i) if callable(self._images) else self._images[i]
        return Frame(to_rgb_uint8(img), time.monotonic_ns(), i)

    def close(self) -> None:
        """Close (idempotent)."""
        self.close_calls += 1
        self.is_open = False


class FakeMicrophone:
    """A microphone that yields given audio in chunks, with optional injected failures.

    Args:
        samples: Audio at 16 kHz (float -1..1 or int16), or a callable ``chunk_index -> samples``.
        chunk_ms: Chunk length.
        n_chunks: Chunks to yield for a callable (``None``: endless).
        realtime: Sleep ``chunk_ms`` per chunk.
        fail_reads: Chunk indices at which ``read`` raises :class:`SourceError`.
        fail_opens: How many ``open`` calls fail first.
        unavailable: ``open`` raises :class:`SourceUnavailableError`.
        overflow_every: Count an input overflow every N chunks (like PortAudio overruns).
    """

    def __init__(self, samples: np.ndarray | Callable[[int], np.ndarray], *, chunk_ms: int = 100,
                 n_chunks: int | None = None, realtime: bool = False, fail_reads: Iterable[int] = (),
                 fail_opens: int = 0, unavailable: bool = False, overflow_every: int = 0) -> None:
        self.name = "fake-microphone"
        self.chunk = SAMPLE_RATE * chunk_ms // 1000
        self.chunk_ms = chunk_ms
        if callable(samples):
            self._gen: Callable[[int], np.ndarray] | None = samples
            self._data = np.zeros(0, np.int16)
            self.n_chunks = n_chunks
        else:
            self._gen = None
            self._data = to_int16_mono(np.asarray(samples))
            self.n_chunks = -(-len(self._data) // self.chunk)
        self.realtime = realtime
        self.fail_reads = set(fail_reads)
        self.fail_opens = fail_opens
        self.unavailable = unavailable
        self.overflow_every = overflow_every
        self.overflows = 0
        self.open_calls = 0
        self.is_open = False
        self._i = 0
        self._t0 = 0

    @classmethod
    def silence(cls, seconds: float, **kw: Any) -> FakeMicrophone:
        """Digital silence."""
        return cls(np.zeros(int(seconds * SAMPLE_RATE), np.int16), **kw)

    @classmethod
    def noise(cls, seconds: float, level: float = 0.05, seed: int = 0, **kw: Any) -> FakeMicrophone:
        """White noise at ``level`` RMS."""
        rng = np.random.default_rng(seed)
        return cls(np.clip(rng.normal(0, level, int(seconds * SAMPLE_RATE)), -1, 1), **kw)

    def open(self) -> None:
        """Open (or fail as configured)."""
        self.open_calls += 1
        if self.unavailable:
            raise SourceUnavailableError("fake microphone: no such device")
        if self.open_calls <= self.fail_opens:
            raise SourceError(f"fake microphone: open failed (attempt {self.open_calls})")
        self.is_open = True
        if not self._t0:
            self._t0 = time.monotonic_ns()

    def read(self) -> AudioChunk | None:
        """Next chunk, ``None`` at the end."""
        if not self.is_open:
            raise SourceError("fake microphone: read on a closed device")
        if self.n_chunks is not None and self._i >= self.n_chunks:
            return None
        i = self._i
        self._i += 1
        if i in self.fail_reads:
            self.is_open = False
            raise SourceError(f"fake microphone: device lost at chunk {i}")
        if self.overflow_every and i % self.overflow_every == 0 and i:
            self.overflows += 1
        if self.realtime:
            time.sleep(self.chunk_ms / 1000)
        if self._gen is not None:
            x = to_int16_mono(np.asarray(self._gen(i)))
        else:
            x = self._data[i * self.chunk:(i + 1) * self.chunk]
        if self.realtime:
            ts = self._t0 + i * self.chunk * 1_000_000_000 // SAMPLE_RATE
        else:  # as fast as possible: the chunk was "recorded" just now
            ts = time.monotonic_ns() - len(x) * 1_000_000_000 // SAMPLE_RATE
        return AudioChunk(x, ts, i)

    def close(self) -> None:
        """Close (idempotent)."""
        self.is_open = False


class FakeInterpreter:
    """An in-memory stand-in for a TFLite interpreter (same methods as LiteRT's ``Interpreter``).

    Args:
        inputs: ``(name, shape, dtype, (scale, zero_point))`` per input.
        outputs: The same per output.
        fn: Called with the list of (raw, possibly quantised) inputs; returns the list of raw outputs.
        invoke_delay_s: Sleep in ``invoke`` (to simulate a slow model).

    Like the real interpreter it is not re-entrant: concurrent ``invoke`` calls raise ``RuntimeError``.
    """

    def __init__(self, inputs: Sequence[tuple[str, Sequence[int], Any, tuple[float, int]]],
                 outputs: Sequence[tuple[str, Sequence[int], Any, tuple[float, int]]],
                 fn: Callable[[list[np.ndarray]], list[np.ndarray]], *, invoke_delay_s: float = 0.0) -> None:
        self._specs_in = [self._detail(i, *s) for i, s in enumerate(inputs)]
        self._specs_out = [self._detail(len(inputs) + i, *s) for i, s in enumerate(outputs)]
        self._tensors: dict[int, np.ndarray] = {}
        self._fn = fn
        self._delay = invoke_delay_s
        self._busy = threading.Lock()
        self.invocations = 0
        self.allocated = False

    @staticmethod
    def _detail(index: int, name: str, shape: Sequence[int], dtype: Any, q: tuple[float, int]) -> dict[str, Any]:
        return {"name": name, "index": index, "shape": np.array(shape, np.int32),
                "shape_signature": np.array(shape, np.int32), "dtype": np.dtype(dtype).type,
                "quantization": q,
                "quantization_parameters": {"scales": np.array([q[0]] if q[0] else [], np.float32),
                                            "zero_points": np.array([q[1]] if q[0] else [], np.int32),
                                            "quantized_dimension": 0}}

    @classmethod
    def factory(cls, *args: Any, **kw: Any) -> Callable[[str | None, bytes | None, int | None, Sequence[str]],
                                                         FakeInterpreter]:
        """A factory for :func:`affectlite.interpreters.register_backend` that ignores the model file."""
        def make(path: str | None, content: bytes | None, threads: int | None,
                 delegates: Sequence[str]) -> FakeInterpreter:
            if path is not None:
                with open(path, "rb") as f:
                    if len(f.read(16)) < 16:
                        raise ModelLoadError(f"fake interpreter: {path} is truncated")
            return cls(*args, **kw)
        return make

    def allocate_tensors(self) -> None:
        self.allocated = True

    def get_input_details(self) -> list[dict[str, Any]]:
        return [dict(d) for d in self._specs_in]

    def get_output_details(self) -> list[dict[str, Any]]:
        return [dict(d) for d in self._specs_out]

    def resize_tensor_input(self, input_index: int, tensor_size: Sequence[int], strict: bool = False) -> None:
        for spec in (self._specs_in, self._specs_out):
            for d in spec:
                if d["index"] == input_index or spec is self._specs_out:
                    shape = d["shape"].copy()
                    shape[0] = tensor_size[0]
                    d["shape"] = shape
        self.allocated = False

    def set_tensor(self, tensor_index: int, value: np.ndarray) -> None:
        det = next((d for d in self._specs_in if d["index"] == tensor_index), None)
        if det is None:
            raise ValueError(f"no input tensor {tensor_index}")
        if value.dtype != np.dtype(det["dtype"]):
            raise ValueError(f"Cannot set tensor: Got value of type {value.dtype} but expected type "
                             f"{np.dtype(det['dtype'])} for input {tensor_index}, name: {det['name']}")
        if tuple(value.shape) != tuple(det["shape"]):
            raise ValueError(f"Cannot set tensor: Dimension mismatch. Got {list(value.shape)} but expected "
                             f"{list(det['shape'])} for input {tensor_index}.")
        self._tensors[tensor_index] = value.copy()

    def invoke(self) -> None:
        if not self.allocated:
            raise RuntimeError("Invoke called on model that is not ready (allocate_tensors first)")
        if not self._busy.acquire(blocking=False):
            raise RuntimeError("There is at least 1 reference to internal data in the interpreter (re-entrant invoke)")
        try:
            if self._delay:
                time.sleep(self._delay)
            ins = [self._tensors[d["index"]] for d in self._specs_in]
            outs = self._fn(ins)
            for d, o in zip(self._specs_out, outs, strict=True):
                self._tensors[d["index"]] = np.asarray(o).astype(np.dtype(d["dtype"]))
            self.invocations += 1
        finally:
            self._busy.release()

    def get_tensor(self, tensor_index: int) -> np.ndarray:
        if tensor_index not in self._tensors:
            raise ValueError(f"tensor {tensor_index} has no data yet (invoke first)")
        return self._tensors[tensor_index].copy()


# ---------------------------------------------------------------------------- fake library modules
def fake_picamera2_module(*, fail_capture_after: int | None = None, attached: bool = True) -> types.ModuleType:
    """A module object that behaves like ``picamera2`` for :class:`affectlite.cameras.Picamera2Camera`.

    ``Picamera2`` raises ``IndexError`` when no camera is attached (as the real one does), requires
    ``configure`` then ``start`` before ``capture_array``, returns ``main`` "RGB888" frames in B,G,R byte order
    and ``lores`` "YUV420" frames as an I420 buffer of shape ``(h * 3 // 2, w)``.
    """
    mod = types.ModuleType("picamera2")

    class Picamera2:
        global_camera_info: list[dict[str, Any]] = [{"Model": "imx708", "Num": 0}] if attached else []

        def __init__(self, camera_num: int = 0) -> None:
            if not attached or camera_num >= len(self.global_camera_info):
                raise IndexError("list index out of range")
            self.camera_config: dict[str, Any] | None = None
            self.started = False
            self.closed = False
            self.frames = 0

        def create_video_configuration(self, main: dict[str, Any] | None = None, lores: dict[str, Any] | None = None,
                                       controls: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
            return {"use_case": "video", "main": dict(main or {"size": (1280, 720), "format": "XBGR8888"}),
                    "lores": dict(lores) if lores else None, "controls": dict(controls or {})}

        def create_preview_configuration(self, **kw: Any) -> dict[str, Any]:
            return self.create_video_configuration(**kw)

        def configure(self, config: dict[str, Any]) -> None:
            if self.started:
                raise RuntimeError("Camera must be stopped before configuring")
            lo = config.get("lores")
            if lo is not None and lo.get("format", "YUV420") != "YUV420":
                raise RuntimeError("lores stream must be YUV420 on this platform")
            self.camera_config = config

        def start(self) -> None:
            if self.camera_config is None:
                raise RuntimeError("Camera has not been configured")
            self.started = True

        def capture_array(self, name: str = "main") -> np.ndarray:
            if not self.started:
                raise RuntimeError("Camera is not running")
            if fail_capture_after is not None and self.frames >= fail_capture_after:
                raise RuntimeError("Device timeout detected, attempting a restart!!!")
            assert self.camera_config is not None
            self.frames += 1
            stream = self.camera_config.get(name)
            if stream is None:
                raise KeyError(name)
            w, h = stream["size"]
            if name == "lores":
                yuv = np.full((h * 3 // 2, w), 128, np.uint8)
                yuv[:h] = (np.arange(w)[None, :] * 255 // max(w - 1, 1)).astype(np.uint8)
                return yuv
            img = np.zeros((h, w, 3), np.uint8)
            img[:, :, 0] = 255  # blue channel first in memory, as picamera2's "RGB888"
            return img

        def stop(self) -> None:
            self.started = False

        def close(self) -> None:
            self.started = False
            self.closed = True

    mod.Picamera2 = Picamera2  # type: ignore[attr-defined]
    return mod


def fake_pyaudio_module(*, rates: Sequence[int] = (48000, 44100), overflow_every: int = 0,
                        fail_after_reads: int | None = None, devices: Sequence[str] = ("Fake USB Mic",)
                        ) -> types.ModuleType:
    """A module object that behaves like ``pyaudio`` for :class:`affectlite.microphones.PyAudioMicrophone`.

    Devices accept only ``rates`` (a USB mic at 48/44.1 kHz); ``read`` returns a 440 Hz tone as int16 bytes,
    raises ``OSError(-9981, 'Input overflowed')`` every ``overflow_every`` reads when asked to, and
    ``OSError(-9999, 'Unanticipated host error')`` after ``fail_after_reads`` reads (device unplugged).
    """
    mod = types.ModuleType("pyaudio")
    mod.paInt16 = 8  # type: ignore[attr-defined]

    class Stream:
        def __init__(self, rate: int) -> None:
            self.rate = rate
            self.reads = 0
            self.t = 0
            self.active = True

        def read(self, n: int, exception_on_overflow: bool = True) -> bytes:
            self.reads += 1
            if fail_after_reads is not None and self.reads > fail_after_reads:
                raise OSError(-9999, "Unanticipated host error")
            if overflow_every and self.reads % overflow_every == 0 and exception_on_overflow:
                raise OSError(-9981, "Input overflowed")
            t = (self.t + np.arange(n)) / self.rate
            self.t += n
            return (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16).tobytes()

        def stop_stream(self) -> None:
            self.active = False

        def close(self) -> None:
            self.active = False

    class PyAudio:
        def get_device_count(self) -> int:
            return len(devices)

        def get_device_info_by_index(self, i: int) -> dict[str, Any]:
            if not 0 <= i < len(devices):
                raise OSError(-9996, "Invalid device")
            return {"index": i, "name": devices[i], "maxInputChannels": 1, "defaultSampleRate": float(rates[0])}

        def get_default_input_device_info(self) -> dict[str, Any]:
            if not devices:
                raise OSError(-9996, "No Default Input Device Available")
            return self.get_device_info_by_index(0)

        def open(self, *, format: int, channels: int, rate: int, input: bool, input_device_index: int | None = None,
                 frames_per_buffer: int = 1024, **kw: Any) -> Stream:
            if rate not in rates:
                raise ValueError(-9997, "Invalid sample rate")
            return Stream(rate)

        def terminate(self) -> None:
            pass

    mod.PyAudio = PyAudio  # type: ignore[attr-defined]
    return mod


@contextlib.contextmanager
def install_fake_module(name: str, module: types.ModuleType) -> Iterator[types.ModuleType]:
    """Temporarily put ``module`` into ``sys.modules[name]`` (restores what was there)."""
    old = sys.modules.get(name)
    sys.modules[name] = module
    try:
        yield module
    finally:
        if old is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = old
