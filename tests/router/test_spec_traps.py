"""Python semantics a port easily gets wrong (SPEC: "Where a Rust port easily goes wrong")."""

from __future__ import annotations

import logging
import math
import struct
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exec_router.constants import COUNTER_KEYS, HOOK_STAGES, MissAction

from ..support import FAR_FUTURE, RecordingLogger, entry_plan, exit_plan, maker_plan, register

if TYPE_CHECKING:
    from conftest import FakeClock, Impl

NAN = math.nan
INF = math.inf
FIXTURES_OK = settings(suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)


def bits(x: float) -> bytes:
    return struct.pack("<d", x)


# ── numbers in strings use str() ─────────────────────────────────────────────


@pytest.mark.parametrize(
    ("spread", "max_spread", "reason"),
    [
        (1e-05, 0.0, "spread_gate:1e-05bps"),
        (3, 0.0, "spread_gate:3bps"),
        (NAN, 5.0, "spread_gate:nanbps"),
        (5.0, 4.0, "spread_gate:5.0bps"),
        (INF, 5.0, "spread_gate:infbps"),
        (1e16, 5.0, "spread_gate:1e+16bps"),
        (123456.789, 5.0, "spread_gate:123456.789bps"),
        (0.1 + 0.2, 0.0, "spread_gate:0.30000000000000004bps"),
        (10**20, 5.0, "spread_gate:100000000000000000000bps"),
        ("3", 0.0, "spread_gate:3bps"),
        (" 7.50 ", 5.0, "spread_gate: 7.50 bps"),
    ],
)
def test_spread_gate_reason_uses_python_str(
    impl: Impl, spread: Any, max_spread: float, reason: str
) -> None:
    config = impl.ExecConfig(style="maker_entry", max_spread_bps=max_spread)
    router = impl.router(config=config)
    assert entry_plan(router, spread_bps=spread) == impl.ExecutionPlan(
        action="ENTER", reason=reason
    )
    assert router.counters["spread_gate_taker"] == 1
    assert router.counters["taker_entries"] == 1


@pytest.mark.parametrize(
    ("reason", "label"),
    [(None, "None"), (5, "5"), (1e-05, "1e-05"), (2.0, "2.0"), ("stop", "stop"), ("", "")],
)
def test_exit_reasons_use_python_str(impl: Impl, reason: Any, label: str) -> None:
    router = impl.router("maker_exit")
    assert exit_plan(router, trade_id="A", reason=reason).reason == f"taker_exit:{label}"
    register(router, impl, "B", "EXIT")
    escalated = exit_plan(router, trade_id="B", reason=reason)
    assert escalated.reason == f"escalate:{label}"
    assert escalated.metadata == {"preempt_working": True}


def test_dup_entry_reason_uses_str_of_trade_id(impl: Impl) -> None:
    router = impl.router()
    register(router, impl, 42, "ENTER")
    assert entry_plan(router).reason == "working_entry_exists:42"
    router.clear_working(42)
    register(router, impl, ("a", 1.5), "ENTER")
    assert entry_plan(router).reason == "working_entry_exists:('a', 1.5)"


# ── snapshot() rounds with round(x, 3) ───────────────────────────────────────


def naive_round(x: float) -> float:
    """What a port might write instead: half away from zero on x*1000."""
    return math.copysign(math.floor(abs(x) * 1000 + 0.5), x) / 1000


@pytest.mark.parametrize(
    ("age", "expected"),
    [(1.0005, 1.0), (1.2345, 1.234), (0.1235, 0.123), (-1.2345, -1.234), (1.0045, 1.004)],
)
def test_snapshot_age_uses_decimal_rounding(
    impl: Impl, clock: FakeClock, age: float, expected: float
) -> None:
    assert naive_round(age) != expected  # the trap is real for this value
    clock.now = 0.0
    router = impl.router(clock=clock)
    register(router, impl, "A")
    clock.now = age
    (row,) = router.snapshot()["working"]
    assert row["age_s"] == expected == round(age, 3)
    assert type(row["age_s"]) is float


