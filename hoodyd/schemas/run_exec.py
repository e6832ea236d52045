"""Wire contracts of running an app (CONTRACT.md §3.6-§3.7): RunResponse, the terminal
handoff, preflight and the effective policy.

An error answer of a run endpoint is a RunResponse with `status: error` that also carries
the run area's error fields (`error`, `code`, `reason`), so it reads as either shape.
"""

from __future__ import annotations

from typing import Any, Literal

from msgspec import Struct

# search answers carry warnings too: the Struct lives with them and is re-exported here
from hoodyd.schemas.run import Candidate, Requirement, SourceKind
from hoodyd.schemas.run import RunWarning as RunWarning

RunStatus = Literal["resolved", "scheduled", "dry-run", "printed-curl", "error"]
HandoffState = Literal["preview", "scheduled", "failed"]
RecommendedMode = Literal["search-only", "dry-run", "delegated-execute", "printed-curl"]
# the narrower enums of `/resolve` (the public client's beta.10 and later): never scheduled
ResolveStatus = Literal["resolved", "dry-run", "printed-curl", "error"]
ResolveHandoffState = Literal["preview"]


class RunHandoff(Struct, kw_only=True, omit_defaults=True):
    state: HandoffState
    terminal_id: int
    display: str
    display_url: str | None = None
    terminal_url: str | None = None
    predicted_display_url: str | None = None
    predicted_terminal_url: str | None = None
    # the names beta.10 and later read (CONTRACT.md §5), on every handoff: the terminal's
    # page; a display URL only where hoodyd serves a page for the display (it serves none)
    preview_display_url: str | None = None
    preview_terminal_url: str | None = None
    # extension: the terminal command that runs the app, once scheduled
    command_id: str | None = None


class TerminalReply(Struct, kw_only=True, omit_defaults=True):
    """The terminal execute answer as the compatible API embeds it."""

    status: int
    ok: bool
    body_text: str | None = None
    json: dict[str, Any] | None = None


class RunResponse(Struct, kw_only=True, omit_defaults=True):
    status: RunStatus
    set_id: str | None = None
    candidates: list[Candidate] | None = None
    selected: Candidate | None = None
    shell_command: str | None = None
    terminal: TerminalReply | None = None
    curl: str | None = None
    error: str | None = None
    handoff: RunHandoff | None = None
    warnings: list[RunWarning] | None = None
    # extensions: what was found missing for the selected candidate, and the policy applied
    missing_requirements: list[Requirement] | None = None
    effective_policy: EffectivePolicy | None = None


class EffectivePolicy(Struct, kw_only=True, omit_defaults=True):
    require_verified: bool
    require_integrity: bool
    allow_delegated_execution: bool
    allow_redirect: bool
    deny_providers: list[SourceKind] | None = None
    deny_source_ids: list[str] | None = None


class TerminalRequestPreview(Struct, kw_only=True, omit_defaults=True):
    terminal_url: str
    terminal_id: int
    display: str
    command: str
    # the origin the terminal request carries: the caller's, else hoodyd's run area
    origin: str
    defer_pid: int | None = None
    defer_start_time_ticks: str | None = None
    defer_timeout_ms: int | None = None
    defer_poll_ms: int | None = None


class PreflightResponse(Struct, kw_only=True, omit_defaults=True):
    set_id: str
    recommended_mode: RecommendedMode
    # required, so always on the wire (may be empty)
    missing_requirements: list[Requirement]
    warnings: list[RunWarning]
    effective_policy: EffectivePolicy
    selected: Candidate | None = None
    shell_command: str | None = None
    terminal_request_preview: TerminalRequestPreview | None = None
    redirect_target: str | None = None
    handoff: RunHandoff | None = None
    # extension: whether `/run`, a go path or a recipe run with this selector would schedule
    # the command into the terminal now (`recommended_mode` then says `dry-run`, the mode
    # every client generation knows; see docs/apps.md, Running apps)
    would_schedule: bool | None = None
