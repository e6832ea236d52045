"""TerminalService: the rules of the terminal area, with no HTTP in sight.

It owns the sessions (id → TerminalSession) and the commands by id (`sessions`), validates
every request completely before it touches a session (a refused request injects nothing and
starts nothing), starts sessions as `launch` plans them, and keeps finished results for
`result/{command_id}` within a bound.

Each session's shell lives in a holder process that outlives hoodyd (`STATE/terminals/holders/
N.sock`). At start-up the service re-adopts every live holder; a holder supervisord started
for a program with `terminal_id` is adopted as soon as its socket appears. A terminal named by
`execute`, `write`, `press`, `paste` or a run is created on first use.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec
import structlog

from hoodyd.config import TerminalsConfig
from hoodyd.errors import Conflict, InvalidRequest, NotFound, Reason, ServiceUnavailable
from hoodyd.private import private_dir
from hoodyd.schemas.terminal import (
    EPHEMERAL_FIRST,
    TERMINAL_ID_MAX,
    CommandResult,
    CreateRequest,
    CreateResponse,
    DeleteResponse,
    ExecuteRequest,
    HistoryResponse,
    OutputEncoding,
    OutputResponse,
    ResizeResponse,
    SessionOptions,
    SessionsResponse,
)
from hoodyd.tasks import cancel_and_wait
from hoodyd.terminals.commands import Event
from hoodyd.terminals.defer import pidfd_supported
from hoodyd.terminals.holder.ring import OutputRing
from hoodyd.terminals.launch import LaunchSite, check_options, plan_launch, wait_for_display
from hoodyd.terminals.link import HolderError, HolderGone
from hoodyd.terminals.session import Command, TerminalSession
from hoodyd.terminals.sessions import CommandBook, SessionTable
from hoodyd.terminals.shells import (
    ShellIntegration,
    wrap_command,
)
from hoodyd.terminals.spawn import HolderLauncher, list_holders
from hoodyd.terminals.validation import (
    TERMINAL_ID_REQUIRED,
    check_create,
    check_typed_text,
    check_user,
    parse_display,
    parse_terminal_id,
    validate_command,
    validate_env,
)

log = structlog.get_logger()

EXIT_REPORT_WAIT = 1.0  # seconds a listing waits for an exit report already sent

# seconds an abort waits for the command to stop before it answers
ABORT_WAIT = 5.0


@dataclass
class Attachment:
    """What an attached client may do with a session: follow its output, type, resize."""

    session: TerminalSession

    @property
    def ring(self) -> OutputRing:
        return self.session.ring

    @property
    def running(self) -> bool:
        return self.session.running

    @property
    def exit_code(self) -> int | None:
        return self.session.exit_code

    def send_input(self, data: bytes) -> None:
        self.session.send_input(data)

    def resize(self, cols: int, rows: int) -> None:
        self.session.resize(cols, rows)


@dataclass(frozen=True, slots=True)
class _Execute:
    """An execute request checked whole, before anything is started or typed."""

    command_text: str
    env: dict[str, str]
    options: SessionOptions
    terminal_id: int | None
    session: TerminalSession | None  # the one named, if it exists
    replace: bool  # the command runs in a new session


class TerminalService:
    def __init__(
        self, config: TerminalsConfig, state_dir: Path, *, pass_env: Sequence[str] = ()
    ) -> None:
        self.config = config
        self._dir = state_dir / "terminals"
        self._integration = ShellIntegration(self._dir / "shell", user_rc=config.user_rc)
        self._launcher = HolderLauncher()  # new holders are forks of it
        # server.pass_env: on top of childenv's base
        self._site = LaunchSite(
            config, self._dir, self._integration, self._launcher, tuple(pass_env)
        )
        self.holders_dir = self._site.holders_dir
        self._sessions = SessionTable()
        self._commands = CommandBook(config.results_kept)
        self._reaper: asyncio.Task[None] | None = None
        self._scanner: asyncio.Task[None] | None = None
        if config.defer_method == "auto":
            self.use_pidfd = pidfd_supported()
        else:
            self.use_pidfd = config.defer_method == "pidfd"

    # lifecycle

    async def start(self) -> None:
        self._integration.install()
        (self._dir / "history").mkdir(parents=True, exist_ok=True)
        private_dir(self.holders_dir)
        await self.adopt_holders()
        self._reaper = asyncio.create_task(self._reap_idle_ephemeral(), name="terminal-reaper")
        self._scanner = asyncio.create_task(self._watch_holders(), name="terminal-holders")
        log.info(
            "terminals_ready",
            defer_method="pidfd" if self.use_pidfd else "poll",
            adopted=sorted(self._sessions),
        )

    async def close(self) -> None:
        await cancel_and_wait(self._reaper, self._scanner)
        sessions = list(self._sessions.values())
        self._sessions.clear()
        if self.config.outlive_daemon:
            await asyncio.gather(*(s.detach() for s in sessions))
        else:
            await asyncio.gather(*(s.close("hoodyd is shutting down") for s in sessions))
        await self._launcher.close()

    async def adopt_holders(self) -> None:
        """Adopt every live holder not followed yet (a previous hoodyd's sessions, a program's
        terminal supervisord started or restarted); remove the sockets of holders that are
        gone. A session whose shell exited keeps its holder (its output stays readable) until
        it is deleted or created again, so only a program's terminal is taken over anew."""
        for terminal_id, socket in list_holders(self.holders_dir):
            current = self._sessions.get(terminal_id)
            if current is not None and (current.running or current.program is None):
                continue
            async with self._sessions.lock(terminal_id):
                if self._sessions.get(terminal_id) is current:
                    await self._adopt(terminal_id, socket, replacing=current)

    async def _adopt(
        self, terminal_id: int, socket: Path, *, replacing: TerminalSession | None = None
    ) -> TerminalSession | None:
        try:
            session = await TerminalSession.adopt(
                socket,
                buffer_bytes=self.config.output_buffer_bytes,
                history_limit=self.config.history_limit,
                use_pidfd=self.use_pidfd,
            )
        except HolderGone:
            socket.unlink(missing_ok=True)
            return None
        except (HolderError, msgspec.ValidationError) as exc:
            log.warning("terminal_holder_not_adopted", terminal_id=terminal_id, error=str(exc))
            return None
        if replacing is not None and session.holder_pid == replacing.holder_pid:
            await session.detach()  # the same (ended) holder, not a new one
            return replacing
        for command in session.history:
            if not command.final:
                self._commands.adopted(command)
        self._sessions[terminal_id] = session
        return session

    async def _watch_holders(self) -> None:
        while True:
            await asyncio.sleep(self.config.holder_scan_interval)
            await self.adopt_holders()

    # queries

    @property
    def open_sessions(self) -> int:
        """How many terminal sessions hoodyd keeps (running or exited, not yet deleted)."""
        return len(self._sessions)

    async def settle_exits(self) -> None:
        """Wait, briefly, for the exit reports already on their way (a shell its holder has
        reaped), so that a listing does not show a shell that is gone as running."""
        gone = [session for session in self._sessions.values() if session.exit_unreported()]
        if gone:
            await asyncio.gather(*(s.wait_exit_report(EXIT_REPORT_WAIT) for s in gone))

    def list_sessions(self, history_limit: int) -> SessionsResponse:
        data = [self._sessions[key].info(history_limit) for key in sorted(self._sessions)]
        return SessionsResponse(data=data, total=len(data))

    def session(self, terminal_id: int) -> TerminalSession:
        session = self._sessions.get(terminal_id)
        if session is None:
            raise NotFound(f"Terminal {terminal_id} not found", reason=Reason.TERMINAL_NOT_FOUND)
        return session

    def command(self, command_id: int) -> Command:
        command = self._commands.get(command_id)
        if command is None:
            raise NotFound(f"Command {command_id} not found", reason=Reason.COMMAND_NOT_FOUND)
        return command

    def result(self, command_id: int) -> CommandResult:
        return self.command(command_id).result()

    def history(self, terminal_id: int, limit: int) -> HistoryResponse:
        session = self.session(terminal_id)
        commands = list(session.history)[-limit:] if limit else []
        return HistoryResponse(
            terminal_id=str(terminal_id),
            data=[command.result() for command in commands],
            total=len(session.history),
        )

    async def output(
        self,
        terminal_id: int,
        offset: int | None,
        limit: int,
        timeout: float,
        encoding: OutputEncoding,
    ) -> OutputResponse:
        session = self.session(terminal_id)
        if offset is not None and timeout > 0:
            await session.ring.wait_beyond(offset, timeout)
        chunk = session.ring.read(offset, limit)
        if encoding == "base64":
            data = base64.b64encode(chunk.data).decode()
        else:
            data = chunk.data.decode("utf-8", errors="replace")
        return OutputResponse(
            terminal_id=str(terminal_id),
            state="running" if session.running else "exited",
            offset=chunk.offset,
            next_offset=chunk.next_offset,
            dropped=chunk.dropped,
            encoding=encoding,
            data=data,
        )

    # changes

    async def create(self, request: CreateRequest) -> CreateResponse:
        check_create(request)
        display = parse_display(request.display)
        user = check_user(request.user)
        options = SessionOptions(
            shell=request.shell,
            cwd=request.cwd,
            env=validate_env(request.env, typed=False),
            display=display,
            cols=request.cols,
            rows=request.rows,
            startup_script=request.startup_script,
            ephemeral=request.ephemeral,
            user=user,
        )
        given_id = None if request.ephemeral else parse_terminal_id(request.terminal_id)
        terminal_id = self.allocate_ephemeral_id() if given_id is None else given_id
        existing = self._sessions.get(terminal_id)
        if existing is None and not request.ephemeral:
            self.check_creatable(terminal_id)
        check_options(self._site, options, cwd_auto_create=False)
        async with self._sessions.lock(terminal_id):
            existing = self._sessions.get(terminal_id)
            if existing is not None and existing.running:
                return CreateResponse(
                    terminal_id=str(terminal_id),
                    created=False,
                    shell_ready=existing.ready,
                    session=existing.info(0),
                )
            if existing is not None:
                self._refuse_program(existing, "recreate")
            session = await self._replace_session(terminal_id, options, cwd_auto_create=False)
        ready = await session.wait_ready(self.config.ready_timeout)
        display_ready = None
        wait_display = request.wait_until_display
        if display is not None and (wait_display is None or wait_display):
            display_ready = await wait_for_display(display, request.wait_timeout)
        return CreateResponse(
            terminal_id=str(terminal_id),
            created=True,
            shell_ready=ready,
            display_ready=display_ready,
            session=session.info(0),
        )

    async def delete(self, terminal_id: int) -> DeleteResponse:
        session = self.session(terminal_id)
        self._refuse_program(session, "delete")
        async with self._sessions.lock(terminal_id):
            if self._sessions.get(terminal_id) is session:
                del self._sessions[terminal_id]
            code = await session.close(f"terminal {terminal_id} was deleted")
        log.info("terminal_deleted", terminal_id=terminal_id, exit_code=code)
        return DeleteResponse(terminal_id=str(terminal_id), exit_code=code)

    def resize(self, terminal_id: int, cols: int, rows: int) -> ResizeResponse:
        session = self._running_session(terminal_id)
        session.resize(cols, rows)
        return ResizeResponse(terminal_id=str(terminal_id), cols=cols, rows=rows)

    async def execute(self, request: ExecuteRequest) -> CommandResult:
        """Run a command: every check first (a refused request starts, resets and types
        nothing), then the session it runs in, then the command queued there; with `wait`,
        its result once final or once `timeout` has passed."""
        checked = self._check_execute(request)
        session = await self._session_for(request, checked)
        command = self._submit(request, checked, session)
        if request.wait and request.defer is None:
            try:
                await asyncio.wait_for(command.wait(), request.timeout or None)
            except TimeoutError:
                command.timed_out = True  # what `result/{id}` reads back too
        return command.result()

    def _check_execute(self, request: ExecuteRequest) -> _Execute:
        command_text = validate_command(request.command)
        if request.cwd is not None:
            check_typed_text("cwd", request.cwd)
        env = validate_env(request.env, typed=True)
        validate_env(request.session.env, typed=False)
        display = parse_display(request.session.display)
        if request.command_id is not None:
            existing = self._commands.get(request.command_id)
            if existing is not None and not existing.final:
                raise Conflict(
                    f"Command id {request.command_id} is still in use",
                    reason=Reason.COMMAND_ID_IN_USE,
                )
        terminal_id = request.terminal_id
        if terminal_id is None and not request.ephemeral:
            raise InvalidRequest(TERMINAL_ID_REQUIRED, reason=Reason.TERMINAL_ID_REQUIRED)
        session = self._sessions.get(terminal_id) if terminal_id is not None else None
        if session is None and terminal_id is not None:
            self.check_creatable(terminal_id)
        if session is not None:
            self._refuse_program(session, "execute into")
        if session is not None and not session.running and not request.reset:
            raise Conflict(
                f"Terminal {terminal_id}: the shell exited (status {session.exit_code}); "
                "create it again, or execute with reset=true",
                reason=Reason.SHELL_EXITED,
            )
        options = msgspec.structs.replace(
            request.session,
            display=display,
            ephemeral=request.ephemeral and terminal_id is None,
        )
        # a shell replaced by `exec` reports no completion: a new one runs the command
        replace = session is None or request.reset or session.replaced
        if replace:
            check_options(self._site, options, cwd_auto_create=request.cwd_auto_create)
        return _Execute(command_text, env, options, terminal_id, session, replace)

    async def _session_for(self, request: ExecuteRequest, checked: _Execute) -> TerminalSession:
        """The session the command runs in: the one named, or a new one (started, reset, or
        in place of a replaced shell)."""
        session = checked.session
        if not checked.replace:
            assert session is not None
            return session
        terminal_id = checked.terminal_id
        if terminal_id is None:
            terminal_id = self.allocate_ephemeral_id()
        session = await self._ensure_session(
            terminal_id,
            checked.options,
            reset=request.reset or (session is not None and session.replaced),
            cwd_auto_create=request.cwd_auto_create,
        )
        display = checked.options.display
        if display is not None and request.display_wait_timeout is not None:
            await wait_for_display(display, request.display_wait_timeout)
        self._refuse_program(session, "execute into")  # a program's holder, adopted meanwhile
        return session

    def _submit(
        self, request: ExecuteRequest, checked: _Execute, session: TerminalSession
    ) -> Command:
        command = Command(
            id=request.command_id or self._commands.allocate_id(),
            terminal_id=session.terminal_id,
            command=checked.command_text,
            line=wrap_command(session.shell.kind, checked.command_text, request.cwd, checked.env),
            output_limit=self.config.command_output_bytes,
            shell_kind=session.shell.kind,
            defer=request.defer,
            origin=request.origin,
        )
        self._commands.remember(command)
        session.submit(command, self.use_pidfd)
        log.info(
            "command_accepted",
            terminal_id=session.terminal_id,
            command_id=command.id,
            deferred=request.defer is not None,
        )
        return command

    async def abort(self, command_id: int, *, force: bool) -> CommandResult:
        """Stop a command (queued: it never runs; running: SIGINT, or SIGKILL with `force`, to
        the terminal's foreground job) and answer its result once it has stopped."""
        command = self.command(command_id)
        if command.final:
            raise Conflict(
                f"Command {command_id} already finished ({command.status})",
                reason=Reason.COMMAND_FINISHED,
                extra={"result": msgspec.to_builtins(command.result())},
            )
        session = self._sessions.get(command.terminal_id)
        if session is None or not session.running:
            command.finish(Event.FAIL, None, error="aborted: the terminal is gone")
            return command.result()
        # SIGKILL to the shell's own process group would end the terminal, not the command:
        # a command the shell runs itself (a builtin loop) gets SIGINT like Ctrl-C.
        hard = force and command.status == "running" and not await session.foreground_is_shell()
        session.abort(command, force=hard)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(command.wait(), ABORT_WAIT)
        return command.result()

    def has_session(self, terminal_id: int) -> bool:
        return terminal_id in self._sessions

    async def input_session(
        self,
        terminal_id: int,
        options: SessionOptions,
        *,
        ephemeral: bool = False,
        cwd_auto_create: bool = False,
    ) -> TerminalSession:
        """The running session `terminal_id` to type into, started with `options` when it
        does not exist yet."""
        session = self._sessions.get(terminal_id)
        if session is None:
            options = self._new_session_options(
                terminal_id, options, ephemeral=ephemeral, cwd_auto_create=cwd_auto_create
            )
            session = await self._ensure_session(
                terminal_id, options, cwd_auto_create=cwd_auto_create
            )
        if not session.running:
            raise Conflict(
                f"Terminal {terminal_id}: the shell exited (status {session.exit_code}); "
                "create it again",
                reason=Reason.SHELL_EXITED,
            )
        return session

    @contextlib.asynccontextmanager
    async def attach(
        self,
        terminal_id: int,
        options: SessionOptions | None = None,
        *,
        ephemeral: bool = False,
        cwd_auto_create: bool = False,
    ) -> AsyncIterator[Attachment]:
        """Attach a client to a session, created on first use."""
        session = await self.input_session(
            terminal_id,
            options or SessionOptions(),
            ephemeral=ephemeral,
            cwd_auto_create=cwd_auto_create,
        )
        session.clients += 1
        log.info("terminal_attached", terminal_id=terminal_id, clients=session.clients)
        try:
            yield Attachment(session)
        finally:
            session.clients -= 1
            log.info("terminal_detached", terminal_id=terminal_id, clients=session.clients)

    # internals

    def _running_session(self, terminal_id: int) -> TerminalSession:
        session = self.session(terminal_id)
        if not session.running:
            raise Conflict(
                f"Terminal {terminal_id}: the shell exited (status {session.exit_code})",
                reason=Reason.SHELL_EXITED,
            )
        return session

    def check_attachable(
        self,
        terminal_id: int,
        options: SessionOptions,
        *,
        ephemeral: bool = False,
        cwd_auto_create: bool = False,
    ) -> None:
        """Refuse, before a WebSocket upgrade, what `attach` would refuse after it: an id a
        first use could not create, or options a new session could not start with."""
        if terminal_id not in self._sessions:
            self._new_session_options(
                terminal_id, options, ephemeral=ephemeral, cwd_auto_create=cwd_auto_create
            )

    def _new_session_options(
        self, terminal_id: int, options: SessionOptions, *, ephemeral: bool, cwd_auto_create: bool
    ) -> SessionOptions:
        """`options` checked for a session created on first use, its display parsed."""
        if not ephemeral:
            self.check_creatable(terminal_id)
        validate_env(options.env, typed=False)
        options = msgspec.structs.replace(options, display=parse_display(options.display))
        check_options(self._site, options, cwd_auto_create=cwd_auto_create)
        return options

    @staticmethod
    def check_creatable(terminal_id: int) -> None:
        if terminal_id >= EPHEMERAL_FIRST:
            raise InvalidRequest(
                f"terminal_id {EPHEMERAL_FIRST}-{TERMINAL_ID_MAX} are reserved for ephemeral "
                "sessions (create with ephemeral: true)",
                reason=Reason.RESERVED_TERMINAL_ID,
            )

    @staticmethod
    def _refuse_program(session: TerminalSession, action: str) -> None:
        program = session.program
        if program is not None:
            raise Conflict(
                f"Terminal {session.terminal_id} runs program {program.name!r} (id "
                f"{program.id}); cannot {action} it: start and stop it as that program",
                reason=Reason.TERMINAL_RUNS_PROGRAM,
            )

    async def _ensure_session(
        self,
        terminal_id: int,
        options: SessionOptions,
        *,
        reset: bool = False,
        cwd_auto_create: bool = False,
    ) -> TerminalSession:
        """The session `terminal_id`: reset if asked, started if missing. One start at a time
        per id, so concurrent first uses share one shell."""
        async with self._sessions.lock(terminal_id):
            session = self._sessions.get(terminal_id)
            if session is not None and not reset:
                return session
            return await self._replace_session(
                terminal_id, options, cwd_auto_create=cwd_auto_create
            )

    async def _replace_session(
        self, terminal_id: int, options: SessionOptions, *, cwd_auto_create: bool
    ) -> TerminalSession:
        """Start session `terminal_id` (the caller holds its lock), ending an old one first;
        a live holder nobody followed yet (a program's, just started) is adopted instead."""
        old = self._sessions.pop(terminal_id, None)
        if old is not None:
            await old.close(f"terminal {terminal_id} was reset")
        socket = self.holders_dir / f"{terminal_id}.sock"
        if old is None and socket.exists():
            adopted = await self._adopt(terminal_id, socket)
            if adopted is not None and adopted.running:
                return adopted
            if adopted is not None:
                del self._sessions[terminal_id]
                await adopted.close(f"terminal {terminal_id} was recreated")
        plan = await plan_launch(self._site, terminal_id, options, cwd_auto_create=cwd_auto_create)
        session = TerminalSession(
            terminal_id,
            plan.shell,
            options,
            plan.cwd,
            buffer_bytes=self.config.output_buffer_bytes,
            history_limit=self.config.history_limit,
        )
        try:
            await session.start(plan.launch, use_pidfd=self.use_pidfd)
        except HolderError as exc:
            raise ServiceUnavailable(
                f"Terminal {terminal_id} could not be started: {exc}",
                reason=Reason.TERMINAL_START_FAILED,
            ) from exc
        finally:
            for fd in plan.launch.keep_fds:
                os.close(fd)
        self._sessions[terminal_id] = session
        return session

    def allocate_ephemeral_id(self) -> int:
        return self._sessions.allocate_ephemeral_id()

    async def _reap_idle_ephemeral(self) -> None:
        idle_timeout = self.config.ephemeral_idle_timeout
        while True:
            await asyncio.sleep(min(10.0, max(0.05, idle_timeout / 4)))
            now = time.time()
            for terminal_id, session in list(self._sessions.items()):
                if not session.options.ephemeral or session.program is not None:
                    continue
                if (session.idle or not session.running) and (
                    now - session.last_activity >= idle_timeout
                ):
                    log.info("terminal_idle_reaped", terminal_id=terminal_id)
                    with contextlib.suppress(NotFound):
                        await self.delete(terminal_id)
