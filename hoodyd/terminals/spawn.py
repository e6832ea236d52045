"""Starting a terminal holder (`spawn_holder`): through the launcher, a fork server started
on first use (`HolderLauncher`), or as a new interpreter when it is unavailable; and finding
the holders that outlived the previous hoodyd (`list_holders`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

import structlog

from hoodyd.childenv import with_open_file_limit
from hoodyd.terminals.holder import protocol as wire
from hoodyd.terminals.holder.pty import SHELL_UMASK
from hoodyd.terminals.link import HolderError

log = structlog.get_logger()

SPAWN_TIMEOUT = 10.0
# a bigger request (a huge environment) starts its holder as a new interpreter: one packet
# must fit the socket's send buffer
MAX_LAUNCH_REQUEST = 128 * 1024
LOG_TAIL = 2000
LAUNCHER_ARGV = (sys.executable, "-I", "-m", "hoodyd.terminals.holder.launcher")
HOLDER_ARGV = (sys.executable, "-I", "-m", "hoodyd.terminals.holder")


class LauncherUnavailable(Exception):
    """The holder launcher could not take a request (it died, or never started)."""


class HolderLauncher:
    """hoodyd's end of the holder launcher (`holder.launcher`): started on first use, started
    again after it died, ended by `close`. One request at a time; a request it cannot take
    raises LauncherUnavailable, and the holder is then started the slow way."""

    def __init__(self) -> None:
        self._process: asyncio.subprocess.Process | None = None
        self._channel: socket.socket | None = None
        self._lock = asyncio.Lock()

    @property
    def pid(self) -> int | None:
        """The launcher's pid while it runs."""
        process = self._process
        return process.pid if process is not None and process.returncode is None else None

    async def launch(
        self, args: list[str], *, env: dict[str, str], cwd: str, fds: dict[int, int]
    ) -> None:
        """Have a holder started with `args`, `env`, `cwd`, the shell umask and `fds` (each
        target number: the descriptor it takes); returns once the launcher's child exited,
        that is once the holder detached or failed (its ready line tells which). The
        exchange is not cut short by a cancelled caller (a reply left unread would answer
        the next request), and sends copies of `fds`, so the caller may close its own."""
        request = json.dumps(
            {"args": args, "env": env, "cwd": cwd, "umask": SHELL_UMASK, "fds": list(fds)},
            separators=(",", ":"),
        ).encode()
        if len(request) > MAX_LAUNCH_REQUEST:
            raise LauncherUnavailable(f"a request of {len(request)} bytes")
        copies = [os.dup(fd) for fd in fds.values()]
        exchange = asyncio.ensure_future(self._exchange(request, copies))
        # a failure whose caller was cancelled is not an unretrieved exception
        exchange.add_done_callback(lambda done: done.cancelled() or done.exception())
        await asyncio.shield(exchange)

    async def _exchange(self, request: bytes, fds: list[int]) -> None:
        try:
            async with self._lock:
                channel = await self._channel_or_start()
                loop = asyncio.get_running_loop()
                try:
                    socket.send_fds(channel, [request], fds)
                    answer = await asyncio.wait_for(loop.sock_recv(channel, 16), SPAWN_TIMEOUT)
                except (OSError, TimeoutError) as error:
                    await self.close()
                    raise LauncherUnavailable(str(error)) from error
                if len(answer) != 4:
                    await self.close()
                    raise LauncherUnavailable("the holder launcher ended")
        finally:
            for fd in fds:
                os.close(fd)

    async def _channel_or_start(self) -> socket.socket:
        if self._channel is not None and self._process is not None:
            if self._process.returncode is None:
                return self._channel
            await self.close()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            # the holders it forks, and their shells, get the open-file limit hoodyd was
            # started with
            self._process = await asyncio.create_subprocess_exec(
                *with_open_file_limit(LAUNCHER_ARGV),
                str(theirs.fileno()),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
                start_new_session=True,  # not in the process group a Ctrl-C of hoodyd reaches
                env={"PATH": os.environ.get("PATH", os.defpath)},
                cwd="/",
            )  # fmt: skip
        except OSError as error:
            ours.close()
            raise LauncherUnavailable(f"cannot start the holder launcher: {error}") from error
        finally:
            theirs.close()
        ours.setblocking(False)
        self._channel = ours
        return ours

    async def close(self) -> None:
        """End the launcher (it exits when its end of the pair reads end-of-file)."""
        channel, process = self._channel, self._process
        self._channel = self._process = None
        if channel is not None:
            channel.close()
        if process is not None:
            try:
                await asyncio.wait_for(process.wait(), 2.0)
            except TimeoutError:
                process.kill()
                await process.wait()


