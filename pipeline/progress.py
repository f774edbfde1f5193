"""Throttled progress reporting: log lines in the library, an optional live listener for the CLI.

Library code calls :class:`Progress`; it logs ``done/total`` and items/s every few seconds.
The CLI installs a listener with :func:`set_listener` to draw a bar on a terminal; nothing
in ``pipeline/`` prints.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

Listener = Callable[["ProgressEvent"], None]
_LISTENER: list[Listener] = []  # at most one: the CLI's


@dataclass(frozen=True)
class ProgressEvent:
    """A progress snapshot handed to the CLI's listener."""

    stage: str
    done: int
    total: int | None
    rate: float
    finished: bool = False


def set_listener(listener: Listener | None) -> None:
    """Install (or remove, with None) the process-wide progress listener."""
    _LISTENER.clear()
    if listener is not None:
        _LISTENER.append(listener)


class Progress:
    """Counts work done in one stage, logs throttled lines and feeds the listener."""

    def __init__(self, stage: str, total: int | None, logger: logging.Logger, every: float = 5.0) -> None:
        self.stage, self.total, self.logger, self.every = stage, total, logger, every
        self.done = 0
        self._start = self._last_log = time.monotonic()
        self._last_event = 0.0
        self._lock = threading.Lock()

    def rate(self) -> float:
        """Items per second so far."""
        elapsed = time.monotonic() - self._start
        return self.done / elapsed if elapsed > 0 else 0.0

    def advance(self, n: int = 1) -> None:
        """Record ``n`` more items done."""
        with self._lock:
            self.done += n
            now = time.monotonic()
            if now - self._last_log >= self.every:
                self._last_log = now
                self.logger.info("%s: %s/%s done, %.1f/s", self.stage, self.done, self.total or "?", self.rate())
            if _LISTENER and now - self._last_event >= 0.1:
                self._last_event = now
                _LISTENER[0](ProgressEvent(self.stage, self.done, self.total, self.rate()))

    def finish(self) -> None:
        """Log the final count and tell the listener the stage ended."""
        self.logger.info(
            "%s: %s done in %.1f s (%.1f/s)", self.stage, self.done, time.monotonic() - self._start, self.rate()
        )
        if _LISTENER:
            _LISTENER[0](ProgressEvent(self.stage, self.done, self.total, self.rate(), finished=True))
