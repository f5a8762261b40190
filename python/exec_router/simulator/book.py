"""The L2 book rebuilt from depth messages, kept as each price level's size over time.

Rebuild rules:

- The book starts at the first snapshot; a later snapshot replaces the whole book (a level
  it does not list is emptied).
- Binance (messages carry ids): a diff whose ``u`` is below the snapshot's
  ``lastUpdateId`` is older than the snapshot and dropped; the others apply after it in
  ``u`` order (the first one straddles the snapshot: ``U`` <= lastUpdateId <= ``u``). The
  loader has already checked that ``pu`` chains each diff to the one before.
- Tardis (no ids): messages apply in file order.
- A diff sets a level's size (0 removes it). A negative size, or a book whose best bid is at
  or above its best ask once a message is applied, is an error naming that line.

The result (:class:`Levels`) lists every level change, sorted by side, price, then time: a
quote's level is one contiguous block, found by two binary searches.
"""

from __future__ import annotations

import heapq
import weakref
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from .depth import Depth
from .errors import TapeError

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
I8 = NDArray[np.int8]


@dataclass(frozen=True, eq=False)
class Levels:
    """Level changes ``(side, px, ts, qty)``, sorted by side, price, time.

    ``start_ms``: when the book starts (its first snapshot); before that no level is known.
    """

    side: I8
    px: F64
    ts: I64
    qty: F64
    start_ms: int

    def history(self, side: int, price: float, eps: float) -> tuple[I64, F64]:
        """Times and sizes of every change of one level."""
        lo = int(self.side.searchsorted(side, side="left"))
        hi = int(self.side.searchsorted(side, side="right"))
        px = self.px[lo:hi]
        a = lo + int(px.searchsorted(price - eps, side="left"))
        b = lo + int(px.searchsorted(price + eps, side="right"))
        return self.ts[a:b], self.qty[a:b]


_CACHE: weakref.WeakKeyDictionary[Depth, Levels] = weakref.WeakKeyDictionary()


def levels_of(depth: Depth) -> Levels:
    """The rebuilt book of ``depth`` (built once per Depth)."""
    got = _CACHE.get(depth)
    if got is None:
        got = _CACHE[depth] = rebuild(depth)
    return got


def _order(depth: Depth) -> list[int]:
    """Messages in the order they apply: from the first snapshot on."""
    kinds = depth.kind
    snaps = np.flatnonzero(kinds == 1)
    if not len(snaps):
        raise TapeError(
            depth.source,
            None,
            "depth messages but no snapshot to start the book: the queue model needs one "
            "(give the file from a snapshot on, or leave it out to use the top of book)",
        )
    if not depth.last_id.any():  # Tardis: file order
        return list(range(int(snaps[0]), depth.messages))
    order: list[int] = []
    snap_ids = [(int(depth.last_id[k]), int(k)) for k in snaps]
    # Each snapshot, then the diffs it does not already hold, by u (ties: the snapshot first).
    keys = []
    first_id = snap_ids[0][0]
    for k in range(depth.messages):
        u = int(depth.last_id[k])
        if kinds[k] == 1:
            keys.append((u, 0, k))
        elif u >= first_id:
            keys.append((u, 1, k))
    keys.sort()
    current = -1
    for u, kind, k in keys:
        if kind == 0:
            current = u
        elif u < current:
            continue  # older than the latest snapshot
        order.append(k)
    return order


def rebuild(depth: Depth) -> Levels:
    """Apply the snapshot and diffs; every level change, checked."""
    order = _order(depth)
    starts = depth.start.astype(np.int64)
    n_px = len(depth.px)
    px_all, qty_all, side_all = depth.px.tolist(), depth.qty.tolist(), depth.side.tolist()
    book: dict[int, dict[float, float]] = {1: {}, -1: {}}
    heaps: dict[int, list[float]] = {1: [], -1: []}  # bids as -price, asks as price
    out_side: list[int] = []
    out_px: list[float] = []
    out_ts: list[int] = []
    out_qty: list[float] = []
    t_last = int(depth.ts[order[0]])
    for k in order:
        t_last = max(t_last, int(depth.ts[k]))  # applied in u order: time never goes back
        lo = int(starts[k])
        hi = int(starts[k + 1]) if k + 1 < len(starts) else n_px
        line = int(depth.line[k])
        if depth.kind[k] == 1:
            listed = {(side_all[j], px_all[j]) for j in range(lo, hi)}
            for s in (1, -1):
                for p in book[s]:
                    if (s, p) not in listed:
                        out_side.append(s)
                        out_px.append(p)
                        out_ts.append(t_last)
                        out_qty.append(0.0)
                book[s] = {}
                heaps[s] = []
        for j in range(lo, hi):
            s, p, q = side_all[j], px_all[j], qty_all[j]
            if not q >= 0.0:
                raise TapeError(depth.source, line, f"negative size {q} at price {p}")
            levels = book[s]
            if q > 0.0:
                if p not in levels:
                    heapq.heappush(heaps[s], -p if s > 0 else p)
                levels[p] = q
            else:
                levels.pop(p, None)
            out_side.append(s)
            out_px.append(p)
            out_ts.append(t_last)
            out_qty.append(q)
        bid, ask = _best(book[1], heaps[1], 1), _best(book[-1], heaps[-1], -1)
        if bid is not None and ask is not None and bid >= ask:
            raise TapeError(depth.source, line, f"crossed book: best bid {bid} >= best ask {ask}")
    side = np.asarray(out_side, dtype=np.int8)
    px = np.asarray(out_px, dtype=np.float64)
    ts = np.asarray(out_ts, dtype=np.int64)
    qty = np.asarray(out_qty, dtype=np.float64)
    idx = np.lexsort((np.arange(len(ts)), px, side))  # stable in time within a level
    return Levels(side[idx], px[idx], ts[idx], qty[idx], int(depth.ts[order[0]]))


def _best(levels: dict[float, float], heap: list[float], side: int) -> float | None:
    """The best price of one side; stale heap entries (removed levels) are dropped."""
    while heap:
        p = -heap[0] if side > 0 else heap[0]
        if p in levels:
            return p
        heapq.heappop(heap)
    return None
