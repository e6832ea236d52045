"""Each source type's typed settings: their defaults, the config keys the runtime config
refuses over HTTP (unknown keys, wrong types, out-of-range values), keys an earlier version
left in the file, and the tests' world config still decoding and syncing."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, get_args

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from structlog.testing import capture_logs

from hoodyd.app import create_app
from hoodyd.apps.catalog.assets import DEFAULT_PREFER
from hoodyd.apps.catalog.runtime_config import PROVIDERS, RuntimeConfigStore
from hoodyd.apps.catalog.sources import SOURCES
from hoodyd.apps.catalog.sources.apt import AptSettings
from hoodyd.apps.catalog.sources.nix import NixSettings
from hoodyd.apps.catalog.sources.system_path import SystemPathSettings
from hoodyd.errors import InvalidRequest
from hoodyd.schemas.run import SourceType
from tests.conftest import make_config
from tests.data.apps.world import World, make_world

BASE = "/api/v1/run"

# the least config each type accepts (only the remote index has a required key)
MINIMAL: dict[str, dict[str, Any]] = {"manifest-remote-index": {"url": "https://example.org/a"}}

DEFAULTS: dict[str, dict[str, Any]] = {
    "system-path": {"path": None, "applications_dirs": None},
    "apt": {"lists": None, "status_file": "/var/lib/dpkg/status", "info_dir": "/var/lib/dpkg/info"},
    "nix-pkgs": {"file": None, "command": "search", "timeout_s": 900, "flake": "nixpkgs"},
    "trusted-list-file": {"path": None},
    "manifest-registry": {"path": None},
    "manifest-remote-index": {"url": "https://example.org/a", "timeout_s": 30},
    "app-image-pinned": {
        "url": None, "name": None, "apps": None, "sha256": None, "title": "",
        "description": "", "kind": "gui", "arch": "any", "version": "", "homepage": "",
        "tags": (), "keywords": (), "format": None, "binary": None, "args": (),
        "terminal": False, "author_pubkey_ed25519": None, "sig_ed25519": None,
    },
    "app-image-catalog": {"path": None, "url": None, "timeout_s": 30},
    "app-image-git-hub-releases": {
        "repo": None, "repos": (), "asset": None, "release": None, "channel": None,
        "version": None, "kind": None, "title": None, "binary": None, "args": None,
        "releases": 1, "os": None, "arch": None, "libc": None, "prefer": DEFAULT_PREFER,
        "alternatives": False, "api_url": "https://api.github.com", "token": None,
        "token_env": "GITHUB_TOKEN", "per_page": 30, "cache_dir": None, "timeout_s": 30,
    },
    "pkgx": {"db": None, "pkgx_dir": None},
    "oci-local-images": {"engine": None, "timeout_s": 60, "gui": ()},
    "flatpak": {"remotes": True, "remote": None, "timeout_s": 300},
    "pypi": {
        "packages": (), "metadata": True, "index_url": "https://pypi.org/pypi", "runner": None,
        "timeout_s": 30,
    },
    "npm": {"packages": (), "registry_url": "https://registry.npmjs.org", "timeout_s": 30},
    "nix-flake": {"flake": None, "system": None, "timeout_s": 600},
}  # fmt: skip


def run_app(state_dir: Path) -> web.Application:
    return create_app(make_config(state_dir, run={"auto_sync": False}), areas=("run",))


def new_source(source_type: str, config: dict[str, Any], source_id: str = "new") -> dict[str, Any]:
    return {
        "source_id": source_id,
        "enabled": False,
        "priority": 1,
        "provider": PROVIDERS[source_type],
        "source_type": source_type,
        "config": config,
    }


async def refused(client: TestClient, source: dict[str, Any]) -> str:
    """POST `source`, expect the bad-source-config 400, and return its message."""
    answer = await client.post(f"{BASE}/sources", json=source)
    body = await answer.json()
    assert answer.status == 400 and body["reason"] == "INVALID_SOURCE_CONFIG", body
    message: str = body["error"]
    return message


def test_every_source_type_declares_settings() -> None:
    """Every source type of the contract has a module with a frozen settings Struct that
    refuses unknown keys."""
    assert set(SOURCES) == set(get_args(SourceType)) == set(DEFAULTS)
    for source in SOURCES.values():
        config = source.settings_type.__struct_config__
        assert config.frozen and config.forbid_unknown_fields, source.source_type


@pytest.mark.parametrize("source_type", sorted(DEFAULTS))
def test_defaults(source_type: str) -> None:
    """A source's settings from its least config hold the documented defaults."""
    settings = SOURCES[source_type].settings(MINIMAL.get(source_type))
    assert msgspec.structs.asdict(settings) == DEFAULTS[source_type]


