"""Helpers for the simulator tests: hand-made tapes and one-call simulations."""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from exec_router import ExecConfig, ExecutionRouter
from exec_router.simulator import (
    EntryIntent,
    ExitIntent,
    IntentList,
    Simulation,
    StyleRun,
    Tape,
    Venue,
    summarize,
)
from exec_router.simulator.synthetic import shifted_capture, shifted_capture_line

HOOKED = ("on_working", "on_fill", "on_cancel", "on_miss", "on_escalate")


def make_tape(
    rows: Sequence[tuple[float, ...]],
    trades: Sequence[tuple[int, float, float, int]] = (),
    symbol: str = "BTCUSDT",
) -> Tape:
    """Rows ``(ts_ms, bid, ask[, bid_qty, ask_qty])``; trades ``(ts_ms, price, qty, side)``."""
    arr = np.array(rows, dtype=np.float64)
    sized = arr.shape[1] == 5
    t = np.array(trades, dtype=np.float64).reshape(-1, 4)
    return Tape(
        ts=arr[:, 0].astype(np.int64),
        bid=arr[:, 1].copy(),
        ask=arr[:, 2].copy(),
        bid_qty=arr[:, 3].copy() if sized else None,
        ask_qty=arr[:, 4].copy() if sized else None,
        trade_ts=t[:, 0].astype(np.int64),
        trade_px=t[:, 1].copy(),
        trade_qty=t[:, 2].copy(),
        trade_side=t[:, 3].astype(np.int8),
        symbol=symbol,
    )


class Recorder:
    """Records the router's hook calls: which API steps the simulated runtime took."""

    def __init__(self, router: Any) -> None:
        self.calls: list[tuple[str, Any]] = []
        for stage in HOOKED:
            router.register_hook(stage, self._hook(stage))

    def _hook(self, stage: str) -> Any:
        def hook(wo: Any, ctx: dict[str, Any]) -> None:
            self.calls.append((stage, wo.trade_id))

        return hook


def simulate_case(
    tape: Tape,
    style: str,
    entries: Sequence[tuple[int, str, str]],
    exits: Sequence[tuple[int, str, str]] = (),
    *,
    impl: Any = None,
    fill_model: str = "through",
    latency_ms: int = 0,
    clock_log: list[float] | None = None,
    qty: tuple[tuple[str, float], ...] = (),
    **config: Any,
) -> tuple[Simulation, dict[str, Any], Recorder]:
    """Run intents ``(ts, trade_id, LONG|SHORT)`` / exits ``(ts, trade_id, reason)``.

    ``clock_log`` collects every clock value the router reads.
    """
    strategy = IntentList(
        [EntryIntent(ts, tid, tape.symbol, side) for ts, tid, side in entries],
        [ExitIntent(ts, tid, reason) for ts, tid, reason in exits],
    )
    venue = Venue(fill_model=fill_model, latency_ms=latency_ms, qty=qty)
    router_cls = ExecutionRouter if impl is None else impl.ExecutionRouter
    if clock_log is not None:
        router_cls = partial(_logged_router, router_cls, clock_log)
    sim = Simulation(
        tape, ExecConfig(style=style, **config), strategy, venue, router_cls=router_cls
    )
    recorder = Recorder(sim.router)
    sim.run()
    run = StyleRun(sim.config, sim.trades, dict(sim.router.counters))
    return sim, summarize(run, tape, venue), recorder


def _logged_router(cls: Any, log: list[float], config: ExecConfig, clock: Any) -> Any:
    def logged() -> float:
        log.append(clock())
        return log[-1]

    return cls(config, clock=logged)


DATA = Path(__file__).parent.parent / "data"
CAPTURE = DATA / "ethusdt_20240808_capture_slice.gz"
BOOK_CSV = DATA / "ETHUSDT-bookTicker-2024-08-08.csv.gz"
TRADES_CSV = DATA / "ETHUSDT-aggTrades-2024-08-08.csv.gz"
TARDIS = DATA / "tardis"


def capture_lines() -> list[str]:
    """The real capture slice, one string per line."""
    with gzip.open(CAPTURE, "rt") as fh:
        return fh.read().splitlines()


def shifted_line(line: str, symbol: str, dt_ms: int, dprice: float) -> str:
    return shifted_capture_line(line, symbol, dt_ms, dprice)


def write_shifted_capture(
    path: Path, symbol: str = "XETHUSDT", dt_ms: int = 0, dprice: float = 1000.0
) -> Path:
    """The capture slice as a second symbol (gzip)."""
    shifted_capture(str(CAPTURE), str(path), symbol, dt_ms=dt_ms, dprice=dprice)
    return path
