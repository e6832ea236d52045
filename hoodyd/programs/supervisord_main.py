"""How hoodyd runs its embedded supervisord: supervisord's own `main`, with included files
read in time linear in their number.

supervisord reads each included file into the one parser that holds every file read so far,
and after each file walks all of them again (configparser joins the multi-line values of
every section, then `%(here)s` is replaced in every section): reading n included files costs
n² section walks. With one file per program that is ~5 s at 1000 programs, at every start of
supervisord and every `reloadConfig`. Here each file is read into a parser of its own and its
sections are added to the whole; `%(here)s` is replaced in the sections of that file only.
The outcome is the same (a section already read has no `%(here)s` left to replace; a section
named again in a later file is merged into the earlier one, as configparser does with
`strict=False`); tests compare the two readings.

Open files: with `--child-open-files SOFT` before supervisord's own arguments, every process
supervisord starts (programs, the event listener) gets the soft `RLIMIT_NOFILE` SOFT (the one
hoodyd was started with), set in the forked child just before it execs, where supervisord
already sets the child's uid, directory and umask (supervisord is single-threaded, so that is
safe). supervisord itself keeps the limit it was started with: it holds descriptors for every
program (pipes, log files) and waits on them with poll(), which has no 1024 bound.

This module runs inside supervisord: it imports supervisor and the standard library only.
"""

from __future__ import annotations

import configparser
import contextlib
import resource
import sys
from collections.abc import Callable, Iterable
from typing import Any

from supervisor import options

_HERE = "%(here)s"
CHILD_OPEN_FILES = "--child-open-files"


def read(self: Any, filenames: str | Iterable[str], **kwargs: Any) -> list[str]:
    """`UnhosedConfigParser.read`, each file parsed on its own and merged in."""
    if isinstance(filenames, str):
        filenames = [filenames]
    read_ok: list[str] = []
    pending = self.__dict__.setdefault("_hoodyd_unexpanded", set())
    for filename in filenames:
        fresh = options.UnhosedConfigParser()
        fresh.expansions = self.expansions
        read_ok += configparser.RawConfigParser.read(fresh, [filename], **kwargs)
        for name, values in fresh._sections.items():
            if name in self._sections:
                self._sections[name].update(values)
            else:
                self._sections[name] = values
                self._proxies[name] = configparser.SectionProxy(self, name)
                self.section_to_file[name] = filename
            pending.add(name)
    return read_ok


def expand_here(self: Any, here: str) -> None:
    """`UnhosedConfigParser.expand_here` over the sections not yet expanded (all of them
    when no file was read through `read`)."""
    pending = self.__dict__.get("_hoodyd_unexpanded")
    sections = self.sections() if pending is None else [s for s in self.sections() if s in pending]
    for section in sections:
        for key, value in self.items(section):
            if _HERE in value:
                self.set(section, key, value.replace(_HERE, here))
    if pending is not None:
        pending.clear()


def limiting_execve(soft: int, execve: Callable[..., Any]) -> Callable[..., Any]:
    """`ServerOptions.execve` (called only in a forked child, right before its exec) that
    first sets the soft open-file limit to `soft`, keeping the hard one."""

    def limited(self: Any, filename: str, argv: list[str], env: dict[str, str]) -> Any:
        with contextlib.suppress(ValueError, OSError):
            hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            wanted = soft if hard == resource.RLIM_INFINITY else min(soft, hard)
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        return execve(self, filename, argv, env)

    return limited


def install(child_open_files: int | None = None) -> None:
    options.UnhosedConfigParser.read = read
    options.UnhosedConfigParser.expand_here = expand_here
    if child_open_files is not None:
        options.ServerOptions.execve = limiting_execve(
            child_open_files, options.ServerOptions.execve
        )


def split_args(args: list[str]) -> tuple[int | None, list[str]]:
    """(`--child-open-files` value, supervisord's own arguments)."""
    if len(args) >= 2 and args[0] == CHILD_OPEN_FILES and args[1].isdigit():
        return int(args[1]), args[2:]
    return None, args


def main() -> None:
    child_open_files, args = split_args(sys.argv[1:])
    install(child_open_files)
    from supervisor import supervisord

    supervisord.main(args)


if __name__ == "__main__":
    main()
