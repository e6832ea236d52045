"""A command's lifecycle as explicit states and the moves between them.

    accepted ──defer──▶ deferred ──release──▶ accepted
    accepted ──type──▶ typed ──start──▶ running ──foreign──▶ typed
    accepted | typed | running ──complete──▶ completed
    deferred ──time_out──▶ timed_out
    accepted | deferred ──abort──▶ aborted
    any state not final ──fail──▶ failed

`accepted` waits its turn (and the shell's parse check), `deferred` waits for a process to exit,
`typed` is a line written to the PTY whose command-started marker has not come yet (or that
another line's prompt overtook: `foreign`), `running` has its marker. A command whose parse
check fails completes from `accepted` with the shell's status, untyped. The four final states
absorb every later event (a prompt, a marker or an exit that comes after the end changes
nothing); any other move not in the table is refused with `IllegalMove`, as a fault of the
caller. On the wire `accepted` reads `queued`, `deferred` reads `pending`, `typed` and `running`
read `running`, and `aborted` reads `failed`.
"""

from __future__ import annotations

import asyncio
from enum import StrEnum

from hoodyd.schemas.terminal import CommandStatus


class Phase(StrEnum):
    ACCEPTED = "accepted"
    DEFERRED = "deferred"
    TYPED = "typed"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    ABORTED = "aborted"


class Event(StrEnum):
    DEFER = "defer"  # it waits for a process to exit first
    RELEASE = "release"  # that process exited (or was gone): it waits its turn again
    TYPE = "type"  # its line was written to the PTY
    START = "start"  # the shell's command-started marker came
    FOREIGN = "foreign"  # the prompt of a line typed by other means came first
    COMPLETE = "complete"  # its prompt came (or the parse check answered for the shell)
    FAIL = "fail"  # the shell exited or was replaced, the terminal went, an internal error
    TIME_OUT = "time_out"  # the process it waited for was still running at the deadline
    ABORT = "abort"  # stopped before it was typed


FINAL = frozenset({Phase.COMPLETED, Phase.FAILED, Phase.TIMED_OUT, Phase.ABORTED})

MOVES: dict[tuple[Phase, Event], Phase] = {
    (Phase.ACCEPTED, Event.DEFER): Phase.DEFERRED,
    (Phase.DEFERRED, Event.RELEASE): Phase.ACCEPTED,
    (Phase.ACCEPTED, Event.TYPE): Phase.TYPED,
    (Phase.TYPED, Event.START): Phase.RUNNING,
    (Phase.TYPED, Event.FOREIGN): Phase.TYPED,
    (Phase.RUNNING, Event.FOREIGN): Phase.TYPED,
    (Phase.ACCEPTED, Event.COMPLETE): Phase.COMPLETED,
    (Phase.TYPED, Event.COMPLETE): Phase.COMPLETED,
    (Phase.RUNNING, Event.COMPLETE): Phase.COMPLETED,
    (Phase.DEFERRED, Event.TIME_OUT): Phase.TIMED_OUT,
    (Phase.ACCEPTED, Event.ABORT): Phase.ABORTED,
    (Phase.DEFERRED, Event.ABORT): Phase.ABORTED,
    **{(phase, Event.FAIL): Phase.FAILED for phase in Phase if phase not in FINAL},
}

WIRE: dict[Phase, CommandStatus] = {
    Phase.ACCEPTED: "queued",
    Phase.DEFERRED: "pending",
    Phase.TYPED: "running",
    Phase.RUNNING: "running",
    Phase.COMPLETED: "completed",
    Phase.FAILED: "failed",
    Phase.TIMED_OUT: "timed_out",
    Phase.ABORTED: "failed",
}


class IllegalMove(RuntimeError):
    """A move the lifecycle does not have (a fault of the code that asked for it)."""

    def __init__(self, phase: Phase, event: Event) -> None:
        super().__init__(f"a command in state {phase} cannot take {event}")
        self.phase = phase
        self.event = event


class Lifecycle:
    """One command's state; `wait()` returns once it is final."""

    __slots__ = ("_final", "phase")

    def __init__(self, phase: Phase = Phase.ACCEPTED) -> None:
        self.phase = phase
        self._final = asyncio.Event()
        if phase in FINAL:
            self._final.set()

    @classmethod
    def restored(cls, status: CommandStatus) -> Lifecycle:
        """The state a restarted hoodyd resumes from a recorded wire status: a line recorded
        as running was typed (its prompt in the replayed output completes it); any other
        unfinished command waits its turn again."""
        return cls(Phase.TYPED if status == "running" else Phase.ACCEPTED)

    @property
    def final(self) -> bool:
        return self.phase in FINAL

    @property
    def status(self) -> CommandStatus:
        return WIRE[self.phase]

    def can(self, event: Event) -> bool:
        return (self.phase, event) in MOVES

    def move(self, event: Event) -> bool:
        """Take `event`: True when the state changed or stayed by a move of the table, False
        when the command was already final (the event is absorbed); `IllegalMove` otherwise."""
        if self.final:
            return False
        target = MOVES.get((self.phase, event))
        if target is None:
            raise IllegalMove(self.phase, event)
        self.phase = target
        if target in FINAL:
            self._final.set()
        return True

    async def wait(self) -> None:
        await self._final.wait()
