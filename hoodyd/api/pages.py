"""Small HTML pages for the run area: the login form (and a logout form at the foot of every
other page), the search form with its candidate list (each candidate a POST form that picks
it by set and index: a link or a prefetch never runs anything), the answer of a run (the
scheduled command and its terminal), a terminal's live view, and errors.

No external assets: inline CSS, and the terminal view's xterm.js served by hoodyd itself
(`hoodyd/api/static`). Every piece of text is HTML-escaped; URLs are built with `urlencode`.
"""

from __future__ import annotations

import html

from aiohttp import web

from hoodyd.apps.run.destructive import marked
from hoodyd.schemas.run import Candidate, Selector
from hoodyd.schemas.run_exec import RunResponse, RunWarning
from hoodyd.schemas.terminal import CommandResult

RUN_PATH = "/api/v1/run/run"
SEARCH_PATH = "/api/v1/run/search"
LOGIN_PATH = "/api/v1/run/login"
LOGOUT_PATH = "/api/v1/run/logout"
STATIC_PATH = "/api/v1/run/static"
# no external assets: inline styles, scripts from this origin (xterm.js), connections (the
# terminal's WebSocket) and form posts to this same origin only
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self' 'unsafe-inline'; "
    "script-src 'self' 'unsafe-inline'; connect-src 'self'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)

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


def _page(title: str, body: str, *, logout: bool = True) -> str:
    # every page a session can see ends with the logout form (a post: a link never logs out)
    footer = (
        f'<footer><form method=post action="{LOGOUT_PATH}" class=logout>'
        "<button>Log out</button></form></footer>"
        if logout
        else ""
    )
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head>"
        f"<body>{body}{footer}</body></html>"
    )


def _carried(selector: Selector) -> list[tuple[str, str]]:
    """Target fields a pick link keeps (where to run), so the pick lands the same way."""
    out: list[tuple[str, str]] = []
    for name in ("terminal_id", "display", "origin", "dry_run"):
        value = getattr(selector, name)
        if value is not None:
            out.append((name, str(value).lower() if isinstance(value, bool) else str(value)))
    return out


def pick_fields(selector: Selector, set_id: str, index: int) -> list[tuple[str, str]]:
    """What a candidate's Run button posts: a pick by set and index, where to run it."""
    return [
        ("app", selector.app),
        ("set_id", set_id),
        ("pick", "index"),
        ("pick_index", str(index)),
        *_carried(selector),
    ]


def pick_form(selector: Selector, set_id: str, index: int) -> str:
    """A POST form (never a GET link: a link can be prefetched, and a GET must not run)."""
    hidden = "".join(
        f'<input type=hidden name="{_e(name)}" value="{_e(value)}">'
        for name, value in pick_fields(selector, set_id, index)
    )
    return f'<form method=post action="{RUN_PATH}">{hidden}<button>Run</button></form>'


def _search_form(app: str) -> str:
    return (
        f'<form method=get action="{SEARCH_PATH}" role=search>'
        f'<input type=hidden name=format value=html><input name=app value="{_e(app)}" '
        'aria-label=app placeholder="app name" required> <button>Search</button></form>'
    )


def html_response(text: str, status: int = 200) -> web.Response:
    response = web.Response(text=text, status=status, content_type="text/html")
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["Cache-Control"] = "no-store"
    return response


def search_page() -> str:
    return _page("Search apps", f"<h1>Search apps</h1>{_search_form('')}")


def _command_cell(candidate: Candidate) -> str:
    """The command, linked to the candidate's `href_path`: the `/resolve` that answers its
    command and never runs anything, so a plain link (and its prefetch) is safe."""
    code = f"<code>{_e(candidate.shell_command or candidate.run_plan.command)}</code>"
    if candidate.href_path is None:
        return code
    return f'<a href="{_e(candidate.href_path)}" title="resolve: the command only">{code}</a>'


def candidates_page(
    set_id: str,
    candidates: list[Candidate],
    selector: Selector,
    warnings: list[RunWarning] | None = None,
) -> str:
    rows = []
    for index, candidate in enumerate(candidates):
        # a destructive program is picked by its id only (hoodyd.apps.run.destructive): no button
        action = "" if marked(candidate) else pick_form(selector, set_id, index)
        rows.append(
            f"<tr><td>{index}</td><td>{_e(candidate.title)}{action}"
            f"<div class=muted>{_e(candidate.description)}</div></td>"
            f"<td><code>{_e(candidate.candidate_id)}</code><br>"
            f"<span class=muted>{_e(candidate.provider)} · score {candidate.score:.1f}"
            f"{'' if candidate.installed else ' · not installed'}"
            f"{' · destructive: runs only when picked by id' if marked(candidate) else ''}"
            "</span></td>"
            f"<td>{_command_cell(candidate)}</td></tr>"
        )
    notes = "".join(f"<p class=error>{_e(w.code)}: {_e(w.message)}</p>" for w in warnings or [])
    body = (
        f"{_search_form(selector.app)}<h1>Run {_e(selector.app)}: pick a candidate</h1>"
        f"<p class=muted>set {_e(set_id)} · each button picks by set and index</p>"
        f"{notes}<table><tr><th>#</th><th>App</th><th>Candidate</th><th>Command</th></tr>"
        f"{''.join(rows)}</table>"
    )
    return _page(f"Run {selector.app}", body)