async def test_unknown_key_is_refused_for_every_source_type(aiohttp_client, short_tmp) -> None:
    """An unknown config key is a 400 INVALID_SOURCE_CONFIG naming the key, whatever the
    source type, and nothing is added."""
    client = await aiohttp_client(run_app(short_tmp / "s"))
    before = await (await client.get(f"{BASE}/config")).json()
    for source_type in sorted(DEFAULTS):
        config = {**MINIMAL.get(source_type, {}), "colour": "red"}
        message = await refused(client, new_source(source_type, config))
        assert "config.colour: unknown key" in message, message
        assert f"({source_type})" in message
    assert await (await client.get(f"{BASE}/config")).json() == before


async def test_wrong_types_and_bounds_are_refused(aiohttp_client, short_tmp) -> None:
    """A value of the wrong type, out of its bounds or not one of its choices — at the top
    or nested — is a 400 naming the key, through POST and PATCH alike."""
    client = await aiohttp_client(run_app(short_tmp / "s"))
    cases = [
        ("flatpak", {"timeout_s": "30"}, "config.timeout_s: expected `float`, got `str`"),
        ("flatpak", {"remotes": "no"}, "config.remotes: expected `bool`, got `str`"),
        ("nix-pkgs", {"timeout_s": 0}, "config.timeout_s: expected `float` > 0"),
        ("nix-pkgs", {"command": "query"}, "config.command: invalid enum value 'query'"),
        ("apt", {"lists": "/var/lib/apt/lists/x"}, "config.lists: expected `array | null`"),
        ("system-path", {"path": 7}, "config.path: expected `str | null`, got `int`"),
        ("app-image-git-hub-releases", {"per_page": 1000}, "config.per_page: expected `int` <="),
        ("app-image-git-hub-releases", {"repo": "no-slash"}, "config.repo: expected `str`"),
        (
            "app-image-git-hub-releases",
            {"repos": [{"repo": "a/b", "colour": 1}]},
            "config.repos[0].colour: unknown key",
        ),
        ("npm", {"registry_url": "file:///etc"}, "config.registry_url: expected `str` matching"),
        ("pypi", {"packages": [{"name": "x", "extras": []}]}, "config.packages[0].extras"),
    ]
    for n, (source_type, config, expected) in enumerate(cases):
        message = await refused(client, new_source(source_type, config, f"bad-{n}"))
        assert expected in message, (expected, message)
    # what only a sync needs is required of an enabled source (a disabled one may wait)
    enabled = {**new_source("manifest-remote-index", {}, "bad-url"), "enabled": True}
    assert "config.url: required" in await refused(client, enabled)
    added = await client.post(f"{BASE}/sources", json=new_source("flatpak", {"remotes": False}))
    assert added.status == 201
    patched = await client.patch(f"{BASE}/sources/new", json={"config": {"remote": 7}})
    body = await patched.json()
    assert patched.status == 400 and body["reason"] == "INVALID_SOURCE_CONFIG"
    assert "config.remote: expected `str | null`, got `int`" in body["error"]
    listed = await (await client.get(f"{BASE}/sources")).json()
    assert [s["config"] for s in listed if s["source_id"] == "new"] == [{"remotes": False}]


async def test_full_configs_are_accepted_as_written(aiohttp_client, short_tmp) -> None:
    """Configs using the documented keys are stored as written: the wire keeps the object
    the client sent, defaults are not filled in."""
    client = await aiohttp_client(run_app(short_tmp / "s"))
    github = {
        "repos": ["sharkdp/bat", {"repo": "neovim/neovim", "kind": "cli", "args": ["-u"]}],
        "releases": 2, "prefer": ["archive", "binary"], "alternatives": True, "per_page": 100,
        "token_env": "GH_TOKEN", "os": "linux", "arch": "arm64", "libc": "musl",
    }  # fmt: skip
    pinned = {"apps": [{"url": "https://example.org/x.AppImage", "name": "x", "sha256": "0"}]}
    oci = {"engine": "podman", "gui": "jlesage/*", "timeout_s": 5}
    pypi = {"packages": ["ruff", {"name": "httpie", "commands": ["http"]}], "runner": "pipx"}
    for n, (source_type, config) in enumerate(
        [("app-image-git-hub-releases", github), ("app-image-pinned", pinned),
         ("oci-local-images", oci), ("pypi", pypi)]
    ):  # fmt: skip
        added = await client.post(f"{BASE}/sources", json=new_source(source_type, config, f"s{n}"))
        assert added.status == 201, await added.text()
        stored = [s for s in await added.json() if s["source_id"] == f"s{n}"]
        assert stored[0]["config"] == config


