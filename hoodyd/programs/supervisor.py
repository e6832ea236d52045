"""Async XML-RPC client for supervisord over its Unix socket.

Marshalling is the standard library's; transport is aiohttp's UnixConnector so no call ever
blocks the event loop. Every supervisord fault is mapped to a hoodyd error in one table.
"""

from __future__ import annotations

import xmlrpc.client
from typing import Any

import aiohttp
import structlog

from hoodyd.errors import (
    Conflict,
    HoodydError,
    InvalidRequest,
    NotFound,
    ServiceUnavailable,
    UpstreamFailed,
)

log = structlog.get_logger()

# supervisor.xmlrpc.Faults numbers → (error class, reason). Anything else is an internal error.
FAULTS: dict[int, tuple[type[HoodydError], str]] = {
    2: (InvalidRequest, "SUPERVISOR_INCORRECT_PARAMETERS"),
    3: (InvalidRequest, "SUPERVISOR_BAD_ARGUMENTS"),
    6: (ServiceUnavailable, "SUPERVISOR_SHUTTING_DOWN"),
    10: (NotFound, "PROCESS_NOT_FOUND"),  # BAD_NAME
    11: (InvalidRequest, "BAD_SIGNAL"),
    20: (UpstreamFailed, "NO_FILE"),  # the command's executable does not exist
    21: (UpstreamFailed, "NOT_EXECUTABLE"),
    30: (UpstreamFailed, "SUPERVISOR_FAILED"),
    40: (UpstreamFailed, "ABNORMAL_TERMINATION"),
    50: (UpstreamFailed, "SPAWN_ERROR"),
    60: (Conflict, "ALREADY_RUNNING"),  # ALREADY_STARTED
    70: (Conflict, "NOT_RUNNING"),
    90: (Conflict, "ALREADY_ADDED"),
    91: (Conflict, "STILL_RUNNING"),
    92: (UpstreamFailed, "CONFIG_REJECTED"),  # CANT_REREAD: a config file failed to parse
}


class SupervisorFault(HoodydError):
    """A fault answered by supervisord; `status` and `reason` come from FAULTS."""

    def __init__(self, code: int, text: str) -> None:
        kind, reason = FAULTS.get(code, (HoodydError, "SUPERVISOR_FAULT"))
        super().__init__(f"supervisord: {text}", reason=reason)
        self.status = kind.status
        self.code = code
        self.text = text


class SupervisorUnavailable(ServiceUnavailable):
    default_reason = "SUPERVISOR_UNAVAILABLE"


class SupervisorClient:
    """One keep-alive connection pool to supervisord's `/RPC2`."""

    def __init__(
        self, socket_path: str, *, username: str = "", password: str = "", timeout: float = 30
    ) -> None:
        self.socket_path = socket_path
        self._auth = aiohttp.BasicAuth(username, password) if username else None
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.UnixConnector(path=self.socket_path, limit=32),
                timeout=self._timeout,
                auth=self._auth,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def call(self, method: str, *params: Any) -> Any:
        body = xmlrpc.client.dumps(params, method, allow_none=False)
        session = self._ensure_session()
        try:
            async with session.post(
                "http://localhost/RPC2", data=body, headers={"Content-Type": "text/xml"}
            ) as response:
                payload = await response.read()
                if response.status == 401:
                    raise SupervisorUnavailable(
                        "supervisord refused hoodyd's credentials", reason="SUPERVISOR_AUTH"
                    )
                if response.status != 200:
                    raise SupervisorUnavailable(
                        f"supervisord answered HTTP {response.status} to {method}"
                    )
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise SupervisorUnavailable(
                f"supervisord is not answering on {self.socket_path}"
            ) from exc
        try:
            (result,), _ = xmlrpc.client.loads(payload, use_builtin_types=True)
        except xmlrpc.client.Fault as fault:
            raise SupervisorFault(fault.faultCode, fault.faultString) from None
        return result

    async def ping(self) -> bool:
        try:
            state = await self.call("supervisor.getState")
        except HoodydError:
            return False
        return bool(state.get("statename") == "RUNNING")

    async def process_info(self, name: str) -> dict[str, Any]:
        info: dict[str, Any] = await self.call("supervisor.getProcessInfo", name)
        return info

    async def all_process_info(self) -> list[dict[str, Any]]:
        infos: list[dict[str, Any]] = await self.call("supervisor.getAllProcessInfo")
        return infos

    async def start(self, name: str, *, wait: bool = False) -> None:
        await self.call("supervisor.startProcess", name, wait)

    async def stop(self, name: str, *, wait: bool = True) -> None:
        await self.call("supervisor.stopProcess", name, wait)

    async def reload_config(self) -> tuple[list[str], list[str], list[str]]:
        """Re-read config files: (added, changed, removed) group names."""
        result = await self.call("supervisor.reloadConfig")
        added, changed, removed = result[0]
        return list(added), list(changed), list(removed)

    async def add_group(self, name: str) -> None:
        await self.call("supervisor.addProcessGroup", name)

    async def remove_group(self, name: str) -> None:
        await self.call("supervisor.removeProcessGroup", name)

    async def tail_stderr(self, name: str, length: int = 2048) -> str:
        text, _offset, _overflow = await self.call(
            "supervisor.tailProcessStderrLog", name, 0, length
        )
        return str(text)
