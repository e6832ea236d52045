"""The grid a terminal shows and the scrollback above it: pyte's screen with the xterm
behaviour hoodyd relies on (alternate screen, mouse and keypad modes, DEC line drawing in
UTF-8, REP/SU/SD, cursor save points per screen), its rows compacted into `ScreenLine`s as
they leave the top, and the modes the input side needs to encode keys and mouse events."""

from __future__ import annotations

import copy
import operator
import sys
from collections import defaultdict, deque
from collections.abc import Iterable
from typing import Any, Literal, NamedTuple

import pyte
from pyte import charsets as pyte_charsets
from pyte import modes as pyte_modes
from pyte.screens import Char, StaticDefaultDict
from pyte.screens import wcwidth as cached_width  # wcwidth behind an LRU cache

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
DECCKM = 1 << 5
BRACKETED_PASTE = 2004 << 5

_MAX_CELL_CODEPOINTS = 8  # combining marks piled on one cell beyond this are dropped

# Rough CPython sizes, for the global memory cap: a live cell is a Char namedtuple plus its
# dict slot; a scrollback line is a compact `ScreenLine`.
BYTES_PER_LIVE_CELL = 200
BYTES_PER_LINE_OVERHEAD = 200


def char_width(char: str) -> int:
    """Cells one code point takes: 1, 2 (CJK, emoji), 0 (combining) or -1 (unprintable)."""
    if " " <= char <= "~":
        return 1
    return cached_width(char)


class Style(NamedTuple):
    """A cell's attributes without its text (pyte's Char with `data` dropped)."""

    fg: str
    bg: str
    bold: bool
    italics: bool
    underscore: bool
    strikethrough: bool
    reverse: bool
    blink: bool


DEFAULT_STYLE = Style("default", "default", False, False, False, False, False, False)
DEFAULT_STYLE_KEY: tuple[Any, ...] = tuple(DEFAULT_STYLE)
_styles: dict[tuple[Any, ...], Style] = {DEFAULT_STYLE_KEY: DEFAULT_STYLE}


def style_of(key: tuple[Any, ...]) -> Style:
    """The interned style for a Char's attributes (`cell[1:]`): lines share them."""
    style = _styles.get(key)
    if style is None:
        style = _styles.setdefault(key, Style(*key))
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
        styles: tuple[tuple[int, Style], ...],
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
        return BYTES_PER_LINE_OVERHEAD + sys.getsizeof(self.text) + starts + 72 * len(self.styles)


EMPTY_LINE = ScreenLine("", None, 0, ())


_cell_text = operator.itemgetter(0)
_cell_style = operator.itemgetter(1, 2, 3, 4, 5, 6, 7, 8)


def compact_row(row: Any, cols: int) -> ScreenLine:
    """Compact a pyte line (a column -> Char mapping) into a `ScreenLine`."""
    if not row:
        return EMPTY_LINE
    default = DEFAULT_STYLE_KEY
    last = -1
    for x, cell in row.items():
        if last < x < cols and (cell[0] not in (" ", "") or cell[1:] != default):
            last = x
    if last < 0:
        return EMPTY_LINE
    get, blank = row.get, row.default
    cells = [get(x, blank) for x in range(last + 1)]
    text = "".join(map(_cell_text, cells))
    if len(text) == last + 1 and text.isascii():
        # The common line: one cell per character. One style for all is cheap to see.
        keys = list(map(_cell_style, cells))
        if keys.count(keys[0]) == len(keys):
            single = () if keys[0] == default else ((0, style_of(keys[0])),)
            return ScreenLine(text, None, last + 1, single)
    parts: list[str] = []
    starts: list[int] = []
    styles: list[tuple[int, Style]] = []
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
            styles.append((x, style_of(key)))
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


Buffer = dict[int, StaticDefaultDict[int, Char]]


def new_buffer(screen: pyte.Screen) -> Buffer:
    return defaultdict(lambda: StaticDefaultDict[int, Char](screen.default_char))


class _Savepoint(NamedTuple):
    cursor: Any
    g0_charset: str
    g1_charset: str
    charset: int
    origin: bool
    wrap: bool


class Grid(pyte.Screen):
    """pyte's screen with the xterm behaviour hoodyd relies on (see the module docstring)."""

    def __init__(self, columns: int, lines: int, scrollback_lines: int) -> None:
        self.scrollback: deque[ScreenLine] = deque(maxlen=max(0, scrollback_lines))
        self.scrollback_bytes = 0
        self.scrolled = False  # lines left the top of the main screen since the last feed
        self.alt_screen = False
        self.main_buffer: Buffer | None = None
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
        rendered = compact_row(line, self.columns)
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
            self.buffer = new_buffer(self)
            self.alt_screen = True
        else:
            self.buffer = self.main_buffer if self.main_buffer is not None else new_buffer(self)
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

    def _shrink(self, buffer: Buffer, shift: int, lines: int, *, keep: bool) -> Buffer:
        shrunk = new_buffer(self)
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
