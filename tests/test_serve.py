"""`hoodyd serve` as a process: its socket, peer checks, TCP token, logs and graceful stop."""

from __future__ import annotations

import json
import os
import signal
import stat
from pathlib import Path

import aiohttp

from hoodyd.polling import poll_until
from tests.conftest import DaemonProcess, start_daemon
from tests.ports import free_port


async def test_serves_health_on_its_unix_socket_with_mode_0600(
    daemon: DaemonProcess, unix_session: aiohttp.ClientSession
) -> None:
    """The socket appears with mode 0600 (no group is configured) and answers the 9-field
    health object."""
    assert stat.S_IMODE(daemon.socket.stat().st_mode) == 0o600
    async with unix_session.get("/api/v1/daemon/health") as response:
        body = await response.json()
    assert response.status == 200
    assert set(body) == {
        "status", "service", "built", "started", "memory", "fds", "pid", "ip", "userAgent"
    }
    assert body["status"] == "ok"
    assert body["pid"] == daemon.process.pid
    assert body["memory"]["rss"] > 0


async def test_unknown_path_is_a_json_404(unix_session: aiohttp.ClientSession) -> None:
    """A path that does not exist answers a JSON error, not an HTML page."""
    async with unix_session.get("/api/v1/daemon/nope") as response:
        body = await response.json()
    assert response.status == 404
    assert body["success"] is False
    assert body["reason"] == "NOT_FOUND"


async def test_every_request_is_logged_as_json_with_a_request_id(
    daemon: DaemonProcess, unix_session: aiohttp.ClientSession
) -> None:
    """Each request leaves one JSON `request` event bound to the id echoed in X-Request-Id."""
    async with unix_session.get("/api/v1/daemon/health") as response:
        request_id = response.headers["X-Request-Id"]
    daemon.stop()
    events = [json.loads(line) for line in daemon.logs().splitlines() if line.startswith("{")]
    request_events = [e for e in events if e.get("event") == "request"]
    assert any(e["request_id"] == request_id and e["status"] == 200 for e in request_events)


def test_sigterm_stops_the_daemon_and_removes_its_socket(daemon: DaemonProcess) -> None:
    """SIGTERM drains and exits 0, leaving no socket file behind."""
    assert daemon.stop(signal.SIGTERM) == 0
    assert not daemon.socket.exists()


async def test_tcp_requires_the_bearer_token_except_for_health(short_tmp: Path) -> None:
    """On TCP every request but /health needs `Authorization: Bearer <token>`."""
    port = free_port()
    proc = start_daemon(short_tmp, "--tcp", f"127.0.0.1:{port}", env={"HOODYD_TOKEN": "s3cret"})
    try:
        async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{port}") as session:

            async def healthy() -> bool | None:
                try:
                    async with session.get("/api/v1/daemon/health") as health:
                        assert health.status == 200
                except aiohttp.ClientConnectionError:
                    return None
                return True

            await poll_until(healthy, timeout=10, interval=0.05)
            async with session.get("/api/v1/daemon/openapi.json") as anonymous:
                assert anonymous.status == 401
                assert (await anonymous.json())["reason"] == "BAD_TOKEN"
            async with session.get(
                "/api/v1/daemon/openapi.json", headers={"Authorization": "Bearer wrong"}
            ) as wrong:
                assert wrong.status == 401
            async with session.get(
                "/api/v1/daemon/openapi.json", headers={"Authorization": "Bearer s3cret"}
            ) as good:
                assert good.status == 200
    finally:
        proc.stop()
    assert "s3cret" not in proc.logs()


def test_a_generated_token_is_written_once_with_mode_0600(short_tmp: Path) -> None:
    """Without a configured token, TCP mode writes STATE/token (0600) and reuses it."""
    port = free_port()
    proc = start_daemon(short_tmp, "--tcp", f"127.0.0.1:{port}")
    proc.stop()
    token_file = short_tmp / "token"
    first = token_file.read_text()
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    proc = start_daemon(short_tmp, "--tcp", f"127.0.0.1:{free_port()}")
    proc.stop()
    assert token_file.read_text() == first


async def test_a_peer_whose_uid_is_not_allowed_is_refused(short_tmp: Path) -> None:
    """SO_PEERCRED is checked: a uid outside allowed_uids gets 403 JSON."""
    config_file = short_tmp / "hoodyd.toml"
    config_file.write_text(f"[server]\nallowed_uids = [{os.geteuid() + 4242}]\n")
    proc = start_daemon(short_tmp, "--config", str(config_file))
    try:
        async with aiohttp.ClientSession(
            connector=aiohttp.UnixConnector(path=str(proc.socket)), base_url="http://localhost"
        ) as session, session.get("/api/v1/daemon/health") as response:
            body = await response.json()
        assert response.status == 403
        assert body["reason"] == "PEER_NOT_ALLOWED"
    finally:
        proc.stop()
