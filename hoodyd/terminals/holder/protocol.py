"""The wire format between a terminal holder and its clients, shared by both sides.

A frame is a type byte and a payload length (`!BI`), then the payload. Output and marker
frames carry the absolute ring offset they belong at, so a client that lost its connection
asks to follow from the first byte it has not delivered; marker frames also carry a sequence
number, so a marker at exactly that offset is not delivered twice.

holder → client
  HELLO    JSON: version, terminal_id, holder_pid, shell_pid, started_at, cols, rows,
           ring_start, ring_end, exited, exit_code, foreground, meta, screen (true: the
           holder answers SCREEN requests) (sent once, on connect)
  OUTPUT   u64 offset, then the bytes (offset of the first one)
  MARKER   u64 offset, u64 sequence number, then the marker body: `S`, `C`, `D;status[;seq]`
  EXITED   JSON {exit_code}: live to every client, and at the end of a FOLLOW replay
  REPLY    JSON answer to a QUERY: {foreground_pgrp, shell_pid, shell_pgrp, running}
  SCREEN_ANSWER  JSON {id, screen: {active, memory_bytes, evictions, waiters}, and
           result: {...} or error: {reason, message}} (`screen`); a wait's answer
           comes when its condition holds, others in order
client → holder
  FOLLOW     i64 offset (-1: the oldest kept): replay from there in stream order, then live
  INPUT      bytes for the PTY
  RESIZE     u16 cols, u16 rows
  SIGNAL     JSON {signal, target: "foreground" | "session"}
  QUERY      empty; answered by one REPLY, in order
  SET_META   JSON object (at most MAX_META bytes), returned in later HELLOs
  TERMINATE  JSON {grace}: hang up the shell, report EXITED, end the holder
  CLOSE      empty; ends the holder if its shell has exited, else ignored
  SCREEN     JSON {id, op: snapshot | find | wait | state | drop, scrollback_lines,
             budget_bytes, and the op's options}: asks the holder's screen
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hoodyd.terminals.holder.markers import (
    CommandStarted,
    ContinuationPrompt,
    MarkerEvent,
    Output,
    PromptDrawn,
    PromptEnd,
)

VERSION = 1
HEADER = struct.Struct("!BI")
OFFSET = struct.Struct("!Q")
MARKER_HEAD = struct.Struct("!QQ")  # offset, sequence number
FOLLOW_FROM = struct.Struct("!q")
WINDOW = struct.Struct("!HH")
PEER_CREDENTIALS = struct.Struct("3i")  # struct ucred: pid, uid, gid
MAX_PAYLOAD = 16 * 1024 * 1024
MAX_META = 1024 * 1024
# sockaddr_un.sun_path holds 108 bytes including the terminating NUL.
MAX_UNIX_PATH = 107


class FrameType(enum.IntEnum):
    HELLO = 1
    OUTPUT = 2
    MARKER = 3
    EXITED = 4
    REPLY = 5
    SCREEN_ANSWER = 6
    FOLLOW = 16
    INPUT = 17
    RESIZE = 18
    SIGNAL = 19
    QUERY = 20
    SET_META = 21
    TERMINATE = 22
    CLOSE = 23
    SCREEN = 24


class ProtocolError(Exception):
    """The peer sent something that is not a frame of this protocol."""


def frame(kind: FrameType, payload: bytes = b"") -> bytes:
    return HEADER.pack(kind, len(payload)) + payload


def json_frame(kind: FrameType, value: object) -> bytes:
    return frame(kind, json.dumps(value, separators=(",", ":")).encode())


def output_frame(offset: int, data: bytes) -> bytes:
    return HEADER.pack(FrameType.OUTPUT, OFFSET.size + len(data)) + OFFSET.pack(offset) + data


def marker_frame(offset: int, seq: int, event: MarkerEvent) -> bytes:
    return frame(FrameType.MARKER, MARKER_HEAD.pack(offset, seq) + marker_body(event))


def marker_body(event: MarkerEvent) -> bytes:
    if isinstance(event, CommandStarted):
        return b"S"
    if isinstance(event, ContinuationPrompt):
        return b"C"
    if isinstance(event, PromptEnd):
        return b"P"
    if isinstance(event, PromptDrawn):
        seq = b"" if event.seq is None else b"%d" % event.seq
        if event.command is not None:
            return b"D;%d;%s;%d" % (event.status, seq, event.command)
        if event.seq is None:
            return b"D;%d" % event.status
        return b"D;%d;%s" % (event.status, seq)
    raise ValueError(f"not a marker: {event!r}")


def parse_marker(payload: bytes) -> tuple[int, int, MarkerEvent]:
    """(offset, sequence number, event) of a MARKER payload."""
    if len(payload) < MARKER_HEAD.size:
        raise ProtocolError("short marker frame")
    offset, seq = MARKER_HEAD.unpack_from(payload)
    kind, *args = payload[MARKER_HEAD.size :].split(b";")
    event: MarkerEvent
    if kind == b"S" and not args:
        event = CommandStarted()
    elif kind == b"C" and not args:
        event = ContinuationPrompt()
    elif kind == b"P" and not args:
        event = PromptEnd()
    elif kind == b"D" and 1 <= len(args) <= 3:
        try:
            prompts = int(args[1]) if len(args) >= 2 and args[1] else None
            command = int(args[2]) if len(args) == 3 else None
            event = PromptDrawn(int(args[0]), prompts, command)
        except ValueError as error:
            raise ProtocolError(f"bad prompt marker {payload!r}") from error
    else:
        raise ProtocolError(f"unknown marker {payload!r}")
    return offset, seq, event


def parse_output(payload: bytes) -> tuple[int, Output]:
    if len(payload) < OFFSET.size:
        raise ProtocolError("short output frame")
    return OFFSET.unpack_from(payload)[0], Output(payload[OFFSET.size :])


def parse_json(payload: bytes) -> Any:
    try:
        return json.loads(payload)
    except ValueError as error:
        raise ProtocolError("a JSON frame that is not JSON") from error


class FrameDecoder:
    """Splits a byte stream into (type, payload) frames; a frame may arrive in pieces."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        buf = self._buf
        buf += data
        frames: list[tuple[int, bytes]] = []
        pos = 0
        while len(buf) - pos >= HEADER.size:
            kind, size = HEADER.unpack_from(buf, pos)
            if size > MAX_PAYLOAD:
                raise ProtocolError(f"a frame of {size} bytes (at most {MAX_PAYLOAD})")
            end = pos + HEADER.size + size
            if len(buf) < end:
                break
            frames.append((kind, bytes(buf[pos + HEADER.size : end])))
            pos = end
        del buf[:pos]
        return frames


@contextlib.contextmanager
def unix_address(path: Path) -> Iterator[str]:
    """An address to bind or connect `path` with. A path longer than sockaddr_un allows is
    reached through `/proc/self/fd/<fd of its directory>/<name>` instead (chdir would be
    process-wide, and hoodyd has other work in flight)."""
    if len(os.fsencode(path)) <= MAX_UNIX_PATH:
        yield str(path)
        return
    directory = os.open(path.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{directory}/{path.name}"
    finally:
        os.close(directory)
