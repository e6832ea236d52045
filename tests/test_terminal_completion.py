"""A command's completion is its own: markers cannot be forged from inside a session, input
typed by other means never lends its completion to an execute, replaced shells do not wedge a
terminal, and what the API reads back about a session follows its shell."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import pytest
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hoodyd.app import create_app
from hoodyd.polling import poll_until
from hoodyd.schemas.terminal import ExecuteRequest, SessionOptions
from hoodyd.terminals.service import TerminalService
from hoodyd.terminals.session import Command
from tests.conftest import make_config, running_terminal_service, until

WAIT = 15.0  # generous bound for any single wait on a loaded machine
PYTHON = "/usr/bin/python3"


def instant(stamp: str) -> datetime:
    """A result's RFC 3339 timestamp."""
    return datetime.fromisoformat(stamp)


@pytest.fixture
async def service(short_tmp: Path) -> AsyncIterator[TerminalService]:
    async with running_terminal_service(short_tmp) as running:
        yield running


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory every user may read and write (a session of `nobody` runs scripts there)."""
    directory = Path(tempfile.mkdtemp(prefix="hc-", dir="/tmp"))
    directory.chmod(0o777)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


# A program that reads everything its user can read and prints every marker it can build
# from any token of 8 or more characters it found, then reads its stdin for a while.
FORGER = r"""
import os, re, select, sys, time
out, state = sys.argv[1], sys.argv[2]
found = set()
def take(data):
    for pattern in (rb"[A-Za-z0-9]{8,}", rb"[A-Za-z0-9_.+/=-]{8,}"):
        for token in re.findall(pattern, data):
            found.add(token[:96])
def read(path, size=1 << 20):
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError:
        return
    try:
        if not os.isatty(fd):
            take(os.read(fd, size))
    except OSError:
        pass
    finally:
        os.close(fd)
for pid in os.listdir("/proc"):
    if pid.isdigit():
        for name in ("environ", "cmdline"):
            read(f"/proc/{pid}/{name}")
for directory in ("/proc/self/fd", f"/proc/{os.getppid()}/fd", "/dev/fd"):
    try:
        names = os.listdir(directory)
    except OSError:
        continue
    for name in names:
        read(os.path.join(directory, name))
for root, _dirs, files in os.walk(state):
    for name in files:
        path = os.path.join(root, name)
        if os.path.isfile(path):
            read(path)
markers = []
for token in sorted(found):
    t = token.decode(errors="replace")
    markers.append(f"\x1b]6973;{t};S\x07")
    for seq in (1, 2, 3, 5, 10, 1000000):
        markers.append(f"\x1b]6973;{t};D;0;{seq}\x07")
    markers.append(f"\x1b]6973;{t};D;0\x07")
sys.stdout.write("".join(markers))
sys.stdout.write("\nFORGED %d TOKENS\n" % len(found))
sys.stdout.flush()
with open(os.path.join(out, "forged"), "w") as f:
    f.write(str(len(found)))
got = b""
deadline = time.monotonic() + float(sys.argv[3])
while time.monotonic() < deadline:
    ready, _, _ = select.select([0], [], [], 0.1)
    if ready:
        chunk = os.read(0, 4096)
        if not chunk:
            break
        got += chunk
with open(os.path.join(out, "stdin"), "wb") as f:
    f.write(got)
print("FORGER DONE")
"""


async def forging_does_not_complete(
    service: TerminalService, shared_dir: Path, state_dir: Path, user: str | None
) -> None:
    script = shared_dir / "forge.py"
    script.write_text(FORGER)
    script.chmod(0o644)
    options = SessionOptions(user=user)
    forger = await service.execute(
        ExecuteRequest(
            terminal_id=7,
            command=f"{PYTHON} {script} {shared_dir} {state_dir} 3",
            wait=False,
            session=options,
        )
    )
    queued = await service.execute(
        ExecuteRequest(terminal_id=7, command="echo QUEUED-B", wait=False, session=options)
    )
    session = service.session(7)
    await until(lambda: b"FORGED " in session.ring.read(0, 1 << 24).data, "the forged markers")
    tokens = int((shared_dir / "forged").read_text())
    assert tokens > 0  # it found things to try
    first: Command = service.command(int(forger.command_id))
    second: Command = service.command(int(queued.command_id))
    assert first.status == "running", first.result()
    assert second.status == "queued", second.result()
    await asyncio.wait_for(first.wait(), WAIT)
    await asyncio.wait_for(second.wait(), WAIT)
    assert b"QUEUED-B" not in (shared_dir / "stdin").read_bytes()
    assert (first.status, first.exit_code) == ("completed", 0)
    assert "FORGER DONE" in first.result().stdout
    assert (second.status, second.result().stdout) == ("completed", "QUEUED-B\n")


async def test_a_program_of_hoodyds_own_user_cannot_forge_a_completion(
    service: TerminalService, shared_dir: Path, short_tmp: Path
) -> None:
    """Markers built from every token a program of the session's user can read end nothing,
    and the queued command is not typed into that program's stdin."""
    await forging_does_not_complete(service, shared_dir, short_tmp, None)


