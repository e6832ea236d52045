"""Shared fixtures: short temp dirs (Unix socket paths are limited to 107 bytes), configs,
and a real `hoodyd serve` process on a Unix socket."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from hoodyd import config as hoodyd_config
from hoodyd.config import Config
from hoodyd.polling import poll_until
from hoodyd.programs.embedded import stop_embedded
from hoodyd.terminals.cleanup import find_holders, stop_holders
from tests.terminal_pty import PtyProgram

# The suite starts a few hundred `hoodyd` processes. Where PYTHONDONTWRITEBYTECODE is set (as
# on some CI boxes), each would compile the package from source again (about 0.25 s of CPU a
# daemon), and each worker would rewrite every test module's asserts anew: let them cache.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
sys.dont_write_bytecode = False

if TYPE_CHECKING:
    from hoodyd.programs.service import ProgramService
    from hoodyd.terminals.service import TerminalService

T = TypeVar("T")


def wait_until(check: Callable[[], T], *, timeout: float, interval: float = 0.05) -> T:
    """The synchronous counterpart of `hoodyd.polling.poll_until`, for helpers that cannot
    await: call `check` until it answers something truthy or `timeout` seconds passed; the
    last answer. `check` runs at least once, even with timeout 0."""
    deadline = time.monotonic() + timeout
    while True:
        answer = check()
        remaining = deadline - time.monotonic()
        if answer or remaining <= 0:
            return answer
        time.sleep(min(interval, remaining))


async def until(
    predicate: Callable[[], object], what: str, *, timeout: float = 15.0, interval: float = 0.02
) -> None:
    """Ask `predicate` again (through `poll_until`) until it holds; fail naming `what` once
    `timeout` seconds passed. The timeout is a hang guard for a loaded machine."""

    async def holds() -> bool | None:
        return True if predicate() else None

    if await poll_until(holds, timeout=timeout, interval=interval) is None:
        raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short temp dir; on teardown every embedded supervisord below it is stopped."""
    path = Path(tempfile.mkdtemp(prefix="hd-", dir="/tmp"))
    try:
        yield path
    finally:
        stop_embedded_supervisord(path)
        stop_terminal_holders(path)
        shutil.rmtree(path, ignore_errors=True)


def make_config(state_dir: Path, **sections: dict[str, Any]) -> Config:
    """The embedded defaults on `state_dir`, changed by `sections`; terminal shells leave the
    box's own ~/.bashrc out unless a test asks for it (see `plain_shells_config`)."""
    overrides: dict[tuple[str, ...], Any] = {("state_dir",): str(state_dir)}
    overrides[("server", "socket")] = str(state_dir / "hoodyd.sock")
    overrides[("log_format",)] = "json"
    overrides[("terminals", "user_rc")] = False
    for section, values in sections.items():
        for key, value in values.items():
            overrides[(section, key)] = value
    return hoodyd_config.load(None, overrides=overrides, environ={})


@contextlib.asynccontextmanager
async def running_terminal_service(
    state_dir: Path, **terminals: object
) -> AsyncIterator[TerminalService]:
    """A started TerminalService keeping its state under `state_dir`, closed on leaving;
    `terminals` overrides its settings. The box's own ~/.bashrc is left out (it may be slow
    or noisy): the tests are about hoodyd's own hooks."""
    from hoodyd.terminals.service import TerminalService

    config = make_config(state_dir, terminals={"user_rc": False, **terminals})
    service = TerminalService(config.terminals, config.state_path)
    await service.start()
    try:
        yield service
    finally:
        await service.close()


def stop_terminal_holders(root: Path) -> None:
    """Terminal sessions outlive hoodyd on purpose: end every holder serving a socket below
    `root` (any state dir a test used there)."""
    for holders_dir in root.glob("**/terminals/holders"):
        stop_holders(find_holders(holders_dir.parent.parent), grace=0.5)


