"""A daemon for the run tests: a real `hoodyd serve` on a Unix socket whose only app source is
a manifest of small test programs in a temp dir, synced before the tests start."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from hoodyd.polling import poll_until
from tests.conftest import (
    DaemonProcess,
    start_daemon,
    stop_embedded_supervisord,
    stop_terminal_holders,
    wait_until,
)

RUN = "/api/v1/run"
TERMINAL = "/api/v1/terminal"
FINAL = ("completed", "failed", "timed_out")
# an argument with quotes, a semicolon and a `$`: it reaches the program unchanged only if
# the command line quotes it
TRICKY = "it's me; $HOME"


def _program(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def manifest(bin_dir: Path) -> dict[str, Any]:
    hello = _program(bin_dir / "hello-run", 'echo "hello-run says $*"\n')
    gui = _program(bin_dir / "hello-gui", 'echo "hello-gui on display $DISPLAY"\n')
    named_os = _program(bin_dir / "os-app", 'echo "the app named os"\n')
    named_app = _program(bin_dir / "app-app", 'echo "the app named app"\n')
    return {
        "version": 1,
        "apps": [
            {"id": "hello-run", "title": "Hello Run", "argv": [str(hello), "--greet", TRICKY],
             "description": "prints its arguments", "tags": ["test"]},
            {"id": "hello-run-twin", "title": "Hello Run Twin", "argv": [str(hello), "twin"],
             "description": "the second hello"},
            {"id": "hello-gui", "title": "Hello GUI", "argv": [str(gui)], "kind": "gui"},
            {"id": "os", "title": "OS", "argv": [str(named_os)]},
            {"id": "app", "title": "App", "argv": [str(named_app)]},
            # a pick that can only fail until its package is installed: never scheduled
            {"id": "needs-package", "title": "Needs Package", "argv": [str(hello), "ran"],
             "requirements": [{"kind": "package", "name": "needs-package",
                               "message": "apt package needs-package is not installed",
                               "resolution": "apt-get install -y needs-package"}]},
        ],
    }  # fmt: skip


def write_run_config(state_dir: Path, root: Path, **policy: Any) -> None:
    bin_dir = root / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    (root / "apps.json").write_text(json.dumps(manifest(bin_dir)))
    config = {
        "version": 1,
        "sources": [
            {"source_id": "team", "enabled": True, "priority": 70, "provider": "registry",
             "source_type": "trusted-list-file", "config": {"path": str(root / "apps.json")}},
        ],
        "profiles": [],
        "policy": {"require_verified": False, "require_integrity": False,
                   "allow_delegated_execution": True, "allow_redirect": True, **policy},
        "recipes": [],
    }  # fmt: skip
    target = state_dir / "run" / "config.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(config))


@dataclass
class RunWorld:
    daemon: DaemonProcess
    root: Path

    @property
    def socket(self) -> str:
        return str(self.daemon.socket)


def wait_synced(socket: str, app: str = "hello-run", timeout: float = 30) -> None:
    """Block until the manifest's apps are searchable (the start-up sync has landed)."""
    import http.client
    import socket as socket_module

    class UnixConnection(http.client.HTTPConnection):
        def connect(self) -> None:
            self.sock = socket_module.socket(socket_module.AF_UNIX, socket_module.SOCK_STREAM)
            self.sock.connect(socket)

    def candidates() -> list[Any]:
        connection = UnixConnection("localhost")
        try:
            connection.request("GET", f"{RUN}/search?app={app}")
            body = json.loads(connection.getresponse().read())
        finally:
            connection.close()
        found: list[Any] = body.get("candidates") or []
        return found

    if not wait_until(candidates, timeout=timeout, interval=0.1):
        raise RuntimeError("the manifest source did not sync")


@contextmanager
def run_world(*extra: str, env: dict[str, str] | None = None, **policy: Any) -> Iterator[RunWorld]:
    root = Path(tempfile.mkdtemp(prefix="hr-", dir="/tmp"))
    try:
        write_run_config(root, root / "world", **policy)
        # the user's own shell start-up files can be slow (pyenv, conda): not under test here
        toml = root / "hoodyd.toml"
        toml.write_text("[terminals]\nuser_rc = false\n")
        daemon = start_daemon(root, "--config", str(toml), *extra, env=env)
        try:
            wait_synced(str(daemon.socket))
            yield RunWorld(daemon, root / "world")
        finally:
            daemon.stop()
    finally:
        stop_embedded_supervisord(root)
        stop_terminal_holders(root)
        shutil.rmtree(root, ignore_errors=True)


async def wait_result(
    session: aiohttp.ClientSession, command_id: str, timeout: float = 20
) -> dict[str, Any]:
    """Poll the terminal's result until the command reaches a final state; the last result
    read if it does not within `timeout`."""

    async def result() -> dict[str, Any]:
        async with session.get(f"{TERMINAL}/result/{command_id}") as response:
            body: dict[str, Any] = await response.json()
        return body

    async def final() -> dict[str, Any] | None:
        body = await result()
        return body if body.get("status") in FINAL else None

    return await poll_until(final, timeout=timeout, interval=0.05) or await result()
