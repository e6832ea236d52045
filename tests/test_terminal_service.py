"""TerminalService with real shells in real PTYs: execute, ordering, defer, shell exits."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import structlog

from hoodyd.errors import Conflict, InvalidRequest, NotFound
from hoodyd.polling import poll_until
from hoodyd.schemas.terminal import (
    CommandResult,
    CreateRequest,
    DeferSpec,
    ExecuteRequest,
    SessionOptions,
)
from hoodyd.terminals.defer import read_process
from hoodyd.terminals.service import TerminalService
from hoodyd.terminals.session import TerminalSession
from tests.conftest import running_terminal_service, wait_until

WAIT = 10.0  # generous bound for any single wait on a loaded machine


@pytest.fixture
async def service(short_tmp: Path) -> AsyncIterator[TerminalService]:
    async with running_terminal_service(short_tmp) as running:
        yield running


@contextlib.asynccontextmanager
async def sleeper(seconds: float) -> AsyncIterator[asyncio.subprocess.Process]:
    """A real `sleep` process, always ended and reaped."""
    process = await asyncio.create_subprocess_exec("sleep", str(seconds))
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


async def finished(service: TerminalService, command_id: str) -> None:
    await asyncio.wait_for(service.command(int(command_id)).wait(), WAIT)


async def test_execute_with_wait_returns_output_and_exit_code(service: TerminalService) -> None:
    """Terminal 1 starts on first use; the answer carries the command's output and status."""
    result = await service.execute(
        ExecuteRequest(terminal_id=1, command="echo out; echo err >&2; (exit 7)", timeout=WAIT)
    )
    assert result.status == "completed"
    assert result.exit_code == 7
    assert result.stdout == "out\nerr\n"
    assert "\x1b]6973" not in service.session(1).ring.read(0, 1 << 20).data.decode()


async def test_history_expansion_and_quotes_reach_the_shell_verbatim(
    service: TerminalService,
) -> None:
    """`!` and quotes in a command are not rewritten by the interactive shell."""
    result = await service.execute(
        ExecuteRequest(terminal_id=1, command="""printf '%s|' "hi!" 'a"b' $'x\\ty'""")
    )
    assert result.stdout == 'hi!|a"b|x\ty|'


async def settled_end(session: TerminalSession) -> int:
    """The output offset once the shell has drawn its prompt: the rest of a prompt may reach
    the session just after the marker that completed the command."""
    before = -1

    async def unchanged() -> int | None:
        nonlocal before
        now = session.ring.end
        same, before = now == before, now
        return now if same else None

    end = await poll_until(unchanged, timeout=WAIT)
    assert end is not None, "the output kept growing"
    return end


async def test_lines_that_do_not_parse_complete_without_being_typed(
    service: TerminalService,
) -> None:
    """A syntax error or an unclosed quote completes with the parser's status, untyped."""
    await service.execute(ExecuteRequest(terminal_id=1, command="true"))
    before = await settled_end(service.session(1))
    syntax = await service.execute(ExecuteRequest(terminal_id=1, command="echo )", timeout=WAIT))
    assert (syntax.status, syntax.exit_code) == ("completed", 2)
    assert "syntax error" in syntax.stdout
    incomplete = await service.execute(
        ExecuteRequest(terminal_id=1, command="echo 'open", timeout=WAIT)
    )
    assert (incomplete.status, incomplete.exit_code) == ("completed", 2)
    assert "unexpected EOF" in incomplete.stdout
    reserved = await service.execute(ExecuteRequest(terminal_id=1, command="if true", timeout=WAIT))
    assert (reserved.status, reserved.exit_code) == ("completed", 2)
    assert service.session(1).ring.end == before
    after = await service.execute(ExecuteRequest(terminal_id=1, command="echo fine"))
    assert (after.stdout, after.exit_code) == ("fine\n", 0)


