"""The program and quick-start services used directly, without HTTP, against a real supervisord
in a temp dir: CRUD and what each mutation leaves in the table, the store and supervisord;
starts, stops, status and logs as Structs; transitions published to subscribers; faults named;
supervisord brought back to the store after it died."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path
from typing import Any

import msgspec
import psutil
import pytest
from msgspec import UNSET

from hoodyd.config import Config
from hoodyd.errors import Conflict, InvalidRequest, NotFound, SupervisorFault
from hoodyd.polling import poll_until
from hoodyd.programs.observer import Transition
from hoodyd.programs.quickstart import QuickStartService
from hoodyd.programs.service import ProgramService
from hoodyd.programs.supervisor_client import Fault
from hoodyd.programs.table import ProgramFilter
from hoodyd.schemas.daemon import (
    EphemeralInput,
    PortRangeStatus,
    ProcessStats,
    ProcessStatus,
    Program,
    ProgramInput,
    StartRequest,
    StopRequest,
)
from tests.conftest import PORT_SERVER, sleeper
from tests.ports import free_port_range


@pytest.fixture
def programs(program_service: ProgramService) -> ProgramService:
    """The open program service (here, `programs` names it, not PTY programs)."""
    return program_service


def given(**fields: Any) -> ProgramInput:
    return msgspec.convert(sleeper(**fields), ProgramInput)


def conf_dir(config: Config) -> Path:
    return config.state_path / "supervisor" / "conf.d"


async def add_and_start(service: ProgramService, **fields: Any) -> tuple[Program, int]:
    program = await service.add(given(**fields))
    started = await service.start(program.id, StartRequest(wait=True, timeout=20))
    assert started.instance.status == "RUNNING"
    assert started.instance.pid is not None
    return program, started.instance.pid


def gone(pid: int) -> bool:
    return not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


async def test_add_keeps_the_program_in_table_store_and_supervisord(
    programs: ProgramService, program_config: Config
) -> None:
    """An added program is in the table, in the store and registered (STOPPED, not started)."""
    program = await programs.add(given(name="alpha"))
    assert programs.get(program.id) == program
    assert programs.find(ProgramFilter(enabled=True)) == [program]
    assert programs.store.load_programs() == {program.id: program}
    assert (conf_dir(program_config) / f"hoodyd-program-{program.id}.conf").exists()
    answer = await programs.status_of(program.id, port=None, with_stats=False)
    assert answer.status == ProcessStatus(id=program.id, status="STOPPED", pid=None, uptime=None)


async def test_a_refused_add_changes_nothing(
    programs: ProgramService, program_config: Config
) -> None:
    """A duplicate name is refused before anything is written or registered."""
    first = await programs.add(given(name="taken"))
    with pytest.raises(InvalidRequest) as refused:
        await programs.add(given(name="taken"))
    assert refused.value.reason == "NAME_IN_USE"
    assert programs.find(ProgramFilter()) == [first]
    assert list(programs.store.load_programs()) == [first.id]
    assert sorted(p.name for p in conf_dir(program_config).glob("hoodyd-program-*")) == [
        f"hoodyd-program-{first.id}.conf"
    ]


async def test_start_runs_once_and_an_idempotent_start_answers_the_same_process(
    programs: ProgramService,
) -> None:
    """A waited start answers RUNNING with a pid; `if_not_running` answers that same pid as
    already running; a plain second start is a conflict."""
    program, pid = await add_and_start(programs)
    again = await programs.start(program.id, StartRequest(if_not_running=True))
    assert again.already_running is True
    assert again.instance.pid == pid
    assert again.instance.port is UNSET
    with pytest.raises(Conflict) as conflict:
        await programs.start(program.id, StartRequest())
    assert conflict.value.reason == "ALREADY_RUNNING"


async def test_a_disabled_program_does_not_start(programs: ProgramService) -> None:
    """Start of a disabled program is refused with PROGRAM_DISABLED."""
    program = await programs.add(given(enabled=False))
    with pytest.raises(Conflict) as refused:
        await programs.start(program.id, StartRequest())
    assert refused.value.reason == "PROGRAM_DISABLED"


async def test_concurrent_starts_of_a_cold_instance_join_one_spawn(
    programs: ProgramService,
) -> None:
    """Twenty simultaneous starts of one port instance: one process, twenty equal answers."""
    base = free_port_range(1)
    program = await programs.add(
        given(command=PORT_SERVER, port_range={"start": base, "end": base})
    )
    request = StartRequest(port=base, if_not_running=True, wait=True, timeout=20)
    answers = await asyncio.gather(*(programs.start(program.id, request) for _ in range(20)))
    assert {answer.instance.pid for answer in answers} != {None}
    assert len({answer.instance.pid for answer in answers}) == 1
    assert {answer.instance.port for answer in answers} == {base}
    status = (await programs.status_of(program.id, port=None, with_stats=False)).status
    assert isinstance(status, PortRangeStatus)
    assert (status.running_instances, status.total_instances) == (1, 1)
    assert [instance.port for instance in status.instances] == [base]


async def test_status_with_stats_lifts_the_stats_out(programs: ProgramService) -> None:
    """Asked with stats, the status answer carries psutil's figures beside the status."""
    program, pid = await add_and_start(programs)
    answer = await programs.status_of(program.id, port=None, with_stats=True)
    assert isinstance(answer.status, ProcessStatus)
    assert answer.status.pid == pid
    assert answer.status.stats is UNSET
    assert isinstance(answer.stats, ProcessStats)
    assert answer.stats.pid == pid
    assert answer.stats.process_count >= 1
    [listed] = await programs.statuses_of([program], with_stats=False)
    assert isinstance(listed, ProcessStatus)
    assert listed.stats is UNSET


