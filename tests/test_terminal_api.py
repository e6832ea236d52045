"""The Terminal API over HTTP and WebSocket: contract texts, refusals, output, attach."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
import yaml
from aiohttp.test_utils import TestClient

from hoodyd.api.openapi import load_yaml_text
from hoodyd.app import create_app
from hoodyd.polling import poll_until
from hoodyd.schemas import terminal as wire
from tests.conftest import make_config
from tests.truth import check_sessions

BASE = "/api/v1/terminal"
WAIT = 10.0


async def completed(client: TestClient, command_id: str) -> dict[str, Any]:
    """The command's result once it has completed (the test fails after WAIT seconds)."""

    async def final() -> dict[str, Any] | None:
        body: dict[str, Any] = await (await client.get(f"{BASE}/result/{command_id}")).json()
        return body if body["status"] == "completed" else None

    body = await poll_until(final, timeout=WAIT, interval=0.02)
    assert body is not None, f"command {command_id} did not complete"
    return body


async def output_settled(client: TestClient, terminal_id: int) -> str:
    """The terminal's output once it stops growing: the rest of a prompt may arrive just
    after the marker that completed a command."""
    before: str | None = None

    async def unchanged() -> str | None:
        nonlocal before
        now = await output_text(client, terminal_id)
        same, before = now == before, now
        return now if same else None

    text = await poll_until(unchanged, timeout=WAIT)
    assert text is not None, "the output kept changing"
    return text


@pytest.fixture
async def client(aiohttp_client: Any, short_tmp: Path) -> AsyncIterator[TestClient]:
    """The real app factory, serving only the terminal area (no supervisord needed)."""
    config = make_config(short_tmp, terminals={"user_rc": False})
    yield await aiohttp_client(create_app(config, areas=("terminal",)))


async def execute(client: TestClient, query: str, body: Any, status: int = 200) -> dict[str, Any]:
    response = await client.post(f"{BASE}/execute?{query}", json=body)
    payload: dict[str, Any] = await response.json()
    assert response.status == status, payload
    return payload


async def output_text(client: TestClient, terminal_id: int) -> str:
    response = await client.get(f"{BASE}/output/{terminal_id}")
    body = await response.json()
    return str(body["data"])


async def test_execute_with_wait_answers_the_result(client: TestClient) -> None:
    """POST /execute waits by default and answers output, exit code and contract fields."""
    body = await execute(client, "terminal_id=1", {"command": "echo hello; (exit 3)"})
    assert body["success"] is True
    assert (body["status"], body["exit_code"], body["stdout"]) == ("completed", 3, "hello\n")
    assert (body["terminal_id"], body["stderr"], body["timed_out"]) == ("1", "", False)
    result = await client.get(f"{BASE}/result/{body['command_id']}")
    assert (await result.json())["stdout"] == "hello\n"


async def test_custom_id_wait_false_then_result_and_history(client: TestClient) -> None:
    """A custom command id is honoured; wait=false answers at once; history lists commands."""
    body = await execute(client, "terminal_id=1&wait=false", {"command": "echo later", "id": "77"})
    assert body["command_id"] == "77"
    assert body["status"] in ("queued", "running", "completed")
    body = await completed(client, "77")
    assert body["stdout"] == "later\n"
    for url in (f"{BASE}/history/1", f"{BASE}/history?terminal_id=1"):
        history = await (await client.get(url)).json()
        assert [c["command"] for c in history["data"]] == ["echo later"]
        assert history["total"] == 1
    sessions = await (await client.get(f"{BASE}/sessions?history_limit=5")).json()
    assert sessions["total"] == 1
    assert sessions["data"][0]["command_history"] == ["echo later"]


