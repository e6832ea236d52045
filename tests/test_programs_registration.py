"""Registering port instances on demand through the embedded supervisord's plugin: one group
added from its one file, without `reloadConfig`, and left alone by later reloads."""

from __future__ import annotations

from typing import Any

from structlog.testing import capture_logs

from hoodyd.programs.supervisor_client import SupervisorClient
from tests.conftest import PORT_SERVER, add_program
from tests.ports import free_port_range

API = "/api/v1/daemon"


async def test_an_instance_is_added_from_its_file_and_survives_a_later_reload(
    client: Any, program_config: Any
) -> None:
    """Starting a port instance adds its group without a reload; a later program is added
    without a reload too, and a full reload sees the instance's group unchanged, so it keeps
    running with the same pid."""
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
        await add_program(client, enabled=True)  # one group added from its file
    assert "supervisor_group_added" in [entry["event"] for entry in logs]
    supervisor = SupervisorClient(str(program_config.state_path / "supervisor" / "supervisor.sock"))
    try:
        added, changed, removed = await supervisor.reload_config()  # every file read again
    finally:
        await supervisor.close()
    assert (added, changed, removed) == ([], [], [])
    status = await (await client.get(f"{API}/status/{program['id']}?port={base}")).json()
    assert status["status"]["status"] in ("STARTING", "RUNNING")
    assert status["status"]["pid"] == pid  # the same process: not stopped and re-added


async def test_the_plugin_reads_only_conf_files_of_the_include_dir(
    client: Any, program_config: Any
) -> None:
    """`hoodyd.addGroupFromFile` refuses any path but a `.conf` file directly in the include
    dir (a symlink out of it or `..` included), and adds nothing."""
    import pytest

    from hoodyd.api.keys import PROGRAMS
    from hoodyd.errors import SupervisorFault
    from hoodyd.programs.supervisor_client import Fault

    supervisor = client.server.app[PROGRAMS].client
    include_dir = program_config.state_path / "supervisor" / "conf.d"
    outside = program_config.state_path / "evil.conf"
    outside.write_text("[program:evil]\ncommand=/bin/sleep 300\n")
    link = include_dir / "link.conf"
    link.symlink_to(outside)
    before = set(await supervisor.processes())
    for path in (outside, link, include_dir / ".." / "evil.conf", "/etc/passwd"):
        with pytest.raises(SupervisorFault) as refused:
            await supervisor.add_group_from_file(str(path))
        assert refused.value.code == Fault.BAD_ARGUMENTS, path
    link.unlink()
    assert set(await supervisor.processes()) == before
