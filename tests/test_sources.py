"""Every camera and microphone source kind, hardware through fakes that behave like the real libraries."""

from __future__ import annotations

import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

from affectlite import AudioOptions, CameraOptions
from affectlite.cameras import (
    ImageFolderCamera,
    OpenCVCamera,
    Picamera2Camera,
    SyntheticCamera,
    create_camera,
    read_image,
    to_rgb_uint8,
    yuv420_to_rgb,
)
from affectlite.errors import ConfigError, InputError, SourceError, SourceUnavailableError
from affectlite.microphones import (
    SAMPLE_RATE,
    FileMicrophone,
    PyAudioMicrophone,
    SyntheticMicrophone,
    create_microphone,
    to_int16_mono,
)
from affectlite.testing import fake_picamera2_module, fake_pyaudio_module, install_fake_module

cv2 = pytest.importorskip("cv2")


def write_video(path: Path, n: int = 12, size: tuple[int, int] = (160, 120), fps: float = 20.0) -> None:
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    for i in range(n):
        img = np.zeros((size[1], size[0], 3), np.uint8)
        img[:, :, 2] = 200  # red in BGR
        img[:10, :10] = i * 20
        w.write(img)
    w.release()


def write_wav(path: Path, seconds: float, rate: int, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    x = (np.sin(2 * np.pi * 440 * t) * 10000).astype(np.int16)
    data = np.repeat(x[:, None], channels, axis=1)
    with wave.open(str(path), "wb") as wf:
        wf.setnchannels(channels)
        wf.setsampwidth(2)
        wf.setframerate(rate)
        wf.writeframes(data.tobytes())
    return x


def test_opencv_video_file_gives_rgb_frames_with_monotonic_timestamps(tmp_path: Path) -> None:
    vid = tmp_path / "v.avi"
    write_video(vid)
    cam = OpenCVCamera(str(vid), realtime=False)
    cam.open()
    frames = []
    while (f := cam.read()) is not None:
        frames.append(f)
    cam.close()
    assert len(frames) == 12
    assert frames[0].image.shape == (120, 160, 3) and frames[0].image.dtype == np.uint8
    assert frames[0].image[60, 80, 0] > 150 and frames[0].image[60, 80, 2] < 60  # red is channel 0 (RGB)
    ts = [f.timestamp_ns for f in frames]
    assert ts == sorted(ts) and [f.index for f in frames] == list(range(12))


def test_opencv_file_realtime_pacing_and_loop(tmp_path: Path) -> None:
    vid = tmp_path / "v.avi"
    write_video(vid, n=4, fps=20.0)
    cam = OpenCVCamera(str(vid), realtime=True, loop=True)
    cam.open()
    frames = [cam.read() for _ in range(8)]
    cam.close()
    assert all(f is not None for f in frames)  # looped past the end
    span = (frames[-1].timestamp_ns - frames[0].timestamp_ns) / 1e9  # type: ignore[union-attr]
    assert span >= 7 / 20 * 0.8  # paced at the file's 20 fps


def test_opencv_missing_file_and_bad_device() -> None:
    with pytest.raises(SourceUnavailableError, match="does not exist"):
        OpenCVCamera("/nonexistent/video.mp4").open()
    with pytest.raises(SourceError, match="could not open camera"):
        OpenCVCamera("/dev/video99").open()


def test_image_folder_and_read_image(tmp_path: Path) -> None:
    for i in range(3):
        img = np.full((20, 30, 3), i * 60, np.uint8)
        cv2.imwrite(str(tmp_path / f"{i:02d}.png"), img)
    np.save(tmp_path / "03.npy", np.zeros((5, 5), np.uint8))
    (tmp_path / "notes.txt").write_text("ignored")
    cam = ImageFolderCamera(tmp_path)
    cam.open()
    got = []
    while (f := cam.read()) is not None:
        got.append(f.image)
    assert len(got) == 4 and got[1].mean() == pytest.approx(60, abs=1) and got[3].shape == (5, 5, 3)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(SourceError, match="cannot decode image"):
        read_image(bad)
    with pytest.raises(SourceUnavailableError, match="holds no images"):
        ImageFolderCamera(tmp_path / "empty").open() if (tmp_path / "empty").mkdir() is None else None


def test_synthetic_camera_moves_sprite() -> None:
    sprite = np.full((40, 40, 3), 255, np.uint8)
    cam = SyntheticCamera(width=200, height=100, n_frames=3, sprite=sprite)
    cam.open()
    f0, f1 = cam.read(), cam.read()
    assert f0 is not None and f1 is not None
    assert cam.sprite_position(1)[0] > cam.sprite_position(0)[0]
    assert f0.image[50, 0].tolist() == [255, 255, 255]
    assert cam.read() is not None and cam.read() is None


def test_picamera2_uses_lores_stream_through_fake_module() -> None:
    with install_fake_module("picamera2", fake_picamera2_module()):
        cam = Picamera2Camera(width=640, height=480, inference_width=320, inference_height=240, fps=30)
        cam.open()
        f = cam.read()
        cfg = cam._cam.camera_config  # the configuration the real picamera2 would get
        cam.close()
    assert f is not None and f.image.shape == (240, 320, 3)
    assert cfg["lores"] == {"size": (320, 240), "format": "YUV420"} and cfg["main"]["size"] == (640, 480)
    assert cfg["controls"]["FrameDurationLimits"] == (33333, 33333)
    assert f.image[0, 0].tolist() == [0, 0, 0] and f.image[0, -1, 0] == 255  # Y ramp, neutral chroma


def test_picamera2_main_stream_is_converted_from_bgr() -> None:
    with install_fake_module("picamera2", fake_picamera2_module()):
        cam = Picamera2Camera(width=64, height=48, inference_width=0, inference_height=0)
        cam.open()
        f = cam.read()
        cam.close()
    assert f is not None and f.image[0, 0].tolist() == [0, 0, 255]  # fake delivers blue-first bytes


def test_picamera2_errors_missing_library_no_camera_and_capture_failure() -> None:
    with install_fake_module("picamera2", None), \
            pytest.raises(SourceUnavailableError, match="apt install python3-picamera2"):  # type: ignore[arg-type]
        Picamera2Camera().open()
    with install_fake_module("picamera2", fake_picamera2_module(attached=False)), \
            pytest.raises(SourceError, match="could not start the camera"):
        Picamera2Camera().open()
    with install_fake_module("picamera2", fake_picamera2_module(fail_capture_after=1)):
        cam = Picamera2Camera()
        cam.open()
        assert cam.read() is not None
        with pytest.raises(SourceError, match="capture failed"):
            cam.read()
        cam.close()


def test_yuv420_conversion_of_grey_and_colour() -> None:
    w, h = 4, 2
    yuv = np.zeros((h * 3 // 2, w), np.uint8)
    yuv[:h] = 100
    yuv[h:] = 128
    assert np.all(yuv420_to_rgb(yuv, w, h) == 100)


def test_camera_factory() -> None:
    assert isinstance(create_camera(CameraOptions(device="clip.mp4")), OpenCVCamera)
    assert isinstance(create_camera(CameraOptions(backend="synthetic")), SyntheticCamera)
    with pytest.raises(ConfigError, match=r"camera\.backend: 'kinect'"):
        create_camera(CameraOptions(backend="kinect"))


def test_to_rgb_uint8_accepts_odd_inputs_and_rejects_bad() -> None:
    assert to_rgb_uint8(np.zeros((4, 5), np.uint8)).shape == (4, 5, 3)
    assert to_rgb_uint8(np.ones((4, 5, 4), np.float32)).max() == 255
    assert to_rgb_uint8(np.full((2, 2, 1), 300, np.int32)).max() == 255
    with pytest.raises(InputError, match=r"expected an image of shape"):
        to_rgb_uint8(np.zeros((2, 2, 2, 2)))
    with pytest.raises(InputError, match="NaN"):
        to_rgb_uint8(np.full((2, 2), np.nan, np.float32))


def test_file_microphone_resamples_and_chunks(tmp_path: Path) -> None:
    pytest.importorskip("affectlite.audio_features")
    p = tmp_path / "a.wav"
    write_wav(p, 1.0, 48000, channels=2)
    mic = FileMicrophone(p, chunk_ms=100, realtime=False)
    mic.open()
    chunks = []
    while (c := mic.read()) is not None:
        chunks.append(c)
    mic.close()
    total = sum(len(c.samples) for c in chunks)
    assert abs(total - SAMPLE_RATE) <= 16 and chunks[0].samples.dtype == np.int16
    assert len(chunks[0].samples) == 1600
    x = np.concatenate([c.samples for c in chunks]).astype(np.float32)
    spec = np.abs(np.fft.rfft(x[2000:14000]))
    assert abs(spec.argmax() * SAMPLE_RATE / 12000 - 440) < 5  # still 440 Hz after 48k -> 16k


def test_file_microphone_missing_file() -> None:
    with pytest.raises(SourceUnavailableError, match="does not exist"):
        FileMicrophone("/nope.wav").open()


def test_pyaudio_source_opens_device_rate_counts_overflows_and_resamples() -> None:
    pytest.importorskip("affectlite.audio_features")
    fake = fake_pyaudio_module(rates=(48000, 44100), overflow_every=3)
    with install_fake_module("pyaudio", fake):
        mic = PyAudioMicrophone("usb", sample_rate=16000, chunk_ms=100)
        mic.open()
        assert mic.rate == 48000  # device refused 16 kHz: opened at its own rate
        chunks = [mic.read() for _ in range(6)]
        mic.close()
    assert all(c is not None and len(c.samples) == 1600 for c in chunks)
    assert mic.overflows >= 2


def test_pyaudio_device_loss_and_missing_library() -> None:
    with install_fake_module("pyaudio", fake_pyaudio_module(rates=(16000,), fail_after_reads=1)):
        mic = PyAudioMicrophone(None)
        mic.open()
        assert mic.read() is not None
        with pytest.raises(SourceError, match="unplugged"):
            mic.read()
        mic.close()
    with install_fake_module("pyaudio", fake_pyaudio_module(devices=())), \
            pytest.raises(SourceUnavailableError, match="no usable input device"):
        PyAudioMicrophone(None).open()
    with install_fake_module("pyaudio", None), pytest.raises(SourceUnavailableError, match="portaudio19-dev"):  # type: ignore[arg-type]
        PyAudioMicrophone(None).open()


def test_synthetic_microphone_and_int16_conversion() -> None:
    mic = SyntheticMicrophone("tone", seconds=0.25, chunk_ms=100)
    mic.open()
    sizes = []
    while (c := mic.read()) is not None:
        sizes.append(len(c.samples))
    assert sizes == [1600, 1600, 800]
    assert to_int16_mono(np.array([1.0, -1.0, 0.0], np.float32)).tolist() == [32767, -32767, 0]
    assert to_int16_mono(np.array([[100, 300]], np.int16)).tolist() == [200]
    assert to_int16_mono(np.array([1 << 20], np.int32)).tolist() == [16]
    with pytest.raises(InputError, match="NaN"):
        to_int16_mono(np.array([np.nan], np.float32))
    with pytest.raises(InputError, match="1-D"):
        to_int16_mono(np.zeros((2, 2, 2)))


def test_microphone_factory() -> None:
    assert isinstance(create_microphone(AudioOptions(device="x.wav")), FileMicrophone)
    assert isinstance(create_microphone(AudioOptions()), PyAudioMicrophone)
    with pytest.raises(ConfigError, match=r"audio\.backend"):
        create_microphone(AudioOptions(backend="alsa"))


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
def test_mp4_h264_file_decodes(tmp_path: Path) -> None:
    out = tmp_path / "t.mp4"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=10",
                    "-t", "1", "-pix_fmt", "yuv420p", str(out)], check=True)
    cam = OpenCVCamera(str(out), realtime=False)
    cam.open()
    n = 0
    while cam.read() is not None:
        n += 1
    cam.close()
    assert n == 10
