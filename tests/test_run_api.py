"""The run area over HTTP: search query parsing, clear 400/404/409 errors, runtime config
CRUD that persists, profiles, recipes, paging, jobs and batch."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from hoodyd.app import create_app
from hoodyd.polling import poll_until
from tests.conftest import make_config
from tests.data.apps.world import World, make_world

BASE = "/api/v1/run"


def run_app(state_dir: Path, **run_settings: object) -> web.Application:
    """The run area alone, with the daemon's own middlewares (no supervisord to start)."""
    config = make_config(state_dir, run={"auto_sync": False, **run_settings})
    return create_app(config, areas=("run",))


@pytest.fixture
def world(short_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    world = make_world(short_tmp / "w")
    world.write_config(short_tmp / "s")
    monkeypatch.setenv("PATH", f"{world.nix_bin}:{os.environ['PATH']}")  # the fake nix-env
    return world


async def synced_client(aiohttp_client, short_tmp: Path, **settings: object) -> TestClient:
    client: TestClient = await aiohttp_client(run_app(short_tmp / "s", **settings))
    job = await (await client.post(f"{BASE}/sources/sync")).json()
    done = await (
        await client.get(f"{BASE}/jobs/{job['job_id']}?wait=done&timeout_ms=60000")
    ).json()
    assert done["status"] == "done", done
    return client


async def test_search_query_aliases_lists_and_limit(
    aiohttp_client, short_tmp: Path, world: World
) -> None:
    """`q`/`name` alias `app`, `source` is repeatable or comma-joined, `limit` is clamped."""
    client = await synced_client(aiohttp_client, short_tmp)
    by_app = await (
        await client.get(f"{BASE}/search", params={"app": "jq", "source": "apt,nix"})
    ).json()
    by_q = await (await client.get(f"{BASE}/search?q=jq&source=apt&source=nix")).json()
    by_name = await (await client.get(f"{BASE}/search?name=jq&source=apt&source=nix")).json()
    assert [c["candidate_id"] for c in by_app["candidates"]] == ["apt:jq", "nixpkgs:jq"]
    assert by_q["candidates"] == by_app["candidates"] == by_name["candidates"]
    one = await (await client.get(f"{BASE}/search?app=co&limit=0")).json()
    assert len(one["candidates"]) == 1
    many = await client.get(f"{BASE}/search?app=co&limit=1000&kind=any&os=linux&tags=ide,editor")
    assert many.status == 200 and len((await many.json())["candidates"]) > 1


async def test_search_bad_input(aiohttp_client, short_tmp: Path, world: World) -> None:
    """Missing app names the field, unknown enums list the allowed values, unknown profile 404."""
    client = await synced_client(aiohttp_client, short_tmp)
    missing = await client.get(f"{BASE}/search?os=linux")
    body = await missing.json()
    assert missing.status == 400 and body["code"] == 400 and body["reason"] == "MISSING_FIELD"
    assert "'app'" in body["error"]
    bad_kind = await client.get(f"{BASE}/search?app=x&kind=tui")
    body = await bad_kind.json()
    assert bad_kind.status == 400 and body["reason"] == "INVALID_ENUM"
    assert body["error"] == "invalid value 'tui' for 'kind': allowed values are gui, cli, any"
    bad_source = await (await client.get(f"{BASE}/search?app=x&source=nix,snap")).json()
    assert (
        "allowed values are nix, pkgx, appimage, oci, registry, system, apt, flatpak, pypi, "
        "npm, any" in bad_source["error"]
    )
    bad_limit = await client.get(f"{BASE}/search?app=x&limit=ten")
    assert bad_limit.status == 400 and (await bad_limit.json())["reason"] == "INVALID_INTEGER"
    nope = await client.get(f"{BASE}/search?app=x&profile=nope")
    assert nope.status == 404 and (await nope.json())["reason"] == "PROFILE_NOT_FOUND"
    body_enum = await client.post(
        f"{BASE}/search/paged", json={"selector": {"app": "x", "arch": "mips"}}
    )
    assert body_enum.status == 400
    assert "allowed values are amd64, arm64, any" in (await body_enum.json())["error"]


async def test_sources_crud_persists_and_validates(
    aiohttp_client, short_tmp: Path, world: World
) -> None:
    """Sources are added, patched and deleted atomically; bad edits change nothing."""
    client = await synced_client(aiohttp_client, short_tmp)
    extra = {"source_id": "extra", "enabled": False, "priority": 10, "provider": "registry",
             "source_type": "manifest-registry",
             "config": {"path": str(world.manifest)}}  # fmt: skip
    added = await client.post(f"{BASE}/sources", json=extra)
    assert added.status == 201 and [s["source_id"] for s in await added.json()][-1] == "extra"
    patched = await client.patch(f"{BASE}/sources/extra", json={"enabled": True, "priority": 90})
    assert (await patched.json())["priority"] == 90
    stored = (short_tmp / "s" / "run" / "config.json").read_bytes()
    assert b'"priority": 90' in stored
    assert (await client.post(f"{BASE}/sources", json=extra)).status == 400  # duplicate
    mismatch = await client.post(
        f"{BASE}/sources", json={**extra, "source_id": "x", "provider": "nix"}
    )
    assert (await mismatch.json())["reason"] == "INVALID_SOURCE_PROVIDER"
    for source_type in ("app-image-git-hub-releases", "pkgx", "flatpak", "nix-flake"):
        wrong = await client.post(f"{BASE}/sources", json={
            "source_id": f"w-{source_type}", "enabled": False, "priority": 1,
            "provider": "apt", "source_type": source_type})  # fmt: skip
        assert (await wrong.json())["reason"] == "INVALID_SOURCE_PROVIDER", source_type
    bad_patch = await client.patch(f"{BASE}/sources/extra", json={"source_type": "apt"})
    assert bad_patch.status == 400 and (await bad_patch.json())["reason"] == "UNKNOWN_FIELD"
    assert (await client.patch(f"{BASE}/sources/ghost", json={"enabled": True})).status == 404
    bad_config = await client.patch(f"{BASE}/sources/extra", json={"config": {"path": 7}})
    assert (await bad_config.json())["reason"] == "INVALID_SOURCE_CONFIG"
    assert (await client.post(f"{BASE}/sources/ghost/sync")).status == 404
    assert (await client.get(f"{BASE}/sources/ghost/diagnostics")).status == 404
    config = await (await client.get(f"{BASE}/config")).json()
    assert config["version"] == 1 and config["sources"][-1]["priority"] == 90
    assert (short_tmp / "s" / "run" / "config.json").read_bytes() == stored  # bad edits: no write
    deleted = await client.delete(f"{BASE}/sources/extra")
    assert deleted.status == 204 and await deleted.read() == b""
    assert (await client.delete(f"{BASE}/sources/extra")).status == 404
    await client.close()
    again: TestClient = await aiohttp_client(run_app(short_tmp / "s"))
    sources = await (await again.get(f"{BASE}/sources")).json()
    assert [s["source_id"] for s in sources] == ["system-path", "apt", "nixpkgs", "team"]


async def test_profiles_select_and_defaults(aiohttp_client, short_tmp: Path, world: World) -> None:
    """A selected profile's defaults apply to later searches; deleting it clears the selection."""
    client = await synced_client(aiohttp_client, short_tmp)
    profile = {"name": "desk", "defaults": {"kind": "gui", "limit": 5}}
    assert (await client.post(f"{BASE}/profiles", json=profile)).status == 201
    assert (await client.post(f"{BASE}/profiles", json=profile)).status == 400
    bad = await client.post(f"{BASE}/profiles", json={"name": "y", "sources_mode": "only"})
    assert "allowed values are inherit, allowlist" in (await bad.json())["error"]
    selected = await client.post(f"{BASE}/profiles/desk/select")
    assert await selected.json() == {"selected_profile": "desk"}
    found = await (await client.get(f"{BASE}/search?app=code")).json()
    assert {c["kind"] for c in found["candidates"]} == {"gui"}
    explicit = await (await client.get(f"{BASE}/search?app=code&kind=cli")).json()
    assert {c["kind"] for c in explicit["candidates"]} == {"cli"}
    patched = await client.patch(f"{BASE}/profiles/desk", json={"description": "desktop apps"})
    assert (await patched.json())["defaults"]["kind"] == "gui"
    assert (await client.post(f"{BASE}/profiles/ghost/select")).status == 404
    assert (await client.delete(f"{BASE}/profiles/desk")).status == 204
    config = await (await client.get(f"{BASE}/config")).json()
    assert "selected_profile" not in config and config["profiles"] == []


async def test_recipes_search_and_override_rules(
    aiohttp_client, short_tmp: Path, world: World
) -> None:
    """A recipe searches with its template; overrides outside allowed_overrides are a 400."""
    client = await synced_client(aiohttp_client, short_tmp)
    recipe = {"name": "json", "selector_template": {"app": "jq", "source": ["apt"]},
              "allowed_overrides": ["limit", "kind"]}  # fmt: skip
    assert (await client.post(f"{BASE}/recipes", json=recipe)).status == 201
    bad = await client.post(f"{BASE}/recipes", json={"name": "z", "allowed_overrides": ["appp"]})
    assert (await bad.json())["reason"] == "INVALID_RECIPE"
    assert (await (await client.get(f"{BASE}/recipes/json")).json())["name"] == "json"
    found = await (
        await client.post(f"{BASE}/recipes/json/search", json={"overrides": {"limit": 1}})
    ).json()
    assert [c["candidate_id"] for c in found["candidates"]] == ["apt:jq"]
    assert (await client.post(f"{BASE}/recipes/json/search")).status == 200
    refused = await client.post(f"{BASE}/recipes/json/search", json={"overrides": {"app": "vim"}})
    assert (
        refused.status == 400
        and (await refused.json())["error"] == "recipe override not allowed: app"
    )
    patched = await client.patch(f"{BASE}/recipes/json", json={"description": "JSON tools"})
    assert (await patched.json())["description"] == "JSON tools"
    assert (await client.delete(f"{BASE}/recipes/json")).status == 204
    assert (await client.get(f"{BASE}/recipes/json")).status == 404
    assert await (await client.get(f"{BASE}/recipes")).json() == []


async def test_paged_search_walks_and_expires(
    aiohttp_client, short_tmp: Path, world: World
) -> None:
    """Pages follow the opaque cursor through one set; an expired set is a 409."""
    client = await synced_client(aiohttp_client, short_tmp, candidate_set_ttl=1.0)
    made = time.monotonic()  # no later than the set below was made
    selector = {"app": "co", "os": "linux", "kind": "any"}
    seen: list[str] = []
    page = await (
        await client.post(f"{BASE}/search/paged", json={"selector": selector, "page_size": 2})
    ).json()
    total, set_id = page["total_count"], page["set_id"]
    while True:
        assert page["set_id"] == set_id and len(page["items"]) <= 2
        seen += [c["candidate_id"] for c in page["items"]]
        if not page.get("next_cursor"):
            break
        body = {"selector": selector, "page_size": 2, "cursor": page["next_cursor"]}
        page = await (await client.post(f"{BASE}/search/paged", json=body)).json()
    assert len(seen) == total == len(set(seen)) and total >= 3
    first = await (
        await client.post(f"{BASE}/search/paged", json={"selector": selector, "page_size": 1})
    ).json()
    other = await client.post(
        f"{BASE}/search/paged", json={"selector": {"app": "jq"}, "cursor": first["next_cursor"]}
    )
    assert (await other.json())["reason"] == "CURSOR_SELECTOR_MISMATCH"
    garbage = await client.post(f"{BASE}/search/paged", json={"selector": selector, "cursor": "!!"})
    assert garbage.status == 400 and (await garbage.json())["reason"] == "INVALID_CURSOR"

    async def expired() -> dict[str, object] | None:
        answer = await client.post(
            f"{BASE}/search/paged", json={"selector": selector, "cursor": first["next_cursor"]}
        )
        if answer.status == 200:
            return None  # the set still lives: reading it does not extend it
        return {"status": answer.status, "body": await answer.json()}

    # a hang guard many times the TTL; the TTL itself is what the 409 and the clock check
    gone = await poll_until(expired, timeout=30, interval=0.05)
    assert gone is not None, "the set never expired"
    assert time.monotonic() - made >= 1.0, "the set expired before its TTL"
    assert gone["status"] == 409
    assert gone["body"] == {
        "error": "cursor set expired",
        "code": 409,
        "reason": "CURSOR_SET_EXPIRED",
    }


async def test_search_jobs_and_job_errors(aiohttp_client, short_tmp: Path, world: World) -> None:
    """A search job answers the search body; bad selectors and unknown jobs are errors."""
    client = await synced_client(aiohttp_client, short_tmp)
    created = await client.post(f"{BASE}/search/jobs", json={"app": "jq", "source": ["apt"]})
    assert created.status == 202
    job = await created.json()
    done = await (
        await client.get(f"{BASE}/jobs/{job['job_id']}?wait=done&timeout_ms=10000")
    ).json()
    assert done["status"] == "done" and done["result_type"] == "search-response"
    assert done["result"]["candidates"][0]["candidate_id"] == "apt:jq" and done["result"]["set_id"]
    wrapped = await client.post(f"{BASE}/search/jobs", json={"selector": {"app": "jq"}})
    assert wrapped.status == 400 and (await wrapped.json())["error"].startswith(
        "missing field 'app'"
    )
    missing = await client.get(f"{BASE}/jobs/00000000-0000-0000-0000-000000000000")
    assert missing.status == 404 and (await missing.json())["reason"] == "JOB_NOT_FOUND"
    bad_wait = await client.get(f"{BASE}/jobs/{job['job_id']}?wait=forever")
    assert bad_wait.status == 400


async def test_batch_items_fail_alone(aiohttp_client, short_tmp: Path, world: World) -> None:
    """Batch answers each item in order: searches, a command-only run, errors for bad items."""
    client = await synced_client(aiohttp_client, short_tmp)
    items = [
        {"request_id": "a", "mode": "search", "selector": {"app": "jq", "source": ["apt"]}},
        {"request_id": "b", "mode": "run", "selector": {"app": "jq", "pick": "first"}},
        {"request_id": "c", "mode": "search", "selector": {"os": "linux"}},
        {"request_id": "d", "mode": "explore", "selector": {"app": "jq"}},
    ]
    response = await client.post(f"{BASE}/batch", json={"items": items})
    results = (await response.json())["items"]
    assert [r["request_id"] for r in results] == ["a", "b", "c", "d"]
    assert (
        results[0]["result"] == "search"
        and results[0]["search"]["candidates"][0]["candidate_id"] == "apt:jq"
    )
    assert results[1]["result"] == "run" and results[1]["run"]["status"] == "dry-run"
    assert results[1]["run"]["shell_command"] == results[1]["run"]["selected"]["shell_command"]
    assert results[2]["error"]["code"] == 400 and "'app'" in results[2]["error"]["error"]
    assert "allowed values are search, run" in results[3]["error"]["error"]
    assert (await client.post(f"{BASE}/batch", data=b"{")).status == 400
    too_many = await client.post(f"{BASE}/batch", json={"items": [items[0]] * 101})
    assert too_many.status == 400 and (await too_many.json())["reason"] == "BATCH_TOO_LARGE"


async def test_sync_jobs_and_diagnostics(aiohttp_client, short_tmp: Path, world: World) -> None:
    """Source sync is a job with progress; diagnostics report count, last sync, age and errors."""
    client = await synced_client(aiohttp_client, short_tmp)
    job = await (await client.post(f"{BASE}/sources/apt/sync")).json()
    assert job["kind"] == "source-sync" and job["status"] in ("queued", "running")
    done = await (
        await client.get(f"{BASE}/jobs/{job['job_id']}?wait=done&timeout_ms=30000")
    ).json()
    assert done["status"] == "done" and done["result"]["records"] == 4
    assert done["progress"]["source_id"] == "apt"
    diagnostics = await (await client.get(f"{BASE}/sources/apt/diagnostics")).json()
    assert diagnostics["status"] == "ok" and diagnostics["last_sync_job_id"] == job["job_id"]
    details = diagnostics["provider_details"]
    assert details["record_count"] == 4 and details["age_s"] >= 0 and details["last_sync_at"]
    broken = {"source_id": "remote", "enabled": True, "priority": 1, "provider": "registry",
              "source_type": "manifest-remote-index",
              "config": {"url": "http://127.0.0.1:9/none.json"}}  # fmt: skip
    assert (await client.post(f"{BASE}/sources", json=broken)).status == 201
    job = await (await client.post(f"{BASE}/sources/remote/sync")).json()
    failed = await (
        await client.get(f"{BASE}/jobs/{job['job_id']}?wait=done&timeout_ms=30000")
    ).json()
    assert failed["status"] == "error" and "127.0.0.1:9" in failed["error"]
    diagnostics = await (await client.get(f"{BASE}/sources/remote/diagnostics")).json()
    assert diagnostics["status"] == "error" and diagnostics["last_error"] == failed["error"]
    found = await (await client.get(f"{BASE}/search?app=jq&source=apt")).json()
    assert found["candidates"][0]["candidate_id"] == "apt:jq"
    health = await (await client.get(f"{BASE}/health")).json()
    assert health["status"] == "ok" and health["service"] == "hoodyd-run"


async def test_search_and_run_share_the_selector_rules(
    aiohttp_client, short_tmp: Path, world: World
) -> None:
    """An unknown parameter (`dryrun=1`) and a repeated `app` are the same 400s on `/search`
    as on `/run`: one Selector decoder reads both queries."""
    client = await synced_client(aiohttp_client, short_tmp)
    for path in ("search", "run"):
        unknown = await client.get(f"{BASE}/{path}?app=jq&dryrun=1")
        body = await unknown.json()
        assert unknown.status == 400 and body["reason"] == "UNKNOWN_PARAMETER", (path, body)
        assert "dryrun" in body["error"]
        twice = await client.get(f"{BASE}/{path}?app=jq&app=code")
        body = await twice.json()
        assert twice.status == 400 and body["code"] == 400, (path, body)
        aliased = await client.get(f"{BASE}/{path}?app=jq&q=code")
        assert (await aliased.json())["reason"] == "DUPLICATE_PARAMETER", path


def slow_nix_env(world: World, seconds: float) -> None:
    """The world's fake `nix-env` answers after `seconds`, as a real one does on a cold cache."""
    fake = world.nix_bin / "nix-env"
    body = fake.read_text().replace("#!/bin/sh\n", f"#!/bin/sh\nsleep {seconds}\n", 1)
    fake.write_text(body)


async def test_searches_say_which_sources_are_still_syncing(
    aiohttp_client, short_tmp: Path, world: World
) -> None:
    """Right after a first start, a source whose first sync outlasts the bounded wait is
    named in a SOURCE_SYNCING warning on search and run answers, and its diagnostics say
    the sync is under way; once it lands, its records are searched and the warning goes."""
    slow_nix_env(world, 2.0)
    client: TestClient = await aiohttp_client(
        run_app(short_tmp / "s", auto_sync=True, first_sync_wait_ms=100)
    )
    body = await (await client.get(f"{BASE}/search?app=vscode")).json()
    assert {"code": "SOURCE_SYNCING", "source_id": "nixpkgs"} in [
        {"code": w["code"], "source_id": w.get("source_id")} for w in body["warnings"]
    ]
    assert "nixpkgs:vscode" not in [c["candidate_id"] for c in body["candidates"]]
    run = await (await client.get(f"{BASE}/run?app=vscode&pick=first&dry_run=1")).json()
    assert "SOURCE_SYNCING" in [w["code"] for w in run["warnings"]]
    diagnostics = await (await client.get(f"{BASE}/sources/nixpkgs/diagnostics")).json()
    assert diagnostics["effective_enabled_reason"] == "enabled; the first sync is under way"
    job = diagnostics["last_sync_job_id"]
    await client.get(f"{BASE}/jobs/{job}?wait=done&timeout_ms=30000")
    body = await (await client.get(f"{BASE}/search?app=vscode")).json()
    # other sources may still run their own first sync on a busy machine: nixpkgs' is over
    assert "nixpkgs" not in [w.get("source_id") for w in body.get("warnings", [])]
    assert "nixpkgs:vscode" in [c["candidate_id"] for c in body["candidates"]]


async def test_a_first_search_waits_a_bounded_time_for_fast_sources(
    aiohttp_client, short_tmp: Path, world: World
) -> None:
    """A first sync that lands within `first_sync_wait_ms` is waited for: the very first
    search already has its records and no warning."""
    slow_nix_env(world, 0.3)
    client: TestClient = await aiohttp_client(
        run_app(short_tmp / "s", auto_sync=True, first_sync_wait_ms=10_000)
    )
    body = await (await client.get(f"{BASE}/search?app=vscode")).json()
    assert "warnings" not in body
    assert "nixpkgs:vscode" in [c["candidate_id"] for c in body["candidates"]]


async def test_diagnostics_name_the_cause_and_the_fix(
    aiohttp_client, short_tmp: Path, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A disabled nix source on a machine without nix says nix is missing and how to get
    it and enable the source; a failing manifest says what failed and how to sync again."""
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no nix here
    client = await synced_client(aiohttp_client, short_tmp)
    patched = await client.patch(f"{BASE}/sources/nixpkgs", json={"enabled": False})
    assert patched.status == 200
    nix = await (await client.get(f"{BASE}/sources/nixpkgs/diagnostics")).json()
    assert nix["status"] == "disabled"
    reason = nix["effective_enabled_reason"]
    assert "nix not found on PATH" in reason and "install nix" in reason
    assert 'PATCH /api/v1/run/sources/nixpkgs {"enabled": true}' in reason
    assert nix["provider_details"]["cause"] == "nix not found on PATH"
    world.manifest.write_text("{not json")
    job = await (await client.post(f"{BASE}/sources/team/sync")).json()
    await client.get(f"{BASE}/jobs/{job['job_id']}?wait=done&timeout_ms=30000")
    team = await (await client.get(f"{BASE}/sources/team/diagnostics")).json()
    assert team["status"] == "error"
    assert team["effective_enabled_reason"].startswith("enabled; the last sync failed: ")
    assert "POST /api/v1/run/sources/team/sync" in team["effective_enabled_reason"]
