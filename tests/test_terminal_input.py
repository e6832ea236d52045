"""Driving a TUI like a person: named keys, mouse reports and pastes reach real programs in
real PTYs as they expect them; `find` locates text in cells and bounds its time."""

from __future__ import annotations

import multiprocessing
import multiprocessing.pool
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hoodyd.errors import Conflict, InvalidRequest, Reason
from hoodyd.schemas.automation import MouseEvent
from hoodyd.terminals.find import FindScope, find
from hoodyd.terminals.keys import KEY_NAMES, encode_keys
from hoodyd.terminals.mouse import encode_mouse
from hoodyd.terminals.paste import PASTE_END, PASTE_START, encode_paste
from hoodyd.terminals.screen import MouseEncoding, MouseTracking, VirtualScreen
from tests.terminal_pty import PtyProgram

DATA = Path(__file__).parent / "data"
CURSES_PROBE = [sys.executable, str(DATA / "curses_probe.py")]
RAW_PROBE = [sys.executable, str(DATA / "raw_probe.py")]
# How long vim is watched for a quit it must not make: a program that stays running sends no
# event, so an absence can only be observed over a fixed window.
QUIT_WINDOW = 0.2


def start(
    programs: list[PtyProgram],
    argv: list[str],
    ready: str,
    *,
    cols: int = 80,
    rows: int = 24,
    cwd: str | None = None,
) -> PtyProgram:
    program = PtyProgram(argv, cols=cols, rows=rows, cwd=cwd)
    programs.append(program)
    program.wait_for_text(ready)
    return program


def probe_events(program: PtyProgram) -> list[str]:
    """The events the curses probe listed, without their numbers."""
    lines = program.screen.snapshot().lines[4:]
    return [line.split(": ", 1)[1] for line in lines if ": " in line]


def wait_for_events(program: PtyProgram, count: int) -> list[str]:
    program.wait_for(lambda _: len(probe_events(program)) >= count, f"{count} probe events")
    return probe_events(program)


def press(program: PtyProgram, *names: str) -> None:
    screen = program.screen
    program.send(
        encode_keys(
            list(names),
            application_cursor=screen.application_cursor,
            application_keypad=screen.application_keypad,
        )
    )


def click(program: PtyProgram, *events: MouseEvent) -> None:
    screen = program.screen
    program.send(
        encode_mouse(
            list(events),
            tracking=screen.mouse_tracking,
            encoding=screen.mouse_encoding,
            cols=screen.cols,
            rows=screen.rows,
        )
    )


# --- keys -----------------------------------------------------------------------------


def test_named_keys_reach_a_curses_program_as_the_keys_it_knows(
    programs: list[PtyProgram],
) -> None:
    """ncurses decodes every encoded special key as the key it was named after."""
    probe = start(programs, CURSES_PROBE, "PROBE READY", cols=60, rows=30)
    keys = {
        "arrow_up": "KEY KEY_UP",
        "Down": "KEY KEY_DOWN",
        "left": "KEY KEY_LEFT",
        "arrow-right": "KEY KEY_RIGHT",
        "home": "KEY KEY_HOME",
        "end": "KEY KEY_END",
        "PageUp": "KEY KEY_PPAGE",
        "pgdn": "KEY KEY_NPAGE",
        "insert": "KEY KEY_IC",
        "del": "KEY KEY_DC",
        "F1": "KEY KEY_F(1)",
        "f5": "KEY KEY_F(5)",
        "f12": "KEY KEY_F(12)",
        "shift+tab": "KEY KEY_BTAB",
        "kp_enter": "KEY KEY_ENTER",
        "ctrl+arrow_left": "KEY kLFT5",
        "shift+arrow_right": "KEY KEY_SRIGHT",
        "alt+arrow_up": "KEY kUP3",
        "ctrl+shift+f3": "KEY KEY_F(39)",
        "backspace": "KEY KEY_BACKSPACE",
        "ctrl+a": "CHR '\\x01'",
        "Tab": "CHR '\\t'",
        "enter": "CHR '\\r'",
        "space": "CHR ' '",
        "ä": "CHR '\\xe4'",
    }
    for count, (name, expected) in enumerate(keys.items(), start=1):
        press(probe, name)
        assert wait_for_events(probe, count)[-1] == expected, name


