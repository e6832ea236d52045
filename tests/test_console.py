"""The console a person runs the box from in a browser, on a real `hoodyd serve --tcp`: its
entry and login, the session cookie's reach (console pages only, never the JSON API), the
Origin check on every change, the API's validation messages in its forms, the apps page's
busy and missing-package answers; then end to end in Debian's headless Chromium, with
screenshots kept as test artefacts."""

from __future__ import annotations

import contextlib
import html
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp
import psutil
import pytest

from hoodyd.polling import poll_until
from hoodyd.terminals.paste import PASTE_END, PASTE_START
from tests.ports import free_port
from tests.run_world import RUN, TERMINAL, RunWorld, run_world
from tests.test_run_pages import CHROMIUM_FLAGS

TOKEN = "console-token-7c2a"
CONSOLE = f"{RUN}/console"
DAEMON = "/api/v1/daemon"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def command_of(process: psutil.Process) -> list[str]:
    """A process's argv; empty for one that has just exited (a zombie not reaped yet)."""
    try:
        return process.cmdline()
    except psutil.Error:
        return []


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


async def test_odd_port_numbers_in_the_form_are_refused_not_crashed(
    tcp_world: tuple[RunWorld, str], client: aiohttp.ClientSession
) -> None:
    """Port fields a decoder cannot read as a number (a superscript digit, 5000 digits,
    words) are the form again with a 400 naming the field, never a server error."""
    _, base = tcp_world
    for bad in ("\u00b2", "9" * 5000, "eighty", "-"):
        form = {"name": "odd", "command": "sleep 1", "user": _me()}
        form |= {"port_from": bad, "port_to": "9001"}
        async with client.post(
            f"{CONSOLE}/programs/new", data=form, headers={"Origin": base}
        ) as response:
            page = await response.text()
            assert response.status == 400, (bad[:8], page[-400:])
            assert "port_range" in page, page[-400:]


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


def test_browser_drives_the_console(
    tcp_world: tuple[RunWorld, str], tmp_path: Path, chromium: str
) -> None:
    """In headless Chromium: `/` lands on the login page; after login the dashboard starts a
    program from its button and shows a stop made elsewhere without a reload; its log shows a
    new line live; a new terminal takes typed input and a paste and shows the output, and
    Ctrl-C there interrupts a `sleep 30`; watching it shows output while typing does nothing;
    logout ends the session, and a bookmark then leads through the login back to its page."""
    import asyncio

    from playwright import sync_api as playwright_api  # a test dependency

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
                str(profile), executable_path=chromium, headless=True, args=CHROMIUM_FLAGS,
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
                terminal_id = int(page.url.rsplit("/", 1)[1])
                shell = _shell_pid(base, terminal_id)
                page.keyboard.type("sleep 30\n")
                sleeper = _wait_for_sleep(shell)
                page.keyboard.press("Control+C")
                page.keyboard.type("echo af$((2+3))ter\n")
                playwright_api.expect(page.locator("#terminal .xterm-rows")).to_contain_text(
                    "af5ter", timeout=10_000
                )  # the prompt came back well before the sleep would end
                assert not sleeper.is_running() or sleeper.status() == psutil.STATUS_ZOMBIE
                # a paste (as the browser delivers one) reaches the shell as text, not keys
                page.evaluate(
                    """text => {
                      const data = new DataTransfer();
                      data.setData("text/plain", text);
                      document.querySelector("#terminal .xterm-helper-textarea").dispatchEvent(
                        new ClipboardEvent("paste", {clipboardData: data, bubbles: true,
                                                     cancelable: true}));
                    }""",
                    "echo pa$((5*5))ste\x03",
                )
                page.keyboard.press("Enter")
                playwright_api.expect(page.locator("#terminal .xterm-rows")).to_contain_text(
                    "pa25ste", timeout=10_000
                )

                page.goto(f"{base}{CONSOLE}/terminals/{terminal_id}?mode=watch")
                page.wait_for_selector("#live:has-text('watching')", timeout=20_000)
                page.click("#terminal")
                page.keyboard.type("echo wat$((3*3))ch\n")
                page.keyboard.press("Control+C")
                _execute(base, terminal_id, "echo se$((4+4))en")
                rows = page.locator("#terminal .xterm-rows")
                playwright_api.expect(rows).to_contain_text("se8en", timeout=20_000)
                assert "wat9ch" not in rows.inner_text() and "echo wat" not in rows.inner_text()
                page.screenshot(path=str(shots / "4b-terminal-watch.png"))
                page.set_viewport_size({"width": 400, "height": 800})
                page.goto(f"{base}{CONSOLE}/programs")
                page.screenshot(path=str(shots / "5-dashboard-400px.png"), full_page=True)
                width = page.evaluate("document.documentElement.scrollWidth")
                assert width <= 400, width

                page.click("header .logout button")
                page.wait_for_url(re.compile(r"/api/v1/run/login$"))
                # a bookmark after logout: the login page, and back to it after login
                page.goto(f"{base}{CONSOLE}/terminals")
                page.wait_for_url(re.compile(r"/api/v1/run/login\?next="))
                page.fill("input[name=token]", TOKEN)
                page.click("button")
                page.wait_for_url(re.compile(r"/console/terminals$"))
            finally:
                browser.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert not [line for line in messages if "Content Security Policy" in line], messages


