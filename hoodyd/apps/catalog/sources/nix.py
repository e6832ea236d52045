"""`nix-pkgs`: nixpkgs packages from `nix search nixpkgs ^ --json` or
`nix-env -qaP --json --meta`.

Sync runs the real `nix` CLI when it is on PATH (or reads a file holding either command's
output, `config.file`). Both outputs are one JSON object keyed by attribute path; the search
form's values are `{pname, version, description}`, the nix-env form's add `name`, `system`
and `meta` (description, homepage, mainProgram, broken). Launch is `nix run nixpkgs#ATTR`, or
`nix shell nixpkgs#ATTR --command PROGRAM` when the package's main program has another name.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

from hoodyd.apps.catalog.records import (
    AppRecord,
    LaunchPlan,
    SourceUnavailable,
    SyncContext,
    SyncResult,
)
from hoodyd.apps.catalog.sources.base import Source, TimeoutS
from hoodyd.childenv import with_open_file_limit
from hoodyd.schemas.run import Requirement, SourceKind

SEARCH_ARGV = [
    "nix",
    "--extra-experimental-features",
    "nix-command flakes",
    "search",
    "nixpkgs",
    "^",
    "--json",
]
ENV_ARGV = ["nix-env", "-qaP", "--json", "--meta"]
# nix system names and hoodyd arches (shared with the nix-flake source)
SYSTEM_ARCH = {"x86_64-linux": "amd64", "aarch64-linux": "arm64"}
_ATTR_PREFIX = re.compile(r"^(?:legacyPackages|packages)\.([\w-]+)\.")
# descriptions rarely say "command line"; these words reliably mean a graphical program
_GUI_WORDS = re.compile(
    r"\b(gui|graphical|web browser|browser|desktop environment|gtk[234]?|qt[56]?|kde|gnome"
    r"|x11|wayland|sdl2?)\b",
    re.IGNORECASE,
)
PROFILE_BIN_DIRS = (
    "~/.nix-profile/bin",
    "/nix/var/nix/profiles/default/bin",
    "/run/current-system/sw/bin",
)


class NixMeta(msgspec.Struct):
    description: str | None = None
    homepage: str | list[str] | None = None
    mainProgram: str | None = None
    broken: bool | None = None


class NixEntry(msgspec.Struct):
    pname: str | None = None
    version: str | None = None
    description: str | None = None
    name: str | None = None
    system: str | None = None
    meta: NixMeta | None = None


_decoder = msgspec.json.Decoder(dict[str, NixEntry])


class NixSettings(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Where the package list comes from: a file holding either command's JSON output, else
    the CLI run when syncing (`search`: `nix search nixpkgs ^ --json`; `env`:
    `nix-env -qaP --json --meta`), given `timeout_s` to answer. `flake` is the flake whose
    attributes a launch runs (`nix run FLAKE#ATTR`)."""

    file: str | None = None
    command: Literal["search", "env"] = "search"
    timeout_s: TimeoutS = 900
    flake: Annotated[str, Meta(min_length=1)] = "nixpkgs"


