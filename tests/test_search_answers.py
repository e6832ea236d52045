"""A repeated search over HTTP answers the JSON of the candidates built for its ranked list,
encoded once: the same bytes a fresh encoding gives, and a settings edit that re-ranks the
list is in the very next answer."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec
import pytest
from aiohttp.test_utils import TestClient

from hoodyd.api.encoding import SharedJson
from hoodyd.app import create_app
from hoodyd.schemas.run import SearchResponse
from tests.conftest import make_config
from tests.data.apps.world import World, make_world

BASE = "/api/v1/run"


@pytest.fixture
def world(short_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    world = make_world(short_tmp / "w")
    world.write_config(short_tmp / "s")
    monkeypatch.setenv("PATH", f"{world.nix_bin}:{os.environ['PATH']}")  # the fake nix-env
    return world


async def synced_client(aiohttp_client, short_tmp: Path) -> TestClient:
    config = make_config(short_tmp / "s", run={"auto_sync": False})
    client: TestClient = await aiohttp_client(create_app(config, areas=("run",)))
    job = await (await client.post(f"{BASE}/sources/sync")).json()
    done = await (
        await client.get(f"{BASE}/jobs/{job['job_id']}?wait=done&timeout_ms=60000")
    ).json()
    assert done["status"] == "done", done
    return client


async def search(client: TestClient) -> tuple[bytes, SearchResponse]:
    response = await client.get(f"{BASE}/search?app=jq&limit=100")
    assert response.status == 200
    body = await response.read()
    return body, msgspec.json.decode(body, type=SearchResponse)


async def test_a_repeated_search_answers_the_same_json_and_follows_edits(
    aiohttp_client, short_tmp: Path, world: World
) -> None:
    """Repeats answer byte for byte what encoding the answer afresh gives (each with its own
    set id); a source's priority raised, then the source disabled, show in the next answer."""
    client = await synced_client(aiohttp_client, short_tmp)
    first_body, first = await search(client)
    again_body, again = await search(client)
    assert again.set_id != first.set_id
    assert again.candidates == first.candidates
    for body, answer in ((first_body, first), (again_body, again)):
        assert msgspec.json.encode(answer) == body

    nix_score = next(c.score for c in again.candidates if c.source_id == "nixpkgs")
    patched = await client.patch(f"{BASE}/sources/nixpkgs", json={"priority": 45})
    assert patched.status == 200
    _, raised = await search(client)
    assert next(c.score for c in raised.candidates if c.source_id == "nixpkgs") > nix_score
    patched = await client.patch(f"{BASE}/sources/nixpkgs", json={"enabled": False})
    assert patched.status == 200
    _, disabled = await search(client)
    assert "nixpkgs" not in {c.source_id for c in disabled.candidates}
    assert disabled.candidates


def test_shared_json_knows_values_by_identity_within_its_bounds() -> None:
    """An equal but new list is encoded afresh (its own entry); the oldest entries go once
    the count or the bytes are over their bounds; an oversized value is never kept."""
    shared = SharedJson(max_entries=2, max_bytes=50, max_value_bytes=32)
    first = ["a"]
    assert bytes(shared.raw(first)) == b'["a"]'
    first.append("b")  # a kept value is answered as it was encoded: lists must not change
    assert bytes(shared.raw(first)) == b'["a"]'
    assert bytes(shared.raw(["a", "b"])) == b'["a","b"]'
    assert len(shared) == 2
    shared.raw(["c"])
    assert len(shared) == 2  # the oldest went
    assert bytes(shared.raw(first)) == b'["a","b"]'  # encoded again once it had gone
    assert bytes(shared.raw(["x" * 40])) == b'["' + b"x" * 40 + b'"]'
    assert len(shared) == 2
    shared.raw(["y" * 25])
    shared.raw(["z" * 25])
    assert len(shared) == 1  # two of 29 bytes are over 50
