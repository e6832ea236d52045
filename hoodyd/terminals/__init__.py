"""Terminal sessions that hoodyd owns: shells in PTYs, command injection, defer, attach.

`TerminalService` is the one entry point for the API layer; the modules below it are the
PTY adapter (`pty_process`), the shell integration that reports completion in-band
(`shells`, `markers`), the bounded output buffer (`ring`) and the wait for a PID to exit
(`defer`).
"""

from __future__ import annotations

from hoodyd.terminals.service import TerminalService

__all__ = ["TerminalService"]
