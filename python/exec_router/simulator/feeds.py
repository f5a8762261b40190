"""Feed: what one input file holds for one symbol, before the files are joined."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from .depth import Depth
from .tape import F64, I8, I64

Book = tuple[I64, F64, F64, "F64 | None", "F64 | None"]  # ts_ms, bid, ask, bid_qty, ask_qty
Trades = tuple[I64, F64, F64, I8]  # ts_ms, price, qty, aggressor side


@dataclass(frozen=True, eq=False)
class Feed:
    """One symbol's book, trades and depth from one file (any of them may be absent)."""

    symbol: str
    path: str
    book: Book | None = None
    trades: Trades | None = None
    depth: Depth | None = None
    day: dt.date | None = None  # from a Binance public-data file name
