"""Package sources read real files and real CLIs: PATH and desktop entries, apt lists through
apt's own helper, nix's JSON through executables on PATH, JSON manifests from disk and HTTP."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from pathlib import Path

import pytest
from aiohttp import web

from hoodyd.apps.catalog.records import SourceUnavailable, SyncContext
from hoodyd.apps.catalog.sources import SOURCES
from hoodyd.apps.catalog.sources.apt import index_targets
from hoodyd.apps.catalog.sources.desktop_entry import parse_exec
from tests.data.apps.world import MANIFEST, desktop, executable, make_world


def sync(
    source_type: str, config: dict, environ: dict[str, str] | None = None, pin: str | None = None
):
    ctx = SyncContext(
        SOURCES[source_type].settings(config),
        environ=environ or dict(os.environ),
        pin_sha256=pin,
    )
    return SOURCES[source_type].sync(ctx)


def by_ident(result) -> dict:
    return {r.ident: r for r in result.records}


def test_exec_field_codes_quoting_and_escapes() -> None:
    """Exec splits per the Desktop Entry spec: quotes, backslash escapes, field codes."""
    assert parse_exec("firefox %u") == ["firefox"]
    assert parse_exec("code --unity-launch %F") == ["code", "--unity-launch"]
    assert parse_exec('"/opt/My App/run" --name=%c %k', name="My App", location="/a.desktop") == [
        "/opt/My App/run",
        "--name=My App",
        "/a.desktop",
    ]
    assert parse_exec("app %i %%done", icon="app-icon") == ["app", "--icon", "app-icon", "%done"]
    assert parse_exec("app %i") == ["app"]
    # string escape \\ first, then the quoting rule's \" and \$ inside quotes
    assert parse_exec(r'sh -c "echo \\"hi\\" \\$HOME"') == ["sh", "-c", 'echo "hi" $HOME']
    # \s is a space after the string escapes, so only quotes keep it inside one argument
    assert parse_exec(r"run\sme now") == ["run", "me", "now"]
    assert parse_exec(r'"run\sme" now') == ["run me", "now"]


def test_system_path_merges_desktop_entries_and_skips_hidden(short_tmp: Path) -> None:
    """PATH executables become records; a desktop entry enriches the executable it runs."""
    world = make_world(short_tmp)
    result = sync("system-path", {"path": str(world.bin), "applications_dirs": [str(world.apps)]})
    records = by_ident(result)
    code = records[str(world.bin / "code")]
    assert (code.title, code.kind, code.argv) == (
        "Visual Studio Code",
        "gui",
        ("code", "--unity-launch"),
    )
    assert "vscode" in code.keywords and "ide" in code.tags
    assert records[str(world.bin / "jq")].title == "jq"  # NoDisplay entry ignored
    assert records[str(world.bin / "jq")].argv == (str(world.bin / "jq"),)
    skipped = result.details["desktop_entries_skipped"]
    assert skipped[str(world.apps / "jq-hidden.desktop")] == "NoDisplay=true"
    assert "TryExec" in skipped[str(world.apps / "ghost.desktop")]
    assert all(r.installed for r in result.records)


def test_path_order_and_xdg_precedence(short_tmp: Path) -> None:
    """The first executable of a name on PATH wins, and a user entry hides the system one."""
    first, second = short_tmp / "first", short_tmp / "second"
    executable(first / "tool")
    executable(second / "tool")
    executable(second / "other")
    user, system = short_tmp / "user-apps", short_tmp / "system-apps"
    desktop(system, "other.desktop", "[Desktop Entry]\nName=Other\nExec=other\nType=Application\n")
    desktop(user, "other.desktop", "[Desktop Entry]\nName=Other\nExec=other\nHidden=true\n")
    desktop(
        system, "term.desktop", "[Desktop Entry]\nName=Term Tool\nExec=tool -x\nTerminal=true\n"
    )
    result = sync(
        "system-path", {"path": f"{first}:{second}", "applications_dirs": [str(user), str(system)]}
    )
    records = by_ident(result)
    assert str(first / "tool") in records and str(second / "tool") not in records
    assert records[str(first / "tool")].kind == "cli" and records[str(first / "tool")].terminal
    assert records[str(second / "other")].title == "other"


def test_apt_reads_compressed_lists_and_dpkg_state(short_tmp: Path) -> None:
    """apt records come from a gzip Packages list via apt-helper, installed state from dpkg."""
    world = make_world(short_tmp)
    result = sync(
        "apt",
        {
            "lists": [str(world.packages)],
            "status_file": str(world.status),
            "info_dir": str(world.info),
        },
    )
    records = by_ident(result)
    assert set(records) == {"codec2", "libcodec2-dev", "jq", "firefox-esr"}
    assert records["jq"].installed and records["jq"].binaries == ("/usr/bin/jq",)
    assert not records["codec2"].installed  # "deinstall ok config-files" is not installed
    assert records["libcodec2-dev"].auxiliary and not records["codec2"].auxiliary
    assert records["firefox-esr"].kind == "gui" and records["jq"].kind == "cli"
    assert records["codec2"].homepage == "https://www.rowetel.com/codec2.html"
    plan = SOURCES["apt"].plan(records["codec2"], {}, result.details)
    assert plan.argv == ["codec2"]
    assert plan.requirements[0].resolution == "apt-get install -y codec2"
    assert SOURCES["apt"].plan(records["jq"], {}, result.details).argv == ["/usr/bin/jq"]


def test_apt_unreadable_list_is_a_sync_error(short_tmp: Path) -> None:
    """A list apt-helper cannot read fails the sync with apt-helper's own message."""
    with pytest.raises(SourceUnavailable, match="no Packages list could be read"):
        sync(
            "apt",
            {"lists": [str(short_tmp / "missing_Packages.xz")], "status_file": "/nonexistent"},
        )


