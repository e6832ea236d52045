"""One terminal session: a shell held by its holder process, a mirror of its output buffer,
and its command queue.

The shell and its PTY belong to a holder process (`hoodyd.terminals.holder`), so they outlive
hoodyd; the session talks to it through a `HolderLink` and mirrors what it streams. Commands
are injected one at a time, in acceptance order, and only while the shell sits at its prompt;
the next prompt marker (with a prompt count past the one seen at injection) completes the
running command with the status the shell printed. Output between the shell's command-started
marker and that prompt is the command's stdout.

What a restarted hoodyd needs to carry on (the session's options, the commands not yet
final) is kept in the holder as a `SessionRecord`; re-adopting a holder replays its output
from the start of its buffer, which completes a command typed before the restart with the
status its prompt reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import signal
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import structlog

from hoodyd.schemas.terminal import (
    CommandResult,
    CommandStatus,
    DeferInfo,
    DeferMethod,
    DeferOutcomeName,
    DeferSpec,
    SessionInfo,
    SessionOptions,
)
from hoodyd.terminals import defer as defer_wait
from hoodyd.terminals import shells
from hoodyd.terminals.commands import Event, Lifecycle, Phase
from hoodyd.terminals.holder.markers import (
    CommandStarted,
    ContinuationPrompt,
    MarkerEvent,
    Output,
    PromptDrawn,
    PromptEnd,
)
from hoodyd.terminals.holder.ring import OutputRing
from hoodyd.terminals.link import HolderError, HolderLink
from hoodyd.terminals.shells import Shell
from hoodyd.terminals.spawn import HolderLauncher, spawn_holder

log = structlog.get_logger()

DEFER_TIMEOUT_EXIT_CODE = 124  # what `timeout(1)` reports: the command did not run in time
# Terminal mode switches readline prints around each command line; not the command's output.
_READLINE_NOISE = re.compile(rb"\x1b\[\?2004[hl]\r?")
_PREAMBLE_LIMIT = 64 * 1024
# fish sets the window title and resets colours after its preexec hook, so just after the
# command-started marker; that is fish's, not the command's output.
_FISH_PREFIX = re.compile(rb"^(?:\x1b\][^\x07]*\x07|\x1b\[[0-9;]*m|\x1b\(B|\r)*")
# zsh's line editor resets attributes and clears the line before it draws the prompt (and so
# before the prompt marker); that is the editor's, not the command's output.
_ZSH_SUFFIX = re.compile(rb"(?:\r|\x1b\[[0-9;]*[mJK])+$")
_REPLACED_CHECK = 0.5  # seconds between checks that a running command's shell is still ours
_SETTLE_DELAY = 0.25  # seconds without a prompt before typed lines are taken as read
_ECHOED_MARK = re.compile(rb"__hoodyd_c[= ]([0-9]+); ")
_BRACKETED_PASTE = re.compile(rb"\x1b\[200~.*?(?:\x1b\[201~|$)", re.DOTALL)


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


class ProgramRef(msgspec.Struct, frozen=True, kw_only=True):
    """The program supervisord runs in this terminal (`terminal_id` of a program)."""

    id: int
    name: str


class SessionRecord(msgspec.Struct, kw_only=True):
    """What a restarted hoodyd needs to carry on with a session, kept in its holder."""

    version: int = 1
    shell_kind: str
    shell_path: str
    cwd: str
    options: SessionOptions = msgspec.field(default_factory=SessionOptions)
    created_at: float = 0.0  # 0: a holder started by supervisord, its shell's start counts
    commands: list[CommandRecord] = msgspec.field(default_factory=list)
    program: ProgramRef | None = None


@dataclass(frozen=True, slots=True)
class Launch:
    """How to start a new session's holder and shell."""

    socket: Path
    argv: list[str]
    env: dict[str, str]
    log_path: Path | None
    user: str | None = None  # the shell's account, when not hoodyd's own
    keep_fds: tuple[int, ...] = ()  # descriptors the shell inherits
    launcher: HolderLauncher | None = None  # forks the holder (else a new interpreter)


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