@pytest.mark.parametrize("now", [-1e300, 1e300])
def test_snapshot_age_extremes(impl: Impl, clock: FakeClock, now: float) -> None:
    clock.now = 0.0
    router = impl.router(clock=clock)
    register(router, impl, "A")
    clock.now = now
    assert router.snapshot()["working"][0]["age_s"] == round(now, 3)


@FIXTURES_OK
@given(
    start=st.floats(-1e6, 1e6, allow_nan=False),
    now=st.floats(-1e6, 1e6, allow_nan=False),
)
def test_snapshot_age_is_round_3_bit_for_bit(impl: Impl, start: float, now: float) -> None:
    times = iter([start, now])
    router = impl.router(clock=lambda: next(times))
    register(router, impl, "A")
    (row,) = router.snapshot()["working"]
    assert bits(row["age_s"]) == bits(round(now - start, 3))


# ── Python max() with NaN ────────────────────────────────────────────────────


@pytest.mark.parametrize(
    ("ttl", "span"), [(NAN, 0.5), (0.0, 0.5), (0.2, 0.5), (-INF, 0.5), (0.5, 0.5), (8, 8.0)]
)
def test_register_working_deadline_uses_python_max(
    impl: Impl, clock: FakeClock, ttl: float, span: float
) -> None:
    router = impl.router(clock=clock)
    wo = register(router, impl, "A", ttl_s=ttl)
    assert wo.deadline == clock.now + span
    assert router.expired(now=clock.now + span) == [wo]
    assert router.expired(now=clock.now + span - 0.01) == []


def test_infinite_ttl_is_refused(impl: Impl, clock: FakeClock) -> None:
    # Package rule: a deadline is finite (legacy stored inf, and the quote never expired).
    router = impl.router(clock=clock)
    with pytest.raises(ValueError, match="ttl_s inf"):
        register(router, impl, "A", ttl_s=INF)
    assert router.working_orders() == []


def test_buy_quote_is_floored_at_one_tick(impl: Impl) -> None:
    # max(tick, ref - offset): the BUY quote never drops below one tick.
    router = impl.router()
    assert router.maker_price(asset="BTCUSDT", order_side="BUY", reference_price=0.05) == 0.1
    plan = entry_plan(router, reference_price=0.05)
    assert (plan.order_type, plan.limit_price) == ("LIMIT", 0.1)


# ── comparisons with NaN are false ───────────────────────────────────────────


def test_nan_reference_gives_taker(impl: Impl) -> None:
    router = impl.router()
    assert entry_plan(router, reference_price=NAN) == impl.ExecutionPlan(
        action="ENTER", reason="taker_default"
    )
    assert exit_plan(router, reference_price=NAN) == impl.ExecutionPlan(
        action="EXIT", reason="taker_exit:TAKE_PROFIT"
    )
    assert router.maker_price(asset="BTCUSDT", order_side="SELL", reference_price=NAN) == 0.0
    assert router.counters["spread_gate_taker"] == 0


def test_nan_spread_trips_the_gate(impl: Impl) -> None:
    router = impl.router()
    assert entry_plan(router, spread_bps=NAN).reason == "spread_gate:nanbps"
    assert router.counters["spread_gate_taker"] == 1
    # The exit path has no gate counter but still falls back to taker.
    assert exit_plan(router, spread_bps=NAN).reason == "taker_exit:TAKE_PROFIT"
    assert router.counters["spread_gate_taker"] == 1


# ── ints and numeric strings are accepted ────────────────────────────────────


@pytest.mark.parametrize("asset", ["BTCUSDT", "SHIBUSDT", "DOGEUSDT", "unknown", None])
@pytest.mark.parametrize("side", ["LONG", "SHORT"])
def test_int_reference_price_same_plan_bit_for_bit(impl: Impl, asset: Any, side: str) -> None:
    router = impl.router(config=impl.ExecConfig(style="maker_both", offset_ticks=3))
    for method in (entry_plan, exit_plan):
        as_int = method(router, asset=asset, position_side=side, reference_price=65000)
        as_float = method(router, asset=asset, position_side=side, reference_price=65000.0)
        assert as_int == as_float
        assert as_int.order_type == "LIMIT"
        assert type(as_int.limit_price) is float
        assert bits(as_int.limit_price) == bits(as_float.limit_price)


