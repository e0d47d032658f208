"""Offline analysis of recordings: the face and voice streams merged in media-time order.

Used by :class:`affectlite.EmotionPipeline` when every source is a recording (``recorded = True``, e.g.
:class:`affectlite.media.MediaCamera`). The face and voice threads run in parallel and deliver their events
in their own media-time order; the dispatch thread hands them to the fusion in one global media-time order,
with the media time as "now", so a run gives the same results however the threads were scheduled: fast or
paced in real time, on a busy or an idle machine.

A stream's events must arrive in non-decreasing key order; a *tick* (an event without payload) says "this
stream has reached this time" so the other stream need not wait for the next result. An event is released
once every stream that has not ended has an event waiting (its key is then the smallest that can come).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")

__all__ = ["CueSchedule", "MediaTimeMerger"]


class MediaTimeMerger(Generic[T]):
    """K-way merge by media time of streams that each deliver in order.

    Args:
        streams: Stream names, in tie-break order (an earlier stream's event goes first at an equal key).
    """

    def __init__(self, streams: Sequence[str]) -> None:
        self._order = {s: i for i, s in enumerate(streams)}
        self._pending: dict[str, deque[tuple[int, T | None]]] = {s: deque() for s in streams}
        self._ended: set[str] = set()
        self.last_key = 0

    def add(self, stream: str, key: int, item: T | None) -> None:
        """Queue ``item`` (``None``: a tick) of ``stream`` at media time ``key`` (ns)."""
        q = self._pending[stream]
        if q and key < q[-1][0]:  # a stream that goes back in time (it must not): keep the order it gave
            key = q[-1][0]
        q.append((key, item))

    def end(self, stream: str) -> None:
        """``stream`` delivers nothing more."""
        self._ended.add(stream)

    @property
    def finished(self) -> bool:
        """Every stream ended and every event was released."""
        return len(self._ended) == len(self._pending) and not any(self._pending.values())

    def ready(self) -> Iterator[tuple[int, T]]:
        """Release, in media-time order, every event that no later event can precede (ticks are consumed)."""
        while True:
            best: str | None = None
            for s, q in self._pending.items():
                if not q:
                    if s not in self._ended:
                        return  # this stream may still deliver something earlier
                    continue
                if best is None or (q[0][0], self._order[s]) < (self._pending[best][0][0], self._order[best]):
                    best = s
            if best is None:
                return
            key, item = self._pending[best].popleft()
            self.last_key = max(self.last_key, key)
            if item is not None:
                yield key, item


class CueSchedule:
    """Timed texts (subtitle cues) released when media time reaches them.

    Args:
        cues: ``(start_ns, text)`` pairs, any order.
    """

    def __init__(self, cues: Iterable[tuple[int, str]]) -> None:
        self._cues = deque(sorted(((int(t), str(s)) for t, s in cues), key=lambda c: c[0]))

    def due(self, now_ns: int | None) -> Iterator[tuple[int, str]]:
        """Pop the cues that start at or before ``now_ns`` (``None``: all that are left)."""
        while self._cues and (now_ns is None or self._cues[0][0] <= now_ns):
            yield self._cues.popleft()

    def __len__(self) -> int:
        return len(self._cues)
