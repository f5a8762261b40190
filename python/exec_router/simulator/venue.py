"""The simulated venue: latency, fees, post-only rejection, market and maker fills."""

from __future__ import annotations

from dataclasses import dataclass

from .book import Levels
from .fills import FillPath, fill_path
from .options import CANCEL_FROM, DEFAULT_FILL_MODEL, FILL_MODELS, MAKER_FEE_BPS, TAKER_FEE_BPS
from .tape import Tape


@dataclass(frozen=True)
class Venue:
    """How orders meet the tape.

    - An order (or a cancel) reaches the venue ``latency_ms`` after the runtime sends it;
      the venue's answers (acks, fills, rejections) reach the runtime at once.
    - A post-only quote that would cross the book on arrival is rejected.
    - A market order fills in full at the opposite best in force on arrival.
    - A resting quote fills at its limit price, when ``fill_model`` says so.
    - A quote's size: ``qty`` per symbol in the base asset, else ``notional`` / price, else
      0 (a minimal quote, one lot).
    """

    fill_model: str = DEFAULT_FILL_MODEL
    latency_ms: int = 50
    maker_fee_bps: float = MAKER_FEE_BPS
    taker_fee_bps: float = TAKER_FEE_BPS
    qty: tuple[tuple[str, float], ...] = ()
    notional: float | None = None
    cancel_from: str = "back"

    def __post_init__(self) -> None:
        if self.fill_model not in FILL_MODELS:
            raise ValueError(f"unknown fill model {self.fill_model!r}; choose from {FILL_MODELS}")
        if self.latency_ms < 0:
            raise ValueError("latency_ms must be >= 0")
        if any(not q > 0 for _, q in self.qty) or (
            self.notional is not None and not self.notional > 0
        ):
            raise ValueError("a quote size must be > 0")
        if self.cancel_from not in CANCEL_FROM:
            raise ValueError(f"unknown cancel_from {self.cancel_from!r}; choose from {CANCEL_FROM}")

    def size(self, symbol: str, price: float) -> float:
        """The size of a quote of ``symbol`` at ``price`` (0: minimal)."""
        for sym, q in self.qty:
            if sym == symbol:
                return q
        return self.notional / price if self.notional is not None else 0.0

    def crosses(self, tape: Tape, side: int, price: float, t_ms: int, eps: float) -> bool:
        """Would a limit order at ``price`` take liquidity on arrival at ``t_ms``?"""
        i = tape.asof(t_ms)
        if side > 0:
            return price >= float(tape.ask[i]) - eps
        return price <= float(tape.bid[i]) + eps

    def market_price(self, tape: Tape, side: int, t_ms: int) -> float:
        """A market order's fill price: the opposite best in force at ``t_ms``."""
        i = tape.asof(t_ms)
        return float(tape.ask[i] if side > 0 else tape.bid[i])

    def maker_fill(
        self,
        tape: Tape,
        side: int,
        price: float,
        start: int,
        end: int,
        eps: float,
        qty: float = 0.0,
        levels: Levels | None = None,
    ) -> FillPath | None:
        """How a quote resting from ``start`` until its cancel lands at ``end`` fills;
        ``levels``: the L2 book, when there are depth messages."""
        return fill_path(
            self.fill_model, tape, side, price, start, end, eps, qty, levels, self.cancel_from
        )

    def fee_bps(self, maker: bool) -> float:
        return self.maker_fee_bps if maker else self.taker_fee_bps
