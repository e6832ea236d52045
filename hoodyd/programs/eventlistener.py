"""supervisord event listener that forwards process state changes to hoodyd as datagrams.

supervisord runs this module as `[eventlistener:hoodyd-events]`
(`python -m hoodyd.programs.eventlistener /path/to/events.sock`) and talks to it over
stdin/stdout: the listener writes `READY\\n`, reads one header line and `len` bytes of payload,
and answers `RESULT 2\\nOK`. Each PROCESS_STATE_* event becomes one JSON datagram on hoodyd's
Unix datagram socket (`hoodyd.programs.events.EventReceiver`).

Stdlib only, so that a restart after a crash is quick; events that cannot be delivered
(hoodyd down or restarting) are dropped, because hoodyd reconciles states by polling anyway.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import socket
import sys
from typing import BinaryIO

LISTENER_NAME = "hoodyd-events"
READY = b"READY\n"
OK = b"RESULT 2\nOK"
STATE_PREFIX = "PROCESS_STATE_"
# how long a send may wait when hoodyd's receive queue is full; hoodyd being down answers at
# once (ENOENT / ECONNREFUSED), so this bounds only the case of a busy receiver
SEND_TIMEOUT = 0.5


def parse_tokens(text: str) -> dict[str, str]:
    """`key:value key:value` (supervisord's header and payload format) as a dict."""
    fields: dict[str, str] = {}
    for token in text.split():
        key, sep, value = token.partition(":")
        if sep:
            fields[key] = value
    return fields


def event_datagram(header: dict[str, str], payload: str) -> bytes | None:
    """The JSON datagram for one event, or None if it is not a process state change."""
    eventname = header.get("eventname", "")
    if not eventname.startswith(STATE_PREFIX):
        return None
    fields = parse_tokens(payload)
    pid_text = fields.get("pid", "")
    pid = int(pid_text) if pid_text.isdigit() and int(pid_text) > 0 else None
    expected = fields.get("expected")
    tries = fields.get("tries", "")
    serial = header.get("serial", "")
    message = {
        "process_name": fields.get("processname", ""),
        "group_name": fields.get("groupname", ""),
        "state": eventname.removeprefix(STATE_PREFIX),
        "from_state": fields.get("from_state") or None,
        "pid": pid,
        "expected": None if expected is None else expected == "1",
        "serial": int(serial) if serial.isdigit() else None,
        "source": os.getppid(),  # the supervisord that runs this listener
    }
    if tries.isdigit():  # STARTING and BACKOFF: failed attempts in a row
        message["tries"] = int(tries)
    return json.dumps(message, separators=(",", ":")).encode()


def _read_exactly(stream: BinaryIO, length: int) -> bytes | None:
    chunks: list[bytes] = []
    remaining = length
    while remaining > 0:
        chunk = stream.read(remaining)
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def run(socket_path: str, stdin: BinaryIO, stdout: BinaryIO) -> int:
    """Serve the event listener protocol until supervisord closes stdin."""
    sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sender.settimeout(SEND_TIMEOUT)
    try:
        while True:
            stdout.write(READY)
            stdout.flush()
            line = stdin.readline()
            if not line:
                return 0  # supervisord closed the pipe: it is stopping us
            header = parse_tokens(line.decode("utf-8", "replace"))
            try:
                length = int(header.get("len", "0"))
            except ValueError:
                length = 0
            raw = _read_exactly(stdin, length)
            if raw is None:
                return 0
            try:
                datagram = event_datagram(header, raw.decode("utf-8", "replace"))
            except ValueError as exc:
                print(f"hoodyd-events: bad event {line!r}: {exc}", file=sys.stderr, flush=True)
                datagram = None
            if datagram is not None:
                # hoodyd down or busy: drop it, its polling catches up
                with contextlib.suppress(OSError):
                    sender.sendto(datagram, socket_path)
            # always OK: FAIL would make supervisord resend the same event forever
            stdout.write(OK)
            stdout.flush()
    finally:
        sender.close()


def render_listener_section(python: str, socket_path: str, log_dir: str) -> str:
    """The supervisord `[eventlistener:hoodyd-events]` section that runs this module."""
    for value in (python, socket_path, log_dir):
        if any(ch in value for ch in "\n\r\0"):
            raise ValueError(f"unusable path for the event listener: {value!r}")
    command = shlex.join([python, "-m", "hoodyd.programs.eventlistener", socket_path])
    stderr_log = log_dir.rstrip("/") + f"/{LISTENER_NAME}.log"
    # supervisord expands %(name)s in values, so a literal % must be doubled; log file names
    # go through that expansion twice (once when read, once as a log file name)
    command = command.replace("%", "%%")
    stderr_log = stderr_log.replace("%", "%%%%")
    return (
        f"[eventlistener:{LISTENER_NAME}]\n"
        f"command={command}\n"
        "events=PROCESS_STATE\n"
        # events raised while the listener is busy or restarting wait here
        "buffer_size=1024\n"
        # below every program's priority (1-999): starts first, stops last
        "priority=-1\n"
        "autostart=true\n"
        "autorestart=true\n"
        "startsecs=1\n"
        "stopwaitsecs=5\n"
        # stdout is the protocol channel: logging it would only record READY/RESULT lines
        "stdout_logfile=NONE\n"
        "redirect_stderr=false\n"
        f"stderr_logfile={stderr_log}\n"
        "stderr_logfile_maxbytes=1MB\n"
        "stderr_logfile_backups=1\n"
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m hoodyd.programs.eventlistener SOCKET", file=sys.stderr)
        return 2
    return run(args[0], sys.stdin.buffer, sys.stdout.buffer)


if __name__ == "__main__":
    sys.exit(main())
