"""Named keys to the bytes an xterm sends for them.

A key name is a base key (`enter`, `arrow_up`, `f5`, `kp_enter`, a single printable
character) with optional modifiers before it: `ctrl+c`, `alt+x`, `shift+tab`,
`ctrl+shift+arrow_left`. Names are case-insensitive (except a bare character, sent as
is); `-`, `_` and spaces inside a base name are interchangeable or optional (`page_up`,
`PageUp`, `page-up`), and `-` also separates modifiers (`ctrl-c`).

Cursor keys follow DECCKM (SS3 `ESC O A` in application mode, CSI `ESC [ A` otherwise),
keypad keys follow DECKPAM, and modified cursor/function keys use xterm's
`ESC [ 1 ; m X` / `ESC [ n ; m ~` form.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hoodyd.errors import InvalidRequest, Reason

_MODIFIER_WEIGHTS = {"shift": 1, "alt": 2, "ctrl": 4, "meta": 8}
_MODIFIER_ALIASES = {
    "shift": "shift",
    "alt": "alt",
    "option": "alt",
    "meta": "meta",
    "super": "meta",
    "cmd": "meta",
    "ctrl": "ctrl",
    "control": "ctrl",
}
_MODIFIER_PREFIX = re.compile(
    r"(" + "|".join(sorted(_MODIFIER_ALIASES, key=len, reverse=True)) + r")[+\-_ ](.+)",
    re.IGNORECASE | re.DOTALL,
)
_MAX_NAME_CHARS = 64

# Keys with an xterm cursor-key form: final byte of `ESC [ X` / `ESC O X`.
_CURSOR_KEYS = {
    "arrow_up": "A",
    "arrow_down": "B",
    "arrow_right": "C",
    "arrow_left": "D",
    "home": "H",
    "end": "F",
}
# Keys of the `ESC [ n ~` form.
_TILDE_KEYS = {
    "insert": 2,
    "delete": 3,
    "page_up": 5,
    "page_down": 6,
    "f5": 15,
    "f6": 17,
    "f7": 18,
    "f8": 19,
    "f9": 20,
    "f10": 21,
    "f11": 23,
    "f12": 24,
}
_SS3_FUNCTION_KEYS = {"f1": "P", "f2": "Q", "f3": "R", "f4": "S"}
# Keypad: (character in numeric mode, final byte of ESC O x in application mode).
_KEYPAD_KEYS = {
    **{f"kp_{digit}": (str(digit), chr(ord("p") + digit)) for digit in range(10)},
    "kp_enter": ("\r", "M"),
    "kp_plus": ("+", "k"),
    "kp_minus": ("-", "m"),
    "kp_multiply": ("*", "j"),
    "kp_divide": ("/", "o"),
    "kp_decimal": (".", "n"),
}
_PLAIN_KEYS = {
    "enter": "\r",
    "tab": "\t",
    "escape": "\x1b",
    "backspace": "\x7f",
    "space": " ",
    "backtab": "\x1b[Z",
}

# canonical name -> aliases (besides spelling variants of the name itself)
_ALIASES: dict[str, tuple[str, ...]] = {
    "enter": ("return", "cr"),
    "tab": (),
    "backtab": (),
    "escape": ("esc",),
    "backspace": ("bs",),
    "space": ("spacebar",),
    "delete": ("del",),
    "insert": ("ins",),
    "home": (),
    "end": (),
    "page_up": ("pgup", "prior"),
    "page_down": ("pgdn", "next"),
    "arrow_up": ("up",),
    "arrow_down": ("down",),
    "arrow_left": ("left",),
    "arrow_right": ("right",),
    **{f"f{n}": () for n in range(1, 13)},
    "kp_0": ("keypad_0",),
    "kp_1": ("keypad_1",),
    "kp_2": ("keypad_2",),
    "kp_3": ("keypad_3",),
    "kp_4": ("keypad_4",),
    "kp_5": ("keypad_5",),
    "kp_6": ("keypad_6",),
    "kp_7": ("keypad_7",),
    "kp_8": ("keypad_8",),
    "kp_9": ("keypad_9",),
    "kp_enter": ("keypad_enter",),
    "kp_plus": ("kp_add", "keypad_plus"),
    "kp_minus": ("kp_subtract", "keypad_minus"),
    "kp_multiply": ("kp_star", "keypad_multiply"),
    "kp_divide": ("kp_slash", "keypad_divide"),
    "kp_decimal": ("kp_period", "keypad_decimal"),
}


def _squash(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", name.lower())


_LOOKUP: dict[str, str] = {}
for _canonical, _aliases in _ALIASES.items():
    for _spelling in (_canonical, *_aliases):
        _LOOKUP[_squash(_spelling)] = _canonical

# Characters ctrl turns into C0 codes besides letters.
_CTRL_SYMBOLS = {
    "@": "\x00",
    " ": "\x00",
    "[": "\x1b",
    "\\": "\x1c",
    "]": "\x1d",
    "^": "\x1e",
    "_": "\x1f",
    "?": "\x7f",
    "2": "\x00",
    "3": "\x1b",
    "4": "\x1c",
    "5": "\x1d",
    "6": "\x1e",
    "7": "\x1f",
    "8": "\x7f",
}


@dataclass(frozen=True, slots=True)
class _Key:
    base: str  # a canonical name, or a single character
    modifiers: frozenset[str]


def _parse(name: str) -> _Key | None:
    if len(name) == 1:
        return _Key(name, frozenset()) if name.isprintable() else None
    if not name or len(name) > _MAX_NAME_CHARS:
        return None
    modifiers: set[str] = set()
    rest = name.strip()
    while len(rest) > 1 and (match := _MODIFIER_PREFIX.fullmatch(rest)):
        modifiers.add(_MODIFIER_ALIASES[match.group(1).lower()])
        rest = match.group(2)
    if len(rest) == 1:
        if not rest.isprintable():
            return None
        base = rest
    else:
        canonical = _LOOKUP.get(_squash(rest))
        if canonical is None:
            return None
        base = canonical
    key = _Key(base, frozenset(modifiers))
    return key if _encodable(key) else None


def _encodable(key: _Key) -> bool:
    if (
        not key.modifiers
        or key.base in _CURSOR_KEYS
        or key.base in _TILDE_KEYS
        or key.base in _SS3_FUNCTION_KEYS
    ):
        return True
    mods = set(key.modifiers) - {"alt", "meta"}
    if not mods:
        return key.base not in _KEYPAD_KEYS
    if mods == {"shift"}:
        return key.base == "tab" or (len(key.base) == 1 and key.base.isalpha())
    if mods == {"ctrl"}:
        return key.base in ("space", "backspace") or (
            len(key.base) == 1
            and ((key.base.isascii() and key.base.isalpha()) or key.base in _CTRL_SYMBOLS)
        )
    return False


def _encode(key: _Key, *, application_cursor: bool, application_keypad: bool) -> str:
    base, modifiers = key.base, key.modifiers
    weight = 1 + sum(_MODIFIER_WEIGHTS[mod] for mod in modifiers)
    if base in _CURSOR_KEYS:
        final = _CURSOR_KEYS[base]
        if weight > 1:
            return f"\x1b[1;{weight}{final}"
        return ("\x1bO" if application_cursor else "\x1b[") + final
    if base in _TILDE_KEYS:
        suffix = f";{weight}" if weight > 1 else ""
        return f"\x1b[{_TILDE_KEYS[base]}{suffix}~"
    if base in _SS3_FUNCTION_KEYS:
        final = _SS3_FUNCTION_KEYS[base]
        return f"\x1b[1;{weight}{final}" if weight > 1 else f"\x1bO{final}"
    if base in _KEYPAD_KEYS:
        numeric, application = _KEYPAD_KEYS[base]
        return f"\x1bO{application}" if application_keypad else numeric
    prefix = "\x1b" if modifiers & {"alt", "meta"} else ""
    if "ctrl" in modifiers:
        if base == "space":
            return prefix + "\x00"
        if base == "backspace":
            return prefix + "\x08"
        if base.isascii() and base.isalpha():
            return prefix + chr(ord(base.lower()) - ord("a") + 1)
        return prefix + _CTRL_SYMBOLS[base]
    if "shift" in modifiers:
        if base == "tab":
            return prefix + _PLAIN_KEYS["backtab"]
        return prefix + base.upper()
    return prefix + _PLAIN_KEYS.get(base, base)


def encode_keys(
    names: list[str], *, application_cursor: bool = False, application_keypad: bool = False
) -> bytes:
    """The bytes for pressing `names` in order. Every name is checked first: if any is
    unknown, `InvalidRequest` (UNKNOWN_KEY) names all of them and nothing is encoded."""
    parsed = [_parse(name) for name in names]
    unknown = [name for name, key in zip(names, parsed, strict=True) if key is None]
    if unknown:
        shown = ", ".join(repr(name[:_MAX_NAME_CHARS]) for name in unknown[:20])
        raise InvalidRequest(
            f"Unknown key name{'s' if len(unknown) > 1 else ''}: {shown} "
            "(the terminal keys list names them; any single character is sent as is)",
            reason=Reason.UNKNOWN_KEY,
            extra={"unknown_keys": [name[:_MAX_NAME_CHARS] for name in unknown]},
        )
    return "".join(
        _encode(key, application_cursor=application_cursor, application_keypad=application_keypad)
        for key in parsed
        if key is not None
    ).encode("utf-8", "surrogateescape")


def _key_names() -> tuple[str, ...]:
    names: list[str] = []
    for canonical, aliases in _ALIASES.items():
        names.append(canonical)
        names.extend(aliases)
    names += ["shift+tab", "ctrl+space", "ctrl+backspace"]
    names += [f"ctrl+{letter}" for letter in "abcdefghijklmnopqrstuvwxyz"]
    names += [f"ctrl+{symbol}" for symbol in "@[\\]^_?"]
    names += [f"alt+{letter}" for letter in "abcdefghijklmnopqrstuvwxyz"]
    names += ["alt+enter", "alt+backspace", "alt+tab"]
    modified = [
        *_CURSOR_KEYS,
        "insert",
        "delete",
        "page_up",
        "page_down",
        *(f"f{n}" for n in range(1, 13)),
    ]
    for modifier in ("shift", "alt", "ctrl", "ctrl+shift"):
        names += [f"{modifier}+{key}" for key in modified]
    return tuple(dict.fromkeys(names))


KEY_NAMES: tuple[str, ...] = _key_names()
"""What `GET /keys` lists: canonical names, aliases and the common modifier combinations.
Also accepted: any single printable character, and any modifier combination `_encodable`
allows (e.g. `ctrl+alt+arrow_up`)."""
