"""structlog set-up: JSON lines to stderr, or a console renderer when stderr is a TTY.

Under systemd (`JOURNAL_STREAM` names stderr's device and inode) each line starts with its
syslog priority, `<3>` for an error … `<7>` for debug, which journald strips and records
(sd-daemon(3)): `journalctl -p warning` then shows hoodyd's warnings."""

from __future__ import annotations

import logging
import os
import sys
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
