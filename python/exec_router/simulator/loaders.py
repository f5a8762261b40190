"""Read tapes and intents: numeric book and trade files (plain or zip) with the core's one-pass
parser (``_core.csv_columns``), everything else, and any file it refuses, with pyarrow's
multithreaded CSV reader, which also names the bad line.

Book files: Binance USD-M ``bookTicker`` as downloaded (``update_id,best_bid_price,
best_bid_qty,best_ask_price,best_ask_qty,transaction_time,event_time``) or a generic
``ts_ms,bid,ask[,bid_qty,ask_qty]``. Trade files: Binance ``aggTrades`` (``agg_trade_id,
price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker``) or a generic
``ts_ms,price,qty,side`` (side: buy/sell, b/s or 1/-1, the aggressor). Plain, ``.gz`` or
``.zip``; the header row is optional. Times in ms (µs and ns are detected and scaled).

Every problem is a :class:`TapeError` naming the file and, where there is one, the line.
"""

from __future__ import annotations

import codecs
import dataclasses
import gzip
import io
import os
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from .errors import TapeError
from .strategy import EntryIntent, ExitIntent, IntentList
from .tape import F64, I64, Tape

BINANCE_BOOK: Final = (
    "update_id",
    "best_bid_price",
    "best_bid_qty",
    "best_ask_price",
    "best_ask_qty",
    "transaction_time",
    "event_time",
)
BINANCE_TRADES: Final = (
    "agg_trade_id",
    "price",
    "quantity",
    "first_trade_id",
    "last_trade_id",
    "transact_time",
    "is_buyer_maker",
)
GENERIC_BOOK: Final = ("ts_ms", "bid", "ask", "bid_qty", "ask_qty")
GENERIC_TRADES: Final = ("ts_ms", "price", "qty", "side")
INTENT_COLUMNS: Final = ("ts_ms", "trade_id", "action", "asset", "position_side", "reason")

#: ``progress(file, bytes_read, total_bytes)``, called as the CSV reader consumes a file.
Progress = Callable[[str, int, int], None]

_F = pa.float64()
_I = pa.int64()
_S = pa.string()
_B = pa.bool_()
_TYPE_NAMES: Final = {"double": "number", "int64": "integer", "string": "text", "bool": "boolean"}
# The C allocator for the columns: Arrow's default pool hands out transparent huge pages, whose
# first touch costs ~3x the copy itself on a loaded machine (0.4-0.6 CPU-s a 5 M-row book file).
_POOL: Final = pa.system_memory_pool()


# ── sources ──────────────────────────────────────────────────────────────────


