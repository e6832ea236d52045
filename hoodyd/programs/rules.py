"""Program validation and merge rules (CONTRACT.md §2.3), independent of storage and supervisord.

`build_program` turns an add/edit body into the complete program it would produce (edit is a
top-level merge; `environment` is replaced whole; `webhooks` is deep-merged), and
`validate_program` checks that program against every rule and against the other programs.
Nothing here writes anything, so a refused request changes nothing.
"""

from __future__ import annotations

import os
import posixpath
import pwd
import re
import shlex
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgspec
from msgspec import UNSET

from hoodyd.errors import InvalidRequest, Reason
from hoodyd.programs.conf import home_of, plain_value_problem
from hoodyd.programs.dependencies import check_dependencies
from hoodyd.programs.launch import ENVIRONMENT_VARIABLE
from hoodyd.programs.probe_checks import check_probe
from hoodyd.programs.webhooks import validate_webhooks
from hoodyd.schemas.daemon import EphemeralInput, Program, ProgramInput
from hoodyd.schemas.terminal import EPHEMERAL_FIRST

NAME_FORBIDDEN = re.compile(r"[\"'\x00-\x1f\x7f]")
USER_PATTERN = re.compile(r"^[a-z_][a-z0-9_-]*\$?$", re.IGNORECASE)
PORT_PARAM_PATTERN = re.compile(r"^-{0,2}[A-Za-z0-9][A-Za-z0-9_.-]*=?$")
ENV_KEY_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
DISPLAY_PATTERN = re.compile(r"^:?(\d{1,5})(\.\d{1,3})?$")
KIT_ROOT = "/hoody/plugins"
# program ids are stored as SQLite integers and shown to clients that may hold them in 32 bits
MAX_PROGRAM_ID = 2**31 - 1
_READ_ONLY = {"id", "hoody_kit", "status", "stats", "health", "last_probe", "restarts"}
_INPUT_FIELDS = tuple(f for f in ProgramInput.__struct_fields__ if f not in _READ_ONLY)


def _bad(message: str, reason: Reason = Reason.VALIDATION_FAILED) -> InvalidRequest:
    return InvalidRequest(message, reason=reason)


def normalize_display(value: str | int | None) -> str | None:
    if value is None or value == "":
        return None
    match = DISPLAY_PATTERN.match(str(value))
    if not match:
        raise _bad(f"Invalid display: {value!r} (expected a display number such as 1 or :1)")
    return f":{match.group(1)}{match.group(2) or ''}"


def check_port(program: Program, port: int | None) -> int | None:
    """The port a request names for the program: one inside its range, or none at all for a
    standard program."""
    if program.port_range is None:
        if port is not None:
            raise InvalidRequest(
                f"Program {program.name} has no port_range; port is not accepted",
                reason=Reason.PORT_NOT_ACCEPTED,
            )
        return None
    if port is None:
        raise InvalidRequest("Port parameter required", reason=Reason.PORT_REQUIRED)
    if port not in program.ports():
        raise InvalidRequest(
            f"Port {port} is outside the program's port_range "
            f"{program.port_range.start}-{program.port_range.end}",
            reason=Reason.PORT_OUT_OF_RANGE,
        )
    return port


def check_program_id(value: int) -> int:
    if not 1 <= value <= MAX_PROGRAM_ID:
        raise _bad(
            f"id must be an integer from 1 to {MAX_PROGRAM_ID}, got {value}", Reason.INVALID_ID
        )
    return value


def build_program(
    given: ProgramInput | EphemeralInput,
    *,
    program_id: int,
    current: Program | None,
    allow_insecure_webhooks: bool,
) -> Program:
    """The program an add (current=None) or edit body produces, not yet validated."""
    if current is None:
        for required in ("name", "command", "user"):
            if getattr(given, required, UNSET) is UNSET:
                raise _bad(f"Missing required field: {required}", Reason.MISSING_FIELD)
        fields: dict[str, Any] = {}
    else:
        fields = msgspec.structs.asdict(current)
    for name in _INPUT_FIELDS:
        value = getattr(given, name, UNSET)
        if value is UNSET or name == "webhooks":
            continue
        fields[name] = value
    fields["id"] = program_id
    if isinstance(fields.get("autorestart"), bool):
        fields["autorestart"] = "true" if fields["autorestart"] else "false"
    fields["display"] = normalize_display(fields.get("display"))
    if fields.get("port_range") is None:
        # a port_param without a port_range is stored and ignored (public clients always
        # send `--port`): only a program with a port_range is given a port
        fields.setdefault("port_param", None)
    elif fields.get("port_param") is None:
        fields["port_param"] = "--port"
    directory = fields.get("directory")
    fields["hoody_kit"] = bool(
        directory and (directory == KIT_ROOT or directory.startswith(KIT_ROOT + "/"))
    )
    given_webhooks = getattr(given, "webhooks", UNSET)
    if given_webhooks is not UNSET:
        fields["webhooks"] = validate_webhooks(
            current.webhooks if current else None,
            given_webhooks,
            allow_insecure=allow_insecure_webhooks,
        )
    fields.pop("status", None)
    return msgspec.convert(fields, Program)


