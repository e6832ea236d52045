"""Every curl example of the seed page, adapted to the Unix socket and to the test apps, answers
as the page says; and the curl lines that `print_curl` prints, executed as printed, work."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from tests.run_world import RUN, TERMINAL, TRICKY, RunWorld, run_world, wait_result

pytestmark = pytest.mark.skipif(
    shutil.which("curl") is None, reason="curl is not installed: these tests execute curl lines"
)


@pytest.fixture(scope="module")
def world() -> Iterator[RunWorld]:
    with run_world() as running:
        yield running


def shell(line: str) -> tuple[int, str]:
    """Run a command line with bash, as a user pasting it would; (HTTP status, body)."""
    done = subprocess.run(
        ["bash", "-c", line + " -w '\\n%{http_code}'"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    body, _, code = done.stdout.rpartition("\n")
    return int(code), body


def seed(world: RunWorld, command: str) -> tuple[int, Any]:
    """A seed example with its host swapped for the socket (the bearer header stays:
    the socket accepts and ignores it)."""
    line = command.replace(
        "curl ", f"curl -sS --unix-socket {shlex.quote(world.socket)} ", 1
    ).replace("https://api.hoody.com", "http://localhost")
    status, body = shell(line)
    return status, (json.loads(body) if body.startswith(("{", "[")) else body)


async def test_seed_examples_answer_as_documented(
    http: aiohttp.ClientSession, world: RunWorld
) -> None:
    """config, search, paged search, run GET/POST, go, t/2/go, preflight, batch and the two
    OpenAPI documents answer with the bodies the page describes."""
    auth = "-H 'Authorization: Bearer <token>'"
    status, config = seed(world, f"curl -X GET 'https://api.hoody.com/api/v1/run/config' {auth}")
    assert status == 200 and {"version", "sources", "profiles"} <= set(config)
    status, found = seed(
        world,
        "curl -X GET 'https://api.hoody.com/api/v1/run/search?app=hello-run&os=linux&kind=any"
        f"&limit=10' {auth}",
    )
    assert status == 200 and found["set_id"] and found["candidates"][0]["score"] > 0
    status, paged = seed(
        world,
        f"""curl -X POST 'https://api.hoody.com/api/v1/run/search/paged' {auth} \\
        -H 'Content-Type: application/json' \\
        -d '{{
        "selector": {{
        "app": "hello-run",
        "os": "linux",
        "kind": "any"
        }},
        "page_size": 25
        }}'""",
    )
    assert status == 200 and paged["total_count"] == len(paged["items"]) >= 2
    status, run = seed(
        world,
        "curl -X GET 'https://api.hoody.com/api/v1/run/run?app=hello-run&os=linux&kind=any"
        f"&pick=first&terminal_id=1' {auth}",
    )
    assert status == 200 and run["status"] == "scheduled" and run["shell_command"]
    assert (
        "hello-run says"
        in (await wait_result(http, run["terminal"]["json"]["command_id"]))["stdout"]
    )
    status, run = seed(
        world,
        f"""curl -X POST 'https://api.hoody.com/api/v1/run/run' {auth} \\
        -H 'Content-Type: application/json' \\
        -d '{{
        "app": "hello-run",
        "os": "linux",
        "kind": "any",
        "pick": "first",
        "terminal_id": 1
        }}'""",
    )
    assert status == 200 and run["status"] == "scheduled"
    await wait_result(http, run["terminal"]["json"]["command_id"])
    status, run = seed(
        world,
        "curl -X GET 'https://api.hoody.com/api/v1/run/go/linux/registry/hello-run?pick=first"
        f"&terminal_id=1' {auth}",
    )
    assert status == 200 and run["status"] == "scheduled"
    await wait_result(http, run["terminal"]["json"]["command_id"])
    async with http.post(f"{TERMINAL}/create", json={"terminal_id": 2}) as response:
        assert response.status == 200
    status, run = seed(
        world,
        "curl -X GET 'https://api.hoody.com/api/v1/run/t/2/go/linux/registry/hello-run"
        f"?pick=first' {auth}",
    )
    assert status == 200 and run["status"] == "scheduled" and run["handoff"]["terminal_id"] == 2
    result = await wait_result(http, run["terminal"]["json"]["command_id"])
    assert result["terminal_id"] == "2" and "hello-run says" in result["stdout"]
    status, plan = seed(
        world,
        f"""curl -X POST 'https://api.hoody.com/api/v1/run/preflight' {auth} \\
        -H 'Content-Type: application/json' \\
        -d '{{
        "app": "hello-run",
        "os": "linux",
        "kind": "any",
        "pick": "first"
        }}'""",
    )
    assert status == 200 and plan["recommended_mode"] == "dry-run" and plan["would_schedule"]
    assert plan["selected"]["candidate_id"] == "team:hello-run"
    status, batch = seed(
        world,
        f"""curl -X POST 'https://api.hoody.com/api/v1/run/batch' {auth} \\
        -H 'Content-Type: application/json' \\
        -d '{{
        "items": [
        {{
        "request_id": "req-1",
        "mode": "search",
        "selector": {{ "app": "hello-run", "os": "linux", "kind": "any" }}
        }},
        {{
        "request_id": "req-2",
        "mode": "run",
        "selector": {{ "app": "hello-run-twin", "os": "linux", "kind": "any", "pick": "first" }}
        }}
        ]
        }}'""",
    )
    assert status == 200
    assert [(i["request_id"], i["result"]) for i in batch["items"]] == [
        ("req-1", "search"),
        ("req-2", "run"),
    ]
    assert batch["items"][1]["run"]["status"] == "dry-run"
    status, document = seed(
        world, f"curl -X GET 'https://api.hoody.com/api/v1/run/openapi.json' {auth}"
    )
    assert status == 200 and document["openapi"] == "3.0.3"
    status, text = seed(
        world, f"curl -X GET 'https://api.hoody.com/api/v1/run/openapi.yaml' {auth}"
    )
    assert status == 200 and text.startswith("openapi: 3.0.3")


async def test_printed_curl_lines_run_as_printed(
    http: aiohttp.ClientSession, world: RunWorld
) -> None:
    """print_curl lines name the real socket, quote every value, schedule nothing themselves,
    and do what the run would do when pasted into a shell."""
    origin = "o'rigin; $HOME & more"
    lines = {}
    for mode in ("hoody-run", "hoody-terminal"):
        async with http.get(
            f"{RUN}/run",
            params={"app": "hello-run", "pick": "first", "print_curl": mode, "origin": origin},
        ) as response:
            body = await response.json()
        assert body["status"] == "printed-curl" and "terminal" not in body
        assert body["handoff"]["state"] == "preview"
        assert f"--unix-socket {shlex.quote(world.socket)} " in body["curl"]
        lines[mode] = body["curl"]
    status, run = shell(lines["hoody-run"])
    run_body = json.loads(run)
    assert status == 200 and run_body["status"] == "scheduled"
    assert run_body["selected"]["candidate_id"] == "team:hello-run"
    result = await wait_result(http, run_body["terminal"]["json"]["command_id"])
    assert f"hello-run says --greet {TRICKY}" in result["stdout"]
    status, executed = shell(lines["hoody-terminal"])
    assert status == 200
    result = await wait_result(http, json.loads(executed)["command_id"])
    assert result["status"] == "completed"
    assert f"hello-run says --greet {TRICKY}" in result["stdout"]
    assert f'"origin":{json.dumps(origin)}' in world.daemon.logs().replace(", ", ",")
