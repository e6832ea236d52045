"""RunService: pick a candidate, plan its command, and deliver it — scheduled into a
terminal (optionally deferred until a PID exits), returned as a command (dry run), or
printed as a curl line — one selector at a time or a batch of them.

The pick (`hoodyd.apps.run.pick`) resolves the selector once and reads the candidate set that
resolution's search made (or the one `set_id` names), so a pick by index lands on the item
the client saw; only the candidates answered are planned. Everything that can refuse a
request (pick, policy, a destructive candidate not picked by id, display, defer fields,
redirect target) is checked before the terminal is asked, so a refused request schedules
nothing. The terminals service is called in-process.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import msgspec
import structlog

from hoodyd.apps.run import curl, delivery, planner
from hoodyd.apps.run.candidates import Links
from hoodyd.apps.run.curl import CurlTarget
from hoodyd.apps.run.pick import Choice, choose, destructive_refusal
from hoodyd.apps.run.planner import Plan, TerminalState
from hoodyd.apps.service import AppService
from hoodyd.config import default_socket
from hoodyd.errors import HoodydError, InvalidRequest, NotFound, Reason, RunFailed
from hoodyd.schemas.run import (
    ApiError,
    BatchItemRequest,
    BatchItemResult,
    BatchResponse,
    Candidate,
    RecipeExecutionRequest,
    Selector,
)
from hoodyd.schemas.run_exec import (
    HandoffState,
    PreflightResponse,
    RecommendedMode,
    RunHandoff,
    RunResponse,
    TerminalReply,
    TerminalRequestPreview,
)
from hoodyd.schemas.terminal import (
    EPHEMERAL_FIRST,
    DeferSpec,
    ExecuteRequest,
    defer_spec,
)
from hoodyd.schemas.validation import decode_json
from hoodyd.terminals.service import TerminalService

log = structlog.get_logger()

DEFAULT_TERMINAL = planner.DEFAULT_TERMINAL
# the origin a terminal request from the run area carries when the caller gave none
RUN_ORIGIN = "hoodyd-run"
MAX_BATCH_ITEMS = 100


@dataclass
class Outcome:
    response: RunResponse
    # a 303 target, when the request asked for a redirect and the policy allows it
    redirect: str | None = None
    plan: Plan | None = None


class RunService:
    def __init__(
        self,
        apps: AppService,
        terminals: TerminalService | None,
        default_target: CurlTarget | None = None,
        *,
        links: Links,
    ) -> None:
        self.apps = apps
        self.terminals = terminals
        self.links = links
        # batch items have no request of their own: their curl lines use the socket
        self.default_target = default_target or CurlTarget(socket=default_socket())

    # --- pick ------------------------------------------------------------------------------

    def choose(self, selector: Selector) -> Choice:
        return choose(self.apps, selector, self.links.candidate_run)

    # --- plan ------------------------------------------------------------------------------

    def _terminal_state(self, terminal_id: int) -> TerminalState:
        if self.terminals is None:
            return "unavailable"
        try:
            session = self.terminals.session(terminal_id)
        except NotFound:
            # a terminal is created on first use; ids from EPHEMERAL_FIRST up are only ever
            # given out by hoodyd to ephemeral sessions
            return "new" if terminal_id < EPHEMERAL_FIRST else "absent"
        return "ready" if session.running else "exited"

    async def plan(self, choice: Choice) -> Plan:
        assert choice.selected is not None
        selector = choice.selector
        terminal_id = selector.terminal_id or DEFAULT_TERMINAL
        display = planner.display_for(selector.display, terminal_id)
        has_display = True
        if choice.selected.kind == "gui":
            has_display = await planner.display_available(display)
        return planner.plan(
            choice.selected,
            terminal_id=terminal_id,
            display=display,
            terminal_state=self._terminal_state(terminal_id),
            has_display=has_display,
        )

    # --- run -------------------------------------------------------------------------------

    async def run(
        self,
        selector: Selector,
        target: CurlTarget,
        *,
        command_only: bool = False,
        resolve: bool = False,
    ) -> Outcome:
        """Resolve, pick, plan and deliver. `command_only` (batch items) never schedules;
        `resolve` (`/resolve`) never schedules either and answers in the names of the
        public client's beta.10 and later: a preview handoff only, curl lines for
        `/resolve`."""
        _bind_origin(selector)
        defer = defer_spec(selector)
        redirect_to = _redirect_target(selector.redirect_to)
        await self.apps.settle()
        choice = self.choose(selector)
        selector = choice.selector
        base = RunResponse(
            status="resolved",
            set_id=choice.set_id,
            effective_policy=choice.policy,
            warnings=choice.warnings,
        )
        if choice.selected is None:
            base.candidates = choice.candidates
            base.warnings = choice.warnings or None
            return Outcome(base)
        plan = await self.plan(choice)
        decision = delivery.decide(
            choice,
            plan,
            command_only=command_only or resolve,
            terminal_state=self._terminal_state(plan.terminal_id),
        )
        # a printed curl line is made to be run: it is refused like a run (dry runs answer)
        if decision.outcome == "refuse-destructive":
            raise destructive_refusal(choice)
        warnings = choice.warnings
        warnings += decision.warnings
        response = msgspec.structs.replace(
            base,
            selected=_with_plan(choice.selected, plan),
            shell_command=plan.shell_command,
            missing_requirements=plan.missing or None,
            warnings=warnings,
            handoff=self._handoff("preview", plan, resolve=resolve),
        )
        if decision.outcome == "printed-curl":
            if selector.print_curl == "hoody-run":
                path = curl.RESOLVE_PATH if resolve else curl.RUN_PATH
                line = curl.hoody_run(target, selector, choice.selected.candidate_id, path=path)
            else:
                line = curl.hoody_terminal(target, selector, plan.terminal_id, plan.shell_command)
            response.status, response.curl = "printed-curl", line
            return _finish(response, plan)
        if decision.outcome == "dry-run":
            response.status = "dry-run"
            return _finish(response, plan)
        if decision.outcome == "refuse-requirements":
            raise requirements_refusal(response, plan, self._handoff("failed", plan))
        response = await self._schedule(response, plan, selector, defer)
        redirect = None
        if decision.redirect:
            # (a redirect the policy refuses is a REDIRECT_NOT_ALLOWED warning of the decision)
            redirect = redirect_to or self.links.terminal_view(plan.terminal_id)
        outcome = _finish(response, plan)
        outcome.redirect = redirect
        return outcome

    def _handoff(
        self,
        state: HandoffState,
        plan: Plan,
        *,
        resolve: bool = False,
        command_id: str | None = None,
    ) -> RunHandoff:
        """The handoff in both generations' names: beta.9's (`predicted_terminal_url` on a
        preview, `terminal_url` once scheduled, no URL when it failed) beside the
        `preview_terminal_url` beta.10 and later read; `/resolve` answers the new names only."""
        view = self.links.terminal_view(plan.terminal_id)
        handoff = RunHandoff(
            state=state,
            terminal_id=plan.terminal_id,
            display=plan.display,
            preview_terminal_url=view,
            command_id=command_id,
        )
        if not resolve and state == "preview":
            handoff.predicted_terminal_url = view
        elif state == "scheduled":
            handoff.terminal_url = view
        return handoff

    async def _schedule(
        self, response: RunResponse, plan: Plan, selector: Selector, defer: DeferSpec | None
    ) -> RunResponse:
        assert self.terminals is not None and response.selected is not None
        request = ExecuteRequest(
            terminal_id=plan.terminal_id,
            command=plan.shell_command,
            wait=False,
            defer=defer,
            origin=_origin(selector),
        )
        try:
            result = await self.terminals.execute(request)
        except HoodydError as exc:
            log.warning(
                "run_delegation_failed",
                terminal_id=plan.terminal_id,
                candidate_id=response.selected.candidate_id,
                reason=exc.reason,
            )
            failed = msgspec.structs.replace(
                response,
                status="error",
                error=f"terminal {plan.terminal_id} refused the command: {exc.message}",
                handoff=self._handoff("failed", plan),
                terminal=TerminalReply(
                    status=exc.status,
                    ok=False,
                    json={"success": False, "error": exc.message, "reason": exc.reason},
                ),
            )
            raise RunFailed(
                exc.status, failed.error or exc.message, reason=exc.reason, response=failed
            ) from exc
        body: dict[str, Any] = msgspec.to_builtins(result)
        log.info(
            "run_scheduled",
            terminal_id=plan.terminal_id,
            command_id=result.command_id,
            candidate_id=response.selected.candidate_id,
            origin=selector.origin,
            deferred=defer is not None,
        )
        response.status = "scheduled"
        response.terminal = TerminalReply(status=200, ok=True, json=body)
        response.handoff = self._handoff("scheduled", plan, command_id=result.command_id)
        return response

    # --- preflight -------------------------------------------------------------------------

    async def preflight(self, selector: Selector) -> PreflightResponse:
        """What `run` would do, and what is missing, without scheduling anything."""
        _bind_origin(selector)
        defer = defer_spec(selector)
        redirect_to = _redirect_target(selector.redirect_to)
        await self.apps.settle()
        choice = self.choose(selector)
        selector = choice.selector
        response = PreflightResponse(
            set_id=choice.set_id,
            recommended_mode="search-only",
            missing_requirements=[],
            effective_policy=choice.policy,
            warnings=choice.warnings,
        )
        if choice.selected is None:
            return response
        plan = await self.plan(choice)
        terminal_state = self._terminal_state(plan.terminal_id)
        decision = delivery.decide(choice, plan, command_only=False, terminal_state=terminal_state)
        # what a run would do, in a mode both client generations know: the seed leaves the
        # rule open, and beta.10 and later have no `delegated-execute`; `would_schedule`
        # and the handoff say whether `/run` would schedule into the terminal
        mode: RecommendedMode = "printed-curl" if decision.outcome == "printed-curl" else "dry-run"
        response.recommended_mode = mode
        response.would_schedule = decision.would_schedule(terminal_state)
        response.selected = _with_plan(choice.selected, plan)
        response.shell_command = plan.shell_command
        response.missing_requirements = plan.missing
        response.terminal_request_preview = TerminalRequestPreview(
            terminal_url=self.links.terminal_execute(plan.terminal_id),
            terminal_id=plan.terminal_id,
            display=plan.display,
            command=plan.shell_command,
            origin=_origin(selector),
            defer_pid=defer.pid if defer else None,
            defer_start_time_ticks=selector.defer_start_time_ticks if defer else None,
            defer_timeout_ms=defer.timeout_ms if defer else None,
            defer_poll_ms=defer.poll_ms if defer else None,
        )
        response.handoff = self._handoff("preview", plan)
        if (selector.redirect or redirect_to) and choice.policy.allow_redirect:
            response.redirect_target = redirect_to or self.links.terminal_view(plan.terminal_id)
        # the run's own decision: the same outcome, mode and warnings
        response.warnings = [*choice.warnings, *decision.warnings]
        return response

    # --- batch and recipes -----------------------------------------------------------------

    async def batch(self, items: list[msgspec.Raw]) -> BatchResponse:
        """Each item on its own: a bad item is an error result, never a failed batch. A `run`
        item is command-only (CONTRACT.md §3.8), never scheduled."""
        if len(items) > MAX_BATCH_ITEMS:
            raise InvalidRequest(
                f"too many batch items: {len(items)} (at most {MAX_BATCH_ITEMS})",
                reason=Reason.BATCH_TOO_LARGE,
            )
        results: list[BatchItemResult] = []
        for raw in items:
            await asyncio.sleep(0)  # let other requests in between the searches
            request_id = _request_id(raw)
            try:
                item = decode_json(bytes(raw), BatchItemRequest)
                if item.mode == "run":
                    outcome = await self.run(item.selector, self.default_target, command_only=True)
                    run: dict[str, Any] = msgspec.to_builtins(outcome.response)
                    results.append(BatchItemResult("run", item.request_id, run=run))
                else:
                    found = self.apps.search(item.selector, run_link=self.links.candidate_run)
                    results.append(BatchItemResult("search", item.request_id, search=found))
            except HoodydError as exc:
                error = ApiError(error=exc.message, code=exc.status, reason=exc.reason)
                results.append(BatchItemResult("error", request_id, error=error))
        return BatchResponse(items=results)

    def recipe_selector(self, name: str, request: RecipeExecutionRequest) -> Selector:
        return self.apps.recipe_selector(name, request)


def requirements_refusal(
    response: RunResponse, plan: Plan, handoff: RunHandoff
) -> RunFailed[RunResponse]:
    """A 409 for a pick whose command can only fail until its requirements are resolved:
    nothing is scheduled, and the answer lists each requirement with its resolution.
    hoodyd does not install on a run (see docs/apps.md, Running apps: a run request never turns
    into a package installation as root); the caller runs the resolution and asks again."""
    assert response.selected is not None
    steps = "; ".join(
        f"{item.message} ({item.resolution})" if item.resolution else item.message
        for item in plan.unmet
    )
    message = f"{response.selected.candidate_id} cannot run until its requirements are met: {steps}"
    refused = msgspec.structs.replace(
        response,
        status="error",
        error=message,
        handoff=handoff,
    )
    log.info(
        "run_requirements_missing",
        candidate_id=response.selected.candidate_id,
        requirements=[item.name for item in plan.unmet],
    )
    return RunFailed(409, message, reason=Reason.REQUIREMENTS_MISSING, response=refused)


def _origin(selector: Selector) -> str:
    """The origin of the terminal request a run makes (and its preview shows)."""
    return selector.origin[:128] if selector.origin else RUN_ORIGIN


def _bind_origin(selector: Selector) -> None:
    """Every later log line of this request (the terminal's included) names the origin."""
    if selector.origin:
        structlog.contextvars.bind_contextvars(origin=selector.origin[:128])


def _finish(response: RunResponse, plan: Plan) -> Outcome:
    response.warnings = response.warnings or None
    return Outcome(response, plan=plan)


def _with_plan(candidate: Candidate, plan: Plan) -> Candidate:
    """The selected candidate as it will run: the planned env, command and side effects."""
    return msgspec.structs.replace(
        candidate,
        shell_command=plan.shell_command,
        run_plan=msgspec.structs.replace(
            candidate.run_plan, command=plan.shell_command, env=plan.env or None
        ),
        execution_plan=plan.execution_plan(),
    )


class _RequestIdOnly(msgspec.Struct):
    request_id: str = ""


def _request_id(raw: msgspec.Raw) -> str:
    try:
        return msgspec.json.decode(bytes(raw), type=_RequestIdOnly).request_id
    except (msgspec.DecodeError, msgspec.ValidationError):
        return ""


def _redirect_target(value: str | None) -> str | None:
    """A same-origin path (`/...`, not `//host`) or an http(s) URL; nothing else."""
    if value is None:
        return None
    same_origin = value.startswith("/") and not value.startswith("//")
    if not (same_origin or value.startswith(("http://", "https://"))) or any(
        ord(char) < 0x20 for char in value
    ):
        raise InvalidRequest(
            f"redirect_to must be a path starting with / or an http(s) URL, got {value!r}",
            reason=Reason.INVALID_REDIRECT,
        )
    return value
