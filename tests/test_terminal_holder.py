"""Terminal holders with real shells in real PTYs, reached over real Unix sockets: spawn,
follow and replay, markers, exits, hang-ups, re-adoption, and who may connect."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

from hoodyd.polling import poll_until
from hoodyd.terminals.cleanup import listener_pid
from hoodyd.terminals.holder.markers import (
    CommandStarted,
    MarkerEvent,
    Output,
    PromptDrawn,
)
from hoodyd.terminals.holder.process import HolderStartError, claim_socket
from hoodyd.terminals.holder.ring import OutputRing
from hoodyd.terminals.link import ForegroundInfo, HolderError, HolderGone, HolderLink
from hoodyd.terminals.spawn import HolderLauncher, list_holders, spawn_holder
from tests.conftest import until

WAIT = 10.0  # generous bound for any single wait on a loaded machine
TAG = "HOODYD_HOLDER_TEST"
BASH = ["bash", "--norc", "--noprofile", "-i"]
# With --markers the holder makes the nonce and hands it over on a pipe; these shells read it
# into $N (the test's own scripts only: hoodyd's start-up files never export it).
READ_NONCE = 'read -r N <&"$HOODYD_MARKER_FD"; '
MARKED_BASH = ["sh", "-c", READ_NONCE + "export N; exec bash --norc --noprofile -i"]
# bash draws a prompt marker with the last status, as hoodyd's own integration does
MARKED_PS1 = "\\[\\e]6973;${N};D;$?\\a\\]$ "


@dataclass
class Box:
    """A private directory for holder sockets; every process a test starts there carries a
    tag in its environment, so teardown finds and kills it whoever its parent is."""

    directory: Path
    tag: str
    children: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.directory),
            "TERM": "xterm",
            "HISTFILE": "/dev/null",
            "PS1": "$ ",
            TAG: self.tag,
            **extra,
        }

    def socket(self, terminal_id: int = 1) -> Path:
        return self.directory / f"{terminal_id}.sock"

    async def spawn(
        self,
        argv: list[str] | None = None,
        *,
        terminal_id: int = 1,
        socket_path: Path | None = None,
        env: dict[str, str] | None = None,
        ring_bytes: int = 1 << 20,
        meta: dict[str, Any] | None = None,
        launcher: HolderLauncher | None = None,
        keep_fds: tuple[int, ...] = (),
        markers: bool = False,
    ) -> Path:
        path = socket_path or self.socket(terminal_id)
        await spawn_holder(
            path,
            argv or BASH,
            env=env or self.env(),
            cwd=str(self.directory),
            terminal_id=terminal_id,
            cols=80,
            rows=24,
            ring_bytes=ring_bytes,
            meta=meta or {},
            log_path=self.directory / f"holder-{terminal_id}.log",
            launcher=launcher,
            keep_fds=keep_fds,
            markers=markers,
        )
        return path

    def foreground(self, argv: list[str], *, terminal_id: int = 1) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [sys.executable, "-I", "-m", "hoodyd.terminals.holder", "--foreground",
             "--socket", str(self.socket(terminal_id)), "--terminal", str(terminal_id),
             "--", *argv],
            env=self.env(),
            cwd=self.directory,
            stdin=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        self.children.append(process)
        return process

    def tagged_pids(self) -> list[int]:
        """The box's processes: tagged in their environment, or (a holder the launcher forked
        shows the launcher's environment) listening on one of its sockets."""
        marker = f"{TAG}={self.tag}".encode()
        found = [pid for _, path in list_holders(self.directory) if (pid := listener_pid(path))]
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(OSError):
                    if marker in Path(f"/proc/{entry}/environ").read_bytes().split(b"\0"):
                        found.append(int(entry))
        return found


@pytest.fixture
def box() -> Iterator[Box]:
    directory = Path(tempfile.mkdtemp(prefix="hh-", dir="/tmp"))
    box = Box(directory, uuid.uuid4().hex)
    try:
        yield box
    finally:
        for pid in box.tagged_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for child in box.children:
            child.kill()
            child.wait(WAIT)
            if child.stderr is not None:
                child.stderr.close()
        subprocess.run(["rm", "-rf", str(directory)], check=False)


