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
from .cache import TapeCache, add_cache_command, cache_command, default_cache_dir
from .campaign import SweepUsageError, run_sweep
from .engine import simulate
from .errors import TapeError
from .fills import DEFAULT_FILL_MODEL, FILL_MODELS
from .loaders import load_intents, load_tape
from .metrics import summarize
from .sources import csv_spec
from .stats import METHODS
from .strategy import Bracket, Strategy
from .sweep import SWEEPABLE, grid_configs, parse_assignments, parse_grid
from .synthetic import synthetic_tape
from .tape import Tape
from .venue import MAKER_FEE_BPS, TAKER_FEE_BPS, Venue

#: Tapes with at least this many events get a progress bar (on a TTY only).
PROGRESS_MIN_EVENTS = 3_000_000


class UsageError(Exception):
    """Arguments that cannot work together."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="exec-router",
        description="exec-router tools. `simulate` replays a market tape through the router.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser(
        "simulate",
        help="compare taker / maker_entry / maker_exit / maker_both on a tape",
        description=(
            "Replay a market tape through the real router and show what each execution "
            "style costs. Without arguments: a synthetic day of BTCUSDT and a bracket strategy."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    data = p.add_argument_group("data")
    data.add_argument("--book", metavar="FILE", help="bookTicker or ts_ms,bid,ask[,qty] CSV")
    data.add_argument("--trades", metavar="FILE", help="aggTrades or ts_ms,price,qty,side CSV")
    data.add_argument("--intents", metavar="FILE", help="intents CSV instead of the bracket")
    data.add_argument("--symbol", default="BTCUSDT", help="symbol of the tape (tick size)")
    data.add_argument("--seed", type=int, default=7, help="synthetic tape seed")
    data.add_argument("--hours", type=float, default=24.0, help="synthetic tape length")
    data.add_argument("--days", type=int, default=1, help="sweep: synthetic days per symbol")
    data.add_argument("--symbols", metavar="A,B", help="sweep: synthetic symbols (each a tape)")
    data.add_argument(
        "--cache-dir", metavar="DIR", help="tape cache (default: $XDG_CACHE_HOME/exec-router)"
    )
    data.add_argument("--no-cache", action="store_true", help="parse the files, cache nothing")

    router = p.add_argument_group("router")
    router.add_argument(
        "--styles",
        help=f"comma-separated styles (default: all four; with --sweep: maker_both) from "
        f"{','.join(VALID_STYLES)}",
    )
    router.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="FIELD=VALUE",
        help="ExecConfig fields for every style: "
        + ", ".join(k for k in SWEEPABLE if k != "style"),
    )
    router.add_argument(
        "--sweep",
        nargs="+",
        default=[],
        metavar="FIELD=V1,V2",
        help="run the grid of ExecConfig values on every core and rank by total cost",
    )
    router.add_argument("--jobs", type=int, default=0, help="sweep processes (0: all cores)")
    router.add_argument(
        "--scheduler", metavar="tcp://HOST:PORT", help="run the sweep on a Dask cluster"
    )
    router.add_argument(
        "--bootstrap",
        choices=METHODS,
        default="auto",
        help="sweep intervals: resample tapes or entry intents (auto: tapes if >= 10)",
    )

    venue = p.add_argument_group("venue")
    venue.add_argument("--fill-model", choices=FILL_MODELS, default=DEFAULT_FILL_MODEL)
    venue.add_argument("--latency-ms", type=int, default=50, help="order and cancel latency")
    venue.add_argument("--maker-fee-bps", type=float, default=MAKER_FEE_BPS)
    venue.add_argument("--taker-fee-bps", type=float, default=TAKER_FEE_BPS)

    strat = p.add_argument_group("bracket strategy")
    strat.add_argument("--every-s", type=float, default=300.0, help="seconds between entries")
    strat.add_argument("--take-profit-bps", type=float, default=8.0)
    strat.add_argument("--stop-loss-bps", type=float, default=16.0)
    strat.add_argument("--max-hold-s", type=float, default=180.0)

    out = p.add_argument_group("output")
    out.add_argument("--json", metavar="FILE", help="write the results as JSON")
    out.add_argument("--plot", metavar="FILE.png", help="draw costs and markouts (matplotlib)")
    out.add_argument("--csv", metavar="FILE", help="sweep: every config's summary as CSV")
    out.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    add_cache_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "cache":
            return cache_command(args)
        return _simulate(args)
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
def _progress(total: int, enabled: bool) -> Iterator[Callable[[], None] | None]:
    if not enabled:
        yield None
        return
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task("simulating", total=total)
        yield lambda: bar.advance(task)


def _load(args: argparse.Namespace) -> tuple[Tape, Strategy]:
    if args.trades and not args.book:
        raise UsageError("--trades needs --book")
    if args.book:
        sizes = args.fill_model == "queue"  # only the queue model reads displayed sizes
        spec = csv_spec(args.book, args.trades, args.symbol.upper(), sizes)
        if args.no_cache:
            tape = load_tape(args.book, args.trades, symbol=args.symbol.upper(), sizes=sizes)
        else:
            tape = TapeCache(args.cache_dir or default_cache_dir()).load(spec)[0]
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
    for flag, path in (("--json", args.json), ("--plot", args.plot)):
        if path:
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
        configs = grid_configs(base, grid)
        return run_sweep(args, report.console(), base, grid, configs, _check_writable)
    if args.days != 1 or args.symbols or args.scheduler or args.csv:
        raise UsageError("--days, --symbols, --scheduler and --csv go with --sweep")

    con = report.console()
    tty = sys.stderr.isatty() and not args.no_progress
    start = time.perf_counter()
    if tty:
        with con.status("loading the tape…"):
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


def _check_plot_extra() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError("--plot needs matplotlib: pip install 'exec-router[plot]'") from None


def _outputs(
    args: argparse.Namespace,
    con: Any,
    payload: dict[str, Any],
    summaries: Sequence[dict[str, Any]],
    header: str,
) -> None:
    if args.json:
        report.write_json(args.json, payload)
        con.print(f"JSON written to {args.json}")
    if args.plot:
        from .plot import plot

        plot(summaries, args.plot, header.splitlines()[0])
        con.print(f"Plot written to {args.plot}")
