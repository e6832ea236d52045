"""The program table's indexes stay in step with every change, and one program's status and one
process's event read that program's entries only, however many programs there are."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hoodyd.programs import conf
from hoodyd.programs.dependencies import dependents_of, exit_targets
from hoodyd.programs.events import ProcessEvent
from hoodyd.programs.observer import Observer
from hoodyd.programs.status import StatusReader
from hoodyd.programs.supervisor_client import ProcessInfo
from hoodyd.programs.table import Owner, ProgramTable
from hoodyd.schemas.daemon import Dependency, PortRange, PortRangeStatus, ProcessStatus, Program
from tests.test_programs_observer import observer

NAMES = [f"p{i}" for i in range(8)]
PORTS = range(9000, 9004)


class Counted(dict[Any, Any]):
    """A dict that counts every walk over its entries (the hook the structural tests read)."""

    walks = 0

    def __iter__(self) -> Iterator[Any]:
        Counted.walks += 1
        return super().__iter__()

    def items(self) -> Any:
        Counted.walks += 1
        return super().items()

    def values(self) -> Any:
        Counted.walks += 1
        return super().values()

    def keys(self) -> Any:
        Counted.walks += 1
        return super().keys()


def program(
    program_id: int,
    name: str,
    *,
    ranged: bool = False,
    depends_on: list[Dependency] | None = None,
) -> Program:
    return Program(
        id=program_id,
        name=name,
        command="/bin/sleep 300",
        user="nobody",
        port_range=PortRange(start=PORTS[0], end=PORTS[-1]) if ranged else None,
        depends_on=depends_on,
    )


def running(name: str, started: int) -> ProcessInfo:
    """A RUNNING process whose pid is this test's own (alive, started before `started`)."""
    return ProcessInfo(
        name=name, group=name, state=20, statename="RUNNING", pid=os.getpid(), start=started,
        stop=0, now=started, exitstatus=0, spawnerr="", description="", stdout_logfile="",
        stderr_logfile="",
    )


# ---- the indexes against a brute-force scan -----------------------------------------------

dependencies = st.lists(
    st.builds(
        Dependency,
        program=st.sampled_from(NAMES),
        condition=st.sampled_from(["started", "ready", "exited_ok"]),
    ),
    max_size=3,
)
steps = st.lists(
    st.one_of(
        st.tuples(
            st.just("put"),
            st.integers(1, 6),
            st.sampled_from(NAMES),
            st.booleans(),
            dependencies,
        ),
        st.tuples(st.just("drop"), st.integers(1, 6)),
        st.tuples(
            st.just("index"), st.integers(1, 6), st.lists(st.sampled_from(list(PORTS)))
        ),
        st.tuples(st.just("own"), st.integers(1, 6), st.sampled_from(list(PORTS))),
        st.tuples(
            st.just("reindex"),
            st.lists(st.tuples(st.integers(1, 7), st.sampled_from(list(PORTS)))),
        ),
    ),
    max_size=40,
)


def _owners_model(
    model: dict[str, Owner], table: ProgramTable, program_id: int, registered: dict[str, Owner]
) -> None:
    """What `index` did before the indexes: every entry of the program dropped by a scan,
    then its standard name and its groups entered."""
    for name in [n for n, owner in model.items() if owner[0] == program_id]:
        del model[name]
    if program_id not in table:
        return
    found = table.get(program_id)
    if found.port_range is None:
        model[conf.instance_name(found, None)] = (program_id, None)
    model.update((n, o) for n, o in registered.items() if o[0] == program_id)


def _groups(table: ProgramTable, program_id: int, ports: list[int]) -> dict[str, Owner]:
    if program_id not in table:
        return {f"gone_{port}": (program_id, port) for port in ports}
    return {conf.instance_name(table.get(program_id), port): (program_id, port) for port in ports}


def _check(table: ProgramTable, model: dict[str, Owner], ids: range) -> None:
    everyone = table.programs()
    live = {n: o for n, o in model.items() if o[0] in table}
    for name, (program_id, port) in live.items():
        assert table.owner(name) == (table.get(program_id), port)
    for name in set(model) - set(live):
        assert table.owner(name) is None
    for program_id in ids:
        mine = {n: port for n, (owner, port) in model.items() if owner == program_id}
        assert table.names_of(program_id) == mine
        assert table.instances_of(program_id) == sorted(
            (port, n) for n, port in mine.items() if port is not None
        )
    assert table.exit_targets() == exit_targets(everyone)
    for name in NAMES:
        assert table.named(name) == next((p for p in everyone if p.name == name), None)
    for each in everyone:
        assert {p.id for p in table.dependents_of(each)} == {
            p.id for p in dependents_of(each, everyone)
        }
        others = [p for p in everyone if p.id != each.id]
        assert table.exit_targets_after(each.id, None) == exit_targets(others)
        job = Dependency(program="p0", condition="exited_ok")
        changed = program(each.id, each.name, depends_on=[job])
        assert table.exit_targets_after(each.id, changed) == exit_targets([*others, changed])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps)
