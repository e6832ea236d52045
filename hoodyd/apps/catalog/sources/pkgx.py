"""`pkgx`: every program of the pkgx pantry, from pkgx's own SQLite cache `pantry.db`.

pkgx (v2) keeps the pantry's `provides(project, program)` table in
`$XDG_CACHE_HOME/pkgx/pantry.db` (next to `PKGX_PANTRY_DIR` when that is set); sync reads
it read-only. A program is installed when a version of its project under `~/.pkgx`
(`PKGX_DIR`) has it in `bin/` or `sbin/`. Launch is `pkgx +PROJECT PROGRAM`: pkgx fetches
the project (checking its bottle's sha256 itself) and runs the program.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from msgspec import Struct

from hoodyd.apps.catalog.records import (
    AppRecord,
    LaunchPlan,
    SourceUnavailable,
    SyncContext,
    SyncResult,
)
from hoodyd.apps.catalog.sources.base import Source
from hoodyd.schemas.run import Requirement, SourceKind


def default_db(environ: Mapping[str, str]) -> Path:
    pantry_dir = environ.get("PKGX_PANTRY_DIR")
    if pantry_dir:
        return Path(pantry_dir).parent / "pantry.db"
    cache = environ.get("XDG_CACHE_HOME") or os.path.join(environ.get("HOME", "/root"), ".cache")
    return Path(cache) / "pkgx" / "pantry.db"


def default_pkgx_dir(environ: Mapping[str, str]) -> Path:
    return Path(environ.get("PKGX_DIR") or os.path.join(environ.get("HOME", "/root"), ".pkgx"))


def read_provides(db: Path) -> list[tuple[str, str]]:
    if not db.is_file():
        raise SourceUnavailable(f"{db}: no such file (run `pkgx --sync` once)")
    try:
        # read-only: pkgx rewrites this file on its own syncs
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            rows = conn.execute(
                "SELECT DISTINCT project, program FROM provides ORDER BY project, program"
            ).fetchall()
    except sqlite3.Error as exc:
        raise SourceUnavailable(f"{db}: not a pkgx pantry database: {exc}") from exc
    return [(str(project), str(program)) for project, program in rows if project and program]


def installed_programs(pkgx_dir: Path, project: str) -> set[str]:
    found: set[str] = set()
    try:
        versions = list((pkgx_dir / project).iterdir())
    except OSError:
        return found
    for version in versions:
        if not version.name.startswith("v") or not version.is_dir():
            continue
        for sub in ("bin", "sbin"):
            try:
                found.update(os.listdir(version / sub))
            except OSError:
                continue
    return found


def homepage(project: str) -> str:
    # projects are named after where they live: github.com/junegunn/fzf, crates.io/ripgrep
    host = project.split("/", 1)[0]
    return f"https://{project}" if "." in host else ""


class PkgxSettings(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Where pkgx keeps its state: the pantry database to read (unset: pkgx's own cache)
    and the directory of installed projects (unset: `$PKGX_DIR` or `~/.pkgx`)."""

    db: str | None = None
    pkgx_dir: str | None = None


class PkgxSource(Source[PkgxSettings]):
    source_type = "pkgx"
    provider: SourceKind = "pkgx"
    trusted = False
    settings_type = PkgxSettings

    def detect(self, environ: Mapping[str, str]) -> str | None:
        if default_db(environ).is_file():
            return None
        return f"{default_db(environ)} not found"

    def sync(self, ctx: SyncContext[PkgxSettings]) -> SyncResult:
        db = Path(ctx.settings.db or default_db(ctx.environ))
        pkgx_dir = Path(ctx.settings.pkgx_dir or default_pkgx_dir(ctx.environ))
        rows = read_provides(db)
        ctx.check_cancelled()
        installed_cache: dict[str, set[str]] = {}
        records: list[AppRecord] = []
        for project, program in rows:
            if project not in installed_cache:
                installed_cache[project] = installed_programs(pkgx_dir, project)
            short = project.rstrip("/").rsplit("/", 1)[-1]
            records.append(
                AppRecord(
                    ident=f"{project}:{program}",
                    name=program,
                    title=program,
                    description=f"{program} from the pkgx project {project}",
                    binaries=(program,),
                    keywords=tuple(k for k in (short, project) if k != program),
                    homepage=homepage(project),
                    installed=program in installed_cache[project],
                    publisher=project.split("/", 1)[0],
                    extra=(("project", project),),
                )
            )
        path_value = ctx.environ.get("PATH", os.defpath)
        return SyncResult(
            records=records,
            details={
                "db": str(db),
                "pkgx_dir": str(pkgx_dir),
                "projects": len(installed_cache),
                "programs": len(records),
                "pkgx_cli": shutil.which("pkgx", path=path_value) is not None,
            },
        )

    def launch_plan(
        self, record: AppRecord, settings: PkgxSettings, details: Mapping[str, Any]
    ) -> LaunchPlan:
        project = record.extra_value("project") or record.ident.rsplit(":", 1)[0]
        requirements = []
        if not details.get("pkgx_cli", False):
            requirements.append(
                Requirement(
                    kind="command",
                    name="pkgx",
                    message="pkgx is not installed on this machine (see https://pkgx.sh)",
                )
            )
        return LaunchPlan(
            argv=["pkgx", f"+{project}", record.name],
            requirements=requirements,
            notes=[f"pkgx project {project}; pkgx checks its bottle's sha256 when it fetches"],
        )
