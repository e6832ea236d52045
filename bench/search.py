"""App search benchmark: `GET /api/v1/run/search` over the Unix socket against
`apt-cache search --names-only` on the same queries, in the same run.

Index: this machine's real apt lists, 120k generated records in the JSON format of
`nix search nixpkgs ^ --json`, and PATH plus desktop entries. 200 queries (exact, prefix,
fuzzy, misspelt) are sent one after another on a keep-alive connection; the table shows
p50/p99 for both, the ratio, the daemon's start-up time with the index cached, and its RSS.

    .venv/bin/python bench/search.py [--nix-records N] [--queries N] [--apt-cache-queries N]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

from hoodyd.programs.embedded import stop_embedded

ROOT = Path(__file__).resolve().parent.parent
SYLLABLES = (
    "ka", "lo", "mi", "ne", "ra", "to", "vi", "zu", "bar", "cor", "den", "fil", "gra", "hex",
    "lux", "mon", "nix", "pol", "qua", "sen", "tri", "ulm", "vex", "wok", "xen", "yar", "zel",
)  # fmt: skip
PREFIXES = ("", "", "", "python311Packages.", "haskellPackages.", "nodePackages.", "perlPackages.")
SUFFIXES = ("", "", "", "-cli", "-gtk", "-utils", "-server", "2", "-qt")


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=60)
        self.unix_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.unix_path)


def request(conn: UnixHTTPConnection, method: str, path: str, body: object = None) -> object:
    payload = json.dumps(body).encode() if body is not None else None
    conn.request(method, path, body=payload, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    data = response.read()
    if response.status >= 400:
        raise RuntimeError(f"{method} {path}: {response.status} {data[:300]!r}")
    return json.loads(data) if data else None


def generate_nix(count: int, seed: int = 7) -> dict[str, dict[str, str]]:
    """`nix search` JSON: `legacyPackages.x86_64-linux.ATTR: {pname, version, description}`."""
    rng = random.Random(seed)
    out: dict[str, dict[str, str]] = {}
    while len(out) < count:
        pname = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))) + rng.choice(
            SUFFIXES
        )
        attr = rng.choice(PREFIXES) + pname
        key = f"legacyPackages.x86_64-linux.{attr}"
        if key in out:
            continue
        out[key] = {
            "description": f"Generated package {pname} for the search benchmark",
            "pname": pname,
            "version": f"{rng.randint(0, 9)}.{rng.randint(0, 30)}.{rng.randint(0, 99)}",
        }
    return out


def apt_names() -> list[str]:
    done = subprocess.run(["apt-cache", "pkgnames"], capture_output=True, text=True, check=True)
    return sorted(done.stdout.split())


def make_queries(
    apt: list[str], nix: list[str], count: int, seed: int = 11
) -> list[tuple[str, str]]:
    """A quarter each: exact names, prefixes, fuzzy (a letter dropped), misspelt (swapped)."""
    rng = random.Random(seed)
    pool = [n for n in apt if 4 <= len(n) <= 20] + [n for n in nix if 4 <= len(n) <= 20]
    queries: list[tuple[str, str]] = []
    kinds = ("exact", "prefix", "fuzzy", "misspelt")
    for i in range(count):
        kind = kinds[i % 4]
        name = rng.choice(pool)
        if kind == "prefix":
            name = name[: max(3, len(name) * 2 // 3)]
        elif kind == "fuzzy":
            cut = rng.randrange(1, len(name))
            name = name[:cut] + name[cut + 1 :]
        elif kind == "misspelt":
            at = rng.randrange(1, len(name) - 1)
            name = name[:at] + name[at + 1] + name[at] + name[at + 2 :]
        queries.append((kind, name))
    return queries


def start_daemon(state: Path, sock: Path, log: Path) -> tuple[subprocess.Popen[bytes], float]:
    """Start `hoodyd serve`; the time until the socket answers a search."""
    started = time.perf_counter()
    handle = log.open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "hoodyd", "serve", "--state-dir", str(state), "--socket", str(sock)],
        stdout=handle,
        stderr=subprocess.STDOUT,
        env={**os.environ, "HOODYD_LOG_FORMAT": "json"},
        cwd=ROOT,
    )
    handle.close()
    while not sock.exists():
        if process.poll() is not None:
            raise RuntimeError(f"hoodyd exited:\n{log.read_text()[-3000:]}")
        time.sleep(0.005)
    conn = UnixHTTPConnection(str(sock))
    request(conn, "GET", "/api/v1/run/search?app=firefox&limit=1")
    conn.close()
    return process, time.perf_counter() - started


def stop_daemon(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nix-records", type=int, default=120_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--apt-cache-queries", type=int, default=200, help="0 skips apt-cache")
    parser.add_argument("--keep", action="store_true", help="keep the state dir")
    args = parser.parse_args()
    if shutil.which("apt-cache") is None:
        print("apt-cache not found: this benchmark needs a Debian-family machine", file=sys.stderr)
        return 2

    work = Path(tempfile.mkdtemp(prefix="hd-bench-", dir="/tmp"))
    state, sock, log = work / "state", work / "hoodyd.sock", work / "daemon.log"
    nix_file = work / "nix-search.json"
    nix = generate_nix(args.nix_records)
    nix_file.write_text(json.dumps(nix))
    config = {
        "version": 1,
        "sources": [
            {"source_id": "system-path", "enabled": True, "priority": 60, "provider": "system",
             "source_type": "system-path"},
            {"source_id": "apt", "enabled": True, "priority": 50, "provider": "apt",
             "source_type": "apt"},
            {"source_id": "nixpkgs", "enabled": True, "priority": 40, "provider": "nix",
             "source_type": "nix-pkgs", "config": {"file": str(nix_file)}},
        ],
        "profiles": [],
    }  # fmt: skip
    (state / "run").mkdir(parents=True)
    (state / "run" / "config.json").write_text(json.dumps(config))

    process = None
    try:
        # first start: the daemon syncs every source in the background; wait for all of them
        process, _ = start_daemon(state, sock, log)
        conn = UnixHTTPConnection(str(sock))
        job = request(conn, "POST", "/api/v1/run/sources/sync")
        assert isinstance(job, dict)
        synced = time.perf_counter()
        while True:
            job = request(
                conn, "GET", f"/api/v1/run/jobs/{job['job_id']}?wait=done&timeout_ms=60000"
            )
            assert isinstance(job, dict)
            if job["status"] in ("done", "error"):
                break
        sync_s = time.perf_counter() - synced
        counts = {}
        for source_id in ("system-path", "apt", "nixpkgs"):
            diag = request(conn, "GET", f"/api/v1/run/sources/{source_id}/diagnostics")
            assert isinstance(diag, dict)
            counts[source_id] = diag["provider_details"]["record_count"]
        conn.close()
        stop_daemon(process)

        # second start: everything comes from STATE/index
        process, startup_s = start_daemon(state, sock, log)
        load_ms = next(
            json.loads(line)["duration_ms"]
            for line in reversed(log.read_text().splitlines())
            if '"run_indexes_loaded"' in line
        )
        queries = make_queries(apt_names(), [v["pname"] for v in nix.values()], args.queries)
        conn = UnixHTTPConnection(str(sock))
        for _, q in queries[:20]:  # warm the connection and the code paths
            request(conn, "GET", "/api/v1/run/search?" + urlencode({"app": q, "limit": 25}))
        latencies: dict[str, list[float]] = {}
        found = 0
        for kind, q in queries:
            path = "/api/v1/run/search?" + urlencode({"app": q, "limit": 25})
            t0 = time.perf_counter()
            body = request(conn, "GET", path)
            latencies.setdefault(kind, []).append((time.perf_counter() - t0) * 1000)
            assert isinstance(body, dict)
            found += bool(body["candidates"])
        floor: list[float] = []  # the same connection's cost for a tiny run-area answer
        for _ in range(100):
            t0 = time.perf_counter()
            request(conn, "GET", "/api/v1/run/sources/apt/diagnostics")
            floor.append((time.perf_counter() - t0) * 1000)
        conn.close()
        rss = rss_mb(process.pid)

        apt_ms: list[float] = []
        for _, q in queries[: args.apt_cache_queries]:
            t0 = time.perf_counter()
            subprocess.run(
                ["apt-cache", "search", "--names-only", re.escape(q)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False,
            )  # fmt: skip
            apt_ms.append((time.perf_counter() - t0) * 1000)
    finally:
        if process is not None and process.poll() is None:
            stop_daemon(process)
        stop_embedded(state)  # it outlives hoodyd by design
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    every = [v for values in latencies.values() for v in values]
    p50, p99 = statistics.median(every), percentile(every, 0.99)
    print(
        f"index: apt {counts['apt']}, nix {counts['nixpkgs']}, PATH+desktop"
        f" {counts['system-path']} = {sum(counts.values())} records (first sync {sync_s:.1f} s)"
    )
    print(f"queries: {len(every)} ({', '.join(f'{k} {len(v)}' for k, v in latencies.items())}),"
          f" {found} with candidates")  # fmt: skip
    print()
    print(f"{'metric':<36}{'value':>12}{'goal':>12}")
    rows = [
        ("hoodyd search p50 (ms)", p50, "<= 3"),
        ("hoodyd search p99 (ms)", p99, "<= 15"),
    ]
    for kind, values in latencies.items():
        rows.append(
            (
                f"  {kind} p50 / p99 (ms)",
                f"{statistics.median(values):.2f} / {percentile(values, 0.99):.2f}",
                "",
            )
        )
    rows.append(("  floor: GET diagnostics p50 (ms)", statistics.median(floor), ""))
    if apt_ms:
        apt_p50 = statistics.median(apt_ms)
        rows += [
            (f"apt-cache search p50 (ms, {len(apt_ms)} q)", apt_p50, ""),
            (f"apt-cache search p99 (ms, {len(apt_ms)} q)", percentile(apt_ms, 0.99), ""),
            ("ratio apt-cache p50 / hoodyd p50", apt_p50 / p50, ">= 100"),
        ]
    rows += [
        ("start-up, index cached (s)", startup_s, "<= 1.5"),
        ("  of which index load (ms)", load_ms, ""),
        ("RSS after the queries (MB)", rss, "<= 200"),
    ]
    for label, value, goal in rows:
        shown = f"{value:.2f}" if isinstance(value, float) else str(value)
        print(f"{label:<36}{shown:>12}{goal:>12}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
