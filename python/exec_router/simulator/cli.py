"""``python -m exec_router simulate``: replay a tape through the router, compare the styles."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from exec_router import VALID_STYLES, ConfigError, ExecConfig

from . import report
from .cache import TapeCache, cache_command, default_cache_dir
from .cache import flush as flush_cache_writes
from .campaign import SweepUsageError, run_sweep
from .engine import simulate
from .errors import TapeError
from .loaders import load_intents, load_tape
from .metrics import summarize
from .options import INSTALL_HINT, SWEEPABLE, build_parser
from .sources import csv_spec
from .strategy import Bracket, Strategy
from .sweep import grid_configs, parse_assignments, parse_grid
from .synthetic import synthetic_tape
from .tape import Tape
from .venue import Venue

#: Tapes with at least this many events get a progress bar (on a TTY only).
PROGRESS_MIN_EVENTS = 3_000_000


class UsageError(Exception):
    """Arguments that cannot work together."""


#: What ``--plot`` may write; a name without a suffix gets ``.png``.
PLOT_SUFFIXES = (".png", ".pdf", ".svg")


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """Run the parsed command; a bad input is one line on stderr and exit code 2."""
    try:
        if args.command == "cache":
            return cache_command(args)
        try:
            return _simulate(args)
        finally:
            flush_cache_writes()
    except (TapeError, UsageError, SweepUsageError, ConfigError, OSError, RuntimeError) as exc:
        print(f"exec-router: {exc}", file=sys.stderr)
        return 2


def _styles(text: str | None, default: list[str]) -> list[str]:
    if not text:
        return default
    styles = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in styles if s not in VALID_STYLES]
    if bad or not styles:
        raise UsageError(f"--styles: {bad[0] if bad else text!r} is not one of {VALID_STYLES}")
    return styles


@contextmanager
def _loading() -> Iterator[Callable[[str, int, int], None]]:
    """A bar per file, with the percentage of its bytes the CSV reader has consumed."""
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn

    columns = (
        TextColumn("loading {task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        DownloadColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        tasks: dict[str, TaskID] = {}

        def update(name: str, seen: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(os.path.basename(name), total=total)
            bar.update(tasks[name], completed=seen)

        yield update


@contextmanager
def _progress(total: int, enabled: bool) -> Iterator[Callable[[], None] | None]:
    if not enabled:
        yield None
        return
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task("simulating", total=total)
        yield lambda: bar.advance(task)


def _load(
    args: argparse.Namespace, progress: Callable[[str, int, int], None] | None = None
) -> tuple[Tape, Strategy]:
    if args.trades and not args.book:
        raise UsageError("--trades needs --book")
    if args.book:
        sizes = args.fill_model == "queue"  # only the queue model reads displayed sizes
        if args.no_cache:
            tape = load_tape(
                args.book, args.trades, symbol=args.symbol.upper(), sizes=sizes, progress=progress
            )
        else:
            spec = csv_spec(args.book, args.trades, args.symbol.upper(), sizes)
            cache = TapeCache(args.cache_dir or default_cache_dir(), background=True)
            tape = cache.load(spec, progress=progress)[0]
    else:
        if not 0 < args.hours <= 24 * 31:
            raise UsageError("--hours must be in (0, 744]")
        tape = synthetic_tape(seed=args.seed, hours=args.hours, symbol=args.symbol.upper())
    if args.intents:
        return tape, load_intents(args.intents)
    return tape, Bracket(
        every_s=args.every_s,
        take_profit_bps=args.take_profit_bps,
        stop_loss_bps=args.stop_loss_bps,
        max_hold_s=args.max_hold_s,
        asset=tape.symbol,
        start_ms=tape.start_ms,
        end_ms=tape.end_ms,
    )


def _simulate(args: argparse.Namespace) -> int:
    try:
        base = parse_assignments(args.set)
        grid = parse_grid(args.sweep)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if "style" in base:
        raise UsageError("use --styles, not --set style=...")
    if args.latency_ms < 0:
        raise UsageError("--latency-ms must be >= 0")
    if args.plot:
        args.plot = _plot_path(args.plot)
    for flag, path in (("--json", args.json), ("--plot", args.plot)):
        if path and not (flag == "--json" and path == "-"):
            _check_writable(flag, path)
    if grid:
        if args.plot:
            _check_plot_extra()
        if args.trades and not args.book:
            raise UsageError("--trades needs --book")
        if "style" not in grid:
            grid = {"style": _styles(args.styles, ["maker_both"]), **grid}
        elif args.styles:
            raise UsageError("give the styles either in --styles or in --sweep, not both")
        con = report.console(sys.stderr if args.json == "-" else None)
        return run_sweep(args, con, base, grid, grid_configs(base, grid), _check_writable)
    if args.days != 1 or args.symbols or args.scheduler or args.csv:
        raise UsageError("--days, --symbols, --scheduler and --csv go with --sweep")

    # With --json -, stdout carries the JSON alone and the report goes to stderr.
    con = report.console(sys.stderr if args.json == "-" else None)
    tty = sys.stderr.isatty() and not args.no_progress
    start = time.perf_counter()
    if tty and args.book:
        with _loading() as progress:
            tape, strategy = _load(args, progress)
    elif tty:
        with con.status("generating the tape…"):
            tape, strategy = _load(args)
    else:
        tape, strategy = _load(args)
    load_s = time.perf_counter() - start
    if args.fill_model == "queue" and not tape.has_trades:
        raise UsageError("the queue fill model needs trades: pass --trades FILE")
    venue = Venue(args.fill_model, args.latency_ms, args.maker_fee_bps, args.taker_fee_bps)
    if args.plot:
        _check_plot_extra()
    header = _header(tape, strategy, venue)

    styles = _styles(args.styles, list(VALID_STYLES))
    configs = [ExecConfig(**{**base, "style": s}) for s in styles]
    summaries = []
    entries = len(strategy.entries())
    show = tty and tape.events >= PROGRESS_MIN_EVENTS
    with _progress(entries * len(configs), show) as tick:
        for config in configs:
            run = simulate(tape, config, strategy, venue, progress=tick)
            summary = summarize(run, tape, venue)
            summary["config"] = _config_dict(config)
            rate = tape.events / (load_s + run.seconds)
            summary["events_per_s_end_to_end"] = rate
            summaries.append(summary)
    total_s = time.perf_counter() - start

    con.print(header)
    con.print()
    con.print(report.comparison_table(summaries, "Execution styles compared"))
    con.print()
    con.print(report.counters_table(summaries))
    con.print()
    con.print(_speed(tape, summaries, load_s, generated=not args.book))
    payload = _payload(tape, strategy, venue, load_s, total_s)
    payload["styles"] = {s["style"]: s for s in summaries}
    _outputs(args, con, payload, summaries, header)
    return 0


def _speed(tape: Tape, summaries: Sequence[dict[str, Any]], load_s: float, generated: bool) -> str:
    sims = [s["sim_seconds"] for s in summaries]
    rates = [s["events_per_s_end_to_end"] for s in summaries]
    overall = tape.events * len(sims) / (load_s + sum(sims))
    low, high = f"{min(rates) / 1e6:.1f}", f"{max(rates) / 1e6:.1f}"
    per_style = low if low == high else f"{low}–{high}"
    return (
        f"Speed: {tape.events:,} tape events {'generated' if generated else 'loaded'} in "
        f"{load_s:.2f} s; {len(sims)} style(s) simulated in {sum(sims):.2f} s; "
        f"{per_style} M events/s per style end to end (loading included), "
        f"{overall / 1e6:.1f} M events/s over all styles."
    )


def _config_dict(config: ExecConfig) -> dict[str, Any]:
    return {k: v for k, v in dataclasses.asdict(config).items() if k in SWEEPABLE}


def _header(tape: Tape, strategy: Strategy, venue: Venue) -> str:
    hours = (tape.end_ms - tape.start_ms) / 3_600_000
    return (
        f"Tape: {tape.source} {tape.symbol}, {hours:.1f} h, {tape.rows:,} book rows + "
        f"{tape.trades:,} trades\n"
        f"Strategy: {strategy.describe()}\n"
        f"Venue: fill model {venue.fill_model}, latency {venue.latency_ms} ms, fees "
        f"{venue.maker_fee_bps:g}/{venue.taker_fee_bps:g} bps maker/taker"
    )


def _payload(
    tape: Tape, strategy: Strategy, venue: Venue, load_s: float, total_s: float
) -> dict[str, Any]:
    return {
        "tape": {
            "source": tape.source,
            "symbol": tape.symbol,
            "book_rows": tape.rows,
            "trades": tape.trades,
            "start_ms": tape.start_ms,
            "end_ms": tape.end_ms,
        },
        "strategy": strategy.describe(),
        "venue": dataclasses.asdict(venue),
        "timing": {"load_seconds": load_s, "total_seconds": total_s, "events": tape.events},
    }


def _check_writable(flag: str, path: str) -> None:
    """Fail before the run, not after it, on an output path that cannot be written."""
    folder = os.path.dirname(path) or "."
    if os.path.isdir(path):
        raise UsageError(f"{flag} {path}: is a directory")
    if not os.path.isdir(folder):
        raise UsageError(f"{flag} {path}: no such directory {folder}")
    if not os.access(folder, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise UsageError(f"{flag} {path}: permission denied")


def _plot_path(path: str) -> str:
    """The file ``--plot`` will write: ``.png`` is added to a name without a suffix."""
    suffix = os.path.splitext(path)[1].lower()
    if os.path.isdir(path):
        return path  # refused by _check_writable
    if not suffix:
        return path + ".png"
    if suffix not in PLOT_SUFFIXES:
        raise UsageError(f"--plot {path}: the suffix must be one of {', '.join(PLOT_SUFFIXES)}")
    return path


def _check_plot_extra() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        hint = INSTALL_HINT.format(extra="plot")
        raise UsageError(f"--plot needs matplotlib, {hint}") from None


def _outputs(
    args: argparse.Namespace,
    con: Any,
    payload: dict[str, Any],
    summaries: Sequence[dict[str, Any]],
    header: str,
) -> None:
    if args.json:
        report.write_json(args.json, payload)
        if args.json != "-":
            con.print(f"JSON written to {args.json}")
    if args.plot:
        from .plot import plot

        plot(summaries, args.plot, header.splitlines()[0])
        con.print(f"Plot written to {args.plot}")
