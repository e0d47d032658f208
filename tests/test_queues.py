"""The bounded queues between the pipeline's threads."""

from __future__ import annotations

import threading
import time

import pytest

from affectlite._queues import Closed, DropOldestQueue


def test_put_drops_the_oldest_and_counts() -> None:
    q: DropOldestQueue[int] = DropOldestQueue(2)
    assert q.put(1) and q.put(2)
    assert q.put(3) is False
    assert q.dropped == 1
    assert [q.get(0), q.get(0)] == [2, 3]


def test_put_wait_blocks_until_a_consumer_makes_room() -> None:
    q: DropOldestQueue[int] = DropOldestQueue(1)
    q.put_wait(1)
    done = threading.Event()

    def producer() -> None:
        q.put_wait(2)
        done.set()

    t = threading.Thread(target=producer)
    t.start()
    assert not done.wait(0.2)  # full: the producer waits, nothing is dropped
    assert q.get(1) == 1
    assert done.wait(2)
    assert q.get(1) == 2
    assert q.dropped == 0
    t.join()


@pytest.mark.parametrize("how", ["stop", "close"])
def test_put_wait_gives_up_on_stop_or_close(how: str) -> None:
    q: DropOldestQueue[int] = DropOldestQueue(1)
    q.put(1)
    stop = threading.Event()
    result: list[bool] = []
    t = threading.Thread(target=lambda: result.append(q.put_wait(2, stop, poll_s=0.02)))
    t.start()
    time.sleep(0.1)
    stop.set() if how == "stop" else q.close()
    t.join(2)
    assert not t.is_alive()
    assert result == [False]
    assert q.get(0) == 1
    if how == "close":
        with pytest.raises(Closed):
            q.get(0)
