"""The daemon's lifecycle, top to bottom: build the app, bind the sites, notify readiness,
wait for a signal, drain in-flight requests within a bound, close.

SIGTERM and SIGINT stop the daemon within `server.shutdown_timeout`: the listening sockets
close, every request still in flight is answered 503 `SHUTTING_DOWN`, WebSockets are closed
with 1001 (`hoodyd.api.draining`), services close, and whatever is still running when the
bound is reached is abandoned: the process then gives what is left (a task that ignored its
cancellation, a worker thread blocked in a catalogue tool) `EXIT_GRACE_S` more and ends
without it. SIGHUP is ignored with a log line: everything the config sets
(sockets, state dir, supervisord, sources) is bound at start-up, so applying a changed
config means a restart, which never restarts a program.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import grp
import os
import pwd
import resource
import secrets
import shlex
import signal
import socket
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import NoReturn

import structlog
from aiohttp import web

from hoodyd.api import console
from hoodyd.api.draining import DRAIN
from hoodyd.api.server import ConnectionLimits, ListenerSite, Runner
from hoodyd.app import create_app
from hoodyd.childenv import remember_open_file_limit
from hoodyd.config import Config
from hoodyd.errors import InvalidRequest, Reason, StateNotSaved
from hoodyd.private import AlreadyRunning, DaemonLock, UnsafePath, acquire_lock, private_dir
from hoodyd.programs.files import write_atomic

log = structlog.get_logger()

SD_LISTEN_FDS_START = 3
# a proxy may open hundreds of connections at once (one per waiting client)
BACKLOG = 1024
# after `server.shutdown_timeout`, how long the exit waits for what outlived it (tasks, worker
# threads) before the process ends without them
EXIT_GRACE_S = 1.0


def run(config: Config) -> None:
    """`serve` on an event loop of its own, left within `server.shutdown_timeout` plus
    `EXIT_GRACE_S` of a stop signal whatever its tasks and threads are doing.

    `asyncio.run` would wait without a bound for every task it cancels at the end and for
    every thread of its default executor, and the interpreter's exit joins every executor
    thread (a source sync blocked in a catalogue tool may run for minutes): here they get
    `EXIT_GRACE_S` together, then the process ends without them (`os._exit`, once the log
    is flushed; the locks are released and the socket removed by then)."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    error: BaseException | None = None
    try:
        loop.run_until_complete(serve(config))
    except BaseException as exc:
        error = exc
    deadline = time.monotonic() + EXIT_GRACE_S
    try:
        tasks = _end_tasks(loop, deadline)
    finally:
        asyncio.set_event_loop(None)
        loop.close()  # idle executor threads end; a busy one is not waited for here
    threads = _threads_left(deadline)
    if tasks or threads:
        log.warning("exit_abandons", tasks=tasks, threads=threads, grace_s=EXIT_GRACE_S)
        _exit_now(error)
    if error is not None:
        raise error


def _end_tasks(loop: asyncio.AbstractEventLoop, deadline: float) -> int:
    """Cancel every task left and wait for them (then for the async generators to close)
    until `deadline`; how many tasks are still running."""
    tasks = asyncio.all_tasks(loop)
    for task in tasks:
        task.cancel()
    pending: set[asyncio.Task[object]] = set()
    if tasks:
        done, pending = loop.run_until_complete(
            asyncio.wait(tasks, timeout=max(deadline - time.monotonic(), 0))
        )
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                loop.call_exception_handler(
                    {
                        "message": "unhandled exception during shutdown",
                        "exception": task.exception(),
                        "task": task,
                    }
                )
    closing = loop.create_task(loop.shutdown_asyncgens())
    loop.run_until_complete(asyncio.wait({closing}, timeout=max(deadline - time.monotonic(), 0)))
    if not closing.done():
        closing.cancel()
    return len(pending)


