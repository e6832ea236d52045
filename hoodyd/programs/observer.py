"""What supervisord's processes are doing: event datagrams and a reconciliation poll folded into
one record per process, and every change published to subscribers as a `Transition`.

Events are a hint (one can be lost while hoodyd restarts); the poll is the truth, but an event
that arrived while a poll was under way is newer than that poll's answer. The poll also notices
supervisord going away: it asks the owner to revive it while it is gone, and to converge (bring
supervisord back to what the store holds) once it answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import msgspec
import structlog

from hoodyd.errors import HoodydError, SupervisorUnavailable
from hoodyd.programs.events import EventReceiver, ProcessEvent
from hoodyd.programs.supervisor_client import ProcessInfo, SupervisorClient

log = structlog.get_logger()


class Transition(msgspec.Struct, frozen=True, kw_only=True):
    """A process changed state (or, with `initial`, was first seen by hoodyd in that state)."""

    name: str  # supervisord's process name
    state: str
    from_state: str | None
    pid: int | None  # as reported: a STOPPING or EXITED process's pid too
    # what the first poll finds is a starting point, not a change (webhooks skip it)
    initial: bool = False


Subscriber = Callable[[Transition], None]
Hook = Callable[[], Awaitable[None]]


@dataclass(slots=True)
class ProcessRecord:
    """The last state seen of one process."""

    state: str
    # only a RUNNING process's pid identifies it: events and polls disagree on the pid they
    # report for other states
    pid: int | None
    event_at: float = 0.0  # monotonic time of its last event


class Observer:
    def __init__(
        self,
        client: SupervisorClient,
        *,
        interval: float,
        events_socket: Path | None,
        revive: Hook,
        converge: Hook,
    ) -> None:
        self.client = client
        self.interval = interval
        self._revive = revive
        self._converge = converge
        self._records: dict[str, ProcessRecord] = {}
        self._subscribers: list[Subscriber] = []
        self._receiver = (
            EventReceiver(events_socket, self.on_event) if events_socket is not None else None
        )
        self._poller: asyncio.Task[None] | None = None
        self._primed = False  # the first poll records states; later ones report transitions
        self._lost = False  # supervisord stopped answering; cleared once converged

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Call `subscriber` with every transition from now on; returns the unsubscribe."""
        self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._subscribers.remove(subscriber)

        return unsubscribe

    def running_pid(self, name: str) -> int | None:
        """The pid of the process if it was last seen RUNNING."""
        record = self._records.get(name)
        return record.pid if record is not None else None

    @property
    def lost(self) -> bool:
        """supervisord is not answering (or not yet converged since it answers again)."""
        return self._lost

    # ---- lifecycle ---------------------------------------------------------------------

    async def start(self, bring_up: Hook) -> None:
        """Receive events, have supervisord brought up (`bring_up`), record what runs as the
        starting point, and poll from then on. If supervisord cannot be brought up, hoodyd
        still serves (requests get 503) and the poll keeps trying to revive it."""
        if self._receiver is not None:
            await self._receiver.start()
        try:
            await bring_up()
            asked_at = time.monotonic()
            self.record(await self.client.all_process_info(), asked_at)
        except HoodydError as exc:
            log.error("supervisor_unavailable_at_start", error=exc.message)
            self._lost = True
        self._poller = asyncio.create_task(self._poll_forever())

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        if self._receiver is not None:
            self._receiver.close()

    async def _poll_forever(self) -> None:
        """Record observed states (webhooks never miss a change), have an absent supervisord
        revived, and converge once it answers again."""
        while True:
            await asyncio.sleep(self.interval)
            asked_at = time.monotonic()
            try:
                infos = await self.client.all_process_info()
            except SupervisorUnavailable:
                if not self._lost:
                    log.error("supervisor_lost")
                self._lost = True
                await self._revive()
                continue
            except HoodydError as exc:
                log.warning("poll_failed", error=exc.message)
                continue
            if self._lost:
                try:
                    await self._converge()
                except HoodydError as exc:
                    log.warning("reconcile_failed", error=exc.message)
                    continue
                self._lost = False
                log.info("supervisor_back")
                continue
            self.record(infos, asked_at)

    # ---- observations ------------------------------------------------------------------

    def record(self, infos: Iterable[ProcessInfo], asked_at: float) -> None:
        """Fold in a poll's answer, asked for at monotonic time `asked_at`."""
        initial = not self._primed
        for info in infos:
            record = self._records.get(info.name)
            if record is not None and record.event_at > asked_at:
                continue  # an event arrived while the poll was under way: it is newer
            self._observe(info.name, info.statename, info.pid or None, None, initial=initial)
        self._primed = True

    def on_event(self, event: ProcessEvent) -> None:
        self._observe(event.process_name, event.state, event.pid, event.from_state)
        self._records[event.process_name].event_at = time.monotonic()

    def _observe(
        self,
        name: str,
        state: str,
        pid: int | None,
        from_state: str | None,
        *,
        initial: bool = False,
    ) -> None:
        running_pid = pid if state == "RUNNING" else None
        record = self._records.get(name)
        if record is None:
            self._records[name] = ProcessRecord(state, running_pid)
        elif (record.state, record.pid) == (state, running_pid):
            return
        else:
            from_state = from_state or record.state
            record.state, record.pid = state, running_pid
        self._publish(
            Transition(name=name, state=state, from_state=from_state, pid=pid, initial=initial)
        )

    def _publish(self, transition: Transition) -> None:
        for subscriber in list(self._subscribers):
            try:
                subscriber(transition)
            except Exception:  # one subscriber must not keep the others from hearing
                log.exception("transition_subscriber_failed", process=transition.name)
