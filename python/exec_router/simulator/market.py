"""Market: every symbol of a run, each a :class:`Tape`, joined from the input files.

Files of one symbol are joined in time order when they follow each other (Binance daily
files: consecutive days). The same symbol and day twice, files that overlap in time, a
trades file without a book of its symbol, or a book and trades that never overlap in
time are refused, naming the files.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

from .depth import Depth
from .feeds import Feed
from .loaders import Progress, load_book, load_trades
from .tape import Tape

_BINANCE_NAME: Final = re.compile(
    r"^(?P<symbol>[A-Z0-9]+)-(?P<kind>bookTicker|aggTrades|trades)-"
    r"(?P<day>\d{4}-\d{2}-\d{2}|\d{8})\.(?:csv|csv\.gz|csv\.zip|zip|gz)$"
)


class InputError(Exception):
    """Input files that do not fit together (one line, naming the files)."""


@dataclass(frozen=True)
class BinanceName:
    symbol: str
    kind: str
    day: dt.date


def binance_name(path: str) -> BinanceName | None:
    """Symbol, kind and day of a Binance public-data file name, e.g.
    ``ETHUSDT-bookTicker-2024-08-08.zip``; None for any other name."""
    m = _BINANCE_NAME.match(os.path.basename(path))
    if m is None:
        return None
    text = m["day"].replace("-", "")
    try:
        day = dt.date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return None
    return BinanceName(m["symbol"], m["kind"], day)


def load_binance(
    books: Sequence[str],
    trades: Sequence[str],
    symbol: str | None,
    *,
    sizes: bool = True,
    progress: Progress | None = None,
) -> list[Feed]:
    """Feeds from Binance public-data (or generic) book and trades files."""
    loaded: list[tuple[str, BinanceName | None, Any, Any]] = []
    for paths, kind in ((books, "book"), (trades, "trades")):
        for path in paths:
            name = binance_name(path)
            if name is not None and (name.kind == "bookTicker") != (kind == "book"):
                flag = "--book" if kind == "book" else "--trades"
                raise InputError(f"{flag} {path}: the file name says it holds {name.kind}")
            if kind == "book":
                book = load_book(path, sizes=sizes, progress=progress)
                loaded.append((path, name, book, None))
            else:
                loaded.append((path, name, None, load_trades(path, progress=progress)))
    # Every file is read (and its errors reported) before the symbols are resolved.
    return [
        Feed(_symbol_of(path, name, symbol), path, book, tr, day=name.day if name else None)
        for path, name, book, tr in loaded
    ]


def _symbol_of(path: str, name: BinanceName | None, symbol: str | None) -> str:
    if name is None:
        if symbol is None:
            raise InputError(
                f"{path}: cannot tell the symbol from the file name; pass --symbol SYMBOL "
                "(or use the Binance name SYMBOL-bookTicker-YYYY-MM-DD.csv)"
            )
        return symbol
    if symbol is not None and symbol != name.symbol:
        raise InputError(f"{path}: the file name says {name.symbol}, but --symbol is {symbol}")
    return name.symbol


@dataclass(frozen=True, eq=False)
class Market:
    """One tape per symbol, in the order the symbols were first given."""

    tapes: dict[str, Tape]
    depth: dict[str, Depth] = field(default_factory=dict)
    source: str = "memory"

    @classmethod
    def of(cls, tape: Tape) -> Market:
        return cls({tape.symbol: tape}, source=tape.source)

    @property
    def symbols(self) -> list[str]:
        return list(self.tapes)

    @property
    def start_ms(self) -> int:
        return min(t.start_ms for t in self.tapes.values())

    @property
    def end_ms(self) -> int:
        return max(t.end_ms for t in self.tapes.values())

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tapes.values())

    @property
    def trades(self) -> int:
        return sum(t.trades for t in self.tapes.values())

    @property
    def depth_messages(self) -> int:
        return sum(d.messages for d in self.depth.values())

    @property
    def events(self) -> int:
        """Book rows, trades and depth messages of every symbol."""
        return sum(t.events for t in self.tapes.values()) + self.depth_messages

    @property
    def has_trades(self) -> bool:
        return all(t.has_trades for t in self.tapes.values())

    @property
    def nbytes(self) -> int:
        """Bytes of every column held (tapes, their mids and the depth)."""
        total = sum(d.nbytes for d in self.depth.values())
        for t in self.tapes.values():
            cols: list[Any] = [t.ts, t.bid, t.ask, t.mid, t.bid_qty, t.ask_qty]
            cols += [t.trade_ts, t.trade_px, t.trade_qty, t.trade_side]
            total += sum(int(a.nbytes) for a in cols if a is not None)
        return total

    def tape(self, symbol: str) -> Tape:
        return self.tapes[symbol]


def _days(feeds: Sequence[Feed]) -> str:
    return ", ".join(f.path for f in feeds)


def _join(
    symbol: str, what: str, feeds: list[Feed], part: Any
) -> tuple[list[Feed], list[tuple[Any, ...]]]:
    """Order one symbol's files by time; refuse a repeated day, a gap of days or an overlap."""
    items = sorted(
        ((f, part(f)) for f in feeds), key=lambda fp: (fp[0].day or dt.date.min, fp[1][0][0])
    )
    for (fa, a), (fb, b) in itertools.pairwise(items):
        if fa.day is not None and fa.day == fb.day:
            raise InputError(
                f"{fa.path} and {fb.path}: the same {what} of {symbol} for {fa.day} given twice"
            )
        if fa.day is not None and fb.day is not None and (fb.day - fa.day).days > 1:
            raise InputError(
                f"{fa.path} and {fb.path}: {symbol} days are not consecutive "
                f"({fa.day} then {fb.day}); give every day in between"
            )
        if int(b[0][0]) < int(a[0][-1]):
            raise InputError(
                f"{fa.path} and {fb.path}: overlapping {what} of {symbol} "
                f"(one ends at {int(a[0][-1])} ms, the other starts at {int(b[0][0])} ms)"
            )
    return [f for f, _ in items], [p for _, p in items]