def _threads_left(deadline: float) -> list[str]:
    """The names of the threads (other than this one; daemon threads do not hold the exit)
    still running at `deadline`, each waited for until then."""
    current = threading.current_thread()
    others = [t for t in threading.enumerate() if t is not current and not t.daemon]
    for thread in others:
        thread.join(max(deadline - time.monotonic(), 0))
    return [t.name for t in others if t.is_alive()]


def _exit_now(error: BaseException | None) -> NoReturn:
    """End the process at once, as it would have ended on `error` (None: success)."""
    code = 0
    if isinstance(error, SystemExit):
        if isinstance(error.code, int) or error.code is None:
            code = error.code or 0
        else:
            print(error.code, file=sys.stderr)
            code = 1
    elif isinstance(error, KeyboardInterrupt):
        code = 130
    elif error is not None:
        traceback.print_exception(error)
        code = 1
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


async def serve(config: Config) -> None:
    # before anything else: files are private from the first one, and a second daemon on
    # this state dir or socket leaves at once without touching the first one's
    os.umask(0o077)
    raise_open_file_limit()
    inherited = _inherited_fds()
    locks = claim_paths(config, socket_inherited=bool(inherited))
    try:
        await _serve(config, inherited)
    finally:
        for lock in locks:
            lock.release()


def claim_paths(config: Config, *, socket_inherited: bool) -> list[DaemonLock]:
    """Make the state (and socket) directories private and take their one-daemon locks."""
    socket_path = config.server.socket
    group = config.server.allowed_gids[0] if config.server.allowed_gids else None
    if group is not None and not socket_inherited:
        check_socket_group(group)
    locks: list[DaemonLock] = []
    try:
        try:
            private_dir(config.state_path)
            locks.append(acquire_lock(config.state_path / "lock", socket=socket_path))
        except OSError as exc:
            raise UnsafePath(
                f"cannot use the state dir {config.state_path}: {exc.strerror}; choose one "
                "you can write with --state-dir (or state_dir in the config)"
            ) from None
        if not socket_inherited:
            try:
                socket_dir = private_dir(
                    Path(socket_path).parent, 0o700 if group is None else 0o750
                )
                if group is not None:
                    os.chown(socket_dir, -1, group)
            except OSError as exc:
                raise UnsafePath(
                    f"cannot make the socket's directory {Path(socket_path).parent}: "
                    f"{exc.strerror}; choose another with --socket (or server.socket)"
                ) from None
            locks.append(acquire_lock(Path(f"{socket_path}.lock"), socket=socket_path))
    except (UnsafePath, AlreadyRunning) as exc:
        for lock in locks:
            lock.release()
        raise SystemExit(f"hoodyd: {exc}") from None
    return locks


def check_socket_group(gid: int) -> None:
    """The socket is given to the first group of `server.allowed_gids`: only root or a
    member of that group can do so."""
    if os.geteuid() == 0 or gid == os.getegid() or gid in os.getgroups():
        return
    try:
        name = f"{grp.getgrgid(gid).gr_name} ({gid})"
    except KeyError:
        name = str(gid)
    user = pwd.getpwuid(os.geteuid()).pw_name if _known_uid() else str(os.geteuid())
    raise SystemExit(
        f"hoodyd: server.allowed_gids names group {name}, which {user} is not a member of, "
        "so the socket cannot be given to it; join the group (then log in again) or remove "
        "it from allowed_gids"
    )


def _known_uid() -> bool:
    try:
        pwd.getpwuid(os.geteuid())
    except KeyError:
        return False
    return True


