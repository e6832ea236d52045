"""Query-string contracts, one Struct per endpoint (the run area's selectors are `Selector`).

Each declares the parameters its endpoint takes, with their types and bounds; the edge decodes
a request's query into it (`hoodyd.api.decoding.decode_query`), so an unknown parameter, a
repeated one or a value out of bounds is refused before a handler runs. Every endpoint accepts
`origin` (a caller's tag for the logs).
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from msgspec import Meta, Struct

from hoodyd.schemas.terminal import DeferPid, DeferPollMs, DeferTicks, DeferTimeoutMs

Port = Annotated[int, Meta(ge=1, le=65535)]
LogLines = Annotated[int, Meta(ge=1, le=10_000)]
HistoryLimit = Annotated[int, Meta(ge=0, le=1000)]
Stream = Literal["stdout", "stderr"]


class _Query(Struct, kw_only=True, forbid_unknown_fields=True):
    origin: str | None = None
    # list parameters that may repeat but are never comma-joined (their values hold commas)
    repeat_only: ClassVar[frozenset[str]] = frozenset()


# --- daemon ----------------------------------------------------------------------------------


class ProgramListQuery(_Query, kw_only=True, forbid_unknown_fields=True):
    hoody_kit: bool | None = None
    lazy_load: bool | None = None
    enabled: bool | None = None
    boot: bool | None = None
    port: Port | None = None
    port_from: Port | None = None
    port_to: Port | None = None
    include_status: bool = False
    include_stats: bool = False


class ProgramLogsQuery(_Query, kw_only=True, forbid_unknown_fields=True):
    type: Stream = "stdout"
    lines: LogLines = 100
    port: Port | None = None
    # extension: answer text/plain, the last `lines` lines and then new ones as they come
    follow: bool = False


class QuickLogsQuery(_Query, kw_only=True, forbid_unknown_fields=True):
    type: Stream = "stdout"
    lines: LogLines = 100


class StatusQuery(_Query, kw_only=True, forbid_unknown_fields=True):
    port: Port | None = None
    include_stats: bool = False


# --- terminal --------------------------------------------------------------------------------


class HistoryQuery(_Query, kw_only=True, forbid_unknown_fields=True):
    # three names of one parameter (the SDK sends history_limit, older clients the others)
    history_limit: HistoryLimit | None = None
    history_lines: HistoryLimit | None = None
    limit: HistoryLimit | None = None
    terminal_id: str | None = None  # GET /history?terminal_id=N only

    def limit_or(self, default: int) -> int:
        for value in (self.history_limit, self.history_lines, self.limit):
            if value is not None:
                return value
        return default


class SessionsQuery(_Query, kw_only=True, forbid_unknown_fields=True):
    history_limit: HistoryLimit | None = None
    history_lines: HistoryLimit | None = None


class OutputQuery(_Query, kw_only=True, forbid_unknown_fields=True):
    offset: Annotated[int, Meta(ge=0)] | None = None
    limit: Annotated[int, Meta(ge=1)] | None = None  # capped by the session's buffer size
    timeout_ms: Annotated[int, Meta(ge=0, le=60_000)] = 0
    encoding: Literal["utf-8", "base64"] = "utf-8"


class ExecuteQuery(_Query, kw_only=True, forbid_unknown_fields=True):
    terminal_id: str | None = None  # 1-65535; "0" and "" mean absent (CONTRACT.md §4.3)
    ephemeral: bool = False
    wait: bool | None = None
    reset: bool = False
    cwd: str | None = None
    cwd_auto_create: bool = False
    shell: str | None = None
    user: str | None = None
    env: list[str] = []
    display: str | None = None
    skip_display_wait: bool = False
    # the contract reads anything malformed or not positive as 10 (seconds), so a string
    display_wait_timeout: str | None = None
    defer_pid: DeferPid | None = None
    defer_start_time_ticks: DeferTicks | None = None
    defer_timeout_ms: DeferTimeoutMs | None = None
    defer_poll_ms: DeferPollMs | None = None

    repeat_only: ClassVar[frozenset[str]] = frozenset({"env"})


class TerminalQuery(_Query, kw_only=True, forbid_unknown_fields=True):
    """A route that names one terminal (`terminal_id` in the query, CONTRACT-terminal-
    automation.md §1)."""

    terminal_id: str | None = None


class NewSessionQuery(_Query, kw_only=True, forbid_unknown_fields=True):
    """The options of a terminal created on first use (ignored when it exists)."""

    shell: str | None = None
    cwd: str | None = None
    user: str | None = None
    env: list[str] = []
    display: str | None = None

    repeat_only: ClassVar[frozenset[str]] = frozenset({"env"})


class InputQuery(NewSessionQuery, kw_only=True, forbid_unknown_fields=True):
    """write, press, paste: the terminal (`terminal_id` in the query) is created on first use
    with these options."""

    terminal_id: str | None = None


class AttachQuery(NewSessionQuery, kw_only=True, forbid_unknown_fields=True):
    """`/attach/{terminal_id}`: the terminal in the path is created on first use with these
    options."""

    replay: Annotated[int, Meta(ge=0)] = 65536


ScrollOffset = Annotated[int, Meta(ge=0, le=1_000_000)]
FindScope = Literal["screen", "scrollback", "all"]


class SnapshotQuery(TerminalQuery, kw_only=True, forbid_unknown_fields=True):
    include_colors: bool = False
    include_highlights: bool = True
    scroll_offset: ScrollOffset = 0


class FindQuery(TerminalQuery, kw_only=True, forbid_unknown_fields=True):
    pattern: str | None = None
    scope: FindScope = "screen"
    limit: Annotated[int, Meta(ge=1, le=1000)] = 100
    case_insensitive: bool = False
    scroll_offset: ScrollOffset = 0


class RawQuery(TerminalQuery, kw_only=True, forbid_unknown_fields=True):
    format: Literal["download", "text", "html"] = "download"
    tail: Annotated[int, Meta(ge=1, le=1_000_000)] | None = None


class ScreenshotQuery(TerminalQuery, kw_only=True, forbid_unknown_fields=True):
    format: str | None = None
    foreground: str | None = None
    background: str | None = None
    fontsize: str | None = None
    save: bool | None = None


class DropQuery(TerminalQuery, kw_only=True, forbid_unknown_fields=True):
    drop: str | None = None
    token: str | None = None
    path: str | None = None
    offset: str | None = None


class WsQuery(InputQuery, kw_only=True, forbid_unknown_fields=True):
    """`/ws` (CONTRACT-terminal-automation.md §8); SSH, agent and PID attach are refused."""

    readonly: bool = False
    cwd_auto_create: bool = False
    # a command (base64) typed into the shell once it is ready
    cmd: str | None = None
    token: str | None = None
    welcome: bool | None = None
    ssh_host: str | None = None
    ssh_user: str | None = None
    ssh_port: str | None = None
    ssh_password: str | None = None
    ssh_key: str | None = None
    socks5_host: str | None = None
    socks5_port: str | None = None
    socks5_user: str | None = None
    socks5_pass: str | None = None
    pid: str | None = None
    agent: bool | None = None
    onboarding: bool | None = None


# --- run -------------------------------------------------------------------------------------


class JobQuery(_Query, kw_only=True, forbid_unknown_fields=True):
    wait: Literal["done"] | None = None
    timeout_ms: Annotated[int, Meta(ge=0, le=120_000)] = 0
