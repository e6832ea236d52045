"""Daemon configuration: TOML file, then `HOODYD_*` environment variables, then command-line flags.

Every key is documented in `etc/hoodyd.toml`. With no file at all hoodyd runs on the embedded
defaults below, which depend only on the user it runs as.
"""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path
from typing import Any, Literal

import msgspec

from hoodyd.errors import InvalidRequest, Reason


class ServerConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    socket: str = ""
    socket_mode: int = 0o660
    allowed_uids: list[int] = msgspec.field(default_factory=list)
    allowed_gids: list[int] = msgspec.field(default_factory=list)
    tcp: str = ""
    token: str = ""
    # a file holding the token (preferred over `token`): readable by its owner only
    token_file: str = ""
    # variables of hoodyd's environment that its children (supervisord, programs, terminal
    # shells) also get, on top of the built base (hoodyd.childenv); HOODYD_* never pass
    pass_env: list[str] = msgspec.field(default_factory=list)
    shutdown_timeout: float = 10.0
    max_body_bytes: int = 1024 * 1024
    # seconds a request's line and headers, then its body, may take to arrive (408 after)
    head_timeout: float = 10.0
    body_timeout: float = 30.0
    # seconds an idle keep-alive connection is kept open
    keepalive_timeout: float = 15.0
    # open connections kept per listener; beyond them a new one is closed at once
    max_tcp_connections: int = 512
    max_unix_connections: int = 256
    # a browser's login session ends after this many seconds without a request, and at the
    # latest this many seconds after the login
    session_idle_timeout: float = 30 * 60.0
    session_max_age: float = 12 * 3600.0


class SupervisorConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    mode: Literal["embedded", "external"] = "embedded"
    # external mode: supervisord's unix socket and a directory its [include] section reads
    socket: str = ""
    include_dir: str = ""
    username: str = ""
    password: str = ""
    # seconds between reconciliation polls of all process states
    poll_interval: float = 2.0


class ProgramsConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    log_dir: str = ""
    defaults_file: str = ""
    max_port_range: int = 1000


class NotificationsConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    enabled: bool = True
    event_listener_enabled: bool = True
    # allow http:// and loopback/private webhook targets (development only)
    allow_insecure_urls: bool = False
    queue_size: int = 1000


class TerminalsConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    # shell for new sessions: bash, zsh, fish or sh; "" = the user's login shell if it is one
    # of those, else bash
    default_shell: str = ""
    # load the user's own start-up files (~/.bashrc, ~/.zshrc, $ENV) before hoodyd's hooks
    user_rc: bool = True
    # TERM given to session shells
    term: str = "xterm-256color"
    # bytes of output each session keeps for output readers and attach replay
    output_buffer_bytes: int = 1024 * 1024
    # bytes of stdout kept per command result (the rest is cut, output_truncated: true)
    command_output_bytes: int = 1024 * 1024
    # commands kept in each session's history
    history_limit: int = 1000
    # finished command results kept for GET /result/{command_id}
    results_kept: int = 10000
    # seconds an ephemeral session may sit idle (no client, nothing running) before removal
    ephemeral_idle_timeout: float = 300.0
    # seconds create waits for a new shell's first prompt
    ready_timeout: float = 10.0
    # how deferred commands wait for a PID: pidfd_open, polling, or pidfd where available
    defer_method: Literal["auto", "pidfd", "poll"] = "auto"
    # sessions (their holder processes, shells and commands) outlive a stop or restart of
    # hoodyd and are adopted again at the next start; false ends them with hoodyd
    outlive_daemon: bool = True
    # seconds between looks for holders to adopt (a program's terminal supervisord started)
    holder_scan_interval: float = 1.0
    # memory all sessions' screen emulators (snapshot, find, wait) may use together; the
    # least recently used emulator is dropped first
    vterm_memory_cap_mb: int = 256
    # seconds an emulator nobody read is kept before it is dropped (rebuilt on the next use)
    vterm_idle_ttl: float = 600.0
    # lines of scrollback each emulator keeps
    vterm_scrollback_lines: int = 2000


class RunConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    # seconds a candidate set (set_id, paged cursors) is kept
    candidate_set_ttl: float = 300.0
    # candidate sets kept at most; the least recently used go first
    max_candidate_sets: int = 512
    # ranked candidates kept per paged search
    paged_cap: int = 1000
    # sync at start-up the enabled sources that have no index, or one older than this
    # many seconds (0: only those without an index)
    resync_after: float = 86400.0
    # false: never sync on start-up or on source creation (only on request)
    auto_sync: bool = True
    # milliseconds a search or run waits for enabled sources whose first sync is under way
    # (0: never wait); sources still syncing after it are named in SOURCE_SYNCING warnings
    first_sync_wait_ms: int = 2000


class Config(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    state_dir: str = ""
    log_level: str = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
    server: ServerConfig = msgspec.field(default_factory=ServerConfig)
    supervisor: SupervisorConfig = msgspec.field(default_factory=SupervisorConfig)
    programs: ProgramsConfig = msgspec.field(default_factory=ProgramsConfig)
    notifications: NotificationsConfig = msgspec.field(default_factory=NotificationsConfig)
    run: RunConfig = msgspec.field(default_factory=RunConfig)
    terminals: TerminalsConfig = msgspec.field(default_factory=TerminalsConfig)

    @property
    def state_path(self) -> Path:
        return Path(self.state_dir)

    @property
    def log_path(self) -> Path:
        return Path(self.programs.log_dir)


def default_state_dir() -> str:
    if os.geteuid() == 0:
        return "/var/lib/hoodyd"
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return str(Path(base) / "hoodyd")


def socket_candidates(uid: int | None = None) -> list[Path]:
    """Where a daemon of `uid` serves by default, best first, read from the file system alone
    (never from the shell's environment, so that a login shell, a `su -` and a systemd unit
    of the same user agree): root `/run/hoodyd/`; a user `/run/user/UID/hoodyd/` when
    `/run/user/UID` is theirs (a login session or lingering made it), then `/tmp/hoodyd-UID/`."""
    uid = os.geteuid() if uid is None else uid
    if uid == 0:
        return [Path("/run/hoodyd/hoodyd.sock")]
    candidates = []
    runtime = Path(f"/run/user/{uid}")
    try:
        info = runtime.stat()
    except OSError:
        pass
    else:
        if stat.S_ISDIR(info.st_mode) and info.st_uid == uid:
            candidates.append(runtime / "hoodyd" / "hoodyd.sock")
    candidates.append(Path(f"/tmp/hoodyd-{uid}") / "hoodyd" / "hoodyd.sock")
    return candidates


def default_socket() -> str:
    """The socket `serve` binds and the verbs reach when none is configured: the first
    candidate where a socket already is (a daemon started before `/run/user/UID` existed
    stays found), else the best candidate."""
    candidates = socket_candidates()
    for candidate in candidates:
        try:
            if stat.S_ISSOCK(candidate.stat().st_mode):
                return str(candidate)
        except OSError:
            continue
    return str(candidates[0])


TOKEN_VARIABLE = "HOODYD_TOKEN"
CREDENTIAL_NAME = "token"

_ENV_KEYS: dict[str, tuple[str, ...]] = {
    "HOODYD_STATE_DIR": ("state_dir",),
    "HOODYD_LOG_LEVEL": ("log_level",),
    "HOODYD_LOG_FORMAT": ("log_format",),
    "HOODYD_SOCKET": ("server", "socket"),
    "HOODYD_TCP": ("server", "tcp"),
    TOKEN_VARIABLE: ("server", "token"),
    "HOODYD_SUPERVISOR_MODE": ("supervisor", "mode"),
    "HOODYD_SUPERVISOR_SOCKET": ("supervisor", "socket"),
    "HOODYD_SUPERVISOR_INCLUDE_DIR": ("supervisor", "include_dir"),
}


def _set(tree: dict[str, Any], keys: tuple[str, ...], value: Any) -> None:
    for key in keys[:-1]:
        tree = tree.setdefault(key, {})
    tree[keys[-1]] = value


def load(
    path: str | None = None,
    *,
    overrides: dict[tuple[str, ...], Any] | None = None,
    environ: dict[str, str] | None = None,
) -> Config:
    """Build the effective config from an optional TOML file, the environment and overrides."""
    env = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    path = path or env.get("HOODYD_CONFIG") or None
    if path:
        try:
            raw = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise InvalidRequest(
                f"cannot read config {path}: {exc}", reason=Reason.BAD_CONFIG
            ) from exc
        server = raw.get("server")
        if isinstance(server, dict) and server.get("token"):
            _refuse_if_shared(Path(path), "holds server.token")
    for name, keys in _ENV_KEYS.items():
        if env.get(name):
            _set(raw, keys, env[name])
    if environ is None:
        # read once: the token stays out of the daemon's own environment from here on
        os.environ.pop(TOKEN_VARIABLE, None)
    for keys, value in (overrides or {}).items():
        if value is not None:
            _set(raw, keys, value)
    try:
        config = msgspec.convert(raw, Config, strict=False)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"invalid config: {exc}", reason=Reason.BAD_CONFIG) from exc
    if not config.server.token:
        token = _token_from_files(config.server.token_file, env.get("CREDENTIALS_DIRECTORY", ""))
        if token:
            config = msgspec.structs.replace(
                config, server=msgspec.structs.replace(config.server, token=token)
            )
    return finalize(config)