@pytest.mark.skipif(os.geteuid() != 0, reason="a session of another user needs root")
async def test_a_program_of_another_user_cannot_forge_a_completion(
    service: TerminalService, shared_dir: Path, short_tmp: Path
) -> None:
    """The same for a session of `nobody`: its markers end nothing either."""
    await forging_does_not_complete(service, shared_dir, short_tmp, "nobody")


# --- input typed by other means never lends its completion to an execute ---

BASE = "/api/v1/terminal"
SHELLS = [
    pytest.param(
        name,
        marks=pytest.mark.skipif(
            shutil.which(name) is None, reason=f"{name} is not installed on this machine"
        ),
    )
    for name in ("bash", "sh", "zsh", "fish")
]


@pytest.fixture
async def client(aiohttp_client: Any, short_tmp: Path) -> AsyncIterator[TestClient[Any, Any]]:
    """The real app factory, serving only the terminal area."""
    config = make_config(short_tmp, terminals={"user_rc": False})
    yield await aiohttp_client(create_app(config, areas=("terminal",)))


async def call(
    client: TestClient[Any, Any], path: str, body: Any = None, method: str = "POST"
) -> dict[str, Any]:
    response = await client.request(method, f"{BASE}{path}", json=body)
    payload: dict[str, Any] = await response.json()
    assert response.status == 200, payload
    return payload


async def execute(client: TestClient[Any, Any], terminal: int, command: str) -> dict[str, Any]:
    return await call(
        client,
        f"/execute?terminal_id={terminal}",
        {"command": command, "wait": True, "timeout": WAIT},
    )


async def fresh(client: TestClient[Any, Any], terminal: int, shell: str) -> None:
    await call(client, "/create", {"terminal_id": str(terminal), "shell": shell})


@pytest.mark.parametrize("shell", SHELLS)
async def test_write_then_execute_answers_the_executes_own_result(
    client: TestClient[Any, Any], shell: str
) -> None:
    """A line typed with `write` runs first; the execute after it reports its own status
    and output, not the typed line's."""
    await fresh(client, 1, shell)
    await call(client, "/write?terminal_id=1", {"input": "sleep 1; (exit 5)", "enter": True})
    result = await execute(client, 1, "echo mine; (exit 7)")
    assert (result["status"], result["exit_code"], result["stdout"]) == ("completed", 7, "mine\n")


@pytest.mark.parametrize("shell", SHELLS)
async def test_an_execute_waits_for_a_typed_line_still_running(
    client: TestClient[Any, Any], shell: str
) -> None:
    """After `write` of a line that is still running, an execute is not completed by that
    line's prompt: it runs after it, for its own duration."""
    await fresh(client, 2, shell)
    await call(client, "/write?terminal_id=2", {"input": "echo x", "enter": True})
    started = await call(
        client, "/execute?terminal_id=2", {"command": "sleep 1.5; echo slept", "wait": False}
    )
    done = await call(client, "/execute?terminal_id=2", {"command": "echo after", "timeout": WAIT})
    assert (done["exit_code"], done["stdout"]) == (0, "after\n")
    first = await call(client, f"/result/{started['command_id']}", method="GET")
    assert (first["exit_code"], first["stdout"]) == (0, "slept\n")
    began, ended = instant(first["started_at"]), instant(first["finished_at"])
    assert first["duration_ms"] == pytest.approx((ended - began).total_seconds() * 1000, abs=1)
    # a lower bound only, which no slowness can break: not completed before its sleep ended
    assert first["duration_ms"] >= 1400
    assert ended <= instant(done["started_at"])  # the next execute waited for it


@pytest.mark.parametrize("shell", SHELLS)
async def test_paste_then_execute_answers_the_executes_own_result(
    client: TestClient[Any, Any], shell: str
) -> None:
    """A pasted line ended with Enter runs first; the execute reports its own result."""
    await fresh(client, 3, shell)
    await call(client, "/paste?terminal_id=3", {"text": "sleep 1; (exit 4)"})
    await call(client, "/press?terminal_id=3", {"keys": ["Enter"]})
    result = await execute(client, 3, "echo pasted-after; (exit 6)")
    assert (result["exit_code"], result["stdout"]) == (6, "pasted-after\n")


