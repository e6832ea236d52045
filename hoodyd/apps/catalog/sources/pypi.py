"""`pypi` (an extension of the compatible API): Python command-line tools run with `uvx`
(or `pipx run`) without installing them first.

PyPI has no search API, so the source's index is built at sync time from what the user
names and what is installed:

- `config.packages`: specs such as `ruff`, `black==24.10.0` or
  `{"name": "httpie", "commands": ["http", "https"]}`; each package's summary, latest
  version and homepage come from the PyPI JSON API (`config.index_url`, default
  https://pypi.org/pypi; `config.metadata: false` skips it);
- tools installed with `uv tool install` (`uv tool list`, with their executables) and
  `pipx install` (`pipx list --json`).

A record per command. Launch: `uvx NAME[@VERSION]` when the command is the package's
name, else `uvx --from NAME[==VERSION] COMMAND`; with `config.runner: pipx`,
`pipx run --spec NAME[==VERSION] COMMAND`. A network failure fails the sync (the last
index stays).
"""

from __future__ import annotations

import os
import re
import shutil
import urllib.parse
from collections.abc import Mapping
from typing import Any, Literal

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

DEFAULT_INDEX = "https://pypi.org/pypi"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_UV_TOOL = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*) v(?P<version>\S+)")
_UV_EXE = re.compile(r"^- (?P<exe>\S+)")


