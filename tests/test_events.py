"""The daemon's streaming answers: `GET /events` (Server-Sent Events of state changes) and
`GET /programs/{id}/logs?follow=true`, each until the client leaves or the daemon stops."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp

from hoodyd.api.keys import PROGRAMS
from hoodyd.polling import poll_until
from tests.conftest import PORT_SERVER, DaemonProcess, add_program, start_daemon
from tests.ports import free_port_range

API = "/api/v1/daemon"
TICKER = "/bin/sh -c 'i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done'"


async def read_events(
    response: aiohttp.ClientResponse, until: str, timeout: float = 10
) -> list[Any]:
    """The events of an open stream up to the first whose state is `until`."""
    seen: list[Any] = []
    async with asyncio.timeout(timeout):
        while True:
            line = (await response.content.readline()).decode()
            if line.startswith("data: "):
                event = json.loads(line.removeprefix("data: "))
                seen.append(event)
                if event["event"] == until:
                    return seen


def subscribers(client: Any) -> int:
    return len(client.server.app[PROGRAMS].observer._subscribers)


async def test_events_stream_state_changes_as_server_sent_events(client: Any) -> None:
    """A start shows as STARTING then RUNNING events naming the program and its pid; a stop
    as STOPPING then STOPPED; the stream is text/event-stream."""
    program = await add_program(client)
    async with client.get(f"{API}/events") as stream:
        assert stream.status == 200
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        started = await client.post(f"{API}/programs/{program['id']}/start", json={})
        assert started.status == 200
        seen = await read_events(stream, "RUNNING")
        assert [e["event"] for e in seen] == ["STARTING", "RUNNING"]
        running = seen[-1]
        assert running["program"] == {"id": program["id"], "name": program["name"]}
        assert running["instance_name"] == program["name"]
        assert running["from_state"] == "STARTING"
        assert isinstance(running["pid"], int)
        assert "port" not in running
        await client.post(f"{API}/programs/{program['id']}/stop", json={})
        assert [e["event"] for e in await read_events(stream, "STOPPED")][-1] == "STOPPED"


async def test_events_of_port_instances_carry_the_port(client: Any) -> None:
    """An instance's events name it `<name>_<port>` and carry `port`."""
    port = free_port_range(2) + 1
    program = await add_program(
        client, command=PORT_SERVER, port_range={"start": port - 1, "end": port}
    )
    async with client.get(f"{API}/events") as stream:
        await client.post(f"{API}/programs/{program['id']}/start", json={"port": port})
        running = (await read_events(stream, "RUNNING"))[-1]
        assert running["port"] == port
        assert running["instance_name"] == f"{program['name']}_{port}"


async def test_a_client_that_leaves_is_unsubscribed(client: Any) -> None:
    """Once the client closes the stream, the handler ends and stops listening."""
    before = subscribers(client)
    stream = await client.get(f"{API}/events")
    await stream.content.readline()
    assert subscribers(client) == before + 1
    stream.close()

    async def unsubscribed() -> bool | None:
        return True if subscribers(client) == before else None

    assert await poll_until(unsubscribed, timeout=5, interval=0.05)


async def test_follow_streams_new_log_lines_until_the_client_leaves(client: Any) -> None:
    """`follow=true` answers text/plain: the last `lines` lines, then lines written later."""
    program = await add_program(client, command=TICKER)
    await client.post(f"{API}/programs/{program['id']}/start", json={"wait": True})
    async with client.get(
        f"{API}/programs/{program['id']}/logs", params={"follow": "true", "lines": "2"}
    ) as stream:
        assert stream.status == 200
        assert stream.headers["Content-Type"].startswith("text/plain")
        numbers: list[int] = []
        async with asyncio.timeout(10):
            while len(numbers) < 12:
                line = (await stream.content.readline()).decode()
                numbers.append(int(line.split()[1]))
        assert numbers == list(range(numbers[0], numbers[0] + 12)), "no line lost or repeated"


async def test_follow_checks_the_request_like_a_tail(client: Any) -> None:
    """A port-range program without `port` is refused before any stream starts."""
    program = await add_program(client, port_range={"start": 9421, "end": 9422})
    response = await client.get(
        f"{API}/programs/{program['id']}/logs", params={"follow": "true"}
    )
    assert response.status == 400
    assert (await response.json())["reason"] == "PORT_REQUIRED"


async def open_stream(
    socket: Path, path: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A raw HTTP/1.1 GET on the socket, its answer's head read: what is left is the body."""
    reader, writer = await asyncio.open_unix_connection(str(socket))
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    return reader, writer


async def test_open_streams_do_not_hold_up_shutdown(short_tmp: Path) -> None:
    """SIGTERM with an events stream and a followed log open: the daemon stops well within
    its drain timeout, and both connections are closed."""
    # a drain timeout far beyond the test's hang guard: streams that held up the shutdown
    # would keep it waiting for a minute and more, and the guard would fail the test
    config = short_tmp / "hoodyd.toml"
    config.write_text("[server]\nshutdown_timeout = 300.0\n")
    config.chmod(0o600)
    daemon: DaemonProcess = start_daemon(short_tmp / "state", "--config", str(config))
    try:
        async with aiohttp.ClientSession(
            connector=aiohttp.UnixConnector(path=str(daemon.socket)), base_url="http://x"
        ) as http:
            program = await add_program(http, command=TICKER)
        events = await open_stream(daemon.socket, f"{API}/events")
        logs = await open_stream(daemon.socket, f"{API}/programs/{program['id']}/logs?follow=true")
        daemon.process.terminate()
        async with asyncio.timeout(20):
            for reader, writer in (events, logs):
                while await reader.read(65536):
                    pass
                writer.close()
        assert await asyncio.to_thread(daemon.process.wait, 20) == 0
        assert '"shutdown_timed_out"' not in daemon.logs()
    finally:
        daemon.stop()
