"""Ranking and search over a real, small software world: pinned orders for tricky queries,
filters, profiles, broken sources, launch plans, candidate sets and the persisted index."""

from __future__ import annotations

import gc
import gzip
import json
import shlex
import threading
import weakref
from pathlib import Path
from typing import Any

import msgspec
import pytest
from structlog.testing import capture_logs

from hoodyd.apps.search import candidate_sets
from hoodyd.apps.search.search import RankedCache
from hoodyd.apps.service import AppService
from hoodyd.errors import InvalidRequest
from hoodyd.polling import poll_until
from hoodyd.schemas.run import (
    PolicyConfig,
    ProfileConfig,
    ProfilePatch,
    ProfileSourceOverride,
    Selector,
    SourcePatch,
)
from tests.data.apps.world import executable, make_world, open_service, quiet_settings


def ids(response) -> list[str]:
    return [c.candidate_id for c in response.candidates]


async def test_code_vs_vscode_vs_codec2(short_tmp: Path) -> None:
    """`code`: the installed `code` binary, then vscode (whose program is `code`), then codec2."""
    world = make_world(short_tmp / "w")
    service = await open_service(short_tmp / "s", world)
    try:
        found = service.search(Selector(app="code", limit=6))
        assert ids(found)[:4] == [
            f"system-path:{world.bin}/code",
            "nixpkgs:vscode",
            "apt:codec2",
            "nixpkgs:codec2",
        ]
        first = found.candidates[0]
        assert first.provenance.match_kind == "exact" and first.installed
        assert [c.label for c in first.provenance.score_components] == [
            "match",
            "installed",
            "installed exact",
            "source priority",
        ]
        assert first.score == sum(c.delta for c in first.provenance.score_components)
        vscode = service.search(Selector(app="vscode", limit=3))
        # the nix package by name, then VS Code's desktop entry through its Keywords
        assert ids(vscode)[:2] == ["nixpkgs:vscode", f"system-path:{world.bin}/code"]
        assert vscode.candidates[1].provenance.match_kind == "word"
    finally:
        await service.close()


async def test_installed_apt_package_beats_nix_even_with_higher_priority(short_tmp: Path) -> None:
    """Installed apt `jq` ranks above nixpkgs' `jq`, even when a profile raises nix's priority."""
    world = make_world(short_tmp / "w")
    service = await open_service(short_tmp / "s", world)
    try:
        plain = service.search(Selector(app="jq", source=["apt", "nix"]))
        assert ids(plain)[:2] == ["apt:jq", "nixpkgs:jq"]
        await service.add_profile(
            ProfileConfig(
                name="nixfirst", sources=[ProfileSourceOverride(source_id="nixpkgs", priority=100)]
            )
        )
        boosted = service.search(Selector(app="jq", source=["apt", "nix"], profile="nixfirst"))
        assert ids(boosted)[:2] == ["apt:jq", "nixpkgs:jq"]
        nix = boosted.candidates[1]
        assert "profile nixfirst sets nixpkgs priority 100" in nix.reasons[-1]
        assert nix.score > plain.candidates[1].score
    finally:
        await service.close()


async def test_order_is_stable_and_every_set_is_new(short_tmp: Path) -> None:
    """The same query on the same index gives the same list, under a new set_id each time."""
    world = make_world(short_tmp / "w")
    service = await open_service(short_tmp / "s", world)
    try:
        first = service.search(Selector(app="co", limit=100))
        second = service.search(Selector(app="co", limit=100))
        assert ids(first) == ids(second) and len(first.candidates) >= 4
        assert first.set_id != second.set_id
        scores = [c.score for c in first.candidates]
        assert scores == sorted(scores, reverse=True)
    finally:
        await service.close()


async def test_misspelt_query_and_filters(short_tmp: Path) -> None:
    """A misspelling finds firefox by fuzzy match; kind, os and source filters narrow the set."""
    world = make_world(short_tmp / "w")
    service = await open_service(short_tmp / "s", world)
    try:
        fuzzy = service.search(Selector(app="frefox", limit=5))
        assert ids(fuzzy)[:2] == [f"system-path:{world.bin}/firefox", "nixpkgs:firefox"]
        assert fuzzy.candidates[0].provenance.match_kind == "fuzzy"
        gui = service.search(Selector(app="code", kind="gui"))
        assert ids(gui) == [f"system-path:{world.bin}/code"]
        only_apt = service.search(Selector(app="code", source=["apt"]))
        assert {c.provider for c in only_apt.candidates} == {"apt"}
        assert service.search(Selector(app="code", os="windows")).candidates == []
    finally:
        await service.close()


