"""Wire contracts of the Program Control API (CONTRACT.md §2).

Input Structs mark every field `UNSET` by default so that an edit can tell "omitted" from
"set to null"; `Program` is the stored and returned shape with the server-side defaults.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

Port = Annotated[int, Meta(ge=1, le=65535)]
TerminalId = Annotated[int, Meta(ge=1, le=65535)]
Autorestart = Literal["true", "false", "unexpected"]
TerminalShell = Literal["bash", "zsh", "fish", "sh", "tmux"]
ProcessState = Literal[
    "STOPPED", "STARTING", "RUNNING", "BACKOFF", "STOPPING", "EXITED", "FATAL", "UNKNOWN"
]
WEBHOOK_EVENTS = (
    "STARTING", "RUNNING", "BACKOFF", "STOPPING", "STOPPED", "EXITED", "FATAL", "UNKNOWN"
)


class PortRange(Struct, forbid_unknown_fields=True):
    start: Port
    end: Port


class WebhooksInput(Struct, forbid_unknown_fields=True):
    enabled: bool | UnsetType = UNSET
    urls: list[str] | UnsetType = UNSET
    events: str | list[str] | UnsetType = UNSET
    headers: dict[str, str] | UnsetType = UNSET
    timeout: Annotated[int, Meta(ge=1, le=60)] | UnsetType = UNSET
    retry: Annotated[int, Meta(ge=0, le=5)] | UnsetType = UNSET


class Webhooks(Struct, kw_only=True):
    """Stored, validated webhooks: `events` normalized to upper-case names or `["*"]`."""

    enabled: bool = False
    urls: list[str] = msgspec.field(default_factory=list)
    events: list[str] = msgspec.field(default_factory=lambda: ["*"])
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    timeout: int = 10
    retry: int = 3


class ProgramInput(Struct, forbid_unknown_fields=True):
    """Body of add (required: name, command, user) and of edit (any subset)."""

    name: str | UnsetType = UNSET
    command: str | UnsetType = UNSET
    user: str | UnsetType = UNSET
    # bounded by the service (1..2**31-1, reason INVALID_ID) rather than here, so that the
    # answer names the rule
    id: int | UnsetType = UNSET
    description: str | UnsetType | None = UNSET
    enabled: bool | UnsetType = UNSET
    boot: bool | UnsetType = UNSET
    delay_seconds: Annotated[int, Meta(ge=0, le=3600)] | UnsetType = UNSET
    autorestart: Autorestart | bool | UnsetType = UNSET
    directory: str | UnsetType | None = UNSET
    priority: Annotated[int, Meta(ge=1, le=999)] | UnsetType = UNSET
    stdout_logfile: str | UnsetType | None = UNSET
    stderr_logfile: str | UnsetType | None = UNSET
    logs_enabled: bool | UnsetType = UNSET
    log_max_bytes: Annotated[int, Meta(ge=0)] | UnsetType = UNSET
    log_backups: Annotated[int, Meta(ge=0, le=100)] | UnsetType = UNSET
    environment: dict[str, str] | UnsetType | None = UNSET
    port_range: PortRange | UnsetType | None = UNSET
    port_param: str | UnsetType | None = UNSET
    lazy_load: bool | UnsetType = UNSET
    display: str | int | UnsetType | None = UNSET
    terminal_id: TerminalId | UnsetType | None = UNSET
    terminal_shell: TerminalShell | UnsetType | None = UNSET
    terminal_interactive: bool | UnsetType | None = UNSET
    webhooks: WebhooksInput | UnsetType | None = UNSET
    # read-only in responses; accepted and ignored so a fetched program can be posted back
    hoody_kit: bool | UnsetType = UNSET
    status: Any = UNSET
    stats: Any = UNSET


class Program(Struct, kw_only=True):
    id: int
    name: str
    command: str
    user: str
    enabled: bool = True
    description: str | None = None
    boot: bool = False
    delay_seconds: int = 0
    autorestart: Autorestart = "unexpected"
    directory: str | None = None
    priority: int = 999
    stdout_logfile: str | None = None
    stderr_logfile: str | None = None
    logs_enabled: bool = True
    log_max_bytes: int = 5242880
    log_backups: int = 2
    environment: dict[str, str] | None = None
    hoody_kit: bool = False
    port_range: PortRange | None = None
    port_param: str | None = None
    lazy_load: bool = False
    display: str | None = None
    terminal_id: int | None = None
    terminal_shell: TerminalShell | None = None
    terminal_interactive: bool | None = None
    webhooks: Webhooks | None = None

    @property
    def is_port_range(self) -> bool:
        return self.port_range is not None

    def ports(self) -> range:
        assert self.port_range is not None
        return range(self.port_range.start, self.port_range.end + 1)


class StartRequest(Struct, forbid_unknown_fields=True):
    port: Port | None = None
    wait: bool = False
    timeout: Annotated[int, Meta(ge=1, le=300)] = 30
    if_not_running: bool = False
    # extension: "running" = supervisord's RUNNING (after startsecs); "port" = the instance
    # accepts TCP connections on its port
    wait_for: Literal["running", "port"] = "running"


class StopRequest(Struct, forbid_unknown_fields=True):
    port: Port | None = None
    all: bool = False


class Instance(Struct, kw_only=True):
    """One supervisord process of a program: the program itself or one port instance."""

    port: int | None = None
    instance_name: str
    status: str
    pid: int | None = None
    uptime: str | None = None
    # extensions: why a process is not running
    exitstatus: int | None = None
    spawnerr: str | None = None
    stats: dict[str, Any] | None = None


class EphemeralInput(Struct, forbid_unknown_fields=True):
    command: str
    user: str
    name: str | UnsetType = UNSET
    ttl: Annotated[int, Meta(ge=1, le=86400)] | None = None
    wait: bool = False
    timeout: Annotated[int, Meta(ge=1, le=300)] = 30
    autorestart: Autorestart | bool | UnsetType = UNSET
    directory: str | UnsetType | None = UNSET
    environment: dict[str, str] | UnsetType | None = UNSET
    priority: Annotated[int, Meta(ge=1, le=999)] | UnsetType = UNSET
    delay_seconds: Annotated[int, Meta(ge=0, le=3600)] | UnsetType = UNSET
    stdout_logfile: str | UnsetType | None = UNSET
    stderr_logfile: str | UnsetType | None = UNSET
    logs_enabled: bool | UnsetType = UNSET
    log_max_bytes: Annotated[int, Meta(ge=0)] | UnsetType = UNSET
    log_backups: Annotated[int, Meta(ge=0, le=100)] | UnsetType = UNSET
    display: str | int | UnsetType | None = UNSET
    terminal_id: TerminalId | UnsetType | None = UNSET
    terminal_shell: TerminalShell | UnsetType | None = UNSET
    terminal_interactive: bool | UnsetType | None = UNSET


class Ephemeral(Struct, kw_only=True):
    """A quick-start program: never in the program list, cleaned up on stop, exit or TTL."""

    temporary_id: str
    program: Program
    created_at: float
    expires_at: float | None = None
