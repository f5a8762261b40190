"""``python -m exec_router simulate``: replay a tape through the router, compare the styles."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from exec_router import VALID_STYLES, ConfigError, ExecConfig

from . import report
from .cache import TapeCache, TapeSpec, cache_command, default_cache_dir
from .cache import flush as flush_cache_writes
from .campaign import SweepUsageError, run_sweep, synthetic_sweep_specs
from .capture import load_capture
from .engine import simulate
from .errors import TapeError
from .feeds import Feed
from .loaders import load_intents
from .market import InputError, Market, assemble, binance_name, load_binance
from .metrics import summarize
from .options import BY_OPTIMISM, INSTALL_HINT, SWEEPABLE, build_parser, parse_qty
from .sources import csv_spec, file_units
from .strategy import Bracket, Brackets, IntentList, Strategy
from .sweep import grid_configs, parse_assignments, parse_grid
from .synthetic import synthetic_tape
from .tardis import load_tardis
from .ticks import load_exchange_info, parse_ticks, tick_table
from .venue import Venue

#: Tapes with at least this many events get a progress bar (on a TTY only).
PROGRESS_MIN_EVENTS = 3_000_000


class UsageError(Exception):
    """Arguments that cannot work together."""


class NoEntries(Exception):
    """The strategy plans no entry on this tape: exit 1 with the reason."""


LOCAL_NEEDS_RECEIVE_TIME = (
    "--time local needs the receive time of --capture or --tardis files; "
    "--book/--trades files have exchange time only"
)

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
    except NoEntries as exc:
        print(f"exec-router: {exc}", file=sys.stderr)
        return 1
    except (
        TapeError,
        UsageError,
        InputError,
        SweepUsageError,
        ConfigError,
        OSError,
        RuntimeError,
    ) as exc:
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
) -> tuple[Market, Strategy, dict[str, float]]:
    """The market of every input file, the strategy, and the tick overrides."""
    if args.trades and not args.book:
        raise UsageError("--trades needs --book")
    local = args.time == "local"
    if local and args.book:
        raise UsageError(LOCAL_NEEDS_RECEIVE_TIME)
    symbol = args.symbol.upper() if args.symbol else None
    feeds: list[Feed] = []
    if args.book:
        sizes = args.fill_model in ("queue", "all")  # only queue reads displayed sizes
        if args.no_cache or len(args.book) > 1 or len(args.trades) > 1:
            feeds += load_binance(args.book, args.trades, symbol, sizes=sizes, progress=progress)
        else:
            feeds += _cached_binance(args, symbol, sizes, progress)
    for path in args.capture:
        feeds += load_capture(path, local_time=local, allow_gaps=args.allow_gaps)
    for path in args.tardis:
        feeds += load_tardis(path, local_time=local)
    if feeds:
        market = assemble(feeds)
    else:
        if not 0 < args.hours <= 24 * 31:
            raise UsageError("--hours must be in (0, 744]")
        tape = synthetic_tape(seed=args.seed, hours=args.hours, symbol=symbol or "BTCUSDT")
        market = Market.of(tape)
    if args.fill_model == "queue" and not market.has_trades:
        raise UsageError("the queue fill model needs trades: pass --trades FILE")
    info = load_exchange_info(args.exchange_info) if args.exchange_info else {}
    ticks = tick_table(market.symbols, info, parse_ticks(args.tick))
    if args.intents:
        intents = load_intents(args.intents)
        _check_intents(args.intents, intents, _ranges(market))
        return market, intents, ticks
    n = len(market.symbols)
    stagger = args.every_s / n if args.stagger_s is None else args.stagger_s
    if stagger < 0:
        raise UsageError("--stagger-s must be >= 0")
    brackets = tuple(
        Bracket(
            every_s=args.every_s,
            take_profit_bps=args.take_profit_bps,
            stop_loss_bps=args.stop_loss_bps,
            max_hold_s=args.max_hold_s,
            asset=sym,
            start_ms=tape.start_ms,
            end_ms=tape.end_ms,
            offset_s=k * stagger,
            prefix=f"{sym}-" if n > 1 else "",
        )
        for k, (sym, tape) in enumerate(market.tapes.items())
    )
    strategy = Brackets(brackets, stagger)
    if not strategy.entries():
        raise NoEntries(_why_no_entries(brackets))
    return market, strategy, ticks


def _sweep_inputs(
    args: argparse.Namespace, cache_dir: str | None
) -> tuple[list[TapeSpec], dict[str, float]]:
    """The sweep's units of work and tick overrides. Input files are read (through the cache
    when ``cache_dir`` is given) and checked exactly as a plain run checks them, then cut
    into one tape per symbol and UTC day; with no file, synthetic days."""
    files = [("capture", p) for p in args.capture] + [("tardis", p) for p in args.tardis]
    files += [("book", p) for p in args.book] + [("trades", p) for p in args.trades]
    if not files:
        if args.symbol is None:
            args.symbol = "BTCUSDT"
        return synthetic_sweep_specs(args), {}
    if args.days != 1 or args.symbols:
        raise SweepUsageError(
            "--days and --symbols make synthetic tapes: not with --book, --capture or --tardis"
        )
    local = args.time == "local"
    if local and args.book:
        raise UsageError(LOCAL_NEEDS_RECEIVE_TIME)
    read = {
        "local_time": local,
        "allow_gaps": bool(args.allow_gaps),
        "symbol": args.symbol.upper() if args.symbol else None,
        "sizes": args.fill_model in ("queue", "all"),
    }
    # Without the cache (--no-cache), the caller gives a scratch directory.
    units = file_units(files, read, TapeCache(Path(cache_dir or default_cache_dir())))
    if args.fill_model == "queue" and not units.has_trades:
        raise UsageError("the queue fill model needs trades: pass --trades FILE")
    info = load_exchange_info(args.exchange_info) if args.exchange_info else {}
    ticks = tick_table(list(units.ranges), info, parse_ticks(args.tick))
    if args.intents:
        _check_intents(args.intents, load_intents(args.intents), units.ranges)
    else:
        brackets = [
            Bracket(
                every_s=args.every_s,
                take_profit_bps=args.take_profit_bps,
                stop_loss_bps=args.stop_loss_bps,
                max_hold_s=args.max_hold_s,
                asset=symbol,
                start_ms=start,
                end_ms=end,
            )
            for symbol, start, end in units.spans
        ]
        if not any(b.entries() for b in brackets):
            raise NoEntries(_why_no_entries(brackets))
    return units.specs, ticks


def _cached_binance(
    args: argparse.Namespace,
    symbol: str | None,
    sizes: bool,
    progress: Callable[[str, int, int], None] | None,
) -> list[Feed]:
    """One book (and trades) file through the tape cache, when its symbol is known and the
    names agree; otherwise :func:`load_binance` reads them and names what does not fit."""
    book, trades = args.book[0], (args.trades[0] if args.trades else None)
    b_name, t_name = binance_name(book), (binance_name(trades) if trades else None)
    sym = b_name.symbol if b_name else symbol
    agree = (
        sym is not None
        and (symbol is None or symbol == sym)
        and (b_name is None or b_name.kind == "bookTicker")
        and (t_name is None or (t_name.kind != "bookTicker" and t_name.symbol == sym))
        and (t_name is None or b_name is None or t_name.day == b_name.day)
    )
    if not agree or sym is None:
        return load_binance(args.book, args.trades, symbol, sizes=sizes, progress=progress)
    cache = TapeCache(args.cache_dir or default_cache_dir(), background=True)
    tape = cache.load(csv_spec(book, trades, sym, sizes), progress=progress)[0]
    day = b_name.day if b_name else None
    feeds = [
        Feed(sym, book, book=(tape.ts, tape.bid, tape.ask, tape.bid_qty, tape.ask_qty), day=day)
    ]
    if trades is not None:
        t_cols = (tape.trade_ts, tape.trade_px, tape.trade_qty, tape.trade_side)
        feeds.append(Feed(sym, trades, trades=t_cols, day=t_name.day if t_name else day))
    return feeds


def _ranges(market: Market) -> dict[str, tuple[int, int]]:
    return {sym: (t.start_ms, t.end_ms) for sym, t in market.tapes.items()}


def _why_no_entries(brackets: Sequence[Bracket]) -> str:
    b = min(brackets, key=lambda x: x.needs_s() - (x.end_ms - x.start_ms) / 1000)
    tape_s = (b.end_ms - b.start_ms) / 1000
    stagger = f" + stagger {b.offset_s:g} s" if b.offset_s else ""
    return (
        f"the bracket plans no entry: the tape of {b.asset} is {tape_s:.0f} s long and the "
        f"bracket needs {b.needs_s():.0f} s (--every-s {b.every_s:g} + --max-hold-s "
        f"{b.max_hold_s:g} + {b.TAIL_S:g} s for markouts{stagger}); lower --every-s or "
        "--max-hold-s, or give a longer tape"
    )


def _check_intents(path: str, intents: IntentList, ranges: Mapping[str, tuple[int, int]]) -> None:
    """Every intent names a symbol of the tape, inside that symbol's time range."""
    assets = {e.trade_id: e.asset for e in intents.entry_intents}
    rows = [(e.ts_ms, e.asset, e.line) for e in intents.entry_intents]
    rows += [(x.ts_ms, assets.get(x.trade_id, ""), x.line) for x in intents.exit_intents]
    for ts, asset, line in rows:
        span = ranges.get(asset)
        if span is None:
            raise TapeError(path, line, f"symbol {asset} is not on the tape ({', '.join(ranges)})")
        if ts < span[0]:
            raise TapeError(
                path, line, f"intent at {ts} ms is before the {asset} tape starts ({span[0]} ms)"
            )
        if ts > span[1]:
            raise TapeError(
                path, line, f"intent at {ts} ms is after the {asset} tape ends ({span[1]} ms)"
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
        with contextlib.ExitStack() as stack:
            cache_dir = None if args.no_cache else str(args.cache_dir or default_cache_dir())
            if cache_dir is None and (args.book or args.capture or args.tardis):
                # Tasks load their tape by key: a scratch cache, removed after the sweep.
                cache_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="exec-router-"))
            specs, ticks = _sweep_inputs(args, cache_dir)
            if ticks:
                base = {**base, "tick_overrides": {**base.get("tick_overrides", {}), **ticks}}
            configs = grid_configs(base, grid)
            return run_sweep(args, con, base, grid, configs, specs, cache_dir, _check_writable)
    if args.days != 1 or args.symbols or args.scheduler or args.csv:
        raise UsageError("--days, --symbols, --scheduler and --csv go with --sweep")

    # With --json -, stdout carries the JSON alone and the report goes to stderr.
    con = report.console(sys.stderr if args.json == "-" else None)
    tty = sys.stderr.isatty() and not args.no_progress
    start = time.perf_counter()
    if tty and args.book:
        with _loading() as progress:
            market, strategy, ticks = _load(args, progress)
    elif tty:
        what = "loading" if (args.capture or args.tardis) else "generating"
        with con.status(f"{what} the tape…"):
            market, strategy, ticks = _load(args)
    else:
        market, strategy, ticks = _load(args)
    load_s = time.perf_counter() - start
    if ticks:
        base = {**base, "tick_overrides": {**base.get("tick_overrides", {}), **ticks}}
    try:
        sizes, notional = parse_qty(args.qty)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.fill_model == "all":  # every model the tape supports: queue needs trades
        models = [m for m in BY_OPTIMISM if m != "queue" or market.has_trades]
    else:
        models = [args.fill_model]
    main_model = args.fill_model if args.fill_model != "all" else "through"
    venues = {
        m: Venue(
            m,
            args.latency_ms,
            args.maker_fee_bps,
            args.taker_fee_bps,
            qty=sizes,
            notional=notional,
            cancel_from=args.cancel_from,
        )
        for m in models
    }
    venue = venues[main_model]
    if args.plot:
        _check_plot_extra()
    header = _header(market, strategy, venue)
    if len(models) > 1:
        header = header.replace(f"fill model {main_model}", f"fill models {', '.join(models)}")
    generated = not (args.book or args.capture or args.tardis)

    styles = _styles(args.styles, list(VALID_STYLES))
    configs = [ExecConfig(**{**base, "style": s}) for s in styles]
    by_model: dict[str, list[dict[str, Any]]] = {m: [] for m in models}
    per_symbol: dict[str, list[dict[str, Any]]] = {sym: [] for sym in market.symbols}
    entries = len(strategy.entries())
    show = tty and market.events >= PROGRESS_MIN_EVENTS
    with _progress(entries * len(configs) * len(models), show) as tick:
        for model, model_venue in venues.items():
            for config in configs:
                run = simulate(market, config, strategy, model_venue, progress=tick)
                summary = summarize(run, market, model_venue)
                summary["config"] = _config_dict(config)
                rate = market.events / (load_s + run.seconds)
                summary["events_per_s_end_to_end"] = rate
                by_model[model].append(summary)
                if len(market.symbols) > 1 and model == main_model:
                    for sym in market.symbols:
                        one = summarize(run, market, model_venue, symbol=sym)
                        del one["counters"], one["sim_seconds"]
                        per_symbol[sym].append(one)
    summaries = by_model[main_model]
    total_s = time.perf_counter() - start

    con.print(header)
    con.print()
    title = "Execution styles compared" + (
        f", all {len(market.symbols)} symbols" if len(market.symbols) > 1 else ""
    )
    con.print(report.comparison_table(summaries, title))
    con.print()
    if len(market.symbols) > 1:
        con.print(report.symbol_table(per_symbol, "Per symbol"))
        con.print()
    con.print(report.counters_table(summaries))
    con.print()
    if len(models) > 1:
        con.print(report.range_table(by_model))
        con.print()
    con.print(_speed(market, summaries, load_s, generated=generated))
    payload = _payload(market, strategy, venue, load_s, total_s)
    payload["styles"] = {s["style"]: s for s in summaries}
    if len(models) > 1:
        payload["fill_models"] = {m: {s["style"]: s for s in rows} for m, rows in by_model.items()}
    if len(market.symbols) > 1:
        payload["symbols"] = {
            sym: {s["style"]: s for s in rows} for sym, rows in per_symbol.items()
        }
    _outputs(args, con, payload, summaries, header)
    return 0


