"""Handlers of the Program Control API (`/api/v1/daemon`): decode, call a service, encode."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec
from aiohttp import web

from hoodyd.api.common import decode_body, json_response, path_int, query_bool, query_int
from hoodyd.api.health import add_health_route
from hoodyd.api.keys import CONFIG, PROGRAMS, QUICKSTART
from hoodyd.api.openapi import add_openapi_routes
from hoodyd.errors import InvalidRequest
from hoodyd.programs.quickstart import QuickStartService
from hoodyd.programs.service import ProgramFilter, ProgramService
from hoodyd.schemas.daemon import (
    EphemeralInput,
    Instance,
    Program,
    ProgramInput,
    StartRequest,
    StopRequest,
)

BASE = "/api/v1/daemon"
routes = web.RouteTableDef()


def _program_id(request: web.Request) -> int:
    return path_int(request, "id", low=1)


def _log_query(request: web.Request) -> tuple[str, int]:
    stream = request.query.get("type", "stdout")
    if stream not in ("stdout", "stderr"):
        raise InvalidRequest(
            f"Invalid value for 'type': {stream!r} (allowed: stdout, stderr)", reason="INVALID_ENUM"
        )
    lines = query_int(request, "lines", low=1, high=10000)
    return stream, 100 if lines is None else lines


def _port_query(request: web.Request) -> int | None:
    return query_int(request, "port", low=1, high=65535)


def _program_body(program: Program) -> dict[str, Any]:
    body: dict[str, Any] = msgspec.to_builtins(program)
    return body


def _instance_body(instance: Instance | None) -> dict[str, Any] | None:
    if instance is None:
        return None
    body: dict[str, Any] = msgspec.to_builtins(instance)
    return {k: v for k, v in body.items() if v is not None or k in ("pid", "uptime")}


@routes.get(f"{BASE}/programs")
async def list_programs(request: web.Request) -> web.Response:
    service = request.app[PROGRAMS]
    port_from = query_int(request, "port_from", low=1, high=65535)
    port_to = query_int(request, "port_to", low=1, high=65535)
    if (port_from is None) != (port_to is None):
        raise InvalidRequest("port_from and port_to must be given together", reason="PORT_RANGE")
    if port_from is not None and port_to is not None and port_from > port_to:
        raise InvalidRequest("port_from must not exceed port_to", reason="PORT_RANGE")
    include_stats = bool(query_bool(request, "include_stats"))
    include_status = bool(query_bool(request, "include_status")) or include_stats
    where = ProgramFilter(
        hoody_kit=query_bool(request, "hoody_kit"),
        lazy_load=query_bool(request, "lazy_load"),
        enabled=query_bool(request, "enabled"),
        boot=query_bool(request, "boot"),
        port=_port_query(request),
        port_from=port_from,
        port_to=port_to,
    )
    unknown = set(request.query) - {
        "hoody_kit", "lazy_load", "enabled", "boot", "port", "port_from", "port_to",
        "include_status", "include_stats", "origin",
    }
    if unknown:
        raise InvalidRequest(
            f"Unknown query parameter(s): {', '.join(sorted(unknown))}", reason="UNKNOWN_PARAMETER"
        )
    programs = service.find(where)
    bodies = [_program_body(p) for p in programs]
    if include_status:
        infos = await service.status_map()
        for body, program in zip(bodies, programs, strict=True):
            body["status"] = service.program_status(program, infos, with_stats=include_stats)
    return json_response({"programs": bodies})


@routes.get(BASE + "/programs/{id}")
async def get_program(request: web.Request) -> web.Response:
    program = request.app[PROGRAMS].get(_program_id(request))
    return json_response({"success": True, "program": _program_body(program)})


@routes.post(f"{BASE}/programs/add")
async def add_program(request: web.Request) -> web.Response:
    given = await decode_body(request, ProgramInput)
    program = await request.app[PROGRAMS].add(given)
    return json_response({"success": True, "id": program.id, "program": _program_body(program)})


@routes.post(BASE + "/programs/edit/{id}")
async def edit_program(request: web.Request) -> web.Response:
    program_id = _program_id(request)
    given = await decode_body(request, ProgramInput)
    program = await request.app[PROGRAMS].edit(program_id, given)
    return json_response({"success": True, "program": _program_body(program)})


@routes.post(BASE + "/programs/remove/{id}")
async def remove_program(request: web.Request) -> web.Response:
    program_id = _program_id(request)
    await request.app[PROGRAMS].remove(program_id)
    return json_response({"success": True, "id": program_id})


@routes.post(f"{BASE}/programs/reset")
async def reset_programs(request: web.Request) -> web.Response:
    count = await request.app[PROGRAMS].reset()
    return json_response({"success": True, "count": count})


@routes.post(BASE + "/programs/{id}/enable")
async def enable_program(request: web.Request) -> web.Response:
    program = await request.app[PROGRAMS].set_enabled(_program_id(request), True)
    return json_response({"success": True, "program": _program_body(program)})


@routes.post(BASE + "/programs/{id}/disable")
async def disable_program(request: web.Request) -> web.Response:
    program = await request.app[PROGRAMS].set_enabled(_program_id(request), False)
    return json_response({"success": True, "program": _program_body(program)})


@routes.post(BASE + "/programs/{id}/start")
async def start_program(request: web.Request) -> web.Response:
    program_id = _program_id(request)
    body = await decode_body(request, StartRequest, optional=True)
    service = request.app[PROGRAMS]
    already_running, instance = await service.start(program_id, body)
    is_range = service.get(program_id).port_range is not None
    answer: dict[str, Any] = {"success": True, "already_running": already_running}
    answer["instance"] = _instance_body(instance) if is_range else None
    if not is_range:
        # extension: the state of a standard program, which has no instance object
        answer["status"] = _instance_body(instance)
    return json_response(answer)


@routes.post(BASE + "/programs/{id}/stop")
async def stop_program(request: web.Request) -> web.Response:
    program_id = _program_id(request)
    body = await decode_body(request, StopRequest, optional=True)
    stopped = await request.app[PROGRAMS].stop(program_id, body)
    return json_response({"success": True, "stopped": stopped})


@routes.get(f"{BASE}/status")
async def all_statuses(request: web.Request) -> web.Response:
    service = request.app[PROGRAMS]
    infos = await service.status_map()
    statuses = [
        {
            "id": program.id,
            "name": program.name,
            "enabled": program.enabled,
            "status": service.program_status(program, infos),
        }
        for program in service.find(ProgramFilter())
    ]
    return json_response({"success": True, "statuses": statuses})


@routes.get(BASE + "/status/{id}")
async def one_status(request: web.Request) -> web.Response:
    answer = await request.app[PROGRAMS].status_of(
        _program_id(request),
        port=_port_query(request),
        with_stats=bool(query_bool(request, "include_stats")),
    )
    return json_response(answer)


@routes.get(BASE + "/programs/{id}/logs")
async def program_logs(request: web.Request) -> web.Response:
    service = request.app[PROGRAMS]
    program = service.get(_program_id(request))
    stream, lines = _log_query(request)
    body = await service.logs(program, stream=stream, lines=lines, port=_port_query(request))
    return json_response(body)


@routes.post(f"{BASE}/quick-start")
async def quick_start(request: web.Request) -> web.Response:
    given = await decode_body(request, EphemeralInput)
    return json_response(await request.app[QUICKSTART].launch(given))


@routes.get(f"{BASE}/quick-start")
async def quick_list(request: web.Request) -> web.Response:
    return json_response(await request.app[QUICKSTART].listing())


@routes.get(BASE + "/quick-start/{id}/status")
async def quick_status(request: web.Request) -> web.Response:
    return json_response(await request.app[QUICKSTART].status(request.match_info["id"]))


@routes.get(BASE + "/quick-start/{id}/logs")
async def quick_logs(request: web.Request) -> web.Response:
    stream, lines = _log_query(request)
    service = request.app[QUICKSTART]
    return json_response(
        await service.logs(request.match_info["id"], stream=stream, lines=lines)
    )


@routes.post(BASE + "/quick-start/{id}/stop")
async def quick_stop(request: web.Request) -> web.Response:
    return json_response(await request.app[QUICKSTART].stop(request.match_info["id"]))


async def _services(app: web.Application) -> AsyncIterator[None]:
    programs = ProgramService(app[CONFIG])
    quick = QuickStartService(programs)
    await programs.open()
    await quick.open()
    app[PROGRAMS] = programs
    app[QUICKSTART] = quick
    try:
        yield
    finally:
        await quick.close()
        await programs.close()


def setup(app: web.Application) -> None:
    add_health_route(app, BASE, "hoodyd-daemon")
    add_openapi_routes(app, "daemon", BASE)
    app.router.add_routes(routes)
    app.cleanup_ctx.append(_services)
