"""ExecutionPlan, WorkingOrder and ExecConfig behave like the dataclasses they replace."""

from __future__ import annotations

import copy
import dataclasses
import math
import pickle
from typing import TYPE_CHECKING, Any

import pytest

from exec_router.config import ConfigError, ExecConfig

from ..support import maker_plan

if TYPE_CHECKING:
    from conftest import Impl

PLAN_FIELDS = [
    "order_type",
    "limit_price",
    "post_only",
    "ttl_s",
    "is_maker",
    "action",
    "reason",
    "suppress",
    "metadata",
]
PLAN_DEFAULTS: dict[str, Any] = {
    "order_type": "MARKET",
    "limit_price": 0.0,
    "post_only": False,
    "ttl_s": 0.0,
    "is_maker": False,
    "action": "ENTER",
    "reason": "taker_default",
    "suppress": False,
}
WO_FIELDS = [
    "trade_id",
    "asset",
    "side",
    "action",
    "plan",
    "submitted_at",
    "deadline",
    "retries_left",
    "base_trade_id",
    "retry_n",
]
CONFIG_FIELDS = [
    "style",
    "entry_ttl_s",
    "exit_ttl_s",
    "entry_miss",
    "entry_retries",
    "retry_exhaust",
    "offset_ticks",
    "max_spread_bps",
    "post_only",
    "tick_overrides",
]
DEFAULT_REPR = (
    "ExecutionPlan(order_type='MARKET', limit_price=0.0, post_only=False, ttl_s=0.0, "
    "is_maker=False, action='ENTER', reason='taker_default', suppress=False, metadata={})"
)


def limit(impl: Impl, **kwargs: Any) -> Any:
    """A first-retry maker entry quote; kwargs override its fields."""
    args: dict[str, Any] = {
        "limit_price": 64999.9,
        "ttl_s": 8.0,
        "metadata": {"retry_n": 1, "base_trade_id": "T"},
    }
    args.update(kwargs)
    return maker_plan(impl, **args)


def working(impl: Impl, **kwargs: Any) -> Any:
    args: dict[str, Any] = {
        "trade_id": "T-r1",
        "asset": "BTCUSDT",
        "side": "LONG",
        "action": "ENTER",
        "plan": limit(impl),
        "submitted_at": 1000.0,
        "deadline": 1008.0,
        "retries_left": 0,
        "base_trade_id": "T",
        "retry_n": 1,
    }
    args.update(kwargs)
    return impl.WorkingOrder(**args)


# ── dataclass introspection ──────────────────────────────────────────────────


def test_plan_is_a_dataclass(impl: Impl) -> None:
    plan = impl.ExecutionPlan()
    assert dataclasses.is_dataclass(impl.ExecutionPlan)
    assert dataclasses.is_dataclass(plan)
    fields = dataclasses.fields(plan)
    assert [f.name for f in fields] == PLAN_FIELDS
    assert {f.name: f.default for f in fields if f.name != "metadata"} == PLAN_DEFAULTS
    assert [f.name for f in dataclasses.fields(impl.ExecutionPlan)] == PLAN_FIELDS


def test_plan_defaults(impl: Impl) -> None:
    plan = impl.ExecutionPlan()
    assert {name: getattr(plan, name) for name in PLAN_DEFAULTS} == PLAN_DEFAULTS
    assert plan.metadata == {}


def test_working_order_is_a_dataclass(impl: Impl) -> None:
    wo = working(impl)
    assert dataclasses.is_dataclass(wo)
    fields = dataclasses.fields(impl.WorkingOrder)
    assert [f.name for f in fields] == WO_FIELDS
    assert fields[-1].default == 0
    assert all(f.default is dataclasses.MISSING for f in fields[:-1])


def test_config_is_a_dataclass() -> None:
    assert dataclasses.is_dataclass(ExecConfig)
    assert [f.name for f in dataclasses.fields(ExecConfig)] == CONFIG_FIELDS


# ── positional construction ──────────────────────────────────────────────────


def test_positional_construction(impl: Impl) -> None:
    plan = impl.ExecutionPlan("LIMIT", 1.5, True, 8, True, "EXIT", "r", False, {"a": 1})
    assert plan == impl.ExecutionPlan(
        order_type="LIMIT",
        limit_price=1.5,
        post_only=True,
        ttl_s=8.0,
        is_maker=True,
        action="EXIT",
        reason="r",
        metadata={"a": 1},
    )
    wo = impl.WorkingOrder("T", "BTCUSDT", "LONG", "EXIT", plan, 1.0, 2.0, 0, "T")
    assert wo.retry_n == 0
    assert wo == impl.WorkingOrder(
        trade_id="T",
        asset="BTCUSDT",
        side="LONG",
        action="EXIT",
        plan=plan,
        submitted_at=1.0,
        deadline=2.0,
        retries_left=0,
        base_trade_id="T",
    )
    with pytest.raises(TypeError):
        impl.WorkingOrder("T", "BTCUSDT", "LONG", "EXIT", plan, 1.0, 2.0, 0)
    with pytest.raises(TypeError):
        impl.ExecutionPlan(nope=1)


