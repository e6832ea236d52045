"""Readiness and liveness probes: each probed instance checked on its own schedule, its health
derived from the results, and a live process that stops answering replaced.

A probe is one of a TCP connect (`port`), an HTTP GET to a loopback URL (`http`, 2xx/3xx
healthy) or a command (`exec`, exit 0 healthy, run as the program's user from the built child
environment). Probing follows what the observer publishes: an instance that starts is probed,
one that stops is not. Every probe runs under one semaphore (bounded concurrency) and its own
timeout, as a task of its own, so the loop only ever waits on sockets and child exits.

Health: `unknown` when no process runs; `starting` until the readiness probe (without one,
supervisord's RUNNING) first passes; `ready` after; `unhealthy` while the liveness probe fails,
or once the readiness probe failed `failure_threshold` times in a row. A liveness probe failing
`failure_threshold` times in a row has the process restarted, counted, and announced to
listeners (the events stream and webhooks).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import heapq
import os
import select
import signal
import socket
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import urlsplit

import structlog
from msgspec import UNSET

from hoodyd.childenv import account_of, child_environment, with_open_file_limit
from hoodyd.programs import conf
from hoodyd.programs.observer import Observer, Transition
from hoodyd.programs.probe_checks import PORT_VARIABLE
from hoodyd.programs.table import ProgramTable
from hoodyd.schemas.daemon import Health, Probe, ProbeResult, Program

log = structlog.get_logger()

Kind = Literal["readiness", "liveness"]
# probes in progress at once, however many instances are probed
PROBE_CONCURRENCY = 64
# until it first passes, a readiness probe runs at least this often: a start waiting for it
# answers soon after the instance serves, whatever its interval
FIRST_READY_PROBE_S = 0.25
PROBED_STATES = frozenset({"STARTING", "RUNNING"})
HTTP_HEAD_LIMIT = 4096
# port probes are swept at most this often: each sweep takes every probe then due (at most
# this much late), so 500 probes a second cost 10 batches, not 500 wakeups
SWEEP_EVERY_S = 0.1


@dataclass(frozen=True, slots=True)
class HealthEvent:
    """A probed instance changed health, or was restarted by its liveness probe."""

    program: Program
    name: str
    port: int | None
    event: Literal["READY", "UNHEALTHY", "LIVENESS_RESTART"]
    pid: int | None
    detail: str | None = None


@dataclass(slots=True)
class Probed:
    """One instance's probing: its tasks and what they found."""

    program_id: int
    port: int | None
    pid: int | None
    ready: bool = False
    ready_once: bool = False
    ready_failures: int = 0
    live_failures: int = 0
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


Restart = Callable[[str], Awaitable[None]]
Listener = Callable[[HealthEvent], None]


