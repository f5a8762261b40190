"""Loaders on small files in the Binance public-data formats and the generic CSVs."""

from __future__ import annotations

import gzip
import zipfile
from pathlib import Path

import numpy as np
import pytest

from exec_router.simulator import TapeError, load_book, load_intents, load_tape, load_trades
from exec_router.simulator.loaders import BINANCE_BOOK, BINANCE_TRADES

BOOK_ROWS = [
    "8200000001,65000.1,1.5,65000.2,0.25,1700000000000,1700000000003",
    "8200000002,65000.0,2.0,65000.2,0.5,1700000000100,1700000000104",
    "8200000003,65000.0,2.0,65000.1,0.75,1700000000100,1700000000105",
    "8200000004,64999.9,0.125,65000.0,3.0,1700000000250,1700000000251",
]
TRADE_ROWS = [
    "5100001,65000.2,0.010,7100001,7100002,1700000000050,false",
    "5100002,65000.0,0.500,7100003,7100003,1700000000120,true",
    "5100003,64999.9,1.250,7100004,7100009,1700000000260,True",
]


def write(path: Path, lines: list[str], header: tuple[str, ...] | None = None) -> Path:
    text = "\n".join(([",".join(header)] if header else []) + lines) + "\n"
    if path.suffix == ".gz":
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    elif path.suffix == ".zip":
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(path.with_suffix(".csv").name, text)
    else:
        path.write_text(text)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".zip"])
@pytest.mark.parametrize("header", [True, False], ids=["header", "no-header"])
def test_binance_book_ticker(tmp_path: Path, suffix: str, header: bool) -> None:
    path = write(
        tmp_path / f"BTCUSDT-bookTicker{suffix}", BOOK_ROWS, BINANCE_BOOK if header else None
    )
    ts, bid, ask, bid_qty, ask_qty = load_book(str(path))
    assert ts.tolist() == [1700000000000, 1700000000100, 1700000000100, 1700000000250]
    assert bid.tolist() == [65000.1, 65000.0, 65000.0, 64999.9]
    assert ask.tolist() == [65000.2, 65000.2, 65000.1, 65000.0]
    assert bid_qty is not None
    assert ask_qty is not None
    assert bid_qty.tolist() == [1.5, 2.0, 2.0, 0.125]
    assert ask_qty.tolist() == [0.25, 0.5, 0.75, 3.0]


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".zip"])
@pytest.mark.parametrize("header", [True, False], ids=["header", "no-header"])
def test_binance_agg_trades(tmp_path: Path, suffix: str, header: bool) -> None:
    path = write(
        tmp_path / f"BTCUSDT-aggTrades{suffix}", TRADE_ROWS, BINANCE_TRADES if header else None
    )
    ts, px, qty, side = load_trades(str(path))
    assert ts.tolist() == [1700000000050, 1700000000120, 1700000000260]
    assert px.tolist() == [65000.2, 65000.0, 64999.9]
    assert qty.tolist() == [0.01, 0.5, 1.25]
    # is_buyer_maker=true: the buyer rested, a seller hit the bid (aggressor -1).
    assert side.tolist() == [1, -1, -1]


def test_load_tape_joins_book_and_trades(tmp_path: Path) -> None:
    book = write(tmp_path / "b.csv", BOOK_ROWS, BINANCE_BOOK)
    trades = write(tmp_path / "t.csv", TRADE_ROWS)
    tape = load_tape(str(book), str(trades), symbol="BTCUSDT")
    assert (tape.rows, tape.trades, tape.events) == (4, 3, 7)
    assert tape.mid[0] == pytest.approx(65000.15)
    assert tape.source == "b.csv + t.csv"
    lean = load_tape(str(book), sizes=False)
    assert lean.bid_qty is None
    assert lean.ask_qty is None
    assert not lean.has_trades