def _shell_pid(base: str, terminal_id: int) -> int:
    import json as json_module
    import urllib.request

    request = urllib.request.Request(f"{base}{TERMINAL}/sessions", headers=AUTH)
    with urllib.request.urlopen(request, timeout=30) as response:
        sessions = json_module.loads(response.read())["data"]
    return int(next(s["pid"] for s in sessions if s["id"] == terminal_id))


def _wait_for_sleep(shell: int) -> psutil.Process:
    """The `sleep 30` the shell runs, once it runs."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    async def sleeping() -> psutil.Process | None:
        children = psutil.Process(shell).children(recursive=True)
        return next((c for c in children if command_of(c) == ["sleep", "30"]), None)

    # Playwright's sync API keeps an event loop in this thread: poll from another one
    with ThreadPoolExecutor(1) as pool:
        found = pool.submit(asyncio.run, poll_until(sleeping, timeout=10)).result()
    assert found is not None
    return found


def _execute(base: str, terminal_id: int, command: str) -> None:
    """Run a command in the terminal through the JSON API (what another client would do)."""
    import urllib.request

    request = urllib.request.Request(
        f"{base}{TERMINAL}/execute?terminal_id={terminal_id}&wait=false",
        data=json.dumps({"command": command}).encode(),
        headers={**AUTH, "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200


def _stop(base: str, program_id: int) -> None:
    """Stop the program through the JSON API with the token (what another client would do)."""
    import urllib.request

    request = urllib.request.Request(
        f"{base}{DAEMON}/programs/{program_id}/stop", data=b"", headers=AUTH, method="POST"
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200


# --- a bookmark without a session -------------------------------------------------------------

BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


async def test_a_bookmark_without_a_session_goes_to_login_and_back(
    tcp_world: tuple[RunWorld, str],
) -> None:
    """A browser opening a console page without a session is sent (303) to the login page,
    whose login brings it back to that page; an API client keeps the JSON 401."""
    _, base = tcp_world
    deep = f"{CONSOLE}/programs/1/logs?type=stderr&lines=50"
    async with aiohttp.ClientSession(base, cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        async with browser.get(deep, headers=BROWSER, allow_redirects=False) as response:
            assert response.status == 303
            location = response.headers["Location"]
        where = urlsplit(location)
        assert where.path == f"{RUN}/login" and parse_qs(where.query) == {"next": [deep]}
        async with browser.get(location, headers=BROWSER) as response:
            page = await response.text()
            assert response.status == 200
            assert f'<input type=hidden name=next value="{html.escape(deep)}">' in page
        async with browser.post(
            f"{RUN}/login", data={"token": TOKEN, "next": deep}, headers={"Origin": base},
            allow_redirects=False,
        ) as response:  # fmt: skip
            assert response.status == 303 and response.headers["Location"] == deep
        for accept in ({}, {"Accept": "application/json"}, {"Accept": "*/*"}):
            async with (
                aiohttp.ClientSession(base) as api,
                api.get(deep, headers=accept, allow_redirects=False) as response,
            ):
                assert response.status == 401, accept
                assert (await response.json())["reason"] == "BAD_TOKEN"
        # a post, a JSON route and a socket upgrade are never redirected
        async with aiohttp.ClientSession(base) as api:
            async with api.post(
                f"{CONSOLE}/terminals", headers={**BROWSER, "Origin": base}, allow_redirects=False
            ) as response:
                assert response.status == 401
            async with api.get(
                f"{DAEMON}/programs", headers=BROWSER, allow_redirects=False
            ) as response:
                assert response.status == 401


@pytest.mark.parametrize(
    "given",
    [
        "https://evil.example/api/v1/run/console/programs",
        "//evil.example/api/v1/run/console/programs",
        "/\\evil.example/api/v1/run/console",
        "\\\\evil.example",
        "http:/api/v1/run/console/programs",
        "javascript:alert(1)",
        "/api/v1/daemon/programs",
        "/api/v1/run/consolex",
        "/api/v1/run/console/../../daemon/programs",
        "/api/v1/run/console/%2e%2e/%2e%2e/daemon/programs",
        "/api/v1/run/console//evil.example",
        "/api/v1/run/console/programs\r\nSet-Cookie: x=1",
        "/api/v1/run/console/programs#frag",
        "",
    ],
)
async def test_login_next_never_leaves_the_console(
    tcp_world: tuple[RunWorld, str], given: str
) -> None:
    """A `next` that is not a path under the console (another site, `//host`, a climb out
    with `..`, another area) is dropped: the page does not carry it and the login lands on
    the dashboard."""
    _, base = tcp_world
    async with aiohttp.ClientSession(base, cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        async with browser.get(f"{RUN}/login", params={"next": given}) as response:
            assert response.status == 200
            assert "name=next" not in await response.text()
        async with browser.post(
            f"{RUN}/login", data={"token": TOKEN, "next": given}, headers={"Origin": base},
            allow_redirects=False,
        ) as response:  # fmt: skip
            assert response.status == 303
            assert response.headers["Location"] == f"{CONSOLE}/programs"


# --- the terminal socket ----------------------------------------------------------------------


class Tty:
    """The console's terminal socket as the page uses it: frames out, output in."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.output = b""

    @property
    def text(self) -> str:
        return self.output.decode("utf-8", "replace")

    async def send(self, **frame: object) -> None:
        await self.ws.send_json(frame)

    async def type(self, text: str) -> None:
        await self.send(type="input", data=text)

    async def expect(self, pattern: str, timeout: float = 15) -> re.Match[str]:
        """Read output until `pattern` matches it; fail with the output otherwise."""
        deadline = time.monotonic() + timeout
        while (found := re.search(pattern, self.text)) is None:
            left = deadline - time.monotonic()
            assert left > 0, f"{pattern!r} not in {self.text[-2000:]!r}"
            try:
                message = await self.ws.receive(timeout=left)
            except TimeoutError:
                continue
            if message.type == aiohttp.WSMsgType.BINARY:
                self.output += message.data
            elif message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                raise AssertionError(f"socket closed; output {self.text[-2000:]!r}")
        return found

    async def synced(self) -> None:
        """Every frame sent so far has been handled: the server answers a ping only after
        it has read (and acted on) what came before it."""
        await self.ws.ping(b"sync")
        while True:
            message = await self.ws.receive(timeout=15)
            if message.type == aiohttp.WSMsgType.PONG:
                return
            if message.type == aiohttp.WSMsgType.BINARY:
                self.output += message.data