class Prober:
    def __init__(
        self,
        table: ProgramTable,
        observer: Observer,
        restart: Restart,
        *,
        pass_env: Iterable[str] = (),
        concurrency: int = PROBE_CONCURRENCY,
    ) -> None:
        self.table = table
        self.observer = observer
        self._restart = restart
        self._pass_env = tuple(pass_env)
        self._gate = asyncio.Semaphore(concurrency)
        self._probed: dict[str, Probed] = {}
        # the last result by instance: (probe, ok, time.time(), detail), made a ProbeResult
        # only when read
        self._last: dict[str, tuple[Kind, bool, float, str]] = {}
        self._restarts: Counter[str] = Counter()
        self._listeners: list[Listener] = []
        self._side: set[asyncio.Task[None]] = set()
        # what metrics read: results by (instance, kind, ok) and summed probe seconds
        self.results: Counter[tuple[str, str, bool]] = Counter()
        self.seconds: defaultdict[tuple[str, str], float] = defaultdict(float)
        self._closed = False
        self._sweep = PortSweep(self)
        observer.subscribe(self._on_transition)

    # ---- reading -----------------------------------------------------------------------

    def listen(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)

        def unlisten() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return unlisten

    def restarts(self, name: str) -> int:
        """Liveness restarts of the instance since hoodyd started."""
        return self._restarts[name]

    def last(self, name: str) -> ProbeResult | None:
        found = self._last.get(name)
        if found is None:
            return None
        kind, ok, at, detail = found
        return ProbeResult(
            probe=kind,
            ok=ok,
            at=datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds"),
            detail=UNSET if ok else detail,
        )

    def health(self, program: Program, name: str, state: str) -> Health:
        if state not in PROBED_STATES:
            return "unknown"
        probed = self._probed.get(name)
        if program.liveness is not None and probed is not None and probed.live_failures:
            return "unhealthy"
        if program.readiness is None:
            return "ready" if state == "RUNNING" else "starting"
        if probed is None or not probed.ready_once:
            return "starting"
        return "ready" if probed.ready else "unhealthy"

    # ---- following processes -----------------------------------------------------------

    def _on_transition(self, change: Transition) -> None:
        if self._closed:
            return
        owner = self.table.owner(change.name)
        if change.state not in PROBED_STATES or owner is None:
            self._drop(change.name)
            return
        program, port = owner
        probed = self._probed.get(change.name)
        if probed is not None and change.pid and probed.pid and change.pid != probed.pid:
            self._drop(change.name)  # another process under the same name
            probed = None
        if probed is None:
            self._begin(program, change.name, port, change.pid)
        elif change.pid:
            probed.pid = change.pid

    def follow(self, program: Program) -> None:
        """The program's probes changed (an edit): probe its live instances anew."""
        with contextlib.suppress(Exception):
            instances = self._instances_of(program)
            infos = self.observer.processes_named(name for name, _owner in instances)
            for name, (_owner, port) in instances:
                self._drop(name)
                info = infos.get(name)
                if info is not None and info.statename in PROBED_STATES:
                    self._begin(program, name, port, info.pid or None)

    def _instances_of(self, program: Program) -> list[tuple[str, tuple[int, int | None]]]:
        if program.port_range is None:
            return [(conf.instance_name(program, None), (program.id, None))]
        return [(name, (program.id, port)) for port, name in self.table.instances_of(program.id)]

    def _begin(self, program: Program, name: str, port: int | None, pid: int | None) -> None:
        if program.readiness is None and program.liveness is None:
            return
        probed = Probed(program_id=program.id, port=port, pid=pid)
        self._probed[name] = probed
        for kind in ("readiness", "liveness"):
            probe = getattr(program, kind)
            if probe is None:
                continue
            if probe.port is not UNSET:  # swept with every other port probe
                self._sweep.add(name, probed, kind, probe.initial_delay_ms / 1000)
            else:
                probed.tasks.append(asyncio.create_task(self._loop(name, probed, kind)))

    def _drop(self, name: str) -> None:
        probed = self._probed.pop(name, None)
        if probed is not None:
            for task in probed.tasks:
                task.cancel()

    async def close(self) -> None:
        self._closed = True
        tasks = [t for p in self._probed.values() for t in p.tasks] + list(self._side)
        tasks += self._sweep.tasks()
        self._probed.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task

    # ---- probing -----------------------------------------------------------------------

    async def _loop(self, name: str, probed: Probed, kind: Kind) -> None:
        program = self.table.get(probed.program_id)
        probe = getattr(program, kind)
        assert probe is not None
        await asyncio.sleep(probe.initial_delay_ms / 1000)
        while True:
            program = self.table.get(probed.program_id)
            probe = getattr(program, kind)
            if probe is None:
                return
            began = time.monotonic()
            ok, detail = await self._probe(program, probe, probed.port)
            pause = self.record(name, probed, kind, ok, detail, time.monotonic() - began)
            if pause is None:
                return  # replaced: the new process is probed anew
            await asyncio.sleep(max(0.0, pause - (time.monotonic() - began)))

    def record(
        self, name: str, probed: Probed, kind: Kind, ok: bool, detail: str, spent: float
    ) -> float | None:
        """Fold in one probe's result; the seconds until the next one (None: no more, the
        process is being replaced or the probe was removed)."""
        program = self.table.get(probed.program_id)
        probe: Probe | None = getattr(program, kind)
        if probe is None or self._probed.get(name) is not probed:
            return None
        self.seconds[(name, kind)] += spent
        self.results[(name, kind, ok)] += 1
        self._last[name] = (kind, ok, time.time(), detail)
        if kind == "readiness":
            self._readiness(program, name, probed, probe, ok, detail)
        elif self._liveness(program, name, probed, probe, ok, detail):
            return None
        pause = probe.interval_ms / 1000
        if kind == "readiness" and not probed.ready:
            pause = min(pause, FIRST_READY_PROBE_S)
        return pause

    def _readiness(
        self, program: Program, name: str, probed: Probed, probe: Probe, ok: bool, detail: str
    ) -> None:
        if ok:
            probed.ready_failures = 0
            if not probed.ready:
                probed.ready = probed.ready_once = True
                self._announce(program, name, probed, "READY", None)
            return
        probed.ready_failures += 1
        if probed.ready and probed.ready_failures >= probe.failure_threshold:
            probed.ready = False
            self._announce(program, name, probed, "UNHEALTHY", f"readiness: {detail}")

    def _liveness(
        self, program: Program, name: str, probed: Probed, probe: Probe, ok: bool, detail: str
    ) -> bool:
        if ok:
            probed.live_failures = 0
            return False
        probed.live_failures += 1
        if probed.live_failures == 1:
            self._announce(program, name, probed, "UNHEALTHY", f"liveness: {detail}")
        if probed.live_failures < probe.failure_threshold:
            return False
        self._restarts[name] += 1
        log.warning(
            "liveness_restart", instance=name, failures=probed.live_failures, detail=detail
        )
        self._announce(program, name, probed, "LIVENESS_RESTART", detail)
        # its own task: the restart's stop ends this instance's probing (and this task)
        task = asyncio.create_task(self._replace(name))
        self._side.add(task)
        task.add_done_callback(self._side.discard)
        return True

    async def _replace(self, name: str) -> None:
        try:
            await self._restart(name)
        except Exception as exc:
            log.error("liveness_restart_failed", instance=name, error=str(exc))

    def _announce(
        self, program: Program, name: str, probed: Probed, event: str, detail: str | None
    ) -> None:
        happened = HealthEvent(
            program=program,
            name=name,
            port=probed.port,
            event=event,  # type: ignore[arg-type]
            pid=probed.pid,
            detail=detail,
        )
        for listener in list(self._listeners):
            try:
                listener(happened)
            except Exception:
                log.exception("health_listener_failed", instance=name)

    async def _probe(self, program: Program, probe: Probe, port: int | None) -> tuple[bool, str]:
        timeout = probe.timeout_ms / 1000
        async with self._gate:
            try:
                async with asyncio.timeout(timeout):
                    if isinstance(probe.exec, list):
                        return await self._exec(program, probe.exec, port, timeout)
                    if isinstance(probe.http, str):
                        return await _http(_with_port(probe.http, port))
                    target = port if probe.port == PORT_VARIABLE else probe.port
                    assert isinstance(target, int)
                    return await _connect(target)
            except TimeoutError:
                return False, f"no answer within {probe.timeout_ms} ms"
            except OSError as exc:
                return False, exc.strerror or str(exc)

    async def _exec(
        self, program: Program, argv: list[str], port: int | None, timeout: float
    ) -> tuple[bool, str]:
        account = account_of(program.user)
        extra = dict(program.environment or {})
        if port is not None:
            extra["PORT"] = str(port)
        env = child_environment(account=account, pass_env=self._pass_env, extra=extra)
        switch: dict[str, object] = {}
        if account is not None and os.geteuid() == 0 and account.pw_uid != 0:
            switch = {
                "user": account.pw_uid,
                "group": account.pw_gid,
                "extra_groups": os.getgrouplist(account.pw_name, account.pw_gid),
            }
        cwd = program.directory or (account.pw_dir if account is not None else "/")
        if not os.path.isdir(cwd):
            cwd = "/"
        process = await asyncio.create_subprocess_exec(
            # the open-file limit hoodyd was started with, as the program has it
            *with_open_file_limit(argv, path=env.get("PATH", os.defpath)),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            start_new_session=True,
            **switch,  # type: ignore[arg-type]
        )
        try:
            code = await process.wait()
        except BaseException:  # timed out (or closing): the probe and its children go
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(BaseException):
                await asyncio.shield(process.wait())
            raise
        return code == 0, f"exit status {code}"


