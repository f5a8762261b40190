"""Hand-made tapes of a few rows; every fill, fee and cost is worked out by hand below.

Prices are BTCUSDT (tick 0.1) around 1,000, so one tick is 1 bp of the mid. Unless a test
says otherwise the latency is 0 and costs are bps of notional, positive = cost.
"""

from __future__ import annotations

from typing import Any

import pytest

from .sim_support import make_tape, simulate_case

# bid 999.9 / ask 1000.1: mid 1000.0, half spread 1 bp. A LONG's maker entry quotes one
# tick under the bid: 999.8, i.e. 2 bps under the arrival mid.
FILL_ROWS = [
    (0, 999.9, 1000.1, 5.0, 5.0),
    (1000, 999.8, 999.9, 2.0, 5.0),  # our level is the touch, 2.0 displayed ahead of us
    (2000, 999.7, 999.8, 5.0, 5.0),  # the ask reaches the quote: `touch`
    (3000, 999.9, 1000.1, 5.0, 5.0),
]
FILL_TRADES = [
    (1200, 999.8, 1.5, -1),  # 1.5 sold at our price: `print` fills; not yet past the 2.0 ahead
    (1400, 999.8, 1.0, -1),  # 2.5 > 2.0: `queue` fills
    (2500, 999.7, 1.0, -1),  # strictly through 999.8: too late, the ask proved it at 2000
]


def approx(x: float) -> Any:
    return pytest.approx(x, abs=1e-6)


# First proof: `through` used to wait for the trade through at 2500; the ask reaching 999.8
# at 2000 already proves the fill (the bids at 999.8, ours among them, were all taken).
@pytest.mark.parametrize(
    ("model", "fill_ms"), [("print", 1200), ("queue", 1400), ("touch", 2000), ("through", 2000)]
)
def test_maker_entry_fill_per_model(impl: Any, model: str, fill_ms: int) -> None:
    tape = make_tape(FILL_ROWS, FILL_TRADES)
    sim, summary, rec = simulate_case(
        tape,
        "maker_entry",
        [(0, "t1", "LONG")],
        [(3000, "t1", "MAX_HOLD")],
        impl=impl,
        fill_model=model,
    )
    (trade,) = sim.trades
    assert trade.outcome == "maker"
    assert trade.entry is not None
    assert (trade.entry.ms, trade.entry.maker) == (fill_ms, True)
    assert trade.entry.price == approx(999.8)
    assert trade.exit is not None
    assert (trade.exit.ms, trade.exit.price, trade.exit.maker) == (3000, 999.9, False)
    costs = summary["costs_bps"]
    assert costs["fees"] == approx(2.0 + 5.0)
    assert costs["entry_slippage"] == approx(-2.0)  # (999.8 - 1000) / 1000
    assert costs["exit_slippage"] == approx(1.0)  # sold 0.1 under the 1000.0 mid
    assert costs["total_per_round_trip"] == approx(6.0)
    assert summary["fill_latency_ms"]["entry_p50"] == fill_ms
    assert rec.calls == [("on_working", "t1"), ("on_fill", "t1")]
    counters = summary["counters"]
    assert (counters["maker_entries"], counters["fills_working"], counters["taker_exits"]) == (
        1,
        1,
        1,
    )
    assert sim.router.working_orders() == []


def test_through_markout_is_the_mid_move_against_the_fill(impl: Any) -> None:
    tape = make_tape(FILL_ROWS, FILL_TRADES)
    _, summary, _ = simulate_case(
        tape, "maker_entry", [(0, "t1", "LONG")], [(3000, "t1", "MAX_HOLD")], impl=impl
    )
    # Filled at 2000 (first proof: the ask at 999.8; mid 999.75); 1 s later (3000) the mid is
    # 1000.0: it moved *for* the buyer. (Before first proof: filled at 2500, same mids.)
    assert summary["markouts_bps"]["1s"] == approx(-(1000.0 - 999.75) / 999.75 * 1e4)


def test_through_without_trades_fills_when_the_ask_reaches_the_quote(impl: Any) -> None:
    rows = [r[:3] for r in FILL_ROWS] + [(2600, 999.6, 999.7)]
    sim, _, _ = simulate_case(make_tape(rows), "maker_entry", [(0, "t1", "LONG")], impl=impl)
    assert sim.trades[0].entry is not None
    # Was 2600 (the ask strictly through); the ask at 999.8 at 2000 already proves the fill.
    assert sim.trades[0].entry.ms == 2000


