"""Integrity of downloaded programs: sha256 and ed25519 checks, and the launch command that
downloads, verifies and runs a remote AppImage, binary or archive.

A launch plan for a remote file is `python -m hoodyd.apps.integrity --url URL --sha256 HEX …
-- ARGS`: the URL, hashes, key and arguments are argv items, never text inside a shell
script, so nothing a release or a user names can reach a shell. Python rather than
`sh -c`, because ed25519 needs a real crypto library (`cryptography`) and `sha256sum`,
`openssl` and `fusermount` differ from box to box.

What the command does, in order:

1. reuse `CACHE/<sha256>/<name>` when it is there and still hashes right; else download
   into a private temporary file (mode 0600) in that directory;
2. check the sha256 and, when given, the ed25519 signature over the file's bytes — on a
   mismatch delete the download, say so and exit 3, so the file is never executable;
3. only then rename it into place and mark it executable (archives are unpacked here and
   the program found by name);
4. exec it, with `--appimage-extract-and-run` for an AppImage on a box without FUSE.

`CACHE` is `$HOODYD_DOWNLOAD_CACHE`, else `$XDG_CACHE_HOME/hoodyd/downloads`, else
`~/.cache/hoodyd/downloads`.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import bz2
import gzip
import hashlib
import io
import lzma
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Literal, get_args

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from hoodyd.childenv import tool_environment
from hoodyd.schemas.run import Integrity

FetchKind = Literal["appimage", "binary", "archive", "compressed", "deb"]
INTEGRITY_FAILED = 3
DOWNLOAD_FAILED = 4
CHUNK = 1 << 20


class IntegrityError(Exception):
    """A file does not match its pinned hash or signature, or a key is malformed."""


class FetchSpec(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the launch command needs to fetch, verify and start one remote file."""

    url: str
    name: str
    kind: FetchKind = "binary"
    sha256: str | None = None
    # the program inside an archive or .deb, found by file name
    binary: str | None = None
    pubkey_ed25519: str | None = None
    sig_ed25519: str | None = None

    def integrity(self) -> Integrity:
        return Integrity(
            url=self.url,
            sha256=self.sha256,
            author_pubkey_ed25519=self.pubkey_ed25519,
            sig_ed25519=self.sig_ed25519,
        )


# --- checks --------------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def normalize_sha256(value: str) -> str:
    """Lower-case hex; a `sha256:` prefix (GitHub's asset digests) is accepted."""
    hex_value = value.strip().lower().removeprefix("sha256:")
    if len(hex_value) != 64 or any(ch not in "0123456789abcdef" for ch in hex_value):
        raise IntegrityError(f"not a sha256 hex digest: {value!r}")
    return hex_value


def _b64(value: str, size: int, what: str) -> bytes:
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise IntegrityError(f"{what} is not base64") from exc
    if len(raw) != size:
        raise IntegrityError(f"{what} must be {size} bytes, not {len(raw)}")
    return raw


def check_ed25519_material(pubkey_b64: str, sig_b64: str) -> None:
    """Fail early (at sync) on a key or signature that can never verify."""
    _b64(pubkey_b64, 32, "author_pubkey_ed25519")
    _b64(sig_b64, 64, "sig_ed25519")


def verify_ed25519(data: bytes, pubkey_b64: str, sig_b64: str) -> None:
    """Raise IntegrityError unless `sig_b64` is the key's ed25519 signature of `data`."""
    key = Ed25519PublicKey.from_public_bytes(_b64(pubkey_b64, 32, "author_pubkey_ed25519"))
    try:
        key.verify(_b64(sig_b64, 64, "sig_ed25519"), data)
    except InvalidSignature as exc:
        raise IntegrityError("ed25519 signature does not verify with the author's key") from exc


# --- the launch command ----------------------------------------------------------------------


def fetch_argv(spec: FetchSpec, args: Sequence[str] = ()) -> list[str]:
    """The argv that downloads, verifies and runs `spec` with `args`."""
    argv = [sys.executable, "-m", "hoodyd.apps.integrity", "--url", spec.url]
    argv += ["--name", spec.name, "--kind", spec.kind]
    if spec.sha256:
        argv += ["--sha256", spec.sha256]
    if spec.binary:
        argv += ["--binary", spec.binary]
    if spec.pubkey_ed25519 and spec.sig_ed25519:
        argv += ["--pubkey-ed25519", spec.pubkey_ed25519, "--sig-ed25519", spec.sig_ed25519]
    return [*argv, "--", *args]


