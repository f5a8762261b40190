"""Tick sizes from exchange metadata: Binance futures ``exchangeInfo`` or BingX ``contracts``."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from exec_router.constants import DEFAULT_TICKS

from .errors import TapeError
from .market import InputError


def _positive(value: Any) -> float | None:
    try:
        tick = float(value)
    except (TypeError, ValueError):
        return None
    return tick if 0 < tick < math.inf else None


def load_exchange_info(path: str) -> dict[str, float]:
    """``{symbol: tick}`` from Binance ``exchangeInfo`` (``PRICE_FILTER.tickSize``) or BingX
    swap ``contracts`` (``pricePrecision``; ``BTC-USDT`` becomes ``BTCUSDT``)."""
    name = os.fspath(path)
    try:
        with open(name, encoding="utf-8") as fh:
            doc = json.load(fh)
    except FileNotFoundError:
        raise TapeError(name, None, "no such file") from None
    except json.JSONDecodeError as exc:
        raise TapeError(name, exc.lineno, f"not valid JSON ({exc.msg})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TapeError(name, None, f"cannot read ({exc})") from None
    if isinstance(doc, dict) and isinstance(doc.get("symbols"), list):
        ticks = _binance(doc["symbols"])
    elif isinstance(doc, dict) and isinstance(doc.get("data"), list):
        ticks = _bingx(doc["data"])
    elif isinstance(doc, list):
        ticks = _bingx(doc)
    else:
        raise TapeError(
            name,
            None,
            'expected Binance exchangeInfo ({"symbols": [...]}) or BingX '
            'contracts ({"data": [...]})',
        )
    if not ticks:
        raise TapeError(name, None, "no symbol with a tick size")
    return ticks


def _binance(symbols: Iterable[Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for s in symbols:
        if not isinstance(s, dict) or not isinstance(s.get("symbol"), str):
            continue
        for f in s.get("filters") or ():
            if isinstance(f, dict) and f.get("filterType") == "PRICE_FILTER":
                tick = _positive(f.get("tickSize"))
                if tick is not None:
                    out[s["symbol"].upper()] = tick
    return out


def _bingx(contracts: Iterable[Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for c in contracts:
        if not isinstance(c, dict) or not isinstance(c.get("symbol"), str):
            continue
        precision = c.get("pricePrecision")
        if isinstance(precision, int) and not isinstance(precision, bool) and 0 <= precision <= 18:
            out[c["symbol"].replace("-", "").upper()] = float(f"1e-{precision}")
    return out


def parse_ticks(specs: Sequence[str]) -> dict[str, float]:
    """``--tick SYMBOL=SIZE`` values."""
    out: dict[str, float] = {}
    for spec in specs:
        sym, sep, size = spec.partition("=")
        tick = _positive(size) if sep else None
        if not sym.strip() or tick is None:
            raise InputError(f"--tick {spec}: expected SYMBOL=SIZE with a size > 0")
        out[sym.strip().upper()] = tick
    return out


def tick_table(
    symbols: Sequence[str], info: Mapping[str, float], manual: Mapping[str, float]
) -> dict[str, float]:
    """The ``tick_overrides`` for the run's symbols; an unknown tick is an error."""
    out: dict[str, float] = {}
    for sym in symbols:
        if sym in manual:
            out[sym] = manual[sym]
        elif sym in info:
            out[sym] = info[sym]
        elif sym not in DEFAULT_TICKS:
            raise InputError(
                f"no tick size for {sym}: pass --tick {sym}=SIZE or --exchange-info FILE "
                "(Binance exchangeInfo or BingX contracts JSON)"
            )
    return out
