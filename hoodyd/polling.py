"""`poll_until`: the one deadline loop, for the few things that can only be asked again (a
process that has no event to wait on, a port that nobody announces)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def poll_until(
    check: Callable[[], Awaitable[T | None]], *, timeout: float, interval: float = 0.1
) -> T | None:
    """Call `check` until it returns something other than None or `timeout` seconds passed;
    the last answer (None on timeout). `check` runs at least once, even with timeout 0."""
    deadline = time.monotonic() + timeout
    while True:
        answer = await check()
        remaining = deadline - time.monotonic()
        if answer is not None or remaining <= 0:
            return answer
        await asyncio.sleep(min(interval, remaining))
