"""Running apps end to end over the real Unix socket: search, pick by set and index, the
command scheduled into a real terminal PTY (also behind `defer_pid`), its output read back;
go paths, preflight, batch, recipes, HTML pages, redirects, and refusals that schedule nothing."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import aiohttp
import pytest

from hoodyd.polling import poll_until
from tests.run_world import RUN, TERMINAL, TRICKY, RunWorld, run_world, wait_result


@pytest.fixture(scope="module")
def world() -> Iterator[RunWorld]:
    with run_world() as running:
        yield running


async def get(http: aiohttp.ClientSession, path: str, **params: Any) -> tuple[int, Any]:
    async with http.get(path, params=params or None) as response:
        return response.status, await response.json()


def stamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def history_total(http: aiohttp.ClientSession, terminal_id: int) -> int:
    async with http.get(f"{TERMINAL}/history/{terminal_id}") as response:
        if response.status == 404:
            return 0
        return int((await response.json())["total"])


async def create_terminal(http: aiohttp.ClientSession, terminal_id: int) -> None:
    async with http.post(f"{TERMINAL}/create", json={"terminal_id": terminal_id}) as response:
        assert response.status == 200, await response.text()


async def test_search_pick_by_set_and_index_runs_in_terminal_one(
    http: aiohttp.ClientSession, world: RunWorld
) -> None:
    """A pick by set and index is scheduled into terminal 1 and the program's output comes back."""
    status, found = await get(http, f"{RUN}/search", app="hello-run")
    assert status == 200
    ids = [c["candidate_id"] for c in found["candidates"]]
    index = ids.index("team:hello-run-twin")
    status, body = await get(
        http, f"{RUN}/run", app="hello-run", set_id=found["set_id"], pick="index",
        pick_index=str(index), terminal_id="1",
    )  # fmt: skip
    assert status == 200, body
    assert body["status"] == "scheduled" and body["set_id"] == found["set_id"]
    assert body["selected"]["candidate_id"] == "team:hello-run-twin"
    assert body["terminal"]["ok"] is True and body["terminal"]["status"] == 200
    assert body["handoff"]["state"] == "scheduled" and body["handoff"]["terminal_id"] == 1
    assert body["handoff"]["terminal_url"] == f"{RUN}/t/1/view"
    assert body["effective_policy"]["allow_delegated_execution"] is True
    command_id = body["terminal"]["json"]["command_id"]
    result = await wait_result(http, command_id)
    assert result["status"] == "completed" and result["exit_code"] == 0
    assert result["command"] == body["shell_command"]
    assert "hello-run says twin" in result["stdout"]


async def test_arguments_reach_the_program_unchanged(http: aiohttp.ClientSession) -> None:
    """Quotes, `;` and `$` in an argument are shell-quoted: the program gets them verbatim."""
    status, body = await get(http, f"{RUN}/run", app="hello-run", pick="first")
    assert status == 200 and body["status"] == "scheduled"
    assert body["selected"]["execution_plan"]["argv"][-1] == TRICKY
    result = await wait_result(http, body["terminal"]["json"]["command_id"])
    assert f"hello-run says --greet {TRICKY}" in result["stdout"]


async def test_go_into_a_terminal_never_created_creates_it(http: aiohttp.ClientSession) -> None:
    """`/t/17/go/...` runs the app in terminal 17, which nobody created: it starts on first use."""
    async with http.get(f"{TERMINAL}/sessions") as response:
        assert 17 not in [s["id"] for s in (await response.json())["data"]]
    status, body = await get(http, f"{RUN}/t/17/go/hello-run", pick="first")
    assert status == 200 and body["status"] == "scheduled", body
    assert body["handoff"]["terminal_id"] == 17
    result = await wait_result(http, body["terminal"]["json"]["command_id"])
    assert result["exit_code"] == 0 and "hello-run says" in result["stdout"]