@pytest.mark.parametrize(
    ("query", "body", "status", "error"),
    [
        ("", {"command": "true"}, 400, "terminal_id parameter required"),
        ("terminal_id=0", {"command": "true"}, 400, "terminal_id parameter required"),
        (
            "terminal_id=abc",
            {"command": "true"},
            400,
            "Invalid terminal_id (must be numeric 1-65535)",
        ),
        (
            "terminal_id=65536",
            {"command": "true"},
            400,
            "Invalid terminal_id (must be numeric 1-65535)",
        ),
        ("terminal_id=1", {"cmd": "true"}, 400, "Missing 'command' field"),
        ("terminal_id=1", {}, 400, "Missing 'command' field"),
        (
            "terminal_id=1",
            {"command": "a\nb"},
            400,
            "'command' must be a single line (newlines are not allowed)",
        ),
        ("terminal_id=1", {"command": "a\u0000b"}, 400, "'command' contains a NUL byte"),
        ("terminal_id=1", {"command": "true", "bogus": 1}, 400, None),
        ("terminal_id=1", {"command": "true", "id": "0"}, 400, None),
        ("terminal_id=1&defer_pid=0", {"command": "true"}, 400, None),
        ("terminal_id=1&defer_pid=x", {"command": "true"}, 400, None),
        ("terminal_id=1&defer_pid=1&defer_poll_ms=9", {"command": "true"}, 400, None),
        ("terminal_id=1&defer_pid=1&defer_timeout_ms=0", {"command": "true"}, 400, None),
        ("terminal_id=1&defer_pid=1&defer_start_time_ticks=-5", {"command": "true"}, 400, None),
        ("terminal_id=1&defer_timeout_ms=100", {"command": "true"}, 400, None),
        ("terminal_id=1&ssh_host=example.org", {"command": "true"}, 400, None),
        ("terminal_id=1&reset=maybe", {"command": "true"}, 400, None),
        ("terminal_id=1&env=NOEQUALS", {"command": "true"}, 400, None),
        ("terminal_id=1&user=nobody-else", {"command": "true"}, 400, None),
        ("terminal_id=1&frobnicate=1", {"command": "true"}, 400, None),
        ("terminal_id=40005", {"command": "true"}, 400, None),
        ("terminal_id=5&cwd=/nonexistent", {"command": "true"}, 400, None),
        ("terminal_id=5&shell=tcsh", {"command": "true"}, 400, None),
    ],
)
async def test_refused_executes_answer_the_error_and_start_nothing(
    client: TestClient, query: str, body: dict[str, Any], status: int, error: str | None
) -> None:
    """Each bad execute gets its status and error body, and no session is started."""
    payload = await execute(client, query, body, status=status)
    assert payload["success"] is False
    assert payload["reason"].isupper()
    if error is not None:
        assert payload["error"] == error
    sessions = await (await client.get(f"{BASE}/sessions")).json()
    assert sessions["total"] == 0


async def test_refusals_on_a_live_session_type_nothing(client: TestClient) -> None:
    """Refused executes against a running shell leave its output and history untouched."""
    await execute(client, "terminal_id=1", {"command": "echo ready"})
    # the rest of the prompt may arrive just after the marker that completed the command
    before = await output_settled(client, 1)
    for query, body in [
        ("terminal_id=1", {"command": "echo bad\necho worse"}),
        ("terminal_id=1&defer_pid=1&defer_poll_ms=1", {"command": "echo bad"}),
        ("terminal_id=1", {"command": "echo bad", "env": {"A B": "x"}}),
        ("terminal_id=1", {"command": "echo bad", "cwd": "/tmp\r"}),
    ]:
        await execute(client, query, body, status=400)
    assert await output_text(client, 1) == before
    history = await (await client.get(f"{BASE}/history/1")).json()
    assert history["total"] == 1


async def test_deferred_execute_returns_at_once_and_runs_after_the_pid(client: TestClient) -> None:
    """With defer_pid the call answers `pending` at once even with wait, then runs later."""
    await execute(client, "terminal_id=1", {"command": "true"})
    sleep = await asyncio.create_subprocess_exec("sleep", "0.4")
    try:
        body = await execute(
            client, f"terminal_id=1&defer_pid={sleep.pid}", {"command": "echo done"}
        )
        assert body["status"] == "pending"
        assert body["defer"]["pid"] == sleep.pid
        await sleep.wait()
    finally:
        if sleep.returncode is None:
            sleep.kill()
            await sleep.wait()
    body = await completed(client, body["command_id"])
    assert body["stdout"] == "done\n"


