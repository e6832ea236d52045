"""Process state events: the supervisord event listener, the datagram receiver, and both
together under a real supervisord."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import xmlrpc.client
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest
from structlog.testing import capture_logs
from supervisor.xmlrpc import SupervisorTransport

from hoodyd.polling import poll_until
from hoodyd.programs.eventlistener import event_datagram, parse_tokens, render_listener_section
from hoodyd.programs.events import EventReceiver, ProcessEvent


@pytest.fixture
def tmp_dir() -> Iterator[Path]:
    # short on purpose: Unix socket paths are limited to 107 bytes
    path = Path(tempfile.mkdtemp(prefix="hd-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class Collected:
    """Events handed to the receiver's callback, with a bounded wait."""

    def __init__(self) -> None:
        self.events: list[ProcessEvent] = []

    def __call__(self, event: ProcessEvent) -> None:
        self.events.append(event)

    def of(self, process: str) -> list[ProcessEvent]:
        return [e for e in self.events if e.process_name == process]

    async def wait_until(self, predicate: Any, timeout: float = 10) -> None:
        async def met() -> bool | None:
            return True if predicate() else None

        if not await poll_until(met, timeout=timeout, interval=0.01):
            raise AssertionError(f"condition not met within {timeout}s: {self.events}")


def send(path: Path, data: bytes) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
        sender.sendto(data, str(path))


# --------------------------------------------------------------------------------------------
# the listener's parsing


def test_running_payload_becomes_a_datagram_with_pid() -> None:
    """A PROCESS_STATE_RUNNING event yields the bare state, from_state and pid."""
    header = parse_tokens(
        "ver:3.0 server:supervisor serial:21 pool:hoodyd-events poolserial:10 "
        "eventname:PROCESS_STATE_RUNNING len:58\n"
    )
    datagram = event_datagram(header, "processname:web groupname:web from_state:STARTING pid:2766")
    assert datagram is not None
    assert msgspec.json.decode(datagram) == {
        "process_name": "web",
        "group_name": "web",
        "state": "RUNNING",
        "from_state": "STARTING",
        "pid": 2766,
        "expected": None,
        "serial": 21,
        "source": os.getppid(),
    }


def test_exited_payload_carries_expected_and_starting_has_no_pid() -> None:
    """EXITED reports `expected` as a boolean; STARTING (with `tries`) reports no pid."""
    exited = event_datagram(
        {"eventname": "PROCESS_STATE_EXITED"},
        "processname:api_8001 groupname:api_8001 from_state:RUNNING expected:0 pid:77",
    )
    starting = event_datagram(
        {"eventname": "PROCESS_STATE_STARTING"},
        "processname:api groupname:api from_state:BACKOFF tries:2",
    )
    assert exited is not None
    assert starting is not None
    decoded_exit = msgspec.json.decode(exited, type=ProcessEvent)
    assert (decoded_exit.state, decoded_exit.expected, decoded_exit.pid) == ("EXITED", False, 77)
    decoded_start = msgspec.json.decode(starting, type=ProcessEvent)
    assert (decoded_start.state, decoded_start.from_state, decoded_start.pid) == (
        "STARTING",
        "BACKOFF",
        None,
    )


def test_other_events_are_not_forwarded() -> None:
    """Events other than PROCESS_STATE_* produce no datagram."""
    assert event_datagram({"eventname": "TICK_5"}, "when:1700000000") is None
    assert event_datagram({"eventname": "PROCESS_GROUP_ADDED"}, "groupname:web\n") is None


def test_listener_section_escapes_percent_and_keeps_stdout_unlogged() -> None:
    """The rendered section doubles % for supervisord and never logs the protocol channel."""
    text = render_listener_section("/opt/py 3/bin/python", "/run/h%d/ev.sock", "/var/log/h%d")
    lines = text.splitlines()
    assert lines[0] == "[eventlistener:hoodyd-events]"
    assert (
        "command='/opt/py 3/bin/python' -m hoodyd.programs.eventlistener /run/h%%d/ev.sock" in lines
    )
    assert "events=PROCESS_STATE" in lines
    assert "autorestart=true" in lines
    assert "stdout_logfile=NONE" in lines
    assert "redirect_stderr=false" in lines
    assert "stderr_logfile=/var/log/h%%%%d/hoodyd-events.log" in lines
    with pytest.raises(ValueError, match="unusable path"):
        render_listener_section(sys.executable, "/tmp/a\nb", "/tmp")


# --------------------------------------------------------------------------------------------
# the listener process over its real protocol


@dataclass
class ListenerProcess:
    process: subprocess.Popen[bytes]

    def read_exactly(self, count: int) -> bytes:
        assert self.process.stdout is not None
        data = b""
        while len(data) < count:
            chunk = self.process.stdout.read(count - len(data))
            if not chunk:
                raise AssertionError(f"listener closed stdout after {data!r}")
            data += chunk
        return data

    def send_event(self, eventname: str, payload: str) -> None:
        assert self.process.stdin is not None
        body = payload.encode()
        header = (
            f"ver:3.0 server:supervisor serial:1 pool:hoodyd-events poolserial:1 "
            f"eventname:{eventname} len:{len(body)}\n"
        )
        self.process.stdin.write(header.encode() + body)
        self.process.stdin.flush()