async def test_defer_pid_waits_for_a_real_process(
    http: aiohttp.ClientSession, world: RunWorld
) -> None:
    """With defer_pid the command waits until that process exits, then runs."""
    await create_terminal(http, 3)
    spawned = time.time()  # the sleeper starts after this, so it ends 1.5 s after it or later
    sleeper = subprocess.Popen(["sleep", "1.5"])
    try:
        status, body = await get(
            http, f"{RUN}/go/hello-run", pick="first", terminal_id="3",
            defer_pid=str(sleeper.pid), defer_poll_ms="20", origin="defer-test",
        )  # fmt: skip
        assert status == 200 and body["status"] == "scheduled", body
        command_id = body["terminal"]["json"]["command_id"]
        result = await wait_result(http, command_id)
        assert sleeper.poll() == 0
        assert result["status"] == "completed" and "hello-run says" in result["stdout"]
        assert result["defer"]["outcome"] == "exited" and result["defer"]["pid"] == sleeper.pid
        assert result["origin"] == "defer-test"  # stored on the terminal command
        # a lower bound only, which no slowness can break: held until `sleep 1.5` ended
        # (less a millisecond for the stamp's rounding)
        assert stamp(result["started_at"]).timestamp() >= spawned + 1.5 - 0.001
    finally:
        sleeper.kill()
        sleeper.wait()
    tagged = [
        json.loads(line)["event"]
        for line in world.daemon.logs().splitlines()
        if '"origin":"defer-test"' in line
    ]
    assert {"command_accepted", "run_scheduled", "request"} <= set(tagged)


async def test_deferred_command_that_times_out_never_runs(http: aiohttp.ClientSession) -> None:
    """A deferred command whose PID outlives defer_timeout_ms fails without running."""
    await create_terminal(http, 4)
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        status, body = await get(
            http, f"{RUN}/t/4/go/linux/registry/hello-run", pick="first",
            defer_pid=str(sleeper.pid), defer_timeout_ms="300", defer_poll_ms="20",
        )  # fmt: skip
        assert status == 200 and body["status"] == "scheduled", body
        assert body["handoff"]["terminal_id"] == 4
        result = await wait_result(http, body["terminal"]["json"]["command_id"])
        assert result["status"] in ("failed", "timed_out")
        assert result["defer"]["outcome"] == "timed_out"
        assert "hello-run says" not in result["stdout"]
    finally:
        sleeper.kill()
        sleeper.wait()


