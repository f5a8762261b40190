"""``simulate --sweep``: configs × tapes on an executor, ranked with confidence intervals."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from rich.table import Table

from exec_router import ExecConfig

from . import report
from .cache import TapeSpec
from .executors import (
    BracketPlan,
    Executor,
    IntentPlan,
    Job,
    SweepInterrupted,
    make_executor,
)
from .loaders import load_intents
from .options import parse_qty
from .sources import synthetic_specs
from .stats import pool, rank_with_ci
from .venue import Venue

INTERRUPTED = 130


class SweepUsageError(Exception):
    """Arguments a sweep cannot work with."""


def synthetic_sweep_specs(args: argparse.Namespace) -> list[TapeSpec]:
    """One synthetic tape per day and symbol, each one unit of work."""
    symbols = [s.strip().upper() for s in (args.symbols or args.symbol).split(",") if s.strip()]
    if not 0 < args.hours <= 24:
        raise SweepUsageError("--hours must be in (0, 24] for a sweep (one tape per day)")
    if args.days < 1:
        raise SweepUsageError("--days must be >= 1")
    if len(set(symbols)) != len(symbols) or not symbols:
        raise SweepUsageError(f"--symbols {args.symbols!r}: give each symbol once")
    return synthetic_specs(symbols, args.days, seed=args.seed, hours=args.hours)


def label(config: dict[str, Any], keys: Sequence[str]) -> str:
    return " ".join(f"{k}={config[k]}" for k in keys)


@contextmanager
def progress(
    total: int, mode: str, describe: Callable[[dict[str, Any]], str]
) -> Iterator[Callable[[int, dict[str, Any]], None]]:
    """``bar`` (a TTY), ``lines`` (one per finished task on stderr) or ``off``."""
    if mode == "bar":
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        columns = (BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress("sweep", *columns, console=Console(file=sys.stderr), transient=True) as bar:
            task = bar.add_task("sweep", total=total)
            yield lambda i, r: bar.advance(task)
        return
    count = 0

    def line(i: int, result: dict[str, Any]) -> None:
        nonlocal count
        count += 1
        width = len(str(total))
        print(f"[{count:>{width}}/{total}] {describe(result)}", file=sys.stderr, flush=True)

    yield (line if mode == "lines" else (lambda i, r: None))


def run_sweep(
    args: argparse.Namespace,
    con: Any,
    base: dict[str, Any],
    grid: dict[str, list[Any]],
    configs: list[ExecConfig],
    specs: list[TapeSpec],
    cache_dir: str | None,
    check_writable: Callable[[str, str], None],
) -> int:
    """``specs``: the units of work (see ``cli._sweep_inputs``); ``cache_dir``: None, no cache."""
    if args.jobs < 0:
        raise SweepUsageError("--jobs must be >= 0 (0: every core)")
    for flag in ("json", "csv", "plot"):
        path = getattr(args, flag, None)
        if path and path != "-":
            check_writable(f"--{flag}", path)
    if args.fill_model == "all":
        raise SweepUsageError("--fill-model all goes without --sweep; sweep one model at a time")
    try:
        sizes, notional = parse_qty(args.qty)
    except ValueError as exc:
        raise SweepUsageError(str(exc)) from None
    venue = Venue(
        args.fill_model,
        args.latency_ms,
        args.maker_fee_bps,
        args.taker_fee_bps,
        qty=sizes,
        notional=notional,
        cancel_from=args.cancel_from,
    )
    strategy: BracketPlan | IntentPlan = (
        IntentPlan(load_intents(args.intents))
        if args.intents
        else BracketPlan(args.every_s, args.take_profit_bps, args.stop_loss_bps, args.max_hold_s)
    )
    keys = [k for k, v in grid.items() if len(v) > 1] or list(grid)
    total = len(specs) * len(configs)
    executor: Executor = make_executor(args.scheduler, args.jobs, total)
    mode = "off" if args.no_progress else "bar" if sys.stderr.isatty() else "lines"

    def describe(r: dict[str, Any]) -> str:
        cost = report.fmt(r["summary"]["costs_bps"]["total_incl_missed"], ".2f")
        rts = r["summary"]["exits"]["round_trips"]
        return f"{r['tape']} · {label(r['config'], keys)}: {cost} bps/RT incl. missed, {rts} RTs"

    start = time.perf_counter()
    try:
        if cache_dir is not None:
            tape_keys: list[str | None] = list(executor.prepare(specs, cache_dir))
        else:
            tape_keys = [None] * len(specs)
        prep_s = time.perf_counter() - start
        job = Job(tuple(specs), tuple(tape_keys), tuple(configs), strategy, venue, cache_dir)
        with progress(total, mode, describe) as on_done:
            results = executor.run(job, on_done)
    except SweepInterrupted as exc:
        _print_partial(con, exc.done, len(configs), len(specs), keys)
        return INTERRUPTED
    except KeyboardInterrupt:
        con.print("Interrupted before any task finished.")
        return INTERRUPTED
    finally:
        executor.close()
    sweep_s = time.perf_counter() - start

    per_config = [
        [results[u * len(configs) + c] for u in range(len(specs))] for c in range(len(configs))
    ]
    ranked, info = rank_with_ci(per_config, method=args.bootstrap)
    con.print(_header(specs, per_config, job, strategy))
    con.print()
    con.print(ranking_table(ranked, keys, "Sweep ranked by total cost incl. missed entries"))
    con.print()
    con.print(
        f"95% intervals: {info['text']}, {info['resamples']} resamples, paired across configs.\n"
        "vs best: the difference from the best config; * = significant (its own paired 95% "
        "interval excludes 0)."
    )
    con.print(
        f"Sweep: {len(configs)} configs × {len(specs)} tape{'s' * (len(specs) > 1)} = {total} "
        f"tasks on "
        f"{executor.name} in {sweep_s:.1f} s (tapes ready in {prep_s:.2f} s"
        f"{', no cache' if args.no_cache else ''})."
    )
    if args.json:
        payload = {
            "tapes": [s.label for s in specs],
            "strategy": dataclasses.asdict(strategy)
            if isinstance(strategy, BracketPlan)
            else "intents",
            "venue": dataclasses.asdict(venue),
            "sweep": {
                "grid": grid,
                "base": base,
                "bootstrap": info,
                "executor": executor.name,
                "seconds": sweep_s,
                "ranked": ranked,
            },
        }
        report.write_json(args.json, payload)
        if args.json != "-":
            con.print(f"JSON written to {args.json}")
    if args.csv:
        write_csv(args.csv, ranked)
        con.print(f"CSV written to {args.csv}")
    if args.plot:
        from .plot import plot_ranking

        plot_ranking(ranked, args.plot, keys, f"{len(specs)} tapes; {info['text']}")
        con.print(f"Plot written to {args.plot}")
    return 0


def _header(
    specs: Sequence[TapeSpec],
    per_config: Sequence[Sequence[dict[str, Any]]],
    job: Job,
    strategy: BracketPlan | IntentPlan,
) -> str:
    planned = sum(r["summary"]["entries"]["planned"] for r in per_config[0])
    labels = [s.label for s in specs]
    names = ", ".join(labels) if len(labels) <= 4 else f"{', '.join(labels[:3])}, …, {labels[-1]}"
    what = (
        f"bracket, an entry every {strategy.every_s:g} s"
        if isinstance(strategy, BracketPlan)
        else "intents file"
    )
    v = job.venue
    return (
        f"Tapes: {len(specs)} ({names})\n"
        f"Strategy: {what}: {planned:,} entry intents per config\n"
        f"Venue: fill model {v.fill_model}, latency {v.latency_ms} ms, fees "
        f"{v.maker_fee_bps:g}/{v.taker_fee_bps:g} bps maker/taker"
    )


def ranking_table(ranked: Sequence[dict[str, Any]], keys: Sequence[str], title: str) -> Table:
    table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    table.add_column("#", justify="right")
    for key in keys:
        table.add_column(key, justify="right")
    for name in ("RTs", "skipped", "incl. missed", "95% CI", "vs best", "markout 5 s"):
        table.add_column(name, justify="right")
    for rank, s in enumerate(ranked, 1):
        ci = s["ci95_bps"]
        vs = s["vs_best"]
        diff = (
            "best"
            if vs["significant"] is None and rank == 1
            else report.fmt(vs["diff_bps"], "+.2f")
        )
        if vs["significant"]:
            diff += " *"
        table.add_row(
            str(rank),
            *(str(s["config"][k]) for k in keys),
            f"{s['round_trips']:,}",
            f"{s['entries']['skipped']:,}",
            report.fmt(s["costs_bps"]["total_incl_missed"], ".2f"),
            "—" if ci[0] is None else f"{ci[0]:.2f} … {ci[1]:.2f}",
            diff,
            report.fmt(s["markouts_bps"]["5s"], ".2f"),
        )
    return table


CSV_COSTS = (
    "fees",
    "entry_slippage",
    "exit_slippage",
    "total_per_round_trip",
    "missed_opportunity",
    "total_incl_missed",
)


def write_csv(path: str, ranked: Sequence[dict[str, Any]]) -> None:
    """One row per config: its settings, counts, costs, interval and difference from the best."""
    from .options import SWEEPABLE

    head = [
        "rank",
        *SWEEPABLE,
        "tapes",
        "round_trips",
        *(f"entries_{k}" for k in ("planned", "maker_fills", "taker_fills", "skipped")),
        *(f"{k}_bps" for k in CSV_COSTS),
        "ci95_low_bps",
        "ci95_high_bps",
        "vs_best_bps",
        "vs_best_ci95_low_bps",
        "vs_best_ci95_high_bps",
        "significant",
        "markout_5s_bps",
    ]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(head)
        for rank, s in enumerate(ranked, 1):
            vs = s["vs_best"]
            out.writerow(
                [
                    rank,
                    *(s["config"][k] for k in SWEEPABLE),
                    s["tapes"],
                    s["round_trips"],
                    *(
                        s["entries"][k]
                        for k in ("planned", "maker_fills", "taker_fills", "skipped")
                    ),
                    *(_cell(s["costs_bps"][k]) for k in CSV_COSTS),
                    *(_cell(v) for v in s["ci95_bps"]),
                    _cell(vs["diff_bps"]),
                    *(_cell(v) for v in vs["ci95_bps"]),
                    "" if vs["significant"] is None else str(vs["significant"]).lower(),
                    _cell(s["markouts_bps"]["5s"]),
                ]
            )


def _cell(value: Any) -> str:
    return "" if value is None else repr(float(value))


def _print_partial(
    con: Any, done: dict[int, dict[str, Any]], n_configs: int, n_tapes: int, keys: Sequence[str]
) -> None:
    con.print(
        f"Interrupted: {len(done)} of {n_configs * n_tapes} tasks finished; the rest were "
        "cancelled. Pooled over the tapes each config finished (no intervals):"
    )
    by_config: dict[int, list[dict[str, Any]]] = {}
    for i in sorted(done):
        by_config.setdefault(i % n_configs, []).append(done[i])
    if not by_config:
        return
    table = Table(show_edge=False, pad_edge=False)
    for name in (*keys, "tapes done", "RTs", "incl. missed"):
        table.add_column(name, justify="right")
    rows = [pool(rs) for _, rs in sorted(by_config.items())]
    rows.sort(key=lambda p: p["costs_bps"]["total_incl_missed"] or float("inf"))
    for p in rows:
        table.add_row(
            *(str(p["config"][k]) for k in keys),
            f"{p['tapes']}/{n_tapes}",
            f"{p['round_trips']:,}",
            report.fmt(p["costs_bps"]["total_incl_missed"], ".2f"),
        )
    con.print(table)
