"""The terminal service's books: its sessions by terminal id (with a lock per id, held while a
terminal is started or adopted, and the next free ephemeral id) and its commands by id (ids
given in turn, finished results kept within a bound)."""

from __future__ import annotations

import asyncio
from collections import OrderedDict

from hoodyd.errors import Conflict, Reason
from hoodyd.schemas.terminal import EPHEMERAL_FIRST, TERMINAL_ID_MAX
from hoodyd.terminals.session import Command, TerminalSession
from hoodyd.terminals.validation import COMMAND_ID_MAX


class SessionTable(dict[int, TerminalSession]):
    """The sessions by terminal id."""

    def __init__(self) -> None:
        super().__init__()
        self._locks: dict[int, asyncio.Lock] = {}
        self._next_ephemeral = EPHEMERAL_FIRST

    def lock(self, terminal_id: int) -> asyncio.Lock:
        """Held while terminal `terminal_id` is started or adopted: a second request for the
        id waits for the first."""
        lock = self._locks.get(terminal_id)
        if lock is None:
            lock = self._locks[terminal_id] = asyncio.Lock()
        return lock

    def allocate_ephemeral_id(self) -> int:
        """The next ephemeral id no session holds, in turn through the ephemeral range."""
        span = TERMINAL_ID_MAX - EPHEMERAL_FIRST + 1
        for _ in range(span):
            candidate = self._next_ephemeral
            self._next_ephemeral = EPHEMERAL_FIRST + (candidate + 1 - EPHEMERAL_FIRST) % span
            if candidate not in self:
                return candidate
        raise Conflict("No free ephemeral terminal id", reason=Reason.NO_FREE_TERMINAL_ID)


class CommandBook:
    """Commands by id: the unfinished ones all, the finished ones up to `kept`."""

    def __init__(self, kept: int) -> None:
        self._kept = kept
        self._commands: OrderedDict[int, Command] = OrderedDict()
        self._next_id = 1

    def get(self, command_id: int) -> Command | None:
        return self._commands.get(command_id)

    def allocate_id(self) -> int:
        """The next id no command holds; else the first whose command is final (its result
        is forgotten); a Conflict when every id is taken by an unfinished command."""
        fallback = None
        for _ in range(COMMAND_ID_MAX):
            candidate = self._next_id
            self._next_id = candidate % COMMAND_ID_MAX + 1
            existing = self._commands.get(candidate)
            if existing is None:
                return candidate
            if fallback is None and existing.final:
                fallback = candidate
        if fallback is None:
            raise Conflict("No free command id", reason=Reason.NO_FREE_COMMAND_ID)
        return fallback

    def remember(self, command: Command) -> None:
        """Keep `command` (the newest); forget the oldest finished ones past the bound."""
        self._commands.pop(command.id, None)
        self._commands[command.id] = command
        excess = len(self._commands) - self._kept
        if excess > 0:
            for key in [k for k, c in self._commands.items() if c.final][:excess]:
                del self._commands[key]

    def adopted(self, command: Command) -> None:
        """An unfinished command of an adopted session: new ids follow it rather than start
        over at 1."""
        self.remember(command)
        self._next_id = max(self._next_id, command.id % COMMAND_ID_MAX + 1)