async def test_launch_plans_are_argv_joined_with_shlex(short_tmp: Path) -> None:
    """Candidates carry argv, kind, installed and requirements; commands are shlex.join(argv)."""
    world = make_world(short_tmp / "w")
    service = await open_service(short_tmp / "s", world)
    try:
        found = {
            c.candidate_id: c for c in service.search(Selector(app="codec2", limit=10)).candidates
        }
        apt = found["apt:codec2"]
        assert apt.execution_plan.argv == ["codec2"] and not apt.installed
        assert apt.requirements[0].kind == "package"
        assert apt.requirements[0].resolution == "apt-get install -y codec2"
        deploy = service.search(Selector(app="deploy tool")).candidates[0]
        assert deploy.candidate_id == "team:team/deploy-tool" and deploy.verified
        assert deploy.shell_command == shlex.join(["deploy-tool", "--interactive"])
        assert deploy.run_plan.command == deploy.shell_command
        firefox = service.search(Selector(app="firefox")).candidates[0]
        assert firefox.kind == "gui" and firefox.execution_plan.argv == ["firefox"]
    finally:
        await service.close()


async def test_broken_source_does_not_break_search(short_tmp: Path) -> None:
    """A manifest that stops parsing keeps its old records and says why; others still answer."""
    world = make_world(short_tmp / "w")
    service = await open_service(short_tmp / "s", world)
    try:
        world.manifest.write_text("{not json")
        with capture_logs() as logs:
            job = service.sync_source("team")
            done = await service.job(job.job_id, wait=True, timeout_ms=30_000)
        assert done.status == "error" and "invalid manifest" in done.error
        failed = [e for e in logs if e["event"] == "run_source_sync_failed"]
        assert failed and failed[0]["source_id"] == "team"
        diagnostics = service.diagnostics("team")
        assert diagnostics.status == "error" and "invalid manifest" in diagnostics.last_error
        assert diagnostics.provider_details["record_count"] == 2  # previous records kept
        assert ids(service.search(Selector(app="jq", source=["apt"])))[0] == "apt:jq"
        assert service.diagnostics("apt").status == "ok"
    finally:
        await service.close()


async def test_candidate_sets_are_bounded(short_tmp: Path) -> None:
    """Only the most recent sets are kept when more are made than the bound."""
    world = make_world(short_tmp / "w")
    service = await open_service(short_tmp / "s", world, max_candidate_sets=2)
    try:
        first = service.search(Selector(app="jq"))
        service.search(Selector(app="jq"))
        last = service.search(Selector(app="jq"))
        assert service.candidate_set(first.set_id) is None
        assert service.candidate_set(last.set_id) is not None and len(service.sets) == 2
    finally:
        await service.close()


async def test_index_is_persisted_and_loaded_at_start(short_tmp: Path) -> None:
    """A restarted service answers from STATE/index without syncing again."""
    world = make_world(short_tmp / "w")
    service = await open_service(short_tmp / "s", world)
    before = ids(service.search(Selector(app="code")))
    synced_at = service.diagnostics("apt").last_success_at
    await service.close()
    assert sorted(p.name for p in (short_tmp / "s" / "index").iterdir()) == [
        "apt.msgpack", "nixpkgs.msgpack", "system-path.msgpack", "team.msgpack",
    ]  # fmt: skip
    again = AppService(short_tmp / "s", quiet_settings(), environ=world.environ())
    await again.start()
    try:
        assert ids(again.search(Selector(app="code"))) == before
        assert again.diagnostics("apt").last_success_at == synced_at
        config = msgspec.json.decode((short_tmp / "s" / "run" / "config.json").read_bytes())
        assert [s["source_id"] for s in config["sources"]] == [
            "system-path",
            "apt",
            "nixpkgs",
            "team",
        ]
    finally:
        await again.close()


async def test_small_limits_are_the_head_of_the_full_ranking(short_tmp: Path) -> None:
    """The two-pass ranking gives every limit the head of the same complete order."""
    world = make_world(short_tmp / "w")
    service = await open_service(short_tmp / "s", world)
    try:
        for query in ("co", "code", "jq", "fire", "codc", "deploy"):
            full = ids(service.search(Selector(app=query, limit=100)))
            for limit in (1, 2, 3, 5):
                assert ids(service.search(Selector(app=query, limit=limit))) == full[:limit], query
        tagged = ids(service.search(Selector(app="co", tags=["ide"], limit=1)))
        assert tagged == ids(service.search(Selector(app="co", tags=["ide"], limit=100)))[:1]
    finally:
        await service.close()


