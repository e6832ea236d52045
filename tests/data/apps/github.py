"""A GitHub REST API on 127.0.0.1 for the release source's tests: repository and release
JSON shaped as api.github.com answers it, ETags with 304s, and release files with real
bytes (tarballs holding the program, checksum lists that hash them)."""

from __future__ import annotations

import hashlib
import io
import tarfile
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


def program(name: str) -> bytes:
    return f'#!/bin/sh\necho "{name} $*"\n'.encode()


def tar_holding(top: str, binary: str, mode: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as tar:
        for path, data in ((f"{top}/README.md", b"readme"), (f"{top}/{binary}", program(binary))):
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.mtime = len(data), 0o755, 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@dataclass
class FakeRelease:
    tag: str
    assets: list[str]
    binary: str
    prerelease: bool = False
    # asset name -> how its checksum is published: "digest" (GitHub's field) or a file
    checksums: str = "none"  # none | own | list:<file name> | digest
    files: dict[str, bytes] = field(default_factory=dict)
    digests: dict[str, str] = field(default_factory=dict)

    def build(self) -> None:
        for name in self.assets:
            top = name.removesuffix(".tar.gz").removesuffix(".tar.xz")
            if name.endswith(".tar.gz"):
                self.files[name] = tar_holding(top, self.binary, "w:gz")
            elif name.endswith(".tar.xz"):
                self.files[name] = tar_holding(top, self.binary, "w:xz")
            else:
                self.files[name] = program(name)
        sums = {n: hashlib.sha256(b).hexdigest() for n, b in self.files.items()}
        if self.checksums == "own":
            for name in self.assets:
                if name.endswith(".sha256"):
                    target = name.removesuffix(".sha256")
                    self.files[name] = f"{sums[target]}  {target}\n".encode()
        elif self.checksums.startswith("list:"):
            listing = self.checksums.split(":", 1)[1]
            self.files[listing] = "".join(
                f"{digest}  {name}\n" for name, digest in sorted(sums.items()) if name != listing
            ).encode()
        elif self.checksums == "digest":
            self.digests = {n: "sha256:" + d for n, d in sums.items()}


@dataclass
class FakeRepo:
    owner: str
    name: str
    description: str
    homepage: str
    topics: list[str]
    releases: list[FakeRelease]


class FakeGitHub:
    """Serves /repos/{owner}/{repo}, …/releases, …/releases/tags/{tag} and the files."""

    def __init__(self, repos: list[FakeRepo]) -> None:
        self.repos = {f"{r.owner}/{r.name}": r for r in repos}
        for repo in repos:
            for release in repo.releases:
                release.build()
        self.base = ""
        self.seen_auth: list[str | None] = []
        self.hits: list[tuple[str, int]] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/repos/{owner}/{repo}", self.repo)
        app.router.add_get("/repos/{owner}/{repo}/releases", self.releases)
        app.router.add_get("/repos/{owner}/{repo}/releases/tags/{tag}", self.tag)
        app.router.add_get("/download/{owner}/{repo}/{tag}/{name}", self.download)
        return app

    def _json(self, request: web.Request, body: Any) -> web.Response:
        self.seen_auth.append(request.headers.get("Authorization"))
        response = web.json_response(body)
        etag = '"' + hashlib.sha1(response.body).hexdigest() + '"'  # type: ignore[arg-type]
        if request.headers.get("If-None-Match") == etag:
            self.hits.append((request.path, 304))
            return web.Response(status=304, headers={"ETag": etag})
        self.hits.append((request.path, 200))
        response.headers["ETag"] = etag
        response.headers["X-RateLimit-Remaining"] = "4999"
        return response

    def _repo(self, request: web.Request) -> FakeRepo:
        key = f"{request.match_info['owner']}/{request.match_info['repo']}"
        if key not in self.repos:
            raise web.HTTPNotFound(
                text='{"message":"Not Found","status":"404"}', content_type="application/json"
            )
        return self.repos[key]

    async def repo(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        full = f"{repo.owner}/{repo.name}"
        return self._json(
            request,
            {
                "id": 1,
                "node_id": "R_kgDO",
                "name": repo.name,
                "full_name": full,
                "private": False,
                "owner": {"login": repo.owner, "id": 2, "type": "User"},
                "html_url": f"https://github.com/{full}",
                "description": repo.description,
                "fork": False,
                "url": f"{self.base}/repos/{full}",
                "homepage": repo.homepage,
                "stargazers_count": 1,
                "topics": repo.topics,
                "default_branch": "master",
                "archived": False,
                "license": {"key": "mit", "name": "MIT License", "spdx_id": "MIT"},
            },
        )

    def _release(self, repo: FakeRepo, release: FakeRelease, number: int) -> dict[str, Any]:
        full = f"{repo.owner}/{repo.name}"
        assets = []
        for i, name in enumerate(sorted(release.files)):
            assets.append(
                {
                    "url": f"{self.base}/repos/{full}/releases/assets/{number * 1000 + i}",
                    "id": number * 1000 + i,
                    "node_id": "RA_kwDO",
                    "name": name,
                    "label": "",
                    "uploader": {"login": "github-actions[bot]", "id": 41898282, "type": "Bot"},
                    "content_type": "application/octet-stream",
                    "state": "uploaded",
                    "size": len(release.files[name]),
                    "digest": release.digests.get(name),
                    "download_count": 10,
                    "created_at": "2024-09-08T17:00:00Z",
                    "updated_at": "2024-09-08T17:00:01Z",
                    "browser_download_url": f"{self.base}/download/{full}/{release.tag}/{name}",
                }
            )
        return {
            "url": f"{self.base}/repos/{full}/releases/{number}",
            "assets_url": f"{self.base}/repos/{full}/releases/{number}/assets",
            "html_url": f"https://github.com/{full}/releases/tag/{release.tag}",
            "id": number,
            "author": {"login": repo.owner, "id": 2, "type": "User"},
            "node_id": "RE_kwDO",
            "tag_name": release.tag,
            "target_commitish": "master",
            "name": release.tag,
            "draft": False,
            "prerelease": release.prerelease,
            "created_at": "2024-09-08T16:00:00Z",
            "published_at": "2024-09-08T17:00:00Z",
            "assets": assets,
            "tarball_url": f"{self.base}/repos/{full}/tarball/{release.tag}",
            "zipball_url": f"{self.base}/repos/{full}/zipball/{release.tag}",
            "body": "",
        }

    async def releases(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        per_page = int(request.query.get("per_page", "30"))
        body = [self._release(repo, r, n) for n, r in enumerate(repo.releases, 1)]
        return self._json(request, body[:per_page])

    async def tag(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        for number, release in enumerate(repo.releases, 1):
            if release.tag == request.match_info["tag"]:
                return self._json(request, self._release(repo, release, number))
        raise web.HTTPNotFound()

    async def download(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        for release in repo.releases:
            if release.tag == request.match_info["tag"]:
                body = release.files.get(request.match_info["name"])
                if body is not None:
                    self.hits.append((request.path, 200))
                    return web.Response(body=body)
        raise web.HTTPNotFound()