def _refuse_if_shared(path: Path, what: str) -> None:
    """Refuse a file holding the token that users other than its owner can read."""
    try:
        mode = path.stat().st_mode & 0o777
    except OSError as exc:
        raise InvalidRequest(f"cannot read {path}: {exc}", reason=Reason.BAD_CONFIG) from exc
    if mode & 0o077:
        raise InvalidRequest(
            f"{path} {what} and is readable by group or others (mode {mode:04o}); "
            f"run chmod 600 {path}",
            reason=Reason.BAD_CONFIG,
        )


def _token_from_files(token_file: str, credentials_dir: str) -> str:
    """The token from `server.token_file`, else from the systemd credential `token`
    (`LoadCredential=token:...` puts it in `$CREDENTIALS_DIRECTORY`), else ""."""
    if token_file:
        path = Path(token_file)
        _refuse_if_shared(path, "(server.token_file) holds the token")
    elif credentials_dir and (Path(credentials_dir) / CREDENTIAL_NAME).is_file():
        # systemd makes credentials readable by the service's user only
        path = Path(credentials_dir) / CREDENTIAL_NAME
    else:
        return ""
    try:
        token = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"cannot read {path}: {exc}", reason=Reason.BAD_CONFIG) from exc
    if not token:
        raise InvalidRequest(f"{path} holds no token", reason=Reason.BAD_CONFIG)
    return token


def finalize(config: Config) -> Config:
    """Fill the defaults that depend on other keys (paths under the state dir)."""
    state = Path(config.state_dir or default_state_dir()).resolve()
    server = config.server
    if not server.socket:
        server = msgspec.structs.replace(server, socket=default_socket())
    if not server.allowed_uids:
        server = msgspec.structs.replace(server, allowed_uids=sorted({os.geteuid(), 0}))
    programs = config.programs
    if not programs.log_dir:
        programs = msgspec.structs.replace(programs, log_dir=str(state / "logs"))
    if not programs.defaults_file:
        programs = msgspec.structs.replace(
            programs, defaults_file=str(state / "programs.default.json")
        )
    supervisor = config.supervisor
    if supervisor.mode == "external" and not (supervisor.socket and supervisor.include_dir):
        raise InvalidRequest(
            "external supervisor mode needs supervisor.socket and supervisor.include_dir",
            reason=Reason.BAD_CONFIG,
        )
    return msgspec.structs.replace(
        config, state_dir=str(state), server=server, programs=programs, supervisor=supervisor
    )
