"""Ranked search over the in-memory indexes: a selector is resolved once and its search
stored as a candidate set, and both are returned together, so a request never resolves or
searches twice (nor reads back the set it just stored).

Launchers repeat the same queries, so the ranked items of recent searches are kept
(`RankedCache`), by normalized selector and depth, each valid only while the runtime config
it was resolved under and the index of every source it read are the current ones: a source
sync (which is also how an install reaches the records), a source added or removed, or any
settings edit (sources, profiles, policy) makes the next search rank afresh. Every search
still gets a new candidate set.
"""

from __future__ import annotations

import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass

from hoodyd.apps.catalog.catalog import Catalog
from hoodyd.apps.catalog.index import Match, SourceIndex, flags_allow
from hoodyd.apps.catalog.syncer import Syncer
from hoodyd.apps.search.candidate_sets import (
    CandidateSet,
    CandidateSetStore,
    decode_cursor,
    expired,
)
from hoodyd.apps.search.grouping import group_duplicates
from hoodyd.apps.search.ranking import (
    RankedSource,
    Scored,
    first_pass,
    first_pass_slack,
    max_bonus,
    pins_allow,
    rank,
    score,
)
from hoodyd.apps.search.resolution import Resolution, resolve, selector_key
from hoodyd.config import RunConfig
from hoodyd.errors import Conflict, InvalidRequest, Reason
from hoodyd.schemas.run import PagedSearchRequest, RuntimeConfig, Selector

# bounds of the ranked-items cache: entries, and items over all entries (a paged search keeps
# up to `paged_cap` items; the lists are shared with the candidate sets holding them)
RANKED_CACHE_ENTRIES = 256
RANKED_CACHE_ITEMS = 20_000


@dataclass(frozen=True)
class Found:
    """A resolved selector and the candidate set searched for it (or the one it names)."""

    resolution: Resolution
    entry: CandidateSet


@dataclass(frozen=True, slots=True)
class _Ranked:
    config: RuntimeConfig
    # weak: an entry left stale by a sync must not keep the replaced index (tens of MB) alive
    indexes: tuple[weakref.ref[SourceIndex] | None, ...]
    items: list[Scored]


class RankedCache:
    """The ranked items of recent searches by (selector key, depth), least recently used
    dropped first. An entry answers only under the very config object and index objects it
    was ranked from: edits replace the config and syncs swap in new indexes, never in place."""

    def __init__(
        self, *, max_entries: int = RANKED_CACHE_ENTRIES, max_items: int = RANKED_CACHE_ITEMS
    ) -> None:
        self.max_entries = max_entries
        self.max_items = max_items
        self._entries: OrderedDict[tuple[bytes, int], _Ranked] = OrderedDict()
        self._items = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(
        self,
        key: tuple[bytes, int],
        config: RuntimeConfig,
        indexes: tuple[SourceIndex | None, ...],
    ) -> list[Scored] | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.config is not config or not _same(entry.indexes, indexes):
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry.items

    def put(
        self,
        key: tuple[bytes, int],
        config: RuntimeConfig,
        indexes: tuple[SourceIndex | None, ...],
        items: list[Scored],
    ) -> None:
        if len(items) > self.max_items:
            return
        self._drop(key)
        refs = tuple(None if index is None else weakref.ref(index) for index in indexes)
        self._entries[key] = _Ranked(config, refs, items)
        self._items += len(items)
        while len(self._entries) > self.max_entries or self._items > self.max_items:
            self._drop(next(iter(self._entries)))

    def _drop(self, key: tuple[bytes, int]) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._items -= len(entry.items)


def _same(
    refs: tuple[weakref.ref[SourceIndex] | None, ...], indexes: tuple[SourceIndex | None, ...]
) -> bool:
    if len(refs) != len(indexes):
        return False
    return all(
        (index is None) if ref is None else ref() is index
        for ref, index in zip(refs, indexes, strict=True)
    )


