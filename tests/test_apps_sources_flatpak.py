"""flatpak: installed apps and remote AppStream rows from a flatpak executable on PATH that
prints flatpak's tab-separated column output, branch-aware launches and install plans."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from hoodyd.apps.catalog.records import SourceUnavailable, SyncContext
from hoodyd.apps.catalog.sources import SOURCES
from hoodyd.apps.catalog.sources.flatpak import LIST_COLUMNS, REMOTE_COLUMNS
from tests.data.apps.world import executable

# piped, `flatpak list --app --columns=...` prints rows like these: tab-separated, no header
INSTALLED_ROWS = [
    ["org.mozilla.firefox", "Firefox", "133.0", "stable", "x86_64", "flathub", "system",
     "Fast, Private & Safe Web Browser"],
    ["org.gimp.GIMP", "GNU Image Manipulation Program", "2.10.38", "stable", "x86_64",
     "flathub", "user", "Create images and edit photographs"],
    ["org.gimp.GIMP", "GNU Image Manipulation Program", "3.0.0~rc1", "beta", "x86_64",
     "flathub-beta", "user", "Create images and edit photographs"],
]  # fmt: skip
REMOTE_ROWS = [
    ["org.mozilla.firefox", "Firefox", "133.0", "stable", "x86_64", "flathub",
     "Fast, Private & Safe Web Browser"],
    ["org.videolan.VLC", "VLC", "3.0.21", "stable", "x86_64", "flathub",
     "VLC media player, the open-source multimedia framework"],
    ["com.visualstudio.code", "Visual Studio Code", "1.95.3-1731513102", "stable", "x86_64",
     "flathub", "Code editing. Redefined."],
]  # fmt: skip
INSTALLED = "".join("\t".join(row) + "\n" for row in INSTALLED_ROWS)
REMOTE = "".join("\t".join(row) + "\n" for row in REMOTE_ROWS)
UNREACHABLE = "error: Unable to load summary from remote flathub: Could not resolve hostname"


def fake_flatpak(bin_dir: Path, *, remote_fails: bool = False) -> None:
    (bin_dir / "installed.tsv").parent.mkdir(parents=True, exist_ok=True)
    (bin_dir / "installed.tsv").write_text(INSTALLED)
    (bin_dir / "remote.tsv").write_text(REMOTE)
    remote = (
        f"echo {shlex.quote(UNREACHABLE)} >&2; exit 1"
        if remote_fails
        else f"exec /bin/cat {shlex.quote(str(bin_dir / 'remote.tsv'))}"
    )
    executable(
        bin_dir / "flatpak",
        "#!/bin/sh\n"
        f'if [ "$*" = "list --app --columns={LIST_COLUMNS}" ]; then '
        f"exec /bin/cat {shlex.quote(str(bin_dir / 'installed.tsv'))}; fi\n"
        f'if [ "$*" = "remote-ls --app --columns={REMOTE_COLUMNS}" ]; then {remote}; fi\n'
        'echo "error: unexpected arguments: $*" >&2; exit 64\n',
    )


def test_installed_and_remote_apps(short_tmp: Path) -> None:
    """Installed rows and remote rows become records per branch; installed wins; plans run
    the branch and arch, and a remote app's plan installs it first."""
    bin_dir = short_tmp / "bin"
    fake_flatpak(bin_dir)
    environ = {"PATH": str(bin_dir)}
    source = SOURCES["flatpak"]
    assert source.detect(environ) is None
    result = source.sync(SyncContext(source.settings({}), environ=environ))
    records = {r.ident: r for r in result.records}
    assert sorted(records) == [
        "com.visualstudio.code/x86_64/stable",
        "org.gimp.GIMP/x86_64/beta",
        "org.gimp.GIMP/x86_64/stable",
        "org.mozilla.firefox/x86_64/stable",
        "org.videolan.VLC/x86_64/stable",
    ]
    firefox = records["org.mozilla.firefox/x86_64/stable"]
    assert (firefox.name, firefox.title, firefox.installed, firefox.arch) == (
        "firefox",
        "Firefox",
        True,
        "amd64",
    )
    beta = records["org.gimp.GIMP/x86_64/beta"]
    assert beta.channel == "beta" and beta.version == "3.0.0~rc1"
    assert source.plan(beta, {}, {}).argv == [
        "flatpak", "run", "--branch=beta", "--arch=x86_64", "org.gimp.GIMP",
    ]  # fmt: skip
    vlc = source.plan(records["org.videolan.VLC/x86_64/stable"], {}, {})
    assert vlc.requirements[0].resolution == (
        "flatpak install -y --noninteractive flathub app/org.videolan.VLC/x86_64/stable"
    )
    assert result.details == {"installed": 3, "remote_apps": 3}
    only_installed = source.sync(SyncContext(source.settings({"remotes": False}), environ=environ))
    assert len(only_installed.records) == 3


def test_unreachable_remote_fails_the_sync(short_tmp: Path) -> None:
    """A remote that cannot be reached fails the sync with flatpak's message."""
    bin_dir = short_tmp / "bin"
    fake_flatpak(bin_dir, remote_fails=True)
    flatpak = SOURCES["flatpak"]
    with pytest.raises(SourceUnavailable, match="Unable to load summary"):
        flatpak.sync(SyncContext(flatpak.settings({}), environ={"PATH": str(bin_dir)}))
    with pytest.raises(SourceUnavailable, match="not found on PATH"):
        flatpak.sync(SyncContext(flatpak.settings({}), environ={"PATH": str(short_tmp / "none")}))
