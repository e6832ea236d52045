"""From a session's options to what its holder starts with: the shell and its start-up script,
the account, the working directory (made with the account's rights when asked), the
environment (TERM, HOODYD_TERMINAL_ID, HISTFILE, DISPLAY, the options' own), and the argv the
shell integration builds.

`check_options` refuses, before anything is started, what `plan_launch` would refuse; the
plan itself changes nothing but the working directory it was asked to create.
"""

from __future__ import annotations

import asyncio
import contextlib
import pwd
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hoodyd.accounts import make_dirs_as
from hoodyd.childenv import child_environment
from hoodyd.config import TerminalsConfig
from hoodyd.errors import InvalidRequest, Reason
from hoodyd.polling import poll_until
from hoodyd.schemas.terminal import SessionOptions
from hoodyd.terminals.session import Launch
from hoodyd.terminals.shells import (
    Shell,
    ShellIntegration,
    check_runs_as_another_user,
    resolve_shell,
)
from hoodyd.terminals.spawn import HolderLauncher
from hoodyd.terminals.validation import check_no_nul


@dataclass(frozen=True, slots=True)
class LaunchSite:
    """What every launch of this hoodyd shares: its configuration, its private terminals
    directory, the shell integration's files and the launcher that forks holders."""

    config: TerminalsConfig
    directory: Path  # STATE/terminals
    integration: ShellIntegration
    launcher: HolderLauncher
    pass_env: Sequence[str] = ()

    @property
    def holders_dir(self) -> Path:
        return self.directory / "holders"


@dataclass(frozen=True, slots=True)
class LaunchPlan:
    """A session's shell, its working directory, and how its holder starts."""

    shell: Shell
    cwd: str
    launch: Launch


def check_options(site: LaunchSite, options: SessionOptions, *, cwd_auto_create: bool) -> None:
    """Refuse options a session could not start with: an unknown shell, another account
    without the integration it needs, a cwd that is not a directory, a missing script."""
    shell = resolve_shell(options.shell, site.config.default_shell)
    if options.user is not None:
        check_runs_as_another_user(shell)
    session_cwd(options.cwd, cwd_auto_create)
    startup_script(options.startup_script)


def session_cwd(cwd: str | None, auto_create: bool, *, home: str | None = None) -> str:
    """The session's working directory: `home` (or hoodyd's) when none is given; an absolute
    directory, or one still to be made with `auto_create`."""
    if cwd is None or cwd == "":
        return home or str(Path.home())
    check_no_nul("cwd", cwd)
    path = Path(cwd).expanduser()
    if not path.is_absolute():
        raise InvalidRequest(
            f"cwd must be an absolute path, got {cwd!r}", reason=Reason.INVALID_CWD
        )
    if path.is_dir():
        return str(path)
    if auto_create and not path.exists():
        return str(path)
    raise InvalidRequest(f"cwd {cwd!r} is not a directory", reason=Reason.INVALID_CWD)


def startup_script(script: str | None) -> str | None:
    if script is not None:
        check_no_nul("startup_script", script)
        if not Path(script).is_file():
            raise InvalidRequest(
                f"startup_script {script!r} is not a file", reason=Reason.INVALID_STARTUP_SCRIPT
            )
    return script


async def _made_cwd(
    cwd: str | None, auto_create: bool, *, home: str | None, account: pwd.struct_passwd | None
) -> str:
    """The session's cwd, created when asked with the rights of the session's account
    (never root's on a user's behalf: their symlinks cannot lead it anywhere they could
    not go)."""
    path = session_cwd(cwd, auto_create, home=home)
    if auto_create and not Path(path).is_dir():
        await make_dirs_as(Path(path), account)
    return path


async def plan_launch(
    site: LaunchSite, terminal_id: int, options: SessionOptions, *, cwd_auto_create: bool
) -> LaunchPlan:
    """How session `terminal_id` starts with `options`. The caller closes the descriptors in
    `launch.keep_fds` once the holder has started (or failed to)."""
    shell = resolve_shell(options.shell, site.config.default_shell)
    script = startup_script(options.startup_script)
    account = pwd.getpwnam(options.user) if options.user is not None else None
    home = account.pw_dir if account is not None else None
    if account is not None and options.cwd in (None, "") and not Path(account.pw_dir).is_dir():
        home = "/"
    cwd = await _made_cwd(options.cwd, cwd_auto_create, home=home, account=account)
    env = child_environment(account=account, pass_env=site.pass_env)
    env["TERM"] = site.config.term
    env["HOODYD_TERMINAL_ID"] = str(terminal_id)
    env["HISTFILE"] = str(site.directory / "history" / f"{shell.kind}_history.{terminal_id}")
    if options.display is not None:
        env["DISPLAY"] = options.display
    elif options.ephemeral:
        env.pop("DISPLAY", None)
    env.update(options.env)
    keep_fds: tuple[int, ...] = ()
    if account is None:
        argv = site.integration.launch(shell, script, env)
    else:
        del env["HISTFILE"]  # theirs, not in hoodyd's private directory
        argv, rc_fd = site.integration.launch_as(shell, script, env)
        keep_fds = (rc_fd,)
    launch = Launch(
        site.holders_dir / f"{terminal_id}.sock",
        argv,
        env,
        log_path=site.holders_dir / f"{terminal_id}.log",
        user=options.user,
        keep_fds=keep_fds,
        launcher=site.launcher,
    )
    return LaunchPlan(shell, cwd, launch)


async def wait_for_display(display: str, timeout: float) -> bool:
    """An X display served by this box's display stack answers on TCP 4000 + its number."""
    port = 4000 + int(display.lstrip(":").split(".")[0])

    async def answers() -> bool | None:
        try:
            # asyncio.timeout, not wait_for: in Python 3.11 wait_for can drop a connection
            # that completes just as it times out, leaving its transport open
            async with asyncio.timeout(1):
                _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except (OSError, TimeoutError):
            return None
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    return await poll_until(answers, timeout=timeout) is not None
