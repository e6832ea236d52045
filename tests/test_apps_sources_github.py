"""GitHub releases through a GitHub API on 127.0.0.1: asset choice per target, checksums from
release files and GitHub digests, ETag caching, hints, clear errors, the token kept out of
everything, a last good index kept when the network fails, and a planned command that runs."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shlex
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from hoodyd.apps.catalog.records import SourceUnavailable, SyncContext
from hoodyd.apps.catalog.sources import SOURCES
from hoodyd.apps.catalog.sources.appimage import record_integrity
from hoodyd.schemas.run import Selector
from tests.data.apps import releases as r
from tests.data.apps.github import FakeGitHub, FakeRelease, FakeRepo
from tests.data.apps.world import quiet_settings

TOKEN = "ghp_test_token_never_logged_0123456789"
AMD64 = {"os": "linux", "arch": "amd64", "libc": "glibc"}


def world() -> FakeGitHub:
    return FakeGitHub(
        [
            FakeRepo(
                "BurntSushi",
                "ripgrep",
                "ripgrep recursively searches directories for a regex pattern",
                "",
                ["grep", "search"],
                [FakeRelease("14.1.1", r.RIPGREP_14_1_1, "rg", checksums="own")],
            ),
            FakeRepo(
                "junegunn",
                "fzf",
                ":cherry_blossom: A command-line fuzzy finder",
                "https://junegunn.github.io/fzf/",
                ["fzf", "cli"],
                [
                    FakeRelease(
                        "v0.56.3",
                        [n for n in r.FZF_0_56_3 if "checksums" not in n],
                        "fzf",
                        checksums="list:fzf_0.56.3_checksums.txt",
                    )
                ],
            ),
            FakeRepo(
                "neovim",
                "neovim",
                "Vim-fork focused on extensibility and usability",
                "https://neovim.io",
                ["vim", "editor"],
                [
                    FakeRelease("nightly", r.NEOVIM_0_11_0[:-1], "nvim", prerelease=True),
                    FakeRelease(
                        "v0.11.0", r.NEOVIM_0_11_0[:-1], "nvim", checksums="list:shasum.txt"
                    ),
                    FakeRelease("v0.10.2", r.NEOVIM_0_10_2, "nvim"),
                ],
            ),
            FakeRepo(
                "zellij-org",
                "zellij",
                "A terminal workspace with batteries included",
                "https://zellij.dev",
                ["terminal", "multiplexer"],
                [FakeRelease("v0.41.2", r.ZELLIJ_0_41_2, "zellij", checksums="digest")],
            ),
        ]
    )


async def start(aiohttp_server, fake: FakeGitHub):
    server = await aiohttp_server(fake.app(), host="127.0.0.1")
    fake.base = str(server.make_url("")).rstrip("/")
    return server


def config(fake: FakeGitHub, cache: Path, **extra: Any) -> dict[str, Any]:
    return {"api_url": fake.base, "cache_dir": str(cache / "gh"), **AMD64, **extra}


def sync(cfg: dict[str, Any], environ: dict[str, str] | None = None):
    source = SOURCES["app-image-git-hub-releases"]
    ctx = SyncContext(source.settings(cfg), environ=environ or {"XDG_CACHE_HOME": "/nonexistent"})
    return source.sync(ctx)


async def test_assets_and_checksums_of_real_release_layouts(
    aiohttp_server, short_tmp: Path
) -> None:
    """Each repository gets the right asset, its sha256 from the checksum form the project
    publishes, the rejected assets with reasons, and the token only in the header."""
    fake = world()
    await start(aiohttp_server, fake)
    cfg = config(
        fake,
        short_tmp,
        repos=[
            {"repo": "BurntSushi/ripgrep", "binary": "rg"},
            {"repo": "junegunn/fzf"},
            {"repo": "neovim/neovim", "binary": "nvim"},
            {"repo": "zellij-org/zellij"},
        ],
        token_env="HOODYD_TEST_GH_TOKEN",
    )
    with capture_logs() as logs:
        result = await asyncio.to_thread(sync, cfg, {"HOODYD_TEST_GH_TOKEN": TOKEN})
    records = {rec.ident: rec for rec in result.records}
    assert sorted(records) == [
        "BurntSushi/ripgrep",
        "junegunn/fzf",
        "neovim/neovim",
        "zellij-org/zellij",
    ]
    expected = {
        "BurntSushi/ripgrep": ("ripgrep-14.1.1-x86_64-unknown-linux-musl.tar.gz", "sha256 from "),
        "junegunn/fzf": ("fzf-0.56.3-linux_amd64.tar.gz", "fzf_0.56.3_checksums.txt"),
        "neovim/neovim": ("nvim-linux-x86_64.appimage", "shasum.txt"),
        "zellij-org/zellij": ("zellij-x86_64-unknown-linux-musl.tar.gz", "GitHub's asset digest"),
    }
    for ident, (asset, checksum_from) in expected.items():
        record = records[ident]
        integrity = record_integrity(record)
        assert integrity is not None and integrity.url.endswith("/" + asset), ident
        fake_release = next(
            rel for repo in fake.repos.values() for rel in repo.releases if asset in rel.files
        )
        assert integrity.sha256 == hashlib.sha256(fake_release.files[asset]).hexdigest()
        notes = SOURCES["app-image-git-hub-releases"].plan(record, {}, {}).notes
        assert any(checksum_from in note for note in notes), notes
        assert record.extra_value("verified") is None  # checksums from the same release
    rg = records["BurntSushi/ripgrep"]
    assert (rg.version, rg.channel, rg.repo, rg.publisher) == (
        "14.1.1",
        "stable",
        "BurntSushi/ripgrep",
        "BurntSushi",
    )
    assert rg.binaries == ("rg",) and "grep" in rg.tags and rg.kind == "cli"
    assert rg.extra_value("release") == "14.1.1"
    assert rg.extra_value("asset") == "ripgrep-14.1.1-x86_64-unknown-linux-musl.tar.gz"
    nvim = records["neovim/neovim"]
    assert nvim.version == "0.11.0" and nvim.kind == "gui" and nvim.homepage == "https://neovim.io"
    notes = SOURCES["app-image-git-hub-releases"].plan(rg, {}, {}).notes
    assert (
        "rejected ripgrep-14.1.1-x86_64-apple-darwin.tar.gz: built for darwin, not linux" in notes
    )
    assert (
        "rejected ripgrep_14.1.1-1_amd64.deb: an archive "
        "ripgrep-14.1.1-x86_64-unknown-linux-musl.tar.gz is preferred" in notes
    )
    assert set(fake.seen_auth) == {f"Bearer {TOKEN}"}
    assert TOKEN not in json.dumps(result.details) and TOKEN not in repr(logs)
    assert TOKEN not in json.dumps([list(rec.extra) for rec in result.records])


async def test_etag_cache_turns_a_resync_into_304s(aiohttp_server, short_tmp: Path) -> None:
    """A second sync sends If-None-Match and gets 304s; checksum files are not fetched again."""
    fake = world()
    await start(aiohttp_server, fake)
    cfg = config(fake, short_tmp, repo="BurntSushi/ripgrep", binary="rg")
    first = await asyncio.to_thread(sync, cfg)
    fake.hits.clear()
    second = await asyncio.to_thread(sync, cfg)
    assert [status for _, status in fake.hits] == [304, 304]
    assert second.details["not_modified"] == 2
    assert [rec.extra for rec in first.records] == [rec.extra for rec in second.records]


async def test_release_channel_and_version_hints(aiohttp_server, short_tmp: Path) -> None:
    """Stable by default; channel prerelease takes the nightly; version and release pin
    older releases (fetched by tag when the list does not reach them)."""
    fake = world()
    await start(aiohttp_server, fake)
    base = config(fake, short_tmp, repo="neovim/neovim", binary="nvim")
    stable = (await asyncio.to_thread(sync, base)).records[0]
    assert (stable.version, stable.channel) == ("0.11.0", "stable")
    nightly = (await asyncio.to_thread(sync, {**base, "channel": "prerelease"})).records[0]
    assert (nightly.version, nightly.channel) == ("nightly", "prerelease")
    older = (await asyncio.to_thread(sync, {**base, "version": "0.10"})).records[0]
    assert older.version == "0.10.2"
    assert record_integrity(older).url.endswith("/nvim.appimage")  # type: ignore[union-attr]
    by_tag = await asyncio.to_thread(sync, {**base, "release": "v0.10.2", "per_page": 1})
    assert by_tag.records[0].version == "0.10.2"
    assert ("/repos/neovim/neovim/releases/tags/v0.10.2", 200) in fake.hits
    tarball = (await asyncio.to_thread(sync, {**base, "asset": "*.tar.gz"})).records[0]
    assert record_integrity(tarball).url.endswith("nvim-linux-x86_64.tar.gz")  # type: ignore[union-attr]
    two = await asyncio.to_thread(sync, {**base, "releases": 2})
    assert [rec.ident for rec in two.records] == ["neovim/neovim", "neovim/neovim@v0.10.2"]


async def test_alternative_formats_are_records_of_their_own(
    aiohttp_server, short_tmp: Path
) -> None:
    """With alternatives on, the best asset of each other format is its own record whose
    variant a selector can ask for."""
    fake = world()
    await start(aiohttp_server, fake)
    cfg = config(fake, short_tmp, repo="BurntSushi/ripgrep", binary="rg", alternatives=True)
    records = {rec.ident: rec for rec in (await asyncio.to_thread(sync, cfg)).records}
    assert sorted(records) == ["BurntSushi/ripgrep", "BurntSushi/ripgrep#deb"]
    assert records["BurntSushi/ripgrep"].variant == "archive-musl"
    deb = records["BurntSushi/ripgrep#deb"]
    assert deb.variant == "deb"
    assert record_integrity(deb).url.endswith("/ripgrep_14.1.1-1_amd64.deb")  # type: ignore[union-attr]
    assert record_integrity(deb).sha256  # type: ignore[union-attr]


async def test_no_asset_for_the_target_lists_every_reason(aiohttp_server, short_tmp: Path) -> None:
    """A release without an asset for this box fails with each asset's reason."""
    fake = world()
    await start(aiohttp_server, fake)
    cfg = config(fake, short_tmp, repo="neovim/neovim", release="v0.10.2", arch="arm64")
    with pytest.raises(SourceUnavailable) as caught:
        await asyncio.to_thread(sync, cfg)
    message = str(caught.value)
    assert "neovim/neovim v0.10.2: no asset for linux/arm64 (glibc)" in message
    assert "nvim.appimage: no architecture in the name (taken as amd64), not arm64" in message
    assert "nvim-linux64.tar.gz: built for amd64, not arm64" in message
    assert "nvim-win64.msi: a Windows installer" in message
    # with another repository that works, the failure is a detail, not a failed sync
    both = config(
        fake,
        short_tmp,
        arch="arm64",
        repos=[{"repo": "neovim/neovim", "version": "0.10"}, "junegunn/fzf"],
    )
    mixed = await asyncio.to_thread(sync, both)
    assert "nvim.appimage" in mixed.details["errors"]["neovim/neovim"]
    assert [rec.ident for rec in mixed.records] == ["junegunn/fzf"]
    missing = config(fake, short_tmp, repo="nobody/nothing")
    with pytest.raises(SourceUnavailable, match="HTTP 404"):
        await asyncio.to_thread(sync, missing)


