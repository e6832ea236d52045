"""Nothing a terminal prints or a caller sends as a pattern runs on the daemon's event loop:
screens live in the terminals' holders (`holder_screen`), so a screen bomb or backtracking
patterns slow their own terminal while `hoodyd serve` keeps answering on its Unix socket."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest

from hoodyd.polling import poll_until
from hoodyd.terminals.cleanup import find_holders
from hoodyd.terminals.link import HolderLink, ScreenTimeout
from hoodyd.terminals.spawn import spawn_holder
from tests.conftest import DaemonProcess, start_daemon

BASE = "/api/v1/terminal"
# one frame of the bomb: home, one character, then "repeat it 9999 times"
BOMB = "\\x1b[1;1Hx\\x1b[9999b"


async def call(
    session: aiohttp.ClientSession,
    method: str,
    path: str,
    body: Any = None,
    status: int = 200,
) -> dict[str, Any]:
    async with session.request(method, f"{BASE}{path}", json=body) as response:
        payload: dict[str, Any] = await response.json()
        assert response.status == status, payload
        return payload


async def ask(session: aiohttp.ClientSession, path: str) -> dict[str, Any]:
    """The JSON answer of a GET, its status under `_status`."""
    async with session.get(f"{BASE}{path}") as response:
        payload: dict[str, Any] = await response.json()
        payload["_status"] = response.status
    return payload


def process_running(script: Path) -> psutil.Process | None:
    """The process running `script`, if one is."""
    for process in psutil.process_iter(["cmdline"]):
        if str(script) in (process.info["cmdline"] or []) and running(process.pid):
            return process
    return None


def running(pid: int) -> bool:
    """Whether `pid` is a process that has not exited (a detached holder that ended may
    stay a zombie until its new parent reaps it)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def unix_client(daemon: DaemonProcess) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.UnixConnector(path=str(daemon.socket)), base_url="http://localhost"
    )


async def raw_shows(session: aiohttp.ClientSession, terminal_id: int, text: str) -> bool | None:
    async with session.get(f"{BASE}/raw?terminal_id={terminal_id}&format=text") as response:
        return True if text in await response.text() else None


