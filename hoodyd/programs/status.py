"""Status answers: supervisord's process info as hoodyd instances, a program's status (its
process, or its port range's instances) as Structs, and psutil resource stats.

Answers come from the observer's picture in memory (events and the reconciliation poll), never
from a round trip to supervisord: a status costs what a dict lookup costs, however many
callers ask, and reads only the processes of the programs it shows (one program's status
costs the same with 10 or 1000 programs registered)."""

from __future__ import annotations

import asyncio
import os
import resource
import select
import threading
import time
import weakref
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import msgspec
import psutil
from msgspec import UNSET

from hoodyd.errors import HoodydError
from hoodyd.polling import poll_until
from hoodyd.programs import conf
from hoodyd.programs.observer import Observer
from hoodyd.programs.supervisor_client import ProcessInfo, SupervisorClient
from hoodyd.programs.table import ProgramTable
from hoodyd.schemas.daemon import (
    AnyStatus,
    Instance,
    PortRangeStatus,
    ProcessSample,
    ProcessStats,
    ProcessStatus,
    Program,
    Stats,
    StatusAnswer,
)

RUNNING_STATES = frozenset({"STARTING", "RUNNING", "BACKOFF"})
LIVE_STATES = frozenset({"STARTING", "RUNNING", "STOPPING"})  # states that have a process
DEATH_FOLLOW_S = 0.3  # how long a status waits for supervisord to see a death
PID_REUSE_SLACK_S = 5
FAILED_STATES = frozenset({"BACKOFF", "FATAL", "EXITED"})

if TYPE_CHECKING:
    from hoodyd.programs.probes import Prober

Processes = dict[str, ProcessInfo]  # by supervisord process name