def test_microsecond_timestamps_are_scaled(tmp_path: Path) -> None:
    rows = ["1,1.0,1,1.1,1,1700000000000123,1700000000000200", "2,1.0,1,1.1,1,1700000000100456,0"]
    ts, *_ = load_book(str(write(tmp_path / "us.csv", rows)))
    assert ts.tolist() == [1700000000000, 1700000000100]


@pytest.mark.parametrize("header", [True, False], ids=["header", "no-header"])
def test_generic_book_and_trades(tmp_path: Path, header: bool) -> None:
    book3 = write(
        tmp_path / "b3.csv",
        ["1000,99.9,100.1", "1100,99.8,100.0"],
        ("ts_ms", "bid", "ask") if header else None,
    )
    ts, bid, ask, bq, aq = load_book(str(book3))
    assert (ts.tolist(), bid.tolist(), ask.tolist(), bq, aq) == (
        [1000, 1100],
        [99.9, 99.8],
        [100.1, 100.0],
        None,
        None,
    )
    book5 = write(
        tmp_path / "b5.csv",
        ["1000,99.9,100.1,3,4"],
        ("ts_ms", "bid", "ask", "bid_qty", "ask_qty") if header else None,
    )
    *_, bq5, aq5 = load_book(str(book5))
    assert (bq5.tolist(), aq5.tolist()) == ([3.0], [4.0])  # type: ignore[union-attr]
    trades = write(
        tmp_path / "t.csv",
        [
            "1000,100.1,0.5,buy",
            "1001,99.9,1,SELL",
            "1002,99.9,1,s",
            "1003,100.1,2,1",
            "1004,99.9,2,-1",
        ],
        ("ts_ms", "price", "qty", "side") if header else None,
    )
    _, _, _, side = load_trades(str(trades))
    assert side.tolist() == [1, -1, -1, 1, -1]


def test_intents_file(tmp_path: Path) -> None:
    path = write(
        tmp_path / "intents.csv",
        [
            "1000,a1,ENTER,btcusdt,long,",
            "2000,a1,EXIT,BTCUSDT,LONG,take_profit",
            "2500,a2,enter,BTCUSDT,SHORT,",
            "3000,a2,EXIT,BTCUSDT,SHORT,",
        ],
        ("ts_ms", "trade_id", "action", "asset", "position_side", "reason"),
    )
    intents = load_intents(str(path))
    assert [(e.ts_ms, e.trade_id, e.asset, e.position_side) for e in intents.entries()] == [
        (1000, "a1", "BTCUSDT", "LONG"),
        (2500, "a2", "BTCUSDT", "SHORT"),
    ]
    assert [(x.ts_ms, x.trade_id, x.reason) for x in intents.scheduled_exits()] == [
        (2000, "a1", "take_profit"),
        (3000, "a2", "SIGNAL_EXIT"),
    ]


@pytest.mark.parametrize(
    ("lines", "line", "needle"),
    [
        (["1,a,ENTER,BTCUSDT,LONG,", "2,a,HOLD,BTCUSDT,LONG,"], 2, "action 'HOLD'"),
        (["1,a,ENTER,BTCUSDT,UP,"], 1, "position_side 'UP'"),
        (["1,a,EXIT,BTCUSDT,LONG,STOP"], 1, "before its ENTER"),
        (["1,a,ENTER,BTCUSDT,LONG,", "2,a,ENTER,BTCUSDT,LONG,"], 2, "entered twice"),
        (["5,a,ENTER,BTCUSDT,LONG,", "2,b,ENTER,BTCUSDT,LONG,"], 2, "time order"),
    ],
)
def test_bad_intents_name_the_line(
    tmp_path: Path, lines: list[str], line: int, needle: str
) -> None:
    path = write(tmp_path / "intents.csv", lines)
    with pytest.raises(TapeError) as info:
        load_intents(str(path))
    assert info.value.line == line
    assert needle in info.value.message
    assert str(info.value).startswith(f"{path}:{line}: ")


def test_tape_arrays_are_numpy(tmp_path: Path) -> None:
    tape = load_tape(str(write(tmp_path / "b.csv", BOOK_ROWS)))
    assert tape.ts.dtype == np.int64
    assert tape.bid.dtype == np.float64