class _Source:
    """A plain, gzip or zip CSV file: its first line, an Arrow input, and its lines."""

    def __init__(self, path: str, progress: Progress | None = None) -> None:
        self.path = path
        self.progress = progress
        self.name = os.fspath(path)
        if not os.path.exists(path):
            raise TapeError(self.name, None, "no such file")
        if os.path.isdir(path):
            raise TapeError(self.name, None, "is a directory, not a CSV file")
        self.kind = "zip" if path.endswith(".zip") else "gz" if path.endswith(".gz") else "plain"
        self._zip_bytes: bytes | None = None

    def _zip(self) -> bytes:
        if self._zip_bytes is None:
            try:
                with zipfile.ZipFile(self.path) as zf:
                    members = [n for n in zf.namelist() if not n.endswith("/")]
                    csvs = [n for n in members if n.lower().endswith(".csv")]
                    if len(csvs) > 1:
                        raise TapeError(
                            self.name, None, f"zip holds {len(csvs)} CSV members; expected one"
                        )
                    csvs = csvs or members
                    if not csvs:
                        raise TapeError(self.name, None, "the zip archive is empty")
                    self._zip_bytes = zf.read(csvs[0])
            except (zipfile.BadZipFile, OSError) as exc:
                raise TapeError(self.name, None, f"not a readable zip archive ({exc})") from None
        return self._zip_bytes

    def binary(self) -> io.BufferedIOBase | gzip.GzipFile | io.BytesIO:
        if self.kind == "zip":
            return io.BytesIO(self._zip())
        if self.kind == "gz":
            return gzip.open(self.path, "rb")
        return open(self.path, "rb")

    def first_line(self) -> str:
        try:
            with self.binary() as fh:
                raw = fh.readline()
        except (OSError, EOFError) as exc:
            raise TapeError(self.name, None, f"cannot read ({exc})") from None
        text = raw.decode("utf-8", errors="replace").lstrip("\ufeff").strip()  # Arrow skips a BOM
        if not text:
            raise TapeError(self.name, 1 if raw else None, "empty file")
        return text

    def arrow_input(self) -> Any:
        if self.progress is not None:
            return self._counted(self.progress)
        if self.kind == "zip":
            return pa.BufferReader(self._zip())
        return self.path  # Arrow decompresses .gz itself

    def _counted(self, progress: Progress) -> Any:
        """An Arrow stream over the file that reports the (compressed) bytes read so far."""
        if self.kind == "zip":
            raw: io.RawIOBase | io.BufferedIOBase = io.BytesIO(self._zip())
            total = len(self._zip())
        else:
            raw, total = open(self.path, "rb"), os.path.getsize(self.path)  # noqa: SIM115
        stream = pa.PythonFile(_Counting(raw, lambda seen: progress(self.name, seen, total)))
        return pa.CompressedInputStream(stream, "gzip") if self.kind == "gz" else stream

    def lines(self) -> Iterator[bytes]:
        with self.binary() as fh:
            for k, raw in enumerate(fh):
                yield (raw.removeprefix(codecs.BOM_UTF8) if k == 0 else raw).rstrip(b"\r\n")

    def data_lines(self, header: bool) -> list[int]:
        """The line number of every data row (Arrow skips empty lines)."""
        return [
            lineno
            for lineno, line in enumerate(self.lines(), 1)
            if line and not (header and lineno == 1)
        ]

    def line_of(self, row: int, header: bool) -> int:
        """The line number of data row ``row``. Arrow skips empty lines: count them (slow)."""
        seen = -1
        try:
            for lineno, line in enumerate(self.lines(), 1):
                if line and not (header and lineno == 1):
                    seen += 1
                    if seen == row:
                        return lineno
        except (OSError, EOFError):
            pass
        return row + 1 + int(header)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _split(line: str) -> list[str]:
    return [f.strip().strip('"').strip().lower() for f in line.split(",")]


# ── layouts ──────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class _Kind:
    """A known file layout."""

    label: str
    columns: tuple[str, ...]  # every column, in file order
    roles: dict[str, str]  # role -> column
    types: dict[str, Any]  # column -> Arrow type, for the columns read
    optional: frozenset[str] = frozenset()  # trailing columns that may be absent
    signature: frozenset[str] = frozenset()  # header names that identify the layout


@dataclass(frozen=True)
class _Layout:
    """Which file columns to read, as which role and type."""

    kind: str
    names: tuple[str, ...]  # every column of the file
    header: bool
    roles: dict[str, str]  # role -> column name
    types: dict[str, Any]  # column name -> Arrow type


def _layout(src: _Source, kinds: tuple[_Kind, ...]) -> _Layout:
    """Match the first line against each known layout, by header names or column count."""
    first = _split(src.first_line())
    if not _is_number(first[0]):
        for kind in kinds:
            if not kind.signature & set(first):
                continue
            wanted = {r: c for r, c in kind.roles.items() if c in first or c not in kind.optional}
            missing = [c for c in wanted.values() if c not in first]
            if missing:
                raise TapeError(
                    src.name,
                    1,
                    f"missing column {missing[0]!r} for {kind.label} ({','.join(kind.columns)})",
                )
            types = {c: kind.types[c] for c in dict.fromkeys(wanted.values())}
            return _Layout(kind.label, tuple(first), True, wanted, types)
        expected = " or ".join(",".join(k.columns) for k in kinds)
        raise TapeError(src.name, 1, f"unrecognised header; expected {expected}")
    for kind in kinds:
        for width in (len(kind.columns), len(kind.columns) - len(kind.optional)):
            if len(first) == width:
                names = kind.columns[:width]
                wanted = {r: c for r, c in kind.roles.items() if c in names}
                types = {c: kind.types[c] for c in dict.fromkeys(wanted.values())}
                return _Layout(kind.label, names, False, wanted, types)
    widths = " or ".join(f"{len(k.columns)} ({k.label})" for k in kinds)
    raise TapeError(src.name, 1, f"expected {widths} columns, got {len(first)}")


