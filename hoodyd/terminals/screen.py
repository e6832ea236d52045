"""A model of what a terminal shows, fed with a session's PTY output.

`VirtualScreen` turns the bytes a program writes into the grid a person would see: text,
colours, reverse-video highlights, the cursor, the window title, the alternate screen and
the scrollback, plus the modes the input side needs to encode keys and mouse events the
way the program asked for (application cursor keys, mouse reporting, bracketed paste).

pyte does the VT parsing and keeps the live grid; this module fixes what a faithful xterm
model needs on top of it (alternate screen, mouse and keypad modes, DEC line drawing in
UTF-8, DCS/APC strings, REP/SU/SD, a compact scrollback) and guarantees that `feed` never
raises, whatever bytes arrive. Nothing outside this module touches pyte.

It runs in a terminal's holder process (`holder.screen`), so it imports the standard
library and pyte only; its results are plain dataclasses.
"""

from __future__ import annotations

import codecs
import contextlib
import copy
import operator
import re
import sys
import time
from collections import defaultdict, deque
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar, Literal, NamedTuple

import pyte
from pyte import charsets as pyte_charsets
from pyte import control as ctrl
from pyte import modes as pyte_modes
from pyte.screens import Char, StaticDefaultDict
from pyte.screens import wcwidth as _cached_width  # wcwidth behind an LRU cache

MouseTracking = Literal["x10", "normal", "button", "any"]
MouseEncoding = Literal["default", "utf8", "sgr", "urxvt"]

DEFAULT_SCROLLBACK_LINES = 10_000

_TRACKING_MODES: dict[int, MouseTracking] = {9: "x10", 1000: "normal", 1002: "button", 1003: "any"}
_ENCODING_MODES: dict[int, MouseEncoding] = {1005: "utf8", 1006: "sgr", 1015: "urxvt"}
_ALT_SCREEN_MODES = (47, 1047, 1049)
_KEYPAD_MODE = 66  # DECNKM: the same switch as ESC = / ESC >
# Private modes pyte stores in `mode` (shifted << 5); anything else is dropped so that a
# stray mode number can never alias one of these after the shift.
_STORED_PRIVATE_MODES = frozenset({1, 5, 6, 7, 25, 2004})
_STORED_ANSI_MODES = frozenset({4, 20})  # IRM, LNM
_DECCKM = 1 << 5
_BRACKETED_PASTE = 2004 << 5

_MAX_CSI_PARAMS = 32
_MAX_PARAM_DIGITS = 6
_MAX_OSC_CHARS = 4096
_MAX_CELL_CODEPOINTS = 8  # combining marks piled on one cell beyond this are dropped

# Rough CPython sizes, for the global memory cap: a live cell is a Char namedtuple plus its
# dict slot; a scrollback line is a compact `ScreenLine`.
_BYTES_PER_LIVE_CELL = 200
_BYTES_PER_LINE_OVERHEAD = 200


def char_width(char: str) -> int:
    """Cells one code point takes: 1, 2 (CJK, emoji), 0 (combining) or -1 (unprintable)."""
    if " " <= char <= "~":
        return 1
    return _cached_width(char)


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


class _Style(NamedTuple):
    """A cell's attributes without its text (pyte's Char with `data` dropped)."""

    fg: str
    bg: str
    bold: bool
    italics: bool
    underscore: bool
    strikethrough: bool
    reverse: bool
    blink: bool


_DEFAULT_STYLE = _Style("default", "default", False, False, False, False, False, False)
_DEFAULT_STYLE_KEY: tuple[Any, ...] = tuple(_DEFAULT_STYLE)
_styles: dict[tuple[Any, ...], _Style] = {_DEFAULT_STYLE_KEY: _DEFAULT_STYLE}


def _style_of(key: tuple[Any, ...]) -> _Style:
    """The interned style for a Char's attributes (`cell[1:]`): lines share them."""
    style = _styles.get(key)
    if style is None:
        style = _styles.setdefault(key, _Style(*key))
    return style


