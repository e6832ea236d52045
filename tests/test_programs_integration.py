"""Program control wired end to end: webhooks fed by supervisord's events and by polling,
an external supervisord, systemd socket activation and readiness, graceful drain."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import psutil
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from hoodyd.api.keys import PROGRAMS
from hoodyd.app import create_app
from hoodyd.polling import poll_until
from tests.conftest import make_config, sleeper, start_daemon, stop_embedded_supervisord, until

API = "/api/v1/daemon"


async def receiver() -> tuple[web.AppRunner, str, list[dict[str, Any]]]:
    """A webhook receiver on 127.0.0.1 recording every payload and header set."""
    received: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append({"body": await request.json(), "token": request.headers.get("X-Token")})
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}/hook", received


async def test_lifecycle_events_reach_the_program_webhook(client: Any) -> None:
    """Start and stop deliver STARTING, RUNNING, STOPPING, STOPPED with the program's headers."""
    runner, url, received = await receiver()
    try:
        response = await client.post(f"{API}/programs/add", json=sleeper(
            name="hooked",
            webhooks={"enabled": True, "urls": [url], "events": "*",
                      "headers": {"X-Token": "t0ken"}, "timeout": 5, "retry": 1},
        ))
        program = (await response.json())["program"]
        await client.post(f"{API}/programs/{program['id']}/start", json={"wait": True})
        await client.post(f"{API}/programs/{program['id']}/stop")

        def events() -> list[str]:
            return [r["body"]["event"] for r in received]

        await until(lambda: "STOPPED" in events(), "the STOPPED event")
        assert events()[:4] == ["STARTING", "RUNNING", "STOPPING", "STOPPED"]
        running = next(r for r in received if r["body"]["event"] == "RUNNING")
        assert running["token"] == "t0ken"
        assert running["body"]["program"] == {"id": program["id"], "name": "hooked"}
        assert running["body"]["from_state"] == "STARTING"
        assert isinstance(running["body"]["pid"], int)
        assert running["body"]["hostname"]
    finally:
        await runner.cleanup()


async def test_polling_alone_still_reports_transitions(short_tmp: Path) -> None:
    """With the event listener off, polling notices the change and the webhook fires."""
    config = make_config(
        short_tmp,
        supervisor={"poll_interval": 0.1},
        notifications={"allow_insecure_urls": True, "event_listener_enabled": False},
    )
    runner, url, received = await receiver()
    try:
        async with TestClient(TestServer(create_app(config, areas=("daemon",)))) as client:
            response = await client.post(f"{API}/programs/add", json=sleeper(
                webhooks={"enabled": True, "urls": [url], "events": ["running"]}))
            program = (await response.json())["program"]
            # the program (STOPPED) is known before it starts: its start is a change
            observer = client.app[PROGRAMS].observer
            await until(lambda: program["name"] in observer.processes(), "the program observed")
            await client.post(f"{API}/programs/{program['id']}/start", json={"wait": True})
            await until(lambda: len(received) >= 1, "a webhook delivery")
            assert [r["body"]["event"] for r in received] == ["RUNNING"]
            conf_dir = short_tmp / "supervisor" / "conf.d"
            assert not (conf_dir / "hoodyd-events.conf").exists()
    finally:
        await runner.cleanup()


