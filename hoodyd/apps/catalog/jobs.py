"""Background jobs (source syncs, search resolves): a UUID, a status that moves
queued → running → done | error, progress, and a result. Readers can long-poll until a job
is done. Finished jobs are kept `ttl` seconds (10 minutes), refreshed on each read; the
number kept is bounded."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import structlog

from hoodyd.errors import NotFound, Reason
from hoodyd.schemas.run import Job, JobKind, JobResultType

log = structlog.get_logger()

MAX_WAIT_MS = 120_000


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JobHandle:
    """A running job's writable state; the coroutine reports progress through it."""

    def __init__(self, kind: JobKind) -> None:
        stamp = now_iso()
        self.job = Job(
            job_id=str(uuid.uuid4()), kind=kind, status="queued", created_at=stamp, updated_at=stamp
        )
        self.done = asyncio.Event()
        self.expires_at = float("inf")
        self.task: asyncio.Task[None] | None = None

    def progress(self, **facts: Any) -> None:
        merged = dict(self.job.progress or {})
        merged.update(facts)
        self.job.progress = merged
        self.job.updated_at = now_iso()


JobBody = Callable[[JobHandle], Awaitable[tuple[JobResultType | None, Any]]]


class JobStore:
    def __init__(self, *, ttl: float = 600.0, max_jobs: int = 1000) -> None:
        self.ttl = ttl
        self.max_jobs = max_jobs
        self._jobs: dict[str, JobHandle] = {}

    def start(self, kind: JobKind, body: JobBody) -> JobHandle:
        self._prune()
        handle = JobHandle(kind)
        self._jobs[handle.job.job_id] = handle
        handle.task = asyncio.create_task(self._run(handle, body), name=f"job-{handle.job.job_id}")
        return handle

    async def _run(self, handle: JobHandle, body: JobBody) -> None:
        handle.job.status = "running"
        handle.job.updated_at = now_iso()
        try:
            result_type, result = await body(handle)
        except asyncio.CancelledError:
            self._finish(handle, error="cancelled: the daemon is shutting down")
            raise
        except Exception as exc:  # every failure ends in the job, never in the loop
            log.warning(
                "job_failed", job_id=handle.job.job_id, kind=handle.job.kind, error=str(exc)
            )
            self._finish(handle, error=str(exc) or type(exc).__name__)
        else:
            handle.job.result_type = result_type
            handle.job.result = result
            self._finish(handle)

    def _finish(self, handle: JobHandle, *, error: str | None = None) -> None:
        handle.job.status = "error" if error else "done"
        handle.job.error = error
        handle.job.updated_at = now_iso()
        handle.expires_at = time.monotonic() + self.ttl
        handle.done.set()

    async def get(self, job_id: str, *, wait: bool = False, timeout_ms: int = 0) -> Job:
        handle = self._jobs.get(job_id)
        if handle is None or handle.expires_at <= time.monotonic():
            self._jobs.pop(job_id, None)
            raise NotFound(f"job not found: {job_id}", reason=Reason.JOB_NOT_FOUND)
        if wait and not handle.done.is_set() and timeout_ms > 0:
            # on timeout, answer with the state reached so far, as the contract's long poll does
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(handle.done.wait(), min(timeout_ms, MAX_WAIT_MS) / 1000)
        if handle.done.is_set():
            handle.expires_at = time.monotonic() + self.ttl
        return handle.job

    async def close(self) -> None:
        tasks = [h.task for h in self._jobs.values() if h.task is not None and not h.task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _prune(self) -> None:
        now = time.monotonic()
        for job_id in [k for k, h in self._jobs.items() if h.expires_at <= now]:
            del self._jobs[job_id]
        if len(self._jobs) >= self.max_jobs:
            finished = sorted(
                (h for h in self._jobs.values() if h.done.is_set()), key=lambda h: h.expires_at
            )
            for handle in finished[: len(self._jobs) - self.max_jobs + 1]:
                del self._jobs[handle.job.job_id]