@dataclass(order=True, slots=True)
class _Due:
    at: float
    name: str = field(compare=False)
    probed: Probed = field(compare=False)
    kind: Kind = field(compare=False)


class PortSweep:
    """Every port probe of every instance, run in batches: one timer for all of them, and
    each batch's connects made in a worker thread (a non-blocking connect per port, one
    `poll` for the batch), so 500 probes a second cost the loop a few wakeups, not 500 tasks.
    """

    def __init__(self, prober: Prober) -> None:
        self.prober = prober
        self._heap: list[_Due] = []
        self._wake = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._batches: set[asyncio.Task[None]] = set()
        self._swept = 0.0

    def add(self, name: str, probed: Probed, kind: Kind, delay: float) -> None:
        heapq.heappush(self._heap, _Due(time.monotonic() + delay, name, probed, kind))
        self._ensure_running()

    def _ensure_running(self) -> None:
        """The timer task runs while anything is scheduled; it ends when nothing is (a batch
        in flight starts it again with what it reschedules)."""
        if self.prober._closed:
            return
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run())
        self._wake.set()

    def tasks(self) -> list[asyncio.Task[None]]:
        return [t for t in (self._runner, *self._batches) if t is not None]

    async def _run(self) -> None:
        while self._heap:
            now = time.monotonic()
            self._swept = now
            due: list[_Due] = []
            while self._heap and self._heap[0].at <= now:
                item = heapq.heappop(self._heap)
                if self.prober._probed.get(item.name) is item.probed:  # else: dropped
                    due.append(item)
            if due:
                batch = asyncio.create_task(self._probe(due))
                self._batches.add(batch)
                batch.add_done_callback(self._batches.discard)
            if not self._heap:
                return
            self._wake.clear()
            wake_at = max(self._heap[0].at, self._swept + SWEEP_EVERY_S)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wake_at - time.monotonic())
            # woken early (a new probe, a batch done): still no sooner than the next sweep
            await asyncio.sleep(max(0.0, self._swept + SWEEP_EVERY_S - time.monotonic()))

    async def _probe(self, due: list[_Due]) -> None:
        targets: list[tuple[int, float]] = []
        for item in due:
            program = self.prober.table.get(item.probed.program_id)
            probe: Probe | None = getattr(program, item.kind)
            port = probe.port if probe is not None else None
            target = item.probed.port if port == PORT_VARIABLE else port
            timeout = probe.timeout_ms / 1000 if probe is not None else 0.0
            targets.append((target if isinstance(target, int) else 0, timeout))
        began = time.monotonic()
        async with self.prober._gate:
            results = await asyncio.to_thread(connect_all, targets)
        spent = (time.monotonic() - began) / max(len(due), 1)
        for item, (ok, detail) in zip(due, results, strict=True):
            pause = self.prober.record(item.name, item.probed, item.kind, ok, detail, spent)
            if pause is not None:
                item.at = max(item.at + pause, time.monotonic())
                heapq.heappush(self._heap, item)
        if self._heap:
            self._ensure_running()


