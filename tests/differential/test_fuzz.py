"""Bad input, never a crash: a hypothesis fuzz over the whole public API, both backends.

Each example builds one router per backend and runs the same random call sequence on
both, mixing valid arguments with hostile ones (None, bytes, NaN, 10**400, lone
surrogates, 100 kB strings, containers, objects whose dunders raise). After every call:

- nothing but an ``Exception`` escapes (PyO3's ``PanicException`` is a ``BaseException``);
- ``plan_entry`` / ``plan_exit`` return an ``ExecutionPlan`` and never raise;
- any other call returns or raises ``TypeError`` / ``ValueError`` naming an argument;
- both backends give the same result or the same exception type;
- the router still plans, its counters move by exactly one plan, and its registry views
  (``working_orders``, ``working``, ``expired``, ``has_working_entry``) agree.

``FUZZ_EXAMPLES`` sets the budget (default 1000 sequences; ``make fuzz`` runs thousands).
A deterministic one-bad-argument sweep also runs in a subprocess, so that a segfault
shows up as a failed test instead of killing pytest. The gaps it found are kept at
the end as minimal regression tests.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import struct
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from types import ModuleType
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exec_router import reference
from exec_router.config import ConfigError, ExecConfig
from exec_router.constants import COUNTER_KEYS, HOOK_STAGES, VALID_EXHAUST, VALID_MISS

from ..backends import BACKENDS as NAMED_BACKENDS
from ..backends import NATIVE as native
from .hostile import (
    AliasStr,
    BadBool,
    BadCompare,
    BadEq,
    BadFloat,
    BadFloatValue,
    BadFormat,
    BadHash,
    BadStr,
    HostileError,
)

FAR_FUTURE = sys.float_info.max  # the latest finite `now`: every order is due
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "1000"))
STEPS = 20
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
BACKENDS: list[ModuleType] = [module for _, module in NAMED_BACKENDS]
needs_native = pytest.mark.skipif(native is None, reason="exec_router._core is not built")


# ── hostile values: the same objects go to both backends ────────────────────


BIG = "A" * 100_000
NAN = float("nan")
INF = math.inf
HOSTILE: list[Any] = [
    None,
    "",
    "\ud800",
    "x\udfffy",
    BIG,
    BIG.lower(),
    b"BTCUSDT",
    bytearray(b"LONG"),
    NAN,
    INF,
    -INF,
    -0.0,
    0,
    -1,
    5e-324,
    10**400,
    -(10**400),
    2**63,
    True,
    False,
    [],
    [1.0],
    {},
    {"a": 1},
    (),
    (1, []),
    1j,
    object(),
    Decimal("NaN"),
    Decimal("1e400"),
    Fraction(1, 3),
    BadFloat(),
    BadStr(),
    BadFormat(),
    BadHash(),
    BadEq(),
    BadBool(),
    BadCompare(),
    BadFloatValue(),
    AliasStr("LONG"),
]


class Pool:
    """``pool(i)`` is ``items[i]``; its repr stays short (no 100 kB strategy reprs)."""

    def __init__(self, items: list[Any], name: str) -> None:
        self.items = items
        self.name = name

    def __call__(self, i: int) -> Any:
        return self.items[i]

    def __repr__(self) -> str:
        return self.name


def pick(items: list[Any], name: str = "values") -> st.SearchStrategy[Any]:
    return st.integers(0, len(items) - 1).map(Pool(items, name))


HOSTILES = pick(HOSTILE, "HOSTILE")


def values(valid: list[Any]) -> st.SearchStrategy[Any]:
    """Two draws in three from ``valid``, the rest hostile."""
    return st.one_of(pick(valid), pick(valid), HOSTILES)


TRADE_IDS = values(["t1", "t2", "t3", 1, ("t", 1)])
ASSETS = values(["BTCUSDT", "ethusdt", "FOOUSDT"])
SIDES = values(["LONG", "SHORT", "short"])
PRICES = st.one_of(values([65000.0, 100, 0.15, "3000"]), st.floats(), st.integers())
SPREADS = values([None, 1.0, "3", 10.0])
REASONS = values(["TAKE_PROFIT", "STOP_LOSS", "take_profit", "MAX_HOLD"])
ORDER_SIDES = values(["BUY", "SELL", "sell"])
ACTIONS = values(["ENTER", "EXIT", "exit"])
NOWS = st.one_of(values([1000.0, 1e9, 0, 1008.5]), st.floats())
RETRY_NS = values([0, 1, 2, None])
BASE_IDS = values([None, "b1", "t1"])
STAGES = values(list(HOOK_STAGES))
CLOCK_VALUES = st.one_of(values([1000.0, 1004.0, 1010, 2000.0]), st.floats())
MISSING = "<missing>"


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """An optional argument: sometimes left out."""
    return st.one_of(st.just(MISSING), strategy)


CONFIGS = st.builds(
    ExecConfig,
    style=st.sampled_from(["maker_both", "maker_both", "maker_entry", "maker_exit", "taker"]),
    entry_ttl_s=st.sampled_from([0.0, 1.0, 8.0]),
    exit_ttl_s=st.sampled_from([0.0, 5.0]),
    entry_miss=st.sampled_from(VALID_MISS),
    entry_retries=st.integers(0, 2),
    retry_exhaust=st.sampled_from(VALID_EXHAUST),
    offset_ticks=st.sampled_from([0, 1, 2, 10**6]),
    max_spread_bps=st.sampled_from([0.0, 5.0, 1000.0]),
    post_only=st.booleans(),
    tick_overrides=st.sampled_from([{}, {"FOOUSDT": 0.5}, {"BTCUSDT": 1e-9}]),
)
PLAN_FIELDS = {
    "order_type": values(["MARKET", "LIMIT", "STOP"]),
    "limit_price": values([0.0, 100.0, 99.5, 65000, -1.0]),
    "post_only": values([True, False]),
    "ttl_s": values([0.0, 0.1, 8.0, 5]),
    "is_maker": values([True, False]),
    "action": values(["ENTER", "EXIT", "HOLD"]),
    "reason": values(["hook", "maker_entry", ""]),
    "suppress": values([False, True]),
    "metadata": values([{}, {"k": 1}]),
}
WO_FIELDS = {
    "trade_id": TRADE_IDS,
    "asset": ASSETS,
    "side": SIDES,
    "action": values(["ENTER", "EXIT"]),
    "plan": st.just("<plan>"),
    "submitted_at": values([0.0, 1000, 1e9]),
    "deadline": values([1.0, 1008, INF]),
    "retries_left": values([0, 1, 3]),
    "base_trade_id": BASE_IDS,
    "retry_n": values([0, 1, 2]),
}
PLAN_KWARGS = st.fixed_dictionaries({}, optional=PLAN_FIELDS)
WO_KWARGS = st.fixed_dictionaries(
    {k: v for k, v in WO_FIELDS.items() if k != "retry_n"},
    optional={"retry_n": WO_FIELDS["retry_n"]},
)
VALID_PLAN = {"order_type": "LIMIT", "limit_price": 100.0, "ttl_s": 5.0, "is_maker": True}
HOOK_KINDS = values(["record", "raise", "junk", "replace", "suppress"])


# ── calls: one op runs on both backends ──────────────────────────────────────


@dataclass
class Side:
    """One backend's router and the objects the sequence made with it."""

    api: ModuleType
    router: Any
    clock: Clock
    logger: Logger
    plans: list[Any] = field(default_factory=list)
    orders: list[Any] = field(default_factory=list)
    handles: list[Any] = field(default_factory=list)
    observed: list[Any] = field(default_factory=list)


