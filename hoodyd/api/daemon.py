"""Handlers of the Program Control API (`/api/v1/daemon`): decode, call a service, encode.

The services answer Structs; the `{success: true, ...}` envelope is added here (`_ok`).
Two answers are streams that last until the client leaves: `GET /events` (Server-Sent
Events of process state changes) and `GET /programs/{id}/logs` with `follow=true`. When the
daemon stops, the drain (`hoodyd.api.draining`) ends them like any request in flight."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import structlog
from aiohttp import web

from hoodyd.api.decoding import decode_body, decode_query, path_int
from hoodyd.api.encoding import json_response
from hoodyd.api.keys import PROGRAMS, QUICKSTART
from hoodyd.errors import InvalidRequest, Reason
from hoodyd.programs.logs import follow
from hoodyd.programs.observer import Transition
from hoodyd.programs.probes import HealthEvent
from hoodyd.programs.table import ProgramFilter
from hoodyd.programs.webhook_delivery import utc_timestamp
from hoodyd.schemas.daemon import (
    EphemeralInput,
    EventProgram,
    Program,
    ProgramEvent,
    ProgramHealth,
    ProgramInput,
    RemoveRequest,
    StartRequest,
    StopRequest,
)
from hoodyd.schemas.queries import (
    ProgramListQuery,
    ProgramLogsQuery,
    QuickLogsQuery,
    StatusQuery,
)

log = structlog.get_logger()

# a stream that has not written for this long sends an SSE comment, which also finds out
# whether the client is still there
HEARTBEAT_S = 15.0
# how often a quiet stream looks whether its client has gone
CLIENT_CHECK_S = 1.0
# events kept for a subscriber that reads slower than they come; the rest are dropped
EVENT_BACKLOG = 1000


_encoder = msgspec.json.Encoder()
_SUCCESS = b'{"success":true}'


def _program_id(request: web.Request) -> int:
    return path_int(request, "id", low=1)


def _program_body(program: Program, health: ProgramHealth | None = None) -> dict[str, Any]:
    """A program as the SDK's type has it: optional fields that are unset are left out; with
    probes or dependencies, its `health`, `restarts` and `last_probe`."""
    body: dict[str, Any] = msgspec.to_builtins(program)
    body = {key: value for key, value in body.items() if value is not None}
    if health is not None:
        body.update(msgspec.to_builtins(health))
    return body


def _ok(answer: msgspec.Struct | None = None, **fields: Any) -> web.Response:
    """`{success: true}`, then `fields`, then the answer's own fields."""
    if answer is not None and not fields and "success" not in answer.__struct_fields__:
        encoded = _encoder.encode(answer)  # the answer's own JSON object, `success` put first
        if encoded[:1] == b"{":
            body_bytes = b'{"success":true,' + encoded[1:] if encoded != b"{}" else _SUCCESS
            return web.Response(body=body_bytes, content_type="application/json")
    body: dict[str, Any] = {"success": True, **fields}
    if answer is not None:
        body.update(msgspec.to_builtins(answer))
    return json_response(body)


async def list_programs(request: web.Request) -> web.Response:
    service = request.config_dict[PROGRAMS]
    query = decode_query(request, ProgramListQuery)
    if (query.port_from is None) != (query.port_to is None):
        raise InvalidRequest(
            "port_from and port_to must be given together", reason=Reason.PORT_RANGE
        )
    if (
        query.port_from is not None
        and query.port_to is not None
        and (query.port_from > query.port_to)
    ):
        raise InvalidRequest("port_from must not exceed port_to", reason=Reason.PORT_RANGE)
    where = ProgramFilter(
        hoody_kit=query.hoody_kit,
        lazy_load=query.lazy_load,
        enabled=query.enabled,
        boot=query.boot,
        port=query.port,
        port_from=query.port_from,
        port_to=query.port_to,
    )
    programs = service.find(where)
    bodies = [
        _program_body(p, health)
        for p, health in zip(programs, service.health_of(programs), strict=True)
    ]
    if query.include_status or query.include_stats:
        statuses = await service.statuses_of(programs, with_stats=query.include_stats)
        for body, status in zip(bodies, statuses, strict=True):
            body["status"] = status
    return json_response({"programs": bodies})


