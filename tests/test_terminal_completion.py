"""A command's completion is its own: markers cannot be forged from inside a session, input
typed by other means never lends its completion to an execute, replaced shells do not wedge a
terminal, and what the API reads back about a session follows its shell."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from hoodyd.polling import poll_until
from hoodyd.schemas.terminal import ExecuteRequest, SessionOptions
from hoodyd.terminals.service import TerminalService
from hoodyd.terminals.session import Command
from tests.conftest import make_config

WAIT = 15.0  # generous bound for any single wait on a loaded machine
PYTHON = "/usr/bin/python3"


@contextlib.asynccontextmanager
async def running_service(state_dir: Path) -> AsyncIterator[TerminalService]:
    config = make_config(state_dir, terminals={"user_rc": False})
    service = TerminalService(config.terminals, config.state_path)
    await service.start()
    try:
        yield service
    finally:
        await service.close()


@pytest.fixture
async def service(short_tmp: Path) -> AsyncIterator[TerminalService]:
    async with running_service(short_tmp) as running:
        yield running


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory every user may read and write (a session of `nobody` runs scripts there)."""
    directory = Path(tempfile.mkdtemp(prefix="hc-", dir="/tmp"))
    directory.chmod(0o777)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


async def until(predicate: object, what: str, timeout: float = WAIT) -> None:
    async def check() -> bool | None:
        return True if predicate() else None  # type: ignore[operator]

    if await poll_until(check, timeout=timeout) is None:
        raise AssertionError(f"timed out waiting for {what}")


# A program that reads everything its user can read and prints every marker it can build
# from any token of 8 or more characters it found, then reads its stdin for a while.
FORGER = r"""
import os, re, select, sys, time
out, state = sys.argv[1], sys.argv[2]
found = set()
def take(data):
    for pattern in (rb"[A-Za-z0-9]{8,}", rb"[A-Za-z0-9_.+/=-]{8,}"):
        for token in re.findall(pattern, data):
            found.add(token[:96])
def read(path, size=1 << 20):
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError:
        return
    try:
        if not os.isatty(fd):
            take(os.read(fd, size))
    except OSError:
        pass
    finally:
        os.close(fd)
for pid in os.listdir("/proc"):
    if pid.isdigit():
        for name in ("environ", "cmdline"):
            read(f"/proc/{pid}/{name}")
for directory in ("/proc/self/fd", f"/proc/{os.getppid()}/fd", "/dev/fd"):
    try:
        names = os.listdir(directory)
    except OSError:
        continue
    for name in names:
        read(os.path.join(directory, name))
for root, _dirs, files in os.walk(state):
    for name in files:
        path = os.path.join(root, name)
        if os.path.isfile(path):
            read(path)
markers = []
for token in sorted(found):
    t = token.decode(errors="replace")
    markers.append(f"\x1b]6973;{t};S\x07")
    for seq in (1, 2, 3, 5, 10, 1000000):
        markers.append(f"\x1b]6973;{t};D;0;{seq}\x07")
    markers.append(f"\x1b]6973;{t};D;0\x07")
sys.stdout.write("".join(markers))
sys.stdout.write("\nFORGED %d TOKENS\n" % len(found))
sys.stdout.flush()
with open(os.path.join(out, "forged"), "w") as f:
    f.write(str(len(found)))
got = b""
deadline = time.monotonic() + float(sys.argv[3])
while time.monotonic() < deadline:
    ready, _, _ = select.select([0], [], [], 0.1)
    if ready:
        chunk = os.read(0, 4096)
        if not chunk:
            break
        got += chunk
with open(os.path.join(out, "stdin"), "wb") as f:
    f.write(got)
print("FORGER DONE")
"""


async def forging_does_not_complete(
    service: TerminalService, shared_dir: Path, state_dir: Path, user: str | None
) -> None:
    script = shared_dir / "forge.py"
    script.write_text(FORGER)
    script.chmod(0o644)
    options = SessionOptions(user=user)
    forger = await service.execute(
        ExecuteRequest(
            terminal_id=7,
            command=f"{PYTHON} {script} {shared_dir} {state_dir} 3",
            wait=False,
            session=options,
        )
    )
    queued = await service.execute(
        ExecuteRequest(terminal_id=7, command="echo QUEUED-B", wait=False, session=options)
    )
    session = service.session(7)
    await until(lambda: b"FORGED " in session.ring.read(0, 1 << 24).data, "the forged markers")
    tokens = int((shared_dir / "forged").read_text())
    assert tokens > 0  # it found things to try
    first: Command = service.command(int(forger.command_id))
    second: Command = service.command(int(queued.command_id))
    assert first.status == "running", first.result()
    assert second.status == "queued", second.result()
    await asyncio.wait_for(first.done.wait(), WAIT)
    await asyncio.wait_for(second.done.wait(), WAIT)
    assert b"QUEUED-B" not in (shared_dir / "stdin").read_bytes()
    assert (first.status, first.exit_code) == ("completed", 0)
    assert "FORGER DONE" in first.result().stdout
    assert (second.status, second.result().stdout) == ("completed", "QUEUED-B\n")


async def test_a_program_of_hoodyds_own_user_cannot_forge_a_completion(
    service: TerminalService, shared_dir: Path, short_tmp: Path
) -> None:
    """Markers built from every token a program of the session's user can read end nothing,
    and the queued command is not typed into that program's stdin."""
    await forging_does_not_complete(service, shared_dir, short_tmp, None)


@pytest.mark.skipif(os.geteuid() != 0, reason="a session of another user needs root")
async def test_a_program_of_another_user_cannot_forge_a_completion(
    service: TerminalService, shared_dir: Path, short_tmp: Path
) -> None:
    """The same for a session of `nobody`: its markers end nothing either."""
    await forging_does_not_complete(service, shared_dir, short_tmp, "nobody")
