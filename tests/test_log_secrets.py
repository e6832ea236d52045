"""No secret in any log: requests refused for their form, carrying the bearer token in a
query or a header, are logged by method, path without query and reason, and the token
appears in no file under the state dir nor in the daemon's own output."""

from __future__ import annotations

import json
import secrets
import socket
import stat
from pathlib import Path

from tests.conftest import start_daemon
from tests.ports import free_port
from tests.test_connections import read_to_end


def send_raw(port: int, data: bytes, timeout: float = 10.0) -> bytes:
    """Send `data` as it is on a new TCP connection; what comes back until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        answer = read_to_end(sock, timeout)
    assert answer is not None, f"no answer to {data[:60]!r}"
    return answer


def test_malformed_requests_never_put_the_token_in_a_log(short_tmp: Path) -> None:
    """After requests refused for bad bytes, over-long lines, a bad header or a stalled head,
    each carrying the token, the token is in no file under the state dir and not in the
    daemon's output, while the refusals are logged with method, bare path and reason."""
    token = secrets.token_urlsafe(24)
    port = free_port()
    config = short_tmp / "hoodyd.toml"
    config.write_text(
        f'log_level = "debug"\n[server]\ntcp = "127.0.0.1:{port}"\ntoken = "{token}"\n'
        "head_timeout = 1.0\n"
    )
    config.chmod(0o600)
    state = short_tmp / "state"
    daemon = start_daemon(state, "--config", str(config))
    t = token.encode()
    requests = [
        # a control byte in the query, next to the token
        b"GET /api/v1/terminal/ws?token=" + t + b"&a=\x01 HTTP/1.1\r\nHost: x\r\n\r\n",
        # a DEL after the token in the Authorization header
        b"GET /api/v1/daemon/programs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + t + b"\x7f\r\n\r\n",
        # bytes that are not UTF-8 after the token
        b"GET /api/v1/daemon/programs HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Authorization: Bearer " + t + b"\xff\xfe\r\n\r\n",
        # an over-long request line and an over-long header, both starting with the token
        b"GET /api/v1/terminal/ws?token=" + t + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /api/v1/daemon/programs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + t + b"b" * 9000 + b"\r\n\r\n",
        # the token in the query of a request with a malformed header
        b"GET /api/v1/daemon/programs?token=" + t + b" HTTP/1.1\r\nHost: x\r\nBad Header: v"
        b"\r\n\r\n",
        # a request line that is not HTTP at all, the token in it
        b"Authorization: Bearer " + t + b"\r\n\r\n",
        # the token in a query the route does not take, and as a wrong scheme
        b"GET /api/v1/daemon/programs?token=" + t + b" HTTP/1.1\r\nHost: x\r\n"
        b"Connection: close\r\n\r\n",
        b"GET /api/v1/daemon/programs HTTP/1.1\r\nHost: x\r\nAuthorization: Basic "
        + t + b"\r\nConnection: close\r\n\r\n",
        # a head that never ends: refused when the head deadline passes
        b"GET /api/v1/terminal/ws?token=" + t + b"&x=1 HTTP/1.1\r\nAuthorization: Bearer " + t,
    ]  # fmt: skip
    try:
        statuses = []
        for request in requests:
            answer = send_raw(port, request)
            statuses.append(int(answer.split(b" ", 2)[1]))
        assert statuses == [400, 400, 400, 431, 431, 400, 400, 401, 401, 408]
    finally:
        daemon.stop()
    for path in [*state.rglob("*"), daemon.log_path]:
        if stat.S_ISREG(path.lstat().st_mode) and path.name != "token":
            assert t not in path.read_bytes(), f"the token is in {path}"
    refusals = [
        json.loads(line)
        for line in daemon.logs().splitlines()
        if line.startswith("{") and '"request_refused"' in line
    ]
    assert {(r["method"], r["path"], r["reason"]) for r in refusals} >= {
        ("GET", "/api/v1/terminal/ws", "MALFORMED_REQUEST"),
        ("GET", "/api/v1/daemon/programs", "MALFORMED_REQUEST"),
        ("GET", "/api/v1/terminal/ws", "HEADERS_TOO_LARGE"),
        ("GET", "/api/v1/terminal/ws", "REQUEST_TIMEOUT"),
    }
    unauthorized = [
        json.loads(line)
        for line in daemon.logs().splitlines()
        if line.startswith("{") and '"BAD_TOKEN"' in line
    ]
    assert unauthorized and all(e["path"] == "/api/v1/daemon/programs" for e in unauthorized)
