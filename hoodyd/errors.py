"""The one error hierarchy: every failure a client can see, with its HTTP status and stable reason.

Services raise these; one middleware (`hoodyd.api.middleware`) turns them into the area's JSON
error shape. `reason` is a stable UPPER_SNAKE name clients can switch on; `extra` carries
additional fields of the error body (for example the last state seen by a wait that timed out).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar, Generic, TypeVar

import msgspec

_Body = TypeVar("_Body", bound=msgspec.Struct)


class Reason(StrEnum):
    """Every stable reason code a client can switch on, in one catalogue (listed in each
    area's OpenAPI error schema; a test keeps the two in step)."""

    ABNORMAL_TERMINATION = "ABNORMAL_TERMINATION"
    ALREADY_ADDED = "ALREADY_ADDED"
    ALREADY_RUNNING = "ALREADY_RUNNING"
    BAD_CONFIG = "BAD_CONFIG"
    BAD_DEFAULTS = "BAD_DEFAULTS"
    BAD_ORIGIN = "BAD_ORIGIN"
    BAD_SIGNAL = "BAD_SIGNAL"
    BAD_TOKEN = "BAD_TOKEN"
    BATCH_TOO_LARGE = "BATCH_TOO_LARGE"
    BODY_REQUIRED = "BODY_REQUIRED"
    COMMAND_FINISHED = "COMMAND_FINISHED"
    COMMAND_ID_IN_USE = "COMMAND_ID_IN_USE"
    COMMAND_NOT_FOUND = "COMMAND_NOT_FOUND"
    COMMAND_TOO_LONG = "COMMAND_TOO_LONG"
    CONFIG_REJECTED = "CONFIG_REJECTED"
    CONFLICT = "CONFLICT"
    CONTROL_CHARACTER = "CONTROL_CHARACTER"
    CURSOR_SELECTOR_MISMATCH = "CURSOR_SELECTOR_MISMATCH"
    CURSOR_SET_EXPIRED = "CURSOR_SET_EXPIRED"
    CWD_NOT_CREATED = "CWD_NOT_CREATED"
    DEFER_PID_REQUIRED = "DEFER_PID_REQUIRED"
    DEPENDED_ON = "DEPENDED_ON"
    DEPENDENCY_CYCLE = "DEPENDENCY_CYCLE"
    DEPENDENCY_FAILED = "DEPENDENCY_FAILED"
    DESKTOP_NOT_SUPPORTED = "DESKTOP_NOT_SUPPORTED"
    DESTRUCTIVE_NEEDS_EXPLICIT_PICK = "DESTRUCTIVE_NEEDS_EXPLICIT_PICK"
    DUPLICATE_PARAMETER = "DUPLICATE_PARAMETER"
    DUPLICATE_PROFILE = "DUPLICATE_PROFILE"
    DUPLICATE_RECIPE = "DUPLICATE_RECIPE"
    DUPLICATE_SOURCE = "DUPLICATE_SOURCE"
    EPHEMERAL_NOT_FOUND = "EPHEMERAL_NOT_FOUND"
    FORBIDDEN = "FORBIDDEN"
    HEADERS_TOO_LARGE = "HEADERS_TOO_LARGE"
    HTTP_ERROR = "HTTP_ERROR"
    IDLE_STOP_WITHOUT_RANGE = "IDLE_STOP_WITHOUT_RANGE"
    ID_IN_USE = "ID_IN_USE"
    INTERNAL_ERROR = "INTERNAL_ERROR"
    INVALID_BOOLEAN = "INVALID_BOOLEAN"
    INVALID_COMMAND = "INVALID_COMMAND"
    INVALID_COMMAND_ID = "INVALID_COMMAND_ID"
    INVALID_CONFIG = "INVALID_CONFIG"
    INVALID_CURSOR = "INVALID_CURSOR"
    INVALID_CWD = "INVALID_CWD"
    INVALID_DISPLAY = "INVALID_DISPLAY"
    INVALID_ENUM = "INVALID_ENUM"
    INVALID_ENV = "INVALID_ENV"
    INVALID_GO_PATH = "INVALID_GO_PATH"
    INVALID_HEADER = "INVALID_HEADER"
    INVALID_ID = "INVALID_ID"
    INVALID_INTEGER = "INVALID_INTEGER"
    INVALID_LOG_PATH = "INVALID_LOG_PATH"
    INVALID_MOUSE_EVENT = "INVALID_MOUSE_EVENT"
    INVALID_NAME = "INVALID_NAME"
    INVALID_PATH = "INVALID_PATH"
    INVALID_PATTERN = "INVALID_PATTERN"
    INVALID_PICK = "INVALID_PICK"
    INVALID_PORT_PARAM = "INVALID_PORT_PARAM"
    INVALID_PORT_RANGE = "INVALID_PORT_RANGE"
    INVALID_PROBE = "INVALID_PROBE"
    INVALID_RECIPE = "INVALID_RECIPE"
    INVALID_REDIRECT = "INVALID_REDIRECT"
    INVALID_REQUEST = "INVALID_REQUEST"
    INVALID_SOURCE_CONFIG = "INVALID_SOURCE_CONFIG"
    INVALID_SOURCE_PROVIDER = "INVALID_SOURCE_PROVIDER"
    INVALID_STARTUP_SCRIPT = "INVALID_STARTUP_SCRIPT"
    INVALID_TEMPORARY_ID = "INVALID_TEMPORARY_ID"
    INVALID_TERMINAL_ID = "INVALID_TERMINAL_ID"
    INVALID_USER = "INVALID_USER"
    INVALID_WEBHOOK = "INVALID_WEBHOOK"
    JOB_NOT_FOUND = "JOB_NOT_FOUND"
    JSON_TOO_DEEP = "JSON_TOO_DEEP"
    LAZY_LOAD_WITH_BOOT = "LAZY_LOAD_WITH_BOOT"
    LOGIN_THROTTLED = "LOGIN_THROTTLED"
    LOGS_DISABLED = "LOGS_DISABLED"
    MALFORMED_JSON = "MALFORMED_JSON"
    MALFORMED_REQUEST = "MALFORMED_REQUEST"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    MISSING_COMMAND = "MISSING_COMMAND"
    MISSING_FIELD = "MISSING_FIELD"
    MOUSE_NOT_ENABLED = "MOUSE_NOT_ENABLED"
    NAME_IN_USE = "NAME_IN_USE"
    NEWLINE_NOT_ALLOWED = "NEWLINE_NOT_ALLOWED"
    NOT_EXECUTABLE = "NOT_EXECUTABLE"
    NOT_FOUND = "NOT_FOUND"
    NOT_RUNNING = "NOT_RUNNING"
    NOT_SUPPORTED = "NOT_SUPPORTED"
    NO_CANDIDATES = "NO_CANDIDATES"
    NO_FILE = "NO_FILE"
    NO_FREE_COMMAND_ID = "NO_FREE_COMMAND_ID"
    NO_FREE_TERMINAL_ID = "NO_FREE_TERMINAL_ID"
    NUL_BYTE = "NUL_BYTE"
    OUT_OF_RANGE = "OUT_OF_RANGE"
    PATTERN_TIMEOUT = "PATTERN_TIMEOUT"
    PATTERN_TOO_LONG = "PATTERN_TOO_LONG"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    PEER_NOT_ALLOWED = "PEER_NOT_ALLOWED"
    POLICY_DENIED_PROVIDER = "POLICY_DENIED_PROVIDER"
    POLICY_DENIED_SOURCE = "POLICY_DENIED_SOURCE"
    POLICY_REQUIRES_INTEGRITY = "POLICY_REQUIRES_INTEGRITY"
    POLICY_REQUIRES_VERIFIED = "POLICY_REQUIRES_VERIFIED"
    PORT_NOT_ACCEPTED = "PORT_NOT_ACCEPTED"
    PORT_OUT_OF_RANGE = "PORT_OUT_OF_RANGE"
    PORT_PARAM_WITHOUT_RANGE = "PORT_PARAM_WITHOUT_RANGE"
    PORT_RANGE = "PORT_RANGE"
    PORT_RANGE_OVERLAP = "PORT_RANGE_OVERLAP"
    PORT_REQUIRED = "PORT_REQUIRED"
    PROCESS_NOT_FOUND = "PROCESS_NOT_FOUND"
    PROFILE_NOT_FOUND = "PROFILE_NOT_FOUND"
    PROGRAM_DISABLED = "PROGRAM_DISABLED"
    PROGRAM_NOT_FOUND = "PROGRAM_NOT_FOUND"
    RECIPE_NOT_FOUND = "RECIPE_NOT_FOUND"
    RECIPE_OVERRIDE_NOT_ALLOWED = "RECIPE_OVERRIDE_NOT_ALLOWED"
    REQUEST_TIMEOUT = "REQUEST_TIMEOUT"
    REQUIREMENTS_MISSING = "REQUIREMENTS_MISSING"
    RESERVED_TERMINAL_ID = "RESERVED_TERMINAL_ID"
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
    SET_STALE = "SET_STALE"
    SHELL_EXITED = "SHELL_EXITED"
    SHELL_NOT_FOUND = "SHELL_NOT_FOUND"
    SHUTTING_DOWN = "SHUTTING_DOWN"
    SOURCE_NOT_FOUND = "SOURCE_NOT_FOUND"
    SOURCE_RESOLUTION_FAILED = "SOURCE_RESOLUTION_FAILED"
    SOURCE_SYNCING = "SOURCE_SYNCING"
    SPAWN_ERROR = "SPAWN_ERROR"
    SSH_NOT_SUPPORTED = "SSH_NOT_SUPPORTED"
    START_CANCELLED = "START_CANCELLED"
    START_FAILED = "START_FAILED"
    START_UNSETTLED = "START_UNSETTLED"
    STATE_NOT_SAVED = "STATE_NOT_SAVED"
    STILL_RUNNING = "STILL_RUNNING"
    SUPERVISOR_AUTH = "SUPERVISOR_AUTH"
    SUPERVISOR_BAD_ARGUMENTS = "SUPERVISOR_BAD_ARGUMENTS"
    SUPERVISOR_FAILED = "SUPERVISOR_FAILED"
    SUPERVISOR_FAULT = "SUPERVISOR_FAULT"
    SUPERVISOR_INCORRECT_PARAMETERS = "SUPERVISOR_INCORRECT_PARAMETERS"
    SUPERVISOR_SHUTTING_DOWN = "SUPERVISOR_SHUTTING_DOWN"
    SUPERVISOR_UNAVAILABLE = "SUPERVISOR_UNAVAILABLE"
    TERMINALS_UNAVAILABLE = "TERMINALS_UNAVAILABLE"
    TERMINAL_ID_REQUIRED = "TERMINAL_ID_REQUIRED"
    TERMINAL_NOT_FOUND = "TERMINAL_NOT_FOUND"
    TERMINAL_RUNS_PROGRAM = "TERMINAL_RUNS_PROGRAM"
    TERMINAL_START_FAILED = "TERMINAL_START_FAILED"
    TOO_MANY_WAITERS = "TOO_MANY_WAITERS"
    UNAUTHORIZED = "UNAUTHORIZED"
    UNKNOWN_DEPENDENCY = "UNKNOWN_DEPENDENCY"
    UNKNOWN_FIELD = "UNKNOWN_FIELD"
    UNKNOWN_KEY = "UNKNOWN_KEY"
    UNKNOWN_PARAMETER = "UNKNOWN_PARAMETER"
    UNKNOWN_USER = "UNKNOWN_USER"
    UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"
    UNSUPPORTED_PARAMETER = "UNSUPPORTED_PARAMETER"
    UNSUPPORTED_SHELL = "UNSUPPORTED_SHELL"
    UPSTREAM_FAILED = "UPSTREAM_FAILED"
    USER_NOT_SUPPORTED = "USER_NOT_SUPPORTED"
    USER_SWITCH_NOT_ALLOWED = "USER_SWITCH_NOT_ALLOWED"
    VALIDATION_FAILED = "VALIDATION_FAILED"
    WAIT_TIMEOUT = "WAIT_TIMEOUT"


class HoodydError(Exception):
    """Base of every error hoodyd reports to a client."""

    status: int = 500
    default_reason: ClassVar[Reason] = Reason.INTERNAL_ERROR

    def __init__(
        self, message: str, *, reason: Reason | None = None, extra: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason: Reason = reason or self.default_reason
        self.extra = extra or {}


class InvalidRequest(HoodydError):
    status = 400
    default_reason = Reason.INVALID_REQUEST


class Forbidden(HoodydError):
    status = 403
    default_reason = Reason.FORBIDDEN


class Unauthorized(HoodydError):
    status = 401
    default_reason = Reason.UNAUTHORIZED


class NotFound(HoodydError):
    status = 404
    default_reason = Reason.NOT_FOUND


class Conflict(HoodydError):
    """The request is valid but the current state forbids it (a disabled program, a dead shell)."""

    status = 409
    default_reason = Reason.CONFLICT


class PayloadTooLarge(HoodydError):
    status = 413
    default_reason = Reason.PAYLOAD_TOO_LARGE


class LoginThrottled(HoodydError):
    """Too many wrong tokens from this peer: no login is checked until `retry_after_s` passed."""

    status = 429
    default_reason = Reason.LOGIN_THROTTLED

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(
            f"too many failed logins: try again in {retry_after_s} s",
            extra={"retry_after_s": retry_after_s},
        )
        self.retry_after_s = retry_after_s


class UpstreamFailed(HoodydError):
    """Something hoodyd drives (a program, a package source) failed in a way it reports back."""

    status = 502
    default_reason = Reason.UPSTREAM_FAILED


class ServiceUnavailable(HoodydError):
    """A backend hoodyd needs (supervisord) does not answer; retrying later may succeed."""

    status = 503
    default_reason = Reason.SERVICE_UNAVAILABLE


class NotSupported(HoodydError):
    """A route of the compatible API for a feature this box does not have (a display)."""

    status = 501
    default_reason = Reason.NOT_SUPPORTED


class WaitTimeout(HoodydError):
    status = 504
    default_reason = Reason.WAIT_TIMEOUT


class SupervisorFault(HoodydError):
    """A fault supervisord answered; the status and reason are the ones its fault number maps
    to (`hoodyd.programs.supervisor_client.FAULTS`), `code` the fault number itself."""

    def __init__(self, code: int, text: str, *, status: int, reason: Reason) -> None:
        super().__init__(f"supervisord: {text}", reason=reason)
        self.status = status
        self.code = code
        self.text = text


class SupervisorUnavailable(ServiceUnavailable):
    default_reason = Reason.SUPERVISOR_UNAVAILABLE


class StateNotSaved(ServiceUnavailable):
    """hoodyd's store could not be written (disk full, read-only): nothing was changed."""

    default_reason = Reason.STATE_NOT_SAVED


class ShuttingDown(ServiceUnavailable):
    """hoodyd is stopping: the request was not (or no longer) served; retry once it is back."""

    default_reason = Reason.SHUTTING_DOWN


class RunFailed(HoodydError, Generic[_Body]):
    """A run that failed after resolution: its error body is also the run's answer (a
    `hoodyd.schemas.run_exec.RunResponse`: `status: error`, `set_id`, and the handoff when the
    terminal refused). The answer's type is a parameter so that this module imports nothing of
    the project."""

    def __init__(self, status: int, message: str, *, reason: Reason, response: _Body) -> None:
        super().__init__(message, reason=reason, extra=msgspec.to_builtins(response))
        self.status = status
        self.response = response
