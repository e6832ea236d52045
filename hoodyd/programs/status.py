"""Process facts: supervisord's process info as hoodyd instances, and psutil resource stats."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from typing import Any

import psutil

from hoodyd.schemas.daemon import Instance

RUNNING_STATES = frozenset({"STARTING", "RUNNING", "BACKOFF"})
FAILED_STATES = frozenset({"BACKOFF", "FATAL", "EXITED"})


def format_uptime(seconds: int) -> str:
    hours, rest = divmod(max(seconds, 0), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


_START_TIMES: dict[int, float] = {}


def process_start_time(pid: int) -> float | None:
    """When `pid` started, or None if it no longer exists (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        _START_TIMES.pop(pid, None)
        return None
    except PermissionError:
        pass  # exists, owned by another user
    started = _START_TIMES.get(pid)
    if started is None:
        try:
            process = psutil.Process(pid)
            if process.status() == psutil.STATUS_ZOMBIE:
                return None
            started = _START_TIMES[pid] = process.create_time()
        except psutil.Error:
            return None
        if len(_START_TIMES) > 4096:
            _START_TIMES.clear()
    return started


def instance_from_info(info: dict[str, Any] | None, name: str, port: int | None) -> Instance:
    """An Instance from `getProcessInfo`; None (not registered) reads as STOPPED."""
    if info is None:
        return Instance(port=port, instance_name=name, status="STOPPED")
    state = str(info["statename"])
    running = state in ("RUNNING", "STARTING", "STOPPING") and info.get("pid")
    uptime = format_uptime(int(info["now"]) - int(info["start"])) if state == "RUNNING" else None
    return Instance(
        port=port,
        instance_name=name,
        status=state,
        pid=int(info["pid"]) if running else None,
        uptime=uptime,
        exitstatus=int(info["exitstatus"]) if state in ("EXITED", "FATAL", "BACKOFF") else None,
        spawnerr=str(info["spawnerr"]) or None,
    )


class StatsCollector:
    """CPU and memory of a process tree. psutil's cpu_percent needs two samples, so Process
    objects are kept between calls; a first sample reports the lifetime average instead."""

    def __init__(self) -> None:
        self._processes: dict[tuple[int, float], psutil.Process] = {}

    def collect(self, pid: int) -> dict[str, Any] | None:
        try:
            root = psutil.Process(pid)
            tree = [root, *root.children(recursive=True)]
        except psutil.Error:
            return None
        if len(self._processes) > 4096:
            self.forget_dead()
        processes = [sample for proc in tree if (sample := self._sample(proc)) is not None]
        if not processes:
            return None
        return {
            "pid": pid,
            "started_at": datetime.fromtimestamp(root.create_time(), UTC).isoformat(),
            "cpu_percent": round(sum(p["cpu_percent"] for p in processes), 2),
            "memory_rss_bytes": sum(p["memory_rss_bytes"] for p in processes),
            "process_count": len(processes),
            "processes": processes,
        }

    def _sample(self, proc: psutil.Process) -> dict[str, Any] | None:
        try:
            with proc.oneshot():
                key = (proc.pid, proc.create_time())
                known = self._processes.get(key)
                if known is None:
                    self._processes[key] = proc
                    proc.cpu_percent(None)  # prime the next sample
                    times = proc.cpu_times()
                    elapsed = max(time.time() - key[1], 1e-6)
                    cpu = 100.0 * (times.user + times.system) / elapsed
                else:
                    cpu = known.cpu_percent(None)
                return {
                    "pid": proc.pid,
                    "name": proc.name(),
                    "cpu_percent": round(cpu, 2),
                    "memory_rss_bytes": proc.memory_info().rss,
                }
        except psutil.Error:
            return None

    def forget_dead(self) -> None:
        for key, proc in list(self._processes.items()):
            if not proc.is_running():
                del self._processes[key]
