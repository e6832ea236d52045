"""Curl lines that do what a run request would do, runnable as printed.

`hoody-run` repeats the request against the endpoint it came to (`/run`, or `/resolve` for
the public client's beta.10 and later, which answers the command only), picking the chosen
candidate by its stable id (not by a set that expires); `hoody-terminal` sends the planned
command straight to the terminal execute endpoint. Query values are percent-encoded and
every argument is shell-quoted, so no user text reaches the shell unquoted. On TCP the
token is read from `$HOODYD_TOKEN` when the line runs; it is never printed.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from urllib.parse import urlencode

import msgspec

from hoodyd.schemas.run import Selector

RUN_PATH = "/api/v1/run/run"
RESOLVE_PATH = "/api/v1/run/resolve"
EXECUTE_PATH = "/api/v1/terminal/execute"
# selector fields a repeated run carries over: the search, the target and the defer
_CARRIED = (
    "os", "kind", "source", "arch", "tags", "profile", "channel", "version", "variant",
    "publisher", "repo", "release", "asset", "limit", "terminal_id", "display", "origin",
    "defer_pid", "defer_start_time_ticks", "defer_timeout_ms", "defer_poll_ms",
)  # fmt: skip


@dataclass(frozen=True)
class CurlTarget:
    """How this daemon is reached: its Unix socket, or a TCP base URL (needs the token)."""

    socket: str | None = None
    base_url: str | None = None

    def prefix(self) -> list[str]:
        if self.socket is not None:
            return ["curl", "-sS", "--unix-socket", shlex.quote(self.socket)]
        return ["curl", "-sS", "-H", '"Authorization: Bearer $HOODYD_TOKEN"']

    def url(self, path: str, query: list[tuple[str, str]]) -> str:
        base = "http://localhost" if self.socket is not None else (self.base_url or "")
        return f"{base}{path}?{urlencode(query)}" if query else f"{base}{path}"


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(str(item) for item in value)
    return str(value)


def hoody_run(
    target: CurlTarget, selector: Selector, candidate_id: str, *, path: str = RUN_PATH
) -> str:
    query: list[tuple[str, str]] = [("app", selector.app)]
    for name in _CARRIED:
        value = getattr(selector, name)
        if value is not None:
            query.append((name, _text(value)))
    query += [("pick", "id"), ("candidate_id", candidate_id)]
    return " ".join([*target.prefix(), shlex.quote(target.url(path, query))])


def hoody_terminal(target: CurlTarget, selector: Selector, terminal_id: int, command: str) -> str:
    query: list[tuple[str, str]] = [("terminal_id", str(terminal_id))]
    for name in ("defer_pid", "defer_start_time_ticks", "defer_timeout_ms", "defer_poll_ms"):
        value = getattr(selector, name)
        if value is not None:
            query.append((name, str(value)))
    if selector.origin:
        query.append(("origin", selector.origin))
    # wait=false: a GUI app or a deferred command would otherwise hold the call open
    body = msgspec.json.encode({"command": command, "wait": False}).decode()
    return " ".join(
        [
            *target.prefix(),
            "-X",
            "POST",
            shlex.quote(target.url(EXECUTE_PATH, query)),
            "-H",
            shlex.quote("Content-Type: application/json"),
            "-d",
            shlex.quote(body),
        ]
    )
