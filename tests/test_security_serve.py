"""`hoodyd serve` keeps its places private and its own: one daemon per state dir and socket,
directories and files closed to other users, unparseable requests answered in JSON."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import DaemonProcess, raw_http, start_daemon
from tests.ports import free_port

NOBODY = 65534


def serve_once(
    state_dir: Path, socket: Path, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run `hoodyd serve` expecting it to refuse and exit on its own."""
    return subprocess.run(
        [sys.executable, "-m", "hoodyd", "serve", "--state-dir", str(state_dir),
         "--socket", str(socket)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "HOODYD_LOG_FORMAT": "json"},
    )  # fmt: skip


async def raw_unix(socket: Path, data: bytes) -> tuple[int, bytes, bytes]:
    return await raw_http(await asyncio.open_unix_connection(str(socket)), data)


def supervisord_pids(state_dir: Path) -> list[int]:
    listing = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [
        int(line.split()[0])
        for line in listing.splitlines()
        if "supervisord" in line and str(state_dir) in line
    ]


def test_a_second_daemon_on_the_same_state_dir_leaves_the_first_alone(
    daemon: DaemonProcess,
) -> None:
    """The second `hoodyd serve` exits non-zero naming the first one's pid and socket; the
    first one's socket, events socket and supervisord are untouched."""
    before = daemon.socket.stat().st_ino
    events = daemon.state_dir / "events.sock"
    events_before = events.stat().st_ino
    supervisords = supervisord_pids(daemon.state_dir)
    other_socket = daemon.state_dir / "other.sock"
    result = serve_once(daemon.state_dir, other_socket)
    assert result.returncode != 0
    assert f"hoodyd is already running (pid {daemon.process.pid}) on {daemon.socket}" in (
        result.stderr
    )
    assert daemon.socket.stat().st_ino == before
    assert events.stat().st_ino == events_before
    assert not other_socket.exists()
    assert supervisord_pids(daemon.state_dir) == supervisords
    assert daemon.process.poll() is None


def test_a_second_daemon_on_the_same_socket_is_refused(
    daemon: DaemonProcess, short_tmp: Path
) -> None:
    """Another state dir serving the same socket path is refused before it starts anything."""
    other_state = short_tmp / "other-state"
    result = serve_once(other_state, daemon.socket)
    assert result.returncode != 0
    assert "hoodyd is already running" in result.stderr
    assert daemon.socket.exists()
    assert not (other_state / "supervisor").exists()


def test_state_and_files_are_private(short_tmp: Path) -> None:
    """State dir 0700 (narrowed when an older install left it 0755), socket 0600 without a
    group, the lock and token 0600, and everything the daemon created closed to others."""
    state = short_tmp / "state"
    state.mkdir(mode=0o755)
    os.chmod(state, 0o755)
    proc = start_daemon(state, "--tcp", f"127.0.0.1:{free_port()}")
    try:
        assert stat.S_IMODE(state.stat().st_mode) == 0o700
        assert stat.S_IMODE(proc.socket.stat().st_mode) == 0o600
        for name in ("lock", "token"):
            assert stat.S_IMODE((state / name).stat().st_mode) == 0o600, name
        for path in state.rglob("*"):
            if path.is_symlink() or path.name.startswith("daemon-"):
                continue  # the test's own record of the daemon's output
            mode = stat.S_IMODE(path.lstat().st_mode)
            assert mode & 0o077 == 0, (path, oct(mode))
    finally:
        proc.stop()


def test_a_group_on_the_socket_opens_it_to_that_group_only(short_tmp: Path) -> None:
    """With server.allowed_gids, the socket is 0660 and its directory 0750, both of that group."""
    gid = 100
    config = short_tmp / "hoodyd.toml"
    sock_dir = short_tmp / "run"
    config.write_text(f"[server]\nallowed_gids = [{gid}]\nsocket = \"{sock_dir / 's.sock'}\"\n")
    proc = start_daemon(
        short_tmp / "state", "--config", str(config), socket=sock_dir / "s.sock"
    )
    try:
        info = (sock_dir / "s.sock").stat()
        assert stat.S_IMODE(info.st_mode) == 0o660
        assert info.st_gid == gid
        assert stat.S_IMODE(sock_dir.stat().st_mode) == 0o750
        assert sock_dir.stat().st_gid == gid
    finally:
        proc.stop()


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a directory to another user needs root")
def test_a_state_dir_of_another_user_is_refused(short_tmp: Path) -> None:
    """A state dir owned by someone else is refused with a clear message; nothing is written."""
    state = short_tmp / "theirs"
    state.mkdir(mode=0o700)
    os.chown(state, NOBODY, NOBODY)
    result = serve_once(state, short_tmp / "s.sock")
    assert result.returncode != 0
    assert f"{state} belongs to uid {NOBODY}" in result.stderr
    assert list(state.iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a directory to another user needs root")
def test_a_socket_dir_another_user_prepared_is_refused(short_tmp: Path) -> None:
    """The `/tmp/hoodyd-UID` trap: a directory another user created 0777 is never used."""
    trap = short_tmp / "hoodyd-0"
    trap.mkdir()
    os.chown(trap, NOBODY, NOBODY)
    os.chmod(trap, 0o777)
    result = serve_once(short_tmp / "state", trap / "hoodyd" / "hoodyd.sock")
    assert result.returncode != 0
    assert f"{trap} belongs to uid {NOBODY}" in result.stderr
    assert not (trap / "hoodyd").exists()


def test_a_world_writable_socket_dir_is_refused(short_tmp: Path) -> None:
    """Even one's own directory is refused as a parent when others may write to it."""
    parent = short_tmp / "open"
    parent.mkdir()
    os.chmod(parent, 0o777)
    result = serve_once(short_tmp / "state", parent / "hoodyd" / "hoodyd.sock")
    assert result.returncode != 0
    assert "is writable by other users" in result.stderr


async def test_oversized_request_lines_and_headers_answer_json(daemon: DaemonProcess) -> None:
    """A request line or a header over 8190 bytes answers 431 JSON instead of text/plain."""
    for request in (
        b"GET /api/v1/daemon/" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /api/v1/daemon/health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",
    ):
        status, headers, body = await raw_unix(daemon.socket, request)
        assert status == 431
        assert b"Content-Type: application/json" in headers
        payload = json.loads(body)
        assert payload["reason"] == "HEADERS_TOO_LARGE"
        assert payload["success"] is False and payload["code"] == 431
    status, _, body = await raw_unix(daemon.socket, b"NOT HTTP AT ALL\r\n\r\n")
    assert status == 400
    assert json.loads(body)["reason"] == "MALFORMED_REQUEST"


async def test_terminal_shells_get_the_usual_umask(
    daemon: DaemonProcess, unix_session: aiohttp.ClientSession
) -> None:
    """hoodyd runs with umask 077, but a terminal shell starts with 022 like a login shell."""
    async with unix_session.post(
        "/api/v1/terminal/execute?terminal_id=1", json={"command": "umask", "timeout": 20}
    ) as response:
        body = await response.json()
    assert response.status == 200, body
    assert body["stdout"].strip() == "0022"
