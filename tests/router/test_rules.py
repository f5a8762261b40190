"""The five design rules of the execution router, on both backends.

1. Exits are never skipped.  2. One working order per slot.  3. Bounded
retries.  4. Pure policy (no I/O).  5. The default config is pure taker.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exec_router.constants import COUNTER_KEYS, LOGGER, VALID_EXHAUST, VALID_STYLES, MissAction

from ..support import FAR_FUTURE, RecordingLogger, entry_plan, exit_plan, register

if TYPE_CHECKING:
    from conftest import FakeClock, Impl

NAN = math.nan
INF = math.inf
FIXTURES_OK = settings(suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)

EXIT_REASONS: list[Any] = [
    "TAKE_PROFIT",
    "take_profit",
    " TAKE_PROFIT",
    "CATASTROPHIC_LOSS",
    "MAX_HOLD",
    "MEAN_REVERSION",
    "RECONCILE",
    "",
    None,
]
PRICES: list[Any] = [65000.0, 65000, 0.5, 0.0, -1.0, NAN, INF, -INF]
SPREADS: list[Any] = [None, 0.0, 4.9, 5.0, 5.1, 50.0, NAN, "3"]
SIDES = ["LONG", "SHORT", "long", "short"]


def maker_exit_expected(style: str, reason: Any, price: Any, spread: Any) -> bool:
    if style not in ("maker_exit", "maker_both") or str(reason or "").upper() != "TAKE_PROFIT":
        return False
    if not (isinstance(price, (int, float)) and 0.0 < price < INF):
        return False
    return spread is None or float(spread) <= 5.0


def assert_goes_out(plan: Any, reason: Any) -> None:
    """The exit reaches the venue: not suppressed, sane, an EXIT."""
    assert plan.suppress is False
    assert plan.sane()
    assert plan.action == "EXIT"
    if plan.order_type == "MARKET":
        assert plan.reason == f"taker_exit:{reason}"
        assert plan.is_maker is False
    else:
        assert plan.reason == "maker_exit:TAKE_PROFIT"
        assert plan.is_maker is True


# ── rule 1: exits are never skipped ──────────────────────────────────────────


@pytest.mark.parametrize("reason", EXIT_REASONS)
@pytest.mark.parametrize("style", VALID_STYLES)
def test_rule1_every_exit_combination_reaches_the_venue(
    impl: Impl, style: str, reason: Any
) -> None:
    router = impl.router(style)
    n = 0
    for price in PRICES:
        for spread in SPREADS:
            for side in SIDES:
                plan = exit_plan(
                    router,
                    reason=reason,
                    reference_price=price,
                    spread_bps=spread,
                    position_side=side,
                )
                n += 1
                assert_goes_out(plan, reason)
                expected = maker_exit_expected(style, reason, price, spread)
                assert (plan.order_type == "LIMIT") is expected, (price, spread, side)
    counters = router.counters
    assert counters["plans_exit"] == n
    assert counters["maker_exits"] + counters["taker_exits"] == n
    assert counters["suppressed_dup_exit"] == 0


@FIXTURES_OK
@given(
    style=st.sampled_from(VALID_STYLES),
    reason=st.one_of(st.none(), st.text(max_size=12), st.sampled_from(EXIT_REASONS)),
    price=st.one_of(st.none(), st.floats(), st.integers(), st.text(max_size=5)),
    spread=st.one_of(st.none(), st.floats(), st.integers(), st.text(max_size=5)),
    side=st.one_of(st.none(), st.text(max_size=6), st.sampled_from(SIDES)),
)
def test_rule1_property_exit_never_suppressed_never_raises(
    impl: Impl, style: str, reason: Any, price: Any, spread: Any, side: Any
) -> None:
    router = impl.router(style)
    plan = exit_plan(
        router, reason=reason, reference_price=price, spread_bps=spread, position_side=side
    )
    assert plan.suppress is False
    assert plan.sane()
    assert plan.action == "EXIT"
    assert router.counters["maker_exits"] + router.counters["taker_exits"] == 1


@pytest.mark.parametrize("style", VALID_STYLES)
def test_rule1_hook_cannot_suppress_an_exit(impl: Impl, style: str) -> None:
    router = impl.router(style)
    seen: list[Any] = []

    def suppress(plan: Any, ctx: dict[str, Any]) -> Any:
        seen.append(plan)
        return impl.ExecutionPlan(action="EXIT", suppress=True, reason="depth_gate")

    router.register_hook("pre_submit", suppress)
    for reason in ("TAKE_PROFIT", "MAX_HOLD"):
        plan = exit_plan(router, reason=reason)
        assert plan == impl.ExecutionPlan(action="EXIT", reason="hook_suppress_overridden_market")
    assert len(seen) == 2
    assert router.counters["taker_exits"] == 2


def test_rule1_insane_or_raising_hooks_still_give_an_exit(impl: Impl) -> None:
    router = impl.router("maker_exit", logger=RecordingLogger())

    def insane(plan: Any, ctx: dict[str, Any]) -> Any:
        return impl.ExecutionPlan(order_type="LIMIT", limit_price=0.0, action="EXIT")

    def boom(plan: Any, ctx: dict[str, Any]) -> Any:
        raise RuntimeError("boom")

    router.register_hook("pre_plan", boom)
    router.register_hook("pre_submit", insane)
    router.register_hook("pre_submit", boom)
    plan = exit_plan(router)
    assert plan.order_type == "LIMIT"
    assert plan.reason == "maker_exit:TAKE_PROFIT"
    assert router.counters["hook_errors"] == 2


def test_rule1_missed_maker_exit_escalates_to_market_on_the_same_trade(
    impl: Impl, clock: FakeClock
) -> None:
    router = impl.router("maker_exit", clock=clock)
    plan = exit_plan(router, trade_id="T9")
    wo = router.register_working(trade_id="T9", asset="BTCUSDT", position_side="LONG", plan=plan)
    assert wo.retries_left == 0
    clock.now = wo.deadline
    assert router.expired() == [wo]
    tid, fallback = router.market_fallback_plan(wo)
    assert tid == "T9"
    assert fallback == impl.ExecutionPlan(
        action="EXIT", reason="exit_ttl_market_fallback", metadata={"base_trade_id": "T9"}
    )
    assert router.counters["exit_escalations"] == 1


@pytest.mark.parametrize("reason", ["TAKE_PROFIT", "take_profit"])
def test_rule1_only_exception_is_the_duplicate_guard(impl: Impl, reason: str) -> None:
    router = impl.router("maker_exit")
    register(router, impl, "T1", "EXIT")
    plan = exit_plan(router, trade_id="T1", reason=reason)
    assert plan == impl.ExecutionPlan(action="EXIT", suppress=True, reason="working_exit_exists")
    # Another trade's exit is not affected by T1's resting quote.
    assert_goes_out(exit_plan(router, trade_id="T2", reason=reason), reason)


# ── rule 2: one working order per slot ───────────────────────────────────────


@pytest.mark.parametrize("style", VALID_STYLES)
def test_rule2_duplicate_entry_is_suppressed(impl: Impl, style: str) -> None:
    router = impl.router(style)
    register(router, impl, "E1", "ENTER")
    plan = entry_plan(router, trade_id="E2")
    assert plan == impl.ExecutionPlan(
        action="ENTER", suppress=True, reason="working_entry_exists:E1"
    )
    assert router.counters["suppressed_dup_enter"] == 1
    assert router.counters["taker_entries"] == 0
    assert router.counters["maker_entries"] == 0
    assert router.counters["plans_entry"] == 1


def test_rule2_duplicate_entry_names_the_first_registered_entry(impl: Impl) -> None:
    router = impl.router()
    register(router, impl, "X0", "EXIT")  # exits do not occupy the entry slot
    register(router, impl, "E-b", "ENTER")
    register(router, impl, "E-a", "ENTER")
    assert entry_plan(router).reason == "working_entry_exists:E-b"
    router.note_cancel("E-b")
    assert entry_plan(router).reason == "working_entry_exists:E-a"
    router.note_fill("E-a")
    assert entry_plan(router).reason == "maker_entry"
    assert router.counters["suppressed_dup_enter"] == 2


def test_rule2_guard_runs_pre_plan_but_not_pre_submit(impl: Impl) -> None:
    router = impl.router()
    calls: list[str] = []
    router.register_hook("pre_plan", lambda p, c: calls.append("pre_plan"))
    router.register_hook("pre_submit", lambda p, c: calls.append("pre_submit"))
    register(router, impl, "E1", "ENTER")
    assert entry_plan(router, trade_id="E2").suppress is True
    assert calls == ["pre_plan"]


@pytest.mark.parametrize("release", ["note_fill", "note_cancel", "clear_working"])
def test_rule2_slot_frees_when_the_entry_leaves(impl: Impl, release: str) -> None:
    router = impl.router()
    register(router, impl, "E1", "ENTER")
    assert router.has_working_entry() is True
    getattr(router, release)("E1")
    assert router.has_working_entry() is False
    assert entry_plan(router, trade_id="E2").suppress is False


def test_rule2_duplicate_exit_is_suppressed_for_the_same_trade(impl: Impl) -> None:
    router = impl.router("maker_exit")
    register(router, impl, "T1", "EXIT")
    assert exit_plan(router, trade_id="T1").reason == "working_exit_exists"
    assert router.counters["suppressed_dup_exit"] == 1
    assert router.counters["maker_exits"] == 0
    assert router.counters["taker_exits"] == 0
    # A working ENTER under the same id is not an exit in flight.
    router.clear_working("T1")
    register(router, impl, "T1", "ENTER")
    assert exit_plan(router, trade_id="T1").reason == "maker_exit:TAKE_PROFIT"


@pytest.mark.parametrize("reason", ["CATASTROPHIC_LOSS", "MAX_HOLD", "MEAN_REVERSION", ""])
def test_rule2_urgent_exit_preempts_a_working_maker_exit(impl: Impl, reason: str) -> None:
    router = impl.router("maker_exit")
    wo = register(router, impl, "T1", "EXIT")
    plan = exit_plan(router, trade_id="T1", reason=reason)
    assert plan == impl.ExecutionPlan(
        action="EXIT", reason=f"escalate:{reason}", metadata={"preempt_working": True}
    )
    assert plan.order_type == "MARKET"
    assert router.counters["exit_escalations"] == 1
    assert router.counters["taker_exits"] == 0
    # The runtime cancels the resting quote; the router does not.
    assert router.working("T1") is wo


# ── rule 3: bounded retries ──────────────────────────────────────────────────


def drive_misses(router: Any, clock: FakeClock, limit: int = 50) -> tuple[list[Any], str, Any]:
    """Play the runtime's TTL loop for one entry until it stops retrying."""
    plan = entry_plan(router, trade_id="T")
    assert plan.is_maker
    wo = router.register_working(trade_id="T", asset="BTCUSDT", position_side="LONG", plan=plan)
    ids = [wo.trade_id]
    for _ in range(limit):
        clock.now = wo.deadline
        assert router.expired() == [wo]
        action = router.entry_miss_action(wo)
        router.note_cancel(wo.trade_id)
        if action != MissAction.RETRY:
            return ids, action, wo
        tid, plan = router.retry_plan(wo, reference_price=65000.0)
        wo = router.register_working(
            trade_id=tid,
            asset=wo.asset,
            position_side=wo.side,
            plan=plan,
            base_trade_id=wo.base_trade_id,
            retry_n=plan.metadata["retry_n"],
        )
        ids.append(tid)
    raise AssertionError("retries did not stop")


