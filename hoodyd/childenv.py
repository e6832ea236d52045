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

The catalogue tools the run area's sources run as the daemon's own account (`apt-get`,
`apt-helper`, `dpkg`, `nix`, `nix-env`, `dpkg-deb`) start from the same base
(`tool_environment`) plus only the variables that tool reads for its own settings (`TOOL_KEYS`):
never the daemon's other variables (a `GITHUB_TOKEN` a GitHub source reads, cloud
credentials).

Open files: the daemon raises its own soft `RLIMIT_NOFILE` to the hard limit (every connection
is a descriptor) and remembers the soft limit it was started with (`remember_open_file_limit`).
A child started through `with_open_file_limit` gets that soft limit back before its program
runs, the way a login or a systemd unit would start it: programs using select() break past
descriptor 1023. The argv is put behind util-linux `prlimit --nofile=SOFT: --` (or, without
prlimit, a few lines of Python that do the same), which sets the limit in the child's own
process and then execs the program: nothing runs in the forked child before exec (no
`preexec_fn`, unsafe beside the daemon's threads) and nothing the program forks or opens can
come before the limit.
"""

from __future__ import annotations

import errno
import functools
import os
import pwd
import resource
import shutil
import sys
from collections.abc import Iterable, Mapping, Sequence
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
# proxies, for the tools that download (nix fetches flakes and tarballs through libcurl, which
# reads them; its manual documents them): without them a sync behind a proxy cannot work
PROXY_KEYS = tuple(
    name
    for base in ("http_proxy", "https_proxy", "ftp_proxy", "all_proxy", "no_proxy")
    for name in (base, base.upper())
)
# what each catalogue tool reads from its environment for its own settings
TOOL_KEYS: dict[str, tuple[str, ...]] = {
    # apt-get indextargets, apt-helper cat-file, dpkg --print-architecture: read local files
    "apt": ("APT_CONFIG", "DPKG_ADMINDIR", "DPKG_ROOT", "TMPDIR"),
    # nix search / nix-env -qa: the store or daemon, its config, certificates and downloads
    "nix": (
        "NIX_PATH",
        "NIX_REMOTE",
        "NIX_CONF_DIR",
        "NIX_CONFIG",
        "NIX_USER_CONF_FILES",
        "NIX_STORE_DIR",
        "NIX_STATE_DIR",
        "NIX_LOG_DIR",
        "NIX_DATA_DIR",
        "NIX_DAEMON_SOCKET_PATH",
        "NIX_PROFILES",
        "NIX_IGNORE_SYMLINK_STORE",
        "NIX_SSL_CERT_FILE",
        "SSL_CERT_FILE",
        "XDG_CONFIG_HOME",
        "XDG_CONFIG_DIRS",
        "XDG_CACHE_HOME",
        "XDG_DATA_HOME",
        "XDG_STATE_HOME",
        "TMPDIR",
        *PROXY_KEYS,
    ),
    # dpkg-deb -x: unpacks a local file
    "dpkg-deb": ("TMPDIR",),
}


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


def tool_environment(
    tool: str,
    *,
    pass_env: Iterable[str] = (),
    source: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of catalogue tool `tool` (a `TOOL_KEYS` name) run as the daemon's own
    account: `child_environment`'s base and `pass_env`, plus the tool's own settings from
    `source` (default `os.environ`); never a HOODYD_* variable."""
    daemon_env = os.environ if source is None else source
    env = child_environment(pass_env=pass_env, source=daemon_env)
    env.update(
        {
            key: daemon_env[key]
            for key in TOOL_KEYS[tool]
            if key in daemon_env and not is_daemon_variable(key)
        }
    )
    return env


# the soft open-file limit the daemon was started with, once it raised its own
_started_open_files: int | None = None

# set the soft limit, keep the hard one, then exec ARGV with the environment this process was
# started with (the interpreter may add LC_CTYPE to its own os.environ at start-up)
_SET_LIMIT = (
    "import os,resource,sys\n"
    "n=resource.RLIMIT_NOFILE\n"
    "resource.setrlimit(n,(int(sys.argv[1]),resource.getrlimit(n)[1]))\n"
    "e=dict(x.split(b'=',1) for x in open('/proc/self/environ','rb').read().split(b'\\0')"
    " if b'=' in x)\n"
    "a=sys.argv[3:]\n"
    "try:\n"
    " os.execvpe(a[0],a,e)\n"
    "except OSError as x:\n"
    " sys.stderr.write(f'{a[0]}: {x.strerror}\\n')\n"
    " sys.exit(127 if isinstance(x,FileNotFoundError) else 126)\n"
)


def remember_open_file_limit(soft: int) -> None:
    """Record the soft open-file limit the daemon was started with, before it raises its
    own: `with_open_file_limit` gives it back to children."""
    global _started_open_files
    _started_open_files = soft


def child_open_file_limit() -> int | None:
    """The soft open-file limit children start with, when it differs from the daemon's own
    (None: they inherit the daemon's)."""
    if _started_open_files is None:
        return None
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == _started_open_files else _started_open_files


@functools.cache
def _prlimit() -> str | None:
    return shutil.which("prlimit", path=DEFAULT_PATH)


def with_open_file_limit(
    argv: Sequence[str], *, path: str | None = None, use_prlimit: bool = True
) -> list[str]:
    """`argv` made to start with the soft open-file limit the daemon was started with (see
    the module's notes); `argv` itself when children inherit the daemon's limit anyway.

    `path` is the PATH of the child's environment (default the daemon's): a program named
    without a `/` and not found there raises FileNotFoundError here, as starting it directly
    would. Without `use_prlimit` (or without util-linux prlimit) the Python fallback runs."""
    soft = child_open_file_limit()
    if soft is None:
        return list(argv)
    program = argv[0]
    # a name with a slash may be relative to the child's own cwd: its exec tells
    if "/" not in program:
        search = os.environ.get("PATH", os.defpath) if path is None else path
        if shutil.which(program, path=search) is None:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)
    tool = _prlimit() if use_prlimit else None
    if tool is not None:
        return [tool, f"--nofile={soft}:", "--", *argv]
    return [sys.executable, "-I", "-S", "-c", _SET_LIMIT, str(soft), "--", *argv]