async def test_close_stops_a_running_sync(short_tmp: Path) -> None:
    """Closing the service ends a sync under way (a 200k-package apt list) within seconds."""
    big = short_tmp / "big_Packages.gz"
    stanza = "Package: pkg{0}\nVersion: 1.{0}\nArchitecture: amd64\nDescription: package {0}\n\n"
    big.write_bytes(gzip.compress("".join(stanza.format(i) for i in range(200_000)).encode()))
    world = make_world(short_tmp / "w")
    sources = world.sources()
    sources[1]["config"]["lists"] = [str(big)]
    (short_tmp / "s" / "run").mkdir(parents=True)
    config = {"version": 1, "sources": sources[:2], "profiles": []}
    (short_tmp / "s" / "run" / "config.json").write_text(json.dumps(config))
    service = AppService(short_tmp / "s", quiet_settings(), environ=world.environ())
    await service.start()
    job = service.sync_source("apt")

    async def running() -> bool | None:
        state = await service.job(job.job_id, wait=False, timeout_ms=0)
        return True if state.status == "running" else None

    assert await poll_until(running, timeout=10, interval=0.01)
    await service.close()
    state = await service.job(job.job_id, wait=False, timeout_ms=0)
    assert state.status == "error" and "cancelled" in state.error

    async def sync_thread_gone() -> bool | None:
        alive = any(t.name.startswith("hoodyd-sync") for t in threading.enumerate())
        return None if alive else True

    assert await poll_until(sync_thread_gone, timeout=10), "sync thread still running"
    assert not (short_tmp / "s" / "index" / "apt.msgpack").exists()


async def test_unreadable_runtime_config_refuses_to_start(short_tmp: Path) -> None:
    """A runtime config that does not parse stops start-up with its path, and is left as it was."""
    path = short_tmp / "run" / "config.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"version": 1, "sources": [], "profiles": [], "colour": "red"}')
    service = AppService(short_tmp, quiet_settings(), environ={"PATH": "/usr/bin"})
    with pytest.raises(InvalidRequest, match=r"config\.json.*colour") as caught:
        await service.start()
    assert caught.value.reason == "BAD_CONFIG"
    assert "colour" in path.read_text()
    await service.close()


async def test_allowlist_profile_and_policy_denials(short_tmp: Path) -> None:
    """An allowlist profile searches only its sources; policy denials remove providers."""
    world = make_world(short_tmp / "w")
    service = await open_service(short_tmp / "s", world)
    try:
        await service.add_profile(
            ProfileConfig(
                name="nix-only",
                sources_mode="allowlist",
                sources=[ProfileSourceOverride(source_id="nixpkgs")],
            )
        )
        found = service.search(Selector(app="jq", profile="nix-only"))
        assert {c.source_id for c in found.candidates} == {"nixpkgs"}
        await service.add_profile(
            ProfileConfig(
                name="no-apt",
                policy=PolicyConfig(deny_providers=["apt"], deny_source_ids=["team"]),
            )
        )
        found = service.search(Selector(app="jq", profile="no-apt", limit=100))
        assert {c.source_id for c in found.candidates} == {"system-path", "nixpkgs"}
    finally:
        await service.close()


async def sync(service: AppService, source_id: str) -> None:
    job = service.sync_source(source_id)
    done = await service.job(job.job_id, wait=True, timeout_ms=60_000)
    assert done.status == "done", done


async def test_repeated_search_is_answered_from_the_cache(short_tmp: Path) -> None:
    """The same search again reuses the ranked list and its candidates, under a new set_id;
    another limit or another query is ranked on its own."""
    world = make_world(short_tmp / "w")
    service = await open_service(short_tmp / "s", world)
    try:
        first = service.search(Selector(app="code", limit=2))
        again = service.search(Selector(app="code", limit=2))
        assert first.set_id != again.set_id
        assert again.candidates == first.candidates
        first_set = service.candidate_set(first.set_id)
        again_set = service.candidate_set(again.set_id)
        assert first_set is not None and again_set is not None
        assert again_set.items is first_set.items
        deeper = service.search(Selector(app="code", limit=3))
        assert ids(deeper)[:2] == ids(first) and len(deeper.candidates) == 3
        other = service.search(Selector(app="jq", limit=5))
        assert "apt:jq" in ids(other) and not set(ids(other)) & set(ids(first))
    finally:
        await service.close()


