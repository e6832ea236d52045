"""Which instances should run: what callers asked for, recorded before supervisord is touched.

A start records its instance here first (and only then spawns); a stop removes it first. When
supervisord comes back after it went away (an embedded one revived, an external one
restarted), every instance recorded here is started again, so a start that was answered is
never silently lost. Reads come from memory; every change is written through to the store
first, and a write that fails leaves the memory as it was.
"""

from __future__ import annotations

import asyncio

from hoodyd.programs.store import Owner, ProgramStore


class ShouldRun:
    """The instances that should run. Changes are serialised (one store write at a time, the
    check and the change under one lock), so concurrent starts and stops never act on what
    another has changed meanwhile."""

    def __init__(self, store: ProgramStore) -> None:
        self._store = store
        self._names: dict[str, Owner] = {}
        self._lock = asyncio.Lock()
        # bumped at each recorded change of a name: a start that failed undoes its own
        # record only if nothing recorded the name since
        self._versions: dict[str, int] = {}

    def load(self) -> None:
        self._names = self._store.load_should_run()

    def __contains__(self, name: str) -> bool:
        return name in self._names

    def items(self) -> list[tuple[str, Owner]]:
        return sorted(self._names.items())

    def of(self, program_id: int) -> dict[str, Owner]:
        """The instances of one program that should run."""
        return {name: owner for name, owner in self._names.items() if owner[0] == program_id}

    def version(self, name: str) -> int:
        return self._versions.get(name, 0)

    async def want(self, name: str, program_id: int, port: int | None) -> None:
        """Record that the instance should run (a no-op, without a write, if it is)."""
        async with self._lock:
            if name in self._names:
                return
            await self._store.set_should_run({name: (program_id, port)}, [])
            self._names[name] = (program_id, port)
            self._bump([name])

    async def unwant(self, names: list[str], *, unless_changed_since: int | None = None) -> None:
        """Record that the named instances should not run; with `unless_changed_since` (one
        name's `version`), only if nothing recorded that name since."""
        async with self._lock:
            if unless_changed_since is not None and any(
                self.version(name) != unless_changed_since for name in names
            ):
                return
            known = [name for name in names if name in self._names]
            if not known:
                return
            await self._store.set_should_run({}, known)
            for name in known:
                self._names.pop(name, None)
            self._bump(known)

    async def restore(self, rows: dict[str, Owner]) -> None:
        """Record again instances a failed stop had removed."""
        if not rows:
            return
        async with self._lock:
            await self._store.set_should_run(rows, [])
            self._names.update(rows)
            self._bump(list(rows))

    def forget(self, program_id: int | None = None) -> None:
        """Drop one program's instances (every program's with None) from memory, after the
        store dropped them."""
        gone = [n for n, o in self._names.items() if program_id is None or o[0] == program_id]
        for name in gone:
            self._names.pop(name, None)
        self._bump(gone)

    def put_back(self, rows: dict[str, Owner]) -> None:
        """Memory as it was after the store was restored."""
        self._names.update(rows)
        self._bump(list(rows))

    def _bump(self, names: list[str]) -> None:
        for name in names:
            self._versions[name] = self._versions.get(name, 0) + 1
