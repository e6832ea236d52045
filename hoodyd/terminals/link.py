"""hoodyd's link to a terminal holder (`HolderLink`), and what a holder says when it is
reached (`HolderHello`) or asked (`ForegroundInfo`).

A link streams the holder's output and shell integration markers in order, each with its ring
offset, and sends input, resizes and signals as single frames (no await on the hot path). If
the connection drops while the holder still listens (the holder drops a client that falls too
far behind), the link reconnects and follows from the first offset it has not delivered, so
its caller sees neither a gap it could have avoided nor a byte twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from hoodyd.terminals.holder import protocol as wire
from hoodyd.terminals.holder.markers import MarkerEvent, Output
from hoodyd.terminals.holder.protocol import FrameType

RECONNECT_DELAYS = (0.0, 0.05, 0.1, 0.2, 0.4)
MAX_INPUT_FRAME = 1024 * 1024


class HolderError(Exception):
    """A holder could not be started or spoke out of protocol."""


class HolderGone(HolderError):
    """Nothing listens on the holder's socket (a stale socket file, or no file)."""


class ScreenTimeout(HolderError):
    """The holder did not answer a screen request within its deadline."""


@dataclass(frozen=True, slots=True)
class HolderHello:
    terminal_id: int
    holder_pid: int
    shell_pid: int
    started_at: float  # time.time() of the shell's start
    cols: int
    rows: int
    ring_start: int
    ring_end: int
    exited: bool
    exit_code: int | None
    foreground: bool  # a supervisord program's holder: it ends with its shell
    meta: dict[str, Any]
    screen: bool = False  # the holder answers SCREEN requests (older holders do not)

    @classmethod
    def decode(cls, payload: bytes) -> HolderHello:
        try:
            fields = wire.parse_json(payload)
            return cls(
                terminal_id=int(fields["terminal_id"]),
                holder_pid=int(fields["holder_pid"]),
                shell_pid=int(fields["shell_pid"]),
                started_at=float(fields["started_at"]),
                cols=int(fields["cols"]),
                rows=int(fields["rows"]),
                ring_start=int(fields["ring_start"]),
                ring_end=int(fields["ring_end"]),
                exited=bool(fields["exited"]),
                exit_code=None if fields["exit_code"] is None else int(fields["exit_code"]),
                foreground=bool(fields["foreground"]),
                meta=dict(fields["meta"]),
                screen=bool(fields.get("screen", False)),
            )
        except (KeyError, TypeError, ValueError, wire.ProtocolError) as error:
            raise HolderError(f"a holder's hello is malformed: {error}") from error


@dataclass(frozen=True, slots=True)
class ForegroundInfo:
    foreground_pgrp: int | None  # the terminal's foreground process group
    shell_pid: int
    shell_pgrp: int | None
    running: bool


async def _connected_socket(socket_path: Path, timeout: float) -> socket.socket:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        with wire.unix_address(socket_path) as address:
            await asyncio.wait_for(loop.sock_connect(sock, address), timeout)
    except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError) as error:
        sock.close()
        raise HolderGone(f"no holder listens on {socket_path}") from error
    except (OSError, TimeoutError) as error:
        sock.close()
        raise HolderError(f"cannot connect to the holder on {socket_path}: {error}") from error
    except BaseException:
        sock.close()
        raise
    return sock


