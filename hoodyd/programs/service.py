"""Program control: the programs' CRUD and lifecycle over the table, the store and supervisord.

The store holds what callers asked for (the desired state: programs, enabled, which instances
should run); supervisord holds what runs. Every mutation is one `Registry.change`: its conf
files written aside and moved into place, then its one store transaction commits last; a
disk that refuses any write, fsync or rename up to the commit leaves files and store exactly
as they were, with no write needed to undo it. Only then is supervisord brought to it; when
supervisord refuses, the store is put back and supervisord converged back to it, so a failed
request leaves both as they were and says so. Each mutation touches its own program's files
and groups only. Port-range programs register one process group per instance, on demand.

The service composes its parts, each the one place for its job:

    ProgramTable   the programs in memory, and which supervisord names they own
    ProgramStore   the programs on disk
    Registry       conf files and supervisord process groups
    Observer       what runs: events and polls as transitions, published to subscribers
                   (webhooks here, quick-start clean-up, starts in flight)
    Instances      start, join and stop of instances
    StatusReader   status answers; `read_log` log answers

`_converge` is where supervisord is brought back to the store (groups, and the instances that
should run): at start-up, after a failed mutation, and whenever supervisord answers again
after it was gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import msgspec
import structlog
from msgspec import UNSET

from hoodyd import __version__
from hoodyd.config import Config
from hoodyd.errors import (
    Conflict,
    HoodydError,
    InvalidRequest,
    Reason,
    ServiceUnavailable,
    StateNotSaved,
    SupervisorFault,
    UpstreamFailed,
    WaitTimeout,
)
from hoodyd.polling import poll_until
from hoodyd.private import private_dir
from hoodyd.programs import conf
from hoodyd.programs.dependencies import (
    DependencyStarter,
    Seen,
    exit_targets,
    start_order,
)
from hoodyd.programs.desired import ShouldRun
from hoodyd.programs.embedded import SupervisordRuntime
from hoodyd.programs.eventlistener import render_listener_section
from hoodyd.programs.idle import IdleReaper
from hoodyd.programs.instances import Instances
from hoodyd.programs.logs import read_log
from hoodyd.programs.observer import Observer, Transition
from hoodyd.programs.probes import HealthEvent, Prober
from hoodyd.programs.registry import Files, NotApplied, Registry
from hoodyd.programs.rules import build_program, check_port, check_program_id, validate_program
from hoodyd.programs.status import StatusReader
from hoodyd.programs.store import ProgramStore
from hoodyd.programs.supervisor_client import ProcessInfo
from hoodyd.programs.table import ProgramFilter, ProgramTable
from hoodyd.programs.webhook_delivery import WebhookDispatcher
from hoodyd.schemas.daemon import (
    AnyStatus,
    Health,
    LogTail,
    Program,
    ProgramHealth,
    ProgramInput,
    Started,
    StartRequest,
    StatusAnswer,
    StopRequest,
)

log = structlog.get_logger()

ALIVE = frozenset({"STARTING", "RUNNING", "BACKOFF", "STOPPING"})
WORST_FIRST: list[Health] = ["unhealthy", "starting", "ready", "unknown"]


class ProgramService:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.log_dir = config.log_path
        self.runtime = SupervisordRuntime(config)
        self.client = self.runtime.client(config)
        self.store = ProgramStore(config.state_path / "hoodyd.db")
        self.table = ProgramTable()
        self.registry = Registry(
            self.client,
            self.runtime.include_dir,
            self.log_dir,
            single_file_adds=self.runtime.embedded,
            holders_dir=private_dir(config.state_path / "terminals" / "holders"),
        )
        self.webhooks = WebhookDispatcher(config.notifications, version=__version__)
        self.events_socket = config.state_path / "events.sock"
        listening = config.notifications.event_listener_enabled
        self.observer = Observer(
            self.client,
            interval=config.supervisor.poll_interval,
            events_socket=self.events_socket if listening else None,
            revive=self._revive,
            converge=self._converge_locked,
            alive=self.runtime.seems_alive,
        )
        self.observer.subscribe(self._report)
        self.instances = Instances(self.client, self.registry, self.table, self.observer)
        self.statuses = StatusReader(self.client, self.table, self.observer)
        self.should_run = ShouldRun(self.store)
        self.idle = IdleReaper(self, self.table, self.observer.subscribe)
        self.probes = Prober(
            self.table, self.observer, self._restart_unhealthy, pass_env=config.server.pass_env
        )
        self.probes.listen(self._report_health)
        self.dependencies = DependencyStarter(self.table.programs, self.start, self._look)
        self.registry.exit_targets = self.table.exit_targets
        self.statuses.health = self.probes
        # told how long each start took (seconds), for the metrics
        self.on_started: Callable[[float], None] = lambda seconds: None
        self._boot: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()  # one mutation of programs at a time
        # one change of a program at a time (a start's spawn, a stop, an edit...): the
        # desired state and supervisord move together, the last change acting last. Taken
        # after `_lock` by mutations, alone by starts and stops.
        self._program_locks: dict[int, asyncio.Lock] = {}

    # ---- lifecycle ---------------------------------------------------------------------

    async def open(self) -> None:
        self.runtime.prepare()
        self.table.replace(self.store.load_programs().values())
        self.table.last_id = max(self.store.last_program_id(), self._highest_log_id())
        self.should_run.load()
        leftovers = self.registry.load()
        if leftovers:
            log.warning("startup_repaired", removed_leftover_files=leftovers)
        self.table.reindex(self.registry.owned_groups())
        await self.webhooks.start()
        await self.observer.start(self._bring_up)
        self.idle.start()

    async def close(self) -> None:
        if self._boot is not None:
            self._boot.cancel()
            with contextlib.suppress(BaseException):
                await self._boot
        await self.probes.close()
        await self.idle.close()
        await self.observer.close()
        self.instances.close()
        await self.webhooks.close()
        await self.client.close()
        self.store.close()

    async def _bring_up(self) -> None:
        await self.runtime.ensure_running(self.client)
        await self._converge()

    async def _converge(self) -> None:
        """Make supervisord match the store (re-add missing groups, drop stale files)."""
        listener = None
        if self.config.notifications.event_listener_enabled:
            listener_logs = self.runtime.dir if self.runtime.embedded else self.log_dir
            listener = render_listener_section(
                sys.executable, str(self.events_socket), str(listener_logs)
            )
        programs = {program.id: program for program in self.table.programs()}
        infos = await self.registry.reconcile(programs, listener=listener)
        self.table.reindex(self.registry.owned_groups())
        await self._start_wanted(programs, infos)
        if self._boot is None or self._boot.done():
            self._boot = asyncio.create_task(self._boot_in_order())

    async def _boot_in_order(self) -> None:
        """Boot programs with dependencies are not started by supervisord (they would not
        wait): hoodyd starts them in the graph's order, each after its dependencies."""
        for program in start_order(self.table.programs()):
            if not (program.boot and program.enabled and program.depends_on):
                continue
            if program.lazy_load:
                continue
            ports = [None] if program.port_range is None else program.ports()
            await asyncio.gather(*(self._boot_start(program, port) for port in ports))

    async def _boot_start(self, program: Program, port: int | None) -> None:
        request = StartRequest(port=port, if_not_running=True, wait=True, timeout=300)
        try:
            await self.start(program.id, request)
        except HoodydError as exc:
            log.warning("boot_start_failed", program_id=program.id, port=port, error=exc.message)

    async def _start_wanted(
        self, programs: dict[int, Program], infos: dict[str, ProcessInfo]
    ) -> None:
        """Start every instance that should run and does not (supervisord came back without
        it); the observer reports each start to the program's webhooks. `infos`: what
        supervisord said of the processes reconciliation left as they were (the others are
        started if they do not run: starts that find them running are no-ops)."""
        names: list[str] = []
        starts = []
        for name, (program_id, port) in self.should_run.items():
            program = programs.get(program_id)
            info = infos.get(name)
            if program is None or not program.enabled or (info and info.statename in ALIVE):
                continue
            if self._one_shot(program):  # a job ran once per start, not again at each start-up
                continue
            if port is not None and (program.port_range is None or port not in program.ports()):
                continue
            names.append(name)
            starts.append(self.instances.start(program, port, StartRequest(if_not_running=True)))
        if not starts:
            return
        results = await asyncio.gather(*starts, return_exceptions=True)
        failed = {
            n: str(r) for n, r in zip(names, results, strict=True) if isinstance(r, Exception)
        }
        log.info("instances_brought_back", started=len(names) - len(failed), failed=failed)

    def _highest_log_id(self) -> int:
        """The highest id among the `program-<id>` log folders: a store from before ids
        were counted may have removed a program whose logs stayed."""
        ids = [0]
        with contextlib.suppress(OSError):
            for path in self.log_dir.glob("program-*"):
                suffix = path.name.removeprefix("program-")
                if suffix.isdigit():
                    ids.append(int(suffix))
        return max(ids)

    def _program_lock(self, program_id: int) -> asyncio.Lock:
        return self._program_locks.setdefault(program_id, asyncio.Lock())

    async def _converge_locked(self) -> None:
        async with self._lock:
            await self._converge()

    async def _revive(self) -> None:
        """An embedded supervisord that went away is started again (its orphans killed)."""
        if self.runtime.embedded:
            with contextlib.suppress(ServiceUnavailable):  # the next poll tries again
                await self.runtime.ensure_running(self.client)

    def _report(self, change: Transition) -> None:
        """A program's process changed state: tell its webhooks."""
        owner = self.table.owner(change.name)
        if owner is None or change.initial:
            return
        self.webhooks.notify(owner[0], change.state, from_state=change.from_state, pid=change.pid)

    def _report_health(self, event: HealthEvent) -> None:
        """A probed instance became ready, unhealthy, or was restarted: tell its webhooks."""
        self.webhooks.notify(event.program, event.event, from_state=None, pid=event.pid)

    async def _restart_unhealthy(self, name: str) -> None:
        """Replace a process its liveness probe gave up on (a hung one too: supervisord's
        stop ends in SIGKILL), under its program's lock."""
        owner = self.table.owner(name)
        if owner is None:
            return
        async with self._program_lock(owner[0].id):
            with contextlib.suppress(SupervisorFault):  # it died meanwhile
                await self.client.stop(name, wait=True)
            await self.client.start(name, wait=False)
        await self.observer.refresh_names([name])

    async def _look(self, program: Program) -> Seen:
        """A dependency's process now: state, exit status and health."""
        name = conf.instance_name(program, None)
        info = await self.client.find_process(name)
        state = info.statename if info is not None else "STOPPED"
        exitstatus = info.exitstatus if info is not None and state == "EXITED" else None
        health = self.probes.health(program, name, state)
        return Seen(state=state, exitstatus=exitstatus, health=health)

    def health_of(self, programs: list[Program]) -> list[ProgramHealth | None]:
        """Each program's health (None for one without probes or dependencies, or while
        supervisord is not answering)."""
        shown = [p for p in programs if p.readiness or p.liveness or p.depends_on]
        try:
            infos = self.observer.processes_named(
                name for program in shown for name in self.statuses.names_of(program)
            )
        except ServiceUnavailable:
            return [None] * len(programs)
        return [self._health(program, infos) for program in programs]

    def _health(self, program: Program, infos: dict[str, ProcessInfo]) -> ProgramHealth | None:
        if not (program.readiness or program.liveness or program.depends_on):
            return None
        names = self.statuses.names_of(program)
        healths, restarts, last = [], 0, None
        for name in names:
            info = infos.get(name)
            healths.append(
                self.probes.health(program, name, info.statename if info else "STOPPED")
            )
            restarts += self.observer.restarts(name) + self.probes.restarts(name)
            probe = self.probes.last(name)
            if probe is not None and (last is None or probe.at > last.at):
                last = probe
        live = [h for h in healths if h != "unknown"]
        health = min(live, key=WORST_FIRST.index) if live else "unknown"
        return ProgramHealth(
            health=health, restarts=restarts, last_probe=last if last is not None else UNSET
        )

    def _one_shot(self, program: Program) -> bool:
        """Whether the program is a job another waits on with `exited_ok`: it runs once per
        start, so its starts are not recorded as a process that should be brought back."""
        return program.port_range is None and program.name in self.registry.exit_targets()

    async def _retarget(
        self, program_id: int, program: Program | None, held: contextlib.AsyncExitStack
    ) -> tuple[Files, list[str]]:
        """The files of the jobs that become, or stop being, one-shot (waited on with
        `exited_ok`) when the program `program_id` becomes `program` (None: removed), each
        re-rendered on its own, and their groups, which are re-registered; each job's lock
        is taken into `held` (the caller holds `_lock`: no other mutation takes more than
        one program lock). Read from the table's indexes: the other programs are not
        visited."""
        before = self.table.exit_targets()
        now = self.table.exit_targets_after(program_id, program)
        flipped = before ^ now
        files: Files = {}
        if not flipped:
            return files, []
        named = (self.table.named(name) for name in flipped)
        jobs = [p for p in named if p is not None and p.id != program_id]
        for job in sorted(jobs, key=lambda p: p.id):
            await held.enter_async_context(self._program_lock(job.id))
            files.update(self.registry.files_to_rerender(self.get(job.id), now))
        return files, sorted(self.registry.groups_in(files))

    async def _restart_jobs(self, names: list[str]) -> None:
        """Start again the jobs that ran when their registration followed another program's
        dependencies; the change stands if one cannot."""
        try:
            await self.instances.restart(names)
        except HoodydError as exc:
            log.warning("job_restart_failed", instances=names, error=exc.message)

    def dependents(self, program_id: int) -> list[Program]:
        """The programs that depend on this one, directly or through others."""
        return self.table.dependents_of(self.get(program_id))

    # ---- queries -----------------------------------------------------------------------

    def get(self, program_id: int) -> Program:
        return self.table.get(program_id)

    def find(self, where: ProgramFilter) -> list[Program]:
        return self.table.find(where)

    async def statuses_of(self, programs: list[Program], *, with_stats: bool) -> list[AnyStatus]:
        return await self.statuses.statuses(programs, with_stats=with_stats)

    async def status_of(
        self, program_id: int, *, port: int | None, with_stats: bool
    ) -> StatusAnswer:
        """One program's status (one instance with `port`)."""
        program = self.get(program_id)
        if port is not None:
            check_port(program, port)
        return await self.statuses.one(program, port=port, with_stats=with_stats)

    async def logs(self, program: Program, *, stream: str, lines: int, port: int | None) -> LogTail:
        if program.port_range is not None and port is None:
            raise InvalidRequest("Port parameter required", reason=Reason.PORT_REQUIRED)
        port = check_port(program, port) if port is not None else None
        return await read_log(program, stream=stream, lines=lines, port=port, log_dir=self.log_dir)

    # ---- mutations ---------------------------------------------------------------------

    async def add(self, given: ProgramInput) -> Program:
        async with self._lock, contextlib.AsyncExitStack() as held:
            program_id = (
                check_program_id(given.id) if isinstance(given.id, int) else self.table.next_id()
            )
            if program_id in self.table:
                raise Conflict(
                    f"Program with ID {program_id} already exists", reason=Reason.ID_IN_USE
                )
            program = self._build(given, program_id, None)
            files = self.registry.files_to_register(program) if program.enabled else {}
            retargeted, targets = await self._retarget(program.id, program, held)
            files.update(retargeted)
            running = await self.statuses.running_among(targets)
            try:
                await self.registry.change(files, lambda: self.store.save_program(program))
                self._keep(program)
            except NotApplied as exc:
                await self.store.delete_program(program.id)
                self.table.drop(program.id)
                self.table.index(program.id, {})
                await self._converge_back(exc.cause)
            await self._restart_jobs(running)
            await self.observer.refresh_names(sorted(self.registry.groups_in(files)))
            log.info("program_added", program_id=program.id, name=program.name)
            return program

    async def edit(self, program_id: int, given: ProgramInput) -> Program:
        async with (
            self._lock,
            self._program_lock(program_id),
            contextlib.AsyncExitStack() as held,
        ):
            current = self.get(program_id)
            program = self._build(given, program_id, current)
            if program == current:
                return current
            touches = current.enabled or program.enabled
            files: Files = self.registry.files_to_reregister(current, program) if touches else {}
            retargeted, targets = await self._retarget(program_id, program, held)
            files.update(retargeted)
            # instances that ran before run again under the new definition (and jobs whose
            # registration follows this program's dependencies)
            running = await self.statuses.running_among(
                (self.registry.groups_of(current) if touches else []) + targets
            )
            try:
                await self.registry.change(files, lambda: self.store.save_program(program))
                self._keep(program)
                registered = self.registry.groups_in(files)
                await self.instances.restart([n for n in running if n in registered])
            except NotApplied as exc:
                await self._put_back(current, {}, exc.cause)
            except HoodydError as exc:
                if program != self.table.get(program_id):
                    raise  # refused before the commit: nothing changed
                await self._put_back(current, {}, exc)
            await self.observer.refresh_names(sorted(set(running) | self.registry.groups_in(files)))
            if (program.readiness, program.liveness) != (current.readiness, current.liveness):
                self.probes.follow(program)
            log.info("program_edited", program_id=program.id, name=program.name)
            return program

    async def remove(self, program_id: int, *, force: bool = False) -> None:
        """Remove the program; one that others depend on only with `force`."""
        async with (
            self._lock,
            self._program_lock(program_id),
            contextlib.AsyncExitStack() as held,
        ):
            program = self.get(program_id)
            leaning = [p.name for p in self.table.dependents_of(program)]
            if leaning and not force:
                raise Conflict(
                    f"{program.name} is a dependency of {', '.join(leaning)}; remove with "
                    "force to remove it anyway",
                    reason=Reason.DEPENDED_ON,
                    extra={"dependents": leaning},
                )
            wanted = self.should_run.of(program_id)
            files = self.registry.files_to_unregister(program)
            retargeted, targets = await self._retarget(program_id, None, held)
            files.update(retargeted)
            running = await self.statuses.running_among(targets)
            groups = self.registry.groups_of(program) + targets
            try:
                await self.registry.change(files, lambda: self.store.delete_program(program_id))
            except NotApplied as exc:
                self.table.drop(program_id)
                self.should_run.forget(program_id)
                await self._put_back(program, wanted, exc.cause)
            self.table.drop(program_id)
            self.table.index(program_id, {})
            self.should_run.forget(program_id)
            self._program_locks.pop(program_id, None)
            await self._restart_jobs(running)
            await self._remove_logs(program)
            await self.observer.refresh_names(groups)
            log.info("program_removed", program_id=program_id, name=program.name)

    async def set_enabled(self, program_id: int, enabled: bool) -> Program:
        async with self._lock, self._program_lock(program_id):
            current = self.get(program_id)
            program = msgspec.structs.replace(current, enabled=enabled)
            wanted = self.should_run.of(program_id)
            files = (
                self.registry.files_to_register(program)
                if enabled
                else self.registry.files_to_unregister(current)
            )
            groups = self.registry.groups_in(files) | set(self.registry.groups_of(current))
            try:
                await self.registry.change(
                    files, lambda: self.store.save_program(program, stop_all=not enabled)
                )
            except NotApplied as exc:
                if not enabled:
                    self.should_run.forget(program_id)
                await self._put_back(current, wanted, exc.cause)
            if not enabled:
                self.should_run.forget(program_id)
            self._keep(program)
            await self.observer.refresh_names(sorted(groups))
            log.info("program_enabled" if enabled else "program_disabled", program_id=program_id)
            return program

    async def reset(self) -> int:
        """Replace every program with the defaults file's, re-applying the enabled ones."""
        defaults = load_defaults(Path(self.config.programs.defaults_file))
        async with self._lock, contextlib.AsyncExitStack() as held:
            for program_id in sorted(program.id for program in self.table.programs()):
                await held.enter_async_context(self._program_lock(program_id))
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
            previous = self.table.programs()
            wanted = dict(self.should_run.items())
            files: Files = {}
            for current in previous:
                files.update(self.registry.files_to_unregister(current))
            targets = exit_targets(programs)
            for program in programs:
                if program.enabled:
                    files.update(self.registry.files_to_register(program, targets))
            try:
                await self.registry.change(files, lambda: self.store.replace_programs(programs))
            except NotApplied as exc:
                self.should_run.forget()
                await self.store.restore(previous, wanted, everything=True)
                self.should_run.put_back(wanted)
                self.table.replace(previous)
                await self._converge_back(exc.cause)
            self.should_run.forget()
            self.table.replace(programs)
            self.table.reindex(self.registry.owned_groups())
            await self.observer.refresh()
            log.info("programs_reset", count=len(programs))
            return len(programs)

    async def _converge_back(self, error: Exception) -> NoReturn:
        """supervisord refused (or could not be brought to) a change whose desired state was
        already saved: with the store put back by the caller, bring supervisord back to it,
        and answer the error, saying that nothing was changed."""
        try:
            await self._converge()
        except Exception as exc:  # the observer's next convergence tries again
            log.error("converge_back_failed", error=str(exc))
        if isinstance(error, HoodydError):
            error.message = f"{error.message}; nothing was changed"
            error.args = (error.message,)
            error.extra.setdefault("changed", False)
            raise error
        if isinstance(error, OSError):
            raise StateNotSaved(
                f"hoodyd could not write supervisord's config ({error}); nothing was changed",
                extra={"changed": False},
            ) from error
        raise error

    def _build(self, given: ProgramInput, program_id: int, current: Program | None) -> Program:
        program = build_program(
            given,
            program_id=program_id,
            current=current,
            allow_insecure_webhooks=self.config.notifications.allow_insecure_urls,
        )
        validate_program(
            program,
            self.table.programs(),
            log_dir=self.log_dir,
            max_port_range=self.config.programs.max_port_range,
        )
        return program

    def _keep(self, program: Program) -> None:
        self.table.put(program)
        self.table.index(program.id, self.registry.owned_groups_of(program.id))

    async def _put_back(
        self, current: Program, wanted: dict[str, tuple[int, int | None]], error: Exception
    ) -> NoReturn:
        """supervisord refused a committed change: the store as it was (`current`, and the
        instances in `wanted`), then supervisord converged back to it."""
        await self.store.restore([current], wanted)
        self.should_run.put_back(wanted)
        self._keep(current)
        await self._converge_back(error)

    async def _remove_logs(self, program: Program) -> None:
        """A removed program's log folder goes with it (log files it was configured to
        write elsewhere are the owner's)."""
        folder = self.log_dir / f"program-{program.id}"
        await asyncio.to_thread(shutil.rmtree, folder, ignore_errors=True)

    # ---- start / stop ------------------------------------------------------------------

    async def start(self, program_id: int, request: StartRequest) -> Started:
        """Start (or join the start of) one instance. The desired state and the spawn change
        under the program's lock; waiting for the instance (`wait`) happens outside it. Its
        dependencies are started first, each under its own lock, none held meanwhile."""
        began = time.monotonic()
        await self.dependencies.satisfy(self.get(program_id), request.timeout)
        async with self._program_lock(program_id):
            program = self.get(program_id)
            if not program.enabled:
                raise Conflict(
                    f"Program with ID {program_id} is disabled", reason=Reason.PROGRAM_DISABLED
                )
            port = check_port(program, request.port)
            if request.wait_for == "port" and port is None:
                raise InvalidRequest(
                    'wait_for "port" needs a port-range program and a port',
                    reason=Reason.PORT_REQUIRED,
                )
            name = conf.instance_name(program, port)
            # a one-shot job's start is not recorded: it should run once, not be brought back
            one_shot = port is None and self._one_shot(program)
            recorded = one_shot or name in self.should_run
            # an on-demand instance's conf file first: a disk that refuses it has nothing
            # recorded to undo
            fresh = port is not None and self.table.owner(name) is None
            if fresh:
                self.table.own(await self.registry.ensure_instance(program, port), program.id, port)
            try:
                if not one_shot:
                    await self.should_run.want(name, program.id, port)  # desired state first
            except HoodydError:
                if fresh:  # its file goes again (by a rename: works on a full disk)
                    with contextlib.suppress(HoodydError):
                        await self.registry.drop_instance(program, port)
                    self.table.index(program.id, self.registry.owned_groups_of(program.id))
                raise
            version = self.should_run.version(name)
            try:
                begun = await self.instances.begin(program, port, request, one_shot=one_shot)
            except (WaitTimeout, Conflict):  # already running: it should run
                raise
            except HoodydError:
                if not recorded:  # the start failed: as if it had never been asked for
                    with contextlib.suppress(HoodydError):
                        await self.should_run.unwant([name])
                raise
        try:
            started = await self.instances.finish(begun, request)
        except (WaitTimeout, Conflict):  # still starting, or called off by a stop
            raise
        except HoodydError:
            if not recorded:  # unless a later start or stop has recorded it since
                with contextlib.suppress(HoodydError):
                    await self.should_run.unwant([name], unless_changed_since=version)
            raise
        if request.wait and program.readiness is not None and not one_shot:  # a job has run
            started = await self._until_ready(program, name, started, request, began)
        self.idle.touch(program, port)
        self.on_started(time.monotonic() - began)
        return started

    async def _until_ready(
        self, program: Program, name: str, started: Started, request: StartRequest, began: float
    ) -> Started:
        """A start with `wait` of a program with a readiness probe answers once it passed."""

        async def ready() -> bool | None:
            state = started.instance.status
            with contextlib.suppress(ServiceUnavailable):
                info = self.observer.process(name)
                state = info.statename if info is not None else "STOPPED"
            health = self.probes.health(program, name, state)
            if health == "ready":
                return True
            if state not in ALIVE:
                raise UpstreamFailed(
                    f"{name} stopped before it was ready ({state})",
                    reason=Reason.START_FAILED,
                    extra={"state": state},
                )
            return None

        remaining = request.timeout - (time.monotonic() - began)
        if not await poll_until(ready, timeout=max(remaining, 0.0), interval=0.05):
            raise WaitTimeout(
                f"{name} did not pass its readiness probe within {request.timeout}s",
                reason=Reason.WAIT_TIMEOUT,
                extra={"instance": started.instance, "health": "starting"},
            )
        return msgspec.structs.replace(
            started, instance=msgspec.structs.replace(started.instance, health="ready")
        )

    async def stop(self, program_id: int, request: StopRequest) -> list[str]:
        """Stop the program, one port instance, or (`all`) every registered instance; the
        names of the instances that were running."""
        async with self._program_lock(program_id):
            program = self.get(program_id)
            names = self._names_to_stop(program, request)
            wanted = {n: o for n, o in self.should_run.of(program.id).items() if n in names}
            await self.should_run.unwant(names)  # desired state first
            try:
                stopped = await self.instances.stop(names)
            except HoodydError:
                with contextlib.suppress(HoodydError):
                    await self.should_run.restore(wanted)
                raise
        log.info("program_stopped", program_id=program_id, instances=stopped)
        return stopped

    def _names_to_stop(self, program: Program, request: StopRequest) -> list[str]:
        if program.port_range is None:
            if request.port is not None:
                check_port(program, request.port)
            names = [conf.instance_name(program, None)]
        elif request.all:
            ports = [port for port, _name in self.table.instances_of(program.id)]
            names = [conf.instance_name(program, port) for port in ports]
        elif request.port is not None:
            names = [conf.instance_name(program, check_port(program, request.port))]
        else:
            raise InvalidRequest(
                "Port parameter required (or all: true) for a port-range program",
                reason=Reason.PORT_REQUIRED,
            )
        if request.all:
            names += [name for name in self.should_run.of(program.id) if name not in names]
        return names


def load_defaults(path: Path) -> list[ProgramInput]:
    """The programs of the defaults file (`{"programs": [...]}` or a bare list); none if the
    file does not exist."""
    if not path.exists():
        return []
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InvalidRequest(
            f"defaults file {path} is not valid JSON: {exc}", reason=Reason.BAD_DEFAULTS
        ) from exc
    items = raw.get("programs", []) if isinstance(raw, dict) else raw
    try:
        return msgspec.convert(items, list[ProgramInput])
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"defaults file {path}: {exc}", reason=Reason.BAD_DEFAULTS) from exc
