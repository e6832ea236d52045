"""Terminal benchmarks: deferred-command latency and execute round trips, on real bash PTYs.

(a) time from a deferred PID's exit to the command's first output byte, as hoodyd reads it
    from the PTY: `sleep` is killed at a random phase, the command is `printf x`; median and
    p99 with pidfd_open and with polling at the default 50 ms (the reference);
(b) `execute` with wait of `true` over a real `hoodyd serve` Unix socket: median, beside the
    reference of typing `true` into a bash PTY with hoodyd's shell integration directly (no
    HTTP, no service), measured in the same run;
(c) the holder hop: the same `true` typed through a terminal holder process (the PTY held by
    `hoodyd.terminals.holder`, reached over its Unix socket, as every session is now), against
    that in-process PTY reference; and the start of a session until its first prompt, a holder
    started as a new interpreter and one forked by the holder launcher (as hoodyd starts
    them), against in-process.

Run: .venv/bin/python bench/terminals.py [--defer-runs 50] [--round-trips 200]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hoodyd import log  # noqa: E402
from hoodyd.config import TerminalsConfig  # noqa: E402
from hoodyd.programs.embedded import stop_embedded  # noqa: E402
from hoodyd.schemas.terminal import DeferSpec, ExecuteRequest  # noqa: E402
from hoodyd.terminals.cleanup import find_holders, stop_holders  # noqa: E402
from hoodyd.terminals.holder.markers import MarkerScanner, PromptDrawn  # noqa: E402
from hoodyd.terminals.holder.pty import PtyProcess  # noqa: E402
from hoodyd.terminals.link import HolderLink  # noqa: E402
from hoodyd.terminals.service import TerminalService  # noqa: E402
from hoodyd.terminals.shells import ShellIntegration, resolve_shell  # noqa: E402
from hoodyd.terminals.spawn import HolderLauncher, spawn_holder  # noqa: E402


def p99(values: list[float]) -> float:
    """Nearest-rank 99th percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


async def defer_latencies(state: Path, method: str, runs: int) -> list[float]:
    config = TerminalsConfig(
        user_rc=False,
        defer_method=method,  # type: ignore[arg-type]
        outlive_daemon=False,
    )
    service = TerminalService(config, state / method)
    await service.start()
    latencies = []
    try:
        await service.execute(ExecuteRequest(terminal_id=1, command="true"))
        for _ in range(runs):
            sleep = await asyncio.create_subprocess_exec("sleep", "1000")
            try:
                result = await service.execute(
                    ExecuteRequest(
                        terminal_id=1, command="printf x", defer=DeferSpec(pid=sleep.pid)
                    )
                )
                # a random phase, so that polling is not measured in step with its ticks
                await asyncio.sleep(random.uniform(0.06, 0.11))
                command = service.command(int(result.command_id))
                exited = time.monotonic()
                sleep.kill()
                await asyncio.wait_for(command.done.wait(), 10)
                assert command.first_output_mono is not None and command.stdout_text() == "x"
                latencies.append((command.first_output_mono - exited) * 1000)
            finally:
                if sleep.returncode is None:
                    sleep.kill()
                await sleep.wait()
    finally:
        await service.close()
    return latencies


def bash_launch(directory: Path, nonce: str) -> tuple[list[str], dict[str, str]]:
    """bash with hoodyd's start-up file (written into `directory`): its argv and env."""
    integration = ShellIntegration(directory, user_rc=False)
    integration.install()
    env = {"PATH": os.environ["PATH"], "HOME": str(Path.home()), "TERM": "xterm-256color"}
    return integration.launch(resolve_shell("bash", ""), nonce, None, env), env


