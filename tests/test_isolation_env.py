"""What hoodyd starts (supervisord, its event listener, programs, terminal holders and shells,
the catalogue tools its sources run) begins with an environment built on purpose: never the
daemon's token or other secrets."""

from __future__ import annotations

import json
import os
import pwd
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest

from hoodyd.apps.catalog.sources.apt import APT_HELPER
from hoodyd.childenv import child_environment, tool_environment
from hoodyd.polling import poll_until
from tests.conftest import DaemonProcess, sleeper, start_daemon
from tests.data.apps.world import make_world

TOKEN = "hoodyd-token-8c1f0e"
SECRET = "ghp_not_for_children_51a2"
PASSED = "passed-on-purpose-7d3"
# HOODYD_* variables in the daemon's own environment (start_daemon adds HOODYD_LOG_FORMAT)
DAEMON_VARIABLES = {"HOODYD_TOKEN", "HOODYD_ISOLATION_PASS", "HOODYD_LOG_FORMAT"}
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="running as another user needs root")


def environ_of(pid: int) -> dict[str, str]:
    """The environment block a process was started with (/proc/PID/environ)."""
    with open(f"/proc/{pid}/environ", "rb") as handle:
        entries = handle.read().split(b"\0")
    pairs = (entry.decode(errors="replace").partition("=") for entry in entries if entry)
    return {key: value for key, _, value in pairs}


def assert_clean(env: dict[str, str], *, shell: bool = False) -> None:
    """No token, no secret, no HOODYD_* variable (a shell: none of the daemon's; the shell
    integration sets its own, such as HOODYD_TERMINAL_ID)."""
    assert "GITHUB_TOKEN" not in env
    assert not any(TOKEN in value or SECRET in value for value in env.values()), env
    if shell:
        assert not DAEMON_VARIABLES & set(env), env
    else:
        assert not [key for key in env if key.startswith("HOODYD_")], env


@pytest.fixture
def secret_daemon(short_tmp: Path) -> Iterator[DaemonProcess]:
    """`hoodyd serve` started with HOODYD_TOKEN and a GITHUB_TOKEN in its environment, and a
    config (0600) whose `pass_env` names a harmless variable and, in vain, HOODYD_TOKEN."""
    config = short_tmp / "hoodyd.toml"
    config.write_text(
        '[server]\npass_env = ["HOODYD_ISOLATION_PASS", "ISOLATION_PASS", "HOODYD_TOKEN"]\n'
        "[supervisor]\npoll_interval = 0.2\n"
    )
    config.chmod(0o600)
    proc = start_daemon(
        short_tmp / "state",
        "--config",
        str(config),
        socket=short_tmp / "s.sock",
        env={
            "HOODYD_TOKEN": TOKEN,
            "GITHUB_TOKEN": SECRET,
            "ISOLATION_PASS": PASSED,
            "HOODYD_ISOLATION_PASS": PASSED,
            "LC_TIME": "C.UTF-8",
        },
    )
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
async def session(secret_daemon: DaemonProcess) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(
        connector=aiohttp.UnixConnector(path=str(secret_daemon.socket)),
        base_url="http://localhost",
    ) as client:
        yield client


async def call(client: aiohttp.ClientSession, path: str, body: dict[str, Any]) -> dict[str, Any]:
    async with client.post(path, json=body) as response:
        answer: dict[str, Any] = await response.json()
        assert response.status == 200, answer
        return answer


async def program_pid(
    client: aiohttp.ClientSession, supervisord: psutil.Process, **fields: Any
) -> int:
    """Add and start a `sleep` program with `fields`; the pid of its process."""
    body = sleeper(**fields)
    added = await call(client, "/api/v1/daemon/programs/add", body)
    await call(client, f"/api/v1/daemon/programs/{added['program']['id']}/start", {"wait": True})

    async def find() -> int | None:
        for child in supervisord.children(recursive=True):
            try:
                if child.cmdline() == ["/bin/sleep", body["command"].split()[-1]] and (
                    child.username() == body["user"]
                ):
                    return child.pid
            except psutil.Error:
                continue
        return None

    pid = await poll_until(find, timeout=20, interval=0.05)
    assert pid is not None
    return pid


async def shell_pid(client: aiohttp.ClientSession, query: str) -> int:
    answer = await call(
        client, f"/api/v1/terminal/execute?{query}", {"command": "echo $$", "timeout": 20}
    )
    return int(answer["stdout"].strip())


