"""What makes a probe valid: exactly one check, and one that can be run (a loopback http URL,
a non-empty argv, a port, `$PORT` only on a port-range program)."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from msgspec import UNSET

from hoodyd.errors import InvalidRequest, Reason
from hoodyd.schemas.daemon import Probe, Program

PORT_VARIABLE = "$PORT"
LOOPBACK_NAMES = frozenset({"localhost"})


def check_probe(probe: Probe | None, kind: str, program: Program) -> None:
    """A probe has exactly one check, and that check can be run: a loopback http URL, a
    non-empty argv, a port (`$PORT` only on a port-range program). 400 otherwise."""
    if probe is None:
        return
    given = [name for name in ("port", "http", "exec") if getattr(probe, name) is not UNSET]
    if len(given) != 1:
        raise _bad(f"{kind} needs exactly one of port, http, exec (got {given or 'none'})")
    if probe.timeout_ms > probe.interval_ms:
        raise _bad(f"{kind}: timeout_ms must not exceed interval_ms")
    if isinstance(probe.port, str):
        if probe.port != PORT_VARIABLE:
            raise _bad(f'{kind}: port is a number or "$PORT"')
        if program.port_range is None:
            raise _bad(f'{kind}: "$PORT" needs a port_range')
    elif isinstance(probe.port, int) and not 1 <= probe.port <= 65535:
        raise _bad(f"{kind}: port must be from 1 to 65535")
    if isinstance(probe.http, str):
        _check_url(probe.http, kind, program)
    if isinstance(probe.exec, list):
        if not probe.exec or not probe.exec[0]:
            raise _bad(f"{kind}: exec needs a program to run")
        if any("\x00" in arg for arg in probe.exec):
            raise _bad(f"{kind}: exec arguments must not contain NUL")


def _check_url(url: str, kind: str, program: Program) -> None:
    if PORT_VARIABLE in url and program.port_range is None:
        raise _bad(f'{kind}: "$PORT" needs a port_range')
    parts = urlsplit(url.replace(PORT_VARIABLE, "1"))
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "http" or not parts.hostname or port is None:
        raise _bad(f"{kind}: http must be an http:// URL with a host and a port")
    if not _loopback(parts.hostname):
        raise _bad(f"{kind}: http probes reach this box only (127.0.0.1, ::1, localhost)")
    if any(c in url for c in "\r\n\x00 "):
        raise _bad(f"{kind}: http URL must not contain spaces or control characters")


def _loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bad(message: str) -> InvalidRequest:
    return InvalidRequest(message, reason=Reason.INVALID_PROBE)
