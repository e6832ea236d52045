"""Handlers of the Terminal API (`/api/v1/terminal`): decode, call TerminalService, encode.

Query strings follow the terminal kit's rules (CONTRACT.md §1.5: `true`, `1` or a bare key are
true); parameters the contract names for features hoodyd does not have (SSH, desktops) are
refused with a 400 rather than silently ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import msgspec
from aiohttp import WSMsgType, web

from hoodyd.api.common import decode_body, decode_json, json_response, query_flag, query_int
from hoodyd.api.health import add_health_route
from hoodyd.api.keys import CONFIG, TERMINALS
from hoodyd.api.openapi import add_openapi_routes
from hoodyd.errors import HoodydError, InvalidRequest
from hoodyd.schemas.terminal import (
    DEFER_FIELDS,
    AttachControl,
    AttachInput,
    AttachResize,
    CreateRequest,
    DeferFields,
    DeferSpec,
    ExecuteBody,
    ExecuteRequest,
    OutputEncoding,
    ResizeRequest,
    SessionOptions,
    defer_spec,
)
from hoodyd.terminals.service import (
    REMOTE_FIELDS,
    Attachment,
    TerminalService,
    check_user,
    parse_command_id,
    parse_terminal_id,
)

BASE = "/api/v1/terminal"
OUTPUT_CHUNK = 65536

_REMOTE_PARAMS = set(REMOTE_FIELDS)
_EXECUTE_PARAMS = {
    "terminal_id",
    "ephemeral",
    "defer_pid",
    "defer_start_time_ticks",
    "defer_timeout_ms",
    "defer_poll_ms",
    "reset",
    "cwd",
    "shell",
    "user",
    "cwd_auto_create",
    "cmd",
    "env",
    "skip_display_wait",
    "display_wait_timeout",
    "display",
    "wait",
    "origin",
} | _REMOTE_PARAMS

routes = web.RouteTableDef()


def _service(request: web.Request) -> TerminalService:
    return request.app[TERMINALS]


def _origin(request: web.Request) -> str | None:
    origin = request.query.get("origin") or request.headers.get("X-Hoody-Origin")
    return origin[:128] if origin else None


def _refuse_unknown(request: web.Request, known: set[str]) -> None:
    unknown = sorted(set(request.query) - known)
    if unknown:
        raise InvalidRequest(
            f"Unknown query parameter(s): {', '.join(unknown)}", reason="UNKNOWN_PARAMETER"
        )


def _path_terminal_id(request: web.Request) -> int:
    terminal_id = parse_terminal_id(request.match_info["terminal_id"])
    assert terminal_id is not None
    return terminal_id


def _history_limit(request: web.Request, default: int) -> int:
    for name in ("history_limit", "history_lines", "limit"):
        value = query_int(request, name, low=0, high=1000)
        if value is not None:
            return value
    return default


def _defer(request: web.Request) -> DeferSpec | None:
    given = {name: request.query[name] for name in DEFER_FIELDS if name in request.query}
    try:
        fields = msgspec.convert(given, DeferFields, strict=False)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"Invalid defer parameter: {exc}", reason="INVALID_DEFER") from None
    try:
        return defer_spec(fields)
    except ValueError as exc:
        raise InvalidRequest(str(exc), reason="DEFER_PID_REQUIRED") from None


def _display_wait_timeout(request: web.Request) -> float | None:
    """Seconds to wait for a new session's display; the contract caps it at 10 and reads
    anything malformed or not positive as 10."""
    if query_flag(request, "skip_display_wait"):
        return None
    try:
        value = float(request.query.get("display_wait_timeout", "10"))
    except ValueError:
        value = 10.0
    return 10.0 if not value > 0 else min(value, 10.0)


def _query_env(request: web.Request) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in request.query.getall("env", []):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidRequest(
                f"Invalid value for 'env': expected KEY=VALUE, got {item!r}", reason="INVALID_ENV"
            )
        env[key] = value
    return env


@routes.get(f"{BASE}/sessions")
async def list_sessions(request: web.Request) -> web.Response:
    _refuse_unknown(request, {"history_limit", "history_lines", "origin"})
    return json_response(_service(request).list_sessions(_history_limit(request, 50)))


@routes.post(f"{BASE}/create")
async def create(request: web.Request) -> web.Response:
    body = await decode_body(request, CreateRequest, optional=True)
    return json_response(await _service(request).create(body))


@routes.post(f"{BASE}/execute")
async def execute(request: web.Request) -> web.Response:
    _refuse_unknown(request, _EXECUTE_PARAMS)
    remote = sorted(_REMOTE_PARAMS & set(request.query))
    if remote:
        raise InvalidRequest(
            f"SSH/SOCKS5 sessions are not supported by hoodyd (got {', '.join(remote)})",
            reason="SSH_NOT_SUPPORTED",
        )
    if "cmd" in request.query:
        raise InvalidRequest(
            "The 'cmd' query parameter is not supported; send the command as the JSON "
            "body's 'command'",
            reason="UNSUPPORTED_PARAMETER",
        )
    ephemeral = bool(query_flag(request, "ephemeral"))
    terminal_id = parse_terminal_id(request.query.get("terminal_id"), required=not ephemeral)
    defer = _defer(request)
    check_user(request.query.get("user"))
    body = await decode_body(request, ExecuteBody, optional=True)
    if body.command is None:
        raise InvalidRequest("Missing 'command' field", reason="MISSING_COMMAND")
    wait = body.wait if body.wait is not None else query_flag(request, "wait")
    session = SessionOptions(
        shell=request.query.get("shell"),
        cwd=request.query.get("cwd"),
        env=_query_env(request),
        display=request.query.get("display") or None,
        ephemeral=ephemeral,
    )
    result = await _service(request).execute(
        ExecuteRequest(
            terminal_id=terminal_id,
            command=body.command,
            ephemeral=ephemeral,
            command_id=parse_command_id(body.id) if body.id not in (None, "") else None,
            # a deferred command returns at once: its PID may run for a long time
            wait=(wait is not False) and defer is None,
            timeout=body.timeout,
            cwd=body.cwd,
            env=body.env or {},
            defer=defer,
            reset=bool(query_flag(request, "reset")),
            cwd_auto_create=bool(query_flag(request, "cwd_auto_create")),
            display_wait_timeout=_display_wait_timeout(request),
            session=session,
            origin=_origin(request),
        )
    )
    return json_response(result)


@routes.get(f"{BASE}/result/{{command_id}}")
async def result(request: web.Request) -> web.Response:
    command_id = parse_command_id(request.match_info["command_id"])
    return json_response(_service(request).result(command_id))


@routes.get(f"{BASE}/history/{{terminal_id}}")
async def history(request: web.Request) -> web.Response:
    _refuse_unknown(request, {"history_limit", "history_lines", "limit", "origin"})
    terminal_id = _path_terminal_id(request)
    return json_response(_service(request).history(terminal_id, _history_limit(request, 100)))


@routes.get(f"{BASE}/history")
async def history_by_query(request: web.Request) -> web.Response:
    _refuse_unknown(request, {"terminal_id", "history_limit", "history_lines", "limit", "origin"})
    terminal_id = parse_terminal_id(request.query.get("terminal_id"))
    assert terminal_id is not None
    return json_response(_service(request).history(terminal_id, _history_limit(request, 100)))


@routes.get(f"{BASE}/output/{{terminal_id}}")
async def output(request: web.Request) -> web.Response:
    _refuse_unknown(request, {"offset", "limit", "timeout_ms", "encoding", "origin"})
    terminal_id = _path_terminal_id(request)
    offset = query_int(request, "offset", low=0)
    limit = query_int(
        request, "limit", low=1, high=request.app[CONFIG].terminals.output_buffer_bytes
    )
    timeout_ms = query_int(request, "timeout_ms", low=0, high=60_000)
    encoding = request.query.get("encoding", "utf-8")
    if encoding not in ("utf-8", "base64"):
        raise InvalidRequest(
            f"Invalid value for 'encoding': {encoding!r} (allowed: utf-8, base64)",
            reason="INVALID_ENUM",
        )
    chosen: OutputEncoding = "base64" if encoding == "base64" else "utf-8"
    response = await _service(request).output(
        terminal_id,
        offset,
        OUTPUT_CHUNK if limit is None else limit,
        (timeout_ms or 0) / 1000,
        chosen,
    )
    return json_response(response)


@routes.post(f"{BASE}/resize/{{terminal_id}}")
async def resize(request: web.Request) -> web.Response:
    terminal_id = _path_terminal_id(request)
    body = await decode_body(request, ResizeRequest)
    return json_response(_service(request).resize(terminal_id, body.cols, body.rows))


@routes.get(f"{BASE}/attach/{{terminal_id}}")
async def attach(request: web.Request) -> web.StreamResponse:
    """WebSocket: binary frames are raw terminal bytes both ways; text frames are JSON
    control messages (client: resize, input; server: attached, dropped, exit, error)."""
    _refuse_unknown(request, {"replay", "origin"})
    terminal_id = _path_terminal_id(request)
    replay = query_int(request, "replay", low=0)
    async with _service(request).attach(terminal_id) as attachment:
        ws = web.WebSocketResponse(heartbeat=30, max_msg_size=1024 * 1024)
        await ws.prepare(request)
        await ws.send_json(
            {
                "type": "attached",
                "terminal_id": str(terminal_id),
                "cols": attachment.session.cols,
                "rows": attachment.session.rows,
            }
        )
        start = attachment.ring.tail(65536 if replay is None else replay)
        async with _pumping(ws, attachment, start):
            async for message in ws:
                if message.type == WSMsgType.BINARY:
                    attachment.send_input(message.data)
                elif message.type == WSMsgType.TEXT:
                    await _control(ws, attachment, message.data)
        return ws


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
    task = asyncio.create_task(_pump_output(ws, attachment, offset))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await task


async def _pump_output(ws: web.WebSocketResponse, attachment: Attachment, offset: int) -> None:
    """Follow the session's output from `offset` to the client, then report the exit."""
    ring = attachment.ring
    while True:
        await ring.wait_beyond(offset, None)
        chunk = ring.read(offset, OUTPUT_CHUNK)
        if chunk.dropped:
            await ws.send_json({"type": "dropped", "bytes": chunk.dropped})
        if chunk.data:
            await ws.send_bytes(chunk.data)
        offset = chunk.next_offset
        if ring.closed and offset >= ring.end:
            await ws.send_json({"type": "exit", "exit_code": attachment.exit_code})
            await ws.close()
            return


@routes.delete(f"{BASE}/{{terminal_id}}")
async def delete(request: web.Request) -> web.Response:
    return json_response(await _service(request).delete(_path_terminal_id(request)))


async def _terminals(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    service = TerminalService(config.terminals, config.state_path)
    await service.start()
    app[TERMINALS] = service
    try:
        yield
    finally:
        await service.close()


def setup(app: web.Application) -> None:
    add_health_route(app, BASE, "hoodyd-terminal")
    add_openapi_routes(app, "terminal", BASE)
    app.router.add_routes(routes)
    app.cleanup_ctx.append(_terminals)


__all__ = ["setup"]
