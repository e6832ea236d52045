"""A terminal's command: its lifecycle as explicit states and the moves between them, what it
captured of the output, and the record a restarted hoodyd resumes it from.

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
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

import msgspec

from hoodyd.schemas.terminal import (
    CommandResult,
    CommandStatus,
    DeferInfo,
    DeferMethod,
    DeferOutcomeName,
    DeferSpec,
)
from hoodyd.terminals import defer as defer_wait
from hoodyd.terminals import shells


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


# Terminal mode switches readline prints around each command line; not the command's output.
_READLINE_NOISE = re.compile(rb"\x1b\[\?2004[hl]\r?")
# fish sets the window title and resets colours after its preexec hook, so just after the
# command-started marker; that is fish's, not the command's output.
_FISH_PREFIX = re.compile(rb"^(?:\x1b\][^\x07]*\x07|\x1b\[[0-9;]*m|\x1b\(B|\r)*")
# zsh's line editor resets attributes and clears the line before it draws the prompt (and so
# before the prompt marker); that is the editor's, not the command's output.
_ZSH_SUFFIX = re.compile(rb"(?:\r|\x1b\[[0-9;]*[mJK])+$")
# what the shell echoes of a marked line: the mark it was typed with
_ECHOED_MARK = re.compile(rb"__hoodyd_c[= ]([0-9]+); ")


def rfc3339(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z")


class CommandRecord(msgspec.Struct, kw_only=True):
    """A command that is not final yet, as the holder keeps it for a restarted hoodyd."""

    id: int
    command: str
    line: str
    output_limit: int
    shell_kind: str
    defer: DeferSpec | None = None
    origin: str | None = None
    defer_method: DeferMethod = "pidfd"
    status: CommandStatus = "queued"
    error: str | None = None
    accepted_at: float
    started_at: float | None = None
    injected_offset: int = 0
    prompt_seq_at_injection: int = 0
    mark: int = 0


@dataclass(eq=False)
class Command:
    """A command from acceptance to its final state."""

    id: int
    terminal_id: int
    command: str
    line: str  # what is typed into the PTY (command, or wrapped with cwd/env)
    output_limit: int
    shell_kind: str = "bash"
    defer: DeferSpec | None = None
    origin: str | None = None
    defer_method: DeferMethod = "pidfd"
    defer_outcome: DeferOutcomeName = "waiting"
    lifecycle: Lifecycle = field(default_factory=Lifecycle)
    exit_code: int | None = None
    timed_out: bool = False  # a wait for it ended first, or its defer timed out
    error: str | None = None
    accepted_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    # monotonic instants for measurements (bench/terminals.py)
    injected_mono: float | None = None
    first_output_mono: float | None = None
    # the session's output offset when the line was typed (a restarted hoodyd replays from it)
    injected_offset: int = 0
    stdout: bytearray = field(default_factory=bytearray)
    truncated: bool = False
    preamble: bytearray = field(default_factory=bytearray)
    started_seen: bool = False
    prompt_seq_at_injection: int = 0
    # typed with the line; the prompt that follows it reports it (0: not typed yet)
    mark: int = 0
    foreign_end: int = 0  # the preamble up to here is other lines' output
    after_foreign: bool = False  # another line's prompt came after this one was typed
    defer_task: asyncio.Task[defer_wait.DeferOutcome] | None = None
    parse_task: asyncio.Task[shells.SyntaxProblem | None] | None = None

    @property
    def final(self) -> bool:
        return self.lifecycle.final

    @property
    def status(self) -> CommandStatus:
        return self.lifecycle.status

    async def wait(self) -> None:
        """Return once the command is final."""
        await self.lifecycle.wait()

    def capture(self, data: bytes) -> None:
        if self.first_output_mono is None:
            self.first_output_mono = time.monotonic()
        room = self.output_limit - len(self.stdout)
        if len(data) > room:
            self.truncated = True
            data = data[: max(0, room)]
        self.stdout += data

    def finish(self, event: Event, exit_code: int | None, *, error: str | None = None) -> None:
        """End the command by `event` (complete, fail, time out, abort); the first final state
        holds, a later one changes nothing."""
        if self.final:
            return
        self.exit_code = exit_code
        self.error = error
        self.finished_at = time.time()
        if self.defer_task is not None and not self.defer_task.done():
            self.defer_task.cancel()
        self.lifecycle.move(event)

    def stdout_text(self) -> str:
        raw = bytes(self.stdout)
        if not self.started_seen and self.preamble:
            # No command-started marker (a syntax error, or a shell without one): what
            # followed the echoed command line is what the shell printed for it.
            raw = self._after_echo(bytes(self.preamble))
        if self.shell_kind == "fish":
            raw = _FISH_PREFIX.sub(b"", raw, count=1)
        elif self.shell_kind == "zsh":
            raw = _ZSH_SUFFIX.sub(b"", raw, count=1)
        raw = _READLINE_NOISE.sub(b"", raw).replace(b"\r\n", b"\n")
        return raw.decode("utf-8", errors="replace")

    def _after_echo(self, preamble: bytes) -> bytes:
        """The preamble after the echo of this command's line (found by its mark: the
        terminal may echo it before the output of lines typed ahead of it) and after the
        output of those lines."""
        echo = _ECHOED_MARK.search(preamble, 0) if self.mark else None
        while echo is not None and int(echo.group(1)) != self.mark:
            echo = _ECHOED_MARK.search(preamble, echo.end())
        line_end = preamble.find(b"\n", echo.end() if echo is not None else 0)
        start = len(preamble) if line_end < 0 else line_end + 1
        return preamble[max(start, self.foreign_end) :]

    def record(self) -> CommandRecord:
        return CommandRecord(
            id=self.id,
            command=self.command,
            line=self.line,
            output_limit=self.output_limit,
            shell_kind=self.shell_kind,
            defer=self.defer,
            origin=self.origin,
            defer_method=self.defer_method,
            status=self.status,
            error=self.error,
            accepted_at=self.accepted_at,
            started_at=self.started_at,
            injected_offset=self.injected_offset,
            prompt_seq_at_injection=self.prompt_seq_at_injection,
            mark=self.mark,
        )

    @classmethod
    def from_record(cls, record: CommandRecord, terminal_id: int) -> Command:
        return cls(
            id=record.id,
            terminal_id=terminal_id,
            command=record.command,
            line=record.line,
            output_limit=record.output_limit,
            shell_kind=record.shell_kind,
            defer=record.defer,
            origin=record.origin,
            defer_method=record.defer_method,
            lifecycle=Lifecycle.restored(record.status),
            error=record.error,
            accepted_at=record.accepted_at,
            started_at=record.started_at,
            injected_offset=record.injected_offset,
            prompt_seq_at_injection=record.prompt_seq_at_injection,
            mark=record.mark,
        )

    def forget_output(self) -> None:
        """What was captured belonged to another line (one typed by other means ran first)."""
        self.stdout.clear()
        self.truncated = False
        self.started_seen = False
        self.lifecycle.move(Event.FOREIGN)
        self.first_output_mono = None
        # the output so far is that line's; the echo of this command's own line may be in it
        self.foreign_end = len(self.preamble)
        self.after_foreign = True

    def result(self) -> CommandResult:
        duration = None
        if self.started_at is not None and self.finished_at is not None:
            duration = round((self.finished_at - self.started_at) * 1000, 3)
        defer_info = None
        if self.defer is not None:
            defer_info = DeferInfo(
                pid=self.defer.pid,
                start_time_ticks=self.defer.start_time_ticks,
                timeout_ms=self.defer.timeout_ms,
                poll_ms=self.defer.poll_ms,
                method=self.defer_method,
                outcome=self.defer_outcome,
            )
        return CommandResult(
            command_id=str(self.id),
            terminal_id=str(self.terminal_id),
            command=self.command,
            status=self.status,
            exit_code=self.exit_code,
            stdout=self.stdout_text(),
            timed_out=self.timed_out,
            output_truncated=self.truncated,
            accepted_at=rfc3339(self.accepted_at) or "",
            started_at=rfc3339(self.started_at),
            finished_at=rfc3339(self.finished_at),
            duration_ms=duration,
            defer=defer_info,
            error=self.error,
            origin=self.origin,
        )
