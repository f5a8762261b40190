"""The deliberate improvements over the legacy router, and the package's extra rules."""

from __future__ import annotations

import math
import sys
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exec_router.config import ConfigError
from exec_router.constants import HOOK_STAGES

from ..support import RecordingLogger, entry_plan, exit_plan, maker_plan, register

if TYPE_CHECKING:
    from conftest import FakeClock, Impl

INF = math.inf
NAN = math.nan
FIXTURES_OK = settings(suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
WARNING = "exec_router: %s got an invalid %s (%s) — falling back to MARKET"


class BrokenLogger:
    def __init__(self) -> None:
        self.calls = 0

    def warning(self, msg: str, *args: Any) -> None:
        self.calls += 1
        raise OSError("log sink is gone")


class BadGt:
    """``> 0.0`` raises."""

    def __gt__(self, other: object) -> bool:
        raise RuntimeError("no order")


class BadFloat:
    """Positive, but ``float()`` raises."""

    def __gt__(self, other: object) -> bool:
        return True

    def __float__(self) -> float:
        raise RuntimeError("no float")


class BadStr:
    """``str()`` and ``format()`` raise."""

    def __str__(self) -> str:
        raise RuntimeError("no str")

    def __format__(self, spec: str) -> str:
        raise RuntimeError("no format")


class BadBool:
    """Truth testing raises."""

    def __bool__(self) -> bool:
        raise RuntimeError("no bool")


def plan(router: Any, method: str, **kwargs: Any) -> Any:
    """``entry_plan`` or ``exit_plan``, chosen by the router method's name."""
    planner = {"plan_entry": entry_plan, "plan_exit": exit_plan}[method]
    return planner(router, **kwargs)


def action_of(method: str) -> str:
    return "ENTER" if method == "plan_entry" else "EXIT"


# ── 1. rule 1 on every exit path ─────────────────────────────────────────────


@pytest.mark.parametrize("reason", ["MAX_HOLD", "CATASTROPHIC_LOSS", None])
def test_1_hook_cannot_suppress_a_preempting_exit(impl: Impl, reason: Any) -> None:
    router = impl.router("maker_exit")
    register(router, impl, "T1", "EXIT")
    seen: list[Any] = []

    def suppress(p: Any, ctx: dict[str, Any]) -> Any:
        seen.append(p)
        return impl.ExecutionPlan(action="EXIT", suppress=True, metadata={"why": "gate"})

    router.register_hook("pre_submit", suppress)
    got = plan(router, "plan_exit", reason=reason)
    assert got == impl.ExecutionPlan(
        action="EXIT",
        reason="hook_suppress_overridden_market",
        metadata={"preempt_working": True},
    )
    assert seen == [
        impl.ExecutionPlan(
            action="EXIT", reason=f"escalate:{reason}", metadata={"preempt_working": True}
        )
    ]
    assert router.counters["exit_escalations"] == 1


def test_1_preempt_path_still_takes_a_sane_replacement(impl: Impl) -> None:
    router = impl.router("maker_exit")
    register(router, impl, "T1", "EXIT")
    replacement = impl.ExecutionPlan(action="EXIT", reason="custom", metadata={"k": 1})
    router.register_hook("pre_submit", lambda p, c: replacement)
    assert plan(router, "plan_exit", reason="MAX_HOLD") == replacement


# ── 2. non-finite reference prices never give a LIMIT ────────────────────────


@pytest.mark.parametrize("ref", [INF, -INF, NAN])
@pytest.mark.parametrize("side", ["BUY", "SELL"])
def test_2_maker_price_is_zero_for_non_finite(impl: Impl, ref: float, side: str) -> None:
    router = impl.router()
    assert router.maker_price(asset="BTCUSDT", order_side=side, reference_price=ref) == 0.0


def test_2_maker_price_is_zero_when_the_quote_overflows(impl: Impl) -> None:
    router = impl.router()
    top = sys.float_info.max
    assert router.maker_price(asset="NEWUSDT", order_side="SELL", reference_price=top) == 0.0
    # BUY stays finite and is still quoted.
    assert router.maker_price(asset="NEWUSDT", order_side="BUY", reference_price=top) > 0.0


@pytest.mark.parametrize(
    ("ref", "asset", "side"),
    [(INF, "BTCUSDT", "LONG"), (INF, "BTCUSDT", "SHORT"), (sys.float_info.max, "NEWUSDT", None)],
)
def test_2_plans_fall_back_to_market(impl: Impl, ref: float, asset: str, side: Any) -> None:
    router = impl.router()
    entry_side = "SHORT" if side is None else side  # SHORT entry and LONG exit both SELL
    exit_side = "LONG" if side is None else side
    got = plan(router, "plan_entry", reference_price=ref, asset=asset, position_side=entry_side)
    assert got == impl.ExecutionPlan(action="ENTER", reason="taker_default")
    got = plan(router, "plan_exit", reference_price=ref, asset=asset, position_side=exit_side)
    assert got == impl.ExecutionPlan(action="EXIT", reason="taker_exit:TAKE_PROFIT")
    assert router.counters["maker_entries"] == router.counters["maker_exits"] == 0
    assert router.counters["taker_entries"] == router.counters["taker_exits"] == 1


def test_2_retry_plan_falls_back_to_market(impl: Impl) -> None:
    router = impl.router()
    wo = register(router, impl, "T1")
    tid, got = router.retry_plan(wo, reference_price=INF)
    assert tid == "T1-r1"
    assert got == impl.ExecutionPlan(
        action="ENTER",
        reason="retry_price_insane_market",
        metadata={"retry_n": 1, "base_trade_id": "T1"},
    )


# ── 3. planning never raises on a bad value ──────────────────────────────────

INVALID: list[tuple[str, Any]] = [
    ("reference_price", None),
    ("reference_price", "abc"),
    ("reference_price", "65000"),  # compared with > before float(): invalid, as legacy
    ("reference_price", object()),
    ("reference_price", BadGt()),
    ("reference_price", BadFloat()),
    ("reference_price", 10**400),
    ("spread_bps", "abc"),
    ("spread_bps", object()),
    ("spread_bps", []),
    ("spread_bps", BadFloat()),
    ("spread_bps", 10**400),
    ("position_side", BadStr()),
    ("asset", BadStr()),
    ("asset", BadBool()),
]


def case_id(case: Any) -> str:
    return f"{case[0]}-{type(case[1]).__name__}"


@pytest.mark.parametrize("case", INVALID, ids=case_id)
@pytest.mark.parametrize("method", ["plan_entry", "plan_exit"])
def test_3_invalid_value_gives_market(impl: Impl, method: str, case: tuple[str, Any]) -> None:
    field, value = case
    check_invalid(impl, method, field, value)


@pytest.mark.parametrize(
    ("field", "value"),
    [("reason", BadStr()), ("trade_id", []), ("trade_id", {}), ("trade_id", {1})],
    ids=lambda v: v if isinstance(v, str) else type(v).__name__,
)
def test_3_invalid_exit_only_values(impl: Impl, field: str, value: Any) -> None:
    check_invalid(impl, "plan_exit", field, value)


def check_invalid(impl: Impl, method: str, field: str, value: Any) -> None:
    logger = RecordingLogger()
    router = impl.router(logger=logger)
    submitted: list[Any] = []
    router.register_hook("pre_submit", lambda p, c: submitted.append(p))
    action = action_of(method)
    got = plan(router, method, **{field: value})
    assert got == impl.ExecutionPlan(action=action, reason=f"invalid_input:{field}")
    assert got.order_type == "MARKET"
    assert got.suppress is False
    assert submitted == []
    assert logger.messages == [WARNING % (method, field, type(value).__name__)]
    enter = action == "ENTER"
    assert router.counters["plans_entry" if enter else "plans_exit"] == 1
    assert router.counters["taker_entries" if enter else "taker_exits"] == 1
    assert router.counters["maker_entries"] == router.counters["maker_exits"] == 0
    assert router.counters["hook_errors"] == 0


@pytest.mark.parametrize(
    ("style", "method", "kwargs", "reason"),
    [
        ("taker", "plan_entry", {"reference_price": None}, "taker_default"),
        ("taker", "plan_exit", {"reference_price": None}, "taker_exit:TAKE_PROFIT"),
        ("taker", "plan_entry", {"reference_price": "abc", "spread_bps": "x"}, "taker_default"),
        ("maker_both", "plan_entry", {"reference_price": 0, "spread_bps": "x"}, "taker_default"),
        ("maker_both", "plan_exit", {"reference_price": None, "reason": "MAX_HOLD"}, None),
        ("maker_both", "plan_exit", {"spread_bps": object(), "reason": "MAX_HOLD"}, None),
        ("maker_both", "plan_entry", {"trade_id": []}, "maker_entry"),
        ("maker_both", "plan_entry", {"position_side": None}, "maker_entry"),
        ("maker_both", "plan_exit", {"asset": None}, "maker_exit:TAKE_PROFIT"),
        ("maker_both", "plan_exit", {"reason": None}, "taker_exit:None"),
    ],
)
def test_3_odd_values_legacy_accepts_keep_the_legacy_plan(
    impl: Impl, style: str, method: str, kwargs: dict[str, Any], reason: str | None
) -> None:
    logger = RecordingLogger()
    router = impl.router(style, logger=logger)
    got = plan(router, method, **kwargs)
    assert got.reason == (reason or "taker_exit:MAX_HOLD")
    assert logger.messages == []


def test_3_odd_values_give_legacy_prices(impl: Impl) -> None:
    router = impl.router()
    # position_side None -> "NONE": an entry that is not LONG sells.
    got = plan(router, "plan_entry", position_side=None)
    assert got.limit_price == 65000.0 + 0.1
    # asset None -> no tick: fallback tick of 1e-5 of the price.
    got = plan(router, "plan_exit", asset=None)
    assert got.limit_price == 65000.0 + 1.0 * (65000.0 * 1e-5)


def test_3_duplicate_guard_comes_before_value_checks(impl: Impl) -> None:
    logger = RecordingLogger()
    router = impl.router(logger=logger)
    register(router, impl, "W")
    got = plan(router, "plan_entry", reference_price=None)
    assert got == impl.ExecutionPlan(action="ENTER", suppress=True, reason="working_entry_exists:W")
    assert logger.messages == []


ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**1023),
    st.floats(),
    st.text(max_size=8),
    st.binary(max_size=4),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
    st.sampled_from([BadGt(), BadFloat(), BadStr(), BadBool(), object()]),
)


