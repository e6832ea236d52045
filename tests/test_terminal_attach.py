"""A real `hoodyd serve` on a Unix socket: execute round trip and `hoodyd attach N` in a PTY."""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import DaemonProcess, start_daemon, wait_until
from tests.terminal_pty import PtyProgram

WAIT = 10.0
HOODYD = [sys.executable, "-m", "hoodyd"]


@pytest.fixture
def terminal_daemon(short_tmp: Path) -> Iterator[DaemonProcess]:
    """hoodyd serve without the box's own ~/.bashrc in its sessions."""
    config = short_tmp / "hoodyd.toml"
    config.write_text("[terminals]\nuser_rc = false\n")
    process = start_daemon(short_tmp, "--config", str(config))
    try:
        yield process
    finally:
        process.stop()


def read_until(fd: int, needle: bytes, seen: bytearray, *, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while needle not in seen:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"{needle!r} not seen in {bytes(seen)[-400:]!r}"
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            try:
                seen += os.read(fd, 65536)
            except OSError:  # EIO: the client exited
                assert needle in seen, f"{needle!r} not seen in {bytes(seen)[-400:]!r}"


async def test_execute_round_trip_over_the_unix_socket(terminal_daemon: DaemonProcess) -> None:
    """A real daemon runs a command in terminal 1 and answers its output over the socket."""
    connector = aiohttp.UnixConnector(path=str(terminal_daemon.socket))
    async with aiohttp.ClientSession(connector=connector, base_url="http://localhost") as http:
        response = await http.post(
            "/api/v1/terminal/execute?terminal_id=1", json={"command": "echo $((20+22))"}
        )
        body = await response.json()
        assert (response.status, body["stdout"], body["exit_code"]) == (200, "42\n", 0)
        health = await http.get("/api/v1/terminal/health")
        assert (await health.json())["service"] == "hoodyd-terminal"


@contextlib.contextmanager
def attach_in_pty(
    daemon: DaemonProcess,
    terminal_id: int = 1,
    options: Sequence[str] = (),
    cwd: Path | None = None,
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """`hoodyd attach N [OPTIONS]` on a new 80x24 PTY, its controlling TTY (`PtyProgram`), in
    `cwd`: its process and the PTY master, both ended on leaving."""
    argv = [*HOODYD, "attach", str(terminal_id), *options, "--socket", str(daemon.socket)]
    program = PtyProgram(argv, cwd=None if cwd is None else str(cwd))
    try:
        yield program.process, program.master
    finally:
        program.close()


async def test_hoodyd_attach_types_resizes_and_detaches(terminal_daemon: DaemonProcess) -> None:
    """`hoodyd attach 1` in a PTY: keys reach the shell, SIGWINCH resizes, Ctrl-] detaches."""
    with attach_in_pty(terminal_daemon) as (client, master):
        seen = bytearray()
        read_until(master, b"press Ctrl-] to detach", seen)  # the banner names the key
        # The first prompt shows the client is attached and in raw mode (entering raw mode
        # flushes typeahead, so typing earlier could be lost).
        read_until(master, b"\x1b[?2004h", seen)
        os.write(master, b"echo via-cli-$((40+2))\r")
        read_until(master, b"via-cli-42", seen)
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))

        # The resize travels client -> WebSocket -> PTY with no acknowledgement: ask the
        # remote shell for its size until it reports the new one.
        def size_shown() -> bool:
            os.write(master, b"stty size\r")
            answer = bytearray()
            read_until(master, b"\x1b[?2004h", answer)  # up to the next prompt
            return b"33 101" in answer

        assert wait_until(size_shown, timeout=WAIT)
        os.write(master, b"\x1d")  # Ctrl-]
        read_until(master, b"[detached from terminal 1]", seen)
        assert client.wait(timeout=WAIT) == 0
    connector = aiohttp.UnixConnector(path=str(terminal_daemon.socket))
    async with aiohttp.ClientSession(connector=connector, base_url="http://localhost") as http:
        sessions = await (await http.get("/api/v1/terminal/sessions")).json()
    assert [(s["id"], s["state"], s["clients"]) for s in sessions["data"]] == [(1, "running", 0)]


def test_hoodyd_attach_says_why_it_cannot_attach(terminal_daemon: DaemonProcess) -> None:
    """Without a TTY on stdin, with id 0 or a reserved id: a one-line reason, no traceback."""
    base = [sys.executable, "-m", "hoodyd", "attach"]
    sock = ["--socket", str(terminal_daemon.socket)]
    for argv, code, reason in (
        ([*base, "5", *sock], 2, "stdin is not one"),
        ([*base, "0", *sock], 2, "terminal id 0 is out of range (1-65535)"),
    ):
        result = subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=WAIT * 3
        )
        assert result.returncode == code, result.stderr
        assert reason in result.stderr and "Traceback" not in result.stderr
    with attach_in_pty(terminal_daemon, 40001) as (client, master):
        seen = bytearray()
        read_until(master, b"reserved for ephemeral sessions", seen)
        assert client.wait(timeout=WAIT) == 1


