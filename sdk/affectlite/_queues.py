"""A bounded drop-oldest queue: freshness over completeness, drops counted."""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class Closed(Exception):
    """Raised by :meth:`DropOldestQueue.get` when the queue is closed and empty."""


class DropOldestQueue(Generic[T]):
    """Thread-safe bounded queue; ``put`` never blocks: when full, the oldest item is dropped and counted."""

    def __init__(self, maxsize: int, name: str = "") -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self.name = name
        self.maxsize = maxsize
        self._items: deque[T] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self.dropped = 0
        self.put_count = 0

    def put(self, item: T) -> bool:
        """Add an item; returns False when an older item was dropped to make room (or the queue is closed)."""
        with self._cond:
            if self._closed:
                return False
            dropped = False
            while len(self._items) >= self.maxsize:
                self._items.popleft()
                self.dropped += 1
                dropped = True
            self._items.append(item)
            self.put_count += 1
            self._cond.notify()
            return not dropped

    def put_wait(self, item: T, stop: threading.Event | None = None, poll_s: float = 0.1) -> bool:
        """Add an item, waiting for room instead of dropping (backpressure for recorded sources).

        Returns:
            True once added; False when the queue was closed or ``stop`` was set while waiting.
        """
        with self._cond:
            while len(self._items) >= self.maxsize:
                if self._closed or (stop is not None and stop.is_set()):
                    return False
                self._cond.wait(poll_s)
            if self._closed:
                return False
            self._items.append(item)
            self.put_count += 1
            self._cond.notify_all()
            return True

    def get(self, timeout: float | None = None) -> T | None:
        """Oldest item, or ``None`` on timeout.

        Raises:
            Closed: the queue is closed and empty.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._items:
                if self._closed:
                    raise Closed(self.name)
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining)
            item = self._items.popleft()
            self._cond.notify_all()  # wake a put_wait() waiting for room
            return item

    def close(self, *, discard: bool = False) -> None:
        """Refuse further puts; consumers drain what is left (or nothing, with ``discard``) then get Closed."""
        with self._cond:
            self._closed = True
            if discard:
                self._items.clear()
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)
