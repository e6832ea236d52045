"""Terminal sessions outlive hoodyd: a real `hoodyd serve` is stopped and started again (and
killed with SIGKILL) while a shell holds state and a command runs; the next hoodyd adopts the
holder, the shell is the same, and the command completes with its exit code."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from hoodyd.polling import poll_until
from hoodyd.terminals.cleanup import find_holders
from tests.conftest import DaemonProcess, start_daemon

WAIT = 15.0


async def ended(process: psutil.Process) -> bool | None:
    """True once `process` is gone or a zombie (nobody may reap an orphan at once)."""
    try:
        return True if process.status() == psutil.STATUS_ZOMBIE else None
    except psutil.NoSuchProcess:
        return True


def serve(state: Path) -> DaemonProcess:
    config = state / "hoodyd.toml"
    config.write_text("[terminals]\nuser_rc = false\n")
    return start_daemon(state, "--config", str(config))


async def call(daemon: DaemonProcess, method: str, path: str, body: Any = None) -> Any:
    connector = aiohttp.UnixConnector(path=str(daemon.socket))
    async with (
        aiohttp.ClientSession(connector=connector, base_url="http://localhost") as http,
        http.request(method, f"/api/v1/terminal{path}", json=body) as response,
    ):
        payload = await response.json()
        assert response.status < 500, payload
        return payload


async def result_when_final(daemon: DaemonProcess, command_id: str) -> dict[str, Any]:

    async def final() -> dict[str, Any] | None:
        body: dict[str, Any] = await call(daemon, "GET", f"/result/{command_id}")
        return body if body.get("status") in ("completed", "failed", "timed_out") else None

    body = await poll_until(final, timeout=WAIT, interval=0.05)
    assert body is not None, f"command {command_id} is not final"
    return body


async def test_a_restart_keeps_the_shell_and_completes_the_running_command(
    short_tmp: Path,
) -> None:
    """Shell variables, cwd and a command typed before a restart are all there after it."""
    work = short_tmp / "work dir"
    work.mkdir()
    first = serve(short_tmp)
    try:
        setup = f"export KEPT=value-1; cd '{work}'"
        assert (await call(first, "POST", "/execute?terminal_id=3", {"command": setup}))[
            "exit_code"
        ] == 0
        running = await call(
            first,
            "POST",
            "/execute?terminal_id=3&wait=false",
            {"command": "sleep 1.5; echo finished-late; (exit 7)"},
        )
        shell_pid = (await call(first, "GET", "/sessions"))["data"][0]["pid"]
    finally:
        assert first.stop() == 0
    assert psutil.pid_exists(shell_pid)
    second = serve(short_tmp)
    try:
        done = await result_when_final(second, running["command_id"])
        assert (done["status"], done["exit_code"]) == ("completed", 7)
        assert done["stdout"] == "finished-late\n"
        state = await call(second, "POST", "/execute?terminal_id=3", {"command": "echo $KEPT $PWD"})
        assert state["stdout"] == f"value-1 {work}\n"
        assert int(state["command_id"]) > int(running["command_id"])  # ids go on, not over
        sessions = (await call(second, "GET", "/sessions"))["data"]
        assert [(s["id"], s["pid"], s["state"]) for s in sessions] == [(3, shell_pid, "running")]
        output = await call(second, "GET", "/output/3")
        assert "finished-late" in output["data"]  # the output ring came back too
    finally:
        second.stop()


async def test_a_killed_hoodyd_leaves_sessions_that_the_next_one_adopts(short_tmp: Path) -> None:
    """SIGKILL of hoodyd: the shell keeps running; a deferred command queued before runs
    after the next hoodyd adopts the session."""
    first = serve(short_tmp)
    try:
        sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1.5)"])
        deferred = await call(
            first,
            "POST",
            f"/execute?terminal_id=4&defer_pid={sleeper.pid}",
            {"command": "echo after-the-pid"},
        )
        assert deferred["status"] == "pending"
        [launcher] = [
            child
            for child in psutil.Process(first.process.pid).children()
            if "hoodyd.terminals.holder.launcher" in child.cmdline()
        ]
    finally:
        first.stop(signal.SIGKILL)
    # the launcher sees its end of the pair close and ends; the holder it forked stays
    assert await poll_until(lambda: ended(launcher), timeout=WAIT)
    assert [held.terminal_id for held in find_holders(short_tmp)] == [4]
    # the killed daemon's socket file is left behind (the next hoodyd replaces it); the
    # fixture waits for the file to appear, so it must be gone first
    first.socket.unlink()
    second = serve(short_tmp)
    try:
        done = await result_when_final(second, deferred["command_id"])
        assert (done["exit_code"], done["stdout"]) == (0, "after-the-pid\n")
        sleeper.wait(timeout=WAIT)
    finally:
        second.stop()


async def test_delete_ends_the_holder_and_stop_terminals_cleans_up(short_tmp: Path) -> None:
    """DELETE ends a session's holder and shell; `hoodyd stop-terminals` ends the ones left
    behind once hoodyd is gone, and refuses while it runs."""
    daemon = serve(short_tmp)
    try:
        await call(daemon, "POST", "/execute?terminal_id=1", {"command": "true"})
        await call(daemon, "POST", "/execute?terminal_id=2", {"command": "true"})
        held = {h.terminal_id: h.pid for h in find_holders(short_tmp)}
        assert sorted(held) == [1, 2]
        deleted = await call(daemon, "DELETE", "/1")
        assert deleted["deleted"] is True
        assert await _gone(held[1])
        refused = _stop_terminals(short_tmp)
        assert refused.returncode == 2 and "is running" in refused.stderr
    finally:
        daemon.stop()
    listed = _stop_terminals(short_tmp, "--list")
    assert listed.returncode == 0 and "terminal 2" in listed.stdout
    assert [h.terminal_id for h in find_holders(short_tmp)] == [2]
    ended = _stop_terminals(short_tmp)
    assert ended.returncode == 0, ended.stderr
    assert await _gone(held[2]) and find_holders(short_tmp) == []
    assert not list((short_tmp / "terminals" / "holders").glob("*.sock"))


def _stop_terminals(state: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hoodyd", "stop-terminals", "--state-dir", str(state), *extra],
        capture_output=True,
        text=True,
        timeout=WAIT,
        env={k: v for k, v in os.environ.items() if k != "HOODYD_CONFIG"},
    )


async def _gone(pid: int) -> bool:
    async def ended() -> bool | None:
        try:
            return True if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE else None
        except psutil.NoSuchProcess:
            return True

    return await poll_until(ended, timeout=4, interval=0.02) is not None
