"""Registration with supervisord: the one place that renders hoodyd's conf files into the
include dir, deletes them, and adds and removes supervisord process groups.

A change (`change`) is atomic: the new files are written to temp names and forced to disk,
moved into place with the old ones moved aside, and then the caller's store transaction
commits. If anything fails up to the commit, the renames are undone (no data is written, so
this works on a full disk) and nothing changed. After the commit, supervisord is brought in
line group by group: with hoodyd's plugin (the embedded supervisord) each group is added
from its one file, so no change re-reads or re-writes any other program's file; an external
supervisord gets one `reloadConfig` per change. Only the groups hoodyd touched are acted
upon, so an external supervisord's other programs are never stopped or re-added by hoodyd.

The conf files are kept in memory after start-up (`load`): no change reads the include dir.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping, Set
from pathlib import Path

import structlog

from hoodyd.errors import StateNotSaved, SupervisorFault
from hoodyd.programs import conf
from hoodyd.programs.files import (
    Staging,
    make_private_dirs,
    remove_empty_dirs,
    sweep_leftovers,
)
from hoodyd.programs.supervisor_client import Fault, ProcessInfo, SupervisorClient
from hoodyd.programs.table import Owner
from hoodyd.schemas.daemon import Ephemeral, Program

log = structlog.get_logger()
# stop-and-remove rounds for a group whose process autorestart brings back in between
REMOVE_ATTEMPTS = 5

LISTENER_FILE = "hoodyd-events.conf"
LISTENER_GROUP = "hoodyd-events"

Files = dict[str, str | None]  # filename → text to write, or None to delete
Commit = Callable[[], Awaitable[None]]


class NotApplied(Exception):
    """The change was committed (files and store), but supervisord refused to follow."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause


