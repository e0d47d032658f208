"""IoU face tracking with ephemeral ids, expiry and per-track probability smoothing.

No face embeddings and nothing identifying: a track is a box, a score, a short motion estimate, the
detector's keypoints (eyes, nose...: relative to the box, used only to align the crop; never reported) and the
smoothed expression probabilities. Ids count up from 1 within one :class:`IoUTracker` and are never reused;
they mean "the same box-shaped region in consecutive frames", not "the same person".

Between detections (the analyzer detects only every Nth frame), :meth:`IoUTracker.predict` moves each box
by its last velocity so crops follow a moving face.

A new track is *tentative* until it has been matched in ``min_hits`` consecutive detection passes (as in
SORT): tentative tracks are kept and matched but not returned, so a detector's sporadic false positive (one
or two passes in a row on a patch of background) never becomes a reported face. Once confirmed, a track is
reported in every pass that matches it until it expires.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .detectors.base import Detection
from .errors import ConfigError
from .results import Box

__all__ = ["IoUTracker", "Track"]


@dataclass
class Track:
    """One tracked face.

    Attributes:
        track_id: Ephemeral id (never reused within a tracker).
        box: Current box, frame pixels.
        score: Detector score of the last matching detection.
        last_seen_ns: Timestamp of the last matching detection.
        last_update_ns: Timestamp of the last detection or prediction step.
        hits: Number of detections matched.
        streak: Consecutive detection passes matched (0 after a miss).
        confirmed: Matched in ``min_hits`` consecutive passes at some point (then reported while active).
        missed: Detection passes since the last match (0: seen in the latest pass).
        velocity: Box ``(dx, dy, dw, dh)`` per second, from the last two matches.
        probs: Smoothed expression probabilities (``None`` until the first classification).
        detected_box: The box of the last matching detection.
        keypoints: The last matching detection's keypoints as fractions of its box (``(0, 0)`` = top left),
            so they follow the box between detections; ``()`` when the detector gives none (Haar).
    """

    track_id: int
    box: Box
    score: float
    last_seen_ns: int
    last_update_ns: int
    hits: int = 1
    streak: int = 1
    confirmed: bool = False
    missed: int = 0
    velocity: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    probs: np.ndarray | None = field(default=None, repr=False)
    detected_box: Box = field(default=Box(0.0, 0.0, 0.0, 0.0), repr=False)
    keypoints: tuple[tuple[float, float], ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        if self.detected_box.area == 0.0:
            self.detected_box = self.box

    @property
    def landmarks(self) -> tuple[tuple[float, float], ...]:
        """The keypoints in frame pixels, placed on the current (possibly predicted) box."""
        b = self.box
        return tuple((b.x + u * b.w, b.y + v * b.h) for u, v in self.keypoints)

    @property
    def active(self) -> bool:
        """Seen in the latest detection pass."""
        return self.missed == 0


class IoUTracker:
    """Greedy IoU matching of detections to tracks.

    Args:
        iou_threshold: Minimum IoU to continue a track.
        expiry_s: A track without a matching detection for this long is dropped.
        smoothing: EMA weight of the previous probabilities (0: none, 0.9: very smooth).
        max_tracks: Most tracks reported (largest faces win; up to twice as many are kept, so tentative
            tracks do not push confirmed ones out).
        min_hits: Consecutive detection passes that confirm a new track (1: report it at once).

    Raises:
        ConfigError: an argument is out of range.
    """

    def __init__(self, iou_threshold: float = 0.3, expiry_s: float = 1.0, smoothing: float = 0.0,
                 max_tracks: int = 16, min_hits: int = 1) -> None:
        if not 0.0 < iou_threshold <= 1.0:
            raise ConfigError(f"track_iou must be in (0, 1], got {iou_threshold}")
        if expiry_s < 0:
            raise ConfigError(f"track_expiry_s must be >= 0, got {expiry_s}")
        if not 0.0 <= smoothing < 1.0:
            raise ConfigError(f"smoothing must be in [0, 1), got {smoothing}")
        if max_tracks < 1:
            raise ConfigError(f"max_faces must be >= 1, got {max_tracks}")
        if min_hits < 1:
            raise ConfigError(f"track_min_hits must be >= 1, got {min_hits}")
        self.min_hits = int(min_hits)
        self.iou_threshold = float(iou_threshold)
        self.expiry_ns = int(expiry_s * 1e9)
        self.smoothing = float(smoothing)
        self.max_tracks = int(max_tracks)
        self._ids = itertools.count(1)
        self._tracks: list[Track] = []

    @property
    def tracks(self) -> list[Track]:
        """Live tracks, tentative ones included (a copy of the list)."""
        return list(self._tracks)

    def reset(self) -> None:
        """Forget every track (ids keep counting up)."""
        self._tracks = []

    def update(self, detections: Sequence[Detection], timestamp_ns: int) -> list[Track]:
        """Match a detection pass to the tracks, start new tracks, expire old ones.

        Args:
            detections: Detections of this frame in frame pixels (already filtered by size and score).
            timestamp_ns: Frame time.

        Returns:
            The confirmed tracks matched or started by this pass (largest first), at most ``max_tracks``.
        """
        self._expire(timestamp_ns)
        dets = sorted(detections, key=lambda d: -(d.w * d.h))
        boxes = [Box(d.x, d.y, d.w, d.h) for d in dets]
        pairs = sorted(((t.box.iou(b), ti, di) for ti, t in enumerate(self._tracks) for di, b in enumerate(boxes)),
                       reverse=True)
        used_t: set[int] = set()
        used_d: set[int] = set()
        for iou, ti, di in pairs:
            if iou < self.iou_threshold:
                break
            if ti in used_t or di in used_d:
                continue
            used_t.add(ti)
            used_d.add(di)
            self._match(self._tracks[ti], boxes[di], dets[di].score, timestamp_ns, _relative(dets[di]))
        for ti, t in enumerate(self._tracks):
            if ti not in used_t:
                t.missed += 1
                t.streak = 0
        for di, b in enumerate(boxes):
            if di not in used_d:
                self._tracks.append(Track(next(self._ids), b, float(dets[di].score), timestamp_ns, timestamp_ns,
                                          confirmed=self.min_hits <= 1, keypoints=_relative(dets[di])))
        # keep the largest active confirmed tracks, then the tentative ones, then those not seen this pass
        self._tracks.sort(key=lambda t: (t.missed, not t.confirmed, -t.box.area))
        del self._tracks[2 * self.max_tracks:]
        return [t for t in self._tracks if t.active and t.confirmed][: self.max_tracks]

    def predict(self, timestamp_ns: int) -> list[Track]:
        """Advance active tracks by their velocity (frames without detection); returns the confirmed ones."""
        self._expire(timestamp_ns)
        out = []
        for t in self._tracks:
            if not t.active:
                continue
            dt = max(0.0, (timestamp_ns - t.last_update_ns) / 1e9)
            if dt > 0 and any(t.velocity):
                vx, vy, vw, vh = t.velocity
                b = t.box
                t.box = Box(b.x + vx * dt, b.y + vy * dt, max(1.0, b.w + vw * dt), max(1.0, b.h + vh * dt))
            t.last_update_ns = timestamp_ns
            if t.confirmed:
                out.append(t)
        return out[: self.max_tracks]

    def smooth(self, track: Track, probs: Sequence[float]) -> tuple[float, ...]:
        """Blend new probabilities into the track's EMA and return the smoothed distribution."""
        p = np.asarray(probs, dtype=np.float64)
        if track.probs is None or self.smoothing <= 0.0 or track.probs.shape != p.shape:
            track.probs = p
        else:
            track.probs = self.smoothing * track.probs + (1.0 - self.smoothing) * p
        s = float(track.probs.sum())
        q = track.probs / s if s > 0 else track.probs
        return tuple(float(v) for v in q)

    def _match(self, t: Track, b: Box, score: float, ts: int,
               keypoints: tuple[tuple[float, float], ...] = ()) -> None:
        dt = (ts - t.last_seen_ns) / 1e9
        if dt > 0:
            a = t.detected_box  # where the last detection put it (predict() may have moved t.box)
            raw = ((b.x - a.x) / dt, (b.y - a.y) / dt, (b.w - a.w) / dt, (b.h - a.h) / dt)
            t.velocity = tuple(0.5 * o + 0.5 * n for o, n in zip(t.velocity, raw, strict=True))  # type: ignore[assignment]
        t.box = b
        t.detected_box = b
        t.keypoints = keypoints
        t.score = float(score)
        t.last_seen_ns = ts
        t.last_update_ns = ts
        t.hits += 1
        t.streak += 1
        t.confirmed = t.confirmed or t.streak >= self.min_hits
        t.missed = 0

    def _expire(self, ts: int) -> None:
        self._tracks = [t for t in self._tracks if ts - t.last_seen_ns <= self.expiry_ns]


def _relative(d: Detection) -> tuple[tuple[float, float], ...]:
    """A detection's keypoints as fractions of its box."""
    if not d.landmarks or d.w <= 0 or d.h <= 0:
        return ()
    return tuple(((x - d.x) / d.w, (y - d.y) / d.h) for x, y in d.landmarks)
