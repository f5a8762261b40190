"""Properties of the simulator over random tapes, intents and configs (hypothesis)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from exec_router import ExecutionRouter
from exec_router.simulator import FILL_MODELS, OUTCOMES

from .sim_support import make_tape, simulate_case

TICK = 0.1
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def tapes(draw: Any, with_trades: bool = True) -> Any:
    """A random walk on the BTCUSDT tick grid: rows every 100-1000 ms, spreads of 1-5 ticks,
    trades at or through the touch."""
    n = draw(st.integers(5, 60))
    level = 10_000
    t = 0
    rows = []
    trades = []
    for _ in range(n):
        level += draw(st.integers(-6, 6))
        spread = draw(st.integers(1, 5))
        rows.append((t, level * TICK, (level + spread) * TICK, 1.0 + draw(st.integers(0, 3)), 2.0))
        if with_trades and draw(st.booleans()):
            side = draw(st.sampled_from([-1, 1]))
            depth = draw(st.integers(0, 3))
            px = (level - depth) if side < 0 else (level + spread + depth)
            trades.append((t + 1, px * TICK, draw(st.sampled_from([0.5, 1.0, 3.0])), side))
        t += draw(st.integers(1, 10)) * 100
    return make_tape(rows, trades)


@st.composite
def intents(draw: Any, span_ms: int) -> Any:
    times = sorted(set(draw(st.lists(st.integers(0, span_ms), min_size=1, max_size=6))))
    entries = [
        (ts, f"i{k}", draw(st.sampled_from(["LONG", "SHORT"]))) for k, ts in enumerate(times)
    ]
    exits = []
    for ts, tid, _ in entries:
        if draw(st.booleans()):
            reason = draw(st.sampled_from(["TAKE_PROFIT", "CATASTROPHIC_LOSS", "MAX_HOLD"]))
            exits.append((ts + draw(st.integers(0, 8_000)), tid, reason))
    return entries, sorted(exits)


configs = st.fixed_dictionaries(
    {
        "entry_ttl_s": st.sampled_from([0.5, 1.0, 3.0]),
        "exit_ttl_s": st.sampled_from([0.5, 2.0]),
        "offset_ticks": st.integers(0, 3),
        "entry_miss": st.sampled_from(["skip", "retry", "market"]),
        "entry_retries": st.integers(0, 2),
        "retry_exhaust": st.sampled_from(["skip", "market"]),
        "max_spread_bps": st.sampled_from([2.0, 5.0]),
        "post_only": st.booleans(),
    }
)


@SETTINGS
@given(data=st.data(), tape=tapes())
def test_taker_never_rests_and_pays_fees_plus_half_spreads(data: Any, tape: Any) -> None:
    entries, exits = data.draw(intents(tape.end_ms))
    sim, summary, rec = simulate_case(tape, "taker", entries, exits, latency_ms=0)
    assert rec.calls == []
    assert all(t.quotes == 0 for t in sim.trades)
    c = summary["counters"]
    assert c["maker_entries"] == c["maker_exits"] == c["fills_working"] == 0
    for trade in sim.trades:
        if trade.exit is None:
            continue
        assert trade.entry is not None
        assert trade.exit_decision_ms is not None
        i_in, i_out = tape.asof(trade.decision_ms), tape.asof(trade.exit_decision_ms)
        half_in = (tape.ask[i_in] - tape.bid[i_in]) / 2 / tape.mid[i_in] * 1e4
        half_out = (tape.ask[i_out] - tape.bid[i_out]) / 2 / tape.mid[i_out] * 1e4
        slip_in = trade.side * (trade.entry.price - trade.decision_mid) / trade.decision_mid
        out_mid = trade.exit_decision_mid
        assert out_mid is not None
        slip_out = -trade.side * (trade.exit.price - out_mid) / out_mid
        total = 5.0 + 5.0 + (slip_in + slip_out) * 1e4
        assert total == pytest.approx(10.0 + half_in + half_out, abs=1e-9)


@SETTINGS
@given(
    data=st.data(),
    tape=tapes(),
    style=st.sampled_from(["taker", "maker_entry", "maker_exit", "maker_both"]),
    model=st.sampled_from(FILL_MODELS),
    latency=st.sampled_from([0, 50, 250]),
    config=configs,
)
def test_every_intent_ends_in_exactly_one_outcome(
    data: Any, tape: Any, style: str, model: str, latency: int, config: dict[str, Any]
) -> None:
    assume(model != "queue" or tape.has_trades)  # the queue model refuses a tape without trades
    entries, exits = data.draw(intents(tape.end_ms))
    sim, summary, _ = simulate_case(
        tape, style, entries, exits, fill_model=model, latency_ms=latency, **config
    )
    assert len(sim.trades) == len(entries)
    e = summary["entries"]
    assert e["maker_fills"] + e["taker_fills"] + e["skipped"] == e["planned"] == len(entries)
    for trade in sim.trades:
        assert trade.outcome in OUTCOMES
        filled = trade.entry is not None
        assert filled == (trade.outcome in ("maker", "taker"))
        if filled:  # every position is closed, once
            assert trade.closed
            assert trade.exit is not None
            assert trade.exit.ms >= trade.entry.ms  # type: ignore[union-attr]
        else:
            assert trade.exit is None
            assert trade.giveup_ms is not None
    assert sim.router.working_orders() == []
    c = summary["counters"]
    assert c["plans_entry"] == len(entries)
    assert c["fills_working"] == sum(t.quote_fills for t in sim.trades)
    assert c["maker_entries"] + c["maker_exits"] <= sum(t.quotes for t in sim.trades)
    if style in ("taker", "maker_exit"):
        assert e["maker_fills"] == 0
    if style in ("taker", "maker_entry"):
        assert summary["exits"]["maker_fills"] == 0


def test_the_default_backend_drives_the_simulation() -> None:
    tape = make_tape([(0, 999.9, 1000.1), (1000, 999.9, 1000.1)])
    sim, _, _ = simulate_case(tape, "taker", [(0, "t1", "LONG")])
    assert type(sim.router) is ExecutionRouter


def _native_and_pure() -> tuple[Any, Any]:
    from exec_router import reference

    try:
        from exec_router import _core
    except ImportError as exc:  # pragma: no cover - only without a build
        pytest.skip(str(exc))
    return _core.ExecutionRouter, reference.ExecutionRouter


def _fingerprint(sim: Any) -> list[Any]:
    return [
        (t.outcome, t.entry, t.exit, t.entry_tid, t.retries, t.preemptions, t.exit_fallbacks)
        for t in sim.trades
    ]


@SETTINGS
@given(
    data=st.data(),
    tape=tapes(),
    style=st.sampled_from(["maker_entry", "maker_exit", "maker_both"]),
    model=st.sampled_from(FILL_MODELS),
    latency=st.sampled_from([0, 120]),
    config=configs,
)
def test_native_and_pure_routers_replay_identically(
    data: Any, tape: Any, style: str, model: str, latency: int, config: dict[str, Any]
) -> None:
    entries, exits = data.draw(intents(tape.end_ms))
    native, pure = _native_and_pure()
    runs = [
        simulate_case(
            tape,
            style,
            entries,
            exits,
            impl=Impl(cls),
            fill_model=model,
            latency_ms=latency,
            **config,
        )
        for cls in (native, pure)
    ]
    (sim_a, sum_a, rec_a), (sim_b, sum_b, rec_b) = runs
    assert _fingerprint(sim_a) == _fingerprint(sim_b)
    assert sum_a["counters"] == sum_b["counters"]
    assert rec_a.calls == rec_b.calls


class Impl:
    """The one attribute ``simulate_case`` reads from a backend."""

    def __init__(self, cls: Any) -> None:
        self.ExecutionRouter = cls


@settings(max_examples=200, deadline=None)
@given(
    size=st.integers(0, 5_000),
    hits=st.lists(st.integers(0, 4_999), max_size=3),
    lo=st.integers(0, 5_000),
    hi=st.integers(0, 5_000),
)
def test_chunked_search_finds_the_first_match(size: int, hits: list[int], lo: int, hi: int) -> None:
    import numpy as np

    from exec_router.simulator.search import first_true

    mask = np.zeros(size, dtype=bool)
    mask[[h for h in hits if h < size]] = True
    hi = min(hi, size)
    expected = next((i for i in range(lo, hi) if mask[i]), -1)
    assert first_true(lambda a, b: mask[a:b], lo, hi) == expected
