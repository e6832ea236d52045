"""Recovery after supervisord is killed, against a real `hoodyd serve` and its embedded
supervisord.

1 plain program and 20 port instances (a small HTTP server) run; `kill -9` hits supervisord;
the figure is the time until all 21 are RUNNING again and every port accepts connections, and
the check that no port is served twice. Reference, measured in the same run: a supervisord
started by hand whose config autostarts the same 21 programs, from spawn until all 21 serve
(what supervisord alone needs to bring them up, without noticing anything was lost).

Run: .venv/bin/python bench/faults.py [--rounds 5] [--instances 20]
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
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from programs import PORT_SERVER, USER, Daemon, free_base, post

API = "/api/v1/daemon"


async def accepts(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    return True


def servers_on(port: int) -> int:
    """How many portserver processes were started for `port`."""
    count = 0
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if any("portserver.py" in part for part in cmdline) and str(port) in cmdline:
            count += 1
    return count


async def bench_hoodyd(rounds: int, instances: int) -> dict[str, object]:
    state = Path(tempfile.mkdtemp(prefix="hdf-", dir="/tmp"))
    daemon = Daemon(state)
    base = free_base(instances)
    ports = list(range(base, base + instances))
    times: list[float] = []
    duplicates = 0
    try:
        async with daemon.session() as session:
            _, plain = await post(session, "/programs/add", {
                "name": "faults-plain", "command": "/bin/sleep 3600", "user": USER})
            _, ranged = await post(session, "/programs/add", {
                "name": "faults-web", "command": PORT_SERVER, "user": USER,
                "port_range": {"start": base, "end": base + instances - 1}})
            plain_id, ranged_id = plain["id"], ranged["id"]
            status, answer = await post(session, f"/programs/{plain_id}/start", {"wait": True})
            assert status == 200, answer
            answers = await asyncio.gather(*(
                post(session, f"/programs/{ranged_id}/start",
                     {"port": port, "wait": True, "wait_for": "port"}) for port in ports))
            assert all(status == 200 for status, _ in answers), answers

            async def all_back() -> bool:
                async with session.get(f"{API}/status/{plain_id}") as response:
                    if response.status != 200:
                        return False
                    body = await response.json()
                    if body["status"]["status"] != "RUNNING":
                        return False
                serving = await asyncio.gather(*(accepts(port) for port in ports))
                return all(serving)

            for _ in range(rounds):
                pid = int((state / "supervisor" / "supervisord.pid").read_text())
                killed = time.perf_counter()
                os.kill(pid, signal.SIGKILL)
                await asyncio.sleep(0.05)  # the old programs are still up: not yet "back"
                while not await all_back():
                    await asyncio.sleep(0.02)
                times.append(time.perf_counter() - killed)
                await asyncio.sleep(0.5)  # let stray duplicates show, if there were any
                duplicates += sum(1 for port in ports if servers_on(port) != 1)
    finally:
        daemon.close()
        shutil.rmtree(state, ignore_errors=True)
    return {"times": times, "duplicates": duplicates}


REFERENCE_CONF = """\
[unix_http_server]
file={dir}/s.sock

[supervisord]
logfile={dir}/supervisord.log
pidfile={dir}/supervisord.pid
childlogdir={dir}

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[program:plain]
command=/bin/sleep 3600
"""


async def bench_reference(rounds: int, instances: int) -> list[float]:
    times = []
    for _ in range(rounds):
        directory = Path(tempfile.mkdtemp(prefix="hdr-", dir="/tmp"))
        base = free_base(instances)
        ports = list(range(base, base + instances))
        text = REFERENCE_CONF.format(dir=directory)
        for port in ports:
            text += f"\n[program:web_{port}]\ncommand={PORT_SERVER} --port {port}\n"
        (directory / "supervisord.conf").write_text(text)
        began = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "supervisor.supervisord", "-n", "-c",
             str(directory / "supervisord.conf")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            while not all(await asyncio.gather(*(accepts(port) for port in ports))):
                await asyncio.sleep(0.02)
            times.append(time.perf_counter() - began)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
            shutil.rmtree(directory, ignore_errors=True)
    return times


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--instances", type=int, default=20)
    args = parser.parse_args()
    reference = await bench_reference(args.rounds, args.instances)
    ours = await bench_hoodyd(args.rounds, args.instances)
    times = ours["times"]
    assert isinstance(times, list)
    print(f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cpus, "
          f"python {platform.python_version()}, load {os.getloadavg()[0]:.2f}")
    print(f"\nkill -9 supervisord with 1 plain program + {args.instances} port instances "
          f"running, {args.rounds} rounds")
    print(f"{'':52}{'median s':>10}{'max s':>10}")
    print(f"{'supervisord by hand, autostarting the 21 (reference)':52}"
          f"{statistics.median(reference):10.2f}{max(reference):10.2f}")
    print(f"{'hoodyd: kill -9 until all 21 RUNNING and serving':52}"
          f"{statistics.median(times):10.2f}{max(times):10.2f}")
    print(f"ratio (median): {statistics.median(times) / statistics.median(reference):.2f}; "
          f"ports served twice over all rounds: {ours['duplicates']} (goal: <= 5 s, none)")
    print(json.dumps({"reference_s": reference, "hoodyd_s": times,
                      "duplicates": ours["duplicates"]}))


if __name__ == "__main__":
    asyncio.run(main())
