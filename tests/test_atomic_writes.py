"""Refused means unchanged: every change of program control (add, edit, enable, disable,
remove, quick-start and its stop) whose write, fsync or rename fails, at whichever of its
writes and with ENOSPC or EIO, answers a JSON error and leaves the store, the conf files and
supervisord exactly as they were, also after hoodyd restarts on the same state dir. The
failures come from a failing file layer (`hoodyd.programs.files.ops`) and from a real full
tmpfs; start-up removes what an interrupted change left."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from structlog.testing import capture_logs

from hoodyd.app import create_app
from hoodyd.config import Config
from hoodyd.daemon import resolve_token
from hoodyd.errors import InvalidRequest, StateNotSaved
from hoodyd.polling import poll_until
from hoodyd.programs import conf, files
from hoodyd.programs.supervisor_client import ProcessInfo, SupervisorClient
from tests.conftest import PORT_SERVER, make_config, sleeper
from tests.diskfull import fill_leaving, mounted_tmpfs
from tests.ports import free_port_range

API = "/api/v1/daemon"


class FailingOps(files.FileOps):
    """The real file layer, except that its `fail_at`-th call (write, fsync and rename
    counted together) raises OSError(`code`), as a full or failing disk would."""

    def __init__(self, code: int, fail_at: int) -> None:
        self.code = code
        self.fail_at = fail_at
        self.calls = 0

    def _tick(self) -> None:
        self.calls += 1
        if self.calls == self.fail_at:
            raise OSError(self.code, os.strerror(self.code))

    def write(self, fd: int, data: bytes) -> None:
        self._tick()
        super().write(fd, data)

    def fsync(self, fd: int) -> None:
        self._tick()
        super().fsync(fd)

    def replace(self, source: Path, target: Path) -> None:
        self._tick()
        super().replace(source, target)


def snapshot_files(config: Config) -> dict[str, str]:
    """Every file in supervisord's include dir (hidden ones too) with its content."""
    include = config.state_path / "supervisor" / "conf.d"
    return {path.name: path.read_text() for path in sorted(include.iterdir())}


def snapshot_store(config: Config) -> dict[str, list[Any]]:
    with contextlib.closing(sqlite3.connect(config.state_path / "hoodyd.db")) as db:
        return {
            table: db.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
            for table in ("programs", "should_run", "ephemeral")
        }


async def snapshot_supervisord(config: Config) -> list[tuple[str, str, int]]:
    """(name, state, pid) of every process, once none is between two states."""
    client = SupervisorClient(str(config.state_path / "supervisor" / "supervisor.sock"))

    async def settled() -> list[ProcessInfo] | None:
        infos = await client.all_process_info()
        moving = any(info.statename in ("STARTING", "STOPPING") for info in infos)
        return None if moving else infos

    try:
        infos = await poll_until(settled, timeout=10, interval=0.05)
    finally:
        await client.close()
    assert infos is not None, "a process stayed STARTING or STOPPING"
    return sorted((info.name, info.statename, info.pid) for info in infos)


async def snapshot(config: Config) -> tuple[Any, ...]:
    return snapshot_store(config), snapshot_files(config), await snapshot_supervisord(config)


@contextlib.asynccontextmanager
async def serving(config: Config) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(create_app(config, areas=("daemon",)))) as client:
        yield client


async def post(client: TestClient[Any, Any], path: str, body: Any = None) -> tuple[int, Any]:
    response = await client.post(API + path, json=body)
    return response.status, await response.json()


async def start_world(client: TestClient[Any, Any]) -> dict[str, dict[str, Any]]:
    """A running program and a disabled one."""
    status, running = await post(client, "/programs/add", sleeper(name="running"))
    assert status == 200, running
    status, started = await post(client, f"/programs/{running['program']['id']}/start",
                                 {"wait": True})
    assert status == 200, started
    status, disabled = await post(client, "/programs/add", sleeper(name="off", enabled=False))
    assert status == 200, disabled
    return {"running": running["program"], "off": disabled["program"]}