async def spawn_holder(
    socket_path: Path,
    argv: list[str],
    *,
    env: dict[str, str],
    cwd: str,
    terminal_id: int,
    cols: int,
    rows: int,
    ring_bytes: int,
    meta: dict[str, Any] | bytes,
    log_path: Path | None,
    user: str | None = None,
    keep_fds: tuple[int, ...] = (),
    launcher: HolderLauncher | None = None,
    markers: bool = False,
) -> None:
    """Start a detached holder running `argv` (with `env`, `cwd` and the shell umask) and
    return once its socket accepts connections; HolderError with the holder's own message
    (`terminal N is already held by pid P`, a shell that cannot start) otherwise. With a
    `launcher`, the holder is a fork of it (a new interpreter when it is unavailable). With
    `markers`, the holder makes the shell integration's nonce and hands it to the shell."""
    meta_json = (
        meta if isinstance(meta, bytes) else json.dumps(meta, separators=(",", ":")).encode()
    )
    if len(meta_json) > wire.MAX_META:
        raise ValueError(f"meta of {len(meta_json)} bytes (at most {wire.MAX_META})")
    # The meta (session options, the environment asked for) goes through a memory file, not
    # the command line every user can read in /proc.
    meta_fd = os.memfd_create("hoodyd-meta", os.MFD_CLOEXEC)
    os.write(meta_fd, meta_json)
    os.lseek(meta_fd, 0, os.SEEK_SET)
    read_end, write_end = os.pipe()
    args = [
        "--socket", str(socket_path),
        "--terminal", str(terminal_id),
        "--cols", str(cols),
        "--rows", str(rows),
        "--ring-bytes", str(ring_bytes),
        "--meta-fd", str(meta_fd),
        "--ready-fd", str(write_end),
        *(["--user", user] if user is not None else []),
        *(arg for fd in keep_fds for arg in ("--keep-fd", str(fd))),
        *(["--markers"] if markers else []),
        "--", *argv,
    ]  # fmt: skip
    passed = (write_end, meta_fd, *keep_fds)
    process = None
    try:
        log_fd = _open_log(log_path)
        try:
            fds = {2: log_fd, **{fd: fd for fd in passed}}
            if not await _by_launcher(launcher, args, env=env, cwd=cwd, fds=fds):
                process = await asyncio.create_subprocess_exec(
                    *with_open_file_limit(HOLDER_ARGV),
                    *args,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=log_fd,
                    env=env,
                    cwd=cwd,
                    pass_fds=passed,
                    start_new_session=True,
                    umask=SHELL_UMASK,
                )  # fmt: skip
        finally:
            os.close(log_fd)
    except OSError as error:
        os.close(read_end)
        raise HolderError(f"cannot start a terminal holder: {error}") from error
    finally:
        os.close(write_end)
        os.close(meta_fd)
    try:
        line = await asyncio.wait_for(_read_line(read_end), SPAWN_TIMEOUT)
    except TimeoutError:
        raise HolderError(
            f"the holder of terminal {terminal_id} was not ready within {SPAWN_TIMEOUT} s"
        ) from None
    finally:
        os.close(read_end)
        if process is not None:
            await _reap(process)
    if not line.startswith("ready "):
        message = line.removeprefix("error ").strip() or _log_tail(log_path)
        raise HolderError(message or f"the holder of terminal {terminal_id} did not start")


async def _by_launcher(
    launcher: HolderLauncher | None,
    args: list[str],
    *,
    env: dict[str, str],
    cwd: str,
    fds: dict[int, int],
) -> bool:
    """Whether `launcher` started the holder (False: it is to be started the slow way)."""
    if launcher is None:
        return False
    try:
        await launcher.launch(args, env=env, cwd=cwd, fds=fds)
    except LauncherUnavailable as error:
        log.warning("holder_launcher_unavailable", error=str(error))
        return False
    return True


async def _reap(process: asyncio.subprocess.Process) -> None:
    """The process started returns as soon as the holder has detached (or failed)."""
    try:
        await asyncio.wait_for(process.wait(), 2.0)
    except TimeoutError:
        process.kill()
        await process.wait()


def _open_log(log_path: Path | None) -> int:
    if log_path is None:
        return os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
    return os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)


def _log_tail(log_path: Path | None) -> str:
    if log_path is None:
        return ""
    try:
        with log_path.open("rb") as log_file:
            log_file.seek(0, os.SEEK_END)
            log_file.seek(max(0, log_file.tell() - LOG_TAIL))
            return log_file.read().decode(errors="replace").strip()
    except OSError:
        return ""


async def _read_line(fd: int) -> str:
    """The holder's ready line (or what it wrote before the pipe closed)."""
    loop = asyncio.get_running_loop()
    os.set_blocking(fd, False)
    received = bytearray()
    done: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        try:
            data = os.read(fd, 4096)
        except BlockingIOError:
            return
        received.extend(data)
        if (not data or b"\n" in data) and not done.done():
            done.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await done
    finally:
        loop.remove_reader(fd)
    return received.partition(b"\n")[0].decode(errors="replace")


def list_holders(directory: Path) -> list[tuple[int, Path]]:
    """(terminal id, socket path) of every `<N>.sock` in `directory`, by terminal id."""
    found = []
    with contextlib.suppress(FileNotFoundError):
        for path in directory.iterdir():
            if path.suffix == ".sock" and path.stem.isdigit():
                found.append((int(path.stem), path))
    return sorted(found)
