"""AppService: the run area's one entry point for the edge and the run planner — runtime
configuration, source syncs, ranked search, candidate sets and paging, recipes.

A facade: each job lives in its own module and is reached from here —
`catalog` (sources, profiles, recipes), `syncer` (sync jobs, indexes, diagnostics),
`resolution` (selector → policy → sources), `search` (ranking into candidate sets),
`candidates` (ranked items as wire candidates). What one edit means across them (a new
source is synced, a deleted one loses its index) is decided here.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from hoodyd.apps.catalog.catalog import Catalog
from hoodyd.apps.catalog.jobs import JobHandle, JobStore
from hoodyd.apps.catalog.runtime_config import RuntimeConfigStore
from hoodyd.apps.catalog.syncer import Syncer
from hoodyd.apps.run.candidates import CandidateBuilder, RunLink
from hoodyd.apps.search.candidate_sets import CandidateSet, CandidateSetStore, encode_cursor
from hoodyd.apps.search.ranking import Scored
from hoodyd.apps.search.resolution import Resolution, recipe_selector
from hoodyd.apps.search.search import Found, Searcher
from hoodyd.config import TOKEN_VARIABLE, RunConfig
from hoodyd.schemas.run import (
    Candidate,
    Job,
    PagedSearchRequest,
    PagedSearchResponse,
    ProfileConfig,
    ProfilePatch,
    RecipeConfig,
    RecipeExecutionRequest,
    RecipePatch,
    RuntimeConfig,
    RunWarning,
    SearchResponse,
    SelectedProfile,
    Selector,
    SourceConfig,
    SourceDiagnostics,
    SourcePatch,
)

DEFAULT_PAGE_SIZE = 25


class AppService:
    def __init__(
        self,
        state_dir: Path,
        settings: RunConfig,
        *,
        environ: Mapping[str, str] | None = None,
        pass_env: Sequence[str] = (),
    ) -> None:
        self.settings = settings
        # what sources read their settings from (PATH, HOME, a GitHub source's token_env),
        # never the token; the catalogue tools they run as hoodyd's own account (apt-get,
        # nix) get an environment built from it (`SyncContext.tool_environ`): the base of
        # every child, `server.pass_env` and the tool's own settings, never the rest
        self.environ = {
            key: value
            for key, value in (os.environ if environ is None else environ).items()
            if key != TOKEN_VARIABLE
        }
        self.config_store = RuntimeConfigStore(state_dir / "run" / "config.json")
        self.catalog = Catalog(self.config_store)
        self.jobs = JobStore()
        self.sets = CandidateSetStore(
            ttl=settings.candidate_set_ttl, max_sets=settings.max_candidate_sets
        )
        self.syncer = Syncer(
            self.catalog, self.jobs, state_dir / "index", settings, self.environ, pass_env=pass_env
        )
        self.searcher = Searcher(self.catalog, self.syncer, self.sets, settings)
        self.builder = CandidateBuilder(self.catalog, self.syncer)

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Load the config and every cached index, then resync what is missing or stale."""
        config = await asyncio.to_thread(self.config_store.load, self.environ)
        await self.syncer.start(config)

    async def close(self) -> None:
        self.syncer.cancel()
        await self.jobs.close()
        self.syncer.close()

    # --- runtime configuration -----------------------------------------------------------

    def runtime_config(self) -> RuntimeConfig:
        return self.catalog.current

    def list_sources(self) -> list[SourceConfig]:
        return self.catalog.sources.all()

    async def add_source(self, source: SourceConfig) -> list[SourceConfig]:
        sources = await self.catalog.sources.add(source)
        self.syncer.added(source)
        return sources

    async def patch_source(self, source_id: str, patch: SourcePatch) -> SourceConfig:
        before = self.catalog.sources.get(source_id)
        after = await self.catalog.sources.patch(source_id, patch)
        self.syncer.changed(before, after)
        return after

    async def delete_source(self, source_id: str) -> None:
        await self.catalog.sources.delete(source_id)
        await self.syncer.removed(source_id)

    def list_profiles(self) -> list[ProfileConfig]:
        return self.catalog.profiles.all()

    async def add_profile(self, profile: ProfileConfig) -> list[ProfileConfig]:
        return await self.catalog.profiles.add(profile)

    async def patch_profile(self, name: str, patch: ProfilePatch) -> ProfileConfig:
        return await self.catalog.profiles.patch(name, patch)

    async def delete_profile(self, name: str) -> None:
        await self.catalog.profiles.delete(name)

    async def select_profile(self, name: str) -> SelectedProfile:
        return await self.catalog.select_profile(name)

    def list_recipes(self) -> list[RecipeConfig]:
        return self.catalog.recipes.all()

    def get_recipe(self, name: str) -> RecipeConfig:
        return self.catalog.recipes.get(name)

    async def add_recipe(self, recipe: RecipeConfig) -> list[RecipeConfig]:
        return await self.catalog.recipes.add(recipe)

    async def patch_recipe(self, name: str, patch: RecipePatch) -> RecipeConfig:
        return await self.catalog.recipes.patch(name, patch)

    async def delete_recipe(self, name: str) -> None:
        await self.catalog.recipes.delete(name)

    def recipe_selector(self, name: str, request: RecipeExecutionRequest) -> Selector:
        """The recipe's template with the request's allowed overrides."""
        return recipe_selector(self.catalog.recipes.get(name), request)

    # --- sync ----------------------------------------------------------------------------

    def sync_source(self, source_id: str) -> Job:
        return self.syncer.sync_source(source_id)

    def sync_all(self) -> Job:
        return self.syncer.sync_all()

    async def job(self, job_id: str, *, wait: bool, timeout_ms: int) -> Job:
        return await self.jobs.get(job_id, wait=wait, timeout_ms=timeout_ms)

    def diagnostics(self, source_id: str) -> SourceDiagnostics:
        return self.syncer.diagnostics(source_id)

    def source_failures(self, source_ids: Iterable[str]) -> dict[str, str]:
        """The sources among `source_ids` left without records by a failed sync, each with
        its last error (why a search over them found nothing)."""
        return self.syncer.failures(source_ids)

    # --- search --------------------------------------------------------------------------

    def resolve(self, selector: Selector) -> Resolution:
        """Apply the profile's defaults and the policy to a selector."""
        return self.searcher.resolve(selector)

    def find(self, resolution: Resolution) -> Found:
        """The candidate set a pick reads: the one `set_id` names, else a new search's."""
        return self.searcher.find(resolution)

    def lookup(self, resolution: Resolution, candidate_id: str) -> Scored | None:
        """A candidate by its id from the current indexes, whatever its rank."""
        return self.searcher.lookup(resolution, candidate_id)

    def synced_at(self, source_id: str) -> float | None:
        """When the current index of a source was synced (None: it has none)."""
        index = self.syncer.index(source_id)
        return None if index is None else index.synced_at

    def candidates(
        self, items: Sequence[Scored], resolution: Resolution, run_link: RunLink | None = None
    ) -> list[Candidate]:
        """`items` as wire candidates; only these are planned."""
        return self.builder.build(items, resolution, run_link)

    def search(self, selector: Selector, *, run_link: RunLink | None = None) -> SearchResponse:
        return self._response(self.searcher.search(selector), run_link)

    async def settle(self) -> None:
        """Wait, at most `first_sync_wait_ms`, for the first syncs under way: right after a
        first start, a search waits for fast sources instead of answering empty."""
        await self.syncer.wait_first_syncs(self.settings.first_sync_wait_ms / 1000)

    def syncing_warnings(self, resolution: Resolution) -> list[RunWarning]:
        """A `SOURCE_SYNCING` warning per searched source whose first sync has not landed."""
        searched = [source.source_id for source, _ in resolution.sources]
        return [
            RunWarning(
                code="SOURCE_SYNCING",
                message=f"source {source_id} is still running its first sync: its records "
                f"are not searched yet (GET /api/v1/run/sources/{source_id}/diagnostics)",
                source_id=source_id,
            )
            for source_id in self.syncer.first_syncs_running(searched)
        ]

    async def search_settled(
        self, selector: Selector, *, run_link: RunLink | None = None
    ) -> SearchResponse:
        """A search after `settle`, saying which searched sources are still syncing."""
        await self.settle()
        found = self.searcher.search(selector)
        response = self._response(found, run_link)
        response.warnings = self.syncing_warnings(found.resolution) or None
        return response

    def _response(self, found: Found, run_link: RunLink | None) -> SearchResponse:
        # a repeated search answers the cached ranked list: its candidates are built once
        candidates = self.builder.build_answer(found.entry.items, found.resolution, run_link)
        return SearchResponse(set_id=found.entry.set_id, candidates=candidates)

    def search_paged(
        self, request: PagedSearchRequest, *, run_link: RunLink | None = None
    ) -> PagedSearchResponse:
        found, offset = self.searcher.page(request)
        entry = found.entry
        page = entry.items[offset : offset + (request.page_size or DEFAULT_PAGE_SIZE)]
        end = offset + len(page)
        return PagedSearchResponse(
            set_id=entry.set_id,
            total_count=len(entry.items),
            items=self.candidates(page, found.resolution, run_link),
            next_cursor=encode_cursor(entry.set_id, end) if end < len(entry.items) else None,
        )

    def start_search_job(self, selector: Selector, *, run_link: RunLink | None = None) -> Job:
        resolution = self.resolve(selector)  # a bad selector is a 400 now, not a failed job later

        async def body(handle: JobHandle) -> tuple[Any, Any]:
            return "search-response", self._response(self.searcher.searched(resolution), run_link)

        return self.jobs.start("search-resolve", body).job

    def recipe_search(
        self, name: str, request: RecipeExecutionRequest, *, run_link: RunLink | None = None
    ) -> SearchResponse:
        return self.search(self.recipe_selector(name, request), run_link=run_link)

    def candidate_set(self, set_id: str) -> CandidateSet | None:
        return self.sets.get(set_id)
