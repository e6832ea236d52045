"""`hoodyd install-units`: systemd units for this installation, as it is installed.

The units start exactly this interpreter's `hoodyd` with a config file that exists (written
when missing), and the command prints the `systemctl` lines that start them.

- **System** (`hoodyd.socket` + `hoodyd.service`): runs as root, so programs can run as
  their users; the socket `/run/hoodyd/hoodyd.sock` belongs to group `hoodyd` (0660), whose
  gid the config allows. Hardening is every option that leaves what programs and terminal
  shells may do as it is: no `NoNewPrivileges` (sudo in a terminal), no `ProtectSystem`/
  `ProtectHome` (apt-get and the users' files), no `PrivateTmp` (the X11 socket), no
  `RestrictNamespaces` (containers), no `MemoryDenyWriteExecute` (JITs).
- **User** (`hoodyd.service` under `~/.config/systemd/user`): the socket in
  `$XDG_RUNTIME_DIR/hoodyd/`, programs and terminals as that user. A user manager turns
  every seccomp or namespace option into `NoNewPrivileges=yes`, so the user unit carries none.

Both keep `KillMode=process`: supervisord and the programs outlive a restart of hoodyd, and
raise the open-file limit (`LimitNOFILE=`) above the 1024 that would let a flood of connections
starve the daemon.

The system unit hands hoodyd its TCP token as the systemd credential `token`
(`LoadCredential=token:/etc/hoodyd/token`, read from `$CREDENTIALS_DIRECTORY`), never through
the environment; install-units writes that file (0600, a new random token) when it is missing,
since systemd refuses to start a unit whose credential file does not exist. The config file it
writes holds no token: 0600, or 0640 root:hoodyd on the system when that group exists (its
members read the socket's path from it).
"""

from __future__ import annotations

import grp
import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

SOCKET_GROUP = "hoodyd"
SYSTEM_SOCKET = "/run/hoodyd/hoodyd.sock"
SYSTEM_TOKEN = "/etc/hoodyd/token"
# must exceed server.shutdown_timeout (10 s by default): the drain ends before systemd kills
TIMEOUT_STOP_S = 30
# open files: every connection, terminal and log is one
LIMIT_NOFILE = 65536

SYSTEM_HARDENING = """\
# hardening that leaves programs and terminal shells able to do what they do as root
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictRealtime=yes
LockPersonality=yes
SystemCallArchitectures=native
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK AF_PACKET
CapabilityBoundingSet=~CAP_SYS_MODULE CAP_SYS_TIME CAP_WAKE_ALARM CAP_MAC_ADMIN CAP_MAC_OVERRIDE
"""


@dataclass(frozen=True)
class Unit:
    name: str
    text: str


def hoodyd_command() -> list[str]:
    """This installation's `hoodyd`: the script beside this interpreter, else `python -m`."""
    script = Path(sys.executable).parent / "hoodyd"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "hoodyd"]


def _exec_start(command: list[str], config_path: str) -> str:
    return " ".join([*command, "serve", "--config", config_path])


def _service_core(command: list[str], config_path: str) -> str:
    """The [Service] lines the system and the user unit share."""
    return f"""\
[Service]
Type=notify
NotifyAccess=main
ExecStart={_exec_start(command, config_path)}
# supervisord is detached and outlives hoodyd, with the user's programs
KillMode=process
TimeoutStopSec={TIMEOUT_STOP_S}
Restart=on-failure
RestartSec=1
LimitNOFILE={LIMIT_NOFILE}
"""


def system_units(command: list[str], config_path: str) -> list[Unit]:
    socket = f"""\
[Unit]
Description=hoodyd control socket

[Socket]
ListenStream={SYSTEM_SOCKET}
SocketMode=0660
SocketUser=root
SocketGroup={SOCKET_GROUP}
DirectoryMode=0750

[Install]
WantedBy=sockets.target
"""
    service = f"""\
[Unit]
Description=hoodyd on-box control daemon
Requires=hoodyd.socket
After=hoodyd.socket network.target

{_service_core(command, config_path)}StateDirectory=hoodyd
StateDirectoryMode=0700
RuntimeDirectory=hoodyd
RuntimeDirectoryMode=0750
RuntimeDirectoryPreserve=yes
UMask=0077
Environment=HOODYD_LOG_FORMAT=json
# the TCP token, as a file only this service can read ($CREDENTIALS_DIRECTORY/token)
LoadCredential=token:{SYSTEM_TOKEN}
{SYSTEM_HARDENING}
[Install]
WantedBy=multi-user.target
Also=hoodyd.socket
"""
    return [Unit("hoodyd.socket", socket), Unit("hoodyd.service", service)]