def test_hoodyd_attach_ends_when_the_shell_exits(terminal_daemon: DaemonProcess) -> None:
    """When the remote shell exits, `hoodyd attach` restores the TTY and reports the status."""
    with attach_in_pty(terminal_daemon) as (client, master):
        seen = bytearray()
        read_until(master, b"\x1b[?2004h", seen)
        os.write(master, b"exit 3\r")
        read_until(master, b"[terminal 1: the shell exited (3)]", seen)
        assert client.wait(timeout=WAIT) == 0
        assert termios.tcgetattr(master)[3] & termios.ECHO  # cooked mode is back


def test_hoodyd_attach_creates_the_terminal_with_its_session_options(
    terminal_daemon: DaemonProcess, short_tmp: Path
) -> None:
    """`hoodyd attach 7 --shell sh --cwd sub --env GREETING=hi` from a directory creates
    terminal 7 running sh in that directory's `sub` (a relative --cwd is the caller's), with
    the variable set."""
    work = short_tmp / "work"
    (work / "sub").mkdir(parents=True)
    options = ["--shell", "sh", "--cwd", "sub", "--env", "GREETING=hi there"]
    with attach_in_pty(terminal_daemon, 7, options, cwd=work) as (client, master):
        seen = bytearray()
        read_until(master, b"press Ctrl-] to detach", seen)
        expected = f"[hi there|{work / 'sub'}|".encode()

        def answered() -> bool:
            # typeahead sent before raw mode may be flushed: type the line again until it shows
            os.write(master, b'echo "[$GREETING|$(pwd)|$(ps -o comm= -p $$)]"\r')
            with contextlib.suppress(AssertionError):
                read_until(master, expected, seen, timeout=1.0)
            return expected in seen

        assert wait_until(answered, timeout=WAIT, interval=0), bytes(seen)[-400:]
        read_until(master, expected + b"sh]", seen)
        os.write(master, b"\x1d")
        read_until(master, b"[detached from terminal 7]", seen)
        assert client.wait(timeout=WAIT) == 0


async def test_attach_options_are_checked_before_anything_is_created(
    terminal_daemon: DaemonProcess,
) -> None:
    """A bad session option on `/attach` is a JSON 400 before the upgrade and leaves no
    terminal behind; the CLI refuses a malformed --env itself."""
    connector = aiohttp.UnixConnector(path=str(terminal_daemon.socket))
    async with aiohttp.ClientSession(connector=connector, base_url="http://localhost") as http:
        for query, reason in (
            ("cwd=/no/such/dir", "INVALID_CWD"),
            ("shell=csh", "UNSUPPORTED_SHELL"),
            ("env=NOEQUALS", "INVALID_ENV"),
            ("user=no-such-user-here", "UNKNOWN_USER"),
            ("colour=blue", "UNKNOWN_PARAMETER"),
        ):
            url = f"/api/v1/terminal/attach/8?{query}"
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(url)
            assert refused.value.status == 400, query
            # the handshake error has no body: the same request without the upgrade shows it
            response = await http.get(url)
            body = await response.json()
            assert (response.status, body["success"], body["reason"]) == (400, False, reason), (
                query,
                body,
            )
        sessions = await (await http.get("/api/v1/terminal/sessions")).json()
        assert 8 not in [s["id"] for s in sessions["data"]]
    result = subprocess.run(
        [*HOODYD, "attach", "8", "--env", "NOEQUALS", "--socket", str(terminal_daemon.socket)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=WAIT * 3,
    )
    assert result.returncode == 2 and "--env takes KEY=VALUE" in result.stderr, result.stderr


def test_hoodyd_attach_names_the_socket_it_could_not_reach(short_tmp: Path) -> None:
    """With no daemon on the socket, attach says which socket, why, and how to start one
    (the same words as every other verb), exit 3, no traceback."""
    missing = short_tmp / "nobody-serves.sock"
    program = PtyProgram([*HOODYD, "attach", "1", "--socket", str(missing)])
    try:
        seen = bytearray()
        read_until(program.master, b"hoodyd serve", seen)
        assert program.process.wait(timeout=WAIT) == 3
    finally:
        program.close()
    text = bytes(seen).decode(errors="replace")
    assert f"cannot reach hoodyd on {missing}: no such socket" in text, text
    assert "Traceback" not in text
