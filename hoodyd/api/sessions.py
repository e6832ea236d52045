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
their id, so even the process's memory does not hold a usable cookie. A session ends when it
has been idle too long (`server.session_idle_timeout`), when it is older than
`server.session_max_age` however busy, or when its browser posts the logout form.

Logins are throttled per peer (the remote address on TCP): after `FREE_FAILURES` wrong tokens
in a row, each further attempt — the right token too — is refused (429, `Retry-After`) until a
back-off has passed, and the back-off doubles with each failure after that, up to a cap. A
success forgets the peer; a peer with no failure for `FAILURE_WINDOW_S` starts afresh. The
table of peers is bounded, so a flood of addresses cannot grow memory.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import posixpath
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit

import structlog
from aiohttp import web

from hoodyd.errors import Forbidden, LoginThrottled, Reason, Unauthorized

log = structlog.get_logger()

COOKIE = "hoodyd_session"
COOKIE_PATH = "/api/v1/run"
LOGIN_PATH = f"{COOKIE_PATH}/login"
CONSOLE_PATH = f"{COOKIE_PATH}/console/programs"  # where a login lands
CONSOLE_ROOT = f"{COOKIE_PATH}/console"  # a login's `next` must stay under it
MAX_NEXT = 2048
SESSION_IDLE_S = 30 * 60
SESSION_MAX_AGE_S = 12 * 3600
MAX_SESSIONS = 64
# login throttle: wrong tokens a peer may type before backing off, the first back-off (doubled
# with each further failure up to the cap), how long a quiet peer keeps its count, and how
# many peers the table holds
FREE_FAILURES = 5
FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 300.0
FAILURE_WINDOW_S = 900.0
MAX_PEERS = 1024
# set on a request the middleware let in by its session cookie (not a token or the socket)
BY_SESSION = web.RequestKey("by_session", bool)

Clock = Callable[[], float]


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


@dataclass
class Session:
    """One live session's times (clock seconds) and the limits it was created with."""

    created: float
    last_seen: float
    idle_s: float
    max_age_s: float

    def alive(self, now: float) -> bool:
        return now - self.last_seen < self.idle_s and now - self.created < self.max_age_s


@dataclass
class PeerFailures:
    """A peer's wrong tokens in a row, when the last was typed, and until when it waits."""

    count: int = 0
    last: float = 0.0
    blocked_until: float = 0.0


@dataclass
class LoginThrottle:
    """Failed logins by peer, bounded to `max_peers` (the quiet ones go first, then the
    least recently failed)."""

    max_peers: int = MAX_PEERS
    peers: OrderedDict[str, PeerFailures] = field(default_factory=OrderedDict)

    def wait_s(self, peer: str, now: float) -> float:
        """Seconds the peer must still wait before a login is checked (0: it may try)."""
        failures = self.peers.get(peer)
        return max(0.0, failures.blocked_until - now) if failures else 0.0

    def failed(self, peer: str, now: float) -> float:
        """Count a wrong token; the back-off it starts (0 while the peer has free tries)."""
        failures = self.peers.pop(peer, None)
        if failures is None or now - failures.last >= FAILURE_WINDOW_S:
            failures = PeerFailures()
        failures.count += 1
        failures.last = now
        backoff = 0.0
        if failures.count >= FREE_FAILURES:
            backoff = min(MAX_BACKOFF_S, FIRST_BACKOFF_S * 2 ** (failures.count - FREE_FAILURES))
            failures.blocked_until = now + backoff
        self._make_room(now)
        self.peers[peer] = failures  # the most recent failure last
        return backoff

    def succeeded(self, peer: str) -> None:
        self.peers.pop(peer, None)

    def _make_room(self, now: float) -> None:
        if len(self.peers) < self.max_peers:
            return
        for key in [k for k, f in self.peers.items() if now - f.last >= FAILURE_WINDOW_S]:
            del self.peers[key]
        while len(self.peers) >= self.max_peers:
            self.peers.popitem(last=False)


