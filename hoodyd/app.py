"""The composition root: the one place that builds hoodyd's services, in dependency order, and
mounts each API area as a sub-application. The daemon and the tests use it alike; a test
builds only the areas it tests (`areas=("terminal",)` starts no supervisord).

Services are created and started together when the app starts (programs → terminals → apps →
the run planner, which needs the last two) and closed in the reverse order; nothing is
rewired after it was built.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from typing import Literal

from aiohttp import web

from hoodyd.api import draining
from hoodyd.api.keys import (
    AREA,
    AUTOMATION,
    CONFIG,
    METRICS,
    PROGRAMS,
    QUICKSTART,
    RUN,
    RUNNER,
    TERMINALS,
    TOKEN,
    Area,
)
from hoodyd.api.links import API_LINKS
from hoodyd.api.middleware import request_middleware
from hoodyd.api.routes import add_root_routes, add_routes
from hoodyd.apps.run.curl import CurlTarget
from hoodyd.apps.run.runner import RunService
from hoodyd.apps.service import AppService
from hoodyd.config import Config
from hoodyd.metrics import Metrics, Sources
from hoodyd.programs.quickstart import QuickStartService
from hoodyd.programs.service import ProgramService
from hoodyd.terminals.automation import ScreenAutomation
from hoodyd.terminals.service import TerminalService

Closer = Callable[[], Awaitable[None]]
AreaName = Literal["daemon", "terminal", "run"]
ALL_AREAS: tuple[AreaName, ...] = ("daemon", "terminal", "run")
# each area's base path and its error shape (CONTRACT.md §1.4)
AREAS: dict[AreaName, Area] = {
    "daemon": Area("daemon", "/api/v1/daemon", "kit"),
    "terminal": Area("terminal", "/api/v1/terminal", "kit"),
    "run": Area("run", "/api/v1/run", "run"),
}


def create_app(
    config: Config, *, token: str | None = None, areas: Collection[AreaName] = ALL_AREAS
) -> web.Application:
    app = web.Application(client_max_size=config.server.max_body_bytes)
    app.middlewares.append(request_middleware(app))
    app[CONFIG] = config
    app[METRICS] = Metrics(
        Sources(
            programs=lambda: app.get(PROGRAMS),
            terminals=lambda: app.get(TERMINALS),
            apps=lambda: app.get(RUN),
        )
    )
    draining.install(app)
    if token:
        app[TOKEN] = token
    app.cleanup_ctx.append(_services(frozenset(areas)))
    for name in ALL_AREAS:
        if name in areas:
            area = web.Application(client_max_size=config.server.max_body_bytes)
            area[AREA] = AREAS[name]
            add_routes(area, name)
            app.add_subapp(AREAS[name].base, area)
    add_root_routes(app)  # `GET /`: to the console
    return app


def _services(
    areas: frozenset[AreaName],
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        config = app[CONFIG]
        async with contextlib.AsyncExitStack() as started:

            async def start(opening: Awaitable[None], closing: Closer) -> None:
                await opening
                started.push_async_callback(closing)

            if "daemon" in areas:
                programs = ProgramService(config)
                programs.on_started = app[METRICS].start_seconds.observe
                await start(programs.open(), programs.close)
                quick = QuickStartService(programs)
                await start(quick.open(), quick.close)
                app[PROGRAMS], app[QUICKSTART] = programs, quick
            terminals = None
            if "terminal" in areas:
                terminals = TerminalService(
                    config.terminals, config.state_path, pass_env=config.server.pass_env
                )
                await start(terminals.start(), terminals.close)
                automation = ScreenAutomation(config.terminals)
                await start(automation.start(), automation.close)
                app[TERMINALS], app[AUTOMATION] = terminals, automation
            if "run" in areas:
                apps = AppService(config.state_path, config.run, pass_env=config.server.pass_env)
                await start(apps.start(), apps.close)
                target = CurlTarget(socket=config.server.socket)
                runner = RunService(apps, terminals, target, links=API_LINKS)
                app[RUN], app[RUNNER] = apps, runner
            yield

    return lifecycle