async def test_checksum_file_and_digest_that_disagree_are_refused(
    aiohttp_server, short_tmp: Path
) -> None:
    """When a checksum file and GitHub's digest disagree, the asset is refused."""
    fake = world()
    release = fake.repos["BurntSushi/ripgrep"].releases[0]
    name = "ripgrep-14.1.1-x86_64-unknown-linux-musl.tar.gz"
    release.digests[name] = "sha256:" + "0" * 64
    await start(aiohttp_server, fake)
    with pytest.raises(SourceUnavailable, match="checksums disagree"):
        await asyncio.to_thread(sync, config(fake, short_tmp, repo="BurntSushi/ripgrep"))


async def test_planned_command_downloads_verifies_and_runs(aiohttp_server, short_tmp: Path) -> None:
    """The planned argv fetches the release tarball, checks its sha256, unpacks it and runs
    the program found by name; a changed upload is refused."""
    fake = world()
    await start(aiohttp_server, fake)
    cfg = config(fake, short_tmp, repo="BurntSushi/ripgrep", binary="rg")
    record = (await asyncio.to_thread(sync, cfg)).records[0]
    argv = SOURCES["app-image-git-hub-releases"].plan(record, {}, {}).argv
    assert shlex.split(shlex.join(argv)) == argv
    env = {"PATH": os.defpath, "XDG_CACHE_HOME": str(short_tmp / "cache")}

    async def run(extra: list[str]) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            *argv, *extra, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
        return proc.returncode or 0, out.decode(), err.decode()

    assert await run(["-i", "needle; rm -rf /"]) == (0, "rg -i needle; rm -rf /\n", "")
    # the publisher's file changes after the sync: a fresh cache must refuse it
    release = fake.repos["BurntSushi/ripgrep"].releases[0]
    release.files["ripgrep-14.1.1-x86_64-unknown-linux-musl.tar.gz"] = b"tampered"
    env["XDG_CACHE_HOME"] = str(short_tmp / "cache2")
    code, out, err = await run([])
    assert code == 3 and out == "" and "sha256 mismatch" in err