def test_match_args(impl: Impl) -> None:
    match limit(impl, limit_price=3.0):
        case impl.ExecutionPlan("LIMIT", price, True):
            assert price == 3.0
        case _:
            pytest.fail("positional pattern did not match")


# ── frozen / mutable ─────────────────────────────────────────────────────────


@pytest.mark.parametrize("name", PLAN_FIELDS)
def test_plan_is_frozen(impl: Impl, name: str) -> None:
    plan = limit(impl)
    before = getattr(plan, name)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(plan, name, before)
    with pytest.raises(dataclasses.FrozenInstanceError):
        delattr(plan, name)
    assert getattr(plan, name) == before


@pytest.mark.parametrize("name", CONFIG_FIELDS)
def test_config_is_frozen(name: str) -> None:
    config = ExecConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(config, name, getattr(config, name))
    with pytest.raises(dataclasses.FrozenInstanceError):
        delattr(config, name)


def test_plan_metadata_dict_is_mutable_and_shared(impl: Impl) -> None:
    meta: dict[str, Any] = {"a": 1}
    plan = impl.ExecutionPlan(metadata=meta)
    assert plan.metadata is meta
    plan.metadata["b"] = 2
    assert plan.metadata == {"a": 1, "b": 2}


def test_default_metadata_is_fresh_per_plan(impl: Impl) -> None:
    first, second = impl.ExecutionPlan(), impl.ExecutionPlan()
    assert first.metadata is not second.metadata
    first.metadata["x"] = 1
    assert second.metadata == {}
    assert impl.ExecutionPlan().metadata == {}
    router = impl.router("taker")
    args = {"asset": "BTCUSDT", "position_side": "LONG", "reference_price": 1.0}
    a = router.plan_entry(trade_id="A", **args)
    b = router.plan_entry(trade_id="B", **args)
    a.metadata["x"] = 1
    assert b.metadata == {}


def test_working_order_is_mutable(impl: Impl) -> None:
    wo = working(impl)
    new_plan = impl.ExecutionPlan(action="EXIT")
    changes: dict[str, Any] = {
        "trade_id": "X",
        "asset": "ETHUSDT",
        "side": "SHORT",
        "action": "EXIT",
        "plan": new_plan,
        "submitted_at": 5.0,
        "deadline": 6.0,
        "retries_left": 3,
        "base_trade_id": "B",
        "retry_n": 2,
    }
    for name, value in changes.items():
        setattr(wo, name, value)
    assert {name: getattr(wo, name) for name in WO_FIELDS} == changes
    assert wo == impl.WorkingOrder(**changes)


# ── equality, ordering, hashing ──────────────────────────────────────────────


def test_plan_equality(impl: Impl) -> None:
    assert impl.ExecutionPlan() == impl.ExecutionPlan()
    assert limit(impl) == limit(impl)
    assert limit(impl, limit_price=65000) == limit(impl, limit_price=65000.0)
    assert limit(impl) != limit(impl, metadata={})
    assert limit(impl) != limit(impl, reason="other")
    assert impl.ExecutionPlan() != "ExecutionPlan()"
    assert impl.ExecutionPlan() != (*PLAN_DEFAULTS.values(), {})


def test_working_order_equality(impl: Impl) -> None:
    assert working(impl) == working(impl)
    assert working(impl) != working(impl, deadline=1009.0)
    assert working(impl) != working(impl, plan=limit(impl, ttl_s=1.0))
    assert working(impl) != "T-r1"


def test_no_ordering(impl: Impl) -> None:
    with pytest.raises(TypeError):
        _ = impl.ExecutionPlan() < impl.ExecutionPlan()
    with pytest.raises(TypeError):
        _ = working(impl) < working(impl)


def test_plan_is_unhashable_like_a_frozen_dataclass_with_a_dict(impl: Impl) -> None:
    with pytest.raises(TypeError):
        hash(impl.ExecutionPlan())
    with pytest.raises(TypeError):
        _ = {impl.ExecutionPlan()}


def test_working_order_and_config_are_unhashable(impl: Impl) -> None:
    with pytest.raises(TypeError):
        hash(working(impl))
    with pytest.raises(TypeError):
        hash(ExecConfig())


# ── repr ─────────────────────────────────────────────────────────────────────


def test_plan_repr(impl: Impl) -> None:
    assert repr(impl.ExecutionPlan()) == DEFAULT_REPR
    plan = limit(impl, reason="it's", metadata={"k": [1, "two"]})
    assert repr(plan) == (
        "ExecutionPlan(order_type='LIMIT', limit_price=64999.9, post_only=True, ttl_s=8.0, "
        "is_maker=True, action='ENTER', reason=\"it's\", suppress=False, "
        "metadata={'k': [1, 'two']})"
    )
    assert repr(impl.ExecutionPlan(limit_price=1e-05, ttl_s=math.inf)).startswith(
        "ExecutionPlan(order_type='MARKET', limit_price=1e-05, post_only=False, ttl_s=inf,"
    )
    assert str(impl.ExecutionPlan()) == DEFAULT_REPR