def test_holder_screen_imports_only_the_standard_library_pyte_and_regex() -> None:
    """The holder and its screen load nothing beyond the standard library, pyte (with its
    wcwidth) and regex, even after a snapshot, a find and a wait are answered."""
    script = """
import asyncio, json, sys
before = set(sys.modules)
from hoodyd.terminals.holder import process as holder
from hoodyd.terminals.holder.screen import HolderScreen
from hoodyd.terminals.holder.ring import OutputRing

async def main():
    ring = OutputRing(1 << 16)
    ring.append(b"hello \\x1b[1mworld\\x1b[0m\\r\\n")
    screen = HolderScreen(ring, lambda: (80, 24), lambda: True)
    answers = []
    for request in (
        {"id": 1, "op": "snapshot"},
        {"id": 2, "op": "find", "pattern": "w.rld"},
        {"id": 3, "op": "wait", "mode": "regex", "pattern": "hello", "timeout_ms": 1000},
        {"id": 4, "op": "state"},
    ):
        screen.handle(request, answers.append)
    while len(answers) < 4:
        await asyncio.sleep(0.01)
    assert all("result" in answer for answer in answers), answers
    screen.feed(b"more")
    screen.close()

asyncio.run(main())
third = sorted(
    {name.partition(".")[0] for name in set(sys.modules) - before}
    - set(sys.stdlib_module_names)
)
print(json.dumps(third))
"""
    run = subprocess.run(
        [sys.executable, "-I", "-c", script],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    loaded = set(eval(run.stdout))  # a JSON list of names is a Python literal too
    assert loaded <= {"hoodyd", "pyte", "regex", "wcwidth"}, loaded


def test_the_holder_package_imports_nothing_of_the_daemon() -> None:
    """Every module of the holder package (process, launcher, pty, protocol, markers, ring,
    screen) loads only the standard library, pyte, regex and the screen emulator: no module of
    the daemon's side (services, schemas, errors, configuration) comes with it."""
    script = """
import importlib, json, pkgutil, sys
before = set(sys.modules)
import hoodyd.terminals.holder as package
parts = [info.name for info in pkgutil.iter_modules(package.__path__) if info.name != "__main__"]
for name in parts:
    importlib.import_module(f"hoodyd.terminals.holder.{name}")
loaded = sorted(set(sys.modules) - before)
print(json.dumps({"parts": parts, "loaded": loaded}))
"""
    run = subprocess.run(
        [sys.executable, "-I", "-c", script],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    found = json.loads(run.stdout)
    assert {"process", "launcher", "pty", "protocol", "markers", "ring", "screen"} <= set(
        found["parts"]
    )
    ours = {name for name in found["loaded"] if name.partition(".")[0] == "hoodyd"}
    allowed = {"hoodyd", "hoodyd.terminals", "hoodyd.terminals.holder"}
    strays = {
        name
        for name in ours - allowed
        if not name.startswith(("hoodyd.terminals.holder.", "hoodyd.terminals.screen"))
    }
    assert not strays, strays
    third = {name.partition(".")[0] for name in found["loaded"]} - set(sys.stdlib_module_names)
    assert third <= {"hoodyd", "pyte", "regex", "wcwidth"}, third


async def test_a_screen_bomb_slows_only_its_own_terminal(
    unix_session: aiohttp.ClientSession, short_tmp: Path
) -> None:
    """A program printing `ESC[1;1H x ESC[9999b` 20,000 times into a terminal being read:
    `/health` and another terminal's snapshot answer while it is still printing, and the
    bombed terminal's snapshot still answers, with the screen filled."""
    bomb = short_tmp / "bomb.py"
    bomb.write_text(
        "import sys\n"
        f"sys.stdout.buffer.write(b'{BOMB}' * 20000)\n"
        "sys.stdout.buffer.write(b'\\x1b[2J\\x1b[H' + b'BOMB-' + b'DONE\\r\\n')\n"
    )
    await call(unix_session, "POST", "/execute?terminal_id=3", {"command": "echo calm"})
    await call(unix_session, "GET", "/snapshot?terminal_id=3")
    await call(unix_session, "POST", "/execute?terminal_id=2", {"command": "echo ready"})
    await call(unix_session, "GET", "/snapshot?terminal_id=2")  # the screen exists: it is fed
    await call(
        unix_session,
        "POST",
        "/write?terminal_id=2",
        {"input": f"{sys.executable} {bomb}"},
    )
    async def printing() -> psutil.Process | None:
        return process_running(bomb)

    printer = await poll_until(printing, timeout=30, interval=0.01)
    assert printer is not None, "the bomb did not start"
    health = await ask(unix_session, "/health")
    calm = await ask(unix_session, "/snapshot?terminal_id=3")
    # both answered while the bomb was still printing into a terminal whose screen parses
    # every frame (the printer waits on the terminal's reading, so it lives as long as the
    # parsing lasts): the daemon was not held up by that work
    assert running(printer.pid), "the bomb ended before the daemon was asked"
    assert health["_status"] == 200 and calm["_status"] == 200 and "calm" in calm["lines"]
    assert await poll_until(lambda: raw_shows(unix_session, 2, "BOMB-DONE"), timeout=60)
    shot = await ask(unix_session, "/snapshot?terminal_id=2")
    assert shot["_status"] == 200, shot
    assert any("BOMB-DONE" in line for line in shot["lines"]), shot["lines"]


async def test_hostile_patterns_slow_only_their_own_terminal(
    unix_session: aiohttp.ClientSession,
) -> None:
    """32 parallel finds of `(a|aa)+$` over a line of a's and a `b`: each is refused as
    too slow (400 PATTERN_TIMEOUT) or abandoned (504), and `/health` and another terminal's
    snapshot, asked after them, answer before most of them."""
    await call(
        unix_session,
        "POST",
        "/execute?terminal_id=4",
        {"command": "printf 'a%.0s' $(seq 40); echo b"},
    )
    await call(unix_session, "POST", "/execute?terminal_id=5", {"command": "echo calm"})
    await call(unix_session, "GET", "/snapshot?terminal_id=5")
    await call(unix_session, "GET", "/snapshot?terminal_id=4")
    hostile = "/find?terminal_id=4&scope=all&pattern=%28a%7Caa%29%2B%24"
    answered: list[dict[str, Any]] = []

    async def find() -> None:
        answered.append(await ask(unix_session, hostile))

    finds = asyncio.gather(*(find() for _ in range(32)))
    health = await ask(unix_session, "/health")
    calm = await ask(unix_session, "/snapshot?terminal_id=5")
    finds_before = len(answered)
    await finds
    assert health["_status"] == 200 and calm["_status"] == 200 and "calm" in calm["lines"]
    # terminal 4's holder runs the finds one after another, each cut off at its time budget:
    # most were still pending when the later requests were answered. A daemon matching the
    # patterns on its own loop would have worked through the finds queued before them.
    assert finds_before < len(answered) // 2, finds_before
    answers = answered
    assert {body["_status"] for body in answers} <= {400, 504}
    assert {body["reason"] for body in answers} <= {"PATTERN_TIMEOUT", "WAIT_TIMEOUT"}
    assert any(body["reason"] == "PATTERN_TIMEOUT" for body in answers)


async def test_an_adopted_holder_serves_its_screen(short_tmp: Path) -> None:
    """After hoodyd restarts, the holder it adopts answers snapshot and find from its screen
    (built before the restart, and kept by the holder)."""
    first = start_daemon(short_tmp)
    try:
        async with unix_client(first) as session:
            await call(session, "POST", "/execute?terminal_id=6", {"command": "echo kept-1"})
            assert "kept-1" in (await call(session, "GET", "/snapshot?terminal_id=6"))["lines"]
    finally:
        first.stop()
    second = start_daemon(short_tmp)
    try:
        async with unix_client(second) as session:
            shot = await call(session, "GET", "/snapshot?terminal_id=6")
            assert "kept-1" in shot["lines"]
            found = await call(session, "GET", "/find?terminal_id=6&pattern=%5Ekept-%5Cd")
            assert [hit["text"] for hit in found["hits"]] == ["kept-1"]
    finally:
        second.stop()


async def test_screens_leave_the_daemon_small_and_memory_returns_after_deletion(
    short_tmp: Path,
) -> None:
    """Two 1000x1000 terminals filled and snapshot grow the daemon's own RSS by little (the
    screens live in the holders), the estimate stays under the cap, and deleting the
    terminals ends their holders."""
    config = short_tmp / "hoodyd.toml"
    config.write_text("[run]\nauto_sync = false\n")  # no index sync growing the daemon meanwhile
    daemon = start_daemon(short_tmp, "--config", str(config))
    try:
        process = psutil.Process(daemon.process.pid)
        async with unix_client(daemon) as session:
            await call(session, "POST", "/execute?terminal_id=1", {"command": "true"})
            await call(session, "GET", "/snapshot?terminal_id=1")
            baseline = process.memory_info().rss
            fill = "for i in $(seq 1000); do printf '%0999d\\n' $i; done"
            for terminal_id in (7, 8):
                await call(
                    session, "POST", f"/execute?terminal_id={terminal_id}", {"command": "true"}
                )
                await call(session, "POST", f"/resize/{terminal_id}", {"cols": 1000, "rows": 1000})
                await call(
                    session, "POST", f"/execute?terminal_id={terminal_id}", {"command": fill}
                )
                shot = await call(session, "GET", f"/snapshot?terminal_id={terminal_id}")
                assert shot["cols"] == 1000
                assert any(line.endswith("0001000") for line in shot["lines"])
            metrics = await call(session, "GET", "/automation/metrics")
            assert metrics["vterm_memory_bytes_used"] <= metrics["vterm_memory_mb_cap"] * 2**20
            grown = process.memory_info().rss - baseline
            assert grown < 40 * 2**20, f"the daemon grew by {grown / 2**20:.0f} MB"
            holders = {held.terminal_id: held.pid for held in find_holders(short_tmp)}
            for terminal_id in (7, 8):
                await call(session, "DELETE", f"/{terminal_id}")

            async def holders_gone() -> bool | None:
                alive = [holders[terminal_id] for terminal_id in (7, 8)]
                alive = [pid for pid in alive if running(pid)]
                return True if not alive else None

            assert await poll_until(holders_gone, timeout=15)
    finally:
        daemon.stop()


async def test_a_holder_started_as_a_new_interpreter_answers_screen_requests(
    short_tmp: Path,
) -> None:
    """A holder started without the launcher (`python -m hoodyd.terminals.holder`) builds its
    screen from its ring on the first request and answers snapshot, find (a backtracking
    pattern as PATTERN_TIMEOUT), wait and drop; a request past its deadline is abandoned."""
    path = short_tmp / "9.sock"
    await spawn_holder(
        path,
        ["sh", "-c", "printf 'hello screen\\n'; printf 'a%.0s' $(seq 40); echo b; exec sleep 60"],
        env={"PATH": "/usr/bin:/bin"},
        cwd=str(short_tmp),
        terminal_id=9,
        cols=80,
        rows=24,
        ring_bytes=1 << 20,
        meta={},
        log_path=short_tmp / "holder-9.log",
    )
    link = await HolderLink.connect(path, on_event=lambda _o, _e: None, on_exit=lambda _c: None)
    try:
        assert link.hello.screen
        wait = {"op": "wait", "mode": "regex", "pattern": "^hello", "timeout_ms": 5000}
        waited = await link.screen(wait, 10)
        assert waited["result"]["status"] == "matched"
        shot = await link.screen({"op": "snapshot"}, 10)
        assert shot["result"]["lines"][0] == "hello screen" and shot["screen"]["active"]
        hostile = {"op": "find", "pattern": "(a|aa)+$", "scope": "all"}
        refused = await link.screen(hostile, 10)
        assert refused["error"]["reason"] == "PATTERN_TIMEOUT"
        with pytest.raises(ScreenTimeout):
            await link.screen(hostile, 0.01)  # a 250 ms search, abandoned after 10 ms
        dropped = await link.screen({"op": "drop"}, 10)
        assert dropped["screen"]["active"] is False
    finally:
        await link.terminate(grace=0.5)


def test_a_holder_of_the_previous_layout_finds_its_screen_under_the_old_name() -> None:
    """A holder started before the holder became a package imports `holder_screen` on its
    first screen request after an upgrade, and gets the package's screen, standard library,
    pyte and regex only."""
    script = """
import json, sys
before = set(sys.modules)
from hoodyd.terminals.holder_screen import HolderScreen
from hoodyd.terminals.holder.screen import HolderScreen as current
assert HolderScreen is current
loaded = {name.partition(".")[0] for name in set(sys.modules) - before}
print(json.dumps(sorted(loaded - set(sys.stdlib_module_names))))
"""
    run = subprocess.run(
        [sys.executable, "-I", "-c", script],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert set(json.loads(run.stdout)) <= {"hoodyd", "pyte", "regex", "wcwidth"}