@dataclass
class Recorder:
    """What a link delivered: (offset, event) in order, and its exit reports."""

    events: list[tuple[int, MarkerEvent]] = field(default_factory=list)
    exits: list[int | None] = field(default_factory=list)

    def on_event(self, offset: int, event: MarkerEvent) -> None:
        self.events.append((offset, event))

    def on_exit(self, code: int | None) -> None:
        self.exits.append(code)

    def output(self) -> bytes:
        return b"".join(event.data for _, event in self.events if isinstance(event, Output))

    def output_end(self) -> int:
        """The ring offset just past the last output delivered."""
        for offset, event in reversed(self.events):
            if isinstance(event, Output):
                return offset + len(event.data)
        return 0

    def ends_with(self, suffix: bytes) -> bool:
        """Whether the output so far ends with `suffix` (cheap on long outputs)."""
        tail = b""
        for _, event in reversed(self.events):
            if isinstance(event, Output):
                tail = event.data + tail
                if len(tail) >= len(suffix):
                    break
        return tail.endswith(suffix)

    def merged(self) -> list[tuple[int, MarkerEvent]]:
        """Events with adjacent outputs joined (frame boundaries are not part of the
        contract)."""
        merged: list[tuple[int, MarkerEvent]] = []
        for offset, event in self.events:
            last_offset, last = merged[-1] if merged else (0, None)
            if isinstance(event, Output) and isinstance(last, Output):
                merged[-1] = (last_offset, Output(last.data + event.data))
            else:
                merged.append((offset, event))
        return merged

    def assert_contiguous(self) -> None:
        outputs = [(o, e.data) for o, e in self.events if isinstance(e, Output)]
        for (offset, data), (next_offset, _) in itertools.pairwise(outputs):
            assert offset + len(data) == next_offset


@contextlib.asynccontextmanager
async def linked(path: Path, *, follow_from: int | None = None, follow: bool = True
                 ) -> AsyncIterator[tuple[HolderLink, Recorder]]:  # fmt: skip
    recorder = Recorder()
    link = await HolderLink.connect(path, on_event=recorder.on_event, on_exit=recorder.on_exit)
    if follow:
        link.follow(follow_from)
    try:
        yield link, recorder
    finally:
        await link.close()


def process_gone(pid: int) -> bool:
    """Ended: no such process, or a zombie nobody reaped yet."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"


def stat_fields(pid: int) -> tuple[int, int]:
    """(ppid, sid) of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return int(fields[1]), int(fields[3])


async def test_output_of_typed_input_reaches_a_following_link(box: Box) -> None:
    """A spawned holder runs bash; what is typed through the link comes back as output."""
    path = await box.spawn()
    async with linked(path) as (link, seen):
        assert link.running and link.hello.terminal_id == 1
        link.write(b"echo hi\r")
        await until(lambda: b"\rhi\r\n" in seen.output(), "the echo")
        seen.assert_contiguous()
        assert seen.events[0][0] == 0


async def test_replay_after_reconnect_is_exact_from_start_and_from_mid(box: Box) -> None:
    """A new link that follows from 0 or from a mid offset gets exactly the same bytes."""
    path = await box.spawn()
    async with linked(path) as (link, first):
        link.write(b"echo one; echo two\r")
        await until(
            lambda: b"\rone\r\ntwo\r\n" in first.output() and first.output().endswith(b"$ "),
            "both lines and the prompt",
        )
    full = first.output()
    async with linked(path, follow_from=0) as (_link, again):
        await until(lambda: len(again.output()) >= len(full), "the replay")
        assert again.output() == full
        again.assert_contiguous()
    mid = full.index(b"one\r\n")
    async with linked(path, follow_from=mid) as (_link, tail):
        await until(lambda: len(tail.output()) >= len(full) - mid, "the replay from mid")
        assert tail.events[0][0] == mid
        assert tail.output() == full[mid:]


