"""Program webhooks: validation of the `webhooks` object and delivery to a real HTTP server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from structlog.testing import capture_logs

from hoodyd.config import NotificationsConfig
from hoodyd.errors import InvalidRequest
from hoodyd.polling import poll_until
from hoodyd.programs.webhook_delivery import WebhookDispatcher
from hoodyd.programs.webhooks import validate_webhooks
from hoodyd.schemas.daemon import Program, Webhooks, WebhooksInput

# How long the receiver takes to answer the first event in the one-at-a-time delivery test.
SLOW_ANSWER = 0.3

ServerFactory = Callable[..., Awaitable[TestServer]]


def given(**fields: Any) -> WebhooksInput:
    return msgspec.convert(fields, WebhooksInput)


def check(url: str, *, allow_insecure: bool = False) -> Webhooks | None:
    return validate_webhooks(None, given(urls=[url]), allow_insecure=allow_insecure)


def rejection(url: str, *, allow_insecure: bool = False) -> str:
    with pytest.raises(InvalidRequest) as info:
        check(url, allow_insecure=allow_insecure)
    assert info.value.reason == "INVALID_WEBHOOK"
    assert info.value.status == 400
    return info.value.message


# --------------------------------------------------------------------------------------------
# URL validation


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/hook",
        "https://hooks.example.com:8443/a/b?token=x",
        "HTTPS://Example.COM/",
        "https://8.8.8.8/",
        "https://[2001:4860:4860::8888]/",
        "https://1.1.1.1:443",
        "https://api.example.com.",
        "https://xn--bcher-kva.example/",
        "https://bücher.example/",
    ],
)
def test_public_https_urls_are_accepted(url: str) -> None:
    """HTTPS URLs with DNS names or public IP literals are stored as given."""
    result = check(url)
    assert result is not None
    assert result.urls == [url]


@pytest.mark.parametrize(
    "url", ["http://example.com/hook", "ftp://example.com/", "ws://example.com/", "example.com"]
)
def test_non_https_urls_are_rejected(url: str) -> None:
    """Without allow_insecure only https:// is accepted, with the contract's error text."""
    assert "must use HTTPS" in rejection(url)


def test_https_error_echoes_the_url() -> None:
    """The HTTPS error names the offending URL the way the contract shows it."""
    assert rejection("http://x") == "Webhook URL must use HTTPS: http://x"


@pytest.mark.parametrize(
    "url",
    [
        "https://user:s3cret@example.com/",
        "https://user@example.com/",
        "https://:s3cret@example.com/",
        "https://@example.com/",
    ],
)
def test_userinfo_is_rejected_without_echoing_it(url: str) -> None:
    """Credentials in a URL are refused, and the error masks them."""
    message = rejection(url)
    assert "contains userinfo" in message
    assert "s3cret" not in message
    assert "alice" not in message


def test_userinfo_is_rejected_even_when_insecure_urls_are_allowed() -> None:
    """allow_insecure relaxes scheme and host checks only, never the userinfo rule."""
    assert "contains userinfo" in rejection("http://u:p@127.0.0.1/", allow_insecure=True)


@pytest.mark.parametrize(
    "url",
    [
        "https://localhost/",
        "https://LOCALHOST./",
        "https://api.localhost/",
        "https://127.0.0.1/",
        "https://127.255.0.9:8443/",
        "https://10.1.2.3/",
        "https://172.16.0.1/",
        "https://192.168.1.1/",
        "https://100.64.0.1/",
        "https://100.127.255.254/",
        "https://169.254.169.254/latest/meta-data",
        "https://0.0.0.0/",
        "https://224.0.0.1/",
        "https://255.255.255.255/",
        "https://240.0.0.1/",
        "https://[::1]/",
        "https://[::]/",
        "https://[fd00::1]/",
        "https://[fc00::1]/",
        "https://[fe80::1]/",
        "https://[ff02::1]/",
        "https://[fec0::1]/",
    ],
)
def test_loopback_private_and_special_hosts_are_rejected(url: str) -> None:
    """localhost and IP literals outside public unicast space are refused."""
    assert "reserved IP range" in rejection(url)


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("https://2130706433/", "127.0.0.1"),
        ("https://0x7f000001/", "127.0.0.1"),
        ("https://017700000001/", "127.0.0.1"),
        ("https://0x7f.1/", "127.0.0.1"),
        ("https://0x7F.0x0.0x0.0x1/", "127.0.0.1"),
        ("https://127.1/", "127.0.0.1"),
        ("https://127.0.1/", "127.0.0.1"),
        ("https://0177.0.0.1/", "127.0.0.1"),
        ("https://0177.1/", "127.0.0.1"),
        ("https://012.0.0.1/", "10.0.0.1"),
        ("https://167772161/", "10.0.0.1"),
        ("https://0xa9.0xfe.0xa9.0xfe/", "169.254.169.254"),
        ("https://0/", "0.0.0.0"),
        ("https://0x/", "0.0.0.0"),
        ("https://127.0.0.1./", "127.0.0.1"),
        # fullwidth digits and dots, which IDNA maps to ASCII
        ("https://\uff11\uff12\uff17\uff0e\uff10\uff0e\uff10\uff0e\uff11/", "127.0.0.1"),
    ],
)
def test_numeric_ipv4_spellings_are_decoded_and_rejected(url: str, address: str) -> None:
    """Every inet_aton spelling of a private address is decoded and refused."""
    message = rejection(url)
    assert "reserved IP range" in message
    assert address in message


