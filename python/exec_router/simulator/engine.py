"""The simulated runtime: drives the real router over a tape, one event per order step.

The loop is event-driven over intents and orders, not over tape rows. Each question about
the market ("when does this quote fill?", "when does the mid reach the stop?") is one numpy
search over the tape, so a day of tape costs a few thousand Python steps.

Per order, exactly as a live runtime: plan -> submit -> ``register_working`` (maker quotes)
-> poll ``expired`` at the deadline -> cancel -> ``note_cancel`` -> ``entry_miss_action`` ->
``retry_plan`` / ``market_fallback_plan``. An urgent exit that comes back with
``preempt_working`` cancels the resting maker exit (``note_cancel``) before it is sent.
"""

from __future__ import annotations

import dataclasses
import heapq
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from exec_router import ExecConfig, ExecutionPlan, ExecutionRouter, MissAction, WorkingOrder

from .book import Levels, levels_of
from .clock import SimClock
from .fills import FillPath
from .market import Market
from .strategy import EntryIntent, ExitIntent, Strategy
from .tape import Tape
from .venue import Venue

#: Outcomes of an entry intent; each intent ends in exactly one.
OUTCOMES = ("maker", "taker", "skipped", "suppressed", "aborted")
END_OF_TAPE = "END_OF_TAPE"
_NEVER = 2**62


class SimulationError(RuntimeError):
    """The router broke a promise the simulated runtime relies on."""


@dataclass(frozen=True)
class Fill:
    """A leg's fill: its first fill time, average price, and the share filled as maker.

    ``qty`` is the size filled (0 for a minimal quote, the default).
    """

    ms: int
    price: float
    maker: bool
    qty: float = 0.0
    maker_share: float | None = None  # None: 1 if maker, else 0

    @property
    def maker_part(self) -> float:
        if self.maker_share is None:
            return 1.0 if self.maker else 0.0
        return self.maker_share


@dataclass(eq=False)
class Trade:
    """One entry intent and, if it filled, its position's exit."""

    intent: EntryIntent
    side: int  # +1 long, -1 short
    decision_ms: int
    decision_mid: float
    outcome: str = "pending"
    entry: Fill | None = None
    entry_tid: str | None = None
    retries: int = 0
    entry_rejects: int = 0
    quotes: int = 0  # maker quotes sent, entry and exit
    quote_fills: int = 0  # fills of quotes still registered (reported with note_fill)
    giveup_ms: int | None = None
    giveup_mid: float | None = None
    exit_reason: str | None = None
    exit_decision_ms: int | None = None
    exit_decision_mid: float | None = None
    exit: Fill | None = None
    exit_rejects: int = 0
    exit_fallbacks: int = 0  # missed maker exits sent as MARKET
    preemptions: int = 0  # urgent exits that cancelled a resting maker exit
    quoted_qty: float = 0.0  # size of every maker quote sent (a minimal quote counts 1)
    quoted_filled: float = 0.0  # of which filled
    exit_maker_part: tuple[float, float] | None = None  # (qty, price) a partial exit filled
    closed: bool = False
    abort_reason: str | None = None
    # runtime state
    entry_order: Order | None = None
    exit_quote: Order | None = None
    exit_market: Order | None = None


@dataclass(eq=False)
class Order:
    tid: str
    trade: Trade
    plan: ExecutionPlan
    side: int  # +1 buy, -1 sell
    sent_ms: int
    arrive_ms: int
    wo: WorkingOrder | None = None
    deadline_ms: int = _NEVER
    cancel_at: int = _NEVER  # when a cancel lands at the venue
    state: str = "sent"  # sent -> [live ->] cancelling -> done; or cancelled (by the runtime)
    qty: float = 0.0
    path: FillPath | None = None
    partial: bool = False  # filled in part and still resting (queue model, qty > 0)

    @property
    def action(self) -> str:
        return self.plan.action


@dataclass
class StyleRun:
    """What one simulation produced: every trade, the router's counters, the timing."""

    config: ExecConfig
    trades: list[Trade]
    counters: dict[str, int]
    seconds: float = 0.0


