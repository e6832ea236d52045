"""The console's HTML: one layout (a header with the sections and the logout form) around the
programs dashboard, the program form, the logs view, the terminals list, a terminal, and the
apps search.

Every page loads the console's own stylesheet and script (`hoodyd/api/static/console.css`,
`console.js`) and, for a terminal, the vendored xterm.js; nothing comes from another origin.
Every piece of text is HTML-escaped; values reach the script through `data-` attributes,
never pasted into script text. Every action that changes something is a POST form (a link
or a prefetch never acts).
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlencode

import msgspec

from hoodyd.schemas.daemon import PortRangeStatus, ProcessStatus, Program
from hoodyd.schemas.run import Candidate
from hoodyd.schemas.terminal import SessionInfo

BASE = "/api/v1/run/console"
STATIC = "/api/v1/run/static"
LOGOUT = "/api/v1/run/logout"
SECTIONS = (("programs", "Programs"), ("terminals", "Terminals"), ("apps", "Apps"))


def e(value: object) -> str:
    return html.escape(str(value), quote=True)


def url(path: str, **query: object) -> str:
    given = {name: str(value) for name, value in query.items() if value not in (None, "")}
    return f"{BASE}{path}" + (f"?{urlencode(given)}" if given else "")


def layout(
    title: str,
    body: str,
    *,
    section: str,
    notice: str | None = None,
    error: str | None = None,
    head: str = "",
) -> str:
    nav = "".join(
        f'<a href="{url("/" + name)}"{" aria-current=page" if name == section else ""}>{label}</a>'
        for name, label in SECTIONS
    )
    flash = ""
    if notice:
        flash += f"<p class=notice role=status>{e(notice)}</p>"
    if error:
        flash += f"<p class=problem role=alert>{e(error)}</p>"
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>{e(title)} · hoodyd</title>"
        f'<link rel=stylesheet href="{STATIC}/console.css">{head}</head><body>'
        f'<header><a class=brand href="{url("/programs")}">hoodyd</a><nav>{nav}</nav>'
        f'<form method=post action="{LOGOUT}" class=logout><button>Log out</button></form>'
        f"</header><main>{flash}{body}</main>"
        f'<script src="{STATIC}/console.js"></script></body></html>'
    )


def url_of(path: str, pairs: Sequence[tuple[str, str]]) -> str:
    """A console URL whose query is these pairs, in order (a search's fields)."""
    return f"{BASE}{path}" + (f"?{urlencode(list(pairs))}" if pairs else "")


def hidden_pairs(pairs: Sequence[tuple[str, str]]) -> str:
    return "".join(
        f'<input type=hidden name="{e(name)}" value="{e(value)}">' for name, value in pairs
    )


def hidden(**fields: object) -> str:
    return "".join(
        f'<input type=hidden name="{e(name)}" value="{e(value)}">'
        for name, value in fields.items()
        if value is not None
    )


def button_form(
    action: str,
    label: str,
    *,
    cls: str = "",
    pairs: Sequence[tuple[str, str]] = (),
    **fields: object,
) -> str:
    return (
        f'<form method=post action="{e(action)}" class=inline>{hidden_pairs(pairs)}'
        f"{hidden(**fields)}"
        f"<button{f' class={cls}' if cls else ''}>{e(label)}</button></form>"
    )


# --- programs ---------------------------------------------------------------------------------


@dataclass
class InstanceRow:
    """One process of a program as the dashboard shows it."""

    state: str
    port: int | None
    pid: int | None
    uptime: str | None
    last_exit: str
    attempts: int | None = None
    restarts: int | None = None  # supervisord's own restarts since hoodyd started


@dataclass
class ProgramRow:
    program: Program
    instances: list[InstanceRow] = field(default_factory=list)
    running: int = 0
    total_ports: int = 0


def instance_row(
    status: ProcessStatus, attempts: int | None, restarts: int | None = None
) -> InstanceRow:
    last = []
    if status.exitstatus is not msgspec.UNSET and status.status != "RUNNING":
        last.append(f"exit status {status.exitstatus}")
    if status.spawnerr is not msgspec.UNSET and status.spawnerr:
        last.append(str(status.spawnerr))
    return InstanceRow(
        state=status.status,
        port=None if status.port is msgspec.UNSET else int(status.port),
        pid=status.pid,
        uptime=status.uptime,
        last_exit="; ".join(last),
        attempts=attempts,
        restarts=restarts,
    )


def program_row(
    program: Program,
    status: ProcessStatus | PortRangeStatus,
    attempts: list[int | None],
    restarts: Sequence[int | None] = (),
) -> ProgramRow:
    """`attempts` and `restarts` are per instance, in the status's order."""
    counts = list(restarts) or [None] * len(attempts)
    if isinstance(status, PortRangeStatus):
        return ProgramRow(
            program,
            [
                instance_row(s, a, r)
                for s, a, r in zip(status.instances, attempts, counts, strict=False)
            ],
            running=status.running_instances,
            total_ports=status.total_instances,
        )
    return ProgramRow(
        program,
        [instance_row(status, attempts[0] if attempts else None, counts[0] if counts else None)],
    )


def _ports(program: Program) -> str:
    if program.port_range is None:
        return ""
    return f"{program.port_range.start}-{program.port_range.end}"


def _actions(program: Program, port: int | None) -> str:
    base = f"/programs/{program.id}"
    out = []
    for action, label in (("start", "Start"), ("stop", "Stop"), ("restart", "Restart")):
        out.append(button_form(url(f"{base}/{action}"), label, port=port))
    return "".join(out)


def _flags(program: Program) -> str:
    flags = ["enabled" if program.enabled else "disabled"]
    if program.boot:
        flags.append("boot")
    if program.lazy_load:
        flags.append("lazy")
    return " ".join(f"<span class=tag>{flag}</span>" for flag in flags)


def _state(state: str) -> str:
    return f'<span class="state s-{e(state.lower())}">{e(state)}</span>'


COLUMNS = (
    "Program", "State", "Ports", "PID", "Uptime", "Restarts", "Failed starts", "Last exit", "Flags",
)  # fmt: skip


def _cells(label: str, instance: InstanceRow | None, ports: str, flags: str) -> str:
    values = ["", "", "", "", "", ""]
    if instance is not None:
        values = [
            _state(instance.state),
            e(instance.pid or ""),
            e(instance.uptime or ""),
            e("" if instance.restarts is None else instance.restarts),
            e("" if instance.attempts is None else instance.attempts),
            e(instance.last_exit),
        ]
    state, pid, uptime, restarts, attempts, last = values
    return (
        f"<th scope=row data-label=Program>{label}</th><td data-label=State>{state}</td>"
        f"<td data-label=Ports>{ports}</td><td data-label=PID>{pid}</td>"
        f"<td data-label=Uptime>{uptime}</td><td data-label=Restarts class=restarts>{restarts}"
        f"</td><td data-label='Failed starts'>{attempts}</td>"
        f"<td data-label='Last exit'>{last}</td><td data-label=Flags>{flags}</td>"
    )


def programs_table(rows: Sequence[ProgramRow]) -> str:
    if not rows:
        return (
            f"<tbody id=programs><tr><td colspan={len(COLUMNS) + 1} class=muted>No programs "
            f'yet. <a href="{url("/programs/new")}">Add one</a>.</td></tr></tbody>'
        )
    out = []
    for row in rows:
        program = row.program
        base = f"/programs/{program.id}"
        manage = (
            button_form(
                url(f"{base}/{'disable' if program.enabled else 'enable'}"),
                "Disable" if program.enabled else "Enable",
            )
            + f'<a class=button href="{url(base + "/logs")}">Logs</a>'
            f'<a class=button href="{url(base + "/edit")}">Edit</a>'
            f'<a class="button danger" href="{url(base + "/remove")}">Remove</a>'
        )
        description = (
            f"<div class=muted>{e(program.description)}</div>" if program.description else ""
        )
        label = f'<a href="{url(base + "/edit")}">{e(program.name)}</a>{description}'
        if program.port_range is None:
            instance = row.instances[0] if row.instances else None
            out.append(
                f'<tr class=program data-program-id="{program.id}">'
                + _cells(label, instance, "", _flags(program))
                + f"<td class=actions>{_actions(program, None)}{manage}</td></tr>"
            )
            continue
        summary = f"<div class=muted>{row.running} of {row.total_ports} running</div>"
        assert program.port_range is not None
        manage = (
            f'<form method=post action="{url(base + "/start")}" class=inline>'
            f"<input name=port type=number min={program.port_range.start} "
            f"max={program.port_range.end} aria-label=port placeholder=port required>"
            f"<button>Start port</button></form>{manage}"
        )
        out.append(
            f'<tr class=program data-program-id="{program.id}">'
            + _cells(label + summary, None, e(_ports(program)), _flags(program))
            + f"<td class=actions>{manage}</td></tr>"
        )
        for instance in row.instances:
            out.append(
                f'<tr class=instance data-program-id="{program.id}" data-port="{instance.port}">'
                + _cells(
                    f"<span class=muted>{e(program.name)}</span>",
                    instance,
                    e(instance.port or ""),
                    "",
                )
                + f"<td class=actions>{_actions(program, instance.port)}"
                f'<a class=button href="{url(base + "/logs", port=instance.port)}">Logs</a></td>'
                "</tr>"
            )
    return f"<tbody id=programs>{''.join(out)}</tbody>"


def programs_page(rows: Sequence[ProgramRow], *, notice: str | None, error: str | None) -> str:
    head = "".join(f"<th>{name}</th>" for name in (*COLUMNS, "Actions"))
    body = (
        f'<div class=bar><h1>Programs</h1><a class="button primary" href="{url("/programs/new")}">'
        "Add program</a><span id=live class=muted data-events="
        f'"{url("/events")}" data-table="{url("/programs/table")}">connecting…</span></div>'
        f"<table class=programs><thead><tr>{head}</tr></thead>{programs_table(rows)}</table>"
        "<p class=muted>Ports of a port range start on demand: Start on a port starts that "
        "instance.</p>"
    )
    return layout("Programs", body, section="programs", notice=notice, error=error)


@dataclass
class ProgramForm:
    """What the add/edit form shows: the values typed (or stored)."""

    name: str = ""
    command: str = ""
    user: str = ""
    description: str = ""
    directory: str = ""
    port_from: str = ""
    port_to: str = ""
    port_param: str = ""
    autorestart: str = "unexpected"
    enabled: bool = True
    boot: bool = False
    environment: str = ""

    @classmethod
    def of(cls, program: Program) -> ProgramForm:
        return cls(
            name=program.name,
            command=program.command,
            user=program.user,
            description=program.description or "",
            directory=program.directory or "",
            port_from=str(program.port_range.start) if program.port_range else "",
            port_to=str(program.port_range.end) if program.port_range else "",
            port_param=program.port_param or "",
            autorestart=str(program.autorestart).lower(),
            enabled=program.enabled,
            boot=program.boot,
            environment="\n".join(f"{k}={v}" for k, v in (program.environment or {}).items()),
        )


def _field(label: str, name: str, value: str, *, hint: str = "", required: bool = False) -> str:
    return (
        f'<label>{e(label)}<input name={name} value="{e(value)}"'
        f"{' required' if required else ''}>"
        + (f"<small class=muted>{e(hint)}</small>" if hint else "")
        + "</label>"
    )


def program_form_page(
    form: ProgramForm, *, program_id: int | None, error: str | None, default_user: str
) -> str:
    action = url("/programs/new") if program_id is None else url(f"/programs/{program_id}/edit")
    title = "Add a program" if program_id is None else f"Edit {form.name}"
    choices = "".join(
        f'<option value="{v}"{" selected" if v == form.autorestart else ""}>{v}</option>'
        for v in ("unexpected", "true", "false")
    )
    body = (
        f'<h1>{e(title)}</h1><form method=post action="{action}" class=stack>'
        + _field("Name", "name", form.name, required=True, hint="letters, digits, - and _")
        + _field(
            "Command",
            "command",
            form.command,
            required=True,
            hint="split like a shell would; no shell runs it",
        )
        + _field("User", "user", form.user or default_user, required=True)
        + _field("Description", "description", form.description)
        + _field("Directory", "directory", form.directory, hint="working directory")
        + "<fieldset><legend>Port range (optional)</legend><div class=row>"
        + _field("From", "port_from", form.port_from)
        + _field("To", "port_to", form.port_to)
        + _field("Port parameter", "port_param", form.port_param, hint="default --port")
        + "</div></fieldset>"
        + f"<label>Restart when it exits<select name=autorestart>{choices}</select></label>"
        + "<label>Environment<textarea name=environment rows=3 placeholder=NAME=value>"
        + f"{e(form.environment)}</textarea>"
        + "<small class=muted>one NAME=value a line</small></label>"
        + "<div class=row>"
        + f"<label class=check><input type=checkbox name=enabled value=true"
        f"{' checked' if form.enabled else ''}> Enabled</label>"
        + f"<label class=check><input type=checkbox name=boot value=true"
        f"{' checked' if form.boot else ''}> Start at boot</label></div>"
        + "<div class=row><button class=primary>Save</button>"
        + f'<a class=button href="{url("/programs")}">Cancel</a></div></form>'
    )
    return layout(title, body, section="programs", error=error)


def remove_page(program: Program) -> str:
    body = (
        f"<h1>Remove {e(program.name)}?</h1><p>Its processes are stopped, its supervisord "
        "group and log files removed. This cannot be undone.</p><p><code>"
        f"{e(program.command)}</code></p><div class=row>"
        + button_form(url(f"/programs/{program.id}/remove"), f"Remove {program.name}", cls="danger")
        + f'<a class=button href="{url("/programs")}">Keep it</a></div>'
    )
    return layout(f"Remove {program.name}", body, section="programs")


def logs_page(
    program: Program,
    *,
    stream: str,
    lines: int,
    port: int | None,
    text: str,
    error: str | None,
) -> str:
    base = f"/programs/{program.id}/logs"
    streams = "".join(
        f"<option value={s}{' selected' if s == stream else ''}>{s}</option>"
        for s in ("stdout", "stderr")
    )
    port_field = ""
    if program.port_range is not None:
        port_field = (
            f"<label>Port<input name=port type=number min={program.port_range.start} "
            f'max={program.port_range.end} value="{e(port or "")}" required></label>'
        )
    follow = url(base + "/follow", type=stream, port=port)
    download = url(base + "/download", type=stream, lines=lines, port=port)
    body = (
        f"<div class=bar><h1>Logs of {e(program.name)}</h1>"
        f'<a class=button href="{e(download)}" download>Download</a></div>'
        f'<form method=get action="{url(base)}" class="row controls">'
        f"<label>Stream<select name=type>{streams}</select></label>{port_field}"
        f'<label>Lines<input name=lines type=number min=1 value="{lines}"></label>'
        "<button>Show</button></form>"
        '<div class="row controls"><label>Filter<input id=filter type=search '
        'placeholder="show lines containing…"></label>'
        f'<label class=check><input id=follow type=checkbox data-url="{e(follow)}"> Follow live'
        "</label><span id=live class=muted></span></div>"
        f"<pre id=log class=log>{e(text)}</pre>"
    )
    return layout(f"Logs of {program.name}", body, section="programs", error=error)


# --- terminals --------------------------------------------------------------------------------


def terminals_page(sessions: Iterable[SessionInfo], *, error: str | None = None) -> str:
    rows = []
    for info in sessions:
        tid = info.id
        doing = info.command_history[-1] if info.busy and info.command_history else ""
        state = "exited" if info.state != "running" else ("busy" if info.busy else "idle")
        rows.append(
            f'<tr data-terminal-id="{tid}"><th scope=row data-label=Terminal>'
            f'<a href="{url(f"/terminals/{tid}")}">Terminal {tid}</a></th>'
            f"<td data-label=State>{_state(state)}</td>"
            f"<td data-label=Running><code>{e(doing)}</code></td>"
            f"<td data-label=User>{e(info.user or '')}</td>"
            f"<td data-label=Since>{e(info.created_at)}</td>"
            f"<td data-label='Last activity'>{e(info.last_activity)}</td>"
            f'<td><a class=button href="{url(f"/terminals/{tid}")}">Open</a>'
            f'<a class=button href="{url(f"/terminals/{tid}", mode="watch")}">Watch</a>'
            + button_form(url(f"/terminals/{tid}/close"), "Close", cls="danger")
            + "</td></tr>"
        )
    table = (
        "<table><thead><tr><th>Terminal</th><th>State</th><th>Running</th><th>User</th>"
        f"<th>Since</th><th>Last activity</th><th>Actions</th></tr></thead><tbody>{''.join(rows)}"
        "</tbody></table>"
        if rows
        else "<p class=muted>No terminals yet.</p>"
    )
    body = (
        "<div class=bar><h1>Terminals</h1>"
        + button_form(url("/terminals"), "New terminal", cls="primary")
        + f"</div>{table}"
    )
    return layout("Terminals", body, section="terminals", error=error)


def terminal_page(info: SessionInfo, *, watch: bool) -> str:
    tid = info.id
    mode = "watch" if watch else "interactive"
    socket = url(f"/terminals/{tid}/tty", mode=mode)
    other = (
        f'<a class=button href="{url(f"/terminals/{tid}")}">Type into it</a>'
        if watch
        else f'<a class=button href="{url(f"/terminals/{tid}", mode="watch")}">Watch only</a>'
    )
    body = (
        f"<div class=bar><h1>Terminal {tid}</h1><span class=tag>{mode}</span>{other}"
        + button_form(url(f"/terminals/{tid}/close"), "Close terminal", cls="danger")
        + "<span id=live class=muted>connecting…</span></div>"
        f'<div id=terminal class=terminal data-socket="{e(socket)}" data-mode={mode}></div>'
        "<p class=muted>"
        + (
            "Read-only: what you type is not sent."
            if watch
            else "Typing, paste and Ctrl-C go "
            "to the shell; the terminal follows this window's size."
        )
        + "</p>"
    )
    head = (
        f'<link rel=stylesheet href="{STATIC}/xterm.css"><script src="{STATIC}/xterm.js"></script>'
    )
    return layout(f"Terminal {tid}", body, section="terminals", head=head)


# --- apps -------------------------------------------------------------------------------------


def _search_form(app: str, search: Sequence[tuple[str, str]]) -> str:
    """The app name and the profile to type; the search's other filters are kept."""
    profile = next((value for name, value in search if name == "profile"), "")
    kept = [(name, value) for name, value in search if name not in ("app", "profile")]
    return (
        f'<form method=get action="{url("/apps")}" role=search class="row controls">'
        f'<input name=app value="{e(app)}" aria-label="app name" placeholder="app name" required>'
        f'<input name=profile value="{e(profile)}" aria-label=profile placeholder="profile '
        f'(optional)">{hidden_pairs(kept)}<button class=primary>Search</button></form>'
    )


def apps_page(
    app: str,
    candidates: Sequence[Candidate],
    *,
    search: Sequence[tuple[str, str]] = (),
    runs: Sequence[Sequence[tuple[str, str]]] = (),
    notes: Sequence[str] = (),
    terminal_id: int = 1,
    error: str | None = None,
) -> str:
    """`runs`: per candidate, the search fields its Run posts (the search it was found in)."""
    rows = []
    for index, candidate in enumerate(candidates):
        installed = "installed" if candidate.installed else "not installed"
        action = button_form(
            url("/apps/run"),
            "Run",
            cls="primary",
            pairs=runs[index] if index < len(runs) else (search or [("app", app)]),
            candidate_id=candidate.candidate_id,
            terminal_id=terminal_id,
        )
        rows.append(
            f"<tr><th scope=row data-label=App>{e(candidate.title)}"
            f"<div class=muted>{e(candidate.description)}</div></th>"
            f"<td data-label=Source>{e(candidate.source_id)} <span class=muted>"
            f"({e(candidate.provider)})</span></td>"
            f"<td data-label=Installed><span class=tag>{installed}</span></td>"
            f"<td data-label=Command><code>"
            f"{e(candidate.shell_command or candidate.run_plan.command)}</code></td>"
            f"<td>{action}</td></tr>"
        )
    listing = ""
    if app:
        listing = (
            "<table><thead><tr><th>App</th><th>Source</th><th>Installed</th><th>Command</th>"
            f"<th></th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
            if rows
            else f"<p class=muted>Nothing found for {e(app)}.</p>"
        )
    body = (
        "<h1>Apps</h1>"
        + _search_form(app, search)
        + "".join(f"<p class=muted>{e(note)}</p>" for note in notes)
        + f"<p class=muted>Runs go to terminal {terminal_id}.</p>"
        + listing
    )
    return layout("Apps", body, section="apps", error=error)


def busy_page(search: Sequence[tuple[str, str]], candidate_id: str, info: SessionInfo) -> str:
    doing = info.command_history[-1] if info.command_history else "a program"
    body = (
        f"<h1>Terminal {info.id} is busy</h1><p>It is running <code>{e(doing)}</code>. "
        "A run there would wait in its queue until that program ends.</p><div class=row>"
        + button_form(
            url("/apps/run"),
            "Run in a new terminal",
            cls="primary",
            pairs=search,
            candidate_id=candidate_id,
            new_terminal="true",
        )
        + button_form(
            url("/apps/run"),
            f"Queue in terminal {info.id}",
            pairs=search,
            candidate_id=candidate_id,
            terminal_id=info.id,
            queue="true",
        )
        + f'<a class=button href="{url(f"/terminals/{info.id}")}">Open terminal {info.id}</a>'
        f'<a class=button href="{e(url_of("/apps", search))}">Back to results</a></div>'
    )
    return layout("Terminal busy", body, section="apps")


def run_failed_page(
    search: Sequence[tuple[str, str]], message: str, fixes: Sequence[str], *, status: int
) -> str:
    steps = "".join(f"<li><pre>{e(fix)}</pre></li>" for fix in fixes)
    fix_text = (
        f"<h2>How to fix it</h2><ol>{steps}</ol><p>Run that in a terminal, then run the app "
        "again.</p>"
        if steps
        else ""
    )
    body = (
        f"<h1>It cannot run yet</h1><p class=problem>{e(message)}</p>{fix_text}<div class=row>"
        + button_form(url("/terminals"), "Open a new terminal", cls="primary")
        + f'<a class=button href="{e(url_of("/apps", search))}">Back to results</a></div>'
    )
    return layout("Cannot run", body, section="apps")
