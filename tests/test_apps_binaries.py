"""The right program for a query: each (package, executable) pair is found, a candidate runs
the executable that matched or its package's own program (never another of its binaries),
GUI or CLI as the package's files say, and installed programs rank first."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

from hoodyd.apps.catalog.index import Match
from hoodyd.apps.catalog.records import AppRecord
from hoodyd.apps.search.ranking import RankedSource, Scored, rank
from hoodyd.apps.service import AppService
from hoodyd.schemas.run import Selector
from tests.data.apps.world import quiet_settings

PACKAGES = """\
Package: procps
Version: 2:4.0.2-3
Architecture: amd64
Depends: libc6 (>= 2.34), libproc2-0 (>= 2:4.0.2)
Description: /proc file system utilities
Section: admin

Package: htop
Version: 3.2.2-2
Architecture: amd64
Depends: libc6 (>= 2.34), libncursesw6 (>= 6), libnl-3-200
Description: interactive processes viewer
Section: utils

Package: ffmpeg
Version: 7:5.1.6-0+deb12u1
Architecture: amd64
Depends: libavcodec59, libsdl2-2.0-0 (>= 2.0.12), libx11-6, libc6 (>= 2.34)
Description: Tools for transcoding, streaming and playing of multimedia files
Section: video

Package: mousepad
Version: 0.5.10-1
Architecture: amd64
Depends: libc6 (>= 2.34), libglib2.0-0 (>= 2.56)
Description: simple Xfce oriented text editor
Section: editors

Package: vim
Version: 2:9.0.1378-2
Architecture: amd64
Depends: vim-common, vim-runtime, libc6 (>= 2.34)
Description: Vi IMproved - enhanced vi editor
Section: editors

"""

STATUS = """\
Package: procps
Status: install ok installed
Architecture: amd64
Version: 2:4.0.2-3
Description: /proc file system utilities

Package: mousepad
Status: install ok installed
Architecture: amd64
Version: 0.5.10-1
Description: simple Xfce oriented text editor

Package: vim
Status: install ok installed
Architecture: amd64
Version: 2:9.0.1378-2
Description: Vi IMproved - enhanced vi editor

