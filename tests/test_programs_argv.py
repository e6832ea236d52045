"""A program's command, environment and paths reach the process exactly: supervisord's config
syntax (inline comments, `%(…)s` expansion) and no shell ever reinterpret them."""

from __future__ import annotations

import os
import pwd
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from supervisor.options import ServerOptions

from hoodyd.errors import InvalidRequest
from hoodyd.polling import poll_until
from hoodyd.programs import conf
from hoodyd.programs.launch import ENVIRONMENT_VARIABLE, decode_environment, launcher_argv
from hoodyd.programs.rules import validate_program
from hoodyd.schemas.daemon import PortRange, Program
from tests.conftest import add_program as add

API = "/api/v1/daemon"
USER = pwd.getpwuid(os.geteuid()).pw_name
# what supervisord's parser and a shell would read as syntax, and what a user may well type
TRICKY = ";#%'\"$`\\()=, \t:/~*?![]{}&|<>"
PIECES = ["%(ENV_HOME)s", "%(here)s", "%(program_name)s", " ;", " #", "\t#", "%%", "\\;"]
TEXT = st.lists(
    st.one_of(
        st.sampled_from(TRICKY),
        st.sampled_from(PIECES),
        st.characters(codec="utf-8", exclude_characters="\n\r\0"),
    ),
    max_size=12,
).map("".join)
# sleeps with its arguments in its cmdline, printing them first
PRINT_AND_SLEEP = "import sys, time; print(sys.argv[1:], flush=True); time.sleep(60)"


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("logs")


def parsed(
    program: Program, port: int | None, log_dir: Path, holders_dir: Path | None = None
) -> Any:
    """The ProcessConfig supervisord reads back from the program's rendered section: the file
    written into an include dir and read by supervisord's own `read_config`, as at a reload
    (its environment's `%(ENV_…)s` expansions included)."""
    text = conf.render(
        program, port=port, autostart=False, log_dir=log_dir, holders_dir=holders_dir
    )
    for path in conf.log_paths(text):
        path.parent.mkdir(parents=True, exist_ok=True)  # supervisord wants them to exist
    root = log_dir / "supervisor"
    (root / "conf.d").mkdir(parents=True, exist_ok=True)
    (root / "conf.d" / "program.conf").write_text(text)
    main = root / "supervisord.conf"
    main.write_text("[supervisord]\n[include]\nfiles = conf.d/*.conf\n")
    options = ServerOptions()
    options.here = str(root)
    (group,) = options.read_config(str(main)).process_group_configs
    (config,) = group.process_configs
    return config


def execv_argv(config: Any) -> list[str]:
    """The argv supervisord passes to execve, computed by supervisord itself."""
    _filename, argv = config.make_process().get_execv_args()
    return list(argv)


def program_environment(config: Any) -> dict[str, str]:
    """The environment the program ends up with: supervisord's, then the launcher's."""
    environment = dict(config.environment)
    carried = environment.pop(ENVIRONMENT_VARIABLE, None)
    if carried is not None:
        environment.update(decode_environment(carried.encode()))
    return environment


@settings(max_examples=300, deadline=None)
@given(
    args=st.lists(TEXT, max_size=5),
    raw=TEXT,
    delay=st.sampled_from([0, 0, 1]),
    port_param=st.sampled_from([None, "--port", "--port=", "-p"]),
    environment=st.dictionaries(st.sampled_from(["A", "B", "C_1"]), TEXT, max_size=3),
)
def test_rendered_commands_and_environments_parse_back_exactly(
    log_dir: Path,
    args: list[str],
    raw: str,
    delay: int,
    port_param: str | None,
    environment: dict[str, str],
) -> None:
    """Whatever text the command's arguments and the environment values hold, supervisord's
    own parser (and the launcher, where one is needed) gives the program exactly the argv
    `shlex.split` makes of its command, plus the port argument, and exactly its environment."""
    command = shlex.join(["/bin/echo", *args])
    try:
        extra = shlex.split(raw)
    except ValueError:
        extra = []  # a command that does not split is refused: see the API test below
    else:
        command += " " + raw
    program = Program(
        id=7,
        name="prop",
        command=command,
        user=USER,
        delay_seconds=delay,
        environment=environment,
        port_range=None if port_param is None else PortRange(start=8000, end=8001),
        port_param=port_param,
    )
    validate_program(program, [], log_dir=log_dir, max_port_range=100)
    port = None if port_param is None else 8001
    wanted = ["/bin/echo", *args, *extra]
    if port_param is not None:
        wanted += conf.port_arguments(port_param, 8001)
    config = parsed(program, port, log_dir)
    argv = execv_argv(config)
    if delay or not all(conf.environment_value_fits(v) for v in environment.values()):
        assert argv == launcher_argv(delay, wanted)
    else:
        assert argv == wanted
    expected_environment = dict(environment)
    if port is not None:
        expected_environment["PORT"] = str(port)
    assert program_environment(config) == expected_environment


