"""Tardis.dev CSV datasets: ``quotes``, ``trades``, ``incremental_book_L2``, ``book_snapshot_25``.

Every file starts ``exchange,symbol,timestamp,local_timestamp`` (microseconds since the
epoch, UTC); the kind is told by its columns. Plain or ``.gz``; several symbols per file.
``quotes`` and ``book_snapshot_*`` give the top of book, ``trades`` the trades (``side`` is
the aggressor), ``incremental_book_L2`` a :class:`Depth` (rows sharing a time and
``is_snapshot`` form one message).
"""

from __future__ import annotations

import gzip
import os
from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from .depth import Depth
from .errors import TapeError
from .feeds import Feed

HEAD: Final = ("exchange", "symbol", "timestamp", "local_timestamp")
QUOTES: Final = (*HEAD, "ask_amount", "ask_price", "bid_price", "bid_amount")
TRADES: Final = (*HEAD, "id", "side", "price", "amount")
L2: Final = (*HEAD, "is_snapshot", "side", "price", "amount")
SNAPSHOT_TOP: Final = ("asks[0].price", "asks[0].amount", "bids[0].price", "bids[0].amount")

_F = pa.float64()
_I = pa.int64()
_D = pa.dictionary(pa.int32(), pa.string())


def _header(name: str) -> list[str]:
    try:
        opener: Any = gzip.open if name.endswith(".gz") else open
        with opener(name, "rb") as fh:
            raw = fh.readline()
    except (OSError, EOFError) as exc:
        raise TapeError(name, None, f"cannot read ({exc})") from None
    text = raw.decode("utf-8", errors="replace").lstrip("\ufeff").strip()
    if not text:
        raise TapeError(name, 1 if raw else None, "empty file")
    return [c.strip().strip('"') for c in text.split(",")]


def _kind(name: str, header: list[str]) -> str:
    if tuple(header[:4]) != HEAD:
        raise TapeError(name, 1, f"not a Tardis CSV: the header must start with {','.join(HEAD)}")
    cols = set(header)
    for kind, need in (
        ("quotes", QUOTES),
        ("trades", TRADES),
        ("incremental_book_L2", L2),
        ("book_snapshot", (*HEAD, *SNAPSHOT_TOP)),
    ):
        if set(need) <= cols:
            return kind
    raise TapeError(
        name,
        1,
        "unrecognised Tardis dataset; expected quotes, trades, incremental_book_L2 or "
        "book_snapshot_25 columns",
    )


def _read(name: str, types: dict[str, Any]) -> pa.Table:
    try:
        table = pacsv.read_csv(
            name,
            read_options=pacsv.ReadOptions(block_size=1 << 24),
            parse_options=pacsv.ParseOptions(quote_char=False, double_quote=False),
            convert_options=pacsv.ConvertOptions(
                include_columns=list(types), column_types=types, strings_can_be_null=False
            ),
        )
    except pa.ArrowInvalid as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else "cannot parse"
        raise TapeError(name, _arrow_line(text), f"cannot parse: {text}") from None
    except (OSError, EOFError, pa.ArrowException) as exc:
        raise TapeError(name, None, f"cannot read ({exc})") from None
    if table.num_rows == 0:
        raise TapeError(name, None, "no data rows")
    for col in types:
        column = table.column(col)
        if column.null_count:
            row = int(np.argmax(column.is_null().to_numpy(zero_copy_only=False)))
            raise TapeError(name, row + 2, f"column {col}: missing value")
    return table


def _arrow_line(text: str) -> int | None:
    """Arrow names the row of a bad value in some messages ("Row #12: ...")."""
    marker = "Row #"
    if marker in text:
        digits = text.split(marker, 1)[1].split(":", 1)[0]
        if digits.isdigit():
            return int(digits)
    return None


def _np(table: pa.Table, col: str) -> Any:
    return table.column(col).combine_chunks().to_numpy(zero_copy_only=False)


def _check_positive(name: str, col: str, values: Any, strict: bool, rows: Any) -> None:
    ok = np.isfinite(values) & ((values > 0) if strict else (values >= 0))
    if not ok.all():
        row = int(np.argmin(ok))
        need = "> 0" if strict else ">= 0"
        raise TapeError(
            name, _line(rows, row), f"column {col}: {float(values[row])!r} must be {need}"
        )


def _by_symbol(table: pa.Table) -> list[tuple[str, Any]]:
    """``(symbol, row indices or None for all rows)`` per symbol, in first-seen order."""
    sym = table.column("symbol").combine_chunks()
    if isinstance(sym, pa.DictionaryArray):
        sym = sym.unify_dictionaries() if hasattr(sym, "unify_dictionaries") else sym
        codes = sym.indices.to_numpy(zero_copy_only=False)
        names = sym.dictionary.to_pylist()
    else:
        enc = sym.dictionary_encode()  # pyarrow.compute costs 50 ms to import
        codes, names = enc.indices.to_numpy(zero_copy_only=False), enc.dictionary.to_pylist()
    if len(names) == 1:
        return [(str(names[0]).upper(), None)]
    return [
        (str(names[c]).upper(), np.flatnonzero(codes == c))
        for c in dict.fromkeys(np.unique(codes).tolist())
    ]


