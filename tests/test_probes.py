"""Readiness and liveness probes against real processes under a real supervisord: readiness
gates a waiting start, a hung (SIGSTOPped) http server is replaced by its liveness probe, an
exec probe runs as the program's user, and probes that cannot be run are refused."""

from __future__ import annotations

import json
import os
import pwd
import signal
import socket
from typing import Any

import pytest

from hoodyd.api.keys import PROGRAMS
from hoodyd.polling import poll_until
from hoodyd.programs.probes import HealthEvent
from tests.conftest import PORT_SERVER, add_program, sleeper
from tests.ports import free_port

BASE = "/api/v1/daemon"


async def status_of(client: Any, program_id: int, port: int | None = None) -> dict[str, Any]:
    query = f"?port={port}" if port is not None else ""
    response = await client.get(f"{BASE}/status/{program_id}{query}")
    body = await response.json()
    assert response.status == 200, body
    status: dict[str, Any] = body["status"]
    return status


async def test_readiness_decides_when_a_waiting_start_of_a_port_instance_answers(
    client: Any,
) -> None:
    """A start with `wait` of a port instance whose readiness probe is `{"port": "$PORT"}`
    answers once that port accepts, its health `ready`."""
    port = free_port()
    program = await add_program(
        client,
        command=f"{PORT_SERVER} --bind-delay 1.2",
        port_range={"start": port, "end": port},
        readiness={"port": "$PORT", "interval_ms": 5000, "timeout_ms": 200},
    )
    response = await client.post(
        f"{BASE}/programs/{program['id']}/start", json={"port": port, "wait": True, "timeout": 20}
    )
    body = await response.json()
    assert response.status == 200, body
    assert body["instance"]["health"] == "ready"
    with socket.create_connection(("127.0.0.1", port), 0.5):
        pass  # it accepts as the answer said
    status = await status_of(client, program["id"], port)
    assert status["health"] == "ready"
    assert status["last_probe"]["probe"] == "readiness"


async def test_a_sigstopped_http_server_is_replaced_by_its_liveness_probe(client: Any) -> None:
    """A hung http server (SIGSTOP: its port still accepts, nothing answers) fails its
    liveness probe `failure_threshold` times and is restarted: a new pid, `restarts` 1, an
    UNHEALTHY and a LIVENESS_RESTART event, and ready again."""
    port = free_port()
    program = await add_program(
        client,
        command=f"{PORT_SERVER} --port {port}",
        liveness={
            "http": f"http://127.0.0.1:{port}/",
            "interval_ms": 300,
            "timeout_ms": 250,
            "failure_threshold": 2,
            "initial_delay_ms": 500,
        },
    )
    events: list[HealthEvent] = []
    unlisten = client.server.app[PROGRAMS].probes.listen(events.append)
    try:
        response = await client.post(
            f"{BASE}/programs/{program['id']}/start", json={"wait": True, "timeout": 20}
        )
        assert response.status == 200, await response.json()

        async def probed_ok() -> bool | None:
            last = (await status_of(client, program["id"])).get("last_probe")
            return True if last and last["ok"] else None

        assert await poll_until(probed_ok, timeout=10, interval=0.1)
        first = await status_of(client, program["id"])
        assert first["health"] == "ready" and first["restarts"] == 0
        os.kill(first["pid"], signal.SIGSTOP)

        async def replaced() -> dict[str, Any] | None:
            now = await status_of(client, program["id"])
            fresh = now["status"] == "RUNNING" and now["pid"] not in (None, first["pid"])
            return now if fresh and now["restarts"] == 1 else None

        after = await poll_until(replaced, timeout=30, interval=0.2)
        assert after is not None, await status_of(client, program["id"])
        kinds = [e.event for e in events]
        assert kinds[: kinds.index("LIVENESS_RESTART") + 1][-2:] == [
            "UNHEALTHY",
            "LIVENESS_RESTART",
        ]
        with socket.create_connection(("127.0.0.1", port), 2):
            pass  # the new server answers
        response = await client.get(f"{BASE}/programs/{program['id']}")
        assert (await response.json())["program"]["restarts"] == 1
    finally:
        unlisten()


