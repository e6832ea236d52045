"""XDG Desktop Entry files: the `[Desktop Entry]` group, value escapes, and `Exec` parsed
into argv with its field codes expanded or dropped (Desktop Entry Specification 1.5,
"Recognized desktop entry keys" and "The Exec key")."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

_STRING_ESCAPES = {"s": " ", "n": "\n", "t": "\t", "r": "\r", "\\": "\\"}
# file/URL field codes: hoodyd launches apps without arguments, so they expand to nothing
_DROPPED_CODES = set("fFuUdDnNvm")
# inside a quoted Exec argument these characters must be backslash-escaped
_QUOTED_ESCAPABLE = set('"`$\\')


class DesktopEntryError(ValueError):
    pass


@dataclass
class DesktopEntry:
    path: Path
    desktop_id: str
    values: dict[str, str] = field(default_factory=dict)

    def string(self, key: str) -> str:
        return unescape_string(self.values.get(key, ""))

    def strings(self, key: str) -> list[str]:
        return split_list(self.values.get(key, ""))

    def boolean(self, key: str) -> bool:
        return self.values.get(key, "false").strip() == "true"


def parse_desktop_file(path: Path, desktop_id: str) -> DesktopEntry:
    """Read the unlocalized keys of the `[Desktop Entry]` group."""
    entry = DesktopEntry(path=path, desktop_id=desktop_id)
    group: str | None = None
    with path.open(encoding="utf-8", errors="replace") as handle:
        for raw in handle:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("[") and line.endswith("]"):
                if group == "Desktop Entry":
                    break  # later groups (Desktop Action …) are not the entry itself
                group = line[1:-1]
                continue
            if group != "Desktop Entry" or "=" not in line:
                continue
            key, _, value = line.partition("=")
            key = key.strip()
            if "[" in key:
                continue  # localized variant; the unlocalized key is the canonical one
            entry.values.setdefault(key, value.strip())
    if group is None:
        raise DesktopEntryError(f"{path}: no [Desktop Entry] group")
    return entry


def unescape_string(value: str) -> str:
    out: list[str] = []
    chars = iter(value)
    for char in chars:
        if char == "\\":
            nxt = next(chars, "")
            out.append(_STRING_ESCAPES.get(nxt, "\\" + nxt))
        else:
            out.append(char)
    return "".join(out)


def split_list(value: str) -> list[str]:
    """A `;`-separated list where `\\;` is a literal semicolon."""
    items: list[str] = []
    current: list[str] = []
    chars = iter(value)
    for char in chars:
        if char == "\\":
            nxt = next(chars, "")
            current.append(";" if nxt == ";" else _STRING_ESCAPES.get(nxt, "\\" + nxt))
        elif char == ";":
            items.append("".join(current))
            current = []
        else:
            current.append(char)
    if current:
        items.append("".join(current))
    return [item.strip() for item in items if item.strip()]


def parse_exec(exec_value: str, *, name: str = "", icon: str = "", location: str = "") -> list[str]:
    """Split an `Exec` value into argv the way the spec says: string escapes first, then
    double-quote quoting, then field codes (`%i` → `--icon ICON`, `%c` → Name, `%k` → the
    file, `%%` → `%`; file and URL codes dropped)."""
    text = unescape_string(exec_value)
    argv: list[str] = []
    i = 0
    length = len(text)
    while i < length:
        while i < length and text[i] in " \t":
            i += 1
        if i >= length:
            break
        if text[i] == '"':
            i += 1
            arg: list[str] = []
            while True:
                if i >= length:
                    raise DesktopEntryError(f"unterminated quote in Exec: {exec_value!r}")
                char = text[i]
                if char == "\\" and i + 1 < length and text[i + 1] in _QUOTED_ESCAPABLE:
                    arg.append(text[i + 1])
                    i += 2
                    continue
                if char == '"':
                    i += 1
                    break
                arg.append(char)
                i += 1
            # a quoted argument is taken literally but for %% (field codes may not be quoted)
            argv.append("".join(arg).replace("%%", "%"))
            continue
        start = i
        while i < length and text[i] not in " \t":
            i += 1
        argv.extend(_expand_codes(text[start:i], name=name, icon=icon, location=location))
    if not argv:
        raise DesktopEntryError("empty Exec")
    return argv


def _expand_codes(word: str, *, name: str, icon: str, location: str) -> list[str]:
    if word == "%i":
        return ["--icon", icon] if icon else []
    if len(word) == 2 and word[0] == "%" and word[1] in _DROPPED_CODES:
        return []
    out: list[str] = []
    i = 0
    while i < len(word):
        char = word[i]
        if char == "%" and i + 1 < len(word):
            code = word[i + 1]
            if code == "%":
                out.append("%")
            elif code == "c":
                out.append(name)
            elif code == "k":
                out.append(location)
            # %i inside a word and the dropped codes expand to nothing
            i += 2
            continue
        out.append(char)
        i += 1
    expanded = "".join(out)
    return [expanded] if expanded else []
