"""`poll_until` asks again until it gets an answer or the deadline passes, never longer."""

from __future__ import annotations

import asyncio
import time

from hoodyd.polling import poll_until


async def test_returns_the_first_answer() -> None:
    """The loop stops at the first answer that is not None and returns it."""
    calls = []

    async def third_time() -> str | None:
        calls.append(1)
        return "ready" if len(calls) == 3 else None

    assert await poll_until(third_time, timeout=5, interval=0.01) == "ready"
    assert len(calls) == 3


async def test_gives_up_at_the_deadline() -> None:
    """Without an answer it returns None once the timeout has passed, not much later."""
    calls = []

    async def never() -> int | None:
        calls.append(1)
        return None

    started = time.monotonic()
    # an interval far longer than the timeout: the last wait is cut to the deadline, so the
    # answer comes long before a second interval could have ended (the 10 s guard)
    assert await asyncio.wait_for(poll_until(never, timeout=0.2, interval=60), 10) is None
    # a lower bound only, which no slowness can break: it did not give up early
    assert time.monotonic() - started >= 0.2
    assert len(calls) >= 2  # asked again at the deadline


async def test_asks_once_even_with_no_time() -> None:
    """A zero timeout still asks once, so an answer that is already there is seen."""

    async def now() -> int:
        return 7

    assert await poll_until(now, timeout=0) == 7
