"""Program ids are never given twice (a persisted counter, also across restarts and for
stores from before it), and removing a program removes its logs: nothing of a removed
program surfaces in a later program's logs or failed-start answer."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from hoodyd.app import create_app
from hoodyd.config import Config
from hoodyd.polling import poll_until
from tests.conftest import make_config, sleeper

API = "/api/v1/daemon"


@contextlib.asynccontextmanager
async def serving(config: Config) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(create_app(config, areas=("daemon",)))) as client:
        yield client


async def add(client: TestClient[Any, Any], **fields: Any) -> dict[str, Any]:
    response = await client.post(f"{API}/programs/add", json=sleeper(**fields))
    body = await response.json()
    assert response.status == 200, body
    program: dict[str, Any] = body["program"]
    return program


async def remove(client: TestClient[Any, Any], program_id: int) -> None:
    response = await client.post(f"{API}/programs/remove/{program_id}")
    assert response.status == 200, await response.json()


async def stderr_of(client: TestClient[Any, Any], program_id: int) -> str:
    response = await client.get(f"{API}/programs/{program_id}/logs?type=stderr&lines=50")
    body = await response.json()
    assert response.status == 200, body
    return str(body["logs"])


async def test_a_program_after_rm_gets_a_new_id_and_none_of_the_old_logs(
    short_tmp: Path,
) -> None:
    """After the newest program is removed, the next one (same name) gets a new id, the
    removed one's log folder is gone, and neither its logs nor its failed start's
    stderr_tail show the removed program's lines."""
    config = make_config(short_tmp, supervisor={"poll_interval": 0.2})
    crash = "/bin/sh -c 'echo line-of-the-{} >&2; exit 3'"
    async with serving(config) as client:
        old = await add(client, name="crash", command=crash.format("old"), autorestart=False)
        await client.post(f"{API}/programs/{old['id']}/start", json={"wait": True})

        async def logged() -> str | None:
            text = await stderr_of(client, old["id"])
            return text if "line-of-the-old" in text else None

        assert await poll_until(logged, timeout=10, interval=0.05)
        await remove(client, old["id"])
        assert not (config.log_path / f"program-{old['id']}").exists()

        new = await add(client, name="crash", command=crash.format("new"), autorestart=False)
        assert new["id"] > old["id"]
        response = await client.post(f"{API}/programs/{new['id']}/start", json={"wait": True})
        failed = await response.json()
        assert response.status != 200, failed
        tail = failed.get("stderr_tail", "") or ""
        assert "line-of-the-old" not in tail

        async def new_logged() -> str | None:
            text = await stderr_of(client, new["id"])
            return text if "line-of-the-new" in text else None

        text = await poll_until(new_logged, timeout=10, interval=0.05)
        assert text is not None and "line-of-the-old" not in text


async def test_ids_stay_monotonic_across_restarts_and_old_stores(short_tmp: Path) -> None:
    """A removed newest id is not given again after a restart; a store from before the
    counter, with a removed program's log folder left behind, gives an id past that folder."""
    config = make_config(short_tmp, supervisor={"poll_interval": 0.2})
    async with serving(config) as client:
        first = await add(client, enabled=False)
        second = await add(client, enabled=False)
        await remove(client, second["id"])
    async with serving(config) as client:
        third = await add(client, enabled=False)
    assert third["id"] > second["id"] > first["id"]
    # a store of an older hoodyd: no counter; logs of a removed program 40 stayed behind
    with contextlib.closing(sqlite3.connect(config.state_path / "hoodyd.db")) as db:
        db.execute("DROP TABLE counters")
        db.commit()
    (config.log_path / "program-40").mkdir(parents=True)
    async with serving(config) as client:
        fourth = await add(client, enabled=False)
    assert fourth["id"] == 41
