"""Where supervisord lives and, when embedded, how it runs: embedded under the state dir
(configured and started by hoodyd, detached) or external (a given socket and include dir).

Embedded supervisord daemonizes itself (fork + setsid), so it outlives hoodyd and with it the
user's programs: restarting hoodyd never restarts a program.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import select
import sys
import time
from pathlib import Path

import psutil
import structlog

from hoodyd.childenv import child_environment, child_open_file_limit
from hoodyd.config import Config
from hoodyd.errors import Conflict, Reason, ServiceUnavailable
from hoodyd.polling import poll_until
from hoodyd.private import UnsafePath, private_dir
from hoodyd.programs.files import make_private_dirs, write_atomic
from hoodyd.programs.supervisor_client import SupervisorClient

log = structlog.get_logger()

EMBEDDED_CONF = """\
; written by hoodyd; edits are overwritten at start-up
[unix_http_server]
file={socket}
chmod=0700

[supervisord]
logfile={dir}/supervisord.log
logfile_maxbytes=5MB
logfile_backups=2
pidfile={dir}/supervisord.pid
childlogdir={log_dir}
identifier=hoodyd
loglevel=info
; what supervisord creates (its log, the programs' logs) is private; each program section
; sets the usual umask=022 back for the program itself
umask=077

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

; hoodyd.addGroupFromFile: one group added without re-reading every included file
[rpcinterface:hoodyd]
supervisor.rpcinterface_factory = hoodyd.programs.supervisor_plugin:make_rpcinterface
include_dir = {include_dir}

[supervisorctl]
serverurl=unix://{socket}

[include]
files = {include_dir}/*.conf
"""


def _ini(path: Path | str) -> str:
    # supervisord expands %(name)s in values: a literal % must be doubled
    return str(path).replace("%", "%%")


class SupervisordRuntime:
    """Knows supervisord's socket and include dir, and (embedded) how to bring it up."""

    def __init__(self, config: Config) -> None:
        self.embedded = config.supervisor.mode == "embedded"
        self.dir = config.state_path / "supervisor"
        if self.embedded:
            self.socket = self.dir / "supervisor.sock"
            self.include_dir = self.dir / "conf.d"
        else:
            self.socket = Path(config.supervisor.socket)
            self.include_dir = Path(config.supervisor.include_dir)
        self.conf_file = self.dir / "supervisord.conf"
        self.pid_file = self.dir / "supervisord.pid"
        self.log_dir = config.log_path
        self.pass_env = tuple(config.server.pass_env)
        self._start_lock = asyncio.Lock()
        # a pidfd of the supervisord last seen alive: asking it is one poll, not two reads
        self._watched: int | None = None

    def client(self, config: Config) -> SupervisorClient:
        return SupervisorClient(
            str(self.socket),
            username=config.supervisor.username,
            password=config.supervisor.password,
        )

    def prepare(self) -> None:
        """Create directories and (embedded) write supervisord's own config."""
        make_private_dirs(self.log_dir)
        if not self.embedded:
            make_private_dirs(self.include_dir)
            return
        try:
            private_dir(self.dir)
            private_dir(self.include_dir)
        except UnsafePath as exc:
            raise ServiceUnavailable(str(exc), reason=Reason.SUPERVISOR_UNAVAILABLE) from exc
        text = EMBEDDED_CONF.format(
            socket=_ini(self.socket),
            dir=_ini(self.dir),
            log_dir=_ini(self.log_dir),
            include_dir=_ini(self.include_dir),
        )
        write_atomic(self.conf_file, text)

    async def ensure_running(self, client: SupervisorClient, timeout: float = 15) -> bool:
        """Make sure supervisord answers. Returns True if it had to be started."""
        async with self._start_lock:
            if await client.ping():
                return False
            if not self.embedded:
                raise ServiceUnavailable(
                    f"external supervisord is not answering on {self.socket}",
                    reason=Reason.SUPERVISOR_UNAVAILABLE,
                )
            await self._spawn()

            async def answers() -> bool | None:
                return True if await client.ping() else None

            if await poll_until(answers, timeout=timeout, interval=0.05):
                log.info("supervisord_started", socket=str(self.socket))
                return True
            raise ServiceUnavailable(
                f"supervisord did not come up within {timeout:.0f}s; see {self.dir}/start.log",
                reason=Reason.SUPERVISOR_UNAVAILABLE,
            )

    async def _spawn(self) -> None:
        self.prepare()
        alive = self.running_pid()
        if alive is not None:
            # never start a second supervisord beside a hung one
            raise ServiceUnavailable(
                f"supervisord (pid {alive}) is running but does not answer on {self.socket}",
                reason=Reason.SUPERVISOR_UNAVAILABLE,
            )
        orphans = await asyncio.to_thread(self.kill_orphans)
        if orphans:
            log.warning("supervisor_orphans_killed", pids=orphans)
        if self.socket.exists():
            self.socket.unlink()  # stale: nothing answered on it
        start_log = self.dir / "start.log"
        fd = os.open(start_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        with open(fd, "ab") as out:
            # supervisord keeps hoodyd's open-file limit (it holds descriptors for every
            # program); what it starts gets the one hoodyd was started with (supervisord_main)
            soft = child_open_file_limit()
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "hoodyd.programs.supervisord_main",  # supervisord, reading includes in O(n)
                *(["--child-open-files", str(soft)] if soft is not None else []),
                "-c",
                str(self.conf_file),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
                cwd="/",
                umask=0o077,  # the files it makes before reading its umask= are private too
                # supervisord's environment is its programs' and its event listener's base
                env=child_environment(pass_env=self.pass_env, extra={"PYTHONUNBUFFERED": "1"}),
            )
            # the first process forks the daemon and exits at once; a cancelled caller must
            # not abandon it half-reaped
            code = await asyncio.shield(process.wait())
        if code != 0:
            tail = start_log.read_text(errors="replace")[-2000:]
            raise ServiceUnavailable(
                f"supervisord failed to start (exit {code}): {tail.strip()}",
                reason=Reason.SUPERVISOR_UNAVAILABLE,
            )

    def seems_alive(self) -> bool:
        """Whether the embedded supervisord's process still exists (always True when
        external), answered from a pidfd of the process its pid file named, so answers from
        memory notice a dead supervisord at once instead of at the next poll. A pidfd names
        one process (never a later one with the same pid) and reads as ready once it has
        exited, zombie or reaped."""
        if not self.embedded:
            return True
        if self._watched is not None:
            if not _has_exited(self._watched):
                return True
            os.close(self._watched)
            self._watched = None
        try:
            pidfd = os.pidfd_open(int(self.pid_file.read_text()))
        except (OSError, ValueError):
            return False
        if _has_exited(pidfd):
            os.close(pidfd)
            return False
        self._watched = pidfd
        return True

    def running_pid(self) -> int | None:
        """The pid of this state dir's supervisord if that process is alive."""
        try:
            process = psutil.Process(int(self.pid_file.read_text()))
            alive = process.status() != psutil.STATUS_ZOMBIE
            if alive and str(self.conf_file) in " ".join(process.cmdline()):
                return process.pid
        except (OSError, ValueError, psutil.Error):
            pass
        return None

    def kill_orphans(self) -> list[int]:
        """Kill programs left behind by an embedded supervisord that died without stopping
        them (SIGKILL, OOM): they would hold their ports against the new one's instances.
        supervisord marks its children's environment with its socket URL; only called once
        that supervisord is known to be dead, so every process carrying the mark is an orphan."""
        marker = f"unix://{self.socket}"
        killed = []
        for process in psutil.process_iter():
            try:
                if process.environ().get("SUPERVISOR_SERVER_URL") == marker:
                    process.kill()
                    killed.append(process)
            except psutil.Error:
                continue
        _wait_gone(killed, 5.0)  # their ports are free before the new one starts anything
        return [process.pid for process in killed]


def stop_embedded(state_dir: Path, *, grace: float = 10.0) -> bool:
    """Stop the embedded supervisord of `state_dir` and every process it runs.

    SIGTERM first (supervisord stops its programs), then, after `grace` seconds, SIGKILL for
    whatever of the tree is left. Returns False when no supervisord was running there.
    Refuses (`Conflict`) while a hoodyd serves that state dir: it would see supervisord gone
    and start it again at once.
    """
    refuse_while_serving(state_dir)
    pidfile = state_dir / "supervisor" / "supervisord.pid"
    try:
        supervisord = psutil.Process(int(pidfile.read_text()))
        if "supervisord" not in " ".join(supervisord.cmdline()):
            return False  # the pid was reused by something else
        family = [supervisord, *supervisord.children(recursive=True)]
    except (OSError, ValueError, psutil.Error):
        return False
    if grace > 0:
        with contextlib.suppress(psutil.Error):
            supervisord.terminate()
        _wait_gone(family[:1], grace)
    for proc in family:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    _wait_gone(family, 5.0)
    return True


def _has_exited(pidfd: int) -> bool:
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    return bool(poller.poll(0))


def refuse_while_serving(
    state_dir: Path, consequence: str = "would start supervisord again"
) -> None:
    """Raise `Conflict` if a hoodyd holds the state dir's one-daemon lock (`hoodyd.private`)."""
    try:
        fd = os.open(state_dir / "lock", os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return  # no daemon ever ran here
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").split("\n")
        pid = holder[0] if holder and holder[0].isdigit() else "?"
        raise Conflict(
            f"hoodyd (pid {pid}) is running on {state_dir} and {consequence}; "
            "stop hoodyd first (systemctl stop hoodyd, or Ctrl-C on hoodyd serve), then run "
            "this again",
            reason=Reason.CONFLICT,
        ) from None
    finally:
        os.close(fd)


def _wait_gone(processes: list[psutil.Process], timeout: float) -> None:
    """Wait until every process has exited; a zombie counts as gone (init reaps it later)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(p) for p in processes):
        time.sleep(0.01)


def _alive(process: psutil.Process) -> bool:
    try:
        return bool(process.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False