async def test_commands_run_in_acceptance_order(service: TerminalService, short_tmp: Path) -> None:
    """Concurrent executes run one at a time in the order accepted, a slow first one included."""
    log = short_tmp / "order.log"
    commands = [f"sleep 0.2; echo 0 >> {log}"] + [f"echo {n} >> {log}" for n in range(1, 6)]
    results = await asyncio.gather(
        *(service.execute(ExecuteRequest(terminal_id=1, command=c)) for c in commands)
    )
    assert log.read_text().split() == [str(n) for n in range(6)]
    assert [int(r.command_id) for r in results] == sorted(int(r.command_id) for r in results)
    starts = [r.started_at or "" for r in results]
    ends = [r.finished_at or "" for r in results]
    assert all(ends[i] <= starts[i + 1] for i in range(len(results) - 1))


async def test_wait_timeout_answers_running_and_the_command_completes_later(
    service: TerminalService,
) -> None:
    """A wait bounded by `timeout` answers `timed_out` while the command keeps running, and
    its result reads back `timed_out` too once it completed."""
    await service.execute(ExecuteRequest(terminal_id=1, command="true"))  # shell is up
    result = await service.execute(
        ExecuteRequest(terminal_id=1, command="sleep 0.5; echo late", timeout=0.05)
    )
    assert result.status in ("queued", "running") and result.timed_out
    await finished(service, result.command_id)
    final = service.result(int(result.command_id))
    assert (final.status, final.stdout, final.timed_out) == ("completed", "late\n", True)


@pytest.mark.parametrize("method", ["pidfd", "poll"])
async def test_deferred_command_lands_after_the_pid_exits_and_not_before(
    short_tmp: Path, method: str
) -> None:
    """The command waits for a real `sleep` to exit (pidfd or polling), then runs."""
    async with running_terminal_service(short_tmp, defer_method=method) as service:
        await service.execute(ExecuteRequest(terminal_id=1, command="true"))
        spawned = time.time()
        async with sleeper(1.5) as sleep:
            result = await service.execute(
                ExecuteRequest(terminal_id=1, command="echo landed", defer=DeferSpec(pid=sleep.pid))
            )
            assert result.status == "pending"
            assert result.defer is not None and result.defer.method == method
            await finished(service, result.command_id)
        final = service.result(int(result.command_id))
        assert (final.status, final.exit_code, final.stdout) == ("completed", 0, "landed\n")
        assert final.defer is not None and final.defer.outcome == "exited"
        # a lower bound only, which no slowness can break: held until `sleep 1.5` ended
        started = service.command(int(result.command_id)).started_at
        assert started is not None and started >= spawned + 1.5


async def test_reused_pid_runs_at_once(service: TerminalService) -> None:
    """Start ticks that differ from the live process's mean the PID was reused: run now."""
    async with sleeper(30) as sleep:
        ticks = read_process(sleep.pid).start_ticks
        assert ticks is not None
        result = await service.execute(
            ExecuteRequest(
                terminal_id=1,
                command="echo reused",
                defer=DeferSpec(pid=sleep.pid, start_time_ticks=ticks + 1),
            )
        )
        await finished(service, result.command_id)
        final = service.result(int(result.command_id))
        assert sleep.returncode is None
    assert (final.stdout, final.exit_code) == ("reused\n", 0)
    assert final.defer is not None and final.defer.outcome == "reused"


async def test_matching_ticks_wait_and_a_gone_pid_runs_at_once(service: TerminalService) -> None:
    """Matching ticks keep the command waiting until the process exits; a PID with no process
    does not wait at all."""
    spawned = time.time()
    async with sleeper(1.5) as sleep:
        ticks = read_process(sleep.pid).start_ticks
        waiting = await service.execute(
            ExecuteRequest(
                terminal_id=1,
                command="echo waited",
                defer=DeferSpec(pid=sleep.pid, start_time_ticks=ticks, timeout_ms=WAIT_MS),
            )
        )
        await finished(service, waiting.command_id)
    held = service.result(int(waiting.command_id))
    assert held.stdout == "waited\n"
    assert held.defer is not None and held.defer.outcome == "exited"
    # a lower bound only, which no slowness can break: held until `sleep 1.5` ended
    started = service.command(int(waiting.command_id)).started_at
    assert started is not None and started >= spawned + 1.5
    async with sleeper(0) as gone:
        await gone.wait()
    result = await service.execute(
        ExecuteRequest(terminal_id=1, command="echo now", defer=DeferSpec(pid=gone.pid))
    )
    await finished(service, result.command_id)
    final = service.result(int(result.command_id))
    assert final.defer is not None and final.defer.outcome == "gone"