# The market runs away from a LONG: 1000.0 -> 1001.0 -> 1002.0 -> 1003.0 mids.
AWAY = [
    (0, 999.9, 1000.1),
    (1000, 1000.9, 1001.1),
    (3000, 1001.9, 1002.1),
    (5000, 1002.9, 1003.1),
]


def test_miss_then_skip(impl: Any) -> None:
    sim, summary, rec = simulate_case(
        make_tape(AWAY), "maker_entry", [(0, "t1", "LONG")], impl=impl, entry_ttl_s=2.0
    )
    (trade,) = sim.trades
    assert (trade.outcome, trade.entry, trade.giveup_ms) == ("skipped", None, 2000)
    assert rec.calls == [("on_working", "t1"), ("on_cancel", "t1"), ("on_miss", "t1")]
    assert summary["entries"]["skipped"] == 1
    assert summary["exits"]["round_trips"] == 0
    # Gave up at 2000 with the mid at 1001.0: the price ran 10 bps away.
    assert summary["costs_bps"]["missed_opportunity"] == approx(10.0)
    c = summary["counters"]
    assert (c["maker_entries"], c["entry_miss_skip"], c["cancels"], c["fills_working"]) == (
        1,
        1,
        1,
        0,
    )


def test_miss_then_retry_then_market(impl: Any) -> None:
    sim, summary, rec = simulate_case(
        make_tape(AWAY),
        "maker_entry",
        [(0, "t1", "LONG")],
        [(6000, "t1", "MAX_HOLD")],
        impl=impl,
        entry_ttl_s=2.0,
        entry_miss="retry",
        entry_retries=1,
        retry_exhaust="market",
    )
    (trade,) = sim.trades
    # 999.8 misses; at 2000 the retry quotes under the new bid (1000.9 - 0.1 = 1000.8) and
    # misses too; at 4000 the fallback buys at the ask in force, 1002.1.
    assert trade.retries == 1
    assert (trade.outcome, trade.entry_tid) == ("taker", "t1-m")
    assert trade.entry is not None
    assert (trade.entry.ms, trade.entry.price) == (4000, 1002.1)
    assert trade.exit is not None
    assert (trade.exit.ms, trade.exit.price) == (6000, 1002.9)
    assert rec.calls == [
        ("on_working", "t1"),
        ("on_cancel", "t1"),
        ("on_miss", "t1"),
        ("on_working", "t1-r1"),
        ("on_cancel", "t1-r1"),
        ("on_miss", "t1-r1"),
        ("on_escalate", "t1-r1"),
    ]
    entry_slip = (1002.1 - 1000.0) / 1000.0 * 1e4  # 21 bps over the intent's arrival mid
    exit_slip = (1003.0 - 1002.9) / 1003.0 * 1e4
    costs = summary["costs_bps"]
    assert costs["fees"] == approx(10.0)
    assert costs["entry_slippage"] == approx(entry_slip)
    assert costs["total_per_round_trip"] == approx(10.0 + entry_slip + exit_slip)
    assert summary["entries"]["retried"] == 1
    c = summary["counters"]
    assert (c["entry_miss_retry"], c["entry_miss_market"], c["cancels"]) == (1, 1, 2)
    assert (c["maker_entries"], c["taker_entries"]) == (1, 0)  # retries are not counted


EXIT_ROWS = [
    (0, 999.9, 1000.1),
    (1000, 1000.9, 1001.1),  # TAKE_PROFIT: SELL quote one tick over the ask, 1001.2
    (1500, 998.9, 999.1),  # the stop
    (3000, 1000.4, 1000.6),
]


def test_exit_ttl_escalation(impl: Any) -> None:
    rows = [r for r in EXIT_ROWS if r[0] != 1500]
    sim, summary, rec = simulate_case(
        make_tape(rows),
        "maker_exit",
        [(0, "t1", "LONG")],
        [(1000, "t1", "TAKE_PROFIT")],
        impl=impl,
        exit_ttl_s=2.0,
    )
    (trade,) = sim.trades
    assert trade.entry is not None
    assert (trade.entry.price, trade.entry.maker) == (1000.1, False)  # maker_exit: taker entry
    assert trade.exit is not None
    assert (trade.exit.ms, trade.exit.price, trade.exit.maker) == (3000, 1000.4, False)
    assert rec.calls == [("on_working", "t1"), ("on_cancel", "t1"), ("on_escalate", "t1")]
    exits = summary["exits"]
    assert (exits["maker_fills"], exits["taker_fills"], exits["escalated"]) == (0, 1, 1)
    exit_slip = (1001.0 - 1000.4) / 1001.0 * 1e4  # against the mid when TP was decided
    assert summary["costs_bps"]["total_per_round_trip"] == approx(10.0 + 1.0 + exit_slip)
    c = summary["counters"]
    assert (c["maker_exits"], c["exit_escalations"], c["cancels"]) == (1, 1, 1)


