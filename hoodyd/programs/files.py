"""Private files of program control: atomic writes of mode-0600 files and 0700 directories.

Conf files, supervisord's own config and the store all hold what users gave (environments,
webhook headers), so nothing here is ever readable by others, not even for a moment.

Every write of state goes through `ops` (write, fsync, rename): the one place where the
disk can refuse (ENOSPC, EIO), and the one seam a fault-injection test replaces.
`Staging` moves a set of files in together and back out again without writing anything, so
that a change whose store transaction fails leaves the files exactly as they were.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import structlog

log = structlog.get_logger()

TEMP_SUFFIX = ".new"  # a staged file, not yet in place
BACKUP_SUFFIX = ".old"  # a file moved aside while a change commits


class FileOps:
    """The OS calls that put state on disk."""

    def write(self, fd: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]

    def fsync(self, fd: int) -> None:
        os.fsync(fd)

    def replace(self, source: Path, target: Path) -> None:
        os.replace(source, target)


ops = FileOps()


def _write_new(path: Path, text: str, mode: int, *, durable: bool) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    try:
        os.fchmod(fd, mode)  # a temp file left over by an earlier run keeps its old mode
        ops.write(fd, text.encode())
        if durable:
            ops.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(directory: Path) -> None:
    """Force a directory's entries (renames, new files) to disk."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        ops.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, text: str, mode: int = 0o600, *, durable: bool = True) -> None:
    """Write via a temp file and rename, so readers never see half a file. The file is
    created with `mode`, so it is never readable by others, not even for a moment. Without
    `durable` the data is not forced to disk first (for a file rebuilt from the store if a
    crash loses it). A write that fails leaves the old file and no temp file."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        _write_new(tmp, text, mode, durable=durable)
        ops.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


class Staging:
    """A set of files of one directory (name → text, or None to delete) changed together.

    `stage` writes each new text to a hidden temp name and forces it to disk; `publish`
    moves the current files aside and the staged ones into place; `undo` puts everything
    back by renames alone (no data is written, so it works on a full disk); `finish` drops
    what was moved aside. Hidden names (`.name.new`, `.name.old`) never match a `*.conf`
    include; start-up removes any a crash left (`sweep_leftovers`)."""

    def __init__(self, directory: Path, files: dict[str, str | None]) -> None:
        self.directory = directory
        self.files = files
        self._staged: dict[str, Path] = {}
        self._aside: dict[str, Path] = {}
        self._placed: list[str] = []

    def _temp(self, name: str, suffix: str) -> Path:
        return self.directory / f".{name}{suffix}"

    def stage(self) -> None:
        try:
            for name, text in self.files.items():
                if text is not None:
                    temp = self._temp(name, TEMP_SUFFIX)
                    self._staged[name] = temp
                    _write_new(temp, text, 0o600, durable=True)
        except OSError:
            self.undo()
            raise

    def publish(self) -> None:
        try:
            for name in self.files:
                path = self.directory / name
                if path.exists():
                    aside = self._temp(name, BACKUP_SUFFIX)
                    ops.replace(path, aside)
                    self._aside[name] = aside
                if name in self._staged:
                    ops.replace(self._staged[name], path)
                    del self._staged[name]
                    self._placed.append(name)
            if self.files:
                fsync_dir(self.directory)
        except OSError:
            self.undo()
            raise

    def undo(self) -> None:
        """Everything as before `stage`: placed files removed, moved-aside ones back."""
        for name in reversed(self._placed):
            with contextlib.suppress(FileNotFoundError):
                (self.directory / name).unlink()
        self._placed.clear()
        for name, aside in list(self._aside.items()):
            try:
                os.replace(aside, self.directory / name)
            except OSError as exc:  # start-up rebuilds the file from the store
                log.error("conf_file_not_restored", file=name, error=str(exc))
            self._aside.pop(name)
        for temp in self._staged.values():
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
        self._staged.clear()

    def finish(self) -> None:
        for aside in self._aside.values():
            with contextlib.suppress(FileNotFoundError):
                aside.unlink()
        self._aside.clear()


def sweep_leftovers(directory: Path, prefix: str) -> list[str]:
    """Remove the temp and moved-aside files (of names starting with `prefix`) that an
    interrupted change left; their names."""
    removed = []
    for path in sorted(directory.glob(f".{prefix}*")):
        name = path.name
        if name.endswith((TEMP_SUFFIX, BACKUP_SUFFIX)) or ".tmp" in name:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            removed.append(name)
    return removed


def make_private_dirs(path: Path) -> list[Path]:
    """Create `path` and its missing parents with mode 0700 (`Path.mkdir(parents=True)` gives
    the parents the default mode). Directories that exist are left as they are; the ones
    created, outermost first."""
    missing = []
    for directory in (path, *path.parents):
        if directory.is_dir():
            break
        missing.append(directory)
    created = []
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            directory.mkdir(mode=0o700)
            created.append(directory)
    return created


def remove_empty_dirs(directories: list[Path]) -> None:
    """Remove directories `make_private_dirs` created, innermost first, where still empty."""
    for directory in reversed(directories):
        with contextlib.suppress(OSError):
            directory.rmdir()
