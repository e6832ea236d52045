"""AppService: the run area's rules — runtime configuration, source syncs as background
jobs, the per-source indexes, ranked search, candidate sets, paging, batch and recipes.

Nothing here shells out or reads big files on the event loop: syncs and index loads run in
worker threads and swap a finished index in whole. A source that fails to sync keeps its
previous records (or none) and reports the error in its diagnostics; searches go on across
the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import msgspec
import structlog

from hoodyd.apps import destructive, wire
from hoodyd.apps.candidate_sets import (
    CandidateSet,
    CandidateSetStore,
    decode_cursor,
    encode_cursor,
    expired,
)
from hoodyd.apps.grouping import group_duplicates
from hoodyd.apps.index import (
    Match,
    SourceIndex,
    build_index_file,
    flags_allow,
    load_index,
    remove_index,
    save_index,
)
from hoodyd.apps.jobs import JobHandle, JobStore
from hoodyd.apps.ranking import (
    RankedSource,
    Scored,
    first_pass,
    first_pass_slack,
    max_bonus,
    pins_allow,
    rank,
    score,
)
from hoodyd.apps.records import LaunchPlan, SourceUnavailable, SyncCancelled, SyncContext
from hoodyd.apps.runtime_config import RuntimeConfigStore
from hoodyd.apps.sources import SOURCES
from hoodyd.config import RunConfig
from hoodyd.errors import HoodydError, InvalidRequest, NotFound
from hoodyd.schemas.run import (
    SELECTOR_FIELDS,
    ApiError,
    BatchItemRequest,
    BatchItemResult,
    BatchResponse,
    Candidate,
    CandidateProvenance,
    ExecutionPlan,
    Integrity,
    Job,
    PagedSearchRequest,
    PagedSearchResponse,
    PolicyConfig,
    ProfileConfig,
    ProfilePatch,
    RecipeConfig,
    RecipeExecutionRequest,
    RecipePatch,
    RunPlan,
    RuntimeConfig,
    SearchResponse,
    SelectedProfile,
    Selector,
    SelectorTemplate,
    SourceConfig,
    SourceDiagnostics,
    SourcePatch,
    Verification,
)

log = structlog.get_logger()

DEFAULT_LIMIT = 25
MAX_LIMIT = 100
DEFAULT_PAGE_SIZE = 25
SYNC_NICENESS = 10
MAX_BATCH_ITEMS = 100
RUN_BASE = "/api/v1/run"


def iso(timestamp: float) -> str:
    return (
        datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    )


@dataclass
class SourceState:
    """What the service knows about one configured source at run time."""

    index: SourceIndex | None = None
    last_success_at: float | None = None
    last_error_at: float | None = None
    last_error: str | None = None
    last_sync_job_id: str | None = None
    last_search_latency_ms: float | None = None
    syncing: JobHandle | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass(frozen=True)
class Resolution:
    """A selector after profile defaults and policy: what a search actually runs."""

    selector: Selector
    query: str
    limit: int
    profile: ProfileConfig | None
    sources: list[tuple[SourceConfig, RankedSource]]
    policy: PolicyConfig


class AppService:
    def __init__(
        self, state_dir: Path, settings: RunConfig, *, environ: Mapping[str, str] | None = None
    ) -> None:
        self.settings = settings
        self.environ = dict(os.environ if environ is None else environ)
        self.index_dir = state_dir / "index"
        self.config_store = RuntimeConfigStore(state_dir / "run" / "config.json")
        self.sets = CandidateSetStore(
            ttl=settings.candidate_set_ttl, max_sets=settings.max_candidate_sets
        )
        self.jobs = JobStore()
        # batch items of mode `run`: set by the run planner (RunService.batch_item)
        self.batch_runner: Callable[[Selector], Awaitable[dict[str, Any]]] | None = None
        self.states: dict[str, SourceState] = {}
        self._cancel = threading.Event()
        # syncs parse big lists: one worker thread at a lower CPU priority, so a sync never
        # competes with searches (or with the rest of the machine) for more than a core
        self._sync_executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="hoodyd-sync", initializer=_lower_priority
        )

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Load the config and every cached index (in a thread), then sync in the background
        the enabled sources that have no index yet or a stale one."""
        started = time.perf_counter()
        config = await asyncio.to_thread(self.config_store.load, self.environ)
        loaded = await asyncio.to_thread(self._load_indexes, [s.source_id for s in config.sources])
        types = {s.source_id: s.source_type for s in config.sources}
        for source_id, index in loaded.items():
            if index is not None and index.source_type != types[source_id]:
                loaded[source_id] = index = None  # left by an earlier source of that id
            state = self.states.setdefault(source_id, SourceState())
            state.index = index
            if index is not None:
                state.last_success_at = index.synced_at
        log.info(
            "run_indexes_loaded",
            sources=len(config.sources),
            records=sum(len(i) for i in loaded.values() if i is not None),
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        if self.settings.auto_sync:
            now = time.time()
            for source in config.sources:
                index = loaded.get(source.source_id)
                stale = index is None or (
                    self.settings.resync_after > 0
                    and now - index.synced_at > self.settings.resync_after
                )
                if source.enabled and stale:
                    self.sync_source(source.source_id)

    def _load_indexes(self, source_ids: list[str]) -> dict[str, SourceIndex | None]:
        out: dict[str, SourceIndex | None] = {}
        for source_id in source_ids:
            try:
                file = load_index(self.index_dir, source_id)
            except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
                log.warning("run_index_unreadable", source_id=source_id, error=str(exc))
                file = None
            out[source_id] = SourceIndex(file) if file is not None else None
        return out

    async def close(self) -> None:
        self._cancel.set()
        await self.jobs.close()
        # the running sync sees the cancel flag at its next check and ends soon after
        self._sync_executor.shutdown(wait=False, cancel_futures=True)

    # --- runtime configuration -----------------------------------------------------------

    def runtime_config(self) -> RuntimeConfig:
        return self.config_store.current

    def list_sources(self) -> list[SourceConfig]:
        return self.config_store.current.sources

    def _source(self, source_id: str) -> SourceConfig:
        for source in self.config_store.current.sources:
            if source.source_id == source_id:
                return source
        raise NotFound(f"source not found: {source_id}", reason="SOURCE_NOT_FOUND")

    async def add_source(self, source: SourceConfig) -> list[SourceConfig]:
        def change(config: RuntimeConfig) -> RuntimeConfig:
            if any(s.source_id == source.source_id for s in config.sources):
                raise InvalidRequest(
                    f"source already exists: {source.source_id}", reason="DUPLICATE_SOURCE"
                )
            config.sources.append(source)
            return config

        config = await self.config_store.update(change)
        self.states.setdefault(source.source_id, SourceState())
        if source.enabled and self.settings.auto_sync:
            self.sync_source(source.source_id)  # usable as soon as its first sync lands
        return config.sources

    async def patch_source(self, source_id: str, patch: SourcePatch) -> SourceConfig:
        before = self._source(source_id)

        def change(config: RuntimeConfig) -> RuntimeConfig:
            for i, source in enumerate(config.sources):
                if source.source_id == source_id:
                    updates: dict[str, Any] = {}
                    for name in ("enabled", "priority", "pin", "config"):
                        value = getattr(patch, name)
                        if value is not None:
                            updates[name] = value
                    config.sources[i] = msgspec.structs.replace(source, **updates)
            return config

        config = await self.config_store.update(change)
        after = next(s for s in config.sources if s.source_id == source_id)
        needs_sync = after.enabled and (
            not before.enabled or before.config != after.config or before.pin != after.pin
        )
        if needs_sync and self.settings.auto_sync:
            self.sync_source(source_id)
        return after

    async def delete_source(self, source_id: str) -> None:
        self._source(source_id)

        def change(config: RuntimeConfig) -> RuntimeConfig:
            config.sources = [s for s in config.sources if s.source_id != source_id]
            return config

        await self.config_store.update(change)
        self.states.pop(source_id, None)
        await asyncio.to_thread(remove_index, self.index_dir, source_id)

    def list_profiles(self) -> list[ProfileConfig]:
        return self.config_store.current.profiles

    def _profile(self, name: str) -> ProfileConfig:
        for profile in self.config_store.current.profiles:
            if profile.name == name:
                return profile
        raise NotFound(f"profile not found: {name}", reason="PROFILE_NOT_FOUND")

    async def add_profile(self, profile: ProfileConfig) -> list[ProfileConfig]:
        def change(config: RuntimeConfig) -> RuntimeConfig:
            if any(p.name == profile.name for p in config.profiles):
                raise InvalidRequest(
                    f"profile already exists: {profile.name}", reason="DUPLICATE_PROFILE"
                )
            config.profiles.append(profile)
            return config

        return (await self.config_store.update(change)).profiles

    async def patch_profile(self, name: str, patch: ProfilePatch) -> ProfileConfig:
        self._profile(name)

        def change(config: RuntimeConfig) -> RuntimeConfig:
            for i, profile in enumerate(config.profiles):
                if profile.name == name:
                    updates = {
                        f: getattr(patch, f)
                        for f in ("description", "defaults", "sources_mode", "sources", "policy")
                        if getattr(patch, f) is not None
                    }
                    config.profiles[i] = msgspec.structs.replace(profile, **updates)
            return config

        config = await self.config_store.update(change)
        return next(p for p in config.profiles if p.name == name)

    async def delete_profile(self, name: str) -> None:
        self._profile(name)

        def change(config: RuntimeConfig) -> RuntimeConfig:
            config.profiles = [p for p in config.profiles if p.name != name]
            if config.selected_profile == name:
                config.selected_profile = None
            return config

        await self.config_store.update(change)

    async def select_profile(self, name: str) -> SelectedProfile:
        self._profile(name)

        def change(config: RuntimeConfig) -> RuntimeConfig:
            config.selected_profile = name
            return config

        await self.config_store.update(change)
        return SelectedProfile(selected_profile=name)

    def list_recipes(self) -> list[RecipeConfig]:
        return self.config_store.current.recipes or []

    def get_recipe(self, name: str) -> RecipeConfig:
        for recipe in self.config_store.current.recipes or []:
            if recipe.name == name:
                return recipe
        raise NotFound(f"recipe not found: {name}", reason="RECIPE_NOT_FOUND")

    async def add_recipe(self, recipe: RecipeConfig) -> list[RecipeConfig]:
        def change(config: RuntimeConfig) -> RuntimeConfig:
            recipes = config.recipes or []
            if any(r.name == recipe.name for r in recipes):
                raise InvalidRequest(
                    f"recipe already exists: {recipe.name}", reason="DUPLICATE_RECIPE"
                )
            config.recipes = [*recipes, recipe]
            return config

        return (await self.config_store.update(change)).recipes or []

    async def patch_recipe(self, name: str, patch: RecipePatch) -> RecipeConfig:
        self.get_recipe(name)

        def change(config: RuntimeConfig) -> RuntimeConfig:
            recipes = config.recipes or []
            for i, recipe in enumerate(recipes):
                if recipe.name == name:
                    updates = {
                        f: getattr(patch, f)
                        for f in ("description", "selector_template", "allowed_overrides")
                        if getattr(patch, f) is not None
                    }
                    recipes[i] = msgspec.structs.replace(recipe, **updates)
            config.recipes = recipes
            return config

        await self.config_store.update(change)
        return self.get_recipe(name)

    async def delete_recipe(self, name: str) -> None:
        self.get_recipe(name)

        def change(config: RuntimeConfig) -> RuntimeConfig:
            config.recipes = [r for r in config.recipes or [] if r.name != name]
            return config

        await self.config_store.update(change)

    def recipe_selector(self, name: str, request: RecipeExecutionRequest) -> Selector:
        """The recipe's template with the request's overrides; an override of a field the
        recipe does not allow is a 400, never silently dropped."""
        recipe = self.get_recipe(name)
        merged = msgspec.to_builtins(recipe.selector_template or SelectorTemplate())
        allowed = set(recipe.allowed_overrides or [])
        for key, value in msgspec.to_builtins(request.overrides or SelectorTemplate()).items():
            if key not in allowed:
                raise InvalidRequest(
                    f"recipe override not allowed: {key}", reason="RECIPE_OVERRIDE_NOT_ALLOWED"
                )
            merged[key] = value
        return wire.convert(merged, Selector)

    # --- sync ----------------------------------------------------------------------------

    def sync_source(self, source_id: str) -> Job:
        self._source(source_id)
        state = self.states.setdefault(source_id, SourceState())
        if state.syncing is not None and not state.syncing.done.is_set():
            return state.syncing.job  # join the sync under way

        async def body(handle: JobHandle) -> tuple[None, Any]:
            outcome = await self._sync_one(source_id, handle)
            if outcome["status"] == "error":
                raise SourceUnavailable(outcome["error"])
            return None, outcome

        handle = self.jobs.start("source-sync", body)
        handle.progress(source_id=source_id)
        state.syncing = handle
        state.last_sync_job_id = handle.job.job_id
        return handle.job

    def sync_all(self) -> Job:
        enabled = [s.source_id for s in self.config_store.current.sources if s.enabled]

        async def body(handle: JobHandle) -> tuple[None, Any]:
            handle.progress(total=len(enabled), done=0, sources={})
            results: dict[str, Any] = {}
            for n, source_id in enumerate(enabled, 1):
                state = self.states.get(source_id)
                if state is None:
                    continue  # deleted while the job ran
                running = state.syncing
                if running is not None and running is not handle and not running.done.is_set():
                    # a sync of this source is under way: its outcome is this one's
                    await running.done.wait()
                    results[source_id] = running.job.result or {
                        "status": "error",
                        "error": running.job.error,
                    }
                else:
                    state.syncing = handle
                    results[source_id] = await self._sync_one(source_id, handle)
                handle.progress(done=n, sources=dict(results))
            return None, {"sources": results}

        handle = self.jobs.start("source-sync", body)
        for source_id in enabled:
            self.states.setdefault(source_id, SourceState()).last_sync_job_id = handle.job.job_id
        return handle.job

    async def _sync_one(self, source_id: str, handle: JobHandle) -> dict[str, Any]:
        state = self.states.setdefault(source_id, SourceState())
        async with state.lock:  # one sync per source at a time
            try:
                source = self._source(source_id)
            except NotFound:
                return {"status": "error", "error": "source was deleted"}
            implementation = SOURCES.get(source.source_type)
            loop = asyncio.get_running_loop()

            def report(facts: dict[str, Any]) -> None:
                # the loop may already be closed when a cancelled sync reports a last time
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(lambda: handle.progress(source_id=source_id, **facts))

            started = time.time()
            try:
                if implementation is None:
                    raise SourceUnavailable(
                        f"source type {source.source_type} is not supported by this daemon"
                    )
                ctx = SyncContext(
                    source.config or {},
                    environ=self.environ,
                    cancel=self._cancel,
                    progress=report,
                    pin_sha256=source.pin.sha256 if source.pin else None,
                )
                index = await loop.run_in_executor(
                    self._sync_executor, self._sync_worker, source, ctx
                )
            except SyncCancelled:
                raise asyncio.CancelledError from None
            except Exception as exc:  # a broken source must never break the others
                message = str(exc) or type(exc).__name__
                state.last_error, state.last_error_at = message, time.time()
                log.warning("run_source_sync_failed", source_id=source_id, error=message)
                return {"status": "error", "error": message}
            if source_id not in self.states:
                await asyncio.to_thread(remove_index, self.index_dir, source_id)
                return {"status": "error", "error": "source was deleted"}
            self.states[source_id].index = index
            state.last_success_at = index.synced_at
            state.last_error = None
            log.info(
                "run_source_synced",
                source_id=source_id,
                records=len(index),
                duration_ms=round((time.time() - started) * 1000, 1),
            )
            return {"status": "ok", "records": len(index), "duration_ms": index.duration_ms}

    def _sync_worker(self, source: SourceConfig, ctx: SyncContext) -> SourceIndex:
        implementation = SOURCES[source.source_type]
        started = time.perf_counter()
        result = implementation.sync(ctx)
        ctx.check_cancelled()
        ctx.report(records=len(result.records), phase="indexing")
        file = build_index_file(
            source_id=source.source_id,
            source_type=source.source_type,
            synced_at=time.time(),
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
            records=result.records,
            details=result.details,
        )
        save_index(self.index_dir, file)
        return SourceIndex(file)

    async def job(self, job_id: str, *, wait: bool, timeout_ms: int) -> Job:
        return await self.jobs.get(job_id, wait=wait, timeout_ms=timeout_ms)

    def diagnostics(self, source_id: str) -> SourceDiagnostics:
        source = self._source(source_id)
        state = self.states.setdefault(source_id, SourceState())
        implementation = SOURCES.get(source.source_type)
        index = state.index
        details: dict[str, Any] = {
            "source_type": source.source_type,
            "record_count": len(index) if index else 0,
            "syncing": state.syncing is not None and not state.syncing.done.is_set(),
        }
        if index is not None:
            details["last_sync_at"] = iso(index.synced_at)
            details["age_s"] = round(time.time() - index.synced_at, 1)
            details["sync_duration_ms"] = index.duration_ms
            details["sync"] = index.details
        detect = (
            implementation.detect(self.environ) if implementation else "source type not supported"
        )
        if not source.enabled:
            status, reason = "disabled", "disabled in the runtime config"
        elif state.last_error is not None and (
            state.last_success_at is None or (state.last_error_at or 0) >= state.last_success_at
        ):
            status, reason = "error", "enabled; the last sync failed"
        elif index is not None:
            status, reason = "ok", "enabled"
        else:
            status, reason = "idle", "enabled; not synced yet"
        if detect and source.enabled and source.source_type in ("nix-pkgs", "apt"):
            reason += f" ({detect})"
        return SourceDiagnostics(
            source_id=source_id,
            status=status,  # type: ignore[arg-type]
            last_success_at=iso(state.last_success_at) if state.last_success_at else None,
            last_error_at=iso(state.last_error_at) if state.last_error_at else None,
            last_error=state.last_error,
            last_search_latency_ms=state.last_search_latency_ms,
            last_sync_job_id=state.last_sync_job_id,
            cache_hint=f"index file {self.index_dir / (source_id + '.msgpack')}",
            effective_enabled_reason=reason,
            provider_details=details,
        )

    # --- search --------------------------------------------------------------------------

    def resolve(self, selector: Selector) -> Resolution:
        """Apply the profile's defaults and the policy to a selector."""
        config = self.config_store.current
        profile: ProfileConfig | None = None
        if selector.profile is not None:
            profile = self._profile(selector.profile)
        elif config.selected_profile is not None:
            profile = next((p for p in config.profiles if p.name == config.selected_profile), None)
        if profile is not None and profile.defaults is not None:
            defaults = profile.defaults
            fill = {
                name: getattr(defaults, name)
                for name in (
                    "os",
                    "kind",
                    "source",
                    "pick",
                    "terminal_id",
                    "display",
                    "redirect",
                    "limit",
                )
                if getattr(selector, name) is None and getattr(defaults, name) is not None
            }
            if fill:
                selector = msgspec.structs.replace(selector, **fill)
        query = " ".join(selector.app.lower().split())
        if not query:
            raise InvalidRequest(
                "missing field 'app': the name query is empty", reason="MISSING_FIELD"
            )
        limit = DEFAULT_LIMIT if selector.limit is None else min(MAX_LIMIT, max(1, selector.limit))
        policy = _merge_policy(config.policy, profile.policy if profile else None)
        wanted = set(selector.source or [])
        sources: list[tuple[SourceConfig, RankedSource]] = []
        overrides = {o.source_id: o for o in (profile.sources or [])} if profile else {}
        allowlist = profile is not None and profile.sources_mode == "allowlist"
        for source in config.sources:
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
            sources.append(
                (
                    source,
                    RankedSource(
                        source_id=source.source_id,
                        source_type=source.source_type,
                        provider=source.provider,
                        priority=priority,
                        priority_detail=detail,
                        verified=bool(implementation and implementation.trusted),
                    ),
                )
            )
        # higher priority sources are searched first (CONTRACT.md §3.10)
        sources.sort(key=lambda pair: (-pair[1].priority, pair[1].source_id))
        return Resolution(selector, query, limit, profile, sources, policy)

    def rank(self, resolution: Resolution, cap: int) -> list[Scored]:
        """The best `cap` items, one app from several sources listed once among the
        distinct apps (its duplicates after them). Whether an item duplicates another
        depends only on the items ranked above it, so when the best `want` by score hold
        `cap` distinct apps those are the first `cap` overall; else look deeper."""
        want = cap
        while True:
            by_score = self.rank_by_score(resolution, want)
            grouped, distinct = group_duplicates(by_score)
            if distinct >= cap or len(by_score) < want:
                return grouped[:cap]
            want *= 4

    def rank_by_score(self, resolution: Resolution, cap: int) -> list[Scored]:
        """Matches from every enabled source, best first, at most `cap`. A first pass scores
        each match from its flag byte; only those that can still reach the top `cap` are
        decoded and scored in full."""
        selector = resolution.selector
        kind, os_, arch = selector.kind, selector.os, selector.arch
        query = resolution.query
        looked: list[tuple[SourceState, SourceIndex, RankedSource, dict[int, Match], float]] = []
        strong = 0
        for source, ranked in resolution.sources:
            state = self.states.get(source.source_id)
            if state is None or state.index is None:
                continue
            started = time.perf_counter()
            index = state.index
            found = index.lookup(query, fuzzy=False)
            strong += sum(
                1
                for position, match in found.items()
                if match.tier in ("exact", "prefix")
                and flags_allow(index.flags[position], kind, os_, arch)
            )
            looked.append((state, index, ranked, found, time.perf_counter() - started))
        # fuzzy matches cannot reach the top `cap` once it is full of exact/prefix ones
        fuzzy = strong < cap
        first: list[tuple[float, SourceIndex, Match, RankedSource]] = []
        for state, index, ranked, found, spent in looked:
            started = time.perf_counter()
            if fuzzy:
                index.add_fuzzy(query, found)
            flags = index.flags
            for position, match in found.items():
                if flags_allow(flags[position], kind, os_, arch):
                    first.append((first_pass(match, flags[position], ranked), index, match, ranked))
            spent += time.perf_counter() - started
            state.last_search_latency_ms = round(spent * 1000, 3)
        pinned = bool(selector.release or selector.asset)
        if len(first) > cap and not pinned:
            # every score lies in [upper - slack, upper + bonus]: an item whose best case is
            # below the cap-th best worst case cannot make the top `cap` (a release/asset pin
            # filters decoded records, so it needs them all)
            lower = sorted((u - first_pass_slack(m) for u, _, m, _ in first), reverse=True)
            threshold = lower[cap - 1] - max_bonus(selector)
            first = [item for item in first if item[0] >= threshold]
        records = ((index.record(match.record), match, ranked) for _, index, match, ranked in first)
        scored = [
            score(record, match, ranked, selector)
            for record, match, ranked in records
            if not pinned or pins_allow(record, selector)
        ]
        return rank(scored)[:cap]

    def search(self, selector: Selector) -> SearchResponse:
        resolution = self.resolve(selector)
        ranked = self.rank(resolution, resolution.limit)
        entry = self.sets.put(ranked, _selector_key(resolution))
        return SearchResponse(
            set_id=entry.set_id, candidates=self.candidates(entry, ranked, resolution)
        )

    def search_paged(self, request: PagedSearchRequest) -> PagedSearchResponse:
        resolution = self.resolve(request.selector)
        page_size = request.page_size or DEFAULT_PAGE_SIZE
        if request.cursor is None:
            entry = self.sets.put(
                self.rank(resolution, self.settings.paged_cap), _selector_key(resolution)
            )
            offset = 0
        else:
            set_id, offset = decode_cursor(request.cursor)
            found = self.sets.get(set_id)
            if found is None:
                raise expired()
            if found.selector_key != _selector_key(resolution):
                raise InvalidRequest(
                    "cursor belongs to a search with another selector",
                    reason="CURSOR_SELECTOR_MISMATCH",
                )
            entry = found
        page = entry.items[offset : offset + page_size]
        end = offset + len(page)
        return PagedSearchResponse(
            set_id=entry.set_id,
            total_count=len(entry.items),
            items=self.candidates(entry, page, resolution),
            next_cursor=encode_cursor(entry.set_id, end) if end < len(entry.items) else None,
        )

    def start_search_job(self, selector: Selector) -> Job:
        self.resolve(selector)  # a bad selector is a 400 now, not a failed job later

        async def body(handle: JobHandle) -> tuple[Any, Any]:
            return "search-response", self.search(selector)

        return self.jobs.start("search-resolve", body).job

    def recipe_search(self, name: str, request: RecipeExecutionRequest) -> SearchResponse:
        return self.search(self.recipe_selector(name, request))

    async def batch(self, items: list[msgspec.Raw]) -> BatchResponse:
        """Each item on its own: a bad item is an error result, never a failed batch."""
        if len(items) > MAX_BATCH_ITEMS:
            raise InvalidRequest(
                f"too many batch items: {len(items)} (at most {MAX_BATCH_ITEMS})",
                reason="BATCH_TOO_LARGE",
            )
        results: list[BatchItemResult] = []
        for raw in items:
            await asyncio.sleep(0)  # let other requests in between the searches
            request_id = _request_id(raw)
            try:
                item = wire.decode(bytes(raw), BatchItemRequest)
                if item.mode == "run":
                    if self.batch_runner is None:
                        raise InvalidRequest(
                            "batch mode 'run' is not available on this daemon yet",
                            reason="RUN_NOT_AVAILABLE",
                        )
                    run = await self.batch_runner(item.selector)
                    results.append(
                        BatchItemResult(result="run", request_id=item.request_id, run=run)
                    )
                    continue
                results.append(
                    BatchItemResult(
                        result="search",
                        request_id=item.request_id,
                        search=self.search(item.selector),
                    )
                )
            except HoodydError as exc:
                results.append(
                    BatchItemResult(
                        result="error",
                        request_id=request_id,
                        error=ApiError(error=exc.message, code=exc.status, reason=exc.reason),
                    )
                )
        return BatchResponse(items=results)

    def candidate_set(self, set_id: str) -> CandidateSet | None:
        return self.sets.get(set_id)

    # --- candidates on the wire ------------------------------------------------------------

    def candidates(
        self, entry: CandidateSet, items: list[Scored], resolution: Resolution
    ) -> list[Candidate]:
        configs = {source.source_id: source for source, _ in resolution.sources}
        return [
            self.candidate(item, configs.get(item.source.source_id), resolution) for item in items
        ]

    def launch_plan(self, item: Scored, source: SourceConfig | None = None) -> LaunchPlan:
        """How to launch a ranked item: argv (the planner joins it with `shlex.join`), the
        requirements to resolve first, and notes. No I/O: the source plans from its record
        and the facts of its last sync."""
        if source is None:
            source = next(
                (
                    s
                    for s in self.config_store.current.sources
                    if s.source_id == item.source.source_id
                ),
                None,
            )
        state = self.states.get(item.source.source_id)
        details = state.index.details if state and state.index else {}
        implementation = SOURCES[item.source.source_type]
        return implementation.plan(item.record, (source.config if source else None) or {}, details)

    def candidate(
        self, item: Scored, source: SourceConfig | None, resolution: Resolution
    ) -> Candidate:
        record = item.record
        plan = self.launch_plan(item, source)
        command = shlex.join(plan.argv)
        verified = item.source.verified or record.extra_value("verified") == "true"
        # sources that can prove what runs (a pinned sha256, a digest) keep it in the record
        integrity = record.extra_value("integrity")
        notes = list(plan.notes)
        if plan.requirements:
            notes.append(f"{len(plan.requirements)} missing requirement(s)")
        danger = destructive.classify(record.name, plan.argv)
        # a destructive candidate gets no ready-to-follow run link: the client writes the
        # pick=id itself (hoodyd.apps.destructive)
        href_path = (
            None
            if danger
            else f"{RUN_BASE}/run?app={quote(resolution.selector.app, safe='')}"
            f"&pick=id&candidate_id={quote(item.candidate_id, safe='')}"
        )
        return Candidate(
            candidate_id=item.candidate_id,
            title=record.title,
            description=record.description,
            provider=item.source.provider,
            source_id=item.source.source_id,
            score=item.score,
            kind=record.kind,
            installed=record.installed,
            version=record.version or None,
            homepage=record.homepage or None,
            tags=list(record.tags) or None,
            reasons=item.reasons,
            integrity=msgspec.json.decode(integrity, type=Integrity) if integrity else None,
            run_plan=RunPlan(command=command, env=plan.env),
            execution_plan=ExecutionPlan(
                mode="argv",
                argv=plan.argv,
                shell_command=command,
                env=plan.env,
                side_effect_hints=[danger.hint()] if danger else None,
            ),
            provenance=CandidateProvenance(
                match_kind=item.match.tier,
                matched_value=item.match.key,
                match_evidence=item.evidence,
                score_components=item.components,
                verification=Verification(
                    verified=verified,
                    status="trusted-source" if verified else "unverified",
                ),
                provider_notes=notes or None,
            ),
            verified=verified,
            shell_command=command,
            href_path=href_path,
            requirements=plan.requirements,
        )


def _lower_priority() -> None:
    with contextlib.suppress(OSError):  # Linux: a thread id names just that thread
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), SYNC_NICENESS)


