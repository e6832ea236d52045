"""A curses program for terminal automation tests: it shows what it receives.

Row 0 says READY, row 1 holds a reverse-video item, row 2 wide characters; every key or
mouse event curses decodes is listed from row 4 down, newest last, as ncurses named it.
The window title is set with OSC 2. `Q` quits.
"""

import curses
import os

MOUSE_FLAGS = [name for name in dir(curses) if name.startswith(("BUTTON", "REPORT_MOUSE"))]


def describe_mouse() -> str:
    _, x, y, _, state = curses.getmouse()
    flags = sorted(
        name
        for name in MOUSE_FLAGS
        if state & getattr(curses, name) and getattr(curses, name) != curses.ALL_MOUSE_EVENTS
    )
    return f"MOUSE {y} {x} {'|'.join(flags)}"


def main(screen: "curses.window") -> None:
    curses.raw()
    curses.nonl()  # show Enter as the CR it is
    curses.noecho()
    screen.keypad(True)
    curses.mouseinterval(0)  # report presses and releases, never synthesized clicks
    curses.mousemask(curses.ALL_MOUSE_EVENTS | curses.REPORT_MOUSE_POSITION)
    os.write(1, b"\x1b]2;curses probe\x07")
    screen.addstr(0, 0, "PROBE READY")
    screen.addstr(1, 2, " SELECTED ", curses.A_REVERSE)
    screen.addstr(2, 0, "\u4e2d\u6587 wide")
    events: list[str] = []
    rows, _ = screen.getmaxyx()
    while True:
        shown = events[-(rows - 5) :]
        first = len(events) - len(shown) + 1
        for index, event in enumerate(shown):
            screen.move(4 + index, 0)
            screen.clrtoeol()
            screen.addstr(4 + index, 0, f"{first + index}: {event}")
        screen.refresh()
        key = screen.get_wch()
        if key == "Q":
            return
        if key == curses.KEY_MOUSE:
            events.append(describe_mouse())
        elif isinstance(key, int):
            events.append("KEY " + curses.keyname(key).decode())
        else:
            events.append("CHR " + ascii(key))


curses.wrapper(main)
