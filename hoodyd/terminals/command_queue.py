"""A terminal's commands in one owner: which wait in line, which one the worker is on, which
line is in the PTY, which was typed before a restart, which are unfinished (what the holder
keeps for a restart) and which came last (the history).

Each command the queue holds is in exactly one place, and moves only by this table:

    (accepted) ──enqueue──▶ waiting ──take──▶ turn ──type──▶ typed
    (restored) ──resume───▶ resumed ──reach──▶ typed
    turn ──leave──▶ waiting
    waiting | turn | typed | resumed ──end──▶ ended

`waiting` commands are in line for the worker, oldest first. `turn` is the one the worker took
and has not typed yet: it waits for its defer, its parse check and the prompt. `typed` is the
line in the PTY whose prompt completes it: the output is its own. `resumed` was typed before a
restart, and the replayed output has not reached its line yet (`reach` when it does). A
resumed line keeps its place in the worker's line too: the worker takes it as its turn (`take`
leaves it resumed, or typed if the replay reached it first) and waits for its prompt before it
types the next. A worker stopped in the middle of a turn puts that command back at the head of
the line (`leave`). `ended` commands are final and are kept in the history alone, within its
bound; a command ended by other means (its `finish`) is dropped from its place when the queue
next meets it.

The unfinished commands (those in any place but `ended`) are kept in acceptance order: it is
the record a restarted hoodyd resumes from. A move the table lacks is refused with
`IllegalStep`, as a fault of the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Sequence
from enum import StrEnum

from hoodyd.terminals.commands import Command, CommandRecord, Event


class Place(StrEnum):
    WAITING = "waiting"
    TURN = "turn"
    TYPED = "typed"
    RESUMED = "resumed"
    ENDED = "ended"


class Step(StrEnum):
    ENQUEUE = "enqueue"  # accepted: it waits its turn
    RESUME = "resume"  # recorded as typed by the hoodyd before a restart
    TAKE = "take"  # the worker takes it, oldest first
    TYPE = "type"  # its line was written to the PTY
    REACH = "reach"  # the replayed output reached the line typed before the restart
    LEAVE = "leave"  # the worker stopped before it was typed
    END = "end"  # final: completed, failed, timed out or aborted


OPEN = (Place.WAITING, Place.TURN, Place.TYPED, Place.RESUMED)

STEPS: dict[tuple[Place | None, Step], Place] = {
    (None, Step.ENQUEUE): Place.WAITING,
    (None, Step.RESUME): Place.RESUMED,
    (Place.WAITING, Step.TAKE): Place.TURN,
    (Place.RESUMED, Step.TAKE): Place.RESUMED,
    (Place.TYPED, Step.TAKE): Place.TYPED,
    (Place.TURN, Step.TYPE): Place.TYPED,
    (Place.RESUMED, Step.REACH): Place.TYPED,
    (Place.TURN, Step.LEAVE): Place.WAITING,
    **{(place, Step.END): Place.ENDED for place in OPEN},
}


class IllegalStep(RuntimeError):
    """A step the table does not have (a fault of the code that asked for it)."""

    def __init__(self, place: Place | None, step: Step) -> None:
        where = "a command the queue does not hold" if place is None else f"a {place} command"
        super().__init__(f"{where} cannot {step}")
        self.place = place
        self.step = step


class Inconsistent(AssertionError):
    """The queue's structures disagree with the places of its commands."""


