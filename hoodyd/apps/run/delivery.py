"""The delivery decision, one pure function for every way a pick is delivered: `/run` and
the go paths, recipe runs, batch items, `/resolve`, and the preflight that says what a run
would do.

From a pick, its plan, how the request may deliver (`command_only`: batch items and
`/resolve` never schedule) and the terminal's state, `decide` names the outcome and the
warnings that explain it. It reads no clock, terminal or file: the runner acts on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from hoodyd.apps.run.pick import Choice
from hoodyd.apps.run.planner import Plan, TerminalState
from hoodyd.schemas.run_exec import RunWarning

DeliveryOutcome = Literal[
    # a destructive candidate reached without pick=id, asked to run or print a curl line
    "refuse-destructive",
    "printed-curl",
    # the command is answered and nothing runs
    "dry-run",
    # a run whose requirements are not met can only fail: 409, nothing scheduled
    "refuse-requirements",
    "schedule",
]


@dataclass(frozen=True)
class Decision:
    outcome: DeliveryOutcome
    warnings: list[RunWarning] = field(default_factory=list)
    # a scheduled run answers with a redirect (to `redirect_to` or the terminal's view)
    redirect: bool = False

    def would_schedule(self, terminal_state: TerminalState) -> bool:
        """A schedule the terminal would accept now (a new terminal is created on use)."""
        return self.outcome == "schedule" and terminal_state in ("ready", "new")


def decide(
    choice: Choice, plan: Plan, *, command_only: bool, terminal_state: TerminalState
) -> Decision:
    """How a pick (`choice.selected`, planned as `plan`) is delivered, and every warning that
    explains it: a `MISSING_REQUIREMENT` per missing item, then the outcome's own. Preflight
    answers these very warnings, so it says what the run says."""
    missing = [
        RunWarning(code="MISSING_REQUIREMENT", message=f"{item.kind} {item.name}: {item.message}")
        for item in plan.missing
    ]
    outcome, warnings = _outcome(
        choice, plan, command_only=command_only, terminal_state=terminal_state
    )
    selector = choice.selector
    asked = bool(selector.redirect) or selector.redirect_to is not None
    redirect = outcome == "schedule" and asked and choice.policy.allow_redirect
    return Decision(outcome, missing + warnings, redirect)


def _outcome(
    choice: Choice, plan: Plan, *, command_only: bool, terminal_state: TerminalState
) -> tuple[DeliveryOutcome, list[RunWarning]]:
    selector = choice.selector
    dry = command_only or bool(selector.dry_run)
    if choice.needs_explicit_pick is not None and (selector.print_curl is not None or not dry):
        return "refuse-destructive", []
    if selector.print_curl is not None:
        return "printed-curl", []
    if dry:
        return "dry-run", []
    if not choice.policy.allow_delegated_execution:
        return "dry-run", [
            RunWarning(
                code="DELEGATION_DISABLED",
                message="the effective policy does not allow delegated execution: "
                "the command is returned, not run",
            )
        ]
    if terminal_state == "unavailable":
        return "dry-run", [
            RunWarning(code="TERMINALS_UNAVAILABLE", message="no terminal service runs here")
        ]
    if plan.unmet:
        return "refuse-requirements", [
            RunWarning(
                code="REQUIREMENTS_MISSING",
                message="the run is refused (409) until these are resolved: "
                + "; ".join(item.resolution or item.message for item in plan.unmet),
            )
        ]
    if (selector.redirect or selector.redirect_to is not None) and not choice.policy.allow_redirect:
        return "schedule", [
            RunWarning(
                code="REDIRECT_NOT_ALLOWED",
                message="the effective policy does not allow redirects",
            )
        ]
    return "schedule", []
