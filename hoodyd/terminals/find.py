"""Regular-expression search over what a terminal shows, reported in cell positions.

Patterns are checked and compiled here, on the daemon's side, before one is sent to a
terminal's holder (`holder.screen.search` matches it there, with a timeout, so a pattern that
backtracks holds that holder and nobody else). `find` runs both steps over a local screen.
Zero-length matches (`^`, `a*` on other text) are not hits: they mark nothing on screen.
"""

from __future__ import annotations

import regex  # type: ignore[import-untyped,unused-ignore]

from hoodyd.errors import InvalidRequest, Reason
from hoodyd.terminals.holder.screen import (
    DEFAULT_FIND_TIMEOUT,
    MAX_LIMIT,
    FindResult,
    FindScope,
    Hit,
    SearchTimeout,
    scope_lines,
    search,
)
from hoodyd.terminals.screen import VirtualScreen

__all__ = [
    "DEFAULT_TIMEOUT",
    "MAX_LIMIT",
    "MAX_PATTERN_BYTES",
    "FindResult",
    "FindScope",
    "Hit",
    "check_limit",
    "compile_pattern",
    "find",
    "scope_lines",
    "timeout_error",
]

MAX_PATTERN_BYTES = 1024
DEFAULT_TIMEOUT = DEFAULT_FIND_TIMEOUT


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


def check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequest(
            f"limit must be between 1 and {MAX_LIMIT}",
            reason=Reason.OUT_OF_RANGE,
            extra={"field": "limit"},
        )


def timeout_error(timeout: float) -> InvalidRequest:
    return InvalidRequest(
        f"pattern took too long to match (over {round(timeout * 1000)} ms); "
        "simplify it (avoid nested repetition such as (a+)+)",
        reason=Reason.PATTERN_TIMEOUT,
    )


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
    check_limit(limit)
    compiled = compile_pattern(pattern, case_insensitive=case_insensitive)
    screen.effective_scroll_offset(scroll_offset)  # refuses a negative offset
    try:
        return search(
            screen,
            compiled,
            scope=scope,
            limit=limit,
            scroll_offset=scroll_offset,
            timeout=timeout,
        )
    except SearchTimeout as exc:
        raise timeout_error(timeout) from exc
