"""/health on the Unix socket while TCP is flooded with half-open connections, against a real
`hoodyd serve`.

The daemon runs with its open-file limit at 1024 soft and hard (systemd's usual soft limit,
here also the hard one so it cannot be raised: the worst case), TCP on 127.0.0.1. The figure
is the latency of `GET /api/v1/daemon/health` on the Unix socket (a new connection per
request) while N connections that sent part of a request line are held open on TCP; the
reference, measured in the same run, is the same request with no connection held. Also
counted: the connections the daemon kept (the rest it closed at once), and the log lines it
wrote during the flood.

Run: .venv/bin/python bench/connections.py [--connections 1050] [--requests 200]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEALTH = b"GET /api/v1/daemon/health HTTP/1.1\r\nHost: hoodyd\r\nConnection: close\r\n\r\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(state: Path, port: int, nofile: int) -> tuple[subprocess.Popen[bytes], Path, Path]:
    config = state.parent / "hoodyd.toml"
    config.write_text(f'[server]\ntcp = "127.0.0.1:{port}"\n')
    config.chmod(0o600)
    sock, log = state / "hoodyd.sock", state.parent / "daemon.log"
    launcher = ["prlimit", f"--nofile={nofile}:{nofile}", "--"] if shutil.which("prlimit") else []
    command = [sys.executable, "-m", "hoodyd", "serve", "--config", str(config)]
    command += ["--state-dir", str(state), "--socket", str(sock)]
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*launcher, *command],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "HOODYD_LOG_FORMAT": "json"},
        )
    deadline = time.monotonic() + 30
    while not sock.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"hoodyd did not start:\n{log.read_text()}")
        time.sleep(0.05)
    return process, sock, log


def health_ms(path: Path, timeout: float = 10.0) -> float:
    """Milliseconds for one /health on a new Unix connection (`timeout` * 1000 if none)."""
    started = time.perf_counter()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall(HEALTH)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        if not answer.startswith(b"HTTP/1.1 200"):
            return timeout * 1000
    except OSError:
        return timeout * 1000
    return (time.perf_counter() - started) * 1000


def measure(path: Path, requests: int) -> tuple[float, float]:
    times = [health_ms(path) for _ in range(requests)]
    return statistics.median(times), max(times)


def flood(port: int, count: int) -> list[socket.socket]:
    held = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(b"GET /api/v1/daemon/hea")
        held.append(sock)
    return held


def still_open(held: list[socket.socket]) -> int:
    """How many of `held` the daemon kept open (a closed one reads EOF or a reset at once)."""
    count = 0
    for sock in held:
        sock.settimeout(0.01)
        try:
            if sock.recv(1) == b"":
                continue
        except TimeoutError:
            count += 1
        except OSError:
            continue
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=1050)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--nofile", type=int, default=1024)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="hdc-", dir="/tmp"))
    port = free_port()
    process, path, log = start(root / "state", port, args.nofile)
    try:
        measure(path, 20)  # warm-up
        quiet_p50, quiet_max = measure(path, args.requests)
        lines_before = len(log.read_text().splitlines())
        held = flood(port, args.connections)
        flood_p50, flood_max = measure(path, args.requests)
        kept = still_open(held)
        lines = len(log.read_text().splitlines()) - lines_before
        for sock in held:
            sock.close()
    finally:
        process.terminate()
        process.wait(timeout=20)
        subprocess.run(
            [sys.executable, "-m", "hoodyd", "stop-supervisor", "--state-dir", str(root / "state")],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(root, ignore_errors=True)
    print(f"open-file limit {args.nofile}, {args.connections} half-open TCP connections, "
          f"{args.requests} /health requests on the Unix socket")  # fmt: skip
    print(f"{'':24}{'p50 ms':>10}{'max ms':>10}")
    print(f"{'no flood':24}{quiet_p50:>10.2f}{quiet_max:>10.2f}")
    print(f"{'flood':24}{flood_p50:>10.2f}{flood_max:>10.2f}")
    print(
        f"ratio flood/no flood: p50 {flood_p50 / quiet_p50:.2f}x, max {flood_max / quiet_max:.2f}x"
    )
    print(
        f"connections kept open: {kept} of {args.connections}; log lines during the flood: {lines}"
    )
    print(json.dumps({"p50_ms": [quiet_p50, flood_p50], "max_ms": [quiet_max, flood_max]}))


if __name__ == "__main__":
    main()
