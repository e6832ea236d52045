"""Validation of terminal requests: ids, commands, environments, displays and the session
options hoodyd refuses. Everything here raises `InvalidRequest` and touches nothing, so a
refused request injects nothing and starts nothing."""

from __future__ import annotations

import os
import pwd
import re

from hoodyd.errors import InvalidRequest, Reason
from hoodyd.schemas.terminal import TERMINAL_ID_MAX, CreateRequest

INVALID_TERMINAL_ID = "Invalid terminal_id (must be numeric 1-65535)"
TERMINAL_ID_REQUIRED = "terminal_id parameter required"
MISSING_COMMAND = "Missing 'command' field"
MAX_COMMAND_BYTES = 65536
COMMAND_ID_MAX = 65535
# Variables hoodyd sets for its own integration; a caller may not override them.
_RESERVED_ENV = re.compile(r"^(HOODYD_|ZDOTDIR$|ENV$)")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DISPLAY = re.compile(r"^:?(\d{1,5})(?:\.(\d{1,3}))?$")


def parse_terminal_id(value: str | int | None, *, required: bool = True) -> int | None:
    """The contract's terminal id: numeric 1-65535; `0` and empty mean absent."""
    if value is None or value in ("", "0", 0):
        if required:
            raise InvalidRequest(TERMINAL_ID_REQUIRED, reason=Reason.TERMINAL_ID_REQUIRED)
        return None
    text = str(value)
    if isinstance(value, bool) or not text.isascii() or not text.isdigit():
        raise InvalidRequest(INVALID_TERMINAL_ID, reason=Reason.INVALID_TERMINAL_ID)
    number = int(text)
    if not 1 <= number <= TERMINAL_ID_MAX:
        raise InvalidRequest(INVALID_TERMINAL_ID, reason=Reason.INVALID_TERMINAL_ID)
    return number


def parse_command_id(value: str | int) -> int:
    text = str(value)
    if (
        isinstance(value, bool)
        or not text.isascii()
        or not text.isdigit()
        or not (1 <= int(text) <= COMMAND_ID_MAX)
    ):
        raise InvalidRequest(
            "Invalid command id (must be numeric 1-65535)", reason=Reason.INVALID_COMMAND_ID
        )
    return int(text)


def parse_display(value: str | int | None) -> str | None:
    if value is None or value == "":
        return None
    match = _DISPLAY.match(str(value))
    if match is None:
        raise InvalidRequest(
            f"Invalid display {value!r} (expected a number such as 1 or :1)",
            reason=Reason.INVALID_DISPLAY,
        )
    return f":{match.group(1)}" + (f".{match.group(2)}" if match.group(2) else "")


def validate_command(command: str | None) -> str:
    if command is None:
        raise InvalidRequest(MISSING_COMMAND, reason=Reason.MISSING_COMMAND)
    if not command.strip():
        raise InvalidRequest("'command' is empty", reason=Reason.INVALID_COMMAND)
    if len(command.encode()) > MAX_COMMAND_BYTES:
        raise InvalidRequest(
            f"'command' exceeds {MAX_COMMAND_BYTES} bytes", reason=Reason.COMMAND_TOO_LONG
        )
    check_typed_text("command", command)
    return command


def check_typed_text(name: str, text: str) -> None:
    """Text typed into the PTY: a newline would submit a line early, other control
    characters are line-editor keys (Tab completes, Ctrl-C interrupts)."""
    for char in text:
        code = ord(char)
        if code == 0:
            raise InvalidRequest(f"'{name}' contains a NUL byte", reason=Reason.NUL_BYTE)
        if char in "\r\n":
            raise InvalidRequest(
                f"'{name}' must be a single line (newlines are not allowed)",
                reason=Reason.NEWLINE_NOT_ALLOWED,
            )
        if code < 0x20 or code == 0x7F:
            raise InvalidRequest(
                f"'{name}' contains control character 0x{code:02x}",
                reason=Reason.CONTROL_CHARACTER,
            )


def check_no_nul(name: str, text: str) -> None:
    if "\x00" in text:
        raise InvalidRequest(f"'{name}' contains a NUL byte", reason=Reason.NUL_BYTE)


def validate_env(env: dict[str, str] | None, *, typed: bool) -> dict[str, str]:
    """Environment variables; `typed` when they travel through the PTY (per command)."""
    for key, value in (env or {}).items():
        if not _ENV_NAME.match(key):
            raise InvalidRequest(
                f"Invalid environment variable name {key!r}", reason=Reason.INVALID_ENV
            )
        if _RESERVED_ENV.match(key):
            raise InvalidRequest(
                f"Environment variable {key!r} is reserved by hoodyd", reason=Reason.INVALID_ENV
            )
        if typed:
            check_typed_text(f"env.{key}", value)
        else:
            check_no_nul(f"env.{key}", value)
    return dict(env or {})


# the contract's remote-session fields, which hoodyd refuses rather than ignores
REMOTE_FIELDS = (
    "ssh_host",
    "ssh_user",
    "ssh_port",
    "ssh_password",
    "ssh_key",
    "socks5_host",
    "socks5_port",
    "socks5_user",
    "socks5_pass",
)


def check_create(request: CreateRequest) -> None:
    """Everything a create (or a first use) asks for that hoodyd cannot give is a 400."""
    remote = [name for name in REMOTE_FIELDS if getattr(request, name) not in (None, "")]
    if remote:
        raise InvalidRequest(
            f"SSH/SOCKS5 sessions are not supported by hoodyd (got {', '.join(remote)})",
            reason=Reason.SSH_NOT_SUPPORTED,
        )
    if request.desktop or request.desktop_env:
        raise InvalidRequest(
            "desktop sessions are not supported by hoodyd", reason=Reason.DESKTOP_NOT_SUPPORTED
        )
    if request.startup_script is not None:
        check_no_nul("startup_script", request.startup_script)
    if request.cwd is not None:
        check_no_nul("cwd", request.cwd)


def check_user(user: str | None) -> str | None:
    """The account a session's shell runs as: None for hoodyd's own (also when `user` names
    it); another existing user only when hoodyd runs as root."""
    if user is None or user == "":
        return None
    try:
        own = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        own = str(os.getuid())
    if user == own:
        return None
    if os.geteuid() != 0:
        raise InvalidRequest(
            f"Sessions run as {own!r}; only a hoodyd running as root starts them as another "
            f"user ({user!r})",
            reason=Reason.USER_NOT_SUPPORTED,
        )
    check_no_nul("user", user)
    try:
        pwd.getpwnam(user)
    except KeyError:
        raise InvalidRequest(f"no user named {user!r}", reason=Reason.UNKNOWN_USER) from None
    return user