def operations(world: dict[str, dict[str, Any]]) -> list[tuple[str, Any]]:
    """(path, body) of each change, in an order in which each one succeeds once."""
    running, off = world["running"]["id"], world["off"]["id"]
    return [
        ("/programs/add", sleeper(name="fresh")),
        ("/programs/add", sleeper(name="fresh_off", enabled=False)),
        (f"/programs/edit/{running}", {**sleeper(name="running"), "command": "/bin/sleep 301"}),
        (f"/programs/{off}/enable", None),
        (f"/programs/{off}/disable", None),
        (f"/programs/{running}/disable", None),
        (f"/programs/{running}/enable", None),
        (f"/programs/remove/{off}", None),
        ("/quick-start", {"command": "/bin/sleep 300", "user": sleeper()["user"]}),
    ]


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EIO], ids=["ENOSPC", "EIO"])
async def test_every_failing_write_of_every_change_leaves_everything_as_it_was(
    short_tmp: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    """For each change (reset too), failing its 1st, 2nd, ... write/fsync/rename answers 503
    STATE_NOT_SAVED and leaves store, conf files and supervisord as before, also after a
    restart; once N passes the number of writes, the change succeeds."""
    defaults = short_tmp / "defaults.json"
    given = [sleeper(name="reset_on"), sleeper(name="reset_off", enabled=False)]
    defaults.write_text(json.dumps(given))
    config = make_config(
        short_tmp,
        supervisor={"poll_interval": 0.2},
        programs={"defaults_file": str(defaults)},
    )
    async with serving(config) as client:
        world = await start_world(client)
    total = 0
    changes = [*operations(world), ("/quick-start/{quick}/stop", None), ("/programs/reset", None)]
    for path, body in changes:
        failures = 0
        while True:
            before = await snapshot(config)
            failing = FailingOps(code, failures + 1)
            async with serving(config) as client:
                if "{quick}" in path:
                    listed = await (await client.get(f"{API}/quick-start")).json()
                    quick = listed["ephemeral_programs"][0]["temporary_id"]
                    path = path.format(quick=quick)
                monkeypatch.setattr(files, "ops", failing)
                status, answer = await post(client, path, body)
                monkeypatch.setattr(files, "ops", files.FileOps())
                if failing.calls < failing.fail_at:  # fewer writes than N: it went through
                    assert status == 200, (path, answer)
                    break
                assert status == 503, (path, failures, answer)
                assert answer["success"] is False
                assert answer["reason"] == "STATE_NOT_SAVED", answer
                assert await snapshot(config) == before, (path, failures + 1)
            async with serving(config):  # hoodyd again on the same state dir
                assert await snapshot(config) == before, (path, failures + 1, "restart")
            failures += 1
        # a disabled program's changes write no file: their one store transaction is the
        # tmpfs test's
        total += failures
    assert total >= 10


@pytest.fixture
def tiny_tmpfs(short_tmp: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs (mounted as root); unmounted at teardown."""
    with mounted_tmpfs(short_tmp, "2m") as mount:
        yield mount


async def test_a_nearly_full_tmpfs_refuses_changes_without_changing_anything(
    tiny_tmpfs: Path,
) -> None:
    """With 0 to 16 KiB left on the state dir's real tmpfs, each change either succeeds or
    answers 503 STATE_NOT_SAVED with store, conf files and supervisord as before, also
    after a restart; at least one is refused."""
    config = make_config(tiny_tmpfs / "state", supervisor={"poll_interval": 0.2})
    async with serving(config) as client:
        world = await start_world(client)
    refused = 0
    for spare in (0, 4096, 8192, 16384):
        for path, body in operations(world):
            if path.startswith("/programs/add"):
                body = {**body, "name": f"{body['name']}_{spare}"}
            async with serving(config) as client:
                before = await snapshot(config)
                filler = fill_leaving(tiny_tmpfs, spare)
                try:
                    status, answer = await post(client, path, body)
                    if status == 503:
                        assert answer["reason"] == "STATE_NOT_SAVED", answer
                        assert await snapshot(config) == before, (spare, path)
                finally:
                    filler.unlink()
            if status == 503:
                refused += 1
                async with serving(config):
                    assert await snapshot(config) == before, (spare, path, "restart")
            else:
                assert status in (200, 404, 409), (spare, path, answer)
    assert refused >= 1


async def test_start_up_removes_what_an_interrupted_change_left(short_tmp: Path) -> None:
    """Temp and moved-aside conf files and a conf file without a row are removed at
    start-up, and the repairs are logged."""
    config = make_config(short_tmp, supervisor={"poll_interval": 0.2})
    async with serving(config) as client:
        world = await start_world(client)
    include = config.state_path / "supervisor" / "conf.d"
    real = include / f"hoodyd-program-{world['running']['id']}.conf"
    orphan_text = real.read_text().replace(
        f"id={world['running']['id']}", "id=4242", 1
    ).replace("[program:running]", "[program:orphan]")
    (include / "hoodyd-program-4242.conf").write_text(orphan_text)
    (include / ".hoodyd-program-7.conf.new").write_text("half")
    (include / f".{real.name}.old").write_text(real.read_text())
    with capture_logs() as logs:
        async with serving(config):
            pass
    repaired = [e for e in logs if e["event"] == "startup_repaired"]
    assert repaired and set(repaired[0]["removed_leftover_files"]) == {
        ".hoodyd-program-7.conf.new", f".{real.name}.old"
    }
    reconciled = [e for e in logs if e["event"] == "reconciled"]
    assert "removed stale hoodyd-program-4242.conf" in reconciled[0]["changes"]
    assert sorted(p.name for p in include.iterdir()) == sorted(
        ["hoodyd-events.conf", real.name]
    )
    assert conf.parse_header(real.read_text()) == (world["running"]["id"], None)


async def test_start_up_removes_a_group_whose_removal_was_interrupted(short_tmp: Path) -> None:
    """A program whose row and conf file are gone while the embedded supervisord still runs
    its group (a removal interrupted after its commit) is stopped and removed at start-up."""
    config = make_config(short_tmp, supervisor={"poll_interval": 0.2})
    async with serving(config) as client:
        world = await start_world(client)
    running = world["running"]
    with contextlib.closing(sqlite3.connect(config.state_path / "hoodyd.db")) as db:
        db.execute("DELETE FROM programs WHERE id = ?", (running["id"],))
        db.execute("DELETE FROM should_run WHERE program_id = ?", (running["id"],))
        db.commit()
    (config.state_path / "supervisor" / "conf.d" / f"hoodyd-program-{running['id']}.conf").unlink()
    assert "running" in [name for name, _, _ in await snapshot_supervisord(config)]
    with capture_logs() as logs:
        async with serving(config):
            pass
    reconciled = [e for e in logs if e["event"] == "reconciled"]
    assert "supervisord removed unaccounted running" in reconciled[0]["changes"]
    assert "running" not in [name for name, _, _ in await snapshot_supervisord(config)]


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EIO], ids=["ENOSPC", "EIO"])
async def test_a_port_instance_start_that_cannot_write_its_file_records_nothing(
    short_tmp: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    """Starting an on-demand port instance whose conf file write, fsync or rename fails
    answers 503 STATE_NOT_SAVED with nothing recorded to run (not even written and undone)
    and nothing registered, also after a restart; once every write succeeds, it starts."""
    config = make_config(short_tmp, supervisor={"poll_interval": 0.2})
    base = free_port_range(2)
    async with serving(config) as client:
        status, added = await post(client, "/programs/add", sleeper(
            command=PORT_SERVER, port_range={"start": base, "end": base + 1}))
        assert status == 200, added
    program_id = added["program"]["id"]
    failures = 0
    while True:
        before = await snapshot(config)
        failing = FailingOps(code, failures + 1)
        wal = config.state_path / "hoodyd.db-wal"
        async with serving(config) as client:
            log_before = wal.read_bytes() if wal.exists() else b""
            monkeypatch.setattr(files, "ops", failing)
            status, answer = await post(client, f"/programs/{program_id}/start",
                                        {"port": base, "wait": True})
            monkeypatch.setattr(files, "ops", files.FileOps())
            if failing.calls < failing.fail_at:
                assert status == 200, answer
                break
            assert (status, answer["reason"]) == (503, "STATE_NOT_SAVED"), answer
            assert await snapshot(config) == before, failures + 1
            # not a write and its undo: no store write at all (an undo could fail too)
            assert (wal.read_bytes() if wal.exists() else b"") == log_before
        async with serving(config):
            assert await snapshot(config) == before, (failures + 1, "restart")
        failures += 1
    assert failures >= 3


async def test_a_run_config_edit_on_a_full_disk_changes_nothing(tiny_tmpfs: Path) -> None:
    """An edit of the run config (sources, profiles, recipes) whose write the full disk
    refuses raises STATE_NOT_SAVED; the file, the config in memory and the directory (no
    temp file) are as before."""
    import msgspec

    from hoodyd.apps.catalog.runtime_config import RuntimeConfigStore
    from hoodyd.errors import StateNotSaved

    path = tiny_tmpfs / "run" / "config.json"
    store = RuntimeConfigStore(path)
    before = store.load({})
    on_disk = path.read_bytes()
    filler = fill_leaving(tiny_tmpfs, 0)
    try:
        with pytest.raises(StateNotSaved) as refused:
            await store.update(lambda config: msgspec.structs.replace(config, recipes=[]))
    finally:
        filler.unlink()
    assert refused.value.extra["changed"] is False
    assert path.read_bytes() == on_disk
    assert store.current == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["config.json"]


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EIO])
@pytest.mark.parametrize("fail_at", [1, 2, 3])
async def test_a_run_config_edit_whose_write_fails_changes_nothing(
    short_tmp: Path, monkeypatch: pytest.MonkeyPatch, code: int, fail_at: int
) -> None:
    """An edit of the run config (sources, profiles, recipes) whose write, fsync or rename
    fails raises STATE_NOT_SAVED; the file, the config in memory and the directory are as
    before, and the same edit succeeds once the disk works again."""
    import msgspec

    from hoodyd.apps.catalog.runtime_config import RuntimeConfigStore

    path = short_tmp / "run" / "config.json"
    store = RuntimeConfigStore(path)
    before = store.load({})
    on_disk = path.read_bytes()

    def no_redirects(config: Any) -> Any:
        return msgspec.structs.replace(
            config, policy=msgspec.structs.replace(config.policy, allow_redirect=False)
        )

    monkeypatch.setattr(files, "ops", FailingOps(code, fail_at))
    with pytest.raises(StateNotSaved) as refused:
        await store.update(no_redirects)
    assert refused.value.extra["changed"] is False
    assert path.read_bytes() == on_disk
    assert store.current == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["config.json"]
    monkeypatch.setattr(files, "ops", files.FileOps())
    after = await store.update(no_redirects)
    assert after != before and RuntimeConfigStore(path).load({}) == after


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EIO])
@pytest.mark.parametrize("fail_at", [1, 2, 3])
def test_a_token_that_cannot_be_written_leaves_no_token_file(
    short_tmp: Path, monkeypatch: pytest.MonkeyPatch, code: int, fail_at: int
) -> None:
    """Generating STATE/token on a failing disk (its write, fsync or rename) is refused as
    STATE_NOT_SAVED and leaves neither the file nor a temp file: never an empty token."""
    config = make_config(short_tmp / "state")
    monkeypatch.setattr(files, "ops", FailingOps(code, fail_at))
    with pytest.raises(StateNotSaved, match="cannot write the token file"):
        resolve_token(config)
    assert list(config.state_path.iterdir()) == []
    monkeypatch.setattr(files, "ops", files.FileOps())
    token = resolve_token(config)
    assert len(token) >= 32 and resolve_token(config) == token
    assert (config.state_path / "token").stat().st_mode & 0o777 == 0o600


def test_an_empty_token_file_is_refused(short_tmp: Path) -> None:
    """A token file left empty (by hand, or by an older hoodyd on a full disk) is refused with
    a line saying how to mend it, never taken as the empty token."""
    config = make_config(short_tmp / "state")
    config.state_path.mkdir(parents=True, exist_ok=True)
    (config.state_path / "token").write_text("\n")
    with pytest.raises(InvalidRequest, match="holds no token; remove it"):
        resolve_token(config)
