"""A program with `terminal_id` runs inside that terminal: supervisord runs the terminal's
holder with the program's command, hoodyd adopts it, the terminal API shows the program, and
the program API still starts and stops it."""

from __future__ import annotations

import json
import os
import pwd
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given, settings
from hypothesis import strategies as st

from hoodyd.app import create_app
from hoodyd.polling import poll_until
from hoodyd.programs import conf
from hoodyd.schemas.daemon import Program
from hoodyd.terminals.shells import fish_quote
from tests.conftest import make_config
from tests.test_programs_argv import TEXT, USER, execv_argv, parsed

DAEMON = "/api/v1/daemon"
TERMINAL = "/api/v1/terminal"
WAIT = 15.0


@pytest.fixture
async def client(short_tmp: Path) -> AsyncIterator[TestClient[Any, Any]]:
    config = make_config(
        short_tmp,
        supervisor={"poll_interval": 0.2},
        terminals={"user_rc": False, "holder_scan_interval": 0.2},
    )
    app = create_app(config, areas=("daemon", "terminal"))
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def call(client: TestClient[Any, Any], method: str, path: str, body: Any = None) -> Any:
    response = await client.request(method, path, json=body)
    return response.status, await response.json()


async def wait_until_adopted(client: TestClient[Any, Any], terminal_id: int) -> dict[str, Any]:
    """The screen wait's answer once the program's terminal is adopted and shows it is up."""
    last: Any = None

    async def shown() -> dict[str, Any] | None:
        nonlocal last
        status, last = await call(
            client,
            "POST",
            f"{TERMINAL}/wait?terminal_id={terminal_id}",
            {"mode": "regex", "pattern": "program-up", "timeout_ms": 2000},
        )
        return dict(last) if status == 200 and last["status"] == "matched" else None

    body = await poll_until(shown, timeout=WAIT)
    assert body is not None, last
    return body


async def start_terminal_program(client: TestClient[Any, Any], terminal_id: int) -> int:
    """Add, enable and start a program that answers each line typed into terminal
    `terminal_id`; its id once the terminal shows it."""
    script = 'echo program-up; while read line; do echo "heard: $line"; done'
    status, added = await call(
        client,
        "POST",
        f"{DAEMON}/programs/add",
        {
            "name": f"in-terminal-{terminal_id}",
            "command": f"/bin/sh -c '{script}'",
            "user": pwd.getpwuid(os.geteuid()).pw_name,
            "terminal_id": terminal_id,
            "terminal_shell": "bash",
        },
    )
    assert status == 200, added
    program_id = int(added["program"]["id"])
    assert (await call(client, "POST", f"{DAEMON}/programs/{program_id}/enable"))[0] == 200
    status, started = await call(client, "POST", f"{DAEMON}/programs/{program_id}/start")
    assert status == 200, started
    await wait_until_adopted(client, terminal_id)
    return program_id


async def assert_heard(client: TestClient[Any, Any], terminal_id: int, text: str) -> None:
    """`text` typed into the terminal reaches the program, which answers it."""
    path = f"{TERMINAL}/write?terminal_id={terminal_id}"
    status, written = await call(client, "POST", path, {"input": text})
    assert status == 200, written
    status, heard = await call(
        client,
        "POST",
        f"{TERMINAL}/wait?terminal_id={terminal_id}",
        {"mode": "regex", "pattern": f"heard: {text}", "timeout_ms": 10_000},
    )
    assert heard["status"] == "matched", heard


async def running_session(client: TestClient[Any, Any], terminal_id: int) -> dict[str, Any]:
    status, sessions = await call(client, "GET", f"{TERMINAL}/sessions")
    assert status == 200, sessions
    (session,) = [s for s in sessions["data"] if s["id"] == terminal_id]
    return dict(session)


async def test_a_program_runs_in_its_terminal_and_stops_with_the_program(
    client: TestClient[Any, Any],
) -> None:
    """Started through the program API, the program is visible in terminal 21 (snapshot,
    wait, keys reach it), refuses execute and delete there, and `stop` ends it."""
    program_id = await start_terminal_program(client, 21)
    session = await running_session(client, 21)
    assert (session["program_id"], session["state"]) == (program_id, "running")
    await assert_heard(client, 21, "ping")
    status, refused = await call(
        client, "POST", f"{TERMINAL}/execute?terminal_id=21", {"command": "true"}
    )
    assert (status, refused["reason"]) == (409, "TERMINAL_RUNS_PROGRAM")
    status, refused = await call(client, "DELETE", f"{TERMINAL}/21")
    assert (status, refused["reason"]) == (409, "TERMINAL_RUNS_PROGRAM")
    pid = session["pid"]
    status, stopped = await call(client, "POST", f"{DAEMON}/programs/{program_id}/stop")
    assert status == 200, stopped
    sessions: dict[str, Any] = {}

    async def exited() -> bool | None:
        nonlocal sessions
        _, sessions = await call(client, "GET", f"{TERMINAL}/sessions")
        states = [s["state"] for s in sessions["data"] if s["id"] == 21]
        return True if states == ["exited"] and not Path(f"/proc/{pid}").exists() else None

    assert await poll_until(exited, timeout=WAIT), sessions


