"""The terminal holder: a small long-lived process that owns one terminal's PTY and shell.

hoodyd may restart at any time; the holder keeps the shell, the output ring (without the
shell integration markers, which it strips and records with the ring offset where each
occurred) and serves them on one Unix socket (`protocol`), so a new hoodyd re-adopts
the terminal and replays what it missed.

    python -I -m hoodyd.terminals.holder --socket PATH --terminal N [--cols 80] [--rows 24]
        [--ring-bytes 1048576] [--foreground] [--meta-json JSON | --meta-fd FD]
        [--ready-fd FD] [--user NAME] [--keep-fd FD]... [--markers] -- ARGV...

ARGV runs with the holder's environment, cwd and umask. By default the holder detaches (a
fork and a new session: it is nobody's child and has no controlling terminal), stays after
the shell exits so that its output can still be read, and ends on TERMINATE, on CLOSE once
the shell has exited, or on SIGTERM. With `--foreground` (a supervisord program) it stays
the caller's child and exits with the shell's status when the shell exits. `--ready-fd`
gets one line once the socket accepts connections: `ready <pid>` or `error <message>`.
`--meta-fd` reads the meta from a descriptor (hoodyd passes a memory file: the meta holds
the session's environment, which a command line would show every user); `--user` runs the
shell as that account while the holder, root, keeps serving its socket. `--markers` makes
the shell integration's nonce here and hands it to the shell through a pipe its start-up file
reads and closes, so that no environment, command line or file ever holds it.

Imports stay within the standard library and the holder package: the holder's start-up time is
part of every new terminal's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import pwd
import secrets
import signal
import socket
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hoodyd.terminals.holder import protocol as wire
from hoodyd.terminals.holder.markers import MarkerEvent, MarkerScanner, Output
from hoodyd.terminals.holder.protocol import FrameType
from hoodyd.terminals.holder.pty import PtyProcess
from hoodyd.terminals.holder.ring import OutputRing

if TYPE_CHECKING:
    from hoodyd.terminals.holder.screen import HolderScreen

# A client this far behind live output (beyond a replay of the whole ring) is dropped; it
# reconnects and follows from its own offset, instead of the holder buffering without bound.
MAX_BEHIND = 32 * 1024 * 1024
REPLAY_CHUNK = 1024 * 1024
MAX_MARKERS = 65536
HANG_UP_GRACE = 2.0
FLUSH_TIMEOUT = 2.0
LISTEN_BACKLOG = 16
PROBE_TIMEOUT = 1.0
SOCKET_UMASK = 0o177  # the socket file is 0600


class HolderStartError(Exception):
    """The holder cannot start; the message is for whoever started it."""


@dataclass(frozen=True, slots=True)
class Options:
    socket: Path
    terminal_id: int
    cols: int
    rows: int
    ring_bytes: int
    foreground: bool
    meta: dict[str, Any]
    ready_fd: int | None
    argv: list[str]
    # the shell runs as this account (the holder itself stays the caller's, root)
    user: pwd.struct_passwd | None = None
    # descriptors the shell inherits (its start-up file, for a shell run as another user)
    keep_fds: tuple[int, ...] = ()
    # the shell reports completion with markers under a nonce the holder makes (`--markers`)
    markers: bool = False


def parse_options(args: list[str]) -> Options:
    parser = argparse.ArgumentParser(prog="python -m hoodyd.terminals.holder")
    parser.add_argument("--socket", required=True, type=Path)
    parser.add_argument("--terminal", required=True, type=int)
    parser.add_argument("--cols", type=int, default=80)
    parser.add_argument("--rows", type=int, default=24)
    parser.add_argument("--ring-bytes", type=int, default=1024 * 1024)
    parser.add_argument("--foreground", action="store_true")
    parser.add_argument("--meta-json", default="{}")
    parser.add_argument("--meta-fd", type=int, help="read the meta JSON from this descriptor")
    parser.add_argument("--ready-fd", type=int)
    parser.add_argument("--user", help="run the shell as this user (the holder runs as root)")
    parser.add_argument(
        "--keep-fd", type=int, action="append", default=[], help="pass to the shell"
    )
    parser.add_argument(
        "--markers", action="store_true", help="make a marker nonce and hand it to the shell"
    )
    parser.add_argument("argv", nargs="+")
    parsed = parser.parse_args(args)
    account = None
    if parsed.user is not None:
        try:
            account = pwd.getpwnam(parsed.user)
        except KeyError:
            parser.error(f"no user named {parsed.user!r}")
        if os.geteuid() != 0 and account.pw_uid != os.geteuid():
            parser.error("--user needs the holder to run as root")
    if parsed.meta_fd is not None:
        with os.fdopen(parsed.meta_fd, "rb") as source:
            meta = json.loads(source.read(wire.MAX_META + 1) or b"{}")
    else:
        meta = json.loads(parsed.meta_json)
    if not isinstance(meta, dict):
        parser.error("--meta-json must be a JSON object")
    if not (0 < parsed.cols < 65536 and 0 < parsed.rows < 65536) or parsed.ring_bytes <= 0:
        parser.error("--cols, --rows and --ring-bytes must be positive (cols, rows < 65536)")
    return Options(
        socket=parsed.socket,
        terminal_id=parsed.terminal,
        cols=parsed.cols,
        rows=parsed.rows,
        ring_bytes=parsed.ring_bytes,
        foreground=parsed.foreground,
        meta=meta,
        ready_fd=parsed.ready_fd,
        argv=parsed.argv,
        user=account,
        keep_fds=tuple(parsed.keep_fd),
        markers=parsed.markers,
    )


class ReadyLine:
    """The one line for `--ready-fd`: `ready <pid>` or `error <message>`."""

    def __init__(self, fd: int | None) -> None:
        self._fd = fd

    def ready(self) -> None:
        self._send(f"ready {os.getpid()}")

    def fail(self, message: str) -> None:
        self._send("error " + message.replace("\n", " "))

    def _send(self, line: str) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):  # whoever waited for it is gone
            os.write(fd, line.encode() + b"\n")
        os.close(fd)


def claim_socket(path: Path, terminal_id: int) -> socket.socket:
    """Bind and listen on `path`, replacing a stale socket file; refuse a live one."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(PROBE_TIMEOUT)  # a full backlog would block connect() for good
    try:
        with wire.unix_address(path) as address:
            probe.connect(address)
    except (FileNotFoundError, ConnectionRefusedError):
        pass
    except TimeoutError:
        raise HolderStartError(
            f"terminal {terminal_id} is already held (its socket does not accept connections)"
        ) from None
    else:
        credentials = probe.getsockopt(
            socket.SOL_SOCKET, socket.SO_PEERCRED, wire.PEER_CREDENTIALS.size
        )
        pid, _uid, _gid = wire.PEER_CREDENTIALS.unpack(credentials)
        raise HolderStartError(f"terminal {terminal_id} is already held by pid {pid}")
    finally:
        probe.close()
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # bound and listening under a name of its own first, then published under `path` by a
    # hard link: whoever finds `path` is never refused (between bind and listen it would be,
    # and a scan could take a live holder for a dead one), and of two holders claiming it at
    # once the second is refused instead of replacing the first
    staging = path.with_name(f".{path.name}.{os.getpid()}")
    umask = os.umask(SOCKET_UMASK)
    try:
        with contextlib.suppress(FileNotFoundError):
            staging.unlink()
        with wire.unix_address(staging) as address:
            listener.bind(address)
        listener.listen(LISTEN_BACKLOG)
        os.link(staging, path)
    except FileExistsError:
        listener.close()
        raise HolderStartError(f"terminal {terminal_id} was claimed by another holder") from None
    except OSError as error:
        listener.close()
        raise HolderStartError(f"cannot listen on {path}: {error}") from error
    finally:
        os.umask(umask)
        with contextlib.suppress(FileNotFoundError):
            staging.unlink()
    return listener