@FIXTURES_OK
@given(
    method=st.sampled_from(["plan_entry", "plan_exit"]),
    style=st.sampled_from(["taker", "maker_entry", "maker_exit", "maker_both"]),
    field=st.sampled_from(["trade_id", "asset", "position_side", "reference_price", "spread_bps"]),
    value=ANY_VALUE,
    reason=ANY_VALUE,
)
def test_3_planning_never_raises(
    impl: Impl, method: str, style: str, field: str, value: Any, reason: Any
) -> None:
    router = impl.router(style, logger=RecordingLogger())
    extra = {"reason": reason} if method == "plan_exit" else {}
    got = plan(router, method, **{field: value}, **extra)
    assert got.action == action_of(method)
    assert got.sane()
    assert got.suppress is False


# ── 4. direct construction is validated; 5. from_env(environ, prefix) ────────


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("style", "maker"),
        ("entry_miss", "retry_forever"),
        ("retry_exhaust", "retry"),
        ("entry_ttl_s", NAN),
        ("exit_ttl_s", -1.0),
        ("max_spread_bps", INF),
        ("tick_overrides", {"BTCUSDT": 0.0}),
    ],
)
def test_4_config_is_validated(impl: Impl, field: str, value: Any) -> None:
    with pytest.raises(ValueError, match=field) as info:
        impl.ExecConfig(**{field: value})
    assert isinstance(info.value, ConfigError)


