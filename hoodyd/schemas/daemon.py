"""Wire contracts of the Program Control API (CONTRACT.md §2).

Input Structs mark every field `UNSET` by default so that an edit can tell "omitted" from
"set to null"; `Program` is the stored and returned shape with the server-side defaults.
Answer Structs are what the program services return; the edge wraps them in the
`{success: true, ...}` envelope. Their extension fields are `UNSET` (left out of the JSON)
where they have nothing to say.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeAlias

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

Port = Annotated[int, Meta(ge=1, le=65535)]
TerminalId = Annotated[int, Meta(ge=1, le=65535)]
IdleSeconds = Annotated[int, Meta(ge=1, le=86400)]
Autorestart = Literal["true", "false", "unexpected"]
TerminalShell = Literal["bash", "zsh", "fish", "sh", "tmux"]
ProcessState = Literal[
    "STOPPED", "STARTING", "RUNNING", "BACKOFF", "STOPPING", "EXITED", "FATAL", "UNKNOWN"
]
WEBHOOK_EVENTS = (
    "STARTING", "RUNNING", "BACKOFF", "STOPPING", "STOPPED", "EXITED", "FATAL", "UNKNOWN",
    # from probes (`hoodyd.programs.probes`)
    "READY", "UNHEALTHY", "LIVENESS_RESTART",
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


DependencyCondition = Literal["started", "ready", "exited_ok"]
Health = Literal["starting", "ready", "unhealthy", "unknown"]
Millis = Annotated[int, Meta(ge=0, le=3_600_000)]


class Dependency(Struct, forbid_unknown_fields=True, kw_only=True):
    """A program that must meet `condition` before the program that names it starts."""

    program: str
    condition: DependencyCondition = "ready"


class Probe(Struct, forbid_unknown_fields=True, kw_only=True):
    """A readiness or liveness check: exactly one of `port` (a number, or "$PORT" for the
    instance's own port), `http` (a loopback URL; 2xx/3xx is healthy) and `exec` (an argv run
    as the program's user; exit 0 is healthy)."""

    port: int | str | UnsetType = UNSET
    http: str | UnsetType = UNSET
    exec: list[str] | UnsetType = UNSET
    interval_ms: Annotated[int, Meta(ge=100, le=3_600_000)] = 1000
    timeout_ms: Annotated[int, Meta(ge=10, le=300_000)] = 1000
    failure_threshold: Annotated[int, Meta(ge=1, le=100)] = 3
    initial_delay_ms: Millis = 0


class ProbeResult(Struct, kw_only=True):
    """The last probe of an instance: which (`readiness`/`liveness`), whether it passed,
    when (ISO 8601, UTC) and, when it failed, why."""

    probe: Literal["readiness", "liveness"]
    ok: bool
    at: str
    detail: str | UnsetType = UNSET


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
    # extension (port-range programs): stop an instance nobody started or touched with
    # `if_not_running` for this many seconds
    idle_stop_after: IdleSeconds | UnsetType | None = UNSET
    # extensions: start-order dependencies and health probes
    depends_on: list[Dependency] | UnsetType | None = UNSET
    readiness: Probe | UnsetType | None = UNSET
    liveness: Probe | UnsetType | None = UNSET
    # read-only in responses; accepted and ignored so a fetched program can be posted back
    hoody_kit: bool | UnsetType = UNSET
    status: Any = UNSET
    stats: Any = UNSET
    health: Any = UNSET
    last_probe: Any = UNSET
    restarts: Any = UNSET


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
    idle_stop_after: int | None = None
    depends_on: list[Dependency] | None = None
    readiness: Probe | None = None
    liveness: Probe | None = None

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


class RemoveRequest(Struct, forbid_unknown_fields=True):
    # remove a program that others depend on (their depends_on then names a missing program)
    force: bool = False


class ProgramHealth(Struct, kw_only=True):
    """What a program object shows of its probes: the worst health of its instances, the
    latest probe result, and the restarts of all its instances."""

    health: Health
    restarts: int
    last_probe: ProbeResult | UnsetType = UNSET


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


# --- answers -------------------------------------------------------------------------------


class ProcessSample(Struct):
    """One process of a program's process tree."""

    pid: int
    name: str
    cpu_percent: float
    memory_rss_bytes: int


class ProcessStats(Struct):
    """CPU and memory of a program's process tree (psutil)."""

    pid: int
    started_at: str
    cpu_percent: float
    memory_rss_bytes: int
    process_count: int
    processes: list[ProcessSample]


# a stats field: UNSET when not asked for (or no pid), None when the process was gone
Stats: TypeAlias = ProcessStats | UnsetType | None


class ProcessStatus(Struct, kw_only=True):
    """A process as status and start answers show it: an instance by its name (and `port`,
    on a port instance), a standard program's status by the program's `id`."""

    id: int | UnsetType = UNSET
    port: int | UnsetType = UNSET
    instance_name: str | UnsetType = UNSET
    status: str
    pid: int | None
    uptime: str | None
    exitstatus: int | UnsetType = UNSET
    spawnerr: str | UnsetType = UNSET
    stats: Stats = UNSET
    # extensions: what its probes say, and how often it was started again unasked
    health: Health | UnsetType = UNSET
    last_probe: ProbeResult | UnsetType = UNSET
    restarts: int | UnsetType = UNSET


class PortRangeStatus(Struct, kw_only=True):
    """A port-range program's status: the instances registered with supervisord."""

    type: Literal["port-range"] = "port-range"
    running_instances: int
    total_instances: int  # ports in the range
    instances: list[ProcessStatus]


AnyStatus: TypeAlias = ProcessStatus | PortRangeStatus


class StatusAnswer(Struct, kw_only=True):
    """One program's status; a process's stats are lifted out beside it."""

    status: AnyStatus
    stats: Stats = UNSET


class Started(Struct, kw_only=True):
    """What a start did: whether the instance already ran, and its state now."""

    already_running: bool
    instance: ProcessStatus


class LogTail(Struct, kw_only=True):
    """The last lines of one log stream."""

    logs: str
    type: str
    lines: int
    log_file: str


class EphemeralStatus(Struct, kw_only=True):
    """A quick-start program as its launch and status answers show it."""

    temporary_id: str
    name: str
    display: str | None
    status: str
    pid: int | None
    uptime: str | None
    created_at: str
    expires_at: str | None
    # extensions: why it is not running (BACKOFF, FATAL, EXITED)
    exitstatus: int | UnsetType = UNSET
    spawnerr: str | UnsetType = UNSET
    attempts: int | UnsetType = UNSET  # failed start attempts in a row


class EphemeralListing(Struct, kw_only=True):
    """A quick-start program as the listing shows it."""

    temporary_id: str
    name: str
    command: str
    user: str
    stdout_logfile: str
    stderr_logfile: str
    logs_enabled: bool
    log_max_bytes: int
    log_backups: int
    display: str | None
    status: str
    pid: int | None
    uptime: str | None
    created_at: str
    expires_at: str | None


class EventProgram(Struct, kw_only=True):
    id: int
    name: str


class ProgramEvent(Struct, kw_only=True):
    """A program's process changed state: the webhook payload's fields, plus which instance
    (`instance_name`, and `port` on a port instance). One Server-Sent Event of
    `GET /events`."""

    event: str
    program: EventProgram
    instance_name: str
    port: int | UnsetType = UNSET
    from_state: str | None
    pid: int | None
    timestamp: str
    # extension: why a probe event (READY, UNHEALTHY, LIVENESS_RESTART) happened
    detail: str | UnsetType = UNSET