def test_urgent_exit_preempts_the_resting_take_profit(impl: Any) -> None:
    sim, summary, rec = simulate_case(
        make_tape(EXIT_ROWS),
        "maker_exit",
        [(0, "t1", "LONG")],
        [(1000, "t1", "TAKE_PROFIT"), (1500, "t1", "CATASTROPHIC_LOSS")],
        impl=impl,
    )
    (trade,) = sim.trades
    assert trade.preemptions == 1
    assert trade.exit is not None
    assert (trade.exit.ms, trade.exit.price, trade.exit.maker) == (1500, 998.9, False)
    assert trade.exit_reason == "TAKE_PROFIT"  # the first exit decision sets the arrival mid
    # No on_escalate: the router only counts an urgent pre-emption.
    assert rec.calls == [("on_working", "t1"), ("on_cancel", "t1")]
    exit_slip = (1001.0 - 998.9) / 1001.0 * 1e4
    assert summary["costs_bps"]["exit_slippage"] == approx(exit_slip)
    c = summary["counters"]
    assert (c["maker_exits"], c["exit_escalations"], c["cancels"], c["taker_exits"]) == (
        1,
        1,
        1,
        0,
    )
    assert summary["exits"]["escalated"] == 1


def test_preempted_quote_that_fills_before_the_cancel_lands_closes_the_position(
    impl: Any,
) -> None:
    # 100 ms latency: the stop at 1500 cancels the quote, but the cancel lands at 1600 and a
    # buyer lifts 1001.3 at 1550, through the 1001.2 quote. The MARKET exit (reduce-only)
    # then finds the position flat.
    tape = make_tape(EXIT_ROWS, [(1550, 1001.3, 1.0, 1)])
    sim, summary, _ = simulate_case(
        tape,
        "maker_exit",
        [(0, "t1", "LONG")],
        [(1000, "t1", "TAKE_PROFIT"), (1500, "t1", "CATASTROPHIC_LOSS")],
        impl=impl,
        latency_ms=100,
    )
    (trade,) = sim.trades
    assert trade.exit is not None
    assert (trade.exit.ms, trade.exit.maker) == (1550, True)
    assert trade.exit.price == approx(1001.2)
    assert summary["exits"]["round_trips"] == 1


REJECT_ROWS = [
    (0, 999.9, 1000.1),
    (50, 999.5, 999.7),  # before the quote (999.8) lands at 100 ms, the ask drops under it
    (2000, 999.9, 1000.1),
]


def test_post_only_rejection_counts_as_a_miss(impl: Any) -> None:
    sim, summary, rec = simulate_case(
        make_tape(REJECT_ROWS), "maker_entry", [(0, "t1", "LONG")], impl=impl, latency_ms=100
    )
    (trade,) = sim.trades
    assert (trade.outcome, trade.entry_rejects, trade.giveup_ms) == ("skipped", 1, 100)
    assert rec.calls == [("on_working", "t1"), ("on_cancel", "t1"), ("on_miss", "t1")]
    assert (summary["entries"]["rejected"], summary["entries"]["skipped"]) == (1, 1)
    assert summary["counters"]["entry_miss_skip"] == 1


def test_crossing_limit_without_post_only_takes_liquidity(impl: Any) -> None:
    sim, summary, rec = simulate_case(
        make_tape(REJECT_ROWS),
        "maker_entry",
        [(0, "t1", "LONG")],
        [(2000, "t1", "MAX_HOLD")],
        impl=impl,
        latency_ms=100,
        post_only=False,
    )
    (trade,) = sim.trades
    assert trade.entry is not None
    assert (trade.outcome, trade.entry.ms, trade.entry.price) == ("taker", 100, 999.7)
    assert summary["costs_bps"]["fees"] == approx(10.0)
    assert rec.calls == [("on_working", "t1"), ("on_fill", "t1")]


def test_aborted_limit_that_crosses_before_its_cancel_lands_is_not_a_router_fill(
    impl: Any,
) -> None:
    # The alpha cancels at 60 ms; the quote lands at 100 ms, before the cancel (160 ms), and
    # takes the 999.7 ask. The router forgot the quote at 60 ms: no note_fill.
    sim, summary, rec = simulate_case(
        make_tape(REJECT_ROWS),
        "maker_entry",
        [(0, "t1", "LONG")],
        [(60, "t1", "SIGNAL_FLIP")],
        impl=impl,
        latency_ms=100,
        post_only=False,
    )
    (trade,) = sim.trades
    assert trade.entry is not None
    assert (trade.outcome, trade.entry.ms, trade.entry.price) == ("taker", 100, 999.7)
    assert trade.exit is not None
    assert (trade.exit_reason, trade.exit.ms) == ("SIGNAL_FLIP", 200)  # closed at once
    assert rec.calls == [("on_working", "t1"), ("on_cancel", "t1")]
    assert (trade.quote_fills, summary["counters"]["fills_working"]) == (0, 0)