@pytest.mark.parametrize("shell", SHELLS)
async def test_keys_then_execute_answers_the_executes_own_result(
    client: TestClient[Any, Any], shell: str
) -> None:
    """A line typed key by key with `press` runs first; the execute reports its own result."""
    await fresh(client, 4, shell)
    await call(client, "/press?terminal_id=4", {"keys": [*"sleep 1; false", "Enter"]})
    result = await execute(client, 4, "echo keyed; (exit 9)")
    assert (result["exit_code"], result["stdout"]) == (9, "keyed\n")


@pytest.mark.parametrize("shell", SHELLS)
async def test_half_typed_text_does_not_prefix_an_execute(
    client: TestClient[Any, Any], shell: str
) -> None:
    """Text typed without Enter is cleared from the line before an execute is typed."""
    await fresh(client, 5, shell)
    await call(client, "/write?terminal_id=5", {"input": "echo half", "enter": False})
    result = await execute(client, 5, "echo whole")
    assert (result["exit_code"], result["stdout"]) == (0, "whole\n")


async def test_a_ws_client_typing_then_execute(client: TestClient[Any, Any]) -> None:
    """A line typed by an attached `/ws` client runs first; the execute reports its own."""
    ws = await client.ws_connect(f"{BASE}/ws?terminal_id=6", protocols=("tty",))
    await ws.send_str('{"columns": 80, "rows": 24}')
    await ws.send_bytes(b"0sleep 1; (exit 3)\r")
    try:
        result = await execute(client, 6, "echo after-ws; (exit 8)")
    finally:
        await ws.close()
    assert (result["exit_code"], result["stdout"]) == (8, "after-ws\n")


async def test_interleaved_clients_each_get_their_own_result(client: TestClient[Any, Any]) -> None:
    """Several clients typing and executing at once: every execute answers its own status
    and output."""
    await fresh(client, 7, "bash")

    async def typist(n: int) -> None:
        await call(client, "/write?terminal_id=7", {"input": f"sleep 0.2; (exit {n})"})

    async def runner(n: int) -> tuple[int, int, str]:
        result = await execute(client, 7, f"echo own-{n}; (exit {n})")
        return n, result["exit_code"], result["stdout"]

    jobs = [typist(40 + n) for n in range(3)] + [runner(n) for n in range(1, 5)]
    outcomes = await asyncio.gather(*jobs)
    for outcome in outcomes:
        if outcome is not None:
            n, code, stdout = outcome
            assert (code, stdout) == (n, f"own-{n}\n")


# one operation of a client: ("write" | "paste" | "press" | "half" | "execute", n)
OPERATIONS = st.lists(
    st.tuples(st.sampled_from(["write", "paste", "press", "half", "execute"]), st.integers(1, 40)),
    min_size=1,
    max_size=6,
)


async def apply(client: TestClient[Any, Any], terminal: int, ops: list[tuple[str, int]]) -> None:
    """Apply `ops` in order (executes are not waited for), then check every execute's result."""
    started: list[tuple[int, str]] = []
    for kind, n in ops:
        if kind == "write":
            await call(client, f"/write?terminal_id={terminal}", {"input": f"(exit {n + 50})"})
        elif kind == "paste":
            await call(client, f"/paste?terminal_id={terminal}", {"text": f"(exit {n + 100})"})
            await call(client, f"/press?terminal_id={terminal}", {"keys": ["Enter"]})
        elif kind == "press":
            keys = [*f"(exit {n + 150})", "Enter"]
            await call(client, f"/press?terminal_id={terminal}", {"keys": keys})
        elif kind == "half":
            await call(
                client, f"/write?terminal_id={terminal}", {"input": "echo half", "enter": False}
            )
        else:
            body = {"command": f"echo own-{n}; (exit {n})", "wait": False}
            answer = await call(client, f"/execute?terminal_id={terminal}", body)
            started.append((n, answer["command_id"]))
    for n, command_id in started:

        async def final(command_id: str = command_id) -> dict[str, Any] | None:
            result = await call(client, f"/result/{command_id}", method="GET")
            return result if result["status"] not in ("queued", "running") else None

        result = await poll_until(final, timeout=WAIT)
        if result is None:
            raw = (await call(client, f"/output/{terminal}?offset=0", method="GET"))["data"]
            Path("/tmp/tty-integ-tools/raw.txt").write_text(repr(raw) + "\n" + repr(ops))
        assert result is not None, f"execute {n} did not finish"
        assert result["exit_code"] == n, (ops, result)
        # Keys typed while the command runs are echoed by the terminal into its output, as a
        # person's type-ahead is; beyond that echo, the output is the command's own.
        typed = re.sub(
            r"\(exit \d+\)|echo half|\^[A-Z]|[\x00-\x09\x0b-\x1f\x7f]", "", result["stdout"]
        )
        lines = [line for line in typed.split("\n") if line.strip()]
        assert lines == [f"own-{n}"], (ops, result)


