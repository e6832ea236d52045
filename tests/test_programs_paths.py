"""What reaches the disk and supervisord from a program: files keyed by program id (never by
name), distinct supervisord names, bounded ids, and modes closed to other users."""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from hoodyd.api.keys import PROGRAMS
from hoodyd.config import Config
from hoodyd.programs.store import ProgramStore
from hoodyd.schemas.daemon import PortRangeStatus, Program
from tests.conftest import add_program, make_config, sleeper

API = "/api/v1/daemon"
MAX_ID = 2**31 - 1
# prints one line, then stays alive for its log and status to be read
TALKER = f"{sys.executable} -c 'import time; print(\"hello\", flush=True); time.sleep(60)'"


@pytest.fixture
def nested_config(short_tmp: Path) -> Config:
    """A state dir two levels below the temp root, so that anything written outside the
    state dir (`logs/../../x`) still lands in the temp root, where the test can see it."""
    return make_config(short_tmp / "a" / "b" / "state", supervisor={"poll_interval": 0.2})


@pytest.fixture
async def nested_client(nested_config: Config) -> AsyncIterator[TestClient[Any, Any]]:
    from hoodyd.app import create_app

    app = create_app(nested_config, areas=("daemon",))
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def post(client: Any, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
    response = await client.post(API + path, json=body)
    return response.status, await response.json()


async def get(client: Any, path: str) -> tuple[int, dict[str, Any]]:
    response = await client.get(API + path)
    return response.status, await response.json()


def everything_below(root: Path) -> set[Path]:
    return {Path(top) / name for top, dirs, files in os.walk(root) for name in dirs + files}


async def test_program_names_never_become_paths_or_clashing_supervisord_names(
    nested_client: Any, nested_config: Config, short_tmp: Path
) -> None:
    """Programs named like paths (`../../x`, `/etc/passwd`, `.`, `..`, `a/b`), like options
    (`-rf`), in other scripts, or like the names hoodyd gives groups itself, all start under
    supervisord with their own group; their logs go to `logs/program-<id>/` and nothing is
    created outside the state dir."""
    names = [
        "../../x", "/etc/passwd", ".", "..", "a/b", "-rf", "café", "名前", "sp ace",
        "hoodyd-events", "hoodyd-program-1", "quick_1", "web_9300", "web",
    ]
    state = nested_config.state_path
    outside_before = everything_below(short_tmp) - everything_below(state) - {state}
    programs = []
    for name in names:
        fields: dict[str, Any] = {"name": name, "command": TALKER}
        if name == "web":
            fields["port_range"] = {"start": 9300, "end": 9300}
        programs.append(await add_program(nested_client, **fields))
    for program in programs:
        body = {"wait": True, "timeout": 20}
        if program["name"] == "web":
            body["port"] = 9300
        status, answer = await post(nested_client, f"/programs/{program['id']}/start", body)
        assert status == 200, (program["name"], answer)
    service = nested_client.app[PROGRAMS]
    infos = await service.client.processes()
    assert infos["hoodyd-events"].group == "hoodyd-events"  # the listener, untouched
    assert infos["hoodyd-events"].statename == "RUNNING"
    statuses = await service.statuses_of(
        [service.get(p["id"]) for p in programs], with_stats=False
    )
    running = [
        s.instances[0].status if isinstance(s, PortRangeStatus) else s.status for s in statuses
    ]
    assert running == ["RUNNING"] * len(names)
    owned = [name for name in infos if name != "hoodyd-events"]
    assert len(owned) == len(set(owned)) == len(names)
    for program in programs:
        query = "?port=9300" if program["name"] == "web" else ""
        status, logs = await get(nested_client, f"/programs/{program['id']}/logs{query}")
        assert status == 200, logs
        assert logs["logs"] == "hello\n"
        folder = state / "logs" / f"program-{program['id']}"
        assert Path(logs["log_file"]).parent == folder
    outside_after = everything_below(short_tmp) - everything_below(state) - {state}
    assert outside_after == outside_before


async def test_program_ids_are_bounded_and_allocation_never_passes_the_bound(
    client: Any,
) -> None:
    """An explicit id outside 1..2**31-1 is a 400 INVALID_ID that adds nothing; an id at the
    bound is accepted, and later adds take the lowest free id instead of overflowing."""
    for bad in [0, -1, MAX_ID + 1, 2**63 - 1, 2**64, 10**30]:
        status, body = await post(client, "/programs/add", sleeper(id=bad))
        assert status == 400, (bad, body)
        assert body["reason"] == "INVALID_ID"
        assert str(MAX_ID) in body["error"]
    assert (await get(client, "/programs"))[1]["programs"] == []
    top = await add_program(client, id=MAX_ID)
    assert top["id"] == MAX_ID
    assert [(await add_program(client))["id"] for _ in range(3)] == [1, 2, 3]
    await post(client, "/programs/remove/2")
    assert (await add_program(client))["id"] == 2


@pytest.mark.parametrize(
    "path",
    [
        "/programs/{id}",
        "/status/{id}",
        "/programs/{id}/logs",
    ],
)
@pytest.mark.parametrize("value", [str(MAX_ID + 1), str(2**63), str(2**64 + 1), "9" * 40])
async def test_ids_beyond_the_bound_in_a_path_are_not_found(
    client: Any, path: str, value: str
) -> None:
    """GET with an id no program can have answers a JSON 404, never a 500."""
    status, body = await get(client, path.format(id=value))
    assert status == 404, body
    assert body["success"] is False


@pytest.mark.parametrize(
    "path",
    [
        "/programs/edit/{id}",
        "/programs/remove/{id}",
        "/programs/{id}/enable",
        "/programs/{id}/disable",
        "/programs/{id}/start",
        "/programs/{id}/stop",
    ],
)
async def test_mutations_of_ids_beyond_the_bound_are_not_found(client: Any, path: str) -> None:
    """POST with an id no program can have answers a JSON 404 (400 if absurdly long)."""
    status, body = await post(client, path.format(id=2**63), {})
    assert status == 404, body
    status, body = await post(client, path.format(id="9" * 5000), {})
    assert status == 400, body
    assert body["success"] is False


async def test_a_store_holding_an_id_past_the_bound_still_accepts_adds(
    program_config: Config,
) -> None:
    """A store written before ids were bounded (holding 2**63-1) no longer makes every add fail:
    the next add takes the lowest free id."""
    from hoodyd.app import create_app

    store = ProgramStore(program_config.state_path / "hoodyd.db")
    legacy = Program(id=2**63 - 1, name="legacy", command="/bin/sleep 300", user=sleeper()["user"],
                     enabled=False)
    await store.save_program(legacy)
    store.close()
    app = create_app(program_config, areas=("daemon",))
    async with TestClient(TestServer(app)) as client:
        program = await add_program(client)
        assert program["id"] == 1
        status, body = await get(client, f"/programs/{2**63 - 1}")
        assert status == 200
        assert body["program"]["name"] == "legacy"


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def usual_umask() -> Iterator[None]:
    """The common 022 umask, so that only explicit modes can make files private."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


async def test_files_hoodyd_and_supervisord_write_are_closed_to_others(
    usual_umask: None, client: Any, program_config: Config
) -> None:
    """Conf files, the store (with its -wal and -shm), supervisord's files and the programs'
    logs are 0600, their directories 0700; the programs themselves keep the usual 022 umask."""
    program = await add_program(
        client, command=TALKER, stdout_logfile=str(program_config.log_path / "x/y/out.log")
    )
    status, body = await post(client, f"/programs/{program['id']}/start", {"wait": True})
    assert status == 200, body
    pid = body["status"]["pid"]
    status, logs = await get(client, f"/programs/{program['id']}/logs")
    assert logs["logs"] == "hello\n"
    state = program_config.state_path
    supervisor = state / "supervisor"
    logs_dir = program_config.log_path
    private_dirs = [
        supervisor, supervisor / "conf.d", logs_dir, logs_dir / f"program-{program['id']}",
        logs_dir / "x", logs_dir / "x" / "y",
    ]
    private_files = [
        *sorted((supervisor / "conf.d").glob("*.conf")),
        supervisor / "supervisord.conf", supervisor / "supervisord.log",
        supervisor / "start.log",
        state / "hoodyd.db", state / "hoodyd.db-wal", state / "hoodyd.db-shm",
        logs_dir / "x" / "y" / "out.log",
        logs_dir / f"program-{program['id']}" / "stderr.log",
    ]
    assert {str(d): oct(mode(d)) for d in private_dirs} == {str(d): "0o700" for d in private_dirs}
    assert {str(f): oct(mode(f)) for f in private_files} == {
        str(f): "0o600" for f in private_files
    }
    umask = next(
        line.split()[1] for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith("Umask:")
    )
    assert umask == "0022"
