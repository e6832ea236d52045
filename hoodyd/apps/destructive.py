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

The families, by executable basename (compared lower-cased):

- power state: `reboot`, `poweroff`, `halt`, `shutdown` (systemd's `shutdown` with no argument
  powers off a minute later), `init` and `telinit` (`init 0`, `telinit 6`), `kexec` (`-e`
  boots another kernel at once), `killall5` (signals every process outside its session, the
  last step of a SysV halt). `systemctl reboot` and its kind are caught by their verbs, which
  are these same words (plus `soft-reboot`).
- file systems: `mkfs` and every `mkfs.<type>`, `mke2fs`, `mkswap`, `mkdosfs`, `mkntfs`,
  `mkexfatfs`: each writes a new file system over whatever the device held.
- partition tables: `fdisk`, `sfdisk`, `cfdisk`, `gdisk`, `sgdisk`, `cgdisk`, `fixparts`,
  `parted` (which, given no device, opens the first disk for editing).
- erasure: `wipefs`, `blkdiscard`, `shred`, `badblocks` (its write modes overwrite the
  device), `dd` (harmless without arguments, but a manifest or desktop entry can plan
  `dd of=/dev/sda`).

Which words count: every word of the planned argv, split at whitespace and shell operators,
and the record's name (`nix run nixpkgs#parted`, `npx`, `uvx` start the package's program
without naming it). Wrappers (`sudo reboot`, `env X=1 reboot`, `sh -c 'sleep 1; reboot'`) are
caught without parsing them. The rule errs on the side of marking: a manifest app planning
`git init` is marked too, and then needs its id to run. It guards against running a
destructive program by accident; it is not a sandbox for a source that means harm.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from hoodyd.errors import Reason
from hoodyd.schemas.run import Candidate, SideEffectHint

HINT_CODE = "destructive"
REASON = Reason.DESTRUCTIVE_NEEDS_EXPLICIT_PICK

_FAMILIES: dict[str, tuple[str, ...]] = {
    "powers the machine off or restarts it": (
        "reboot", "poweroff", "halt", "shutdown", "init", "telinit", "kexec", "soft-reboot",
        "killall5",
    ),
    "writes a new file system over a device": (
        "mkfs", "mke2fs", "mkswap", "mkdosfs", "mkntfs", "mkexfatfs",
    ),
    "rewrites a disk's partition table": (
        "fdisk", "sfdisk", "cfdisk", "gdisk", "sgdisk", "cgdisk", "fixparts", "parted",
    ),
    "overwrites or discards a device's data": ("wipefs", "blkdiscard", "shred", "badblocks", "dd"),
}  # fmt: skip
_EFFECTS = {name: effect for effect, names in _FAMILIES.items() for name in names}
_MKFS_PREFIX = "mkfs."
# a word ends at whitespace, a shell operator or quote, a flake `#`, a version `@`, an `=`
_WORD = re.compile(r"[^\s;&|()<>`$'\"#@=,{}]+")


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


def effect_of(program: str) -> str | None:
    name = program.rsplit("/", 1)[-1].lower()
    if name.startswith(_MKFS_PREFIX):
        return _EFFECTS["mkfs"]
    return _EFFECTS.get(name)


def _words(texts: Iterable[str]) -> Iterable[str]:
    for text in texts:
        yield from _WORD.findall(text)


def classify(name: str, argv: Sequence[str]) -> Danger | None:
    """The first destructive program among the words of `argv` and the record's `name`."""
    for word in _words([*argv, name]):
        effect = effect_of(word)
        if effect is not None:
            return Danger(word.rsplit("/", 1)[-1], effect)
    return None


def marked(candidate: Candidate) -> SideEffectHint | None:
    """The candidate's `destructive` hint, set when the search built it."""
    plan = candidate.execution_plan
    for hint in (plan.side_effect_hints if plan else None) or []:
        if hint.code == HINT_CODE:
            return hint
    return None
