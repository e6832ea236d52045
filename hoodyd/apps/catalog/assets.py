"""Release asset choice: which file of a GitHub release runs on this machine.

Names are all a release tells about its files, so the rules read OS, architecture, libc and
format from the name the way eget and ubi do, with the aliases projects actually use
(`x86_64`/`amd64`/`x64`/`linux64`, `aarch64`/`arm64`, `darwin`/`macos`/`osx`/`apple`,
`windows`/`win64`/`msvc`, `musl` vs `gnu`). Every asset that is not chosen gets a reason,
so a user can see why the release offered nothing for this box. Checksum files next to the
assets (`*.sha256`, `*.sha256sum`, `checksums.txt`, `SHA256SUMS`, …) are found here and read
by `checksums_from_text`.
"""

from __future__ import annotations

import fnmatch
import os
import platform
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

AssetKind = Literal["appimage", "binary", "archive", "compressed", "deb"]
DEFAULT_PREFER: tuple[AssetKind, ...] = ("appimage", "binary", "archive", "compressed", "deb")

_B = r"(?:^|[^a-z0-9])"  # a boundary: start, or a separator such as - _ . +
_E = r"(?=$|[^a-z0-9])"
ARCH_PATTERNS: dict[str, re.Pattern[str]] = {
    "amd64": re.compile(_B + r"(?:x86[_-]64|amd64|x64|x86-64|linux64|win64|64-?bit)" + _E),
    "arm64": re.compile(_B + r"(?:aarch64|arm64|armv8l?|arm64e)" + _E),
}
# architectures this daemon never runs; found after the two above, so x86_64 is not "x86"
OTHER_ARCH = re.compile(
    _B + r"(?:i[3-6]86|386|x86|32-?bit|linux32|win32|armv[5-7][a-z0-9]*|armhf|armel|arm"
    r"|gnueabihf|musleabihf?|ppc[a-z0-9]*|powerpc[a-z0-9]*|s390x|mips[a-z0-9]*"
    r"|riscv[a-z0-9]*|loong[a-z0-9]*|sparc[a-z0-9]*|universal)" + _E
)
OS_PATTERNS: dict[str, re.Pattern[str]] = {
    # android names carry "linux" too (aarch64-linux-android), so it is checked first
    "android": re.compile(_B + r"(?:android|termux)" + _E),
    "linux": re.compile(_B + r"(?:linux(?:64|32)?|ubuntu|debian|unknown-linux|linux-gnu)" + _E),
    "darwin": re.compile(_B + r"(?:darwin|macos|mac|osx|apple|macos11|macos12)" + _E),
    "windows": re.compile(_B + r"(?:windows|win|win32|win64|msvc|mingw(?:32|64)?|pc-windows)" + _E),
    "freebsd": re.compile(_B + r"freebsd" + _E),
    "openbsd": re.compile(_B + r"openbsd" + _E),
    "netbsd": re.compile(_B + r"netbsd" + _E),
    "illumos": re.compile(_B + r"(?:illumos|solaris|sunos)" + _E),
    "dragonfly": re.compile(_B + r"dragonfly" + _E),
}
MUSL = re.compile(r"musl")
GLIBC = re.compile(_B + r"(?:gnu|glibc)" + _E)
_ARCHIVES = (".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2", ".tbz2", ".tbz", ".tar.zst", ".zip")
_ARCHIVE_TAR_FIRST = (".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2", ".tbz2", ".tbz", ".tar.zst")
_COMPRESSED = (".gz", ".xz", ".bz2", ".zst")
_CHECKSUM_SUFFIXES = (".sha256", ".sha256sum", ".sha256sums", ".sha256.txt")
_CHECKSUM_NAMES = re.compile(
    r"(?:^|[-_.])(?:sha256sums?|shasums?|checksums?|sha256)(?:[-_.](?:txt|sum|sha256))?$"
    r"|^sha256\.sum$|checksums(?:[-_.][a-z0-9]+)*(?:\.txt)?$"
)
_METADATA = (
    ".sha512", ".sha512sum", ".sha1", ".md5", ".sig", ".asc", ".pem", ".crt", ".minisig",
    ".sbom", ".spdx", ".spdx.json", ".cdx.json", ".intoto.jsonl", ".sigstore", ".bundle",
    ".zsync", ".json", ".txt", ".yml", ".yaml", ".toml", ".md", ".sh", ".ps1", ".bat", ".py",
    ".pub", ".blockmap", ".asar.gz", ".whl",
)  # fmt: skip
_OTHER_PLATFORM_FORMATS = {
    ".exe": "a Windows executable",
    ".msi": "a Windows installer",
    ".msix": "a Windows installer",
    ".dmg": "a macOS disk image",
    ".pkg": "a macOS installer package",
    ".app.zip": "a macOS application bundle",
    ".rpm": "an RPM package (not unpacked here)",
    ".apk": "an Alpine or Android package",
    ".snap": "a snap package",
    ".flatpak": "a flatpak bundle",
    ".vsix": "an editor extension",
    ".nupkg": "a NuGet package",
}
_SOURCE = re.compile(_B + r"(?:src|source|sources|vendor|vendored|completions?|man|manpages?"
                     r"|man_page_only|docs?)" + _E)  # fmt: skip


