"""The one edge-decoding layer: query strings and bodies into Structs, with the same rules and
reasons in every area, derived from the Structs' own declarations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hoodyd.api.decoding import decode_params
from hoodyd.api.selectors import selector_from_params
from hoodyd.app import create_app
from hoodyd.errors import InvalidRequest
from hoodyd.schemas.queries import ExecuteQuery, ProgramListQuery
from hoodyd.schemas.run import Selector
from tests.conftest import make_config


def reason_of(params: dict[str, list[str]], kind: type[Any], **options: Any) -> str:
    with pytest.raises(InvalidRequest) as caught:
        decode_params(params, kind, **options)
    return caught.value.reason


def test_types_and_bounds_come_from_the_struct() -> None:
    """Numbers are read from text and bounded as declared; lists repeat and comma-join."""
    query = decode_params(
        {"port": ["8042"], "enabled": ["true"], "include_stats": ["false"]}, ProgramListQuery
    )
    assert (query.port, query.enabled, query.include_stats) == (8042, True, False)
    assert reason_of({"port": ["0"]}, ProgramListQuery) == "OUT_OF_RANGE"
    assert reason_of({"port": ["70000"]}, ProgramListQuery) == "OUT_OF_RANGE"
    assert reason_of({"port": ["80x"]}, ProgramListQuery) == "INVALID_INTEGER"
    assert reason_of({"port": ["1", "2"]}, ProgramListQuery) == "DUPLICATE_PARAMETER"
    assert reason_of({"nope": ["1"]}, ProgramListQuery) == "UNKNOWN_PARAMETER"
    selector = selector_from_params({"app": ["x"], "source": ["apt,nix", "system"]})
    assert selector.source == ["apt", "nix", "system"]


def test_daemon_flags_are_strict_and_terminal_flags_lenient() -> None:
    """The daemon area takes only true/false; the terminal and run areas also 1, 0 and a
    bare key."""
    for value in ("1", "0", "", "yes", "True"):
        assert reason_of({"enabled": [value]}, ProgramListQuery) == "INVALID_BOOLEAN"
    for value, expected in (("", True), ("1", True), ("0", False), ("true", True)):
        query = decode_params({"reset": [value]}, ExecuteQuery, lenient_flags=True)
        assert query.reset is expected
    assert reason_of({"reset": ["maybe"]}, ExecuteQuery, lenient_flags=True) == (
        "INVALID_BOOLEAN"
    )


def test_repeat_only_lists_keep_their_commas() -> None:
    """`env=A=1,2` is one variable whose value holds a comma, not two items."""
    query = decode_params({"env": ["A=1,2", "B=3"]}, ExecuteQuery, lenient_flags=True)
    assert query.env == ["A=1,2", "B=3"]


def test_enum_errors_list_the_allowed_values_in_the_contract_order() -> None:
    """An unknown enum value names the field and every allowed value."""
    with pytest.raises(InvalidRequest) as caught:
        decode_params({"app": ["x"], "kind": ["tui"]}, Selector, lenient_flags=True)
    assert caught.value.reason == "INVALID_ENUM"
    assert caught.value.message == (
        "invalid value 'tui' for 'kind': allowed values are gui, cli, any"
    )


@pytest.fixture
async def run_client(aiohttp_client: Any, short_tmp: Path) -> Any:
    """The run area alone (no sync, no supervisord)."""
    config = make_config(short_tmp, run={"auto_sync": False})
    return await aiohttp_client(create_app(config, areas=("run",)))


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("app=x&dryrun=1", "UNKNOWN_PARAMETER"),
        ("app=x&pick=first", "UNKNOWN_PARAMETER"),
        ("app=x&app=y", "DUPLICATE_PARAMETER"),
        ("app=x&q=y", "DUPLICATE_PARAMETER"),
        ("app=x&limit=ten", "INVALID_INTEGER"),
        ("os=linux", "MISSING_FIELD"),
    ],
)
async def test_search_refuses_what_run_refuses(run_client: Any, query: str, reason: str) -> None:
    """`/search` parses its query with `/run`'s parser: nothing is silently dropped."""
    response = await run_client.get(f"/api/v1/run/search?{query}")
    body = await response.json()
    assert response.status == 400, body
    assert body["reason"] == reason
    assert body["code"] == 400


async def test_search_and_run_read_the_same_query_alike(run_client: Any) -> None:
    """The same search fields pass decoding on both routes, and the same bad ones fail on both
    with the same reason and message."""
    query = "q=jq&source=apt,nix&source=system&kind=cli&limit=5&tags=a,b"
    search = await run_client.get(f"/api/v1/run/search?{query}")
    run = await run_client.get(f"/api/v1/run/run?{query}&dry_run=1")
    assert search.status == 200
    assert (await run.json())["reason"] == "NO_CANDIDATES"  # past decoding: nothing indexed
    for bad in ("q=jq&kind=tui", "q=jq&source=snap", "q=jq&limit=x", "q=jq&name=k"):
        on_search = await (await run_client.get(f"/api/v1/run/search?{bad}")).json()
        on_run = await (await run_client.get(f"/api/v1/run/run?{bad}")).json()
        assert on_search == on_run, bad


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/run/search?app=a%00b",
        "/api/v1/run/run?app=a%0Ab&pick=first",
        "/api/v1/run/go/a%00b",
        "/api/v1/run/go/app/%1B%5B2J/pick/first",
    ],
)
async def test_an_app_name_with_control_characters_is_a_400(run_client: Any, path: str) -> None:
    """NUL, newlines and escape sequences never reach a search, a log line or a terminal."""
    response = await run_client.get(path)
    body = await response.json()
    assert response.status == 400, body
    assert body["reason"] == "VALIDATION_FAILED"
