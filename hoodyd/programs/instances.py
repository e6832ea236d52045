"""Starting, joining and stopping instances: a standard program's process, or one port instance.

A start in flight (`Flight`) lives from the first start request of an instance until the
instance settles (RUNNING, or a failure state). Every caller that arrives meanwhile awaits the
same futures, so 500 simultaneous `if_not_running` starts produce one spawn and 500 identical
answers. A flight re-reads its process when the observer reports a transition of it, and every
50 ms in case no event comes.

A one-shot job's flight (a program another waits on with `exited_ok`) lives as long as its
run: it settles when the job exits, exit 0 as its answer, any other status as a failure. A
flight that has ended (its process left the states it was following) is never joined: a
start that arrives while it wraps up (the stderr tail of a failure) waits for it to settle
and then starts a new run.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any

import structlog

from hoodyd.errors import (
    Conflict,
    HoodydError,
    Reason,
    SupervisorFault,
    UpstreamFailed,
    WaitTimeout,
)
from hoodyd.polling import poll_until
from hoodyd.programs import conf
from hoodyd.programs.observer import Observer, Transition
from hoodyd.programs.registry import Registry
from hoodyd.programs.status import (
    FAILED_STATES,
    RUNNING_STATES,
    format_uptime,
    instance_from_info,
    note_port_ready,
    process_start_time,
    process_status,
)
from hoodyd.programs.supervisor_client import Fault, ProcessInfo, SupervisorClient
from hoodyd.programs.table import ProgramTable
from hoodyd.schemas.daemon import Instance, Program, Started, StartRequest

log = structlog.get_logger()

SETTLE_LIMIT_S = 300.0
# how long a start waits for an ended flight to settle before it begins a new one
WRAP_UP_S = 2.0
# the states a job's run goes through until it ends (startsecs=0: no BACKOFF before an exit)
JOB_RUNNING = frozenset({"STARTING", "RUNNING"})
POLL_S = 0.05
EVENTS_FALLBACK_POLL_S = 0.5  # in case an event datagram is lost
PORT_POLL_S = 0.002
# what a start of a registered program can fail with before anything ran
SPAWN_FAULTS = frozenset({Fault.NO_FILE, Fault.NOT_EXECUTABLE, Fault.SPAWN_ERROR})


def _quiet(future: asyncio.Future[Any]) -> None:
    # a failure nobody waited for must not be reported as "never retrieved"
    if not future.cancelled():
        future.exception()


class Flight:
    def __init__(
        self, name: str, port: int | None, generation: int, *, one_shot: bool = False
    ) -> None:
        loop = asyncio.get_running_loop()
        self.name = name
        self.port = port
        self.generation = generation  # the observer's, for the supervisord it was begun with
        self.one_shot = one_shot  # a job: settles when its run ends, on its exit status
        # the process left the states the flight follows: what it settles with is decided,
        # and a later start must not join it
        self.ended = False
        self.spawned: asyncio.Future[bool] = loop.create_future()  # result: already running
        self.settled: asyncio.Future[Instance] = loop.create_future()
        self.port_ready: asyncio.Future[Instance] | None = None
        self.last = Instance(port=port, instance_name=name, status="STARTING")
        self.wakeup = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        for future in (self.spawned, self.settled):
            future.add_done_callback(_quiet)

    async def watch(self, client: SupervisorClient, observer: Observer) -> None:
        """Follow the instance's state until RUNNING or a failure state (a job: until its run
        ends), then settle. Waits on `wakeup` between reads, which the `poll_until` loop
        cannot. What it reads is what status answers show from then on."""
        deadline = time.monotonic() + SETTLE_LIMIT_S
        while time.monotonic() < deadline:
            state = (await self.read(client, observer)).status
            if self.one_shot:
                ended = state not in JOB_RUNNING and state != "STOPPING"
                succeeded = state == "EXITED" and self.last.exitstatus == 0
            else:
                ended = state in ("RUNNING", "STOPPED") or state in FAILED_STATES
                succeeded = state == "RUNNING"
            if ended:
                self.ended = True
                await self._settle(client, state, succeeded=succeeded)
                return
            self.wakeup.clear()
            # with events, each transition wakes the flight: reading supervisord every 50 ms
            # as well would, with 200 instances starting, flood it with 4000 calls a second
            pause = EVENTS_FALLBACK_POLL_S if observer.hears_events else POLL_S
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wakeup.wait(), pause)
        self.settled.set_exception(
            UpstreamFailed(f"{self.name} did not settle", reason=Reason.START_UNSETTLED)
        )

    async def _settle(self, client: SupervisorClient, state: str, *, succeeded: bool) -> None:
        if succeeded:
            self.settled.set_result(self.last)
        elif state == "STOPPED":
            # only a stop (or a disable, an edit, a removal) stops a process: the start was
            # called off, it did not fail
            self.settled.set_exception(
                Conflict(f"{self.name} was stopped while starting", reason=Reason.START_CANCELLED)
            )
        else:
            failure = await start_failure(client, self.last, ran=self.one_shot)
            self.settled.set_exception(failure)

    async def read(self, client: SupervisorClient, observer: Observer) -> Instance:
        """Read the instance from supervisord into `last` and the observer's picture. A job's
        state is supervisord's own: a pid already dead but not yet reaped reads EXITED
        elsewhere, without the exit status supervisord has yet to record."""
        asked_at = time.monotonic()
        info = await client.find_process(self.name)
        observer.note(info, self.name, asked_at)
        self.last = instance_from_info(info, self.name, self.port, checked=self.one_shot)
        return self.last

    def wait_port(self, host: str = "127.0.0.1") -> asyncio.Future[Instance]:
        """A future that resolves once the instance accepts TCP connections on its port."""
        if self.port_ready is None:
            self.port_ready = asyncio.ensure_future(self._port_then_last(host))
            self.port_ready.add_done_callback(_quiet)
        return self.port_ready

    async def _port_then_last(self, host: str) -> Instance:
        assert self.port is not None
        if not await probe_port(host, self.port, self, timeout=SETTLE_LIMIT_S):
            raise WaitTimeout(f"{self.name} did not accept connections on port {self.port}")
        return self.last


async def probe_port(host: str, port: int, flight: Flight | None, *, timeout: float) -> bool:
    """Connect until the port accepts (True) or `timeout` passes (False); give up at once if
    the flight settles as a failure."""

    async def accepts() -> bool | None:
        try:
            _reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            if flight is not None and flight.settled.done() and flight.settled.exception():
                raise flight.settled.exception() from None  # type: ignore[misc]
            return None
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    return bool(await poll_until(accepts, timeout=timeout, interval=PORT_POLL_S))


async def start_failure(
    client: SupervisorClient, instance: Instance, *, ran: bool = False
) -> HoodydError:
    """The error a failed start answers: its state, exit status, spawn error and the tail of
    its stderr. `ran`: a job that ran to its end, whose exit is no failed start."""

    # supervisord drains a dead process's pipes on a later turn of its loop: an empty tail
    # right after the exit may just be early
    async def tail() -> str | None:
        return await client.stderr_tail(instance.instance_name) or None

    try:
        text = await poll_until(tail, timeout=0.15, interval=0.05) or ""
    except HoodydError:
        text = ""
    detail = f": {instance.spawnerr}" if instance.spawnerr else ""
    message = f"{instance.instance_name} failed to start ({instance.status}){detail}"
    extra: dict[str, object] = {
        "instance": instance,
        "state": instance.status,
        "stderr_tail": text[-4096:],
    }
    if instance.status == "EXITED" and instance.exitstatus is not None:
        extra["exitstatus"] = instance.exitstatus
        if ran:
            message = f"{instance.instance_name} exited with status {instance.exitstatus}"
    return UpstreamFailed(message, reason=Reason.START_FAILED, extra=extra)


@dataclass(slots=True, kw_only=True)
class Begun:
    """A start that has acted: its flight (or, `running`, the instance found running)."""

    name: str
    port: int | None
    already_running: bool
    flight: Flight | None = None
    running: Instance | None = None


class Instances:
    """Starts in flight by supervisord name; instances registered on demand."""

    def __init__(
        self,
        client: SupervisorClient,
        registry: Registry,
        table: ProgramTable,
        observer: Observer,
    ) -> None:
        self.client = client
        self.registry = registry
        self.table = table
        self.observer = observer
        self._flights: dict[str, Flight] = {}
        self._tasks: set[asyncio.Task[None]] = set()  # every flight's, a replaced one's too
        observer.subscribe(self._wake)

    def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    def _wake(self, transition: Transition) -> None:
        flight = self._flights.get(transition.name)
        if flight is not None:
            flight.wakeup.set()

    # ---- start -------------------------------------------------------------------------

    async def start(self, program: Program, port: int | None, request: StartRequest) -> Started:
        """Start (or join the start of) one instance of an enabled program."""
        return await self.finish(await self.begin(program, port, request), request)

    async def begin(
        self,
        program: Program,
        port: int | None,
        request: StartRequest,
        *,
        one_shot: bool = False,
    ) -> Begun:
        """The part of a start that acts: the instance is found running, or its spawn is
        under way (joined or begun, and supervisord has answered it). What a caller then
        waits for is `finish`, which changes nothing. A `one_shot` job found running is
        followed to its exit like one it starts (its wait ends when it has run)."""
        name = conf.instance_name(program, port)
        flight = await self._joinable(name)
        if flight is not None:
            log.info("instance_join", instance=name)
        else:
            known = (
                self._known_running(name, port) if request.if_not_running and not one_shot else None
            )
            if known is not None:
                return self._running(request, name, port, known)
            info = await self.client.find_process(name)
            flight = self._flight(name)  # another caller may have begun meanwhile
            if flight is None:
                if info is not None and info.statename == "RUNNING" and not one_shot:
                    running = instance_from_info(info, name, port)
                    return self._running(request, name, port, running)
                flight = self._launch(program, port, name, info, one_shot=one_shot)
        already_running = await asyncio.shield(flight.spawned)
        if already_running and not request.if_not_running:
            raise Conflict(f"{name} is already running", reason=Reason.ALREADY_RUNNING)
        return Begun(name=name, port=port, already_running=already_running, flight=flight)

    async def finish(self, begun: Begun, request: StartRequest) -> Started:
        """What the caller of a begun start waits for (`wait`, `wait_for`)."""
        name, flight = begun.name, begun.flight
        if flight is None:
            assert begun.running is not None
            return await self._answer_running(request, name, begun.port, begun.running)
        already_running = begun.already_running
        if not request.wait:
            return Started(already_running=already_running, instance=process_status(flight.last))
        waiting = flight.wait_port() if request.wait_for == "port" else flight.settled
        try:
            instance = await asyncio.wait_for(asyncio.shield(waiting), request.timeout)
        except TimeoutError:
            raise WaitTimeout(
                f"{name} did not become ready within {request.timeout}s (last state "
                f"{flight.last.status})",
                reason=Reason.WAIT_TIMEOUT,
                extra={"instance": flight.last, "already_running": already_running},
            ) from None
        if request.wait_for == "port":
            # it serves: from now on it reads RUNNING, before supervisord's startsecs pass
            instance = note_port_ready(self.observer, instance)
        return Started(already_running=already_running, instance=process_status(instance))

    @staticmethod
    def _running(request: StartRequest, name: str, port: int | None, found: Instance) -> Begun:
        if not request.if_not_running:
            raise Conflict(f"{name} is already running", reason=Reason.ALREADY_RUNNING)
        return Begun(name=name, port=port, already_running=True, running=found)

    def _flight(self, name: str) -> Flight | None:
        """The start in flight to join, if any. One begun with a supervisord since lost is not
        joined: its process died with that supervisord, and joining it would answer a start
        (the bring-back of what should run, among others) without starting anything. Nor is
        one that has ended: joining it would answer with a run that is over."""
        flight = self._flights.get(name)
        if flight is None or flight.generation != self.observer.generation or flight.ended:
            return None
        return flight

    async def _joinable(self, name: str) -> Flight | None:
        """The start in flight to join, if any, once any that has ended has settled (so its
        answer is its own run's, and a new run begins after it). A job's flight lives as long
        as its run, so whether its process is still up is asked of supervisord: a caller that
        has just seen the job exit must not join a flight that has yet to read the exit."""
        while (flight := self._flights.get(name)) is not None:
            if self._flight(name) is None and not flight.ended:
                return None  # begun with a supervisord since lost
            if not flight.ended and flight.one_shot and flight.spawned.done():
                info = await self.client.find_process(name)
                if info is None or info.statename not in JOB_RUNNING:
                    flight.ended = True
            if not flight.ended:
                return flight
            flight.wakeup.set()  # it reads its end now rather than at its next poll
            await asyncio.wait([flight.settled], timeout=WRAP_UP_S)
            if self._flights.get(name) is flight:  # it did not settle in time: forget it
                del self._flights[name]
        return None

    def _known_running(self, name: str, port: int | None) -> Instance | None:
        """The instance as last reported RUNNING by supervisord (event or poll), if its pid is
        still alive: answers an idempotent start without a round trip to supervisord."""
        pid = self.observer.running_pid(name)
        started = process_start_time(pid) if pid is not None else None
        if pid is None or started is None:
            return None
        uptime = format_uptime(int(time.time() - started))
        return Instance(port=port, instance_name=name, status="RUNNING", pid=pid, uptime=uptime)

    async def _answer_running(
        self, request: StartRequest, name: str, port: int | None, instance: Instance
    ) -> Started:
        if not request.if_not_running:
            raise Conflict(f"{name} is already running", reason=Reason.ALREADY_RUNNING)
        probing = port if request.wait and request.wait_for == "port" else None
        if probing and not await probe_port("127.0.0.1", probing, None, timeout=request.timeout):
            raise WaitTimeout(
                f"{name} is running but port {port} did not accept within {request.timeout}s",
                extra={"instance": instance},
            )
        return Started(already_running=True, instance=process_status(instance))

    def _launch(
        self,
        program: Program,
        port: int | None,
        name: str,
        info: ProcessInfo | None,
        *,
        one_shot: bool = False,
    ) -> Flight:
        flight = Flight(name, port, self.observer.generation, one_shot=one_shot)
        self._flights[name] = flight

        async def fly() -> None:
            try:
                already = info is not None and info.statename in RUNNING_STATES
                if not already:
                    await self._spawn(program, port, name, info, one_shot=one_shot)
                # answers and status reads from now on show the spawned process (its pid)
                await flight.read(self.client, self.observer)
                flight.spawned.set_result(already)
                await flight.watch(self.client, self.observer)
            except BaseException as exc:
                flight.ended = True
                failure = (
                    exc
                    if isinstance(exc, Exception)
                    else Conflict(
                        f"{name} was stopped while starting", reason=Reason.START_CANCELLED
                    )
                )
                for future in (flight.spawned, flight.settled):
                    if not future.done():
                        future.set_exception(failure)
                if not isinstance(exc, Exception):
                    raise
            finally:
                if self._flights.get(name) is flight:  # not replaced by a later one
                    del self._flights[name]
                log.info("instance_settled", instance=name, state=flight.last.status)

        flight.task = asyncio.create_task(fly())
        self._tasks.add(flight.task)
        flight.task.add_done_callback(self._tasks.discard)
        return flight

    async def _spawn(
        self,
        program: Program,
        port: int | None,
        name: str,
        info: ProcessInfo | None,
        *,
        one_shot: bool = False,
    ) -> None:
        if info is None:  # not registered: an on-demand port, or lost by a restart
            self.table.own(await self.registry.ensure_instance(program, port), program.id, port)
        try:
            await self.client.start(name, wait=False)
        except SupervisorFault as fault:
            if fault.code == Fault.ALREADY_STARTED:  # it began between our look and our start
                return
            now = await self.client.find_process(name)
            # supervisord reaps right after the spawn: a job that already exited non-zero is
            # a SPAWN_ERROR ("Bad exit code N") to it, but it ran (a spawn that fails stops
            # in BACKOFF; the faults raised before any spawn leave the last run's state):
            # its flight reads the exit and answers with its status
            ran = fault.code == Fault.SPAWN_ERROR and now is not None and now.statename == "EXITED"
            if not (one_shot and ran):
                failed = instance_from_info(now, name, port)
                raise await start_failure(self.client, failed) from fault
        log.info("program_started", instance=name, program_id=program.id, port=port)

    async def restart(self, names: list[str]) -> None:
        """Start again what ran before its group was re-registered."""
        for name in names:
            try:
                await self.client.start(name)
            except SupervisorFault as fault:
                if fault.code == Fault.ALREADY_STARTED:  # a boot program starts with its group
                    continue
                if fault.code in SPAWN_FAULTS:  # the new definition is in place but fails
                    log.warning("instance_restart_failed", instance=name, error=fault.message)
                    continue
                raise

    # ---- stop --------------------------------------------------------------------------

    async def stop(self, names: list[str]) -> list[str]:
        """Stop each named instance (a start in flight is called off); the names that were
        running. Stopping what does not run, or is not registered, is no error."""
        stopped = []
        for name in names:
            flight = self._flights.get(name)
            if flight is not None and flight.task is not None:
                flight.task.cancel()
            try:
                await self.client.stop(name, wait=True)
                stopped.append(name)
            except SupervisorFault as fault:
                if fault.code not in (Fault.NOT_RUNNING, Fault.BAD_NAME):
                    raise
        if stopped:  # read back the stopped processes only, not every other program's
            await self.observer.refresh_names(stopped)
        return stopped
