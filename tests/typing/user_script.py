"""A runtime's use of the public API, type-checked by ``mypy --strict`` in ``make lint``.

It also runs (tests/typing/test_user_script.py), on both backends. A ``type: ignore``
below marks a call that must *not* type-check: if the stub ever accepted it, strict mode
would report the ignore as unused and the lint would fail.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from exec_router import (
    ExecConfig,
    ExecutionPlan,
    ExecutionRouter,
    MissAction,
    WorkingOrder,
    __version__,
)
from exec_router.constants import Action, OrderSide, PositionSide
from exec_router.journal import Journal

if TYPE_CHECKING:
    from typing_extensions import assert_type
else:

    def assert_type(value: object, _: object) -> object:
        return value


def send(router: ExecutionRouter, trade_id: str, side: PositionSide, plan: ExecutionPlan) -> None:
    if plan.is_maker and not plan.suppress:
        wo = router.register_working(
            trade_id=trade_id, asset="BTCUSDT", position_side=side, plan=plan
        )
        assert_type(wo, WorkingOrder)


def depth_gate(plan: ExecutionPlan, ctx: dict[str, Any]) -> ExecutionPlan | None:
    return None


def main() -> None:
    assert isinstance(__version__, str)
    now = [1_000.0]
    router = ExecutionRouter(ExecConfig(style="maker_both"), clock=lambda: now[0])
    unregister = router.register_hook("pre_submit", depth_gate)
    plan = router.plan_entry(
        trade_id="t1", asset="BTCUSDT", position_side="LONG", reference_price=65_000.0
    )
    assert_type(plan.action, Action)
    send(router, "t1", "LONG", plan)
    now[0] += 10.0
    for wo in router.expired():
        side: PositionSide = wo.side
        router.note_cancel(wo.trade_id)
        if router.entry_miss_action(wo) == MissAction.RETRY:
            tid, retry = router.retry_plan(wo, reference_price=65_000.0)
            send(router, str(tid), side, retry)
    unregister()

    order_side = ExecutionRouter.order_side("EXIT", "SHORT")
    assert_type(order_side, OrderSide)
    router.plan_exit(
        trade_id="t1",
        asset="BTCUSDT",
        position_side="SIDEWAYS",  # type: ignore[arg-type]
        reference_price=65_000.0,
        reason="MAX_HOLD",
    )

    counters = router.counters
    assert isinstance(counters, Mapping)
    assert isinstance(counters, MutableMapping)
    counters["cancels"] = 0
    total: int = sum(counters.values())
    exported: str = json.dumps(dict(counters))
    assert json.loads(exported)["plans_entry"] == counters["plans_entry"]
    assert total >= 1

    restored = ExecutionRouter.from_state(json.loads(json.dumps(router.export_state())))
    assert_type(restored, ExecutionRouter)
    with Journal(Path(tempfile.mkdtemp()) / "router.journal") as journal:
        journal.attach(router)
        again = journal.restore()
        assert_type(again, ExecutionRouter)
        assert again.counters == router.counters


if __name__ == "__main__":
    main()
