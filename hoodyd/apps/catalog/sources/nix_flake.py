"""`nix-flake`: the apps and packages of one configured flake (`config.flake`, a flake
reference such as `github:helix-editor/helix` or `path:/srv/tools`).

Sync runs `nix flake metadata --json REF` (to lock the reference) and
`nix flake show --json REF` (its outputs). One record per `apps.SYSTEM.NAME` and
`packages.SYSTEM.NAME` of this machine's system. Launch is
`nix run LOCKED#apps.SYSTEM.NAME` (or `#packages.…`) where LOCKED is the locked URL, so the
run uses exactly the source tree the sync saw: the candidate's `integrity` is that URL with
the tree's `narHash` (as hex), which nix checks when it fetches.
"""

from __future__ import annotations

import base64
import binascii
import os
import platform
import shutil
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
from hoodyd.apps.catalog.sources.base import Source, TimeoutS
from hoodyd.apps.catalog.sources.nix import SYSTEM_ARCH, run_cli
from hoodyd.schemas.run import Integrity, Requirement, SourceKind

NIX = ["nix", "--extra-experimental-features", "nix-command flakes"]
_SYSTEMS = {"x86_64": "x86_64-linux", "aarch64": "aarch64-linux", "arm64": "aarch64-linux"}
_encoder = msgspec.json.Encoder()


class Locked(msgspec.Struct):
    narHash: str | None = None


class FlakeMetadata(msgspec.Struct):
    description: str | None = None
    url: str | None = None
    lockedUrl: str | None = None
    locked: Locked | None = None


class FlakeOutput(msgspec.Struct):
    type: str | None = None
    name: str | None = None
    description: str | None = None


class FlakeShow(msgspec.Struct):
    apps: dict[str, dict[str, FlakeOutput]] = msgspec.field(default_factory=dict)
    packages: dict[str, dict[str, FlakeOutput]] = msgspec.field(default_factory=dict)


def nar_hash_hex(value: str | None) -> str | None:
    """`sha256-BASE64` (SRI) to hex; None for anything else."""
    if not value or not value.startswith("sha256-"):
        return None
    try:
        raw = base64.b64decode(value[len("sha256-") :], validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.hex() if len(raw) == 32 else None


def split_version(name: str) -> tuple[str, str]:
    """`hello-2.12.1` -> (`hello`, `2.12.1`): nix names end with `-VERSION`."""
    head, sep, tail = name.rpartition("-")
    if sep and tail[:1].isdigit():
        return head, tail
    return name, ""


class NixFlakeSettings(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The flake to index (a flake reference; a sync without one fails), the nix system
    whose outputs are records (unset: this machine's), and how long each `nix flake`
    command may take."""

    flake: str | None = None
    system: str | None = None
    timeout_s: TimeoutS = 600


class NixFlakeSource(Source[NixFlakeSettings]):
    source_type = "nix-flake"
    provider: SourceKind = "nix"
    trusted = False
    settings_type = NixFlakeSettings

    config_needs = (("flake",),)

    def detect(self, environ: Mapping[str, str]) -> str | None:
        return "needs config.flake"

    def sync(self, ctx: SyncContext[NixFlakeSettings]) -> SyncResult:
        settings = ctx.settings
        flake = settings.flake
        if not flake:
            raise SourceUnavailable("config.flake (a flake reference) is required")
        if shutil.which("nix", path=ctx.environ.get("PATH", os.defpath)) is None:
            raise SourceUnavailable("nix not found on PATH")
        system = settings.system or _SYSTEMS.get(
            platform.machine().lower(), f"{platform.machine().lower()}-linux"
        )
        timeout = settings.timeout_s
        try:
            meta = msgspec.json.decode(
                run_cli([*NIX, "flake", "metadata", "--json", flake], ctx, timeout=timeout),
                type=FlakeMetadata,
            )
            ctx.check_cancelled()
            show = msgspec.json.decode(
                run_cli([*NIX, "flake", "show", "--json", flake], ctx, timeout=timeout),
                type=FlakeShow,
            )
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise SourceUnavailable(f"{flake}: output is not nix flake JSON: {exc}") from exc
        locked_url = meta.lockedUrl or meta.url or flake
        nar = nar_hash_hex(meta.locked.narHash if meta.locked else None)
        integrity = (
            _encoder.encode(Integrity(url=locked_url, sha256=nar)).decode()
            if nar and locked_url != flake
            else None
        )
        records: dict[str, AppRecord] = {}
        for group, outputs in (("apps", show.apps), ("packages", show.packages)):
            for attr, output in sorted(outputs.get(system, {}).items()):
                pname, version = split_version(output.name or attr)
                name = pname if attr == "default" else attr
                title = name if attr != "default" else f"{name} (default)"
                extra: list[tuple[str, str]] = [("output", f"{group}.{system}.{attr}")]
                if integrity:
                    extra.append(("integrity", integrity))
                ident = f"{group}.{attr}"
                records[ident] = AppRecord(
                    ident=ident,
                    name=name,
                    title=title,
                    description=output.description or meta.description or "",
                    arch=SYSTEM_ARCH.get(system, "any"),
                    version=version,
                    binaries=(name,),
                    keywords=(attr,) if attr != name else (),
                    # an app is what the flake means to be run; a package may be a library
                    auxiliary=group == "packages" and f"apps.{attr}" in records,
                    extra=tuple(extra),
                )
        return SyncResult(
            records=[records[k] for k in sorted(records)],
            details={
                "flake": flake,
                "locked_url": locked_url,
                "system": system,
                "locked": integrity is not None,
                "nix_cli": True,
            },
        )

    def launch_plan(
        self, record: AppRecord, settings: NixFlakeSettings, details: Mapping[str, Any]
    ) -> LaunchPlan:
        flake = str(details.get("locked_url") or settings.flake or "")
        output = record.extra_value("output") or record.ident
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
        return LaunchPlan(
            argv=[*NIX, "run", f"{flake}#{output}"],
            requirements=requirements,
            notes=[f"flake output {output} of {flake}"],
        )
