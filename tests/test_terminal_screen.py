"""The virtual screen: what real programs in real PTYs show, and the VT details behind it
(alternate screen, modes, wide characters, scrollback, change tracking, any input)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hoodyd.errors import InvalidRequest
from hoodyd.terminals.keys import encode_keys
from hoodyd.terminals.screen import Highlight, VirtualScreen
from tests.terminal_pty import PtyProgram

DATA = Path(__file__).parent / "data"


def screen_after(
    *chunks: bytes, cols: int = 20, rows: int = 5, scrollback: int = 100
) -> VirtualScreen:
    screen = VirtualScreen(cols, rows, scrollback_lines=scrollback)
    for chunk in chunks:
        screen.feed(chunk)
    return screen


def run(
    programs: list[PtyProgram],
    argv: list[str],
    *,
    cols: int = 80,
    rows: int = 24,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
) -> PtyProgram:
    program = PtyProgram(argv, cols=cols, rows=rows, env=env, cwd=cwd)
    programs.append(program)
    return program


@pytest.fixture
def numbered_file(tmp_path: Path) -> Path:
    path = tmp_path / "numbers.txt"
    path.write_text("".join(f"line number {n}\n" for n in range(1, 201)))
    return path


# --- real programs ------------------------------------------------------------------


def test_curses_program_shows_title_highlight_wide_text_and_modes(
    programs: list[PtyProgram],
) -> None:
    """A curses program's screen reads as drawn: title, reverse-video item, CJK cells,
    alternate screen, and the keypad/mouse modes it turned on."""
    probe = run(programs, [sys.executable, str(DATA / "curses_probe.py")], cols=60, rows=20)
    probe.wait_for_text("PROBE READY")
    probe.wait_for(lambda screen: screen.title == "curses probe", "the title")
    # curses may draw the screen in more than one write: wait for its last line
    probe.wait_for(lambda screen: "中文 wide" in screen.snapshot().lines, "the wide text")
    snapshot = probe.screen.snapshot()
    assert snapshot.lines[:3] == ["PROBE READY", "   SELECTED", "中文 wide"]
    assert snapshot.highlights == [Highlight(row=1, col=2, length=10, text=" SELECTED ")]
    assert snapshot.alt_screen is True
    assert snapshot.cursor.row == 2 and snapshot.cursor.col == 9  # after "中文 wide": 9 cells
    screen = probe.screen
    assert (screen.application_cursor, screen.application_keypad) == (True, True)
    assert screen.mouse_tracking is not None and screen.mouse_encoding == "sgr"


def test_leaving_a_program_restores_the_main_screen_and_cursor(programs: list[PtyProgram]) -> None:
    """vim runs on the alternate screen; after :q! the shell's text and cursor are back."""
    shell = run(programs, ["sh"], cols=60, rows=10, env={"PS1": "PROMPT$ "})
    shell.wait_for_text("PROMPT$")
    shell.send(b"echo before-vim; vim -u NONE -N -i NONE -n\r")
    shell.wait_for(lambda screen: screen.alt_screen, "vim's alternate screen")
    shell.wait_for_text("~")
    assert not any("before-vim" in line for line in shell.screen.snapshot().lines)
    shell.send(b":q!\r")
    shell.wait_for(lambda screen: not screen.alt_screen, "the main screen")
    shell.wait_for(
        lambda screen: screen.snapshot().lines[screen.cursor.row] == "PROMPT$",
        "the next prompt at the cursor",
    )
    assert "before-vim" in shell.screen.snapshot().lines


