"""Rebuild the files in tests/data from the shared real capture (run by hand, not by tests).

    python tests/data/make_data.py /path/to/shared/data

Keeps the first SECONDS of exchange time of the hftbacktest ETHUSDT capture (see README.md)
and its Binance public-data CSVs, and writes small Tardis.dev-layout files from that slice.
"""

from __future__ import annotations

import csv
import gzip
import json
import sys
from pathlib import Path

SECONDS = 20
HERE = Path(__file__).parent


def main(shared: Path) -> None:
    with gzip.open(shared / "ethusdt_20240808_capture.gz", "rt") as fh:
        lines = fh.read().splitlines()
    first = None
    kept = []
    for line in lines:
        _, js = line.split(" ", 1)
        msg = json.loads(js)
        data = msg.get("data", msg)
        t = data.get("T") or data.get("E")
        first = first or t
        if t - first > SECONDS * 1000:
            break
        kept.append(line)
    with gzip.open(HERE / "ethusdt_20240808_capture_slice.gz", "wt") as fh:
        fh.write("\n".join(kept) + "\n")
    end = first + SECONDS * 1000
    for kind, col in (("bookTicker", 5), ("aggTrades", 5)):
        src = shared / f"ETHUSDT-{kind}-20240808.csv.gz"
        with gzip.open(src, "rt") as fh:
            rows = list(csv.reader(fh))
        head, body = rows[0], rows[1:]
        body = [r for r in body if int(r[col]) <= end]
        with gzip.open(HERE / f"ETHUSDT-{kind}-2024-08-08.csv.gz", "wt", newline="") as fh:
            csv.writer(fh, lineterminator="\n").writerows([head, *body])
    tardis(kept)


def tardis(lines: list[str]) -> None:
    """The slice in Tardis layouts: µs times, the first few hundred messages of each kind."""
    quotes, trades, l2 = [], [], []
    for line in lines:
        local_ns, js = line.split(" ", 1)
        local_us = int(local_ns) // 1000
        d = json.loads(js)
        d = d.get("data", d)
        head = ["binance-futures", "ETHUSDT", d.get("T", d.get("E")) * 1000, local_us]
        if d.get("e") == "bookTicker" and len(quotes) < 300:
            quotes.append([*head, d["A"], d["a"], d["b"], d["B"]])
        elif d.get("e") == "trade" and len(trades) < 100:
            trades.append([*head, d["t"], "sell" if d["m"] else "buy", d["p"], d["q"]])
        elif d.get("e") == "depthUpdate" and len(l2) < 300:
            for side, key in (("bid", "b"), ("ask", "a")):
                l2 += [[*head, "false", side, p, q] for p, q in d[key][:5]]
    out = HERE / "tardis"
    out.mkdir(exist_ok=True)
    cols = ["exchange", "symbol", "timestamp", "local_timestamp"]
    files = {
        "binance-futures_quotes_2024-08-08_ETHUSDT.csv": (
            [*cols, "ask_amount", "ask_price", "bid_price", "bid_amount"],
            quotes,
        ),
        "binance-futures_trades_2024-08-08_ETHUSDT.csv": (
            [*cols, "id", "side", "price", "amount"],
            trades,
        ),
        "binance-futures_incremental_book_L2_2024-08-08_ETHUSDT.csv": (
            [*cols, "is_snapshot", "side", "price", "amount"],
            l2,
        ),
    }
    for name, (header, rows) in files.items():
        with (out / name).open("w", newline="") as fh:
            csv.writer(fh, lineterminator="\n").writerows([header, *rows])


if __name__ == "__main__":
    main(Path(sys.argv[1]))
