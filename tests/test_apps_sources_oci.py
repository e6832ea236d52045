"""oci-local-images: docker's JSON lines and podman's JSON array from executables on PATH,
digest-pinned launches and GUI images with the display socket mounted."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from hoodyd.apps.catalog.records import SourceUnavailable, SyncContext
from hoodyd.apps.catalog.sources import SOURCES
from hoodyd.apps.catalog.sources.appimage import record_integrity
from tests.data.apps.world import executable

ALPINE_DIGEST = "sha256:beefdbd8a1da6d2915566fde36db9db0b524eb737fc57cd1367effd16dc0d06d"
# `docker image ls --digests --format json`: one object per line, exactly these keys
DOCKER_LINES = [
    {
        "Containers": "N/A",
        "CreatedAt": "2024-07-22 18:22:55 +0000 UTC",
        "CreatedSince": "4 months ago",
        "Digest": ALPINE_DIGEST,
        "ID": "324bc02ae123",
        "Repository": "alpine",
        "SharedSize": "N/A",
        "Size": "7.8MB",
        "Tag": "3.20",
        "UniqueSize": "N/A",
        "VirtualSize": "7.796MB",
    },
    {
        "Containers": "N/A",
        "CreatedAt": "2024-11-01 09:00:00 +0000 UTC",
        "CreatedSince": "3 weeks ago",
        "Digest": "<none>",
        "ID": "9f2a1b3c4d5e",
        "Repository": "jlesage/firefox",
        "SharedSize": "N/A",
        "Size": "512MB",
        "Tag": "latest",
        "UniqueSize": "N/A",
        "VirtualSize": "512MB",
    },
    {
        "Containers": "N/A",
        "CreatedAt": "2024-11-02 09:00:00 +0000 UTC",
        "CreatedSince": "3 weeks ago",
        "Digest": "<none>",
        "ID": "0a0a0a0a0a0a",
        "Repository": "<none>",
        "SharedSize": "N/A",
        "Size": "100MB",
        "Tag": "<none>",
        "UniqueSize": "N/A",
        "VirtualSize": "100MB",
    },
]
# `podman image ls --digests --format json`: one array
PODMAN_ARRAY = [
    {
        "Id": "5a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9",
        "ParentId": "",
        "RepoTags": None,
        "RepoDigests": ["docker.io/library/redis@sha256:" + "1" * 64],
        "Size": 117_000_000,
        "SharedSize": 0,
        "VirtualSize": 117_000_000,
        "Labels": {"org.opencontainers.image.title": "redis"},
        "Containers": 0,
        "Names": ["docker.io/library/redis:7"],
        "Digest": "sha256:" + "1" * 64,
        "History": ["docker.io/library/redis:7"],
        "Created": 1714000000,
        "CreatedAt": "2024-04-25T00:00:00Z",
    },
    {
        "Id": "6b" * 32,
        "Names": ["localhost/gimp:dev"],
        "Digest": "",
        "Labels": {"org.hoodyd.kind": "gui"},
        "Size": 900_000_000,
        "Containers": 0,
    },
]


def fake_engine(bin_dir: Path, name: str, output: str) -> None:
    """An engine on PATH that prints `output` for `image ls --digests --format json`."""
    data = bin_dir / f"{name}.out"
    data.parent.mkdir(parents=True, exist_ok=True)
    data.write_text(output)
    executable(
        bin_dir / name,
        f'#!/bin/sh\n[ "$*" = "image ls --digests --format json" ] || exit 64\n'
        f"exec /bin/cat {shlex.quote(str(data))}\n",
    )


def test_docker_json_lines(short_tmp: Path) -> None:
    """docker's JSON lines become records; a digest pins the launch and is the integrity;
    a GUI image gets the X11 socket and DISPLAY."""
    bin_dir = short_tmp / "bin"
    fake_engine(bin_dir, "docker", "\n".join(json.dumps(line) for line in DOCKER_LINES) + "\n")
    environ = {"PATH": str(bin_dir)}
    source = SOURCES["oci-local-images"]
    assert source.detect(environ) is None
    result = source.sync(SyncContext(source.settings({"gui": ["jlesage/*"]}), environ=environ))
    records = {r.ident: r for r in result.records}
    assert sorted(records) == ["alpine:3.20", "jlesage/firefox:latest"]
    alpine = records["alpine:3.20"]
    assert (alpine.name, alpine.version, alpine.installed, alpine.kind) == (
        "alpine",
        "3.20",
        True,
        "cli",
    )
    plan = source.plan(alpine, {}, result.details)
    assert plan.argv == ["docker", "run", "--rm", "-it", f"alpine@{ALPINE_DIGEST}"]
    integrity = record_integrity(alpine)
    assert integrity is not None and integrity.sha256 == ALPINE_DIGEST[7:]
    firefox = records["jlesage/firefox:latest"]
    assert firefox.kind == "gui" and record_integrity(firefox) is None
    assert source.plan(firefox, {}, result.details).argv == [
        "docker", "run", "--rm", "-it", "--env", "DISPLAY",
        "--volume", "/tmp/.X11-unix:/tmp/.X11-unix:ro", "jlesage/firefox:latest",
    ]  # fmt: skip


def test_podman_json_array(short_tmp: Path) -> None:
    """podman's array is read with its Names, Digest and Labels."""
    bin_dir = short_tmp / "bin"
    fake_engine(bin_dir, "podman", json.dumps(PODMAN_ARRAY, indent=4))
    source = SOURCES["oci-local-images"]
    result = source.sync(SyncContext(source.settings({}), environ={"PATH": str(bin_dir)}))
    records = {r.ident: r for r in result.records}
    assert sorted(records) == ["docker.io/library/redis:7", "localhost/gimp:dev"]
    assert records["localhost/gimp:dev"].kind == "gui"
    plan = SOURCES["oci-local-images"].plan(records["docker.io/library/redis:7"], {}, {})
    assert plan.argv[-1] == "docker.io/library/redis@sha256:" + "1" * 64
    assert plan.argv[0] == "podman"


def test_engine_missing_or_failing(short_tmp: Path) -> None:
    """No engine on PATH, or an engine that fails, is a sync error that says so."""
    source = SOURCES["oci-local-images"]
    with pytest.raises(SourceUnavailable, match="not found on PATH"):
        source.sync(SyncContext(source.settings({}), environ={"PATH": str(short_tmp)}))
    bin_dir = short_tmp / "bin"
    executable(
        bin_dir / "docker", "#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\nexit 1\n"
    )
    with pytest.raises(SourceUnavailable, match="Cannot connect to the Docker daemon"):
        source.sync(SyncContext(source.settings({}), environ={"PATH": str(bin_dir)}))