async def test_external_supervisord_is_used_and_its_other_programs_left_alone(
    short_tmp: Path,
) -> None:
    """External mode: hoodyd registers in the given include dir and never touches the rest."""
    include = short_tmp / "ext" / "conf.d"
    include.mkdir(parents=True)
    sock = short_tmp / "ext" / "s.sock"
    conf = short_tmp / "ext" / "supervisord.conf"
    (include / "theirs.conf").write_text("[program:theirs]\ncommand=/bin/sleep 300\n")
    conf.write_text(
        f"[unix_http_server]\nfile={sock}\n[supervisord]\nlogfile={short_tmp}/ext/s.log\n"
        f"pidfile={short_tmp}/ext/s.pid\n[rpcinterface:supervisor]\n"
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n"
        f"[include]\nfiles = {include}/*.conf\n"
    )
    external = subprocess.Popen(
        [sys.executable, "-m", "supervisor.supervisord", "-n", "-c", str(conf)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:

        async def listening() -> bool | None:
            return True if sock.exists() else None

        async def theirs() -> int | None:
            children = psutil.Process(external.pid).children()
            return children[0].pid if children else None

        await poll_until(listening, timeout=10, interval=0.05)
        theirs_pid = await poll_until(theirs, timeout=5, interval=0.05)
        config = make_config(
            short_tmp,
            supervisor={"mode": "external", "socket": str(sock), "include_dir": str(include)},
        )
        async with TestClient(TestServer(create_app(config, areas=("daemon",)))) as client:
            response = await client.post(f"{API}/programs/add", json=sleeper(name="ours"))
            program = (await response.json())["program"]
            response = await client.post(
                f"{API}/programs/{program['id']}/start", json={"wait": True}
            )
            assert response.status == 200, await response.text()
            await client.post(f"{API}/programs/remove/{program['id']}")
        assert (include / "theirs.conf").exists()
        assert not (short_tmp / "supervisor" / "supervisord.pid").exists()
        assert theirs_pid is not None and psutil.pid_exists(theirs_pid)
    finally:
        for child in psutil.Process(external.pid).children(recursive=True):
            child.kill()
        external.kill()
        external.wait()


async def test_socket_activation_and_ready_notification(short_tmp: Path) -> None:
    """Given LISTEN_FDS, hoodyd serves on the inherited socket and sends READY=1."""
    listen_path = short_tmp / "activated.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(listen_path))
    listener.listen(16)
    notify_path = short_tmp / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.settimeout(20)
    launcher = (
        "import os, sys\n"
        "os.dup2(int(sys.argv[1]), 3)\n"
        "os.environ['LISTEN_PID'] = str(os.getpid())\n"
        "os.environ['LISTEN_FDS'] = '1'\n"
        f"os.execv(sys.executable, [sys.executable, '-m', 'hoodyd', 'serve', "
        f"'--state-dir', {str(short_tmp)!r}])\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", launcher, str(listener.fileno())],
        pass_fds=(listener.fileno(),),
        env={**os.environ, "NOTIFY_SOCKET": str(notify_path), "HOODYD_LOG_FORMAT": "json"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        messages = notify.recv(256).decode()
        assert "READY=1" in messages
        async with aiohttp.ClientSession(
            connector=aiohttp.UnixConnector(path=str(listen_path)), base_url="http://localhost"
        ) as session, session.get(f"{API}/health") as response:
            assert response.status == 200
            assert (await response.json())["pid"] == process.pid
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
        assert "STOPPING=1" in notify.recv(256).decode()
    finally:
        if process.poll() is None:
            process.kill()
        listener.close()
        notify.close()


async def test_sigterm_answers_an_in_flight_request(short_tmp: Path) -> None:
    """A start waiting for RUNNING when SIGTERM arrives is answered (503 SHUTTING_DOWN, in
    JSON) before hoodyd exits, instead of losing its connection."""
    daemon = start_daemon(short_tmp)
    try:
        async with aiohttp.ClientSession(
            connector=aiohttp.UnixConnector(path=str(daemon.socket)), base_url="http://localhost"
        ) as session:
            async with session.post(f"{API}/programs/add", json=sleeper(delay_seconds=2)) as r:
                program = (await r.json())["program"]

            async def slow_start() -> tuple[int, dict[str, Any]]:
                async with session.post(
                    f"{API}/programs/{program['id']}/start", json={"wait": True, "timeout": 20}
                ) as response:
                    return response.status, await response.json()

            pending = asyncio.create_task(slow_start())
            await until(lambda: '"program_started"' in daemon.logs(), "the start")  # under way
            daemon.process.send_signal(signal.SIGTERM)
            status, body = await pending
        assert status == 503, body
        assert body["reason"] == "SHUTTING_DOWN"
        assert daemon.process.wait(timeout=20) == 0
    finally:
        daemon.stop()
        stop_embedded_supervisord(short_tmp)
    events = [json.loads(line) for line in daemon.logs().splitlines() if line.startswith("{")]
    assert any(e["event"] == "shutting_down" for e in events)
