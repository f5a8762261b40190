"""A deterministic synthetic BTCUSDT-like tape: no network, same seed, same tape."""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Callable

import numpy as np

from .tape import F64, I64, Tape

#: 2023-11-15 00:00:00 UTC, so the default tape looks like a real day.
DEFAULT_START_MS = 1_700_006_400_000


def synthetic_tape(
    *,
    seed: int = 7,
    hours: float = 24.0,
    step_ms: int = 100,
    rows: int | None = None,
    price: float = 65_000.0,
    tick: float = 0.1,
    daily_vol: float = 0.02,
    momentum: float = 0.3,
    trades_per_s: float = 6.0,
    symbol: str = "BTCUSDT",
    start_ms: int = DEFAULT_START_MS,
) -> Tape:
    """Top of book every ``step_ms`` plus aggressor trades consistent with it.

    - The mid is a random walk with fat tails, volatility regimes (minute by minute) and
      short-term momentum (AR(1) returns), so resting quotes see adverse selection.
    - The spread is one tick most of the time and widens with volatility.
    - Trades print at the touch; when a side of the book is swept, prints run through the
      consumed levels, the last one at the new touch.
    """
    rng = np.random.default_rng(seed)
    n = rows if rows is not None else round(hours * 3_600_000 / step_ms)
    if n < 2:
        raise ValueError("a synthetic tape needs at least two rows")
    steps_per_day = 86_400_000 / step_ms
    jump_p = 0.15  # most 100 ms steps leave the mid where it was
    per_jump = daily_vol / math.sqrt(steps_per_day * jump_p) * (1.0 - momentum)

    # Volatility regime per minute: log-AR(1), then held for the minute.
    per_min = max(1, round(60_000 / step_ms))
    minutes = n // per_min + 1
    shocks = rng.standard_normal(minutes)
    log_vol = np.empty(minutes)
    level = 0.0
    for i in range(minutes):  # ~1,440 iterations a day
        level = 0.97 * level + 0.25 * shocks[i]
        log_vol[i] = level
    vol = np.exp(log_vol - 0.5 * np.var(log_vol))
    vol_step = np.repeat(vol, per_min)[:n]

    jumps = rng.random(n) < jump_p * np.minimum(vol_step, 1.0 / jump_p)
    noise = np.zeros(n)
    noise[jumps] = rng.standard_t(4, int(jumps.sum())) / math.sqrt(2.0) * per_jump
    returns = np.convolve(noise, momentum ** np.arange(24))[:n]
    returns[0] = 0.0
    mid_ticks = price * np.exp(np.cumsum(returns)) / tick

    extra = rng.geometric(0.85, n) - 1
    spread_ticks = 1 + (extra * np.maximum(vol_step, 0.5)).astype(np.int64)
    bid_t = np.floor(mid_ticks - spread_ticks * 0.5 + 0.5).astype(np.int64)
    ask_t = bid_t + spread_ticks

    to_price = _price_scaler(tick)
    ts = start_ms + np.arange(n, dtype=np.int64) * step_ms

    # Trades happen between row i-1 and row i (i >= 1).
    lam = trades_per_s * step_ms / 1000.0
    moved_down = bid_t[1:] < bid_t[:-1]
    moved_up = ask_t[1:] > ask_t[:-1]
    counts = rng.poisson(lam, n - 1) + moved_down + moved_up
    step = np.repeat(np.arange(1, n), counts)
    m = len(step)
    prev = step - 1
    drift = np.sign(mid_ticks[step] - mid_ticks[prev])
    sell = rng.random(m) < 0.5 + 0.35 * drift
    # The first trade of a step that swept a side is the sweep, printing at the new touch.
    first = np.ones(m, dtype=bool)
    first[1:] = step[1:] != step[:-1]
    down, up = moved_down[prev], moved_up[prev]
    sell[first & down] = True
    sell[first & up & ~down] = False
    u = rng.random(m)
    bid_new, bid_old = bid_t[step], bid_t[prev]
    ask_new, ask_old = ask_t[step], ask_t[prev]
    # Sells print between the new and the old bid, buys between the old and the new ask.
    sell_span = np.maximum(bid_old - bid_new, 0)
    buy_span = np.maximum(ask_new - ask_old, 0)
    trade_t = np.where(
        sell,
        bid_old - np.where(first, sell_span, (u * (sell_span + 1)).astype(np.int64)),
        ask_old + np.where(first, buy_span, (u * (buy_span + 1)).astype(np.int64)),
    )
    offset = np.where(first, step_ms, rng.integers(1, step_ms + 1, m))
    trade_ts = ts[prev] + offset
    order = np.argsort(trade_ts, kind="stable")
    return Tape(
        ts=ts,
        bid=to_price(bid_t),
        ask=to_price(ask_t),
        bid_qty=_round3(rng.lognormal(1.0, 1.0, n)),
        ask_qty=_round3(rng.lognormal(1.0, 1.0, n)),
        trade_ts=trade_ts[order],
        trade_px=to_price(trade_t[order]),
        trade_qty=_round3(rng.lognormal(-2.5, 1.2, m)[order]),
        trade_side=np.where(sell[order], -1, 1).astype(np.int8),
        symbol=symbol,
        source=f"synthetic(seed={seed})",
    )


