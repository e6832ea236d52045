"""The environment every child of hoodyd starts with: built on purpose, never the daemon's own.

supervisord (and through it the event listener and every program), terminal holders and their
shells, and the holder launcher all start from `child_environment`:

- from the daemon's environment only `PATH`, `LANG`, `LANGUAGE`, `LC_*` and `TZ`;
- `HOME`, `USER`, `LOGNAME` and `SHELL` of the account the child runs as (from the password
  database, not from the daemon's variables);
- the desktop's `DISPLAY`, `XAUTHORITY`, `WAYLAND_DISPLAY`, `XDG_RUNTIME_DIR` and
  `DBUS_SESSION_BUS_ADDRESS` only when the child runs as the daemon's own account (they are
  that account's); another account gets its own `/run/user/UID` when it has one;
- the variables named in `server.pass_env`, taken from the daemon's environment;
- then what the program or the request asked for.

No `HOODYD_*` variable of the daemon's environment (the token among them) ever reaches a child
through this module, whatever `pass_env` says.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Iterable, Mapping
from pathlib import Path

BASE_KEYS = ("PATH", "LANG", "LANGUAGE", "TZ")
BASE_PREFIXES = ("LC_",)
# the desktop session of the account the daemon runs as
DESKTOP_KEYS = (
    "DISPLAY",
    "XAUTHORITY",
    "WAYLAND_DISPLAY",
    "XDG_RUNTIME_DIR",
    "DBUS_SESSION_BUS_ADDRESS",
)
ACCOUNT_KEYS = ("HOME", "USER", "LOGNAME", "SHELL")
DAEMON_PREFIX = "HOODYD_"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def is_daemon_variable(name: str) -> bool:
    """Variables that configure hoodyd itself (and may hold its token): never passed on."""
    return name.startswith(DAEMON_PREFIX)


def account_of(user: str | None) -> pwd.struct_passwd | None:
    """The password entry of `user` (None: the daemon's own account), None when there is none."""
    try:
        return pwd.getpwuid(os.geteuid()) if user is None else pwd.getpwnam(user)
    except KeyError:
        return None


def child_environment(
    *,
    account: pwd.struct_passwd | None = None,
    pass_env: Iterable[str] = (),
    extra: Mapping[str, str] | None = None,
    source: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of a child running as `account` (None: the daemon's own account).

    `source` is the daemon's environment (default `os.environ`); `extra` is what the program
    or request asked for and is applied last."""
    daemon_env = os.environ if source is None else source
    env = {
        key: value
        for key, value in daemon_env.items()
        if key in BASE_KEYS or key.startswith(BASE_PREFIXES)
    }
    env.setdefault("PATH", DEFAULT_PATH)
    own_uid = os.geteuid()
    entry = account if account is not None else account_of(None)
    if entry is not None:
        env.update(
            HOME=entry.pw_dir or "/",
            USER=entry.pw_name,
            LOGNAME=entry.pw_name,
            SHELL=entry.pw_shell or "/bin/sh",
        )
    else:  # an uid without a password entry (a container's): what the daemon was given
        env.update({k: daemon_env[k] for k in ACCOUNT_KEYS if k in daemon_env})
    if entry is None or entry.pw_uid == own_uid:
        env.update({k: daemon_env[k] for k in DESKTOP_KEYS if k in daemon_env})
    else:
        runtime = Path(f"/run/user/{entry.pw_uid}")
        try:
            if runtime.is_dir() and runtime.stat().st_uid == entry.pw_uid:
                env["XDG_RUNTIME_DIR"] = str(runtime)
        except OSError:
            pass
    for name in pass_env:
        if name in daemon_env and not is_daemon_variable(name):
            env[name] = daemon_env[name]
    if extra:
        env.update(extra)
    return env
