"""The package's import layers (pyproject.toml, [tool.importlinter]): the HTTP area over the
services, the services over the wire types, the wire types over the one error hierarchy; an
import that runs back up fails the suite."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(
    not LINT_IMPORTS.exists(), reason="import-linter is not installed (the test extra has it)"
)


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_package_keeps_its_layers() -> None:
    """No module imports a layer above its own: errors and schemas import nothing above them."""
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line"),
    [
        ("errors.py", "from hoodyd.schemas.run_exec import RunResponse"),
        ("schemas/automation.py", "from hoodyd.terminals.mouse import encode_mouse"),
        ("terminals/holder/ring.py", "from hoodyd.api import routes"),
        ("apps/catalog/records.py", "from hoodyd.apps.search import ranking"),
        ("apps/search/ranking.py", "from hoodyd.apps.run import planner"),
    ],
)
def test_an_upward_import_breaks_the_contract(tmp_path: Path, module: str, line: str) -> None:
    """A copy of the package with one import that runs back up is refused by the contract."""
    shutil.copytree(
        ROOT / "hoodyd", tmp_path / "hoodyd", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "hoodyd" / module
    target.write_text(target.read_text() + f"\n{line}  # noqa\n")
    result = _lint(tmp_path)
    assert result.returncode != 0, result.stdout
    assert "BROKEN" in result.stdout