def test_less_scrolls_a_page_and_a_line_with_application_cursor_keys(
    programs: list[PtyProgram], numbered_file: Path
) -> None:
    """less turns on application cursor keys; page_down and arrow_down, encoded for that
    mode, move it a page and a line, and its prompt is a highlight."""
    less = run(
        programs, ["less", numbered_file.name], cols=60, rows=10, cwd=str(numbered_file.parent)
    )
    less.wait_for_text("line number 9")
    screen = less.screen
    assert screen.application_cursor
    first = screen.snapshot()
    assert first.highlights is not None
    assert [span.text for span in first.highlights] == [numbered_file.name]
    less.send(encode_keys(["page_down"], application_cursor=True, application_keypad=True))
    less.wait_for(lambda s: s.snapshot().lines[0] == "line number 10", "one page down")
    less.send(
        encode_keys(
            ["arrow_down"],
            application_cursor=screen.application_cursor,
            application_keypad=screen.application_keypad,
        )
    )
    less.wait_for(lambda s: s.snapshot().lines[0] == "line number 11", "one line down")


def test_vim_moves_its_cursor_with_arrow_keys(
    programs: list[PtyProgram], numbered_file: Path
) -> None:
    """In vim (application cursor mode) arrow_down and arrow_right move the cursor cell."""
    vim = run(
        programs,
        ["vim", "-u", "NONE", "-N", "-i", "NONE", "-n", str(numbered_file)],
        cols=60,
        rows=10,
    )
    vim.wait_for_text("line number 1")
    vim.wait_for(
        lambda s: s.cursor == s.cursor.__class__(row=0, col=0, visible=True),
        "the cursor at the top left",
    )
    keys = encode_keys(
        ["arrow_down", "arrow_down", "arrow_right"],
        application_cursor=vim.screen.application_cursor,
    )
    vim.send(keys)
    vim.wait_for(lambda s: (s.cursor.row, s.cursor.col) == (2, 1), "the cursor at row 2, col 1")


def test_shell_output_fills_the_scrollback_and_scroll_offset_reads_it(
    programs: list[PtyProgram],
) -> None:
    """Lines a program prints past the bottom go to the scrollback; a snapshot at
    scroll_offset shows them where a person scrolling back would see them."""
    printer = run(programs, ["sh", "-c", "seq 1 50; sleep 30"], cols=40, rows=10)
    printer.wait_for_text("50")
    screen = printer.screen
    live = screen.snapshot()
    assert live.lines[:9] == [str(n) for n in range(42, 51)]
    assert live.scrollback_count == 41
    back = screen.snapshot(scroll_offset=5)
    assert (back.scroll_offset, back.lines[0], back.lines[-1]) == (5, "37", "46")
    oldest = screen.snapshot(scroll_offset=10_000)
    assert (oldest.scroll_offset, oldest.lines[0]) == (41, "1")


# --- VT details ---------------------------------------------------------------------


def test_alternate_screen_modes_save_clear_and_restore() -> None:
    """1049 saves the cursor and shows a blank screen; leaving restores both. 47 and 1047
    switch buffers too."""
    screen = screen_after(b"main text\r\nsecond\x1b[1;3H")
    for mode in (b"1049", b"1047", b"47"):
        screen.feed(b"\x1b[?" + mode + b"h")
        assert screen.alt_screen and screen.snapshot().lines == ["", "", "", "", ""]
        screen.feed(b"\x1b[Halt")
        screen.feed(b"\x1b[?" + mode + b"l")
        assert not screen.alt_screen
        assert screen.snapshot().lines[:2] == ["main text", "second"]
    screen.feed(b"\x1b[1;3H\x1b[?1049h\x1b[5;5H\x1b[?1049l")
    assert (screen.cursor.row, screen.cursor.col) == (0, 2)


def test_alternate_screen_keeps_no_scrollback() -> None:
    """Scrolling on the alternate screen adds nothing to the scrollback, and snapshots there
    ignore scroll_offset."""
    screen = screen_after(b"a\r\nb\r\nc\r\nd\r\ne\r\nf\r\n")
    kept = screen.scrollback_count
    screen.feed(b"\x1b[?1049h" + b"x\r\n" * 20)
    assert screen.scrollback_count == kept
    assert screen.snapshot(scroll_offset=3).scroll_offset == 0