class Clock:
    def __init__(self) -> None:
        self.value: Any = 1000.0

    def __call__(self) -> Any:
        return self.value


class Logger:
    """Formats eagerly, like ``logging`` would; a formatting failure is recorded."""

    def __init__(self, fail: bool = False) -> None:
        self.lines: list[str] = []
        self.fail = fail

    def warning(self, msg: str, *args: Any) -> None:
        try:
            self.lines.append(msg % args)
        except Exception as exc:
            self.lines.append(f"<unformattable {type(exc).__name__}>")
        if self.fail:
            raise RuntimeError("logger is down")


@dataclass(frozen=True)
class Op:
    """A call: ``method`` with ``args`` (``MISSING`` values are left out)."""

    method: str
    args: tuple[tuple[str, Any], ...] = ()

    def kwargs(self) -> dict[str, Any]:
        return {k: v for k, v in self.args if v is not MISSING}

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={_short(v)}" for k, v in self.args)
        return f"{self.method}({shown})"


def _short(v: Any) -> str:
    try:
        text = repr(v)
    except Exception:
        text = f"<{type(v).__name__}>"
    return text if len(text) < 40 else f"{text[:20]}...<{len(text)} chars>"


def op(method: str, **args: st.SearchStrategy[Any]) -> st.SearchStrategy[Op]:
    names = list(args)
    return st.tuples(*args.values()).map(lambda vs: Op(method, tuple(zip(names, vs, strict=True))))


# State export/restore and the registry observer, where the build has them.
HAS_STATE = all(hasattr(api.ExecutionRouter, "from_state") for api in BACKENDS)
DELETE = "<delete>"
STATE_PATH_LIST: list[tuple[Any, ...]] = [
    (),
    ("format",),
    ("version",),
    ("config",),
    ("config", "style"),
    ("config", "entry_ttl_s"),
    ("config", "tick_overrides"),
    ("config", "bogus"),
    ("counters",),
    ("counters", "plans_entry"),
    ("counters", "bogus"),
    ("working",),
    ("working", 0),
    ("working", 0, "trade_id"),
    ("working", 0, "asset"),
    ("working", 0, "position_side"),
    ("working", 0, "action"),
    ("working", 0, "plan"),
    ("working", 0, "plan", "limit_price"),
    ("working", 0, "plan", "metadata"),
    ("working", 0, "submitted_at"),
    ("working", 0, "deadline"),
    ("working", 0, "retries_left"),
    ("working", 0, "base_trade_id"),
    ("working", 0, "retry_n"),
]
STATE_PATHS = st.sampled_from(STATE_PATH_LIST)
STATE_VALUES = st.one_of(st.just(DELETE), HOSTILES)
OBSERVERS = st.one_of(st.sampled_from(["record", "raise", None]), HOSTILES)


class ObserverError(RuntimeError):
    """Raised by the fuzz's failing registry observer: user code, so it may propagate."""


def mutate(state: Any, path: tuple[Any, ...], value: Any) -> Any:
    """A deep copy of ``state`` with the item at ``path`` replaced (or deleted)."""
    state = copy.deepcopy(state)
    if not path:
        return value if value is not DELETE else {}
    node = state
    for key in path[:-1]:
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            return state
    last = path[-1]
    try:
        if value is DELETE:
            del node[last]
        else:
            node[last] = value
    except (KeyError, IndexError, TypeError):
        pass
    return state


#: The wall clock during a `from_state` round trip.
WALL_TIME = 1_767_225_600.0