def _load(kind: str, path: Path) -> object:
    loader = {"book": load_book, "trades": load_trades, "intents": load_intents}[kind]
    return loader(str(path))


# (loader, file bytes, line, message): Arrow skips empty lines, the line number must not.
AFTER_BLANK = [
    ("book", b"ts_ms,bid,ask\n0,999.9,1000.1\n\n1000,1000.2,1000.1\n", 4, "crossed book"),
    ("book", b"ts_ms,bid,ask\n0,999.9,1000.1\n\n1000,,1000.1\n", 4, "column bid: missing value"),
    ("book", b"0,999.9,1000.1\r\n\r\n\r\n1000,-1,1000.1\r\n", 4, "column bid: -1.0 must be"),
    ("book", b"ts_ms,bid,ask\n\n5,999.9,1000.1\n\n1,999.9,1000.1\n", 5, "time order"),
    ("trades", b"ts_ms,price,qty,side\n\n0,1000,1,buy\n500,1000,1,x\n", 4, "column side: 'x'"),
    ("intents", b"1,a,ENTER,BTCUSDT,LONG,\n\n\n2,a,HOLD,BTCUSDT,LONG,\n", 4, "action 'HOLD'"),
]


@pytest.mark.parametrize(("kind", "data", "line", "needle"), AFTER_BLANK)
def test_errors_after_blank_lines_name_the_physical_line(
    tmp_path: Path, kind: str, data: bytes, line: int, needle: str
) -> None:
    path = tmp_path / f"{kind}.csv"
    path.write_bytes(data)
    with pytest.raises(TapeError) as info:
        _load(kind, path)
    assert str(info.value).startswith(f"{path}:{line}: ")
    assert needle in info.value.message


@pytest.mark.parametrize(
    ("kind", "data", "line", "needle"),
    [
        ("trades", b"ts_ms,price,qty,side\n0,1000,1,buy\n500,1000,1,s\xffell\n", 3, "side"),
        ("intents", b"1,a,ENTER,BTCUSDT,LONG,\n2,\xff,EXIT,BTCUSDT,LONG,\n", 2, "trade_id"),
    ],
)
def test_bad_utf8_in_a_text_column_names_the_line(
    tmp_path: Path, kind: str, data: bytes, line: int, needle: str
) -> None:
    path = tmp_path / f"{kind}.csv"
    path.write_bytes(data)
    with pytest.raises(TapeError) as info:
        _load(kind, path)
    assert str(info.value) == f"{path}:{line}: column {needle}: not valid UTF-8"


def test_zip_with_two_csv_members_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "book.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("a.csv", "ts_ms,bid,ask\n0,999.9,1000.1\n")
        zf.writestr("b.csv", "ts_ms,bid,ask\n0,999.8,1000.2\n")
    with pytest.raises(TapeError) as info:
        load_book(str(path))
    assert str(info.value) == f"{path}: zip holds 2 CSV members; expected one"


@pytest.mark.parametrize("header", [True, False], ids=["header", "no-header"])
def test_utf8_bom_is_accepted(tmp_path: Path, header: bool) -> None:
    path = tmp_path / "book.csv"
    head = b"ts_ms,bid,ask\n" if header else b""
    path.write_bytes(b"\xef\xbb\xbf" + head + b"0,999.9,1000.1\n1000,999.8,1000.0\n")
    ts, bid, ask, _, _ = load_book(str(path))
    assert (ts.tolist(), bid.tolist(), ask.tolist()) == (
        [0, 1000],
        [999.9, 999.8],
        [1000.1, 1000.0],
    )
    path.write_bytes(b"\xef\xbb\xbf" + head + b"0,999.9,1000.1\n1000,x,1000.0\n")
    with pytest.raises(TapeError) as info:  # the BOM is not the bad value
        load_book(str(path))
    assert str(info.value) == f"{path}:{2 + int(header)}: column bid: 'x' is not a number"