WAIT_MS = int(WAIT * 1000)


async def test_defer_timeout_never_runs_and_reports_124(service: TerminalService) -> None:
    """A PID still running at defer_timeout_ms: exit code 124, not typed; the queue moves on."""
    async with sleeper(30) as sleep:
        result = await service.execute(
            ExecuteRequest(
                terminal_id=1,
                command="echo never-typed",
                defer=DeferSpec(pid=sleep.pid, timeout_ms=200, poll_ms=10),
            )
        )
        follower = await service.execute(
            ExecuteRequest(terminal_id=1, command="echo next", timeout=WAIT)
        )
        final = service.result(int(result.command_id))
        assert sleep.returncode is None
    assert (final.status, final.exit_code, final.timed_out) == ("timed_out", 124, True)
    assert final.started_at is None
    assert b"never-typed" not in service.session(1).ring.read(0, 1 << 20).data
    assert follower.stdout == "next\n"


async def test_shell_exit_is_reported_then_the_session_is_recreated(
    service: TerminalService,
) -> None:
    """A shell that exits gives 409 on execute, shows as exited, and create starts it again."""
    created = await service.create(CreateRequest(terminal_id=2))
    assert created.created and created.shell_ready
    again = await service.create(CreateRequest(terminal_id=2))
    assert not again.created and again.session.pid == created.session.pid
    ended = await service.execute(ExecuteRequest(terminal_id=2, command="exit 5", timeout=WAIT))
    assert (ended.status, ended.exit_code) == ("failed", 5)
    with pytest.raises(Conflict) as refused:
        await service.execute(ExecuteRequest(terminal_id=2, command="echo hi"))
    assert refused.value.reason == "SHELL_EXITED"
    listed = {s.id: s for s in service.list_sessions(10).data}
    assert (listed[2].state, listed[2].exit_code) == ("exited", 5)
    recreated = await service.create(CreateRequest(terminal_id=2))
    assert recreated.created and recreated.session.state == "running"
    result = await service.execute(ExecuteRequest(terminal_id=2, command="echo back"))
    assert result.stdout == "back\n"


async def test_delete_kills_the_shell_and_its_commands(service: TerminalService) -> None:
    """Deleting a session ends its shell, its background job and the program it runs."""
    await service.create(CreateRequest(terminal_id=3))
    await service.execute(ExecuteRequest(terminal_id=3, command="sleep 101 &"))
    running = await service.execute(ExecuteRequest(terminal_id=3, command="sleep 100", wait=False))
    shell = psutil.Process(service.session(3).pid)


    async def both_sleeping() -> bool | None:
        return True if len(shell.children()) >= 2 else None

    await poll_until(both_sleeping, timeout=WAIT, interval=0.02)
    family = [shell, *shell.children(recursive=True)]
    assert len(family) == 3
    deleted = await service.delete(3)
    assert deleted.deleted
    _gone, alive = psutil.wait_procs(family, timeout=WAIT)
    assert alive == []
    assert service.result(int(running.command_id)).status == "failed"
    with pytest.raises(NotFound):
        service.session(3)


async def test_refused_executes_create_and_type_nothing(service: TerminalService) -> None:
    """Bad commands, unknown terminals and bad env are refused before anything starts."""
    bad = [
        (ExecuteRequest(terminal_id=1, command="echo a\necho b"), InvalidRequest),
        (ExecuteRequest(terminal_id=1, command="echo \x00"), InvalidRequest),
        (ExecuteRequest(terminal_id=1, command="ls\t-l"), InvalidRequest),
        (ExecuteRequest(terminal_id=1, command="   "), InvalidRequest),
        (ExecuteRequest(terminal_id=1, command="env", env={"A": "x\ny"}), InvalidRequest),
        (ExecuteRequest(terminal_id=1, command="env", env={"1A": "x"}), InvalidRequest),
        (ExecuteRequest(terminal_id=1, command="pwd", cwd="/tmp\n"), InvalidRequest),
        (ExecuteRequest(terminal_id=None, command="true"), InvalidRequest),
        (ExecuteRequest(terminal_id=40009, command="true"), InvalidRequest),
        (
            ExecuteRequest(
                terminal_id=9, command="true", session=SessionOptions(cwd="/nonexistent")
            ),
            InvalidRequest,
        ),
        (
            ExecuteRequest(terminal_id=9, command="true", session=SessionOptions(shell="ksh")),
            InvalidRequest,
        ),
    ]
    for request, error in bad:
        with pytest.raises(error):
            await service.execute(request)
    assert service.list_sessions(0).total == 0


