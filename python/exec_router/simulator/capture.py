"""Recorded Binance USD-M stream captures, parsed by the Rust core (``_core.parse_capture``).

One message a line, ``<local_timestamp_ns> <json>`` (hftbacktest's collector) or bare JSON;
plain or gzip; combined-stream envelopes; ``bookTicker``, ``trade``, ``aggTrade``,
``depthUpdate`` and the REST depth snapshot; any number of symbols per file.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from exec_router import _core

from .depth import Depth
from .errors import TapeError
from .feeds import Feed


def _col(raw: dict[str, Any], name: str, dtype: Any) -> Any:
    return np.frombuffer(raw[name], dtype=dtype)


def _sorted(ts: Any, *cols: Any) -> tuple[Any, ...]:
    """Exchange times of different messages can arrive out of order: stable-sort them."""
    if len(ts) > 1 and bool((ts[1:] < ts[:-1]).any()):
        order = np.argsort(ts, kind="stable")
        return (ts[order], *(c[order] for c in cols))
    return (ts, *cols)


def load_capture(path: str, *, local_time: bool = False, allow_gaps: bool = False) -> list[Feed]:
    """One :class:`Feed` per symbol of the capture ``path``."""
    name = os.fspath(path)
    if not os.path.exists(name):
        raise TapeError(name, None, "no such file")
    if os.path.isdir(name):
        raise TapeError(name, None, "is a directory, not a capture file")
    try:
        raw = _core.parse_capture(name, local_time=local_time, allow_gaps=allow_gaps)
    except ValueError as exc:
        line, message = exc.args if len(exc.args) == 2 else (0, str(exc))
        raise TapeError(name, int(line) or None, str(message)) from None
    if not raw["symbols"]:
        raise TapeError(name, None, "no bookTicker, trade, aggTrade or depthUpdate messages")
    feeds = []
    for symbol, cols in raw["symbols"].items():
        book = trades = depth = None
        b = cols["book"]
        if b["ts"]:
            book = _sorted(
                _col(b, "ts", np.int64),
                _col(b, "bid", np.float64),
                _col(b, "ask", np.float64),
                _col(b, "bid_qty", np.float64),
                _col(b, "ask_qty", np.float64),
            )
        t, a = cols["trade"], cols["agg"]
        if t["ts"] and a["ts"]:
            raise TapeError(
                name,
                None,
                f"holds both trade and aggTrade messages for {symbol}; keep one of the streams",
            )
        src = t if t["ts"] else a
        if src["ts"]:
            trades = _sorted(
                _col(src, "ts", np.int64),
                _col(src, "px", np.float64),
                _col(src, "qty", np.float64),
                _col(src, "side", np.int8),
            )
        d = cols["depth"]
        if d["ts"]:
            depth = Depth(
                ts=_col(d, "ts", np.int64),
                line=_col(d, "line", np.uint64),
                kind=_col(d, "kind", np.uint8),
                first_id=_col(d, "first_id", np.uint64),
                last_id=_col(d, "last_id", np.uint64),
                prev_id=_col(d, "prev_id", np.uint64),
                start=_col(d, "start", np.uint64),
                px=_col(d, "px", np.float64),
                qty=_col(d, "qty", np.float64),
                side=_col(d, "side", np.int8),
                gaps=int(cols["gaps"]),
                source=name,
            )
        feeds.append(Feed(symbol, name, book, trades, depth))
    return feeds
