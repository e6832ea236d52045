"""Handlers of the Program Control API (`/api/v1/daemon`): decode, call a service, encode."""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from hoodyd.api.decoding import decode_body, decode_query, path_int
from hoodyd.api.encoding import json_response
from hoodyd.api.keys import PROGRAMS, QUICKSTART
from hoodyd.errors import InvalidRequest
from hoodyd.programs.service import ProgramFilter
from hoodyd.schemas.daemon import (
    EphemeralInput,
    Instance,
    Program,
    ProgramInput,
    StartRequest,
    StopRequest,
)
from hoodyd.schemas.queries import (
    ProgramListQuery,
    ProgramLogsQuery,
    QuickLogsQuery,
    StatusQuery,
)


def _program_id(request: web.Request) -> int:
    return path_int(request, "id", low=1)


def _program_body(program: Program) -> dict[str, Any]:
    body: dict[str, Any] = msgspec.to_builtins(program)
    return body


def _instance_body(instance: Instance | None) -> dict[str, Any] | None:
    if instance is None:
        return None
    body: dict[str, Any] = msgspec.to_builtins(instance)
    return {k: v for k, v in body.items() if v is not None or k in ("pid", "uptime")}


async def list_programs(request: web.Request) -> web.Response:
    service = request.config_dict[PROGRAMS]
    query = decode_query(request, ProgramListQuery)
    if (query.port_from is None) != (query.port_to is None):
        raise InvalidRequest("port_from and port_to must be given together", reason="PORT_RANGE")
    if query.port_from is not None and query.port_to is not None and (
        query.port_from > query.port_to
    ):
        raise InvalidRequest("port_from must not exceed port_to", reason="PORT_RANGE")
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
    bodies = [_program_body(p) for p in programs]
    if query.include_status or query.include_stats:
        infos = await service.status_map()
        for body, program in zip(bodies, programs, strict=True):
            body["status"] = service.program_status(program, infos, with_stats=query.include_stats)
    return json_response({"programs": bodies})


async def get_program(request: web.Request) -> web.Response:
    program = request.config_dict[PROGRAMS].get(_program_id(request))
    return json_response({"success": True, "program": _program_body(program)})


async def add_program(request: web.Request) -> web.Response:
    given = await decode_body(request, ProgramInput)
    program = await request.config_dict[PROGRAMS].add(given)
    return json_response({"success": True, "id": program.id, "program": _program_body(program)})


async def edit_program(request: web.Request) -> web.Response:
    program_id = _program_id(request)
    given = await decode_body(request, ProgramInput)
    program = await request.config_dict[PROGRAMS].edit(program_id, given)
    return json_response({"success": True, "program": _program_body(program)})


async def remove_program(request: web.Request) -> web.Response:
    program_id = _program_id(request)
    await request.config_dict[PROGRAMS].remove(program_id)
    return json_response({"success": True, "id": program_id})


async def reset_programs(request: web.Request) -> web.Response:
    count = await request.config_dict[PROGRAMS].reset()
    return json_response({"success": True, "count": count})


async def enable_program(request: web.Request) -> web.Response:
    program = await request.config_dict[PROGRAMS].set_enabled(_program_id(request), True)
    return json_response({"success": True, "program": _program_body(program)})


async def disable_program(request: web.Request) -> web.Response:
    program = await request.config_dict[PROGRAMS].set_enabled(_program_id(request), False)
    return json_response({"success": True, "program": _program_body(program)})


async def start_program(request: web.Request) -> web.Response:
    program_id = _program_id(request)
    body = await decode_body(request, StartRequest, optional=True)
    service = request.config_dict[PROGRAMS]
    already_running, instance = await service.start(program_id, body)
    is_range = service.get(program_id).port_range is not None
    answer: dict[str, Any] = {"success": True, "already_running": already_running}
    answer["instance"] = _instance_body(instance) if is_range else None
    if not is_range:
        # extension: the state of a standard program, which has no instance object
        answer["status"] = _instance_body(instance)
    return json_response(answer)


async def stop_program(request: web.Request) -> web.Response:
    program_id = _program_id(request)
    body = await decode_body(request, StopRequest, optional=True)
    stopped = await request.config_dict[PROGRAMS].stop(program_id, body)
    return json_response({"success": True, "stopped": stopped})


async def all_statuses(request: web.Request) -> web.Response:
    service = request.config_dict[PROGRAMS]
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


async def one_status(request: web.Request) -> web.Response:
    query = decode_query(request, StatusQuery)
    answer = await request.config_dict[PROGRAMS].status_of(
        _program_id(request), port=query.port, with_stats=query.include_stats
    )
    return json_response(answer)


async def program_logs(request: web.Request) -> web.Response:
    service = request.config_dict[PROGRAMS]
    program = service.get(_program_id(request))
    query = decode_query(request, ProgramLogsQuery)
    body = await service.logs(program, stream=query.type, lines=query.lines, port=query.port)
    return json_response(body)


async def quick_start(request: web.Request) -> web.Response:
    given = await decode_body(request, EphemeralInput)
    return json_response(await request.config_dict[QUICKSTART].launch(given))


async def quick_list(request: web.Request) -> web.Response:
    return json_response(await request.config_dict[QUICKSTART].listing())


async def quick_status(request: web.Request) -> web.Response:
    return json_response(await request.config_dict[QUICKSTART].status(request.match_info["id"]))


async def quick_logs(request: web.Request) -> web.Response:
    query = decode_query(request, QuickLogsQuery)
    service = request.config_dict[QUICKSTART]
    return json_response(
        await service.logs(request.match_info["id"], stream=query.type, lines=query.lines)
    )


async def quick_stop(request: web.Request) -> web.Response:
    return json_response(await request.config_dict[QUICKSTART].stop(request.match_info["id"]))