async def _serve(config: Config, inherited: list[socket.socket]) -> None:
    stop = _stop_on_signals()  # before the socket exists: a SIGTERM from then on is graceful
    on_tcp = bool(config.server.tcp) or any(s.family != socket.AF_UNIX for s in inherited)
    # the TCP port is bound before anything starts (supervisord among them): a busy port
    # ends the start-up with nothing left running
    tcp_socket = None
    if config.server.tcp:
        tcp_socket = bind_tcp_socket(*parse_host_port(config.server.tcp))
    token = resolve_token(config) if on_tcp else None
    app = create_app(config, token=token)
    # aiohttp may wait twice its timeout (for handlers, then for their cancellation); the
    # drain answers in-flight requests at once, so this only bounds a handler that hangs.
    # WebSockets get as long to answer their close frame: what is left is the services'
    drain_s = config.server.shutdown_timeout / 4
    app[DRAIN].close_wait_s = drain_s
    runner = Runner(
        app,
        limits=connection_limits(config),
        handle_signals=False,
        access_log=None,
        shutdown_timeout=drain_s,
    )
    await runner.setup()  # services start here: supervisord, store, reconciliation
    # what start-up allocated (indexes, config) lives as long as the daemon: keep it out of
    # every later full collection, which would otherwise stall requests for ~20 ms
    gc.freeze()
    created_socket: Path | None = None
    try:
        if inherited:
            for sock in inherited:
                await ListenerSite(runner, sock).start()
            log.info("serving_inherited_sockets", count=len(inherited))
        else:
            created_socket = Path(config.server.socket)
            group = config.server.allowed_gids[0] if config.server.allowed_gids else None
            sock = bind_unix_socket(created_socket, socket_mode(config), group)
            await ListenerSite(runner, sock).start()
            log.info("serving_unix", socket=str(created_socket))
        if tcp_socket is not None:
            host, port = parse_host_port(config.server.tcp)
            await ListenerSite(runner, tcp_socket).start()
            log.info("serving_tcp", host=host, port=port)
        sd_notify("READY=1")
        _tell_terminal(f"hoodyd: listening on {', '.join(_addresses(config, inherited))}")
        if tcp_socket is not None:
            console_at, token_at = console.where(config)
            log.info("console", url=console_at, token_file=token_at)
            _tell_terminal(f"hoodyd: console at {console_at} (token in {token_at})")
        await stop.wait()
        sd_notify("STOPPING=1")
        log.info("shutting_down", drain_timeout_s=config.server.shutdown_timeout)
    finally:
        await _close_within(runner, config.server.shutdown_timeout)
        if created_socket is not None:
            with contextlib.suppress(FileNotFoundError):
                created_socket.unlink()
        log.info("stopped")
        _tell_terminal(_left_running(config))