def test_keypad_keys_follow_the_programs_keypad_mode(programs: list[PtyProgram]) -> None:
    """With the keypad in application mode kp_5 is ESC O u; after ESC > it is a plain 5."""
    raw = start(programs, RAW_PROBE, "RAW READY", cols=60, rows=10)
    raw.send(b"x")  # the probe echoes its input: use that channel to switch its screen mode
    raw.wait_for_text("b'x'")
    raw.screen.feed(b"\x1b=")
    press(raw, "kp_5", "kp_plus")
    raw.wait_for_text("b'\\x1bOu\\x1bOk'")
    raw.screen.feed(b"\x1b>")
    press(raw, "kp_5", "kp_plus")
    raw.wait_for_text("b'5+'")


@pytest.mark.parametrize(
    ("names", "application_cursor", "expected"),
    [
        (["enter"], False, b"\r"),
        (["Return", "ESC", "BackSpace", "tab"], False, b"\r\x1b\x7f\t"),
        (["arrow_up", "down", "RIGHT", "Left"], False, b"\x1b[A\x1b[B\x1b[C\x1b[D"),
        (["arrow_up", "down", "RIGHT", "Left"], True, b"\x1bOA\x1bOB\x1bOC\x1bOD"),
        (["home", "end"], True, b"\x1bOH\x1bOF"),
        (["home", "end"], False, b"\x1b[H\x1b[F"),
        (
            ["f1", "f4", "f5", "f10", "f11", "f12"],
            False,
            b"\x1bOP\x1bOS\x1b[15~\x1b[21~\x1b[23~\x1b[24~",
        ),
        (
            ["page_up", "page-down", "pgup", "insert", "delete"],
            False,
            b"\x1b[5~\x1b[6~\x1b[5~\x1b[2~\x1b[3~",
        ),
        (
            ["ctrl+c", "Ctrl-D", "control+z", "ctrl+[", "ctrl+\\", "ctrl+]", "ctrl+^", "ctrl+_"],
            False,
            b"\x03\x04\x1a\x1b\x1c\x1d\x1e\x1f",
        ),
        (["ctrl+space", "ctrl+@", "ctrl+backspace"], False, b"\x00\x00\x08"),
        (["alt+x", "meta+enter", "alt+ctrl+c"], False, b"\x1bx\x1b\r\x1b\x03"),
        (
            ["shift+arrow_up", "alt+arrow_down", "ctrl+arrow_left", "ctrl+shift+arrow_right"],
            True,
            b"\x1b[1;2A\x1b[1;3B\x1b[1;5D\x1b[1;6C",
        ),
        (
            ["shift+f1", "ctrl+f5", "alt+delete", "shift+tab", "backtab"],
            False,
            b"\x1b[1;2P\x1b[15;5~\x1b[3;3~\x1b[Z\x1b[Z",
        ),
        (["a", "A", "shift+a", ":", " ", "中", "é"], False, "aAA: 中é".encode()),
        (
            ["kp_0", "kp_9", "kp_decimal", "kp_divide", "kp_multiply", "kp_minus", "kp_enter"],
            False,
            b"09./*-\r",
        ),
    ],
)
def test_key_encodings(names: list[str], application_cursor: bool, expected: bytes) -> None:
    """Each name encodes to the bytes xterm sends for it."""
    assert encode_keys(names, application_cursor=application_cursor) == expected


def test_application_keypad_encodes_ss3() -> None:
    """With DECKPAM keypad keys are ESC O p..y, M, k, m, j, o, n."""
    names = [
        "kp_0",
        "kp_9",
        "kp_enter",
        "kp_plus",
        "kp_minus",
        "kp_multiply",
        "kp_divide",
        "kp_decimal",
    ]
    assert encode_keys(names, application_keypad=True) == (
        b"\x1bOp\x1bOy\x1bOM\x1bOk\x1bOm\x1bOj\x1bOo\x1bOn"
    )


