"""Simulator speed on a 10-million-row Binance bookTicker file (``make bench-sim``).

Writes the file (synthetic BTCUSDT, Binance USD-M bookTicker columns and header) into a
temporary directory, runs ``python -m exec_router simulate --book FILE`` end to end in a
fresh interpreter, and prints the tape events per second for each style, loading included.
Then the tape cache on that file: parse, first cached load (parse, hash, write), and the
memory-mapped reload. Last, a sweep of 27 configs × 7 synthetic days × 2 symbols (378 tasks)
on 1 and on 2 local worker processes, alternated, with the load average beside each run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

from exec_router.simulator.cache import TapeCache
from exec_router.simulator.executors import BracketPlan, Job, LocalExecutor
from exec_router.simulator.loaders import BINANCE_BOOK, load_tape
from exec_router.simulator.sources import csv_spec, synthetic_specs
from exec_router.simulator.sweep import grid_configs
from exec_router.simulator.synthetic import synthetic_tape
from exec_router.simulator.venue import Venue

GRID = {
    "style": ["maker_both"],
    "entry_ttl_s": [2.0, 4.0, 8.0],
    "offset_ticks": [0, 1, 2],
    "entry_miss": ["skip", "retry", "market"],
}


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
    parser.add_argument("--days", type=int, default=7, help="sweep: synthetic days per symbol")
    parser.add_argument("--rounds", type=int, default=3, help="sweep: runs per worker count")
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
        cmd = [sys.executable, "-m", "exec_router", "simulate", "--book", str(book), "--no-cache"]
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
        bench_cache(book, Path(tmp) / "cache", args.rows)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        bench_sweep(Path(tmp), args.days, args.rounds)


def load_avg() -> str:
    return f"load {os.getloadavg()[0]:.1f}"


def bench_cache(book: Path, root: Path, rows: int) -> None:
    """Parse vs cached reload of the same file (the through model's columns)."""
    print(f"\ntape cache, {rows:,}-row bookTicker file ({load_avg()}):")
    start = time.perf_counter()
    load_tape(str(book), sizes=False)
    parse_s = time.perf_counter() - start
    spec = csv_spec(str(book), None, "BTCUSDT", False)
    start = time.perf_counter()
    TapeCache(root).load(spec)
    first_s = time.perf_counter() - start
    reloads = []
    for _ in range(7):
        cache = TapeCache(root)
        start = time.perf_counter()
        tape = cache.load(spec)[0]
        reloads.append(time.perf_counter() - start)
        assert cache.hits == 1
        assert tape.rows == rows
    entry = next(root.glob("*.arrow"))
    reload_s = statistics.median(reloads)
    print(f"  parse (pyarrow CSV, 3 columns, checks):        {parse_s:6.2f} s")
    print(f"  first load (parse, content hash, write entry): {first_s:6.2f} s")
    print(
        f"  reload (mmap, verify checksums, mid):          {reload_s:6.3f} s median of 7 "
        f"(min {min(reloads):.3f}): {rows / reload_s / 1e6:.0f} M rows/s, "
        f"{parse_s / reload_s:.0f}x faster than parsing; entry {entry.stat().st_size / 1e6:.0f} MB"
    )


def _burn(n: int) -> int:
    total = 0
    for i in range(n):
        total += i
    return total


def calibrate(n: int = 10_000_000) -> float:
    """What a second process can gain right now: the same pure-Python loop twice, serially
    and on two processes. On a machine shared with other jobs this is well under 2."""
    import multiprocessing

    start = time.perf_counter()
    _burn(n)
    _burn(n)
    serial = time.perf_counter() - start
    with multiprocessing.get_context("forkserver").Pool(2) as pool:
        pool.map(_burn, [1, 1])
        start = time.perf_counter()
        pool.map(_burn, [n, n])
        parallel = time.perf_counter() - start
    return serial / parallel


def bench_sweep(root: Path, days: int, rounds: int) -> None:
    """27 configs × days × 2 symbols on 1 and on 2 local processes (forkserver)."""
    specs = synthetic_specs(["BTCUSDT", "ETHUSDT"], days)
    cache = TapeCache(root)
    start = time.perf_counter()
    keys = [cache.ensure(s) for s in specs]
    prep_s = time.perf_counter() - start
    configs = grid_configs({}, GRID)
    job = Job(
        tuple(specs), tuple(keys), tuple(configs), BracketPlan(), Venue("through", 50), str(root)
    )
    tasks = len(job.tasks)
    print(
        f"\nsweep: {len(configs)} configs × {days} days × 2 symbols = {tasks} tasks "
        f"(tapes generated and cached in {prep_s:.1f} s; {os.cpu_count()} cores)"
    )
    print(f"  attainable now (a CPU loop on 2 processes vs 1): {calibrate():.2f}x ({load_avg()})")
    walls: dict[int, list[float]] = {1: [], 2: []}
    first: list[object] | None = None
    for r in range(rounds):
        for workers in (1, 2):
            executor = LocalExecutor(workers)
            before = load_avg()
            start = time.perf_counter()
            results = executor.run(job, lambda i, res: None)
            executor.close()
            wall = time.perf_counter() - start
            walls[workers].append(wall)
            cpu = sum(
                max(x["process_cpu_s"] for x in results if x["pid"] == pid)
                for pid in {x["pid"] for x in results}
            )
            key = [repr(x["summary"]["costs_bps"]) for x in results]
            first = first or key
            assert key == first, "results differ between runs"
            print(
                f"  round {r + 1}, {workers} worker(s): {wall:6.1f} s wall, workers' CPU "
                f"{cpu:5.1f} s ({before} → {load_avg()})"
            )
    one, two = statistics.median(walls[1]), statistics.median(walls[2])
    print(
        f"  median: 1 worker {one:.1f} s, 2 workers {two:.1f} s: speed-up {one / two:.2f}x "
        f"(best rounds: {min(walls[1]) / min(walls[2]):.2f}x)"
    )
    print(f"  attainable after (a CPU loop on 2 processes vs 1): {calibrate():.2f}x ({load_avg()})")


if __name__ == "__main__":
    main()