async def new_terminal(client: aiohttp.ClientSession, base: str) -> int:
    async with client.post(f"{CONSOLE}/terminals", headers={"Origin": base}) as response:
        assert response.status == 200, await response.text()
        return int(str(response.url).rstrip("/").rsplit("/", 1)[1])


async def close_terminal(client: aiohttp.ClientSession, base: str, terminal_id: int) -> None:
    async with client.post(
        f"{CONSOLE}/terminals/{terminal_id}/close", headers={"Origin": base},
        allow_redirects=False,
    ) as response:  # fmt: skip
        assert response.status == 303


async def shell_pid(base: str, terminal_id: int) -> int:
    async with (
        aiohttp.ClientSession(base, headers=AUTH) as api,
        api.get(f"{TERMINAL}/sessions") as response,
    ):
        sessions = (await response.json())["data"]
    return int(next(s["pid"] for s in sessions if s["id"] == terminal_id))


@contextlib.asynccontextmanager
async def tty(
    client: aiohttp.ClientSession, base: str, terminal_id: int, mode: str = "interactive"
) -> AsyncIterator[Tty]:
    async with client.ws_connect(
        f"{CONSOLE}/terminals/{terminal_id}/tty", params={"mode": mode}, origin=base,
        autoping=False,
    ) as ws:  # fmt: skip
        yield Tty(ws)


