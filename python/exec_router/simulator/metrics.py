"""From simulated trades to the report's numbers. Costs are bps of notional, positive = cost.

- Fees: maker or taker fee of each leg.
- Slippage: against the mid when the leg was decided (the intent's arrival mid for the entry,
  the first exit trigger's mid for the exit), signed so that paying up is positive.
- Cost per round trip: entry and exit fees plus entry and exit slippage, averaged over the
  completed round trips.
- Opportunity cost of a missed entry: the mid move against the intended side between the
  intent and the moment the runtime gave up on it (skip or abort). An entry suppressed by
  the global duplicate-entry guard is priced the same way, up to the moment the guard let
  go (the resting entry filled or left), or the end of the tape.
- Total incl. missed: (sum of round-trip costs + sum of opportunity costs) / round trips.
- Markout after a maker fill at horizon h: the mid move against the filled side from the
  fill to h later, in bps of the mid at the fill (positive = adverse selection).
- Fill latency: from the decision (intent or first exit trigger) to the fill, in ms.
- Fill ratio: quantity filled / quantity quoted over every maker quote (a minimal quote
  counts 1, filled or not). Filled notional: quantity x price of every leg (with ``--qty``).
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np

from .engine import StyleRun, Trade
from .market import Market
from .tape import Tape
from .venue import Venue

MARKOUT_REPORT_S: Final = (1.0, 5.0, 30.0)
MARKOUT_CURVE_S: Final = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)


def _bps(x: float, ref: float) -> float:
    return x / ref * 1e4


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def markouts(
    run: StyleRun, tape: Tape | Market, horizons: tuple[float, ...]
) -> dict[str, float | None]:
    """Mean adverse mid move after maker fills, per horizon (seconds) in bps."""
    market = tape if isinstance(tape, Market) else Market.of(tape)
    fills: dict[str, tuple[list[int], list[int]]] = {}
    for tr in run.trades:
        times, sides = fills.setdefault(tr.intent.asset, ([], []))
        if tr.entry is not None and tr.entry.maker:
            times.append(tr.entry.ms)
            sides.append(tr.side)
        if tr.exit is not None and tr.exit.maker:
            times.append(tr.exit.ms)
            sides.append(-tr.side)
    if not any(times for times, _ in fills.values()):
        return {f"{h:g}s": None for h in horizons}
    moves: dict[float, list[Any]] = {h: [] for h in horizons}
    for asset, (times, sides) in fills.items():
        if not times:
            continue
        sym_tape = market.tapes[asset]
        t = np.asarray(times, dtype=np.int64)
        s = np.asarray(sides, dtype=np.float64)
        base = sym_tape.mids_at(t)
        for h in horizons:
            later = sym_tape.mids_at(t + round(h * 1000))
            moves[h].append(-s * (later - base) / base * 1e4)
    return {f"{h:g}s": float(np.mean(np.concatenate(moves[h]))) for h in horizons}


def summarize(
    run: StyleRun, tape: Tape | Market, venue: Venue, symbol: str | None = None
) -> dict[str, Any]:
    """The report's numbers for one style, JSON-ready; ``symbol``: that symbol's trades only
    (the counters stay the router's, which spans every symbol)."""
    trades = run.trades
    if symbol is not None:
        trades = [t for t in trades if t.intent.asset == symbol]
        run = StyleRun(run.config, trades, run.counters, run.seconds)
    entries = [t for t in trades if t.entry is not None]
    round_trips = [t for t in entries if t.exit is not None]
    missed = [t for t in trades if t.entry is None]

    fees, slip_in, slip_out, totals = [], [], [], []
    for t in round_trips:
        assert t.entry is not None
        assert t.exit is not None
        assert t.exit_decision_mid is not None
        fee = _fee(venue, t.entry.maker_part) + _fee(venue, t.exit.maker_part)
        s_in = t.side * _bps(t.entry.price - t.decision_mid, t.decision_mid)
        s_out = -t.side * _bps(t.exit.price - t.exit_decision_mid, t.exit_decision_mid)
        fees.append(fee)
        slip_in.append(s_in)
        slip_out.append(s_out)
        totals.append(fee + s_in + s_out)
    opp = [_opportunity(t) for t in missed]
    opp_suppressed = [_opportunity(t) for t in missed if t.outcome == "suppressed"]
    total_incl = (sum(totals) + sum(opp)) / len(round_trips) if round_trips else None

    lat_in = [float(t.entry.ms - t.decision_ms) for t in entries if t.entry is not None]
    lat_out = [
        float(t.exit.ms - t.exit_decision_ms)
        for t in round_trips
        if t.exit is not None and t.exit_decision_ms is not None
    ]
    quoted = sum(t.quoted_qty for t in trades)
    notional = sum(f.qty * f.price for t in trades for f in (t.entry, t.exit) if f is not None)
    n_maker = sum(1 for t in entries if t.entry and t.entry.maker) + sum(
        1 for t in round_trips if t.exit and t.exit.maker
    )
    return {
        "style": run.config.style,
        "entries": {
            "planned": len(trades),
            "maker_fills": sum(1 for t in trades if t.outcome == "maker"),
            "taker_fills": sum(1 for t in trades if t.outcome == "taker"),
            "skipped": len(missed),
            "suppressed": sum(1 for t in trades if t.outcome == "suppressed"),
            "aborted": sum(1 for t in trades if t.outcome == "aborted"),
            "retried": sum(t.retries for t in trades),
            "rejected": sum(t.entry_rejects for t in trades),
        },
        "exits": {
            "round_trips": len(round_trips),
            "maker_fills": sum(1 for t in round_trips if t.exit and t.exit.maker),
            "taker_fills": sum(1 for t in round_trips if t.exit and not t.exit.maker),
            "escalated": sum(t.exit_fallbacks + t.preemptions for t in trades),
            "ttl_fallbacks": sum(t.exit_fallbacks for t in trades),
            "preempted": sum(t.preemptions for t in trades),
            "rejected": sum(t.exit_rejects for t in trades),
        },
        "size": {
            "fill_ratio": sum(t.quoted_filled for t in trades) / quoted if quoted else None,
            "filled_notional": notional if notional > 0 else None,
        },
        "costs_bps": {
            "fees": _mean(fees),
            "entry_slippage": _mean(slip_in),
            "exit_slippage": _mean(slip_out),
            "total_per_round_trip": _mean(totals),
            "missed_opportunity": _mean(opp),
            "suppressed_opportunity": _mean(opp_suppressed),
            "suppressed_opportunity_sum": sum(opp_suppressed),
            "total_incl_missed": total_incl,
        },
        "fill_latency_ms": {
            "entry_p50": _pct(lat_in, 50),
            "entry_p95": _pct(lat_in, 95),
            "exit_p50": _pct(lat_out, 50),
            "exit_p95": _pct(lat_out, 95),
        },
        "markouts_bps": {
            "maker_fills": n_maker,
            **markouts(run, tape, MARKOUT_REPORT_S),
        },
        "markout_curve_bps": markouts(run, tape, MARKOUT_CURVE_S),
        "counters": dict(run.counters),
        "sim_seconds": run.seconds,
    }


def _fee(venue: Venue, maker_part: float) -> float:
    return maker_part * venue.maker_fee_bps + (1.0 - maker_part) * venue.taker_fee_bps


def _opportunity(t: Trade) -> float:
    if t.giveup_mid is None:
        return 0.0
    return t.side * _bps(t.giveup_mid - t.decision_mid, t.decision_mid)
