"""Fill models on hand-made tapes: first proof, the queue cap, sizes, the optimistic bound.

BTCUSDT (tick 0.1): a BUY quote at 999.8 arrives at 0 ms and its cancel lands at 10,000 ms,
unless a test says otherwise. Every expected time is worked out by hand in the comments.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from exec_router.simulator import FILL_MODELS
from exec_router.simulator.fills import fill_path, first_fill

from .sim_support import make_tape, simulate_case
from .test_properties import configs, intents, tapes

Q, EPS = 999.8, 0.001

# The quote joins the touch with 3.0 displayed ahead of it.
PROOF_ROWS = [
    (0, 999.8, 999.9, 3.0, 5.0),
    (4000, 999.7, 999.8, 2.0, 5.0),  # the ask reaches 999.8: proves a fill, but late
]
PROOF_TRADES = [
    (1000, 999.9, 0.5, 1),  # a buyer lifts 999.9: nothing for a bid at 999.8
    (1500, 999.8, 1.0, -1),  # 1.0 sold at 999.8: `print` fills; 2.0 still ahead
    (2000, 999.8, 2.5, -1),  # 3.5 sold at 999.8 > 3.0 ahead: `queue` fills
    (3000, 999.7, 0.1, -1),  # a sale through 999.8: `touch` and `through` fill
]


@pytest.mark.parametrize(
    ("model", "ms"), [("print", 1500), ("queue", 2000), ("touch", 3000), ("through", 3000)]
)
def test_each_model_fills_at_its_first_proof(model: str, ms: int) -> None:
    tape = make_tape(PROOF_ROWS, PROOF_TRADES)
    assert first_fill(model, tape, 1, Q, 0, 10_000, EPS) == ms


def test_the_book_proves_a_fill_under_every_model() -> None:
    # Without the sale through at 3000, the ask reaching 999.8 at 4000 is the first proof of
    # touch and through; print and queue still fill earlier on the volume at 999.8.
    tape = make_tape(PROOF_ROWS, PROOF_TRADES[:3])
    got = {m: first_fill(m, tape, 1, Q, 0, 10_000, EPS) for m in FILL_MODELS}
    assert got == {"print": 1500, "queue": 2000, "touch": 4000, "through": 4000}


def test_the_cancel_wins_at_equal_times() -> None:
    tape = make_tape(PROOF_ROWS, PROOF_TRADES)
    assert first_fill("print", tape, 1, Q, 0, 1500, EPS) is None
    assert first_fill("through", tape, 1, Q, 0, 3000, EPS) is None


def test_a_sell_quote_is_the_mirror_image() -> None:
    rows = [(0, 1000.0, 1000.1, 5.0, 2.0), (3000, 1000.1, 1000.2, 5.0, 5.0)]
    trades = [(1000, 1000.1, 2.5, 1), (2000, 1000.2, 0.1, 1)]
    tape = make_tape(rows, trades)
    # 2.5 bought at 1000.1 > 2.0 ahead: queue at 1000; the buy through at 2000: touch.
    got = {m: first_fill(m, tape, -1, 1000.1, 0, 10_000, EPS) for m in FILL_MODELS}
    assert got == {"print": 1000, "queue": 1000, "touch": 2000, "through": 2000}


# The queue ahead of a quote, capped at the level's displayed size (hftbacktest's
# risk-averse model): 10.0 ahead on arrival, the level then shows 1.0.
CAP_ROWS = [
    (0, 999.8, 999.9, 10.0, 5.0),
    (1000, 999.8, 999.9, 1.0, 5.0),  # 9.0 cancelled ahead of us: ahead = min(10, 1) = 1
    (3000, 999.8, 999.9, 4.0, 5.0),  # 3.4 joins behind us: ahead stays 0.4
]
CAP_TRADES = [
    (2000, 999.8, 0.6, -1),  # ahead 1.0 - 0.6 = 0.4
    (3500, 999.8, 0.6, -1),  # 0.4 - 0.6 = -0.2: 0.2 of the quote traded
]


def test_the_queue_ahead_is_capped_at_the_displayed_size() -> None:
    tape = make_tape(CAP_ROWS, CAP_TRADES)
    # Without the cap, 1.2 sold against 10.0 ahead would never fill it.
    assert first_fill("queue", tape, 1, Q, 0, 10_000, EPS) == 3500
    path = fill_path("queue", tape, 1, Q, 0, 10_000, EPS, qty=0.2)
    assert path is not None
    assert (path.first_ms, path.full_ms) == (3500, 3500)


def test_a_larger_quote_fills_in_part_and_the_rest_waits() -> None:
    tape = make_tape(CAP_ROWS, [*CAP_TRADES, (5000, 999.8, 1.0, -1)])
    path = fill_path("queue", tape, 1, Q, 0, 10_000, EPS, qty=0.5)
    assert path is not None
    # 0.2 at 3500; 1.0 more at 5000 covers the 0.3 left: in full at 5000.
    assert (path.first_ms, path.full_ms) == (3500, 5000)
    assert path.times.tolist() == [3500, 5000]
    assert path.filled.tolist() == pytest.approx([0.2, 0.5])
    assert path.filled_before(5000) == pytest.approx(0.2)
    # Cancelled at 4000: 0.2 filled, never in full.
    part = fill_path("queue", tape, 1, Q, 0, 4000, EPS, qty=0.5)
    assert part is not None
    assert (part.first_ms, part.full_ms) == (3500, None)
    assert part.filled_before(4000) == pytest.approx(0.2)


def test_a_proof_fills_the_rest_in_full() -> None:
    tape = make_tape([*CAP_ROWS, (6000, 999.7, 999.8, 1.0, 1.0)], CAP_TRADES)
    path = fill_path("queue", tape, 1, Q, 0, 10_000, EPS, qty=0.5)
    assert path is not None
    # 0.2 at 3500, then the ask at 999.8 at 6000 proves the rest.
    assert (path.first_ms, path.full_ms) == (3500, 6000)
    assert path.filled.tolist() == pytest.approx([0.2, 0.5])


def test_at_one_millisecond_trades_count_before_the_book() -> None:
    # The row at 1000 shows the level after the 1.5 sold at 1000: ahead 2.0 - 1.5 = 0.5,
    # then min(0.5, 1.0) = 0.5. Book first would cap to 1.0 and then subtract the same
    # sale again: -0.5, a fill the tape does not prove.
    rows = [(0, 999.8, 999.9, 2.0, 5.0), (1000, 999.8, 999.9, 1.0, 5.0)]
    tape = make_tape(rows, [(1000, 999.8, 1.5, -1)])
    assert first_fill("queue", tape, 1, Q, 0, 10_000, EPS) is None


def test_behind_the_touch_the_queue_is_unknown_until_the_level_shows() -> None:
    rows = [
        (0, 999.9, 1000.0, 5.0, 5.0),  # behind the 999.9 bid: ahead unknown
        (1000, 999.8, 999.9, 2.0, 5.0),  # the level is the touch, 2.0 shown: ahead 2.0
    ]
    trades = [
        (500, 999.8, 1.0, -1),  # a sweep prints at 999.8: print fills; queue cannot count it
        (1500, 999.8, 2.5, -1),  # 2.5 > 2.0: queue fills
    ]
    tape = make_tape(rows, trades)
    assert first_fill("print", tape, 1, Q, 0, 10_000, EPS) == 500
    assert first_fill("queue", tape, 1, Q, 0, 10_000, EPS) == 1500


def test_an_emptied_level_leaves_nothing_ahead() -> None:
    # The bids at 999.8 leave (the best bid drops to 999.7 while the ask stays): nothing is
    # displayed ahead of the quote, so the first sale at 999.8 fills it under queue.
    rows = [(0, 999.8, 999.9, 9.0, 5.0), (1000, 999.7, 999.9, 3.0, 5.0)]
    tape = make_tape(rows, [(2000, 999.8, 0.1, -1)])
    assert first_fill("queue", tape, 1, Q, 0, 10_000, EPS) == 2000


def test_print_is_the_optimistic_bound() -> None:
    # Only a buyer prints at 999.8 (the ask came down for a moment between book rows):
    # print fills on any trade at the price; the others have no proof.
    rows = [(0, 999.8, 999.9, 3.0, 5.0), (5000, 999.8, 999.9, 3.0, 5.0)]
    tape = make_tape(rows, [(2000, 999.8, 0.1, 1)])
    got = {m: first_fill(m, tape, 1, Q, 0, 10_000, EPS) for m in FILL_MODELS}
    assert got == {"print": 2000, "queue": None, "touch": None, "through": None}


def test_partial_entry_then_cancel_at_the_ttl(impl: Any) -> None:
    # A LONG maker entry at 999.8 (one tick under the 999.9 bid) of 2.0 BTC; 8 s TTL.
    rows = [
        (0, 999.9, 1000.1, 5.0, 5.0),
        (1000, 999.8, 999.9, 1.0, 5.0),  # the level is the touch with 1.0 ahead
        (9000, 999.9, 1000.1, 5.0, 5.0),
        (20_000, 999.9, 1000.1, 5.0, 5.0),
    ]
    trades = [
        (2000, 999.8, 1.5, -1),  # 0.5 past the 1.0 ahead: the first part, 0.5
        (3000, 999.8, 0.7, -1),  # 1.2 filled
        (8500, 999.8, 5.0, -1),  # after the cancel landed at 8000: not ours
    ]
    sim, summary, rec = simulate_case(
        make_tape(rows, trades),
        "maker_entry",
        [(0, "t1", "LONG")],
        [(10_000, "t1", "MAX_HOLD")],
        impl=impl,
        fill_model="queue",
        qty=(("BTCUSDT", 2.0),),
    )
    (trade,) = sim.trades
    assert trade.outcome == "maker"
    assert trade.entry is not None
    # The runtime reports note_fill at the first part (2000) and the position is what
    # filled by the time its cancel landed at the TTL (8000): 1.2 of 2.0.
    assert (trade.entry.ms, trade.entry.price, trade.entry.maker) == (2000, 999.8, True)
    assert trade.entry.qty == pytest.approx(1.2)
    assert rec.calls == [("on_working", "t1"), ("on_fill", "t1")]
    c = summary["counters"]
    assert (c["fills_working"], c["cancels"], c["entry_miss_skip"]) == (1, 0, 0)
    assert trade.exit is not None
    # MAX_HOLD at 10,000 closes the 1.2 at the 999.9 bid, as taker.
    assert (trade.exit.ms, trade.exit.price, trade.exit.maker) == (10_000, 999.9, False)
    assert trade.exit.qty == pytest.approx(1.2)
    assert summary["size"]["fill_ratio"] == pytest.approx(0.6)
    assert summary["size"]["filled_notional"] == pytest.approx(1.2 * 999.8 + 1.2 * 999.9)
    assert sim.router.working_orders() == []


def test_partial_maker_exit_sends_the_rest_at_market(impl: Any) -> None:
    # A LONG taker entry of 1.0 at the 1000.1 ask; TAKE_PROFIT rests a SELL at 1000.2 (one
    # tick over the ask) for 5 s; 0.4 of it trades, the rest goes out as MARKET at the bid.
    rows = [
        (0, 999.9, 1000.1, 5.0, 5.0),
        (1000, 1000.0, 1000.2, 5.0, 0.5),  # the quote's level is the touch, 0.5 ahead
        (7000, 1000.0, 1000.2, 5.0, 5.0),
    ]
    trades = [(2000, 1000.2, 0.9, 1)]  # 0.4 past the 0.5 ahead
    sim, summary, _ = simulate_case(
        make_tape(rows, trades),
        "maker_exit",
        [(0, "t1", "LONG")],
        [(500, "t1", "TAKE_PROFIT")],
        impl=impl,
        fill_model="queue",
        qty=(("BTCUSDT", 1.0),),
    )
    (trade,) = sim.trades
    assert trade.entry is not None
    assert (trade.entry.price, trade.entry.qty) == (1000.1, 1.0)
    assert trade.exit is not None
    # The quote (1000.1 ask + 1 tick = 1000.2) rests from 500 to its 5 s TTL at 5500; the
    # 0.6 left goes at the 1000.0 bid: average (0.4 * 1000.2 + 0.6 * 1000.0) = 1000.08.
    assert trade.exit.ms == 5500
    assert trade.exit.price == pytest.approx(1000.08)
    assert trade.exit.maker_part == pytest.approx(0.4)
    assert trade.exit_fallbacks == 1
    # Fees: 5 taker in; out 0.4 * 2 + 0.6 * 5 = 3.8.
    assert summary["costs_bps"]["fees"] == pytest.approx(8.8)


@settings(max_examples=150, deadline=None)
@given(
    tape=tapes(),
    side=st.sampled_from([-1, 1]),
    offset=st.integers(-2, 3),
    start=st.integers(0, 3000),
    length=st.integers(1, 20_000),
)
def test_print_then_queue_then_touch_and_through(
    tape: Any, side: int, offset: int, start: int, length: int
) -> None:
    """Fill time under print <= queue <= touch == through, or the slower does not fill."""
    assume(tape.has_trades)  # the queue model needs trades
    i = tape.asof(start)
    best = float(tape.bid[i] if side > 0 else tape.ask[i])
    price = round(best - side * offset * 0.1, 1)
    got = [
        first_fill(m, tape, side, price, start, start + length, 0.001)
        for m in ("print", "queue", "touch", "through")
    ]
    assert got[2] == got[3]
    for fast, slow in itertools.pairwise(got):
        assert slow is None or (fast is not None and fast <= slow)


@settings(max_examples=150, deadline=None)
@given(
    tape=tapes(),
    side=st.sampled_from([-1, 1]),
    offset=st.integers(-2, 3),
    start=st.integers(0, 3000),
    sizes=st.lists(st.sampled_from([0.0, 0.3, 0.5, 1.0, 2.0, 7.0]), min_size=2, max_size=2),
)
def test_a_larger_quote_never_fills_earlier(
    tape: Any, side: int, offset: int, start: int, sizes: list[float]
) -> None:
    assume(tape.has_trades)
    small, large = sorted(sizes)
    i = tape.asof(start)
    best = float(tape.bid[i] if side > 0 else tape.ask[i])
    price = round(best - side * offset * 0.1, 1)
    a = fill_path("queue", tape, side, price, start, start + 20_000, 0.001, small)
    b = fill_path("queue", tape, side, price, start, start + 20_000, 0.001, large)
    if b is None:
        return
    assert a is not None
    assert a.first_ms <= b.first_ms
    if b.full_ms is not None:
        assert a.full_ms is not None
        assert a.full_ms <= b.full_ms


@settings(max_examples=60, deadline=None)
@given(
    data=st.data(),
    tape=tapes(),
    style=st.sampled_from(["maker_entry", "maker_exit", "maker_both"]),
    qty=st.sampled_from([0.3, 1.0, 4.0]),
    latency=st.sampled_from([0, 50, 250]),
    config=configs,
)
def test_sized_quotes_close_what_they_filled(
    data: Any, tape: Any, style: str, qty: float, latency: int, config: dict[str, Any]
) -> None:
    assume(tape.has_trades)
    entries, exits = data.draw(intents(tape.end_ms))
    sim, summary, _ = simulate_case(
        tape,
        style,
        entries,
        exits,
        fill_model="queue",
        latency_ms=latency,
        qty=(("BTCUSDT", qty),),
        **config,
    )
    for trade in sim.trades:
        if trade.entry is None:
            assert trade.exit is None
            continue
        assert trade.closed
        assert trade.exit is not None
        assert 0 < trade.entry.qty <= qty + 1e-9
        assert trade.exit.qty == pytest.approx(trade.entry.qty)
        assert trade.exit.ms >= trade.entry.ms
    assert sim.router.working_orders() == []
    ratio = summary["size"]["fill_ratio"]
    assert ratio is None or 0.0 <= ratio <= 1.0 + 1e-9