class _Connection(asyncio.Protocol):
    """One socket to the holder; a reconnect makes a new one, and frames of an old one that
    arrive late are ignored by the link."""

    def __init__(self, link: HolderLink) -> None:
        self._link = link
        self._decoder = wire.FrameDecoder()
        self.transport: asyncio.Transport | None = None
        self.hello: asyncio.Future[HolderHello] = asyncio.get_running_loop().create_future()
        # a failed hello nobody waits for any more is not an unretrieved exception
        self.hello.add_done_callback(lambda hello: hello.cancelled() or hello.exception())
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            for kind, payload in self._decoder.feed(data):
                if not self.hello.done():
                    if kind != FrameType.HELLO:
                        raise HolderError(f"the holder spoke before its hello ({kind})")
                    self.hello.set_result(HolderHello.decode(payload))
                else:
                    self._link._on_frame(self, kind, payload)
        except Exception as error:
            # Out of protocol: this link gives up on the holder rather than reconnect into
            # the same frame again.
            if not self.hello.done():
                self.hello.set_exception(HolderError(f"holder protocol error: {error}"))
            self._link._on_protocol_error(self)
            self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.hello.done():
            self.hello.set_exception(HolderError("the holder closed the connection"))
        if not self.lost.done():
            self.lost.set_result(None)
        self._link._on_connection_lost(self)

    @property
    def writable(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    def send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class HolderLink:
    """A connection to one holder. `connect` reads its HELLO (`hello`); nothing streams
    until `follow`. `on_exit(code)` is called exactly once: when EXITED arrives (live, or at
    the end of a replay), or with None when the holder is gone for good (connection lost and
    the reconnect refused). An exit the HELLO already told at connect is not reported again,
    and nothing is reported after `close`."""

    def __init__(
        self,
        socket_path: Path,
        on_event: Callable[[int, MarkerEvent], None],
        on_exit: Callable[[int | None], None],
        timeout: float,
    ) -> None:
        self._socket_path = socket_path
        self._on_event = on_event
        self._on_exit = on_exit
        self._timeout = timeout
        self._loop = asyncio.get_running_loop()
        self._connection: _Connection | None = None
        self._connected = False
        self._outbox: list[bytes] = []  # frames written while reconnecting
        self._queries: list[asyncio.Future[ForegroundInfo]] = []
        self._screen_requests: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._screen_ids = 0
        self._following = False
        self._follow_from = -1
        self._next_offset: int | None = None  # after the last output byte delivered
        self._last_marker = 0  # sequence number of the last marker delivered
        self._exit_code: int | None = None
        self._exit_known = False
        self._exited_before = False  # the shell had exited when this link connected
        self._gone = False
        self._closing = False
        self._terminating = False
        self._reconnecting: asyncio.Task[None] | None = None
        self._finished: asyncio.Future[None] = self._loop.create_future()
        self.hello: HolderHello

    @classmethod
    async def connect(
        cls,
        socket_path: Path,
        *,
        on_event: Callable[[int, MarkerEvent], None],
        on_exit: Callable[[int | None], None],
        timeout: float = 2.0,
    ) -> HolderLink:
        """Connect and read the HELLO; HolderGone if nothing listens, HolderError if the
        holder does not answer within `timeout`."""
        link = cls(socket_path, on_event, on_exit, timeout)
        await link._open()
        if link.hello.exited:
            # on_exit comes at the end of the replay that follow() asks for, after the output
            # that led to it
            link._exit_code = link.hello.exit_code
            link._exited_before = True
        return link

    async def _open(self) -> None:
        sock = await _connected_socket(self._socket_path, self._timeout)
        connection = _Connection(self)
        try:
            await self._loop.create_unix_connection(lambda: connection, sock=sock)
        except BaseException as error:
            sock.close()
            if isinstance(error, OSError):
                raise HolderError(f"cannot connect to the holder: {error}") from error
            raise
        try:
            self.hello = await asyncio.wait_for(asyncio.shield(connection.hello), self._timeout)
        except TimeoutError:
            connection.abort()
            raise HolderError(
                f"the holder on {self._socket_path} did not say hello within {self._timeout} s"
            ) from None
        except BaseException:  # a malformed hello, or the link closed meanwhile
            connection.abort()
            raise
        self._connection = connection
        self._connected = True

    # properties

    @property
    def running(self) -> bool:
        """The shell is alive as far as this link knows."""
        return not (self._exit_known or self._gone or self._exited_before)

    @property
    def shell_pid(self) -> int:
        return self.hello.shell_pid

    @property
    def exit_code(self) -> int | None:
        return self._exit_code

    # commands (one frame each, no await)

    def follow(self, from_offset: int | None) -> None:
        """Stream everything the holder keeps from `from_offset` (None: its oldest byte) on,
        then live output, to `on_event(offset, event)` in stream order."""
        self._following = True
        self._follow_from = -1 if from_offset is None else from_offset
        self._next_offset = None
        self._last_marker = 0
        self._send(wire.frame(FrameType.FOLLOW, wire.FOLLOW_FROM.pack(self._follow_from)))

    def write(self, data: bytes, *, meta: bytes | None = None) -> None:
        """Input for the PTY, as typed; with `meta`, the new meta goes first, in the same
        write (the holder stores it before it types the input)."""
        head = b"" if meta is None else self._meta_frame(meta)
        if len(data) <= MAX_INPUT_FRAME:
            self._send(head + wire.HEADER.pack(FrameType.INPUT, len(data)) + data)
            return
        if head:
            self._send(head)
        for start in range(0, len(data), MAX_INPUT_FRAME):
            self._send(wire.frame(FrameType.INPUT, data[start : start + MAX_INPUT_FRAME]))

    def resize(self, cols: int, rows: int) -> None:
        self._send(wire.frame(FrameType.RESIZE, wire.WINDOW.pack(cols, rows)))

    def signal(self, sig: int, target: Literal["foreground", "session"] = "foreground") -> None:
        """`sig` to the terminal's foreground process group, or to every process group of
        the shell's session."""
        self._send(wire.json_frame(FrameType.SIGNAL, {"signal": int(sig), "target": target}))

    def set_meta(self, meta: dict[str, Any] | bytes) -> None:
        """Replace the meta object the holder returns in every later HELLO (a dict, or a JSON
        object already encoded)."""
        payload = (
            meta if isinstance(meta, bytes) else json.dumps(meta, separators=(",", ":")).encode()
        )
        self._send(self._meta_frame(payload))

    @staticmethod
    def _meta_frame(payload: bytes) -> bytes:
        if len(payload) > wire.MAX_META:
            raise ValueError(f"meta of {len(payload)} bytes (at most {wire.MAX_META})")
        return wire.frame(FrameType.SET_META, payload)

    async def query(self) -> ForegroundInfo:
        """Who has the terminal: its foreground process group and the shell's."""
        if self._gone or self._closing:
            raise HolderGone(f"the holder on {self._socket_path} is gone")
        reply: asyncio.Future[ForegroundInfo] = self._loop.create_future()
        self._queries.append(reply)
        if self._connected and self._connection is not None:
            self._connection.send(wire.frame(FrameType.QUERY))
        # (while reconnecting, every unanswered query is sent again once connected)
        try:
            return await asyncio.wait_for(asyncio.shield(reply), self._timeout)
        except TimeoutError:
            reply.cancel()  # stays queued: its REPLY, if it comes, is matched and dropped
            raise HolderError(f"the holder did not answer within {self._timeout} s") from None

    async def screen(self, request: dict[str, Any], deadline: float) -> dict[str, Any]:
        """Ask the holder's screen (`holder.screen`) and wait at most `deadline` seconds for
        its answer; past it the request is abandoned (a late answer is dropped) and
        ScreenTimeout raised. HolderGone if the holder is gone or the connection drops."""
        if self._gone or self._closing:
            raise HolderGone(f"the holder on {self._socket_path} is gone")
        self._screen_ids += 1
        request_id = self._screen_ids
        answer: asyncio.Future[dict[str, Any]] = self._loop.create_future()
        self._screen_requests[request_id] = answer
        try:
            self._send(wire.json_frame(FrameType.SCREEN, {**request, "id": request_id}))
            return await asyncio.wait_for(asyncio.shield(answer), deadline)
        except TimeoutError:
            raise ScreenTimeout(f"the holder did not answer within {deadline:g} s") from None
        finally:
            self._screen_requests.pop(request_id, None)
            if not answer.done():
                answer.cancel()

    def _fail_screen_requests(self) -> None:
        requests, self._screen_requests = self._screen_requests, {}
        for answer in requests.values():
            if not answer.done():
                answer.set_exception(HolderGone("the connection to the holder was lost"))

    async def terminate(self, grace: float = 2.0) -> int | None:
        """Hang up the shell (SIGHUP, SIGKILL after `grace`) and end the holder; the shell's
        exit code (None if the holder went away without telling it)."""
        if not (self._gone or self._closing):
            self._terminating = True
            self._send(wire.json_frame(FrameType.TERMINATE, {"grace": grace}))
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        asyncio.shield(self._finished), grace + self._timeout + 1.0
                    )
            except asyncio.CancelledError:
                # the holder got its TERMINATE and goes on with it; this side lets go now
                self._close_connection()
                self._finish()
                raise
            if not self._finished.done():
                self._close_connection()
                self._finish()
        return self._exit_code

    async def close(self, *, end_if_exited: bool = False) -> None:
        """Disconnect; the holder and its shell keep running. With `end_if_exited`, a holder
        whose shell has exited ends too (CLOSE; a running shell's holder ignores it)."""
        if self._closing:
            return
        if end_if_exited:
            self._send(wire.frame(FrameType.CLOSE))
        self._closing = True
        if self._reconnecting is not None:
            self._reconnecting.cancel()
        connection = self._connection
        self._close_connection()
        if connection is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(connection.lost), self._timeout)
        self._finish()

    # internals

    def _send(self, data: bytes) -> None:
        connection = self._connection
        if self._connected and connection is not None and connection.writable:
            connection.send(data)
        elif not (self._gone or self._closing):
            self._outbox.append(data)  # a connection is going away: keep it for the next

    def _close_connection(self) -> None:
        self._connected = False
        if self._connection is not None and self._connection.transport is not None:
            self._connection.transport.close()

    def _on_frame(self, connection: _Connection, kind: int, payload: bytes) -> None:
        if connection is not self._connection:
            return  # a late frame of a connection already replaced
        if kind == FrameType.OUTPUT:
            offset, output = wire.parse_output(payload)
            self._deliver_output(offset, output)
        elif kind == FrameType.MARKER:
            offset, seq, event = wire.parse_marker(payload)
            if seq > self._last_marker:
                self._last_marker = seq
                self._deliver(offset, event)
        elif kind == FrameType.EXITED:
            code = wire.parse_json(payload).get("exit_code")
            self._report_exit(None if code is None else int(code))
        elif kind == FrameType.REPLY:
            self._answer(wire.parse_json(payload))
        elif kind == FrameType.SCREEN_ANSWER:
            answer = wire.parse_json(payload)
            pending = self._screen_requests.get(answer.get("id"))
            if pending is not None and not pending.done():
                pending.set_result(answer)
        # other types: a newer holder's; ignored

    def _deliver_output(self, offset: int, output: Output) -> None:
        next_offset = self._next_offset
        end = offset + len(output.data)
        if next_offset is not None and offset < next_offset:
            # replayed after a reconnect: only what was not delivered before
            if end <= next_offset:
                return
            output = Output(output.data[next_offset - offset :])
            offset = next_offset
        self._next_offset = end
        self._deliver(offset, output)

    def _deliver(self, offset: int, event: MarkerEvent) -> None:
        if self._closing:
            return
        try:
            self._on_event(offset, event)
        except Exception as error:
            # the stream must go on: a failing consumer is a bug to log, not a reason to drop
            # the connection (which would replay the same event into the same failure)
            self._loop.call_exception_handler(
                {"message": "terminal holder event handler failed", "exception": error}
            )

    def _report_exit(self, code: int | None) -> None:
        if self._exit_known:
            return
        self._exit_known = True
        self._exit_code = code
        if self._closing:
            return
        try:
            self._on_exit(code)
        except Exception as error:
            self._loop.call_exception_handler(
                {"message": "terminal holder exit handler failed", "exception": error}
            )

    def _answer(self, fields: Any) -> None:
        while self._queries:
            reply = self._queries.pop(0)
            if reply.done():
                continue  # its caller stopped waiting; this REPLY was its
            reply.set_result(
                ForegroundInfo(
                    foreground_pgrp=fields.get("foreground_pgrp"),
                    shell_pid=int(fields["shell_pid"]),
                    shell_pgrp=fields.get("shell_pgrp"),
                    running=bool(fields["running"]),
                )
            )
            return

    def _on_protocol_error(self, connection: _Connection) -> None:
        if connection is self._connection:
            self._close_connection()
            self._finish()

    def _on_connection_lost(self, connection: _Connection) -> None:
        if connection is not self._connection:
            return
        self._connected = False
        # a request sent on this connection is never answered on the next one
        self._fail_screen_requests()
        if self._closing:
            return
        if self._terminating:
            self._finish()
            return
        if self._reconnecting is None:
            self._reconnecting = asyncio.create_task(self._reconnect())

    async def _reconnect(self) -> None:
        """The holder dropped the connection: reconnect and resume where delivery stopped,
        unless nothing listens any more (the holder is gone)."""
        try:
            for delay in RECONNECT_DELAYS:
                await asyncio.sleep(delay)
                try:
                    await self._open()
                except HolderGone:
                    break
                except HolderError:
                    continue
                self._resume()
                return
            self._finish()
        finally:
            self._reconnecting = None

    def _resume(self) -> None:
        assert self._connection is not None
        if self._following:
            resume = self._next_offset if self._next_offset is not None else self._follow_from
            self._connection.send(wire.frame(FrameType.FOLLOW, wire.FOLLOW_FROM.pack(resume)))
        elif self.hello.exited:
            self._report_exit(self.hello.exit_code)
        # unanswered queries are asked again; those whose callers gave up are forgotten
        self._queries = [reply for reply in self._queries if not reply.done()]
        for _ in self._queries:
            self._connection.send(wire.frame(FrameType.QUERY))
        outbox, self._outbox = self._outbox, []
        for data in outbox:
            self._connection.send(data)

    def _finish(self) -> None:
        """The link is done: the holder is gone, or terminated, or the link was closed."""
        self._connected = False
        if not self._closing:
            self._gone = True
        self._outbox.clear()
        for reply in self._queries:
            if not reply.done():
                reply.set_exception(HolderGone(f"the holder on {self._socket_path} is gone"))
        self._queries.clear()
        self._fail_screen_requests()
        self._report_exit(None)
        if not self._finished.done():
            self._finished.set_result(None)