def strip_times(state: Any) -> Any:
    """An export without its wall-clock readings (they differ by microseconds)."""
    if not isinstance(state, dict):
        return state
    out = {k: v for k, v in state.items() if k != "wall_time"}
    out["working"] = [
        {k: v for k, v in rec.items() if k not in ("submitted_at", "deadline")}
        for rec in state.get("working", [])
    ]
    return out


# Refs to per-backend objects, resolved on each side: ("plan", i), ("wo", i) or a value.
PLAN_REFS = st.one_of(st.tuples(st.just("plan"), st.integers(0, 5)), HOSTILES)
WO_REFS = st.one_of(st.tuples(st.just("wo"), st.integers(0, 5)), HOSTILES)
PLANNING = ("plan_entry", "plan_exit")

OPS = st.one_of(
    op("tick_size", asset=ASSETS),
    op("maker_price", asset=ASSETS, order_side=ORDER_SIDES, reference_price=PRICES),
    op("order_side", action=ACTIONS, position_side=SIDES),
    *[
        op(
            "plan_entry",
            trade_id=TRADE_IDS,
            asset=ASSETS,
            position_side=SIDES,
            reference_price=PRICES,
            spread_bps=maybe(SPREADS),
        )
    ]
    * 3,
    *[
        op(
            "plan_exit",
            trade_id=TRADE_IDS,
            asset=ASSETS,
            position_side=SIDES,
            reference_price=PRICES,
            reason=REASONS,
            spread_bps=maybe(SPREADS),
        )
    ]
    * 3,
    *[
        op(
            "register_working",
            trade_id=TRADE_IDS,
            asset=ASSETS,
            position_side=SIDES,
            plan=PLAN_REFS,
            base_trade_id=maybe(BASE_IDS),
            retry_n=maybe(RETRY_NS),
        )
    ]
    * 3,
    op("working", trade_id=TRADE_IDS),
    op("working_orders"),
    op("has_working_entry"),
    op("expired", now=maybe(NOWS)),
    op("note_fill", trade_id=TRADE_IDS),
    op("note_cancel", trade_id=TRADE_IDS),
    op("clear_working", trade_id=TRADE_IDS),
    op("entry_miss_action", wo=WO_REFS),
    op("retry_plan", wo=WO_REFS, reference_price=PRICES),
    op("market_fallback_plan", wo=WO_REFS),
    op("snapshot"),
    op("register_hook", stage=STAGES, fn=HOOK_KINDS),
    op("unregister", index=st.integers(0, 5)),
    op("set_config", value=st.one_of(CONFIGS, HOSTILES)),
    op("set_logger", value=st.one_of(st.sampled_from(["ok", "failing"]), HOSTILES)),
    op("set_clock", value=st.one_of(st.just("ok"), HOSTILES)),
    op("clock_value", value=CLOCK_VALUES),
    op("reset_counters", value=st.integers(0, 1000)),
    op("make_plan", kwargs=PLAN_KWARGS),
    op("replace_plan", index=st.integers(0, 5), kwargs=PLAN_KWARGS),
    op("assign_plan", index=st.integers(0, 5), name=st.sampled_from(list(PLAN_FIELDS))),
    op("make_wo", kwargs=WO_KWARGS),
    op("replace_wo", index=st.integers(0, 5), kwargs=WO_KWARGS),
    op("assign_wo", index=st.integers(0, 5), name=st.sampled_from(list(WO_FIELDS))),
    *([op("export_state")] * 2 if HAS_STATE else []),
    *([op("from_state", path=STATE_PATHS, value=STATE_VALUES)] * 3 if HAS_STATE else []),
    *([op("observe", fn=OBSERVERS)] if HAS_STATE else []),
)


def token(value: Any) -> str | None:
    """``value`` if it is an exact str (a harness token), else None: never calls a dunder."""
    return value if type(value) is str else None


def resolve(side: Side, value: Any) -> Any:
    if isinstance(value, tuple) and len(value) == 2 and value[0] in ("plan", "wo"):
        pool = side.plans if value[0] == "plan" else side.orders
        pool = pool or ([side.api.ExecutionPlan(**VALID_PLAN)] if value[0] == "plan" else [None])
        return pool[value[1] % len(pool)]
    return value


def make_hook(side: Side, kind: Any) -> Any:
    """The hook for ``kind``; a hostile ``kind`` is passed as ``fn`` itself."""
    api = side.api

    def hook(payload: Any, ctx: dict[str, Any]) -> Any:
        if kind == "raise":
            raise RuntimeError("hook bug")
        if kind == "junk":
            return BIG
        if kind == "replace":
            return api.ExecutionPlan(action=ctx.get("action", "ENTER"), reason="hook")
        if kind == "suppress":
            return api.ExecutionPlan(action=ctx.get("action", "ENTER"), suppress=True)
        return None

    return (
        hook
        if isinstance(kind, str) and kind in ("record", "raise", "junk", "replace", "suppress")
        else kind
    )


