"""Prometheus metrics of the daemon, in one registry per app.

Requests are counted and timed as they are answered (a counter increment and a histogram
observation: no allocation beyond the label lookup); everything else is read at scrape time
from the services' own state, so nothing is kept twice and idle daemons do no metrics work:
programs and instances (up, state, restarts, health, probe results), terminals open, the
package index's records and last search latency per source, and the daemon process's own
resident memory, open fds and CPU (prometheus_client's process collector).

Names follow Prometheus conventions: a `hoodyd_` prefix, base units (seconds, bytes), `_total`
on counters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.registry import Collector

from hoodyd.errors import HoodydError

if TYPE_CHECKING:
    from hoodyd.apps.service import AppService
    from hoodyd.programs.service import ProgramService
    from hoodyd.terminals.service import TerminalService

# the text format every Prometheus server reads (names here are plain ASCII)
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
# the run area's routes that search the index: their latency is the search latency
SEARCH_ROUTES = frozenset({"run.search", "run.search-paged", "run.search-job", "run.recipe-search"})
STATES = ("STOPPED", "STARTING", "RUNNING", "BACKOFF", "STOPPING", "EXITED", "FATAL", "UNKNOWN")
REQUEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)
START_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)
HTTP_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"}
)
# a request's counter child, its duration histogram child, and whether it is a search
_RequestSeries = tuple[Counter, Histogram, bool]


@dataclass
class Sources:
    """Where scrape-time figures come from: each a getter, None while that area is not
    served (or not yet open)."""

    programs: Callable[[], ProgramService | None] = lambda: None
    terminals: Callable[[], TerminalService | None] = lambda: None
    apps: Callable[[], AppService | None] = lambda: None


class Metrics:
    def __init__(self, sources: Sources | None = None) -> None:
        self.sources = sources or Sources()
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "hoodyd_http_requests",
            "Requests answered, by route name, method and status code.",
            ["route", "method", "code"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "hoodyd_http_request_duration_seconds",
            "Time to answer a request (a stream: until it ended), by route name.",
            ["route"],
            buckets=REQUEST_BUCKETS,
            registry=self.registry,
        )
        self.search_seconds = Histogram(
            "hoodyd_search_duration_seconds",
            "Time to answer an app search (the run area's search routes).",
            buckets=REQUEST_BUCKETS,
            registry=self.registry,
        )
        self.start_seconds = Histogram(
            "hoodyd_program_start_duration_seconds",
            "Time a program start took: its dependencies, the spawn and what it waited for.",
            buckets=START_BUCKETS,
            registry=self.registry,
        )
        ProcessCollector(namespace="hoodyd", registry=self.registry)
        # the children of matched routes, by (route, method, code): `labels` validates and
        # locks on every call, a dict lookup does not
        self._series: dict[tuple[str | None, str, int], _RequestSeries] = {}
        self.registry.register(_StateCollector(self.sources))

    def observe_request(self, route: str | None, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        series = self._series.get(key)
        if series is None:
            series = self._request_series(route, method, status)
            if route is not None:  # a matched route: its methods and codes are few
                self._series[key] = series
        count, duration, search = series
        count.inc()
        duration.observe(seconds)
        if search:
            self.search_seconds.observe(seconds)

    def _request_series(self, route: str | None, method: str, status: int) -> _RequestSeries:
        """The counter and histogram children of one route, method and code. An unmatched
        request names any method it likes: outside the standard ones it counts as `OTHER`, so
        no caller can grow the series without bound."""
        name = route or "unmatched"
        if method not in HTTP_METHODS:
            method = "OTHER"
        return (
            self.requests.labels(name, method, str(status)),
            self.request_seconds.labels(name),
            name in SEARCH_ROUTES,
        )

    def render(self) -> bytes:
        """The text exposition format, as Prometheus scrapes it."""
        return generate_latest(self.registry)


class _StateCollector(Collector):
    """Programs, probes, terminals and the index, read when scraped."""

    def __init__(self, sources: Sources) -> None:
        self.sources = sources

    def describe(self) -> list[Metric]:
        return []  # read at scrape time: families depend on what is served

    def collect(self) -> Iterator[Metric]:
        programs = self.sources.programs()
        if programs is not None:
            yield from _program_metrics(programs)
        terminals = self.sources.terminals()
        if terminals is not None:
            open_now = GaugeMetricFamily("hoodyd_terminals_open", "Terminal sessions open.")
            open_now.add_metric([], terminals.open_sessions)
            yield open_now
        apps = self.sources.apps()
        if apps is not None:
            yield from _index_metrics(apps)


def _program_metrics(service: ProgramService) -> Iterator[Metric]:
    reachable = GaugeMetricFamily(
        "hoodyd_supervisord_up", "Whether supervisord answers (1) or is being revived (0)."
    )
    try:
        infos = service.observer.processes()
    except HoodydError:
        reachable.add_metric([], 0)
        yield reachable
        return
    reachable.add_metric([], 1)
    yield reachable
    labels = ["program", "instance"]
    up = GaugeMetricFamily("hoodyd_program_up", "1 if the instance is RUNNING.", labels=labels)
    state = GaugeMetricFamily(
        "hoodyd_program_state",
        "The instance's supervisord state (1 for the state it is in).",
        labels=[*labels, "state"],
    )
    restarts = CounterMetricFamily(
        "hoodyd_program_restarts",
        "Restarts nobody asked for since hoodyd started: by supervisord, or by a liveness probe.",
        labels=labels,
    )
    healthy = GaugeMetricFamily(
        "hoodyd_program_ready", "1 if the instance's health is `ready`.", labels=labels
    )
    probes = service.probes
    for name, info in sorted(infos.items()):
        owner = service.table.owner(name)
        if owner is None:
            continue
        program = owner[0]
        values = [program.name, name]
        up.add_metric(values, 1 if info.statename == "RUNNING" else 0)
        for each in STATES:
            state.add_metric([*values, each], 1 if info.statename == each else 0)
        restarts.add_metric(values, service.observer.restarts(name) + probes.restarts(name))
        ready = probes.health(program, name, info.statename) == "ready"
        healthy.add_metric(values, 1 if ready else 0)
    yield from (up, state, restarts, healthy)
    results = CounterMetricFamily(
        "hoodyd_probe_results",
        "Probe runs by instance, probe and result.",
        labels=["instance", "probe", "result"],
    )
    for (name, kind, ok), count in sorted(probes.results.items()):
        results.add_metric([name, kind, "success" if ok else "failure"], count)
    seconds = CounterMetricFamily(
        "hoodyd_probe_duration_seconds",
        "Time spent probing, by instance and probe.",
        labels=["instance", "probe"],
    )
    for (name, kind), spent in sorted(probes.seconds.items()):
        seconds.add_metric([name, kind], spent)
    last = GaugeMetricFamily(
        "hoodyd_probe_success",
        "1 if the instance's last probe passed.",
        labels=["instance", "probe"],
    )
    for name in sorted(infos):
        result = probes.last(name)
        if result is not None:
            last.add_metric([name, result.probe], 1 if result.ok else 0)
    yield from (results, seconds, last)


def _index_metrics(apps: AppService) -> Iterator[Metric]:
    records = GaugeMetricFamily(
        "hoodyd_index_records", "Records in the app index, by source.", labels=["source"]
    )
    latency = GaugeMetricFamily(
        "hoodyd_search_last_duration_seconds",
        "The last search's time in each source.",
        labels=["source"],
    )
    for source_id, state in sorted(apps.syncer.states.items()):
        records.add_metric([source_id], len(state.index) if state.index is not None else 0)
        if state.last_search_latency_ms is not None:
            latency.add_metric([source_id], state.last_search_latency_ms / 1000)
    yield records
    yield latency