@dataclass
class SessionStore:
    """Live sessions by the digest of their id, and the login throttle. `clock` is
    monotonic seconds (tests move it instead of sleeping)."""

    clock: Clock = time.monotonic
    sessions: dict[str, Session] = field(default_factory=dict)
    throttle: LoginThrottle = field(default_factory=LoginThrottle)

    def create(self, idle_s: float = SESSION_IDLE_S, max_age_s: float = SESSION_MAX_AGE_S) -> str:
        now = self.clock()
        self.sessions = {key: s for key, s in self.sessions.items() if s.alive(now)}
        while len(self.sessions) >= MAX_SESSIONS:  # the oldest goes first
            self.sessions.pop(min(self.sessions, key=lambda key: self.sessions[key].created))
        session_id = secrets.token_urlsafe(32)
        self.sessions[_digest(session_id)] = Session(now, now, idle_s, max_age_s)
        return session_id

    def find(self, session_id: str | None) -> Session | None:
        """The live session of this id; an expired one is forgotten."""
        if not session_id:
            return None
        key = _digest(session_id)
        session = self.sessions.get(key)
        if session is not None and not session.alive(self.clock()):
            del self.sessions[key]
            return None
        return session

    def touch(self, session: Session) -> None:
        """The session was used: its idle time starts again."""
        session.last_seen = self.clock()

    def end(self, session_id: str | None) -> bool:
        """Forget the session; True when it was live."""
        return bool(session_id) and self.sessions.pop(_digest(session_id or ""), None) is not None

    def login_wait_s(self, peer: str) -> float:
        return self.throttle.wait_s(peer, self.clock())

    def login_failed(self, peer: str) -> float:
        return self.throttle.failed(peer, self.clock())

    def login_succeeded(self, peer: str) -> None:
        self.throttle.succeeded(peer)


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
    A session that fails the Origin check is refused outright (and is not kept alive)."""
    name = request.match_info.route.name
    # the middleware runs on the root app, whose config_dict does not see the area's keys
    area = next((app for app in request.match_info.apps if SESSIONS in app), None)
    if name is None or area is None or name not in area.get(SESSION_ROUTES, frozenset()):
        return False
    store = area[SESSIONS]
    session = store.find(request.cookies.get(COOKIE))
    if session is None:
        return False
    if request.method != "GET" and not same_origin(request):
        raise Forbidden(
            "a form post with a session cookie must come from this origin",
            reason=Reason.BAD_ORIGIN,
        )
    store.touch(session)
    request[BY_SESSION] = True
    return True


def safe_next(value: object) -> str | None:
    """`value` when it is a path of this site under the console (`/api/v1/run/console`,
    with its query), else None: never an absolute URL, a `//host` or `\\host` reference, a
    path that climbs out with `..`, or text with control characters. This is all a login's
    `next` may send the browser to."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_NEXT:
        return None
    if "\\" in value or not value.isprintable() or " " in value:
        return None
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or parts.fragment or "%2e" in parts.path.lower():
        return None
    path = parts.path
    if posixpath.normpath(path) != path.rstrip("/") and path != "/":
        return None
    if path != CONSOLE_ROOT and not path.startswith(CONSOLE_ROOT + "/"):
        return None
    return value


def login_redirect(request: web.Request) -> web.HTTPSeeOther | None:
    """For a browser that opens a console page without a live session (a bookmark after
    logout or expiry): a 303 to the login page whose `next` brings it back. Only a GET that
    asks for HTML, on a route declared for sessions, and not a WebSocket upgrade; an API
    client (no `text/html` in `Accept`) keeps its JSON 401."""
    if request.method != "GET" or "text/html" not in request.headers.get("Accept", ""):
        return None
    if request.headers.get("Upgrade", "").lower() == "websocket":
        return None
    name = request.match_info.route.name
    area = next((app for app in request.match_info.apps if SESSIONS in app), None)
    if name is None or area is None or name not in area.get(SESSION_ROUTES, frozenset()):
        return None
    back = safe_next(request.raw_path)
    location = LOGIN_PATH + (f"?{urlencode({'next': back})}" if back else "")
    return web.HTTPSeeOther(location=location)


def by_session(request: web.Request) -> bool:
    return request.get(BY_SESSION) is True


def require_html(request: web.Request, wants_html: bool) -> None:
    """A session reaches HTML only: the JSON API needs the token."""
    if by_session(request) and not wants_html:
        raise Unauthorized(
            "a session cookie opens the HTML pages only; the JSON API needs the bearer token",
            reason=Reason.BAD_TOKEN,
        )


def peer(request: web.Request) -> str:
    """Whom the login throttle counts: the remote address (the socket's peer has none)."""
    return request.remote or "local"


def login(
    request: web.Request,
    token: str,
    given: str,
    *,
    idle_s: float = SESSION_IDLE_S,
    max_age_s: float = SESSION_MAX_AGE_S,
    landing: str | None = None,
) -> web.Response:
    """Check the typed token (constant time) and answer with the session cookie and a 303
    to `landing` (a console path `safe_next` let through) or the console's dashboard. A peer
    backed off after failed logins is refused before the token is looked at
    (`LoginThrottled`), so even the right one waits."""
    origin = request.headers.get("Origin")
    if origin is not None and not same_origin(request):
        raise Forbidden("the login form must be posted from this origin", reason=Reason.BAD_ORIGIN)
    store = request.config_dict[SESSIONS]
    who = peer(request)
    wait_s = store.login_wait_s(who)
    if wait_s > 0:
        log.warning("login_throttled", peer=who, retry_after_s=math.ceil(wait_s))
        raise LoginThrottled(math.ceil(wait_s))
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        backoff_s = store.login_failed(who)
        log.warning("login_failed", peer=who, backoff_s=backoff_s)
        raise Unauthorized("wrong token", reason=Reason.BAD_TOKEN)
    store.login_succeeded(who)
    session_id = store.create(idle_s, max_age_s)
    log.info("login", peer=who)
    response = web.Response(status=303, headers={"Location": safe_next(landing) or CONSOLE_PATH})
    response.set_cookie(
        COOKIE,
        session_id,
        path=COOKIE_PATH,
        httponly=True,
        samesite="Strict",
        max_age=int(max_age_s),
    )
    return response


def logout(request: web.Request) -> web.Response:
    """End the request's session server-side, clear its cookie, and answer with a 303 to the
    login page. The route is a session route: the middleware has checked the Origin."""
    ended = request.config_dict[SESSIONS].end(request.cookies.get(COOKIE))
    if ended:
        log.info("logout", peer=peer(request))
    response = web.Response(status=303, headers={"Location": LOGIN_PATH})
    response.del_cookie(COOKIE, path=COOKIE_PATH, httponly=True, samesite="Strict")
    return response
