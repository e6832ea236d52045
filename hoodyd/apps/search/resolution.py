"""What a selector means: profile defaults filled in, the effective policy, and the enabled
sources to search in priority order (a recipe's selector included).

No I/O and no index: a resolution is computed from the runtime config alone, once per
request, and carried along with the candidate set it produces.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from hoodyd.apps.catalog.catalog import Catalog
from hoodyd.apps.catalog.sources import SOURCES
from hoodyd.apps.search.ranking import RankedSource
from hoodyd.errors import InvalidRequest, Reason
from hoodyd.schemas.run import (
    SEARCH_QUERY_FIELDS,
    SELECTOR_FIELDS,
    PolicyConfig,
    ProfileConfig,
    RecipeConfig,
    RecipeExecutionRequest,
    RuntimeConfig,
    Selector,
    SelectorTemplate,
    SourceConfig,
)
from hoodyd.schemas.validation import convert

DEFAULT_LIMIT = 25
MAX_LIMIT = 100
# the selector fields a profile's defaults fill in when the request leaves them unset
PROFILE_DEFAULT_FIELDS = (
    "os", "kind", "source", "pick", "terminal_id", "display", "redirect", "limit",
)  # fmt: skip
# selector fields that say how to pick or deliver, not what to search: a cursor may carry
# them across pages
_DELIVERY_FIELDS = frozenset(
    {
        "limit", "pick", "pick_index", "candidate_id", "set_id", "terminal_id", "display",
        "origin", "format", "redirect", "redirect_to", "dry_run", "print_curl",
    }
)  # fmt: skip


@dataclass(frozen=True)
class Resolution:
    """A selector after profile defaults and policy: what a search actually runs."""

    selector: Selector
    query: str
    limit: int
    profile: ProfileConfig | None
    sources: list[tuple[SourceConfig, RankedSource]]
    policy: PolicyConfig
    # the runtime config it was resolved under: every edit replaces the config object, so a
    # search ranked under this one is valid while it is still the current one
    config: RuntimeConfig

    def source_config(self, source_id: str) -> SourceConfig | None:
        return next((s for s, _ in self.sources if s.source_id == source_id), None)


def resolve(catalog: Catalog, selector: Selector) -> Resolution:
    """Apply the profile's defaults and the policy to a selector.

    The policy is enforcement: the config's `policy` merged with the *selected* profile's
    (the owner's choice) applies to every request. A profile the request names brings its
    defaults and source overrides (per-request settings) and may only tighten that policy,
    never loosen it, so naming a profile cannot sidestep a deny list or a require flag."""
    config = catalog.current
    selected: ProfileConfig | None = None
    if config.selected_profile is not None:
        selected = catalog.profiles.find(config.selected_profile)
    profile = selected
    if selector.profile is not None:
        profile = catalog.profiles.get(selector.profile)
    if profile is not None and profile.defaults is not None:
        defaults = profile.defaults
        fill = {
            name: getattr(defaults, name)
            for name in PROFILE_DEFAULT_FIELDS
            if getattr(selector, name) is None and getattr(defaults, name) is not None
        }
        if fill:
            selector = msgspec.structs.replace(selector, **fill)
    query = " ".join(selector.app.lower().split())
    if not query:
        raise InvalidRequest(
            "missing field 'app': the name query is empty", reason=Reason.MISSING_FIELD
        )
    limit = DEFAULT_LIMIT if selector.limit is None else min(MAX_LIMIT, max(1, selector.limit))
    policy = merge_policy(config.policy, selected.policy if selected else None)
    if profile is not None and (selected is None or profile.name != selected.name):
        policy = tighten_policy(policy, profile.policy)
    sources = enabled_sources(config.sources, profile, policy, set(selector.source or []))
    return Resolution(selector, query, limit, profile, sources, policy, config)


def enabled_sources(
    configured: list[SourceConfig],
    profile: ProfileConfig | None,
    policy: PolicyConfig,
    wanted: set[str],
) -> list[tuple[SourceConfig, RankedSource]]:
    """The sources a search reads, highest priority first (CONTRACT.md §3.10): enabled by the
    config or the profile's override, of a wanted provider, and not denied by the policy."""
    sources: list[tuple[SourceConfig, RankedSource]] = []
    overrides = {o.source_id: o for o in (profile.sources or [])} if profile else {}
    allowlist = profile is not None and profile.sources_mode == "allowlist"
    for source in configured:
        enabled, priority = source.enabled, source.priority
        detail = f"source {source.source_id} priority {priority}"
        override = overrides.get(source.source_id)
        if allowlist and override is None:
            continue
        if override is not None and profile is not None:
            if override.enabled is not None:
                enabled = override.enabled
            if override.priority is not None:
                priority = override.priority
                detail = f"profile {profile.name} sets {source.source_id} priority {priority}"
        if not enabled:
            continue
        if wanted and "any" not in wanted and source.provider not in wanted:
            continue
        if source.provider in (policy.deny_providers or []):
            continue
        if source.source_id in (policy.deny_source_ids or []):
            continue
        implementation = SOURCES.get(source.source_type)
        ranked = RankedSource(
            source_id=source.source_id,
            source_type=source.source_type,
            provider=source.provider,
            priority=priority,
            priority_detail=detail,
            verified=bool(implementation and implementation.trusted),
        )
        sources.append((source, ranked))
    sources.sort(key=lambda pair: (-pair[1].priority, pair[1].source_id))
    return sources


def merge_policy(base: PolicyConfig | None, override: PolicyConfig | None) -> PolicyConfig:
    """The profile's policy over the config's; deny lists are joined, not replaced."""
    merged = msgspec.to_builtins(base or PolicyConfig())
    for key, value in msgspec.to_builtins(override or PolicyConfig()).items():
        if key in ("deny_providers", "deny_source_ids"):
            merged[key] = sorted(set(merged.get(key, [])) | set(value))
        else:
            merged[key] = value
    return msgspec.convert(merged, PolicyConfig)


def tighten_policy(enforced: PolicyConfig, requested: PolicyConfig | None) -> PolicyConfig:
    """The enforced policy with a request-named profile's policy on top, where it is
    stricter only: its deny lists add up, a `require_*` it sets true is required, an
    `allow_*` it sets false is refused; nothing it says relaxes the enforced policy."""
    if requested is None:
        return enforced

    def denied(mine: list[Any] | None, theirs: list[Any] | None) -> list[Any] | None:
        joined = sorted(set(mine or []) | set(theirs or []))
        return joined or None

    return PolicyConfig(
        require_verified=True if requested.require_verified else enforced.require_verified,
        require_integrity=True if requested.require_integrity else enforced.require_integrity,
        allow_delegated_execution=(
            False
            if requested.allow_delegated_execution is False
            else enforced.allow_delegated_execution
        ),
        allow_redirect=False if requested.allow_redirect is False else enforced.allow_redirect,
        deny_providers=denied(enforced.deny_providers, requested.deny_providers),
        deny_source_ids=denied(enforced.deny_source_ids, requested.deny_source_ids),
    )


# the selector fields a candidate's link carries: what makes the search it was found in
# (profile and filters; the app first), never how it was picked or delivered
_LINK_FIELDS = tuple(name for name in SEARCH_QUERY_FIELDS if name not in ("app", "limit"))


def search_query(resolution: Resolution) -> list[tuple[str, str]]:
    """The query pairs that repeat a resolution's search: the app, the profile the request
    named, and every filter and hint as resolved (profile defaults filled in), so a link made
    from them searches what the candidate was found in."""
    selector = resolution.selector
    pairs = [("app", selector.app)]
    for name in _LINK_FIELDS:
        value = getattr(selector, name)
        if value is None:
            continue
        pairs.append((name, ",".join(value) if isinstance(value, list) else str(value)))
    return pairs


_key_encoder = msgspec.json.Encoder(order="deterministic")


def selector_key(resolution: Resolution) -> bytes:
    """The search-relevant fields of a resolved selector, canonically encoded."""
    selector = resolution.selector
    relevant = {
        name: getattr(selector, name)
        for name in SELECTOR_FIELDS
        if name not in _DELIVERY_FIELDS and not name.startswith("defer_")
    }
    relevant["profile"] = resolution.profile.name if resolution.profile else None
    return _key_encoder.encode(relevant)


def recipe_selector(recipe: RecipeConfig, request: RecipeExecutionRequest) -> Selector:
    """The recipe's template with the request's overrides; an override of a field the
    recipe does not allow is a 400, never silently dropped."""
    merged = msgspec.to_builtins(recipe.selector_template or SelectorTemplate())
    allowed = set(recipe.allowed_overrides or [])
    for key, value in msgspec.to_builtins(request.overrides or SelectorTemplate()).items():
        if key not in allowed:
            raise InvalidRequest(
                f"recipe override not allowed: {key}", reason=Reason.RECIPE_OVERRIDE_NOT_ALLOWED
            )
        merged[key] = value
    return convert(merged, Selector)
