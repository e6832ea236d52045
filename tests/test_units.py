"""`hoodyd install-units` writes systemd units that start this installation as shipped, clean
under `systemd-analyze verify`; log lines carry journald priorities under systemd."""

from __future__ import annotations

import os
import re
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from hoodyd.config import Config
from hoodyd.units import (
    SYSTEM_TOKEN,
    TIMEOUT_STOP_S,
    hoodyd_command,
    socket_gid,
    system_units,
    user_units,
)
from tests.conftest import wait_until

REPO = Path(__file__).resolve().parent.parent
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    ANALYZE is None, reason="systemd-analyze is not installed on this machine"
)


def install(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hoodyd", "install-units", *args],
        capture_output=True, text=True, check=True, env={**os.environ, **(env or {})},
    )


def unit_values(text: str, key: str) -> list[str]:
    return re.findall(rf"^{key}=(.*)$", text, re.MULTILINE)


def verify(*paths: Path, user: bool = False, runtime: Path | None = None) -> str:
    """What `systemd-analyze verify` says about the units (empty when clean)."""
    assert ANALYZE is not None
    env = dict(os.environ)
    if runtime is not None:
        env["XDG_RUNTIME_DIR"] = str(runtime)
    command = [ANALYZE, *(["--user"] if user else []), "verify", *map(str, paths)]
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def test_system_units_start_this_installation(tmp_path: Path) -> None:
    """The system service starts this interpreter's hoodyd with a config file that exists,
    gives the drain longer than server.shutdown_timeout, keeps supervisord on stop, and is
    socket-activated on /run/hoodyd/hoodyd.sock for group hoodyd."""
    done = install("--prefix", str(tmp_path))
    service = (tmp_path / "etc/systemd/system/hoodyd.service").read_text()
    socket = (tmp_path / "etc/systemd/system/hoodyd.socket").read_text()
    command = " ".join(hoodyd_command())
    assert unit_values(service, "ExecStart") == [
        f"{command} serve --config /etc/hoodyd/hoodyd.toml"
    ]
    assert Path(hoodyd_command()[0]).is_file()
    assert int(unit_values(service, "TimeoutStopSec")[0]) == TIMEOUT_STOP_S
    assert Config().server.shutdown_timeout < TIMEOUT_STOP_S
    assert unit_values(service, "KillMode") == ["process"]
    assert unit_values(service, "Type") == ["notify"]
    assert unit_values(socket, "ListenStream") == ["/run/hoodyd/hoodyd.sock"]
    assert unit_values(socket, "SocketGroup") == ["hoodyd"]
    assert unit_values(socket, "SocketMode") == ["0660"]
    config = tmp_path / "etc/hoodyd/hoodyd.toml"
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys; from hoodyd.config import load; load(sys.argv[1])",
         str(config)],
        check=False,
    )
    assert loaded.returncode == 0, "the config file written is one hoodyd reads"
    assert "systemctl enable --now hoodyd.socket hoodyd.service" in done.stdout


def test_user_unit_runs_as_the_user_with_its_own_config(tmp_path: Path) -> None:
    """The user unit starts the same hoodyd with the user's config, no socket unit (the
    socket goes in $XDG_RUNTIME_DIR), and says how to keep it running after logout."""
    home = tmp_path / "home"
    done = install("--user", env={"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")})
    service = (home / ".config/systemd/user/hoodyd.service").read_text()
    config = home / ".config/hoodyd/hoodyd.toml"
    assert config.exists()
    assert unit_values(service, "ExecStart") == [
        f"{' '.join(hoodyd_command())} serve --config {config}"
    ]
    assert unit_values(service, "WantedBy") == ["default.target"]
    assert not (home / ".config/systemd/user/hoodyd.socket").exists()
    assert "systemctl --user enable --now hoodyd.service" in done.stdout
    assert "loginctl enable-linger" in done.stdout


def test_install_units_writes_its_files_closed_to_others(tmp_path: Path) -> None:
    """install-units creates the system config 0600 (0640 for group hoodyd when that group
    exists), the credential file holding a fresh token 0600, and the user config 0600: never
    0644, whatever the umask."""
    old_umask = os.umask(0o022)
    try:
        install("--prefix", str(tmp_path))
        home = tmp_path / "home"
        install("--user", env={"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")})
    finally:
        os.umask(old_umask)
    system_config = tmp_path / "etc/hoodyd/hoodyd.toml"
    wanted = 0o600 if socket_gid() is None or os.geteuid() != 0 else 0o640
    assert stat.S_IMODE(system_config.stat().st_mode) == wanted
    assert "token" not in system_config.read_text().replace("# ", "")
    token = tmp_path / SYSTEM_TOKEN.lstrip("/")
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    assert len(token.read_text().strip()) >= 32
    user_config = home / ".config/hoodyd/hoodyd.toml"
    assert stat.S_IMODE(user_config.stat().st_mode) == 0o600
    first = token.read_text()
    install("--prefix", str(tmp_path))
    assert token.read_text() == first, "an existing token is kept"


