"""A real small file system to fill: a tmpfs mounted for one test, and a filler that leaves it
a given number of bytes."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import stop_embedded_supervisord


@contextlib.contextmanager
def mounted_tmpfs(parent: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` (mount's syntax, e.g. "2m") at `parent/fs`; the test is skipped, with
    mount's reason, where mounting needs a privilege this run lacks. At exit the supervisord
    started below it is stopped and the file system unmounted."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = parent / "fs"
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(mount)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip() or 'mount failed'})")
    try:
        yield mount
    finally:
        stop_embedded_supervisord(mount)
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill_leaving(directory: Path, spare: int = 0) -> Path:
    """Fill the file system until about `spare` bytes are left (0: until a write of even 512
    bytes fails with ENOSPC); the filler file. Unbuffered: a failed write leaves nothing
    behind to fail again on close."""
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as handle:
        for block in (65536, 512):
            while True:
                stats = os.statvfs(directory)
                room = stats.f_bavail * stats.f_frsize - spare
                if room <= 0 and spare:
                    break
                try:
                    handle.write(b"\0" * (min(block, room) if spare else block))
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    break
    return filler
