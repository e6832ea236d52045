"""Scale of program control: what the Nth program costs against the 10th.

Against a real `hoodyd serve` and its embedded supervisord over the Unix socket, programs are
registered (enabled, not started: `boot` false; every other one a port-range program) up to
10, 100, 300 and 1000. At each step, `--probes` probe programs are each added (enabled),
disabled, enabled again and removed, and also added disabled and removed; every call's latency
is taken, and reported as p50/p99 per operation, with the RSS of hoodyd and of supervisord
and supervisord's CPU seconds (total so far, and spent during the step). Reads too, `--reads`
of each, one after another: the program list with status (`GET /programs?include_status=true`),
one program's status (`GET /status/{id}`) and one program (`GET /programs/{id}`). The ratio of
the p50s at 1000 to those at 10 is printed. Before the daemon starts, the same reads' work
without HTTP (`in_process`): the status reader over a real program table and observer holding
10 … 1000 (and 3000) programs' processes, its list and one program's status timed in this
process.

Then, with 1000 programs registered, time to ready: hoodyd restarted (SIGTERM, start again:
until the program list with status answers with all of them), and supervisord killed
(SIGKILL: until hoodyd has brought it back with every group registered again).

Run: .venv/bin/python bench/scale.py [--steps 10,100,300,1000] [--probes 40] [--reads 200]
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
from programs import API, USER, Daemon, percentile, post

from hoodyd.programs import conf
from hoodyd.programs.observer import Observer
from hoodyd.programs.status import StatusReader
from hoodyd.programs.supervisor_client import ProcessInfo, SupervisorClient
from hoodyd.programs.table import ProgramTable
from hoodyd.schemas.daemon import PortRange, Program

OPS = ("add", "disable", "enable", "remove", "add_disabled", "remove_disabled")
READS = ("list_with_status", "status_one", "get_one")


def body(name: str, *, enabled: bool = True) -> dict[str, Any]:
    return {"name": name, "command": "/bin/sleep 300", "user": USER, "enabled": enabled}


def filler(index: int) -> dict[str, Any]:
    """Every other filler a port-range program (two ports, its own; `boot` false: no instance
    registered until a start names one), the others standard programs."""
    if index % 2 == 0:
        return body(f"filler-{index}")
    start = 20000 + 2 * index
    return {**body(f"filler-{index}"), "port_range": {"start": start, "end": start + 1}}


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


async def read(
    session: aiohttp.ClientSession, reads: int, program_id: int
) -> dict[str, list[float]]:
    """Each read `reads` times, one after another (after 10 unmeasured)."""
    paths = {
        "list_with_status": f"{API}/programs?include_status=true",
        "status_one": f"{API}/status/{program_id}",
        "get_one": f"{API}/programs/{program_id}",
    }
    samples: dict[str, list[float]] = {kind: [] for kind in READS}
    for kind, path in paths.items():
        for i in range(10 + reads):
            began = time.perf_counter()
            async with session.get(path) as response:
                await response.read()
                assert response.status == 200, (path, response.status)
            if i >= 10:
                samples[kind].append((time.perf_counter() - began) * 1000)
    return samples


async def _no_hook() -> None:
    return None


async def in_process(counts: list[int]) -> dict[int, dict[str, float]]:
    """Median ms of the status reader's list (every program) and of one program's status,
    over a table of `count` programs (every other one a port range without instances) whose
    standard programs' processes the observer last saw RUNNING (with this process's pid)."""
    results: dict[int, dict[str, float]] = {}
    for count in counts:
        table = ProgramTable()
        started = int(time.time())
        infos = []
        for i in range(1, count + 1):
            span = PortRange(start=20000 + 2 * i, end=20001 + 2 * i) if i % 2 == 0 else None
            program = Program(
                id=i, name=f"filler-{i}", command="/bin/sleep 300", user=USER, port_range=span
            )
            table.put(program)
            if span is None:
                name = conf.instance_name(program, None)
                infos.append(ProcessInfo(
                    name=name, group=name, state=20, statename="RUNNING", pid=os.getpid(),
                    start=started, stop=0, now=started, exitstatus=0, spawnerr="",
                    description="", stdout_logfile="", stderr_logfile="",
                ))
        table.reindex({})
        observer = Observer(
            SupervisorClient("/nonexistent/supervisor.sock"), interval=60, events_socket=None,
            revive=_no_hook, converge=_no_hook,
        )
        observer.record(infos, time.monotonic())
        reader = StatusReader(observer.client, table, observer)
        programs, first = table.programs(), table.get(1)
        lists, ones = [], []
        for _ in range(20):
            began = time.perf_counter()
            await reader.statuses(programs, with_stats=False)
            lists.append((time.perf_counter() - began) * 1000)
        for _ in range(200):
            began = time.perf_counter()
            await reader.one(first, port=None, with_stats=False)
            ones.append((time.perf_counter() - began) * 1000)
        results[count] = {
            "list_ms": round(statistics.median(lists), 3),
            "one_ms": round(statistics.median(ones), 4),
        }
        print("in process", count, json.dumps(results[count]), flush=True)
    return results


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

    # supervisord killed: hoodyd starts it again and registers every group (the standard
    # programs'; a port-range filler has none until a start names a port)
    groups = await count_supervisord_processes(state)
    supervisord_of(state).kill()
    began = time.perf_counter()

    async def groups_back() -> bool:
        return await count_supervisord_processes(state) >= groups

    await until(groups_back)
    results["supervisord_restart_ready_s"] = time.perf_counter() - began
    return daemon, results


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", default="10,100,300,1000")
    parser.add_argument("--probes", type=int, default=40)
    parser.add_argument("--reads", type=int, default=200)
    args = parser.parse_args()
    steps = [int(s) for s in args.steps.split(",")]
    reading = await in_process(sorted({*steps, 3000}))
    state = Path(tempfile.mkdtemp(prefix="hd-scale-", dir="/tmp"))
    daemon = Daemon(state)
    report: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "probes": args.probes,
        "steps": {},
        "in_process": reading,
    }
    try:
        registered = 0
        first_id = 0
        cpu_before = cpu_seconds(supervisord_of(state))
        async with daemon.session() as session:
            for step in steps:
                while registered < step:
                    _, added = await timed(
                        session, "/programs/add", filler(registered)
                    )
                    first_id = first_id or added["program"]["id"]
                    registered += 1
                cpu_at_probe = cpu_seconds(supervisord_of(state))
                samples = await probe(session, step, args.probes)
                samples.update(await read(session, args.reads, first_id))
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
            for op in (*OPS, *READS)
        }
        daemon, ready = await time_to_ready(daemon, state, registered)
        report["time_to_ready"] = ready
        print(json.dumps(report, indent=2))
    finally:
        daemon.close()
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
