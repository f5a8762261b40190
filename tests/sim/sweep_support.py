"""Helpers for the sweep tests: a small job of configs × synthetic tapes, comparable results,
and the tasks of a sweep over input files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from exec_router import ExecConfig
from exec_router.simulator.cache import TapeCache
from exec_router.simulator.cli import _sweep_inputs
from exec_router.simulator.executors import BracketPlan, IntentPlan, Job, SerialExecutor
from exec_router.simulator.loaders import load_intents
from exec_router.simulator.options import build_parser
from exec_router.simulator.sources import synthetic_specs
from exec_router.simulator.sweep import grid_configs, parse_grid
from exec_router.simulator.venue import Venue


def small_job(
    cache: TapeCache, *, days: int = 2, hours: float = 0.5, configs: int = 2, every_s: float = 60
) -> Job:
    specs = synthetic_specs(["BTCUSDT", "ETHUSDT"], days, hours=hours)
    keys = [cache.ensure(s) for s in specs]
    grid = [
        ExecConfig(style="maker_both", entry_ttl_s=ttl, offset_ticks=off)
        for ttl in (2.0, 8.0)
        for off in (0, 1)
    ][:configs]
    return Job(
        tuple(specs),
        tuple(keys),
        tuple(grid),
        BracketPlan(every_s=every_s),
        Venue("through", 50),
        str(cache.root),
    )


def comparable(results: list[dict[str, Any]]) -> list[Any]:
    """Everything a task returns except where and how long it ran."""
    out = []
    for r in results:
        summary = {k: v for k, v in r["summary"].items() if k != "sim_seconds"}
        out.append(
            (
                r["unit"],
                r["config_index"],
                r["tape"],
                r["config"],
                repr(summary),
                np.asarray(r["cost"]).tobytes(),
                np.asarray(r["trip"]).tobytes(),
            )
        )
    return out


def intents(path: Path, rows: list[tuple[int, str, str, str, str]]) -> str:
    """rows: (ts_ms, trade_id, action, asset, side); exits are MAX_HOLD."""
    lines = ["ts_ms,trade_id,action,asset,position_side,reason"]
    for ts, tid, action, asset, side in sorted(rows):
        lines.append(f"{ts},{tid},{action},{asset},{side},{'MAX_HOLD' if action == 'EXIT' else ''}")
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def round_trip(start: int, tid: str, asset: str, side: str, hold_ms: int) -> list[Any]:
    return [(start, tid, "ENTER", asset, side), (start + hold_ms, tid, "EXIT", asset, side)]


def sweep_tasks(argv: list[str], executor: Any = None) -> tuple[list[Any], list[dict[str, Any]]]:
    """Run ``simulate ARGV --sweep ...`` as the command does, returning every task's result."""
    args = build_parser().parse_args(["simulate", *argv])
    specs, ticks = _sweep_inputs(args, args.cache_dir)
    base = {"tick_overrides": ticks} if ticks else {}
    grid = parse_grid(args.sweep)
    grid = {"style": args.styles.split(","), **grid}
    configs = grid_configs(base, grid)
    cache = TapeCache(Path(args.cache_dir))
    keys = tuple(cache.ensure(s) for s in specs)
    job = Job(
        tuple(specs),
        keys,
        tuple(configs),
        IntentPlan(load_intents(args.intents)),
        Venue(args.fill_model, args.latency_ms, args.maker_fee_bps, args.taker_fee_bps),
        str(cache.root),
    )
    ex = executor or SerialExecutor()
    try:
        return specs, ex.run(job, lambda i, r: None)
    finally:
        ex.close()