async def test_follow_from_before_the_ring_start_starts_at_the_ring_start(box: Box) -> None:
    """Output the ring dropped is skipped: the replay starts at the oldest kept byte."""
    script = "head -c 10000 /dev/zero | tr '\\0' x; printf END; exec sleep 100"
    path = await box.spawn(["sh", "-c", script], ring_bytes=4096)
    async with linked(path) as (_link, live):
        await until(lambda: live.output().endswith(b"END"), "all output")
    async with linked(path, follow_from=0) as (link, replay):
        await until(lambda: replay.output().endswith(b"END"), "the replay")
        assert replay.events[0][0] == link.hello.ring_start > 0
        assert replay.output() == live.output()[-4096:]


async def test_markers_are_stripped_and_reported_at_their_offsets(box: Box) -> None:
    """With a nonce, markers leave the output and arrive as events where they occurred;
    a marker with another nonce is plain output; a replay interleaves them the same way."""
    foreign = "\\033]6973;other;S\\007"
    script = READ_NONCE + (
        f'printf \'a\\033]6973;%s;S\\007b\\033]6973;%s;D;7;1\\007c{foreign}\' "$N" "$N"; '
        "exec sleep 100"
    )
    path = await box.spawn(["sh", "-c", script], markers=True)
    expected = [
        (0, Output(b"a")),
        (1, CommandStarted()),
        (1, Output(b"b")),
        (2, PromptDrawn(7, 1)),
        (2, Output(b"c\x1b]6973;other;S\x07")),
    ]
    async with linked(path) as (_link, live):
        await until(lambda: live.output().endswith(b"S\x07"), "all output")
        assert live.merged() == expected
    async with linked(path, follow_from=1) as (_link, replay):
        await until(lambda: replay.output().endswith(b"S\x07"), "the replay")
        assert replay.merged() == expected[1:]


async def test_a_replay_starts_with_the_last_marker_the_ring_dropped(box: Box) -> None:
    """A prompt marker whose surrounding output the ring has dropped still opens a replay
    from the ring's start, so a follower learns the shell sits at its prompt."""
    script = READ_NONCE + (
        "printf '\\033]6973;%s;D;0;5\\007' \"$N\"; head -c 9000 /dev/zero; exec sleep 100"
    )
    path = await box.spawn(["sh", "-c", script], markers=True, ring_bytes=4096)
    async with linked(path) as (link, live):
        # the ring offset reached, not the bytes received: a link that connects late is
        # sent only what the 4 KiB ring still holds
        await until(lambda: live.output_end() >= 9000, "all output")
    async with linked(path) as (link, replay):
        await until(lambda: len(replay.output()) >= 4096, "the replay")
        first_offset, first = replay.events[0]
        assert (first_offset, first) == (link.hello.ring_start, PromptDrawn(0, 5))
        assert link.hello.ring_start > 0


async def test_link_reconnects_after_a_dropped_connection_without_duplicates(box: Box) -> None:
    """When the connection drops while the holder listens, the link resumes where delivery
    stopped: no byte and no marker twice, nothing missed."""
    path = await box.spawn(MARKED_BASH, env=box.env(PS1=MARKED_PS1), markers=True)
    async with linked(path) as (link, seen):
        await until(lambda: any(isinstance(e, PromptDrawn) for _, e in seen.events), "prompt")
        prompts = sum(isinstance(e, PromptDrawn) for _, e in seen.events)
        connection = link._connection
        assert connection is not None
        connection.abort()
        link.write(b"echo after\r")
        await until(lambda: b"\rafter\r\n" in seen.output(), "the echo after reconnecting")
        await until(
            lambda: sum(isinstance(e, PromptDrawn) for _, e in seen.events) == prompts + 1,
            "the next prompt",
        )
        assert link._connection is not connection
        seen.assert_contiguous()
        assert seen.output().count(b"after") == 2  # the echoed line and the output
        assert seen.exits == []


