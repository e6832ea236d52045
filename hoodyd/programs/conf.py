"""Rendering programs as supervisord `[program:…]` files, checked with supervisord's own parser.

One file per supervisord process group: a standard program is one group; a port-range program
has one group per instance, `<name>_<port>`, registered only when that instance is needed.

Every value must come back from supervisord's parser exactly as the user gave it. That parser
is configparser with inline comments (`;` or `#` after whitespace ends a value, leading and
trailing whitespace is dropped), then `%(name)s` expansion (once for most values, twice for
log file names); in included files, a literal `%(here)s` is replaced before that. The command
is therefore written as argv quoted for the `shlex.split` supervisord runs on it, with every
`;`, `#` and `(` escaped outside quotes; environment values that supervisord's key=value
parser cannot carry go through the exec helper (`launch`); paths that cannot be written
plainly are refused by validation (`plain_value_problem`).
"""

from __future__ import annotations

import configparser
import contextlib
import io
import json
import os
import pwd
import re
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

from supervisor.options import ServerOptions, UnhosedConfigParser

from hoodyd.errors import InvalidRequest, Reason
from hoodyd.programs.launch import ENVIRONMENT_VARIABLE, encode_environment, launcher_argv
from hoodyd.schemas.daemon import Program
from hoodyd.terminals.shells import fish_quote

FILE_PREFIX = "hoodyd-"
EPHEMERAL_PREFIX = f"{FILE_PREFIX}quick-"
_HEADER = "; hoodyd program id="
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
# names hoodyd gives groups itself: fallbacks (`hoodyd-program-<id>`), the event listener
# (`hoodyd-events`), quick-start programs (`quick_<ms>`) and port instances (`<name>_<port>`);
# a program called like one of them is registered under its fallback name instead
_RESERVED_NAME = re.compile(r"hoodyd-.*|quick(_.*)?|.*_[0-9]+", re.IGNORECASE)
_ESCAPED = re.compile(r"([;#(])")
_HERE = "%(here)s"
# programs keep the umask supervisord gives them by default; supervisord itself runs with 077
# so that the log files it creates are private
PROGRAM_UMASK = "022"


def supervisor_name(program: Program) -> str:
    """supervisord's group/process name: the program's name when supervisord can carry it and
    it cannot clash with a name hoodyd gives to another group."""
    name = program.name
    if _SAFE_NAME.fullmatch(name) and not _RESERVED_NAME.fullmatch(name):
        return name
    return f"hoodyd-program-{program.id}"


def instance_name(program: Program, port: int | None) -> str:
    base = supervisor_name(program)
    return base if port is None else f"{base}_{port}"


def conf_filename(program: Program, port: int | None) -> str:
    suffix = "" if port is None else f"-{port}"
    return f"{FILE_PREFIX}program-{program.id}{suffix}.conf"


def ephemeral_filename(temporary_id: str) -> str:
    return f"{EPHEMERAL_PREFIX}{temporary_id}.conf"


def parse_header(text: str) -> tuple[int, int | None] | None:
    """(program id, port) from the comment line `render` puts first; None for a file that
    is no program's (the event listener's, a quick-start's)."""
    first = text.split("\n", 1)[0]
    if not first.startswith(_HEADER):
        return None
    fields = dict(part.split("=", 1) for part in first.split() if "=" in part)
    port = fields.get("port")
    return int(fields["id"]), int(port) if port else None


def section_name(text: str) -> str:
    """The name of the first `[kind:name]` section: the group the file defines."""
    for line in text.splitlines():
        if line.startswith("[") and ":" in line:
            return line[line.index(":") + 1 : line.rindex("]")]
    raise ValueError("no section in conf text")


def port_arguments(port_param: str | None, port: int) -> list[str]:
    param = port_param or "--port"
    # a parameter ending in "=" is glued to its value: "--port=" → "--port=8042"
    return [f"{param}{port}"] if param.endswith("=") else [param, str(port)]


def command_argv(program: Program, port: int | None) -> list[str]:
    """The argv the program runs with: its command split as a POSIX shell would (no
    expansion of any kind), then the port argument of a port instance."""
    argv = shlex.split(program.command)
    if port is not None:
        argv += port_arguments(program.port_param, port)
    return argv


