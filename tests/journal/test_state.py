"""export_state / from_state, and the registry observer the journal builds on."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from exec_router import state as state_module
from exec_router.state import FORMAT, VERSION, StateError

from ..conftest import FakeClock, Impl
from ..support import maker_plan, register

FIELDS = ("trade_id", "asset", "side", "action", "retries_left", "base_trade_id", "retry_n")


@pytest.fixture
def wall(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """A settable wall clock behind state's time.time()."""
    fake = FakeClock(1_700_000_000.0)
    monkeypatch.setattr(state_module.time, "time", fake)
    return fake


def busy_router(impl: Impl, clock: FakeClock) -> Any:
    router = impl.router("maker_both", clock=clock)
    register(router, impl, "e1", "ENTER", ttl_s=8.0)
    clock.now += 1.0
    register(router, impl, "x1", "EXIT", ttl_s=30.0)
    router.register_working(
        trade_id="e1#r1",
        asset="ETHUSDT",
        position_side="short",
        plan=maker_plan(impl, metadata={"note": [1, 2], "k": None}),
        base_trade_id="e1",
        retry_n=1,
    )
    register(router, impl, 7, "ENTER", ttl_s=2.0)
    router.note_fill(7)
    router.plan_entry(trade_id="t", asset="BTCUSDT", position_side="LONG", reference_price=1.0)
    return router


def orders(router: Any) -> list[tuple[Any, ...]]:
    return [
        (*(getattr(wo, f) for f in FIELDS), dataclasses.asdict(wo.plan))
        for wo in router.working_orders()
    ]


def test_round_trip_keeps_orders_in_order_with_plans_and_counters(
    impl: Impl, clock: FakeClock, wall: FakeClock
) -> None:
    router = busy_router(impl, clock)
    state = json.loads(json.dumps(router.export_state()))
    assert state["format"] == FORMAT
    assert state["version"] == VERSION
    new_clock = FakeClock(5.0)  # a new monotonic origin
    back = impl.ExecutionRouter.from_state(state, clock=new_clock)
    assert type(back) is impl.ExecutionRouter
    assert orders(back) == orders(router)
    assert [w.trade_id for w in back.working_orders()] == ["e1", "x1", "e1#r1"]
    assert dict(back.counters) == dict(router.counters)
    assert back.counters["fills_working"] == 1
    assert back.config == router.config
    remaining = [wo.deadline - clock.now for wo in router.working_orders()]
    assert [wo.deadline - new_clock.now for wo in back.working_orders()] == pytest.approx(
        remaining, abs=1e-6
    )
    assert back.has_working_entry()
    assert back.expired() == []


def test_downtime_brings_orders_back_expired(impl: Impl, clock: FakeClock, wall: FakeClock) -> None:
    router = busy_router(impl, clock)
    state = router.export_state()
    wall.now += 10.0  # down for 10 s: e1 (8 s) ran out, x1 (30 s) did not
    back = impl.ExecutionRouter.from_state(state, clock=FakeClock(0.0))
    assert [wo.trade_id for wo in back.expired()] == ["e1", "e1#r1"]
    x1 = back.working("x1")
    assert x1.deadline == pytest.approx(20.0, abs=1e-6)  # 30 s TTL, 10 s of it spent down


def test_config_argument_overrides_the_saved_one(impl: Impl, clock: FakeClock) -> None:
    state = busy_router(impl, clock).export_state()
    config = impl.ExecConfig(style="taker", entry_retries=5)
    back = impl.ExecutionRouter.from_state(state, config, clock=clock)
    assert back.config is config
    assert back.working("e1").retries_left == 1  # restored, not recomputed


def test_logger_and_clock_are_the_ones_given(impl: Impl, clock: FakeClock) -> None:
    state = busy_router(impl, clock).export_state()
    back = impl.ExecutionRouter.from_state(state, clock=clock)
    assert back.clock is clock
    with pytest.raises(TypeError, match="clock"):
        impl.ExecutionRouter.from_state(state, clock=5)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"version": VERSION + 1}, "newer than this exec_router reads"),
        ({"version": "1"}, "invalid version"),
        ({"format": "something.else"}, "not an exec_router state"),
        ({"counters": {"nope": 1}}, "invalid counters"),
        ({"counters": {"cancels": "1"}}, "invalid counters"),
        ({"config": {"style": "maker_both", "colour": "red"}}, "malformed config"),
        ({"working": [{"trade_id": "a"}]}, "lacks"),
    ],
)
def test_unreadable_states_are_refused(
    impl: Impl, clock: FakeClock, change: dict[str, Any], message: str
) -> None:
    state = {**busy_router(impl, clock).export_state(), **change}
    with pytest.raises(StateError, match=message):
        impl.ExecutionRouter.from_state(state)