def test_units_load_the_token_as_a_credential_and_raise_the_file_limit(tmp_path: Path) -> None:
    """The system service gets its token as the systemd credential `token` (never through
    Environment=), and both units raise LimitNOFILE well above the default 1024."""
    install("--prefix", str(tmp_path))
    service = (tmp_path / "etc/systemd/system/hoodyd.service").read_text()
    assert unit_values(service, "LoadCredential") == [f"token:{SYSTEM_TOKEN}"]
    assert not any("TOKEN" in value for value in unit_values(service, "Environment"))
    user = user_units(hoodyd_command(), "/x.toml")[0].text
    for text in (service, user):
        assert int(unit_values(text, "LimitNOFILE")[0]) >= 65536


@needs_analyze
def test_units_are_clean_under_systemd_analyze_verify(tmp_path: Path) -> None:
    """Both the system pair and the user unit pass `systemd-analyze verify` without a word."""
    install("--prefix", str(tmp_path))
    system = tmp_path / "etc/systemd/system"
    assert verify(system / "hoodyd.service", system / "hoodyd.socket") == ""
    home = tmp_path / "home"
    install("--user", env={"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")})
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    unit = home / ".config/systemd/user/hoodyd.service"
    assert verify(unit, user=True, runtime=runtime) == ""


@needs_analyze
def test_system_unit_security_exposure(tmp_path: Path) -> None:
    """`systemd-analyze security` rates the system unit 7.7 (EXPOSED): better than the 9.6 of
    an unhardened unit, and as far as running programs as their users allows."""
    install("--prefix", str(tmp_path))
    assert ANALYZE is not None
    done = subprocess.run(
        [ANALYZE, "security", "--offline=true",
         str(tmp_path / "etc/systemd/system/hoodyd.service")],
        capture_output=True, text=True,
    )
    if "--offline" in done.stderr:
        pytest.skip("this systemd-analyze cannot rate units offline")
    score = re.search(r"Overall exposure level for hoodyd.service: ([\d.]+)", done.stdout)
    assert score is not None, done.stdout + done.stderr
    assert float(score.group(1)) <= 7.7


def test_shipped_units_are_the_rendered_ones() -> None:
    """`systemd/` holds the units as install-units renders them for /usr/local/bin/hoodyd."""
    command = ["/usr/local/bin/hoodyd"]
    for unit in system_units(command, "/etc/hoodyd/hoodyd.toml"):
        assert (REPO / "systemd" / unit.name).read_text() == unit.text, unit.name
    for unit in user_units(command, "%h/.config/hoodyd/hoodyd.toml"):
        assert (REPO / "systemd" / "user" / unit.name).read_text() == unit.text, unit.name


def serve_with_journal_stream(state: Path, journal_stream: str | None) -> str:
    """Run `hoodyd serve` until its socket answers, stderr into a file, with JOURNAL_STREAM
    naming that file (its device:inode) or not; what it logged."""
    log = state / "stderr.log"
    state.mkdir()
    with log.open("wb") as handle:
        stat = os.fstat(handle.fileno())
        stream = f"{stat.st_dev}:{stat.st_ino}" if journal_stream == "match" else journal_stream
        env = {k: v for k, v in os.environ.items() if not k.startswith("HOODYD_")}
        env["HOODYD_LOG_FORMAT"] = "json"
        if stream is not None:
            env["JOURNAL_STREAM"] = stream
        process = subprocess.Popen(
            [sys.executable, "-m", "hoodyd", "serve", "--state-dir", str(state),
             "--socket", str(state / "s.sock")],
            stdout=subprocess.DEVNULL, stderr=handle, env=env,
        )
    wait_until(lambda: (state / "s.sock").exists() or process.poll() is not None, timeout=30)
    assert process.poll() is None and (state / "s.sock").exists(), log.read_text()
    process.send_signal(signal.SIGTERM)
    process.wait(20)
    return log.read_text()


def test_log_lines_carry_journald_priorities_under_systemd(short_tmp: Path) -> None:
    """With JOURNAL_STREAM naming stderr, each JSON line starts with its syslog priority
    (`<6>` info); with it naming something else, lines are plain JSON."""
    journal = serve_with_journal_stream(short_tmp / "journal", "match")
    lines = [line for line in journal.splitlines() if line]
    assert lines and all(re.match(r"^<[2-7]>\{", line) for line in lines), lines[:3]
    assert any(line.startswith('<6>{') and '"level":"info"' in line for line in lines)
    plain = serve_with_journal_stream(short_tmp / "plain", "1:1")
    assert all(line.startswith("{") for line in plain.splitlines() if line)