def _speed(
    market: Market, summaries: Sequence[dict[str, Any]], load_s: float, generated: bool
) -> str:
    sims = [s["sim_seconds"] for s in summaries]
    rates = [s["events_per_s_end_to_end"] for s in summaries]
    overall = market.events * len(sims) / (load_s + sum(sims))
    low, high = f"{min(rates) / 1e6:.1f}", f"{max(rates) / 1e6:.1f}"
    per_style = low if low == high else f"{low}–{high}"
    return (
        f"Speed: {market.events:,} tape events {'generated' if generated else 'loaded'} in "
        f"{load_s:.2f} s; {len(sims)} style(s) simulated in {sum(sims):.2f} s; "
        f"{per_style} M events/s per style end to end (loading included), "
        f"{overall / 1e6:.1f} M events/s over all styles.\n"
        f"Memory: {market.nbytes / max(market.events, 1):.0f} bytes per event held "
        f"({market.nbytes / 1e6:.1f} MB of columns)."
    )


def _config_dict(config: ExecConfig) -> dict[str, Any]:
    return {k: v for k, v in dataclasses.asdict(config).items() if k in SWEEPABLE}


def _header(market: Market, strategy: Strategy, venue: Venue) -> str:
    hours = (market.end_ms - market.start_ms) / 3_600_000
    span = f"{hours:.1f} h" if hours >= 1 else f"{(market.end_ms - market.start_ms) / 1000:.0f} s"
    depth = f" + {market.depth_messages:,} depth messages" if market.depth_messages else ""
    return (
        f"Tape: {market.source} {', '.join(market.symbols)}, {span}, {market.rows:,} book "
        f"rows + {market.trades:,} trades{depth}\n"
        f"Strategy: {strategy.describe()}\n"
        f"Venue: fill model {venue.fill_model}, latency {venue.latency_ms} ms, fees "
        f"{venue.maker_fee_bps:g}/{venue.taker_fee_bps:g} bps maker/taker"
    )


def _payload(
    market: Market, strategy: Strategy, venue: Venue, load_s: float, total_s: float
) -> dict[str, Any]:
    return {
        "tape": {
            "source": market.source,
            "symbol": market.symbols[0] if len(market.symbols) == 1 else None,
            "symbols": {
                sym: {
                    "source": t.source,
                    "book_rows": t.rows,
                    "trades": t.trades,
                    "depth_messages": market.depth[sym].messages if sym in market.depth else 0,
                    "start_ms": t.start_ms,
                    "end_ms": t.end_ms,
                }
                for sym, t in market.tapes.items()
            },
            "book_rows": market.rows,
            "trades": market.trades,
            "depth_messages": market.depth_messages,
            "start_ms": market.start_ms,
            "end_ms": market.end_ms,
            "bytes_per_event": market.nbytes / max(market.events, 1),
            "columns_bytes": market.nbytes,
        },
        "strategy": strategy.describe(),
        "venue": dataclasses.asdict(venue),
        "timing": {"load_seconds": load_s, "total_seconds": total_s, "events": market.events},
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