def test_world_config_decodes_into_typed_settings(short_tmp: Path) -> None:
    """The tests' world config loads with each source's settings decoded once, typed."""
    world = make_world(short_tmp / "w")
    world.write_config(short_tmp / "s")
    store = RuntimeConfigStore(short_tmp / "s" / "run" / "config.json")
    store.load({})
    assert store.settings("system-path") == SystemPathSettings(
        path=str(world.bin), applications_dirs=(str(world.apps),)
    )
    assert store.settings("apt") == AptSettings(
        lists=(str(world.packages),), status_file=str(world.status), info_dir=str(world.info)
    )
    assert store.settings("nixpkgs") == NixSettings(command="env")
    assert store.settings("apt") is store.settings("apt")


@pytest.fixture
def world(short_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    world = make_world(short_tmp / "w")
    monkeypatch.setenv("PATH", f"{world.nix_bin}:{os.environ['PATH']}")  # the fake nix-env
    return world


async def sync_all(client: TestClient) -> dict[str, Any]:
    job = await (await client.post(f"{BASE}/sources/sync")).json()
    done = await (
        await client.get(f"{BASE}/jobs/{job['job_id']}?wait=done&timeout_ms=60000")
    ).json()
    assert done["status"] == "done", done
    sources: dict[str, Any] = done["result"]["sources"]
    return sources


async def test_world_config_still_syncs(aiohttp_client, short_tmp: Path, world: World) -> None:
    """The world's existing config (every source type it uses) loads at start-up, syncs
    every source and finds the apps of each."""
    world.write_config(short_tmp / "s")
    client = await aiohttp_client(run_app(short_tmp / "s"))
    results = await sync_all(client)
    assert {source_id: r["status"] for source_id, r in results.items()} == {
        "system-path": "ok", "apt": "ok", "nixpkgs": "ok", "team": "ok",
    }  # fmt: skip
    found = await (await client.get(f"{BASE}/search", params={"app": "jq", "limit": 100})).json()
    assert {c["source_id"] for c in found["candidates"]} >= {"system-path", "apt", "nixpkgs"}


async def test_ignored_keys_left_by_an_earlier_version(
    aiohttp_client, short_tmp: Path, world: World
) -> None:
    """A key no source reads any more, in the file an earlier version wrote, does not stop
    start-up: it is dropped with a `source_config_ignored_keys` warning, the source syncs,
    and the file is left as it was until the next edit."""
    path = short_tmp / "s" / "run" / "config.json"
    world.write_config(short_tmp / "s")
    stored = json.loads(path.read_text())
    stored["sources"][1]["config"]["compression"] = "xz"  # the apt source
    path.write_text(json.dumps(stored))
    with capture_logs() as logs:
        client = await aiohttp_client(run_app(short_tmp / "s"))
    warnings = [e for e in logs if e["event"] == "source_config_ignored_keys"]
    assert warnings == [
        {
            "event": "source_config_ignored_keys",
            "log_level": "warning",
            "source_id": "apt",
            "source_type": "apt",
            "keys": ["compression"],
        }
    ]
    config = await (await client.get(f"{BASE}/config")).json()
    assert "compression" not in config["sources"][1]["config"]
    assert config["sources"][1]["config"]["lists"] == [str(world.packages)]
    assert "compression" in path.read_text()
    assert (await sync_all(client))["apt"]["status"] == "ok"
    patched = await client.patch(f"{BASE}/sources/apt", json={"priority": 55})
    assert patched.status == 200
    assert "compression" not in path.read_text()


def test_a_bad_value_in_the_file_still_refuses_start_up(short_tmp: Path) -> None:
    """A value of the wrong type in the file is not guessed at: start-up stops with the
    file, the source and the key named, as for any unreadable runtime config."""
    world = make_world(short_tmp / "w")
    world.write_config(short_tmp / "s")
    path = short_tmp / "s" / "run" / "config.json"
    stored = json.loads(path.read_text())
    stored["sources"][2]["config"]["timeout_s"] = "soon"  # the nix source
    path.write_text(json.dumps(stored))
    with pytest.raises(InvalidRequest) as caught:
        RuntimeConfigStore(path).load({})
    assert caught.value.reason == "BAD_CONFIG"
    assert "config.json" in caught.value.message
    assert "source nixpkgs (nix-pkgs): config.timeout_s" in caught.value.message