async def test_a_killed_supervisord_brings_the_program_back_into_its_terminal(
    client: TestClient[Any, Any], short_tmp: Path
) -> None:
    """kill -9 of supervisord kills the program's holder with the rest of its orphans; once
    supervisord is back, the program runs again in terminal 22, a new holder hoodyd adopted,
    and keys reach it."""
    await start_terminal_program(client, 22)
    before = await running_session(client, 22)
    await assert_heard(client, 22, "before")
    pidfile = short_tmp / "supervisor" / "supervisord.pid"
    os.kill(int(pidfile.read_text()), signal.SIGKILL)
    session: dict[str, Any] = {}

    async def restarted() -> bool | None:
        nonlocal session
        session = await running_session(client, 22)
        return True if session["state"] == "running" and session["pid"] != before["pid"] else None

    assert await poll_until(restarted, timeout=30, interval=0.2), session
    assert not Path(f"/proc/{before['pid']}/cmdline").exists() or (
        Path(f"/proc/{before['pid']}/stat").read_text().split(") ")[1].startswith("Z")
    )
    await wait_until_adopted(client, 22)
    await assert_heard(client, 22, "after")


def test_the_terminal_argv_carries_the_command_as_one_quoted_shell_word() -> None:
    """The program's argv reaches the shell quoted: `$(…)`, `;` and quotes stay data."""
    program = Program(
        id=3,
        name="odd",
        command="/bin/echo '$(id); rm -rf /' \"a b\"",
        user=pwd.getpwuid(os.geteuid()).pw_name,
        terminal_id=5,
        terminal_shell="sh",
    )
    argv = conf.terminal_argv(program, ["/bin/echo", "$(id); rm -rf /", "a b"], Path("/s"), "/")
    assert argv[-3:] == [shutil.which("sh"), "-c", "/bin/echo '$(id); rm -rf /' 'a b'"]
    assert argv[argv.index("--socket") + 1] == "/s/5.sock"
    assert "--foreground" in argv


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@settings(max_examples=200, deadline=None)
@given(args=st.lists(TEXT, max_size=5), shell=st.sampled_from(["bash", "sh", None]))
def test_a_terminal_program_reaches_its_shell_as_exactly_its_argv(
    log_dir: Path, args: list[str], shell: str | None
) -> None:
    """Whatever the arguments hold, supervisord's own parser hands the holder
    `[shell, -c, line]` and the shell splits `line` back into exactly the program's argv;
    the meta on the holder's command line is JSON naming the program."""
    program = Program(
        id=9,
        name="prop",
        command=shlex.join(["/bin/echo", *args]),
        user=USER,
        terminal_id=12,
        terminal_shell=shell,  # type: ignore[arg-type]
    )
    argv = execv_argv(parsed(program, None, log_dir, holders_dir=Path("/run/h")))
    cut = argv.index("--")
    holder, command = argv[:cut], argv[cut + 1 :]
    assert holder[1:4] == ["-I", "-m", "hoodyd.terminals.holder"]
    assert holder[holder.index("--socket") + 1] == "/run/h/12.sock"
    meta = json.loads(holder[holder.index("--meta-json") + 1])
    assert meta["program"] == {"id": 9, "name": "prop"}
    assert command[1] == "-c" and shlex.split(command[2]) == ["/bin/echo", *args]


def test_the_line_runs_as_that_argv_in_a_real_shell() -> None:
    """The quoted line, run by a real sh and bash, prints each argument as given."""
    odd = ["$(id)", "a b", "';", "`x`", "%(here)s", "\\", "#c"]
    line = conf.terminal_argv(
        Program(id=1, name="p", command="x", user=USER, terminal_id=3),
        [sys.executable, "-c", "import sys; print(sys.argv[1:])", *odd],
        Path("/h"),
        "/",
    )[-1]
    for shell in ("sh", "bash"):
        done = subprocess.run([shell, "-c", line], capture_output=True, text=True, check=True)
        assert done.stdout == f"{odd!r}\n"


def fish_unquote(word: str) -> str:
    """fish's reading of one single-quoted word (its documentation: inside single quotes only
    `\\'` and `\\\\` are escapes, every other character is itself)."""
    assert word[0] == word[-1] == "'" and len(word) >= 2
    inner, out, index = word[1:-1], [], 0
    while index < len(inner):
        char = inner[index]
        if char == "\\" and index + 1 < len(inner) and inner[index + 1] in "\\'":
            out.append(inner[index + 1])
            index += 2
            continue
        assert char != "'", "an unescaped quote would end the word"
        out.append(char)
        index += 1
    return "".join(out)


@settings(max_examples=300, deadline=None)
@given(text=TEXT)
def test_fish_quoting_is_one_inert_word(text: str) -> None:
    """fish is not installed here, so its single-quote rules are applied as documented: any
    text quoted for a fish terminal comes back as exactly that text, in one word."""
    assert fish_unquote(fish_quote(text)) == text