def not_saved(exc: OSError) -> StateNotSaved:
    return StateNotSaved(
        f"hoodyd could not write supervisord's config ({exc}); nothing was changed",
        extra={"changed": False},
    )


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
        # the names of the programs others wait on with `exited_ok`: registered as one-shot
        # jobs (`conf.render`); set by the service, which knows the programs
        self.exit_targets: Callable[[], Set[str]] = frozenset
        self._lock = asyncio.Lock()
        self._files: dict[str, str] | None = None  # hoodyd's conf files: filename → text
        self._by_program: dict[int, set[str]] = {}

    # ---- what is registered ------------------------------------------------------------

    def load(self) -> list[str]:
        """Read hoodyd's conf files once (start-up), after removing the temp and moved-aside
        files an interrupted change left; the names removed."""
        removed = sweep_leftovers(self.include_dir, conf.FILE_PREFIX)
        self._files = {}
        self._by_program = {}
        for path in sorted(self.include_dir.glob(f"{conf.FILE_PREFIX}*.conf")):
            self._remember(path.name, path.read_text())
        return removed

    def _remember(self, filename: str, text: str | None) -> None:
        files = self._owned_files()
        old = files.pop(filename, None)
        if old is not None:
            header = conf.parse_header(old)
            if header is not None:
                self._by_program.get(header[0], set()).discard(filename)
        if text is not None:
            files[filename] = text
            header = conf.parse_header(text)
            if header is not None:
                self._by_program.setdefault(header[0], set()).add(filename)

    def _owned_files(self) -> dict[str, str]:
        """hoodyd's conf files in the include dir: filename → content."""
        if self._files is None:
            self.load()
        assert self._files is not None
        return self._files

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

    def owned_groups_of(self, program_id: int) -> dict[str, Owner]:
        """Group name → (program id, port) of one program's files."""
        files = self._owned_files()
        groups = {}
        for filename in self._by_program.get(program_id, set()):
            header = conf.parse_header(files[filename])
            if header is not None:
                groups[conf.section_name(files[filename])] = header
        return groups

    def _files_of(self, program: Program) -> dict[str, str]:
        files = self._owned_files()
        return {name: files[name] for name in sorted(self._by_program.get(program.id, set()))}

    # ---- rendering ---------------------------------------------------------------------

    def _default_files(
        self, program: Program, targets: Set[str] | None = None
    ) -> dict[str, str]:
        """filename → conf text of every group the enabled program has registered by default.
        `targets`: the one-shot jobs' names (`exit_targets`), when the caller has them."""
        if program.port_range is None:
            if targets is None:
                targets = self.exit_targets()
            # a boot program with dependencies is started by hoodyd, after them
            autostart = program.boot and not program.lazy_load and not program.depends_on
            text = conf.render(
                program,
                port=None,
                autostart=autostart,
                log_dir=self.log_dir,
                holders_dir=self.holders_dir,
                one_shot=program.name in targets,
            )
            return {conf.conf_filename(program, None): text}
        if not program.boot:
            return {}  # instances are registered when a start names their port
        return dict(self._instance_file(program, port) for port in program.ports())

    def _instance_file(self, program: Program, port: int) -> tuple[str, str]:
        text = conf.render(
            program,
            port=port,
            # as for a standard program: with dependencies, hoodyd starts it after them
            autostart=program.boot and not program.depends_on,
            log_dir=self.log_dir,
            holders_dir=self.holders_dir,
        )
        return conf.conf_filename(program, port), text

    def _wanted(
        self, text: str, programs: Mapping[int, Program], targets: Set[str]
    ) -> str | None:
        """What a program file on disk should contain now; None if it should go."""
        header = conf.parse_header(text)
        program = programs.get(header[0]) if header else None
        if header is None or program is None or not program.enabled:
            return None
        port = header[1]
        if port is None:
            if program.port_range is not None:
                return None
            return self._default_files(program, targets)[conf.conf_filename(program, None)]
        if program.port_range is None or port not in program.ports():
            return None
        return self._instance_file(program, port)[1]

    # ---- plans: the files a change writes (text) and deletes (None) --------------------

    def files_to_register(self, program: Program, targets: Set[str] | None = None) -> Files:
        return dict(self._default_files(program, targets))

    def files_to_rerender(self, program: Program, targets: Set[str]) -> Files:
        """The registered program's file as `targets` (the one-shot jobs after a change of
        another program's dependencies) has it; nothing if it would not change."""
        files: Files = {}
        if not program.enabled:
            return files
        owned = self._files_of(program)
        for filename, text in self._default_files(program, targets).items():
            if owned.get(filename) != text:
                files[filename] = text
        return files

    def files_to_unregister(self, program: Program) -> Files:
        return dict.fromkeys(self._files_of(program))

    def files_to_reregister(self, current: Program, program: Program) -> Files:
        """The files that bring supervisord from `current` to `program`. A port-range
        program keeps the instances that exist and still fit its range."""
        owned = self._files_of(current)
        files: Files = dict.fromkeys(owned)
        if program.enabled:
            files.update(self._default_files(program))
            if program.port_range is not None:
                for text in owned.values():
                    header = conf.parse_header(text)
                    port = header[1] if header else None
                    if port is not None and port in program.ports():
                        filename, kept = self._instance_file(program, port)
                        files[filename] = kept
        return files

    @staticmethod
    def groups_in(files: Files) -> set[str]:
        return {conf.section_name(text) for text in files.values() if text is not None}

    # ---- changes -----------------------------------------------------------------------

    async def change(self, files: Files, commit: Commit | None = None) -> None:
        """Write (text) or delete (None) each conf file and run `commit` (the store
        transaction), all or nothing: a failure up to the commit undoes the files and is
        raised (`StateNotSaved` for the disk). Then supervisord follows, group by group;
        if it refuses, `NotApplied` (the files and the store have changed)."""
        created: list[Path] = []  # log dirs, removed again if the change fails
        try:
            for text in files.values():
                if text is not None:
                    created += _make_log_dirs(text)  # supervisord's parser checks they exist
            for text in files.values():
                if text is not None:
                    conf.check(text)
        except OSError as exc:
            remove_empty_dirs(created)
            raise not_saved(exc) from exc
        except BaseException:
            remove_empty_dirs(created)
            raise
        async with self._lock:
            staging = Staging(self.include_dir, files)
            try:
                if files:  # a disabled program's change is its store transaction alone
                    await asyncio.to_thread(_stage_and_publish, staging)
                if commit is not None:
                    await commit()
            except OSError as exc:
                await asyncio.to_thread(staging.undo)
                remove_empty_dirs(created)
                raise not_saved(exc) from exc
            except BaseException:
                await asyncio.to_thread(staging.undo)
                remove_empty_dirs(created)
                raise
            if files:
                await asyncio.to_thread(staging.finish)
            current = self._owned_files()
            previous = {name: current.get(name) for name in files}
            for name, text in files.items():
                self._remember(name, text)
            try:
                await self._follow(files, previous)
            except Exception as exc:
                raise NotApplied(exc) from exc

    async def _follow(self, files: Files, previous: Files) -> None:
        """supervisord follows the files that changed: a deleted or changed file's group is
        stopped and removed, a new or changed one added."""
        if not self.single_file_adds:
            groups = self.groups_in(files) | self.groups_in(previous)
            await self._reload_and_apply(groups)
            return
        changed: list[str] = []
        removed: list[str] = []
        for name, text in files.items():
            before = previous.get(name)
            if before is not None and before != text:
                await self._stop_and_remove(conf.section_name(before))
                (changed if text is not None else removed).append(conf.section_name(before))
            if text is not None:
                try:
                    await self._add_from_file(name)
                except SupervisorFault as fault:
                    if fault.code == Fault.UNKNOWN_METHOD:  # an older supervisord: reload
                        self.single_file_adds = False
                        await self._reload_and_apply(self.groups_in(files))
                        return
                    if fault.code != Fault.ALREADY_ADDED:  # in place already: nothing to do
                        raise
                    continue
        if changed or removed:
            log.info("supervisor_groups_applied", changed=changed, removed=removed)

    async def _add_from_file(self, filename: str) -> None:
        added = await self.client.add_group_from_file(str(self.include_dir / filename))
        log.info("supervisor_group_added", group=",".join(added))

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
        if all(self._owned_files().get(f) == t for f, t in files.items()):
            # in place: only supervisord may lack the group
            async with self._lock:
                if self.single_file_adds:
                    try:
                        for filename in files:
                            await self._add_from_file(filename)
                    except SupervisorFault as fault:
                        if fault.code == Fault.ALREADY_ADDED:
                            return name
                        if fault.code != Fault.UNKNOWN_METHOD:
                            raise
                        self.single_file_adds = False
                    else:
                        return name
                await self._reload_and_apply({name}, readd=True)
            return name
        try:
            await self.change(files)
        except NotApplied as exc:
            raise exc.cause from None
        return name

    async def drop_instance(self, program: Program, port: int | None) -> None:
        """Unregister one on-demand instance (its file and its group)."""
        if port is None:
            return
        filename = conf.conf_filename(program, port)
        if filename in self._owned_files():
            try:
                await self.change({filename: None})
            except NotApplied as exc:
                raise exc.cause from None

    async def register_ephemeral(self, item: Ephemeral, commit: Commit | None = None) -> None:
        text = conf.render(
            item.program,
            port=None,
            autostart=False,
            log_dir=self.log_dir,
            name=item.temporary_id,
            log_folder=item.temporary_id,
        )
        await self.change({conf.ephemeral_filename(item.temporary_id): text}, commit)

    async def unregister_ephemeral(
        self, temporary_id: str, commit: Commit | None = None
    ) -> None:
        filename = conf.ephemeral_filename(temporary_id)
        if filename not in self._owned_files():
            with contextlib.suppress(SupervisorFault):  # a group without its file
                await self._stop_and_remove(temporary_id)
        await self.change({filename: None}, commit)

    async def reconcile(
        self, programs: Mapping[int, Program], *, listener: str | None
    ) -> dict[str, ProcessInfo]:
        """Make supervisord match `programs` (and the event listener's section, None for no
        listener); log every change. Running programs whose definition did not change are
        left alone (same pids). With the plugin, only the files that changed and the groups
        supervisord lacks are acted upon, without `reloadConfig`; groups of an embedded
        supervisord that no file accounts for (a change interrupted after its commit) are
        removed. Returns what supervisord said of the processes of the groups it left as
        they were."""
        changes: list[str] = []
        files: Files = {LISTENER_FILE: listener}
        groups = {LISTENER_GROUP}
        on_disk = dict(self._owned_files())
        targets = self.exit_targets()
        defaults: dict[str, str] = {}
        for program in programs.values():
            if program.enabled:
                defaults.update(self._default_files(program, targets))
        for filename, text in on_disk.items():
            if filename == LISTENER_FILE or filename.startswith(conf.EPHEMERAL_PREFIX):
                continue
            wanted = (
                defaults[filename]
                if filename in defaults
                else self._wanted(text, programs, targets)
            )
            if wanted != text:
                files[filename] = wanted
                groups.add(conf.section_name(text))
                changes.append(f"{'rewrote' if wanted else 'removed stale'} {filename}")
        for filename, text in defaults.items():
            groups.add(conf.section_name(text))
            if filename not in on_disk:
                files[filename] = text
                changes.append(f"wrote {filename}")
        infos = await self.client.processes()
        for wanted in files.values():
            if wanted is not None:
                _make_log_dirs(wanted)
                conf.check(wanted)
        async with self._lock:
            if files.get(LISTENER_FILE) == on_disk.get(LISTENER_FILE):
                files.pop(LISTENER_FILE)
            staging = Staging(self.include_dir, files)
            try:
                await asyncio.to_thread(_stage_and_publish, staging)
            except OSError:
                await asyncio.to_thread(staging.undo)
                raise
            await asyncio.to_thread(staging.finish)
            for name, wanted in files.items():
                self._remember(name, wanted)
            if self.single_file_adds:
                try:
                    changes += await self._follow_all(files, on_disk, infos)
                except SupervisorFault as fault:
                    if fault.code != Fault.UNKNOWN_METHOD:  # else: an older supervisord
                        raise
                    self.single_file_adds = False
            if not self.single_file_adds:
                added, changed, removed = await self._reload_and_apply(groups)
                present = {conf.section_name(text) for text in self._owned_files().values()}
                for group in sorted(present - set(infos) - set(added)):
                    if await self._readd(group):
                        changes.append(f"re-added group {group}")
                changes += [f"supervisord added {g}" for g in added]
                changes += [f"supervisord changed {g}" for g in changed]
                changes += [f"supervisord removed {g}" for g in removed]
        log.info("reconciled", changes=changes)
        touched = {
            conf.section_name(text)
            for name, after in files.items()
            for text in (after, on_disk.get(name))
            if text is not None
        }
        return {name: info for name, info in infos.items() if info.group not in touched}

    async def _follow_all(
        self, files: Files, on_disk: Mapping[str, str], infos: Mapping[str, ProcessInfo]
    ) -> list[str]:
        """supervisord (with the plugin) follows every file: changed files' groups
        re-added, groups it lacks added from their files, groups no file accounts for
        removed. What was done, for the log."""
        changes: list[str] = []
        running_groups = {info.group for info in infos.values()}
        before = {name: on_disk.get(name) for name in files}
        for name, text in files.items():
            if before[name] is not None and before[name] != text:
                group = conf.section_name(before[name] or "")
                if group in running_groups:
                    await self._stop_and_remove(group)
                    changes.append(f"supervisord removed {group}")
        by_group = {conf.section_name(text): name for name, text in self._owned_files().items()}
        for group, filename in sorted(by_group.items()):
            if group in running_groups and filename not in files:
                continue
            try:
                await self._add_from_file(filename)
            except SupervisorFault as fault:
                if fault.code != Fault.ALREADY_ADDED:
                    raise
                continue
            changes.append(f"supervisord added {group}")
        for group in sorted(running_groups - set(by_group)):
            await self._stop_and_remove(group)
            changes.append(f"supervisord removed unaccounted {group}")
        return changes

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

    async def _reload_and_apply(
        self, groups: set[str], *, readd: bool = False
    ) -> tuple[list[str], list[str], list[str]]:
        """One `reloadConfig` (every included file re-read), and the named groups brought in
        line: removed groups are stopped and removed, changed ones re-added, new ones added
        (with `readd`, every named group is added, in case supervisord lacks it)."""
        added, changed, removed = await self.client.reload_config()
        added = [g for g in added if g in groups]
        changed = [g for g in changed if g in groups]
        removed = [g for g in removed if g in groups]
        for name in removed + changed:
            await self._stop_and_remove(name)
        to_add = sorted(groups - set(removed)) if readd else added + changed
        for name in to_add:
            try:
                await self.client.add_group(name)
            except SupervisorFault as fault:
                if fault.code != Fault.ALREADY_ADDED:  # another reload added it first
                    raise
        if added or changed or removed:
            log.info("supervisor_groups_applied", added=added, changed=changed, removed=removed)
        return added, changed, removed

    async def _stop_and_remove(self, name: str) -> None:
        """Stop the group and remove it. A process that had just exited is not running when
        the stop comes, and supervisord's autorestart may start it again before the removal
        (STILL_RUNNING): then stop and remove once more, a bounded number of times."""
        for attempt in range(1, REMOVE_ATTEMPTS + 1):
            try:
                await self.client.stop(name, wait=True)
            except SupervisorFault as fault:
                if fault.code not in (Fault.NOT_RUNNING, Fault.BAD_NAME):
                    raise
            try:
                await self.client.remove_group(name)
                return
            except SupervisorFault as fault:
                if fault.code == Fault.BAD_NAME:
                    return
                if fault.code != Fault.STILL_RUNNING or attempt == REMOVE_ATTEMPTS:
                    raise
                log.info("supervisor_group_restarted_before_removal", group=name, attempt=attempt)


def _stage_and_publish(staging: Staging) -> None:
    staging.stage()
    staging.publish()


def _make_log_dirs(text: str) -> list[Path]:
    """supervisord refuses a log file whose directory does not exist: create them first,
    closed to others; the directories created."""
    created: list[Path] = []
    for path in conf.log_paths(text):
        created += make_private_dirs(path.parent)
    return created