class ScreenLine:
    """One rendered line: its text plus where each code point sits on the grid.

    `starts[i]` is the cell column of the cell that code point `i` belongs to (a wide
    character spans two cells, combining marks share their base's cell); `None` means every
    code point is one cell, so `starts[i] == i`. `styles` lists `(column, style)` where the
    style changes. Trailing blank default-style cells are not kept.
    """

    __slots__ = ("starts", "styles", "text", "width")

    def __init__(
        self,
        text: str,
        starts: tuple[int, ...] | None,
        width: int,
        styles: tuple[tuple[int, _Style], ...],
    ) -> None:
        self.text = text
        self.starts = starts
        self.width = width  # cells covered by `text`
        self.styles = styles

    def start_col(self, index: int) -> int:
        """Cell column where code point `index` of `text` starts."""
        return index if self.starts is None else self.starts[index]

    def end_col(self, index: int) -> int:
        """Cell column just past the cell holding code point `index`."""
        if self.starts is None:
            return index + 1
        start = self.starts[index]
        for following in self.starts[index + 1 :]:
            if following != start:
                return following
        return self.width

    def estimated_bytes(self) -> int:
        starts = 0 if self.starts is None else 8 * len(self.starts) + 56
        return _BYTES_PER_LINE_OVERHEAD + sys.getsizeof(self.text) + starts + 72 * len(self.styles)


_EMPTY_LINE = ScreenLine("", None, 0, ())


_cell_text = operator.itemgetter(0)
_cell_style = operator.itemgetter(1, 2, 3, 4, 5, 6, 7, 8)


def _render_cells(row: Any, cols: int) -> ScreenLine:
    """Compact a pyte line (a column -> Char mapping) into a `ScreenLine`."""
    if not row:
        return _EMPTY_LINE
    default = _DEFAULT_STYLE_KEY
    last = -1
    for x, cell in row.items():
        if last < x < cols and (cell[0] not in (" ", "") or cell[1:] != default):
            last = x
    if last < 0:
        return _EMPTY_LINE
    get, blank = row.get, row.default
    cells = [get(x, blank) for x in range(last + 1)]
    text = "".join(map(_cell_text, cells))
    if len(text) == last + 1 and text.isascii():
        # The common line: one cell per character. One style for all is cheap to see.
        keys = list(map(_cell_style, cells))
        if keys.count(keys[0]) == len(keys):
            single = () if keys[0] == default else ((0, _style_of(keys[0])),)
            return ScreenLine(text, None, last + 1, single)
    parts: list[str] = []
    starts: list[int] = []
    styles: list[tuple[int, _Style]] = []
    identity = True
    current = default
    covered = 0  # first column not covered by the previous cell (a wide char covers two)
    for x, cell in enumerate(cells):
        data = cell[0]
        if data == "":
            if x < covered:
                continue  # right half of a wide character
            data = " "  # a stub whose wide character was overwritten
        key = cell[1:]
        if key != current:
            styles.append((x, _style_of(key)))
            current = key
        parts.append(data)
        if len(data) == 1 and " " <= data <= "~":
            starts.append(x)
            covered = x + 1
            continue
        covered = x + (2 if char_width(data[0]) == 2 else 1)
        identity = False
        starts.extend([x] * len(data))
    text = "".join(parts)
    width = min(max(covered, last + 1), cols)
    return ScreenLine(text, None if identity else tuple(starts), width, tuple(styles))


_Buffer = dict[int, StaticDefaultDict[int, Char]]


def _new_buffer(screen: pyte.Screen) -> _Buffer:
    return defaultdict(lambda: StaticDefaultDict[int, Char](screen.default_char))


class _Savepoint(NamedTuple):
    cursor: Any
    g0_charset: str
    g1_charset: str
    charset: int
    origin: bool
    wrap: bool


