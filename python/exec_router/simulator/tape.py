"""Tape: top of book and trades as numpy arrays, with as-of lookups."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
I8 = NDArray[np.int8]


def _empty_f() -> F64:
    return np.empty(0, dtype=np.float64)


def _empty_i() -> I64:
    return np.empty(0, dtype=np.int64)


def _empty_side() -> I8:
    return np.empty(0, dtype=np.int8)


@dataclass(frozen=True, eq=False)
class Tape:
    """A market tape for one symbol, times in epoch milliseconds.

    Book rows are top-of-book snapshots: the state holds from ``ts[i]`` until the next row.
    ``trade_side`` is the aggressor: +1 a buyer lifted the ask, -1 a seller hit the bid.
    """

    ts: I64
    bid: F64
    ask: F64
    bid_qty: F64 | None = None
    ask_qty: F64 | None = None
    trade_ts: I64 = field(default_factory=_empty_i)
    trade_px: F64 = field(default_factory=_empty_f)
    trade_qty: F64 = field(default_factory=_empty_f)
    trade_side: I8 = field(default_factory=_empty_side)
    symbol: str = "BTCUSDT"
    source: str = "memory"
    mid: F64 = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.ts) == 0:
            raise ValueError("a tape needs at least one book row")
        object.__setattr__(self, "mid", (self.bid + self.ask) * 0.5)

    @property
    def rows(self) -> int:
        return len(self.ts)

    @property
    def trades(self) -> int:
        return len(self.trade_ts)

    @property
    def events(self) -> int:
        """Book rows plus trades: what the events/s figure counts."""
        return self.rows + self.trades

    @property
    def has_trades(self) -> bool:
        return self.trades > 0

    @property
    def start_ms(self) -> int:
        return int(self.ts[0])

    @property
    def end_ms(self) -> int:
        return int(self.ts[-1])

    def asof(self, t_ms: int) -> int:
        """Index of the book row in force at ``t_ms`` (the first row before the tape starts)."""
        i = int(self.ts.searchsorted(t_ms, side="right")) - 1
        return i if i > 0 else 0

    def mids_at(self, t_ms: I64) -> F64:
        """Vectorised as-of mid for many times."""
        idx = np.searchsorted(self.ts, t_ms, side="right") - 1
        return self.mid[np.clip(idx, 0, self.rows - 1)]

    def after(self, t_ms: int) -> int:
        """First book row strictly after ``t_ms``."""
        return int(self.ts.searchsorted(t_ms, side="right"))

    def before(self, t_ms: int) -> int:
        """One past the last book row strictly before ``t_ms``."""
        return int(self.ts.searchsorted(t_ms, side="left"))

    def trades_after(self, t_ms: int) -> int:
        return int(self.trade_ts.searchsorted(t_ms, side="right"))

    def trades_before(self, t_ms: int) -> int:
        return int(self.trade_ts.searchsorted(t_ms, side="left"))
