"""Registration with supervisord: the one place that renders hoodyd's conf files into the
include dir, deletes them, and calls `reloadConfig`, `addProcessGroup` and
`removeProcessGroup`.

Each change writes the files, then one serialized `reloadConfig` and the group additions and
removals it calls for; one group added on demand (a port instance, a quick-start) is added
from its one file instead, where the embedded supervisord runs hoodyd's plugin. Only the
groups hoodyd touched are acted upon, so an external supervisord's other programs are never
stopped or re-added by hoodyd. A write that supervisord refuses is rolled back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from pathlib import Path

import structlog

from hoodyd.errors import SupervisorFault
from hoodyd.programs import conf
from hoodyd.programs.files import make_private_dirs, write_atomic
from hoodyd.programs.supervisor_client import Fault, SupervisorClient
from hoodyd.programs.table import Owner
from hoodyd.schemas.daemon import Ephemeral, Program

log = structlog.get_logger()

LISTENER_FILE = "hoodyd-events.conf"
LISTENER_GROUP = "hoodyd-events"

Files = dict[str, str | None]  # filename → text to write, or None to delete


class Registry:
    def __init__(
        self,
        client: SupervisorClient,
        include_dir: Path,
        log_dir: Path,
        *,
        single_file_adds: bool = False,
        holders_dir: Path | None = None,
    ) -> None:
        self.client = client
        self.include_dir = include_dir
        self.log_dir = log_dir
        # where programs with a terminal_id serve their terminal (`hoodyd.terminals.holder`)
        self.holders_dir = holders_dir
        # supervisord loaded hoodyd's plugin (embedded): one group is added from its file
        self.single_file_adds = single_file_adds
        self._lock = asyncio.Lock()

    # ---- what is registered ------------------------------------------------------------

    def _owned_files(self) -> dict[str, str]:
        """hoodyd's conf files in the include dir: filename → content."""
        return {
            path.name: path.read_text()
            for path in sorted(self.include_dir.glob(f"{conf.FILE_PREFIX}*.conf"))
        }

    def owned_groups(self) -> dict[str, Owner]:
        """Group name → (program id, port) of every program file in the include dir."""
        groups = {}
        for text in self._owned_files().values():
            header = conf.parse_header(text)
            if header is not None:
                groups[conf.section_name(text)] = header
        return groups

    def groups_of(self, program: Program) -> list[str]:
        return [conf.section_name(text) for text in self._files_of(program).values()]

    def _files_of(self, program: Program) -> dict[str, str]:
        prefix = f"{conf.FILE_PREFIX}program-{program.id}"
        return {
            name: text
            for name, text in self._owned_files().items()
            if name == f"{prefix}.conf" or name.startswith(f"{prefix}-")
        }

    # ---- rendering ---------------------------------------------------------------------

    def _default_files(self, program: Program) -> dict[str, str]:
        """filename → conf text of every group the enabled program has registered by default."""
        if program.port_range is None:
            autostart = program.boot and not program.lazy_load
            text = conf.render(
                program,
                port=None,
                autostart=autostart,
                log_dir=self.log_dir,
                holders_dir=self.holders_dir,
            )
            return {conf.conf_filename(program, None): text}
        if not program.boot:
            return {}  # instances are registered when a start names their port
        return dict(self._instance_file(program, port) for port in program.ports())

    def _instance_file(self, program: Program, port: int) -> tuple[str, str]:
        text = conf.render(
            program,
            port=port,
            autostart=program.boot,
            log_dir=self.log_dir,
            holders_dir=self.holders_dir,
        )
        return conf.conf_filename(program, port), text

    def _wanted(self, text: str, programs: Mapping[int, Program]) -> str | None:
        """What a program file on disk should contain now; None if it should go."""
        header = conf.parse_header(text)
        program = programs.get(header[0]) if header else None
        if header is None or program is None or not program.enabled:
            return None
        port = header[1]
        if port is None:
            if program.port_range is not None:
                return None
            return self._default_files(program)[conf.conf_filename(program, None)]
        if program.port_range is None or port not in program.ports():
            return None
        return self._instance_file(program, port)[1]

    # ---- changes -----------------------------------------------------------------------

    async def register(self, program: Program) -> None:
        files = self._default_files(program)
        await self._apply(dict(files), {conf.section_name(text) for text in files.values()})

    async def unregister(self, program: Program) -> None:
        owned = self._files_of(program)
        if owned:
            await self._apply(
                dict.fromkeys(owned), {conf.section_name(text) for text in owned.values()}
            )

    async def reregister(self, current: Program, program: Program) -> set[str]:
        """Bring supervisord from `current` to `program`: the groups registered afterwards.
        A port-range program keeps the instances that exist and still fit its range."""
        owned = self._files_of(current)
        files: Files = dict.fromkeys(owned)
        groups = {conf.section_name(text) for text in owned.values()}
        if program.enabled:
            files.update(self._default_files(program))
            if program.port_range is not None:
                for text in owned.values():
                    header = conf.parse_header(text)
                    port = header[1] if header else None
                    if port is not None and port in program.ports():
                        filename, kept = self._instance_file(program, port)
                        files[filename] = kept
            groups |= {conf.section_name(text) for text in files.values() if text is not None}
        await self._apply(files, groups)
        return {conf.section_name(text) for text in files.values() if text is not None}

    async def ensure_instance(self, program: Program, port: int | None) -> str:
        """Register the instance's group (an on-demand port, or a group a restarted
        supervisord came back without); its supervisord name."""
        files: Files
        if port is None:
            files = dict(self._default_files(program))
        else:
            filename, text = self._instance_file(program, port)
            files = {filename: text}
        name = conf.instance_name(program, port)
        if not await self._add_one(files, name):
            await self._apply(files, {name})
        return name

    async def _add_one(self, files: Files, name: str) -> bool:
        """Register one group from its one file without re-reading every other file
        (`hoodyd.programs.supervisor_plugin`): its cost does not grow with the number of
        groups registered. False where supervisord lacks the plugin (an external one, or
        one started by an older hoodyd): the caller reloads instead."""
        if not self.single_file_adds or len(files) != 1:
            return False
        ((filename, text),) = files.items()
        if text is None:
            return False
        _make_log_dirs(text)
        conf.check(text)
        async with self._lock:
            # not forced to disk: an instance's file is rebuilt from the store (its program,
            # and the instances that should run) if a crash loses it
            previous = self._write(files, durable=False)
            try:
                await self.client.add_group_from_file(str(self.include_dir / filename))
            except SupervisorFault as fault:
                if fault.code == Fault.ALREADY_ADDED:  # added meanwhile: nothing to do
                    return True
                if fault.code == Fault.UNKNOWN_METHOD:
                    self.single_file_adds = False
                    return False  # the file stays: the caller's reload reads it
                self._write(previous)
                raise
        log.info("supervisor_group_added", group=name)
        return True

    async def register_ephemeral(self, item: Ephemeral) -> None:
        text = conf.render(
            item.program,
            port=None,
            autostart=False,
            log_dir=self.log_dir,
            name=item.temporary_id,
            log_folder=item.temporary_id,
        )
        files: Files = {conf.ephemeral_filename(item.temporary_id): text}
        if not await self._add_one(files, item.temporary_id):
            await self._apply(files, {item.temporary_id})

    async def unregister_ephemeral(self, temporary_id: str) -> None:
        await self._apply({conf.ephemeral_filename(temporary_id): None}, {temporary_id})

    async def reconcile(self, programs: Mapping[int, Program], *, listener: str | None) -> None:
        """Make supervisord match `programs` (and the event listener's section, None for no
        listener); log every change. Running programs whose definition did not change are
        left alone (same pids)."""
        changes: list[str] = []
        files: Files = {LISTENER_FILE: listener}
        groups = {LISTENER_GROUP}
        on_disk = self._owned_files()
        for filename, text in on_disk.items():
            if filename == LISTENER_FILE or filename.startswith(conf.EPHEMERAL_PREFIX):
                continue
            wanted = self._wanted(text, programs)
            if wanted != text:
                files[filename] = wanted
                groups.add(conf.section_name(text))
                changes.append(f"{'rewrote' if wanted else 'removed stale'} {filename}")
        for program in programs.values():
            if not program.enabled:
                continue
            for filename, text in self._default_files(program).items():
                groups.add(conf.section_name(text))
                if filename not in on_disk:
                    files[filename] = text
                    changes.append(f"wrote {filename}")
        infos = await self.client.processes()
        added, changed, removed = await self._apply(files, groups)
        present = {conf.section_name(text) for text in self._owned_files().values()}
        for group in sorted(present - set(infos) - set(added)):
            if await self._readd(group):
                changes.append(f"re-added group {group}")
        changes += [f"supervisord added {g}" for g in added]
        changes += [f"supervisord changed {g}" for g in changed]
        changes += [f"supervisord removed {g}" for g in removed]
        log.info("reconciled", changes=changes)

    async def _readd(self, group: str) -> bool:
        """Add a group whose file is in place but whose processes supervisord lacks."""
        try:
            await self.client.add_group(group)
        except SupervisorFault as fault:
            if fault.code == Fault.ALREADY_ADDED:  # added meanwhile: nothing to do
                return False
            if fault.code == Fault.BAD_NAME:  # its file is not in supervisord's config
                log.warning("group_not_in_config", group=group)
                return False
            raise
        return True

    async def _apply(
        self, files: Files, groups: set[str]
    ) -> tuple[list[str], list[str], list[str]]:
        """Write (text) or delete (None) each conf file, reload, and bring the named groups in
        line: removed groups are stopped and removed, changed ones re-added, new ones added."""
        for text in files.values():
            if text is not None:
                _make_log_dirs(text)
                conf.check(text)
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
            for name in removed + changed:
                await self._stop_and_remove(name)
            for name in added + changed:
                try:
                    await self.client.add_group(name)
                except SupervisorFault as fault:
                    if fault.code != Fault.ALREADY_ADDED:  # another reload added it first
                        raise
            if added or changed or removed:
                log.info("supervisor_groups_applied", added=added, changed=changed, removed=removed)
            return added, changed, removed

    def _write(self, files: Files, *, durable: bool = True) -> Files:
        """Write every file, or (a write failed: disk full) none of them."""
        previous: Files = {}
        for filename in files:
            path = self.include_dir / filename
            previous[filename] = path.read_text() if path.exists() else None
        try:
            self._put(files, durable=durable)
        except OSError:
            with contextlib.suppress(OSError):
                self._put(previous)
            raise
        return previous

    def _put(self, files: Files, *, durable: bool = True) -> None:
        for filename, text in files.items():
            path = self.include_dir / filename
            if text is None:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            else:
                write_atomic(path, text, durable=durable)

    async def _stop_and_remove(self, name: str) -> None:
        try:
            await self.client.stop(name, wait=True)
        except SupervisorFault as fault:
            if fault.code not in (Fault.NOT_RUNNING, Fault.BAD_NAME):
                raise
        try:
            await self.client.remove_group(name)
        except SupervisorFault as fault:
            if fault.code != Fault.BAD_NAME:
                raise


def _make_log_dirs(text: str) -> None:
    """supervisord refuses a log file whose directory does not exist: create them first,
    closed to others."""
    for path in conf.log_paths(text):
        make_private_dirs(path.parent)
