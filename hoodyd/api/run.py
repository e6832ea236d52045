"""Handlers of the App Execution API (`/api/v1/run`): decode, call AppService, encode.

Query strings follow CONTRACT.md §1.5: `q` and `name` alias `app`; `source` and `tags` may be
repeated or comma-joined; `limit` is clamped to 1..100. `/recipes/{name}/run` and the other
run endpoints belong to the run planner, not here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from hoodyd.api import run_exec
from hoodyd.api.common import json_response, parse_int, read_body
from hoodyd.api.health import add_health_route
from hoodyd.api.keys import CONFIG, RUN
from hoodyd.api.openapi import add_openapi_routes
from hoodyd.apps import wire
from hoodyd.apps.service import AppService
from hoodyd.errors import InvalidRequest
from hoodyd.schemas.run import (
    ENUM_VALUES,
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

BASE = "/api/v1/run"
_ENUM_QUERY_FIELDS = ("os", "kind", "arch")
_STRING_QUERY_FIELDS = (
    "profile", "channel", "version", "variant", "publisher", "repo", "release", "asset",
)  # fmt: skip


def _service(request: web.Request) -> AppService:
    return request.app[RUN]


async def _body(request: web.Request, kind: type[Any], *, optional: bool = False) -> Any:
    raw = await read_body(request)
    if not raw.strip():
        if not optional:
            raise InvalidRequest("request body is required", reason="BODY_REQUIRED")
        raw = b"{}"
    return wire.decode(raw, kind)


def _list_param(request: web.Request, name: str) -> list[str] | None:
    values = [part.strip() for raw in request.query.getall(name, []) for part in raw.split(",")]
    values = [v for v in values if v]
    return values or None


def selector_from_query(request: web.Request) -> Selector:
    """Build a Selector from the search query parameters, with the contract's aliases."""
    query = request.query
    app = query.get("app") or query.get("q") or query.get("name")
    if app is None:
        raise InvalidRequest(
            "missing field 'app' (query parameter app, q or name)",
            reason="MISSING_FIELD",
            extra={"field": "app"},
        )
    fields: dict[str, Any] = {"app": app}
    for name in _ENUM_QUERY_FIELDS:
        value = query.get(name)
        if value is not None:
            if value not in ENUM_VALUES[name]:
                raise wire.invalid_enum(name, value)
            fields[name] = value
    sources = _list_param(request, "source")
    if sources is not None:
        for value in sources:
            if value not in ENUM_VALUES["source"]:
                raise wire.invalid_enum("source", value)
        fields["source"] = sources
    tags = _list_param(request, "tags")
    if tags is not None:
        fields["tags"] = tags
    for name in _STRING_QUERY_FIELDS:
        if name in query:
            fields[name] = query[name]
    if "limit" in query:
        fields["limit"] = parse_int(query["limit"], "limit")
    return wire.convert(fields, Selector)


# --- search ----------------------------------------------------------------------------------


async def search(request: web.Request) -> web.Response:
    return json_response(_service(request).search(selector_from_query(request)))


async def search_paged(request: web.Request) -> web.Response:
    body = await _body(request, PagedSearchRequest)
    return json_response(_service(request).search_paged(body))


async def search_job(request: web.Request) -> web.Response:
    selector = await _body(request, Selector)
    return json_response(_service(request).start_search_job(selector), status=202)


async def get_job(request: web.Request) -> web.Response:
    wait = request.query.get("wait")
    if wait not in (None, "done"):
        raise InvalidRequest(
            f"invalid value {wait!r} for 'wait': allowed values are done", reason="INVALID_ENUM"
        )
    timeout_ms = request.query.get("timeout_ms")
    timeout = parse_int(timeout_ms, "timeout_ms", low=0, high=120_000) if timeout_ms else 0
    job = await _service(request).job(
        request.match_info["job_id"], wait=wait == "done", timeout_ms=timeout
    )
    return json_response(job)


async def batch(request: web.Request) -> web.Response:
    body = await _body(request, BatchRequest)
    return json_response(await _service(request).batch(body.items))


# --- runtime configuration ---------------------------------------------------------------------


async def get_config(request: web.Request) -> web.Response:
    return json_response(_service(request).runtime_config())


