"""Package sources, one module each, behind the `Source` interface of `base`."""

from __future__ import annotations

from typing import Any

from hoodyd.apps.catalog.sources.appimage import CatalogSource, PinnedSource
from hoodyd.apps.catalog.sources.apt import AptSource
from hoodyd.apps.catalog.sources.base import InvalidSettings, Source
from hoodyd.apps.catalog.sources.flatpak import FlatpakSource
from hoodyd.apps.catalog.sources.github_releases import GitHubReleasesSource
from hoodyd.apps.catalog.sources.manifest import ManifestSource, RemoteIndexSource
from hoodyd.apps.catalog.sources.nix import NixSource
from hoodyd.apps.catalog.sources.nix_flake import NixFlakeSource
from hoodyd.apps.catalog.sources.npm import NpmSource
from hoodyd.apps.catalog.sources.oci import OciSource
from hoodyd.apps.catalog.sources.pkgx import PkgxSource
from hoodyd.apps.catalog.sources.pypi import PypiSource
from hoodyd.apps.catalog.sources.system_path import SystemPathSource

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