_BOOK_KINDS: Final = (
    _Kind(
        "Binance bookTicker",
        BINANCE_BOOK,
        {
            "ts": "transaction_time",
            "bid": "best_bid_price",
            "ask": "best_ask_price",
            "bid_qty": "best_bid_qty",
            "ask_qty": "best_ask_qty",
        },
        {
            "transaction_time": _I,
            "best_bid_price": _F,
            "best_ask_price": _F,
            "best_bid_qty": _F,
            "best_ask_qty": _F,
        },
        signature=frozenset(BINANCE_BOOK),
    ),
    _Kind(
        "generic book",
        GENERIC_BOOK,
        {"ts": "ts_ms", "bid": "bid", "ask": "ask", "bid_qty": "bid_qty", "ask_qty": "ask_qty"},
        {"ts_ms": _I, "bid": _F, "ask": _F, "bid_qty": _F, "ask_qty": _F},
        optional=frozenset({"bid_qty", "ask_qty"}),
        signature=frozenset(GENERIC_BOOK),
    ),
)
_TRADE_KINDS: Final = (
    _Kind(
        "Binance aggTrades",
        BINANCE_TRADES,
        {"ts": "transact_time", "price": "price", "qty": "quantity", "side": "is_buyer_maker"},
        {"transact_time": _I, "price": _F, "quantity": _F, "is_buyer_maker": _B},
        signature=frozenset({"agg_trade_id", "quantity", "transact_time", "is_buyer_maker"}),
    ),
    _Kind(
        "generic trades",
        GENERIC_TRADES,
        {"ts": "ts_ms", "price": "price", "qty": "qty", "side": "side"},
        {"ts_ms": _I, "price": _F, "qty": _F, "side": _S},
        signature=frozenset(GENERIC_TRADES),
    ),
)
_INTENT_KIND: Final = _Kind(
    "intents",
    INTENT_COLUMNS,
    {c: c for c in INTENT_COLUMNS},
    {c: (_I if c == "ts_ms" else _S) for c in INTENT_COLUMNS},
    optional=frozenset({"reason"}),
    signature=frozenset(INTENT_COLUMNS),
)


class _Counting(io.RawIOBase):
    """A readable binary file that reports how many bytes it has given out."""

    def __init__(self, raw: io.RawIOBase | io.BufferedIOBase, report: Callable[[int], None]):
        self._raw, self._report, self._seen = raw, report, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self._raw.readinto(buffer) or 0
        self._seen += n
        self._report(self._seen)
        return n

    def close(self) -> None:
        self._raw.close()
        super().close()


# ── reading ──────────────────────────────────────────────────────────────────


