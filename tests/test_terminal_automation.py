"""The terminal automation routes over HTTP, driving a real full-screen program in a real PTY
(`tests/data/keyboard_tui.py`, which prints the exact bytes each key, click or paste gave it),
plus first-use creation, abort, raw output and the SDK's `/ws` socket."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest
from aiohttp.test_utils import TestClient

from hoodyd.app import create_app
from hoodyd.polling import poll_until
from hoodyd.terminals.cleanup import find_holders
from tests.conftest import make_config

BASE = "/api/v1/terminal"
TUI = Path(__file__).parent / "data" / "keyboard_tui.py"
# How long a terminal is watched for bytes that must never reach it (a refused press, input
# on a read-only socket): nothing written sends no event, so that absence can only be
# observed over a fixed window.
ABSENCE_WINDOW = 0.5
# How long a refused pattern may keep a request busy before the test fails as hung: over a
# hundred times the search's time budget, not a threshold.
PATTERN_HANG_GUARD = 30.0


@pytest.fixture
async def client(aiohttp_client: Any, short_tmp: Path) -> AsyncIterator[TestClient]:
    """The real app factory, serving only the terminal area."""
    config = make_config(short_tmp, terminals={"user_rc": False})
    yield await aiohttp_client(create_app(config, areas=("terminal",)))


async def call(
    client: TestClient, method: str, path: str, body: Any = None, status: int = 200
) -> dict[str, Any]:
    response = await client.request(method, f"{BASE}{path}", json=body)
    payload: dict[str, Any] = await response.json()
    assert response.status == status, payload
    return payload


async def wait_for(client: TestClient, terminal_id: int, pattern: str) -> dict[str, Any]:
    body = await call(
        client,
        "POST",
        f"/wait?terminal_id={terminal_id}",
        {"mode": "regex", "pattern": pattern, "timeout_ms": 10_000},
    )
    assert body["status"] == "matched", body["lines"]
    return body


async def sleep_started(client: TestClient, terminal_id: int) -> None:
    """Wait until a `sleep 30` runs under the terminal's shell."""
    sessions = await call(client, "GET", "/sessions")
    shell = psutil.Process(next(s["pid"] for s in sessions["data"] if s["id"] == terminal_id))

    async def sleeping() -> bool | None:
        for child in shell.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if child.cmdline() == ["sleep", "30"]:
                    return True
        return None

    assert await poll_until(sleeping, timeout=10, interval=0.02), "no sleep 30 started"


async def start_tui(client: TestClient, terminal_id: int) -> None:
    await call(
        client, "POST", f"/write?terminal_id={terminal_id}", {"input": f"{sys.executable} {TUI}"}
    )
    await wait_for(client, terminal_id, "^READY")


async def test_write_creates_the_terminal_on_first_use(client: TestClient) -> None:
    """`write` to a terminal that was never created starts it and types the line with Enter."""
    body = await call(client, "POST", "/write?terminal_id=5", {"input": "echo first-$((40+2))"})
    assert (body["terminal_id"], body["created"]) == ("5", True)
    await wait_for(client, 5, r"^first-42")
    again = await call(client, "POST", "/write?terminal_id=5", {"input": "x", "enter": False})
    assert (again["created"], again["bytes"]) == (False, 1)


async def test_execute_into_a_never_created_terminal_creates_it(client: TestClient) -> None:
    """`execute` into terminal 9, never created, starts it with the query's shell and cwd."""
    body = await call(
        client, "POST", "/execute?terminal_id=9&shell=sh&cwd=/tmp", {"command": "pwd"}
    )
    assert (body["exit_code"], body["stdout"]) == (0, "/tmp\n")
    sessions = await call(client, "GET", "/sessions")
    assert [(s["id"], s["shell"]) for s in sessions["data"]] == [(9, "sh")]


async def test_first_use_refuses_bad_options_and_reserved_ids(client: TestClient) -> None:
    """A refused first use starts nothing: bad cwd, unknown shell, reserved or bad id."""
    await call(client, "POST", "/write?terminal_id=6&cwd=/nonexistent", {"input": "x"}, 400)
    await call(client, "POST", "/write?terminal_id=6&shell=csh", {"input": "x"}, 400)
    await call(client, "POST", "/write?terminal_id=40001", {"input": "x"}, 400)
    await call(client, "POST", "/write?terminal_id=0", {"input": "x"}, 400)
    await call(client, "POST", "/write?terminal_id=1%3B2", {"input": "x"}, 400)
    await call(client, "POST", "/press?terminal_id=6", {"keys": ["enter", "nosuchkey"]}, 400)
    assert (await call(client, "GET", "/sessions"))["data"] == []


