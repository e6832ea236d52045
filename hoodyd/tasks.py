"""`cancel_and_wait`: the one way a background task is ended. Awaiting a cancelled task under
`suppress(CancelledError)` also swallows the caller's own cancellation when it arrives during
that wait, and the caller then runs on (a reaper asked to stop keeps reaping, and whoever
waits for it waits forever)."""

from __future__ import annotations

import asyncio
from typing import Any


async def cancel_and_wait(*tasks: asyncio.Future[Any] | None) -> None:
    """Cancel `tasks` (None ones skipped) and wait until each has ended. Their ending by
    cancellation is expected; the caller being cancelled meanwhile still raises
    CancelledError in the caller, and a task that had failed raises its error."""
    live = [task for task in tasks if task is not None]
    for task in live:
        task.cancel()
    if not live:
        return
    await asyncio.wait(live)
    for task in live:
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
