"""The HTTP server under the app: how connections are accepted, how long they may take, and
how requests the HTTP parser refuses are answered.

- **A budget per listener.** The Unix socket and TCP each have their own bound on open
  connections; beyond it a new connection is accepted and closed at once, so a flood on TCP
  never takes the file descriptors the Unix socket needs to answer. Accepting is done here
  rather than by asyncio's server, whose accept loop keeps calling `accept()` (and logging)
  hundreds of times per wake-up once the process is out of descriptors: here one failure
  pauses that listener briefly and is logged at a bounded rate.
- **Deadlines.** A request's line and headers must arrive within `head_timeout` of its first
  byte (or of the connection's start), else it is answered 408 in JSON and closed (closed
  silently if nothing at all was sent); its body within `body_timeout` of the head, else the
  handler reading it gets a 408 and the connection closes. An idle keep-alive connection is
  closed after `keepalive_timeout` (aiohttp's own timer).
- **JSON errors.** aiohttp answers a request it cannot parse (a request line or header over
  its limits, bad bytes) with a text/plain 400 before any middleware runs; here that answer
  is the same JSON error every other failure gets; the request never reached a route, so its
  body carries both areas' fields (`success`, `error`, `code`, `reason`).
- **Logs without secrets.** A refused request is logged with its method, its path without
  the query, and the reason; never the raw request line, a header value or the parser's
  message (which quotes the bytes it choked on: a token, say).
"""

from __future__ import annotations

import asyncio
import errno
import re
import socket
from dataclasses import dataclass
from typing import Any, Literal, cast

import msgspec
import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler

from hoodyd.errors import Reason
from hoodyd.log import Throttle, safe_text

log = structlog.get_logger()