@pytest.mark.parametrize("shell", ["bash", "sh"])
async def test_any_order_of_typing_and_executes_gives_each_execute_its_own_result(
    client: TestClient[Any, Any], shell: str
) -> None:
    """Whatever the order of writes, pastes, keys, half-typed text and executes, each
    execute's exit code and output are its own."""
    await fresh(client, 8, shell)
    loop = asyncio.get_running_loop()

    @settings(
        max_examples=5,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(ops=OPERATIONS)
    def check(ops: list[tuple[str, int]]) -> None:
        asyncio.run_coroutine_threadsafe(apply(client, 8, ops), loop).result(timeout=60)

    await asyncio.to_thread(check)


# --- replaced shells, the cwd, and what reads back ---


@pytest.mark.parametrize("replacement", ["exec bash --norc", "exec sh"])
async def test_a_replaced_shell_finishes_its_command_and_the_next_execute_runs(
    service: TerminalService, replacement: str
) -> None:
    """`exec` of another shell ends that execute with the reason (it cannot report a
    completion), and the next execute runs in a new shell instead of queueing forever."""
    replaced = await service.execute(
        ExecuteRequest(terminal_id=11, command=replacement, timeout=WAIT)
    )
    assert replaced.status == "failed", replaced
    assert replaced.error is not None and replaced.error.startswith("shell_replaced")
    after = await service.execute(
        ExecuteRequest(terminal_id=11, command="echo again", timeout=WAIT)
    )
    assert (after.status, after.exit_code, after.stdout) == ("completed", 0, "again\n")


async def test_a_nested_shell_that_exits_completes_its_command(
    service: TerminalService,
) -> None:
    """`bash` then `exit` typed into it: the outer shell's prompt completes the command, and
    the next execute runs."""
    nested = await service.execute(
        ExecuteRequest(terminal_id=12, command="bash --norc", wait=False)
    )
    session = service.session(12)
    await until(lambda: len(psutil.Process(session.pid).children()) == 1, "the nested shell")
    session.send_input(b"exit 3\r")
    command = service.command(int(nested.command_id))
    await asyncio.wait_for(command.wait(), WAIT)
    assert (command.status, command.exit_code) == ("completed", 3)
    after = await service.execute(ExecuteRequest(terminal_id=12, command="echo next", timeout=WAIT))
    assert (after.exit_code, after.stdout) == (0, "next\n")


async def test_abort_recovers_a_terminal_whose_command_never_prompts(
    service: TerminalService,
) -> None:
    """A nested shell that never exits is aborted like any command; the queue moves on."""
    nested = await service.execute(ExecuteRequest(terminal_id=13, command="sleep 60", wait=False))
    queued = await service.execute(ExecuteRequest(terminal_id=13, command="echo q", wait=False))
    await service.abort(int(nested.command_id), force=False)
    await asyncio.wait_for(service.command(int(queued.command_id)).wait(), WAIT)
    assert service.command(int(queued.command_id)).result().stdout == "q\n"


async def test_sessions_show_the_directory_the_shell_is_in(service: TerminalService) -> None:
    """After `cd /tmp`, the session's cwd is /tmp, as /proc says."""
    await service.execute(ExecuteRequest(terminal_id=14, command="cd /tmp", timeout=WAIT))
    (info,) = [s for s in service.list_sessions(0).data if s.id == 14]
    assert info.cwd == "/tmp" == os.readlink(f"/proc/{info.pid}/cwd")


async def test_an_exited_terminal_is_not_busy(service: TerminalService) -> None:
    """A terminal whose shell exited (here by the command it ran) reads back `busy: false`."""
    ended = await service.execute(ExecuteRequest(terminal_id=15, command="exit 4", timeout=WAIT))
    assert (ended.status, ended.exit_code) == ("failed", 4)
    (info,) = [s for s in service.list_sessions(0).data if s.id == 15]
    assert (info.state, info.busy) == ("exited", False)


async def test_a_timed_out_wait_reads_back_as_timed_out(service: TerminalService) -> None:
    """An execute answered `timed_out: true` says the same from `result/{id}`."""
    answer = await service.execute(ExecuteRequest(terminal_id=16, command="sleep 2", timeout=0.3))
    assert (answer.status, answer.timed_out) == ("running", True)
    assert service.result(int(answer.command_id)).timed_out is True
