"""Fair, prioritised parallelism: how many requests are in flight, and whose go first."""

from __future__ import annotations

import concurrent.futures
import heapq
import itertools
import threading
from collections.abc import Iterator
from contextlib import contextmanager

# Priority of a request that other checks are waiting for (a shared exchange): served first.
URGENT = -1


class Gate:
    """At most `slots` requests in flight; waiting requests are served lowest priority value first.

    Checks run in more threads than there are slots, so a check blocked on a shared exchange never
    holds a slot, and the longest checks (lowest values) never queue behind short ones.
    """

    def __init__(self, slots: int) -> None:
        self._slots = max(1, slots)
        self._free = self._slots
        self._waiting: list[tuple[int, int]] = []
        self._cond = threading.Condition()
        self._seq = itertools.count()

    @property
    def slots(self) -> int:
        return self._slots

    def resize(self, slots: int) -> None:
        """Allow `slots` requests in flight from now on; requests already in flight finish."""
        with self._cond:
            slots = max(1, slots)
            self._free += slots - self._slots
            self._slots = slots
            self._cond.notify_all()

    @contextmanager
    def slot(self, priority: int) -> Iterator[None]:
        with self._cond:
            ticket = (priority, next(self._seq))
            heapq.heappush(self._waiting, ticket)
            while self._free <= 0 or self._waiting[0] != ticket:
                self._cond.wait()
            heapq.heappop(self._waiting)
            self._free -= 1
            self._cond.notify_all()
        try:
            yield
        finally:
            with self._cond:
                self._free += 1
                self._cond.notify_all()

    @contextmanager
    def together(self, count: int, priority: int) -> Iterator[Held]:
        """`count` slots at once, for requests that must be in flight together (the load checks): taken
        when that many are free and no request of a lower priority value waits; requests of a higher
        value wait behind it. Raises TooFewSlots when the gate holds fewer (now, or after being lowered
        while this waited)."""
        with self._cond:
            ticket = (priority, next(self._seq))
            heapq.heappush(self._waiting, ticket)
            while self._free < count or self._waiting[0] != ticket:
                if self._slots < count:
                    self._waiting.remove(ticket)
                    heapq.heapify(self._waiting)
                    self._cond.notify_all()
                    raise TooFewSlots(f"{count} requests must be in flight together; the run allows {self._slots}")
                self._cond.wait()
            heapq.heappop(self._waiting)
            self._free -= count
            self._cond.notify_all()
        held = Held(count)
        try:
            yield held
        finally:
            held.senders.shutdown(wait=True)
            with self._cond:
                self._free += count
                self._cond.notify_all()


class TooFewSlots(Exception):
    """The gate holds fewer slots than requests that must be in flight together (the run lowered them)."""


class Held:
    """Slots taken together (`Gate.together`): each request sent with them takes one, never waiting
    behind another check's requests, and is sent from threads of its own (the run's shared senders may
    all be waiting for the gate)."""

    def __init__(self, count: int) -> None:
        self._slots = threading.BoundedSemaphore(count)
        self.senders = concurrent.futures.ThreadPoolExecutor(count, thread_name_prefix="send-together")

    @contextmanager
    def slot(self) -> Iterator[None]:
        with self._slots:
            yield


class _Urgency(threading.local):
    urgent: bool = False


_URGENCY = _Urgency()


@contextmanager
def urgent() -> Iterator[None]:
    """Requests sent inside this block jump the queue (other checks are waiting for them)."""
    previous, _URGENCY.urgent = _URGENCY.urgent, True
    try:
        yield
    finally:
        _URGENCY.urgent = previous


def current_priority(default: int) -> int:
    """The priority of a request this thread sends now: `default`, or URGENT inside `urgent()`."""
    return URGENT if _URGENCY.urgent else default
