"""Fill models: when does a resting quote fill? A few numpy searches per quote.

A quote fills at the first event that *proves* it filled under its model:

- the opposite best reaching its price (ask <= a BUY quote's price): the whole level was
  taken, the quote with it. A proof under every model;
- a trade strictly through its price (below a BUY quote): the same, under every model;
- ``queue``: the volume traded at its price by the side that hits it (sellers for a BUY)
  exhausting the size ahead plus the quote's own size. The size ahead is capped at the
  displayed size of the level at every book update of that level (hftbacktest's
  risk-averse, or conservative, queue model), so it only ever shrinks;
- ``print`` (optimistic): any trade at or through its price, by either side.

``touch`` and ``through`` keep their names for saved sweeps; both are the first two proofs,
so they now fill at the same time. ``queue`` adds a proof, ``print`` a weaker one:
fill time under print <= queue <= touch == through (or the slower does not fill).

A quote arriving at ``start`` only fills on book rows or trades strictly after ``start``
and strictly before ``end`` (when its cancel lands): at equal times the cancel wins. At one
millisecond, trades count before book rows (the size ahead is never reduced twice by one
trade). Only ``queue`` fills in parts (a quote of ``qty`` > 0); the others fill in full.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from .book import Levels
from .options import CANCEL_FROM, DEFAULT_FILL_MODEL, FILL_MODELS
from .search import first_true
from .tape import Tape

__all__ = ["DEFAULT_FILL_MODEL", "FILL_MODELS", "FillPath", "fill_path", "first_fill"]

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
_NONE = np.empty(0, dtype=np.int64)
_NONE_F = np.empty(0, dtype=np.float64)


@dataclass(frozen=True, eq=False)
class FillPath:
    """How a quote of ``qty`` fills: first (maybe partial) fill, full fill, and the steps.

    ``times``/``filled``: the cumulative quantity filled at each step (``filled[-1]`` may be
    below ``qty`` when only part of it trades before the cancel lands). A full fill by a
    proof is the last step, with ``filled == qty``. ``qty`` 0 is a minimal quote: it has one
    step, its fill.
    """

    first_ms: int
    full_ms: int | None
    times: I64
    filled: F64
    qty: float

    def filled_before(self, t_ms: int) -> float:
        """Quantity filled by steps strictly before ``t_ms``."""
        k = int(self.times.searchsorted(t_ms, side="left"))
        return float(self.filled[k - 1]) if k else 0.0


def first_fill(
    model: str, tape: Tape, side: int, price: float, start: int, end: int, eps: float
) -> int | None:
    """Full-fill time in ms of a minimal quote (``side`` +1 buys, -1 sells), or None."""
    path = fill_path(model, tape, side, price, start, end, eps)
    return None if path is None else path.full_ms


def fill_path(
    model: str,
    tape: Tape,
    side: int,
    price: float,
    start: int,
    end: int,
    eps: float,
    qty: float = 0.0,
    levels: Levels | None = None,
    cancel_from: str = "back",
) -> FillPath | None:
    """How a quote resting from ``start`` until ``end`` fills, or None if it never fills.

    ``levels``: the L2 book, for the queue model's place in the queue (else the top of
    book); ``cancel_from``: where size removed from the quote's level is taken (see
    :func:`_queue_l2`)."""
    if model not in FILL_MODELS:
        raise ValueError(f"unknown fill model {model!r}; choose from {FILL_MODELS}")
    if model == "queue" and not tape.has_trades:
        raise ValueError("the queue fill model needs trades")
    proof = _min(
        _book_proof(tape, side, price, start, end, eps),
        _through(tape, side, price, start, end, eps),
    )
    if model == "print":
        proof = _min(proof, _print(tape, side, price, start, end, eps, proof))
    elif model == "queue":
        stop = end if proof is None else proof
        if levels is not None and levels.start_ms <= start:
            if cancel_from not in CANCEL_FROM:
                raise ValueError(f"unknown cancel_from {cancel_from!r}; choose from {CANCEL_FROM}")
            return _queue_l2(tape, levels, side, price, start, stop, eps, qty, proof, cancel_from)
        return _queue(tape, side, price, start, stop, eps, qty, proof)
    if proof is None:
        return None
    return _full(proof, qty)


def _min(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    return a if b is None or a <= b else b


def _full(t: int, qty: float) -> FillPath:
    return FillPath(t, t, np.array([t], dtype=np.int64), np.array([qty]), qty)


def _book_proof(
    tape: Tape, side: int, price: float, start: int, end: int, eps: float
) -> int | None:
    """The opposite best reaches the price."""
    lo, hi = tape.after(start), tape.before(end)
    if side > 0:
        limit, ask = price + eps, tape.ask
        i = first_true(lambda a, b: ask[a:b] <= limit, lo, hi)
    else:
        limit, bid = price - eps, tape.bid
        i = first_true(lambda a, b: bid[a:b] >= limit, lo, hi)
    return None if i < 0 else int(tape.ts[i])


def _through(tape: Tape, side: int, price: float, start: int, end: int, eps: float) -> int | None:
    """A trade prints strictly through the price."""
    lo, hi = tape.trades_after(start), tape.trades_before(end)
    px = tape.trade_px
    if side > 0:
        limit = price - eps
        i = first_true(lambda a, b: px[a:b] < limit, lo, hi)
    else:
        limit = price + eps
        i = first_true(lambda a, b: px[a:b] > limit, lo, hi)
    return None if i < 0 else int(tape.trade_ts[i])


def _print(
    tape: Tape, side: int, price: float, start: int, end: int, eps: float, proof: int | None
) -> int | None:
    """Any trade at or through the price."""
    lo = tape.trades_after(start)
    hi = tape.trades_before(end if proof is None else proof)
    px = tape.trade_px
    if side > 0:
        limit = price + eps
        i = first_true(lambda a, b: px[a:b] <= limit, lo, hi)
    else:
        limit = price - eps
        i = first_true(lambda a, b: px[a:b] >= limit, lo, hi)
    return None if i < 0 else int(tape.trade_ts[i])


def _ahead_at(tape: Tape, side: int, price: float, i: int, eps: float) -> float:
    """Displayed size ahead at book row ``i``: the level's size when it is the touch, 0 when
    the touch is worse (the level is empty), unknown (inf) when the touch is better."""
    best = float(tape.bid[i] if side > 0 else tape.ask[i])
    size = tape.bid_qty if side > 0 else tape.ask_qty
    gap = (price - best) * side  # > 0: the quote improves the touch
    if gap > eps:
        return 0.0
    if gap >= -eps:
        return 0.0 if size is None else float(size[i])
    return float("inf")


def _caps(tape: Tape, side: int, price: float, lo: int, hi: int, eps: float) -> F64:
    best = tape.bid[lo:hi] if side > 0 else tape.ask[lo:hi]
    sizes = tape.bid_qty if side > 0 else tape.ask_qty
    gap = (price - best) * side
    at = np.abs(gap) <= eps
    shown = np.zeros(hi - lo) if sizes is None else sizes[lo:hi]
    return np.where(gap > eps, 0.0, np.where(at, shown, np.inf))


def _queue(
    tape: Tape,
    side: int,
    price: float,
    start: int,
    stop: int,
    eps: float,
    qty: float,
    proof: int | None,
) -> FillPath | None:
    """Volume at the price against a capped queue ahead, until ``stop`` (a proof, or the
    cancel). With V the volume traded at the price so far and c_j the caps:
    ahead_k = min(ahead_0, min_j (c_j + V_j)) - V_k, and the quote has ``-ahead_k`` filled."""
    ahead0 = _ahead_at(tape, side, price, tape.asof(start), eps)
    t_lo, t_hi = tape.trades_after(start), tape.trades_before(stop)
    px = tape.trade_px[t_lo:t_hi]
    hit = (np.abs(px - price) <= eps) & (tape.trade_side[t_lo:t_hi] == -side)
    t_ts = tape.trade_ts[t_lo:t_hi][hit]
    t_qty = tape.trade_qty[t_lo:t_hi][hit]
    times: I64 = _NONE
    filled: F64 = _NONE_F
    if len(t_ts):
        b_lo, b_hi = tape.after(start), tape.before(stop)
        caps = _caps(tape, side, price, b_lo, b_hi, eps)
        keep = np.isfinite(caps)
        b_ts = tape.ts[b_lo:b_hi][keep]
        ts = np.concatenate([t_ts, b_ts])
        order = np.argsort(
            ts * 2 + np.concatenate([np.zeros(len(t_ts), np.int64), np.ones(len(b_ts), np.int64)]),
            kind="stable",
        )
        vol = np.concatenate([t_qty, np.zeros(len(b_ts))])[order]
        cap = np.concatenate([np.full(len(t_ts), np.inf), caps[keep]])[order]
        ts = ts[order]
        traded = np.cumsum(vol)
        floor = np.minimum.accumulate(np.minimum(cap + traded, ahead0))
        excess = traded - floor  # traded past the size ahead: the quote's fill
        tol = 1e-9 * max(1.0, float(traded[-1]))
        if qty > 0:
            part = (excess > tol) & (vol > 0)
            times, filled = ts[part], np.minimum(excess[part], qty)
        else:
            k = int(np.argmax(excess > tol))
            if excess[k] > tol:
                times, filled = ts[k : k + 1], np.zeros(1)
        if len(times):
            full = filled >= qty - tol
            if full.any():
                k = int(np.argmax(full)) + 1
                times, filled = times[:k], filled[:k]
                filled[-1] = qty
                return FillPath(int(times[0]), int(times[-1]), times, filled, qty)
    if proof is not None:
        times = np.append(times, np.int64(proof))
        filled = np.append(filled, qty)
        return FillPath(int(times[0]), proof, times, filled, qty)
    if not len(times):
        return None
    return FillPath(int(times[0]), None, times, filled, qty)


def _hits(
    tape: Tape, side: int, price: float, start: int, stop: int, eps: float
) -> tuple[I64, F64]:
    """Trades at the price by the side that hits the quote, in (start, stop)."""
    t_lo, t_hi = tape.trades_after(start), tape.trades_before(stop)
    px = tape.trade_px[t_lo:t_hi]
    hit = (np.abs(px - price) <= eps) & (tape.trade_side[t_lo:t_hi] == -side)
    return tape.trade_ts[t_lo:t_hi][hit], tape.trade_qty[t_lo:t_hi][hit]


def _queue_l2(
    tape: Tape,
    levels: Levels,
    side: int,
    price: float,
    start: int,
    stop: int,
    eps: float,
    qty: float,
    proof: int | None,
    cancel_from: str,
) -> FillPath | None:
    """The queue model on the L2 book, one event at a time (a readable loop: a quote's
    level changes a few times a second).

    - The quote joins behind the size displayed at its price on arrival (0: an empty level).
    - Trades at the price take the front of the queue: ahead -= traded.
    - A level update that shrinks the level by more than what traded since the last update
      removes the difference: taken from the ``front`` (ahead of the quote first), the
      ``back`` (behind it first; hftbacktest's risk-averse model), or in ``proportional``
      shares of the size ahead and behind. Growth joins behind the quote.
    - Whatever the choice, ahead never exceeds the displayed size (the cap).
    """
    ts_l, q_l = levels.history(side, price, eps)
    k0 = int(ts_l.searchsorted(start, side="right"))
    k1 = int(ts_l.searchsorted(stop, side="left"))
    shown = float(q_l[k0 - 1]) if k0 else 0.0
    ahead = shown
    t_ts, t_qty = _hits(tape, side, price, start, stop, eps)
    events = sorted(
        [(int(t), 0, float(v)) for t, v in zip(t_ts.tolist(), t_qty.tolist(), strict=True)]
        + [
            (int(t), 1, float(v))
            for t, v in zip(ts_l[k0:k1].tolist(), q_l[k0:k1].tolist(), strict=True)
        ]
    )
    traded_since = 0.0
    tol = 1e-9 * max(1.0, shown)
    times: list[int] = []
    filled: list[float] = []
    for t, kind, v in events:
        if kind == 0:
            ahead -= v
            traded_since += v
            excess = -ahead
            if excess > tol and (not filled or excess > filled[-1] + tol):
                times.append(t)
                filled.append(min(excess, qty) if qty > 0 else 0.0)
                if qty <= 0 or excess >= qty - tol:
                    filled[-1] = qty
                    return FillPath(times[0], t, np.asarray(times), np.asarray(filled), qty)
            continue
        base = shown - traded_since
        removed = base - v
        if removed > 0 and ahead > 0:
            if cancel_from == "front":
                take = min(ahead, removed)
            elif cancel_from == "back":
                take = max(0.0, removed - max(base - ahead, 0.0))
            else:
                take = removed * ahead / base if base > 0 else ahead
            ahead -= take
        ahead = min(ahead, v)
        shown, traded_since = v, 0.0
    if proof is not None:
        times.append(proof)
        filled.append(qty)
        return FillPath(times[0], proof, np.asarray(times), np.asarray(filled), qty)
    if not times:
        return None
    return FillPath(times[0], None, np.asarray(times, dtype=np.int64), np.asarray(filled), qty)
