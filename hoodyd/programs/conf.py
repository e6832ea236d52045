"""Rendering programs as supervisord `[program:…]` files, checked with supervisord's own parser.

One file per supervisord process group: a standard program is one group; a port-range program
has one group per instance, `<name>_<port>`, registered only when that instance is needed.
"""

from __future__ import annotations

import os
import pwd
import re
import shlex
from pathlib import Path

from supervisor.options import ServerOptions, UnhosedConfigParser

from hoodyd.errors import InvalidRequest
from hoodyd.schemas.daemon import Program

FILE_PREFIX = "hoodyd-"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def supervisor_name(program: Program) -> str:
    """supervisord's group/process name: the program's name when supervisord can carry it."""
    if _SAFE_NAME.match(program.name):
        return program.name
    return f"hoodyd-program-{program.id}"


def instance_name(program: Program, port: int | None) -> str:
    base = supervisor_name(program)
    return base if port is None else f"{base}_{port}"


def conf_filename(program: Program, port: int | None) -> str:
    suffix = "" if port is None else f"-{port}"
    return f"{FILE_PREFIX}program-{program.id}{suffix}.conf"


def port_argument(port_param: str | None, port: int) -> str:
    param = port_param or "--port"
    # a parameter ending in "=" is glued to its value: "--port=" → "--port=8042"
    return f"{param}{port}" if param.endswith("=") else f"{param} {port}"


def log_file(program: Program, stream: str, log_dir: Path, port: int | None) -> Path:
    configured = program.stdout_logfile if stream == "stdout" else program.stderr_logfile
    path = Path(configured) if configured else log_dir / program.name / f"{stream}.log"
    if port is None:
        return path
    return path.with_name(f"{path.stem}.{port}{path.suffix}")


def home_of(user: str) -> str:
    try:
        return pwd.getpwnam(user).pw_dir
    except KeyError:
        return "/"


def _ini(value: str) -> str:
    # supervisord expands %(name)s in values; log file names are expanded twice, so their
    # literal % signs go through this twice
    return value.replace("%", "%%")


def _env_value(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render(
    program: Program,
    *,
    port: int | None,
    autostart: bool,
    log_dir: Path,
    name: str | None = None,
) -> str:
    """The `[program:…]` section for the program (or one port instance of it)."""
    name = name or instance_name(program, port)
    command = program.command
    if port is not None:
        command = f"{command} {port_argument(program.port_param, port)}"
    if program.delay_seconds:
        command = shlex.join(["/bin/sh", "-c", f"sleep {program.delay_seconds}; exec {command}"])
    environment = dict(program.environment or {})
    if program.display:
        environment["DISPLAY"] = program.display
    if port is not None:
        environment.setdefault("PORT", str(port))
    lines = [
        f"; hoodyd program id={program.id}" + ("" if port is None else f" port={port}"),
        f"[program:{name}]",
        f"command={_ini(command)}",
        f"directory={_ini(program.directory or home_of(program.user))}",
        f"autostart={'true' if autostart else 'false'}",
        f"autorestart={program.autorestart}",
        f"priority={program.priority}",
        f"startsecs={1 + program.delay_seconds}",
        "startretries=3",
        "stopasgroup=true",
        "killasgroup=true",
        "stopwaitsecs=10",
    ]
    if os.geteuid() == 0:
        # supervisord switches users only when it runs as root; as anyone else, validation
        # has made sure the program runs as the daemon's own user, so no `user=` line
        lines.append(f"user={program.user}")
    if program.logs_enabled:
        for stream in ("stdout", "stderr"):
            path = log_file(program, stream, log_dir, port)
            lines += [
                f"{stream}_logfile={_ini(_ini(str(path)))}",
                f"{stream}_logfile_maxbytes={program.log_max_bytes}",
                f"{stream}_logfile_backups={program.log_backups}",
            ]
    else:
        lines += ["stdout_logfile=NONE", "stderr_logfile=NONE"]
    if environment:
        pairs = ",".join(f"{key}={_env_value(value)}" for key, value in sorted(environment.items()))
        lines.append(f"environment={_ini(pairs)}")
    return "\n".join(lines) + "\n"


def check(text: str) -> None:
    """Parse the rendered section exactly as supervisord will, and refuse it if that fails."""
    parser = UnhosedConfigParser()
    parser.expansions = {}
    try:
        parser.read_string(text)
        ServerOptions().process_groups_from_parser(parser)
    except Exception as exc:  # supervisor raises ValueError, configparser its own errors
        raise InvalidRequest(
            f"program would not parse as supervisord config: {exc}", reason="INVALID_CONFIG"
        ) from exc
