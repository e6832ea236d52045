"""pkgx: programs from a real SQLite pantry.db with pkgx's own schema, installed state from
~/.pkgx, and `pkgx +project program` launches."""

from __future__ import annotations

import shlex
import sqlite3
from pathlib import Path

import pytest

from hoodyd.apps.catalog.records import SourceUnavailable, SyncContext
from hoodyd.apps.catalog.sources import SOURCES
from tests.data.apps.world import executable

# the schema pkgx writes (crates/lib/src/pantry_db.rs)
PANTRY_SCHEMA = """
CREATE TABLE provides (project TEXT, program TEXT);
CREATE TABLE dependencies (project TEXT, pkgspec TEXT);
CREATE TABLE companions (project TEXT, pkgspec TEXT);
CREATE TABLE runtime_env (project TEXT, envline TEXT);
CREATE INDEX idx_project ON provides(project);
CREATE INDEX idx_program ON provides(program);
CREATE INDEX idx_project_dependencies ON dependencies(project);
CREATE INDEX idx_project_companions ON companions(project);
"""
PROVIDES = [
    ("crates.io/ripgrep", "rg"),
    ("github.com/junegunn/fzf", "fzf"),
    ("nodejs.org", "node"),
    ("nodejs.org", "npm"),
    ("nodejs.org", "npx"),
    ("nodejs.org", "corepack"),
    ("python.org", "python"),
    ("python.org", "python3"),
    ("python.org", "pip3"),
    ("jqlang.github.io/jq", "jq"),
    ("gnu.org/coreutils", "ls"),
]


def make_pantry(root: Path) -> Path:
    db = root / "cache" / "pkgx" / "pantry.db"
    db.parent.mkdir(parents=True)
    with sqlite3.connect(db) as conn:
        conn.executescript(PANTRY_SCHEMA)
        conn.executemany("INSERT INTO provides (project, program) VALUES (?1, ?2)", PROVIDES)
        conn.execute("INSERT INTO dependencies VALUES ('crates.io/ripgrep', 'pcre.org/v2^10')")
    conn.close()
    return db


def test_pantry_programs_installed_state_and_launch(short_tmp: Path) -> None:
    """Each provides row is a record; programs under ~/.pkgx are installed; the plan is
    `pkgx +project program`, with pkgx missing as a requirement when it is not on PATH."""
    make_pantry(short_tmp)
    home = short_tmp / "home"
    executable(home / ".pkgx" / "crates.io" / "ripgrep" / "v14.1.1" / "bin" / "rg")
    (home / ".pkgx" / "crates.io" / "ripgrep" / ".tmp").mkdir()  # not a version: ignored
    bin_dir = short_tmp / "bin"
    environ = {
        "HOME": str(home),
        "XDG_CACHE_HOME": str(short_tmp / "cache"),
        "PATH": str(bin_dir),
    }
    source = SOURCES["pkgx"]
    assert source.detect(environ) is None
    result = source.sync(SyncContext(source.settings({}), environ=environ))
    records = {r.ident: r for r in result.records}
    assert len(records) == len(PROVIDES)
    rg = records["crates.io/ripgrep:rg"]
    assert (rg.name, rg.installed, rg.homepage) == ("rg", True, "https://crates.io/ripgrep")
    assert "ripgrep" in rg.keywords
    assert not records["nodejs.org:npx"].installed
    plan = source.plan(records["nodejs.org:npx"], {}, result.details)
    assert shlex.join(plan.argv) == "pkgx +nodejs.org npx"
    assert [r.name for r in plan.requirements] == ["pkgx"]
    executable(bin_dir / "pkgx")
    again = source.sync(SyncContext(source.settings({}), environ=environ))
    assert source.plan(rg, {}, again.details).requirements == []


def test_missing_or_foreign_database_is_a_sync_error(short_tmp: Path) -> None:
    """No pantry.db, or a SQLite file without the provides table, fails with the path."""
    source = SOURCES["pkgx"]
    missing = short_tmp / "none.db"
    with pytest.raises(SourceUnavailable, match="no such file"):
        source.sync(SyncContext(source.settings({"db": str(missing)}), environ={}))
    other = short_tmp / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE t (x)")
    conn.close()
    with pytest.raises(SourceUnavailable, match="not a pkgx pantry database"):
        source.sync(SyncContext(source.settings({"db": str(other)}), environ={}))
    assert source.detect({"HOME": str(short_tmp)}) is not None
