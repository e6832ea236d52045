"""Program control benchmarks against a real `hoodyd serve` and its embedded supervisord.

(a) idempotent start of a running instance over the Unix socket: p50, p99, req/s, beside a raw
    supervisord `getProcessInfo` XML-RPC round trip measured in the same run;
(b) N concurrent `if_not_running` starts of one cold port instance: spawns and answers;
(c) cold start with `wait_for: "port"` of a small HTTP server, against the time the same
    server needs to bind when spawned directly.

Run: .venv/bin/python bench/programs.py [--requests 2000] [--crowd 500] [--cold 15]
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

ROOT = Path(__file__).resolve().parent.parent
PORT_SERVER = f"{sys.executable} {ROOT / 'tests' / 'data' / 'portserver.py'}"
USER = pwd.getpwuid(os.geteuid()).pw_name
API = "/api/v1/daemon"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


_handed_out: set[int] = set()


def free_base(count: int) -> int:
    """The first of `count` free consecutive ports, never one handed out before."""
    for base in range(30000, 60000, 1013):
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
    def __init__(self, state: Path) -> None:
        self.state = state
        self.socket = state / "hoodyd.sock"
        env = {**os.environ, "HOODYD_LOG_LEVEL": "warning", "HOODYD_LOG_FORMAT": "json"}
        self._log = (state / "daemon.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "hoodyd", "serve", "--state-dir", str(state),
             "--socket", str(self.socket)],
            env=env, stdout=subprocess.DEVNULL, stderr=self._log,
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
        stop_embedded(self.state)
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


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--crowd", type=int, default=500)
    parser.add_argument("--cold", type=int, default=15)
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp(prefix="hdb-", dir="/tmp"))
    daemon = Daemon(state)
    try:
        idem = await bench_idempotent(daemon, args.requests)
        crowd = await bench_crowd(daemon, args.crowd)
        cold = await bench_cold(daemon, args.cold)
    finally:
        daemon.close()
        shutil.rmtree(state, ignore_errors=True)
    print(f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cpus, "
          f"python {platform.python_version()}")
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
    print(json.dumps({"idempotent": idem, "crowd": crowd, "cold": cold}))


if __name__ == "__main__":
    asyncio.run(main())
