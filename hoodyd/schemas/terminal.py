"""Wire contracts of the Terminal API (CONTRACT.md §4) and the service's request types.

The SDK leaves terminal responses untyped; the field names here follow the contract's
known fields (`command_id`, `terminal_id`, `status`, `exit_code`, `stdout`, `stderr`,
`timed_out`) and add hoodyd's own beside them.
"""

from __future__ import annotations

from typing import Annotated, Literal, Protocol

import msgspec
from msgspec import Meta, Struct

from hoodyd.errors import InvalidRequest, Reason

TerminalId = Annotated[int, Meta(ge=1, le=65535)]
ScreenSize = Annotated[int, Meta(ge=1, le=1000)]
CommandStatus = Literal["pending", "queued", "running", "completed", "failed", "timed_out"]
SessionState = Literal["running", "exited"]
DeferMethod = Literal["pidfd", "poll"]
DeferOutcomeName = Literal["waiting", "exited", "gone", "reused", "timed_out"]
OutputEncoding = Literal["utf-8", "base64"]

EPHEMERAL_FIRST = 40000
TERMINAL_ID_MAX = 65535


class CreateRequest(Struct, forbid_unknown_fields=True, kw_only=True):
    """Body of `POST /create` (CONTRACT.md §4.2); `env` is hoodyd's addition."""

    terminal_id: str | int | None = None
    ephemeral: bool = False
    display: str | int | None = None
    shell: str | None = None
    user: str | None = None
    cwd: str | None = None
    env: dict[str, str] | None = None
    startup_script: str | None = None
    welcome: bool = False
    debug: bool = False
    desktop: bool = False
    desktop_env: str | None = None
    cols: ScreenSize = 80
    rows: ScreenSize = 24
    wait_until_display: bool | None = None
    wait_timeout: Annotated[float, Meta(ge=0, le=3600)] = 300
    ssh_host: str | None = None
    ssh_user: str | None = None
    ssh_port: str | int | None = None
    ssh_password: str | None = None
    ssh_key: str | None = None
    socks5_host: str | None = None
    socks5_port: str | int | None = None
    socks5_user: str | None = None
    socks5_pass: str | None = None


class ExecuteBody(Struct, forbid_unknown_fields=True, kw_only=True):
    """Body of `POST /execute` (CONTRACT.md §4.4)."""

    command: str | None = None
    # the old field name; answered with the contract's `Missing 'command' field`
    cmd: str | None = None
    id: str | int | None = None
    timeout: Annotated[float, Meta(ge=0)] = 0
    wait: bool | None = None
    cwd: str | None = None
    env: dict[str, str] | None = None
    # the query names the terminal; a body terminal_id is accepted and ignored
    terminal_id: str | int | None = None


class ResizeRequest(Struct, forbid_unknown_fields=True):
    cols: ScreenSize
    rows: ScreenSize


class SessionOptions(Struct, frozen=True, kw_only=True):
    """How to start a session's shell (validated)."""

    shell: str | None = None
    cwd: str | None = None
    env: dict[str, str] = msgspec.field(default_factory=dict)
    display: str | None = None
    cols: int = 80
    rows: int = 24
    startup_script: str | None = None
    ephemeral: bool = False
    # the account the shell runs as (validated: another user only when hoodyd is root)
    user: str | None = None


# Bounds of the defer fields, the one set both the terminal and the run area decode with
# (`hoodyd.schemas.queries.ExecuteQuery`, `hoodyd.schemas.run.Selector`).
PID_MAX = 4_194_304  # the kernel's upper bound for /proc/sys/kernel/pid_max
DeferPid = Annotated[int, Meta(ge=1, le=PID_MAX)]
# clock ticks since boot of the process (field 22 of /proc/PID/stat), as decimal text
DeferTicks = Annotated[str, Meta(pattern=r"^[0-9]{1,20}$")]
DeferTimeoutMs = Annotated[int, Meta(ge=1, le=86_400_000)]
DeferPollMs = Annotated[int, Meta(ge=10, le=60_000)]
DEFER_TIMEOUT_MS = 60_000
DEFER_POLL_MS = 50
DEFER_FIELDS = ("defer_pid", "defer_start_time_ticks", "defer_timeout_ms", "defer_poll_ms")


class DeferRequest(Protocol):
    """The `defer_*` fields of a decoded request (a terminal query, a run Selector), each
    declared with the bound types above."""

    defer_pid: int | None
    defer_start_time_ticks: str | None
    defer_timeout_ms: int | None
    defer_poll_ms: int | None