def _merge_policy(base: PolicyConfig | None, override: PolicyConfig | None) -> PolicyConfig:
    merged = msgspec.to_builtins(base or PolicyConfig())
    for key, value in msgspec.to_builtins(override or PolicyConfig()).items():
        if key in ("deny_providers", "deny_source_ids"):
            merged[key] = sorted(set(merged.get(key, [])) | set(value))
        else:
            merged[key] = value
    return msgspec.convert(merged, PolicyConfig)


_key_encoder = msgspec.json.Encoder(order="deterministic")


def _selector_key(resolution: Resolution) -> bytes:
    """The search-relevant fields of a resolved selector, canonically encoded."""
    selector = resolution.selector
    relevant = {
        name: getattr(selector, name)
        for name in SELECTOR_FIELDS
        if name
        not in (
            "limit",
            "pick",
            "pick_index",
            "candidate_id",
            "set_id",
            "terminal_id",
            "display",
            "origin",
            "format",
            "redirect",
            "redirect_to",
            "dry_run",
            "print_curl",
        )
        and not name.startswith("defer_")
    }
    relevant["profile"] = resolution.profile.name if resolution.profile else None
    return _key_encoder.encode(relevant)


class _RequestIdOnly(msgspec.Struct):
    request_id: str = ""


def _request_id(raw: msgspec.Raw) -> str:
    try:
        return msgspec.json.decode(bytes(raw), type=_RequestIdOnly).request_id
    except (msgspec.DecodeError, msgspec.ValidationError):
        return ""
