"""Handlers of the Terminal API (`/api/v1/terminal`): decode, call TerminalService, encode.

Query strings follow the terminal kit's rules (CONTRACT.md §1.5: `true`, `1` or a bare key are
true); parameters the contract names for features hoodyd does not have (SSH, desktops) are
refused with a 400 rather than silently ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TypeVar

from aiohttp import WSMsgType, web

from hoodyd.api.decoding import decode_body, decode_query
from hoodyd.api.draining import track_websocket
from hoodyd.api.encoding import json_response
from hoodyd.api.keys import CONFIG, TERMINALS
from hoodyd.errors import HoodydError, InvalidRequest, Reason
from hoodyd.schemas.queries import (
    AttachQuery,
    ExecuteQuery,
    HistoryQuery,
    NewSessionQuery,
    OutputQuery,
    SessionsQuery,
)
from hoodyd.schemas.terminal import (
    AttachControl,
    AttachInput,
    AttachResize,
    CreateRequest,
    ExecuteBody,
    ExecuteRequest,
    ResizeRequest,
    SessionOptions,
    defer_spec,
)
from hoodyd.schemas.validation import decode_json
from hoodyd.terminals.service import Attachment, TerminalService
from hoodyd.terminals.validation import (
    REMOTE_FIELDS,
    check_user,
    parse_command_id,
    parse_terminal_id,
)

Q = TypeVar("Q")
OUTPUT_CHUNK = 65536
REMOTE_PARAMS = frozenset(REMOTE_FIELDS)


def _service(request: web.Request) -> TerminalService:
    return request.config_dict[TERMINALS]


def _query(request: web.Request, kind: type[Q]) -> Q:
    return decode_query(request, kind, lenient_flags=True)


def _origin(request: web.Request, query: str | None) -> str | None:
    origin = query or request.headers.get("X-Hoody-Origin")
    return origin[:128] if origin else None


def _path_terminal_id(request: web.Request) -> int:
    terminal_id = parse_terminal_id(request.match_info["terminal_id"])
    assert terminal_id is not None
    return terminal_id


def _display_wait_timeout(query: ExecuteQuery) -> float | None:
    """Seconds to wait for a new session's display; the contract caps it at 10 and reads
    anything malformed or not positive as 10."""
    if query.skip_display_wait:
        return None
    try:
        value = float(query.display_wait_timeout or "10")
    except ValueError:
        value = 10.0
    return 10.0 if not value > 0 else min(value, 10.0)


def session_options(query: NewSessionQuery) -> SessionOptions:
    """The options a terminal created on first use starts with."""
    user = check_user(query.user)
    return SessionOptions(
        shell=query.shell, cwd=query.cwd, env=env_items(query.env), display=query.display, user=user
    )


def env_items(items: list[str]) -> dict[str, str]:
    """Repeated `env=KEY=VALUE` query parameters as a mapping."""
    env: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidRequest(
                f"Invalid value for 'env': expected KEY=VALUE, got {item!r}",
                reason=Reason.INVALID_ENV,
            )
        env[key] = value
    return env


def _refuse_unsupported(request: web.Request) -> None:
    """Parameters the contract names for features hoodyd does not have get their own 400."""
    remote = sorted(REMOTE_PARAMS & set(request.query))
    if remote:
        raise InvalidRequest(
            f"SSH/SOCKS5 sessions are not supported by hoodyd (got {', '.join(remote)})",
            reason=Reason.SSH_NOT_SUPPORTED,
        )
    if "cmd" in request.query:
        raise InvalidRequest(
            "The 'cmd' query parameter is not supported; send the command as the JSON "
            "body's 'command'",
            reason=Reason.UNSUPPORTED_PARAMETER,
        )


async def list_sessions(request: web.Request) -> web.Response:
    query = _query(request, SessionsQuery)
    limit = query.history_limit if query.history_limit is not None else query.history_lines
    service = _service(request)
    await service.settle_exits()
    return json_response(service.list_sessions(50 if limit is None else limit))


async def create(request: web.Request) -> web.Response:
    body = await decode_body(request, CreateRequest, optional=True)
    return json_response(await _service(request).create(body))


async def execute(request: web.Request) -> web.Response:
    _refuse_unsupported(request)
    query = _query(request, ExecuteQuery)
    terminal_id = parse_terminal_id(query.terminal_id, required=not query.ephemeral)
    defer = defer_spec(query)
    user = check_user(query.user)
    body = await decode_body(request, ExecuteBody, optional=True)
    if body.command is None:
        raise InvalidRequest("Missing 'command' field", reason=Reason.MISSING_COMMAND)
    wait = body.wait if body.wait is not None else query.wait
    session = SessionOptions(
        shell=query.shell,
        cwd=query.cwd,
        env=env_items(query.env),
        display=query.display or None,
        ephemeral=query.ephemeral,
        user=user,
    )
    result = await _service(request).execute(
        ExecuteRequest(
            terminal_id=terminal_id,
            command=body.command,
            ephemeral=query.ephemeral,
            command_id=parse_command_id(body.id) if body.id not in (None, "") else None,
            # a deferred command returns at once: its PID may run for a long time
            wait=(wait is not False) and defer is None,
            timeout=body.timeout,
            cwd=body.cwd,
            env=body.env or {},
            defer=defer,
            reset=query.reset,
            cwd_auto_create=query.cwd_auto_create,
            display_wait_timeout=_display_wait_timeout(query),
            session=session,
            origin=_origin(request, query.origin),
        )
    )
    return json_response(result)


async def result(request: web.Request) -> web.Response:
    command_id = parse_command_id(request.match_info["command_id"])
    return json_response(_service(request).result(command_id))


async def history(request: web.Request) -> web.Response:
    query = _query(request, HistoryQuery)
    if query.terminal_id is not None:
        raise InvalidRequest(
            "Unknown query parameter(s): terminal_id", reason=Reason.UNKNOWN_PARAMETER
        )
    terminal_id = _path_terminal_id(request)
    return json_response(_service(request).history(terminal_id, query.limit_or(100)))


async def history_by_query(request: web.Request) -> web.Response:
    query = _query(request, HistoryQuery)
    terminal_id = parse_terminal_id(query.terminal_id)
    assert terminal_id is not None
    return json_response(_service(request).history(terminal_id, query.limit_or(100)))


async def output(request: web.Request) -> web.Response:
    query = _query(request, OutputQuery)
    terminal_id = _path_terminal_id(request)
    buffer = request.config_dict[CONFIG].terminals.output_buffer_bytes
    if query.limit is not None and query.limit > buffer:
        raise InvalidRequest(
            f"Invalid value for 'limit': {query.limit} is outside 1-{buffer}",
            reason=Reason.OUT_OF_RANGE,
        )
    response = await _service(request).output(
        terminal_id,
        query.offset,
        OUTPUT_CHUNK if query.limit is None else query.limit,
        query.timeout_ms / 1000,
        query.encoding,
    )
    return json_response(response)


async def resize(request: web.Request) -> web.Response:
    terminal_id = _path_terminal_id(request)
    body = await decode_body(request, ResizeRequest)
    return json_response(_service(request).resize(terminal_id, body.cols, body.rows))


async def attach(request: web.Request) -> web.StreamResponse:
    """WebSocket: binary frames are raw terminal bytes both ways; text frames are JSON
    control messages (client: resize, input; server: attached, dropped, exit, error)."""
    query = _query(request, AttachQuery)
    terminal_id = _path_terminal_id(request)
    options = session_options(query)
    _service(request).check_attachable(terminal_id, options)
    ws = web.WebSocketResponse(heartbeat=30, max_msg_size=1024 * 1024)
    require_upgrade(ws, request)
    async with _service(request).attach(terminal_id, options) as attachment:
        await ws.prepare(request)
        await ws.send_json(
            {
                "type": "attached",
                "terminal_id": str(terminal_id),
                "cols": attachment.session.cols,
                "rows": attachment.session.rows,
            }
        )
        start = attachment.ring.tail(query.replay)
        with track_websocket(request, ws):  # closed with 1001 when hoodyd stops
            async with _pumping(ws, attachment, start):
                async for message in ws:
                    if message.type == WSMsgType.BINARY:
                        attachment.send_input(message.data)
                    elif message.type == WSMsgType.TEXT:
                        await _control(ws, attachment, message.data)
        return ws


def require_upgrade(ws: web.WebSocketResponse, request: web.Request) -> None:
    """Refuse a plain request before anything is created for it."""
    if not ws.can_prepare(request).ok:
        raise InvalidRequest(
            "this route is a WebSocket: send an Upgrade: websocket request",
            reason=Reason.INVALID_REQUEST,
        )


async def _control(ws: web.WebSocketResponse, attachment: Attachment, text: str) -> None:
    try:
        control: AttachResize | AttachInput = decode_json(text, AttachControl)  # type: ignore[arg-type]
    except HoodydError as exc:
        await ws.send_json({"type": "error", "error": exc.message, "reason": exc.reason})
        return
    if isinstance(control, AttachResize):
        attachment.resize(control.cols, control.rows)
    elif isinstance(control, AttachInput):
        attachment.send_input(control.data.encode())


@contextlib.asynccontextmanager
async def _pumping(
    ws: web.WebSocketResponse, attachment: Attachment, offset: int
) -> AsyncIterator[None]:
    task = asyncio.create_task(follow_output(ws, attachment, offset))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await task


async def follow_output(
    ws: web.WebSocketResponse, attachment: Attachment, offset: int, *, report_dropped: bool = True
) -> None:
    """Follow the session's output from `offset` to the client, then report the exit (and,
    with `report_dropped`, how many bytes the ring dropped before the client read them)."""
    ring = attachment.ring
    while True:
        await ring.wait_beyond(offset, None)
        chunk = ring.read(offset, OUTPUT_CHUNK)
        if chunk.dropped and report_dropped:
            await ws.send_json({"type": "dropped", "bytes": chunk.dropped})
        if chunk.data:
            await ws.send_bytes(chunk.data)
        offset = chunk.next_offset
        if ring.closed and offset >= ring.end:
            await ws.send_json({"type": "exit", "exit_code": attachment.exit_code})
            await ws.close()
            return


async def delete(request: web.Request) -> web.Response:
    return json_response(await _service(request).delete(_path_terminal_id(request)))
