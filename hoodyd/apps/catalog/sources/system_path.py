"""`system-path`: executables on PATH and XDG desktop applications.

Each executable is one record (`system-path:/usr/bin/firefox`), the first of a name on PATH
winning as in a shell. A desktop entry whose Exec program resolves to exactly one PATH
executable enriches that record (title, keywords, categories, gui/cli, argv); other entries
become records of their own keyed by the desktop file's path.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import structlog
from msgspec import Struct

from hoodyd.apps.catalog.index import words_of
from hoodyd.apps.catalog.records import AppRecord, LaunchPlan, SyncContext, SyncResult
from hoodyd.apps.catalog.sources.base import Source
from hoodyd.apps.catalog.sources.desktop_entry import (
    DesktopEntry,
    DesktopEntryError,
    parse_desktop_file,
    parse_exec,
)
from hoodyd.schemas.run import SourceKind

log = structlog.get_logger()


def application_dirs(environ: Mapping[str, str]) -> list[Path]:
    """`$XDG_DATA_HOME/applications` then each `$XDG_DATA_DIRS/applications`, in precedence
    order (XDG Base Directory Specification defaults when unset)."""
    home = environ.get("XDG_DATA_HOME") or str(Path(environ.get("HOME", "/root")) / ".local/share")
    data_dirs = environ.get("XDG_DATA_DIRS") or "/usr/local/share:/usr/share"
    return [Path(home) / "applications"] + [
        Path(item) / "applications" for item in data_dirs.split(":") if item
    ]


class SystemPathSettings(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Where to look: the PATH to scan for executables (unset or empty: the daemon's own
    `$PATH`) and the directories of desktop entries, in precedence order (unset: the XDG
    `applications` directories; empty: none)."""

    path: str | None = None
    applications_dirs: tuple[str, ...] | None = None


class SystemPathSource(Source[SystemPathSettings]):
    source_type = "system-path"
    provider: SourceKind = "system"
    trusted = True
    settings_type = SystemPathSettings

    def detect(self, environ: Mapping[str, str]) -> str | None:
        return None  # every box has a PATH

    def sync(self, ctx: SyncContext[SystemPathSettings]) -> SyncResult:
        path_value = ctx.settings.path or ctx.environ.get("PATH", os.defpath)
        dirs = ctx.settings.applications_dirs
        app_dirs = [Path(d) for d in dirs] if dirs is not None else application_dirs(ctx.environ)
        executables = scan_path(path_value)
        ctx.check_cancelled()
        ctx.report(executables=len(executables))
        entries, skipped = scan_desktop_entries(app_dirs, path_value)
        ctx.check_cancelled()
        records = merge(executables, entries, path_value)
        return SyncResult(
            records=records,
            details={
                "path_dirs": [d for d in path_value.split(":") if d],
                "applications_dirs": [str(d) for d in app_dirs],
                "executables": len(executables),
                "desktop_entries": len(entries),
                "desktop_entries_skipped": skipped,
            },
        )

    def launch_plan(
        self, record: AppRecord, settings: SystemPathSettings, details: Mapping[str, Any]
    ) -> LaunchPlan:
        notes = []
        desktop = record.extra_value("desktop_file")
        if desktop:
            notes.append(f"argv from Exec of {desktop}")
        return LaunchPlan(argv=list(record.argv), notes=notes)


def scan_path(path_value: str) -> dict[str, Path]:
    """name -> executable path, first occurrence on PATH wins."""
    found: dict[str, Path] = {}
    for directory in path_value.split(":"):
        if not directory:
            continue
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            continue
        for name in names:
            if name in found:
                continue
            full = Path(directory) / name
            try:
                mode = full.stat().st_mode
            except OSError:
                continue  # dangling symlink
            if stat.S_ISREG(mode) and os.access(full, os.X_OK):
                found[name] = full
    return found


def scan_desktop_entries(
    app_dirs: list[Path], path_value: str
) -> tuple[list[DesktopEntry], dict[str, str]]:
    """Visible Application entries, earlier directories shadowing later ones by desktop id."""
    seen: dict[str, DesktopEntry | None] = {}
    skipped: dict[str, str] = {}
    for base in app_dirs:
        if not base.is_dir():
            continue
        for file in sorted(base.rglob("*.desktop")):
            desktop_id = str(file.relative_to(base)).replace("/", "-")
            if desktop_id in seen:
                continue
            try:
                entry = parse_desktop_file(file, desktop_id)
            except (OSError, DesktopEntryError) as exc:
                skipped[str(file)] = str(exc)
                seen[desktop_id] = None
                continue
            reason = _hidden_reason(entry, path_value)
            if reason:
                skipped[str(file)] = reason
                seen[desktop_id] = None  # a hidden user entry also hides the system one
                continue
            seen[desktop_id] = entry
    return [entry for entry in seen.values() if entry is not None], skipped