async def get_program(request: web.Request) -> web.Response:
    service = request.config_dict[PROGRAMS]
    program = service.get(_program_id(request))
    return _ok(program=_program_body(program, service.health_of([program])[0]))


async def add_program(request: web.Request) -> web.Response:
    given = await decode_body(request, ProgramInput)
    program = await request.config_dict[PROGRAMS].add(given)
    return _ok(id=program.id, program=_program_body(program))


async def edit_program(request: web.Request) -> web.Response:
    program_id = _program_id(request)
    given = await decode_body(request, ProgramInput)
    program = await request.config_dict[PROGRAMS].edit(program_id, given)
    return _ok(program=_program_body(program))


async def remove_program(request: web.Request) -> web.Response:
    program_id = _program_id(request)
    body = await decode_body(request, RemoveRequest, optional=True)
    await request.config_dict[PROGRAMS].remove(program_id, force=body.force)
    return _ok(id=program_id)


async def reset_programs(request: web.Request) -> web.Response:
    count = await request.config_dict[PROGRAMS].reset()
    return _ok(count=count)


async def enable_program(request: web.Request) -> web.Response:
    program = await request.config_dict[PROGRAMS].set_enabled(_program_id(request), True)
    return _ok(program=_program_body(program))


async def disable_program(request: web.Request) -> web.Response:
    program = await request.config_dict[PROGRAMS].set_enabled(_program_id(request), False)
    return _ok(program=_program_body(program))


async def start_program(request: web.Request) -> web.Response:
    program_id = _program_id(request)
    body = await decode_body(request, StartRequest, optional=True)
    started = await request.config_dict[PROGRAMS].start(program_id, body)
    if started.instance.port is not msgspec.UNSET:
        return _ok(already_running=started.already_running, instance=started.instance)
    # a standard program has no instance (left out); extension: its state as `status`
    return _ok(already_running=started.already_running, status=started.instance)


async def stop_program(request: web.Request) -> web.Response:
    program_id = _program_id(request)
    body = await decode_body(request, StopRequest, optional=True)
    service = request.config_dict[PROGRAMS]
    stopped = await service.stop(program_id, body)
    # extension: the programs that depend on this one (stopping it does not stop them)
    dependents = [{"id": p.id, "name": p.name} for p in service.dependents(program_id)]
    extra: dict[str, Any] = {"dependents": dependents} if dependents else {}
    return _ok(None, stopped=stopped, **extra)


async def all_statuses(request: web.Request) -> web.Response:
    service = request.config_dict[PROGRAMS]
    programs = service.find(ProgramFilter())
    statuses = await service.statuses_of(programs, with_stats=False)
    return _ok(
        statuses=[
            {"id": program.id, "name": program.name, "enabled": program.enabled, "status": status}
            for program, status in zip(programs, statuses, strict=True)
        ]
    )


async def one_status(request: web.Request) -> web.Response:
    query = decode_query(request, StatusQuery)
    answer = await request.config_dict[PROGRAMS].status_of(
        _program_id(request), port=query.port, with_stats=query.include_stats
    )
    return _ok(answer)


async def program_logs(request: web.Request) -> web.StreamResponse:
    service = request.config_dict[PROGRAMS]
    program = service.get(_program_id(request))
    query = decode_query(request, ProgramLogsQuery)
    if query.follow:
        # the tail answer checks the request (port, logs enabled) and names the file
        checked = await service.logs(program, stream=query.type, lines=1, port=query.port)
        return await _follow_log(request, Path(checked.log_file), query.lines)
    tail = await service.logs(program, stream=query.type, lines=query.lines, port=query.port)
    return _ok(tail, error=None)