"""

LISTS = {
    # the first file in a bin directory is `kill`: running it for `top` was the old bug
    "procps": ["/bin/kill", "/usr/bin/free", "/usr/bin/pkill", "/usr/bin/ps", "/usr/bin/top"],
    "mousepad": ["/usr/bin/mousepad", "/usr/share/applications/org.xfce.mousepad.desktop"],
    "vim": ["/usr/bin/vim.basic", "/usr/share/doc/vim"],
}

# an uninstalled `top` from a source with a higher priority, with the selector's tags and a
# matching version hint: every bonus an uninstalled exact match can get
MANIFEST = {
    "version": 1,
    "apps": [
        {"id": "top", "title": "top", "argv": ["top-from-the-team"], "installed": False,
         "tags": ["monitor", "procs", "cpu"], "version": "9.9", "publisher": "team",
         "channel": "stable", "variant": "full", "repo": "team/top"},
    ],
}  # fmt: skip


async def open_apt_service(root: Path) -> AppService:
    lists = root / "lists" / "example_dists_stable_main_binary-amd64_Packages.gz"
    lists.parent.mkdir(parents=True)
    lists.write_bytes(gzip.compress(PACKAGES.encode()))
    status = root / "dpkg" / "status"
    status.parent.mkdir(parents=True)
    status.write_text(STATUS)
    info = root / "dpkg" / "info"
    info.mkdir()
    for package, files in LISTS.items():
        (info / f"{package}.list").write_text("/.\n/usr\n/usr/bin\n" + "\n".join(files) + "\n")
    manifest = root / "team.json"
    manifest.write_text(json.dumps(MANIFEST))
    config = {
        "version": 1,
        "sources": [
            {"source_id": "apt", "enabled": True, "priority": 50, "provider": "apt",
             "source_type": "apt", "config": {"lists": [str(lists)], "status_file": str(status),
                                               "info_dir": str(info)}},
            {"source_id": "team", "enabled": True, "priority": 100, "provider": "registry",
             "source_type": "trusted-list-file", "config": {"path": str(manifest)}},
        ],
        "profiles": [],
    }  # fmt: skip
    state = root / "state"
    (state / "run").mkdir(parents=True)
    (state / "run" / "config.json").write_text(json.dumps(config))
    service = AppService(state, quiet_settings(), environ=dict(os.environ))
    await service.start()
    job = service.sync_all()
    done = await service.job(job.job_id, wait=True, timeout_ms=60_000)
    assert done.status == "done", done
    return service


def first(service: AppService, app: str, **selector: object):
    found = service.search(Selector(app=app, limit=5, **selector))  # type: ignore[arg-type]
    return found.candidates


async def test_each_executable_of_a_package_runs_itself(short_tmp: Path) -> None:
    """`top` and `kill` find procps and plan its `top` and its `kill`, not its first binary."""
    service = await open_apt_service(short_tmp)
    try:
        for query, program in (
            ("top", "/usr/bin/top"),
            ("kill", "/bin/kill"),
            ("ps", "/usr/bin/ps"),
        ):
            procps = next(c for c in first(service, query) if c.candidate_id == "apt:procps")
            assert procps.execution_plan is not None
            assert procps.execution_plan.argv == [program], query
            assert procps.provenance.match_evidence[0].field == "binary"
    finally:
        await service.close()


async def test_a_near_match_never_runs_an_unrelated_binary(short_tmp: Path) -> None:
    """`htop` puts the htop package first; procps, found through `top`, would run `top`."""
    service = await open_apt_service(short_tmp)
    try:
        candidates = first(service, "htop")
        assert candidates[0].candidate_id == "apt:htop"
        assert candidates[0].execution_plan is not None
        assert candidates[0].execution_plan.argv == ["htop"]
        for candidate in candidates:
            assert candidate.execution_plan is not None
            assert candidate.execution_plan.argv[0] not in ("/bin/kill", "/usr/bin/free")
    finally:
        await service.close()


async def test_a_package_without_its_own_program_names_the_choice(short_tmp: Path) -> None:
    """procps asked for by name has no program of that name: the plan says which to ask for
    (a requirement), and `vim` runs the package's own `vim.basic`."""
    service = await open_apt_service(short_tmp)
    try:
        procps = first(service, "procps")[0]
        assert procps.candidate_id == "apt:procps"
        assert [r.kind for r in procps.requirements] == ["executable"]
        assert "kill" in procps.requirements[0].message
        vim = first(service, "vim")[0]
        assert vim.execution_plan is not None
        assert vim.execution_plan.argv == ["/usr/bin/vim.basic"]
    finally:
        await service.close()


async def test_gui_from_desktop_entries_and_toolkits_not_from_sdl(short_tmp: Path) -> None:
    """ffmpeg (SDL and libx11 for ffplay) is a CLI program; a desktop entry mousepad lists but
    this machine does not have makes no GUI app (the kind comes from an entry's Terminal=,
    tests/test_run_truth.py checks it on this machine's dpkg data)."""
    service = await open_apt_service(short_tmp)
    try:
        assert first(service, "ffmpeg")[0].kind == "cli"
        assert first(service, "mousepad")[0].kind == "cli"
    finally:
        await service.close()


async def test_installed_program_by_exact_name_is_the_top_candidate(short_tmp: Path) -> None:
    """An uninstalled `top` with a higher source priority, matching tags and every hint still
    ranks below the installed `top`."""
    service = await open_apt_service(short_tmp)
    try:
        candidates = first(
            service,
            "top",
            tags=["monitor", "procs", "cpu"],
            version="9.9",
            publisher="team",
            channel="stable",
            variant="full",
            repo="team/top",
        )
        assert [c.candidate_id for c in candidates[:2]] == ["apt:procps", "team:top"]
        assert candidates[0].installed and not candidates[1].installed
    finally:
        await service.close()


def test_equal_scores_put_installed_first() -> None:
    """Two candidates with the same score: the installed one first, whatever their ids."""
    source = RankedSource("s", "apt", "apt", 50, "", False)

    def scored(ident: str, installed: bool) -> Scored:
        record = AppRecord(ident=ident, name=ident, title=ident, installed=installed)
        return Scored(f"s:{ident}", 900.0, record, source, Match(0, "prefix", ident, 0.0), "name")

    ordered = rank([scored("a-uninstalled", False), scored("b-installed", True)])
    assert [s.candidate_id for s in ordered] == ["s:b-installed", "s:a-uninstalled"]
