"""`flatpak` (an extension of the compatible API): installed flatpak apps and the apps of
the configured remotes' AppStream data, through the flatpak CLI.

Sync runs `flatpak list --app --columns=…` (installed) and, unless `config.remotes` is
false, `flatpak remote-ls --app --columns=…` (every remote, or `config.remote`). Piped,
flatpak prints one tab-separated row per app with no header. One record per app, arch
and branch; an installed app hides the same app listed by its remote.

Launch is `flatpak run --branch=BRANCH --arch=ARCH APPID`; an app that is not installed
has `flatpak install` of its remote as a missing requirement. The selector's `channel`
is the branch (stable, beta). flatpak itself checks each commit's GPG signature.
"""

from __future__ import annotations

import os
import shlex
import shutil
from collections.abc import Mapping
from typing import Any

from msgspec import Struct

from hoodyd.apps.catalog.records import (
    AppRecord,
    LaunchPlan,
    SourceUnavailable,
    SyncContext,
    SyncResult,
)
from hoodyd.apps.catalog.sources.base import Source, TimeoutS
from hoodyd.apps.catalog.sources.nix import run_cli
from hoodyd.schemas.run import Requirement, SourceKind

LIST_COLUMNS = "application,name,version,branch,arch,origin,installation,description"
REMOTE_COLUMNS = "application,name,version,branch,arch,origin,description"
_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}


def parse_rows(text: str, columns: str) -> list[dict[str, str]]:
    names = columns.split(",")
    rows: list[dict[str, str]] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        cells = line.split("\t")
        if len(cells) < len(names) - 1:  # the last column (description) may be absent
            raise SourceUnavailable(f"flatpak: unexpected row {line!r} for columns {columns}")
        rows.append(dict(zip(names, [c.strip() for c in cells], strict=False)))
    return rows


def to_record(row: dict[str, str], *, installed: bool) -> AppRecord:
    app_id = row["application"]
    arch = row.get("arch", "")
    branch = row.get("branch", "") or "stable"
    # org.mozilla.firefox -> firefox: the name people search for
    short = app_id.rsplit(".", 1)[-1].lower()
    title = row.get("name") or short
    extra = [("app_id", app_id), ("branch", branch), ("flatpak_arch", arch)]
    if row.get("origin"):
        extra.append(("origin", row["origin"]))
    if row.get("installation"):
        extra.append(("installation", row["installation"]))
    return AppRecord(
        ident=f"{app_id}/{arch}/{branch}",
        name=short,
        title=title,
        description=row.get("description", ""),
        kind="gui",
        arch=_ARCH.get(arch, arch or "any"),
        version=row.get("version", ""),
        keywords=tuple(k for k in (app_id, title.lower()) if k != short),
        installed=installed,
        publisher=row.get("origin", ""),
        channel=branch,
        extra=tuple(extra),
    )


class FlatpakSettings(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Whether the remotes' apps are listed besides the installed ones (`remotes`), from
    every remote or only `remote`, and how long each flatpak command may take."""

    remotes: bool = True
    remote: str | None = None
    timeout_s: TimeoutS = 300


class FlatpakSource(Source[FlatpakSettings]):
    source_type = "flatpak"
    provider: SourceKind = "flatpak"
    trusted = False
    settings_type = FlatpakSettings

    def detect(self, environ: Mapping[str, str]) -> str | None:
        if shutil.which("flatpak", path=environ.get("PATH", os.defpath)):
            return None
        return "flatpak not found on PATH"

    def sync(self, ctx: SyncContext[FlatpakSettings]) -> SyncResult:
        if self.detect(ctx.environ) is not None:
            raise SourceUnavailable("flatpak not found on PATH")
        settings = ctx.settings
        timeout = settings.timeout_s
        installed_out = run_cli(
            ["flatpak", "list", "--app", f"--columns={LIST_COLUMNS}"], ctx, timeout=timeout
        )
        records: dict[str, AppRecord] = {}
        for row in parse_rows(installed_out.decode(errors="replace"), LIST_COLUMNS):
            record = to_record(row, installed=True)
            records.setdefault(record.ident, record)
        remote_count = 0
        if settings.remotes:
            argv = ["flatpak", "remote-ls", "--app", f"--columns={REMOTE_COLUMNS}"]
            if settings.remote:
                argv.append(settings.remote)
            ctx.check_cancelled()
            # a remote that cannot be reached fails the sync: the last index stays
            remote_out = run_cli(argv, ctx, timeout=timeout)
            for row in parse_rows(remote_out.decode(errors="replace"), REMOTE_COLUMNS):
                record = to_record(row, installed=False)
                remote_count += 1
                records.setdefault(record.ident, record)
        return SyncResult(
            records=[records[k] for k in sorted(records)],
            details={
                "installed": sum(1 for r in records.values() if r.installed),
                "remote_apps": remote_count,
            },
        )

    def launch_plan(
        self, record: AppRecord, settings: FlatpakSettings, details: Mapping[str, Any]
    ) -> LaunchPlan:
        app_id = record.extra_value("app_id") or record.ident.split("/", 1)[0]
        branch = record.extra_value("branch") or "stable"
        arch = record.extra_value("flatpak_arch") or ""
        argv = ["flatpak", "run", f"--branch={branch}"]
        if arch:
            argv.append(f"--arch={arch}")
        argv.append(app_id)
        requirements: list[Requirement] = []
        if not record.installed:
            origin = record.extra_value("origin") or "flathub"
            ref = f"app/{app_id}/{arch}/{branch}" if arch else app_id
            requirements.append(
                Requirement(
                    kind="package",
                    name=app_id,
                    message=f"{app_id} ({branch}) is not installed",
                    resolution=shlex.join(
                        ["flatpak", "install", "-y", "--noninteractive", origin, ref]
                    ),
                )
            )
        return LaunchPlan(
            argv=argv,
            requirements=requirements,
            notes=[f"flatpak {app_id} branch {branch}; flatpak checks the remote's signatures"],
        )
