"""Typed application state keys shared by the app factory, the daemon runner and handlers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from aiohttp import web

from hoodyd.config import Config

if TYPE_CHECKING:
    from hoodyd.apps.run.runner import RunService
    from hoodyd.apps.service import AppService
    from hoodyd.metrics import Metrics
    from hoodyd.programs.quickstart import QuickStartService
    from hoodyd.programs.service import ProgramService
    from hoodyd.terminals.automation import ScreenAutomation
    from hoodyd.terminals.service import TerminalService


@dataclass(frozen=True)
class Area:
    """An API area: its name, the base path its sub-application is mounted at, and the shape
    of its error bodies (`kit`: `{success: false, error}`; `run`: `{error, code}`)."""

    name: str
    base: str
    error_shape: Literal["kit", "run"]


CONFIG = web.AppKey("config", Config)
# on each area's sub-application: which area it is
AREA = web.AppKey("area", Area)
# bearer token required on TCP; absent when the app serves only the Unix socket
TOKEN = web.AppKey("token", str)
PROGRAMS: web.AppKey[ProgramService] = web.AppKey("programs")
QUICKSTART: web.AppKey[QuickStartService] = web.AppKey("quickstart")
TERMINALS: web.AppKey[TerminalService] = web.AppKey("terminals")
AUTOMATION: web.AppKey[ScreenAutomation] = web.AppKey("automation")
RUN: web.AppKey[AppService] = web.AppKey("run")
RUNNER: web.AppKey[RunService] = web.AppKey("runner")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