async def test_search_cache_follows_an_install_synced_in(short_tmp: Path) -> None:
    """A package installed since the last search shows as installed once its source syncs,
    and not before: a sync swaps the index, which the cached search no longer matches."""
    world = make_world(short_tmp / "w")
    service = await open_service(short_tmp / "s", world)
    try:

        def codec2() -> bool:
            found = service.search(Selector(app="codec2", source=["apt"], limit=5))
            [candidate] = [c for c in found.candidates if c.candidate_id == "apt:codec2"]
            return bool(candidate.installed)

        assert codec2() is False
        service.search(Selector(app="jq", source=["apt"]))  # left stale by the sync below
        world.status.write_text(
            world.status.read_text().replace("deinstall ok config-files", "install ok installed")
        )
        assert codec2() is False  # dpkg changed, the index not yet
        replaced = weakref.ref(service.syncer.index("apt"))
        await sync(service, "apt")
        assert codec2() is True
        gc.collect()
        assert replaced() is None  # the stale `jq` entry does not keep the old index alive
    finally:
        await service.close()


async def test_search_cache_follows_a_new_program_on_path(short_tmp: Path) -> None:
    """A program that appears on PATH is found after the system-path source's next sync."""
    world = make_world(short_tmp / "w")
    service = await open_service(short_tmp / "s", world)
    try:
        query = Selector(app="zebra-tool", source=["system"])
        assert service.search(query).candidates == []
        executable(world.bin / "zebra-tool")
        await sync(service, "system-path")
        assert ids(service.search(query)) == [f"system-path:{world.bin}/zebra-tool"]
    finally:
        await service.close()


async def test_search_cache_follows_settings_edits(short_tmp: Path) -> None:
    """Source, profile and policy edits each change the next answer of a repeated search."""
    world = make_world(short_tmp / "w")
    service = await open_service(short_tmp / "s", world)
    try:
        query = Selector(app="jq", limit=100)
        before = service.search(query)
        assert "nixpkgs" in {c.source_id for c in before.candidates}
        nix_score = next(c.score for c in before.candidates if c.source_id == "nixpkgs")
        await service.patch_source("nixpkgs", SourcePatch(priority=45))
        raised = service.search(query)
        assert next(c.score for c in raised.candidates if c.source_id == "nixpkgs") > nix_score
        await service.patch_source("nixpkgs", SourcePatch(enabled=False))
        assert "nixpkgs" not in {c.source_id for c in service.search(query).candidates}

        await service.add_profile(ProfileConfig(name="mine"))
        mine = Selector(app="jq", limit=100, profile="mine")
        assert "apt" in {c.source_id for c in service.search(mine).candidates}
        await service.patch_profile(
            "mine", ProfilePatch(policy=PolicyConfig(deny_providers=["apt"]))
        )
        assert "apt" not in {c.source_id for c in service.search(mine).candidates}

        await service.select_profile("mine")
        assert "apt" not in {c.source_id for c in service.search(query).candidates}
    finally:
        await service.close()


class Stand:
    """A stand-in for a config or an index: only its identity counts."""


async def test_search_cache_is_bounded() -> None:
    """The ranked-items cache keeps at most its entries and its items, oldest dropped first,
    and answers only under the config and indexes an entry was ranked from."""
    cache = RankedCache(max_entries=2, max_items=5)
    config: Any = object()
    index: Any = Stand()
    other: Any = Stand()
    items: list[Any] = [object(), object()]
    cache.put((b"a", 5), config, (index,), items)
    assert cache.get((b"a", 5), config, (index,)) is items
    assert cache.get((b"a", 5), config, (other,)) is None
    cache.put((b"a", 5), config, (index,), items)
    assert cache.get((b"a", 5), other, (index,)) is None
    assert len(cache) == 0  # a stale entry is dropped when met
    for name in (b"b", b"c", b"d"):
        cache.put((name, 5), config, (), items)
    assert len(cache) == 2 and cache.get((b"b", 5), config, ()) is None
    cache.put((b"e", 5), config, (), items * 3)
    assert cache.get((b"e", 5), config, ()) is None


def test_expired_sets_behind_recently_read_ones_are_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A set read again moves behind newer ones; once expired, the next put after a sweep
    interval drops it, and no expired set is ever answered."""
    clock = [100.0]
    monkeypatch.setattr("hoodyd.apps.search.candidate_sets.time.monotonic", lambda: clock[0])
    store = candidate_sets.CandidateSetStore(ttl=10, max_sets=10)
    first = store.put([], b"a")
    clock[0] = 105.0
    second = store.put([], b"b")
    clock[0] = 106.0
    assert store.get(first.set_id) is first  # now behind `second`, which expires later
    clock[0] = 111.0
    third = store.put([], b"c")
    assert len(store) == 2  # `first` dropped by the sweep, not by the front-of-queue check
    clock[0] = 115.5
    assert store.get(second.set_id) is None and store.get(third.set_id) is third
