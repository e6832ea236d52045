"""The screen a terminal's holder answers from: snapshot, find, wait and state requests.

The emulator (`screen.VirtualScreen`) lives in the holder, beside the output it parses, so
nothing a program prints and no pattern a caller sends runs on hoodyd's event loop: a
hostile stream or a pattern that backtracks slows this terminal's holder and no one else.
The screen is built on the first request by replaying the tail of the output ring, fed
with every byte from then on, and dropped when hoodyd asks (idle, or evicted under the
memory cap) or when it alone passes the budget hoodyd gave it; memory is handed back to the
system when it is dropped.

Requests and answers are JSON (`protocol` SCREEN / SCREEN_ANSWER); every request
carries an `id` its answer repeats. An error answer names a reason the daemon maps to its
own error (`INVALID_PATTERN`, `PATTERN_TIMEOUT`). Imports stay within the standard library,
pyte and regex: the holder loads them on the first screen request only.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import gc
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

import regex  # type: ignore[import-untyped,unused-ignore]

from hoodyd.terminals.holder.ring import OutputRing
from hoodyd.terminals.screen import ScreenLine, VirtualScreen

FindScope = Literal["screen", "scrollback", "all"]

# Output replayed into a new emulator: enough for any screen and a good part of its
# scrollback, without parsing a whole megabyte of old output on the first read.
REPLAY_BYTES = 512 * 1024
DEFAULT_SCROLLBACK = 10_000
DEFAULT_FIND_TIMEOUT = 0.25
MAX_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class Hit:
    """One match. `row` is a viewport row for scope `screen`; for `scrollback` and `all` it
    indexes that scope's lines, oldest first (in `all`, live row r is
    `scrollback_count + r`). `col` and `length` count cells: a wide character is two."""

    row: int
    col: int
    length: int
    text: str
    line: str


@dataclass(frozen=True, slots=True)
class FindResult:
    hits: list[Hit]
    total: int  # every match in the scope; more than len(hits) when truncated
    truncated: bool
    scope: FindScope
    scrollback_count: int


class SearchTimeout(Exception):
    """A pattern spent its whole time budget matching."""


class ScreenRequestError(Exception):
    """A request the holder refuses; `reason` is one of the daemon's reason names."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def scope_lines(
    screen: VirtualScreen, scope: FindScope, scroll_offset: int = 0
) -> list[ScreenLine]:
    if scope == "screen":
        return screen.viewport_lines(scroll_offset)
    if scope == "scrollback":
        return screen.scrollback_lines()
    return screen.scrollback_lines() + screen.live_lines()


def search(
    screen: VirtualScreen,
    compiled: Any,
    *,
    scope: FindScope,
    limit: int,
    scroll_offset: int,
    timeout: float,
) -> FindResult:
    """Every match of the compiled pattern in `scope`, the first `limit` as hits; the whole
    search shares one budget of `timeout` seconds (SearchTimeout past it). Zero-length
    matches mark nothing on screen and are not hits."""
    lines = scope_lines(screen, scope, scroll_offset)
    deadline = time.monotonic() + timeout
    hits: list[Hit] = []
    total = 0
    for row, line in enumerate(lines):
        text = line.text.rstrip(" ")
        if not text:
            continue
        remaining = deadline - time.monotonic()
        try:
            if remaining <= 0:
                raise TimeoutError
            for match in compiled.finditer(text, timeout=remaining):
                start, end = match.span()
                if start == end:
                    continue
                total += 1
                if len(hits) < limit:
                    col = line.start_col(start)
                    hits.append(
                        Hit(
                            row=row,
                            col=col,
                            length=line.end_col(end - 1) - col,
                            text=match.group(),
                            line=text,
                        )
                    )
        except TimeoutError as exc:
            raise SearchTimeout from exc
    return FindResult(
        hits=hits,
        total=total,
        truncated=total > len(hits),
        scope=scope,
        scrollback_count=screen.scrollback_count,
    )


def return_memory() -> None:
    """Hand freed heap pages back to the system (glibc keeps them otherwise)."""
    gc.collect()
    name = ctypes.util.find_library("c")
    if name is None:
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(name).malloc_trim(0)


