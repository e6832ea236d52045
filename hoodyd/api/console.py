"""Handlers of the console: the pages a person runs the box from in a browser (programs, logs,
terminals, apps), under `/api/v1/run/console`, where the login session's cookie is sent.

Each handler is thin: it reads a form or a query, calls the same service method the JSON API
calls (`ProgramService`, `TerminalService`, `AppService`/`RunService`), and renders a page
(`hoodyd.api.console_pages`). A service's error is shown on the page with the API's own
message. The route table declares these routes `SESSION`: the middleware has already checked
the cookie (or the token, or the socket's peer) and, for anything but a GET, that the request
comes from this origin. No GET here changes anything.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import pwd
import socket
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import msgspec
import structlog
from aiohttp import WSMsgType, web

from hoodyd.api import console_pages as cp
from hoodyd.api import daemon, pages, sessions
from hoodyd.api.decoding import decode_params, path_int
from hoodyd.api.keys import AUTOMATION, CONFIG, PROGRAMS, RUN, RUNNER, TERMINALS, TOKEN
from hoodyd.api.links import candidate_run_path
from hoodyd.api.selectors import query_selector_params, selector_from_params
from hoodyd.api.terminal import follow_output
from hoodyd.apps.run.curl import CurlTarget
from hoodyd.config import CREDENTIAL_NAME, Config
from hoodyd.errors import Forbidden, HoodydError, InvalidRequest, NotFound, Reason, RunFailed
from hoodyd.programs import conf
from hoodyd.programs.logs import follow
from hoodyd.programs.table import ProgramFilter
from hoodyd.schemas.daemon import PortRangeStatus, Program, ProgramInput, StartRequest, StopRequest
from hoodyd.schemas.queries import ProgramLogsQuery
from hoodyd.schemas.run import SEARCH_QUERY_FIELDS
from hoodyd.schemas.terminal import CreateRequest, SessionInfo
from hoodyd.schemas.validation import convert
from hoodyd.terminals.paste import encode_paste
from hoodyd.terminals.validation import parse_terminal_id

log = structlog.get_logger()

HOME = cp.url("/programs")
REPLAY_BYTES = 64 * 1024
MAX_TERMINAL_ID = 65535
# a download may ask for more than the page shows
DOWNLOAD_LINES = 100_000

_html = pages.html_response


def token_location(config: Config, environ: dict[str, str] | None = None) -> str:
    """Where a person finds the TCP token, as hoodyd resolved it (never the token itself)."""
    env = os.environ if environ is None else environ
    if config.server.token_file:
        return str(Path(config.server.token_file))
    credentials = env.get("CREDENTIALS_DIRECTORY", "")
    if credentials and (Path(credentials) / CREDENTIAL_NAME).is_file():
        return str(Path(credentials) / CREDENTIAL_NAME)
    if config.server.token:
        return "the server.token setting or the HOODYD_TOKEN variable hoodyd was started with"
    return str(config.state_path / "token")


def where(config: Config) -> tuple[str, str]:
    """The console's URL on the TCP listener (a wildcard address shown as this host's name)
    and where its token is: what `hoodyd serve` tells the person who started it."""
    host, _, port = config.server.tcp.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if host in ("0.0.0.0", "::"):
        host = socket.gethostname()
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/", token_location(config)


# --- entry ------------------------------------------------------------------------------------


async def root(request: web.Request) -> web.Response:
    """`GET /`: the console (which sends a browser without a session to the login page)."""
    raise web.HTTPSeeOther(location=cp.BASE)


async def entry(request: web.Request) -> web.Response:
    """The dashboard for a live session (or a caller the socket or token let in), else the
    login page. An open route that only redirects: it reads the session, never extends it."""
    token = request.config_dict.get(TOKEN)
    store = request.config_dict[sessions.SESSIONS]
    sock = request.transport.get_extra_info("socket") if request.transport else None
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    authorised = (
        token is None
        or (sock is not None and sock.family == socket.AF_UNIX)  # its peer was checked
        or store.find(request.cookies.get(sessions.COOKIE)) is not None
        or (scheme.lower() == "bearer" and hmac.compare_digest(given.encode(), token.encode()))
    )
    raise web.HTTPSeeOther(location=HOME if authorised else sessions.LOGIN_PATH)


# --- programs ---------------------------------------------------------------------------------


async def _rows(request: web.Request) -> list[cp.ProgramRow]:
    service = request.config_dict[PROGRAMS]
    programs = service.find(ProgramFilter())
    statuses = await service.statuses_of(programs, with_stats=False)
    rows = []
    for program, status in zip(programs, statuses, strict=True):
        instances = status.instances if isinstance(status, PortRangeStatus) else [status]
        # supervisord's name of each process (a port instance's status names it; a plain
        # program's process is named after the program)
        names = [
            conf.instance_name(program, None)
            if s.instance_name is msgspec.UNSET
            else str(s.instance_name)
            for s in instances
        ]
        attempts = [
            service.observer.failed_attempts(name, s.status)
            if s.status in ("BACKOFF", "FATAL")
            else None
            for name, s in zip(names, instances, strict=True)
        ]
        restarts = [service.observer.restarts(name) for name in names]
        rows.append(cp.program_row(program, status, attempts, restarts))
    return rows


async def programs_page(request: web.Request) -> web.Response:
    notice = request.query.get("done")
    return _html(cp.programs_page(await _rows(request), notice=notice, error=None))


async def programs_table(request: web.Request) -> web.Response:
    """The dashboard's table body alone: the page's script swaps it in on each event."""
    return _html(cp.programs_table(await _rows(request)))


async def events(request: web.Request) -> web.StreamResponse:
    """The programs' state changes as Server-Sent Events: the daemon area's own stream."""
    return await daemon.events(request)


def _program(request: web.Request) -> Program:
    return request.config_dict[PROGRAMS].get(path_int(request, "id", low=1))


FORM_TYPES = ("application/x-www-form-urlencoded", "application/octet-stream")


async def _form(request: web.Request) -> Any:
    """The posted form's fields: a browser's url-encoded form, or nothing. Anything else, or
    a body that does not parse, is refused before a service is called."""
    if request.body_exists and request.content_type not in FORM_TYPES:
        raise InvalidRequest(
            "the console takes form posts (application/x-www-form-urlencoded), "
            f"not {request.content_type}",
            reason=Reason.INVALID_REQUEST,
        )
    try:
        return await request.post()
    except ValueError as exc:
        raise InvalidRequest(
            f"the form does not parse: {exc}", reason=Reason.INVALID_REQUEST
        ) from None


async def _port(request: web.Request) -> int | None:
    form = await _form(request)
    given = form.get("port")
    if not isinstance(given, str) or not given.strip():
        return None
    params = decode_params({"port": [given.strip()]}, StopRequest)
    return params.port


async def program_action(request: web.Request) -> web.Response:
    """Start, stop, restart, enable or disable, then back to the dashboard with what was done
    (or the service's refusal, on the dashboard with the error's status)."""
    service = request.config_dict[PROGRAMS]
    action = request.match_info["action"]
    try:
        program = _program(request)
        port = await _port(request)
        what = program.name if port is None else f"{program.name} on port {port}"
        if action in ("stop", "restart"):
            await service.stop(program.id, StopRequest(port=port))
        if action in ("start", "restart"):
            await service.start(program.id, StartRequest(port=port, wait=True, timeout=10))
        if action in ("enable", "disable"):
            await service.set_enabled(program.id, action == "enable")
    except HoodydError as exc:
        page = cp.programs_page(await _rows(request), notice=None, error=exc.message)
        return _html(page, exc.status)
    log.info("console_program_action", action=action, program_id=program.id, port=port)
    done = {"start": "started", "stop": "stopped", "restart": "restarted"}.get(action, action + "d")
    raise web.HTTPSeeOther(location=cp.url("/programs", done=f"{what} {done}"))


def _form_input(form: Any, *, editing: bool) -> tuple[ProgramInput, cp.ProgramForm]:
    """The form's fields as the API's ProgramInput, checked by the same decoder (so a bad
    value gets the API's message); the typed values come back to refill the form."""
    text = {name: str(form.get(name, "")).strip() for name in cp.ProgramForm.__annotations__}
    typed = cp.ProgramForm(
        name=text["name"],
        command=text["command"],
        user=text["user"],
        description=text["description"],
        directory=text["directory"],
        port_from=text["port_from"],
        port_to=text["port_to"],
        port_param=text["port_param"],
        autorestart=text["autorestart"] or "unexpected",
        enabled=form.get("enabled") == "true",
        boot=form.get("boot") == "true",
        environment=str(form.get("environment", "")),
    )
    body: dict[str, Any] = {
        "name": typed.name,
        "command": typed.command,
        "user": typed.user,
        "description": typed.description or None,
        "directory": typed.directory or None,
        "port_param": typed.port_param or None,
        "autorestart": {"true": True, "false": False}.get(typed.autorestart, typed.autorestart),
        "enabled": typed.enabled,
        "boot": typed.boot,
    }
    if typed.port_from or typed.port_to:
        body["port_range"] = {
            "start": _number(typed.port_from),
            "end": _number(typed.port_to),
        }
    elif editing:
        body["port_range"] = None
    environment: dict[str, str] = {}
    for line in typed.environment.splitlines():
        if not line.strip():
            continue
        name, sep, value = line.partition("=")
        if not sep:
            raise InvalidRequest(
                f"environment line {line.strip()!r} is not NAME=value",
                reason=Reason.INVALID_ENV,
            )
        environment[name.strip()] = value
    body["environment"] = environment or None
    return convert(body, ProgramInput, source="form"), typed


def _number(value: str) -> int | str:
    """A typed number as a number; anything else as typed, for the decoder to name."""
    try:  # ASCII digits only: int() refuses '²' and more than 4300 digits
        return int(value) if value.isascii() and value.lstrip("-").isdigit() else value
    except ValueError:
        return value


def _default_user() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


async def new_program_page(request: web.Request) -> web.Response:
    form = cp.ProgramForm()
    return _html(
        cp.program_form_page(form, program_id=None, error=None, default_user=_default_user())
    )


async def edit_program_page(request: web.Request) -> web.Response:
    program = _program(request)
    page = cp.program_form_page(
        cp.ProgramForm.of(program), program_id=program.id, error=None, default_user=""
    )
    return _html(page)


async def save_program(request: web.Request) -> web.Response:
    """The add or edit form's post: the service's `add`/`edit`, or the form again with the
    API's message and status, the typed values kept."""
    program_id = path_int(request, "id", low=1) if "id" in request.match_info else None
    form = await _form(request)
    typed = cp.ProgramForm(name=str(form.get("name", "")))
    service = request.config_dict[PROGRAMS]
    try:
        given, typed = _form_input(form, editing=program_id is not None)
        if program_id is None:
            program = await service.add(given)
        else:
            program = await service.edit(program_id, given)
    except HoodydError as exc:
        page = cp.program_form_page(
            typed, program_id=program_id, error=exc.message, default_user=""
        )
        return _html(page, exc.status)
    done = "added" if program_id is None else "saved"
    raise web.HTTPSeeOther(location=cp.url("/programs", done=f"{program.name} {done}"))


async def remove_program_page(request: web.Request) -> web.Response:
    return _html(cp.remove_page(_program(request)))


async def remove_program(request: web.Request) -> web.Response:
    program = _program(request)
    await request.config_dict[PROGRAMS].remove(program.id)
    raise web.HTTPSeeOther(location=cp.url("/programs", done=f"{program.name} removed"))


# --- logs -------------------------------------------------------------------------------------


def _logs_query(request: web.Request) -> ProgramLogsQuery:
    params = {name: request.query.getall(name) for name in request.query if name != "follow"}
    return decode_params(params, ProgramLogsQuery)


async def logs_page(request: web.Request) -> web.Response:
    program = _program(request)
    service = request.config_dict[PROGRAMS]
    text, error, status = "", None, 200
    query = ProgramLogsQuery()
    try:
        query = _logs_query(request)
        tail = await service.logs(program, stream=query.type, lines=query.lines, port=query.port)
        text = tail.logs
    except HoodydError as exc:
        error, status = exc.message, exc.status
    page = cp.logs_page(
        program, stream=query.type, lines=query.lines, port=query.port, text=text, error=error
    )
    return _html(page, status)


async def logs_follow(request: web.Request) -> web.StreamResponse:
    """text/plain: new lines of the stream as they are written, until the page leaves."""
    program = _program(request)
    query = _logs_query(request)
    service = request.config_dict[PROGRAMS]
    checked = await service.logs(program, stream=query.type, lines=1, port=query.port)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/plain; charset=utf-8",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    chunks = follow(Path(checked.log_file), 0)
    try:
        async for chunk in chunks:
            if request.transport is None or request.transport.is_closing():
                break
            await response.write(chunk or b"")
    except ConnectionError:
        pass  # the page left
    finally:
        await chunks.aclose()
    return response


async def logs_download(request: web.Request) -> web.Response:
    program = _program(request)
    query = _logs_query(request)
    tail = await request.config_dict[PROGRAMS].logs(
        program, stream=query.type, lines=min(query.lines, DOWNLOAD_LINES), port=query.port
    )
    suffix = f"-{query.port}" if query.port is not None else ""
    name = f"program-{program.id}{suffix}-{query.type}.log"
    return web.Response(
        text=tail.logs,
        content_type="text/plain",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


# --- terminals --------------------------------------------------------------------------------


async def _sessions(request: web.Request) -> list[SessionInfo]:
    terminals = request.config_dict.get(TERMINALS)
    if terminals is None:
        return []
    await terminals.settle_exits()
    return list(terminals.list_sessions(1).data)


def _terminal_id(request: web.Request) -> int:
    terminal_id = parse_terminal_id(request.match_info["terminal_id"])
    assert terminal_id is not None
    return terminal_id


async def _info(request: web.Request, terminal_id: int) -> SessionInfo:
    found = next((info for info in await _sessions(request) if info.id == terminal_id), None)
    if found is None:
        raise NotFound(f"terminal {terminal_id} not found", reason=Reason.TERMINAL_NOT_FOUND)
    return found


async def terminals_page(request: web.Request) -> web.Response:
    return _html(cp.terminals_page(await _sessions(request)))


async def _new_terminal(request: web.Request) -> int:
    terminals = request.config_dict[TERMINALS]
    free = next(
        (tid for tid in range(1, MAX_TERMINAL_ID + 1) if not terminals.has_session(tid)), None
    )
    if free is None:
        raise InvalidRequest("every terminal id is in use", reason=Reason.INVALID_REQUEST)
    created = await terminals.create(CreateRequest(terminal_id=free))
    return int(created.terminal_id)


async def create_terminal(request: web.Request) -> web.Response:
    try:
        terminal_id = await _new_terminal(request)
    except HoodydError as exc:
        return _html(cp.terminals_page(await _sessions(request), error=exc.message), exc.status)
    raise web.HTTPSeeOther(location=cp.url(f"/terminals/{terminal_id}"))


async def close_terminal(request: web.Request) -> web.Response:
    terminal_id = _terminal_id(request)
    try:
        await request.config_dict[TERMINALS].delete(terminal_id)
    except HoodydError as exc:
        return _html(cp.terminals_page(await _sessions(request), error=exc.message), exc.status)
    raise web.HTTPSeeOther(location=cp.url("/terminals"))


async def terminal_page(request: web.Request) -> web.Response:
    info = await _info(request, _terminal_id(request))
    return _html(cp.terminal_page(info, watch=request.query.get("mode") == "watch"))


class _ClientFrame(msgspec.Struct):
    type: str
    data: str = ""
    cols: int = 0
    rows: int = 0


async def terminal_socket(request: web.Request) -> web.StreamResponse:
    """WebSocket: the terminal's recent output, then its output as it comes (binary frames),
    and `{"type": "exit"}` when the shell ends. In `mode=interactive` the page's text frames
    `{"type": "input", "data"}` are typed into the shell (keys as xterm.js encodes them, Ctrl-C
    included), `{"type": "paste", "data"}` is pasted as the API's paste does (control
    characters removed, bracketed when the program enabled bracketed paste) and `{"type":
    "resize", "cols", "rows"}` resizes it; in `mode=watch` every frame from the page is
    ignored. The upgrade must
    come from this same origin (a browser always names it), and never creates a terminal."""
    if not sessions.same_origin(request):
        raise Forbidden(
            "the console's terminal socket must be opened from this origin",
            reason=Reason.BAD_ORIGIN,
        )
    terminal_id = _terminal_id(request)
    mode = request.query.get("mode", "interactive")
    if mode not in ("interactive", "watch"):
        raise InvalidRequest("mode must be interactive or watch", reason=Reason.INVALID_REQUEST)
    terminals = request.config_dict.get(TERMINALS)
    if terminals is None:
        raise InvalidRequest("no terminal service runs here", reason=Reason.TERMINALS_UNAVAILABLE)
    terminals.session(terminal_id)  # 404 for a terminal that does not exist
    ws = web.WebSocketResponse(heartbeat=30, max_msg_size=1024 * 1024)
    if not ws.can_prepare(request).ok:
        raise InvalidRequest(
            "this is a WebSocket: open it with an Upgrade: websocket request",
            reason=Reason.INVALID_REQUEST,
        )
    async with terminals.attach(terminal_id) as attachment:
        await ws.prepare(request)
        pump = request.loop.create_task(
            follow_output(ws, attachment, attachment.ring.tail(REPLAY_BYTES), report_dropped=False)
        )
        try:
            async for message in ws:
                if message.type != WSMsgType.TEXT or mode == "watch":
                    continue
                try:
                    frame = msgspec.json.decode(message.data, type=_ClientFrame)
                except msgspec.DecodeError:
                    continue  # not a frame of ours: ignored
                if frame.type == "input" and frame.data:
                    attachment.send_input(frame.data.encode("utf-8", "ignore"))
                elif frame.type == "paste" and frame.data:
                    modes = await request.config_dict[AUTOMATION].modes(attachment.session)
                    attachment.send_input(
                        encode_paste(
                            frame.data,
                            bracketed_requested=True,
                            bracketed_enabled=modes.bracketed_paste,
                        )
                    )
                elif frame.type == "resize" and 1 <= frame.cols <= 1000 and 1 <= frame.rows <= 1000:
                    attachment.resize(frame.cols, frame.rows)
        finally:
            pump.cancel()
            with contextlib.suppress(BaseException):
                await pump
    return ws


# --- apps -------------------------------------------------------------------------------------


# the fields that make a search (the app, a profile, its filters): what the apps page takes
# and what a Run carries, so the pick is made in the same search the candidate was found in
SEARCH_FIELDS = tuple(name for name in SEARCH_QUERY_FIELDS if name != "limit")
RUN_FORM_FIELDS = frozenset(SEARCH_FIELDS) | {
    "candidate_id",
    "terminal_id",
    "new_terminal",
    "queue",
}


def _search_pairs(params: dict[str, list[str]]) -> list[tuple[str, str]]:
    return [(name, value) for name in SEARCH_FIELDS for value in params.get(name, []) if value]


def _link_pairs(href_path: str | None) -> list[tuple[str, str]] | None:
    """The search a candidate's run link repeats (app, profile, filters as resolved)."""
    if href_path is None:
        return None
    pairs = parse_qsl(urlsplit(href_path).query, keep_blank_values=True)
    return [(name, value) for name, value in pairs if name not in ("pick", "candidate_id")]


async def apps_page(request: web.Request) -> web.Response:
    """The search, by app name and optionally a profile and the API's filters; each Run
    carries the search its candidate was found in."""
    app = request.query.get("app", "").strip()
    if not app:
        return _html(cp.apps_page("", []))
    search: list[tuple[str, str]] = [("app", app)]
    try:
        params = query_selector_params(request, frozenset(SEARCH_QUERY_FIELDS))
        params = {name: [v.strip() for v in values if v.strip()] for name, values in params.items()}
        params["app"] = [app]
        search = _search_pairs(params)
        selector = selector_from_params({name: values for name, values in params.items() if values})
        answer = await request.config_dict[RUN].search_settled(
            selector, run_link=candidate_run_path
        )
    except HoodydError as exc:
        return _html(cp.apps_page(app, [], search=search, error=exc.message), exc.status)
    notes = [w.message for w in answer.warnings or []]
    runs = [_link_pairs(candidate.href_path) or search for candidate in answer.candidates]
    page = cp.apps_page(app, answer.candidates, search=search, runs=runs, notes=notes)
    return _html(page)


def _curl_target(request: web.Request) -> CurlTarget:
    server = request.config_dict[CONFIG].server
    if server.tcp:
        return CurlTarget(base_url=f"http://{server.tcp}")
    return CurlTarget(socket=server.socket)


async def run_app(request: web.Request) -> web.Response:
    """Run a candidate in a terminal. A terminal busy with a program is not queued behind
    silently: the page says so and offers a new terminal; a run refused for a missing
    requirement shows the fix and the way back."""
    form = await _form(request)
    app = str(form.get("app", "")).strip()
    candidate_id = str(form.get("candidate_id", "")).strip()
    search = [("app", app)]
    try:
        unknown = sorted(set(form) - RUN_FORM_FIELDS)
        if unknown:
            raise InvalidRequest(
                f"Unknown form field(s): {', '.join(unknown)}", reason=Reason.UNKNOWN_PARAMETER
            )
        search = _search_pairs({name: [str(v) for v in form.getall(name)] for name in form})
        if form.get("new_terminal") == "true":
            terminal_id = await _new_terminal(request)
        else:
            given = parse_terminal_id(str(form.get("terminal_id") or "1"))
            terminal_id = 1 if given is None else given
            terminals = request.config_dict[TERMINALS]
            if form.get("queue") != "true" and terminals.has_session(terminal_id):
                info = await _info(request, terminal_id)
                if info.busy:
                    return _html(cp.busy_page(search, candidate_id, info), 409)
        params: dict[str, list[str]] = {}
        for name, value in search:
            params.setdefault(name, []).append(value)
        params |= {
            "pick": ["id"],
            "candidate_id": [candidate_id],
            "terminal_id": [str(terminal_id)],
        }
        selector = selector_from_params(params)
        await request.config_dict[RUNNER].run(selector, _curl_target(request))
    except RunFailed as exc:
        fixes = [
            item.resolution for item in exc.response.missing_requirements or [] if item.resolution
        ]
        page = cp.run_failed_page(search, exc.message, fixes, status=exc.status)
        return _html(page, exc.status)
    except HoodydError as exc:
        return _html(cp.apps_page(app, [], search=search, error=exc.message), exc.status)
    raise web.HTTPSeeOther(location=cp.url(f"/terminals/{terminal_id}"))
