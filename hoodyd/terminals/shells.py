"""Shell integration: the start-up files that make each shell report completion in-band.

hoodyd starts every shell with a start-up file it writes (bash `--rcfile`, zsh `ZDOTDIR`,
fish `--init-command`, POSIX sh `ENV`). That file first loads the user's own start-up files,
then installs prompt hooks that print the markers described in `hoodyd.terminals.holder.markers`, so
hoodyd learns that a command started, finished, and with which status, without ever sleeping.
The per-session nonce is made by the terminal's holder, which hands it over through a pipe
named by `HOODYD_MARKER_FD`: the file reads it first thing, before any other start-up file, and
closes the pipe, so the nonce is in no environment, command line or file, and a descriptor a
program could inherit or find in /proc holds nothing any more.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from hoodyd.errors import InvalidRequest, Reason

ShellKind = Literal["bash", "zsh", "fish", "sh"]
SHELL_KINDS: tuple[ShellKind, ...] = ("bash", "zsh", "fish", "sh")

# POSIX (bash, zsh, sh): read the nonce from the holder's pipe and close it.
_READ_NONCE = r"""case ${HOODYD_MARKER_FD:-} in
  ''|*[!0-9]*) __hoodyd_nonce=unset ;;
  *) IFS= read -r __hoodyd_nonce <&"$HOODYD_MARKER_FD"; eval "exec $HOODYD_MARKER_FD<&-" ;;
esac
unset HOODYD_MARKER_FD
"""

_BASH_RC = r"""# hoodyd shell integration for bash (written by hoodyd; rewritten at each start)
@read-nonce@
if [ -z "${HOODYD_SKIP_USER_RC:-}" ]; then
  [ -f /etc/bash.bashrc ] && . /etc/bash.bashrc
  [ -f ~/.bashrc ] && . ~/.bashrc
fi
unset HOODYD_SKIP_USER_RC
# History expansion would rewrite injected commands that contain '!'.
set +H
__hoodyd_status=0
__hoodyd_seq=0
# `__hoodyd_c` is set by the line hoodyd types (its mark); a line typed otherwise has none.
__hoodyd_precmd() {
  __hoodyd_status=$?; __hoodyd_seq=$((__hoodyd_seq + 1)); __hoodyd_cid=${__hoodyd_c-}; __hoodyd_c=
}
# The prompt marker lives in PS1 rather than in PROMPT_COMMAND: readline prints PS1 after it
# has put the terminal in raw mode, so input injected after the marker is echoed once.
__hoodyd_mark='\[\e]6973;'"$__hoodyd_nonce"';D;${__hoodyd_status};${__hoodyd_seq};${__hoodyd_cid}\a\]'
__hoodyd_ps1() {
  case $PS1 in *"$__hoodyd_mark"*) ;; *) PS1=$__hoodyd_mark$PS1 ;; esac
}
PS0='\e]6973;'"$__hoodyd_nonce"';S\a'"${PS0:-}"
PS2='\[\e]6973;'"$__hoodyd_nonce"';C\a\]'"${PS2:-> }"
# Ours first (to read $? before anything else runs), the user's hooks, then the PS1 guard
# (a prompt framework may rebuild PS1 on every prompt).
PROMPT_COMMAND=$'__hoodyd_precmd\n'"${PROMPT_COMMAND:-}"$'\n__hoodyd_ps1'
if [ -n "${HOODYD_STARTUP_SCRIPT:-}" ]; then . "$HOODYD_STARTUP_SCRIPT"; fi
unset HOODYD_STARTUP_SCRIPT
"""

_ZSH_ENV = r"""# hoodyd shell integration for zsh: take the nonce, load the user's .zshenv
@read-nonce@
typeset -g __hoodyd_nonce
if [[ -z ${HOODYD_SKIP_USER_RC:-} && -f ${HOODYD_USER_ZDOTDIR:-$HOME}/.zshenv ]]; then
  source ${HOODYD_USER_ZDOTDIR:-$HOME}/.zshenv