async def test_create_list_resize_delete(client: TestClient) -> None:
    """Create is idempotent, resize reaches the PTY, delete ends it and then 404s."""
    created = await client.post(f"{BASE}/create", json={"terminal_id": 7, "cols": 100, "rows": 30})
    body = await created.json()
    assert created.status == 200, body
    assert (body["status"], body["terminal_id"], body["created"], body["shell_ready"]) == (
        "ok",
        "7",
        True,
        True,
    )
    again = await (await client.post(f"{BASE}/create", json={"terminal_id": "7"})).json()
    assert again["created"] is False
    size = await execute(client, "terminal_id=7", {"command": "stty size"})
    assert size["stdout"] == "30 100\n"
    resized = await client.post(f"{BASE}/resize/7", json={"cols": 120, "rows": 40})
    assert resized.status == 200
    size = await execute(client, "terminal_id=7", {"command": "stty size"})
    assert size["stdout"] == "40 120\n"
    deleted = await client.delete(f"{BASE}/7")
    assert (await deleted.json())["deleted"] is True
    for method, url in [
        ("DELETE", f"{BASE}/7"),
        ("GET", f"{BASE}/history/7"),
        ("GET", f"{BASE}/output/7"),
        ("GET", f"{BASE}/result/9999"),
    ]:
        response = await client.request(method, url)
        assert response.status == 404, url
        assert (await response.json())["success"] is False


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({}, "TERMINAL_ID_REQUIRED"),
        ({"terminal_id": "x1"}, "INVALID_TERMINAL_ID"),
        ({"terminal_id": 40001}, "RESERVED_TERMINAL_ID"),
        ({"terminal_id": 2, "cols": 0}, "VALIDATION_FAILED"),
        ({"terminal_id": 2, "shell": "tcsh"}, "UNSUPPORTED_SHELL"),
        ({"terminal_id": 2, "cwd": "/definitely/not/here"}, "INVALID_CWD"),
        ({"terminal_id": 2, "display": "nope"}, "INVALID_DISPLAY"),
        ({"terminal_id": 2, "ssh_user": "me"}, "SSH_NOT_SUPPORTED"),
        ({"terminal_id": 2, "desktop": True}, "DESKTOP_NOT_SUPPORTED"),
        ({"terminal_id": 2, "env": {"HOODYD_MARKER": "x"}}, "INVALID_ENV"),
    ],
)
async def test_bad_create_bodies_are_refused(
    client: TestClient, body: dict[str, Any], reason: str
) -> None:
    """Each bad create body is a 400 with its reason, and no session appears."""
    response = await client.post(f"{BASE}/create", json=body)
    payload = await response.json()
    assert (response.status, payload["reason"]) == (400, reason), payload
    assert (await (await client.get(f"{BASE}/sessions")).json())["total"] == 0


async def test_output_can_be_followed_by_offset_without_losing_bytes(client: TestClient) -> None:
    """Reading with next_offset returns each byte once; base64 is lossless; waits see new output."""
    await execute(client, "terminal_id=1", {"command": "printf 'one-'"})
    first = await (await client.get(f"{BASE}/output/1?offset=0")).json()
    assert "one-" in first["data"] and first["offset"] == 0
    offset = first["next_offset"]
    # the read waits from `offset` on: output landing before or after it starts is seen alike
    waiter = asyncio.ensure_future(client.get(f"{BASE}/output/1?offset={offset}&timeout_ms=5000"))
    await execute(client, "terminal_id=1", {"command": "printf 'two-'"})
    second = await (await waiter).json()
    assert second["offset"] == offset and "one-" not in second["data"]
    raw = await (await client.get(f"{BASE}/output/1?offset=0&encoding=base64")).json()
    assert base64.b64decode(raw["data"]).decode().count("two-") == 2  # echo + output
    bad = await client.get(f"{BASE}/output/1?offset=-1")
    assert bad.status == 400


