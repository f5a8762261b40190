"""Router hot paths, Rust core vs pure reference (``make bench``).

Each case checks that both implementations return the same answer, then
times one of them; pytest-benchmark groups the two per case.
"""

from __future__ import annotations

import dataclasses
from types import ModuleType
from typing import Any

import pytest

from exec_router import ExecConfig

N_WORKING = 10_000


def plan_fields(plan: Any) -> tuple[Any, ...]:
    return tuple(getattr(plan, f.name) for f in dataclasses.fields(plan))


def router(module: ModuleType, style: str = "maker_both") -> Any:
    return module.ExecutionRouter(ExecConfig(style=style), clock=lambda: 1000.0)


ENTRY = {"trade_id": "t1", "asset": "BTCUSDT", "position_side": "LONG", "reference_price": 65000.0}
EXIT_TP = {**ENTRY, "reason": "TAKE_PROFIT"}
EXIT_CL = {**ENTRY, "reason": "CATASTROPHIC_LOSS"}


def expected(call: str, style: str, kwargs: dict[str, Any]) -> tuple[Any, ...]:
    from exec_router import reference

    return plan_fields(getattr(router(reference, style), call)(**kwargs))


@pytest.mark.parametrize(
    ("case", "call", "style", "kwargs"),
    [
        ("plan_entry_maker", "plan_entry", "maker_both", ENTRY),
        ("plan_entry_taker", "plan_entry", "taker", ENTRY),
        ("plan_exit_take_profit", "plan_exit", "maker_both", EXIT_TP),
        ("plan_exit_catastrophic", "plan_exit", "maker_both", EXIT_CL),
    ],
)
def test_planning(
    benchmark: Any, impl: tuple[str, ModuleType], case: str, call: str, style: str, kwargs: Any
) -> None:
    benchmark.group = case
    method = getattr(router(impl[1], style), call)
    assert plan_fields(method(**kwargs)) == expected(call, style, kwargs)
    benchmark(lambda: method(**kwargs))


def test_plan_entry_with_hook(benchmark: Any, impl: tuple[str, ModuleType]) -> None:
    benchmark.group = "plan_entry_maker_one_hook"
    r = router(impl[1])
    r.register_hook("pre_submit", lambda plan, ctx: None)
    assert plan_fields(r.plan_entry(**ENTRY)) == expected("plan_entry", "maker_both", ENTRY)
    benchmark(lambda: r.plan_entry(**ENTRY))


def test_maker_price(benchmark: Any, impl: tuple[str, ModuleType]) -> None:
    benchmark.group = "maker_price"
    r = router(impl[1])
    args = {"asset": "ETHUSDT", "order_side": "SELL", "reference_price": 3000.0}
    assert r.maker_price(**args) == 3000.01
    benchmark(lambda: r.maker_price(**args))


def test_register_and_fill(benchmark: Any, impl: tuple[str, ModuleType]) -> None:
    benchmark.group = "register_working+note_fill"
    r = router(impl[1])
    plan = r.plan_entry(**ENTRY)

    def cycle() -> None:
        r.register_working(trade_id="t1", asset="BTCUSDT", position_side="LONG", plan=plan)
        r.note_fill("t1")

    cycle()
    assert r.counters["fills_working"] == 1
    benchmark(cycle)


def filled_router(module: ModuleType, action: str) -> Any:
    r = router(module)
    plan = module.ExecutionPlan(
        order_type="LIMIT", limit_price=1.0, ttl_s=60.0, is_maker=True, action=action
    )
    for i in range(N_WORKING):
        r.register_working(trade_id=f"w{i}", asset="BTCUSDT", position_side="LONG", plan=plan)
    return r


def test_expired_none_due(benchmark: Any, impl: tuple[str, ModuleType]) -> None:
    benchmark.group = "expired_10k_none_due"
    r = filled_router(impl[1], "EXIT")
    assert r.expired(1001.0) == []
    benchmark(lambda: r.expired(1001.0))


def test_plan_entry_with_working_exits(benchmark: Any, impl: tuple[str, ModuleType]) -> None:
    benchmark.group = "plan_entry_10k_working_exits"
    r = filled_router(impl[1], "EXIT")
    assert plan_fields(r.plan_entry(**ENTRY)) == expected("plan_entry", "maker_both", ENTRY)
    benchmark(lambda: r.plan_entry(**ENTRY))