def test_apt_machine_lists(short_tmp: Path) -> None:
    """On this Debian machine, apt-get indextargets finds the real lists and they parse."""
    targets = index_targets(SyncContext(SOURCES["apt"].settings({}), environ=dict(os.environ)))
    if not targets:
        pytest.skip("this machine has no apt lists (run apt-get update once)")
    result = sync("apt", {})
    assert len(result.records) > 1000
    assert result.details["installed"] > 0 and not result.details["list_errors"]
    assert by_ident(result)["apt"].installed


def test_nix_env_json_through_the_cli_on_path(short_tmp: Path) -> None:
    """`nix-env -qaP --json --meta` output becomes records; broken packages are left out."""
    world = make_world(short_tmp)
    result = sync("nix-pkgs", {"command": "env"}, world.environ())
    records = by_ident(result)
    assert set(records) == {"vscode", "codec2", "jq", "firefox"}
    assert records["vscode"].binaries == ("code",) and records["vscode"].arch == "amd64"
    assert records["jq"].homepage == "https://jqlang.github.io/jq/"
    plan = SOURCES["nix-pkgs"].plan(records["vscode"], {}, result.details)
    assert plan.argv == ["nix", "shell", "nixpkgs#vscode", "--command", "code"]
    assert SOURCES["nix-pkgs"].plan(records["jq"], {}, result.details).argv == [
        "nix",
        "run",
        "nixpkgs#jq",
    ]
    assert not plan.requirements  # the nix CLI is on PATH


def test_nix_search_json_through_the_cli_on_path(short_tmp: Path) -> None:
    """`nix search nixpkgs ^ --json` output keeps attribute paths for `nix run`."""
    world = make_world(short_tmp)
    result = sync("nix-pkgs", {}, world.environ())
    records = by_ident(result)
    assert set(records) == {"hello", "python311Packages.requests"}
    requests = records["python311Packages.requests"]
    assert (
        requests.name == "python3.11-requests" and "python311Packages.requests" in requests.keywords
    )
    assert result.details["origin"].startswith("nix --extra-experimental-features")


