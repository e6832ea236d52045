"""Load: 200 concurrent clients against a real `hoodyd serve` over its Unix socket.

The clients are shared out evenly over five kinds of request, each client sending its kind
back to back for the duration (one tool polls status, another searches...): program status,
the program list with statuses, an idempotent start of a running port instance, an app search, and a
terminal execute of `true` (spread over `--terminals` shells: commands into one shell run one
after another, as typed ones would). Reported: total req/s, p50/p99 per kind, errors.
Reference, measured in the same run with the same client: an aiohttp hello-world app on a
Unix socket in its own process (the stack's ceiling on this box). Also reported: the CPU time
per request of the hoodyd process (from /proc, its threads included) and of this client, so
a reader can tell the daemon's cost from the box being busy (client and server share its
CPUs).

Run: .venv/bin/python bench/load.py [--clients 200] [--seconds 30] [--terminals 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
from programs import PORT_SERVER, USER, Daemon, free_base, percentile, post

HELLO = """
import sys
from aiohttp import web

async def hello(request):
    return web.json_response({"hello": "world"})

app = web.Application()
app.router.add_get("/", hello)
web.run_app(app, path=sys.argv[1], access_log=None, print=None)
"""

Call = Callable[[aiohttp.ClientSession], Awaitable[int]]


async def get(session: aiohttp.ClientSession, path: str) -> int:
    async with session.get(path) as response:
        await response.read()
        return response.status


async def post_status(session: aiohttp.ClientSession, path: str, body: object) -> int:
    async with session.post(path, json=body) as response:
        await response.read()
        return response.status


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` (all its threads), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def drive(
    socket_path: Path, mix: dict[str, Call], clients: int, seconds: float
) -> tuple[dict[str, list[float]], dict[str, int], float, float]:
    """`clients` loops, each sending one kind of `mix` (the kinds shared out evenly) back to
    back for `seconds`; latencies in ms and errors by kind, the elapsed time and the CPU
    time this client spent."""
    latencies: dict[str, list[float]] = defaultdict(list)
    errors: dict[str, int] = defaultdict(int)
    kinds = list(mix.items())
    connector = aiohttp.UnixConnector(path=str(socket_path), limit=clients)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(
        connector=connector, base_url="http://localhost", timeout=timeout
    ) as session:
        began, client_cpu = time.perf_counter(), time.process_time()
        stop_at = began + seconds

        async def client(number: int) -> None:
            label, call = kinds[number % len(kinds)]
            while time.perf_counter() < stop_at:
                t0 = time.perf_counter()
                try:
                    status = await call(session)
                except (aiohttp.ClientError, TimeoutError):
                    status = 0
                latencies[label].append((time.perf_counter() - t0) * 1000)
                if status != 200:
                    errors[label] += 1

        await asyncio.gather(*(client(i) for i in range(clients)))
        elapsed, client_cpu = time.perf_counter() - began, time.process_time() - client_cpu
    return latencies, errors, elapsed, client_cpu


async def reference(
    clients: int, seconds: float
) -> tuple[dict[str, list[float]], float, float]:
    directory = Path(tempfile.mkdtemp(prefix="hdl-", dir="/tmp"))
    socket_path = directory / "hello.sock"
    server = subprocess.Popen([sys.executable, "-c", HELLO, str(socket_path)])
    try:
        while not socket_path.exists():
            await asyncio.sleep(0.02)
        mix: dict[str, Call] = {"hello": lambda s: get(s, "/")}
        latencies, _, elapsed, client_cpu = await drive(socket_path, mix, clients, seconds)
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(directory, ignore_errors=True)
    return latencies, elapsed, client_cpu


async def hoodyd(
    clients: int, seconds: float, terminals: int, only: list[str]
) -> tuple[dict[str, list[float]], dict[str, int], float, float, float]:
    state = Path(tempfile.mkdtemp(prefix="hdl-", dir="/tmp"))
    daemon = Daemon(state)
    try:
        base = free_base(1)
        async with daemon.session() as session:
            _, added = await post(session, "/programs/add", {
                "name": "load-web", "command": PORT_SERVER, "user": USER,
                "port_range": {"start": base, "end": base}})
            program = added["id"]
            status, answer = await post(
                session, f"/programs/{program}/start", {"port": base, "wait": True})
            assert status == 200, answer
            for terminal in range(1, terminals + 1):  # the shells, started up front
                async with session.post(
                    "/api/v1/terminal/create", json={"terminal_id": terminal}
                ) as response:
                    assert response.status in (200, 201), await response.text()
        counter = iter(range(10**9))
        start_body = {"port": base, "if_not_running": True}

        async def execute(session: aiohttp.ClientSession) -> int:
            terminal = next(counter) % terminals + 1
            return await post_status(
                session, f"/api/v1/terminal/execute?terminal_id={terminal}", {"command": "true"})

        mix: dict[str, Call] = {
            "status": lambda s: get(s, f"/api/v1/daemon/status/{program}"),
            "list": lambda s: get(s, "/api/v1/daemon/programs?include_status=true"),
            "idempotent start": lambda s: post_status(
                s, f"/api/v1/daemon/programs/{program}/start", start_body),
            "search": lambda s: get(s, "/api/v1/run/search?app=python&limit=10"),
            "terminal execute": execute,
        }
        if only:
            mix = {label: call for label, call in mix.items() if label in only}
        cpu_before = cpu_seconds(daemon.process.pid)
        latencies, errors, elapsed, client_cpu = await drive(daemon.socket, mix, clients, seconds)
        cpu = cpu_seconds(daemon.process.pid) - cpu_before
        return latencies, errors, elapsed, cpu, client_cpu
    finally:
        daemon.close()
        shutil.rmtree(state, ignore_errors=True)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--terminals", type=int, default=8)
    parser.add_argument("--only", action="append", default=[], metavar="KIND",
                        help="only this kind of request (repeatable), to see its share")
    args = parser.parse_args()
    ref_latencies, ref_elapsed, ref_client_cpu = await reference(args.clients, args.seconds)
    latencies, errors, elapsed, cpu, client_cpu = await hoodyd(
        args.clients, args.seconds, args.terminals, args.only)
    ref_rps = sum(len(v) for v in ref_latencies.values()) / ref_elapsed
    total = sum(len(v) for v in latencies.values())
    rps = total / elapsed
    print(f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cpus, "
          f"python {platform.python_version()}, load {os.getloadavg()[0]:.2f}")
    print(f"\n{args.clients} concurrent clients for {args.seconds:.0f} s over a Unix socket, "
          f"{args.terminals} terminals")
    print(f"{'':34}{'requests':>10}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}")
    hello = ref_latencies["hello"]
    print(f"{'aiohttp hello world (reference)':34}{len(hello):10}{ref_rps:9.0f}"
          f"{statistics.median(hello):9.1f}{percentile(hello, 0.99):9.1f}{0:8}")
    for label, values in latencies.items():
        print(f"{'hoodyd ' + label:34}{len(values):10}{len(values) / elapsed:9.0f}"
              f"{statistics.median(values):9.1f}{percentile(values, 0.99):9.1f}"
              f"{errors.get(label, 0):8}")
    every = [v for values in latencies.values() for v in values]
    print(f"{'hoodyd, all kinds':34}{total:10}{rps:9.0f}{statistics.median(every):9.1f}"
          f"{percentile(every, 0.99):9.1f}{sum(errors.values()):8}")
    print(f"hoodyd process CPU: {cpu:.1f} s in {elapsed:.1f} s ({cpu / elapsed:.0%} of a core), "
          f"{cpu / total * 1000:.3f} ms per request")
    print(f"client CPU per request: {client_cpu / total * 1000:.3f} ms against hoodyd, "
          f"{ref_client_cpu / len(hello) * 1000:.3f} ms against the reference")
    print(f"ratio req/s hoodyd / reference: {rps / ref_rps:.2f} (goal >= 0.50); goals p99 "
          "<= 250 ms for status, list and idempotent start; no errors")
    print(json.dumps({
        "reference_rps": ref_rps, "hoodyd_rps": rps, "errors": dict(errors),
        "hoodyd_cpu_s": cpu, "hoodyd_cpu_ms_per_request": cpu / total * 1000,
        "client_cpu_ms_per_request": client_cpu / total * 1000,
        "reference_client_cpu_ms_per_request": ref_client_cpu / len(hello) * 1000,
        "p99_ms": {k: percentile(v, 0.99) for k, v in latencies.items()},
        "p50_ms": {k: statistics.median(v) for k, v in latencies.items()},
    }))


if __name__ == "__main__":
    asyncio.run(main())
