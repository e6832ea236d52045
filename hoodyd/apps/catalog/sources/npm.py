"""`npm` (an extension of the compatible API): Node command-line tools run with `npx`.

The index is built at sync time from `config.packages` (`typescript`, `prettier@3.3.3`,
`{"name": "@angular/cli"}`) and the globally installed packages (`npm ls -g --json
--depth=0`). For each package the registry's version document
(`config.registry_url`, default https://registry.npmjs.org, `GET /NAME/VERSION|latest`)
gives its description, homepage and `bin` map: one record per command.

Launch: `npx --yes NAME[@VERSION]` when the command is the package's own name, else
`npx --yes --package=NAME[@VERSION] COMMAND`. A network failure fails the sync (the last
index stays).
"""

from __future__ import annotations

import os
import re
import shutil
import urllib.parse
from collections.abc import Mapping
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
from hoodyd.apps.catalog.sources.base import HttpUrl, Source, TimeoutS
from hoodyd.apps.catalog.sources.manifest import fetch
from hoodyd.apps.catalog.sources.nix import run_cli
from hoodyd.schemas.run import Requirement, SourceKind

DEFAULT_REGISTRY = "https://registry.npmjs.org"
_NAME = re.compile(r"^(?:@[a-z0-9][a-z0-9._~-]*/)?[a-z0-9][a-z0-9._~-]*$")


class NpmVersion(msgspec.Struct):
    name: str
    version: str = ""
    description: str | None = None
    homepage: str | None = None
    bin: dict[str, str] | str | None = None
    keywords: list[str] | None = None


class NpmInstalled(msgspec.Struct):
    version: str = ""


class NpmLs(msgspec.Struct):
    dependencies: dict[str, NpmInstalled] = msgspec.field(default_factory=dict)


class NpmPackage(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    name: str
    version: str | None = None


class NpmSettings(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The packages to index besides the globally installed ones (`NAME`, `NAME@VERSION`
    or a `NpmPackage`), the registry asked for their version documents, and how long
    `npm ls` and each registry request may take."""

    packages: tuple[str | NpmPackage, ...] = ()
    registry_url: HttpUrl = DEFAULT_REGISTRY
    timeout_s: TimeoutS = 30


def split_spec(value: str | NpmPackage) -> tuple[str, str | None]:
    if isinstance(value, NpmPackage):
        name, version = value.name, value.version
    else:
        # a leading @ is the scope, the last @ after it the version
        at = value.find("@", 1)
        name, version = (value, None) if at < 0 else (value[:at], value[at + 1 :])
    if not _NAME.match(name):
        raise SourceUnavailable(f"config.packages: {name!r} is not an npm package name")
    return name, version or None


def commands_of(doc: NpmVersion) -> list[str]:
    if isinstance(doc.bin, dict) and doc.bin:
        return sorted(doc.bin)
    # a string `bin` is one command named after the package (without its scope)
    return [doc.name.rsplit("/", 1)[-1]]


class NpmSource(Source[NpmSettings]):
    source_type = "npm"
    provider: SourceKind = "npm"
    trusted = False
    settings_type = NpmSettings

    def detect(self, environ: Mapping[str, str]) -> str | None:
        if shutil.which("npx", path=environ.get("PATH", os.defpath)):
            return None
        return "npx not found on PATH"

    def sync(self, ctx: SyncContext[NpmSettings]) -> SyncResult:
        settings = ctx.settings
        wanted = dict(split_spec(item) for item in settings.packages)
        path_value = ctx.environ.get("PATH", os.defpath)
        timeout = settings.timeout_s
        installed: dict[str, str] = {}
        if shutil.which("npm", path=path_value):
            body = run_cli(["npm", "ls", "-g", "--json", "--depth=0"], ctx, timeout=timeout)
            try:
                deps = msgspec.json.decode(body, type=NpmLs).dependencies
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                raise SourceUnavailable(f"npm ls -g --json: {exc}") from exc
            installed = {name: dep.version for name, dep in deps.items() if name != "npm"}
        for name in installed:
            wanted.setdefault(name, None)
        registry = settings.registry_url.rstrip("/")
        records: list[AppRecord] = []
        for name in sorted(wanted):
            ctx.check_cancelled()
            pin = wanted[name]
            tag = pin or installed.get(name) or "latest"
            url = f"{registry}/{urllib.parse.quote(name, safe='@')}/{urllib.parse.quote(tag)}"
            try:
                doc = msgspec.json.decode(fetch(url, timeout=timeout), type=NpmVersion)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                raise SourceUnavailable(f"{url}: not an npm version document: {exc}") from exc
            for command in commands_of(doc):
                records.append(
                    AppRecord(
                        ident=name if command == name else f"{name}:{command}",
                        name=command,
                        title=name,
                        description=doc.description or "",
                        version=pin or doc.version,
                        binaries=(command,),
                        tags=tuple(doc.keywords or ())[:10],
                        keywords=(name,) if command != name else (),
                        homepage=doc.homepage or "",
                        installed=name in installed,
                        terminal=True,
                        extra=(("package", name),) + ((("pin", pin),) if pin else ()),
                    )
                )
        return SyncResult(
            records=records,
            details={
                "registry_url": registry,
                "installed_globals": sorted(installed),
                "npx_on_path": self.detect(ctx.environ) is None,
            },
        )

    def launch_plan(
        self, record: AppRecord, settings: NpmSettings, details: Mapping[str, Any]
    ) -> LaunchPlan:
        package = record.extra_value("package") or record.name
        pin = record.extra_value("pin")
        spec = f"{package}@{pin}" if pin else package
        if record.name == package:
            argv = ["npx", "--yes", spec]
        else:
            argv = ["npx", "--yes", f"--package={spec}", record.name]
        requirements = []
        if not details.get("npx_on_path", False):
            requirements.append(
                Requirement(
                    kind="command",
                    name="npx",
                    message="npx (Node.js) is not installed on this machine",
                    resolution="apt-get install -y npm",
                )
            )
        note = f"npm package {package}" + (f" pinned to {pin}" if pin else "")
        return LaunchPlan(argv=argv, requirements=requirements, notes=[note])
