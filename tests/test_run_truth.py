"""The run area keeps its word against ground truth: every link reproduces its candidate, a
package runs what it ships, the owner's policy holds on every route, preflight says what the
run does, a stale set is caught, and search shows the command the run uses."""

from __future__ import annotations

import json
import os
import shutil
import textwrap
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from hoodyd.app import create_app
from hoodyd.apps.catalog.sources.apt import read_status
from tests.conftest import make_config
from tests.data.apps.world import executable
from tests.run_world import RUN, run_world

DPKG_STATUS = Path("/var/lib/dpkg/status")
DPKG_INFO = Path("/var/lib/dpkg/info")
HAS_DPKG = DPKG_STATUS.is_file() and DPKG_INFO.is_dir() and shutil.which("apt-get") is not None


def run_app(state_dir: Path) -> web.Application:
    """The run area alone (no terminal service: runs answer `dry-run`)."""
    return create_app(make_config(state_dir, run={"auto_sync": False}), areas=("run",))


async def sync_all(client: TestClient) -> None:
    job = await (await client.post(f"{RUN}/sources/sync")).json()
    done = await (await client.get(f"{RUN}/jobs/{job['job_id']}?wait=done&timeout_ms=60000")).json()
    assert done["status"] == "done", done


def write_config(state_dir: Path, sources: list[dict[str, Any]], **extra: Any) -> None:
    target = state_dir / "run" / "config.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps({"version": 1, "sources": sources, "profiles": [], **extra}))


