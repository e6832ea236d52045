"""Async XML-RPC client for supervisord over its Unix socket.

Marshalling is the standard library's; transport is aiohttp's UnixConnector so no call ever
blocks the event loop. Answers are decoded into Structs (`ProcessInfo`); every supervisord
fault is named in `Fault` and mapped to a hoodyd error in one table.
"""

from __future__ import annotations

import xmlrpc.client
from enum import IntEnum
from typing import Any

import aiohttp
import msgspec

from hoodyd.errors import (
    Conflict,
    HoodydError,
    InvalidRequest,
    NotFound,
    Reason,
    ServiceUnavailable,
    SupervisorFault,
    SupervisorUnavailable,
    UpstreamFailed,
)


class Fault(IntEnum):
    """supervisord's fault numbers (`supervisor.xmlrpc.Faults`)."""

    UNKNOWN_METHOD = 1
    INCORRECT_PARAMETERS = 2
    BAD_ARGUMENTS = 3
    SIGNATURE_UNSUPPORTED = 4
    SHUTDOWN_STATE = 6
    BAD_NAME = 10  # no such process or group
    BAD_SIGNAL = 11
    NO_FILE = 20  # the command's executable, or a log file, does not exist
    NOT_EXECUTABLE = 21
    FAILED = 30
    ABNORMAL_TERMINATION = 40
    SPAWN_ERROR = 50
    ALREADY_STARTED = 60
    NOT_RUNNING = 70
    SUCCESS = 80
    ALREADY_ADDED = 90
    STILL_RUNNING = 91
    CANT_REREAD = 92  # a config file failed to parse


# fault → (error class, reason) a client sees. Anything else is an internal error.
FAULTS: dict[int, tuple[type[HoodydError], Reason]] = {
    Fault.INCORRECT_PARAMETERS: (InvalidRequest, Reason.SUPERVISOR_INCORRECT_PARAMETERS),
    Fault.BAD_ARGUMENTS: (InvalidRequest, Reason.SUPERVISOR_BAD_ARGUMENTS),
    Fault.SHUTDOWN_STATE: (ServiceUnavailable, Reason.SUPERVISOR_SHUTTING_DOWN),
    Fault.BAD_NAME: (NotFound, Reason.PROCESS_NOT_FOUND),
    Fault.BAD_SIGNAL: (InvalidRequest, Reason.BAD_SIGNAL),
    Fault.NO_FILE: (UpstreamFailed, Reason.NO_FILE),
    Fault.NOT_EXECUTABLE: (UpstreamFailed, Reason.NOT_EXECUTABLE),
    Fault.FAILED: (UpstreamFailed, Reason.SUPERVISOR_FAILED),
    Fault.ABNORMAL_TERMINATION: (UpstreamFailed, Reason.ABNORMAL_TERMINATION),
    Fault.SPAWN_ERROR: (UpstreamFailed, Reason.SPAWN_ERROR),
    Fault.ALREADY_STARTED: (Conflict, Reason.ALREADY_RUNNING),
    Fault.NOT_RUNNING: (Conflict, Reason.NOT_RUNNING),
    Fault.ALREADY_ADDED: (Conflict, Reason.ALREADY_ADDED),
    Fault.STILL_RUNNING: (Conflict, Reason.STILL_RUNNING),
    Fault.CANT_REREAD: (UpstreamFailed, Reason.CONFIG_REJECTED),
}


def fault_error(code: int, text: str) -> SupervisorFault:
    """The hoodyd error a supervisord fault number maps to (anything unlisted: a 500)."""
    kind, reason = FAULTS.get(code, (HoodydError, Reason.SUPERVISOR_FAULT))
    return SupervisorFault(code, text, status=kind.status, reason=reason)


class ProcessInfo(msgspec.Struct, frozen=True):
    """One process as `getProcessInfo` describes it: times in seconds since the epoch, `pid`
    0 and `spawnerr` empty when there is none."""

    name: str
    group: str
    state: int
    statename: str
    pid: int
    start: int
    stop: int
    now: int
    exitstatus: int
    spawnerr: str
    description: str
    stdout_logfile: str
    stderr_logfile: str


class SupervisorClient:
    """One keep-alive connection pool to supervisord's `/RPC2`."""

    def __init__(
        self, socket_path: str, *, username: str = "", password: str = "", timeout: float = 30
    ) -> None:
        self.socket_path = socket_path
        self._auth = aiohttp.BasicAuth(username, password) if username else None
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        # how often each method was called: what a change costs supervisord, in calls
        self.calls: dict[str, int] = {}
        self._json_listing = True  # until supervisord says it lacks hoodyd's plugin

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
        self.calls[method] = self.calls.get(method, 0) + 1
        session = self._ensure_session()
        try:
            async with session.post(
                "http://localhost/RPC2", data=body, headers={"Content-Type": "text/xml"}
            ) as response:
                payload = await response.read()
                if response.status == 401:
                    raise SupervisorUnavailable(
                        "supervisord refused hoodyd's credentials", reason=Reason.SUPERVISOR_AUTH
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
            raise fault_error(fault.faultCode, fault.faultString) from None
        return result

    async def ping(self) -> bool:
        try:
            state = await self.call("supervisor.getState")
        except HoodydError:
            return False
        return bool(state.get("statename") == "RUNNING")

    async def find_process(self, name: str) -> ProcessInfo | None:
        """The process called `name`, or None if supervisord has no such process."""
        try:
            info = await self.call("supervisor.getProcessInfo", name)
        except SupervisorFault as fault:
            if fault.code == Fault.BAD_NAME:
                return None
            raise
        return msgspec.convert(info, ProcessInfo)

    async def all_process_info(self) -> list[ProcessInfo]:
        if self._json_listing:  # hoodyd's plugin: one JSON text instead of XML structs
            try:
                text = await self.call("hoodyd.getAllProcessInfoJSON")
            except SupervisorFault as fault:
                if fault.code != Fault.UNKNOWN_METHOD:
                    raise
                self._json_listing = False
            else:
                return msgspec.json.decode(text, type=list[ProcessInfo])
        infos = await self.call("supervisor.getAllProcessInfo")
        return msgspec.convert(infos, list[ProcessInfo])

    async def processes(self) -> dict[str, ProcessInfo]:
        """Every process supervisord runs, by process name."""
        return {info.name: info for info in await self.all_process_info()}

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

    async def add_group_from_file(self, path: str) -> list[str]:
        """Add the groups of one conf file (`hoodyd.programs.supervisor_plugin`)."""
        return list(await self.call("hoodyd.addGroupFromFile", path))

    async def remove_group(self, name: str) -> None:
        await self.call("supervisor.removeProcessGroup", name)

    async def stderr_tail(self, name: str, length: int = 4096) -> str:
        """The end of the process's stderr log; empty when the process is gone (BAD_NAME) or
        logs nothing (NO_FILE)."""
        try:
            text, _offset, _overflow = await self.call(
                "supervisor.tailProcessStderrLog", name, 0, length
            )
        except SupervisorFault as fault:
            if fault.code in (Fault.BAD_NAME, Fault.NO_FILE):
                return ""
            raise
        return str(text)