async def test_no_child_inherits_the_daemons_token_or_secrets(
    secret_daemon: DaemonProcess, session: aiohttp.ClientSession
) -> None:
    """supervisord, its event listener, a supervised program, a terminal holder and a terminal
    shell hold neither HOODYD_TOKEN nor the daemon's GITHUB_TOKEN; they have PATH, the locale
    and the account's HOME/USER, what the program asked for, and the `pass_env` variable."""
    state = secret_daemon.state_dir
    supervisord = psutil.Process(int((state / "supervisor" / "supervisord.pid").read_text()))
    me = pwd.getpwuid(os.geteuid())

    env = environ_of(supervisord.pid)
    assert_clean(env)
    assert env["PATH"] and env["LC_TIME"] == "C.UTF-8"
    assert (env["HOME"], env["USER"], env["LOGNAME"]) == (me.pw_dir, me.pw_name, me.pw_name)
    assert env["ISOLATION_PASS"] == PASSED

    async def listener() -> int | None:
        for child in supervisord.children():
            if "hoodyd.programs.eventlistener" in " ".join(child.cmdline()):
                return child.pid
        return None

    listener_pid = await poll_until(listener, timeout=20, interval=0.05)
    assert listener_pid is not None
    assert_clean(environ_of(listener_pid))

    pid = await program_pid(session, supervisord, environment={"ASKED_FOR": "yes"})
    env = environ_of(pid)
    assert_clean(env)
    assert env["ASKED_FOR"] == "yes" and env["ISOLATION_PASS"] == PASSED
    assert env["HOME"] == me.pw_dir and env["PATH"]

    shell = await shell_pid(session, "terminal_id=1")
    env = environ_of(shell)
    assert_clean(env, shell=True)
    assert env["ISOLATION_PASS"] == PASSED and env["LC_TIME"] == "C.UTF-8"
    assert (env["HOME"], env["USER"]) == (me.pw_dir, me.pw_name)
    holder = psutil.Process(shell).ppid()
    assert "hoodyd" in " ".join(psutil.Process(holder).cmdline()) or psutil.Process(
        holder
    ).name().startswith("hoodyd")
    assert_clean(environ_of(holder), shell=True)
    # what the shell sees now, after its start-up files ran
    answer = await call(
        session, "/api/v1/terminal/execute?terminal_id=1", {"command": "env", "timeout": 20}
    )
    assert TOKEN not in answer["stdout"] and SECRET not in answer["stdout"]
    assert f"ISOLATION_PASS={PASSED}" in answer["stdout"]
    assert "HOODYD_ISOLATION_PASS" not in answer["stdout"]


@as_root
async def test_children_run_as_another_user_get_that_users_account_variables(
    secret_daemon: DaemonProcess, session: aiohttp.ClientSession
) -> None:
    """A program and a terminal shell run as `nobody` get nobody's HOME, USER, LOGNAME and
    SHELL (not root's), and nothing of the daemon's secrets."""
    nobody = pwd.getpwnam("nobody")
    supervisord = psutil.Process(
        int((secret_daemon.state_dir / "supervisor" / "supervisord.pid").read_text())
    )
    pid = await program_pid(session, supervisord, user="nobody", directory="/")
    shell = await shell_pid(session, "terminal_id=2&user=nobody")
    for env, in_shell in ((environ_of(pid), False), (environ_of(shell), True)):
        assert_clean(env, shell=in_shell)
        assert env["HOME"] == nobody.pw_dir
        assert env["USER"] == env["LOGNAME"] == "nobody"
        assert env["SHELL"] == nobody.pw_shell


def test_the_built_environment_keeps_only_the_documented_base() -> None:
    """From a daemon environment full of variables, a child gets PATH, the locale, TZ, the
    account's variables, `pass_env` names (never HOODYD_*), then what was asked for."""
    source = {
        "PATH": "/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C",
        "TZ": "UTC",
        "HOME": "/somewhere/else",
        "GITHUB_TOKEN": SECRET,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "HOODYD_TOKEN": TOKEN,
        "WANTED": "w",
        "SSH_AUTH_SOCK": "/tmp/agent",
    }
    me = pwd.getpwuid(os.geteuid())
    env = child_environment(
        source=source, pass_env=["WANTED", "HOODYD_TOKEN", "ABSENT"], extra={"ASKED": "a"}
    )
    assert env == {
        "PATH": "/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C",
        "TZ": "UTC",
        "HOME": me.pw_dir,
        "USER": me.pw_name,
        "LOGNAME": me.pw_name,
        "SHELL": me.pw_shell or "/bin/sh",
        "WANTED": "w",
        "ASKED": "a",
    }
    assert child_environment(source={})["PATH"], "a PATH even when the daemon had none"


