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
from hoodyd.tasks import cancel_and_wait

log = structlog.get_logger()

ALIVE_CHECK_S = 0.1  # how often a dead embedded supervisord is looked for between polls
LOST_RETRY_S = 0.25  # how often a lost supervisord is asked again
# events that lack what status answers show: STARTING carries no pid (supervisord announces
# it before it forks), EXITED/BACKOFF/FATAL no exit status; getProcessInfo has both
READ_AFTER_EVENT = frozenset({"STARTING", "EXITED", "BACKOFF", "FATAL"})
# restarts: supervisord starting a process again by itself. From BACKOFF (a start failed) or
# RUNNING (its EXITED event was lost) only supervisord does; from EXITED, it does so in the
# same turn of its loop, so a STARTING later than this after the exit was asked for
AUTORESTART_S = 1.0


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


# supervisord's state numbers (`supervisor.states.ProcessStates`)
STATE_CODES = {
    "STOPPED": 0, "STARTING": 10, "RUNNING": 20, "BACKOFF": 30, "STOPPING": 40,
    "EXITED": 100, "FATAL": 200, "UNKNOWN": 1000,
}


@dataclass(slots=True)
class ProcessRecord:
    """The last state seen of one process, and the process as supervisord last described it
    (`info`: what status answers are made of)."""

    state: str
    # only a RUNNING process's pid identifies it: events and polls disagree on the pid they
    # report for other states
    pid: int | None
    info: ProcessInfo
    event_at: float = 0.0  # monotonic time of its last event
    # the last event's (supervisord pid, serial): an event with a lower serial from the same
    # supervisord is older than what is recorded, whatever order the datagrams arrived in
    serial: tuple[int, int] | None = None
    # the state came from a direct read (a start or stop following its process), not an event
    noted: bool = False
    # failed start attempts in a row (STARTING/BACKOFF events' `tries`; None once it ran)
    tries: int | None = None
    tries_state: str = ""  # the state whose event carried `tries`


