"""A small, real software world in a temp dir for the app-search tests: PATH directories
with executables, XDG desktop entries, an apt Packages list (gzip, real deb822 format) with a
dpkg status file and info dir, `nix`/`nix-env` executables that print nix's JSON output
formats, and a JSON manifest."""

from __future__ import annotations

import gzip
import json
import os
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hoodyd.config import RunConfig

PACKAGES = """\
Package: codec2
Source: codec2 (1.0.5-1)
Version: 1.0.5-1
Installed-Size: 105
Maintainer: Debian Hamradio Maintainers <debian-hams@lists.debian.org>
Architecture: amd64
Depends: libc6 (>= 2.34), libcodec2-1.0 (= 1.0.5-1)
Description: Codec 2 speech codec utilities
Homepage: https://www.rowetel.com/codec2.html
Description-md5: 4b7c3d6a1f1a1a1a1a1a1a1a1a1a1a1a
Section: hamradio
Priority: optional
Filename: pool/main/c/codec2/codec2_1.0.5-1_amd64.deb
Size: 23312
SHA256: 5d6e1a0e9a1e6e43f5a3e06f0a7b8f1b2b9bd04a8ad4dbb7f0b0b1a6d3c2f7a0

Package: libcodec2-dev
Source: codec2
Version: 1.0.5-1
Installed-Size: 60
Maintainer: Debian Hamradio Maintainers <debian-hams@lists.debian.org>
Architecture: amd64
Depends: libcodec2-1.0 (= 1.0.5-1)
Description: Codec 2 speech codec development files
Section: libdevel
Priority: optional
Filename: pool/main/c/codec2/libcodec2-dev_1.0.5-1_amd64.deb
Size: 14000

Package: jq
Version: 1.6-2.1
Installed-Size: 102
Maintainer: ChangZhuo Chen (陳昌倬) <czchen@debian.org>
Architecture: amd64
Depends: libjq1 (= 1.6-2.1), libc6 (>= 2.34)
Description: lightweight and flexible command-line JSON processor
Homepage: https://github.com/stedolan/jq
Section: utils
Priority: optional
Filename: pool/main/j/jq/jq_1.6-2.1_amd64.deb
Size: 64708

Package: firefox-esr
Version: 115.9.1esr-1~deb12u1
Installed-Size: 247000
Maintainer: Maintainers of Mozilla-related packages <team+pkg-mozilla@tracker.debian.org>
Architecture: amd64
Depends: libc6 (>= 2.34), libgtk-3-0 (>= 3.13.7), libx11-6
Description: Mozilla Firefox web browser - Extended Support Release (ESR)
Homepage: https://www.mozilla.org/en-US/firefox/enterprise/
Section: web
Priority: optional
Filename: pool/main/f/firefox-esr/firefox-esr_115.9.1esr-1~deb12u1_amd64.deb
Size: 71000000

"""

STATUS = """\
Package: jq
Status: install ok installed
Priority: optional
Section: utils
Installed-Size: 102
Maintainer: ChangZhuo Chen (陳昌倬) <czchen@debian.org>
Architecture: amd64
Version: 1.6-2.1
Depends: libjq1 (= 1.6-2.1), libc6 (>= 2.34)
Description: lightweight and flexible command-line JSON processor
 jq is like sed for JSON data - you can use it to slice
 and filter and map and transform structured data.
Homepage: https://github.com/stedolan/jq

Package: codec2
Status: deinstall ok config-files
Priority: optional
Section: hamradio
Architecture: amd64
Version: 1.0.5-1
Description: Codec 2 speech codec utilities

"""