def expected_price(asset: str, ref: float, offset: int, sell: bool, tick: float) -> float:
    if tick <= 0.0:
        tick = ref * 1e-5
    off = float(offset) * tick
    return ref + off if sell else max(tick, ref - off)


TICKS = {"BTCUSDT": 0.1, "SHIBUSDT": 1e-9, "XRPUSDT": 0.0001, "NEWUSDT": 0.0}


@FIXTURES_OK
@given(
    ref=st.one_of(st.integers(1, 10**12), st.floats(1e-9, 1e12)),
    offset=st.integers(0, 100),
    asset=st.sampled_from(sorted(TICKS)),
    side=st.sampled_from(["BUY", "SELL", "buy", "sell"]),
)
def test_maker_price_matches_python_arithmetic(
    impl: Impl, ref: float, offset: int, asset: str, side: str
) -> None:
    router = impl.router(config=impl.ExecConfig(offset_ticks=offset))
    got = router.maker_price(asset=asset, order_side=side, reference_price=ref)
    want = expected_price(asset, float(ref), offset, side.upper() == "SELL", TICKS[asset])
    assert bits(got) == bits(want)


def test_numeric_string_spread_is_accepted(impl: Impl) -> None:
    router = impl.router()
    assert entry_plan(router, spread_bps="3") == entry_plan(router, trade_id="T2", spread_bps=3.0)
    assert entry_plan(router, spread_bps="3").reason == "maker_entry"
    assert exit_plan(router, spread_bps=" 4.5 ").reason == "maker_exit:TAKE_PROFIT"
    assert exit_plan(router, spread_bps="6").reason == "taker_exit:TAKE_PROFIT"
    assert entry_plan(router, spread_bps="1e3").reason == "spread_gate:1e3bps"


def test_numeric_string_reference_price_for_maker_price(impl: Impl) -> None:
    router = impl.router()
    from_str = router.maker_price(asset="ETHUSDT", order_side="BUY", reference_price="3000")
    assert from_str == router.maker_price(asset="ETHUSDT", order_side="BUY", reference_price=3000)


# ── hooks: ctx copies, pre_submit replacement, errors, dispatch snapshot ─────


def test_each_hook_gets_its_own_ctx_copy(impl: Impl) -> None:
    router = impl.router()
    seen: list[dict[str, Any]] = []

    def vandal(payload: Any, ctx: dict[str, Any]) -> None:
        seen.append(dict(ctx))
        ctx["reference_price"] = -1.0
        ctx.pop("trade_id")
        ctx["extra"] = 1

    for stage in ("pre_plan", "pre_submit"):
        router.register_hook(stage, vandal)
        router.register_hook(stage, vandal)
    plan = entry_plan(router)
    assert plan.reason == "maker_entry"  # the router's own values are untouched
    base = {
        "trade_id": "T1",
        "asset": "BTCUSDT",
        "side": "LONG",
        "reference_price": 65000.0,
        "spread_bps": None,
        "action": "ENTER",
    }
    assert seen == [base] * 4
    seen.clear()
    exit_plan(router, reason="MAX_HOLD")
    assert seen == [{**base, "action": "EXIT", "reason": "MAX_HOLD", "urgent": True}] * 4


def test_hook_payloads_and_contexts_per_stage(impl: Impl) -> None:
    config = impl.ExecConfig(style="maker_both", entry_miss="retry")
    router = impl.router(config=config)
    calls: list[tuple[str, Any, dict[str, Any]]] = []
    for stage in HOOK_STAGES:
        router.register_hook(stage, lambda p, c, s=stage: calls.append((s, p, c)))
    plan = entry_plan(router)
    assert calls == [("pre_plan", None, calls[0][2]), ("pre_submit", plan, calls[1][2])]
    calls.clear()
    wo = router.register_working(trade_id="T1", asset="BTCUSDT", position_side="long", plan=plan)
    router.entry_miss_action(wo)
    router.market_fallback_plan(wo)
    router.note_cancel("T1")
    wo2 = register(router, impl, "T2")
    router.note_fill("T2")
    router.note_fill("T2")  # no longer working: no hook, no count
    assert calls == [
        ("on_working", wo, {"trade_id": "T1"}),
        ("on_miss", wo, {"action": MissAction.RETRY}),
        ("on_escalate", wo, {"to": "MARKET"}),
        ("on_cancel", wo, {"trade_id": "T1"}),
        ("on_working", wo2, {"trade_id": "T2"}),
        ("on_fill", wo2, {"trade_id": "T2"}),
    ]
    assert router.counters["fills_working"] == 1
    assert router.counters["cancels"] == 1


