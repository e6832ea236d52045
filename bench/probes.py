"""Cost of probes: the daemon's CPU with 500 programs probed every second.

Against a real `hoodyd serve` and its embedded supervisord over the Unix socket, `--programs`
programs (`/bin/sleep`) are added and started. The daemon's CPU (user + system seconds, as a
percentage of one core) is measured over `--seconds` twice: first with no probes (the
reference, same run), then after each program is edited to have a liveness probe
`{"port": P, "interval_ms": 1000}` on a port the bench listens on (accepting and closing). The
probes actually run is read back from `GET /metrics` (`hoodyd_probe_results_total`).

Run: .venv/bin/python bench/probes.py [--programs 500] [--seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import psutil
from programs import API, USER, Daemon, post
from prometheus_client.parser import text_string_to_metric_families


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


async def measure(process: psutil.Process, seconds: float) -> float:
    """The process's CPU over `seconds`, in % of one core."""
    before, began = cpu_seconds(process), time.monotonic()
    await asyncio.sleep(seconds)
    return 100 * (cpu_seconds(process) - before) / (time.monotonic() - began)


async def probes_run(daemon: Daemon) -> tuple[float, float]:
    """Successful and failed probe runs so far, from the metrics route."""
    async with daemon.session() as session, session.get(API + "/metrics") as response:
        text = await response.text()
    counts = {"success": 0.0, "failure": 0.0}
    for family in text_string_to_metric_families(text):
        if family.name == "hoodyd_probe_results":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    counts[sample.labels["result"]] += sample.value
    return counts["success"], counts["failure"]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--programs", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()

    async def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    state = Path(tempfile.mkdtemp(prefix="hd-probes-", dir="/tmp"))
    daemon = Daemon(state)
    try:
        hoodyd = psutil.Process(daemon.process.pid)
        ids = []
        async with daemon.session() as session:
            for index in range(args.programs):
                status, answer = await post(session, "/programs/add", {
                    "name": f"probed-{index}", "command": "/bin/sleep 3600", "user": USER})
                assert status == 200, answer
                ids.append(answer["id"])
            began = time.monotonic()
            for first in range(0, len(ids), 50):  # the daemon bounds connections
                starts = [post(session, f"/programs/{i}/start", {}) for i in ids[first:first + 50]]
                for status, answer in await asyncio.gather(*starts):
                    assert status == 200, answer
            print(f"{args.programs} programs added and started "
                  f"({time.monotonic() - began:.1f} s for the starts)")
            await asyncio.sleep(3)  # settle: the starts' own work is over
            baseline = await measure(hoodyd, args.seconds)
            probe = {"port": port, "interval_ms": 1000, "timeout_ms": 500}
            for i in ids:
                status, answer = await post(session, f"/programs/edit/{i}", {"liveness": probe})
                assert status == 200, answer
        await asyncio.sleep(3)
        ok_before, failed_before = await probes_run(daemon)
        probed = await measure(hoodyd, args.seconds)
        ok_after, failed_after = await probes_run(daemon)
        rate = (ok_after - ok_before + failed_after - failed_before) / args.seconds
        print(f"\nhost: {platform.node()} · {os.cpu_count()} CPUs · Python "
              f"{platform.python_version()} · {args.seconds:.0f} s per measurement\n")
        print(f"| {'daemon':<44} | {'CPU, % of one core':>18} |")
        print(f"|{'-' * 46}|{'-' * 20}|")
        print(f"| {f'{args.programs} programs running, no probes':<44} | {baseline:>18.2f} |")
        label = f"{args.programs} programs, port liveness probe every 1 s"
        print(f"| {label:<44} | {probed:>18.2f} |")
        print(f"\nprobes run: {rate:.0f}/s ({failed_after - failed_before:.0f} failed); "
              f"cost of the probes: {probed - baseline:.2f} % of a core; "
              f"goal ≤ 5 %: {'met' if probed <= 5 else 'NOT met'}")
    finally:
        daemon.close()
        server.close()
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