class DeferSpec(Struct, frozen=True, kw_only=True):
    pid: DeferPid
    start_time_ticks: int | None = None
    timeout_ms: DeferTimeoutMs = DEFER_TIMEOUT_MS
    poll_ms: DeferPollMs = DEFER_POLL_MS


def defer_spec(request: DeferRequest) -> DeferSpec | None:
    """The defer a request asked for; `None` without `defer_pid`. Another defer field without
    `defer_pid` is a 400."""
    if request.defer_pid is None:
        given = [name for name in DEFER_FIELDS if getattr(request, name) is not None]
        if given:
            raise InvalidRequest(
                f"{', '.join(given)} needs defer_pid", reason=Reason.DEFER_PID_REQUIRED
            )
        return None
    ticks = request.defer_start_time_ticks
    timeout_ms, poll_ms = request.defer_timeout_ms, request.defer_poll_ms
    return DeferSpec(
        pid=request.defer_pid,
        start_time_ticks=None if ticks is None else int(ticks),
        timeout_ms=DEFER_TIMEOUT_MS if timeout_ms is None else timeout_ms,
        poll_ms=DEFER_POLL_MS if poll_ms is None else poll_ms,
    )


class ExecuteRequest(Struct, frozen=True, kw_only=True):
    """An execute call after the edge has decoded query and body (validated there)."""

    terminal_id: int | None
    command: str
    ephemeral: bool = False
    command_id: int | None = None
    wait: bool = True
    timeout: float = 0
    cwd: str | None = None
    env: dict[str, str] = msgspec.field(default_factory=dict)
    defer: DeferSpec | None = None
    reset: bool = False
    cwd_auto_create: bool = False
    display_wait_timeout: float | None = None
    session: SessionOptions = msgspec.field(default_factory=SessionOptions)
    # who asked (a launcher, the run API): kept on the command for observability
    origin: str | None = None


class DeferInfo(Struct, kw_only=True):
    pid: int
    start_time_ticks: int | None
    timeout_ms: int
    poll_ms: int
    method: DeferMethod
    outcome: DeferOutcomeName


class CommandResult(Struct, kw_only=True):
    success: bool = True
    command_id: str
    terminal_id: str
    command: str
    status: CommandStatus
    exit_code: int | None
    # the PTY merges the streams: everything the command printed is in stdout
    stdout: str
    stderr: str = ""
    timed_out: bool = False
    output_truncated: bool = False
    accepted_at: str
    started_at: str | None = None
    finished_at: str | None = None
    duration_ms: float | None = None
    defer: DeferInfo | None = None
    error: str | None = None
    origin: str | None = None


class SessionInfo(Struct, kw_only=True):
    id: int
    terminal_id: str
    state: SessionState
    shell: str
    shell_path: str
    pid: int
    cwd: str
    display: str | None
    cols: int
    rows: int
    ephemeral: bool
    shell_ready: bool
    busy: bool
    queued: int
    clients: int
    exit_code: int | None
    created_at: str
    last_activity: str
    output_offset: int
    command_history: list[str]
    # the program supervisord runs in this terminal (`terminal_id` of a program)
    program_id: int | None = None
    # the account the shell runs as
    user: str | None = None


class SessionsResponse(Struct, kw_only=True):
    success: bool = True
    data: list[SessionInfo]
    total: int


class CreateResponse(Struct, kw_only=True):
    success: bool = True
    status: Literal["ok"] = "ok"
    terminal_id: str
    created: bool
    shell_ready: bool
    display_ready: bool | None = None
    session: SessionInfo


class DeleteResponse(Struct, kw_only=True):
    success: bool = True
    terminal_id: str
    deleted: bool = True
    exit_code: int | None


class HistoryResponse(Struct, kw_only=True):
    success: bool = True
    terminal_id: str
    data: list[CommandResult]
    total: int


class OutputResponse(Struct, kw_only=True):
    success: bool = True
    terminal_id: str
    state: SessionState
    offset: int
    next_offset: int
    dropped: int
    encoding: OutputEncoding
    data: str


class ResizeResponse(Struct, kw_only=True):
    success: bool = True
    terminal_id: str
    cols: int
    rows: int


class AttachResize(Struct, tag_field="type", tag="resize", forbid_unknown_fields=True):
    """Attach control message (a WebSocket text frame): the client's window size changed."""

    cols: ScreenSize
    rows: ScreenSize


class AttachInput(Struct, tag_field="type", tag="input", forbid_unknown_fields=True):
    """Attach control message: text to type (binary frames carry raw bytes instead)."""

    data: str


AttachControl = AttachResize | AttachInput
