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

from hoodyd.apps.catalog.records import AppRecord, LaunchPlan, SyncContext, SyncResult
from hoodyd.schemas.run import SourceKind

Settings = TypeVar("Settings", bound=msgspec.Struct)

# how long one sync may wait on a CLI or an HTTP answer; each source has its own default
TimeoutS = Annotated[float, Meta(gt=0, description="seconds a sync waits on a CLI or a fetch")]
HttpUrl = Annotated[str, Meta(pattern=r"^https?://", description="an http(s) URL")]

_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<key>[^`]+)`$")
_MISSING = re.compile(r"^Object missing required field `(?P<key>[^`]+)`$")


class InvalidSettings(ValueError):
    """A source's config does not decode into its settings; the message names the key."""


class MissingSettings(InvalidSettings):
    """A source's config lacks a key its sync needs (`config.url` of a remote index)."""


def decode_settings(settings_type: type[Settings], config: Mapping[str, Any] | None) -> Settings:
    """`config` (a source's `config` object, absent meaning `{}`) as `settings_type`."""
    try:
        return msgspec.convert(dict(config or {}), settings_type)
    except msgspec.ValidationError as exc:
        message = _explain(str(exc), settings_type)
        if _MISSING.match(str(exc).partition(" - at `$")[0]):
            raise MissingSettings(message) from exc
        raise InvalidSettings(message) from exc


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
    # what a user does when `detect` says this machine cannot serve the source (diagnostics
    # show it next to the cause)
    fix: str = "make the tool or file the source reads available"

    @abstractmethod
    def detect(self, environ: Mapping[str, str]) -> str | None:
        """None when this machine can serve the source, else why it cannot."""

    # the `config` keys a source cannot sync without, as alternatives (any one set will do);
    # its `detect` names them, since a first start has no config to read
    config_needs: tuple[tuple[str, ...], ...] = ()

    def diagnose(self, environ: Mapping[str, str], config: Mapping[str, Any] | None) -> str | None:
        """`detect` for a configured source: a source whose config has what it needs is not
        said to need it (diagnostics)."""
        given = config or {}
        if self.config_needs and any(
            all(given.get(key) not in (None, "", [], {}) for key in keys)
            for keys in self.config_needs
        ):
            return None
        return self.detect(environ)

    @abstractmethod
    def sync(self, ctx: SyncContext[Settings]) -> SyncResult: ...

    @abstractmethod
    def launch_plan(
        self, record: AppRecord, settings: Settings, details: Mapping[str, Any]
    ) -> LaunchPlan: ...

    def settings(self, config: Mapping[str, Any] | None) -> Settings:
        return decode_settings(self.settings_type, config)

    def plan(
        self,
        record: AppRecord,
        config: Mapping[str, Any],
        details: Mapping[str, Any],
        executable: str | None = None,
    ) -> LaunchPlan:
        """`launch_plan` from the source's `config` object as the runtime config holds it
        (already checked when it was stored, so it decodes). `executable` is the name of
        the record's binary the query matched, if it matched one: the plan then runs that
        binary, not the one the source would run for the package as a whole."""
        planned = self.launch_plan(record, self.settings(config), details)
        return with_executable(planned, record, executable)


def with_executable(plan: LaunchPlan, record: AppRecord, executable: str | None) -> LaunchPlan:
    """The plan with argv[0] swapped for the matched executable, when the source planned
    another of the same record's binaries (a package that ships several programs: `top`
    matched procps, which the source would launch as its first binary). A plan whose argv[0]
    is not one of the record's binaries (`nix run`, a wrapper) is the source's own choice
    and stays as it is."""
    if not executable or not plan.argv:
        return plan
    # index keys are lower-case, so the match is compared lower-case
    by_name = {binary.rsplit("/", 1)[-1].lower(): binary for binary in record.binaries}
    chosen = by_name.get(executable.lower())
    current = plan.argv[0].rsplit("/", 1)[-1].lower()
    if chosen is None or current == executable.lower():
        return plan
    if current not in by_name and current != record.name.lower():
        return plan
    notes = [*plan.notes, f"runs {chosen}, the program the query matched"]
    # a requirement about which program to run is answered by the match itself
    requirements = [r for r in plan.requirements if r.kind != "executable"]
    return msgspec.structs.replace(
        plan, argv=[chosen, *plan.argv[1:]], notes=notes, requirements=requirements
    )
