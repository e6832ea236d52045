"""Wire contracts of the App Execution ("run") API (CONTRACT.md §3).

Every input Struct forbids unknown fields so that a misspelt key is a 400, not a silently
ignored hint. Output Structs omit unset optional fields. Enum values live in `Literal`s; the
`ENUM_VALUES` table lets the HTTP edge list the allowed values when a client sends another.
`apt` is an extension of `SourceKind`/`SourceType` (Debian packages through apt), and so
are `flatpak`, `pypi` (tools run with uvx or pipx) and `npm` (tools run with npx).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

import msgspec
from msgspec import Meta, Struct

from hoodyd.schemas.terminal import DeferPid, DeferPollMs, DeferTicks, DeferTimeoutMs

Os = Literal["linux", "windows", "any"]
Arch = Literal["amd64", "arm64", "any"]
AppKind = Literal["gui", "cli", "any"]
RecordKind = Literal["gui", "cli"]
SourceKind = Literal[
    "nix", "pkgx", "appimage", "oci", "registry", "system", "apt", "flatpak", "pypi", "npm", "any"
]
SourceType = Literal[
    "nix-pkgs",
    "nix-flake",
    "pkgx",
    "app-image-pinned",
    "app-image-git-hub-releases",
    "app-image-catalog",
    "oci-local-images",
    "manifest-registry",
    "manifest-remote-index",
    "system-path",
    "trusted-list-file",
    "apt",
    "flatpak",
    "pypi",
    "npm",
]
PickMode = Literal["ask", "first", "index", "id"]
PrintCurlMode = Literal["hoody-run", "hoody-terminal"]
OutputFormat = Literal["json", "html"]
BatchMode = Literal["search", "run"]
JobKind = Literal["source-sync", "search-resolve"]
JobStatus = Literal["queued", "running", "done", "error"]
JobResultType = Literal["search-response"]
SourceHealthStatus = Literal["unknown", "idle", "ok", "error", "disabled", "filtered"]
ProfileSourceMode = Literal["inherit", "allowlist"]
ExecutionMode = Literal["shell-inline", "argv"]

TerminalId = Annotated[int, Meta(ge=1, le=65535)]
Limit = Annotated[int, Meta(ge=1, le=100)]
NonNegative = Annotated[int, Meta(ge=0)]
Name = Annotated[str, Meta(min_length=1, max_length=200)]
# what a caller asks for by name: text, never control characters (NUL, newlines, escapes)
AppQuery = Annotated[str, Meta(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]

# Field name -> allowed values, for "unknown enum value" errors that list the choices.
ENUM_VALUES: dict[str, tuple[str, ...]] = {
    "os": get_args(Os),
    "arch": get_args(Arch),
    "kind": get_args(AppKind),
    "source": get_args(SourceKind),
    "provider": get_args(SourceKind),
    "deny_providers": get_args(SourceKind),
    "source_type": get_args(SourceType),
    "pick": get_args(PickMode),
    "print_curl": get_args(PrintCurlMode),
    "format": get_args(OutputFormat),
    "mode": get_args(BatchMode),
    "sources_mode": get_args(ProfileSourceMode),
}

SEARCH_QUERY_FIELDS = (
    "app", "os", "source", "kind", "arch", "tags", "profile", "channel", "version",
    "variant", "publisher", "repo", "release", "asset", "limit",
)  # fmt: skip


class _SelectorFields(Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """Every Selector field but `app` (CONTRACT.md §3.3)."""

    os: Os | None = None
    kind: AppKind | None = None
    source: list[SourceKind] | None = None
    arch: Arch | None = None
    tags: list[str] | None = None
    profile: str | None = None
    channel: str | None = None
    version: str | None = None
    variant: str | None = None
    publisher: str | None = None
    repo: str | None = None
    release: str | None = None
    asset: str | None = None
    pick: PickMode | None = None
    pick_index: NonNegative | None = None
    candidate_id: str | None = None
    set_id: str | None = None
    terminal_id: TerminalId | None = None
    display: str | None = None
    origin: str | None = None
    # bounds shared with the terminal area (`hoodyd.schemas.terminal`)
    defer_pid: DeferPid | None = None
    defer_start_time_ticks: DeferTicks | None = None
    defer_timeout_ms: DeferTimeoutMs | None = None
    defer_poll_ms: DeferPollMs | None = None
    format: OutputFormat | None = None
    redirect: bool | None = None
    redirect_to: str | None = None
    dry_run: bool | None = None
    print_curl: PrintCurlMode | None = None
    # Out-of-range limits are clamped to 1..100 (CONTRACT.md §3.3), so no bound here.
    limit: int | None = None


class Selector(_SelectorFields, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    app: AppQuery


class SelectorTemplate(
    _SelectorFields, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    app: AppQuery | None = None


SELECTOR_FIELDS: tuple[str, ...] = Selector.__struct_fields__


# --- candidates -------------------------------------------------------------------------


class Integrity(Struct, omit_defaults=True):
    url: str
    sha256: str | None = None
    author_pubkey_ed25519: str | None = None
    sig_ed25519: str | None = None


class RunPlan(Struct, omit_defaults=True):
    command: str
    env: dict[str, str] | None = None
    cwd: str | None = None


class SideEffectHint(Struct):
    code: str
    description: str


class ExecutionPlan(Struct, omit_defaults=True):
    mode: ExecutionMode | None = None
    shell: str | None = None
    shell_command: str | None = None
    argv: list[str] | None = None
    env: dict[str, str] | None = None
    cwd: str | None = None
    side_effect_hints: list[SideEffectHint] | None = None


class MatchEvidence(Struct):
    field: str
    kind: str
    value: str


class ScoreComponent(Struct, omit_defaults=True):
    label: str
    delta: float
    detail: str | None = None


class Verification(Struct, omit_defaults=True):
    verified: bool
    status: str | None = None
    note: str | None = None


class CandidateProvenance(Struct, omit_defaults=True):
    match_kind: str | None = None
    matched_value: str | None = None
    match_evidence: list[MatchEvidence] | None = None
    score_components: list[ScoreComponent] | None = None
    verification: Verification | None = None
    provider_notes: list[str] | None = None


class Requirement(Struct, omit_defaults=True):
    """Something missing before the candidate can run; `resolution` is a shell command."""

    kind: str
    name: str
    message: str
    resolution: str | None = None


class Candidate(Struct, kw_only=True, omit_defaults=True):
    """A runnable candidate. `kind`, `installed` and `requirements` extend the beta.9
    contract: the planner builds the command from `execution_plan.argv` and plans the
    `requirements` (an apt package to install, the nix CLI) before it."""

    candidate_id: str
    title: str
    description: str
    provider: SourceKind
    source_id: str
    score: float
    kind: RecordKind
    installed: bool
    version: str | None = None
    homepage: str | None = None
    tags: list[str] | None = None
    reasons: list[str] | None = None
    integrity: Integrity | None = None
    run_plan: RunPlan
    execution_plan: ExecutionPlan | None = None
    provenance: CandidateProvenance | None = None
    verified: bool | None = None
    shell_command: str | None = None
    href_path: str | None = None
    requirements: list[Requirement] = msgspec.field(default_factory=list)


class RunWarning(Struct, omit_defaults=True):
    """Something a client should know about an answer; `source_id` names the source a
    warning is about (`SOURCE_SYNCING`: its first sync has not finished, so its records
    are not searched yet)."""

    code: str
    message: str
    source_id: str | None = None


class SearchResponse(Struct, omit_defaults=True):
    set_id: str
    candidates: list[Candidate]
    warnings: list[RunWarning] | None = None


class PagedSearchRequest(Struct, forbid_unknown_fields=True, omit_defaults=True):
    selector: Selector
    cursor: str | None = None
    page_size: Limit | None = None


class PagedSearchResponse(Struct, omit_defaults=True):
    set_id: str
    total_count: int
    items: list[Candidate]
    next_cursor: str | None = None


# --- batch --------------------------------------------------------------------------------


class BatchItemRequest(Struct, forbid_unknown_fields=True):
    request_id: str
    mode: BatchMode
    selector: Selector


class BatchRequest(Struct, forbid_unknown_fields=True):
    # Items stay raw here so that one malformed item fails alone (CONTRACT.md §3.8).
    items: list[msgspec.Raw] = msgspec.field(default_factory=list)


class ApiError(Struct):
    error: str
    code: int
    reason: str | None = None


class BatchItemResult(Struct, omit_defaults=True):
    result: Literal["search", "run", "error"]
    request_id: str
    search: SearchResponse | None = None
    run: dict[str, Any] | None = None
    error: ApiError | None = None


class BatchResponse(Struct):
    items: list[BatchItemResult]


# --- jobs ---------------------------------------------------------------------------------


class Job(Struct, omit_defaults=True):
    job_id: str
    kind: JobKind
    status: JobStatus
    created_at: str
    updated_at: str
    error: str | None = None
    result_type: JobResultType | None = None
    result: Any = None
    progress: dict[str, Any] | None = None


# --- runtime configuration ----------------------------------------------------------------


class SourcePin(Struct, forbid_unknown_fields=True, omit_defaults=True):
    url: str
    sha256: str | None = None
    author_pubkey_ed25519: str | None = None
    sig_ed25519: str | None = None


class SourceConfig(Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    source_id: Annotated[str, Meta(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._-]+$")]
    enabled: bool
    priority: int
    provider: SourceKind
    source_type: SourceType
    pin: SourcePin | None = None
    config: dict[str, Any] | None = None


class SourcePatch(Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """PATCH merges only these (CONTRACT.md §3.10)."""

    enabled: bool | None = None
    priority: int | None = None
    pin: SourcePin | None = None
    config: dict[str, Any] | None = None


class PolicyConfig(Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    require_verified: bool | None = None
    require_integrity: bool | None = None
    allow_delegated_execution: bool | None = None
    allow_redirect: bool | None = None
    deny_providers: list[SourceKind] | None = None
    deny_source_ids: list[str] | None = None


class ProfileDefaults(Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    os: Os | None = None
    kind: AppKind | None = None
    source: list[SourceKind] | None = None
    pick: PickMode | None = None
    terminal_id: TerminalId | None = None
    display: str | None = None
    redirect: bool | None = None
    limit: Limit | None = None


class ProfileSourceOverride(Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    source_id: str
    enabled: bool | None = None
    priority: int | None = None


class ProfileConfig(Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    name: Name
    description: str | None = None
    defaults: ProfileDefaults | None = None
    sources_mode: ProfileSourceMode | None = None
    sources: list[ProfileSourceOverride] | None = None
    policy: PolicyConfig | None = None


class ProfilePatch(Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    description: str | None = None
    defaults: ProfileDefaults | None = None
    sources_mode: ProfileSourceMode | None = None
    sources: list[ProfileSourceOverride] | None = None
    policy: PolicyConfig | None = None


class RecipeConfig(Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    name: Name
    description: str | None = None
    selector_template: SelectorTemplate | None = None
    allowed_overrides: list[str] | None = None


class RecipePatch(Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    description: str | None = None
    selector_template: SelectorTemplate | None = None
    allowed_overrides: list[str] | None = None


class RecipeExecutionRequest(Struct, forbid_unknown_fields=True, omit_defaults=True):
    overrides: SelectorTemplate | None = None


class WebhookConfig(Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    id: str
    url: str
    enabled: bool
    events: list[str] | None = None
    secret: str | None = None
    timeout_ms: int | None = None
    max_retries: int | None = None


class RuntimeConfig(Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    version: int
    sources: list[SourceConfig]
    profiles: list[ProfileConfig]
    policy: PolicyConfig | None = None
    selected_profile: str | None = None
    recipes: list[RecipeConfig] | None = None
    webhooks: list[WebhookConfig] | None = None


class SelectedProfile(Struct):
    selected_profile: str


class SourceDiagnostics(Struct, omit_defaults=True):
    source_id: str
    status: SourceHealthStatus
    last_success_at: str | None = None
    last_error_at: str | None = None
    last_error: str | None = None
    last_search_latency_ms: float | None = None
    last_sync_job_id: str | None = None
    cache_hint: str | None = None
    effective_enabled_reason: str | None = None
    provider_details: dict[str, Any] | None = None
