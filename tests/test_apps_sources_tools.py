"""pypi and npm tool runners: an index built at sync time from configured packages, the
registries' JSON (served on 127.0.0.1) and installed tools (`uv tool list`, `npm ls -g
--json` from executables on PATH); uvx, pipx and npx launch forms with version pins."""

from __future__ import annotations

import asyncio
import json
import shlex
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from hoodyd.apps.catalog.records import SourceUnavailable, SyncContext
from hoodyd.apps.catalog.sources import SOURCES
from tests.data.apps.world import executable

UV_TOOL_LIST = "black v24.10.0\n- black\n- blackd\nhttpie v3.2.4\n- http\n- httpie\n- https\n"
# `pipx list --json` (pipx_spec_version 0.1)
PIPX_LIST = {
    "pipx_spec_version": "0.1",
    "venvs": {
        "pycowsay": {
            "metadata": {
                "injected_packages": {},
                "main_package": {
                    "app_paths": [{"__Path__": "/root/.local/pipx/venvs/pycowsay/bin/pycowsay",
                                   "__type__": "Path"}],
                    "apps": ["pycowsay"],
                    "include_apps": True,
                    "include_dependencies": False,
                    "package": "pycowsay",
                    "package_or_url": "pycowsay",
                    "package_version": "0.0.0.2",
                    "pip_args": [],
                    "suffix": "",
                },
                "pipx_metadata_version": "0.5",
                "python_version": "Python 3.11.7",
                "venv_args": [],
            }
        }
    },
}  # fmt: skip
NPM_LS = {
    "name": "lib",
    "dependencies": {
        "corepack": {"version": "0.29.4", "overridden": False},
        "npm": {"version": "10.9.0", "overridden": False},
        "typescript": {"version": "5.6.3", "overridden": False},
    },
}


def pypi_project(name: str, version: str, summary: str) -> dict[str, Any]:
    """The shape of https://pypi.org/pypi/NAME/json (the fields that matter, and some that
    do not)."""
    return {
        "info": {
            "author": "",
            "classifiers": ["Programming Language :: Python :: 3"],
            "description_content_type": "text/markdown",
            "home_page": None,
            "name": name,
            "project_urls": {"Homepage": f"https://example.org/{name}"},
            "requires_python": ">=3.8",
            "summary": summary,
            "version": version,
            "yanked": False,
        },
        "last_serial": 1,
        "releases": {},
        "urls": [],
        "vulnerabilities": [],
    }


def npm_version(name: str, version: str, bins: dict[str, str] | str, description: str):
    """The shape of https://registry.npmjs.org/NAME/VERSION."""
    return {
        "name": name,
        "version": version,
        "description": description,
        "homepage": f"https://example.org/{name}",
        "keywords": ["cli"],
        "bin": bins,
        "dist": {"shasum": "0" * 40, "tarball": f"https://registry/{name}/-/x.tgz"},
        "_id": f"{name}@{version}",
    }


PYPI = {
    "pycowsay": pypi_project("pycowsay", "0.0.0.2", "Python cowsay"),
    "ruff": pypi_project("ruff", "0.8.0", "An extremely fast Python linter and code formatter"),
    "black": pypi_project("black", "24.10.0", "The uncompromising code formatter."),
    "httpie": pypi_project("httpie", "3.2.4", "HTTPie: modern, user-friendly command-line HTTP"),
}
NPM = {
    ("prettier", "3.3.3"): npm_version(
        "prettier", "3.3.3", {"prettier": "bin/prettier.cjs"},
        "Prettier is an opinionated code formatter",
    ),
    ("typescript", "5.6.3"): npm_version(
        "typescript", "5.6.3", {"tsc": "bin/tsc", "tsserver": "bin/tsserver"},
        "TypeScript is a language for application scale JavaScript development",
    ),
    ("corepack", "0.29.4"): npm_version(
        "corepack", "0.29.4", {"corepack": "dist/corepack.js"},
        "Zero-runtime-dependency package acting as bridge",
    ),
    ("@angular/cli", "latest"): npm_version(
        "@angular/cli", "19.0.0", {"ng": "bin/ng.js"}, "CLI tool for Angular"
    ),
}  # fmt: skip


async def registry(aiohttp_server):
    async def pypi(request: web.Request) -> web.Response:
        body = PYPI.get(request.match_info["name"])
        if body is None:
            raise web.HTTPNotFound()
        return web.json_response(body)

    async def npm(request: web.Request) -> web.Response:
        name = request.match_info["name"].replace("%2F", "/").replace("%2f", "/")
        body = NPM.get((name, request.match_info["tag"]))
        if body is None:
            raise web.HTTPNotFound()
        return web.json_response(body)

    app = web.Application()
    app.router.add_get("/pypi/{name}/json", pypi)
    app.router.add_get("/npm/{name:.+}/{tag}", npm)
    return await aiohttp_server(app, host="127.0.0.1")


