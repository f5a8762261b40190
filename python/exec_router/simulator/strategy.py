"""Where intents come from: the built-in bracket strategy, or an intents file."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from exec_router.constants import PositionSide

from .search import first_true
from .tape import Tape


@dataclass(frozen=True)
class EntryIntent:
    ts_ms: int
    trade_id: str
    asset: str
    position_side: PositionSide


@dataclass(frozen=True)
class ExitIntent:
    ts_ms: int
    trade_id: str
    reason: str


class Strategy(Protocol):
    """The alpha layer the simulated runtime serves: it decides *whether*, never *how*."""

    def entries(self) -> list[EntryIntent]:
        """Entry intents, in time order."""
        ...

    def scheduled_exits(self) -> list[ExitIntent]:
        """Exit intents known in advance (an intents file), in time order."""
        ...

    def exits_after_fill(
        self, tape: Tape, intent: EntryIntent, fill_ms: int, fill_price: float
    ) -> list[tuple[int, str]]:
        """Exit triggers ``(ts_ms, reason)`` set relative to the actual entry fill."""
        ...

    def describe(self) -> str:
        """One line for the report header."""
        ...


@dataclass(frozen=True)
class Bracket:
    """An entry every ``every_s``, LONG or SHORT by a seeded coin flip; after the fill,
    TAKE_PROFIT when the mid gains ``take_profit_bps``, CATASTROPHIC_LOSS when it loses
    ``stop_loss_bps`` and MAX_HOLD after ``max_hold_s``, whichever comes first."""

    every_s: float = 300.0
    take_profit_bps: float = 8.0
    stop_loss_bps: float = 16.0
    max_hold_s: float = 180.0
    seed: int = 11
    asset: str = "BTCUSDT"
    start_ms: int = 0
    end_ms: int = 0

    def entries(self) -> list[EntryIntent]:
        step = round(self.every_s * 1000)
        last = self.end_ms - round(self.max_hold_s * 1000) - 60_000
        times = range(self.start_ms + step, last + 1, step) if step > 0 else range(0)
        coins = np.random.default_rng(self.seed).random(len(times)) < 0.5
        return [
            EntryIntent(t, f"b{k:05d}", self.asset, "LONG" if long else "SHORT")
            for k, (t, long) in enumerate(zip(times, coins, strict=True), 1)
        ]

    def scheduled_exits(self) -> list[ExitIntent]:
        return []

    def describe(self) -> str:
        return (
            f"bracket: an entry every {self.every_s:g} s, TP {self.take_profit_bps:g} bps / "
            f"SL {self.stop_loss_bps:g} bps / max hold {self.max_hold_s:g} s"
        )

    def exits_after_fill(
        self, tape: Tape, intent: EntryIntent, fill_ms: int, fill_price: float
    ) -> list[tuple[int, str]]:
        long = intent.position_side == "LONG"
        hold_end = fill_ms + round(self.max_hold_s * 1000)
        lo, hi = tape.after(fill_ms), tape.after(hold_end)
        mid = tape.mid
        tp = fill_price * (1 + (self.take_profit_bps if long else -self.take_profit_bps) / 1e4)
        sl = fill_price * (1 - (self.stop_loss_bps if long else -self.stop_loss_bps) / 1e4)
        if long:
            i_tp = first_true(lambda a, b: mid[a:b] >= tp, lo, hi)
            i_sl = first_true(lambda a, b: mid[a:b] <= sl, lo, hi)
        else:
            i_tp = first_true(lambda a, b: mid[a:b] <= tp, lo, hi)
            i_sl = first_true(lambda a, b: mid[a:b] >= sl, lo, hi)
        out = [(hold_end, "MAX_HOLD")]
        if i_tp >= 0:
            out.append((int(tape.ts[i_tp]), "TAKE_PROFIT"))
        if i_sl >= 0:
            out.append((int(tape.ts[i_sl]), "CATASTROPHIC_LOSS"))
        return sorted(out)


@dataclass(frozen=True)
class IntentList:
    """Intents read from a file: entries and exits at fixed times."""

    entry_intents: list[EntryIntent] = field(default_factory=list)
    exit_intents: list[ExitIntent] = field(default_factory=list)

    def entries(self) -> list[EntryIntent]:
        return list(self.entry_intents)

    def scheduled_exits(self) -> list[ExitIntent]:
        return list(self.exit_intents)

    def describe(self) -> str:
        return f"intents file: {len(self.entry_intents)} entries, {len(self.exit_intents)} exits"

    def exits_after_fill(
        self, tape: Tape, intent: EntryIntent, fill_ms: int, fill_price: float
    ) -> list[tuple[int, str]]:
        return []
