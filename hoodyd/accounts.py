"""Directories made for another account are made with that account's rights.

hoodyd may run as root while a terminal runs as an ordinary user. A path such a user names
(a terminal's `cwd` to create) is created by a short child process that has dropped to the
user (supplementary groups, gid, then uid) before it touches the file system: a symlink the
user controls can lead it only where the user could go anyway, and what it creates is the
user's. The path travels as an argument, never as program text.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
from pathlib import Path

import structlog

from hoodyd.errors import InvalidRequest, Reason

log = structlog.get_logger()

MKDIR_TIMEOUT = 10.0
_TOOL_PATH = "/usr/bin:/bin"


async def make_dirs_as(path: Path, account: pwd.struct_passwd | None) -> None:
    """Create `path` and its missing parents as `account` (hoodyd's own when None or when it
    is the account hoodyd runs as). Raises `InvalidRequest` (CWD_NOT_CREATED) with the
    system's reason when the account may not create it; nothing is left behind then."""
    if account is None or account.pw_uid == os.geteuid():
        try:
            await asyncio.to_thread(path.mkdir, parents=True, exist_ok=True)
        except OSError as error:
            raise _not_created(path, None, error.strerror or str(error)) from error
        return
    missing: list[Path] = []
    for directory in (path, *path.parents):
        if directory.is_dir():
            break
        missing.append(directory)
    made: list[Path] = []
    for directory in reversed(missing):
        # One component per `mkdir` (no -p): each is made, through whatever symlinks lie on
        # the way, with exactly the account's rights, and `made` is what to undo.
        code, why = await _run_as(account, "mkdir", "--", str(directory))
        if code != 0:
            if made:
                await _run_as(account, "rmdir", "--", *(str(d) for d in reversed(made)))
            log.info("cwd_not_created", path=str(path), user=account.pw_name, why=why)
            raise _not_created(path, account.pw_name, _reason_of(why))
        made.append(directory)
    log.info("cwd_created", path=str(path), user=account.pw_name)


async def _run_as(account: pwd.struct_passwd, tool: str, *args: str) -> tuple[int, str]:
    """Run a coreutils `tool` with `args` as argv, as `account` (its groups, gid, uid)."""
    executable = shutil.which(tool, path=_TOOL_PATH)
    if executable is None:
        return 127, f"{tool} not found"
    process = await asyncio.create_subprocess_exec(
        executable,
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        cwd="/",
        env={"PATH": _TOOL_PATH, "LC_ALL": "C"},
        user=account.pw_uid,
        group=account.pw_gid,
        extra_groups=os.getgrouplist(account.pw_name, account.pw_gid),
    )
    try:
        _, stderr = await asyncio.wait_for(process.communicate(), MKDIR_TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        return -1, "timed out"
    assert process.returncode is not None
    return process.returncode, stderr.decode(errors="replace").strip()


def _reason_of(message: str) -> str:
    """The system's reason from a coreutils message (`mkdir: cannot create …: Permission
    denied`), else the message itself."""
    tail = message.rsplit(": ", 1)[-1]
    return (tail or message)[:200] or "failed"


def _not_created(path: Path, user: str | None, why: str) -> InvalidRequest:
    who = "" if user is None else f" as user {user!r}"
    return InvalidRequest(
        f"cwd {str(path)!r} could not be created{who}: {why}", reason=Reason.CWD_NOT_CREATED
    )