def format_uptime(seconds: int) -> str:
    hours, rest = divmod(max(seconds, 0), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


_BOOT_TIME = psutil.boot_time()
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_start_time(pid: int) -> float | None:
    """When `pid` started, or None if it no longer exists; a zombie counts as gone (the
    orphans of a killed supervisord may stay zombies as long as nobody reaps them). One read
    of /proc/PID/stat, the same figure as psutil's `create_time`."""
    # os.open/os.read: a third of the cost of `open()`, which builds a buffered file object
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = os.read(fd, 4096)
    except OSError:
        return None
    finally:
        os.close(fd)
    if not data:
        return None
    fields = data[data.rindex(b")") + 2 :].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return _BOOT_TIME + int(fields[19]) / _CLOCK_TICKS


def _watch_limit() -> int:
    """Pidfds `Liveness` may hold: an eighth of the open-file limit, at most 2048 (hoodyd
    raises its soft limit to the hard one; connections take half)."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return 2048 if soft == resource.RLIM_INFINITY else max(min(soft // 8, 2048), 0)


class Liveness:
    """When each live pid started, without a read of /proc/PID/stat on every answer.

    A pid found alive is watched through a pidfd, kept in one epoll set: a pidfd becomes
    readable the moment its process exits (a zombie included). Each question first asks that
    set, without waiting, which processes exited since, and forgets them (a later question
    about that pid reads /proc again: a reused pid is another process); so an answer is as
    fresh as a /proc read, and a list of a thousand running programs costs one `epoll_wait`
    instead of a thousand reads. At most `limit` pids are watched; the others are read from
    /proc each time, as before."""

    def __init__(self, limit: int | None = None) -> None:
        # by default read at the first watch, after hoodyd has raised its open-file limit
        self.limit = limit
        self._epoll: select.epoll | None = None
        self._watched: dict[int, tuple[int, float]] = {}  # pid -> (pidfd, start time)
        self._pid_of: dict[int, int] = {}  # pidfd -> pid
        self._lock = threading.Lock()

    def start_time(self, pid: int) -> float | None:
        """When `pid` started, or None if it is gone or a zombie (`process_start_time`)."""
        with self._lock:
            if self._watched:
                self._forget_exited()
                known = self._watched.get(pid)
                if known is not None:
                    return known[1]
            return self._look(pid)

    @property
    def watched(self) -> int:
        return len(self._watched)

    def _forget_exited(self) -> None:
        assert self._epoll is not None
        while True:
            ready = self._epoll.poll(0, _EXITS_PER_POLL)
            for fd, _events in ready:
                pid = self._pid_of.pop(fd)
                del self._watched[pid]
                self._epoll.unregister(fd)
                os.close(fd)
            if len(ready) < _EXITS_PER_POLL:
                return

    def _look(self, pid: int) -> float | None:
        if self.limit is None:
            self.limit = _watch_limit()
        if len(self._watched) >= self.limit:
            return process_start_time(pid)
        # the pidfd first: if /proc then says the pid is alive, the pidfd is of that process
        # (or of one that exited since, which the next question finds readable)
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            return None
        except OSError:  # out of descriptors, say: read /proc as before
            return process_start_time(pid)
        started = process_start_time(pid)
        if started is None:
            os.close(fd)
            return None
        try:
            if self._epoll is None:
                self._epoll = select.epoll()
            self._epoll.register(fd, select.EPOLLIN)
        except OSError:
            os.close(fd)
            return started
        self._watched[pid] = (fd, started)
        self._pid_of[fd] = pid
        return started


# exits read from the epoll set per call (it is asked again while it returns this many)
_EXITS_PER_POLL = 256
# one for the process: the kernel's answer about a pid is the same for every reader
_LIVENESS = Liveness()


def _has_dead_pid(info: ProcessInfo) -> bool:
    """supervisord shows the process with a pid that is gone (or now another process's)."""
    if not info.pid or info.statename not in LIVE_STATES:
        return False
    started = _LIVENESS.start_time(info.pid)
    # a pid reused by a later process started well after supervisord's spawn of it
    return started is None or (info.start > 0 and started > info.start + PID_REUSE_SLACK_S)


# instances whose port accepted connections (a start with wait_for "port") while supervisord
# still said STARTING, its startsecs not yet passed: name -> pid, per observer. They serve,
# so they read RUNNING; a later spawn (another pid) or any other state ends it.
_PORT_READY: weakref.WeakKeyDictionary[Observer, dict[str, int]] = weakref.WeakKeyDictionary()


def note_port_ready(observer: Observer, instance: Instance) -> Instance:
    """The instance accepts connections on its port: it reads RUNNING from now on (and is
    returned so) while supervisord still says STARTING for that pid."""
    if instance.status != "STARTING" or not instance.pid:
        return instance
    _PORT_READY.setdefault(observer, {})[instance.instance_name] = instance.pid
    return msgspec.structs.replace(instance, status="RUNNING", uptime=format_uptime(0))


def _port_ready(observer: Observer, name: str, info: ProcessInfo | None) -> bool:
    ready = _PORT_READY.get(observer, {})
    if info is None or info.statename != "STARTING" or ready.get(name) != info.pid:
        ready.pop(name, None)
        return False
    return True


def instance_from_info(
    info: ProcessInfo | None,
    name: str,
    port: int | None,
    *,
    serving: bool = False,
    checked: bool = False,
) -> Instance:
    """An Instance from `getProcessInfo`; None (not registered) reads as STOPPED, a pid that
    /proc says is dead as EXITED without it. `serving`: its port accepts connections, so
    STARTING reads RUNNING. `checked`: `info` comes from `StatusReader.snapshot`, which has
    just checked its pid against /proc (and shows a dead one as EXITED already)."""
    if info is None:
        return Instance(port=port, instance_name=name, status="STOPPED")
    if not checked and _has_dead_pid(info):  # supervisord has not reaped it yet: gone is gone
        info = msgspec.structs.replace(info, state=100, statename="EXITED", pid=0)
    state = "RUNNING" if serving and info.statename == "STARTING" else info.statename
    running = state in ("RUNNING", "STARTING", "STOPPING") and info.pid
    return Instance(
        port=port,
        instance_name=name,
        status=state,
        pid=info.pid if running else None,
        uptime=format_uptime(info.now - info.start) if state == "RUNNING" else None,
        # supervisord keeps an exit status only for an exit after `startsecs` (EXITED); an
        # early exit (BACKOFF, then FATAL) clears it and says so in `spawnerr`, and its 0
        # there would read as a clean exit
        exitstatus=info.exitstatus if state == "EXITED" else None,
        spawnerr=info.spawnerr or None,
    )


def process_status(
    instance: Instance, stats: Stats = UNSET, *, program_id: int | None = None
) -> ProcessStatus:
    """The instance as answers show it; with `program_id`, as the status of that standard
    program (named by its id instead)."""
    return ProcessStatus(
        id=UNSET if program_id is None else program_id,
        port=UNSET if instance.port is None else instance.port,
        instance_name=instance.instance_name if program_id is None else UNSET,
        status=instance.status,
        pid=instance.pid,
        uptime=instance.uptime,
        exitstatus=UNSET if instance.exitstatus is None else instance.exitstatus,
        spawnerr=UNSET if instance.spawnerr is None else instance.spawnerr,
        stats=stats,
    )


class StatusReader:
    """Status of programs from the observer's processes (`Observer.processes_named`)."""

    def __init__(self, client: SupervisorClient, table: ProgramTable, observer: Observer) -> None:
        self.client = client
        self.table = table
        self.observer = observer
        self.stats = StatsCollector()
        self.health: Prober | None = None  # the probes, when the service has them

    def names_of(self, program: Program, port: int | None = None) -> list[str]:
        """The supervisord names a status of the program reads: a standard program's one
        process, a port-range program's registered instances (and the one at `port`)."""
        if program.port_range is None:
            return [conf.instance_name(program, None)]
        names = [name for _port, name in self.table.instances_of(program.id)]
        if port is not None:
            names.append(conf.instance_name(program, port))
        return names

    async def snapshot(self, names: list[str]) -> Processes:
        """The observer's picture of the named processes (one lookup each: what a status
        costs grows with the processes it shows only), their pids checked against /proc:
        supervisord reaps a dead child only at its next loop turn (up to a second later),
        and until then says RUNNING with the dead pid. A pid found dead makes hoodyd ask
        supervisord again, which wakes it to reap; what it has still not seen after
        `DEATH_FOLLOW_S` is shown as EXITED, never as running."""
        infos = self.observer.processes_named(names)
        dead = {name: info.pid for name, info in infos.items() if _has_dead_pid(info)}
        if not dead:
            return infos
        await asyncio.gather(*(self._follow_death(name, pid) for name, pid in dead.items()))
        infos = self.observer.processes_named(names)
        for name in dead:
            info = infos.get(name)  # the same pid still dead, or a new one already gone
            if info is not None and _has_dead_pid(info):
                infos[name] = msgspec.structs.replace(info, state=100, statename="EXITED", pid=0)
        return infos

    async def _follow_death(self, name: str, pid: int) -> None:
        async def seen() -> bool | None:
            asked_at = time.monotonic()
            try:
                info = await self.client.find_process(name)
            except HoodydError:
                return True
            self.observer.note(info, name, asked_at)
            return True if info is None or info.pid != pid or not _has_dead_pid(info) else None

        await poll_until(seen, timeout=DEATH_FOLLOW_S, interval=0.02)

    async def statuses(self, programs: Iterable[Program], *, with_stats: bool) -> list[AnyStatus]:
        programs = list(programs)
        infos = await self.snapshot([n for program in programs for n in self.names_of(program)])
        return [self.of(program, infos, with_stats=with_stats) for program in programs]

    async def one(self, program: Program, *, port: int | None, with_stats: bool) -> StatusAnswer:
        """One program's status (one instance with `port`); a process's stats lifted out.
        It reads that program's processes only: it costs the same however many programs
        there are."""
        infos = await self.snapshot(self.names_of(program, port))
        status = self.of(program, infos, with_stats=with_stats, port=port)
        if isinstance(status, PortRangeStatus) or status.stats is UNSET:
            return StatusAnswer(status=status)
        stats, status.stats = status.stats, UNSET
        return StatusAnswer(status=status, stats=stats)

    def of(
        self, program: Program, infos: Processes, *, with_stats: bool, port: int | None = None
    ) -> AnyStatus:
        """A standard program's status; a port-range program's (or one instance's). `infos`
        is a `snapshot` that covered `program`: its pids are not checked again."""
        if program.port_range is None:
            name = conf.instance_name(program, None)
            found = instance_from_info(infos.get(name), name, None, checked=True)
            status = process_status(
                found, self._stats(found.pid, with_stats), program_id=program.id
            )
            return self._with_health(program, name, status)
        if port is not None:
            ports = [port]
        else:  # the instances that exist in supervisord (a range may hold 1000 ports)
            ports = [p for p, name in self.table.instances_of(program.id) if name in infos]
        instances = []
        for each in ports:
            name = conf.instance_name(program, each)
            info = infos.get(name)
            serving = _port_ready(self.observer, name, info)
            found = instance_from_info(info, name, each, serving=serving, checked=True)
            status = process_status(found, self._stats(found.pid, with_stats))
            instances.append(self._with_health(program, name, status))
        if port is not None:
            return instances[0]
        return PortRangeStatus(
            running_instances=sum(1 for i in instances if i.status == "RUNNING"),
            total_instances=len(program.ports()),
            instances=instances,
        )

    def _with_health(self, program: Program, name: str, status: ProcessStatus) -> ProcessStatus:
        """Health, last probe and restarts on a program with probes or dependencies; restarts
        on any other once it has some."""
        probes = self.health
        restarts = self.observer.restarts(name) + (probes.restarts(name) if probes else 0)
        shown = program.readiness or program.liveness or program.depends_on
        if shown and probes is not None:
            status.health = probes.health(program, name, status.status)
            last = probes.last(name)
            if last is not None:
                status.last_probe = last
        if shown or restarts:
            status.restarts = restarts
        return status

    def _stats(self, pid: int | None, wanted: bool) -> Stats:
        return self.stats.collect(pid) if wanted and pid is not None else UNSET

    async def running_among(self, names: list[str]) -> list[str]:
        """Which of the named processes are starting or running."""
        if not names:
            return []
        # a change is under way: ask supervisord, about these processes only where they
        # are few (a change costs the same however many other processes there are)
        if len(names) <= 8:
            found = [await self.client.find_process(name) for name in names]
            infos = {info.name: info for info in found if info is not None}
        else:
            infos = await self.client.processes()
        return [n for n in names if n in infos and infos[n].statename in RUNNING_STATES]


class StatsCollector:
    """CPU and memory of a process tree. psutil's cpu_percent needs two samples, so Process
    objects are kept between calls; a first sample reports the lifetime average instead."""

    def __init__(self) -> None:
        self._processes: dict[tuple[int, float], psutil.Process] = {}

    def collect(self, pid: int) -> ProcessStats | None:
        try:
            root = psutil.Process(pid)
            tree = [root, *root.children(recursive=True)]
        except psutil.Error:
            return None
        if len(self._processes) > 4096:
            self.forget_dead()
        samples = [sample for proc in tree if (sample := self._sample(proc)) is not None]
        if not samples:
            return None
        return ProcessStats(
            pid=pid,
            started_at=datetime.fromtimestamp(root.create_time(), UTC).isoformat(),
            cpu_percent=round(sum(s.cpu_percent for s in samples), 2),
            memory_rss_bytes=sum(s.memory_rss_bytes for s in samples),
            process_count=len(samples),
            processes=samples,
        )

    def _sample(self, proc: psutil.Process) -> ProcessSample | None:
        try:
            with proc.oneshot():
                key = (proc.pid, proc.create_time())
                known = self._processes.get(key)
                if known is None:
                    self._processes[key] = proc
                    proc.cpu_percent(None)  # prime the next sample
                    times = proc.cpu_times()
                    elapsed = max(time.time() - key[1], 1e-6)
                    cpu = 100.0 * (times.user + times.system) / elapsed
                else:
                    cpu = known.cpu_percent(None)
                return ProcessSample(
                    pid=proc.pid,
                    name=proc.name(),
                    cpu_percent=round(cpu, 2),
                    memory_rss_bytes=proc.memory_info().rss,
                )
        except psutil.Error:
            return None

    def forget_dead(self) -> None:
        for key, proc in list(self._processes.items()):
            if not proc.is_running():
                del self._processes[key]
