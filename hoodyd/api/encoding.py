"""Answers at the HTTP edge: JSON bodies, and HTML pages with their content security policy."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import msgspec
from aiohttp import web

_encoder = msgspec.json.Encoder()


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=_encoder.encode(body), status=status, content_type="application/json")


class SharedJson:
    """The JSON of values that many answers share and nobody changes (a search's candidate
    list, built once per ranked list and served again to every repeat of that search),
    encoded once. A value is known by its identity: each entry holds its value, so no other
    object can take its id while it is kept, and a new list (a re-ranked search, after a
    sync or a settings edit) is a new entry. The least recently used go first, by count and
    by bytes; a value larger than `max_value_bytes` is encoded every time."""

    def __init__(
        self, max_entries: int = 64, max_bytes: int = 8 << 20, max_value_bytes: int = 1 << 20
    ) -> None:
        self.max_entries, self.max_bytes, self.max_value_bytes = (
            max_entries,
            max_bytes,
            max_value_bytes,
        )
        self._kept: OrderedDict[int, tuple[object, msgspec.Raw]] = OrderedDict()
        self._bytes = 0

    def raw(self, value: object) -> msgspec.Raw:
        """`value` as JSON, to embed in an answer (msgspec writes a `Raw` as it is)."""
        key = id(value)
        kept = self._kept.get(key)
        if kept is not None and kept[0] is value:
            self._kept.move_to_end(key)
            return kept[1]
        raw = msgspec.Raw(_encoder.encode(value))
        size = len(raw)
        if size > self.max_value_bytes:
            return raw
        self._kept[key] = (value, raw)
        self._bytes += size
        while len(self._kept) > self.max_entries or self._bytes > self.max_bytes:
            _, (_, dropped) = self._kept.popitem(last=False)
            self._bytes -= len(dropped)
        return raw

    def __len__(self) -> int:
        return len(self._kept)