def validate_program(
    program: Program, others: Iterable[Program], *, log_dir: Path, max_port_range: int
) -> None:
    """Every rule of §2.3, raising the first violation as a 400."""
    _check_name(program.name)
    if program.description is not None and len(program.description) > 500:
        raise _bad("description must be at most 500 characters")
    _check_command(program.command)
    check_user(program.user)
    if program.directory is not None:
        check_absolute(program.directory, "directory")
    else:
        _check_plain(home_of(program.user), "the home directory of the program's user")
    for stream in ("stdout_logfile", "stderr_logfile"):
        value = getattr(program, stream)
        if value is not None:
            check_log_path(value, stream, log_dir)
    for key, value in (program.environment or {}).items():
        if not ENV_KEY_PATTERN.match(key):
            raise _bad(f"Invalid environment variable name: {key!r}")
        if key == ENVIRONMENT_VARIABLE:
            raise _bad(f"Environment variable name {key} is reserved for hoodyd")
        if any(c in value for c in "\n\r\x00"):
            raise _bad(f"Environment value of {key} contains a newline or NUL")
        if not _encodable(value):
            raise _bad(f"Environment value of {key} is not valid Unicode text")
    if program.lazy_load and program.boot:
        raise _bad("lazy_load cannot be combined with boot: true", Reason.LAZY_LOAD_WITH_BOOT)
    if program.idle_stop_after is not None and program.port_range is None:
        raise _bad(
            "idle_stop_after applies to port-range programs only", Reason.IDLE_STOP_WITHOUT_RANGE
        )
    if program.terminal_shell is not None and program.terminal_id is None:
        raise _bad("terminal_shell requires terminal_id")
    if program.terminal_id is not None and program.port_range is not None:
        raise _bad("a port-range program's instances cannot share one terminal_id")
    if program.terminal_id is not None and program.terminal_id >= EPHEMERAL_FIRST:
        raise _bad(f"terminal_id {EPHEMERAL_FIRST}-65535 are reserved for ephemeral sessions")
    if program.port_param is not None and not PORT_PARAM_PATTERN.match(program.port_param):
        raise _bad(f'Invalid port_param format: "{program.port_param}"', Reason.INVALID_PORT_PARAM)
    for kind in ("readiness", "liveness"):
        check_probe(getattr(program, kind), kind, program)
    others = list(others)
    check_dependencies(program, others)
    others = [other for other in others if other.id != program.id]
    if program.terminal_id is not None:
        for other in others:
            if other.terminal_id == program.terminal_id:
                raise _bad(f"terminal_id {program.terminal_id} is taken by program {other.name!r}")
    for other in others:
        if other.name == program.name:
            raise _bad(f"Program name already in use: {program.name}", Reason.NAME_IN_USE)
    if program.port_range is not None:
        start, end = program.port_range.start, program.port_range.end
        if start > end:
            raise _bad("Invalid port_range: start must not exceed end", Reason.INVALID_PORT_RANGE)
        if end - start + 1 > max_port_range:
            raise _bad(
                f"Invalid port_range: at most {max_port_range} ports per program",
                Reason.INVALID_PORT_RANGE,
            )
        for other in others:
            span = other.port_range
            if span is not None and span.start <= end and span.end >= start:
                raise _bad(
                    f"Port range overlaps with program '{other.name}' ({span.start}-{span.end})",
                    Reason.PORT_RANGE_OVERLAP,
                )


def _check_name(name: str) -> None:
    if not name or not name.strip():
        raise _bad("name must not be empty")
    if len(name) > 128:
        raise _bad("name must be at most 128 characters")
    if NAME_FORBIDDEN.search(name):
        raise _bad("name must not contain quotes or control characters", Reason.INVALID_NAME)


def _check_command(command: str) -> None:
    if not command.strip():
        raise _bad("command must not be empty")
    if any(c in command for c in "\n\r\x00"):
        raise _bad(
            "command must not contain newline, carriage return or NUL", Reason.INVALID_COMMAND
        )
    if not _encodable(command):
        raise _bad("command is not valid Unicode text", Reason.INVALID_COMMAND)
    try:
        shlex.split(command)
    except ValueError as exc:
        # the command is split once, here, into the argv the program runs with
        raise _bad(
            f"command does not split into arguments: {exc}", Reason.INVALID_COMMAND
        ) from None


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:  # a lone surrogate, possible only from the defaults file
        return False
    return True


def check_user(user: str) -> None:
    if not USER_PATTERN.match(user):
        raise _bad(f"Invalid user name: {user!r}", Reason.INVALID_USER)
    try:
        pwd.getpwnam(user)
    except KeyError:
        raise _bad(f"User does not exist: {user}", Reason.UNKNOWN_USER) from None
    if os.geteuid() != 0 and pwd.getpwuid(os.geteuid()).pw_name != user:
        raise _bad(
            f"hoodyd runs as uid {os.geteuid()} and can only run programs as its own user",
            Reason.USER_SWITCH_NOT_ALLOWED,
        )


def check_absolute(value: str, field: str) -> None:
    if not value.startswith("/") or "\x00" in value or "\n" in value:
        raise _bad(f"{field} must be an absolute path", Reason.INVALID_PATH)
    _check_plain(value, field)


def _check_plain(value: str, field: str) -> None:
    """The path goes into supervisord's config as it is: refuse what its parser would alter."""
    problem = plain_value_problem(value)
    if problem is not None:
        raise _bad(f"{field} {problem}", Reason.INVALID_PATH)


def check_log_path(value: str, field: str, log_dir: Path) -> None:
    check_absolute(value, field)
    _check_plain(str(Path(value)), field)  # written as Path gives it back
    root = posixpath.normpath(str(log_dir))
    if not posixpath.normpath(value).startswith(root + "/"):
        raise _bad(f"{field} must lie under {root}/", Reason.INVALID_LOG_PATH)