@pytest.mark.parametrize(
    ("sequence", "attribute", "value"),
    [
        (b"\x1b[?1h", "application_cursor", True),
        (b"\x1b[?1h\x1b[?1l", "application_cursor", False),
        (b"\x1b=", "application_keypad", True),
        (b"\x1b=\x1b>", "application_keypad", False),
        (b"\x1b[?2004h", "bracketed_paste", True),
        (b"\x1b[?9h", "mouse_tracking", "x10"),
        (b"\x1b[?1000h", "mouse_tracking", "normal"),
        (b"\x1b[?1002h", "mouse_tracking", "button"),
        (b"\x1b[?1003h", "mouse_tracking", "any"),
        (b"\x1b[?1000h\x1b[?1000l", "mouse_tracking", None),
        (b"\x1b[?1005h", "mouse_encoding", "utf8"),
        (b"\x1b[?1006h", "mouse_encoding", "sgr"),
        (b"\x1b[?1015h", "mouse_encoding", "urxvt"),
        (b"\x1b[?1006h\x1b[?1006l", "mouse_encoding", "default"),
        (b"\x1b[?1006;1000h", "mouse_tracking", "normal"),
        (b"\x1b[32h", "application_cursor", False),  # ANSI mode 32 is not private mode 1
    ],
)
def test_modes_the_input_side_needs(sequence: bytes, attribute: str, value: object) -> None:
    """Each DEC private mode (and ESC = / ESC >) is tracked as the input encoders need it."""
    assert getattr(screen_after(sequence), attribute) == value


