"""Typed application state keys shared by the app factory, the daemon runner and handlers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from hoodyd.config import Config

if TYPE_CHECKING:
    from hoodyd.programs.service import ProgramService

CONFIG = web.AppKey("config", Config)
# bearer token required on TCP; None when the app serves only the Unix socket
TOKEN = web.AppKey("token", str)
STARTED_AT = web.AppKey("started_at", float)
PROGRAMS = web.AppKey("programs", "ProgramService")

