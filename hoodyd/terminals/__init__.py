"""Terminal sessions that hoodyd owns: shells held by holder processes that outlive hoodyd,
command injection, defer, attach, and the screen emulators of the automation API.

`TerminalService` (`service`) is the one entry point for the API layer; below it are the
holder process, the launcher that forks holders, and hoodyd's link to them (`holder`,
`holder_launcher`, `holder_link`, `holder_protocol`), the PTY adapter the
holder runs (`pty_process`), the shell integration that reports completion in-band (`shells`,
`markers`), the bounded output buffer (`ring`), the wait for a PID to exit (`defer`), and the
screen emulator with its inputs (`automation`, `screen`, `find`, `keys`, `mouse`, `paste`).
This package imports nothing at start: the holder and its launcher import only what they
use.
"""
