"""Simulator speed (``make bench-sim``): a 10-million-line stream capture, a 10-million-row
Tardis quotes file and a 10-million-row Binance bookTicker file, then a 27-config sweep.

Each file is synthetic BTCUSDT (see ``sim_inputs.py``), written into a temporary directory.
Each run is ``python -m exec_router simulate`` end to end in a fresh interpreter; printed:
lines per second for one style with loading included, the peak RSS of the process against
the budget (2.5 x the columns held + 200 MB), and the bytes held per event.
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

sys.path.insert(0, str(Path(__file__).parent))
from sim_inputs import write_capture, write_tardis_quotes

#: Runs the CLI, then prints the process's peak RSS (KiB) and CPU seconds (user + system)
#: as the last stderr line. VmHWM, not ru_maxrss: Linux carries ru_maxrss over an exec.
_WITH_RSS = (
    "import resource, sys\n"
    "from exec_router.__main__ import main\n"
    "code = main(sys.argv[1:])\n"
    "with open('/proc/self/status') as fh:\n"
    "    hwm = next(ln for ln in fh if ln.startswith('VmHWM:'))\n"
    "ru = resource.getrusage(resource.RUSAGE_SELF)\n"
    "print(hwm.split()[1], ru.ru_utime + ru.ru_stime, file=sys.stderr)\n"
    "sys.exit(code)\n"
)


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


def one_style(label: str, flag: str, path: Path, lines: int, tmp: str) -> None:
    """``simulate FLAG PATH --styles maker_both``: lines/s end to end, peak RSS, bytes/event."""
    out = Path(tmp) / "result.json"
    cmd = [sys.executable, "-c", _WITH_RSS, "simulate", flag, str(path)]
    cmd += ["--styles", "maker_both", "--json", str(out), "--no-progress"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if proc.returncode:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr}")
    hwm, cpu = proc.stderr.strip().splitlines()[-1].split()
    rss_mb, cpu_s = int(hwm) / 1024, float(cpu)
    result = json.loads(out.read_text())
    load_s = result["timing"]["load_seconds"]
    sim_s = result["styles"]["maker_both"]["sim_seconds"]
    cols_mb = result["tape"]["columns_bytes"] / 1e6
    budget = 2.5 * cols_mb + 200
    print(
        f"{label}: {lines:,} lines ({path.stat().st_size / 1e6:.0f} MB), loaded in {load_s:.2f} s, "
        f"maker_both in {sim_s:.2f} s: {lines / (load_s + sim_s) / 1e6:.2f} M lines/s end to "
        f"end; whole process {lines / wall / 1e6:.2f} M lines/s (wall {wall:.2f} s, "
        f"CPU {cpu_s:.2f} s on {os.cpu_count()} cores: {os.getloadavg()[0]:.1f} load average)"
    )
    print(
        f"  peak RSS {rss_mb:.0f} MB, budget {budget:.0f} MB (2.5 x {cols_mb:.0f} MB of columns "
        f"+ 200 MB): {'within' if rss_mb <= budget else 'OVER'}; "
        f"{result['tape']['bytes_per_event']:.0f} bytes per event"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--dir", help="where to write the file (default: a temporary dir)")
    parser.add_argument(
        "--only", choices=("capture", "tardis", "book", "sweep"), help="run one part only"
    )
    args = parser.parse_args()
    for part, flag, writer, name in (
        ("capture", "--capture", write_capture, "capture.txt"),
        ("tardis", "--tardis", write_tardis_quotes, "quotes.csv"),
    ):
        if args.only not in (None, part):
            continue
        with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
            path = Path(tmp) / name
            start = time.perf_counter()
            lines = writer(path, args.rows)
            print(f"wrote {lines:,} {part} lines in {time.perf_counter() - start:.1f} s")
            one_style(part, flag, path, lines, tmp)
    if args.only in (None, "book"):
        book_file(args.rows, args.dir)
    if args.only in (None, "sweep"):
        sweep()


def book_file(rows: int, folder: str | None) -> None:
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        book = Path(tmp) / "BTCUSDT-bookTicker.csv"
        start = time.perf_counter()
        write_book_ticker(book, rows)
        size = book.stat().st_size
        print(f"wrote {rows:,} rows ({size / 1e6:.0f} MB) in {time.perf_counter() - start:.1f} s")
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "exec_router", "simulate", "--book", str(book)]
        cmd += ["--symbol", "BTCUSDT"]
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


def sweep() -> None:
    grid = [
        "--sweep",
        "entry_ttl_s=2,4,8",
        "offset_ticks=0,1,2",
        "entry_miss=skip,retry,market",
    ]
    wall, stdout = run([sys.executable, "-m", "exec_router", "simulate", *grid, "--no-progress"])
    line = next((ln for ln in stdout.splitlines() if ln.startswith("Sweep:")), "")
    print(f"27-config sweep on {os.cpu_count()} cores: wall {wall:.1f} s. {line}")


if __name__ == "__main__":
    main()
