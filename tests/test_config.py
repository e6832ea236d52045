"""Configuration: the documented example file, environment overrides, flags, bad files."""

from __future__ import annotations

import os
import re
import subprocess
import sys
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


def test_a_config_holding_the_token_must_be_private(tmp_path: Path) -> None:
    """A config file with server.token that group or others can read is refused, naming the
    file and its mode; the same file at 0600 is accepted."""
    path = tmp_path / "c.toml"
    path.write_text('[server]\ntoken = "s3cret-value"\n')
    for mode in (0o644, 0o640, 0o604):
        path.chmod(mode)
        with pytest.raises(InvalidRequest) as caught:
            config.load(str(path), environ={})
        assert caught.value.reason == "BAD_CONFIG"
        assert str(path) in caught.value.message and f"{mode:04o}" in caught.value.message
        assert "s3cret-value" not in caught.value.message
    path.chmod(0o600)
    assert config.load(str(path), environ={}).server.token == "s3cret-value"
    path.write_text("[server]\ntcp = \"127.0.0.1:1\"\n")
    path.chmod(0o644)
    assert config.load(str(path), environ={}).server.tcp == "127.0.0.1:1", "no token: any mode"


def test_serve_refuses_a_shared_config_with_one_line(tmp_path: Path) -> None:
    """`hoodyd serve` with a world-readable config holding a token exits 1 with one line on
    stderr and no traceback, before it creates anything."""
    path = tmp_path / "c.toml"
    path.write_text('[server]\ntoken = "s3cret-value"\n')
    path.chmod(0o644)
    state = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOODYD_")}
    done = subprocess.run(
        [sys.executable, "-m", "hoodyd", "serve", "--config", str(path), "--state-dir",
         str(state), "--socket", str(tmp_path / "s.sock")],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "readable by group or others" in lines[0], done.stderr
    assert "s3cret-value" not in done.stderr
    assert not state.exists()


def test_the_token_comes_from_a_private_token_file(tmp_path: Path) -> None:
    """server.token_file supplies the token (trailing newline dropped); a token file that
    group or others can read, a missing one and an empty one are refused."""
    token = tmp_path / "token"
    token.write_text("from-file\n")
    token.chmod(0o600)
    path = tmp_path / "c.toml"
    path.write_text(f'[server]\ntoken_file = "{token}"\n')
    path.chmod(0o644)  # holds no token itself
    assert config.load(str(path), environ={}).server.token == "from-file"
    token.chmod(0o640)
    with pytest.raises(InvalidRequest, match="readable by group or others"):
        config.load(str(path), environ={})
    token.chmod(0o600)
    token.write_text("\n")
    with pytest.raises(InvalidRequest, match="holds no token"):
        config.load(str(path), environ={})
    token.unlink()
    with pytest.raises(InvalidRequest, match="cannot read"):
        config.load(str(path), environ={})


def test_the_token_comes_from_a_systemd_credential(tmp_path: Path) -> None:
    """`$CREDENTIALS_DIRECTORY/token` supplies the token when neither server.token nor
    server.token_file is set; an explicit token wins over it."""
    credentials = tmp_path / "creds"
    credentials.mkdir()
    (credentials / "token").write_text("from-credential\n")
    environ = {"CREDENTIALS_DIRECTORY": str(credentials)}
    assert config.load(None, environ=environ).server.token == "from-credential"
    with_env = {**environ, "HOODYD_TOKEN": "from-env"}
    assert config.load(None, environ=with_env).server.token == "from-env"
    assert config.load(None, environ={"CREDENTIALS_DIRECTORY": str(tmp_path)}).server.token == ""


def test_the_token_leaves_the_process_environment_once_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Loading the config from the process environment takes HOODYD_TOKEN out of it."""
    monkeypatch.setenv("HOODYD_TOKEN", "popped")
    assert config.load(None).server.token == "popped"
    assert "HOODYD_TOKEN" not in os.environ
