"""The API paths run answers link to, made here at the edge and handed to the run planner
(`hoodyd.apps.run.candidates.Links`): services deal in ids, only the edge knows URLs."""

from __future__ import annotations

from urllib.parse import quote, urlencode

from hoodyd.apps.run.candidates import Links

RUN_BASE = "/api/v1/run"
TERMINAL_BASE = "/api/v1/terminal"


def candidate_run_path(search: list[tuple[str, str]], candidate_id: str) -> str:
    """A candidate's `href_path`: the `/resolve` that repeats the search it was found in
    (app, profile, filters) and picks it by its id, which finds it whatever its rank or page;
    it answers its command (the route both client generations follow; it never runs)."""
    query = urlencode(
        [*search, ("pick", "id"), ("candidate_id", candidate_id)], safe="", quote_via=quote
    )
    return f"{RUN_BASE}/resolve?{query}"


def terminal_view_path(terminal_id: int) -> str:
    return f"{RUN_BASE}/t/{terminal_id}/view"


def terminal_execute_path(terminal_id: int) -> str:
    return f"{TERMINAL_BASE}/execute?terminal_id={terminal_id}"


API_LINKS = Links(
    candidate_run=candidate_run_path,
    terminal_view=terminal_view_path,
    terminal_execute=terminal_execute_path,
)
