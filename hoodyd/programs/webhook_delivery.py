"""Delivering program state changes to the programs' webhook URLs.

`WebhookDispatcher` takes process state changes from the program service (`notify`,
synchronous, never blocks), queues them in a bounded in-memory queue and POSTs them with a few
worker tasks; each URL is checked again (`hoodyd.programs.webhooks.check_url`) when it is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import aiohttp
import msgspec
import structlog
from multidict import CIMultiDict

from hoodyd.config import NotificationsConfig
from hoodyd.errors import InvalidRequest
from hoodyd.programs.webhooks import check_url, display_url
from hoodyd.schemas.daemon import Program, Webhooks

log = structlog.get_logger()


class WebhookProgram(msgspec.Struct):
    name: str
    id: int | None = None


class WebhookMetadata(msgspec.Struct):
    daemon_manager_version: str | None = None


class WebhookPayload(msgspec.Struct):
    """The body POSTed to each webhook URL (CONTRACT.md §2.3.1)."""

    event: str
    program: WebhookProgram
    from_state: str | None
    pid: int | None
    timestamp: str
    hostname: str
    metadata: WebhookMetadata


@dataclass(frozen=True, slots=True)
class _Delivery:
    url: str
    event: str
    program: str
    body: bytes
    headers: CIMultiDict[str]
    timeout: int
    retry: int


def event_matches(webhooks: Webhooks, event: str) -> bool:
    return "*" in webhooks.events or event in webhooks.events


def utc_timestamp() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _retryable(status: int) -> bool:
    # other 3xx/4xx answers will not change on a retry (redirects are never followed)
    return status >= 500 or status in (408, 425, 429)


class WebhookDispatcher:
    """Queues program state changes and delivers them to the programs' webhook URLs.

    One queued delivery per (event, URL), each retried on its own. Deliveries run on
    `concurrency` worker tasks sharing one HTTP session; the queue holds at most
    `config.queue_size` deliveries and drops the oldest beyond that. Deliveries of one
    program to one URL hold a lock taken in queue order, so a receiver gets a program's
    events in the order they happened (STARTING before RUNNING before STOPPED).
    """

    concurrency: Final = 4
    backoff_base: Final = 0.2
    backoff_cap: Final = 5.0

    def __init__(
        self, config: NotificationsConfig, *, hostname: str | None = None, version: str
    ) -> None:
        self.config = config
        self.hostname = hostname or socket.gethostname()
        self.version = version
        self._queue: asyncio.Queue[_Delivery] = asyncio.Queue(maxsize=max(1, config.queue_size))
        self._workers: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        self.dropped = 0
        # asyncio.Lock wakes its waiters first come, first served: queue order is kept
        self._in_order: dict[tuple[str, str], asyncio.Lock] = {}

    @property
    def pending(self) -> int:
        """Deliveries queued and not yet taken by a worker."""
        return self._queue.qsize()

    async def start(self) -> None:
        if self._session is not None:
            return
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.concurrency),
            headers={"User-Agent": f"hoodyd/{self.version}"},
        )
        self._workers = [
            asyncio.create_task(self._work(), name=f"webhook-worker-{n}")
            for n in range(self.concurrency)
        ]

    async def close(self, timeout: float = 3.0) -> None:
        """Stop accepting events, give queued deliveries `timeout` seconds, then cancel."""
        self._closed = True
        if self._workers:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), timeout)
            for worker in self._workers:
                worker.cancel()
            await asyncio.gather(*self._workers, return_exceptions=True)
            self._workers = []
        abandoned = 0
        while not self._queue.empty():
            self._queue.get_nowait()
            self._queue.task_done()
            abandoned += 1
        if abandoned:
            log.warning("webhook_deliveries_abandoned", count=abandoned)
        if self._session is not None:
            await self._session.close()
            self._session = None

    def notify(
        self, program: Program, event: str, *, from_state: str | None, pid: int | None
    ) -> None:
        """Queue `event` for each of the program's webhook URLs if it subscribed to it."""
        webhooks = program.webhooks
        if self._closed or not self.config.enabled or webhooks is None or not webhooks.enabled:
            return
        event = event.upper().removeprefix("PROCESS_STATE_")
        if not webhooks.urls or not event_matches(webhooks, event):
            return
        payload = WebhookPayload(
            event=event,
            program=WebhookProgram(id=program.id, name=program.name),
            from_state=from_state,
            pid=pid,
            timestamp=utc_timestamp(),
            hostname=self.hostname,
            metadata=WebhookMetadata(daemon_manager_version=self.version),
        )
        body = msgspec.json.encode(payload)
        # a program's own Content-Type (often a habitual "application/json") wins
        headers = CIMultiDict({"Content-Type": "application/json"})
        headers.update(webhooks.headers)
        for url in webhooks.urls:
            self._enqueue(
                _Delivery(
                    url=url,
                    event=event,
                    program=program.name,
                    body=body,
                    headers=headers,
                    timeout=webhooks.timeout,
                    retry=webhooks.retry,
                )
            )

    def _enqueue(self, delivery: _Delivery) -> None:
        while True:
            try:
                self._queue.put_nowait(delivery)
                return
            except asyncio.QueueFull:
                dropped = self._queue.get_nowait()
                self._queue.task_done()
                self.dropped += 1
                log.warning(
                    "webhook_dropped",
                    url=display_url(dropped.url),
                    webhook_event=dropped.event,
                    program=dropped.program,
                    queue_size=self._queue.maxsize,
                )

    async def _work(self) -> None:
        while True:
            delivery = await self._queue.get()
            lock = self._in_order.setdefault((delivery.program, delivery.url), asyncio.Lock())
            try:
                async with lock:
                    await self._deliver(delivery)
            except Exception:  # a worker must survive anything one delivery does
                log.exception("webhook_worker_error", url=display_url(delivery.url))
            finally:
                self._queue.task_done()

    async def _deliver(self, delivery: _Delivery) -> bool:
        assert self._session is not None
        shown = display_url(delivery.url)
        try:
            # re-checked at send time: the setting may have been tightened since the URL was stored
            check_url(delivery.url, allow_insecure=self.config.allow_insecure_urls)
        except InvalidRequest as exc:
            log.warning(
                "webhook_rejected", url=shown, webhook_event=delivery.event, error=exc.message
            )
            return False
        attempts = delivery.retry + 1
        logger = log.bind(url=shown, webhook_event=delivery.event, program=delivery.program)
        for attempt in range(1, attempts + 1):
            status: int | None = None
            error: str | None = None
            try:
                async with self._session.post(
                    delivery.url,
                    data=delivery.body,
                    headers=delivery.headers,
                    timeout=aiohttp.ClientTimeout(total=delivery.timeout),
                    allow_redirects=False,
                ) as response:
                    status = response.status
                    await response.read()
            except TimeoutError:
                error = f"timeout after {delivery.timeout}s"
            except aiohttp.ClientError as exc:
                error = f"{type(exc).__name__}: {exc}"
            if status is not None and 200 <= status < 300:
                logger.info("webhook_delivered", attempt=attempt, status=status)
                return True
            will_retry = attempt < attempts and (status is None or _retryable(status))
            logger.warning(
                "webhook_failed", attempt=attempt, status=status, error=error, will_retry=will_retry
            )
            if not will_retry:
                return False
            await asyncio.sleep(min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1)))
        return False
