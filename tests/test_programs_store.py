"""Program store endpoints: add, get, list filters, edit merge, remove, reset — and every rule
that refuses a program, leaving store and supervisord config untouched."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from hoodyd.config import Config
from tests.conftest import add_program as add
from tests.conftest import sleeper

API = "/api/v1/daemon"


def conf_files(config: Config) -> list[str]:
    return sorted(p.name for p in (config.state_path / "supervisor" / "conf.d").glob("hoodyd-p*"))


async def test_add_returns_the_program_with_server_defaults(client: Any) -> None:
    """A minimal add answers `{success, id, program}` with the contract's defaults filled in."""
    response = await client.post(f"{API}/programs/add", json=sleeper(name="web"))
    body = await response.json()
    assert response.status == 200
    assert body["success"] is True
    program = body["program"]
    assert body["id"] == program["id"] == 1
    assert program["enabled"] is True
    assert program["boot"] is False
    assert program["autorestart"] == "unexpected"
    assert program["priority"] == 999
    assert program["delay_seconds"] == 0
    assert program["logs_enabled"] is True
    assert program["log_max_bytes"] == 5242880
    assert program["log_backups"] == 2
    assert program["hoody_kit"] is False
    assert program["lazy_load"] is False


async def test_get_and_list_return_what_was_added(client: Any) -> None:
    """GET /programs/{id} and GET /programs return the stored program."""
    program = await add(client, name="alpha", description="first")
    got = await (await client.get(f"{API}/programs/{program['id']}")).json()
    assert got == {"success": True, "program": program}
    listed = await (await client.get(f"{API}/programs")).json()
    assert listed == {"programs": [program]}


async def test_unknown_program_id_is_404_everywhere(client: Any) -> None:
    """Every per-program endpoint answers 404 with the daemon error shape for an unknown id."""
    for method, path in [
        ("GET", "/programs/99"),
        ("POST", "/programs/edit/99"),
        ("POST", "/programs/remove/99"),
        ("POST", "/programs/99/enable"),
        ("POST", "/programs/99/disable"),
        ("POST", "/programs/99/start"),
        ("POST", "/programs/99/stop"),
        ("GET", "/status/99"),
        ("GET", "/programs/99/logs"),
    ]:
        response = await client.request(method, API + path, json={} if method == "POST" else None)
        body = await response.json()
        assert response.status == 404, path
        assert body["success"] is False
        assert body["reason"] == "PROGRAM_NOT_FOUND"
        assert "99" in body["error"]


@pytest.mark.parametrize(
    ("fields", "status", "text"),
    [
        ({"name": None}, 400, ""),
        ({"name": 'say "hi"'}, 400, "quotes"),
        ({"name": "it's"}, 400, "quotes"),
        ({"command": "echo a\nrm -rf /"}, 400, "newline"),
        ({"command": "   "}, 400, "command"),
        ({"user": "no-such-user-xyz"}, 400, "User does not exist"),
        ({"user": "Bad User"}, 400, "Invalid user"),
        ({"directory": "relative/dir"}, 400, "absolute"),
        ({"stdout_logfile": "/etc/passwd"}, 400, "must lie under"),
        ({"stderr_logfile": "/tmp/../etc/x.log"}, 400, "must lie under"),
        ({"priority": 0}, 400, "priority"),
        ({"priority": 1000}, 400, "priority"),
        ({"delay_seconds": 3601}, 400, "delay_seconds"),
        ({"log_backups": 101}, 400, "log_backups"),
        ({"log_max_bytes": -1}, 400, "log_max_bytes"),
        ({"autorestart": "sometimes"}, 400, "autorestart"),
        ({"description": "x" * 501}, 400, "500"),
        ({"environment": {"BAD-KEY": "x"}}, 400, "environment variable name"),
        ({"environment": {"K": "a\nb"}}, 400, "newline"),
        ({"port_range": {"start": 9000, "end": 10000}}, 400, "at most 1000"),
        ({"port_range": {"start": 9010, "end": 9000}}, 400, "start must not exceed end"),
        ({"port_range": {"start": 0, "end": 10}}, 400, "port_range"),
        ({"port_param": "--po rt"}, 400, "Invalid port_param format"),
        (
            {"port_range": {"start": 9000, "end": 9001}, "port_param": ""},
            400,
            'Invalid port_param format: ""',
        ),
        (
            {"port_range": {"start": 9000, "end": 9001}, "port_param": "--po rt"},
            400,
            "Invalid port_param format",
        ),
        ({"lazy_load": True, "boot": True}, 400, "lazy_load"),
        ({"terminal_shell": "bash"}, 400, "terminal_shell requires terminal_id"),
        ({"terminal_id": 70000}, 400, "terminal_id"),
        ({"display": "abc"}, 400, "display"),
        ({"webhooks": {"urls": ["ftp://x"], "enabled": True}}, 400, "HTTPS"),
        ({"unknown_field": 1}, 400, "unknown_field"),
    ],
)
async def test_invalid_programs_are_refused_and_change_nothing(
    client: Any, program_config: Config, fields: dict[str, Any], status: int, text: str
) -> None:
    """Each validation rule answers 400 with a clear error and leaves store and config alone."""
    body = sleeper(**fields)
    for key, value in fields.items():
        if value is None:
            del body[key]
    response = await client.post(f"{API}/programs/add", json=body)
    answer = await response.json()
    assert response.status == status, answer
    assert answer["success"] is False
    assert text in answer["error"]
    assert answer["reason"]
    assert (await (await client.get(f"{API}/programs")).json()) == {"programs": []}
    assert conf_files(program_config) == []