def test_5_from_env_reads_any_mapping_and_prefix(impl: Impl) -> None:
    env = {"X_EXEC_STYLE": "maker_entry", "X_TICK_SIZE_BTCUSDT": "0.5"}
    config = impl.ExecConfig.from_env(env, prefix="X_")
    assert config == impl.ExecConfig(style="maker_entry", tick_overrides={"BTCUSDT": 0.5})
    router = impl.router(config=config)
    assert router.tick_size("btcusdt") == 0.5


# ── package rule: value types validate their fields ──────────────────────────


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("order_type", 1),
        ("order_type", None),
        ("action", b"EXIT"),
        ("reason", None),
        ("post_only", 1),
        ("is_maker", "yes"),
        ("suppress", None),
        ("metadata", None),
        ("metadata", [("a", 1)]),
        ("limit_price", "1.0"),
        ("limit_price", None),
        ("ttl_s", "8"),
        ("ttl_s", Decimal("8")),
    ],
)
def test_plan_field_types_are_checked(impl: Impl, field: str, value: Any) -> None:
    with pytest.raises(TypeError, match=field):
        impl.ExecutionPlan(**{field: value})


def test_plan_numbers_are_stored_as_float(impl: Impl) -> None:
    p = impl.ExecutionPlan(order_type="LIMIT", limit_price=65000, ttl_s=8)
    assert (p.limit_price, p.ttl_s) == (65000.0, 8.0)
    assert type(p.limit_price) is float
    assert type(p.ttl_s) is float
    with pytest.raises((TypeError, ValueError, OverflowError), match="limit_price"):
        impl.ExecutionPlan(limit_price=10**400)