async def test_refused_requests_schedule_nothing(http: aiohttp.ClientSession) -> None:
    """Bad picks, unknown sets, no candidates, policy refusals and a missing terminal are
    errors in the run shape, and no command reaches any terminal."""
    _, found = await get(http, f"{RUN}/search", app="hello-run")
    set_id = found["set_id"]
    before = await history_total(http, 1)
    cases: list[tuple[dict[str, str], int, str, str | None]] = [
        ({"pick": "index"}, 400, "INVALID_PICK", "pick=index needs pick_index"),
        ({"pick": "index", "pick_index": "7", "set_id": set_id}, 400, "INVALID_PICK",
         "pick_index out of range: 7"),
        ({"pick": "first", "pick_index": "0"}, 400, "INVALID_PICK", None),
        ({"pick": "id"}, 400, "INVALID_PICK", "pick=id needs candidate_id"),
        ({"pick": "id", "candidate_id": "team:nope"}, 400, "INVALID_PICK", None),
        ({"candidate_id": "team:hello-run"}, 400, "INVALID_PICK", None),
        ({"pick": "index", "pick_index": "0", "set_id": "0" * 32}, 409, "CURSOR_SET_EXPIRED",
         None),
        ({"pick": "first", "terminal_id": "40007"}, 400, "RESERVED_TERMINAL_ID", None),
        ({"pick": "first", "defer_poll_ms": "20"}, 400, "DEFER_PID_REQUIRED", None),
        ({"pick": "first", "display": "nope"}, 400, "INVALID_DISPLAY", None),
        ({"pick": "first", "redirect_to": "javascript:alert(1)"}, 400, "INVALID_REDIRECT", None),
        ({"pick": "first", "dry_rn": "true"}, 400, "UNKNOWN_PARAMETER", None),
        ({"pick": "first", "dry_run": "maybe"}, 400, "INVALID_BOOLEAN", None),
    ]  # fmt: skip
    for params, code, reason, text in cases:
        status, body = await get(http, f"{RUN}/run", app="hello-run", **params)
        assert (status, body["code"], body["reason"]) == (code, code, reason), (params, body)
        if text is not None:
            assert body["error"] == text
    status, body = await get(http, f"{RUN}/run", app="zz-not-an-app-zz", pick="first")
    assert status == 404 and body["status"] == "error" and body["reason"] == "NO_CANDIDATES"
    assert body["set_id"] and "no candidates" in body["error"]
    status, body = await get(http, f"{RUN}/run", app="hello-run", pick="first", terminal_id="40007")
    assert body["status"] == "error" and body["handoff"]["state"] == "failed"
    assert body["terminal"] == {
        "status": 400, "ok": False,
        "json": {"success": False, "error": body["terminal"]["json"]["error"],
                 "reason": "RESERVED_TERMINAL_ID"},
    }  # fmt: skip
    for name, policy, reason in [
        ("needs-integrity", {"require_integrity": True}, "POLICY_REQUIRES_INTEGRITY"),
        ("deny-team", {"deny_source_ids": ["team"]}, "NO_CANDIDATES"),
    ]:
        async with http.post(f"{RUN}/profiles", json={"name": name, "policy": policy}) as r:
            assert r.status == 201
        status, body = await get(http, f"{RUN}/run", app="hello-run", pick="first", profile=name)
        assert body["reason"] == reason and status in (403, 404), body
    # a set made before the policy: the pick from it is refused, not run
    status, body = await get(
        http, f"{RUN}/run", app="hello-run", pick="index", pick_index="0", set_id=set_id,
        profile="deny-team",
    )  # fmt: skip
    assert status == 403 and body["reason"] == "POLICY_DENIED_SOURCE"
    async with http.head(f"{RUN}/run", params={"app": "hello-run", "pick": "first"}) as r:
        assert r.status == 405  # a HEAD never runs anything
    assert await history_total(http, 1) == before


async def test_a_pick_with_missing_requirements_is_a_409(http: aiohttp.ClientSession) -> None:
    """A pick whose source says it cannot run yet (a package to install) is not scheduled:
    409 REQUIREMENTS_MISSING in the run shape, listing each resolution; dry runs and
    preflight still show the command, and preflight recommends a dry run."""
    before = await history_total(http, 1)
    for send in ("get", "post"):
        if send == "get":
            status, body = await get(http, f"{RUN}/run", app="needs-package", pick="first")
        else:
            payload = {"app": "needs-package", "pick": "first"}
            async with http.post(f"{RUN}/run", json=payload) as r:
                status, body = r.status, await r.json()
        assert (status, body["code"], body["reason"]) == (409, 409, "REQUIREMENTS_MISSING"), body
        assert body["status"] == "error" and body["handoff"]["state"] == "failed"
        assert "apt-get install -y needs-package" in body["error"]
        assert [m["resolution"] for m in body["missing_requirements"]] == [
            "apt-get install -y needs-package"
        ]
        assert "terminal" not in body
    status, body = await get(http, f"{RUN}/run", app="needs-package", pick="first", dry_run="1")
    assert status == 200 and body["status"] == "dry-run" and body["missing_requirements"]
    async with http.post(f"{RUN}/preflight", json={"app": "needs-package", "pick": "first"}) as r:
        body = await r.json()
    assert body["recommended_mode"] == "dry-run"
    assert "REQUIREMENTS_MISSING" in [w["code"] for w in body["warnings"]]
    assert await history_total(http, 1) == before


