"""Candidate sets: each ranked result list gets a `set_id` that later calls (a pick, the
next page) can refer to. Sets live `ttl` seconds (300 by default, CONTRACT.md §3.3); memory
is bounded by the number of sets kept (least recently used dropped first) and by the cap on
items per set."""

from __future__ import annotations

import base64
import binascii
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field

import msgspec

from hoodyd.apps.search.ranking import Scored
from hoodyd.errors import Conflict, InvalidRequest, Reason


@dataclass(slots=True)
class CandidateSet:
    set_id: str
    items: list[Scored]
    # the normalized selector the set was computed for, so a cursor cannot cross queries
    selector_key: bytes
    expires_at: float
    # when each searched source's index was synced, as the set saw it: a pick from the set
    # after a source re-synced is re-resolved against the current index (or refused)
    synced: dict[str, float] = field(default_factory=dict)


class _Cursor(msgspec.Struct, array_like=True):
    set_id: str
    offset: int


# how often expired sets behind recently used ones are looked for (a full pass over the sets)
SWEEP_INTERVAL = 1.0


class CandidateSetStore:
    def __init__(self, *, ttl: float = 300.0, max_sets: int = 512) -> None:
        self.ttl = ttl
        self.max_sets = max_sets
        self._sets: OrderedDict[str, CandidateSet] = OrderedDict()
        self._next_sweep = 0.0

    def __len__(self) -> int:
        return len(self._sets)

    def put(
        self, items: list[Scored], selector_key: bytes, synced: dict[str, float] | None = None
    ) -> CandidateSet:
        now = time.monotonic()
        self._expire(now)
        entry = CandidateSet(uuid.uuid4().hex, items, selector_key, now + self.ttl, synced or {})
        self._sets[entry.set_id] = entry
        while len(self._sets) > self.max_sets:
            self._sets.popitem(last=False)
        return entry

    def get(self, set_id: str) -> CandidateSet | None:
        now = time.monotonic()
        entry = self._sets.get(set_id)
        if entry is None or entry.expires_at <= now:
            self._sets.pop(set_id, None)
            return None
        self._sets.move_to_end(set_id)
        return entry

    def _expire(self, now: float) -> None:
        # sets are kept in (roughly) insertion order, so expired ones are at the front
        while self._sets:
            first = next(iter(self._sets.values()))
            if first.expires_at > now:
                break
            self._sets.popitem(last=False)
        # a set read again moved to the back, so an older one may expire behind it: look for
        # those at most once a second, not on every search (`get` never answers an expired
        # set, and `max_sets` bounds the memory either way)
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_INTERVAL
        for set_id in [k for k, v in self._sets.items() if v.expires_at <= now]:
            del self._sets[set_id]


def encode_cursor(set_id: str, offset: int) -> str:
    raw = msgspec.msgpack.encode(_Cursor(set_id, offset))
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        parsed = msgspec.msgpack.decode(raw, type=_Cursor)
    except (binascii.Error, ValueError, msgspec.DecodeError, msgspec.ValidationError):
        raise InvalidRequest("invalid cursor", reason=Reason.INVALID_CURSOR) from None
    if parsed.offset < 0:
        raise InvalidRequest("invalid cursor", reason=Reason.INVALID_CURSOR)
    return parsed.set_id, parsed.offset


def expired() -> Conflict:
    return Conflict("cursor set expired", reason=Reason.CURSOR_SET_EXPIRED)
