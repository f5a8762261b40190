"""Grid sweeps over ExecConfig fields, one process per core (fork: the tape is shared)."""

from __future__ import annotations

import dataclasses
import itertools
import multiprocessing
import os
from collections.abc import Sequence
from typing import Any

from exec_router import ExecConfig

from .engine import simulate
from .market import Market
from .metrics import summarize
from .options import SWEEPABLE
from .strategy import Strategy
from .tape import Tape
from .venue import Venue

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def parse_value(key: str, text: str) -> Any:
    """One ExecConfig field value from text, typed by the field."""
    kind = SWEEPABLE.get(key)
    if kind is None:
        raise ValueError(f"unknown ExecConfig field {key!r}; choose from {', '.join(SWEEPABLE)}")
    text = text.strip()
    try:
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
    except ValueError:
        raise ValueError(f"{key}={text!r}: expected {kind}") from None
    if kind == "bool":
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ValueError(f"{key}={text!r}: expected true or false")
    return text


def parse_assignments(specs: Sequence[str]) -> dict[str, Any]:
    """``key=value`` pairs into ExecConfig keyword arguments."""
    out: dict[str, Any] = {}
    for spec in specs:
        key, sep, value = spec.partition("=")
        if not sep:
            raise ValueError(f"{spec!r}: expected key=value")
        out[key.strip()] = parse_value(key.strip(), value)
    return out


def parse_grid(specs: Sequence[str]) -> dict[str, list[Any]]:
    """``key=v1,v2,...`` specs into an ordered grid."""
    grid: dict[str, list[Any]] = {}
    for spec in specs:
        key, sep, values = spec.partition("=")
        key = key.strip()
        if not sep or not values.strip():
            raise ValueError(f"{spec!r}: expected key=v1,v2,...")
        grid[key] = [parse_value(key, v) for v in values.split(",")]
    return grid


def grid_configs(base: dict[str, Any], grid: dict[str, list[Any]]) -> list[ExecConfig]:
    """Every combination of the grid over the base settings (ConfigError on a bad value)."""
    keys = list(grid)
    return [
        ExecConfig(**{**base, **dict(zip(keys, combo, strict=True))})
        for combo in itertools.product(*(grid[k] for k in keys))
    ]


_JOB: tuple[Tape | Market, Strategy, Venue] | None = None


def run_one(config: ExecConfig) -> dict[str, Any]:
    """Simulate one config on the shared job; the summary carries its config."""
    assert _JOB is not None
    tape, strategy, venue = _JOB
    run = simulate(tape, config, strategy, venue)
    summary = summarize(run, tape, venue)
    summary["config"] = {k: v for k, v in dataclasses.asdict(config).items() if k in SWEEPABLE}
    return summary


def run_configs(
    tape: Tape | Market,
    strategy: Strategy,
    venue: Venue,
    configs: Sequence[ExecConfig],
    jobs: int = 0,
) -> list[dict[str, Any]]:
    """Simulate each config, on ``jobs`` processes (0: every core), in config order."""
    global _JOB
    _JOB = (tape, strategy, venue)
    try:
        jobs = min(jobs or os.cpu_count() or 1, len(configs))
        if jobs <= 1 or "fork" not in multiprocessing.get_all_start_methods():
            return [run_one(c) for c in configs]
        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            return pool.map(run_one, configs, chunksize=1)
    finally:
        _JOB = None


def rank(summaries: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Cheapest first, by total cost per round trip including missed entries."""

    def key(s: dict[str, Any]) -> float:
        value = s["costs_bps"]["total_incl_missed"]
        return float("inf") if value is None else float(value)

    return sorted(summaries, key=key)
