"""Every route hoodyd serves, area by area: method, path, handler, name and who may call it.

This table is the one place that decides authentication: a route is `PROTECTED` unless it
says `OPEN` here, and the middleware asks the route the router matched (by its name), never
the path text. The open routes are exactly the three `/api/v1/{area}/health` and the run
area's login page, plus `GET /` and the console's entry, which only redirect; `SESSION` routes
(the run area's HTML pages, their form post, the logout and the console's pages) also take a
browser's login session cookie (`hoodyd.api.sessions`).

Paths are relative to their area's base (`/api/v1/daemon`, …): each area is a sub-application
mounted there by the composition root (`hoodyd.app`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum

from aiohttp import web

from hoodyd.api import console, daemon, metrics, run, run_exec, run_pages, sessions, terminal
from hoodyd.api import terminal_automation as automation
from hoodyd.api.health import health_handler
from hoodyd.api.openapi import openapi_handlers

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Access(Enum):
    OPEN = "open"  # answers on TCP without the bearer token
    PROTECTED = "protected"
    # the bearer token, or a browser's login session cookie (`hoodyd.api.sessions`): the run
    # area's HTML pages, the form post that runs a pick, and the logout
    SESSION = "session"
    # the bearer token, in the Authorization header or as the `token` query parameter: the
    # SDK's terminal WebSocket (a browser cannot set headers on a WebSocket)
    QUERY_TOKEN = "query_token"


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    name: str
    access: Access = Access.PROTECTED
    # a GET that may start a program has no HEAD twin: a HEAD must never run anything
    head: bool = True


def _documents(area: str) -> list[Route]:
    as_yaml, as_json = openapi_handlers(area)
    return [
        Route("GET", "/health", health_handler(f"hoodyd-{area}"), "health", Access.OPEN),
        Route("GET", "/openapi.yaml", as_yaml, "openapi-yaml"),
        Route("GET", "/openapi.json", as_json, "openapi-json"),
    ]


def daemon_routes() -> list[Route]:
    return [
        *_documents("daemon"),
        Route("GET", "/programs", daemon.list_programs, "programs-list"),
        Route("GET", "/programs/{id}", daemon.get_program, "program-get"),
        Route("POST", "/programs/add", daemon.add_program, "program-add"),
        Route("POST", "/programs/edit/{id}", daemon.edit_program, "program-edit"),
        Route("POST", "/programs/remove/{id}", daemon.remove_program, "program-remove"),
        Route("POST", "/programs/reset", daemon.reset_programs, "programs-reset"),
        Route("POST", "/programs/{id}/enable", daemon.enable_program, "program-enable"),
        Route("POST", "/programs/{id}/disable", daemon.disable_program, "program-disable"),
        Route("POST", "/programs/{id}/start", daemon.start_program, "program-start"),
        Route("POST", "/programs/{id}/stop", daemon.stop_program, "program-stop"),
        Route("GET", "/programs/{id}/logs", daemon.program_logs, "program-logs"),
        Route("GET", "/events", daemon.events, "events"),
        Route("GET", "/metrics", metrics.metrics, "metrics"),
        Route("GET", "/status", daemon.all_statuses, "status-all"),
        Route("GET", "/status/{id}", daemon.one_status, "status-one"),
        Route("POST", "/quick-start", daemon.quick_start, "quick-start"),
        Route("GET", "/quick-start", daemon.quick_list, "quick-list"),
        Route("GET", "/quick-start/{id}/status", daemon.quick_status, "quick-status"),
        Route("GET", "/quick-start/{id}/logs", daemon.quick_logs, "quick-logs"),
        Route("POST", "/quick-start/{id}/stop", daemon.quick_stop, "quick-stop"),
    ]


def terminal_routes() -> list[Route]:
    return [
        *_documents("terminal"),
        Route("GET", "/sessions", terminal.list_sessions, "sessions"),
        Route("POST", "/create", terminal.create, "create"),
        Route("POST", "/execute", terminal.execute, "execute"),
        Route("GET", "/result/{command_id}", terminal.result, "result"),
        Route("GET", "/history/{terminal_id}", terminal.history, "history"),
        Route("GET", "/history", terminal.history_by_query, "history-by-query"),
        Route("GET", "/output/{terminal_id}", terminal.output, "output"),
        Route("POST", "/resize/{terminal_id}", terminal.resize, "resize"),
        Route("GET", "/attach/{terminal_id}", terminal.attach, "attach"),
        Route("DELETE", "/{terminal_id}", terminal.delete, "delete"),
        # automation (CONTRACT-terminal-automation.md)
        Route("POST", "/write", automation.write, "write"),
        Route("POST", "/execute/{command_id}/abort", automation.abort, "abort"),
        Route("GET", "/raw", automation.raw, "raw"),
        Route("GET", "/snapshot", automation.snapshot, "snapshot"),
        Route("GET", "/find", automation.find_text, "find"),
        Route("POST", "/press", automation.press, "press"),
        Route("GET", "/keys", automation.list_keys, "keys"),
        Route("POST", "/mouse", automation.send_mouse, "mouse"),
        Route("POST", "/paste", automation.paste_text, "paste"),
        Route("POST", "/wait", automation.wait, "wait"),
        Route("GET", "/automation/metrics", automation.metrics, "automation-metrics"),
        Route("GET", "/{terminal_id}/automation", automation.automation_state, "automation-state"),
        Route("POST", "/state", automation.client_state, "client-state"),
        Route("GET", "/ws", automation.tty_socket, "ws", Access.QUERY_TOKEN),
        # images of a display and drag-and-drop staging: not on this box (501)
        Route("GET", "/screenshot", automation.not_supported("screenshot"), "screenshot"),
        Route("POST", "/drop-begin", automation.not_supported("drag-and-drop"), "drop-begin"),
        Route("POST", "/upload", automation.not_supported("drag-and-drop"), "drop-upload"),
        Route("POST", "/drop-commit", automation.not_supported("drag-and-drop"), "drop-commit"),
        Route("POST", "/drop", automation.not_supported("drag-and-drop"), "drop"),
    ]


def run_routes() -> list[Route]:
    return [
        *_documents("run"),
        Route("GET", "/login", run_pages.login_page, "login", Access.OPEN),
        Route("POST", "/login", run_pages.login, "login-post", Access.OPEN),
        Route("POST", "/logout", run_pages.logout, "logout", Access.SESSION),
        Route("GET", "/static/{name}", run_pages.static_asset, "static", Access.SESSION),
        Route("GET", "/search", run.search, "search", Access.SESSION),
        Route("POST", "/search/paged", run.search_paged, "search-paged"),
        Route("POST", "/search/jobs", run.search_job, "search-job"),
        Route("GET", "/jobs/{job_id}", run.get_job, "job"),
        Route("POST", "/batch", run.batch, "batch"),
        Route("GET", "/config", run.get_config, "config"),
        Route("GET", "/sources", run.list_sources, "sources"),
        Route("POST", "/sources", run.add_source, "source-add"),
        Route("POST", "/sources/sync", run.sync_sources, "sources-sync"),
        Route("PATCH", "/sources/{source_id}", run.patch_source, "source-patch"),
        Route("DELETE", "/sources/{source_id}", run.delete_source, "source-delete"),
        Route("POST", "/sources/{source_id}/sync", run.sync_source, "source-sync"),
        Route("GET", "/sources/{source_id}/diagnostics", run.source_diagnostics, "diagnostics"),
        Route("GET", "/profiles", run.list_profiles, "profiles"),
        Route("POST", "/profiles", run.add_profile, "profile-add"),
        Route("PATCH", "/profiles/{profile}", run.patch_profile, "profile-patch"),
        Route("DELETE", "/profiles/{profile}", run.delete_profile, "profile-delete"),
        Route("POST", "/profiles/{profile}/select", run.select_profile, "profile-select"),
        Route("GET", "/recipes", run.list_recipes, "recipes"),
        Route("POST", "/recipes", run.add_recipe, "recipe-add"),
        Route("GET", "/recipes/{name}", run.get_recipe, "recipe-get"),
        Route("PATCH", "/recipes/{name}", run.patch_recipe, "recipe-patch"),
        Route("DELETE", "/recipes/{name}", run.delete_recipe, "recipe-delete"),
        Route("POST", "/recipes/{name}/search", run.recipe_search, "recipe-search"),
        Route("GET", "/run", run_exec.run_get, "run-get", head=False),
        Route("POST", "/run", run_exec.run_post, "run-post", Access.SESSION),
        # the public client's beta.10 and later resolve here; it never runs anything, so a
        # browser session may follow a candidate's `href_path` to it
        Route("GET", "/resolve", run_exec.resolve_get, "resolve-get", Access.SESSION),
        Route("POST", "/resolve", run_exec.resolve_post, "resolve-post"),
        Route("GET", "/go/{rest:.+}", run_exec.go, "go", head=False),
        Route("GET", "/t/{terminal_id}/go/{rest:.+}", run_exec.terminal_go, "t-go", head=False),
        Route("GET", "/t/{terminal_id}/view", run_exec.terminal_view, "t-view", Access.SESSION),
        Route(
            "GET", "/t/{terminal_id}/stream", run_pages.terminal_stream, "t-stream", Access.SESSION
        ),
        *console_routes(),
        Route("POST", "/preflight", run_exec.preflight, "preflight"),
        Route("POST", "/recipes/{name}/run", run_exec.recipe_run, "recipe-run"),
    ]


def console_routes() -> list[Route]:
    """The console's pages (`hoodyd.api.console`), in the run area where the login cookie is
    sent. Only the entry is open, and it only redirects; the rest are `SESSION` routes, so the
    cookie reaches these pages and never the daemon or terminal areas' JSON API."""
    c, session = console, Access.SESSION
    return [
        Route("GET", "/console", c.entry, "console", Access.OPEN),
        Route("GET", "/console/programs", c.programs_page, "console-programs", session),
        Route("GET", "/console/programs/table", c.programs_table, "console-table", session),
        Route("GET", "/console/events", c.events, "console-events", session),
        Route("GET", "/console/programs/new", c.new_program_page, "console-new", session),
        Route("POST", "/console/programs/new", c.save_program, "console-add", session),
        Route("GET", "/console/programs/{id}/edit", c.edit_program_page, "console-edit", session),
        Route("POST", "/console/programs/{id}/edit", c.save_program, "console-save", session),
        Route(
            "GET",
            "/console/programs/{id}/remove",
            c.remove_program_page,
            "console-confirm",
            session,
        ),
        Route("POST", "/console/programs/{id}/remove", c.remove_program, "console-remove", session),
        Route(
            "POST",
            "/console/programs/{id}/{action:start|stop|restart|enable|disable}",
            c.program_action,
            "console-action",
            session,
        ),
        Route("GET", "/console/programs/{id}/logs", c.logs_page, "console-logs", session),
        Route(
            "GET", "/console/programs/{id}/logs/follow", c.logs_follow, "console-follow", session
        ),
        Route(
            "GET",
            "/console/programs/{id}/logs/download",
            c.logs_download,
            "console-download",
            session,
        ),
        Route("GET", "/console/terminals", c.terminals_page, "console-terminals", session),
        Route("POST", "/console/terminals", c.create_terminal, "console-terminal-new", session),
        Route(
            "GET", "/console/terminals/{terminal_id}", c.terminal_page, "console-terminal", session
        ),
        Route(
            "GET",
            "/console/terminals/{terminal_id}/tty",
            c.terminal_socket,
            "console-tty",
            session,
            head=False,
        ),
        Route(
            "POST",
            "/console/terminals/{terminal_id}/close",
            c.close_terminal,
            "console-close",
            session,
        ),
        Route("GET", "/console/apps", c.apps_page, "console-apps", session),
        Route("POST", "/console/apps/run", c.run_app, "console-run", session),
    ]


