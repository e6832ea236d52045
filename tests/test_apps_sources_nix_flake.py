"""nix-flake: apps and packages from `nix flake show --json`, locked with
`nix flake metadata --json`, through a nix executable on PATH."""

from __future__ import annotations

import base64
import json
import shlex
from pathlib import Path

import pytest

from hoodyd.apps.catalog.records import SourceUnavailable, SyncContext
from hoodyd.apps.catalog.sources import SOURCES
from hoodyd.apps.catalog.sources.appimage import record_integrity
from tests.data.apps.world import executable

NAR = bytes(range(32))
METADATA = {
    "description": "A post-modern text editor.",
    "lastModified": 1732000000,
    "locked": {
        "lastModified": 1732000000,
        "narHash": "sha256-" + base64.b64encode(NAR).decode(),
        "owner": "helix-editor",
        "repo": "helix",
        "rev": "a" * 40,
        "type": "github",
    },
    "original": {"owner": "helix-editor", "repo": "helix", "type": "github"},
    "originalUrl": "github:helix-editor/helix",
    "path": "/nix/store/0000000000000000000000000000000-source",
    "resolvedUrl": "github:helix-editor/helix",
    "revision": "a" * 40,
    "url": "github:helix-editor/helix/" + "a" * 40,
}
SHOW = {
    "apps": {"x86_64-linux": {"hx": {"type": "app", "description": "Helix editor"}}},
    "checks": {"x86_64-linux": {"clippy": {"name": "helix-clippy", "type": "derivation"}}},
    "devShells": {"x86_64-linux": {"default": {"name": "nix-shell", "type": "derivation"}}},
    "packages": {
        "aarch64-linux": {"helix": {"name": "helix-24.07", "type": "derivation"}},
        "x86_64-linux": {
            "default": {"description": "A post-modern text editor.", "name": "helix-24.07",
                        "type": "derivation"},
            "helix-unwrapped": {"name": "helix-term-24.07", "type": "derivation"},
            "hx": {"name": "helix-24.07", "type": "derivation"},
        },
    },
}  # fmt: skip


def fake_nix(bin_dir: Path) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    (bin_dir / "metadata.json").write_text(json.dumps(METADATA))
    (bin_dir / "show.json").write_text(json.dumps(SHOW))
    prefix = "--extra-experimental-features nix-command flakes flake"
    executable(
        bin_dir / "nix",
        "#!/bin/sh\n"
        f'[ "$*" = "{prefix} metadata --json github:helix-editor/helix" ] && '
        f"exec /bin/cat {shlex.quote(str(bin_dir / 'metadata.json'))}\n"
        f'[ "$*" = "{prefix} show --json github:helix-editor/helix" ] && '
        f"exec /bin/cat {shlex.quote(str(bin_dir / 'show.json'))}\n"
        "echo \"error: cannot find flake '$*'\" >&2; exit 1\n",
    )


def test_flake_apps_and_packages_with_a_locked_launch(short_tmp: Path) -> None:
    """This system's apps and packages become records that run the locked flake, with the
    tree's narHash as integrity; other systems, checks and shells are left out."""
    bin_dir = short_tmp / "bin"
    fake_nix(bin_dir)
    config = {"flake": "github:helix-editor/helix", "system": "x86_64-linux"}
    result = SOURCES["nix-flake"].sync(
        SyncContext(SOURCES["nix-flake"].settings(config), environ={"PATH": str(bin_dir)})
    )
    records = {r.ident: r for r in result.records}
    assert sorted(records) == [
        "apps.hx", "packages.default", "packages.helix-unwrapped", "packages.hx",
    ]  # fmt: skip
    default = records["packages.default"]
    assert (default.name, default.version, default.arch) == ("helix", "24.07", "amd64")
    assert records["packages.hx"].auxiliary and not records["apps.hx"].auxiliary
    integrity = record_integrity(records["apps.hx"])
    assert integrity is not None and integrity.sha256 == NAR.hex()
    assert integrity.url == METADATA["url"]
    plan = SOURCES["nix-flake"].plan(records["apps.hx"], config, result.details)
    assert plan.argv[-2:] == ["run", f"{METADATA['url']}#apps.x86_64-linux.hx"]


def test_flake_errors(short_tmp: Path) -> None:
    """A missing reference, a missing nix or a failing nix is a sync error."""
    source = SOURCES["nix-flake"]
    flake = source.settings({"flake": "github:a/b"})
    with pytest.raises(SourceUnavailable, match=r"config\.flake"):
        source.sync(SyncContext(source.settings({}), environ={"PATH": ""}))
    with pytest.raises(SourceUnavailable, match="nix not found"):
        source.sync(SyncContext(flake, environ={"PATH": str(short_tmp)}))
    bin_dir = short_tmp / "bin"
    fake_nix(bin_dir)
    with pytest.raises(SourceUnavailable, match="cannot find flake"):
        source.sync(SyncContext(flake, environ={"PATH": str(bin_dir)}))
