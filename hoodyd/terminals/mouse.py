"""Mouse events on terminal cells, encoded as the xterm mouse reports a program asked for.

A program turns reporting on with DECSET 9 (X10: presses only), 1000 (presses and
releases), 1002 (plus motion while a button is held) or 1003 (all motion), and picks the
report encoding with 1005 (UTF-8), 1006 (SGR) or 1015 (urxvt); without one of those the
classic `ESC [ M b x y` form is used. Events the active mode does not report (a move under
1000, a release under X10) are left out, as a real terminal would.
"""

from __future__ import annotations

from hoodyd.errors import Conflict, InvalidRequest, Reason
from hoodyd.schemas.automation import MAX_MODIFIERS, MAX_SCROLL_AMOUNT, MouseEvent
from hoodyd.terminals.screen import MouseEncoding, MouseTracking

_CLASSIC_MAX = 223  # 255 - 32: the largest coordinate one byte can carry
_UTF8_MAX = 2015  # 2047 - 32: the largest a two-byte UTF-8 character can carry
_MODIFIER_BITS = {"shift": 4, "alt": 8, "meta": 8, "ctrl": 16, "control": 16}
_WHEEL_BUTTONS = {"up": 4, "down": 5}


def _invalid(index: int, message: str) -> InvalidRequest:
    return InvalidRequest(
        f"mouse event {index}: {message}",
        reason=Reason.INVALID_MOUSE_EVENT,
        extra={"event_index": index},
    )


def _button_of(index: int, event: MouseEvent) -> int:
    """The event's button after defaults and checks."""
    if event.type == "scroll":
        if event.direction is not None:
            return _WHEEL_BUTTONS[event.direction]
        if event.button is None:
            return _WHEEL_BUTTONS["down"]
        if event.button not in (4, 5):
            raise _invalid(index, "a scroll uses button 4 (up) or 5 (down)")
        return event.button
    if event.direction is not None:
        raise _invalid(index, "direction applies to scroll events only")
    button = 1 if event.button is None else event.button
    if not 1 <= button <= 3:
        raise _invalid(index, f"a {event.type} event uses button 1, 2 or 3")
    return button


def _check(index: int, event: MouseEvent, *, cols: int, rows: int) -> int:
    if event.type not in ("move", "down", "up", "click", "scroll"):
        raise _invalid(index, f"unknown type {event.type!r}")
    if not (0 <= event.row < rows and 0 <= event.col < cols):
        raise _invalid(
            index, f"cell ({event.row}, {event.col}) is outside the {rows}x{cols} screen"
        )
    if not 1 <= event.amount <= MAX_SCROLL_AMOUNT:
        raise _invalid(index, f"amount must be between 1 and {MAX_SCROLL_AMOUNT}")
    if len(event.modifiers) > MAX_MODIFIERS or not set(event.modifiers) <= set(_MODIFIER_BITS):
        raise _invalid(index, f"modifiers are at most {MAX_MODIFIERS} of {sorted(_MODIFIER_BITS)}")
    return _button_of(index, event)


def _report(code: int, col: int, row: int, *, release: bool, encoding: MouseEncoding) -> bytes:
    """One report: `code` is the xterm button code (with modifier and motion bits), `col`
    and `row` are 1-based. A classic-form release carries code 3, SGR keeps the button."""
    if encoding == "sgr":
        return f"\x1b[<{code};{col};{row}{'m' if release else 'M'}".encode()
    if release:
        code = (code & ~0b11) | 3
    if encoding == "urxvt":
        return f"\x1b[{code + 32};{col};{row}M".encode()
    if encoding == "utf8":
        col, row = min(col, _UTF8_MAX), min(row, _UTF8_MAX)
        return b"\x1b[M" + "".join(chr(32 + value) for value in (code, col, row)).encode()
    col, row = min(col, _CLASSIC_MAX), min(row, _CLASSIC_MAX)
    return b"\x1b[M" + bytes([32 + code, 32 + col, 32 + row])


def _button_code(button: int) -> int:
    return button - 1 if button <= 3 else 64 + (button - 4)


def encode_mouse(
    events: list[MouseEvent],
    *,
    tracking: MouseTracking | None,
    encoding: MouseEncoding,
    cols: int,
    rows: int,
) -> bytes:
    """The reports for `events` in order. Every event is checked first (`InvalidRequest`,
    INVALID_MOUSE_EVENT); a program that has not enabled mouse reporting gets nothing
    (`Conflict`, MOUSE_NOT_ENABLED)."""
    buttons = [_check(index, event, cols=cols, rows=rows) for index, event in enumerate(events)]
    if tracking is None:
        raise Conflict(
            "The program in this terminal has not enabled mouse reporting "
            "(DECSET 9/1000/1002/1003); mouse events would not reach it",
            reason=Reason.MOUSE_NOT_ENABLED,
        )
    out = bytearray()
    held: int | None = None  # the button pressed earlier in this request and not released
    for event, button in zip(events, buttons, strict=True):
        col, row = event.col + 1, event.row + 1
        bits = 0
        if tracking != "x10":  # X10 reports carry no modifiers
            for modifier in set(event.modifiers):
                bits |= _MODIFIER_BITS[modifier]
        code = _button_code(button) | bits
        if event.type == "scroll":
            for _ in range(event.amount):
                out += _report(code, col, row, release=False, encoding=encoding)
        elif event.type == "move":
            if tracking == "any" or (tracking == "button" and held is not None):
                moving = _button_code(held) if held is not None else 3
                out += _report(32 | moving | bits, col, row, release=False, encoding=encoding)
        else:
            if event.type in ("down", "click"):
                out += _report(code, col, row, release=False, encoding=encoding)
                held = button
            if event.type in ("up", "click"):
                if tracking != "x10":
                    out += _report(code, col, row, release=True, encoding=encoding)
                held = None
    return bytes(out)
