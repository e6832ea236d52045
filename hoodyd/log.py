"""structlog set-up: JSON lines to stderr, or a console renderer when stderr is a TTY.

Under systemd (`JOURNAL_STREAM` names stderr's device and inode) each line starts with its
syslog priority, `<3>` for an error … `<7>` for debug, which journald strips and records
(sd-daemon(3)): `journalctl -p warning` then shows hoodyd's warnings.

What the libraries underneath log through the standard `logging` module (aiohttp, asyncio)
becomes structlog events too, at a bounded rate and without the message's arguments or the
exception's text: those can quote a request's raw bytes (a token in a query or a header).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

import msgspec
import structlog

_encoder = msgspec.json.Encoder(enc_hook=repr)
# the lowest level `configure` lets through; until it runs every event passes, as it does with
# structlog's own defaults (and with `capture_logs` in tests)
_threshold = logging.NOTSET


def enabled(level: int) -> bool:
    """Whether an event at `level` (a `logging` level number) is logged at all, so a hot path
    can skip building an event the configured filter would drop."""
    return level >= _threshold


class Throttle:
    """A token bucket for log lines: `burst` at once, then `per_second`; `admit` returns how
    many were dropped since the last line it let through, or None to drop this one."""

    __slots__ = ("_burst", "_dropped", "_rate", "_stamp", "_tokens")

    def __init__(self, burst: int, per_second: float) -> None:
        self._burst = float(burst)
        self._rate = per_second
        self._tokens = float(burst)
        self._stamp = time.monotonic()
        self._dropped = 0

    def admit(self) -> int | None:
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        if self._tokens < 1:
            self._dropped += 1
            return None
        self._tokens -= 1
        dropped, self._dropped = self._dropped, 0
        return dropped


def safe_text(text: str, limit: int = 256) -> str:
    """`text` cut to `limit` characters with every non-printable character escaped, fit
    for a log line read on a terminal."""
    text = text[:limit]
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def safe_path(path: str) -> str:
    """A request path for a log line: nothing from a `?` on (a decoded `%3F` included), and
    printable."""
    return safe_text(path.partition("?")[0])


class _LibraryLogs(logging.Handler):
    """Records of the `logging` loggers hoodyd's libraries use, as structlog events: the
    message template's first line (never its arguments), the exception's type (never its
    text), at most a few lines per second for each template."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self._throttles: dict[tuple[str, str], Throttle] = {}

    def emit(self, record: logging.LogRecord) -> None:
        template = str(record.msg).split("\n", 1)[0][:200]
        throttle = self._throttles.get((record.name, template))
        if throttle is None:
            if len(self._throttles) > 1000:
                self._throttles.clear()
            throttle = self._throttles[(record.name, template)] = Throttle(5, 0.5)
        dropped = throttle.admit()
        if dropped is None:
            return
        fields: dict[str, Any] = {"logger": record.name, "detail": template}
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            fields["error"] = type(exc).__name__
            if isinstance(exc, OSError) and exc.errno is not None:
                fields["errno"] = exc.errno
        if dropped:
            fields["suppressed"] = dropped
        level = record.levelname.lower()
        logger = structlog.get_logger()
        method = getattr(logger, level if level in PRIORITIES else "warning")
        method("library_log", **fields)


_LIBRARY_LOGGERS = ("aiohttp", "asyncio")


def capture_library_logs() -> None:
    """Send the aiohttp and asyncio loggers through `_LibraryLogs` (once per process)."""
    for name in _LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(h, _LibraryLogs) for h in logger.handlers):
            logger.addHandler(_LibraryLogs())
        logger.propagate = False


def _dumps(event: object, **_: object) -> str:
    return _encoder.encode(event).decode()


# structlog level name -> syslog priority
PRIORITIES = {
    "debug": 7,
    "info": 6,
    "warning": 4,
    "warn": 4,
    "error": 3,
    "exception": 3,
    "critical": 2,
}


def stderr_is_journal(environ: dict[str, str] | None = None) -> bool:
    """True when stderr is the stream systemd connected to journald."""
    value = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    device, sep, inode = value.partition(":")
    if not sep:
        return False
    try:
        stat = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    return f"{stat.st_dev}:{stat.st_ino}" == f"{device}:{inode}"


def with_priority(renderer: structlog.types.Processor) -> structlog.types.Processor:
    """The renderer's line, prefixed with the event's syslog priority."""

    def render(logger: Any, name: str, event: Any) -> Any:
        priority = PRIORITIES.get(str(event.get("level", "info")), 6)
        line = renderer(logger, name, event)
        text = line.decode() if isinstance(line, bytes | bytearray) else str(line)
        return f"<{priority}>{text}"

    return render


def configure(level: str = "info", fmt: str = "auto", *, journal: bool | None = None) -> None:
    """Configure structlog once for the process.

    `fmt` is `json`, `console` or `auto` (console on a TTY, JSON otherwise); `journal`
    (default: whether stderr is journald's stream) prefixes each line with its priority.
    """
    global _threshold
    use_console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    renderer: structlog.types.Processor = (
        structlog.dev.ConsoleRenderer()
        if use_console
        else structlog.processors.JSONRenderer(serializer=_dumps)
    )
    if stderr_is_journal() if journal is None else journal:
        renderer = with_priority(renderer)
    _threshold = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_threshold),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )
    capture_library_logs()
