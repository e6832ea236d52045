"""Connections cannot exhaust `hoodyd serve`: requests have head and body deadlines, idle
keep-alive connections close, each listener has its own budget so the Unix socket always
has room to answer, and the open-file limit is raised at start-up."""

from __future__ import annotations

import json
import re
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import DaemonProcess, start_daemon, wait_until
from tests.ports import free_port

HEALTH = b"GET /api/v1/daemon/health HTTP/1.1\r\nHost: hoodyd\r\nConnection: close\r\n\r\n"
PARTIAL = b"GET /api/v1/daemon/hea"
needs_prlimit = pytest.mark.skipif(
    shutil.which("prlimit") is None, reason="needs prlimit (util-linux) to start with low limits"
)


def serve_with(
    short_tmp: Path, server: str, *, tcp: bool = False, launcher: tuple[str, ...] = ()
) -> tuple[DaemonProcess, int]:
    """`hoodyd serve` with `server` as its config's [server] section (and TCP on a free port)."""
    port = free_port()
    config = short_tmp / "hoodyd.toml"
    tcp_line = f'tcp = "127.0.0.1:{port}"\n' if tcp else ""
    config.write_text(f"[server]\n{tcp_line}{server}\n")
    config.chmod(0o600)
    return start_daemon(short_tmp / "state", "--config", str(config), launcher=launcher), port


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    """Client sockets a test opened, closed at its end."""
    opened: list[socket.socket] = []
    yield opened
    for sock in opened:
        sock.close()


def half_open(address: str | tuple[str, int], opened: list[socket.socket]) -> socket.socket:
    """A connection that sent part of a request line and nothing more."""
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    opened.append(sock)
    sock.settimeout(10)
    sock.connect(address)
    sock.sendall(PARTIAL)
    return sock