def test_unknown_keys_are_all_named_and_nothing_is_encoded() -> None:
    """One unknown name rejects the request; the error lists every unknown name."""
    with pytest.raises(InvalidRequest) as caught:
        encode_keys(["enter", "bogus", "ctrl+enter", "f13", "", "\x01", "kp_5", "shift+kp_5"])
    error = caught.value
    assert error.reason == Reason.UNKNOWN_KEY
    assert error.extra["unknown_keys"] == ["bogus", "ctrl+enter", "f13", "", "\x01", "shift+kp_5"]
    assert "'bogus'" in error.message and "'f13'" in error.message


def test_key_names_list_every_accepted_name_but_single_characters() -> None:
    """GET /keys lists no single characters, no duplicates, and every listed name encodes."""
    assert len(KEY_NAMES) == len(set(KEY_NAMES)) > 100
    assert all(len(name) > 1 for name in KEY_NAMES)
    for name in (
        "enter",
        "return",
        "escape",
        "esc",
        "arrow_up",
        "up",
        "page_down",
        "pgdn",
        "f1",
        "f12",
        "ctrl+c",
        "alt+x",
        "shift+tab",
        "kp_enter",
        "ctrl+arrow_left",
    ):
        assert name in KEY_NAMES
    for name in KEY_NAMES:
        assert encode_keys([name], application_cursor=True, application_keypad=True)


# --- mouse ----------------------------------------------------------------------------


def test_mouse_events_reach_a_curses_program_at_their_cells(programs: list[PtyProgram]) -> None:
    """ncurses decodes presses, releases, wheel turns, modifiers and far columns (SGR) at
    the cells they were sent to."""
    probe = start(programs, CURSES_PROBE, "PROBE READY", cols=250, rows=30)
    assert probe.screen.mouse_tracking is not None
    sent = [
        (MouseEvent(type="down", row=3, col=7), "MOUSE 3 7 BUTTON1_PRESSED"),
        (MouseEvent(type="up", row=3, col=7), "MOUSE 3 7 BUTTON1_RELEASED"),
        (MouseEvent(type="click", row=9, col=240), "MOUSE 9 240 BUTTON1_CLICKED"),
        (MouseEvent(type="scroll", row=5, col=50, direction="up"), "MOUSE 5 50 BUTTON4_PRESSED"),
        (MouseEvent(type="scroll", row=5, col=51), "MOUSE 5 51 BUTTON5_PRESSED"),
        (
            MouseEvent(type="down", row=2, col=3, button=3, modifiers=["ctrl"]),
            "MOUSE 2 3 BUTTON3_PRESSED|BUTTON_CTRL",
        ),
        (
            MouseEvent(type="down", row=1, col=1, button=2, modifiers=["shift", "alt"]),
            "MOUSE 1 1 BUTTON2_PRESSED|BUTTON_ALT|BUTTON_SHIFT",
        ),
    ]
    for count, (event, expected) in enumerate(sent, start=1):
        click(probe, event)  # one report per write: ncurses merges a batch into clicks
        assert wait_for_events(probe, count)[-1] == expected


@pytest.mark.parametrize(
    ("modes", "tracking", "encoding"),
    [
        ("9", "x10", "default"),
        ("1000", "normal", "default"),
        ("1002 1005", "button", "utf8"),
        ("1003 1006", "any", "sgr"),
        ("1000 1015", "normal", "urxvt"),
    ],
)
def test_mouse_reports_follow_the_modes_a_program_enabled(
    programs: list[PtyProgram], modes: str, tracking: str, encoding: str
) -> None:
    """The screen sees the modes a raw program enables and the program receives exactly the
    reports encoded for them."""
    raw = start(programs, [*RAW_PROBE, *modes.split()], "RAW READY", cols=80, rows=24)
    screen = raw.screen
    assert (screen.mouse_tracking, screen.mouse_encoding) == (tracking, encoding)
    events = [
        MouseEvent(type="down", row=4, col=10),
        MouseEvent(type="move", row=5, col=11),
        MouseEvent(type="up", row=5, col=11),
    ]
    data = encode_mouse(
        events,
        tracking=screen.mouse_tracking,
        encoding=screen.mouse_encoding,
        cols=screen.cols,
        rows=screen.rows,
    )
    raw.send(data)
    raw.wait_for_text(ascii(data)[:20])
    assert ascii(data).encode() in raw.output


