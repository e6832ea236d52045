"""The command line as a supervisorctl/systemctl user expects it: verbs over several names
and `all`, LSB exit codes of `status`, refusals in the command line's own terms, a failed
start's stderr, `term new` without a number, one socket discovery, and `hoodyd down`."""

from __future__ import annotations

import json
import os
import pwd
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from hoodyd.terminals.cleanup import find_holders
from tests.conftest import PORT_SERVER, DaemonProcess, start_daemon
from tests.ports import free_port
from tests.test_cli import Pty, cli_env, eventually, hoodyd, ok, rows

NOBODY = pwd.getpwnam("nobody")
as_root = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="acts as the user nobody: needs root and setpriv",
)
AS_NOBODY = [
    "setpriv", f"--reuid={NOBODY.pw_uid}", f"--regid={NOBODY.pw_gid}", "--clear-groups",
]  # fmt: skip
CRASH = ["sh", "-c", "echo first-$$ >&2; echo 'config error: no such key' >&2; exit 3"]


def refused(done: subprocess.CompletedProcess[str]) -> str:
    """The refusal printed, which must speak of the command line, never of the API."""
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert done.stderr.startswith("hoodyd: ")
    for api_word in ("/api/", "parameter", "pick=", "Program with ID"):
        assert api_word not in done.stderr, done.stderr
    return done.stderr


def test_verbs_take_several_names_and_all(daemon: DaemonProcess) -> None:
    """start/stop/restart/enable/disable take several names (or ids) and `all`; `all`
    leaves a disabled program and a port range alone and says so."""
    for name in ("a", "b", "c"):
        ok(daemon, "add", name, "--enable", "--", "/bin/sleep", "300")
    ok(daemon, "add", "off", "--", "/bin/sleep", "300")
    port = free_port()
    ok(daemon, "add", "web", "--port-range", f"{port}-{port + 1}", "--enable",
       "--", *shlex.split(PORT_SERVER))  # fmt: skip
    mixed = hoodyd(daemon, "start", "a", "web")
    assert mixed.returncode == 2 and "--port" in mixed.stderr
    assert rows(ok(daemon, "status"))["a"][2] == "STOPPED", "nothing was started"
    started = ok(daemon, "start", "a", "2")
    assert "a: running (pid" in started and "b: running (pid" in started
    assert [rows(ok(daemon, "status"))[n][2] for n in "abc"] == ["RUNNING", "RUNNING", "STOPPED"]
    every = ok(daemon, "start", "all")
    assert "a: already running" in every and "c: running (pid" in every
    assert "off: disabled, left alone (`hoodyd enable off`)" in every
    assert "web: port range" in every and "hoodyd start web --port P" in every
    assert "stopped a" in ok(daemon, "stop", "a", "c")
    assert "a: running" in ok(daemon, "restart", "a", "b")
    unknown = hoodyd(daemon, "stop", "a", "nosuch", "other")
    assert "no programs named 'nosuch', 'other'" in refused(unknown)
    assert rows(ok(daemon, "status"))["a"][2] == "RUNNING", "nothing was stopped"
    ok(daemon, "disable", "a", "b")
    table = rows(ok(daemon, "status"))
    assert table["a"][2] == table["b"][2] == "disabled"
    ok(daemon, "enable", "all")
    listed = hoodyd(daemon, "status", "--json", "a", "off")
    assert listed.returncode == 3, "named programs are not running"
    assert [p["enabled"] for p in json.loads(listed.stdout)["programs"]] == [True, True]
    ok(daemon, "start", "c")
    stopped = ok(daemon, "stop", "all")
    assert "stopped c" in stopped and "web: was not running" in stopped
    assert hoodyd(daemon, "status", "a", "b", "c").returncode == 3


def test_status_exit_codes_follow_lsb(daemon: DaemonProcess) -> None:
    """`status NAME...` exits 0 when every program named runs, 3 when one does not, 4 when
    a name is unknown (still showing the known ones); plain `status` exits 0."""
    ok(daemon, "add", "up", "--enable", "--", "/bin/sleep", "300")
    ok(daemon, "add", "idle", "--enable", "--", "/bin/sleep", "300")
    ok(daemon, "start", "up")
    assert hoodyd(daemon, "status", "up").returncode == 0
    assert hoodyd(daemon, "status", "up", "idle").returncode == 3
    assert hoodyd(daemon, "status", "all").returncode == 3
    assert hoodyd(daemon, "status").returncode == 0
    unknown = hoodyd(daemon, "status", "up", "ghost")
    assert unknown.returncode == 4 and "no program named 'ghost'" in unknown.stderr
    assert rows(unknown.stdout)["up"][2] == "RUNNING"
    ok(daemon, "disable", "up")
    assert hoodyd(daemon, "status", "up").returncode == 3


