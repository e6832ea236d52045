"""Liveness of the pids supervisord reports, kept through pidfds instead of a /proc read per
answer: a process that exits reads as gone at the very next question."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from hoodyd.programs.status import Liveness, process_start_time
from tests.conftest import wait_until

GONE_WITHIN_S = 10


@pytest.fixture
def sleepers() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for child in started:
        child.kill()
        child.wait()


def sleeper(started: list[subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    child = subprocess.Popen(["sleep", "300"])
    started.append(child)
    return child


def test_a_watched_process_reads_gone_at_the_next_question_once_it_exits(
    sleepers: list[subprocess.Popen[bytes]],
) -> None:
    """A live pid answers its start time and is watched; once it exits (a zombie not yet
    reaped, then reaped) the next question answers None, with no wait in between, and the
    pid is no longer watched."""
    liveness = Liveness(limit=16)
    child, other = sleeper(sleepers), sleeper(sleepers)
    started = process_start_time(child.pid)
    assert started is not None
    assert liveness.start_time(child.pid) == started
    assert liveness.start_time(other.pid) == process_start_time(other.pid)
    assert liveness.watched == 2
    assert liveness.start_time(child.pid) == started  # answered from the watch

    child.send_signal(signal.SIGKILL)
    # /proc says gone (a zombie: this test has not reaped it): so must the next answer
    assert wait_until(lambda: process_start_time(child.pid) is None, timeout=GONE_WITHIN_S)
    assert liveness.start_time(child.pid) is None
    assert liveness.watched == 1
    child.wait()
    assert liveness.start_time(child.pid) is None
    assert liveness.start_time(other.pid) == process_start_time(other.pid)


def test_beyond_its_limit_liveness_reads_proc_and_stays_exact(
    sleepers: list[subprocess.Popen[bytes]],
) -> None:
    """With room for one watch, a second live pid is read from /proc on each question: both
    answer their start time, and the unwatched one reads gone as soon as it exits."""
    liveness = Liveness(limit=1)
    watched, unwatched = sleeper(sleepers), sleeper(sleepers)
    assert liveness.start_time(watched.pid) == process_start_time(watched.pid)
    assert liveness.start_time(unwatched.pid) == process_start_time(unwatched.pid)
    assert liveness.watched == 1
    unwatched.kill()
    unwatched.wait()
    assert liveness.start_time(unwatched.pid) is None
    assert liveness.start_time(watched.pid) is not None


def test_a_pid_that_never_existed_or_is_a_zombie_is_not_watched(
    sleepers: list[subprocess.Popen[bytes]],
) -> None:
    """A pid nobody has and a zombie both answer None and take no watch."""
    liveness = Liveness(limit=16)
    child = sleeper(sleepers)
    child.kill()
    assert wait_until(lambda: process_start_time(child.pid) is None, timeout=GONE_WITHIN_S)
    assert liveness.start_time(child.pid) is None
    child.wait()
    unused = max(int(Path("/proc/sys/kernel/pid_max").read_text()) - 1, 2)
    while process_start_time(unused) is not None:
        unused -= 1
    assert liveness.start_time(unused) is None
    assert liveness.watched == 0