class Observer:
    def __init__(
        self,
        client: SupervisorClient,
        *,
        interval: float,
        events_socket: Path | None,
        revive: Hook,
        converge: Hook,
        alive: Callable[[], bool] = lambda: True,
    ) -> None:
        self.client = client
        self._alive = alive
        self.interval = interval
        self._revive = revive
        self._converge = converge
        self._records: dict[str, ProcessRecord] = {}
        self._restarts: dict[str, int] = {}  # by process name, since hoodyd started
        self._exited_at: dict[str, float] = {}  # when each was last seen entering EXITED
        self._subscribers: list[Subscriber] = []
        self._receiver = (
            EventReceiver(events_socket, self.on_event) if events_socket is not None else None
        )
        self._poller: asyncio.Task[None] | None = None
        self._reads: dict[str, asyncio.Task[None]] = {}  # one read after an event per name
        self._primed = False  # the first poll records states; later ones report transitions
        self._lost = False  # supervisord stopped answering; cleared once converged
        # which supervisord answers: one more each time one is lost, so that nothing begun
        # with a lost one (a start in flight) is taken for work of the next
        self.generation = 0

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

    def failed_attempts(self, name: str, state: str) -> int | None:
        """How many start attempts of the process, now in `state` (BACKOFF or FATAL), have
        failed in a row, as supervisord's STARTING and BACKOFF events count them; a BACKOFF
        whose event is still under way counts the attempt its STARTING event announced."""
        record = self._records.get(name)
        tries = record.tries if record is not None else None
        if tries is None:
            return 1 if state == "BACKOFF" else None
        if state == "BACKOFF" and record is not None and record.tries_state == "STARTING":
            return tries + 1
        return tries

    def restarts(self, name: str) -> int:
        """How often supervisord started the process again by itself since hoodyd started
        (`AUTORESTART_S`); a start or restart someone asked for is not counted."""
        return self._restarts.get(name, 0)

    def processes(self) -> dict[str, ProcessInfo]:
        """Every process as last seen (events and polls), by name: status answers come from
        here, without a round trip to supervisord. While supervisord is gone that picture is
        stale, so it is refused."""
        self._check_answering()
        now = int(time.time())
        return {
            name: msgspec.structs.replace(record.info, now=now)
            for name, record in self._records.items()
        }

    def processes_named(self, names: Iterable[str]) -> dict[str, ProcessInfo]:
        """The named processes as last seen (`processes`, one lookup each: what one
        program's answer costs does not grow with the other processes); a name supervisord
        does not have is left out."""
        self._check_answering()
        now = int(time.time())
        records = self._records
        return {
            name: msgspec.structs.replace(record.info, now=now)
            for name in names
            if (record := records.get(name)) is not None
        }

    def process(self, name: str) -> ProcessInfo | None:
        """One process as last seen (`processes_named`)."""
        return self.processes_named((name,)).get(name)

    def _check_answering(self) -> None:
        if self._lost or not self._alive():
            raise SupervisorUnavailable("supervisord is not answering; hoodyd is reviving it")

    async def refresh(self) -> None:
        """Read every process now, after a change hoodyd made, rather than at the next poll."""
        if self._lost:
            return
        asked_at = time.monotonic()
        with contextlib.suppress(HoodydError):
            self.record(await self.client.all_process_info(), asked_at)

    async def refresh_names(self, names: Iterable[str]) -> None:
        """Read the named processes now (the groups a change touched): one call each, so a
        change costs the same however many other processes there are."""
        if self._lost:
            return
        for name in names:
            asked_at = time.monotonic()
            try:
                info = await self.client.find_process(name)
            except HoodydError:
                return
            self.note(info, name, asked_at)

    def note(self, info: ProcessInfo | None, name: str, asked_at: float) -> None:
        """Fold in what a change just read of one process (None: it is not registered)."""
        record = self._records.get(name)
        if record is not None and record.event_at > asked_at:
            return
        if info is None:
            self._records.pop(name, None)
            return
        self._fold(info, initial=False)
        # a poll asked for before this read is older: it neither undoes nor forgets it
        noted = self._records[name]
        noted.event_at = max(noted.event_at, asked_at)
        noted.noted = True

    @property
    def hears_events(self) -> bool:
        """supervisord's event listener feeds this observer."""
        return self._receiver is not None

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
        for task in list(self._reads.values()):
            task.cancel()
        await cancel_and_wait(self._poller)
        if self._receiver is not None:
            self._receiver.close()

    async def _poll_forever(self) -> None:
        """Record observed states (webhooks never miss a change), have an absent supervisord
        revived, and converge once it answers again. Between polls, an embedded supervisord
        found dead (`alive`, a read of /proc) cuts the wait short; while it is gone, polls come
        at least every `LOST_RETRY_S`. A poll that fails in an unforeseen way is logged and
        the next one comes as usual: this loop is what brings supervisord back."""
        while True:
            await self._pause(min(self.interval, LOST_RETRY_S) if self._lost else self.interval)
            try:
                await self._poll()
            except HoodydError as exc:
                log.warning("poll_failed", error=exc.message)
            except Exception:
                log.exception("poll_crashed")

    async def _poll(self) -> None:
        asked_at = time.monotonic()
        try:
            infos = await self.client.all_process_info()
        except SupervisorUnavailable:
            if not self._lost:
                log.error("supervisor_lost")
                self._forget_processes()
            self._lost = True
            await self._revive()
            return
        if self._lost:
            try:
                await self._converge()
            except HoodydError as exc:
                log.warning("reconcile_failed", error=exc.message)
                return
            self._lost = False
            log.info("supervisor_back")
            asked_at = time.monotonic()
            with contextlib.suppress(HoodydError):
                self.record(await self.client.all_process_info(), asked_at)
            return
        self.record(infos, asked_at)

    def _forget_processes(self) -> None:
        """supervisord went away: what it ran is no longer known to run (a killed one leaves
        orphans, killed before it is started again), and a new one numbers its events anew."""
        self.generation += 1
        for record in self._records.values():
            record.pid = None
            record.serial = None

    async def _pause(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(left, ALIVE_CHECK_S))
            if not self._lost and not self._alive():
                return

    # ---- observations ------------------------------------------------------------------

    def record(self, infos: Iterable[ProcessInfo], asked_at: float) -> None:
        """Fold in a poll's answer, asked for at monotonic time `asked_at`; a process the
        answer lacks is gone (its group removed), unless an event about it came meanwhile."""
        initial = not self._primed
        seen = set()
        for info in infos:
            seen.add(info.name)
            record = self._records.get(info.name)
            if record is not None and record.event_at > asked_at:
                continue  # an event arrived while the poll was under way: it is newer
            self._fold(info, initial=initial)
        for name in [n for n, r in self._records.items() if n not in seen]:
            if self._records[name].event_at <= asked_at:
                del self._records[name]
                self._restarts.pop(name, None)
                self._exited_at.pop(name, None)
        self._primed = True

    def on_event(self, event: ProcessEvent) -> None:
        name = event.process_name
        record = self._records.get(name)
        serial = (event.source, event.serial) if event.serial is not None else None
        known = record.serial if record is not None else None
        same_source = serial is not None and known is not None and serial[0] == known[0]
        if same_source and serial is not None and known is not None and serial[1] <= known[1]:
            return  # older than what is recorded: it arrived out of order
        if record is not None and record.noted and event.from_state != record.state:
            # a direct read already moved this process past the state the event leaves:
            # the datagram was under way while hoodyd read (a start answered RUNNING must
            # not read as STARTING a moment later); the next event continues from here
            return
        base = record.info if record is not None else _blank(name, event.group_name)
        running = event.state == "RUNNING"
        info = msgspec.structs.replace(
            base,
            state=STATE_CODES.get(event.state, 1000),
            statename=event.state,
            pid=event.pid or 0,
            start=int(time.time()) if running and base.statename != "RUNNING" else base.start,
            spawnerr="" if event.state in ("STARTING", "RUNNING") else base.spawnerr,
        )
        self._fold(info, from_state=event.from_state)
        folded = self._records[name]
        folded.event_at = time.monotonic()
        folded.serial = serial
        folded.noted = False
        if event.tries is not None:
            folded.tries, folded.tries_state = event.tries, event.state
        elif event.state in ("RUNNING", "STOPPED"):
            folded.tries = None
        if event.state in READ_AFTER_EVENT:
            self._read_soon(name)

    def _read_soon(self, name: str) -> None:
        """Complete what an event left out (the new pid, the exit status) with one read."""
        if name in self._reads or self._lost:
            return

        async def read() -> None:
            try:
                asked_at = time.monotonic()
                with contextlib.suppress(HoodydError):
                    self.note(await self.client.find_process(name), name, asked_at)
            finally:
                self._reads.pop(name, None)

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # fed outside a loop (a replay): the poll completes it
            return
        self._reads[name] = loop.create_task(read())

    def _fold(
        self, info: ProcessInfo, *, from_state: str | None = None, initial: bool = False
    ) -> None:
        name, state = info.name, info.statename
        pid = info.pid or None
        running_pid = pid if state == "RUNNING" else None
        record = self._records.get(name)
        if record is None:
            self._records[name] = ProcessRecord(state, running_pid, info)
            if state == "STOPPED" and not initial:
                return  # a group just added starts out STOPPED: no change to report
        else:
            record.info = info
            if (record.state, record.pid) == (state, running_pid):
                return
            from_state = from_state or record.state
            record.state, record.pid = state, running_pid
            self._count_restart(name, state, from_state, initial)
        self._publish(
            Transition(name=name, state=state, from_state=from_state, pid=pid, initial=initial)
        )

    def _count_restart(self, name: str, state: str, from_state: str | None, initial: bool) -> None:
        now = time.monotonic()
        if state == "EXITED":
            self._exited_at[name] = now
        elif state == "STARTING" and not initial:
            exited_at = self._exited_at.get(name)
            soon = exited_at is not None and now - exited_at <= AUTORESTART_S
            if from_state in ("BACKOFF", "RUNNING") or (from_state == "EXITED" and soon):
                self._restarts[name] = self._restarts.get(name, 0) + 1

    def _publish(self, transition: Transition) -> None:
        for subscriber in list(self._subscribers):
            try:
                subscriber(transition)
            except Exception:  # one subscriber must not keep the others from hearing
                log.exception("transition_subscriber_failed", process=transition.name)


def _blank(name: str, group: str) -> ProcessInfo:
    """A process first heard of by an event (its group added since the last poll)."""
    return ProcessInfo(
        name=name, group=group or name, state=0, statename="STOPPED", pid=0, start=0, stop=0,
        now=0, exitstatus=0, spawnerr="", description="", stdout_logfile="", stderr_logfile="",
    )
