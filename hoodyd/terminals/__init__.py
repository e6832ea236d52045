"""Terminal sessions that hoodyd owns: shells held by holder processes that outlive hoodyd,
command injection, defer, attach, and the screen emulators of the automation API.

`TerminalService` (`service`) is the one entry point for the API layer. It checks a request
whole, plans a new session's start from its options (`launch`) and keeps its books of
sessions and commands (`sessions`: ids, locks, bounds). A session (`session`) mirrors its
holder's output and runs its command queue, each command's lifecycle a table of states
(`commands`). Below it: starting a holder (`spawn`) and the reconnecting link to it (`link`);
the holder itself, the program that owns a PTY and outlives hoodyd (the `holder` package:
process, launcher, PTY, wire protocol, markers, output ring, the screen it answers from); the
shell integration that reports completion in-band (`shells`); the wait for a PID to exit
(`defer`); the screen emulator (`screen`) and the inputs and reads of the automation API
(`automation`, `find`, `keys`, `mouse`, `paste`); `cleanup` ends holders left behind.
This package imports nothing at start: the holder and its launcher import only what they
use.
"""