async def test_stop_answers_what_was_running(programs: ProgramService) -> None:
    """Stop names the instance it stopped; stopping it again stops nothing and is no error."""
    program, pid = await add_and_start(programs)
    assert await programs.stop(program.id, StopRequest()) == [program.name]
    assert gone(pid)
    assert await programs.stop(program.id, StopRequest()) == []


async def test_disable_stops_and_unregisters(
    programs: ProgramService, program_config: Config
) -> None:
    """Disabling stops the program, removes its group and file, and is stored."""
    program, pid = await add_and_start(programs)
    disabled = await programs.set_enabled(program.id, False)
    assert disabled.enabled is False
    assert gone(pid)
    assert not (conf_dir(program_config) / f"hoodyd-program-{program.id}.conf").exists()
    assert program.name not in await programs.client.processes()
    assert programs.store.load_programs()[program.id].enabled is False


async def test_edit_restarts_a_running_program_with_its_new_definition(
    programs: ProgramService,
) -> None:
    """An edit that changes the definition runs the program again under it."""
    program, pid = await add_and_start(programs, environment={"GREETING": "one"})
    edited = await programs.edit(program.id, ProgramInput(environment={"GREETING": "two"}))
    assert edited.environment == {"GREETING": "two"}

    async def restarted() -> int | None:
        status = (await programs.status_of(program.id, port=None, with_stats=False)).status
        assert isinstance(status, ProcessStatus)
        return status.pid if status.status == "RUNNING" and status.pid != pid else None

    new_pid = await poll_until(restarted, timeout=15)
    assert new_pid is not None
    assert psutil.Process(new_pid).environ()["GREETING"] == "two"


async def test_remove_stops_and_forgets_the_program(
    programs: ProgramService, program_config: Config
) -> None:
    """Remove stops the process and drops the program from table, store and supervisord."""
    program, pid = await add_and_start(programs)
    await programs.remove(program.id)
    assert gone(pid)
    with pytest.raises(NotFound):
        programs.get(program.id)
    assert programs.store.load_programs() == {}
    assert list(conf_dir(program_config).glob("hoodyd-program-*")) == []


