"""A model of what a terminal shows, fed with a session's PTY output.

`VirtualScreen` turns the bytes a program writes into the grid a person would see: text,
colours, reverse-video highlights, the cursor, the window title, the alternate screen and
the scrollback, plus the modes the input side needs to encode keys and mouse events the
way the program asked for (application cursor keys, mouse reporting, bracketed paste).

pyte does the VT parsing and keeps the live grid; this package fixes what a faithful xterm
model needs on top of it and guarantees that `feed` never raises, whatever bytes arrive.
It splits as tmux splits its screen: `parser` (bytes to screen operations, bounded and
never raising), `grid` (the live cells, the alternate screen, the modes and the compact
scrollback), `render` (snapshots: text, SGR colours, highlights) and `virtual` (the emulator
that joins them). Nothing outside this package touches pyte.

It runs in a terminal's holder process (`holder.screen`), so it imports the standard
library and pyte only; its results are plain dataclasses.
"""

from __future__ import annotations

from hoodyd.terminals.screen.grid import (
    DEFAULT_SCROLLBACK_LINES,
    MouseEncoding,
    MouseTracking,
    ScreenLine,
    char_width,
)
from hoodyd.terminals.screen.render import CursorState, Highlight, Snapshot
from hoodyd.terminals.screen.virtual import VirtualScreen

__all__ = [
    "DEFAULT_SCROLLBACK_LINES",
    "CursorState",
    "Highlight",
    "MouseEncoding",
    "MouseTracking",
    "ScreenLine",
    "Snapshot",
    "VirtualScreen",
    "char_width",
]
