"""`app-image-pinned` and `app-image-catalog`: AppImages (or binaries, archives) at pinned
URLs, launched through the download-verify-run command of `hoodyd.apps.integrity`.

`app-image-pinned` takes its apps from the source's own config: one app (`url`, `sha256`,
`name`, …) or a list under `apps`. `sha256` is required: the user pins the exact file, so
these records are `verified`. `author_pubkey_ed25519` with `sig_ed25519` (base64, the
signature of the file's bytes) adds a signature check.

`app-image-catalog` reads a catalogue, `{"version": 1, "apps": [...]}` with the same entry
fields, from `config.path` or `config.url` (an http(s) URL; the source's `pin.sha256`
pins the catalogue's bytes). Its records carry each entry's `integrity`; they are
`verified` when the catalogue is pinned or the entry is signed.

Sync does no download of the programs themselves: the launch command fetches and checks
them on first use and keeps them in the download cache (a cached copy counts as installed).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from hoodyd.apps.catalog.records import (
    AppRecord,
    LaunchPlan,
    SourceUnavailable,
    SyncContext,
    SyncResult,
)
from hoodyd.apps.catalog.sources.base import HttpUrl, Source, TimeoutS
from hoodyd.apps.catalog.sources.manifest import fetch, read
from hoodyd.apps.integrity import (
    FetchKind,
    FetchSpec,
    IntegrityError,
    check_ed25519_material,
    fetch_argv,
    is_cached,
    normalize_sha256,
)
from hoodyd.schemas.run import Arch, Integrity, RecordKind, SourceKind

_encoder = msgspec.json.Encoder()


class AppFields(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The fields of one pinned or catalogued program but its `url` and `name`."""

    sha256: str | None = None
    # what the record shows and a selector matches
    title: str = ""
    description: str = ""
    kind: RecordKind = "gui"
    arch: Arch = "any"
    version: str = ""
    homepage: str = ""
    tags: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    # appimage | binary | archive | compressed | deb; unset: read from the URL's file name
    format: FetchKind | None = None
    # the program inside an archive (default: `name`)
    binary: str | None = None
    args: tuple[str, ...] = ()
    terminal: bool = False
    # a signature of the file's bytes (base64), checked besides its sha256
    author_pubkey_ed25519: str | None = None
    sig_ed25519: str | None = None


