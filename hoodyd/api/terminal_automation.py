"""Handlers of the terminal automation routes (CONTRACT-terminal-automation.md): type into a
session like a keyboard, read its screen, wait for it, abort a command, follow it over the
SDK's `/ws` socket.

Every input is validated completely (key names, mouse events, the pattern) before a session
is created or a byte is written.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import html
import re
import socket
from collections.abc import Awaitable, Callable

import msgspec
import structlog
from aiohttp import WSMsgType, web

from hoodyd.api.decoding import decode_body, decode_query
from hoodyd.api.draining import track_websocket
from hoodyd.api.encoding import json_response
from hoodyd.api.keys import AUTOMATION, TERMINALS
from hoodyd.api.terminal import require_upgrade, session_options
from hoodyd.errors import InvalidRequest, NotSupported, Reason
from hoodyd.schemas.automation import (
    AbortBody,
    InputResponse,
    KeysResponse,
    MouseBody,
    PasteBody,
    PressBody,
    StateBody,
    StateResponse,
    WaitBody,
    WriteBody,
)
from hoodyd.schemas.queries import (
    FindQuery,
    InputQuery,
    RawQuery,
    SnapshotQuery,
    TerminalQuery,
    WsQuery,
)
from hoodyd.terminals import keys, mouse, paste
from hoodyd.terminals.automation import ScreenAutomation, check_pattern, outcome_body
from hoodyd.terminals.service import Attachment, TerminalService
from hoodyd.terminals.session import TerminalSession
from hoodyd.terminals.validation import (
    REMOTE_FIELDS,
    check_typed_text,
    parse_command_id,
    parse_terminal_id,
)

log = structlog.get_logger()

WS_CHUNK = 65536
WS_REPLAY = 65536
WS_HANDSHAKE_TIMEOUT = 10.0
_ANSI = re.compile(rb"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")


def _terminals(request: web.Request) -> TerminalService:
    return request.config_dict[TERMINALS]


def _automation(request: web.Request) -> ScreenAutomation:
    return request.config_dict[AUTOMATION]


def _terminal_id(value: str | None) -> int:
    terminal_id = parse_terminal_id(value)
    assert terminal_id is not None
    return terminal_id


async def _input_session(request: web.Request, query: InputQuery) -> tuple[TerminalSession, bool]:
    terminals = _terminals(request)
    terminal_id = _terminal_id(query.terminal_id)
    created = not terminals.has_session(terminal_id)
    session = await terminals.input_session(terminal_id, session_options(query))
    return session, created


# typing


async def write(request: web.Request) -> web.Response:
    query = decode_query(request, InputQuery, lenient_flags=True)
    body = await decode_body(request, WriteBody)
    data = body.input.encode("utf-8", "surrogateescape") + (b"\r" if body.enter else b"")
    session, created = await _input_session(request, query)
    session.send_input(data)
    return json_response(
        InputResponse(terminal_id=str(session.terminal_id), bytes=len(data), created=created)
    )


async def press(request: web.Request) -> web.Response:
    query = decode_query(request, InputQuery, lenient_flags=True)
    body = await decode_body(request, PressBody)
    if (body.keys is None) == (body.key is None):
        raise InvalidRequest("Send exactly one of 'keys' or 'key'", reason=Reason.INVALID_REQUEST)
    names = body.keys if body.keys is not None else [body.key or ""]
    keys.encode_keys(names, application_cursor=False, application_keypad=False)  # validates all
    session, created = await _input_session(request, query)
    screen = await _automation(request).modes(session)
    data = keys.encode_keys(
        names,
        application_cursor=screen.application_cursor,
        application_keypad=screen.application_keypad,
    )
    session.send_input(data)
    return json_response(
        InputResponse(
            terminal_id=str(session.terminal_id), bytes=len(data), created=created, keys=len(names)
        )
    )


async def paste_text(request: web.Request) -> web.Response:
    query = decode_query(request, InputQuery, lenient_flags=True)
    body = await decode_body(request, PasteBody)
    session, created = await _input_session(request, query)
    screen = await _automation(request).modes(session)
    bracketed = body.bracketed and screen.bracketed_paste
    data = paste.encode_paste(
        body.text, bracketed_requested=body.bracketed, bracketed_enabled=screen.bracketed_paste
    )
    session.send_input(data)
    return json_response(
        InputResponse(
            terminal_id=str(session.terminal_id),
            bytes=len(data),
            created=created,
            bracketed=bracketed,
        )
    )


async def send_mouse(request: web.Request) -> web.Response:
    query = decode_query(request, TerminalQuery, lenient_flags=True)
    body = await decode_body(request, MouseBody)
    if (body.events is None) == (body.event is None):
        raise InvalidRequest(
            "Send exactly one of 'events' or 'event'", reason=Reason.INVALID_REQUEST
        )
    events = body.events or ([body.event] if body.event is not None else [])
    session = _terminals(request).session(_terminal_id(query.terminal_id))
    screen = await _automation(request).modes(session)
    data = mouse.encode_mouse(
        events,
        tracking=screen.mouse_tracking,
        encoding=screen.mouse_encoding,
        cols=session.cols,
        rows=session.rows,
    )
    session.send_input(data)
    return json_response(
        InputResponse(terminal_id=str(session.terminal_id), bytes=len(data), events=len(events))
    )


async def list_keys(request: web.Request) -> web.Response:
    names = list(keys.KEY_NAMES)
    return json_response(KeysResponse(keys=names, total=len(names)))


async def abort(request: web.Request) -> web.Response:
    command_id = parse_command_id(request.match_info["command_id"])
    body = await decode_body(request, AbortBody, optional=True)
    return json_response(await _terminals(request).abort(command_id, force=body.force))


# reading


async def snapshot(request: web.Request) -> web.Response:
    query = decode_query(request, SnapshotQuery, lenient_flags=True)
    session = _terminals(request).session(_terminal_id(query.terminal_id))
    shot = await _automation(request).snapshot(
        session,
        include_colors=query.include_colors,
        include_highlights=query.include_highlights,
        scroll_offset=query.scroll_offset,
    )
    body = {"success": True, "terminal_id": str(session.terminal_id)}
    body.update(shot)
    return json_response(body)


async def find_text(request: web.Request) -> web.Response:
    query = decode_query(request, FindQuery, lenient_flags=True)
    pattern = check_pattern(query.pattern)
    session = _terminals(request).session(_terminal_id(query.terminal_id))
    result = await _automation(request).find(
        session,
        pattern,
        scope=query.scope,
        limit=query.limit,
        case_insensitive=query.case_insensitive,
        scroll_offset=query.scroll_offset,
    )
    body = {"success": True, "terminal_id": str(session.terminal_id), "scope": query.scope}
    body.update(result)
    return json_response(body)


async def wait(request: web.Request) -> web.Response:
    # its options come in the body; the query names the terminal only
    query = decode_query(request, TerminalQuery, lenient_flags=True)
    body = await decode_body(request, WaitBody, optional=True)
    session = _terminals(request).session(_terminal_id(query.terminal_id))
    outcome = await _automation(request).wait(session, body)
    return json_response(outcome_body(session.terminal_id, outcome))


async def raw(request: web.Request) -> web.Response:
    query = decode_query(request, RawQuery, lenient_flags=True)
    terminal_id = _terminal_id(query.terminal_id or "1")
    ring = _terminals(request).session(terminal_id).ring
    data = ring.read(None, ring.end - ring.start).data
    if query.tail is not None:
        data = b"\n".join(data.split(b"\n")[-query.tail :])
    if query.format == "download":
        return web.Response(
            body=data,
            content_type="application/octet-stream",
            headers={"Content-Disposition": f'attachment; filename="terminal-{terminal_id}.log"'},
        )
    text = data.decode("utf-8", errors="replace")
    if query.format == "text":
        return web.Response(text=text, content_type="text/plain")
    plain = html.escape(_ANSI.sub(b"", data).decode("utf-8", errors="replace"))
    page = (
        f"<!doctype html><meta charset=utf-8><title>terminal {terminal_id}</title>"
        f"<pre>{plain}</pre>"
    )
    return web.Response(text=page, content_type="text/html")


async def metrics(request: web.Request) -> web.Response:
    return json_response(_automation(request).metrics())


async def automation_state(request: web.Request) -> web.Response:
    session = _terminals(request).session(_terminal_id(request.match_info["terminal_id"]))
    return json_response(await _automation(request).state(session))


async def client_state(request: web.Request) -> web.Response:
    body = await decode_body(request, StateBody, optional=True)
    log.info(
        "terminal_client_state",
        build_id=body.build_id,
        renderer=body.renderer,
        trigger=body.reason,
    )
    return json_response(StateResponse())


def not_supported(feature: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        raise NotSupported(f"{feature} is not supported by hoodyd", reason=Reason.NOT_SUPPORTED)

    return handler


# the SDK's WebSocket


async def tty_socket(request: web.Request) -> web.StreamResponse:
    """`/ws` in the SDK's framing: the client's first text frame is `{"columns", "rows"}`;
    then binary frames carry a command byte — client `0` input, `2`/`3` pause/resume output,
    text `1{…}` resizes; server `0` output, `1` title, `2` preferences, `3` terminal id, `4`
    shell type. The `tty` subprotocol is echoed."""
    query = decode_query(request, WsQuery, lenient_flags=True)
    unsupported = [
        name
        for name in (*REMOTE_FIELDS, "pid", "agent", "onboarding")
        if getattr(query, name, None) not in (None, False)
    ]
    if unsupported:
        raise InvalidRequest(
            f"not supported by hoodyd: {', '.join(sorted(unsupported))}",
            reason=Reason.UNSUPPORTED_PARAMETER,
        )
    command = _typed_command(query.cmd)
    terminals = _terminals(request)
    terminal_id = parse_terminal_id(query.terminal_id, required=False)
    ephemeral = terminal_id is None
    if terminal_id is None:
        terminal_id = terminals.allocate_ephemeral_id()
    options = msgspec.structs.replace(session_options(query), ephemeral=ephemeral)
    created = not terminals.has_session(terminal_id)
    terminals.check_attachable(
        terminal_id, options, ephemeral=ephemeral, cwd_auto_create=query.cwd_auto_create
    )
    ws = web.WebSocketResponse(protocols=("tty",), heartbeat=30, max_msg_size=1024 * 1024)
    require_upgrade(ws, request)
    async with terminals.attach(
        terminal_id, options, ephemeral=ephemeral, cwd_auto_create=query.cwd_auto_create
    ) as attachment:
        await ws.prepare(request)
        with track_websocket(request, ws):
            await _tty_session(ws, attachment, query.readonly, command if created else None)
        return ws


def _typed_command(encoded: str | None) -> str | None:
    if encoded is None or encoded == "":
        return None
    try:
        text = base64.b64decode(encoded, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise InvalidRequest(
            "cmd must be base64 of UTF-8 text", reason=Reason.INVALID_REQUEST
        ) from None
    check_typed_text("cmd", text)
    return text


async def _tty_session(
    ws: web.WebSocketResponse, attachment: Attachment, readonly: bool, command: str | None
) -> None:
    session = attachment.session
    try:
        first = await ws.receive(timeout=WS_HANDSHAKE_TIMEOUT)
    except TimeoutError:
        await ws.close(code=4000, message=b"no handshake")
        return
    if first.type == WSMsgType.TEXT:
        _resize_from(attachment, first.data)
    elif first.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
        return
    title = f"{session.shell.kind} ({socket.gethostname()})"
    await ws.send_bytes(b"1" + title.encode())
    await ws.send_bytes(b"2{}")
    await ws.send_bytes(b"3" + str(session.terminal_id).encode())
    await ws.send_bytes(b"4" + session.shell.kind.encode())
    if command is not None:
        await session.wait_ready(5.0)
        attachment.send_input(command.encode() + b"\r")
    flowing = asyncio.Event()
    flowing.set()
    pump = asyncio.create_task(_pump(ws, attachment, attachment.ring.tail(WS_REPLAY), flowing))
    try:
        async for message in ws:
            if message.type == WSMsgType.BINARY and message.data:
                kind, payload = message.data[:1], message.data[1:]
                if kind == b"0" and not readonly:
                    attachment.send_input(payload)
                elif kind == b"2":
                    flowing.clear()
                elif kind == b"3":
                    flowing.set()
            elif message.type == WSMsgType.TEXT:
                text = message.data
                _resize_from(attachment, text[1:] if text.startswith("1") else text)
    finally:
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await pump


class _Size(msgspec.Struct):
    columns: int = 80
    rows: int = 24


def _resize_from(attachment: Attachment, text: str) -> None:
    """Resize to a handshake's or resize frame's size; anything else is ignored, as the
    contract says unknown client frames are."""
    try:
        size = msgspec.json.decode(text, type=_Size)
    except msgspec.DecodeError:
        return
    if 1 <= size.columns <= 1000 and 1 <= size.rows <= 1000:
        attachment.resize(size.columns, size.rows)


async def _pump(
    ws: web.WebSocketResponse, attachment: Attachment, offset: int, flowing: asyncio.Event
) -> None:
    ring = attachment.ring
    while True:
        await flowing.wait()
        await ring.wait_beyond(offset, None)
        chunk = ring.read(offset, WS_CHUNK)
        if chunk.data:
            await ws.send_bytes(b"0" + chunk.data)
        offset = chunk.next_offset
        if ring.closed and offset >= ring.end:
            await ws.close(code=1000, message=b"exited")
            return