def test_pre_submit_chain_passes_the_current_plan(impl: Impl) -> None:
    router = impl.router()
    replacement = impl.ExecutionPlan(action="ENTER", reason="depth_gate")
    seen: list[Any] = []
    router.register_hook("pre_submit", lambda p, c: replacement)
    router.register_hook("pre_submit", lambda p, c: seen.append(p))
    assert entry_plan(router) == replacement
    assert seen == [replacement]
    assert router.counters["taker_entries"] == 1
    assert router.counters["maker_entries"] == 0


def test_pre_submit_insane_plan_is_ignored_with_a_warning(impl: Impl) -> None:
    logger = RecordingLogger()
    router = impl.router(logger=logger)

    def insane(plan: Any, ctx: dict[str, Any]) -> Any:
        return impl.ExecutionPlan(order_type="LIMIT", limit_price=NAN, action="ENTER")

    def bad_type(plan: Any, ctx: dict[str, Any]) -> Any:
        return impl.ExecutionPlan(order_type="STOP", action="ENTER")

    router.register_hook("pre_submit", insane)
    router.register_hook("pre_submit", bad_type)
    assert entry_plan(router).reason == "maker_entry"
    assert logger.records == [
        ("warning", f"exec_router: hook {insane!r} returned insane plan — ignored"),
        ("warning", f"exec_router: hook {bad_type!r} returned insane plan — ignored"),
    ]
    assert router.counters["hook_errors"] == 0


@pytest.mark.parametrize("junk", [None, "MARKET", {"order_type": "MARKET"}, 0, True, ("LIMIT",)])
def test_pre_submit_junk_is_ignored_silently(impl: Impl, junk: Any) -> None:
    logger = RecordingLogger()
    router = impl.router(logger=logger)
    router.register_hook("pre_submit", lambda p, c: junk)
    assert entry_plan(router).reason == "maker_entry"
    assert logger.records == []


def test_only_pre_submit_may_replace(impl: Impl) -> None:
    router = impl.router()
    other = impl.ExecutionPlan(action="ENTER", reason="nope")
    for stage in HOOK_STAGES:
        if stage != "pre_submit":
            router.register_hook(stage, lambda p, c: other)
    assert entry_plan(router).reason == "maker_entry"


@pytest.mark.parametrize("stage", HOOK_STAGES)
def test_hook_exception_is_counted_logged_and_swallowed(impl: Impl, stage: str) -> None:
    logger = RecordingLogger()
    config = impl.ExecConfig(style="maker_both", entry_miss="retry")
    router = impl.router(config=config, logger=logger)

    def boom(payload: Any, ctx: dict[str, Any]) -> Any:
        raise ValueError("kaput")

    router.register_hook(stage, boom)
    plan = entry_plan(router)
    wo = router.register_working(trade_id="T1", asset="BTCUSDT", position_side="LONG", plan=plan)
    router.entry_miss_action(wo)
    router.market_fallback_plan(wo)
    router.note_cancel("T1")
    register(router, impl, "T2")
    router.note_fill("T2")
    assert router.counters["hook_errors"] == (2 if stage in ("on_working",) else 1)
    msg = f"exec_router: hook {boom!r} failed at {stage}: kaput"
    assert logger.records == [("warning", msg)] * router.counters["hook_errors"]