async def test_a_source_that_fails_to_resolve_is_a_502(http: aiohttp.ClientSession) -> None:
    """With no candidates because a source could not be read, the run answers 502
    SOURCE_RESOLUTION_FAILED naming the source and its error."""
    broken = {"source_id": "broken", "enabled": True, "priority": 10, "provider": "registry",
              "source_type": "manifest-registry",
              "config": {"path": "/nonexistent/apps.json"}}  # fmt: skip
    async with http.post(f"{RUN}/sources", json=broken) as response:
        assert response.status == 201

    async def read_failed() -> bool | None:
        _, diagnostics = await get(http, f"{RUN}/sources/broken/diagnostics")
        return True if diagnostics.get("last_error") else None

    assert await poll_until(read_failed, timeout=10, interval=0.05), "the source was never read"
    profile = {"name": "only-broken", "sources_mode": "allowlist",
               "sources": [{"source_id": "broken"}]}  # fmt: skip
    async with http.post(f"{RUN}/profiles", json=profile) as response:
        assert response.status == 201
    status, body = await get(
        http, f"{RUN}/run", app="hello-run", pick="first", profile="only-broken"
    )
    assert status == 502 and body["code"] == 502 and body["status"] == "error"
    assert body["reason"] == "SOURCE_RESOLUTION_FAILED"
    assert "broken: " in body["error"] and "/nonexistent/apps.json" in body["error"]
    # the other tests share this daemon: leave its sources as they were
    async with http.delete(f"{RUN}/sources/broken") as response:
        assert response.status == 204


async def test_policy_without_delegation_or_redirects(http: aiohttp.ClientSession) -> None:
    """A profile that forbids delegated execution gets dry-run answers; one that forbids
    redirects gets no 303; both show in effective_policy and warnings."""
    async with http.post(
        f"{RUN}/profiles",
        json={"name": "no-exec", "policy": {"allow_delegated_execution": False}},
    ) as response:
        assert response.status == 201
    before = await history_total(http, 1)
    status, body = await get(http, f"{RUN}/run", app="hello-run", pick="first", profile="no-exec")
    assert status == 200 and body["status"] == "dry-run"
    assert body["effective_policy"]["allow_delegated_execution"] is False
    assert [w["code"] for w in body["warnings"]] == ["DELEGATION_DISABLED"]
    assert body["handoff"]["state"] == "preview" and "terminal" not in body
    assert await history_total(http, 1) == before
    async with http.post(
        f"{RUN}/profiles", json={"name": "no-redirect", "policy": {"allow_redirect": False}}
    ) as response:
        assert response.status == 201
    async with http.get(
        f"{RUN}/run",
        params={"app": "hello-run", "pick": "first", "profile": "no-redirect", "redirect": "true"},
        allow_redirects=False,
    ) as response:
        body = await response.json()
        assert response.status == 200 and body["status"] == "scheduled"
        assert "REDIRECT_NOT_ALLOWED" in [w["code"] for w in body["warnings"]]
    await wait_result(http, body["terminal"]["json"]["command_id"])


async def test_dry_run_and_gui_display(http: aiohttp.ClientSession) -> None:
    """dry_run returns the command only; a GUI app gets DISPLAY, by default the terminal's."""
    before = await history_total(http, 1)
    status, body = await get(http, f"{RUN}/run", app="hello-gui", pick="first", dry_run="true")
    assert status == 200 and body["status"] == "dry-run"
    assert body["shell_command"].startswith("DISPLAY=:1 ")
    assert body["selected"]["run_plan"]["env"] == {"DISPLAY": ":1"}
    hints = [h["code"] for h in body["selected"]["execution_plan"]["side_effect_hints"]]
    assert "opens-window" in hints
    status, body = await get(
        http, f"{RUN}/run", app="hello-gui", pick="first", dry_run="1", display="77"
    )
    assert body["shell_command"].startswith("DISPLAY=:77 ") and body["handoff"]["display"] == ":77"
    missing = {(m["kind"], m["name"]) for m in body["missing_requirements"]}
    assert ("display", ":77") in missing  # nothing serves display 77 here
    assert await history_total(http, 1) == before


