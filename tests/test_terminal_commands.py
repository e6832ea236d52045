"""A command's lifecycle (hoodyd.terminals.commands): explicit states, moves that refuse what the
table lacks, final states that absorb every later event, over random orders of events; and a
terminal's commands in one owner (hoodyd.terminals.command_queue): one place each, over random
orders of operations."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hoodyd.terminals.command_queue import STEPS, CommandQueue, IllegalStep, Place, Step
from hoodyd.terminals.commands import (
    FINAL,
    MOVES,
    WIRE,
    Command,
    CommandRecord,
    Event,
    IllegalMove,
    Lifecycle,
    Phase,
)

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
    seen = [lifecycle.status]
    for event in (Event.DEFER, Event.RELEASE, Event.TYPE, Event.START, Event.COMPLETE):
        lifecycle.move(event)
        seen.append(lifecycle.status)
    assert seen == ["queued", "pending", "queued", "running", "running", "completed"]
    assert WIRE[Phase.ABORTED] == "failed"
    assert Lifecycle.restored("running").phase is Phase.TYPED
    assert Lifecycle.restored("pending").phase is Phase.ACCEPTED


# --- a terminal's commands in one owner (hoodyd.terminals.command_queue) ---

_OPEN = (Place.WAITING, Place.TURN, Place.TYPED, Place.RESUMED)
_OPERATIONS = [
    "enqueue",
    "enqueue_deferred",
    "resume",
    "take",
    "type",
    "output",
    "replay_end",
    "complete",
    "complete_untyped",
    "time_out",
    "fail",
    "abort",
    "end_elsewhere",
    "fail_all",
    "turn_over",
]
# the worker's steps come more often than the endings that cut a run short
_WEIGHTED = [*_OPERATIONS, *["take", "type", "output", "complete", "turn_over"] * 3]
operations = st.lists(
    st.tuples(st.sampled_from(_WEIGHTED), st.integers(min_value=0, max_value=60)),
    min_size=10,
    max_size=80,
)


def _command(number: int) -> Command:
    return Command(
        id=number, terminal_id=7, command=f"echo {number}", line=f"echo {number}", output_limit=64
    )


def _typed_before_restart(number: int, offset: int) -> Command:
    record = CommandRecord(
        id=number,
        command=f"echo {number}",
        line=f"echo {number}",
        output_limit=64,
        shell_kind="bash",
        status="running",
        accepted_at=0.0,
        injected_offset=offset,
        mark=number,
    )
    return Command.from_record(record, 7)


class _Driver:
    """Applies operations to a queue the way a session does, and keeps what the queue must
    agree with: every command accepted, in order, and the ones the worker took."""

    def __init__(self, history_limit: int) -> None:
        self.queue = CommandQueue(history_limit)
        self.history_limit = history_limit
        self.accepted: list[Command] = []
        self.taken: list[Command] = []

    def pick(self, number: int) -> Command | None:
        return self.accepted[number % len(self.accepted)] if self.accepted else None

    async def apply(self, name: str, number: int) -> None:
        queue = self.queue
        turn = queue.turn
        if name in ("enqueue", "enqueue_deferred"):
            command = _command(len(self.accepted) + 1)
            if name == "enqueue_deferred":
                command.lifecycle.move(Event.DEFER)
            queue.enqueue(command)
            self.accepted.append(command)
        elif name == "resume" and not self.accepted:
            # a restored session: the line typed before the restart is the oldest
            command = _typed_before_restart(1, number)
            queue.resume(command)
            self.accepted.append(command)
        elif name == "take" and turn is None and self._untaken():
            command = await asyncio.wait_for(queue.take_next(), 1)
            assert command is self._untaken()[0]  # the oldest that did not end waiting
            self.taken.append(command)
        elif (
            name == "type"
            and turn is not None
            and queue.place(turn) is Place.TURN
            # the worker types only at a prompt, and that prompt completes a line typed before
            and (queue.current is None or queue.current.final)
        ):
            if turn.lifecycle.phase is Phase.DEFERRED:
                turn.lifecycle.move(Event.RELEASE)
            queue.typed(turn)
            assert queue.current is turn
        elif name == "output":
            current = queue.output_at(number)
            assert current is queue.current
        elif name == "replay_end":
            queue.replay_ends_at(number)
        elif name == "complete" and queue.current is not None:
            queue.complete(queue.current, number)
        elif name == "complete_untyped" and turn is not None and turn.lifecycle.can(Event.COMPLETE):
            if turn.lifecycle.phase is Phase.ACCEPTED:
                queue.complete(turn, 2)  # the parse check answered for the shell
        elif name == "time_out" and turn is not None and turn.lifecycle.can(Event.TIME_OUT):
            queue.time_out(turn, 124, "still running")
        elif name == "fail" and (chosen := self.pick(number)) is not None:
            queue.fail(chosen, number, "the shell was replaced")
        elif (
            name == "abort"
            and (chosen := self.pick(number)) is not None
            and chosen is not queue.current
        ):
            queue.abort(chosen, "aborted before it ran")
            assert chosen.final
        elif name == "end_elsewhere" and (chosen := self.pick(number)) is not None:
            chosen.finish(Event.FAIL, None, error="aborted: the terminal is gone")
        elif name == "fail_all":
            queue.fail_all("the shell exited", number)
            assert queue.unfinished == []
        elif name == "turn_over" and turn is not None:
            queue.turn_over()
            # stopped before it was typed, or before a restart's replay reached it: in line again
            if queue.place(turn) in (Place.WAITING, Place.RESUMED):
                self.taken.remove(turn)

    def _untaken(self) -> list[Command]:
        return [c for c in self.accepted if not c.final and c not in self.taken]

    def agree(self) -> None:
        queue = self.queue
        queue.check()
        unfinished = [command for command in self.accepted if not command.final]
        assert queue.unfinished == unfinished
        records = queue.unfinished_for_restart()
        assert [record.id for record in records] == [command.id for command in unfinished]
        assert list(queue.history) == self.accepted[-self.history_limit :]
        assert queue.recent(2) == self.accepted[-self.history_limit :][-2:]
        for command in self.accepted:
            place = queue.place(command)
            if command.final:
                # ended: in the history, or past its bound and forgotten
                assert place is Place.ENDED or (place is None and command not in queue.history)
            else:
                assert place in _OPEN
        turn = queue.turn
        waiting_turn = turn is not None and not turn.final and turn is not queue.current
        assert queue.queued == len(self._untaken()) + waiting_turn
        current = queue.current
        # a typed line ended by other means stays current until its turn is over
        assert current is None or queue.place(current) is Place.TYPED or current.final


@settings(max_examples=300, deadline=None)
@given(operations, st.integers(min_value=1, max_value=5))
def test_a_terminals_commands_keep_one_place_each(
    sequence: list[tuple[str, int]], history_limit: int
) -> None:
    """Over any order of arrivals, turns, typed lines, replays and endings, every unfinished
    command is in exactly one place, the unfinished ones are exactly the non-final ones in
    acceptance order, the worker takes the oldest waiting one, and the history keeps the last
    ones in order within its bound."""

    async def scenario() -> None:
        driver = _Driver(history_limit)
        for name, number in sequence:
            await driver.apply(name, number)
            driver.agree()

    asyncio.run(scenario())


def test_the_queue_refuses_steps_its_table_lacks() -> None:
    """A waiting command cannot be typed before the worker takes it, a command cannot be
    accepted twice, and a refused step changes nothing."""
    queue = CommandQueue(10)
    command = _command(1)
    queue.enqueue(command)
    with pytest.raises(IllegalStep):
        queue.typed(command)
    with pytest.raises(IllegalStep):
        queue.enqueue(command)
    assert queue.place(command) is Place.WAITING
    assert command.lifecycle.phase is Phase.ACCEPTED
    queue.check()
    assert all((place, Step.END) in STEPS for place in _OPEN) and not any(
        place is Place.ENDED for place, _step in STEPS
    )


def test_a_shell_exit_fails_each_place_with_the_status_it_reported() -> None:
    """When the shell exits, the typed line fails with the shell's status, the commands not
    typed without one, and nothing stays unfinished or in line."""

    async def scenario() -> None:
        queue = CommandQueue(10)
        first, second, third = _command(1), _command(2), _command(3)
        for command in (first, second, third):
            queue.enqueue(command)
        taken = await asyncio.wait_for(queue.take_next(), 1)
        queue.typed(taken)
        queue.fail_all("the shell exited (status 3)", 3)
        queue.check()
        assert (first.status, first.exit_code) == ("failed", 3)
        assert [(c.status, c.exit_code) for c in (second, third)] == [("failed", None)] * 2
        assert queue.unfinished == [] and queue.queued == 0 and queue.current is None

    asyncio.run(scenario())


def test_a_line_typed_before_a_restart_is_its_output_once_the_replay_reaches_it() -> None:
    """A resumed line takes no output from before where it was typed, becomes the typed one
    when the replay reaches that offset, and holds the worker's turn until its prompt."""

    async def scenario() -> None:
        queue = CommandQueue(10)
        resumed = _typed_before_restart(1, 100)
        queue.resume(resumed)
        later = _command(2)
        queue.enqueue(later)
        queue.replay_ends_at(200)  # the holder has output past where the line was typed
        assert await asyncio.wait_for(queue.take_next(), 1) is resumed
        assert queue.queued == 2  # the resumed turn and the one in line
        assert queue.output_at(99) is None
        assert queue.output_at(100) is resumed
        assert queue.place(resumed) is Place.TYPED and not queue.turn_waiting
        queue.complete(resumed, 0)
        queue.turn_over()
        assert await asyncio.wait_for(queue.take_next(), 1) is later
        queue.check()
        assert [record.id for record in queue.unfinished_for_restart()] == [2]

    asyncio.run(scenario())
