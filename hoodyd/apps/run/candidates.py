"""Ranked records turned into wire candidates: each one's launch plan (argv, requirements,
notes), command, verification, provenance and destructive mark.

Only the items asked for are planned: a search plans the candidates it lists, a pick only
the one it picked. A candidate's run link (`href_path`) is made by the caller's `RunLink`,
because the edge, not this service, knows the routes.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import msgspec

from hoodyd.apps.catalog.catalog import Catalog
from hoodyd.apps.catalog.records import LaunchPlan
from hoodyd.apps.catalog.sources import SOURCES
from hoodyd.apps.catalog.syncer import Syncer
from hoodyd.apps.run import destructive, planner
from hoodyd.apps.search.ranking import Scored
from hoodyd.apps.search.resolution import Resolution, search_query
from hoodyd.schemas.run import (
    Candidate,
    CandidateProvenance,
    ExecutionPlan,
    Integrity,
    RunPlan,
    RuntimeConfig,
    SourceConfig,
    Verification,
)

# the path that reproduces a candidate picked by id: (the query pairs of the search it was
# found in, candidate id) -> path
RunLink = Callable[[list[tuple[str, str]], str], str]

# ranked lists whose answered candidates are kept for the next answer of the same list
ANSWERED_LISTS = 64


@dataclass(frozen=True)
class Links:
    """The API paths a run answer links to, made by the HTTP edge (services know no URLs):
    the run that picks a candidate by id, a terminal's page, a terminal's execute call."""

    candidate_run: RunLink
    terminal_view: Callable[[int], str]
    terminal_execute: Callable[[int], str]


class CandidateBuilder:
    def __init__(self, catalog: Catalog, syncer: Syncer) -> None:
        self.catalog = catalog
        self.syncer = syncer
        # (id of a ranked list, run link) -> (that list, config, search query, candidates)
        self._answered: OrderedDict[
            tuple[int, RunLink | None],
            tuple[list[Scored], RuntimeConfig, tuple[object, ...], list[Candidate]],
        ] = OrderedDict()

    def build(
        self, items: Sequence[Scored], resolution: Resolution, run_link: RunLink | None = None
    ) -> list[Candidate]:
        return [self.candidate(item, resolution, run_link) for item in items]

    def build_answer(
        self, items: list[Scored], resolution: Resolution, run_link: RunLink | None = None
    ) -> list[Candidate]:
        """`build` for a search answer. A ranked list the search cache serves again (the
        same list object, so ranked on the same config and indexes, whose facts the plans
        read) gets the candidates built for it the first time: they are shared between
        answers and must not be changed."""
        key = (id(items), run_link)
        seen = self._answered.get(key)
        # the links and the commands (a GUI app's display) depend on more than the list
        asked = (
            tuple(search_query(resolution)),
            resolution.selector.display,
            resolution.selector.terminal_id,
        )
        if (
            seen is not None
            and seen[0] is items
            and seen[1] is resolution.config
            and seen[2] == asked
        ):
            self._answered.move_to_end(key)
            return seen[3]
        built = self.build(items, resolution, run_link)
        # the entry holds `items`, so its id cannot name another list while it is kept
        self._answered[key] = (items, resolution.config, asked, built)
        while len(self._answered) > ANSWERED_LISTS:
            self._answered.popitem(last=False)
        return built

    def launch_plan(self, item: Scored, source: SourceConfig | None = None) -> LaunchPlan:
        """How to launch a ranked item: argv (the planner joins it with `shlex.join`), the
        requirements to resolve first, and notes. No I/O: the source plans from its record
        and the facts of its last sync."""
        source_id = item.source.source_id
        if source is None:
            # a set made before its source was disabled: plan with the source's config now
            source = self.catalog.sources.find(source_id)
        implementation = SOURCES[item.source.source_type]
        # a match on one of the record's binaries runs that binary (procps found by `top`)
        executable = item.match.key if item.match_field == "binary" else None
        return implementation.plan(
            item.record,
            (source.config if source else None) or {},
            self.syncer.details(source_id),
            executable,
        )

    def candidate(
        self, item: Scored, resolution: Resolution, run_link: RunLink | None = None
    ) -> Candidate:
        record = item.record
        plan = self.launch_plan(item, resolution.source_config(item.source.source_id))
        kind = plan.kind or record.kind
        # the command as a run of this search would plan it: a GUI app gets the DISPLAY of
        # the terminal the selector names (the default one), as `planner.plan` does
        env = dict(plan.env or {})
        if kind == "gui":
            selector = resolution.selector
            terminal_id = selector.terminal_id or planner.DEFAULT_TERMINAL
            env["DISPLAY"] = planner.display_for(selector.display, terminal_id)
        command = planner.shell_command(plan.argv, env)
        verified = item.source.verified or record.extra_value("verified") == "true"
        # sources that can prove what runs (a pinned sha256, a digest) keep it in the record
        integrity = record.extra_value("integrity")
        notes = list(plan.notes)
        if plan.requirements:
            notes.append(f"{len(plan.requirements)} missing requirement(s)")
        danger = destructive.classify(record.name, plan.argv)
        # a destructive candidate gets no ready-to-follow run link: the client writes the
        # pick=id itself (hoodyd.apps.run.destructive)
        href_path = (
            run_link(search_query(resolution), item.candidate_id)
            if run_link is not None and danger is None
            else None
        )
        return Candidate(
            candidate_id=item.candidate_id,
            title=record.title,
            description=record.description,
            provider=item.source.provider,
            source_id=item.source.source_id,
            score=item.score,
            kind=kind,
            installed=record.installed,
            version=record.version or None,
            homepage=record.homepage or None,
            tags=list(record.tags) or None,
            reasons=item.reasons,
            integrity=msgspec.json.decode(integrity, type=Integrity) if integrity else None,
            run_plan=RunPlan(command=command, env=env or None),
            execution_plan=ExecutionPlan(
                mode="argv",
                argv=plan.argv,
                shell_command=command,
                env=env or None,
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
