"""Start-order dependencies over the API against a real supervisord: dependencies start first and
gate their dependents on their condition; the graph is checked on add and edit; removal and
stop say who depends on a program."""

from __future__ import annotations

import shlex
import socket
import sys
from typing import Any

import msgspec
import pytest

from hoodyd.client.commands import dependency_tree
from hoodyd.config import Config
from hoodyd.polling import poll_until
from hoodyd.programs.dependencies import start_order
from hoodyd.programs.embedded import stop_embedded
from hoodyd.programs.service import ProgramService
from hoodyd.schemas.daemon import Dependency, ProcessStatus, Program, ProgramInput
from tests.conftest import PORT_SERVER, add_program, sleeper
from tests.ports import free_port

BASE = "/api/v1/daemon"


def connects_then_sleeps(port: int) -> str:
    """A command that exits at once (status 1) unless something accepts on `port`."""
    code = (
        f"import socket, time; socket.create_connection(('127.0.0.1', {port}), 1).close(); "
        "time.sleep(300)"
    )
    return shlex.join([sys.executable, "-c", code])


async def post(client: Any, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    response = await client.post(BASE + path, json=body if body is not None else {})
    return response.status, await response.json()


async def test_an_api_starts_after_its_slow_db_is_ready(client: Any) -> None:
    """Starting an api starts the db it depends on first and waits for the db's readiness
    probe (its port accepting) before the api runs."""
    port = free_port()
    db = await add_program(
        client,
        name="db",
        command=f"{PORT_SERVER} --port {port} --bind-delay 1.5",
        readiness={"port": port, "interval_ms": 200, "timeout_ms": 200},
        autorestart="false",
    )
    api = await add_program(
        client,
        name="api",
        command=connects_then_sleeps(port),
        autorestart="false",
        depends_on=[{"program": "db"}],
    )
    status, body = await post(client, f"/programs/{api['id']}/start", {"wait": True, "timeout": 20})
    assert status == 200, body
    assert body["status"]["status"] == "RUNNING"
    response = await client.get(f"{BASE}/status/{db['id']}")
    db_status = (await response.json())["status"]
    assert db_status["status"] == "RUNNING"
    assert db_status["health"] == "ready"
    assert db_status["last_probe"]["ok"] is True
    with socket.create_connection(("127.0.0.1", port), 2):
        pass
    response = await client.get(f"{BASE}/programs/{api['id']}")
    program = (await response.json())["program"]
    assert program["depends_on"] == [{"program": "db", "condition": "ready"}]
    assert program["health"] == "ready"


async def test_a_failing_dependency_fails_the_start_and_is_named(client: Any) -> None:
    """A dependency that cannot start fails its dependent's start with DEPENDENCY_FAILED,
    naming it; the dependent is not started."""
    await add_program(
        client, name="broken", command="/bin/false", autorestart="false"
    )
    api = await add_program(client, name="needs-broken", depends_on=[{"program": "broken"}])
    status, body = await post(client, f"/programs/{api['id']}/start", {"wait": True, "timeout": 15})
    assert status in (502, 504), body
    assert body["reason"] == "DEPENDENCY_FAILED"
    assert body["dependency"] == "broken"
    assert "broken" in body["error"]
    response = await client.get(f"{BASE}/status/{api['id']}")
    assert (await response.json())["status"]["status"] == "STOPPED"


async def test_an_exited_ok_dependency_runs_to_completion_first(client: Any) -> None:
    """An `exited_ok` dependency (a migration) must have exited with status 0 before its
    dependent starts."""
    await add_program(
        client,
        name="migrate",
        command=shlex.join([sys.executable, "-c", "import time; time.sleep(1.3)"]),
        autorestart="false",
    )
    app = await add_program(
        client, name="app", depends_on=[{"program": "migrate", "condition": "exited_ok"}]
    )
    status, body = await post(client, f"/programs/{app['id']}/start", {"wait": True, "timeout": 20})
    assert status == 200, body
    response = await client.get(f"{BASE}/status")
    states = {s["name"]: s["status"] for s in (await response.json())["statuses"]}
    assert states["migrate"]["status"] == "EXITED"
    assert states["migrate"]["exitstatus"] == 0
    assert states["app"]["status"] == "RUNNING"


async def test_a_cycle_is_refused_and_changes_nothing(client: Any) -> None:
    """An edit that would close a dependency cycle is a 400 DEPENDENCY_CYCLE naming the
    cycle, and the program stays as it was."""
    first = await add_program(client, name="first")
    await add_program(client, name="second", depends_on=[{"program": "first"}])
    status, body = await post(
        client, f"/programs/edit/{first['id']}", {"depends_on": [{"program": "second"}]}
    )
    assert status == 400, body
    assert body["reason"] == "DEPENDENCY_CYCLE"
    assert body["cycle"] == ["first", "second", "first"]
    response = await client.get(f"{BASE}/programs/{first['id']}")
    assert "depends_on" not in (await response.json())["program"]
    status, body = await post(
        client, f"/programs/edit/{first['id']}", {"depends_on": [{"program": "first"}]}
    )
    assert (status, body["reason"]) == (400, "DEPENDENCY_CYCLE")


async def test_an_unknown_dependency_is_refused(client: Any) -> None:
    """Adding a program that depends on a name no program has is a 400 UNKNOWN_DEPENDENCY, and
    nothing is added."""
    status, body = await post(
        client, "/programs/add", sleeper(name="orphan", depends_on=[{"program": "ghost"}])
    )
    assert status == 400, body
    assert body["reason"] == "UNKNOWN_DEPENDENCY"
    assert body["dependency"] == "ghost"
    response = await client.get(f"{BASE}/programs")
    assert [p["name"] for p in (await response.json())["programs"]] == []


async def test_remove_is_refused_while_others_depend_unless_forced(client: Any) -> None:
    """A program others depend on is removed only with `force`; without it the answer is a
    409 DEPENDED_ON naming the dependents. Renaming it is refused too."""
    base = await add_program(client, name="base")
    await add_program(client, name="top", depends_on=[{"program": "base"}])
    status, body = await post(client, f"/programs/remove/{base['id']}")
    assert status == 409, body
    assert body["reason"] == "DEPENDED_ON"
    assert body["dependents"] == ["top"]
    status, body = await post(client, f"/programs/edit/{base['id']}", {"name": "renamed"})
    assert (status, body["reason"]) == (400, "DEPENDED_ON")
    status, body = await post(client, f"/programs/remove/{base['id']}", {"force": True})
    assert status == 200, body
    response = await client.get(f"{BASE}/programs")
    assert [p["name"] for p in (await response.json())["programs"]] == ["top"]


async def test_stopping_a_dependency_reports_its_dependents(client: Any) -> None:
    """The stop answer of a program others depend on lists them, transitively."""
    low = await add_program(client, name="low")
    await add_program(client, name="mid", depends_on=[{"program": "low", "condition": "started"}])
    await add_program(client, name="high", depends_on=[{"program": "mid", "condition": "started"}])
    status, body = await post(client, f"/programs/{low['id']}/start", {"wait": True})
    assert status == 200, body
    status, body = await post(client, f"/programs/{low['id']}/stop")
    assert status == 200, body
    assert [d["name"] for d in body["dependents"]] == ["mid", "high"]


def test_start_order_puts_every_dependency_before_its_dependents() -> None:
    """Boot order follows the graph: dependencies first, otherwise by id."""

    def program(pid: int, name: str, *needs: str) -> Program:
        return Program(
            id=pid, name=name, command="/bin/true", user="root",
            depends_on=[Dependency(program=n) for n in needs] or None,
        )

    ordered = start_order(
        [program(1, "web", "api", "cache"), program(2, "api", "db"), program(3, "db"),
         program(4, "cache"), program(5, "solo")]
    )
    assert [p.name for p in ordered] == ["db", "api", "cache", "web", "solo"]


def test_status_shows_the_dependency_tree() -> None:
    """`hoodyd status` draws each program with dependencies as a tree of what it needs, with
    health and condition."""
    programs = [
        {"name": "web", "health": "ready", "depends_on": [
            {"program": "api", "condition": "ready"}, {"program": "cache", "condition": "started"}
        ]},
        {"name": "api", "health": "starting", "depends_on": [{"program": "db"}]},
        {"name": "db", "health": "ready"},
        {"name": "cache"},
    ]
    assert dependency_tree(programs, programs) == [
        "dependencies:",
        "web [ready]",
        "├─ api [starting] (needs ready)",
        "│  └─ db [ready] (needs ready)",
        "└─ cache (needs started)",
    ]
    assert dependency_tree(programs[2:], programs[2:]) == []


@pytest.mark.parametrize("ranged", [False, True], ids=["program", "port-range"])
async def test_boot_order_follows_the_graph(program_config: Config, ranged: bool) -> None:
    """When supervisord starts afresh, a boot program with dependencies (each instance of a
    port range alike) is started by hoodyd after its slow dependency is ready, not at once
    by supervisord."""
    port = free_port()
    instance_port = free_port() if ranged else None
    service = ProgramService(program_config)
    await service.open()
    try:
        db = msgspec.convert(
            sleeper(
                name="db", boot=True, command=f"{PORT_SERVER} --port {port} --bind-delay 1.5",
                readiness={"port": port, "interval_ms": 200, "timeout_ms": 200},
            ),
            ProgramInput,
        )
        api = msgspec.convert(
            sleeper(
                name="api", boot=True, command=connects_then_sleeps(port), autorestart="false",
                depends_on=[{"program": "db"}],
                **(
                    {"port_range": {"start": instance_port, "end": instance_port}}
                    if ranged
                    else {}
                ),
            ),
            ProgramInput,
        )
        await service.add(db)
        api_id = (await service.add(api)).id
    finally:
        await service.close()
    stop_embedded(program_config.state_path, grace=0)
    service = ProgramService(program_config)
    await service.open()
    try:

        async def api_running() -> bool | None:
            answer = await service.status_of(api_id, port=instance_port, with_stats=False)
            assert isinstance(answer.status, ProcessStatus)
            assert answer.status.status not in ("FATAL", "EXITED", "BACKOFF")
            return True if answer.status.status == "RUNNING" else None

        assert await poll_until(api_running, timeout=20, interval=0.1)
    finally:
        await service.close()
