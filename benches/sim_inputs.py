"""Big synthetic inputs for ``make bench-sim``: a stream capture and a Tardis quotes file.

Both come from :func:`synthetic_tape` (BTCUSDT, 100 ms book steps, trades at the touch),
written in the layouts the simulator reads; nothing here is committed data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from exec_router.simulator.synthetic import synthetic_tape


def _text(values: Any) -> Any:
    return pc.cast(pa.array(values), pa.large_string())


def _join(*parts: Any) -> Any:
    cols = [pa.scalar(p, pa.large_string()) if isinstance(p, str) else p for p in parts]
    return pc.binary_join_element_wise(*cols, pa.scalar("", pa.large_string()))


def write_capture(path: Path, lines: int) -> int:
    """``lines`` capture lines (``<local_ns> <envelope json>``): bookTicker and trade
    messages of BTCUSDT in time order, about four book updates to a trade."""
    tape = synthetic_tape(rows=max(2, lines * 4 // 5), trades_per_s=2.5)
    n_book = tape.rows
    b_qty = tape.bid_qty if tape.bid_qty is not None else np.ones(n_book)
    a_qty = tape.ask_qty if tape.ask_qty is not None else np.ones(n_book)
    book = _join(
        _text((tape.ts - 1_000) * 1_000_000 + 123_456),
        ' {"stream":"btcusdt@bookTicker","data":{"e":"bookTicker","u":',
        _text(np.arange(n_book)),
        ',"s":"BTCUSDT","b":"',
        _text(tape.bid),
        '","B":"',
        _text(b_qty),
        '","a":"',
        _text(tape.ask),
        '","A":"',
        _text(a_qty),
        '","T":',
        _text(tape.ts),
        ',"E":',
        _text(tape.ts + 1),
        "}}\n",
    )
    trades = _join(
        _text((tape.trade_ts - 1_000) * 1_000_000 + 123_456),
        ' {"stream":"btcusdt@trade","data":{"e":"trade","E":',
        _text(tape.trade_ts + 1),
        ',"T":',
        _text(tape.trade_ts),
        ',"s":"BTCUSDT","t":',
        _text(np.arange(tape.trades)),
        ',"p":"',
        _text(tape.trade_px),
        '","q":"',
        _text(tape.trade_qty),
        '","X":"MARKET","m":',
        pa.array(np.where(tape.trade_side < 0, "true", "false"), pa.large_string()),
        "}}\n",
    )
    ts = np.concatenate([tape.ts, tape.trade_ts])
    order = np.argsort(ts, kind="stable")[:lines]
    text = pa.concat_arrays([book, trades])
    with path.open("wb") as fh:
        for lo in range(0, len(order), 1_000_000):
            part = text.take(pa.array(order[lo : lo + 1_000_000]))
            offsets = np.frombuffer(part.buffers()[1], dtype=np.int64)
            start, end = int(offsets[part.offset]), int(offsets[part.offset + len(part)])
            fh.write(memoryview(part.buffers()[2])[start:end])
    return len(order)


def write_tardis_quotes(path: Path, rows: int) -> int:
    """``rows`` Tardis ``quotes`` rows."""
    tape = synthetic_tape(rows=rows, trades_per_s=0.0)
    us = tape.ts * 1000
    n = tape.rows
    table = pa.table(
        {
            "exchange": pa.array(["binance-futures"] * n).dictionary_encode(),
            "symbol": pa.array(["BTCUSDT"] * n).dictionary_encode(),
            "timestamp": us,
            "local_timestamp": us + 1500,
            "ask_amount": tape.ask_qty,
            "ask_price": tape.ask,
            "bid_price": tape.bid,
            "bid_amount": tape.bid_qty,
        }
    )
    with path.open("wb") as fh:
        fh.write((",".join(table.column_names) + "\n").encode())
        pacsv.write_csv(table, fh, pacsv.WriteOptions(include_header=False, quoting_style="none"))
    return n