def big_world(root: Path, count: int = 500) -> list[dict[str, Any]]:
    """`count` PATH executables and `count // 5` desktop entries all matching `tool`."""
    bin_dir, apps = root / "bin", root / "applications"
    apps.mkdir(parents=True)
    for n in range(count):
        executable(bin_dir / f"tool-{n:03d}")
    for n in range(count // 5):
        terminal = "true" if n % 2 else "false"
        (apps / f"tool-window-{n:03d}.desktop").write_text(
            textwrap.dedent(f"""\
                [Desktop Entry]
                Name=Tool Window {n}
                Exec={bin_dir}/tool-{n:03d} --window %U
                Terminal={terminal}
                Type=Application
            """)
        )
    return [
        {"source_id": "system-path", "enabled": True, "priority": 60, "provider": "system",
         "source_type": "system-path",
         "config": {"path": str(bin_dir), "applications_dirs": [str(apps)]}},
    ]  # fmt: skip


async def follow(client: TestClient, href: str) -> dict[str, Any]:
    response = await client.get(href)
    body: dict[str, Any] = await response.json()
    assert response.status == 200, (href, body)
    return body


async def test_every_link_of_large_sets_reproduces_its_candidate(
    aiohttp_client, short_tmp: Path
) -> None:
    """Every candidate's href_path, at any rank of a limit=100 search and on every page of a
    paged search of hundreds of candidates, resolves exactly that candidate and its command."""
    state = short_tmp / "s"
    write_config(state, big_world(short_tmp / "w"))
    client: TestClient = await aiohttp_client(run_app(state))
    await sync_all(client)
    listed = await (await client.get(f"{RUN}/search?app=tool&limit=100")).json()
    candidates = list(listed["candidates"])
    assert len(candidates) == 100
    cursor: str | None = None
    while True:
        body: dict[str, Any] = {"selector": {"app": "tool"}, "page_size": 100}
        if cursor:
            body["cursor"] = cursor
        page = await (await client.post(f"{RUN}/search/paged", json=body)).json()
        candidates += page["items"]
        cursor = page.get("next_cursor")
        if not cursor:
            break
    assert page["total_count"] > 300 and len(candidates) == 100 + page["total_count"]
    gui = await (await client.get(f"{RUN}/search?app=tool&kind=gui&limit=100")).json()
    candidates += gui["candidates"]
    for candidate in candidates:
        answer = await follow(client, candidate["href_path"])
        selected = answer["selected"]
        assert selected["candidate_id"] == candidate["candidate_id"]
        assert selected["execution_plan"]["argv"] == candidate["execution_plan"]["argv"]
        assert answer["shell_command"] == candidate["shell_command"]
        assert selected["kind"] == candidate["kind"]


async def test_links_carry_the_search_they_were_found_in(aiohttp_client, short_tmp: Path) -> None:
    """A link carries the app, the profile the request named and its filters, never the
    pick state of a set; an id outside what the search could offer is still a 400."""
    state = short_tmp / "s"
    write_config(
        state,
        big_world(short_tmp / "w", count=50),
        profiles=[{"name": "windows", "defaults": {"kind": "gui"}}],
    )
    client: TestClient = await aiohttp_client(run_app(state))
    await sync_all(client)
    found = await (await client.get(f"{RUN}/search?app=tool&profile=windows&limit=3")).json()
    href = found["candidates"][0]["href_path"]
    query = dict(parse_qsl(urlsplit(href).query))
    assert query["profile"] == "windows" and query["kind"] == "gui" and query["pick"] == "id"
    assert "set_id" not in query and "limit" not in query
    bad = await client.get(f"{RUN}/resolve?app=tool&pick=id&candidate_id=system-path:/nope")
    assert bad.status == 400 and (await bad.json())["reason"] == "INVALID_PICK"


async def test_search_shell_command_is_the_runs(aiohttp_client, short_tmp: Path) -> None:
    """A GUI candidate's shell_command in a search carries the DISPLAY the run then uses, for
    the default terminal and for the terminal and display a profile's defaults name."""
    state = short_tmp / "s"
    write_config(
        state,
        big_world(short_tmp / "w", count=20),
        profiles=[
            {"name": "seven", "defaults": {"terminal_id": 7}},
            {"name": "three", "defaults": {"display": ":3"}},
        ],
    )
    client: TestClient = await aiohttp_client(run_app(state))
    await sync_all(client)
    for extra in ("", "&profile=seven", "&profile=three"):
        found = await (await client.get(f"{RUN}/search?app=tool&limit=30{extra}")).json()
        assert "candidates" in found, found
        kinds = {c["kind"] for c in found["candidates"]}
        assert kinds == {"gui", "cli"}
        for candidate in found["candidates"]:
            run = await (
                await client.get(
                    f"{RUN}/run?app=tool&pick=id&dry_run=true{extra}",
                    params={"candidate_id": candidate["candidate_id"]},
                )
            ).json()
            assert candidate["shell_command"] == run["shell_command"], candidate["candidate_id"]
            if candidate["kind"] == "gui":
                assert run["shell_command"].startswith("DISPLAY=")


async def test_set_pick_after_resync_re_resolves_or_refuses(
    aiohttp_client, short_tmp: Path
) -> None:
    """A pick from a set whose source re-synced warns SET_STALE and runs the same candidate
    id as the source now has it, or is a 409 naming the change when the id is gone."""
    state, root = short_tmp / "s", short_tmp / "w"
    root.mkdir()
    manifest = root / "apps.json"

    def write(apps: list[tuple[str, list[str]]]) -> None:
        manifest.write_text(
            json.dumps(
                {"version": 1,
                 "apps": [{"id": i, "title": i, "argv": a, "installed": True} for i, a in apps]}
            )
        )  # fmt: skip

    write([("stale-a", ["/bin/echo", "old"]), ("stale-b", ["/bin/echo", "b"])])
    write_config(
        state,
        [{"source_id": "team", "enabled": True, "priority": 70, "provider": "registry",
          "source_type": "trusted-list-file", "config": {"path": str(manifest)}}],
    )  # fmt: skip
    client: TestClient = await aiohttp_client(run_app(state))
    await sync_all(client)
    found = await (await client.get(f"{RUN}/search?app=stale")).json()
    ids = [c["candidate_id"] for c in found["candidates"]]
    set_id = found["set_id"]
    fresh = await (
        await client.get(f"{RUN}/run?app=stale&pick=index&pick_index=0&set_id={set_id}&dry_run=1")
    ).json()
    assert "SET_STALE" not in json.dumps(fresh)
    write([("stale-a", ["/bin/echo", "new"])])
    await sync_all(client)
    index_a = ids.index("team:stale-a")
    picked = await client.get(
        f"{RUN}/run?app=stale&pick=index&pick_index={index_a}&set_id={set_id}&dry_run=1"
    )
    body = await picked.json()
    assert picked.status == 200, body
    assert body["selected"]["execution_plan"]["argv"] == ["/bin/echo", "new"]
    assert [w["code"] for w in body["warnings"]].count("SET_STALE") == 1
    gone = await client.get(
        f"{RUN}/run?app=stale&pick=id&candidate_id=team:stale-b&set_id={set_id}&dry_run=1"
    )
    error = await gone.json()
    assert gone.status == 409 and error["reason"] == "SET_STALE"
    assert "team" in error["error"] and "team:stale-b" in error["error"]


@pytest.mark.skipif(not HAS_DPKG, reason="needs this machine's dpkg data and apt-get (Debian)")
async def test_installed_packages_run_what_they_ship(aiohttp_client, short_tmp: Path) -> None:
    """Against this machine's dpkg data: every installed package either plans a program that
    exists (on PATH, or by full path from its desktop entry) with the kind its entry's
    Terminal= gives, or is refused with a reason and never scheduled; none gets an install
    hint."""
    state = short_tmp / "s"
    write_config(
        state,
        [{"source_id": "apt", "enabled": True, "priority": 50, "provider": "apt",
          "source_type": "apt", "config": {"lists": []}}],
    )  # fmt: skip
    client: TestClient = await aiohttp_client(run_app(state))
    await sync_all(client)
    installed = sorted(read_status(DPKG_STATUS))
    runnable = refused = 0
    for package in installed:
        response = await client.post(
            f"{RUN}/preflight",
            json={
                "app": package,
                "pick": "id",
                "candidate_id": f"apt:{package}",
                "source": ["apt"],
            },
        )
        answer = await response.json()
        assert response.status == 200, (package, answer)
        selected = answer["selected"]
        hints = [h["code"] for h in selected["execution_plan"].get("side_effect_hints") or []]
        assert "install" not in hints, package
        argv = selected["execution_plan"]["argv"]
        if selected.get("requirements"):
            refused += 1
            codes = [w["code"] for w in answer["warnings"]]
            assert "MISSING_REQUIREMENT" in codes and answer["would_schedule"] is False, package
            continue
        runnable += 1
        program = argv[0]
        if program.startswith("/"):
            assert os.access(program, os.X_OK), (package, argv)
        else:
            assert shutil.which(program) is not None, (package, argv)
    assert runnable and refused
    entry = Path("/usr/share/applications/python3.11.desktop")
    if entry.exists() and "python3.11" in installed:
        python = await (
            await client.get(f"{RUN}/resolve?app=python3.11&pick=id&candidate_id=apt:python3.11")
        ).json()
        assert python["selected"]["kind"] == "cli"  # Terminal=true
        assert not python["shell_command"].startswith("DISPLAY=")
    if Path("/usr/lib/notification-daemon/notification-daemon").exists():
        daemon = await (
            await client.get(f"{RUN}/resolve?app=notification-daemon&pick=id"
                             "&candidate_id=apt:notification-daemon")
        ).json()  # fmt: skip
        assert daemon["selected"]["execution_plan"]["argv"] == [
            "/usr/lib/notification-daemon/notification-daemon"
        ]


@pytest.mark.skipif(not HAS_DPKG, reason="needs this machine's dpkg data and apt-get (Debian)")
async def test_a_package_with_nothing_to_run_is_never_scheduled() -> None:
    """base-files ships no program and no desktop entry: a real run is a 409 that says so,
    and the terminal is never asked (its history stays empty)."""
    if "base-files" not in read_status(DPKG_STATUS):
        pytest.skip("base-files is not installed here")
    with run_world() as world:
        async with aiohttp.ClientSession(
            connector=aiohttp.UnixConnector(path=world.socket), base_url="http://localhost"
        ) as http:
            add = await http.post(
                f"{RUN}/sources",
                json={"source_id": "apt", "enabled": True, "priority": 50, "provider": "apt",
                      "source_type": "apt", "config": {"lists": []}},
            )  # fmt: skip
            assert add.status in (200, 201), await add.text()
            job = await (await http.post(f"{RUN}/sources/apt/sync")).json()
            await http.get(f"{RUN}/jobs/{job['job_id']}?wait=done&timeout_ms=60000")
            response = await http.get(
                f"{RUN}/run?app=base-files&pick=id&candidate_id=apt:base-files&terminal_id=3"
            )
            body = await response.json()
            assert response.status == 409 and body["reason"] == "REQUIREMENTS_MISSING", body
            assert "ships no program" in body["error"]
            history = await http.get("/api/v1/terminal/history/3")
            assert history.status == 404 or "base-files" not in await history.text()


async def test_preflight_says_what_the_run_says(aiohttp_client, short_tmp: Path) -> None:
    """Preflight's mode, requirements and warnings equal the dry run's for the same selector,
    MISSING_REQUIREMENT warnings included (a GUI app with no display here)."""
    state = short_tmp / "s"
    write_config(state, big_world(short_tmp / "w", count=10))
    client: TestClient = await aiohttp_client(run_app(state))
    await sync_all(client)
    found = await (await client.get(f"{RUN}/search?app=tool&kind=gui&limit=1")).json()
    candidate_id = found["candidates"][0]["candidate_id"]
    selector = {"app": "tool", "pick": "id", "candidate_id": candidate_id, "display": ":97"}
    preflight = await (await client.post(f"{RUN}/preflight", json=selector)).json()
    run = await (await client.post(f"{RUN}/run", json=selector)).json()
    assert run["status"] == "dry-run"  # no terminal service in this app
    codes = [w["code"] for w in preflight["warnings"]]
    assert codes == [w["code"] for w in run["warnings"]]
    assert "MISSING_REQUIREMENT" in codes and "TERMINALS_UNAVAILABLE" in codes
    assert preflight["missing_requirements"] == run["missing_requirements"]
    assert preflight["shell_command"] == run["shell_command"]
    assert preflight["would_schedule"] is False


async def test_diagnostics_do_not_claim_a_configured_source_lacks_its_config(
    aiohttp_client, short_tmp: Path
) -> None:
    """A manifest source with config.path that synced is `ok` and not said to need config."""
    state, root = short_tmp / "s", short_tmp / "w"
    root.mkdir()
    (root / "apps.json").write_text(json.dumps({"version": 1, "apps": []}))
    write_config(
        state,
        [{"source_id": "team", "enabled": True, "priority": 70, "provider": "registry",
          "source_type": "manifest-registry", "config": {"path": str(root / "apps.json")}}],
    )  # fmt: skip
    client: TestClient = await aiohttp_client(run_app(state))
    await sync_all(client)
    diagnostics = await (await client.get(f"{RUN}/sources/team/diagnostics")).json()
    assert diagnostics["status"] == "ok"
    assert "needs config" not in json.dumps(diagnostics)


# --- the owner's policy on every route ----------------------------------------------------


async def _setup_denied_world(http: aiohttp.ClientSession, root: Path, marker: Path) -> None:
    program = executable(root / "mf-bin" / "mf-tool", f"#!/bin/sh\ntouch {marker}\n")
    (root / "mf.json").write_text(
        json.dumps({"version": 1, "apps": [{"id": "mf-tool", "title": "MF Tool",
                                            "argv": [str(program)], "installed": True}]})
    )  # fmt: skip
    add = await http.post(
        f"{RUN}/sources",
        json={"source_id": "mf", "enabled": True, "priority": 90, "provider": "registry",
              "source_type": "manifest-registry", "config": {"path": str(root / "mf.json")}},
    )  # fmt: skip
    assert add.status in (200, 201), await add.text()
    job = await (await http.post(f"{RUN}/sources/mf/sync")).json()
    await http.get(f"{RUN}/jobs/{job['job_id']}?wait=done&timeout_ms=30000")
    for profile in (
        {"name": "nomf", "policy": {"deny_providers": ["registry"], "deny_source_ids": ["mf"],
                                    "allow_delegated_execution": True}},
        {"name": "open", "policy": {"allow_delegated_execution": True, "allow_redirect": True}},
    ):  # fmt: skip
        made = await http.post(f"{RUN}/profiles", json=profile)
        assert made.status in (200, 201), await made.text()
    recipe = {"name": "mf-open", "selector_template": {"app": "mf-tool", "profile": "open",
                                                       "pick": "first"}}  # fmt: skip
    assert (await http.post(f"{RUN}/recipes", json=recipe)).status in (200, 201)


async def test_a_named_profile_cannot_sidestep_the_selected_profiles_denies() -> None:
    """With `nomf` selected, no route runs, prints or resolves a denied source's app, whatever
    profile the request names: /run, /resolve, go paths, /t/{id}/go, batch, recipes, a set made
    before the selection, print_curl; the stand-in program's marker file never appears."""
    with run_world() as world:
        marker = world.root / "mf-ran"
        async with aiohttp.ClientSession(
            connector=aiohttp.UnixConnector(path=world.socket), base_url="http://localhost"
        ) as http:
            await _setup_denied_world(http, world.root, marker)
            old = await (await http.get(f"{RUN}/search?app=mf-tool")).json()
            assert old["candidates"][0]["candidate_id"] == "mf:mf-tool"
            assert (await http.post(f"{RUN}/profiles/nomf/select")).status == 200
            refused = {
                "run": await http.get(f"{RUN}/run?app=mf-tool&pick=first&profile=open"),
                "run-id": await http.get(
                    f"{RUN}/run?app=mf-tool&pick=id&candidate_id=mf:mf-tool&profile=open"
                ),
                "resolve": await http.get(f"{RUN}/resolve?app=mf-tool&pick=first&profile=open"),
                "go": await http.get(f"{RUN}/go/app/mf-tool/profile/open/pick/first"),
                "t-go": await http.get(f"{RUN}/t/1/go/app/mf-tool/profile/open/pick/first"),
                "curl": await http.get(
                    f"{RUN}/run?app=mf-tool&pick=first&profile=open&print_curl=hoody-run"
                ),
                "recipe": await http.post(f"{RUN}/recipes/mf-open/run", json={}),
                "set": await http.get(
                    f"{RUN}/run?app=mf-tool&pick=index&pick_index=0&set_id={old['set_id']}"
                    "&profile=open"
                ),
                "post-run": await http.post(
                    f"{RUN}/run", json={"app": "mf-tool", "pick": "first", "profile": "open"}
                ),
            }
            for route, response in refused.items():
                body = await response.json()
                assert response.status in (403, 404), (route, response.status, body)
                assert "scheduled" not in json.dumps(body), route
            batch = await (
                await http.post(
                    f"{RUN}/batch",
                    json={"items": [
                        {"request_id": "s", "mode": "search",
                         "selector": {"app": "mf-tool", "profile": "open"}},
                        {"request_id": "r", "mode": "run",
                         "selector": {"app": "mf-tool", "profile": "open", "pick": "first"}},
                    ]},
                )
            ).json()  # fmt: skip
            search, run = batch["items"]
            assert all(c["source_id"] != "mf" for c in search["search"]["candidates"])
            assert run["result"] == "error" and run["error"]["code"] == 404
            named = await (await http.get(f"{RUN}/search?app=mf-tool&profile=open")).json()
            assert all(c["source_id"] != "mf" for c in named["candidates"])
            # the delegation switch of the selected profile holds against a named one too
            patched = await http.patch(
                f"{RUN}/profiles/nomf", json={"policy": {"deny_source_ids": ["mf"],
                                                          "allow_delegated_execution": False}}
            )  # fmt: skip
            assert patched.status == 200, await patched.text()
            dry = await (await http.get(f"{RUN}/run?app=hello-run&pick=first&profile=open")).json()
            assert dry["status"] == "dry-run"
            assert "DELEGATION_DISABLED" in [w["code"] for w in dry["warnings"]]
            assert dry["effective_policy"]["allow_delegated_execution"] is False
            # the terminal was never asked: no command in any terminal's history
            for terminal_id in (1, 3):
                history = await http.get(f"/api/v1/terminal/history/{terminal_id}")
                if history.status == 200:
                    assert "mf-tool" not in await history.text()
        assert not marker.exists()