@pytest.mark.parametrize("exc", [KeyboardInterrupt, SystemExit, GeneratorExit])
def test_base_exception_in_a_hook_propagates(impl: Impl, exc: type[BaseException]) -> None:
    router = impl.router()

    def stop(payload: Any, ctx: dict[str, Any]) -> Any:
        raise exc()

    router.register_hook("pre_submit", stop)
    with pytest.raises(exc):
        entry_plan(router)
    assert router.counters["hook_errors"] == 0
    assert router.counters["maker_entries"] == 0


def test_dispatch_runs_over_a_snapshot(impl: Impl) -> None:
    router = impl.router()
    calls: list[str] = []
    handles: dict[str, Any] = {}

    def late(payload: Any, ctx: dict[str, Any]) -> None:
        calls.append("late")

    def victim(payload: Any, ctx: dict[str, Any]) -> None:
        calls.append("victim")

    def meddler(payload: Any, ctx: dict[str, Any]) -> None:
        calls.append("meddler")
        if "late" not in handles:
            handles["late"] = router.register_hook("pre_plan", late)
            handles["victim"]()
            handles["self"]()

    handles["self"] = router.register_hook("pre_plan", meddler)
    handles["victim"] = router.register_hook("pre_plan", victim)
    entry_plan(router)
    assert calls == ["meddler", "victim"]  # changes apply from the next dispatch
    calls.clear()
    entry_plan(router, trade_id="T2")
    assert calls == ["late"]


def test_register_hook_returns_an_unregister_callable(impl: Impl) -> None:
    router = impl.router()
    calls: list[int] = []

    def hook(payload: Any, ctx: dict[str, Any]) -> None:
        calls.append(1)

    first = router.register_hook("pre_plan", hook)
    second = router.register_hook("pre_plan", hook)
    # The native backend returns a callable handle object, the pure one a closure.
    assert callable(first)
    assert callable(second)
    entry_plan(router)
    assert len(calls) == 2
    assert first() is None
    entry_plan(router)
    assert len(calls) == 3
    second()
    second()  # unregistering twice is harmless
    entry_plan(router)
    assert len(calls) == 3


@pytest.mark.parametrize("stage", ["bogus", "PRE_PLAN", "", "pre_plan "])
def test_unknown_stage_raises_the_legacy_message(impl: Impl, stage: str) -> None:
    router = impl.router()
    message = f"unknown hook stage {stage!r}; valid: {HOOK_STAGES}"
    with pytest.raises(ValueError, match=r"^unknown hook stage ") as info:
        router.register_hook(stage, lambda p, c: None)
    assert str(info.value) == message


# ── hooks may re-enter the router ────────────────────────────────────────────


def test_hooks_may_reenter_the_router(impl: Impl, clock: FakeClock) -> None:
    router = impl.router(clock=clock)
    seen: dict[str, Any] = {}

    def pre_plan(payload: Any, ctx: dict[str, Any]) -> None:
        seen.setdefault("snapshot", router.snapshot())
        seen.setdefault("orders", router.working_orders())

    def pre_submit(plan: Any, ctx: dict[str, Any]) -> Any:
        if ctx["trade_id"] == "outer":
            seen["nested"] = router.plan_entry(
                trade_id="inner", asset="ETHUSDT", position_side="SHORT", reference_price=3000.0
            )
        return None

    def on_working(wo: Any, ctx: dict[str, Any]) -> None:
        seen["working"] = router.working(ctx["trade_id"])
        seen["has_entry"] = router.has_working_entry()
        seen["expired"] = router.expired(now=wo.deadline)

    def on_fill(wo: Any, ctx: dict[str, Any]) -> None:
        seen["after_fill"] = router.working(ctx["trade_id"])
        router.register_hook("on_cancel", lambda p, c: None)

    router.register_hook("pre_plan", pre_plan)
    router.register_hook("pre_submit", pre_submit)
    router.register_hook("on_working", on_working)
    router.register_hook("on_fill", on_fill)
    register(router, impl, "w0", "EXIT")
    outer = entry_plan(router, trade_id="outer")
    assert outer.reason == "maker_entry"
    assert seen["nested"].reason == "maker_entry"
    assert seen["nested"].limit_price == 3000.0 + 0.01
    assert seen["snapshot"]["working"][0]["trade_id"] == "w0"
    assert [w.trade_id for w in seen["orders"]] == ["w0"]
    assert router.counters["plans_entry"] == 2
    assert router.counters["maker_entries"] == 2
    wo = register(router, impl, "A")
    assert seen["working"] is wo
    assert seen["has_entry"] is True
    assert wo in seen["expired"]
    router.note_fill("A")
    assert seen["after_fill"] is None