def raise_open_file_limit() -> int:
    """Raise the soft limit of open files to the hard one (systemd starts services at 1024
    soft): every connection costs a descriptor. Children get the soft limit hoodyd was
    started with back (`hoodyd.childenv.with_open_file_limit`). Returns the limit now in
    force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as exc:
            log.warning("open_file_limit_not_raised", soft=soft, hard=hard, error=str(exc))
            return soft
        remember_open_file_limit(soft)
    log.info("open_file_limit", soft=hard, hard=hard, was=soft)
    return hard


def connection_limits(config: Config) -> ConnectionLimits:
    """The configured connection limits, fitted to the open-file limit in force."""
    server = config.server
    wanted = ConnectionLimits(
        head_timeout=server.head_timeout,
        body_timeout=server.body_timeout,
        keepalive_timeout=server.keepalive_timeout,
        max_tcp=server.max_tcp_connections,
        max_unix=server.max_unix_connections,
    )
    open_files = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    limits = wanted.fitted(open_files)
    log.info(
        "connection_limits",
        max_tcp=limits.max_tcp,
        max_unix=limits.max_unix,
        open_file_limit=open_files,
        head_timeout_s=limits.head_timeout,
        body_timeout_s=limits.body_timeout,
        keepalive_timeout_s=limits.keepalive_timeout,
        **({"reduced_from": [wanted.max_tcp, wanted.max_unix]} if limits != wanted else {}),
    )
    return limits


async def _close_within(runner: web.AppRunner, limit: float) -> None:
    """Drain and close, abandoning what is still running when `limit` seconds have passed
    (systemd's TimeoutStopSec must exceed it). The bound holds whatever the closing does: it
    runs as a task of its own that is waited for at most `limit` (a timeout around it would
    wait on, say, a service close that outlives its own cancellation)."""
    closing = asyncio.ensure_future(runner.cleanup())
    await asyncio.wait({closing}, timeout=limit)
    if not closing.done():
        log.error("shutdown_timed_out", limit_s=limit)
        closing.cancel()  # given `EXIT_GRACE_S` more by `run`, no longer
    elif not closing.cancelled() and (error := closing.exception()) is not None:
        log.error("shutdown_failed", error=type(error).__name__, detail=str(error))


def _tell_terminal(line: str) -> None:
    """One line for a person running `hoodyd serve` in a terminal (logs go elsewhere)."""
    if sys.stdout.isatty():
        print(line, flush=True)


def _addresses(config: Config, inherited: list[socket.socket]) -> list[str]:
    where = [f"unix:{config.server.socket}"] if not inherited else ["inherited sockets"]
    if config.server.tcp:
        host, port = parse_host_port(config.server.tcp)
        where.append(f"http://{host}:{port}")
    return where


def _left_running(config: Config) -> str:
    if config.supervisor.mode != "embedded":
        return "hoodyd: stopped; the external supervisord and its programs keep running"
    state = shlex.quote(str(config.state_path))
    return (
        "hoodyd: stopped; supervisord and its programs keep running, and so do the terminal "
        f"sessions. End them all with: hoodyd down --state-dir {state} "
        f"(the programs only: hoodyd stop-supervisor --state-dir {state})"
    )


def socket_mode(config: Config) -> int:
    """The configured mode, with group access only where a group is allowed on the socket."""
    mode = config.server.socket_mode & 0o770
    return mode if config.server.allowed_gids else mode & 0o700


def bind_unix_socket(path: Path, mode: int, group: int | None = None) -> socket.socket:
    """Bind and listen under a temporary name, then rename into place: the socket path
    appears only once it accepts connections, with its final mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()  # stale socket of a daemon that is gone
        else:
            raise SystemExit(f"hoodyd: another daemon answers on {path}")
        finally:
            probe.close()
    staging = path.with_name(f".{path.name}.{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        staging.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(staging))
    if group is not None:
        os.chown(staging, -1, group)
    os.chmod(staging, mode)
    sock.listen(BACKLOG)
    os.rename(staging, path)
    return sock


def bind_tcp_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=BACKLOG)
    except OSError as exc:
        raise SystemExit(f"hoodyd: cannot listen on {host}:{port}: {exc.strerror}") from None


def parse_host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise SystemExit(f"hoodyd: --tcp needs HOST:PORT, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def resolve_token(config: Config) -> str:
    """The TCP bearer token: from config/env, else generated once into STATE/token (0600)."""
    if config.server.token:
        return config.server.token
    path = config.state_path / "token"
    if path.exists():
        token = path.read_text().strip()
        if not token:  # never an empty token: every bearer would match nothing but ""
            raise InvalidRequest(
                f"{path} holds no token; remove it and hoodyd generates a new one",
                reason=Reason.BAD_CONFIG,
            )
        return token
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    try:
        # a temp name renamed into place: a full disk leaves no file, never an empty one
        write_atomic(path, token + "\n", 0o600)
    except OSError as exc:
        raise StateNotSaved(f"cannot write the token file {path}: {exc.strerror}") from exc
    log.info("token_generated", path=str(path))
    return token


def _inherited_fds() -> list[socket.socket]:
    """Sockets passed by systemd socket activation (LISTEN_FDS), if they are ours."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return []
    count = int(os.environ.get("LISTEN_FDS", "0") or 0)
    return [socket.socket(fileno=SD_LISTEN_FDS_START + i) for i in range(count)]


def sd_notify(message: str) -> None:
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.sendto(message.encode(), address)
        except OSError as exc:
            log.warning("sd_notify_failed", error=str(exc))


def _stop_on_signals() -> asyncio.Event:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, _ignore_hangup)
    return stop


def _ignore_hangup() -> None:
    log.warning(
        "sighup_ignored",
        detail="the config is read at start-up; restart hoodyd to apply changes "
        "(programs and terminals keep running)",
    )