@pytest.mark.parametrize(
    "url",
    [
        "https://[::ffff:127.0.0.1]/",
        "https://[::ffff:7f00:1]/",
        "https://[::FFFF:10.0.0.1]/",
        "https://[::ffff:192.168.0.1]/",
        "https://[::ffff:169.254.169.254]/",
        "https://[::127.0.0.1]/",
        "https://[64:ff9b::127.0.0.1]/",
        "https://[64:ff9b::7f00:1]/",
        "https://[64:ff9b::a00:1]/",
        "https://[64:ff9b:1::a00:1]/",
        "https://[2002:7f00:1::]/",
        "https://[2002:c0a8:101::1]/",
    ],
)
def test_ipv6_forms_embedding_private_ipv4_are_rejected(url: str) -> None:
    """v4-mapped, v4-compatible, NAT64 and 6to4 forms of private addresses are refused."""
    assert "reserved IP range" in rejection(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://256.1.1.1/",
        "https://1.2.3.4.5/",
        "https://4294967296/",
        "https://08.0.0.1/",
        "https://example.123/",
        "https://%31%32%37.0.0.1/",
        "https://[fe80::1%25eth0]/",
        "https://example.com:99999/",
        "https://example.com:port/",
        "https:///nohost",
        "https://exa mple.com/",
        "https://example.com/\r\nX-Injected: 1",
        "https://evil.example\\@127.0.0.1/",
        "https://example.com/" + "a" * 2100,
    ],
)
def test_malformed_urls_are_rejected(url: str) -> None:
    """Hosts that different parsers could read differently, bad ports and junk are refused."""
    assert "Invalid webhook URL" in rejection(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://localhost/",
        "http://2130706433/",
        "http://[::1]:9000/",
        "https://10.0.0.5/",
    ],
)
def test_allow_insecure_accepts_http_and_private_hosts(url: str) -> None:
    """With allow_insecure (development), http:// and loopback/private hosts are accepted."""
    result = check(url, allow_insecure=True)
    assert result is not None
    assert result.urls == [url]


def test_allow_insecure_still_rejects_other_schemes_and_bad_hosts() -> None:
    """allow_insecure does not admit non-HTTP schemes or malformed IPv4 literals."""
    assert "must use HTTP or HTTPS" in rejection("ftp://127.0.0.1/", allow_insecure=True)
    assert "Invalid webhook URL" in rejection("http://256.0.0.1/", allow_insecure=True)


def test_at_most_five_urls() -> None:
    """Five URLs are accepted and a sixth is refused."""
    urls = [f"https://h{n}.example.com/" for n in range(6)]
    result = validate_webhooks(None, given(urls=urls[:5]), allow_insecure=False)
    assert result is not None
    assert result.urls == urls[:5]
    with pytest.raises(InvalidRequest, match="Too many webhook URLs"):
        validate_webhooks(None, given(urls=urls), allow_insecure=False)


def test_one_bad_url_rejects_the_whole_list() -> None:
    """A list with one private URL among public ones is refused as a whole."""
    with pytest.raises(InvalidRequest, match=r"reserved IP range.*10\.0\.0\.1"):
        validate_webhooks(
            None,
            given(urls=["https://ok.example.com/", "https://10.0.0.1/"]),
            allow_insecure=False,
        )


