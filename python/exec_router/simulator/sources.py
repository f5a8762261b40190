"""The built-in tape loaders, by name, for the cache: ``csv`` files and ``synthetic`` days."""

from __future__ import annotations

import os
import zlib
from collections.abc import Mapping
from typing import Any, Final

from exec_router.constants import DEFAULT_TICKS

from .cache import TapeSpec, register_loader
from .loaders import load_tape
from .synthetic import DEFAULT_START_MS, synthetic_tape
from .tape import Tape

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


register_loader("csv", "1", _csv)
register_loader("synthetic", "1", _synthetic)


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
