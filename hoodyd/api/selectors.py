"""Query strings and go paths into Selectors: the one parser `/search`, `/run` and the go paths
share (the Selector Struct declares every field's type; `hoodyd.api.decoding` derives the rest).

Query strings: every Selector field is a parameter; `q` and `name` alias `app`; `source` and
`tags` may be repeated or comma-joined; `dry_run` and `redirect` take `true`/`false`/`1`/`0`
(a bare key is true). An unknown parameter is a 400, so a misspelt `dry_run` never turns into
a run. `/search` takes only the search fields (`SEARCH_QUERY_FIELDS`).

`/resolve` (the public client's beta.10 and later) takes the Selector without the fields
that only a scheduled run reads: `defer_pid`, `defer_start_time_ticks`, `defer_timeout_ms`,
`defer_poll_ms`, `redirect` and `redirect_to` are a 400 there, in the query and in a JSON
body alike (that client never sends them; a caller who does expects a run, which `/run`
makes), and `print_curl` takes only `hoody-run`.

Go paths (`/go/{rest}`) come in two forms, told apart by the first segment:

- key-value when the first segment is a Selector field name (`app/firefox/os/linux/...`):
  segments pair up as key, value; `app` must be among them;
- positional otherwise: `{app}`, `{os}/{app}`, `{os}/{source}/{app}`,
  `{os}/{source}/{kind}/{app}`, where `os` must be an Os value.

No Os value is a field name, so the two never overlap: `/go/app` runs an app named `app`,
`/go/linux/os` an app named `os`, and `/go/app/os` (key-value) also an app named `os`.
An encoded slash (`%2F`) separates segments as `/` does: public clients percent-encode the
whole path they were given (`/go/linux%2Fnix%2Ffirefox`). Each segment is then
percent-decoded once; a value that holds a slash goes in `/run`'s query instead.
Query parameters supply what the path does not; giving a field in both is a 400.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from aiohttp import web

from hoodyd.api.decoding import decode_params, query_params
from hoodyd.errors import InvalidRequest, Reason
from hoodyd.schemas.run import ENUM_VALUES, SEARCH_QUERY_FIELDS, SELECTOR_FIELDS, Selector

APP_ALIASES = ("q", "name")
RUN_QUERY = frozenset(SELECTOR_FIELDS) | frozenset(APP_ALIASES)
SEARCH_QUERY = frozenset(SEARCH_QUERY_FIELDS) | frozenset(APP_ALIASES) | {"origin", "format"}
GO_QUERY = RUN_QUERY - {"app", *APP_ALIASES}
TERMINAL_GO_QUERY = GO_QUERY - {"terminal_id"}
# what only a scheduled run reads: not fields of `/resolve`
RUN_ONLY_FIELDS = (
    "defer_pid", "defer_start_time_ticks", "defer_timeout_ms", "defer_poll_ms",
    "redirect", "redirect_to",
)  # fmt: skip
RESOLVE_QUERY = RUN_QUERY - frozenset(RUN_ONLY_FIELDS)
RESOLVE_PRINT_CURL = ("hoody-run",)
OS_VALUES = frozenset(ENUM_VALUES["os"])
_LIST_FIELDS = frozenset({"source", "tags"})
# the forms a go path can take when positional, by segment count
# `/` and its encoding both separate the segments of a raw go path
_SEGMENT_SEPARATOR = re.compile(r"/|%2[Ff]")
_POSITIONAL = {1: ("app",), 2: ("os", "app"), 3: ("os", "source", "app"),
               4: ("os", "source", "kind", "app")}  # fmt: skip


def selector_from_params(params: dict[str, list[str]]) -> Selector:
    """A Selector from query-style parameters (each name with its list of values)."""
    named = {("app" if name in APP_ALIASES else name): values for name, values in params.items()}
    if "app" not in named:
        raise InvalidRequest(
            "missing field 'app' (query parameter app, q or name)",
            reason=Reason.MISSING_FIELD,
            extra={"field": "app"},
        )
    return decode_params(named, Selector, lenient_flags=True)


def query_selector_params(request: web.Request, allowed: frozenset[str]) -> dict[str, list[str]]:
    """The query's Selector parameters, refusing unknown ones and an app given twice."""
    unknown = sorted(set(request.query) - allowed)
    if unknown:
        raise InvalidRequest(
            f"Unknown query parameter(s): {', '.join(unknown)}", reason=Reason.UNKNOWN_PARAMETER
        )
    aliases = [name for name in ("app", *APP_ALIASES) if name in request.query]
    if len(aliases) > 1:
        raise InvalidRequest(
            f"give the app once ({', '.join(aliases)} are aliases)",
            reason=Reason.DUPLICATE_PARAMETER,
        )
    return query_params(request)