async def test_a_client_too_far_behind_is_dropped_and_the_link_resumes(box: Box) -> None:
    """A link that stops reading while the shell prints 40 MB is dropped by the holder; it
    reconnects by itself and goes on from the oldest byte still kept, in order."""
    path = await box.spawn(ring_bytes=1 << 16)
    async with linked(path) as (link, seen):
        await until(lambda: seen.output().endswith(b"$ "), "the prompt")
        connection = link._connection
        assert connection is not None and connection.transport is not None
        connection.transport.pause_reading()
        link.write(b"head -c 40000000 /dev/zero | tr '\\0' y | fold -w 1000; echo done\r")
        async with linked(path, follow_from=None) as (_watcher, watched):
            await until(lambda: watched.ends_with(b"ydone\r\n\x1b[?2004h$ "), "the output")
        connection.transport.resume_reading()
        await until(lambda: connection.lost.done(), "the holder to drop the link")
        await until(lambda: seen.ends_with(b"ydone\r\n\x1b[?2004h$ "), "the rest of the output")
        assert link._connection is not connection and seen.exits == []
        offsets = [offset for offset, event in seen.events if isinstance(event, Output)]
        assert offsets == sorted(offsets)
        assert len(seen.output()) < 40_000_000  # what the ring had dropped is skipped


async def test_shell_exit_is_reported_and_the_holder_stays_until_closed(box: Box) -> None:
    """`exit 3` gives EXITED 3; the holder still answers with exited and its output until a
    client closes it, then its socket is gone and it ends."""
    path = await box.spawn()
    async with linked(path) as (link, seen):
        link.write(b"echo bye; exit 3\r")
        await until(lambda: seen.exits == [3], "the exit report")
        assert not link.running
    later = Recorder()
    link = await HolderLink.connect(path, on_event=later.on_event, on_exit=later.on_exit)
    assert link.hello.exited and link.hello.exit_code == 3 and not link.running
    holder_pid = link.hello.holder_pid
    link.follow(None)
    await until(lambda: b"\rbye\r\n" in later.output(), "the replayed output")
    # the exit is reported once more at the end of the replay, after the output that led to it
    await until(lambda: later.exits == [3], "the exit after the replay")
    await link.close(end_if_exited=True)
    await until(lambda: not path.exists(), "the socket file to go")
    await until(lambda: process_gone(holder_pid), "the holder to end")
    with pytest.raises(HolderGone):
        await HolderLink.connect(path, on_event=later.on_event, on_exit=later.on_exit)


async def test_close_leaves_a_running_shell_alone(box: Box) -> None:
    """Disconnecting, even asking to end the holder, keeps a running shell and its holder."""
    path = await box.spawn()
    async with linked(path) as (link, _seen):
        shell_pid = link.shell_pid
        await link.close(end_if_exited=True)
    async with linked(path) as (link, seen):
        assert link.running and link.shell_pid == shell_pid
        link.write(b"echo still\r")
        await until(lambda: b"\rstill\r\n" in seen.output(), "the shell's answer")


async def test_terminate_hangs_up_the_shell_and_its_background_jobs(box: Box) -> None:
    """terminate returns the shell's status once the shell and its background jobs are gone;
    the holder ends and removes its socket."""
    path = await box.spawn()
    async with linked(path) as (link, seen):
        link.write(b"sleep 300 & echo bg=$!\r")
        await until(lambda: re.search(rb"bg=\d+", seen.output()) is not None, "the job's pid")
        background = int(re.search(rb"bg=(\d+)", seen.output())[1])  # type: ignore[index]
        holder_pid, shell_pid = link.hello.holder_pid, link.shell_pid
        code = await asyncio.wait_for(link.terminate(grace=2.0), WAIT)
        assert code == -signal.SIGHUP
        assert seen.exits == [code]
    assert not path.exists()
    await until(lambda: process_gone(shell_pid), "the shell to end")
    await until(lambda: process_gone(background), "the background job to end")
    await until(lambda: process_gone(holder_pid), "the holder to end")


async def test_sigterm_to_a_detached_holder_hangs_up_the_shell(box: Box) -> None:
    """SIGTERM hangs up the shell, reports EXITED to clients and ends the holder."""
    path = await box.spawn()
    async with linked(path) as (link, seen):
        os.kill(link.hello.holder_pid, signal.SIGTERM)
        await until(lambda: seen.exits == [-signal.SIGHUP], "the exit report")
        await until(lambda: process_gone(link.shell_pid), "the shell to end")
        await until(lambda: process_gone(link.hello.holder_pid), "the holder to end")
    assert not path.exists()


