"""Simulator speed on a 10-million-row Binance bookTicker file (``make bench-sim``).

Writes the file (synthetic BTCUSDT, Binance USD-M bookTicker columns and header) into a
temporary directory, runs ``python -m exec_router simulate --book FILE`` end to end in a
fresh interpreter, and prints the tape events per second for each style, loading included.
Then times a 27-config sweep over the default synthetic day.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

from exec_router.simulator.loaders import BINANCE_BOOK
from exec_router.simulator.synthetic import synthetic_tape


def write_book_ticker(path: Path, rows: int) -> None:
    tape = synthetic_tape(rows=rows, trades_per_s=0.0)
    n = tape.rows
    table = pa.table(
        {
            "update_id": pa.array(range(7_000_000_000_000, 7_000_000_000_000 + n), pa.int64()),
            "best_bid_price": tape.bid,
            "best_bid_qty": tape.bid_qty,
            "best_ask_price": tape.ask,
            "best_ask_qty": tape.ask_qty,
            "transaction_time": tape.ts,
            "event_time": tape.ts + 3,
        }
    )
    with path.open("wb") as fh:
        fh.write((",".join(BINANCE_BOOK) + "\n").encode())
        pacsv.write_csv(table, fh, pacsv.WriteOptions(include_header=False, quoting_style="none"))


def run(cmd: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    took = time.perf_counter() - start
    if proc.returncode:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr}")
    return took, proc.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--dir", help="where to write the file (default: a temporary dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        book = Path(tmp) / "BTCUSDT-bookTicker.csv"
        start = time.perf_counter()
        write_book_ticker(book, args.rows)
        size = book.stat().st_size
        print(
            f"wrote {args.rows:,} rows ({size / 1e6:.0f} MB) in {time.perf_counter() - start:.1f} s"
        )
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "exec_router", "simulate", "--book", str(book)]
        wall, _ = run([*cmd, "--json", str(out), "--no-progress"])
        result = json.loads(out.read_text())
        load_s = result["timing"]["load_seconds"]
        events = result["timing"]["events"]
        print(f"simulate --book: {events:,} events, loaded in {load_s:.2f} s, wall {wall:.2f} s")
        for style, s in result["styles"].items():
            rate = s["events_per_s_end_to_end"]
            print(f"  {style:12s} sim {s['sim_seconds']:.2f} s  {rate / 1e6:.2f} M events/s")
        rates = [s["events_per_s_end_to_end"] for s in result["styles"].values()]
        total = (
            events
            * len(rates)
            / (load_s + sum(s["sim_seconds"] for s in result["styles"].values()))
        )
        print(f"  all styles: {total / 1e6:.2f} M events/s (tape loaded once)")
        print(f"  whole process incl. interpreter start: {events / wall / 1e6:.2f} M events/s")
    sweep = [
        "--sweep",
        "entry_ttl_s=2,4,8",
        "offset_ticks=0,1,2",
        "entry_miss=skip,retry,market",
    ]
    wall, stdout = run([sys.executable, "-m", "exec_router", "simulate", *sweep, "--no-progress"])
    line = next((ln for ln in stdout.splitlines() if ln.startswith("Sweep:")), "")
    print(f"27-config sweep on {os.cpu_count()} cores: wall {wall:.1f} s. {line}")


if __name__ == "__main__":
    main()
