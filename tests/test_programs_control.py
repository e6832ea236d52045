"""Enable, disable, start, stop, status and logs against a real supervisord."""

from __future__ import annotations

import asyncio
from typing import Any

import psutil

from hoodyd.config import Config
from hoodyd.polling import poll_until
from tests.conftest import PORT_SERVER
from tests.conftest import add_program as add
from tests.ports import free_port_range

API = "/api/v1/daemon"


async def post(client: Any, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
    response = await client.post(API + path, json=body)
    return response.status, await response.json()


async def status_of(client: Any, program_id: int, query: str = "") -> dict[str, Any]:
    response = await client.get(f"{API}/status/{program_id}{query}")
    assert response.status == 200, await response.text()
    return await response.json()


async def test_enable_registers_without_starting_and_disable_unregisters(
    client: Any, program_config: Config
) -> None:
    """Enable registers the group (STOPPED, not started); disable stops and removes it."""
    program = await add(client, enabled=False)
    assert (await status_of(client, program["id"]))["status"]["status"] == "STOPPED"
    status, body = await post(client, f"/programs/{program['id']}/enable")
    assert status == 200
    assert body["program"]["enabled"] is True
    conf_dir = program_config.state_path / "supervisor" / "conf.d"
    assert (conf_dir / f"hoodyd-program-{program['id']}.conf").exists()
    assert (await status_of(client, program["id"]))["status"]["pid"] is None
    status, body = await post(client, f"/programs/{program['id']}/start", {"wait": True})
    assert status == 200, body
    pid = body["status"]["pid"]
    assert psutil.pid_exists(pid)
    status, body = await post(client, f"/programs/{program['id']}/disable")
    assert status == 200
    assert body["program"]["enabled"] is False
    assert not (conf_dir / f"hoodyd-program-{program['id']}.conf").exists()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


async def test_starting_a_disabled_program_is_a_409(client: Any) -> None:
    """The program must be enabled: `Program with ID {id} is disabled`, reason PROGRAM_DISABLED."""
    program = await add(client, enabled=False)
    status, body = await post(client, f"/programs/{program['id']}/start")
    assert status == 409
    assert body == {
        "success": False,
        "error": f"Program with ID {program['id']} is disabled",
        "reason": "PROGRAM_DISABLED",
    }


async def test_start_with_wait_reaches_running_and_if_not_running_is_idempotent(
    client: Any,
) -> None:
    """wait → RUNNING with a pid; if_not_running → already_running with the same pid; a plain
    second start is a 409 ALREADY_RUNNING. A standard program's answer has no `instance`."""
    program = await add(client)
    status, body = await post(client, f"/programs/{program['id']}/start", {"wait": True})
    assert status == 200, body
    assert body["success"] is True
    assert body["already_running"] is False
    assert "instance" not in body
    assert body["status"]["status"] == "RUNNING"
    pid = body["status"]["pid"]
    status, again = await post(client, f"/programs/{program['id']}/start", {"if_not_running": True})
    assert status == 200
    assert again["already_running"] is True
    assert again["status"]["pid"] == pid
    status, conflict = await post(client, f"/programs/{program['id']}/start")
    assert status == 409
    assert conflict["reason"] == "ALREADY_RUNNING"
    current = await status_of(client, program["id"])
    assert current["status"]["status"] == "RUNNING"
    assert current["status"]["pid"] == pid
    assert current["status"]["uptime"].count(":") == 2


async def test_port_range_start_needs_a_port_inside_the_range(client: Any) -> None:
    """No port → `Port parameter required`; a port outside the range → 400."""
    program = await add(client, port_range={"start": 9300, "end": 9309})
    status, body = await post(client, f"/programs/{program['id']}/start", {})
    assert status == 400
    assert body["error"] == "Port parameter required"
    status, body = await post(client, f"/programs/{program['id']}/start", {"port": 9310})
    assert status == 400
    assert body["reason"] == "PORT_OUT_OF_RANGE"
    status, body = await post(client, f"/programs/{program['id']}/start", {"port": 0})
    assert status == 400
    status, body = await post(client, f"/programs/{program['id']}/start", {"timeout": 301})
    assert status == 400
    plain = await add(client)
    status, body = await post(client, f"/programs/{plain['id']}/start", {"port": 9300})
    assert status == 400
    assert body["reason"] == "PORT_NOT_ACCEPTED"


async def test_lazy_port_range_spawns_nothing_until_a_port_is_started(client: Any) -> None:
    """Enabling a lazy port-range program registers no instance; a start names `<name>_<port>`
    and passes the port with port_param."""
    base = free_port_range(3)
    program = await add(
        client,
        name="lazy",
        lazy_load=True,
        command=PORT_SERVER,
        port_range={"start": base, "end": base + 2},
    )
    before = await status_of(client, program["id"])
    assert before["status"]["type"] == "port-range"
    assert before["status"]["instances"] == []
    assert before["status"]["total_instances"] == 3
    status, body = await post(
        client, f"/programs/{program['id']}/start", {"port": base + 1, "wait": True}
    )
    assert status == 200, body
    instance = body["instance"]
    assert instance["instance_name"] == f"lazy_{base + 1}"
    assert instance["port"] == base + 1
    assert instance["status"] == "RUNNING"
    cmdline = psutil.Process(instance["pid"]).cmdline()
    assert cmdline[-2:] == ["--port", str(base + 1)]
    after = await status_of(client, program["id"])
    assert after["status"]["running_instances"] == 1
    assert [i["port"] for i in after["status"]["instances"]] == [base + 1]
    one = await status_of(client, program["id"], f"?port={base + 1}")
    assert one["status"]["instance_name"] == f"lazy_{base + 1}"


async def test_concurrent_idempotent_starts_join_one_spawn(client: Any) -> None:
    """50 simultaneous if_not_running starts of a cold instance: one process, 50 equal answers."""
    base = free_port_range(1)
    program = await add(
        client, name="crowd", command=PORT_SERVER, port_range={"start": base, "end": base}
    )
    request = {"port": base, "if_not_running": True, "wait": True}
    answers = await asyncio.gather(
        *(post(client, f"/programs/{program['id']}/start", request) for _ in range(50))
    )
    assert {status for status, _ in answers} == {200}
    pids = {body["instance"]["pid"] for _, body in answers}
    assert len(pids) == 1
    assert {body["already_running"] for _, body in answers} == {False}
    spawned = [
        p for p in psutil.process_iter(["cmdline"])
        if p.info["cmdline"] and "portserver.py" in " ".join(p.info["cmdline"])
        and str(base) in p.info["cmdline"]
    ]
    assert len(spawned) == 1


async def test_a_failing_start_answers_the_failure_state_and_stderr(client: Any) -> None:
    """A program that dies at once answers 502 START_FAILED with its state and stderr tail."""
    program = await add(client, command="/bin/sh -c 'echo kaboom-detail >&2; exit 3'")
    status, body = await post(
        client, f"/programs/{program['id']}/start", {"wait": True, "timeout": 20}
    )
    assert status == 502, body
    assert body["success"] is False
    assert body["reason"] == "START_FAILED"
    assert body["state"] in {"BACKOFF", "FATAL", "EXITED"}
    assert "kaboom-detail" in body["stderr_tail"]


async def test_a_missing_executable_fails_clearly(client: Any) -> None:
    """A command whose executable does not exist answers 502 naming the problem."""
    program = await add(client, command="/nonexistent/binary --flag")
    status, body = await post(client, f"/programs/{program['id']}/start", {"wait": True})
    assert status == 502
    assert body["success"] is False
    assert "nonexistent" in body["error"] or body["reason"] in {"NO_FILE", "START_FAILED"}


async def test_a_wait_that_times_out_answers_504_with_the_last_state(client: Any) -> None:
    """delay_seconds keeps the program STARTING past the wait: 504 with that last state."""
    program = await add(client, delay_seconds=30)
    status, body = await post(
        client, f"/programs/{program['id']}/start", {"wait": True, "timeout": 1}
    )
    assert status == 504, body
    assert body["reason"] == "WAIT_TIMEOUT"
    assert body["instance"]["status"] == "STARTING"


async def test_wait_for_port_answers_once_the_instance_accepts_connections(client: Any) -> None:
    """With wait_for=port the answer comes when the port accepts, even before RUNNING."""
    base = free_port_range(1)
    program = await add(
        client,
        command=f"{PORT_SERVER} --bind-delay 0.3",
        port_range={"start": base, "end": base},
    )
    status, body = await post(
        client,
        f"/programs/{program['id']}/start",
        {"port": base, "wait": True, "wait_for": "port", "timeout": 20},
    )
    assert status == 200, body
    _reader, writer = await asyncio.open_connection("127.0.0.1", base)
    writer.close()
    await writer.wait_closed()
    assert body["instance"]["pid"] is not None or body["instance"]["status"] == "STARTING"
    status, body = await post(
        client, f"/programs/{program['id']}/start", {"wait": True, "wait_for": "port"}
    )
    assert status == 400


async def test_stop_single_port_all_and_standard(client: Any) -> None:
    """Stop takes `port` or `all` for port-range programs; stopping a stopped program succeeds."""
    base = free_port_range(2)
    program = await add(
        client, command=PORT_SERVER, port_range={"start": base, "end": base + 1}
    )
    for port in (base, base + 1):
        status, _ = await post(
            client, f"/programs/{program['id']}/start", {"port": port, "wait": True}
        )
        assert status == 200
    status, body = await post(client, f"/programs/{program['id']}/stop", {})
    assert status == 400
    assert body["reason"] == "PORT_REQUIRED"
    status, body = await post(client, f"/programs/{program['id']}/stop", {"port": base})
    assert status == 200
    assert body["success"] is True
    current = await status_of(client, program["id"])
    assert current["status"]["running_instances"] == 1
    status, body = await post(client, f"/programs/{program['id']}/stop", {"all": True})
    assert status == 200
    current = await status_of(client, program["id"])
    assert current["status"]["running_instances"] == 0
    plain = await add(client)
    status, body = await post(client, f"/programs/{plain['id']}/stop")
    assert status == 200
    assert body["success"] is True


async def test_status_lists_every_program_and_stats_come_from_psutil(client: Any) -> None:
    """GET /status lists {id, name, enabled, status}; include_stats adds psutil figures."""
    program = await add(client, name="measured")
    await add(client, name="idle", enabled=False)
    await post(client, f"/programs/{program['id']}/start", {"wait": True})
    body = await (await client.get(f"{API}/status")).json()
    assert body["success"] is True
    by_name = {s["name"]: s for s in body["statuses"]}
    assert by_name["measured"]["status"]["status"] == "RUNNING"
    assert by_name["idle"]["enabled"] is False
    assert by_name["idle"]["status"]["status"] == "STOPPED"
    stats = (await status_of(client, program["id"], "?include_stats=true"))["stats"]
    assert stats["pid"] == by_name["measured"]["status"]["pid"]
    assert stats["memory_rss_bytes"] > 0
    assert stats["process_count"] >= 1
    assert isinstance(stats["cpu_percent"], float)
    listed = await (await client.get(f"{API}/programs?include_stats=true")).json()
    measured = next(p for p in listed["programs"] if p["name"] == "measured")
    assert measured["status"]["stats"]["pid"] == stats["pid"]
    assert (await client.get(f"{API}/status/{program['id']}?include_stats=1")).status == 400


async def test_logs_return_the_last_lines_of_either_stream(client: Any) -> None:
    """Logs tail stdout or stderr by `lines`; bad `type`/`lines` are 400s."""
    program = await add(
        client,
        command="/bin/sh -c 'for i in 1 2 3 4 5; do echo out$i; echo err$i >&2; done; "
        "exec sleep 300'",
    )
    await post(client, f"/programs/{program['id']}/start", {"wait": True})
    body = await (await client.get(f"{API}/programs/{program['id']}/logs?lines=2")).json()
    assert body["success"] is True
    assert body["logs"].splitlines() == ["out4", "out5"]
    assert body["type"] == "stdout"
    assert body["lines"] == 2
    assert body["log_file"].endswith("stdout.log")
    body = await (
        await client.get(f"{API}/programs/{program['id']}/logs?type=stderr&lines=1")
    ).json()
    assert body["logs"] == "err5\n"
    for bad in ["type=both", "lines=0", "lines=10001", "lines=x"]:
        response = await client.get(f"{API}/programs/{program['id']}/logs?{bad}")
        assert response.status == 400, bad
    ranged = await add(client, port_range={"start": 9500, "end": 9501})
    response = await client.get(f"{API}/programs/{ranged['id']}/logs")
    assert response.status == 400
    assert (await response.json())["error"] == "Port parameter required"


async def test_editing_a_running_program_restarts_it_with_the_new_definition(
    client: Any,
) -> None:
    """An edit that changes the supervisord definition re-registers and restarts the program."""
    program = await add(client, environment={"GREETING": "one"})
    _, started = await post(client, f"/programs/{program['id']}/start", {"wait": True})
    old_pid = started["status"]["pid"]
    status, _ = await post(
        client, f"/programs/edit/{program['id']}", {"environment": {"GREETING": "two"}}
    )
    assert status == 200

    async def restarted() -> int | None:
        current = (await status_of(client, program["id"]))["status"]
        restarted = current["status"] == "RUNNING" and current["pid"] != old_pid
        return current["pid"] if restarted else None

    new_pid = await poll_until(restarted, timeout=10)
    assert new_pid is not None
    assert psutil.Process(new_pid).environ()["GREETING"] == "two"


async def test_remove_stops_a_running_program(client: Any) -> None:
    """Removing a running program stops its process."""
    program = await add(client)
    _, started = await post(client, f"/programs/{program['id']}/start", {"wait": True})
    pid = started["status"]["pid"]
    status, _ = await post(client, f"/programs/remove/{program['id']}")
    assert status == 200  # answered once supervisord has stopped the process
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE



async def test_a_crash_looping_program_is_removed_whatever_its_restart_state(client: Any) -> None:
    """Programs that exit at once and are restarted by autorestart are removed with 200 even
    when a restart comes between the stop and the removal; nothing of them is left."""
    crashing = []
    for index in range(6):
        program = await add(
            client, name=f"crash{index}", command="/bin/sh -c 'sleep 0.1; exit 3'",
            autorestart="unexpected",
        )  # fmt: skip
        await post(client, f"/programs/{program['id']}/start", {})
        crashing.append(program)

    async def all_crashed_once() -> bool:
        states = [(await status_of(client, p["id"]))["status"]["status"] for p in crashing]
        return all(state in ("STARTING", "BACKOFF", "EXITED") for state in states)

    assert await poll_until(all_crashed_once, timeout=30)
    for program in crashing:
        status, body = await post(client, f"/programs/remove/{program['id']}")
        assert status == 200, body
    for program in crashing:
        response = await client.get(f"{API}/programs/{program['id']}")
        assert response.status == 404
