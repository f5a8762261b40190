"""The built-in tape loaders, by name, for the cache.

- ``csv``: one book (and trades) file as one tape; ``synthetic``: a generated day.
- ``capture``, ``tardis``, ``binance``: one input file as its feeds (one per symbol), each
  keyed by the file and the options that change what is read (``--time``, ``--allow-gaps``,
  ``--symbol``, sizes).
- ``day``: one symbol's tape for one UTC day, joined from its files: a unit of a sweep.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import zlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final

import numpy as np

from exec_router.constants import DEFAULT_TICKS

from .cache import TapeCache, TapeSpec, register_loader
from .capture import load_capture
from .feeds import Feed
from .loaders import load_tape
from .market import assemble, load_binance
from .synthetic import DEFAULT_START_MS, synthetic_tape
from .tape import Tape
from .tardis import load_tardis

DAY_MS: Final = 86_400_000
#: Rough price levels for synthetic tapes of the tick table's symbols (others: 100).
SYNTHETIC_PRICES: Final = {
    "BTCUSDT": 65_000.0,
    "ETHUSDT": 3_500.0,
    "AAVEUSDT": 100.0,
    "SOLUSDT": 150.0,
    "XRPUSDT": 0.6,
    "DOGEUSDT": 0.15,
    "SHIBUSDT": 0.00002,
    "YFIUSDT": 7_000.0,
    "XAUTUSDT": 2_400.0,
    "ADAUSDT": 0.45,
    "TRXUSDT": 0.12,
    "ALGOUSDT": 0.18,
}


def _csv(paths: tuple[str, ...], options: Mapping[str, Any], progress: Any = None) -> list[Tape]:
    book, *rest = paths
    trades = rest[0] if rest else None
    symbol, sizes = str(options["symbol"]), bool(options.get("sizes", True))
    return [load_tape(book, trades, symbol=symbol, sizes=sizes, progress=progress)]


def _synthetic(paths: tuple[str, ...], options: Mapping[str, Any]) -> list[Tape]:
    return [synthetic_tape(**options)]


def _capture(paths: tuple[str, ...], options: Mapping[str, Any]) -> list[Feed]:
    return load_capture(
        paths[0], local_time=bool(options["local_time"]), allow_gaps=bool(options["allow_gaps"])
    )


def _tardis(paths: tuple[str, ...], options: Mapping[str, Any]) -> list[Feed]:
    return load_tardis(paths[0], local_time=bool(options["local_time"]))


def _binance(paths: tuple[str, ...], options: Mapping[str, Any]) -> list[Feed]:
    symbol = options["symbol"]
    if options["kind"] == "book":
        return load_binance(paths, (), symbol, sizes=bool(options["sizes"]))
    return load_binance((), paths, symbol)


def _day(paths: tuple[str, ...], options: Mapping[str, Any]) -> list[Tape]:
    """Load the files of one symbol (no cache), join them and keep one UTC day."""
    symbol, day = str(options["symbol"]), dt.date.fromisoformat(options["day"])
    feeds = []
    for kind, path in zip(options["kinds"], paths, strict=True):
        spec = file_spec(kind, path, options["read"])
        loaded = get_file_loader(spec)(spec.paths, spec.option_dict)
        feeds += [f for f in loaded if f.symbol == symbol]
    market = assemble(feeds)
    return [t for d, t in split_days(market.tapes[symbol]) if d == day]


register_loader("csv", "1", _csv)
register_loader("synthetic", "1", _synthetic)
register_loader("capture", "1", _capture)
register_loader("tardis", "1", _tardis)
register_loader("binance", "1", _binance)
register_loader("day", "1", _day)

#: The file kinds of the command line, by flag.
FILE_KINDS: Final = ("capture", "tardis", "book", "trades")


def get_file_loader(spec: TapeSpec) -> Any:
    return {"capture": _capture, "tardis": _tardis, "binance": _binance}[spec.loader]


def file_spec(kind: str, path: str, read: Mapping[str, Any]) -> TapeSpec:
    """The cache spec of one input file. ``read``: local_time, allow_gaps, symbol, sizes."""
    label = os.path.basename(path)
    if kind == "capture":
        return TapeSpec.of(
            "capture",
            [path],
            label,
            local_time=read["local_time"],
            allow_gaps=read["allow_gaps"],
        )
    if kind == "tardis":
        return TapeSpec.of("tardis", [path], label, local_time=read["local_time"])
    sizes = bool(read["sizes"]) if kind == "book" else False
    return TapeSpec.of("binance", [path], label, kind=kind, symbol=read["symbol"], sizes=sizes)


def split_days(tape: Tape) -> Iterator[tuple[dt.date, Tape]]:
    """The tape cut at UTC midnights: one tape per day that has book rows."""
    days = np.unique(tape.ts // DAY_MS)
    for d in days.tolist():
        lo, hi = d * DAY_MS, (d + 1) * DAY_MS
        b0, b1 = tape.before(lo), tape.before(hi)
        t0, t1 = tape.trades_before(lo), tape.trades_before(hi)

        def cut(values: Any, a: int, b: int) -> Any:
            return None if values is None else np.ascontiguousarray(values[a:b])

        day = dt.datetime.fromtimestamp(d * DAY_MS / 1000, dt.timezone.utc).date()
        yield (
            day,
            Tape(
                ts=cut(tape.ts, b0, b1),
                bid=cut(tape.bid, b0, b1),
                ask=cut(tape.ask, b0, b1),
                bid_qty=cut(tape.bid_qty, b0, b1),
                ask_qty=cut(tape.ask_qty, b0, b1),
                trade_ts=cut(tape.trade_ts, t0, t1),
                trade_px=cut(tape.trade_px, t0, t1),
                trade_qty=cut(tape.trade_qty, t0, t1),
                trade_side=cut(tape.trade_side, t0, t1),
                symbol=tape.symbol,
                source=tape.source,
            ),
        )


@dataclasses.dataclass(frozen=True)
class FileUnits:
    """The inputs of a sweep, every refusal checked: each symbol's time range, whether every
    symbol has trades, and the units, one ``day`` spec per (symbol, UTC day) with its span."""

    ranges: dict[str, tuple[int, int]]
    has_trades: bool
    specs: list[TapeSpec]
    spans: list[tuple[str, int, int]]  # symbol, first and last book time (ms)


def file_units(
    files: Sequence[tuple[str, str]], read: Mapping[str, Any], cache: TapeCache
) -> FileUnits:
    """Load every (kind, path) input through the cache, join each symbol's files as a plain
    run does, cut its tape into UTC days and store each day as the entry its task loads.

    One symbol's tape is held at a time (the files' entries are memory-mapped)."""
    loaded: list[tuple[str, str, list[Feed]]] = []
    for kind, path in files:
        feeds = cache.load_feeds(file_spec(kind, path, read))
        # Errors about how the files fit together name the paths as given.
        loaded.append((kind, path, [dataclasses.replace(f, path=path) for f in feeds]))
    symbols = list(dict.fromkeys(f.symbol for _, _, feeds in loaded for f in feeds))
    ranges: dict[str, tuple[int, int]] = {}
    specs: list[TapeSpec] = []
    spans: list[tuple[str, int, int]] = []
    has_trades = True
    for symbol in symbols:
        mine = [(k, p, [f for f in fs if f.symbol == symbol]) for k, p, fs in loaded]
        mine = [(k, p, fs) for k, p, fs in mine if fs]
        tape = assemble(f for _, _, fs in mine for f in fs).tapes[symbol]
        ranges[symbol] = (tape.start_ms, tape.end_ms)
        has_trades = has_trades and tape.has_trades
        for day, unit in split_days(tape):
            spec = TapeSpec.of(
                "day",
                [p for _, p, _ in mine],
                f"{symbol} {day.isoformat()}",
                symbol=symbol,
                day=day.isoformat(),
                kinds=[k for k, _, _ in mine],
                read=dict(read),
            )
            cache.store(spec, [unit])
            specs.append(spec)
            spans.append((symbol, unit.start_ms, unit.end_ms))
        del tape
    return FileUnits(ranges, has_trades, specs, spans)


def csv_spec(book: str, trades: str | None, symbol: str, sizes: bool) -> TapeSpec:
    paths = [book] if trades is None else [book, trades]
    label = os.path.basename(book)
    return TapeSpec.of("csv", paths, label=label, symbol=symbol, sizes=sizes)


def synthetic_specs(
    symbols: list[str], days: int, *, seed: int = 7, hours: float = 24.0
) -> list[TapeSpec]:
    """One synthetic tape per day and symbol: consecutive days, a seed for each."""
    specs = []
    for symbol in symbols:
        for day in range(days):
            # The first day of the first symbol is the single-tape default exactly.
            mix = 0 if (day, symbol) == (0, symbols[0]) else zlib.crc32(f"{symbol}:{day}".encode())
            specs.append(
                TapeSpec.of(
                    "synthetic",
                    label=f"{symbol} day {day + 1}",
                    seed=(seed + mix) % 2**32,
                    hours=hours,
                    symbol=symbol,
                    start_ms=DEFAULT_START_MS + day * DAY_MS,
                    price=SYNTHETIC_PRICES.get(symbol, 100.0),
                    tick=DEFAULT_TICKS.get(symbol, 0.01),
                )
            )
    return specs
