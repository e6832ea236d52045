"""Property-based run of the daemon area's OpenAPI document against a live `hoodyd serve`:
no 5xx, and every response matches the document (status, content type, schema)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from hoodyd.api.openapi import load_document
from tests.conftest import start_daemon, stop_embedded_supervisord, wait_until
from tests.ports import free_port

TOKEN = "schemathesis-token"
CHECKS = (
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
)
# operations that run the generated command are left out: a fuzzer must not execute
# arbitrary programs on the test machine
EXECUTING = ("/start", "/quick-start", "/programs/reset")
# streams that last until the client leaves (their own tests read them: tests/test_events.py)
STREAMING = ("/events",)

schema = schemathesis.openapi.from_dict(load_document("daemon"))


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    state = Path(tempfile.mkdtemp(prefix="hd-", dir="/tmp"))
    port = free_port()
    daemon = start_daemon(state, "--tcp", f"127.0.0.1:{port}", env={"HOODYD_TOKEN": TOKEN})
    try:

        def answers() -> bool:
            try:
                requests.get(f"http://127.0.0.1:{port}/api/v1/daemon/health", timeout=2)
            except requests.ConnectionError:
                return False
            return True

        assert wait_until(answers, timeout=20), daemon.logs()
        yield f"http://127.0.0.1:{port}"
    finally:
        daemon.stop()
        stop_embedded_supervisord(state)
        shutil.rmtree(state, ignore_errors=True)


@schema.exclude(path_regex="|".join(EXECUTING + STREAMING)).parametrize()
@settings(
    max_examples=int(os.environ.get("HOODYD_FUZZ_EXAMPLES", "25")),
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_daemon_api_conforms_to_its_document(case: Any, base_url: str) -> None:
    """Generated requests never get a 5xx, and every answer matches the OpenAPI document."""
    if isinstance(case.body, dict) and "command" in case.body:
        case.body["command"] = "/bin/sleep 60"  # never let generated text become a command
    if isinstance(case.query, dict) and case.query.get("follow") == "true":
        case.query["follow"] = "false"  # a followed log never ends
    case.call_and_validate(
        base_url=base_url,
        headers={"Authorization": f"Bearer {TOKEN}"},
        checks=CHECKS,
        timeout=30,
    )
