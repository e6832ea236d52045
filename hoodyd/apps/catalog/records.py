"""The normalized record every source syncs into, and what a source tells the planner.

Records are immutable, array-like and untracked by the garbage collector: the index holds
a couple of hundred thousand of them, so each byte and each GC header counts.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

import msgspec

from hoodyd.childenv import tool_environment
from hoodyd.schemas.run import RecordKind, Requirement


class AppRecord(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """One runnable thing a source knows about. `ident` is unique within its source and
    stable across syncs; the candidate id is `<source_id>:<ident>`."""

    ident: str
    name: str
    title: str
    description: str = ""
    kind: RecordKind = "cli"
    os: str = "linux"
    arch: str = "any"
    version: str = ""
    binaries: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    # extra searchable words (desktop Keywords/GenericName), matched at the "word" tier
    keywords: tuple[str, ...] = ()
    homepage: str = ""
    installed: bool = False
    # argv when the source knows it exactly (desktop Exec, manifest argv); else planned
    argv: tuple[str, ...] = ()
    terminal: bool = False
    publisher: str = ""
    repo: str = ""
    channel: str = ""
    variant: str = ""
    # True for records that are not applications (libraries, docs): ranked lower
    auxiliary: bool = False
    # source-specific facts the planner needs (nix attr path, apt section, desktop file)
    extra: tuple[tuple[str, str], ...] = ()

    def extra_value(self, key: str) -> str | None:
        for name, value in self.extra:
            if name == key:
                return value
        return None


class LaunchPlan(msgspec.Struct, frozen=True):
    """How to launch a record: argv (joined with `shlex.join` by the planner), missing
    requirements to resolve first, and notes that explain the plan."""

    argv: list[str]
    requirements: list[Requirement] = msgspec.field(default_factory=list)
    notes: list[str] = msgspec.field(default_factory=list)
    env: dict[str, str] | None = None
    # the kind of the program this plan runs when the source knows it better than the
    # record does (a desktop entry's `Terminal=` for the entry chosen)
    kind: RecordKind | None = None


class SyncResult(msgspec.Struct):
    records: list[AppRecord]
    # facts for diagnostics: files read, skipped entries, commands run
    details: dict[str, Any] = msgspec.field(default_factory=dict)


class SyncCancelled(Exception):
    """The daemon is shutting down; the sync stops and keeps the previous index."""


Settings = TypeVar("Settings")


class SyncContext(Generic[Settings]):
    """What a sync running in a worker thread may use: the source's own settings (its
    config, decoded), the process environment (to read settings from, never to hand to a
    tool: `tool_environ` is that), a progress callback and a cancellation flag."""

    def __init__(
        self,
        settings: Settings,
        *,
        environ: Mapping[str, str],
        pass_env: Sequence[str] = (),
        cancel: threading.Event | None = None,
        progress: Callable[[dict[str, Any]], None] | None = None,
        pin_sha256: str | None = None,
    ) -> None:
        self.settings = settings
        self.environ = environ
        self.pass_env = tuple(pass_env)
        self.cancel = cancel or threading.Event()
        self._progress = progress
        self.pin_sha256 = pin_sha256

    def tool_environ(self, tool: str) -> dict[str, str]:
        """The environment of catalogue tool `tool` (`hoodyd.childenv.TOOL_KEYS`): the base
        every child of hoodyd's account gets, `server.pass_env`, and that tool's settings."""
        return tool_environment(tool, pass_env=self.pass_env, source=self.environ)

    def report(self, **facts: Any) -> None:
        if self._progress is not None:
            self._progress(facts)

    def check_cancelled(self) -> None:
        if self.cancel.is_set():
            raise SyncCancelled("sync cancelled")


class SourceUnavailable(Exception):
    """A source cannot sync (tool missing, file unreadable, bad manifest): its message is
    what diagnostics show."""
