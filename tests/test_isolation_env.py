"""What hoodyd starts (supervisord, its event listener, programs, terminal holders and shells)
begins with an environment built on purpose: never the daemon's token or other secrets."""

from __future__ import annotations

import os
import pwd
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest

from hoodyd.childenv import child_environment
from hoodyd.polling import poll_until
from tests.conftest import DaemonProcess, sleeper, start_daemon

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