def read_to_end(sock: socket.socket, timeout: float) -> bytes | None:
    """Everything the server sends until it closes, or None if it keeps the connection
    open past `timeout` seconds."""
    deadline = time.monotonic() + timeout
    data = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return None
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def health_on(socket_path: Path, timeout: float = 30.0) -> int:
    """Status of /api/v1/daemon/health on the Unix socket (`timeout` only guards a hang)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(socket_path))
        sock.sendall(HEALTH)
        answer = read_to_end(sock, timeout)
    assert answer is not None, "health did not answer"
    return int(answer.split(b" ", 2)[1])


def still_open(sock: socket.socket) -> bool:
    """Whether the server keeps `sock` open without having sent anything, asked without
    waiting: False once it answered, closed or reset the connection."""
    timeout = sock.gettimeout()
    sock.setblocking(False)  # with a timeout set, recv would first wait for data
    try:
        sock.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return True
    except ConnectionResetError:
        return False
    finally:
        sock.settimeout(timeout)
    return False


def open_after_the_closes(
    flood: list[socket.socket], expected_open: int, timeout: float = 30.0
) -> list[socket.socket]:
    """The connections of `flood` still open once the server closed all but `expected_open`
    (those it closes at once), or as they stand when the hang guard `timeout` expires."""

    def kept() -> list[socket.socket]:
        return [sock for sock in flood if still_open(sock)]

    # a connection closed stays closed: what is read after the wait is no more than it saw
    wait_until(lambda: len(kept()) <= expected_open, timeout=timeout)
    return kept()


def log_events(daemon: DaemonProcess, name: str) -> list[dict[str, object]]:
    events = []
    for line in daemon.logs().splitlines():
        if line.startswith("{") and f'"{name}"' in line:
            event = json.loads(line)
            if event.get("event") == name:
                events.append(event)
    return events


def test_half_open_connections_are_answered_408_and_closed(
    short_tmp: Path, sockets: list[socket.socket]
) -> None:
    """A connection that sent part of a request line gets a 408 JSON answer and is closed
    once the head deadline passed; one that sent nothing is closed without an answer."""
    daemon, _ = serve_with(short_tmp, "head_timeout = 1.0\nkeepalive_timeout = 60.0")
    try:
        partial = [half_open(str(daemon.socket), sockets) for _ in range(20)]
        silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sockets.append(silent)
        silent.connect(str(daemon.socket))
        # one hang guard for all of them, 20 times the head deadline: without the deadline
        # nothing would ever close these connections (keep-alive does not apply before a
        # first request, and is 60 s here anyway)
        deadline = time.monotonic() + 20
        for sock in partial:
            answer = read_to_end(sock, timeout=deadline - time.monotonic())
            assert answer is not None, "a half-open connection was kept open"
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 408 ")
            assert json.loads(body)["reason"] == "REQUEST_TIMEOUT"
        assert read_to_end(silent, timeout=deadline - time.monotonic()) == b""
        assert health_on(daemon.socket) == 200
    finally:
        daemon.stop()


def test_a_later_head_on_a_kept_connection_has_its_own_deadline(
    short_tmp: Path, sockets: list[socket.socket]
) -> None:
    """On a keep-alive connection that was answered once, a second request line that stops
    short is answered 408 and closed once its own head deadline passed."""
    daemon, _ = serve_with(short_tmp, "head_timeout = 1.0\nkeepalive_timeout = 60.0")
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sockets.append(sock)
        sock.settimeout(10)
        sock.connect(str(daemon.socket))
        sock.sendall(b"GET /api/v1/daemon/health HTTP/1.1\r\nHost: hoodyd\r\n\r\n")
        first = b""
        while b"\r\n\r\n" not in first:
            first += sock.recv(65536)
        head, _, body = first.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ")
        length = re.search(rb"Content-Length: (\d+)", head, re.IGNORECASE)
        assert length is not None
        while len(body) < int(length[1]):
            body += sock.recv(65536)
        sock.sendall(PARTIAL)
        # a hang guard 10 times the deadline: keep-alive (60 s) would not close it sooner
        answer = read_to_end(sock, timeout=10)
        assert answer is not None, "a second half-sent head kept its connection open"
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408 ")
        assert json.loads(body)["reason"] == "REQUEST_TIMEOUT"
    finally:
        daemon.stop()


def test_a_body_that_does_not_arrive_is_answered_408(
    short_tmp: Path, sockets: list[socket.socket]
) -> None:
    """A request whose body stops short is answered 408 REQUEST_TIMEOUT once the body
    deadline passed, and its connection closes."""
    daemon, _ = serve_with(short_tmp, "body_timeout = 1.0")
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sockets.append(sock)
        sock.connect(str(daemon.socket))
        sock.sendall(
            b"POST /api/v1/daemon/programs/add HTTP/1.1\r\nHost: hoodyd\r\n"
            b'Content-Type: application/json\r\nContent-Length: 200\r\n\r\n{"name": '
        )
        answer = read_to_end(sock, timeout=10)
        assert answer is not None, "a stalled body kept its connection open"
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408 ")
        assert json.loads(body)["reason"] == "REQUEST_TIMEOUT"
    finally:
        daemon.stop()


def test_idle_keep_alive_connections_are_closed(
    short_tmp: Path, sockets: list[socket.socket]
) -> None:
    """After an answered request, a keep-alive connection left idle is closed once
    `keepalive_timeout` passed."""
    # the head deadline (60 s) cannot be what closes it
    daemon, _ = serve_with(short_tmp, "keepalive_timeout = 1.0\nhead_timeout = 60.0")
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sockets.append(sock)
        sock.connect(str(daemon.socket))
        sock.sendall(b"GET /api/v1/daemon/health HTTP/1.1\r\nHost: hoodyd\r\n\r\n")
        # a hang guard 10 times the configured 1 s, and short of the 15 s default: a daemon
        # that ignored the setting keeps the connection open past it
        answer = read_to_end(sock, timeout=10)
        assert answer is not None, "an idle keep-alive connection was kept open"
        assert answer.startswith(b"HTTP/1.1 200 ")
    finally:
        daemon.stop()


def test_connections_beyond_the_tcp_bound_are_closed_and_the_socket_answers(
    short_tmp: Path, sockets: list[socket.socket]
) -> None:
    """With max_tcp_connections = 20, 60 half-open TCP connections leave 20 open, the rest
    closed at once, and health on the Unix socket answers while those 20 are held."""
    # a long head deadline: the 20 kept ones stay open for the whole test, so an answer on
    # the Unix socket cannot have waited for one of them to go
    daemon, port = serve_with(short_tmp, "max_tcp_connections = 20\nhead_timeout = 300.0", tcp=True)
    try:
        flood = [half_open(("127.0.0.1", port), sockets) for _ in range(60)]
        assert len(open_after_the_closes(flood, expected_open=20)) == 20
        assert health_on(daemon.socket) == 200
        # answered while the TCP budget was full: all 20 still held, none was let go
        assert sum(still_open(sock) for sock in flood) == 20
        assert log_events(daemon, "connections_at_limit")
    finally:
        daemon.stop()


@needs_prlimit
def test_a_flood_at_a_low_open_file_limit_leaves_the_socket_answering(
    short_tmp: Path, sockets: list[socket.socket]
) -> None:
    """At 256 open files (soft and hard), 300 half-open TCP connections do not stop the Unix
    socket answering, and the log holds a bounded number of accept errors."""
    # a long head deadline: the connections the flood holds are not let go during the
    # test, so the Unix socket has to answer while they are all open
    daemon, port = serve_with(
        short_tmp, "head_timeout = 300.0", tcp=True, launcher=("prlimit", "--nofile=256:256", "--")
    )
    try:
        assert health_on(daemon.socket) == 200  # the daemon is up before the flood
        flood = [half_open(("127.0.0.1", port), sockets) for _ in range(300)]
        for _ in range(10):
            assert health_on(daemon.socket) == 200
        limits = log_events(daemon, "connection_limits")[0]
        assert isinstance(limits["max_tcp"], int) and limits["max_tcp"] <= 128
        # the answers came while the flood held its whole TCP budget
        assert sum(still_open(sock) for sock in flood) >= limits["max_tcp"]
        logs = daemon.logs()
        assert len(log_events(daemon, "accept_failed")) <= 5
        assert logs.count("Too many open files") <= 5
        assert len(logs.splitlines()) < 500
    finally:
        daemon.stop()


@needs_prlimit
def test_the_soft_open_file_limit_is_raised_to_the_hard_one(short_tmp: Path) -> None:
    """Started with 256 soft / 4096 hard open files, the daemon runs at 4096 and logs both."""
    daemon, _ = serve_with(short_tmp, "", launcher=("prlimit", "--nofile=256:4096", "--"))
    try:
        limits = Path(f"/proc/{daemon.process.pid}/limits").read_text()
        row = re.search(r"^Max open files\s+(\d+)\s+(\d+)", limits, re.MULTILINE)
        assert row is not None
        assert row.groups() == ("4096", "4096")
        event = log_events(daemon, "open_file_limit")[0]
        assert (event["soft"], event["hard"], event["was"]) == (4096, 4096, 256)
    finally:
        daemon.stop()
