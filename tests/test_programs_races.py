"""Concurrent control of programs against a real supervisord: no request fails inside hoodyd,
and afterwards the API, the desired state, supervisord and /proc tell the same story."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from hoodyd.api.keys import PROGRAMS
from hoodyd.polling import poll_until
from hoodyd.programs.service import ProgramService
from tests.conftest import add_program as add
from tests.conftest import sleeper
from tests.ports import free_port_range
from tests.truth import check_statuses, is_supervised

API = "/api/v1/daemon"
# the instance's `--port N` lands in the shell's positional arguments, unused
SPAN_COMMAND = "/bin/sh -c 'exec /bin/sleep {}' sh"
SETTLED = frozenset({"RUNNING", "STOPPED", "EXITED", "FATAL"})


async def call(client: Any, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
    response = await client.post(API + path, json=body)
    return response.status, await response.json()


def service_of(client: Any) -> ProgramService:
    return client.server.app[PROGRAMS]


async def settled_statuses(client: Any) -> dict[str, Any]:
    """`GET /status` once no process is between states."""

    async def quiet() -> dict[str, Any] | None:
        body: dict[str, Any] = await (await client.get(f"{API}/status")).json()
        for item in body["statuses"]:
            status = item["status"]
            for claim in status.get("instances", [status]):
                if claim["status"] not in SETTLED:
                    return None
        return body

    body = await poll_until(quiet, timeout=30, interval=0.1)
    assert body is not None, "processes did not settle"
    return body


async def assert_agreement(client: Any) -> None:
    """The API's statuses hold in /proc, equal supervisord's own answer, and what should run
    (the desired state) is exactly what runs."""
    body = await settled_statuses(client)
    check_statuses(body)
    service = service_of(client)
    infos = await service.client.processes()
    claimed: dict[str, dict[str, Any]] = {}
    for item in body["statuses"]:
        program = service.get(item["id"])
        status = item["status"]
        if "instances" in status:
            for instance in status["instances"]:
                claimed[instance["instance_name"]] = instance
        else:
            claimed[program.name] = status
        if not program.enabled:
            assert status.get("status", "STOPPED") == "STOPPED" or status.get("instances") == []
    for name, claim in claimed.items():
        info = infos.get(name)
        if info is None:
            assert claim["status"] == "STOPPED", (name, claim)
            continue
        assert (claim["status"], claim["pid"]) == (
            info.statename,
            info.pid if info.statename == "RUNNING" else None,
        ), (name, claim, info)
        if claim["pid"] is not None:
            assert is_supervised(claim["pid"])
    running = {
        name
        for name, info in infos.items()
        if info.statename == "RUNNING" and name != "hoodyd-events"  # the event listener
    }
    ours = {name for name in running if service.table.owner(name) is not None}
    wanted = {name for name, _owner in service.should_run.items()}
    assert ours == wanted, f"running {sorted(ours)} but should run {sorted(wanted)}"
    assert ours == running, f"supervisord runs processes of no program: {running - ours}"


async def test_parallel_stops_and_starts_never_fail_inside_hoodyd(client: Any) -> None:
    """20 parallel stops beside 20 parallel `if_not_running` starts, six rounds: every answer
    is 2xx or 4xx, and afterwards the API, supervisord and /proc agree."""
    program = await add(client)
    base = f"/programs/{program['id']}"
    assert (await call(client, f"{base}/start", {"wait": True}))[0] == 200
    for _round in range(6):
        calls = [call(client, f"{base}/stop") for _ in range(20)]
        calls += [call(client, f"{base}/start", {"if_not_running": True}) for _ in range(20)]
        answers = await asyncio.gather(*calls)
        failed = [(status, body) for status, body in answers if status >= 500]
        assert failed == []
        await assert_agreement(client)


async def test_random_concurrent_operations_leave_everything_in_agreement(client: Any) -> None:
    """Random concurrent start/stop/restart/edit/enable/disable/remove at three programs
    (one a port range): no 5xx, and afterwards the API, the desired state, supervisord and
    /proc agree."""
    base_port = free_port_range(3)
    bodies = [
        sleeper(),
        sleeper(),
        sleeper(
            command=SPAN_COMMAND.format(300),
            port_range={"start": base_port, "end": base_port + 2},
        ),
    ]
    rng = random.Random(27)
    ids: dict[int, dict[str, Any]] = {}
    for body in bodies:
        status, answer = await call(client, "/programs/add", body)
        assert status == 200, answer
        ids[answer["program"]["id"]] = body

    def port_of(program_id: int) -> dict[str, Any]:
        body = ids[program_id]
        if "port_range" not in body:
            return {}
        return {"port": base_port + rng.randrange(3)}

    async def one(program_id: int) -> tuple[str, int, dict[str, Any]]:
        verb = rng.choice(
            ["start", "start", "start", "stop", "stop", "restart", "edit", "enable", "disable"]
            + (["remove"] if rng.random() < 0.15 else [])
        )
        path = f"/programs/{program_id}"
        port = port_of(program_id)
        if verb == "start":
            body = {"if_not_running": rng.random() < 0.7, "wait": rng.random() < 0.5, **port}
            status, answer = await call(client, f"{path}/start", body)
        elif verb == "stop":
            stop_body = {"all": True} if "port_range" in ids[program_id] else {}
            status, answer = await call(client, f"{path}/stop", stop_body or None)
        elif verb == "restart":
            status, answer = await call(client, f"{path}/stop", port or None)
            if status < 500:
                status, answer = await call(client, f"{path}/start", {"wait": True, **port})
        elif verb == "edit":
            seconds = rng.choice([300, 301])
            command = (
                SPAN_COMMAND.format(seconds)
                if "port_range" in ids[program_id]
                else f"/bin/sleep {seconds}"
            )
            edited = {**ids[program_id], "command": command}
            status, answer = await call(client, f"/programs/edit/{program_id}", edited)
        elif verb == "remove":
            status, answer = await call(client, f"/programs/remove/{program_id}")
        else:
            status, answer = await call(client, f"{path}/{verb}")
        return verb, status, answer

    for _batch in range(8):
        answers = await asyncio.gather(*(one(rng.choice(list(ids))) for _ in range(16)))
        failed = [(verb, status, body) for verb, status, body in answers if status >= 500]
        assert failed == []
        await assert_agreement(client)
