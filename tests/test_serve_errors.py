"""`hoodyd serve` start-up errors: each is one line on stderr with exit status 1, no
traceback, and nothing left running (no supervisord, no socket)."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

NOBODY = pwd.getpwnam("nobody")
as_root = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="runs hoodyd as the user nobody: needs root and setpriv",
)


def serve(
    state: Path, *extra: str, user: pwd.struct_passwd | None = None
) -> subprocess.CompletedProcess[str]:
    """`hoodyd serve` on `state` (as `user` when given), to its exit."""
    launcher = []
    if user is not None:
        launcher = [
            "setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups",
        ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOODYD_")}
    return subprocess.run(
        [*launcher, sys.executable, "-m", "hoodyd", "serve", "--state-dir", str(state),
         "--socket", str(state.parent / "s.sock"), *extra],
        capture_output=True, text=True, env=env, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def said(done: subprocess.CompletedProcess[str]) -> list[str]:
    """The lines of stderr that are not log events (JSON lines)."""
    return [line for line in done.stderr.strip().splitlines() if not line.startswith("{")]


def supervisords_under(root: Path) -> list[int]:
    """Pids of the supervisord processes whose command line names a path under `root`."""
    found = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        words = " ".join(process.info["cmdline"] or [])
        if "supervisord" in words and str(root) in words:
            found.append(process.info["pid"])
    return found


def assert_one_line_and_nothing_left(
    done: subprocess.CompletedProcess[str], root: Path, words: str
) -> None:
    assert done.returncode == 1, (done.returncode, done.stderr)
    lines = said(done)
    assert len(lines) == 1 and words in lines[0], done.stderr
    assert lines[0].startswith("hoodyd: ") and "Traceback" not in done.stderr
    assert supervisords_under(root) == []
    assert not (root / "s.sock").exists()


def test_a_busy_tcp_port_is_one_line_and_starts_no_supervisord(short_tmp: Path) -> None:
    """A TCP port another process listens on ends the start-up with one line naming it,
    before supervisord is started."""
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        done = serve(short_tmp / "state", "--tcp", f"127.0.0.1:{port}")
    assert_one_line_and_nothing_left(done, short_tmp, f"cannot listen on 127.0.0.1:{port}")


def test_a_bad_config_key_is_one_line_with_exit_1(short_tmp: Path) -> None:
    """A config key hoodyd does not know is named in one line, and nothing starts."""
    config = short_tmp / "hoodyd.toml"
    config.write_text("[server]\nsokcet = '/tmp/x.sock'\n")
    done = serve(short_tmp / "state", "--config", str(config))
    assert_one_line_and_nothing_left(done, short_tmp, "sokcet")
    assert not (short_tmp / "state").exists()


@as_root
def test_an_allowed_group_the_user_does_not_hold_is_one_line(short_tmp: Path) -> None:
    """`server.allowed_gids` naming a group the user is not in (so the socket cannot be
    given to it) is refused in one line that names the group, not a PermissionError."""
    os.chown(short_tmp, NOBODY.pw_uid, NOBODY.pw_gid)
    config = short_tmp / "hoodyd.toml"
    config.write_text("[server]\nallowed_gids = [0]\n")
    os.chown(config, NOBODY.pw_uid, NOBODY.pw_gid)
    done = serve(short_tmp / "state", "--config", str(config), user=NOBODY)
    assert_one_line_and_nothing_left(done, short_tmp, "allowed_gids names group root (0)")
    assert "PermissionError" not in done.stderr


@as_root
def test_an_unwritable_state_dir_is_one_line(short_tmp: Path) -> None:
    """A state dir the user cannot create is refused in one line naming it and the flag
    that chooses another."""
    os.chown(short_tmp, NOBODY.pw_uid, NOBODY.pw_gid)
    closed = short_tmp / "closed"
    closed.mkdir(mode=0o755)  # root's: nobody cannot create anything in it
    done = serve(closed / "state", user=NOBODY)
    assert done.returncode == 1, done.stderr
    lines = said(done)
    assert len(lines) == 1 and f"cannot use the state dir {closed / 'state'}" in lines[0]
    assert "--state-dir" in lines[0] and "Traceback" not in done.stderr
    assert supervisords_under(short_tmp) == []
