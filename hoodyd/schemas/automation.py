"""Wire contracts of the terminal automation routes (CONTRACT-terminal-automation.md): typing
(`write`, `press`, `paste`, `mouse`), reading the screen (`snapshot`, `find`, `wait`), the
emulators' state and metrics, and command abort.

The contract leaves most response bodies unstated; hoodyd answers `success: true`, the
`terminal_id`, and what the call did (bytes written, keys pressed), and the screen reads carry
the snapshot's fields at the top level so that `jq .lines` and `jq .status` both work.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta, Struct

from hoodyd.schemas.queries import FindScope

MAX_PRESSES = 256
MAX_MOUSE_EVENTS = 256
MAX_WAITERS_PER_SESSION = 16

MouseEventType = Literal["move", "down", "up", "click", "scroll"]
MouseModifier = Literal["shift", "alt", "meta", "ctrl", "control"]

MAX_SCROLL_AMOUNT = 20
MAX_MODIFIERS = 8


class MouseEvent(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One mouse event at a cell (`row`, `col` count from 0, not pixels).

    `button`: 1 left, 2 middle, 3 right (default 1); for `scroll` 4 (up) or 5 (down),
    default 5 unless `direction` says otherwise, and `direction` overrides `button`.
    `amount` repeats a scroll (1-20). `click` is a press then a release.
    """

    type: MouseEventType
    row: Annotated[int, msgspec.Meta(ge=0)]
    col: Annotated[int, msgspec.Meta(ge=0)]
    button: Annotated[int, msgspec.Meta(ge=1, le=5)] | None = None
    amount: Annotated[int, msgspec.Meta(ge=1, le=MAX_SCROLL_AMOUNT)] = 1
    direction: Literal["up", "down"] | None = None
    modifiers: Annotated[list[MouseModifier], msgspec.Meta(max_length=MAX_MODIFIERS)] = (
        msgspec.field(default_factory=list)
    )


WaitMode = Literal["stable", "regex", "either"]
WaitStatus = Literal["matched", "stable", "timeout", "exited", "vterm_reinit"]


class WriteBody(Struct, forbid_unknown_fields=True, kw_only=True):
    input: str
    enter: bool = True


class AbortBody(Struct, forbid_unknown_fields=True, kw_only=True):
    force: bool = False


class PasteBody(Struct, forbid_unknown_fields=True, kw_only=True):
    text: str
    bracketed: bool = True


class PressBody(Struct, forbid_unknown_fields=True, kw_only=True):
    keys: Annotated[list[str], Meta(min_length=1, max_length=MAX_PRESSES)] | None = None
    key: str | None = None


class MouseBody(Struct, forbid_unknown_fields=True, kw_only=True):
    event: MouseEvent | None = None
    events: Annotated[list[MouseEvent], Meta(min_length=1, max_length=MAX_MOUSE_EVENTS)] | None = (
        None
    )


class WaitBody(Struct, forbid_unknown_fields=True, kw_only=True):
    mode: WaitMode = "stable"
    debounce_ms: Annotated[int, Meta(ge=10, le=60_000)] = 100
    pattern: str | None = None
    timeout_ms: Annotated[int, Meta(ge=10, le=300_000)] = 5000
    search_scope: FindScope = "screen"
    include_colors: bool = False
    include_highlights: bool = True


BeaconText = Annotated[str, Meta(max_length=256)]


class StateBody(Struct, forbid_unknown_fields=True, kw_only=True):
    """The browser front-end's diagnostics beacon (`POST /state`): logged, nothing else."""

    build_id: BeaconText | None = None
    renderer: BeaconText | None = None
    reason: BeaconText | None = None


class InputResponse(Struct, kw_only=True):
    """What `write`, `press`, `paste` and `mouse` typed."""

    success: bool = True
    terminal_id: str
    bytes: int
    # the session was started by this call (created on first use)
    created: bool = False
    keys: int | None = None
    events: int | None = None
    bracketed: bool | None = None


class KeysResponse(Struct, kw_only=True):
    success: bool = True
    keys: list[str]
    total: int


class StateResponse(Struct, kw_only=True):
    success: bool = True


class AutomationMetrics(Struct, kw_only=True):
    success: bool = True
    vterm_sessions_active: int
    vterm_memory_bytes_used: int
    vterm_memory_mb_used: float
    vterm_memory_mb_cap: int
    vterm_idle_ttl_sec: float
    vterm_evictions: int
    wait_waiters_active: int
    wait_max_waiters_per_session: int = MAX_WAITERS_PER_SESSION


class AutomationState(Struct, kw_only=True):
    success: bool = True
    terminal_id: str
    vterm_active: bool
    cols: int
    rows: int
    update_seq: int
    last_damage_ms_ago: float | None
    alt_screen: bool
    title: str
    scrollback_count: int
    scrollback_capacity: int
    waiter_count: int
    estimated_memory_kb: float
    vterm_pending_teardown: bool
    application_cursor: bool
    application_keypad: bool
    bracketed_paste: bool
    mouse_tracking: str | None