def _hidden_reason(entry: DesktopEntry, path_value: str) -> str | None:
    if entry.values.get("Type", "Application") != "Application":
        return "not an Application"
    if entry.boolean("Hidden"):
        return "Hidden=true"
    if entry.boolean("NoDisplay"):
        return "NoDisplay=true"
    if not entry.values.get("Exec"):
        return "no Exec"
    try_exec = entry.string("TryExec")
    if try_exec and _resolve(try_exec, path_value) is None:
        return f"TryExec {try_exec} not found"
    return None


def _resolve(program: str, path_value: str) -> Path | None:
    if "/" in program:
        return Path(program) if os.access(program, os.X_OK) else None
    found = shutil.which(program, path=path_value)
    return Path(found) if found else None


def _program_of(argv: list[str]) -> str:
    """The program an Exec runs, looking through `env [-flags] [VAR=value]... program`."""
    if Path(argv[0]).name != "env":
        return argv[0]
    for arg in argv[1:]:
        if not arg.startswith("-") and "=" not in arg:
            return arg
    return ""


def _names_the_program(entry: DesktopEntry, program: str) -> bool:
    """Whether the entry is this program's own (code.desktop, org.gnome.Nautilus.desktop →
    nautilus, Name=Firefox → firefox), not a launcher that runs something else."""
    program = program.lower()
    stem = entry.desktop_id.removesuffix(".desktop").lower()
    return program in (
        stem,
        stem.rsplit(".", 1)[-1],
        stem.rsplit("-", 1)[0],
    ) or program in words_of(entry.string("Name"))


def merge(
    executables: dict[str, Path], entries: list[DesktopEntry], path_value: str
) -> list[AppRecord]:
    by_path = {str(path): name for name, path in executables.items()}
    parsed: list[tuple[DesktopEntry, list[str], str | None]] = []
    claims: dict[str, int] = {}
    for entry in entries:
        try:
            argv = parse_exec(
                entry.values["Exec"],
                name=entry.string("Name"),
                icon=entry.string("Icon"),
                location=str(entry.path),
            )
        except DesktopEntryError:
            continue
        program = _program_of(argv)
        resolved = _resolve(program, path_value) if program else None
        exe_key = str(resolved) if resolved is not None and str(resolved) in by_path else None
        if exe_key and not _names_the_program(entry, resolved.name if resolved else ""):
            # a launcher (flatpak run, a wrapper script) must not take over its executable
            exe_key = None
        if exe_key:
            claims[exe_key] = claims.get(exe_key, 0) + 1
        parsed.append((entry, argv, exe_key))

    records: dict[str, AppRecord] = {}
    for name, path in executables.items():
        records[str(path)] = AppRecord(
            ident=str(path),
            name=name,
            title=name,
            description=f"executable in {path.parent}",
            binaries=(name,),
            installed=True,
            argv=(str(path),),
        )
    for entry, argv, exe_key in parsed:
        merged = exe_key is not None and claims[exe_key] == 1
        ident = exe_key if merged and exe_key else str(entry.path)
        binary = Path(exe_key).name if exe_key else Path(argv[0]).name
        title = entry.string("Name") or binary
        generic = entry.string("GenericName")
        keywords = [generic, *entry.strings("Keywords"), entry.desktop_id.removesuffix(".desktop")]
        description = entry.string("Comment") or generic or title
        terminal = entry.boolean("Terminal")
        records[ident] = AppRecord(
            ident=ident,
            name=binary if merged else entry.desktop_id.removesuffix(".desktop"),
            title=title,
            description=description,
            kind="cli" if terminal else "gui",
            binaries=(binary,),
            tags=tuple(sorted({c.lower() for c in entry.strings("Categories")})),
            keywords=tuple(k for k in keywords if k),
            installed=True,
            argv=tuple(argv),
            terminal=terminal,
            extra=(("desktop_file", str(entry.path)), ("desktop_id", entry.desktop_id)),
        )
    return [records[key] for key in sorted(records)]
