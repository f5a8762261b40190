"""The command: its output, JSON, plot, sweep, and one-line errors with exit code 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from exec_router.__main__ import main
from exec_router.simulator.loaders import BINANCE_BOOK

GOOD = [
    "1,65000.1,1.5,65000.2,0.25,1700000000000,1700000000003",
    "2,65000.0,2.0,65000.2,0.5,1700000000100,1700000000104",
    "3,65000.0,2.0,65000.1,0.75,1700000000200,1700000000205",
    "4,64999.9,0.125,65000.0,3.0,1700000000300,1700000000301",
]
HEADER = ",".join(BINANCE_BOOK)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_simulate_prints_the_comparison(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["simulate", "--hours", "2"], capsys)
    assert (code, err) == (0, "")
    assert "Execution styles compared" in out
    for needle in ("taker", "maker_entry", "maker_exit", "maker_both", "total / round trip"):
        assert needle in out
    assert "Router counters" in out
    assert "M events/s per style end to end" in out


def test_json_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    js, png = tmp_path / "out.json", tmp_path / "out.png"
    code, _, _ = run(
        [
            "simulate",
            "--hours",
            "1",
            "--styles",
            "taker,maker_both",
            "--json",
            str(js),
            "--plot",
            str(png),
        ],
        capsys,
    )
    assert code == 0
    payload = json.loads(js.read_text())
    assert list(payload["styles"]) == ["taker", "maker_both"]
    taker = payload["styles"]["taker"]
    assert taker["entries"]["maker_fills"] == 0
    assert taker["costs_bps"]["fees"] == pytest.approx(10.0)
    assert taker["config"]["style"] == "taker"
    assert payload["venue"] == {
        "fill_model": "through",
        "latency_ms": 50,
        "maker_fee_bps": 2.0,
        "taker_fee_bps": 5.0,
        "qty": [],
        "notional": None,
        "cancel_from": "back",
    }
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fees_and_set_reach_the_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    js = tmp_path / "out.json"
    code, _, _ = run(
        [
            "simulate",
            "--hours",
            "1",
            "--styles",
            "taker,maker_entry",
            "--taker-fee-bps",
            "4",
            "--maker-fee-bps",
            "0",
            "--set",
            "entry_ttl_s=3",
            "offset_ticks=2",
            "--json",
            str(js),
        ],
        capsys,
    )
    assert code == 0
    styles = json.loads(js.read_text())["styles"]
    assert styles["taker"]["costs_bps"]["fees"] == pytest.approx(8.0)
    assert styles["maker_entry"]["config"]["entry_ttl_s"] == 3.0
    assert styles["maker_entry"]["config"]["offset_ticks"] == 2


def test_sweep_ranks_the_grid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    js = tmp_path / "sweep.json"
    code, out, _ = run(
        [
            "simulate",
            "--hours",
            "1",
            "--sweep",
            "entry_ttl_s=2,8",
            "offset_ticks=0,1",
            "--jobs",
            "2",
            "--json",
            str(js),
        ],
        capsys,
    )
    assert code == 0
    assert "Sweep: 4 configs × 1 tape = 4 tasks on 2 local processes (forkserver)" in out
    ranked = json.loads(js.read_text())["sweep"]["ranked"]
    grid = {(r["config"]["entry_ttl_s"], r["config"]["offset_ticks"]) for r in ranked}
    assert grid == {(2.0, 0), (2.0, 1), (8.0, 0), (8.0, 1)}
    assert {r["style"] for r in ranked} == {"maker_both"}
    totals = [r["costs_bps"]["total_incl_missed"] for r in ranked]
    assert totals == sorted(totals)


def test_intents_file_drives_the_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    book = tmp_path / "book.csv"
    book.write_text(
        "".join(
            f"{1000 + 100 * i},{99.9 + (i % 3) / 10:.1f},{100.2 + (i % 3) / 10:.1f}\n"
            for i in range(100)
        )
    )
    intents = tmp_path / "intents.csv"
    intents.write_text(
        "ts_ms,trade_id,action,asset,position_side,reason\n"
        "1000,x1,ENTER,TESTUSDT,LONG,\n"
        "5000,x1,EXIT,TESTUSDT,LONG,MAX_HOLD\n"
    )
    js = tmp_path / "out.json"
    code, _, err = run(
        [
            "simulate",
            "--book",
            str(book),
            "--symbol",
            "TESTUSDT",
            "--tick",
            "TESTUSDT=0.1",
            "--intents",
            str(intents),
            "--styles",
            "taker",
            "--json",
            str(js),
        ],
        capsys,
    )
    assert (code, err) == (0, "")
    taker = json.loads(js.read_text())["styles"]["taker"]
    assert taker["entries"]["planned"] == 1
    assert taker["exits"]["round_trips"] == 1


def bad(tmp_path: Path, name: str, lines: list[str]) -> str:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return str(path)


BAD_BOOKS = [
    (
        "short row",
        [HEADER, GOOD[0], GOOD[1][:-20]],
        3,
        "expected 7 columns (Binance bookTicker), got",
    ),
    (
        "not a number",
        [*GOOD[:3], GOOD[3].replace("65000.0", "abc")],
        4,
        "column best_ask_price: 'abc' is not a number",
    ),
    (
        "missing value",
        [HEADER, GOOD[0], GOOD[1].replace("65000.2", "", 1)],
        3,
        "column best_ask_price: missing value",
    ),
    ("out of order", [HEADER, GOOD[0], GOOD[2], GOOD[1]], 4, "rows must be in time order"),
    (
        "missing column",
        [HEADER.replace(",best_ask_price", ""), "1,2,3,4,5,6"],
        1,
        "missing column 'best_ask_price'",
    ),
    ("crossed", [GOOD[0], GOOD[1].replace("65000.2", "64990.0", 1)], 2, "crossed book"),
    ("bad header", ["time,price", "1,2"], 1, "unrecognised header"),
    ("bad width", ["1,2,3,4"], 1, "columns, got 4"),
    ("negative", [GOOD[0], GOOD[1].replace("65000.0", "-1", 1)], 2, "must be finite and > 0"),
]


@pytest.mark.parametrize(
    ("case", "lines", "line", "needle"), BAD_BOOKS, ids=[c[0] for c in BAD_BOOKS]
)
def test_bad_book_file_is_one_line_and_exit_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    case: str,
    lines: list[str],
    line: int,
    needle: str,
) -> None:
    path = bad(tmp_path, "bookTicker.csv", lines)
    code, out, err = run(["simulate", "--book", path], capsys)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith(f"exec-router: {path}:{line}: ")
    assert needle in err


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--book", "/nonexistent/book.csv"], "/nonexistent/book.csv: no such file"),
        (["--trades", "x.csv"], "--trades needs --book"),
        (
            ["--fill-model", "queue", "--book", "{book}", "--symbol", "BTCUSDT"],
            "queue fill model needs trades",
        ),
        (["--book", "{book}"], "cannot tell the symbol from the file name; pass --symbol"),
        (["--sweep", "entry_ttl=1,2"], "unknown ExecConfig field 'entry_ttl'"),
        (["--sweep", "entry_ttl_s=1,x"], "entry_ttl_s='x': expected float"),
        (["--set", "entry_miss=sometimes"], "ExecConfig.entry_miss must be one of"),
        (["--styles", "maker"], "--styles: 'maker' is not one of"),
    ],
)
def test_bad_arguments_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], needle: str
) -> None:
    book = bad(tmp_path, "b.csv", GOOD)
    code, _, err = run(["simulate", "--hours", "1", *(a.format(book=book) for a in argv)], capsys)
    assert code == 2
    assert needle in err
    assert err.count("\n") == 1


def test_bad_trades_and_compressed_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    book = bad(tmp_path, "b.csv", GOOD)
    trades = bad(tmp_path, "aggTrades.csv", ["1,65000.2,0.01,1,2,1700000000050,maybe"])
    code, _, err = run(["simulate", "--book", book, "--trades", trades], capsys)
    assert code == 2
    assert f"{trades}:1: column is_buyer_maker: 'maybe' is not a boolean" in err
    broken = tmp_path / "book.csv.gz"
    broken.write_bytes(b"this is not gzip")
    code, _, err = run(["simulate", "--book", str(broken)], capsys)
    assert code == 2
    assert err.startswith(f"exec-router: {broken}: ")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    code, _, err = run(["simulate", "--book", str(empty)], capsys)
    assert (code, err) == (2, f"exec-router: {empty}: empty file\n")


def _env() -> dict[str, Any]:
    import exec_router

    root = str(Path(exec_router.__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    return env


def test_process_exit_code_and_no_traceback(tmp_path: Path) -> None:
    path = bad(tmp_path, "bt.csv", [HEADER, GOOD[0], "1,2,3"])
    proc = subprocess.run(
        [sys.executable, "-m", "exec_router", "simulate", "--book", path],
        capture_output=True,
        text=True,
        env=_env(),
        check=False,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr == f"exec-router: {path}:3: expected 7 columns (Binance bookTicker), got 3\n"


def test_default_command_runs_with_no_arguments() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "exec_router", "simulate"],
        capture_output=True,
        text=True,
        env=_env(),
        check=False,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Tape: synthetic(seed=7) BTCUSDT, 24.0 h, 864,000 book rows" in proc.stdout
    assert "maker_both" in proc.stdout


def test_import_exec_router_stays_light() -> None:
    code = (
        "import sys, exec_router\n"
        "heavy = [m for m in ('numpy', 'pyarrow', 'rich', 'matplotlib') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=_env(), check=True
    )
    assert proc.stdout.strip() == "[]"


def test_missing_extra_is_a_clear_message() -> None:
    code = (
        "import sys\n"
        "sys.modules['numpy'] = None\n"
        "from exec_router.__main__ import main\n"
        "sys.exit(main(['simulate']))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=_env(), check=False
    )
    assert proc.returncode == 2
    assert "pip install '.[sim]'" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("flag", ["--json", "--plot"])
def test_unwritable_output_fails_before_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str
) -> None:
    missing = tmp_path / "no" / "out.png"
    code, out, err = run(["simulate", "--hours", "1", flag, str(missing)], capsys)
    assert (code, out) == (2, "")  # nothing simulated, nothing printed
    assert err == f"exec-router: {flag} {missing}: no such directory {missing.parent}\n"
    code, out, err = run(["simulate", "--hours", "1", flag, str(tmp_path)], capsys)
    assert (code, out, err) == (2, "", f"exec-router: {flag} {tmp_path}: is a directory\n")


def test_failed_write_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from exec_router.simulator import report

    def refuse(path: str, payload: Any) -> None:
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(report, "write_json", refuse)
    js = tmp_path / "out.json"
    code, _, err = run(["simulate", "--hours", "1", "--styles", "taker", "--json", str(js)], capsys)
    assert code == 2
    assert err == f"exec-router: [Errno 13] Permission denied: '{js}'\n"


def test_fill_model_all_prints_the_range_per_style(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from .sim_support import CAPTURE

    js, intents = tmp_path / "out.json", tmp_path / "intents.csv"
    rows = []
    t0 = 1723161257310  # the slice runs from ...256310 to ...276225 ms
    for k in range(14):
        side = "LONG" if k % 2 == 0 else "SHORT"
        rows.append((t0 + 1000 * k, f"t{k},ENTER,ETHUSDT,{side},"))
        rows.append((t0 + 1000 * k + 5000, f"t{k},EXIT,ETHUSDT,{side},MAX_HOLD"))
    lines = [f"{ts},{rest}" for ts, rest in sorted(rows)]
    intents.write_text("ts_ms,trade_id,action,asset,position_side,reason\n" + "\n".join(lines))
    argv = ["simulate", "--capture", str(CAPTURE), "--fill-model", "all"]
    argv += ["--intents", str(intents), "--styles", "maker_entry,maker_both", "--json", str(js)]
    code, out, err = run(argv, capsys)
    assert (code, err) == (0, "")
    assert "Fill models, most optimistic to most pessimistic" in out
    assert "fill models print, queue, touch, through" in out
    payload = json.loads(js.read_text())
    models = payload["fill_models"]
    assert list(models) == ["print", "queue", "touch", "through"]
    # The main table is the default model's.
    assert payload["styles"] == models["through"]
    for style in ("maker_entry", "maker_both"):
        fills = [models[m][style]["entries"]["maker_fills"] for m in models]
        assert fills == sorted(fills, reverse=True)  # print fills the most, through the least
        assert fills[2] == fills[3]  # touch and through are one rule


@pytest.mark.parametrize(
    ("qty", "needle"),
    [
        (["0"], "--qty 0: expected SYMBOL=QTY or a notional, a number > 0"),
        (["ETHUSDT=x"], "--qty ETHUSDT=x: expected"),
        (["=1"], "--qty =1: expected"),
        (["100", "200"], "--qty 200: the default notional is given twice"),
    ],
)
def test_bad_qty_is_one_line(
    qty: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["simulate", "--hours", "1"]
    for q in qty:
        argv += ["--qty", q]
    code, _, err = run(argv, capsys)
    assert code == 2
    assert needle in err


def test_qty_sizes_the_quotes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    js = tmp_path / "out.json"
    argv = ["simulate", "--hours", "2", "--fill-model", "queue", "--qty", "BTCUSDT=0.5"]
    argv += ["--styles", "maker_both", "--json", str(js)]
    code, _, err = run(argv, capsys)
    assert (code, err) == (0, "")
    payload = json.loads(js.read_text())
    size = payload["styles"]["maker_both"]["size"]
    assert 0.0 < size["fill_ratio"] <= 1.0
    assert size["filled_notional"] > 0
    assert payload["venue"]["qty"] == [["BTCUSDT", 0.5]]


def test_a_sweep_takes_one_fill_model(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["simulate", "--fill-model", "all", "--sweep", "offset_ticks=0,1"], capsys)
    assert code == 2
    assert "--fill-model all goes without --sweep" in err


def test_queue_on_depth_without_a_snapshot_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from .sim_support import TARDIS

    intents = tmp_path / "intents.csv"
    intents.write_text(
        "ts_ms,trade_id,action,asset,position_side,reason\n1723161257000,t0,ENTER,ETHUSDT,LONG,\n"
    )
    argv = ["simulate", "--fill-model", "queue", "--intents", str(intents)]
    for kind in ("quotes", "trades", "incremental_book_L2"):
        argv += ["--tardis", str(TARDIS / f"binance-futures_{kind}_2024-08-08_ETHUSDT.csv")]
    code, _, err = run(argv, capsys)
    assert code == 2
    assert "incremental_book_L2_2024-08-08_ETHUSDT.csv: depth messages but no snapshot" in err
