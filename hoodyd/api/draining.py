"""Shutdown within a bound: once hoodyd is stopping, every request still being served (a long
poll, a start waiting for RUNNING) is answered at once with a JSON 503 `SHUTTING_DOWN`
instead of being dropped, and every WebSocket is closed with 1001 (going away).

aiohttp's own drain waits for handlers up to the shutdown timeout and then cancels them,
which leaves the client with a dropped connection. Here `begin` (an `on_shutdown` signal, so
it runs after the listening sockets are closed and before aiohttp waits for handlers) cancels
the task of every request being served, and the request middleware
(`hoodyd.api.middleware`), which put it in `Drain.serving`, turns that cancellation into the
answer. Nothing is added per request but a set entry: each request already runs in a task
of its own. WebSockets get their close frame at once; the stop waits at most
`Drain.close_wait_s` for the closes to go out and be answered, then drops the connection of
each one still waiting (a client that stopped reading: its frames, the close among them,
cannot even be sent), so that the services still close within the bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Iterator

from aiohttp import WSCloseCode, web

from hoodyd.errors import ShuttingDown

# how long the stop waits, by default, for the WebSockets to answer their close frame
CLOSE_WAIT_S = 1.0


class Drain:
    """Whether hoodyd is stopping, and the WebSockets to close when it does."""

    def __init__(self, close_wait_s: float = CLOSE_WAIT_S) -> None:
        self.stopping = asyncio.Event()
        self.close_wait_s = close_wait_s
        # each WebSocket being served, with its connection
        self.sockets: weakref.WeakKeyDictionary[
            web.WebSocketResponse, asyncio.Transport | None
        ] = weakref.WeakKeyDictionary()
        # the tasks of the requests being served (not WebSockets)
        self.serving: set[asyncio.Task[object]] = set()

    @contextlib.contextmanager
    def track(
        self, ws: web.WebSocketResponse, transport: asyncio.Transport | None
    ) -> Iterator[None]:
        self.sockets[ws] = transport
        try:
            yield
        finally:
            self.sockets.pop(ws, None)


DRAIN = web.AppKey("drain", Drain)
GOING_AWAY_MESSAGE = b"hoodyd is shutting down"


# the response a handler has already begun to send (a stream), if any
STARTED = web.RequestKey("started", web.StreamResponse)


def install(app: web.Application) -> None:
    app[DRAIN] = Drain()
    app.on_shutdown.append(begin)
    app.on_response_prepare.append(_remember_started)


async def _remember_started(request: web.Request, response: web.StreamResponse) -> None:
    request[STARTED] = response


async def begin(app: web.Application) -> None:
    drain = app[DRAIN]
    drain.stopping.set()
    for task in list(drain.serving):
        task.cancel()
    closing = {
        asyncio.ensure_future(
            ws.close(code=WSCloseCode.GOING_AWAY, message=GOING_AWAY_MESSAGE)
        ): transport
        for ws, transport in list(drain.sockets.items())
    }
    for close in closing:
        close.add_done_callback(_quiet)
    if not closing:
        return
    _closed, waiting = await asyncio.wait(closing, timeout=drain.close_wait_s)
    for close in waiting:  # its connection goes: the close, stuck behind it, ends with it
        transport = closing[close]
        if transport is not None:
            transport.abort()


def _quiet(done: asyncio.Future[bool]) -> None:
    # a close that failed (the peer gone) is nobody's concern: not an unretrieved exception
    if not done.cancelled():
        done.exception()


def track_websocket(
    request: web.Request, ws: web.WebSocketResponse
) -> contextlib.AbstractContextManager[None]:
    """Close `ws` with 1001 when hoodyd stops (a no-op in an app without a drain)."""
    drain = request.config_dict.get(DRAIN)
    if drain is None:
        return contextlib.nullcontext()
    return drain.track(ws, request.transport)


def shutting_down() -> ShuttingDown:
    """The 503 a request gets when hoodyd stops before (or while) serving it."""
    return ShuttingDown("hoodyd is shutting down; retry once it is back", extra={"retry": True})
