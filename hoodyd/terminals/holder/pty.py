"""The PTY adapter: one child process on the slave side of a pseudo-terminal, driven from the
event loop through the master fd (non-blocking reads and writes, no threads).

The child is the leader of a new session with the PTY as its controlling terminal, so job
control, Ctrl-C and SIGWINCH work as in any terminal emulator. Its exit is noticed through a
pidfd (the kernel says when the process ends; EOF on the master is not enough, because a
background job may keep the slave open).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import os
import pwd
import signal
import struct
import subprocess
import termios
from collections.abc import Callable

# No structlog here: the terminal holder (holder.py) imports this module and starts fast.

READ_SIZE = 65536


# A login shell's usual umask: hoodyd itself runs with 077 to keep its state private, but
# files the user creates in a terminal are the user's business.
SHELL_UMASK = 0o022


def _take_controlling_terminal(umask: int | None) -> None:
    # Runs in the child between fork and exec, after setsid (start_new_session=True): make the
    # PTY on stdin the controlling terminal. subprocess has no option for this.
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    if umask is not None:
        os.umask(umask)


def set_window_size(fd: int, cols: int, rows: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class PtyProcess:
    def __init__(
        self,
        argv: list[str],
        env: dict[str, str],
        cwd: str,
        cols: int,
        rows: int,
        on_output: Callable[[bytes], None],
        on_exit: Callable[[int | None], None],
        *,
        umask: int | None = SHELL_UMASK,
        user: pwd.struct_passwd | None = None,
        pass_fds: tuple[int, ...] = (),
    ) -> None:
        """`umask`: the shell's; None keeps the caller's (a terminal holder was given the
        shell's umask by whoever started it). `user`: the account the child runs as (the
        caller is root); the PTY becomes that user's, as a login would make it."""
        self._argv = argv
        self._umask = umask
        self._user = user
        self._pass_fds = pass_fds
        self._env = env
        self._cwd = cwd
        self._cols = cols
        self._rows = rows
        self._on_output = on_output
        self._on_exit = on_exit
        self._loop = asyncio.get_running_loop()
        self._master = -1
        self._pidfd = -1
        self._process: subprocess.Popen[bytes] | None = None
        self._pending = bytearray()
        self._exiting = False
        self._exited: asyncio.Future[int | None] = self._loop.create_future()

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    @property
    def running(self) -> bool:
        return not self._exited.done()

    def start(self) -> None:
        master, slave = os.openpty()
        switch: dict[str, object] = {}
        if self._user is not None:
            account = self._user
            switch = {
                "user": account.pw_uid,
                "group": account.pw_gid,
                "extra_groups": os.getgrouplist(account.pw_name, account.pw_gid),
            }
        try:
            set_window_size(slave, self._cols, self._rows)
            if self._user is not None:
                os.fchown(slave, self._user.pw_uid, -1)
                os.fchmod(slave, 0o620)
            self._process = subprocess.Popen(  # type: ignore[call-overload]
                self._argv,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                cwd=self._cwd,
                env=self._env,
                start_new_session=True,
                preexec_fn=functools.partial(_take_controlling_terminal, self._umask),
                close_fds=True,
                pass_fds=self._pass_fds,
                **switch,
            )
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        self._master = master
        os.set_blocking(master, False)
        self._loop.add_reader(master, self._read_available)
        try:
            self._pidfd = os.pidfd_open(self._process.pid)
        except OSError:
            self._pidfd = -1  # no pidfd: EOF on the master (EIO) stands in for the exit
        else:
            self._loop.add_reader(self._pidfd, self._child_exited)

    def write(self, data: bytes) -> None:
        if not self.running or self._master < 0:
            return
        if self._pending:
            self._pending += data
            return
        try:
            written = os.write(self._master, data)
        except BlockingIOError:
            written = 0
        except OSError:
            return  # the shell is going away; _child_exited reports it
        if written < len(data):
            self._pending += data[written:]
            self._loop.add_writer(self._master, self._flush)

    def _flush(self) -> None:
        try:
            written = os.write(self._master, self._pending)
        except BlockingIOError:
            return
        except OSError:
            written = len(self._pending)
        del self._pending[:written]
        if not self._pending:
            self._loop.remove_writer(self._master)

    def interrupt(self) -> None:
        """SIGINT to the terminal's foreground process group, as Ctrl-C would send it.

        A signal rather than a typed Ctrl-C: a line editor that is just starting may flush
        pending input (zsh does), and the keystroke would be lost. (Lines are parsed before
        they are typed, so this is only the fallback for a line that still asks for more.)
        """
        self.signal_foreground(signal.SIGINT)

    def foreground_group(self) -> int | None:
        """The terminal's foreground process group (the shell's own at its prompt)."""
        if self.running and self._master >= 0:
            with contextlib.suppress(OSError):
                return os.tcgetpgrp(self._master)
        return None

    def signal_foreground(self, sig: int) -> None:
        """`sig` to the terminal's foreground process group."""
        group = self.foreground_group()
        if group is not None:
            with contextlib.suppress(OSError):
                os.killpg(group, sig)

    def signal_session(self, sig: int) -> None:
        """`sig` to every process group of the shell's session."""
        if self.running:
            self._signal(self._process_groups(), sig)

    def resize(self, cols: int, rows: int) -> None:
        self._cols, self._rows = cols, rows
        if self.running and self._master >= 0:
            # The kernel sends SIGWINCH to the foreground process group itself.
            set_window_size(self._master, cols, rows)

    def _read_available(self) -> None:
        while True:
            try:
                data = os.read(self._master, READ_SIZE)
            except BlockingIOError:
                return
            except OSError:  # EIO: every slave fd is closed
                data = b""
            if not data:
                self._loop.remove_reader(self._master)
                if self._pidfd < 0 and not self._exiting:
                    self._child_exited()
                return
            self._on_output(data)

    def _child_exited(self) -> None:
        if self._exiting:
            return
        self._exiting = True
        assert self._process is not None
        if self._pidfd >= 0:
            self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = -1
        if self._master >= 0:
            with contextlib.suppress(OSError):
                self._read_available()  # output written just before the exit
        code = self._process.poll()
        if code is None:
            code = self._process.wait()  # EIO path without pidfd: the exit is imminent
        self._close_master()
        self._exited.set_result(code)
        self._on_exit(code)

    def _close_master(self) -> None:
        if self._master < 0:
            return
        self._loop.remove_reader(self._master)
        if self._pending:
            self._loop.remove_writer(self._master)
            self._pending.clear()
        os.close(self._master)
        self._master = -1

    async def terminate(self, grace: float = 2.0) -> int | None:
        """Hang up the terminal like a closed window: SIGHUP, close the master side; SIGKILL
        whatever is left after `grace`."""
        if self.running:
            groups = self._process_groups()
            self._signal(groups, signal.SIGHUP)
            # Closing the master is the hang-up itself. bash defers a SIGHUP that lands while
            # readline draws the prompt until the next key; with the master gone its read
            # fails at once and it exits.
            self._close_master()
            if self._pidfd < 0:
                self._loop.run_in_executor(None, self._wait_then_report)
            try:
                await asyncio.wait_for(asyncio.shield(self._exited), grace)
            except TimeoutError:
                self._signal(groups, signal.SIGKILL)
        return await self._exited

    def _wait_then_report(self) -> None:
        assert self._process is not None
        self._process.wait()
        self._loop.call_soon_threadsafe(self._child_exited)

    def _process_groups(self) -> set[int]:
        """Every process group of the shell's session: the shell, its foreground job and its
        background jobs. The shell does not always pass the hang-up on to its background
        jobs (bash does not when it exits on EOF), so hoodyd signals them all itself."""
        groups = {self.pid}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            with contextlib.suppress(OSError):
                if os.getsid(int(entry)) == self.pid:
                    groups.add(os.getpgid(int(entry)))
        return groups

    @staticmethod
    def _signal(groups: set[int], sig: int) -> None:
        for group in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, sig)
