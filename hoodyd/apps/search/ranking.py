"""Ranking: one explainable score per matched record.

The score is a sum of named components, each reported in `provenance.score_components`:

- match: exact name/binary 1000, exact title 950, prefix 800 minus 4 per extra character
  (down to 700), word 600 (name) / 550 (title, keywords), fuzzy 200 + 2 x rapidfuzz ratio
  (at most ~398). The tier gaps are wider than every bonus below together, except that an
  installed, high-priority long prefix match may pass a bare word match.
- installed +80: what runs now beats what must be installed first; an installed program
  asked for by its exact name or binary another +100, more than every bonus an uninstalled
  exact match can collect (priority 50, tags 30, hints 75), so it is always the top one.
- source priority: + priority / 2, clamped to 0..50 (the profile's override when it has one).
- auxiliary package (library, docs, -dev) -60.
- selector tags +10 per tag the record carries (max 30); provider hints (version, channel,
  variant, publisher, repo) +15 each when they match.

Equal scores put installed candidates first, then order by candidate id, so the same query
on the same index gives the same order.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field

from hoodyd.apps.catalog.index import FLAG_AUXILIARY, FLAG_INSTALLED, Match, words_of
from hoodyd.apps.catalog.records import AppRecord
from hoodyd.schemas.run import MatchEvidence, ScoreComponent, Selector, SourceKind

INSTALLED_BONUS = 80.0
EXACT_INSTALLED_BONUS = 100.0
AUXILIARY_PENALTY = -60.0
TAG_BONUS = 10.0
MAX_TAG_BONUS = 30.0
HINT_BONUS = 15.0


@dataclass(frozen=True, slots=True)
class RankedSource:
    """The facts of one enabled source that ranking needs."""

    source_id: str
    source_type: str
    provider: SourceKind
    priority: int
    priority_detail: str
    verified: bool


@dataclass(slots=True)
class Scored:
    candidate_id: str
    score: float
    record: AppRecord
    source: RankedSource
    match: Match
    match_field: str
    components: list[ScoreComponent] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    evidence: list[MatchEvidence] = field(default_factory=list)


def match_field(record: AppRecord, match: Match) -> str:
    key = match.key
    if record.name.lower() == key:
        return "name"
    if any(b.rsplit("/", 1)[-1].lower() == key for b in record.binaries):
        return "binary"
    if record.title.lower() == key:
        return "title"
    return "keywords" if match.tier == "word" else "name"


def match_score(match: Match, where: str) -> tuple[float, str]:
    if match.tier == "exact":
        if where == "title":
            return 950.0, f"exact {where} match"
        return 1000.0, f"exact {where} match"
    if match.tier == "prefix":
        return max(700.0, 800.0 - 4.0 * match.quality), f"{where} starts with the query"
    if match.tier == "word":
        if where == "name":
            return 600.0, "query is a word of the name"
        return 550.0, "query is a word of the title or keywords"
    return 200.0 + 2.0 * match.quality, f"fuzzy {where} match ({match.quality:.0f}%)"


# the first pass scores matches from the flag byte alone; for exact and word matches the
# score may be this much lower (exact title 950 vs 1000, keyword word 550 vs 600)
BASE_SLACK = 50.0


# no fuzzy match can outscore a prefix match (so a search that has `limit` exact or
# prefix matches need not look for fuzzy ones)
FUZZY_CEILING = 200.0 + 2 * 100 + INSTALLED_BONUS + 50 + MAX_TAG_BONUS + 5 * HINT_BONUS
PREFIX_FLOOR = 700.0 + AUXILIARY_PENALTY
assert PREFIX_FLOOR > FUZZY_CEILING


def max_bonus(selector: Selector) -> float:
    hints = sum(
        1
        for name in ("version", "channel", "variant", "publisher", "repo")
        if getattr(selector, name)
    )
    return (MAX_TAG_BONUS if selector.tags else 0.0) + HINT_BONUS * hints


def pins_allow(record: AppRecord, selector: Selector) -> bool:
    """The selector's `release` and `asset` pin the records that carry those facts (GitHub
    release records); records of other sources are not concerned. A release pin matches the
    tag with or without its leading `v`; an asset pin is a name or a glob pattern."""
    release = record.extra_value("release")
    if selector.release and release is not None and (
        release.removeprefix("v") != selector.release.removeprefix("v")
    ):
        return False
    asset = record.extra_value("asset")
    return not (
        selector.asset
        and asset is not None
        and asset != selector.asset
        and not fnmatch.fnmatchcase(asset, selector.asset)
    )


def first_pass(match: Match, flags: int, source: RankedSource) -> float:
    """An upper bound of `score` without the selector's bonuses, from the flag byte alone;
    `score` is at least this minus `first_pass_slack(match)`."""
    if match.tier == "exact":
        base = 1000.0
    elif match.tier == "word":
        base = 600.0
    else:
        base = match_score(match, "name")[0]
    if flags & FLAG_INSTALLED:
        base += INSTALLED_BONUS
        if match.tier == "exact":
            base += EXACT_INSTALLED_BONUS
    if flags & FLAG_AUXILIARY:
        base += AUXILIARY_PENALTY
    return base + float(min(50, max(0, source.priority // 2)))


def first_pass_slack(match: Match) -> float:
    if match.tier == "exact":
        # an exact title match gets neither the name's 50 nor the installed exact bonus
        return BASE_SLACK + EXACT_INSTALLED_BONUS
    return BASE_SLACK if match.tier == "word" else 0.0


def score(record: AppRecord, match: Match, source: RankedSource, selector: Selector) -> Scored:
    if match.tier == "word":
        in_name = set(words_of(match.key)) <= set(words_of(record.name))
        where = "name" if in_name else "keywords"
    else:
        where = match_field(record, match)
    base, why = match_score(match, where)
    scored = Scored(
        candidate_id=f"{source.source_id}:{record.ident}",
        score=0.0,
        record=record,
        source=source,
        match=match,
        match_field=where,
    )
    scored.evidence.append(MatchEvidence(field=where, kind=match.tier, value=match.key))
    add = _adder(scored)
    add("match", base, why)
    if record.installed:
        add("installed", INSTALLED_BONUS, "installed on this machine")
        if match.tier == "exact" and where in ("name", "binary"):
            add(
                "installed exact",
                EXACT_INSTALLED_BONUS,
                f"the installed program named {match.key}",
            )
    priority = float(min(50, max(0, source.priority // 2)))
    if priority:
        add("source priority", priority, source.priority_detail)
    if record.auxiliary:
        add("auxiliary package", AUXILIARY_PENALTY, "library, documentation or development package")
    if selector.tags:
        wanted = {t.lower() for t in selector.tags}
        have = {t.lower() for t in record.tags} | {k.lower() for k in record.keywords}
        common = sorted(wanted & have)
        if common:
            add("tags", min(MAX_TAG_BONUS, TAG_BONUS * len(common)), "tags " + ", ".join(common))
            for tag in common:
                scored.evidence.append(MatchEvidence(field="tags", kind="tag", value=tag))
    for hint, value in (
        ("version", record.version),
        ("channel", record.channel),
        ("variant", record.variant),
        ("publisher", record.publisher),
        ("repo", record.repo),
    ):
        wanted_value = getattr(selector, hint)
        if wanted_value and value and _hint_matches(wanted_value, value):
            add(f"{hint} hint", HINT_BONUS, f"{hint} {value}")
            scored.evidence.append(MatchEvidence(field=hint, kind="hint", value=value))
    scored.score = round(sum(c.delta for c in scored.components), 3)
    return scored


def _hint_matches(wanted: str, value: str) -> bool:
    wanted, value = wanted.lower(), value.lower()
    return value == wanted or value.startswith(wanted.rstrip("*"))


def _adder(scored: Scored) -> Callable[[str, float, str], None]:
    def add(label: str, delta: float, detail: str) -> None:
        scored.components.append(ScoreComponent(label=label, delta=delta, detail=detail))
        scored.reasons.append(detail if label == "match" else f"{label}: {detail}")

    return add


def rank(items: list[Scored]) -> list[Scored]:
    """Highest score first; equal scores installed first, then by candidate id: a total,
    stable order."""
    return sorted(items, key=lambda s: (-s.score, not s.record.installed, s.candidate_id))
