"""The run area in a real `hoodyd serve` on a Unix socket: first-start sources, background
syncs, and an index that a restart loads from STATE/index instead of syncing again."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from hoodyd.apps.service import AppService
from tests.conftest import start_daemon
from tests.data.apps.world import make_world, quiet_settings

BASE = "/api/v1/run"


async def test_first_start_enables_what_this_machine_can_serve(short_tmp: Path) -> None:
    """With no config, PATH/desktop and apt are enabled here, nixpkgs only when nix is on PATH."""
    world = make_world(short_tmp / "w")
    without = AppService(short_tmp / "a", quiet_settings(), environ={"PATH": "/usr/bin:/bin"})
    await without.start()
    enabled = {s.source_id: s.enabled for s in without.runtime_config().sources}
    assert enabled == {"system-path": True, "apt": True, "nixpkgs": False}
    assert without.diagnostics("nixpkgs").status == "disabled"
    await without.close()
    with_nix = AppService(short_tmp / "b", quiet_settings(), environ={"PATH": world.path})
    await with_nix.start()
    assert {s.source_id for s in with_nix.runtime_config().sources if s.enabled} == {
        "system-path", "apt", "nixpkgs",
    }  # fmt: skip
    await with_nix.close()
    assert (short_tmp / "b" / "run" / "config.json").exists()


async def test_daemon_syncs_serves_and_reloads_its_index(short_tmp: Path) -> None:
    """A daemon syncs in the background, answers over its socket, and a restart reuses the index."""
    world = make_world(short_tmp / "w")
    state = short_tmp / "s"
    world.write_config(state)
    env = {"PATH": f"{world.nix_bin}:/usr/bin:/bin"}
    daemon = start_daemon(state, env=env)
    try:
        async with aiohttp.ClientSession(
            connector=aiohttp.UnixConnector(path=str(daemon.socket)), base_url="http://localhost"
        ) as session:
            job = await (await session.post(f"{BASE}/sources/sync")).json()
            done_url = f"{BASE}/jobs/{job['job_id']}?wait=done&timeout_ms=60000"
            assert (await (await session.get(done_url)).json())["status"] == "done"
            found = await (await session.get(f"{BASE}/search?app=code&limit=2")).json()
            assert [c["candidate_id"] for c in found["candidates"]] == [
                f"system-path:{world.bin}/code", "nixpkgs:vscode",
            ]  # fmt: skip
            synced = await (await session.get(f"{BASE}/sources/apt/diagnostics")).json()
    finally:
        daemon.stop()
    assert '"run_source_synced"' in daemon.logs()
    again = start_daemon(state, env=env)
    try:
        async with aiohttp.ClientSession(
            connector=aiohttp.UnixConnector(path=str(again.socket)), base_url="http://localhost"
        ) as session:
            found = await (await session.get(f"{BASE}/search?app=code&limit=2")).json()
            assert found["candidates"][0]["candidate_id"] == f"system-path:{world.bin}/code"
            reloaded = await (await session.get(f"{BASE}/sources/apt/diagnostics")).json()
            assert reloaded["last_success_at"] == synced["last_success_at"]
            assert reloaded["provider_details"]["record_count"] == 4
    finally:
        again.stop()
    assert '"run_source_synced"' not in again.logs()  # nothing was synced again
