"""One-shot jobs against a real supervisord: a program another waits on with `exited_ok` runs
once per start however quickly it exits, its failure fails the dependent with its exit status,
and its registration follows the programs that wait on it, across a restart of hoodyd."""

from __future__ import annotations

import asyncio
import shlex
from pathlib import Path
from typing import Any

import msgspec
import pytest

from hoodyd.config import Config
from hoodyd.polling import poll_until
from hoodyd.programs import conf
from hoodyd.programs.service import ProgramService
from hoodyd.schemas.daemon import Program, ProgramInput, StartRequest, StopRequest
from tests.conftest import DaemonProcess, add_program, sleeper
from tests.test_cli import hoodyd, ok

BASE = "/api/v1/daemon"


def job(runs: Path, status: int = 0) -> str:
    """A command that appends one line to `runs` and exits at once with `status`."""
    return shlex.join(["/bin/sh", "-c", f"echo run >> {shlex.quote(str(runs))}; exit {status}"])


def runs_of(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def given(**fields: Any) -> ProgramInput:
    return msgspec.convert(sleeper(**fields), ProgramInput)


@pytest.fixture
def service(program_service: ProgramService) -> ProgramService:
    return program_service


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


def slow_job(runs: Path, status: int, *, pause: float = 0.0, stderr: str = "") -> str:
    """A command that appends one line to `runs`, writes `stderr` there, waits `pause`
    seconds and exits with `status`."""
    script = f"echo run >> {shlex.quote(str(runs))}"
    if stderr:
        script += f"; echo {shlex.quote(stderr)} >&2"
    if pause:
        script += f"; sleep {pause}"
    return shlex.join(["/bin/sh", "-c", f"{script}; exit {status}"])


async def add_job(client: Any, name: str, command: str) -> dict[str, Any]:
    """The program `name`, made a one-shot job by a dependent that waits on its exit."""
    job_program = await add_program(client, name=name, command=command)
    await add_program(
        client, name=f"{name}-user", depends_on=[{"program": name, "condition": "exited_ok"}]
    )
    return job_program


async def test_a_wait_for_a_job_ends_when_it_has_run_and_answers_its_exit_0(
    client: Any, tmp_path: Path
) -> None:
    """A start with wait of a job answers once the job has exited 0: 200, the program EXITED
    with exitstatus 0, run once; starting it again (if_not_running) runs it again."""
    runs = tmp_path / "runs"
    migrate = await add_job(client, "migrate", slow_job(runs, 0, pause=0.4))
    response = await client.post(
        f"{BASE}/programs/{migrate['id']}/start", json={"wait": True, "timeout": 20}
    )
    body = await response.json()
    assert response.status == 200, body
    assert body["already_running"] is False
    assert (body["status"]["status"], body["status"]["exitstatus"]) == ("EXITED", 0)
    assert runs_of(runs) == 1
    response = await client.post(
        f"{BASE}/programs/{migrate['id']}/start",
        json={"wait": True, "timeout": 20, "if_not_running": True},
    )
    body = await response.json()
    assert response.status == 200, body
    assert (body["status"]["status"], body["status"]["exitstatus"]) == ("EXITED", 0)
    assert runs_of(runs) == 2


async def test_a_wait_for_a_job_that_exits_3_answers_start_failed_with_its_status(
    client: Any, tmp_path: Path
) -> None:
    """A start with wait of a job that exits 3 answers 502 START_FAILED saying it exited with
    status 3, with `exitstatus` 3 and the tail of its stderr; it ran once."""
    runs = tmp_path / "runs"
    seed = await add_job(client, "seed", slow_job(runs, 3, stderr="seed: no such table"))
    response = await client.post(
        f"{BASE}/programs/{seed['id']}/start", json={"wait": True, "timeout": 20}
    )
    body = await response.json()
    assert response.status == 502, body
    assert body["reason"] == "START_FAILED"
    assert body["exitstatus"] == 3
    assert body["state"] == "EXITED"
    assert "seed exited with status 3" in body["error"]
    assert "seed: no such table" in body["stderr_tail"]
    assert runs_of(runs) == 1


async def test_a_dependent_retried_at_once_after_its_job_failed_runs_the_job_again(
    client: Any, tmp_path: Path
) -> None:
    """A dependent's start retried the moment it failed on its job's exit 3 runs the job
    again (the earlier start, still wrapping up, is not joined), and fails the same way."""
    runs = tmp_path / "runs"
    await add_program(client, name="seed", command=job(runs, status=3))
    app = await add_program(
        client, name="app", depends_on=[{"program": "seed", "condition": "exited_ok"}]
    )
    for attempt in (1, 2, 3):
        response = await client.post(
            f"{BASE}/programs/{app['id']}/start", json={"wait": True, "timeout": 20}
        )
        body = await response.json()
        assert response.status == 502, body
        assert (body["reason"], body.get("exitstatus")) == ("DEPENDENCY_FAILED", 3), body
        assert runs_of(runs) == attempt


def test_the_command_line_start_of_a_job_reports_its_exit(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    """`hoodyd start JOB` (it waits) prints that the job ran and exited 0 (exit 0), or that it
    exited with status 3 with its stderr's last line (exit 1)."""
    good, bad = tmp_path / "good", tmp_path / "bad"
    ok(daemon, "add", "migrate", "--enable", "--", *shlex.split(slow_job(good, 0)))
    ok(daemon, "add", "seed", "--enable", "--",
       *shlex.split(slow_job(bad, 3, stderr="seed: no such table")))  # fmt: skip
    ok(daemon, "add", "api", "--enable", "--depends-on", "migrate:exited_ok",
       "--depends-on", "seed:exited_ok", "--", "/bin/sleep", "300")  # fmt: skip
    assert ok(daemon, "start", "migrate", "--timeout", "30") == "migrate: ran and exited 0\n"
    assert runs_of(good) == 1
    done = hoodyd(daemon, "start", "seed", "--timeout", "30")
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert done.stderr.startswith("hoodyd: seed exited with status 3"), done.stderr
    assert "  seed: no such table" in done.stderr
    assert runs_of(bad) == 1