async def list_sources(request: web.Request) -> web.Response:
    return json_response(_service(request).list_sources())


async def add_source(request: web.Request) -> web.Response:
    body = await _body(request, SourceConfig)
    return json_response(await _service(request).add_source(body), status=201)


async def patch_source(request: web.Request) -> web.Response:
    body = await _body(request, SourcePatch)
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
    body = await _body(request, ProfileConfig)
    return json_response(await _service(request).add_profile(body), status=201)


async def patch_profile(request: web.Request) -> web.Response:
    body = await _body(request, ProfilePatch)
    return json_response(await _service(request).patch_profile(request.match_info["profile"], body))


async def delete_profile(request: web.Request) -> web.Response:
    await _service(request).delete_profile(request.match_info["profile"])
    return web.Response(status=204)


async def select_profile(request: web.Request) -> web.Response:
    return json_response(await _service(request).select_profile(request.match_info["profile"]))


async def list_recipes(request: web.Request) -> web.Response:
    return json_response(_service(request).list_recipes())


async def add_recipe(request: web.Request) -> web.Response:
    body = await _body(request, RecipeConfig)
    return json_response(await _service(request).add_recipe(body), status=201)


async def get_recipe(request: web.Request) -> web.Response:
    return json_response(_service(request).get_recipe(request.match_info["name"]))


async def patch_recipe(request: web.Request) -> web.Response:
    body = await _body(request, RecipePatch)
    return json_response(await _service(request).patch_recipe(request.match_info["name"], body))


async def delete_recipe(request: web.Request) -> web.Response:
    await _service(request).delete_recipe(request.match_info["name"])
    return web.Response(status=204)


async def recipe_search(request: web.Request) -> web.Response:
    body = await _body(request, RecipeExecutionRequest, optional=True)
    return json_response(_service(request).recipe_search(request.match_info["name"], body))


# --- setup -----------------------------------------------------------------------------------


async def _service_ctx(app: web.Application) -> AsyncIterator[None]:
    service = app[RUN]
    await service.start()
    yield
    await service.close()


def setup(app: web.Application) -> None:
    config = app[CONFIG]
    app[RUN] = AppService(config.state_path, config.run)
    app.cleanup_ctx.append(_service_ctx)
    add_health_route(app, BASE, "hoodyd-run")
    add_openapi_routes(app, "run", BASE)
    router = app.router
    router.add_get(f"{BASE}/search", search)
    router.add_post(f"{BASE}/search/paged", search_paged)
    router.add_post(f"{BASE}/search/jobs", search_job)
    router.add_get(f"{BASE}/jobs/{{job_id}}", get_job)
    router.add_post(f"{BASE}/batch", batch)
    router.add_get(f"{BASE}/config", get_config)
    router.add_get(f"{BASE}/sources", list_sources)
    router.add_post(f"{BASE}/sources", add_source)
    router.add_post(f"{BASE}/sources/sync", sync_sources)
    router.add_patch(f"{BASE}/sources/{{source_id}}", patch_source)
    router.add_delete(f"{BASE}/sources/{{source_id}}", delete_source)
    router.add_post(f"{BASE}/sources/{{source_id}}/sync", sync_source)
    router.add_get(f"{BASE}/sources/{{source_id}}/diagnostics", source_diagnostics)
    router.add_get(f"{BASE}/profiles", list_profiles)
    router.add_post(f"{BASE}/profiles", add_profile)
    router.add_patch(f"{BASE}/profiles/{{profile}}", patch_profile)
    router.add_delete(f"{BASE}/profiles/{{profile}}", delete_profile)
    router.add_post(f"{BASE}/profiles/{{profile}}/select", select_profile)
    router.add_get(f"{BASE}/recipes", list_recipes)
    router.add_post(f"{BASE}/recipes", add_recipe)
    router.add_get(f"{BASE}/recipes/{{name}}", get_recipe)
    router.add_patch(f"{BASE}/recipes/{{name}}", patch_recipe)
    router.add_delete(f"{BASE}/recipes/{{name}}", delete_recipe)
    router.add_post(f"{BASE}/recipes/{{name}}/search", recipe_search)
    run_exec.setup(app)  # run, go paths, preflight, recipe run
