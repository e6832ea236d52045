"""Small self-contained HTML pages for the run area: the candidate list (each candidate a
link that picks it by set and index), the answer of a run (the scheduled command, its
terminal and its live output), a terminal's view, and errors.

No external assets: inline CSS and, on the run page, a few lines of inline script that
follow the command's result. Every piece of text is HTML-escaped; links are built with
`urlencode`.
"""

from __future__ import annotations

import html
import re
from urllib.parse import urlencode

from hoodyd.apps.destructive import marked
from hoodyd.schemas.run import Candidate, Selector
from hoodyd.schemas.run_exec import RunResponse
from hoodyd.schemas.terminal import CommandResult

RUN_PATH = "/api/v1/run/run"
# no external assets: only inline styles and scripts, fetches to this same origin
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'"
)
_ANSI = re.compile(r"\x1b(?:\[[0-9;?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")

_STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:60rem;padding:0 1rem;
color:#1d1d1f;background:#fafafa}
h1{font-size:1.3rem}code,pre{font:13px/1.4 ui-monospace,monospace}
pre{background:#111;color:#eee;padding:.8rem;overflow:auto;border-radius:6px;white-space:pre-wrap}
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.35rem .5rem;
border-bottom:1px solid #ddd;vertical-align:top}.muted{color:#666}.error{color:#b00020}
.status{display:inline-block;padding:.1rem .5rem;border-radius:4px;background:#e8eefc}
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _page(title: str, body: str, *, refresh: int | None = None) -> str:
    meta = f'<meta http-equiv="refresh" content="{refresh}">' if refresh else ""
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"{meta}<title>{_e(title)}</title><style>{_STYLE}</style></head>"
        f"<body>{body}</body></html>"
    )


def _carried(selector: Selector) -> list[tuple[str, str]]:
    """Target fields a pick link keeps (where to run), so the pick lands the same way."""
    out: list[tuple[str, str]] = []
    for name in ("terminal_id", "display", "origin", "dry_run"):
        value = getattr(selector, name)
        if value is not None:
            out.append((name, str(value).lower() if isinstance(value, bool) else str(value)))
    return out


def pick_link(selector: Selector, set_id: str, index: int) -> str:
    query = [
        ("app", selector.app),
        ("set_id", set_id),
        ("pick", "index"),
        ("pick_index", str(index)),
        *_carried(selector),
        ("format", "html"),
    ]
    return f"{RUN_PATH}?{urlencode(query)}"


def candidates_page(response: RunResponse, selector: Selector) -> str:
    rows = []
    for index, candidate in enumerate(response.candidates or []):
        link = pick_link(selector, response.set_id or "", index)
        rows.append(
            f'<tr><td>{index}</td><td><a href="{_e(link)}">{_e(candidate.title)}</a>'
            f"<div class=muted>{_e(candidate.description)}</div></td>"
            f"<td><code>{_e(candidate.candidate_id)}</code><br>"
            f"<span class=muted>{_e(candidate.provider)} · score {candidate.score:.1f}"
            f"{'' if candidate.installed else ' · not installed'}"
            f"{' · destructive: runs only when picked by id' if marked(candidate) else ''}"
            "</span></td>"
            f"<td><code>{_e(candidate.shell_command or candidate.run_plan.command)}</code>"
            "</td></tr>"
        )
    body = (
        f"<h1>Run {_e(selector.app)}: pick a candidate</h1>"
        f"<p class=muted>set {_e(response.set_id)} · links pick by set and index</p>"
        "<table><tr><th>#</th><th>App</th><th>Candidate</th><th>Command</th></tr>"
        f"{''.join(rows)}</table>"
    )
    return _page(f"Run {selector.app}", body)


def run_page(response: RunResponse) -> str:
    selected: Candidate | None = response.selected
    title = selected.title if selected else "run"
    parts = [
        f"<h1>{_e(title)} <span class=status>{_e(response.status)}</span></h1>",
    ]
    if selected is not None:
        parts.append(f"<p class=muted><code>{_e(selected.candidate_id)}</code></p>")
    if response.shell_command:
        parts.append(f"<h2>Command</h2><pre>{_e(response.shell_command)}</pre>")
    if response.curl:
        parts.append(f"<h2>curl</h2><pre>{_e(response.curl)}</pre>")
    for warning in response.warnings or []:
        parts.append(f"<p class=error>{_e(warning.code)}: {_e(warning.message)}</p>")
    handoff = response.handoff
    if response.status == "scheduled" and handoff is not None:
        parts.append(
            f"<p>Terminal {handoff.terminal_id} · display {_e(handoff.display)} · command "
            f'{_e(handoff.command_id)} · <a href="{_e(handoff.terminal_url)}">terminal view</a>'
            "</p><h2>Output <span id=state class=status>queued</span></h2><pre id=out></pre>"
            + _follow_script(handoff.command_id or "")
        )
    return _page(title, "".join(parts))


def _follow_script(command_id: str) -> str:
    # the command id is digits (the terminal service allocates it); escaped anyway
    return (
        "<script>(function(){var id=" + _js_string(command_id) + ";"
        "function tick(){fetch('/api/v1/terminal/result/'+id).then(function(r){return r.json()})"
        ".then(function(j){document.getElementById('state').textContent=j.status||'?';"
        "document.getElementById('out').textContent=j.stdout||'';"
        "if(['completed','failed','timed_out'].indexOf(j.status)<0)setTimeout(tick,1000)})"
        ".catch(function(){setTimeout(tick,2000)})}tick()})()</script>"
    )


def _js_string(value: str) -> str:
    return '"' + "".join(c if c.isalnum() else f"\\u{ord(c):04x}" for c in value) + '"'


def terminal_page(terminal_id: int, state: str, history: list[CommandResult], output: str) -> str:
    rows = "".join(
        f"<tr><td>{_e(item.command_id)}</td><td><code>{_e(item.command)}</code></td>"
        f"<td>{_e(item.status)}</td><td>{_e(item.exit_code if item.exit_code is not None else '')}"
        "</td></tr>"
        for item in reversed(history)
    )
    body = (
        f"<h1>Terminal {terminal_id} <span class=status>{_e(state)}</span></h1>"
        "<p class=muted>refreshes every 2 s</p>"
        f"<h2>Output</h2><pre>{_e(strip_ansi(output))}</pre>"
        "<h2>Commands</h2><table><tr><th>id</th><th>command</th><th>status</th><th>exit</th></tr>"
        f"{rows}</table>"
    )
    return _page(f"Terminal {terminal_id}", body, refresh=2)


def error_page(status: int, message: str, reason: str) -> str:
    body = (
        f"<h1 class=error>Error {status}</h1><p>{_e(message)}</p>"
        f"<p class=muted><code>{_e(reason)}</code></p>"
    )
    return _page(f"Error {status}", body)


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text).replace("\r", "")
