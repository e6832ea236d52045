"""`pick=first` while a source still runs its first sync: never a lesser match in place of an
exact one the syncing source may hold."""

from __future__ import annotations

from pathlib import Path

from aiohttp.test_utils import TestClient

from hoodyd.polling import poll_until
from tests.data.apps.world import World
from tests.test_run_api import BASE, run_app, slow_nix_env, world

__all__ = ["world"]  # the fixture, used by name


async def test_pick_first_waits_for_the_exact_match_a_syncing_source_may_hold(
    aiohttp_client, short_tmp: Path, world: World
) -> None:
    """While nixpkgs (which holds `vscode`) outlasts the bounded first-sync wait, a
    `pick=first` whose top candidate is not an exact match is a 409 SOURCE_SYNCING listing
    the candidates found so far; once the sync lands, the exact match is picked."""
    slow_nix_env(world, 8.0)
    client: TestClient = await aiohttp_client(
        run_app(short_tmp / "s", auto_sync=True, first_sync_wait_ms=100)
    )

    async def found_some_while_nixpkgs_syncs() -> bool | None:
        body = await (await client.get(f"{BASE}/search?app=vscode")).json()
        syncing = {w.get("source_id") for w in body.get("warnings", [])}
        return True if "nixpkgs" in syncing and body["candidates"] else None

    # the faster sources' first syncs land first (on a busy machine they too can outlast the
    # bounded wait, and with nothing found at all the answer is a 404 naming what syncs)
    assert await poll_until(found_some_while_nixpkgs_syncs, timeout=30, interval=0.1)
    for path in ("resolve", "run"):
        answer = await client.get(f"{BASE}/{path}?app=vscode&pick=first&dry_run=1")
        body = await answer.json()
        assert answer.status == 409 and body["reason"] == "SOURCE_SYNCING", (path, body)
        assert body["status"] == "error" and body["candidates"], body
        assert "nixpkgs" in body["error"] and "selected" not in body
        assert "SOURCE_SYNCING" in [w["code"] for w in body["warnings"]]
    diagnostics = await (await client.get(f"{BASE}/sources/nixpkgs/diagnostics")).json()
    await client.get(f"{BASE}/jobs/{diagnostics['last_sync_job_id']}?wait=done&timeout_ms=30000")
    done = await (await client.get(f"{BASE}/resolve?app=vscode&pick=first")).json()
    assert done["status"] == "dry-run" and done["selected"]["candidate_id"] == "nixpkgs:vscode"


async def test_pick_first_within_the_bounded_wait_gets_the_exact_match(
    aiohttp_client, short_tmp: Path, world: World
) -> None:
    """A first sync that lands within `first_sync_wait_ms` is waited for: the very first
    `pick=first` already takes the exact match, with no warning."""
    slow_nix_env(world, 0.3)
    client: TestClient = await aiohttp_client(
        run_app(short_tmp / "s", auto_sync=True, first_sync_wait_ms=10_000)
    )
    body = await (await client.get(f"{BASE}/resolve?app=vscode&pick=first")).json()
    assert body["status"] == "dry-run" and "warnings" not in body
    assert body["selected"]["candidate_id"] == "nixpkgs:vscode"
