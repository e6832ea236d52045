"""The HTTP edge refuses what it must before any handler runs: no token on TCP, headers that
cannot be decoded, bodies nested too deeply, defer bounds outside the shared limits."""

from __future__ import annotations

import asyncio
import io
import re
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from hoodyd.api.decoding import MAX_JSON_DEPTH, json_depth
from hoodyd.app import create_app
from hoodyd.config import Config
from tests.conftest import raw_http, seed_apt_index, sleeper

TOKEN = "edge-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
OPEN_ROUTES = {
    (method, path)
    for method in ("GET", "HEAD")
    for path in [*(f"/api/v1/{area}/health" for area in ("daemon", "terminal", "run")),
                 "/api/v1/run/login",  # the login page: where the token is typed
                 "/", "/api/v1/run/console"]  # redirects only: followed to the login page
}  # fmt: skip
# paths that merely look like an open route: each must still need the token
LOOKALIKES = [
    "/api/v1/run/go/app/id/pick/first/channel/health",
    "/api/v1/run/t/1/go/app/id/pick/first/channel/health",
    "/api/v1/run/go/id%2Fhealth",
    "/api/v1/run/go/app/id/pick/first?x=/api/v1/run/health",
    "/api/v1/daemon/health/",
    "/api/v1/daemon/health/x",
    "/api/v1/daemon/programs/health",
    "/api/v1/x/../daemon/health",
    "/api/v1/daemon/../run/go/id/health",
    "/api/v1/terminal/sessions?/health",
    "/health",
    "/api/v1/health",
]


@pytest.fixture
async def tcp_client(program_config: Config) -> Any:
    """The whole app on TCP 127.0.0.1 with a bearer token, as `hoodyd serve --tcp` runs it
    (on a state dir that already holds the box's apt index)."""
    seed_apt_index(program_config.state_path)
    async with TestClient(TestServer(create_app(program_config, token=TOKEN))) as client:
        yield client


def _concrete(path: str) -> str:
    samples = {"id": "1", "terminal_id": "1", "rest": "app/id", "command_id": "1",
               "job_id": "00000000-0000-0000-0000-000000000000", "source_id": "system-path",
               "profile": "default", "name": "x", "temporary_id": "x"}  # fmt: skip
    return re.sub(r"\{(\w+)(:[^}]*)?\}", lambda m: samples.get(m.group(1), "x"), path)


def _routes(app: web.Application) -> list[tuple[str, str]]:
    found = []
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        if path and route.method != "*":
            found.append((route.method, _concrete(path)))
    return found


async def _tools_state(client: TestClient[Any, Any]) -> tuple[Any, Any]:
    programs = await (await client.get("/api/v1/daemon/programs", headers=AUTH)).json()
    sessions = await (await client.get("/api/v1/terminal/sessions", headers=AUTH)).json()
    return programs["programs"], sessions["data"]


async def test_every_protected_route_needs_the_token_on_tcp(tcp_client: Any) -> None:
    """Walking every route of the built app without a token: 401 JSON for each protected one,
    the three health routes open, and nothing any request asked for happened."""
    routes = _routes(tcp_client.server.app)
    assert set(routes) >= OPEN_ROUTES
    assert len(routes) > 60
    for method, path in routes:
        response = await tcp_client.request(method, path, json={"name": "x"})
        if (method, path) in OPEN_ROUTES:
            assert response.status == 200, (method, path)
        else:
            assert response.status == 401, (method, path, await response.text())
            if method != "HEAD":
                assert (await response.json())["reason"] == "BAD_TOKEN"
    assert await _tools_state(tcp_client) == ([], [])


@pytest.mark.parametrize("path", LOOKALIKES)
async def test_paths_that_end_like_an_open_route_still_need_the_token(
    tcp_client: Any, path: str
) -> None:
    """Trailing segments, `..`, `%2F` and query strings never make a route open (sent as
    raw bytes: a client library would normalize `..` away before sending)."""
    import msgspec

    head = f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close".encode()
    status, _, payload = await _raw_request(tcp_client, head)
    assert status == 401, (path, payload)
    assert msgspec.json.decode(payload)["reason"] == "BAD_TOKEN"
    assert await _tools_state(tcp_client) == ([], [])


async def test_a_wrong_or_malformed_token_is_refused(tcp_client: Any) -> None:
    """Only `Bearer <token>` passes: another token, another scheme or a bare token do not."""
    for header in (f"Bearer {TOKEN}x", f"Basic {TOKEN}", TOKEN, "Bearer", ""):
        response = await tcp_client.get(
            "/api/v1/daemon/programs", headers={"Authorization": header}
        )
        assert response.status == 401, header
    ok = await tcp_client.get("/api/v1/daemon/programs", headers=AUTH)
    assert ok.status == 200


async def _raw_request(client: Any, head: bytes, body: bytes = b"") -> tuple[int, bytes, bytes]:
    connection = await asyncio.open_connection(client.server.host, client.server.port)
    return await raw_http(connection, head + b"\r\n\r\n" + body)


