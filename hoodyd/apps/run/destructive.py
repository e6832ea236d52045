"""Destructive candidates: programs that turn the machine off or overwrite a disk, which a run
schedules only when the client names the candidate by its id.

hoodyd often runs as root, and the system-path source indexes /usr/sbin like any other
directory: a fuzzy `app=rebot&pick=first` must never reboot the machine. Such candidates stay
searchable. Each carries the side-effect hint `destructive`; a run that would schedule one, or
print a curl line that would, is refused (403 `DESTRUCTIVE_NEEDS_EXPLICIT_PICK`) unless the
request picked it with `pick=id` and its candidate id. Answers that only show the plan
(`dry_run`, preflight, batch run items) still answer, with a warning.

Why only `pick=id`: `first` and `index` name a position in a ranking, which moves when sources
sync or a query is mistyped; an exact query is no proof either (`app=init` may be meant for a
project's `init` tool). A candidate id names the source and the executable's path, so the
client has seen what it asks for.

What is judged is the command that would run: the planned argv (a desktop entry's `Exec`
already parsed by its source), looked through its wrappers — `sudo`, `env`, `pkexec`,
`nohup`, `exec`, `timeout` and their kind, and a shell's `-c` script, split with `shlex` into
simple commands at `;`, `&&`, `||`, `|`, `&` and newlines — and each simple command is held to
`RULES`: an executable by basename, and for the tools that also do harmless things, the
sub-command or flag that makes them destructive (`systemctl poweroff` but not `systemctl
status`, `dd of=/dev/sda` but not `dd of=/tmp/x`, `zfs destroy` but not `zfs list`). Package
launchers (`nix run nixpkgs#parted`, `npx wipefs@1.0.0`) are judged by the package they
start, and the record's name counts as a program run bare, so a record named `parted` is
marked whatever starts it. The rule guards against running a destructive program by
accident; it is not a sandbox for a source that means harm (a script file is not read).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from hoodyd.errors import Reason
from hoodyd.schemas.run import Candidate, SideEffectHint

HINT_CODE = "destructive"
REASON = Reason.DESTRUCTIVE_NEEDS_EXPLICIT_PICK

POWER = "powers the machine off, restarts or suspends it"
FILE_SYSTEM = "writes a new file system over a device"
PARTITIONS = "rewrites a disk's partition table"
ERASURE = "overwrites or discards a device's data"
VOLUMES = "destroys a storage pool, volume or encrypted container"

_POWER_VERBS = (
    "poweroff", "reboot", "halt", "suspend", "hibernate", "hybrid-sleep",
    "suspend-then-hibernate", "kexec", "soft-reboot", "rescue", "emergency",
)  # fmt: skip
_DBUS_POWER = ("poweroff", "reboot", "halt", "suspend", "hibernate", "hybridsleep",
               "suspendthenhibernate")  # fmt: skip


@dataclass(frozen=True)
class Rule:
    """Programs (basenames, `fnmatch` patterns, compared lower-case) and what running them
    does. With `args`, the rule holds only when an argument matches one of them — a
    sub-command (compared lower-case) or a flag (as written; `--flag=value` counts as
    `--flag`) — and matches none of `unless`."""

    programs: tuple[str, ...]
    effect: str
    args: tuple[str, ...] = ()
    unless: tuple[str, ...] = ()

    def names(self, program: str) -> bool:
        return any(fnmatchcase(program, pattern) for pattern in self.programs)

    def matching_arg(self, args: Sequence[str]) -> str | None:
        """The argument that makes the rule hold, "" when it holds for any, else None."""
        if not self.args:
            return ""
        for arg in args:
            forms = _forms(arg)
            if _any_match(forms, self.args) and not _any_match(forms, self.unless):
                return arg
        return None


RULES: tuple[Rule, ...] = (
    # power state: `shutdown` with no argument powers off a minute later; `init 0` and
    # `telinit 6` change the run level; `kexec -e` boots another kernel at once; `killall5`
    # signals every process outside its session (the last step of a SysV halt)
    Rule(("reboot", "poweroff", "halt", "shutdown", "init", "telinit", "kexec", "killall5",
          "pm-suspend", "pm-suspend-hybrid", "pm-hibernate", "s2ram", "s2disk", "s2both",
          "hibernate", "hibernate-ram", "hibernate-disk", "zzz"), POWER),
    Rule(("systemctl", "loginctl"), POWER,
         args=(*_POWER_VERBS, *(f"{verb}.target" for verb in _POWER_VERBS))),
    Rule(("gnome-session-quit",), POWER, args=("--power-off", "--reboot")),
    Rule(("xfce4-session-logout",), POWER,
         args=("--halt", "--reboot", "--suspend", "--hibernate", "--hybrid-sleep",
               "-h", "-r", "-s", "-i", "-b")),
    Rule(("lxqt-leave",), POWER, args=("--shutdown", "--reboot", "--suspend", "--hibernate")),
    # logind's Manager methods called over D-Bus (`busctl call … PowerOff b false`)
    Rule(("busctl", "dbus-send", "gdbus", "qdbus"), POWER,
         args=(*_DBUS_POWER, *(f"*.{method}" for method in _DBUS_POWER))),
    # file systems: each writes a new one over whatever the device held
    Rule(("mkfs", "mkfs.*", "mke2fs", "mkswap", "mkdosfs", "mkntfs", "mkexfatfs", "mkudffs",
          "mkreiserfs"), FILE_SYSTEM),
    # partition tables (`parted` with no device opens the first disk for editing)
    Rule(("fdisk", "sfdisk", "cfdisk", "gdisk", "sgdisk", "cgdisk", "fixparts", "parted"),
         PARTITIONS),
    # erasure (`badblocks` overwrites the device in its write modes)
    Rule(("wipefs", "blkdiscard", "shred", "badblocks", "sg_format", "sg_sanitize"), ERASURE),
    Rule(("dd",), ERASURE, args=("of=/dev/*",),
         unless=("of=/dev/null", "of=/dev/zero", "of=/dev/stdout", "of=/dev/stderr",
                 "of=/dev/fd/*", "of=/dev/tty*", "of=/dev/shm/*")),
    Rule(("hdparm",), ERASURE,
         args=("--security-erase", "--security-erase-enhanced", "--trim-sector-ranges",
               "--trim-sector-ranges-stdin", "--write-sector", "--make-bad-sector")),
    Rule(("nvme",), ERASURE, args=("format", "sanitize", "delete-ns")),
    Rule(("mdadm",), ERASURE, args=("--zero-superblock", "--create", "-C")),
    # storage pools, logical volumes, encrypted containers
    Rule(("cryptsetup",), VOLUMES,
         args=("erase", "lukserase", "luksformat", "format", "lukskillslot")),
    Rule(("zpool",), VOLUMES, args=("destroy", "labelclear")),
    Rule(("zfs",), VOLUMES, args=("destroy",)),
    Rule(("lvremove", "vgremove", "pvremove", "lvreduce"), VOLUMES),
)  # fmt: skip

# shells whose `-c` script is judged command by command
_SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "fish", "busybox"})
# programs that run the command given after their own options (whose values are judged as
# programs too: erring on the side of marking); a word with spaces is judged as a script
_WRAPPERS = frozenset({
    "env", "sudo", "doas", "pkexec", "nohup", "exec", "command", "builtin", "eval", "time",
    "nice", "ionice", "chrt", "taskset", "setsid", "stdbuf", "timeout", "systemd-run",
    "systemd-inhibit", "runuser", "su", "chroot", "xargs", "flock", "watch", "unbuffer",
    "dbus-launch", "dbus-run-session", "flatpak-spawn", "torsocks", "firejail", "strace",
    "ltrace", "busybox", "script", "x-terminal-emulator", "xterm", "gnome-terminal",
    "konsole",
})  # fmt: skip
# launchers that start a package's program without naming it (`nix run nixpkgs#parted`)
_LAUNCHERS = frozenset({"nix", "npx", "pnpx", "bunx", "uvx", "pipx", "pkgx"})
# words that start a shell's compound commands before the command itself
_KEYWORDS = frozenset({"if", "then", "else", "elif", "do", "while", "until", "!", "{", "}",
                       "(", "time", "fi", "done"})  # fmt: skip
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_SEPARATOR = re.compile(r"^[;&|()]+$")
_REDIRECT = re.compile(r"^[0-9]*[<>]+&?$")
_MAX_DEPTH = 8


@dataclass(frozen=True)
class Danger:
    """The destructive program a candidate runs, and what running it does."""

    program: str
    effect: str

    def hint(self) -> SideEffectHint:
        return SideEffectHint(
            code=HINT_CODE,
            description=f"runs {self.program}, which {self.effect}; a run schedules it only "
            "when it is picked by its candidate id (pick=id)",
        )


def _forms(arg: str) -> tuple[str, ...]:
    """The ways an argument is compared: a flag as written (and without `=value`), any
    other word lower-cased."""
    if arg.startswith("-"):
        return (arg, arg.split("=", 1)[0]) if arg.startswith("--") else (arg,)
    return (arg.lower(),)


def _any_match(forms: Iterable[str], patterns: Iterable[str]) -> bool:
    return any(fnmatchcase(form, pattern) for form in forms for pattern in patterns)


def _basename(word: str) -> str:
    return word.rsplit("/", 1)[-1].lower()


def effect_of(program: str) -> str | None:
    """What running `program` bare (no arguments) does, if it is destructive."""
    danger = judge([program])
    return danger.effect if danger else None


def judge(argv: Sequence[str], depth: int = 0) -> Danger | None:
    """The first destructive simple command that running `argv` would start."""
    words = list(argv)
    while words and (_ASSIGNMENT.match(words[0]) or words[0] in _KEYWORDS):
        words.pop(0)
    if not words or depth > _MAX_DEPTH:
        return None
    program, args = _basename(words[0]), words[1:]
    for rule in RULES:
        if rule.names(program):
            arg = rule.matching_arg(args)
            if arg is not None:
                return Danger(f"{program} {arg}".strip(), rule.effect)
    if program in _SHELLS:
        for index, arg in enumerate(args[:-1]):
            if (arg.startswith("-") and not arg.startswith("--") and "c" in arg[1:]) or arg in (
                "--command",
            ):
                return judge_script(args[index + 1], depth + 1)
    if program in _WRAPPERS or program in _LAUNCHERS:
        for index, arg in enumerate(args):
            if arg.startswith("-"):
                continue
            if any(char.isspace() for char in arg):
                danger = judge_script(arg, depth + 1)
            else:
                started = _package_program(arg) if program in _LAUNCHERS else arg
                danger = judge([started, *args[index + 1 :]], depth + 1)
            if danger is not None:
                return danger
    return None


def _package_program(word: str) -> str:
    """The program a launcher's package word starts: `nixpkgs#parted` → parted,
    `wipefs@1.0.0` → wipefs, `@scope/tool@2` → tool."""
    name = word.rsplit("#", 1)[-1]
    head, at, _version = name[1:].rpartition("@")
    if at:
        name = name[0] + head
    return name.rsplit("/", 1)[-1]


def simple_commands(script: str) -> list[list[str]]:
    """A shell script's simple commands: split like a shell would (quotes, `;`, `&&`, `||`,
    `|`, `&`, newlines, `$(…)` and backquotes), redirections and their targets left out."""
    text = script.replace("\n", ";").replace("`", ";")
    lexer = shlex.shlex(text, posix=True, punctuation_chars=";&|()<>")
    lexer.whitespace_split = True
    try:
        tokens = list(lexer)
    except ValueError:  # an unbalanced quote: judge the words as they stand
        tokens = re.findall(r"[;&|()<>]+|[^\s;&|()<>'\"]+", text)
    commands: list[list[str]] = [[]]
    skip_next = False
    for token in tokens:
        if skip_next:
            skip_next = False
        elif _SEPARATOR.match(token):
            commands.append([])
        elif _REDIRECT.match(token):
            skip_next = True
        elif token.removeprefix("$"):  # the `$` of a `$(…)` is no word
            commands[-1].append(token.removeprefix("$"))
    return [command for command in commands if command]


def judge_script(script: str, depth: int = 0) -> Danger | None:
    for command in simple_commands(script):
        danger = judge(command, depth)
        if danger is not None:
            return danger
    return None


def classify(name: str, argv: Sequence[str]) -> Danger | None:
    """The first destructive command the planned `argv` would run, else the record's
    `name` run bare (a launcher may start it under another name)."""
    return judge(argv) or judge([name])


def marked(candidate: Candidate) -> SideEffectHint | None:
    """The candidate's `destructive` hint, set when the search built it."""
    plan = candidate.execution_plan
    for hint in (plan.side_effect_hints if plan else None) or []:
        if hint.code == HINT_CODE:
            return hint
    return None
