"""Simulator speed per fill model (``python benches/bench_fill_models.py``; not in make test).

Top of book: writes a synthetic BTCUSDT day (or more, ``--rows``) as a Binance bookTicker
file and an aggTrades file, then runs ``simulate --book B --trades T --no-cache --styles
maker_both --fill-model M`` in a fresh interpreter for every model, and prints the tape
events per second per style end to end (loading included) and of the simulation alone,
with the CPU seconds (user + system) of the whole process: on a shared machine the figure
that moves least with the load.
With depth: ``simulate --capture FILE`` (bookTicker, trades, depth and the REST snapshot)
under ``queue`` (the L2 book is rebuilt and drives the queue) and ``through`` (no book).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from exec_router.simulator.loaders import BINANCE_BOOK, BINANCE_TRADES
from exec_router.simulator.options import BY_OPTIMISM
from exec_router.simulator.synthetic import synthetic_tape

HERE = Path(__file__).resolve().parent
SLICE = HERE.parent / "tests" / "data" / "ethusdt_20240808_capture_slice.gz"


def write_files(root: Path, rows: int) -> tuple[Path, Path, int]:
    tape = synthetic_tape(rows=rows)
    book, trades = (
        root / "BTCUSDT-bookTicker-2024-03-01.csv",
        root / "BTCUSDT-aggTrades-2024-03-01.csv",
    )
    n, m = tape.rows, tape.trades
    b = pa.table(
        {
            "update_id": pa.array(np.arange(n, dtype=np.int64) + 7_000_000_000_000),
            "best_bid_price": tape.bid,
            "best_bid_qty": tape.bid_qty,
            "best_ask_price": tape.ask,
            "best_ask_qty": tape.ask_qty,
            "transaction_time": tape.ts,
            "event_time": tape.ts + 3,
        }
    )
    ids = np.arange(m, dtype=np.int64) + 1_000_000
    t = pa.table(
        {
            "agg_trade_id": ids,
            "price": tape.trade_px,
            "quantity": tape.trade_qty,
            "first_trade_id": ids,
            "last_trade_id": ids,
            "transact_time": tape.trade_ts,
            "is_buyer_maker": pa.array(tape.trade_side < 0),
        }
    )
    for path, table, header in ((book, b, BINANCE_BOOK), (trades, t, BINANCE_TRADES)):
        with path.open("wb") as fh:
            fh.write((",".join(header) + "\n").encode())
            opts = pacsv.WriteOptions(include_header=False, quoting_style="none")
            pacsv.write_csv(table, fh, opts)
    return book, trades, n + m


def simulate(args: list[str], out: Path, env: dict[str, str] | None = None) -> dict:
    cmd = [sys.executable, "-m", "exec_router", "simulate", *args]
    cmd += ["--styles", "maker_both", "--json", str(out), "--no-progress"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr}")
    result = json.loads(out.read_text())
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    result["process_cpu_seconds"] = cpu  # the whole process, interpreter start included
    return result


def report(label: str, result: dict) -> None:
    events = result["timing"]["events"]
    load_s = result["timing"]["load_seconds"]
    style = result["styles"]["maker_both"]
    sim_s = style["sim_seconds"]
    fills = style["markouts_bps"]["maker_fills"]
    print(
        f"  {label:<24} load {load_s:6.2f} s, maker_both {sim_s:6.3f} s ({fills} maker fills): "
        f"{events / (load_s + sim_s) / 1e6:5.2f} M events/s end to end, "
        f"{events / sim_s / 1e6:7.1f} M events/s simulated; process CPU "
        f"{result['process_cpu_seconds']:.2f} s; load average {os.getloadavg()[0]:.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=5_000_000, help="book rows to write")
    parser.add_argument("--capture", type=Path, default=SLICE, help="a capture with depth")
    parser.add_argument("--models", default=",".join(BY_OPTIMISM), help="fill models to time")
    parser.add_argument(
        "--baseline",
        type=Path,
        help="also time this checkout's python/ (e.g. the previous commit, with the same "
        "native module), alternated with this one, for the models it knows",
    )
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        book, trades, events = write_files(root, args.rows)
        print(f"Top of book: {events:,} events (bookTicker + aggTrades), synthetic BTCUSDT")
        for _ in range(args.rounds):
            for model in args.models.split(","):
                cmd = ["--book", str(book), "--trades", str(trades), "--no-cache"]
                cmd += ["--fill-model", model]
                report(model, simulate(cmd, root / "out.json"))
                if args.baseline is not None and model != "print":
                    env = {**os.environ, "PYTHONPATH": str(args.baseline)}
                    report(f"{model} (baseline)", simulate(cmd, root / "out.json", env))
        if args.capture is None or not args.capture.exists():
            return
        print(f"With depth: {args.capture}")
        for model in ("queue", "through"):
            cmd = ["--capture", str(args.capture), "--fill-model", model, "--every-s", "10"]
            cmd += ["--max-hold-s", "20"]
            report(f"{model} (L2)" if model == "queue" else model, simulate(cmd, root / "out.json"))


if __name__ == "__main__":
    main()
