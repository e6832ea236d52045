"""Program rules over the store and supervisord: add, edit, enable, start, stop, status, logs.

The store holds what the user asked for; supervisord holds what runs. Every mutation talks to
supervisord first and writes the store last, so a request refused by either leaves both as
they were. Port-range programs register one process group per instance, on demand.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import structlog

from hoodyd import __version__
from hoodyd.config import Config
from hoodyd.errors import Conflict, HoodydError, InvalidRequest, NotFound, WaitTimeout
from hoodyd.programs import conf
from hoodyd.programs.eventlistener import render_listener_section
from hoodyd.programs.events import EventReceiver, ProcessEvent
from hoodyd.programs.flights import Flight, probe_port, start_failure
from hoodyd.programs.registry import BAD_NAME, NOT_RUNNING, Registry
from hoodyd.programs.rules import (
    MAX_PROGRAM_ID,
    build_program,
    check_program_id,
    validate_program,
)
from hoodyd.programs.status import (
    RUNNING_STATES,
    StatsCollector,
    format_uptime,
    instance_from_info,
    process_start_time,
)
from hoodyd.programs.store import ProgramStore
from hoodyd.programs.supervisor import SupervisorFault, SupervisorUnavailable
from hoodyd.programs.supervisord import SupervisordRuntime
from hoodyd.programs.webhooks import WebhookDispatcher
from hoodyd.schemas.daemon import Instance, Program, ProgramInput, StartRequest, StopRequest

log = structlog.get_logger()

LISTENER_FILE = "hoodyd-events.conf"
LISTENER_GROUP = "hoodyd-events"


class ProgramFilter(msgspec.Struct, kw_only=True):
    hoody_kit: bool | None = None
    lazy_load: bool | None = None
    enabled: bool | None = None
    boot: bool | None = None
    port: int | None = None
    port_from: int | None = None
    port_to: int | None = None

    def matches(self, program: Program) -> bool:
        for field in ("hoody_kit", "lazy_load", "enabled", "boot"):
            wanted = getattr(self, field)
            if wanted is not None and getattr(program, field) != wanted:
                return False
        span = program.port_range
        if self.port is not None and (span is None or not span.start <= self.port <= span.end):
            return False
        if self.port_from is not None and self.port_to is not None:
            return span is not None and span.start <= self.port_to and span.end >= self.port_from
        return True


class ProgramService:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.runtime = SupervisordRuntime(config)
        self.client = self.runtime.client(config)
        self.registry = Registry(self.client, self.runtime.include_dir)
        self.store = ProgramStore(config.state_path / "hoodyd.db")
        self.webhooks = WebhookDispatcher(config.notifications, version=__version__)
        self.stats = StatsCollector()
        self.log_dir = config.log_path
        self._programs: dict[int, Program] = {}
        self._owners: dict[str, tuple[int, int | None]] = {}  # supervisord name → (id, port)
        self._lock = asyncio.Lock()  # one mutation of programs at a time
        self._flights: dict[str, Flight] = {}
        self._seen: dict[str, tuple[str, int | None]] = {}  # name → (state, pid) last reported
        self._running: dict[str, int] = {}  # name → pid, for processes last seen RUNNING
        self._event_at: dict[str, float] = {}  # name → monotonic time of its last event
        self._events: EventReceiver | None = None
        self._poller: asyncio.Task[None] | None = None
        # callbacks (process name, state) on every observed transition: ephemeral clean-up
        self.state_listeners: list[Callable[[str, str], None]] = []
        self._primed = False  # the first poll records states; later ones report transitions
        self._supervisor_lost = False

    # ---- lifecycle -------------------------------------------------------------------

    async def open(self) -> None:
        self.runtime.prepare()
        self._programs = self.store.load_programs()
        self._index_owners()
        await self.webhooks.start()
        if self.config.notifications.event_listener_enabled:
            events_path = self.config.state_path / "events.sock"
            self._events = EventReceiver(events_path, self._on_event)
            await self._events.start()
        try:
            await self.runtime.ensure_running(self.client)
            await self.reconcile()
            await self._poll_once()  # the states found at start-up are no transitions
        except HoodydError as exc:
            # hoodyd still serves; requests get 503 until supervisord is back
            log.error("supervisor_unavailable_at_start", error=exc.message)
            self._supervisor_lost = True
        self._poller = asyncio.create_task(self._poll_forever())

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        for flight in list(self._flights.values()):
            if flight.task is not None:
                flight.task.cancel()
        if self._events is not None:
            self._events.close()
        await self.webhooks.close()
        await self.client.close()
        self.store.close()

    # ---- queries ---------------------------------------------------------------------

    def get(self, program_id: int) -> Program:
        program = self._programs.get(program_id)
        if program is None:
            raise NotFound(f"Program with ID {program_id} not found", reason="PROGRAM_NOT_FOUND")
        return program

    def find(self, where: ProgramFilter) -> list[Program]:
        return [p for p in self._programs.values() if where.matches(p)]

    async def status_map(self) -> dict[str, dict[str, Any]]:
        return {str(info["name"]): info for info in await self.client.all_process_info()}

    async def status_of(
        self, program_id: int, *, port: int | None, with_stats: bool
    ) -> dict[str, Any]:
        """One program's status (one instance with `port`); stats lifted out beside it."""
        program = self.get(program_id)
        if port is not None:
            self.check_port(program, port)
        status = self.program_status(
            program, await self.status_map(), with_stats=with_stats, port=port
        )
        answer: dict[str, Any] = {"success": True, "status": status}
        if with_stats and "stats" in status:
            answer["stats"] = status.pop("stats")
        return answer

    def program_status(
        self,
        program: Program,
        infos: dict[str, dict[str, Any]],
        *,
        with_stats: bool = False,
        port: int | None = None,
    ) -> dict[str, Any]:
        """ProgramStatus for a standard program; the port-range object (or one instance)."""
        if program.port_range is None:
            name = conf.instance_name(program, None)
            instance = instance_from_info(infos.get(name), name, None)
            body = {"id": program.id, **self._instance_body(instance, with_stats)}
            body.pop("port", None)
            body.pop("instance_name", None)
            return body
        ports = [port] if port is not None else self._known_ports(program, infos)
        instances = []
        for each in ports:
            name = conf.instance_name(program, each)
            instance = instance_from_info(infos.get(name), name, each)
            instances.append(self._instance_body(instance, with_stats))
        if port is not None:
            return instances[0]
        return {
            "type": "port-range",
            "running_instances": sum(1 for i in instances if i["status"] == "RUNNING"),
            "total_instances": len(program.ports()),
            "instances": instances,
        }

    def _instance_body(self, instance: Instance, with_stats: bool) -> dict[str, Any]:
        body: dict[str, Any] = msgspec.to_builtins(instance)
        if with_stats and instance.pid is not None:
            body["stats"] = self.stats.collect(instance.pid)
        elif "stats" in body:
            body.pop("stats")
        for extension in ("exitstatus", "spawnerr"):
            if body.get(extension) is None:
                body.pop(extension, None)
        return body

    def _known_ports(self, program: Program, infos: dict[str, dict[str, Any]]) -> list[int]:
        """Instances that exist in supervisord, in port order (a range may hold 1000 ports)."""
        return sorted(
            port
            for name, (owner, port) in self._owners.items()
            if owner == program.id and port is not None and name in infos
        )

    async def logs(
        self, program: Program, *, stream: str, lines: int, port: int | None
    ) -> dict[str, Any]:
        if program.port_range is not None and port is None:
            raise InvalidRequest("Port parameter required", reason="PORT_REQUIRED")
        port = self.check_port(program, port) if port is not None else None
        return await read_log(program, stream=stream, lines=lines, port=port, log_dir=self.log_dir)

    # ---- mutations -------------------------------------------------------------------

    async def add(self, given: ProgramInput) -> Program:
        async with self._lock:
            program_id = (
                check_program_id(given.id) if isinstance(given.id, int) else self._next_id()
            )
            if program_id in self._programs:
                raise Conflict(f"Program with ID {program_id} already exists", reason="ID_IN_USE")
            program = self._build(given, program_id, None)
            if program.enabled:
                await self._register(program)
            try:
                await self.store.save_program(program)
            except Exception:
                await self._unregister(program)
                raise
            self._programs[program.id] = program
            self._index_owners()
            log.info("program_added", program_id=program.id, name=program.name)
            return program

    async def edit(self, program_id: int, given: ProgramInput) -> Program:
        async with self._lock:
            current = self.get(program_id)
            program = self._build(given, program_id, current)
            if program == current:
                return current
            if current.enabled or program.enabled:
                await self._reregister(current, program)
            await self.store.save_program(program)
            self._programs[program.id] = program
            self._index_owners()
            log.info("program_edited", program_id=program.id, name=program.name)
            return program

    async def remove(self, program_id: int) -> None:
        async with self._lock:
            program = self.get(program_id)
            await self._unregister(program)
            await self.store.delete_program(program_id)
            del self._programs[program_id]
            self._index_owners()
            log.info("program_removed", program_id=program_id, name=program.name)

    async def set_enabled(self, program_id: int, enabled: bool) -> Program:
        async with self._lock:
            current = self.get(program_id)
            program = msgspec.structs.replace(current, enabled=enabled)
            if enabled:
                await self._register(program)
            else:
                await self._unregister(current)
            await self.store.save_program(program)
            self._programs[program_id] = program
            self._index_owners()
            log.info("program_enabled" if enabled else "program_disabled", program_id=program_id)
            return program

    async def reset(self) -> int:
        """Replace every program with the defaults file's, re-applying the enabled ones."""
        defaults = load_defaults(Path(self.config.programs.defaults_file))
        async with self._lock:
            programs: list[Program] = []
            for index, given in enumerate(defaults, start=1):
                program_id = check_program_id(given.id) if isinstance(given.id, int) else index
                program = self._build(given, program_id, None)
                validate_program(
                    program,
                    programs,
                    log_dir=self.log_dir,
                    max_port_range=self.config.programs.max_port_range,
                )
                programs.append(program)
            for current in list(self._programs.values()):
                await self._unregister(current)
            for program in programs:
                if program.enabled:
                    await self._register(program)
            await self.store.replace_programs(programs)
            self._programs = {p.id: p for p in programs}
            self._index_owners()
            log.info("programs_reset", count=len(programs))
            return len(programs)

    def _build(self, given: ProgramInput, program_id: int, current: Program | None) -> Program:
        program = build_program(
            given,
            program_id=program_id,
            current=current,
            allow_insecure_webhooks=self.config.notifications.allow_insecure_urls,
        )
        validate_program(
            program,
            self._programs.values(),
            log_dir=self.log_dir,
            max_port_range=self.config.programs.max_port_range,
        )
        return program

    def _next_id(self) -> int:
        """One more than the highest id; once that passes the bound (an id given explicitly
        near it, or a store from before the bound), the lowest id not in use."""
        following = max(self._programs, default=0) + 1
        if following <= MAX_PROGRAM_ID:
            return following
        taken = set(self._programs)
        return next(i for i in range(1, MAX_PROGRAM_ID + 1) if i not in taken)

    # ---- supervisord registration ----------------------------------------------------

    def _render_all(self, program: Program) -> dict[str, str]:
        """filename → conf text of every group the enabled program has registered by default."""
        if program.port_range is None:
            autostart = program.boot and not program.lazy_load
            text = conf.render(program, port=None, autostart=autostart, log_dir=self.log_dir)
            return {conf.conf_filename(program, None): text}
        if not program.boot:
            return {}  # instances are registered when a start names their port
        return {
            conf.conf_filename(program, port): conf.render(
                program, port=port, autostart=True, log_dir=self.log_dir
            )
            for port in program.ports()
        }

    def _owned_files(self, program: Program) -> dict[str, str]:
        prefix = f"{conf.FILE_PREFIX}program-{program.id}"
        return {
            name: text
            for name, text in self.registry.owned_files().items()
            if name == f"{prefix}.conf" or name.startswith(f"{prefix}-")
        }

    async def _register(self, program: Program) -> None:
        files = self._render_all(program)
        await self.registry.apply(dict(files), {_group_of(text) for text in files.values()})

    async def _unregister(self, program: Program) -> None:
        owned = self._owned_files(program)
        if owned:
            await self.registry.apply(
                dict.fromkeys(owned), {_group_of(text) for text in owned.values()}
            )

    async def _reregister(self, current: Program, program: Program) -> None:
        """Bring supervisord from `current` to `program`; instances that ran run again."""
        owned = self._owned_files(current)
        running = await self._running_names(owned.values())
        files: dict[str, str | None] = dict.fromkeys(owned)
        groups = {_group_of(text) for text in owned.values()}
        if program.enabled:
            files.update(self._render_all(program))
            if program.port_range is not None:
                # keep the instances that exist and still fit the new range
                for text in owned.values():
                    port = _port_of(text)
                    if port is not None and port in program.ports():
                        files[conf.conf_filename(program, port)] = conf.render(
                            program, port=port, autostart=program.boot, log_dir=self.log_dir
                        )
            groups |= {_group_of(text) for text in files.values() if text is not None}
        await self.registry.apply(files, groups)
        for name in running:
            if any(text and _group_of(text) == name for text in files.values()):
                with contextlib.suppress(SupervisorFault):
                    await self.client.start(name)

    async def _running_names(self, texts: Any) -> list[str]:
        names = [_group_of(text) for text in texts]
        if not names:
            return []
        infos = await self.status_map()
        return [n for n in names if infos.get(n, {}).get("statename") in RUNNING_STATES]

    async def _ensure_instance(self, program: Program, port: int | None) -> None:
        """Register the instance's group if supervisord does not know it (on-demand ports,
        or a supervisord that came back without it)."""
        files: dict[str, str | None]
        if port is None:
            files = dict(self._render_all(program))
        else:
            text = conf.render(program, port=port, autostart=program.boot, log_dir=self.log_dir)
            files = {conf.conf_filename(program, port): text}
        name = conf.instance_name(program, port)
        await self.registry.apply(files, {name})
        self._owners[name] = (program.id, port)

    # ---- start / stop ----------------------------------------------------------------

    def check_port(self, program: Program, port: int | None) -> int | None:
        if program.port_range is None:
            if port is not None:
                raise InvalidRequest(
                    f"Program {program.name} has no port_range; port is not accepted",
                    reason="PORT_NOT_ACCEPTED",
                )
            return None
        if port is None:
            raise InvalidRequest("Port parameter required", reason="PORT_REQUIRED")
        if port not in program.ports():
            raise InvalidRequest(
                f"Port {port} is outside the program's port_range "
                f"{program.port_range.start}-{program.port_range.end}",
                reason="PORT_OUT_OF_RANGE",
            )
        return port

    def _enabled(self, program_id: int) -> Program:
        program = self.get(program_id)
        if not program.enabled:
            raise Conflict(f"Program with ID {program_id} is disabled", reason="PROGRAM_DISABLED")
        return program

    async def start(self, program_id: int, request: StartRequest) -> tuple[bool, Instance]:
        """Start (or join the start of) one instance. Returns (already_running, instance)."""
        program = self._enabled(program_id)
        port = self.check_port(program, request.port)
        if request.wait_for == "port" and port is None:
            raise InvalidRequest(
                'wait_for "port" needs a port-range program and a port', reason="PORT_REQUIRED"
            )
        name = conf.instance_name(program, port)
        flight = self._flights.get(name)
        if flight is not None:
            log.info("instance_join", instance=name)
        else:
            known = self._known_running(name, port) if request.if_not_running else None
            if known is not None:
                return await self._answer_running(request, name, port, known)
            info = await self._info(name)
            flight = self._flights.get(name)  # another caller may have begun meanwhile
            if flight is None:
                if info is not None and info["statename"] == "RUNNING":
                    running = instance_from_info(info, name, port)
                    return await self._answer_running(request, name, port, running)
                flight = self._launch(program, port, name, info)
        already_running = await asyncio.shield(flight.spawned)
        if already_running and not request.if_not_running:
            raise Conflict(f"{name} is already running", reason="ALREADY_RUNNING")
        if not request.wait:
            return already_running, flight.last
        waiting = flight.wait_port() if request.wait_for == "port" else flight.settled
        try:
            instance = await asyncio.wait_for(asyncio.shield(waiting), request.timeout)
        except TimeoutError:
            raise WaitTimeout(
                f"{name} did not become ready within {request.timeout}s (last state "
                f"{flight.last.status})",
                reason="WAIT_TIMEOUT",
                extra={"instance": flight.last, "already_running": already_running},
            ) from None
        return already_running, instance

    def _known_running(self, name: str, port: int | None) -> Instance | None:
        """The instance as last reported RUNNING by supervisord (event or poll), if its pid is
        still alive: answers an idempotent start without a round trip to supervisord."""
        pid = self._running.get(name)
        if pid is None:
            return None
        started = process_start_time(pid)
        if started is None:
            self._running.pop(name, None)
            return None
        uptime = format_uptime(int(time.time() - started))
        return Instance(port=port, instance_name=name, status="RUNNING", pid=pid, uptime=uptime)

    async def _answer_running(
        self, request: StartRequest, name: str, port: int | None, instance: Instance
    ) -> tuple[bool, Instance]:
        if not request.if_not_running:
            raise Conflict(f"{name} is already running", reason="ALREADY_RUNNING")
        if request.wait and request.wait_for == "port" and port is not None:
            try:
                await asyncio.wait_for(probe_port("127.0.0.1", port, None), request.timeout)
            except TimeoutError:
                raise WaitTimeout(
                    f"{name} is running but port {port} did not accept within "
                    f"{request.timeout}s",
                    extra={"instance": instance},
                ) from None
        return True, instance

    def _launch(
        self, program: Program, port: int | None, name: str, info: dict[str, Any] | None
    ) -> Flight:
        flight = Flight(name, port)
        self._flights[name] = flight

        async def fly() -> None:
            try:
                already = info is not None and info["statename"] in RUNNING_STATES
                if not already:
                    await self._spawn(program, port, name, info)
                flight.spawned.set_result(already)
                await flight.watch(self._info, self._stderr_tail)
            except BaseException as exc:
                failure = (
                    exc
                    if isinstance(exc, Exception)
                    else Conflict(f"{name} was stopped while starting", reason="START_CANCELLED")
                )
                for future in (flight.spawned, flight.settled):
                    if not future.done():
                        future.set_exception(failure)
                if not isinstance(exc, Exception):
                    raise
            finally:
                self._flights.pop(name, None)
                log.info("instance_settled", instance=name, state=flight.last.status)

        flight.task = asyncio.create_task(fly())
        return flight

    async def _spawn(
        self, program: Program, port: int | None, name: str, info: dict[str, Any] | None
    ) -> None:
        if info is None:
            await self._ensure_instance(program, port)
        try:
            await self.client.start(name, wait=False)
        except SupervisorFault as fault:
            if fault.code == 60:  # ALREADY_STARTED: it began between our look and our start
                return
            failed = instance_from_info(await self._info(name), name, port)
            raise await start_failure(failed, self._stderr_tail) from fault
        log.info("program_started", instance=name, program_id=program.id, port=port)

    async def stop(self, program_id: int, request: StopRequest) -> list[str]:
        program = self.get(program_id)
        if program.port_range is None:
            if request.port is not None:
                self.check_port(program, request.port)
            names = [conf.instance_name(program, None)]
        elif request.all:
            names = [conf.instance_name(program, port) for port in self._registered_ports(program)]
        elif request.port is not None:
            names = [conf.instance_name(program, self.check_port(program, request.port))]
        else:
            raise InvalidRequest(
                "Port parameter required (or all: true) for a port-range program",
                reason="PORT_REQUIRED",
            )
        stopped = []
        for name in names:
            flight = self._flights.get(name)
            if flight is not None and flight.task is not None:
                flight.task.cancel()
            try:
                await self.client.stop(name, wait=True)
                stopped.append(name)
            except SupervisorFault as fault:
                if fault.code not in (NOT_RUNNING, BAD_NAME):
                    raise
        log.info("program_stopped", program_id=program_id, instances=stopped)
        return stopped

    def _registered_ports(self, program: Program) -> list[int]:
        return sorted(
            port
            for owner, port in self._owners.values()
            if owner == program.id and port is not None
        )

    # ---- supervisord state ----------------------------------------------------------

    async def _info(self, name: str) -> dict[str, Any] | None:
        try:
            return await self.client.process_info(name)
        except SupervisorFault as fault:
            if fault.code == BAD_NAME:
                return None
            raise

    async def _stderr_tail(self, name: str) -> str:
        try:
            return await self.client.tail_stderr(name, 4096)
        except SupervisorFault:
            return ""

    def _index_owners(self) -> None:
        owners: dict[str, tuple[int, int | None]] = {}
        for program in self._programs.values():
            if program.port_range is None:
                owners[conf.instance_name(program, None)] = (program.id, None)
        for text in self.registry.owned_files().values():
            header = _header(text)
            if header is not None and header[0] in self._programs:
                owners[_group_of(text)] = header
        self._owners = owners

    async def reconcile(self) -> list[str]:
        """Make supervisord match the store; log every change. Running programs whose
        definition did not change are left alone (same pids)."""
        changes: list[str] = []
        listener = (
            render_listener_section(
                sys.executable,
                str(self.config.state_path / "events.sock"),
                str(self.runtime.dir if self.runtime.embedded else self.log_dir),
            )
            if self.config.notifications.event_listener_enabled
            else None
        )
        files: dict[str, str | None] = {LISTENER_FILE: listener}
        groups = {LISTENER_GROUP}
        on_disk = self.registry.owned_files()
        for filename, text in on_disk.items():
            if filename == LISTENER_FILE or filename.startswith(f"{conf.FILE_PREFIX}quick-"):
                continue
            wanted = self._wanted_conf(text)
            if wanted != text:
                files[filename] = wanted
                groups.add(_group_of(text))
                changes.append(f"{'rewrote' if wanted else 'removed stale'} {filename}")
        for program in self._programs.values():
            if not program.enabled:
                continue
            for filename, text in self._render_all(program).items():
                groups.add(_group_of(text))
                if filename not in on_disk:
                    files[filename] = text
                    changes.append(f"wrote {filename}")
        infos = await self.status_map()
        added, changed, removed = await self.registry.apply(files, groups)
        present = {_group_of(text) for text in self.registry.owned_files().values()}
        for group in sorted(present - set(infos) - set(added)):
            with contextlib.suppress(SupervisorFault):
                await self.client.add_group(group)
                changes.append(f"re-added group {group}")
        changes += [f"supervisord added {g}" for g in added]
        changes += [f"supervisord changed {g}" for g in changed]
        changes += [f"supervisord removed {g}" for g in removed]
        self._index_owners()
        log.info("reconciled", changes=changes)
        return changes

    def _wanted_conf(self, text: str) -> str | None:
        """What a hoodyd conf file on disk should contain now; None if it should go."""
        header = _header(text)
        program = self._programs.get(header[0]) if header else None
        if header is None or program is None or not program.enabled:
            return None
        port = header[1]
        if port is None:
            if program.port_range is not None:
                return None
            return self._render_all(program)[conf.conf_filename(program, None)]
        if program.port_range is None or port not in program.ports():
            return None
        return conf.render(program, port=port, autostart=program.boot, log_dir=self.log_dir)

    async def _poll_forever(self) -> None:
        """Reconcile observed states (webhooks never miss a change), bring an embedded
        supervisord back if it died, and reconcile the store once supervisord is back."""
        interval = self.config.supervisor.poll_interval
        while True:
            await asyncio.sleep(interval)
            asked_at = time.monotonic()
            try:
                infos = await self.status_map()
            except SupervisorUnavailable:
                if not self._supervisor_lost:
                    log.error("supervisor_lost")
                self._supervisor_lost = True
                if self.runtime.embedded:
                    with contextlib.suppress(HoodydError):
                        await self.runtime.ensure_running(self.client)
                continue
            except HoodydError as exc:
                log.warning("poll_failed", error=exc.message)
                continue
            if self._supervisor_lost:
                try:
                    async with self._lock:
                        await self.reconcile()
                except HoodydError as exc:
                    log.warning("reconcile_failed", error=exc.message)
                    continue
                self._supervisor_lost = False
                log.info("supervisor_back")
                continue
            self._record(infos, asked_at)

    async def _poll_once(self) -> None:
        asked_at = time.monotonic()
        self._record(await self.status_map(), asked_at)

    def _record(self, infos: dict[str, dict[str, Any]], asked_at: float) -> None:
        for name, info in infos.items():
            if self._event_at.get(name, 0.0) > asked_at:
                continue  # an event arrived while the poll was under way: it is newer
            self._observe(name, str(info["statename"]), int(info["pid"]) or None, source="poll")
        self._primed = True

    def _on_event(self, event: ProcessEvent) -> None:
        self._event_at[event.process_name] = time.monotonic()
        self._observe(event.process_name, event.state, event.pid, source="event",
                      from_state=event.from_state)
        flight = self._flights.get(event.process_name)
        if flight is not None:
            flight.wakeup.set()

    def _observe(
        self, name: str, state: str, pid: int | None, *, source: str,
        from_state: str | None = None,
    ) -> None:
        # only a RUNNING process's pid identifies it: events and polls disagree on the pid
        # they report for other states
        key = (state, pid if state == "RUNNING" else None)
        if state == "RUNNING" and pid:
            self._running[name] = pid
        else:
            self._running.pop(name, None)
        previous = self._seen.get(name)
        if previous == key:
            return
        self._seen[name] = key
        for listener in self.state_listeners:
            listener(name, state)
        owner = self._owners.get(name)
        program = self._programs.get(owner[0]) if owner else None
        if program is None or (source == "poll" and not self._primed):
            return  # what the first poll sees is the starting point, not a transition
        self.webhooks.notify(
            program, state, from_state=from_state or (previous[0] if previous else None), pid=pid
        )