class CommandQueue:
    """The commands of one terminal, each in one place (see the module's table)."""

    def __init__(self, history_limit: int) -> None:
        # every unfinished command and its place, in acceptance order
        self._places: dict[Command, Place] = {}
        # the worker's order: the waiting commands, and a resumed line it has not taken
        self._line: deque[Command] = deque()
        self._turn: Command | None = None  # the worker's, until its turn is over
        self._current: Command | None = None  # the typed one
        self._resumed: Command | None = None  # the newest resumed one
        self._history: deque[Command] = deque(maxlen=history_limit)
        self._arrived = asyncio.Event()

    # what is there

    @property
    def current(self) -> Command | None:
        """The typed command: the output is its own until its prompt."""
        return self._current

    @property
    def turn(self) -> Command | None:
        """The command the worker is on (it may have ended; the turn is over with `turn_over`)."""
        return self._turn

    @property
    def turn_waiting(self) -> bool:
        """The worker's command is not typed yet: it waits for its defer, its parse check or
        the prompt, or for the replay to reach a line typed before a restart."""
        turn = self._turn
        return turn is not None and not turn.final and turn is not self._current

    @property
    def queued(self) -> int:
        """How many accepted commands wait, in line or as the worker's untyped turn."""
        waiting = sum(1 for command in self._line if not command.final)
        return waiting + (1 if self.turn_waiting else 0)

    @property
    def history(self) -> Sequence[Command]:
        """The commands accepted last, oldest first, within the history's bound."""
        return self._history

    def recent(self, limit: int) -> list[Command]:
        """The last `limit` commands of the history, oldest first."""
        return list(self._history)[-limit:] if limit else []

    @property
    def unfinished(self) -> list[Command]:
        """The commands not final yet, oldest first."""
        return [command for command in self._places if not command.final]

    def unfinished_for_restart(self) -> list[CommandRecord]:
        """What the holder keeps for a restarted hoodyd: the unfinished commands' records."""
        return [command.record() for command in self.unfinished]

    def place(self, command: Command) -> Place | None:
        """Where `command` is: None when the queue never held it."""
        place = self._places.get(command)
        if place is not None and not command.final:
            return place
        if place is not None or command in self._history:
            return Place.ENDED
        return None

    # arrivals

    def enqueue(self, command: Command) -> None:
        """An accepted command: it waits in line for its turn."""
        self._places[command] = self._target(command, Step.ENQUEUE)
        self._history.append(command)
        self._line.append(command)
        self._arrived.set()

    def resume(self, command: Command) -> None:
        """A command the hoodyd before a restart recorded as typed: its prompt, in the replayed
        output, completes it; the worker waits for that before it types the next."""
        self._places[command] = self._target(command, Step.RESUME)
        self._resumed = command
        self._history.append(command)
        self._line.append(command)
        self._arrived.set()

    # the worker

    async def take_next(self) -> Command:
        """Wait for a command in line and make the oldest the worker's turn."""
        if self._turn is not None:
            raise IllegalStep(self._places.get(self._turn), Step.TAKE)
        while True:
            while not self._line:
                self._arrived.clear()
                await self._arrived.wait()
            command = self._line.popleft()
            if command.final:  # ended by other means while it waited
                self._drop(command)
                continue
            self._places[command] = self._target(command, Step.TAKE)
            self._turn = command
            return command

    def typed(self, command: Command) -> None:
        """The worker wrote the line of its turn to the PTY: the output is its own now."""
        target = self._target(command, Step.TYPE)
        command.lifecycle.move(Event.TYPE)
        self._places[command] = target
        self._current = command

    def turn_over(self) -> None:
        """The worker is done with its turn (ended, or the worker stopped: a command not typed
        yet waits at the head of the line again)."""
        command, self._turn = self._turn, None
        if command is None:
            return
        if command.final:
            self._drop(command)  # ended by other means: it has no place any more
        elif self._places.get(command) is Place.TURN:
            self._places[command] = self._target(command, Step.LEAVE)
            self._line.appendleft(command)
        elif self._places.get(command) is Place.RESUMED:
            # its replay not reached yet: the next worker must wait for it before typing
            self._line.appendleft(command)

    # the replayed output after a restart

    def replay_ends_at(self, ring_end: int) -> None:
        """The holder's output ends at `ring_end`: a resumed line typed at or past it has no
        replayed output before it, so what comes is its own."""
        resumed = self._resumed
        if resumed is not None and resumed.injected_offset >= ring_end:
            self._reach(resumed)

    def output_at(self, offset: int) -> Command | None:
        """The typed command that output at `offset` belongs to; a resumed line becomes the
        typed one once the replay reaches where it was typed."""
        resumed = self._resumed
        if resumed is not None and offset >= resumed.injected_offset:
            self._reach(resumed)
        return self._current

    def _reach(self, command: Command) -> None:
        self._places[command] = self._target(command, Step.REACH)
        self._current, self._resumed = command, None

    # endings

    def complete(self, command: Command, exit_code: int | None) -> None:
        """Its prompt came (or the parse check answered for the shell)."""
        self._end(command, Event.COMPLETE, exit_code, None)

    def fail(self, command: Command, exit_code: int | None, error: str) -> None:
        self._end(command, Event.FAIL, exit_code, error)

    def time_out(self, command: Command, exit_code: int, error: str) -> None:
        """The process its defer waited for was still running at the deadline."""
        self._end(command, Event.TIME_OUT, exit_code, error)

    def abort(self, command: Command, error: str) -> None:
        """Stopped before it was typed; a line typed before a restart and not yet followed is
        past aborting untyped, so it fails."""
        event = Event.ABORT if command.lifecycle.can(Event.ABORT) else Event.FAIL
        self._end(command, event, None, error)

    def fail_all(self, error: str, exit_code: int | None) -> None:
        """Fail every unfinished command (the shell exited): the typed one and a resumed one
        with the shell's status, those not typed without."""
        for command, code in (
            (self._current, exit_code),
            (self._turn, None),
            (self._resumed, exit_code),
        ):
            if command is not None:
                self._end(command, Event.FAIL, code, error)
        for command in [*self._line, *self._places]:
            self._end(command, Event.FAIL, None, error)

    def _end(
        self, command: Command, event: Event, exit_code: int | None, error: str | None
    ) -> None:
        command.finish(event, exit_code, error=error)
        if command in self._places:  # else it ended before: the first final state holds
            self._target(command, Step.END)
            self._drop(command)

    def _drop(self, command: Command) -> None:
        self._places.pop(command, None)
        if command is self._current:
            self._current = None
        if command is self._resumed:
            self._resumed = None
        with contextlib.suppress(ValueError):
            self._line.remove(command)

    def _target(self, command: Command, step: Step) -> Place:
        place = self._places.get(command)
        target = STEPS.get((place, step))
        if target is None:
            raise IllegalStep(place, step)
        return target

    # invariants

    def check(self) -> None:
        """Raise `Inconsistent` unless the structures agree with the places: each unfinished
        command has one place; the line holds the waiting ones in acceptance order (and a
        resumed line the worker has not taken); the turn, the typed and the resumed pointers
        name commands in those places; the history keeps within its bound. (A command ended by
        other means keeps its stale place until the queue meets it; it counts for none.)"""
        order = {command: index for index, command in enumerate(self._places)}
        live = {command: place for command, place in self._places.items() if not command.final}

        def require(holds: bool, what: str) -> None:
            if not holds:
                raise Inconsistent(what)

        require(all(command in order for command in self._line), "the line holds an ended command")
        ranks = [order[command] for command in self._line]
        require(ranks == sorted(ranks), "the line is out of acceptance order")
        require(len(set(self._line)) == len(self._line), "a command is in line twice")
        waiting = {c for c, place in live.items() if place is Place.WAITING}
        in_line = {c for c in self._line if live.get(c) is Place.WAITING}
        require(waiting == in_line, "a waiting command is not in line")
        require(
            all(self._places[c] in (Place.WAITING, Place.RESUMED, Place.TYPED) for c in self._line),
            "the line holds a command the worker took",
        )
        turns = [c for c, place in live.items() if place is Place.TURN]
        require(turns in ([], [self._turn]), "a turn is not the worker's")
        require(self._turn is None or self._turn not in self._line, "the turn is still in line")
        require(
            self._turn is None
            or self._turn.final
            or self._places.get(self._turn) in (Place.TURN, Place.TYPED, Place.RESUMED),
            "the worker's turn has no place",
        )
        typed = [c for c, place in live.items() if place is Place.TYPED]
        current = self._current
        require(typed == ([] if current is None or current.final else [current]), "typed twice")
        require(current is None or current in self._places, "the typed command has no place")
        require(
            self._resumed is None or self._places.get(self._resumed) is Place.RESUMED,
            "the resumed line has another place",
        )
        limit = self._history.maxlen
        require(limit is None or len(self._history) <= limit, "the history is past its bound")
