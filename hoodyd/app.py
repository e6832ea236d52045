"""The application factory used by the daemon and by the tests alike."""

from __future__ import annotations

from aiohttp import web

from hoodyd.api import daemon as daemon_api
from hoodyd.api import run as run_api
from hoodyd.api import terminal as terminal_api
from hoodyd.api.keys import CONFIG, TOKEN
from hoodyd.api.middleware import authenticate, request_context
from hoodyd.config import Config

# Each API area adds its routes, its OpenAPI document and its services' cleanup_ctx.
AREAS = (daemon_api.setup, terminal_api.setup, run_api.setup)


def create_app(config: Config, *, token: str | None = None) -> web.Application:
    app = web.Application(
        middlewares=[request_context, authenticate],
        client_max_size=config.server.max_body_bytes,
    )
    app[CONFIG] = config
    if token:
        app[TOKEN] = token
    for setup in AREAS:
        setup(app)
    return app