def _read(src: _Source, layout: _Layout, *, fast: bool = True) -> pa.Table:
    read = pacsv.ReadOptions(
        column_names=list(layout.names), skip_rows=int(layout.header), block_size=1 << 22
    )
    # Quoting off: Binance files never quote, and the tokenizer is ~2x faster without it.
    parse = (
        pacsv.ParseOptions(quote_char=False, double_quote=False, escape_char=False)
        if fast
        else pacsv.ParseOptions()
    )
    convert = pacsv.ConvertOptions(
        include_columns=list(layout.types), column_types=layout.types, strings_can_be_null=False
    )
    source: Any = None
    try:
        source = src.arrow_input()
        table = pacsv.read_csv(
            source,
            read_options=read,
            parse_options=parse,
            convert_options=convert,
            memory_pool=_POOL,
        )
    except pa.ArrowException as exc:
        raise _locate(src, layout, exc) from None
    except (OSError, EOFError) as exc:
        raise TapeError(src.name, None, f"cannot read ({exc})") from None
    finally:
        if source is not None and not isinstance(source, str):
            source.close()
    if table.num_rows == 0:
        raise TapeError(src.name, None, "no data rows")
    for name in layout.types:
        column = table.column(name)
        if column.null_count:
            row = int(np.argmax(column.is_null().to_numpy(zero_copy_only=False)))
            raise TapeError(
                src.name, src.line_of(row, layout.header), f"column {name}: missing value"
            )
    return table


def _parses(text: str, kind: pa.DataType) -> bool:
    if kind == _F:
        return _is_number(text) and text.strip() != ""
    if kind == _I:
        try:
            int(text)
        except ValueError:
            return False
        return True
    if kind == _B:
        return text.strip().lower() in ("true", "false", "1", "0")
    return True


def _utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _locate(src: _Source, layout: _Layout, exc: Exception) -> TapeError:
    """Arrow reports a bad value without its line: find the first bad line ourselves."""
    width = len(layout.names)
    index = {name: k for k, name in enumerate(layout.names)}
    try:
        for lineno, line in enumerate(src.lines(), 1):
            if (layout.header and lineno == 1) or not line:  # Arrow skips empty lines only
                continue
            fields = line.split(b",")
            if len(fields) != width:
                return TapeError(
                    src.name,
                    lineno,
                    f"expected {width} columns ({layout.kind}), got {len(fields)}",
                )
            for name, kind in layout.types.items():
                raw = fields[index[name]]
                if kind == _S and not _utf8(raw):
                    return TapeError(src.name, lineno, f"column {name}: not valid UTF-8")
                value = raw.decode("utf-8", errors="replace").strip()
                if not _parses(value, kind):
                    what = _TYPE_NAMES.get(str(kind), str(kind))
                    return TapeError(src.name, lineno, f"column {name}: {value!r} is not a {what}")
    except (OSError, EOFError) as err:
        return TapeError(src.name, None, f"cannot read ({err})")
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return TapeError(src.name, None, f"cannot parse: {first}")


_CODES: Final = {"int64": ("i", np.int64), "double": ("f", np.float64), "bool": ("b", np.bool_)}


def _columns(src: _Source, layout: _Layout) -> dict[str, Any]:
    """The layout's columns as numpy arrays: the native one-pass parser when the file is
    plain numbers (plain or zip; the common case), else Arrow's reader, which also finds
    and names any bad line. Both give the same values."""
    fast = _native_columns(src, layout)
    if fast is not None:
        return fast
    table = _read(src, layout)
    return {
        name: _numpy(table, name)
        if kind in (_I, _F)
        else table.column(name).to_numpy(zero_copy_only=False)
        for name, kind in layout.types.items()
    }


def _native_columns(src: _Source, layout: _Layout) -> dict[str, Any] | None:
    codes = [_CODES.get(str(kind)) for kind in layout.types.values()]
    if src.kind == "gz" or None in codes or len(set(layout.names)) != len(layout.names):
        return None
    from exec_router._core import csv_columns

    index = {name: k for k, name in enumerate(layout.names)}
    wanted = sorted(layout.types, key=index.__getitem__)
    report: Callable[[int], object] | None = None
    if src.progress is not None:
        progress = src.progress
        total = len(src._zip()) if src.kind == "zip" else os.path.getsize(src.path)
        report = lambda seen: progress(src.name, seen, total)  # noqa: E731
    data = src._zip() if src.kind == "zip" else None
    out = csv_columns(
        src.path,
        data,
        len(layout.names),
        layout.header,
        [(index[name], _CODES[str(layout.types[name])][0]) for name in wanted],
        report,
    )
    if out is None or not out[0]:
        return None  # Arrow reads it, and names what is wrong
    return {
        name: np.frombuffer(raw, dtype=_CODES[str(layout.types[name])][1])
        for name, raw in zip(wanted, out, strict=True)
    }


