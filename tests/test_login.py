"""Browser login over TCP: wrong tokens back a peer off (429 with Retry-After, the right token
too, doubling up to a cap, in a bounded table); the logout form ends a session server-side and
must come from this origin; sessions end when idle too long and when too old however busy.
Checked on the app the daemon builds, served on 127.0.0.1; the session store's clock is
moved instead of sleeping."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from hoodyd.api import sessions
from hoodyd.api.sessions import (
    FAILURE_WINDOW_S,
    FREE_FAILURES,
    MAX_BACKOFF_S,
    SESSIONS,
    LoginThrottle,
    SessionStore,
)
from hoodyd.app import create_app
from tests.conftest import make_config
from tests.run_world import RUN

TOKEN = "login-token-7a2c"
IDLE_S = 60.0
MAX_AGE_S = 300.0


@dataclass
class Clock:
    """Monotonic seconds that move only when a test says so."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Browser:
    client: TestClient[Any, Any]
    clock: Clock
    store: SessionStore

    @property
    def origin(self) -> str:
        return str(self.client.make_url("")).rstrip("/")

    async def login(self, token: str = TOKEN, **headers: str) -> aiohttp.ClientResponse:
        return await self.client.post(
            f"{RUN}/login", data={"token": token}, headers=headers, allow_redirects=False
        )

    async def session(self) -> str:
        response = await self.login(Origin=self.origin)
        assert response.status == 303, await response.text()
        return response.cookies[sessions.COOKIE].value

    async def page(self, session_id: str) -> int:
        """The status of the search page asked for with this session cookie."""
        response = await self.client.get(
            f"{RUN}/search",
            params={"format": "html"},
            headers={"Cookie": f"{sessions.COOKIE}={session_id}"},
            allow_redirects=False,
        )
        return response.status


def session_store(app: web.Application) -> SessionStore:
    for resource in app.router.resources():
        area = resource.get_info().get("app")
        if isinstance(area, web.Application) and SESSIONS in area:
            return area[SESSIONS]
    raise AssertionError("no run area")


@pytest.fixture
async def browser(short_tmp: Path) -> AsyncIterator[Browser]:
    """The run area on 127.0.0.1 with a token and short session lifetimes; cookies are sent
    by hand (no jar), so a test can replay one after it was cleared."""
    config = make_config(
        short_tmp,
        run={"auto_sync": False},
        server={"session_idle_timeout": IDLE_S, "session_max_age": MAX_AGE_S},
    )
    app = create_app(config, areas=("run",), token=TOKEN)
    async with TestClient(TestServer(app), cookie_jar=aiohttp.DummyCookieJar()) as client:
        store = session_store(app)
        clock = Clock()
        store.clock = clock
        yield Browser(client, clock, store)


async def test_wrong_tokens_back_the_peer_off_even_for_the_right_token(browser: Browser) -> None:
    """After five wrong tokens the peer waits 1 s, then 2 s after the next: the right token is
    refused meanwhile (429, Retry-After, page or JSON), accepted once the back-off passed, and
    a success starts the count afresh."""
    for _ in range(FREE_FAILURES):
        response = await browser.login("wrong")
        assert response.status == 401 and "wrong token" in await response.text()
    response = await browser.login()
    assert response.status == 429 and response.headers["Retry-After"] == "1"
    assert "too many failed logins" in await response.text()
    assert sessions.COOKIE not in response.cookies
    refused = await browser.client.post(f"{RUN}/login", json={"token": TOKEN})
    assert refused.status == 429 and refused.headers["Retry-After"] == "1"
    body = await refused.json()
    assert (body["code"], body["reason"], body["retry_after_s"]) == (429, "LOGIN_THROTTLED", 1)
    browser.clock.now += 1.0
    assert (await browser.login("wrong")).status == 401  # the sixth: 2 s now
    browser.clock.now += 1.5
    response = await browser.login()
    assert response.status == 429 and response.headers["Retry-After"] == "1"
    browser.clock.now += 0.5
    session_id = await browser.session()
    assert await browser.page(session_id) == 200
    assert (await browser.login("wrong")).status == 401  # one failure again, no back-off
    assert (await browser.session()) != session_id


