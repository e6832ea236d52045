"""The in-band marker scanner and the offset-addressed output ring."""

from __future__ import annotations

import asyncio

from hoodyd.terminals.holder.markers import (
    CommandStarted,
    ContinuationPrompt,
    MarkerScanner,
    Output,
    PromptDrawn,
    PromptEnd,
)
from hoodyd.terminals.holder.ring import OutputRing

NONCE = "n0nce"


def marker(body: str) -> bytes:
    return f"\x1b]6973;{NONCE};{body}\x07".encode()


def test_markers_are_reported_and_stripped_from_output() -> None:
    """Start, prompt and continuation markers become events; the bytes around stay output."""
    scanner = MarkerScanner(NONCE)
    data = b"echo hi\r\n" + marker("S") + b"hi\r\n" + marker("D;3;7") + b"$ " + marker("C")
    assert scanner.feed(data) == [
        Output(b"echo hi\r\n"),
        CommandStarted(),
        Output(b"hi\r\n"),
        PromptDrawn(3, 7),
        Output(b"$ "),
        ContinuationPrompt(),
    ]


def test_a_marker_cut_across_reads_is_reassembled() -> None:
    """A marker split at every possible byte is still found, and no byte of output is lost."""
    data = b"before" + marker("D;0;1") + b"after"
    for cut in range(1, len(data)):
        scanner = MarkerScanner(NONCE)
        events = scanner.feed(data[:cut]) + scanner.feed(data[cut:])
        output = b"".join(e.data for e in events if isinstance(e, Output))
        assert output == b"beforeafter", cut
        assert [e for e in events if not isinstance(e, Output)] == [PromptDrawn(0, 1)]


def test_markers_with_another_nonce_or_shape_pass_through_as_output() -> None:
    """Marker-shaped bytes a program prints (wrong nonce, bad fields) are plain output."""
    scanner = MarkerScanner(NONCE)
    forged = b"\x1b]6973;other;D;0;9\x07" + marker("D;x") + b"\x1b]0;title\x07"
    events = scanner.feed(forged)
    assert events == [Output(forged)]


def test_prompt_without_a_count_has_no_sequence() -> None:
    """POSIX sh prompts carry only the status; the session counts them itself."""
    assert MarkerScanner(NONCE).feed(marker("D;127")) == [PromptDrawn(127, None)]


def test_ring_keeps_absolute_offsets_and_reports_dropped_bytes() -> None:
    """Old bytes fall out of a full ring, and a reader learns how many it missed."""
    ring = OutputRing(capacity=8)
    ring.append(b"0123456789")
    assert (ring.start, ring.end) == (2, 10)
    chunk = ring.read(0, 100)
    assert (chunk.offset, chunk.data, chunk.next_offset, chunk.dropped) == (2, b"23456789", 10, 2)
    assert ring.read(8, 1).data == b"8"
    assert ring.read(10, 5).data == b""


async def test_ring_wait_returns_on_new_output_or_timeout() -> None:
    """A waiter past the end wakes on the next append, and gives up after its timeout."""
    ring = OutputRing(capacity=64)
    assert await ring.wait_beyond(0, 0.01) is False
    waiter = asyncio.ensure_future(ring.wait_beyond(0, 5))
    await asyncio.sleep(0)
    ring.append(b"x")
    assert await waiter is True


def test_prompt_marks_and_prompt_ends_are_reported() -> None:
    """A prompt reports the mark typed with the line (empty: a line typed otherwise), POSIX
    sh's empty count is no count, and the end of a prompt's own text is an event."""
    scanner = MarkerScanner(NONCE)
    assert scanner.feed(marker("D;7;3;42") + marker("D;0;4;") + marker("D;1;;9") + marker("P")) == [
        PromptDrawn(7, 3, 42),
        PromptDrawn(0, 4, 0),
        PromptDrawn(1, None, 9),
        PromptEnd(),
    ]
