"""The command line's verbs: each one is a few API calls through `DaemonClient` and what they
print. Programs are named by name or id everywhere; `--json` prints the API's answer as it
came.

Every function takes the client and the parsed arguments and returns the exit code; errors
travel as `Refused`/`Unreachable` (and `UsageError`) to `hoodyd.cli`, which prints them.
"""

from __future__ import annotations

import argparse
import os
import pwd
import shlex
import sys
from collections.abc import Callable
from typing import Any

import msgspec

from hoodyd.client import messages, output
from hoodyd.client.flags import UsageError as UsageError  # raised by verbs; cli prints it
from hoodyd.client.flags import health_fields
from hoodyd.client.http import DaemonClient, QueryValue, Refused

DAEMON = "/api/v1/daemon"
TERMINAL = "/api/v1/terminal"
RUN = "/api/v1/run"


EXIT_REFUSED = 1


# ---- programs ---------------------------------------------------------------------------


def find_program(client: DaemonClient, ref: str) -> dict[str, Any]:
    """The program named `ref`, or with id `ref`."""
    if ref.isdigit():
        program: dict[str, Any] = client.call("GET", f"{DAEMON}/programs/{int(ref)}")["program"]
        return program
    for candidate in client.call("GET", f"{DAEMON}/programs")["programs"]:
        if candidate["name"] == ref:
            return dict(candidate)
    raise Refused(404, {"error": f"no program named {ref!r}", "reason": "PROGRAM_NOT_FOUND"})


ALL = "all"
# LSB exit codes of `status NAME...` (as systemctl and supervisorctl give them)
STATUS_NOT_RUNNING = 3
STATUS_UNKNOWN = 4


def select(
    programs: list[dict[str, Any]], refs: list[str]
) -> tuple[list[dict[str, Any]], list[str]]:
    """The programs `refs` name (by name, or by id when numeric; `all` is every program),
    each once in the order named, and the refs that name none."""
    ordered = sorted(programs, key=lambda p: p["id"])
    if ALL in refs:
        return ordered, []
    by_name = {p["name"]: p for p in ordered}
    by_id = {str(p["id"]): p for p in ordered}
    chosen: dict[int, dict[str, Any]] = {}
    unknown = []
    for ref in refs:
        program = by_name.get(ref) or (by_id.get(str(int(ref))) if ref.isdigit() else None)
        if program is None:
            unknown.append(ref)
        else:
            chosen.setdefault(program["id"], program)
    return list(chosen.values()), unknown


def _unknown(refs: list[str]) -> Refused:
    named = ", ".join(repr(ref) for ref in refs)
    plural = "s" if len(refs) > 1 else ""
    return Refused(
        404, {"error": f"no program{plural} named {named}", "reason": "PROGRAM_NOT_FOUND"}
    )


def resolve(client: DaemonClient, refs: list[str]) -> list[dict[str, Any]]:
    """The programs named; nothing is done when one of the names is unknown."""
    programs, unknown = select(client.call("GET", f"{DAEMON}/programs")["programs"], refs)
    if unknown:
        raise _unknown(unknown)
    return programs


def _is_running(program: dict[str, Any]) -> bool:
    current = program.get("status") or {}
    if not program.get("enabled", True):
        return False
    if program.get("port_range") is None:
        return current.get("status") == "RUNNING"
    return int(current.get("running_instances") or 0) > 0


def status(client: DaemonClient, args: argparse.Namespace) -> int:
    """The table (or `--json`); with names, the LSB exit code: 0 when every program named
    runs (a port range: one instance at least), 3 when one does not, 4 when a name is
    unknown (the known ones are still shown)."""
    colour = output.use_colour()
    answer = client.call("GET", f"{DAEMON}/programs", query={"include_status": True})
    programs, unknown = select(answer["programs"], args.programs or [ALL])
    if args.json:
        output.print_json({**answer, "programs": programs} if args.programs else answer)
    else:
        rows = [row for program in programs for row in _status_rows(program, colour)]
        if rows:
            print(output.table(("ID", "NAME", "STATE", "PID", "PORTS", "UPTIME"), rows, colour))
            tree = dependency_tree(answer["programs"], programs)
            if tree:
                print("\n" + "\n".join(tree))
        elif not unknown:
            print("no programs (add one with `hoodyd add NAME -- COMMAND`)")
    if unknown:
        print(f"hoodyd: {messages.explain(_unknown(unknown), args)}", file=sys.stderr)
        return STATUS_UNKNOWN
    if args.programs and not all(_is_running(program) for program in programs):
        return STATUS_NOT_RUNNING
    return 0