async def test_shell_exit_gives_409_until_reset(client: TestClient) -> None:
    """Execute into an exited shell is a 409 SHELL_EXITED; reset=true starts a new shell."""
    ended = await execute(client, "terminal_id=1", {"command": "exit 4"})
    assert (ended["status"], ended["exit_code"]) == ("failed", 4)
    refused = await execute(client, "terminal_id=1", {"command": "true"}, status=409)
    assert refused["reason"] == "SHELL_EXITED"
    back = await execute(client, "terminal_id=1&reset=1", {"command": "echo again"})
    assert back["stdout"] == "again\n"


async def test_attach_streams_output_and_accepts_typing(client: TestClient) -> None:
    """A WebSocket client sees the shell's output, types a command, resizes, sees results."""
    await execute(client, "terminal_id=1", {"command": "echo before-attach"})
    async with client.ws_connect(f"{BASE}/attach/1") as ws:
        hello = json.loads((await ws.receive(timeout=WAIT)).data)
        assert hello["type"] == "attached"
        seen = b""
        await ws.send_bytes(b"echo typed-$((6*7))\r")
        await ws.send_str(json.dumps({"type": "resize", "cols": 91, "rows": 33}))
        await ws.send_str(json.dumps({"type": "input", "data": "stty size\r"}))
        await ws.send_str("not json")
        deadline = time.monotonic() + WAIT
        errors = []
        while (b"typed-42" not in seen or b"33 91" not in seen) and time.monotonic() < deadline:
            message = await ws.receive(timeout=WAIT)
            if message.type == aiohttp.WSMsgType.BINARY:
                seen += message.data
            elif message.type == aiohttp.WSMsgType.TEXT:
                errors.append(json.loads(message.data))
        assert b"before-attach" in seen  # replayed from the buffer
        assert b"typed-42" in seen and b"33 91" in seen
        assert b"\x1b]6973" not in seen
        assert [e["type"] for e in errors] == ["error"]
        sessions = await (await client.get(f"{BASE}/sessions")).json()
        assert sessions["data"][0]["clients"] == 1
        await ws.send_bytes(b"exit 9\r")
        closing = []
        while not ws.closed:
            message = await ws.receive(timeout=WAIT)
            if message.type == aiohttp.WSMsgType.TEXT:
                closing.append(json.loads(message.data))
        assert closing[-1] == {"type": "exit", "exit_code": 9}


async def test_attach_refusals_answer_json_and_create_nothing(client: TestClient) -> None:
    """A plain GET (no upgrade) and a reserved id are refused before any session starts."""
    response = await client.get(f"{BASE}/attach/12")
    assert response.status == 400
    assert "WebSocket" in (await response.json())["error"]
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect(f"{BASE}/attach/40001")
    assert refused.value.status == 400
    sessions = await (await client.get(f"{BASE}/sessions")).json()
    assert sessions["data"] == []


def test_openapi_schemas_list_exactly_the_wire_fields() -> None:
    """Every terminal response and request Struct matches its OpenAPI schema, field by field."""
    schemas = yaml.safe_load(load_yaml_text("terminal"))["components"]["schemas"]
    for struct in (
        wire.CreateRequest,
        wire.CreateResponse,
        wire.SessionInfo,
        wire.SessionsResponse,
        wire.ExecuteBody,
        wire.DeferInfo,
        wire.CommandResult,
        wire.HistoryResponse,
        wire.OutputResponse,
        wire.ResizeRequest,
        wire.ResizeResponse,
        wire.DeleteResponse,
    ):
        fields = {field.encode_name for field in msgspec.structs.fields(struct)}
        assert set(schemas[struct.__name__]["properties"]) == fields, struct.__name__


