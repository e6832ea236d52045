"""What the command line says when the daemon refuses: the daemon's error speaks of its API
(`Port parameter required`, `pick=id`, `POST /api/v1/terminal/create`); the person typing
needs the verb or flag that fixes it. The daemon's `reason` picks the sentence here; the
daemon's own message stays as it is for API callers (and is printed when no sentence fits).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from hoodyd.client.http import Refused

# a few lines of a failed start's stderr are shown; `hoodyd logs` has the rest
STDERR_TAIL_LINES = 8


def _name(args: argparse.Namespace, program: dict[str, Any] | None) -> str:
    if program is not None:
        return str(program["name"])
    refs = getattr(args, "programs", None) or [getattr(args, "program", None) or "NAME"]
    return str(refs[0])


def _terminal(args: argparse.Namespace) -> str:
    value = getattr(args, "terminal_id", None) or getattr(args, "terminal", None)
    return "N" if value is None else str(value)


Explainer = Callable[[Refused, argparse.Namespace, str], str]


def _start_failed(exc: Refused, args: argparse.Namespace, name: str) -> str:
    body = exc.body if isinstance(exc.body, dict) else {}
    lines = [exc.message]
    tail = [line for line in str(body.get("stderr_tail") or "").splitlines() if line.strip()]
    if tail:
        lines.append(f"last lines of its stderr ({min(len(tail), STDERR_TAIL_LINES)}):")
        lines.extend(f"  {line}" for line in tail[-STDERR_TAIL_LINES:])
    port = f" --port {args.port}" if getattr(args, "port", None) is not None else ""
    lines.append(
        f"next: `hoodyd logs {name}{port} --stderr -n 50` for more; fix the command with "
        f"`hoodyd edit {name} -- CMD [ARG]...`, then `hoodyd start {name}{port}`"
    )
    return "\n".join(lines)


def _port_required(exc: Refused, args: argparse.Namespace, name: str) -> str:
    return f"{name} is a port-range program: give --port P (or --all for every port)"


def _pick(exc: Refused, args: argparse.Namespace, name: str) -> str:
    query = getattr(args, "query", "QUERY")
    if getattr(args, "candidate", None):
        return (
            f"--id {args.candidate} is not among the candidates for {query!r}; "
            f"`hoodyd search {query}` lists their ids"
        )
    return f"pick a candidate with --first, --pick N or --id CANDIDATE (`hoodyd search {query}`)"


def _depended_on(exc: Refused, args: argparse.Namespace, name: str) -> str:
    body = exc.body if isinstance(exc.body, dict) else {}
    dependents = ", ".join(str(d) for d in body.get("dependents") or []) or "others"
    if getattr(args, "verb", None) == "rm":
        return (
            f"{name} is a dependency of {dependents}; `hoodyd rm {name} --force` removes it "
            "anyway (their --depends-on then names a missing program)"
        )
    if getattr(args, "name", None) and getattr(args, "verb", None) == "edit":
        return (
            f"{name} cannot be renamed while {dependents} depend on it; change their "
            "--depends-on first (`hoodyd edit NAME --depends-on ...`)"
        )
    return exc.message


def _probe(exc: Refused, args: argparse.Namespace, name: str) -> str:
    """The daemon names a probe's fields; the command line names the flags that set them."""
    kind, sep, rest = exc.message.partition(":")
    if not sep or kind not in ("readiness", "liveness"):
        kind, rest = exc.message.split(" ", 1)[0], exc.message.split(" ", 1)[-1]
        if kind not in ("readiness", "liveness"):
            return exc.message
    for field, flag in (
        ("interval_ms", "--probe-interval-ms"),
        ("timeout_ms", "--probe-timeout-ms"),
        ("failure_threshold", "--liveness-failure-threshold"),
        ("initial_delay_ms", "--liveness-initial-delay-ms"),
        ("port_range", "--port-range"),
    ):
        rest = rest.replace(field, flag)
    return f"--{kind}: {rest.strip()}"


def _dependency_failed(exc: Refused, args: argparse.Namespace, name: str) -> str:
    body = exc.body if isinstance(exc.body, dict) else {}
    dependency = body.get("dependency")
    if not dependency:
        return exc.message
    return (
        f"{exc.message}; see `hoodyd status {dependency}` and "
        f"`hoodyd logs {dependency} --stderr`"
    )