def terminal_argv(
    program: Program, argv: list[str], holders_dir: Path, directory: str
) -> list[str]:
    """A program with `terminal_id` runs inside that terminal: supervisord runs the
    terminal's holder in the foreground (`hoodyd.terminals.holder`), the holder runs the
    program's argv under its terminal shell, and hoodyd adopts the holder, so attach,
    snapshot and wait show the program while supervisord starts, stops and restarts it.

    The argv is quoted for the shell, so it runs exactly as it would outside a terminal.
    tmux would move the program into a tmux server outside supervisord's reach, so a tmux
    terminal runs it under bash."""
    assert program.terminal_id is not None
    kind = program.terminal_shell if program.terminal_shell in ("bash", "zsh", "fish") else "sh"
    if program.terminal_shell in (None, "tmux"):
        kind = "bash"
    shell = shutil.which(kind) or f"/bin/{kind}"
    line = " ".join(fish_quote(arg) for arg in argv) if kind == "fish" else shlex.join(argv)
    meta = {
        "shell_kind": kind,
        "shell_path": shell,
        "cwd": directory,
        "program": {"id": program.id, "name": program.name},
    }
    holder = [
        sys.executable,
        "-I",
        "-m",
        "hoodyd.terminals.holder",
        "--socket",
        str(holders_dir / f"{program.terminal_id}.sock"),
        "--terminal",
        str(program.terminal_id),
        "--foreground",
        "--meta-json",
        json.dumps(meta, separators=(",", ":")),
    ]
    if os.geteuid() == 0 and program.user != pwd.getpwuid(0).pw_name:
        # the holder stays root to serve its socket in hoodyd's private directory; the shell
        # it starts runs as the program's user
        holder += ["--user", program.user]
    return [*holder, "--", shell, "-ic" if program.terminal_interactive else "-c", line]


def log_file(
    program: Program, stream: str, log_dir: Path, port: int | None, *, folder: str | None = None
) -> Path:
    """Where a stream is logged: the configured file, else `program-<id>/<stream>.log` under
    the log dir (the program's name never becomes a path); a port instance adds `.<port>`."""
    configured = program.stdout_logfile if stream == "stdout" else program.stderr_logfile
    if configured:
        path = Path(configured)
    else:
        path = log_dir / (folder or f"program-{program.id}") / f"{stream}.log"
    if port is None:
        return path
    return path.with_name(f"{path.stem}.{port}{path.suffix}")


