"""The runtime configuration (sources, profiles, policy, recipes) persisted as
`STATE/run/config.json`.

Every edit builds a complete new config, validates it as a whole, writes it atomically
(tmp + fsync + rename) and only then replaces the one in memory: an invalid edit changes
nothing, and a crash leaves the old file or the new one.

Validating decodes each source's `config` object into the settings Struct its source type
declares (`hoodyd.apps.catalog.sources`); the store keeps those settings next to the config, so a
sync reads typed settings and nothing decodes them again. An edit with a key the source
does not read, or a value of the wrong type, is refused (INVALID_SOURCE_CONFIG). A file
written by an earlier version may hold keys no source reads any more: loading drops them
with a `source_config_ignored_keys` warning rather than refusing to start; any other bad
value still refuses start-up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from pathlib import Path

import msgspec
import structlog

from hoodyd.apps.catalog.sources import SOURCES, InvalidSettings
from hoodyd.apps.catalog.sources.base import MissingSettings, setting_names
from hoodyd.errors import InvalidRequest, Reason, StateNotSaved
from hoodyd.programs.files import write_atomic
from hoodyd.schemas.run import (
    SELECTOR_FIELDS,
    PolicyConfig,
    RuntimeConfig,
    SourceConfig,
)

log = structlog.get_logger()

CONFIG_VERSION = 1
# each source type's provider, as the source module declares it; a type no module
# implements is accepted (the contract lists it) but its syncs fail with "not supported"
PROVIDERS = {source_type: source.provider for source_type, source in SOURCES.items()}
DEFAULT_SOURCES = (
    ("system-path", "system-path", 60),
    ("apt", "apt", 50),
    ("nixpkgs", "nix-pkgs", 40),
)

_encoder = msgspec.json.Encoder(order="deterministic")


def initial_config(environ: Mapping[str, str]) -> RuntimeConfig:
    """What a first start writes: every default source, enabled when this machine can serve
    it (PATH and desktop entries always), plus the policy hoodyd runs with by default."""
    sources = []
    for source_id, source_type, priority in DEFAULT_SOURCES:
        source = SOURCES[source_type]
        reason = source.detect(environ)
        sources.append(
            SourceConfig(
                source_id=source_id,
                enabled=reason is None,
                priority=priority,
                provider=source.provider,
                source_type=source_type,  # type: ignore[arg-type]
            )
        )
        log.info("run_source_detected", source_id=source_id, enabled=reason is None, reason=reason)
    return RuntimeConfig(
        version=CONFIG_VERSION,
        sources=sources,
        profiles=[],
        policy=PolicyConfig(
            require_verified=False,
            require_integrity=False,
            allow_delegated_execution=True,
            allow_redirect=True,
        ),
        recipes=[],
    )


def validate(config: RuntimeConfig) -> dict[str, msgspec.Struct]:
    """Check `config` as a whole; the settings of each source, by source id (a source of a
    type no module implements has none)."""
    seen: set[str] = set()
    settings: dict[str, msgspec.Struct] = {}
    for source in config.sources:
        if source.source_id in seen:
            raise InvalidRequest(
                f"duplicate source_id: {source.source_id}", reason=Reason.DUPLICATE_SOURCE
            )
        expected = PROVIDERS.get(source.source_type)
        if expected is not None and source.provider != expected:
            raise InvalidRequest(
                f"source_type {source.source_type} needs provider {expected}, "
                f"got {source.provider}",
                reason=Reason.INVALID_SOURCE_PROVIDER,
            )
        seen.add(source.source_id)
        decoded = source_settings(source)
        if decoded is not None:
            settings[source.source_id] = decoded
    names: set[str] = set()
    for profile in config.profiles:
        if profile.name in names:
            raise InvalidRequest(
                f"duplicate profile: {profile.name}", reason=Reason.DUPLICATE_PROFILE
            )
        names.add(profile.name)
    if config.selected_profile is not None and config.selected_profile not in names:
        raise InvalidRequest(
            f"selected profile does not exist: {config.selected_profile}",
            reason=Reason.PROFILE_NOT_FOUND,
        )
    recipes: set[str] = set()
    for recipe in config.recipes or []:
        if recipe.name in recipes:
            raise InvalidRequest(f"duplicate recipe: {recipe.name}", reason=Reason.DUPLICATE_RECIPE)
        recipes.add(recipe.name)
        for name in recipe.allowed_overrides or []:
            if name not in SELECTOR_FIELDS:
                raise InvalidRequest(
                    f"allowed_overrides names an unknown selector field: {name}",
                    reason=Reason.INVALID_RECIPE,
                )
    return settings


def source_settings(source: SourceConfig, *, syncing: bool = False) -> msgspec.Struct | None:
    """The source's `config` decoded into its type's settings (None for a type no module
    implements); a key the type does not read or a bad value is INVALID_SOURCE_CONFIG.
    A disabled source may lack the keys only a sync needs (None then: clients save sources
    disabled first); they are required once it is enabled or `syncing`."""
    implementation = SOURCES.get(source.source_type)
    if implementation is None:
        return None
    try:
        settings: msgspec.Struct = implementation.settings(source.config)
    except MissingSettings as exc:
        if source.enabled or syncing:
            raise InvalidRequest(
                f"source {source.source_id} ({source.source_type}): {exc}",
                reason=Reason.INVALID_SOURCE_CONFIG,
            ) from exc
        return None
    except InvalidSettings as exc:
        raise InvalidRequest(
            f"source {source.source_id} ({source.source_type}): {exc}",
            reason=Reason.INVALID_SOURCE_CONFIG,
        ) from exc
    return settings


def without_ignored_keys(config: RuntimeConfig) -> RuntimeConfig:
    """`config` without the keys of a source's `config` that its type does not read (left
    by an earlier version), each source's dropped keys logged once."""
    sources = []
    for source in config.sources:
        implementation = SOURCES.get(source.source_type)
        if implementation is not None and source.config:
            known = setting_names(implementation.settings_type)
            ignored = sorted(key for key in source.config if key not in known)
            if ignored:
                log.warning(
                    "source_config_ignored_keys",
                    source_id=source.source_id,
                    source_type=source.source_type,
                    keys=ignored,
                )
                kept = {key: value for key, value in source.config.items() if key in known}
                source = msgspec.structs.replace(source, config=kept)
        sources.append(source)
    return msgspec.structs.replace(config, sources=sources)


class RuntimeConfigStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._config: RuntimeConfig | None = None
        self._settings: dict[str, msgspec.Struct] = {}
        self._lock = asyncio.Lock()

    @property
    def current(self) -> RuntimeConfig:
        assert self._config is not None, "RuntimeConfigStore.load() first"
        return self._config

    def settings(self, source_id: str) -> msgspec.Struct | None:
        """The settings of the configured source `source_id`, decoded when the config was
        loaded or last edited (None for a source type no module implements)."""
        return self._settings.get(source_id)

    def load(self, environ: Mapping[str, str]) -> RuntimeConfig:
        """Read the file, or write the first-start config (runs in a worker thread)."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            config = initial_config(environ)
            settings = validate(config)
            self._write(config)
            log.info("run_config_created", path=str(self.path))
        else:
            try:
                config = without_ignored_keys(msgspec.json.decode(raw, type=RuntimeConfig))
                settings = validate(config)
            except (msgspec.ValidationError, msgspec.DecodeError, InvalidRequest) as exc:
                # refuse to start rather than overwrite a hand-edited file with defaults
                raise InvalidRequest(f"{self.path}: {exc}", reason=Reason.BAD_CONFIG) from exc
        self._config, self._settings = config, settings
        return config

    async def update(self, change: Callable[[RuntimeConfig], RuntimeConfig]) -> RuntimeConfig:
        async with self._lock:
            # round-trip through JSON so the change works on a private copy
            draft = msgspec.json.decode(_encoder.encode(self.current), type=RuntimeConfig)
            new = change(draft)
            settings = validate(new)
            await asyncio.to_thread(self._write, new)
            self._config, self._settings = new, settings
            return new

    def _write(self, config: RuntimeConfig) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = msgspec.json.format(_encoder.encode(config), indent=2).decode() + "\n"
        try:
            write_atomic(self.path, text)
        except OSError as exc:  # disk full or failing: the old file stays, no temp file
            raise StateNotSaved(
                f"hoodyd could not save the run config ({exc}); nothing was changed",
                extra={"changed": False},
            ) from exc
