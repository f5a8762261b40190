"""Helpers for the sweep tests: a small job of configs × synthetic tapes, comparable results."""

from __future__ import annotations

from typing import Any

import numpy as np

from exec_router import ExecConfig
from exec_router.simulator.cache import TapeCache
from exec_router.simulator.executors import BracketPlan, Job
from exec_router.simulator.sources import synthetic_specs
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