_BY_REASON: dict[str, Explainer] = {
    "PROGRAM_DISABLED": lambda exc, args, name: (
        f"{name} is disabled; enable it first with `hoodyd enable {name}`"
    ),
    "PROGRAM_NOT_FOUND": lambda exc, args, name: (
        f"{exc.message} (`hoodyd status` lists the programs)"
    ),
    "PORT_REQUIRED": _port_required,
    "PORT_OUT_OF_RANGE": lambda exc, args, name: (
        f"--port {getattr(args, 'port', '?')} is outside {name}'s port range "
        "(`hoodyd status` shows it)"
    ),
    "PORT_RANGE": lambda exc, args, name: f"--port-range: {exc.message}",
    "INVALID_PORT_RANGE": lambda exc, args, name: f"--port-range: {exc.message}",
    "PORT_RANGE_OVERLAP": lambda exc, args, name: f"--port-range: {exc.message}",
    "PORT_PARAM_WITHOUT_RANGE": lambda exc, args, name: "--port-param needs --port-range",
    "IDLE_STOP_WITHOUT_RANGE": lambda exc, args, name: "--idle-stop-after needs --port-range",
    "LAZY_LOAD_WITH_BOOT": lambda exc, args, name: "--lazy and --boot exclude each other",
    "NAME_IN_USE": lambda exc, args, name: (
        f"{exc.message}; change that program with `hoodyd edit NAME` or pick another name"
    ),
    "ALREADY_ADDED": lambda exc, args, name: (
        f"{exc.message}; change that program with `hoodyd edit NAME` or pick another name"
    ),
    "START_FAILED": _start_failed,
    "UNKNOWN_DEPENDENCY": lambda exc, args, name: (
        "--depends-on: "
        + exc.message.replace("depends_on names an unknown program:", "no program named")
        + " (`hoodyd status` lists the programs)"
    ),
    "DEPENDENCY_CYCLE": lambda exc, args, name: (
        "--depends-on: " + exc.message.removeprefix("depends_on ")
    ),
    "DEPENDED_ON": _depended_on,
    "DEPENDENCY_FAILED": _dependency_failed,
    "INVALID_PROBE": _probe,
    "WAIT_TIMEOUT": lambda exc, args, name: (
        f"{exc.message}; wait longer with --timeout S (up to 300), or see "
        f"`hoodyd logs {name} --stderr`"
    ),
    "INVALID_PICK": _pick,
    "TERMINAL_ID_REQUIRED": lambda exc, args, name: "give the terminal's number N",
    "TERMINAL_NOT_FOUND": lambda exc, args, name: (
        f"no terminal {_terminal(args)}; `hoodyd term new {_terminal(args)}` creates it "
        "(`hoodyd term ls` lists them)"
    ),
    "RESERVED_TERMINAL_ID": lambda exc, args, name: (
        f"terminal {_terminal(args)}: numbers 40000-65535 are reserved for the daemon's "
        "short-lived sessions; use 1-39999 (`hoodyd term new` picks a free one)"
    ),
    "SHELL_EXITED": lambda exc, args, name: (
        f"the shell of terminal {_terminal(args)} has exited; start a new one with "
        f"`hoodyd term kill {_terminal(args)}` then `hoodyd term new {_terminal(args)}`"
    ),
    "NO_FREE_TERMINAL_ID": lambda exc, args, name: (
        "terminals 1-39999 are all in use; end some with `hoodyd term kill N`"
    ),
    "ID_IN_USE": lambda exc, args, name: (
        f"terminal {_terminal(args)} exists; `hoodyd term new` picks a free number"
    ),
    "PEER_NOT_ALLOWED": lambda exc, args, name: (
        f"{exc.message}; this daemon admits only the uids in its server.allowed_uids and "
        "the groups in server.allowed_gids: ask its owner to add yours"
    ),
    "BAD_TOKEN": lambda exc, args, name: (
        f"{exc.message}; set HOODYD_TOKEN to the daemon's token (server.token_file, or STATE/token)"
    ),
    "UNAUTHORIZED": lambda exc, args, name: (
        f"{exc.message}; set HOODYD_TOKEN to the daemon's token (server.token_file, or STATE/token)"
    ),
    "INVALID_CWD": lambda exc, args, name: f"--cwd: {exc.message}",
    "CWD_NOT_CREATED": lambda exc, args, name: f"--cwd: {exc.message}",
    "INVALID_ENV": lambda exc, args, name: f"--env: {exc.message}",
    "INVALID_USER": lambda exc, args, name: f"--user: {exc.message}",
    "UNKNOWN_USER": lambda exc, args, name: f"--user: {exc.message}",
    "UNSUPPORTED_SHELL": lambda exc, args, name: f"--shell: {exc.message}",
    "SOURCE_NOT_FOUND": lambda exc, args, name: f"--source: {exc.message}",
}


def _requirements(exc: Refused, args: argparse.Namespace) -> str | None:
    """`run` refused for what is missing: each requirement's message, with the step the
    command line takes for a missing terminal (the daemon's own steps name API calls)."""
    body = exc.body if isinstance(exc.body, dict) else {}
    missing = body.get("missing_requirements")
    if not isinstance(missing, list) or not missing:
        return None
    lines = [exc.message.split(": ", 1)[0] + ":"]
    for item in missing:
        if not isinstance(item, dict):
            continue
        text = str(item.get("message", ""))
        resolution = str(item.get("resolution") or "")
        if item.get("kind") == "terminal":
            number = item.get("name", _terminal(args))
            text += f" (`hoodyd term new {number}` creates it)"
        elif resolution and "/api/" not in resolution and "=" not in resolution:
            text += f" ({resolution})"
        lines.append(f"  {text}")
    return "\n".join(lines)


def explain(exc: Refused, args: argparse.Namespace, program: dict[str, Any] | None = None) -> str:
    """The line(s) to print for a refusal, in the command line's own terms."""
    reason = exc.reason or ""
    if reason == "REQUIREMENTS_MISSING":
        text = _requirements(exc, args)
        if text is not None:
            return text
    explainer = _BY_REASON.get(reason)
    if explainer is None:
        return exc.message
    return explainer(exc, args, _name(args, program))
