"""The interface every package source implements, and how a source's settings are decoded.

A source does two things: `sync` (in a worker thread) turns whatever the source reads — a
directory, a manifest, a CLI's JSON, apt's lists — into normalized `AppRecord`s;
`launch_plan` (at query time, cheap, no I/O) tells how to launch one record. `detect` says
whether this machine can serve the source at all, so a first start enables only what works.

Each source declares the settings it reads as a frozen Struct (`settings_type`) next to the
code that reads them. The `config` object of a source in the runtime config is decoded into
that Struct once, when the runtime config is loaded or edited (`decode_settings`): an
unknown key or a value of the wrong type is refused there, with the key named, so sync and
plan code reads typed attributes and never checks a value again.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Annotated, Any, Generic, TypeVar

import msgspec
from msgspec import Meta

from hoodyd.apps.records import AppRecord, LaunchPlan, SyncContext, SyncResult
from hoodyd.schemas.run import SourceKind

Settings = TypeVar("Settings", bound=msgspec.Struct)

# how long one sync may wait on a CLI or an HTTP answer; each source has its own default
TimeoutS = Annotated[float, Meta(gt=0, description="seconds a sync waits on a CLI or a fetch")]
HttpUrl = Annotated[str, Meta(pattern=r"^https?://", description="an http(s) URL")]

_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<key>[^`]+)`$")
_MISSING = re.compile(r"^Object missing required field `(?P<key>[^`]+)`$")


class InvalidSettings(ValueError):
    """A source's config does not decode into its settings; the message names the key."""


def decode_settings(settings_type: type[Settings], config: Mapping[str, Any] | None) -> Settings:
    """`config` (a source's `config` object, absent meaning `{}`) as `settings_type`."""
    try:
        return msgspec.convert(dict(config or {}), settings_type)
    except msgspec.ValidationError as exc:
        raise InvalidSettings(_explain(str(exc), settings_type)) from exc


def _explain(text: str, settings_type: type[msgspec.Struct]) -> str:
    """msgspec's `Expected `str`, got `int` - at `$.path`` as `config.path: expected …`."""
    problem, _, at = text.partition(" - at `$")
    where = "config" + at.rstrip("`")
    unknown = _UNKNOWN.match(problem)
    if unknown:
        known = ", ".join(setting_names(settings_type)) if where == "config" else ""
        return f"{where}.{unknown['key']}: unknown key" + (f" (known: {known})" if known else "")
    missing = _MISSING.match(problem)
    if missing:
        return f"{where}.{missing['key']}: required"
    return f"{where}: {problem[:1].lower()}{problem[1:]}"


def setting_names(settings_type: type[msgspec.Struct]) -> tuple[str, ...]:
    """The keys a `config` object of this settings type may hold."""
    return tuple(field.encode_name for field in msgspec.structs.fields(settings_type))


class Source(ABC, Generic[Settings]):
    source_type: str
    provider: SourceKind
    # a source whose records come from a trusted list are marked verified
    trusted: bool
    settings_type: type[Settings]

    @abstractmethod
    def detect(self, environ: Mapping[str, str]) -> str | None:
        """None when this machine can serve the source, else why it cannot."""

    @abstractmethod
    def sync(self, ctx: SyncContext[Settings]) -> SyncResult: ...

    @abstractmethod
    def launch_plan(
        self, record: AppRecord, settings: Settings, details: Mapping[str, Any]
    ) -> LaunchPlan: ...

    def settings(self, config: Mapping[str, Any] | None) -> Settings:
        return decode_settings(self.settings_type, config)

    def plan(
        self, record: AppRecord, config: Mapping[str, Any], details: Mapping[str, Any]
    ) -> LaunchPlan:
        """`launch_plan` from the source's `config` object as the runtime config holds it
        (already checked when it was stored, so it decodes)."""
        return self.launch_plan(record, self.settings(config), details)