@pytest.mark.parametrize("exhaust", VALID_EXHAUST)
@pytest.mark.parametrize("retries", [0, 1, 2, 5, 10])
def test_rule3_retries_are_bounded_then_exhaust(
    impl: Impl, clock: FakeClock, retries: int, exhaust: str
) -> None:
    config = impl.ExecConfig(
        style="maker_entry", entry_miss="retry", entry_retries=retries, retry_exhaust=exhaust
    )
    router = impl.router(config=config, clock=clock)
    ids, action, last = drive_misses(router, clock)
    assert ids == ["T"] + [f"T-r{n}" for n in range(1, retries + 1)]
    assert action == exhaust
    assert last.retry_n == retries
    assert last.retries_left == 0
    assert router.counters["entry_miss_retry"] == retries
    assert router.counters[f"entry_miss_{exhaust}"] == 1
    assert router.working_orders() == []


def test_rule3_retry_plan_ids_and_metadata(impl: Impl, clock: FakeClock) -> None:
    config = impl.ExecConfig(style="maker_entry", entry_miss="retry", entry_retries=2)
    router = impl.router(config=config, clock=clock)
    wo = register(router, impl, "T", "ENTER", ttl_s=8.0)
    assert wo.retries_left == 2
    tid, plan = router.retry_plan(wo, reference_price=65000.0)
    assert tid == "T-r1"
    assert plan == impl.ExecutionPlan(
        order_type="LIMIT",
        limit_price=64999.9,
        post_only=True,
        ttl_s=8.0,
        is_maker=True,
        action="ENTER",
        reason="maker_entry_retry_1",
        metadata={"retry_n": 1, "base_trade_id": "T"},
    )
    wo1 = router.register_working(
        trade_id=tid,
        asset="BTCUSDT",
        position_side="LONG",
        plan=plan,
        base_trade_id="T",
        retry_n=1,
    )
    assert (wo1.base_trade_id, wo1.retry_n, wo1.retries_left) == ("T", 1, 1)
    tid2, plan2 = router.retry_plan(wo1, reference_price=65000.0)
    assert tid2 == "T-r2"
    assert plan2.reason == "maker_entry_retry_2"
    assert plan2.metadata == {"retry_n": 2, "base_trade_id": "T"}


