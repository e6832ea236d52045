"""Command line: `hoodyd serve` runs the daemon; every other verb is a client of its API.

Exit codes: 0 ok, 1 the daemon refused (its error on stderr), 2 usage, 3 no daemon answered
(the message names the socket or URL tried). `term exec` exits with the command's own code.
The socket is found exactly as `serve` binds it: `--socket`, then `HOODYD_SOCKET`, then the
config file's `server.socket`, then the default; `--url http://HOST:PORT` (or `HOODYD_URL`)
talks TCP with the token of `HOODYD_TOKEN`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Sequence

from hoodyd import __version__, config, log
from hoodyd.client import commands
from hoodyd.client.http import DaemonClient, Refused, Target, Unreachable
from hoodyd.errors import HoodydError

EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3

Verb = Callable[[DaemonClient, argparse.Namespace], int]


def _connection_options() -> argparse.ArgumentParser:
    """Options every client verb takes: where the daemon is."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("connection")
    group.add_argument(
        "--socket", help="hoodyd's Unix socket (default: as `hoodyd serve` binds it)"
    )
    group.add_argument(
        "--url", help="http://HOST:PORT of a daemon serving TCP (token from HOODYD_TOKEN)"
    )
    group.add_argument("--config", help="TOML config file (default: $HOODYD_CONFIG)")
    return parent


