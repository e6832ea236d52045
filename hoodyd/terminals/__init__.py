"""Terminal sessions that hoodyd owns: shells held by holder processes that outlive hoodyd,
command injection, defer, attach, and the screen emulators of the automation API.

`TerminalService` (`service`) is the one entry point for the API layer; below it are the
holder, the program that owns a PTY and outlives hoodyd (the `holder` package: process,
launcher, PTY, wire protocol, markers, output ring, the screen it answers from), hoodyd's link
to it (`holder_link`), the shell integration that reports completion in-band (`shells`), a
command's lifecycle (`commands`), the wait for a PID to exit (`defer`), and the screen
emulator with its inputs (`automation`, `screen`, `find`, `keys`, `mouse`, `paste`).
This package imports nothing at start: the holder and its launcher import only what they
use.
"""
