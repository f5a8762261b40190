"""Pure-Python reference implementation of the exec_router API.

This module is the package's executable specification: it is written for
clarity, it is the oracle the native backend is tested against, and it is the
baseline the benchmarks measure. ``EXEC_ROUTER_PURE=1`` makes
``import exec_router`` use it instead of the Rust core.

It keeps the legacy router's answers, plus the deliberate improvements the
docs/legacy-differences.md lists.
"""

from __future__ import annotations

import contextlib
import functools
import math
import threading
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

from . import journal_format as _jf
from . import state as _state
from .config import ExecConfig
from .constants import (
    COUNTER_KEYS,
    DEFAULT_TICKS,
    FALLBACK_TICK_FRACTION,
    HOOK_STAGES,
    LOGGER,
    MAKER_EXIT_REASONS,
    MAX_DEPTH,
    MissAction,
)

Hook = Callable[[Any, dict[str, Any]], Any]
Observer = Callable[[str, Any, "WorkingOrder"], object]

__all__ = ["ExecutionPlan", "ExecutionRouter", "WorkingOrder"]


# ── nesting depth ────────────────────────────────────────────────────────────

_P = ParamSpec("_P")
_R = TypeVar("_R")
_NESTING = threading.local()


def _depth() -> int:
    return getattr(_NESTING, "depth", 0)


