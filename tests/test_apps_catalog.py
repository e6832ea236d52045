"""The run area's named configuration through AppService, without a socket: sources, profiles
and recipes are added, patched, listed and deleted by one generic CRUD; every edit is
persisted, and a refused edit raises the area's error and changes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from hoodyd.apps.catalog.index import index_path
from hoodyd.apps.catalog.runtime_config import RuntimeConfigStore
from hoodyd.apps.service import AppService
from hoodyd.config import RunConfig
from hoodyd.errors import InvalidRequest, NotFound
from hoodyd.schemas.run import (
    ProfileConfig,
    ProfileDefaults,
    ProfilePatch,
    RecipeConfig,
    RecipeExecutionRequest,
    RecipePatch,
    RuntimeConfig,
    SelectorTemplate,
    SourceConfig,
    SourcePatch,
)
from tests.run_world import write_run_config

ENVIRON = {"PATH": "/usr/bin:/bin"}


@pytest.fixture
async def service(short_tmp: Path) -> AsyncIterator[AppService]:
    write_run_config(short_tmp, short_tmp / "world")
    service = AppService(short_tmp, RunConfig(auto_sync=False), environ=ENVIRON)
    await service.start()
    try:
        yield service
    finally:
        await service.close()


def persisted(state_dir: Path) -> RuntimeConfig:
    """The runtime config as a restarted daemon reads it from STATE/run/config.json."""
    return RuntimeConfigStore(state_dir / "run" / "config.json").load(ENVIRON)


def extra_source(source_id: str = "extra", **fields: object) -> SourceConfig:
    values: dict[str, object] = {
        "source_id": source_id,
        "enabled": True,
        "priority": 10,
        "provider": "registry",
        "source_type": "trusted-list-file",
        "config": {"path": "/nonexistent/apps.json"},
        **fields,
    }
    return msgspec.convert(values, SourceConfig)


async def test_sources_are_added_patched_listed_and_deleted(
    service: AppService, short_tmp: Path
) -> None:
    """A new source is listed and persisted; a patch sets only the fields it gives; a
    deleted source is gone from the list and the file."""
    added = await service.add_source(extra_source())
    assert [s.source_id for s in added] == ["team", "extra"]
    assert [s.source_id for s in service.list_sources()] == ["team", "extra"]
    patched = await service.patch_source("extra", SourcePatch(priority=5))
    assert patched.priority == 5 and patched.enabled and patched.config == extra_source().config
    assert persisted(short_tmp).sources[1] == patched
    await service.delete_source("extra")
    assert [s.source_id for s in service.list_sources()] == ["team"]
    assert [s.source_id for s in persisted(short_tmp).sources] == ["team"]


async def test_refused_source_edits_change_nothing(service: AppService, short_tmp: Path) -> None:
    """A taken id, a provider its type does not have, a bad config value and an unknown id
    raise the errors they always raised, and leave the config and its file as they were."""
    before = persisted(short_tmp)
    with pytest.raises(InvalidRequest) as raised:
        await service.add_source(extra_source("team"))
    assert raised.value.reason == "DUPLICATE_SOURCE"
    assert raised.value.message == "source already exists: team"
    with pytest.raises(InvalidRequest) as raised:
        await service.add_source(extra_source(provider="nix"))
    assert raised.value.reason == "INVALID_SOURCE_PROVIDER"
    with pytest.raises(InvalidRequest) as raised:
        await service.patch_source("team", SourcePatch(config={"path": 7}))
    assert raised.value.reason == "INVALID_SOURCE_CONFIG"
    for edit in (
        lambda: service.patch_source("nope", SourcePatch(enabled=False)),
        lambda: service.delete_source("nope"),
    ):
        with pytest.raises(NotFound) as missing:
            await edit()
        assert missing.value.reason == "SOURCE_NOT_FOUND"
        assert missing.value.message == "source not found: nope"
    assert service.runtime_config() == before == persisted(short_tmp)


async def test_deleting_a_synced_source_removes_its_index(
    service: AppService, short_tmp: Path
) -> None:
    """The index a sync wrote goes with its source, and so do its diagnostics."""
    job = service.sync_source("team")
    assert (await service.job(job.job_id, wait=True, timeout_ms=30_000)).status == "done"
    assert index_path(short_tmp / "index", "team").exists()
    await service.delete_source("team")
    assert not index_path(short_tmp / "index", "team").exists()
    with pytest.raises(NotFound):
        service.diagnostics("team")


async def test_profiles_are_added_patched_selected_and_deleted(
    service: AppService, short_tmp: Path
) -> None:
    """A patch keeps the fields it does not give; deleting the selected profile unselects it;
    a taken name or an unknown one is refused with the profile reasons."""
    defaults = ProfileDefaults(kind="cli")
    added = await service.add_profile(ProfileConfig(name="cli", defaults=defaults))
    assert [p.name for p in added] == ["cli"]
    patched = await service.patch_profile("cli", ProfilePatch(description="command line"))
    assert patched == ProfileConfig(name="cli", description="command line", defaults=defaults)
    assert service.list_profiles() == [patched]
    selected = await service.select_profile("cli")
    assert selected.selected_profile == "cli" == persisted(short_tmp).selected_profile
    with pytest.raises(InvalidRequest) as raised:
        await service.add_profile(ProfileConfig(name="cli"))
    assert raised.value.reason == "DUPLICATE_PROFILE"
    assert raised.value.message == "profile already exists: cli"
    for edit in (
        lambda: service.patch_profile("gone", ProfilePatch(description="x")),
        lambda: service.delete_profile("gone"),
        lambda: service.select_profile("gone"),
    ):
        with pytest.raises(NotFound) as missing:
            await edit()
        assert missing.value.reason == "PROFILE_NOT_FOUND"
        assert missing.value.message == "profile not found: gone"
    await service.delete_profile("cli")
    assert service.list_profiles() == []
    config = persisted(short_tmp)
    assert config.profiles == [] and config.selected_profile is None


async def test_recipes_are_added_patched_used_and_deleted(
    service: AppService, short_tmp: Path
) -> None:
    """A recipe's allowed overrides reach its selector and others are refused; an override
    list naming no selector field and a taken name are refused and change nothing."""
    template = SelectorTemplate(app="hello-run", kind="cli")
    recipe = RecipeConfig(name="hello", selector_template=template)
    assert await service.add_recipe(recipe) == [recipe]
    assert service.get_recipe("hello") == recipe
    patched = await service.patch_recipe("hello", RecipePatch(allowed_overrides=["terminal_id"]))
    assert patched == RecipeConfig(
        name="hello", selector_template=template, allowed_overrides=["terminal_id"]
    )
    selector = service.recipe_selector(
        "hello", RecipeExecutionRequest(overrides=SelectorTemplate(terminal_id=3))
    )
    assert (selector.app, selector.kind, selector.terminal_id) == ("hello-run", "cli", 3)
    with pytest.raises(InvalidRequest) as raised:
        service.recipe_selector("hello", RecipeExecutionRequest(SelectorTemplate(os="linux")))
    assert raised.value.reason == "RECIPE_OVERRIDE_NOT_ALLOWED"
    with pytest.raises(InvalidRequest) as raised:
        await service.patch_recipe("hello", RecipePatch(allowed_overrides=["colour"]))
    assert raised.value.reason == "INVALID_RECIPE"
    with pytest.raises(InvalidRequest) as raised:
        await service.add_recipe(RecipeConfig(name="hello"))
    assert raised.value.reason == "DUPLICATE_RECIPE"
    assert raised.value.message == "recipe already exists: hello"
    assert service.list_recipes() == [patched] == persisted(short_tmp).recipes
    await service.delete_recipe("hello")
    assert service.list_recipes() == [] and persisted(short_tmp).recipes == []
    with pytest.raises(NotFound) as missing:
        service.get_recipe("hello")
    assert missing.value.reason == "RECIPE_NOT_FOUND"
    assert missing.value.message == "recipe not found: hello"
