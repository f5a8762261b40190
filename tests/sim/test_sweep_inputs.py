"""``simulate --sweep`` over recorded inputs: captures, Tardis files and Binance files, cut into
one tape per (symbol, UTC day). Each tape's result equals a plain run of that tape alone
(same config, a fresh router); the tapes go through the cache; bad inputs are refused as in
a plain run."""

from __future__ import annotations

import gzip
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from exec_router.__main__ import main
from exec_router.simulator.cache import TapeCache, get_loader
from exec_router.simulator.executors import LocalExecutor
from exec_router.simulator.sources import file_spec, split_days

from .sim_support import BOOK_CSV, CAPTURE, TARDIS, TRADES_CSV, make_tape, write_shifted_capture
from .sweep_support import comparable, intents, round_trip, sweep_tasks

START = 1723161256310  # the first bookTicker of the slice, exchange time
DAY_US = 86_400 * 10**6
QUOTES = TARDIS / "binance-futures_quotes_2024-08-08_ETHUSDT.csv"
TARDIS_TRADES = TARDIS / "binance-futures_trades_2024-08-08_ETHUSDT.csv"
#: What a plain run and a sweep task both report for a tape.
SAME = ("entries", "exits", "costs_bps", "markouts_bps", "counters")


def shifted_tardis(src: Path, dst: Path, days: int) -> Path:
    """A Tardis CSV ``days`` later (both timestamps)."""
    lines = src.read_text().splitlines()
    out = [lines[0]]
    for line in lines[1:]:
        cols = line.split(",")
        cols[2], cols[3] = str(int(cols[2]) + days * DAY_US), str(int(cols[3]) + days * DAY_US)
        out.append(",".join(cols))
    dst.write_text("\n".join(out) + "\n")
    return dst


