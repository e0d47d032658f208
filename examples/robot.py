"""A social robot's behaviour state machine driven by expression changes (``on_change``).

    python examples/robot.py                       # the bundled sample video + speech, motors printed
    python examples/robot.py --live                # camera 0 + default microphone

Behaviours: ``idle`` (nobody there), ``approach`` (the person looks happy: come closer, until their face
fills ``close_face_fraction`` of the frame), ``hold`` (neutral/surprised, or close enough: stay),
``comfort`` (sad: edge closer slowly and speak softly), ``back_off`` (angry, disgusted or afraid: retreat for
``back_off_s`` seconds, then hold at the new distance). A person lost for ``lost_s`` seconds returns the
robot to ``idle``.

Why ``on_change`` and ``on_result`` both: ``on_change(result, previous)`` fires when the fused label of a
person (a face track, or the voice-only stream) changes, which is when the robot should react; ``on_result``
supplies what changes continuously (first sight, face size as a distance cue, timers).

Replace :class:`PrintMotors` with your robot's driver (ROS publisher, serial motor controller ...). The
callbacks run on the pipeline's dispatch thread: keep them quick, never block on the robot's I/O there.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import affectlite
from affectlite import EmotionPipeline, EmotionResult, PipelineOptions

IDLE, APPROACH, HOLD, COMFORT, BACK_OFF = "idle", "approach", "hold", "comfort", "back_off"
#: What the robot does when a person's expression becomes each label.
REACTIONS = {"happy": APPROACH, "neutral": HOLD, "surprise": HOLD, "sad": COMFORT, "angry": BACK_OFF,
             "disgust": BACK_OFF, "fear": BACK_OFF}
#: Forward speed (m/s) per behaviour; negative is backwards.
SPEEDS = {IDLE: 0.0, APPROACH: 0.15, HOLD: 0.0, COMFORT: 0.05, BACK_OFF: -0.25}
VOICE = {APPROACH: "Hello! Nice to see you.", COMFORT: "Is everything all right?", BACK_OFF: "Sorry, I will give "
         "you some space.", IDLE: "", HOLD: ""}


class Motors(Protocol):
    """What the brain drives. Implement it for your robot."""

    def drive(self, speed_m_s: float) -> None: ...
    def say(self, text: str) -> None: ...


@dataclass
class PrintMotors:
    """Motors that print (and remember) their commands."""

    log: list[tuple[str, Any]] = field(default_factory=list)
    quiet: bool = False

    def drive(self, speed_m_s: float) -> None:
        self.log.append(("drive", speed_m_s))
        if not self.quiet:
            print(f"  motors: drive {speed_m_s:+.2f} m/s", flush=True)

    def say(self, text: str) -> None:
        self.log.append(("say", text))
        if not self.quiet:
            print(f"  speaker: {text!r}", flush=True)


class RobotBrain:
    """The behaviour state machine. Thread-safe; callbacks come from the pipeline's dispatch thread.

    Args:
        motors: What to drive.
        min_confidence: Fused confidence a label needs before the robot reacts to it.
        close_face_fraction: Face width / frame width at which approaching stops.
        frame_width: Camera frame width in pixels (for the distance cue).
        back_off_s: How long to retreat before holding.
        lost_s: How long without a person before going idle.
        clock: Monotonic clock in seconds.
    """

    def __init__(self, motors: Motors, *, min_confidence: float = 0.45, close_face_fraction: float = 0.35,
                 frame_width: int = 640, back_off_s: float = 1.5, lost_s: float = 2.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.motors = motors
        self.min_confidence = min_confidence
        self.close_face_fraction = close_face_fraction
        self.frame_width = frame_width
        self.back_off_s = back_off_s
        self.lost_s = lost_s
        self.clock = clock
        self.state = IDLE
        self.entered = clock()
        self.last_seen: float | None = None
        self.transitions: list[tuple[str, str, str]] = []  # (from, to, reason)
        self._lock = threading.Lock()

    # -- pipeline callbacks
    def on_change(self, r: EmotionResult, previous: str) -> None:
        """The fused label of a person changed: react to the new expression."""
        if r.confidence < self.min_confidence or r.label not in REACTIONS:
            return
        with self._lock:
            self._react(r, f"{previous} -> {r.label}")

    def on_result(self, r: EmotionResult) -> None:
        """Every result: first sight, distance cue, timers."""
        now = self.clock()
        with self._lock:
            present = not r.is_empty and r.label in REACTIONS and r.confidence >= self.min_confidence
            if present:
                self.last_seen = now
                if self.state == IDLE:
                    self._react(r, f"first sight: {r.label}")
            if self.state == APPROACH and self._face_fraction(r) >= self.close_face_fraction:
                self._enter(HOLD, "close enough")
            elif self.state == BACK_OFF and now - self.entered >= self.back_off_s:
                self._enter(HOLD, f"backed off for {self.back_off_s:g} s")
            self._check_lost(now)

    def tick(self) -> None:
        """Call periodically (e.g. from the main loop): goes idle when nobody has been seen for a while."""
        with self._lock:
            self._check_lost(self.clock())

    # -- internals
    def _react(self, r: EmotionResult, reason: str) -> None:
        target = REACTIONS[r.label]
        if self.state == BACK_OFF and target != BACK_OFF and self.clock() - self.entered < self.back_off_s:
            return  # finish retreating first: no whiplash from a flickering label
        if target == APPROACH and self._face_fraction(r) >= self.close_face_fraction:
            target = HOLD
            reason += " (already close)"
        self._enter(target, reason)

    def _check_lost(self, now: float) -> None:
        if self.state != IDLE and (self.last_seen is None or now - self.last_seen >= self.lost_s):
            self._enter(IDLE, f"nobody seen for {self.lost_s:g} s")

    def _face_fraction(self, r: EmotionResult) -> float:
        face = next((f for f in r.faces if f.track_id == r.track_id), None)
        return 0.0 if face is None else face.box.w / max(self.frame_width, 1)

    def _enter(self, new: str, reason: str) -> None:
        if new == self.state:
            return
        self.transitions.append((self.state, new, reason))
        print(f"robot: {self.state} -> {new} ({reason})", flush=True)
        self.state, self.entered = new, self.clock()
        self.motors.drive(SPEEDS[new])
        if VOICE[new]:
            self.motors.say(VOICE[new])


def build_options(args: argparse.Namespace) -> PipelineOptions:
    """Options for the sample media (default), your files, or ``--live`` camera + microphone."""
    opts = PipelineOptions().replace(**{"privacy.deployment_context": "robot"})
    if args.live:
        return opts
    video, audio = args.video, args.audio
    if video is None and audio is None:
        from affectlite.samples import sample_paths

        v, a = sample_paths()
        video, audio = str(v), str(a)
    ov: dict[str, Any] = {"camera.enabled": video is not None, "audio.enabled": audio is not None}
    if video is not None:
        ov.update({"camera.backend": "opencv", "camera.device": video})
    if audio is not None:
        ov.update({"audio.backend": "file", "audio.device": audio})
    return opts.replace(**ov)


def main(argv: Sequence[str] | None = None, *, options: PipelineOptions | None = None,
         pipeline_kwargs: dict[str, Any] | None = None, brain: RobotBrain | None = None) -> int:
    """Run until the media end, ``--duration`` or Ctrl-C; prints behaviour transitions."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--live", action="store_true", help="use the camera and microphone")
    p.add_argument("--video", help="video file instead of the camera")
    p.add_argument("--audio", help="WAV/FLAC file instead of the microphone")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    args = p.parse_args(argv)
    opts = options or build_options(args)
    brain = brain or RobotBrain(PrintMotors(), frame_width=opts.camera.width)
    pipe = EmotionPipeline(opts, on_result=brain.on_result, on_change=brain.on_change,
                           on_error=lambda e: print(f"pipeline: {e}", file=sys.stderr), **(pipeline_kwargs or {}))
    deadline = None if args.duration is None else time.monotonic() + args.duration
    try:
        with pipe:
            while not pipe.wait(timeout=0.25):
                brain.tick()
                if deadline is not None and time.monotonic() >= deadline:
                    break
    except KeyboardInterrupt:
        return 130
    finally:
        brain.motors.drive(0.0)  # always leave the robot stopped
    st: affectlite.PipelineStats = pipe.stats()
    print(f"robot: final state {brain.state}; {len(brain.transitions)} transitions; "
          f"{st.counts.get('results', 0)} results", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
