"""`cancel_and_wait` ends tasks and never swallows its caller's own cancellation."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

import hoodyd
from hoodyd.tasks import cancel_and_wait


class SlowToEnd:
    """A task that, once cancelled, cleans up until released."""

    def __init__(self) -> None:
        self.running = asyncio.Event()
        self.cleaning = asyncio.Event()
        self.release = asyncio.Event()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        self.running.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cleaning.set()
            await self.release.wait()
            raise


async def test_a_caller_cancelled_while_waiting_is_still_cancelled() -> None:
    """The caller is cancelled while the task it ends is still cleaning up: the caller gets
    CancelledError instead of running on (as a reaper that would never stop did)."""
    inner = SlowToEnd()
    await inner.running.wait()
    ran_on = []

    async def caller() -> None:
        await cancel_and_wait(inner.task)
        ran_on.append(True)

    task = asyncio.create_task(caller())
    await inner.cleaning.wait()
    task.cancel()
    inner.release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert ran_on == []


async def test_tasks_end_and_their_own_cancellation_is_not_an_error() -> None:
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    tasks = [asyncio.create_task(forever()) for _ in range(3)]
    await started.wait()
    await cancel_and_wait(None, *tasks)
    assert all(task.cancelled() for task in tasks)


async def test_a_task_that_had_failed_raises_its_error() -> None:
    async def fails() -> None:
        raise ValueError("broken")

    task = asyncio.create_task(fails())
    await asyncio.wait([task])
    with pytest.raises(ValueError, match="broken"):
        await cancel_and_wait(task)


async def test_the_old_pattern_swallows_the_callers_cancellation() -> None:
    """Why the helper exists: `suppress(CancelledError)` around the await lets the caller
    run on after being cancelled."""
    inner = SlowToEnd()
    await inner.running.wait()

    async def caller() -> str:
        inner.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await inner.task
        return "ran on"

    task = asyncio.create_task(caller())
    await inner.cleaning.wait()
    task.cancel()
    inner.release.set()
    assert await task == "ran on"


def test_the_package_ends_tasks_only_through_the_helper() -> None:
    """No module ends a task by awaiting it under `suppress(CancelledError)` any more."""
    package = Path(hoodyd.__file__).parent
    offenders = [
        str(path.relative_to(package))
        for path in sorted(package.rglob("*.py"))
        if "suppress(asyncio.CancelledError)" in path.read_text()
    ]
    assert offenders == []
