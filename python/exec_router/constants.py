"""Constants shared by both backends: choices, hook stages, tick table, counters."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final, Literal

#: The router's logger. Both backends log through ``router.logger``, which
#: defaults to this one.
LOGGER: Final = logging.getLogger("exec_router")

#: A position's side, as planning calls take it (case-insensitive at run time).
PositionSide = Literal["LONG", "SHORT", "long", "short"]
#: What a plan or working order does to the position.
Action = Literal["ENTER", "EXIT"]
#: The venue order's side.
OrderSide = Literal["BUY", "SELL"]

#: Exit reasons that may rest as a maker quote; every other reason is urgent.
MAKER_EXIT_REASONS: Final = frozenset({"TAKE_PROFIT"})
VALID_STYLES: Final = ("taker", "maker_entry", "maker_exit", "maker_both")
VALID_MISS: Final = ("skip", "retry", "market")
VALID_EXHAUST: Final = ("skip", "market")
HOOK_STAGES: Final = (
    "pre_plan",
    "pre_submit",
    "on_working",
    "on_fill",
    "on_miss",
    "on_escalate",
    "on_cancel",
)

#: Per-symbol tick sizes (BingX USDT-M perpetuals). Read-only: add or change
#: symbols through ``ExecConfig.tick_overrides``.
DEFAULT_TICKS: Final[Mapping[str, float]] = MappingProxyType(
    {
        "BTCUSDT": 0.1,
        "ETHUSDT": 0.01,
        "AAVEUSDT": 0.01,
        "SOLUSDT": 0.001,
        "XRPUSDT": 0.0001,
        "DOGEUSDT": 0.00001,
        "SHIBUSDT": 1e-9,
        "YFIUSDT": 0.01,
        "XAUTUSDT": 0.1,
        "ADAUSDT": 0.0001,
        "TRXUSDT": 0.00001,
        "ALGOUSDT": 0.0001,
    }
)

#: An unknown symbol's tick is this fraction of the reference price (~0.1 bp).
FALLBACK_TICK_FRACTION: Final = 1e-5

#: The router's counters, in the order ``router.counters`` lists them.
COUNTER_KEYS: Final = (
    "plans_entry",
    "plans_exit",
    "maker_entries",
    "maker_exits",
    "taker_entries",
    "taker_exits",
    "suppressed_dup_enter",
    "suppressed_dup_exit",
    "spread_gate_taker",
    "entry_miss_skip",
    "entry_miss_retry",
    "entry_miss_market",
    "exit_escalations",
    "fills_working",
    "cancels",
    "hook_errors",
)


#: How deeply calls into the router may nest in one thread (a hook that plans again,
#: a key whose ``__eq__`` registers...). Past it a planning call returns MARKET with
#: reason ``invalid_input:depth``; any other call raises ``RecursionError``.
MAX_DEPTH: Final = 64


class MissAction:
    """What to do with an expired working entry (see ``entry_miss_action``)."""

    SKIP: Final = "skip"
    RETRY: Final = "retry"
    MARKET: Final = "market"
