"""Destructive candidates (reboot, shutdown, mkfs.ext4, ...) stay searchable but run only when
picked by id: `pick=first`, `pick=index`, a fuzzy query and a printed curl line are refused
and schedule nothing; dry runs, preflight and batch items show the plan with a warning.

The programs are stand-ins in a temp dir, found by a real system-path source whose PATH is
that dir alone: each writes a marker file named after itself if it ever runs."""

from __future__ import annotations

import http.client
import json
import socket as socket_module
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from hoodyd.apps.run.destructive import classify
from tests.conftest import wait_until
from tests.run_world import RUN, TERMINAL, RunWorld, run_world, wait_result

DESTRUCTIVE = ("reboot", "shutdown", "mkfs.ext4")
# stand-ins the former name list let through: a PATH program, and a desktop entry whose Exec
# quits the session through `sh -c` (the bare `gnome-session-quit` is harmless on its own)
LVREMOVE, QUIT = "lvremove", "gnome-session-quit"
DESKTOP_APP = "quit-session"
HARMLESS = "disk-report"
REASON = "DESTRUCTIVE_NEEDS_EXPLICIT_PICK"


def _request(socket: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    class UnixConnection(http.client.HTTPConnection):
        def connect(self) -> None:
            self.sock = socket_module.socket(socket_module.AF_UNIX, socket_module.SOCK_STREAM)
            self.sock.connect(socket)

    connection = UnixConnection("localhost")
    try:
        payload = json.dumps(body) if body is not None else None
        headers = {"Content-Type": "application/json"} if payload else {}
        connection.request(method, path, body=payload, headers=headers)
        response = connection.getresponse()
        raw = response.read()
        return response.status, json.loads(raw) if raw else None
    finally:
        connection.close()


def _wait_for(socket: str, app: str, candidate_id: str, timeout: float = 30) -> None:
    def found() -> bool:
        _, body = _request(socket, "GET", f"{RUN}/search?app={app}")
        return candidate_id in [c["candidate_id"] for c in body["candidates"]]

    if not wait_until(found, timeout=timeout, interval=0.1):
        raise RuntimeError(f"{candidate_id} did not become searchable")


def install_stand_ins(world: RunWorld) -> None:
    """A system-path source over a temp bin dir of stand-ins, and a trusted manifest whose app
    restarts the machine through `sh -c` (a destructive program behind a wrapper)."""
    sbin, ran = world.root / "sbin", world.root / "ran"
    sbin.mkdir()
    ran.mkdir()
    for name in (*DESTRUCTIVE, HARMLESS, LVREMOVE, QUIT):
        program = sbin / name
        program.write_text(f"#!/bin/sh\n: > '{ran / name}'\n")
        program.chmod(0o755)
    apps = world.root / "applications"
    apps.mkdir()
    (apps / f"{DESKTOP_APP}.desktop").write_text(
        "[Desktop Entry]\nType=Application\nName=Quit session\nTerminal=true\n"
        f'Exec=sh -c "{sbin / QUIT} --power-off"\n'
    )
    ops = world.root / "ops.json"
    ops.write_text(json.dumps({"version": 1, "apps": [
        {"id": "restart-box", "title": "Restart box",
         "argv": ["/bin/sh", "-c", f"'{sbin / 'shutdown'}' -r now"]},
    ]}))  # fmt: skip
    sources = [
        {"source_id": "sbin", "enabled": True, "priority": 50, "provider": "system",
         "source_type": "system-path",
         "config": {"path": str(sbin), "applications_dirs": [str(apps)]}},
        {"source_id": "ops", "enabled": True, "priority": 40, "provider": "registry",
         "source_type": "trusted-list-file", "config": {"path": str(ops)}},
    ]  # fmt: skip
    for source in sources:
        status, body = _request(world.socket, "POST", f"{RUN}/sources", source)
        assert status == 201, body
    for name in (*DESTRUCTIVE, HARMLESS, LVREMOVE, QUIT):
        _wait_for(world.socket, name, f"sbin:{sbin / name}")
    _wait_for(world.socket, "restart-box", "ops:restart-box")
    _wait_for(world.socket, DESKTOP_APP, f"sbin:{apps / DESKTOP_APP}.desktop")
    # the daemon runs as whoever runs the tests (often root): before any run is tried, make
    # sure every candidate of these names is a stand-in in the temp dir
    for name in (*DESTRUCTIVE, "rebot", "restart-box", LVREMOVE, QUIT, DESKTOP_APP):
        _, body = _request(world.socket, "GET", f"{RUN}/search?app={name}")
        for candidate in body["candidates"]:
            assert str(world.root) in candidate["shell_command"], candidate


@pytest.fixture(scope="module")
def world() -> Iterator[RunWorld]:
    with run_world() as running:
        install_stand_ins(running)
        yield running


def sbin_id(world: RunWorld, name: str) -> str:
    return f"sbin:{world.root / 'sbin' / name}"


def ran(world: RunWorld) -> set[str]:
    """The stand-ins that have run."""
    return {path.name for path in (world.root / "ran").iterdir()}


async def history_total(http: aiohttp.ClientSession, terminal_id: int) -> int:
    async with http.get(f"{TERMINAL}/history/{terminal_id}") as response:
        if response.status == 404:
            return 0
        return int((await response.json())["total"])


async def get(http: aiohttp.ClientSession, path: str, **params: str) -> tuple[int, Any]:
    async with http.get(path, params=params or None) as response:
        return response.status, await response.json()


def hint_codes(candidate: dict[str, Any]) -> list[str]:
    return [h["code"] for h in candidate.get("execution_plan", {}).get("side_effect_hints", [])]


def test_classify_finds_the_program_behind_paths_wrappers_and_launchers() -> None:
    """The rule judges the command the planned argv runs (through paths, wrappers, shell
    scripts and package launchers) and the record's name run bare."""
    destructive = [
        ("reboot", ["/usr/sbin/reboot"], "reboot"),
        ("e2fsprogs", ["/sbin/mkfs.ext4"], "mkfs.ext4"),
        ("x", ["sudo", "-n", "--", "poweroff"], "poweroff"),
        ("x", ["env", "LANG=C", "/sbin/halt"], "halt"),
        ("x", ["/bin/sh", "-c", "sleep 1; /sbin/shutdown -h now"], "shutdown"),
        ("x", ["systemctl", "reboot"], "systemctl reboot"),
        ("parted", ["nix", "run", "nixpkgs#parted"], "parted"),
        ("wipefs", ["npx", "--yes", "wipefs@1.0.0"], "wipefs"),
        ("x", ["dd", "if=/dev/zero", "of=/dev/sda"], "dd of=/dev/sda"),
        ("x", ["gnome-session-quit", "--reboot"], "gnome-session-quit --reboot"),
        ("init", ["init"], "init"),
    ]
    for name, argv, program in destructive:
        danger = classify(name, argv)
        assert danger is not None and danger.program == program, (name, argv)
    harmless = [
        ("htop", ["/usr/bin/htop"]),
        ("rebooter", ["/opt/bin/rebooter"]),
        ("ddrescue", ["/usr/bin/ddrescue"]),
        ("hello-run", ["/tmp/hello-run", "--greet", "it's me; $HOME"]),
        ("gnome-session-quit", ["gnome-session-quit", "--logout"]),
        ("git", ["git", "init"]),
    ]
    for name, argv in harmless:
        assert classify(name, argv) is None, (name, argv)


async def test_search_lists_destructive_candidates_marked(
    http: aiohttp.ClientSession, world: RunWorld
) -> None:
    """Destructive stand-ins are found from every source, carry the `destructive` hint and no
    ready-to-follow href_path; a harmless one keeps its link."""
    for name, source, candidate_id in [
        *[(n, "sbin", sbin_id(world, n)) for n in DESTRUCTIVE],
        ("mkfs", "sbin", sbin_id(world, "mkfs.ext4")),
        ("restart-box", "ops", "ops:restart-box"),
    ]:
        status, body = await get(http, f"{RUN}/search", app=name)
        assert status == 200
        found = {c["candidate_id"]: c for c in body["candidates"]}
        assert candidate_id in found, (name, list(found))
        assert found[candidate_id]["source_id"] == source
        assert hint_codes(found[candidate_id]) == ["destructive"], found[candidate_id]
        assert "href_path" not in found[candidate_id]
    _, body = await get(http, f"{RUN}/search", app=HARMLESS)
    [harmless] = [c for c in body["candidates"] if c["candidate_id"] == sbin_id(world, HARMLESS)]
    assert "destructive" not in hint_codes(harmless) and "pick=id" in harmless["href_path"]


async def test_first_index_and_go_picks_are_refused(
    http: aiohttp.ClientSession, world: RunWorld
) -> None:
    """pick=first (GET, POST, go paths) and pick=index, even on the set the client saw,
    answer 403 DESTRUCTIVE_NEEDS_EXPLICIT_PICK naming the candidate; nothing runs."""
    before, history = ran(world), await history_total(http, 1)
    reboot = sbin_id(world, "reboot")
    _, found = await get(http, f"{RUN}/search", app="reboot")
    index = [c["candidate_id"] for c in found["candidates"]].index(reboot)
    requests: list[tuple[str, str, dict[str, Any], str]] = [
        ("GET", f"{RUN}/run", {"app": "reboot", "pick": "first"}, reboot),
        ("POST", f"{RUN}/run", {"app": "reboot", "pick": "first"}, reboot),
        ("GET", f"{RUN}/go/reboot", {"pick": "first"}, reboot),
        ("GET", f"{RUN}/t/1/go/app/shutdown/pick/first", {}, sbin_id(world, "shutdown")),
        ("GET", f"{RUN}/run", {"app": "mkfs.ext4", "pick": "first"}, sbin_id(world, "mkfs.ext4")),
        ("GET", f"{RUN}/run", {"app": "restart-box", "pick": "first"}, "ops:restart-box"),
        ("GET", f"{RUN}/run", {"app": "reboot", "pick": "index", "pick_index": str(index),
                               "set_id": found["set_id"]}, reboot),
        ("POST", f"{RUN}/run", {"app": "reboot", "pick": "index", "pick_index": index}, reboot),
    ]  # fmt: skip
    for method, path, params, candidate_id in requests:
        if method == "GET":
            status, body = await get(http, path, **params)
        else:
            async with http.post(path, json=params) as response:
                status, body = response.status, await response.json()
        assert (status, body["code"], body["reason"]) == (403, 403, REASON), (path, params, body)
        assert body["status"] == "error" and body["set_id"]
        assert body["selected"]["candidate_id"] == candidate_id
        assert candidate_id in body["error"] and "pick=id" in body["error"]
    async with http.get(
        f"{RUN}/run", params={"app": "reboot", "pick": "first", "format": "html"}
    ) as response:
        assert response.status == 403 and REASON in await response.text()
    assert ran(world) == before and await history_total(http, 1) == history
    refused = [
        json.loads(line)
        for line in world.daemon.logs().splitlines()
        if '"run_destructive_refused"' in line
    ]
    assert {entry["candidate_id"] for entry in refused} >= {reboot, "ops:restart-box"}


async def test_a_fuzzy_query_never_schedules_a_destructive_candidate(
    http: aiohttp.ClientSession, world: RunWorld
) -> None:
    """A misspelt `rebot` with pick=first ranks the reboot stand-in first and is refused."""
    before, history = ran(world), await history_total(http, 1)
    status, body = await get(http, f"{RUN}/run", app="rebot", pick="first")
    assert status == 403 and body["reason"] == REASON, body
    assert body["selected"]["candidate_id"] == sbin_id(world, "reboot")
    assert body["selected"]["provenance"]["match_kind"] == "fuzzy"
    assert ran(world) == before and await history_total(http, 1) == history


async def test_printed_curl_lines_need_the_explicit_pick_too(
    http: aiohttp.ClientSession, world: RunWorld
) -> None:
    """A curl line is made to be run: both kinds are refused for pick=first and printed for
    pick=id, and printing runs nothing."""
    before, history = ran(world), await history_total(http, 1)
    reboot = sbin_id(world, "reboot")
    for mode in ("hoody-run", "hoody-terminal"):
        status, body = await get(http, f"{RUN}/run", app="reboot", pick="first", print_curl=mode)
        assert status == 403 and body["reason"] == REASON, (mode, body)
        status, body = await get(
            http, f"{RUN}/run", app="reboot", pick="id", candidate_id=reboot, print_curl=mode
        )
        assert status == 200 and body["status"] == "printed-curl", (mode, body)
        assert "destructive" in hint_codes(body["selected"])
    assert ran(world) == before and await history_total(http, 1) == history


async def test_dry_run_preflight_and_batch_show_the_plan_with_a_warning(
    http: aiohttp.ClientSession, world: RunWorld
) -> None:
    """Answers that only show the command still answer, marked and warned; nothing runs."""
    before, history = ran(world), await history_total(http, 1)
    reboot = sbin_id(world, "reboot")
    status, body = await get(http, f"{RUN}/run", app="reboot", pick="first", dry_run="true")
    assert status == 200 and body["status"] == "dry-run", body
    assert body["selected"]["candidate_id"] == reboot
    assert body["shell_command"] == str(world.root / "sbin" / "reboot")
    assert "destructive" in hint_codes(body["selected"])
    assert [w["code"] for w in body["warnings"]] == [REASON]
    async with http.post(f"{RUN}/preflight", json={"app": "reboot", "pick": "first"}) as r:
        preflight = await r.json()
    assert r.status == 200 and preflight["recommended_mode"] == "dry-run"
    assert REASON in [w["code"] for w in preflight["warnings"]]
    async with http.post(
        f"{RUN}/preflight", json={"app": "reboot", "pick": "id", "candidate_id": reboot}
    ) as r:
        preflight = await r.json()
    assert preflight["recommended_mode"] == "dry-run" and not preflight["warnings"]
    assert preflight["would_schedule"] is True
    items = [
        {"request_id": "r", "mode": "run", "selector": {"app": "reboot", "pick": "first"}},
        {"request_id": "c", "mode": "run",
         "selector": {"app": "reboot", "pick": "first", "print_curl": "hoody-terminal"}},
    ]  # fmt: skip
    async with http.post(f"{RUN}/batch", json={"items": items}) as response:
        results = (await response.json())["items"]
    assert results[0]["result"] == "run" and results[0]["run"]["status"] == "dry-run"
    assert [w["code"] for w in results[0]["run"]["warnings"]] == [REASON]
    assert results[1]["result"] == "error"
    assert (results[1]["error"]["code"], results[1]["error"]["reason"]) == (403, REASON)
    assert ran(world) == before and await history_total(http, 1) == history


async def test_pick_by_id_schedules_a_destructive_candidate(
    http: aiohttp.ClientSession, world: RunWorld
) -> None:
    """The explicit pick, pick=id with the candidate id from the search, runs the stand-in."""
    candidate_id = sbin_id(world, "mkfs.ext4")
    _, found = await get(http, f"{RUN}/search", app="mkfs.ext4")
    assert candidate_id in [c["candidate_id"] for c in found["candidates"]]
    assert "mkfs.ext4" not in ran(world)
    status, body = await get(
        http, f"{RUN}/run", app="mkfs.ext4", pick="id", candidate_id=candidate_id,
        set_id=found["set_id"],
    )  # fmt: skip
    assert status == 200 and body["status"] == "scheduled", body
    assert body["selected"]["candidate_id"] == candidate_id and not body.get("warnings")
    result = await wait_result(http, body["terminal"]["json"]["command_id"])
    assert result["status"] == "completed" and result["exit_code"] == 0, result
    assert "mkfs.ext4" in ran(world)


async def test_a_harmless_exact_name_still_runs_with_pick_first(
    http: aiohttp.ClientSession, world: RunWorld
) -> None:
    """The guard is about destructive programs only: pick=first of a harmless one runs it."""
    status, body = await get(http, f"{RUN}/run", app=HARMLESS, pick="first")
    assert status == 200 and body["status"] == "scheduled", body
    assert body["selected"]["candidate_id"] == sbin_id(world, HARMLESS)
    result = await wait_result(http, body["terminal"]["json"]["command_id"])
    assert result["status"] == "completed" and result["exit_code"] == 0, result
    assert HARMLESS in ran(world)


def desktop_id(world: RunWorld) -> str:
    return f"sbin:{world.root / 'applications' / DESKTOP_APP}.desktop"


async def test_what_would_run_is_judged_not_a_name_list(
    http: aiohttp.ClientSession, world: RunWorld
) -> None:
    """A PATH program the old name list missed (`lvremove`) and a desktop entry whose
    `Exec=sh -c "… gnome-session-quit --power-off"` quits the session are marked and refused
    on pick=first; the bare `gnome-session-quit` is not marked; nothing runs."""
    before, history = ran(world), await history_total(http, 1)
    for app, candidate_id in [
        (LVREMOVE, sbin_id(world, LVREMOVE)),
        (DESKTOP_APP, desktop_id(world)),
    ]:
        _, found = await get(http, f"{RUN}/search", app=app)
        [candidate] = [c for c in found["candidates"] if c["candidate_id"] == candidate_id]
        assert hint_codes(candidate) == ["destructive"], candidate
        status, body = await get(http, f"{RUN}/run", app=app, pick="first")
        assert (status, body["reason"]) == (403, REASON), body
        assert body["selected"]["candidate_id"] == candidate_id
    _, found = await get(http, f"{RUN}/search", app=QUIT)
    [bare] = [c for c in found["candidates"] if c["candidate_id"] == sbin_id(world, QUIT)]
    assert "destructive" not in hint_codes(bare)
    assert ran(world) == before and await history_total(http, 1) == history


async def test_pick_by_id_runs_the_judged_stand_ins(
    http: aiohttp.ClientSession, world: RunWorld
) -> None:
    """Picked by their candidate ids, the `lvremove` stand-in and the desktop entry's
    `sh -c` script run (each stand-in only writes its marker file)."""
    for app, candidate_id, marker in [
        (LVREMOVE, sbin_id(world, LVREMOVE), LVREMOVE),
        (DESKTOP_APP, desktop_id(world), QUIT),
    ]:
        assert marker not in ran(world)
        status, body = await get(http, f"{RUN}/run", app=app, pick="id", candidate_id=candidate_id)
        assert status == 200 and body["status"] == "scheduled", body
        result = await wait_result(http, body["terminal"]["json"]["command_id"])
        assert result["status"] == "completed" and result["exit_code"] == 0, result
        assert marker in ran(world)