def names_of(o: Op) -> set[str]:
    """The argument names an error of ``o`` may name."""
    kwargs = dict(o.args)
    names = {k for k, v in o.args if v is not MISSING}
    if o.method in ("make_plan", "replace_plan", "make_wo", "replace_wo"):
        names |= set(kwargs["kwargs"])
    if o.method in ("assign_plan", "assign_wo"):
        names.add(kwargs["name"])
    if o.method in ("register_working", "expired", "snapshot", "clock_value"):
        names.add("clock")  # the clock is read: its reading may be bad
    if o.method in ("retry_plan", "market_fallback_plan", "entry_miss_action"):
        names |= {"base_trade_id", "asset", "position_side", "side"}
    if o.method.startswith("set_"):
        names.add(o.method[4:])
    if o.method == "register_hook":
        names.add("hook stage")
    if o.method in ("export_state", "from_state"):
        names |= {"state", "config", "ExecConfig", "counter", "trade_id", "asset", "clock"}
        names |= {"ExecutionPlan", "WorkingOrder", "position_side", "base_trade_id", "retry_n"}
        names |= set(WO_FIELDS) | {"plan"}
    if o.method == "observe":
        names.add("fn")
    return names


def apply(side: Side, o: Op, data: Any) -> Any:
    """Run ``o`` on ``side``; returns its result (or raises what it raised)."""
    r, api, kw = side.router, side.api, o.kwargs()
    m = o.method
    if m in ("tick_size", "working", "note_fill", "note_cancel", "clear_working"):
        return getattr(r, m)(*kw.values())
    if m == "order_side":
        return api.ExecutionRouter.order_side(kw["action"], kw["position_side"])
    if m in ("maker_price", "plan_entry", "plan_exit"):
        return getattr(r, m)(**kw)
    if m == "register_working":
        kw["plan"] = resolve(side, kw["plan"])
        wo = r.register_working(**kw)
        side.orders.append(wo)
        return wo
    if m in ("working_orders", "has_working_entry", "snapshot"):
        return getattr(r, m)()
    if m == "expired":
        return r.expired(*kw.values())
    if m in ("entry_miss_action", "market_fallback_plan"):
        return getattr(r, m)(resolve(side, kw["wo"]))
    if m == "retry_plan":
        return r.retry_plan(resolve(side, kw["wo"]), reference_price=kw["reference_price"])
    if m == "register_hook":
        handle = r.register_hook(kw["stage"], make_hook(side, kw["fn"]))
        side.handles.append(handle)
        return callable(handle)
    if m == "unregister":
        if side.handles:
            side.handles[kw["index"] % len(side.handles)]()
        return None
    if m == "set_config":
        r.config = kw["value"]
        return None
    if m == "set_logger":
        v = kw["value"]
        r.logger = {"ok": side.logger, "failing": Logger(fail=True)}.get(token(v), v)
        return None
    if m == "set_clock":
        r.clock = side.clock if token(kw["value"]) == "ok" else kw["value"]
        return None
    if m == "clock_value":
        side.clock.value = kw["value"]
        return None
    if m == "reset_counters":
        r.counters = dict.fromkeys(COUNTER_KEYS, kw["value"])
        return None
    if m == "make_plan":
        plan = api.ExecutionPlan(**kw["kwargs"])
        side.plans.append(plan)
        return plan
    if m == "replace_plan":
        base = resolve(side, ("plan", kw["index"]))
        plan = dataclasses.replace(base, **kw["kwargs"])
        side.plans.append(plan)
        return plan
    if m == "assign_plan":
        setattr(resolve(side, ("plan", kw["index"])), kw["name"], "x")
        return None
    if m in ("make_wo", "replace_wo"):
        fields = dict(kw["kwargs"])
        fields["plan"] = resolve(side, ("plan", 0))
        if m == "make_wo":
            wo = api.WorkingOrder(**fields)
        else:
            base = resolve(side, ("wo", kw["index"]))
            if base is None:
                return None
            wo = dataclasses.replace(base, **fields)
        side.orders.append(wo)
        return wo
    if m == "assign_wo":
        wo = resolve(side, ("wo", kw["index"]))
        if wo is not None:
            value = resolve(side, ("plan", 0)) if token(data) == "<plan>" else data
            setattr(wo, kw["name"], value)
        return None
    if m == "export_state":
        return strip_times(r.export_state())
    if m == "from_state":
        # One wall-clock reading for the round trip: its times then come back
        # exactly, not moved by the microseconds between export and restore.
        with mock.patch("exec_router.state.time.time", return_value=WALL_TIME):
            state = mutate(r.export_state(), kw["path"], kw["value"])
            side.router = api.ExecutionRouter.from_state(
                state, logger=side.logger, clock=side.clock
            )
        return "restored"
    if m == "observe":
        r._observe_registry(make_observer(side, kw["fn"]))
        return None
    raise AssertionError(f"unknown op {m}")


def make_observer(side: Side, kind: Any) -> Any:
    if token(kind) == "record":
        return lambda op, trade_id, wo: side.observed.append((op, id(wo)))
    if token(kind) == "raise":

        def fail(op: str, trade_id: Any, wo: Any) -> None:
            raise ObserverError(op)

        return fail
    return kind


# ── outcomes: checked per backend, then compared ─────────────────────────────


def norm(v: Any, depth: int = 0) -> Any:
    """A backend-independent, comparable form of ``v``."""
    t = type(v)
    if depth > 4:
        return ("deep",)
    if v is None or t in (bool, str, int):
        return (t.__name__, v)
    if t is float:
        return ("nan",) if math.isnan(v) else ("float", struct.pack("<d", v))
    if t in (list, tuple):
        return (t.__name__, tuple(norm(x, depth + 1) for x in v))
    if t is dict:
        return ("dict", tuple((norm(k, depth + 1), norm(x, depth + 1)) for k, x in v.items()))
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        names = [f.name for f in dataclasses.fields(v)]
        return (t.__name__, tuple(norm(getattr(v, n), depth + 1) for n in names))
    if t.__name__ == "Counters":
        return norm(dict(v), depth)
    return ("obj", id(v))


