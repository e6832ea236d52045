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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec
import structlog

from hoodyd.schemas.terminal import SessionInfo, SessionOptions
from hoodyd.tasks import cancel_and_wait
from hoodyd.terminals import defer as defer_wait
from hoodyd.terminals import shells
from hoodyd.terminals.command_queue import CommandQueue
from hoodyd.terminals.commands import Command as Command  # where the service finds it
from hoodyd.terminals.commands import CommandRecord, Event, Phase, rfc3339
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
_PREAMBLE_LIMIT = 64 * 1024
_REPLACED_CHECK = 0.5  # seconds between checks that a running command's shell is still ours
_SETTLE_DELAY = 0.25  # seconds without a prompt before typed lines are taken as read
_BRACKETED_PASTE = re.compile(rb"\x1b\[200~.*?(?:\x1b\[201~|$)", re.DOTALL)


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
        # the commands: in line, the worker's turn, typed, resumed, unfinished, recent
        self._queue = CommandQueue(history_limit)
        self.created_at = time.time() if created_at is None else created_at
        self.last_activity = time.time()
        self.exit_code: int | None = None
        self.clients = 0
        # called with each piece of output (the automation screen follows the session)
        self.output_listeners: list[Callable[[bytes], None]] = []
        self.exit_listeners: list[Callable[[], None]] = []
        self._link: HolderLink | None = None
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
            resumed=[command.id for command in session._queue.unfinished],
        )
        return session

    def _restore(self, record: SessionRecord) -> None:
        for item in record.commands:
            self._next_mark = max(self._next_mark, item.mark + 1)
            command = Command.from_record(item, self.terminal_id)
            if command.lifecycle.phase is Phase.TYPED:
                self._queue.resume(command)
            else:
                self.submit(command, self._use_pidfd)

    def _follow(self, link: HolderLink) -> None:
        self._link = link
        hello = link.hello
        self.ring.restart_at(hello.ring_start)
        self._queue.replay_ends_at(hello.ring_end)
        self._worker = asyncio.create_task(self._run_queue(), name=f"terminal-{self.terminal_id}")
        link.follow(None)

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
        for command in self._queue.unfinished:
            if command.defer_task is not None:
                command.defer_task.cancel()
        await self._stop_worker()
        if self._link is not None:
            await self._link.close()

    async def _stop_worker(self) -> None:
        await cancel_and_wait(self._worker)
        # parse checks are short child processes: let them end rather than orphan them
        await asyncio.gather(*self._parsing, return_exceptions=True)

    @property
    def running(self) -> bool:
        return not self._exited.is_set()

    def exit_unreported(self) -> bool:
        """Running by the last report, but the shell process is gone: its holder has reaped
        it, and the report of its exit is on the way."""
        return self.running and bool(self.pid) and not Path(f"/proc/{self.pid}").exists()

    async def wait_exit_report(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._exited.wait(), timeout)

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
        return self._queue.current is not None or not self._at_prompt.is_set()

    @property
    def history(self) -> Sequence[Command]:
        """The commands accepted last, oldest first (within the history's bound)."""
        return self._queue.history

    @property
    def idle(self) -> bool:
        """At its prompt with nothing queued: the ephemeral reaper may collect it."""
        return self.running and self._queue.queued == 0 and not self.busy and self.clients == 0

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
        waits = waits or self._queue.queued > 0
        self._queue.enqueue(command)
        self.last_activity = time.time()
        # A command that will wait (its PID, a parse check, the commands before it, the
        # prompt) is recorded now; one typed at once is recorded with its line, in the same
        # write, a moment later.
        self._save(now=waits)

    def abort(self, command: Command, *, force: bool) -> None:
        """Stop `command`: a queued one never runs; a running one gets SIGINT (or SIGKILL with
        `force`) in the terminal's foreground process group, like Ctrl-C."""
        how = "SIGKILL" if force else "SIGINT"
        if command is not self._queue.current:
            self._queue.abort(command, f"aborted before it ran ({how} requested)")
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
            command = await self._queue.take_next()
            try:
                await self._run(command)
            except Exception:
                # one command's failure must not stop the terminal's queue
                self._log.exception("command_failed_internally", command_id=command.id)
                self._queue.fail(command, None, "internal error while running the command")
            finally:
                self._queue.turn_over()
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
                self._queue.time_out(
                    command,
                    DEFER_TIMEOUT_EXIT_CODE,
                    f"process {command.defer.pid} was still running after "
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
            self._queue.complete(command, problem.status)
            self._log.info("command_syntax_error", command_id=command.id)
            return
        self._interrupt_continuation()
        await self._wait_at_prompt()
        if command.final:
            return  # aborted while it waited
        if not self.running:
            self._queue.fail(command, None, "the shell exited before the command ran")
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
                    self._queue.fail(
                        command,
                        None,
                        "shell_replaced: the shell was replaced by another program "
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
        self._queue.typed(command)
        self._at_prompt.clear()
        command.prompt_seq_at_injection = self._prompt_seq
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
        self._queue.fail_all(reason, exit_code)

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
        record = SessionRecord(
            shell_kind=self.shell.kind,
            shell_path=self.shell.path,
            cwd=self.cwd,
            options=self.options,
            created_at=self.created_at,
            commands=self._queue.unfinished_for_restart(),
            program=self.program,
        )
        return msgspec.json.encode(record)

    # holder events

    def _on_event(self, offset: int, event: MarkerEvent) -> None:
        command = self._queue.output_at(offset)
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
            if self._queue.current is None:
                self._typed_lines = max(0, self._typed_lines - 1)
                self._prompt_back()
            return
        self._prompt_seq = seq
        if not self._ready.is_set():
            # what the shell runs, known for sure only now: until its first prompt the process
            # may still be a wrapper on its way to exec it (prlimit, a script named bash)
            self._image = self._shell_image()
        self._ready.set()
        command = self._queue.current
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
            # it ends, so the prompt that follows is not its output
            if command.error is not None:
                self._queue.fail(command, event.status, command.error)
            else:
                self._queue.complete(command, event.status)
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
        if seen != self._markers_seen or self._at_prompt.is_set():
            return
        if self._queue.current is not None:
            return
        try:
            at_shell = await self.foreground_is_shell()
        except HolderError:
            return
        if at_shell and seen == self._markers_seen and self._queue.current is None:
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
        if self._at_continuation and self._queue.turn_waiting and self._link is not None:
            self._link.signal(signal.SIGINT, "foreground")

    def resize(self, cols: int, rows: int) -> None:
        self.cols, self.rows = cols, rows
        if self._link is not None and self.running:
            self._link.resize(cols, rows)

    def info(self, history_limit: int) -> SessionInfo:
        recent = self._queue.recent(history_limit)
        running, exit_code = self.running, self.exit_code
        ended = defer_wait.read_process(self.pid).zombie_exit_code if running and self.pid else None
        if ended is not None:
            # the shell has exited and its holder has not reaped it yet (its report follows
            # with the same code): say so now rather than report a dead shell as running
            running, exit_code = False, ended
        return SessionInfo(
            id=self.terminal_id,
            terminal_id=str(self.terminal_id),
            state="running" if running else "exited",
            shell=self.shell.kind,
            shell_path=self.shell.path,
            pid=self.pid,
            cwd=self.current_cwd(),
            display=self.display,
            cols=self.cols,
            rows=self.rows,
            ephemeral=self.options.ephemeral,
            shell_ready=self.ready and not self.replaced,
            busy=self.busy and running,
            queued=self._queue.queued,
            clients=self.clients,
            exit_code=exit_code,
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