async def test_snapshot_shows_the_alternate_screen_title_and_highlights(
    client: TestClient,
) -> None:
    """A full-screen program's snapshot: its lines, alt screen, title, reverse video."""
    await start_tui(client, 2)
    shot = await call(client, "GET", "/snapshot?terminal_id=2&include_colors=true")
    assert shot["lines"][0] == "READY" and shot["lines"][1] == "MENU"
    assert shot["alt_screen"] is True and shot["title"] == "tui-title"
    assert any(h["text"] == "MENU" for h in shot["highlights"])
    assert "\x1b[" in shot["colored_lines"][1]
    state = await call(client, "GET", "/2/automation")
    assert state["vterm_active"] and state["alt_screen"] and state["application_cursor"]
    assert state["bracketed_paste"] and state["mouse_tracking"] is not None
    metrics = await call(client, "GET", "/automation/metrics")
    assert metrics["vterm_sessions_active"] == 1
    assert 0 < metrics["vterm_memory_bytes_used"] <= metrics["vterm_memory_mb_cap"] * 2**20
    await call(client, "POST", "/write?terminal_id=2", {"input": "q", "enter": False})
    body = await wait_for(client, 2, "^BYE")
    assert body["alt_screen"] is False


async def test_press_honours_application_cursor_mode(client: TestClient) -> None:
    """Arrow keys reach a program in application cursor mode as SS3 sequences, Enter as CR."""
    await start_tui(client, 3)
    body = await call(client, "POST", "/press?terminal_id=3", {"keys": ["arrow_up", "enter"]})
    assert body["keys"] == 2
    await wait_for(client, 3, re.escape(r"got: b'\x1bOA\r'") + "|" + re.escape(r"got: b'\x1bOA'"))
    await call(client, "POST", "/press?terminal_id=3", {"key": "ctrl+c"})
    await wait_for(client, 3, re.escape(r"got: b'\x03'"))


async def test_an_unknown_key_writes_nothing(client: TestClient) -> None:
    """One unknown key name refuses the whole press: no byte of the others is written."""
    await start_tui(client, 4)
    refused = await call(client, "POST", "/press?terminal_id=4", {"keys": ["a", "bogus"]}, 400)
    assert "bogus" in refused["error"]
    await call(client, "POST", "/press?terminal_id=4", {"keys": [], "key": None}, 400)
    # a marker key pressed after the refused presses: once the program shows it, any byte
    # they had written would have shown before it (or in the same read)
    await call(client, "POST", "/press?terminal_id=4", {"key": "z"})
    body = await wait_for(client, 4, "got: b'.*z'")
    assert [line for line in body["lines"] if line.startswith("got:")] == ["got: b'z'"]


async def test_mouse_click_and_paste_follow_the_modes_the_program_set(client: TestClient) -> None:
    """A click is SGR-encoded (the program asked for 1006); a paste is bracketed (2004)."""
    await start_tui(client, 6)
    body = await call(
        client, "POST", "/mouse?terminal_id=6", {"event": {"type": "click", "row": 4, "col": 9}}
    )
    assert body["events"] == 1
    await wait_for(client, 6, re.escape(r"\x1b[<0;10;5M"))
    pasted = await call(client, "POST", "/paste?terminal_id=6", {"text": "ab\x1b[201~c"})
    assert pasted["bracketed"] is True
    body = await wait_for(client, 6, re.escape(r"\x1b[200~"))
    text = "\n".join(body["lines"])
    assert r"\x1b[200~ab" in text and r"c\x1b[201~" in text
    assert text.count(r"\x1b[201~") == 1  # the text could not end the paste early


async def test_mouse_is_refused_while_the_program_has_not_asked_for_it(client: TestClient) -> None:
    """At a shell prompt nobody reads mouse reports: 400, nothing written."""
    await call(client, "POST", "/write?terminal_id=7", {"input": "true"})
    refused = await call(
        client,
        "POST",
        "/mouse?terminal_id=7",
        {"event": {"type": "click", "row": 0, "col": 0}},
        409,
    )
    assert refused["reason"] == "MOUSE_NOT_ENABLED"
    bad = {"events": [{"type": "click", "row": 0, "col": 0}, {"type": "drag", "row": 0, "col": 0}]}
    await call(client, "POST", "/mouse?terminal_id=7", bad, 400)


