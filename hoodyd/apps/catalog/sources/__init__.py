"""Package sources, one module each, behind the `Source` interface of `base`."""

from __future__ import annotations

from typing import Any

from hoodyd.apps.sources.appimage import CatalogSource, PinnedSource
from hoodyd.apps.sources.apt import AptSource
from hoodyd.apps.sources.base import InvalidSettings, Source
from hoodyd.apps.sources.flatpak import FlatpakSource
from hoodyd.apps.sources.github_releases import GitHubReleasesSource
from hoodyd.apps.sources.manifest import ManifestSource, RemoteIndexSource
from hoodyd.apps.sources.nix import NixSource
from hoodyd.apps.sources.nix_flake import NixFlakeSource
from hoodyd.apps.sources.npm import NpmSource
from hoodyd.apps.sources.oci import OciSource
from hoodyd.apps.sources.pkgx import PkgxSource
from hoodyd.apps.sources.pypi import PypiSource
from hoodyd.apps.sources.system_path import SystemPathSource

SOURCES: dict[str, Source[Any]] = {
    "system-path": SystemPathSource(),
    "trusted-list-file": ManifestSource("trusted-list-file", trusted=True),
    "manifest-registry": ManifestSource("manifest-registry", trusted=False),
    "manifest-remote-index": RemoteIndexSource(),
    "nix-pkgs": NixSource(),
    "apt": AptSource(),
    "app-image-pinned": PinnedSource(),
    "app-image-catalog": CatalogSource(),
    "app-image-git-hub-releases": GitHubReleasesSource(),
    "pkgx": PkgxSource(),
    "oci-local-images": OciSource(),
    "flatpak": FlatpakSource(),
    "pypi": PypiSource(),
    "npm": NpmSource(),
    "nix-flake": NixFlakeSource(),
}

__all__ = ["SOURCES", "InvalidSettings", "Source"]