def connect_all(targets: list[tuple[int, float]]) -> list[tuple[bool, str]]:
    """Connect to each (port, timeout) on 127.0.0.1 at once: whether it accepted within its
    timeout, and why not. Blocking: runs in a worker thread."""
    results: list[tuple[bool, str] | None] = [None] * len(targets)
    waiting: dict[int, tuple[int, socket.socket, float]] = {}
    poller = select.poll()
    began = time.monotonic()
    for index, (port, timeout) in enumerate(targets):
        if not port:
            results[index] = (False, "no port")
            continue
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        code = sock.connect_ex(("127.0.0.1", port))
        if code in (0, errno.EINPROGRESS):
            waiting[sock.fileno()] = (index, sock, began + timeout)
            poller.register(sock, select.POLLOUT)
        else:
            results[index] = (False, os.strerror(code))
            sock.close()
    while waiting:
        deadline = min(end for _i, _s, end in waiting.values())
        for fd, _events in poller.poll(max(0.0, deadline - time.monotonic()) * 1000):
            index, sock, _end = waiting.pop(fd)
            poller.unregister(fd)
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            results[index] = (True, "") if code == 0 else (False, os.strerror(code))
            sock.close()
        now = time.monotonic()
        for fd, (index, sock, end) in list(waiting.items()):
            if end <= now:
                del waiting[fd]
                poller.unregister(fd)
                results[index] = (False, f"no answer within {round((end - began) * 1000)} ms")
                sock.close()
    return [result or (False, "not probed") for result in results]


def _with_port(text: str, port: int | None) -> str:
    return text.replace(PORT_VARIABLE, str(port)) if port is not None else text


async def _connect(port: int, host: str = "127.0.0.1") -> tuple[bool, str]:
    """One TCP connect, then close: a bare non-blocking socket, cheaper than a stream."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, (host, port))
    finally:
        sock.close()
    return True, ""


async def _http(url: str) -> tuple[bool, str]:
    """GET `url` (HTTP/1.0, closed after the status line): 2xx and 3xx are healthy."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    reader, writer = await asyncio.open_connection(host, port)
    try:
        hostname = f"[{host}]" if ":" in host else host
        writer.write(
            f"GET {path} HTTP/1.0\r\nHost: {hostname}:{port}\r\n"
            "User-Agent: hoodyd-probe\r\nConnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        line = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as exc:
        return False, f"connection closed before an answer ({len(exc.partial)} bytes)"
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    fields = line[:HTTP_HEAD_LIMIT].split()
    if len(fields) < 2 or not fields[1].isdigit():
        return False, "not an HTTP answer"
    status = int(fields[1])
    return 200 <= status < 400, f"HTTP {status}"

