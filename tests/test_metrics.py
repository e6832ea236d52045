"""`GET /api/v1/daemon/metrics` read by Prometheus's own text parser: program, probe, request
and process metrics with Prometheus names, and the route protected on TCP like the others."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from hoodyd.app import create_app
from hoodyd.config import Config
from hoodyd.polling import poll_until
from tests.conftest import PORT_SERVER, add_program
from tests.ports import free_port

BASE = "/api/v1/daemon"


async def scrape(client: Any) -> dict[str, list[Sample]]:
    response = await client.get(f"{BASE}/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples: dict[str, list[Sample]] = {}
    for family in text_string_to_metric_families(await response.text()):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def value(samples: dict[str, list[Sample]], name: str, **labels: str) -> float:
    matching = [s.value for s in samples.get(name, []) if labels.items() <= s.labels.items()]
    assert len(matching) == 1, (name, labels, samples.get(name))
    return matching[0]


async def test_metrics_parse_and_describe_programs_probes_and_requests(client: Any) -> None:
    """A scrape parses with prometheus_client's parser and shows a running probed program (up,
    RUNNING, ready, restarts, probe results), the start latency histogram, request counts and
    latency by route name, and the daemon's RSS and open fds."""
    port = free_port()
    program = await add_program(
        client,
        name="web",
        command=f"{PORT_SERVER} --port {port}",
        readiness={"port": port, "interval_ms": 200, "timeout_ms": 200},
    )
    response = await client.post(
        f"{BASE}/programs/{program['id']}/start", json={"wait": True, "timeout": 20}
    )
    assert response.status == 200, await response.json()
    await client.get(f"{BASE}/programs")

    async def probed() -> dict[str, list[Sample]] | None:
        samples = await scrape(client)
        passed = [
            s for s in samples.get("hoodyd_probe_results_total", [])
            if s.labels["result"] == "success"
        ]
        return samples if passed else None

    samples = await poll_until(probed, timeout=10, interval=0.2)
    assert samples is not None
    assert value(samples, "hoodyd_supervisord_up") == 1
    assert value(samples, "hoodyd_program_up", program="web", instance="web") == 1
    assert value(samples, "hoodyd_program_state", program="web", state="RUNNING") == 1
    assert value(samples, "hoodyd_program_state", program="web", state="FATAL") == 0
    assert value(samples, "hoodyd_program_ready", program="web") == 1
    assert value(samples, "hoodyd_program_restarts_total", program="web") == 0
    assert value(samples, "hoodyd_probe_success", instance="web", probe="readiness") == 1
    assert value(samples, "hoodyd_program_start_duration_seconds_count") == 1
    assert value(samples, "hoodyd_program_start_duration_seconds_sum") > 0
    assert value(
        samples, "hoodyd_http_requests_total", route="daemon.programs-list", code="200"
    ) == 1
    assert value(
        samples, "hoodyd_http_request_duration_seconds_count", route="daemon.program-start"
    ) == 1
    assert value(samples, "hoodyd_process_resident_memory_bytes") > 1_000_000
    assert value(samples, "hoodyd_process_open_fds") > 3


async def test_metrics_need_the_token_on_tcp(program_config: Config) -> None:
    """On TCP the metrics route answers 401 without the bearer token and 200 with it."""
    app = create_app(program_config, token="s3cret-token", areas=("daemon",))
    async with TestClient(TestServer(app)) as client:
        response = await client.get(f"{BASE}/metrics")
        assert response.status == 401
        response = await client.get(
            f"{BASE}/metrics", headers={"Authorization": "Bearer s3cret-token"}
        )
        assert response.status == 200
        families = {f.name for f in text_string_to_metric_families(await response.text())}
        assert {"hoodyd_http_requests", "hoodyd_supervisord_up"} <= families


async def test_request_counts_keep_counting_and_odd_methods_share_one_series(
    program_config: Config,
) -> None:
    """Each answer of a route counts once more in its series, and requests with methods
    outside the standard ones (WebDAV's, say) count under method `OTHER`, not one series each."""
    app = create_app(program_config, areas=("daemon",))
    async with TestClient(TestServer(app)) as client:
        for _ in range(3):
            assert (await client.get(f"{BASE}/programs")).status == 200
        for method in ("PROPFIND", "MKCOL", "LOCK", "REPORT"):
            assert (await client.request(method, "/nowhere")).status == 404
        samples = await scrape(client)
        assert value(
            samples, "hoodyd_http_requests_total", route="daemon.programs-list", code="200"
        ) == 3
        assert value(
            samples, "hoodyd_http_requests_total", route="unmatched", method="OTHER", code="404"
        ) == 4
        methods = {s.labels["method"] for s in samples["hoodyd_http_requests_total"]}
        assert methods == {"GET", "OTHER"}
