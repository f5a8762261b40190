"""Input formats: stream captures, Tardis CSVs, Binance file names, exchange metadata."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from exec_router import _core
from exec_router.simulator.capture import load_capture
from exec_router.simulator.errors import TapeError
from exec_router.simulator.loaders import load_book, load_trades
from exec_router.simulator.market import InputError, assemble, binance_name, load_binance
from exec_router.simulator.tardis import load_tardis
from exec_router.simulator.ticks import load_exchange_info, parse_ticks, tick_table

from .sim_support import (
    BOOK_CSV,
    CAPTURE,
    TARDIS,
    TRADES_CSV,
    capture_lines,
    shifted_line,
)


def write(path: Path, lines: list[str], gz: bool = False) -> str:
    text = "\n".join(lines) + "\n"
    if gz:
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    return str(path)


def bare(line: str) -> str:
    """A capture line without its local time and envelope."""
    msg = json.loads(line.split(" ", 1)[1])
    return json.dumps(msg.get("data", msg))


# ── captures ─────────────────────────────────────────────────────────────────


def test_real_capture_matches_its_binance_csvs() -> None:
    (feed,) = load_capture(str(CAPTURE))
    assert feed.symbol == "ETHUSDT"
    assert feed.book is not None
    assert feed.trades is not None
    assert feed.depth is not None
    ts, bid, ask, bq, aq = feed.book
    c_ts, c_bid, c_ask, c_bq, c_aq = load_book(str(BOOK_CSV))
    np.testing.assert_array_equal(ts, c_ts)
    np.testing.assert_array_equal(bid, c_bid)
    np.testing.assert_array_equal(ask, c_ask)
    np.testing.assert_array_equal(bq, c_bq)
    np.testing.assert_array_equal(aq, c_aq)
    t_ts, t_px, t_qty, t_side = feed.trades
    a_ts, a_px, a_qty, a_side = load_trades(str(TRADES_CSV))
    np.testing.assert_array_equal(t_ts, a_ts)
    np.testing.assert_array_equal(t_px, a_px)
    np.testing.assert_array_equal(t_qty, a_qty)
    np.testing.assert_array_equal(t_side, a_side)


def test_real_capture_depth_snapshot_and_diffs() -> None:
    (feed,) = load_capture(str(CAPTURE))
    depth = feed.depth
    assert depth is not None
    lines = capture_lines()
    diffs = sum('"depthUpdate"' in ln for ln in lines)
    assert depth.messages == diffs + 1
    assert depth.kind.tolist().count(1) == 1
    snap = int(np.flatnonzero(depth.kind == 1)[0])
    assert int(depth.line[snap]) == 41
    assert lines[40].split(" ", 1)[1].startswith('{"lastUpdateId"')
    assert depth.gaps == 0
    _, _, side = depth.levels(snap)
    assert (side == 1).sum() == 1000
    assert (side == -1).sum() == 1000
    first = json.loads(lines[0].split(" ", 1)[1])["data"]
    px, _qty, side = depth.levels(0)
    assert len(px) == len(first["b"]) + len(first["a"])
    assert float(px[0]) == float(first["b"][0][0])
    assert int(depth.first_id[0]) == first["U"]
    assert int(depth.prev_id[1]) == int(depth.last_id[0])


def test_plain_bare_and_gz_captures_agree(tmp_path: Path) -> None:
    lines = capture_lines()[:200]
    gz = write(tmp_path / "a.gz", lines, gz=True)
    plain = write(tmp_path / "a.txt", lines)
    naked = write(tmp_path / "b.txt", [bare(ln) for ln in lines])
    books = [load_capture(p)[0].book for p in (gz, plain, naked)]
    for book in books[1:]:
        assert book is not None
        assert books[0] is not None
        for x, y in zip(books[0], book, strict=True):
            np.testing.assert_array_equal(x, y)


def test_local_time_reads_the_receive_stamp(tmp_path: Path) -> None:
    lines = capture_lines()[:60]
    path = write(tmp_path / "a.txt", lines)
    (feed,) = load_capture(path, local_time=True)
    assert feed.book is not None
    first = next(ln for ln in lines if "bookTicker" in ln)
    assert int(feed.book[0][0]) == int(first.split(" ")[0]) // 1_000_000
    naked = write(tmp_path / "b.txt", [bare(ln) for ln in lines])
    with pytest.raises(TapeError, match="no local timestamp") as err:
        load_capture(naked, local_time=True)
    assert err.value.line == 1


def test_several_symbols_in_one_file(tmp_path: Path) -> None:
    lines = capture_lines()[:300]
    mixed = [x for ln in lines for x in (ln, shifted_line(ln, "XETHUSDT", 0, 1000.0))]
    feeds = {f.symbol: f for f in load_capture(write(tmp_path / "m.gz", mixed, gz=True))}
    assert list(feeds) == ["ETHUSDT", "XETHUSDT"]
    a, b = feeds["ETHUSDT"], feeds["XETHUSDT"]
    assert a.book is not None
    assert b.book is not None
    np.testing.assert_allclose(a.book[1] - 1000.0, b.book[1])
    assert a.depth is not None
    assert b.depth is not None
    # each symbol got its own REST snapshot, matched by its update ids
    assert a.depth.kind.sum() == 1
    assert b.depth.kind.sum() == 1


def depth(u0: int, u1: int, pu: int, t: int = 1) -> str:
    return json.dumps(
        {
            "e": "depthUpdate",
            "E": t,
            "T": t,
            "s": "ETHUSDT",
            "U": u0,
            "u": u1,
            "pu": pu,
            "b": [["10.00", "1.5"]],
            "a": [["10.01", "0"]],
        }
    )


def snapshot(last: int) -> str:
    return json.dumps(
        {"lastUpdateId": last, "E": 2, "T": 2, "bids": [["10.00", "1"]], "asks": [["10.02", "2"]]}
    )


def book(t: int = 1, bid: str = "10.00", ask: str = "10.01") -> str:
    msg = {"e": "bookTicker", "u": 1, "s": "ETHUSDT", "b": bid, "B": "1", "a": ask, "A": "2"}
    return json.dumps({**msg, "T": t, "E": t})


def test_snapshot_then_diffs(tmp_path: Path) -> None:
    path = write(tmp_path / "d.txt", [book(), depth(90, 95, 80), snapshot(100), depth(96, 105, 95)])
    (feed,) = load_capture(path)
    assert feed.depth is not None
    assert feed.depth.kind.tolist() == [0, 1, 0]
    assert feed.depth.line.tolist() == [2, 3, 4]
    assert feed.depth.last_id.tolist() == [95, 100, 105]
    px, _qty, side = feed.depth.levels(1)
    assert px.tolist() == [10.0, 10.02]
    assert side.tolist() == [1, -1]


def test_depth_gap_names_the_line_unless_allowed(tmp_path: Path) -> None:
    lines = [book(), depth(1, 5, 0), depth(6, 9, 5), depth(11, 12, 10)]
    path = write(tmp_path / "g.txt", lines)
    with pytest.raises(TapeError, match="depth gap: pu=10 but the previous diff ended at u=9") as e:
        load_capture(path)
    assert e.value.line == 4
    assert "--allow-gaps" in str(e.value)
    (feed,) = load_capture(path, allow_gaps=True)
    assert feed.depth is not None
    assert feed.depth.gaps == 1


def test_snapshot_newer_than_the_diffs_is_a_gap(tmp_path: Path) -> None:
    path = write(tmp_path / "s.txt", [book(), snapshot(100), depth(101, 110, 99)])
    with pytest.raises(TapeError, match="snapshot on line 2") as e:
        load_capture(path)
    assert e.value.line == 3


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ("garbage", "expected `<timestamp_ns> <json>` or a JSON object"),
        ('1 {"e":"bookTicker",', "invalid JSON"),
        ('{"e":"bookTicker","s":"X","T":1,"b":"1","B":"1","a":"2"}', 'field "A" missing'),
        ('{"e":"bookTicker","s":"X","T":1,"b":"2","B":"1","a":"1","A":"1"}', "crossed book"),
        ('{"e":"trade","s":"X","T":1,"p":"abc","q":"1","m":true}', 'price "abc" is not a number'),
        ('{"e":"trade","s":"X","T":1,"p":"-1","q":"1","m":true}', "must be finite and > 0"),
        ('{"e":"trade","s":"X","p":"1","q":"1","m":true}', "no exchange time"),
    ],
)
def test_bad_capture_line_is_named(tmp_path: Path, line: str, needle: str) -> None:
    path = write(tmp_path / "bad.txt", [book(), "", line])
    with pytest.raises(TapeError) as e:
        load_capture(path)
    assert e.value.line == 3
    assert needle in e.value.message


def test_bad_utf8_and_both_trade_streams(tmp_path: Path) -> None:
    path = tmp_path / "u.txt"
    path.write_bytes(book().encode() + b"\n" + b'{"e":"\xff"}\n')
    with pytest.raises(TapeError, match="not valid UTF-8") as e:
        load_capture(str(path))
    assert e.value.line == 2
    trade = '{"e":"trade","s":"ETHUSDT","T":1,"p":"1","q":"1","m":true}'
    agg = '{"e":"aggTrade","s":"ETHUSDT","a":5,"T":1,"p":"1","q":"1","m":true}'
    both = write(tmp_path / "b.txt", [book(), trade, agg])
    with pytest.raises(TapeError, match="both trade and aggTrade"):
        load_capture(both)


def test_parser_threads_and_blocks_agree() -> None:
    one = _core.parse_capture(str(CAPTURE), threads=1)
    assert one["lines"] == len(capture_lines())
    # Small blocks cut the file (and its 40 kB depth lines) at many places.
    for threads, block in ((5, 0), (2, 4096), (3, 100_000), (1, 64)):
        many = _core.parse_capture(str(CAPTURE), threads=threads, block=block)
        assert many["lines"] == one["lines"]
        for kind in ("book", "trade", "depth"):
            assert one["symbols"]["ETHUSDT"][kind] == many["symbols"]["ETHUSDT"][kind]


def test_a_bad_line_is_named_across_blocks(tmp_path: Path) -> None:
    lines = capture_lines()[:500]
    lines[417] = '{"e":"bookTicker","broken"'
    path = write(tmp_path / "b.txt", lines)
    for threads, block in ((1, 0), (2, 4096), (3, 1000)):
        with pytest.raises(ValueError, match="invalid JSON") as e:
            _core.parse_capture(path, threads=threads, block=block)
        assert e.value.args[0] == 418


# ── Tardis ───────────────────────────────────────────────────────────────────


def test_tardis_quotes_and_trades_match_the_capture() -> None:
    (quotes,) = load_tardis(str(TARDIS / "binance-futures_quotes_2024-08-08_ETHUSDT.csv"))
    (trades,) = load_tardis(str(TARDIS / "binance-futures_trades_2024-08-08_ETHUSDT.csv"))
    (cap,) = load_capture(str(CAPTURE))
    assert quotes.symbol == trades.symbol == "ETHUSDT"
    assert quotes.book is not None
    assert cap.book is not None
    n = len(quotes.book[0])
    assert n == 300
    for x, y in zip(quotes.book, cap.book, strict=True):
        np.testing.assert_array_equal(x, y[:n])
    assert trades.trades is not None
    assert cap.trades is not None
    m = len(trades.trades[0])
    for x, y in zip(trades.trades, cap.trades, strict=True):
        np.testing.assert_array_equal(x, y[:m])


def test_tardis_local_time_and_gz(tmp_path: Path) -> None:
    src = TARDIS / "binance-futures_quotes_2024-08-08_ETHUSDT.csv"
    gz = tmp_path / "quotes.csv.gz"
    gz.write_bytes(gzip.compress(src.read_bytes()))
    (feed,) = load_tardis(str(gz), local_time=True)
    assert feed.book is not None
    row = src.read_text().splitlines()[1].split(",")
    assert int(feed.book[0][0]) == int(row[3]) // 1000


def test_tardis_incremental_book_groups_messages() -> None:
    path = TARDIS / "binance-futures_incremental_book_L2_2024-08-08_ETHUSDT.csv"
    (feed,) = load_tardis(str(path))
    assert feed.depth is not None
    rows = path.read_text().splitlines()[1:]
    assert len(feed.depth.px) == len(rows)
    assert feed.depth.messages == len({r.split(",")[3] for r in rows})
    assert set(feed.depth.side.tolist()) == {1, -1}


def test_tardis_book_snapshot_and_several_symbols(tmp_path: Path) -> None:
    cols = ["exchange", "symbol", "timestamp", "local_timestamp"]
    for k in range(25):
        cols += [f"asks[{k}].price", f"asks[{k}].amount", f"bids[{k}].price", f"bids[{k}].amount"]
    rows = []
    for i, (sym, px) in enumerate([("BTCUSDT", 100.0), ("ETHUSDT", 10.0), ("BTCUSDT", 100.1)]):
        levels = []
        for k in range(25):
            levels += [px + 0.1 * (k + 1), 1, px - 0.1 * k, 2]
        rows.append(["binance-futures", sym, 1_000_000 * (i + 1), 1_000_000 * (i + 1) + 5, *levels])
    path = tmp_path / "snap.csv"
    path.write_text("\n".join(",".join(map(str, r)) for r in [cols, *rows]) + "\n")
    feeds = {f.symbol: f for f in load_tardis(str(path))}
    assert list(feeds) == ["BTCUSDT", "ETHUSDT"]
    btc = feeds["BTCUSDT"].book
    assert btc is not None
    assert btc[0].tolist() == [1000, 3000]
    assert btc[1].tolist() == [100.0, 100.1]
    assert btc[2].tolist() == pytest.approx([100.1, 100.2])


@pytest.mark.parametrize(
    ("lines", "line", "needle"),
    [
        (["a,b,c", "1,2,3"], 1, "not a Tardis CSV"),
        (["exchange,symbol,timestamp,local_timestamp,x", "e,S,1,2,3"], 1, "unrecognised"),
        (
            [
                "exchange,symbol,timestamp,local_timestamp,ask_amount,ask_price,bid_price,bid_amount",
                "e,X,1,2,1,10.0,9.9,1",
                "e,X,2,3,1,10.0,10.5,1",
            ],
            3,
            "crossed book",
        ),
        (
            [
                "exchange,symbol,timestamp,local_timestamp,id,side,price,amount",
                "e,X,1,2,1,buy,10,1",
                "e,X,2,3,2,unknown,10,1",
            ],
            3,
            "not buy or sell",
        ),
        (
            [
                "exchange,symbol,timestamp,local_timestamp,id,side,price,amount",
                "e,X,5,2,1,buy,10,1",
                "e,X,2,3,2,sell,10,1",
            ],
            3,
            "rows must be in time order",
        ),
    ],
)
def test_bad_tardis_files(tmp_path: Path, lines: list[str], line: int, needle: str) -> None:
    path = write(tmp_path / "t.csv", lines)
    with pytest.raises(TapeError) as e:
        load_tardis(path)
    assert e.value.line == line
    assert needle in e.value.message


# ── Binance names, joining days ──────────────────────────────────────────────


def test_binance_names() -> None:
    name = binance_name("/x/ETHUSDT-bookTicker-2024-08-08.zip")
    assert name is not None
    assert (name.symbol, name.kind, str(name.day)) == ("ETHUSDT", "bookTicker", "2024-08-08")
    other = binance_name("BTCUSDT-aggTrades-20240809.csv.gz")
    assert other is not None
    assert (other.symbol, other.kind, str(other.day)) == ("BTCUSDT", "aggTrades", "2024-08-09")
    assert binance_name("book.csv") is None
    assert binance_name("ETHUSDT-bookTicker-2024-13-45.csv") is None


def day_file(tmp_path: Path, name: str, start_ms: int, rows: int = 3) -> str:
    lines = [
        "update_id,best_bid_price,best_bid_qty,best_ask_price,best_ask_qty,"
        "transaction_time,event_time"
    ]
    lines += [
        f"{i},10.0,1,10.01,1,{start_ms + 1000 * i},{start_ms + 1000 * i}" for i in range(rows)
    ]
    return write(tmp_path / name, lines)


DAY = 86_400_000
D8 = 1_723_075_200_000  # 2024-08-08 00:00 UTC


def test_consecutive_days_are_joined(tmp_path: Path) -> None:
    a = day_file(tmp_path, "ETHUSDT-bookTicker-2024-08-09.csv", D8 + DAY)
    b = day_file(tmp_path, "ETHUSDT-bookTicker-2024-08-08.csv", D8)
    market = assemble(load_binance([a, b], [], None))
    tape = market.tapes["ETHUSDT"]
    assert tape.rows == 6
    assert tape.start_ms == D8
    assert tape.end_ms == D8 + DAY + 2000


@pytest.mark.parametrize(
    ("names", "needle"),
    [
        (("2024-08-08", "2024-08-08"), "the same book of ETHUSDT for 2024-08-08 given twice"),
        (("2024-08-08", "2024-08-10"), "days are not consecutive"),
    ],
)
def test_days_that_do_not_join(tmp_path: Path, names: tuple[str, str], needle: str) -> None:
    (tmp_path / "x").mkdir()
    a = day_file(tmp_path, f"ETHUSDT-bookTicker-{names[0]}.csv", D8)
    b = day_file(tmp_path / "x", f"ETHUSDT-bookTicker-{names[1]}.csv", D8 + 2 * DAY)
    with pytest.raises(InputError, match=needle) as e:
        assemble(load_binance([a, b], [], None))
    assert a in str(e.value)
    assert b in str(e.value)


def test_overlapping_files_are_refused(tmp_path: Path) -> None:
    a = day_file(tmp_path, "a.csv", D8, rows=5)
    b = day_file(tmp_path, "b.csv", D8 + 2000, rows=5)
    with pytest.raises(InputError, match="overlapping book of ETHUSDT"):
        assemble(load_binance([a, b], [], "ETHUSDT"))


# ── tick sizes ───────────────────────────────────────────────────────────────


def test_exchange_info_binance_and_bingx(tmp_path: Path) -> None:
    binance = tmp_path / "exchangeInfo.json"
    binance.write_text(
        json.dumps(
            {
                "symbols": [
                    {
                        "symbol": "ETHUSDT",
                        "filters": [
                            {"filterType": "LOT_SIZE", "stepSize": "0.001"},
                            {"filterType": "PRICE_FILTER", "tickSize": "0.01"},
                        ],
                    },
                    {
                        "symbol": "NEWUSDT",
                        "filters": [{"filterType": "PRICE_FILTER", "tickSize": "0.0005"}],
                    },
                ]
            }
        )
    )
    assert load_exchange_info(str(binance)) == {"ETHUSDT": 0.01, "NEWUSDT": 0.0005}
    bingx = tmp_path / "contracts.json"
    bingx.write_text(
        json.dumps(
            {
                "code": 0,
                "data": [
                    {"symbol": "BTC-USDT", "pricePrecision": 1},
                    {"symbol": "PEPE-USDT", "pricePrecision": 10},
                ],
            }
        )
    )
    assert load_exchange_info(str(bingx)) == {"BTCUSDT": 0.1, "PEPEUSDT": 1e-10}
    broken = tmp_path / "broken.json"
    broken.write_text('{"symbols": [\n')
    with pytest.raises(TapeError, match="not valid JSON"):
        load_exchange_info(str(broken))


def test_tick_table() -> None:
    manual = parse_ticks(["newusdt=0.5"])
    assert manual == {"NEWUSDT": 0.5}
    assert tick_table(["ETHUSDT", "NEWUSDT"], {"ETHUSDT": 0.05}, manual) == {
        "ETHUSDT": 0.05,
        "NEWUSDT": 0.5,
    }
    assert tick_table(["BTCUSDT"], {}, {}) == {}  # the router's table knows it
    with pytest.raises(InputError, match=r"no tick size for ODDUSDT: pass --tick ODDUSDT=SIZE"):
        tick_table(["ODDUSDT"], {}, {})
    with pytest.raises(InputError, match="expected SYMBOL=SIZE"):
        parse_ticks(["ETHUSDT=0"])
