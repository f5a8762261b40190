"""Depth: a symbol's L2 messages (diffs and snapshots) as columns, for an order book.

Kept in file order. Message ``k`` has levels ``start[k]`` up to ``start[k + 1]`` (or the
end); each level is ``(price, qty, side)``, side +1 a bid, -1 an ask, qty 0 removes the
level. ``kind`` is 0 for a diff and 1 for a snapshot (the whole book; Tardis snapshot rows
and Binance REST snapshots). For Binance, ``first_id``/``last_id``/``prev_id`` are a diff's
``U``/``u``/``pu``, and both ids of a snapshot are its ``lastUpdateId``; the chain has been
checked. Tardis rows carry no ids (0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

I64 = NDArray[np.int64]
U64 = NDArray[np.uint64]
F64 = NDArray[np.float64]
I8 = NDArray[np.int8]
U8 = NDArray[np.uint8]


@dataclass(frozen=True, eq=False)
class Depth:
    ts: I64
    line: U64
    kind: U8
    first_id: U64
    last_id: U64
    prev_id: U64
    start: U64
    px: F64
    qty: F64
    side: I8
    gaps: int = 0
    source: str = ""  # the file, for errors that name a line

    @property
    def messages(self) -> int:
        return len(self.ts)

    @property
    def nbytes(self) -> int:
        return sum(
            int(getattr(self, n).nbytes)
            for n in ("ts", "line", "kind", "first_id", "last_id", "prev_id", "start")
        ) + int(self.px.nbytes + self.qty.nbytes + self.side.nbytes)

    def levels(self, k: int) -> tuple[F64, F64, I8]:
        """Prices, quantities and sides of message ``k``."""
        lo = int(self.start[k])
        hi = int(self.start[k + 1]) if k + 1 < len(self.start) else len(self.px)
        return self.px[lo:hi], self.qty[lo:hi], self.side[lo:hi]


def empty_depth() -> Depth:
    u = np.empty(0, dtype=np.uint64)
    return Depth(
        ts=np.empty(0, dtype=np.int64),
        line=u,
        kind=np.empty(0, dtype=np.uint8),
        first_id=u,
        last_id=u,
        prev_id=u,
        start=u,
        px=np.empty(0, dtype=np.float64),
        qty=np.empty(0, dtype=np.float64),
        side=np.empty(0, dtype=np.int8),
    )