class Searcher:
    def __init__(
        self, catalog: Catalog, syncer: Syncer, sets: CandidateSetStore, settings: RunConfig
    ) -> None:
        self.catalog = catalog
        self.syncer = syncer
        self.sets = sets
        self.settings = settings
        self.cache = RankedCache()

    def resolve(self, selector: Selector) -> Resolution:
        return resolve(self.catalog, selector)

    def search(self, selector: Selector) -> Found:
        """Resolve the selector and store its best `limit` items as a new set."""
        return self.searched(self.resolve(selector))

    def searched(self, resolution: Resolution, cap: int | None = None) -> Found:
        key = selector_key(resolution)
        synced = self.synced(resolution)
        ranked = self.ranked(resolution, key, resolution.limit if cap is None else cap)
        return Found(resolution, self.sets.put(ranked, key, synced))

    def synced(self, resolution: Resolution) -> dict[str, float]:
        """When the index of each source the resolution searches was synced."""
        stamps: dict[str, float] = {}
        for source, _ in resolution.sources:
            index = self.syncer.index(source.source_id)
            if index is not None:
                stamps[source.source_id] = index.synced_at
        return stamps

    def lookup(self, resolution: Resolution, candidate_id: str) -> Scored | None:
        """The candidate `candidate_id` as the resolution's search would rank it, found in its
        source's current index without ranking the others: a candidate id names its source and
        record, so a pick by id reaches it from any rank, page or set. None when no searched
        source offers it for this query and these filters."""
        selector = resolution.selector
        pinned = bool(selector.release or selector.asset)
        for source, ranked in resolution.sources:
            prefix = f"{source.source_id}:"
            if not candidate_id.startswith(prefix):
                continue
            index = self.syncer.index(source.source_id)
            if index is None:
                continue
            ident = candidate_id[len(prefix) :]
            found = index.lookup(resolution.query, fuzzy=False)
            tried: set[int] = set()
            for fuzzy in (False, True):
                if fuzzy:
                    index.add_fuzzy(resolution.query, found)
                for position, match in found.items():
                    if position in tried:
                        continue
                    tried.add(position)
                    if not flags_allow(
                        index.flags[position], selector.kind, selector.os, selector.arch
                    ):
                        continue
                    record = index.record(position)
                    if record.ident != ident:
                        continue
                    if pinned and not pins_allow(record, selector):
                        return None
                    return score(record, match, ranked, selector)
        return None

    def ranked(self, resolution: Resolution, key: bytes, cap: int) -> list[Scored]:
        """`rank`, answered from the cache when the same search already ran on the same
        config and indexes (`key` is the resolution's `selector_key`)."""
        indexes = tuple(self.syncer.index(source.source_id) for source, _ in resolution.sources)
        cached = self.cache.get((key, cap), resolution.config, indexes)
        if cached is not None:
            return cached
        items = self.rank(resolution, cap)
        self.cache.put((key, cap), resolution.config, indexes, items)
        return items

    def find(self, resolution: Resolution) -> Found:
        """The set a pick reads: the one the selector's `set_id` names (a 409 once it has
        expired), else a new search's, so a pick by index lands on the item the client saw."""
        set_id = resolution.selector.set_id
        if set_id is None:
            return self.searched(resolution)
        entry = self.sets.get(set_id)
        if entry is None:
            raise Conflict(
                f"cursor set expired: candidate set {set_id!r} is unknown or has expired "
                "(sets are kept 300 s); search again",
                reason=Reason.CURSOR_SET_EXPIRED,
            )
        return Found(resolution, entry)

    def page(self, request: PagedSearchRequest) -> tuple[Found, int]:
        """A paged search's set and the offset its page starts at: a new set of up to
        `paged_cap` items without a cursor, else the cursor's set (same selector only)."""
        resolution = self.resolve(request.selector)
        if request.cursor is None:
            return self.searched(resolution, self.settings.paged_cap), 0
        set_id, offset = decode_cursor(request.cursor)
        entry = self.sets.get(set_id)
        if entry is None:
            raise expired()
        if entry.selector_key != selector_key(resolution):
            raise InvalidRequest(
                "cursor belongs to a search with another selector",
                reason=Reason.CURSOR_SELECTOR_MISMATCH,
            )
        return Found(resolution, entry), offset

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
        looked: list[tuple[SourceIndex, RankedSource, dict[int, Match], float]] = []
        strong = 0
        for source, ranked in resolution.sources:
            index = self.syncer.index(source.source_id)
            if index is None:
                continue
            started = time.perf_counter()
            found = index.lookup(query, fuzzy=False)
            strong += sum(
                1
                for position, match in found.items()
                if match.tier in ("exact", "prefix")
                and flags_allow(index.flags[position], kind, os_, arch)
            )
            looked.append((index, ranked, found, time.perf_counter() - started))
        # fuzzy matches cannot reach the top `cap` once it is full of exact/prefix ones
        fuzzy = strong < cap
        first: list[tuple[float, SourceIndex, Match, RankedSource]] = []
        for index, ranked, found, spent in looked:
            started = time.perf_counter()
            if fuzzy:
                index.add_fuzzy(query, found)
            flags = index.flags
            for position, match in found.items():
                if flags_allow(flags[position], kind, os_, arch):
                    first.append((first_pass(match, flags[position], ranked), index, match, ranked))
            spent += time.perf_counter() - started
            self.syncer.searched(ranked.source_id, round(spent * 1000, 3))
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