class Simulation:
    """One router, one config, one pass over the tape of every symbol.

    One router drives every symbol, as one runtime process does: its duplicate-entry
    guard and its counters span them all.
    """

    def __init__(
        self,
        tape: Tape | Market,
        config: ExecConfig,
        strategy: Strategy,
        venue: Venue | None = None,
        *,
        progress: Callable[[], None] | None = None,
        router_cls: Callable[..., ExecutionRouter] | None = None,
    ) -> None:
        self.market = tape if isinstance(tape, Market) else Market.of(tape)
        self.config = config
        self.strategy = strategy
        self.venue = venue or Venue()
        self.clock = SimClock(self.market.start_ms / 1000.0)
        self.router = (router_cls or ExecutionRouter)(config, clock=self.clock)
        self.trades: list[Trade] = []
        self._by_id: dict[str, Trade] = {}
        self._heap: list[tuple[int, int, Callable[[], None]]] = []
        self._seq = 0
        self._now = self.market.start_ms
        self._held: list[Trade] = []  # entries suppressed while the guard holds
        self._progress = progress
        self._eps: dict[str, float] = {}

    # ── event queue ──────────────────────────────────────────────────────────

    def _at(self, t_ms: int, fn: Callable[[], None]) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t_ms, self._seq, fn))

    def _drain(self) -> None:
        heap = self._heap
        while heap:
            t, _, fn = heapq.heappop(heap)
            self._now = t
            self.clock.set_ms(t)
            fn()

    def run(self) -> list[Trade]:
        for intent in self.strategy.entries():
            self._at(intent.ts_ms, partial(self._on_entry_intent, intent))
        for ex in self.strategy.scheduled_exits():
            self._at(ex.ts_ms, partial(self._on_exit_intent, ex))
        self._drain()
        self._release(force=True)
        for trade in self.trades:
            if trade.entry is not None and not trade.closed and trade.exit_market is None:
                end = max(self._now, self._tape(trade).end_ms)
                self._at(end, partial(self._exit, trade, END_OF_TAPE))
        self._drain()
        return self.trades

    # ── market helpers ───────────────────────────────────────────────────────

    def _tape(self, trade: Trade) -> Tape:
        return self._tape_of(trade.intent.asset)

    def _tape_of(self, asset: str) -> Tape:
        tape = self.market.tapes.get(asset)
        if tape is None:
            raise SimulationError(
                f"an intent names {asset!r}, which is not on the tape "
                f"({', '.join(self.market.symbols)})"
            )
        return tape

    def _levels(self, trade: Trade) -> Levels | None:
        """The L2 book of the trade's symbol, for the queue model (None without depth)."""
        if self.venue.fill_model != "queue":
            return None
        depth = self.market.depth.get(trade.intent.asset)
        return None if depth is None or not depth.messages else levels_of(depth)

    def _book(self, asset: str, t_ms: int) -> tuple[float, float, float]:
        tape = self._tape_of(asset)
        i = tape.asof(t_ms)
        bid, ask = float(tape.bid[i]), float(tape.ask[i])
        return bid, ask, float(tape.mid[i])

    def _release(self, *, force: bool = False) -> None:
        """Entries the guard suppressed are priced until it lets go (or the tape ends)."""
        if self._held and (force or not self.router.has_working_entry()):
            for trade in self._held:
                trade.giveup_ms = self._now
                trade.giveup_mid = self._book(trade.intent.asset, self._now)[2]
            self._held.clear()

    def _eps_for(self, asset: str, mid: float) -> float:
        """Price tolerance for 'at the quote': 1% of a tick (quotes are not snapped)."""
        eps = self._eps.get(asset)
        if eps is None:
            tick = self.router.tick_size(asset) or mid * 1e-5
            eps = self._eps[asset] = tick * 0.01
        return eps

    # ── intents ──────────────────────────────────────────────────────────────

    def _on_entry_intent(self, intent: EntryIntent) -> None:
        t = self._now
        bid, ask, mid = self._book(intent.asset, t)
        side = 1 if intent.position_side.upper() == "LONG" else -1
        trade = Trade(intent=intent, side=side, decision_ms=t, decision_mid=mid)
        self.trades.append(trade)
        self._by_id[intent.trade_id] = trade
        plan = self.router.plan_entry(
            trade_id=intent.trade_id,
            asset=intent.asset,
            position_side=intent.position_side,
            reference_price=bid if side > 0 else ask,
            spread_bps=(ask - bid) / mid * 1e4,
        )
        if plan.suppress:
            trade.outcome = "suppressed"
            self._held.append(trade)
        else:
            self._send(trade, intent.trade_id, plan)
        if self._progress is not None:
            self._progress()

    def _on_exit_intent(self, ex: ExitIntent) -> None:
        trade = self._by_id.get(ex.trade_id)
        if trade is None or trade.closed or trade.outcome in ("skipped", "suppressed"):
            return
        if trade.entry is not None:
            self._exit(trade, ex.reason)
            return
        order = trade.entry_order
        trade.abort_reason = ex.reason
        if order is not None and order.wo is not None and order.state in ("sent", "live"):
            # The alpha gave up on a working entry: cancel it; no miss policy applies.
            order.state = "cancelled"
            order.cancel_at = min(order.cancel_at, self._now + self.venue.latency_ms)
            self.router.note_cancel(order.tid)
            self._release()
            self._give_up(trade, "aborted")

    # ── orders ───────────────────────────────────────────────────────────────

    def _send(
        self,
        trade: Trade,
        tid: str,
        plan: ExecutionPlan,
        *,
        base: Any = None,
        retry_n: int | None = None,
        qty: float = 0.0,
    ) -> None:
        t = self._now
        side = trade.side if plan.action == "ENTER" else -trade.side
        order = Order(tid, trade, plan, side, t, t + self.venue.latency_ms, qty=qty)
        if plan.action == "ENTER" and not qty:
            order.qty = self.venue.size(
                trade.intent.asset, plan.limit_price or self._book(trade.intent.asset, t)[2]
            )
        if plan.is_maker:
            trade.quoted_qty += order.qty or 1.0
            wo = self.router.register_working(
                trade_id=tid,
                asset=trade.intent.asset,
                position_side=trade.intent.position_side,
                plan=plan,
                base_trade_id=base,
                retry_n=retry_n,
            )
            order.wo = wo
            order.deadline_ms = round(wo.deadline * 1000.0)
            order.cancel_at = order.deadline_ms + self.venue.latency_ms
            trade.quotes += 1
            self._at(order.arrive_ms, lambda: self._on_quote_arrive(order))
            # Polled whether or not the venue has acknowledged the quote yet.
            self._at(order.deadline_ms, lambda: self._on_deadline(order))
        else:
            self._at(order.arrive_ms, lambda: self._on_market_arrive(order))
        if plan.action == "ENTER":
            trade.entry_order = order
        elif plan.is_maker:
            trade.exit_quote = order
        else:
            trade.exit_market = order

    def _on_quote_arrive(self, order: Order) -> None:
        t = self._now
        if order.cancel_at <= t:
            return  # the cancel got there first
        trade, price = order.trade, order.plan.limit_price
        eps = self._eps_for(trade.intent.asset, trade.decision_mid)
        tape = self._tape(trade)
        if self.venue.crosses(tape, order.side, price, t, eps):
            if order.plan.post_only:
                self._on_reject(order)
            else:  # a plain limit that crosses takes liquidity at the opposite best
                if order.state != "cancelled":  # else the router has already forgotten it
                    self._note_fill(order)
                self._filled(order, self.venue.market_price(tape, order.side, t), False)
            return
        if order.state == "sent":
            order.state = "live"
        path = self.venue.maker_fill(
            tape, order.side, price, t, order.cancel_at, eps, order.qty, self._levels(trade)
        )
        if path is not None:
            order.path = path
            tf = path.first_ms
            self._at(tf, lambda: self._on_quote_fill(order, tf))

    def _on_quote_fill(self, order: Order, tf: int) -> None:
        if order.state == "done" or tf >= order.cancel_at:
            return
        if order.state != "cancelled":
            self._note_fill(order)
        path = order.path
        assert path is not None
        if path.full_ms == tf:
            order.trade.quoted_filled += order.qty or 1.0
            self._filled(order, order.plan.limit_price, True)
            return
        # Filled in part: the rest rests until it fills in full or the runtime's cancel
        # (at the TTL, or sooner) lands. The router was told note_fill at this first part.
        order.partial = True
        if order.action == "ENTER":
            self._filled(order, order.plan.limit_price, True, path.filled_before(tf + 1))
        self._at_end(order)

    def _at_end(self, order: Order) -> None:
        path = order.path
        assert path is not None
        end = order.cancel_at if path.full_ms is None else min(path.full_ms, order.cancel_at)
        self._at(end, lambda: self._on_quote_end(order))

    def _ended(self, order: Order) -> float:
        """What a partly filled quote holds when it ends (filled in full, or the cancel)."""
        path = order.path
        assert path is not None
        if path.full_ms is not None and path.full_ms < order.cancel_at:
            return path.qty
        return path.filled_before(order.cancel_at)

    def _on_quote_end(self, order: Order) -> None:
        path = order.path
        assert path is not None
        if not order.partial:
            return
        end = order.cancel_at if path.full_ms is None else min(path.full_ms, order.cancel_at)
        if self._now < end:
            return  # the cancel moved; a later event ends it
        order.partial = False
        order.state = "done"
        filled = self._ended(order)
        trade = order.trade
        trade.quoted_filled += filled
        price = order.plan.limit_price
        if order.action == "ENTER":
            assert trade.entry is not None
            trade.entry = dataclasses.replace(trade.entry, qty=filled)
            return
        rest = order.qty - filled
        if rest <= 1e-12 * order.qty or trade.closed:
            self._filled(order, price, True, filled)
            return
        # The rest of a missed exit escalates to MARKET, as a whole miss does.
        trade.exit_maker_part = (filled, price)
        assert order.wo is not None
        tid, plan = self.router.market_fallback_plan(order.wo)
        trade.exit_fallbacks += 1
        self._send(trade, tid, plan, qty=rest)

    def _note_fill(self, order: Order) -> None:
        self.router.note_fill(order.tid)
        order.trade.quote_fills += 1
        self._release()

    def _on_deadline(self, order: Order) -> None:
        if order.state not in ("sent", "live") or order.partial:
            return
        assert order.wo is not None
        self.clock.now = max(self.clock.now, order.wo.deadline)
        if not any(wo.trade_id == order.tid for wo in self.router.expired()):
            raise SimulationError(f"router.expired() did not list {order.tid!r} at its deadline")
        order.state = "cancelling"
        self._at(order.cancel_at, lambda: self._on_cancel_landed(order))

    def _on_cancel_landed(self, order: Order) -> None:
        if order.state != "cancelling" or order.partial:
            return  # it filled (in full, or in part: see _on_quote_end) before the cancel
        order.state = "done"
        self.router.note_cancel(order.tid)
        self._release()
        self._on_miss(order)

    def _on_reject(self, order: Order) -> None:
        if order.state == "cancelled":
            return  # the runtime had already moved on
        order.state = "done"
        if order.action == "ENTER":
            order.trade.entry_rejects += 1
        else:
            order.trade.exit_rejects += 1
        self.router.note_cancel(order.tid)  # a rejected quote leaves the registry as a miss
        self._release()
        self._on_miss(order)

    def _on_miss(self, order: Order) -> None:
        trade, wo = order.trade, order.wo
        assert wo is not None
        if order.action == "EXIT":
            if trade.closed or trade.exit_market is not None:
                return
            tid, plan = self.router.market_fallback_plan(wo)
            trade.exit_fallbacks += 1
            self._send(trade, tid, plan, qty=order.qty)
            return
        if trade.abort_reason is not None:
            self._give_up(trade, "aborted")
            return
        action = self.router.entry_miss_action(wo)
        if action == MissAction.RETRY:
            bid, ask, _ = self._book(trade.intent.asset, self._now)
            tid, plan = self.router.retry_plan(wo, reference_price=bid if order.side > 0 else ask)
            trade.retries += 1
            retry_n = plan.metadata.get("retry_n")
            self._send(trade, tid, plan, base=wo.base_trade_id, retry_n=retry_n)
        elif action == MissAction.MARKET:
            tid, plan = self.router.market_fallback_plan(wo)
            self._send(trade, tid, plan)
        else:
            self._give_up(trade, "skipped")

    def _on_market_arrive(self, order: Order) -> None:
        if order.action == "EXIT" and order.trade.closed:
            order.state = "done"  # reduce-only: the position is already flat
            return
        price = self.venue.market_price(self._tape(order.trade), order.side, self._now)
        self._filled(order, price, False)

    def _filled(self, order: Order, price: float, maker: bool, qty: float | None = None) -> None:
        if not order.partial:
            order.state = "done"
        trade, t = order.trade, self._now
        fill = Fill(t, price, maker, order.qty if qty is None else qty)
        if order.action == "EXIT" and trade.exit_maker_part is not None:
            m_qty, m_px = trade.exit_maker_part  # a partial maker exit, the rest at market
            total = m_qty + fill.qty
            avg = (m_qty * m_px + fill.qty * price) / total
            fill = Fill(t, avg, False, total, m_qty / total)
        if order.action == "ENTER":
            trade.entry, trade.entry_tid = fill, order.tid
            trade.outcome = "maker" if maker else "taker"
            trade.giveup_ms = trade.giveup_mid = None
            exits = self.strategy.exits_after_fill(self._tape(trade), trade.intent, t, price)
            for ts, reason in exits:
                self._at(max(ts, t), partial(self._exit, trade, reason))
            if trade.abort_reason is not None:  # filled in the cancel's flight: close it
                self._exit(trade, trade.abort_reason)
        else:
            trade.exit, trade.closed = fill, True

    def _give_up(self, trade: Trade, outcome: str) -> None:
        trade.outcome = outcome
        trade.giveup_ms = self._now
        trade.giveup_mid = self._book(trade.intent.asset, self._now)[2]

    # ── exits ────────────────────────────────────────────────────────────────

    def _exit(self, trade: Trade, reason: str) -> None:
        if trade.closed or trade.exit_market is not None or trade.entry_tid is None:
            return
        quote = trade.exit_quote
        if quote is not None and quote.partial:
            return  # a partly filled maker exit rests; its rest escalates at its end
        t = self._now
        entry = trade.entry_order
        if entry is not None and entry.partial and entry.cancel_at > t + self.venue.latency_ms:
            # The position is closing: cancel what the entry quote has not filled yet.
            entry.cancel_at = t + self.venue.latency_ms
            self._at_end(entry)
        bid, ask, mid = self._book(trade.intent.asset, t)
        plan = self.router.plan_exit(
            trade_id=trade.entry_tid,
            asset=trade.intent.asset,
            position_side=trade.intent.position_side,
            reference_price=ask if trade.side > 0 else bid,
            reason=reason,
            spread_bps=(ask - bid) / mid * 1e4,
        )
        if plan.suppress:
            return  # the resting maker exit is the exit in flight
        if trade.exit_decision_ms is None:
            trade.exit_decision_ms, trade.exit_decision_mid = t, mid
            trade.exit_reason = reason
        if plan.metadata.get("preempt_working"):
            quote = trade.exit_quote
            if quote is None:
                raise SimulationError(f"preempt_working for {trade.entry_tid!r}: no quote rests")
            quote.state = "cancelled"
            quote.cancel_at = min(quote.cancel_at, t + self.venue.latency_ms)
            self.router.note_cancel(quote.tid)
            self._release()
            trade.preemptions += 1
        self._send(trade, trade.entry_tid, plan, qty=self._position(trade))

    def _position(self, trade: Trade) -> float:
        """The size an exit closes: what the entry filled (0 for minimal quotes)."""
        entry = trade.entry_order
        if entry is not None and entry.partial:
            return self._ended(entry)
        return trade.entry.qty if trade.entry is not None else 0.0


def simulate(
    tape: Tape | Market,
    config: ExecConfig,
    strategy: Strategy,
    venue: Venue | None = None,
    *,
    progress: Callable[[], None] | None = None,
    router_cls: Callable[..., ExecutionRouter] | None = None,
) -> StyleRun:
    """Replay ``tape`` through a fresh router built from ``config``.

    ``router_cls`` defaults to ``exec_router.ExecutionRouter`` (the selected backend).
    """
    start = time.perf_counter()
    sim = Simulation(tape, config, strategy, venue, progress=progress, router_cls=router_cls)
    trades = sim.run()
    return StyleRun(config, trades, dict(sim.router.counters), time.perf_counter() - start)
