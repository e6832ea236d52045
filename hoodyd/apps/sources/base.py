"""The interface every package source implements.

A source does two things: `sync` (in a worker thread) turns whatever the source reads — a
directory, a manifest, a CLI's JSON, apt's lists — into normalized `AppRecord`s; `plan`
(at query time, cheap, no I/O) tells how to launch one record. `detect` says whether this
machine can serve the source at all, so a first start enables only what works.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from hoodyd.apps.records import AppRecord, LaunchPlan, SyncContext, SyncResult
from hoodyd.schemas.run import SourceKind


class Source(Protocol):
    source_type: str
    provider: SourceKind
    # a source whose records come from a trusted list are marked verified
    trusted: bool

    def detect(self, environ: Mapping[str, str]) -> str | None:
        """None when this machine can serve the source, else why it cannot."""
        ...

    def sync(self, ctx: SyncContext) -> SyncResult: ...

    def plan(
        self, record: AppRecord, config: Mapping[str, Any], details: Mapping[str, Any]
    ) -> LaunchPlan: ...


def config_str(config: Mapping[str, Any], key: str, default: str = "") -> str:
    value = config.get(key, default)
    return value if isinstance(value, str) else default


def config_list(config: Mapping[str, Any], key: str) -> list[str] | None:
    value = config.get(key)
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return list(value)
    if isinstance(value, str):
        return [value]
    return None