async def test_a_command_id_still_in_use_is_a_409(client: TestClient) -> None:
    """Reusing the id of a command that has not finished is refused; nothing else is queued."""
    sleep = await asyncio.create_subprocess_exec("sleep", "30")
    try:
        first = await execute(
            client, f"terminal_id=1&defer_pid={sleep.pid}", {"command": "true", "id": 500}
        )
        refused = await execute(client, "terminal_id=1", {"command": "echo no", "id": "500"}, 409)
        assert refused["reason"] == "COMMAND_ID_IN_USE"
        history = await (await client.get(f"{BASE}/history/1")).json()
        assert [c["command_id"] for c in history["data"]] == [first["command_id"]]
    finally:
        sleep.kill()
        await sleep.wait()
    await completed(client, "500")
    reused = await execute(client, "terminal_id=1", {"command": "echo yes", "id": 500})
    assert (reused["command_id"], reused["stdout"]) == ("500", "yes\n")


async def test_query_options_shape_a_new_session(client: TestClient) -> None:
    """display, env, cwd and shell in the query apply when execute starts terminal 1."""
    body = await execute(
        client,
        "terminal_id=1&display=7&skip_display_wait&env=FOO=b%20r&env=BAR=x=y&cwd=/tmp&shell=bash",
        {"command": 'echo "$DISPLAY|$FOO|$BAR|$PWD"'},
    )
    assert body["stdout"] == ":7|b r|x=y|/tmp\n"
    sessions = await (await client.get(f"{BASE}/sessions")).json()
    assert (sessions["data"][0]["display"], sessions["data"][0]["cwd"]) == (":7", "/tmp")


async def test_the_callers_origin_is_kept_with_the_command(client: TestClient) -> None:
    """`origin` (query or X-Hoody-Origin header) is stored on the command and reported back."""
    result = await execute(client, "terminal_id=1&origin=launcher-7", {"command": "true"})
    assert result["origin"] == "launcher-7"
    response = await client.post(
        f"{BASE}/execute?terminal_id=1",
        json={"command": "true"},
        headers={"X-Hoody-Origin": "proxy"},
    )
    body = await response.json()
    assert body["origin"] == "proxy"
    fetched = await (await client.get(f"{BASE}/result/{body['command_id']}")).json()
    assert fetched["origin"] == "proxy"


async def test_sessions_say_what_proc_says_after_every_call(client: TestClient) -> None:
    """After each call of a working day (a cd, a command left running, a shell replaced with
    exec, a shell that exits), every session `GET /sessions` shows holds in /proc: its shell
    lives in the directory it names, and an exited one is neither alive nor busy."""

    async def sessions_hold() -> dict[str, Any]:
        body: dict[str, Any] = await (await client.get(f"{BASE}/sessions")).json()
        check_sessions(body)
        return body

    await execute(client, "terminal_id=1", {"command": "cd /tmp", "wait": True, "timeout": 10})
    assert (await sessions_hold())["data"][0]["cwd"] == "/tmp"
    # long enough to be still running when the sessions are read on a busy machine
    await execute(client, "terminal_id=2&cwd=/", {"command": "sleep 5", "wait": False})
    busy = {s["id"]: s["busy"] for s in (await sessions_hold())["data"]}
    assert busy == {1: False, 2: True}
    replaced = await execute(
        client, "terminal_id=1", {"command": "exec bash --norc", "wait": True, "timeout": 10}
    )
    assert replaced["status"] == "failed", replaced
    await sessions_hold()
    again = await execute(client, "terminal_id=1", {"command": "pwd", "wait": True, "timeout": 10})
    assert again["exit_code"] == 0, again
    await sessions_hold()
    await execute(client, "terminal_id=2", {"command": "exit 4", "wait": False})

    async def exited() -> dict[str, Any] | None:
        body = await sessions_hold()
        two = next(s for s in body["data"] if s["id"] == 2)
        return two if two["state"] == "exited" else None

    two = await poll_until(exited, timeout=WAIT)
    assert two is not None and two["exit_code"] == 4 and not two["busy"], two
