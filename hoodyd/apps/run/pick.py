"""The pick: a selector resolved once, its candidate set (a new search's, or the one
`set_id` names), and what the pick takes from it — the candidates listed (`ask`) or the one
chosen by `first`, `index` or `id`, checked against the policy and marked when destructive.

Only the candidates answered are planned. The failures a pick can end in (no candidates, a
source that could not be read, a destructive candidate not picked by id) are `RunFailed`,
whose error body is also a RunResponse.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog

from hoodyd.apps.run import destructive, policy
from hoodyd.apps.run.candidates import RunLink
from hoodyd.apps.search.candidate_sets import CandidateSet
from hoodyd.apps.search.ranking import Scored
from hoodyd.apps.search.resolution import Resolution
from hoodyd.apps.service import AppService
from hoodyd.errors import Conflict, InvalidRequest, Reason, RunFailed
from hoodyd.schemas.run import Candidate, Selector, SideEffectHint
from hoodyd.schemas.run_exec import EffectivePolicy, RunResponse, RunWarning

log = structlog.get_logger()


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


def choose(apps: AppService, selector: Selector, run_link: RunLink | None = None) -> Choice:
    """Resolve the selector once and pick from its candidate set: the listed candidates
    (pick=ask) or the one chosen, checked against the policy and marked when destructive."""
    resolution = apps.resolve(selector)
    selector = resolution.selector  # profile defaults applied (pick, terminal, display)
    mode = selector.pick or "ask"
    _check_pick_fields(selector, mode)
    effective = policy.effective(resolution.policy)
    entry = apps.find(resolution).entry
    choice = Choice(selector, resolution, effective, entry.set_id)
    choice.warnings.extend(apps.syncing_warnings(resolution))
    if not entry.items:
        _raise_if_sources_failed(apps, resolution, entry.set_id)
        message = f"no candidates for {selector.app!r}"
        syncing = [w.source_id for w in choice.warnings if w.code == "SOURCE_SYNCING"]
        if syncing:
            message += f" (still syncing, not searched yet: {', '.join(map(str, syncing))})"
        raise RunFailed(
            404,
            message,
            reason=Reason.NO_CANDIDATES,
            response=RunResponse(
                status="error",
                set_id=entry.set_id,
                error=message,
                warnings=choice.warnings or None,
            ),
        )
    if mode == "ask":
        listed = entry.items[: resolution.limit]
        choice.candidates = apps.candidates(listed, resolution, run_link)
        return choice
    item = _picked(apps, choice, entry, mode)
    if mode == "first" and item.match.tier != "exact":
        _refuse_while_syncing(apps, choice, entry, run_link)
    [choice.selected] = apps.candidates([item], resolution, run_link)
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


def _picked(apps: AppService, choice: Choice, entry: CandidateSet, mode: str) -> Scored:
    """The ranked item the pick takes. By id without a set it is found whatever its rank
    (a link handed out for rank 300 of a `limit=100` search or a later page reproduces its
    candidate); from a set whose source has re-synced since, it is re-resolved by id."""
    selector = choice.selector
    if mode == "id" and selector.set_id is None:
        wanted = selector.candidate_id
        assert wanted is not None
        found = next((item for item in entry.items if item.candidate_id == wanted), None)
        if found is None:
            found = apps.lookup(choice.resolution, wanted)
        if found is None:
            raise InvalidRequest(
                f"unknown candidate_id: {wanted} (no searched source offers it for "
                f"{selector.app!r} with these filters)",
                reason=Reason.INVALID_PICK,
            )
        return found
    item = entry.items[_pick_position(entry, selector, mode)]
    if selector.set_id is not None:
        item = _fresh(apps, choice, entry, item)
    return item


def _fresh(apps: AppService, choice: Choice, entry: CandidateSet, item: Scored) -> Scored:
    """A set's item as the current index has it. When its source re-synced after the set was
    made, the same candidate id is resolved again (with a `SET_STALE` warning naming the
    change); a candidate the source no longer offers is a 409 that names the change."""
    source_id = item.source.source_id
    then, now = entry.synced.get(source_id), apps.synced_at(source_id)
    if then is None or now == then:
        return item
    change = (
        f"source {source_id} re-synced since set {entry.set_id} was made "
        f"(index of {_when(then)}, now {_when(now)})"
        if now is not None
        else f"source {source_id} has no index any more since set {entry.set_id} was made"
    )
    fresh = apps.lookup(choice.resolution, item.candidate_id) if now is not None else None
    if fresh is None:
        log.info("run_pick_set_stale", candidate_id=item.candidate_id, source_id=source_id)
        raise Conflict(
            f"{change}: {item.candidate_id} is no longer offered; search again",
            reason=Reason.SET_STALE,
        )
    choice.warnings.append(
        RunWarning(
            code="SET_STALE",
            message=f"{change}: {item.candidate_id} was resolved again from the current index",
            source_id=source_id,
        )
    )
    return fresh


def _when(stamp: float | None) -> str:
    if stamp is None:
        return "never"
    return datetime.fromtimestamp(stamp, tz=UTC).isoformat(timespec="milliseconds")


def _raise_if_sources_failed(apps: AppService, resolution: Resolution, set_id: str) -> None:
    """No candidates because a source that was asked could not be read is a 502 that
    names the source and its error, not a plain "no candidates"."""
    failed = apps.source_failures(source.source_id for source, _ in resolution.sources)
    if failed:
        named = "; ".join(f"{source_id}: {error}" for source_id, error in failed.items())
        message = f"source resolution failed ({named})"
        raise RunFailed(
            502,
            message,
            reason=Reason.SOURCE_RESOLUTION_FAILED,
            response=RunResponse(status="error", set_id=set_id, error=message),
        )


def _refuse_while_syncing(
    apps: AppService, choice: Choice, entry: CandidateSet, run_link: RunLink | None
) -> None:
    """`pick=first` on a top candidate that is not an exact match, while a searched source
    still runs its first sync (after the bounded wait of `settle`), is a 409: that source may
    hold the exact match (`htop` must not run `/usr/bin/top` in the first seconds after
    start-up). The answer lists the candidates found so far; once synced, the pick runs."""
    syncing = [w.source_id for w in choice.warnings if w.code == "SOURCE_SYNCING"]
    if not syncing:
        return
    top = entry.items[0]
    message = (
        f"no exact match for {choice.selector.app!r} yet, and {', '.join(map(str, syncing))} "
        f"still runs its first sync: pick=first would take {top.candidate_id} "
        f"({top.match.tier} match); ask again once the sync lands, or pick by id"
    )
    listed = apps.candidates(entry.items[: choice.resolution.limit], choice.resolution, run_link)
    log.info("run_pick_waits_for_sync", app=choice.selector.app, sources=syncing)
    raise RunFailed(
        409,
        message,
        reason=Reason.SOURCE_SYNCING,
        response=RunResponse(
            status="error",
            set_id=entry.set_id,
            candidates=listed,
            error=message,
            warnings=choice.warnings or None,
        ),
    )


def destructive_refusal(choice: Choice) -> RunFailed[RunResponse]:
    """A destructive candidate reached by `first` or `index` (a fuzzy query included) is a
    403 that names it; nothing is scheduled (hoodyd.apps.run.destructive)."""
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
            f"pick_index is only used with pick=index (got pick={mode})", reason=Reason.INVALID_PICK
        )
    if selector.candidate_id is not None and mode != "id":
        raise InvalidRequest(
            f"candidate_id is only used with pick=id (got pick={mode})", reason=Reason.INVALID_PICK
        )
    if mode == "index" and selector.pick_index is None:
        raise InvalidRequest("pick=index needs pick_index", reason=Reason.INVALID_PICK)
    if mode == "id" and not selector.candidate_id:
        raise InvalidRequest("pick=id needs candidate_id", reason=Reason.INVALID_PICK)


def _pick_position(entry: CandidateSet, selector: Selector, mode: str) -> int:
    if mode == "first":
        return 0
    if mode == "index":
        assert selector.pick_index is not None
        if selector.pick_index >= len(entry.items):
            raise InvalidRequest(
                f"pick_index out of range: {selector.pick_index}", reason=Reason.INVALID_PICK
            )
        return selector.pick_index
    for position, item in enumerate(entry.items):
        if item.candidate_id == selector.candidate_id:
            return position
    raise InvalidRequest(
        f"unknown candidate_id: {selector.candidate_id} (not in set {entry.set_id})",
        reason=Reason.INVALID_PICK,
    )