def test_indexes_answer_as_a_scan_would_after_any_changes(ops: list[tuple[Any, ...]]) -> None:
    """After any sequence of adds, edits, removes, registrations and on-demand instances, every
    indexed answer (owner, names, instances, one-shot jobs, dependents, by name) is what a scan
    over every program gives."""
    table = ProgramTable()
    model: dict[str, Owner] = {}
    for op in ops:
        kind = op[0]
        if kind == "put":
            _, program_id, name, ranged, depends = op
            holder = table.named(name)
            if holder is not None and holder.id != program_id:
                continue  # names are unique (the rules refuse a second one)
            table.put(program(program_id, name, ranged=ranged, depends_on=depends or None))
            _owners_model(model, table, program_id, {})
            table.index(program_id, {})
        elif kind == "drop":
            if op[1] in table:
                table.drop(op[1])
                _owners_model(model, table, op[1], {})
                table.index(op[1], {})
        elif kind == "index":
            registered = _groups(table, op[1], op[2])
            _owners_model(model, table, op[1], registered)
            table.index(op[1], registered)
        elif kind == "own":
            if op[1] in table:
                name = conf.instance_name(table.get(op[1]), op[2])
                model[name] = (op[1], op[2])
                table.own(name, op[1], op[2])
        else:
            registered = {}
            for program_id, port in op[1]:
                registered.update(_groups(table, program_id, [port]))
            model.clear()
            for each in table.programs():
                if each.port_range is None:
                    model[conf.instance_name(each, None)] = (each.id, None)
            model.update((n, o) for n, o in registered.items() if o[0] in table)
            table.reindex(registered)
        _check(table, model, range(1, 8))


# ---- one program among a thousand ----------------------------------------------------------


def thousand() -> tuple[ProgramTable, Observer, StatusReader, int]:
    """1000 programs (every other one a port range with two instances registered), each
    process RUNNING as the first poll found it, and a status reader over them."""
    table = ProgramTable()
    started = int(time.time())
    infos = []
    registered: dict[str, Owner] = {}
    for program_id in range(1, 1001):
        ranged = program_id % 2 == 0
        each = program(program_id, f"prog{program_id}", ranged=ranged)
        table.put(each)
        if ranged:
            for port in PORTS[:2]:
                registered[conf.instance_name(each, port)] = (program_id, port)
                infos.append(running(conf.instance_name(each, port), started))
        else:
            infos.append(running(conf.instance_name(each, None), started))
    table.reindex(registered)
    watching = observer()
    watching.record(infos, time.monotonic())
    reader = StatusReader(watching.client, table, watching)
    return table, watching, reader, started


def hook(table: ProgramTable, watching: Observer) -> None:
    """Count every walk over the table's and the observer's entries from now on."""
    for owner, field in (
        (table, "_programs"),
        (table, "_owners"),
        (table, "_names"),
        (table, "_by_name"),
        (table, "_dependents"),
        (watching, "_records"),
    ):
        setattr(owner, field, Counted(getattr(owner, field)))
    Counted.walks = 0


async def test_one_status_among_a_thousand_programs_visits_that_program_only() -> None:
    """A status of one standard program, of a port-range program and of one of its instances
    among 1000 programs walks over no table or observer entries: it looks its own up."""
    table, watching, reader, _ = thousand()
    hook(table, watching)
    standard = await reader.one(table.get(501), port=None, with_stats=False)
    ranged = await reader.one(table.get(500), port=None, with_stats=False)
    instance = await reader.one(table.get(500), port=PORTS[1], with_stats=False)
    assert Counted.walks == 0
    assert isinstance(standard.status, ProcessStatus)
    assert (standard.status.status, standard.status.pid) == ("RUNNING", os.getpid())
    assert isinstance(ranged.status, PortRangeStatus)
    assert [i.port for i in ranged.status.instances] == list(PORTS[:2])
    assert ranged.status.running_instances == 2
    assert isinstance(instance.status, ProcessStatus)
    assert instance.status.instance_name == f"prog500_{PORTS[1]}"
    assert instance.status.status == "RUNNING"


async def test_one_process_event_among_a_thousand_is_handled_without_visiting_the_others() -> None:
    """An event of one process among 1000 programs' processes, its owner and the status it
    leads to walk over no table or observer entries; the list with status still shows all."""
    table, watching, reader, _ = thousand()
    heard = []
    watching.subscribe(lambda change: heard.append((change, table.owner(change.name))))
    hook(table, watching)
    watching.on_event(
        ProcessEvent(
            process_name="prog7", group_name="prog7", state="STOPPING", pid=os.getpid(),
            from_state="RUNNING",
        )
    )
    shown = watching.process("prog7")
    answer = await reader.one(table.get(7), port=None, with_stats=False)
    assert Counted.walks == 0
    assert [(c.name, c.state, owner) for c, owner in heard] == [
        ("prog7", "STOPPING", (table.get(7), None))
    ]
    assert shown is not None and shown.statename == "STOPPING"
    assert isinstance(answer.status, ProcessStatus) and answer.status.status == "STOPPING"
    listed = await reader.statuses(table.programs(), with_stats=False)
    assert len(listed) == 1000
    assert [s.status for s in listed if isinstance(s, ProcessStatus)].count("STOPPING") == 1