async def test_find_and_wait_modes(client: TestClient) -> None:
    """find answers cell positions; wait resolves stable, regex, timeout and refuses bad
    patterns with a 400."""
    await call(
        client, "POST", "/execute?terminal_id=8", {"command": "printf 'alpha\\nbeta gamma\\n'"}
    )
    found = await call(client, "GET", "/find?terminal_id=8&pattern=gam%2Ba")
    assert ("gamma", 2, 5) in [(h["text"], h["row"], h["col"]) for h in found["hits"]]
    none = await call(client, "GET", "/find?terminal_id=8&pattern=zzz&scope=all")
    assert none["hits"] == []
    await call(client, "GET", "/find?terminal_id=8&pattern=(", status=400)
    await call(client, "GET", "/find?terminal_id=8&pattern=" + "a" * 1025, status=400)
    await call(client, "GET", "/find?terminal_id=8", status=400)
    await call(client, "GET", "/find?terminal_id=8&pattern=a&limit=1001", status=400)
    stable = await call(client, "POST", "/wait?terminal_id=8", {"debounce_ms": 50})
    assert stable["status"] == "stable" and "lines" in stable
    timeout = await call(
        client,
        "POST",
        "/wait?terminal_id=8",
        {"mode": "regex", "pattern": "never", "timeout_ms": 100},
    )
    # a lower bound only, which no slowness can break: it did not give up before timeout_ms
    assert timeout["status"] == "timeout" and timeout["elapsed_ms"] >= 100
    await call(client, "POST", "/wait?terminal_id=8", {"mode": "regex"}, 400)
    # wait's options are the body's; the query names the terminal and nothing else
    await call(client, "POST", "/wait?terminal_id=8&include_colors=true", {}, 400)
    await call(client, "POST", "/wait?terminal_id=8", {"timeout_ms": 5}, 400)


async def test_a_pathological_pattern_cannot_hang_the_daemon(client: TestClient) -> None:
    """Catastrophic backtracking is cut off by the time budget (a 400 PATTERN_TIMEOUT), a
    pattern too costly to compile is refused before it compiles, and the daemon answers."""
    await call(
        client, "POST", "/execute?terminal_id=8", {"command": "printf 'a%.0s' $(seq 40); echo b"}
    )
    # hang guards only: uncut, either pattern would keep the search busy for hours
    async with asyncio.timeout(PATTERN_HANG_GUARD):
        refused = await call(
            client, "GET", "/find?terminal_id=8&pattern=%28a%7Caa%29%2B%24&scope=all", status=400
        )
    assert refused["reason"] == "PATTERN_TIMEOUT" and "too long" in refused["error"]
    # counted repetitions are unrolled when a pattern compiles, which no timeout bounds
    nested = "/find?terminal_id=8&pattern=%28%3F%3Aa%7B65535%7D%29%7B65535%7D"
    async with asyncio.timeout(PATTERN_HANG_GUARD):
        refused = await call(client, "GET", nested, status=400)
    assert refused["reason"] == "INVALID_PATTERN" and "repeats a piece" in refused["error"]
    wait = {"mode": "regex", "pattern": "(?:(?:a{255}){255}){255}"}
    await call(client, "POST", "/wait?terminal_id=8", wait, 400)
    assert (await call(client, "GET", "/health"))["status"] == "ok"


async def test_wait_reports_the_shell_exit(client: TestClient) -> None:
    """A wait on a shell that exits answers `exited` with the last screen."""
    await call(client, "POST", "/write?terminal_id=10", {"input": "sleep 0.3; exit 4"})
    body = await call(
        client,
        "POST",
        "/wait?terminal_id=10",
        {"mode": "regex", "pattern": "never", "timeout_ms": 10_000},
    )
    assert body["status"] == "exited"


async def test_at_most_sixteen_waiters_per_session(client: TestClient) -> None:
    """The 17th concurrent wait on one session is refused while 16 are counted as waiting;
    the 16 others resolve."""
    await call(client, "POST", "/write?terminal_id=11", {"input": "true"})
    waits = [
        asyncio.ensure_future(
            call(
                client,
                "POST",
                "/wait?terminal_id=11",
                {"mode": "regex", "pattern": "go-now", "timeout_ms": 10_000},
            )
        )
        for _ in range(16)
    ]

    async def all_waiting() -> bool | None:
        state = await call(client, "GET", "/11/automation")
        return True if state["waiter_count"] == 16 else None

    assert await poll_until(all_waiting, timeout=10, interval=0.02), "the 16 never all waited"
    refused = await call(
        client, "POST", "/wait?terminal_id=11", {"mode": "regex", "pattern": "x"}, 409
    )
    assert refused["reason"] == "TOO_MANY_WAITERS"
    await call(client, "POST", "/write?terminal_id=11", {"input": "echo go-now"})
    assert {body["status"] for body in await asyncio.gather(*waits)} == {"matched"}