def tools_on_path(bin_dir: Path) -> None:
    """uv, pipx and npm print their real listing formats; uvx, pipx run and npx echo their
    argv."""
    listing = bin_dir / "uv-tool-list.txt"
    listing.parent.mkdir(parents=True, exist_ok=True)
    listing.write_text(UV_TOOL_LIST)
    npm_ls = bin_dir / "npm-ls.json"
    npm_ls.write_text(json.dumps(NPM_LS, indent=2))
    executable(
        bin_dir / "uv", f'#!/bin/sh\n[ "$*" = "tool list" ] && exec /bin/cat {listing}\nexit 2\n'
    )
    executable(
        bin_dir / "npm",
        f'#!/bin/sh\n[ "$*" = "ls -g --json --depth=0" ] && exec /bin/cat {npm_ls}\nexit 2\n',
    )
    pipx_list = bin_dir / "pipx-list.json"
    pipx_list.write_text(json.dumps(PIPX_LIST))
    executable(
        bin_dir / "pipx",
        f'#!/bin/sh\n[ "$*" = "list --json" ] && exec /bin/cat {pipx_list}\necho "pipx $*"\n',
    )
    for runner in ("uvx", "npx"):
        executable(bin_dir / runner, f'#!/bin/sh\necho "{runner} $*"\n')


async def run(argv: list[str], bin_dir: Path) -> str:
    proc = await asyncio.create_subprocess_exec(
        *argv, env={"PATH": str(bin_dir)}, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=30)
    return out.decode().strip()


async def test_pypi_index_and_uvx_forms(aiohttp_server, short_tmp: Path) -> None:
    """Configured and uv-installed tools become one record per command; launches use uvx
    with `pkg@ver` pins or `--from`, or pipx run when configured."""
    server = await registry(aiohttp_server)
    bin_dir = short_tmp / "bin"
    tools_on_path(bin_dir)
    config = {"packages": ["ruff==0.8.0", "black"], "index_url": str(server.make_url("/pypi"))}
    ctx = SyncContext(SOURCES["pypi"].settings(config), environ={"PATH": str(bin_dir)})
    result = await asyncio.to_thread(SOURCES["pypi"].sync, ctx)
    records = {r.ident: r for r in result.records}
    assert sorted(records) == [
        "black", "black:blackd", "httpie", "httpie:http", "httpie:https", "pycowsay", "ruff",
    ]  # fmt: skip
    assert result.details["installed_tools"] == ["black", "httpie", "pycowsay"]
    ruff = records["ruff"]
    assert (ruff.version, ruff.installed, ruff.homepage) == (
        "0.8.0",
        False,
        "https://example.org/ruff",
    )
    assert ruff.description == "An extremely fast Python linter and code formatter"
    assert records["httpie:http"].installed and records["httpie:http"].version == "3.2.4"
    source = SOURCES["pypi"]

    def argv(ident: str, **config: Any) -> list[str]:
        return source.plan(records[ident], config, result.details).argv

    assert argv("ruff") == ["uvx", "ruff@0.8.0"]
    assert argv("httpie:http") == ["uvx", "--from", "httpie", "http"]
    assert argv("ruff", runner="pipx") == ["pipx", "run", "--spec", "ruff==0.8.0", "ruff"]
    assert await run([*argv("httpie:http"), "GET", "example.org"], bin_dir) == (
        "uvx --from httpie http GET example.org"
    )
    assert source.plan(records["ruff"], {}, {}).requirements[0].name == "uvx"


async def test_npm_index_and_npx_forms(aiohttp_server, short_tmp: Path) -> None:
    """Configured and globally installed packages give one record per `bin` command;
    launches use npx with the package's pin."""
    server = await registry(aiohttp_server)
    bin_dir = short_tmp / "bin"
    tools_on_path(bin_dir)
    config = {
        "packages": ["prettier@3.3.3", "@angular/cli"],
        "registry_url": str(server.make_url("/npm")),
    }
    ctx = SyncContext(SOURCES["npm"].settings(config), environ={"PATH": str(bin_dir)})
    result = await asyncio.to_thread(SOURCES["npm"].sync, ctx)
    records = {r.ident: r for r in result.records}
    assert sorted(records) == [
        "@angular/cli:ng", "corepack", "prettier", "typescript:tsc", "typescript:tsserver",
    ]  # fmt: skip
    assert records["typescript:tsc"].installed and records["typescript:tsc"].version == "5.6.3"
    assert records["@angular/cli:ng"].version == "19.0.0"
    source = SOURCES["npm"]
    plan = source.plan(records["prettier"], {}, result.details)
    assert plan.argv == ["npx", "--yes", "prettier@3.3.3"] and plan.requirements == []
    ng = source.plan(records["@angular/cli:ng"], {}, result.details).argv
    assert ng == ["npx", "--yes", "--package=@angular/cli", "ng"]
    assert (
        await run([*ng, "new", "my app"], bin_dir)
        == "npx --yes --package=@angular/cli ng new my app"
    )
    assert shlex.join(ng) == "npx --yes --package=@angular/cli ng"


async def test_registry_failure_fails_the_sync(aiohttp_server, short_tmp: Path) -> None:
    """An unknown package or an unreachable registry fails the sync with the URL."""
    server = await registry(aiohttp_server)
    base = str(server.make_url("/"))
    with pytest.raises(SourceUnavailable, match="HTTP 404"):
        await asyncio.to_thread(
            SOURCES["pypi"].sync,
            SyncContext(
                SOURCES["pypi"].settings({"packages": ["nope"], "index_url": base + "pypi"}),
                environ={"PATH": ""},
            ),
        )
    await server.close()
    with pytest.raises(SourceUnavailable, match="refused"):
        await asyncio.to_thread(
            SOURCES["npm"].sync,
            SyncContext(
                SOURCES["npm"].settings({"packages": ["prettier"], "registry_url": base + "npm"}),
                environ={"PATH": ""},
            ),
        )
    with pytest.raises(SourceUnavailable, match="not an npm package name"):
        SOURCES["npm"].sync(
            SyncContext(SOURCES["npm"].settings({"packages": ["Bad Name"]}), environ={"PATH": ""})
        )