def test_title_comes_from_osc_0_and_2_only() -> None:
    """OSC 0 and 2 set the title, with BEL or ST; other OSC strings change nothing shown."""
    screen = screen_after(b"\x1b]2;first\x07")
    assert screen.title == "first"
    screen.feed(b"\x1b]0;second\x1b\\")
    assert screen.title == "second"
    screen.feed(b"\x1b]22;arrow\x07\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\")
    assert (screen.title, screen.snapshot().lines[0]) == ("second", "link")


def test_wide_and_combining_characters_keep_column_math() -> None:
    """CJK takes two cells, a combining mark none, an emoji ZWJ sequence does not eat the
    rest of the line, and overwriting half a wide character blanks the other half."""
    screen = screen_after("中a\u0301b👍\u200d🔥z".encode())
    lines = screen.live_lines()
    line = lines[0]
    assert line.text == "中a\u0301b👍\u200d🔥z"
    assert [line.start_col(i) for i in range(len(line.text))] == [0, 2, 2, 3, 4, 4, 6, 8]
    assert screen.cursor.col == 9
    screen.feed(b"\x1b[1;2Hx")  # the right half of 中
    assert screen.snapshot().lines[0] == " xa\u0301b👍\u200d🔥z"


def test_wide_character_at_the_last_column_wraps() -> None:
    """A wide character that does not fit in the last column goes to the next line."""
    screen = screen_after(b"abcd" + "中".encode(), cols=5)
    assert screen.snapshot().lines[:2] == ["abcd", "中"]


def test_dec_line_drawing_and_rep_and_private_sgr_look() -> None:
    """ESC ( 0 line drawing works in UTF-8, REP repeats, and CSI > 4 ; 2 m (a keyboard
    setting vim sends) does not underline anything."""
    screen = screen_after(b"\x1b(0lqk\x1b(B-\x1b[3b\x1b[>4;2mx")
    assert screen.snapshot().lines[0] == "┌─┐----x"
    colored = screen.snapshot(include_colors=True).colored_lines
    assert colored is not None and colored[0] == "┌─┐----x"


def test_dcs_and_apc_strings_are_not_drawn() -> None:
    """Device control and application strings are consumed whole, not shown as text."""
    screen = screen_after(b"a\x1bPzz+q436f\x1b\\b\x1b_hidden\x1b\\c")
    assert screen.snapshot().lines[0] == "abc"


def test_colored_lines_carry_sgr() -> None:
    """colored_lines rebuild the colours and attributes as SGR sequences."""
    screen = screen_after(b"\x1b[1;31mred\x1b[0m plain \x1b[38;5;21mblue\x1b[0m")
    snapshot = screen.snapshot(include_colors=True)
    assert snapshot.colored_lines is not None
    assert snapshot.colored_lines[0] == (
        "\x1b[0;1;31mred\x1b[0m plain \x1b[0;38;2;0;0;255mblue\x1b[0m"
    )
    assert screen.snapshot().colored_lines is None


def test_highlights_can_be_left_out() -> None:
    """include_highlights=False gives no highlights list."""
    screen = screen_after(b"\x1b[7mmenu\x1b[0m")
    assert screen.snapshot(include_highlights=False).highlights is None
    assert screen.snapshot().highlights == [Highlight(row=0, col=0, length=4, text="menu")]


def test_update_seq_moves_only_when_something_visible_changes() -> None:
    """Redrawing the same text or repeating a mode does not advance update_seq; new text, a
    cursor move and a title do, and last_damage follows."""
    screen = screen_after(b"\x1b[Hhello")
    seq, damage = screen.update_seq, screen.last_damage
    screen.feed(b"\x1b[Hhello")
    screen.feed(b"\x1b[?2004h")
    assert (screen.update_seq, screen.last_damage) == (seq, damage)
    screen.feed(b"!")
    assert screen.update_seq == seq + 1 and screen.last_damage >= damage
    screen.feed(b"\x1b[3;3H")
    screen.feed(b"\x1b]2;t\x07")
    assert screen.update_seq == seq + 3


def test_scrollback_is_bounded_and_erasable() -> None:
    """The scrollback keeps at most its capacity, and ED 3 clears it."""
    screen = screen_after(b"".join(b"%d\r\n" % n for n in range(50)), scrollback=10)
    assert (screen.scrollback_count, screen.scrollback_capacity) == (10, 10)
    assert screen.scrollback_lines()[0].text == "36"
    screen.feed(b"\x1b[3J")
    assert screen.scrollback_count == 0


def test_scrolling_inside_a_region_keeps_no_scrollback() -> None:
    """Lines scrolled out of a margin region that does not start at the top are lost, as in
    xterm (a pager's status line area must not fill the scrollback)."""
    screen = screen_after(b"\x1b[2;4r\x1b[4;1H" + b"x\r\n" * 10)
    assert screen.scrollback_count == 0


def test_negative_scroll_offset_is_refused() -> None:
    """A negative scroll_offset is an invalid request."""
    with pytest.raises(InvalidRequest, match="scroll_offset"):
        screen_after(b"x").snapshot(scroll_offset=-1)


def test_resize_keeps_the_cursor_line_and_pushes_the_rest_to_scrollback() -> None:
    """Shrinking the rows keeps the cursor's line on screen; the lines above it leave for
    the scrollback. Growing adds blank rows."""
    screen = screen_after(b"1\r\n2\r\n3\r\n4\r\n5", cols=10, rows=5)
    screen.resize(10, 3)
    assert screen.snapshot().lines == ["3", "4", "5"]
    assert [line.text for line in screen.scrollback_lines()] == ["1", "2"]
    assert (screen.cursor.row, screen.rows) == (2, 3)
    screen.resize(6, 4)
    assert screen.snapshot().lines == ["3", "4", "5", ""]
    assert screen.cols == 6


def test_memory_estimate_grows_with_content() -> None:
    """The memory estimate grows with the scrollback and the live cells."""
    screen = screen_after(b"")
    empty = screen.estimated_memory_bytes()
    screen.feed(b"".join(b"%080d\r\n" % n for n in range(200)))
    assert screen.estimated_memory_bytes() > empty + 200 * 80


def test_hostile_sequences_do_not_raise() -> None:
    """Huge parameters, unicode digits, endless OSC, DECOM without margins and DECCOLM are
    all survived; the screen keeps its size."""
    screen = screen_after(
        b"\x1b[" + b"9" * 100_000 + b"A",
        b"\x1b[" + b";" * 100_000 + b"m",
        "\x1b[\u00b2\u0663J".encode(),
        b"\x1b]0;" + b"t" * 100_000,
        b"\x07\x1b[?6h\x1b[5d\x1b[6n\x1b[?3h\x1b[99999@\x1b[99999L\x1b[99999b\x1b#8",
        b"\x1b[9999;9999H\xff\xfe\xc3(end",
    )
    assert (screen.cols, screen.rows) == (20, 5)
    assert len(screen.title) <= 4096


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=300), max_size=8), st.integers(1, 30), st.integers(1, 12))
def test_feed_never_raises_on_random_bytes(chunks: list[bytes], cols: int, rows: int) -> None:
    """Any bytes, in any chunking, leave a consistent screen of the same size."""
    screen = VirtualScreen(cols, rows, scrollback_lines=20)
    for chunk in chunks:
        screen.feed(chunk)
    snapshot = screen.snapshot(include_colors=True)
    assert len(snapshot.lines) == rows and (snapshot.cols, snapshot.rows) == (cols, rows)
    assert 0 <= snapshot.cursor.row < rows and 0 <= snapshot.cursor.col < cols


