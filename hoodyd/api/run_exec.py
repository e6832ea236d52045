"""Handlers that run apps (`/api/v1/run/run`, `/go/{rest}`, `/t/{terminal_id}/go/{rest}`,
`/preflight`, `/recipes/{name}/run`), resolve them without running (`/resolve`, the
route of the public client's beta.10 and later) and the terminal view page: decode
(`hoodyd.api.selectors` for query strings and go paths), call RunService, encode as JSON,
HTML or a 303.
"""

from __future__ import annotations

import socket

import msgspec
from aiohttp import web

from hoodyd.api import pages, sessions
from hoodyd.api.decoding import decode_body
from hoodyd.api.encoding import json_response
from hoodyd.api.keys import CONFIG, RUNNER, TERMINALS
from hoodyd.api.selectors import (
    GO_QUERY,
    RESOLVE_QUERY,
    RUN_QUERY,
    TERMINAL_GO_QUERY,
    form_params,
    go_path_params,
    merge_params,
    query_selector_params,
    resolve_selector,
    selector_from_params,
)
from hoodyd.apps.run.curl import CurlTarget
from hoodyd.apps.run.runner import Outcome, RunService
from hoodyd.errors import HoodydError, InvalidRequest, Reason
from hoodyd.schemas.run import RecipeExecutionRequest, Selector
from hoodyd.terminals.validation import parse_terminal_id

BASE = "/api/v1/run"


def _runner(request: web.Request) -> RunService:
    return request.config_dict[RUNNER]


def _wants_html(request: web.Request, selector: Selector) -> bool:
    if selector.format is not None:
        return selector.format == "html"
    return "text/html" in request.headers.get("Accept", "")


def _curl_target(request: web.Request) -> CurlTarget:
    sock = request.transport.get_extra_info("socket") if request.transport else None
    server = request.config_dict[CONFIG].server
    if sock is not None and sock.family == socket.AF_UNIX:
        return CurlTarget(socket=server.socket)
    host = server.tcp or request.host
    return CurlTarget(base_url=f"http://{host}")


# --- encoding ------------------------------------------------------------------------------


_html = pages.html_response


async def _answer(
    request: web.Request, selector: Selector, *, resolve: bool = False
) -> web.Response:
    html = _wants_html(request, selector)
    sessions.require_html(request, html)
    try:
        outcome: Outcome = await _runner(request).run(
            selector, _curl_target(request), resolve=resolve
        )
    except HoodydError as exc:
        if not html:
            raise
        return _html(pages.error_page(exc.status, exc.message, exc.reason), exc.status)
    if outcome.redirect is not None:
        return web.Response(status=303, headers={"Location": outcome.redirect})
    response = outcome.response
    if html:
        if response.status == "resolved":
            return _html(
                pages.candidates_page(
                    response.set_id or "", response.candidates or [], selector, response.warnings
                )
            )
        return _html(pages.run_page(response))
    return json_response(response)


# --- handlers ------------------------------------------------------------------------------


async def run_get(request: web.Request) -> web.Response:
    params = query_selector_params(request, RUN_QUERY)
    return await _answer(request, selector_from_params(params))


async def run_post(request: web.Request) -> web.Response:
    """A JSON Selector, or a page's form post (the same fields and rules as the query
    string of `GET /run`), which is answered as HTML."""
    if request.content_type == "application/x-www-form-urlencoded":
        form = await request.post()
        params = {name: [str(v) for v in form.getall(name)] for name in form}
        params.pop("format", None)
        selector = selector_from_params(form_params(params, RUN_QUERY))
        return await _answer(request, msgspec.structs.replace(selector, format="html"))
    return await _answer(request, await decode_body(request, Selector))


async def resolve_get(request: web.Request) -> web.Response:
    """The command a selector resolves to, never run (beta.10 and later's `resolveGet`)."""
    params = query_selector_params(request, RESOLVE_QUERY)
    selector = resolve_selector(selector_from_params(params))
    return await _answer(request, selector, resolve=True)


async def resolve_post(request: web.Request) -> web.Response:
    """`resolve_get` with a JSON Selector (beta.10 and later's `resolve`)."""
    selector = resolve_selector(await decode_body(request, Selector))
    return await _answer(request, selector, resolve=True)


def _raw_rest(request: web.Request) -> str:
    """The go path as sent (still percent-encoded): the selector parser splits it at `/`
    and `%2F` alike, then decodes each segment once."""
    raw = request.rel_url.raw_path
    marker = raw.find("/go/", len(BASE))
    return raw[marker + len("/go/") :]


async def go(request: web.Request) -> web.Response:
    path = go_path_params(_raw_rest(request), GO_QUERY)
    params = merge_params(path, query_selector_params(request, GO_QUERY))
    return await _answer(request, selector_from_params(params))


async def terminal_go(request: web.Request) -> web.Response:
    terminal_id = parse_terminal_id(request.match_info["terminal_id"])
    path = go_path_params(_raw_rest(request), TERMINAL_GO_QUERY)
    params = merge_params(path, query_selector_params(request, TERMINAL_GO_QUERY))
    params["terminal_id"] = [str(terminal_id)]
    return await _answer(request, selector_from_params(params))


async def preflight(request: web.Request) -> web.Response:
    selector = await decode_body(request, Selector)
    return json_response(await _runner(request).preflight(selector))


async def recipe_run(request: web.Request) -> web.Response:
    body = await decode_body(request, RecipeExecutionRequest, optional=True)
    selector = _runner(request).recipe_selector(request.match_info["name"], body)
    return await _answer(request, selector)


async def terminal_view(request: web.Request) -> web.Response:
    """A terminal's recent output and commands as a page (the redirect target of a run)."""
    terminal_id = parse_terminal_id(request.match_info["terminal_id"])
    assert terminal_id is not None
    terminals = request.config_dict.get(TERMINALS)
    try:
        if terminals is None:
            raise InvalidRequest(
                "no terminal service runs here", reason=Reason.TERMINALS_UNAVAILABLE
            )
        session = terminals.session(terminal_id)
        history = terminals.history(terminal_id, 20)
    except HoodydError as exc:
        return _html(pages.error_page(exc.status, exc.message, exc.reason), exc.status)
    state = "running" if session.running else "exited"
    return _html(pages.terminal_page(terminal_id, state, history.data))
