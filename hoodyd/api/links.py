"""The API paths run answers link to, made here at the edge and handed to the run planner
(`hoodyd.apps.candidates.Links`): services deal in ids, only the edge knows URLs."""

from __future__ import annotations

from urllib.parse import quote

from hoodyd.apps.candidates import Links

RUN_BASE = "/api/v1/run"
TERMINAL_BASE = "/api/v1/terminal"


def candidate_run_path(app: str, candidate_id: str) -> str:
    """A candidate's `href_path`: the `/resolve` that picks it by its id and answers its
    command (the route both client generations can follow; it never runs anything)."""
    picked = quote(candidate_id, safe="")
    return f"{RUN_BASE}/resolve?app={quote(app, safe='')}&pick=id&candidate_id={picked}"


def terminal_view_path(terminal_id: int) -> str:
    return f"{RUN_BASE}/t/{terminal_id}/view"


def terminal_execute_path(terminal_id: int) -> str:
    return f"{TERMINAL_BASE}/execute?terminal_id={terminal_id}"


API_LINKS = Links(
    candidate_run=candidate_run_path,
    terminal_view=terminal_view_path,
    terminal_execute=terminal_execute_path,
)
