"""The L2 book: rebuild rules and errors, and the queue model's place in a level's queue.

Hand-made depth messages; BTCUSDT (tick 0.1). Every expected figure is worked out below.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exec_router.simulator import Depth, TapeError
from exec_router.simulator.book import Levels, rebuild
from exec_router.simulator.fills import fill_path

from .sim_support import make_tape

Level = tuple[float, float, int]  # price, size, side (+1 bid, -1 ask)
# ts, kind (1 snapshot), U, u, pu, levels; the line is the message's place, from 1.
Msg = tuple[int, int, int, int, int, Sequence[Level]]


def make_depth(msgs: Sequence[Msg]) -> Depth:
    starts, px, qty, side = [], [], [], []
    for m in msgs:
        starts.append(len(px))
        for p, q, s in m[5]:
            px.append(p)
            qty.append(q)
            side.append(s)
    u64 = np.uint64
    return Depth(
        ts=np.array([m[0] for m in msgs], dtype=np.int64),
        line=np.arange(1, len(msgs) + 1, dtype=u64),
        kind=np.array([m[1] for m in msgs], dtype=np.uint8),
        first_id=np.array([m[2] for m in msgs], dtype=u64),
        last_id=np.array([m[3] for m in msgs], dtype=u64),
        prev_id=np.array([m[4] for m in msgs], dtype=u64),
        start=np.array(starts, dtype=u64),
        px=np.array(px, dtype=np.float64),
        qty=np.array(qty, dtype=np.float64),
        side=np.array(side, dtype=np.int8),
        source="depth.txt",
    )


SNAP = (0, 1, 100, 100, 0, [(999.9, 5.0, 1), (999.8, 3.0, 1), (1000.0, 5.0, -1)])


def size_at(depth: Depth, side: int, price: float) -> list[tuple[int, float]]:
    ts, qty = rebuild(depth).history(side, price, 0.001)
    return list(zip(ts.tolist(), qty.tolist(), strict=True))


def test_diffs_older_than_the_snapshot_are_dropped_and_the_rest_apply_in_u_order() -> None:
    depth = make_depth(
        [
            (-50, 0, 95, 99, 94, [(999.8, 9.0, 1)]),  # u 99 < lastUpdateId 100: dropped
            (-20, 0, 100, 102, 99, [(999.8, 4.0, 1)]),  # straddles the snapshot: applies
            SNAP,
            (500, 0, 103, 104, 102, [(999.8, 0.0, 1)]),
        ]
    )
    # The snapshot's 3.0 at 0, the straddling diff's 4.0 after it (its time clamped to the
    # snapshot's: time never goes back), then removed at 500.
    assert size_at(depth, 1, 999.8) == [(0, 3.0), (0, 4.0), (500, 0.0)]


def test_a_snapshot_replaces_the_whole_book() -> None:
    snap2 = (900, 1, 200, 200, 0, [(999.9, 1.0, 1), (1000.0, 2.0, -1)])
    depth = make_depth([SNAP, (500, 0, 101, 101, 100, [(999.7, 2.0, 1)]), snap2])
    assert size_at(depth, 1, 999.8) == [(0, 3.0), (900, 0.0)]  # not listed: emptied
    assert size_at(depth, 1, 999.7) == [(500, 2.0), (900, 0.0)]
    assert size_at(depth, 1, 999.9) == [(0, 5.0), (900, 1.0)]


def test_a_crossed_book_is_an_error_naming_the_line() -> None:
    depth = make_depth([SNAP, (500, 0, 101, 101, 100, [(1000.0, 1.0, 1)])])
    with pytest.raises(
        TapeError, match=r"^depth\.txt:2: crossed book: best bid 1000.0 >= best ask 1000.0"
    ):
        rebuild(depth)


def test_a_negative_size_is_an_error_naming_the_line() -> None:
    msgs = [
        SNAP,
        (500, 0, 101, 101, 100, [(999.8, 1.0, 1)]),
        (600, 0, 102, 102, 101, [(999.7, -1.0, 1)]),
    ]
    with pytest.raises(TapeError, match=r"^depth\.txt:3: negative size -1.0 at price 999.7"):
        rebuild(make_depth(msgs))


def test_depth_without_a_snapshot_is_refused() -> None:
    with pytest.raises(TapeError, match="no snapshot"):
        rebuild(make_depth([(500, 0, 101, 101, 100, [(999.8, 1.0, 1)])]))


def test_removing_the_best_level_uncovers_the_next() -> None:
    # Removing 999.9 leaves 999.8 as the best bid; setting 1000.0 bid then is not crossed
    # only once the 1000.0 ask is gone, in the same message.
    msgs = [
        SNAP,
        (
            500,
            0,
            101,
            101,
            100,
            [(999.9, 0.0, 1), (1000.0, 0.0, -1), (1000.1, 1.0, -1), (1000.0, 1.0, 1)],
        ),
    ]
    assert size_at(make_depth(msgs), 1, 1000.0) == [(500, 1.0)]


# A BUY quote at 999.8 arrives at 500, behind the 999.9 touch: on the L2 book it joins
# behind the 3.0 displayed at 999.8.
PRIORITY = [
    SNAP,
    (1000, 0, 101, 101, 100, [(999.8, 5.0, 1)]),  # 2.0 joins behind the quote: ahead 3.0
    (2000, 0, 102, 102, 101, [(999.8, 4.0, 1)]),  # 1.0 leaves, nothing traded: a cancel
    (2500, 0, 103, 103, 102, [(999.9, 0.0, 1)]),  # the 999.9 bids leave: 999.8 is the touch
]
ROWS = [(0, 999.9, 1000.0, 5.0, 5.0), (2500, 999.8, 1000.0, 4.0, 5.0)]
TRADES = [
    (3000, 999.8, 2.5, -1),
    (4000, 999.8, 0.6, -1),
]


@pytest.mark.parametrize(
    ("cancel_from", "first", "full"),
    [
        # The 1.0 cancelled at 2000 came from behind: ahead 3.0; 2.5 sold leaves 0.5 ahead;
        # 0.6 more at 4000: 0.1 of the 0.3 quote traded, never in full.
        ("back", 4000, None),
        # from ahead: 2.0 ahead; 2.5 sold at 3000 trades 0.5 >= 0.3: in full at 3000.
        ("front", 3000, 3000),
        # in proportion: 1.0 x 3.0 / 5.0 = 0.6 from ahead, 2.4 left; 2.5 sold: 0.1 traded at
        # 3000; 0.6 more at 4000: 0.7 >= 0.3, in full.
        ("proportional", 3000, 4000),
    ],
)
def test_l2_priority_joining_added_behind_removed_ahead(
    cancel_from: str, first: int, full: int | None
) -> None:
    tape = make_tape(ROWS, TRADES)
    levels = rebuild(make_depth(PRIORITY))
    path = fill_path("queue", tape, 1, 999.8, 500, 10_000, 0.001, 0.3, levels, cancel_from)
    assert path is not None
    assert (path.first_ms, path.full_ms) == (first, full)


def test_without_depth_the_quote_falls_back_to_the_top_of_book() -> None:
    # On the top of book the level is unknown until it is the touch at 2500 (4.0 shown):
    # 3.1 sold never exhausts it.
    tape = make_tape(ROWS, TRADES)
    assert fill_path("queue", tape, 1, 999.8, 500, 10_000, 0.001, 0.3) is None
    # A quote that arrives before the book starts also uses the top of book.
    levels = rebuild(make_depth([(600, *SNAP[1:]), *PRIORITY[1:]]))
    assert fill_path("queue", tape, 1, 999.8, 500, 10_000, 0.001, 0.3, levels) is None


def test_an_empty_level_puts_the_quote_first() -> None:
    # Nothing is displayed at 999.7 when the quote arrives: the first 0.3 sold there fills it,
    # though the size that joins later (behind it) is larger.
    msgs = [SNAP, (1000, 0, 101, 101, 100, [(999.7, 8.0, 1)])]
    tape = make_tape(ROWS, [(3000, 999.7, 0.3, -1)])
    path = fill_path("queue", tape, 1, 999.7, 500, 10_000, 0.001, 0.3, rebuild(make_depth(msgs)))
    assert path is not None
    assert (path.first_ms, path.full_ms) == (3000, 3000)


@st.composite
def level_tapes(draw: Any) -> tuple[Any, Levels]:
    """One bid level at 999.8 (the touch, under a fixed 999.9 ask): random size changes and
    sales at its price, in time order."""
    t = 0
    sizes = [(0, draw(st.sampled_from([0.0, 1.0, 2.5, 4.0])))]
    trades = []
    for _ in range(draw(st.integers(1, 25))):
        t += draw(st.integers(1, 5)) * 100
        if draw(st.booleans()):
            sizes.append((t, draw(st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.5, 6.0]))))
        else:
            trades.append((t, 999.8, draw(st.sampled_from([0.2, 0.5, 1.0, 2.0])), -1))
    trades.append((t + 100, 999.8, 0.5, -1))  # the queue model needs trades
    ts = np.array([s[0] for s in sizes], dtype=np.int64)
    levels = Levels(
        side=np.ones(len(ts), dtype=np.int8),
        px=np.full(len(ts), 999.8),
        ts=ts,
        qty=np.array([s[1] for s in sizes]),
        start_ms=0,
    )
    return make_tape([(0, 999.8, 999.9, 1.0, 1.0)], trades), levels


@settings(max_examples=200, deadline=None)
@given(
    case=level_tapes(),
    start=st.integers(0, 400),
    sizes=st.lists(st.sampled_from([0.0, 0.3, 1.0, 2.0]), min_size=2, max_size=2),
)
def test_front_then_proportional_then_back_and_larger_never_earlier(
    case: Any, start: int, sizes: list[float]
) -> None:
    """Cancels taken ahead of the quote leave it less ahead than in proportion, and that less
    than behind it: fill times front <= proportional <= back. A larger quote never fills
    earlier than a smaller one."""
    tape, levels = case
    small, large = sorted(sizes)

    def when(cancel_from: str, qty: float) -> tuple[int | None, int | None]:
        path = fill_path("queue", tape, 1, 999.8, start, 60_000, 0.001, qty, levels, cancel_from)
        return (None, None) if path is None else (path.first_ms, path.full_ms)

    for qty in (small, large):
        got = [when(c, qty)[1] for c in ("front", "proportional", "back")]
        for fast, slow in itertools.pairwise(got):
            assert slow is None or (fast is not None and fast <= slow)
    for c in ("front", "proportional", "back"):
        a, b = when(c, small), when(c, large)
        if b[0] is not None:
            assert a[0] is not None
            assert a[0] <= b[0]
        if b[1] is not None:
            assert a[1] is not None
            assert a[1] <= b[1]
