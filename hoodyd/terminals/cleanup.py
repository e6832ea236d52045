"""Ending the terminal holders of a state dir whose hoodyd is gone for good (`hoodyd
stop-terminals`), as `hoodyd stop-supervisor` ends its supervisord.

Holders are found by their command line (`-m hoodyd.terminals.holder --socket
STATE/terminals/holders/N.sock`), so a holder whose socket file was removed is found too.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import psutil

HOLDER_MODULE = "hoodyd.terminals.holder"


@dataclass(frozen=True, slots=True)
class HeldTerminal:
    terminal_id: int
    pid: int
    socket: Path
    program: bool  # started by supervisord for a program (`--foreground`)


def find_holders(state_dir: Path) -> list[HeldTerminal]:
    """The live holders serving a socket under `state_dir`, by terminal id."""
    holders_dir = (state_dir / "terminals" / "holders").resolve()
    found = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        argv = process.info["cmdline"] or []
        if HOLDER_MODULE not in argv or "--socket" not in argv:
            continue
        index = argv.index("--socket") + 1
        if index >= len(argv):
            continue
        socket = Path(argv[index])
        if socket.parent.resolve() != holders_dir or not socket.stem.isdigit():
            continue
        found.append(
            HeldTerminal(int(socket.stem), process.info["pid"], socket, "--foreground" in argv)
        )
    return sorted(found, key=lambda held: held.terminal_id)


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
