"""Peer check of the fill models against hftbacktest 2.x (optional; not in make test).

Replays the same post-only quotes in exec-router's venue and in hftbacktest (from PyPI, in
its own venv, since it needs numba; this script runs itself there for the peer's part)::

    python3.12 -m venv .venv-peer && .venv-peer/bin/pip install hftbacktest
    .venv/bin/python benches/compare_hftbacktest.py --capture CAPTURE.gz [--peer-python P]

Quotes: every ``--every-ms`` from 2 s into the tape to 10 s before its end, BUY and SELL in
turn, at the same-side touch (every third one a tick behind it), sent at t, reaching the
venue ``--latency-ms`` later, cancelled at t + ``--ttl-ms`` (the cancel lands a latency
later). exec-router: post-only rejection, then :func:`fill_path` (``queue``, a minimal
quote). hftbacktest: ``risk_adverse_queue_model`` and ``no_partial_fill_exchange``, lot
0.001, GTX orders, a constant order latency; its feed is built from the same tape as ours:

- L1: the bookTicker rows (a level the best leaves downwards is emptied; levels left behind
  upwards keep their last size) and the trades;
- L2: exec-router's rebuilt depth levels (snapshot + diffs) and the trades.

Prints per quote: both filled / only hftbacktest / only exec-router / neither (and
rejections), and the share of common fills whose times match to the millisecond.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from exec_router.simulator.book import Levels
    from exec_router.simulator.tape import Tape

SLICE = (
    Path(__file__).resolve().parent.parent / "tests" / "data" / "ethusdt_20240808_capture_slice.gz"
)
MS = 1_000_000  # ns


def quotes(tape: Tape, every_ms: int, tick: float) -> list[tuple[int, int, float]]:
    """(send ms, side, price) of each quote."""
    out = []
    t = tape.start_ms + 2000
    k = 0
    while t < tape.end_ms - 10_000:
        i = tape.asof(t)
        side = 1 if k % 2 == 0 else -1
        behind = 1 if k % 3 == 2 else 0
        best = float(tape.bid[i] if side > 0 else tape.ask[i])
        out.append((t, side, round(best - side * behind * tick, 8)))
        t += every_ms
        k += 1
    return out


def ours(
    tape: Tape,
    levels: Levels | None,
    qs: list[tuple[int, int, float]],
    lat: int,
    ttl: int,
    eps: float,
) -> list[int | str | None]:
    from exec_router.simulator.fills import fill_path
    from exec_router.simulator.venue import Venue

    venue = Venue("queue", lat)
    got: list[int | str | None] = []
    for t, side, px in qs:
        arrive, cancel = t + lat, t + ttl + lat
        if venue.crosses(tape, side, px, arrive, eps):
            got.append("rejected")
            continue
        path = fill_path("queue", tape, side, px, arrive, cancel, eps, 0.0, levels)
        got.append(None if path is None else path.full_ms)
    return got


# hftbacktest's event flags (hftbacktest.types), so that this side needs no hftbacktest.
DEPTH_EVENT, TRADE_EVENT = 1, 2
EXCH_EVENT, LOCAL_EVENT, BUY_EVENT, SELL_EVENT = 1 << 31, 1 << 30, 1 << 29, 1 << 28
EV = np.dtype([("ev", "u8"), ("ts", "i8"), ("px", "f8"), ("qty", "f8")])


def _ev(flags: Any, ts_ms: Any, px: Any, qty: Any) -> np.ndarray:
    a = np.zeros(len(ts_ms), dtype=EV)
    a["ev"] = flags
    a["ts"] = ts_ms
    a["px"] = px
    a["qty"] = qty
    return a


def feed_l1(tape: Tape) -> np.ndarray:

    base = EXCH_EVENT | LOCAL_EVENT
    parts = []
    for side, px, qty in (
        (BUY_EVENT, tape.bid, tape.bid_qty),
        (SELL_EVENT, tape.ask, tape.ask_qty),
    ):
        assert qty is not None
        worse = np.zeros(tape.rows, dtype=bool)
        if side == BUY_EVENT:
            worse[1:] = px[1:] < px[:-1]
        else:
            worse[1:] = px[1:] > px[:-1]
        k = np.flatnonzero(worse)  # the old best level is emptied
        parts.append((tape.ts[k], 0, _ev(base | DEPTH_EVENT | side, tape.ts[k], px[k - 1], 0.0)))
        parts.append((tape.ts, 1, _ev(base | DEPTH_EVENT | side, tape.ts, px, qty)))
    parts.append(trades_part(tape))
    return merge(parts)


def trades_part(tape: Tape) -> tuple[Any, int, np.ndarray]:
    flags = (
        np.where(tape.trade_side > 0, BUY_EVENT, SELL_EVENT)
        | EXCH_EVENT
        | LOCAL_EVENT
        | TRADE_EVENT
    )
    ev = _ev(0, tape.trade_ts, tape.trade_px, tape.trade_qty)
    ev["ev"] = flags.astype(np.uint64)
    return tape.trade_ts, -1, ev  # trades before book rows at one millisecond


def feed_l2(tape: Tape, levels: Levels) -> np.ndarray:
    order = np.argsort(levels.ts, kind="stable")
    side = levels.side[order]
    flags = np.where(side > 0, BUY_EVENT, SELL_EVENT) | EXCH_EVENT | LOCAL_EVENT | DEPTH_EVENT
    ev = _ev(0, levels.ts[order], levels.px[order], levels.qty[order])
    ev["ev"] = flags.astype(np.uint64)
    return merge([(levels.ts[order], 1, ev), trades_part(tape)])


def merge(parts: list[tuple[Any, int, np.ndarray]]) -> np.ndarray:
    ts = np.concatenate([np.asarray(p[0]) for p in parts])
    rank = np.concatenate([np.full(len(p[2]), p[1]) for p in parts])
    seq = np.arange(len(ts))
    order = np.lexsort((seq, rank, ts))
    return np.concatenate([p[2] for p in parts])[order]


def peer(
    feed: np.ndarray, qs: list[tuple[int, int, float]], lat: int, ttl: int, tick: float, end_ms: int
) -> list[int | str | None]:
    """Runs in the peer's venv."""
    from hftbacktest import BacktestAsset, HashMapMarketDepthBacktest
    from hftbacktest.order import CANCELED, EXPIRED, FILLED, GTX, LIMIT, REJECTED
    from hftbacktest.types import event_dtype

    data = np.zeros(len(feed), dtype=event_dtype)
    data["ev"] = feed["ev"]
    data["exch_ts"] = feed["ts"] * MS
    data["local_ts"] = data["exch_ts"]
    data["px"] = feed["px"]
    data["qty"] = feed["qty"]

    asset = (
        BacktestAsset()
        .data([data])
        .linear_asset(1.0)
        .constant_order_latency(lat * MS, 0)
        .risk_adverse_queue_model()
        .no_partial_fill_exchange()
        .trading_value_fee_model(0.0, 0.0)
        .tick_size(tick)
        .lot_size(0.001)
    )
    hbt = HashMapMarketDepthBacktest([asset])
    hbt.elapse(1)  # the clock starts at the first event
    steps = sorted(
        [(t * MS, 0, k) for k, (t, _, _) in enumerate(qs)]
        + [((t + ttl) * MS, 1, k) for k, (t, _, _) in enumerate(qs)]
    )
    status: dict[int, Any] = {}
    for ts, kind, k in steps:
        if ts > hbt.current_timestamp:
            hbt.elapse(ts - hbt.current_timestamp)
        _, side, px = qs[k]
        if kind == 0:
            submit = hbt.submit_buy_order if side > 0 else hbt.submit_sell_order
            submit(0, k + 1, px, 0.001, GTX, LIMIT, False)
        else:
            hbt.cancel(0, k + 1, False)
        _collect(hbt, status, FILLED, (REJECTED, EXPIRED), CANCELED)
    hbt.elapse(max(0, (end_ms + 1000) * MS - hbt.current_timestamp))
    _collect(hbt, status, FILLED, (REJECTED, EXPIRED), CANCELED)
    hbt.close()
    return [status.get(k + 1) for k in range(len(qs))]