def mouse(
    events: list[MouseEvent],
    tracking: MouseTracking | None = "normal",
    encoding: MouseEncoding = "default",
    cols: int = 300,
    rows: int = 300,
) -> bytes:
    return encode_mouse(events, tracking=tracking, encoding=encoding, cols=cols, rows=rows)


def test_mouse_encodings_byte_for_byte() -> None:
    """Classic, UTF-8, SGR and urxvt forms of a press and release at row 4, col 9."""
    click_event = [MouseEvent(type="click", row=4, col=9)]
    assert mouse(click_event) == b"\x1b[M *%\x1b[M#*%"
    assert mouse(click_event, encoding="utf8") == b"\x1b[M *%\x1b[M#*%"
    assert mouse(click_event, encoding="sgr") == b"\x1b[<0;10;5M\x1b[<0;10;5m"
    assert mouse(click_event, encoding="urxvt") == b"\x1b[32;10;5M\x1b[35;10;5M"
    far = [MouseEvent(type="down", row=0, col=250)]
    assert mouse(far) == b"\x1b[M \xff!"  # capped at 223
    assert mouse(far, encoding="utf8") == b"\x1b[M " + chr(32 + 251).encode() + b"!"
    assert mouse(far, encoding="sgr") == b"\x1b[<0;251;1M"


def test_mouse_wheel_modifiers_and_repeat() -> None:
    """Wheel turns are buttons 64/65, repeated `amount` times; modifiers add 4/8/16."""
    scroll = [
        MouseEvent(
            type="scroll", row=0, col=0, direction="down", amount=3, modifiers=["shift", "control"]
        )
    ]
    assert mouse(scroll, encoding="sgr") == b"\x1b[<85;1;1M" * 3
    up = [MouseEvent(type="scroll", row=0, col=0, button=4)]
    assert mouse(up, encoding="sgr") == b"\x1b[<64;1;1M"
    assert mouse([MouseEvent(type="scroll", row=0, col=0)], encoding="sgr") == b"\x1b[<65;1;1M"


def test_mouse_motion_is_sent_only_when_the_mode_reports_it() -> None:
    """1000 drops moves; 1002 reports moves while a button is held; 1003 always; X10
    reports presses only, without modifiers."""
    move = MouseEvent(type="move", row=1, col=1)
    drag = [
        MouseEvent(type="down", row=0, col=0, button=3),
        move,
        MouseEvent(type="up", row=1, col=1, button=3),
        move,
    ]
    assert mouse(drag, "normal", "sgr") == b"\x1b[<2;1;1M\x1b[<2;2;2m"
    assert mouse(drag, "button", "sgr") == b"\x1b[<2;1;1M\x1b[<34;2;2M\x1b[<2;2;2m"
    assert mouse(drag, "any", "sgr") == (b"\x1b[<2;1;1M\x1b[<34;2;2M\x1b[<2;2;2m\x1b[<35;2;2M")
    press_with_ctrl = [MouseEvent(type="click", row=0, col=0, modifiers=["ctrl"])]
    assert mouse(press_with_ctrl, "x10") == b"\x1b[M !!"


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (MouseEvent(type="click", row=24, col=0), "outside the 24x80 screen"),
        (MouseEvent(type="down", row=0, col=80), "outside the 24x80 screen"),
        (MouseEvent(type="down", row=0, col=0, button=4), "button 1, 2 or 3"),
        (MouseEvent(type="scroll", row=0, col=0, button=1), "button 4 (up) or 5 (down)"),
        (MouseEvent(type="click", row=0, col=0, direction="up"), "scroll events only"),
    ],
)
def test_invalid_mouse_events_are_refused_before_anything_is_sent(
    event: MouseEvent, message: str
) -> None:
    """Every event is checked first; the error names the event and what is wrong."""
    fine = MouseEvent(type="click", row=0, col=0)
    with pytest.raises(InvalidRequest, match=re.escape(message)) as caught:
        mouse([fine, event], cols=80, rows=24)
    assert caught.value.reason == Reason.INVALID_MOUSE_EVENT
    assert caught.value.extra["event_index"] == 1


