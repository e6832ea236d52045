"""Program webhooks: validating a program's `webhooks` object and the safety of its URLs.

`validate_webhooks` turns the request shape (`WebhooksInput`, fields UNSET when omitted) into
the stored shape (`Webhooks`), merging into the current value on edit. Delivery is
`hoodyd.programs.webhook_delivery`, which checks each URL again with `check_url` before it
sends.

URL safety is judged on the literal URL only: DNS names are never resolved (a name that
resolves to a private address is the operator's own choice), but every spelling of an IP
literal that the resolver would accept (`2130706433`, `0x7f.1`, `127.1`, `0177.0.0.1`,
`[::ffff:127.0.0.1]`, `[64:ff9b::7f00:1]`) is decoded and checked.
"""

from __future__ import annotations

import ipaddress
import re
import string
from typing import Final

import yarl
from msgspec import UNSET

from hoodyd.errors import InvalidRequest, Reason
from hoodyd.schemas.daemon import WEBHOOK_EVENTS, Webhooks, WebhooksInput

MAX_URLS: Final = 5
MAX_HEADERS: Final = 10
MAX_URL_LENGTH: Final = 2048
MAX_HEADER_VALUE_LENGTH: Final = 4096
WILDCARD_EVENTS: Final = frozenset({"*", "ALL"})
REASON: Final = Reason.INVALID_WEBHOOK

# RFC 9110 token characters
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
# Framing and hop-by-hop headers are set by the HTTP client; a program overriding them could
# only produce a malformed request.
_FORBIDDEN_HEADERS: Final = frozenset(
    {
        "content-length",
        "transfer-encoding",
        "host",
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
    }
)
_NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
_V4_COMPATIBLE = ipaddress.IPv6Network("::/96")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _invalid(message: str) -> InvalidRequest:
    return InvalidRequest(message, reason=REASON)


def validate_webhooks(
    current: Webhooks | None, given: WebhooksInput | None, *, allow_insecure: bool
) -> Webhooks | None:
    """Validate `given` and merge it into `current` (None on create); `given=None` clears.

    Omitted sub-fields keep their current values (or the defaults on create); `urls`,
    `events` and `headers` given in the request replace the stored ones whole.
    """
    if given is None:
        return None
    base = current if current is not None else Webhooks()
    enabled = base.enabled if given.enabled is UNSET else given.enabled
    urls = list(base.urls) if given.urls is UNSET else _validate_urls(given.urls, allow_insecure)
    events = list(base.events) if given.events is UNSET else normalize_events(given.events)
    headers = dict(base.headers) if given.headers is UNSET else _validate_headers(given.headers)
    timeout = base.timeout if given.timeout is UNSET else given.timeout
    retry = base.retry if given.retry is UNSET else given.retry
    return Webhooks(
        enabled=enabled, urls=urls, events=events, headers=headers, timeout=timeout, retry=retry
    )


def normalize_events(events: str | list[str]) -> list[str]:
    """Upper-case, de-duplicated event names, or `["*"]` when any wildcard is given."""
    names = [events] if isinstance(events, str) else list(events)
    if not names:
        raise _invalid("Invalid event type: events must not be empty")
    result: list[str] = []
    for name in names:
        upper = name.strip().upper()
        if upper in WILDCARD_EVENTS:
            return ["*"]
        if upper not in WEBHOOK_EVENTS:
            # supervisord's own names (PROCESS_STATE_RUNNING) are refused on purpose: the API
            # speaks bare state names, and accepting both would make stored values ambiguous
            raise _invalid(
                f"Invalid event type: {name!r} (allowed: *, all, {', '.join(WEBHOOK_EVENTS)})"
            )
        if upper not in result:
            result.append(upper)
    return result


def _validate_urls(urls: list[str], allow_insecure: bool) -> list[str]:
    if len(urls) > MAX_URLS:
        raise _invalid(f"Too many webhook URLs: {len(urls)} (at most {MAX_URLS})")
    for url in urls:
        check_url(url, allow_insecure=allow_insecure)
    return list(urls)


def _validate_headers(headers: dict[str, str]) -> dict[str, str]:
    if len(headers) > MAX_HEADERS:
        raise _invalid(f"Too many webhook headers: {len(headers)} (at most {MAX_HEADERS})")
    for name, value in headers.items():
        if not _TOKEN.match(name):
            raise _invalid(f"Invalid webhook header name: {name[:100]!r}")
        if name.lower() in _FORBIDDEN_HEADERS:
            raise _invalid(f"Webhook header {name} cannot be set")
        # values are never echoed: they often carry tokens
        if any(ch in value for ch in "\r\n\0"):
            raise _invalid(f"Invalid webhook header value for {name}: contains CR, LF or NUL")
        if len(value) > MAX_HEADER_VALUE_LENGTH:
            raise _invalid(
                f"Webhook header value for {name} is too long (at most "
                f"{MAX_HEADER_VALUE_LENGTH} characters)"
            )
    return dict(headers)


