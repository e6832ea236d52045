"""Start-order dependencies between programs: the graph's rules, its order, and the wait for a
dependency's condition.

A program names the programs it needs (`depends_on`, by name) and what each must have reached
before it starts: `started` (its process is up), `ready` (its readiness probe passed, or without
one supervisord's RUNNING) or `exited_ok` (it ran and exited with status 0). The graph is checked
on every add and edit (names known, no cycle); starts walk it depth first, each dependency
started through the same start a caller would use, so its own dependencies come first and its
program lock is taken and released on its own: no lock is held across another program's start.

A program that another waits on with `exited_ok` is a one-shot job (`exit_targets`): it is
registered so that supervisord takes any exit, however quick, as an exit (not as a failed start
to retry), and never restarts it, so it runs once per start. Waits for one job's exit are taken
one at a time, so dependents that start together see it run once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass

from hoodyd.errors import HoodydError, InvalidRequest, Reason, UpstreamFailed, WaitTimeout
from hoodyd.polling import poll_until
from hoodyd.schemas.daemon import Dependency, Program, StartRequest

DEPENDENCY_POLL_S = 0.05
# states after which a dependency that should be up is not coming: a start failed for good,
# or it exited (STOPPED: someone stopped it while its dependent waited)
GIVEN_UP = frozenset({"FATAL", "EXITED", "STOPPED"})


def check_dependencies(program: Program, everyone: Iterable[Program]) -> None:
    """The program's dependencies name existing standard programs and close no cycle, and a
    program others depend on keeps its name. 400 otherwise. `everyone`: the programs as they
    are (the stored version of `program` among them, on an edit)."""
    stored = [other for other in everyone]
    previous = next((other for other in stored if other.id == program.id), None)
    by_name = {other.name: other for other in stored if other.id != program.id}
    if previous is not None and previous.name != program.name:
        leaning = [o.name for o in by_name.values() if _names(o, previous.name)]
        if leaning:
            raise InvalidRequest(
                f"{previous.name} cannot be renamed: {', '.join(leaning)} depend on it",
                reason=Reason.DEPENDED_ON,
                extra={"dependents": leaning},
            )
    for dependency in program.depends_on or []:
        if dependency.program == program.name:
            raise InvalidRequest(
                f"{program.name} cannot depend on itself",
                reason=Reason.DEPENDENCY_CYCLE,
                extra={"cycle": [program.name, program.name]},
            )
        target = by_name.get(dependency.program)
        if target is None:
            raise InvalidRequest(
                f"depends_on names an unknown program: {dependency.program!r}",
                reason=Reason.UNKNOWN_DEPENDENCY,
                extra={"dependency": dependency.program},
            )
        if target.port_range is not None:
            raise InvalidRequest(
                f"{dependency.program} is a port-range program: it has no one process to "
                "depend on",
                reason=Reason.UNKNOWN_DEPENDENCY,
                extra={"dependency": dependency.program},
            )
    if program.port_range is not None and any(_names(o, program.name) for o in by_name.values()):
        raise InvalidRequest(
            f"{program.name} is depended on: it cannot have a port_range",
            reason=Reason.DEPENDED_ON,
        )
    graph = {**by_name, program.name: program}
    cycle = _cycle_through(program.name, graph)
    if cycle:
        raise InvalidRequest(
            "depends_on would close a cycle: " + " -> ".join(cycle),
            reason=Reason.DEPENDENCY_CYCLE,
            extra={"cycle": cycle},
        )


def exit_targets(programs: Iterable[Program]) -> frozenset[str]:
    """The names of the programs some program waits on with `exited_ok`: its one-shot jobs."""
    return frozenset(
        dependency.program
        for program in programs
        for dependency in program.depends_on or []
        if dependency.condition == "exited_ok"
    )


def _names(program: Program, name: str) -> bool:
    return any(d.program == name for d in program.depends_on or [])


def _cycle_through(start: str, graph: Mapping[str, Program]) -> list[str]:
    """A path of names from `start` back to itself, if the graph has one (others were checked
    when they were added: a new cycle goes through the program that changed)."""
    path: list[str] = []
    seen: set[str] = set()

    def visit(name: str) -> bool:
        path.append(name)
        node = graph.get(name)
        for dependency in (node.depends_on or []) if node is not None else []:
            if dependency.program == start:
                path.append(start)
                return True
            if dependency.program not in seen:
                seen.add(dependency.program)
                if visit(dependency.program):
                    return True
        path.pop()
        return False

    return path if visit(start) else []


def dependents_of(program: Program, programs: Iterable[Program]) -> list[Program]:
    """Every program that depends on `program`, directly or through others, nearest first."""
    everything = list(programs)
    found: list[Program] = []
    names = {program.name}
    frontier = [program.name]
    while frontier:
        name = frontier.pop(0)
        for other in everything:
            if other.name in names:
                continue
            if _names(other, name):
                names.add(other.name)
                found.append(other)
                frontier.append(other.name)
    return found


def start_order(programs: Iterable[Program]) -> list[Program]:
    """The programs with every dependency before its dependents (ties by id)."""
    by_name = {program.name: program for program in programs}
    ordered: list[Program] = []
    placed: set[str] = set()

    def place(program: Program, trail: frozenset[str]) -> None:
        if program.name in placed or program.name in trail:
            return
        for dependency in program.depends_on or []:
            target = by_name.get(dependency.program)
            if target is not None:
                place(target, trail | {program.name})
        placed.add(program.name)
        ordered.append(program)

    for program in sorted(by_name.values(), key=lambda p: p.id):
        place(program, frozenset())
    return ordered


@dataclass(frozen=True, slots=True)
class Seen:
    """A dependency's process as last read: supervisord's state and exit status, and its
    health (`ready` once its readiness probe passed)."""

    state: str
    exitstatus: int | None
    health: str


Start = Callable[[int, StartRequest], Awaitable[object]]
Look = Callable[[Program], Awaitable[Seen]]


class DependencyStarter:
    """Brings a program's dependencies to their conditions before the program starts."""

    def __init__(
        self, programs: Callable[[], Iterable[Program]], start: Start, look: Look
    ) -> None:
        self._programs = programs
        self._start = start
        self._look = look
        # one wait at a time for a job's exit: a second dependent finds it exited, not gone
        self._exit_waits: dict[str, asyncio.Lock] = {}

    async def satisfy(self, program: Program, timeout: float) -> None:
        """Start each dependency (and, through its own start, its dependencies) and wait for
        its condition, all within `timeout` seconds; the first that fails or does not meet its
        condition in time fails the start, named in the error."""
        if not program.depends_on:
            return
        deadline = time.monotonic() + timeout
        by_name = {p.name: p for p in self._programs()}
        for dependency in program.depends_on:
            target = by_name.get(dependency.program)
            if target is None:  # removed with `force` since
                raise _failed(program, dependency, "does not exist", None)
            if dependency.condition != "exited_ok":
                await self._meet(program, target, dependency, deadline)
                continue
            lock = self._exit_waits.setdefault(target.name, asyncio.Lock())
            try:
                await asyncio.wait_for(lock.acquire(), max(deadline - time.monotonic(), 0.0))
            except TimeoutError:
                raise _timed_out(program, target, dependency, await self._look(target)) from None
            try:
                await self._meet(program, target, dependency, deadline)
            finally:
                lock.release()

    async def _meet(
        self, program: Program, target: Program, dependency: Dependency, deadline: float
    ) -> None:
        seen = await self._look(target)
        if dependency.condition == "exited_ok" and _exited_ok(seen):
            return
        if seen.state not in ("STARTING", "RUNNING"):
            remaining = max(1, int(deadline - time.monotonic() + 0.999))
            try:
                await self._start(
                    target.id, StartRequest(if_not_running=True, timeout=min(remaining, 300))
                )
            except HoodydError as exc:
                if exc.reason == Reason.DEPENDENCY_FAILED:
                    raise  # a dependency further down: already named
                raise _failed(program, dependency, f"did not start: {exc.message}", None) from exc
        last: list[Seen] = [seen]

        async def met() -> bool | None:
            now = await self._look(target)
            last[0] = now
            verdict = _verdict(dependency.condition, now)
            if verdict is False:
                why = f"is {now.state}"
                if now.state == "EXITED" and now.exitstatus is not None:
                    why = f"exited with status {now.exitstatus}"
                raise _failed(program, dependency, why, now)
            return verdict

        left = deadline - time.monotonic()
        if left <= 0 or not await poll_until(
            met, timeout=left, interval=DEPENDENCY_POLL_S
        ):
            raise _timed_out(program, target, dependency, last[0])