async def raw_pty_round_trips(state: Path, runs: int) -> list[float]:
    """Type `true` into bash (hoodyd's start-up file) and wait for the next prompt marker."""
    nonce = "benchnonce"
    scanner = MarkerScanner(nonce)
    prompt: asyncio.Queue[None] = asyncio.Queue()

    def on_output(data: bytes) -> None:
        for event in scanner.feed(data):
            if isinstance(event, PromptDrawn):
                prompt.put_nowait(None)

    argv, env = bash_launch(state / "raw", nonce)
    pty = PtyProcess(argv, env, str(state), 80, 24, on_output, lambda _code: None)
    pty.start()
    try:
        await asyncio.wait_for(prompt.get(), 10)
        return await typed_trues(pty.write, prompt, runs)
    finally:
        await pty.terminate()


async def typed_trues(
    write: Callable[[bytes], None], prompt: asyncio.Queue[None], runs: int
) -> list[float]:
    """Milliseconds from typing `true` to the next prompt marker, `runs` times."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        write(b"true\r")
        await asyncio.wait_for(prompt.get(), 10)
        times.append((time.perf_counter() - started) * 1000)
    return times


async def holder_round_trips(
    state: Path, runs: int, launcher: HolderLauncher | None = None, terminal_id: int = 1
) -> tuple[list[float], float]:
    """`true` typed through a holder; also the time from spawning it (a fork of `launcher`,
    or a new interpreter) to the first prompt."""
    prompt: asyncio.Queue[None] = asyncio.Queue()

    def on_event(_offset: int, event: object) -> None:
        if isinstance(event, PromptDrawn):
            prompt.put_nowait(None)

    argv, env = bash_launch(state / "held", "benchnonce")
    socket = state / "held" / f"{terminal_id}.sock"
    started = time.perf_counter()
    await spawn_holder(
        socket,
        argv,
        env=env,
        cwd=str(state),
        terminal_id=terminal_id,
        cols=80,
        rows=24,
        ring_bytes=1 << 20,
        meta={},
        log_path=None,
        launcher=launcher,
    )
    link = await HolderLink.connect(socket, on_event=on_event, on_exit=lambda _code: None)
    link.follow(None)
    try:
        await asyncio.wait_for(prompt.get(), 10)
        start_ms = (time.perf_counter() - started) * 1000
        return await typed_trues(link.write, prompt, runs), start_ms
    finally:
        await link.terminate()


async def pty_start(state: Path) -> float:
    """An in-process PTY's bash, from spawn to its first prompt (the start reference)."""
    scanner = MarkerScanner("benchnonce")
    prompt: asyncio.Queue[None] = asyncio.Queue()

    def on_output(data: bytes) -> None:
        if any(isinstance(event, PromptDrawn) for event in scanner.feed(data)):
            prompt.put_nowait(None)

    argv, env = bash_launch(state / "raw", "benchnonce")
    started = time.perf_counter()
    pty = PtyProcess(argv, env, str(state), 80, 24, on_output, lambda _code: None)
    pty.start()
    try:
        await asyncio.wait_for(prompt.get(), 10)
        return (time.perf_counter() - started) * 1000
    finally:
        await pty.terminate()


async def http_round_trips(state: Path, runs: int) -> list[float]:
    """POST /execute {command: true} with wait, over a real daemon's Unix socket."""
    config = state / "hoodyd.toml"
    config.write_text("[terminals]\nuser_rc = false\n")
    sock = state / "hoodyd.sock"
    daemon = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hoodyd",
            "serve",
            "--config",
            str(config),
            "--state-dir",
            str(state / "daemon"),
            "--socket",
            str(sock),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    times = []
    try:
        deadline = time.monotonic() + 60
        while not sock.exists():
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("hoodyd serve did not start")
            await asyncio.sleep(0.05)
        connector = aiohttp.UnixConnector(path=str(sock))
        async with aiohttp.ClientSession(connector=connector, base_url="http://localhost") as http:
            url = "/api/v1/terminal/execute?terminal_id=1"
            for index in range(runs + 10):  # the first ten warm up the shell and connection
                started = time.perf_counter()
                async with http.post(url, json={"command": "true"}) as response:
                    body = await response.json()
                elapsed = (time.perf_counter() - started) * 1000
                assert body["exit_code"] == 0, body
                if index >= 10:
                    times.append(elapsed)
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=20)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        stop_supervisord(state / "daemon")
    return times