def _concat(parts: list[tuple[Any, ...]]) -> tuple[Any, ...]:
    if len(parts) == 1:
        return parts[0]
    width = len(parts[0])
    return tuple(
        None if any(p[k] is None for p in parts) else np.concatenate([p[k] for p in parts])
        for k in range(width)
    )


def assemble(feeds: Iterable[Feed]) -> Market:
    """Join the feeds of every symbol into a :class:`Market`."""
    by_symbol: dict[str, list[Feed]] = {}
    for f in feeds:
        by_symbol.setdefault(f.symbol, []).append(f)
    tapes: dict[str, Tape] = {}
    depth: dict[str, Depth] = {}
    for symbol, group in by_symbol.items():
        books = [f for f in group if f.book is not None]
        trades = [f for f in group if f.trades is not None]
        if not books:
            what = "trades" if trades else "depth"
            raise InputError(
                f"{_days(group)}: {what} of {symbol} but no top of book for it; add its "
                "bookTicker (--book, or the stream in --capture) or Tardis quotes"
            )
        book_files, book_parts = _join(symbol, "book", books, lambda f: f.book)
        ts, bid, ask, bq, aq = _concat(book_parts)
        extra: dict[str, Any] = {}
        source = _days(book_files)
        if trades:
            trade_files, trade_parts = _join(symbol, "trades", trades, lambda f: f.trades)
            t_ts, t_px, t_qty, t_side = _concat(trade_parts)
            _check_overlap(symbol, book_files, trade_files, ts, t_ts)
            extra = {"trade_ts": t_ts, "trade_px": t_px, "trade_qty": t_qty, "trade_side": t_side}
            if [f.path for f in trade_files] != [f.path for f in book_files]:
                source += " + " + _days(trade_files)
        tapes[symbol] = Tape(
            ts=ts, bid=bid, ask=ask, bid_qty=bq, ask_qty=aq, symbol=symbol, source=source, **extra
        )
        depths = [f.depth for f in group if f.depth is not None]
        if len(depths) == 1:
            depth[symbol] = depths[0]
        elif depths:
            depth[symbol] = _concat_depth(depths)
    sources = dict.fromkeys(os.path.basename(f.path) for g in by_symbol.values() for f in g)
    return Market(tapes, depth, " + ".join(sources))


def _check_overlap(
    symbol: str, books: list[Feed], trades: list[Feed], b_ts: Any, t_ts: Any
) -> None:
    b_days = {f.day for f in books}
    for f in trades:
        if f.day is not None and None not in b_days and f.day not in b_days:
            raise InputError(
                f"{f.path}: trades of {symbol} for {f.day}, but the book files "
                f"({_days(books)}) are for {', '.join(str(d) for d in sorted(b_days))}"  # type: ignore[type-var]
            )
    if int(t_ts[0]) > int(b_ts[-1]) or int(t_ts[-1]) < int(b_ts[0]):
        raise InputError(
            f"{_days(books)} and {_days(trades)}: the book and trades of {symbol} do not "
            f"overlap in time (book {int(b_ts[0])}–{int(b_ts[-1])} ms, trades "
            f"{int(t_ts[0])}–{int(t_ts[-1])} ms)"
        )


def _concat_depth(parts: list[Depth]) -> Depth:
    parts = sorted(parts, key=lambda d: int(d.ts[0]) if d.messages else 0)
    offsets = np.cumsum([0] + [len(d.px) for d in parts[:-1]]).astype(np.uint64)
    return Depth(
        ts=np.concatenate([d.ts for d in parts]),
        line=np.concatenate([d.line for d in parts]),
        kind=np.concatenate([d.kind for d in parts]),
        first_id=np.concatenate([d.first_id for d in parts]),
        last_id=np.concatenate([d.last_id for d in parts]),
        prev_id=np.concatenate([d.prev_id for d in parts]),
        start=np.concatenate([d.start + off for d, off in zip(parts, offsets, strict=True)]),
        px=np.concatenate([d.px for d in parts]),
        qty=np.concatenate([d.qty for d in parts]),
        side=np.concatenate([d.side for d in parts]),
        gaps=sum(d.gaps for d in parts),
        source=" + ".join(dict.fromkeys(d.source for d in parts)),
    )
