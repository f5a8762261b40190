"""Interrupts: a KeyboardInterrupt anywhere in user code reaches the caller and leaves
the router consistent and usable.

Each scenario starts from one working maker exit (``x1``), raises a KeyboardInterrupt
from a hook stage, the clock, the logger, a price's ``__float__`` or a trade id's
``__hash__`` / ``__eq__``, and then checks that:

- the interrupt propagates, planning calls included (the README: an ``Exception`` in a
  hook is counted and swallowed, a ``BaseException`` propagates);
- the counters and the registry hold exactly what the calls made before the interrupt
  left there, the same on both backends;
- ``working``, ``working_orders``, ``expired`` and ``has_working_entry`` agree;
- the router still works afterwards, from this thread and from another one (no lock
  left held).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from exec_router.constants import COUNTER_KEYS

from ..conftest import FakeClock, Impl
from ..support import FAR_FUTURE, RecordingLogger, entry_plan, exit_plan, maker_plan


class Interrupter:
    """Raises KeyboardInterrupt while armed; a hook, a clock or a logger method."""

    def __init__(self, value: Any = None) -> None:
        self.armed = False
        self.value = value
        self.fired = 0

    def fire(self) -> None:
        if self.armed:
            self.armed = False
            self.fired += 1
            raise KeyboardInterrupt

    def __call__(self, *args: Any) -> Any:
        self.fire()
        return self.value


class InterruptingId:
    """A trade id that hashes like ``"x1"`` and interrupts in ``__hash__`` or ``__eq__``."""

    def __init__(self, where: str) -> None:
        self.where = where

    def __hash__(self) -> int:
        if self.where == "hash":
            raise KeyboardInterrupt
        return hash("x1")

    def __eq__(self, other: object) -> bool:
        raise KeyboardInterrupt


class InterruptingPrice:
    def __float__(self) -> float:
        raise KeyboardInterrupt

    def __gt__(self, other: object) -> bool:
        raise KeyboardInterrupt


@dataclass
class World:
    impl: Impl
    router: Any
    clock: FakeClock
    logger: RecordingLogger
    x1: Any
    trap: Interrupter = field(default_factory=Interrupter)


def world(impl: Impl) -> World:
    clock, logger = FakeClock(1000.0), RecordingLogger()
    config = impl.ExecConfig(style="maker_both", entry_miss="retry", entry_retries=1)
    router = impl.ExecutionRouter(config, clock=clock, logger=logger)
    x1 = router.register_working(
        trade_id="x1", asset="BTCUSDT", position_side="LONG", plan=maker_plan(impl, "EXIT")
    )
    return World(impl, router, clock, logger, x1)


def hooked(stage: str) -> Callable[[World], None]:
    def setup(w: World) -> None:
        w.router.register_hook(stage, w.trap)

    return setup


def clock_trap(w: World) -> None:
    w.router.clock = w.trap
    w.trap.value = 1000.0


def logger_trap(w: World) -> None:
    w.logger.warning = w.trap  # type: ignore[method-assign]


def plan_limit(w: World) -> None:
    w.router.register_working(
        trade_id="w1", asset="BTCUSDT", position_side="LONG", plan=maker_plan(w.impl)
    )


def no_setup(w: World) -> None:
    """The interrupt comes from an argument, not from a trap."""


@dataclass(frozen=True)
class Scenario:
    setup: Callable[[World], None]
    call: Callable[[World], Any]
    counters: dict[str, int]
    working: tuple[str, ...]


def urgent_exit(w: World) -> Any:
    return exit_plan(w.router, "x1", reason="STOP_LOSS")


SCENARIOS: dict[str, Scenario] = {
    "pre_plan/entry": Scenario(
        hooked("pre_plan"), lambda w: entry_plan(w.router, "e1"), {"plans_entry": 1}, ("x1",)
    ),
    "pre_plan/exit": Scenario(
        hooked("pre_plan"), lambda w: exit_plan(w.router, "x2"), {"plans_exit": 1}, ("x1",)
    ),
    "pre_submit/entry": Scenario(
        hooked("pre_submit"), lambda w: entry_plan(w.router, "e1"), {"plans_entry": 1}, ("x1",)
    ),
    "pre_submit/exit": Scenario(
        hooked("pre_submit"), lambda w: exit_plan(w.router, "x2"), {"plans_exit": 1}, ("x1",)
    ),
    "pre_submit/preempt": Scenario(
        hooked("pre_submit"), urgent_exit, {"plans_exit": 1, "exit_escalations": 1}, ("x1",)
    ),
    "on_working": Scenario(hooked("on_working"), plan_limit, {}, ("x1", "w1")),
    "on_fill": Scenario(
        hooked("on_fill"), lambda w: w.router.note_fill("x1"), {"fills_working": 1}, ()
    ),
    "on_cancel": Scenario(
        hooked("on_cancel"), lambda w: w.router.note_cancel("x1"), {"cancels": 1}, ()
    ),
    "on_miss": Scenario(
        hooked("on_miss"),
        lambda w: w.router.entry_miss_action(w.x1),
        {"entry_miss_skip": 1},
        ("x1",),
    ),
    "on_escalate": Scenario(
        hooked("on_escalate"),
        lambda w: w.router.market_fallback_plan(w.x1),
        {"exit_escalations": 1},
        ("x1",),
    ),
    "clock/register": Scenario(clock_trap, plan_limit, {}, ("x1",)),
    "clock/expired": Scenario(clock_trap, lambda w: w.router.expired(), {}, ("x1",)),
    "clock/snapshot": Scenario(clock_trap, lambda w: w.router.snapshot(), {}, ("x1",)),
    "logger/invalid_input": Scenario(
        logger_trap,
        lambda w: entry_plan(w.router, "e1", reference_price="junk"),
        {"plans_entry": 1, "taker_entries": 1},
        ("x1",),
    ),
    "float/plan_entry": Scenario(
        no_setup,
        lambda w: entry_plan(w.router, "e1", reference_price=InterruptingPrice()),
        {"plans_entry": 1},
        ("x1",),
    ),
    "float/plan_exit": Scenario(
        no_setup,
        lambda w: exit_plan(w.router, "x2", spread_bps=InterruptingPrice()),
        {"plans_exit": 1},
        ("x1",),
    ),
}
for _where in ("hash", "eq"):
    SCENARIOS[f"{_where}/plan_exit"] = Scenario(
        no_setup,
        lambda w, where=_where: exit_plan(w.router, InterruptingId(where)),
        {"plans_exit": 1},
        ("x1",),
    )
    for _method in ("working", "note_fill", "note_cancel", "clear_working"):
        SCENARIOS[f"{_where}/{_method}"] = Scenario(
            no_setup,
            lambda w, m=_method, where=_where: getattr(w.router, m)(InterruptingId(where)),
            {},
            ("x1",),
        )
    SCENARIOS[f"{_where}/register_working"] = Scenario(
        no_setup,
        lambda w, where=_where: w.router.register_working(
            trade_id=InterruptingId(where),
            asset="BTCUSDT",
            position_side="LONG",
            plan=maker_plan(w.impl),
        ),
        {},
        ("x1",),
    )


def check_consistent(w: World, expected_ids: tuple[str, ...]) -> None:
    router = w.router
    orders = router.working_orders()
    assert tuple(wo.trade_id for wo in orders) == expected_ids
    assert all(router.working(wo.trade_id) is wo for wo in orders)
    assert router.has_working_entry() == any(wo.action == "ENTER" for wo in orders)
    assert [id(wo) for wo in router.expired(FAR_FUTURE)] == [id(wo) for wo in orders]
    assert [row["trade_id"] for row in router.snapshot()["working"]] == list(expected_ids)


def still_usable(w: World) -> None:
    """Plan, register, fill and unregister, from another thread, then from this one."""
    errors: list[BaseException] = []

    def work() -> None:
        try:
            plan = exit_plan(w.router, "after", reason="MAX_HOLD")
            assert plan.order_type == "MARKET"
            wo = w.router.register_working(
                trade_id="after", asset="BTCUSDT", position_side="LONG", plan=maker_plan(w.impl)
            )
            assert w.router.working("after") is wo
            w.router.note_fill("after")
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive(), "the router is stuck after the interrupt"
    assert errors == []
    work()
    assert errors == []


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_keyboard_interrupt_propagates_and_leaves_the_router_consistent(
    impl: Impl, name: str
) -> None:
    scenario = SCENARIOS[name]
    w = world(impl)
    scenario.setup(w)
    w.trap.armed = True
    with pytest.raises(KeyboardInterrupt):
        scenario.call(w)
    uses_trap = scenario.setup is not no_setup
    assert w.trap.fired == (1 if uses_trap else 0)
    expected = dict.fromkeys(COUNTER_KEYS, 0)
    expected.update(scenario.counters)
    assert dict(w.router.counters) == expected
    w.router.clock = w.clock  # the trap may be the clock: a fresh reading for the checks
    check_consistent(w, scenario.working)
    before = dict(w.router.counters)
    still_usable(w)
    after = dict(w.router.counters)
    assert after["plans_exit"] == before["plans_exit"] + 2
    assert after["fills_working"] == before["fills_working"] + 2
    if uses_trap:  # the same call, disarmed, now goes through
        if scenario.setup is clock_trap:
            w.router.clock = w.trap
        scenario.call(w)


@pytest.mark.parametrize("stage", ["pre_plan", "pre_submit"])
def test_interrupted_hook_chain_stops_at_the_interrupt(impl: Impl, stage: str) -> None:
    """Hooks after the interrupting one do not run; the next dispatch runs them all."""
    w = world(impl)
    calls: list[str] = []
    w.router.register_hook(stage, lambda p, c: calls.append("first"))
    w.router.register_hook(stage, w.trap)
    w.router.register_hook(stage, lambda p, c: calls.append("last"))
    w.trap.armed = True
    with pytest.raises(KeyboardInterrupt):
        entry_plan(w.router, "e1")
    assert calls == ["first"]
    plan = entry_plan(w.router, "e2")
    assert plan.is_maker
    assert calls == ["first", "first", "last"]
    assert w.router.counters["hook_errors"] == 0


def test_system_exit_from_a_hook_propagates_too(impl: Impl) -> None:
    w = world(impl)

    def leave(_payload: Any, _ctx: dict[str, Any]) -> None:
        raise SystemExit(3)

    w.router.register_hook("on_cancel", leave)
    with pytest.raises(SystemExit):
        w.router.note_cancel("x1")
    check_consistent(w, ())
    assert w.router.counters["cancels"] == 1
    assert w.router.counters["hook_errors"] == 0


# ── MemoryError: the interpreter's, never reported as a bad argument ─────────


class OutOfMemory:
    """A value whose every use runs out of memory."""

    def _fail(self, *args: object) -> Any:
        raise MemoryError

    __hash__ = __eq__ = __gt__ = __float__ = __str__ = __format__ = __bool__ = _fail


CALLS: dict[str, Callable[[Any, Impl], Any]] = {
    "register_working/trade_id": lambda r, i: r.register_working(
        trade_id=OutOfMemory(), asset="BTCUSDT", position_side="LONG", plan=maker_plan(i)
    ),
    "register_working/position_side": lambda r, i: r.register_working(
        trade_id="A", asset="BTCUSDT", position_side=OutOfMemory(), plan=maker_plan(i)
    ),
    "note_fill/trade_id": lambda r, i: r.note_fill(OutOfMemory()),
    "working/trade_id": lambda r, i: r.working(OutOfMemory()),
    "maker_price/reference_price": lambda r, i: r.maker_price(
        asset="BTCUSDT", order_side="BUY", reference_price=OutOfMemory()
    ),
    "plan_entry/reference_price": lambda r, i: entry_plan(r, reference_price=OutOfMemory()),
    "plan_exit/reason": lambda r, i: exit_plan(r, reason=OutOfMemory()),
    "plan_exit/trade_id": lambda r, i: exit_plan(r, trade_id=OutOfMemory(), reason="STOP_LOSS"),
}


@pytest.mark.parametrize("call", list(CALLS))
def test_memory_error_in_argument_conversion_propagates(impl: Impl, call: str) -> None:
    router = impl.router(clock=FakeClock())
    with pytest.raises(MemoryError):
        CALLS[call](router, impl)
    assert router.working_orders() == []