AppName = Annotated[str, Meta(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._+@-]+$")]


class RemoteApp(AppFields, frozen=True, kw_only=True):
    """One pinned or catalogued program."""

    url: HttpUrl
    name: AppName


class PinnedSettings(AppFields, frozen=True, kw_only=True):
    """The pinned programs: one inline (`url`, `name` and the fields of `AppFields`; the
    source's `pin.sha256` stands in for a missing `sha256`) or a list under `apps`."""

    url: HttpUrl | None = None
    name: AppName | None = None
    apps: tuple[RemoteApp, ...] | None = None

    def inline_app(self, pin_sha256: str | None) -> RemoteApp | None:
        """The inline program; None when the config names none."""
        if self.url is None and self.name is None:
            return None
        if self.url is None or self.name is None:
            missing = "config.url" if self.url is None else "config.name"
            raise SourceUnavailable(f"{missing} is required (or config.apps)")
        fields = {name: getattr(self, name) for name in AppFields.__struct_fields__}
        fields["sha256"] = self.sha256 or pin_sha256
        return RemoteApp(url=self.url, name=self.name, **fields)


class CatalogSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Where the catalogue is read: a file (`path`) or an http(s) URL fetched within
    `timeout_s` (the URL wins when both are set; a sync with neither fails)."""

    path: str | None = None
    url: HttpUrl | None = None
    timeout_s: TimeoutS = 30


class Catalog(msgspec.Struct, forbid_unknown_fields=True):
    version: Annotated[int, Meta(ge=1, le=1)]
    apps: list[RemoteApp]


def file_name(url: str) -> str:
    tail = url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    return tail or "download"


def remote_record(
    spec: FetchSpec,
    *,
    ident: str,
    name: str,
    title: str,
    environ: Mapping[str, str],
    verified: bool,
    kind: RecordKind,
    args: Sequence[str] = (),
    notes: list[str] | None = None,
    facts: tuple[tuple[str, str], ...] = (),
    **fields: Any,
) -> AppRecord:
    """A record whose launch is the download-verify-run command of `spec`; `extra` holds
    the spec, the candidate's `integrity` and `verified` for the planner and policy."""
    extra: list[tuple[str, str]] = [
        ("fetch", _encoder.encode(spec).decode()),
        ("integrity", _encoder.encode(spec.integrity()).decode()),
    ]
    if verified:
        extra.append(("verified", "true"))
    if args:
        extra.append(("args", _encoder.encode(args).decode()))
    if notes:
        extra.append(("notes", _encoder.encode(notes).decode()))
    extra.extend(facts)
    return AppRecord(
        ident=ident,
        name=name,
        title=title,
        kind=kind,
        binaries=fields.pop("binaries", None) or (spec.binary or name,),
        installed=is_cached(environ, spec),
        extra=tuple(extra),
        **fields,
    )


def record_integrity(record: AppRecord) -> Integrity | None:
    """The `integrity` of a record made by `remote_record`."""
    encoded = record.extra_value("integrity")
    return msgspec.json.decode(encoded, type=Integrity) if encoded else None


def plan_remote(record: AppRecord) -> LaunchPlan:
    encoded = record.extra_value("fetch")
    if encoded is None:
        raise SourceUnavailable(f"{record.ident}: record has no download facts")
    spec = msgspec.json.decode(encoded, type=FetchSpec)
    args_value = record.extra_value("args")
    args = msgspec.json.decode(args_value, type=list[str]) if args_value else []
    notes_value = record.extra_value("notes")
    notes = msgspec.json.decode(notes_value, type=list[str]) if notes_value else []
    checks = []
    if spec.sha256:
        checks.append("sha256")
    if spec.pubkey_ed25519 and spec.sig_ed25519:
        checks.append("ed25519 signature")
    if checks:
        lead = f"downloads {spec.url} into the cache; checks {' and '.join(checks)} before running"
    else:
        lead = f"downloads {spec.url}; no checksum is published, so it runs unverified"
    if record.installed:
        lead = f"runs the verified copy of {spec.name} in the download cache"
    return LaunchPlan(argv=fetch_argv(spec, args), notes=[lead, *notes])


def app_spec(app: RemoteApp, origin: str, *, require_sha256: bool) -> FetchSpec:
    """Check one entry and turn it into a FetchSpec; a bad entry fails the sync."""
    sha: str | None = None
    try:
        if app.sha256:
            sha = normalize_sha256(app.sha256)
        elif require_sha256:
            raise IntegrityError("sha256 is required")
        if bool(app.author_pubkey_ed25519) != bool(app.sig_ed25519):
            raise IntegrityError("author_pubkey_ed25519 and sig_ed25519 go together")
        if app.author_pubkey_ed25519 and app.sig_ed25519:
            check_ed25519_material(app.author_pubkey_ed25519, app.sig_ed25519)
    except IntegrityError as exc:
        raise SourceUnavailable(f"{origin}: app {app.name}: {exc}") from exc
    name = file_name(app.url)
    kind = app.format or kind_of(name)
    return FetchSpec(
        url=app.url,
        name=name,
        kind=kind,
        sha256=sha,
        binary=app.binary or (app.name if kind in ("archive", "deb", "compressed") else None),
        pubkey_ed25519=app.author_pubkey_ed25519,
        sig_ed25519=app.sig_ed25519,
    )


def kind_of(name: str) -> FetchKind:
    """What a pinned file is, from its name (the user picked it, so no OS/arch check)."""
    lower = name.lower()
    if lower.endswith(".appimage"):
        return "appimage"
    if lower.endswith(".deb"):
        return "deb"
    if lower.endswith((".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2", ".tbz2", ".zip")):
        return "archive"
    if lower.endswith((".gz", ".xz", ".bz2")):
        return "compressed"
    return "binary"


def app_record(
    app: RemoteApp, spec: FetchSpec, environ: Mapping[str, str], *, verified: bool
) -> AppRecord:
    return remote_record(
        spec,
        ident=app.name,
        name=app.name,
        title=app.title or app.name,
        environ=environ,
        verified=verified,
        kind=app.kind,
        args=app.args,
        description=app.description,
        arch=app.arch,
        version=app.version,
        homepage=app.homepage,
        tags=tuple(app.tags),
        keywords=tuple(app.keywords),
        terminal=app.terminal,
    )


class PinnedSource(Source[PinnedSettings]):
    source_type = "app-image-pinned"
    provider: SourceKind = "appimage"
    trusted = False
    settings_type = PinnedSettings

    config_needs = (("url",), ("apps",))

    def detect(self, environ: Mapping[str, str]) -> str | None:
        return "needs config.url and config.sha256 (or config.apps)"

    def sync(self, ctx: SyncContext[PinnedSettings]) -> SyncResult:
        settings = ctx.settings
        if settings.apps is not None:
            apps = list(settings.apps)
        else:
            inline = settings.inline_app(ctx.pin_sha256)
            apps = [inline] if inline is not None else []
        if not apps:
            raise SourceUnavailable("config.url and config.sha256 (or config.apps) are required")
        records: dict[str, AppRecord] = {}
        for app in apps:
            spec = app_spec(app, "config", require_sha256=True)
            # the user pinned this exact file; the launch refuses anything else
            records.setdefault(app.name, app_record(app, spec, ctx.environ, verified=True))
        return SyncResult(
            records=[records[k] for k in sorted(records)],
            details={"apps": len(records), "signed": sum(1 for a in apps if a.sig_ed25519)},
        )

    def launch_plan(
        self, record: AppRecord, settings: PinnedSettings, details: Mapping[str, Any]
    ) -> LaunchPlan:
        return plan_remote(record)


class CatalogSource(Source[CatalogSettings]):
    source_type = "app-image-catalog"
    provider: SourceKind = "appimage"
    trusted = False
    settings_type = CatalogSettings

    config_needs = (("path",), ("url",))

    def detect(self, environ: Mapping[str, str]) -> str | None:
        return "needs config.path or config.url"

    def sync(self, ctx: SyncContext[CatalogSettings]) -> SyncResult:
        url = ctx.settings.url
        path = ctx.settings.path
        pinned = False
        if url:
            body, origin = fetch(url, timeout=ctx.settings.timeout_s), url
        elif path:
            body, origin = read(Path(path)), path
        else:
            raise SourceUnavailable("config.path or config.url is required")
        if ctx.pin_sha256:
            digest = hashlib.sha256(body).hexdigest()
            if digest != ctx.pin_sha256.lower():
                raise SourceUnavailable(
                    f"{origin}: sha256 {digest} does not match the pinned {ctx.pin_sha256}"
                )
            pinned = True
        try:
            catalog = msgspec.json.decode(body, type=Catalog)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise SourceUnavailable(f"{origin}: invalid catalog: {exc}") from exc
        records: dict[str, AppRecord] = {}
        for app in catalog.apps:
            spec = app_spec(app, origin, require_sha256=False)
            signed = bool(spec.pubkey_ed25519 and spec.sig_ed25519 and spec.sha256)
            record = app_record(app, spec, ctx.environ, verified=pinned or signed)
            records.setdefault(app.name, record)
        return SyncResult(
            records=[records[k] for k in sorted(records)],
            details={
                "origin": origin,
                "catalog_pinned": pinned,
                "apps": len(records),
                "without_sha256": sorted(a.name for a in catalog.apps if not a.sha256),
            },
        )

    def launch_plan(
        self, record: AppRecord, settings: CatalogSettings, details: Mapping[str, Any]
    ) -> LaunchPlan:
        return plan_remote(record)


__all__ = ["CatalogSource", "PinnedSource", "plan_remote", "record_integrity", "remote_record"]
