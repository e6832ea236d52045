"""Isolation benchmark: does what a terminal prints, or a pattern a caller sends, stall hoodyd?

A real `hoodyd serve` on a Unix socket. `/api/v1/terminal/health` is asked back to back and
its latency (p50, p99, max) measured
(a) idle (the reference),
(b) while a terminal whose screen is being read receives a screen bomb (`ESC[1;1H x` then
    `ESC[9999b`, 20,000 times: 140 KB) and its snapshot is pending,
(c) while 32 parallel finds of `(a|aa)+$` run over a line of 40 a's and a `b`,
each with its ratio to idle (goal: max below 250 ms). Then memory: the RSS of the daemon
plus its holders with four 1000x1000 terminals full of text and snapshot, and after the
four are deleted.

Run: .venv/bin/python bench/isolation.py [--samples 200]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hoodyd.programs.embedded import stop_embedded  # noqa: E402
from hoodyd.terminals.cleanup import find_holders, stop_holders  # noqa: E402

BASE = "http://localhost/api/v1/terminal"
BOMB = "\\x1b[1;1Hx\\x1b[9999b"


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


async def call(session: aiohttp.ClientSession, method: str, path: str, body: Any = None) -> Any:
    async with session.request(method, f"{BASE}{path}", json=body) as response:
        if response.content_type == "application/json":
            return await response.json()
        return await response.text()


async def health_latencies(
    session: aiohttp.ClientSession, until: asyncio.Future[Any] | None, samples: int
) -> list[float]:
    """Milliseconds per `/health`, `samples` of them, or as many as fit until `until`."""
    latencies: list[float] = []
    while (until is None and len(latencies) < samples) or (until is not None and not until.done()):
        started = time.perf_counter()
        async with session.get(f"{BASE}/health") as response:
            await response.read()
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


async def wait_raw(session: aiohttp.ClientSession, terminal_id: int, text: str) -> None:
    deadline = time.monotonic() + 60
    while text not in await call(session, "GET", f"/raw?terminal_id={terminal_id}&format=text"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"terminal {terminal_id} never showed {text!r}")
        await asyncio.sleep(0.05)


def rss_mb(daemon: psutil.Process, state: Path) -> float:
    """The daemon's RSS plus that of every holder serving under its state dir."""
    total = daemon.memory_info().rss
    for held in find_holders(state):
        with contextlib.suppress(psutil.Error):
            total += psutil.Process(held.pid).memory_info().rss
    return total / 2**20


async def run(socket: Path, state: Path, samples: int, daemon: psutil.Process) -> None:
    connector = aiohttp.UnixConnector(path=str(socket))
    async with aiohttp.ClientSession(connector=connector) as session:
        rows: list[tuple[str, list[float]]] = []
        await call(session, "POST", "/execute?terminal_id=1", {"command": "true"})
        rows.append(("idle", await health_latencies(session, None, samples)))

        bomb = state / "bomb.py"
        bomb.write_text(
            "import sys\n"
            f"sys.stdout.buffer.write(b'{BOMB}' * 20000)\n"
            "sys.stdout.buffer.write(b'\\x1b[2J\\x1b[H' + b'BOMB-' + b'DONE\\r\\n')\n"
        )
        await call(session, "POST", "/execute?terminal_id=2", {"command": "true"})
        await call(session, "GET", "/snapshot?terminal_id=2")
        await call(session, "POST", "/write?terminal_id=2", {"input": f"{sys.executable} {bomb}"})
        await wait_raw(session, 2, "BOMB-DONE")
        bombed = asyncio.ensure_future(call(session, "GET", "/snapshot?terminal_id=2"))
        rows.append(("screen bomb", await health_latencies(session, bombed, samples)))

        await call(
            session,
            "POST",
            "/execute?terminal_id=3",
            {"command": "printf 'a%.0s' $(seq 40); echo b"},
        )
        await call(session, "GET", "/snapshot?terminal_id=3")
        hostile = "/find?terminal_id=3&scope=all&pattern=%28a%7Caa%29%2B%24"
        finds = asyncio.gather(*(call(session, "GET", hostile) for _ in range(32)))
        rows.append(("32 x (a|aa)+$", await health_latencies(session, finds, samples)))

        idle = statistics.median(rows[0][1])
        header = ("/health during", "n", "p50 ms", "p99 ms", "max ms", "p50/idle")
        print("{:<16} {:>5} {:>8} {:>8} {:>8} {:>9}".format(*header))
        for name, values in rows:
            p50 = statistics.median(values)
            print(
                f"{name:<16} {len(values):>5} {p50:>8.2f} {p99(values):>8.2f} "
                f"{max(values):>8.2f} {p50 / idle:>8.1f}x"
            )
        worst = max(max(values) for _name, values in rows[1:])
        print(f"worst under attack: {worst:.1f} ms (goal < 250 ms)")

        for terminal_id in (1, 2, 3):
            await call(session, "DELETE", f"/{terminal_id}")
        before = rss_mb(daemon, state)
        fill = "for i in $(seq 1000); do printf '%0999d\\n' $i; done"
        for terminal_id in range(11, 15):
            await call(session, "POST", f"/execute?terminal_id={terminal_id}", {"command": "true"})
            await call(session, "POST", f"/resize/{terminal_id}", {"cols": 1000, "rows": 1000})
            await call(session, "POST", f"/execute?terminal_id={terminal_id}", {"command": fill})
            await call(session, "GET", f"/snapshot?terminal_id={terminal_id}")
        metrics = await call(session, "GET", "/automation/metrics")
        loaded = rss_mb(daemon, state)
        for terminal_id in range(11, 15):
            await call(session, "DELETE", f"/{terminal_id}")
        await asyncio.sleep(1.0)
        after = rss_mb(daemon, state)
        print()
        print(f"{'RSS, daemon + holders':<40} {'MB':>8}")
        print(f"{'before':<40} {before:>8.1f}")
        print(f"{'four 1000x1000 terminals, snapshot':<40} {loaded:>8.1f}")
        print(f"{'after deleting them':<40} {after:>8.1f}")
        print(
            f"screens: {metrics['vterm_sessions_active']} active, "
            f"{metrics['vterm_memory_mb_used']} MB estimated of a "
            f"{metrics['vterm_memory_mb_cap']} MB cap, {metrics['vterm_evictions']} evicted"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hb-", dir="/tmp") as tmp:
        state = Path(tmp)
        socket = state / "s.sock"
        process = subprocess.Popen(
            [sys.executable, "-m", "hoodyd", "serve", "--state-dir", str(state),
             "--socket", str(socket)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=ROOT,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while not socket.exists():
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("hoodyd did not start")
                time.sleep(0.05)
            asyncio.run(run(socket, state, args.samples, psutil.Process(process.pid)))
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
            stop_holders(find_holders(state), grace=1.0)  # they outlive the daemon by design
            stop_embedded(state, grace=0)


if __name__ == "__main__":
    main()