async def test_terminal_socket_types_pastes_interrupts_and_resizes(
    tcp_world: tuple[RunWorld, str], client: aiohttp.ClientSession
) -> None:
    """Over the console's socket typed keys run in the shell, a paste arrives as the API's
    paste encodes it (bracketed when the program enabled it, never a control key), Ctrl-C
    interrupts a `sleep 30` back to the prompt, and a resize is what `stty size` reports."""
    _, base = tcp_world
    terminal_id = await new_terminal(client, base)
    try:
        async with tty(client, base, terminal_id) as term:
            await term.send(type="resize", cols=171, rows=43)
            await term.type("stty size; echo ty$((6*7))ped\r")
            await term.expect(r"43 171\s+ty42ped")

            # the program asks for bracketed paste, then for none: the bytes it reads
            await term.type(
                "stty raw -echo; printf '\\033[?2004h'; echo R$((1))X; head -c 18 | od -An -tx1"
                " | tr -d ' \\n'; printf '\\033[?2004l'; echo; echo R$((2))X; head -c 3 |"
                " od -An -tx1 | tr -d ' \\n'; echo; echo E$((1))X; stty sane\r"
            )
            await term.expect(r"R1X\r?\n")
            await term.send(type="paste", data="hi\nyo\x03!")
            await term.expect(r"R2X\r?\n")
            await term.send(type="paste", data="a\nb")
            found = await term.expect(r"R1X\r?\n([0-9a-f]+)\S*\r?\nR2X\r?\n([0-9a-f]+)\r?\nE1X")
            assert bytes.fromhex(found[1]) == PASTE_START.encode() + b"hi\ryo!" + PASTE_END.encode()
            assert bytes.fromhex(found[2]) == b"a\rb"

            pid = await shell_pid(base, terminal_id)
            await term.type("sleep 30\r")

            async def sleeping() -> psutil.Process | None:
                found = [
                    child
                    for child in psutil.Process(pid).children(recursive=True)
                    if command_of(child) == ["sleep", "30"]
                ]
                return found[0] if found else None

            sleeper = await poll_until(sleeping, timeout=10)
            assert sleeper is not None
            await term.type("\x03")
            await term.type("echo af$((2+3))ter\r")
            await term.expect(r"af5ter", timeout=10)  # well before the sleep would end
            assert not sleeper.is_running() or sleeper.status() == psutil.STATUS_ZOMBIE
    finally:
        await close_terminal(client, base, terminal_id)


async def test_watch_mode_shows_output_and_ignores_every_frame(
    tcp_world: tuple[RunWorld, str], client: aiohttp.ClientSession
) -> None:
    """A watching socket sees what the shell writes, while what it sends (typed text, a
    paste, a resize) never reaches the shell."""
    _, base = tcp_world
    terminal_id = await new_terminal(client, base)
    try:
        async with (
            tty(client, base, terminal_id) as typing,
            tty(client, base, terminal_id, mode="watch") as watching,
        ):
            await typing.send(type="resize", cols=120, rows=40)
            await typing.synced()
            await watching.type("echo wat$((3*3))ch\r")
            await watching.send(type="paste", data="echo pas$((3*3))ted\n")
            await watching.send(type="input", data="\x03")
            await watching.send(type="resize", cols=50, rows=20)
            await watching.synced()
            await typing.type("stty size; echo fi$((2+2))ne\r")
            await typing.expect(r"40 120\s+fi4ne")
            await watching.expect(r"40 120\s+fi4ne")  # it shows the output
            for seen in (typing.text, watching.text):
                assert "wat9ch" not in seen and "pas9ted" not in seen
                assert "echo wat" not in seen and "echo pas" not in seen
    finally:
        await close_terminal(client, base, terminal_id)


async def test_terminal_socket_refuses_strangers_and_never_creates_a_terminal(
    tcp_world: tuple[RunWorld, str], client: aiohttp.ClientSession
) -> None:
    """The socket is refused from another origin or without the session cookie, and for a
    terminal that does not exist it answers 404 and none is created."""
    _, base = tcp_world
    terminal_id = await new_terminal(client, base)
    path = f"{CONSOLE}/terminals/{terminal_id}/tty"
    try:
        for origin in ("http://evil.example", f"http://localhost:{base.rsplit(':', 1)[1]}"):
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await client.ws_connect(path, origin=origin)
            assert refused.value.status == 403
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await client.ws_connect(path)  # no Origin at all
        assert refused.value.status == 403
        async with aiohttp.ClientSession(base) as stranger:
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await stranger.ws_connect(path, origin=base, headers=BROWSER)
            assert refused.value.status == 401
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await client.ws_connect(f"{CONSOLE}/terminals/4321/tty", origin=base)
        assert refused.value.status == 404
        async with (
            aiohttp.ClientSession(base, headers=AUTH) as api,
            api.get(f"{TERMINAL}/sessions") as response,
        ):
            ids = [s["id"] for s in (await response.json())["data"]]
        assert 4321 not in ids and terminal_id in ids
    finally:
        await close_terminal(client, base, terminal_id)


