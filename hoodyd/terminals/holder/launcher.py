"""The holder launcher: a process that starts terminal holders by forking itself.

A holder started as `python -I -m hoodyd.terminals.holder` spends most of its start-up
importing (asyncio alone is ~35 ms). The launcher imports the holder once and forks a copy of
itself per new terminal, which starts the holder's code at once: a terminal's start costs a
fork instead of an interpreter start.

    python -I -m hoodyd.terminals.holder.launcher FD

FD is hoodyd's end of a SOCK_SEQPACKET socket pair. Each request is one packet, a JSON
object with the holder's arguments (`args`), the environment (`env`), working directory
(`cwd`) and `umask` the holder and its shell start with, and the descriptor numbers (`fds`)
the descriptors passed with the packet take in the holder, as `pass_fds` would give them;
standard input and output are /dev/null. The child runs in a new session, like a process
started with `start_new_session`, and the launcher answers one packet with its exit status
once it has exited: at once, since a holder detaches before it serves. The launcher ends when
hoodyd closes its end (hoodyd stopped or died). Nothing of the launcher is inherited by a
holder: every other descriptor is closed in the child.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import traceback
from typing import Any

from hoodyd.terminals.holder import process as holder

MAX_REQUEST = 1 << 20
MAX_FDS = 16


def serve(channel: socket.socket) -> int:
    """Answer requests until hoodyd closes its end."""
    while True:
        try:
            data, fds, _flags, _address = socket.recv_fds(channel, MAX_REQUEST, MAX_FDS)
        except InterruptedError:
            continue
        if not data:
            return 0
        try:
            status = _launch(channel, json.loads(data), fds)
        except (ValueError, KeyError, TypeError, OSError) as error:
            print(f"holder launcher: bad request: {error}", file=sys.stderr, flush=True)
            status = 127
        finally:
            for fd in fds:
                os.close(fd)
        try:
            channel.send(status.to_bytes(4, "big", signed=True))
        except OSError:  # hoodyd is gone
            return 0


def _launch(channel: socket.socket, request: dict[str, Any], fds: list[int]) -> int:
    targets = [int(fd) for fd in request["fds"]]
    if len(targets) != len(fds):
        raise ValueError(f"{len(fds)} descriptors for {len(targets)} numbers")
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the holder-to-be: never returns into the loop above
        code = 1
        try:
            _become(channel, request, dict(zip(targets, fds, strict=True)))
            code = holder.main([str(arg) for arg in request["args"]])
        except SystemExit as stop:  # the holder's usage error, already printed
            code = stop.code if isinstance(stop.code, int) else 1
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _become(channel: socket.socket, request: dict[str, Any], fds: dict[int, int]) -> None:
    """Turn the forked launcher into the process `request` describes."""
    os.setsid()
    os.close(channel.detach())
    # move every descriptor above the numbers it must take, so that no dup2 overwrites one
    # still to be placed
    floor = max([*fds, *fds.values(), 2]) + 1
    placed = {target: fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, floor) for target, fd in fds.items()}
    opened = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    devnull = fcntl.fcntl(opened, fcntl.F_DUPFD_CLOEXEC, floor)  # not on a number to take
    os.close(opened)
    for target in (0, 1, 2):
        placed.setdefault(target, devnull)
    for target, fd in placed.items():
        os.dup2(fd, target)  # inheritable, as pass_fds leaves them
    for fd in _open_fds():
        if fd not in placed:
            with contextlib.suppress(OSError):  # the listing's own descriptor, closed by now
                os.close(fd)
    os.chdir(str(request["cwd"]))
    os.umask(int(request["umask"]))
    os.environ.clear()
    os.environ.update({str(k): str(v) for k, v in dict(request["env"]).items()})


def _open_fds() -> list[int]:
    return [int(name) for name in os.listdir("/proc/self/fd")]


def main(args: list[str] | None = None) -> int:
    words = sys.argv[1:] if args is None else args
    if len(words) != 1 or not words[0].isdigit():
        print("usage: python -I -m hoodyd.terminals.holder.launcher FD", file=sys.stderr)
        return 2
    holder.name_process("hoodyd-launcher")
    channel = socket.socket(fileno=int(words[0]))
    try:
        return serve(channel)
    finally:
        channel.close()


if __name__ == "__main__":
    sys.exit(main())