# ── counters is a live mutable mapping ───────────────────────────────────────


def test_counters_live_mapping(impl: Impl) -> None:
    router = impl.router()
    counters = router.counters
    assert list(counters) == list(COUNTER_KEYS)
    assert len(counters) == 16
    assert counters == dict.fromkeys(COUNTER_KEYS, 0)
    assert dict(counters) == dict.fromkeys(COUNTER_KEYS, 0)
    entry_plan(router)
    assert counters["plans_entry"] == 1  # reads current values
    assert counters["maker_entries"] == 1
    counters["plans_entry"] = 41
    counters["hook_errors"] += 2
    entry_plan(router, trade_id="T2")
    assert router.counters["plans_entry"] == 42  # writes stick
    assert counters["hook_errors"] == 2
    assert "plans_entry" in counters
    assert "nope" not in counters
    assert [k for k, _ in dict(counters).items()] == list(COUNTER_KEYS)
    snap = router.snapshot()["counters"]
    assert type(snap) is dict
    assert snap == dict(counters)
    counters["cancels"] = 7
    assert snap["cancels"] == 0  # the snapshot is a copy


def test_counters_native_checks(impl: Impl) -> None:
    counters = impl.router().counters
    if impl.name == "pure":
        # The pure reference keeps the legacy plain dict.
        assert type(counters) is dict
        return
    # Native only: a Counters mapping with fixed keys and int values.
    with pytest.raises(KeyError):
        counters["nope"] = 1
    with pytest.raises(KeyError):
        counters["nope"]
    with pytest.raises(TypeError):
        counters["cancels"] = "x"
    with pytest.raises(TypeError):
        del counters["cancels"]
    assert list(counters) == list(COUNTER_KEYS)


# ── registry order is dict order ─────────────────────────────────────────────


def order_views(router: Any) -> list[list[Any]]:
    return [
        [w.trade_id for w in router.working_orders()],
        [w.trade_id for w in router.expired(now=FAR_FUTURE)],
        [row["trade_id"] for row in router.snapshot()["working"]],
    ]


def test_registry_order_is_first_registration(impl: Impl) -> None:
    router = impl.router()
    for tid in ("c", "a", "b"):
        register(router, impl, tid, "EXIT")
    assert order_views(router) == [["c", "a", "b"]] * 3
    replaced = register(router, impl, "c", "ENTER")  # re-register: same place
    assert order_views(router) == [["c", "a", "b"]] * 3
    assert router.working("c") is replaced
    assert len(router.working_orders()) == 3
    router.note_fill("a")
    register(router, impl, "a", "EXIT")  # removed then registered: last
    assert order_views(router) == [["c", "b", "a"]] * 3
    router.clear_working("c")
    router.note_cancel("b")
    register(router, impl, "b", "EXIT")
    register(router, impl, "c", "EXIT")
    assert order_views(router) == [["a", "b", "c"]] * 3


def test_registry_keys_follow_dict_equality(impl: Impl) -> None:
    router = impl.router()
    register(router, impl, 1, "EXIT")
    register(router, impl, 1.0, "ENTER")  # 1 == 1.0: the same slot
    assert len(router.working_orders()) == 1
    assert router.working(True).action == "ENTER"


# ── runtime assignment of WorkingOrder fields is honoured ────────────────────


def test_extending_or_shortening_deadline(impl: Impl, clock: FakeClock) -> None:
    router = impl.router(clock=clock)
    wo = register(router, impl, "A", ttl_s=5.0)
    clock.now += 5.0
    assert router.expired() == [wo]
    wo.deadline = clock.now + 10.0
    assert router.expired() == []
    wo.deadline = clock.now - 1
    assert router.expired() == [wo]
    assert router.working("A").deadline == clock.now - 1