async def test_a_killed_holder_is_reported_gone(box: Box) -> None:
    """A holder that dies without a word is reported once, with no exit code."""
    path = await box.spawn()
    async with linked(path) as (link, seen):
        os.kill(link.hello.holder_pid, signal.SIGKILL)
        await until(lambda: seen.exits == [None], "the gone report")
        assert not link.running
        with pytest.raises(HolderGone):
            await link.query()
    assert path.exists()  # a stale socket file, for the next holder to replace


async def test_foreground_holder_exits_with_the_shell_status(box: Box) -> None:
    """With --foreground the holder flushes the shell's last output and exits with its
    status."""
    process = box.foreground(BASH)
    await until(lambda: box.socket().exists(), "the socket")
    async with linked(box.socket()) as (link, seen):
        assert link.hello.foreground
        link.write(b"echo last; exit 4\r")
        await until(lambda: seen.exits == [4], "the exit report")
        assert b"\rlast\r\n" in seen.output()
    assert await asyncio.to_thread(process.wait, WAIT) == 4
    assert not box.socket().exists()


async def test_foreground_holder_hangs_up_the_shell_on_sigterm(box: Box) -> None:
    """SIGTERM to a --foreground holder hangs up the shell and exits with 128+SIGHUP."""
    process = box.foreground(BASH)
    await until(lambda: box.socket().exists(), "the socket")
    async with linked(box.socket()) as (link, _seen):
        shell_pid = link.shell_pid
    process.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(process.wait, WAIT) == 128 + signal.SIGHUP
    await until(lambda: process_gone(shell_pid), "the shell to end")


async def test_second_holder_on_a_live_socket_is_refused(box: Box) -> None:
    """Spawning on a socket a live holder serves fails with that holder's pid, and the
    command line exits 1 with the same message."""
    path = await box.spawn()
    async with linked(path, follow=False) as (link, _seen):
        message = f"terminal 1 is already held by pid {link.hello.holder_pid}"
        with pytest.raises(HolderError, match=message):
            await box.spawn()
        process = box.foreground(["sh"])
        assert await asyncio.to_thread(process.wait, WAIT) == 1
        assert process.stderr is not None
        assert message in process.stderr.read().decode()
        assert link.running


async def test_stale_socket_file_is_replaced(box: Box) -> None:
    """A socket file nobody listens on is replaced by the new holder."""
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(box.socket()))
    stale.close()
    with pytest.raises(HolderGone):
        await HolderLink.connect(box.socket(), on_event=print, on_exit=print)
    path = await box.spawn()
    async with linked(path) as (link, seen):
        link.write(b"echo fresh\r")
        await until(lambda: b"\rfresh\r\n" in seen.output(), "the new shell's answer")


async def test_socket_path_longer_than_sockaddr_allows(box: Box) -> None:
    """A socket path past 108 bytes is bound and connected through its directory's fd."""
    deep = box.directory / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True, mode=0o700)
    path = deep / "7.sock"
    assert len(os.fsencode(path)) > 108
    await box.spawn(socket_path=path, terminal_id=7)
    assert list_holders(deep) == [(7, path)]
    async with linked(path) as (link, seen):
        link.write(b"echo long\r")
        await until(lambda: b"\rlong\r\n" in seen.output(), "the echo")
    assert path.stat().st_mode & 0o777 == 0o600


async def test_meta_round_trips_through_a_new_hello(box: Box) -> None:
    """The meta given at spawn and the one SET_META stores come back in later HELLOs."""
    path = await box.spawn(meta={"kind": "first", "n": 1})
    async with linked(path, follow=False) as (link, _seen):
        assert link.hello.meta == {"kind": "first", "n": 1}
        link.set_meta({"kind": "second", "nested": {"list": [1, 2]}})
        await link.query()  # answered after the meta was stored: frames are in order
    async with linked(path, follow=False) as (link, _seen):
        assert link.hello.meta == {"kind": "second", "nested": {"list": [1, 2]}}


