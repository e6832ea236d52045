"""hoodyd raises its own soft open-file limit; what it starts gets back the soft limit hoodyd
was started with: supervisord's programs and event listener, the holder launcher, holders and
their shells, exec probes and the catalogue tools a sync runs."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest

from hoodyd import childenv
from hoodyd.childenv import with_open_file_limit
from tests.conftest import sleeper, start_daemon
from tests.data.apps.world import make_world

SOFT = 1000  # not supervisord's minfds (1024): a program's limit is not supervisord's doing
PRLIMIT = shutil.which("prlimit")
HARD = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
room = pytest.mark.skipif(
    HARD != resource.RLIM_INFINITY and HARD <= SOFT,
    reason=f"the hard open-file limit ({HARD}) leaves no room to raise a soft {SOFT}",
)


def soft_open_files(pid: int) -> int:
    """The soft "Max open files" of a process (/proc/PID/limits)."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError(f"no open-file limit for pid {pid}")


def soft_in_limits_file(text: str) -> int:
    line = next(line for line in text.splitlines() if line.startswith("Max open files"))
    return int(line.split()[3])


async def post(client: aiohttp.ClientSession, path: str, body: dict[str, Any]) -> dict[str, Any]:
    async with client.post(path, json=body) as response:
        answer: dict[str, Any] = await response.json()
        assert response.status == 200, answer
        return answer


@room
@pytest.mark.skipif(PRLIMIT is None, reason="starting hoodyd with a low soft limit uses prlimit")
async def test_children_get_the_soft_limit_hoodyd_was_started_with(short_tmp: Path) -> None:
    """Under `prlimit --nofile=1000:HARD`, hoodyd runs at the hard limit and supervisord keeps
    it (it holds descriptors for every program), while a supervised program, the event
    listener, an exec probe, the holder launcher, a holder, its shell and a sync's nix-env
    all start at 1000."""
    assert PRLIMIT is not None
    world = make_world(short_tmp / "world")
    tools = short_tmp / "tools"
    tools.mkdir()
    limits = short_tmp / "nix-env.limits"
    fake = (world.nix_bin / "nix-env").read_text()
    (tools / "nix-env").write_text(
        fake.replace("#!/bin/sh\n", f"#!/bin/sh\ncat /proc/$$/limits > {limits}\n", 1)
    )
    (tools / "nix-env").chmod(0o755)
    run_config = short_tmp / "state" / "run" / "config.json"
    run_config.parent.mkdir(parents=True)
    nix = {"source_id": "nixpkgs", "enabled": True, "priority": 40, "provider": "nix",
           "source_type": "nix-pkgs", "config": {"command": "env"}}  # fmt: skip
    run_config.write_text(json.dumps({"version": 1, "sources": [nix], "profiles": []}))
    config = short_tmp / "hoodyd.toml"
    config.write_text("[terminals]\nuser_rc = false\n[supervisor]\npoll_interval = 0.2\n")
    daemon = start_daemon(
        short_tmp / "state",
        "--config",
        str(config),
        socket=short_tmp / "s.sock",
        env={"PATH": f"{tools}:{os.environ['PATH']}"},
        launcher=[PRLIMIT, f"--nofile={SOFT}:", "--"],
    )
    try:
        hoodyd = psutil.Process(daemon.process.pid)
        assert soft_open_files(hoodyd.pid) == resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        assert soft_open_files(hoodyd.pid) != SOFT
        async with aiohttp.ClientSession(
            connector=aiohttp.UnixConnector(path=str(daemon.socket)), base_url="http://localhost"
        ) as client:
            # a program, and its readiness probe checking its own limit
            probe = ["/bin/sh", "-c", f'[ "$(ulimit -Sn)" = {SOFT} ]']
            body = sleeper(readiness={"exec": probe, "interval_ms": 1000, "timeout_ms": 1000})
            added = await post(client, "/api/v1/daemon/programs/add", body)
            started = await post(
                client,
                f"/api/v1/daemon/programs/{added['program']['id']}/start",
                {"wait": True, "timeout": 20},
            )
            assert started["status"]["health"] == "ready", started
            pidfile = daemon.state_dir / "supervisor" / "supervisord.pid"
            supervisord = psutil.Process(int(pidfile.read_text()))
            assert soft_open_files(supervisord.pid) == soft_open_files(hoodyd.pid)
            children = {" ".join(child.cmdline()): child.pid for child in supervisord.children()}
            program = children[body["command"]]
            listener = next(pid for line, pid in children.items() if "eventlistener" in line)
            assert soft_open_files(program) == SOFT
            assert soft_open_files(listener) == SOFT

            # a terminal: its shell, the holder above it, the launcher that forked the holder
            answer = await post(
                client,
                "/api/v1/terminal/execute?terminal_id=1",
                {"command": "echo $$ $(ulimit -Sn)", "timeout": 20},
            )
            shell, shell_says = (int(word) for word in answer["stdout"].split())
            assert shell_says == SOFT and soft_open_files(shell) == SOFT
            assert soft_open_files(psutil.Process(shell).ppid()) == SOFT
            launchers = [
                child.pid
                for child in hoodyd.children()
                if "hoodyd.terminals.holder.launcher" in " ".join(child.cmdline())
            ]
            assert launchers and all(soft_open_files(pid) == SOFT for pid in launchers)

            # a catalogue tool a sync runs
            async with client.post("/api/v1/run/sources/sync") as response:
                job = await response.json()
            async with client.get(
                f"/api/v1/run/jobs/{job['job_id']}?wait=done&timeout_ms=60000"
            ) as response:
                assert (await response.json())["status"] == "done"
            assert soft_in_limits_file(limits.read_text()) == SOFT
    finally:
        daemon.stop()


@room
@pytest.mark.parametrize("use_prlimit", [True, False], ids=["prlimit", "python"])
def test_a_wrapped_argv_starts_at_the_remembered_limit_with_its_environment(
    use_prlimit: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A child started through `with_open_file_limit` (prlimit, or the Python fallback) has
    the remembered soft limit, the same hard limit and exactly the environment it was given
    (no LC_CTYPE from the interpreter's locale coercion); a program missing from its PATH
    fails before anything starts, as a direct start would."""
    if use_prlimit and PRLIMIT is None:
        pytest.skip("util-linux prlimit is not installed")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    remembered = SOFT if soft != SOFT else SOFT - 1
    monkeypatch.setattr(childenv, "_started_open_files", remembered)
    env = {"PATH": "/usr/bin:/bin", "MARK": "kept"}
    argv = with_open_file_limit(
        ["sh", "-c", 'echo "$(ulimit -Sn) $(ulimit -Hn) ${MARK} ${LC_CTYPE:-none}"'],
        path=env["PATH"],
        use_prlimit=use_prlimit,
    )
    assert argv[0] != "sh"
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
    hard_text = "unlimited" if hard == resource.RLIM_INFINITY else str(hard)
    assert done.stdout.split() == [str(remembered), hard_text, "kept", "none"]
    with pytest.raises(FileNotFoundError):
        with_open_file_limit(["no-such-tool-7f3"], path=env["PATH"], use_prlimit=use_prlimit)
    monkeypatch.setattr(childenv, "_started_open_files", soft)
    assert with_open_file_limit(["sh", "-c", "true"]) == ["sh", "-c", "true"]
