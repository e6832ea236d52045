"""Registering port instances on demand through the embedded supervisord's plugin: one group
added from its one file, without `reloadConfig`, and left alone by later reloads."""

from __future__ import annotations

from typing import Any

from structlog.testing import capture_logs

from tests.conftest import PORT_SERVER, add_program
from tests.test_programs_faults import free_port_range

API = "/api/v1/daemon"


async def test_an_instance_is_added_from_its_file_and_survives_a_later_reload(
    client: Any,
) -> None:
    """Starting a port instance adds its group without a reload; a later program's reload
    sees the instance's group unchanged, so it keeps running with the same pid."""
    base = free_port_range(3)
    program = await add_program(
        client, command=PORT_SERVER, port_range={"start": base, "end": base + 2}
    )
    with capture_logs() as logs:
        response = await client.post(
            f"{API}/programs/{program['id']}/start",
            json={"port": base, "wait": True, "wait_for": "port"},
        )
        started = await response.json()
    assert response.status == 200, started
    events = [entry["event"] for entry in logs]
    assert "supervisor_group_added" in events
    assert "supervisor_groups_applied" not in events  # no reloadConfig on the way
    pid = started["instance"]["pid"]
    with capture_logs() as logs:
        await add_program(client, enabled=True)  # its registration reloads every file
    assert "supervisor_groups_applied" in [entry["event"] for entry in logs]
    status = await (await client.get(f"{API}/status/{program['id']}?port={base}")).json()
    assert status["status"]["status"] in ("STARTING", "RUNNING")
    assert status["status"]["pid"] == pid  # the same process: not stopped and re-added
