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

This module runs inside supervisord: it imports supervisor and the standard library only.
"""

from __future__ import annotations

import configparser
from collections.abc import Iterable
from typing import Any

from supervisor import options

_HERE = "%(here)s"


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


def install() -> None:
    options.UnhosedConfigParser.read = read
    options.UnhosedConfigParser.expand_here = expand_here


def main() -> None:
    install()
    from supervisor import supervisord

    supervisord.main()


if __name__ == "__main__":
    main()
