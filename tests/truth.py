"""Ground truth for program and terminal answers: what the API claims about pids, states,
instances and sessions, checked against /proc (the process lives, is no zombie, is a child of
supervisord; a session's shell lives, as its user, in its directory)."""

from __future__ import annotations

import pwd
from pathlib import Path
from typing import Any

LIVE_STATES = frozenset({"STARTING", "RUNNING", "STOPPING"})


def proc_state(pid: int) -> str | None:
    """The one-letter state of `pid` from /proc/PID/stat, None if there is no such process."""
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    return data[data.rindex(b")") + 2 :].split()[0].decode()


def parent_of(pid: int) -> int | None:
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    return int(data[data.rindex(b")") + 2 :].split()[1])


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def is_live(pid: int) -> bool:
    """The process exists and is neither a zombie nor dead."""
    return proc_state(pid) not in (None, "Z", "X")


def is_supervised(pid: int) -> bool:
    """The process is alive and supervisord is its parent."""
    parent = parent_of(pid)
    return (
        is_live(pid)
        and parent is not None
        and any("supervisord" in part for part in cmdline(parent)[:3])
    )


def check_process(claim: dict[str, Any], where: str = "") -> None:
    """One process as an answer shows it (`status`, `pid`, `uptime`): a pid only for a state
    with a process, and then a live child of supervisord; RUNNING always has one."""
    state, pid = claim["status"], claim.get("pid")
    label = f"{where}{claim.get('instance_name') or claim.get('id') or ''}"
    if pid is not None:
        assert state in LIVE_STATES, f"{label}: {state} with pid {pid}"
        assert is_supervised(pid), (
            f"{label}: claims {state} pid {pid}, but /proc says state={proc_state(pid)} "
            f"parent={parent_of(pid)}"
        )
    if state == "RUNNING":
        assert pid is not None, f"{label}: RUNNING without a pid"
        assert claim.get("uptime") is not None, f"{label}: RUNNING without an uptime"
    else:
        assert claim.get("uptime") is None, f"{label}: {state} with an uptime"


def check_status(status: dict[str, Any], where: str = "") -> None:
    """A program's status (a process's, or a port range's): every claim holds in /proc."""
    if status.get("type") == "port-range":
        instances = status["instances"]
        for instance in instances:
            check_process(instance, where)
        running = sum(1 for i in instances if i["status"] == "RUNNING")
        assert status["running_instances"] == running, f"{where}: running_instances"
        return
    check_process(status, where)


def check_statuses(body: dict[str, Any]) -> None:
    """Every status in a `GET /status` answer (`{"statuses": [...]}` or a single answer)."""
    if "statuses" in body:
        for item in body["statuses"]:
            check_status(item["status"], f"program {item['id']}: ")
    elif "status" in body:
        check_status(body["status"])


def check_session(claim: dict[str, Any]) -> None:
    """One terminal session as `GET /sessions` shows it: a running session's shell is a live
    process of the session's user, in the directory the session names; an exited one has
    an exit code, no live shell, and is not busy."""
    label = f"terminal {claim['id']}"
    pid = claim["pid"]
    if claim["state"] == "running":
        assert is_live(pid), f"{label}: running, but /proc says pid {pid} is {proc_state(pid)}"
        cwd = Path(f"/proc/{pid}/cwd").resolve()
        assert Path(claim["cwd"]).resolve() == cwd, f"{label}: cwd {claim['cwd']}, /proc {cwd}"
        if claim.get("user"):
            owner = Path(f"/proc/{pid}").stat().st_uid
            assert pwd.getpwuid(owner).pw_name == claim["user"], f"{label}: runs as {owner}"
    else:
        assert claim["exit_code"] is not None, f"{label}: {claim['state']} with no exit code"
        assert not claim["busy"], f"{label}: {claim['state']} and busy"
        assert not is_live(pid), f"{label}: {claim['state']}, but its shell {pid} lives"


def check_sessions(body: dict[str, Any]) -> None:
    """Every session of a `GET /sessions` answer holds in /proc."""
    assert body["total"] == len(body["data"])
    for claim in body["data"]:
        check_session(claim)