def cache_root(environ: Mapping[str, str]) -> Path:
    if environ.get("HOODYD_DOWNLOAD_CACHE"):
        return Path(environ["HOODYD_DOWNLOAD_CACHE"])
    base = environ.get("XDG_CACHE_HOME") or os.path.join(
        environ.get("HOME") or os.path.expanduser("~"), ".cache"
    )
    return Path(base) / "hoodyd" / "downloads"


def entry_dir(environ: Mapping[str, str], spec: FetchSpec) -> Path:
    key = spec.sha256 or "url-" + hashlib.sha256(spec.url.encode()).hexdigest()[:40]
    return cache_root(environ) / key


def is_cached(environ: Mapping[str, str], spec: FetchSpec) -> bool:
    """True when a verified copy is in the cache (so launching needs no network)."""
    entry = entry_dir(environ, spec)
    if spec.kind in ("appimage", "binary"):
        return (entry / spec.name).is_file()
    return (entry / "unpacked").is_dir()


def fuse_available(environ: Mapping[str, str]) -> bool:
    path = environ.get("PATH", os.defpath)
    helper = shutil.which("fusermount3", path=path) or shutil.which("fusermount", path=path)
    return os.path.exists("/dev/fuse") and helper is not None


def _refuse(message: str) -> int:
    print(f"hoodyd: refusing to run: {message}", file=sys.stderr)
    return INTEGRITY_FAILED


def _download(url: str, target_dir: Path) -> Path:
    fd, name = tempfile.mkstemp(prefix=".download-", dir=target_dir)  # mode 0600
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            while chunk := response.read(CHUNK):
                out.write(chunk)
    except BaseException:
        os.unlink(name)
        raise
    return Path(name)


def _verify(path: Path, spec: FetchSpec) -> str | None:
    """None when `path` is what `spec` pins, else what is wrong."""
    if spec.sha256:
        actual = sha256_file(path)
        expected = normalize_sha256(spec.sha256)
        if actual != expected:
            return f"sha256 mismatch for {spec.url}: expected {expected}, got {actual}"
    if spec.pubkey_ed25519 and spec.sig_ed25519:
        try:
            verify_ed25519(path.read_bytes(), spec.pubkey_ed25519, spec.sig_ed25519)
        except IntegrityError as exc:
            return f"{exc} for {spec.url}"
    return None


def _unpack(archive: Path, kind: FetchKind, name: str, dest: Path, binary: str) -> None:
    dest.mkdir(parents=True)
    lower = name.lower()
    if kind == "archive" and lower.endswith(".zip"):
        with zipfile.ZipFile(archive) as zipped:
            zipped.extractall(dest)  # zipfile drops absolute and ".." parts of member names
    elif kind == "archive":
        with tarfile.open(archive) as tarred:
            tarred.extractall(dest, filter="data")  # no links out, no devices, no setuid
    elif kind == "deb":
        if shutil.which("dpkg-deb"):
            # an unpacker needs no more than the base every child gets (and TMPDIR)
            env = tool_environment("dpkg-deb")
            subprocess.run(["dpkg-deb", "-x", str(archive), str(dest)], check=True, env=env)
        else:
            _unpack_deb(archive, dest)
    else:  # a single compressed program
        decompress: Callable[[bytes], bytes] | None = None
        for suffix, function in ((".gz", gzip.decompress), (".xz", lzma.decompress),
                                 (".bz2", bz2.decompress)):  # fmt: skip
            if lower.endswith(suffix):
                decompress = function
        if decompress is None:
            raise IntegrityError(f"cannot decompress {name}")
        (dest / binary).write_bytes(decompress(archive.read_bytes()))


