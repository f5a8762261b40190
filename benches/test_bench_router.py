"""Router hot paths, Rust core vs pure reference (``make bench``).

Every case first checks that both implementations give the pure reference's
answer, then times ``INNER`` calls; pytest-benchmark groups the two per case.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from .conftest import IMPLS, REPEAT, ROUTER_IMPLS, Impl, timed

PURE = next(i for i in IMPLS if i.name == "pure")


@pytest.fixture(params=ROUTER_IMPLS, ids=[i.name for i in ROUTER_IMPLS])
def impl(request: pytest.FixtureRequest) -> Impl:
    """Native, pure, and the legacy module when ``make bench LEGACY=path`` gives one."""
    return request.param  # type: ignore[no-any-return]


def fields(plan: Any) -> tuple[Any, ...]:
    return tuple(getattr(plan, f.name) for f in dataclasses.fields(plan))


def entry(router: Any) -> Any:
    return router.plan_entry(
        trade_id="t1",
        asset="BTCUSDT",
        position_side="LONG",
        reference_price=65000.0,
        spread_bps=1.0,
    )


def exit_(router: Any, reason: str) -> Any:
    return router.plan_exit(
        trade_id="t1",
        asset="BTCUSDT",
        position_side="LONG",
        reference_price=65000.0,
        reason=reason,
        spread_bps=1.0,
    )


def entry_loop(router: Any) -> Callable[[], None]:
    """``INNER`` maker-style ``plan_entry`` calls, written out as a runtime makes them."""
    plan_entry = router.plan_entry

    def run() -> None:
        for _ in REPEAT:
            plan_entry(
                trade_id="t1",
                asset="BTCUSDT",
                position_side="LONG",
                reference_price=65000.0,
                spread_bps=1.0,
            )

    return run


def exit_loop(router: Any, reason: str) -> Callable[[], None]:
    """``INNER`` ``plan_exit`` calls for ``reason``."""
    plan_exit = router.plan_exit

    def run() -> None:
        for _ in REPEAT:
            plan_exit(
                trade_id="t1",
                asset="BTCUSDT",
                position_side="LONG",
                reference_price=65000.0,
                reason=reason,
                spread_bps=1.0,
            )

    return run


def test_floor_empty_call(benchmark: Any) -> None:
    """An empty Python function called with plan_entry's five keyword arguments."""

    def empty(
        *, trade_id: Any, asset: Any, position_side: Any, reference_price: Any, spread_bps: Any
    ) -> None:
        return None

    def run() -> None:
        for _ in REPEAT:
            empty(
                trade_id="t1",
                asset="BTCUSDT",
                position_side="LONG",
                reference_price=65000.0,
                spread_bps=1.0,
            )

    timed(benchmark, "floor: empty call, 5 kwargs", run)


PLANNING = [
    ("plan_entry maker", "maker_both", None, "LIMIT"),
    ("plan_entry taker", "taker", None, "MARKET"),
    ("plan_exit TAKE_PROFIT maker", "maker_both", "TAKE_PROFIT", "LIMIT"),
    ("plan_exit CATASTROPHIC_LOSS", "maker_both", "CATASTROPHIC_LOSS", "MARKET"),
]


@pytest.mark.parametrize(("case", "style", "reason", "order_type"), PLANNING)
def test_planning(
    benchmark: Any, impl: Impl, case: str, style: str, reason: str | None, order_type: str
) -> None:
    def plan(router: Any) -> Any:
        return entry(router) if reason is None else exit_(router, reason)

    r = impl.router(style)
    assert plan(r).order_type == order_type
    assert fields(plan(r)) == fields(plan(PURE.router(style)))
    run = entry_loop(r) if reason is None else exit_loop(r, reason)
    timed(benchmark, case, run, impl)


def test_plan_entry_with_hook(benchmark: Any, impl: Impl) -> None:
    r = impl.router("maker_both")
    r.register_hook("pre_submit", lambda plan, ctx: None)
    assert fields(entry(r)) == fields(entry(PURE.router("maker_both")))
    run = entry_loop(r)
    timed(benchmark, "plan_entry maker, 1 pre_submit hook", run, impl)


def maker_price_loop(impl: Impl) -> Callable[[], None]:
    """``INNER`` ``maker_price`` calls, checked once."""
    r = impl.router()
    assert r.maker_price(asset="ETHUSDT", order_side="SELL", reference_price=3000.0) == 3000.01
    maker_price = r.maker_price

    def run() -> None:
        for _ in REPEAT:
            maker_price(asset="ETHUSDT", order_side="SELL", reference_price=3000.0)

    return run


def register_fill_loop(impl: Impl) -> Callable[[], None]:
    """``INNER`` ``register_working`` + ``note_fill`` pairs, checked once."""
    r = impl.router()
    plan = entry(r)
    register, fill = r.register_working, r.note_fill

    def run() -> None:
        for _ in REPEAT:
            register(trade_id="t1", asset="BTCUSDT", position_side="LONG", plan=plan)
            fill("t1")

    run()
    assert r.counters["fills_working"] == len(REPEAT)
    assert r.working_orders() == []
    return run


def test_maker_price(benchmark: Any, impl: Impl) -> None:
    timed(benchmark, "maker_price", maker_price_loop(impl), impl)


def test_register_and_fill(benchmark: Any, impl: Impl) -> None:
    timed(benchmark, "register_working + note_fill", register_fill_loop(impl), impl)


def registry(impl: Impl, n: int, action: str, due: int = 0) -> Any:
    """A router with ``n`` working orders, ``due`` of them (spread out) due at 1001."""
    r = impl.router()
    long_plan = impl.module.ExecutionPlan(
        order_type="LIMIT", limit_price=1.0, ttl_s=60.0, is_maker=True, action=action
    )
    short_plan = dataclasses.replace(long_plan, ttl_s=1.0)
    step = n // due if due else n + 1
    register = r.register_working
    for i in range(n):
        plan = short_plan if i % step == 0 and i // step < due else long_plan
        register(trade_id=f"w{i}", asset="BTCUSDT", position_side="LONG", plan=plan)
    return r


def test_expired_none_due(benchmark: Any, impl: Impl) -> None:
    r = registry(impl, 10_000, "EXIT")
    assert r.expired(1001.0) == []
    expired = r.expired

    def run() -> None:
        for _ in REPEAT:
            expired(1001.0)

    timed(benchmark, "expired(), 10k working, none due", run, impl)


def test_plan_entry_with_working_exits(benchmark: Any, impl: Impl) -> None:
    r = registry(impl, 10_000, "EXIT")
    assert fields(entry(r)) == fields(entry(PURE.router("maker_both")))
    run = entry_loop(r)
    timed(benchmark, "plan_entry, 10k working exits", run, impl)