def recording_tools(root: Path, seen: Path) -> Path:
    """A directory of fake `apt-get`, `dpkg` and `nix-env` speaking what the apt and nix
    sources read (the world's Packages list, an architecture, the world's nix-env JSON), each
    first copying the environment it was started with to `seen/NAME`."""
    world = make_world(root / "world")
    tools = root / "tools"
    tools.mkdir()
    record = f'cat /proc/$$/environ > "{seen}/$(basename "$0")"\n'
    fakes = {
        "apt-get": record
        + "[ \"$*\" = 'indextargets --format $(FILENAME) Created-By: Packages' ] || exit 1\n"
        + f"echo {world.packages}\n",
        "dpkg": record + '[ "$*" = "--print-architecture" ] || exit 1\necho amd64\n',
        "nix-env": record + (world.nix_bin / "nix-env").read_text().removeprefix("#!/bin/sh\n"),
    }
    for name, body in fakes.items():
        (tools / name).write_text("#!/bin/sh\n" + body)
        (tools / name).chmod(0o755)
    sources = [
        {"source_id": "apt", "enabled": True, "priority": 50, "provider": "apt",
         "source_type": "apt",
         "config": {"status_file": str(world.status), "info_dir": str(world.info)}},
        {"source_id": "nixpkgs", "enabled": True, "priority": 40, "provider": "nix",
         "source_type": "nix-pkgs", "config": {"command": "env"}},
    ]  # fmt: skip
    config = root / "state" / "run" / "config.json"
    config.parent.mkdir(parents=True)
    config.write_text(json.dumps({"version": 1, "sources": sources, "profiles": []}))
    return tools


@pytest.mark.skipif(not os.access(APT_HELPER, os.X_OK), reason="the apt source needs apt-helper")
async def test_catalogue_tools_get_a_built_environment(short_tmp: Path) -> None:
    """The apt-get, dpkg and nix-env a sync runs get PATH, HOME, `pass_env` and their own
    settings (NIX_PATH for nix only), never the daemon's GITHUB_TOKEN, another secret of its
    environment or a HOODYD_* variable."""
    seen = short_tmp / "seen"
    seen.mkdir()
    tools = recording_tools(short_tmp, seen)
    other_secret = f"aws-{secrets.token_hex(8)}"
    config = short_tmp / "hoodyd.toml"
    config.write_text('[server]\npass_env = ["ISOLATION_PASS", "HOODYD_TOKEN"]\n')
    config.chmod(0o600)
    daemon = start_daemon(
        short_tmp / "state",
        "--config",
        str(config),
        socket=short_tmp / "s.sock",
        env={
            "PATH": f"{tools}:{os.environ['PATH']}",
            "HOODYD_TOKEN": TOKEN,
            "HOODYD_ISOLATION_PASS": PASSED,
            "GITHUB_TOKEN": SECRET,
            "SOME_SECRET": other_secret,
            "ISOLATION_PASS": PASSED,
            "NIX_PATH": "nixpkgs=/nowhere",
        },
    )
    try:
        async with aiohttp.ClientSession(
            connector=aiohttp.UnixConnector(path=str(daemon.socket)), base_url="http://localhost"
        ) as client:
            async with client.post("/api/v1/run/sources/sync") as response:
                job = await response.json()
            done_url = f"/api/v1/run/jobs/{job['job_id']}?wait=done&timeout_ms=60000"
            async with client.get(done_url) as response:
                done = await response.json()
            assert done["status"] == "done", done
            async with client.get("/api/v1/run/sources/apt/diagnostics") as response:
                apt = await response.json()
    finally:
        daemon.stop()
    assert apt["provider_details"]["record_count"] > 0, apt
    me = pwd.getpwuid(os.geteuid())
    for tool in ("apt-get", "dpkg", "nix-env"):
        env = environ_of_file(seen / tool)
        assert_clean(env)
        assert other_secret not in "".join(env.values()) and "SOME_SECRET" not in env, env
        assert env["PATH"].startswith(f"{tools}:") and env["HOME"] == me.pw_dir, env
        assert env["ISOLATION_PASS"] == PASSED, env
        assert ("NIX_PATH" in env) == (tool == "nix-env"), env


def environ_of_file(path: Path) -> dict[str, str]:
    """An environment block copied from /proc/PID/environ."""
    pairs = (entry.partition("=") for entry in path.read_bytes().decode().split("\0") if entry)
    return {key: value for key, _, value in pairs}


def test_a_tools_environment_adds_only_that_tools_settings() -> None:
    """`tool_environment` is the built base plus the tool's own variables (nix: NIX_PATH,
    NIX_REMOTE, proxies; apt: APT_CONFIG), never a secret or a HOODYD_* variable."""
    source = {
        "PATH": "/bin",
        "GITHUB_TOKEN": SECRET,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "HOODYD_TOKEN": TOKEN,
        "NIX_PATH": "nixpkgs=/n",
        "NIX_REMOTE": "daemon",
        "https_proxy": "http://proxy:3128",
        "APT_CONFIG": "/etc/apt/other.conf",
        "WANTED": "w",
    }
    base = child_environment(source=source, pass_env=["WANTED"])
    nix = tool_environment("nix", source=source, pass_env=["WANTED"])
    apt = tool_environment("apt", source=source, pass_env=["WANTED"])
    assert nix == {
        **base,
        "NIX_PATH": "nixpkgs=/n",
        "NIX_REMOTE": "daemon",
        "https_proxy": "http://proxy:3128",
    }
    assert apt == {**base, "APT_CONFIG": "/etc/apt/other.conf"}
    assert base["WANTED"] == "w" and "GITHUB_TOKEN" not in base