def test_working_order_repr(impl: Impl) -> None:
    wo = working(impl, plan=impl.ExecutionPlan(), trade_id=7, submitted_at=1)
    assert repr(wo) == (
        f"WorkingOrder(trade_id=7, asset='BTCUSDT', side='LONG', action='ENTER', "
        f"plan={DEFAULT_REPR}, submitted_at=1.0, deadline=1008.0, retries_left=0, "
        f"base_trade_id='T', retry_n=1)"
    )


def test_recursive_metadata_repr(impl: Impl) -> None:
    meta: dict[str, Any] = {}
    plan = impl.ExecutionPlan(metadata=meta)
    meta["self"] = meta
    assert repr(plan).endswith("metadata={'self': {...}})")


# ── replace / asdict / astuple ───────────────────────────────────────────────


def test_plan_replace(impl: Impl) -> None:
    plan = limit(impl)
    moved = dataclasses.replace(plan, limit_price=65000, reason="moved")
    assert type(moved) is impl.ExecutionPlan
    assert moved.limit_price == 65000.0
    assert type(moved.limit_price) is float
    assert moved.reason == "moved"
    assert moved.metadata is plan.metadata  # replace is shallow
    assert plan.reason == "maker_entry"
    assert dataclasses.replace(plan) == plan
    with pytest.raises(TypeError):
        dataclasses.replace(plan, nope=1)
    with pytest.raises(TypeError, match="post_only"):
        dataclasses.replace(plan, post_only="yes")


def test_working_order_replace(impl: Impl) -> None:
    wo = working(impl)
    later = dataclasses.replace(wo, deadline=2000)
    assert later.deadline == 2000.0
    assert later.plan is wo.plan
    assert wo.deadline == 1008.0


def test_config_replace_is_validated() -> None:
    config = ExecConfig()
    assert dataclasses.replace(config, style="maker_both").maker_entry is True
    with pytest.raises(ConfigError, match="style"):
        dataclasses.replace(config, style="maker")


def test_asdict_and_astuple(impl: Impl) -> None:
    plan = limit(impl)
    as_dict = dataclasses.asdict(plan)
    assert as_dict == {
        **PLAN_DEFAULTS,
        "order_type": "LIMIT",
        "limit_price": 64999.9,
        "post_only": True,
        "ttl_s": 8.0,
        "is_maker": True,
        "reason": "maker_entry",
        "metadata": {"retry_n": 1, "base_trade_id": "T"},
    }
    assert as_dict["metadata"] is not plan.metadata  # asdict copies deeply
    assert list(as_dict) == PLAN_FIELDS
    assert dataclasses.astuple(plan) == tuple(as_dict.values())
    wo_dict = dataclasses.asdict(working(impl))
    assert list(wo_dict) == WO_FIELDS
    assert wo_dict["plan"] == as_dict  # nested dataclasses become dicts
    assert dataclasses.astuple(working(impl))[4] == tuple(as_dict.values())
    assert dataclasses.asdict(ExecConfig())["tick_overrides"] == {}


# ── pickle / copy ────────────────────────────────────────────────────────────


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_pickle_round_trip(impl: Impl, protocol: int) -> None:
    plan = limit(impl)
    again = pickle.loads(pickle.dumps(plan, protocol))
    assert again == plan
    assert type(again) is impl.ExecutionPlan
    wo = working(impl, trade_id=("T", 1))
    wo_again = pickle.loads(pickle.dumps(wo, protocol))
    assert wo_again == wo
    assert type(wo_again) is impl.WorkingOrder
    config = ExecConfig(style="maker_both", tick_overrides={"X": 0.5})
    assert pickle.loads(pickle.dumps(config, protocol)) == config


def test_copy_and_deepcopy(impl: Impl) -> None:
    plan = limit(impl)
    shallow = copy.copy(plan)
    assert shallow == plan
    assert shallow.metadata is plan.metadata
    deep = copy.deepcopy(plan)
    assert deep == plan
    assert deep.metadata is not plan.metadata
    wo = working(impl)
    wo_shallow = copy.copy(wo)
    assert wo_shallow == wo
    assert wo_shallow is not wo
    assert wo_shallow.plan is wo.plan
    wo_shallow.deadline = 0.0
    assert wo.deadline == 1008.0
    wo_deep = copy.deepcopy(wo)
    assert wo_deep == wo
    assert wo_deep.plan.metadata is not wo.plan.metadata


# ── sane() ───────────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    ("order_type", "price", "sane"),
    [
        ("MARKET", 0.0, True),
        ("MARKET", -5.0, True),
        ("MARKET", math.nan, True),
        ("LIMIT", 0.1, True),
        ("LIMIT", math.inf, True),
        ("LIMIT", 0.0, False),
        ("LIMIT", -0.0, False),
        ("LIMIT", -1.0, False),
        ("LIMIT", math.nan, False),
        ("LIMIT", -math.inf, False),
        ("market", 1.0, False),
        ("STOP", 1.0, False),
        ("", 0.0, False),
    ],
)
def test_sane(impl: Impl, order_type: str, price: float, sane: bool) -> None:
    assert impl.ExecutionPlan(order_type=order_type, limit_price=price).sane() is sane