# --- apps: a run from a profile's search ------------------------------------------------------


def _run_forms(page: str) -> list[dict[str, str]]:
    """The fields of each Run form on an apps page, as a browser would post them."""
    form = r'<form method=post action="[^"]*/console/apps/run" class=inline>(.*?)</form>'
    field = r'name="([^"]*)" value="([^"]*)"'
    return [
        {html.unescape(name): html.unescape(value) for name, value in re.findall(field, body)}
        for body in re.findall(form, page)
    ]


async def test_run_carries_the_profile_its_candidate_was_found_under(
    tcp_world: tuple[RunWorld, str], client: aiohttp.ClientSession
) -> None:
    """A candidate from a source only a named profile enables is run from the apps page:
    its Run posts the profile with the pick, and the program runs in the terminal; without
    the profile the same pick is not found."""
    world, base = tcp_world
    extra = world.root / "extra"
    extra.mkdir(exist_ok=True)
    script = extra / "profile-only"
    script.write_text('#!/bin/sh\necho "profile-only-$((6*7))"\n')
    script.chmod(0o755)
    manifest = {
        "version": 1,
        "apps": [
            {
                "id": "profile-only",
                "title": "Profile Only",
                "argv": [str(script)],
                "description": "a profile's app",
            }
        ],
    }
    (extra / "apps.json").write_text(json.dumps(manifest))
    source = {
        "source_id": "extra",
        "enabled": False,
        "priority": 60,
        "provider": "registry",
        "source_type": "trusted-list-file",
        "config": {"path": str(extra / "apps.json")},
    }
    profile = {"name": "with-extra", "sources": [{"source_id": "extra", "enabled": True}]}
    origin = {"Origin": base}
    async with aiohttp.ClientSession(base, headers=AUTH) as api:
        async with api.post(f"{RUN}/sources", json=source) as response:
            assert response.status == 201, await response.text()
        async with api.post(f"{RUN}/profiles", json=profile) as response:
            assert response.status == 201, await response.text()
        async with api.post(f"{RUN}/sources/extra/sync") as response:
            assert response.status < 300, await response.text()
    terminal_id = await new_terminal(client, base)
    try:
        search = {"app": "profile-only", "profile": "with-extra"}

        async def found() -> str | None:
            async with client.get(f"{CONSOLE}/apps", params=search) as response:
                page = await response.text()
            return page if "Profile Only" in page else None

        page = await poll_until(found, timeout=20)
        assert page is not None
        assert 'name=profile value="with-extra"' in page  # the search form keeps it
        forms = _run_forms(page)
        assert len(forms) == 1 and forms[0]["profile"] == "with-extra"
        form = {**forms[0], "terminal_id": str(terminal_id)}
        without = {k: v for k, v in form.items() if k != "profile"}
        async with client.post(f"{CONSOLE}/apps/run", data=without, headers=origin) as response:
            assert response.status == 404, await response.text()
        async with client.post(
            f"{CONSOLE}/apps/run", data=form, headers=origin, allow_redirects=False
        ) as response:
            assert response.status == 303, await response.text()
            assert response.headers["Location"] == f"{CONSOLE}/terminals/{terminal_id}"
        async with tty(client, base, terminal_id) as term:
            await term.expect(r"profile-only-42", timeout=20)
        async with client.post(
            f"{CONSOLE}/apps/run", data={**form, "sneaky": "1"}, headers=origin
        ) as response:
            assert response.status == 400 and "sneaky" in await response.text()
    finally:
        await close_terminal(client, base, terminal_id)
        async with aiohttp.ClientSession(base, headers=AUTH) as api:
            async with api.delete(f"{RUN}/profiles/with-extra"):
                pass
            async with api.delete(f"{RUN}/sources/extra"):
                pass


# --- restarts ---------------------------------------------------------------------------------


