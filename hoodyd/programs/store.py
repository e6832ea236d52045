"""SQLite store (WAL) of programs, the instances that should run, and ephemeral programs.

This is the desired state: what callers asked for (a program and whether it is enabled; which
instances should run), written before supervisord is touched. The program table
(`hoodyd.programs.table`) and `hoodyd.programs.desired` are the copies reads are answered
from; each write is one transaction, run in a thread so the event loop never waits on the
disk. A write that fails (disk full) raises `StateNotSaved`, and nothing was written.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from pathlib import Path

import msgspec

from hoodyd.errors import StateNotSaved
from hoodyd.programs.files import make_private_dirs
from hoodyd.schemas.daemon import Ephemeral, Program

SCHEMA = """
CREATE TABLE IF NOT EXISTS programs (
    id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS ephemeral (temporary_id TEXT PRIMARY KEY, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS should_run (
    name TEXT PRIMARY KEY, program_id INTEGER NOT NULL, port INTEGER
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""

Owner = tuple[int, int | None]  # (program id, port) of a supervisord process
Statement = tuple[str, tuple[object, ...]]
_BUMP_LAST_ID = (
    "INSERT INTO counters (name, value) VALUES ('last_program_id', ?) ON CONFLICT(name) "
    "DO UPDATE SET value = max(value, excluded.value)"
)
_UPSERT = (
    "INSERT INTO programs (id, name, body) VALUES (?, ?, ?) ON CONFLICT(id) "
    "DO UPDATE SET name = excluded.name, body = excluded.body"
)



class ProgramStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        make_private_dirs(path.parent)
        # created before SQLite opens it: SQLite gives the -wal and -shm files the mode of
        # the database file
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600))
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # WAL, and FULL: each commit is forced to disk (one fsync of the log per transaction)
        # before it is answered
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        for suffix in ("", "-wal", "-shm"):  # files an older hoodyd left open to others
            with contextlib.suppress(FileNotFoundError):
                os.chmod(f"{path}{suffix}", 0o600)
        self._lock = asyncio.Lock()
        self._encode = msgspec.json.Encoder().encode

    def close(self) -> None:
        self._db.close()

    def load_programs(self) -> dict[int, Program]:
        rows = self._db.execute("SELECT body FROM programs ORDER BY id").fetchall()
        programs = (msgspec.json.decode(body, type=Program) for (body,) in rows)
        return {program.id: program for program in programs}

    def last_program_id(self) -> int:
        """The highest program id ever given (ids are never given twice): the counter, or
        for a store from before it, the highest id in it."""
        (counter,) = self._db.execute(
            "SELECT coalesce(max(value), 0) FROM counters WHERE name = 'last_program_id'"
        ).fetchone()
        (highest,) = self._db.execute("SELECT coalesce(max(id), 0) FROM programs").fetchone()
        return max(int(counter), int(highest))

    def load_ephemeral(self) -> dict[str, Ephemeral]:
        rows = self._db.execute("SELECT body FROM ephemeral").fetchall()
        items = (msgspec.json.decode(body, type=Ephemeral) for (body,) in rows)
        return {item.temporary_id: item for item in items}

    def load_should_run(self) -> dict[str, Owner]:
        rows = self._db.execute("SELECT name, program_id, port FROM should_run").fetchall()
        return {name: (program_id, port) for name, program_id, port in rows}

    async def _run(self, statements: list[Statement]) -> None:
        def transaction() -> None:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                for sql, params in statements:
                    self._db.execute(sql, params)

        async with self._lock:
            try:
                await asyncio.to_thread(transaction)
            except (sqlite3.OperationalError, sqlite3.DatabaseError, OSError) as exc:
                raise StateNotSaved(
                    f"hoodyd could not save its state ({exc}); nothing was changed",
                    extra={"changed": False},
                ) from exc

    def _upsert(self, program: Program) -> Statement:
        return (_UPSERT, (program.id, program.name, self._encode(program)))

    async def save_program(self, program: Program, *, stop_all: bool = False) -> None:
        """Write the program; with `stop_all`, none of its instances should run any more."""
        statements = [self._upsert(program), (_BUMP_LAST_ID, (program.id,))]
        if stop_all:
            statements.append(("DELETE FROM should_run WHERE program_id = ?", (program.id,)))
        await self._run(statements)

    async def delete_program(self, program_id: int) -> None:
        await self._run(
            [
                ("DELETE FROM programs WHERE id = ?", (program_id,)),
                ("DELETE FROM should_run WHERE program_id = ?", (program_id,)),
            ]
        )

    async def replace_programs(self, programs: list[Program]) -> None:
        await self._run(
            [("DELETE FROM programs", ()), ("DELETE FROM should_run", ())]
            + [self._upsert(p) for p in programs]
            + [(_BUMP_LAST_ID, (p.id,)) for p in programs]
        )

    async def restore(
        self,
        programs: list[Program],
        should_run: dict[str, Owner],
        *,
        drop_ids: list[int] | None = None,
        everything: bool = False,
    ) -> None:
        """Put back what a failed request changed: `programs` and their should-run rows as they
        were (`everything`: the whole store), programs in `drop_ids` removed."""
        statements: list[Statement] = []
        if everything:
            statements += [("DELETE FROM programs", ()), ("DELETE FROM should_run", ())]
        for program_id in drop_ids or []:
            statements += [
                ("DELETE FROM programs WHERE id = ?", (program_id,)),
                ("DELETE FROM should_run WHERE program_id = ?", (program_id,)),
            ]
        statements += [self._upsert(p) for p in programs]
        statements += [
            ("INSERT OR REPLACE INTO should_run (name, program_id, port) VALUES (?, ?, ?)",
             (name, owner[0], owner[1]))
            for name, owner in should_run.items()
        ]
        await self._run(statements)

    async def set_should_run(self, wanted: dict[str, Owner], unwanted: list[str]) -> None:
        """Record that the `wanted` instances should run and the `unwanted` ones should not."""
        statements: list[Statement] = [
            ("INSERT OR REPLACE INTO should_run (name, program_id, port) VALUES (?, ?, ?)",
             (name, owner[0], owner[1]))
            for name, owner in wanted.items()
        ]
        statements += [("DELETE FROM should_run WHERE name = ?", (name,)) for name in unwanted]
        await self._run(statements)

    async def save_ephemeral(self, item: Ephemeral) -> None:
        await self._run(
            [
                (
                    "INSERT OR REPLACE INTO ephemeral (temporary_id, body) VALUES (?, ?)",
                    (item.temporary_id, self._encode(item)),
                )
            ]
        )

    async def delete_ephemeral(self, temporary_id: str) -> None:
        await self._run([("DELETE FROM ephemeral WHERE temporary_id = ?", (temporary_id,))])
