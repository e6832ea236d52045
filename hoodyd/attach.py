"""`hoodyd attach N`: connect this terminal to session N over the Unix socket, like
`tmux attach`.

The local TTY goes to raw mode so every key reaches the remote shell (Ctrl-C included); the
window size is sent at start and on every SIGWINCH; the detach key (Ctrl-] by default, as in
telnet) leaves the session running and restores the TTY.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import termios
import tty
from collections.abc import Mapping

import aiohttp
import msgspec

from hoodyd.client.http import QueryValue, Target, Unreachable, describe_failure, query_string
from hoodyd.tasks import cancel_and_wait

DEFAULT_DETACH_KEY = "^]"


def parse_detach_key(text: str) -> int:
    """`^]`, `^A` … (a control character) or one plain character."""
    if len(text) == 2 and text[0] == "^":
        return ord(text[1].upper()) & 0x1F
    if len(text) == 1:
        return ord(text)
    raise ValueError(f"detach key must be one character or ^X, got {text!r}")


def describe_key(key: int) -> str:
    """`Ctrl-]` for 0x1d, the character itself for a printable key."""
    if key < 0x20:
        return f"Ctrl-{chr(key + 0x40)}"
    return chr(key)


class _Exit(msgspec.Struct):
    type: str
    exit_code: int | None = None
    error: str | None = None


async def attach(
    socket_path: str,
    terminal_id: int,
    detach_key: int,
    replay: int,
    *,
    session: Mapping[str, QueryValue] | None = None,
) -> int:
    """Run the attach session; returns the process exit code. `session`: the options of the
    terminal if this attach creates it (`shell`, `cwd`, `user`, `env`)."""
    stdin_fd, stdout_fd = sys.stdin.fileno(), sys.stdout.fileno()
    loop = asyncio.get_running_loop()
    query = query_string({"replay": replay, **(session or {})})
    url = f"http://localhost/api/v1/terminal/attach/{terminal_id}{query}"
    connector = aiohttp.UnixConnector(path=socket_path)
    async with aiohttp.ClientSession(connector=connector) as http:
        try:
            ws = await http.ws_connect(url, heartbeat=30)
        except aiohttp.WSServerHandshakeError as exc:
            detail = await _error_text(http, url)
            print(
                f"hoodyd: cannot attach to terminal {terminal_id}: {detail or exc.status}",
                file=sys.stderr,
            )
            return 1
        except aiohttp.ClientConnectionError as exc:
            cause = describe_failure(exc.__cause__ or exc)
            print(f"hoodyd: {Unreachable(Target(socket=socket_path), cause)}", file=sys.stderr)
            return 3
        outgoing: asyncio.Queue[bytes | str | None] = asyncio.Queue()
        ending = ""

        def on_input() -> None:
            try:
                data = os.read(stdin_fd, 4096)
            except OSError:
                data = b""
            if not data:
                outgoing.put_nowait(None)  # stdin closed: detach
                return
            key = data.find(bytes([detach_key]))
            if key >= 0:
                if key:
                    outgoing.put_nowait(data[:key])
                outgoing.put_nowait(None)
                return
            outgoing.put_nowait(data)

        def on_resize() -> None:
            size = _window_size(stdout_fd)
            if size is not None:
                cols, rows = size
                outgoing.put_nowait(
                    msgspec.json.encode({"type": "resize", "cols": cols, "rows": rows}).decode()
                )

        async def send_all() -> None:
            while (item := await outgoing.get()) is not None:
                if isinstance(item, bytes):
                    await ws.send_bytes(item)
                else:
                    await ws.send_str(item)
            await ws.close()

        saved = termios.tcgetattr(stdin_fd) if os.isatty(stdin_fd) else None
        print(
            f"[attached to terminal {terminal_id}; press {describe_key(detach_key)} to detach, "
            "the session keeps running]\r",
            file=sys.stderr,
        )
        sender = asyncio.create_task(send_all())
        try:
            if saved is not None:
                tty.setraw(stdin_fd)
                loop.add_signal_handler(signal.SIGWINCH, on_resize)
            on_resize()
            loop.add_reader(stdin_fd, on_input)
            async for message in ws:
                if message.type == aiohttp.WSMsgType.BINARY:
                    os.write(stdout_fd, message.data)
                elif message.type == aiohttp.WSMsgType.TEXT:
                    event = msgspec.json.decode(message.data, type=_Exit)
                    if event.type == "exit":
                        ending = f"[terminal {terminal_id}: the shell exited ({event.exit_code})]"
        finally:
            loop.remove_reader(stdin_fd)
            if saved is not None:
                loop.remove_signal_handler(signal.SIGWINCH)
                termios.tcsetattr(stdin_fd, termios.TCSAFLUSH, saved)
            await cancel_and_wait(sender)
    print(f"\r\n{ending or f'[detached from terminal {terminal_id}]'}", file=sys.stderr)
    return 0


async def _error_text(http: aiohttp.ClientSession, url: str) -> str | None:
    """The JSON error of a refused attach (the handshake error carries only the status)."""
    with contextlib.suppress(aiohttp.ClientError, msgspec.DecodeError, ValueError):
        async with http.get(url) as response:
            body = msgspec.json.decode(await response.read())
            if isinstance(body, dict) and isinstance(body.get("error"), str):
                return str(body["error"])
    return None


def _window_size(fd: int) -> tuple[int, int] | None:
    try:
        size = os.get_terminal_size(fd)
    except OSError:
        return None
    return size.columns, size.lines