async def test_duplicate_names_are_refused_on_add_and_on_edit(client: Any) -> None:
    """Names are unique across programs, both when creating and when renaming."""
    await add(client, name="one")
    other = await add(client, name="two")
    response = await client.post(f"{API}/programs/add", json=sleeper(name="one"))
    assert response.status == 400
    assert "already in use" in (await response.json())["error"]
    response = await client.post(f"{API}/programs/edit/{other['id']}", json={"name": "one"})
    assert response.status == 400
    assert (await (await client.get(f"{API}/programs/{other['id']}")).json())["program"] == other


async def test_port_ranges_may_touch_but_not_overlap(client: Any) -> None:
    """Adjacent ranges are fine; overlapping ones are refused on create and update."""
    first = await add(client, port_range={"start": 9000, "end": 9009})
    await add(client, port_range={"start": 9010, "end": 9019})
    response = await client.post(
        f"{API}/programs/add", json=sleeper(port_range={"start": 9005, "end": 9012})
    )
    assert response.status == 400
    assert "Port range overlaps" in (await response.json())["error"]
    response = await client.post(
        f"{API}/programs/edit/{first['id']}", json={"port_range": {"start": 9000, "end": 9010}}
    )
    assert response.status == 400
    assert (await response.json())["reason"] == "PORT_RANGE_OVERLAP"


async def test_port_range_gets_the_default_port_param(client: Any) -> None:
    """A port-range program without port_param gets `--port`; a program without range has
    none, and every optional field it leaves unset is omitted, never null (the SDK's type)."""
    ranged = await add(client, port_range={"start": 9100, "end": 9101})
    plain = await add(client)
    assert ranged["port_param"] == "--port"
    assert None not in plain.values()
    for unset in ("port_param", "port_range", "environment", "directory", "stdout_logfile",
                  "stderr_logfile", "description", "display", "webhooks", "idle_stop_after"):
        assert unset not in plain, unset
    response = await client.get(f"{API}/programs/{plain['id']}")
    assert None not in (await response.json())["program"].values()


async def test_edit_is_a_top_level_merge_with_environment_replaced(client: Any) -> None:
    """Omitted fields keep their values; `environment` is replaced as a whole map."""
    program = await add(client, description="keep me", environment={"A": "1", "B": "2"})
    response = await client.post(
        f"{API}/programs/edit/{program['id']}", json={"priority": 10, "environment": {"C": "3"}}
    )
    edited = (await response.json())["program"]
    assert response.status == 200
    assert edited["priority"] == 10
    assert edited["description"] == "keep me"
    assert edited["environment"] == {"C": "3"}
    assert edited["command"] == program["command"]


async def test_edit_deep_merges_webhooks_and_replaces_urls(client: Any) -> None:
    """Webhook sub-fields omitted from an edit keep their values; `urls` is replaced whole."""
    program = await add(
        client,
        webhooks={"enabled": True, "urls": ["https://a.example/h"], "timeout": 7, "retry": 2},
    )
    response = await client.post(
        f"{API}/programs/edit/{program['id']}",
        json={"webhooks": {"urls": ["https://b.example/h"]}},
    )
    hooks = (await response.json())["program"]["webhooks"]
    assert hooks["urls"] == ["https://b.example/h"]
    assert hooks["timeout"] == 7
    assert hooks["retry"] == 2
    assert hooks["enabled"] is True


