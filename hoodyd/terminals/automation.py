"""Screen emulators for the sessions an automation client reads: created on first use by
replaying the session's output buffer, fed from then on with everything the shell prints,
bounded together in memory, and the waiters that block until a screen settles or shows a
pattern.

An emulator costs CPU for every byte its session prints, so one exists only while someone
reads that screen: it is dropped after `vterm_idle_ttl` seconds unread, or, least recently
used first, when all of them together pass `vterm_memory_cap_mb`; the next read rebuilds it
from the buffer. A wait whose emulator is dropped under it answers `vterm_reinit`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import msgspec
import structlog

from hoodyd.config import TerminalsConfig
from hoodyd.errors import Conflict, InvalidRequest, Reason
from hoodyd.schemas.automation import (
    MAX_WAITERS_PER_SESSION,
    AutomationMetrics,
    AutomationState,
    WaitBody,
    WaitStatus,
)
from hoodyd.schemas.queries import FindScope
from hoodyd.terminals.find import FindResult, compile_pattern, find
from hoodyd.terminals.screen import Snapshot, VirtualScreen
from hoodyd.terminals.session import TerminalSession

log = structlog.get_logger()

# Output replayed into a new emulator: enough for any screen and a good part of its
# scrollback, without parsing a whole megabyte of old output on the first read.
REPLAY_BYTES = 512 * 1024
# time one regular expression may take over one screen before the wait gives it up
WAIT_MATCH_TIMEOUT = 0.1


@dataclass(eq=False)
class Tracked:
    """One session's emulator and who waits on it."""

    session: TerminalSession
    screen: VirtualScreen
    used: float = field(default_factory=time.monotonic)
    waiters: int = 0
    dropped: bool = False
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def feed(self, data: bytes) -> None:
        before = self.screen.update_seq
        self._fit()
        self.screen.feed(data)
        if self.screen.update_seq != before:
            self.pulse()

    def pulse(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()

    def _fit(self) -> None:
        session = self.session
        if (self.screen.cols, self.screen.rows) != (session.cols, session.rows):
            self.screen.resize(session.cols, session.rows)

    def read(self) -> VirtualScreen:
        self._fit()
        self.used = time.monotonic()
        return self.screen


@dataclass(frozen=True, slots=True)
class WaitOutcome:
    status: WaitStatus
    elapsed_ms: float
    snapshot: Snapshot | None
    match: FindResult | None = None


class ScreenAutomation:
    def __init__(self, config: TerminalsConfig) -> None:
        self._config = config
        self._tracked: dict[int, Tracked] = {}
        self._evictions = 0
        self._trimmer: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._trimmer = asyncio.create_task(self._trim_regularly(), name="vterm-trimmer")

    async def close(self) -> None:
        if self._trimmer is not None:
            self._trimmer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._trimmer
        for tracked in list(self._tracked.values()):
            self._drop(tracked)

    async def _trim_regularly(self) -> None:
        while True:
            await asyncio.sleep(min(30.0, max(0.05, self._config.vterm_idle_ttl / 4)))
            self.trim()

    @property
    def _cap_bytes(self) -> int:
        return self._config.vterm_memory_cap_mb * 1024 * 1024

    # reading

    def screen(self, session: TerminalSession) -> VirtualScreen:
        return self._track(session).read()

    def snapshot(
        self,
        session: TerminalSession,
        *,
        include_colors: bool,
        include_highlights: bool,
        scroll_offset: int,
    ) -> Snapshot:
        screen = self.screen(session)
        return screen.snapshot(
            include_colors=include_colors,
            include_highlights=include_highlights,
            scroll_offset=scroll_offset,
        )

    def find(
        self,
        session: TerminalSession,
        pattern: str,
        *,
        scope: FindScope,
        limit: int,
        case_insensitive: bool,
        scroll_offset: int,
    ) -> FindResult:
        screen = self.screen(session)
        return find(
            screen,
            pattern,
            scope=scope,
            limit=limit,
            case_insensitive=case_insensitive,
            scroll_offset=scroll_offset,
        )

    async def wait(self, session: TerminalSession, request: WaitBody) -> WaitOutcome:
        """Block until the screen is quiet for `debounce_ms` (stable), shows `pattern`
        (regex), whichever comes first (either), the shell exits, or the deadline."""
        if request.mode != "stable":
            check_pattern(request.pattern)
        tracked = self._track(session)
        if tracked.waiters >= MAX_WAITERS_PER_SESSION:
            raise Conflict(
                f"Terminal {session.terminal_id} already has {MAX_WAITERS_PER_SESSION} "
                "waiters; wait for one of them to finish",
                reason=Reason.TOO_MANY_WAITERS,
            )
        tracked.waiters += 1
        try:
            return await self._wait(tracked, request)
        finally:
            tracked.waiters -= 1

    async def _wait(self, tracked: Tracked, request: WaitBody) -> WaitOutcome:
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + request.timeout_ms / 1000
        debounce = request.debounce_ms / 1000
        # the screen's own clock is time.monotonic(), the loop's too on Linux
        quiet_since = started

        def outcome(status: WaitStatus, match: FindResult | None = None) -> WaitOutcome:
            elapsed = round((loop.time() - started) * 1000, 3)
            if tracked.dropped:
                return WaitOutcome("vterm_reinit", elapsed, None)
            snapshot = tracked.read().snapshot(
                include_colors=request.include_colors,
                include_highlights=request.include_highlights,
                scroll_offset=0,
            )
            return WaitOutcome(status, elapsed, snapshot, match)

        while True:
            if tracked.dropped:
                return outcome("vterm_reinit")
            changed = tracked.changed
            screen = tracked.read()
            if request.mode != "stable":
                assert request.pattern is not None
                hits = find(
                    screen,
                    request.pattern,
                    scope=request.search_scope,
                    limit=1,
                    case_insensitive=False,
                    scroll_offset=0,
                    timeout=WAIT_MATCH_TIMEOUT,
                )
                if hits.hits:
                    return outcome("matched", hits)
            now = loop.time()
            quiet_since = max(quiet_since, screen.last_damage)
            if request.mode != "regex" and now - quiet_since >= debounce:
                return outcome("stable")
            if not tracked.session.running:
                return outcome("exited")
            if now >= deadline:
                return outcome("timeout")
            sleep = deadline - now
            if request.mode != "regex":
                sleep = min(sleep, quiet_since + debounce - now)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), max(sleep, 0.001))

    # state

    def state(self, session: TerminalSession) -> AutomationState:
        tracked = self._tracked.get(session.terminal_id)
        active = tracked is not None and tracked.session is session
        screen = tracked.screen if tracked is not None and active else None
        last = None if screen is None else round((time.monotonic() - screen.last_damage) * 1000)
        return AutomationState(
            terminal_id=str(session.terminal_id),
            vterm_active=screen is not None,
            cols=session.cols,
            rows=session.rows,
            update_seq=screen.update_seq if screen is not None else 0,
            last_damage_ms_ago=last,
            alt_screen=screen.alt_screen if screen is not None else False,
            title=screen.title if screen is not None else "",
            scrollback_count=screen.scrollback_count if screen is not None else 0,
            scrollback_capacity=self._config.vterm_scrollback_lines,
            waiter_count=tracked.waiters if tracked is not None and active else 0,
            estimated_memory_kb=(
                round(screen.estimated_memory_bytes() / 1024, 1) if screen is not None else 0.0
            ),
            vterm_pending_teardown=tracked is not None and tracked.dropped,
            application_cursor=screen.application_cursor if screen is not None else False,
            application_keypad=screen.application_keypad if screen is not None else False,
            bracketed_paste=screen.bracketed_paste if screen is not None else False,
            mouse_tracking=screen.mouse_tracking if screen is not None else None,
        )

    def metrics(self) -> AutomationMetrics:
        used = sum(t.screen.estimated_memory_bytes() for t in self._tracked.values())
        return AutomationMetrics(
            vterm_sessions_active=len(self._tracked),
            vterm_memory_bytes_used=used,
            vterm_memory_mb_used=round(used / (1024 * 1024), 3),
            vterm_memory_mb_cap=self._config.vterm_memory_cap_mb,
            vterm_idle_ttl_sec=self._config.vterm_idle_ttl,
            vterm_evictions=self._evictions,
            wait_waiters_active=sum(t.waiters for t in self._tracked.values()),
        )

    # emulator lifetimes

    def _track(self, session: TerminalSession) -> Tracked:
        tracked = self._tracked.get(session.terminal_id)
        if tracked is not None and tracked.session is session:
            return tracked
        if tracked is not None:
            self._drop(tracked)  # the terminal was reset: a new shell, a new screen
        screen = VirtualScreen(
            session.cols, session.rows, scrollback_lines=self._config.vterm_scrollback_lines
        )
        ring = session.ring
        screen.feed(ring.read(ring.tail(REPLAY_BYTES), REPLAY_BYTES).data)
        tracked = Tracked(session, screen)
        session.output_listeners.append(tracked.feed)
        session.exit_listeners.append(tracked.pulse)
        self._tracked[session.terminal_id] = tracked
        log.info(
            "vterm_created",
            terminal_id=session.terminal_id,
            replayed=min(ring.end - ring.start, REPLAY_BYTES),
        )
        self.trim()
        return tracked

    def trim(self) -> None:
        """Drop emulators unread for the idle TTL, then the least recently used ones while
        all of them together pass the memory cap (never one a wait is using)."""
        now = time.monotonic()
        for tracked in list(self._tracked.values()):
            idle = now - tracked.used >= self._config.vterm_idle_ttl
            if (idle and tracked.waiters == 0) or (
                not tracked.session.running and not tracked.waiters
            ):
                self._drop(tracked)
        by_age = sorted(self._tracked.values(), key=lambda t: t.used)
        used = sum(t.screen.estimated_memory_bytes() for t in by_age)
        for tracked in by_age[:-1]:  # the one just read stays
            if used <= self._cap_bytes:
                break
            if tracked.waiters:
                continue
            used -= tracked.screen.estimated_memory_bytes()
            self._evictions += 1
            self._drop(tracked)

    def _drop(self, tracked: Tracked) -> None:
        tracked.dropped = True
        tracked.pulse()
        session = tracked.session
        if tracked.feed in session.output_listeners:
            session.output_listeners.remove(tracked.feed)
        if tracked.pulse in session.exit_listeners:
            session.exit_listeners.remove(tracked.pulse)
        if self._tracked.get(session.terminal_id) is tracked:
            del self._tracked[session.terminal_id]
        log.info("vterm_dropped", terminal_id=session.terminal_id)

    def forget(self, terminal_id: int) -> None:
        tracked = self._tracked.get(terminal_id)
        if tracked is not None:
            self._drop(tracked)


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
        body.update(msgspec.to_builtins(outcome.snapshot))
    body["status"] = outcome.status
    body["elapsed_ms"] = outcome.elapsed_ms
    if outcome.match is not None and outcome.match.hits:
        body["match"] = msgspec.to_builtins(outcome.match.hits[0])
    return body
