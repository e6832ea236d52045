"""Handlers that run apps (`/api/v1/run/run`, `/go/{rest}`, `/t/{terminal_id}/go/{rest}`,
`/preflight`, `/recipes/{name}/run`) and the terminal view page: decode, call RunService,
encode as JSON, HTML or a 303.

Query strings: every Selector field is a parameter; `source` and `tags` may be repeated or
comma-joined; `dry_run` and `redirect` take `true`/`false`/`1`/`0` (a bare key is true). An
unknown parameter is a 400, so a misspelt `dry_run` never turns into a real run.

Go paths (`/go/{rest}`) come in two forms, told apart by the first segment:

- key-value when the first segment is a Selector field name (`app/firefox/os/linux/...`):
  segments pair up as key, value; `app` must be among them;
- positional otherwise: `{app}`, `{os}/{app}`, `{os}/{source}/{app}`,
  `{os}/{source}/{kind}/{app}`, where `os` must be an Os value.

No Os value is a field name, so the two never overlap: `/go/app` runs an app named `app`,
`/go/linux/os` an app named `os`, and `/go/app/os` (key-value) also an app named `os`.
Query parameters supply what the path does not; giving a field in both is a 400.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from hoodyd.api.common import json_response, parse_flag, parse_int, read_body
from hoodyd.api.keys import CONFIG, RUN, RUNNER, TERMINALS
from hoodyd.apps import pages, wire
from hoodyd.apps.curl import CurlTarget
from hoodyd.apps.runner import Outcome, RunService
from hoodyd.errors import HoodydError, InvalidRequest
from hoodyd.schemas.run import ENUM_VALUES, SELECTOR_FIELDS, RecipeExecutionRequest, Selector
from hoodyd.terminals.service import parse_terminal_id

BASE = "/api/v1/run"
_LIST_FIELDS = ("source", "tags")
_INT_FIELDS = (
    "pick_index",
    "terminal_id",
    "defer_pid",
    "defer_timeout_ms",
    "defer_poll_ms",
    "limit",
)
_BOOL_FIELDS = ("dry_run", "redirect")
_ENUM_FIELDS = ("os", "kind", "arch", "pick", "print_curl", "format")
_APP_ALIASES = ("q", "name")
RUN_QUERY = frozenset(SELECTOR_FIELDS) | frozenset(_APP_ALIASES)
GO_QUERY = RUN_QUERY - {"app", *_APP_ALIASES}
TERMINAL_GO_QUERY = GO_QUERY - {"terminal_id"}
OS_VALUES = frozenset(ENUM_VALUES["os"])
# the forms a go path can take when positional, by segment count
_POSITIONAL = {1: ("app",), 2: ("os", "app"), 3: ("os", "source", "app"),
               4: ("os", "source", "kind", "app")}  # fmt: skip


def _runner(request: web.Request) -> RunService:
    return request.app[RUNNER]


# --- decoding ------------------------------------------------------------------------------


def selector_from_params(params: Mapping[str, list[str]]) -> Selector:
    """A Selector from query-style parameters (each name with its list of values)."""
    fields: dict[str, Any] = {}
    for name, values in params.items():
        if name in _APP_ALIASES:
            name = "app"
        if name in _LIST_FIELDS:
            items = [part.strip() for raw in values for part in raw.split(",") if part.strip()]
            if name == "source":
                for value in items:
                    if value not in ENUM_VALUES["source"]:
                        raise wire.invalid_enum("source", value)
            fields[name] = items or None
            continue
        if len(values) > 1:
            raise InvalidRequest(f"'{name}' is given more than once", reason="DUPLICATE_PARAMETER")
        value = values[0]
        if name in _ENUM_FIELDS:
            if value not in ENUM_VALUES[name]:
                raise wire.invalid_enum(name, value)
            fields[name] = value
        elif name in _INT_FIELDS:
            fields[name] = parse_int(value, name)
        elif name in _BOOL_FIELDS:
            fields[name] = parse_flag(name, value)
        else:
            fields[name] = value
    if "app" not in fields:
        raise InvalidRequest(
            "missing field 'app' (query parameter app, q or name)",
            reason="MISSING_FIELD",
            extra={"field": "app"},
        )
    return wire.convert({k: v for k, v in fields.items() if v is not None}, Selector)


def _query_params(request: web.Request, allowed: frozenset[str]) -> dict[str, list[str]]:
    unknown = sorted(set(request.query) - allowed)
    if unknown:
        raise InvalidRequest(
            f"Unknown query parameter(s): {', '.join(unknown)}", reason="UNKNOWN_PARAMETER"
        )
    aliases = [name for name in ("app", *_APP_ALIASES) if name in request.query]
    if len(aliases) > 1:
        raise InvalidRequest(
            f"give the app once ({', '.join(aliases)} are aliases)", reason="DUPLICATE_PARAMETER"
        )
    return {name: request.query.getall(name) for name in request.query}


def go_path_params(rest: str, allowed: frozenset[str]) -> dict[str, list[str]]:
    """The fields a go path names (see the module docstring for the two forms)."""
    segments = [unquote(part) for part in rest.split("/")]
    if segments and segments[-1] == "":
        segments.pop()  # a trailing slash
    if not segments or any(part == "" for part in segments):
        raise InvalidRequest(f"invalid go path {rest!r}: empty segment", reason="INVALID_GO_PATH")
    params: dict[str, list[str]] = {}
    if len(segments) > 1 and segments[0] in SELECTOR_FIELDS:
        if len(segments) % 2:
            raise InvalidRequest(
                f"invalid go path {rest!r}: key-value segments come in pairs "
                f"(key {segments[-1]!r} has no value)",
                reason="INVALID_GO_PATH",
            )
        for key, value in zip(segments[::2], segments[1::2], strict=True):
            if key != "app" and key not in allowed:
                raise InvalidRequest(
                    f"invalid go path {rest!r}: {key!r} is not a key this path takes",
                    reason="INVALID_GO_PATH",
                )
            if key in params and key not in _LIST_FIELDS:
                raise InvalidRequest(
                    f"invalid go path {rest!r}: {key!r} is given twice", reason="INVALID_GO_PATH"
                )
            params.setdefault(key, []).append(value)
        if "app" not in params:
            raise InvalidRequest(
                f"invalid go path {rest!r}: key-value paths need app/<name>",
                reason="INVALID_GO_PATH",
            )
        return params
    names = _POSITIONAL.get(len(segments))
    if names is None:
        raise InvalidRequest(
            f"invalid go path {rest!r}: positional paths are {{app}}, {{os}}/{{app}}, "
            "{os}/{source}/{app} or {os}/{source}/{kind}/{app}",
            reason="INVALID_GO_PATH",
        )
    if len(segments) > 1 and segments[0] not in OS_VALUES:
        raise InvalidRequest(
            f"invalid go path {rest!r}: the first of several positional segments is the os "
            f"({', '.join(ENUM_VALUES['os'])}), or a key of the key-value form",
            reason="INVALID_GO_PATH",
        )
    return {name: [value] for name, value in zip(names, segments, strict=True)}


def _merge(path: dict[str, list[str]], query: dict[str, list[str]]) -> dict[str, list[str]]:
    both = sorted(set(path) & set(query))
    if both:
        raise InvalidRequest(
            f"{', '.join(both)} given in both the path and the query", reason="DUPLICATE_PARAMETER"
        )
    return {**query, **path}


def _wants_html(request: web.Request, selector: Selector) -> bool:
    if selector.format is not None:
        return selector.format == "html"
    return "text/html" in request.headers.get("Accept", "")


def _curl_target(request: web.Request) -> CurlTarget:
    sock = request.transport.get_extra_info("socket") if request.transport else None
    server = request.app[CONFIG].server
    if sock is not None and sock.family == socket.AF_UNIX:
        return CurlTarget(socket=server.socket)
    host = server.tcp or request.host
    return CurlTarget(base_url=f"http://{host}")


# --- encoding ------------------------------------------------------------------------------


def _html(text: str, status: int = 200) -> web.Response:
    response = web.Response(text=text, status=status, content_type="text/html")
    response.headers["Content-Security-Policy"] = pages.CONTENT_SECURITY_POLICY
    return response


async def _answer(request: web.Request, selector: Selector) -> web.Response:
    html = _wants_html(request, selector)
    try:
        outcome: Outcome = await _runner(request).run(selector, _curl_target(request))
    except HoodydError as exc:
        if not html:
            raise
        return _html(pages.error_page(exc.status, exc.message, exc.reason), exc.status)
    if outcome.redirect is not None:
        return web.Response(status=303, headers={"Location": outcome.redirect})
    response = outcome.response
    if html:
        if response.status == "resolved":
            return _html(pages.candidates_page(response, selector))
        return _html(pages.run_page(response))
    return json_response(response)


# --- handlers ------------------------------------------------------------------------------


async def run_get(request: web.Request) -> web.Response:
    return await _answer(request, selector_from_params(_query_params(request, RUN_QUERY)))


async def run_post(request: web.Request) -> web.Response:
    raw = await read_body(request)
    if not raw.strip():
        raise InvalidRequest("request body is required", reason="BODY_REQUIRED")
    return await _answer(request, wire.decode(raw, Selector))


def _raw_rest(request: web.Request) -> str:
    """The go path as sent (still percent-encoded), so `%2F` stays inside its segment."""
    raw = request.rel_url.raw_path
    marker = raw.find("/go/", len(BASE))
    return raw[marker + len("/go/") :]


async def go(request: web.Request) -> web.Response:
    path = go_path_params(_raw_rest(request), GO_QUERY)
    params = _merge(path, _query_params(request, GO_QUERY))
    return await _answer(request, selector_from_params(params))


async def terminal_go(request: web.Request) -> web.Response:
    terminal_id = parse_terminal_id(request.match_info["terminal_id"])
    path = go_path_params(_raw_rest(request), TERMINAL_GO_QUERY)
    params = _merge(path, _query_params(request, TERMINAL_GO_QUERY))
    params["terminal_id"] = [str(terminal_id)]
    return await _answer(request, selector_from_params(params))


async def preflight(request: web.Request) -> web.Response:
    raw = await read_body(request)
    if not raw.strip():
        raise InvalidRequest("request body is required", reason="BODY_REQUIRED")
    return json_response(await _runner(request).preflight(wire.decode(raw, Selector)))


async def recipe_run(request: web.Request) -> web.Response:
    raw = await read_body(request)
    body = wire.decode(raw if raw.strip() else b"{}", RecipeExecutionRequest)
    selector = _runner(request).recipe_selector(request.match_info["name"], body)
    return await _answer(request, selector)


async def terminal_view(request: web.Request) -> web.Response:
    """A terminal's recent output and commands as a page (the redirect target of a run)."""
    terminal_id = parse_terminal_id(request.match_info["terminal_id"])
    assert terminal_id is not None
    terminals = request.app.get(TERMINALS)
    try:
        if terminals is None:
            raise InvalidRequest("no terminal service runs here", reason="TERMINALS_UNAVAILABLE")
        session = terminals.session(terminal_id)
        output = await terminals.output(terminal_id, session.ring.tail(16384), 16384, 0, "utf-8")
        history = terminals.history(terminal_id, 20)
    except HoodydError as exc:
        return _html(pages.error_page(exc.status, exc.message, exc.reason), exc.status)
    return _html(pages.terminal_page(terminal_id, output.state, history.data, output.data))


# --- setup ---------------------------------------------------------------------------------


async def _runner_ctx(app: web.Application) -> AsyncIterator[None]:
    # after the terminal and search services exist (their cleanup contexts come first)
    runner = RunService(app[RUN], app.get(TERMINALS), CurlTarget(socket=app[CONFIG].server.socket))
    app[RUNNER] = runner
    app[RUN].batch_runner = runner.batch_item
    yield


def setup(app: web.Application) -> None:
    app.cleanup_ctx.append(_runner_ctx)
    router = app.router
    # no HEAD twins: a GET here may start a program, a HEAD must not
    router.add_get(f"{BASE}/run", run_get, allow_head=False)
    router.add_post(f"{BASE}/run", run_post)
    router.add_get(f"{BASE}/go/{{rest:.+}}", go, allow_head=False)
    router.add_get(f"{BASE}/t/{{terminal_id}}/go/{{rest:.+}}", terminal_go, allow_head=False)
    router.add_get(f"{BASE}/t/{{terminal_id}}/view", terminal_view)
    router.add_post(f"{BASE}/preflight", preflight)
    router.add_post(f"{BASE}/recipes/{{name}}/run", recipe_run)