class NixSource(Source[NixSettings]):
    source_type = "nix-pkgs"
    provider: SourceKind = "nix"
    trusted = False
    settings_type = NixSettings

    fix = (
        "install nix (https://nixos.org/download) so `nix` is on hoodyd's PATH, or set "
        "config.file to a saved `nix search nixpkgs ^ --json` output"
    )

    def detect(self, environ: Mapping[str, str]) -> str | None:
        if shutil.which("nix", path=environ.get("PATH", os.defpath)):
            return None
        return "nix not found on PATH"

    def sync(self, ctx: SyncContext[NixSettings]) -> SyncResult:
        settings = ctx.settings
        file = settings.file
        path_value = ctx.environ.get("PATH", os.defpath)
        if file:
            try:
                body = Path(file).read_bytes()
            except OSError as exc:
                raise SourceUnavailable(f"{file}: {exc.strerror}") from exc
            origin = file
        else:
            argv = ENV_ARGV if settings.command == "env" else SEARCH_ARGV
            if shutil.which(argv[0], path=path_value) is None:
                raise SourceUnavailable(f"{argv[0]} not found on PATH")
            body = run_cli(argv, ctx, timeout=settings.timeout_s)
            origin = " ".join(argv)
        ctx.check_cancelled()
        try:
            entries = _decoder.decode(body)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise SourceUnavailable(f"{origin}: output is not nix JSON: {exc}") from exc
        ctx.report(entries=len(entries))
        installed = installed_programs(ctx.environ)
        records = parse_entries(entries, installed)
        return SyncResult(
            records=records,
            details={
                "origin": origin,
                "entries": len(entries),
                "nix_cli": shutil.which("nix", path=path_value) is not None,
            },
        )

    def launch_plan(
        self, record: AppRecord, settings: NixSettings, details: Mapping[str, Any]
    ) -> LaunchPlan:
        flake = settings.flake
        attr = record.ident
        program = record.binaries[0] if record.binaries else record.name
        if program == record.name:
            argv = ["nix", "run", f"{flake}#{attr}"]
        else:
            argv = ["nix", "shell", f"{flake}#{attr}", "--command", program]
        requirements = []
        if not details.get("nix_cli", False):
            requirements.append(
                Requirement(
                    kind="command",
                    name="nix",
                    message="the nix CLI is not installed on this machine",
                    resolution="apt-get install -y nix-bin",
                )
            )
        return LaunchPlan(argv=argv, requirements=requirements, notes=[f"nix attribute {attr}"])


def run_cli(argv: list[str], ctx: SyncContext[Any], *, timeout: float) -> bytes:
    env = ctx.tool_environ("nix")
    try:
        done = subprocess.run(
            with_open_file_limit(argv, path=env.get("PATH", os.defpath)),
            capture_output=True,
            timeout=timeout,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise SourceUnavailable(f"{argv[0]} timed out after {timeout:.0f} s") from exc
    except OSError as exc:
        raise SourceUnavailable(f"{argv[0]}: {exc.strerror}") from exc
    if done.returncode != 0:
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise SourceUnavailable(f"{' '.join(argv)} exited {done.returncode}: {' / '.join(tail)}")
    return done.stdout


def installed_programs(environ: Mapping[str, str]) -> set[str]:
    home = environ.get("HOME", "/root")
    names: set[str] = set()
    for raw in PROFILE_BIN_DIRS:
        directory = raw.replace("~", home, 1)
        try:
            names.update(os.listdir(directory))
        except OSError:
            continue
    return names


def parse_entries(entries: dict[str, NixEntry], installed: set[str]) -> list[AppRecord]:
    records: list[AppRecord] = []
    for key in sorted(entries):
        entry = entries[key]
        system = entry.system
        attr = key
        match = _ATTR_PREFIX.match(key)
        if match:
            system = system or match.group(1)
            attr = key[match.end() :]
        elif key.startswith("nixpkgs."):
            attr = key[len("nixpkgs.") :]  # nix-env prefixes the channel name
        if system and system not in SYSTEM_ARCH:
            continue  # darwin and other platforms cannot run here
        meta = entry.meta or NixMeta()
        if meta.broken:
            continue
        pname = entry.pname or attr.rsplit(".", 1)[-1]
        program = meta.mainProgram or pname
        description = entry.description or meta.description or ""
        homepage = (
            meta.homepage[0] if isinstance(meta.homepage, list) and meta.homepage else meta.homepage
        )
        keywords = (attr,) if attr != pname else ()
        records.append(
            AppRecord(
                ident=attr,
                name=pname,
                title=pname,
                description=description,
                kind="gui" if _GUI_WORDS.search(description) else "cli",
                arch=SYSTEM_ARCH.get(system or "", "any"),
                version=entry.version or "",
                binaries=(program,),
                keywords=keywords,
                homepage=homepage if isinstance(homepage, str) else "",
                installed=program in installed,
            )
        )
    return records