async def test_per_command_cwd_and_env_are_quoted_data(
    service: TerminalService, short_tmp: Path
) -> None:
    """cwd and env values with shell syntax in them arrive as plain strings."""
    odd = short_tmp / "it's $(here)"
    odd.mkdir()
    result = await service.execute(
        ExecuteRequest(
            terminal_id=1,
            command='pwd; echo "$GREETING"',
            cwd=str(odd),
            env={"GREETING": "; echo injected $(id -u)"},
        )
    )
    assert result.stdout == f"{odd}\n; echo injected $(id -u)\n"


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish", "sh"])
async def test_every_supported_shell_reports_completion(
    service: TerminalService, shell: str
) -> None:
    """Each shell's integration reports output and status, survives bad lines, runs cwd/env."""
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed on this machine")
    created = await service.create(CreateRequest(terminal_id=4, shell=shell))
    assert created.shell_ready and created.session.shell == shell

    async def run(command: str, **fields: Any) -> CommandResult:
        return await service.execute(
            ExecuteRequest(terminal_id=4, command=command, timeout=WAIT, **fields)
        )

    result = await run("echo one; echo two; false")
    assert (result.status, result.stdout, result.exit_code) == ("completed", "one\ntwo\n", 1)
    broken = await run("echo )")
    assert broken.status == "completed" and broken.exit_code not in (None, 0)
    incomplete = await run("echo 'open")
    assert incomplete.status == "completed" and incomplete.exit_code not in (None, 0)
    scoped = await run('pwd; echo "$GREETING"', cwd="/", env={"GREETING": "it's $HOME"})
    assert (scoped.stdout, scoped.exit_code) == ("/\nit's $HOME\n", 0)
    last = await run("echo last")
    assert (last.stdout, last.exit_code) == ("last\n", 0)


async def test_ephemeral_sessions_get_high_ids_and_are_reaped_when_idle(short_tmp: Path) -> None:
    """Ephemeral executes get an id from 40000 up, without DISPLAY, removed once idle."""
    async with running_terminal_service(short_tmp, ephemeral_idle_timeout=0.3) as service:
        result = await service.execute(
            ExecuteRequest(terminal_id=None, ephemeral=True, command='echo "[$DISPLAY]"')
        )
        terminal_id = int(result.terminal_id)
        assert terminal_id >= 40000
        assert result.stdout == "[]\n"

        async def reaped() -> bool | None:
            return True if service.list_sessions(0).total == 0 else None

        assert await poll_until(reaped, timeout=WAIT, interval=0.05)


async def test_display_sets_display_and_waits_for_its_port(service: TerminalService) -> None:
    """A display sets DISPLAY; create waits until TCP 4000 + N accepts, or reports not ready."""
    server = None
    handled = asyncio.Event()

    def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()
        handled.set()

    for number in range(150, 1000):
        try:
            server = await asyncio.start_server(accept, "127.0.0.1", 4000 + number)
        except OSError:
            continue
        break
    assert server is not None
    async with server:
        created = await service.create(
            CreateRequest(terminal_id=5, display=str(number), wait_timeout=WAIT)
        )
        assert (created.display_ready, created.session.display) == (True, f":{number}")
        # the server closes the probe's connection before it stops (else it leaks)
        await asyncio.wait_for(handled.wait(), WAIT)
    result = await service.execute(ExecuteRequest(terminal_id=5, command='echo "$DISPLAY"'))
    assert result.stdout == f":{number}\n"
    closed = await service.create(
        CreateRequest(terminal_id=6, display=f":{number}", wait_timeout=0.2)
    )
    assert closed.display_ready is False
    skipped = await service.create(
        CreateRequest(terminal_id=7, display=f":{number}", wait_until_display=False)
    )
    assert skipped.display_ready is None


