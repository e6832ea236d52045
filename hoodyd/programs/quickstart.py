"""Quick-start: ephemeral programs that never enter the program list.

Each one is a supervisord group `quick_<ms>` with autostart off, started at once, and cleaned
up (stopped, group and conf file removed, record dropped) on manual stop, on exit, or when its
TTL runs out; its log folder goes with it. Records live in the store's `ephemeral` table so
a restarted hoodyd still cleans up what it launched.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import msgspec
import structlog
from msgspec import UNSET

from hoodyd.errors import (
    HoodydError,
    InvalidRequest,
    NotFound,
    Reason,
    SupervisorFault,
    WaitTimeout,
)
from hoodyd.polling import poll_until
from hoodyd.programs import conf
from hoodyd.programs.instances import start_failure
from hoodyd.programs.logs import read_log
from hoodyd.programs.observer import Observer, Transition
from hoodyd.programs.registry import NotApplied, Registry
from hoodyd.programs.rules import build_program, validate_program
from hoodyd.programs.status import FAILED_STATES, instance_from_info
from hoodyd.programs.supervisor_client import SupervisorClient
from hoodyd.schemas.daemon import (
    Ephemeral,
    EphemeralInput,
    EphemeralListing,
    EphemeralStatus,
    Instance,
    LogTail,
)
from hoodyd.tasks import cancel_and_wait

log = structlog.get_logger()

TEMPORARY_ID = re.compile(r"^quick_[A-Za-z0-9_]+$")
SWEEP_INTERVAL_S = 1.0
# states after which an ephemeral program is gone for good
ENDED_STATES = frozenset({"EXITED", "FATAL", "STOPPED"})


class EphemeralStore(Protocol):
    def load_ephemeral(self) -> dict[str, Ephemeral]: ...

    async def save_ephemeral(self, item: Ephemeral) -> None: ...

    async def delete_ephemeral(self, temporary_id: str) -> None: ...


class ProgramParts(Protocol):
    """What quick-start uses of program control, and nothing else: supervisord's client, the
    registry that writes conf files, the store's ephemeral records, the process transitions
    and where logs go. `ProgramService` provides them."""

    @property
    def client(self) -> SupervisorClient: ...

    @property
    def registry(self) -> Registry: ...

    @property
    def store(self) -> EphemeralStore: ...

    @property
    def observer(self) -> Observer: ...

    @property
    def log_dir(self) -> Path: ...


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z")


def _expiry(item: Ephemeral) -> str | None:
    return None if item.expires_at is None else _iso(item.expires_at)


class QuickStartService:
    def __init__(self, parts: ProgramParts) -> None:
        self._client = parts.client
        self._registry = parts.registry
        self._store = parts.store
        self._observer = parts.observer
        self._log_dir = parts.log_dir
        self._items: dict[str, Ephemeral] = {}
        self._last_id = 0
        self._sweeper: asyncio.Task[None] | None = None
        self._cleanups: set[asyncio.Task[None]] = set()
        self._stop_listening: Callable[[], None] | None = None

    async def open(self) -> None:
        self._items = self._store.load_ephemeral()
        self._stop_listening = self._observer.subscribe(self._on_transition)
        self._sweeper = asyncio.create_task(self._sweep_forever())

    async def close(self) -> None:
        if self._stop_listening is not None:
            self._stop_listening()
        await cancel_and_wait(self._sweeper, *self._cleanups)

    # ---- answers -----------------------------------------------------------------------

    async def launch(self, given: EphemeralInput) -> EphemeralStatus:
        temporary_id = self._new_id()
        name = given.name if isinstance(given.name, str) else temporary_id
        program = build_program(
            msgspec.structs.replace(given, name=name),
            program_id=0,
            current=None,
            allow_insecure_webhooks=False,
        )
        # an ephemeral program has no port range (EphemeralInput has none) to bound
        validate_program(program, [], log_dir=self._log_dir, max_port_range=0)
        now = time.time()
        item = Ephemeral(
            temporary_id=temporary_id,
            program=program,
            created_at=now,
            expires_at=now + given.ttl if given.ttl else None,
        )
        # its file and its row together (or neither), then supervisord adds and starts it
        try:
            await self._registry.register_ephemeral(
                item, lambda: self._store.save_ephemeral(item)
            )
        except NotApplied as exc:
            self._items[temporary_id] = item
            await self._cleanup(item, reason="not_added")
            raise exc.cause from None
        self._items[temporary_id] = item
        try:
            await self._client.start(temporary_id, wait=False)
        except SupervisorFault as fault:
            error = await start_failure(self._client, await self._instance(temporary_id))
            await self._cleanup(item, reason="spawn_failed")
            raise error from fault
        log.info("quick_started", temporary_id=temporary_id, ttl=given.ttl)
        instance = await self._instance(temporary_id)
        if given.wait:
            instance = await self._wait_running(item, given.timeout)
        return self._status(item, instance)

    async def status(self, temporary_id: str) -> EphemeralStatus:
        item = self._get(temporary_id)
        return self._status(item, await self._instance(temporary_id))

    async def listing(self) -> list[EphemeralListing]:
        infos = await self._client.processes()
        listed = []
        for item in sorted(self._items.values(), key=lambda i: i.created_at):
            instance = instance_from_info(infos.get(item.temporary_id), item.temporary_id, None)
            program = item.program
            listed.append(
                EphemeralListing(
                    temporary_id=item.temporary_id,
                    name=program.name,
                    command=program.command,
                    user=program.user,
                    stdout_logfile=str(self._log_file(item, "stdout")),
                    stderr_logfile=str(self._log_file(item, "stderr")),
                    logs_enabled=program.logs_enabled,
                    log_max_bytes=program.log_max_bytes,
                    log_backups=program.log_backups,
                    display=program.display,
                    status=instance.status.lower(),
                    pid=instance.pid,
                    uptime=instance.uptime,
                    created_at=_iso(item.created_at),
                    expires_at=_expiry(item),
                )
            )
        return listed

    async def logs(self, temporary_id: str, *, stream: str, lines: int) -> LogTail:
        item = self._get(temporary_id)
        return await read_log(
            item.program,
            stream=stream,
            lines=lines,
            port=None,
            log_dir=self._log_dir,
            folder=item.temporary_id,
        )

    async def stop(self, temporary_id: str) -> None:
        """Stop the program and clean up after it; later calls about it answer 404."""
        await self._cleanup(self._get(temporary_id), reason="stopped")

    # ---- internals ---------------------------------------------------------------------

    def _new_id(self) -> str:
        # `quick_<ms>`: the only form older clients accept; bumped by 1 ms on a clash
        stamp = max(int(time.time() * 1000), self._last_id + 1)
        self._last_id = stamp
        return f"quick_{stamp}"

    def _get(self, temporary_id: str) -> Ephemeral:
        if not TEMPORARY_ID.match(temporary_id):
            raise InvalidRequest(
                f"Invalid temporary_id: {temporary_id!r}", reason=Reason.INVALID_TEMPORARY_ID
            )
        item = self._items.get(temporary_id)
        if item is None:
            raise NotFound(
                f"Ephemeral program {temporary_id} not found", reason=Reason.EPHEMERAL_NOT_FOUND
            )
        return item

    async def _instance(self, temporary_id: str) -> Instance:
        info = await self._client.find_process(temporary_id)
        return instance_from_info(info, temporary_id, None)

    async def _wait_running(self, item: Ephemeral, timeout: int) -> Instance:
        last = instance_from_info(None, item.temporary_id, None)

        async def running() -> Instance | None:
            nonlocal last
            last = await self._instance(item.temporary_id)
            if last.status == "RUNNING":
                return last
            if last.status in FAILED_STATES or item.temporary_id not in self._items:
                raise await start_failure(self._client, last)
            return None

        instance = await poll_until(running, timeout=timeout, interval=0.05)
        if instance is None:
            raise WaitTimeout(
                f"{item.temporary_id} did not reach RUNNING within {timeout}s",
                extra={"status": last.status.lower()},
            )
        return instance

    def _log_file(self, item: Ephemeral, stream: str) -> Path:
        return conf.log_file(item.program, stream, self._log_dir, None, folder=item.temporary_id)

    def _status(self, item: Ephemeral, instance: Instance) -> EphemeralStatus:
        # supervisord's state as it is: BACKOFF (it failed and will try again) is not
        # `starting`, and says how often it failed and how it last exited
        status = instance.status.lower()
        failing = instance.status in ("BACKOFF", "FATAL")
        attempts = (
            self._observer.failed_attempts(item.temporary_id, instance.status) if failing else None
        )
        return EphemeralStatus(
            temporary_id=item.temporary_id,
            name=item.program.name,
            display=item.program.display,
            status=status,
            pid=instance.pid,
            uptime=instance.uptime,
            created_at=_iso(item.created_at),
            expires_at=_expiry(item),
            exitstatus=UNSET if instance.exitstatus is None else instance.exitstatus,
            spawnerr=UNSET if instance.spawnerr is None else instance.spawnerr,
            attempts=UNSET if attempts is None else attempts,
        )

    async def _cleanup(self, item: Ephemeral, *, reason: str) -> None:
        # out of the table while it is cleaned up: its stop's own transition does not
        # clean it up a second time
        self._items.pop(item.temporary_id, None)
        try:
            await self._registry.unregister_ephemeral(
                item.temporary_id, lambda: self._store.delete_ephemeral(item.temporary_id)
            )
        except NotApplied as exc:  # its file and row are gone; supervisord kept the group
            log.warning("quick_group_not_removed", temporary_id=item.temporary_id, error=str(exc))
        except BaseException:
            self._items[item.temporary_id] = item  # nothing changed: it is still here
            raise
        # its log folder goes with it (log files configured elsewhere are the caller's)
        folder = self._log_dir / item.temporary_id
        await asyncio.to_thread(shutil.rmtree, folder, ignore_errors=True)
        log.info("quick_cleaned_up", temporary_id=item.temporary_id, reason=reason)

    def _on_transition(self, change: Transition) -> None:
        item = self._items.get(change.name)
        if item is not None and change.state in ENDED_STATES:
            self._schedule_cleanup(item, "exited")

    def _schedule_cleanup(self, item: Ephemeral, reason: str) -> None:
        task = asyncio.create_task(self._cleanup_quietly(item, reason))
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)

    async def _cleanup_quietly(self, item: Ephemeral, reason: str) -> None:
        try:
            await self._cleanup(item, reason=reason)
        except HoodydError as exc:
            log.warning("quick_cleanup_failed", temporary_id=item.temporary_id, error=exc.message)

    async def _sweep_forever(self) -> None:
        """TTL expiry, and programs that ended while nobody watched (also across restarts)."""
        while True:
            now = time.time()
            for item in list(self._items.values()):
                if item.expires_at is not None and item.expires_at <= now:
                    await self._cleanup_quietly(item, "ttl_expired")
            infos = None
            if self._items:
                with contextlib.suppress(HoodydError):
                    infos = await self._client.processes()
            if infos is not None:
                for item in list(self._items.values()):
                    info = infos.get(item.temporary_id)
                    if info is None or info.statename in ENDED_STATES:
                        await self._cleanup_quietly(item, "exited")
            await asyncio.sleep(SWEEP_INTERVAL_S)