# --------------------------------------------------------------------------------------------
# events, headers, bounds


@pytest.mark.parametrize(
    ("events", "stored"),
    [
        ("*", ["*"]),
        ("all", ["*"]),
        ("ALL", ["*"]),
        ("All", ["*"]),
        ("running", ["RUNNING"]),
        ("Fatal", ["FATAL"]),
        ("UNKNOWN", ["UNKNOWN"]),
        (["starting", "RUNNING", "running", "Exited"], ["STARTING", "RUNNING", "EXITED"]),
        (["STOPPED", "*"], ["*"]),
        (
            ["STARTING", "RUNNING", "BACKOFF", "STOPPING", "STOPPED", "EXITED", "FATAL"],
            ["STARTING", "RUNNING", "BACKOFF", "STOPPING", "STOPPED", "EXITED", "FATAL"],
        ),
    ],
)
def test_events_are_normalized(events: str | list[str], stored: list[str]) -> None:
    """Event names are case-insensitive, de-duplicated, and any wildcard becomes ["*"]."""
    result = validate_webhooks(None, given(events=events), allow_insecure=False)
    assert result is not None
    assert result.events == stored


@pytest.mark.parametrize(
    "events",
    ["PROCESS_STATE_RUNNING", ["RUNNING", "process_state_exited"], "bogus", ["RUNNING", ""], []],
)
def test_unknown_event_types_are_rejected(events: str | list[str]) -> None:
    """supervisord's PROCESS_STATE_* names, unknown names and an empty list are refused."""
    with pytest.raises(InvalidRequest, match="Invalid event type") as info:
        validate_webhooks(None, given(events=events), allow_insecure=False)
    assert info.value.reason == "INVALID_WEBHOOK"


def test_headers_are_accepted_up_to_ten() -> None:
    """Ten token-named headers are stored; an eleventh is refused."""
    headers = {f"X-Header-{n}": f"value {n}" for n in range(10)}
    result = validate_webhooks(None, given(headers=headers), allow_insecure=False)
    assert result is not None
    assert result.headers == headers
    with pytest.raises(InvalidRequest, match="Too many webhook headers"):
        validate_webhooks(None, given(headers={**headers, "X-Eleven": "v"}), allow_insecure=False)


@pytest.mark.parametrize(
    "name", ["Bad Name", "X-Colon:", "", "X-Ünicode", "X(paren)", "Host", "content-length"]
)
def test_bad_header_names_are_rejected(name: str) -> None:
    """Header names must be HTTP tokens and must not override framing headers."""
    with pytest.raises(InvalidRequest, match="header"):
        validate_webhooks(None, given(headers={name: "v"}), allow_insecure=False)


@pytest.mark.parametrize("value", ["Bearer a\r\nX-Evil: 1", "a\nb", "a\rb", "a\0b"])
def test_header_values_with_cr_lf_nul_are_rejected_without_echo(value: str) -> None:
    """Header values cannot inject lines, and the error never repeats the value."""
    with pytest.raises(InvalidRequest, match="CR, LF or NUL") as info:
        validate_webhooks(None, given(headers={"Authorization": value}), allow_insecure=False)
    assert value not in info.value.message
    assert "Bearer" not in info.value.message


@pytest.mark.parametrize(
    ("fields", "ok"),
    [
        ({"timeout": 1}, True),
        ({"timeout": 60}, True),
        ({"timeout": 0}, False),
        ({"timeout": 61}, False),
        ({"retry": 0}, True),
        ({"retry": 5}, True),
        ({"retry": -1}, False),
        ({"retry": 6}, False),
    ],
)
def test_timeout_and_retry_bounds(fields: dict[str, int], ok: bool) -> None:
    """timeout is 1-60 seconds and retry 0-5, enforced when the request is decoded."""
    if ok:
        result = validate_webhooks(None, given(**fields), allow_insecure=False)
        assert result is not None
        assert msgspec.structs.asdict(result).items() >= fields.items()
    else:
        with pytest.raises(msgspec.ValidationError):
            given(**fields)


# --------------------------------------------------------------------------------------------
# create and edit


def test_create_fills_defaults() -> None:
    """On create, omitted sub-fields take the stored defaults."""
    result = validate_webhooks(None, given(urls=["https://example.com/"]), allow_insecure=False)
    assert result == Webhooks(
        enabled=False,
        urls=["https://example.com/"],
        events=["*"],
        headers={},
        timeout=10,
        retry=3,
    )