def test_nix_missing_or_failing_is_reported(short_tmp: Path) -> None:
    """No nix on PATH, or nix failing, is a sync error that says what happened."""
    world = make_world(short_tmp)
    with pytest.raises(SourceUnavailable, match="nix not found on PATH"):
        sync("nix-pkgs", {}, {"PATH": str(world.bin)})
    (world.root / "nix-search.json").write_text("not json")
    with pytest.raises(SourceUnavailable, match="not nix JSON"):
        sync("nix-pkgs", {}, world.environ())
    assert SOURCES["nix-pkgs"].detect({"PATH": str(world.bin)}) == "nix not found on PATH"


def test_manifest_file_and_its_errors(short_tmp: Path) -> None:
    """A manifest file becomes verified records; a bad one names the file and the field."""
    world = make_world(short_tmp)
    result = sync("trusted-list-file", {"path": str(world.manifest)}, world.environ())
    records = by_ident(result)
    deploy = records["team/deploy-tool"]
    assert (deploy.name, deploy.publisher, deploy.installed) == (
        "deploy-tool",
        "platform-team",
        False,
    )
    assert records["jq-viewer"].installed  # jq is on the world's PATH
    plan = SOURCES["trusted-list-file"].plan(deploy, {}, result.details)
    assert plan.argv == ["deploy-tool", "--interactive"]
    assert plan.requirements[0].resolution == "pipx install deploy-tool"
    bad = short_tmp / "bad.json"
    bad.write_text(json.dumps({"version": 1, "apps": [{"id": "x", "title": "X"}]}))
    with pytest.raises(SourceUnavailable, match=r"bad.json: invalid manifest: .*argv"):
        sync("manifest-registry", {"path": str(bad)})


async def test_remote_manifest_over_http_with_pin(aiohttp_server, short_tmp: Path) -> None:
    """manifest-remote-index fetches over HTTP and checks a pinned sha256."""
    body = json.dumps(MANIFEST).encode()

    async def serve(_request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/apps.json", serve)
    server = await aiohttp_server(app, host="127.0.0.1")
    url = str(server.make_url("/apps.json"))
    good = hashlib.sha256(body).hexdigest()
    result = await asyncio.to_thread(sync, "manifest-remote-index", {"url": url}, None, good)
    assert result.details["verified"] and len(result.records) == 2
    with pytest.raises(SourceUnavailable, match="does not match the pinned"):
        await asyncio.to_thread(sync, "manifest-remote-index", {"url": url}, None, "0" * 64)
    with pytest.raises(SourceUnavailable, match="HTTP 404"):
        await asyncio.to_thread(sync, "manifest-remote-index", {"url": url + ".missing"})


def test_launcher_entries_keep_their_own_records(short_tmp: Path) -> None:
    """An entry run through a launcher stays its own record; `env VAR=x prog` still merges."""
    bin_dir, apps = short_tmp / "bin", short_tmp / "apps"
    executable(bin_dir / "flatpak")
    executable(bin_dir / "gimp")
    desktop(
        apps,
        "org.example.Paint.desktop",
        """
        [Desktop Entry]
        Name=Paint
        Exec=flatpak run --branch=stable org.example.Paint @@u %U @@
        Type=Application
    """,
    )
    desktop(
        apps,
        "gimp.desktop",
        """
        [Desktop Entry]
        Name=GNU Image Manipulation Program
        Exec=env GIMP_DEBUG=0 gimp %U
        Type=Application
    """,
    )
    result = sync("system-path", {"path": str(bin_dir), "applications_dirs": [str(apps)]})
    records = by_ident(result)
    assert records[str(bin_dir / "flatpak")].title == "flatpak"
    paint = records[str(apps / "org.example.Paint.desktop")]
    assert paint.title == "Paint" and paint.name == "org.example.Paint" and paint.kind == "gui"
    assert paint.argv[:3] == ("flatpak", "run", "--branch=stable")
    gimp = records[str(bin_dir / "gimp")]
    assert gimp.title == "GNU Image Manipulation Program"
    assert gimp.argv == ("env", "GIMP_DEBUG=0", "gimp")