class TerminalSession:
    def __init__(
        self,
        terminal_id: int,
        shell: Shell,
        options: SessionOptions,
        cwd: str,
        *,
        buffer_bytes: int,
        history_limit: int,
        created_at: float | None = None,
        program: ProgramRef | None = None,
    ) -> None:
        self.terminal_id = terminal_id
        self.shell = shell
        self.options = options
        self.cwd = cwd
        self.display = options.display
        self.program = program
        self.cols, self.rows = options.cols, options.rows
        self.ring = OutputRing(buffer_bytes)
        self.history: deque[Command] = deque(maxlen=history_limit)
        self.created_at = time.time() if created_at is None else created_at
        self.last_activity = time.time()
        self.exit_code: int | None = None
        self.clients = 0
        # called with each piece of output (the automation screen follows the session)
        self.output_listeners: list[Callable[[bytes], None]] = []
        self.exit_listeners: list[Callable[[], None]] = []
        self._link: HolderLink | None = None
        self._queue: asyncio.Queue[Command] = asyncio.Queue()
        self._current: Command | None = None  # injected, not yet complete
        self._head: Command | None = None  # taken from the queue, waiting for defer or prompt
        self._resumed: Command | None = None  # typed before a restart, found again in replay
        # the commands not final yet, oldest first (what the holder keeps for a restart)
        self._unfinished: list[Command] = []
        self._save_pending = False  # a record to send at the end of this loop turn
        self._prompt_seq = 0
        # marks typed with lines: random start, never repeated within a session
        self._next_mark = secrets.randbelow(1 << 30) + 1
        # input typed by other means left text on the line without Enter
        self._line_dirty = False
        # lines typed by other means whose prompt has not come yet (some may be read by a
        # program instead: a quiet shell in the foreground settles the count)
        self._typed_lines = 0
        self._markers_seen = 0
        self._settling: asyncio.TimerHandle | None = None
        self._at_continuation = False  # the shell asked for more lines of typed input
        self._ready = asyncio.Event()
        # the shell process was replaced (`exec`): its integration is gone
        self.replaced = False
        self._image: tuple[str, bytes] | None = None
        self._at_prompt = asyncio.Event()
        self._exited = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._parsing: set[asyncio.Task[shells.SyntaxProblem | None]] = set()
        self._use_pidfd = True
        self._log = log.bind(terminal_id=terminal_id)

    # lifecycle

    async def start(self, launch: Launch, *, use_pidfd: bool) -> None:
        """Start the session's holder (which starts the shell) and follow it."""
        self._use_pidfd = use_pidfd
        await spawn_holder(
            launch.socket,
            launch.argv,
            env=launch.env,
            cwd=self.cwd,
            terminal_id=self.terminal_id,
            cols=self.cols,
            rows=self.rows,
            ring_bytes=self.ring.capacity,
            meta=self._meta(),
            log_path=launch.log_path,
            user=launch.user,
            keep_fds=launch.keep_fds,
            launcher=launch.launcher,
            markers=True,
        )
        relay = _Relay(self)
        link = await HolderLink.connect(launch.socket, on_event=relay.event, on_exit=relay.exit)
        self._follow(link)
        self._log.info("terminal_started", shell=self.shell.kind, pid=self.pid, cwd=self.cwd)

    @classmethod
    async def adopt(
        cls,
        socket: Path,
        *,
        buffer_bytes: int,
        history_limit: int,
        use_pidfd: bool,
    ) -> TerminalSession:
        """Take over a session whose holder outlived the previous hoodyd: its shell, output
        and the commands that were not final, which resume where they were."""
        relay = _Relay(None)
        link = await HolderLink.connect(socket, on_event=relay.event, on_exit=relay.exit)
        hello = link.hello
        try:
            record = msgspec.convert(hello.meta, SessionRecord)
        except msgspec.ValidationError:
            await link.close()
            raise
        options = msgspec.structs.replace(record.options, cols=hello.cols, rows=hello.rows)
        session = cls(
            hello.terminal_id,
            Shell(record.shell_kind, record.shell_path),  # type: ignore[arg-type]
            options,
            record.cwd,
            buffer_bytes=buffer_bytes,
            history_limit=history_limit,
            created_at=record.created_at or hello.started_at,
            program=record.program,
        )
        session._use_pidfd = use_pidfd
        session._restore(record)
        relay.session = session
        session._follow(link)
        session._log.info(
            "terminal_adopted",
            pid=session.pid,
            exited=hello.exited,
            resumed=[command.id for command in session.history if not command.final],
        )
        return session

    def _restore(self, record: SessionRecord) -> None:
        for item in record.commands:
            self._next_mark = max(self._next_mark, item.mark + 1)
            command = Command.from_record(item, self.terminal_id)
            if command.lifecycle.phase is Phase.TYPED:
                self._resumed = command
                self.history.append(command)
                self._unfinished.append(command)
                self._queue.put_nowait(command)
            else:
                self.submit(command, self._use_pidfd)

    def _follow(self, link: HolderLink) -> None:
        self._link = link
        hello = link.hello
        self.ring.restart_at(hello.ring_start)
        if self._resumed is not None and self._resumed.injected_offset >= hello.ring_end:
            self._current = self._resumed
            self._resumed = None
        self._worker = asyncio.create_task(self._run_queue(), name=f"terminal-{self.terminal_id}")
        link.follow(None)
        self._image = self._shell_image()

    async def wait_ready(self, timeout: float) -> bool:
        """Wait for the shell's first prompt (its integration is then active)."""
        waits = [
            asyncio.ensure_future(self._ready.wait()),
            asyncio.ensure_future(self._exited.wait()),
        ]
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waits:
                waiter.cancel()
        return self._ready.is_set() and self.running

    async def close(self, reason: str) -> int | None:
        """Hang up the shell and end its holder, fail what is still queued, stop the queue."""
        code = self.exit_code
        if self._link is not None:
            try:
                code = await self._link.terminate()
            except asyncio.CancelledError:
                if self._worker is not None:
                    self._worker.cancel()  # the link has let go; so does the queue
                raise
        if self.running:
            self._on_exit(code)
        await self._stop_worker()
        return code

    async def detach(self) -> None:
        """hoodyd is stopping: leave the shell, its holder and its queue's record behind for
        the next hoodyd; nothing is failed."""
        for command in list(self.history):
            if command.defer_task is not None:
                command.defer_task.cancel()
        await self._stop_worker()
        if self._link is not None:
            await self._link.close()

    async def _stop_worker(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        # parse checks are short child processes: let them end rather than orphan them
        await asyncio.gather(*self._parsing, return_exceptions=True)

    @property
    def running(self) -> bool:
        return not self._exited.is_set()

    @property
    def pid(self) -> int:
        return self._link.shell_pid if self._link is not None else 0

    @property
    def holder_pid(self) -> int:
        return self._link.hello.holder_pid if self._link is not None else 0

    @property
    def link(self) -> HolderLink | None:
        """The link to the session's holder (its screen is asked through it)."""
        return self._link

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    @property
    def busy(self) -> bool:
        if not self.running:
            return False  # an exited shell runs nothing
        return self._current is not None or not self._at_prompt.is_set()

    @property
    def _head_waiting(self) -> bool:
        head = self._head
        return head is not None and not head.final and head is not self._current

    @property
    def idle(self) -> bool:
        """At its prompt with nothing queued: the ephemeral reaper may collect it."""
        return (
            self.running
            and self._queue.empty()
            and not self._head_waiting
            and not self.busy
            and self.clients == 0
        )

    # commands

    def submit(self, command: Command, use_pidfd: bool) -> None:
        """Accept `command`: its parse check and defer wait start now, its injection waits
        its turn (so a deferred command is typed the moment its PID exits)."""
        if not shells.plain_words(command.line):  # plain words parse: no task needed
            command.parse_task = asyncio.create_task(shells.syntax_error(self.shell, command.line))
            self._parsing.add(command.parse_task)
            command.parse_task.add_done_callback(self._parsing.discard)
        if command.defer is not None:
            spec = command.defer
            command.lifecycle.move(Event.DEFER)
            command.defer_method = "pidfd" if use_pidfd else "poll"
            command.defer_task = asyncio.create_task(
                defer_wait.wait_for_exit(
                    spec.pid,
                    spec.start_time_ticks,
                    spec.timeout_ms / 1000,
                    spec.poll_ms / 1000,
                    use_pidfd,
                )
            )
        waits = command.defer is not None or command.parse_task is not None or self.busy
        waits = waits or not self._queue.empty() or self._head_waiting
        self.history.append(command)
        self._unfinished.append(command)
        self._queue.put_nowait(command)
        self.last_activity = time.time()
        # A command that will wait (its PID, a parse check, the commands before it, the
        # prompt) is recorded now; one typed at once is recorded with its line, in the same
        # write, a moment later.
        self._save(now=waits)

    def abort(self, command: Command, *, force: bool) -> None:
        """Stop `command`: a queued one never runs; a running one gets SIGINT (or SIGKILL with
        `force`) in the terminal's foreground process group, like Ctrl-C."""
        how = "SIGKILL" if force else "SIGINT"
        if command is not self._current:
            # a line typed before a restart and not yet followed is past aborting untyped
            event = Event.ABORT if command.lifecycle.can(Event.ABORT) else Event.FAIL
            command.finish(event, None, error=f"aborted before it ran ({how} requested)")
            self._save(now=True)
            return
        command.error = f"aborted ({how})"
        if self._link is not None:
            self._link.signal(signal.SIGKILL if force else signal.SIGINT, "foreground")
        self._log.info("command_aborted", command_id=command.id, force=force)

    async def foreground_is_shell(self) -> bool:
        """True when the shell itself is in the foreground (no job of its own to signal)."""
        if self._link is None or not self.running:
            return True
        info = await self._link.query()
        return info.foreground_pgrp in (info.shell_pgrp, 0, -1)

    async def _run_queue(self) -> None:
        while True:
            command = await self._queue.get()
            if command.final:
                continue
            self._head = command
            try:
                await self._run(command)
            except Exception:
                # one command's failure must not stop the terminal's queue
                self._log.exception("command_failed_internally", command_id=command.id)
                command.finish(Event.FAIL, None, error="internal error while running the command")
            finally:
                self._current = None
                self._head = None
                if command.started_at is None:
                    # it ended untyped (a syntax error, a defer that timed out, an abort):
                    # the record must not offer it to a restarted hoodyd again. A typed one
                    # may stay recorded as running until the next save: its prompt is in the
                    # output a restarted hoodyd replays, which completes it again.
                    self._save()

    async def _run(self, command: Command) -> None:
        """Wait for the command's defer and parse check and for the prompt, then type it."""
        if command.lifecycle.phase in (Phase.TYPED, Phase.RUNNING):
            await command.wait()  # typed before a restart: its prompt completes it
            return
        if command.defer_task is not None:
            try:
                outcome = await command.defer_task
            except asyncio.CancelledError:
                if command.final:
                    return
                raise
            command.defer_outcome = outcome.value
            if outcome is defer_wait.DeferOutcome.TIMED_OUT:
                assert command.defer is not None
                command.timed_out = True
                command.finish(
                    Event.TIME_OUT,
                    DEFER_TIMEOUT_EXIT_CODE,
                    error=f"process {command.defer.pid} was still running after "
                    f"{command.defer.timeout_ms} ms; the command was not run",
                )
                self._log.info("command_defer_timed_out", command_id=command.id)
                return
            command.lifecycle.move(Event.RELEASE)
        problem = None
        if command.parse_task is not None:
            problem = await asyncio.shield(command.parse_task)
        if problem is not None:
            command.started_seen = True
            command.capture(problem.message.encode())
            command.finish(Event.COMPLETE, problem.status)
            self._log.info("command_syntax_error", command_id=command.id)
            return
        self._interrupt_continuation()
        await self._wait_at_prompt()
        if command.final:
            return  # aborted while it waited
        if not self.running:
            command.finish(Event.FAIL, None, error="the shell exited before the command ran")
            return
        self._inject(command)
        await self._until_done(command)

    async def _until_done(self, command: Command) -> None:
        """Wait for the command's prompt; a shell replaced meanwhile (`exec bash`) draws no
        more markers, so the command is finished with that reason instead."""
        done = asyncio.ensure_future(command.wait())
        try:
            while not done.done():
                await asyncio.wait({done}, timeout=_REPLACED_CHECK)
                if not done.done() and self._shell_replaced():
                    self.replaced = True
                    self._current = None
                    command.finish(
                        Event.FAIL,
                        None,
                        error="shell_replaced: the shell was replaced by another program "
                        "(exec), which reports no completion; the next execute starts a new "
                        "shell",
                    )
                    self._log.info("terminal_shell_replaced", command_id=command.id)
        finally:
            done.cancel()

    def _shell_image(self) -> tuple[str, bytes] | None:
        """What the shell process runs (its executable and argv), to notice an `exec`."""
        pid = self.pid
        if not pid:
            return None
        try:
            return os.readlink(f"/proc/{pid}/exe"), Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None

    def _shell_replaced(self) -> bool:
        if self._image is None:
            self._image = self._shell_image()
            return False
        now = self._shell_image()
        return now is not None and now != self._image and self.running

    def current_cwd(self) -> str:
        """The shell's working directory now (it follows `cd`); the start one if unknown."""
        if self.running and self.pid:
            with contextlib.suppress(OSError):
                self.cwd = os.readlink(f"/proc/{self.pid}/cwd")
        return self.cwd

    async def _wait_at_prompt(self) -> None:
        if self._at_prompt.is_set() or not self.running:
            return
        waits = [
            asyncio.ensure_future(self._at_prompt.wait()),
            asyncio.ensure_future(self._exited.wait()),
        ]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waits:
                waiter.cancel()

    def _inject(self, command: Command) -> None:
        assert self._link is not None
        self._current = command
        self._at_prompt.clear()
        command.prompt_seq_at_injection = self._prompt_seq
        command.lifecycle.move(Event.TYPE)
        command.started_at = time.time()
        command.injected_mono = time.monotonic()
        command.injected_offset = self.ring.end
        command.mark = self._next_mark
        self._next_mark += 1
        # Text typed by other means and left without Enter would prefix the line: clear it
        # first (end of line, then kill to its start: the line editors' keys, and the
        # terminal's own kill character for a shell without one).
        clear = b"\x05\x15" if self._line_dirty else b""
        self._line_dirty = False
        line = shells.marked_line(self.shell.kind, command.mark, command.line)
        # `\r` is what the Enter key sends; the shell's line editor accepts the line on it.
        # The record goes first, in the same write: the holder stores it, then types.
        self._save_pending = False
        self._link.write(clear + line.encode() + b"\r", meta=self._meta())
        self._log.info("command_injected", command_id=command.id)

    def _fail_pending(self, reason: str, exit_code: int | None = None) -> None:
        """Fail what has not completed; a running command that ended its own shell (`exit 3`)
        gets the shell's status."""
        if self._current is not None:
            self._current.finish(Event.FAIL, exit_code, error=reason)
        if self._head is not None:
            self._head.finish(Event.FAIL, None, error=reason)
        if self._resumed is not None:
            self._resumed.finish(Event.FAIL, exit_code, error=reason)
        while not self._queue.empty():
            self._queue.get_nowait().finish(Event.FAIL, None, error=reason)

    def _save(self, *, now: bool = False) -> None:
        """Send the holder the record of the unfinished commands: `now`, or once this turn of
        the event loop is over (a line typed meanwhile carries it, and nothing more is sent)."""
        if now:
            self._save_pending = False
            if self._link is not None and self.running:
                self._link.set_meta(self._meta())
        elif not self._save_pending:
            self._save_pending = True
            asyncio.get_running_loop().call_soon(self._flush_save)

    def _flush_save(self) -> None:
        if self._save_pending:
            self._save(now=True)

    def _meta(self) -> bytes:
        self._unfinished = [command for command in self._unfinished if not command.final]
        record = SessionRecord(
            shell_kind=self.shell.kind,
            shell_path=self.shell.path,
            cwd=self.cwd,
            options=self.options,
            created_at=self.created_at,
            commands=[command.record() for command in self._unfinished],
            program=self.program,
        )
        return msgspec.json.encode(record)

    # holder events

    def _on_event(self, offset: int, event: MarkerEvent) -> None:
        resumed = self._resumed
        if resumed is not None and offset >= resumed.injected_offset:
            self._current, self._resumed = resumed, None
        command = self._current
        if isinstance(event, Output):
            self.last_activity = time.time()
            self.ring.append_at(offset, event.data)
            for listener in self.output_listeners:
                listener(event.data)
            if command is not None:
                if command.started_seen:
                    command.capture(event.data)
                elif len(command.preamble) < _PREAMBLE_LIMIT:
                    command.preamble += event.data
        elif isinstance(event, CommandStarted):
            self._at_prompt.clear()  # also when a person typed the command
            self._markers_seen += 1
            if command is not None and not command.started_seen:
                command.started_seen = True
                command.lifecycle.move(Event.START)
        elif isinstance(event, PromptDrawn):
            self._on_prompt(event)
        elif isinstance(event, PromptEnd) and command is not None and command.after_foreign:
            # the prompt after another line's output: it is not this command's either
            command.foreign_end = len(command.preamble)
        elif isinstance(event, ContinuationPrompt) and command is None:
            self._at_continuation = True
            self._markers_seen += 1
            self._typed_lines = max(0, self._typed_lines - 1)
            self._interrupt_continuation()
        elif isinstance(event, ContinuationPrompt) and command is not None:
            # The command is incomplete (an open quote, a trailing pipe): the shell waits
            # for more lines that will never come. Interrupt it so the queue moves on.
            command.error = "incomplete command: the shell asked for more input"
            if self._link is not None:
                self._link.signal(signal.SIGINT, "foreground")

    def _on_prompt(self, event: PromptDrawn) -> None:
        self._at_continuation = False
        self._markers_seen += 1
        seq = event.seq if event.seq is not None else self._prompt_seq + 1
        if seq == self._prompt_seq and self._ready.is_set():
            # the line editor redrew the same prompt (resize, Ctrl-L, an empty line in fish)
            if self._current is None:
                self._typed_lines = max(0, self._typed_lines - 1)
                self._prompt_back()
            return
        self._prompt_seq = seq
        self._ready.set()
        command = self._current
        if (
            command is not None
            and command.mark
            and event.command is not None
            and event.command != command.mark
        ):
            # the prompt after a line typed by other means before this one (the terminal
            # queues input in order): its output and status are that line's
            command.forget_output()
            self._typed_lines = max(0, self._typed_lines - 1)
            self._log.info("foreign_prompt_skipped", command_id=command.id)
            return
        if command is not None and seq > command.prompt_seq_at_injection:
            self._current = None  # the prompt that follows is not the command's output
            if command.error is not None:
                command.finish(Event.FAIL, event.status, error=command.error)
            else:
                command.finish(Event.COMPLETE, event.status)
            self._log.info("command_completed", command_id=command.id, exit_code=event.status)
        elif command is None:
            self._typed_lines = max(0, self._typed_lines - 1)
        self._prompt_back()

    def _prompt_back(self) -> None:
        """A prompt came: the shell waits at it unless typed lines are still to run."""
        if self._typed_lines == 0:
            self._at_prompt.set()
        else:
            self._settle_later()

    def _settle_later(self) -> None:
        if self._settling is not None:
            self._settling.cancel()
        seen = self._markers_seen
        self._settling = asyncio.get_running_loop().call_later(
            _SETTLE_DELAY, lambda: asyncio.ensure_future(self._settle(seen))
        )

    async def _settle(self, seen: int) -> None:
        """Typed lines are still counted, but no prompt came for a while: if the shell itself
        holds the terminal, they were read by programs that have ended; it is at its prompt."""
        self._settling = None
        if seen != self._markers_seen or self._at_prompt.is_set() or self._current is not None:
            return
        try:
            at_shell = await self.foreground_is_shell()
        except HolderError:
            return
        if at_shell and seen == self._markers_seen and self._current is None:
            self._typed_lines = 0
            self._at_prompt.set()
        elif not self._at_prompt.is_set():
            self._settle_later()

    def _on_exit(self, code: int | None) -> None:
        if self._exited.is_set():
            return
        self.exit_code = code
        self._exited.set()
        self.ring.close()
        self._fail_pending(f"the shell exited (status {code})", code)
        for listener in self.exit_listeners:
            listener()
        self._log.info("terminal_shell_exited", exit_code=code)

    # attach and screen

    def send_input(self, data: bytes) -> None:
        """Input typed by other means (write, paste, keys, an attached client). A line it
        ends runs before anything queued: the next command waits for the prompt after it."""
        self.last_activity = time.time()
        if self._link is not None and self.running:
            self._link.write(data)
            self._note_typed(data)

    def _note_typed(self, data: bytes) -> None:
        # a bracketed paste inserts its newlines into the line; they do not run it
        plain = _BRACKETED_PASTE.sub(b"x", data)
        last_enter = max(plain.rfind(b"\r"), plain.rfind(b"\n"))
        if last_enter >= 0:
            self._at_prompt.clear()
            self._line_dirty = False
            self._typed_lines += plain.replace(b"\r\n", b"\r").replace(b"\n", b"\r").count(b"\r")
        if plain[last_enter + 1 :]:
            self._line_dirty = True

    def _interrupt_continuation(self) -> None:
        """A line typed by other means is incomplete (an open quote): a command waiting its
        turn would be read as more of it, so the shell is interrupted back to its prompt."""
        if self._at_continuation and self._head_waiting and self._link is not None:
            self._link.signal(signal.SIGINT, "foreground")

    def resize(self, cols: int, rows: int) -> None:
        self.cols, self.rows = cols, rows
        if self._link is not None and self.running:
            self._link.resize(cols, rows)

    def info(self, history_limit: int) -> SessionInfo:
        recent = list(self.history)[-history_limit:] if history_limit else []
        return SessionInfo(
            id=self.terminal_id,
            terminal_id=str(self.terminal_id),
            state="running" if self.running else "exited",
            shell=self.shell.kind,
            shell_path=self.shell.path,
            pid=self.pid,
            cwd=self.current_cwd(),
            display=self.display,
            cols=self.cols,
            rows=self.rows,
            ephemeral=self.options.ephemeral,
            shell_ready=self.ready and not self.replaced,
            busy=self.busy,
            queued=self._queue.qsize() + (1 if self._head_waiting else 0),
            clients=self.clients,
            exit_code=self.exit_code,
            created_at=rfc3339(self.created_at) or "",
            last_activity=rfc3339(self.last_activity) or "",
            output_offset=self.ring.end,
            command_history=[command.command for command in recent],
            program_id=self.program.id if self.program is not None else None,
            user=self.options.user,
        )


class _Relay:
    """Routes a link's callbacks to the session once it exists (an adopted link is opened
    before its session can be built from what the holder kept)."""

    def __init__(self, session: TerminalSession | None) -> None:
        self.session = session

    def event(self, offset: int, event: MarkerEvent) -> None:
        if self.session is not None:
            self.session._on_event(offset, event)

    def exit(self, code: int | None) -> None:
        if self.session is not None:
            self.session._on_exit(code)
