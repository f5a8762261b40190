"""One router over many symbols: the global guard, its opportunity cost, the per-symbol report,
and the CLI over several inputs, with every wrong input refused (exit 2) or explained (exit 1)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from exec_router import VALID_STYLES, ExecConfig
from exec_router.__main__ import main
from exec_router.simulator import EntryIntent, IntentList, Simulation, StyleRun, Venue, summarize
from exec_router.simulator.market import Market
from exec_router.simulator.strategy import Bracket, Brackets
from exec_router.simulator.synthetic import synthetic_tape

from .sim_support import BOOK_CSV, CAPTURE, TRADES_CSV, make_tape, write_shifted_capture


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def two_symbols() -> Market:
    btc = make_tape([(0, 1000.0, 1000.1), (20_000, 1000.0, 1000.1)], symbol="BTCUSDT")
    eth = make_tape(
        [(0, 50.00, 50.02), (5_000, 50.04, 50.06), (20_000, 50.04, 50.06)], symbol="ETHUSDT"
    )
    return Market({"BTCUSDT": btc, "ETHUSDT": eth})


def run_intents(market: Market, style: str, entries: list[tuple[int, str, str]]) -> Any:
    strategy = IntentList([EntryIntent(t, f"{s}-1", s, side) for t, s, side in entries])
    venue = Venue(latency_ms=0)
    sim = Simulation(market, ExecConfig(style=style), strategy, venue)
    sim.run()
    return StyleRun(sim.config, sim.trades, dict(sim.router.counters)), venue


def test_a_resting_entry_on_one_symbol_suppresses_another() -> None:
    market = two_symbols()
    run_, venue = run_intents(
        market, "maker_entry", [(1_000, "BTCUSDT", "LONG"), (1_500, "ETHUSDT", "LONG")]
    )
    btc, eth = run_.trades
    # BTC's bid quote never fills on a flat book; its TTL (8 s) ends at 9000 ms and the
    # guard lets go. ETH was suppressed at 1500 ms (mid 50.01) and is priced until 9000 ms
    # (mid 50.05): a LONG that missed a 4-cent rise.
    assert btc.outcome == "skipped"
    assert eth.outcome == "suppressed"
    assert (eth.giveup_ms, eth.giveup_mid) == (9_000, pytest.approx(50.05))
    s = summarize(run_, market, venue)
    expected = (50.05 - 50.01) / 50.01 * 1e4
    assert s["entries"]["suppressed"] == 1
    assert s["counters"]["suppressed_dup_enter"] == 1
    assert s["costs_bps"]["suppressed_opportunity"] == pytest.approx(expected)
    assert s["costs_bps"]["missed_opportunity"] == pytest.approx(expected / 2)
    per_eth = summarize(run_, market, venue, symbol="ETHUSDT")
    per_btc = summarize(run_, market, venue, symbol="BTCUSDT")
    assert (per_eth["entries"]["planned"], per_eth["entries"]["suppressed"]) == (1, 1)
    assert (per_btc["entries"]["planned"], per_btc["entries"]["suppressed"]) == (1, 0)
    assert per_btc["costs_bps"]["missed_opportunity"] == 0.0


def test_a_taker_entry_never_holds_the_guard() -> None:
    run_, venue = run_intents(
        two_symbols(), "taker", [(1_000, "BTCUSDT", "LONG"), (1_500, "ETHUSDT", "SHORT")]
    )
    assert [t.outcome for t in run_.trades] == ["taker", "taker"]
    btc, eth = run_.trades
    assert btc.entry.price == 1000.1  # the ask of its own symbol
    assert eth.entry.price == 50.00  # the bid of its own symbol
    assert summarize(run_, two_symbols(), venue)["entries"]["suppressed"] == 0


def test_an_intent_naming_a_symbol_off_the_tape_is_an_error() -> None:
    with pytest.raises(Exception, match="'SOLUSDT', which is not on the tape"):
        run_intents(two_symbols(), "taker", [(1_000, "SOLUSDT", "LONG")])


@pytest.mark.parametrize("style", VALID_STYLES)
def test_symbols_apart_in_time_give_the_one_symbol_results(style: str) -> None:
    a = synthetic_tape(seed=1, hours=0.25, symbol="BTCUSDT")
    b = synthetic_tape(
        seed=2, hours=0.25, symbol="ETHUSDT", price=3000.0, tick=0.01, start_ms=a.end_ms + 60_000
    )

    def bracket(tape: Any) -> Bracket:
        return Bracket(
            every_s=60,
            max_hold_s=60,
            asset=tape.symbol,
            start_ms=tape.start_ms,
            end_ms=tape.end_ms,
            prefix=f"{tape.symbol}-",
        )

    venue = Venue()
    config = ExecConfig(style=style)
    both = Market({"BTCUSDT": a, "ETHUSDT": b})
    multi = Simulation(both, config, Brackets((bracket(a), bracket(b))), venue)
    multi.run()
    run_multi = StyleRun(config, multi.trades, dict(multi.router.counters))
    for tape in (a, b):
        one = Simulation(tape, config, Brackets((bracket(tape),)), venue)
        one.run()
        run_one = StyleRun(config, one.trades, dict(one.router.counters))
        got = summarize(run_multi, both, venue, symbol=tape.symbol)
        want = summarize(run_one, tape, venue)
        for s in (got, want):
            del s["counters"], s["sim_seconds"]
        assert got["entries"]["planned"] > 5
        assert got == want


# ── the command ──────────────────────────────────────────────────────────────


def exchange_info(path: Path, ticks: dict[str, str]) -> str:
    doc = {
        "symbols": [
            {"symbol": s, "filters": [{"filterType": "PRICE_FILTER", "tickSize": t}]}
            for s, t in ticks.items()
        ]
    }
    path.write_text(json.dumps(doc))
    return str(path)


def intents(path: Path, rows: list[str]) -> str:
    path.write_text("ts_ms,trade_id,action,asset,position_side,reason\n" + "\n".join(rows) + "\n")
    return str(path)


START = 1723161256310  # the first bookTicker of the slice, exchange time


def test_two_captures_per_symbol_and_total(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = write_shifted_capture(tmp_path / "xeth.gz")
    info = exchange_info(tmp_path / "info.json", {"ETHUSDT": "0.01", "XETHUSDT": "0.01"})
    plan = intents(
        tmp_path / "i.csv",
        [
            f"{START + 2000},e1,ENTER,ETHUSDT,LONG,",
            f"{START + 2500},x1,ENTER,XETHUSDT,SHORT,",
            f"{START + 12000},e1,EXIT,ETHUSDT,LONG,MAX_HOLD",
            f"{START + 12500},x1,EXIT,XETHUSDT,SHORT,MAX_HOLD",
        ],
    )
    js = tmp_path / "out.json"
    argv = ["simulate", "--capture", str(CAPTURE), "--capture", str(other)]
    argv += ["--exchange-info", info, "--intents", plan, "--json", str(js)]
    code, out, err = run(argv, capsys)
    assert (code, err) == (0, "")
    assert "Per symbol" in out
    assert "suppressed by the global guard" in out
    assert "bytes per event" in out
    result = json.loads(js.read_text())
    assert list(result["symbols"]) == ["ETHUSDT", "XETHUSDT"]
    assert set(result["tape"]["symbols"]) == {"ETHUSDT", "XETHUSDT"}
    for style in VALID_STYLES:
        total = result["styles"][style]["entries"]
        per = [result["symbols"][s][style]["entries"] for s in ("ETHUSDT", "XETHUSDT")]
        assert total["planned"] == 2 == sum(p["planned"] for p in per)
        assert total["suppressed"] == sum(p["suppressed"] for p in per)
    # maker_entry: the ETH quote rests when the XETH entry comes 0.5 s later
    assert result["styles"]["maker_entry"]["entries"]["suppressed"] == 1
    assert result["symbols"]["XETHUSDT"]["maker_entry"]["entries"]["suppressed"] == 1
    assert result["styles"]["taker"]["entries"]["suppressed"] == 0


def refuse(
    argv: list[str], capsys: pytest.CaptureFixture[str], *needles: str, code: int = 2
) -> str:
    got, out, err = run(["simulate", *argv], capsys)
    assert got == code, err
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("exec-router: ")
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err
    return err


def test_no_tick_size_says_how_to_give_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = write_shifted_capture(tmp_path / "xeth.gz")
    refuse(
        ["--capture", str(CAPTURE), "--capture", str(other)],
        capsys,
        "no tick size for XETHUSDT: pass --tick XETHUSDT=SIZE or --exchange-info FILE",
    )


def test_a_short_tape_explains_why_no_entry(capsys: pytest.CaptureFixture[str]) -> None:
    refuse(
        ["--capture", str(CAPTURE)],
        capsys,
        "the tape of ETHUSDT is 20 s long and the bracket needs 540 s",
        "--every-s 300 + --max-hold-s 180",
        "lower --every-s or --max-hold-s",
        code=1,
    )


def test_wrong_symbol_pairs_and_days(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    btc_trades = tmp_path / "BTCUSDT-aggTrades-2024-08-08.csv.gz"
    shutil.copy(TRADES_CSV, btc_trades)
    refuse(
        ["--book", str(BOOK_CSV), "--trades", str(btc_trades)],
        capsys,
        str(btc_trades),
        "trades of BTCUSDT but no top of book for it",
    )
    next_day = tmp_path / "ETHUSDT-aggTrades-2024-08-09.csv.gz"
    shutil.copy(TRADES_CSV, next_day)
    refuse(
        ["--book", str(BOOK_CSV), "--trades", str(next_day)],
        capsys,
        str(next_day),
        "trades of ETHUSDT for 2024-08-09",
    )
    (tmp_path / "copy").mkdir()
    twice = tmp_path / "copy" / BOOK_CSV.name
    shutil.copy(BOOK_CSV, twice)
    refuse(
        ["--book", str(BOOK_CSV), "--book", str(twice)],
        capsys,
        str(BOOK_CSV),
        str(twice),
        "the same book of ETHUSDT for 2024-08-08 given twice",
    )


def test_book_and_trades_apart_in_time(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    book = tmp_path / "book.csv"
    book.write_text("ts_ms,bid,ask\n1000,10.0,10.1\n2000,10.0,10.1\n")
    trades = tmp_path / "trades.csv"
    trades.write_text("ts_ms,price,qty,side\n5000,10.0,1,buy\n")
    refuse(
        ["--book", str(book), "--trades", str(trades), "--symbol", "ETHUSDT"],
        capsys,
        str(book),
        str(trades),
        "do not overlap in time",
    )


@pytest.mark.parametrize(
    ("row", "needle"),
    [
        (f"{START - 1},e1,ENTER,ETHUSDT,LONG,", "is before the ETHUSDT tape starts"),
        (f"{START + 10**7},e1,ENTER,ETHUSDT,LONG,", "is after the ETHUSDT tape ends"),
        (f"{START + 1000},e1,ENTER,SOLUSDT,LONG,", "symbol SOLUSDT is not on the tape (ETHUSDT)"),
    ],
)
def test_intents_outside_the_tape(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], row: str, needle: str
) -> None:
    plan = intents(tmp_path / "i.csv", [row])
    refuse(["--capture", str(CAPTURE), "--intents", plan], capsys, f"{plan}:2: ", needle)


def test_local_time_needs_a_receive_time(capsys: pytest.CaptureFixture[str]) -> None:
    refuse(["--book", str(BOOK_CSV), "--time", "local"], capsys, "--time local needs")


def test_a_depth_gap_is_refused_unless_allowed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "gap.txt"
    diff = (
        '{{"e":"depthUpdate","E":{t},"T":{t},"s":"ETHUSDT","U":{a},"u":{b},"pu":{p},'
        '"b":[["10.00","1"]],"a":[["10.01","1"]]}}'
    )
    book = (
        '{"e":"bookTicker","u":1,"s":"ETHUSDT","b":"10.00","B":"1","a":"10.01","A":"1","T":1,"E":1}'
    )
    lines = [book, diff.format(t=1, a=1, b=5, p=0), diff.format(t=2, a=7, b=9, p=6)]
    path.write_text("\n".join(lines) + "\n")
    refuse(["--capture", str(path)], capsys, f"{path}:3: depth gap", "--allow-gaps")
    refuse(["--capture", str(path), "--allow-gaps"], capsys, "bracket plans no entry", code=1)