# ---- helpers ---------------------------------------------------------------------------


def _header(text: str) -> tuple[int, int | None] | None:
    """(program id, port) from the comment line `render` puts first."""
    first = text.split("\n", 1)[0]
    if not first.startswith("; hoodyd program id="):
        return None
    fields = dict(part.split("=", 1) for part in first.split() if "=" in part)
    port = fields.get("port")
    return int(fields["id"]), int(port) if port else None


def _group_of(text: str) -> str:
    for line in text.splitlines():
        if line.startswith("[") and ":" in line:
            return line[line.index(":") + 1 : line.rindex("]")]
    raise ValueError("no section in conf text")


def _port_of(text: str) -> int | None:
    header = _header(text)
    return header[1] if header else None


def load_defaults(path: Path) -> list[ProgramInput]:
    if not path.exists():
        return []
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InvalidRequest(f"defaults file {path} is not valid JSON: {exc}",
                             reason="BAD_DEFAULTS") from exc
    items = raw.get("programs", []) if isinstance(raw, dict) else raw
    try:
        return msgspec.convert(items, list[ProgramInput])
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"defaults file {path}: {exc}", reason="BAD_DEFAULTS") from exc


async def read_log(
    program: Program,
    *,
    stream: str,
    lines: int,
    port: int | None,
    log_dir: Path,
    folder: str | None = None,
) -> dict[str, Any]:
    if not program.logs_enabled:
        raise Conflict("Logs are disabled for this program", reason="LOGS_DISABLED")
    path = conf.log_file(program, stream, log_dir, port, folder=folder)
    text = await asyncio.to_thread(tail_lines, path, lines)
    return {
        "success": True,
        "error": None,
        "logs": text,
        "type": stream,
        "lines": lines,
        "log_file": str(path),
    }


def tail_lines(path: Path, lines: int, block: int = 65536) -> str:
    """The last `lines` lines of a file, reading backwards in blocks."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            end = handle.tell()
            chunks: deque[bytes] = deque()
            newlines = 0
            position = end
            while position > 0 and newlines <= lines:
                step = min(block, position)
                position -= step
                handle.seek(position)
                chunk = handle.read(step)
                chunks.appendleft(chunk)
                newlines += chunk.count(b"\n")
    except FileNotFoundError:
        return ""
    data = b"".join(chunks)
    kept = data.splitlines(keepends=True)[-lines:]
    return b"".join(kept).decode("utf-8", errors="replace")

