"""The canonical OpenAPI documents: YAML in the package, served as YAML and as converted JSON."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

import msgspec
import yaml
from aiohttp import web

OPENAPI_PACKAGE = "hoodyd.api.specs"
Handler = Callable[[web.Request], Awaitable[web.Response]]


def load_yaml_text(area: str) -> str:
    return resources.files(OPENAPI_PACKAGE).joinpath(f"{area}.yaml").read_text()


def load_document(area: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(load_yaml_text(area))
    return document


def openapi_handlers(area: str) -> tuple[Handler, Handler]:
    """Handlers serving the area's document verbatim as YAML and, converted once here, as JSON."""
    text = load_yaml_text(area)
    as_json = msgspec.json.encode(yaml.safe_load(text))

    async def openapi_yaml(_request: web.Request) -> web.Response:
        return web.Response(text=text, content_type="application/yaml")

    async def openapi_json(_request: web.Request) -> web.Response:
        return web.Response(body=as_json, content_type="application/json")

    return openapi_yaml, openapi_json