WO_ARGS: dict[str, Any] = {
    "trade_id": "T",
    "asset": "BTCUSDT",
    "side": "LONG",
    "action": "ENTER",
    "submitted_at": 1.0,
    "deadline": 2.0,
    "retries_left": 1,
    "base_trade_id": "T",
}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("side", 1),
        ("action", None),
        ("plan", "MARKET"),
        ("plan", {"order_type": "MARKET"}),
        ("retries_left", 1.0),
        ("retries_left", "1"),
        ("retry_n", 0.0),
        ("submitted_at", "1"),
        ("deadline", None),
    ],
)
def test_working_order_field_types_are_checked(impl: Impl, field: str, value: Any) -> None:
    args = {**WO_ARGS, "plan": impl.ExecutionPlan(), field: value}
    with pytest.raises(TypeError, match=field):
        impl.WorkingOrder(**args)


def test_working_order_coerces_times_and_accepts_any_ids(impl: Impl) -> None:
    changes = {"trade_id": 7, "base_trade_id": ("b", 1), "asset": None}
    times = {"submitted_at": 1, "deadline": 3}
    wo = impl.WorkingOrder(**{**WO_ARGS, **changes, **times, "plan": impl.ExecutionPlan()})
    assert (wo.submitted_at, wo.deadline) == (1.0, 3.0)
    assert type(wo.submitted_at) is float
    assert type(wo.deadline) is float
    assert (wo.trade_id, wo.base_trade_id, wo.asset) == (7, ("b", 1), None)
    with pytest.raises((TypeError, ValueError, OverflowError), match="retries_left"):
        impl.WorkingOrder(**{**WO_ARGS, "retries_left": 2**64}, plan=impl.ExecutionPlan())


# ── package rule: clock readings and expired(now) are floats ─────────────────


def test_int_clock_is_coerced(impl: Impl, clock: FakeClock) -> None:
    clock.now = 100
    router = impl.router(clock=clock)
    wo = register(router, impl, "A")
    assert type(wo.submitted_at) is float
    assert (wo.submitted_at, wo.deadline) == (100.0, 105.0)
    clock.now = 102
    assert router.snapshot()["working"][0]["age_s"] == 2.0
    assert type(router.snapshot()["working"][0]["age_s"]) is float
    assert router.expired(now=105) == [wo]
    assert router.expired(now=104) == []


@pytest.mark.parametrize("now", ["5", [5], Decimal("5"), 1j])
def test_non_numeric_now_is_a_type_error(impl: Impl, now: Any) -> None:
    router = impl.router()
    with pytest.raises(TypeError, match="now"):
        router.expired(now)


# ── package rule: non-planning methods name the bad argument ─────────────────


@pytest.mark.parametrize("method", ["working", "note_fill", "note_cancel", "clear_working"])
@pytest.mark.parametrize("trade_id", [[], {}, {1}])
def test_unhashable_trade_id_is_a_type_error(impl: Impl, method: str, trade_id: Any) -> None:
    with pytest.raises(TypeError, match="trade_id"):
        getattr(impl.router(), method)(trade_id)


@pytest.mark.parametrize(
    ("field", "value"),
    [("trade_id", []), ("plan", "MARKET"), ("retry_n", "1"), ("retry_n", 1.0)],
)
def test_register_working_names_the_argument(impl: Impl, field: str, value: Any) -> None:
    router = impl.router()
    args: dict[str, Any] = {
        "trade_id": "T",
        "asset": "BTCUSDT",
        "position_side": "LONG",
        "plan": maker_plan(impl),
    }
    with pytest.raises(TypeError, match=field):
        router.register_working(**{**args, field: value})
    assert router.working_orders() == []


def test_register_working_bad_position_side(impl: Impl) -> None:
    router = impl.router()
    with pytest.raises((TypeError, ValueError), match="position_side"):
        router.register_working(
            trade_id="T", asset="BTCUSDT", position_side=BadStr(), plan=maker_plan(impl)
        )


