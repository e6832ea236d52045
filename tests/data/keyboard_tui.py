"""A small full-screen program for the automation tests: it switches the terminal the way TUIs
do (alternate screen, title, application cursor and keypad keys, SGR mouse reporting,
bracketed paste), then prints every chunk of input it reads as `got: <repr>` so a test can
check the exact bytes a key press, a click or a paste produced. `q` quits.
"""

from __future__ import annotations

import os
import sys
import termios
import tty

SETUP = (
    "\x1b[?1049h"  # alternate screen
    "\x1b]2;tui-title\x07"  # window title
    "\x1b[?1h\x1b="  # application cursor keys, application keypad
    "\x1b[?1000h\x1b[?1006h"  # mouse reporting, SGR coordinates
    "\x1b[?2004h"  # bracketed paste
    "\x1b[H\x1b[2JREADY\r\n\x1b[7mMENU\x1b[0m\r\n"
)
TEARDOWN = "\x1b[?2004l\x1b[?1006l\x1b[?1000l\x1b[?1l\x1b>\x1b[?1049l"


def main() -> int:
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    tty.setraw(fd)
    out = sys.stdout
    try:
        out.write(SETUP)
        out.flush()
        row = 3
        while True:
            data = os.read(fd, 4096)
            if not data or data == b"q":
                break
            out.write(f"\x1b[{row};1Hgot: {data!r}\x1b[K")
            row = 3 if row >= 20 else row + 1
            out.flush()
    finally:
        out.write(TEARDOWN)
        out.flush()
        termios.tcsetattr(fd, termios.TCSAFLUSH, saved)
    print("BYE")
    return 0


if __name__ == "__main__":
    sys.exit(main())