class PackageSpec(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    name: str
    version: str | None = None
    commands: tuple[str, ...] = ()
    description: str | None = None


Runner = Literal["uvx", "pipx"]


class PypiSettings(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The packages to index besides the installed tools (`NAME`, `NAME==VERSION`,
    `NAME@VERSION` or a `PackageSpec`); whether their metadata is read from the PyPI JSON
    API at `index_url`; the runner launches use (unset: uvx, or pipx when only pipx is on
    PATH); how long each command and request may take."""

    packages: tuple[str | PackageSpec, ...] = ()
    metadata: bool = True
    index_url: HttpUrl = DEFAULT_INDEX
    runner: Runner | None = None
    timeout_s: TimeoutS = 30


class PypiInfo(msgspec.Struct):
    name: str = ""
    summary: str | None = None
    version: str = ""
    home_page: str | None = None
    project_urls: dict[str, str] | None = None


class PypiProject(msgspec.Struct):
    info: PypiInfo


class PipxMain(msgspec.Struct):
    package: str
    package_version: str = ""
    apps: list[str] = msgspec.field(default_factory=list)


class PipxMetadata(msgspec.Struct):
    main_package: PipxMain


class PipxVenv(msgspec.Struct):
    metadata: PipxMetadata


class PipxList(msgspec.Struct):
    venvs: dict[str, PipxVenv] = msgspec.field(default_factory=dict)


def parse_spec(value: str | PackageSpec) -> PackageSpec:
    """`name`, `name==1.2`, `name@1.2` or an object."""
    if isinstance(value, str):
        name, _, version = value.replace("==", "@", 1).partition("@")
        spec = PackageSpec(name=name.strip(), version=version.strip() or None)
    else:
        spec = value
    if not _NAME.match(spec.name):
        raise SourceUnavailable(f"config.packages: {spec.name!r} is not a package name")
    return spec


def parse_uv_tool_list(text: str) -> dict[str, tuple[str, list[str]]]:
    """`uv tool list`: `NAME vVERSION` lines, each followed by `- EXECUTABLE` lines."""
    tools: dict[str, tuple[str, list[str]]] = {}
    current: str | None = None
    for line in text.splitlines():
        tool = _UV_TOOL.match(line)
        if tool:
            current = tool.group("name")
            tools[current] = (tool.group("version"), [])
            continue
        exe = _UV_EXE.match(line.strip())
        if exe and current is not None:
            tools[current][1].append(exe.group("exe"))
    return tools


def pep503(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pick_runner(wanted: Runner | None, environ: Mapping[str, str]) -> Runner:
    if wanted is not None:
        return wanted
    path_value = environ.get("PATH", os.defpath)
    if shutil.which("uvx", path=path_value) is None and shutil.which("pipx", path=path_value):
        return "pipx"
    return "uvx"


class PypiSource(Source[PypiSettings]):
    source_type = "pypi"
    provider: SourceKind = "pypi"
    trusted = False
    settings_type = PypiSettings

    def detect(self, environ: Mapping[str, str]) -> str | None:
        path_value = environ.get("PATH", os.defpath)
        if shutil.which("uvx", path=path_value) or shutil.which("pipx", path=path_value):
            return None
        return "neither uvx nor pipx is on PATH"

    def sync(self, ctx: SyncContext[PypiSettings]) -> SyncResult:
        settings = ctx.settings
        specs = {pep503(s.name): s for s in map(parse_spec, settings.packages)}
        path_value = ctx.environ.get("PATH", os.defpath)
        timeout = settings.timeout_s
        installed: dict[str, tuple[str, list[str]]] = {}
        if shutil.which("uv", path=path_value):
            installed.update(
                parse_uv_tool_list(run_cli(["uv", "tool", "list"], ctx, timeout=timeout).decode())
            )
        if shutil.which("pipx", path=path_value):
            body = run_cli(["pipx", "list", "--json"], ctx, timeout=timeout)
            try:
                venvs = msgspec.json.decode(body, type=PipxList).venvs
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                raise SourceUnavailable(f"pipx list --json: {exc}") from exc
            for venv in venvs.values():
                main = venv.metadata.main_package
                installed.setdefault(main.package, (main.package_version, main.apps))
        for name, (_version, _commands) in installed.items():
            specs.setdefault(pep503(name), PackageSpec(name=name))
        index_url = settings.index_url.rstrip("/")
        use_metadata = settings.metadata
        records: list[AppRecord] = []
        for key in sorted(specs):
            ctx.check_cancelled()
            spec = specs[key]
            info = PypiInfo(name=spec.name)
            if use_metadata:
                url = f"{index_url}/{urllib.parse.quote(spec.name, safe='')}/json"
                try:
                    info = msgspec.json.decode(fetch(url, timeout=timeout), type=PypiProject).info
                except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                    raise SourceUnavailable(f"{url}: not PyPI JSON: {exc}") from exc
            have = next((v for n, v in installed.items() if pep503(n) == key), None)
            commands = list(spec.commands) or (have[1] if have and have[1] else [spec.name])
            homepage = info.home_page or next(iter((info.project_urls or {}).values()), "")
            for command in commands:
                records.append(
                    AppRecord(
                        ident=spec.name if command == spec.name else f"{spec.name}:{command}",
                        name=command,
                        title=info.name or spec.name,
                        description=spec.description or info.summary or "",
                        version=spec.version or (have[0] if have else "") or info.version,
                        binaries=(command,),
                        keywords=(spec.name,) if command != spec.name else (),
                        homepage=homepage,
                        installed=have is not None,
                        terminal=True,
                        extra=(("package", spec.name),)
                        + ((("pin", spec.version),) if spec.version else ()),
                    )
                )
        return SyncResult(
            records=records,
            details={
                "runner": pick_runner(settings.runner, ctx.environ),
                "runner_on_path": self.detect(ctx.environ) is None,
                "installed_tools": sorted(installed),
                "index_url": index_url if use_metadata else None,
            },
        )

    def launch_plan(
        self, record: AppRecord, settings: PypiSettings, details: Mapping[str, Any]
    ) -> LaunchPlan:
        package = record.extra_value("package") or record.name
        pin = record.extra_value("pin")
        runner = settings.runner or str(details.get("runner", "uvx"))
        command = record.name
        if runner == "pipx":
            argv = ["pipx", "run", "--spec", f"{package}=={pin}" if pin else package, command]
        elif command == package:
            argv = ["uvx", f"{package}@{pin}" if pin else package]
        else:
            argv = ["uvx", "--from", f"{package}=={pin}" if pin else package, command]
        requirements = []
        if not details.get("runner_on_path", False):
            requirements.append(
                Requirement(
                    kind="command",
                    name=runner,
                    message=f"{runner} is not installed on this machine",
                    resolution="python3 -m pip install --user uv" if runner == "uvx" else None,
                )
            )
        note = f"PyPI package {package}" + (f" pinned to {pin}" if pin else "")
        return LaunchPlan(argv=argv, requirements=requirements, notes=[note])
