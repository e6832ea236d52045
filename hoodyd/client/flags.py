"""Reading the flags of `add` and `edit` that become structured fields: `--depends-on` and the
probes. A value that cannot be read is a `UsageError` naming its flag (one line, exit 2); what
only the daemon can judge (a name it does not know, a cycle, a URL off this box) is its 400.

A probe's check is written `port:N`, `port:$PORT`, `http://HOST:PORT/PATH` (or `http:URL`) or
`exec:CMD ARG...`; an exec check is split as a POSIX shell would split it (`shlex.split`, no
expansion of any kind) and runs as that argv, never through a shell.
"""

from __future__ import annotations

import argparse
import shlex
from typing import Any

CONDITIONS = ("started", "ready", "exited_ok")
PORT_VARIABLE = "$PORT"
# flag → (field, lowest, highest), as the daemon's schema bounds them
TIMINGS = {
    "probe_interval_ms": ("interval_ms", 100, 3_600_000),
    "probe_timeout_ms": ("timeout_ms", 10, 300_000),
    "liveness_failure_threshold": ("failure_threshold", 1, 100),
    "liveness_initial_delay_ms": ("initial_delay_ms", 0, 3_600_000),
}
LIVENESS_ONLY = ("liveness_failure_threshold", "liveness_initial_delay_ms")
CHECKS = ("port", "http", "exec")


class UsageError(Exception):
    """The command line itself is wrong (exit 2)."""


def flag_name(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def dependency(text: str) -> dict[str, str]:
    """`NAME` or `NAME:CONDITION` as a `depends_on` item."""
    name, sep, condition = text.rpartition(":")
    if sep and condition not in CONDITIONS and condition.replace("_", "").isalpha():
        raise UsageError(
            f"--depends-on {text}: the condition is one of {', '.join(CONDITIONS)}"
        )
    if not sep or condition not in CONDITIONS:
        name, condition = text, "ready"
    if not name:
        raise UsageError(f"--depends-on needs NAME[:{'|'.join(CONDITIONS)}], got {text!r}")
    return {"program": name, "condition": condition}


def check(flag: str, text: str) -> dict[str, Any]:
    """A probe's check (`port`, `http` or `exec`) from its flag's value."""
    kind, sep, rest = text.partition(":")
    if sep and kind == "port":
        if rest == PORT_VARIABLE:
            return {"port": PORT_VARIABLE}
        if rest.isdigit() and 1 <= int(rest) <= 65535:
            return {"port": int(rest)}
        raise UsageError(f"{flag}: port:N needs a port from 1 to 65535 or $PORT, got {text!r}")
    if sep and kind == "http":
        url = text if rest.startswith("//") else rest
        if not url.startswith("http://"):
            raise UsageError(f"{flag}: http needs a URL such as http://127.0.0.1:8080/health")
        return {"http": url}
    if sep and kind == "exec":
        try:
            argv = shlex.split(rest)
        except ValueError as exc:
            raise UsageError(f"{flag}: exec:{rest!r} cannot be split: {exc}") from None
        if not argv:
            raise UsageError(f"{flag}: exec needs a command, as in exec:'pg_isready -q'")
        return {"exec": argv}
    raise UsageError(
        f"{flag} needs port:N, port:$PORT, http://HOST:PORT/PATH or exec:'CMD ARG...', "
        f"got {text!r}"
    )


def _timing(dest: str, text: str) -> int:
    _field, low, high = TIMINGS[dest]
    if not text.isdigit() or not low <= int(text) <= high:
        raise UsageError(
            f"{flag_name(dest)} needs a whole number from {low} to {high}, got {text!r}"
        )
    return int(text)


def health_fields(args: argparse.Namespace, current: dict[str, Any] | None) -> dict[str, Any]:
    """The `depends_on`, `readiness` and `liveness` fields the flags set. On edit
    (`current`: the program as it is), a timing flag alone changes the existing probe, and a
    new check keeps the existing probe's timings."""
    body: dict[str, Any] = {}
    if args.depends_on is not None:
        body["depends_on"] = [dependency(item) for item in args.depends_on]
    elif getattr(args, "no_depends_on", False):
        body["depends_on"] = None
    timings = {
        dest: _timing(dest, value)
        for dest in TIMINGS
        if (value := getattr(args, dest)) is not None
    }
    touched: list[str] = []
    for kind in ("readiness", "liveness"):
        flag = f"--{kind}"
        given: str | None = getattr(args, kind)
        dropped = bool(getattr(args, f"no_{kind}", False))
        if given is not None and dropped:
            raise UsageError(f"{flag} and --no-{kind} exclude each other")
        if dropped:
            body[kind] = None
            continue
        before = (current or {}).get(kind)
        mine = {
            TIMINGS[dest][0]: value
            for dest, value in timings.items()
            if kind == "liveness" or dest not in LIVENESS_ONLY
        }
        if given is None and not (mine and before):
            continue
        probe = {k: v for k, v in (before or {}).items() if k not in CHECKS}
        probe.update(check(flag, given) if given is not None else _check_of(before or {}))
        probe.update(mine)
        body[kind] = probe
        touched.append(kind)
    for dest in timings:
        needs = ("liveness",) if dest in LIVENESS_ONLY else ("readiness", "liveness")
        if not any(kind in touched for kind in needs):
            which = " or ".join(f"--{kind}" for kind in needs)
            has = "the program has no such probe" if current is not None else "none given"
            raise UsageError(f"{flag_name(dest)} needs a probe to apply to: {which} ({has})")
    return body


def _check_of(probe: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in probe.items() if k in CHECKS}
