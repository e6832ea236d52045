"""Pages a browser can use over TCP: a login page that sets an HttpOnly, SameSite=Strict
session cookie; the cookie opens the HTML pages and their form posts only, and a post must
come from the same origin; picks are POST forms; the terminal view streams live. Checked
over HTTP on a real `hoodyd serve --tcp`, then end to end in a real headless Chromium."""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.ports import free_port
from tests.run_world import RUN, RunWorld, run_world

TOKEN = "pages-token-5e1f"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def tcp_world() -> Iterator[tuple[RunWorld, str]]:
    port = free_port()
    with run_world("--tcp", f"127.0.0.1:{port}", env={"HOODYD_TOKEN": TOKEN}) as running:
        yield running, f"http://127.0.0.1:{port}"


async def logged_in(base: str) -> aiohttp.ClientSession:
    """A client holding a session cookie (the cookie jar accepts it for an IP host)."""
    client = aiohttp.ClientSession(base, cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with client.post(
        f"{RUN}/login", data={"token": TOKEN}, headers={"Origin": base}, allow_redirects=False
    ) as response:
        assert response.status == 303, await response.text()
        assert response.headers["Location"] == f"{RUN}/console/programs"
        cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/api/v1/run" in cookie
    return client


async def test_login_page_and_a_wrong_token(tcp_world: tuple[RunWorld, str]) -> None:
    """The login page needs no token; a wrong token is the page again with a 401 and no
    cookie; a login posted from another origin is refused."""
    _, base = tcp_world
    async with aiohttp.ClientSession(base) as client:
        async with client.get(f"{RUN}/login") as response:
            page = await response.text()
            assert response.status == 200 and "type=password name=token" in page
        async with client.post(f"{RUN}/login", data={"token": "nope"}) as response:
            assert response.status == 401 and "wrong token" in await response.text()
            assert "Set-Cookie" not in response.headers
        async with client.post(
            f"{RUN}/login", data={"token": TOKEN}, headers={"Origin": "http://evil.example"}
        ) as response:
            assert response.status == 403 and "Set-Cookie" not in response.headers


async def test_a_session_opens_the_pages_and_nothing_else(
    tcp_world: tuple[RunWorld, str],
) -> None:
    """With the cookie: the search page answers; the JSON API, GET runs and go paths, and the
    other areas still need the token; a form post needs this origin, and then runs."""
    world, base = tcp_world
    client = await logged_in(base)
    try:
        async with client.get(f"{RUN}/search", params={"format": "html"}) as response:
            assert response.status == 200 and "<form" in await response.text()
        async with client.get(f"{RUN}/search", params={"app": "hello-run", "format": "html"}) as r:
            page = await r.text()
            assert r.status == 200 and '<form method=post action="/api/v1/run/run">' in page
        refused = [
            ("GET", f"{RUN}/search?app=hello-run"),  # JSON
            ("GET", f"{RUN}/run?app=hello-run&pick=first&format=html"),  # a GET that runs
            ("GET", f"{RUN}/go/hello-run?pick=first&format=html"),
            ("GET", f"{RUN}/sources"),
            ("GET", "/api/v1/terminal/sessions"),
            ("GET", "/api/v1/daemon/programs"),
        ]
        for method, path in refused:
            async with client.request(method, path) as response:
                assert response.status == 401, (path, response.status)
        upgrade = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
                   "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Origin": base}  # fmt: skip
        async with client.get(f"{RUN}/t/1/stream", headers=upgrade) as response:
            assert response.status == 404  # watching never creates terminal 1
        auth = {"Authorization": f"Bearer {TOKEN}"}
        async with client.get("/api/v1/terminal/sessions", headers=auth) as response:
            assert (await response.json())["data"] == []
        fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', page.split("</form>")[1]))
        assert fields["pick"] == "index" and fields["set_id"]
        async with client.post(f"{RUN}/run", data=fields) as response:  # no Origin
            assert response.status == 403
            assert (await response.json())["reason"] == "BAD_ORIGIN"
        async with client.post(
            f"{RUN}/run", data=fields, headers={"Origin": "http://evil.example"}
        ) as response:
            assert response.status == 403
        async with client.post(
            f"{RUN}/run", json={"app": "hello-run", "pick": "first"}, headers={"Origin": base}
        ) as response:
            assert response.status == 401  # a session posts forms, not the JSON API
        assert '"event":"run_scheduled"' not in world.daemon.logs()
        async with client.post(f"{RUN}/run", data=fields, headers={"Origin": base}) as response:
            answer = await response.text()
            assert response.status == 200 and "scheduled" in answer, answer
    finally:
        await client.close()


def test_browser_logs_in_searches_picks_and_sees_the_output_live(
    tcp_world: tuple[RunWorld, str], chromium: str
) -> None:
    """In headless Chromium: type the token into the login page, search, press Run on a
    candidate, and watch the program's output appear in the xterm.js view, streamed over
    the WebSocket without a reload."""
    from playwright import sync_api as playwright_api  # a test dependency
    _, base = tcp_world
    profile = Path(tempfile.mkdtemp(prefix="hd-chromium-"))
    console: list[str] = []
    try:
        with playwright_api.sync_playwright() as driver:
            browser = driver.chromium.launch_persistent_context(
                str(profile),
                executable_path=chromium,
                headless=True,
                args=CHROMIUM_FLAGS,
            )
            try:
                page = browser.new_page()
                page.on("console", lambda message: console.append(message.text))
                page.goto(f"{base}{RUN}/login")
                page.fill("input[name=token]", TOKEN)
                page.click("button")
                page.wait_for_url(re.compile(r"/console/programs$"))
                page.goto(f"{base}{RUN}/search?format=html")
                cookies = {c["name"]: c for c in browser.cookies()}
                session: Any = cookies["hoodyd_session"]
                assert session["httpOnly"] and session["sameSite"] == "Strict"
                assert page.evaluate("document.cookie") == ""  # HttpOnly: not for scripts
                page.fill("input[name=app]", "hello-run")
                page.click("form[role=search] button")
                page.wait_for_selector("form[method=post] button")
                row = page.locator("tr", has_text="team:hello-run").first
                row.locator("button").click()
                page.wait_for_selector("#terminal .xterm-rows")
                page.evaluate("window.notReloaded = true")
                page.wait_for_function(
                    "document.querySelector('#terminal .xterm-rows')"
                    ".textContent.includes('hello-run says')",
                    timeout=20_000,
                )
                assert page.evaluate("window.notReloaded") is True
                assert page.inner_text("#live") == "live"
            finally:
                browser.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert not [line for line in console if "Content Security Policy" in line], console


async def test_session_rules_in_process(aiohttp_client: Any, short_tmp: Path) -> None:
    """The same rules on the app the daemon builds, in this process (warnings are errors
    here): a login, a page by cookie, the JSON API refused to it."""
    from hoodyd.app import create_app
    from tests.conftest import make_config

    app = create_app(make_config(short_tmp, run={"auto_sync": False}), areas=("run",), token="t")
    client = await aiohttp_client(app, cookie_jar=aiohttp.CookieJar(unsafe=True))
    response = await client.post(f"{RUN}/login", data={"token": "t"}, allow_redirects=False)
    assert response.status == 303
    response = await client.get(f"{RUN}/search", params={"format": "html"})
    assert response.status == 200 and "<form" in await response.text()
    response = await client.get(f"{RUN}/search", params={"app": "x"})
    assert response.status == 401
