"""The daemon process over its Unix socket: the seed page's examples replayed as written,
restarts that leave programs running, and supervisord dying and coming back."""

from __future__ import annotations

import json
import os
import pwd
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from hoodyd.polling import poll_until
from tests.conftest import PORT_SERVER, DaemonProcess, start_daemon
from tests.ports import free_port_range

API = "/api/v1/daemon"
USER = pwd.getpwuid(os.geteuid()).pw_name


def session_for(daemon: DaemonProcess) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.UnixConnector(path=str(daemon.socket)), base_url="http://localhost"
    )


async def call(
    session: aiohttp.ClientSession, method: str, path: str, body: Any = None
) -> tuple[int, dict[str, Any]]:
    data = None if body is None else json.dumps(body)
    # the seed page's requests carry a bearer token; on the Unix socket it is accepted and
    # ignored (the peer's credentials are what is checked)
    headers = {"Content-Type": "application/json", "Authorization": "Bearer <token>"}
    async with session.request(method, API + path, data=data, headers=headers) as response:
        return response.status, await response.json()


async def start_sleeper(daemon: DaemonProcess, name: str) -> int:
    """Add program 1 running `sleep 300`, start it with wait; its pid."""
    async with session_for(daemon) as session:
        await call(session, "POST", "/programs/add",
                   {"name": name, "command": "/bin/sleep 300", "user": USER})
        status, body = await call(session, "POST", "/programs/1/start", {"wait": True})
    assert status == 200, body
    pid: int = body["status"]["pid"]
    return pid


async def test_seed_page_examples_work_as_written(daemon: DaemonProcess) -> None:
    """Every request of the Program Control seed page, sent over the Unix socket."""
    base = free_port_range(1)
    async with session_for(daemon) as session:
        status, added = await call(
            session, "POST", "/programs/add",
            {"name": "seed", "command": "/bin/sleep 300", "user": USER, "enabled": False},
        )
        assert status == 200
        assert added["id"] == 1
        status, _ = await call(
            session, "POST", "/programs/add",
            {"id": 42, "name": "proxy-backend", "command": PORT_SERVER, "user": USER,
             "port_range": {"start": base, "end": base}, "lazy_load": True},
        )
        assert status == 200
        # POST /programs/1/enable and /disable take no body
        status, body = await call(session, "POST", "/programs/1/enable")
        assert (status, body["success"], body["program"]["enabled"]) == (200, True, True)
        status, body = await call(session, "POST", "/programs/1/disable")
        assert (status, body["success"], body["program"]["enabled"]) == (200, True, False)
        # the seed examples use port 8042; our instance listens on a free port of the range
        examples = [
            {"port": base},
            {"port": base, "wait": True, "timeout": 60},
            {"port": base, "if_not_running": True},
            {"port": base, "if_not_running": True, "wait": True, "timeout": 60},
        ]
        status, body = await call(session, "POST", "/programs/42/start", examples[1])
        assert status == 200, body
        assert body["instance"]["status"] == "RUNNING"
        pid = body["instance"]["pid"]
        status, body = await call(session, "POST", "/programs/42/start", examples[0])
        assert status == 409  # already running and not idempotent
        for example in examples[2:]:
            status, body = await call(session, "POST", "/programs/42/start", example)
            assert status == 200
            assert body["already_running"] is True
            assert body["instance"]["pid"] == pid
        status, body = await call(session, "POST", "/programs/42/stop", {"port": base})
        assert (status, body["success"]) == (200, True)
        status, body = await call(session, "POST", "/programs/42/start", examples[0])
        assert (status, body["already_running"]) == (200, False)
        status, body = await call(session, "POST", "/programs/42/stop", {"all": True})
        assert (status, body["success"]) == (200, True)


async def test_restarting_hoodyd_leaves_programs_running_with_the_same_pids(
    short_tmp: Path,
) -> None:
    """hoodyd restarts reconnect to supervisord: programs keep their pids."""
    first = start_daemon(short_tmp)
    pid = await start_sleeper(first, "steady")
    assert first.stop() == 0
    assert psutil.pid_exists(pid)
    second = start_daemon(short_tmp)
    try:
        async with session_for(second) as session:
            status, body = await call(session, "GET", "/status/1")
            assert status == 200
            assert body["status"]["status"] == "RUNNING"
            assert body["status"]["pid"] == pid
    finally:
        second.stop()
    events = [json.loads(line) for line in second.logs().splitlines() if line.startswith("{")]
    reconciled = [e for e in events if e["event"] == "reconciled"]
    assert reconciled and reconciled[0]["changes"] == []


