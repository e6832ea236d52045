"""The one place the run area hands text to a shell: the planned command typed into a terminal.
Whatever the argv and the environment values hold (quotes, `$(…)`, backticks, `;`, `#`, `!`,
globs, unicode), the program receives exactly them — proven against a real interactive bash
in a PTY with hoodyd's shell integration, not against a model of its quoting."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hoodyd.apps.run.planner import shell_command
from hoodyd.schemas.terminal import ExecuteRequest
from hoodyd.terminals.service import TerminalService
from tests.conftest import running_terminal_service

# one line of text: the terminal refuses control characters in a command, so they never
# reach this point (tests/test_terminal_service.py covers that refusal)
TEXT = st.text(
    st.characters(blacklist_categories=("Cc", "Cs", "Co", "Cn", "Zl", "Zp")), max_size=40
)
NASTY = st.sampled_from(
    ["$(id -u)", "`id -u`", "a; echo injected", "#not a comment", "!!", "'", '"', "\\", "*",
     "~", "{a,b}", "%(ENV_HOME)s", "$HOME", "a  b", "-rf", ""]
)  # fmt: skip
ARG = st.one_of(TEXT, NASTY)
MARK = "ARGV="


@pytest.fixture
async def shell(short_tmp: Path) -> AsyncIterator[tuple[TerminalService, Path]]:
    """A real terminal service (bash in a PTY), and a program that prints the argv and the
    `HD_VALUE` and `HD_OTHER` variables it was started with as JSON."""
    printer = short_tmp / "print-argv"
    printer.write_text(
        f"#!{sys.executable}\nimport json, os, sys\n"
        "env = os.environ.get\n"
        f"print({MARK!r} + json.dumps([sys.argv[1:], env('HD_VALUE'), env('HD_OTHER')]))\n"
    )
    printer.chmod(0o755)
    async with running_terminal_service(short_tmp / "state") as service:
        yield service, printer


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(args=st.lists(ARG, max_size=6), value=ARG, request_value=ARG)
async def test_the_planned_command_reaches_the_program_exactly(
    shell: tuple[TerminalService, Path], args: list[str], value: str, request_value: str
) -> None:
    """`shell_command(argv, env)` typed into the session runs argv[0] with exactly the other
    items and the variable's exact value; a per-command env value is plain data too."""
    service, printer = shell
    line = shell_command([str(printer), *args], {"HD_VALUE": value})
    result = await service.execute(
        ExecuteRequest(terminal_id=1, command=line, timeout=10, env={"HD_OTHER": request_value})
    )
    assert result.status == "completed" and result.exit_code == 0, result
    printed = next(row for row in result.stdout.splitlines() if row.startswith(MARK))
    assert json.loads(printed[len(MARK) :]) == [args, value, request_value]