# `nix-env -qaP --json --meta` output (trimmed meta, same keys and shapes as nix 2.x)
NIX_ENV = {
    "nixpkgs.vscode": {
        "name": "vscode-1.85.1",
        "pname": "vscode",
        "version": "1.85.1",
        "system": "x86_64-linux",
        "outputName": "out",
        "outputs": {"out": None},
        "meta": {
            "available": True,
            "broken": False,
            "description": "Open source source code editor developed by Microsoft",
            "homepage": "https://code.visualstudio.com/",
            "license": {"free": False, "fullName": "Unfree", "shortName": "unfree"},
            "mainProgram": "code",
            "name": "vscode-1.85.1",
            "outputsToInstall": ["out"],
            "platforms": ["x86_64-linux", "aarch64-linux"],
            "position": "/nix/store/x-source/pkgs/applications/editors/vscode/vscode.nix:61",
            "unfree": True,
        },
    },
    "nixpkgs.codec2": {
        "name": "codec2-1.2.0",
        "pname": "codec2",
        "version": "1.2.0",
        "system": "x86_64-linux",
        "outputName": "out",
        "outputs": {"out": None, "dev": None},
        "meta": {
            "description": "Speech codec for communications quality speech at low data rates",
            "homepage": "https://www.rowetel.com/codec2.html",
            "platforms": ["x86_64-linux"],
        },
    },
    "nixpkgs.jq": {
        "name": "jq-1.7.1",
        "pname": "jq",
        "version": "1.7.1",
        "system": "x86_64-linux",
        "outputName": "bin",
        "outputs": {"bin": None, "out": None},
        "meta": {
            "description": "Lightweight and flexible command-line JSON processor",
            "homepage": ["https://jqlang.github.io/jq/"],
            "mainProgram": "jq",
        },
    },
    "nixpkgs.firefox": {
        "name": "firefox-121.0",
        "pname": "firefox",
        "version": "121.0",
        "system": "x86_64-linux",
        "outputName": "out",
        "outputs": {"out": None},
        "meta": {
            "description": "A web browser built from Firefox source tree",
            "homepage": "http://www.mozilla.com/en-US/firefox/",
            "mainProgram": "firefox",
        },
    },
    "nixpkgs.broken-thing": {
        "name": "broken-thing-0.1",
        "pname": "broken-thing",
        "version": "0.1",
        "system": "x86_64-linux",
        "outputName": "out",
        "outputs": {"out": None},
        "meta": {"broken": True, "description": "Does not build"},
    },
}

# `nix search nixpkgs ^ --json` output
NIX_SEARCH = {
    "legacyPackages.x86_64-linux.hello": {
        "description": "A program that produces a familiar, friendly greeting",
        "pname": "hello",
        "version": "2.12.1",
    },
    "legacyPackages.x86_64-linux.python311Packages.requests": {
        "description": "HTTP library for Python",
        "pname": "python3.11-requests",
        "version": "2.31.0",
    },
}

MANIFEST = {
    "version": 1,
    "apps": [
        {
            "id": "team/deploy-tool",
            "title": "Deploy Tool",
            "description": "Ships the team's services",
            "argv": ["deploy-tool", "--interactive"],
            "kind": "cli",
            "tags": ["ops", "deploy"],
            "publisher": "platform-team",
            "version": "2.4.0",
            "installed": False,
            "requirements": [
                {
                    "kind": "package",
                    "name": "deploy-tool",
                    "message": "install from the team repo",
                    "resolution": "pipx install deploy-tool",
                }
            ],
        },
        {"id": "jq-viewer", "title": "JQ Viewer", "argv": ["jq", "."], "tags": ["json"]},
    ],
}


