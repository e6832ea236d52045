"""The VT parser that feeds the grid: pyte's state machine, reworked so that no input can
raise, strings (OSC, DCS, APC, PM, SOS) are bounded and consumed, and private or
intermediate CSI sequences are not mistaken for plain ones."""

from __future__ import annotations

import codecs
import contextlib
import re
from collections.abc import Callable, Generator
from typing import Any, ClassVar

import pyte
from pyte import control as ctrl

from hoodyd.terminals.screen.grid import Grid

_MAX_CSI_PARAMS = 32
_MAX_PARAM_DIGITS = 6
_MAX_OSC_CHARS = 4096


def _ignore_failures(method: Callable[..., Any]) -> Callable[..., None]:
    """A screen operation that swallows its own failures: pyte has asserts and edge cases
    (DECOM without margins, odd parameter counts) that must not stop the output stream."""

    def call(*args: Any, **kwargs: Any) -> None:
        with contextlib.suppress(Exception):
            method(*args, **kwargs)

    return call


class Parser:
    """The VT parser: pyte's state machine, reworked so that no input can raise, strings
    (OSC, DCS, APC, PM, SOS) are bounded and consumed, private/intermediate CSI sequences
    are not mistaken for plain ones, and DEC line drawing works in UTF-8."""

    _csi_names: ClassVar[dict[str, str]] = {
        **pyte.Stream.csi,
        "b": "repeat_last_char",
        "S": "scroll_up",
        "T": "scroll_down",
        "Z": "cursor_back_tab",
        "s": "save_cursor_sco",
        "u": "restore_cursor_sco",
    }
    _private_csi_names: ClassVar[dict[str, str]] = {
        "h": "set_mode",
        "l": "reset_mode",
        "J": "erase_in_display",
        "K": "erase_in_line",
    }
    _text = re.compile("[^\x00-\x1f\x7f\x9b\x9d]+")

    def __init__(self, screen: Grid) -> None:
        self._screen = screen
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._draw = _ignore_failures(screen.draw)
        self._basic = {
            char: _ignore_failures(getattr(screen, name))
            for char, name in pyte.Stream.basic.items()
        }
        self._escape = {
            char: _ignore_failures(getattr(screen, name))
            for char, name in pyte.Stream.escape.items()
        }
        self._escape["="] = _ignore_failures(lambda: screen.set_keypad(True))
        self._escape[">"] = _ignore_failures(lambda: screen.set_keypad(False))
        self._csi = {
            char: _ignore_failures(getattr(screen, name)) for char, name in self._csi_names.items()
        }
        self._private_csi = {
            char: _ignore_failures(getattr(screen, name))
            for char, name in self._private_csi_names.items()
        }
        self._restart()

    def _restart(self) -> None:
        self._fsm = self._machine()
        self._plain = bool(next(self._fsm))

    def feed(self, data: bytes) -> None:
        text = self._decoder.decode(data)
        match_text = self._text.match
        draw = self._draw
        plain = self._plain
        offset, length = 0, len(text)
        while offset < length:
            if plain:
                match = match_text(text, offset)
                if match:
                    start, offset = match.span()
                    draw(text[start:offset])
                    continue
                plain = False
            try:
                plain = bool(self._fsm.send(text[offset]))
            except Exception:
                self._restart()
                plain = self._plain
            offset += 1
        self._plain = plain

    def _machine(self) -> Generator[bool, str, None]:
        screen = self._screen
        basic, escape, csi, private_csi = self._basic, self._escape, self._csi, self._private_csi
        draw = self._draw
        esc = ctrl.ESC
        pending: str | None = None
        while True:
            char = pending if pending is not None else (yield True)
            pending = None
            if char == esc:
                char = yield False
                if char == "[":
                    char = ctrl.CSI_C1
                elif char == "]":
                    char = ctrl.OSC_C1
                elif char in "P_^X":
                    pending = yield from self._skip_string()
                    continue
                elif char == esc:
                    pending = esc
                    continue
                elif char == "#":
                    code = yield False
                    if code == "8":
                        _ignore_failures(screen.alignment_display)()
                    continue
                elif char in "()":
                    code = yield False
                    _ignore_failures(screen.define_charset)(code, char)
                    continue
                elif char in "*+-./%":
                    yield False  # other charset designations: UTF-8 only
                    continue
                elif char == "c":
                    _ignore_failures(screen.reset)()
                    continue
                else:
                    handler = escape.get(char)
                    if handler is not None:
                        handler()
                    continue

            if char in basic:
                basic[char]()
            elif char == ctrl.CSI_C1:
                pending = yield from self._csi_sequence(basic, csi, private_csi)
            elif char == ctrl.OSC_C1:
                pending = yield from self._osc_string()
            elif char >= " " and char != ctrl.DEL:
                draw(char)

    def _csi_sequence(
        self,
        basic: dict[str, Callable[..., None]],
        csi: dict[str, Callable[..., None]],
        private_csi: dict[str, Callable[..., None]],
    ) -> Generator[bool, str, str | None]:
        params: list[int] = []
        current = ""
        prefix = ""
        intermediates = False
        while True:
            char = yield False
            if "0" <= char <= "9":
                if len(current) < _MAX_PARAM_DIGITS:
                    current += char
            elif char in ";:":
                if len(params) < _MAX_CSI_PARAMS:
                    params.append(min(int(current or 0), 9999))
                current = ""
            elif char in "<=>?":
                prefix = char
            elif " " <= char <= "/":
                intermediates = True
            elif char in basic:
                basic[char]()
            elif char == ctrl.ESC:
                return char  # an aborted sequence; the ESC starts a new one
            elif "@" <= char <= "~":
                if len(params) < _MAX_CSI_PARAMS:
                    params.append(min(int(current or 0), 9999))
                if intermediates:
                    return None
                if prefix == "?":
                    handler = private_csi.get(char)
                    if handler is not None:
                        if char in "hl":
                            handler(*params, private=True)
                        else:
                            handler(*params)
                    return None
                if prefix:
                    return None  # CSI > / = / < sequences: queries and key settings
                handler = csi.get(char)
                if handler is not None:
                    handler(*params)
                return None
            else:
                return None  # CAN, SUB or anything unexpected aborts the sequence

    def _osc_string(self) -> Generator[bool, str, str | None]:
        chars: list[str] = []
        pending: str | None = None
        while True:
            char = yield False
            if char in (ctrl.BEL, ctrl.ST_C1, ctrl.CAN, ctrl.SUB):
                break
            if char == ctrl.ESC:
                follower = yield False
                if follower != "\\":
                    pending = follower if follower == ctrl.ESC else None
                break
            if len(chars) < _MAX_OSC_CHARS:
                chars.append(char)
        command, _, value = "".join(chars).partition(";")
        if command in ("0", "2"):
            _ignore_failures(self._screen.set_title)(value)
        if command in ("0", "1"):
            _ignore_failures(self._screen.set_icon_name)(value)
        return pending

    def _skip_string(self) -> Generator[bool, str, str | None]:
        """Consume a DCS/APC/PM/SOS string up to its terminator; none of them draws."""
        while True:
            char = yield False
            if char in (ctrl.ST_C1, ctrl.CAN, ctrl.SUB):
                return None
            if char == ctrl.ESC:
                follower = yield False
                return None if follower == "\\" else (ctrl.ESC if follower == ctrl.ESC else None)
