"""The one edge-decoding layer: request bodies and query strings into msgspec Structs.

`decode_body(request, T)` and `decode_query(request, T)` are the only ways a handler reads
input. What a field accepts — its type, its bounds, whether it is a list — is declared once on
the Struct; everything here is derived from that declaration:

- a query parameter may be given once, unless its field is a list (then it may repeat and be
  comma-joined); an unknown parameter is a 400 (a misspelt `dry_run` must never turn into a run);
- in the terminal and run areas a bare flag (`?dry_run`) is true (`lenient_flags`); the daemon
  area's booleans are `Literal["true", "false"]` on its Structs, so nothing else passes there;
- every failure is a 400 with a stable reason: UNKNOWN_PARAMETER / UNKNOWN_FIELD,
  MISSING_FIELD (naming the field), INVALID_ENUM (listing the allowed values),
  INVALID_BOOLEAN, INVALID_INTEGER, OUT_OF_RANGE, MALFORMED_JSON, JSON_TOO_DEEP,
  VALIDATION_FAILED; a body over the size limit is a 413.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, TypeVar

import msgspec
import numpy as np
from aiohttp import web

from hoodyd.api.keys import CONFIG
from hoodyd.errors import InvalidRequest, PayloadTooLarge, Reason
from hoodyd.schemas.validation import convert, decode_json

T = TypeVar("T")

# No request body of the contract nests deeper than a handful of levels; the bound keeps a
# crafted body from exhausting the decoder's recursion (a 500) or being stored and re-read.
MAX_JSON_DEPTH = 64
# a JSON string, or an unterminated one running to the end: every match attempt succeeds,
# so stripping strings stays linear in the body's size whatever the bytes are
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))


# --- bodies ----------------------------------------------------------------------------------


async def read_body(request: web.Request) -> bytes:
    """The request's JSON body, refused whole when it is too large or nested too deeply."""
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        limit = request.config_dict[CONFIG].server.max_body_bytes
        raise PayloadTooLarge(
            f"request body exceeds the {limit}-byte limit", reason=Reason.PAYLOAD_TOO_LARGE
        ) from exc
    if json_depth(raw) > MAX_JSON_DEPTH:
        raise InvalidRequest(
            f"JSON body nests deeper than {MAX_JSON_DEPTH} levels", reason=Reason.JSON_TOO_DEEP
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
            raise InvalidRequest("request body is required", reason=Reason.BODY_REQUIRED)
        raw = b"{}"
    return decode_json(raw, kind)


# --- query strings ---------------------------------------------------------------------------


def query_params(request: web.Request) -> dict[str, list[str]]:
    """Every query parameter with all the values it was given, in order."""
    return {name: request.query.getall(name) for name in request.query}


def decode_query(request: web.Request, kind: type[T], *, lenient_flags: bool = False) -> T:
    return decode_params(query_params(request), kind, lenient_flags=lenient_flags)


def decode_params(
    params: Mapping[str, list[str]], kind: type[T], *, lenient_flags: bool = False
) -> T:
    """Query-style parameters (each name with its values) into the Struct `kind`."""
    shapes = _field_shapes(kind)
    unknown = sorted(set(params) - set(shapes))
    if unknown:
        raise InvalidRequest(
            f"Unknown query parameter(s): {', '.join(unknown)}", reason=Reason.UNKNOWN_PARAMETER
        )
    repeat_only: frozenset[str] = getattr(kind, "repeat_only", frozenset())
    fields: dict[str, Any] = {}
    for name, values in params.items():
        shape = shapes[name]
        if shape == "list" and name in repeat_only:
            fields[name] = values
            continue
        if shape == "list":
            items = [part.strip() for raw in values for part in raw.split(",") if part.strip()]
            if items:
                fields[name] = items
            continue
        if len(values) > 1:
            raise InvalidRequest(
                f"'{name}' is given more than once", reason=Reason.DUPLICATE_PARAMETER
            )
        value = values[0]
        if shape == "bool":
            value = _flag(name, value, lenient=lenient_flags)
        fields[name] = value
    return convert(fields, kind, strict=False, source="query")


def _flag(name: str, value: str, *, lenient: bool) -> str:
    allowed = ("", "true", "false", "1", "0") if lenient else ("true", "false")
    if value not in allowed:
        expected = "true, false, 1 or 0" if lenient else "'true' or 'false'"
        raise InvalidRequest(
            f"Invalid value for '{name}': expected {expected}, got {value!r}",
            reason=Reason.INVALID_BOOLEAN,
        )
    return "true" if value == "" else value


_SHAPES: dict[type[Any], dict[str, str]] = {}


def _field_shapes(kind: type[Any]) -> dict[str, str]:
    """name → "list" | "bool" | "scalar" for every field of the Struct `kind` (cached)."""
    shapes = _SHAPES.get(kind)
    if shapes is None:
        info = msgspec.inspect.type_info(kind)
        assert isinstance(info, msgspec.inspect.StructType)
        shapes = {field.encode_name: _shape(field.type) for field in info.fields}
        _SHAPES[kind] = shapes
    return shapes


def _shape(info: msgspec.inspect.Type) -> str:
    types = info.types if isinstance(info, msgspec.inspect.UnionType) else (info,)
    for member in types:
        if isinstance(member, msgspec.inspect.ListType | msgspec.inspect.SetType):
            return "list"
        if isinstance(member, msgspec.inspect.BoolType):
            return "bool"
    return "scalar"


# --- path segments ---------------------------------------------------------------------------


def parse_int(value: str, name: str, *, low: int | None = None, high: int | None = None) -> int:
    try:
        number = int(value, 10)
    except ValueError:
        raise InvalidRequest(
            f"Invalid value for '{name}': expected an integer, got {value!r}",
            reason=Reason.INVALID_INTEGER,
        ) from None
    if (low is not None and number < low) or (high is not None and number > high):
        raise InvalidRequest(
            f"Invalid value for '{name}': {number} is outside {low}-{high}",
            reason=Reason.OUT_OF_RANGE,
        )
    return number


def path_int(request: web.Request, name: str, *, low: int = 1, high: int | None = None) -> int:
    return parse_int(request.match_info[name], name, low=low, high=high)