def run(side: Side, o: Op, data: Any) -> tuple[str, Any]:
    try:
        return ("ok", apply(side, o, data))
    except Exception as exc:
        return ("raised", exc)
    except BaseException as exc:  # a PanicException, or worse
        pytest.fail(f"{side.api.__name__}: {o!r} let {type(exc).__name__} escape: {exc!r}")


def check_contract(side: Side, o: Op, outcome: tuple[str, Any]) -> None:
    kind, value = outcome
    where = f"{side.api.__name__}: {o!r}"
    if o.method in PLANNING:
        assert kind == "ok", f"{where} raised {value!r}"
        assert isinstance(value, side.api.ExecutionPlan), f"{where} returned {value!r}"
        assert value.sane(), f"{where} returned an insane plan {value!r}"
        return
    if kind == "ok":
        return
    exc = value
    if o.method == "assign_plan":
        assert isinstance(exc, dataclasses.FrozenInstanceError), f"{where}: {exc!r}"
        return
    if isinstance(exc, ObserverError):
        return  # the observer's own error: user code, propagated as the clock's would be
    assert isinstance(exc, (TypeError, ValueError)), f"{where} raised {exc!r}"
    message = str(exc)
    assert any(name in message for name in names_of(o)), f"{where}: {message!r} names no argument"


def comparable(o: Op, outcome: tuple[str, Any]) -> Any:
    kind, value = outcome
    if kind == "raised":
        return ("raised", type(value).__name__)
    if o.method in ("unregister", "assign_wo"):
        return ("ok",)  # the native WorkingOrder checks assignments; pure does not
    return ("ok", norm(value))


def registry_consistent(side: Side) -> None:
    r = side.router
    orders = r.working_orders()
    assert r.has_working_entry() == any(wo.action == "ENTER" for wo in orders)
    due = r.expired(FAR_FUTURE)
    assert [id(w) for w in due] == [id(w) for w in orders if w.deadline <= FAR_FUTURE]
    assert len({id(wo) for wo in orders}) == len(orders)
    for wo in orders:
        try:
            found = r.working(wo.trade_id)  # trade_id may have been reassigned
        except Exception:  # unhashable, or an __eq__ that raises on a hash collision
            continue
        assert found is None or isinstance(found, side.api.WorkingOrder)


def probe(side: Side) -> Any:
    """A valid plan_entry still works and moves the counters by exactly one plan."""
    r = side.router
    before = dict(r.counters)
    plan = r.plan_entry(
        trade_id="probe", asset="BTCUSDT", position_side="LONG", reference_price=1.5
    )
    after = dict(r.counters)
    assert isinstance(plan, side.api.ExecutionPlan)
    assert all(type(v) is int for v in after.values()), after
    assert list(after) == list(COUNTER_KEYS)
    delta = {k: after[k] - before[k] for k in after if after[k] != before[k]}
    assert delta.get("plans_entry") == 1, delta
    classified = [
        k for k in ("maker_entries", "taker_entries", "suppressed_dup_enter") if k in delta
    ]
    assert len(classified) <= 1, delta
    if not plan.suppress:
        assert classified == ["maker_entries" if plan.is_maker else "taker_entries"], delta
    return norm(plan)


def new_side(api: ModuleType, config: ExecConfig) -> Side:
    clock, logger = Clock(), Logger()
    router = api.ExecutionRouter(config, logger=logger, clock=clock)
    return Side(api, router, clock, logger)


def run_sequence(config: ExecConfig, ops: list[tuple[Op, Any]]) -> None:
    sides = [new_side(api, config) for api in BACKENDS]
    for o, data in ops:
        outcomes = [run(side, o, data) for side in sides]
        for side, outcome in zip(sides, outcomes, strict=True):
            check_contract(side, o, outcome)
        seen = [comparable(o, outcome) for outcome in outcomes]
        assert all(s == seen[0] for s in seen), f"{o!r}: backends differ: {seen}"
        for side in sides:
            registry_consistent(side)
        probes = [probe(side) for side in sides]
        assert all(p == probes[0] for p in probes), f"after {o!r}: probes differ: {probes}"


# Values both WorkingOrder types accept for each field: the native type checks
# assignments and the pure one does not (a documented difference), so type-valid edge
# values only, except for the fields typed Any.
TEXT_EDGES = ["LONG", "SHORT", "ENTER", "EXIT", "", "\ud800", BIG, AliasStr("ENTER")]
FLOAT_EDGES = [NAN, INF, -INF, -0.0, 5e-324, 1e308, 0.0, 1000.0, 1008.0]
ASSIGN_VALUES = {
    "trade_id": HOSTILES,
    "asset": HOSTILES,
    "base_trade_id": HOSTILES,
    "side": pick(TEXT_EDGES),
    "action": pick(TEXT_EDGES),
    "plan": st.just("<plan>"),
    "submitted_at": st.sampled_from(FLOAT_EDGES),
    "deadline": st.sampled_from(FLOAT_EDGES),
    "retries_left": st.sampled_from([0, 1, -1, 2**63 - 1, -(2**63)]),
    "retry_n": st.sampled_from([0, 1, -1, 2**63 - 1, -(2**63)]),
}


@st.composite
def sequences(draw: st.DrawFn) -> list[tuple[Op, Any]]:
    steps = draw(st.lists(OPS, min_size=1, max_size=STEPS))
    out: list[tuple[Op, Any]] = []
    for o in steps:
        if o.method == "assign_wo":
            out.append((o, draw(ASSIGN_VALUES[dict(o.args)["name"]])))
        else:
            out.append((o, None))
    return out


