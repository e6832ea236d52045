"""Scale to zero: `idle_stop_after` stops a port instance nobody started or touched (an
`if_not_running` start) for that many seconds, and applies to port-range programs only."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from hoodyd.polling import poll_until
from tests.conftest import PORT_SERVER, add_program
from tests.ports import free_port_range

API = "/api/v1/daemon"
# A proxy touches the instance every TOUCH_EVERY seconds for KEEP_ALIVE_WINDOW seconds (twice
# its idle_stop_after of 2) and it must never be found stopped: an instance that stays running
# sends no event, so that absence can only be observed over a fixed window.
KEEP_ALIVE_WINDOW = 4
TOUCH_EVERY = 0.5


async def instance_state(client: Any, program_id: int, port: int) -> str:
    response = await client.get(f"{API}/status/{program_id}", params={"port": str(port)})
    body = await response.json()
    state: str = body["status"]["status"]
    return state


async def wait_state(client: Any, program_id: int, port: int, wanted: str, timeout: float) -> None:
    """Wait until the instance reports `wanted` (`timeout` guards a hang)."""

    async def reached() -> bool | None:
        return True if await instance_state(client, program_id, port) == wanted else None

    assert await poll_until(reached, timeout=timeout), f"not {wanted} within {timeout}s"


async def test_an_idle_instance_is_stopped_and_starts_again_on_demand(client: Any) -> None:
    """Started and then left alone, an instance stops after about idle_stop_after seconds;
    the next start brings it back."""
    port = free_port_range(2)
    program = await add_program(
        client, command=PORT_SERVER, port_range={"start": port, "end": port + 1}, idle_stop_after=2
    )
    assert program["idle_stop_after"] == 2
    start = f"{API}/programs/{program['id']}/start"
    asked = time.monotonic()  # the idle clock starts at the request or later
    response = await client.post(start, json={"port": port, "wait": True})
    assert response.status == 200, await response.json()
    await wait_state(client, program["id"], port, "STOPPED", timeout=20)
    # a lower bound only, which no slowness can break: the instance did not stop before
    # idle_stop_after had passed since it was asked for
    assert time.monotonic() - asked >= 2
    response = await client.post(start, json={"port": port, "wait": True, "if_not_running": True})
    body = await response.json()
    assert body["already_running"] is False and body["instance"]["status"] == "RUNNING"


async def test_touching_with_if_not_running_keeps_an_instance_alive(client: Any) -> None:
    """A proxy that keeps asking for the instance keeps it running past idle_stop_after; once
    it stops asking, the instance stops."""
    port = free_port_range(1)
    program = await add_program(
        client, command=PORT_SERVER, port_range={"start": port, "end": port}, idle_stop_after=2
    )
    start = f"{API}/programs/{program['id']}/start"
    touch = {"port": port, "if_not_running": True, "wait": True}
    await client.post(start, json=touch)
    until = time.monotonic() + KEEP_ALIVE_WINDOW
    while time.monotonic() < until:
        response = await client.post(start, json=touch)
        assert (await response.json())["already_running"] is True
        await asyncio.sleep(TOUCH_EVERY)
    assert await instance_state(client, program["id"], port) == "RUNNING"
    await wait_state(client, program["id"], port, "STOPPED", timeout=8)


async def test_other_instances_and_programs_without_it_keep_running(client: Any) -> None:
    """Only the idle instance stops: one of a program without idle_stop_after runs on."""
    idle_port = free_port_range(2)
    steady_port = idle_port + 1
    idle = await add_program(
        client,
        command=PORT_SERVER,
        port_range={"start": idle_port, "end": idle_port},
        idle_stop_after=1,
    )
    steady = await add_program(
        client, command=PORT_SERVER, port_range={"start": steady_port, "end": steady_port}
    )
    for program, port in ((idle, idle_port), (steady, steady_port)):
        await client.post(
            f"{API}/programs/{program['id']}/start", json={"port": port, "wait": True}
        )
    await wait_state(client, idle["id"], idle_port, "STOPPED", timeout=6)
    assert await instance_state(client, steady["id"], steady_port) == "RUNNING"


async def test_idle_stop_after_needs_a_port_range_and_a_sane_value(client: Any) -> None:
    """Without port_range it is a 400 IDLE_STOP_WITHOUT_RANGE; 0 or a negative is a 400; an
    edit can set and clear it."""
    response = await client.post(
        f"{API}/programs/add",
        json={"name": "plain", "command": "/bin/sleep 1", "user": "root", "idle_stop_after": 5},
    )
    assert response.status == 400
    assert (await response.json())["reason"] == "IDLE_STOP_WITHOUT_RANGE"
    program = await add_program(client, port_range={"start": 9461, "end": 9462})
    for bad in (0, -1, "5"):
        response = await client.post(
            f"{API}/programs/edit/{program['id']}", json={"idle_stop_after": bad}
        )
        assert response.status == 400, bad
    edit = f"{API}/programs/edit/{program['id']}"
    response = await client.post(edit, json={"idle_stop_after": 30})
    assert (await response.json())["program"]["idle_stop_after"] == 30
    response = await client.post(edit, json={"idle_stop_after": None})
    assert "idle_stop_after" not in (await response.json())["program"]
