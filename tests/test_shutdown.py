"""`hoodyd serve` stopping and hanging up: SIGTERM answers every in-flight request and closes
every WebSocket within `shutdown_timeout`; SIGHUP is ignored with a log line; on a terminal,
serve says where it listens and, on exit, what it leaves running."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import pty
import select
import signal
import socket
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import WSMsgType, web

from hoodyd.api.server import ListenerSite, Runner
from hoodyd.app import create_app
from hoodyd.daemon import bind_unix_socket
from hoodyd.errors import HoodydError
from hoodyd.polling import poll_until
from hoodyd.terminals.cleanup import find_holders
from tests.conftest import DaemonProcess, make_config, sleeper, start_daemon
from tests.ports import free_port_range

SHUTDOWN_TIMEOUT = 4.0
# how long a test waits for the daemon to stop before it fails as hung: not a threshold
HANG_GUARD = 8 * SHUTDOWN_TIMEOUT
# a port instance that runs but never listens on its port (`--port N` lands in $1 and $2)
NEVER_LISTENS = "/bin/sh -c 'exec sleep 300' never-listens"
# how long after shutdown_timeout a stopping daemon may take to be gone: its own exit grace
# (hoodyd.daemon.EXIT_GRACE_S) and room for a loaded machine. A catalogue tool that hangs
# holds a sync for its own timeout (apt: 60 s, nix: 900 s), far beyond it
EXIT_MARGIN = 6.0
# unread bytes in a client's socket past which the daemon's writes to it block
FLOODED_BYTES = 100_000
# a screen pattern no terminal here ever shows
NEVER_SHOWN = "never-shown-[0-9]{40}"


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


def hanging_tools(bin_dir: Path, started: Path) -> dict[str, str]:
    """`apt-get` and `nix` on PATH that note their pid in `started` and then hang: the first
    source sync that runs one (apt's where apt is installed, else nixpkgs') blocks its worker
    thread for the tool's timeout (60 s, 900 s). The daemon's environment with them."""
    bin_dir.mkdir()
    for name in ("apt-get", "nix"):
        tool = bin_dir / name
        tool.write_text(f"#!/bin/sh\necho $$ >> {started}\nexec sleep 600\n")
        tool.chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ.get('PATH', os.defpath)}"}


def end_hanging_tools(started: Path) -> None:
    """The hung tools are children a killed worker thread leaves behind: end them."""
    if started.exists():
        for line in started.read_text().split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(line), signal.SIGKILL)


async def exit_seconds(daemon: DaemonProcess) -> float:
    """SIGTERM the daemon; the seconds until it is gone (it must exit 0)."""
    began = time.monotonic()
    daemon.process.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(daemon.process.wait, HANG_GUARD)
    assert code == 0, daemon.logs()
    return time.monotonic() - began


async def test_a_sync_hung_in_a_catalogue_tool_does_not_hold_the_exit(short_tmp: Path) -> None:
    """A source sync whose worker thread is blocked in a tool that never returns does not
    keep the daemon from exiting within shutdown_timeout and a small margin."""
    config = short_tmp / "hoodyd.toml"
    config.write_text(f"[server]\nshutdown_timeout = {SHUTDOWN_TIMEOUT}\n")
    started = short_tmp / "tools-started"
    env = hanging_tools(short_tmp / "bin", started)
    daemon = start_daemon(short_tmp, "--config", str(config), env=env)
    try:
        async def hung() -> bool | None:
            return True if started.exists() else None

        assert await poll_until(hung, timeout=60, interval=0.05), daemon.logs()
        assert await exit_seconds(daemon) < SHUTDOWN_TIMEOUT + EXIT_MARGIN
        assert stopped_within_the_timeout(daemon.logs())
        assert "exit_abandons" in daemon.logs()  # the busy worker thread was not waited for
    finally:
        daemon.stop(signal.SIGKILL)
        end_hanging_tools(started)


async def test_sigterm_answers_every_kind_of_wait_with_503_and_exits_in_time(
    short_tmp: Path,
) -> None:
    """Requests waiting on a port that never opens, on a screen that never shows a pattern
    and on a holder that never answers (SIGSTOPped), with a source sync hung in its tool:
    SIGTERM answers each with a JSON 503 SHUTTING_DOWN and the daemon exits in time."""
    config = short_tmp / "hoodyd.toml"
    config.write_text(f"[server]\nshutdown_timeout = {SHUTDOWN_TIMEOUT}\n")
    started = short_tmp / "tools-started"
    env = hanging_tools(short_tmp / "bin", started)
    daemon = start_daemon(short_tmp, "--config", str(config), env=env)
    stopped_holder: int | None = None
    try:
        base = free_port_range(2)
        connector = aiohttp.UnixConnector(path=str(daemon.socket), limit=20)
        async with aiohttp.ClientSession(
            connector=connector, base_url="http://localhost"
        ) as session:
            async with session.post(
                "/api/v1/daemon/programs/add",
                json=sleeper(command=NEVER_LISTENS, port_range={"start": base, "end": base + 1}),
            ) as response:
                program = (await response.json())["program"]
            for terminal_id in (1, 2):
                async with session.post(
                    f"/api/v1/terminal/execute?terminal_id={terminal_id}",
                    json={"command": "true"},
                ) as response:
                    assert response.status == 200, await response.text()
            holders = {h.terminal_id: h.pid for h in find_holders(short_tmp)}
            stopped_holder = holders[2]
            os.kill(stopped_holder, signal.SIGSTOP)

            async def answer(method: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
                async with session.request(method, path, json=body) as response:
                    return response.status, await response.json()

            start = {"wait": True, "wait_for": "port", "timeout": 120}
            screen_wait = {"mode": "regex", "pattern": NEVER_SHOWN, "timeout_ms": 120_000}
            requests = [
                *(
                    answer(
                        "POST",
                        f"/api/v1/daemon/programs/{program['id']}/start",
                        {**start, "port": port},
                    )
                    for port in (base, base + 1)
                ),
                answer("POST", "/api/v1/terminal/wait?terminal_id=1", screen_wait),
                answer("POST", "/api/v1/terminal/wait?terminal_id=2", screen_wait),
            ]
            waiting = [asyncio.create_task(request) for request in requests]

            async def all_waiting() -> bool | None:
                for task in waiting:
                    if task.done():
                        raise AssertionError(f"answered before the stop: {task.result()}")
                async with session.get(f"/api/v1/daemon/status/{program['id']}") as response:
                    instances = (await response.json())["status"]["instances"]
                spawned = [i for i in instances if i["pid"]]
                async with session.get("/api/v1/terminal/automation/metrics") as response:
                    screens = (await response.json())["wait_waiters_active"]
                return True if len(spawned) == 2 and screens == 2 and started.exists() else None

            assert await poll_until(all_waiting, timeout=60, interval=0.1), daemon.logs()
            seconds = await exit_seconds(daemon)
            async with asyncio.timeout(HANG_GUARD):
                answers = await asyncio.gather(*waiting)
        for status, body in answers:
            assert status == 503, body
            assert body["success"] is False
            assert body["reason"] == "SHUTTING_DOWN"
        assert seconds < SHUTDOWN_TIMEOUT + EXIT_MARGIN
        assert stopped_within_the_timeout(daemon.logs())
    finally:
        if stopped_holder is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(stopped_holder, signal.SIGCONT)
        daemon.stop(signal.SIGKILL)
        end_hanging_tools(started)


async def test_a_request_whose_wait_ends_in_an_error_at_the_stop_still_gets_503(
    short_tmp: Path,
) -> None:
    """A request whose wait, cut short by the stop, ends in an error instead of the
    cancellation (a client whose session closed, an unmapped upstream fault, a timeout
    firing with it) is answered 503 SHUTTING_DOWN like the others, never 500."""
    entered: list[str] = []
    became = {
        "closed-session": RuntimeError("Session is closed"),
        "upstream-fault": HoodydError("supervisord fault 1"),
        "timeout": TimeoutError(),
    }

    async def waits(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        entered.append(name)
        try:
            await asyncio.Event().wait()  # a call that never answers
        except asyncio.CancelledError:
            raise became[name] from None
        raise AssertionError("unreachable")

    app = create_app(make_config(short_tmp), areas=())
    app.router.add_get("/waits/{name}", waits)
    runner = Runner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    path = short_tmp / "t.sock"
    await ListenerSite(runner, bind_unix_socket(path, 0o600)).start()
    try:
        async with aiohttp.ClientSession(
            connector=aiohttp.UnixConnector(path=str(path)), base_url="http://localhost"
        ) as session:

            async def answer(name: str) -> tuple[int, Any]:
                async with session.get(f"/waits/{name}") as response:
                    return response.status, await response.json()

            asked = [asyncio.create_task(answer(name)) for name in became]

            async def all_waiting() -> bool | None:
                return True if len(entered) == len(became) else None

            assert await poll_until(all_waiting, timeout=30, interval=0.01)
            stopping = asyncio.create_task(runner.cleanup())
            async with asyncio.timeout(HANG_GUARD):
                answers = await asyncio.gather(*asked)
                await stopping
    finally:
        await runner.cleanup()
    for status, body in answers:
        assert status == 503, body
        assert body["reason"] == "SHUTTING_DOWN"


async def test_an_attached_client_that_stopped_reading_leaves_the_bound_intact(
    short_tmp: Path,
) -> None:
    """A client attached to a terminal whose output floods it has stopped reading, so not
    even the 1001 close can be sent to it: the daemon still closes its services and exits
    within shutdown_timeout (no shutdown_timed_out)."""
    config = short_tmp / "hoodyd.toml"
    config.write_text(f"[server]\nshutdown_timeout = {SHUTDOWN_TIMEOUT}\n")
    daemon = start_daemon(short_tmp, "--config", str(config))
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        async with aiohttp.ClientSession(
            connector=aiohttp.UnixConnector(path=str(daemon.socket)), base_url="http://localhost"
        ) as session:
            async with session.post(
                "/api/v1/terminal/execute?terminal_id=1", json={"command": "true"}
            ) as response:
                assert response.status == 200
            client.settimeout(HANG_GUARD)
            client.connect(str(daemon.socket))
            client.sendall(
                b"GET /api/v1/terminal/attach/1 HTTP/1.1\r\nHost: localhost\r\n"
                b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            head = await asyncio.to_thread(client.recv, 4096)
            assert head.startswith(b"HTTP/1.1 101"), head
            # from here on the client reads nothing, while the terminal writes 50 MB
            async with session.post(
                "/api/v1/terminal/execute?terminal_id=1",
                json={"command": "yes | head -c 50000000", "wait": False},
            ) as response:
                assert response.status == 200, await response.text()

        def unread() -> int:
            count: int = struct.unpack("i", fcntl.ioctl(client, termios.FIONREAD, b"\0" * 4))[0]
            return count

        async def flooded() -> bool | None:
            return True if unread() >= FLOODED_BYTES else None

        assert await poll_until(flooded, timeout=60, interval=0.05), unread()
        seconds = await exit_seconds(daemon)
        assert seconds < SHUTDOWN_TIMEOUT + EXIT_MARGIN
        assert stopped_within_the_timeout(daemon.logs()), daemon.logs()
    finally:
        client.close()
        daemon.stop(signal.SIGKILL)