def test_the_observer_counts_the_restarts_supervisord_makes_by_itself() -> None:
    """A STARTING right after an exit, after a failed start or after RUNNING (its exit
    unheard) is a restart; a start after a stop is not; a process gone forgets its count."""
    from hoodyd.programs.events import ProcessEvent
    from hoodyd.programs.observer import Observer
    from hoodyd.programs.supervisor_client import SupervisorClient

    async def nothing() -> None:
        return None

    watching = Observer(
        SupervisorClient("/nonexistent/supervisor.sock"), interval=60, events_socket=None,
        revive=nothing, converge=nothing,
    )  # fmt: skip

    def heard(*states: str) -> None:
        for state in states:
            watching.on_event(ProcessEvent(process_name="web", group_name="web", state=state))  # type: ignore[arg-type]

    heard("STARTING", "RUNNING")
    assert watching.restarts("web") == 0
    heard("EXITED", "STARTING", "RUNNING")
    assert watching.restarts("web") == 1
    heard("EXITED", "STARTING", "BACKOFF", "STARTING", "RUNNING")
    assert watching.restarts("web") == 3
    heard("STARTING")  # after RUNNING: its EXITED was lost
    assert watching.restarts("web") == 4
    heard("RUNNING", "STOPPING", "STOPPED", "STARTING", "RUNNING")
    assert watching.restarts("web") == 4
    watching.record([], time.monotonic())
    assert watching.restarts("web") == 0


async def _restarts_of(client: aiohttp.ClientSession, program_id: int) -> int | None:
    async with client.get(f"{CONSOLE}/programs/table") as response:
        table = await response.text()
    row = re.search(
        rf"data-program-id=\"{program_id}\">.*?<td data-label=Restarts class=restarts>(\d*)</td>",
        table,
    )
    assert row is not None, table
    return int(row[1]) if row[1] else None


async def test_restarts_count_supervisord_restarts_not_the_ones_asked_for(
    tcp_world: tuple[RunWorld, str], client: aiohttp.ClientSession
) -> None:
    """The dashboard's Restarts column counts a crashing program's automatic restarts and
    stays at 0 for a program restarted from its button."""
    _, base = tcp_world
    origin = {"Origin": base}
    # it outlives supervisord's one-second startsecs by far, so its start succeeds however
    # late a busy machine runs supervisord's check; then it crashes
    crashing = await add_program(base, "crashing", "/bin/sh -c 'sleep 3; exit 3'")
    steady = await add_program(base, "steady", "sleep 600")
    try:
        for program_id in (crashing, steady):
            async with client.post(
                f"{CONSOLE}/programs/{program_id}/start", headers=origin, allow_redirects=False
            ) as response:
                assert response.status == 303, await response.text()
        for _ in range(2):
            async with client.post(
                f"{CONSOLE}/programs/{steady}/restart", headers=origin, allow_redirects=False
            ) as response:
                assert response.status == 303, await response.text()

        async def restarted_twice() -> int | None:
            count = await _restarts_of(client, crashing)
            return count if count is not None and count >= 2 else None

        assert await poll_until(restarted_twice, timeout=30)
        assert await _restarts_of(client, steady) == 0
    finally:
        async with aiohttp.ClientSession(base, headers=AUTH) as api:
            for program_id in (crashing, steady):
                async with api.post(f"{DAEMON}/programs/remove/{program_id}") as response:
                    assert response.status == 200, await response.text()


# --- where `hoodyd serve` says the console is -------------------------------------------------


def test_serve_on_tcp_names_the_console_url_and_the_token_file(short_tmp: Path) -> None:
    """On a terminal, `hoodyd serve --tcp` prints the console's URL and the path of the token
    file it generated (never the token); the URL leads to the login page."""
    import signal
    import sys
    import urllib.request

    from tests.test_cli import Pty, cli_env

    port = free_port()
    argv = [sys.executable, "-m", "hoodyd", "serve", "--state-dir", str(short_tmp),
            "--socket", str(short_tmp / "s.sock"), "--tcp", f"127.0.0.1:{port}"]  # fmt: skip
    server = Pty(argv, {**cli_env(None), "HOODYD_LOG_FORMAT": "json"})
    try:
        token_file = short_tmp / "token"
        line = f"hoodyd: console at http://127.0.0.1:{port}/ (token in {token_file})"
        said = server.expect(line.encode(), timeout=60)
        token = token_file.read_text().strip()
        assert token and token.encode() not in said
        assert token_file.stat().st_mode & 0o077 == 0
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as response:
            assert response.url.endswith(f"{RUN}/login") and response.status == 200
            assert str(token_file) in response.read().decode()
    finally:
        server.process.send_signal(signal.SIGINT)
        assert server.finish(timeout=30) == 0