class _Screen(pyte.Screen):
    """pyte's screen with the xterm behaviour hoodyd relies on (see the module docstring)."""

    def __init__(self, columns: int, lines: int, scrollback_lines: int) -> None:
        self.scrollback: deque[ScreenLine] = deque(maxlen=max(0, scrollback_lines))
        self.scrollback_bytes = 0
        self.scrolled = False  # lines left the top of the main screen since the last feed
        self.alt_screen = False
        self.main_buffer: _Buffer | None = None
        self.saved: dict[bool, _Savepoint | None] = {False: None, True: None}
        self.application_keypad = False
        self.mouse_tracking: MouseTracking | None = None
        self.mouse_encoding: MouseEncoding = "default"
        self.last_char = ""
        super().__init__(columns, lines)

    # --- scrollback -------------------------------------------------------------------

    def push_scrollback(self, line: Any) -> None:
        self.scrolled = True
        if self.scrollback.maxlen == 0:
            return
        if len(self.scrollback) == self.scrollback.maxlen:
            self.scrollback_bytes -= self.scrollback[0].estimated_bytes()
        rendered = _render_cells(line, self.columns)
        self.scrollback.append(rendered)
        self.scrollback_bytes += rendered.estimated_bytes()

    def clear_scrollback(self) -> None:
        self.scrollback.clear()
        self.scrollback_bytes = 0

    def index(self) -> None:
        top, bottom = self.margins or (0, self.lines - 1)
        if self.cursor.y == bottom:
            # Like xterm: only lines scrolled off the very top of the main screen are kept.
            if top == 0 and not self.alt_screen:
                self.push_scrollback(self.buffer.get(top))
            else:
                self.scrolled = True
        super().index()

    def erase_in_display(self, how: int = 0, *args: Any, **kwargs: Any) -> None:
        if how == 3:
            self.clear_scrollback()
            self.scrolled = True
        super().erase_in_display(how if how in (0, 1, 2, 3) else 0)

    # --- drawing ----------------------------------------------------------------------

    def draw(self, data: str) -> None:
        charset = self.g1_charset if self.charset else self.g0_charset
        if charset is not pyte_charsets.LAT1_MAP:
            data = data.translate(charset)
        cols = self.columns
        cursor = self.cursor
        autowrap = pyte_modes.DECAWM in self.mode
        insert = pyte_modes.IRM in self.mode
        make = tuple.__new__
        tail = tuple(cursor.attrs[1:])
        if data.isascii() and not insert:
            self._draw_ascii(data, tail, autowrap)
            return
        last_char = ""
        for char in data:
            width = char_width(char)
            if width < 0:
                continue
            if width == 0:
                self._combine(char)
                continue
            if cursor.x >= cols or (width == 2 and cursor.x == cols - 1):
                if autowrap:
                    self.dirty.add(cursor.y)
                    cursor.x = 0
                    self.index()
                else:
                    cursor.x = max(0, cols - width)
            if insert:
                self.insert_characters(width)
            line = self.buffer[cursor.y]
            x = cursor.x
            old = line.get(x)
            if old is not None and (old[0] == "" or old[0] > "~"):
                self._split_wide_at(line, x)
            line[x] = make(Char, (char, *tail))
            if width == 2 and x + 1 < cols:
                self._split_wide_at(line, x + 1)
                line[x + 1] = make(Char, ("", *tail))
            cursor.x = min(x + width, cols)
            last_char = char
        if last_char:
            self.last_char = last_char
        self.dirty.add(cursor.y)

    def _draw_ascii(self, data: str, tail: tuple[Any, ...], autowrap: bool) -> None:
        """`draw` for printable ASCII (most output): whole runs per line, no width lookups."""
        cols = self.columns
        cursor = self.cursor
        make = tuple.__new__
        pos, end = 0, len(data)
        while pos < end:
            if cursor.x >= cols:
                if not autowrap:
                    cursor.x = cols - 1
                    self.buffer[cursor.y][cursor.x] = make(Char, (data[-1], *tail))
                    cursor.x = cols
                    break
                self.dirty.add(cursor.y)
                cursor.x = 0
                self.index()
            line = self.buffer[cursor.y]
            x = cursor.x
            count = min(end - pos, cols - x)
            first, last = line.get(x), line.get(x + count - 1)
            if first is not None and first[0] == "":
                self._split_wide_at(line, x)
            if last is not None and last[0] > "~":
                self._split_wide_at(line, x + count - 1)
            cells = [make(Char, (char, *tail)) for char in data[pos : pos + count]]
            line.update(zip(range(x, x + count), cells, strict=True))
            cursor.x = x + count
            pos += count
        self.last_char = data[-1]
        self.dirty.add(cursor.y)

    def _split_wide_at(self, line: Any, x: int) -> None:
        """Blank the other half of a wide character about to be half overwritten at `x`."""
        old = line.get(x)
        if old is None:
            return
        if old.data == "" and x > 0:
            left = line.get(x - 1)
            if left is not None and left.data and char_width(left.data[0]) == 2:
                line[x - 1] = left._replace(data=" ")
        elif old.data and char_width(old.data[0]) == 2:
            right = line.get(x + 1)
            if right is not None and right.data == "":
                line[x + 1] = right._replace(data=" ")

    def _combine(self, char: str) -> None:
        """Attach a zero-width code point (combining mark, ZWJ, variation selector) to the
        cell before the cursor."""
        x, y = self.cursor.x - 1, self.cursor.y
        if x < 0:
            return
        line = self.buffer[y]
        cell = line.get(x)
        if cell is not None and cell.data == "" and x > 0:
            x -= 1
            cell = line.get(x)
        if cell is None or not cell.data or len(cell.data) >= _MAX_CELL_CODEPOINTS:
            return
        line[x] = cell._replace(data=cell.data + char)
        self.dirty.add(y)

    def repeat_last_char(self, count: int = 1, *_: int) -> None:
        """REP (CSI n b): ncurses uses it for runs of one character. The count is clamped to
        the cells of the screen, and an ASCII run is written a line at a time from one cell,
        so a stream of `ESC[9999b` costs a few line copies each, not thousands of draws."""
        char = self.last_char
        if not char:
            return
        count = min(max(count, 1), self.columns * self.lines)
        charset = self.g1_charset if self.charset else self.g0_charset
        if (
            not char.isascii()
            or charset is not pyte_charsets.LAT1_MAP
            or pyte_modes.IRM in self.mode
        ):
            self.draw(char * count)
            return
        cols = self.columns
        cursor = self.cursor
        autowrap = pyte_modes.DECAWM in self.mode
        cell = tuple.__new__(Char, (char, *cursor.attrs[1:]))
        while count > 0:
            if cursor.x >= cols:
                if not autowrap:
                    self.buffer[cursor.y][cols - 1] = cell
                    break
                self.dirty.add(cursor.y)
                cursor.x = 0
                self.index()
            line = self.buffer[cursor.y]
            x = cursor.x
            run = min(count, cols - x)
            self._split_wide_at(line, x)
            self._split_wide_at(line, x + run - 1)
            line.update(dict.fromkeys(range(x, x + run), cell))
            cursor.x = x + run
            count -= run
        self.dirty.add(cursor.y)

    def scroll_up(self, count: int = 1, *_: int) -> None:
        """SU (CSI n S): scroll the region up, as if the cursor indexed at its bottom."""
        top, bottom = self.margins or (0, self.lines - 1)
        saved = (self.cursor.x, self.cursor.y)
        self.cursor.y = bottom
        for _i in range(min(max(count, 1), bottom - top + 1)):
            self.index()
        self.cursor.x, self.cursor.y = saved

    def scroll_down(self, count: int = 1, *_: int) -> None:
        """SD (CSI n T): scroll the region down."""
        top, bottom = self.margins or (0, self.lines - 1)
        saved = (self.cursor.x, self.cursor.y)
        self.cursor.y = top
        for _i in range(min(max(count, 1), bottom - top + 1)):
            self.reverse_index()
        self.cursor.x, self.cursor.y = saved

    def cursor_back_tab(self, count: int = 1, *_: int) -> None:
        """CBT (CSI n Z): back to the previous tab stop."""
        for _i in range(min(max(count, 1), self.columns)):
            if self.cursor.x == 0:
                break  # no stop before the first column: the rest of the count does nothing
            stops = [stop for stop in self.tabstops if stop < self.cursor.x]
            self.cursor.x = max(stops) if stops else 0

    def tab(self) -> None:
        stops = [stop for stop in self.tabstops if self.cursor.x < stop < self.columns]
        self.cursor.x = min(stops) if stops else self.columns - 1

    # --- cursor save/restore: one slot per screen, as xterm (DECRC may repeat) ----------

    def save_cursor(self) -> None:
        self.saved[self.alt_screen] = _Savepoint(
            copy.copy(self.cursor),
            self.g0_charset,
            self.g1_charset,
            self.charset,
            pyte_modes.DECOM in self.mode,
            pyte_modes.DECAWM in self.mode,
        )

    def restore_cursor(self) -> None:
        saved = self.saved[self.alt_screen]
        if saved is None:
            self.mode.discard(pyte_modes.DECOM)
            self.cursor_position()
            return
        self.g0_charset, self.g1_charset, self.charset = (
            saved.g0_charset,
            saved.g1_charset,
            saved.charset,
        )
        for flag, mode in ((saved.origin, pyte_modes.DECOM), (saved.wrap, pyte_modes.DECAWM)):
            if flag:
                self.mode.add(mode)
            else:
                self.mode.discard(mode)
        self.cursor = copy.copy(saved.cursor)
        self.cursor.hidden = pyte_modes.DECTCEM not in self.mode
        self.ensure_hbounds()
        self.ensure_vbounds()

    def save_cursor_sco(self, *params: int) -> None:
        if not params or params == (0,):
            self.save_cursor()

    def restore_cursor_sco(self, *params: int) -> None:
        if not params or params == (0,):
            self.restore_cursor()

    # --- modes ------------------------------------------------------------------------

    def set_mode(self, *modes: int, **kwargs: Any) -> None:
        self._switch_modes(modes, bool(kwargs.get("private")), on=True)

    def reset_mode(self, *modes: int, **kwargs: Any) -> None:
        self._switch_modes(modes, bool(kwargs.get("private")), on=False)

    def _switch_modes(self, modes: Iterable[int], private: bool, *, on: bool) -> None:
        stored: list[int] = []
        for mode in modes:
            if not private:
                if mode in _STORED_ANSI_MODES:
                    stored.append(mode)
            elif mode in _STORED_PRIVATE_MODES:
                stored.append(mode)
            elif mode in _ALT_SCREEN_MODES:
                self._switch_alt_screen(mode, on=on)
            elif mode in _TRACKING_MODES:
                if on:
                    self.mouse_tracking = _TRACKING_MODES[mode]
                else:
                    self.mouse_tracking = None  # as xterm.js: any reset turns reporting off
            elif mode in _ENCODING_MODES:
                if on:
                    self.mouse_encoding = _ENCODING_MODES[mode]
                elif self.mouse_encoding == _ENCODING_MODES[mode]:
                    self.mouse_encoding = "default"
            elif mode == _KEYPAD_MODE:
                self.application_keypad = on
            # DECCOLM (3) and the rest are ignored: the grid follows the PTY size.
        if stored:
            if on:
                super().set_mode(*stored, private=private)
            else:
                super().reset_mode(*stored, private=private)

    def _switch_alt_screen(self, mode: int, *, on: bool) -> None:
        if on == self.alt_screen:
            return
        if on:
            if mode == 1049:
                self.save_cursor()
            self.main_buffer = self.buffer
            self.buffer = _new_buffer(self)
            self.alt_screen = True
        else:
            self.buffer = self.main_buffer if self.main_buffer is not None else _new_buffer(self)
            self.main_buffer = None
            self.alt_screen = False
            if mode == 1049:
                self.restore_cursor()
        self.dirty.update(range(self.lines))

    def set_keypad(self, application: bool) -> None:
        self.application_keypad = application

    def reset(self) -> None:
        if getattr(self, "alt_screen", False):
            self._switch_alt_screen(1047, on=False)
        title = getattr(self, "title", "")
        super().reset()
        self.title = title  # xterm keeps the title across a full reset
        self.saved = {False: None, True: None}
        self.application_keypad = False
        self.mouse_tracking = None
        self.mouse_encoding = "default"

    def set_title(self, param: str) -> None:
        self.title = param

    def write_process_input(self, data: str) -> None:
        """Replies (device status, attributes) are the attached terminal's job, not ours."""

    # --- size -------------------------------------------------------------------------

    def resize(self, lines: int | None = None, columns: int | None = None) -> None:
        lines = lines or self.lines
        columns = columns or self.columns
        if lines == self.lines and columns == self.columns:
            return
        if lines < self.lines:
            # Keep the cursor's line: the lines above it go to the scrollback, as in xterm.
            shift = max(0, self.cursor.y - (lines - 1))
            self.buffer = self._shrink(self.buffer, shift, lines, keep=not self.alt_screen)
            self.cursor.y -= shift
            if self.main_buffer is not None:
                saved = self.saved[False]
                saved_y = saved.cursor.y if saved is not None else 0
                main_shift = max(0, saved_y - (lines - 1))
                self.main_buffer = self._shrink(self.main_buffer, main_shift, lines, keep=True)
                if saved is not None:
                    saved.cursor.y -= main_shift
        if columns < self.columns:
            for buffer in (self.buffer, self.main_buffer or {}):
                for line in buffer.values():
                    for x in [x for x in line if x >= columns]:
                        del line[x]
        old_columns = self.columns
        self.lines, self.columns = lines, columns
        self.tabstops = {stop for stop in self.tabstops if stop < columns}
        self.tabstops.update(range(max(8, old_columns - old_columns % 8), columns, 8))
        self.margins = None
        self.ensure_hbounds()
        self.ensure_vbounds()
        self.dirty.update(range(lines))

    def _shrink(self, buffer: _Buffer, shift: int, lines: int, *, keep: bool) -> _Buffer:
        shrunk = _new_buffer(self)
        for y in range(shift):
            if keep:
                self.push_scrollback(buffer.get(y))
        for y, line in buffer.items():
            if shift <= y < shift + lines:
                shrunk[y - shift] = line
        return shrunk

    def live_cells(self) -> int:
        cells = sum(len(line) for line in self.buffer.values())
        if self.main_buffer is not None:
            cells += sum(len(line) for line in self.main_buffer.values())
        return cells