def test_assigned_action_drives_the_guards(impl: Impl) -> None:
    router = impl.router()
    wo = register(router, impl, "A", "ENTER")
    wo.action = "EXIT"
    assert router.has_working_entry() is False
    assert entry_plan(router, trade_id="B").suppress is False
    assert exit_plan(router, trade_id="A").reason == "working_exit_exists"
    wo.action = "ENTER"
    assert router.has_working_entry() is True
    assert entry_plan(router, trade_id="B").reason == "working_entry_exists:A"
    wo.trade_id = "renamed"
    assert entry_plan(router, trade_id="B").reason == "working_entry_exists:renamed"


def test_assigned_fields_feed_snapshot_and_retry(impl: Impl, clock: FakeClock) -> None:
    config = impl.ExecConfig(style="maker_entry", entry_miss="retry", entry_retries=1)
    router = impl.router(config=config, clock=clock)
    wo = register(router, impl, "A")
    wo.submitted_at = clock.now - 2.5
    wo.retry_n = 4
    wo.base_trade_id = "base"
    wo.retries_left = 0
    assert router.snapshot()["working"] == [
        {"trade_id": "A", "action": "ENTER", "asset": "BTCUSDT", "age_s": 2.5, "retry_n": 4}
    ]
    tid, plan = router.retry_plan(wo, reference_price=65000.0)
    assert (tid, plan.reason) == ("base-r5", "maker_entry_retry_5")
    assert router.entry_miss_action(wo) == MissAction.SKIP


def test_assignment_type_checks(impl: Impl) -> None:
    wo = register(impl.router(), impl, "A")
    wo.deadline = 5
    assert wo.deadline == 5
    # Package rule: a deadline is a finite number on both backends (legacy took anything).
    with pytest.raises(TypeError, match="deadline"):
        wo.deadline = "later"
    assert wo.deadline == 5


# ── log messages: same level, same text, through router.logger ───────────────


def test_logs_go_through_router_logger(impl: Impl, caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("exec_router_tests.custom")
    router = impl.router(logger=logger)

    def boom(payload: Any, ctx: dict[str, Any]) -> Any:
        raise RuntimeError("x")

    def insane(payload: Any, ctx: dict[str, Any]) -> Any:
        return impl.ExecutionPlan(order_type="LIMIT", limit_price=-1.0)

    router.register_hook("pre_plan", boom)
    router.register_hook("pre_submit", insane)
    with caplog.at_level(logging.DEBUG):
        entry_plan(router)
    got = [(r.name, r.levelno, r.getMessage()) for r in caplog.records]
    assert got == [
        (logger.name, logging.WARNING, f"exec_router: hook {boom!r} failed at pre_plan: x"),
        (
            logger.name,
            logging.WARNING,
            f"exec_router: hook {insane!r} returned insane plan — ignored",
        ),
    ]


def test_default_logger_is_exec_router(impl: Impl, caplog: pytest.LogCaptureFixture) -> None:
    router = impl.ExecutionRouter(impl.ExecConfig())
    router.register_hook("on_fill", lambda p, c: 1 / 0)
    router.register_working(trade_id="A", asset="X", position_side="LONG", plan=maker_plan(impl))
    with caplog.at_level(logging.WARNING, logger="exec_router"):
        router.note_fill("A")
    (record,) = caplog.records
    assert record.name == "exec_router"
    assert record.levelno == logging.WARNING
    assert record.getMessage().startswith("exec_router: hook <function ")
    assert record.getMessage().endswith(" failed at on_fill: division by zero")


def test_logger_can_be_swapped_at_runtime(impl: Impl) -> None:
    first, second = RecordingLogger(), RecordingLogger()
    router = impl.router(logger=first)
    router.register_hook("pre_plan", lambda p, c: 1 / 0)
    entry_plan(router)
    router.logger = second
    entry_plan(router, trade_id="T2")
    assert len(first.records) == 1
    assert len(second.records) == 1
    assert router.logger is second
