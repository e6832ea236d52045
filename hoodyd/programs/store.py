"""SQLite store (WAL) of programs and ephemeral programs under the state dir.

The program table (`hoodyd.programs.table`) is the copy reads are answered from, written
through to here; each write is one transaction, run in a thread so the event loop never waits
on the disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from pathlib import Path

import msgspec

from hoodyd.programs.files import make_private_dirs
from hoodyd.schemas.daemon import Ephemeral, Program

SCHEMA = """
CREATE TABLE IF NOT EXISTS programs (
    id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS ephemeral (temporary_id TEXT PRIMARY KEY, body BLOB NOT NULL);
"""


class ProgramStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        make_private_dirs(path.parent)
        # created before SQLite opens it: SQLite gives the -wal and -shm files the mode of
        # the database file
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600))
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
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

    def load_ephemeral(self) -> dict[str, Ephemeral]:
        rows = self._db.execute("SELECT body FROM ephemeral").fetchall()
        items = (msgspec.json.decode(body, type=Ephemeral) for (body,) in rows)
        return {item.temporary_id: item for item in items}

    async def _run(self, statements: list[tuple[str, tuple[object, ...]]]) -> None:
        def transaction() -> None:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                for sql, params in statements:
                    self._db.execute(sql, params)

        async with self._lock:
            await asyncio.to_thread(transaction)

    async def save_program(self, program: Program) -> None:
        await self._run(
            [
                (
                    "INSERT INTO programs (id, name, body) VALUES (?, ?, ?) ON CONFLICT(id) "
                    "DO UPDATE SET name = excluded.name, body = excluded.body",
                    (program.id, program.name, self._encode(program)),
                )
            ]
        )

    async def delete_program(self, program_id: int) -> None:
        await self._run([("DELETE FROM programs WHERE id = ?", (program_id,))])

    async def replace_programs(self, programs: list[Program]) -> None:
        await self._run(
            [("DELETE FROM programs", ())]
            + [
                (
                    "INSERT INTO programs (id, name, body) VALUES (?, ?, ?)",
                    (p.id, p.name, self._encode(p)),
                )
                for p in programs
            ]
        )

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
