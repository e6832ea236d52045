"""The programs in memory, and which program owns each supervisord process name.

The store on disk is written through; this table is the copy every read is answered from. The
ownership index maps a supervisord name (`web`, `web_9300`) to its program and port: standard
programs by their name, port instances by the conf files registered for them.

Every question about one program is a lookup, whatever the number of programs: besides the
programs by id, the table keeps, in step with every change, each program's supervisord names
(the ownership index turned around), the programs by name, the programs that name each program
in `depends_on`, and how many wait on each name with `exited_ok` (the one-shot jobs). Only the
whole-table operations (`replace`, `reindex`) rebuild them.
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
        # the ownership index by program: program id -> {supervisord name: port}
        self._names: dict[int, dict[str, int | None]] = {}
        self._by_name: dict[str, int] = {}  # program name -> id
        # program name -> ids of the programs that name it in depends_on
        self._dependents: dict[str, set[int]] = {}
        # program name -> how many programs wait on it with exited_ok (one-shot jobs)
        self._waited: dict[str, int] = {}
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

    def __len__(self) -> int:
        return len(self._programs)

    def named(self, name: str) -> Program | None:
        """The program called `name`, if any."""
        program_id = self._by_name.get(name)
        return self._programs.get(program_id) if program_id is not None else None

    def put(self, program: Program) -> None:
        previous = self._programs.get(program.id)
        if previous is not None:
            self._unrelate(previous)
        self._programs[program.id] = program
        self._relate(program)
        self.last_id = max(self.last_id, program.id)

    def drop(self, program_id: int) -> None:
        self._unrelate(self._programs.pop(program_id))

    def replace(self, programs: Iterable[Program]) -> None:
        self._programs = {program.id: program for program in programs}
        self._by_name, self._dependents, self._waited = {}, {}, {}
        for program in self._programs.values():
            self._relate(program)
        self.last_id = max(self.last_id, max(self._programs, default=0))

    def _relate(self, program: Program) -> None:
        """Enter the program in the name, dependents and one-shot indexes."""
        self._by_name[program.name] = program.id
        for dependency in program.depends_on or []:
            self._dependents.setdefault(dependency.program, set()).add(program.id)
            if dependency.condition == "exited_ok":
                self._waited[dependency.program] = self._waited.get(dependency.program, 0) + 1

    def _unrelate(self, program: Program) -> None:
        if self._by_name.get(program.name) == program.id:
            del self._by_name[program.name]
        for dependency in program.depends_on or []:
            leaning = self._dependents.get(dependency.program)
            if leaning is not None:
                leaning.discard(program.id)
                if not leaning:
                    del self._dependents[dependency.program]
            if dependency.condition == "exited_ok":
                left = self._waited.get(dependency.program, 0) - 1
                if left > 0:
                    self._waited[dependency.program] = left
                else:
                    self._waited.pop(dependency.program, None)

    # ---- dependencies ------------------------------------------------------------------

    def exit_targets(self) -> frozenset[str]:
        """The names of the programs some program waits on with `exited_ok`: its one-shot
        jobs (`dependencies.exit_targets` of every program, from the index)."""
        return frozenset(self._waited)

    def exit_targets_after(self, program_id: int, program: Program | None) -> frozenset[str]:
        """The one-shot jobs once the program `program_id` becomes `program` (None: removed),
        every other program as it is."""
        waited = dict(self._waited)
        for before, step in ((self._programs.get(program_id), -1), (program, 1)):
            for dependency in (before.depends_on or []) if before is not None else []:
                if dependency.condition == "exited_ok":
                    waited[dependency.program] = waited.get(dependency.program, 0) + step
        return frozenset(name for name, count in waited.items() if count > 0)

    def dependents_of(self, program: Program) -> list[Program]:
        """Every program that depends on `program`, directly or through others, nearest
        first (each step in the order of the programs' ids): `dependencies.dependents_of`
        from the index, visiting only the dependents."""
        found: list[Program] = []
        names = {program.name}
        frontier = [program.name]
        while frontier:
            name = frontier.pop(0)
            for other_id in sorted(self._dependents.get(name, ())):
                other = self._programs[other_id]
                if other.name in names:
                    continue
                names.add(other.name)
                found.append(other)
                frontier.append(other.name)
        return found

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
        self._owners = {}
        self._names = {}
        for name, (program_id, port) in owners.items():
            self.own(name, program_id, port)

    def index(self, program_id: int, registered: Mapping[str, Owner]) -> None:
        """Rebuild the index of one program (its groups in `registered`: the program's own,
        `Registry.owned_groups_of`), leaving every other program's entries as they are."""
        for name in self._names.pop(program_id, {}):
            if self._owners.get(name, (None,))[0] == program_id:
                del self._owners[name]
        program = self._programs.get(program_id)
        if program is None:
            return
        if program.port_range is None:
            self.own(conf.instance_name(program, None), program_id, None)
        for name, (owner, port) in registered.items():
            if owner == program_id:
                self.own(name, program_id, port)

    def own(self, name: str, program_id: int, port: int | None) -> None:
        """Record an instance registered on demand (a name another program held is moved)."""
        previous = self._owners.get(name)
        if previous is not None and previous[0] != program_id:
            held = self._names.get(previous[0])
            if held is not None:
                held.pop(name, None)
                if not held:
                    del self._names[previous[0]]
        self._owners[name] = (program_id, port)
        self._names.setdefault(program_id, {})[name] = port

    def owner(self, name: str) -> tuple[Program, int | None] | None:
        """The program (and port) a supervisord process belongs to, if it is one of ours."""
        owner = self._owners.get(name)
        program = self._programs.get(owner[0]) if owner else None
        if owner is None or program is None:
            return None
        return program, owner[1]

    def names_of(self, program_id: int) -> dict[str, int | None]:
        """The supervisord names the program owns, each with its port (None: a standard
        program's one process)."""
        return dict(self._names.get(program_id, {}))

    def instances_of(self, program_id: int) -> list[tuple[int, str]]:
        """(port, supervisord name) of each registered port instance, in port order."""
        return sorted(
            (port, name)
            for name, port in self._names.get(program_id, {}).items()
            if port is not None
        )