def plain(argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    out = tmp_path / "plain.json"
    code = main(["simulate", *argv, "--no-cache", "--json", str(out)])
    err = capsys.readouterr().err
    assert code == 0, err
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def assert_each_tape_equals_a_plain_run(
    results: list[dict[str, Any]],
    singles: dict[str, list[str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``singles``: for each tape label, the plain-run arguments of that tape alone."""
    assert sorted({r["tape"] for r in results}) == sorted(singles)
    for r in results:
        cfg = r["config"]
        argv = [*singles[r["tape"]], "--styles", cfg["style"]]
        argv += ["--set", f"entry_ttl_s={cfg['entry_ttl_s']}"]
        got = plain(argv, tmp_path, capsys)["styles"][cfg["style"]]
        for key in SAME:
            assert r["summary"][key] == got[key], (r["tape"], cfg, key)
    assert any(r["summary"]["exits"]["round_trips"] for r in results)  # not vacuous


def test_a_sweep_over_two_captures_equals_plain_runs_of_each_tape(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = write_shifted_capture(tmp_path / "xeth.gz", dt_ms=500)
    rows = round_trip(START + 1000, "e1", "ETHUSDT", "LONG", 8000)
    rows += round_trip(START + 3000, "e2", "ETHUSDT", "SHORT", 6000)
    x_rows = round_trip(START + 1500, "x1", "XETHUSDT", "SHORT", 8000)
    x_rows += round_trip(START + 4000, "x2", "XETHUSDT", "LONG", 5000)
    both = intents(tmp_path / "both.csv", sorted(rows + x_rows))
    common = ["--latency-ms", "20", "--tick", "XETHUSDT=0.01"]
    argv = ["--capture", str(CAPTURE), "--capture", str(other), "--intents", both, *common]
    argv += ["--styles", "maker_both,maker_entry", "--sweep", "entry_ttl_s=1,4"]
    argv += ["--cache-dir", str(tmp_path / "cache")]
    specs, results = sweep_tasks(argv)
    assert [s.label for s in specs] == ["ETHUSDT 2024-08-08", "XETHUSDT 2024-08-08"]
    assert len(results) == 2 * 2 * 2
    singles = {
        "ETHUSDT 2024-08-08": [
            *("--capture", str(CAPTURE), "--intents", intents(tmp_path / "eth.csv", rows)),
            *common,
        ],
        "XETHUSDT 2024-08-08": [
            *("--capture", str(other), "--intents", intents(tmp_path / "xeth.csv", x_rows)),
            *common,
        ],
    }
    assert_each_tape_equals_a_plain_run(results, singles, tmp_path, capsys)
    # Local processes: the same numbers in the same order.
    _, local = sweep_tasks(argv, LocalExecutor(2))
    assert comparable(local) == comparable(results)
    # A worker without the entry rebuilds the day's tape from the files alike.
    cache = TapeCache(tmp_path / "cache")
    for spec in specs:
        (entry,) = cache.load(spec)
        (rebuilt,) = get_loader("day").load(spec.paths, spec.option_dict)
        for name in ("ts", "bid", "ask", "bid_qty", "trade_ts", "trade_px", "trade_side"):
            assert np.array_equal(getattr(entry, name), getattr(rebuilt, name)), name


def test_a_capture_of_two_symbols_is_a_tape_per_symbol(tmp_path: Path) -> None:
    other = write_shifted_capture(tmp_path / "xeth.gz", dt_ms=500)
    one = tmp_path / "both.gz"
    with gzip.open(one, "wb") as out:
        for path in (CAPTURE, other):
            with gzip.open(path, "rb") as fh:
                out.write(fh.read())
    rows = round_trip(START + 1000, "e1", "ETHUSDT", "LONG", 8000)
    rows += round_trip(START + 1500, "x1", "XETHUSDT", "SHORT", 8000)
    common = ["--intents", intents(tmp_path / "i.csv", rows), "--tick", "XETHUSDT=0.01"]
    common += ["--styles", "maker_both", "--sweep", "entry_ttl_s=1,4"]
    common += ["--cache-dir", str(tmp_path / "cache")]
    specs, merged = sweep_tasks(["--capture", str(one), *common])
    assert [s.label for s in specs] == ["ETHUSDT 2024-08-08", "XETHUSDT 2024-08-08"]
    _, apart = sweep_tasks(["--capture", str(CAPTURE), "--capture", str(other), *common])
    assert comparable(merged) == comparable(apart)


def test_a_tardis_sweep_is_cut_into_days_each_equal_to_a_plain_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    q2 = shifted_tardis(QUOTES, tmp_path / "binance-futures_quotes_2024-08-09_ETHUSDT.csv", 1)
    t2 = shifted_tardis(
        TARDIS_TRADES, tmp_path / "binance-futures_trades_2024-08-09_ETHUSDT.csv", 1
    )
    day = 86_400_000
    rows = round_trip(START + 300, "a", "ETHUSDT", "LONG", 1500)
    rows2 = round_trip(START + day + 500, "b", "ETHUSDT", "SHORT", 1500)
    files = ["--tardis", str(QUOTES), "--tardis", str(TARDIS_TRADES)]
    files2 = ["--tardis", str(q2), "--tardis", str(t2)]
    argv = [*files, *files2, "--intents", intents(tmp_path / "all.csv", rows + rows2)]
    argv += ["--styles", "maker_both,taker", "--sweep", "entry_ttl_s=0.5,2"]
    argv += ["--fill-model", "queue", "--cache-dir", str(tmp_path / "cache")]
    specs, results = sweep_tasks(argv)
    assert [s.label for s in specs] == ["ETHUSDT 2024-08-08", "ETHUSDT 2024-08-09"]
    singles = {
        "ETHUSDT 2024-08-08": [*files, "--intents", intents(tmp_path / "d1.csv", rows)],
        "ETHUSDT 2024-08-09": [*files2, "--intents", intents(tmp_path / "d2.csv", rows2)],
    }
    for argv1 in singles.values():
        argv1 += ["--fill-model", "queue"]
    assert_each_tape_equals_a_plain_run(results, singles, tmp_path, capsys)


def test_split_days_cuts_at_utc_midnight() -> None:
    day = 86_400_000
    tape = make_tape(
        [(day - 2, 10.0, 10.1), (day - 1, 10.0, 10.2), (day, 10.1, 10.2), (3 * day, 10.0, 10.1)],
        trades=[(day - 1, 10.1, 1.0, 1), (day + 5, 10.1, 1.0, -1)],
    )
    parts = list(split_days(tape))
    assert [str(d) for d, _ in parts] == ["1970-01-01", "1970-01-02", "1970-01-04"]
    assert [p.ts.tolist() for _, p in parts] == [[day - 2, day - 1], [day], [3 * day]]
    assert [p.trade_ts.tolist() for _, p in parts] == [[day - 1], [day + 5], []]
    assert np.concatenate([p.bid for _, p in parts]).tolist() == tape.bid.tolist()


def cache_files(root: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in root.glob("*.arrow")}


def loaders_of(root: Path) -> list[str]:
    return sorted(e["loader"] for e in TapeCache(root).entries())


@pytest.mark.parametrize("kind", ["capture", "tardis"])
def test_sweep_cache_entries_are_made_reused_and_invalidated(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "cache"
    if kind == "capture":
        src = write_shifted_capture(tmp_path / "in.gz", symbol="ETHUSDT", dprice=0)
        files, rows = ["--capture", str(src)], round_trip(START + 500, "a", "ETHUSDT", "LONG", 9000)
    else:
        src = tmp_path / QUOTES.name
        shutil.copy(QUOTES, src)
        files = ["--tardis", str(src), "--tardis", str(TARDIS_TRADES)]
        rows = round_trip(START + 300, "a", "ETHUSDT", "LONG", 1500)
    argv = ["simulate", *files, "--intents", intents(tmp_path / "i.csv", rows)]
    argv += ["--sweep", "entry_ttl_s=1,2", "--jobs", "1", "--cache-dir", str(root)]
    assert main(argv) == 0, capsys.readouterr().err
    first = cache_files(root)
    want = ["capture", "day"] if kind == "capture" else ["day", "tardis", "tardis"]
    assert loaders_of(root) == want
    assert main(argv) == 0
    assert cache_files(root) == first  # reused: nothing written again
    # The file changes: its entry and the day's are made anew; the other file's is kept.
    if kind == "capture":
        write_shifted_capture(src, symbol="ETHUSDT", dprice=1.0)
    else:
        src.write_text(src.read_text().replace(",2681.63,", ",2681.64,"))
    os.utime(src, ns=(1, 1))
    assert main(argv) == 0, capsys.readouterr().err
    now = cache_files(root)
    assert len(set(now) - set(first)) == 2
    assert len(set(first) & set(now)) == len(first)  # old entries stay until `cache clear`


def test_read_options_are_part_of_the_key(tmp_path: Path) -> None:
    cache = TapeCache(tmp_path)
    read = {"local_time": False, "allow_gaps": False, "symbol": None, "sizes": False}
    keys = {
        cache.key(file_spec("capture", str(CAPTURE), {**read, **change}))[0]
        for change in ({}, {"local_time": True}, {"allow_gaps": True})
    }
    assert len(keys) == 3
    feeds = cache.load_feeds(file_spec("capture", str(CAPTURE), read))
    again = cache.load_feeds(file_spec("capture", str(CAPTURE), read))
    assert (cache.builds, cache.hits) == (1, 1)
    assert feeds[0].book is not None
    assert again[0].book is not None
    for a, b in zip(feeds[0].book, again[0].book, strict=True):
        assert (a is None and b is None) or np.array_equal(a, b)


def refuse_sweep(
    argv: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Path, *needles: str
) -> None:
    args = ["simulate", *argv, "--sweep", "entry_ttl_s=1,2", "--cache-dir", str(tmp_path / "c")]
    assert main(args) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1, err
    assert err.startswith("exec-router: "), err
    for needle in needles:
        assert needle in err


def test_a_sweep_refuses_what_a_plain_run_refuses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    btc_trades = tmp_path / "BTCUSDT-aggTrades-2024-08-08.csv.gz"
    shutil.copy(TRADES_CSV, btc_trades)
    refuse_sweep(
        ["--book", str(BOOK_CSV), "--trades", str(btc_trades)],
        capsys,
        tmp_path,
        str(btc_trades),
        "trades of BTCUSDT but no top of book for it",
    )
    (tmp_path / "copy").mkdir()
    twice = tmp_path / "copy" / BOOK_CSV.name
    shutil.copy(BOOK_CSV, twice)
    refuse_sweep(
        ["--book", str(BOOK_CSV), "--book", str(twice)],
        capsys,
        tmp_path,
        str(BOOK_CSV),
        str(twice),
        "the same book of ETHUSDT for 2024-08-08 given twice",
    )
    same = tmp_path / "same.gz"
    shutil.copy(CAPTURE, same)
    refuse_sweep(
        ["--capture", str(CAPTURE), "--capture", str(same)],
        capsys,
        tmp_path,
        str(CAPTURE),
        str(same),
        "overlapping book of ETHUSDT",
    )
    other = write_shifted_capture(tmp_path / "xeth.gz")
    refuse_sweep(
        ["--capture", str(CAPTURE), "--capture", str(other)],
        capsys,
        tmp_path,
        "no tick size for XETHUSDT: pass --tick XETHUSDT=SIZE or --exchange-info FILE",
    )
    refuse_sweep(["--book", str(BOOK_CSV), "--time", "local"], capsys, tmp_path, "--time local")
    plan = intents(tmp_path / "sol.csv", [(START + 1000, "s1", "ENTER", "SOLUSDT", "LONG")])
    refuse_sweep(
        ["--capture", str(CAPTURE), "--intents", plan],
        capsys,
        tmp_path,
        f"{plan}:2: symbol SOLUSDT is not on the tape (ETHUSDT)",
    )
    refuse_sweep(
        ["--capture", str(CAPTURE), "--days", "2"], capsys, tmp_path, "--days and --symbols"
    )


def test_a_sweep_on_a_tape_too_short_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["simulate", "--capture", str(CAPTURE), "--sweep", "entry_ttl_s=1,2"]
    assert main([*argv, "--cache-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "the tape of ETHUSDT is 20 s long and the bracket needs 540 s" in err


def test_no_cache_leaves_no_entry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "xdg"
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    rows = round_trip(START + 500, "a", "ETHUSDT", "LONG", 9000)
    argv = ["simulate", "--capture", str(CAPTURE), "--intents", intents(tmp_path / "i.csv", rows)]
    argv += ["--sweep", "entry_ttl_s=1,2", "--jobs", "1", "--no-cache"]
    assert main(argv) == 0
    assert "no cache" in capsys.readouterr().out
    assert not home.exists()
