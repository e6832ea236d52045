"""The `hoodyd` command line against a live daemon: every verb, names or ids, `--json`, exit
codes, colour only on a TTY, and the socket found as `serve` binds it."""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import select
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hoodyd.polling import poll_until
from tests.conftest import PORT_SERVER, DaemonProcess, start_daemon
from tests.ports import free_port, free_port_range

TICKER = ["/bin/sh", "-c", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done"]


def cli_env(daemon: DaemonProcess | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOODYD_")}
    env.pop("NO_COLOR", None)
    if daemon is not None:
        env["HOODYD_SOCKET"] = str(daemon.socket)
    env.update(extra)
    return env


def hoodyd(
    daemon: DaemonProcess | None, *args: str, timeout: float = 60, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hoodyd", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cli_env(daemon, **env),
        stdin=subprocess.DEVNULL,
    )


def ok(daemon: DaemonProcess, *args: str) -> str:
    done = hoodyd(daemon, *args)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


def rows(text: str) -> dict[str, list[str]]:
    """A printed table's rows by their name: the second column, or the first of an instance
    row (which has no id)."""
    table = {}
    for line in text.strip().splitlines()[1:]:
        cells = line.split()
        table[cells[1] if cells[0].isdigit() else cells[0]] = cells
    return table


def eventually(check: Callable[[], object], timeout: float = 30) -> object:
    """The first answer of `check` that is not None, asked again until `timeout`."""

    async def ask() -> object:
        return check()

    answer = asyncio.run(poll_until(ask, timeout=timeout, interval=0.1))
    assert answer is not None, "not within the timeout"
    return answer


def found_probe(daemon: DaemonProcess, *flags: str) -> str | None:
    """The search's table once the first sync has found `hoodydprobe`."""
    listed = ok(daemon, "search", "hoodydprobe", *flags)
    return listed if "hoodydprobe" in listed else None


def me() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


class Pty:
    """A child process on a real pseudo-terminal, read until a pattern shows."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        master, slave = os.openpty()
        self.master = master
        self.process = subprocess.Popen(
            argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True
        )
        os.close(slave)
        self.seen = b""

    def expect(self, pattern: bytes, timeout: float = 20) -> bytes:
        deadline = time.monotonic() + timeout
        while pattern not in self.seen:
            left = deadline - time.monotonic()
            assert left > 0, f"{pattern!r} not seen in {self.seen!r}"
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:  # the child closed the terminal
                    chunk = b""
                if not chunk:
                    assert pattern in self.seen, f"{pattern!r} not in {self.seen!r}"
                self.seen += chunk
        return self.seen

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def finish(self, timeout: float = 20) -> int:
        try:
            while True:
                ready, _, _ = select.select([self.master], [], [], 0.2)
                if ready:
                    self.seen += os.read(self.master, 4096)
                elif self.process.poll() is not None:
                    break
        except OSError:
            pass
        code = self.process.wait(timeout)
        os.close(self.master)
        return code


@pytest.fixture
def probe_daemon(short_tmp: Path) -> Iterator[DaemonProcess]:
    """A daemon whose PATH has one executable of a unique name, `hoodydprobe`."""
    bin_dir = short_tmp / "bin"
    bin_dir.mkdir()
    probe = bin_dir / "hoodydprobe"
    probe.write_text("#!/bin/sh\necho probe ran\n")
    probe.chmod(0o755)
    daemon = start_daemon(short_tmp / "state", env={"PATH": f"{bin_dir}:{os.environ['PATH']}"})
    try:
        yield daemon
    finally:
        daemon.stop()


def test_add_start_status_stop_and_remove_by_name_and_by_id(daemon: DaemonProcess) -> None:
    """A program is added with its argv after `--`, started by name, shown RUNNING with its
    pid in the table and in `--json`, stopped by id and removed."""
    added = ok(daemon, "add", "sleepy", "--enable", "--", "/bin/sleep", "300")
    assert "added sleepy (id 1)" in added
    assert rows(ok(daemon, "status"))["sleepy"][2] == "STOPPED"
    assert "sleepy: running (pid" in ok(daemon, "start", "sleepy")
    table = ok(daemon, "status", "sleepy")
    assert table.splitlines()[0].split() == ["ID", "NAME", "STATE", "PID", "PORTS", "UPTIME"]
    row = rows(table)["sleepy"]
    assert row[:3] == ["1", "sleepy", "RUNNING"] and row[3].isdigit()
    answer = json.loads(ok(daemon, "status", "--json"))
    program = answer["programs"][0]
    assert program["command"] == "/bin/sleep 300" and program["user"] == me()
    assert program["status"]["pid"] == int(row[3])
    assert "already running" in ok(daemon, "start", "1")
    restarted = ok(daemon, "restart", "sleepy")
    assert "stopped sleepy" in restarted and "sleepy: running (pid" in restarted
    assert rows(ok(daemon, "status"))["sleepy"][3] != row[3], "a new process"
    assert "stopped sleepy" in ok(daemon, "stop", "1")
    assert "was not running" in ok(daemon, "stop", "sleepy")
    assert "removed sleepy" in ok(daemon, "rm", "sleepy")
    assert "no programs" in ok(daemon, "status")


def test_port_range_programs_start_per_port_log_and_stop_all(daemon: DaemonProcess) -> None:
    """`--port-range` adds a port-range program; `start --port` starts one instance and waits
    for its port; `logs --port` reads its log; `stop` without a port stops every instance;
    `restart` starts again what ran."""
    first = free_port_range(3)
    low, mid, high = first, first + 1, first + 2
    ok(
        daemon,
        "add",
        "web",
        "--port-range",
        f"{low}-{high}",
        "--enable",
        "--",
        *shlex.split(PORT_SERVER),
    )
    assert f"listening on port {mid}" in ok(
        daemon, "start", "web", "--port", str(mid), "--wait-for", "port"
    )
    ok(daemon, "start", "web", "--port", str(high))
    table = rows(ok(daemon, "status"))
    assert table["web"][2:] == ["2", "running", f"{low}-{high}"]
    assert table[f"web_{mid}"][1] == "RUNNING" and table[f"web_{mid}"][3] == str(mid)
    assert f"listening on {mid}" in ok(daemon, "logs", "web", "--port", str(mid))
    assert "bound at" in ok(daemon, "logs", "web", "--port", str(mid), "--stderr", "-n", "1")
    restarted = ok(daemon, "restart", "web")
    assert f"web_{mid}" in restarted and f"web_{high}" in restarted
    stopped = ok(daemon, "stop", "web")
    assert f"web_{mid}" in stopped and f"web_{high}" in stopped
    needs_port = hoodyd(daemon, "start", "web")
    assert needs_port.returncode == 2 and "--port" in needs_port.stderr


def test_edit_enable_and_disable(daemon: DaemonProcess) -> None:
    """`edit` changes only the fields its flags name; `disable` shows as disabled; `enable`
    registers the program again."""
    ok(daemon, "add", "ed", "--enable", "--env", "A=1", "--", "/bin/sleep", "300")
    ok(daemon, "edit", "ed", "--description", "kept", "--env", "B=2")
    program = json.loads(ok(daemon, "status", "--json"))["programs"][0]
    assert program["description"] == "kept"
    assert program["environment"] == {"B": "2"}
    assert program["command"] == "/bin/sleep 300"
    ok(daemon, "edit", "1", "--", "/bin/sleep", "301")
    assert "disabled ed" in ok(daemon, "disable", "ed")
    assert rows(ok(daemon, "status"))["ed"][2] == "disabled"
    assert "enabled ed" in ok(daemon, "enable", "1")
    program = json.loads(ok(daemon, "status", "--json"))["programs"][0]
    assert program["command"] == "/bin/sleep 301" and program["enabled"] is True


def test_logs_follow_prints_new_lines_as_they_come(daemon: DaemonProcess) -> None:
    """`logs -f` prints the last lines and keeps printing what the program writes."""
    ok(daemon, "add", "ticker", "--enable", "--", *TICKER)
    ok(daemon, "start", "ticker")
    follower = subprocess.Popen(
        [sys.executable, "-m", "hoodyd", "logs", "ticker", "-f", "-n", "1"],
        stdout=subprocess.PIPE,
        env=cli_env(daemon),
    )
    try:
        assert follower.stdout is not None
        numbers = [int(follower.stdout.readline().split()[1]) for _ in range(6)]
        assert numbers == list(range(numbers[0], numbers[0] + 6))
    finally:
        follower.send_signal(signal.SIGINT)
        assert follower.wait(10) == 130
        if follower.stdout is not None:
            follower.stdout.close()


def test_events_prints_state_changes(daemon: DaemonProcess) -> None:
    """`events --json` prints one JSON event per state change; plain `events` a line each."""
    ok(daemon, "add", "ev", "--enable", "--", "/bin/sleep", "300")
    watchers = [
        subprocess.Popen(
            [sys.executable, "-m", "hoodyd", "events", *flags],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=cli_env(daemon),
            text=True,
        )
        for flags in (["--json"], [])
    ]
    try:
        for watcher in watchers:  # both subscribed before the start
            assert watcher.stderr is not None
            assert "following program events" in watcher.stderr.readline()
        ok(daemon, "start", "ev")
        as_json, as_text = watchers
        assert as_json.stdout is not None and as_text.stdout is not None
        first = json.loads(as_json.stdout.readline())
        assert (first["event"], first["program"]["name"]) == ("STARTING", "ev")
        assert json.loads(as_json.stdout.readline())["event"] == "RUNNING"
        assert "ev  STOPPED -> STARTING" in as_text.stdout.readline()
        assert "STARTING -> RUNNING pid" in as_text.stdout.readline()
    finally:
        for watcher in watchers:
            watcher.terminate()
            watcher.wait(10)
            for stream in (watcher.stdout, watcher.stderr):
                if stream is not None:
                    stream.close()


def test_term_verbs_and_exec_exit_codes(daemon: DaemonProcess) -> None:
    """`term new` creates a session, `term exec` prints the output and exits with the
    command's code, `term ls` lists it, `term kill` ends it."""
    assert "created terminal 7" in ok(daemon, "term", "new", "7")
    done = hoodyd(daemon, "term", "exec", "7", "--", "sh", "-c", "echo out; exit 7")
    assert done.returncode == 7 and done.stdout.strip() == "out"
    assert hoodyd(daemon, "term", "exec", "7", "--", "true").returncode == 0
    assert hoodyd(daemon, "term", "exec", "7", "--", "false").returncode == 1
    as_text = hoodyd(daemon, "term", "exec", "7", "--", "echo $((6 * 7))")
    assert as_text.stdout.strip() == "42"
    assert rows(ok(daemon, "term", "ls"))["running"][0] == "7"
    assert json.loads(ok(daemon, "term", "ls", "--json"))["data"][0]["terminal_id"] == "7"
    assert "removed terminal 7" in ok(daemon, "term", "kill", "7")
    # a removed terminal is created again on first use; a reserved id is refused
    assert hoodyd(daemon, "term", "exec", "7", "--", "true").returncode == 0
    refused = hoodyd(daemon, "term", "exec", "40007", "--", "true")
    assert refused.returncode == 1 and refused.stderr.startswith("hoodyd: ")


def test_term_verbs_create_terminals_with_session_options(
    daemon: DaemonProcess, short_tmp: Path
) -> None:
    """`term new` and a first `term exec` start the terminal with `--shell`, `--cwd` and
    `--env`; a malformed `--env` is a usage error, a missing directory the daemon's refusal."""
    probe = 'echo "$GREETING|$(pwd)|$(ps -o comm= -p $$)"'
    options = ["--shell", "sh", "--cwd", str(short_tmp), "--env", "GREETING=hi=there"]
    ok(daemon, "term", "new", "9", *options)
    assert ok(daemon, "term", "exec", "9", "--", probe).strip() == f"hi=there|{short_tmp}|sh"
    assert ok(daemon, "term", "exec", "11", *options, "--", probe).strip() == (
        f"hi=there|{short_tmp}|sh"
    )
    assert hoodyd(daemon, "term", "exec", "12", "--env", "NOEQUALS", "--", "true").returncode == 2
    refused = hoodyd(daemon, "term", "new", "13", "--cwd", "/no/such/dir")
    assert refused.returncode == 1 and "/no/such/dir" in refused.stderr, refused.stderr
    listed = json.loads(ok(daemon, "term", "ls", "--json"))["data"]
    assert sorted(int(s["terminal_id"]) for s in listed) == [9, 11]


def test_unreachable_daemon_exit_3_names_the_socket(short_tmp: Path) -> None:
    """No daemon: exit 3, and the message names the socket tried and how to start one."""
    missing = short_tmp / "nobody.sock"
    done = hoodyd(None, "status", HOODYD_SOCKET=str(missing))
    assert done.returncode == 3
    assert str(missing) in done.stderr and "hoodyd serve" in done.stderr
    done = hoodyd(None, "health", "--url", f"http://127.0.0.1:{free_port()}")
    assert done.returncode == 3 and "127.0.0.1" in done.stderr
    done = hoodyd(None, "attach", "1", "--socket", str(missing))
    assert done.returncode == 2 and "stdin is not one" in done.stderr  # no TTY: said first


def test_refusals_exit_1_and_usage_errors_exit_2(daemon: DaemonProcess) -> None:
    """A refusal prints the daemon's error and exits 1; a wrong command line exits 2."""
    done = hoodyd(daemon, "logs", "nosuch")
    assert done.returncode == 1
    assert done.stderr == "hoodyd: no program named 'nosuch' (`hoodyd status` lists the programs)\n"
    ok(daemon, "add", "off", "--", "/bin/sleep", "300")
    done = hoodyd(daemon, "start", "off")
    assert done.returncode == 1 and "is disabled" in done.stderr
    assert hoodyd(daemon, "start").returncode == 2
    assert hoodyd(daemon, "add", "nocommand").returncode == 2
    assert hoodyd(daemon, "add", "x", "--port-range", "a-b", "--", "true").returncode == 2
    assert hoodyd(daemon, "frobnicate").returncode == 2


def test_tcp_with_url_and_token(short_tmp: Path) -> None:
    """`--url` reaches a daemon on TCP with HOODYD_TOKEN; a wrong token is refused (exit 1)."""
    port = free_port()
    daemon = start_daemon(short_tmp, "--tcp", f"127.0.0.1:{port}", env={"HOODYD_TOKEN": "t0k"})
    try:
        url = f"http://127.0.0.1:{port}"
        done = hoodyd(None, "status", "--url", url, HOODYD_TOKEN="t0k")
        assert done.returncode == 0 and "no programs" in done.stdout
        health = hoodyd(None, "health", "--json", HOODYD_URL=url, HOODYD_TOKEN="t0k")
        assert json.loads(health.stdout)["daemon"]["status"] == "ok"
        table = hoodyd(None, "health", HOODYD_URL=url, HOODYD_TOKEN="t0k").stdout
        assert table.splitlines()[0] == f"hoodyd on {url}"
        assert [line.split()[:2] for line in table.splitlines()[2:]] == [
            ["daemon", "ok"],
            ["terminal", "ok"],
            ["run", "ok"],
        ]
        done = hoodyd(None, "status", "--url", url, HOODYD_TOKEN="wrong")
        assert done.returncode == 1 and done.stderr.startswith("hoodyd: ")
    finally:
        daemon.stop()


def test_the_socket_is_found_as_serve_binds_it(short_tmp: Path) -> None:
    """`--socket` over HOODYD_SOCKET over the config file's server.socket over the default,
    the same order `serve` uses."""
    config = short_tmp / "hoodyd.toml"
    config.write_text(f'[server]\nsocket = "{short_tmp}/from-file.sock"\n')
    found = hoodyd(None, "socket", HOODYD_CONFIG=str(config)).stdout.strip()
    assert found == f"{short_tmp}/from-file.sock"
    found = hoodyd(None, "socket", HOODYD_CONFIG=str(config), HOODYD_SOCKET="/x/env.sock")
    assert found.stdout.strip() == "/x/env.sock"
    found = hoodyd(None, "socket", "--socket", "/x/flag.sock", HOODYD_SOCKET="/x/env.sock")
    assert found.stdout.strip() == "/x/flag.sock"
    default = subprocess.run(
        [sys.executable, "-c", "from hoodyd.config import load; print(load().server.socket)"],
        capture_output=True,
        text=True,
        env=cli_env(None),
        check=True,
    ).stdout
    assert hoodyd(None, "socket").stdout == default


def test_search_and_run_with_first_pick_and_dry_run(probe_daemon: DaemonProcess) -> None:
    """`search` lists candidates in a table; `run --first`, `--pick N` and `--id` pick one;
    `--dry-run` prints the command and runs nothing; a real run goes to a terminal."""
    listed = str(eventually(lambda: found_probe(probe_daemon, "-n", "3")))
    header, first = listed.splitlines()[:2]
    assert header.split() == ["#", "CANDIDATE", "KIND", "INSTALLED", "TITLE"]
    candidate = first.split()[1]
    assert candidate.endswith("/hoodydprobe")
    found = json.loads(ok(probe_daemon, "search", "hoodydprobe", "--json"))
    assert found["candidates"][0]["candidate_id"] == candidate
    for flags in (["--first"], ["--pick", "1"], ["--id", candidate]):
        printed = ok(probe_daemon, "run", "hoodydprobe", "--dry-run", *flags)
        assert printed.strip().endswith("/hoodydprobe"), flags
    ok(probe_daemon, "term", "new", "4")
    ran = ok(probe_daemon, "run", "hoodydprobe", "--first", "-t", "4")
    assert "running in terminal 4" in ran and "hoodyd attach 4" in ran
    # commands of a terminal run in order: this one completes after the probe did
    assert hoodyd(probe_daemon, "term", "exec", "4", "--", "true").returncode == 0


def test_run_without_a_pick_asks_from_a_numbered_list(probe_daemon: DaemonProcess) -> None:
    """On a terminal, `run QUERY` shows the numbered candidates and asks; the number typed
    picks one."""
    eventually(lambda: found_probe(probe_daemon))
    session = Pty(
        [sys.executable, "-m", "hoodyd", "run", "hoodydprobe", "--dry-run"],
        cli_env(probe_daemon, NO_COLOR="1"),
    )
    session.expect(b"run which? [1-")
    assert b"1  system-path:" in session.seen
    session.send(b"1\n")
    assert session.finish() == 0
    assert session.seen.rstrip().endswith(b"/hoodydprobe")


def test_colour_only_on_a_tty_and_never_with_no_color(daemon: DaemonProcess) -> None:
    """State names are coloured on a terminal; not with NO_COLOR, not into a pipe."""
    ok(daemon, "add", "hue", "--enable", "--", "/bin/sleep", "300")
    ok(daemon, "start", "hue")
    argv = [sys.executable, "-m", "hoodyd", "status"]
    coloured = Pty(argv, cli_env(daemon))
    assert coloured.finish() == 0
    assert b"\x1b[32mRUNNING\x1b[0m" in coloured.seen
    plain = Pty(argv, cli_env(daemon, NO_COLOR="1"))
    assert plain.finish() == 0
    assert b"\x1b[" not in plain.seen and b"RUNNING" in plain.seen
    assert "\x1b[" not in ok(daemon, "status")


def test_completion_scripts_know_every_verb(tmp_path: Path) -> None:
    """`completion bash` is valid bash that completes verbs and options; zsh loads it through
    bashcompinit; fish gets `complete` lines."""
    bash = hoodyd(None, "completion", "bash").stdout
    script = tmp_path / "hoodyd.bash"
    script.write_text(bash)
    probe = (
        f"source {script}; COMP_WORDS=(hoodyd st); COMP_CWORD=1; _hoodyd; "
        'echo "${COMPREPLY[*]}"; COMP_WORDS=(hoodyd logs --fo); COMP_CWORD=2; _hoodyd; '
        'echo "${COMPREPLY[*]}"; COMP_WORDS=(hoodyd term e); COMP_CWORD=2; _hoodyd; '
        'echo "${COMPREPLY[*]}"'
    )
    done = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, check=True)
    verbs, options, term = done.stdout.splitlines()
    assert set(verbs.split()) == {"start", "status", "stop", "stop-supervisor", "stop-terminals"}
    assert options == "--follow"
    assert term == "exec"
    zsh = hoodyd(None, "completion", "zsh").stdout
    assert zsh.startswith("autoload -U +X bashcompinit && bashcompinit\n")
    assert zsh.endswith(bash)
    fish = hoodyd(None, "completion", "fish").stdout
    assert "complete -c hoodyd -n '__fish_seen_subcommand_from logs' -l follow" in fish
    assert hoodyd(None, "completion", "tcsh").returncode == 2


def program_names_from(script: Path, env: dict[str, str]) -> list[str]:
    probe = (
        f"source {script}; COMP_WORDS=(hoodyd start ''); COMP_CWORD=2; _hoodyd; "
        'printf "%s\\n" "${COMPREPLY[@]}"'
    )
    done = subprocess.run(
        ["bash", "-c", probe], capture_output=True, text=True, env=env, check=True
    )
    return done.stdout.split()


def test_completion_offers_program_names(daemon: DaemonProcess, tmp_path: Path) -> None:
    """Completing a program argument offers the daemon's program names, and `all` where the
    verb takes it."""
    ok(daemon, "add", "alpha", "--", "/bin/sleep", "1")
    ok(daemon, "add", "beta", "--", "/bin/sleep", "1")
    script = tmp_path / "hoodyd.bash"
    script.write_text(ok(daemon, "completion", "bash"))
    env: dict[str, Any] = cli_env(daemon)
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    assert program_names_from(script, env) == ["alpha", "beta", "all"]