def dependency_tree(everyone: list[dict[str, Any]], shown: list[dict[str, Any]]) -> list[str]:
    """The start-order tree of the shown programs that have dependencies: each program with
    its health, then what it depends on (and on what condition), indented below it."""
    by_name = {program["name"]: program for program in everyone}
    needed = {d["program"] for p in everyone for d in p.get("depends_on") or []}
    roots = [p for p in shown if p.get("depends_on") and p["name"] not in needed]
    if not roots and any(p.get("depends_on") for p in shown):
        roots = [p for p in shown if p.get("depends_on")]
    lines: list[str] = ["dependencies:"] if roots else []

    def walk(name: str, prefix: str, trail: frozenset[str]) -> None:
        program = by_name.get(name)
        children = (program or {}).get("depends_on") or []
        for index, dependency in enumerate(children):
            last = index == len(children) - 1
            target = by_name.get(dependency["program"])
            health = target.get("health", "") if target else "missing"
            note = f" [{health}]" if health else ""
            lines.append(
                f"{prefix}{'└─' if last else '├─'} {dependency['program']}{note} "
                f"(needs {dependency.get('condition', 'ready')})"
            )
            if dependency["program"] not in trail:
                walk(
                    dependency["program"],
                    prefix + ("   " if last else "│  "),
                    trail | {dependency["program"]},
                )

    for root in roots:
        health = f" [{root['health']}]" if root.get("health") else ""
        lines.append(f"{root['name']}{health}")
        walk(root["name"], "", frozenset({root["name"]}))
    return lines


def _status_rows(program: dict[str, Any], colour: bool) -> list[list[str]]:
    current = program.get("status") or {}
    span = program.get("port_range")
    ident, name = str(program["id"]), program["name"]
    if span is None:
        state = current.get("status", "")
        if not program.get("enabled", True):
            state = "disabled"
        return [
            [
                ident,
                name,
                output.state(state, colour),
                _text(current.get("pid")),
                "",
                _text(current.get("uptime")),
            ]
        ]
    ports = f"{span['start']}-{span['end']}"
    instances = sorted(current.get("instances", []), key=lambda i: i.get("port", 0))
    running = current.get("running_instances", 0)
    summary = "disabled" if not program.get("enabled", True) else f"{running} running"
    rows = [[ident, name, output.state(summary, colour), "", ports, ""]]
    stopped = [i for i in instances if i["status"] == "STOPPED"]
    for instance in instances:
        if instance["status"] == "STOPPED":
            continue
        rows.append(
            [
                "",
                f"  {instance['instance_name']}",
                output.state(instance["status"], colour),
                _text(instance.get("pid")),
                _text(instance.get("port")),
                _text(instance.get("uptime")),
            ]
        )
    if stopped:  # stopped instances of a range say nothing one by one
        rows.append(
            [
                "",
                f"  {len(stopped)} stopped",
                output.state("STOPPED", colour),
                "",
                port_spans([int(i["port"]) for i in stopped]),
                "",
            ]
        )
    return rows


def port_spans(ports: list[int]) -> str:
    """`8780-8782,8785`: the ports as runs."""
    spans: list[list[int]] = []
    for port in sorted(ports):
        if spans and port == spans[-1][1] + 1:
            spans[-1][1] = port
        else:
            spans.append([port, port])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _ports_to_start(program: dict[str, Any], args: argparse.Namespace) -> list[int | None]:
    span = program.get("port_range")
    if span is None:
        if args.port is not None:
            raise UsageError(f"{program['name']} has no port range; --port does not apply")
        return [None]
    if args.port is not None:
        return [args.port]
    if args.all:
        return list(range(span["start"], span["end"] + 1))
    raise UsageError(
        f"{program['name']} is a port-range program ({span['start']}-{span['end']}): "
        "give --port P (or --all)"
    )


def _targets(client: DaemonClient, args: argparse.Namespace) -> list[dict[str, Any]]:
    """The programs a verb acts on. `all` leaves out, with a line saying so, what the verb
    cannot do to them: a disabled program (start, stop, restart) and, for `start` and
    `restart` without --all, a port-range program (its instances start per port)."""
    programs = resolve(client, args.programs)
    if ALL not in args.programs:
        return programs
    if getattr(args, "port", None) is not None:
        raise UsageError("--port names an instance of one program: give its name, not all")
    if args.verb not in ("start", "stop", "restart"):
        return programs
    chosen = []
    for program in programs:
        name = program["name"]
        if not program.get("enabled", True):
            if args.verb != "stop":
                note(args, f"{name}: disabled, left alone (`hoodyd enable {name}`)")
            continue
        if program.get("port_range") is not None and args.verb == "start" and not args.all:
            span = program["port_range"]
            note(
                args,
                f"{name}: port range {span['start']}-{span['end']} starts per port, left "
                f"alone (`hoodyd start {name} --port P`, or --all)",
            )
            continue
        chosen.append(program)
    return chosen


