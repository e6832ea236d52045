"""The one error hierarchy: every failure a client can see, with its HTTP status and stable reason.

Services raise these; one middleware (`hoodyd.api.middleware`) turns them into the area's JSON
error shape. `reason` is a stable UPPER_SNAKE name clients can switch on; `extra` carries
additional fields of the error body (for example the last state seen by a wait that timed out).
"""

from __future__ import annotations

from typing import Any, ClassVar


class HoodydError(Exception):
    """Base of every error hoodyd reports to a client."""

    status: int = 500
    default_reason: ClassVar[str] = "INTERNAL_ERROR"

    def __init__(
        self, message: str, *, reason: str | None = None, extra: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.extra = extra or {}


class InvalidRequest(HoodydError):
    status = 400
    default_reason = "INVALID_REQUEST"


class Forbidden(HoodydError):
    status = 403
    default_reason = "FORBIDDEN"


class Unauthorized(HoodydError):
    status = 401
    default_reason = "UNAUTHORIZED"


class NotFound(HoodydError):
    status = 404
    default_reason = "NOT_FOUND"


class Conflict(HoodydError):
    """The request is valid but the current state forbids it (a disabled program, a dead shell)."""

    status = 409
    default_reason = "CONFLICT"


class PayloadTooLarge(HoodydError):
    status = 413
    default_reason = "PAYLOAD_TOO_LARGE"


class UpstreamFailed(HoodydError):
    """Something hoodyd drives (a program, a package source) failed in a way it reports back."""

    status = 502
    default_reason = "UPSTREAM_FAILED"


class ServiceUnavailable(HoodydError):
    """A backend hoodyd needs (supervisord) does not answer; retrying later may succeed."""

    status = 503
    default_reason = "SERVICE_UNAVAILABLE"


class WaitTimeout(HoodydError):
    status = 504
    default_reason = "WAIT_TIMEOUT"