async def test_logs_name_commands_by_id_never_by_their_text(service: TerminalService) -> None:
    """Command text (which may hold a secret) never reaches the logs; ids and codes do."""
    with structlog.testing.capture_logs() as logs:
        result = await service.execute(
            ExecuteRequest(terminal_id=1, command="echo s3cr3t-token >/dev/null")
        )
    events = [entry["event"] for entry in logs]
    assert {"terminal_started", "command_accepted", "command_injected", "command_completed"} <= set(
        events
    )
    assert all("s3cr3t" not in repr(entry) for entry in logs)
    completed = next(e for e in logs if e["event"] == "command_completed")
    assert (completed["command_id"], completed["exit_code"]) == (int(result.command_id), 0)


async def test_a_shell_slow_to_exec_is_not_taken_for_a_replaced_one(
    short_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shell's process may still be a wrapper when the session starts (`prlimit`, a
    `bash` that is a script): what it runs is taken as the shell's only at its first prompt,
    so a command running longer than the replacement check is not failed as `exec`'d away."""
    wrappers = short_tmp / "bin"
    wrappers.mkdir()
    wrapper = wrappers / "bash"
    wrapper.write_text(f'#!/bin/sh\nsleep 1\nexec {shutil.which("bash")} "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{wrappers}:{os.environ['PATH']}")
    async with running_terminal_service(short_tmp / "state") as service:
        result = await service.execute(
            ExecuteRequest(terminal_id=1, command="sleep 2; echo done", timeout=WAIT * 3)
        )
        assert (result.error, result.exit_code, result.stdout) == (None, 0, "done\n")
        assert not service.session(1).replaced


async def test_a_shell_that_exited_is_not_listed_as_running_before_its_holder_reports(
    service: TerminalService,
) -> None:
    """Between a shell's exit and its holder's report (the holder has not reaped it yet), the
    session is already listed as exited, with the code the holder then reports."""
    await service.create(CreateRequest(terminal_id=3, wait_timeout=WAIT))
    session = service.session(3)
    holder = psutil.Process(session.holder_pid)
    holder.suspend()  # it cannot reap its shell, nor report the exit, until resumed
    try:
        shell = psutil.Process(session.pid)
        shell.kill()

        async def zombie() -> bool | None:
            return True if shell.status() == psutil.STATUS_ZOMBIE else None

        assert await poll_until(zombie, timeout=WAIT, interval=0.02)
        assert session.running  # no report has come
        listed = service.list_sessions(0).data[0]
        assert (listed.state, listed.exit_code, listed.busy) == ("exited", -9, False)
    finally:
        holder.resume()

    async def reported() -> bool | None:
        return True if not session.running else None

    assert await poll_until(reported, timeout=WAIT, interval=0.02)
    listed = service.list_sessions(0).data[0]
    assert (listed.state, listed.exit_code) == ("exited", session.exit_code) == ("exited", -9)


async def test_a_listing_waits_for_the_report_of_a_shell_its_holder_reaped(
    service: TerminalService,
) -> None:
    """The holder has reaped the shell and sent its report, which hoodyd has not read yet: the
    listing reads it first, so a shell that is gone is never listed as running."""
    await service.create(CreateRequest(terminal_id=4, wait_timeout=WAIT))
    session = service.session(4)
    holder = psutil.Process(session.holder_pid)
    holder.suspend()
    psutil.Process(session.pid).kill()
    holder.resume()
    # blocking on purpose: the loop cannot read the holder's report while the shell goes
    wait_until(lambda: True if not psutil.pid_exists(session.pid) else None, timeout=WAIT)
    assert session.running and session.exit_unreported()
    await service.settle_exits()
    listed = service.list_sessions(0).data[0]
    assert (listed.state, listed.exit_code) == ("exited", -9)