async def test_reset_replaces_every_program_with_the_defaults(
    programs: ProgramService, program_config: Config
) -> None:
    """Reset unregisters the current programs and registers the defaults file's enabled ones."""
    await programs.add(given(name="temporary"))
    defaults = [sleeper(name="base1"), sleeper(name="base2", enabled=False)]
    Path(program_config.programs.defaults_file).write_text(json.dumps({"programs": defaults}))
    assert await programs.reset() == 2
    assert [p.name for p in programs.find(ProgramFilter())] == ["base1", "base2"]
    assert [p.name for p in conf_dir(program_config).glob("hoodyd-program-*")] == [
        "hoodyd-program-1.conf"
    ]


async def test_logs_are_a_log_tail(programs: ProgramService) -> None:
    """Logs answer the last lines of the stream and the file they came from."""
    program = await programs.add(
        given(command="/bin/sh -c 'echo first; echo second; exec sleep 300'")
    )
    await programs.start(program.id, StartRequest(wait=True, timeout=20))

    async def logged() -> str | None:
        tail = await programs.logs(program, stream="stdout", lines=1, port=None)
        return tail.logs or None

    assert await poll_until(logged, timeout=10) == "second\n"
    tail = await programs.logs(program, stream="stdout", lines=1, port=None)
    assert (tail.type, tail.lines) == ("stdout", 1)
    assert tail.log_file.endswith(f"program-{program.id}/stdout.log")


async def test_transitions_reach_subscribers_in_order(programs: ProgramService) -> None:
    """A subscriber hears the program go STARTING, RUNNING, STOPPING, STOPPED, each from the
    state before."""
    heard: list[Transition] = []
    unsubscribe = programs.observer.subscribe(heard.append)
    program, _pid = await add_and_start(programs)
    await programs.stop(program.id, StopRequest())

    async def stopped() -> bool | None:
        return True if any(t.state == "STOPPED" for t in heard) else None

    assert await poll_until(stopped, timeout=10)
    unsubscribe()
    mine = [t for t in heard if t.name == program.name]
    assert [t.state for t in mine] == ["STARTING", "RUNNING", "STOPPING", "STOPPED"]
    assert [t.from_state for t in mine[1:]] == ["STARTING", "RUNNING", "STOPPING"]
    assert not any(t.initial for t in mine)


async def test_supervisord_faults_are_named(programs: ProgramService) -> None:
    """An unknown process reads as absent; starting one is the BAD_NAME fault, a 404."""
    assert await programs.client.find_process("no-such-process") is None
    with pytest.raises(SupervisorFault) as fault:
        await programs.client.start("no-such-process")
    assert fault.value.code == Fault.BAD_NAME
    assert fault.value.status == 404
    assert await programs.client.stderr_tail("no-such-process") == ""


async def test_a_killed_supervisord_comes_back_with_the_programs_registered(
    programs: ProgramService, program_config: Config
) -> None:
    """After supervisord is killed, the observer has it revived and converged: the program's
    group is registered again."""
    program = await programs.add(given(name="survivor"))
    pidfile = program_config.state_path / "supervisor" / "supervisord.pid"
    os.kill(int(pidfile.read_text()), signal.SIGKILL)

    async def lost() -> bool | None:
        return True if programs.observer.lost else None

    assert await poll_until(lost, timeout=10)

    async def back() -> bool | None:
        if programs.observer.lost:
            return None
        return True if program.name in await programs.client.processes() else None

    assert await poll_until(back, timeout=20)


async def test_quick_start_launches_lists_and_cleans_up(programs: ProgramService) -> None:
    """A quick-start runs with its own answers, is listed, and is gone once stopped."""
    quick = QuickStartService(programs)
    await quick.open()
    try:
        body = {**sleeper(), "wait": True}
        del body["name"]
        launched = await quick.launch(msgspec.convert(body, EphemeralInput))
        assert launched.status == "running"
        assert launched.pid is not None
        [listed] = await quick.listing()
        assert (listed.temporary_id, listed.status) == (launched.temporary_id, "running")
        assert programs.find(ProgramFilter()) == []
        await quick.stop(launched.temporary_id)
        assert gone(launched.pid)
        with pytest.raises(NotFound):
            await quick.status(launched.temporary_id)
        assert await quick.listing() == []
    finally:
        await quick.close()
