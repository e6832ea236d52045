"""Puts its terminal in raw mode, enables the DEC private modes given as arguments (for
example 1000 1006 2004) and prints every chunk of input it receives as a Python bytes
literal, one per line. Ctrl-D ends it."""

import os
import sys
import termios
import tty

saved = termios.tcgetattr(0)
tty.setraw(0)
try:
    for mode in sys.argv[1:]:
        os.write(1, f"\x1b[?{mode}h".encode())
    os.write(1, b"RAW READY\r\n")
    while True:
        data = os.read(0, 4096)
        if not data or data == b"\x04":
            break
        os.write(1, ascii(data).encode() + b"\r\n")
finally:
    termios.tcsetattr(0, termios.TCSADRAIN, saved)
