"""Quick-start: ephemeral programs that never enter the program list.

Each one is a supervisord group `quick_<ms>` with autostart off, started at once, and cleaned
up (stopped, group and conf file removed, record dropped) on manual stop, on exit, or when its
TTL runs out. Records live in the store's `ephemeral` table so a restarted hoodyd still cleans
up what it launched.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import structlog

from hoodyd.errors import HoodydError, InvalidRequest, NotFound, WaitTimeout
from hoodyd.programs import conf
from hoodyd.programs.flights import start_failure
from hoodyd.programs.rules import build_program, validate_program
from hoodyd.programs.service import ProgramService, read_log
from hoodyd.programs.status import FAILED_STATES, instance_from_info
from hoodyd.programs.supervisor import SupervisorFault
from hoodyd.schemas.daemon import Ephemeral, EphemeralInput, Instance

log = structlog.get_logger()

TEMPORARY_ID = re.compile(r"^quick_[A-Za-z0-9_]+$")
SWEEP_INTERVAL_S = 1.0
# states after which an ephemeral program is gone for good
ENDED_STATES = frozenset({"EXITED", "FATAL", "STOPPED"})


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z")


class QuickStartService:
    def __init__(self, programs: ProgramService) -> None:
        self.programs = programs
        self.client = programs.client
        self._items: dict[str, Ephemeral] = {}
        self._last_id = 0
        self._sweeper: asyncio.Task[None] | None = None
        self._cleanups: set[asyncio.Task[None]] = set()

    async def open(self) -> None:
        self._items = self.programs.store.load_ephemeral()
        self.programs.state_listeners.append(self._on_state)
        self._sweeper = asyncio.create_task(self._sweep_forever())

    async def close(self) -> None:
        for task in [self._sweeper, *self._cleanups]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def _new_id(self) -> str:
        # `quick_<ms>`: the only form older clients accept; bumped by 1 ms on a clash
        stamp = max(int(time.time() * 1000), self._last_id + 1)
        self._last_id = stamp
        return f"quick_{stamp}"

    def _get(self, temporary_id: str) -> Ephemeral:
        if not TEMPORARY_ID.match(temporary_id):
            raise InvalidRequest(
                f"Invalid temporary_id: {temporary_id!r}", reason="INVALID_TEMPORARY_ID"
            )
        item = self._items.get(temporary_id)
        if item is None:
            raise NotFound(
                f"Ephemeral program {temporary_id} not found", reason="EPHEMERAL_NOT_FOUND"
            )
        return item

    async def launch(self, given: EphemeralInput) -> dict[str, Any]:
        temporary_id = self._new_id()
        name = given.name if isinstance(given.name, str) else temporary_id
        program = build_program(
            msgspec.structs.replace(given, name=name),
            program_id=0,
            current=None,
            allow_insecure_webhooks=False,
        )
        validate_program(
            program,
            [],
            log_dir=self.programs.log_dir,
            max_port_range=self.programs.config.programs.max_port_range,
        )
        now = time.time()
        item = Ephemeral(
            temporary_id=temporary_id,
            program=program,
            created_at=now,
            expires_at=now + given.ttl if given.ttl else None,
        )
        text = self._render(item)
        await self.programs.registry.apply({self._filename(item): text}, {temporary_id})
        try:
            await self.client.start(temporary_id, wait=False)
        except SupervisorFault as fault:
            failed = instance_from_info(await self._info(temporary_id), temporary_id, None)
            error = await start_failure(failed, self.client.tail_stderr)
            await self._cleanup(item, reason="spawn_failed")
            raise error from fault
        await self.programs.store.save_ephemeral(item)
        self._items[temporary_id] = item
        log.info("quick_started", temporary_id=temporary_id, ttl=given.ttl)
        instance = instance_from_info(await self._info(temporary_id), temporary_id, None)
        if given.wait:
            instance = await self._wait_running(item, given.timeout)
        return self._response(item, instance)

    async def _wait_running(self, item: Ephemeral, timeout: int) -> Instance:
        deadline = time.monotonic() + timeout
        instance = instance_from_info(None, item.temporary_id, None)
        while time.monotonic() < deadline:
            instance = instance_from_info(
                await self._info(item.temporary_id), item.temporary_id, None
            )
            if instance.status == "RUNNING":
                return instance
            if instance.status in FAILED_STATES or item.temporary_id not in self._items:
                raise await start_failure(instance, self.client.tail_stderr)
            await asyncio.sleep(0.05)
        raise WaitTimeout(
            f"{item.temporary_id} did not reach RUNNING within {timeout}s",
            extra={"status": instance.status.lower()},
        )

    async def status(self, temporary_id: str) -> dict[str, Any]:
        item = self._get(temporary_id)
        instance = instance_from_info(await self._info(temporary_id), temporary_id, None)
        return self._response(item, instance)

    async def listing(self) -> dict[str, Any]:
        infos = await self.programs.status_map()
        listed = []
        for item in sorted(self._items.values(), key=lambda i: i.created_at):
            instance = instance_from_info(
                infos.get(item.temporary_id), item.temporary_id, None
            )
            program = item.program
            listed.append(
                {
                    "temporary_id": item.temporary_id,
                    "name": program.name,
                    "command": program.command,
                    "user": program.user,
                    "stdout_logfile": str(self._log(item, "stdout")),
                    "stderr_logfile": str(self._log(item, "stderr")),
                    "logs_enabled": program.logs_enabled,
                    "log_max_bytes": program.log_max_bytes,
                    "log_backups": program.log_backups,
                    "display": program.display,
                    "status": instance.status.lower(),
                    "pid": instance.pid,
                    "uptime": instance.uptime,
                    "created_at": _iso(item.created_at),
                    "expires_at": _iso(item.expires_at),
                }
            )
        return {"success": True, "count": len(listed), "ephemeral_programs": listed}

    async def logs(self, temporary_id: str, *, stream: str, lines: int) -> dict[str, Any]:
        item = self._get(temporary_id)
        return await read_log(
            item.program, stream=stream, lines=lines, port=None,
            log_dir=self.programs.log_dir, folder=item.temporary_id,
        )

    async def stop(self, temporary_id: str) -> dict[str, Any]:
        item = self._get(temporary_id)
        await self._cleanup(item, reason="stopped")
        return {
            "success": True,
            "temporary_id": temporary_id,
            "cleaned_up": True,
            "message": f"Ephemeral program {temporary_id} stopped and cleaned up",
        }

    # ---- internals -------------------------------------------------------------------

    def _log(self, item: Ephemeral, stream: str) -> Path:
        return conf.log_file(
            item.program, stream, self.programs.log_dir, None,
            folder=item.temporary_id,
        )

    def _filename(self, item: Ephemeral) -> str:
        return f"{conf.FILE_PREFIX}quick-{item.temporary_id}.conf"

    def _render(self, item: Ephemeral) -> str:
        return conf.render(
            item.program,
            port=None,
            autostart=False,
            log_dir=self.programs.log_dir,
            name=item.temporary_id,
            log_folder=item.temporary_id,
        )

    async def _info(self, name: str) -> dict[str, Any] | None:
        try:
            return await self.client.process_info(name)
        except SupervisorFault as fault:
            if fault.code == 10:
                return None
            raise

    def _response(self, item: Ephemeral, instance: Instance) -> dict[str, Any]:
        return {
            "success": True,
            "temporary_id": item.temporary_id,
            "name": item.program.name,
            "display": item.program.display,
            "status": "running" if instance.status == "RUNNING" else "starting"
            if instance.status in ("STARTING", "BACKOFF") else instance.status.lower(),
            "pid": instance.pid,
            "uptime": instance.uptime,
            "created_at": _iso(item.created_at),
            "expires_at": _iso(item.expires_at),
        }

    async def _cleanup(self, item: Ephemeral, *, reason: str) -> None:
        await self.programs.registry.apply({self._filename(item): None}, {item.temporary_id})
        await self.programs.store.delete_ephemeral(item.temporary_id)
        self._items.pop(item.temporary_id, None)
        log.info("quick_cleaned_up", temporary_id=item.temporary_id, reason=reason)

    def _on_state(self, name: str, state: str) -> None:
        item = self._items.get(name)
        if item is not None and state in ENDED_STATES:
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
                    infos = await self.programs.status_map()
            if infos is not None:
                for item in list(self._items.values()):
                    info = infos.get(item.temporary_id)
                    if info is None or info["statename"] in ENDED_STATES:
                        await self._cleanup_quietly(item, "exited")
            await asyncio.sleep(SWEEP_INTERVAL_S)
