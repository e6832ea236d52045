"""How long `hoodyd serve` takes to answer its first request, and the CPU it spent to get there.

Two starts are timed, each from exec to the first 200 of `GET /api/v1/daemon/health` on the
Unix socket, with the CPU time the daemon process had used by then (its embedded
supervisord, a process of its own, is not counted):

- restart: the state dir of an earlier run (its app indexes synced), the usual start of a
  service;
- first start: an empty state dir (the apt and PATH syncs run in the background; /health
  does not wait for them).

The reference, measured in the same run, is an aiohttp hello-world started the same way on a
Unix socket: what any aiohttp server pays for Python and its imports.

Run: .venv/bin/python bench/startup.py [--runs 7] [--source DIR]
  --source runs the daemon from another checkout's package directory (its parent is put
  first on PYTHONPATH), to compare two trees on one box.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

HEALTH = b"GET %s HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"

HELLO = """
import sys
from aiohttp import web

async def health(_request):
    return web.json_response({"success": True})

app = web.Application()
app.router.add_get("/health", health)
web.run_app(app, path=sys.argv[1], print=None)
"""


def answers(sock: Path, path: bytes) -> bool:
    try:
        with socket.socket(socket.AF_UNIX) as client:
            client.settimeout(2)
            client.connect(str(sock))
            client.sendall(HEALTH % path)
            return client.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def time_start(
    argv: list[str], sock: Path, path: bytes, env: dict[str, str]
) -> tuple[float, float, subprocess.Popen[bytes]]:
    """Seconds from exec to the first 200, and the process's CPU seconds by then."""
    started = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = started + 60
    while not answers(sock, path):
        if process.poll() is not None or time.perf_counter() > deadline:
            raise SystemExit(f"{argv[:4]} did not answer")
        time.sleep(0.005)
    elapsed = time.perf_counter() - started
    cpu = psutil.Process(process.pid).cpu_times()
    return elapsed, cpu.user + cpu.system, process


def stop_daemon(process: subprocess.Popen[bytes], state: Path, env: dict[str, str]) -> None:
    process.terminate()
    process.wait(timeout=30)
    subprocess.run(
        [sys.executable, "-m", "hoodyd", "down", "--state-dir", str(state)],
        env=env,
        capture_output=True,
        check=False,
        timeout=60,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--source", type=Path, help="a package directory to run instead")
    args = parser.parse_args()
    env = {**os.environ, "HOODYD_LOG_FORMAT": "json"}
    if args.source is not None:
        env["PYTHONPATH"] = str(args.source.resolve().parent)
    root = Path(tempfile.mkdtemp(prefix="hd-bench-start-", dir="/tmp"))
    figures: dict[str, list[tuple[float, float]]] = {"hello": [], "restart": [], "first": []}
    try:
        synced = root / "synced"
        for run in range(args.runs):
            sock = root / f"hello-{run}.sock"
            elapsed, cpu, process = time_start(
                [sys.executable, "-c", HELLO, str(sock)], sock, b"/health", env
            )
            process.terminate()
            process.wait()
            figures["hello"].append((elapsed, cpu))

            state = root / f"first-{run}"
            argv = [sys.executable, "-m", "hoodyd", "serve", "--state-dir", str(state)]
            argv += ["--socket", str(state / "hoodyd.sock")]
            state.mkdir()
            elapsed, cpu, process = time_start(
                argv, state / "hoodyd.sock", b"/api/v1/daemon/health", env
            )
            figures["first"].append((elapsed, cpu))
            if run == 0:  # the first run's syncs leave the index every restart starts from
                index = state / "index"
                wanted = [index / "apt.msgpack", index / "system-path.msgpack"]
                deadline = time.monotonic() + 120
                while not all(p.exists() for p in wanted) and time.monotonic() < deadline:
                    time.sleep(0.1)
                shutil.copytree(index, synced)
            stop_daemon(process, state, env)

            state = root / f"restart-{run}"
            state.mkdir()
            shutil.copytree(synced, state / "index")
            argv = [sys.executable, "-m", "hoodyd", "serve", "--state-dir", str(state)]
            argv += ["--socket", str(state / "hoodyd.sock")]
            elapsed, cpu, process = time_start(
                argv, state / "hoodyd.sock", b"/api/v1/daemon/health", env
            )
            figures["restart"].append((elapsed, cpu))
            stop_daemon(process, state, env)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    def median(kind: str, field: int) -> float:
        return statistics.median(sample[field] for sample in figures[kind])

    print(f"runs: {args.runs} each; medians; source: {args.source or 'this tree'}")
    print(
        f"{'start':<24}{'to first 200':>14}{'CPU by then':>13}{'wall ratio':>12}{'CPU ratio':>11}"
    )
    for kind, label in (
        ("hello", "aiohttp hello-world"),
        ("restart", "hoodyd, restart"),
        ("first", "hoodyd, first start"),
    ):
        wall, cpu = median(kind, 0), median(kind, 1)
        print(
            f"{label:<24}{wall * 1000:>11.0f} ms{cpu * 1000:>10.0f} ms"
            f"{wall / median('hello', 0):>11.2f}x{cpu / median('hello', 1):>10.2f}x"
        )


if __name__ == "__main__":
    main()
