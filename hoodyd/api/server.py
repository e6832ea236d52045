"""The HTTP server under the app: requests the HTTP parser refuses are answered in JSON too.

aiohttp answers a request it cannot parse (a request line or header over its limits, bad
bytes) with a text/plain 400 before any middleware runs. hoodyd's runner swaps in a request
handler whose error page is the same JSON error every other failure gets; the request never
reached a route, so its body carries both areas' fields (`success`, `error`, `code`, `reason`).
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler

from hoodyd.errors import Reason

log = structlog.get_logger()

# aiohttp's default limit of a request line and of one header field
MAX_FIELD_SIZE = 8190


def parse_error_body(status: int, message: str, reason: Reason) -> bytes:
    return msgspec.json.encode(
        {"success": False, "error": message, "code": status, "reason": reason}
    )


class _JsonErrorRequestHandler(RequestHandler):
    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if isinstance(exc, LineTooLong):
            status, reason = 431, Reason.HEADERS_TOO_LARGE
            text = f"request line or a header field exceeds {MAX_FIELD_SIZE} bytes"
        elif isinstance(exc, HttpProcessingError) and 400 <= status < 500:
            reason, text = Reason.MALFORMED_REQUEST, "malformed HTTP request"
        else:
            status, reason, text = 500, Reason.INTERNAL_ERROR, "internal error"
        log.warning("request_refused", status=status, reason=reason, error=str(exc)[:200])
        response = web.Response(
            body=parse_error_body(status, text, reason),
            status=status,
            content_type="application/json",
        )
        response.force_close()
        return response


class _JsonErrorServer(web.Server):
    def __call__(self) -> RequestHandler:
        return _JsonErrorRequestHandler(self, loop=self._loop, **self._kwargs)


class Runner(web.AppRunner):
    """`web.AppRunner` whose connections answer unparseable requests with JSON errors."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # the same handler, factory and settings; only the per-connection handler differs
        settings: dict[str, Any] = dict(server._kwargs)
        return _JsonErrorServer(
            server.request_handler,
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            loop=asyncio.get_running_loop(),
            **settings,
        )
