"""Decoding run-area JSON with errors a client can act on: a missing field is named, and an
unknown enum value comes back with the list of allowed values."""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec

from hoodyd.errors import InvalidRequest
from hoodyd.schemas.run import ENUM_VALUES

T = TypeVar("T")

_ENUM = re.compile(r"Invalid enum value (?P<value>.*?) - at `\$(?P<path>[^`]*)`")
_MISSING = re.compile(r"Object missing required field `(?P<field>\w+)`")
_UNKNOWN = re.compile(r"Object contains unknown field `(?P<field>[^`]+)`")


def invalid_enum(field: str, value: object) -> InvalidRequest:
    allowed = ", ".join(ENUM_VALUES.get(field, ()))
    return InvalidRequest(
        f"invalid value {value!r} for '{field}': allowed values are {allowed}",
        reason="INVALID_ENUM",
        extra={"field": field, "allowed": list(ENUM_VALUES.get(field, ()))},
    )


def decode(raw: bytes | str, kind: type[T]) -> T:
    try:
        return msgspec.json.decode(raw, type=kind)
    except msgspec.ValidationError as exc:
        # msgspec reports the first problem it meets; a missing required field is the one
        # a client most needs to hear about (a wrapped {"selector": …} lacks `app`)
        missing = _missing_required(raw, kind)
        if missing is not None:
            raise InvalidRequest(
                f"missing field '{missing}': {exc}",
                reason="MISSING_FIELD",
                extra={"field": missing},
            ) from exc
        raise translate(exc) from exc
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"malformed JSON body: {exc}", reason="MALFORMED_JSON") from exc


def _missing_required(raw: bytes | str, kind: type[Any]) -> str | None:
    if not (isinstance(kind, type) and issubclass(kind, msgspec.Struct)):
        return None
    try:
        obj = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return None
    if not isinstance(obj, dict):
        return None
    for field in msgspec.structs.fields(kind):
        if field.required and field.encode_name not in obj:
            return field.encode_name
    return None


def convert(obj: object, kind: type[T]) -> T:
    try:
        return msgspec.convert(obj, type=kind)
    except msgspec.ValidationError as exc:
        raise translate(exc) from exc


def translate(exc: msgspec.ValidationError) -> InvalidRequest:
    text = str(exc)
    enum = _ENUM.search(text)
    if enum:
        path = enum.group("path")
        field = re.sub(r"\[\d+\]", "", path).rsplit(".", 1)[-1]
        if field in ENUM_VALUES:
            error = invalid_enum(field, enum.group("value").strip("'\""))
            error.message += f" (at ${path})"
            return error
    missing = _MISSING.search(text)
    if missing:
        return InvalidRequest(
            f"missing field '{missing.group('field')}': {text}",
            reason="MISSING_FIELD",
            extra={"field": missing.group("field")},
        )
    unknown = _UNKNOWN.search(text)
    if unknown:
        return InvalidRequest(
            f"unknown field '{unknown.group('field')}': {text}", reason="UNKNOWN_FIELD"
        )
    return InvalidRequest(f"invalid request body: {text}", reason="VALIDATION_FAILED")
