"""Statistics behind a sweep's ranking: pooled summaries, bootstrap intervals, paired tests.

The ranked figure is the total cost incl. missed entries per round trip, pooled over every
tape: (sum of round-trip costs + sum of missed-entry opportunity costs) / round trips.

Its 95% interval is a percentile bootstrap that resamples either whole tapes (one symbol's
day: the unit of work) or entry intents (each a round trip, a missed entry, or neither).
Every config is resampled with the same draws (the tapes and intents are the same for all
configs), so the difference from the best config is a paired difference: it is significant
when its own 95% interval excludes zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from .engine import StyleRun
from .options import BOOTSTRAP_METHODS
from .venue import Venue

F64 = NDArray[np.float64]
RESAMPLES: Final = 2000
SEED: Final = 20231115
#: ``auto`` resamples tapes when there are at least this many, else intents.
MIN_TAPES_FOR_TAPE_BOOTSTRAP: Final = 10
METHODS: Final = BOOTSTRAP_METHODS
METHOD_TEXT: Final = {
    "tapes": "bootstrap over tapes (day × symbol)",
    "intents": "bootstrap over entry intents (round trips and missed entries)",
}


def intent_costs(run: StyleRun, venue: Venue) -> tuple[F64, F64]:
    """Per entry intent, in intent order: its cost in bps and 1.0 if it made a round trip.

    A round trip costs its fees and slippage; a missed entry its opportunity cost (0 in the
    denominator); an entry still open without an exit counts for nothing. The sum of the
    first over the sum of the second is ``total_incl_missed``.
    """
    cost = np.zeros(len(run.trades))
    trip = np.zeros(len(run.trades))
    for k, t in enumerate(run.trades):
        if t.entry is not None and t.exit is not None and t.exit_decision_mid is not None:
            fee = venue.fee_bps(t.entry.maker) + venue.fee_bps(t.exit.maker)
            s_in = t.side * (t.entry.price - t.decision_mid) / t.decision_mid * 1e4
            s_out = -t.side * (t.exit.price - t.exit_decision_mid) / t.exit_decision_mid * 1e4
            cost[k] = fee + s_in + s_out
            trip[k] = 1.0
        elif t.entry is None and t.giveup_mid is not None:
            cost[k] = t.side * (t.giveup_mid - t.decision_mid) / t.decision_mid * 1e4
    return cost, trip


# ── pooling ──────────────────────────────────────────────────────────────────


def _weighted(parts: Sequence[tuple[float | None, int]]) -> float | None:
    total = sum(w for v, w in parts if v is not None)
    if not total:
        return None
    return sum(float(v) * w for v, w in parts if v is not None) / total


def _sum_dicts(dicts: Sequence[dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in dicts:
        for k, v in d.items():
            out[k] = out.get(k, 0) + int(v)
    return out


def pool(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One config's summary over its tapes (task results, in tape order)."""
    sums = [r["summary"] for r in results]
    cost = np.concatenate([r["cost"] for r in results])
    trip = np.concatenate([r["trip"] for r in results])
    rts = [s["exits"]["round_trips"] for s in sums]
    missed = [s["entries"]["skipped"] for s in sums]
    costs = {
        key: _weighted([(s["costs_bps"][key], n) for s, n in zip(sums, rts, strict=True)])
        for key in ("fees", "entry_slippage", "exit_slippage", "total_per_round_trip")
    }
    costs["missed_opportunity"] = _weighted(
        [(s["costs_bps"]["missed_opportunity"], n) for s, n in zip(sums, missed, strict=True)]
    )
    n_rt = float(trip.sum())
    costs["total_incl_missed"] = float(cost.sum() / n_rt) if n_rt else None
    makers = [s["markouts_bps"]["maker_fills"] for s in sums]
    markouts: dict[str, Any] = {"maker_fills": sum(makers)}
    for h in ("1s", "5s", "30s"):
        markouts[h] = _weighted(
            [(s["markouts_bps"][h], n) for s, n in zip(sums, makers, strict=True)]
        )
    return {
        "style": sums[0]["style"],
        "config": results[0]["config"],
        "tapes": len(results),
        "round_trips": int(n_rt),
        "entries": _sum_dicts([s["entries"] for s in sums]),
        "exits": _sum_dicts([s["exits"] for s in sums]),
        "costs_bps": costs,
        "markouts_bps": markouts,
        "counters": _sum_dicts([s["counters"] for s in sums]),
        "per_tape": [
            {
                "tape": r["tape"],
                "round_trips": s["exits"]["round_trips"],
                "total_incl_missed": s["costs_bps"]["total_incl_missed"],
            }
            for r, s in zip(results, sums, strict=True)
        ],
    }


