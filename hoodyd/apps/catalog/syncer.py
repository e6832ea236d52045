"""Source syncs and the per-source indexes they produce: loading the cached indexes at
start-up, resyncing the missing or stale ones, background sync jobs, and each source's
diagnostics.

Nothing here shells out or reads big files on the event loop: syncs and index loads run in
worker threads and swap a finished index in whole. A source that fails to sync keeps its
previous records (or none) and reports the error in its diagnostics; searches go on across
the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import structlog

from hoodyd.apps.catalog.catalog import Catalog
from hoodyd.apps.catalog.index import (
    SourceIndex,
    build_index_file,
    load_index,
    remove_index,
    save_index,
)
from hoodyd.apps.catalog.jobs import JobHandle, JobStore
from hoodyd.apps.catalog.records import SourceUnavailable, SyncCancelled, SyncContext
from hoodyd.apps.catalog.runtime_config import source_settings
from hoodyd.apps.catalog.sources import SOURCES
from hoodyd.config import RunConfig
from hoodyd.errors import NotFound
from hoodyd.schemas.run import Job, RuntimeConfig, SourceConfig, SourceDiagnostics

log = structlog.get_logger()

SYNC_NICENESS = 10


def iso(timestamp: float) -> str:
    return (
        datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    )


@dataclass
class SourceState:
    """What the service knows about one configured source at run time."""

    index: SourceIndex | None = None
    last_success_at: float | None = None
    last_error_at: float | None = None
    last_error: str | None = None
    last_sync_job_id: str | None = None
    last_search_latency_ms: float | None = None
    syncing: JobHandle | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Syncer:
    def __init__(
        self,
        catalog: Catalog,
        jobs: JobStore,
        index_dir: Path,
        settings: RunConfig,
        environ: Mapping[str, str],
        *,
        pass_env: Sequence[str] = (),
    ) -> None:
        self.catalog = catalog
        self.jobs = jobs
        self.index_dir = index_dir
        self.settings = settings
        self.environ = environ
        self.pass_env = tuple(pass_env)
        self.states: dict[str, SourceState] = {}
        self._cancel = threading.Event()
        # syncs parse big lists: one worker thread at a lower CPU priority, so a sync never
        # competes with searches (or with the rest of the machine) for more than a core
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="hoodyd-sync", initializer=_lower_priority
        )

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self, config: RuntimeConfig) -> None:
        """Load every cached index (in a thread), then sync in the background the enabled
        sources that have no index yet or a stale one."""
        started = time.perf_counter()
        loaded = await asyncio.to_thread(self._load_indexes, [s.source_id for s in config.sources])
        types = {s.source_id: s.source_type for s in config.sources}
        for source_id, index in loaded.items():
            if index is not None and index.source_type != types[source_id]:
                loaded[source_id] = index = None  # left by an earlier source of that id
            state = self.states.setdefault(source_id, SourceState())
            state.index = index
            if index is not None:
                state.last_success_at = index.synced_at
        log.info(
            "run_indexes_loaded",
            sources=len(config.sources),
            records=sum(len(i) for i in loaded.values() if i is not None),
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        if self.settings.auto_sync:
            now = time.time()
            for source in config.sources:
                index = loaded.get(source.source_id)
                stale = index is None or (
                    self.settings.resync_after > 0
                    and now - index.synced_at > self.settings.resync_after
                )
                if source.enabled and stale:
                    self.sync_source(source.source_id)

    def _load_indexes(self, source_ids: list[str]) -> dict[str, SourceIndex | None]:
        out: dict[str, SourceIndex | None] = {}
        for source_id in source_ids:
            try:
                file = load_index(self.index_dir, source_id)
            except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
                log.warning("run_index_unreadable", source_id=source_id, error=str(exc))
                file = None
            out[source_id] = SourceIndex(file) if file is not None else None
        return out

    def cancel(self) -> None:
        """Ask a running sync to stop: it sees the flag at its next check and ends soon after."""
        self._cancel.set()

    def close(self) -> None:
        self._cancel.set()
        self._executor.shutdown(wait=False, cancel_futures=True)

    # --- sources coming and going --------------------------------------------------------

    def added(self, source: SourceConfig) -> None:
        self.states.setdefault(source.source_id, SourceState())
        if source.enabled and self.settings.auto_sync:
            self.sync_source(source.source_id)  # usable as soon as its first sync lands

    def changed(self, before: SourceConfig, after: SourceConfig) -> None:
        needs_sync = after.enabled and (
            not before.enabled or before.config != after.config or before.pin != after.pin
        )
        if needs_sync and self.settings.auto_sync:
            self.sync_source(after.source_id)

    async def removed(self, source_id: str) -> None:
        self.states.pop(source_id, None)
        await asyncio.to_thread(remove_index, self.index_dir, source_id)

    # --- what searches read --------------------------------------------------------------

    def index(self, source_id: str) -> SourceIndex | None:
        state = self.states.get(source_id)
        return state.index if state is not None else None

    def details(self, source_id: str) -> dict[str, Any]:
        """The facts of the source's last sync that its launch plans use."""
        index = self.index(source_id)
        return index.details if index is not None else {}

    def searched(self, source_id: str, latency_ms: float) -> None:
        state = self.states.get(source_id)
        if state is not None:
            state.last_search_latency_ms = latency_ms

    def first_syncs_running(self, source_ids: Iterable[str]) -> list[str]:
        """The sources among `source_ids` that have no index yet and whose sync is under
        way: their records are not searchable until it lands."""
        return [
            source_id
            for source_id in source_ids
            if (state := self.states.get(source_id)) is not None
            and state.index is None
            and state.syncing is not None
            and not state.syncing.done.is_set()
        ]

    async def wait_first_syncs(self, timeout_s: float) -> None:
        """Wait at most `timeout_s` for every first sync under way (a fresh start's)."""
        running = [
            state.syncing.done
            for state in self.states.values()
            if state.index is None and state.syncing is not None and not state.syncing.done.is_set()
        ]
        if not running or timeout_s <= 0:
            return
        waits = [asyncio.ensure_future(done.wait()) for done in running]
        try:
            await asyncio.wait(waits, timeout=timeout_s)
        finally:
            for wait in waits:
                wait.cancel()

    def failures(self, source_ids: Iterable[str]) -> dict[str, str]:
        """The sources among `source_ids` that have nothing to search because their sync
        failed, each with its last error."""
        failed: dict[str, str] = {}
        for source_id in source_ids:
            state = self.states.get(source_id)
            if state is not None and state.index is None and state.last_error:
                failed[source_id] = state.last_error
        return failed

    # --- sync jobs -----------------------------------------------------------------------

    def sync_source(self, source_id: str) -> Job:
        source = self.catalog.sources.get(source_id)
        if self.catalog.settings(source_id) is None:
            # a disabled source saved without what a sync needs: a 400 naming the key
            source_settings(source, syncing=True)
        state = self.states.setdefault(source_id, SourceState())
        if state.syncing is not None and not state.syncing.done.is_set():
            return state.syncing.job  # join the sync under way

        async def body(handle: JobHandle) -> tuple[None, Any]:
            outcome = await self._sync_one(source_id, handle)
            if outcome["status"] == "error":
                raise SourceUnavailable(outcome["error"])
            return None, outcome

        handle = self.jobs.start("source-sync", body)
        handle.progress(source_id=source_id)
        state.syncing = handle
        state.last_sync_job_id = handle.job.job_id
        return handle.job

    def sync_all(self) -> Job:
        enabled = [s.source_id for s in self.catalog.sources.all() if s.enabled]

        async def body(handle: JobHandle) -> tuple[None, Any]:
            handle.progress(total=len(enabled), done=0, sources={})
            results: dict[str, Any] = {}
            for n, source_id in enumerate(enabled, 1):
                state = self.states.get(source_id)
                if state is None:
                    continue  # deleted while the job ran
                running = state.syncing
                if running is not None and running is not handle and not running.done.is_set():
                    # a sync of this source is under way: its outcome is this one's
                    await running.done.wait()
                    results[source_id] = running.job.result or {
                        "status": "error",
                        "error": running.job.error,
                    }
                else:
                    state.syncing = handle
                    results[source_id] = await self._sync_one(source_id, handle)
                handle.progress(done=n, sources=dict(results))
            return None, {"sources": results}

        handle = self.jobs.start("source-sync", body)
        for source_id in enabled:
            self.states.setdefault(source_id, SourceState()).last_sync_job_id = handle.job.job_id
        return handle.job

    async def _sync_one(self, source_id: str, handle: JobHandle) -> dict[str, Any]:
        state = self.states.setdefault(source_id, SourceState())
        async with state.lock:  # one sync per source at a time
            try:
                source = self.catalog.sources.get(source_id)
            except NotFound:
                return {"status": "error", "error": "source was deleted"}
            implementation = SOURCES.get(source.source_type)
            settings = self.catalog.settings(source_id)
            loop = asyncio.get_running_loop()

            def report(facts: dict[str, Any]) -> None:
                # the loop may already be closed when a cancelled sync reports a last time
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(lambda: handle.progress(source_id=source_id, **facts))

            started = time.time()
            try:
                if implementation is None or settings is None:
                    raise SourceUnavailable(
                        f"source type {source.source_type} is not supported by this daemon"
                    )
                ctx = SyncContext(
                    settings,
                    environ=self.environ,
                    pass_env=self.pass_env,
                    cancel=self._cancel,
                    progress=report,
                    pin_sha256=source.pin.sha256 if source.pin else None,
                )
                index = await loop.run_in_executor(self._executor, self._sync_worker, source, ctx)
            except SyncCancelled:
                raise asyncio.CancelledError from None
            except Exception as exc:  # a broken source must never break the others
                message = str(exc) or type(exc).__name__
                state.last_error, state.last_error_at = message, time.time()
                log.warning("run_source_sync_failed", source_id=source_id, error=message)
                return {"status": "error", "error": message}
            if source_id not in self.states:
                await asyncio.to_thread(remove_index, self.index_dir, source_id)
                return {"status": "error", "error": "source was deleted"}
            self.states[source_id].index = index
            state.last_success_at = index.synced_at
            state.last_error = None
            log.info(
                "run_source_synced",
                source_id=source_id,
                records=len(index),
                duration_ms=round((time.time() - started) * 1000, 1),
            )
            return {"status": "ok", "records": len(index), "duration_ms": index.duration_ms}

    def _sync_worker(self, source: SourceConfig, ctx: SyncContext[msgspec.Struct]) -> SourceIndex:
        implementation = SOURCES[source.source_type]
        started = time.perf_counter()
        result = implementation.sync(ctx)
        ctx.check_cancelled()
        ctx.report(records=len(result.records), phase="indexing")
        file = build_index_file(
            source_id=source.source_id,
            source_type=source.source_type,
            synced_at=time.time(),
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
            records=result.records,
            details=result.details,
        )
        save_index(self.index_dir, file)
        return SourceIndex(file)

    # --- diagnostics ---------------------------------------------------------------------

    def diagnostics(self, source_id: str) -> SourceDiagnostics:
        source = self.catalog.sources.get(source_id)
        state = self.states.setdefault(source_id, SourceState())
        implementation = SOURCES.get(source.source_type)
        index = state.index
        details: dict[str, Any] = {
            "source_type": source.source_type,
            "record_count": len(index) if index else 0,
            "syncing": state.syncing is not None and not state.syncing.done.is_set(),
        }
        if index is not None:
            details["last_sync_at"] = iso(index.synced_at)
            details["age_s"] = round(time.time() - index.synced_at, 1)
            details["sync_duration_ms"] = index.duration_ms
            details["sync"] = index.details
        detect = (
            implementation.diagnose(self.environ, source.config)
            if implementation
            else "source type not supported"
        )
        path = f"/api/v1/run/sources/{source_id}"
        # each answer that is not "ok" names its cause and what fixes it
        cause = f"; this machine cannot serve it: {detect}" if detect else ""
        remedy = f"{implementation.fix}, then " if detect and implementation else ""
        if not source.enabled:
            status = "disabled"
            reason = (
                f"disabled in the runtime config{cause}; to use it, {remedy}"
                f'enable it: PATCH {path} {{"enabled": true}}'
            )
        elif state.last_error is not None and (
            state.last_success_at is None or (state.last_error_at or 0) >= state.last_success_at
        ):
            status = "error"
            reason = (
                f"enabled; the last sync failed: {state.last_error}{cause}; to fix it, {remedy}"
                f"correct the source (PATCH {path}) and sync again: POST {path}/sync"
            )
        elif index is not None:
            status, reason = "ok", "enabled"
        elif state.syncing is not None and not state.syncing.done.is_set():
            status, reason = "idle", "enabled; the first sync is under way"
        else:
            status, reason = "idle", f"enabled; not synced yet: POST {path}/sync"
        if detect:
            details["cause"], details["fix"] = detect, implementation.fix if implementation else ""
        return SourceDiagnostics(
            source_id=source_id,
            status=status,  # type: ignore[arg-type]
            last_success_at=iso(state.last_success_at) if state.last_success_at else None,
            last_error_at=iso(state.last_error_at) if state.last_error_at else None,
            last_error=state.last_error,
            last_search_latency_ms=state.last_search_latency_ms,
            last_sync_job_id=state.last_sync_job_id,
            cache_hint=f"index file {self.index_dir / (source_id + '.msgpack')}",
            effective_enabled_reason=reason,
            provider_details=details,
        )


def _lower_priority() -> None:
    with contextlib.suppress(OSError):  # Linux: a thread id names just that thread
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), SYNC_NICENESS)
