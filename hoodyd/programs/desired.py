"""Which instances should run: what callers asked for, recorded before supervisord is touched.

A start records its instance here first (and only then spawns); a stop removes it first. When
supervisord comes back after it went away (an embedded one revived, an external one
restarted), every instance recorded here is started again, so a start that was answered is
never silently lost. Reads come from memory; every change is written through to the store
first, and a write that fails leaves the memory as it was.
"""

from __future__ import annotations

from hoodyd.programs.store import Owner, ProgramStore


class ShouldRun:
    def __init__(self, store: ProgramStore) -> None:
        self._store = store
        self._names: dict[str, Owner] = {}

    def load(self) -> None:
        self._names = self._store.load_should_run()

    def __contains__(self, name: str) -> bool:
        return name in self._names

    def items(self) -> list[tuple[str, Owner]]:
        return sorted(self._names.items())

    def of(self, program_id: int) -> dict[str, Owner]:
        """The instances of one program that should run."""
        return {name: owner for name, owner in self._names.items() if owner[0] == program_id}

    async def want(self, name: str, program_id: int, port: int | None) -> None:
        """Record that the instance should run (a no-op, without a write, if it is)."""
        if name in self._names:
            return
        await self._store.set_should_run({name: (program_id, port)}, [])
        self._names[name] = (program_id, port)

    async def unwant(self, names: list[str]) -> None:
        """Record that the named instances should not run."""
        known = [name for name in names if name in self._names]
        if not known:
            return
        await self._store.set_should_run({}, known)
        for name in known:
            del self._names[name]

    def forget(self, program_id: int | None = None) -> None:
        """Drop one program's instances (every program's with None) from memory, after the
        store dropped them."""
        self._names = (
            {}
            if program_id is None
            else {name: owner for name, owner in self._names.items() if owner[0] != program_id}
        )

    def put_back(self, rows: dict[str, Owner]) -> None:
        """Memory as it was after the store was restored."""
        self._names.update(rows)
