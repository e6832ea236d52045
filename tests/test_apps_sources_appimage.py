"""Pinned and catalogued AppImages: the launch command downloads from a loopback server,
checks sha256 and a real ed25519 signature before the file is executable, refuses a
mismatch, unpacks archives and finds the program by name."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import os
import stat
import tarfile
from pathlib import Path

import msgspec
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from hoodyd.apps.catalog.records import SourceUnavailable, SyncContext
from hoodyd.apps.catalog.sources import SOURCES, InvalidSettings
from hoodyd.apps.catalog.sources.appimage import record_integrity
from hoodyd.apps.integrity import FetchSpec, IntegrityError, prepare, verify_ed25519

# a stand-in AppImage: what matters here is the bytes that are checked and then executed
APPIMAGE = b'#!/bin/sh\necho "ran: $*"\n'


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def key_pair() -> tuple[Ed25519PrivateKey, str]:
    private = Ed25519PrivateKey.generate()
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return private, b64(public)


def tarball(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


async def serve(aiohttp_server, files: dict[str, bytes]):
    async def handler(request: web.Request) -> web.Response:
        body = files.get(request.match_info["name"])
        if body is None:
            raise web.HTTPNotFound()
        return web.Response(body=body)

    app = web.Application()
    app.router.add_get("/dl/{name}", handler)
    return await aiohttp_server(app, host="127.0.0.1")


async def run(argv: list[str], cache: Path, path_dir: Path) -> tuple[int, str, str]:
    """Run a planned argv the way a terminal would, with a PATH that has no fusermount."""
    env = {"PATH": str(path_dir), "XDG_CACHE_HOME": str(cache), "HOME": str(cache)}
    proc = await asyncio.create_subprocess_exec(
        *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    return proc.returncode or 0, out.decode(), err.decode()


def sync(source_type: str, config: dict, cache: Path, pin: str | None = None):
    ctx = SyncContext(
        SOURCES[source_type].settings(config),
        environ={"XDG_CACHE_HOME": str(cache)},
        pin_sha256=pin,
    )
    return SOURCES[source_type].sync(ctx)


def plan(source_type: str, record) -> list[str]:
    return SOURCES[source_type].plan(record, {}, {}).argv


def test_real_signature_verifies_and_a_forged_one_does_not() -> None:
    """An ed25519 signature by the author's key verifies; another key's signature fails."""
    private, public = key_pair()
    signature = b64(private.sign(APPIMAGE))
    verify_ed25519(APPIMAGE, public, signature)
    with pytest.raises(IntegrityError, match="does not verify"):
        verify_ed25519(APPIMAGE + b"tampered", public, signature)
    other, _ = key_pair()
    with pytest.raises(IntegrityError, match="does not verify"):
        verify_ed25519(APPIMAGE, public, b64(other.sign(APPIMAGE)))
    with pytest.raises(IntegrityError, match="32 bytes"):
        verify_ed25519(APPIMAGE, b64(b"short"), signature)


async def test_pinned_signed_appimage_runs_after_verification(
    aiohttp_server, short_tmp: Path
) -> None:
    """The planned command downloads, verifies hash and signature, marks the file executable
    only then, and runs it with --appimage-extract-and-run when FUSE is missing."""
    private, public = key_pair()
    server = await serve(aiohttp_server, {"Tool-1.0-x86_64.AppImage": APPIMAGE})
    url = str(server.make_url("/dl/Tool-1.0-x86_64.AppImage"))
    sha = hashlib.sha256(APPIMAGE).hexdigest()
    config = {
        "url": url,
        "sha256": sha,
        "name": "tool",
        "title": "Tool",
        "args": ["--flag"],
        "author_pubkey_ed25519": public,
        "sig_ed25519": b64(private.sign(APPIMAGE)),
    }
    cache, empty_path = short_tmp / "cache", short_tmp / "path"
    empty_path.mkdir()
    record = sync("app-image-pinned", config, cache).records[0]
    assert (record.ident, record.title, record.installed) == ("tool", "Tool", False)
    assert record.extra_value("verified") == "true"
    integrity = record_integrity(record)
    assert integrity is not None and (integrity.url, integrity.sha256) == (url, sha)
    assert integrity.author_pubkey_ed25519 == public
    argv = plan("app-image-pinned", record)
    assert argv[-2:] == ["--", "--flag"] and url in argv
    code, out, err = await run([*argv, "hello world"], cache, empty_path)
    assert code == 0, err
    assert out == "ran: --appimage-extract-and-run --flag hello world\n"
    cached = cache / "hoodyd" / "downloads" / sha / "Tool-1.0-x86_64.AppImage"
    assert cached.stat().st_mode & stat.S_IXUSR
    # a second sync sees the verified copy in the cache
    assert sync("app-image-pinned", config, cache).records[0].installed


async def test_checksum_mismatch_refuses_and_leaves_nothing_executable(
    aiohttp_server, short_tmp: Path
) -> None:
    """A download whose sha256 differs from the pin is deleted and never run."""
    server = await serve(aiohttp_server, {"evil.AppImage": APPIMAGE + b"echo pwned\n"})
    config = {
        "url": str(server.make_url("/dl/evil.AppImage")),
        "sha256": hashlib.sha256(APPIMAGE).hexdigest(),
        "name": "evil",
    }
    cache, empty_path = short_tmp / "cache", short_tmp / "path"
    empty_path.mkdir()
    record = sync("app-image-pinned", config, cache).records[0]
    code, out, err = await run(plan("app-image-pinned", record), cache, empty_path)
    assert code == 3 and out == ""
    assert "refusing to run: sha256 mismatch" in err and config["url"] in err
    leftovers = [p for p in (cache / "hoodyd" / "downloads").rglob("*") if p.is_file()]
    assert leftovers == []


async def test_bad_signature_refuses(aiohttp_server, short_tmp: Path) -> None:
    """A right hash with a signature by another key is refused."""
    _, public = key_pair()
    forger, _ = key_pair()
    server = await serve(aiohttp_server, {"app.AppImage": APPIMAGE})
    config = {
        "url": str(server.make_url("/dl/app.AppImage")),
        "sha256": hashlib.sha256(APPIMAGE).hexdigest(),
        "name": "app",
        "author_pubkey_ed25519": public,
        "sig_ed25519": b64(forger.sign(APPIMAGE)),
    }
    cache, empty_path = short_tmp / "cache", short_tmp / "path"
    empty_path.mkdir()
    record = sync("app-image-pinned", config, cache).records[0]
    code, _, err = await run(plan("app-image-pinned", record), cache, empty_path)
    assert code == 3 and "ed25519 signature does not verify" in err


async def test_archive_is_unpacked_and_the_program_found_by_name(
    aiohttp_server, short_tmp: Path
) -> None:
    """An archive is unpacked after verification and its program found by file name."""
    archive = tarball(
        {
            "rg-14/doc/rg.md": b"docs",
            "rg-14/rg": b'#!/bin/sh\necho "rg $*"\n',
        }
    )
    server = await serve(aiohttp_server, {"rg-14-x86_64-unknown-linux-musl.tar.gz": archive})
    config = {
        "apps": [
            {
                "url": str(server.make_url("/dl/rg-14-x86_64-unknown-linux-musl.tar.gz")),
                "sha256": hashlib.sha256(archive).hexdigest(),
                "name": "ripgrep",
                "binary": "rg",
                "kind": "cli",
            }
        ]
    }
    cache, empty_path = short_tmp / "cache", short_tmp / "path"
    empty_path.mkdir()
    record = sync("app-image-pinned", config, cache).records[0]
    code, out, err = await run([*plan("app-image-pinned", record), "-n", "x"], cache, empty_path)
    assert (code, out) == (0, "rg -n x\n"), err


def test_only_http_downloads_are_run(short_tmp: Path) -> None:
    """A download URL with another scheme (file://) is refused before anything is read."""
    spec = FetchSpec(url="file:///etc/hostname", name="hostname", sha256="0" * 64)
    with pytest.raises(IntegrityError, match="only http"):
        prepare(spec, {"XDG_CACHE_HOME": str(short_tmp)})
    assert not (short_tmp / "hoodyd").exists()


def test_pinned_config_errors() -> None:
    """A pinned app without sha256, or with half a signature, fails the sync clearly; a URL
    that is not http(s) is refused before any sync, by the source's settings."""
    cache = Path("/nonexistent")
    with pytest.raises(SourceUnavailable, match="sha256 is required"):
        sync("app-image-pinned", {"url": "https://example.org/a.AppImage", "name": "a"}, cache)
    with pytest.raises(SourceUnavailable, match="go together"):
        sync(
            "app-image-pinned",
            {
                "url": "https://example.org/a.AppImage",
                "name": "a",
                "sha256": "0" * 64,
                "sig_ed25519": b64(b"x" * 64),
            },
            cache,
        )
    with pytest.raises(InvalidSettings, match=r"config\.url"):
        sync("app-image-pinned", {"url": "file:///etc/passwd", "name": "a"}, cache)
    with pytest.raises(InvalidSettings, match=r"config\.apps\[0\]\.url"):
        sync("app-image-pinned", {"apps": [{"url": "file:///etc/passwd", "name": "a"}]}, cache)
    # the source's pin supplies the hash when the config has none
    pinned = sync(
        "app-image-pinned",
        {"url": "https://example.org/a.AppImage", "name": "a"},
        cache,
        pin="A" * 64,
    )
    assert record_integrity(pinned.records[0]).sha256 == "a" * 64  # type: ignore[union-attr]


async def test_catalog_over_http_with_pin(aiohttp_server, short_tmp: Path) -> None:
    """A catalogue's entries become records; a pinned catalogue makes them verified, and a
    catalogue that changed under its pin fails the sync."""
    catalog = {
        "version": 1,
        "apps": [
            {
                "name": "obsidian",
                "title": "Obsidian",
                "url": "https://github.com/obsidianmd/obsidian-releases/releases/download/"
                "v1.7.7/Obsidian-1.7.7.AppImage",
                "sha256": "1" * 64,
                "version": "1.7.7",
                "tags": ["notes"],
            },
            {"name": "nosum", "url": "https://example.org/nosum.AppImage"},
        ],
    }
    body = json.dumps(catalog).encode()
    server = await serve(aiohttp_server, {"catalog.json": body})
    cache = short_tmp / "cache"
    url = str(server.make_url("/dl/catalog.json"))
    result = await asyncio.to_thread(
        sync, "app-image-catalog", {"url": url}, cache, hashlib.sha256(body).hexdigest()
    )
    records = {r.ident: r for r in result.records}
    assert records["obsidian"].extra_value("verified") == "true"
    assert records["obsidian"].version == "1.7.7" and records["obsidian"].kind == "gui"
    assert result.details["without_sha256"] == ["nosum"]
    assert record_integrity(records["nosum"]).sha256 is None  # type: ignore[union-attr]
    notes = SOURCES["app-image-catalog"].plan(records["nosum"], {}, {}).notes
    assert "runs unverified" in notes[0]
    unpinned = await asyncio.to_thread(sync, "app-image-catalog", {"url": url}, cache)
    assert all(r.extra_value("verified") is None for r in unpinned.records)
    with pytest.raises(SourceUnavailable, match="does not match the pinned"):
        await asyncio.to_thread(sync, "app-image-catalog", {"url": url}, cache, "0" * 64)
    local = short_tmp / "catalog.json"
    local.write_text(json.dumps({"version": 1, "apps": [{"name": "x"}]}))
    with pytest.raises(SourceUnavailable, match="invalid catalog"):
        sync("app-image-catalog", {"path": str(local)}, cache)


def test_fetch_spec_round_trips_in_the_record() -> None:
    """The record keeps the fetch facts as JSON the planner can decode."""
    record = sync(
        "app-image-pinned",
        {"url": "https://example.org/x.AppImage", "name": "x", "sha256": "f" * 64},
        Path(os.devnull),
    ).records[0]
    fetch = msgspec.json.decode(record.extra_value("fetch") or "{}")
    assert fetch["kind"] == "appimage" and fetch["name"] == "x.AppImage"


def ar_archive(members: list[tuple[str, bytes]]) -> bytes:
    """A real `ar` archive (the container of a .deb)."""
    out = bytearray(b"!<arch>\n")
    for name, data in members:
        header = f"{name:<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(data):<10}`\n"
        out += header.encode() + data + (b"\n" if len(data) % 2 else b"")
    return bytes(out)


def tar_of(members: dict[str, bytes], mode: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


async def test_compressed_binary_and_deb_are_unpacked(aiohttp_server, short_tmp: Path) -> None:
    """A gzip-compressed single binary and a .deb package are unpacked after the check and
    their program run."""
    import gzip

    program = b'#!/bin/sh\necho "tool $*"\n'
    deb = ar_archive(
        [
            ("debian-binary", b"2.0\n"),
            ("control.tar.gz", tar_of({"./control": b"Package: tool\nVersion: 1\n"
                                       b"Architecture: amd64\nMaintainer: x <x@example.org>\n"
                                       b"Description: tool\n"}, "w:gz")),
            ("data.tar.xz", tar_of({"./usr/bin/tool": program}, "w:xz")),
        ]
    )  # fmt: skip
    files = {"tool-linux-amd64.gz": gzip.compress(program), "tool_1_amd64.deb": deb}
    server = await serve(aiohttp_server, files)
    cache, empty_path = short_tmp / "cache", short_tmp / "path"
    empty_path.mkdir()
    for file_name, body in files.items():
        config = {
            "url": str(server.make_url(f"/dl/{file_name}")),
            "sha256": hashlib.sha256(body).hexdigest(),
            "name": "tool",
            "kind": "cli",
        }
        record = sync("app-image-pinned", config, cache).records[0]
        code, out, err = await run([*plan("app-image-pinned", record), "x"], cache, empty_path)
        assert (code, out) == (0, "tool x\n"), (file_name, err)