def _bounded(
    method: Callable[Concatenate[ExecutionRouter, _P], _R],
) -> Callable[Concatenate[ExecutionRouter, _P], _R]:
    """Count the call in this thread's nesting depth; past ``MAX_DEPTH`` raise
    ``RecursionError``."""
    name = method.__name__

    @functools.wraps(method)
    def bounded(self: ExecutionRouter, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        depth = _depth()
        if depth >= MAX_DEPTH:
            raise RecursionError(f"{name}() nested deeper than {MAX_DEPTH} router calls")
        _NESTING.depth = depth + 1
        try:
            return method(self, *args, **kwargs)
        finally:
            _NESTING.depth = depth

    return bounded


def _bounded_function(fn: Callable[[], None]) -> Callable[[], None]:
    """``_bounded`` for the callable ``register_hook`` returns."""

    def unregister() -> None:
        depth = _depth()
        if depth >= MAX_DEPTH:
            raise RecursionError(f"unregister() nested deeper than {MAX_DEPTH} router calls")
        _NESTING.depth = depth + 1
        try:
            fn()
        finally:
            _NESTING.depth = depth

    return unregister


def _bounded_plan(
    action: str,
) -> Callable[
    [Callable[Concatenate[ExecutionRouter, _P], ExecutionPlan]],
    Callable[Concatenate[ExecutionRouter, _P], ExecutionPlan],
]:
    """As ``_bounded``, but past ``MAX_DEPTH`` a planning call returns MARKET."""

    def wrap(
        method: Callable[Concatenate[ExecutionRouter, _P], ExecutionPlan],
    ) -> Callable[Concatenate[ExecutionRouter, _P], ExecutionPlan]:
        name = method.__name__

        @functools.wraps(method)
        def bounded(self: ExecutionRouter, /, *args: _P.args, **kwargs: _P.kwargs) -> ExecutionPlan:
            depth = _depth()
            _NESTING.depth = depth + 1
            try:
                if depth >= MAX_DEPTH:
                    return self._too_deep(name, action, log=depth == MAX_DEPTH)
                return method(self, *args, **kwargs)
            finally:
                _NESTING.depth = depth

        return bounded

    return wrap


# ── argument checks ──────────────────────────────────────────────────────────


class _Invalid(Exception):
    """An argument the router cannot use. Planning turns it into a MARKET
    plan; every other method turns it into a TypeError/ValueError."""

    def __init__(self, name: str, value: object, cause: BaseException | None = None) -> None:
        super().__init__(name)
        self.name = name
        self.value = value
        self.cause = cause

    def error(self, method: str) -> Exception:
        kind = ValueError if isinstance(self.cause, (ValueError, ArithmeticError)) else TypeError
        return kind(f"{method}() got an invalid {self.name}: {type(self.value).__name__}")


def _is_positive(value: Any, name: str) -> bool:
    """``value > 0.0``, as the legacy router tests a reference price."""
    try:
        return bool(value > 0.0)
    except MemoryError:
        raise
    except Exception as exc:
        raise _Invalid(name, value, exc) from None


def _to_float(value: Any, name: str) -> float:
    """``float(value)``: numbers and numeric strings, as legacy."""
    try:
        return float(value)
    except MemoryError:
        raise
    except Exception as exc:
        raise _Invalid(name, value, exc) from None


def _upper(value: Any, name: str) -> str:
    """``str(value).upper()``."""
    try:
        return str(value).upper()
    except MemoryError:
        raise
    except Exception as exc:
        raise _Invalid(name, value, exc) from None


def _or_empty(value: Any, name: str) -> Any:
    """``value or ""``."""
    try:
        return value or ""
    except MemoryError:
        raise
    except Exception as exc:
        raise _Invalid(name, value, exc) from None


def _text(value: Any, name: str) -> str:
    """``f"{value}"``."""
    try:
        return format(value)
    except MemoryError:
        raise
    except Exception as exc:
        raise _Invalid(name, value, exc) from None


def _label(value: Any) -> str:
    """``f"{value}"`` for a value that is already in the registry."""
    try:
        return format(value)
    except Exception:
        return f"<{type(value).__name__}>"


def _hashable(value: Any, name: str) -> Hashable:
    try:
        hash(value)
    except MemoryError:
        raise
    except Exception as exc:
        raise _Invalid(name, value, exc) from None
    return value  # type: ignore[no-any-return]


def _lookup(working: dict[Any, Any], trade_id: Any) -> Any:
    """``working.get(trade_id)``; an id that cannot be hashed or compared is invalid."""
    try:
        return working.get(trade_id)
    except MemoryError:
        raise
    except Exception as exc:
        raise _Invalid("trade_id", trade_id, exc) from None


def _real(value: Any, name: str, method: str) -> float:
    """A finite real number (int or float) as a float; anything else is a
    TypeError (not a number) or a ValueError (not finite)."""
    if isinstance(value, (int, float)):
        try:
            value = float(value)
        except OverflowError:
            raise ValueError(f"{method}() got an invalid {name}: int out of range") from None
        if not math.isfinite(value):
            raise ValueError(f"{method}() got an invalid {name}: {value} is not finite")
        return value  # type: ignore[no-any-return]
    raise TypeError(f"{method}() got an invalid {name}: {type(value).__name__}")


def _check_type(owner: str, name: str, value: Any, kind: type | tuple[type, ...]) -> None:
    if not isinstance(value, kind):
        raise TypeError(f"{owner}.{name} must be {_kind_name(kind)}, got {type(value).__name__}")


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def _number_field(owner: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{owner}.{name} must be a number, got {type(value).__name__}")
    try:
        return float(value)
    except OverflowError:
        raise ValueError(f"{owner}.{name} is out of range for a float") from None


def _int_field(owner: str, name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{owner}.{name} must be an int, got {type(value).__name__}")
    if not -(2**63) <= value < 2**63:
        raise ValueError(f"{owner}.{name} must fit in 64 bits")


# ── value types ──────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class ExecutionPlan:
    """How one intent reaches the venue. Field types are checked on
    construction; ints are accepted for the float fields."""

    order_type: str = "MARKET"
    limit_price: float = 0.0
    post_only: bool = False
    ttl_s: float = 0.0
    is_maker: bool = False
    action: str = "ENTER"
    reason: str = "taker_default"
    suppress: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (  # the common case, cheaply: every field already has its exact type
            type(self.order_type) is str
            and type(self.limit_price) is float
            and type(self.post_only) is bool
            and type(self.ttl_s) is float
            and type(self.is_maker) is bool
            and type(self.action) is str
            and type(self.reason) is str
            and type(self.suppress) is bool
            and type(self.metadata) is dict
        ):
            return
        # Checked in field order, so the first bad field is the one named.
        owner = "ExecutionPlan"
        _check_type(owner, "order_type", self.order_type, str)
        limit_price = _number_field(owner, "limit_price", self.limit_price)
        _check_type(owner, "post_only", self.post_only, bool)
        ttl_s = _number_field(owner, "ttl_s", self.ttl_s)
        _check_type(owner, "is_maker", self.is_maker, bool)
        _check_type(owner, "action", self.action, str)
        _check_type(owner, "reason", self.reason, str)
        _check_type(owner, "suppress", self.suppress, bool)
        _check_type(owner, "metadata", self.metadata, dict)
        object.__setattr__(self, "limit_price", limit_price)
        object.__setattr__(self, "ttl_s", ttl_s)

    def sane(self) -> bool:
        """A plan the venue can take: MARKET, or LIMIT at a positive price."""
        if self.order_type == "LIMIT":
            return self.limit_price > 0.0
        return self.order_type == "MARKET"


@dataclass
class WorkingOrder:
    """A maker quote resting on the venue, awaiting a fill or its deadline.

    The runtime may assign fields (for example extend ``deadline``); the
    router reads the current values.
    """

    trade_id: Any
    asset: Any
    side: str
    action: str
    plan: ExecutionPlan
    submitted_at: float
    deadline: float
    retries_left: int
    base_trade_id: Any
    retry_n: int = 0

    def __post_init__(self) -> None:
        # Checked in field order, so the first bad field is the one named.
        owner = "WorkingOrder"
        _check_type(owner, "side", self.side, str)
        _check_type(owner, "action", self.action, str)
        _check_type(owner, "plan", self.plan, ExecutionPlan)
        self.submitted_at = _number_field(owner, "submitted_at", self.submitted_at)
        self.deadline = _deadline(self.deadline)
        _int_field(owner, "retries_left", self.retries_left)
        _int_field(owner, "retry_n", self.retry_n)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "deadline" and "deadline" in self.__dict__:
            value = _deadline(value)  # __post_init__ checks the first one, in field order
        object.__setattr__(self, name, value)


def _deadline(value: Any) -> float:
    """A deadline is a finite number: a NaN or infinite one would never expire."""
    deadline = _number_field("WorkingOrder", "deadline", value)
    if not math.isfinite(deadline):
        raise ValueError(f"WorkingOrder.deadline must be finite, got {deadline}")
    return deadline


# ── the router ───────────────────────────────────────────────────────────────


class ExecutionRouter:
    """Pure-policy execution router with a working-order registry.

    The runtime asks ``plan_entry``/``plan_exit`` before each submission,
    registers maker quotes with ``register_working``, polls ``expired`` from
    its TTL loop, and reports outcomes with ``note_fill``/``note_cancel``.
    The router does no I/O.
    """

    def __init__(
        self,
        config: ExecConfig | None = None,
        *,
        logger: Any = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        logger = LOGGER if logger is None else logger
        clock = time.monotonic if clock is None else clock
        self._journal: _jf.Writer | None = None
        self.logger = logger
        self.clock = clock
        self.config = ExecConfig() if config is None else config
        self.counters: dict[str, int] = dict.fromkeys(COUNTER_KEYS, 0)
        self._working: dict[Any, WorkingOrder] = {}
        # Replaced whole, never mutated: a dispatch iterates a stable tuple.
        self._hooks: dict[str, tuple[Hook, ...]] = dict.fromkeys(HOOK_STAGES, ())
        self._observer: Observer | None = None
        # Held only around counter increments and hook-table swaps: never across user code.
        self._lock = threading.Lock()

    def _counters_copy(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counters)

    def _first_entry(self) -> WorkingOrder | None:
        """The first-registered working entry: a scan that stops at the first one, looked
        at again if another thread changed the registry meanwhile."""
        while True:
            try:
                return next((wo for wo in self._working.values() if wo.action == "ENTER"), None)
            except RuntimeError:  # dictionary changed size during iteration
                continue

    def _count(self, key: str) -> None:
        with self._lock:
            self.counters[key] += 1

    @property
    def config(self) -> ExecConfig:
        return self._config

    @config.setter
    @_bounded
    def config(self, config: ExecConfig) -> None:
        if not isinstance(config, ExecConfig):
            raise TypeError(f"ExecutionRouter got an invalid config: {type(config).__name__}")
        jr = self._journal
        if jr is not None:  # a CONFIG record, ahead of the change
            with jr.lock:
                self._journaled_config(jr, config)
        self._config = config

        ticks = {**DEFAULT_TICKS, **config.tick_overrides}
        self._ticks = {sym: float(tick) for sym, tick in ticks.items()}

    @property
    def logger(self) -> Any:
        return self._logger

    @logger.setter
    @_bounded
    def logger(self, logger: Any) -> None:
        if not callable(getattr(logger, "warning", None)):
            raise TypeError("ExecutionRouter() got an invalid logger: it has no warning() method")
        self._logger = logger

    @property
    def clock(self) -> Callable[[], float]:
        return self._clock

    @clock.setter
    def clock(self, clock: Callable[[], float]) -> None:
        if not callable(clock):
            raise TypeError(f"ExecutionRouter() got an invalid clock: {type(clock).__name__}")
        self._clock = clock

    # ── hooks ────────────────────────────────────────────────────────────────

    @_bounded
    def register_hook(self, stage: str, fn: Hook) -> Callable[[], None]:
        """Register ``fn`` at ``stage``; returns a callable that unregisters it."""
        if not (isinstance(stage, str) and stage in self._hooks):
            raise ValueError(f"unknown hook stage {_safe_repr(stage)}; valid: {HOOK_STAGES}")
        if not callable(fn):
            raise TypeError(f"register_hook() got an invalid fn: {type(fn).__name__}")
        with self._lock:
            self._hooks[stage] = (*self._hooks[stage], fn)

        def unregister() -> None:
            self._unregister(stage, fn)

        return _bounded_function(unregister)

    def _unregister(self, stage: str, fn: Hook) -> None:
        """Remove the first hook equal to ``fn`` (compared outside the lock)."""
        found: Hook | None = None
        with contextlib.suppress(ValueError):  # as list.remove: a ValueError ends the search
            found = next((h for h in self._hooks[stage] if h is fn or h == fn), None)
        if found is None:
            return
        with self._lock:
            hooks = self._hooks[stage]
            at = next((i for i, h in enumerate(hooks) if h is found), None)
            if at is not None:
                self._hooks[stage] = hooks[:at] + hooks[at + 1 :]

    def _run_hooks(self, stage: str, payload: Any, ctx: dict[str, Any]) -> Any:
        """Call each hook of ``stage`` with its own copy of ``ctx``.

        A ``pre_submit`` hook may return a sane ``ExecutionPlan`` to replace
        the plan. An ``Exception`` in a hook is counted and logged; a
        ``BaseException`` propagates.
        """
        out = payload
        for fn in self._hooks[stage]:
            try:
                ret = fn(out, dict(ctx))
                if stage == "pre_submit" and isinstance(ret, ExecutionPlan):
                    if ret.sane():
                        out = ret
                    else:
                        self._warn("exec_router: hook %r returned insane plan — ignored", fn)
            except Exception as exc:
                self._count("hook_errors")
                self._warn("exec_router: hook %r failed at %s: %s", fn, stage, exc)
        return out

    def _pre_submit(self, plan: ExecutionPlan, ctx: dict[str, Any]) -> ExecutionPlan:
        return cast(ExecutionPlan, self._run_hooks("pre_submit", plan, ctx))

    def _warn(self, msg: str, *args: Any) -> None:
        # A broken logger must not break the trading path.
        with contextlib.suppress(Exception):
            self.logger.warning(msg, *args)

    # ── pricing ──────────────────────────────────────────────────────────────

    @_bounded
    def tick_size(self, asset: Any) -> float:
        try:
            return self._tick_size(asset)
        except _Invalid as bad:
            raise bad.error("tick_size") from bad.cause

    def _tick_size(self, asset: Any) -> float:
        return self._ticks.get(_upper(_or_empty(asset, "asset"), "asset"), 0.0)

    @_bounded
    def maker_price(self, *, asset: Any, order_side: Any, reference_price: Any) -> float:
        """Post-only quote price on our side of the touch: SELL rests at or
        above the reference, BUY at or below. 0.0 when no quote is possible."""
        try:
            return self._maker_price(asset, order_side, reference_price)
        except _Invalid as bad:
            raise bad.error("maker_price") from bad.cause

    def _maker_price(self, asset: Any, order_side: Any, reference_price: Any) -> float:
        ref = _to_float(reference_price, "reference_price")
        if not (ref > 0.0) or ref == math.inf:
            return 0.0
        tick = self._tick_size(asset)
        if tick <= 0.0:
            tick = ref * FALLBACK_TICK_FRACTION
        offset = float(self.config.offset_ticks) * tick
        if _upper(order_side, "order_side") == "SELL":
            price = ref + offset
        else:
            price = max(tick, ref - offset)
        return price if math.isfinite(price) else 0.0

    @staticmethod
    def order_side(action: Any, position_side: Any) -> str:
        """Map (action, position side) to the order side."""
        depth = _depth()
        if depth >= MAX_DEPTH:
            raise RecursionError(f"order_side() nested deeper than {MAX_DEPTH} router calls")
        _NESTING.depth = depth + 1
        try:
            return _order_side(action, position_side)
        except _Invalid as bad:
            raise bad.error("order_side") from bad.cause
        finally:
            _NESTING.depth = depth

    # ── planning ─────────────────────────────────────────────────────────────

    def _spread_allows_maker(self, spread_bps: Any) -> bool:
        if spread_bps is None:
            return True  # no book data: quote anyway, post-only caps the risk
        return _to_float(spread_bps, "spread_bps") <= self.config.max_spread_bps

    def _invalid_plan(
        self, method: str, action: str, bad: _Invalid, metadata: dict[str, Any] | None = None
    ) -> ExecutionPlan:
        self._count("taker_entries" if action == "ENTER" else "taker_exits")
        self._warn(
            "exec_router: %s got an invalid %s (%s) — falling back to MARKET",
            method,
            bad.name,
            type(bad.value).__name__,
        )
        return ExecutionPlan(
            action=action, reason=f"invalid_input:{bad.name}", metadata=metadata or {}
        )

    def _too_deep(self, method: str, action: str, *, log: bool) -> ExecutionPlan:
        """The MARKET answer of a planning call nested past ``MAX_DEPTH``."""
        self._count("plans_entry" if action == "ENTER" else "plans_exit")
        self._count("taker_entries" if action == "ENTER" else "taker_exits")
        if log:  # only the first refused level logs: a logger that plans again stops here
            self._warn(
                "exec_router: %s nested deeper than %d router calls — falling back to MARKET",
                method,
                MAX_DEPTH,
            )
        return ExecutionPlan(action=action, reason="invalid_input:depth")

    @_bounded_plan("ENTER")
    def plan_entry(
        self,
        *,
        trade_id: Any,
        asset: Any,
        position_side: Any,
        reference_price: Any,
        spread_bps: Any = None,
    ) -> ExecutionPlan:
        """Plan an ENTER. Never raises on a bad value: falls back to MARKET."""
        self._count("plans_entry")
        ctx = {
            "trade_id": trade_id,
            "asset": asset,
            "side": position_side,
            "reference_price": reference_price,
            "spread_bps": spread_bps,
            "action": "ENTER",
        }
        self._run_hooks("pre_plan", None, ctx)
        # Double-entry guard: a working entry means the slot is spoken for.
        blocker = self._first_entry()
        if blocker is not None:
            self._count("suppressed_dup_enter")
            return ExecutionPlan(
                action="ENTER",
                suppress=True,
                reason=f"working_entry_exists:{_label(blocker.trade_id)}",
            )
        try:
            plan = self._entry_plan(asset, position_side, reference_price, spread_bps)
        except _Invalid as bad:
            return self._invalid_plan("plan_entry", "ENTER", bad)
        plan = self._pre_submit(plan, ctx)
        if plan.is_maker:
            self._count("maker_entries")
        elif not plan.suppress:
            self._count("taker_entries")
        return plan

    def _entry_plan(
        self, asset: Any, position_side: Any, reference_price: Any, spread_bps: Any
    ) -> ExecutionPlan:
        cfg = self.config
        taker = ExecutionPlan(action="ENTER", reason="taker_default")
        if not (cfg.maker_entry and _is_positive(reference_price, "reference_price")):
            return taker
        if not self._spread_allows_maker(spread_bps):
            self._count("spread_gate_taker")
            return ExecutionPlan(
                action="ENTER", reason=f"spread_gate:{_text(spread_bps, 'spread_bps')}bps"
            )
        side = _order_side("ENTER", position_side)
        price = self._maker_price(asset, side, reference_price)
        if not price > 0.0:
            return taker
        return ExecutionPlan(
            order_type="LIMIT",
            limit_price=price,
            post_only=cfg.post_only,
            ttl_s=cfg.entry_ttl_s,
            is_maker=True,
            action="ENTER",
            reason="maker_entry",
        )

    @_bounded_plan("EXIT")
    def plan_exit(
        self,
        *,
        trade_id: Any,
        asset: Any,
        position_side: Any,
        reference_price: Any,
        reason: Any,
        spread_bps: Any = None,
    ) -> ExecutionPlan:
        """Plan an EXIT. Exits are never skipped: everything that is not a
        maker quote degrades to MARKET, except when a maker exit for the same
        trade is already resting and the new reason is not urgent."""
        self._count("plans_exit")
        try:
            urgent = _upper(_or_empty(reason, "reason"), "reason") not in MAKER_EXIT_REASONS
        except _Invalid as bad:
            return self._invalid_plan("plan_exit", "EXIT", bad)
        ctx = {
            "trade_id": trade_id,
            "asset": asset,
            "side": position_side,
            "reference_price": reference_price,
            "spread_bps": spread_bps,
            "action": "EXIT",
            "reason": reason,
            "urgent": urgent,
        }
        self._run_hooks("pre_plan", None, ctx)
        try:
            wo = _lookup(self._working, trade_id)
        except _Invalid as bad:
            return self._invalid_plan("plan_exit", "EXIT", bad)
        if wo is not None and wo.action == "EXIT":
            if not urgent:
                # The resting quote is the exit in flight.
                self._count("suppressed_dup_exit")
                return ExecutionPlan(action="EXIT", suppress=True, reason="working_exit_exists")
            # Urgent: the runtime cancels the resting quote, then sends this.
            self._count("exit_escalations")
            try:
                label = _text(reason, "reason")
            except _Invalid as bad:
                return self._invalid_plan("plan_exit", "EXIT", bad, {"preempt_working": True})
            preempt = {"preempt_working": True}
            plan = ExecutionPlan(action="EXIT", reason=f"escalate:{label}", metadata=preempt)
            plan = self._pre_submit(plan, ctx)
            if plan.suppress:
                plan = ExecutionPlan(
                    action="EXIT",
                    reason="hook_suppress_overridden_market",
                    metadata={"preempt_working": True},
                )
            return plan
        try:
            plan = self._exit_plan(
                asset, position_side, reference_price, spread_bps, reason, urgent
            )
        except _Invalid as bad:
            return self._invalid_plan("plan_exit", "EXIT", bad)
        plan = self._pre_submit(plan, ctx)
        if plan.suppress:
            # Only the duplicate guard may suppress an exit; a hook may not.
            plan = ExecutionPlan(action="EXIT", reason="hook_suppress_overridden_market")
        if not plan.sane():
            plan = ExecutionPlan(action="EXIT", reason="sanity_fallback_market")
        if plan.is_maker:
            self._count("maker_exits")
        elif not plan.suppress:
            self._count("taker_exits")
        return plan

    def _exit_plan(
        self,
        asset: Any,
        position_side: Any,
        reference_price: Any,
        spread_bps: Any,
        reason: Any,
        urgent: bool,
    ) -> ExecutionPlan:
        cfg = self.config
        taker = ExecutionPlan(action="EXIT", reason=f"taker_exit:{_text(reason, 'reason')}")
        if not (
            cfg.maker_exit
            and not urgent
            and _is_positive(reference_price, "reference_price")
            and self._spread_allows_maker(spread_bps)
        ):
            return taker
        side = _order_side("EXIT", position_side)
        price = self._maker_price(asset, side, reference_price)
        if not price > 0.0:
            return taker
        return ExecutionPlan(
            order_type="LIMIT",
            limit_price=price,
            post_only=cfg.post_only,
            ttl_s=cfg.exit_ttl_s,
            is_maker=True,
            action="EXIT",
            reason="maker_exit:TAKE_PROFIT",
        )

    # ── working-order registry ───────────────────────────────────────────────

    def _now(self, method: str) -> float:
        """A clock reading: a finite number, or a ValueError naming the clock."""
        try:
            reading = self.clock()
        except MemoryError:
            raise
        except Exception as exc:
            raise ValueError(
                f"{method}() got no time from the clock: it raised {type(exc).__name__}"
            ) from exc
        if type(reading) is float and reading - reading == 0.0:  # finite
            return reading
        if isinstance(reading, (int, float)):
            try:
                value = float(reading)
            except OverflowError:
                raise ValueError(
                    f"{method}() got an invalid clock reading: an int out of float range"
                ) from None
            if math.isfinite(value):
                return value
            raise ValueError(f"{method}() got an invalid clock reading: {value}")
        raise ValueError(
            f"{method}() got an invalid clock reading: {type(reading).__name__}, "
            "expected a finite number"
        )

    @_bounded
    def register_working(
        self,
        *,
        trade_id: Any,
        asset: Any,
        position_side: Any,
        plan: ExecutionPlan,
        base_trade_id: Any = None,
        retry_n: int | None = None,
    ) -> WorkingOrder:
        """Record a maker quote the runtime has submitted."""
        method = "register_working"
        try:
            _hashable(trade_id, "trade_id")
            side = _upper(position_side, "position_side")
            base = _or_empty(base_trade_id, "base_trade_id") or trade_id
        except _Invalid as bad:
            raise bad.error(method) from bad.cause
        if not isinstance(plan, ExecutionPlan):
            raise TypeError(f"{method}() got an invalid plan: {type(plan).__name__}")
        retry_n = 0 if retry_n is None else retry_n
        if isinstance(retry_n, bool) or not isinstance(retry_n, int):
            raise TypeError(f"{method}() got an invalid retry_n: {type(retry_n).__name__}")
        _int_field("WorkingOrder", "retry_n", retry_n)
        now = self._now(method)
        deadline = now + max(0.5, plan.ttl_s)
        if not math.isfinite(deadline):
            raise ValueError(
                f"{method}() got an invalid plan: ttl_s {plan.ttl_s} gives no deadline"
            )
        retries = self.config.entry_retries
        if retry_n > 0:
            retries_left = max(0, retries - retry_n)
        else:
            retries_left = retries if plan.action == "ENTER" else 0
        wo = WorkingOrder(
            trade_id=trade_id,
            asset=asset,
            side=side,
            action=plan.action,
            plan=plan,
            submitted_at=now,
            deadline=deadline,
            retries_left=retries_left,
            base_trade_id=base,
            retry_n=retry_n,
        )
        jr = self._journal
        if jr is not None:
            self._journaled_put(jr, trade_id, wo, now, method)
        else:
            try:
                self._working[trade_id] = wo
            except Exception as exc:
                raise _Invalid("trade_id", trade_id, exc).error(method) from exc
        self._notify("put", trade_id, wo)
        self._run_hooks("on_working", wo, {"trade_id": trade_id})
        return wo

    # ── the journal: a record ahead of each change, with no call between ────

    def _journaled_config(self, jr: _jf.Writer, config: ExecConfig) -> None:
        try:
            body = _jf.config_body(config)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"config(): {exc}") from None
        counts = _jf._counts(self)
        head, payload, start, stop, blank = jr.prepare(_jf.CONFIG, counts, body)
        mm, seq = jr.mm, jr.seq + 1
        assert mm is not None
        mm[start : start + 8] = head
        mm[start + 8 : stop] = payload
        try:
            jr.synced(start, stop)
        except BaseException:
            mm[start:stop] = blank
            raise
        self._config = config
        jr.config = body
        jr.end = stop
        jr.seq = seq
        jr.last = (seq, counts)
        jr.records += 1

    def _journaled_put(
        self, jr: _jf.Writer, trade_id: Any, wo: WorkingOrder, now: float, method: str
    ) -> None:
        with jr.lock:
            self._journaled_put_locked(jr, trade_id, wo, now, method)

    def _journaled_put_locked(
        self, jr: _jf.Writer, trade_id: Any, wo: WorkingOrder, now: float, method: str
    ) -> None:
        wall, boot = jr.times()
        try:
            _jf.pop_body(trade_id)  # a key the journal writes hashes without Python code
            body = _jf.order_body(wo, now, wall, boot)
            old = jr.bodies.get(trade_id)
        except (TypeError, ValueError) as exc:
            if "journal" not in str(exc):
                raise _Invalid("trade_id", trade_id, exc).error(method) from exc
            raise type(exc)(f"{method}(): {exc}") from None
        counts = _jf._counts(self)
        head, payload, start, stop, blank = jr.prepare(_jf.PUT, counts, body)
        change = _jf.frame_len(len(body)) - (0 if old is None else _jf.frame_len(len(old)))
        working, bodies, mm, seq = self._working, jr.bodies, jr.mm, jr.seq + 1
        assert mm is not None
        # From here to the end of the block nothing is called: no signal
        # handler or thread switch comes between the record and the change.
        mm[start : start + 8] = head
        mm[start + 8 : stop] = payload
        try:
            jr.synced(start, stop)
            working[trade_id] = wo
        except BaseException as exc:
            mm[start:stop] = blank
            if isinstance(exc, TypeError):
                raise _Invalid("trade_id", trade_id, exc).error(method) from exc
            raise
        bodies[trade_id] = body
        jr.end = stop
        jr.seq = seq
        jr.last = (seq, counts)
        jr.records += 1
        jr.live += change
        jr.after_change(self)

    def _journaled_pop(self, jr: _jf.Writer, key: Any, counter: str | None) -> WorkingOrder | None:
        with jr.lock:
            return self._journaled_pop_locked(jr, key, counter)

    def _journaled_pop_locked(
        self, jr: _jf.Writer, key: Any, counter: str | None
    ) -> WorkingOrder | None:
        try:
            body = _jf.pop_body(key)
        except (TypeError, ValueError):
            return None  # an id the journal cannot write was never registered
        working = self._working
        if key not in working:
            return None
        counts = _jf._counts(self)
        if counter is not None:
            counts[COUNTER_KEYS.index(counter)] += 1
        head, payload, start, stop, blank = jr.prepare(_jf.POP, counts, body)
        bodies, counters, mm, seq = jr.bodies, self.counters, jr.mm, jr.seq + 1
        old = bodies.get(key)
        removed = 0 if old is None else _jf.frame_len(len(old))
        assert mm is not None
        mm[start : start + 8] = head
        mm[start + 8 : stop] = payload
        try:
            jr.synced(start, stop)
        except BaseException:
            mm[start:stop] = blank
            raise
        # Nothing is called from the record to the end of the change.
        wo = working[key]
        del working[key]
        if key in bodies:
            del bodies[key]
        if counter is not None:
            counters[counter] = counters[counter] + 1
        jr.end = stop
        jr.seq = seq
        jr.last = (seq, counts)
        jr.records += 1
        jr.live -= removed
        jr.after_change(self)
        return wo

    def _journal_attach(
        self,
        fd: int,
        path: str,
        sync: str,
        group_ms: float | None,
        file_id: bytes,
        times: Callable[[], tuple[float, float]] | None = None,
        compact_bytes: int | None = None,
    ) -> None:
        """Take over the locked descriptor ``fd`` of the journal at ``path``, write
        the registry there as a snapshot, and journal every change."""
        try:
            if self._journal is not None:
                raise RuntimeError("Journal.attach(): the router already has a journal attached")
            if sync not in ("process", "power") or (
                group_ms is not None and (sync != "power" or not (0.0 < group_ms < 3.6e6))
            ):
                raise ValueError(f"Journal() got an invalid sync/group_ms: {sync!r}, {group_ms!r}")
            config = _jf.config_body(self._config)
            now = self._now("attach")
            wall, boot = (float(t) for t in times()) if times is not None else _jf.now()
            bodies = {}
            for key, wo in list(self._working.items()):
                _jf.pop_body(key)
                bodies[key] = _jf.order_body(wo, now, wall, boot)
        except BaseException:
            import os

            os.close(fd)
            raise
        fixed = None if times is None else (wall, boot)
        self._journal = _jf.Writer(
            fd, path, sync, group_ms, file_id, times, fixed, config, _jf._counts(self), bodies,
            _jf.CHUNK if compact_bytes is None else compact_bytes,
        )  # fmt: skip

    def _journal_detach(self) -> bool:
        jr, self._journal = self._journal, None
        if jr is None:
            return False
        jr.close()
        return True

    def _journal_bytes(self) -> bytes | None:
        jr = self._journal
        return None if jr is None else jr.data()

    def _journal_sync(self) -> None:
        jr = self._journal
        if jr is None:
            from .errors import JournalError

            raise JournalError("no journal attached")
        now = self._now("sync")
        wall, boot = jr.times()
        bodies = {k: _jf.order_body(wo, now, wall, boot) for k, wo in list(self._working.items())}
        with jr.lock:
            jr.config = _jf.config_body(self._config)
            jr.rewrite(_jf._counts(self), bodies)

    def _journal_stats(self) -> dict[str, Any] | None:
        jr = self._journal
        return None if jr is None else jr.stats()

    def _key(self, trade_id: Any, method: str) -> Hashable:
        try:
            return _hashable(trade_id, "trade_id")
        except _Invalid as bad:
            raise bad.error(method) from bad.cause

    def _pop(self, trade_id: Any, method: str, counter: str | None = None) -> WorkingOrder | None:
        """Remove the order under ``trade_id`` and bump ``counter`` (recorded with the change)."""
        key = self._key(trade_id, method)
        jr = self._journal
        if jr is not None:
            return self._journaled_pop(jr, key, counter)
        try:
            wo = self._working.pop(key, None)
        except Exception as exc:
            raise _Invalid("trade_id", trade_id, exc).error(method) from exc
        if wo is not None and counter is not None:
            self._count(counter)
        return wo

    @_bounded
    def working(self, trade_id: Any) -> WorkingOrder | None:
        try:
            return cast(
                "WorkingOrder | None", _lookup(self._working, self._key(trade_id, "working"))
            )
        except _Invalid as bad:
            raise bad.error("working") from bad.cause

    @_bounded
    def working_orders(self) -> list[WorkingOrder]:
        """Working orders in first-registration order."""
        return list(self._working.values())

    @_bounded
    def has_working_entry(self) -> bool:
        return self._first_entry() is not None

    @_bounded
    def expired(self, now: float | None = None) -> list[WorkingOrder]:
        """Working orders whose deadline is at or before ``now`` (default:
        the clock), in first-registration order."""
        t = self._now("expired") if now is None else _real(now, "now", "expired")
        return [wo for wo in list(self._working.values()) if t >= wo.deadline]

    @_bounded
    def note_fill(self, trade_id: Any) -> None:
        wo = self._pop(trade_id, "note_fill", "fills_working")
        if wo is not None:
            self._notify("pop", trade_id, wo)
            self._run_hooks("on_fill", wo, {"trade_id": trade_id})

    @_bounded
    def note_cancel(self, trade_id: Any) -> None:
        wo = self._pop(trade_id, "note_cancel", "cancels")
        if wo is not None:
            self._notify("pop", trade_id, wo)
            self._run_hooks("on_cancel", wo, {"trade_id": trade_id})

    @_bounded
    def clear_working(self, trade_id: Any) -> None:
        wo = self._pop(trade_id, "clear_working")
        if wo is not None:
            self._notify("pop", trade_id, wo)

    @_bounded
    def _observe_registry(self, fn: Observer | None) -> Observer | None:
        """Install ``fn(op, trade_id, wo)``, told of every registry change
        (``op`` is "put" or "pop"); None removes it. Returns the one it replaces."""
        if fn is not None and not callable(fn):
            raise TypeError(f"_observe_registry() got an invalid fn: {type(fn).__name__}")
        old, self._observer = self._observer, fn
        return old

    def _notify(self, op: str, trade_id: Any, wo: WorkingOrder) -> None:
        if self._observer is not None:
            self._observer(op, trade_id, wo)

    # ── state export and restore ─────────────────────────────────────────────

    @_bounded
    def export_state(self) -> dict[str, Any]:
        """This router's state as a versioned, JSON-serialisable dict."""
        return _state.export_state(self)

    @classmethod
    def from_state(
        cls,
        state: Mapping[str, Any],
        config: ExecConfig | None = None,
        *,
        logger: Any = None,
        clock: Callable[[], float] | None = None,
    ) -> ExecutionRouter:
        """Rebuild a router from ``export_state()`` output."""
        return _state.from_state(cls, ExecutionPlan, state, config, logger=logger, clock=clock)

    # ── miss and escalation policy ───────────────────────────────────────────

    @_bounded
    def entry_miss_action(self, wo: WorkingOrder) -> str:
        """What to do with an expired working entry, once the runtime has
        cancelled its quote: a ``MissAction``."""
        if not isinstance(wo, WorkingOrder):
            raise TypeError(f"entry_miss_action() got an invalid wo: {type(wo).__name__}")
        mode = self.config.entry_miss
        if mode == "skip":
            action = MissAction.SKIP
        elif mode == "market":
            action = MissAction.MARKET
        elif wo.retries_left > 0:
            action = MissAction.RETRY
        elif self.config.retry_exhaust == "market":
            action = MissAction.MARKET
        else:
            action = MissAction.SKIP
        self._count(f"entry_miss_{action}")
        self._run_hooks("on_miss", wo, {"action": action})
        return action

    @_bounded
    def retry_plan(self, wo: WorkingOrder, *, reference_price: Any) -> tuple[Any, ExecutionPlan]:
        """A fresh quote for a retried entry, under a new trade id."""
        if not isinstance(wo, WorkingOrder):
            raise TypeError(f"retry_plan() got an invalid wo: {type(wo).__name__}")
        n = wo.retry_n + 1
        new_tid = f"{_base_label(wo, 'retry_plan')}-r{n}"
        try:  # the helpers, not the methods: one nesting level, as native
            side = _order_side("ENTER", wo.side)
        except _Invalid as bad:
            raise bad.error("order_side") from bad.cause
        try:
            price = self._maker_price(wo.asset, side, reference_price)
        except _Invalid as bad:
            raise bad.error("maker_price") from bad.cause
        metadata = {"retry_n": n, "base_trade_id": wo.base_trade_id}
        if not price > 0.0:
            return new_tid, ExecutionPlan(
                action="ENTER", reason="retry_price_insane_market", metadata=metadata
            )
        return new_tid, ExecutionPlan(
            order_type="LIMIT",
            limit_price=price,
            post_only=self.config.post_only,
            ttl_s=self.config.entry_ttl_s,
            is_maker=True,
            action="ENTER",
            reason=f"maker_entry_retry_{n}",
            metadata=metadata,
        )

    @_bounded
    def market_fallback_plan(self, wo: WorkingOrder) -> tuple[Any, ExecutionPlan]:
        """MARKET after a missed or escalated quote. An entry gets a fresh
        ``-m`` trade id; an exit keeps its trade id (same position)."""
        if not isinstance(wo, WorkingOrder):
            raise TypeError(f"market_fallback_plan() got an invalid wo: {type(wo).__name__}")
        if wo.action == "ENTER":
            new_tid = f"{_base_label(wo, 'market_fallback_plan')}-m"
            self._run_hooks("on_escalate", wo, {"to": "MARKET"})
            plan = ExecutionPlan(
                action="ENTER",
                reason="entry_miss_market_fallback",
                metadata={"base_trade_id": wo.base_trade_id},
            )
            return new_tid, plan
        self._count("exit_escalations")
        self._run_hooks("on_escalate", wo, {"to": "MARKET"})
        plan = ExecutionPlan(
            action="EXIT",
            reason="exit_ttl_market_fallback",
            metadata={"base_trade_id": wo.base_trade_id},
        )
        return wo.trade_id, plan

    # ── observability ────────────────────────────────────────────────────────

    @_bounded
    def snapshot(self) -> dict[str, Any]:
        working = list(self._working.values())
        return {
            "style": self.config.style,
            "working": [
                {
                    "trade_id": wo.trade_id,
                    "action": wo.action,
                    "asset": wo.asset,
                    "age_s": round(self._now("snapshot") - wo.submitted_at, 3),
                    "retry_n": wo.retry_n,
                }
                for wo in working
            ],
            "counters": self._counters_copy(),
        }


def _order_side(action: Any, position_side: Any) -> str:
    position = _upper(position_side, "position_side")
    if _upper(action, "action") == "EXIT":
        return "SELL" if position == "LONG" else "BUY"
    return "BUY" if position == "LONG" else "SELL"


def _base_label(wo: WorkingOrder, method: str) -> str:
    try:
        return _text(wo.base_trade_id, "base_trade_id")
    except _Invalid as bad:
        raise bad.error(method) from bad.cause


def _safe_repr(value: object) -> str:
    try:
        return repr(value)
    except Exception:
        return f"<{type(value).__name__}>"