fi
"""

_ZSH_RC = r"""# hoodyd shell integration for zsh (written by hoodyd; rewritten at each start)
ZDOTDIR=${HOODYD_USER_ZDOTDIR:-$HOME}; unset HOODYD_USER_ZDOTDIR
[[ -z ${HOODYD_SKIP_USER_RC:-} && -f $ZDOTDIR/.zshrc ]] && source $ZDOTDIR/.zshrc
unset HOODYD_SKIP_USER_RC
setopt NO_BANG_HIST
# The partial-line mark (PROMPT_SP) is drawn before the prompt marker; it would end up in
# every command's output.
setopt NO_PROMPT_SP
typeset -gi __hoodyd_seq=0
typeset -g __hoodyd_status=0 __hoodyd_mark="" __hoodyd_c="" __hoodyd_cid=""
__hoodyd_precmd() {
  __hoodyd_status=$?; (( __hoodyd_seq++ )); __hoodyd_cid=$__hoodyd_c; __hoodyd_c=
}
# The prompt marker goes into PS1 rather than being printed by precmd: ZLE draws PS1 after it
# has put the terminal in raw mode, so input injected after the marker is echoed once. It runs
# last, after any prompt theme has rebuilt PS1.
__hoodyd_ps1() {
  PS1=${PS1#"$__hoodyd_mark"}
  __hoodyd_mark=$'%{\e]6973;'"$__hoodyd_nonce;D;$__hoodyd_status;$__hoodyd_seq;$__hoodyd_cid"$'\a%}'
  PS1=$__hoodyd_mark$PS1
}
__hoodyd_preexec() { printf '\e]6973;%s;S\a' $__hoodyd_nonce }
precmd_functions=(__hoodyd_precmd $precmd_functions __hoodyd_ps1)
preexec_functions+=(__hoodyd_preexec)
PS2=$'%{\e]6973;'$__hoodyd_nonce$';C\a%}'$PS2
if [[ -n ${HOODYD_STARTUP_SCRIPT:-} ]]; then source $HOODYD_STARTUP_SCRIPT; fi
unset HOODYD_STARTUP_SCRIPT
"""

_FISH_RC = r"""# hoodyd shell integration for fish (written by hoodyd; rewritten at each start)
# (fish has already read the user's config.fish when --init-command runs)
# The nonce comes from the holder's pipe: fish cannot close a descriptor, but once read
# the pipe is empty and at its end.
set -g __hoodyd_nonce unset
if string match -qr '^[0-9]+$' -- "$HOODYD_MARKER_FD"
  eval "read -g __hoodyd_nonce <&$HOODYD_MARKER_FD"
end
set -e HOODYD_MARKER_FD; set -e HOODYD_SKIP_USER_RC
set -g __hoodyd_seq 0
set -g __hoodyd_c ''
function __hoodyd_preexec --on-event fish_preexec
  printf '\e]6973;%s;S\a' $__hoodyd_nonce
end
# Completion is marked right after the command, before fish prints its missing-newline
# indicator and the prompt, so neither is taken for the command's output.
function __hoodyd_postexec --on-event fish_postexec
  set -l s $status
  set -g __hoodyd_seq (math $__hoodyd_seq + 1)
  printf '\e]6973;%s;D;%s;%s;%s\a' $__hoodyd_nonce $s $__hoodyd_seq "$__hoodyd_c"
  set -g __hoodyd_c ''
end
# A prompt repeats the last count: the first one says the shell is ready, later ones are
# redraws hoodyd ignores.
function __hoodyd_prompt --on-event fish_prompt
  printf '\e]6973;%s;D;0;%s\a' $__hoodyd_nonce $__hoodyd_seq
end
if set -q HOODYD_STARTUP_SCRIPT; and test -n "$HOODYD_STARTUP_SCRIPT"
  source $HOODYD_STARTUP_SCRIPT
end
set -e HOODYD_STARTUP_SCRIPT
"""

# POSIX sh has no prompt hook, but expands $(...) in PS1 with $? still set; it cannot count
# prompts, and having no line editor it never redraws a prompt, so every marker is a new one.
# Nor can it clear the mark after a prompt (PS1 runs in a subshell): marks never repeat, so a
# stale one names a command already complete.
_SH_RC = r"""# hoodyd shell integration for POSIX sh (written by hoodyd; rewritten at each start)
@read-nonce@
if [ -z "${HOODYD_SKIP_USER_RC:-}" ] && [ -n "${HOODYD_USER_ENV:-}" ] && [ -f "$HOODYD_USER_ENV" ]
then . "$HOODYD_USER_ENV"; fi
unset HOODYD_USER_ENV HOODYD_SKIP_USER_RC
PS1='$(printf "\033]6973;%s;D;%s;;%s\007" "$__hoodyd_nonce" "$?" "${__hoodyd_c-}")'"${PS1:-\$ }"
PS1=$PS1'$(printf "\033]6973;%s;P\007" "$__hoodyd_nonce")'
PS2="$(printf '\033]6973;%s;C\007' "$__hoodyd_nonce")${PS2:-> }"
if [ -n "${HOODYD_STARTUP_SCRIPT:-}" ]; then . "$HOODYD_STARTUP_SCRIPT"; fi
unset HOODYD_STARTUP_SCRIPT
"""

_BASH_RC, _ZSH_ENV, _SH_RC = (
    text.replace("@read-nonce@\n", _READ_NONCE) for text in (_BASH_RC, _ZSH_ENV, _SH_RC)
)

# the start-up file of each shell that can run as another user (handed over as a memory file)
_RC_TEXTS = {"bash": _BASH_RC, "sh": _SH_RC, "fish": _FISH_RC}


@dataclass(frozen=True, slots=True)
class Shell:
    kind: ShellKind
    path: str


def resolve_shell(name: str | None, default: str) -> Shell:
    """The shell to start: the one asked for, else the configured default, else the user's
    login shell when hoodyd can integrate with it, else bash."""
    chosen = name or default or _login_shell() or "bash"
    if chosen not in SHELL_KINDS:
        raise InvalidRequest(
            f"Unsupported shell {chosen!r} (expected one of {', '.join(SHELL_KINDS)})",
            reason=Reason.UNSUPPORTED_SHELL,
        )
    path = shutil.which(chosen)
    if path is None:
        raise InvalidRequest(f"Shell {chosen!r} is not installed", reason=Reason.SHELL_NOT_FOUND)
    return Shell(chosen, path)


def _login_shell() -> str | None:
    try:
        name = Path(pwd.getpwuid(os.getuid()).pw_shell).name
    except KeyError:
        return None
    return name if name in SHELL_KINDS else None


class ShellIntegration:
    """Writes the start-up files once, then builds each shell's argv and environment."""

    def __init__(self, directory: Path, *, user_rc: bool = True) -> None:
        self.directory = directory
        self.user_rc = user_rc

    def install(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "zsh").mkdir(exist_ok=True)
        files = {
            "hoodyd.bashrc": _BASH_RC,
            "hoodyd.fish": _FISH_RC,
            "hoodyd.shrc": _SH_RC,
            "zsh/.zshenv": _ZSH_ENV,
            "zsh/.zshrc": _ZSH_RC,
        }
        for name, text in files.items():
            target = self.directory / name
            staging = target.with_name(f".{target.name}.tmp")
            staging.write_text(text)
            staging.replace(target)

    def launch(self, shell: Shell, startup_script: str | None, env: dict[str, str]) -> list[str]:
        """The argv to exec; adds the integration's variables to `env` in place."""
        self._integration_env(env, startup_script)
        if shell.kind == "bash":
            return [shell.path, "--rcfile", str(self.directory / "hoodyd.bashrc"), "-i"]
        if shell.kind == "zsh":
            if "ZDOTDIR" in env:
                env["HOODYD_USER_ZDOTDIR"] = env["ZDOTDIR"]
            env["ZDOTDIR"] = str(self.directory / "zsh")
            return [shell.path, "-i"]
        if shell.kind == "fish":
            init = f"source {fish_quote(str(self.directory / 'hoodyd.fish'))}"
            no_config = [] if self.user_rc else ["--no-config"]
            return [shell.path, "-i", *no_config, "--init-command", init]
        if "ENV" in env:
            env["HOODYD_USER_ENV"] = env["ENV"]
        env["ENV"] = str(self.directory / "hoodyd.shrc")
        return [shell.path, "-i"]

    def launch_as(
        self, shell: Shell, startup_script: str | None, env: dict[str, str]
    ) -> tuple[list[str], int]:
        """The argv for a shell run as another user, who cannot read hoodyd's private state
        directory: its start-up file is handed over as an inherited memory file, read as
        `/dev/fd/N`. Returns the argv and that descriptor (the caller passes it on, then
        closes it). zsh needs a start-up directory, so it runs as hoodyd's own user only."""
        check_runs_as_another_user(shell)
        fd = os.memfd_create(f"hoodyd-{shell.kind}-rc", 0)
        os.write(fd, _RC_TEXTS[shell.kind].encode())
        os.lseek(fd, 0, os.SEEK_SET)
        rc = f"/dev/fd/{fd}"
        self._integration_env(env, startup_script)
        if shell.kind == "bash":
            return [shell.path, "--rcfile", rc, "-i"], fd
        if shell.kind == "fish":
            no_config = [] if self.user_rc else ["--no-config"]
            return [shell.path, "-i", *no_config, "--init-command", f"source {rc}"], fd
        if "ENV" in env:
            env["HOODYD_USER_ENV"] = env["ENV"]
        env["ENV"] = rc
        return [shell.path, "-i"], fd

    def _integration_env(self, env: dict[str, str], startup_script: str | None) -> None:
        """The variables the start-up files read, added to `env` in place (the nonce is not
        one of them: the holder makes it and hands it over itself)."""
        if not self.user_rc:
            env["HOODYD_SKIP_USER_RC"] = "1"
        if startup_script:
            env["HOODYD_STARTUP_SCRIPT"] = startup_script


def check_runs_as_another_user(shell: Shell) -> None:
    """Refuse a shell that cannot run as another user: zsh reads its start-up files from a
    directory, which that user cannot reach in hoodyd's private state dir."""
    if shell.kind not in _RC_TEXTS:
        raise InvalidRequest(
            f"{shell.kind} sessions run as hoodyd's own user only (its start-up files must be "
            "a directory); choose bash, sh or fish",
            reason=Reason.USER_NOT_SUPPORTED,
        )


# Parse without running, reading the line from stdin, without any start-up file. bash gets
# extglob so that the check accepts a superset of what an interactive shell may accept.
_PARSE_ONLY: dict[ShellKind, tuple[str, ...]] = {
    "bash": ("--norc", "--noprofile", "-O", "extglob", "-n"),
    "zsh": ("-f", "-n"),
    "fish": ("--no-config", "--no-execute"),
    "sh": ("-n",),
}


# A line of plain words (no quotes, escapes, operators, brackets or reserved words) is a simple
# command in every supported shell: it always parses, so no parser needs to be started for it.
_PLAIN_WORDS = re.compile(r"[A-Za-z0-9_./:=,+@%-]+(?: +[A-Za-z0-9_./:=,+@%-]+)*")
# fmt: off
_RESERVED_WORDS = frozenset({
    "if", "then", "else", "elif", "fi", "case", "esac", "for", "select", "while", "until",
    "do", "done", "function", "time", "coproc", "in", "begin", "end", "switch", "and", "or",
    "not", "repeat", "foreach", "nocorrect", "noglob",
})
# fmt: on


@dataclass(frozen=True, slots=True)
class SyntaxProblem:
    status: int
    message: str


def plain_words(line: str) -> bool:
    """A line of plain words always parses: no parser needs to be started for it."""
    stripped = line.strip()
    return bool(_PLAIN_WORDS.fullmatch(stripped)) and _RESERVED_WORDS.isdisjoint(stripped.split())


async def syntax_error(shell: Shell, line: str) -> SyntaxProblem | None:
    """The shell parser's complaint about `line`, or None when it parses.

    An interactive shell handed a line that does not parse may not come back to its prompt:
    an open quote or a trailing `|` makes it ask for more lines (and a Ctrl-C at that
    continuation prompt is not always honoured at once), and fish keeps such a line in its
    editor. So each line is parsed first, without being run, by the same shell binary; a
    line that fails is never typed and completes with the parser's status and message.
    """
    if plain_words(line):
        return None
    try:
        process = await asyncio.create_subprocess_exec(
            shell.path,
            *_PARSE_ONLY[shell.kind],
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"},
        )
    except OSError:
        return None  # cannot check (out of processes?): type it; the interactive shell decides
    _out, err = await process.communicate(line.encode() + b"\n")
    if process.returncode == 0:
        return None
    status = process.returncode if process.returncode and process.returncode > 0 else 2
    return SyntaxProblem(status, err.decode(errors="replace") or f"{shell.kind}: syntax error")


def wrap_command(kind: ShellKind, command: str, cwd: str | None, env: dict[str, str]) -> str:
    """The line to type for `command`, run in a subshell with `cwd`/`env` when given.

    Only `command` is passed through as shell code (the caller asked for exactly that); the
    directory and the variables are quoted, so they are data whatever they contain.
    """
    if cwd is None and not env:
        return command
    if kind == "fish":
        steps = [f"cd {fish_quote(cwd)}"] if cwd is not None else []
        steps += [f"set -lx {key} {fish_quote(value)}" for key, value in env.items()]
        steps.append(f"eval {fish_quote(command)}")
        return "begin; " + "; and ".join(steps) + "; end"
    steps = [f"cd -- {shlex.quote(cwd)}"] if cwd is not None else []
    steps += [f"export {key}={shlex.quote(value)}" for key, value in env.items()]
    steps.append(f"eval {shlex.quote(command)}")
    return "( " + " && ".join(steps) + " )"


def fish_quote(text: str) -> str:
    """fish single quotes: only backslash and the quote itself are special inside them."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def marked_line(kind: ShellKind, mark: int, line: str) -> str:
    """`line` as typed: it first sets the mark the next prompt marker reports, so hoodyd
    knows that prompt follows this line and not one typed by other means."""
    if kind == "fish":
        return f"set -g __hoodyd_c {mark}; {line}"
    return f"__hoodyd_c={mark}; {line}"