async def test_abort_interrupts_or_kills_the_running_command(client: TestClient) -> None:
    """abort sends SIGINT (a plain sleep ends 130), force SIGKILL (a sleep that ignores INT
    ends 137), and a finished command answers 409 with its result."""
    started = await call(
        client, "POST", "/execute?terminal_id=12&wait=false", {"command": "sleep 30"}
    )
    await sleep_started(client, 12)
    body = await call(client, "POST", f"/execute/{started['command_id']}/abort")
    assert (body["status"], body["exit_code"]) == ("failed", 130)
    stubborn = await call(
        client,
        "POST",
        "/execute?terminal_id=12&wait=false",
        {"command": "bash -c \"trap '' INT; sleep 30\""},
    )
    await sleep_started(client, 12)
    body = await call(client, "POST", f"/execute/{stubborn['command_id']}/abort", {"force": True})
    assert body["exit_code"] == 137
    again = await call(client, "POST", f"/execute/{stubborn['command_id']}/abort", None, 409)
    assert again["reason"] == "COMMAND_FINISHED" and again["result"]["exit_code"] == 137
    await call(client, "POST", "/execute/99999/abort", None, 400)
    await call(client, "POST", "/execute/4242/abort", None, 404)
    after = await call(client, "POST", "/execute?terminal_id=12", {"command": "echo alive"})
    assert after["stdout"] == "alive\n"


async def test_raw_output_in_three_formats(client: TestClient) -> None:
    """raw answers the unrendered buffer as a download, as text, or as escaped HTML."""
    await call(
        client, "POST", "/execute?terminal_id=1", {"command": "printf '\\033[1m<b>&\\033[0m\\n'"}
    )
    download = await client.get(f"{BASE}/raw")
    assert download.headers["Content-Disposition"].startswith("attachment")
    assert b"\x1b[1m<b>&" in await download.read()
    text = await client.get(f"{BASE}/raw?terminal_id=1&format=text&tail=2")
    assert text.content_type == "text/plain" and "<b>&" in await text.text()
    page = await client.get(f"{BASE}/raw?format=html")
    html_text = await page.text()
    assert "&lt;b&gt;&amp;" in html_text and "\x1b" not in html_text
    await call(client, "GET", "/raw?terminal_id=77", status=404)
    await call(client, "GET", "/raw?format=pdf", status=400)


async def test_keys_state_beacon_and_unsupported_routes(client: TestClient) -> None:
    """keys lists the names; the state beacon is accepted; display routes answer 501."""
    keys = await call(client, "GET", "/keys")
    assert {"enter", "arrow_up", "f5", "ctrl+c"} <= set(keys["keys"])
    assert (await call(client, "POST", "/state", {"renderer": "webgl"}))["success"] is True
    await call(client, "POST", "/state", {"renderer": "x" * 300}, 400)
    for method, path in (
        ("GET", "/screenshot?terminal_id=1"),
        ("POST", "/drop-begin?terminal_id=1"),
    ):
        body = await call(client, method, path, None, 501)
        assert body["reason"] == "NOT_SUPPORTED"


async def test_ws_speaks_the_sdk_framing(client: TestClient) -> None:
    """`/ws`: the tty subprotocol, setup frames after the handshake, typed input, output
    frames; a read-only client's input is dropped; `cmd` is typed into a new session."""
    command = base64.b64encode(b"echo from-cmd").decode()
    ws = await client.ws_connect(f"{BASE}/ws?terminal_id=13&cmd={command}", protocols=("tty",))
    assert ws.protocol == "tty"
    await ws.send_str('{"columns": 100, "rows": 30}')
    setup = [await ws.receive_bytes(timeout=10) for _ in range(4)]
    assert [frame[:1] for frame in setup] == [b"1", b"2", b"3", b"4"]
    assert setup[2] == b"313" and setup[3] == b"4bash"
    seen = b""
    await ws.send_bytes(b"0echo ws-$((6*7))\r")
    while b"ws-42" not in seen or b"from-cmd" not in seen:
        frame = await ws.receive_bytes(timeout=10)
        assert frame[:1] == b"0"
        seen += frame[1:]
    await ws.close()
    sessions = await call(client, "GET", "/sessions")
    assert [(s["cols"], s["rows"]) for s in sessions["data"] if s["id"] == 13] == [(100, 30)]
    readonly = await client.ws_connect(
        f"{BASE}/ws?terminal_id=13&readonly=true", protocols=("tty",)
    )
    await readonly.send_str('{"columns": 100, "rows": 30}')
    await readonly.send_bytes(b"0echo should-not-run\r")
    await asyncio.sleep(ABSENCE_WINDOW)
    await readonly.close()
    found = await call(client, "GET", "/find?terminal_id=13&pattern=should-not-run&scope=all")
    assert found["hits"] == []
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect(f"{BASE}/ws?terminal_id=13&ssh_host=example.org")
    assert refused.value.status == 400