@FUZZ
@given(config=CONFIGS, ops=sequences())
def test_call_sequences_never_crash_and_backends_agree(
    config: ExecConfig, ops: list[tuple[Op, Any]]
) -> None:
    run_sequence(config, ops)


# ── constructors and config ─────────────────────────────────────────────────

CONFIG_VALUES = {
    "style": values(["taker", "maker_both", "MAKER_BOTH"]),
    "entry_ttl_s": values([0.0, 8.0, 3]),
    "exit_ttl_s": values([0.0, 5.0]),
    "entry_miss": values(list(VALID_MISS)),
    "entry_retries": values([0, 1, 10]),
    "retry_exhaust": values(list(VALID_EXHAUST)),
    "offset_ticks": values([0, 1, 100]),
    "max_spread_bps": values([0.0, 5.0]),
    "post_only": values([True, False]),
    "tick_overrides": st.one_of(
        values([{}, {"BTCUSDT": 0.5}]),
        st.dictionaries(pick(HOSTILE[:7]), HOSTILES, max_size=2),
    ),
}


@FUZZ
@given(kwargs=st.fixed_dictionaries({}, optional=CONFIG_VALUES))
def test_exec_config_rejects_bad_fields_with_config_error(kwargs: dict[str, Any]) -> None:
    try:
        cfg = ExecConfig(**kwargs)
    except ConfigError as exc:
        message = str(exc)
        assert any(name in message for name in kwargs), message
        return
    except BaseException as exc:
        pytest.fail(f"ExecConfig({kwargs!r}) raised {exc!r}")
    for api in BACKENDS:
        probe(new_side(api, cfg))


ENV_TEXT = st.one_of(
    st.sampled_from(["", " ", "nan", "inf", "-inf", "1e400", "-0", "3", "2.9", "maker_both"]),
    pick(["\ud800", BIG, "0x10", "1_000", "true", "off", "\x00", "MAKER_BOTH "]),
    st.text(max_size=12),
)
ENV_KEYS = st.one_of(
    st.sampled_from(
        [
            "EXEC_STYLE",
            "MAKER_ENTRY_TTL_S",
            "MAKER_EXIT_TTL_S",
            "MAKER_ENTRY_MISS",
            "MAKER_ENTRY_RETRIES",
            "MAKER_RETRY_EXHAUST",
            "MAKER_OFFSET_TICKS",
            "MAKER_MAX_SPREAD_BPS",
            "POST_ONLY",
            "TICK_SIZE_BTCUSDT",
            "TICK_SIZE_",
            "TICK_SIZE_\ud800",
            "TICK_SIZE_ß",
        ]
    ),
    st.text(max_size=8).map(lambda s: f"TICK_SIZE_{s}"),
)


@FUZZ
@given(
    env=st.dictionaries(ENV_KEYS, ENV_TEXT, max_size=6),
    prefix=st.sampled_from(["DOLPHIN_PINK_", "", "X_", "\ud800"]),
)
def test_from_env_never_raises_on_any_text_environment(env: dict[str, str], prefix: str) -> None:
    environ = {prefix + k: v for k, v in env.items()}
    try:
        cfg = ExecConfig.from_env(environ, prefix=prefix)
    except BaseException as exc:
        pytest.fail(f"from_env({environ!r}) raised {exc!r}")
    assert isinstance(cfg, ExecConfig)
    for api in BACKENDS:
        probe(new_side(api, cfg))


@FUZZ
@given(
    config=st.one_of(st.none(), CONFIGS, HOSTILES),
    logger=st.one_of(st.sampled_from([MISSING, "ok", "failing"]), HOSTILES),
    clock=st.one_of(st.sampled_from([MISSING, "ok"]), HOSTILES),
)
def test_constructor_rejects_bad_arguments_by_name(config: Any, logger: Any, clock: Any) -> None:
    kwargs: dict[str, Any] = {}
    if logger is not MISSING:
        kwargs["logger"] = {"ok": Logger(), "failing": Logger(True)}.get(token(logger), logger)
    if clock is not MISSING:
        kwargs["clock"] = Clock() if token(clock) == "ok" else clock
    seen = []
    for api in BACKENDS:
        try:
            router = api.ExecutionRouter(config, **kwargs)
        except (TypeError, ValueError) as exc:
            message, kind = str(exc), type(exc).__name__
            assert any(n in message for n in ("config", "logger", "clock")), message
            seen.append(kind)
            continue
        except BaseException as exc:
            pytest.fail(f"{api.__name__}.ExecutionRouter raised {exc!r}")
        side = Side(api, router, Clock(), Logger())
        seen.append(probe(side))
    assert all(s == seen[0] for s in seen), seen


@needs_native
@FUZZ
@given(
    key=st.one_of(st.sampled_from(COUNTER_KEYS), HOSTILES),
    value=st.one_of(st.integers(-(2**63), 2**63 - 1), HOSTILES),
)
def test_native_counters_reject_bad_items(key: Any, value: Any) -> None:
    assert native is not None
    router = native.ExecutionRouter(ExecConfig(style="maker_both"))
    try:
        router.counters[key] = value
    except (TypeError, KeyError, ValueError):
        pass
    except BaseException as exc:
        pytest.fail(f"counters[{key!r}] = {value!r} raised {exc!r}")
    try:
        hash(key)
    except Exception:
        return  # not a mapping key at all
    try:
        router.counters = {key: value}
    except (TypeError, KeyError, ValueError):
        pass
    except BaseException as exc:
        pytest.fail(f"counters = {{{key!r}: {value!r}}} raised {exc!r}")
    router.counters = dict.fromkeys(COUNTER_KEYS, 0)
    probe(Side(native, router, Clock(), Logger()))


