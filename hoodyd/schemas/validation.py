"""Decoding into the wire Structs with errors a client can act on, for the edge and for the
services that decode stored or nested input (a recipe's selector, a batch item).

A missing field is named, an unknown enum value comes back with the list of allowed values
(derived from the Struct's `Literal` types), an unknown field or parameter is named; every
failure is an `InvalidRequest` (400) with a stable reason.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec

from hoodyd.errors import InvalidRequest, Reason
from hoodyd.schemas.run import ENUM_VALUES

T = TypeVar("T")

_ENUM = re.compile(r"Invalid enum value (?P<value>.*?) - at `\$(?P<path>[^`]*)`")
_MISSING = re.compile(r"Object missing required field `(?P<field>\w+)`")
_UNKNOWN = re.compile(r"Object contains unknown field `(?P<field>[^`]+)`")
_AT = re.compile(r"at `\$\.?(?P<path>[^`]*)`")


def decode_json(raw: bytes | str, kind: type[T]) -> T:
    try:
        return msgspec.json.decode(raw, type=kind)
    except msgspec.ValidationError as exc:
        # msgspec reports the first problem it meets; a missing required field is the one
        # a client most needs to hear about (a wrapped {"selector": …} lacks `app`)
        missing = _missing_required(raw, kind)
        if missing is not None:
            raise InvalidRequest(
                f"missing field '{missing}': {exc}",
                reason=Reason.MISSING_FIELD,
                extra={"field": missing},
            ) from exc
        raise translate(exc, kind, source="body") from exc
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"malformed JSON body: {exc}", reason=Reason.MALFORMED_JSON) from exc
    except RecursionError:
        # a WebSocket message is not read through read_body's depth check
        raise InvalidRequest("JSON nests too deeply", reason=Reason.JSON_TOO_DEEP) from None


def _missing_required(raw: bytes | str, kind: type[Any]) -> str | None:
    if not (isinstance(kind, type) and issubclass(kind, msgspec.Struct)):
        return None
    try:
        obj = msgspec.json.decode(raw)
    except (msgspec.DecodeError, RecursionError):
        return None
    if not isinstance(obj, dict):
        return None
    for field in msgspec.structs.fields(kind):
        if field.required and field.encode_name not in obj:
            return field.encode_name
    return None


def convert(obj: object, kind: type[T], *, strict: bool = True, source: str = "body") -> T:
    """`msgspec.convert` with the errors above (`strict=False` reads numbers from strings)."""
    try:
        return msgspec.convert(obj, type=kind, strict=strict)
    except msgspec.ValidationError as exc:
        raise translate(exc, kind, source=source) from exc


# --- errors ----------------------------------------------------------------------------------


def invalid_enum(field: str, value: object, allowed: tuple[str, ...] = ()) -> InvalidRequest:
    choices = allowed or ENUM_VALUES.get(field, ())
    return InvalidRequest(
        f"invalid value {value!r} for '{field}': allowed values are {', '.join(choices)}",
        reason=Reason.INVALID_ENUM,
        extra={"field": field, "allowed": list(choices)},
    )


def translate(exc: msgspec.ValidationError, kind: type[Any], *, source: str) -> InvalidRequest:
    text = str(exc)
    enum = _ENUM.search(text)
    if enum:
        path = enum.group("path")
        field = re.sub(r"\[\d+\]", "", path).rsplit(".", 1)[-1]
        # the contract's order where it is listed; msgspec reports literals sorted
        allowed = ENUM_VALUES.get(field) or _literal_values(kind, field)
        if allowed:
            error = invalid_enum(field, enum.group("value").strip("'\""), allowed)
            if source == "body":
                error.message += f" (at ${path})"
            return error
    missing = _MISSING.search(text)
    if missing:
        field = missing.group("field")
        where = "query parameter" if source == "query" else "field"
        return InvalidRequest(
            f"missing {where} '{field}': {text}",
            reason=Reason.MISSING_FIELD,
            extra={"field": field},
        )
    unknown = _UNKNOWN.search(text)
    if unknown:
        return InvalidRequest(
            f"unknown field '{unknown.group('field')}': {text}", reason=Reason.UNKNOWN_FIELD
        )
    at = _AT.search(text)
    name = at.group("path") if at else "?"
    if source == "query" and ("`int`" in text or "`int |" in text):
        bounded = re.search(r"[<>]=? ?-?\d", text)
        reason = Reason.OUT_OF_RANGE if bounded else Reason.INVALID_INTEGER
        return InvalidRequest(f"Invalid value for '{name}': {text}", reason=reason)
    return InvalidRequest(f"invalid request {source}: {text}", reason=Reason.VALIDATION_FAILED)


def _literal_values(kind: type[Any], field: str) -> tuple[str, ...]:
    if not (isinstance(kind, type) and issubclass(kind, msgspec.Struct)):
        return ()
    info = msgspec.inspect.type_info(kind)
    if not isinstance(info, msgspec.inspect.StructType):
        return ()
    for candidate in info.fields:
        if candidate.encode_name == field:
            return _literals(candidate.type)
    return ()


def _literals(info: msgspec.inspect.Type) -> tuple[str, ...]:
    if isinstance(info, msgspec.inspect.LiteralType):
        return tuple(str(value) for value in info.values)
    if isinstance(info, msgspec.inspect.UnionType):
        return tuple(value for member in info.types for value in _literals(member))
    if isinstance(info, msgspec.inspect.ListType):
        return _literals(info.item_type)
    return ()