def login_page(
    error: str | None = None, token_at: str | None = None, landing: str | None = None
) -> str:
    """The login form; `token_at` says where the person finds the token (never the token),
    `landing` the console page the login goes back to (already checked as a console path)."""
    problem = f"<p class=error>{_e(error)}</p>" if error else ""
    where = (
        f"<p>The token is in <code>{_e(token_at)}</code> on this machine "
        "(readable by hoodyd's own user only).</p>"
        if token_at
        else ""
    )
    body = (
        "<h1>hoodyd console</h1><p>Run this machine's programs, logs, terminals and apps from "
        "the browser. Type hoodyd's token once; the browser keeps a session until you log out "
        f"or leave it idle.</p>{where}"
        f'{problem}<form method=post action="{LOGIN_PATH}">'
        "<input type=password name=token aria-label=token autocomplete=current-password "
        "required> <button>Log in</button>"
        + (f'<input type=hidden name=next value="{_e(landing)}">' if landing else "")
        + "</form>"
    )
    return _page("hoodyd login", body, logout=False)


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
            f"{_e(handoff.command_id)}</p><h2>Output</h2>" + _live_terminal(handoff.terminal_id)
        )
    return _page(title, "".join(parts))


def _live_terminal(terminal_id: int) -> str:
    """The session's output, live: xterm.js (served by hoodyd) fed by the read-only
    WebSocket `/t/{id}/stream`, which replays the recent output first."""
    return (
        f'<link rel=stylesheet href="{STATIC_PATH}/xterm.css">'
        f'<div id=terminal data-terminal-id="{terminal_id}"></div>'
        f"<p class=muted>live <span id=live class=status>connecting</span></p>"
        f'<script src="{STATIC_PATH}/xterm.js"></script><script>{_TERMINAL_SCRIPT}</script>'
    )


# reads the terminal id from the page (no text is pasted into the script); read-only: the
# view never sends input
_TERMINAL_SCRIPT = (
    "(function(){var el=document.getElementById('terminal'),live=document.getElementById('live');"
    "var id=el.getAttribute('data-terminal-id');"
    "var term=new Terminal({convertEol:false,disableStdin:true,cols:120,rows:30,scrollback:5000});"
    "term.open(el);window.hoodydTerminal=term;"
    "var ws=new WebSocket((location.protocol==='https:'?'wss://':'ws://')+location.host+"
    "'/api/v1/run/t/'+encodeURIComponent(id)+'/stream');ws.binaryType='arraybuffer';"
    "ws.onopen=function(){live.textContent='live'};"
    "ws.onmessage=function(m){if(typeof m.data==='string'){var j=JSON.parse(m.data);"
    "if(j.type==='exit'){live.textContent='shell exited'}return}"
    "term.write(new Uint8Array(m.data))};"
    "ws.onclose=function(){if(live.textContent!=='shell exited')live.textContent='closed'};"
    "})()"
)


def terminal_page(terminal_id: int, state: str, history: list[CommandResult]) -> str:
    rows = "".join(
        f"<tr><td>{_e(item.command_id)}</td><td><code>{_e(item.command)}</code></td>"
        f"<td>{_e(item.status)}</td><td>{_e(item.exit_code if item.exit_code is not None else '')}"
        "</td></tr>"
        for item in reversed(history)
    )
    body = (
        f"<h1>Terminal {terminal_id} <span class=status>{_e(state)}</span></h1>"
        f"{_live_terminal(terminal_id)}"
        "<h2>Commands</h2><table><tr><th>id</th><th>command</th><th>status</th><th>exit</th></tr>"
        f"{rows}</table>"
    )
    return _page(f"Terminal {terminal_id}", body)


def error_page(status: int, message: str, reason: str) -> str:
    body = (
        f"<h1 class=error>Error {status}</h1><p>{_e(message)}</p>"
        f"<p class=muted><code>{_e(reason)}</code></p>"
    )
    return _page(f"Error {status}", body)