def display_url(url: str) -> str:
    """The URL as safe to show in errors and logs: userinfo masked, no query, bounded length."""
    shown = url.split("#", 1)[0].split("?", 1)[0]
    scheme, sep, rest = shown.partition("://")
    if sep:
        authority, slash, path = rest.partition("/")
        if "@" in authority:
            authority = "***@" + authority.rpartition("@")[2]
        shown = f"{scheme}{sep}{authority}{slash}{path}"
    elif "@" in shown:
        shown = "***"
    return shown if len(shown) <= 200 else shown[:200] + "..."


def check_url(url: str, *, allow_insecure: bool) -> None:
    """Raise `InvalidRequest` unless `url` is an acceptable webhook target.

    The URL is parsed with yarl, the parser aiohttp uses for the request, so the host checked
    here is the host that delivery connects to.
    """
    shown = display_url(url)
    if len(url) > MAX_URL_LENGTH:
        raise _invalid(f"Invalid webhook URL: longer than {MAX_URL_LENGTH} characters")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F or ch == "\\" for ch in url):
        raise _invalid(f"Invalid webhook URL: contains whitespace or control characters: {shown}")
    try:
        parsed = yarl.URL(url)
        parsed.port  # noqa: B018 - a malformed port raises only when read
    except (ValueError, TypeError) as exc:
        raise _invalid(f"Invalid webhook URL: {exc}: {shown}") from exc
    scheme = parsed.scheme.lower()
    if scheme != "https" and not (allow_insecure and scheme == "http"):
        if scheme in ("http", "https") or not allow_insecure:
            raise _invalid(f"Webhook URL must use HTTPS: {shown}")
        raise _invalid(f"Webhook URL must use HTTP or HTTPS: {shown}")
    # read from the string too: yarl drops an empty userinfo ("https://@host/") silently
    authority = re.split(r"[/?#]", url.partition("://")[2], maxsplit=1)[0]
    if "@" in authority or parsed.raw_user or parsed.raw_password:
        raise _invalid(f"Webhook URL contains userinfo: {shown}")
    raw_host = parsed.raw_host
    if not raw_host:
        raise _invalid(f"Invalid webhook URL: no host: {shown}")
    if "%" in raw_host:
        # percent-encoded hosts and IPv6 zone ids are decoded differently by different layers
        raise _invalid(f"Invalid webhook URL: percent sign in host: {shown}")
    host = raw_host.lower().removesuffix(".")
    address = parse_ip_literal(host)
    if address is None and _ends_in_number(host):
        raise _invalid(f"Invalid webhook URL: malformed IPv4 address {host}: {shown}")
    if allow_insecure:
        return
    if host == "localhost" or host.endswith(".localhost"):
        raise _invalid(f"Webhook URL host {host} is in a reserved IP range: {shown}")
    if address is not None and is_reserved_address(address):
        raise _invalid(f"Webhook URL host {address} is in a reserved IP range: {shown}")


def parse_ip_literal(host: str) -> IPAddress | None:
    """The IP address a host string denotes to the resolver, or None for a DNS name.

    IPv4 follows inet_aton (and the WHATWG URL host parser): one to four dot-separated parts, each
    decimal, `0x` hex or leading-zero octal, the last part filling the remaining bytes.
    """
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host)
        except ValueError:
            return None
    parts = host.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    numbers: list[int] = []
    for part in parts:
        number = _ipv4_number(part)
        if number is None:
            return None
        numbers.append(number)
    *leading, last = numbers
    if any(n > 255 for n in leading) or last >= 256 ** (5 - len(numbers)):
        return None
    value = last
    for index, n in enumerate(leading):
        value += n << (8 * (3 - index))
    return ipaddress.IPv4Address(value)


def _ipv4_number(part: str) -> int | None:
    if not part:
        return None
    if part[:2] in ("0x", "0X"):
        digits, base, alphabet = part[2:], 16, string.hexdigits
        if not digits:
            return 0  # "0x" alone is zero for inet_aton and WHATWG alike
    elif len(part) > 1 and part[0] == "0":
        digits, base, alphabet = part[1:], 8, string.octdigits
    else:
        digits, base, alphabet = part, 10, string.digits
    if not all(ch in alphabet for ch in digits):
        return None
    return int(digits, base)


def _ends_in_number(host: str) -> bool:
    # WHATWG: a host whose last label is numeric is an IPv4 address or an error, never a name
    last = host.rsplit(".", 1)[-1]
    return bool(last) and ((last.isascii() and last.isdigit()) or _ipv4_number(last) is not None)


def is_reserved_address(address: IPAddress) -> bool:
    """True for addresses that are not public unicast: loopback, private, CGNAT, link-local,
    ULA, unspecified, multicast, documentation and reserved ranges.

    IPv6 forms that embed an IPv4 address (v4-mapped, v4-compatible, NAT64, 6to4) are judged
    by the embedded address too, since that is where the packets end up.
    """
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped
        if mapped is not None:
            return is_reserved_address(mapped)
        embedded: ipaddress.IPv4Address | None = address.sixtofour
        if address in _NAT64_WELL_KNOWN or (address in _V4_COMPATIBLE and int(address) > 1):
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None and is_reserved_address(embedded):
            return True
        if address in _NAT64_LOCAL or address.is_site_local:
            return True
    return (
        not address.is_global
        or address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_unspecified
        or address.is_reserved
    )
