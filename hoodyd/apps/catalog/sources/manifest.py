"""`trusted-list-file`, `manifest-registry` and `manifest-remote-index`: a JSON manifest of
apps, read from a file (or a directory of `*.json` files) or fetched over HTTP.

The format (documented in docs/apps.md, "App search"):

    {"version": 1, "apps": [{"id": "firefox", "title": "Firefox", "argv": ["firefox"], ...}]}

A manifest that does not parse fails the sync with a message naming the file and the field;
the source keeps its previous records and diagnostics show the error.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import msgspec
from msgspec import Meta, Struct

from hoodyd.apps.catalog.records import (
    AppRecord,
    LaunchPlan,
    SourceUnavailable,
    SyncContext,
    SyncResult,
)
from hoodyd.apps.catalog.sources.base import HttpUrl, Settings, Source, TimeoutS
from hoodyd.schemas.run import Arch, Os, RecordKind, Requirement, SourceKind

MAX_MANIFEST_BYTES = 64 * 1024 * 1024


class ManifestApp(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    id: Annotated[str, Meta(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._/@+-]+$")]
    title: Annotated[str, Meta(min_length=1)]
    argv: Annotated[list[str], Meta(min_length=1)]
    description: str = ""
    kind: RecordKind = "cli"
    os: Os = "linux"
    arch: Arch = "any"
    version: str = ""
    binaries: list[str] = msgspec.field(default_factory=list)
    tags: list[str] = msgspec.field(default_factory=list)
    keywords: list[str] = msgspec.field(default_factory=list)
    homepage: str = ""
    terminal: bool = False
    # unset: installed when argv[0] resolves on PATH at sync time
    installed: bool | None = None
    publisher: str = ""
    repo: str = ""
    channel: str = ""
    variant: str = ""
    requirements: list[Requirement] = msgspec.field(default_factory=list)


class Manifest(msgspec.Struct, forbid_unknown_fields=True):
    version: Annotated[int, Meta(ge=1, le=1)]
    apps: list[ManifestApp]


_requirements_encoder = msgspec.json.Encoder()


class ManifestFileSettings(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The manifest file, or a directory of `*.json` manifests (a sync without one fails)."""

    path: str | None = None


class RemoteIndexSettings(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The manifest's http(s) URL, and how long its fetch may take."""

    url: HttpUrl
    timeout_s: TimeoutS = 30


class _ManifestSource(Source[Settings]):
    """What the manifest sources share: records from parsed manifests, launched by argv."""

    provider: SourceKind = "registry"

    config_needs = (("path",), ("url",))

    def detect(self, environ: Mapping[str, str]) -> str | None:
        # needs a path or URL in its config, so never enabled on a first start
        return "needs config.path or config.url"

    def sync_result(
        self, manifests: list[tuple[str, Manifest]], environ: Mapping[str, str], *, verified: bool
    ) -> SyncResult:
        path_value = environ.get("PATH", os.defpath)
        records: dict[str, AppRecord] = {}
        for _origin, manifest in manifests:
            for app in manifest.apps:
                records.setdefault(app.id, to_record(app, path_value, verified=verified))
        return SyncResult(
            records=[records[key] for key in sorted(records)],
            details={"manifests": [origin for origin, _ in manifests], "verified": verified},
        )

    def launch_plan(
        self, record: AppRecord, settings: Settings, details: Mapping[str, Any]
    ) -> LaunchPlan:
        requirements: list[Requirement] = []
        encoded = record.extra_value("requirements")
        if encoded:
            requirements = msgspec.json.decode(encoded, type=list[Requirement])
        if not record.installed:
            requirements.append(
                Requirement(
                    kind="command",
                    name=record.argv[0],
                    message=f"{record.argv[0]} is not installed on this machine",
                )
            )
        return LaunchPlan(argv=list(record.argv), requirements=requirements)


class ManifestSource(_ManifestSource[ManifestFileSettings]):
    """`trusted-list-file` (records `verified`) and `manifest-registry`: manifests on disk."""

    settings_type = ManifestFileSettings

    def __init__(self, source_type: str, *, trusted: bool) -> None:
        self.source_type = source_type
        self.trusted = trusted

    def sync(self, ctx: SyncContext[ManifestFileSettings]) -> SyncResult:
        path = ctx.settings.path
        if not path:
            raise SourceUnavailable("config.path is required")
        manifests = [
            (str(file), decode_manifest(read(file), str(file))) for file in files(Path(path))
        ]
        return self.sync_result(manifests, ctx.environ, verified=self.trusted)


class RemoteIndexSource(_ManifestSource[RemoteIndexSettings]):
    """`manifest-remote-index`: one manifest over HTTP(S), `verified` when pinned."""

    source_type = "manifest-remote-index"
    trusted = False
    settings_type = RemoteIndexSettings

    def sync(self, ctx: SyncContext[RemoteIndexSettings]) -> SyncResult:
        url = ctx.settings.url
        body = fetch(url, timeout=ctx.settings.timeout_s)
        if ctx.pin_sha256:
            digest = hashlib.sha256(body).hexdigest()
            if digest != ctx.pin_sha256.lower():
                raise SourceUnavailable(
                    f"{url}: sha256 {digest} does not match the pinned {ctx.pin_sha256}"
                )
        manifests = [(url, decode_manifest(body, url))]
        return self.sync_result(manifests, ctx.environ, verified=bool(ctx.pin_sha256))


def files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(path.glob("*.json"))
    if not path.exists():
        raise SourceUnavailable(f"{path}: no such file")
    return [path]


def read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SourceUnavailable(f"{path}: {exc.strerror}") from exc


def fetch(url: str, *, timeout: float) -> bytes:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body: bytes = response.read(MAX_MANIFEST_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise SourceUnavailable(f"{url}: HTTP {exc.code}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise SourceUnavailable(f"{url}: {getattr(exc, 'reason', exc)}") from exc
    if len(body) > MAX_MANIFEST_BYTES:
        raise SourceUnavailable(f"{url}: manifest larger than {MAX_MANIFEST_BYTES} bytes")
    return body


def decode_manifest(body: bytes, origin: str) -> Manifest:
    try:
        return msgspec.json.decode(body, type=Manifest)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise SourceUnavailable(f"{origin}: invalid manifest: {exc}") from exc


def to_record(app: ManifestApp, path_value: str, *, verified: bool) -> AppRecord:
    installed = app.installed
    if installed is None:
        program = app.argv[0]
        installed = (
            os.access(program, os.X_OK)
            if "/" in program
            else shutil.which(program, path=path_value) is not None
        )
    extra: list[tuple[str, str]] = []
    if app.requirements:
        extra.append(("requirements", _requirements_encoder.encode(app.requirements).decode()))
    if verified:
        extra.append(("verified", "true"))
    binaries = app.binaries or [Path(app.argv[0]).name]
    return AppRecord(
        ident=app.id,
        name=app.id.rsplit("/", 1)[-1],
        title=app.title,
        description=app.description,
        kind=app.kind,
        os=app.os,
        arch=app.arch,
        version=app.version,
        binaries=tuple(binaries),
        tags=tuple(app.tags),
        keywords=tuple(app.keywords),
        homepage=app.homepage,
        installed=installed,
        argv=tuple(app.argv),
        terminal=app.terminal,
        publisher=app.publisher,
        repo=app.repo,
        channel=app.channel,
        variant=app.variant,
        extra=tuple(extra),
    )
