"""A change of one program costs the same however many programs there are: it writes only
its own conf file, asks supervisord about its own group only (no `reloadConfig`, no reading
of every process), and a disabled program's change writes no file at all."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from hoodyd.api.keys import PROGRAMS
from hoodyd.app import create_app
from hoodyd.programs import files
from tests.conftest import make_config, sleeper

API = "/api/v1/daemon"


class CountingOps(files.FileOps):
    """The real file layer, noting the visible files each rename moves in or out."""

    def __init__(self) -> None:
        self.touched: set[str] = set()
        self.writes = 0

    def write(self, fd: int, data: bytes) -> None:
        self.writes += 1
        super().write(fd, data)

    def replace(self, source: Path, target: Path) -> None:
        self.touched |= {p.name for p in (source, target) if not p.name.startswith(".")}
        super().replace(source, target)


async def cost(
    client: TestClient[Any, Any], monkeypatch: pytest.MonkeyPatch, path: str, body: Any
) -> tuple[Any, dict[str, int], set[str], int]:
    """The answer of one change, the supervisord calls it made, the conf files it touched
    and how many writes it made."""
    calls = client.app[PROGRAMS].client.calls
    before = dict(calls)
    counting = CountingOps()
    monkeypatch.setattr(files, "ops", counting)
    try:
        response = await client.post(API + path, json=body)
        answer = await response.json()
    finally:
        monkeypatch.setattr(files, "ops", files.FileOps())
    assert response.status == 200, answer
    delta = {k: v - before.get(k, 0) for k, v in calls.items() if v != before.get(k, 0)}
    return answer, delta, counting.touched, counting.writes


async def test_each_change_touches_its_own_file_and_group_only(
    short_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With 2 and with 40 programs registered, add, disable, enable, edit and remove make
    the same supervisord calls (one group each, never reloadConfig or every process's
    info) and touch only the program's own conf file; a disabled add writes no file."""
    config = make_config(short_tmp, supervisor={"poll_interval": 600})
    async with TestClient(TestServer(create_app(config, areas=("daemon",)))) as client:
        measured: dict[int, list[dict[str, int]]] = {}
        registered = 0
        for count in (2, 40):
            while registered < count:
                response = await client.post(f"{API}/programs/add", json=sleeper())
                assert response.status == 200
                registered += 1
            answer, added, touched, _ = await cost(client, monkeypatch, "/programs/add",
                                                   sleeper(name=f"probe{count}"))
            program_id = answer["program"]["id"]
            own = f"hoodyd-program-{program_id}.conf"
            assert touched == {own}
            deltas = [added]
            for path, body in [
                (f"/programs/{program_id}/disable", None),
                (f"/programs/{program_id}/enable", None),
                (f"/programs/edit/{program_id}",
                 {**sleeper(name=f"probe{count}"), "command": "/bin/sleep 301"}),
                (f"/programs/remove/{program_id}", None),
            ]:
                _, delta, touched, _ = await cost(client, monkeypatch, path, body)
                assert touched == {own}, path
                deltas.append(delta)
            _, delta, touched, writes = await cost(
                client, monkeypatch, "/programs/add", sleeper(name=f"off{count}", enabled=False)
            )
            assert (delta, touched, writes) == ({}, set(), 0)
            measured[count] = deltas
        assert measured[2] == measured[40]
        for delta in measured[40]:
            assert "supervisor.reloadConfig" not in delta
            assert "supervisor.getAllProcessInfo" not in delta
            assert "hoodyd.getAllProcessInfoJSON" not in delta
            assert sum(delta.values()) <= 5, delta
        assert measured[40][0] == {"hoodyd.addGroupFromFile": 1, "supervisor.getProcessInfo": 1}
