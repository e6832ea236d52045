"""`VirtualScreen`: one terminal's screen as a person would see it, joining the parser, the
grid with its scrollback and the rendering of snapshots; `feed` never raises."""

from __future__ import annotations

import contextlib
import time

from hoodyd.terminals.screen.grid import (
    BRACKETED_PASTE,
    BYTES_PER_LINE_OVERHEAD,
    BYTES_PER_LIVE_CELL,
    DECCKM,
    DEFAULT_SCROLLBACK_LINES,
    Grid,
    MouseEncoding,
    MouseTracking,
    ScreenLine,
    compact_row,
)
from hoodyd.terminals.screen.parser import Parser
from hoodyd.terminals.screen.render import (
    CursorState,
    Highlight,
    Snapshot,
    colored_text,
    highlights_of,
)


class VirtualScreen:
    """The screen of one terminal session, as a person would see it."""

    def __init__(
        self, cols: int, rows: int, scrollback_lines: int = DEFAULT_SCROLLBACK_LINES
    ) -> None:
        if cols < 1 or rows < 1:
            raise ValueError("a screen needs at least one column and one row")
        self._screen = Grid(cols, rows, scrollback_lines)
        self._parser = Parser(self._screen)
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
        return DECCKM in self._screen.mode

    @property
    def application_keypad(self) -> bool:
        return self._screen.application_keypad

    @property
    def bracketed_paste(self) -> bool:
        return BRACKETED_PASTE in self._screen.mode

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
            screen.live_cells() * BYTES_PER_LIVE_CELL
            + (screen.lines * 2) * BYTES_PER_LINE_OVERHEAD
            + screen.scrollback_bytes
        )

    # --- reading ----------------------------------------------------------------------

    def live_lines(self) -> list[ScreenLine]:
        """The current grid, one `ScreenLine` per row."""
        screen = self._screen
        return [compact_row(screen.buffer.get(y), screen.columns) for y in range(screen.lines)]

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
            highlights = [
                span for row, line in enumerate(lines) for span in highlights_of(line, row)
            ]
        return Snapshot(
            lines=[line.text.rstrip(" ") for line in lines],
            colored_lines=[colored_text(line) for line in lines] if include_colors else None,
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