def executable(path: Path, body: str = "#!/bin/sh\nexit 0\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body)
    path.chmod(0o755)
    return path


def desktop(directory: Path, name: str, body: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(textwrap.dedent(body).lstrip())
    return path


@dataclass
class World:
    root: Path
    bin: Path
    apps: Path
    packages: Path
    status: Path
    info: Path
    nix_bin: Path
    manifest: Path

    @property
    def path(self) -> str:
        return f"{self.bin}:{self.nix_bin}:/usr/bin:/bin"

    def environ(self) -> dict[str, str]:
        return {**os.environ, "PATH": self.path}

    def sources(self, *, nix_command: str = "env") -> list[dict[str, Any]]:
        return [
            {"source_id": "system-path", "enabled": True, "priority": 60, "provider": "system",
             "source_type": "system-path",
             "config": {"path": str(self.bin), "applications_dirs": [str(self.apps)]}},
            {"source_id": "apt", "enabled": True, "priority": 50, "provider": "apt",
             "source_type": "apt",
             "config": {"lists": [str(self.packages)], "status_file": str(self.status),
                        "info_dir": str(self.info)}},
            {"source_id": "nixpkgs", "enabled": True, "priority": 40, "provider": "nix",
             "source_type": "nix-pkgs", "config": {"command": nix_command}},
            {"source_id": "team", "enabled": True, "priority": 70, "provider": "registry",
             "source_type": "trusted-list-file", "config": {"path": str(self.manifest)}},
        ]  # fmt: skip

    def write_config(self, state_dir: Path, **extra: Any) -> None:
        config = {"version": 1, "sources": self.sources(), "profiles": [], **extra}
        target = state_dir / "run" / "config.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(config))


def make_world(root: Path) -> World:
    bin_dir = root / "bin"
    for name in ("code", "firefox", "jq", "codium-helper"):
        executable(bin_dir / name)
    apps = root / "applications"
    desktop(
        apps,
        "code.desktop",
        """
        [Desktop Entry]
        Name=Visual Studio Code
        Name[de]=Visual Studio Code (de)
        Comment=Code Editing. Redefined.
        GenericName=Text Editor
        Exec=code --unity-launch %F
        Icon=vscode
        Type=Application
        Categories=Utility;TextEditor;Development;IDE;
        Keywords=vscode;

        [Desktop Action new-empty-window]
        Name=New Empty Window
        Exec=code --new-window %F
    """,
    )
    desktop(
        apps,
        "firefox.desktop",
        """
        [Desktop Entry]
        Name=Firefox
        GenericName=Web Browser
        Exec=firefox %u
        Type=Application
        Categories=Network;WebBrowser;
    """,
    )
    desktop(
        apps,
        "jq-hidden.desktop",
        """
        [Desktop Entry]
        Name=Hidden JQ
        Exec=jq
        NoDisplay=true
        Type=Application
    """,
    )
    desktop(
        apps,
        "ghost.desktop",
        """
        [Desktop Entry]
        Name=Ghost App
        Exec=ghost
        TryExec=ghost-not-installed
        Type=Application
    """,
    )
    packages = root / "lists" / "example_dists_stable_main_binary-amd64_Packages.gz"
    packages.parent.mkdir(parents=True)
    packages.write_bytes(gzip.compress(PACKAGES.encode()))
    status = root / "dpkg" / "status"
    status.parent.mkdir(parents=True)
    status.write_text(STATUS)
    info = root / "dpkg" / "info"
    info.mkdir()
    (info / "jq.list").write_text("/.\n/usr\n/usr/bin\n/usr/bin/jq\n/usr/share/doc/jq\n")
    nix_bin = root / "nix-bin"
    (root / "nix-env.json").write_text(json.dumps(NIX_ENV))
    (root / "nix-search.json").write_text(json.dumps(NIX_SEARCH))
    # the fakes check their arguments the way the real CLIs are called by the sync
    executable(
        nix_bin / "nix",
        f"""#!/bin/sh
case "$*" in
  *"search nixpkgs ^ --json"*) exec cat {root / "nix-search.json"} ;;
  *) echo "error: unsupported arguments: $*" >&2; exit 1 ;;
esac
""",
    )
    executable(
        nix_bin / "nix-env",
        f"""#!/bin/sh
[ "$*" = "-qaP --json --meta" ] || {{ echo "error: unexpected arguments: $*" >&2; exit 1; }}
exec cat {root / "nix-env.json"}
""",
    )
    manifest = root / "team-apps.json"
    manifest.write_text(json.dumps(MANIFEST))
    return World(root, bin_dir, apps, packages, status, info, nix_bin, manifest)


def quiet_settings(**overrides: Any) -> RunConfig:
    """Settings for service tests: nothing syncs unless the test asks."""
    return RunConfig(auto_sync=False, **overrides)


async def open_service(state_dir: Path, world: World, **settings: Any) -> Any:
    """An AppService over `world` with every source synced (no background syncs)."""
    from hoodyd.apps.service import AppService

    world.write_config(state_dir)
    service = AppService(state_dir, quiet_settings(**settings), environ=world.environ())
    await service.start()
    job = service.sync_all()
    done = await service.job(job.job_id, wait=True, timeout_ms=60_000)
    assert done.status == "done", done
    return service