async def test_go_path_forms(http: aiohttp.ClientSession) -> None:
    """Positional and key-value go paths, including apps named like keys, resolve as documented."""
    expectations = [
        ("os", "team:os"),
        ("linux/os", "team:os"),
        ("app/os", "team:os"),
        ("app", "team:app"),
        ("any/app", "team:app"),
        ("app/app", "team:app"),
        ("linux/registry/hello-run", "team:hello-run"),
        ("linux/registry/cli/hello-run", "team:hello-run"),
        ("app/hello-run/os/linux/source/registry/kind/cli", "team:hello-run"),
        # as public clients send them: the whole path percent-encoded, `%2F` between segments
        ("linux%2Fregistry%2Fhello-run", "team:hello-run"),
        ("app%2Fos%2Fos%2Flinux", "team:os"),
    ]
    for rest, candidate_id in expectations:
        status, body = await get(http, f"{RUN}/go/{rest}", pick="first", dry_run="true")
        assert status == 200, (rest, body)
        assert body["selected"]["candidate_id"] == candidate_id, rest
    status, body = await get(
        http, f"{RUN}/t/1/go/linux%2Fregistry%2Fhello-run", dry_run="1", pick="first"
    )
    assert status == 200 and body["selected"]["candidate_id"] == "team:hello-run", body
    status, body = await get(http, f"{RUN}/go/app/hello-run/pick/first/dry_run/true")
    assert body["status"] == "dry-run" and body["selected"]["candidate_id"] == "team:hello-run"
    status, body = await get(http, f"{RUN}/go/hello-run")
    assert status == 200 and body["status"] == "resolved" and body["candidates"]
    bad = [
        ("go/app/x/os", {}),  # key without a value
        ("go/mac/hello-run", {}),  # not an Os value
        ("go/a/b/c/d/e", {}),  # too many positional segments
        ("go/app/x/bogus/1", {}),  # unknown key
        ("go/linux/hello-run", {"os": "linux"}),  # os in the path and the query
        ("go/hello-run", {"app": "x"}),  # app is not a go query parameter
        ("t/2/go/app/x/terminal_id/3", {}),  # the terminal comes from the path
        ("t/0/go/hello-run", {}),
    ]
    for rest, params in bad:
        status, body = await get(http, f"{RUN}/{rest}", **params)
        assert status == 400 and body["code"] == 400, (rest, body)


async def test_preflight_plans_without_running(http: aiohttp.ClientSession) -> None:
    """Preflight reports the plan, the recommended mode and what is missing; nothing runs."""
    before = await history_total(http, 1)

    async def preflight(**selector: Any) -> tuple[int, Any]:
        async with http.post(f"{RUN}/preflight", json={"app": "hello-run", **selector}) as r:
            return r.status, await r.json()

    status, body = await preflight()
    assert status == 200 and body["recommended_mode"] == "search-only" and "selected" not in body
    status, body = await preflight(pick="first", origin="pf", defer_pid=1)
    # a mode both client generations know; whether /run would schedule is said beside it
    assert body["recommended_mode"] == "dry-run" and body["would_schedule"] is True
    preview = body["terminal_request_preview"]
    assert preview["command"] == body["shell_command"] and preview["terminal_id"] == 1
    assert preview["origin"] == "pf" and preview["defer_pid"] == 1
    assert preview["defer_timeout_ms"] == 60000 and preview["defer_poll_ms"] == 50
    assert body["handoff"]["state"] == "preview" and body["missing_requirements"] == []
    assert set(body["effective_policy"]) >= {
        "require_verified", "require_integrity", "allow_delegated_execution", "allow_redirect",
    }  # fmt: skip
    # without an origin the preview still carries the one the terminal request gets
    unnamed = (await preflight(pick="first"))[1]["terminal_request_preview"]
    assert unnamed["origin"] == "hoodyd-run"
    assert (await preflight(pick="first", dry_run=True))[1]["recommended_mode"] == "dry-run"
    assert (await preflight(pick="first", print_curl="hoody-run"))[1][
        "recommended_mode"
    ] == "printed-curl"
    status, body = await preflight(pick="first", terminal_id=40009)
    assert body["recommended_mode"] == "dry-run" and body["would_schedule"] is False
    assert body["missing_requirements"][0]["kind"] == "terminal"
    assert body["missing_requirements"][0]["resolution"]
    status, body = await preflight(pick="index", pick_index=50)
    assert status == 400 and body["error"] == "pick_index out of range: 50"
    assert await history_total(http, 1) == before