@pytest.mark.parametrize("missing", ["config", "working", "counters"])
def test_a_state_missing_a_section_is_refused(impl: Impl, clock: FakeClock, missing: str) -> None:
    state = busy_router(impl, clock).export_state()
    del state[missing]
    with pytest.raises(StateError, match=missing):
        impl.ExecutionRouter.from_state(state)


def test_non_json_trade_ids_and_metadata_are_named(impl: Impl, clock: FakeClock) -> None:
    router = impl.router(clock=clock)
    register(router, impl, ("tuple", 1))
    with pytest.raises(TypeError, match="trade_id"):
        router.export_state()
    router.clear_working(("tuple", 1))
    router.register_working(
        trade_id="m",
        asset="BTCUSDT",
        position_side="LONG",
        plan=maker_plan(impl, metadata={"when": object()}),
    )
    with pytest.raises(TypeError, match="metadata"):
        router.export_state()


def test_observer_sees_every_registry_change_in_order(impl: Impl, clock: FakeClock) -> None:
    router = impl.router(clock=clock)
    seen: list[tuple[str, Any, Any]] = []
    stages: list[str] = []
    fills: list[int] = []

    def observe(op: str, tid: Any, wo: Any) -> None:
        seen.append((op, tid, wo.trade_id))
        fills.append(router.counters["fills_working"])

    router._observe_registry(observe)
    router.register_hook("on_working", lambda wo, ctx: stages.append(f"hook {len(seen)}"))
    register(router, impl, "a")
    register(router, impl, "b")
    register(router, impl, "a")  # replacement
    router.note_fill("a")
    router.note_cancel("b")
    register(router, impl, "c")
    router.clear_working("c")
    router.note_fill("absent")
    router.clear_working("absent")
    assert seen == [
        ("put", "a", "a"),
        ("put", "b", "b"),
        ("put", "a", "a"),
        ("pop", "a", "a"),
        ("pop", "b", "b"),
        ("put", "c", "c"),
        ("pop", "c", "c"),
    ]
    assert stages[0] == "hook 1"  # the observer runs before the hooks
    assert fills[3] == 1  # and after the fill is counted
    assert router._observe_registry(None) is observe  # returns the one it replaces
    assert router._observe_registry(None) is None
    register(router, impl, "d")
    assert len(seen) == 7


def test_observer_errors_reach_the_caller_after_the_change(impl: Impl, clock: FakeClock) -> None:
    router = impl.router(clock=clock)

    def fail(op: str, trade_id: Any, wo: Any) -> None:
        raise OSError("disk full")

    router._observe_registry(fail)
    with pytest.raises(OSError, match="disk full"):
        register(router, impl, "a")
    assert router.working("a") is not None
    with pytest.raises(OSError, match="disk full"):
        router.note_fill("a")
    assert router.working_orders() == []
    assert not router.has_working_entry()
    assert router.counters["fills_working"] == 1  # counted before the observer ran


def test_observer_must_be_callable(impl: Impl) -> None:
    with pytest.raises(TypeError, match="fn"):
        impl.router()._observe_registry(5)


@pytest.mark.parametrize("deadline", [float("inf"), float("-inf"), float("nan")])
def test_a_deadline_that_is_not_finite_is_refused(
    impl: Impl, clock: FakeClock, deadline: float
) -> None:
    state = busy_router(impl, clock).export_state()
    state["working"][0]["deadline"] = deadline
    with pytest.raises(StateError, match="invalid deadline"):
        impl.ExecutionRouter.from_state(state)


@pytest.mark.parametrize("reading", [10**400, float("nan"), float("inf")])
def test_export_refuses_a_clock_reading_that_is_not_finite(impl: Impl, reading: Any) -> None:
    readings: list[Any] = [1000.0]
    router = impl.router(clock=lambda: readings[0])
    readings[0] = reading
    with pytest.raises(ValueError, match="clock"):
        router.export_state()
