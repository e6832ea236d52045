"""Reading the last lines of a program's (or a quick-start's) stdout or stderr log file, and
following it as it grows."""

from __future__ import annotations

import asyncio
import os
from collections import deque
from collections.abc import AsyncGenerator
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
    return tail_with_end(path, lines, block)[0]


# how often a followed file is looked at for new bytes
FOLLOW_INTERVAL_S = 0.2
FOLLOW_CHUNK = 65536


async def follow(path: Path, lines: int) -> AsyncGenerator[bytes, None]:
    """The last `lines` lines, then every byte appended from then on, for as long as the
    caller iterates; `b""` after each look that found nothing new, so that the caller can
    decide whether to go on. A file that shrinks (rotated by supervisord) is read again from
    its start; a file that does not exist yet is waited for."""
    text, offset = await asyncio.to_thread(tail_with_end, path, lines)
    if text:
        yield text.encode()
    while True:
        chunk, offset = await asyncio.to_thread(_read_from, path, offset)
        if not chunk:
            await asyncio.sleep(FOLLOW_INTERVAL_S)
        yield chunk


def _read_from(path: Path, offset: int) -> tuple[bytes, int]:
    try:
        with path.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size < offset:
                offset = 0
            handle.seek(offset)
            chunk = handle.read(FOLLOW_CHUNK)
    except FileNotFoundError:
        return b"", 0
    return chunk, offset + len(chunk)


def tail_with_end(path: Path, lines: int, block: int = 65536) -> tuple[str, int]:
    """The last `lines` lines of a file and the offset they end at."""
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
        return "", 0
    data = b"".join(chunks)
    kept = data.splitlines(keepends=True)[-lines:]
    return b"".join(kept).decode("utf-8", errors="replace"), end
