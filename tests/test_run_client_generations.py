"""Both generations of the public client, as contract tests: beta.9 (`/run`, delegation into
a terminal, defer and redirect) and beta.10-12 (`/resolve`, command-only, narrower enums and
the `preview_*` handoff names), each request sent as that client sends it, each answer held
to the fields and enum values its types declare (CONTRACT.md §3 and §5). A pinned copy of
either client is not available offline, so the shapes are written down here."""

from __future__ import annotations

import json
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest

from hoodyd.errors import InvalidRequest
from hoodyd.programs.conf import command_argv
from hoodyd.programs.rules import build_program, validate_program
from hoodyd.schemas.daemon import ProgramInput
from tests.conftest import sleeper
from tests.run_world import RUN, RunWorld, run_world, wait_result

DAEMON = "/api/v1/daemon"
TERMINAL = "/api/v1/terminal"

# beta.9 (types.ts @3c59dc5)
BETA9_STATUS = {"resolved", "scheduled", "dry-run", "printed-curl", "error"}
BETA9_HANDOFF_STATE = {"preview", "scheduled", "failed"}
BETA9_MODES = {"search-only", "dry-run", "delegated-execute", "printed-curl"}
BETA9_HANDOFF_NAMES = {
    "display_url",
    "terminal_url",
    "predicted_display_url",
    "predicted_terminal_url",
}
# beta.12 (types.ts @HEAD)
BETA12_STATUS = {"resolved", "dry-run", "printed-curl", "error"}
BETA12_MODES = {"search-only", "dry-run", "printed-curl"}
BETA12_HANDOFF = {"state", "terminal_id", "display", "preview_display_url", "preview_terminal_url"}
BETA12_RESOLVE_FIELDS = {
    "status", "set_id", "candidates", "selected", "shell_command", "curl", "error", "handoff",
    "warnings",
}  # fmt: skip
# hoodyd's extensions on both generations' answers (README, Running apps)
EXTENSIONS = {"missing_requirements", "effective_policy"}
CANDIDATE_KINDS = {"gui", "cli", "any"}


@pytest.fixture(scope="module")
def world() -> Iterator[RunWorld]:
    with run_world() as running:
        yield running


async def call(
    http: aiohttp.ClientSession, method: str, path: str, **kwargs: Any
) -> tuple[int, Any]:
    async with http.request(method, path, **kwargs) as response:
        return response.status, await response.json()


async def history_total(http: aiohttp.ClientSession, terminal_id: int) -> int:
    status, body = await call(http, "GET", f"{TERMINAL}/history/{terminal_id}?limit=1")
    return int(body.get("total", 0)) if status == 200 else 0


def assert_beta12_handoff(handoff: dict[str, Any], terminal_id: int = 1) -> None:
    assert set(handoff) <= BETA12_HANDOFF, handoff
    assert handoff["state"] == "preview" and handoff["terminal_id"] == terminal_id
    assert handoff["preview_terminal_url"] == f"{RUN}/t/{terminal_id}/view"


def assert_beta12_resolve(body: dict[str, Any]) -> None:
    assert set(body) <= BETA12_RESOLVE_FIELDS | EXTENSIONS, body
    assert body["status"] in BETA12_STATUS
    assert "terminal" not in body and "terminal_request_preview" not in body
    for candidate in [*body.get("candidates", []), body.get("selected") or {"kind": "any"}]:
        assert candidate["kind"] in CANDIDATE_KINDS
    if "handoff" in body:
        assert_beta12_handoff(body["handoff"])


async def test_beta12_resolve_answers_the_command_and_never_runs(
    http: aiohttp.ClientSession,
) -> None:
    """GET and POST `/resolve` answer the candidates or the picked command in beta.12's
    shape (no terminal, a preview handoff with `preview_terminal_url`), and nothing runs even
    though the policy allows delegation."""
    before = await history_total(http, 1)
    status, listed = await call(http, "GET", f"{RUN}/resolve", params={"app": "hello-run"})
    assert status == 200 and listed["status"] == "resolved"
    assert_beta12_resolve(listed)
    href = listed["candidates"][0]["href_path"]
    assert href.startswith(f"{RUN}/resolve?app=hello-run&pick=id&candidate_id=")
    status, followed = await call(http, "GET", href)
    assert status == 200 and followed["status"] == "dry-run"
    assert followed["selected"]["candidate_id"] == listed["candidates"][0]["candidate_id"]
    for method, kwargs in (
        ("GET", {"params": {"app": "hello-run", "pick": "first", "kind": "any"}}),
        ("POST", {"json": {"app": "hello-run", "pick": "first", "kind": "any", "terminal_id": 1}}),
    ):
        status, body = await call(http, method, f"{RUN}/resolve", **kwargs)
        assert status == 200 and body["status"] == "dry-run", (method, body)
        assert body["shell_command"] and body["effective_policy"]["allow_delegated_execution"]
        assert_beta12_resolve(body)
    assert await history_total(http, 1) == before


