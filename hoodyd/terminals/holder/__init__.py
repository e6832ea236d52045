"""The terminal holder: the small program that owns one terminal's PTY and shell and outlives
hoodyd (`python -I -m hoodyd.terminals.holder ...`, see `process`).

`process` the holder itself (options, detaching, the socket it serves, the shell's life),
`launcher` the fork server that starts holders without a new interpreter, `pty` the PTY and
its child, `protocol` the frames spoken on the holder's socket, `markers` the scanner of the
shell integration's in-band marks, `ring` the bounded output buffer, `screen` the emulator the
holder answers snapshot, find and wait from. The package imports only the standard library,
pyte, regex and `hoodyd.terminals.screen`: nothing of the daemon (a test keeps it so). This
face imports nothing, so that each part loads only what it uses.
"""
