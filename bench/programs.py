"""Program control benchmarks against a real `hoodyd serve` and its embedded supervisord.

(a) idempotent start of a running instance over the Unix socket: p50, p99, req/s, beside a raw
    supervisord `getProcessInfo` XML-RPC round trip measured in the same run;
(b) N concurrent `if_not_running` starts of one cold port instance: spawns and answers;
(c) cold start with `wait_for: "port"` of a small HTTP server, against the time the same
    server needs to bind when spawned directly;
(d) scale: 200 lazy instances of one 1000-port range started concurrently (total time), and
    the cost of registering an instance as the 1st against as the 200th: instances of a second
    range started one after another, each start's time (registration + startProcess) taken
    at the 1st-10th and at the 191st-200th. The reference is the 1st-10th.

Run: .venv/bin/python bench/programs.py [--requests 2000] [--crowd 500] [--cold 15]
     [--scale 200] [--only scale]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import pwd
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import xmlrpc.client
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from hoodyd.programs.embedded import stop_embedded
from hoodyd.terminals.cleanup import find_holders, stop_holders

ROOT = Path(__file__).resolve().parent.parent
PORT_SERVER = f"{sys.executable} {ROOT / 'tests' / 'data' / 'portserver.py'}"
USER = pwd.getpwuid(os.geteuid()).pw_name
API = "/api/v1/daemon"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


_handed_out: set[int] = set()


def free_base(count: int, first: int = 30000) -> int:
    """The first of `count` free consecutive ports from `first`, never one handed out
    before."""
    for base in range(first, 60000, 1013):
        if base in _handed_out:
            continue
        try:
            for port in range(base, base + count):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        _handed_out.add(base)
        return base
    raise RuntimeError("no free ports")


async def wait_port(port: int) -> None:
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.002)
            continue
        writer.close()
        return


class Daemon:
    def __init__(
        self, state: Path, *extra: str, env: dict[str, str] | None = None
    ) -> None:
        self.state = state
        self.socket = state / "hoodyd.sock"
        environ = {**os.environ, "HOODYD_LOG_LEVEL": "warning", "HOODYD_LOG_FORMAT": "json",
                   **(env or {})}
        self._log = (state / "daemon.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "hoodyd", "serve", "--state-dir", str(state),
             "--socket", str(self.socket), *extra],
            env=environ, stdout=subprocess.DEVNULL, stderr=self._log,
        )
        deadline = time.monotonic() + 30
        while not self.socket.exists():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError((state / "daemon.log").read_text())
            time.sleep(0.02)

    def session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            connector=aiohttp.UnixConnector(path=str(self.socket), limit=600),
            base_url="http://localhost",
            timeout=aiohttp.ClientTimeout(total=120),
        )

    def close(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=30)
        stop_embedded(self.state)  # supervisord and terminal sessions outlive hoodyd by design
        stop_holders(find_holders(self.state), grace=1)
        self._log.close()


async def post(session: aiohttp.ClientSession, path: str, body: Any) -> tuple[int, Any]:
    async with session.post(API + path, json=body) as response:
        return response.status, await response.json()


async def bench_idempotent(daemon: Daemon, requests: int) -> dict[str, float]:
    base = free_base(1)
    async with daemon.session() as session:
        _, added = await post(session, "/programs/add", {
            "name": "bench-idem", "command": PORT_SERVER, "user": USER,
            "port_range": {"start": base, "end": base}})
        pid = added["id"]
        status, _ = await post(session, f"/programs/{pid}/start", {"port": base, "wait": True})
        assert status == 200
        body = {"port": base, "if_not_running": True}
        rpc = xmlrpc.client.dumps((f"bench-idem_{base}",), "supervisor.getProcessInfo")
        sup = aiohttp.ClientSession(connector=aiohttp.UnixConnector(
            path=str(daemon.state / "supervisor" / "supervisor.sock")))

        async def raw() -> None:
            async with sup.post("http://localhost/RPC2", data=rpc,
                                headers={"Content-Type": "text/xml"}) as response:
                await response.read()

        async def ours() -> None:
            status, answer = await post(session, f"/programs/{pid}/start", body)
            assert status == 200 and answer["already_running"], answer

        results: dict[str, float] = {}
        for label, call in (("raw", raw), ("hoodyd", ours)):
            for _ in range(50):
                await call()  # warm-up
            samples = []
            began = time.perf_counter()
            for _ in range(requests):
                t0 = time.perf_counter()
                await call()
                samples.append((time.perf_counter() - t0) * 1000)
            elapsed = time.perf_counter() - began
            results[f"{label}_p50_ms"] = statistics.median(samples)
            results[f"{label}_p99_ms"] = percentile(samples, 0.99)
            results[f"{label}_rps"] = requests / elapsed
        await sup.close()
        await post(session, f"/programs/{pid}/stop", {"all": True})
        return results


async def bench_crowd(daemon: Daemon, crowd: int) -> dict[str, float]:
    base = free_base(1)
    async with daemon.session() as session:
        _, added = await post(session, "/programs/add", {
            "name": "bench-crowd", "command": PORT_SERVER, "user": USER,
            "port_range": {"start": base, "end": base}, "lazy_load": True})
        pid = added["id"]
        body = {"port": base, "if_not_running": True, "wait": True, "wait_for": "port"}
        began = time.perf_counter()
        answers = await asyncio.gather(
            *(post(session, f"/programs/{pid}/start", body) for _ in range(crowd)))
        elapsed = time.perf_counter() - began
        spawned = sum(
            1 for p in psutil.process_iter(["cmdline"])
            if p.info["cmdline"] and "portserver.py" in " ".join(p.info["cmdline"])
            and str(base) in p.info["cmdline"])
        ok = sum(1 for status, _ in answers if status == 200)
        pids = {a["instance"]["pid"] for s, a in answers if s == 200}
        await post(session, f"/programs/{pid}/stop", {"all": True})
        return {"requests": crowd, "answered_200": ok, "spawns": spawned,
                "distinct_pids": len(pids), "all_answered_s": elapsed}


async def bench_cold(daemon: Daemon, runs: int) -> dict[str, float]:
    base = free_base(runs)
    direct, via = [], []
    for i in range(runs):
        port = base + i
        t0 = time.perf_counter()
        proc = subprocess.Popen([*PORT_SERVER.split(), "--port", str(port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        await wait_port(port)
        direct.append((time.perf_counter() - t0) * 1000)
        proc.terminate()
        proc.wait()
    async with daemon.session() as session:
        _, added = await post(session, "/programs/add", {
            "name": "bench-cold", "command": PORT_SERVER, "user": USER,
            "port_range": {"start": base, "end": base + runs - 1}, "lazy_load": True})
        pid = added["id"]
        for i in range(runs):
            port = base + i
            t0 = time.perf_counter()
            status, answer = await post(session, f"/programs/{pid}/start", {
                "port": port, "wait": True, "wait_for": "port", "timeout": 30})
            via.append((time.perf_counter() - t0) * 1000)
            assert status == 200, answer
        await post(session, f"/programs/{pid}/stop", {"all": True})
    return {"direct_bind_p50_ms": statistics.median(direct),
            "hoodyd_ready_p50_ms": statistics.median(via),
            "added_p50_ms": statistics.median(via) - statistics.median(direct)}


# an instance that runs without listening: `--port N` lands in $1 and $2 of the shell
QUIET = "/bin/sh -c 'exec sleep 3600' quiet"


async def bench_scale(daemon: Daemon, count: int) -> dict[str, float]:
    async with daemon.session() as session:
        # below Linux's ephemeral ports (32768-60999), which client connections leave busy
        base = free_base(1000, first=10000)
        _, added = await post(session, "/programs/add", {
            "name": "bench-scale", "command": QUIET, "user": USER,
            "port_range": {"start": base, "end": base + 999}, "lazy_load": True})
        crowd_id = added["id"]
        began = time.perf_counter()
        answers = await asyncio.gather(*(
            post(session, f"/programs/{crowd_id}/start", {"port": base + i})
            for i in range(count)))
        concurrent_s = time.perf_counter() - began
        assert all(status == 200 for status, _ in answers), answers[:3]
        base = free_base(1000, first=10000)
        _, added = await post(session, "/programs/add", {
            "name": "bench-seq", "command": QUIET, "user": USER,
            "port_range": {"start": base, "end": base + 999}, "lazy_load": True})
        seq_id = added["id"]
        costs = []
        for i in range(count):
            t0 = time.perf_counter()
            status, answer = await post(session, f"/programs/{seq_id}/start", {"port": base + i})
            costs.append((time.perf_counter() - t0) * 1000)
            assert status == 200, answer
        for program in (crowd_id, seq_id):
            await post(session, f"/programs/{program}/stop", {"all": True})
    first, last = statistics.median(costs[:10]), statistics.median(costs[-10:])
    return {"instances": count, "concurrent_s": concurrent_s, "first_ms": first,
            "last_ms": last, "ratio": last / first}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--crowd", type=int, default=500)
    parser.add_argument("--cold", type=int, default=15)
    parser.add_argument("--scale", type=int, default=200)
    parser.add_argument("--only", choices=["scale"], help="run only this part")
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp(prefix="hdb-", dir="/tmp"))
    daemon = Daemon(state)
    try:
        if args.only != "scale":
            idem = await bench_idempotent(daemon, args.requests)
            crowd = await bench_crowd(daemon, args.crowd)
            cold = await bench_cold(daemon, args.cold)
        scale = await bench_scale(daemon, args.scale)
    finally:
        daemon.close()
        shutil.rmtree(state, ignore_errors=True)
    print(f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cpus, "
          f"python {platform.python_version()}, load {os.getloadavg()[0]:.2f}")
    print(f"\n(d) scale: {scale['instances']} lazy instances of a 1000-port range")
    print(f"started concurrently: {scale['concurrent_s']:.2f} s (goal <= 5 s)")
    print(f"one start (registration + startProcess), median of the 1st-10th (reference): "
          f"{scale['first_ms']:.1f} ms; of the {scale['instances'] - 9}th-"
          f"{scale['instances']}th: {scale['last_ms']:.1f} ms; ratio {scale['ratio']:.2f} "
          "(goal <= 2)")
    if args.only == "scale":
        print(json.dumps({"scale": scale}))
        return
    print("\n(a) idempotent start of a running instance, sequential, Unix socket")
    print(f"{'':22}{'p50 ms':>10}{'p99 ms':>10}{'req/s':>10}")
    for label in ("raw", "hoodyd"):
        name = "supervisord getProcessInfo" if label == "raw" else "hoodyd start"
        print(f"{name:22.22}{idem[label + '_p50_ms']:10.3f}{idem[label + '_p99_ms']:10.3f}"
              f"{idem[label + '_rps']:10.0f}")
    print(f"ratio p50 hoodyd/raw: {idem['hoodyd_p50_ms'] / idem['raw_p50_ms']:.2f} (goal <= 2)")
    print(f"\n(b) {crowd['requests']} concurrent if_not_running starts of one cold instance")
    print(f"answered 200: {crowd['answered_200']}, spawns: {crowd['spawns']}, "
          f"distinct pids: {crowd['distinct_pids']}, all answered in "
          f"{crowd['all_answered_s']:.2f}s (goal: exactly one spawn, all answered)")
    print(f"\n(c) cold start, wait_for=port, median of {args.cold}")
    print(f"server binds when spawned directly: {cold['direct_bind_p50_ms']:.1f} ms")
    print(f"hoodyd start answered:              {cold['hoodyd_ready_p50_ms']:.1f} ms")
    print(f"added by hoodyd: {cold['added_p50_ms']:.1f} ms (goal <= 30 ms); ratio "
          f"{cold['hoodyd_ready_p50_ms'] / cold['direct_bind_p50_ms']:.2f}")
    print(json.dumps({"idempotent": idem, "crowd": crowd, "cold": cold, "scale": scale}))


if __name__ == "__main__":
    asyncio.run(main())