async def test_concurrent_first_uses_share_one_shell(client: TestClient, short_tmp: Path) -> None:
    """50 callers writing to a terminal that does not exist yet start exactly one holder."""
    bodies = await asyncio.gather(
        *(call(client, "POST", "/write?terminal_id=30", {"input": f"echo c{i}"}) for i in range(50))
    )
    assert sum(body["created"] for body in bodies) >= 1
    sessions = await call(client, "GET", "/sessions")
    assert [s["id"] for s in sessions["data"]] == [30]
    assert [h.terminal_id for h in find_holders(short_tmp)] == [30]
    await wait_for(client, 30, "^c49$|c49")


async def test_a_killed_holder_leaves_an_exited_session_that_reset_replaces(
    client: TestClient, short_tmp: Path
) -> None:
    """SIGKILL of a session's holder: the session reports exited, execute answers 409
    SHELL_EXITED, and reset=true starts a new holder in its place."""
    await call(client, "POST", "/execute?terminal_id=31", {"command": "true"})
    (held,) = find_holders(short_tmp)
    os.kill(held.pid, signal.SIGKILL)

    async def exited() -> bool | None:
        sessions = await call(client, "GET", "/sessions")
        return True if sessions["data"][0]["state"] == "exited" else None

    assert await poll_until(exited, timeout=10, interval=0.05)
    refused = await call(client, "POST", "/execute?terminal_id=31", {"command": "true"}, 409)
    assert refused["reason"] == "SHELL_EXITED"
    again = await call(
        client, "POST", "/execute?terminal_id=31&reset=true", {"command": "echo back"}
    )
    assert again["stdout"] == "back\n"
    assert [h.pid != held.pid for h in find_holders(short_tmp)] == [True]


async def test_an_exited_session_keeps_its_history_across_holder_scans(
    aiohttp_client: Any, short_tmp: Path
) -> None:
    """A shell that exited keeps its session (output, history) while its holder lingers; the
    scan for new holders does not take it over again."""
    config = make_config(short_tmp, terminals={"user_rc": False, "holder_scan_interval": 0.05})
    client = await aiohttp_client(create_app(config, areas=("terminal",)))
    await call(client, "POST", "/execute?terminal_id=32", {"command": "echo kept"})
    await call(client, "POST", "/execute?terminal_id=32&wait=false", {"command": "exit 3"})

    async def exited() -> dict[str, Any] | None:
        sessions: dict[str, Any] = await call(client, "GET", "/sessions")
        return sessions if all(s["state"] == "exited" for s in sessions["data"]) else None

    sessions = await poll_until(exited, timeout=10) or await call(client, "GET", "/sessions")
    assert [(s["state"], s["exit_code"]) for s in sessions["data"]] == [("exited", 3)]
    history = await call(client, "GET", "/history/32")
    assert [item["command"] for item in history["data"]] == ["echo kept", "exit 3"]
    assert "kept" in (await call(client, "GET", "/output/32"))["data"]


@pytest.mark.skipif(os.geteuid() != 0, reason="starting a shell as another user needs root")
async def test_a_session_runs_as_the_user_it_names(client: TestClient) -> None:
    """As root, `user` starts the shell as that account (its HOME, the PTY its own) with the
    shell integration still working; an unknown user is a 400 that starts nothing."""
    for terminal_id, shell in ((33, "bash"), (34, "sh")):
        body = await call(
            client,
            "POST",
            f"/execute?terminal_id={terminal_id}&user=nobody&shell={shell}",
            {"command": 'id -un; echo "$HOME"; test -O "$(tty)" && echo tty-owned'},
        )
        assert (body["exit_code"], body["stdout"]) == (0, "nobody\n/nonexistent\ntty-owned\n")
    sessions = (await call(client, "GET", "/sessions"))["data"]
    assert [(s["id"], s["user"]) for s in sessions] == [(33, "nobody"), (34, "nobody")]
    status = Path(f"/proc/{sessions[0]['pid']}/status").read_text()
    assert "\nUid:\t65534\t65534\t65534\t65534\n" in status
    refused = await call(
        client, "POST", "/write?terminal_id=35&user=no-such-user", {"input": "x"}, 400
    )
    assert refused["reason"] == "UNKNOWN_USER"
    assert len((await call(client, "GET", "/sessions"))["data"]) == 2