def test_exit_intent_while_the_entry_works_aborts_it(impl: Any) -> None:
    sim, summary, rec = simulate_case(
        make_tape(AWAY),
        "maker_entry",
        [(0, "t1", "LONG")],
        [(1000, "t1", "SIGNAL_FLIP")],
        impl=impl,
    )
    (trade,) = sim.trades
    assert (trade.outcome, trade.giveup_ms) == ("aborted", 1000)
    assert rec.calls == [("on_working", "t1"), ("on_cancel", "t1")]
    assert summary["entries"]["skipped"] == 1
    assert summary["counters"]["entry_miss_skip"] == 0  # no miss policy for an abort


def test_duplicate_guard_suppresses_an_entry_while_one_works(impl: Any) -> None:
    sim, summary, _ = simulate_case(
        make_tape(AWAY), "maker_entry", [(0, "t1", "LONG"), (500, "t2", "SHORT")], impl=impl
    )
    assert [t.outcome for t in sim.trades] == ["skipped", "suppressed"]
    assert summary["counters"]["suppressed_dup_enter"] == 1


def test_taker_style_short_round_trip(impl: Any) -> None:
    sim, summary, rec = simulate_case(
        make_tape(AWAY), "taker", [(0, "t1", "SHORT")], [(1000, "t1", "MAX_HOLD")], impl=impl
    )
    (trade,) = sim.trades
    assert trade.entry is not None
    assert trade.exit is not None
    assert (trade.entry.price, trade.exit.price) == (999.9, 1001.1)  # sell bid, buy ask
    assert rec.calls == []
    # Fees 10 + half spread in (1 bp of 1000) + half spread out (0.1 of 1001.0).
    expected = 10.0 + 1.0 + 0.1 / 1001.0 * 1e4
    assert summary["costs_bps"]["total_per_round_trip"] == approx(expected)


def test_deadline_before_the_quote_arrives_keeps_the_clock_monotonic(impl: Any) -> None:
    # Latency 700 ms > exit TTL 500 ms: t0's exit quote (sent 1000) expires at 1500, before
    # it reaches the venue at 1700; t1's exit quote is registered at 1600 in between.
    flat = [(t, 999.9, 1000.1) for t in range(0, 5001, 1000)]
    log: list[float] = []
    sim, _, rec = simulate_case(
        make_tape(flat),
        "maker_exit",
        [(0, "t0", "LONG"), (800, "t1", "LONG")],
        [(1000, "t0", "TAKE_PROFIT"), (1600, "t1", "TAKE_PROFIT")],
        impl=impl,
        latency_ms=700,
        exit_ttl_s=0.5,
        clock_log=log,
    )
    assert log == sorted(log)
    assert log == approx([1.0, 1.5, 1.6, 2.1])  # register, expired, register, expired
    assert rec.calls == [
        ("on_working", "t0"),
        ("on_working", "t1"),
        ("on_cancel", "t0"),
        ("on_escalate", "t0"),
        ("on_cancel", "t1"),
        ("on_escalate", "t1"),
    ]
    # The cancels land at 2200 and 2800; the MARKET fallbacks fill 700 ms later at the bid.
    assert [(t.exit.ms, t.exit.price) for t in sim.trades if t.exit] == [
        (2900, 999.9),
        (3500, 999.9),
    ]


def test_queue_fills_on_a_trade_through_a_level_that_is_never_the_best(impl: Any) -> None:
    # The quote at 999.8 stays behind the 999.9 bid; a sale at 999.7 swept through it.
    rows = [(t, 999.9, 1000.1, 5.0, 5.0) for t in range(0, 4001, 1000)]
    sim, _, _ = simulate_case(
        make_tape(rows, [(2000, 999.7, 0.001, -1)]),
        "maker_entry",
        [(0, "t1", "LONG")],
        impl=impl,
        fill_model="queue",
    )
    (trade,) = sim.trades
    assert trade.outcome == "maker"
    assert trade.entry is not None
    assert (trade.entry.ms, trade.entry.maker) == (2000, True)
    assert trade.entry.price == approx(999.8)
