"""A small blocking HTTP client for hoodyd: the Unix socket `serve` binds, or a TCP URL with
the bearer token. Every command-line verb goes through it, so nothing bypasses the API.

Failures come out as two errors the command line maps to exit codes: `Unreachable` (no
daemon answers; exit 3) and `Refused` (the daemon answered with an error; exit 1).
"""

from __future__ import annotations

import grp
import http.client
import os
import pwd
import socket
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import msgspec

Scalar = str | int | float | bool | None
QueryValue = Scalar | list[str]  # a list repeats its parameter (`env=A=1&env=B=2`)


@dataclass(frozen=True)
class Target:
    """Where the daemon is: a Unix socket path, or an `http://HOST:PORT` URL and its token."""

    socket: str = ""
    url: str = ""
    token: str = ""

    def describe(self) -> str:
        return self.url or self.socket


class Unreachable(Exception):
    """No daemon answered at the target."""

    def __init__(self, target: Target, cause: str) -> None:
        self.target = target
        self.cause = cause
        where = f"at {target.url}" if target.url else f"on {target.socket}"
        if target.url:
            hint = "is it running there? (`hoodyd serve --tcp HOST:PORT`)"
        elif cause == DENIED:
            hint = denied_hint(target.socket)
        else:
            hint = (
                "start one with `hoodyd serve` (or pass the socket it serves on with "
                "--socket or HOODYD_SOCKET)"
            )
        super().__init__(f"cannot reach hoodyd {where}: {cause}; {hint}")


DENIED = "permission denied"


def denied_hint(path: str) -> str:
    """Whose socket refused us (the socket's owner, or that of the first directory above it
    we may look into) and how its owner gives access."""
    owner = "another user"
    for place in (Path(path), *Path(path).parents):
        try:
            info = place.stat()
        except OSError:
            continue
        owner = f"{_user(info.st_uid)} (group {_group(info.st_gid)})"
        break
    return (
        f"it belongs to {owner}. To use that daemon, its owner adds your uid "
        f"({os.geteuid()}) to server.allowed_uids and a group of yours to "
        "server.allowed_gids (the socket is opened to that group), then restarts it; or "
        "run your own with `hoodyd serve`"
    )


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


class Refused(Exception):
    """The daemon answered with an error status."""

    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.body = body
        message = body.get("error") if isinstance(body, dict) else None
        self.reason = body.get("reason") if isinstance(body, dict) else None
        self.message = str(message) if message else f"HTTP {status}"
        super().__init__(self.message)


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


# seconds a plain request may take; calls that wait on purpose (a start, a terminal command)
# pass their own bound, or None
REQUEST_TIMEOUT_S = 60.0


class DaemonClient:
    def __init__(self, target: Target) -> None:
        self.target = target

    def _connection(self, timeout: float | None) -> http.client.HTTPConnection:
        if self.target.url:
            parts = urlsplit(self.target.url)
            if parts.scheme != "http" or not parts.hostname:
                raise Unreachable(self.target, "--url needs http://HOST:PORT")
            return http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
        return _UnixConnection(self.target.socket, timeout)

    def _headers(self, body: bytes | None) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "hoodyd-cli"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if self.target.url and self.target.token:
            headers["Authorization"] = f"Bearer {self.target.token}"
        return headers

    def _open(
        self,
        method: str,
        path: str,
        query: Mapping[str, QueryValue] | None,
        body: Any,
        timeout: float | None,
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        url = path + query_string(query)
        data = None if body is None else msgspec.json.encode(body)
        connection = self._connection(timeout)
        try:
            connection.request(method, url, body=data, headers=self._headers(data))
            response = connection.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            connection.close()
            raise Unreachable(self.target, describe_failure(exc)) from None
        return connection, response

    def call(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, QueryValue] | None = None,
        body: Any = None,
        timeout: float | None = REQUEST_TIMEOUT_S,
    ) -> Any:
        """The decoded JSON answer of one request; `Refused` for an error status."""
        connection, response = self._open(method, path, query, body, timeout)
        try:
            raw = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise Unreachable(self.target, describe_failure(exc)) from None
        finally:
            connection.close()
        try:
            answer = msgspec.json.decode(raw) if raw else None
        except msgspec.DecodeError:
            answer = {"error": raw.decode(errors="replace").strip()}
        if response.status >= 400:
            raise Refused(response.status, answer)
        return answer

    def stream(
        self, path: str, *, query: Mapping[str, QueryValue] | None = None
    ) -> Iterator[bytes]:
        """The body of a streaming answer, chunk by chunk as it arrives, until it ends."""
        connection, response = self._open("GET", path, query, None, None)
        try:
            if response.status >= 400:
                raw = response.read()
                try:
                    answer = msgspec.json.decode(raw)
                except msgspec.DecodeError:
                    answer = {"error": raw.decode(errors="replace")}
                raise Refused(response.status, answer)
            while chunk := response.read1(65536):
                yield chunk
        except (OSError, http.client.HTTPException) as exc:
            raise Unreachable(self.target, describe_failure(exc)) from None
        finally:
            connection.close()


def query_string(query: Mapping[str, QueryValue] | None) -> str:
    """`?k=v&...` (empty without parameters); None leaves a parameter out, a list repeats it."""
    if not query:
        return ""
    pairs = [
        (key, ("true" if item else "false") if isinstance(item, bool) else str(item))
        for key, value in query.items()
        for item in (value if isinstance(value, list) else [value])
        if item is not None
    ]
    return "?" + urlencode(pairs) if pairs else ""


def describe_failure(exc: BaseException) -> str:
    """Why a connection to the daemon failed, in the words its hint is chosen by."""
    if isinstance(exc, FileNotFoundError):
        return "no such socket"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (nothing is listening)"
    if isinstance(exc, PermissionError):
        return DENIED
    return str(exc) or type(exc).__name__