_VT_PIECES = st.sampled_from(
    [
        b"\x1b[",
        b"\x1b]",
        b"\x1bP",
        b"\x1b",
        b"?",
        b";",
        b"1049",
        b"1",
        b"2004",
        b"9999",
        b"h",
        b"l",
        b"m",
        b"H",
        b"J",
        b"K",
        b"r",
        b"b",
        b"S",
        b"T",
        b"@",
        b"L",
        b"M",
        b"P",
        b"X",
        b"\x07",
        b"\x1b\\",
        b"\r\n",
        b"\n",
        b"\x08",
        b"\t",
        b"(0",
        b"q",
        "中".encode(),
        "\u0301".encode(),
        b"\xe4\xb8",
        b"\x9b",
        b"abc",
        b"\x1b7",
        b"\x1b8",
        b"\x1bc",
        b"\x1bM",
    ]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_VT_PIECES, max_size=60), st.integers(1, 12), st.integers(1, 8))
def test_feed_never_raises_on_escape_sequence_soup(
    pieces: list[bytes], cols: int, rows: int
) -> None:
    """Random mixes of real escape sequence fragments never raise, resize included."""
    screen = VirtualScreen(cols, rows, scrollback_lines=5)
    screen.feed(b"".join(pieces))
    screen.resize(max(1, cols - 3), max(1, rows - 2))
    screen.feed(b"".join(reversed(pieces)))
    snapshot = screen.snapshot(include_colors=True, scroll_offset=2)
    assert len(snapshot.lines) == screen.rows


@pytest.mark.parametrize(
    "prefix",
    [b"", b"\x1b[3;70H", b"\x1b[24;75H", b"\x1b[?7l\x1b[5;78H", b"\x1b[31m\x1b[2;1Habc"],
)
def test_rep_draws_the_same_cells_as_the_repeated_character(prefix: bytes) -> None:
    """`ESC[Nb` leaves the screen (cells, colours, cursor, scrollback) as N copies of the last
    character would, with wrapping, scrolling and autowrap off, and is clamped to the screen."""
    repeated, drawn = VirtualScreen(80, 24), VirtualScreen(80, 24)
    repeated.feed(prefix + b"x\x1b[150b")
    drawn.feed(prefix + b"x" * 151)
    assert repeated.snapshot(include_colors=True) == drawn.snapshot(include_colors=True)
    assert repeated.scrollback_count == drawn.scrollback_count
    clamped, full = VirtualScreen(10, 3), VirtualScreen(10, 3)
    clamped.feed(b"y\x1b[9999b")
    full.feed(b"y" * 31)
    assert clamped.snapshot() == full.snapshot()