async def test_big_meta_at_spawn_arrives_too(box: Box) -> None:
    """A meta too big for the command line still reaches the holder."""
    meta = {"blob": "x" * 200_000}
    path = await box.spawn(meta=meta)
    async with linked(path, follow=False) as (link, _seen):
        assert link.hello.meta == meta


async def test_signal_to_the_foreground_group_interrupts_a_command(box: Box) -> None:
    """SIGINT to the foreground process group ends `sleep 100`; bash reports status 130."""
    path = await box.spawn(MARKED_BASH, env=box.env(PS1=MARKED_PS1), markers=True)
    async with linked(path) as (link, seen):
        await until(lambda: any(isinstance(e, PromptDrawn) for _, e in seen.events), "prompt")
        link.write(b"sleep 100\r")

        async def job_in_front() -> ForegroundInfo | None:
            info = await link.query()
            return info if info.foreground_pgrp != info.shell_pgrp else None

        info = await poll_until(job_in_front, timeout=WAIT, interval=0.02) or await link.query()
        assert info.running and info.shell_pid == link.shell_pid
        assert info.foreground_pgrp not in (None, info.shell_pgrp)
        # between fork and exec the job is still bash, which has its own SIGINT handling:
        # signal once it is `sleep`
        comm = Path(f"/proc/{info.foreground_pgrp}/comm")
        await until(lambda: comm.exists() and comm.read_text().strip() == "sleep", "sleep")
        link.signal(signal.SIGINT)
        await until(lambda: any(e == PromptDrawn(130, None) for _, e in seen.events), "status 130")
        assert b"6973" not in seen.output()


async def test_signal_to_the_session_reaches_every_process_group(box: Box) -> None:
    """SIGKILL to the session ends the shell and its background jobs alike."""
    path = await box.spawn()
    async with linked(path) as (link, seen):
        link.write(b"sleep 300 & echo bg=$!\r")
        await until(lambda: re.search(rb"bg=\d+", seen.output()) is not None, "the job's pid")
        background = int(re.search(rb"bg=(\d+)", seen.output())[1])  # type: ignore[index]
        link.signal(signal.SIGKILL, "session")
        await until(lambda: seen.exits == [-signal.SIGKILL], "the exit report")
        await until(lambda: process_gone(background), "the background job to end")


async def test_a_shell_that_cannot_start_fails_the_spawn(box: Box) -> None:
    """spawn_holder raises the holder's own message when the shell cannot be started, and
    leaves no socket behind."""
    with pytest.raises(HolderError, match="cannot start /nonexistent/shell"):
        await box.spawn(["/nonexistent/shell"])
    assert not box.socket().exists()


async def test_resize_reaches_the_terminal(box: Box) -> None:
    """RESIZE sets the PTY's window size, and later HELLOs carry it."""
    path = await box.spawn()
    async with linked(path) as (link, seen):
        link.resize(132, 43)
        link.write(b"stty size\r")
        await until(lambda: b"\r43 132\r\n" in seen.output(), "the new size")
    async with linked(path, follow=False) as (link, _seen):
        assert (link.hello.cols, link.hello.rows) == (132, 43)


async def test_holder_is_detached_in_its_own_session(box: Box) -> None:
    """The holder is not the spawner's child, leads its own session, and is the shell's
    parent; the shell leads another session."""
    path = await box.spawn()
    async with linked(path, follow=False) as (link, _seen):
        holder, shell = link.hello.holder_pid, link.shell_pid
        holder_ppid, holder_sid = stat_fields(holder)
        shell_ppid, shell_sid = stat_fields(shell)
        assert holder_ppid != os.getpid()
        assert holder_sid == holder != os.getsid(0)
        assert (shell_ppid, shell_sid) == (holder, shell)