def _unpack_deb(archive: Path, dest: Path) -> None:
    """A .deb is an `ar` archive whose `data.tar.*` member holds the files."""
    data = archive.read_bytes()
    if not data.startswith(b"!<arch>\n"):
        raise IntegrityError(f"{archive.name} is not a .deb (ar) archive")
    offset = 8
    while offset + 60 <= len(data):
        header = data[offset : offset + 60]
        member = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        body = data[offset + 60 : offset + 60 + size]
        if member.startswith("data.tar"):
            with tarfile.open(fileobj=io.BytesIO(body)) as tarred:
                tarred.extractall(dest, filter="data")
            return
        offset += 60 + size + (size % 2)
    raise IntegrityError(f"{archive.name} has no data.tar member")


def _find_program(root: Path, binary: str) -> Path | None:
    found = [p for p in root.rglob(binary) if p.is_file() and not p.is_symlink()]
    # an executable file first, then the shallowest (bin/rg over doc/examples/rg)
    found.sort(key=lambda p: (not os.access(p, os.X_OK), len(p.relative_to(root).parts), str(p)))
    return found[0] if found else None


def prepare(spec: FetchSpec, environ: Mapping[str, str]) -> Path:
    """The verified, executable program of `spec`, downloading it when not cached.
    Raises IntegrityError on a mismatch and OSError/URLError on download failure."""
    if not spec.url.startswith(("https://", "http://")):
        # file:// and other schemes would turn a release's URL into a local file read
        raise IntegrityError(f"only http(s) downloads are run, not {spec.url}")
    entry = entry_dir(environ, spec)
    entry.mkdir(parents=True, exist_ok=True)
    downloaded = entry / spec.name
    if downloaded.is_file():
        problem = _verify(downloaded, spec)
        if problem is not None:  # the cached copy changed since: never run it
            downloaded.unlink()
            raise IntegrityError(f"cached copy changed: {problem}")
    else:
        temporary = _download(spec.url, entry)
        problem = _verify(temporary, spec)
        if problem is not None:
            temporary.unlink()
            raise IntegrityError(problem)
        if not spec.sha256:
            print(
                f"hoodyd: {spec.name} has no published sha256; it runs unverified",
                file=sys.stderr,
            )
        temporary.rename(downloaded)
    if spec.kind in ("appimage", "binary"):
        downloaded.chmod(0o755)  # only ever after the checks above
        return downloaded
    binary = spec.binary or spec.name.split("-")[0].split("_")[0]
    unpacked = entry / "unpacked"
    if not unpacked.is_dir():
        staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=entry))
        shutil.rmtree(staging)
        _unpack(downloaded, spec.kind, spec.name, staging, binary)
        try:
            staging.rename(unpacked)
        except OSError:
            # another launch of the same file unpacked it first: use that copy
            shutil.rmtree(staging, ignore_errors=True)
            if not unpacked.is_dir():
                raise
    program = _find_program(unpacked, binary)
    if program is None:
        names = sorted(p.name for p in unpacked.rglob("*") if p.is_file())[:12]
        raise IntegrityError(f"no file named {binary} in {spec.name} (it has {', '.join(names)})")
    program.chmod(program.stat().st_mode | 0o755)
    return program


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="hoodyd-fetch", description="Download, verify and run a program."
    )
    parser.add_argument("--url", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--kind", default="binary", choices=list(get_args(FetchKind)))
    parser.add_argument("--sha256")
    parser.add_argument("--binary")
    parser.add_argument("--pubkey-ed25519")
    parser.add_argument("--sig-ed25519")
    parser.add_argument("args", nargs="*")
    ns = parser.parse_args(argv)
    spec = FetchSpec(
        url=ns.url,
        name=os.path.basename(ns.name) or "download",
        kind=ns.kind,
        sha256=ns.sha256,
        binary=ns.binary,
        pubkey_ed25519=ns.pubkey_ed25519,
        sig_ed25519=ns.sig_ed25519,
    )
    try:
        program = prepare(spec, os.environ)
    except IntegrityError as exc:
        return _refuse(str(exc))
    except (OSError, urllib.error.URLError) as exc:
        print(f"hoodyd: cannot download {spec.url}: {exc}", file=sys.stderr)
        return DOWNLOAD_FAILED
    flags: list[str] = []
    if spec.kind == "appimage" and not fuse_available(os.environ):
        # the type-2 AppImage runtime then unpacks itself to a temp dir instead of mounting
        flags.append("--appimage-extract-and-run")
    os.execv(program, [str(program), *flags, *ns.args])
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
