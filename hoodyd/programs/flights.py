"""Starts in flight: concurrent starts of one instance join a single spawn and share its outcome.

A `Flight` lives from the first start request of an instance until the instance settles
(RUNNING, or a failure state). Every caller that arrives meanwhile awaits the same futures, so
500 simultaneous `if_not_running` starts produce one spawn and 500 identical answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from hoodyd.errors import HoodydError, UpstreamFailed
from hoodyd.programs.status import FAILED_STATES, instance_from_info
from hoodyd.schemas.daemon import Instance

InfoReader = Callable[[str], Awaitable[dict[str, Any] | None]]
StderrReader = Callable[[str], Awaitable[str]]

SETTLE_LIMIT_S = 300.0
POLL_S = 0.05
PORT_POLL_S = 0.002


def _quiet(future: asyncio.Future[Any]) -> None:
    # a failure nobody waited for must not be reported as "never retrieved"
    if not future.cancelled():
        future.exception()


class Flight:
    def __init__(self, name: str, port: int | None) -> None:
        loop = asyncio.get_running_loop()
        self.name = name
        self.port = port
        self.spawned: asyncio.Future[bool] = loop.create_future()  # result: already running
        self.settled: asyncio.Future[Instance] = loop.create_future()
        self.port_ready: asyncio.Future[Instance] | None = None
        self.last = Instance(port=port, instance_name=name, status="STARTING")
        self.wakeup = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        for future in (self.spawned, self.settled):
            future.add_done_callback(_quiet)

    async def watch(self, read_info: InfoReader, read_stderr: StderrReader) -> None:
        """Follow the instance's state until RUNNING or a failure state, then settle."""
        deadline = time.monotonic() + SETTLE_LIMIT_S
        while time.monotonic() < deadline:
            info = await read_info(self.name)
            self.last = instance_from_info(info, self.name, self.port)
            state = self.last.status
            if state == "RUNNING":
                self.settled.set_result(self.last)
                return
            if state in FAILED_STATES or state == "STOPPED":
                self.settled.set_exception(await start_failure(self.last, read_stderr))
                return
            self.wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wakeup.wait(), POLL_S)
        self.settled.set_exception(
            UpstreamFailed(f"{self.name} did not settle", reason="START_UNSETTLED")
        )

    def wait_port(self, host: str = "127.0.0.1") -> asyncio.Future[Instance]:
        """A future that resolves once the instance accepts TCP connections on its port."""
        if self.port_ready is None:
            assert self.port is not None
            self.port_ready = asyncio.ensure_future(self._port_then_last(host))
            self.port_ready.add_done_callback(_quiet)
        return self.port_ready


    async def _port_then_last(self, host: str) -> Instance:
        assert self.port is not None
        await probe_port(host, self.port, self)
        return self.last


async def probe_port(host: str, port: int, flight: Flight | None) -> None:
    """Connect until the port accepts; give up if the flight settles as a failure."""
    while True:
        try:
            _reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            if flight is not None and flight.settled.done() and flight.settled.exception():
                raise flight.settled.exception() from None  # type: ignore[misc]
            await asyncio.sleep(PORT_POLL_S)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return


async def start_failure(instance: Instance, read_stderr: StderrReader) -> HoodydError:
    tail = ""
    # supervisord drains a dead process's pipes on a later turn of its loop: an empty tail
    # right after the exit may just be early
    for _attempt in range(4):
        try:
            tail = await read_stderr(instance.instance_name)
        except HoodydError:
            break
        if tail:
            break
        await asyncio.sleep(0.05)
    detail = f": {instance.spawnerr}" if instance.spawnerr else ""
    return UpstreamFailed(
        f"{instance.instance_name} failed to start ({instance.status}){detail}",
        reason="START_FAILED",
        extra={
            "instance": instance,
            "state": instance.status,
            "stderr_tail": tail[-4096:],
        },
    )