def _numpy(table: pa.Table, name: str) -> Any:
    # One contiguous buffer first: much faster than ChunkedArray.to_numpy on many chunks.
    return table.column(name).combine_chunks(memory_pool=_POOL).to_numpy()


def _to_ms(ts: I64) -> I64:
    """Scale µs or ns timestamps to ms (Binance moved some files to µs)."""
    first = int(ts[0])
    if first > 10**17:
        return ts // 1_000_000
    if first > 10**14:
        return ts // 1_000
    return ts


def _check_order(src: _Source, layout: _Layout, ts: I64) -> None:
    bad = np.flatnonzero(ts[1:] < ts[:-1])
    if bad.size:
        row = int(bad[0]) + 1
        raise TapeError(
            src.name,
            src.line_of(row, layout.header),
            f"timestamp {int(ts[row])} is earlier than the row before ({int(ts[row - 1])}); "
            "rows must be in time order",
        )


def _check_positive(src: _Source, layout: _Layout, name: str, values: F64, strict: bool) -> None:
    ok = np.isfinite(values) & ((values > 0) if strict else (values >= 0))
    if not ok.all():
        row = int(np.argmin(ok))
        need = "> 0" if strict else ">= 0"
        raise TapeError(
            src.name,
            src.line_of(row, layout.header),
            f"column {name}: {float(values[row])!r} must be finite and {need}",
        )


# ── public loaders ───────────────────────────────────────────────────────────


def load_book(
    path: str, *, sizes: bool = True, progress: Progress | None = None
) -> tuple[I64, F64, F64, F64 | None, F64 | None]:
    """Top of book from a Binance bookTicker or generic file: ts_ms, bid, ask, sizes.

    ``sizes=False`` skips the size columns (only the queue fill model reads them).
    """
    src = _Source(path, progress)
    layout = _layout(src, _BOOK_KINDS)
    if not sizes:
        layout = dataclasses.replace(
            layout,
            roles={r: c for r, c in layout.roles.items() if not r.endswith("_qty")},
            types={c: t for c, t in layout.types.items() if c not in _size_columns(layout.roles)},
        )
    cols = _columns(src, layout)
    r = layout.roles
    ts = _to_ms(cols[r["ts"]])
    bid, ask = cols[r["bid"]], cols[r["ask"]]
    _check_order(src, layout, ts)
    if not ((bid > 0) & (ask >= bid) & (ask < np.inf)).all():  # one pass when all is well
        _check_positive(src, layout, r["bid"], bid, True)
        _check_positive(src, layout, r["ask"], ask, True)
        row = int(np.argmax(ask < bid))
        raise TapeError(
            src.name,
            src.line_of(row, layout.header),
            f"crossed book: ask {ask[row]} < bid {bid[row]}",
        )
    qtys: list[F64 | None] = []
    for role in ("bid_qty", "ask_qty"):
        if role in r:
            qty = cols[r[role]]
            _check_positive(src, layout, r[role], qty, False)
            qtys.append(qty)
        else:
            qtys.append(None)
    return ts, bid, ask, qtys[0], qtys[1]


def _size_columns(roles: dict[str, str]) -> set[str]:
    return {c for r, c in roles.items() if r.endswith("_qty")}


_BUY: Final = ("buy", "b", "1", "+1", "bid")
_SELL: Final = ("sell", "s", "-1", "ask")


