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


def read_configs(conf_file: Path) -> list[Any]:
    from supervisor.options import ServerOptions

    server = ServerOptions()
    server.configfile = str(conf_file)
    server.process_config(do_usage=False)
    return list(server.process_group_configs)


def test_the_embedded_supervisord_reads_included_files_as_supervisor_does(
    short_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """supervisord as hoodyd runs it (each included file parsed on its own) reads the same
    process groups as supervisor's own reader: `%(here)s` of each file, a section named in
    two files merged, event listeners, and configparser reads each file once."""
    import configparser

    from supervisor import options

    from hoodyd.programs import supervisord_main

    include = short_tmp / "conf.d"
    include.mkdir()
    logs = short_tmp / "logs"
    logs.mkdir()
    (short_tmp / "s.conf").write_text(
        f"[supervisord]\nlogfile={short_tmp}/s.log\n[unix_http_server]\nfile={short_tmp}/s.sock\n"
        f"[include]\nfiles = {include}/*.conf {short_tmp}/more/*.conf\n"
    )
    for i in range(30):
        (include / f"p{i:02}.conf").write_text(
            f"[program:p{i}]\ncommand=/bin/sleep {i + 1}\ndirectory=%(here)s\n"
            f"stdout_logfile={logs}/p{i}.log\npriority={900 + i % 3}\n"
        )
    (include / "zz.conf").write_text("[program:p3]\nautostart=false\nnumprocs=1\n")
    (include / "events.conf").write_text(
        "[eventlistener:ev]\ncommand=/bin/cat\nevents=PROCESS_STATE\n"
    )
    (short_tmp / "more").mkdir()
    (short_tmp / "more" / "x.conf").write_text("[program:x]\ncommand=/bin/true %(here)s\n")
    stock = read_configs(short_tmp / "s.conf")
    reads: list[str] = []
    original = configparser.RawConfigParser.read

    def counting(self: Any, filenames: Any, **kwargs: Any) -> list[str]:
        reads.extend(filenames)
        return original(self, filenames, **kwargs)

    monkeypatch.setattr(options.UnhosedConfigParser, "read", supervisord_main.read)
    monkeypatch.setattr(options.UnhosedConfigParser, "expand_here", supervisord_main.expand_here)
    monkeypatch.setattr(configparser.RawConfigParser, "read", counting)
    linear = read_configs(short_tmp / "s.conf")
    assert linear == stock
    assert len(linear) == 32
    included = [*include.iterdir(), short_tmp / "more" / "x.conf"]
    assert sorted(reads) == sorted(str(path) for path in included)
    by_name = {config.name: config for config in linear}
    assert by_name["p3"].process_configs[0].autostart is False
    assert by_name["x"].process_configs[0].command.endswith(str(short_tmp / "more"))