@pytest.mark.skipif(os.geteuid() != 0, reason="running a probe as another user needs root")
async def test_an_exec_probe_runs_as_the_programs_user(client: Any) -> None:
    """An exec readiness probe of a program running as `nobody` runs as nobody, with nobody's
    built environment: a probe that checks for nobody passes, one that checks for root never
    does."""
    nobody = pwd.getpwnam("nobody")
    check = f'[ "$(id -u)" = {nobody.pw_uid} ] && [ "$USER" = nobody ] && [ -z "$HOODYD_TOKEN" ]'
    as_nobody = await add_program(
        client,
        **{**sleeper(), "user": "nobody", "directory": "/tmp"},
        readiness={"exec": ["/bin/sh", "-c", check], "interval_ms": 1000, "timeout_ms": 1000},
    )
    response = await client.post(
        f"{BASE}/programs/{as_nobody['id']}/start", json={"wait": True, "timeout": 20}
    )
    body = await response.json()
    assert response.status == 200, body
    assert body["status"]["health"] == "ready"
    as_root = await add_program(
        client,
        **{**sleeper(), "user": "nobody", "directory": "/tmp"},
        readiness={"exec": ["/bin/sh", "-c", '[ "$(id -u)" = 0 ]'], "timeout_ms": 1000},
    )
    response = await client.post(
        f"{BASE}/programs/{as_root['id']}/start", json={"wait": True, "timeout": 2}
    )
    body = await response.json()
    assert response.status == 504, body
    status = await status_of(client, as_root["id"])
    assert status["health"] == "starting"
    assert status["last_probe"] == {
        "probe": "readiness", "ok": False, "at": status["last_probe"]["at"],
        "detail": "exit status 1",
    }


@pytest.mark.parametrize(
    ("probe", "why"),
    [
        ({"port": 80, "http": "http://127.0.0.1:80/"}, "exactly one"),
        ({}, "exactly one"),
        ({"http": "http://example.com:80/"}, "this box only"),
        ({"http": "https://127.0.0.1:443/"}, "http:// URL"),
        ({"port": "$PORT"}, "needs a port_range"),
        ({"exec": []}, "exec needs"),
        ({"port": 80, "interval_ms": 200, "timeout_ms": 500}, "timeout_ms"),
    ],
)
async def test_a_probe_that_cannot_be_run_is_refused(
    client: Any, probe: dict[str, Any], why: str
) -> None:
    """A probe with no check or two, a non-loopback or non-http URL, `$PORT` without a port
    range, an empty argv, or a timeout longer than its interval is a 400 INVALID_PROBE."""
    response = await client.post(f"{BASE}/programs/add", json=sleeper(liveness=probe))
    body = await response.json()
    assert response.status == 400, body
    assert body["reason"] == "INVALID_PROBE"
    assert why in body["error"]


async def test_liveness_events_reach_the_events_stream(client: Any) -> None:
    """`GET /events` carries UNHEALTHY and LIVENESS_RESTART events, with the probe's detail,
    for a process whose liveness probe fails."""
    closed = free_port()
    program = await add_program(
        client,
        liveness={"port": closed, "interval_ms": 300, "timeout_ms": 200, "failure_threshold": 1},
    )
    async with client.get(f"{BASE}/events") as stream:
        response = await client.post(f"{BASE}/programs/{program['id']}/start", json={})
        assert response.status == 200, await response.json()

        async def restart_event() -> dict[str, Any] | None:
            line = await stream.content.readline()
            if line.startswith(b"data: "):
                event: dict[str, Any] = json.loads(line[6:])
                if event["event"] == "LIVENESS_RESTART":
                    return event
            return None

        event = await poll_until(restart_event, timeout=15, interval=0)
    assert event is not None
    assert event["program"] == {"id": program["id"], "name": program["name"]}
    assert event["detail"]