def root_routes() -> list[Route]:
    """Outside every area: `GET /` leads a browser to the console."""
    return [Route("GET", "/", console.root, "root", Access.OPEN)]


def add_root_routes(app: web.Application) -> None:
    """Register the routes outside every area on the root application."""
    routes = root_routes()
    for route in routes:
        app.router.add_get(route.path, route.handler, name=f"root.{route.name}")
    app[OPEN_ROUTES] = frozenset(f"root.{r.name}" for r in routes if r.access is Access.OPEN)


AREA_ROUTES: dict[str, Callable[[], list[Route]]] = {
    "daemon": daemon_routes,
    "terminal": terminal_routes,
    "run": run_routes,
}
# names of the routes an area declared OPEN, kept on the area's sub-application
OPEN_ROUTES = web.AppKey("open_routes", frozenset[str])
# names of the routes that also take the token as a query parameter
QUERY_TOKEN_ROUTES = web.AppKey("query_token_routes", frozenset[str])


def add_routes(app: web.Application, area: str) -> None:
    """Register an area's routes on its sub-application; a route's full name is `area.name`."""
    routes = AREA_ROUTES[area]()
    for route in routes:
        name = f"{area}.{route.name}"
        if route.method == "GET":
            app.router.add_get(route.path, route.handler, name=name, allow_head=route.head)
        else:
            app.router.add_route(route.method, route.path, route.handler, name=name)
    app[OPEN_ROUTES] = frozenset(f"{area}.{r.name}" for r in routes if r.access is Access.OPEN)
    app[sessions.SESSION_ROUTES] = frozenset(
        f"{area}.{r.name}" for r in routes if r.access is Access.SESSION
    )
    app[QUERY_TOKEN_ROUTES] = frozenset(
        f"{area}.{r.name}" for r in routes if r.access is Access.QUERY_TOKEN
    )
    if area == "run":
        sessions.install(app)  # the login page's sessions


def is_open(request: web.Request) -> bool:
    """True when the route the router matched for `request` was declared OPEN by its area."""
    return _declared(request, OPEN_ROUTES)


def takes_query_token(request: web.Request) -> bool:
    """True when the matched route was declared QUERY_TOKEN by its area."""
    return _declared(request, QUERY_TOKEN_ROUTES)


def _declared(request: web.Request, key: web.AppKey[frozenset[str]]) -> bool:
    name = request.match_info.route.name
    return name is not None and any(
        name in app.get(key, frozenset()) for app in request.match_info.apps
    )
