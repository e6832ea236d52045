"""Status follows what the processes do: a killed process is never shown running with its dead
pid, and every pid an answer names is a live child of supervisord."""

from __future__ import annotations

import os
import signal
from typing import Any

from hoodyd.polling import poll_until
from tests.conftest import add_program as add
from tests.ports import free_port_range
from tests.truth import check_status, check_statuses, is_live, is_supervised

API = "/api/v1/daemon"
SPAN_COMMAND = "/bin/sh -c 'exec /bin/sleep 300' sh"


async def post(client: Any, path: str, body: Any = None) -> dict[str, Any]:
    response = await client.post(API + path, json=body)
    answer: dict[str, Any] = await response.json()
    assert response.status == 200, answer
    return answer


async def status(client: Any, program_id: int, query: str = "") -> dict[str, Any]:
    response = await client.get(f"{API}/status/{program_id}{query}")
    body: dict[str, Any] = await response.json()
    assert response.status == 200, body
    check_statuses(body)
    return body["status"]  # type: ignore[no-any-return]


async def test_a_killed_process_is_never_reported_running_with_its_dead_pid(client: Any) -> None:
    """Right after `kill -9`, the very next status does not show the dead pid as RUNNING;
    the respawned process is shown with its own live pid."""
    program = await add(client, autorestart="true")
    started = await post(client, f"/programs/{program['id']}/start", {"wait": True})
    old = started["status"]["pid"]
    assert is_supervised(old)
    os.kill(old, signal.SIGKILL)
    await poll_until(lambda: _gone(old), timeout=5, interval=0.005)
    after = await status(client, program["id"])
    assert after["pid"] != old, after
    assert after["status"] != "RUNNING" or after["pid"] is not None

    async def respawned() -> dict[str, Any] | None:
        now = await status(client, program["id"])
        return now if now["status"] == "RUNNING" else None

    running = await poll_until(respawned, timeout=10, interval=0.05)
    assert running is not None and running["pid"] not in (None, old)


async def _gone(pid: int) -> bool | None:
    return True if not is_live(pid) else None


async def test_every_pid_shown_during_a_restart_is_alive(client: Any) -> None:
    """While a program is killed and respawned by supervisord, every status read in a tight
    loop names only live processes of supervisord, and STARTING carries the new pid once
    supervisord has forked it."""
    program = await add(client, autorestart="true")
    first = (await post(client, f"/programs/{program['id']}/start", {"wait": True}))["status"]
    os.kill(first["pid"], signal.SIGKILL)
    seen: set[str] = set()
    starting_pids: list[int | None] = []

    async def restarted() -> bool | None:
        now = await status(client, program["id"])  # check_statuses asserts every pid lives
        seen.add(now["status"])
        if now["status"] == "STARTING":
            starting_pids.append(now["pid"])
        return True if now["status"] == "RUNNING" and now["pid"] != first["pid"] else None

    await poll_until(restarted, timeout=6, interval=0.01)
    assert "RUNNING" in seen
    assert starting_pids and starting_pids[-1] is not None, starting_pids


async def test_port_instances_count_only_live_processes(client: Any) -> None:
    """A killed port instance is not counted in `running_instances` by the next status."""
    base = free_port_range(3)
    program = await add(
        client,
        command=SPAN_COMMAND,
        port_range={"start": base, "end": base + 2},
        autorestart="false",
    )
    pids = []
    for port in (base, base + 1, base + 2):
        answer = await post(
            client, f"/programs/{program['id']}/start", {"port": port, "wait": True}
        )
        pids.append(answer["instance"]["pid"])
    whole = await status(client, program["id"])
    assert whole["running_instances"] == 3
    os.kill(pids[1], signal.SIGKILL)
    await poll_until(lambda: _gone(pids[1]), timeout=5, interval=0.005)
    whole = await status(client, program["id"])
    assert whole["running_instances"] == 2, whole
    one = await status(client, program["id"], f"?port={base + 1}")
    check_status(one)
    assert one["status"] in ("EXITED", "BACKOFF", "FATAL") and one["pid"] is None, one


async def test_a_crashing_quick_start_reads_back_as_backoff_with_its_failures(
    client: Any,
) -> None:
    """A quick-start that keeps exiting early is `backoff` (not `starting`) with the count of
    failed attempts and why it last ended (no made-up exit status 0), and every field its
    launch answered reads back."""
    import pwd

    user = pwd.getpwuid(os.geteuid()).pw_name
    launched = await post(
        client, "/quick-start", {"command": "/bin/sh -c 'sleep 0.2; exit 3'", "user": user}
    )
    temporary_id = launched["temporary_id"]

    async def backing_off() -> dict[str, Any] | None:
        response = await client.get(f"{API}/quick-start/{temporary_id}/status")
        body: dict[str, Any] = await response.json()
        assert response.status == 200, body
        assert body["status"] != "starting" or body.get("attempts") is None, body
        return body if body["status"] == "backoff" else None

    body = await poll_until(backing_off, timeout=10, interval=0.02)
    assert body is not None
    assert body["attempts"] >= 1 and "exitstatus" not in body, body  # none for an early exit
    assert body["spawnerr"].startswith("Exited too quickly"), body
    assert body["pid"] is None and body["uptime"] is None
    for field in ("temporary_id", "name", "display", "created_at", "expires_at"):
        assert body[field] == launched[field], field


async def test_a_killed_quick_start_is_never_reported_with_its_dead_pid(client: Any) -> None:
    """Right after `kill -9` of a quick-start's process, its status and the list of
    quick-starts name no dead pid: supervisord may not have reaped it yet, /proc has."""
    import pwd

    user = pwd.getpwuid(os.geteuid()).pw_name
    launched = await post(client, "/quick-start", {"command": SPAN_COMMAND, "user": user})
    temporary_id = launched["temporary_id"]

    async def running() -> dict[str, Any] | None:
        body: dict[str, Any] = await (
            await client.get(f"{API}/quick-start/{temporary_id}/status")
        ).json()
        return body if body["status"] == "running" and body.get("pid") else None

    before = await poll_until(running, timeout=10, interval=0.02)
    assert before is not None and is_supervised(before["pid"]), before
    os.kill(before["pid"], signal.SIGKILL)
    await poll_until(lambda: _gone(before["pid"]), timeout=5, interval=0.005)
    after: dict[str, Any] = await (
        await client.get(f"{API}/quick-start/{temporary_id}/status")
    ).json()
    assert after.get("pid") != before["pid"] and after["status"] != "running", after
    listed: dict[str, Any] = await (await client.get(f"{API}/quick-start")).json()
    for item in listed["ephemeral_programs"]:  # an ended quick-start may be gone already
        assert item.get("pid") != before["pid"] and item["status"] != "running", item