def _timed_out(
    program: Program, target: Program, dependency: Dependency, now: Seen
) -> WaitTimeout:
    return WaitTimeout(
        f"dependency {target.name} of {program.name} did not become "
        f"{dependency.condition} in time (state {now.state}, health {now.health})",
        reason=Reason.DEPENDENCY_FAILED,
        extra={
            "dependency": target.name,
            "condition": dependency.condition,
            "state": now.state,
            "health": now.health,
        },
    )


def _exited_ok(seen: Seen) -> bool:
    return seen.state == "EXITED" and seen.exitstatus == 0


def _verdict(condition: str, seen: Seen) -> bool | None:
    """True: the condition holds; None: not yet; False: it will not."""
    if condition == "exited_ok":
        if seen.state == "EXITED":
            return seen.exitstatus == 0
        return False if seen.state in ("FATAL", "STOPPED") else None
    if seen.state in GIVEN_UP:
        return False
    if condition == "started":
        return True if seen.state in ("STARTING", "RUNNING") else None
    return True if seen.state == "RUNNING" and seen.health == "ready" else None


def _failed(
    program: Program, dependency: Dependency, why: str, seen: Seen | None
) -> UpstreamFailed:
    extra: dict[str, object] = {"dependency": dependency.program, "condition": dependency.condition}
    if seen is not None:
        extra.update(state=seen.state, health=seen.health)
        if seen.exitstatus is not None:
            extra["exitstatus"] = seen.exitstatus
    return UpstreamFailed(
        f"dependency {dependency.program} of {program.name} {why}",
        reason=Reason.DEPENDENCY_FAILED,
        extra=extra,
    )
