"""What a browser needs besides the run answers' own HTML: the login page and its form post,
the logout form's post (`hoodyd.api.sessions` keeps the sessions and the login throttle), the
static assets the pages load (xterm.js, vendored in `hoodyd/api/static`, never a CDN), and the
terminal view's live output stream.
"""

from __future__ import annotations

import contextlib
from importlib import resources

from aiohttp import WSMsgType, web

from hoodyd.api import pages, sessions
from hoodyd.api.console import token_location
from hoodyd.api.keys import CONFIG, TERMINALS, TOKEN
from hoodyd.api.terminal import follow_output
from hoodyd.errors import (
    Forbidden,
    InvalidRequest,
    LoginThrottled,
    NotFound,
    Reason,
    Unauthorized,
)
from hoodyd.terminals.validation import parse_terminal_id

# the files a page may load, with their types: nothing else under static/ is served
STATIC_ASSETS = {
    "xterm.js": "text/javascript",
    "xterm.css": "text/css",
    "xterm.LICENSE": "text/plain",
    "console.css": "text/css",
    "console.js": "text/javascript",
}
OUTPUT_CHUNK = 64 * 1024
REPLAY_BYTES = 64 * 1024


_html = pages.html_response


def _login_page(request: web.Request, error: str | None = None, landing: object = None) -> str:
    given = request.query.get("next") if landing is None else landing
    return pages.login_page(
        error,
        token_at=token_location(request.config_dict[CONFIG]),
        landing=sessions.safe_next(given),
    )


async def login_page(request: web.Request) -> web.Response:
    return _html(_login_page(request))


async def login(request: web.Request) -> web.Response:
    """The login form's post: the typed token against the daemon's (constant time). A wrong
    token from the form is the login page again (401); from anything else a JSON 401. A peer
    backed off after failed logins gets a 429 with `Retry-After`, the page or JSON alike."""
    token = request.config_dict.get(TOKEN)
    is_form = request.content_type == "application/x-www-form-urlencoded"
    form = await request.post() if is_form else {}
    given = form.get("token")
    if token is None:
        # the Unix socket needs no login: its peers are checked by uid
        raise web.HTTPSeeOther(location=f"{sessions.COOKIE_PATH}/search?format=html")
    server = request.config_dict[CONFIG].server
    try:
        return sessions.login(
            request,
            token,
            given if isinstance(given, str) else "",
            idle_s=server.session_idle_timeout,
            max_age_s=server.session_max_age,
            landing=sessions.safe_next(form.get("next")),
        )
    except LoginThrottled as exc:
        if not is_form:
            raise  # JSON, with its Retry-After, from the middleware
        response = _html(_login_page(request, exc.message, form.get("next")), exc.status)
        response.headers["Retry-After"] = str(exc.retry_after_s)
        return response
    except (Unauthorized, Forbidden) as exc:
        if not is_form:
            raise
        return _html(_login_page(request, exc.message, form.get("next")), exc.status)


async def logout(request: web.Request) -> web.Response:
    """The logout form's post: the session ends here and now, its cookie is cleared, and the
    browser goes back to the login page."""
    return sessions.logout(request)


async def static_asset(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    content_type = STATIC_ASSETS.get(name)
    if content_type is None:
        raise NotFound(f"no static asset {name!r}", reason=Reason.NOT_FOUND)
    data = resources.files("hoodyd.api").joinpath("static", name).read_bytes()
    response = web.Response(body=data, content_type=content_type)
    response.headers["Cache-Control"] = "max-age=3600"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


async def terminal_stream(request: web.Request) -> web.StreamResponse:
    """WebSocket, read-only: the terminal's recent output, then its output as it comes
    (binary frames), and `{"type": "exit"}` when the shell ends. Input from the browser is
    ignored: the view shows a root shell, it does not type into it. A browser's upgrade must
    come from this same origin (a page elsewhere cannot open it with the user's cookie)."""
    if request.headers.get("Origin") is not None and not sessions.same_origin(request):
        raise Forbidden(
            "the terminal stream must be opened from this origin", reason=Reason.BAD_ORIGIN
        )
    terminal_id = parse_terminal_id(request.match_info["terminal_id"])
    assert terminal_id is not None
    if request.headers.get("Upgrade", "").lower() != "websocket":
        raise InvalidRequest(
            "this is a WebSocket: open it with an Upgrade: websocket request",
            reason=Reason.INVALID_REQUEST,
        )
    terminals = request.config_dict.get(TERMINALS)
    if terminals is None:
        raise InvalidRequest("no terminal service runs here", reason=Reason.TERMINALS_UNAVAILABLE)
    # only a terminal that exists: attaching would create terminal 1, and a GET starts nothing
    terminals.session(terminal_id)
    async with terminals.attach(terminal_id) as attachment:
        ws = web.WebSocketResponse(heartbeat=30, max_msg_size=64 * 1024)
        await ws.prepare(request)
        ring = attachment.ring
        offset = ring.tail(REPLAY_BYTES)
        pump = request.loop.create_task(
            follow_output(ws, attachment, offset, report_dropped=False)
        )
        try:
            async for message in ws:
                if message.type == WSMsgType.ERROR:
                    break
        finally:
            pump.cancel()
            with contextlib.suppress(BaseException):
                await pump
        return ws
