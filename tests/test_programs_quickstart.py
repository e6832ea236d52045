"""Quick-start ephemeral programs: launch, list, status, logs, stop, TTL and exit clean-up."""

from __future__ import annotations

import re
from typing import Any

import psutil

from hoodyd.config import Config
from hoodyd.polling import poll_until
from tests.conftest import sleeper

API = "/api/v1/daemon/quick-start"


async def launch(client: Any, **fields: Any) -> dict[str, Any]:
    body = sleeper(**fields)
    body.pop("name")
    response = await client.post(API, json=body)
    answer = await response.json()
    assert response.status == 200, answer
    return answer


async def gone(client: Any, temporary_id: str, timeout: float = 10) -> bool:
    async def not_found() -> bool | None:
        return True if (await client.get(f"{API}/{temporary_id}/status")).status == 404 else None

    return bool(await poll_until(not_found, timeout=timeout))


async def test_launch_with_wait_runs_and_is_listed_but_not_a_program(client: Any) -> None:
    """A quick-start answers running with a pid, appears in the list, not among programs."""
    answer = await launch(client, wait=True, display="2")
    assert re.fullmatch(r"quick_\d+", answer["temporary_id"])
    assert answer["success"] is True
    assert answer["status"] == "running"
    assert answer["display"] == ":2"
    assert psutil.Process(answer["pid"]).environ()["DISPLAY"] == ":2"
    assert answer["expires_at"] is None
    assert answer["created_at"].endswith("Z")
    listed = await (await client.get(API)).json()
    assert listed["success"] is True
    assert listed["count"] == 1
    item = listed["ephemeral_programs"][0]
    assert item["temporary_id"] == answer["temporary_id"]
    assert item["status"] == "running"
    assert item["command"] == "/bin/sleep 300"
    programs = await (await client.get("/api/v1/daemon/programs")).json()
    assert programs == {"programs": []}


async def test_stop_cleans_up_and_later_calls_are_404(
    client: Any, program_config: Config
) -> None:
    """Stop answers cleaned_up; afterwards status and logs are 404, and the config and the
    log folder are gone."""
    answer = await launch(client, wait=True)
    temporary_id = answer["temporary_id"]
    response = await client.post(f"{API}/{temporary_id}/stop")
    body = await response.json()
    assert response.status == 200
    assert body["cleaned_up"] is True
    assert body["temporary_id"] == temporary_id
    assert (await client.get(f"{API}/{temporary_id}/status")).status == 404
    assert (await client.get(f"{API}/{temporary_id}/logs")).status == 404
    assert (await client.post(f"{API}/{temporary_id}/stop")).status == 404
    conf_dir = program_config.state_path / "supervisor" / "conf.d"
    assert list(conf_dir.glob("hoodyd-quick-*")) == []
    assert not (program_config.log_path / temporary_id).exists()
    assert not psutil.pid_exists(answer["pid"]) or (
        psutil.Process(answer["pid"]).status() == psutil.STATUS_ZOMBIE
    )


async def test_ttl_expiry_stops_and_removes_the_program(client: Any) -> None:
    """With ttl the program is stopped and dropped once its time is up."""
    answer = await launch(client, wait=True, ttl=2)
    assert answer["expires_at"] is not None
    assert await gone(client, answer["temporary_id"])


async def test_a_program_that_exits_is_cleaned_up(client: Any) -> None:
    """An ephemeral program that exits by itself is removed."""
    answer = await launch(client, command="/bin/sh -c 'echo done; sleep 1.5'", wait=True)
    assert await gone(client, answer["temporary_id"])


async def test_logs_of_a_running_quick_start(client: Any) -> None:
    """Logs of an ephemeral program come back like a program's."""
    answer = await launch(client, command="/bin/sh -c 'echo hello-quick; exec sleep 300'",
                          wait=True)

    async def logged() -> dict[str, Any] | None:
        body = await (await client.get(f"{API}/{answer['temporary_id']}/logs?lines=5")).json()
        return body if "hello-quick" in body["logs"] else None

    body = await poll_until(logged, timeout=5)
    assert body is not None
    assert body["success"] is True


async def test_bad_quick_start_input_is_refused(client: Any) -> None:
    """Missing command/user, unknown fields and bad ids are 400s; unknown ids are 404s."""
    for body in [
        {"user": "root"},
        {"command": "/bin/true"},
        {**sleeper(), "port_range": {"start": 1, "end": 2}},
        {**sleeper(), "ttl": 0},
        {**sleeper(), "ttl": 86401},
    ]:
        response = await client.post(API, json=body)
        assert response.status == 400, body
        assert (await response.json())["success"] is False
    assert (await client.get(f"{API}/nope/status")).status == 400
    assert (await client.get(f"{API}/quick_123/status")).status == 404
    listed = await (await client.get(API)).json()
    assert listed["count"] == 0


async def test_a_quick_start_that_fails_answers_its_failure(client: Any) -> None:
    """A command that dies at once with wait answers 502 with its stderr."""
    response = await client.post(
        API, json={**sleeper(command="/bin/sh -c 'echo qs-broken >&2; exit 2'"), "wait": True}
    )
    body = await response.json()
    assert response.status == 502
    assert "qs-broken" in body["stderr_tail"]