def load_trades(path: str, *, progress: Progress | None = None) -> tuple[I64, F64, F64, Any]:
    """Trades from a Binance aggTrades or generic file: ts_ms, price, qty, aggressor side."""
    src = _Source(path, progress)
    layout = _layout(src, _TRADE_KINDS)
    cols = _columns(src, layout)
    r = layout.roles
    ts = _to_ms(cols[r["ts"]])
    px, qty = cols[r["price"]], cols[r["qty"]]
    _check_order(src, layout, ts)
    _check_positive(src, layout, r["price"], px, True)
    _check_positive(src, layout, r["qty"], qty, False)
    raw = cols[r["side"]]
    if layout.types[r["side"]] == _B:  # is_buyer_maker: the buyer rested: a sell aggressor
        side = np.where(raw, np.int8(-1), np.int8(1))
    else:
        text = np.char.lower(np.char.strip(raw.astype(str)))
        buy, sell = np.isin(text, _BUY), np.isin(text, _SELL)
        bad = ~(buy | sell)
        if bad.any():
            row = int(np.argmax(bad))
            raise TapeError(
                src.name,
                src.line_of(row, layout.header),
                f"column side: {str(text[row])!r} is not buy/sell, b/s or 1/-1",
            )
        side = np.where(buy, 1, -1).astype(np.int8)
    return ts, px, qty, side


def load_tape(
    book: str,
    trades: str | None = None,
    *,
    symbol: str = "BTCUSDT",
    sizes: bool = True,
    progress: Progress | None = None,
) -> Tape:
    """A :class:`Tape` from a book file and, optionally, a trades file.

    ``progress(file, bytes_read, total_bytes)`` follows the CSV reader through each file.
    """
    ts, bid, ask, bid_qty, ask_qty = load_book(book, sizes=sizes, progress=progress)
    source = os.path.basename(book)
    extra: dict[str, Any] = {}
    if trades is not None:
        t_ts, t_px, t_qty, t_side = load_trades(trades, progress=progress)
        extra = {"trade_ts": t_ts, "trade_px": t_px, "trade_qty": t_qty, "trade_side": t_side}
        source += " + " + os.path.basename(trades)
    return Tape(
        ts=ts,
        bid=bid,
        ask=ask,
        bid_qty=bid_qty,
        ask_qty=ask_qty,
        symbol=symbol,
        source=source,
        **extra,
    )


def load_intents(path: str) -> IntentList:
    """Intents: ``ts_ms,trade_id,action,asset,position_side,reason`` (ENTER or EXIT rows)."""
    src = _Source(path)
    layout = _layout(src, (_INTENT_KIND,))
    table = _read(src, layout, fast=False)
    ts = _to_ms(_numpy(table, "ts_ms"))
    _check_order(src, layout, ts)
    cols = {c: table.column(c).to_pylist() for c in layout.types if c != "ts_ms"}
    entries: list[EntryIntent] = []
    exits: list[ExitIntent] = []
    seen: set[str] = set()
    lines = src.data_lines(layout.header)

    def fail(row: int, message: str) -> TapeError:
        return TapeError(src.name, src.line_of(row, layout.header), message)

    for row in range(table.num_rows):
        tid = str(cols["trade_id"][row]).strip()
        action = str(cols["action"][row]).strip().upper()
        if not tid:
            raise fail(row, "empty trade_id")
        if action == "ENTER":
            side = str(cols["position_side"][row]).strip().upper()
            if side not in ("LONG", "SHORT"):
                raise fail(row, f"position_side {side!r} is not LONG or SHORT")
            if tid in seen:
                raise fail(row, f"trade_id {tid!r} entered twice")
            seen.add(tid)
            asset = str(cols["asset"][row]).strip().upper()
            line = lines[row]
            long = side == "LONG"
            entries.append(EntryIntent(int(ts[row]), tid, asset, "LONG" if long else "SHORT", line))
        elif action == "EXIT":
            if tid not in seen:
                raise fail(row, f"EXIT for trade_id {tid!r} before its ENTER")
            reason = str(cols.get("reason", [""] * table.num_rows)[row] or "").strip()
            line = lines[row]
            exits.append(ExitIntent(int(ts[row]), tid, reason or "SIGNAL_EXIT", line))
        else:
            raise fail(row, f"action {action!r} is not ENTER or EXIT")
    if not entries:
        raise TapeError(src.name, None, "no ENTER rows")
    return IntentList(entries, exits)