def _ignore_failures(method: Callable[..., Any]) -> Callable[..., None]:
    """A screen operation that swallows its own failures: pyte has asserts and edge cases
    (DECOM without margins, odd parameter counts) that must not stop the output stream."""

    def call(*args: Any, **kwargs: Any) -> None:
        with contextlib.suppress(Exception):
            method(*args, **kwargs)

    return call


class _Parser:
    """The VT parser: pyte's state machine, reworked so that no input can raise, strings
    (OSC, DCS, APC, PM, SOS) are bounded and consumed, private/intermediate CSI sequences
    are not mistaken for plain ones, and DEC line drawing works in UTF-8."""

    _csi_names: ClassVar[dict[str, str]] = {
        **pyte.Stream.csi,
        "b": "repeat_last_char",
        "S": "scroll_up",
        "T": "scroll_down",
        "Z": "cursor_back_tab",
        "s": "save_cursor_sco",
        "u": "restore_cursor_sco",
    }
    _private_csi_names: ClassVar[dict[str, str]] = {
        "h": "set_mode",
        "l": "reset_mode",
        "J": "erase_in_display",
        "K": "erase_in_line",
    }
    _text = re.compile("[^\x00-\x1f\x7f\x9b\x9d]+")

    def __init__(self, screen: _Screen) -> None:
        self._screen = screen
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._draw = _ignore_failures(screen.draw)
        self._basic = {
            char: _ignore_failures(getattr(screen, name))
            for char, name in pyte.Stream.basic.items()
        }
        self._escape = {
            char: _ignore_failures(getattr(screen, name))
            for char, name in pyte.Stream.escape.items()
        }
        self._escape["="] = _ignore_failures(lambda: screen.set_keypad(True))
        self._escape[">"] = _ignore_failures(lambda: screen.set_keypad(False))
        self._csi = {
            char: _ignore_failures(getattr(screen, name)) for char, name in self._csi_names.items()
        }
        self._private_csi = {
            char: _ignore_failures(getattr(screen, name))
            for char, name in self._private_csi_names.items()
        }
        self._restart()

    def _restart(self) -> None:
        self._fsm = self._machine()
        self._plain = bool(next(self._fsm))

    def feed(self, data: bytes) -> None:
        text = self._decoder.decode(data)
        match_text = self._text.match
        draw = self._draw
        plain = self._plain
        offset, length = 0, len(text)
        while offset < length:
            if plain:
                match = match_text(text, offset)
                if match:
                    start, offset = match.span()
                    draw(text[start:offset])
                    continue
                plain = False
            try:
                plain = bool(self._fsm.send(text[offset]))
            except Exception:
                self._restart()
                plain = self._plain
            offset += 1
        self._plain = plain

    def _machine(self) -> Generator[bool, str, None]:
        screen = self._screen
        basic, escape, csi, private_csi = self._basic, self._escape, self._csi, self._private_csi
        draw = self._draw
        esc = ctrl.ESC
        pending: str | None = None
        while True:
            char = pending if pending is not None else (yield True)
            pending = None
            if char == esc:
                char = yield False
                if char == "[":
                    char = ctrl.CSI_C1
                elif char == "]":
                    char = ctrl.OSC_C1
                elif char in "P_^X":
                    pending = yield from self._skip_string()
                    continue
                elif char == esc:
                    pending = esc
                    continue
                elif char == "#":
                    code = yield False
                    if code == "8":
                        _ignore_failures(screen.alignment_display)()
                    continue
                elif char in "()":
                    code = yield False
                    _ignore_failures(screen.define_charset)(code, char)
                    continue
                elif char in "*+-./%":
                    yield False  # other charset designations: UTF-8 only
                    continue
                elif char == "c":
                    _ignore_failures(screen.reset)()
                    continue
                else:
                    handler = escape.get(char)
                    if handler is not None:
                        handler()
                    continue

            if char in basic:
                basic[char]()
            elif char == ctrl.CSI_C1:
                pending = yield from self._csi_sequence(basic, csi, private_csi)
            elif char == ctrl.OSC_C1:
                pending = yield from self._osc_string()
            elif char >= " " and char != ctrl.DEL:
                draw(char)

    def _csi_sequence(
        self,
        basic: dict[str, Callable[..., None]],
        csi: dict[str, Callable[..., None]],
        private_csi: dict[str, Callable[..., None]],
    ) -> Generator[bool, str, str | None]:
        params: list[int] = []
        current = ""
        prefix = ""
        intermediates = False
        while True:
            char = yield False
            if "0" <= char <= "9":
                if len(current) < _MAX_PARAM_DIGITS:
                    current += char
            elif char in ";:":
                if len(params) < _MAX_CSI_PARAMS:
                    params.append(min(int(current or 0), 9999))
                current = ""
            elif char in "<=>?":
                prefix = char
            elif " " <= char <= "/":
                intermediates = True
            elif char in basic:
                basic[char]()
            elif char == ctrl.ESC:
                return char  # an aborted sequence; the ESC starts a new one
            elif "@" <= char <= "~":
                if len(params) < _MAX_CSI_PARAMS:
                    params.append(min(int(current or 0), 9999))
                if intermediates:
                    return None
                if prefix == "?":
                    handler = private_csi.get(char)
                    if handler is not None:
                        if char in "hl":
                            handler(*params, private=True)
                        else:
                            handler(*params)
                    return None
                if prefix:
                    return None  # CSI > / = / < sequences: queries and key settings
                handler = csi.get(char)
                if handler is not None:
                    handler(*params)
                return None
            else:
                return None  # CAN, SUB or anything unexpected aborts the sequence

    def _osc_string(self) -> Generator[bool, str, str | None]:
        chars: list[str] = []
        pending: str | None = None
        while True:
            char = yield False
            if char in (ctrl.BEL, ctrl.ST_C1, ctrl.CAN, ctrl.SUB):
                break
            if char == ctrl.ESC:
                follower = yield False
                if follower != "\\":
                    pending = follower if follower == ctrl.ESC else None
                break
            if len(chars) < _MAX_OSC_CHARS:
                chars.append(char)
        command, _, value = "".join(chars).partition(";")
        if command in ("0", "2"):
            _ignore_failures(self._screen.set_title)(value)
        if command in ("0", "1"):
            _ignore_failures(self._screen.set_icon_name)(value)
        return pending

    def _skip_string(self) -> Generator[bool, str, str | None]:
        """Consume a DCS/APC/PM/SOS string up to its terminator; none of them draws."""
        while True:
            char = yield False
            if char in (ctrl.ST_C1, ctrl.CAN, ctrl.SUB):
                return None
            if char == ctrl.ESC:
                follower = yield False
                return None if follower == "\\" else (ctrl.ESC if follower == ctrl.ESC else None)


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
def _sgr(style: _Style) -> str:
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


