"""RunService and the planner without a socket: set expiry, the planned command's quoting and
environment, go-path parsing, and printed curl lines."""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hoodyd.api.links import API_LINKS
from hoodyd.api.selectors import GO_QUERY, go_path_params
from hoodyd.apps.run import curl, planner
from hoodyd.apps.run.curl import CurlTarget
from hoodyd.apps.run.runner import RunService
from hoodyd.apps.service import AppService
from hoodyd.config import RunConfig
from hoodyd.errors import Conflict, InvalidRequest
from hoodyd.polling import poll_until
from hoodyd.schemas.run import Selector
from tests.run_world import TRICKY, write_run_config


async def sync(apps: AppService) -> None:
    job = apps.sync_source("team")
    assert (await apps.job(job.job_id, wait=True, timeout_ms=30000)).status == "done"


@pytest.fixture
async def runner(short_tmp: Path, request: pytest.FixtureRequest) -> AsyncIterator[RunService]:
    write_run_config(short_tmp, short_tmp / "world")
    ttl = getattr(request, "param", 0.2)
    apps = AppService(short_tmp, RunConfig(candidate_set_ttl=ttl, auto_sync=False))
    await apps.start()
    await sync(apps)
    try:
        yield RunService(apps, None, links=API_LINKS)
    finally:
        await apps.close()


@pytest.mark.parametrize("runner", [300.0], indirect=True)
async def test_a_pick_by_set_and_index_ignores_later_index_changes(
    runner: RunService, short_tmp: Path
) -> None:
    """After a re-sync puts another app first, index 0 of the earlier set is still its app."""
    before = runner.choose(Selector(app="hello", pick="first"))
    assert before.selected is not None
    manifest_path = short_tmp / "world" / "apps.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["apps"].insert(0, {"id": "hello", "title": "Hello", "argv": ["true"]})
    manifest_path.write_text(json.dumps(manifest))
    await sync(runner.apps)
    now_first = runner.choose(Selector(app="hello", pick="first")).selected
    assert now_first is not None and now_first.candidate_id == "team:hello"
    assert before.selected.candidate_id != "team:hello"
    bound = runner.choose(
        Selector(app="hello", set_id=before.set_id, pick="index", pick_index=0)
    ).selected
    assert bound is not None and bound.candidate_id == before.selected.candidate_id


async def test_an_expired_set_is_the_contract_409(runner: RunService) -> None:
    """A pick bound to a set older than its TTL is refused with 409 CURSOR_SET_EXPIRED."""
    made = time.monotonic()  # no later than the set was made
    set_id = runner.choose(Selector(app="hello-run")).set_id
    bound = Selector(app="hello-run", set_id=set_id, pick="index", pick_index=0)
    assert runner.choose(bound).selected is not None

    async def refused() -> Conflict | None:
        try:
            runner.choose(bound)
        except Conflict as conflict:
            return conflict
        return None  # the set still lives: a pick does not extend it

    # a hang guard many times the TTL (0.2 s); the TTL itself is what the clock check holds to
    conflict = await poll_until(refused, timeout=30, interval=0.02)
    assert conflict is not None, "the set never expired"
    assert time.monotonic() - made >= 0.2, "the set expired before its TTL"
    assert conflict.status == 409 and conflict.reason == "CURSOR_SET_EXPIRED"
    assert conflict.message.startswith("cursor set expired")


async def test_without_terminals_a_pick_is_a_dry_run(runner: RunService) -> None:
    """With no terminal service the command is returned with a TERMINALS_UNAVAILABLE warning."""
    outcome = await runner.run(Selector(app="hello-run", pick="first"), CurlTarget(socket="/s"))
    response = outcome.response
    assert response.status == "dry-run" and response.warnings is not None
    assert [w.code for w in response.warnings] == ["TERMINALS_UNAVAILABLE"]
    assert response.selected is not None and response.selected.execution_plan is not None
    assert shlex.split(response.shell_command or "") == response.selected.execution_plan.argv
    assert response.selected.execution_plan.argv[-1] == TRICKY


def test_shell_command_quotes_values_and_checks_names() -> None:
    """Environment values are shell-quoted assignments; a bad variable name is refused."""
    line = planner.shell_command(["prog", "a b", "$x"], {"DISPLAY": ":1", "NOTE": "it's"})
    assert line == "DISPLAY=:1 NOTE='it'\"'\"'s' prog 'a b' '$x'"
    with pytest.raises(InvalidRequest):
        planner.shell_command(["prog"], {"BAD NAME": "x"})
    assert planner.display_for(None, 3) == ":3" and planner.display_for("7", 3) == ":7"


def test_go_path_forms_are_told_apart_by_the_first_segment() -> None:
    """A field name first means key-value; anything else is positional (os first)."""
    assert go_path_params("firefox", GO_QUERY) == {"app": ["firefox"]}
    assert go_path_params("app", GO_QUERY) == {"app": ["app"]}
    assert go_path_params("linux/os", GO_QUERY) == {"os": ["linux"], "app": ["os"]}
    assert go_path_params("app/os", GO_QUERY) == {"app": ["os"]}
    assert go_path_params("linux/nix/gui/firefox/", GO_QUERY) == {
        "os": ["linux"], "source": ["nix"], "kind": ["gui"], "app": ["firefox"],
    }  # fmt: skip
    # `%2F` separates segments, as public clients encode them; each is decoded once
    assert go_path_params("app/a%2520b/source/nix/source/apt", GO_QUERY) == {
        "app": ["a%20b"], "source": ["nix", "apt"],
    }  # fmt: skip
    assert go_path_params("linux%2Fnix%2Ffirefox", GO_QUERY) == {
        "os": ["linux"], "source": ["nix"], "app": ["firefox"],
    }  # fmt: skip
    assert go_path_params("app%2fhtop%2Fpick%2Ffirst", GO_QUERY) == {
        "app": ["htop"], "pick": ["first"],
    }  # fmt: skip
    for bad in ("", "a//b", "app/x/os", "mac/firefox", "os/linux", "a/b/c/d/e"):
        with pytest.raises(InvalidRequest):
            go_path_params(bad, GO_QUERY)


def test_curl_lines_quote_every_value() -> None:
    """Printed lines survive hostile text: the shell sees each value as one word."""
    selector = Selector(app="x'; rm -rf ~ #", origin="$(id)", terminal_id=2, tags=["a b"])
    line = curl.hoody_run(CurlTarget(socket="/tmp/my sock"), selector, "team:x")
    words = shlex.split(line)
    assert words[:4] == ["curl", "-sS", "--unix-socket", "/tmp/my sock"]
    assert words[4].startswith("http://localhost/api/v1/run/run?app=x%27%3B+rm+-rf")
    assert "pick=id&candidate_id=team%3Ax" in words[4] and len(words) == 5
    line = curl.hoody_terminal(CurlTarget(base_url="http://127.0.0.1:9"), selector, 2, "echo 'a'")
    words = shlex.split(line)
    assert words[3] == "Authorization: Bearer $HOODYD_TOKEN"  # expanded by the shell at run time
    assert words[-1] == '{"command":"echo \'a\'","wait":false}'