# ── a one-bad-argument sweep, in a subprocess: a segfault fails one test ─────


def sweep_ops() -> Iterator[Op]:
    """Every method with valid arguments, and with each argument replaced in turn."""
    valid: dict[str, dict[str, Any]] = {
        "tick_size": {"asset": "BTCUSDT"},
        "maker_price": {"asset": "BTCUSDT", "order_side": "SELL", "reference_price": 100.0},
        "order_side": {"action": "EXIT", "position_side": "LONG"},
        "plan_entry": {
            "trade_id": "t1",
            "asset": "BTCUSDT",
            "position_side": "LONG",
            "reference_price": 100.0,
            "spread_bps": 1.0,
        },
        "plan_exit": {
            "trade_id": "t1",
            "asset": "BTCUSDT",
            "position_side": "LONG",
            "reference_price": 100.0,
            "reason": "TAKE_PROFIT",
            "spread_bps": 1.0,
        },
        "register_working": {
            "trade_id": "t1",
            "asset": "BTCUSDT",
            "position_side": "LONG",
            "plan": ("plan", 0),
            "base_trade_id": "b",
            "retry_n": 1,
        },
        "working": {"trade_id": "t1"},
        "note_fill": {"trade_id": "t1"},
        "note_cancel": {"trade_id": "t1"},
        "clear_working": {"trade_id": "t1"},
        "expired": {"now": 2000.0},
        "entry_miss_action": {"wo": ("wo", 0)},
        "retry_plan": {"wo": ("wo", 0), "reference_price": 100.0},
        "market_fallback_plan": {"wo": ("wo", 0)},
        "register_hook": {"stage": "pre_plan", "fn": "record"},
        "set_config": {"value": ExecConfig(style="maker_both")},
        "set_logger": {"value": "ok"},
        "set_clock": {"value": "ok"},
        "clock_value": {"value": 1000.0},
    }
    for method, args in valid.items():
        yield Op(method, tuple(args.items()))
        for name in args:
            for bad in HOSTILE:
                yield Op(method, tuple((k, bad if k == name else v) for k, v in args.items()))
    if HAS_STATE:
        yield Op("export_state")
        for path in STATE_PATH_LIST:
            for bad in [DELETE, *HOSTILE]:
                yield Op("from_state", (("path", path), ("value", bad)))
        for fn in ["record", "raise", None, *HOSTILE]:
            yield Op("observe", (("fn", fn),))
    for fields, maker in ((PLAN_FIELDS, "make_plan"), (WO_FIELDS, "make_wo")):
        for name in fields:
            for bad in HOSTILE:
                yield Op(
                    maker, (("kwargs", {name: bad} if maker == "make_plan" else _wo(name, bad)),)
                )


def _wo(name: str, bad: Any) -> dict[str, Any]:
    fields = {
        "trade_id": "t9",
        "asset": "BTCUSDT",
        "side": "LONG",
        "action": "ENTER",
        "submitted_at": 0.0,
        "deadline": 8.0,
        "retries_left": 1,
        "base_trade_id": "t9",
    }
    if name != "plan":
        fields[name] = bad
    return fields


def sweep() -> int:
    """Run every sweep op on fresh routers (with one quote working); returns the count."""
    config = ExecConfig(style="maker_both", entry_miss="retry")
    count = 0
    failures: list[str] = []
    for o in sweep_ops():
        setup = Op(
            "register_working",
            (
                ("trade_id", 1),
                ("asset", "BTCUSDT"),
                ("position_side", "LONG"),
                ("plan", ("plan", 0)),
            ),
        )
        try:
            run_sequence(config, [(setup, None), (o, None)])
        except AssertionError as exc:
            failures.append(str(exc).splitlines()[0])
        count += 1
    if failures:
        raise AssertionError(
            "\n".join([f"{len(failures)} of {count} sweep calls failed:", *failures])
        )
    return count


def test_one_bad_argument_sweep_in_a_subprocess() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tests.differential.test_fuzz", "--sweep"],
        cwd=Path(__file__).parents[2],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, f"rc={proc.returncode}\n{proc.stdout[-2000:]}{proc.stderr[-4000:]}"
    assert proc.stdout.startswith("sweep ok"), proc.stdout


# ── regressions: gaps the fuzz found, each a minimal reproducer ─────────────


@pytest.mark.parametrize("api", BACKENDS, ids=lambda a: a.__name__.rsplit(".", 1)[-1])
@pytest.mark.parametrize("method", ["working", "note_fill", "note_cancel", "clear_working"])
def test_registry_lookup_with_a_raising_eq_names_trade_id(api: ModuleType, method: str) -> None:
    router = api.ExecutionRouter(ExecConfig(style="maker_both"), clock=lambda: 1.0)
    plan = api.ExecutionPlan(**VALID_PLAN)
    router.register_working(trade_id=1, asset="BTCUSDT", position_side="LONG", plan=plan)
    with pytest.raises((TypeError, ValueError), match="trade_id"):
        getattr(router, method)(BadEq())  # hash(BadEq()) == hash(1): the dict calls __eq__


@pytest.mark.parametrize(("name", "value"), [("logger", None), ("logger", 5), ("clock", 5)])
def test_pure_router_checks_logger_and_clock_assignment(name: str, value: Any) -> None:
    router = reference.ExecutionRouter()
    with pytest.raises(TypeError, match=name):  # as native does, and as the constructor does
        setattr(router, name, value)


