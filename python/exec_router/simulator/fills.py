"""Fill models: when would a resting quote fill? One numpy search per quote.

- ``touch``: the opposite best reaches the quote (ask <= bid quote, bid >= ask quote).
- ``through``: a trade prints strictly through the quote (below a bid quote, above an ask
  quote). On a tape without trades, the opposite best must go strictly through instead.
  The default: the most pessimistic model, since the level must be fully consumed.
- ``queue``: join the back of the displayed queue. The size ahead is the displayed size at
  the quote's price when the quote first stands at the touch (0 when it improves the touch,
  and 0 without size columns). It fills once the aggressor volume traded at the price after
  joining exceeds the size ahead, or on any trade through the price. Needs trades.

A quote arriving at ``start`` can only fill on book rows or trades strictly after ``start``
and strictly before ``end`` (when its cancel lands): at equal times the cancel wins.
"""

from __future__ import annotations

import numpy as np

from .options import DEFAULT_FILL_MODEL, FILL_MODELS
from .search import Mask, first_true
from .tape import Tape

__all__ = ["DEFAULT_FILL_MODEL", "FILL_MODELS", "first_fill"]


def first_fill(
    model: str, tape: Tape, side: int, price: float, start: int, end: int, eps: float
) -> int | None:
    """Fill time in ms of a quote (``side`` +1 buys, -1 sells), or None if it never fills."""
    if model == "touch":
        return _touch(tape, side, price, start, end, eps)
    if model == "through":
        if tape.has_trades:
            return _through_trades(tape, side, price, start, end, eps)
        return _through_book(tape, side, price, start, end, eps)
    if model == "queue":
        return _queue(tape, side, price, start, end, eps)
    raise ValueError(f"unknown fill model {model!r}; choose from {FILL_MODELS}")


def _touch(tape: Tape, side: int, price: float, start: int, end: int, eps: float) -> int | None:
    lo, hi = tape.after(start), tape.before(end)
    if side > 0:
        limit, ask = price + eps, tape.ask
        i = first_true(lambda a, b: ask[a:b] <= limit, lo, hi)
    else:
        limit, bid = price - eps, tape.bid
        i = first_true(lambda a, b: bid[a:b] >= limit, lo, hi)
    return None if i < 0 else int(tape.ts[i])


def _through_book(
    tape: Tape, side: int, price: float, start: int, end: int, eps: float
) -> int | None:
    lo, hi = tape.after(start), tape.before(end)
    if side > 0:
        limit, ask = price - eps, tape.ask
        i = first_true(lambda a, b: ask[a:b] < limit, lo, hi)
    else:
        limit, bid = price + eps, tape.bid
        i = first_true(lambda a, b: bid[a:b] > limit, lo, hi)
    return None if i < 0 else int(tape.ts[i])


def _through_trades(
    tape: Tape, side: int, price: float, start: int, end: int, eps: float
) -> int | None:
    lo, hi = tape.trades_after(start), tape.trades_before(end)
    px = tape.trade_px
    if side > 0:
        limit = price - eps
        i = first_true(lambda a, b: px[a:b] < limit, lo, hi)
    else:
        limit = price + eps
        i = first_true(lambda a, b: px[a:b] > limit, lo, hi)
    return None if i < 0 else int(tape.trade_ts[i])


def _queue(tape: Tape, side: int, price: float, start: int, end: int, eps: float) -> int | None:
    if not tape.has_trades:
        raise ValueError("the queue fill model needs trades")
    joined, ahead = _join(tape, side, price, start, end, eps)
    join = end if joined is None else joined  # never at the touch: only trades through fill
    # Trades through the price fill from arrival on; volume at the price counts after joining.
    lo, hi = tape.trades_after(start), tape.trades_before(end)
    px, qty, aggressor, tts = tape.trade_px, tape.trade_qty, tape.trade_side, tape.trade_ts
    hitter = -side  # a resting bid is filled by sellers, a resting ask by buyers
    chunk = 4096
    traded = 0.0
    while lo < hi:
        b = min(hi, lo + chunk)
        p = px[lo:b]
        at = (np.abs(p - price) <= eps) & (aggressor[lo:b] == hitter) & (tts[lo:b] > join)
        through: Mask = p < price - eps if side > 0 else p > price + eps
        cum = traded + np.cumsum(np.where(at, qty[lo:b], 0.0))
        hit = through | (at & (cum > ahead))
        k = int(np.argmax(hit))
        if hit[k]:
            return int(tts[lo + k])
        traded = float(cum[-1])
        lo = b
        chunk *= 4
    return None


def _join(
    tape: Tape, side: int, price: float, start: int, end: int, eps: float
) -> tuple[int | None, float]:
    """When the quote first stands at the touch, and the displayed size ahead of it then."""
    i = tape.asof(start)
    best, size = (tape.bid, tape.bid_qty) if side > 0 else (tape.ask, tape.ask_qty)
    improves = best[i] < price - eps if side > 0 else best[i] > price + eps
    if improves:
        return start, 0.0
    at_touch = abs(best[i] - price) <= eps
    if not at_touch:  # behind the touch: wait until the level becomes the best
        lo, hi = tape.after(start), tape.before(end)
        limit = price + eps if side > 0 else price - eps
        if side > 0:
            j = first_true(lambda a, b: best[a:b] <= limit, lo, hi)
        else:
            j = first_true(lambda a, b: best[a:b] >= limit, lo, hi)
        if j < 0:
            return None, 0.0
        i, start = j, int(tape.ts[j])
        at_touch = abs(best[i] - price) <= eps
    ahead = float(size[i]) if (size is not None and at_touch) else 0.0
    return start, ahead
