"""The runtime configuration (sources, profiles, policy, recipes) persisted as
`STATE/run/config.json`.

Every edit builds a complete new config, validates it as a whole, writes it atomically
(tmp + fsync + rename) and only then replaces the one in memory: an invalid edit changes
nothing, and a crash leaves the old file or the new one.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping
from pathlib import Path

import msgspec
import structlog

from hoodyd.apps.sources import SOURCES
from hoodyd.errors import InvalidRequest
from hoodyd.schemas.run import (
    SELECTOR_FIELDS,
    PolicyConfig,
    RuntimeConfig,
    SourceConfig,
)

log = structlog.get_logger()

CONFIG_VERSION = 1
# provider each implemented source type reports as; other types are accepted (the
# contract lists them) but their syncs fail with "not supported" in diagnostics
# each source type's provider, as the source module declares it
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


def validate(config: RuntimeConfig) -> None:
    seen: set[str] = set()
    for source in config.sources:
        if source.source_id in seen:
            raise InvalidRequest(
                f"duplicate source_id: {source.source_id}", reason="DUPLICATE_SOURCE"
            )
        seen.add(source.source_id)
        expected = PROVIDERS.get(source.source_type)
        if expected is not None and source.provider != expected:
            raise InvalidRequest(
                f"source_type {source.source_type} needs provider {expected}, "
                f"got {source.provider}",
                reason="INVALID_SOURCE_PROVIDER",
            )
        if source.config is not None and source.source_type in PROVIDERS:
            _check_source_config(source)
    names: set[str] = set()
    for profile in config.profiles:
        if profile.name in names:
            raise InvalidRequest(f"duplicate profile: {profile.name}", reason="DUPLICATE_PROFILE")
        names.add(profile.name)
    if config.selected_profile is not None and config.selected_profile not in names:
        raise InvalidRequest(
            f"selected profile does not exist: {config.selected_profile}",
            reason="PROFILE_NOT_FOUND",
        )
    recipes: set[str] = set()
    for recipe in config.recipes or []:
        if recipe.name in recipes:
            raise InvalidRequest(f"duplicate recipe: {recipe.name}", reason="DUPLICATE_RECIPE")
        recipes.add(recipe.name)
        for name in recipe.allowed_overrides or []:
            if name not in SELECTOR_FIELDS:
                raise InvalidRequest(
                    f"allowed_overrides names an unknown selector field: {name}",
                    reason="INVALID_RECIPE",
                )


_STRING_KEYS = {"path", "url", "file", "command", "flake", "status_file", "info_dir"}
_LIST_KEYS = {"applications_dirs", "lists"}


def _check_source_config(source: SourceConfig) -> None:
    assert source.config is not None
    for key, value in source.config.items():
        if key in _STRING_KEYS and not isinstance(value, str):
            raise InvalidRequest(
                f"source {source.source_id}: config.{key} must be a string",
                reason="INVALID_SOURCE_CONFIG",
            )
        if key in _LIST_KEYS and not (
            isinstance(value, list) and all(isinstance(item, str) for item in value)
        ):
            raise InvalidRequest(
                f"source {source.source_id}: config.{key} must be a list of strings",
                reason="INVALID_SOURCE_CONFIG",
            )
        if key == "timeout_s" and not (isinstance(value, int | float) and value > 0):
            raise InvalidRequest(
                f"source {source.source_id}: config.timeout_s must be a positive number",
                reason="INVALID_SOURCE_CONFIG",
            )
    if source.source_type == "manifest-remote-index" and "url" not in source.config:
        raise InvalidRequest(
            f"source {source.source_id}: config.url is required", reason="INVALID_SOURCE_CONFIG"
        )


class RuntimeConfigStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._config: RuntimeConfig | None = None
        self._lock = asyncio.Lock()

    @property
    def current(self) -> RuntimeConfig:
        assert self._config is not None, "RuntimeConfigStore.load() first"
        return self._config

    def load(self, environ: Mapping[str, str]) -> RuntimeConfig:
        """Read the file, or write the first-start config (runs in a worker thread)."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            config = initial_config(environ)
            self._write(config)
            log.info("run_config_created", path=str(self.path))
        else:
            try:
                config = msgspec.json.decode(raw, type=RuntimeConfig)
                validate(config)
            except (msgspec.ValidationError, msgspec.DecodeError, InvalidRequest) as exc:
                # refuse to start rather than overwrite a hand-edited file with defaults
                raise InvalidRequest(f"{self.path}: {exc}", reason="BAD_CONFIG") from exc
        self._config = config
        return config

    async def update(self, change: Callable[[RuntimeConfig], RuntimeConfig]) -> RuntimeConfig:
        async with self._lock:
            # round-trip through JSON so the change works on a private copy
            draft = msgspec.json.decode(_encoder.encode(self.current), type=RuntimeConfig)
            new = change(draft)
            validate(new)
            await asyncio.to_thread(self._write, new)
            self._config = new
            return new

    def _write(self, config: RuntimeConfig) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with tmp.open("wb") as handle:
            handle.write(msgspec.json.format(_encoder.encode(config), indent=2))
            handle.write(b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)