@pytest.fixture
def listener(tmp_dir: Path) -> Iterator[ListenerProcess]:
    process = subprocess.Popen(
        [sys.executable, "-m", "hoodyd.programs.eventlistener", str(tmp_dir / "ev.sock")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        yield ListenerProcess(process)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream is not None:
                stream.close()


async def test_listener_speaks_the_protocol_and_forwards_state_events(
    tmp_dir: Path, listener: ListenerProcess
) -> None:
    """The listener answers READY / RESULT 2 OK and sends one datagram per state event."""
    collected = Collected()
    receiver = EventReceiver(tmp_dir / "ev.sock", collected)
    await receiver.start()
    try:
        assert await asyncio.to_thread(listener.read_exactly, 6) == b"READY\n"
        listener.send_event("TICK_5", "when:1700000000")
        assert await asyncio.to_thread(listener.read_exactly, 17) == b"RESULT 2\nOKREADY\n"
        listener.send_event(
            "PROCESS_STATE_STOPPED", "processname:web groupname:web from_state:STOPPING pid:99"
        )
        assert await asyncio.to_thread(listener.read_exactly, 17) == b"RESULT 2\nOKREADY\n"
        await collected.wait_until(lambda: len(collected.events) == 1)
        assert collected.events == [
            ProcessEvent(
                process_name="web",
                group_name="web",
                state="STOPPED",
                from_state="STOPPING",
                pid=99,
                serial=1,
                source=os.getpid(),  # the listener's parent: here the test, else supervisord
            )
        ]
    finally:
        receiver.close()
    # hoodyd is gone now: the listener still acknowledges, so supervisord does not stall
    listener.send_event(
        "PROCESS_STATE_RUNNING", "processname:web groupname:web from_state:STARTING pid:5"
    )
    assert await asyncio.to_thread(listener.read_exactly, 17) == b"RESULT 2\nOKREADY\n"
    assert listener.process.stdin is not None
    listener.process.stdin.close()
    assert await asyncio.to_thread(listener.process.wait, 10) == 0
    assert collected.events[-1].state == "STOPPED"


def test_listener_requires_a_socket_argument() -> None:
    """Run without its socket path the listener prints usage and exits 2."""
    result = subprocess.run(
        [sys.executable, "-m", "hoodyd.programs.eventlistener"],
        capture_output=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert result.returncode == 2
    assert b"usage" in result.stderr


# --------------------------------------------------------------------------------------------
# the receiver


async def test_receiver_binds_0600_and_removes_its_socket(tmp_dir: Path) -> None:
    """The socket is created with mode 0600 and removed on close."""
    path = tmp_dir / "ev.sock"
    receiver = EventReceiver(path, Collected())
    await receiver.start()
    try:
        mode = path.lstat().st_mode
        assert stat.S_ISSOCK(mode)
        assert stat.S_IMODE(mode) == 0o600
        assert [p.name for p in tmp_dir.iterdir()] == ["ev.sock"]
    finally:
        receiver.close()
    assert not path.exists()


async def test_receiver_replaces_a_stale_socket_but_not_other_files(tmp_dir: Path) -> None:
    """A socket file left by a dead process is replaced; a regular file is never clobbered."""
    path = tmp_dir / "ev.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    stale.bind(str(path))
    stale.close()
    collected = Collected()
    receiver = EventReceiver(path, collected)
    await receiver.start()
    try:
        send(path, b'{"process_name":"a","group_name":"a","state":"RUNNING","pid":3}')
        await collected.wait_until(lambda: len(collected.events) == 1)
    finally:
        receiver.close()
    other = tmp_dir / "plain"
    other.write_text("keep")
    with pytest.raises(FileExistsError):
        await EventReceiver(other, Collected()).start()
    assert other.read_text() == "keep"


async def test_malformed_datagrams_are_logged_and_ignored(tmp_dir: Path) -> None:
    """Junk, unknown states and missing fields are logged; the next good event still arrives."""
    path = tmp_dir / "ev.sock"
    collected = Collected()
    receiver = EventReceiver(path, collected)
    await receiver.start()
    try:
        with capture_logs() as logs:
            send(path, b"not json")
            send(path, b'{"process_name":"a","group_name":"a","state":"SLEEPING"}')
            send(path, b'{"process_name":"a"}')
            send(
                path,
                b'{"process_name":"a","group_name":"a","state":"FATAL","from_state":"BACKOFF"}',
            )
            await collected.wait_until(lambda: len(collected.events) == 1)
    finally:
        receiver.close()
    assert collected.events == [
        ProcessEvent(process_name="a", group_name="a", state="FATAL", from_state="BACKOFF")
    ]
    assert [e["event"] for e in logs].count("process_event_malformed") == 3


async def test_a_failing_callback_does_not_stop_the_feed(tmp_dir: Path) -> None:
    """An exception in the callback is logged and later events are still delivered."""
    path = tmp_dir / "ev.sock"
    seen: list[str] = []

    def callback(event: ProcessEvent) -> None:
        seen.append(event.process_name)
        if event.process_name == "boom":
            raise RuntimeError("callback failed")

    receiver = EventReceiver(path, callback)
    await receiver.start()
    try:
        with capture_logs() as logs:
            send(path, b'{"process_name":"boom","group_name":"boom","state":"RUNNING"}')
            send(path, b'{"process_name":"ok","group_name":"ok","state":"RUNNING"}')

            async def both_delivered() -> bool | None:
                return True if len(seen) >= 2 else None

            assert await poll_until(both_delivered, timeout=10, interval=0.01), seen
    finally:
        receiver.close()
    assert seen == ["boom", "ok"]
    assert any(e["event"] == "process_event_callback_failed" for e in logs)


# --------------------------------------------------------------------------------------------
# end to end with a real supervisord


SUPERVISORD_CONF = """\
[unix_http_server]
file={dir}/s.sock
chmod=0700

[supervisord]
logfile={dir}/supervisord.log
pidfile={dir}/supervisord.pid
childlogdir={dir}
loglevel=info

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{dir}/s.sock

{listener}
[program:x]
command=sleep 30
autostart=false
autorestart=false
startsecs=1
stopwaitsecs=5
stdout_logfile={dir}/x.out
stderr_logfile={dir}/x.err
"""


@dataclass
class Supervisord:
    process: subprocess.Popen[bytes]
    socket: Path
    events: Collected

    def call(self, method: str, *args: Any) -> Any:
        """One XML-RPC call over supervisord's Unix socket (blocking; run it in a thread)."""
        transport = SupervisorTransport(None, None, f"unix://{self.socket}")
        try:
            proxy = xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)
            return getattr(proxy.supervisor, method)(*args)
        finally:
            transport.close()


@pytest.fixture
async def supervisord(tmp_dir: Path) -> AsyncIterator[Supervisord]:
    # a % in the log dir checks that the rendered section escapes it for supervisord
    log_dir = tmp_dir / "lo%g"
    log_dir.mkdir()
    collected = Collected()
    receiver = EventReceiver(tmp_dir / "ev.sock", collected)
    await receiver.start()
    conf = tmp_dir / "supervisord.conf"
    conf.write_text(
        SUPERVISORD_CONF.format(
            dir=tmp_dir,
            listener=render_listener_section(
                sys.executable, str(tmp_dir / "ev.sock"), str(log_dir)
            ),
        )
    )
    output = (tmp_dir / "supervisord.out").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "supervisor.supervisord", "-c", str(conf), "-n"],
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    output.close()
    handle = Supervisord(process, tmp_dir / "s.sock", collected)
    try:

        async def running() -> bool | None:
            try:
                state = await asyncio.to_thread(handle.call, "getState")
                if state["statename"] == "RUNNING":
                    return True
            except (OSError, xmlrpc.client.Fault):
                pass
            return False if process.poll() is not None else None  # False: it exited

        if not await poll_until(running, timeout=20, interval=0.05):
            raise AssertionError(
                "supervisord did not start:\n" + (tmp_dir / "supervisord.out").read_text()
            )
        yield handle
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                await asyncio.to_thread(process.wait, 15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        receiver.close()


async def test_real_supervisord_state_changes_reach_the_receiver(supervisord: Supervisord) -> None:
    """Starting and stopping a program under supervisord yields STARTING, RUNNING, STOPPING and
    STOPPED events with the program's pid."""
    events = supervisord.events
    # the listener is itself a supervised process: its own RUNNING proves the feed is live
    await events.wait_until(lambda: any(e.state == "RUNNING" for e in events.of("hoodyd-events")))
    call = supervisord.call
    assert await asyncio.to_thread(call, "startProcess", "x", True) is True
    info = await asyncio.to_thread(call, "getProcessInfo", "x")
    pid = info["pid"]
    assert pid > 0
    assert await asyncio.to_thread(call, "stopProcess", "x", True) is True
    await events.wait_until(lambda: any(e.state == "STOPPED" for e in events.of("x")))
    observed = [(e.from_state, e.state, e.pid, e.group_name) for e in events.of("x")]
    assert observed == [
        ("STOPPED", "STARTING", None, "x"),
        ("STARTING", "RUNNING", pid, "x"),
        ("RUNNING", "STOPPING", pid, "x"),
        ("STOPPING", "STOPPED", pid, "x"),
    ]
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, 0)
        raise AssertionError(f"sleep {pid} still alive after STOPPED")
    log = Path(str(supervisord.socket.parent / "lo%g" / "hoodyd-events.log"))
    assert log.exists()
