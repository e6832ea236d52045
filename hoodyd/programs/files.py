"""Private files of program control: atomic writes of mode-0600 files and 0700 directories.

Conf files, supervisord's own config and the store all hold what users gave (environments,
webhook headers), so nothing here is ever readable by others, not even for a moment.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def write_atomic(path: Path, text: str, mode: int = 0o600, *, durable: bool = True) -> None:
    """Write via a temp file and rename, so readers never see half a file. The file is
    created with `mode`, so it is never readable by others, not even for a moment. Without
    `durable` the data is not forced to disk first (for a file rebuilt from the store if a
    crash loses it)."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    with open(fd, "w") as handle:
        os.fchmod(fd, mode)  # a temp file left over by an earlier run keeps its old mode
        handle.write(text)
        handle.flush()
        if durable:
            os.fsync(handle.fileno())
    os.replace(tmp, path)


def make_private_dirs(path: Path) -> None:
    """Create `path` and its missing parents with mode 0700 (`Path.mkdir(parents=True)` gives
    the parents the default mode). Directories that exist are left as they are."""
    missing = []
    for directory in (path, *path.parents):
        if directory.is_dir():
            break
        missing.append(directory)
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            directory.mkdir(mode=0o700)