def _collect(
    hbt: Any, status: dict[int, Any], filled: int, rejected: tuple[int, int], canceled: int
) -> None:
    values = hbt.orders(0).values()
    while values.has_next():
        o = values.get()
        if os.environ.get("PEER_DEBUG"):
            print(
                "peer",
                o.order_id,
                o.status,
                o.exch_timestamp,
                o.local_timestamp,
                hbt.current_timestamp,
            )
        if o.status == filled:
            status[o.order_id] = int(o.exch_timestamp // MS)
        elif o.status in rejected:
            status[o.order_id] = "rejected"
        elif o.status == canceled:
            status.setdefault(o.order_id, None)
    hbt.clear_inactive_orders(0)


def compare(label: str, a: list[int | str | None], b: list[int | str | None]) -> None:
    if os.environ.get("PEER_DEBUG"):
        for k, (x, y) in enumerate(zip(a, b, strict=True)):
            print(k, x, y)
    c: Counter[str] = Counter()
    same_ms = 0
    for x, y in zip(a, b, strict=True):
        fx, fy = isinstance(x, int), isinstance(y, int)
        if x == "rejected" or y == "rejected":
            c["rejected by both" if x == y else "rejected by one"] += 1
        elif fx and fy:
            c["both fill"] += 1
            same_ms += x == y
        elif fy:
            c["only hftbacktest fills"] += 1
        elif fx:
            c["only exec-router fills"] += 1
        else:
            c["neither fills"] += 1
    n = len(a)
    agree = c["both fill"] + c["neither fills"] + c["rejected by both"]
    both = c["both fill"]
    print(f"{label}: {n} quotes")
    for key in (
        "both fill",
        "only hftbacktest fills",
        "only exec-router fills",
        "neither fills",
        "rejected by both",
        "rejected by one",
    ):
        print(f"  {key:<24} {c[key]:5d}")
    print(
        f"  agreement {agree / n:.2%}; fill times equal to the ms on {same_ms}/{both} "
        f"common fills ({same_ms / max(both, 1):.1%})"
    )


def run_peer(
    python: str,
    feed: np.ndarray,
    qs: list[tuple[int, int, float]],
    args: argparse.Namespace,
    end_ms: int,
) -> list[int | str | None]:
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "in.npz", Path(tmp) / "out.npy"
        np.savez(src, feed=feed, quotes=np.array(qs, dtype=np.float64))
        cmd = [
            python,
            __file__,
            "--peer-part",
            str(src),
            "--out",
            str(out),
            "--end-ms",
            str(end_ms),
        ]
        cmd += [
            "--ttl-ms",
            str(args.ttl_ms),
            "--latency-ms",
            str(args.latency_ms),
            "--tick",
            str(args.tick),
        ]
        subprocess.run(cmd, check=True)
        got = np.load(out)
    return [None if v == -1 else "rejected" if v == -2 else int(v) for v in got.tolist()]


def peer_part(args: argparse.Namespace) -> None:
    z = np.load(args.peer_part)
    qs = [(int(t), int(s), float(p)) for t, s, p in z["quotes"].tolist()]
    got = peer(z["feed"], qs, args.latency_ms, args.ttl_ms, args.tick, args.end_ms)
    codes = [-1 if v is None else -2 if v == "rejected" else int(v) for v in got]
    np.save(args.out, np.array(codes, dtype=np.int64))


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--capture", type=Path, default=SLICE)
    p.add_argument("--every-ms", type=int, default=500)
    p.add_argument("--ttl-ms", type=int, default=8000)
    p.add_argument("--latency-ms", type=int, default=50)
    p.add_argument("--tick", type=float, default=0.01)
    p.add_argument(
        "--peer-python",
        default=str(Path(__file__).resolve().parent.parent / ".venv-peer" / "bin" / "python"),
    )
    p.add_argument("--peer-part", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--end-ms", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.peer_part:
        peer_part(args)
        return
    from exec_router.simulator import load_capture
    from exec_router.simulator.book import levels_of
    from exec_router.simulator.market import assemble

    market = assemble(load_capture(str(args.capture)))
    sym = market.symbols[0]
    tape = market.tapes[sym]
    eps = args.tick * 0.01
    qs = quotes(tape, args.every_ms, args.tick)
    lat, ttl = args.latency_ms, args.ttl_ms
    l1 = ours(tape, None, qs, lat, ttl, eps)
    compare(
        f"{sym} L1 (bookTicker + trades), queue vs risk-averse",
        l1,
        run_peer(args.peer_python, feed_l1(tape), qs, args, tape.end_ms),
    )
    depth = market.depth.get(sym)
    if depth is not None and depth.messages:
        levels = levels_of(depth)
        l2 = ours(tape, levels, qs, lat, ttl, eps)
        compare(
            f"{sym} L2 (depth + trades), queue vs risk-averse",
            l2,
            run_peer(args.peer_python, feed_l2(tape, levels), qs, args, tape.end_ms),
        )


if __name__ == "__main__":
    main()
