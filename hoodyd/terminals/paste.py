"""Text pasted into a terminal, encoded the way xterm.js sends a paste.

Line breaks (`\\n`, `\\r\\n`) become `\\r`, as a terminal sends Enter. Control characters
other than tab and those line breaks (C0, DEL, C1: ESC among them) are removed in every
mode: a paste is text, never keystrokes such as Escape or Ctrl+C, and so never an escape
sequence; `/press` and `/write` exist for those. With bracketed paste (the caller asked
for it and the program enabled DECSET 2004) the text is wrapped in `ESC [ 200 ~` …
`ESC [ 201 ~`; since no ESC survives inside, the paste can never close the bracket early
and have the rest run as typed commands.
"""

from __future__ import annotations

import re

PASTE_START = "\x1b[200~"
PASTE_END = "\x1b[201~"

_LINE_BREAK = re.compile(r"\r\n|\n")
_CONTROL = re.compile("[\x00-\x08\x0b-\x0c\x0e-\x1f\x7f-\x9f]")


def sanitize_paste(text: str) -> str:
    """`text` as a terminal would send it typed: CR line breaks, no control characters."""
    return _CONTROL.sub("", _LINE_BREAK.sub("\r", text))


def encode_paste(text: str, *, bracketed_requested: bool, bracketed_enabled: bool) -> bytes:
    """The bytes of pasting `text`; bracketed only when requested and the program enabled
    bracketed paste. Lone surrogates (invalid text) are dropped."""
    body = sanitize_paste(text).encode("utf-8", "ignore")
    if bracketed_requested and bracketed_enabled:
        return PASTE_START.encode() + body + PASTE_END.encode()
    return body
