"""Receiving process state changes from the supervisord event listener.

The listener (`hoodyd.programs.eventlistener`, run by supervisord) sends one JSON datagram per
PROCESS_STATE_* event to a Unix datagram socket that `EventReceiver` binds; each datagram is
decoded into a `ProcessEvent` and handed to a callback (the observer's). Datagrams are a hint,
not the truth: one can be lost while hoodyd restarts, so the observer polls as well.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import stat
from collections.abc import Callable
from pathlib import Path

import msgspec
import structlog

from hoodyd.schemas.daemon import ProcessState

log = structlog.get_logger()

# large enough for a burst of events from many instances starting at once
RECEIVE_BUFFER = 1024 * 1024


class ProcessEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One supervisord process state change; `state` is the bare name such as `RUNNING`."""

    process_name: str
    group_name: str
    state: ProcessState
    from_state: ProcessState | None = None
    pid: int | None = None
    # only on EXITED: whether the exit code was one of the program's expected codes
    expected: bool | None = None
    # on STARTING and BACKOFF: how many start attempts have failed in a row
    tries: int | None = None
    # supervisord's event serial, and the pid of the supervisord that numbered it: datagrams
    # can arrive out of order, serials cannot
    serial: int | None = None
    source: int = 0


_decoder = msgspec.json.Decoder(ProcessEvent)


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, receiver: EventReceiver) -> None:
        self.receiver = receiver

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.receiver.handle(data)

    def error_received(self, exc: Exception) -> None:
        log.warning("process_event_socket_error", error=str(exc))


class EventReceiver:
    """Binds `path` (mode 0600) and calls `callback` for every well-formed event datagram."""

    def __init__(self, path: Path, callback: Callable[[ProcessEvent], None]) -> None:
        self.path = Path(path)
        self.callback = callback
        self._transport: asyncio.DatagramTransport | None = None
        self._inode: int | None = None

    async def start(self) -> None:
        if self._transport is not None:
            return
        sock = self._bind()
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_datagram_endpoint(lambda: _Protocol(self), sock=sock)
        except BaseException:
            sock.close()
            self._unlink()
            raise
        self._transport = transport
        log.info("process_event_receiver_started", path=str(self.path))

    def _bind(self) -> socket.socket:
        try:
            existing = self.path.lstat()
        except FileNotFoundError:
            pass
        else:
            if not stat.S_ISSOCK(existing.st_mode):
                raise FileExistsError(f"{self.path} exists and is not a socket")
        # bind under a temporary name, restrict it, then rename over the final path (replacing
        # a stale socket): the socket never exists at `path` with looser permissions
        tmp = self.path.with_name(f".ev-{secrets.token_hex(4)}")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
            sock.bind(str(tmp))
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
            self._inode = self.path.lstat().st_ino
            sock.setblocking(False)
        except BaseException:
            sock.close()
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        return sock

    def handle(self, data: bytes) -> None:
        """Decode one datagram and pass it on; anything malformed is logged and dropped."""
        try:
            event = _decoder.decode(data)
        except msgspec.DecodeError as exc:
            log.warning("process_event_malformed", size=len(data), error=str(exc))
            return
        try:
            self.callback(event)
        except Exception:  # one bad event must not stop the feed
            log.exception(
                "process_event_callback_failed", process=event.process_name, state=event.state
            )

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        self._unlink()

    def _unlink(self) -> None:
        # only our own socket: a newer receiver may have replaced it meanwhile
        with contextlib.suppress(FileNotFoundError):
            if self._inode is not None and self.path.lstat().st_ino == self._inode:
                self.path.unlink()
        self._inode = None