def test_rule3_market_exhaust_gives_a_fresh_market_entry(impl: Impl, clock: FakeClock) -> None:
    config = impl.ExecConfig(
        style="maker_entry", entry_miss="retry", entry_retries=1, retry_exhaust="market"
    )
    router = impl.router(config=config, clock=clock)
    escalated: list[tuple[Any, dict[str, Any]]] = []
    router.register_hook("on_escalate", lambda wo, ctx: escalated.append((wo, ctx)))
    _, action, last = drive_misses(router, clock)
    assert action == MissAction.MARKET
    tid, plan = router.market_fallback_plan(last)
    assert tid == "T-m"
    assert plan == impl.ExecutionPlan(
        action="ENTER", reason="entry_miss_market_fallback", metadata={"base_trade_id": "T"}
    )
    assert escalated == [(last, {"to": "MARKET"})]
    assert router.counters["exit_escalations"] == 0


@pytest.mark.parametrize("mode", ["skip", "market"])
def test_rule3_skip_and_market_modes_never_requote(impl: Impl, mode: str) -> None:
    config = impl.ExecConfig(style="maker_entry", entry_miss=mode, entry_retries=5)
    router = impl.router(config=config)
    misses: list[dict[str, Any]] = []
    router.register_hook("on_miss", lambda wo, ctx: misses.append(ctx))
    wo = register(router, impl, "T", "ENTER")
    assert wo.retries_left == 5
    assert router.entry_miss_action(wo) == mode
    assert misses == [{"action": mode}]
    assert router.counters[f"entry_miss_{mode}"] == 1
    assert router.counters["entry_miss_retry"] == 0


