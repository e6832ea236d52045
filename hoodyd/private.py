"""Private places on disk: the state and socket directories, and the one-daemon locks.

hoodyd often runs as root and keeps secrets under its state dir (the token, program
environments, webhook headers), so every directory it serves from must be its own and closed
to others, and only one daemon may use a state dir or a socket path at a time. Every check
here runs before hoodyd touches anything else, and refuses with a message that says what to
fix rather than repairing what another user owns.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import stat
from dataclasses import dataclass
from pathlib import Path

from hoodyd.polling import poll_until


class UnsafePath(Exception):
    """A directory hoodyd would serve from is not safely its own."""


class AlreadyRunning(Exception):
    """Another hoodyd holds the lock on this state dir or socket path."""


def private_dir(path: Path, mode: int = 0o700) -> Path:
    """Create `path` (and missing parents) owned by this user with `mode`, or check that the
    existing one is: owned by this user, a real directory, closed to others. A directory of
    ours that is too open (an older install's 0755) is narrowed; anyone else's is refused."""
    uid = os.geteuid()
    check_ancestors(path.parent)
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=mode, parents=True)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafePath(f"{path} is not a directory (a symlink or a file is in its place)")
    if info.st_uid != uid:
        raise UnsafePath(
            f"{path} belongs to uid {info.st_uid}, not to uid {uid} that runs hoodyd; "
            "remove it or choose another path"
        )
    if stat.S_IMODE(info.st_mode) != mode:
        os.chmod(path, mode)
    return path


def check_ancestors(path: Path) -> None:
    """Every directory above a private one must be owned by root or by us, and writable by
    others only when sticky (as /tmp is): otherwise another user could swap our directory."""
    uid = os.geteuid()
    for directory in (path, *path.parents):
        try:
            info = os.stat(directory)
        except FileNotFoundError:
            continue  # created below by us, with our modes
        mode = stat.S_IMODE(info.st_mode)
        open_to_others = mode & 0o022
        if info.st_uid not in (0, uid):
            raise UnsafePath(
                f"{directory} belongs to uid {info.st_uid}: another user could replace "
                "hoodyd's files under it; choose a path of your own"
            )
        if open_to_others and not (mode & stat.S_ISVTX):
            raise UnsafePath(
                f"{directory} is writable by other users (mode {mode:04o}); "
                "choose a path only you can write"
            )


@dataclass
class DaemonLock:
    """An exclusive `flock` held for the daemon's lifetime; the file says who holds it."""

    path: Path
    fd: int

    def release(self) -> None:
        os.close(self.fd)


def acquire_lock(path: Path, *, socket: str) -> DaemonLock:
    """Take the lock at `path` or raise `AlreadyRunning` naming the holder's pid and socket."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").split("\n")
        os.close(fd)
        pid = holder[0] if holder and holder[0].isdigit() else "?"
        where = holder[1] if len(holder) > 1 and holder[1] else socket
        raise AlreadyRunning(f"hoodyd is already running (pid {pid}) on {where}") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n{socket}\n".encode(), 0)
    return DaemonLock(path, fd)


def lock_holder(path: Path) -> int | None:
    """The pid of the daemon holding the lock at `path`; None when no daemon holds it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return None  # no daemon ever ran here
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            first = os.pread(fd, 64, 0).split(b"\n", 1)[0]
            return int(first) if first.isdigit() else None
        return None
    finally:
        os.close(fd)


def end_lock_holder(path: Path, *, timeout: float) -> int | None:
    """SIGTERM the daemon holding the lock at `path` and wait until the lock is free (its
    process has exited, a zombie too); SIGKILL it after `timeout` seconds. Its pid, or None
    when no daemon held the lock."""
    pid = lock_holder(path)
    if pid is None:
        return None

    async def released() -> bool | None:
        return True if lock_holder(path) is None else None

    for signum, wait_s in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass
        except PermissionError:
            raise AlreadyRunning(
                f"hoodyd (pid {pid}) on {path.parent} runs as another user: stop it as that "
                "user (or root)"
            ) from None
        if asyncio.run(poll_until(released, timeout=wait_s, interval=0.05)):
            break
    return pid