async def release_service(short_tmp: Path, source_config: dict[str, Any]) -> Any:
    """A started AppService whose one source `gh` is GitHub releases with `source_config`."""
    from hoodyd.apps.service import AppService

    state = short_tmp / "state"
    (state / "run").mkdir(parents=True)
    source = {
        "source_id": "gh",
        "enabled": True,
        "priority": 10,
        "provider": "appimage",
        "source_type": "app-image-git-hub-releases",
        "config": source_config,
    }
    (state / "run" / "config.json").write_text(
        json.dumps({"version": 1, "sources": [source], "profiles": []})
    )
    service = AppService(state, quiet_settings(), environ={"XDG_CACHE_HOME": str(short_tmp)})
    await service.start()
    return service


async def test_network_failure_keeps_the_last_good_index(aiohttp_server, short_tmp: Path) -> None:
    """When the API is unreachable, the source keeps its records and diagnostics say why."""
    fake = world()
    server = await start(aiohttp_server, fake)
    service = await release_service(
        short_tmp, config(fake, short_tmp, repo="BurntSushi/ripgrep", binary="rg")
    )
    try:
        done = await service.job(service.sync_source("gh").job_id, wait=True, timeout_ms=30_000)
        assert done.status == "done", done
        found = service.search(Selector(app="rg")).candidates
        assert found and found[0].candidate_id == "gh:BurntSushi/ripgrep"
        await server.close()
        failed = await service.job(service.sync_source("gh").job_id, wait=True, timeout_ms=30_000)
        assert failed.status == "error" and fake.base in (failed.error or "")
        diagnostics = service.diagnostics("gh")
        assert diagnostics.status == "error" and diagnostics.last_error
        assert "refused" in diagnostics.last_error
        assert diagnostics.provider_details["record_count"] == 1
        assert service.search(Selector(app="ripgrep")).candidates[0].version == "14.1.1"
    finally:
        await service.close()


