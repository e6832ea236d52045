"""`app-image-git-hub-releases`: programs from the releases of GitHub repositories.

Sync asks the GitHub REST API (`config.api_url`, default https://api.github.com; GitHub
Enterprise serves the same API under `https://HOST/api/v3`) for each configured repository
and its releases, picks the release the hints ask for (`release` tag, `version` prefix,
`channel` stable or prerelease), chooses the asset for the target OS/arch/libc
(`hoodyd.apps.catalog.assets`) and reads its sha256 from the release's checksum files or GitHub's
own asset digest. Responses are cached on disk with their ETag and asked for again with
`If-None-Match`, so an unchanged repository costs a 304 (which GitHub does not count
against the rate limit). The token (`config.token`, or the variable named by
`config.token_env`, default `GITHUB_TOKEN`) goes only into the Authorization header: it
is never logged, stored in the index or put into an error message.

A repository whose chosen release has no asset for the target is a sync error that lists
every asset with the reason it was rejected; with several repositories the others still
sync and the failure is listed in the sync details. Network failures fail the sync, so
the source keeps its last good index and diagnostics show why.

Launch is the download-verify-run command of `hoodyd.apps.integrity`.

The module is a little over 500 lines because it is one protocol end to end (settings, the
cached REST client, release choice, checksum lookup, records): asset choice, the part that
grows with every new platform, already lives in `hoodyd.apps.catalog.assets`.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import msgspec
from msgspec import Meta, Struct

from hoodyd.apps.catalog.assets import (
    DEFAULT_PREFER,
    Asset,
    AssetKind,
    Choice,
    Target,
    checksums_from_text,
    choose,
    host_target,
)
from hoodyd.apps.catalog.records import (
    AppRecord,
    LaunchPlan,
    SourceUnavailable,
    SyncContext,
    SyncResult,
)
from hoodyd.apps.catalog.sources.appimage import plan_remote, remote_record
from hoodyd.apps.catalog.sources.base import HttpUrl, Source, TimeoutS
from hoodyd.apps.integrity import FetchSpec, IntegrityError, normalize_sha256
from hoodyd.schemas.run import RecordKind, SourceKind

DEFAULT_API = "https://api.github.com"
MAX_CHECKSUM_BYTES = 1 << 20
MAX_API_BYTES = 32 << 20
_PRERELEASE_CHANNELS = {"prerelease", "pre", "beta", "alpha", "rc", "nightly", "edge", "unstable"}


class GhAsset(msgspec.Struct):
    name: str
    browser_download_url: str
    size: int = 0
    digest: str | None = None


class GhRelease(msgspec.Struct):
    tag_name: str
    name: str | None = None
    draft: bool = False
    prerelease: bool = False
    html_url: str = ""
    published_at: str | None = None
    assets: list[GhAsset] = msgspec.field(default_factory=list)


class GhRepo(msgspec.Struct):
    full_name: str = ""
    description: str | None = None
    homepage: str | None = None
    html_url: str = ""
    topics: list[str] = msgspec.field(default_factory=list)


RepoName = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")]
# the repository fields a source-wide key of the same name stands in for
_REPO_DEFAULTS = ("asset", "release", "channel", "version", "kind", "title", "binary", "args")
# ... and those that name one program, so stand in only when there is one repository
_ONE_PROGRAM = ("title", "binary", "args")


class RepoConfig(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One repository (`owner/name`); unset fields take the source-wide value of the same
    key."""

    repo: RepoName
    binary: str | None = None
    title: str | None = None
    kind: RecordKind | None = None
    asset: str | None = None
    release: str | None = None
    channel: str | None = None
    version: str | None = None
    args: tuple[str, ...] = ()