def user_units(command: list[str], config_path: str) -> list[Unit]:
    service = f"""\
[Unit]
Description=hoodyd on-box control daemon (this user's programs and terminals)

{_service_core(command, config_path)}UMask=0077
Environment=HOODYD_LOG_FORMAT=json

[Install]
WantedBy=default.target
"""
    return [Unit("hoodyd.service", service)]


def _config_home() -> Path:
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")


def default_paths(user: bool) -> tuple[Path, Path]:
    """(unit directory, config file) as systemd and hoodyd will read them."""
    if user:
        return _config_home() / "systemd" / "user", _config_home() / "hoodyd" / "hoodyd.toml"
    return Path("/etc/systemd/system"), Path("/etc/hoodyd/hoodyd.toml")


def socket_gid() -> int | None:
    try:
        return grp.getgrnam(SOCKET_GROUP).gr_gid
    except KeyError:
        return None


def default_config(user: bool) -> str:
    lines = [
        "# hoodyd's configuration; every key is documented in etc/hoodyd.toml of its source.",
        'log_format = "json"',
    ]
    if not user:
        gid = socket_gid()
        if gid is None:
            lines += [
                "",
                "[server]",
                f"# members of group {SOCKET_GROUP} may use the socket once its gid is here:",
                "# allowed_gids = [GID]",
            ]
        else:
            lines += ["", "[server]", f"allowed_gids = [{gid}]  # group {SOCKET_GROUP}"]
    return "\n".join(lines) + "\n"


def _write_private(path: Path, text: str, *, group: int | None) -> None:
    """Create `path` holding `text`: 0600, or 0640 for `group`; never readable by others,
    not even for a moment (created with its mode, not chmod-ed after)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as handle:
        if group is not None:
            try:
                os.fchown(handle.fileno(), -1, group)
            except PermissionError:  # not root (a --prefix for packaging): owner only
                group = None
        os.fchmod(handle.fileno(), 0o600 if group is None else 0o640)
        handle.write(text)


def _under(prefix: Path | None, path: Path) -> Path:
    return prefix / path.relative_to("/") if prefix is not None else path


def install_units(*, user: bool, prefix: str | None, config_path: str | None) -> int:
    """Write the units (and a config file if there is none); print what to run next."""
    root = Path(prefix).resolve() if prefix else None
    unit_dir, default_config_path = default_paths(user)
    config_file = Path(config_path).resolve() if config_path else default_config_path
    command = hoodyd_command()
    units = (user_units if user else system_units)(command, str(config_file))
    target_config = _under(root, config_file)
    if not target_config.exists():
        target_config.parent.mkdir(parents=True, exist_ok=True)
        group = None if user else socket_gid()
        _write_private(target_config, default_config(user), group=group)
        print(f"wrote {target_config}")
    if not user:
        token = _under(root, Path(SYSTEM_TOKEN))
        if not token.exists():
            token.parent.mkdir(parents=True, exist_ok=True)
            _write_private(token, secrets.token_urlsafe(32) + "\n", group=None)
            print(f"wrote {token} (the TCP token)")
    target_dir = _under(root, unit_dir)
    target_dir.mkdir(parents=True, exist_ok=True)
    for unit in units:
        path = target_dir / unit.name
        path.write_text(unit.text)
        path.chmod(0o644)
        print(f"wrote {path}")
    print("\nthen run:")
    if user:
        print("  systemctl --user daemon-reload")
        print("  systemctl --user enable --now hoodyd.service")
        print("  loginctl enable-linger \"$USER\"   # keep it running while you are logged out")
    else:
        if socket_gid() is None:
            print(f"  groupadd --system {SOCKET_GROUP}   # then run install-units again")
        print("  systemctl daemon-reload")
        print("  systemctl enable --now hoodyd.socket hoodyd.service")
    return 0