@dataclass(frozen=True)
class Target:
    """The machine an asset must run on."""

    os: str = "linux"
    arch: str = "amd64"
    libc: str = "glibc"  # glibc | musl


@dataclass(frozen=True)
class Asset:
    name: str
    url: str = ""
    size: int = 0
    # GitHub's own `digest` ("sha256:<hex>") for assets uploaded since mid-2025
    digest: str = ""


@dataclass(frozen=True)
class Classified:
    asset: Asset
    kind: AssetKind | None
    os: str | None
    arch: str | None
    libc: str | None
    reject: str | None


@dataclass
class Choice:
    chosen: Classified | None
    why: str
    rejected: list[tuple[str, str]] = field(default_factory=list)
    # the files that may hold the chosen asset's sha256, most specific first
    checksum_assets: list[Asset] = field(default_factory=list)

    def notes(self) -> list[str]:
        return [f"rejected {name}: {reason}" for name, reason in self.rejected]


def host_target() -> Target:
    """This machine: OS, CPU and C library (musl when the dynamic loader is musl's)."""
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
        machine, machine
    )
    libc = "musl" if any(name.startswith("ld-musl") for name in _listdir("/lib")) else "glibc"
    return Target(os="linux", arch=arch, libc=libc)


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def is_checksum_file(name: str) -> bool:
    lower = name.lower()
    return lower.endswith(_CHECKSUM_SUFFIXES) or bool(_CHECKSUM_NAMES.search(lower))


def _suffix_kind(lower: str) -> tuple[AssetKind | None, str | None]:
    """The asset's format from its name, or why the file is not something to run."""
    if is_checksum_file(lower):
        return None, "checksum file"
    if lower.endswith(".appimage"):
        return "appimage", None
    if lower.endswith(".deb"):
        return "deb", None
    for suffix, what in _OTHER_PLATFORM_FORMATS.items():
        if lower.endswith(suffix):
            return None, f"{what}"
    if lower.endswith(_ARCHIVES):
        return "archive", None
    for suffix in _METADATA:
        if lower.endswith(suffix):
            return None, f"not a program ({suffix} file)"
    if lower.endswith(_COMPRESSED):
        return "compressed", None
    return "binary", None


def classify(asset: Asset, target: Target) -> Classified:
    lower = asset.name.lower()
    kind, reject = _suffix_kind(lower)
    os_found = next((name for name, rx in OS_PATTERNS.items() if rx.search(lower)), None)
    if kind in ("appimage", "deb") and os_found is None:
        os_found = "linux"  # both formats exist only for Linux
    arch = next((name for name, rx in ARCH_PATTERNS.items() if rx.search(lower)), None)
    if arch is None:
        other = OTHER_ARCH.search(lower)
        if other:
            arch = other.group(0).strip("-_.+")
    libc = "musl" if MUSL.search(lower) else ("glibc" if GLIBC.search(lower) else None)
    if reject is None and kind is not None:
        reject = _mismatch(kind, lower, os_found, arch, libc, target)
    return Classified(asset, kind if reject is None else None, os_found, arch, libc, reject)


def _mismatch(
    kind: AssetKind,
    lower: str,
    os_found: str | None,
    arch: str | None,
    libc: str | None,
    target: Target,
) -> str | None:
    if os_found is not None and os_found != target.os:
        return f"built for {os_found}, not {target.os}"
    if arch is not None and arch != target.arch:
        return f"built for {arch}, not {target.arch}"
    if os_found is None and arch is None:
        if _SOURCE.search(lower) or kind == "archive":
            return "no OS or architecture in the name (a source or data archive)"
        return "no OS or architecture in the name"
    if arch is None and kind == "appimage" and target.arch != "amd64":
        # AppImages without an architecture in their name are x86_64 builds in practice
        return f"no architecture in the name (taken as amd64), not {target.arch}"
    if arch is None and kind != "appimage" and target.arch != "amd64":
        return f"no architecture in the name, not known to run on {target.arch}"
    if libc == "glibc" and target.libc == "musl" and kind != "deb":
        return "linked against glibc; this machine uses musl"
    if _SOURCE.search(lower) and kind == "archive" and arch is None:
        return "a source or data archive"
    return None


