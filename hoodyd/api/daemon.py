"""Handlers of the Program Control API (`/api/v1/daemon`): decode, call ProgramService, encode."""

from __future__ import annotations

from aiohttp import web

from hoodyd.api.health import add_health_route
from hoodyd.api.openapi import add_openapi_routes

BASE = "/api/v1/daemon"


def setup(app: web.Application) -> None:
    add_health_route(app, BASE, "hoodyd-daemon")
    add_openapi_routes(app, "daemon", BASE)
