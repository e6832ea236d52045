"""`hoodyd serve` stopping and hanging up: SIGTERM answers every in-flight request and closes
every WebSocket within `shutdown_timeout`; SIGHUP is ignored with a log line; on a terminal,
serve says where it listens and, on exit, what it leaves running."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import WSMsgType

from hoodyd.polling import poll_until
from tests.conftest import sleeper, start_daemon
from tests.ports import free_port_range

SHUTDOWN_TIMEOUT = 4.0
# how long a test waits for the daemon to stop before it fails as hung: not a threshold
HANG_GUARD = 8 * SHUTDOWN_TIMEOUT
# a port instance that runs but never listens on its port (`--port N` lands in $1 and $2)
NEVER_LISTENS = "/bin/sh -c 'exec sleep 300' never-listens"


async def test_sigterm_answers_long_polls_closes_websockets_and_exits_in_time(
    short_tmp: Path,
) -> None:
    """20 starts waiting for a port that never opens and 3 attached WebSockets: SIGTERM
    answers each start with a JSON 503 SHUTTING_DOWN, closes each WebSocket with 1001, and
    the daemon exits within shutdown_timeout."""
    config = short_tmp / "hoodyd.toml"
    config.write_text(f"[server]\nshutdown_timeout = {SHUTDOWN_TIMEOUT}\n")
    daemon = start_daemon(short_tmp, "--config", str(config))
    try:
        await _shut_down_while_busy(daemon.process, daemon.socket)
        assert stopped_within_the_timeout(daemon.logs())
    finally:
        daemon.stop(signal.SIGKILL)


def stopped_within_the_timeout(logs: str) -> bool:
    """Whether the log says the daemon stopped and its drain did not run out of
    shutdown_timeout (which it logs as `shutdown_timed_out` before going on)."""
    events = [json.loads(line).get("event") for line in logs.splitlines() if line.startswith("{")]
    return "stopped" in events and "shutdown_timed_out" not in events


async def _shut_down_while_busy(process: subprocess.Popen[bytes], socket_path: Path) -> None:
    base = free_port_range(20)
    connector = aiohttp.UnixConnector(path=str(socket_path), limit=100)
    async with aiohttp.ClientSession(connector=connector, base_url="http://localhost") as session:
        async with session.post("/api/v1/daemon/programs/add", json=sleeper(
            command=NEVER_LISTENS, port_range={"start": base, "end": base + 19})) as response:
            program = (await response.json())["program"]
        async with session.post(
            "/api/v1/terminal/execute?terminal_id=1", json={"command": "true"}
        ) as response:
            assert response.status == 200

        async def long_poll(port: int) -> tuple[int, Any]:
            async with session.post(
                f"/api/v1/daemon/programs/{program['id']}/start",
                json={"port": port, "wait": True, "wait_for": "port", "timeout": 120},
            ) as response:
                return response.status, await response.json()

        polls = [asyncio.create_task(long_poll(port)) for port in range(base, base + 20)]
        sockets = [await session.ws_connect("/api/v1/terminal/attach/1") for _ in range(3)]
        for ws in sockets:
            assert json.loads((await ws.receive()).data)["type"] == "attached"

        async def all_spawned() -> bool | None:
            # an instance with a pid was started by its request, which now waits for the port
            async with session.get(f"/api/v1/daemon/status/{program['id']}") as response:
                instances = (await response.json())["status"]["instances"]
            spawned = [i for i in instances if i["pid"] and i["status"] in ("STARTING", "RUNNING")]
            return True if len(spawned) == 20 else None

        assert await poll_until(all_spawned, timeout=60, interval=0.1), "not all 20 started"
        assert not any(poll.done() for poll in polls)
        process.send_signal(signal.SIGTERM)
        # hang guards several times shutdown_timeout; the deadline itself is checked by
        # what it leaves behind: every poll answered (not dropped), no `shutdown_timed_out`
        async with asyncio.timeout(HANG_GUARD):
            answers = await asyncio.gather(*polls)
            assert await asyncio.gather(*(close_code(ws) for ws in sockets)) == [1001] * 3
        code = await asyncio.to_thread(process.wait, HANG_GUARD)
    assert code == 0
    for status, body in answers:
        assert status == 503, body
        assert body["success"] is False
        assert body["reason"] == "SHUTTING_DOWN"


async def test_sigterm_ends_an_open_event_stream_cleanly(short_tmp: Path) -> None:
    """A Server-Sent Events stream open when SIGTERM arrives ends as a complete response (no
    truncated chunk), and the daemon exits in time."""
    config = short_tmp / "hoodyd.toml"
    config.write_text(f"[server]\nshutdown_timeout = {SHUTDOWN_TIMEOUT}\n")
    daemon = start_daemon(short_tmp, "--config", str(config))
    try:
        async with aiohttp.ClientSession(
            connector=aiohttp.UnixConnector(path=str(daemon.socket)), base_url="http://localhost"
        ) as session, session.get("/api/v1/daemon/events") as response:
            assert response.status == 200
            await response.content.readline()  # the stream's first line: it is open and served
            daemon.process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(HANG_GUARD):
                await response.read()  # raises if the stream was cut off mid-chunk
            code = await asyncio.to_thread(daemon.process.wait, HANG_GUARD)
        assert code == 0
        assert stopped_within_the_timeout(daemon.logs())
    finally:
        daemon.stop(signal.SIGKILL)


async def close_code(ws: aiohttp.ClientWebSocketResponse) -> int | None:
    """The code of the close frame the server sends (output frames before it skipped)."""
    while True:
        message = await ws.receive()
        if message.type == WSMsgType.CLOSE:
            return int(message.data)
        if message.type in (WSMsgType.CLOSED, WSMsgType.ERROR):
            return None


async def test_sighup_is_ignored_with_a_log_line(short_tmp: Path) -> None:
    """SIGHUP leaves the daemon serving and says so in its log."""
    daemon = start_daemon(short_tmp)
    try:
        daemon.process.send_signal(signal.SIGHUP)

        async def logged() -> bool | None:
            return True if "sighup_ignored" in daemon.logs() else None

        assert await poll_until(logged, timeout=10, interval=0.05), daemon.logs()
        async with aiohttp.ClientSession(
            connector=aiohttp.UnixConnector(path=str(daemon.socket)), base_url="http://localhost"
        ) as session, session.get("/api/v1/daemon/health") as response:
            assert response.status == 200
        assert daemon.process.poll() is None
    finally:
        daemon.stop()


def read_until(fd: int, wanted: bytes, timeout: float = 30) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while wanted not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the other side closed
                break
            seen += chunk
    return seen


def test_serve_on_a_terminal_says_where_it_listens_and_what_it_leaves_running(
    short_tmp: Path,
) -> None:
    """On a terminal, serve prints one line with its socket, and on exit that supervisord
    keeps running and how to stop it."""
    socket_path = short_tmp / "hoodyd.sock"
    controller, terminal = pty.openpty()
    log_path = short_tmp / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "hoodyd", "serve", "--state-dir", str(short_tmp),
             "--socket", str(socket_path)],
            stdout=terminal, stderr=log, stdin=subprocess.DEVNULL,
            env={**os.environ, "HOODYD_LOG_FORMAT": "json"},
        )
    os.close(terminal)
    try:
        said = read_until(controller, b"\n")
        assert f"listening on unix:{socket_path}".encode() in said, said
        process.send_signal(signal.SIGINT)
        said = read_until(controller, b"stop-supervisor")
        assert process.wait(timeout=30) == 0
        assert b"supervisord and its programs keep running" in said, said
        assert f"hoodyd stop-supervisor --state-dir {short_tmp}".encode() in said
    finally:
        if process.poll() is None:
            process.kill()
        os.close(controller)
