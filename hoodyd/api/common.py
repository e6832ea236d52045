"""Decoding and encoding at the HTTP edge, shared by every area's handlers.

Bodies are decoded once into msgspec Structs; query strings are parsed with the contract's
strict rules (daemon booleans accept only `true`/`false`).
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec
import numpy as np
from aiohttp import web

from hoodyd.api.keys import CONFIG
from hoodyd.errors import InvalidRequest, PayloadTooLarge

T = TypeVar("T")

_encoder = msgspec.json.Encoder()

# No request body of the contract nests deeper than a handful of levels; the bound keeps a
# crafted body from exhausting the decoder's recursion (a 500) or being stored and re-read.
MAX_JSON_DEPTH = 64
# a JSON string, or an unterminated one running to the end: every match attempt succeeds,
# so stripping strings stays linear in the body's size whatever the bytes are
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=_encoder.encode(body), status=status, content_type="application/json")


async def read_body(request: web.Request) -> bytes:
    """The request's JSON body, refused whole when it is too large or nested too deeply."""
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        limit = request.app[CONFIG].server.max_body_bytes
        raise PayloadTooLarge(
            f"request body exceeds the {limit}-byte limit", reason="PAYLOAD_TOO_LARGE"
        ) from exc
    if json_depth(raw) > MAX_JSON_DEPTH:
        raise InvalidRequest(
            f"JSON body nests deeper than {MAX_JSON_DEPTH} levels", reason="JSON_TOO_DEEP"
        )
    return raw


def json_depth(raw: bytes) -> int:
    """How deep arrays and objects nest in `raw` (brackets inside strings do not count)."""
    brackets = _JSON_STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    if len(brackets) <= 2 * MAX_JSON_DEPTH:
        depth = peak = 0
        for byte in brackets:
            depth += 1 if byte in b"[{" else -1
            peak = max(peak, depth)
        return peak
    codes = np.frombuffer(brackets, dtype=np.uint8)
    steps = np.where((codes == ord("[")) | (codes == ord("{")), 1, -1)
    return int(np.cumsum(steps).max())


async def decode_body(request: web.Request, kind: type[T], *, optional: bool = False) -> T:
    """Decode the JSON body into `kind`; an empty body is `{}` when `optional`."""
    raw = await read_body(request)
    if not raw.strip():
        if not optional:
            raise InvalidRequest("request body is required", reason="BODY_REQUIRED")
        raw = b"{}"
    return decode_json(raw, kind)


def decode_json(raw: bytes | str, kind: type[T]) -> T:
    try:
        return msgspec.json.decode(raw, type=kind)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"invalid request body: {exc}", reason="VALIDATION_FAILED") from exc
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"malformed JSON body: {exc}", reason="MALFORMED_JSON") from exc


def query_bool(request: web.Request, name: str) -> bool | None:
    """Strict boolean: only `true` and `false`; anything else is a 400."""
    value = request.query.get(name)
    if value is None:
        return None
    if value == "true":
        return True
    if value == "false":
        return False
    raise InvalidRequest(
        f"Invalid value for '{name}': expected 'true' or 'false', got {value!r}",
        reason="INVALID_BOOLEAN",
    )


def parse_flag(name: str, value: str) -> bool:
    """Lenient boolean (terminal and run areas): `true`, `1` or a bare key are true."""
    if value in ("", "true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise InvalidRequest(
        f"Invalid value for '{name}': expected true, false, 1 or 0, got {value!r}",
        reason="INVALID_BOOLEAN",
    )


def query_flag(request: web.Request, name: str) -> bool | None:
    value = request.query.get(name)
    return None if value is None else parse_flag(name, value)


def query_int(
    request: web.Request, name: str, *, low: int | None = None, high: int | None = None
) -> int | None:
    value = request.query.get(name)
    if value is None:
        return None
    return parse_int(value, name, low=low, high=high)


def parse_int(value: str, name: str, *, low: int | None = None, high: int | None = None) -> int:
    try:
        number = int(value, 10)
    except ValueError:
        raise InvalidRequest(
            f"Invalid value for '{name}': expected an integer, got {value!r}",
            reason="INVALID_INTEGER",
        ) from None
    if (low is not None and number < low) or (high is not None and number > high):
        raise InvalidRequest(
            f"Invalid value for '{name}': {number} is outside {low}-{high}", reason="OUT_OF_RANGE"
        )
    return number


def path_int(request: web.Request, name: str, *, low: int = 1, high: int | None = None) -> int:
    return parse_int(request.match_info[name], name, low=low, high=high)
