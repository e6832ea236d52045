"""The console a person runs the box from in a browser, on a real `hoodyd serve --tcp`: its
entry and login, the session cookie's reach (console pages only, never the JSON API), the
Origin check on every change, the API's validation messages in its forms, the apps page's
busy and missing-package answers; then end to end in Debian's headless Chromium, with
screenshots kept as test artefacts."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from hoodyd.polling import poll_until
from tests.run_world import RUN, TERMINAL, RunWorld, run_world
from tests.test_run_pages import CHROMIUM, CHROMIUM_FLAGS, free_port

TOKEN = "console-token-7c2a"
CONSOLE = f"{RUN}/console"
DAEMON = "/api/v1/daemon"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def tcp_world() -> Iterator[tuple[RunWorld, str]]:
    port = free_port()
    with run_world("--tcp", f"127.0.0.1:{port}", env={"HOODYD_TOKEN": TOKEN}) as running:
        yield running, f"http://127.0.0.1:{port}"


@pytest.fixture
async def client(tcp_world: tuple[RunWorld, str]) -> AsyncIterator[aiohttp.ClientSession]:
    """A browser-like client logged in through the login form (cookie jar for an IP host)."""
    _, base = tcp_world
    session = aiohttp.ClientSession(base, cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with session.post(
        f"{RUN}/login", data={"token": TOKEN}, headers={"Origin": base}, allow_redirects=False
    ) as response:
        assert response.status == 303 and response.headers["Location"] == f"{CONSOLE}/programs"
    yield session
    await session.close()


async def add_program(base: str, name: str, command: str) -> int:
    async with aiohttp.ClientSession(base, headers=AUTH) as api:
        body = {"name": name, "command": command, "user": _me(), "enabled": True}
        async with api.post(f"{DAEMON}/programs/add", json=body) as response:
            answer = await response.json()
            assert response.status == 200, answer
            return int(answer["id"])


def _me() -> str:
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name


async def test_entry_leads_to_login_then_dashboard(tcp_world: tuple[RunWorld, str]) -> None:
    """`GET /` goes to the login page without a session and to the dashboard with one; the
    login page says what it is and where the token is."""
    _, base = tcp_world
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(base, cookie_jar=jar) as browser:
        async with browser.get("/") as response:
            page = await response.text()
            assert str(response.url).endswith(f"{RUN}/login") and response.status == 200
            assert "hoodyd console" in page and "HOODYD_TOKEN" in page
        async with browser.post(
            f"{RUN}/login", data={"token": TOKEN}, headers={"Origin": base}
        ) as response:
            assert str(response.url).endswith(f"{CONSOLE}/programs")
        async with browser.get("/") as response:
            assert str(response.url).endswith(f"{CONSOLE}/programs") and response.status == 200
            assert "Log out" in await response.text()


async def test_cookie_opens_console_pages_and_not_the_json_api(
    tcp_world: tuple[RunWorld, str], client: aiohttp.ClientSession
) -> None:
    """With the cookie the console's pages and its event stream answer; the daemon and
    terminal areas' JSON API (events included) and the run area's JSON still need the token."""
    for path in (f"{CONSOLE}/programs", f"{CONSOLE}/terminals", f"{CONSOLE}/apps?app=hello"):
        async with client.get(path) as response:
            assert response.status == 200, path
            assert "text/html" in response.headers["Content-Type"]
    async with client.get(f"{CONSOLE}/events") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
    json_api = [f"{DAEMON}/programs", f"{DAEMON}/events", f"{DAEMON}/status"]
    json_api += [f"{TERMINAL}/sessions", f"{RUN}/sources", f"{RUN}/search?app=hello-run"]
    for path in json_api:
        async with client.get(path) as response:
            assert response.status == 401, path


async def test_every_change_needs_this_origin(
    tcp_world: tuple[RunWorld, str], client: aiohttp.ClientSession
) -> None:
    """A start, an add, a new terminal or a terminal socket with the cookie but no Origin or
    another site's is refused with 403 and changes nothing."""
    _, base = tcp_world
    program_id = await add_program(base, "origin-check", "sleep 600")
    posts = [
        (f"{CONSOLE}/programs/{program_id}/start", {}),
        (f"{CONSOLE}/programs/new", {"name": "sneaky", "command": "sleep 1", "user": _me()}),
        (f"{CONSOLE}/terminals", {}),
    ]
    for origin in (None, "http://evil.example"):
        headers = {"Origin": origin} if origin else {}
        for path, form in posts:
            async with client.post(path, data=form, headers=headers) as response:
                assert response.status == 403, (path, origin)
                assert (await response.json())["reason"] == "BAD_ORIGIN"
    async with aiohttp.ClientSession(base, headers=AUTH) as api:
        async with api.get(f"{DAEMON}/status/{program_id}") as response:
            assert (await response.json())["status"]["status"] != "RUNNING"
        async with api.get(f"{DAEMON}/programs") as response:
            names = [p["name"] for p in (await response.json())["programs"]]
            assert "sneaky" not in names
        async with api.get(f"{TERMINAL}/sessions") as response:
            assert (await response.json())["data"] == []
    upgrade = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13"}
    upgrade |= {"Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Origin": "http://evil.example"}
    async with client.get(f"{CONSOLE}/terminals/1/tty", headers=upgrade) as response:
        assert response.status == 403