# aiohttp's default limit of a request line and of one header field
MAX_FIELD_SIZE = 8190
# connections taken from one listener per wake-up (asyncio's server takes up to its backlog)
ACCEPT_BATCH = 32
# how long a listener stops accepting after the process ran out of descriptors
ACCEPT_PAUSE_S = 0.1
# bytes of a request's start kept to name its method and path in a refusal's log line
_HEAD_KEPT = 512
_REQUEST_LINE = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]{1,32}) (/[^ ?#\r\n]{0,2048})")

Listener = Literal["unix", "tcp"]
# a connection whose peer credentials were not read yet
PEER_UNREAD = object()


@dataclass(frozen=True)
class ConnectionLimits:
    """How many connections each listener keeps open, and how long a request may take."""

    head_timeout: float = 10.0
    body_timeout: float = 30.0
    keepalive_timeout: float = 15.0
    max_tcp: int = 512
    max_unix: int = 256

    def fitted(self, open_files: int) -> ConnectionLimits:
        """These limits, scaled down so that connections take at most half of `open_files`
        descriptors (the rest is for supervisord, holders, logs and the store)."""
        room = max(open_files // 2, 2)
        wanted = self.max_tcp + self.max_unix
        if wanted <= room:
            return self
        max_tcp = max(self.max_tcp * room // wanted, 1)
        return _replace(self, max_tcp=max_tcp, max_unix=max(room - max_tcp, 1))


def _replace(limits: ConnectionLimits, **changes: Any) -> ConnectionLimits:
    fields = {**limits.__dict__, **changes}
    return ConnectionLimits(**fields)


def parse_error_body(status: int, message: str, reason: Reason) -> bytes:
    return msgspec.json.encode(
        {"success": False, "error": message, "code": status, "reason": reason}
    )


def _raw_response(status: int, phrase: str, message: str, reason: Reason) -> bytes:
    body = parse_error_body(status, message, reason)
    head = (
        f"HTTP/1.1 {status} {phrase}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


_HEAD_TIMEOUT_RESPONSE = _raw_response(
    408, "Request Timeout", "request head not received in time", Reason.REQUEST_TIMEOUT
)


def request_line_of(head: bytes) -> tuple[str, str]:
    """Method and path (without the query) named by the start of a raw request, made
    printable; `-` for what cannot be told."""
    match = _REQUEST_LINE.match(head)
    if match is None:
        return "-", "-"
    method, path = match.groups()
    return safe_text(method.decode("latin-1")), safe_text(path.decode("latin-1"))


class _Refusals:
    """`request_refused` log lines, at a bounded rate per reason."""

    def __init__(self) -> None:
        self._throttles: dict[str, Throttle] = {}

    def log(self, reason: Reason, status: int, head: bytes, **fields: Any) -> None:
        throttle = self._throttles.setdefault(reason, Throttle(burst=20, per_second=2.0))
        dropped = throttle.admit()
        if dropped is None:
            return
        method, path = request_line_of(head)
        extra = {"suppressed": dropped} if dropped else {}
        log.warning(
            "request_refused",
            status=status,
            reason=reason,
            method=method,
            path=path,
            **fields,
            **extra,
        )


class Slot:
    """One connection's place in its listener's budget, given back once."""

    __slots__ = ("_gate", "listener")

    def __init__(self, gate: ConnectionGate, listener: Listener) -> None:
        self._gate: ConnectionGate | None = gate
        self.listener = listener

    def release(self) -> None:
        if self._gate is not None:
            self._gate.open[self.listener] -= 1
            self._gate = None


class ConnectionGate:
    """Counts the open connections of each listener against its budget."""

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self.open: dict[Listener, int] = {"unix": 0, "tcp": 0}
        self.refusals = _Refusals()
        self._full: dict[Listener, Throttle] = {
            "unix": Throttle(burst=1, per_second=0.2),
            "tcp": Throttle(burst=1, per_second=0.2),
        }

    def take(self, listener: Listener) -> Slot | None:
        budget = self.limits.max_unix if listener == "unix" else self.limits.max_tcp
        if self.open[listener] >= budget:
            dropped = self._full[listener].admit()
            if dropped is not None:
                log.warning(
                    "connections_at_limit",
                    listener=listener,
                    limit=budget,
                    refused_since_last=dropped + 1,
                )
            return None
        self.open[listener] += 1
        return Slot(self, listener)


class _Handler(RequestHandler):
    """aiohttp's per-connection handler with head and body deadlines, JSON parse errors and
    logs that never quote the request."""

    def __init__(self, manager: _Server, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self.gate = manager.gate
        self.slot: Slot | None = None
        self._head = b""  # the start of the request head being read
        self._last_head = b""  # the start of the last complete (or refused) head
        self._body: StreamReader | None = None  # a body still being received
        # the head being read must be complete by `_head_deadline` (loop time; None when no
        # head is being read). One timer per connection checks it: a completed head only
        # clears the deadline, and a timer that fires early is set again for the deadline
        # in force, so a request costs no timer of its own
        self._head_deadline: float | None = None
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        # (pid, uid, gid) of a Unix socket's peer (None on TCP), fixed when it connected:
        # read by the request middleware at the connection's first request and kept here
        self.peer_creds: tuple[int, int, int] | object | None = PEER_UNREAD

    # connection lifetime

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm_head()

    def connection_lost(self, exc: BaseException | None) -> None:
        for timer in (self._head_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._body_timer = None
        self._body = None
        if self.slot is not None:
            self.slot.release()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        reading_head = (
            self._payload_parser is None
            and not self._upgraded
            and (self._body is None or self._body.is_eof())
        )
        if reading_head:
            if self._head_deadline is None:
                self._arm_head()
            if len(self._head) < _HEAD_KEPT:
                self._head += data[: _HEAD_KEPT - len(self._head)]
        count = self._request_count
        super().data_received(data)
        if self._request_count != count:  # a head was completed (or refused)
            self._last_head, self._head = self._head, b""
            self._head_deadline = None  # the timer, if it fires, finds nothing to do
            payload = self._messages[-1][1] if self._messages else None
            if isinstance(payload, StreamReader) and not payload.is_eof():
                self._arm_body(payload)

    # deadlines

    def _arm_head(self) -> None:
        timeout = self.gate.limits.head_timeout
        if timeout > 0:
            self._head_deadline = self._loop.time() + timeout
            if self._head_timer is None:
                self._head_timer = self._loop.call_at(self._head_deadline, self._head_expired)

    def _head_expired(self) -> None:
        self._head_timer = None
        deadline = self._head_deadline
        if deadline is None:
            return  # no head is being read (the one it was set for arrived)
        if self._loop.time() < deadline:  # set for an earlier head: wait for this one's
            self._head_timer = self._loop.call_at(deadline, self._head_expired)
            return
        self._head_deadline = None
        if self.transport is None or self._force_close:
            return
        if self._request_in_progress or self._messages:
            self._arm_head()  # a request is being served: the next head may wait its turn
            return
        if self._body is not None and not self._body.is_eof():
            return  # the body deadline governs
        if self._head:
            self.gate.refusals.log(Reason.REQUEST_TIMEOUT, 408, self._head, part="head")
            self.transport.write(_HEAD_TIMEOUT_RESPONSE)
        self.force_close()

    def _arm_body(self, body: StreamReader) -> None:
        self._body = body
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        timeout = self.gate.limits.body_timeout
        if timeout > 0:
            self._body_timer = self._loop.call_later(timeout, self._body_expired)

    def _body_expired(self) -> None:
        self._body_timer = None
        body, self._body = self._body, None
        if body is None or body.is_eof() or self.transport is None:
            return
        self.gate.refusals.log(Reason.REQUEST_TIMEOUT, 408, self._last_head, part="body")
        # whoever reads the body gets a 408 (JSON, from the middleware); nothing lingers to
        # read the rest, and the connection closes after the answer
        self._lingering_time = 0.0
        body.set_exception(web.HTTPRequestTimeout(text="request body not received in time"))
        self.close()

    # errors and logs

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if isinstance(exc, LineTooLong):
            status, reason = 431, Reason.HEADERS_TOO_LARGE
            text = f"request line or a header field exceeds {MAX_FIELD_SIZE} bytes"
        elif isinstance(exc, HttpProcessingError) and 400 <= status < 500:
            reason, text = Reason.MALFORMED_REQUEST, "malformed HTTP request"
        else:
            status, reason, text = 500, Reason.INTERNAL_ERROR, "internal error"
        # the parser's message quotes the bytes it refused: only the kind of error is logged
        self.gate.refusals.log(
            reason, status, self._last_head, error=type(exc).__name__ if exc else None
        )
        response = web.Response(
            body=parse_error_body(status, text, reason),
            status=status,
            content_type="application/json",
        )
        response.force_close()
        return response

    def log_exception(self, *args: Any, **kw: Any) -> None:
        exc = kw.get("exc_info")
        what = args[0] if args and isinstance(args[0], str) else "connection error"
        log.error(
            "http_connection_error",
            detail=what,
            error=type(exc).__name__ if isinstance(exc, BaseException) else None,
        )


class _Server(web.Server):
    def __init__(self, *args: Any, gate: ConnectionGate, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = gate

    def __call__(self) -> RequestHandler:
        return _Handler(self, loop=self._loop, **self._kwargs)


class Runner(web.AppRunner):
    """`web.AppRunner` whose connections have deadlines, a budget per listener and JSON
    errors for unparseable requests; serve it with `ListenerSite`."""

    def __init__(
        self, app: web.Application, *, limits: ConnectionLimits | None = None, **kwargs: Any
    ) -> None:
        self.gate = ConnectionGate(limits or ConnectionLimits())
        kwargs.setdefault("keepalive_timeout", self.gate.limits.keepalive_timeout)
        super().__init__(app, **kwargs)

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # the same handler, factory and settings; only the per-connection handler differs
        settings: dict[str, Any] = dict(server._kwargs)
        return _Server(
            server.request_handler,
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            loop=asyncio.get_running_loop(),
            gate=self.gate,
            **settings,
        )


class _Acceptor(asyncio.AbstractServer):
    """Accepts on one listening socket for a `Runner`, within its listener's budget."""

    def __init__(self, runner: Runner, sock: socket.socket) -> None:
        self._loop = asyncio.get_running_loop()
        self._runner = runner
        self._sock = sock
        self.listener: Listener = "unix" if sock.family == socket.AF_UNIX else "tcp"
        self._serving = False
        self._resume: asyncio.TimerHandle | None = None
        self._failures = Throttle(burst=1, per_second=0.2)
        self._tasks: set[asyncio.Task[None]] = set()
        sock.setblocking(False)

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return (self._sock,)

    def start(self) -> None:
        self._serving = True
        self._loop.add_reader(self._sock.fileno(), self._accept)

    def close(self) -> None:
        if self._resume is not None:
            self._resume.cancel()
            self._resume = None
        if self._serving:
            self._serving = False
            self._loop.remove_reader(self._sock.fileno())
        if self._sock.fileno() != -1:
            self._sock.close()

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def is_serving(self) -> bool:
        return self._serving

    async def start_serving(self) -> None:
        if not self._serving:
            self.start()

    async def serve_forever(self) -> None:
        raise NotImplementedError

    async def wait_closed(self) -> None:
        return None

    def _accept(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                conn, _address = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                self._pause(exc)
                return
            slot = self._runner.gate.take(self.listener)
            if slot is None:
                conn.close()  # over budget: its descriptor is given back at once
                continue
            conn.setblocking(False)
            task = self._loop.create_task(self._connect(conn, slot))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _connect(self, conn: socket.socket, slot: Slot) -> None:
        server = self._runner.server
        assert server is not None

        def handler() -> RequestHandler:
            protocol = server()
            cast(_Handler, protocol).slot = slot
            return protocol

        try:
            await self._loop.connect_accepted_socket(handler, sock=conn)
        except Exception as exc:
            slot.release()
            conn.close()
            log.debug("connection_setup_failed", listener=self.listener, error=type(exc).__name__)

    def _pause(self, exc: OSError) -> None:
        """Stop accepting for a moment (out of descriptors or memory, most likely: what
        would free them is the connections being served); the kernel keeps the pending
        connections queued."""
        dropped = self._failures.admit()
        if dropped is not None:
            log.error(
                "accept_failed",
                listener=self.listener,
                error=errno.errorcode.get(exc.errno or 0, str(exc.errno)),
                detail=exc.strerror,
                open_connections=self._runner.gate.open[self.listener],
                suppressed=dropped,
            )
        if self._serving:
            self._loop.remove_reader(self._sock.fileno())
            self._serving = False
            self._resume = self._loop.call_later(ACCEPT_PAUSE_S, self._resume_accepting)

    def _resume_accepting(self) -> None:
        self._resume = None
        if self._sock.fileno() != -1:
            self.start()


class ListenerSite(web.BaseSite):
    """A site on a listening socket, served through its runner's connection budget (the Unix
    or the TCP one, by the socket's family)."""

    def __init__(self, runner: Runner, sock: socket.socket) -> None:
        super().__init__(runner)
        self._sock = sock
        self._acceptor: _Acceptor | None = None
        if sock.family == socket.AF_UNIX:
            self._name = f"http://unix:{sock.getsockname()}:"
        else:
            host, port = sock.getsockname()[:2]
            self._name = f"http://{host}:{port}"

    @property
    def name(self) -> str:
        return self._name

    async def start(self) -> None:
        await super().start()
        runner = cast(Runner, self._runner)
        self._acceptor = _Acceptor(runner, self._sock)
        self._acceptor.start()
        self._server = self._acceptor
