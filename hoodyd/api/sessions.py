"""Browser sessions for the run area's HTML pages over TCP: the token is typed once into the
login page, and the browser then holds an `HttpOnly`, `SameSite=Strict` session cookie.

What a session may do is narrow on purpose. The route table marks the routes a cookie can
reach (`Access.SESSION`: the HTML pages and the form post that runs a pick); every other
route still needs the bearer token. A session request must ask for HTML (`format=html` or a
form post), so a cookie never reads the JSON API; and a request that is not a GET must carry
an `Origin` header naming this very host, so another site cannot post a form with the
user's cookie (SameSite=Strict already keeps the cookie off cross-site requests; the Origin
check holds where a browser does not honour it). A GET a session can reach never starts
anything.

Sessions live in memory (a restart logs every browser out) and are kept by the digest of
their id, so even the process's memory does not hold a usable cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field

from aiohttp import web

from hoodyd.errors import Forbidden, Reason, Unauthorized

COOKIE = "hoodyd_session"
COOKIE_PATH = "/api/v1/run"
SESSION_TTL_S = 12 * 3600
MAX_SESSIONS = 64
# set on a request the middleware let in by its session cookie (not a token or the socket)
BY_SESSION = web.RequestKey("by_session", bool)


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


@dataclass
class SessionStore:
    """Live session ids (by digest) and when each expires (monotonic seconds)."""

    ttl_s: float = SESSION_TTL_S
    expiries: dict[str, float] = field(default_factory=dict)

    def create(self) -> str:
        now = time.monotonic()
        self.expiries = {key: at for key, at in self.expiries.items() if at > now}
        while len(self.expiries) >= MAX_SESSIONS:  # the oldest goes first
            self.expiries.pop(min(self.expiries, key=self.expiries.__getitem__))
        session_id = secrets.token_urlsafe(32)
        self.expiries[_digest(session_id)] = now + self.ttl_s
        return session_id

    def valid(self, session_id: str | None) -> bool:
        if not session_id:
            return False
        expires = self.expiries.get(_digest(session_id))
        return expires is not None and expires > time.monotonic()

    def end(self, session_id: str | None) -> None:
        if session_id:
            self.expiries.pop(_digest(session_id), None)


SESSIONS = web.AppKey("sessions", SessionStore)
# names of the routes an area declared for sessions (`Access.SESSION` in the route table)
SESSION_ROUTES = web.AppKey("session_routes", frozenset[str])


def install(app: web.Application) -> None:
    """The run area keeps the store on its sub-application (set before it is frozen)."""
    app[SESSIONS] = SessionStore()


def same_origin(request: web.Request) -> bool:
    """The request's `Origin` header names the host it was sent to (scheme included)."""
    origin = request.headers.get("Origin")
    return origin is not None and hmac.compare_digest(
        origin.encode(), f"{request.scheme}://{request.host}".encode()
    )


def admits_session(request: web.Request) -> bool:
    """True when a valid session cookie lets this request in: the route the router matched
    was declared for sessions in the route table, and a post comes from this same origin.
    A session that fails the Origin check is refused outright."""
    name = request.match_info.route.name
    # the middleware runs on the root app, whose config_dict does not see the area's keys
    area = next((app for app in request.match_info.apps if SESSIONS in app), None)
    if name is None or area is None or name not in area.get(SESSION_ROUTES, frozenset()):
        return False
    if not area[SESSIONS].valid(request.cookies.get(COOKIE)):
        return False
    if request.method != "GET" and not same_origin(request):
        raise Forbidden(
            "a form post with a session cookie must come from this origin",
            reason=Reason.BAD_ORIGIN,
        )
    request[BY_SESSION] = True
    return True


def by_session(request: web.Request) -> bool:
    return request.get(BY_SESSION) is True


def require_html(request: web.Request, wants_html: bool) -> None:
    """A session reaches HTML only: the JSON API needs the token."""
    if by_session(request) and not wants_html:
        raise Unauthorized(
            "a session cookie opens the HTML pages only; the JSON API needs the bearer token",
            reason=Reason.BAD_TOKEN,
        )


def login(request: web.Request, token: str, given: str) -> web.Response:
    """Check the typed token (constant time) and answer with the session cookie and a 303
    to the search page."""
    origin = request.headers.get("Origin")
    if origin is not None and not same_origin(request):
        raise Forbidden("the login form must be posted from this origin", reason=Reason.BAD_ORIGIN)
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise Unauthorized("wrong token", reason=Reason.BAD_TOKEN)
    session_id = request.config_dict[SESSIONS].create()
    response = web.Response(status=303, headers={"Location": f"{COOKIE_PATH}/search?format=html"})
    response.set_cookie(
        COOKIE,
        session_id,
        path=COOKIE_PATH,
        httponly=True,
        samesite="Strict",
        max_age=int(SESSION_TTL_S),
    )
    return response
