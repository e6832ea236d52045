"""App search relevance: does the top candidate run what the query asked for?

The run area's own search (an AppService over this machine's real sources, as a first start
configures them: PATH and desktop entries, apt where apt is, nix where nix is) answers
queries of four kinds, each with its expected answer:

- **installed**: exact names of programs sampled from PATH; right when the candidate's
  planned argv[0] is that program (the same file `which NAME` finds);
- **package**: apt package names that are applications (no libraries, docs, -dev), installed
  or not; right when the candidate is that package, or runs the program of that name;
- **misspelt**: installed program names with two letters swapped; right as for installed;
- **title**: what a user calls an app ("text editor"), from this machine's desktop entries
  and a few well-known programs; right when it runs one of the expected programs.

It prints precision@1 and MRR (over the top 10) per kind and overall, and the same figures
for the reference measured in the same run: `apt-cache search --names-only` on the same
queries (its first line as its top answer, right when that package ships the program).

    .venv/bin/python bench/relevance.py [--installed N] [--packages N] [--misspelt N]
                                        [--no-reference]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hoodyd.apps.service import AppService
from hoodyd.config import RunConfig
from hoodyd.schemas.run import Candidate, Selector

LIMIT = 10
AUX = re.compile(r"^lib|-(dev|doc|dbg|dbgsym|data|common|l10n.*|perl|java)$|^fonts-|^python3?-")
# what users call an app, and the programs that answer it (any one is right); only those
# whose program this machine has are asked
TITLES = {
    "text editor": {"vim", "vim.basic", "nano", "gedit", "mousepad", "kate", "code"},
    "vim": {"vim", "vim.basic"},
    "vi improved": {"vim", "vim.basic"},
    "python": {"python3", "python", "python3.11"},
    "python3": {"python3"},
    "git": {"git"},
    "curl": {"curl"},
    "ssh": {"ssh"},
    "web browser": {"firefox", "firefox-esr", "chromium", "google-chrome"},
    "top": {"top"},
    "process viewer": {"top", "htop", "btop"},
}


@dataclass
class Query:
    kind: str
    text: str
    # is this candidate a right answer? (wire candidate -> bool)
    right: Callable[[Candidate], bool]
    # is this apt package a right answer? (for the reference)
    right_package: Callable[[str], bool]


def path_programs(environ: dict[str, str]) -> dict[str, str]:
    """name -> real path of the first executable of that name on PATH."""
    found: dict[str, str] = {}
    for directory in environ.get("PATH", "").split(":"):
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            continue
        for name in names:
            full = os.path.join(directory, name)
            if name not in found and os.path.isfile(full) and os.access(full, os.X_OK):
                found[name] = os.path.realpath(full)
    return found


def file_owners() -> dict[str, set[str]]:
    """real path -> the dpkg packages whose file lists hold it (the reference's truth)."""
    owners: dict[str, set[str]] = {}
    info = Path("/var/lib/dpkg/info")
    for listing in info.glob("*.list"):
        package = listing.stem.split(":", 1)[0]
        for line in listing.read_text(errors="replace").splitlines():
            if "/bin/" in line or "/sbin/" in line:
                owners.setdefault(os.path.realpath(line), set()).add(package)
                owners.setdefault(line, set()).add(package)
    return owners


def runs(candidate: Candidate, programs: dict[str, str], environ: dict[str, str]) -> str | None:
    """The real path of the program a candidate's plan starts, when it is on this machine."""
    plan = candidate.execution_plan
    if plan is None or not plan.argv:
        return None
    first = plan.argv[0]
    if "/" in first:
        return os.path.realpath(first) if os.path.exists(first) else None
    found = shutil.which(first, path=environ.get("PATH"))
    return os.path.realpath(found) if found else None


def make_queries(
    args: argparse.Namespace,
    programs: dict[str, str],
    apt_names: list[str],
    owners: dict[str, set[str]],
    environ: dict[str, str],
) -> list[Query]:
    rng = random.Random(args.seed)
    queries: list[Query] = []

    def runs_program(target: str) -> Callable[[Candidate], bool]:
        return lambda c: runs(c, programs, environ) == target

    def owns(target: str) -> Callable[[str], bool]:
        return lambda package: package in owners.get(target, set())

    # names a person types: letters first, no version-only or dotted helper names
    plain = sorted(
        n for n in programs if re.fullmatch(r"[a-z][a-z0-9+-]{1,30}", n) and not n.endswith("-")
    )
    for name in rng.sample(plain, min(args.installed, len(plain))):
        queries.append(Query("installed", name, runs_program(programs[name]), owns(programs[name])))
    apps = [n for n in apt_names if not AUX.search(n) and 3 <= len(n) <= 24]
    for name in rng.sample(apps, min(args.packages, len(apps))):
        target = programs.get(name)

        def right(c: Candidate, name: str = name, target: str | None = target) -> bool:
            if c.candidate_id == f"apt:{name}":
                return True
            return target is not None and runs(c, programs, environ) == target

        queries.append(Query("package", name, right, name.__eq__))
    long_names = [n for n in plain if len(n) >= 6 and n.isalpha()]
    for name in rng.sample(long_names, min(args.misspelt, len(long_names))):
        at = rng.randrange(1, len(name) - 2)
        typo = name[:at] + name[at + 1] + name[at] + name[at + 2 :]
        if typo == name:
            continue
        queries.append(Query("misspelt", typo, runs_program(programs[name]), owns(programs[name])))
    for text, wanted in TITLES.items():
        targets = {programs[w] for w in wanted if w in programs}
        if not targets:
            continue
        queries.append(
            Query(
                "title",
                text,
                lambda c, targets=targets: runs(c, programs, environ) in targets,  # type: ignore[misc]
                lambda p, targets=targets: any(p in owners.get(t, set()) for t in targets),  # type: ignore[misc]
            )
        )
    return queries


def reciprocal_rank(flags: list[bool]) -> float:
    for position, right in enumerate(flags[:LIMIT], 1):
        if right:
            return 1.0 / position
    return 0.0


def apt_cache(query: str) -> list[str]:
    done = subprocess.run(
        ["apt-cache", "search", "--names-only", re.escape(query)],
        capture_output=True,
        text=True,
        check=False,
    )
    return [line.split(" - ", 1)[0] for line in done.stdout.splitlines()]


async def open_service(state: Path, environ: dict[str, str]) -> AppService:
    service = AppService(state, RunConfig(auto_sync=False), environ=environ)
    await service.start()
    job = service.sync_all()
    done = await service.job(job.job_id, wait=True, timeout_ms=300_000)
    if done.status != "done":
        raise RuntimeError(f"sync failed: {done}")
    return service


def table(title: str, results: dict[str, list[tuple[bool, float]]]) -> dict[str, float]:
    print(title)
    print(f"{'kind':<12}{'queries':>9}{'P@1':>9}{'MRR':>9}")
    every = [r for rows in results.values() for r in rows]
    figures: dict[str, float] = {}
    for kind, rows in [*results.items(), ("overall", every)]:
        p1 = sum(1 for top, _ in rows if top) / len(rows)
        mrr = sum(rr for _, rr in rows) / len(rows)
        figures[kind] = p1
        print(f"{kind:<12}{len(rows):>9}{p1:>9.3f}{mrr:>9.3f}")
    return figures


async def run(args: argparse.Namespace) -> int:
    environ = dict(os.environ)
    work = Path(tempfile.mkdtemp(prefix="hd-relevance-", dir="/tmp"))
    started = time.perf_counter()
    service = await open_service(work / "state", environ)
    sync_s = time.perf_counter() - started
    try:
        sources = [
            f"{s.source_id} ({'on' if s.enabled else 'off'})" for s in service.list_sources()
        ]
        programs = path_programs(environ)
        apt_names = (
            subprocess.run(["apt-cache", "pkgnames"], capture_output=True, text=True).stdout.split()
            if shutil.which("apt-cache")
            else []
        )
        owners = file_owners()
        queries = make_queries(args, programs, sorted(apt_names), owners, environ)
        ours: dict[str, list[tuple[bool, float]]] = {}
        misses: list[str] = []
        for query in queries:
            found = service.search(Selector(app=query.text, limit=LIMIT))
            flags = [query.right(c) for c in found.candidates]
            top = bool(flags) and flags[0]
            ours.setdefault(query.kind, []).append((top, reciprocal_rank(flags)))
            if not top:
                first = found.candidates[0] if found.candidates else None
                shown = (
                    f"{first.candidate_id} -> {(first.execution_plan.argv or [])[:1]}"
                    if first is not None and first.execution_plan is not None
                    else "nothing"
                )
                misses.append(f"  {query.kind:<10} {query.text!r}: top was {shown}")
    finally:
        await service.close()
        shutil.rmtree(work, ignore_errors=True)
    print(f"sources: {', '.join(sources)}; synced in {sync_s:.1f} s; {len(queries)} queries")
    print()
    figures = table("hoodyd search", ours)
    print(f"goals: installed P@1 >= 0.98 ({figures['installed']:.3f}), "
          f"overall P@1 >= 0.90 ({figures['overall']:.3f})")  # fmt: skip
    if args.show_misses and misses:
        print("\nmisses:")
        print("\n".join(misses))
    if args.reference and apt_names:
        reference: dict[str, list[tuple[bool, float]]] = {}
        for query in queries:
            flags = [query.right_package(p) for p in apt_cache(query.text)]
            reference.setdefault(query.kind, []).append(
                (bool(flags) and flags[0], reciprocal_rank(flags))
            )
        print()
        theirs = table("reference: apt-cache search --names-only (first line)", reference)
        if theirs["overall"]:
            ratio = figures["overall"] / theirs["overall"]
            print(f"ratio overall P@1 hoodyd / apt-cache: {ratio:.2f}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--installed", type=int, default=100, help="exact names from PATH")
    parser.add_argument("--packages", type=int, default=40, help="apt package names")
    parser.add_argument("--misspelt", type=int, default=30, help="misspelt program names")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--show-misses", action="store_true")
    parser.add_argument(
        "--no-reference", dest="reference", action="store_false", help="skip apt-cache"
    )
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
