"""The README and the docs it links run as printed: their shell blocks marked `<!-- runnable -->`
are run, in order (the README, then each linked page in the order of its links) and verbatim,
against a live daemon from a directory whose `.venv` is this installation."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DaemonProcess

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
RUNNABLE = re.compile(r"^<!-- runnable -->\n```sh\n(.*?)^```$", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def linked_pages() -> list[Path]:
    """The docs pages the README links, in the order of their first link."""
    pages: list[Path] = []
    for target in LINK.findall(README.read_text()):
        page = (ROOT / target).resolve()
        if page.suffix == ".md" and page not in pages:
            pages.append(page)
    return pages


def runnable_blocks() -> list[str]:
    return [
        block for page in [README, *linked_pages()] for block in RUNNABLE.findall(page.read_text())
    ]


def test_every_link_of_the_readme_and_its_pages_leads_to_a_file() -> None:
    """Relative links of the README and of the docs pages name files that exist, and every
    page under docs/ is linked from the README."""
    pages = linked_pages()
    assert sorted(pages) == sorted(p.resolve() for p in (ROOT / "docs").glob("*.md"))
    for page in [README, *pages]:
        for target in LINK.findall(page.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            assert (page.parent / target).exists(), f"{page.name} links {target}"


def test_the_readme_keeps_the_quick_start_on_its_first_screen() -> None:
    """The two set-up commands and the quick start come before any reference section, and the
    reference lives in docs/."""
    text = README.read_text()
    assert text.index("## Quick start") < text.index("## Documentation")
    assert len(text.splitlines()) < 120, "the reference belongs in docs/"


def test_the_readme_opens_with_its_two_set_up_commands() -> None:
    """The first two blocks are the set-up commands: serve, and the test suite."""
    blocks = re.findall(r"^```sh\n(.*?)^```$", README.read_text(), re.MULTILINE | re.DOTALL)
    assert blocks[0].strip().endswith(".venv/bin/hoodyd serve")
    assert blocks[1].strip().endswith(".venv/bin/python -m pytest -n 4")
    assert blocks[1].startswith("{ command -v chromium"), "the suite's browser tests need it"
    ci = (ROOT / ".ci/run").read_text()
    assert blocks[1].strip() in ci, ".ci/run runs the README's test command"


@pytest.mark.skipif(shutil.which("curl") is None, reason="the README's blocks use curl")
def test_runnable_blocks_run_against_a_live_daemon(daemon: DaemonProcess, tmp_path: Path) -> None:
    """Each runnable block exits 0 under `bash -e`; the quick start's HTTP server answers and
    the program it added is gone after the last block."""
    blocks = runnable_blocks()
    assert len(blocks) >= 3, "the quick start's blocks are marked runnable"
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parent.parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOODYD_")}
    env["HOODYD_SOCKET"] = str(daemon.socket)  # where this test's daemon serves
    outputs = []
    for block in blocks:
        done = subprocess.run(
            ["bash", "-e", "-c", block], cwd=tmp_path, env=env, capture_output=True, text=True,
            timeout=120,
        )
        assert done.returncode == 0, f"{block}\n{done.stdout}\n{done.stderr}"
        outputs.append(done.stdout)
    quick_start, api, _cleanup = outputs[:3]
    assert "<!DOCTYPE HTML>" in quick_start, "the HTTP server answered"
    assert "web_8780: listening on port 8780" in quick_start
    assert '"success":true' in api.replace(" ", "")
    status = subprocess.run(
        [sys.executable, "-m", "hoodyd", "status"], env=env, capture_output=True, text=True
    )
    assert "web" not in status.stdout
