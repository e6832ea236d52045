"""The run area's named configuration — sources, profiles and recipes — edited through one
generic named-item CRUD over the runtime config store.

Each list is a `NamedItems`: items named by one key field, added only under a new name,
patched field by field (a patch sets the fields it gives), deleted by name. Every edit goes
through `RuntimeConfigStore.update`, so a refused edit changes nothing. What an edit means
beyond the config (a source's sync or index) is the service's business, not this module's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

import msgspec

from hoodyd.apps.catalog.runtime_config import RuntimeConfigStore
from hoodyd.errors import InvalidRequest, NotFound, Reason
from hoodyd.schemas.run import (
    ProfileConfig,
    ProfilePatch,
    RecipeConfig,
    RecipePatch,
    RuntimeConfig,
    SelectedProfile,
    SourceConfig,
    SourcePatch,
)

Item = TypeVar("Item", bound=msgspec.Struct)
Patch = TypeVar("Patch", bound=msgspec.Struct)


class NamedItems(Generic[Item, Patch]):
    """One list of the runtime config (`attribute`), its items named by their `key` field."""

    def __init__(
        self,
        store: RuntimeConfigStore,
        *,
        noun: str,
        attribute: str,
        key: str,
        not_found: Reason,
        duplicate: Reason,
        on_delete: Callable[[RuntimeConfig, str], None] | None = None,
    ) -> None:
        self.store = store
        self.noun = noun  # "source": names the item in messages
        self.not_found = not_found
        self.duplicate = duplicate
        self.attribute = attribute
        self.key = key
        # what else a deletion changes in the same edit
        self.on_delete = on_delete

    def _items(self, config: RuntimeConfig) -> list[Item]:
        items: list[Item] | None = getattr(config, self.attribute)
        return items or []

    def _name(self, item: Item) -> str:
        name: str = getattr(item, self.key)
        return name

    def all(self) -> list[Item]:
        return self._items(self.store.current)

    def find(self, name: str) -> Item | None:
        return next((item for item in self.all() if self._name(item) == name), None)

    def get(self, name: str) -> Item:
        item = self.find(name)
        if item is None:
            raise NotFound(
                f"{self.noun} not found: {name}", reason=self.not_found
            )
        return item

    async def add(self, item: Item) -> list[Item]:
        """Append `item`; a name already taken is a 400 and changes nothing."""
        name = self._name(item)

        def change(config: RuntimeConfig) -> RuntimeConfig:
            items = self._items(config)
            if any(self._name(existing) == name for existing in items):
                raise InvalidRequest(
                    f"{self.noun} already exists: {name}", reason=self.duplicate
                )
            setattr(config, self.attribute, [*items, item])
            return config

        return self._items(await self.store.update(change))

    async def patch(self, name: str, patch: Patch) -> Item:
        """Set the fields `patch` gives (those not None) on the item named `name`."""
        self.get(name)
        updates: dict[str, Any] = {
            field: getattr(patch, field)
            for field in patch.__struct_fields__
            if getattr(patch, field) is not None
        }

        def change(config: RuntimeConfig) -> RuntimeConfig:
            setattr(
                config,
                self.attribute,
                [
                    msgspec.structs.replace(item, **updates) if self._name(item) == name else item
                    for item in self._items(config)
                ],
            )
            return config

        config = await self.store.update(change)
        return next(item for item in self._items(config) if self._name(item) == name)

    async def delete(self, name: str) -> None:
        self.get(name)

        def change(config: RuntimeConfig) -> RuntimeConfig:
            kept = [item for item in self._items(config) if self._name(item) != name]
            setattr(config, self.attribute, kept)
            if self.on_delete is not None:
                self.on_delete(config, name)
            return config

        await self.store.update(change)


def _unselect(config: RuntimeConfig, name: str) -> None:
    if config.selected_profile == name:
        config.selected_profile = None


class Catalog:
    """The sources, profiles and recipes of the runtime config, and the selected profile."""

    def __init__(self, store: RuntimeConfigStore) -> None:
        self.store = store
        self.sources: NamedItems[SourceConfig, SourcePatch] = NamedItems(
            store,
            noun="source",
            attribute="sources",
            key="source_id",
            not_found=Reason.SOURCE_NOT_FOUND,
            duplicate=Reason.DUPLICATE_SOURCE,
        )
        self.profiles: NamedItems[ProfileConfig, ProfilePatch] = NamedItems(
            store,
            noun="profile",
            attribute="profiles",
            key="name",
            not_found=Reason.PROFILE_NOT_FOUND,
            duplicate=Reason.DUPLICATE_PROFILE,
            on_delete=_unselect,
        )
        self.recipes: NamedItems[RecipeConfig, RecipePatch] = NamedItems(
            store,
            noun="recipe",
            attribute="recipes",
            key="name",
            not_found=Reason.RECIPE_NOT_FOUND,
            duplicate=Reason.DUPLICATE_RECIPE,
        )

    @property
    def current(self) -> RuntimeConfig:
        return self.store.current

    def settings(self, source_id: str) -> msgspec.Struct | None:
        """The typed settings of a configured source (its `config`, decoded when stored)."""
        return self.store.settings(source_id)

    async def select_profile(self, name: str) -> SelectedProfile:
        self.profiles.get(name)

        def change(config: RuntimeConfig) -> RuntimeConfig:
            config.selected_profile = name
            return config

        await self.store.update(change)
        return SelectedProfile(selected_profile=name)
