"""RunService: pick a candidate, plan its command, and deliver it — scheduled into a
terminal (optionally deferred until a PID exits), returned as a command (dry run), or
printed as a curl line.

The pick reads the candidate set the search made (or the one `set_id` names), so a pick by
index lands on the item the client saw. Everything that can refuse a request (pick, policy,
a destructive candidate not picked by id, display, defer fields, redirect target) is checked
before the terminal is asked, so a refused request schedules nothing. The terminals service is
called in-process.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec
import structlog

from hoodyd.apps import curl, destructive, planner, policy
from hoodyd.apps.candidate_sets import CandidateSet
from hoodyd.apps.curl import CurlTarget
from hoodyd.apps.planner import Plan, TerminalState
from hoodyd.apps.service import AppService, Resolution
from hoodyd.config import default_socket
from hoodyd.errors import Conflict, HoodydError, InvalidRequest, NotFound
from hoodyd.schemas.run import Candidate, RecipeExecutionRequest, Selector, SideEffectHint
from hoodyd.schemas.run_exec import (
    EffectivePolicy,
    PreflightResponse,
    RecommendedMode,
    RunHandoff,
    RunResponse,
    RunWarning,
    TerminalReply,
    TerminalRequestPreview,
)
from hoodyd.schemas.terminal import (
    DEFER_FIELDS,
    DeferFields,
    DeferSpec,
    ExecuteRequest,
    defer_spec,
)
from hoodyd.terminals.service import TerminalService

log = structlog.get_logger()

RUN_BASE = "/api/v1/run"
DEFAULT_TERMINAL = 1


class RunFailed(HoodydError):
    """A run that failed after resolution: its error body is also a RunResponse
    (`status: error`, `set_id`, and the handoff when the terminal refused)."""

    def __init__(self, status: int, message: str, *, reason: str, response: RunResponse) -> None:
        super().__init__(message, reason=reason, extra=msgspec.to_builtins(response))
        self.status = status
        self.response = response


def terminal_view_path(terminal_id: int) -> str:
    return f"{RUN_BASE}/t/{terminal_id}/view"


@dataclass
class Choice:
    """A resolved selector and what the pick chose from it."""

    selector: Selector
    resolution: Resolution
    policy: EffectivePolicy
    set_id: str
    candidates: list[Candidate] | None = None
    selected: Candidate | None = None
    warnings: list[RunWarning] = field(default_factory=list)
    # set when the selected candidate is destructive and was not picked by id: it may be
    # shown (dry run, preflight) but not scheduled or printed as a curl line
    needs_explicit_pick: SideEffectHint | None = None


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
    ) -> None:
        self.apps = apps
        self.terminals = terminals
        # batch items have no request of their own: their curl lines use the socket
        self.default_target = default_target or CurlTarget(socket=default_socket())

    # --- pick ------------------------------------------------------------------------------

    def choose(self, selector: Selector) -> Choice:
        resolution = self.apps.resolve(selector)
        selector = resolution.selector  # profile defaults applied (pick, terminal, display)
        mode = selector.pick or "ask"
        _check_pick_fields(selector, mode)
        effective = policy.effective(resolution.policy)
        if selector.set_id is not None:
            entry = self.apps.candidate_set(selector.set_id)
            if entry is None:
                raise Conflict(
                    f"cursor set expired: candidate set {selector.set_id!r} is unknown or "
                    "has expired (sets are kept 300 s); search again",
                    reason="CURSOR_SET_EXPIRED",
                )
            listed: list[Candidate] | None = None
        else:
            found = self.apps.search(selector)
            entry = self.apps.candidate_set(found.set_id)
            assert entry is not None
            listed = found.candidates
        choice = Choice(selector, resolution, effective, entry.set_id)
        if not entry.items:
            self._raise_if_sources_failed(resolution, entry.set_id)
            raise RunFailed(
                404,
                f"no candidates for {selector.app!r}",
                reason="NO_CANDIDATES",
                response=RunResponse(
                    status="error", set_id=entry.set_id, error=f"no candidates for {selector.app!r}"
                ),
            )
        if mode == "ask":
            choice.candidates = (
                listed
                if listed is not None
                else self.apps.candidates(entry, entry.items[: resolution.limit], resolution)
            )
            return choice
        position = _pick_position(entry, selector, mode)
        [choice.selected] = self.apps.candidates(entry, [entry.items[position]], resolution)
        policy.check_candidate(effective, choice.selected)
        danger = destructive.marked(choice.selected)
        if danger is not None and mode != "id":
            choice.needs_explicit_pick = danger
            choice.warnings.append(
                RunWarning(
                    code=destructive.REASON,
                    message=f"{choice.selected.candidate_id} {danger.description}",
                )
            )
        return choice

    def _raise_if_sources_failed(self, resolution: Resolution, set_id: str) -> None:
        """No candidates because a source that was asked could not be read is a 502 that
        names the source and its error, not a plain "no candidates"."""
        failed = []
        for source, _ranked in resolution.sources:
            state = self.apps.states.get(source.source_id)
            if state is not None and state.index is None and state.last_error:
                failed.append(f"{source.source_id}: {state.last_error}")
        if failed:
            message = f"source resolution failed ({'; '.join(failed)})"
            raise RunFailed(
                502,
                message,
                reason="SOURCE_RESOLUTION_FAILED",
                response=RunResponse(status="error", set_id=set_id, error=message),
            )

    # --- plan ------------------------------------------------------------------------------

    def _terminal_state(self, terminal_id: int) -> TerminalState:
        if self.terminals is None:
            return "unavailable"
        try:
            session = self.terminals.session(terminal_id)
        except NotFound:
            # terminal 1 is created on first use (DESIGN.md, Terminals)
            return "new" if terminal_id == DEFAULT_TERMINAL else "absent"
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
        self, selector: Selector, target: CurlTarget, *, command_only: bool = False
    ) -> Outcome:
        """Resolve, pick, plan and deliver. `command_only` (batch items) never schedules."""
        _bind_origin(selector)
        defer = _defer(selector)
        redirect_to = _redirect_target(selector.redirect_to)
        choice = self.choose(selector)
        selector = choice.selector
        # a printed curl line is made to be run: it is refused like a run (dry runs answer)
        if choice.needs_explicit_pick is not None and (
            selector.print_curl is not None or not (command_only or selector.dry_run)
        ):
            raise _destructive_refusal(choice)
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
        warnings = choice.warnings
        warnings += [
            RunWarning(
                code="MISSING_REQUIREMENT", message=f"{item.kind} {item.name}: {item.message}"
            )
            for item in plan.missing
        ]
        response = msgspec.structs.replace(
            base,
            selected=_with_plan(choice.selected, plan),
            shell_command=plan.shell_command,
            missing_requirements=plan.missing or None,
            warnings=warnings,
        )
        preview = RunHandoff(
            state="preview",
            terminal_id=plan.terminal_id,
            display=plan.display,
            predicted_terminal_url=terminal_view_path(plan.terminal_id),
        )
        if selector.print_curl is not None:
            if selector.print_curl == "hoody-run":
                line = curl.hoody_run(target, selector, choice.selected.candidate_id)
            else:
                line = curl.hoody_terminal(target, selector, plan.terminal_id, plan.shell_command)
            response.status, response.curl, response.handoff = "printed-curl", line, preview
            return _finish(response, plan)
        delegate = not (command_only or selector.dry_run)
        if delegate and not choice.policy.allow_delegated_execution:
            delegate = False
            warnings.append(
                RunWarning(
                    code="DELEGATION_DISABLED",
                    message="the effective policy does not allow delegated execution: "
                    "the command is returned, not run",
                )
            )
        if delegate and self.terminals is None:
            delegate = False
            warnings.append(
                RunWarning(code="TERMINALS_UNAVAILABLE", message="no terminal service runs here")
            )
        if not delegate:
            response.status, response.handoff = "dry-run", preview
            return _finish(response, plan)
        response = await self._schedule(response, plan, selector, defer)
        redirect = None
        if selector.redirect or redirect_to is not None:
            if choice.policy.allow_redirect:
                redirect = redirect_to or terminal_view_path(plan.terminal_id)
            else:
                warnings.append(
                    RunWarning(
                        code="REDIRECT_NOT_ALLOWED",
                        message="the effective policy does not allow redirects",
                    )
                )
        outcome = _finish(response, plan)
        outcome.redirect = redirect
        return outcome

    async def _schedule(
        self, response: RunResponse, plan: Plan, selector: Selector, defer: DeferSpec | None
    ) -> RunResponse:
        assert self.terminals is not None and response.selected is not None
        request = ExecuteRequest(
            terminal_id=plan.terminal_id,
            command=plan.shell_command,
            wait=False,
            defer=defer,
            origin=selector.origin[:128] if selector.origin else None,
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
                handoff=RunHandoff(
                    state="failed", terminal_id=plan.terminal_id, display=plan.display
                ),
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
        response.handoff = RunHandoff(
            state="scheduled",
            terminal_id=plan.terminal_id,
            display=plan.display,
            terminal_url=terminal_view_path(plan.terminal_id),
            command_id=result.command_id,
        )
        return response

    # --- preflight -------------------------------------------------------------------------

    async def preflight(self, selector: Selector) -> PreflightResponse:
        """What `run` would do, and what is missing, without scheduling anything."""
        _bind_origin(selector)
        defer = _defer(selector)
        redirect_to = _redirect_target(selector.redirect_to)
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
        mode: RecommendedMode = "delegated-execute"
        if selector.print_curl is not None and choice.needs_explicit_pick is None:
            mode = "printed-curl"
        elif (
            selector.dry_run
            or choice.needs_explicit_pick is not None
            or not choice.policy.allow_delegated_execution
            or terminal_state in ("unavailable", "absent", "exited")
        ):
            mode = "dry-run"
        response.recommended_mode = mode
        response.selected = _with_plan(choice.selected, plan)
        response.shell_command = plan.shell_command
        response.missing_requirements = plan.missing
        response.terminal_request_preview = TerminalRequestPreview(
            terminal_url=f"/api/v1/terminal/execute?terminal_id={plan.terminal_id}",
            terminal_id=plan.terminal_id,
            display=plan.display,
            command=plan.shell_command,
            origin=selector.origin,
            defer_pid=defer.pid if defer else None,
            defer_start_time_ticks=selector.defer_start_time_ticks if defer else None,
            defer_timeout_ms=defer.timeout_ms if defer else None,
            defer_poll_ms=defer.poll_ms if defer else None,
        )
        response.handoff = RunHandoff(
            state="preview",
            terminal_id=plan.terminal_id,
            display=plan.display,
            predicted_terminal_url=terminal_view_path(plan.terminal_id),
        )
        if (selector.redirect or redirect_to) and choice.policy.allow_redirect:
            response.redirect_target = redirect_to or terminal_view_path(plan.terminal_id)
        if terminal_state == "unavailable":
            response.warnings.append(
                RunWarning(code="TERMINALS_UNAVAILABLE", message="no terminal service runs here")
            )
        if not choice.policy.allow_delegated_execution:
            response.warnings.append(
                RunWarning(
                    code="DELEGATION_DISABLED",
                    message="the effective policy does not allow delegated execution",
                )
            )
        return response

    # --- batch and recipes -----------------------------------------------------------------

    async def batch_item(self, selector: Selector) -> dict[str, Any]:
        """A batch `run` item: command-only (CONTRACT.md §3.8), never scheduled."""
        outcome = await self.run(selector, self.default_target, command_only=True)
        result: dict[str, Any] = msgspec.to_builtins(outcome.response)
        return result

    def recipe_selector(self, name: str, request: RecipeExecutionRequest) -> Selector:
        return self.apps.recipe_selector(name, request)


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


def _destructive_refusal(choice: Choice) -> RunFailed:
    """A destructive candidate reached by `first` or `index` (a fuzzy query included) is a
    403 that names it; nothing is scheduled (hoodyd.apps.destructive)."""
    assert choice.selected is not None and choice.needs_explicit_pick is not None
    candidate_id, mode = choice.selected.candidate_id, choice.selector.pick
    danger = choice.needs_explicit_pick.description
    message = f"{candidate_id} {danger}; it was picked with pick={mode}"
    log.warning("run_destructive_refused", candidate_id=candidate_id, pick=mode)
    return RunFailed(
        403,
        message,
        reason=destructive.REASON,
        response=RunResponse(
            status="error", set_id=choice.set_id, selected=choice.selected, error=message
        ),
    )


def _check_pick_fields(selector: Selector, mode: str) -> None:
    if selector.pick_index is not None and mode != "index":
        raise InvalidRequest(
            f"pick_index is only used with pick=index (got pick={mode})", reason="INVALID_PICK"
        )
    if selector.candidate_id is not None and mode != "id":
        raise InvalidRequest(
            f"candidate_id is only used with pick=id (got pick={mode})", reason="INVALID_PICK"
        )
    if mode == "index" and selector.pick_index is None:
        raise InvalidRequest("pick=index needs pick_index", reason="INVALID_PICK")
    if mode == "id" and not selector.candidate_id:
        raise InvalidRequest("pick=id needs candidate_id", reason="INVALID_PICK")


def _pick_position(entry: CandidateSet, selector: Selector, mode: str) -> int:
    if mode == "first":
        return 0
    if mode == "index":
        assert selector.pick_index is not None
        if selector.pick_index >= len(entry.items):
            raise InvalidRequest(
                f"pick_index out of range: {selector.pick_index}", reason="INVALID_PICK"
            )
        return selector.pick_index
    for position, item in enumerate(entry.items):
        if item.candidate_id == selector.candidate_id:
            return position
    raise InvalidRequest(
        f"unknown candidate_id: {selector.candidate_id} (not in set {entry.set_id})",
        reason="INVALID_PICK",
    )


def _defer(selector: Selector) -> DeferSpec | None:
    fields = DeferFields(**{name: getattr(selector, name) for name in DEFER_FIELDS})
    try:
        return defer_spec(fields)
    except ValueError as exc:
        raise InvalidRequest(str(exc), reason="DEFER_PID_REQUIRED") from None


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
            reason="INVALID_REDIRECT",
        )
    return value