def stop_embedded_supervisord(state_dir: Path) -> None:
    """Embedded supervisords are detached on purpose (they outlive hoodyd): end every one
    under `state_dir`, whatever subdirectory a test used as its state dir, without waiting
    for supervisord's one-second shutdown tick."""
    for pidfile in state_dir.glob("**/supervisor/supervisord.pid"):
        stop_embedded(pidfile.parent.parent, grace=0)


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium, which the browser tests drive. The suite requires it: the README's
    test command installs it, and a run without it fails here with how to get it."""
    path = shutil.which("chromium") or "/usr/bin/chromium"
    if not os.path.exists(path):
        pytest.fail("the browser tests drive Debian's chromium: apt-get install chromium")
    return path


_shared: dict[str, Path] = {}
_shared_lock = threading.Lock()


def _shared_dir() -> Path:
    """A temp dir this test process's tests share (removed when the session ends)."""
    if "dir" not in _shared:
        _shared["dir"] = Path(tempfile.mkdtemp(prefix="hd-suite-", dir="/tmp"))
    return _shared["dir"]


def synced_apt_index() -> Path:
    """This test process's `apt.msgpack`: the box's apt source as the embedded defaults
    configure it, synced once for real by an AppService in a temp dir (about 2 s of CPU
    that each test daemon would otherwise spend on its own first sync)."""
    with _shared_lock:
        if "apt" not in _shared:
            root = _shared_dir() / "apt"
            with ThreadPoolExecutor(1) as pool:  # a loop of its own, even inside a test's
                pool.submit(asyncio.run, _sync_apt(root)).result()
            _shared["apt"] = root / "index" / "apt.msgpack"
        return _shared["apt"]


async def _sync_apt(root: Path) -> None:
    from hoodyd.apps.service import AppService

    config = make_config(root)
    service = AppService(root, config.run, pass_env=config.server.pass_env)
    await service.start()

    async def synced() -> bool | None:
        return True if service.diagnostics("apt").last_success_at else None

    try:
        assert await poll_until(synced, timeout=120, interval=0.05), "apt did not sync"
    finally:
        await service.close()


def seed_apt_index(state_dir: Path) -> None:
    """Give `state_dir` the synced apt index a daemon would have left on an earlier run, so
    it starts without syncing apt again (its records stay the box's own)."""
    index_dir = state_dir / "index"
    index_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    target = index_dir / "apt.msgpack"
    shutil.copyfile(synced_apt_index(), target)
    target.chmod(0o600)


def plain_shells_config() -> Path:
    """A config file whose only setting keeps the box's own ~/.bashrc out of terminal
    shells (`terminals.user_rc = false`). The tests are about hoodyd's own hooks; a box's rc
    may be slow, noisy or hang (a `pyenv rehash` waiting on a lock a killed shell left)."""
    with _shared_lock:
        if "plain" not in _shared:
            path = _shared_dir() / "plain-shells.toml"
            path.write_text("[terminals]\nuser_rc = false\n")
            path.chmod(0o600)
            _shared["plain"] = path
        return _shared["plain"]


@pytest.fixture(scope="session", autouse=True)
def _remove_shared_dir() -> Iterator[None]:
    yield
    if "dir" in _shared:
        shutil.rmtree(_shared["dir"], ignore_errors=True)


