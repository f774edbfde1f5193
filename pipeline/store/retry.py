"""Retry with back-off: the one delay schedule, budget and jitter every retry loop of the pipeline uses.

A :class:`Backoff` says how long to wait after the n-th failure in a row (``first_s``, doubling, at most
``cap_s``, each wait shortened by up to ``jitter`` of itself at random so that workers that failed together do
not retry together) and when to give up: after ``attempts`` failures in a row, or when the next wait would end
more than ``budget_s`` seconds after the first attempt (whichever comes first). :class:`Attempts` is that count
for one operation; :func:`call` runs a function under it, retrying the errors the caller calls transient and
raising every other error at once.

Callers: :meth:`pipeline.store.storage.Store.retrying` (a time budget, ``$CXR_STORE_RETRY_S``) and the source
reads of :mod:`pipeline.ingest.remote` and :mod:`pipeline.ingest.remote_http` (failures in a row without progress).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    """A delay schedule and a budget. Without ``attempts`` and ``budget_s`` it retries for ever."""

    first_s: float
    cap_s: float
    attempts: int | None = None  # give up at this many failures in a row
    budget_s: float | None = None  # give up when the next wait would end later than this after the start
    jitter: float = 0.0  # each wait is shortened by a random fraction of itself, up to this (0 <= jitter <= 1)

    def __post_init__(self) -> None:
        if self.first_s < 0 or self.cap_s < 0 or not 0.0 <= self.jitter <= 1.0:
            raise ValueError(f"invalid back-off {self!r}: delays must be >= 0 and jitter within [0, 1]")
        if self.attempts is not None and self.attempts < 1:
            raise ValueError(f"invalid back-off {self!r}: attempts must be at least 1")

    def delay(self, failures: int, rand: Callable[[], float] = random.random) -> float:
        """The wait after the ``failures``-th failure in a row (1, 2, ...): ``first_s * 2**(failures-1)``,
        at most ``cap_s``, less up to ``jitter`` of it."""
        base = min(self.cap_s, self.first_s * 2.0 ** max(0, failures - 1))
        return base * (1.0 - self.jitter * rand()) if self.jitter else base


class Attempts:
    """The failures of one operation under a :class:`Backoff`: how long to wait next, or that the budget is spent."""

    def __init__(self, backoff: Backoff, clock: Callable[[], float] = time.monotonic) -> None:
        self.backoff, self.clock = backoff, clock
        self.started = clock()
        self.failures = 0  # in a row, since the start or the last :meth:`progressed`
        self.total = 0  # every failure of this operation

    def failed(self) -> float | None:
        """Count one failure; return the seconds to wait before the next attempt, or None to give up."""
        self.failures += 1
        self.total += 1
        limit = self.backoff.attempts
        if limit is not None and self.failures >= limit:
            return None
        delay = self.backoff.delay(self.failures)
        budget = self.backoff.budget_s
        if budget is not None and self.clock() + delay > self.started + budget:
            return None
        return delay

    def progressed(self) -> None:
        """The operation got further since its last failure: the next failure counts as the first in a row."""
        self.failures = 0


def call(
    fn: Callable[[], T],
    backoff: Backoff,
    transient: Callable[[Exception], bool],
    give_up: Callable[[Exception, Attempts], Exception],
    *,
    on_retry: Callable[[Exception, float], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Return ``fn()``, retrying it after each error that ``transient`` accepts, with ``backoff``'s waits.

    An error ``transient`` refuses is raised at once (retrying cannot help). When the budget is spent, the
    exception ``give_up(last error, attempts)`` returns is raised from the last error. ``on_retry(error, wait)``
    is told of every retry (for a log line).
    """
    attempts = Attempts(backoff)
    while True:
        try:
            return fn()
        except Exception as exc:
            if not transient(exc):
                raise
            wait = attempts.failed()
            if wait is None:
                raise give_up(exc, attempts) from exc
            if on_retry is not None:
                on_retry(exc, wait)
            sleep(wait)
