"""The live progress line ``cxr`` draws on a terminal: the only place in ``pipeline`` that draws one.

Library code counts with :class:`pipeline.progress.Progress` and logs; the CLI installs :class:`TerminalProgress`
as the listener when stderr is a terminal.
"""

from __future__ import annotations

from typing import TextIO

from pipeline import progress

BAR_WIDTH = 30


class TerminalProgress:
    """Draws one live progress line on a terminal (stderr)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def __call__(self, event: progress.ProgressEvent) -> None:
        if event.total:
            filled = int(BAR_WIDTH * min(event.done, event.total) / event.total)
            bar = f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {event.done}/{event.total}"
        else:
            bar = f"{event.done}"
        self.stream.write(f"\r{event.stage:<28.28} {bar} {event.rate:7.1f}/s")
        if event.finished:
            self.stream.write("\n")
        self.stream.flush()
