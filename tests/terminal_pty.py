"""A real program on its own PTY, its output fed to a `VirtualScreen` as hoodyd would."""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import signal
import struct
import subprocess
import termios
import time
from collections.abc import Callable, Sequence

from hoodyd.terminals.screen import VirtualScreen

WAIT = 10.0


def _controlling_tty() -> None:
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class PtyProgram:
    def __init__(
        self,
        argv: Sequence[str],
        *,
        cols: int = 80,
        rows: int = 24,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
    ) -> None:
        self.screen = VirtualScreen(cols, rows, scrollback_lines=1000)
        self.output = bytearray()
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        environ = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "TERM": "xterm-256color",
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "HOME": cwd or "/tmp",
        }
        environ.update(env or {})
        self.process = subprocess.Popen(
            list(argv),
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=environ,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=_controlling_tty,
        )
        os.close(slave)
        self.master = master

    def pump(self, seconds: float) -> None:
        """Read whatever the program writes during `seconds`."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if not self._read_once(left):
                return

    def _read_once(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return True
        try:
            data = os.read(self.master, 65536)
        except OSError:  # EIO: the program exited and closed its side
            return False
        if not data:
            return False
        self.output += data
        self.screen.feed(data)
        return True

    def wait_for(
        self, check: Callable[[VirtualScreen], bool], what: str, timeout: float = WAIT
    ) -> None:
        """Read output until `check(screen)` holds; fail with the screen shown otherwise."""
        deadline = time.monotonic() + timeout
        while not check(self.screen):
            left = deadline - time.monotonic()
            if left <= 0 or not self._read_once(min(left, 0.1)):
                if check(self.screen):
                    return
                shown = "\n".join(self.screen.snapshot().lines)
                raise AssertionError(f"timed out waiting for {what}; screen:\n{shown}")

    def wait_for_text(self, text: str, timeout: float = WAIT) -> None:
        self.wait_for(
            lambda screen: any(text in line for line in screen.snapshot().lines),
            repr(text),
            timeout,
        )

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def close(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=WAIT)
        os.close(self.master)
