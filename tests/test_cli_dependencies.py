"""The command line's dependency and probe flags against a real daemon: `add` and `edit` set
`depends_on`, `readiness` and `liveness`; a bad value is one line naming its flag (exit 2); the
daemon's refusals are worded for the command line."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from tests.conftest import PORT_SERVER, DaemonProcess
from tests.test_cli import free_port, hoodyd, ok
from tests.test_cli_verbs import refused


def program(daemon: DaemonProcess, name: str) -> dict[str, Any]:
    """The program named `name`, as `status --json` prints it."""
    programs = json.loads(ok(daemon, "status", "--json"))["programs"]
    found: dict[str, Any] = next(p for p in programs if p["name"] == name)
    return found


def usage_error(daemon: DaemonProcess, *args: str) -> str:
    """The one line a bad flag value prints (exit 2, no traceback)."""
    done = hoodyd(daemon, *args)
    assert done.returncode == 2, (args, done.stdout, done.stderr)
    assert done.stderr.startswith("hoodyd: ") and done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stderr
    return done.stderr


def test_add_sets_dependencies_and_probes_and_start_follows_them(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    """`add` with --depends-on, --readiness, --liveness and the timing flags stores them as
    given (an exec check as its argv, no shell), and `start` of the dependent runs its
    quick job once and waits for its db to be ready."""
    port = free_port()
    runs = tmp_path / "runs"
    ok(daemon, "add", "migrate", "--enable", "--",
       "/bin/sh", "-c", f"echo run >> {shlex.quote(str(runs))}")  # fmt: skip
    ok(daemon, "add", "db", "--enable",
       "--readiness", f"port:{port}", "--probe-interval-ms", "200", "--probe-timeout-ms", "150",
       "--liveness", "exec:sh -c 'exit 0'", "--liveness-failure-threshold", "5",
       "--liveness-initial-delay-ms", "300",
       "--", *shlex.split(PORT_SERVER), "--port", str(port), "--bind-delay", "0.5")  # fmt: skip
    ok(daemon, "add", "api", "--enable", "--depends-on", "db",
       "--depends-on", "migrate:exited_ok", "--", "/bin/sleep", "300")  # fmt: skip
    db = program(daemon, "db")
    assert db["readiness"] == {
        "port": port, "interval_ms": 200, "timeout_ms": 150, "failure_threshold": 3,
        "initial_delay_ms": 0,
    }  # fmt: skip
    assert db["liveness"] == {
        "exec": ["sh", "-c", "exit 0"], "interval_ms": 200, "timeout_ms": 150,
        "failure_threshold": 5, "initial_delay_ms": 300,
    }  # fmt: skip
    assert program(daemon, "api")["depends_on"] == [
        {"program": "db", "condition": "ready"},
        {"program": "migrate", "condition": "exited_ok"},
    ]
    assert "api: running (pid" in ok(daemon, "start", "api", "--timeout", "30")
    listed = json.loads(ok(daemon, "status", "--json"))["programs"]
    states = {p["name"]: p["status"] for p in listed}
    assert states["db"]["status"] == "RUNNING" and states["db"]["health"] == "ready"
    assert (states["migrate"]["status"], states["migrate"]["exitstatus"]) == ("EXITED", 0)
    assert runs.read_text().splitlines() == ["run"]
    tree = ok(daemon, "status")
    assert "└─ migrate" in tree and "(needs exited_ok)" in tree


def test_edit_changes_probes_and_dependencies_flag_by_flag(daemon: DaemonProcess) -> None:
    """On `edit`, a timing flag alone changes the existing probe, a new check keeps its
    timings, and --no-readiness, --no-liveness, --no-depends-on drop what they name;
    --depends-on replaces the list."""
    ok(daemon, "add", "db", "--", "/bin/sleep", "300")
    ok(daemon, "add", "cache", "--", "/bin/sleep", "300")
    ok(daemon, "add", "web", "--readiness", "port:8080", "--liveness", "http://127.0.0.1:8080/",
       "--depends-on", "db", "--", "/bin/sleep", "300")  # fmt: skip
    ok(daemon, "edit", "web", "--probe-interval-ms", "2000")
    web = program(daemon, "web")
    assert (web["readiness"]["port"], web["readiness"]["interval_ms"]) == (8080, 2000)
    assert (web["liveness"]["http"], web["liveness"]["interval_ms"]) == (
        "http://127.0.0.1:8080/",
        2000,
    )
    ok(daemon, "edit", "web", "--readiness", "exec:test -e /", "--liveness-failure-threshold", "7")
    web = program(daemon, "web")
    assert web["readiness"] == {
        "exec": ["test", "-e", "/"], "interval_ms": 2000, "timeout_ms": 1000,
        "failure_threshold": 3, "initial_delay_ms": 0,
    }  # fmt: skip
    assert web["liveness"]["failure_threshold"] == 7
    ok(daemon, "edit", "web", "--depends-on", "cache:started", "--depends-on", "db")
    assert program(daemon, "web")["depends_on"] == [
        {"program": "cache", "condition": "started"},
        {"program": "db", "condition": "ready"},
    ]
    ok(daemon, "edit", "web", "--no-liveness", "--no-depends-on")
    web = program(daemon, "web")
    assert web.get("liveness") is None and not web.get("depends_on")
    assert web["readiness"]["exec"] == ["test", "-e", "/"]
    ok(daemon, "edit", "web", "--no-readiness")
    assert program(daemon, "web").get("readiness") is None


def test_bad_flag_values_are_one_line_naming_the_flag(daemon: DaemonProcess) -> None:
    """A value the command line cannot read is one line naming its flag, exit 2, and adds
    nothing."""
    ok(daemon, "add", "db", "--", "/bin/sleep", "300")
    cases = {
        ("--depends-on", "db:redy"): "--depends-on db:redy",
        ("--depends-on", ":ready"): "--depends-on",
        ("--readiness", "port:99999"): "--readiness: port:N",
        ("--readiness", "tcp:80"): "--readiness needs port:N",
        ("--readiness", "exec:"): "--readiness: exec needs a command",
        ("--liveness", "exec:'unclosed"): "--liveness: exec:",
        ("--liveness", "http:ftp://127.0.0.1:1/"): "--liveness: http needs a URL",
        ("--readiness", "port:1", "--probe-interval-ms", "5"): "--probe-interval-ms",
        ("--readiness", "port:1", "--probe-timeout-ms", "soon"): "--probe-timeout-ms",
        ("--readiness", "port:1", "--liveness-failure-threshold", "3"): (
            "--liveness-failure-threshold needs a probe"
        ),
        ("--probe-interval-ms", "500"): "--probe-interval-ms needs a probe",
    }
    for flags, expected in cases.items():
        line = usage_error(daemon, "add", "web", *flags, "--", "/bin/sleep", "300")
        assert expected in line, (flags, line)
    line = usage_error(daemon, "edit", "db", "--readiness", "port:1", "--no-readiness")
    assert "--readiness and --no-readiness exclude each other" in line
    line = usage_error(daemon, "edit", "db", "--liveness-initial-delay-ms", "100")
    assert "--liveness-initial-delay-ms needs a probe" in line
    assert [p["name"] for p in json.loads(ok(daemon, "status", "--json"))["programs"]] == ["db"]


def test_daemon_refusals_speak_of_the_flags(daemon: DaemonProcess) -> None:
    """Unknown dependencies, cycles, probes the daemon refuses, removal of a dependency and
    a job that fails its dependent's start are explained in the command line's terms."""
    ok(daemon, "add", "a", "--enable", "--", "/bin/sleep", "300")
    ok(daemon, "add", "b", "--enable", "--depends-on", "a", "--", "/bin/sleep", "300")
    unknown = refused(hoodyd(daemon, "add", "c", "--depends-on", "nosuch", "--", "/bin/true"))
    assert "--depends-on: no program named 'nosuch'" in unknown
    cycle = refused(hoodyd(daemon, "edit", "a", "--depends-on", "b"))
    assert "--depends-on: would close a cycle: a -> b -> a" in cycle
    off_box = refused(
        hoodyd(daemon, "add", "c", "--readiness", "http://192.0.2.1:80/", "--", "/bin/true")
    )
    assert off_box.startswith("hoodyd: --readiness: http probes reach this box only")
    ranged = refused(hoodyd(daemon, "add", "c", "--readiness", "port:$PORT", "--", "/bin/true"))
    assert ranged.startswith("hoodyd: --readiness:") and "--port-range" in ranged
    removing = refused(hoodyd(daemon, "rm", "a"))
    assert "a is a dependency of b" in removing and "`hoodyd rm a --force`" in removing
    renaming = refused(hoodyd(daemon, "edit", "a", "--name", "z"))
    assert "a cannot be renamed while b depend on it" in renaming
    ok(daemon, "add", "seed", "--enable", "--", "/bin/sh", "-c", "exit 3")
    ok(daemon, "edit", "b", "--depends-on", "seed:exited_ok")
    failed = refused(hoodyd(daemon, "start", "b"))
    assert "dependency seed of b exited with status 3" in failed
    assert "`hoodyd logs seed --stderr`" in failed
    assert "removed a" in ok(daemon, "rm", "a", "--force")


def test_completion_knows_the_new_flags(daemon: DaemonProcess) -> None:
    """The completion scripts offer the dependency and probe flags of add and edit."""
    for shell in ("bash", "fish"):
        script = ok(daemon, "completion", shell)
        for flag in ("depends-on", "readiness", "liveness", "probe-interval-ms", "no-liveness"):
            assert flag in script, (shell, flag)
    bash = ok(daemon, "completion", "bash")
    add_line = next(line for line in bash.splitlines() if line.strip().startswith('"add")'))
    assert "--liveness-failure-threshold" in add_line and "--no-liveness" not in add_line