@pytest.mark.parametrize("fn", [5, None, "pre_plan"])
def test_register_hook_needs_a_callable(impl: Impl, fn: Any) -> None:
    with pytest.raises(TypeError, match="fn"):
        impl.router().register_hook("pre_plan", fn)


@pytest.mark.parametrize("stage", [[], None, 3, ("pre_plan",), {"pre_plan": 1}])
def test_bad_stage_is_a_value_error_with_legacy_message(impl: Impl, stage: Any) -> None:
    message = f"unknown hook stage {stage!r}; valid: {HOOK_STAGES}"
    with pytest.raises(ValueError, match=r"^unknown hook stage") as info:
        impl.router().register_hook(stage, lambda p, c: None)
    assert str(info.value) == message


@pytest.mark.parametrize("wo", [None, "T1", {"trade_id": "T1"}, object()])
def test_policy_methods_need_a_working_order(impl: Impl, wo: Any) -> None:
    router = impl.router()
    with pytest.raises(TypeError, match="wo"):
        router.entry_miss_action(wo)
    with pytest.raises(TypeError, match="wo"):
        router.retry_plan(wo, reference_price=65000.0)
    with pytest.raises(TypeError, match="wo"):
        router.market_fallback_plan(wo)
    assert router.counters == dict.fromkeys(router.counters, 0)


def test_pricing_helpers_name_the_argument(impl: Impl) -> None:
    router = impl.router()
    with pytest.raises((TypeError, ValueError), match="asset"):
        router.tick_size(BadStr())
    with pytest.raises(ValueError, match="reference_price"):
        router.maker_price(asset="BTCUSDT", order_side="BUY", reference_price="abc")
    with pytest.raises(TypeError, match="reference_price"):
        router.maker_price(asset="BTCUSDT", order_side="BUY", reference_price=None)
    with pytest.raises((TypeError, ValueError), match="order_side"):
        router.maker_price(asset="BTCUSDT", order_side=BadStr(), reference_price=1.0)
    with pytest.raises((TypeError, ValueError), match="position_side"):
        router.order_side("EXIT", BadStr())
    with pytest.raises((TypeError, ValueError), match="action"):
        impl.ExecutionRouter.order_side(BadStr(), "LONG")
    wo = register(router, impl, "T")
    with pytest.raises((TypeError, ValueError), match="reference_price"):
        router.retry_plan(wo, reference_price=object())


# ── package rule: a broken logger never breaks the trading path ──────────────


def test_broken_logger_is_ignored(impl: Impl) -> None:
    logger = BrokenLogger()
    router = impl.router(logger=logger)
    router.register_hook("pre_plan", lambda p, c: 1 / 0)
    router.register_hook(
        "pre_submit", lambda p, c: impl.ExecutionPlan(order_type="LIMIT", limit_price=0.0)
    )
    assert plan(router, "plan_entry").reason == "maker_entry"  # 2 warnings
    got = plan(router, "plan_entry", trade_id="T2", reference_price=None)  # 2 warnings
    assert got.reason == "invalid_input:reference_price"
    assert plan(router, "plan_exit", trade_id="T3").reason == "maker_exit:TAKE_PROFIT"  # 2
    assert logger.calls == 6
    assert router.counters["hook_errors"] == 3


# ── package rule: tick sizes are read at build time or on config assignment ──


def test_tick_sizes_follow_config_assignment(impl: Impl) -> None:
    config = impl.ExecConfig(style="maker_both", tick_overrides={"NEWUSDT": 0.25})
    router = impl.router(config=config)
    assert router.tick_size("newusdt") == 0.25
    assert router.tick_size("BTCUSDT") == 0.1
    assert router.tick_size("OTHER") == 0.0
    router.config = impl.ExecConfig(style="maker_both", tick_overrides={"BTCUSDT": 0.5})
    assert router.tick_size("BTCUSDT") == 0.5
    assert router.tick_size("NEWUSDT") == 0.0
    assert plan(router, "plan_entry").limit_price == 65000.0 - 0.5


def test_later_mutation_of_tick_overrides_is_not_seen(impl: Impl) -> None:
    config = impl.ExecConfig(tick_overrides={"BTCUSDT": 0.5})
    router = impl.router(config=config)
    config.tick_overrides["BTCUSDT"] = 2.0  # the dict is still mutable
    assert router.tick_size("BTCUSDT") == 0.5
    router.config = config  # re-assigning re-reads it
    assert router.tick_size("BTCUSDT") == 2.0