def _take(values: Any, rows: Any) -> Any:
    return values if rows is None else values[rows]


def _line(rows: Any, row: int) -> int:
    """The file line of row ``row`` of one symbol's rows (line 1 is the header)."""
    return (int(rows[row]) if rows is not None else row) + 2


def _ms(name: str, us: Any, rows: Any) -> Any:
    if len(us) > 1:
        bad = np.flatnonzero(us[1:] < us[:-1])
        if bad.size:
            row = int(bad[0]) + 1
            raise TapeError(
                name,
                _line(rows, row),
                f"timestamp {int(us[row])} is earlier than the row before; rows must be in "
                "time order",
            )
    return us // 1000


def load_tardis(path: str, *, local_time: bool = False) -> list[Feed]:
    """One :class:`Feed` per symbol of a Tardis CSV file."""
    name = os.fspath(path)
    if not os.path.exists(name):
        raise TapeError(name, None, "no such file")
    if os.path.isdir(name):
        raise TapeError(name, None, "is a directory, not a CSV file")
    header = _header(name)
    kind = _kind(name, header)
    time_col = "local_timestamp" if local_time else "timestamp"
    if kind == "quotes":
        cols = {"ask_price": _F, "bid_price": _F, "ask_amount": _F, "bid_amount": _F}
    elif kind == "trades":
        cols = {"price": _F, "amount": _F, "side": _D}
    elif kind == "incremental_book_L2":
        cols = {"is_snapshot": pa.bool_(), "side": _D, "price": _F, "amount": _F}
    else:
        cols = dict.fromkeys(SNAPSHOT_TOP, _F)
    table = _read(name, {"symbol": _D, time_col: _I, **cols})
    feeds = []
    for symbol, rows in _by_symbol(table):
        us = _take(_np(table, time_col), rows)
        if kind == "trades":
            feeds.append(Feed(symbol, name, trades=_trades(name, table, rows, us)))
        elif kind == "incremental_book_L2":
            feeds.append(Feed(symbol, name, depth=_depth(name, table, rows, us)))
        else:
            feeds.append(Feed(symbol, name, book=_book(name, table, rows, us, kind)))
    return feeds


def _book(name: str, table: pa.Table, rows: Any, us: Any, kind: str) -> Any:
    if kind == "quotes":
        names = ("bid_price", "ask_price", "bid_amount", "ask_amount")
    else:
        names = ("bids[0].price", "asks[0].price", "bids[0].amount", "asks[0].amount")
    bid, ask, bq, aq = (_take(_np(table, c), rows) for c in names)
    ts = _ms(name, us, rows)
    if not ((bid > 0) & (ask >= bid) & (ask < np.inf)).all():
        _check_positive(name, names[0], bid, True, rows)
        _check_positive(name, names[1], ask, True, rows)
        row = int(np.argmax(ask < bid))
        line = _line(rows, row)
        raise TapeError(name, line, f"crossed book: ask {ask[row]} < bid {bid[row]}")
    return ts, bid, ask, bq, aq


def _price_amount_side(
    name: str, table: pa.Table, rows: Any, plus: str, minus: str, what: str
) -> tuple[Any, Any, Any]:
    """Checked ``price`` and ``amount`` columns, and ``side`` as +1 (``plus``) / -1 (``minus``)."""
    px = _take(_np(table, "price"), rows)
    qty = _take(_np(table, "amount"), rows)
    _check_positive(name, "price", px, True, rows)
    _check_positive(name, "amount", qty, False, rows)
    side_col = table.column("side").combine_chunks()
    words = [str(w).lower() for w in side_col.dictionary.to_pylist()]
    lookup = np.array([1 if w == plus else -1 if w == minus else 0 for w in words], np.int8)
    side = _take(lookup[side_col.indices.to_numpy(zero_copy_only=False)], rows)
    if not side.all():
        row = int(np.argmin(side != 0))
        raise TapeError(name, _line(rows, row), f"column side: {what}")
    return px, qty, side


def _trades(name: str, table: pa.Table, rows: Any, us: Any) -> Any:
    px, qty, side = _price_amount_side(
        name, table, rows, "buy", "sell", "the aggressor is not buy or sell"
    )
    return _ms(name, us, rows), px, qty, side


def _depth(name: str, table: pa.Table, rows: Any, us: Any) -> Depth:
    snap = _take(_np(table, "is_snapshot"), rows).astype(bool)
    px, qty, side = _price_amount_side(name, table, rows, "bid", "ask", "not bid or ask")
    ts = _ms(name, us, rows)
    new = np.ones(len(ts), dtype=bool)
    new[1:] = (us[1:] != us[:-1]) | (snap[1:] != snap[:-1])
    start = np.flatnonzero(new).astype(np.uint64)
    zeros = np.zeros(len(start), dtype=np.uint64)
    lines = (np.asarray(rows) if rows is not None else np.arange(len(ts)))[start.astype(np.int64)]
    return Depth(
        ts=ts[start.astype(np.int64)],
        line=(lines + 2).astype(np.uint64),
        kind=snap[start.astype(np.int64)].astype(np.uint8),
        first_id=zeros,
        last_id=zeros,
        prev_id=zeros,
        start=start,
        px=px,
        qty=qty,
        side=side,
        source=name,
    )