async def test_batch_run_items_are_command_only(http: aiohttp.ClientSession) -> None:
    """Batch run items answer dry-run (or a curl line), each item on its own; nothing runs."""
    before = await history_total(http, 1)
    items = [
        {"request_id": "s", "mode": "search", "selector": {"app": "hello-run"}},
        {"request_id": "r", "mode": "run", "selector": {"app": "hello-run", "pick": "first"}},
        {"request_id": "c", "mode": "run",
         "selector": {"app": "hello-run", "pick": "first", "print_curl": "hoody-terminal"}},
        {"request_id": "e", "mode": "run",
         "selector": {"app": "hello-run", "pick": "index", "pick_index": 40}},
    ]  # fmt: skip
    async with http.post(f"{RUN}/batch", json={"items": items}) as response:
        results = (await response.json())["items"]
    assert [r["result"] for r in results] == ["search", "run", "run", "error"]
    assert results[1]["run"]["status"] == "dry-run" and results[1]["run"]["shell_command"]
    assert results[2]["run"]["status"] == "printed-curl"
    assert results[2]["run"]["curl"].startswith("curl -sS --unix-socket ")
    assert results[3]["error"] == {
        "error": "pick_index out of range: 40",
        "code": 400,
        "reason": "INVALID_PICK",
    }
    assert await history_total(http, 1) == before


async def test_recipe_run(http: aiohttp.ClientSession) -> None:
    """A recipe runs its template with allowed overrides; others are refused."""
    recipe = {
        "name": "greet",
        "selector_template": {"app": "hello-run", "pick": "first"},
        "allowed_overrides": ["dry_run", "terminal_id"],
    }
    async with http.post(f"{RUN}/recipes", json=recipe) as response:
        assert response.status == 201
    async with http.post(
        f"{RUN}/recipes/greet/run", json={"overrides": {"dry_run": True}}
    ) as response:
        body = await response.json()
    assert response.status == 200 and body["status"] == "dry-run"
    assert body["selected"]["candidate_id"] == "team:hello-run"
    async with http.post(f"{RUN}/recipes/greet/run") as response:
        body = await response.json()
    assert body["status"] == "scheduled"
    await wait_result(http, body["terminal"]["json"]["command_id"])
    async with http.post(f"{RUN}/recipes/greet/run", json={"overrides": {"app": "os"}}) as response:
        assert response.status == 400
        assert (await response.json())["error"] == "recipe override not allowed: app"
    async with http.post(f"{RUN}/recipes/nope/run") as response:
        assert response.status == 404