async def test_program_form_shows_the_api_validation_messages(
    tcp_world: tuple[RunWorld, str], client: aiohttp.ClientSession
) -> None:
    """A bad name or port range in the add form is the form again, with the status and the
    message the JSON API gives for the same input, the typed values kept, nothing added."""
    _, base = tcp_world
    cases = [
        ({"name": 'bad "name"', "command": "sleep 1", "user": _me()}, {}),
        ({"name": "unsplit", "command": "sleep 'forever", "user": _me()}, {}),
        (
            {"name": "ranged", "command": "sleep 1", "user": _me()},
            {"port_range": {"start": 9000, "end": 8000}},
        ),
    ]
    async with aiohttp.ClientSession(base, headers=AUTH) as api:
        for fields, extra in cases:
            async with api.post(f"{DAEMON}/programs/add", json={**fields, **extra}) as response:
                expected_status = response.status
                expected = (await response.json())["error"]
            form = dict(fields)
            if extra:
                form |= {"port_from": "9000", "port_to": "8000"}
            async with client.post(
                f"{CONSOLE}/programs/new", data=form, headers={"Origin": base}
            ) as response:
                page = await response.text()
                assert response.status == expected_status >= 400, (page, expected)
                import html

                assert html.escape(expected, quote=True) in page
                assert html.escape(fields["name"], quote=True) in page
        async with api.get(f"{DAEMON}/programs") as response:
            names = {p["name"] for p in (await response.json())["programs"]}
            assert not names & {'bad "name"', "unsplit", "ranged"}


