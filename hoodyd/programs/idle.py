"""Scale to zero: stop the port instances of a program with `idle_stop_after` that nobody has
started, or touched with an `if_not_running` start, for that many seconds.

A reverse proxy keeps an instance alive by asking for it (`start` with `if_not_running`) on
the requests it forwards; once the requests stop, so does the instance. The clock of an
instance starts again whenever it is seen RUNNING anew (a start from any source, a restart by
supervisord) and whenever a start request names it; it is forgotten once it stops.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

import structlog

from hoodyd.errors import HoodydError
from hoodyd.programs.observer import Transition
from hoodyd.schemas.daemon import Program, StopRequest
from hoodyd.tasks import cancel_and_wait

log = structlog.get_logger()

# how often idle instances are looked for; the stop lands at most this late
CHECK_INTERVAL_S = 0.5
STOPPED_STATES = frozenset({"STOPPED", "EXITED", "FATAL"})


class Owners(Protocol):
    """Which program and port own a supervisord process name (`ProgramTable`)."""

    def owner(self, name: str) -> tuple[Program, int | None] | None: ...


class Programs(Protocol):
    """The part of the program service the reaper uses."""

    def get(self, program_id: int) -> Program: ...

    async def stop(self, program_id: int, request: StopRequest) -> list[str]: ...


class IdleReaper:
    def __init__(
        self,
        programs: Programs,
        owners: Owners,
        subscribe: Callable[[Callable[[Transition], None]], Callable[[], None]],
        *,
        interval: float = CHECK_INTERVAL_S,
    ) -> None:
        self._programs = programs
        self._owners = owners
        self._subscribe = subscribe
        self._interval = interval
        # (program id, port) -> monotonic time of the last start or touch
        self._touched: dict[tuple[int, int], float] = {}
        self._unsubscribe: Callable[[], None] | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._unsubscribe = self._subscribe(self._on_transition)
        self._task = asyncio.create_task(self._reap_forever())

    async def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        await cancel_and_wait(self._task)

    def touch(self, program: Program, port: int | None) -> None:
        """A start request named this instance: its idle clock starts again."""
        if port is not None and program.idle_stop_after is not None:
            self._touched[(program.id, port)] = time.monotonic()

    def _on_transition(self, change: Transition) -> None:
        owner = self._owners.owner(change.name)
        if owner is None or owner[1] is None:
            return
        key = (owner[0].id, owner[1])
        if change.state == "RUNNING":
            self._touched[key] = time.monotonic()
        elif change.state in STOPPED_STATES:
            self._touched.pop(key, None)

    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            for program_id, port in self._due(time.monotonic()):
                await self._stop(program_id, port)

    def _due(self, now: float) -> list[tuple[int, int]]:
        due = []
        for (program_id, port), touched in list(self._touched.items()):
            try:
                idle = self._programs.get(program_id).idle_stop_after
            except HoodydError:  # the program was removed
                idle = None
            if idle is None:
                del self._touched[(program_id, port)]
            elif now - touched >= idle:
                due.append((program_id, port))
        return due

    async def _stop(self, program_id: int, port: int) -> None:
        self._touched.pop((program_id, port), None)
        try:
            stopped = await self._programs.stop(program_id, StopRequest(port=port))
        except HoodydError as exc:
            log.warning("idle_stop_failed", program_id=program_id, port=port, error=exc.message)
            return
        if stopped:
            log.info("idle_stopped", program_id=program_id, port=port)
