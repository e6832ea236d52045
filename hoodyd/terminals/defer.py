"""Wait until a process has exited, guarding against PID reuse, with pidfd or by polling.

A PID names a process only together with its start time (field 22 of `/proc/PID/stat`, in
clock ticks since boot): when the ticks differ from the ones the caller saw, the PID was reused
and the process the caller meant has already exited. With `pidfd_open` the kernel wakes us the
moment the process exits (the fd becomes readable), so there is no polling delay; kernels or
sandboxes without it fall back to reading `/proc` every `poll_interval`.
"""

from __future__ import annotations

import asyncio
import enum
import os
import time
from dataclasses import dataclass

import structlog

log = structlog.get_logger()


class DeferOutcome(enum.Enum):
    EXITED = "exited"  # it was running and exited while we waited
    GONE = "gone"  # no such process when we looked (or only a zombie)
    REUSED = "reused"  # the PID belongs to another process than the one meant
    TIMED_OUT = "timed_out"


@dataclass(frozen=True, slots=True)
class ProcessFacts:
    """What `/proc/PID/stat` says now: alive (not a zombie), its start ticks, and a zombie's
    exit code (as `Popen.returncode` gives it: the status, or minus the signal)."""

    alive: bool
    start_ticks: int | None
    zombie_exit_code: int | None = None


def read_process(pid: int) -> ProcessFacts:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except (FileNotFoundError, ProcessLookupError):
        return ProcessFacts(False, None)
    # The command name (field 2) may contain spaces and parentheses; fields after the last
    # ')' are plain. Field n (n >= 3) is at index n - 3 of what follows.
    fields = stat[stat.rfind(b")") + 2 :].split()
    state, ticks = fields[0], int(fields[19])
    # A zombie has exited; only its parent has not collected it yet. Its wait status is
    # field 52.
    exit_code = None
    if state == b"Z" and len(fields) > 49:
        exit_code = os.waitstatus_to_exitcode(int(fields[49]))
    return ProcessFacts(state not in (b"Z", b"X"), ticks, exit_code)


def pidfd_supported() -> bool:
    if not hasattr(os, "pidfd_open"):
        return False
    try:
        fd = os.pidfd_open(os.getpid())
    except OSError:
        return False
    os.close(fd)
    return True


async def wait_for_exit(
    pid: int,
    start_ticks: int | None,
    timeout: float,
    poll_interval: float,
    use_pidfd: bool,
) -> DeferOutcome:
    """Return once process `pid` (started at `start_ticks`, if given) is no longer running."""
    pidfd = _open_pidfd(pid) if use_pidfd else None
    try:
        # Read the facts after opening the pidfd: the fd then refers to the very process whose
        # start ticks we compare, so a reuse between the two steps is caught, not missed.
        facts = read_process(pid)
        if not facts.alive:
            return DeferOutcome.GONE
        if start_ticks is not None and facts.start_ticks != start_ticks:
            return DeferOutcome.REUSED
        try:
            if pidfd is not None:
                await asyncio.wait_for(_pidfd_readable(pidfd), timeout)
            else:
                await asyncio.wait_for(
                    _poll_until_gone(pid, facts.start_ticks, poll_interval), timeout
                )
        except TimeoutError:
            return DeferOutcome.TIMED_OUT
        return DeferOutcome.EXITED
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _open_pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:
        return None  # gone already: read_process will say so
    except OSError as exc:  # ENOSYS, EPERM in some sandboxes: poll instead
        log.debug("pidfd_unavailable", pid=pid, error=str(exc))
        return None


async def _pidfd_readable(pidfd: int) -> None:
    loop = asyncio.get_running_loop()
    readable: asyncio.Future[None] = loop.create_future()

    def on_readable() -> None:
        if not readable.done():
            readable.set_result(None)

    loop.add_reader(pidfd, on_readable)
    try:
        await readable
    finally:
        loop.remove_reader(pidfd)


async def _poll_until_gone(pid: int, start_ticks: int | None, interval: float) -> None:
    deadline = time.monotonic()
    while True:
        deadline += interval
        await asyncio.sleep(max(0.0, deadline - time.monotonic()))
        facts = read_process(pid)
        if not facts.alive or facts.start_ticks != start_ticks:
            return
