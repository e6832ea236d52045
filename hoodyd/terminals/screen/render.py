"""What a viewer gets of the grid: the snapshot's types, lines as text with their SGR
colours, and the reverse-video runs TUIs mark their selection with."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from hoodyd.terminals.screen.grid import ScreenLine, Style


@dataclass(frozen=True, slots=True)
class CursorState:
    row: int
    col: int
    visible: bool


@dataclass(frozen=True, slots=True)
class Highlight:
    """A run of reverse-video cells: how TUIs mark the selected item."""

    row: int
    col: int
    length: int  # cells
    text: str


@dataclass(frozen=True, slots=True)
class Snapshot:
    lines: list[str]
    colored_lines: list[str] | None
    highlights: list[Highlight] | None
    cursor: CursorState
    title: str
    alt_screen: bool
    cols: int
    rows: int
    update_seq: int
    scroll_offset: int
    scrollback_count: int


_SGR_COLORS = {
    "black": 0,
    "red": 1,
    "green": 2,
    "brown": 3,
    "blue": 4,
    "magenta": 5,
    "cyan": 6,
    "white": 7,
}
_HEX_COLOR = re.compile("[0-9a-fA-F]{6}")


def _color_sgr(color: str, *, background: bool) -> list[str]:
    if color == "default":
        return []
    base = 40 if background else 30
    name = color.removeprefix("bright").replace("bfight", "")  # pyte spells one "bfight"
    if name in _SGR_COLORS:
        return [str(base + _SGR_COLORS[name] + (60 if color != name else 0))]
    if _HEX_COLOR.fullmatch(color):
        red, green, blue = (int(color[i : i + 2], 16) for i in (0, 2, 4))
        return [str(base + 8), "2", str(red), str(green), str(blue)]
    return []


@lru_cache(maxsize=1024)
def _sgr(style: Style) -> str:
    params = ["0"]
    for flag, code in (
        (style.bold, "1"),
        (style.italics, "3"),
        (style.underscore, "4"),
        (style.blink, "5"),
        (style.reverse, "7"),
        (style.strikethrough, "9"),
    ):
        if flag:
            params.append(code)
    params += _color_sgr(style.fg, background=False)
    params += _color_sgr(style.bg, background=True)
    return "\x1b[" + ";".join(params) + "m"


def colored_text(line: ScreenLine) -> str:
    if not line.styles:
        return line.text.rstrip(" ")
    changes = dict(line.styles)
    parts: list[str] = []
    previous = -1
    for index, char in enumerate(line.text):
        col = line.start_col(index)
        if col != previous and col in changes:
            parts.append(_sgr(changes[col]))
        previous = col
        parts.append(char)
    parts.append("\x1b[0m")
    return "".join(parts)


def highlights_of(line: ScreenLine, row: int) -> list[Highlight]:
    """Runs of reverse-video cells in `line`."""
    spans: list[Highlight] = []
    if not any(style.reverse for _, style in line.styles):
        return spans
    bounds = [col for col, _ in line.styles[1:]] + [line.width]
    for (col, style), end in zip(line.styles, bounds, strict=True):
        if not style.reverse or end <= col:
            continue
        if spans and spans[-1].col + spans[-1].length == col:
            col = spans[-1].col  # adjacent reverse runs that differ in colour: one span
            spans.pop()
        chars = [char for index, char in enumerate(line.text) if col <= line.start_col(index) < end]
        spans.append(Highlight(row=row, col=col, length=end - col, text="".join(chars)))
    return spans
