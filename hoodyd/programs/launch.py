"""The exec helper supervisord runs in front of a program that needs one: it waits the
program's `delay_seconds`, puts back the environment values that supervisord's config syntax
cannot carry, and replaces itself with the program's argv. No shell is involved, so the argv
the program gets is exactly the one hoodyd rendered.

    python -I -m hoodyd.programs.launch DELAY -- ARGV...

The values supervisord cannot carry arrive base64-encoded (as JSON) in one environment
variable that this helper removes. The program gets the environment supervisord gave this
helper, read from /proc/self/environ: the interpreter edits its own `os.environ` at start-up
(C-locale coercion sets LC_CTYPE), and that must not leak into the program.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time

ENVIRONMENT_VARIABLE = "HOODYD_LAUNCH_ENVIRONMENT"
NOT_FOUND = 127
NOT_EXECUTABLE = 126


def launcher_argv(delay: int, argv: list[str]) -> list[str]:
    """The argv supervisord runs instead of `argv`. `-I` keeps the program's directory and
    PYTHON* variables from changing which helper runs."""
    return [sys.executable, "-I", "-m", "hoodyd.programs.launch", str(delay), "--", *argv]


def encode_environment(values: dict[str, str]) -> str:
    return base64.b64encode(json.dumps(values).encode()).decode("ascii")


def decode_environment(value: bytes) -> dict[str, str]:
    decoded = json.loads(base64.b64decode(value, validate=True))
    if not isinstance(decoded, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in decoded.items()
    ):
        raise ValueError("not an object of strings")
    return decoded


def startup_environment() -> dict[bytes, bytes]:
    """The environment this process was started with, before the interpreter touched it."""
    try:
        with open("/proc/self/environ", "rb") as handle:
            entries = handle.read().split(b"\0")
    except OSError:
        return dict(os.environb)
    environment = {}
    for entry in entries:
        key, sep, value = entry.partition(b"=")
        if sep:
            environment[key] = value
    return environment


def main(args: list[str]) -> int:
    if len(args) < 3 or args[1] != "--" or not args[0].isdigit():
        print("usage: python -m hoodyd.programs.launch DELAY -- ARGV...", file=sys.stderr)
        return 2
    delay, argv = int(args[0]), args[2:]
    environment = startup_environment()
    carried = environment.pop(ENVIRONMENT_VARIABLE.encode(), None)
    if carried is not None:
        try:
            values = decode_environment(carried)
        except ValueError as exc:
            print(f"hoodyd launch: unreadable {ENVIRONMENT_VARIABLE}: {exc}", file=sys.stderr)
            return 2
        environment.update({os.fsencode(k): os.fsencode(v) for k, v in values.items()})
    if delay:
        time.sleep(delay)
    # signals are left as they are: the interpreter ignores SIGPIPE and SIGXFSZ, and so does
    # supervisord (a Python process too), whose programs inherit that across exec; a program
    # behind this helper gets the same dispositions as one supervisord starts itself
    try:
        os.execvpe(argv[0], argv, environment)
    except FileNotFoundError:
        print(f"hoodyd launch: {argv[0]}: command not found", file=sys.stderr)
        return NOT_FOUND
    except OSError as exc:
        print(f"hoodyd launch: {argv[0]}: {exc.strerror}", file=sys.stderr)
        return NOT_EXECUTABLE


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