def form_params(params: dict[str, list[str]], allowed: frozenset[str]) -> dict[str, list[str]]:
    """A form post's fields, by the query string's rules (unknown and repeated app refused)."""
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise InvalidRequest(
            f"Unknown form field(s): {', '.join(unknown)}", reason=Reason.UNKNOWN_PARAMETER
        )
    aliases = [name for name in ("app", *APP_ALIASES) if name in params]
    if len(aliases) > 1 or any(len(params[name]) > 1 for name in aliases):
        raise InvalidRequest("give the app once", reason=Reason.DUPLICATE_PARAMETER)
    return params


def go_path_params(rest: str, allowed: frozenset[str]) -> dict[str, list[str]]:
    """The fields a go path names (see the module docstring for the two forms)."""
    segments = [unquote(part) for part in _SEGMENT_SEPARATOR.split(rest)]
    if segments and segments[-1] == "":
        segments.pop()  # a trailing slash
    if not segments or any(part == "" for part in segments):
        raise InvalidRequest(
            f"invalid go path {rest!r}: empty segment", reason=Reason.INVALID_GO_PATH
        )
    if len(segments) > 1 and segments[0] in SELECTOR_FIELDS:
        return _key_value(rest, segments, allowed)
    names = _POSITIONAL.get(len(segments))
    if names is None:
        raise InvalidRequest(
            f"invalid go path {rest!r}: positional paths are {{app}}, {{os}}/{{app}}, "
            "{os}/{source}/{app} or {os}/{source}/{kind}/{app}",
            reason=Reason.INVALID_GO_PATH,
        )
    if len(segments) > 1 and segments[0] not in OS_VALUES:
        raise InvalidRequest(
            f"invalid go path {rest!r}: the first of several positional segments is the os "
            f"({', '.join(ENUM_VALUES['os'])}), or a key of the key-value form",
            reason=Reason.INVALID_GO_PATH,
        )
    return {name: [value] for name, value in zip(names, segments, strict=True)}


def _key_value(rest: str, segments: list[str], allowed: frozenset[str]) -> dict[str, list[str]]:
    if len(segments) % 2:
        raise InvalidRequest(
            f"invalid go path {rest!r}: key-value segments come in pairs "
            f"(key {segments[-1]!r} has no value)",
            reason=Reason.INVALID_GO_PATH,
        )
    params: dict[str, list[str]] = {}
    for key, value in zip(segments[::2], segments[1::2], strict=True):
        if key != "app" and key not in allowed:
            raise InvalidRequest(
                f"invalid go path {rest!r}: {key!r} is not a key this path takes",
                reason=Reason.INVALID_GO_PATH,
            )
        if key in params and key not in _LIST_FIELDS:
            raise InvalidRequest(
                f"invalid go path {rest!r}: {key!r} is given twice", reason=Reason.INVALID_GO_PATH
            )
        params.setdefault(key, []).append(value)
    if "app" not in params:
        raise InvalidRequest(
            f"invalid go path {rest!r}: key-value paths need app/<name>",
            reason=Reason.INVALID_GO_PATH,
        )
    return params


def merge_params(path: dict[str, list[str]], query: dict[str, list[str]]) -> dict[str, list[str]]:
    both = sorted(set(path) & set(query))
    if both:
        raise InvalidRequest(
            f"{', '.join(both)} given in both the path and the query",
            reason=Reason.DUPLICATE_PARAMETER,
        )
    return {**query, **path}


def resolve_selector(selector: Selector) -> Selector:
    """`selector` as `/resolve` takes it: no field of a scheduled run, `print_curl` only
    `hoody-run` (a JSON body holds what the query cannot: the Struct knows these fields)."""
    given = [name for name in RUN_ONLY_FIELDS if getattr(selector, name) is not None]
    if given:
        raise InvalidRequest(
            f"Unknown field(s) for /resolve: {', '.join(given)} (only /run schedules a "
            "command into a terminal)",
            reason=Reason.UNKNOWN_FIELD,
        )
    if selector.print_curl is not None and selector.print_curl not in RESOLVE_PRINT_CURL:
        raise InvalidRequest(
            f"invalid value {selector.print_curl!r} for 'print_curl': allowed values are "
            + ", ".join(RESOLVE_PRINT_CURL),
            reason=Reason.INVALID_ENUM,
        )
    return selector