# ── rule 4: pure policy ──────────────────────────────────────────────────────


class StrictLogger:
    """Fails the test on any attribute other than ``warning``."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"router touched logger.{name}")

    def warning(self, msg: str, *args: Any) -> None:
        self.messages.append(msg % args)


def lifecycle(impl: Impl, router: Any, clock: FakeClock) -> None:
    """Every router method once, driven by the fake clock."""
    calls: list[str] = []
    for stage in ("pre_plan", "pre_submit", "on_working", "on_fill", "on_miss", "on_escalate"):
        router.register_hook(stage, lambda p, c, s=stage: calls.append(s))
    router.register_hook("on_cancel", lambda p, c: 1 / 0)
    plan = entry_plan(router, trade_id="A")
    assert not inspect.isawaitable(plan)
    wo = router.register_working(trade_id="A", asset="BTCUSDT", position_side="LONG", plan=plan)
    clock.now += 100.0
    assert router.expired() == [wo]
    assert router.expired(now=0.0) == []
    router.snapshot()
    assert router.entry_miss_action(wo) == MissAction.RETRY
    router.retry_plan(wo, reference_price=65000)
    router.market_fallback_plan(wo)
    router.note_cancel("A")
    xplan = exit_plan(router, trade_id="B")
    router.register_working(trade_id="B", asset="BTCUSDT", position_side="LONG", plan=xplan)
    exit_plan(router, trade_id="B", reason="MAX_HOLD")
    router.note_fill("B")
    router.clear_working("B")
    router.tick_size("ETHUSDT")
    router.maker_price(asset="ETHUSDT", order_side="BUY", reference_price=3000.0)
    router.order_side("EXIT", "SHORT")
    assert "on_fill" in calls
    assert router.counters["hook_errors"] == 1


@contextlib.contextmanager
def no_io() -> Iterator[list[str]]:
    """Collect I/O audit events (files, sockets, processes, sleeps)."""
    banned: tuple[str, ...] = ("open", "socket.", "subprocess.", "os.system", "os.exec")
    banned += ("os.posix_spawn", "os.fork", "time.sleep", "urllib.", "http.", "ctypes.")
    events: list[str] = []
    if not state["installed"]:
        sys.addaudithook(_audit)  # audit hooks cannot be removed: it only records in here
        state["installed"] = True
    state["sink"] = events
    try:
        yield events
    finally:
        state["sink"] = None
    assert [e for e in events if e.startswith(banned)] == []


state: dict[str, Any] = {"sink": None, "installed": False}


def _audit(event: str, args: tuple[Any, ...]) -> None:
    sink = state["sink"]
    if sink is not None:
        sink.append(event)


def test_rule4_router_does_no_io(
    impl: Impl, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = impl.ExecConfig(style="maker_both", entry_miss="retry")
    lifecycle(impl, impl.router(config=config, clock=clock), clock)  # warm-up imports

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the router read a clock other than the injected one")

    for name in ("time", "monotonic", "perf_counter", "time_ns", "monotonic_ns", "sleep"):
        monkeypatch.setattr(time, name, forbidden)
    logger = StrictLogger()
    router = impl.router(config=config, logger=logger, clock=clock)
    before = clock.calls
    with no_io():
        lifecycle(impl, router, clock)
    assert clock.calls > before
    assert any("failed at on_cancel" in m for m in logger.messages)


def test_rule4_planning_does_not_read_the_clock(impl: Impl, clock: FakeClock) -> None:
    router = impl.router(clock=clock)
    entry_plan(router)
    exit_plan(router, trade_id="X")
    exit_plan(router, trade_id="X", reason="MAX_HOLD")
    assert clock.calls == 0
    wo = register(router, impl, "A", "ENTER")
    assert clock.calls == 1
    assert wo.submitted_at == clock.now
    router.expired(now=5.0)
    assert clock.calls == 1
    router.expired()
    assert clock.calls == 2


def test_rule4_defaults_are_the_monotonic_clock_and_package_logger(impl: Impl) -> None:
    router = impl.ExecutionRouter()
    assert router.clock is time.monotonic
    assert router.logger is LOGGER


# ── rule 5: default config == pure taker ─────────────────────────────────────


def test_rule5_default_router_is_pure_taker_with_empty_registry(impl: Impl) -> None:
    router = impl.ExecutionRouter()
    assert router.config == impl.ExecConfig()
    assert router.config == impl.ExecConfig.from_env(environ={})
    market_entry = impl.ExecutionPlan(action="ENTER", reason="taker_default")
    n = 0
    for side in SIDES:
        for price in PRICES:
            for spread in SPREADS:
                n += 1
                kw = {"position_side": side, "reference_price": price, "spread_bps": spread}
                assert entry_plan(router, trade_id=f"E{n}", **kw) == market_entry
                for reason in EXIT_REASONS:
                    plan = exit_plan(router, trade_id=f"X{n}", reason=reason, **kw)
                    assert plan == impl.ExecutionPlan(action="EXIT", reason=f"taker_exit:{reason}")
    assert router.working_orders() == []
    assert router.has_working_entry() is False
    assert router.expired(now=FAR_FUTURE) == []
    expected = dict.fromkeys(COUNTER_KEYS, 0)
    expected.update(
        plans_entry=n,
        taker_entries=n,
        plans_exit=n * len(EXIT_REASONS),
        taker_exits=n * len(EXIT_REASONS),
    )
    assert dict(router.counters) == expected
    assert router.snapshot() == {"style": "taker", "working": [], "counters": expected}


def test_rule5_taker_plans_carry_no_ttl_or_price(impl: Impl) -> None:
    router = impl.ExecutionRouter(None)
    plan = entry_plan(router)
    assert (plan.order_type, plan.limit_price, plan.ttl_s, plan.is_maker) == (
        "MARKET",
        0.0,
        0.0,
        False,
    )
    assert plan.post_only is False
    assert plan.metadata == {}