async def test_other_users_are_refused(box: Box) -> None:
    """A connection from another uid is closed without a HELLO."""
    if os.geteuid() != 0:
        pytest.skip("needs root to connect as another user")
    path = await box.spawn()
    # let the other user reach the socket, so that only the holder's own check stands
    box.directory.chmod(0o711)
    path.chmod(0o666)
    probe = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        "s.settimeout(5)\n"
        "s.connect(sys.argv[1])\n"
        "sys.stdout.write(repr(s.recv(100)))\n"
    )
    result = await asyncio.to_thread(
        subprocess.run,
        ["/usr/bin/python3", "-I", "-c", probe, str(path)],
        user=65534,
        group=65534,
        capture_output=True,
        timeout=WAIT,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"b''"
    async with linked(path, follow=False) as (link, _seen):
        assert link.running  # the holder itself carries on


def test_mirror_ring_keeps_the_holder_offsets() -> None:
    """A mirror ring restarts at the holder's offset, skips bytes it has and jumps gaps."""
    ring = OutputRing(8)
    ring.restart_at(100)
    ring.append_at(100, b"abcd")
    ring.append_at(102, b"cdef")  # overlap: only "ef" is new
    assert (ring.start, ring.read(None, 100).data) == (100, b"abcdef")
    ring.append_at(104, b"ef")  # nothing new
    ring.append_at(110, b"xy")  # a gap: the start moves past it
    assert (ring.start, ring.end, ring.read(None, 100).data) == (110, 112, b"xy")
    ring.append_at(112, b"0123456789")
    assert (ring.start, ring.read(None, 100).data) == (114, b"23456789")


@pytest.fixture
async def launcher() -> AsyncIterator[HolderLauncher]:
    launcher = HolderLauncher()
    try:
        yield launcher
    finally:
        await launcher.close()


def session_id(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[3])


async def test_a_launched_holder_is_like_one_started_anew(
    box: Box, launcher: HolderLauncher
) -> None:
    """A holder forked by the launcher is nobody's child and leads a session of its own; its
    shell gets the asked environment, cwd and umask 022, a descriptor passed at its own
    number, and the very descriptors a holder started as a new process gives it (none of the
    launcher's); it outlives the launcher."""
    kept = os.memfd_create("kept")  # /dev/fd/N opens it anew, from its start, each time
    os.write(kept, b"kept-text")
    probe = (
        f'echo "[$GREETING|$(pwd)|$(umask)|$(cat /dev/fd/{kept})|'
        '$(ls /proc/$$/fd | sort -n | tr "\\n" ,)]"; exec sleep 60'
    )
    lines = {}
    try:
        for terminal_id, by in ((1, launcher), (2, None)):
            path = await box.spawn(
                ["bash", "--norc", "--noprofile", "-c", probe],
                terminal_id=terminal_id,
                env=box.env(GREETING="hi there"),
                launcher=by,
                keep_fds=(kept,),
            )
            async with linked(path) as (link, seen):
                await until(lambda: b"]" in seen.output(), "the probe's line")
                lines[by is not None] = seen.output().decode().strip()
                holder_pid = link.hello.holder_pid
            assert psutil.Process(holder_pid).ppid() not in (os.getpid(), launcher.pid)
            assert psutil.Process(holder_pid).name() == f"hoodyd-tty{terminal_id}"
            assert session_id(holder_pid) == holder_pid
    finally:
        os.close(kept)
    assert lines[True].startswith(f"[hi there|{box.directory}|0022|kept-text|0,1,2,"), lines
    assert lines[True] == lines[False]
    await launcher.close()
    async with linked(box.socket(1)) as (link, _seen):
        assert link.running  # the launcher's end does not end its holders


async def test_descriptors_land_on_their_numbers_whatever_the_launcher_received(
    box: Box, launcher: HolderLauncher
) -> None:
    """Descriptors asked for at 3, 4, 5 and 6, received by the launcher at those numbers in
    another order, each reach the holder and its shell at its own number, not swapped."""
    files = {}
    for number, text in ((3, b"three"), (4, b"four"), (5, b"five")):
        files[number] = os.memfd_create(text.decode())
        os.write(files[number], text)
    ready_read, ready_write = os.pipe()
    probe = "for n in 3 4 5; do printf '%s=' $n; cat /dev/fd/$n; echo; done; exec sleep 60"
    path = box.socket(9)
    keep = [word for number in files for word in ("--keep-fd", str(number))]
    args = ["--socket", str(path), "--terminal", "9", "--ready-fd", "6", *keep, "--"]
    args += ["sh", "-c", probe]
    try:
        await launcher.launch(
            # received in this order, at 3, 4, 5, 6 (what the launcher has free): each lands
            # on another's number first
            args,
            env=box.env(),
            cwd=str(box.directory),
            fds={6: ready_write, **dict(reversed(files.items()))},
        )
    finally:
        for fd in (*files.values(), ready_write):
            os.close(fd)
    with os.fdopen(ready_read, "rb") as ready:
        assert (await asyncio.to_thread(ready.readline)).startswith(b"ready ")
    async with linked(path) as (_link, seen):
        await until(lambda: b"5=five" in seen.output(), "the probe")
        assert b"3=three\r\n4=four\r\n5=five" in seen.output(), seen.output()


async def test_a_dead_launcher_is_replaced(box: Box, launcher: HolderLauncher) -> None:
    """Killed between two spawns, the launcher is started again (or the holder started as a
    process of its own meanwhile): every spawn gives a working holder."""
    first = await box.spawn(terminal_id=1, launcher=launcher)
    before = launcher.pid
    assert before is not None
    os.kill(before, signal.SIGKILL)
    second = await box.spawn(terminal_id=2, launcher=launcher)
    third = await box.spawn(terminal_id=3, launcher=launcher)
    assert launcher.pid not in (None, before)
    assert psutil.Process(launcher.pid).name() == "hoodyd-launcher"
    for path in (first, second, third):
        async with linked(path) as (link, seen):
            link.write(b"echo alive-$((6*7))\r")
            await until(lambda: b"alive-42" in seen.output(), f"{path.name} to answer")


async def test_concurrent_launches_each_get_their_holder(
    box: Box, launcher: HolderLauncher
) -> None:
    """Twenty spawns at once through one launcher: twenty holders, each on its socket."""
    paths = await asyncio.gather(
        *(box.spawn(terminal_id=n, launcher=launcher) for n in range(1, 21))
    )
    pids = set()
    for path in paths:
        async with linked(path, follow=False) as (link, _seen):
            assert link.running
            pids.add(link.hello.holder_pid)
    assert len(pids) == 20


def test_the_launcher_refuses_a_bad_request_and_ends_with_its_channel() -> None:
    """A packet that is no request answers 127 and the launcher serves on; closing hoodyd's
    end ends it with 0; without its descriptor argument it exits 2."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    process = subprocess.Popen(
        [sys.executable, "-I", "-m", "hoodyd.terminals.holder.launcher", str(theirs.fileno())],
        pass_fds=(theirs.fileno(),),
        stderr=subprocess.PIPE,
    )
    theirs.close()
    try:
        ours.settimeout(WAIT)
        for packet in (b"not json", b'{"args": []}', b'{"fds": [5], "args": []}'):
            ours.send(packet)
            assert int.from_bytes(ours.recv(16), "big", signed=True) == 127, packet
    finally:
        ours.close()
    assert process.wait(WAIT) == 0
    assert process.stderr is not None
    assert process.stderr.read().count(b"bad request") == 3
    process.stderr.close()
    usage = subprocess.run(
        [sys.executable, "-I", "-m", "hoodyd.terminals.holder.launcher"],
        capture_output=True,
        timeout=WAIT,
        check=False,
    )
    assert usage.returncode == 2 and b"usage" in usage.stderr


def test_a_claimed_socket_is_published_listening_and_leaves_no_staging_name(
    tmp_path: Path,
) -> None:
    """The socket file appears only once it accepts (bound and listening under a name of its
    own, then linked), and a claim that finds the name taken meanwhile is refused."""
    path = tmp_path / "7.sock"
    listener = claim_socket(path, 7)
    try:
        assert sorted(p.name for p in tmp_path.iterdir()) == ["7.sock"]
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(path))  # accepted by the backlog: it was listening already
    finally:
        listener.close()
    taken = tmp_path / "8.sock"
    real_link = os.link

    def someone_else_first(source: object, target: object) -> None:
        taken.write_text("")  # another holder published the name meanwhile
        real_link(source, target)  # type: ignore[arg-type]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "link", someone_else_first)
        with pytest.raises(HolderStartError, match="claimed by another holder"):
            claim_socket(taken, 8)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["7.sock", "8.sock"]