def test_back_off_doubles_up_to_a_cap_in_a_bounded_table() -> None:
    """Each failure past the free ones doubles the wait up to the cap; a peer quiet for the
    window starts afresh; other peers are not held back; the table never outgrows its bound."""
    throttle = LoginThrottle(max_peers=8)
    now = 0.0
    waits = []
    for _ in range(FREE_FAILURES + 12):
        waits.append(throttle.failed("10.0.0.1", now))
        now += throttle.wait_s("10.0.0.1", now)
    assert waits[: FREE_FAILURES - 1] == [0.0] * (FREE_FAILURES - 1)
    assert waits[FREE_FAILURES - 1 : FREE_FAILURES + 3] == [1.0, 2.0, 4.0, 8.0]
    assert max(waits) == MAX_BACKOFF_S and waits[-1] == MAX_BACKOFF_S
    assert throttle.wait_s("10.0.0.2", now) == 0.0
    now += FAILURE_WINDOW_S
    assert throttle.failed("10.0.0.1", now) == 0.0  # quiet long enough: a fresh count
    for n in range(100):
        for _ in range(FREE_FAILURES):
            throttle.failed(f"192.0.2.{n}", now)
        assert len(throttle.peers) <= 8
    assert throttle.wait_s("192.0.2.99", now) == 1.0  # the latest peer is still held back


async def test_logout_ends_the_session_and_clears_the_cookie(browser: Browser) -> None:
    """Pages a session sees carry the logout form; its post (from this origin) answers 303 to
    the login page with the cookie cleared, and the old cookie no longer opens a page."""
    session_id = await browser.session()
    page = await browser.client.get(
        f"{RUN}/search",
        params={"format": "html"},
        headers={"Cookie": f"{sessions.COOKIE}={session_id}"},
    )
    assert '<form method=post action="/api/v1/run/logout"' in await page.text()
    login_page = await (await browser.client.get(f"{RUN}/login")).text()
    assert "/logout" not in login_page
    response = await browser.client.post(
        f"{RUN}/logout",
        headers={"Cookie": f"{sessions.COOKIE}={session_id}", "Origin": browser.origin},
        allow_redirects=False,
    )
    assert response.status == 303 and response.headers["Location"] == f"{RUN}/login"
    cleared = response.cookies[sessions.COOKIE]
    assert cleared.value == "" and cleared["max-age"] == "0" and cleared["path"] == RUN
    assert await browser.page(session_id) == 401
    again = await browser.client.post(
        f"{RUN}/logout",
        headers={"Cookie": f"{sessions.COOKIE}={session_id}", "Origin": browser.origin},
        allow_redirects=False,
    )
    assert again.status == 401  # no session left to end


async def test_logout_from_another_origin_is_refused(browser: Browser) -> None:
    """A logout posted with the cookie from another origin, or with no Origin, is a 403
    BAD_ORIGIN and the session lives on; without a cookie or token it is a 401."""
    session_id = await browser.session()
    for headers in ({"Origin": "http://evil.example"}, {}):
        response = await browser.client.post(
            f"{RUN}/logout",
            headers={"Cookie": f"{sessions.COOKIE}={session_id}", **headers},
            allow_redirects=False,
        )
        assert response.status == 403, headers
        assert (await response.json())["reason"] == "BAD_ORIGIN"
    assert await browser.page(session_id) == 200
    anonymous = await browser.client.post(
        f"{RUN}/logout", headers={"Origin": browser.origin}, allow_redirects=False
    )
    assert anonymous.status == 401


async def test_a_session_idle_too_long_is_refused(browser: Browser) -> None:
    """Each page keeps a session alive; a pause of the idle timeout ends it."""
    session_id = await browser.session()
    for _ in range(3):
        browser.clock.now += IDLE_S - 1
        assert await browser.page(session_id) == 200
    browser.clock.now += IDLE_S
    assert await browser.page(session_id) == 401
    browser.clock.now -= IDLE_S  # not even back in time: an ended session stays ended
    assert await browser.page(session_id) == 401


async def test_a_session_older_than_its_max_age_is_refused(browser: Browser) -> None:
    """A session used every few seconds still ends at its absolute lifetime, which is also
    the cookie's Max-Age."""
    response = await browser.login(Origin=browser.origin)
    assert response.cookies[sessions.COOKIE]["max-age"] == str(int(MAX_AGE_S))
    session_id = response.cookies[sessions.COOKIE].value
    started = browser.clock.now
    while browser.clock.now - started < MAX_AGE_S - IDLE_S / 2:
        browser.clock.now += IDLE_S / 2
        assert await browser.page(session_id) == 200
    browser.clock.now = started + MAX_AGE_S
    assert await browser.page(session_id) == 401
