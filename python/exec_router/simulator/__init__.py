"""Replay a market tape through the router and measure what each execution style costs.

Needs the ``sim`` extra (numpy, pyarrow, rich); ``import exec_router`` never loads it. The
names below load on first use, so ``exec_router.simulator.options`` (the command line) imports
without the extra.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .clock import SimClock
    from .engine import OUTCOMES, Fill, Simulation, SimulationError, StyleRun, Trade, simulate
    from .errors import TapeError
    from .fills import first_fill
    from .loaders import load_book, load_intents, load_tape, load_trades
    from .metrics import summarize
    from .options import DEFAULT_FILL_MODEL, FILL_MODELS
    from .strategy import Bracket, EntryIntent, ExitIntent, IntentList, Strategy
    from .synthetic import synthetic_tape
    from .tape import Tape
    from .venue import Venue

_LAZY = {
    "Bracket": "strategy",
    "DEFAULT_FILL_MODEL": "options",
    "EntryIntent": "strategy",
    "ExitIntent": "strategy",
    "FILL_MODELS": "options",
    "Fill": "engine",
    "IntentList": "strategy",
    "OUTCOMES": "engine",
    "SimClock": "clock",
    "Simulation": "engine",
    "SimulationError": "engine",
    "Strategy": "strategy",
    "StyleRun": "engine",
    "Tape": "tape",
    "TapeError": "errors",
    "Trade": "engine",
    "Venue": "venue",
    "first_fill": "fills",
    "load_book": "loaders",
    "load_intents": "loaders",
    "load_tape": "loaders",
    "load_trades": "loaders",
    "simulate": "engine",
    "summarize": "metrics",
    "synthetic_tape": "synthetic",
}

__all__ = [
    "DEFAULT_FILL_MODEL",
    "FILL_MODELS",
    "OUTCOMES",
    "Bracket",
    "EntryIntent",
    "ExitIntent",
    "Fill",
    "IntentList",
    "SimClock",
    "Simulation",
    "SimulationError",
    "Strategy",
    "StyleRun",
    "Tape",
    "TapeError",
    "Trade",
    "Venue",
    "first_fill",
    "load_book",
    "load_intents",
    "load_tape",
    "load_trades",
    "simulate",
    "summarize",
    "synthetic_tape",
]


def __getattr__(name: str) -> object:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