@pytest.mark.parametrize("api", BACKENDS, ids=lambda a: a.__name__.rsplit(".", 1)[-1])
def test_clock_reading_out_of_float_range_names_the_clock(api: ModuleType) -> None:
    router = api.ExecutionRouter(clock=lambda: 10**400)
    with pytest.raises((TypeError, ValueError), match="clock"):
        router.expired()


def test_exec_config_tick_override_out_of_range_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="tick_overrides"):
        ExecConfig(tick_overrides={"BTCUSDT": 10**400})


@pytest.mark.parametrize(
    ("environ", "prefix"),
    [(5, "P_"), ({1: "x"}, "P_"), ({"P_EXEC_STYLE": BadStr()}, "P_"), ({}, None)],
    ids=["int-environ", "int-key", "unprintable-value", "none-prefix"],
)
def test_from_env_rejects_non_text_input_by_name(environ: Any, prefix: Any) -> None:
    with pytest.raises((TypeError, ValueError), match=r"environ|prefix"):
        ExecConfig.from_env(environ, prefix=prefix)


@needs_native
def test_native_counter_out_of_range_is_a_value_error() -> None:
    assert native is not None
    router = native.ExecutionRouter()
    with pytest.raises((TypeError, ValueError), match="counter"):
        router.counters["plans_entry"] = 10**400


@needs_native
def test_native_counters_saturate_instead_of_wrapping() -> None:
    """Native counters are 64-bit and stop at 2**63 - 1 (documented); pure ints count on."""
    assert native is not None
    side = new_side(native, ExecConfig())
    side.router.counters["plans_entry"] = 2**63 - 2
    for _ in range(3):
        side.router.plan_entry(
            trade_id="t", asset="BTCUSDT", position_side="LONG", reference_price=1.5
        )
    assert side.router.counters["plans_entry"] == 2**63 - 1


class EvilStr(str):
    """A str subclass whose ``==`` and ``hash`` raise: native reads the str value,
    pure calls the dunders."""

    def __eq__(self, other: object) -> bool:
        raise HostileError("__eq__")

    def __hash__(self) -> int:
        raise HostileError("__hash__")

    __ne__ = __eq__  # type: ignore[assignment]


def _evil_calls(api: ModuleType) -> list[Callable[[], Any]]:
    router = api.ExecutionRouter(ExecConfig(style="maker_both"), clock=lambda: 1.0)
    evil_plan = api.ExecutionPlan(**{**VALID_PLAN, "action": EvilStr("ENTER")})
    wo = api.WorkingOrder(**{**_wo("plan", None), "plan": evil_plan, "action": EvilStr("ENTER")})
    return [
        lambda: router.register_hook(EvilStr("pre_plan"), print) and None,
        lambda: router.market_fallback_plan(wo)[0],
        lambda: api.ExecutionPlan(order_type=EvilStr("LIMIT")).sane(),
        lambda: (
            router.register_working(
                trade_id=1, asset="X", position_side="LONG", plan=evil_plan
            ).retries_left
        ),
    ]


@needs_native
@pytest.mark.parametrize("i", range(4), ids=["register_hook", "fallback", "sane", "register"])
@pytest.mark.xfail(
    strict=True, reason="documented: native reads a str subclass's value, pure calls its __eq__"
)
def test_str_subclass_with_raising_eq_gives_the_same_outcome(i: int) -> None:
    outcomes = []
    for api in BACKENDS:
        try:
            outcomes.append(("ok", norm(_evil_calls(api)[i]())))
        except Exception as exc:
            outcomes.append(("raised", type(exc).__name__))
    assert outcomes[0] == outcomes[1], outcomes


def _restore(api: ModuleType, path: tuple[Any, ...], value: Any) -> Any:
    router = api.ExecutionRouter(ExecConfig(style="maker_both"), clock=lambda: 1.0)
    router.register_working(
        trade_id="t1", asset="BTCUSDT", position_side="LONG", plan=api.ExecutionPlan(**VALID_PLAN)
    )
    state = mutate(router.export_state(), path, value)
    return api.ExecutionRouter.from_state(state, clock=lambda: 1.0)


STATE_GAPS = {
    "counters-not-a-mapping": (("counters",), None),
    "counter-out-of-range": (("counters", "plans_entry"), 2**63),
    "format-raising-eq": (("format",), BadEq()),
    "deadline-out-of-range": (("working", 0, "deadline"), 10**400),
}


@pytest.mark.skipif(not HAS_STATE, reason="no state export in this build")
@pytest.mark.parametrize("api", BACKENDS, ids=lambda a: a.__name__.rsplit(".", 1)[-1])
@pytest.mark.parametrize("gap", list(STATE_GAPS))
def test_from_state_rejects_a_malformed_state_with_state_error(api: ModuleType, gap: str) -> None:
    path, value = STATE_GAPS[gap]
    with pytest.raises(ValueError, match="state"):
        _restore(api, path, value)


@pytest.mark.skipif(not HAS_STATE, reason="no state export in this build")
@pytest.mark.parametrize(
    ("name", "value"),
    [("action", None), ("retries_left", "1"), ("retries_left", 2**63), ("deadline", 1j)],
)
def test_pure_from_state_checks_restored_order_fields(name: str, value: Any) -> None:
    with pytest.raises(ValueError, match="state"):
        _restore(reference, ("working", 0, name), value)


if __name__ == "__main__" and sys.argv[1:] == ["--sweep"]:
    print(f"sweep ok: {sweep()} calls on {len(BACKENDS)} backends")
