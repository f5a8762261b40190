"""Replay a market tape through the router and measure what each execution style costs.

Needs the ``sim`` extra (numpy, pyarrow, rich); ``import exec_router`` never loads it.
"""

from __future__ import annotations

from .clock import SimClock
from .engine import OUTCOMES, Fill, Simulation, SimulationError, StyleRun, Trade, simulate
from .errors import TapeError
from .fills import DEFAULT_FILL_MODEL, FILL_MODELS, first_fill
from .loaders import load_book, load_intents, load_tape, load_trades
from .metrics import summarize
from .strategy import Bracket, EntryIntent, ExitIntent, IntentList, Strategy
from .synthetic import synthetic_tape
from .tape import Tape
from .venue import Venue

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
