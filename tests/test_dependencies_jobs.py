"""One-shot jobs against a real supervisord: a program another waits on with `exited_ok` runs
once per start however quickly it exits, its failure fails the dependent with its exit status,
and its registration follows the programs that wait on it, across a restart of hoodyd."""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from hoodyd.config import Config
from hoodyd.polling import poll_until
from hoodyd.programs import conf
from hoodyd.programs.service import ProgramService
from hoodyd.schemas.daemon import Program, ProgramInput, StartRequest, StopRequest
from tests.conftest import add_program, sleeper

BASE = "/api/v1/daemon"


def job(runs: Path, status: int = 0) -> str:
    """A command that appends one line to `runs` and exits at once with `status`."""
    return shlex.join(["/bin/sh", "-c", f"echo run >> {shlex.quote(str(runs))}; exit {status}"])


def runs_of(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def given(**fields: Any) -> ProgramInput:
    return msgspec.convert(sleeper(**fields), ProgramInput)


@pytest.fixture
async def service(program_config: Config) -> AsyncIterator[ProgramService]:
    service = ProgramService(program_config)
    await service.open()
    try:
        yield service
    finally:
        await service.close()


async def config_of(service: ProgramService, name: str) -> dict[str, Any]:
    """What supervisord reports of the process's config."""
    infos = await service.client.call("supervisor.getAllConfigInfo")
    found: dict[str, Any] = next(info for info in infos if info["name"] == name)
    return found


async def state_of(service: ProgramService, program: Program) -> tuple[str, int]:
    info = await service.client.find_process(conf.instance_name(program, None))
    assert info is not None
    return info.statename, info.exitstatus


async def test_a_job_that_exits_at_once_satisfies_its_dependent_and_runs_once(
    client: Any, tmp_path: Path
) -> None:
    """A job that exits 0 within milliseconds counts as exited_ok: its dependent starts, and
    the job ran exactly once (no failed-start retries), a second start of the dependent
    included."""
    runs = tmp_path / "runs"
    migrate = await add_program(client, name="migrate", command=job(runs))
    app = await add_program(
        client, name="app", depends_on=[{"program": "migrate", "condition": "exited_ok"}]
    )
    response = await client.post(
        f"{BASE}/programs/{app['id']}/start", json={"wait": True, "timeout": 20}
    )
    body = await response.json()
    assert response.status == 200, body
    assert body["status"]["status"] == "RUNNING"
    response = await client.get(f"{BASE}/status/{migrate['id']}")
    status = (await response.json())["status"]
    assert (status["status"], status["exitstatus"]) == ("EXITED", 0)
    response = await client.post(
        f"{BASE}/programs/{app['id']}/start",
        json={"wait": True, "timeout": 20, "if_not_running": True},
    )
    assert response.status == 200, await response.json()
    assert runs_of(runs) == 1


async def test_a_job_that_fails_at_once_fails_its_dependent_with_its_status(
    client: Any, tmp_path: Path
) -> None:
    """A job that exits 3 at once fails its dependent's start with DEPENDENCY_FAILED naming
    the job and its exit status; the job ran once and the dependent did not start."""
    runs = tmp_path / "runs"
    await add_program(client, name="seed", command=job(runs, status=3))
    app = await add_program(
        client, name="app", depends_on=[{"program": "seed", "condition": "exited_ok"}]
    )
    response = await client.post(
        f"{BASE}/programs/{app['id']}/start", json={"wait": True, "timeout": 20}
    )
    body = await response.json()
    assert response.status == 502, body
    assert body["reason"] == "DEPENDENCY_FAILED"
    assert body["dependency"] == "seed"
    assert body["exitstatus"] == 3
    assert "seed" in body["error"] and "status 3" in body["error"]
    assert runs_of(runs) == 1
    response = await client.get(f"{BASE}/status/{app['id']}")
    assert (await response.json())["status"]["status"] == "STOPPED"


async def test_dependents_started_together_run_their_job_once(
    service: ProgramService, tmp_path: Path
) -> None:
    """Two dependents started at the same moment both wait for one run of their job."""
    runs = tmp_path / "runs"
    await service.add(given(name="migrate", command=job(runs)))
    needs = [{"program": "migrate", "condition": "exited_ok"}]
    first = await service.add(given(name="web", depends_on=needs))
    second = await service.add(given(name="worker", depends_on=needs))
    request = StartRequest(wait=True, timeout=20)
    await asyncio.gather(service.start(first.id, request), service.start(second.id, request))
    assert runs_of(runs) == 1


async def test_the_job_registration_follows_its_dependents(
    service: ProgramService, tmp_path: Path
) -> None:
    """A program becomes a one-shot job (startsecs 0, no restart) when a dependent waits on
    its exit, and goes back to its own settings when that dependent changes its condition or
    is removed; only the job's own file is rewritten."""
    job_program = await service.add(
        given(name="migrate", command=job(tmp_path / "runs"), autorestart="true")
    )
    include = service.runtime.include_dir
    job_file = include / conf.conf_filename(job_program, None)

    async def registered() -> tuple[int, str]:
        """supervisord's startsecs (its config info has no autorestart) and the file's
        autorestart, its startsecs checked to agree."""
        lines = job_file.read_text().splitlines()
        settings = dict(line.split("=", 1) for line in lines if "=" in line)
        info = await config_of(service, "migrate")
        assert int(settings["startsecs"]) == info["startsecs"]
        return info["startsecs"], settings["autorestart"]

    assert await registered() == (1, "true")
    other = await service.add(given(name="bystander"))
    other_file = include / conf.conf_filename(other, None)
    other_written = other_file.stat().st_mtime_ns
    dependent = await service.add(
        given(name="app", depends_on=[{"program": "migrate", "condition": "exited_ok"}])
    )
    assert await registered() == (0, "false")
    edited = msgspec.convert(
        {**msgspec.to_builtins(dependent), "depends_on": [{"program": "migrate"}]},
        ProgramInput,
    )
    await service.edit(dependent.id, edited)
    assert await registered() == (1, "true")
    await service.edit(
        dependent.id,
        msgspec.convert(
            {
                **msgspec.to_builtins(dependent),
                "depends_on": [{"program": "migrate", "condition": "exited_ok"}],
            },
            ProgramInput,
        ),
    )
    assert await registered() == (0, "false")
    await service.remove(dependent.id)
    assert await registered() == (1, "true")
    assert other_file.stat().st_mtime_ns == other_written


async def test_a_job_stays_a_job_across_a_restart_of_hoodyd(
    program_config: Config, tmp_path: Path
) -> None:
    """After hoodyd restarts, a job that ran is neither run again nor re-registered, and its
    dependent's next start finds it exited_ok."""
    runs = tmp_path / "runs"
    service = ProgramService(program_config)
    await service.open()
    try:
        migrate = await service.add(given(name="migrate", command=job(runs)))
        app = await service.add(
            given(name="app", depends_on=[{"program": "migrate", "condition": "exited_ok"}])
        )
        await service.start(app.id, StartRequest(wait=True, timeout=20))
        assert await state_of(service, migrate) == ("EXITED", 0)
    finally:
        await service.close()
    service = ProgramService(program_config)
    await service.open()
    try:
        assert (await config_of(service, "migrate"))["startsecs"] == 0
        assert await state_of(service, migrate) == ("EXITED", 0)
        await service.stop(app.id, StopRequest())
        await service.start(app.id, StartRequest(wait=True, timeout=20))

        async def app_running() -> bool | None:
            info = await service.client.find_process("app")
            return True if info is not None and info.statename == "RUNNING" else None

        assert await poll_until(app_running, timeout=10)
        assert runs_of(runs) == 1
    finally:
        await service.close()