async def test_selector_release_and_asset_pin_release_records(
    aiohttp_server, short_tmp: Path
) -> None:
    """At search time `release` and `asset` keep only the release records that match them,
    while records of other sources are not affected."""
    fake = world()
    await start(aiohttp_server, fake)
    service = await release_service(
        short_tmp, config(fake, short_tmp, repo="neovim/neovim", binary="nvim", releases=2)
    )
    try:
        done = await service.job(service.sync_source("gh").job_id, wait=True, timeout_ms=30_000)
        assert done.status == "done", done
        both = service.search(Selector(app="neovim")).candidates
        assert {c.version for c in both} == {"0.11.0", "0.10.2"}
        older = service.search(Selector(app="neovim", release="v0.10.2")).candidates
        assert [c.version for c in older] == ["0.10.2"]
        assert [c.version for c in service.search(Selector(app="neovim", release="0.11.0"))
                .candidates] == ["0.11.0"]
        assert service.search(Selector(app="neovim", release="v9.9.9")).candidates == []
        by_name = service.search(Selector(app="neovim", asset="nvim.appimage")).candidates
        assert [c.version for c in by_name] == ["0.10.2"]  # 0.11 renamed its AppImage
        by_glob = service.search(Selector(app="neovim", asset="nvim*.appimage")).candidates
        assert {c.version for c in by_glob} == {"0.11.0", "0.10.2"}
        assert service.search(Selector(app="neovim", asset="*.zip")).candidates == []
    finally:
        await service.close()
