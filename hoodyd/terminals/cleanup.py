"""Ending the terminal holders of a state dir whose hoodyd is gone for good (`hoodyd
stop-terminals`), as `hoodyd stop-supervisor` ends its supervisord.

A holder is found through its socket (`STATE/terminals/holders/N.sock`: the kernel names the
process listening on it) and through its command line (`-m hoodyd.terminals.holder --socket
...`), so a holder whose socket file was removed is found too, as long as it was started as
a process of its own (a program's holder under supervisord, or hoodyd's when its launcher was
unavailable); one forked by the launcher carries the launcher's command line.
"""

from __future__ import annotations

import contextlib
import socket
from dataclasses import dataclass
from pathlib import Path

import psutil

from hoodyd.terminals.holder import protocol as wire
from hoodyd.terminals.spawn import list_holders

HOLDER_MODULE = "hoodyd.terminals.holder"
PROBE_TIMEOUT = 1.0


@dataclass(frozen=True, slots=True)
class HeldTerminal:
    terminal_id: int
    pid: int
    socket: Path
    program: bool  # started by supervisord for a program (`--foreground`)


def find_holders(state_dir: Path) -> list[HeldTerminal]:
    """The live holders serving a socket under `state_dir`, by terminal id."""
    holders_dir = (state_dir / "terminals" / "holders").resolve()
    found: dict[int, Path] = {}
    for _terminal_id, path in list_holders(holders_dir):
        pid = listener_pid(path)
        if pid is not None:
            found[pid] = path
    for process in psutil.process_iter(["pid", "cmdline"]):
        argument = _socket_argument(process.info["cmdline"] or [], holders_dir)
        if argument is not None:
            found.setdefault(process.info["pid"], argument)
    held = [
        HeldTerminal(int(path.stem), pid, path, _foreground(pid)) for pid, path in found.items()
    ]
    return sorted(held, key=lambda terminal: terminal.terminal_id)


def listener_pid(path: Path) -> int | None:
    """The pid of the process listening on the socket `path` (its last listen(), which the
    holder's server makes once it serves), None when nothing listens."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(PROBE_TIMEOUT)
    try:
        with wire.unix_address(path) as address:
            probe.connect(address)
        credentials = probe.getsockopt(
            socket.SOL_SOCKET, socket.SO_PEERCRED, wire.PEER_CREDENTIALS.size
        )
    except OSError:
        return None
    finally:
        probe.close()
    pid, _uid, _gid = wire.PEER_CREDENTIALS.unpack(credentials)
    return pid if psutil.pid_exists(pid) else None


def _socket_argument(argv: list[str], holders_dir: Path) -> Path | None:
    """The `--socket` of a holder's command line, if it lies in `holders_dir`."""
    if HOLDER_MODULE not in argv or "--socket" not in argv:
        return None
    index = argv.index("--socket") + 1
    if index >= len(argv):
        return None
    path = Path(argv[index])
    if path.parent.resolve() != holders_dir or not path.stem.isdigit():
        return None
    return path


def _foreground(pid: int) -> bool:
    with contextlib.suppress(psutil.Error):
        return "--foreground" in psutil.Process(pid).cmdline()
    return False


def stop_holders(holders: list[HeldTerminal], grace: float) -> None:
    """SIGTERM each holder (it hangs up its shell and the shell's jobs), SIGKILL what is
    left after `grace` seconds."""
    processes = []
    for held in holders:
        with contextlib.suppress(psutil.Error):
            process = psutil.Process(held.pid)
            process.terminate()
            processes.append(process)
    _gone, alive = psutil.wait_procs(processes, timeout=grace)
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(alive, timeout=5)
    for held in holders:
        held.socket.unlink(missing_ok=True)
