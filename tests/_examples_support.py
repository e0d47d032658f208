"""Helpers shared by the example, kiosk, fleet and bench tests: loading example scripts as modules, scripted
face/voice/text doubles (their "expression" is encoded in the frame or the text, so a test can script a
visitor), and a check for whether the shipped models have landed."""

from __future__ import annotations

import importlib.util
import sys
import threading
import time
from pathlib import Path
from types import ModuleType

import numpy as np

from affectlite.labels import LABELS
from affectlite.results import Box, FaceResult, TextResult, VoiceResult
from affectlite.testing import FakeCamera

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
MODELS = ROOT / "sdk" / "affectlite" / "models"


def load_example(rel: str, name: str) -> ModuleType:
    """Import ``examples/<rel>`` under a unique module name."""
    path = EXAMPLES / rel
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def shipped_models_present(*tasks: str) -> bool:
    """True when ``models/<task>.tflite`` and its card exist for every task."""
    return all((MODELS / f"{t}.tflite").is_file() and (MODELS / f"{t}.card.json").is_file() for t in tasks)


def peaked(label: str, p: float = 0.88) -> tuple[float, ...]:
    """A distribution with ``p`` on ``label`` and the rest spread evenly."""
    rest = (1.0 - p) / (len(LABELS) - 1)
    return tuple(p if lab == label else rest for lab in LABELS)


def frame_for(label: str | None, width: int = 160, height: int = 120, track: int = 1) -> np.ndarray:
    """A frame that :class:`ScriptedFace` reads as one face of ``label`` with track id ``track`` (``None``:
    an empty scene, no face)."""
    img = np.zeros((height, width, 3), np.uint8)
    if label is not None:
        img[:, :, 0] = 16 + 32 * LABELS.index(label)
        img[:, :, 1] = 200  # face marker
        img[:, :, 2] = track
    return img


class ScriptedFace:
    """Face analyzer double: one face when the frame carries the marker; its label is encoded in the red
    channel (see :func:`frame_for`)."""

    def __init__(self, opts: object = None) -> None:
        self.frames = 0
        self.threads: set[str] = set()

    def process(self, frame: np.ndarray, ts: int) -> tuple[FaceResult, ...]:
        self.frames += 1
        self.threads.add(threading.current_thread().name)
        if frame[0, 0, 1] != 200:
            return ()
        label = LABELS[min(int(frame[0, 0, 0]) // 32, len(LABELS) - 1)]
        return (FaceResult(int(frame[0, 0, 2]), Box(40, 30, 60, 60), 0.95, peaked(label), ts),)

    def close(self) -> None:
        pass


class KeywordText:
    """Text classifier double: a few keywords decide the label."""

    WORDS = {"great": "happy", "love": "happy", "awful": "angry", "hate": "angry", "sad": "sad"}

    def __init__(self, opts: object = None) -> None:
        pass

    def classify(self, text: str, timestamp_ns: int = 0) -> TextResult:
        label = next((v for k, v in self.WORDS.items() if k in text.lower()), "neutral")
        return TextResult(peaked(label, 0.8), len(text.split()), timestamp_ns or time.monotonic_ns())


class LoudVoice:
    """Voice analyzer double: every 5th non-silent chunk gives an 'angry' window."""

    def __init__(self, opts: object = None) -> None:
        self.n = 0

    def push(self, samples: np.ndarray, ts: int) -> list[VoiceResult]:
        if not np.any(samples):
            return []
        self.n += 1
        return [VoiceResult(peaked("angry"), 0.9, ts - 500_000_000, ts, 1)] if self.n % 5 == 0 else []

    def flush(self) -> list[VoiceResult]:
        return []

    def close(self) -> None:
        pass


def scripted_camera(script: list[tuple[str | None, int]] | list[tuple[str | None, int, int]], fps: float = 30.0,
                    realtime: bool = True) -> FakeCamera:
    """A camera playing ``[(label_or_None, n_frames[, track_id]), ...]`` in order."""
    frames = [frame_for(step[0], track=int(step[2]) if len(step) > 2 else 1)  # type: ignore[misc]
              for step in script for _ in range(int(step[1]))]
    return FakeCamera.from_images(frames, fps=fps, realtime=realtime)


def doubles(**extra: object) -> dict[str, object]:
    """Pipeline kwargs with the scripted face and keyword text doubles (real fusion)."""
    kw: dict[str, object] = {"face_analyzer_factory": ScriptedFace, "text_classifier_factory": KeywordText,
                             "voice_analyzer_factory": LoudVoice}
    kw.update(extra)
    return kw