def test_mouse_without_reporting_enabled_is_a_conflict() -> None:
    """A program that has not asked for mouse reports gets none: MOUSE_NOT_ENABLED."""
    with pytest.raises(Conflict, match="has not enabled mouse reporting") as caught:
        mouse([MouseEvent(type="click", row=0, col=0)], tracking=None)
    assert caught.value.reason == Reason.MOUSE_NOT_ENABLED


def test_mouse_event_decoding_enforces_limits() -> None:
    """The Struct refuses negative cells, bad buttons, amounts and modifiers on decode."""
    import msgspec

    decode = msgspec.json.Decoder(MouseEvent).decode
    assert decode(b'{"type":"click","row":1,"col":2}').button is None
    for body in (
        b'{"type":"click","row":-1,"col":0}',
        b'{"type":"drag","row":0,"col":0}',
        b'{"type":"scroll","row":0,"col":0,"amount":21}',
        b'{"type":"down","row":0,"col":0,"button":6}',
        b'{"type":"down","row":0,"col":0,"modifiers":["hyper"]}',
        b'{"type":"down","row":0,"col":0,"x":1}',
    ):
        with pytest.raises(msgspec.ValidationError):
            decode(body)


# --- paste ----------------------------------------------------------------------------


def test_bracketed_paste_reaches_the_program_wrapped(programs: list[PtyProgram]) -> None:
    """A program with 2004 on receives the text between the markers, newlines as CR."""
    raw = start(programs, [*RAW_PROBE, "2004"], "RAW READY", cols=80, rows=10)
    assert raw.screen.bracketed_paste
    raw.send(
        encode_paste(
            "one\ntwo\r\nthree",
            bracketed_requested=True,
            bracketed_enabled=raw.screen.bracketed_paste,
        )
    )
    raw.wait_for_text("201~")
    assert b"b'\\x1b[200~one\\rtwo\\rthree\\x1b[201~'" in raw.output


def test_a_paste_cannot_end_the_bracket_and_type_commands_into_vim(
    programs: list[PtyProgram], tmp_path: Path
) -> None:
    """A pasted end marker followed by `:q!` lands in vim's buffer as text; vim keeps
    running."""
    vim = start(
        programs,
        ["vim", "-u", "NONE", "-N", "-i", "NONE", "-n", "pasted.txt"],
        "pasted.txt",
        cols=60,
        rows=10,
        cwd=str(tmp_path),
    )
    assert vim.screen.bracketed_paste
    vim.send(
        encode_paste(
            "hello\nworld\x1b[201~\x1b:q!\r",
            bracketed_requested=True,
            bracketed_enabled=vim.screen.bracketed_paste,
        )
    )
    vim.wait_for(lambda s: s.snapshot().lines[:2] == ["hello", "world[201~:q!"], "the paste")
    time.sleep(QUIT_WINDOW)
    assert vim.process.poll() is None and vim.screen.alt_screen