def test_rm_all_asks_on_a_terminal_and_needs_yes_otherwise(daemon: DaemonProcess) -> None:
    """`rm all` without a terminal refuses (exit 2) unless `--yes`; on a terminal it asks,
    and only `y` removes."""
    ok(daemon, "add", "one", "--", "/bin/sleep", "300")
    ok(daemon, "add", "two", "--", "/bin/sleep", "300")
    unconfirmed = hoodyd(daemon, "rm", "all")
    assert unconfirmed.returncode == 2 and "--yes" in unconfirmed.stderr
    argv = [sys.executable, "-m", "hoodyd", "rm", "all"]
    declined = Pty(argv, cli_env(daemon, NO_COLOR="1"))
    declined.expect(b"remove 2 program(s): one, two? [y/N]")
    declined.send(b"n\n")
    assert declined.finish() == 0 and b"nothing removed" in declined.seen
    assert set(rows(ok(daemon, "status"))) == {"one", "two"}
    accepted = Pty(argv, cli_env(daemon, NO_COLOR="1"))
    accepted.expect(b"[y/N]")
    accepted.send(b"y\n")
    assert accepted.finish() == 0 and b"removed two" in accepted.seen
    assert "no programs" in ok(daemon, "status")
    ok(daemon, "add", "three", "--", "/bin/sleep", "300")
    assert "removed three" in ok(daemon, "rm", "all", "--yes")


def test_a_failed_start_shows_its_stderr_and_the_next_step(daemon: DaemonProcess) -> None:
    """A start that fails prints the program's last stderr lines and the verbs that help;
    with --json it prints the API's error object too; exit 1 either way."""
    ok(daemon, "add", "crash", "--enable", "--", *CRASH)
    said = refused(hoodyd(daemon, "start", "crash"))
    assert "crash failed to start" in said
    assert "  config error: no such key" in said
    assert "hoodyd logs crash --stderr" in said and "hoodyd edit crash -- CMD" in said
    as_json = hoodyd(daemon, "start", "crash", "--json")
    assert as_json.returncode == 1
    error = json.loads(as_json.stdout)
    assert error["reason"] == "START_FAILED" and "no such key" in error["stderr_tail"]
    assert "config error: no such key" in as_json.stderr
    assert json.loads(hoodyd(daemon, "logs", "ghost", "--json").stdout)["reason"] == (
        "PROGRAM_NOT_FOUND"
    )


def test_refusals_name_the_command_lines_verbs_and_flags(daemon: DaemonProcess) -> None:
    """A disabled program points to `hoodyd enable`, a port range to --port, an unknown
    candidate to --id, a reserved terminal number to `hoodyd term new`: never to API paths
    or parameters."""
    ok(daemon, "add", "off", "--", "/bin/sleep", "300")
    assert "`hoodyd enable off`" in refused(hoodyd(daemon, "start", "off"))
    port = free_port()
    ok(daemon, "add", "web", "--port-range", f"{port}-{port}", "--enable",
       "--", *shlex.split(PORT_SERVER))  # fmt: skip
    assert "--port" in refused(hoodyd(daemon, "logs", "web"))
    assert "--port" in refused(hoodyd(daemon, "start", "web", "--port", str(port + 1)))
    assert "`hoodyd term new`" in refused(hoodyd(daemon, "term", "new", "40007"))
    ok(daemon, "term", "new", "5")
    ok(daemon, "term", "exec", "5", "--", "exit 0")
    exited = refused(hoodyd(daemon, "term", "exec", "5", "--", "true"))
    assert "`hoodyd term new 5`" in exited
    eventually(lambda: "/sh" in ok(daemon, "search", "sh") or None)  # first sync done
    picked = refused(hoodyd(daemon, "run", "sh", "--id", "nope/nothing", "--dry-run"))
    assert "--id nope/nothing" in picked and "`hoodyd search sh`" in picked


def test_term_new_without_a_number_picks_the_lowest_free_one(daemon: DaemonProcess) -> None:
    """`term new` without N creates the lowest unused terminal number and prints it."""
    ok(daemon, "term", "new", "1")
    ok(daemon, "term", "new", "3")
    assert ok(daemon, "term", "new").strip() == "created terminal 2"
    assert ok(daemon, "term", "new").strip() == "created terminal 4"
    made = json.loads(ok(daemon, "term", "new", "--json"))
    assert made["terminal_id"] == "5" and made["created"] is True


def test_status_shows_a_served_port_running_and_stopped_instances_once(
    daemon: DaemonProcess,
) -> None:
    """Right after `start --wait-for port` the instance is RUNNING (it serves); stopped
    instances of a range fold into one line with their ports."""
    first = free_port()
    ports = [first, first + 1, first + 2]
    ok(daemon, "add", "web", "--port-range", f"{ports[0]}-{ports[2]}", "--enable",
       "--", *shlex.split(PORT_SERVER))  # fmt: skip
    for port in ports:
        ok(daemon, "start", "web", "--port", str(port), "--wait-for", "port")
        assert rows(ok(daemon, "status", "web"))[f"web_{port}"][1] == "RUNNING"
    ok(daemon, "stop", "web", "--port", str(ports[0]))
    ok(daemon, "stop", "web", "--port", str(ports[2]))
    lines = ok(daemon, "status").strip().splitlines()
    assert len(lines) == 4, lines
    folded = lines[3].split()
    assert folded[:3] == ["2", "stopped", "STOPPED"]
    assert folded[3] == f"{ports[0]},{ports[2]}"
    assert lines[2].split()[:2] == [f"web_{ports[1]}", "RUNNING"]