async def test_resolve_refuses_the_fields_only_a_run_reads(http: aiohttp.ClientSession) -> None:
    """`defer_*`, `redirect` and `redirect_to` are a 400 on `/resolve` in the query and the
    body, and `print_curl=hoody-terminal` is an INVALID_ENUM naming `hoody-run`."""
    for name, value in (
        ("defer_pid", "1"),
        ("defer_start_time_ticks", "5"),
        ("defer_timeout_ms", "10"),
        ("defer_poll_ms", "20"),
        ("redirect", "true"),
        ("redirect_to", "/x"),
    ):
        params = {"app": "hello-run", "pick": "first", name: value}
        status, body = await call(http, "GET", f"{RUN}/resolve", params=params)
        assert status == 400 and body["reason"] == "UNKNOWN_PARAMETER", (name, body)
        typed: Any = {"redirect": True}.get(name, int(value) if value.isdigit() else value)
        if name == "defer_start_time_ticks":
            typed = value
        status, body = await call(
            http, "POST", f"{RUN}/resolve", json={"app": "hello-run", name: typed}
        )
        assert status == 400 and body["reason"] == "UNKNOWN_FIELD" and name in body["error"]
    params = {"app": "hello-run", "pick": "first", "print_curl": "hoody-terminal"}
    status, body = await call(http, "GET", f"{RUN}/resolve", params=params)
    assert status == 400 and body["reason"] == "INVALID_ENUM"
    assert body["error"].endswith("allowed values are hoody-run")