def stop_supervisord(state: Path) -> None:
    """The daemon's embedded supervisord outlives it on purpose; the bench ends it."""
    with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
        pid = int((state / "supervisor" / "supervisord.pid").read_text().strip())
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            os.kill(pid, 0)
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)


def row(name: str, values: list[float], ratio: str) -> str:
    return (
        f"| {name} | {len(values)} | {statistics.median(values):.2f} | {p99(values):.2f} "
        f"| {ratio} |"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--defer-runs", type=int, default=50)
    parser.add_argument("--round-trips", type=int, default=200)
    args = parser.parse_args()
    log.configure("warning", "console")
    state = Path(tempfile.mkdtemp(prefix="hd-bench-", dir="/tmp"))
    try:
        pidfd = await defer_latencies(state, "pidfd", args.defer_runs)
        poll = await defer_latencies(state, "poll", args.defer_runs)
        raw = await raw_pty_round_trips(state, args.round_trips)
        held, held_start = await holder_round_trips(state, args.round_trips)
        starts = [await pty_start(state) for _ in range(10)]
        held_starts = [held_start] + [(await holder_round_trips(state, 1))[1] for _ in range(9)]
        launcher = HolderLauncher()
        try:
            cold_start = (await holder_round_trips(state, 1, launcher, 2))[1]
            launcher_rss = psutil.Process(launcher.pid).memory_info().rss / 2**20
            forked_starts = [
                (await holder_round_trips(state, 1, launcher, 3 + n))[1] for n in range(10)
            ]
        finally:
            await launcher.close()
        http = await http_round_trips(state, args.round_trips)
    finally:
        stop_embedded(state / "daemon")  # the daemon's supervisord outlives it by design
        stop_holders(find_holders(state / "daemon"), grace=1)  # sessions outlive it too
        shutil.rmtree(state, ignore_errors=True)
    print(
        f"# {platform.node()} · {platform.platform()} · {os.cpu_count()} CPUs · "
        f"Python {platform.python_version()} · {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )
    print()
    print("| measurement | runs | median ms | p99 ms | ratio to reference |")
    print("|---|---|---|---|---|")
    poll_median = statistics.median(poll)
    print(
        row(
            "defer: PID exit → first output byte, pidfd",
            pidfd,
            f"{statistics.median(pidfd) / poll_median:.3f}x polling",
        )
    )
    print(row("defer: PID exit → first output byte, polling 50 ms (reference)", poll, "1"))
    raw_median = statistics.median(raw)
    print(
        row(
            "execute `true` with wait over the Unix socket",
            http,
            f"{statistics.median(http) / raw_median:.2f}x raw PTY",
        )
    )
    print(row("`true` typed into a bash PTY directly (reference)", raw, "1"))
    print(
        row(
            "`true` typed through a terminal holder (the hop)",
            held,
            f"{statistics.median(held) / raw_median:.2f}x raw PTY",
        )
    )
    print(
        row(
            "session start to first prompt, holder",
            held_starts,
            f"{statistics.median(held_starts) / statistics.median(starts):.2f}x in-process",
        )
    )
    print(
        row(
            "session start to first prompt, holder forked by the launcher",
            forked_starts,
            f"{statistics.median(forked_starts) / statistics.median(starts):.2f}x in-process",
        )
    )
    print(row("session start to first prompt, in-process PTY (reference)", starts, "1"))
    print()
    print(
        f"first session of a launcher (it starts first): {cold_start:.1f} ms; "
        f"the launcher's RSS: {launcher_rss:.1f} MiB"
    )
    goal = "met" if statistics.median(pidfd) <= 5 else "NOT met"
    print()
    print(f"goal ≤ 5 ms median with pidfd: {goal}")


if __name__ == "__main__":
    asyncio.run(main())