@as_root
def test_one_socket_whatever_the_shell_environment(short_tmp: Path) -> None:
    """A user's shell with XDG_RUNTIME_DIR and one without it (after `su -`) name the same
    socket, `hoodyd socket` prints it, and `serve` binds the path the same function gives."""
    base = {k: v for k, v in cli_env(None).items() if k != "XDG_RUNTIME_DIR"}
    base["HOME"] = str(short_tmp)
    where = [*AS_NOBODY, sys.executable, "-m", "hoodyd", "socket"]
    found = {
        subprocess.run(where, env=env, capture_output=True, text=True, check=True).stdout.strip()
        for env in (base, {**base, "XDG_RUNTIME_DIR": str(short_tmp)})
    }
    runtime = Path(f"/run/user/{NOBODY.pw_uid}")
    expected = (
        runtime / "hoodyd/hoodyd.sock"
        if runtime.is_dir() and runtime.stat().st_uid == NOBODY.pw_uid
        else Path(f"/tmp/hoodyd-{NOBODY.pw_uid}/hoodyd/hoodyd.sock")
    )
    assert found == {str(expected)}
    bound = subprocess.run(
        [*AS_NOBODY, sys.executable, "-c",
         "from hoodyd.config import load; print(load(environ={}).server.socket)"],
        env={**base, "XDG_RUNTIME_DIR": "/elsewhere"}, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert bound.stdout.strip() == str(expected)


@as_root
def test_permission_denied_names_the_owner_and_how_to_get_access(
    daemon: DaemonProcess,
) -> None:
    """A socket the user may not open is reported as whose it is and which settings give
    access, not as a daemon to start."""
    done = subprocess.run(
        [*AS_NOBODY, sys.executable, "-m", "hoodyd", "status", "--socket", str(daemon.socket)],
        env=cli_env(None), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 3
    assert "permission denied" in done.stderr and "belongs to root" in done.stderr
    assert "server.allowed_gids" in done.stderr and "server.allowed_uids" in done.stderr
    assert "start one with" not in done.stderr


def test_down_ends_the_daemon_its_programs_and_terminals(short_tmp: Path) -> None:
    """`hoodyd down --state-dir` stops the daemon, then supervisord and its programs, then
    the terminal sessions; a second `down` finds nothing and still exits 0."""
    daemon = start_daemon(short_tmp)
    try:
        ok(daemon, "add", "sleepy", "--enable", "--", "/bin/sleep", "300")
        ok(daemon, "start", "sleepy")
        program_pid = int(rows(ok(daemon, "status"))["sleepy"][3])
        ok(daemon, "term", "new", "3")
        assert find_holders(short_tmp)
        supervisord = int((short_tmp / "supervisor" / "supervisord.pid").read_text())
        said = ok(daemon, "down", "--state-dir", str(short_tmp), "--grace", "2")
        assert f"the daemon (pid {daemon.process.pid})" in said
        assert "supervisord and its programs" in said and "1 terminal session(s)" in said
        assert daemon.process.wait(5) == 0
        assert not daemon.socket.exists()
        for pid in (supervisord, program_pid):
            assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"
        assert find_holders(short_tmp) == []
        again = ok(daemon, "down", "--state-dir", str(short_tmp))
        assert "nothing was running" in again
    finally:
        daemon.stop()


def test_serve_names_down_on_exit_and_completion_knows_it(short_tmp: Path) -> None:
    """On a terminal `serve` says on exit that `hoodyd down` ends what keeps running, and
    bash completion offers `down`."""
    argv = [sys.executable, "-m", "hoodyd", "serve", "--state-dir", str(short_tmp),
            "--socket", str(short_tmp / "s.sock")]  # fmt: skip
    server = Pty(argv, {**cli_env(None), "HOODYD_LOG_FORMAT": "json"})
    server.expect(b"listening on unix:")
    server.process.send_signal(signal.SIGINT)
    server.expect(f"hoodyd down --state-dir {short_tmp}".encode())
    assert server.finish() == 0
    script = short_tmp / "hoodyd.bash"
    script.write_text(hoodyd(None, "completion", "bash").stdout)
    probe = (
        f'source {script}; COMP_WORDS=(hoodyd dow); COMP_CWORD=1; _hoodyd; echo "${{COMPREPLY[*]}}"'
    )
    done = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["down"]
