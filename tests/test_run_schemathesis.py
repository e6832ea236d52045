"""Property-based run of the run area's OpenAPI document against a live daemon (schemathesis,
on TCP with the bearer token: schemathesis speaks HTTP over TCP only), bounded in time; and
the TCP form of a printed curl line.

The daemon's policy forbids delegated execution, and the operations that edit sources and
profiles (which could change that) are left out, so generated requests never run a program.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import wait_until
from tests.ports import free_port
from tests.run_world import RUN, RunWorld, run_world

TOKEN = "schemathesis-test-token"
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,"
    "response_schema_conformance"
)


@pytest.fixture(scope="module")
def tcp_world() -> Iterator[tuple[RunWorld, str]]:
    port = free_port()
    with run_world(
        "--tcp", f"127.0.0.1:{port}", env={"HOODYD_TOKEN": TOKEN}, allow_delegated_execution=False
    ) as running:
        yield running, f"http://127.0.0.1:{port}"


@pytest.mark.skipif(
    not SCHEMATHESIS.exists(), reason="schemathesis is not installed (the `test` extra)"
)
def test_schemathesis_finds_no_server_error_or_schema_break(
    tcp_world: tuple[RunWorld, str], tmp_path: Path
) -> None:
    """Generated requests to every run operation (but source and profile edits) get no 5xx
    and only documented statuses, content types and bodies, within a bounded time."""
    world, base_url = tcp_world
    document = tmp_path / "run.yaml"
    document.write_text(resources.files("hoodyd.api.specs").joinpath("run.yaml").read_text())
    seconds = os.environ.get("HOODYD_FUZZ_SECONDS", "30")
    command = [str(SCHEMATHESIS), "run", str(document), "--url", base_url]
    command += ["-H", f"Authorization: Bearer {TOKEN}", "--checks", CHECKS]
    command += ["--phases", "examples,coverage,fuzzing", "--max-time", seconds]
    command += ["--workers", "1", "--request-timeout", "10", "--max-redirects", "0"]
    command += ["--max-examples", "25", "--suppress-health-check", "all"]
    command += ["--exclude-path-regex", r"^/api/v1/run/(sources|profiles)"]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=100,
        cwd=tmp_path,
        env={**os.environ, "SCHEMATHESIS_HOOKS": "", "NO_COLOR": "1"},
    )
    report = done.stdout[-6000:] + done.stderr[-2000:]
    assert done.returncode == 0, report
    assert "No issues found" in done.stdout or "passed" in done.stdout, report
    assert '"event":"run_scheduled"' not in world.daemon.logs()


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_printed_curl_line_on_tcp_reads_the_token_from_the_environment(
    tcp_world: tuple[RunWorld, str],
) -> None:
    """On TCP the printed line targets the TCP URL and takes the token from $HOODYD_TOKEN,
    never printing it; run with the token set, it executes the command in the terminal."""
    _world, base_url = tcp_world
    printed = subprocess.run(
        ["curl", "-sS", "-H", f"Authorization: Bearer {TOKEN}",
         f"{base_url}{RUN}/run?app=hello-run&pick=first&print_curl=hoody-terminal"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout  # fmt: skip
    line = json.loads(printed)["curl"]
    assert TOKEN not in line and '"Authorization: Bearer $HOODYD_TOKEN"' in line
    assert f"'{base_url}/api/v1/terminal/execute?terminal_id=1'" in line
    executed = subprocess.run(
        ["bash", "-c", line], capture_output=True, text=True, timeout=30, check=True,
        env={**os.environ, "HOODYD_TOKEN": TOKEN},
    ).stdout  # fmt: skip
    command_id = json.loads(executed)["command_id"]

    reads: list[dict[str, Any]] = []

    def completed() -> bool:
        reads.append(json.loads(
            subprocess.run(
                ["curl", "-sS", "-H", f"Authorization: Bearer {TOKEN}",
                 f"{base_url}/api/v1/terminal/result/{command_id}"],
                capture_output=True, text=True, timeout=30, check=True,
            ).stdout
        ))  # fmt: skip
        return reads[-1]["status"] == "completed"

    wait_until(completed, timeout=20, interval=0.1)
    result = reads[-1]
    assert result["status"] == "completed" and "hello-run says" in result["stdout"]
