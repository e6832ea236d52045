"""The screens automation clients read, asked of the terminals' holders: snapshot, find,
wait, state, and the modes the input side encodes keys, mouse events and pastes for.

Each holder parses its own output and matches patterns on its own screen
(`holder.screen`), so a hostile stream or a backtracking pattern stalls that terminal's
holder and never the daemon's loop. The daemon sends a request and awaits the answer with a
deadline; past it the request is abandoned and the caller gets a 504 (`WAIT_TIMEOUT`), while
a holder that is gone (or too old to have a screen) is a 503.

An emulator costs CPU for every byte its session prints, so one exists only while someone
reads that screen: it is dropped after `vterm_idle_ttl` seconds unread, or, least recently
used first, when all of them together would pass `vterm_memory_cap_mb` (room is made before
a new screen is built, from its grid size, and again from what every holder reports with
each answer); each holder also drops its own screen once it alone passes that cap, its
budget. A dropped screen's memory goes back to the system (`malloc_trim` in the holder), a
deleted terminal's with its holder. The next read rebuilds from the output ring; a wait
whose emulator is dropped under it answers `vterm_reinit`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import structlog

from hoodyd.config import TerminalsConfig
from hoodyd.errors import (
    Conflict,
    InvalidRequest,
    Reason,
    ServiceUnavailable,
    WaitTimeout,
)
from hoodyd.schemas.automation import (
    MAX_WAITERS_PER_SESSION,
    AutomationMetrics,
    AutomationState,
    WaitBody,
    WaitStatus,
)
from hoodyd.schemas.queries import FindScope
from hoodyd.tasks import cancel_and_wait
from hoodyd.terminals.find import check_limit, compile_pattern
from hoodyd.terminals.link import HolderError, HolderLink, ScreenTimeout
from hoodyd.terminals.screen import MouseEncoding, MouseTracking
from hoodyd.terminals.session import TerminalSession

log = structlog.get_logger()

# how long a snapshot, find or state may take in the holder (parsing a backlog of output
# first) before the daemon gives up on it; a wait gets its own timeout on top
SCREEN_DEADLINE = 10.0
# time one regular expression may take over one screen before the wait gives it up
WAIT_MATCH_TIMEOUT = 0.1
# what a new screen's grid is reckoned to take per cell, to make room before it is built
BYTES_PER_CELL = 200
_ERROR_REASONS = {
    Reason.INVALID_PATTERN.value,
    Reason.PATTERN_TIMEOUT.value,
    Reason.INVALID_REQUEST.value,
}


@dataclass(eq=False)
class Tracked:
    """One terminal whose holder has a screen built, as far as the daemon knows."""

    session: TerminalSession
    used: float = field(default_factory=time.monotonic)
    memory_bytes: int = 0


@dataclass(frozen=True, slots=True)
class ScreenModes:
    """What the program in the terminal asked the input side for."""

    application_cursor: bool
    application_keypad: bool
    bracketed_paste: bool
    mouse_tracking: MouseTracking | None
    mouse_encoding: MouseEncoding


@dataclass(frozen=True, slots=True)
class WaitOutcome:
    status: WaitStatus
    elapsed_ms: float
    snapshot: dict[str, Any] | None
    match: dict[str, Any] | None = None


class ScreenAutomation:
    def __init__(self, config: TerminalsConfig) -> None:
        self._config = config
        self._tracked: dict[int, Tracked] = {}
        self._waiters: dict[int, int] = {}
        self._evictions = 0
        self._trimmer: asyncio.Task[None] | None = None
        self._drops: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._trimmer = asyncio.create_task(self._trim_regularly(), name="vterm-trimmer")

    async def close(self) -> None:
        await cancel_and_wait(self._trimmer)
        for task in list(self._drops):
            task.cancel()
        self._tracked.clear()

    async def _trim_regularly(self) -> None:
        while True:
            await asyncio.sleep(min(30.0, max(0.05, self._config.vterm_idle_ttl / 4)))
            self.trim()

    @property
    def _cap_bytes(self) -> int:
        return self._config.vterm_memory_cap_mb * 1024 * 1024

    # reading

    async def modes(self, session: TerminalSession) -> ScreenModes:
        """The input modes the program set (the screen is built if there is none)."""
        state = await self._ask(session, {"op": "state", "create": True})
        return ScreenModes(
            application_cursor=bool(state["application_cursor"]),
            application_keypad=bool(state["application_keypad"]),
            bracketed_paste=bool(state["bracketed_paste"]),
            mouse_tracking=state["mouse_tracking"],
            mouse_encoding=state["mouse_encoding"],
        )

    async def snapshot(
        self,
        session: TerminalSession,
        *,
        include_colors: bool,
        include_highlights: bool,
        scroll_offset: int,
    ) -> dict[str, Any]:
        """The snapshot's fields (`screen.Snapshot`) as the holder rendered them."""
        _check_offset(scroll_offset)
        return await self._ask(
            session,
            {
                "op": "snapshot",
                "include_colors": include_colors,
                "include_highlights": include_highlights,
                "scroll_offset": scroll_offset,
            },
        )

    async def find(
        self,
        session: TerminalSession,
        pattern: str,
        *,
        scope: FindScope,
        limit: int,
        case_insensitive: bool,
        scroll_offset: int,
    ) -> dict[str, Any]:
        """The fields of a `find.FindResult`: the pattern is checked here, matched in the
        holder (with a timeout that holds nobody else)."""
        check_limit(limit)
        compile_pattern(pattern, case_insensitive=case_insensitive)
        _check_offset(scroll_offset)
        return await self._ask(
            session,
            {
                "op": "find",
                "pattern": pattern,
                "scope": scope,
                "limit": limit,
                "case_insensitive": case_insensitive,
                "scroll_offset": scroll_offset,
            },
        )

    async def wait(self, session: TerminalSession, request: WaitBody) -> WaitOutcome:
        """Block until the screen is quiet for `debounce_ms` (stable), shows `pattern`
        (regex), whichever comes first (either), the shell exits, or the deadline."""
        if request.mode != "stable":
            check_pattern(request.pattern)
        terminal_id = session.terminal_id
        waiting = self._waiters.get(terminal_id, 0)
        if waiting >= MAX_WAITERS_PER_SESSION:
            raise Conflict(
                f"Terminal {terminal_id} already has {MAX_WAITERS_PER_SESSION} "
                "waiters; wait for one of them to finish",
                reason=Reason.TOO_MANY_WAITERS,
            )
        self._waiters[terminal_id] = waiting + 1
        try:
            answer = await self._ask(
                session,
                {
                    "op": "wait",
                    "mode": request.mode,
                    "pattern": request.pattern,
                    "search_scope": request.search_scope,
                    "timeout_ms": request.timeout_ms,
                    "debounce_ms": request.debounce_ms,
                    "include_colors": request.include_colors,
                    "include_highlights": request.include_highlights,
                    "match_timeout": WAIT_MATCH_TIMEOUT,
                },
                deadline=request.timeout_ms / 1000 + SCREEN_DEADLINE,
            )
        finally:
            left = self._waiters.get(terminal_id, 1) - 1
            if left > 0:
                self._waiters[terminal_id] = left
            else:
                self._waiters.pop(terminal_id, None)
        return WaitOutcome(
            status=answer["status"],
            elapsed_ms=float(answer["elapsed_ms"]),
            snapshot=answer.get("snapshot"),
            match=answer.get("match"),
        )

    # state

    async def state(self, session: TerminalSession) -> AutomationState:
        """The screen's state as its holder has it; a terminal without a screen (or without
        a holder) reports an inactive one and none is built."""
        try:
            state = await self._ask(session, {"op": "state", "create": False})
        except ServiceUnavailable:
            state = {"active": False}
        active = bool(state.get("active"))

        def field_of(name: str, default: Any) -> Any:
            return state.get(name, default) if active else default

        memory = int(field_of("memory_bytes", 0))
        return AutomationState(
            terminal_id=str(session.terminal_id),
            vterm_active=active,
            cols=session.cols,
            rows=session.rows,
            update_seq=int(field_of("update_seq", 0)),
            last_damage_ms_ago=field_of("last_damage_ms_ago", None),
            alt_screen=bool(field_of("alt_screen", False)),
            title=str(field_of("title", "")),
            scrollback_count=int(field_of("scrollback_count", 0)),
            scrollback_capacity=self._config.vterm_scrollback_lines,
            waiter_count=self._waiters.get(session.terminal_id, 0),
            estimated_memory_kb=round(memory / 1024, 1),
            vterm_pending_teardown=False,
            application_cursor=bool(field_of("application_cursor", False)),
            application_keypad=bool(field_of("application_keypad", False)),
            bracketed_paste=bool(field_of("bracketed_paste", False)),
            mouse_tracking=field_of("mouse_tracking", None),
        )

    def metrics(self) -> AutomationMetrics:
        used = sum(tracked.memory_bytes for tracked in self._tracked.values())
        return AutomationMetrics(
            vterm_sessions_active=len(self._tracked),
            vterm_memory_bytes_used=used,
            vterm_memory_mb_used=round(used / (1024 * 1024), 3),
            vterm_memory_mb_cap=self._config.vterm_memory_cap_mb,
            vterm_idle_ttl_sec=self._config.vterm_idle_ttl,
            vterm_evictions=self._evictions,
            wait_waiters_active=sum(self._waiters.values()),
        )

    # talking to the holder

    async def _ask(
        self,
        session: TerminalSession,
        request: dict[str, Any],
        *,
        deadline: float = SCREEN_DEADLINE,
    ) -> dict[str, Any]:
        """Send `request` to the session's holder screen; its result, or the error the
        holder named, or 503/504 when the holder cannot answer in time."""
        terminal_id = session.terminal_id
        link = self._link(session)
        builds = request.get("create", True) and not self._is_tracked(session)
        if builds:
            self._make_room(session)
        request = {
            **request,
            "scrollback_lines": self._config.vterm_scrollback_lines,
            "budget_bytes": self._cap_bytes,
        }
        try:
            answer = await link.screen(request, deadline)
        except ScreenTimeout:
            log.warning("vterm_request_abandoned", terminal_id=terminal_id, op=request["op"])
            raise WaitTimeout(
                f"the screen of terminal {terminal_id} did not answer within {deadline:g} s "
                "(its holder is still parsing the terminal's output)"
            ) from None
        except HolderError as error:
            raise ServiceUnavailable(
                f"terminal {terminal_id} has no holder to read its screen from: {error}",
                reason=Reason.TERMINALS_UNAVAILABLE,
            ) from None
        self._note(session, answer.get("screen"), built=builds)
        refusal = answer.get("error")
        if isinstance(refusal, dict):
            reason = str(refusal.get("reason"))
            raise InvalidRequest(
                str(refusal.get("message", "the screen refused the request")),
                reason=Reason(reason) if reason in _ERROR_REASONS else Reason.INVALID_REQUEST,
            )
        result = answer.get("result")
        return result if isinstance(result, dict) else {}

    def _link(self, session: TerminalSession) -> HolderLink:
        link = session.link
        if link is None:
            raise ServiceUnavailable(
                f"terminal {session.terminal_id} has no holder to read its screen from",
                reason=Reason.TERMINALS_UNAVAILABLE,
            )
        if not link.hello.screen:
            raise ServiceUnavailable(
                f"the holder of terminal {session.terminal_id} was started by an older hoodyd "
                "and keeps no screen; reset the terminal (reset=true) to read its screen",
                reason=Reason.TERMINALS_UNAVAILABLE,
            )
        return link

    def _is_tracked(self, session: TerminalSession) -> bool:
        tracked = self._tracked.get(session.terminal_id)
        return tracked is not None and tracked.session is session

    def _note(self, session: TerminalSession, info: object, *, built: bool) -> None:
        """Record what the holder said of its screen with its answer."""
        if not isinstance(info, dict):
            return
        terminal_id = session.terminal_id
        tracked = self._tracked.get(terminal_id)
        if tracked is not None and tracked.session is not session:
            del self._tracked[terminal_id]  # the terminal was reset: a new holder
            tracked = None
        if not info.get("active"):
            if tracked is not None:
                del self._tracked[terminal_id]
                self._evictions += 1  # the holder dropped it over its budget
            return
        if tracked is None:
            tracked = self._tracked[terminal_id] = Tracked(session)
            if built:
                log.info("vterm_created", terminal_id=terminal_id)
        tracked.used = time.monotonic()
        tracked.memory_bytes = int(info.get("memory_bytes", 0))
        self.trim()

    # emulator lifetimes

    def _make_room(self, session: TerminalSession) -> None:
        """Evict least recently used screens so a new one of this terminal's grid fits."""
        estimate = min(session.cols * session.rows * BYTES_PER_CELL, self._cap_bytes)
        used = sum(tracked.memory_bytes for tracked in self._tracked.values())
        for tracked in sorted(self._tracked.values(), key=lambda t: t.used):
            if used + estimate <= self._cap_bytes:
                break
            if self._waiters.get(tracked.session.terminal_id):
                continue
            used -= tracked.memory_bytes
            self._evictions += 1
            self._drop(tracked)

    def trim(self) -> None:
        """Drop screens unread for the idle TTL or of exited shells, then the least recently
        used ones while all of them together pass the memory cap (never one a wait is
        using)."""
        now = time.monotonic()
        for tracked in list(self._tracked.values()):
            waiting = self._waiters.get(tracked.session.terminal_id, 0)
            idle = now - tracked.used >= self._config.vterm_idle_ttl
            if not waiting and (idle or not tracked.session.running):
                self._drop(tracked)
        by_age = sorted(self._tracked.values(), key=lambda t: t.used)
        used = sum(t.memory_bytes for t in by_age)
        for tracked in by_age[:-1]:  # the one just read stays
            if used <= self._cap_bytes:
                break
            if self._waiters.get(tracked.session.terminal_id):
                continue
            used -= tracked.memory_bytes
            self._evictions += 1
            self._drop(tracked)

    def _drop(self, tracked: Tracked) -> None:
        """Forget the screen and tell its holder to drop it (without waiting for it)."""
        session = tracked.session
        if self._tracked.get(session.terminal_id) is tracked:
            del self._tracked[session.terminal_id]
        log.info("vterm_dropped", terminal_id=session.terminal_id)
        link = session.link
        if link is None or not link.hello.screen or not link.running:
            return
        task = asyncio.ensure_future(self._send_drop(link))
        self._drops.add(task)
        task.add_done_callback(self._drops.discard)

    @staticmethod
    async def _send_drop(link: HolderLink) -> None:
        with contextlib.suppress(HolderError):
            await link.screen({"op": "drop"}, SCREEN_DEADLINE)

    def forget(self, terminal_id: int) -> None:
        tracked = self._tracked.get(terminal_id)
        if tracked is not None:
            self._drop(tracked)


def _check_offset(scroll_offset: int) -> None:
    if scroll_offset < 0:
        raise InvalidRequest(
            "scroll_offset must be 0 or more",
            reason=Reason.OUT_OF_RANGE,
            extra={"field": "scroll_offset"},
        )


def check_pattern(pattern: str | None) -> str:
    """A pattern the request must carry, checked and compiled (`find.compile_pattern`) before
    anything waits on it."""
    if pattern is None or pattern == "":
        raise InvalidRequest("Missing 'pattern'", reason=Reason.MISSING_FIELD)
    compile_pattern(pattern)
    return pattern


def outcome_body(terminal_id: int, outcome: WaitOutcome) -> dict[str, Any]:
    """The wait's answer: status and timing, the match, and the snapshot's fields."""
    body: dict[str, Any] = {"success": True, "terminal_id": str(terminal_id)}
    if outcome.snapshot is not None:
        body.update(outcome.snapshot)
    body["status"] = outcome.status
    body["elapsed_ms"] = outcome.elapsed_ms
    if outcome.match is not None:
        body["match"] = outcome.match
    return body
