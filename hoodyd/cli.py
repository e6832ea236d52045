"""Command line: `hoodyd serve` runs the daemon; other subcommands are clients of it."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from hoodyd import __version__, config, log
from hoodyd.errors import HoodydError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hoodyd", description=__doc__)
    parser.add_argument("--version", action="version", version=f"hoodyd {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the daemon")
    serve.add_argument("--config", help="TOML config file (default: $HOODYD_CONFIG)")
    serve.add_argument("--socket", help="Unix socket path to serve on")
    serve.add_argument("--tcp", metavar="HOST:PORT", help="also serve on TCP (bearer token)")
    serve.add_argument("--state-dir", help="state directory (store, supervisord, logs)")
    serve.set_defaults(func=_serve)

    stop = commands.add_parser(
        "stop-supervisor",
        help="stop the embedded supervisord (it outlives hoodyd) and every program it runs",
    )
    stop.add_argument("--config", help="TOML config file (default: $HOODYD_CONFIG)")
    stop.add_argument("--state-dir", help="state directory of the daemon")
    stop.add_argument("--grace", type=float, default=10.0, help="seconds before SIGKILL")
    stop.set_defaults(func=_stop_supervisor)

    attach = commands.add_parser("attach", help="attach this terminal to terminal session N")
    attach.add_argument("terminal_id", type=int, help="terminal id (1-65535)")
    attach.add_argument("--config", help="TOML config file (default: $HOODYD_CONFIG)")
    attach.add_argument("--socket", help="hoodyd's Unix socket")
    attach.add_argument("--detach-key", default="^]", help="key that detaches (default: ^])")
    attach.add_argument(
        "--replay", type=int, default=65536, help="bytes of recent output to show first"
    )
    attach.set_defaults(func=_attach)
    return parser


def _serve(args: argparse.Namespace) -> int:
    from hoodyd.daemon import serve

    cfg = config.load(
        args.config,
        overrides={
            ("server", "socket"): args.socket,
            ("server", "tcp"): args.tcp,
            ("state_dir",): args.state_dir,
        },
    )
    log.configure(cfg.log_level, cfg.log_format)
    asyncio.run(serve(cfg))
    return 0


def _attach(args: argparse.Namespace) -> int:
    from hoodyd.attach import attach, parse_detach_key

    cfg = config.load(args.config, overrides={("server", "socket"): args.socket})
    try:
        key = parse_detach_key(args.detach_key)
    except ValueError as exc:
        print(f"hoodyd: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(attach(cfg.server.socket, args.terminal_id, key, max(0, args.replay)))


def _stop_supervisor(args: argparse.Namespace) -> int:
    from pathlib import Path

    from hoodyd.programs.embedded import stop_embedded

    cfg = config.load(args.config, overrides={("state_dir",): args.state_dir})
    if cfg.supervisor.mode != "embedded":
        print("hoodyd: supervisord is external here; stop it the way it was started",
              file=sys.stderr)
        return 2
    if not stop_embedded(Path(cfg.state_dir), grace=args.grace):
        print(f"hoodyd: no embedded supervisord is running under {cfg.state_dir}")
        return 1
    print(f"hoodyd: stopped the embedded supervisord under {cfg.state_dir}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except HoodydError as exc:
        print(f"hoodyd: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code