def test_edit_deep_merges_and_replaces_lists_whole() -> None:
    """On edit, omitted sub-fields keep their values and a given urls list replaces the old one."""
    current = Webhooks(
        enabled=True,
        urls=["https://a.example.com/", "https://b.example.com/"],
        events=["RUNNING", "FATAL"],
        headers={"Authorization": "Bearer t"},
        timeout=5,
        retry=1,
    )
    result = validate_webhooks(
        current, given(urls=["https://c.example.com/"], retry=4), allow_insecure=False
    )
    assert result == Webhooks(
        enabled=True,
        urls=["https://c.example.com/"],
        events=["RUNNING", "FATAL"],
        headers={"Authorization": "Bearer t"},
        timeout=5,
        retry=4,
    )
    # the stored value is not modified in place
    assert current.urls == ["https://a.example.com/", "https://b.example.com/"]
    toggled = validate_webhooks(current, given(enabled=False), allow_insecure=False)
    assert toggled == msgspec.structs.replace(current, enabled=False)
    assert validate_webhooks(current, given(), allow_insecure=False) == current


def test_edit_with_null_clears_and_failed_edit_raises() -> None:
    """`webhooks: null` clears the object; an invalid edit raises instead of merging."""
    current = Webhooks(enabled=True, urls=["https://a.example.com/"])
    assert validate_webhooks(current, None, allow_insecure=False) is None
    with pytest.raises(InvalidRequest, match="must use HTTPS"):
        validate_webhooks(current, given(urls=["http://a.example.com/"]), allow_insecure=False)
    assert current.urls == ["https://a.example.com/"]


def test_stored_urls_are_not_revalidated_on_unrelated_edits() -> None:
    """Editing other sub-fields does not re-check URLs that were already accepted."""
    current = Webhooks(enabled=True, urls=["http://127.0.0.1:9/"])
    result = validate_webhooks(current, given(timeout=2), allow_insecure=False)
    assert result is not None
    assert result.urls == ["http://127.0.0.1:9/"]


# --------------------------------------------------------------------------------------------
# delivery


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    at: float


@dataclass
class HookServer:
    """A real HTTP server on 127.0.0.1 that records requests and answers from a script."""

    statuses: list[int] = field(default_factory=lambda: [200])
    delay: float = 0.0
    received: list[Received] = field(default_factory=list)
    answered: int = 0  # requests answered (after `delay`)
    server: TestServer | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.received.append(
            Received(
                request.path,
                {k.lower(): v for k, v in request.headers.items()},
                await request.json(),
                time.monotonic(),
            )
        )
        if self.delay:
            await asyncio.sleep(self.delay)
        self.answered += 1
        index = min(len(self.received), len(self.statuses)) - 1
        status = self.statuses[index]
        if status in (301, 302, 307, 308):
            raise web.HTTPFound("/elsewhere")
        return web.Response(status=status, text="ok")

    def url(self, path: str = "/hook") -> str:
        assert self.server is not None
        return str(self.server.make_url(path))

    async def wait_for(self, count: int, timeout: float = 10) -> None:
        async def arrived() -> bool | None:
            return True if len(self.received) >= count else None

        if not await poll_until(arrived, timeout=timeout, interval=0.01):
            raise AssertionError(f"expected {count} requests, got {len(self.received)}")


@pytest.fixture
async def hooks(aiohttp_server: ServerFactory) -> HookServer:
    recorder = HookServer()
    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", recorder.handle)
    recorder.server = await aiohttp_server(app, host="127.0.0.1")
    return recorder


def make_program(urls: list[str], **webhooks: Any) -> Program:
    hooks_fields: dict[str, Any] = {"enabled": True, "urls": urls, "retry": 0, "timeout": 5}
    hooks_fields.update(webhooks)
    return Program(
        id=7, name="web", command="sleep 30", user="root", webhooks=Webhooks(**hooks_fields)
    )


def make_dispatcher(**config: Any) -> WebhookDispatcher:
    settings: dict[str, Any] = {"allow_insecure_urls": True}
    settings.update(config)
    return WebhookDispatcher(
        NotificationsConfig(**settings), hostname="box-1", version="0.1.0-test"
    )


