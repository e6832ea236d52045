"""One terminal session: a shell in a PTY, its output buffer, and its command queue.

Commands are injected one at a time, in acceptance order, and only while the shell sits at its
prompt; the next prompt marker (with a prompt count past the one seen at injection) completes
the running command with the status the shell printed. Output between the shell's
command-started marker and that prompt is the command's stdout.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime

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
from hoodyd.terminals.markers import (
    CommandStarted,
    ContinuationPrompt,
    MarkerScanner,
    Output,
    PromptDrawn,
)
from hoodyd.terminals.pty_process import PtyProcess
from hoodyd.terminals.ring import OutputRing
from hoodyd.terminals.shells import Shell, ShellIntegration

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


def rfc3339(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z")


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
    status: CommandStatus = "queued"
    exit_code: int | None = None
    timed_out: bool = False
    error: str | None = None
    accepted_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    # monotonic instants for measurements (bench/terminals.py)
    injected_mono: float | None = None
    first_output_mono: float | None = None
    stdout: bytearray = field(default_factory=bytearray)
    truncated: bool = False
    preamble: bytearray = field(default_factory=bytearray)
    started_seen: bool = False
    prompt_seq_at_injection: int = 0
    defer_task: asyncio.Task[defer_wait.DeferOutcome] | None = None
    parse_task: asyncio.Task[shells.SyntaxProblem | None] | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def final(self) -> bool:
        return self.done.is_set()

    def capture(self, data: bytes) -> None:
        if self.first_output_mono is None:
            self.first_output_mono = time.monotonic()
        room = self.output_limit - len(self.stdout)
        if len(data) > room:
            self.truncated = True
            data = data[: max(0, room)]
        self.stdout += data

    def finish(
        self, status: CommandStatus, exit_code: int | None, *, error: str | None = None
    ) -> None:
        if self.final:
            return
        self.status = status
        self.exit_code = exit_code
        self.error = error
        self.finished_at = time.time()
        if self.defer_task is not None and not self.defer_task.done():
            self.defer_task.cancel()
        self.done.set()

    def stdout_text(self) -> str:
        raw = bytes(self.stdout)
        if not self.started_seen and self.preamble:
            # No command-started marker (a syntax error, or a shell without one): what
            # followed the echoed command line is what the shell printed for it.
            _echo, _sep, raw = bytes(self.preamble).partition(b"\n")
        if self.shell_kind == "fish":
            raw = _FISH_PREFIX.sub(b"", raw, count=1)
        elif self.shell_kind == "zsh":
            raw = _ZSH_SUFFIX.sub(b"", raw, count=1)
        raw = _READLINE_NOISE.sub(b"", raw).replace(b"\r\n", b"\n")
        return raw.decode("utf-8", errors="replace")

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
        env: dict[str, str],
        integration: ShellIntegration,
        *,
        buffer_bytes: int,
        history_limit: int,
        startup_script: str | None = None,
    ) -> None:
        self.terminal_id = terminal_id
        self.shell = shell
        self.options = options
        self.cwd = cwd
        self.display = env.get("DISPLAY")
        self.cols, self.rows = options.cols, options.rows
        self.ring = OutputRing(buffer_bytes)
        self.history: deque[Command] = deque(maxlen=history_limit)
        self.created_at = time.time()
        self.last_activity = self.created_at
        self.exit_code: int | None = None
        self.clients = 0
        nonce = secrets.token_hex(8)
        self._scanner = MarkerScanner(nonce)
        argv = integration.launch(shell, nonce, startup_script, env)
        self._pty = PtyProcess(
            argv, env, cwd, options.cols, options.rows, self._on_output, self._on_exit
        )
        self._queue: asyncio.Queue[Command] = asyncio.Queue()
        self._current: Command | None = None  # injected, not yet complete
        self._head: Command | None = None  # taken from the queue, waiting for defer or prompt
        self._prompt_seq = 0
        self._ready = asyncio.Event()
        self._at_prompt = asyncio.Event()
        self._exited = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._parsing: set[asyncio.Task[shells.SyntaxProblem | None]] = set()
        self._log = log.bind(terminal_id=terminal_id)

    # lifecycle

    def start(self) -> None:
        self._pty.start()
        self._worker = asyncio.create_task(self._run_queue(), name=f"terminal-{self.terminal_id}")
        self._log.info("terminal_started", shell=self.shell.kind, pid=self._pty.pid, cwd=self.cwd)

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
        """Hang up the shell, fail what is still queued, stop the queue."""
        code = await self._pty.terminate()
        self._fail_pending(reason)
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        # parse checks are short child processes: let them end rather than orphan them
        await asyncio.gather(*self._parsing, return_exceptions=True)
        return code

    @property
    def running(self) -> bool:
        return not self._exited.is_set()

    @property
    def pid(self) -> int:
        return self._pty.pid

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    @property
    def busy(self) -> bool:
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
        command.parse_task = asyncio.create_task(shells.syntax_error(self.shell, command.line))
        self._parsing.add(command.parse_task)
        command.parse_task.add_done_callback(self._parsing.discard)
        if command.defer is not None:
            spec = command.defer
            command.status = "pending"
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
        self.history.append(command)
        self._queue.put_nowait(command)
        self.last_activity = time.time()

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
                command.finish("failed", None, error="internal error while running the command")
            finally:
                self._current = None
                self._head = None

    async def _run(self, command: Command) -> None:
        """Wait for the command's defer and parse check and for the prompt, then type it."""
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
                    "timed_out",
                    DEFER_TIMEOUT_EXIT_CODE,
                    error=f"process {command.defer.pid} was still running after "
                    f"{command.defer.timeout_ms} ms; the command was not run",
                )
                self._log.info("command_defer_timed_out", command_id=command.id)
                return
            command.status = "queued"
        assert command.parse_task is not None
        problem = await asyncio.shield(command.parse_task)
        if problem is not None:
            command.started_seen = True
            command.capture(problem.message.encode())
            command.finish("completed", problem.status)
            self._log.info("command_syntax_error", command_id=command.id)
            return
        await self._wait_at_prompt()
        if not self.running:
            command.finish("failed", None, error="the shell exited before the command ran")
            return
        self._inject(command)
        await command.done.wait()

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
        self._current = command
        self._at_prompt.clear()
        command.prompt_seq_at_injection = self._prompt_seq
        command.status = "running"
        command.started_at = time.time()
        command.injected_mono = time.monotonic()
        # `\r` is what the Enter key sends; the shell's line editor accepts the line on it.
        self._pty.write(command.line.encode() + b"\r")
        self._log.info("command_injected", command_id=command.id)

    def _fail_pending(self, reason: str, exit_code: int | None = None) -> None:
        """Fail what has not completed; a running command that ended its own shell (`exit 3`)
        gets the shell's status."""
        if self._current is not None:
            self._current.finish("failed", exit_code, error=reason)
        if self._head is not None:
            self._head.finish("failed", None, error=reason)
        while not self._queue.empty():
            self._queue.get_nowait().finish("failed", None, error=reason)

    # PTY callbacks

    def _on_output(self, data: bytes) -> None:
        self.last_activity = time.time()
        for event in self._scanner.feed(data):
            command = self._current
            if isinstance(event, Output):
                self.ring.append(event.data)
                if command is not None:
                    if command.started_seen:
                        command.capture(event.data)
                    elif len(command.preamble) < _PREAMBLE_LIMIT:
                        command.preamble += event.data
            elif isinstance(event, CommandStarted):
                self._at_prompt.clear()  # also when a person typed the command
                if command is not None and not command.started_seen:
                    command.started_seen = True
            elif isinstance(event, PromptDrawn):
                self._on_prompt(event)
            elif isinstance(event, ContinuationPrompt) and command is not None:
                # The command is incomplete (an open quote, a trailing pipe): the shell waits
                # for more lines that will never come. Interrupt it so the queue moves on.
                command.error = "incomplete command: the shell asked for more input"
                self._pty.interrupt()

    def _on_prompt(self, event: PromptDrawn) -> None:
        seq = event.seq if event.seq is not None else self._prompt_seq + 1
        if seq == self._prompt_seq and self._ready.is_set():
            return  # the line editor redrew the same prompt (resize, Ctrl-L)
        self._prompt_seq = seq
        self._ready.set()
        command = self._current
        if command is not None and seq > command.prompt_seq_at_injection:
            self._current = None  # the prompt that follows is not the command's output
            if command.error is not None:
                command.finish("failed", event.status, error=command.error)
            else:
                command.finish("completed", event.status)
            self._log.info("command_completed", command_id=command.id, exit_code=event.status)
        self._at_prompt.set()

    def _on_exit(self, code: int | None) -> None:
        self.exit_code = code
        self._exited.set()
        self.ring.close()
        self._fail_pending(f"the shell exited (status {code})", code)
        self._log.info("terminal_shell_exited", exit_code=code)

    # attach and screen

    def send_input(self, data: bytes) -> None:
        self.last_activity = time.time()
        self._pty.write(data)

    def resize(self, cols: int, rows: int) -> None:
        self.cols, self.rows = cols, rows
        self._pty.resize(cols, rows)

    def info(self, history_limit: int) -> SessionInfo:
        recent = list(self.history)[-history_limit:] if history_limit else []
        return SessionInfo(
            id=self.terminal_id,
            terminal_id=str(self.terminal_id),
            state="running" if self.running else "exited",
            shell=self.shell.kind,
            shell_path=self.shell.path,
            pid=self._pty.pid,
            cwd=self.cwd,
            display=self.display,
            cols=self.cols,
            rows=self.rows,
            ephemeral=self.options.ephemeral,
            shell_ready=self.ready,
            busy=self.busy,
            queued=self._queue.qsize() + (1 if self._head_waiting else 0),
            clients=self.clients,
            exit_code=self.exit_code,
            created_at=rfc3339(self.created_at) or "",
            last_activity=rfc3339(self.last_activity) or "",
            output_offset=self.ring.end,
            command_history=[command.command for command in recent],
        )