def account_environment(user: str) -> dict[str, str]:
    """HOME, USER, LOGNAME and SHELL of `user` when it is not hoodyd's own account (whose
    values supervisord already has), else nothing."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return {}
    if entry.pw_uid == os.geteuid():
        return {}
    return {
        "HOME": entry.pw_dir or "/",
        "USER": entry.pw_name,
        "LOGNAME": entry.pw_name,
        "SHELL": entry.pw_shell or "/bin/sh",
    }


def home_of(user: str) -> str:
    try:
        return pwd.getpwnam(user).pw_dir
    except KeyError:
        return "/"


def plain_value_problem(value: str) -> str | None:
    """Why `value` cannot be written as a plain supervisord value and read back unchanged,
    or None if it can (its `%` signs are doubled by `_ini`)."""
    if not value.isprintable():
        return "must not contain control characters or whitespace other than spaces"
    if value != value.strip():
        return "must not begin or end with a space"
    if " ;" in value or " #" in value:
        return "must not contain a space followed by ';' or '#'"
    if _HERE in value:
        return f"must not contain {_HERE}"
    return None


def environment_value_fits(value: str) -> bool:
    """Whether supervisord's `environment=` (configparser, then a non-POSIX shlex that keeps
    quotes in tokens and strips quote characters off both ends) carries `value` unchanged."""
    quotes = ("'", '"')
    if all(quote in value for quote in quotes) or value[:1] in quotes or value[-1:] in quotes:
        return False
    if any(ch in value for ch in "\n\r\0") or _HERE in value:
        return False
    return not any(
        ch in ";#" and index > 0 and value[index - 1].isspace() for index, ch in enumerate(value)
    )


def quote_arg(arg: str) -> str:
    """One argv item for supervisord's `shlex.split`: shell-quoted segments with `;`, `#` and
    `(` backslash-escaped outside quotes, so configparser never sees whitespace before `;` or
    `#`, and a doubled `%` is never followed by `(here)s`."""
    if not arg:
        return "''"
    return "".join(
        "\\" + part if _ESCAPED.fullmatch(part) else shlex.quote(part)
        for part in _ESCAPED.split(arg)
        if part
    )


def quote_argv(argv: list[str]) -> str:
    return " ".join(quote_arg(arg) for arg in argv)


def _ini(value: str, expansions: int = 1) -> str:
    # supervisord expands %(name)s in values (log file names twice): a literal % is doubled
    # once per expansion
    return value.replace("%", "%" * 2**expansions)


def _env_value(value: str) -> str:
    quote = "'" if '"' in value else '"'
    return quote + value + quote


def render(
    program: Program,
    *,
    port: int | None,
    autostart: bool,
    log_dir: Path,
    name: str | None = None,
    log_folder: str | None = None,
    holders_dir: Path | None = None,
    one_shot: bool = False,
) -> str:
    """The `[program:…]` section for the program (or one port instance of it).

    A `one_shot` program (one that another waits on with `exited_ok`) is a job that runs to
    its end: `startsecs=0`, so supervisord takes an exit at any time, however early, as an
    exit from RUNNING (EXITED with its status) rather than a failed start to retry (BACKOFF,
    then FATAL), and no automatic restart, so it runs once per start."""
    name = name or instance_name(program, port)
    argv = command_argv(program, port)
    directory = program.directory or home_of(program.user)
    in_terminal = program.terminal_id is not None and holders_dir is not None
    if in_terminal:
        assert holders_dir is not None
        argv = terminal_argv(program, argv, holders_dir, directory)
    environment = dict(program.environment or {})
    switches_user = os.geteuid() == 0 and not in_terminal
    if switches_user:
        # supervisord's own environment is built for hoodyd's account; supervisord changes
        # the uid only, so the account's own variables go here (what the program set wins)
        for key, value in account_environment(program.user).items():
            environment.setdefault(key, value)
    if in_terminal:
        environment.setdefault("TERM", "xterm-256color")
        environment["HOODYD_TERMINAL_ID"] = str(program.terminal_id)
    if program.display:
        environment["DISPLAY"] = program.display
    if port is not None:
        environment.setdefault("PORT", str(port))
    carried = {k: v for k, v in environment.items() if not environment_value_fits(v)}
    environment = {k: v for k, v in environment.items() if k not in carried}
    if carried:
        environment[ENVIRONMENT_VARIABLE] = encode_environment(carried)
    if program.delay_seconds or carried:
        argv = launcher_argv(program.delay_seconds, argv)
    lines = [
        f"{_HEADER}{program.id}" + ("" if port is None else f" port={port}"),
        f"[program:{name}]",
        f"command={_ini(quote_argv(argv))}",
        f"directory={_ini(directory)}",
        f"umask={PROGRAM_UMASK}",
        f"autostart={'true' if autostart else 'false'}",
        f"autorestart={'false' if one_shot else program.autorestart}",
        f"priority={program.priority}",
        f"startsecs={0 if one_shot else 1 + program.delay_seconds}",
        "startretries=3",
        "stopasgroup=true",
        "killasgroup=true",
        "stopwaitsecs=10",
    ]
    if switches_user:
        # supervisord switches users only when it runs as root; as anyone else, validation
        # has made sure the program runs as the daemon's own user, so no `user=` line
        lines.append(f"user={program.user}")
    if program.logs_enabled:
        for stream in ("stdout", "stderr"):
            path = log_file(program, stream, log_dir, port, folder=log_folder)
            lines += [
                f"{stream}_logfile={_ini(str(path), expansions=2)}",
                f"{stream}_logfile_maxbytes={program.log_max_bytes}",
                f"{stream}_logfile_backups={program.log_backups}",
            ]
    else:
        lines += ["stdout_logfile=NONE", "stderr_logfile=NONE"]
    if environment:
        pairs = ",".join(f"{key}={_env_value(value)}" for key, value in sorted(environment.items()))
        lines.append(f"environment={_ini(pairs)}")
    return "\n".join(lines) + "\n"


def process_configs(text: str) -> list[Any]:
    """supervisord's `ProcessConfig`s for a conf file's text, read the way supervisord reads an
    included file: universal newlines, `%(here)s` replaced, then expansion."""
    parser = UnhosedConfigParser()
    parser.expansions = {}
    parser.read_file(io.StringIO(text, newline=None))
    parser.expand_here("/nonexistent-here")
    configs: list[Any] = []
    for group in ServerOptions().process_groups_from_parser(parser):
        configs += group.process_configs
    return configs


def check(text: str) -> None:
    """Parse the rendered section exactly as supervisord will, and refuse it if that fails."""
    try:
        process_configs(text)
    except Exception as exc:  # supervisor raises ValueError, configparser its own errors
        raise InvalidRequest(
            f"program would not parse as supervisord config: {exc}", reason=Reason.INVALID_CONFIG
        ) from exc


def log_paths(text: str) -> list[Path]:
    """The log files a rendered section names, as supervisord will read them (before it
    checks that their directories exist)."""
    parser = UnhosedConfigParser()
    paths = []
    with contextlib.suppress(configparser.Error):  # `check` reports what does not parse
        parser.read_file(io.StringIO(text, newline=None))
    for section in parser.sections():
        for key in ("stdout_logfile", "stderr_logfile"):
            if parser.has_option(section, key):
                with contextlib.suppress(ValueError, TypeError, KeyError):
                    value = parser.get(section, key) % {} % {}
                    if value.startswith("/"):
                        paths.append(Path(value))
    return paths