async def _follow_log(request: web.Request, path: Path, lines: int) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={"Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    chunks = follow(path, lines)
    try:
        async for chunk in chunks:
            if _client_gone(request):
                break
            if chunk:
                await response.write(chunk)
    except ConnectionError:
        pass  # the client left
    finally:
        await chunks.aclose()
    return response


def _client_gone(request: web.Request) -> bool:
    return request.transport is None or request.transport.is_closing()


async def events(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events: one `data:` line (a ProgramEvent) per state change of a program's
    process, the same changes webhooks are sent, until the client leaves."""
    service = request.config_dict[PROGRAMS]
    queue: asyncio.Queue[ProgramEvent] = asyncio.Queue(maxsize=EVENT_BACKLOG)

    def on_transition(change: Transition) -> None:
        owner = service.table.owner(change.name)
        if owner is None or change.initial:
            return
        program, port = owner
        event = ProgramEvent(
            event=change.state,
            program=EventProgram(id=program.id, name=program.name),
            instance_name=change.name,
            port=msgspec.UNSET if port is None else port,
            from_state=change.from_state,
            pid=change.pid,
            timestamp=utc_timestamp(),
        )
        try:
            queue.put_nowait(event)
        except asyncio.QueueFull:
            log.warning("events_dropped", process=change.name)

    def on_health(happened: HealthEvent) -> None:
        event = ProgramEvent(
            event=happened.event,
            program=EventProgram(id=happened.program.id, name=happened.program.name),
            instance_name=happened.name,
            port=msgspec.UNSET if happened.port is None else happened.port,
            from_state=None,
            pid=happened.pid,
            timestamp=utc_timestamp(),
            detail=msgspec.UNSET if happened.detail is None else happened.detail,
        )
        try:
            queue.put_nowait(event)
        except asyncio.QueueFull:
            log.warning("events_dropped", process=happened.name)

    unsubscribe = service.observer.subscribe(on_transition)
    unlisten = service.probes.listen(on_health)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",  # nginx: pass each event on at once
        }
    )
    try:
        await response.prepare(request)
        await response.write(b": hoodyd program events\n\n")
        async for event in _events_until(queue, request):
            if event is None:
                await response.write(b": keep-alive\n\n")
            else:
                await response.write(b"data: " + msgspec.json.encode(event) + b"\n\n")
    except ConnectionError:
        pass  # the client left
    finally:
        unsubscribe()
        unlisten()
    return response


async def _events_until(
    queue: asyncio.Queue[ProgramEvent], request: web.Request
) -> AsyncIterator[ProgramEvent | None]:
    """The queued events as they come, and None when it is time for a heartbeat; ends when
    the client has gone."""
    quiet = 0.0
    while not _client_gone(request):
        try:
            event = await asyncio.wait_for(queue.get(), CLIENT_CHECK_S)
        except TimeoutError:
            quiet += CLIENT_CHECK_S
            if quiet >= HEARTBEAT_S:
                quiet = 0.0
                yield None
            continue
        quiet = 0.0
        yield event


async def quick_start(request: web.Request) -> web.Response:
    given = await decode_body(request, EphemeralInput)
    return _ok(await request.config_dict[QUICKSTART].launch(given))


async def quick_list(request: web.Request) -> web.Response:
    listed = await request.config_dict[QUICKSTART].listing()
    return _ok(count=len(listed), ephemeral_programs=listed)


async def quick_status(request: web.Request) -> web.Response:
    return _ok(await request.config_dict[QUICKSTART].status(request.match_info["id"]))


async def quick_logs(request: web.Request) -> web.Response:
    query = decode_query(request, QuickLogsQuery)
    service = request.config_dict[QUICKSTART]
    tail = await service.logs(request.match_info["id"], stream=query.type, lines=query.lines)
    return _ok(tail, error=None)


async def quick_stop(request: web.Request) -> web.Response:
    temporary_id = request.match_info["id"]
    await request.config_dict[QUICKSTART].stop(temporary_id)
    return _ok(
        temporary_id=temporary_id,
        cleaned_up=True,
        message=f"Ephemeral program {temporary_id} stopped and cleaned up",
    )