async def test_a_non_utf8_header_is_refused_before_the_handler_runs(tcp_client: Any) -> None:
    """Bad bytes in X-Hoody-Origin, X-Request-Id or any header: 400 JSON; the program the
    request would have added does not exist and no terminal shell was started."""
    import msgspec

    body = msgspec.json.encode(sleeper(name="never"))
    for header in (b"X-Hoody-Origin: \xff\xfe", b"X-Request-Id: \xc3\x28", b"X-Other: a\xffb"):
        head = (
            b"POST /api/v1/daemon/programs/add HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Authorization: Bearer " + TOKEN.encode() + b"\r\nContent-Type: application/json"
            b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n" + header
        )
        status, headers, payload = await _raw_request(tcp_client, head, body)
        assert status == 400, payload
        assert b"application/json" in headers
        assert msgspec.json.decode(payload)["reason"] == "INVALID_HEADER"
        head = (
            b"POST /api/v1/terminal/execute?terminal_id=7 HTTP/1.1\r\nHost: x\r\n"
            b"Connection: close\r\nAuthorization: Bearer " + TOKEN.encode() + b"\r\n"
            b"Content-Type: application/json\r\nContent-Length: 17\r\n" + header
        )
        status, _, payload = await _raw_request(tcp_client, head, b'{"command":"id"}\n')
        assert status == 400, payload
    assert await _tools_state(tcp_client) == ([], [])


async def test_request_ids_that_cannot_be_echoed_are_refused(tcp_client: Any) -> None:
    """A request id with spaces, quotes or over 128 characters is a 400; a fine one is echoed."""
    for bad in ("a b", 'x"y', "a" * 129, "id\tx"):
        response = await tcp_client.get(
            "/api/v1/daemon/programs", headers={**AUTH, "X-Request-Id": bad}
        )
        assert response.status == 400, bad
        assert (await response.json())["reason"] == "INVALID_HEADER"
        assert response.headers["X-Request-Id"] != bad
    response = await tcp_client.get(
        "/api/v1/daemon/programs", headers={**AUTH, "X-Request-Id": "req-42.a:b"}
    )
    assert response.status == 200
    assert response.headers["X-Request-Id"] == "req-42.a:b"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/v1/run/preflight"),
        ("POST", "/api/v1/run/search/paged"),
        ("POST", "/api/v1/run/sources"),
        ("POST", "/api/v1/run/batch"),
        ("POST", "/api/v1/daemon/programs/add"),
        ("POST", "/api/v1/terminal/create"),
    ],
)
@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 1000, 100_000])
async def test_deeply_nested_json_is_a_400(
    tcp_client: Any, method: str, path: str, depth: int
) -> None:
    """JSON nested past the bound answers 400 JSON_TOO_DEEP, never a 500."""
    body = b'{"a":' + b"[" * depth + b"]" * depth + b"}"
    response = await tcp_client.request(
        method, path, data=body, headers={**AUTH, "Content-Type": "application/json"}
    )
    payload = await response.json()
    assert response.status == 400, payload
    assert payload["reason"] == "JSON_TOO_DEEP"


def test_json_depth_ignores_brackets_inside_strings() -> None:
    """Brackets in strings, escaped quotes and unterminated strings do not count as nesting."""
    assert json_depth(b'{"a": "[[[[{{{{"}') == 1
    assert json_depth(b'["\\"[[[", [1, [2]]]') == 3
    assert json_depth(b'"unterminated [[[[') == 0
    assert json_depth(b"[" * 200 + b"]" * 200) == 200


async def test_a_body_over_the_size_limit_is_a_json_413(tcp_client: Any) -> None:
    """A body larger than server.max_body_bytes answers 413 JSON."""
    response = await tcp_client.post(
        "/api/v1/run/preflight", data=io.BytesIO(b"[" + b"1," * 600_000 + b"1]"), headers=AUTH
    )
    assert response.status == 413
    body = await response.json()
    assert body["code"] == 413
    assert body["reason"] == "PAYLOAD_TOO_LARGE"


@pytest.mark.parametrize(
    ("query", "accepted"),
    [
        ("defer_pid=4194304", True),
        ("defer_pid=4194305", False),
        ("defer_pid=0", False),
        ("defer_pid=99999999999999999999999", False),
        ("defer_pid=1&defer_timeout_ms=0", False),
        ("defer_pid=1&defer_timeout_ms=86400001", False),
        ("defer_pid=1&defer_poll_ms=9", False),
        ("defer_pid=1&defer_poll_ms=60001", False),
        ("defer_pid=1&defer_start_time_ticks=12a", False),
        ("defer_timeout_ms=5", False),
    ],
)
async def test_both_areas_share_one_set_of_defer_bounds(
    tcp_client: Any, query: str, accepted: bool
) -> None:
    """The terminal and the run area accept and refuse exactly the same defer values."""
    terminal = await tcp_client.post(
        f"/api/v1/terminal/execute?terminal_id=1&wait=false&{query}",
        json={"command": "true"},
        headers=AUTH,
    )
    # the run area decodes the defer before it looks for candidates: past decoding, this
    # app has none to offer (404), which is enough to tell accepted from refused
    run = await tcp_client.get(f"/api/v1/run/run?app=no-such-app-zz&{query}", headers=AUTH)
    assert (terminal.status == 200) is accepted, await terminal.text()
    assert (run.status != 400) is accepted, await run.text()
    if not accepted:
        assert terminal.status == run.status == 400
