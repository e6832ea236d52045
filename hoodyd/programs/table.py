"""The programs in memory, and which program owns each supervisord process name.

The store on disk is written through; this table is the copy every read is answered from. The
ownership index maps a supervisord name (`web`, `web_9300`) to its program and port: standard
programs by their name, port instances by the conf files registered for them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import msgspec

from hoodyd.errors import Conflict, NotFound, Reason
from hoodyd.programs import conf
from hoodyd.programs.rules import MAX_PROGRAM_ID
from hoodyd.schemas.daemon import Program

Owner = tuple[int, int | None]  # (program id, port); port None for a standard program


class ProgramFilter(msgspec.Struct, kw_only=True):
    hoody_kit: bool | None = None
    lazy_load: bool | None = None
    enabled: bool | None = None
    boot: bool | None = None
    port: int | None = None
    port_from: int | None = None
    port_to: int | None = None

    def matches(self, program: Program) -> bool:
        for field in ("hoody_kit", "lazy_load", "enabled", "boot"):
            wanted = getattr(self, field)
            if wanted is not None and getattr(program, field) != wanted:
                return False
        span = program.port_range
        if self.port is not None and (span is None or not span.start <= self.port <= span.end):
            return False
        if self.port_from is not None and self.port_to is not None:
            return span is not None and span.start <= self.port_to and span.end >= self.port_from
        return True


class ProgramTable:
    def __init__(self) -> None:
        self._programs: dict[int, Program] = {}
        self._owners: dict[str, Owner] = {}
        # the highest id ever given (the store's counter): ids are never given twice
        self.last_id = 0

    # ---- programs ----------------------------------------------------------------------

    def get(self, program_id: int) -> Program:
        program = self._programs.get(program_id)
        if program is None:
            raise NotFound(
                f"Program with ID {program_id} not found", reason=Reason.PROGRAM_NOT_FOUND
            )
        return program

    def find(self, where: ProgramFilter) -> list[Program]:
        return [p for p in self._programs.values() if where.matches(p)]

    def programs(self) -> list[Program]:
        return list(self._programs.values())

    def __contains__(self, program_id: int) -> bool:
        return program_id in self._programs

    def put(self, program: Program) -> None:
        self._programs[program.id] = program
        self.last_id = max(self.last_id, program.id)

    def drop(self, program_id: int) -> None:
        del self._programs[program_id]

    def replace(self, programs: Iterable[Program]) -> None:
        self._programs = {program.id: program for program in programs}
        self.last_id = max(self.last_id, max(self._programs, default=0))

    def next_id(self) -> int:
        """One more than the highest id ever given: an id, its logs and its files are never
        those of a removed program. Once an id at the bound was given (a caller may name any
        id), the lowest id no program has: `rm` took the removed one's logs and files."""
        following = self.last_id + 1
        if following <= MAX_PROGRAM_ID:
            return following
        free = next((i for i in range(1, MAX_PROGRAM_ID + 1) if i not in self._programs), None)
        if free is None:
            raise Conflict(
                f"every program id up to {MAX_PROGRAM_ID} is in use", reason=Reason.ID_IN_USE
            )
        return free

    # ---- ownership of supervisord names ------------------------------------------------

    def reindex(self, registered: Mapping[str, Owner]) -> None:
        """Rebuild the index from the programs and the groups registered for them
        (`Registry.owned_groups`); groups of programs no longer here are left out."""
        owners: dict[str, Owner] = {
            conf.instance_name(program, None): (program.id, None)
            for program in self._programs.values()
            if program.port_range is None
        }
        owners.update(
            (name, owner) for name, owner in registered.items() if owner[0] in self._programs
        )
        self._owners = owners

    def index(self, program_id: int, registered: Mapping[str, Owner]) -> None:
        """Rebuild the index of one program (its groups in `registered`), leaving every
        other program's entries as they are."""
        for name in [n for n, owner in self._owners.items() if owner[0] == program_id]:
            del self._owners[name]
        program = self._programs.get(program_id)
        if program is None:
            return
        if program.port_range is None:
            self._owners[conf.instance_name(program, None)] = (program_id, None)
        self._owners.update(
            (name, owner) for name, owner in registered.items() if owner[0] == program_id
        )

    def own(self, name: str, program_id: int, port: int | None) -> None:
        """Record an instance registered on demand."""
        self._owners[name] = (program_id, port)

    def owner(self, name: str) -> tuple[Program, int | None] | None:
        """The program (and port) a supervisord process belongs to, if it is one of ours."""
        owner = self._owners.get(name)
        program = self._programs.get(owner[0]) if owner else None
        if owner is None or program is None:
            return None
        return program, owner[1]

    def instances_of(self, program_id: int) -> list[tuple[int, str]]:
        """(port, supervisord name) of each registered port instance, in port order."""
        return sorted(
            (port, name)
            for name, (owner, port) in self._owners.items()
            if owner == program_id and port is not None
        )
