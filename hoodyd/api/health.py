"""`GET /api/v1/{area}/health`: the contract's 9-field health object, the one route of each
area open without a token (`hoodyd.api.routes`)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import psutil
from aiohttp import web

import hoodyd
from hoodyd.api.encoding import json_response

_PROCESS = psutil.Process()
# RSS and open fds, sampled at most every half second: counting the fds lists /proc/self/fd,
# which costs more than the rest of the answer once hundreds of clients are connected
_SAMPLE_S = 0.5
_sampled: dict[str, float] = {"at": -_SAMPLE_S, "rss": 0, "fds": 0}


def _usage() -> tuple[int, int]:
    now = time.monotonic()
    if now - _sampled["at"] >= _SAMPLE_S:
        with _PROCESS.oneshot():
            _sampled.update(at=now, rss=_PROCESS.memory_info().rss, fds=_PROCESS.num_fds())
    return int(_sampled["rss"]), int(_sampled["fds"])


def _rfc3339(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z")


def _built() -> str | None:
    for candidate in (sys.argv[0], hoodyd.__file__):
        try:
            return _rfc3339(Path(candidate).stat().st_mtime)
        except (OSError, TypeError):
            continue
    return None


def health_handler(service: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The health handler of one area, reporting `service` as its name."""
    built = _built()
    started = _rfc3339(_PROCESS.create_time())

    async def health(request: web.Request) -> web.Response:
        rss, fds = _usage()
        return json_response(
            {
                "status": "ok",
                "service": service,
                "built": built,
                "started": started,
                "memory": {"rss": rss, "heap": None},
                "fds": fds,
                "pid": os.getpid(),
                "ip": request.remote or "unix",
                "userAgent": request.headers.get("User-Agent"),
            }
        )

    return health