# ── bootstrap ────────────────────────────────────────────────────────────────


def _counts(rng: np.random.Generator, n: int, resamples: int) -> F64:
    """How often each of ``n`` items is drawn, per resample: (resamples, n)."""
    idx = rng.integers(0, n, (resamples, n)) + (np.arange(resamples) * n)[:, None]
    return np.bincount(idx.ravel(), minlength=resamples * n).reshape(resamples, n).astype(float)


def choose_method(method: str, tapes: int, intents: Sequence[int]) -> str:
    if method not in METHODS:
        raise ValueError(f"bootstrap method {method!r}: choose from {', '.join(METHODS)}")
    if method == "intents" and len(set(intents)) > 1:
        raise ValueError("a bootstrap over intents needs the same intents for every config")
    if method == "auto":
        paired = len(set(intents)) == 1
        return "tapes" if tapes >= MIN_TAPES_FOR_TAPE_BOOTSTRAP or not paired else "intents"
    return method


def rank_with_ci(
    per_config: Sequence[Sequence[dict[str, Any]]],
    *,
    method: str = "auto",
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Pool each config's task results, add its interval and its difference from the best.

    ``per_config[c]`` holds config ``c``'s results on every tape, in tape order. Returns the
    summaries cheapest first (configs without a round trip last) and the method used.
    """
    pooled = [pool(rs) for rs in per_config]
    tapes = len(per_config[0])
    chosen = choose_method(method, tapes, [sum(len(r["cost"]) for r in rs) for rs in per_config])
    rng = np.random.default_rng(seed)
    if chosen == "tapes":
        num = np.array([[float(r["cost"].sum()) for r in rs] for rs in per_config])
        den = np.array([[float(r["trip"].sum()) for r in rs] for rs in per_config])
        w = _counts(rng, tapes, resamples)
    else:
        num = np.array([np.concatenate([r["cost"] for r in rs]) for rs in per_config])
        den = np.array([np.concatenate([r["trip"] for r in rs]) for rs in per_config])
        w = _counts(rng, num.shape[1], resamples)
    with np.errstate(invalid="ignore", divide="ignore"):
        boot = (w @ num.T) / (w @ den.T)  # (resamples, configs)
    boot[~np.isfinite(boot)] = np.nan
    point = [p["costs_bps"]["total_incl_missed"] for p in pooled]
    order = sorted(range(len(pooled)), key=lambda c: np.inf if point[c] is None else point[c])
    best = order[0]
    for c, p in enumerate(pooled):
        p["ci95_bps"] = _interval(boot[:, c])
        diff = None if point[c] is None or point[best] is None else point[c] - point[best]
        low, high = _interval(boot[:, c] - boot[:, best]) if c != best else [None, None]
        significant = None
        if low is not None and high is not None:
            significant = bool(low > 0 or high < 0)
        p["vs_best"] = {"diff_bps": diff, "ci95_bps": [low, high], "significant": significant}
    info = {
        "method": chosen,
        "text": METHOD_TEXT[chosen],
        "resamples": resamples,
        "seed": seed,
        "tapes": tapes,
        "paired": True,
    }
    return [pooled[c] for c in order], info


def _interval(samples: F64) -> list[float | None]:
    """The 2.5th and 97.5th percentiles; none when over 10% of resamples have no round trip."""
    ok = samples[np.isfinite(samples)]
    if len(ok) < len(samples) * 0.9:
        return [None, None]
    low, high = np.percentile(ok, [2.5, 97.5])
    return [float(low), float(high)]