@settings(max_examples=300, deadline=None)
@given(directory=TEXT, logfile=TEXT)
def test_rendered_paths_parse_back_exactly_or_are_refused(
    log_dir: Path, directory: str, logfile: str
) -> None:
    """A directory or log path that validation accepts is read back by supervisord exactly;
    one it cannot carry (a control character, a space before `;` or `#`, `%(here)s`, spaces
    at an end) is refused as INVALID_PATH before anything is rendered."""
    program = Program(
        id=8,
        name="paths",
        command="/bin/true",
        user=USER,
        directory="/" + directory,
        stdout_logfile=f"{log_dir}/{logfile}.log",
        port_range=PortRange(start=8000, end=8001),
        port_param="--port",
    )
    refused = conf.plain_value_problem("/" + directory) or conf.plain_value_problem(
        str(Path(f"{log_dir}/{logfile}.log"))
    )
    try:
        validate_program(program, [], log_dir=log_dir, max_port_range=100)
    except InvalidRequest as exc:
        assert exc.reason in ("INVALID_PATH", "INVALID_LOG_PATH"), exc.message
        assert refused or exc.reason == "INVALID_LOG_PATH"  # `..` leaving the log dir
        return
    assert not refused
    config = parsed(program, 8001, log_dir)
    assert config.directory == "/" + directory
    stdout = Path(f"{log_dir}/{logfile}.log")
    assert config.stdout_logfile == str(stdout.with_name(f"{stdout.stem}.8001{stdout.suffix}"))
    assert config.stderr_logfile == str(log_dir / "program-8" / "stderr.8001.log")


def test_paths_with_supervisord_syntax_but_no_ambiguity_are_accepted(log_dir: Path) -> None:
    """`%`, `;`, `#` and `(` not after a space are ordinary path characters."""
    directory = "/srv/100%;x#y(z)%(ENV_HOME)"
    program = Program(id=9, name="odd", command="/bin/true", user=USER, directory=directory)
    validate_program(program, [], log_dir=log_dir, max_port_range=100)
    assert parsed(program, None, log_dir).directory == directory


def test_comment_and_expansion_syntax_in_commands_parse_back_exactly(log_dir: Path) -> None:
    """`#hash` and ` ; ` stay arguments, `%` and `%(ENV_HOME)s` stay text, `$(id)` is no
    substitution, with and without a delay."""
    for delay in (0, 1):
        for command, wanted in [
            ("/bin/echo visible #hash", ["/bin/echo", "visible", "#hash"]),
            ("/bin/sh -c 'echo a ; echo b'", ["/bin/sh", "-c", "echo a ; echo b"]),
            (
                "/bin/echo 100% %(ENV_HOME)s $(id) `id`",
                ["/bin/echo", "100%", "%(ENV_HOME)s", "$(id)", "`id`"],
            ),
        ]:
            program = Program(id=3, name="p", command=command, user=USER, delay_seconds=delay)
            argv = execv_argv(parsed(program, None, log_dir))
            assert argv == (launcher_argv(1, wanted) if delay else wanted)


# ---- real processes under the real supervisord ------------------------------------------


async def start_and_read(client: Any, **fields: Any) -> tuple[dict[str, Any], psutil.Process]:
    """Add, start (waiting for RUNNING) and return the program and its process."""
    program = await add(client, **fields)
    response = await client.post(
        f"{API}/programs/{program['id']}/start", json={"wait": True, "timeout": 20}
    )
    body = await response.json()
    assert response.status == 200, body
    return program, psutil.Process(body["status"]["pid"])


async def stdout_of(client: Any, program: dict[str, Any]) -> str:
    async def logs() -> str | None:
        body = await (await client.get(f"{API}/programs/{program['id']}/logs")).json()
        return str(body["logs"]) if body["logs"] else None

    return await poll_until(logs, timeout=10, interval=0.05) or ""


