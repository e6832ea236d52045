"""Scale of program control: what the Nth program costs against the 10th.

Against a real `hoodyd serve` and its embedded supervisord over the Unix socket, programs are
registered (enabled, not started: `boot` false) up to 10, 100, 300 and 1000. At each step,
`--probes` probe programs are each added (enabled), disabled, enabled again and removed, and
also added disabled and removed; every call's latency is taken, and reported as p50/p99 per
operation, with the RSS of hoodyd and of supervisord and supervisord's CPU seconds (total so
far, and spent during the step). The ratio of the p50s at 1000 to those at 10 is printed.

Then, with 1000 programs registered, time to ready: hoodyd restarted (SIGTERM, start again:
until the program list with status answers with all of them), and supervisord killed
(SIGKILL: until hoodyd has brought it back with every group registered again).

Run: .venv/bin/python bench/scale.py [--steps 10,100,300,1000] [--probes 40]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import statistics
import tempfile
import time
import xmlrpc.client
from pathlib import Path
from typing import Any

import aiohttp
import psutil
from programs import USER, Daemon, percentile, post

OPS = ("add", "disable", "enable", "remove", "add_disabled", "remove_disabled")


def body(name: str, *, enabled: bool = True) -> dict[str, Any]:
    return {"name": name, "command": "/bin/sleep 300", "user": USER, "enabled": enabled}


def supervisord_of(state: Path) -> psutil.Process:
    return psutil.Process(int((state / "supervisor" / "supervisord.pid").read_text()))


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


async def timed(
    session: aiohttp.ClientSession, path: str, payload: Any = None
) -> tuple[float, Any]:
    began = time.perf_counter()
    status, answer = await post(session, path, payload)
    elapsed = (time.perf_counter() - began) * 1000
    assert status == 200, (path, answer)
    return elapsed, answer


async def probe(session: aiohttp.ClientSession, step: int, probes: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {op: [] for op in OPS}
    for i in range(probes):
        ms, answer = await timed(session, "/programs/add", body(f"probe-{step}-{i}"))
        samples["add"].append(ms)
        program_id = answer["program"]["id"]
        for op in ("disable", "enable"):
            ms, _ = await timed(session, f"/programs/{program_id}/{op}")
            samples[op].append(ms)
        ms, _ = await timed(session, f"/programs/remove/{program_id}")
        samples["remove"].append(ms)
        ms, answer = await timed(
            session, "/programs/add", body(f"probe-off-{step}-{i}", enabled=False)
        )
        samples["add_disabled"].append(ms)
        ms, _ = await timed(session, f"/programs/remove/{answer['program']['id']}")
        samples["remove_disabled"].append(ms)
    return samples


async def count_supervisord_processes(state: Path) -> int:
    rpc = xmlrpc.client.dumps((), "supervisor.getAllProcessInfo")
    connector = aiohttp.UnixConnector(path=str(state / "supervisor" / "supervisor.sock"))
    async with aiohttp.ClientSession(connector=connector) as sup, sup.post(
        "http://localhost/RPC2", data=rpc, headers={"Content-Type": "text/xml"}
    ) as response:
        (infos,), _ = xmlrpc.client.loads(await response.read())
    return len(infos)


async def until(check: Any, timeout: float = 60) -> float:
    """Seconds until `check()` is true (polled every 10 ms)."""
    began = time.perf_counter()
    while time.perf_counter() - began < timeout:
        try:
            if await check():
                return time.perf_counter() - began
        except (OSError, aiohttp.ClientError, xmlrpc.client.Error, AssertionError):
            pass
        await asyncio.sleep(0.01)
    raise TimeoutError("not ready")


async def time_to_ready(
    daemon: Daemon, state: Path, registered: int
) -> tuple[Daemon, dict[str, float]]:
    results: dict[str, float] = {}

    async def listed() -> bool:
        async with daemon.session() as session, session.get(
            "/api/v1/daemon/programs?include_status=true"
        ) as response:
            answer = await response.json()
            return response.status == 200 and len(answer["programs"]) >= registered

    # hoodyd restarted; supervisord keeps running
    daemon.process.send_signal(signal.SIGTERM)
    daemon.process.wait(timeout=60)
    began = time.perf_counter()
    daemon = Daemon(state)
    await until(listed)
    results["hoodyd_restart_ready_s"] = time.perf_counter() - began

    # supervisord killed: hoodyd starts it again and registers every group
    supervisord_of(state).kill()
    began = time.perf_counter()

    async def groups_back() -> bool:
        return await count_supervisord_processes(state) >= registered

    await until(groups_back)
    results["supervisord_restart_ready_s"] = time.perf_counter() - began
    return daemon, results


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", default="10,100,300,1000")
    parser.add_argument("--probes", type=int, default=40)
    args = parser.parse_args()
    steps = [int(s) for s in args.steps.split(",")]
    state = Path(tempfile.mkdtemp(prefix="hd-scale-", dir="/tmp"))
    daemon = Daemon(state)
    report: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "probes": args.probes,
        "steps": {},
    }
    try:
        registered = 0
        cpu_before = cpu_seconds(supervisord_of(state))
        async with daemon.session() as session:
            for step in steps:
                while registered < step:
                    await timed(session, "/programs/add", body(f"filler-{registered}"))
                    registered += 1
                cpu_at_probe = cpu_seconds(supervisord_of(state))
                samples = await probe(session, step, args.probes)
                supervisord = supervisord_of(state)
                row: dict[str, Any] = {
                    op: {
                        "p50_ms": round(statistics.median(values), 2),
                        "p99_ms": round(percentile(values, 0.99), 2),
                    }
                    for op, values in samples.items()
                }
                row["hoodyd_rss_mb"] = round(
                    psutil.Process(daemon.process.pid).memory_info().rss / 2**20, 1
                )
                row["supervisord_rss_mb"] = round(supervisord.memory_info().rss / 2**20, 1)
                row["supervisord_cpu_s_total"] = round(cpu_seconds(supervisord) - cpu_before, 2)
                row["supervisord_cpu_s_probes"] = round(
                    cpu_seconds(supervisord) - cpu_at_probe, 2
                )
                report["steps"][step] = row
                print(step, json.dumps(row), flush=True)
        first, last = steps[0], steps[-1]
        report[f"ratio_p50_{last}_to_{first}"] = {
            op: round(report["steps"][last][op]["p50_ms"] / report["steps"][first][op]["p50_ms"], 2)
            for op in OPS
        }
        daemon, ready = await time_to_ready(daemon, state, registered)
        report["time_to_ready"] = ready
        print(json.dumps(report, indent=2))
    finally:
        daemon.close()
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
