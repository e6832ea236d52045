"""Request middleware: request ids and logs, caller authentication, and the one error mapping.

Every failure leaves here as JSON in the contract shape (CONTRACT.md §1.4) of the area the
router matched: the run area answers `{error, code, reason}`, the daemon and terminal areas
`{success: false, error, reason}`.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import logging
import os
import re
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal, cast

import msgspec
import structlog
from aiohttp import web
from aiohttp.typedefs import Middleware

from hoodyd.api.draining import DRAIN, STARTED, Drain, shutting_down
from hoodyd.api.keys import AREA, CONFIG, METRICS, TOKEN
from hoodyd.api.routes import is_open, takes_query_token
from hoodyd.api.server import PEER_UNREAD
from hoodyd.api.sessions import admits_session, login_redirect
from hoodyd.errors import (
    Forbidden,
    HoodydError,
    InvalidRequest,
    LoginThrottled,
    Reason,
    Unauthorized,
)
from hoodyd.log import enabled as log_enabled
from hoodyd.log import safe_path

log = structlog.get_logger()

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ErrorShape = Literal["kit", "run"]

_PEERCRED = struct.Struct("3i")
_HTTP_REASONS = {
    400: Reason.INVALID_REQUEST,
    401: Reason.UNAUTHORIZED,
    403: Reason.FORBIDDEN,
    404: Reason.NOT_FOUND,
    405: Reason.METHOD_NOT_ALLOWED,
    408: Reason.REQUEST_TIMEOUT,
    413: Reason.PAYLOAD_TOO_LARGE,
    415: Reason.UNSUPPORTED_MEDIA_TYPE,
    431: Reason.HEADERS_TOO_LARGE,
}
# a caller's request id is echoed in a response header and logged: a short token, nothing else
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@+=/-]{1,128}$")
_ORIGIN_MAX = 128
_NOT_KEPT = object()


def error_body(
    shape: ErrorShape, status: int, message: str, reason: Reason, extra: dict[str, Any]
) -> bytes:
    body: dict[str, Any]
    if shape == "run":
        body = {"error": message, "code": status, "reason": reason}
    else:
        body = {"success": False, "error": message, "reason": reason}
    for key, value in extra.items():
        body.setdefault(key, value)
    return msgspec.json.encode(body)


def error_shape(request: web.Request) -> ErrorShape:
    """The error shape of the area whose sub-application the router matched (`kit` outside
    every area)."""
    for app in request.match_info.apps:
        area = app.get(AREA)
        if area is not None:
            return area.error_shape
    return "kit"


def error_response(request: web.Request, exc: HoodydError) -> web.Response:
    response = web.Response(
        body=error_body(error_shape(request), exc.status, exc.message, exc.reason, exc.extra),
        status=exc.status,
        content_type="application/json",
    )
    if isinstance(exc, LoginThrottled):
        response.headers["Retry-After"] = str(exc.retry_after_s)
    return response


def peer_credentials(request: web.Request) -> tuple[int, int, int] | None:
    """(pid, uid, gid) of the process at the other end of a Unix socket, else None."""
    sock = request.transport.get_extra_info("socket") if request.transport else None
    if sock is None or sock.family != socket.AF_UNIX:
        return None
    pid, uid, gid = _PEERCRED.unpack(
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    )
    return pid, uid, gid


def request_middleware(app: web.Application) -> Middleware:
    """The one middleware of the root `app`: request id and log line, header checks, the
    shutdown drain, caller authentication and the error mapping, in that order, as one
    coroutine per request (each middleware aiohttp chains costs a wrapped call and reads of
    `request.config_dict`, rebuilt at every read).

    Headers are checked first, before anything runs: a request whose headers cannot be
    decoded, echoed or logged is refused whole, so nothing it asked for has happened. Then a
    request that arrives while hoodyd stops gets a 503 (`hoodyd.api.draining`), then the
    caller must be let in (`authenticate`). The request's own log line names its method,
    its path without the query and, when refused, the reason; never a header value or the
    query (either may hold a token).
    """
    # whether the route of this name was declared OPEN (routes are fixed once the app runs)
    open_routes: dict[str, bool] = {}

    @web.middleware
    async def serve(request: web.Request, handler: Handler) -> web.StreamResponse:
        given_id = request.headers.get("X-Request-Id")
        # 16 random hex digits, as `uuid4().hex[:16]` gave, at a sixth of its cost
        request_id = given_id if given_id and _REQUEST_ID.match(given_id) else os.urandom(8).hex()
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500
        refused: Reason | None = None
        try:
            _check_headers(request, given_id)
            origin = request.query.get("origin") or request.headers.get("X-Hoody-Origin")
            if origin:
                structlog.contextvars.bind_contextvars(origin=origin[:_ORIGIN_MAX])
            drain = app.get(DRAIN)
            if drain is not None and drain.stopping.is_set():
                raise shutting_down()
            authenticate(request, app, open_routes)
            if drain is None or request.headers.get("Upgrade", "").lower() == "websocket":
                response = await handler(request)  # a WebSocket is closed with 1001 instead
            else:
                response = await _drained(request, handler, drain)
            status = response.status
            response.headers["X-Request-Id"] = request_id
            return response
        except HoodydError as exc:
            status, refused = exc.status, exc.reason
            response = error_response(request, exc)
            response.headers["X-Request-Id"] = request_id
            return response
        except web.HTTPException as exc:
            status = exc.status
            if exc.status < 400:
                raise
            message = exc.reason if exc.status != 413 else "request body exceeds the size limit"
            refused = _HTTP_REASONS.get(exc.status, Reason.HTTP_ERROR)
            response = web.Response(
                body=error_body(error_shape(request), exc.status, message, refused, {}),
                status=exc.status,
                content_type="application/json",
                headers={"X-Request-Id": request_id},
            )
            if exc.status == 405 and "Allow" in exc.headers:
                response.headers["Allow"] = exc.headers["Allow"]
            return response
        except Exception:
            log.exception("request_failed", method=request.method, path=safe_path(request.path))
            return web.Response(
                body=error_body(
                    error_shape(request), 500, "internal error", Reason.INTERNAL_ERROR, {}
                ),
                status=500,
                content_type="application/json",
                headers={"X-Request-Id": request_id},
            )
        finally:
            seconds = time.perf_counter() - started
            metrics = app.get(METRICS)
            if metrics is not None:
                match_info = request.match_info
                route = match_info.route.name if match_info is not None else None
                metrics.observe_request(route, request.method, status, seconds)
            # above `info` (HOODYD_LOG_LEVEL=warning) the line would be dropped: skip building it
            if log_enabled(logging.INFO):
                extra = {"reason": refused} if refused is not None else {}
                log.info(
                    "request",
                    method=request.method,
                    path=safe_path(request.path),
                    status=status,
                    duration_ms=round(seconds * 1000, 3),
                    **extra,
                )

    return serve


async def _drained(request: web.Request, handler: Handler, drain: Drain) -> web.StreamResponse:
    """Serve the request, unless hoodyd stops first: then it is answered with a 503 (a
    stream already under way ends instead). `hoodyd.api.draining.begin` cancels the task of
    every request in `drain.serving`.

    Whatever a request that meets the stop ends with is that 503: the cancellation itself,
    or the error it became on the way out (a supervisord or holder call cut short, a service
    closing under it, a wait's timeout firing with it). Only an answer the handler completed
    stands."""
    task = asyncio.current_task()
    assert task is not None
    drain.serving.add(task)
    try:
        return await handler(request)
    except asyncio.CancelledError:
        if not drain.stopping.is_set():
            raise  # not ours: the client went away, or aiohttp itself is cancelling
        task.uncancel()
        return _stopped(request)
    except Exception as exc:
        if not drain.stopping.is_set():
            raise
        if task.cancelling():
            task.uncancel()  # the drain's cancellation, which the handler turned into `exc`
        log.info("request_cut_by_shutdown", error=type(exc).__name__)
        return _stopped(request)
    finally:
        drain.serving.discard(task)


def _stopped(request: web.Request) -> web.StreamResponse:
    """What a request cut short by the stop ends with: the 503, or the end of a stream under
    way (which cannot become a 503)."""
    started: web.StreamResponse | None = request.get(STARTED)
    if started is not None:
        return started
    raise shutting_down()


def _check_headers(request: web.Request, given_id: str | None) -> None:
    """Every header name and value must be UTF-8; the ones hoodyd echoes or stores must be
    short text."""
    # the raw bytes, decoded once (joined by a newline, which ends any partial sequence); the
    # parser keeps what does not decode as lone surrogates in the str headers, so this is the
    # same test as encoding each of those back
    try:
        b"\n".join(itertools.chain.from_iterable(request.raw_headers)).decode("utf-8")
    except UnicodeDecodeError:
        for name, value in request.headers.items():
            if not _is_utf8(name) or not _is_utf8(value):
                raise InvalidRequest(
                    f"header {_printable(name)!r} is not valid UTF-8",
                    reason=Reason.INVALID_HEADER,
                ) from None
        raise InvalidRequest("a header is not valid UTF-8", reason=Reason.INVALID_HEADER) from None
    if given_id is not None and not _REQUEST_ID.match(given_id):
        raise InvalidRequest(
            "X-Request-Id must be 1-128 characters of letters, digits and ._:@+=/-",
            reason=Reason.INVALID_HEADER,
        )
    origin = request.headers.get("X-Hoody-Origin")
    if origin is not None and (len(origin) > _ORIGIN_MAX or not origin.isprintable()):
        raise InvalidRequest(
            f"X-Hoody-Origin must be at most {_ORIGIN_MAX} printable characters",
            reason=Reason.INVALID_HEADER,
        )


def _is_utf8(text: str) -> bool:
    # the HTTP parser keeps undecodable bytes as lone surrogates
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _printable(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def authenticate(request: web.Request, app: web.Application, open_routes: dict[str, bool]) -> None:
    """Let the caller in or raise. Unix socket: the peer's uid/gid must be allowed. TCP: a
    bearer token, except on the routes the route table declares open, and a browser session
    on the ones it declares for sessions (`hoodyd.api.routes`, `hoodyd.api.sessions`).
    `open_routes` keeps, by route name, whether the route table declared it open."""
    creds = _connection_peer(request)
    if creds is not None:
        _pid, uid, gid = creds
        server = app[CONFIG].server
        if uid not in server.allowed_uids and gid not in server.allowed_gids:
            raise Forbidden(
                f"uid {uid} is not allowed on this socket", reason=Reason.PEER_NOT_ALLOWED
            )
        return
    token = app.get(TOKEN)
    if token is None or _is_open(request, open_routes):
        return
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if not header and takes_query_token(request) and "token" in request.query:
        scheme, given = "bearer", request.query["token"]
    valid = hmac.compare_digest(given.strip().encode(), token.encode())
    if scheme.lower() != "bearer" or not valid:
        # the routes the table declares for sessions also take a login session cookie
        if admits_session(request):
            return
        redirect = login_redirect(request)  # a browser's bookmark: to the login, and back
        if redirect is not None:
            raise redirect
        raise Unauthorized("missing or invalid bearer token", reason=Reason.BAD_TOKEN)


def _is_open(request: web.Request, open_routes: dict[str, bool]) -> bool:
    name = request.match_info.route.name
    if name is None:
        return False
    known = open_routes.get(name)
    if known is None:
        known = open_routes[name] = is_open(request)
    return known


def _connection_peer(request: web.Request) -> tuple[int, int, int] | None:
    """The peer credentials of the request's connection (None on TCP): SO_PEERCRED names
    who connected, so it is read at a connection's first request and kept on the server's
    connection handler (`hoodyd.api.server`) for the next ones."""
    protocol = request.protocol
    kept = getattr(protocol, "peer_creds", _NOT_KEPT)
    if kept is _NOT_KEPT:  # a connection handler that does not keep them
        return peer_credentials(request)
    if kept is PEER_UNREAD:
        kept = protocol.peer_creds = peer_credentials(request)  # type: ignore[attr-defined]
    return cast(tuple[int, int, int] | None, kept)
