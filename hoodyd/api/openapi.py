"""The canonical OpenAPI documents: YAML in the package, served as YAML and as converted JSON."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

import msgspec
import yaml
from aiohttp import web

OPENAPI_PACKAGE = "hoodyd.api.specs"
Handler = Callable[[web.Request], Awaitable[web.Response]]

# libyaml's parser where PyYAML was built with it: the same documents, parsed about ten times
# faster than the pure-Python one (which cost a start-up about 0.35 s of CPU)
SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@functools.cache
def load_yaml_text(area: str) -> str:
    return resources.files(OPENAPI_PACKAGE).joinpath(f"{area}.yaml").read_text()


def load_document(area: str) -> dict[str, Any]:
    """The area's document, a fresh copy the caller may change."""
    document: dict[str, Any] = yaml.load(load_yaml_text(area), Loader=SafeLoader)
    return document


@functools.cache
def document_json(area: str) -> bytes:
    """The area's document as JSON, converted once per process."""
    return msgspec.json.encode(load_document(area))


def openapi_handlers(area: str) -> tuple[Handler, Handler]:
    """Handlers serving the area's document verbatim as YAML and, converted once, as JSON."""
    text = load_yaml_text(area)
    as_json = document_json(area)

    async def openapi_yaml(_request: web.Request) -> web.Response:
        return web.Response(text=text, content_type="application/yaml")

    async def openapi_json(_request: web.Request) -> web.Response:
        return web.Response(body=as_json, content_type="application/json")

    return openapi_yaml, openapi_json