def note(args: argparse.Namespace, text: str) -> None:
    """A line for the person typing; on stderr when stdout carries `--json`."""
    print(text, file=sys.stderr if getattr(args, "json", False) else sys.stdout)


def _each(
    client: DaemonClient,
    args: argparse.Namespace,
    act: Callable[[dict[str, Any]], list[Any]],
    check: Callable[[dict[str, Any]], object] | None = None,
) -> int:
    """Run `act` on every program named; a refusal for one is printed (in the command
    line's terms) and the others still go. `--json` prints the answers, a refusal's error
    object among them. Exit 1 when one was refused."""
    answers: list[Any] = []
    refused = False
    targets = _targets(client, args)
    if check is not None:
        for program in targets:
            check(program)  # a usage error for one is found before anything is done
    for program in targets:
        try:
            answers.extend(act(program))
        except Refused as exc:
            refused = True
            answers.append(exc.body)
            print(f"hoodyd: {messages.explain(exc, args, program)}", file=sys.stderr)
    if args.json:
        output.print_json(answers[0] if len(answers) == 1 else answers)
    return EXIT_REFUSED if refused else 0


def start(client: DaemonClient, args: argparse.Namespace) -> int:
    def act(program: dict[str, Any]) -> list[Any]:
        return [_start_one(client, program, port, args) for port in _ports_to_start(program, args)]

    return _each(client, args, act, check=lambda program: _ports_to_start(program, args))


def _start_one(
    client: DaemonClient, program: dict[str, Any], port: int | None, args: argparse.Namespace
) -> Any:
    body: dict[str, Any] = {
        "wait": not args.no_wait,
        "timeout": args.timeout,
        "if_not_running": True,  # like systemctl: starting what runs is no error
    }
    if port is not None:
        body["port"] = port
        body["wait_for"] = args.wait_for
    answer = client.call(
        "POST", f"{DAEMON}/programs/{program['id']}/start", body=body, timeout=args.timeout + 30
    )
    if not args.json:
        shown = answer.get("instance") or answer.get("status") or {}
        name = shown.get("instance_name", program["name"])
        pid = f" (pid {shown['pid']})" if shown.get("pid") else ""
        if answer.get("already_running"):
            print(f"{name}: already running{pid}")
        elif port is not None and args.wait_for == "port" and not args.no_wait:
            print(f"{name}: listening on port {port}{pid}")
        elif shown.get("status") == "EXITED" and shown.get("exitstatus") is not None:
            # a one-shot job: a wait ends when it has run
            print(f"{name}: ran and exited {shown['exitstatus']}")
        else:
            print(f"{name}: {str(shown.get('status', 'STARTING')).lower()}{pid}")
    return answer


