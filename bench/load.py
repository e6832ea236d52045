"""Load: 200 concurrent clients against a real `hoodyd serve`, beside an aiohttp hello-world.

Read-only mix (the goal: >= 0.5x the hello-world's req/s, p99 <= 100 ms): program list with
status, one program's status, health and an app search, against hoodyd and against an aiohttp
hello-world in its own process over the same transport, side by side in one run, over the
Unix socket and over TCP on 127.0.0.1 (hoodyd with its bearer token).

Mixed load (a reported figure, over the Unix socket): the clients are shared out evenly
over five kinds of request, each client sending its kind back to back for the duration (one
tool polls status, another searches...): program status, the program list with statuses,
an idempotent start of a running port instance, an app search, and a terminal execute of
`true` (spread over `--terminals` shells: commands into one shell run one after another, as
typed ones would). Reported: total req/s, p50/p99 per kind, errors. Also reported: the CPU
time per request of the hoodyd process (from /proc, its threads included) and of this
client, so a reader can tell the daemon's cost from the box being busy (client and server
share its CPUs).

`/health` is measured alongside by one more client: the loop answering first matters more
than raw throughput there.

Before the timed run each kind is requested once, and the timing waits until no app source
is syncing: a fresh state dir syncs every source in worker threads, a start-up cost that is
not the steady state being measured.

Run: .venv/bin/python bench/load.py [--clients 200] [--seconds 30] [--terminals 8]
     [--part read|mixed|both]
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
where = sys.argv[1]
if where.startswith("/"):
    web.run_app(app, path=where, access_log=None, print=None)
else:
    web.run_app(app, host="127.0.0.1", port=int(where), access_log=None, print=None)
"""

TOKEN = "load-bench-token-" + "x" * 24


class Transport:
    """Where the clients connect: a Unix socket, or TCP on 127.0.0.1 (with a token)."""

    def __init__(self, socket_path: Path | None = None, port: int | None = None,
                 token: str | None = None) -> None:
        self.socket_path, self.port, self.token = socket_path, port, token

    @property
    def name(self) -> str:
        return "unix" if self.socket_path else "tcp"

    def session(self, clients: int) -> aiohttp.ClientSession:
        if self.socket_path:
            connector: aiohttp.BaseConnector = aiohttp.UnixConnector(
                path=str(self.socket_path), limit=clients)
            base = "http://localhost"
        else:
            connector = aiohttp.TCPConnector(limit=clients)
            base = f"http://127.0.0.1:{self.port}"
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else None
        return aiohttp.ClientSession(connector=connector, base_url=base, headers=headers,
                                     timeout=aiohttp.ClientTimeout(total=60))

    async def ready(self) -> None:
        while True:
            try:
                if self.socket_path:
                    if self.socket_path.exists():
                        return
                else:
                    _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                    writer.close()
                    return
            except OSError:
                pass
            await asyncio.sleep(0.02)

Call = Callable[[aiohttp.ClientSession], Awaitable[int]]


async def get(session: aiohttp.ClientSession, path: str) -> int:
    async with session.get(path) as response:
        await response.read()
        return response.status


async def post_status(session: aiohttp.ClientSession, path: str, body: object) -> int:
    async with session.post(path, json=body) as response:
        await response.read()
        return response.status