def _colored(line: ScreenLine) -> str:
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


def _highlights(line: ScreenLine, row: int) -> list[Highlight]:
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


class VirtualScreen:
    """The screen of one terminal session, as a person would see it."""

    def __init__(
        self, cols: int, rows: int, scrollback_lines: int = DEFAULT_SCROLLBACK_LINES
    ) -> None:
        if cols < 1 or rows < 1:
            raise ValueError("a screen needs at least one column and one row")
        self._screen = _Screen(cols, rows, scrollback_lines)
        self._parser = _Parser(self._screen)
        self._signatures: dict[int, int] = {}
        self._state = self._outline()
        self.update_seq = 0
        self.last_damage = time.monotonic()

    # --- input ------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Apply program output. Never raises, whatever the bytes."""
        if not data:
            return
        screen = self._screen
        screen.dirty.clear()
        screen.scrolled = False
        with contextlib.suppress(Exception):  # the parser restarts itself; a last resort
            self._parser.feed(data)
        self._note_changes()

    def resize(self, cols: int, rows: int) -> None:
        if cols < 1 or rows < 1:
            raise ValueError("a screen needs at least one column and one row")
        screen = self._screen
        screen.dirty.clear()
        screen.resize(rows, cols)
        self._signatures.clear()
        if screen.dirty:
            self._bump()
        self._state = self._outline()

    def _outline(self) -> tuple[object, ...]:
        screen = self._screen
        return (
            screen.cursor.x,
            screen.cursor.y,
            screen.cursor.hidden,
            screen.title,
            screen.alt_screen,
            screen.columns,
            screen.lines,
        )

    def _note_changes(self) -> None:
        """Advance `update_seq` only if what a viewer sees changed (content, cursor, title):
        pyte marks lines dirty even when they are redrawn identically."""
        screen = self._screen
        outline = self._outline()
        changed = outline != self._state
        self._state = outline
        if screen.scrolled:
            # Every row moved: no need to compare; the signatures are rebuilt as rows change.
            changed = True
            self._signatures.clear()
        else:
            cols = range(screen.columns)
            for y in screen.dirty:
                if 0 <= y < screen.lines:
                    line = screen.buffer.get(y)
                    signature = hash(tuple(map(line.get, cols))) if line else 0
                    if self._signatures.get(y) != signature:
                        changed = True
                        self._signatures[y] = signature
        screen.dirty.clear()
        if changed:
            self._bump()

    def _bump(self) -> None:
        self.update_seq += 1
        self.last_damage = time.monotonic()

    # --- state ------------------------------------------------------------------------

    @property
    def cols(self) -> int:
        return int(self._screen.columns)

    @property
    def rows(self) -> int:
        return int(self._screen.lines)

    @property
    def title(self) -> str:
        return str(self._screen.title)

    @property
    def cursor(self) -> CursorState:
        cursor = self._screen.cursor
        return CursorState(
            row=int(cursor.y), col=min(int(cursor.x), self.cols - 1), visible=not cursor.hidden
        )

    @property
    def alt_screen(self) -> bool:
        return self._screen.alt_screen

    @property
    def application_cursor(self) -> bool:
        return _DECCKM in self._screen.mode

    @property
    def application_keypad(self) -> bool:
        return self._screen.application_keypad

    @property
    def bracketed_paste(self) -> bool:
        return _BRACKETED_PASTE in self._screen.mode

    @property
    def mouse_tracking(self) -> MouseTracking | None:
        return self._screen.mouse_tracking

    @property
    def mouse_encoding(self) -> MouseEncoding:
        return self._screen.mouse_encoding

    @property
    def scrollback_count(self) -> int:
        return len(self._screen.scrollback)

    @property
    def scrollback_capacity(self) -> int:
        return self._screen.scrollback.maxlen or 0

    def estimated_memory_bytes(self) -> int:
        """What this screen holds, roughly: live cells (both screens) plus the scrollback."""
        screen = self._screen
        return (
            screen.live_cells() * _BYTES_PER_LIVE_CELL
            + (screen.lines * 2) * _BYTES_PER_LINE_OVERHEAD
            + screen.scrollback_bytes
        )

    # --- reading ----------------------------------------------------------------------

    def live_lines(self) -> list[ScreenLine]:
        """The current grid, one `ScreenLine` per row."""
        screen = self._screen
        return [_render_cells(screen.buffer.get(y), screen.columns) for y in range(screen.lines)]

    def scrollback_lines(self) -> list[ScreenLine]:
        """Lines that left the top of the main screen, oldest first."""
        return list(self._screen.scrollback)

    def effective_scroll_offset(self, scroll_offset: int) -> int:
        """The offset actually shown: at most the scrollback size, and 0 on the alternate
        screen, which has no scrollback (as in xterm.js)."""
        if scroll_offset < 0:
            # The daemon's error type, imported only here: callers in the holder check the
            # offset first, so the holder never loads the daemon's dependencies.
            from hoodyd.errors import InvalidRequest, Reason

            raise InvalidRequest(
                "scroll_offset must be 0 or more",
                reason=Reason.OUT_OF_RANGE,
                extra={"field": "scroll_offset"},
            )
        if self.alt_screen:
            return 0
        return min(scroll_offset, self.scrollback_count)

    def viewport_lines(self, scroll_offset: int = 0) -> list[ScreenLine]:
        """The rows shown when scrolled `scroll_offset` lines back into the scrollback."""
        offset = self.effective_scroll_offset(scroll_offset)
        live = self.live_lines()
        if offset == 0:
            return live
        scrollback = self._screen.scrollback
        count = len(scrollback)
        end = min(count, count - offset + self.rows)
        above = [scrollback[i] for i in range(count - offset, end)]
        return (above + live)[: self.rows]

    def snapshot(
        self,
        include_colors: bool = False,
        include_highlights: bool = True,
        scroll_offset: int = 0,
    ) -> Snapshot:
        offset = self.effective_scroll_offset(scroll_offset)
        lines = self.viewport_lines(offset)
        highlights: list[Highlight] | None = None
        if include_highlights:
            highlights = [span for row, line in enumerate(lines) for span in _highlights(line, row)]
        return Snapshot(
            lines=[line.text.rstrip(" ") for line in lines],
            colored_lines=[_colored(line) for line in lines] if include_colors else None,
            highlights=highlights,
            cursor=self.cursor,
            title=self.title,
            alt_screen=self.alt_screen,
            cols=self.cols,
            rows=self.rows,
            update_seq=self.update_seq,
            scroll_offset=offset,
            scrollback_count=self.scrollback_count,
        )
