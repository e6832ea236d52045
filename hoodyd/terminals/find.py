"""Regular-expression search over what a terminal shows, reported in cell positions.

Patterns are compiled with `regex`, whose matching takes a timeout: a pathological pattern
(catastrophic backtracking) fails with an error instead of holding the event loop.
Zero-length matches (`^`, `a*` on other text) are not hits: they mark nothing on screen.
"""

from __future__ import annotations

import time
from typing import Literal

import msgspec
import regex  # type: ignore[import-untyped,unused-ignore]

from hoodyd.errors import InvalidRequest, Reason
from hoodyd.terminals.screen import ScreenLine, VirtualScreen

FindScope = Literal["screen", "scrollback", "all"]

MAX_PATTERN_BYTES = 1024
MAX_LIMIT = 1000
DEFAULT_TIMEOUT = 0.25


class Hit(msgspec.Struct, frozen=True):
    """One match. `row` is a viewport row for scope `screen`; for `scrollback` and `all` it
    indexes that scope's lines, oldest first (in `all`, live row r is
    `scrollback_count + r`). `col` and `length` count cells: a wide character is two."""

    row: int
    col: int
    length: int
    text: str
    line: str


class FindResult(msgspec.Struct, frozen=True):
    hits: list[Hit]
    total: int  # every match in the scope; more than len(hits) when truncated
    truncated: bool
    scope: FindScope
    scrollback_count: int


# The regex module unrolls counted repetitions when it compiles: `(?:a{1000}){1000}` takes
# 0.4 s to compile, `(?:a{65535}){65535}` does not finish, and compiling cannot be given a
# timeout as matching can. So a pattern's counted repetitions, multiplied along their
# nesting, are bounded before it is compiled.
MAX_COUNTED_REPEATS = 10_000
_COUNT = regex.compile(r"\{(\d*)(?:,(\d*))?\}")


def counted_repeats(pattern: str) -> int:
    """The largest product of `{m,n}` counts along one nesting of groups (an upper bound of
    how many times the compiled pattern repeats a piece)."""
    stack: list[int] = [1]  # the largest product inside each open group, innermost last
    last = 1  # the product of the atom just read (a group closing carries its inside's)
    best = 1
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            index += 2
            last = 1
            continue
        if char == "[":
            end = index + 1
            if end < len(pattern) and pattern[end] == "^":
                end += 1
            if end < len(pattern) and pattern[end] == "]":
                end += 1
            while end < len(pattern) and pattern[end] != "]":
                end += 2 if pattern[end] == "\\" else 1
            index = end + 1
            last = 1
            continue
        if char == "(":
            stack.append(1)
        elif char == ")" and len(stack) > 1:
            last = stack.pop()
            index += 1
            continue
        elif char == "{":
            match = _COUNT.match(pattern, index)
            if match is not None:
                count = max((int(text) for text in match.groups() if text), default=1)
                product = last * max(count, 1)
                stack[-1] = max(stack[-1], product)
                best = max(best, product, *stack)
                index = match.end()
                last = 1
                continue
        else:
            stack[-1] = max(stack[-1], last)
        last = 1
        index += 1
    return max(best, *stack)


def compile_pattern(pattern: str, *, case_insensitive: bool = False) -> regex.Pattern[str]:
    """Check and compile a search pattern, or raise `InvalidRequest` saying what is wrong."""
    if pattern == "":
        raise InvalidRequest("pattern is empty", reason=Reason.INVALID_PATTERN)
    try:
        size = len(pattern.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise InvalidRequest(
            "pattern is not valid UTF-8 text", reason=Reason.INVALID_PATTERN
        ) from exc
    if size > MAX_PATTERN_BYTES:
        raise InvalidRequest(
            f"pattern is {size} bytes, more than the {MAX_PATTERN_BYTES} allowed",
            reason=Reason.PATTERN_TOO_LONG,
        )
    repeats = counted_repeats(pattern)
    if repeats > MAX_COUNTED_REPEATS:
        raise InvalidRequest(
            f"pattern repeats a piece {repeats} times over ({{n}} inside {{n}}); at most "
            f"{MAX_COUNTED_REPEATS} are allowed",
            reason=Reason.INVALID_PATTERN,
        )
    flags = regex.IGNORECASE if case_insensitive else 0
    try:
        return regex.compile(pattern, flags)
    except (regex.error, ValueError, OverflowError, RecursionError) as exc:
        raise InvalidRequest(f"invalid pattern: {exc}", reason=Reason.INVALID_PATTERN) from exc


def scope_lines(
    screen: VirtualScreen, scope: FindScope, scroll_offset: int = 0
) -> list[ScreenLine]:
    if scope == "screen":
        return screen.viewport_lines(scroll_offset)
    if scope == "scrollback":
        return screen.scrollback_lines()
    return screen.scrollback_lines() + screen.live_lines()


def find(
    screen: VirtualScreen,
    pattern: str,
    *,
    scope: FindScope = "screen",
    limit: int = 100,
    case_insensitive: bool = False,
    scroll_offset: int = 0,
    timeout: float = DEFAULT_TIMEOUT,
) -> FindResult:
    """Every match of `pattern` in `scope`, the first `limit` of them as hits.

    The whole search shares one time budget of `timeout` seconds.
    """
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequest(
            f"limit must be between 1 and {MAX_LIMIT}",
            reason=Reason.OUT_OF_RANGE,
            extra={"field": "limit"},
        )
    compiled = compile_pattern(pattern, case_insensitive=case_insensitive)
    lines = scope_lines(screen, scope, scroll_offset)
    deadline = time.monotonic() + timeout
    hits: list[Hit] = []
    total = 0
    for row, line in enumerate(lines):
        text = line.text.rstrip(" ")
        if not text:
            continue
        remaining = deadline - time.monotonic()
        try:
            if remaining <= 0:
                raise TimeoutError
            for match in compiled.finditer(text, timeout=remaining):
                start, end = match.span()
                if start == end:
                    continue
                total += 1
                if len(hits) < limit:
                    col = line.start_col(start)
                    hits.append(
                        Hit(
                            row=row,
                            col=col,
                            length=line.end_col(end - 1) - col,
                            text=match.group(),
                            line=text,
                        )
                    )
        except TimeoutError as exc:
            raise InvalidRequest(
                f"pattern took too long to match (over {round(timeout * 1000)} ms); "
                "simplify it (avoid nested repetition such as (a+)+)",
                reason=Reason.PATTERN_TIMEOUT,
            ) from exc
    return FindResult(
        hits=hits,
        total=total,
        truncated=total > len(hits),
        scope=scope,
        scrollback_count=screen.scrollback_count,
    )