async def syncs_done(session: aiohttp.ClientSession, timeout: float = 600) -> float:
    """Wait until no app source is syncing (each source's diagnostics); the seconds waited."""
    began = time.perf_counter()
    async with session.get("/api/v1/run/sources") as response:
        sources = [s["source_id"] for s in await response.json()]
    while time.perf_counter() - began < timeout:
        syncing = False
        for source in sources:
            async with session.get(f"/api/v1/run/sources/{source}/diagnostics") as response:
                details = (await response.json()).get("provider_details") or {}
                syncing = syncing or bool(details.get("syncing"))
        if not syncing:
            return time.perf_counter() - began
        await asyncio.sleep(0.2)
    raise TimeoutError("app sources still syncing")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` (all its threads), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def drive(
    transport: Transport, mix: dict[str, Call], clients: int, seconds: float,
    *, health_probe: bool = False,
) -> tuple[dict[str, list[float]], dict[str, int], float, float]:
    """`clients` loops, each sending one kind of `mix` (the kinds shared out evenly) back to
    back for `seconds`; latencies in ms and errors by kind, the elapsed time and the CPU
    time this client spent."""
    latencies: dict[str, list[float]] = defaultdict(list)
    errors: dict[str, int] = defaultdict(int)
    kinds = list(mix.items())
    async with transport.session(clients + 1) as session:
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

        async def prober() -> None:  # one more client: /health beside the load
            while time.perf_counter() < stop_at:
                t0 = time.perf_counter()
                try:
                    status = await get(session, "/api/v1/daemon/health")
                except (aiohttp.ClientError, TimeoutError):
                    status = 0
                latencies["health (beside)"].append((time.perf_counter() - t0) * 1000)
                if status != 200:
                    errors["health (beside)"] += 1
                await asyncio.sleep(0.05)

        extra = [prober()] if health_probe else []
        await asyncio.gather(*(client(i) for i in range(clients)), *extra)
        elapsed, client_cpu = time.perf_counter() - began, time.process_time() - client_cpu
    return latencies, errors, elapsed, client_cpu


async def reference(
    clients: int, seconds: float, kind: str
) -> tuple[dict[str, list[float]], float, float]:
    directory = Path(tempfile.mkdtemp(prefix="hdl-", dir="/tmp"))
    if kind == "unix":
        transport = Transport(socket_path=directory / "hello.sock")
    else:
        transport = Transport(port=free_base(1, 41000))
    where = str(transport.socket_path or transport.port)
    server = subprocess.Popen([sys.executable, "-c", HELLO, where])
    try:
        await transport.ready()
        mix: dict[str, Call] = {"hello": lambda s: get(s, "/")}
        latencies, _, elapsed, client_cpu = await drive(transport, mix, clients, seconds)
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(directory, ignore_errors=True)
    return latencies, elapsed, client_cpu


async def hoodyd(
    clients: int, seconds: float, terminals: int, only: list[str], *, part: str, kind: str
) -> tuple[dict[str, list[float]], dict[str, int], float, float, float]:
    state = Path(tempfile.mkdtemp(prefix="hdl-", dir="/tmp"))
    tcp_port = free_base(1, 43000)
    daemon = Daemon(state, "--tcp", f"127.0.0.1:{tcp_port}", env={"HOODYD_TOKEN": TOKEN})
    transport = (Transport(socket_path=daemon.socket) if kind == "unix"
                 else Transport(port=tcp_port, token=TOKEN))
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
            for terminal in range(1, terminals + 1 if part == "mixed" else 1):
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
        if part == "read":  # nothing that changes state or runs a command
            mix = {"status": mix["status"], "list": mix["list"],
                   "health": lambda s: get(s, "/api/v1/daemon/health"),
                   "search": mix["search"]}
        if only:
            mix = {label: call for label, call in mix.items() if label in only}
        async with transport.session(4) as warm:  # one of each first: search loads its index
            for call in mix.values():
                await call(warm)
            # a fresh state dir syncs every app source in worker threads (tens of seconds of
            # CPU on this box): time the steady state, after the syncs, as a running daemon is
            synced_in = await syncs_done(warm)
        print(f"hoodyd over {kind}: first source syncs done {synced_in:.1f} s after warm-up",
              file=sys.stderr)
        cpu_before = cpu_seconds(daemon.process.pid)
        latencies, errors, elapsed, client_cpu = await drive(
            transport, mix, clients, seconds, health_probe=part == "mixed")
        cpu = cpu_seconds(daemon.process.pid) - cpu_before
        return latencies, errors, elapsed, cpu, client_cpu
    finally:
        daemon.close()
        shutil.rmtree(state, ignore_errors=True)


def report(
    title: str, ref: tuple[dict[str, list[float]], float, float],
    ours: tuple[dict[str, list[float]], dict[str, int], float, float, float],
) -> dict[str, object]:
    ref_latencies, ref_elapsed, ref_client_cpu = ref
    latencies, errors, elapsed, cpu, client_cpu = ours
    ref_rps = sum(len(v) for v in ref_latencies.values()) / ref_elapsed
    counted = {k: v for k, v in latencies.items() if k != "health (beside)"}
    total = sum(len(v) for v in counted.values())
    rps = total / elapsed
    print(f"\n{title}")
    print(f"{'':34}{'requests':>10}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}")
    hello = ref_latencies["hello"]
    print(f"{'aiohttp hello world (reference)':34}{len(hello):10}{ref_rps:9.0f}"
          f"{statistics.median(hello):9.1f}{percentile(hello, 0.99):9.1f}{0:8}")
    for label, values in latencies.items():
        print(f"{'hoodyd ' + label:34}{len(values):10}{len(values) / elapsed:9.0f}"
              f"{statistics.median(values):9.1f}{percentile(values, 0.99):9.1f}"
              f"{errors.get(label, 0):8}")
    every = [v for values in counted.values() for v in values]
    print(f"{'hoodyd, all kinds':34}{total:10}{rps:9.0f}{statistics.median(every):9.1f}"
          f"{percentile(every, 0.99):9.1f}{sum(errors.values()):8}")
    print(f"hoodyd process CPU: {cpu:.1f} s in {elapsed:.1f} s ({cpu / elapsed:.0%} of a core), "
          f"{cpu / total * 1000:.3f} ms per request")
    print(f"client CPU per request: {client_cpu / total * 1000:.3f} ms against hoodyd, "
          f"{ref_client_cpu / len(hello) * 1000:.3f} ms against the reference")
    print(f"ratio req/s hoodyd / reference: {rps / ref_rps:.2f}")
    return {
        "reference_rps": ref_rps, "hoodyd_rps": rps, "ratio": rps / ref_rps,
        "errors": dict(errors), "hoodyd_cpu_ms_per_request": cpu / total * 1000,
        "p99_all_ms": percentile(every, 0.99),
        "p99_ms": {k: percentile(v, 0.99) for k, v in latencies.items()},
        "p50_ms": {k: statistics.median(v) for k, v in latencies.items()},
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--terminals", type=int, default=8)
    parser.add_argument("--part", choices=("read", "mixed", "both"), default="both")
    parser.add_argument("--only", action="append", default=[], metavar="KIND",
                        help="only this kind of request (repeatable), to see its share")
    args = parser.parse_args()
    print(f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cpus, "
          f"python {platform.python_version()}, load {os.getloadavg()[0]:.2f}")
    results: dict[str, object] = {}
    runs = [("read", kind) for kind in ("unix", "tcp")] if args.part != "mixed" else []
    if args.part != "read":
        runs.append(("mixed", "unix"))
    for part, kind in runs:
        ref = await reference(args.clients, args.seconds, kind)
        ours = await hoodyd(args.clients, args.seconds, args.terminals, args.only,
                            part=part, kind=kind)
        title = (f"{part} mix, {args.clients} concurrent clients for {args.seconds:.0f} s "
                 f"over {kind}" + (f", {args.terminals} terminals" if part == "mixed" else ""))
        results[f"{part}_{kind}"] = report(title, ref, ours)
    print("goals (read mix): ratio >= 0.50 and p99 <= 100 ms; no errors")
    print(json.dumps(results))


if __name__ == "__main__":
    asyncio.run(main())