async def test_printed_curl_lines_repeat_the_route_they_came_from(
    http: aiohttp.ClientSession, world: RunWorld
) -> None:
    """`print_curl=hoody-run` on `/resolve` prints a line for `/resolve` that, run as printed,
    answers the command without running it; on `/run` the line repeats `/run` (beta.9)."""
    before = await history_total(http, 1)
    params = {"app": "hello-run", "pick": "first", "print_curl": "hoody-run"}
    status, body = await call(http, "GET", f"{RUN}/resolve", params=params)
    assert status == 200 and body["status"] == "printed-curl"
    assert_beta12_resolve(body)
    assert f"{RUN}/resolve?app=hello-run&" in body["curl"] and "/run/run" not in body["curl"]
    done = subprocess.run(shlex.split(body["curl"]), capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    again = json.loads(done.stdout)
    assert again["status"] == "dry-run" and again["shell_command"] == body["shell_command"]
    status, old = await call(http, "GET", f"{RUN}/run", params=params)
    assert status == 200 and f"{RUN}/run?app=hello-run&" in old["curl"]
    assert await history_total(http, 1) == before


async def test_resolve_answers_a_pick_with_missing_requirements(
    http: aiohttp.ClientSession,
) -> None:
    """A pick whose requirements are missing is a 409 on `/run` but, on command-only
    `/resolve`, the command with a MISSING_REQUIREMENT warning."""
    selector = {"app": "needs-package", "pick": "first"}
    status, body = await call(http, "POST", f"{RUN}/resolve", json=selector)
    assert status == 200 and body["status"] == "dry-run"
    assert "MISSING_REQUIREMENT" in [w["code"] for w in body["warnings"]]
    assert_beta12_resolve(body)
    status, refused = await call(http, "POST", f"{RUN}/run", json=selector)
    assert status == 409 and refused["reason"] == "REQUIREMENTS_MISSING"
    handoff = refused["handoff"]
    assert handoff["state"] == "failed" and "terminal_url" not in handoff
    assert handoff["preview_terminal_url"] == f"{RUN}/t/1/view"


async def test_beta9_run_go_and_recipes_keep_delegation_with_both_names(
    http: aiohttp.ClientSession,
) -> None:
    """`/run`, `/go/...`, `/t/{id}/go/...` and recipe runs still schedule into the terminal
    with beta.9's answer (`terminal`, `terminal_url`), and every handoff also carries
    `preview_terminal_url`; a dry run keeps `predicted_terminal_url` beside it."""
    status, made = await call(
        http,
        "POST",
        f"{RUN}/recipes",
        json={"name": "gen-hello", "selector_template": {"app": "hello-run", "pick": "first"}},
    )
    assert status == 201, made
    cases = [
        ("GET", f"{RUN}/run", {"params": {"app": "hello-run", "pick": "first"}}, 1),
        ("POST", f"{RUN}/run", {"json": {"app": "hello-run", "pick": "first"}}, 1),
        ("GET", f"{RUN}/go/linux/registry/hello-run", {"params": {"pick": "first"}}, 1),
        ("GET", f"{RUN}/t/3/go/hello-run", {"params": {"pick": "first"}}, 3),
        ("POST", f"{RUN}/recipes/gen-hello/run", {"json": {}}, 1),
    ]
    for method, path, kwargs, terminal_id in cases:
        status, body = await call(http, method, path, **kwargs)
        assert status == 200 and body["status"] == "scheduled", (path, body)
        assert body["status"] in BETA9_STATUS and body["terminal"]["ok"] is True
        handoff = body["handoff"]
        assert handoff["state"] in BETA9_HANDOFF_STATE and handoff["state"] == "scheduled"
        view = f"{RUN}/t/{terminal_id}/view"
        assert handoff["terminal_url"] == view and handoff["preview_terminal_url"] == view
        result = await wait_result(http, body["terminal"]["json"]["command_id"])
        assert "hello-run says" in result["stdout"]
    status, dry = await call(
        http, "GET", f"{RUN}/run", params={"app": "hello-run", "pick": "first", "dry_run": "1"}
    )
    assert status == 200 and dry["status"] == "dry-run" and "terminal" not in dry
    handoff = dry["handoff"]
    assert set(handoff) - {"state", "terminal_id", "display"} <= BETA9_HANDOFF_NAMES | {
        "preview_terminal_url"
    }
    assert handoff["predicted_terminal_url"] == handoff["preview_terminal_url"]


async def test_preflight_modes_are_ones_both_generations_accept(
    http: aiohttp.ClientSession,
) -> None:
    """Preflight's `recommended_mode` is one beta.12 knows (and so beta.9) wherever the run
    would schedule, say dry-run or print a curl line; `would_schedule` tells them apart."""
    cases = [
        ({}, "search-only", None),
        ({"pick": "first"}, "dry-run", True),
        ({"pick": "first", "dry_run": True}, "dry-run", False),
        ({"pick": "first", "print_curl": "hoody-run"}, "printed-curl", False),
        ({"pick": "first", "terminal_id": 40009}, "dry-run", False),
    ]
    for selector, mode, schedules in cases:
        status, body = await call(
            http, "POST", f"{RUN}/preflight", json={"app": "hello-run", **selector}
        )
        assert status == 200 and body["recommended_mode"] == mode, (selector, body)
        assert body["recommended_mode"] in BETA12_MODES & BETA9_MODES
        assert body.get("would_schedule") is schedules
        assert {"set_id", "missing_requirements", "warnings", "effective_policy"} <= set(body)
        if "handoff" in body:
            assert body["handoff"]["state"] == "preview"
            assert body["handoff"]["preview_terminal_url"].endswith("/view")
            assert (
                body["handoff"]["predicted_terminal_url"] == body["handoff"]["preview_terminal_url"]
            )


async def test_batch_items_answer_in_both_generations_names(http: aiohttp.ClientSession) -> None:
    """A batch's run items are command-only (the seed's batch) with a preview handoff that
    carries both generations' names; search and error items keep their shapes."""
    items = [
        {"request_id": "s", "mode": "search", "selector": {"app": "hello-run"}},
        {"request_id": "r", "mode": "run", "selector": {"app": "hello-run", "pick": "first"}},
        {"request_id": "e", "mode": "run", "selector": {"app": "hello-run", "pick": "index"}},
    ]
    status, body = await call(http, "POST", f"{RUN}/batch", json={"items": items})
    assert status == 200
    search, run, error = body["items"]
    assert search["result"] == "search" and search["search"]["candidates"][0]["kind"] == "cli"
    assert run["result"] == "run" and run["run"]["status"] == "dry-run"
    assert run["run"]["status"] in BETA12_STATUS and "terminal" not in run["run"]
    handoff = run["run"]["handoff"]
    assert handoff["preview_terminal_url"] == handoff["predicted_terminal_url"]
    assert error["result"] == "error" and error["error"]["code"] == 400


def test_port_param_without_port_range_is_stored_and_ignored(tmp_path: Path) -> None:
    """A program with `port_param` and no `port_range` (the public CLI always sends
    `--port`) is stored as given and passes validation; it gets no port argument."""
    given = msgspec.convert(sleeper(port_param="--port"), ProgramInput)
    program = build_program(given, program_id=7, current=None, allow_insecure_webhooks=False)
    validate_program(program, [], log_dir=tmp_path, max_port_range=1000)
    assert program.port_param == "--port" and program.port_range is None
    assert command_argv(program, None) == ["/bin/sleep", "300"]
    bad = msgspec.convert(sleeper(port_param="--po rt"), ProgramInput)
    with pytest.raises(InvalidRequest, match="Invalid port_param format"):
        validate_program(
            build_program(bad, program_id=8, current=None, allow_insecure_webhooks=False),
            [],
            log_dir=tmp_path,
            max_port_range=1000,
        )


async def test_a_disabled_source_waits_for_what_only_a_sync_needs(
    http: aiohttp.ClientSession,
) -> None:
    """A disabled remote index saved without `config.url` is accepted; enabling or syncing
    it is a 400 naming the key, and the source stays as saved."""
    source = {
        "source_id": "gen-remote",
        "enabled": False,
        "priority": 5,
        "provider": "registry",
        "source_type": "manifest-remote-index",
    }
    status, sources = await call(http, "POST", f"{RUN}/sources", json=source)
    assert status == 201 and "gen-remote" in [s["source_id"] for s in sources]
    status, body = await call(http, "PATCH", f"{RUN}/sources/gen-remote", json={"enabled": True})
    assert status == 400 and body["reason"] == "INVALID_SOURCE_CONFIG"
    assert "config.url: required" in body["error"]
    status, body = await call(http, "POST", f"{RUN}/sources/gen-remote/sync")
    assert status == 400 and "config.url: required" in body["error"]
    assert (await http.delete(f"{RUN}/sources/gen-remote")).status == 204
