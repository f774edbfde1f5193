"""Read a metadata file's bytes: decode them, cut them into CSV cells or split-list lines, quote them in messages.

Only unreadable bytes are errors here (:class:`~pipeline.errors.UnreadableFileError`, naming the file and what
to do): binary data, text that is not UTF-8, an empty file, CSV that the ``csv`` module cannot parse. A UTF-8
BOM, CRLF line ends, blank lines and surrounding whitespace are tolerated. What the cells mean is decided
later (:mod:`pipeline.curate.variants` for the header, :mod:`pipeline.curate.normalise` for the values).

Messages that list columns or values show the first ``MAX_LISTED`` of them, then "and N more" (:func:`brief`),
each value cut at ``MAX_VALUE_CHARS`` (:func:`short`): a hostile file cannot make an error message huge.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any

from pipeline.errors import UnreadableFileError

__all__ = [
    "MAX_LISTED",
    "MAX_VALUE_CHARS",
    "RawTable",
    "brief",
    "decode_text",
    "load_split_list",
    "read_csv",
    "short",
    "split_list_entries",
]

#: How many columns or values a message lists before "and N more"; how long a value shown in a message may be.
MAX_LISTED = 10
MAX_VALUE_CHARS = 80
#: How far into a file NUL bytes are looked for (a text metadata file has none).
_BINARY_PROBE = 65536


def short(value: Any, width: int = MAX_VALUE_CHARS) -> Any:
    """``value`` fit for a message: text longer than ``width`` cut (saying how long it was), a list or tuple
    to its first ``MAX_LISTED`` items (saying how many more)."""
    if isinstance(value, str) and len(value) > width:
        return f"{value[:width]}... ({len(value):,} chars)"
    if isinstance(value, list | tuple):
        items = [short(item, width) for item in value[:MAX_LISTED]]
        return [*items, f"... and {len(value) - MAX_LISTED:,} more"] if len(value) > MAX_LISTED else items
    return value


def brief(items: list[Any] | tuple[Any, ...], limit: int = MAX_LISTED) -> str:
    """``['a', 'b'] and 5 more``: the first ``limit`` items (each cut by :func:`short`), then how many more."""
    shown = "[" + ", ".join(repr(short(item)) for item in items[:limit]) + "]"
    return shown + (f" and {len(items) - limit:,} more" if len(items) > limit else "")


def decode_text(data: bytes, source: str) -> str:
    """Decode metadata bytes as UTF-8 (a BOM is dropped).

    Raises:
        UnreadableFileError: if the bytes are empty, binary or not UTF-8.
    """
    if b"\x00" in data[:_BINARY_PROBE]:
        raise UnreadableFileError(f"{source}: binary data (NUL bytes), not a text metadata file; "
                                  "pass the CSV/TXT file itself, not an archive or an image")  # fmt: skip
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UnreadableFileError(f"{source}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
                                  f"{exc.start}); re-export the file as UTF-8") from exc  # fmt: skip
    if not text.strip():
        raise UnreadableFileError(f"{source}: the file is empty; download it again")
    return text


@dataclass
class RawTable:
    """A CSV file as text cells: the header's cells, each non-blank row's cells and its physical line (1-based)."""

    header: list[str]
    rows: list[list[str]]
    lines: list[int]


def read_csv(data: bytes, source: str) -> RawTable:
    """Cut a CSV file into cells; blank lines are skipped, the first non-blank line is the header.

    Raises:
        UnreadableFileError: if the file is empty, binary, not UTF-8 or not CSV the ``csv`` module can read.
    """
    reader = csv.reader(io.StringIO(decode_text(data, source), newline=""))
    header: list[str] | None = None
    rows: list[list[str]] = []
    lines: list[int] = []
    try:
        for cells in reader:
            if not "".join(cells).strip():
                continue
            if header is None:
                header = cells
            else:
                rows.append(cells)
                lines.append(reader.line_num)
    except csv.Error as exc:
        message = f"{source}: not a readable CSV file near line {reader.line_num}: {exc}"
        raise UnreadableFileError(message) from exc
    assert header is not None  # decode_text rejects blank files
    return RawTable(header, rows, lines)


def split_list_entries(data: bytes, source: str) -> list[tuple[int, str]]:
    """Return ``(line number, name)`` for each non-blank line of a split list, whitespace stripped.

    Raises:
        UnreadableFileError: if the file is empty, binary or not UTF-8.
    """
    text = decode_text(data, source)
    return [(number, line.strip()) for number, line in enumerate(text.splitlines(), 1) if line.strip()]


def load_split_list(data: bytes, source: str) -> list[str]:
    """Load a split list (``train_val_list.txt`` / ``test_list.txt``): one image name a line.

    CRLF line ends, blank lines and surrounding whitespace are tolerated.

    Raises:
        UnreadableFileError: if the file is empty, binary or not UTF-8.
    """
    return [name for _, name in split_list_entries(data, source)]
