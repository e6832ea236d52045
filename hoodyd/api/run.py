"""Handlers of the App Execution API (`/api/v1/run`): decode, call AppService, encode.

Query strings follow CONTRACT.md §1.5 and are parsed exactly as `/run` parses them
(`hoodyd.api.selectors`); `limit` is clamped to 1..100. `/recipes/{name}/run` and the other
run endpoints belong to the run planner (`hoodyd.api.run_exec`), not here.
"""

from __future__ import annotations

import msgspec
from aiohttp import web

from hoodyd.api import pages, sessions
from hoodyd.api.decoding import decode_body, decode_query
from hoodyd.api.encoding import SharedJson, json_response
from hoodyd.api.keys import RUN, RUNNER
from hoodyd.api.links import candidate_run_path
from hoodyd.api.selectors import (
    APP_ALIASES,
    SEARCH_QUERY,
    query_selector_params,
    selector_from_params,
)
from hoodyd.apps.service import AppService
from hoodyd.errors import HoodydError
from hoodyd.schemas.queries import JobQuery
from hoodyd.schemas.run import (
    BatchRequest,
    PagedSearchRequest,
    ProfileConfig,
    ProfilePatch,
    RecipeConfig,
    RecipeExecutionRequest,
    RecipePatch,
    Selector,
    SourceConfig,
    SourcePatch,
)

# the JSON of the candidate lists recent searches answered (shared by their repeats)
_SEARCHED = SharedJson()


def _service(request: web.Request) -> AppService:
    return request.config_dict[RUN]


# --- search ----------------------------------------------------------------------------------


async def search(request: web.Request) -> web.Response:
    """JSON, or with `format=html` (or `Accept: text/html` and no format) the search page:
    a form, and each candidate with a Run button (a POST form)."""
    params = query_selector_params(request, SEARCH_QUERY)
    wanted = params.get("format")
    html = wanted == ["html"] if wanted else "text/html" in request.headers.get("Accept", "")
    sessions.require_html(request, html)
    if html and not {"app", *APP_ALIASES} & set(params):
        return pages.html_response(pages.search_page())
    try:
        selector = selector_from_params(params)
        answer = await _service(request).search_settled(selector, run_link=candidate_run_path)
    except HoodydError as exc:
        if not html:
            raise
        page = pages.error_page(exc.status, exc.message, exc.reason)
        return pages.html_response(page, exc.status)
    if html:
        page = pages.candidates_page(answer.set_id, answer.candidates, selector, answer.warnings)
        return pages.html_response(page)
    # a repeated search answers the candidates built for its ranked list: their JSON too
    return json_response(
        msgspec.structs.replace(answer, candidates=_SEARCHED.raw(answer.candidates))
    )


async def search_paged(request: web.Request) -> web.Response:
    body = await decode_body(request, PagedSearchRequest)
    return json_response(_service(request).search_paged(body, run_link=candidate_run_path))


async def search_job(request: web.Request) -> web.Response:
    selector = await decode_body(request, Selector)
    job = _service(request).start_search_job(selector, run_link=candidate_run_path)
    return json_response(job, status=202)


async def get_job(request: web.Request) -> web.Response:
    query = decode_query(request, JobQuery)
    job = await _service(request).job(
        request.match_info["job_id"], wait=query.wait == "done", timeout_ms=query.timeout_ms
    )
    return json_response(job)


async def batch(request: web.Request) -> web.Response:
    body = await decode_body(request, BatchRequest)
    runner = request.config_dict[RUNNER]
    return json_response(await runner.batch(body.items))


# --- runtime configuration ---------------------------------------------------------------------


async def get_config(request: web.Request) -> web.Response:
    return json_response(_service(request).runtime_config())


async def list_sources(request: web.Request) -> web.Response:
    return json_response(_service(request).list_sources())


async def add_source(request: web.Request) -> web.Response:
    body = await decode_body(request, SourceConfig)
    return json_response(await _service(request).add_source(body), status=201)


async def patch_source(request: web.Request) -> web.Response:
    body = await decode_body(request, SourcePatch)
    return json_response(
        await _service(request).patch_source(request.match_info["source_id"], body)
    )


async def delete_source(request: web.Request) -> web.Response:
    await _service(request).delete_source(request.match_info["source_id"])
    return web.Response(status=204)


async def sync_source(request: web.Request) -> web.Response:
    return json_response(_service(request).sync_source(request.match_info["source_id"]), status=202)


async def sync_sources(request: web.Request) -> web.Response:
    return json_response(_service(request).sync_all(), status=202)


async def source_diagnostics(request: web.Request) -> web.Response:
    return json_response(_service(request).diagnostics(request.match_info["source_id"]))


async def list_profiles(request: web.Request) -> web.Response:
    return json_response(_service(request).list_profiles())


async def add_profile(request: web.Request) -> web.Response:
    body = await decode_body(request, ProfileConfig)
    return json_response(await _service(request).add_profile(body), status=201)


async def patch_profile(request: web.Request) -> web.Response:
    body = await decode_body(request, ProfilePatch)
    return json_response(await _service(request).patch_profile(request.match_info["profile"], body))


async def delete_profile(request: web.Request) -> web.Response:
    await _service(request).delete_profile(request.match_info["profile"])
    return web.Response(status=204)


async def select_profile(request: web.Request) -> web.Response:
    return json_response(await _service(request).select_profile(request.match_info["profile"]))


async def list_recipes(request: web.Request) -> web.Response:
    return json_response(_service(request).list_recipes())


async def add_recipe(request: web.Request) -> web.Response:
    body = await decode_body(request, RecipeConfig)
    return json_response(await _service(request).add_recipe(body), status=201)


async def get_recipe(request: web.Request) -> web.Response:
    return json_response(_service(request).get_recipe(request.match_info["name"]))


async def patch_recipe(request: web.Request) -> web.Response:
    body = await decode_body(request, RecipePatch)
    return json_response(await _service(request).patch_recipe(request.match_info["name"], body))


async def delete_recipe(request: web.Request) -> web.Response:
    await _service(request).delete_recipe(request.match_info["name"])
    return web.Response(status=204)


async def recipe_search(request: web.Request) -> web.Response:
    body = await decode_body(request, RecipeExecutionRequest, optional=True)
    found = _service(request).recipe_search(
        request.match_info["name"], body, run_link=candidate_run_path
    )
    return json_response(found)