def _compile(pattern: object, *, case_insensitive: bool = False) -> Any:
    """The daemon checked the pattern (size, counted repeats) before sending it."""
    if not isinstance(pattern, str) or not pattern:
        raise ScreenRequestError("INVALID_PATTERN", "pattern is empty")
    try:
        return regex.compile(pattern, regex.IGNORECASE if case_insensitive else 0)
    except (regex.error, ValueError, OverflowError, RecursionError) as exc:
        raise ScreenRequestError("INVALID_PATTERN", f"invalid pattern: {exc}") from exc


def _timeout_error(timeout: float) -> ScreenRequestError:
    return ScreenRequestError(
        "PATTERN_TIMEOUT",
        f"pattern took too long to match (over {round(timeout * 1000)} ms); "
        "simplify it (avoid nested repetition such as (a+)+)",
    )


class HolderScreen:
    """The holder's one screen: built on first use, fed by the holder, asked over the
    holder's socket. `size()` is the PTY's (cols, rows); `running()` whether the shell is."""

    def __init__(
        self,
        ring: OutputRing,
        size: Callable[[], tuple[int, int]],
        running: Callable[[], bool],
    ) -> None:
        self._ring = ring
        self._size = size
        self._running = running
        self._screen: VirtualScreen | None = None
        self._generation = 0  # which build of the screen; a wait across a drop sees it
        self._budget = 0  # bytes; 0: none
        self._evictions = 0
        self._changed = asyncio.Event()
        self._waits: set[asyncio.Task[None]] = set()

    # fed by the holder

    def feed(self, data: bytes) -> None:
        screen = self._screen
        if screen is None:
            return
        before = screen.update_seq
        self._fit(screen)
        screen.feed(data)
        if screen.update_seq != before:
            self.pulse()
        if self._budget and screen.estimated_memory_bytes() > self._budget:
            self._evictions += 1
            self.drop()

    def pulse(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def drop(self) -> None:
        if self._screen is None:
            return
        self._screen = None
        self.pulse()
        return_memory()

    def close(self) -> None:
        for task in self._waits:
            task.cancel()
        self.drop()

    # requests

    def handle(self, request: dict[str, Any], answer: Callable[[dict[str, Any]], None]) -> None:
        """Answer `request` through `answer` (at once, or later for a wait)."""
        request_id = request.get("id")

        def reply(result: dict[str, Any] | None, error: ScreenRequestError | None) -> None:
            body: dict[str, Any] = {"id": request_id, "screen": self._info()}
            if error is not None:
                body["error"] = {"reason": error.reason, "message": str(error)}
            else:
                body["result"] = result
            answer(body)

        op = request.get("op")
        if op == "wait":
            task = asyncio.ensure_future(self._answer_wait(request, reply))
            self._waits.add(task)
            task.add_done_callback(self._waits.discard)
            return
        try:
            result = self._answer(op, request)
        except ScreenRequestError as error:
            reply(None, error)
        else:
            reply(result, None)

    def _answer(self, op: object, request: dict[str, Any]) -> dict[str, Any]:
        if op == "drop":
            self.drop()
            return {}
        if op == "state":
            screen = self._screen if not request.get("create", True) else self._read(request)
            return self._state(screen)
        if op == "snapshot":
            screen = self._read(request)
            return asdict(
                screen.snapshot(
                    include_colors=bool(request.get("include_colors", False)),
                    include_highlights=bool(request.get("include_highlights", True)),
                    scroll_offset=max(0, int(request.get("scroll_offset", 0))),
                )
            )
        if op == "find":
            timeout = float(request.get("timeout", DEFAULT_FIND_TIMEOUT))
            compiled = _compile(
                request.get("pattern"), case_insensitive=bool(request.get("case_insensitive"))
            )
            screen = self._read(request)
            try:
                found = search(
                    screen,
                    compiled,
                    scope=request.get("scope", "screen"),
                    limit=min(max(int(request.get("limit", 100)), 1), MAX_LIMIT),
                    scroll_offset=max(0, int(request.get("scroll_offset", 0))),
                    timeout=timeout,
                )
            except SearchTimeout:
                raise _timeout_error(timeout) from None
            return asdict(found)
        raise ScreenRequestError("INVALID_REQUEST", f"unknown screen request {op!r}")

    async def _answer_wait(
        self,
        request: dict[str, Any],
        reply: Callable[[dict[str, Any] | None, ScreenRequestError | None], None],
    ) -> None:
        try:
            result = await self._wait(request)
        except ScreenRequestError as error:
            reply(None, error)
        else:
            reply(result, None)

    async def _wait(self, request: dict[str, Any]) -> dict[str, Any]:
        """Until the screen is quiet for `debounce_ms` (stable), shows `pattern` (regex),
        whichever comes first (either), the shell exits, or the deadline."""
        mode = request.get("mode", "stable")
        compiled = _compile(request.get("pattern")) if mode != "stable" else None
        match_timeout = float(request.get("match_timeout", 0.1))
        scope = request.get("search_scope", "screen")
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + int(request.get("timeout_ms", 30_000)) / 1000
        debounce = int(request.get("debounce_ms", 500)) / 1000
        quiet_since = started  # the screen's clock is time.monotonic(), the loop's too
        self._read(request)
        generation = self._generation

        def outcome(status: str, match: dict[str, Any] | None = None) -> dict[str, Any]:
            elapsed = round((loop.time() - started) * 1000, 3)
            screen = self._screen
            if screen is None or self._generation != generation:
                return {"status": "vterm_reinit", "elapsed_ms": elapsed, "snapshot": None}
            self._fit(screen)
            snapshot = screen.snapshot(
                include_colors=bool(request.get("include_colors", False)),
                include_highlights=bool(request.get("include_highlights", True)),
                scroll_offset=0,
            )
            return {
                "status": status,
                "elapsed_ms": elapsed,
                "snapshot": asdict(snapshot),
                "match": match,
            }

        while True:
            screen = self._screen
            if screen is None or self._generation != generation:
                return outcome("vterm_reinit")
            changed = self._changed
            self._fit(screen)
            if compiled is not None:
                try:
                    hits = search(
                        screen,
                        compiled,
                        scope=scope,
                        limit=1,
                        scroll_offset=0,
                        timeout=match_timeout,
                    )
                except SearchTimeout:
                    raise _timeout_error(match_timeout) from None
                if hits.hits:
                    return outcome("matched", asdict(hits.hits[0]))
            now = loop.time()
            quiet_since = max(quiet_since, screen.last_damage)
            if mode != "regex" and now - quiet_since >= debounce:
                return outcome("stable")
            if not self._running():
                return outcome("exited")
            if now >= deadline:
                return outcome("timeout")
            sleep = deadline - now
            if mode != "regex":
                sleep = min(sleep, quiet_since + debounce - now)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), max(sleep, 0.001))

    # the screen itself

    def _read(self, request: dict[str, Any]) -> VirtualScreen:
        """The screen, built now by replaying the ring's tail if there is none."""
        budget = request.get("budget_bytes")
        if isinstance(budget, int) and budget >= 0:
            self._budget = budget
        screen = self._screen
        if screen is None:
            cols, rows = self._size()
            scrollback = request.get("scrollback_lines", DEFAULT_SCROLLBACK)
            screen = VirtualScreen(
                cols, rows, scrollback_lines=scrollback if isinstance(scrollback, int) else 0
            )
            ring = self._ring
            screen.feed(ring.read(ring.tail(REPLAY_BYTES), REPLAY_BYTES).data)
            self._screen = screen
            self._generation += 1
        self._fit(screen)
        return screen

    def _fit(self, screen: VirtualScreen) -> None:
        cols, rows = self._size()
        if (screen.cols, screen.rows) != (cols, rows):
            screen.resize(cols, rows)

    def _info(self) -> dict[str, Any]:
        screen = self._screen
        return {
            "active": screen is not None,
            "memory_bytes": screen.estimated_memory_bytes() if screen is not None else 0,
            "evictions": self._evictions,
            "waiters": len(self._waits),
        }

    def _state(self, screen: VirtualScreen | None) -> dict[str, Any]:
        if screen is None:
            return {"active": False}
        return {
            "active": True,
            "update_seq": screen.update_seq,
            "last_damage_ms_ago": round((time.monotonic() - screen.last_damage) * 1000),
            "alt_screen": screen.alt_screen,
            "title": screen.title,
            "scrollback_count": screen.scrollback_count,
            "memory_bytes": screen.estimated_memory_bytes(),
            "application_cursor": screen.application_cursor,
            "application_keypad": screen.application_keypad,
            "bracketed_paste": screen.bracketed_paste,
            "mouse_tracking": screen.mouse_tracking,
            "mouse_encoding": screen.mouse_encoding,
        }