def _stop_body(program: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    if args.port is not None:
        return {"port": args.port}
    # a port-range program without --port: every instance, as `--all` says
    return {"all": True} if program.get("port_range") is not None else {}


def stop(client: DaemonClient, args: argparse.Namespace) -> int:
    def act(program: dict[str, Any]) -> list[Any]:
        answer = client.call(
            "POST",
            f"{DAEMON}/programs/{program['id']}/stop",
            body=_stop_body(program, args),
            timeout=None,
        )
        if args.json:
            pass
        elif answer.get("stopped"):
            print(f"stopped {', '.join(answer['stopped'])}")
        else:
            print(f"{program['name']}: was not running")
        return [answer]

    return _each(client, args, act)


def restart(client: DaemonClient, args: argparse.Namespace) -> int:
    """Stop, then start what was stopped (a port-range program: the instances that ran, or
    the one `--port` names)."""

    def act(program: dict[str, Any]) -> list[Any]:
        stopped = client.call(
            "POST",
            f"{DAEMON}/programs/{program['id']}/stop",
            body=_stop_body(program, args),
            timeout=None,
        ).get("stopped", [])
        if stopped and not args.json:
            print(f"stopped {', '.join(stopped)}")
        if program.get("port_range") is None:
            ports: list[int | None] = [None]
        elif args.port is not None:
            ports = [args.port]
        else:
            ports = [int(name.rsplit("_", 1)[1]) for name in stopped]
            if not ports and not args.json:
                print(f"{program['name']}: no instance was running; nothing to restart")
        return [_start_one(client, program, port, args) for port in ports]

    return _each(client, args, act)


def logs(client: DaemonClient, args: argparse.Namespace) -> int:
    program = find_program(client, args.program)
    query: dict[str, Any] = {
        "type": "stderr" if args.stderr else "stdout",
        "lines": args.lines,
        "port": args.port,
    }
    path = f"{DAEMON}/programs/{program['id']}/logs"
    if args.follow:
        for chunk in client.stream(path, query={**query, "follow": True}):
            sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
        return 0
    answer = client.call("GET", path, query=query)
    if args.json:
        output.print_json(answer)
    else:
        sys.stdout.write(answer.get("logs") or "")
    return 0


def _program_body(
    args: argparse.Namespace, *, adding: bool, current: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The add/edit body: on edit (`current`: the program as it is) only what the flags
    name."""
    body: dict[str, Any] = health_fields(args, current)
    if args.command:
        body["command"] = shlex.join(args.command)
    elif adding:
        raise UsageError("give the command after --: hoodyd add NAME [flags] -- CMD [ARG]...")
    if args.user or adding:
        body["user"] = args.user or pwd.getpwuid(os.geteuid()).pw_name
    if args.port_range is not None:
        body["port_range"] = _port_range(args.port_range)
    for flag, field in (
        ("boot", "boot"),
        ("lazy", "lazy_load"),
        ("idle_stop_after", "idle_stop_after"),
        ("port_param", "port_param"),
        ("directory", "directory"),
        ("description", "description"),
        ("autorestart", "autorestart"),
        ("delay", "delay_seconds"),
    ):
        value = getattr(args, flag)
        if value is not None:
            body[field] = value
    if args.enable is not None or adding:
        body["enabled"] = bool(args.enable)
    if args.env:
        body["environment"] = dict(_env_pair(item) for item in args.env)
    return body


def _port_range(text: str) -> dict[str, int]:
    first, sep, last = text.partition("-")
    if not (first.isdigit() and (not sep or last.isdigit())):
        raise UsageError(f"--port-range needs A-B (for example 8100-8109), got {text!r}")
    return {"start": int(first), "end": int(last or first)}


def _env_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise UsageError(f"--env needs KEY=VALUE, got {text!r}")
    return key, value


def add(client: DaemonClient, args: argparse.Namespace) -> int:
    body = {"name": args.name, **_program_body(args, adding=True)}
    answer = client.call("POST", f"{DAEMON}/programs/add", body=body)
    if args.json:
        output.print_json(answer)
    else:
        program = answer["program"]
        state = "enabled" if program.get("enabled") else "disabled (`hoodyd enable` registers it)"
        print(f"added {program['name']} (id {program['id']}), {state}")
    return 0


def edit(client: DaemonClient, args: argparse.Namespace) -> int:
    program = find_program(client, args.program)
    body = _program_body(args, adding=False, current=program)
    if args.name:
        body["name"] = args.name
    if not body:
        raise UsageError("nothing to change: give at least one flag (or -- CMD)")
    answer = client.call("POST", f"{DAEMON}/programs/edit/{program['id']}", body=body)
    if args.json:
        output.print_json(answer)
    else:
        print(f"edited {answer['program']['name']} (id {program['id']})")
    return 0


def remove(client: DaemonClient, args: argparse.Namespace) -> int:
    if ALL in args.programs and not args.yes:
        programs = resolve(client, args.programs)
        if not programs:
            print("no programs to remove")
            return 0
        names = ", ".join(p["name"] for p in programs)
        if not sys.stdin.isatty():
            raise UsageError(f"rm all removes every program ({names}): add --yes to confirm")
        answer = input(f"remove {len(programs)} program(s): {names}? [y/N] ").strip().lower()
        if answer not in ("y", "yes"):
            print("nothing removed")
            return 0
        args.yes = True

    def act(program: dict[str, Any]) -> list[Any]:
        answer = client.call(
            "POST",
            f"{DAEMON}/programs/remove/{program['id']}",
            body={"force": True} if args.force else None,
            timeout=None,
        )
        if not args.json:
            print(f"removed {program['name']} (id {program['id']})")
        return [answer]

    return _each(client, args, act)


def set_enabled(client: DaemonClient, args: argparse.Namespace) -> int:
    verb = "enable" if args.verb == "enable" else "disable"

    def act(program: dict[str, Any]) -> list[Any]:
        answer = client.call("POST", f"{DAEMON}/programs/{program['id']}/{verb}", timeout=None)
        if not args.json:
            print(f"{verb}d {program['name']} (id {program['id']})")
        return [answer]

    return _each(client, args, act)


# ---- events and health ------------------------------------------------------------------


def events(client: DaemonClient, args: argparse.Namespace) -> int:
    """Print each state change as it comes, until interrupted."""
    colour = output.use_colour()
    pending = b""
    following = False
    for chunk in client.stream(f"{DAEMON}/events"):
        if not following:  # the daemon's greeting: from now on no change is missed
            following = True
            print("hoodyd: following program events (Ctrl-C ends)", file=sys.stderr, flush=True)
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if not line.startswith(b"data: "):
                continue
            data = line.removeprefix(b"data: ")
            if args.json:
                sys.stdout.write(data.decode() + "\n")
            else:
                event = msgspec.json.decode(data)
                pid = f" pid {event['pid']}" if event.get("pid") else ""
                change = f"{event.get('from_state') or '?'} -> "
                print(
                    f"{event['timestamp']}  {event['instance_name']}  {change}"
                    f"{output.state(event['event'], colour)}{pid}"
                )
            sys.stdout.flush()
    return 0


def health(client: DaemonClient, args: argparse.Namespace) -> int:
    answers = {
        area: client.call("GET", f"/api/v1/{area}/health") for area in ("daemon", "terminal", "run")
    }
    if args.json:
        output.print_json(answers)
        return 0
    colour = output.use_colour()
    rows = [
        [area, output.paint(body["status"], "32", colour), str(body["pid"]), body["started"]]
        for area, body in answers.items()
    ]
    print(f"hoodyd on {client.target.describe()}")
    print(output.table(("AREA", "STATUS", "PID", "STARTED"), rows, colour))
    return 0


# ---- apps -------------------------------------------------------------------------------


def search(client: DaemonClient, args: argparse.Namespace) -> int:
    query = {"app": args.query, "limit": args.limit, "source": args.source}
    answer = client.call("GET", f"{RUN}/search", query=query)
    if args.json:
        output.print_json(answer)
        return 0
    _print_candidates(answer["candidates"])
    return 0


def _print_candidates(candidates: list[dict[str, Any]]) -> None:
    if not candidates:
        print("no candidates")
        return
    colour = output.use_colour()
    rows = [
        [
            str(number),
            candidate["candidate_id"],
            candidate.get("kind", ""),
            "yes" if candidate.get("installed") else "no",
            candidate.get("title", ""),
        ]
        for number, candidate in enumerate(candidates, start=1)
    ]
    print(output.table(("#", "CANDIDATE", "KIND", "INSTALLED", "TITLE"), rows, colour))


def run(client: DaemonClient, args: argparse.Namespace) -> int:
    query: dict[str, Any] = {
        "app": args.query,
        "dry_run": True if args.dry_run else None,
        "terminal_id": args.terminal,
        "source": args.source,
    }
    if args.first:
        query["pick"] = "first"
    elif args.pick is not None:
        query.update(pick="index", pick_index=args.pick - 1)
    elif args.candidate:
        query.update(pick="id", candidate_id=args.candidate)
    else:
        resolved = client.call("GET", f"{RUN}/run", query={**query, "pick": "ask"})
        candidates = resolved.get("candidates") or []
        if args.json and not sys.stdin.isatty():
            output.print_json(resolved)
            return 0
        _print_candidates(candidates)
        if not candidates:
            return 1
        choice = _ask(len(candidates))
        if choice is None:
            return 0
        query.update(pick="index", pick_index=choice - 1, set_id=resolved["set_id"])
    answer = client.call("GET", f"{RUN}/run", query=query)
    if args.json:
        output.print_json(answer)
        return 0
    command = answer.get("shell_command", "")
    handoff = answer.get("handoff") or {}
    if answer.get("status") == "scheduled":
        print(f"running in terminal {handoff.get('terminal_id')}: {command}")
        print(f"(watch it with `hoodyd attach {handoff.get('terminal_id')}`)")
    else:
        print(command)
    return 0


def _ask(count: int) -> int | None:
    """A number from 1 to `count` typed by the user; None to run nothing."""
    while True:
        try:
            text = input(f"run which? [1-{count}, q to quit] ").strip()
        except EOFError:
            return None
        if text.lower() in ("q", "quit", ""):
            return None
        if text.isdigit() and 1 <= int(text) <= count:
            return int(text)
        print(f"type a number from 1 to {count}", file=sys.stderr)


# ---- terminals ----------------------------------------------------------------------------


def term_ls(client: DaemonClient, args: argparse.Namespace) -> int:
    answer = client.call("GET", f"{TERMINAL}/sessions")
    if args.json:
        output.print_json(answer)
        return 0
    colour = output.use_colour()
    rows = [
        [
            session["terminal_id"],
            output.state(session["state"], colour),
            session["shell"],
            str(session["pid"]),
            session["cwd"],
            str(session["clients"]),
        ]
        for session in answer["data"]
    ]
    if not rows:
        print("no terminals (`hoodyd term new` creates one)")
        return 0
    print(output.table(("ID", "STATE", "SHELL", "PID", "CWD", "CLIENTS"), rows, colour))
    return 0


def session_query(args: argparse.Namespace) -> dict[str, QueryValue]:
    """The `--shell`, `--cwd`, `--user`, `--env` of a terminal created on first use, as query
    parameters; a relative `--cwd` is taken from here, as the one typing it means."""
    for item in args.env:
        if not item.partition("=")[0] or "=" not in item:
            raise UsageError(f"--env takes KEY=VALUE, got {item!r}")
    return {
        "shell": args.shell,
        "cwd": os.path.abspath(args.cwd) if args.cwd else None,
        "user": args.user,
        "env": list(args.env),
    }


# terminal numbers a person picks; 40000-65535 are the daemon's short-lived sessions
TERMINAL_IDS = range(1, 40000)


def term_new(client: DaemonClient, args: argparse.Namespace) -> int:
    """Create terminal N, or without N the lowest free number (printed)."""
    body: dict[str, Any] = {}
    options = session_query(args)
    body.update({key: value for key, value in options.items() if value and key != "env"})
    if args.env:
        body["env"] = dict(item.split("=", 1) for item in args.env)
    if args.terminal_id is not None:
        answer = client.call(
            "POST", f"{TERMINAL}/create", body={**body, "terminal_id": args.terminal_id}
        )
    else:
        answer = _create_free(client, body)
    if args.json:
        output.print_json(answer)
    else:
        made = "created" if answer.get("created") else "already exists:"
        print(f"{made} terminal {answer['terminal_id']}")
    return 0


def _create_free(client: DaemonClient, body: dict[str, Any]) -> Any:
    """Create the lowest-numbered terminal nobody uses; one taken meanwhile by another
    caller (the answer says it was not created) moves on to the next."""
    taken = {
        int(session["terminal_id"])
        for session in client.call("GET", f"{TERMINAL}/sessions")["data"]
        if str(session["terminal_id"]).isdigit()
    }
    for number in TERMINAL_IDS:
        if number in taken:
            continue
        answer = client.call("POST", f"{TERMINAL}/create", body={**body, "terminal_id": number})
        if answer.get("created"):
            return answer
        taken.add(number)
    raise Refused(409, {"error": "no free terminal number", "reason": "NO_FREE_TERMINAL_ID"})


def term_exec(client: DaemonClient, args: argparse.Namespace) -> int:
    """Run the command in the terminal's shell; print its output; exit with its exit code."""
    if not args.command:
        raise UsageError("give the command after --: hoodyd term exec N -- CMD [ARG]...")
    command = args.command[0] if len(args.command) == 1 else shlex.join(args.command)
    answer = client.call(
        "POST",
        f"{TERMINAL}/execute",
        query={"terminal_id": args.terminal_id, **session_query(args)},
        body={"command": command, "wait": True, "timeout": args.timeout},
        timeout=None,
    )
    if args.json:
        output.print_json(answer)
    else:
        sys.stdout.write(answer.get("stdout", ""))
        sys.stdout.flush()
    if answer.get("timed_out"):
        print(
            f"hoodyd: still running after {args.timeout}s (command {answer.get('command_id')})",
            file=sys.stderr,
        )
        return 124
    code = answer.get("exit_code")
    return int(code) if isinstance(code, int) else 1


def term_kill(client: DaemonClient, args: argparse.Namespace) -> int:
    answer = client.call("DELETE", f"{TERMINAL}/{args.terminal_id}")
    if args.json:
        output.print_json(answer)
    else:
        print(f"removed terminal {args.terminal_id}")
    return 0
