"""`GET /api/v1/daemon/metrics`: the daemon's Prometheus metrics (`hoodyd.metrics`) in the text
exposition format. Protected like every other route: a scraper on TCP sends the bearer token."""

from __future__ import annotations

from aiohttp import web

from hoodyd.api.keys import METRICS
from hoodyd.metrics import CONTENT_TYPE


async def metrics(request: web.Request) -> web.Response:
    body = request.config_dict[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})
