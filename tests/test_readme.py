"""The README runs as printed: its shell blocks marked `<!-- runnable -->` are run, in order
and verbatim, against a live daemon from a directory whose `.venv` is this installation."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DaemonProcess

README = Path(__file__).resolve().parent.parent / "README.md"
RUNNABLE = re.compile(r"^<!-- runnable -->\n```sh\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def runnable_blocks() -> list[str]:
    return RUNNABLE.findall(README.read_text())


def test_the_readme_opens_with_its_two_set_up_commands() -> None:
    """The first two blocks are the set-up commands: serve, and the test suite."""
    blocks = re.findall(r"^```sh\n(.*?)^```$", README.read_text(), re.MULTILINE | re.DOTALL)
    assert blocks[0].strip().endswith(".venv/bin/hoodyd serve")
    assert blocks[1].strip().endswith(".venv/bin/python -m pytest")


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
