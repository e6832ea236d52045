"""A terminal's `cwd_auto_create` creates the directory with the rights of the session's user."""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from hoodyd.app import create_app
from tests.conftest import make_config

BASE = "/api/v1/terminal"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="creating a directory as another user needs root"
)


@pytest.fixture
async def client(aiohttp_client: Any, short_tmp: Path) -> AsyncIterator[TestClient]:
    """The real app factory, serving only the terminal area."""
    config = make_config(short_tmp, terminals={"user_rc": False})
    yield await aiohttp_client(create_app(config, areas=("terminal",)))


@pytest.fixture
def places() -> Iterator[tuple[Path, Path]]:
    """A home writable by `nobody` and a directory only root may write, side by side in a
    directory everyone may enter."""
    nobody = pwd.getpwnam("nobody")
    top = Path(tempfile.mkdtemp(prefix="hd-u-", dir="/tmp"))
    top.chmod(0o755)
    home = top / "home"
    home.mkdir()
    os.chown(home, nobody.pw_uid, nobody.pw_gid)
    secret = top / "secret"
    secret.mkdir(mode=0o755)  # nobody may look, not write
    try:
        yield home, secret
    finally:
        shutil.rmtree(top, ignore_errors=True)


async def execute(client: TestClient, query: str, status: int) -> dict[str, Any]:
    response = await client.post(f"{BASE}/execute?{query}", json={"command": "pwd"})
    body: dict[str, Any] = await response.json()
    assert response.status == status, body
    return body


async def test_a_users_symlink_cannot_lead_root_into_a_directory_they_cannot_write(
    client: TestClient, places: tuple[Path, Path]
) -> None:
    """A `cwd` through the user's symlink into a root-only directory is a 400 that creates
    nothing there and starts no session."""
    home, secret = places
    link = home / "link"
    link.symlink_to(secret)
    os.lchown(link, *pwd.getpwnam("nobody")[2:4])
    body = await execute(
        client, f"terminal_id=41&user=nobody&cwd={link}/new/deeper&cwd_auto_create=true", 400
    )
    assert body["reason"] == "CWD_NOT_CREATED"
    assert "Permission denied" in body["error"]
    assert list(secret.iterdir()) == []
    sessions = await client.get(f"{BASE}/sessions")
    assert (await sessions.json())["data"] == []


async def test_a_created_cwd_belongs_to_the_user(
    client: TestClient, places: tuple[Path, Path]
) -> None:
    """A missing `cwd` under a directory the user may write is created, parents too, owned by
    the user, and the shell starts in it."""
    home, _ = places
    target = home / "a" / "b"
    body = await execute(
        client, f"terminal_id=42&user=nobody&cwd={target}&cwd_auto_create=true", 200
    )
    assert body["stdout"] == f"{target}\n"
    nobody = pwd.getpwnam("nobody")
    for made in (home / "a", target):
        info = made.stat()
        assert (info.st_uid, info.st_gid) == (nobody.pw_uid, nobody.pw_gid)


async def test_a_cwd_the_user_may_not_create_leaves_nothing_behind(
    client: TestClient, places: tuple[Path, Path]
) -> None:
    """When only the last component fails, the parents made for it are removed again."""
    home, _ = places
    target = home / "made" / ("x" * 300)
    body = await execute(
        client, f"terminal_id=43&user=nobody&cwd={target}&cwd_auto_create=true", 400
    )
    assert body["reason"] == "CWD_NOT_CREATED"
    assert list(home.iterdir()) == []


async def test_hoodyds_own_user_still_creates_its_cwd(
    client: TestClient, places: tuple[Path, Path]
) -> None:
    """Without `user`, the session's cwd is created as hoodyd's own account, as before."""
    _, secret = places
    target = secret / "mine" / "here"
    body = await execute(client, f"terminal_id=44&cwd={target}&cwd_auto_create=true", 200)
    assert body["stdout"] == f"{target}\n"
    assert target.stat().st_uid == os.geteuid()
