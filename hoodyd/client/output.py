"""What the command line prints: aligned tables, and colour only on a terminal that wants it
(stdout is a TTY and `NO_COLOR` is unset, https://no-color.org)."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from typing import Any, TextIO

import msgspec

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_STATE_COLOURS = {
    "RUNNING": "32",  # green
    "STARTING": "33",  # yellow
    "STOPPING": "33",
    "BACKOFF": "31",  # red
    "FATAL": "31",
    "EXITED": "31",
    "UNKNOWN": "31",
    "STOPPED": "2",  # dim
    "disabled": "2",
}


def use_colour(stream: TextIO | None = None) -> bool:
    stream = stream or sys.stdout
    return "NO_COLOR" not in os.environ and stream.isatty()


def paint(text: str, code: str | None, colour: bool) -> str:
    return f"\x1b[{code}m{text}\x1b[0m" if colour and code else text


def state(text: str, colour: bool) -> str:
    return paint(text, _STATE_COLOURS.get(text), colour)


def bold(text: str, colour: bool) -> str:
    return paint(text, "1", colour)


def visible_width(text: str) -> int:
    return len(_ANSI.sub("", text))


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], colour: bool) -> str:
    """Columns padded to their widest cell (colour codes do not count); the last column is
    not padded, so no line ends in spaces."""
    cells = [[bold(h, colour) for h in headers], *[list(row) for row in rows]]
    widths = [max(visible_width(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        padded = [
            cell + " " * (widths[i] - visible_width(cell)) if i < len(row) - 1 else cell
            for i, cell in enumerate(row)
        ]
        lines.append("  ".join(padded).rstrip())
    return "\n".join(lines)


def print_json(value: Any) -> None:
    """The API's JSON as it came, indented for reading."""
    sys.stdout.write(msgspec.json.format(msgspec.json.encode(value), indent=2).decode() + "\n")