def detach() -> None:
    """Leave whoever started us: the parent returns at once, the child continues in a new
    session (not hoodyd's child, not in its process group, no controlling terminal)."""
    sys.stdout.flush()
    sys.stderr.flush()
    if os.fork() > 0:
        os._exit(0)
    os.setsid()


def name_process(name: str) -> None:
    """The name `ps`, `top` and `pgrep` show (at most 15 bytes), instead of "python3"."""
    with contextlib.suppress(OSError):
        Path("/proc/self/comm").write_text(name[:15])


def exit_status(code: int | None) -> int:
    """A shell's status as a process exit status: 128+N for a shell killed by signal N."""
    if code is None:
        return 1
    return 128 - code if code < 0 else code


class ClientConnection(asyncio.Protocol):
    """One connected client: its frames go to the holder, the holder's stream comes back."""

    def __init__(self, holder: Holder) -> None:
        self._holder = holder
        self._decoder = wire.FrameDecoder()
        self._transport: asyncio.Transport | None = None
        self.following = False
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        sock = transport.get_extra_info("socket")
        credentials = sock.getsockopt(
            socket.SOL_SOCKET, socket.SO_PEERCRED, wire.PEER_CREDENTIALS.size
        )
        _pid, uid, _gid = wire.PEER_CREDENTIALS.unpack(credentials)
        if uid not in (0, os.geteuid()):
            transport.abort()
            return
        self._transport = transport
        self._holder.accept(self)

    def data_received(self, data: bytes) -> None:
        if self._transport is None:
            return
        try:
            for kind, payload in self._decoder.feed(data):
                self._holder.handle(self, kind, payload)
        except Exception:
            # A malformed frame (bad JSON, an unknown signal) ends this connection, never the
            # holder: the shell must outlive a confused client.
            self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._holder.forget(self)
        if not self.closed.done():
            self.closed.set_result(None)

    def send(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def behind(self) -> int:
        return self._transport.get_write_buffer_size() if self._transport is not None else 0

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()  # after what is buffered has been written

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()


class Holder:
    def __init__(self, options: Options, listener: socket.socket, ready: ReadyLine) -> None:
        self._options = options
        self._listener = listener
        self._ready = ready
        self._socket_identity = _identity(options.socket)
        self._cols, self._rows = options.cols, options.rows
        self._meta = options.meta
        self._ring = OutputRing(options.ring_bytes)
        self._max_behind = options.ring_bytes + MAX_BEHIND
        # The nonce lives in this process's memory and, once read, the shell's: never in an
        # environment, a command line or a file (see `_nonce_pipe`).
        self._nonce = secrets.token_hex(16) if options.markers else None
        self._scanner = MarkerScanner(self._nonce) if self._nonce else None
        # (ring offset, sequence number, event), oldest first
        self._markers: deque[tuple[int, int, MarkerEvent]] = deque(maxlen=MAX_MARKERS)
        # the newest marker whose output the ring dropped: a replay from the ring's start
        # begins with it, so a follower still learns whether the shell sits at its prompt
        self._last_pruned: tuple[int, int, MarkerEvent] | None = None
        self._marker_seq = 0
        self._clients: set[ClientConnection] = set()
        self._exit_code: int | None = None
        self._exited = False
        self._started_at = 0.0
        self._pty: PtyProcess | None = None
        self._server: asyncio.Server | None = None
        self._ending: asyncio.Task[None] | None = None
        self._hanging_up: asyncio.Task[None] | None = None
        self._done: asyncio.Future[None] | None = None
        # the screen answering SCREEN requests: imported and built on the first one
        self._screen: HolderScreen | None = None

    async def run(self) -> int:
        """Start the shell, serve until told to end, then leave no socket behind."""
        loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        # Handlers before the shell starts: a signal ignored by whoever started the holder
        # would otherwise stay ignored in the shell, while a handled one is reset by exec.
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(sig, self.hang_up, HANG_UP_GRACE)
        env = dict(os.environ)
        env.pop("HOODYD_MARKER", None)
        nonce_fd = self._nonce_pipe(env)
        account = self._options.user
        if account is not None:
            env.update(
                HOME=account.pw_dir,
                USER=account.pw_name,
                LOGNAME=account.pw_name,
                SHELL=account.pw_shell,
            )
        self._pty = PtyProcess(
            self._options.argv,
            env,
            os.getcwd(),
            self._cols,
            self._rows,
            self._on_output,
            self._on_exit,
            umask=None,
            user=account,
            pass_fds=(*self._options.keep_fds, *([] if nonce_fd is None else [nonce_fd])),
        )
        try:
            self._pty.start()
        except OSError as error:
            self._remove_socket()
            raise HolderStartError(
                f"cannot start {self._options.argv[0]}: {error.strerror or error}"
            ) from error
        finally:
            if nonce_fd is not None:
                os.close(nonce_fd)
        # the shell has its copies; this process (possibly of the shell's own user, whose
        # programs could open /proc/<holder>/fd/N) keeps none
        for fd in self._options.keep_fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._started_at = time.time()
        os.chdir("/")  # a held directory would keep its file system busy
        self._server = await loop.create_unix_server(
            lambda: ClientConnection(self), sock=self._listener
        )
        self._ready.ready()
        await self._done
        return exit_status(self._exit_code)

    def _nonce_pipe(self, env: dict[str, str]) -> int | None:
        """The read end of a pipe holding the nonce, for the shell's start-up file to read
        and close (`HOODYD_MARKER_FD` names it). Read once, a pipe is empty: a program the
        shell starts later finds nothing there, in its own descriptors or anyone's."""
        if self._nonce is None:
            return None
        read_end, write_end = os.pipe()
        try:
            os.write(write_end, self._nonce.encode() + b"\n")
        finally:
            os.close(write_end)
        env["HOODYD_MARKER_FD"] = str(read_end)
        return read_end

    # clients

    def accept(self, client: ClientConnection) -> None:
        self._clients.add(client)
        client.send(wire.json_frame(FrameType.HELLO, self._hello()))

    def forget(self, client: ClientConnection) -> None:
        self._clients.discard(client)

    def handle(self, client: ClientConnection, kind: int, payload: bytes) -> None:
        assert self._pty is not None
        if kind == FrameType.INPUT:
            self._pty.write(payload)
        elif kind == FrameType.FOLLOW:
            (offset,) = wire.FOLLOW_FROM.unpack(payload)
            self._replay(client, None if offset < 0 else offset)
        elif kind == FrameType.RESIZE:
            self._cols, self._rows = wire.WINDOW.unpack(payload)
            self._pty.resize(self._cols, self._rows)
        elif kind == FrameType.SIGNAL:
            request = wire.parse_json(payload)
            sig = signal.Signals(request["signal"])
            if request.get("target", "foreground") == "session":
                self._pty.signal_session(sig)
            else:
                self._pty.signal_foreground(sig)
        elif kind == FrameType.QUERY:
            client.send(wire.json_frame(FrameType.REPLY, self._foreground_info()))
        elif kind == FrameType.SET_META:
            meta = wire.parse_json(payload) if len(payload) <= wire.MAX_META else None
            if not isinstance(meta, dict):
                raise wire.ProtocolError("SET_META takes a JSON object of at most 1 MiB")
            self._meta = meta
        elif kind == FrameType.TERMINATE:
            grace = float(wire.parse_json(payload).get("grace", HANG_UP_GRACE))
            if self._exited:
                client.send(wire.json_frame(FrameType.EXITED, {"exit_code": self._exit_code}))
            self.hang_up(grace)
        elif kind == FrameType.CLOSE and self._exited:
            self._end()
        elif kind == FrameType.SCREEN:
            self._screen_service().handle(
                wire.parse_json(payload),
                lambda answer: client.send(wire.json_frame(FrameType.SCREEN_ANSWER, answer)),
            )
        # other types, and CLOSE while the shell runs: ignored

    def _screen_service(self) -> HolderScreen:
        if self._screen is None:
            # pyte and regex load with the first screen request, not with every holder
            from hoodyd.terminals.holder.screen import HolderScreen

            self._screen = HolderScreen(
                self._ring, lambda: (self._cols, self._rows), lambda: not self._exited
            )
        return self._screen

    def _replay(self, client: ClientConnection, offset: int | None) -> None:
        """Everything kept from `offset` on, markers interleaved at their offsets; from now on
        the client gets live output too (no await in between, so nothing is missed)."""
        ring = self._ring
        cursor = ring.start if offset is None else min(max(offset, ring.start), ring.end)
        if self._last_pruned is not None and cursor == ring.start:
            _offset, seq, event = self._last_pruned
            client.send(wire.marker_frame(ring.start, seq, event))
        for marker_offset, seq, event in self._markers:
            if marker_offset < cursor:
                continue
            self._send_kept(client, cursor, marker_offset)
            cursor = marker_offset
            client.send(wire.marker_frame(marker_offset, seq, event))
        self._send_kept(client, cursor, ring.end)
        if self._exited:
            client.send(wire.json_frame(FrameType.EXITED, {"exit_code": self._exit_code}))
        client.following = True

    def _send_kept(self, client: ClientConnection, begin: int, end: int) -> None:
        while begin < end:
            chunk = self._ring.read(begin, min(end - begin, REPLAY_CHUNK))
            client.send(wire.output_frame(chunk.offset, chunk.data))
            begin = chunk.next_offset

    def _broadcast(self, data: bytes, *, followers_only: bool = True) -> None:
        for client in list(self._clients):
            if client.following or not followers_only:
                client.send(data)
                if client.behind() > self._max_behind:
                    client.abort()

    def _hello(self) -> dict[str, Any]:
        assert self._pty is not None
        return {
            "version": wire.VERSION,
            "terminal_id": self._options.terminal_id,
            "holder_pid": os.getpid(),
            "shell_pid": self._pty.pid,
            "started_at": self._started_at,
            "cols": self._cols,
            "rows": self._rows,
            "ring_start": self._ring.start,
            "ring_end": self._ring.end,
            "exited": self._exited,
            "exit_code": self._exit_code,
            "foreground": self._options.foreground,
            "meta": self._meta,
            "screen": True,
        }

    def _foreground_info(self) -> dict[str, Any]:
        assert self._pty is not None
        shell_group = None
        if self._pty.running:
            with contextlib.suppress(OSError):
                shell_group = os.getpgid(self._pty.pid)
        return {
            "foreground_pgrp": self._pty.foreground_group(),
            "shell_pid": self._pty.pid,
            "shell_pgrp": shell_group,
            "running": self._pty.running,
        }

    # the shell

    def _on_output(self, data: bytes) -> None:
        events: list[MarkerEvent] = (
            self._scanner.feed(data) if self._scanner is not None else [Output(data)]
        )
        frames = []
        for event in events:
            offset = self._ring.end
            if isinstance(event, Output):
                self._ring.append(event.data)
                frames.append(wire.output_frame(offset, event.data))
            else:
                self._marker_seq += 1
                self._markers.append((offset, self._marker_seq, event))
                frames.append(wire.marker_frame(offset, self._marker_seq, event))
        # one write for all the frames of one read: a command's completion (output, marker,
        # prompt) reaches hoodyd in one wake-up instead of three
        if frames:
            self._broadcast(b"".join(frames))
        if self._screen is not None:  # after the broadcast: followers first
            for event in events:
                if isinstance(event, Output):
                    self._screen.feed(event.data)
        start = self._ring.start
        while self._markers and self._markers[0][0] < start:
            self._last_pruned = self._markers.popleft()

    def _on_exit(self, code: int | None) -> None:
        self._exited = True
        self._exit_code = code
        self._ring.close()
        self._broadcast(
            wire.json_frame(FrameType.EXITED, {"exit_code": code}), followers_only=False
        )
        if self._screen is not None:
            self._screen.pulse()  # a wait answers `exited`
        if self._options.foreground:
            self._end()

    # the end

    def hang_up(self, grace: float) -> None:
        """Hang up the shell like a closed window (SIGHUP to its session's process groups,
        master closed, SIGKILL after `grace`), then end."""
        if self._hanging_up is None:
            self._hanging_up = asyncio.create_task(self._hang_up(grace))

    async def _hang_up(self, grace: float) -> None:
        assert self._pty is not None
        await self._pty.terminate(grace)
        self._end()

    def _end(self) -> None:
        if self._ending is None:
            self._ending = asyncio.create_task(self._shut_down())

    async def _shut_down(self) -> None:
        """Stop listening and remove the socket file first (a reconnecting client is refused,
        so it knows the holder is gone), then let clients read what was sent to them."""
        assert self._done is not None
        if self._server is not None:  # None: a signal came while the holder was starting
            self._server.close()
        self._remove_socket()
        clients = list(self._clients)
        for client in clients:
            client.close()
        if clients:
            await asyncio.wait([client.closed for client in clients], timeout=FLUSH_TIMEOUT)
        for client in clients:
            client.abort()
        self._done.set_result(None)

    def _remove_socket(self) -> None:
        # Only our own: a stale-socket takeover may already have put another holder's there.
        if _identity(self._options.socket) == self._socket_identity:
            with contextlib.suppress(FileNotFoundError):
                self._options.socket.unlink()


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def main(args: list[str] | None = None) -> int:
    options = parse_options(sys.argv[1:] if args is None else args)
    ready = ReadyLine(options.ready_fd)
    try:
        listener = claim_socket(options.socket, options.terminal_id)
        if not options.foreground:
            detach()
        name_process(f"hoodyd-tty{options.terminal_id}")
        return asyncio.run(Holder(options, listener, ready).run())
    except HolderStartError as error:
        ready.fail(str(error))
        print(error, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
