"""`apt` (an extension of the compatible API): every Packages list apt knows, plus
installed state from dpkg.

The lists are found with `apt-get indextargets` and read through
`/usr/lib/apt/apt-helper cat-file`, so whatever compression apt keeps them in (lz4, xz, gz,
zstd) works. Installed packages and their versions come from the dpkg status file; their
executables from `/var/lib/dpkg/info/<package>.list`. Launch runs the installed binary, or
plans `apt-get install` as a missing requirement.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import msgspec
from msgspec import Struct

from hoodyd.apps.catalog.records import (
    AppRecord,
    LaunchPlan,
    SourceUnavailable,
    SyncContext,
    SyncResult,
)
from hoodyd.apps.catalog.sources.base import Source
from hoodyd.apps.catalog.sources.desktop_entry import (
    DesktopEntryError,
    parse_desktop_file,
    parse_exec,
)
from hoodyd.apps.catalog.sources.system_path import _program_of, _resolve
from hoodyd.childenv import with_open_file_limit
from hoodyd.schemas.run import RecordKind, Requirement, SourceKind

APT_HELPER = "/usr/lib/apt/apt-helper"
INDEXTARGETS_ARGV = ["apt-get", "indextargets", "--format", "$(FILENAME)", "Created-By: Packages"]
BIN_DIRS = ("/usr/bin/", "/bin/", "/usr/sbin/", "/sbin/", "/usr/games/", "/usr/local/bin/")
_ARCH = {"amd64": "amd64", "arm64": "arm64", "all": "any"}
_GUI_SECTIONS = {"x11", "gnome", "kde", "xfce"}
# a GUI toolkit makes an application with windows; libx11, SDL, GL or wayland alone do not
# (ffmpeg depends on SDL for ffplay, yet `ffmpeg` is a command-line program)
_GUI_LIBS = (
    "libgtk-3-0", "libgtk-4-1", "libgtk2.0-0", "libqt5gui5", "libqt6gui6", "libqt5widgets5",
    "libqt6widgets6", "vlc-plugin-qt",
)  # fmt: skip
DESKTOP_DIR = "/usr/share/applications/"
# sections and suffixes of packages that are not applications
_AUX_SECTIONS = {
    "libs",
    "libdevel",
    "oldlibs",
    "doc",
    "debug",
    "localization",
    "fonts",
    "translations",
}
_AUX_SUFFIXES = ("-dev", "-doc", "-dbg", "-dbgsym", "-data", "-common")
_FIELDS = frozenset(
    {
        "Package",
        "Version",
        "Architecture",
        "Description",
        "Section",
        "Homepage",
        "Depends",
        "Status",
    }
)


class AptSettings(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """What apt and dpkg state to read: the Packages lists (unset: every list
    `apt-get indextargets` names), the dpkg status file (installed packages and versions)
    and dpkg's info directory (each package's `.list` of files, for its executables)."""

    lists: tuple[str, ...] | None = None
    status_file: str = "/var/lib/dpkg/status"
    info_dir: str = "/var/lib/dpkg/info"


class AptSource(Source[AptSettings]):
    source_type = "apt"
    provider: SourceKind = "apt"
    trusted = True
    settings_type = AptSettings

    fix = "apt is the package manager of Debian and Ubuntu; elsewhere leave this source disabled"

    def detect(self, environ: Mapping[str, str]) -> str | None:
        if not os.access(APT_HELPER, os.X_OK):
            return f"{APT_HELPER} not found"
        if shutil.which("apt-get", path=environ.get("PATH", os.defpath)) is None:
            return "apt-get not found on PATH"
        return None

    def sync(self, ctx: SyncContext[AptSettings]) -> SyncResult:
        settings = ctx.settings
        lists = list(settings.lists) if settings.lists is not None else index_targets(ctx)
        status_file = Path(settings.status_file)
        info_dir = Path(settings.info_dir)
        installed = read_status(status_file)
        native = native_arch(ctx)
        packages: dict[str, dict[str, str]] = {}
        read_errors: dict[str, str] = {}
        for list_file in lists:
            try:
                for stanza in parse_stanzas(cat_file(list_file, ctx)):
                    name = stanza.get("Package")
                    if not name:
                        continue
                    known = packages.get(name)
                    # one record per package name: the native (or arch-independent) one wins
                    if known is None or (
                        known.get("Architecture") not in (native, "all")
                        and stanza.get("Architecture") in (native, "all")
                    ):
                        packages[name] = stanza
                    if len(packages) % 5000 == 0:
                        ctx.check_cancelled()
            except SourceUnavailable as exc:
                read_errors[list_file] = str(exc)
            ctx.report(lists_read=len(packages))
        if lists and len(read_errors) == len(lists):
            raise SourceUnavailable(
                "no Packages list could be read: " + "; ".join(read_errors.values())
            )
        for name, stanza in installed.items():
            packages.setdefault(name, stanza)  # installed from a .deb that no list carries
        path_value = ctx.environ.get("PATH", os.defpath)
        records = [
            to_record(name, packages[name], installed.get(name), info_dir, path_value)
            for name in sorted(packages)
        ]
        return SyncResult(
            records=records,
            details={
                "lists": lists,
                "list_errors": read_errors,
                "packages": len(records),
                "installed": len(installed),
                "status_file": str(status_file),
            },
        )

    def plan(
        self,
        record: AppRecord,
        config: Mapping[str, Any],
        details: Mapping[str, Any],
        executable: str | None = None,
    ) -> LaunchPlan:
        """An installed package asked for by one of its programs runs that program, with
        the kind its desktop entry gives it (if one runs it)."""
        if record.installed and executable:
            by_name = {Path(p).name.lower(): p for p in record.binaries if p.startswith("/")}
            chosen = by_name.get(executable.lower())
            if chosen is not None:
                entries = desktop_entries(record)
                return LaunchPlan(
                    argv=[chosen],
                    notes=[
                        f"installed apt package {record.ident}: runs {chosen}, "
                        "the program the query matched"
                    ],
                    kind=entry_kind(chosen, entries),
                )
        return super().plan(record, config, details, executable)

    def launch_plan(
        self, record: AppRecord, settings: AptSettings, details: Mapping[str, Any]
    ) -> LaunchPlan:
        package = record.ident
        if record.installed:
            return installed_plan(package, record)
        return LaunchPlan(
            argv=[package],
            requirements=[
                Requirement(
                    kind="package",
                    name=package,
                    message=f"apt package {package} is not installed",
                    resolution=f"apt-get install -y {package}",
                )
            ],
            notes=["executable name assumed to be the package name"],
        )


class Entry(Struct, frozen=True, array_like=True):
    """A desktop entry an installed package ships whose program exists on this machine."""

    desktop_id: str
    argv: list[str]
    terminal: bool
    no_display: bool

    @property
    def kind(self) -> RecordKind:
        return "cli" if self.terminal else "gui"


_entries_encoder = msgspec.json.Encoder()
_entries_decoder = msgspec.json.Decoder(list[Entry])


def desktop_entries(record: AppRecord) -> list[Entry]:
    encoded = record.extra_value("desktop_entries")
    return _entries_decoder.decode(encoded) if encoded else []


def installed_plan(package: str, record: AppRecord) -> LaunchPlan:
    """What an installed package runs, from what it ships: its own program on PATH (named
    after it, or the same name with a suffix); else the program of a desktop entry it ships
    (by its Exec, a program off PATH by its full path), `Terminal=` giving the kind; else
    the only program it ships on PATH. One that ships several unrelated programs must be
    asked for by one of them; one that ships none, and no desktop entry that runs, is not
    runnable: its requirement says so, and a run refuses it (never scheduled)."""
    paths = [b for b in record.binaries if b.startswith("/")]
    entries = desktop_entries(record)
    chosen = named_program(package, paths)
    if chosen:
        return LaunchPlan(
            argv=[chosen],
            notes=[f"installed apt package {package}"],
            kind=entry_kind(chosen, entries),
        )
    entry = best_entry(package, entries)
    if entry is not None:
        return LaunchPlan(
            argv=list(entry.argv),
            notes=[f"installed apt package {package}: runs the Exec of its {entry.desktop_id}"],
            kind=entry.kind,
        )
    if len(paths) == 1:
        return LaunchPlan(
            argv=[paths[0]],
            notes=[f"installed apt package {package}: its only program"],
            kind=entry_kind(paths[0], entries),
        )
    if paths:
        names = ", ".join(Path(p).name for p in paths[:8])
        return LaunchPlan(
            argv=[package],
            requirements=[
                Requirement(
                    kind="executable",
                    name=package,
                    message=f"apt package {package} ships several programs and none "
                    f"is named after it: {names}",
                    resolution=f"ask for one of them by name (app={Path(paths[0]).name})",
                )
            ],
            notes=[f"installed apt package {package}: which program to run is not known"],
        )
    return LaunchPlan(
        argv=[package],
        requirements=[
            Requirement(
                kind="executable",
                name=package,
                message=f"apt package {package} ships no program on PATH and no desktop "
                "entry that runs one: there is nothing to run",
            )
        ],
        notes=[f"apt package {package} is not runnable: it installs no program"],
    )


def best_entry(package: str, entries: list[Entry]) -> Entry | None:
    """The entry named after the package first, then visible ones, then by desktop id."""
    if not entries:
        return None
    return min(
        entries,
        key=lambda e: (
            e.desktop_id.removesuffix(".desktop") != package,
            e.no_display,
            e.desktop_id,
        ),
    )


def entry_kind(program: str, entries: list[Entry]) -> RecordKind | None:
    """The kind the desktop entry that runs `program` gives it (`Terminal=`), if one does."""
    name = Path(program).name
    for entry in entries:
        runs = _program_of(entry.argv)
        if runs == program or Path(runs).name == name:
            return entry.kind
    return None


def named_program(package: str, paths: list[str]) -> str | None:
    """The program named after the package, or with its name plus or minus a suffix."""
    by_name = {Path(p).name: p for p in paths}
    if package in by_name:
        return by_name[package]
    related = sorted(
        (name for name in by_name if name.startswith(package) or package.startswith(name)),
        key=lambda name: (abs(len(name) - len(package)), name),
    )
    return by_name[related[0]] if related else None


def own_program(package: str, paths: list[str]) -> str | None:
    """The executable that is the package's own program: the one named after it, else the
    one whose name is the package's without a version or flavour suffix or the other way
    round (`vim` → `vim.basic`, `firefox-esr` → `firefox`), else the only one it ships.
    None when the package ships several unrelated programs (procps: `kill`, `ps`, `top`):
    running the first of them would run something nobody asked for."""
    by_name = {Path(p).name: p for p in paths}
    if package in by_name:
        return by_name[package]
    related = sorted(
        (name for name in by_name if name.startswith(package) or package.startswith(name)),
        key=lambda name: (abs(len(name) - len(package)), name),
    )
    if related:
        return by_name[related[0]]
    return paths[0] if len(paths) == 1 else None


def tool_argv(argv: list[str], env: dict[str, str]) -> list[str]:
    """`argv` started with the open-file limit hoodyd was started with."""
    return with_open_file_limit(argv, path=env.get("PATH", os.defpath))


def index_targets(ctx: SyncContext[Any]) -> list[str]:
    env = ctx.tool_environ("apt")
    try:
        done = subprocess.run(
            tool_argv(INDEXTARGETS_ARGV, env),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env=env,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SourceUnavailable(f"apt-get indextargets failed: {exc}") from exc
    if done.returncode != 0:
        raise SourceUnavailable(
            f"apt-get indextargets exited {done.returncode}: {done.stderr.strip()}"
        )
    files = [line.strip() for line in done.stdout.splitlines() if line.strip()]
    return [f for f in files if Path(f).exists()]


def native_arch(ctx: SyncContext[Any]) -> str:
    env = ctx.tool_environ("apt")
    try:
        done = subprocess.run(
            tool_argv(["dpkg", "--print-architecture"], env),
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
            env=env,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "amd64"
    return done.stdout.strip() or "amd64"


def cat_file(path: str, ctx: SyncContext[Any]) -> Iterator[str]:
    """Lines of a (possibly compressed) list, decompressed by apt's own helper."""
    env = ctx.tool_environ("apt")
    try:
        process = subprocess.Popen(
            tool_argv([APT_HELPER, "cat-file", path], env),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
    except OSError as exc:
        raise SourceUnavailable(f"{APT_HELPER}: {exc.strerror}") from exc
    assert process.stdout is not None and process.stderr is not None
    try:
        yield from process.stdout
    finally:
        process.stdout.close()
        error = process.stderr.read()
        process.stderr.close()
        code = process.wait()
    if code != 0:
        raise SourceUnavailable(f"apt-helper cat-file {path} exited {code}: {error.strip()}")


def parse_stanzas(lines: Iterable[str]) -> Iterator[dict[str, str]]:
    """deb822 stanzas, keeping only the fields the index needs (continuation lines skipped)."""
    stanza: dict[str, str] = {}
    for line in lines:
        if line == "\n" or not line.strip():
            if stanza:
                yield stanza
                stanza = {}
            continue
        first = line[0]
        if first == " " or first == "\t":
            continue
        key, sep, value = line.partition(":")
        if sep and key in _FIELDS:
            stanza[key] = value.strip()
    if stanza:
        yield stanza


def read_status(status_file: Path) -> dict[str, dict[str, str]]:
    try:
        text = status_file.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    installed: dict[str, dict[str, str]] = {}
    for stanza in parse_stanzas(text.splitlines(keepends=True)):
        if stanza.get("Status", "").endswith(" installed") and "Package" in stanza:
            installed[stanza["Package"]] = stanza
    return installed


def installed_files(
    info_dir: Path, package: str, arch: str, path_value: str = os.defpath
) -> tuple[tuple[str, ...], list[Entry]]:
    """An installed package's executables (files directly in a bin directory, not the
    directory itself, not subdirectories) and the desktop entries it ships whose program
    exists here (hidden ones and a failing `TryExec` left out)."""
    for name in (f"{package}.list", f"{package}:{arch}.list"):
        try:
            lines = (info_dir / name).read_text(errors="replace").splitlines()
        except OSError:
            continue
        binaries = tuple(
            sorted({line for line in lines if os.path.dirname(line) + "/" in BIN_DIRS})
        )
        entries = [
            entry
            for line in sorted(lines)
            if line.startswith(DESKTOP_DIR) and line.endswith(".desktop")
            for entry in [_runnable_entry(Path(line), binaries, path_value)]
            if entry is not None
        ]
        return binaries, entries
    return (), []


def _runnable_entry(file: Path, binaries: tuple[str, ...], path_value: str) -> Entry | None:
    desktop_id = str(file.relative_to(DESKTOP_DIR)).replace("/", "-")
    try:
        parsed = parse_desktop_file(file, desktop_id)
        if parsed.values.get("Type", "Application") != "Application":
            return None
        if parsed.boolean("Hidden") or not parsed.values.get("Exec"):
            return None
        argv = parse_exec(
            parsed.values["Exec"],
            name=parsed.string("Name"),
            icon=parsed.string("Icon"),
            location=str(file),
        )
    except (OSError, DesktopEntryError):
        return None
    shipped = {Path(b).name: b for b in binaries}
    try_exec = parsed.string("TryExec")
    if try_exec and _resolve(try_exec, path_value) is None and try_exec not in shipped:
        return None
    program = _program_of(argv)
    if not program or (_resolve(program, path_value) is None and program not in shipped):
        return None
    return Entry(desktop_id, argv, parsed.boolean("Terminal"), parsed.boolean("NoDisplay"))


def to_record(
    name: str,
    stanza: dict[str, str],
    status: dict[str, str] | None,
    info_dir: Path,
    path_value: str = os.defpath,
) -> AppRecord:
    section = stanza.get("Section", "").rsplit("/", 1)[-1]
    depends = stanza.get("Depends", "")
    arch = stanza.get("Architecture", "")
    installed = status is not None
    binaries, entries = installed_files(info_dir, name, arch, path_value) if installed else ((), [])
    extra = (("desktop_entries", _entries_encoder.encode(entries).decode()),) if entries else ()
    base = AppRecord(ident=name, name=name, title=name, binaries=binaries, extra=extra)
    # the kind of what the package runs: its desktop entry's Terminal= when one runs it, else
    # a GUI toolkit or section says so
    kind = installed_plan(name, base).kind if installed else None
    if kind is None:
        kind = (
            "gui" if section in _GUI_SECTIONS or any(lib in depends for lib in _GUI_LIBS) else "cli"
        )
    return AppRecord(
        ident=name,
        name=name,
        title=name,
        description=stanza.get("Description", ""),
        kind=kind,
        arch=_ARCH.get(arch, arch or "any"),
        version=(status or stanza).get("Version", ""),
        binaries=binaries or (name,),
        tags=(section,) if section else (),
        homepage=stanza.get("Homepage", ""),
        installed=installed,
        auxiliary=section in _AUX_SECTIONS or name.endswith(_AUX_SUFFIXES),
        extra=extra,
    )