@pytest.mark.parametrize("delay", [0, 1])
async def test_started_programs_get_exactly_their_argv(client: Any, delay: int) -> None:
    """Started through the API by supervisord, `#hash`, `100%`, `%(ENV_HOME)s`, `$(id)` and
    backticks arrive as literal arguments in /proc/PID/cmdline and in what the program
    prints; `/bin/sh -c 'echo a ; echo b …'` runs both echoes."""
    command = (
        f"{shlex.quote(sys.executable)} -c {shlex.quote(PRINT_AND_SLEEP)} "
        "visible #hash 100% %(ENV_HOME)s $(id) `id` 'tab\there'"
    )
    program, process = await start_and_read(client, command=command, delay_seconds=delay)
    literal = ["visible", "#hash", "100%", "%(ENV_HOME)s", "$(id)", "`id`", "tab\there"]
    assert process.cmdline() == [sys.executable, "-c", PRINT_AND_SLEEP, *literal]
    assert await stdout_of(client, program) == f"{literal!r}\n"

    shell, process = await start_and_read(
        client,
        command="""/bin/sh -c 'echo a ; echo "b #c" ; exec sleep 60'""",
        delay_seconds=delay,
    )
    assert process.cmdline() == ["sleep", "60"]
    assert await stdout_of(client, shell) == "a\nb #c\n"


async def test_environment_values_arrive_exactly_with_and_without_the_launcher(
    client: Any,
) -> None:
    """Environment values supervisord's `environment=` cannot carry (quotes at the ends, both
    kinds of quote, ` ;`, `%(here)s`) reach the program exactly through the launcher, which
    leaves no variable of its own behind, nor ignored signals."""
    environment = {
        "PLAIN": "a b,c=d 100%",
        "SEMI": "x ;y #z",
        "QUOTES": "'both\" kinds'",
        "EXPAND": "%(ENV_HOME)s %(here)s",
        "EMPTY": "",
    }
    command = f"{shlex.quote(sys.executable)} -c 'import time; time.sleep(60)'"
    _, launched = await start_and_read(client, command=command, environment=environment)
    _, direct = await start_and_read(client, command=command, environment={"PLAIN": "x"})
    seen = launched.environ()
    assert {key: seen.get(key) for key in environment} == environment
    assert ENVIRONMENT_VARIABLE not in seen
    assert set(seen) - set(environment) == set(direct.environ()) - {"PLAIN"}
    assert sig_ignored(launched.pid) == sig_ignored(direct.pid)


def sig_ignored(pid: int) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            return line.split()[1]
    raise AssertionError("no SigIgn line")


async def test_a_command_that_does_not_split_is_refused_before_anything_is_written(
    client: Any, short_tmp: Path
) -> None:
    """An unterminated quote is a 400 INVALID_COMMAND; no program and no conf file appear."""
    conf_dir = short_tmp / "supervisor" / "conf.d"
    before = sorted(p.name for p in conf_dir.iterdir())
    response = await client.post(
        f"{API}/programs/add",
        json={"name": "unsplit", "command": "/bin/echo 'unterminated", "user": USER},
    )
    body = await response.json()
    assert response.status == 400
    assert body["reason"] == "INVALID_COMMAND"
    assert sorted(p.name for p in conf_dir.iterdir()) == before
    listed = await (await client.get(f"{API}/programs")).json()
    assert all(p["name"] != "unsplit" for p in listed["programs"])


def test_the_launcher_execs_without_a_shell_and_reports_a_missing_command() -> None:
    """Run for real: the launcher execs the argv as given (a `$(…)` stays text) and answers a
    missing command with exit 127 and a message on stderr."""
    done = subprocess.run(
        [*launcher_argv(0, ["/bin/echo", "$(id)", "`id`", "a;b"])],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout == "$(id) `id` a;b\n"
    missing = subprocess.run(
        launcher_argv(0, ["no-such-command-here"]), capture_output=True, text=True
    )
    assert missing.returncode == 127
    assert missing.stderr == "hoodyd launch: no-such-command-here: command not found\n"
    not_executable = subprocess.run(launcher_argv(0, ["/etc/hostname"]), capture_output=True)
    assert not_executable.returncode == 126