@dataclass
class DaemonProcess:
    """A `hoodyd serve` child process and how to reach it."""

    state_dir: Path
    socket: Path
    process: subprocess.Popen[bytes]
    log_path: Path

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        """Signal the daemon and reap it; one that outlives `timeout` is killed, reaped and
        reported with the end of its log."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            tail = "\n".join(self.logs().splitlines()[-30:])
            message = f"hoodyd outlived {timeout} s after signal {sig}:\n{tail}"
            raise AssertionError(message) from None

    def logs(self) -> str:
        return self.log_path.read_text()


def start_daemon(
    state_dir: Path,
    *extra: str,
    env: dict[str, str] | None = None,
    socket: Path | None = None,
    launcher: Sequence[str] = (),
) -> DaemonProcess:
    """`hoodyd serve` on `state_dir`, run through `launcher` (an argv prefix) if given. A
    state dir on the embedded sources starts with the box's synced apt index
    (`seed_apt_index`), as after an earlier run; a test's own catalogue world syncs for real.
    Without a `--config` among `extra`, its terminal shells leave the box's ~/.bashrc out
    (`plain_shells_config`)."""
    sock = socket or state_dir / "hoodyd.sock"
    state_dir.mkdir(parents=True, exist_ok=True)
    own_sources = (state_dir / "run" / "config.json").exists()  # a test's catalogue world
    if not own_sources and not (state_dir / "index" / "apt.msgpack").exists():
        seed_apt_index(state_dir)
    if "--config" not in extra:
        extra = ("--config", str(plain_shells_config()), *extra)
    log_path = state_dir / f"daemon-{time.monotonic_ns()}.log"
    handle = log_path.open("wb")
    process = subprocess.Popen(
        [
            *launcher,
            sys.executable,
            "-m",
            "hoodyd",
            "serve",
            "--state-dir",
            str(state_dir),
            "--socket",
            str(sock),
            *extra,
        ],
        stdout=handle,
        stderr=subprocess.STDOUT,
        env={**os.environ, "HOODYD_LOG_FORMAT": "json", **(env or {})},
    )
    handle.close()
    wait_until(lambda: sock.exists() or process.poll() is not None, timeout=30, interval=0.02)
    if not sock.exists():
        process.kill()
        raise RuntimeError(f"hoodyd did not start:\n{log_path.read_text()}")
    return DaemonProcess(state_dir, sock, process, log_path)


@pytest.fixture
def programs() -> Iterator[list[PtyProgram]]:
    """Programs a test started on PTYs (`tests.terminal_pty`); all killed at teardown."""
    started: list[PtyProgram] = []
    yield started
    for program in started:
        program.close()


@pytest.fixture
def daemon(short_tmp: Path) -> Iterator[DaemonProcess]:
    proc = start_daemon(short_tmp)
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
async def unix_session(daemon: DaemonProcess) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(
        connector=aiohttp.UnixConnector(path=str(daemon.socket)), base_url="http://localhost"
    ) as session:
        yield session


@pytest.fixture
def program_config(short_tmp: Path) -> Config:
    """A config whose embedded supervisord lives in the short temp dir, polled quickly."""
    return make_config(
        short_tmp,
        supervisor={"poll_interval": 0.2},
        notifications={"allow_insecure_urls": True},
    )


@pytest.fixture
async def program_service(program_config: Config) -> AsyncIterator[ProgramService]:
    """An open program service on the short temp dir's own embedded supervisord; closed
    before that supervisord is stopped."""
    from hoodyd.programs.service import ProgramService

    service = ProgramService(program_config)
    await service.open()
    try:
        yield service
    finally:
        await service.close()


@pytest.fixture
async def client(program_config: Config) -> AsyncIterator[TestClient[Any, Any]]:
    """A test client on the program control area, its embedded supervisord started for real;
    the app is closed before the temp dir's supervisord is stopped."""
    from hoodyd.app import AreaName, create_app

    areas: tuple[AreaName, ...] = ("daemon",)
    app = create_app(program_config, areas=areas)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


def sleeper(**fields: Any) -> dict[str, Any]:
    """A program body running `sleep` as the current user."""
    import pwd

    body = {
        "name": f"sleeper{time.monotonic_ns() % 10**9}",
        "command": "/bin/sleep 300",
        "user": pwd.getpwuid(os.geteuid()).pw_name,
    }
    body.update(fields)
    return body


async def add_program(client: Any, **fields: Any) -> dict[str, Any]:
    """Add a `sleeper` program with `fields` over the API; the added program."""
    response = await client.post("/api/v1/daemon/programs/add", json=sleeper(**fields))
    body = await response.json()
    assert response.status == 200, body
    program: dict[str, Any] = body["program"]
    return program


PORT_SERVER = f"{sys.executable} {Path(__file__).parent / 'data' / 'portserver.py'}"


@pytest.fixture
async def aiohttp_client(short_tmp: Path, aiohttp_client: Any) -> Any:
    """The plugin's client factory, set up after `short_tmp` so that its apps close before
    the temp dir's supervisords are stopped (else a closing app could start one again)."""
    return aiohttp_client


@pytest.fixture
async def http(world: Any) -> AsyncIterator[aiohttp.ClientSession]:
    """A client on the Unix socket of the module's `world` daemon (run-area tests)."""
    async with aiohttp.ClientSession(
        connector=aiohttp.UnixConnector(path=world.socket), base_url="http://localhost"
    ) as session:
        yield session


async def raw_http(
    connection: tuple[asyncio.StreamReader, asyncio.StreamWriter], data: bytes
) -> tuple[int, bytes, bytes]:
    """Send `data` as it is (no client library normalizes or re-encodes it) on an open
    connection and read the answer to its end: (status, header block, body)."""
    reader, writer = connection
    try:
        writer.write(data)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout=30)
    finally:
        writer.close()
    headers, _, body = raw.partition(b"\r\n\r\n")
    return int(headers.split(b" ")[1]), headers, body
