"""Configuration: the documented example file, environment overrides, flags, bad files."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import msgspec
import pytest

from hoodyd import config
from hoodyd.errors import InvalidRequest

EXAMPLE = Path(__file__).resolve().parent.parent / "etc" / "hoodyd.toml"


def test_the_example_file_states_the_defaults() -> None:
    """Every uncommented key of etc/hoodyd.toml parses and equals the built-in default."""
    loaded = config.load(str(EXAMPLE), environ={})
    defaults = config.load(None, environ={})
    assert msgspec.to_builtins(loaded) == msgspec.to_builtins(defaults)


def test_every_config_key_is_documented_in_the_example() -> None:
    """Each key of every config section appears (set or commented) in etc/hoodyd.toml."""
    text = EXAMPLE.read_text()
    documented = set(re.findall(r"^#?\s*([a-z_]+)\s*=", text, flags=re.MULTILINE))
    root = config.Config()
    kinds: list[type[msgspec.Struct]] = [config.Config]
    for field in msgspec.structs.fields(root):
        value = getattr(root, field.name)
        if isinstance(value, msgspec.Struct):
            assert f"[{field.name}]" in text, field.name
            kinds.append(type(value))
    for kind in kinds:
        for field in msgspec.structs.fields(kind):
            if not isinstance(getattr(root, field.name, None), msgspec.Struct):
                assert field.name in documented, f"{kind.__name__}.{field.name}"
    assert tomllib.loads(text)


def test_environment_overrides_the_file_and_flags_override_both(tmp_path: Path) -> None:
    """HOODYD_* variables beat the file; explicit overrides (flags) beat both."""
    path = tmp_path / "c.toml"
    path.write_text('[server]\nsocket = "/tmp/from-file.sock"\ntcp = "127.0.0.1:1"\n')
    cfg = config.load(str(path), environ={"HOODYD_SOCKET": "/tmp/from-env.sock"})
    assert cfg.server.socket == "/tmp/from-env.sock"
    assert cfg.server.tcp == "127.0.0.1:1"
    cfg = config.load(
        str(path),
        environ={"HOODYD_SOCKET": "/tmp/from-env.sock"},
        overrides={("server", "socket"): "/tmp/from-flag.sock"},
    )
    assert cfg.server.socket == "/tmp/from-flag.sock"


@pytest.mark.parametrize(
    "text",
    [
        "[server\n",  # not TOML
        "[server]\nunknown_key = 1\n",
        "[supervisor]\nmode = \"sideways\"\n",
        "[supervisor]\nmode = \"external\"\n",  # external needs socket and include_dir
    ],
)
def test_bad_config_files_are_refused_with_a_clear_error(tmp_path: Path, text: str) -> None:
    """A config file that does not parse or validate stops with an error naming the problem."""
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(InvalidRequest) as caught:
        config.load(str(path), environ={})
    assert caught.value.reason == "BAD_CONFIG"
