"""In-band shell integration markers: find them in PTY output, strip them, report them.

The shells hoodyd starts print private OSC sequences (`ESC ] 6973 ; <nonce> ; <kind> ... BEL`)
from their prompt hooks. Terminals ignore unknown OSC sequences, but hoodyd removes them anyway
so that output readers and attached clients see what the user's programs printed. The nonce is
random per session, so a program that prints something marker-shaped cannot complete a command.

Kinds:
  `S`                      a command line was read and is about to run (bash PS0)
  `D;<status>[;<seq>[;<command>]]`
                           a prompt is being drawn; `status` is `$?` of the last command,
                           `seq` counts prompts (empty or absent for shells that cannot count)
                           and `command` is the mark hoodyd typed with the line that just ran
                           (empty: a line typed by other means)
  `C`                      a continuation prompt (PS2): the shell wants more input
  `P`                      the prompt's own text ends here (POSIX sh, which has no `S`: what
                           follows is typed input and the output of the line it runs)
"""

from __future__ import annotations

from dataclasses import dataclass

OSC_PREFIX = b"\x1b]6973;"
BEL = b"\x07"
# A marker is short; anything longer after the prefix is not one of ours.
MAX_MARKER = 96


@dataclass(frozen=True, slots=True)
class Output:
    data: bytes


@dataclass(frozen=True, slots=True)
class CommandStarted:
    pass


@dataclass(frozen=True, slots=True)
class PromptDrawn:
    status: int
    seq: int | None
    # the mark of the line that ran (0: a line without one); None: the shell did not say
    command: int | None = None


@dataclass(frozen=True, slots=True)
class ContinuationPrompt:
    pass


@dataclass(frozen=True, slots=True)
class PromptEnd:
    pass


MarkerEvent = Output | CommandStarted | PromptDrawn | ContinuationPrompt | PromptEnd


class MarkerScanner:
    """Streaming splitter of PTY output into plain output and marker events.

    A marker may be cut across two reads, so a trailing partial prefix is held back until the
    next read decides whether it was a marker.
    """

    def __init__(self, nonce: str) -> None:
        self._nonce = nonce.encode()
        self._pending = b""

    def feed(self, data: bytes) -> list[MarkerEvent]:
        buf = self._pending + data
        self._pending = b""
        events: list[MarkerEvent] = []
        pos = 0
        while True:
            start = buf.find(OSC_PREFIX, pos)
            if start < 0:
                keep = _partial_prefix_length(buf, pos)
                _emit(events, buf[pos : len(buf) - keep])
                self._pending = buf[len(buf) - keep :]
                return events
            _emit(events, buf[pos:start])
            end = buf.find(BEL, start, start + MAX_MARKER)
            if end < 0:
                if len(buf) - start < MAX_MARKER:
                    self._pending = buf[start:]
                    return events
                _emit(events, buf[start : start + 1])  # not a marker: pass the ESC through
                pos = start + 1
                continue
            event = self._parse(buf[start + len(OSC_PREFIX) : end])
            if event is None:
                _emit(events, buf[start : end + 1])
            else:
                events.append(event)
            pos = end + 1

    def _parse(self, body: bytes) -> MarkerEvent | None:
        parts = body.split(b";")
        if parts[0] != self._nonce or len(parts) < 2:
            return None
        kind, args = parts[1], parts[2:]
        if kind == b"S" and not args:
            return CommandStarted()
        if kind == b"C" and not args:
            return ContinuationPrompt()
        if kind == b"P" and not args:
            return PromptEnd()
        if kind == b"D" and 1 <= len(args) <= 3 and args[0].isdigit():
            seq = int(args[1]) if len(args) >= 2 and args[1].isdigit() else None
            command = None
            if len(args) == 3:
                command = int(args[2]) if args[2].isdigit() else 0
            return PromptDrawn(int(args[0]), seq, command)
        return None


def _emit(events: list[MarkerEvent], data: bytes) -> None:
    if not data:
        return
    if events and isinstance(events[-1], Output):
        events[-1] = Output(events[-1].data + data)
    else:
        events.append(Output(data))


def _partial_prefix_length(buf: bytes, pos: int) -> int:
    """Length of the longest tail of `buf[pos:]` that could begin a marker."""
    for size in range(min(len(OSC_PREFIX) - 1, len(buf) - pos), 0, -1):
        if OSC_PREFIX.startswith(buf[len(buf) - size :]):
            return size
    return 0
