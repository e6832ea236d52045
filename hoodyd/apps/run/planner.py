"""The run planner: from a chosen candidate to the exact command for a terminal.

The command is the candidate's argv joined with `shlex.join`, preceded by `NAME=value`
assignments (value shell-quoted) for the environment it needs: `DISPLAY` for a GUI app,
defaulting to the terminal's own number. No user text reaches the shell unquoted. The plan
also lists what is missing before the command can work (the source's tool or package, an X
display, the terminal) and the side effects running it has (installs, downloads, a destructive
program).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from hoodyd.apps.run import destructive
from hoodyd.errors import InvalidRequest, Reason
from hoodyd.schemas.run import Candidate, ExecutionPlan, Requirement, SideEffectHint
from hoodyd.terminals.validation import parse_display

# the terminal a run uses when the selector names none (created on first use)
DEFAULT_TERMINAL = 1

TerminalState = Literal["ready", "new", "absent", "exited", "unavailable"]

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
X11_SOCKET_DIR = Path("/tmp/.X11-unix")
# hoodyd's display stack serves display N on TCP 4000 + N (as the terminals' display wait)
DISPLAY_TCP_BASE = 4000


@dataclass
class Plan:
    argv: list[str]
    env: dict[str, str]
    shell_command: str
    display: str
    terminal_id: int
    missing: list[Requirement] = field(default_factory=list)
    hints: list[SideEffectHint] = field(default_factory=list)
    # what the candidate's source says must be resolved first (a package to install, the
    # source's CLI, which of a package's programs to run): the command can only fail
    # without it, so a run refuses to schedule it
    unmet: list[Requirement] = field(default_factory=list)

    def execution_plan(self) -> ExecutionPlan:
        return ExecutionPlan(
            mode="argv",
            argv=self.argv,
            shell_command=self.shell_command,
            env=self.env or None,
            side_effect_hints=self.hints or None,
        )


def display_for(display: str | None, terminal_id: int) -> str:
    """The X display as `:N`; unset means the terminal's own number (CONTRACT.md §3.3)."""
    normalized = parse_display(display if display not in (None, "") else str(terminal_id))
    assert normalized is not None
    return normalized


def shell_command(argv: list[str], env: dict[str, str]) -> str:
    for name in env:
        if not _ENV_NAME.match(name):
            raise InvalidRequest(
                f"invalid environment variable name {name!r}", reason=Reason.INVALID_ENV
            )
    assignments = [f"{name}={shlex.quote(value)}" for name, value in sorted(env.items())]
    return " ".join([*assignments, shlex.join(argv)])


async def display_available(display: str) -> bool:
    """A local X server listens on /tmp/.X11-unix/XN, hoodyd's display stack on TCP 4000+N."""
    number = int(display.lstrip(":").split(".")[0])
    if (X11_SOCKET_DIR / f"X{number}").exists():
        return True
    try:
        _reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", DISPLAY_TCP_BASE + number), 0.5
        )
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


def plan(
    candidate: Candidate,
    *,
    terminal_id: int,
    display: str,
    terminal_state: TerminalState,
    has_display: bool,
) -> Plan:
    execution = candidate.execution_plan
    argv = (
        list(execution.argv)
        if execution and execution.argv
        else shlex.split(candidate.run_plan.command)
    )
    env = dict(candidate.run_plan.env or {})
    if candidate.kind == "gui":
        env["DISPLAY"] = display
    missing = list(candidate.requirements)
    if candidate.kind == "gui" and not has_display:
        missing.append(
            Requirement(
                kind="display",
                name=display,
                message=f"no X display {display} answers on this machine (a GUI app needs one)",
                resolution=f"create the terminal with display {display.lstrip(':')} or "
                "pass display=<a running display>",
            )
        )
    if terminal_state == "absent":
        missing.append(
            Requirement(
                kind="terminal",
                name=str(terminal_id),
                message=f"terminal {terminal_id} does not exist",
                resolution=f"POST /api/v1/terminal/create with terminal_id {terminal_id}",
            )
        )
    elif terminal_state == "exited":
        missing.append(
            Requirement(
                kind="terminal",
                name=str(terminal_id),
                message=f"the shell of terminal {terminal_id} has exited",
                resolution=f"POST /api/v1/terminal/execute?terminal_id={terminal_id}&reset=true "
                "or recreate the terminal",
            )
        )
    return Plan(
        argv=argv,
        env=env,
        shell_command=shell_command(argv, env),
        display=display,
        terminal_id=terminal_id,
        missing=missing,
        hints=side_effect_hints(candidate, argv),
        unmet=list(candidate.requirements),
    )


def side_effect_hints(candidate: Candidate, argv: list[str]) -> list[SideEffectHint]:
    # the search marked the candidate from its record; the plan keeps the mark
    danger = destructive.marked(candidate)
    hints: list[SideEffectHint] = [danger] if danger else []
    # an installed candidate installs nothing: its requirements say which program to run
    for requirement in [] if candidate.installed else candidate.requirements:
        if requirement.resolution:
            hints.append(
                SideEffectHint(
                    code="install",
                    description=f"{requirement.name} must be installed first: "
                    f"{requirement.resolution}",
                )
            )
    if argv[:1] == ["nix"] and len(argv) > 1 and argv[1] in ("run", "shell"):
        hints.append(
            SideEffectHint(
                code="download",
                description="nix fetches or builds the package into the nix store on first run",
            )
        )
    if candidate.kind == "gui":
        hints.append(
            SideEffectHint(code="opens-window", description="opens a window on the X display")
        )
    return hints
