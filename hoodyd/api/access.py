"""Which routes answer without credentials: declared where each route is registered.

Every route is protected unless its handler is registered through `open_route`; the
authentication middleware asks the route the router resolved, never the path text, so a path
that merely ends like an open route (`/go/.../health`) is still protected. The open routes are
exactly the three `/api/v1/{area}/health`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_OPEN_ATTRIBUTE = "__hoodyd_open_route__"


def open_route(handler: Handler) -> Handler:
    """Declare `handler` as answering on TCP without a bearer token."""
    setattr(handler, _OPEN_ATTRIBUTE, True)
    return handler


def is_open(request: web.Request) -> bool:
    """True when the route the router matched for `request` was declared open."""
    handler: Any = request.match_info.handler
    return bool(getattr(handler, _OPEN_ATTRIBUTE, False))
