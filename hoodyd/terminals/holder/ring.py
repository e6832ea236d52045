"""A bounded output buffer addressed by absolute byte offsets, with waits for new output.

Offsets count every byte the session ever produced, so a reader that keeps its `next_offset`
never sees a byte twice and learns exactly how much it missed when the buffer dropped old
output (`dropped`). A ring that mirrors a terminal holder's ring keeps the holder's offsets
(`restart_at`, `append_at`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Chunk:
    offset: int  # absolute offset of data[0]
    data: bytes
    next_offset: int
    dropped: int  # bytes between the requested offset and `offset` that are gone


class OutputRing:
    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._buf = bytearray()
        self._start = 0  # absolute offset of _buf[0]
        self._waiters: list[asyncio.Future[None]] = []
        self.closed = False

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def start(self) -> int:
        return self._start

    @property
    def end(self) -> int:
        return self._start + len(self._buf)

    def append(self, data: bytes) -> None:
        self._buf += data
        excess = len(self._buf) - self._capacity
        if excess > 0:
            del self._buf[:excess]
            self._start += excess
        self._wake()

    def restart_at(self, offset: int) -> None:
        """Drop what is kept and continue at absolute `offset` (a holder's ring start)."""
        self._buf.clear()
        self._start = offset

    def append_at(self, offset: int, data: bytes) -> None:
        """Append output that starts at absolute `offset`: bytes already kept are skipped, and
        a gap (output dropped before this ring saw it) moves the start past it."""
        end = self.end
        if offset > end:
            self._buf.clear()
            self._start = offset
        elif offset < end:
            data = data[end - offset :]
            if not data:
                return
        self.append(data)

    def close(self) -> None:
        """No more output will come (the shell exited); wake every waiter."""
        self.closed = True
        self._wake()

    def read(self, offset: int | None, limit: int) -> Chunk:
        """Bytes from `offset` (None: the oldest kept), at most `limit` of them."""
        wanted = self._start if offset is None else offset
        begin = max(wanted, self._start)
        begin = min(begin, self.end)
        data = bytes(self._buf[begin - self._start : begin - self._start + limit])
        return Chunk(begin, data, begin + len(data), max(0, begin - wanted))

    def tail(self, size: int) -> int:
        """The offset `size` bytes before the end (bounded by what is kept)."""
        return max(self._start, self.end - size)

    async def wait_beyond(self, offset: int, timeout: float | None) -> bool:
        """Wait until output past `offset` exists or the ring closes; False on timeout."""
        if self.end > offset or self.closed:
            return True
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            return False
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
        return True

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
