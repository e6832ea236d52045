"""The observer's one record per process: events and polls folded into transitions, published to
subscribers, with an event newer than a poll's answer winning over it."""

from __future__ import annotations

import time

from hoodyd.programs.events import ProcessEvent
from hoodyd.programs.observer import Observer, Transition
from hoodyd.programs.supervisor_client import ProcessInfo, SupervisorClient
from hoodyd.schemas.daemon import ProcessState


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
