"""A command's lifecycle (hoodyd.terminals.commands): explicit states, moves that refuse what the
table lacks, final states that absorb every later event, over random orders of events."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hoodyd.terminals.commands import FINAL, MOVES, WIRE, Event, IllegalMove, Lifecycle, Phase

# the order a command walks in (a foreign prompt alone steps back, from running to typed)
_RANK = {
    Phase.ACCEPTED: 0,
    Phase.DEFERRED: 0,
    Phase.TYPED: 1,
    Phase.RUNNING: 2,
    Phase.COMPLETED: 3,
    Phase.FAILED: 3,
    Phase.TIMED_OUT: 3,
    Phase.ABORTED: 3,
}

events = st.lists(st.sampled_from(list(Event)), max_size=40)


def _walk(lifecycle: Lifecycle, sequence: list[Event]) -> list[tuple[Phase, Event, Phase | None]]:
    """Apply each event; record (before, event, after) with None after a refused move."""
    steps: list[tuple[Phase, Event, Phase | None]] = []
    for event in sequence:
        before = lifecycle.phase
        try:
            lifecycle.move(event)
        except IllegalMove:
            assert lifecycle.phase == before  # a refused move changes nothing
            steps.append((before, event, None))
            continue
        steps.append((before, event, lifecycle.phase))
    return steps


@given(events, st.sampled_from(list(Phase)))
def test_every_event_order_keeps_to_the_table(sequence: list[Event], start: Phase) -> None:
    """From any state, each event either takes the table's move, is absorbed by a final state,
    or is refused and leaves the state as it was."""
    lifecycle = Lifecycle(start)
    for before, event, after in _walk(lifecycle, sequence):
        if before in FINAL:
            assert after == before
        elif (before, event) in MOVES:
            assert after == MOVES[before, event]
        else:
            assert after is None


@given(events)
def test_a_final_state_is_never_left(sequence: list[Event]) -> None:
    """Once a command is final no event changes its state, and its wait returns."""
    lifecycle = Lifecycle()
    seen_final: Phase | None = None
    for _before, _event, after in _walk(lifecycle, sequence):
        if seen_final is not None:
            assert lifecycle.phase == seen_final
        if after in FINAL:
            seen_final = after
    assert lifecycle.final == (seen_final is not None)
    if lifecycle.final:
        asyncio.run(asyncio.wait_for(lifecycle.wait(), 1))


@given(events)
def test_a_command_only_steps_forward_but_for_a_foreign_prompt(sequence: list[Event]) -> None:
    """States advance accepted/deferred, typed, running, final; only a foreign prompt steps
    back (running to typed), and nothing returns to accepted once typed."""
    lifecycle = Lifecycle()
    for before, event, after in _walk(lifecycle, sequence):
        if after is None or before in FINAL:
            continue
        if event is Event.FOREIGN:
            assert after is Phase.TYPED
        else:
            assert _RANK[after] >= _RANK[before]


def test_the_illegal_moves_are_refused() -> None:
    """A deferred command cannot be typed, a typed one cannot time out its defer or be aborted
    untyped, and an accepted one has no marker to start by."""
    for phase, event in [
        (Phase.DEFERRED, Event.TYPE),
        (Phase.TYPED, Event.TIME_OUT),
        (Phase.TYPED, Event.ABORT),
        (Phase.ACCEPTED, Event.START),
        (Phase.RUNNING, Event.TYPE),
    ]:
        lifecycle = Lifecycle(phase)
        with pytest.raises(IllegalMove):
            lifecycle.move(event)
        assert lifecycle.phase is phase


def test_the_wire_reads_as_before() -> None:
    """The wire status of each state is the one clients knew: queued, pending, running and the
    final ones, an abort reading as failed; a recorded running line resumes as typed."""
    lifecycle = Lifecycle()
    assert lifecycle.status == "queued"
    lifecycle.move(Event.DEFER)
    assert lifecycle.status == "pending"
    lifecycle.move(Event.RELEASE)
    lifecycle.move(Event.TYPE)
    assert lifecycle.status == "running"
    lifecycle.move(Event.START)
    assert lifecycle.status == "running"
    lifecycle.move(Event.COMPLETE)
    assert lifecycle.status == "completed"
    assert WIRE[Phase.ABORTED] == "failed"
    assert Lifecycle.restored("running").phase is Phase.TYPED
    assert Lifecycle.restored("pending").phase is Phase.ACCEPTED