def test_plain_paste_when_not_bracketed() -> None:
    """Without 2004 (or when not requested) the text goes unwrapped."""
    assert encode_paste("a\nb", bracketed_requested=True, bracketed_enabled=False) == b"a\rb"
    assert encode_paste("a\nb", bracketed_requested=False, bracketed_enabled=True) == b"a\rb"
    assert (
        encode_paste(
            "tab\there\x03\x1b[A\x7f\x9b", bracketed_requested=False, bracketed_enabled=False
        )
        == b"tab\there[A"
    )
    assert encode_paste("emoji 👍 中文", bracketed_requested=True, bracketed_enabled=True) == (
        b"\x1b[200~" + "emoji 👍 中文".encode() + b"\x1b[201~"
    )


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.characters(codec="utf-8"),
            st.sampled_from(["\x1b[201~", "\x1b[200~", "\x1b", "[201~", "\r\n", "\n", "\x9b201~"]),
        )
    ).map("".join)
)
def test_a_paste_never_ends_its_bracket_early(text: str) -> None:
    """Whatever the text, the end marker appears once, last; no ESC or LF inside."""
    data = encode_paste(text, bracketed_requested=True, bracketed_enabled=True)
    assert data.startswith(PASTE_START.encode()) and data.endswith(PASTE_END.encode())
    inner = data[len(PASTE_START) : -len(PASTE_END)]
    assert b"\x1b" not in inner and b"\n" not in inner
    assert data.count(PASTE_END.encode()) == 1
    plain = encode_paste(text, bracketed_requested=False, bracketed_enabled=True)
    assert plain == inner


# --- find -----------------------------------------------------------------------------


def screen_with(*chunks: bytes, cols: int = 30, rows: int = 5) -> VirtualScreen:
    screen = VirtualScreen(cols, rows, scrollback_lines=1000)
    for chunk in chunks:
        screen.feed(chunk)
    return screen


def test_find_reports_cells_not_string_indexes() -> None:
    """After wide characters a hit's col and length count cells."""
    screen = screen_with("中文 error: 失败 here\r\nno match\r\nerror again".encode())
    result = find(screen, r"error: \S+")
    assert [(hit.row, hit.col, hit.length, hit.text) for hit in result.hits] == [
        (0, 5, 11, "error: 失败")
    ]
    assert result.hits[0].line == "中文 error: 失败 here"
    assert (result.total, result.truncated, result.scope) == (1, False, "screen")


def test_find_scopes_limit_and_case() -> None:
    """screen, scrollback and all number their rows differently; limit truncates; the
    search can ignore case."""
    screen = screen_with(b"".join(b"Item %d\r\n" % n for n in range(12)), rows=5)
    assert screen.scrollback_count == 8
    on_screen = find(screen, "item", case_insensitive=True)
    assert [hit.row for hit in on_screen.hits] == [0, 1, 2, 3]
    assert find(screen, "item").hits == []
    back = find(screen, r"Item \d+", scope="scrollback", limit=3)
    assert [(hit.row, hit.text) for hit in back.hits] == [
        (0, "Item 0"),
        (1, "Item 1"),
        (2, "Item 2"),
    ]
    assert (back.total, back.truncated, back.scrollback_count) == (8, True, 8)
    everything = find(screen, r"Item 1\d", scope="all")
    assert [(hit.row, hit.text) for hit in everything.hits] == [(10, "Item 10"), (11, "Item 11")]
    scrolled = find(screen, "Item", scroll_offset=2)
    assert scrolled.hits[0].line == "Item 6"


def test_find_skips_empty_matches() -> None:
    """A pattern that matches the empty string finds only real text."""
    screen = screen_with(b"aaa b")
    assert [(hit.col, hit.text) for hit in find(screen, "a*").hits] == [(0, "aaa")]


@pytest.mark.parametrize(
    ("pattern", "reason", "message"),
    [
        ("(unclosed", Reason.INVALID_PATTERN, "invalid pattern: missing )"),
        ("", Reason.INVALID_PATTERN, "pattern is empty"),
        ("a" * 1025, Reason.PATTERN_TOO_LONG, "1025 bytes"),
        ("é" * 513, Reason.PATTERN_TOO_LONG, "1026 bytes"),
        ("\ud800", Reason.INVALID_PATTERN, "not valid UTF-8"),
    ],
)
def test_find_refuses_bad_patterns(pattern: str, reason: Reason, message: str) -> None:
    """Oversized, empty and invalid patterns fail with a reason and the regex's message."""
    with pytest.raises(InvalidRequest) as caught:
        find(screen_with(b"x"), pattern)
    assert caught.value.reason == reason
    assert message in caught.value.message


