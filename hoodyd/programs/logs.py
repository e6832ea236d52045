"""Reading the last lines of a program's (or a quick-start's) stdout or stderr log file."""

from __future__ import annotations

import asyncio
import os
from collections import deque
from pathlib import Path

from hoodyd.errors import Conflict, Reason
from hoodyd.programs import conf
from hoodyd.schemas.daemon import LogTail, Program


async def read_log(
    program: Program,
    *,
    stream: str,
    lines: int,
    port: int | None,
    log_dir: Path,
    folder: str | None = None,
) -> LogTail:
    if not program.logs_enabled:
        raise Conflict("Logs are disabled for this program", reason=Reason.LOGS_DISABLED)
    path = conf.log_file(program, stream, log_dir, port, folder=folder)
    text = await asyncio.to_thread(tail_lines, path, lines)
    return LogTail(logs=text, type=stream, lines=lines, log_file=str(path))


def tail_lines(path: Path, lines: int, block: int = 65536) -> str:
    """The last `lines` lines of a file, reading backwards in blocks."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            end = handle.tell()
            chunks: deque[bytes] = deque()
            newlines = 0
            position = end
            while position > 0 and newlines <= lines:
                step = min(block, position)
                position -= step
                handle.seek(position)
                chunk = handle.read(step)
                chunks.appendleft(chunk)
                newlines += chunk.count(b"\n")
    except FileNotFoundError:
        return ""
    data = b"".join(chunks)
    kept = data.splitlines(keepends=True)[-lines:]
    return b"".join(kept).decode("utf-8", errors="replace")