async def test_html_pages_and_redirect(http: aiohttp.ClientSession) -> None:
    """HTML answers load nothing from elsewhere; each candidate is a POST form that picks by
    set and index (no GET link runs anything); a redirect answers 303 to the terminal page,
    whose live view streams the terminal's output over a WebSocket."""
    async with http.get(f"{RUN}/run", params={"app": "hello-run", "format": "html"}) as response:
        page = await response.text()
        assert response.status == 200 and response.content_type == "text/html"
        assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    assert '<form method=post action="/api/v1/run/run">' in page
    assert 'name="pick_index" value="0"' in page and 'name="set_id"' in page
    assert "src=" not in page and "@import" not in page
    # the only links are to /resolve, which answers a command and runs nothing
    links = re.findall(r'<a href="([^"]*)"', page)
    assert links and all(link.startswith("/api/v1/run/resolve?") for link in links), links
    assert page.count("<a ") == len(links)
    form = page.split("<form method=post")[1].split("</form>")[0]
    fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', form))
    async with http.post(f"{RUN}/run", data=fields) as response:
        scheduled = await response.text()
        assert response.status == 200 and "scheduled" in scheduled, scheduled
    sources = re.findall(r'(?:src|href)="([^"]+)"', scheduled)
    assert sources and all(s.startswith("/api/v1/run/static/") for s in sources), sources
    assert 'data-terminal-id="1"' in scheduled and "/stream" in scheduled
    async with http.get(f"{RUN}/static/xterm.js") as response:
        assert response.status == 200 and response.content_type == "text/javascript"
    async with http.get(f"{RUN}/static/..%2Fpages.py") as response:
        assert response.status == 404
    async with http.ws_connect(f"{RUN}/t/1/stream") as ws:
        seen = b""
        while b"hello-run says" not in seen:
            message = await asyncio.wait_for(ws.receive(), 10)
            assert message.type == aiohttp.WSMsgType.BINARY, message
            seen += message.data
    async with http.get(
        f"{RUN}/go/hello-run", params={"pick": "first"}, headers={"Accept": "text/html"}
    ) as response:
        assert response.content_type == "text/html"
    async with http.get(
        f"{RUN}/go/hello-run", params={"pick": "index", "pick_index": "99"},
        headers={"Accept": "text/html"},
    ) as response:  # fmt: skip
        assert response.status == 400 and "pick_index out of range: 99" in await response.text()
    async with http.get(
        f"{RUN}/go/hello-run", params={"pick": "first", "redirect": "true"}, allow_redirects=False
    ) as response:
        assert response.status == 303
        assert response.headers["Location"] == f"{RUN}/t/1/view"
    async with http.get(
        f"{RUN}/go/hello-run",
        params={"pick": "first", "redirect_to": "/api/v1/run/health"},
        allow_redirects=False,
    ) as response:
        assert response.status == 303 and response.headers["Location"] == "/api/v1/run/health"

    async with http.get(f"{RUN}/t/1/view") as response:
        assert response.status == 200
        view = await response.text()
    assert "hello-run" in view and "/api/v1/run/static/xterm.js" in view
    assert "refresh" not in view  # live over the WebSocket, no page reloads
    async with http.get(f"{RUN}/t/9/view") as response:
        assert response.status == 404


async def test_openapi_documents_the_run_endpoints(http: aiohttp.ClientSession) -> None:
    """The served document is OpenAPI 3.0.3 and names the run schemas with the app_ prefix."""
    status, document = await get(http, f"{RUN}/openapi.json")
    assert status == 200 and document["openapi"] == "3.0.3"
    for path in ("/run", "/go/{rest}", "/t/{terminal_id}/go/{rest}", "/preflight",
                 "/recipes/{name}/run", "/batch"):  # fmt: skip
        assert f"{RUN}{path}" in document["paths"]
    schemas = document["components"]["schemas"]
    for name in ("app_RunResponse", "app_PreflightResponse", "app_EffectivePolicy",
                 "app_RunHandoff", "app_Selector"):  # fmt: skip
        assert name in schemas
    assert json.dumps(schemas["app_RunStatus"]["enum"]) == json.dumps(
        ["resolved", "scheduled", "dry-run", "printed-curl", "error"]
    )