def _session_options() -> argparse.ArgumentParser:
    """Options of a terminal created by this use (ignored when it exists)."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("a terminal created by this use (ignored if it exists)")
    group.add_argument("--shell", choices=("bash", "zsh", "fish", "sh"), help="its shell")
    group.add_argument("--cwd", metavar="DIR", help="its working directory")
    group.add_argument("--user", metavar="NAME", help="the account its shell runs as")
    group.add_argument(
        "--env", action="append", default=[], metavar="K=V", help="environment (repeat)"
    )
    return parent


def _clean_up_verb(
    verbs: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    text: str,
    *,
    grace: float,
) -> argparse.ArgumentParser:
    """A verb that ends what outlived hoodyd in a state dir."""
    verb = verbs.add_parser(name, help=text)
    verb.add_argument("--config", help="TOML config file (default: $HOODYD_CONFIG)")
    verb.add_argument("--state-dir", help="state directory of the daemon")
    verb.add_argument("--grace", type=float, default=grace, help="seconds before SIGKILL")
    return verb


def _json_option() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--json", action="store_true", help="print the API's JSON answer")
    return parent


def _program_flags(parser: argparse.ArgumentParser, *, adding: bool) -> None:
    parser.add_argument("--user", help="run as this user (default: you)" if adding else None)
    parser.add_argument("--port-range", metavar="A-B", help="one instance per port, on demand")
    parser.add_argument("--port-param", help="how the port is passed (default --port)")
    parser.add_argument(
        "--enable",
        action="store_const",
        const=True,
        default=None,
        help="register with supervisord now" if adding else "register with supervisord",
    )
    if not adding:
        parser.add_argument(
            "--disable",
            dest="enable",
            action="store_const",
            const=False,
            help="unregister from supervisord",
        )
    parser.add_argument(
        "--boot", action="store_const", const=True, default=None, help="start with supervisord"
    )
    parser.add_argument(
        "--lazy",
        action="store_const",
        const=True,
        default=None,
        help="started on demand (lazy_load)",
    )
    parser.add_argument(
        "--idle-stop-after",
        type=int,
        metavar="S",
        help="stop an instance nobody asked for in S seconds (port ranges)",
    )
    parser.add_argument("--env", action="append", metavar="K=V", help="environment (repeat)")
    parser.add_argument("--directory", help="working directory")
    parser.add_argument("--description")
    parser.add_argument("--autorestart", choices=("true", "false", "unexpected"))
    parser.add_argument("--delay", type=int, metavar="S", help="seconds to wait before starting")
    _health_flags(parser, adding=adding)
    parser.set_defaults(command=[])  # what follows `--`


def _health_flags(parser: argparse.ArgumentParser, *, adding: bool) -> None:
    """Dependencies and probes. Values are read (and refused, naming the flag) by
    `commands.program_body`, so a bad one is one line and exit 2, never argparse's usage."""
    group = parser.add_argument_group("dependencies and probes")
    group.add_argument(
        "--depends-on",
        action="append",
        metavar="NAME[:COND]",
        help="start NAME first and wait until it is COND: ready (default), started or "
        "exited_ok (repeat; on edit, replaces the list)",
    )
    probe = "port:N, port:$PORT, http://127.0.0.1:N/PATH or exec:'CMD ARG...' (no shell)"
    group.add_argument(
        "--readiness", metavar="CHECK", help=f"when it counts as ready: {probe}"
    )
    group.add_argument(
        "--liveness", metavar="CHECK", help="restart it when this fails repeatedly (as above)"
    )
    group.add_argument(
        "--probe-interval-ms", metavar="MS", help="between checks (100-3600000, default 1000)"
    )
    group.add_argument(
        "--probe-timeout-ms", metavar="MS", help="per check (10-300000, default 1000)"
    )
    group.add_argument(
        "--liveness-failure-threshold",
        metavar="N",
        help="failed liveness checks in a row that restart it (1-100, default 3)",
    )
    group.add_argument(
        "--liveness-initial-delay-ms",
        metavar="MS",
        help="no liveness check this long after it starts (default 0)",
    )
    if not adding:
        for flag, what in (
            ("--no-depends-on", "depend on nothing"),
            ("--no-readiness", "drop the readiness probe"),
            ("--no-liveness", "drop the liveness probe"),
        ):
            group.add_argument(flag, action="store_true", help=what)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hoodyd", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"hoodyd {__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    conn, as_json, session = _connection_options(), _json_option(), _session_options()
    client = (conn, as_json)

    serve = verbs.add_parser("serve", help="run the daemon")
    serve.add_argument("--config", help="TOML config file (default: $HOODYD_CONFIG)")
    serve.add_argument("--socket", help="Unix socket path to serve on")
    serve.add_argument("--tcp", metavar="HOST:PORT", help="also serve on TCP (bearer token)")
    serve.add_argument("--state-dir", help="state directory (store, supervisord, logs)")
    serve.set_defaults(func=_serve)

    status = verbs.add_parser(
        "status",
        parents=client,
        help="programs and their processes; with names, exit 0 if all run, 3 if one does "
        "not, 4 if one is unknown",
    )
    status.add_argument("programs", nargs="*", metavar="NAME|ID|all")
    status.set_defaults(verb_func=commands.status)

    for name, func, text in (
        ("start", commands.start, "start programs (one port instance with --port)"),
        ("stop", commands.stop, "stop programs (every instance of a port range by default)"),
        ("restart", commands.restart, "stop, then start again"),
    ):
        verb = verbs.add_parser(name, parents=client, help=text)
        verb.add_argument("programs", nargs="+", metavar="NAME|ID|all")
        verb.add_argument("--port", type=int, help="the port instance")
        verb.add_argument("--all", action="store_true", help="every port of the range")
        verb.add_argument("--no-wait", action="store_true", help="do not wait until RUNNING")
        verb.add_argument(
            "--timeout",
            type=int,
            default=30,
            metavar="S",
            help="seconds to wait (1-300, default 30)",
        )
        verb.add_argument(
            "--wait-for",
            choices=("running", "port"),
            default="running",
            help="port: wait until the instance accepts TCP connections",
        )
        verb.set_defaults(verb_func=func)

    logs = verbs.add_parser("logs", parents=client, help="a program's stdout (or stderr)")
    logs.add_argument("program", metavar="NAME|ID")
    logs.add_argument("--stderr", action="store_true", help="stderr instead of stdout")
    logs.add_argument("-n", "--lines", type=int, default=10, metavar="N", help="(default 10)")
    logs.add_argument("-f", "--follow", action="store_true", help="then print new lines")
    logs.add_argument("--port", type=int, help="the port instance (port-range programs)")
    logs.set_defaults(verb_func=commands.logs)

    add = verbs.add_parser("add", parents=client, help="add a program: add NAME -- CMD [ARG]...")
    add.add_argument("name", metavar="NAME")
    _program_flags(add, adding=True)
    add.set_defaults(verb_func=commands.add)

    edit = verbs.add_parser("edit", parents=client, help="change a program's fields")
    edit.add_argument("program", metavar="NAME|ID")
    edit.add_argument("--name", help="rename")
    _program_flags(edit, adding=False)
    edit.set_defaults(verb_func=commands.edit)

    for name, func, text in (
        ("rm", commands.remove, "remove programs (stopping them); `rm all` asks first"),
        ("enable", commands.set_enabled, "register programs with supervisord"),
        ("disable", commands.set_enabled, "stop and unregister programs"),
    ):
        verb = verbs.add_parser(name, parents=client, help=text)
        verb.add_argument("programs", nargs="+", metavar="NAME|ID|all")
        if name == "rm":
            verb.add_argument("--yes", action="store_true", help="do not ask before `rm all`")
            verb.add_argument(
                "--force", action="store_true", help="remove it even if others depend on it"
            )
        verb.set_defaults(verb_func=func)

    search = verbs.add_parser("search", parents=client, help="find runnable apps")
    search.add_argument("query", metavar="QUERY")
    search.add_argument("-n", "--limit", type=int, default=10, metavar="N")
    search.add_argument("--source", metavar="S", help="only this source (id or provider)")
    search.set_defaults(verb_func=commands.search)

    run = verbs.add_parser("run", parents=client, help="pick an app and run it in a terminal")
    run.add_argument("query", metavar="QUERY")
    pick = run.add_mutually_exclusive_group()
    pick.add_argument("--first", action="store_true", help="the best match, without asking")
    pick.add_argument("--pick", type=int, metavar="N", help="the N-th candidate (from 1)")
    pick.add_argument("--id", dest="candidate", metavar="CANDIDATE", help="by candidate id")
    run.add_argument("--dry-run", action="store_true", help="print the command; run nothing")
    run.add_argument("-t", "--terminal", type=int, metavar="TERMINAL", help="terminal id")
    run.add_argument("--source", metavar="S", help="only this source")
    run.set_defaults(verb_func=commands.run)

    term = verbs.add_parser("term", help="terminal sessions")
    term_verbs = term.add_subparsers(dest="term_verb", required=True, metavar="VERB")
    ls = term_verbs.add_parser("ls", parents=client, help="list terminals")
    ls.set_defaults(verb_func=commands.term_ls)
    new = term_verbs.add_parser(
        "new",
        parents=(*client, session),
        help="create terminal N (without N: the lowest free number, printed)",
    )
    new.add_argument("terminal_id", nargs="?", type=int, metavar="N")
    new.set_defaults(verb_func=commands.term_new)
    execute = term_verbs.add_parser(
        "exec",
        parents=(*client, session),
        help="run a command in terminal N; exit with its exit code",
    )
    execute.add_argument("terminal_id", type=int, metavar="N")
    execute.add_argument(
        "--timeout",
        type=float,
        default=0,
        metavar="S",
        help="give up waiting after S seconds (exit 124; default: wait)",
    )
    execute.add_argument("command", nargs="*", help="-- CMD [ARG]...")
    execute.set_defaults(verb_func=commands.term_exec)
    kill = term_verbs.add_parser("kill", parents=client, help="end terminal N")
    kill.add_argument("terminal_id", type=int, metavar="N")
    kill.set_defaults(verb_func=commands.term_kill)

    attach = verbs.add_parser(
        "attach", parents=(conn, session), help="attach this terminal to session N"
    )
    attach.add_argument("terminal_id", type=int, help="terminal id (1-65535)")
    attach.add_argument("--detach-key", default="^]", help="key that detaches (default: ^])")
    attach.add_argument(
        "--replay", type=int, default=65536, help="bytes of recent output to show first"
    )
    attach.set_defaults(func=_attach)

    events = verbs.add_parser("events", parents=client, help="follow program state changes")
    events.set_defaults(verb_func=commands.events)
    health = verbs.add_parser("health", parents=client, help="is the daemon up?")
    health.set_defaults(verb_func=commands.health)
    where = verbs.add_parser("socket", parents=(conn,), help="print the socket the verbs use")
    where.set_defaults(func=_print_socket)

    completion = verbs.add_parser("completion", help="shell completion script")
    completion.add_argument("shell", choices=("bash", "zsh", "fish"))
    completion.set_defaults(func=_completion)

    units = verbs.add_parser("install-units", help="write systemd units for this installation")
    units.add_argument("--user", action="store_true", help="a user unit (default: system)")
    units.add_argument("--prefix", metavar="DIR", help="write under DIR (default: /)")
    units.add_argument("--config", help="config file the service reads")
    units.set_defaults(func=_install_units)

    stop = _clean_up_verb(
        verbs,
        "stop-supervisor",
        "stop the embedded supervisord (it outlives hoodyd) and every program it runs",
        grace=10.0,
    )
    stop.set_defaults(func=_stop_supervisor)
    held = _clean_up_verb(
        verbs,
        "stop-terminals",
        "end the terminal sessions (holders and shells) that outlived a stopped hoodyd",
        grace=2.0,
    )
    held.add_argument("--list", action="store_true", help="only list them")
    held.set_defaults(func=_stop_terminals)
    down = _clean_up_verb(
        verbs,
        "down",
        "end everything of a state dir: the daemon, then supervisord and its programs, then "
        "the terminal sessions",
        grace=10.0,
    )
    down.set_defaults(func=_down)
    return parser


def target_of(args: argparse.Namespace) -> Target:
    """Where the client verbs reach the daemon: as `serve` would bind it, or `--url`."""
    cfg = config.load(args.config, overrides={("server", "socket"): args.socket})
    url = args.url or os.environ.get("HOODYD_URL", "")
    if url:
        return Target(url=url.rstrip("/"), token=cfg.server.token)
    return Target(socket=cfg.server.socket)


def _serve(args: argparse.Namespace) -> int:
    from hoodyd.daemon import run

    try:
        cfg = config.load(
            args.config,
            overrides={
                ("server", "socket"): args.socket,
                ("server", "tcp"): args.tcp,
                ("state_dir",): args.state_dir,
            },
        )
    except HoodydError as exc:  # a start-up error like any other: one line, exit 1
        print(f"hoodyd: {exc.message}", file=sys.stderr)
        return EXIT_REFUSED
    log.configure(cfg.log_level, cfg.log_format)
    run(cfg)  # within shutdown_timeout of a stop signal, whatever is left running
    return 0


def _attach(args: argparse.Namespace) -> int:
    from hoodyd.attach import attach, parse_detach_key
    from hoodyd.client.commands import UsageError, session_query

    target = target_of(args)
    if target.url:
        print("hoodyd: attach works on the Unix socket only", file=sys.stderr)
        return EXIT_USAGE
    if not 1 <= args.terminal_id <= 65535:
        print(f"hoodyd: terminal id {args.terminal_id} is out of range (1-65535)", file=sys.stderr)
        return EXIT_USAGE
    try:
        key = parse_detach_key(args.detach_key)
        session = session_query(args)
    except (ValueError, UsageError) as exc:
        print(f"hoodyd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not sys.stdin.isatty():
        print(
            "hoodyd: attach needs a terminal, and stdin is not one; to run a command in a "
            f"session from a script use `hoodyd term exec {args.terminal_id} -- COMMAND`",
            file=sys.stderr,
        )
        return EXIT_USAGE
    return asyncio.run(
        attach(target.socket, args.terminal_id, key, max(0, args.replay), session=session)
    )


def _print_socket(args: argparse.Namespace) -> int:
    print(target_of(args).describe())
    return 0


def _completion(args: argparse.Namespace) -> int:
    from hoodyd.client.completion import script

    sys.stdout.write(script(build_parser(), args.shell))
    return 0


def _install_units(args: argparse.Namespace) -> int:
    from hoodyd.units import install_units

    return install_units(user=args.user, prefix=args.prefix, config_path=args.config)


def _stop_supervisor(args: argparse.Namespace) -> int:
    from pathlib import Path

    from hoodyd.programs.embedded import stop_embedded

    cfg = config.load(args.config, overrides={("state_dir",): args.state_dir})
    if cfg.supervisor.mode != "embedded":
        print(
            "hoodyd: supervisord is external here; stop it the way it was started", file=sys.stderr
        )
        return 2
    if not stop_embedded(Path(cfg.state_dir), grace=args.grace):
        print(f"hoodyd: no embedded supervisord is running under {cfg.state_dir}")
        return 1
    print(f"hoodyd: stopped the embedded supervisord under {cfg.state_dir}")
    return 0


def _down(args: argparse.Namespace) -> int:
    """The daemon (SIGTERM to the holder of STATE/lock; it drains within its shutdown
    timeout), then the embedded supervisord and its programs, then every terminal holder:
    with the daemon gone none of them is adopted or started again."""
    from pathlib import Path

    from hoodyd.private import AlreadyRunning, end_lock_holder
    from hoodyd.programs.embedded import stop_embedded
    from hoodyd.terminals.cleanup import find_holders, stop_holders

    cfg = config.load(args.config, overrides={("state_dir",): args.state_dir})
    state_dir = Path(cfg.state_dir)
    if state_dir.exists() and not os.access(state_dir, os.R_OK | os.X_OK):
        print(f"hoodyd: {state_dir} is not yours to read: run this as its owner", file=sys.stderr)
        return EXIT_REFUSED
    done = []
    try:
        pid = end_lock_holder(state_dir / "lock", timeout=cfg.server.shutdown_timeout + args.grace)
    except AlreadyRunning as exc:
        print(f"hoodyd: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    if pid is not None:
        done.append(f"the daemon (pid {pid})")
    if cfg.supervisor.mode == "embedded":
        if stop_embedded(state_dir, grace=args.grace):
            done.append("the embedded supervisord and its programs")
    else:
        print("hoodyd: supervisord is external; its programs keep running")
    holders = find_holders(state_dir)  # a program's holders too: its supervisord is gone
    if cfg.supervisor.mode != "embedded":
        holders = [held for held in holders if not held.program]
    if holders:
        stop_holders(holders, args.grace)
        done.append(f"{len(holders)} terminal session(s)")
    if not done:
        print(f"hoodyd: nothing was running under {state_dir}")
    else:
        print(f"hoodyd: stopped {', '.join(done)} under {state_dir}")
    return 0


def _stop_terminals(args: argparse.Namespace) -> int:
    from pathlib import Path

    from hoodyd.programs.embedded import refuse_while_serving
    from hoodyd.terminals.cleanup import find_holders, stop_holders

    cfg = config.load(args.config, overrides={("state_dir",): args.state_dir})
    state_dir = Path(cfg.state_dir)
    holders = find_holders(state_dir)
    sessions = [held for held in holders if not held.program]
    for held in holders:
        owner = "program (supervisord's)" if held.program else "session"
        print(f"terminal {held.terminal_id}\tpid {held.pid}\t{owner}")
    if args.list:
        return 0
    if not sessions:
        print(f"hoodyd: no terminal sessions are held under {state_dir}")
        return 1
    refuse_while_serving(state_dir, "would adopt them again")
    stop_holders(sessions, args.grace)
    print(f"hoodyd: ended {len(sessions)} terminal session(s) under {state_dir}")
    return 0


def _run_verb(verb: Verb, args: argparse.Namespace) -> int:
    from hoodyd.client.messages import explain
    from hoodyd.client.output import print_json

    client = DaemonClient(target_of(args))
    try:
        return verb(client, args)
    except Refused as exc:
        if getattr(args, "json", False):
            print_json(exc.body)  # the error object, as the API answered it
        print(f"hoodyd: {explain(exc, args)}", file=sys.stderr)
        return EXIT_REFUSED
    except Unreachable as exc:
        print(f"hoodyd: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except commands.UsageError as exc:
        print(f"hoodyd: {exc}", file=sys.stderr)
        return EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    # a command after `--` (add, edit, term exec) is the program's own argv, never flags
    tail: list[str] | None = None
    if "--" in words:
        cut = words.index("--")
        words, tail = words[:cut], words[cut + 1 :]
    parser = build_parser()
    args = parser.parse_args(words)
    if tail is not None:
        if not hasattr(args, "command"):
            parser.error(f"unexpected arguments after --: {' '.join(tail)}")
        args.command = tail
    try:
        verb = getattr(args, "verb_func", None)
        code = _run_verb(verb, args) if verb is not None else args.func(args)
    except HoodydError as exc:
        print(f"hoodyd: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `hoodyd logs -f | head`
        sys.stderr.close()
        return 0
    return code