async def test_delivery_posts_the_payload_with_the_programs_headers(hooks: HookServer) -> None:
    """One event is POSTed as the contract's JSON payload with the program's headers."""
    dispatcher = make_dispatcher()
    await dispatcher.start()
    program = make_program(
        [hooks.url("/hook")], headers={"Authorization": "Bearer s3cret", "X-Team": "ops"}
    )
    try:
        with capture_logs() as logs:
            before = datetime.now(UTC)
            dispatcher.notify(program, "RUNNING", from_state="STARTING", pid=4242)
            await hooks.wait_for(1)
            after = datetime.now(UTC)
            await dispatcher.close()
    finally:
        await dispatcher.close()
    [request] = hooks.received
    assert request.path == "/hook"
    body = dict(request.body)
    timestamp = datetime.fromisoformat(body.pop("timestamp"))
    assert timestamp.utcoffset() == timedelta(0)
    # taken while the event was handled: between the test's own clock readings (the
    # payload's is cut to milliseconds)
    assert before.replace(microsecond=before.microsecond // 1000 * 1000) <= timestamp <= after
    assert body == {
        "event": "RUNNING",
        "program": {"id": 7, "name": "web"},
        "from_state": "STARTING",
        "pid": 4242,
        "hostname": "box-1",
        "metadata": {"daemon_manager_version": "0.1.0-test"},
    }
    assert request.headers["authorization"] == "Bearer s3cret"
    assert request.headers["x-team"] == "ops"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == "hoodyd/0.1.0-test"
    [delivered] = [entry for entry in logs if entry["event"] == "webhook_delivered"]
    assert delivered["url"] == hooks.url("/hook")
    assert (delivered["webhook_event"], delivered["attempt"], delivered["status"]) == (
        "RUNNING",
        1,
        200,
    )
    assert all("s3cret" not in repr(entry) for entry in logs)


async def test_every_url_gets_the_event(hooks: HookServer) -> None:
    """An event goes to each of the program's URLs, with null from_state and pid when absent."""
    dispatcher = make_dispatcher()
    await dispatcher.start()
    try:
        dispatcher.notify(
            make_program([hooks.url("/a"), hooks.url("/b")]), "fatal", from_state=None, pid=None
        )
        await hooks.wait_for(2)
    finally:
        await dispatcher.close()
    assert sorted(r.path for r in hooks.received) == ["/a", "/b"]
    for request in hooks.received:
        assert request.body["event"] == "FATAL"
        assert request.body["from_state"] is None
        assert request.body["pid"] is None


async def test_failed_deliveries_are_retried_the_configured_number_of_times(
    hooks: HookServer,
) -> None:
    """A URL answering 500 is tried 1 + retry times with growing pauses, then given up."""
    hooks.statuses = [500]
    dispatcher = make_dispatcher()
    await dispatcher.start()
    try:
        with capture_logs() as logs:
            dispatcher.notify(
                make_program([hooks.url()], retry=2), "EXITED", from_state="RUNNING", pid=1
            )
            await hooks.wait_for(3)

            async def gave_up() -> bool | None:
                ended = [e for e in logs if e["event"] == "webhook_failed" and not e["will_retry"]]
                return True if ended else None

            assert await poll_until(gave_up, timeout=10, interval=0.01), logs
            # close waits for the queue: an attempt still to come would be made (or
            # abandoned, which it logs) before it returns
            await dispatcher.close()
    finally:
        await dispatcher.close()
    assert len(hooks.received) == 3
    assert not [entry for entry in logs if entry["event"] == "webhook_deliveries_abandoned"]
    gaps = [b.at - a.at for a, b in zip(hooks.received, hooks.received[1:], strict=False)]
    assert gaps[0] >= 0.15
    assert gaps[1] >= 0.35
    failures = [entry for entry in logs if entry["event"] == "webhook_failed"]
    assert [(f["attempt"], f["status"], f["will_retry"]) for f in failures] == [
        (1, 500, True),
        (2, 500, True),
        (3, 500, False),
    ]
    assert not [entry for entry in logs if entry["event"] == "webhook_delivered"]


async def test_a_retry_that_succeeds_is_logged_as_delivered(hooks: HookServer) -> None:
    """After two 500s a 200 ends the retries and logs the attempt that succeeded."""
    hooks.statuses = [500, 503, 200]
    dispatcher = make_dispatcher()
    await dispatcher.start()
    try:
        with capture_logs() as logs:
            dispatcher.notify(
                make_program([hooks.url()], retry=5), "BACKOFF", from_state="STARTING", pid=None
            )
            await hooks.wait_for(3)
            await dispatcher.close()
    finally:
        await dispatcher.close()
    assert len(hooks.received) == 3
    [delivered] = [entry for entry in logs if entry["event"] == "webhook_delivered"]
    assert delivered["attempt"] == 3
    assert delivered["status"] == 200


async def test_client_errors_and_redirects_are_not_retried_or_followed(
    hooks: HookServer,
) -> None:
    """A 404 ends delivery at once, and a redirect is neither followed nor retried."""
    hooks.statuses = [404, 302]
    dispatcher = make_dispatcher()
    await dispatcher.start()
    try:
        with capture_logs() as logs:
            dispatcher.notify(
                make_program([hooks.url("/one")], retry=3), "RUNNING", from_state="STARTING", pid=5
            )
            await hooks.wait_for(1)
            await dispatcher.close()
    finally:
        await dispatcher.close()
    second = make_dispatcher()
    await second.start()
    try:
        with capture_logs() as more:
            second.notify(
                make_program([hooks.url("/two")], retry=3), "RUNNING", from_state="STARTING", pid=5
            )
            await hooks.wait_for(2)
            await second.close()
    finally:
        await second.close()
    assert [r.path for r in hooks.received] == ["/one", "/two"]
    statuses = [
        (e["status"], e["will_retry"]) for e in logs + more if e["event"] == "webhook_failed"
    ]
    assert statuses == [(404, False), (302, False)]


async def test_the_per_request_timeout_is_honoured(hooks: HookServer) -> None:
    """A server slower than webhooks.timeout fails the attempt after that many seconds."""
    hooks.delay = 60  # far beyond the 1 s timeout and the test's own hang guard
    dispatcher = make_dispatcher()
    await dispatcher.start()
    try:
        with capture_logs() as logs:
            started = time.monotonic()
            dispatcher.notify(
                make_program([hooks.url()], timeout=1, retry=0),
                "RUNNING",
                from_state=None,
                pid=None,
            )

            async def failed() -> bool | None:
                return True if any(e["event"] == "webhook_failed" for e in logs) else None

            # a hang guard 15 times the timeout: without it the attempt would last a minute
            assert await poll_until(failed, timeout=15, interval=0.02), "no webhook_failed"
            elapsed = time.monotonic() - started
            # the attempt failed while the server was still holding the request
            assert len(hooks.received) == 1 and hooks.answered == 0
    finally:
        await dispatcher.close(timeout=0.1)
    # a lower bound only, which no slowness can break: the attempt was not given up before
    # its timeout (less a margin for timer granularity)
    assert elapsed >= 0.9
    [failure] = [e for e in logs if e["event"] == "webhook_failed"]
    assert failure["status"] is None
    assert "timeout" in failure["error"]


@pytest.mark.parametrize(
    ("config", "webhooks", "event"),
    [
        ({"enabled": False}, {}, "RUNNING"),
        ({}, {"enabled": False}, "RUNNING"),
        ({}, {"events": ["FATAL", "EXITED"]}, "RUNNING"),
        ({}, {"urls": []}, "RUNNING"),
    ],
)
async def test_disabled_or_unsubscribed_events_are_not_sent(
    hooks: HookServer, config: dict[str, Any], webhooks: dict[str, Any], event: str
) -> None:
    """Nothing is queued when notifications or the program's webhooks are off or the event is
    not subscribed; a matching event afterwards is the only request the server sees."""
    dispatcher = make_dispatcher(**config)
    await dispatcher.start()
    try:
        fields = dict(webhooks)
        program = make_program(fields.pop("urls", [hooks.url("/skip")]), **fields)
        dispatcher.notify(program, event, from_state=None, pid=None)
        assert dispatcher.pending == 0
        if config.get("enabled", True):
            dispatcher.notify(
                make_program([hooks.url("/sent")]), "FATAL", from_state=None, pid=None
            )
            await hooks.wait_for(1)
        await dispatcher.close()
    finally:
        await dispatcher.close()
    assert all(r.path == "/sent" for r in hooks.received)


async def test_program_without_webhooks_is_ignored() -> None:
    """A program with no webhooks object queues nothing."""
    dispatcher = make_dispatcher()
    program = Program(id=1, name="plain", command="true", user="root")
    dispatcher.notify(program, "RUNNING", from_state="STARTING", pid=3)
    assert dispatcher.pending == 0
    await dispatcher.close()


async def test_queue_is_bounded_and_drops_the_oldest(hooks: HookServer) -> None:
    """Beyond queue_size the oldest deliveries are dropped with a log event; the newest remain."""
    dispatcher = make_dispatcher(queue_size=2)
    program = make_program([hooks.url()])
    with capture_logs() as logs:
        for pid in range(1, 6):
            dispatcher.notify(program, "RUNNING", from_state="STARTING", pid=pid)
    assert dispatcher.pending == 2
    assert dispatcher.dropped == 3
    dropped = [e for e in logs if e["event"] == "webhook_dropped"]
    assert len(dropped) == 3
    await dispatcher.start()
    try:
        await hooks.wait_for(2)
        await dispatcher.close()
    finally:
        await dispatcher.close()
    assert sorted(r.body["pid"] for r in hooks.received) == [4, 5]


async def test_close_is_bounded_when_a_server_hangs(hooks: HookServer) -> None:
    """close() gives pending deliveries a bounded time and then cancels them."""
    hooks.delay = 60  # far beyond close's 0.5 s and the test's own hang guard
    dispatcher = make_dispatcher()
    await dispatcher.start()
    program = make_program([hooks.url()], timeout=120)
    for pid in range(10):
        dispatcher.notify(program, "RUNNING", from_state=None, pid=pid)
    await hooks.wait_for(1)
    with capture_logs() as logs:
        # a hang guard 20 times close's own bound: a close that waited for the deliveries
        # would wait for the server's minute
        await asyncio.wait_for(dispatcher.close(timeout=0.5), 10)
    assert hooks.answered == 0  # closed while the server still held the request
    assert any(e["event"] == "webhook_deliveries_abandoned" for e in logs)
    dispatcher.notify(program, "RUNNING", from_state=None, pid=99)
    assert dispatcher.pending == 0


async def test_insecure_urls_are_refused_at_delivery_when_not_allowed(hooks: HookServer) -> None:
    """A stored http:// URL is not contacted when allow_insecure_urls is off."""
    dispatcher = make_dispatcher(allow_insecure_urls=False)
    await dispatcher.start()
    try:
        with capture_logs() as logs:
            dispatcher.notify(make_program([hooks.url()]), "RUNNING", from_state=None, pid=None)
            await dispatcher.close()
    finally:
        await dispatcher.close()
    assert hooks.received == []
    [rejected] = [e for e in logs if e["event"] == "webhook_rejected"]
    assert "must use HTTPS" in rejected["error"]


async def test_unreachable_urls_fail_with_a_connection_error() -> None:
    """A URL nobody listens on is logged as failed with the error, after its retries."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dispatcher = make_dispatcher()
    await dispatcher.start()
    try:
        with capture_logs() as logs:
            dispatcher.notify(
                make_program([f"http://127.0.0.1:{port}/"], retry=1),
                "STOPPED",
                from_state="STOPPING",
                pid=8,
            )
            await dispatcher.close()
    finally:
        await dispatcher.close()
    failures = [e for e in logs if e["event"] == "webhook_failed"]
    assert [(f["attempt"], f["status"]) for f in failures] == [(1, None), (2, None)]
    assert all(f["error"] for f in failures)


async def test_one_programs_events_arrive_in_the_order_they_happened(
    aiohttp_server: ServerFactory,
) -> None:
    """A receiver slow to take the first event still gets a program's events in order, though
    four workers deliver: the next event is not sent before the previous one is answered."""
    arrived: list[str] = []

    async def slow_first(request: web.Request) -> web.Response:
        event = (await request.json())["event"]
        if not arrived and event == "STARTING":
            await asyncio.sleep(SLOW_ANSWER)  # a slow receiver, not a wait
        arrived.append(event)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", slow_first)
    server = await aiohttp_server(app, host="127.0.0.1")
    dispatcher = make_dispatcher()
    await dispatcher.start()
    try:
        program = make_program([str(server.make_url("/hook"))])
        states = ["STARTING", "RUNNING", "STOPPING", "STOPPED"]
        for state in states:
            dispatcher.notify(program, state, from_state=None, pid=None)

        async def all_arrived() -> bool | None:
            return True if len(arrived) >= len(states) else None

        await poll_until(all_arrived, timeout=10, interval=0.01)
    finally:
        await dispatcher.close()
    assert arrived == states
