"""Registration of process groups with supervisord: conf files in the include dir, then one
serialized `reloadConfig` and the group additions and removals it calls for.

Only the groups hoodyd touched are acted upon, so an external supervisord's other programs
are never stopped or re-added by hoodyd. A write that supervisord refuses is rolled back.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import structlog

from hoodyd.programs.conf import FILE_PREFIX, check, log_paths
from hoodyd.programs.supervisor import SupervisorClient, SupervisorFault
from hoodyd.programs.supervisord import make_private_dirs, write_atomic

log = structlog.get_logger()

NOT_RUNNING = 70
BAD_NAME = 10


class Registry:
    def __init__(self, client: SupervisorClient, include_dir: Path) -> None:
        self.client = client
        self.include_dir = include_dir
        self._lock = asyncio.Lock()

    def owned_files(self) -> dict[str, str]:
        """hoodyd's conf files in the include dir: filename → content."""
        return {
            path.name: path.read_text()
            for path in sorted(self.include_dir.glob(f"{FILE_PREFIX}*.conf"))
        }

    async def apply(
        self, files: dict[str, str | None], groups: set[str], *, restart_changed: bool = True
    ) -> tuple[list[str], list[str], list[str]]:
        """Write (text) or delete (None) each conf file, reload, and bring the named groups in
        line: removed groups are stopped and removed, changed ones re-added, new ones added."""
        for text in files.values():
            if text is not None:
                _make_log_dirs(text)
                check(text)
        async with self._lock:
            previous = self._write(files)
            try:
                added, changed, removed = await self.client.reload_config()
            except SupervisorFault:
                self._write(previous)
                raise
            added = [g for g in added if g in groups]
            changed = [g for g in changed if g in groups]
            removed = [g for g in removed if g in groups]
            for name in removed + (changed if restart_changed else []):
                await self._stop_and_remove(name)
            for name in added + (changed if restart_changed else []):
                with contextlib.suppress(SupervisorFault):  # ALREADY_ADDED after a race
                    await self.client.add_group(name)
            if added or changed or removed:
                log.info("supervisor_groups_applied", added=added, changed=changed, removed=removed)
            return added, changed, removed

    def _write(self, files: dict[str, str | None]) -> dict[str, str | None]:
        previous: dict[str, str | None] = {}
        for filename, text in files.items():
            path = self.include_dir / filename
            previous[filename] = path.read_text() if path.exists() else None
            if text is None:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            else:
                write_atomic(path, text)
        return previous

    async def _stop_and_remove(self, name: str) -> None:
        try:
            await self.client.stop(name, wait=True)
        except SupervisorFault as fault:
            if fault.code not in (NOT_RUNNING, BAD_NAME):
                raise
        try:
            await self.client.remove_group(name)
        except SupervisorFault as fault:
            if fault.code != BAD_NAME:
                raise


def _make_log_dirs(text: str) -> None:
    """supervisord refuses a log file whose directory does not exist: create them first,
    closed to others."""
    for path in log_paths(text):
        make_private_dirs(path.parent)