async def test_hoody_kit_follows_the_directory_and_ignores_input(client: Any) -> None:
    """`hoody_kit` is read-only: true iff the directory is under /hoody/plugins."""
    program = await add(client, hoody_kit=True)
    assert program["hoody_kit"] is False
    kit = await add(client, directory="/hoody/plugins/demo", enabled=False)
    assert kit["hoody_kit"] is True


async def test_display_numbers_are_normalized(client: Any) -> None:
    """`display: "1"` is stored as `:1`."""
    program = await add(client, display="1")
    assert program["display"] == ":1"


async def test_list_filters_use_strict_booleans_and_combine(client: Any) -> None:
    """Filters AND together; booleans accept only true/false; port filters test ranges."""
    await add(client, name="a", boot=True, port_range={"start": 8000, "end": 8009}, enabled=False)
    await add(client, name="b", lazy_load=True, port_range={"start": 8010, "end": 8019})
    await add(client, name="c")

    async def names(query: str) -> list[str]:
        response = await client.get(f"{API}/programs?{query}")
        assert response.status == 200, await response.text()
        return [p["name"] for p in (await response.json())["programs"]]

    assert await names("enabled=true") == ["b", "c"]
    assert await names("boot=true") == ["a"]
    assert await names("lazy_load=true&enabled=true") == ["b"]
    assert await names("port=8012") == ["b"]
    assert await names("port_from=8005&port_to=8011") == ["a", "b"]
    assert await names("hoody_kit=false") == ["a", "b", "c"]
    for bad in ["enabled=1", "boot=yes", "lazy_load=", "include_status=TRUE"]:
        response = await client.get(f"{API}/programs?{bad}")
        assert response.status == 400, bad
        assert (await response.json())["reason"] == "INVALID_BOOLEAN"
    for bad in ["port_from=1", "port=0", "port=abc", "port_from=10&port_to=5", "limit=5"]:
        assert (await client.get(f"{API}/programs?{bad}")).status == 400, bad


async def test_remove_deletes_the_program(client: Any, program_config: Config) -> None:
    """Remove answers `{success, id}` and the program and its config are gone."""
    program = await add(client)
    assert conf_files(program_config) == [f"hoodyd-program-{program['id']}.conf"]
    response = await client.post(f"{API}/programs/remove/{program['id']}")
    assert await response.json() == {"success": True, "id": program["id"]}
    assert (await client.get(f"{API}/programs/{program['id']}")).status == 404
    assert conf_files(program_config) == []


async def test_explicit_id_is_kept_and_a_colliding_one_is_a_conflict(client: Any) -> None:
    """An explicit id is used as given; reusing an existing id answers 409."""
    program = await add(client, id=42)
    assert program["id"] == 42
    response = await client.post(f"{API}/programs/add", json=sleeper(id=42))
    assert response.status == 409
    assert (await response.json())["reason"] == "ID_IN_USE"


async def test_reset_replaces_programs_with_the_defaults_file(
    client: Any, program_config: Config
) -> None:
    """Reset drops current programs and restores the defaults file's, registering enabled ones."""
    await add(client, name="temporary")
    defaults = [sleeper(name="base1"), sleeper(name="base2", enabled=False)]
    Path(program_config.programs.defaults_file).write_text(json.dumps({"programs": defaults}))
    response = await client.post(f"{API}/programs/reset")
    assert (await response.json())["success"] is True
    listed = (await (await client.get(f"{API}/programs")).json())["programs"]
    assert [p["name"] for p in listed] == ["base1", "base2"]
    assert conf_files(program_config) == ["hoodyd-program-1.conf"]


async def test_bad_bodies_get_json_errors(client: Any) -> None:
    """Malformed JSON, wrong types and bodies over 1 MB answer clear JSON errors."""
    response = await client.post(
        f"{API}/programs/add", data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status == 400
    assert (await response.json())["reason"] == "MALFORMED_JSON"
    response = await client.post(f"{API}/programs/add", json={"name": 5})
    assert response.status == 400
    response = await client.post(
        f"{API}/programs/add",
        data=io.BytesIO(b'{"name": "' + b"x" * (1024 * 1024 + 10) + b'"}'),
        headers={"Content-Type": "application/json"},
    )
    assert response.status == 413
    body = await response.json()
    assert body["success"] is False
    assert body["reason"] == "PAYLOAD_TOO_LARGE"
    assert (await client.post(f"{API}/programs/add")).status == 400