def _round3(x: F64) -> F64:
    """Sizes with three decimals, as the venue prints them (integer / 1000 is exact)."""
    return np.rint(x * 1000.0) / 1000.0


def _price_scaler(tick: float) -> Callable[[I64], F64]:
    """Ticks to prices without float noise: 650001 / 10 is exactly the double of 65000.1."""
    per_unit = 1.0 / tick
    if abs(per_unit - round(per_unit)) < 1e-9:
        scale = float(round(per_unit))
        return lambda t: t / scale
    decimals = max(0, -math.floor(math.log10(tick) + 1e-9)) + 1
    return lambda t: np.round(t * tick, decimals)


def shifted_capture_line(line: str, symbol: str, dt_ms: int = 0, dprice: float = 0.0) -> str:
    """One capture line (``<ts_ns> <json>`` or bare JSON) as another, synthetic symbol:
    times ``dt_ms`` later, prices ``dprice`` lower (tick-aligned to 0.01), update ids moved
    by 10**9 so that its depth chain is its own."""
    local, sep, text = line.partition(" ") if not line.startswith("{") else ("", "", line)
    msg = json.loads(text)
    data = msg.get("data", msg)
    for key in ("T", "E"):
        if key in data:
            data[key] += dt_ms
    for key in ("U", "u", "pu", "lastUpdateId"):
        if key in data:
            data[key] += 10**9
    if "s" in data:
        data["s"] = symbol
    for key in ("b", "a", "p"):
        if isinstance(data.get(key), str):
            data[key] = f"{float(data[key]) - dprice:.2f}"
    for key in ("b", "a", "bids", "asks"):
        if isinstance(data.get(key), list):
            data[key] = [[f"{max(float(p) - dprice, 0.01):.2f}", q] for p, q in data[key]]
    if isinstance(msg.get("stream"), str):
        msg["stream"] = symbol.lower() + "@" + msg["stream"].partition("@")[2]
    out = json.dumps(msg, separators=(",", ":"))
    return f"{int(local) + dt_ms * 1_000_000} {out}" if sep else out


def shifted_capture(
    src: str, dst: str, symbol: str, *, dt_ms: int = 0, dprice: float = 0.0
) -> None:
    """Write ``src`` (a capture of one symbol, plain or gzip) to ``dst`` (gzip) as ``symbol``:
    a second symbol for multi-symbol runs. See :func:`shifted_capture_line`."""
    opener = gzip.open if src.endswith(".gz") else open
    with opener(src, "rt", encoding="utf-8") as fin, gzip.open(dst, "wt") as fout:
        for line in fin:
            line = line.strip()
            if line:
                fout.write(shifted_capture_line(line, symbol, dt_ms, dprice) + "\n")