class GitHubReleasesSettings(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The repositories to index and how to pick their releases and assets, and how to
    reach the GitHub API."""

    # the repositories: `repo` and each of `repos` (a name or a `RepoConfig`)
    repo: RepoName | None = None
    repos: tuple[RepoName | RepoConfig, ...] = ()
    # source-wide values of the repository fields (`title`, `binary` and `args` only
    # apply when there is a single repository)
    asset: str | None = None
    release: str | None = None
    channel: str | None = None
    version: str | None = None
    kind: RecordKind | None = None
    title: str | None = None
    binary: str | None = None
    args: tuple[str, ...] | None = None
    # which releases become records (the newest `releases` that match) and which asset of
    # each: the one for this target (unset parts: this machine) in the `prefer` order;
    # `alternatives` adds the best asset of each other format as a record of its own
    releases: Annotated[int, Meta(ge=1)] = 1
    os: str | None = None
    arch: str | None = None
    libc: str | None = None
    prefer: Annotated[tuple[AssetKind, ...], Meta(min_length=1)] = DEFAULT_PREFER
    alternatives: bool = False
    # the API: its URL, the token (or the variable holding it), releases asked per page,
    # where answers are cached with their ETag, how long a request may take
    api_url: HttpUrl = DEFAULT_API
    token: str | None = None
    token_env: str = "GITHUB_TOKEN"
    per_page: Annotated[int, Meta(ge=1, le=100)] = 30
    cache_dir: str | None = None
    timeout_s: TimeoutS = 30


class CachedResponse(msgspec.Struct):
    etag: str
    body: bytes


class GitHubClient:
    """A small GitHub REST client for sync threads: ETag cache on disk, optional token."""

    def __init__(self, api_url: str, token: str, cache_dir: Path, timeout: float) -> None:
        self.api_url = api_url.rstrip("/")
        self._token = token
        self.cache_dir = cache_dir
        self.timeout = timeout
        self.requests = 0
        self.not_modified = 0

    def _cache_file(self, url: str) -> Path:
        # keyed by URL and whether the answer was authorized (a private repo differs)
        key = hashlib.sha256(f"{url}|{bool(self._token)}".encode()).hexdigest()
        return self.cache_dir / f"{key}.msgpack"

    def get_json(self, path: str) -> bytes:
        url = self.api_url + path
        cache_file = self._cache_file(url)
        cached: CachedResponse | None = None
        try:
            cached = msgspec.msgpack.decode(cache_file.read_bytes(), type=CachedResponse)
        except (OSError, msgspec.DecodeError, msgspec.ValidationError):
            cached = None
        headers = {
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
            "User-Agent": "hoodyd",
        }
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        if cached is not None:
            headers["If-None-Match"] = cached.etag
        request = urllib.request.Request(url, headers=headers)
        self.requests += 1
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body: bytes = response.read(MAX_API_BYTES)
                etag = response.headers.get("ETag")
        except urllib.error.HTTPError as exc:
            if exc.code == 304 and cached is not None:
                self.not_modified += 1
                return cached.body
            raise SourceUnavailable(_http_error(url, exc)) from exc
        except (urllib.error.URLError, OSError) as exc:
            raise SourceUnavailable(f"{url}: {getattr(exc, 'reason', exc)}") from exc
        if etag:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_suffix(".tmp")
            tmp.write_bytes(msgspec.msgpack.encode(CachedResponse(etag=etag, body=body)))
            tmp.replace(cache_file)
        return body

    def get_file(self, url: str) -> bytes:
        """A release file (a checksum list): immutable once published, so cached for good."""
        cache_file = self.cache_dir / ("file-" + hashlib.sha256(url.encode()).hexdigest() + ".bin")
        try:
            return cache_file.read_bytes()
        except OSError:
            pass
        # a token is not sent to download hosts: browser_download_url redirects elsewhere
        request = urllib.request.Request(url, headers={"User-Agent": "hoodyd"})
        self.requests += 1
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body: bytes = response.read(MAX_CHECKSUM_BYTES + 1)
        except urllib.error.HTTPError as exc:
            raise SourceUnavailable(_http_error(url, exc)) from exc
        except (urllib.error.URLError, OSError) as exc:
            raise SourceUnavailable(f"{url}: {getattr(exc, 'reason', exc)}") from exc
        if len(body) > MAX_CHECKSUM_BYTES:
            raise SourceUnavailable(f"{url}: checksum file larger than {MAX_CHECKSUM_BYTES} bytes")
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        cache_file.write_bytes(body)
        return body


def _http_error(url: str, exc: urllib.error.HTTPError) -> str:
    if exc.code in (403, 429) and exc.headers.get("X-RateLimit-Remaining") == "0":
        reset = exc.headers.get("X-RateLimit-Reset", "?")
        return f"{url}: GitHub API rate limit reached (resets at epoch {reset}); set a token"
    if exc.code == 401:
        return f"{url}: HTTP 401 (the token was refused)"
    if exc.code == 404:
        return f"{url}: HTTP 404 (no such repository or release)"
    return f"{url}: HTTP {exc.code}"


def repo_configs(settings: GitHubReleasesSettings) -> list[RepoConfig]:
    listed = [RepoConfig(repo=settings.repo)] if settings.repo is not None else []
    listed.extend(RepoConfig(repo=i) if isinstance(i, str) else i for i in settings.repos)
    if not listed:
        raise SourceUnavailable("config.repo (owner/name) or config.repos is required")
    single = len(listed) == 1
    out: list[RepoConfig] = []
    for item in listed:
        defaults: dict[str, Any] = {}
        for key in _REPO_DEFAULTS:
            value = getattr(settings, key)
            if getattr(item, key) in (None, ()) and value is not None:
                if key in _ONE_PROGRAM and not single:
                    continue  # one program's name is not every repository's
                defaults[key] = value
        out.append(msgspec.structs.replace(item, **defaults) if defaults else item)
    return out


def pick_releases(
    releases: list[GhRelease], repo: RepoConfig, count: int
) -> tuple[list[GhRelease], str]:
    """The releases the hints select, newest first (the API lists newest first)."""
    channel = (repo.channel or "stable").lower()
    allow_pre = channel in _PRERELEASE_CHANNELS
    selected: list[GhRelease] = []
    for release in releases:
        if release.draft:
            continue
        if repo.release is not None and release.tag_name != repo.release:
            continue
        if repo.release is None and release.prerelease and not allow_pre:
            continue
        if repo.version is not None and not _version_matches(repo.version, release.tag_name):
            continue
        selected.append(release)
    hints = [f"channel {channel}"]
    if repo.release:
        hints.append(f"release {repo.release}")
    if repo.version:
        hints.append(f"version {repo.version}")
    return selected[:count], ", ".join(hints)


def _version_matches(wanted: str, tag: str) -> bool:
    wanted = wanted.lower().removeprefix("v")
    version = tag.lower().removeprefix("v")
    if wanted.endswith("*"):
        return version.startswith(wanted.rstrip("*"))
    # "14" matches 14.1.1 but not 140.0
    return version == wanted or version.startswith(wanted + ".") or version.startswith(wanted + "-")


def display_version(tag: str) -> str:
    return tag[1:] if tag[:1] in ("v", "V") and tag[1:2].isdigit() else tag


def asset_sha256(
    client: GitHubClient, choice: Choice, assets: list[GhAsset]
) -> tuple[str | None, str]:
    """The chosen asset's sha256 and where it came from. A checksum file and GitHub's
    digest that disagree are an error: one of them is not what the publisher built."""
    assert choice.chosen is not None
    name = choice.chosen.asset.name
    urls = {a.name: a.browser_download_url for a in assets}
    from_file: tuple[str, str] | None = None
    for candidate in choice.checksum_assets:
        text = client.get_file(urls[candidate.name]).decode(errors="replace")
        sums = checksums_from_text(text)
        digest = sums.get(name)
        if digest is None and list(sums) == [""]:
            digest = sums[""]  # NAME.sha256 holding the bare hash
        if digest is not None:
            from_file = (digest, candidate.name)
            break
    github = choice.chosen.asset.digest
    github_sha: str | None = None
    if github.startswith("sha256:"):
        try:
            github_sha = normalize_sha256(github)
        except IntegrityError:
            github_sha = None
    if from_file and github_sha and from_file[0] != github_sha:
        raise SourceUnavailable(
            f"{name}: {from_file[1]} says sha256 {from_file[0]} but GitHub's digest is "
            f"{github_sha}; refusing an asset whose checksums disagree"
        )
    if from_file:
        return from_file[0], f"sha256 from {from_file[1]}"
    if github_sha:
        return github_sha, "sha256 from GitHub's asset digest"
    return None, "no checksum published for this asset"


class GitHubReleasesSource(Source[GitHubReleasesSettings]):
    source_type = "app-image-git-hub-releases"
    provider: SourceKind = "appimage"
    trusted = False
    settings_type = GitHubReleasesSettings

    config_needs = (("repo",), ("repos",))

    def detect(self, environ: Mapping[str, str]) -> str | None:
        return "needs config.repo or config.repos"

    def sync(self, ctx: SyncContext[GitHubReleasesSettings]) -> SyncResult:
        settings = ctx.settings
        repos = repo_configs(settings)
        target = self.target(settings)
        prefer = settings.prefer
        count = settings.releases
        token = settings.token or ctx.environ.get(settings.token_env, "")
        client = GitHubClient(
            settings.api_url, token, self.cache_dir(settings, ctx.environ), settings.timeout_s
        )
        per_page = settings.per_page
        alternatives = settings.alternatives
        records: list[AppRecord] = []
        errors: dict[str, str] = {}
        chosen: dict[str, Any] = {}
        for repo in repos:
            ctx.check_cancelled()
            try:
                made, facts = self.sync_repo(
                    client, repo, target, prefer, count, per_page, ctx, alternatives
                )
            except SourceUnavailable as exc:
                errors[repo.repo] = str(exc)
                continue
            records.extend(made)
            chosen[repo.repo] = facts
            ctx.report(repos_done=len(chosen) + len(errors))
        if errors and not records:
            raise SourceUnavailable("; ".join(errors.values()))
        return SyncResult(
            records=sorted(records, key=lambda r: r.ident),
            details={
                "api_url": client.api_url,
                "target": {"os": target.os, "arch": target.arch, "libc": target.libc},
                "authenticated": bool(token),
                "repos": chosen,
                "errors": errors,
                "requests": client.requests,
                "not_modified": client.not_modified,
            },
        )

    def sync_repo(
        self,
        client: GitHubClient,
        repo: RepoConfig,
        target: Target,
        prefer: tuple[AssetKind, ...],
        count: int,
        per_page: int,
        ctx: SyncContext[GitHubReleasesSettings],
        alternatives: bool = False,
    ) -> tuple[list[AppRecord], dict[str, Any]]:
        quoted = "/".join(urllib.parse.quote(part, safe="") for part in repo.repo.split("/"))
        meta: GhRepo = _decode(client.get_json(f"/repos/{quoted}"), GhRepo, repo.repo)
        releases: list[GhRelease] = _decode(
            client.get_json(f"/repos/{quoted}/releases?per_page={per_page}"),
            list[GhRelease],
            repo.repo,
        )
        if repo.release is not None and all(r.tag_name != repo.release for r in releases):
            tag = urllib.parse.quote(repo.release, safe="")
            releases = [
                _decode(client.get_json(f"/repos/{quoted}/releases/tags/{tag}"), GhRelease, tag)
            ]
        picked, hints = pick_releases(releases, repo, count)
        if not picked:
            raise SourceUnavailable(f"{repo.repo}: no release matches {hints}")
        binary = repo.binary or repo.repo.split("/", 1)[1]
        records: list[AppRecord] = []
        facts: dict[str, Any] = {}
        failures: list[str] = []
        for position, release in enumerate(picked):
            assets = [
                Asset(a.name, a.browser_download_url, a.size, a.digest or "")
                for a in release.assets
            ]
            choice = choose(assets, target, asset_hint=repo.asset, prefer=prefer, program=binary)
            if choice.chosen is None:
                reasons = "; ".join(f"{name}: {why}" for name, why in choice.rejected)
                failures.append(
                    f"{repo.repo} {release.tag_name}: no asset for "
                    f"{target.os}/{target.arch} ({target.libc}): {reasons or 'no assets'}"
                )
                continue
            ident = repo.repo if position == 0 else f"{repo.repo}@{release.tag_name}"
            chosen: list[tuple[str, Choice]] = [(ident, choice)]
            if position == 0 and alternatives:
                # the best asset of every other format, each its own record: the selector's
                # `variant` (appimage, archive, deb, …) then picks among them
                for other in prefer:
                    if other == choice.chosen.kind:
                        continue
                    alt = choose(
                        assets, target, asset_hint=repo.asset, prefer=(other,), program=binary
                    )
                    if alt.chosen is not None:
                        chosen.append((f"{repo.repo}#{other}", alt))
            for record_ident, one in chosen:
                records.append(
                    self.release_record(
                        client, repo, meta, release, one, record_ident, target, binary, hints, ctx
                    )
                )
            facts[release.tag_name] = {
                "asset": choice.chosen.asset.name,
                "alternatives": [one.chosen.asset.name for _, one in chosen[1:] if one.chosen],
                "why": choice.why,
            }
        if not records:
            raise SourceUnavailable(" | ".join(failures))
        return records, {"releases": facts, "skipped": failures}

    def release_record(
        self,
        client: GitHubClient,
        repo: RepoConfig,
        meta: GhRepo,
        release: GhRelease,
        choice: Choice,
        ident: str,
        target: Target,
        binary: str,
        hints: str,
        ctx: SyncContext[GitHubReleasesSettings],
    ) -> AppRecord:
        assert choice.chosen is not None
        sha, sha_note = asset_sha256(client, choice, release.assets)
        asset = choice.chosen.asset
        kind = choice.chosen.kind or "binary"
        spec = FetchSpec(
            url=asset.url,
            name=asset.name,
            kind=kind,
            sha256=sha,
            binary=binary if kind in ("archive", "deb", "compressed") else None,
        )
        record_kind = repo.kind or ("gui" if kind == "appimage" else "cli")
        short = repo.repo.split("/", 1)[1]
        notes = [f"release {release.tag_name} ({hints})", f"chose {choice.why}", sha_note]
        return remote_record(
            spec,
            ident=ident,
            name=short,
            title=repo.title or short,
            environ=ctx.environ,
            verified=False,
            kind="gui" if record_kind == "gui" else "cli",
            args=repo.args,
            notes=[*notes, *choice.notes()],
            # the release tag and asset name, for the selector's `release` and `asset` hints
            facts=(("release", release.tag_name), ("asset", asset.name)),
            description=meta.description or release.name or "",
            os=target.os,
            arch=target.arch,
            version=display_version(release.tag_name),
            homepage=meta.homepage or meta.html_url,
            tags=tuple(meta.topics),
            binaries=(binary,),
            publisher=repo.repo.split("/", 1)[0],
            repo=repo.repo,
            channel="prerelease" if release.prerelease else "stable",
            variant=kind + (f"-{choice.chosen.libc}" if choice.chosen.libc else ""),
            terminal=record_kind != "gui",
        )

    @staticmethod
    def target(settings: GitHubReleasesSettings) -> Target:
        host = host_target()
        return Target(
            os=settings.os or host.os,
            arch=settings.arch or host.arch,
            libc=settings.libc or host.libc,
        )

    @staticmethod
    def cache_dir(settings: GitHubReleasesSettings, environ: Mapping[str, str]) -> Path:
        if settings.cache_dir:
            return Path(settings.cache_dir)
        base = environ.get("XDG_CACHE_HOME") or os.path.join(
            environ.get("HOME") or os.path.expanduser("~"), ".cache"
        )
        return Path(base) / "hoodyd" / "github"

    def launch_plan(
        self, record: AppRecord, settings: GitHubReleasesSettings, details: Mapping[str, Any]
    ) -> LaunchPlan:
        return plan_remote(record)


def _decode(body: bytes, type_: Any, origin: str) -> Any:
    try:
        return msgspec.json.decode(body, type=type_)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise SourceUnavailable(f"{origin}: unexpected GitHub API answer: {exc}") from exc