def _rank(
    item: Classified, target: Target, prefer: Sequence[AssetKind], program: str
) -> tuple[int, ...]:
    lower = item.asset.name.lower()
    assert item.kind is not None
    kind_rank = len(prefer) - prefer.index(item.kind) if item.kind in prefer else 0
    # the native C library first (unmarked Linux builds are glibc builds in practice); a
    # static musl build runs everywhere, so it comes next
    if target.libc == "glibc":
        libc_rank = {"glibc": 2, None: 2, "musl": 1}[item.libc]
    else:
        libc_rank = {"musl": 2, None: 1, "glibc": 0}[item.libc]
    return (
        kind_rank,
        1 if item.os is not None else 0,
        1 if item.arch is not None else 0,
        # a release of several programs (kubectx and kubens) names each asset after one
        1 if program and program in lower else 0,
        libc_rank,
        1 if lower.endswith(_ARCHIVE_TAR_FIRST) else 0,  # tar keeps the executable bit
    )


def choose(
    assets: Iterable[Asset],
    target: Target,
    *,
    asset_hint: str | None = None,
    prefer: Sequence[AssetKind] = DEFAULT_PREFER,
    program: str = "",
) -> Choice:
    """The best asset of one release for `target`, every other asset with its reason, and
    the checksum files that may cover the chosen one."""
    listed = list(assets)
    rejected: list[tuple[str, str]] = []
    viable: list[Classified] = []
    hint = asset_hint.lower() if asset_hint else None
    for asset in listed:
        item = classify(asset, target)
        if item.reject == "checksum file":
            rejected.append((asset.name, "checksum file (read for verification, never run)"))
            continue
        if hint is not None and not _hint_matches(hint, asset.name.lower()):
            rejected.append((asset.name, f"does not match the asset hint {asset_hint!r}"))
            continue
        if item.kind is not None and item.kind not in prefer:
            rejected.append((asset.name, f"{item.kind} assets are not wanted by this source"))
            continue
        if item.reject is not None:
            rejected.append((asset.name, item.reject))
            continue
        viable.append(item)
    if not viable:
        return Choice(chosen=None, why="no asset for this target", rejected=rejected)
    viable.sort(key=lambda c: c.asset.name)
    viable.sort(key=lambda c: _rank(c, target, prefer, program.lower()), reverse=True)
    best = viable[0]
    for other in viable[1:]:
        described = _describe(best)
        article = "an" if described[0].lower() in "aeiou" else "a"
        rejected.append((other.asset.name, f"{article} {described} is preferred"))
    why = f"{_describe(best)} for {target.os}/{target.arch}" + (
        f" ({best.libc})" if best.libc else ""
    )
    return Choice(
        chosen=best,
        why=why,
        rejected=rejected,
        checksum_assets=checksum_candidates(best.asset.name, listed),
    )


def _hint_matches(hint: str, name: str) -> bool:
    if any(ch in hint for ch in "*?["):
        return fnmatch.fnmatchcase(name, hint)
    return hint in name


def _describe(item: Classified) -> str:
    return {
        "appimage": "AppImage",
        "binary": "raw binary",
        "archive": "archive",
        "compressed": "compressed binary",
        "deb": ".deb package",
    }[item.kind or "binary"] + (f" {item.asset.name}" if item.asset.name else "")


def checksum_candidates(name: str, assets: Sequence[Asset]) -> list[Asset]:
    """Checksum files for `name`: its own (`NAME.sha256`, `STEM.sha256sum`) before the
    release-wide lists (`checksums.txt`, `SHA256SUMS`)."""
    lower = name.lower()
    stem = lower
    for suffix in (*_ARCHIVES, ".appimage", ".deb", *_COMPRESSED):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    own: list[Asset] = []
    shared: list[Asset] = []
    for asset in assets:
        other = asset.name.lower()
        if not is_checksum_file(other):
            continue
        if any(other == base + suffix for base in (lower, stem) for suffix in _CHECKSUM_SUFFIXES):
            own.append(asset)
        elif not other.endswith(_CHECKSUM_SUFFIXES) or other.startswith(("sha256", "checksum")):
            shared.append(asset)
    return own + shared


_LINE = re.compile(r"^(?P<hex>[0-9a-fA-F]{64})(?:\s+[ *]?(?P<name>.+?))?\s*$")
_BSD = re.compile(r"^SHA256\s*\((?P<name>.+)\)\s*=\s*(?P<hex>[0-9a-fA-F]{64})\s*$")


def checksums_from_text(text: str) -> dict[str, str]:
    """`sha256sum`/`shasum -a 256` lines (`HEX  NAME`, `HEX *NAME`), BSD lines
    (`SHA256 (NAME) = HEX`) or a lone hash (key ""). Names are reduced to their basename."""
    out: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        match = _LINE.match(line) or _BSD.match(line)
        if match is None:
            continue
        name = (match.group("name") or "").strip().removeprefix("./")
        out[name.rsplit("/", 1)[-1]] = match.group("hex").lower()
    return out
