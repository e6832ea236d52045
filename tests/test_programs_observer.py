"""The observer's one record per process: events and polls folded into transitions, published to
subscribers, with an event newer than a poll's answer winning over it."""

from __future__ import annotations

import time

from hoodyd.programs.events import ProcessEvent
from hoodyd.programs.observer import Observer, Transition
from hoodyd.programs.supervisor_client import ProcessInfo, SupervisorClient
from hoodyd.schemas.daemon import ProcessState
from tests.conftest import wait_until


async def nothing() -> None:
    return None


def observer() -> Observer:
    """An observer that is only fed by hand (its client is never asked)."""
    return Observer(
        SupervisorClient("/nonexistent/supervisor.sock"),
        interval=60,
        events_socket=None,
        revive=nothing,
        converge=nothing,
    )


def info(name: str, state: str, pid: int = 0) -> ProcessInfo:
    return ProcessInfo(
        name=name, group=name, state=0, statename=state, pid=pid, start=0, stop=0, now=0,
        exitstatus=0, spawnerr="", description="", stdout_logfile="", stderr_logfile="",
    )


def event(
    name: str, state: ProcessState, pid: int | None = None, from_state: ProcessState | None = None
) -> ProcessEvent:
    return ProcessEvent(
        process_name=name, group_name=name, state=state, pid=pid, from_state=from_state
    )


def test_the_first_poll_is_a_starting_point_and_later_changes_are_transitions() -> None:
    """What the first poll finds is published as initial; a later poll's change is not."""
    watching = observer()
    heard: list[Transition] = []
    watching.subscribe(heard.append)
    watching.record([info("web", "RUNNING", 100)], time.monotonic())
    watching.record([info("web", "RUNNING", 100)], time.monotonic())
    watching.record([info("web", "STOPPED")], time.monotonic())
    assert heard == [
        Transition(name="web", state="RUNNING", from_state=None, pid=100, initial=True),
        Transition(name="web", state="STOPPED", from_state="RUNNING", pid=None),
    ]
    assert watching.running_pid("web") is None


def test_an_event_newer_than_a_poll_wins() -> None:
    """A poll asked for before an event arrived does not undo what the event reported."""
    watching = observer()
    asked_at = time.monotonic()
    watching.on_event(event("web", "RUNNING", pid=200, from_state="STARTING"))
    watching.record([info("web", "STARTING")], asked_at)
    assert watching.running_pid("web") == 200
    watching.record([info("web", "STOPPED")], time.monotonic())
    assert watching.running_pid("web") is None


def test_only_a_running_process_has_a_pid_and_repeats_are_not_published() -> None:
    """A repeated state is no transition; a STOPPING pid is reported but not kept as running."""
    watching = observer()
    heard: list[Transition] = []
    watching.subscribe(heard.append)
    watching.on_event(event("web", "RUNNING", pid=300, from_state="STARTING"))
    watching.on_event(event("web", "RUNNING", pid=300, from_state="STARTING"))
    watching.on_event(event("web", "STOPPING", pid=300, from_state="RUNNING"))
    assert [(t.state, t.pid) for t in heard] == [("RUNNING", 300), ("STOPPING", 300)]
    assert watching.running_pid("web") is None


def test_a_failing_subscriber_does_not_silence_the_others() -> None:
    """One subscriber raising leaves the next one hearing, and can unsubscribe."""
    watching = observer()
    heard: list[str] = []

    def broken(_transition: Transition) -> None:
        raise RuntimeError("subscriber bug")

    watching.subscribe(broken)
    unsubscribe = watching.subscribe(lambda t: heard.append(t.state))
    watching.on_event(event("web", "STARTING"))
    unsubscribe()
    watching.on_event(event("web", "RUNNING", pid=1))
    assert heard == ["STARTING"]


def serial_event(
    name: str, state: ProcessState, serial: int, pid: int | None = None
) -> ProcessEvent:
    return ProcessEvent(
        process_name=name, group_name=name, state=state, pid=pid, serial=serial, source=4242
    )


def test_events_arriving_out_of_order_leave_the_newest_state() -> None:
    """An event numbered before the one recorded (a datagram overtaken by a later one) changes
    nothing: the status read from memory stays the newest state."""
    watching = observer()
    heard: list[str] = []
    watching.subscribe(lambda t: heard.append(t.state))
    watching.on_event(serial_event("web", "RUNNING", 12, pid=500))
    watching.on_event(serial_event("web", "STARTING", 11))
    watching.on_event(serial_event("web", "STOPPED", 10))
    assert heard == ["RUNNING"]
    assert watching.running_pid("web") == 500
    shown = watching.processes()["web"]
    assert (shown.statename, shown.pid) == ("RUNNING", 500)
    watching.on_event(serial_event("web", "STOPPING", 13, pid=500))
    assert watching.processes()["web"].statename == "STOPPING"


def test_a_restarted_supervisord_numbers_events_anew() -> None:
    """Serials are compared only between events of the same supervisord: a new one's low
    serials are newer than the dead one's high ones."""
    watching = observer()
    watching.on_event(serial_event("web", "RUNNING", 900, pid=600))
    restarted = ProcessEvent(
        process_name="web", group_name="web", state="STARTING", serial=3, source=4243
    )
    watching.on_event(restarted)
    assert watching.processes()["web"].statename == "STARTING"


def test_status_comes_from_memory_and_a_removed_group_is_forgotten() -> None:
    """`processes()` shows what events and polls reported, with the running start time; a
    process the next poll lacks (its group removed) is gone from it."""
    watching = observer()
    watching.record([info("web", "STOPPED"), info("db", "STOPPED")], time.monotonic())
    before = int(time.time())
    watching.on_event(serial_event("web", "RUNNING", 1, pid=700))
    shown = watching.processes()
    assert shown["web"].statename == "RUNNING" and shown["web"].start >= before
    assert shown["db"].statename == "STOPPED"
    watching.record([info("web", "RUNNING", 700)], time.monotonic())
    assert set(watching.processes()) == {"web"}


def test_a_start_answered_running_is_not_undone_by_an_event_still_under_way() -> None:
    """A direct read of RUNNING (what a start with wait answers) holds against the STARTING
    datagram sent before it; the events after it continue from there."""
    watching = observer()
    watching.record([info("web", "STOPPED")], time.monotonic())
    asked = time.monotonic()
    watching.note(info("web", "RUNNING", 300), "web", asked)
    # the datagram lands after the read was answered: the clock has moved past it
    assert wait_until(lambda: time.monotonic() > asked, timeout=1, interval=0.001)
    watching.on_event(event("web", "STARTING", from_state="STOPPED"))
    assert watching.running_pid("web") == 300
    assert watching.processes()["web"].statename == "RUNNING"
    watching.on_event(event("web", "RUNNING", 300, from_state="STARTING"))
    watching.on_event(event("web", "EXITED", from_state="RUNNING"))
    assert watching.processes()["web"].statename == "EXITED"
    assert watching.running_pid("web") is None