def test_find_accepts_a_pattern_of_exactly_1024_bytes() -> None:
    """1024 bytes is within the limit."""
    pattern = "x" + "(?:y)?" * 170 + "y??"
    assert len(pattern.encode()) == 1024
    assert find(screen_with(b"x"), pattern).total == 1


def test_find_limit_is_bounded() -> None:
    """limit outside 1..1000 is refused."""
    for limit in (0, 1001):
        with pytest.raises(InvalidRequest, match="limit"):
            find(screen_with(b"x"), "x", limit=limit)


# How long a search may run before the test fails as hung: forty times the 0.25 s budget,
# a hang guard and not a threshold (timings live in bench/). Without the budget these
# patterns backtrack for hours over such a screen.
HANG_GUARD = 10.0


def find_outcome(
    text: bytes, cols: int, rows: int, pattern: str, scope: FindScope
) -> tuple[Reason, str] | None:
    """In the guard's worker: the reason and message `find` refused with, None if it answered."""
    try:
        find(screen_with(text, cols=cols, rows=rows), pattern, scope=scope)
    except InvalidRequest as error:
        return error.reason, error.message
    return None


@pytest.fixture(scope="module")
def searcher() -> Iterator[multiprocessing.pool.Pool]:
    """A worker process for searches that may not end: the test waits on it within
    HANG_GUARD, and a search still running at the end is killed, not waited for."""
    pool = multiprocessing.get_context("spawn").Pool(1)
    try:
        yield pool
    finally:
        pool.terminate()
        pool.join()


def guarded_find(
    searcher: multiprocessing.pool.Pool, text: bytes, cols: int, rows: int, pattern: str,
    scope: FindScope,
) -> tuple[Reason, str] | None:  # fmt: skip
    """`find_outcome` in the worker; a search that outlives HANG_GUARD fails the test."""
    pending = searcher.apply_async(find_outcome, (text, cols, rows, pattern, scope))
    try:
        return pending.get(timeout=HANG_GUARD)
    except multiprocessing.TimeoutError:
        pytest.fail(f"{pattern!r} was still being searched after {HANG_GUARD} s")


def test_pathological_pattern_times_out_quickly(searcher: multiprocessing.pool.Pool) -> None:
    """Catastrophic backtracking over a screen and scrollback full of a's ends with a
    PATTERN_TIMEOUT error, cut off by the search's one time budget."""
    text = b"".join(b"a" * 199 + b"b\r\n" for _ in range(400))
    cases: list[tuple[str, FindScope]] = [(r"(a+)+$", "all"), (r"(a|aa)+$", "screen")]
    for pattern, scope in cases:
        outcome = guarded_find(searcher, text, 200, 10, pattern, scope)
        assert outcome is not None and outcome[0] == Reason.PATTERN_TIMEOUT, outcome
        assert "took too long" in outcome[1]


_NESTED = st.recursive(
    st.sampled_from(["a", "aa", "a?", ".", r"\w", "b"]),
    lambda inner: st.one_of(
        st.builds(lambda x: f"({x})+", inner),
        st.builds(lambda x: f"({x})*", inner),
        st.builds(lambda x, y: f"({x}|{y})", inner, inner),
        st.builds(lambda x, y: x + y, inner, inner),
    ),
    max_leaves=6,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_NESTED, st.sampled_from(["$", "c", ""]))
def test_any_nested_pattern_returns_or_times_out_in_bounded_time(
    searcher: multiprocessing.pool.Pool, pattern: str, tail: str
) -> None:
    """Random nested repetitions over long lines of a's answer, or end with PATTERN_TIMEOUT."""
    text = b"a" * 150 + b"b\r\n" + b"a" * 150 + b"!"
    outcome = guarded_find(searcher, text, 160, 4, pattern + tail, "all")
    assert outcome is None or outcome[0] == Reason.PATTERN_TIMEOUT, outcome