async def test_apps_page_busy_terminal_and_missing_package(
    tcp_world: tuple[RunWorld, str], client: aiohttp.ClientSession
) -> None:
    """The apps page shows name, source, installed and command without set ids or scores; a
    run into a busy terminal says so and offers a new one; a missing package shows the fix
    and the way back."""
    _, base = tcp_world
    async with client.get(f"{CONSOLE}/apps", params={"app": "hello-run"}) as response:
        page = await response.text()
        assert "Hello Run" in page and "prints its arguments" in page and "installed" in page
        assert "set_id" not in page and "score" not in page
    origin = {"Origin": base}
    async with client.post(f"{CONSOLE}/terminals", headers=origin) as response:
        terminal_id = int(str(response.url).rstrip("/").rsplit("/", 1)[1])
    async with aiohttp.ClientSession(base, headers=AUTH) as api:
        async with api.post(
            f"{TERMINAL}/execute", params={"terminal_id": str(terminal_id), "wait": "false"},
            json={"command": "sleep 30"},
        ) as response:  # fmt: skip
            assert response.status == 200, await response.text()

        async def busy() -> bool | None:
            async with api.get(f"{TERMINAL}/sessions") as response:
                sessions = (await response.json())["data"]
            return next((True for s in sessions if s["id"] == terminal_id and s["busy"]), None)

        assert await poll_until(busy, timeout=10)
    run = {"app": "hello-run", "candidate_id": "team:hello-run", "terminal_id": str(terminal_id)}
    async with client.post(f"{CONSOLE}/apps/run", data=run, headers=origin) as response:
        page = await response.text()
        assert response.status == 409 and "is busy" in page and "sleep 30" in page
        assert "Run in a new terminal" in page
    refused = {"app": "needs-package", "candidate_id": "team:needs-package", "terminal_id": "60000"}
    async with client.post(f"{CONSOLE}/apps/run", data=refused, headers=origin) as response:
        page = await response.text()
        assert response.status == 409
        assert "apt-get install -y needs-package" in page
        assert f'href="{CONSOLE}/apps?app=needs-package"' in page  # the way back
    async with client.post(
        f"{CONSOLE}/terminals/{terminal_id}/close", headers=origin, allow_redirects=False
    ) as response:
        assert response.status == 303


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed")
def test_browser_drives_the_console(tcp_world: tuple[RunWorld, str], tmp_path: Path) -> None:
    """In headless Chromium: `/` lands on the login page; after login the dashboard starts a
    program from its button and shows a stop made elsewhere without a reload; its log shows a
    new line live; a new terminal takes typed input and shows the output; logout ends it."""
    playwright_api = pytest.importorskip("playwright.sync_api")
    import asyncio

    _, base = tcp_world
    program_id = asyncio.run(
        add_program(
            base, "ticker", "/bin/sh -c 'while :; do echo tick-$$-$(date +%s%N); sleep 0.3; done'"
        )
    )
    shots = tmp_path / "screenshots"  # test artefacts: pytest keeps the last runs' tmp dirs
    shots.mkdir()
    profile = Path(tempfile.mkdtemp(prefix="hd-console-"))
    messages: list[str] = []
    try:
        with playwright_api.sync_playwright() as driver:
            browser = driver.chromium.launch_persistent_context(
                str(profile), executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS,
                viewport={"width": 1100, "height": 800},
            )  # fmt: skip
            try:
                page = browser.new_page()
                page.on("console", lambda message: messages.append(message.text))
                page.goto(f"{base}/")
                page.wait_for_url(re.compile(r"/api/v1/run/login$"))
                assert "hoodyd console" in page.inner_text("body")
                page.screenshot(path=str(shots / "1-login.png"))
                page.fill("input[name=token]", TOKEN)
                page.click("button")
                page.wait_for_url(re.compile(r"/console/programs$"))
                row = f"tr[data-program-id='{program_id}']"
                page.click(f"{row} form[action$='/start'] button")
                page.wait_for_selector(f"{row} .s-running", timeout=20_000)
                page.wait_for_selector("#live:has-text('live')")
                page.evaluate("window.notReloaded = true")
                page.screenshot(path=str(shots / "2-dashboard-running.png"))
                _stop(base, program_id)
                page.wait_for_selector(f"{row} .s-stopped", timeout=20_000)
                assert page.evaluate("window.notReloaded") is True
                page.click(f"{row} form[action$='/start'] button")
                page.wait_for_selector(f"{row} .s-running", timeout=20_000)

                page.goto(f"{base}{CONSOLE}/programs/{program_id}/logs?lines=5")
                before = page.inner_text("#log")
                page.check("#follow")
                # the text changes only by what the follow appends: a new line arrived
                playwright_api.expect(page.locator("#log")).not_to_have_text(before, timeout=20_000)
                assert "tick-" in page.inner_text("#log").replace(before, "")
                page.screenshot(path=str(shots / "3-logs-following.png"))

                page.goto(f"{base}{CONSOLE}/terminals")
                page.click("form[action$='/console/terminals'] button")
                page.wait_for_url(re.compile(r"/console/terminals/\d+$"))
                page.wait_for_selector("#live:has-text('connected')", timeout=20_000)
                page.wait_for_selector("#terminal .xterm-rows")
                page.click("#terminal")
                page.keyboard.type("echo con$((6*7))sole\n")
                playwright_api.expect(page.locator("#terminal .xterm-rows")).to_contain_text(
                    "con42sole", timeout=20_000
                )
                page.screenshot(path=str(shots / "4-terminal.png"))
                page.set_viewport_size({"width": 400, "height": 800})
                page.goto(f"{base}{CONSOLE}/programs")
                page.screenshot(path=str(shots / "5-dashboard-400px.png"), full_page=True)
                width = page.evaluate("document.documentElement.scrollWidth")
                assert width <= 400, width

                page.click("header .logout button")
                page.wait_for_url(re.compile(r"/api/v1/run/login$"))
                response = page.goto(f"{base}{CONSOLE}/programs")
                assert response is not None and response.status == 401
            finally:
                browser.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert not [line for line in messages if "Content Security Policy" in line], messages


def _stop(base: str, program_id: int) -> None:
    """Stop the program through the JSON API with the token (what another client would do)."""
    import urllib.request

    request = urllib.request.Request(
        f"{base}{DAEMON}/programs/{program_id}/stop", data=b"", headers=AUTH, method="POST"
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