async def test_start_up_removes_stale_files_and_re_adds_missing_programs(
    short_tmp: Path,
) -> None:
    """Reconciliation deletes hoodyd files nobody owns and logs what it changed."""
    first = start_daemon(short_tmp)
    async with session_for(first) as session:
        await call(session, "POST", "/programs/add",
                   {"name": "kept", "command": "/bin/sleep 300", "user": USER})
    first.stop()
    stale = short_tmp / "supervisor" / "conf.d" / "hoodyd-program-99.conf"
    stale.write_text("; hoodyd program id=99\n[program:ghost]\ncommand=/bin/sleep 1\n")
    second = start_daemon(short_tmp)
    second.stop()
    assert not stale.exists()
    events = [json.loads(line) for line in second.logs().splitlines() if line.startswith("{")]
    changes = next(e for e in events if e["event"] == "reconciled")["changes"]
    assert any("hoodyd-program-99.conf" in change for change in changes)


async def test_requests_get_503_while_supervisord_is_down_then_work_again(
    short_tmp: Path,
) -> None:
    """Killing supervisord: clear 503 JSON errors until the embedded one is back, then OK."""
    config = short_tmp / "hoodyd.toml"
    config.write_text("[supervisor]\npoll_interval = 0.5\n")
    daemon = start_daemon(short_tmp, "--config", str(config))
    try:
        async with session_for(daemon) as session:
            await call(session, "POST", "/programs/add",
                       {"name": "survivor", "command": "/bin/sleep 300", "user": USER,
                        "boot": True})

            async def boot_pid() -> int | None:  # the boot program starts with its group
                _, started = await call(session, "GET", "/status/1")
                pid: int | None = started["status"]["pid"]
                return pid

            orphan = await poll_until(boot_pid, timeout=20, interval=0.05)
            assert orphan is not None
            pidfile = short_tmp / "supervisor" / "supervisord.pid"
            old = int(pidfile.read_text())
            os.kill(old, signal.SIGKILL)

            async def refused() -> dict[str, Any] | None:
                # answered from memory: refused once supervisord's process is seen gone
                status, body = await call(session, "GET", "/status")
                return body if status == 503 else None

            body = await poll_until(refused, timeout=5, interval=0.01)
            assert body is not None
            assert body["success"] is False
            assert body["reason"] == "SUPERVISOR_UNAVAILABLE"

            async def running() -> dict[str, Any] | None:
                status, body = await call(session, "GET", "/status/1")
                return body if status == 200 and body["status"]["status"] == "RUNNING" else None

            body = await poll_until(running, timeout=20, interval=0.2)
            assert body is not None  # the boot program came back
            assert int(pidfile.read_text()) != old
            assert body["status"]["pid"] != orphan
            # the program the killed supervisord left behind was killed, not duplicated
            assert not psutil.pid_exists(orphan) or (
                psutil.Process(orphan).status() == psutil.STATUS_ZOMBIE
            )
    finally:
        daemon.stop()


async def test_stop_supervisor_ends_the_embedded_supervisord_and_its_programs(
    short_tmp: Path,
) -> None:
    """`hoodyd stop-supervisor` stops what `hoodyd serve` deliberately leaves running."""
    daemon = start_daemon(short_tmp)
    program_pid = await start_sleeper(daemon, "lingering")
    daemon.stop()
    supervisord_pid = int((short_tmp / "supervisor" / "supervisord.pid").read_text())
    assert psutil.pid_exists(program_pid)
    stop = subprocess.run(
        [sys.executable, "-m", "hoodyd", "stop-supervisor", "--state-dir", str(short_tmp),
         "--grace", "5"],
        capture_output=True, text=True, timeout=30,
    )
    assert stop.returncode == 0, stop.stderr
    assert "stopped" in stop.stdout
    for pid in (program_pid, supervisord_pid):
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    again = subprocess.run(
        [sys.executable, "-m", "hoodyd", "stop-supervisor", "--state-dir", str(short_tmp)],
        capture_output=True, text=True, timeout=30,
    )
    assert again.returncode == 1
