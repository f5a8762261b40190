"""A router's state as a versioned, JSON-serialisable dict, and back.

Times are exported in wall-clock seconds (``time.time()``), so a state
survives a restart whose monotonic clock has a new origin: an order whose TTL
ran out while the process was down comes back already expired.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol, TypeVar

from .config import ExecConfig
from .constants import COUNTER_KEYS
from .errors import ExecRouterError

__all__ = ["FORMAT", "VERSION", "StateError", "export_state", "from_state"]

FORMAT = "exec_router.state"
VERSION = 1

_ORDER_KEYS = (
    "trade_id",
    "asset",
    "position_side",
    "action",
    "plan",
    "submitted_at",
    "deadline",
    "retries_left",
    "base_trade_id",
    "retry_n",
)


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_SCALARS = frozenset({str, int, float, bool, type(None)})


class StateError(ExecRouterError, ValueError):
    """A state that this version of exec_router cannot restore."""


class _Router(Protocol):
    config: Any
    counters: Any

    def __init__(self, config: Any = ..., *, logger: Any = ..., clock: Any = ...) -> None: ...

    @property
    def clock(self) -> Callable[[], Any]: ...

    def working_orders(self) -> list[Any]: ...

    def register_working(
        self,
        *,
        trade_id: Any,
        asset: Any,
        position_side: Any,
        plan: Any,
        base_trade_id: Any = ...,
        retry_n: Any = ...,
    ) -> Any: ...


R = TypeVar("R", bound=_Router)


def _json(value: Any, where: str) -> Any:
    """``value`` if it survives a JSON round trip unchanged, else TypeError."""
    if type(value) in _SCALARS or (type(value) is dict and not value):
        return value
    try:
        same = json.loads(json.dumps(value)) == value
    except (TypeError, ValueError, RecursionError):
        same = False
    if not same and not (isinstance(value, float) and math.isnan(value)):
        raise TypeError(f"export_state(): {where} is not JSON-serialisable: {value!r:.80}")
    return value


def _clock_reading(router: _Router) -> float:
    """A reading of ``router.clock``: a finite number, as the router requires."""
    reading = router.clock()
    if isinstance(reading, bool) or not isinstance(reading, (int, float)):
        raise TypeError(f"clock() returned {type(reading).__name__}, expected a number")
    try:
        value = float(reading)
    except OverflowError:
        value = math.inf
    if not math.isfinite(value):
        raise ValueError(f"clock() returned {value}, expected a finite number")
    return value


def wall_offset(router: _Router) -> float:
    """Seconds to add to a reading of ``router.clock`` to get wall-clock time."""
    return time.time() - _clock_reading(router)


def order_record(wo: Any, offset: float) -> dict[str, Any]:
    """One working order as a JSON-serialisable dict, times in wall-clock seconds."""
    where = f"working order {wo.trade_id!r:.40}"
    plan = {f.name: getattr(wo.plan, f.name) for f in dataclasses.fields(wo.plan)}
    plan["metadata"] = _json(dict(plan["metadata"]), f"{where} plan.metadata")
    return {
        "trade_id": _json(wo.trade_id, f"{where} trade_id"),
        "asset": _json(wo.asset, f"{where} asset"),
        "position_side": wo.side,
        "action": wo.action,
        "plan": plan,
        "submitted_at": wo.submitted_at + offset,
        "deadline": wo.deadline + offset,
        "retries_left": wo.retries_left,
        "base_trade_id": _json(wo.base_trade_id, f"{where} base_trade_id"),
        "retry_n": wo.retry_n,
    }


def export_state(router: _Router) -> dict[str, Any]:
    """``router``'s config, counters and working orders (in registration order)."""
    offset = wall_offset(router)
    config = dataclasses.asdict(router.config)
    return {
        "format": FORMAT,
        "version": VERSION,
        "wall_time": time.time(),
        "config": config,
        "counters": dict(router.counters),
        "working": [order_record(wo, offset) for wo in router.working_orders()],
    }


def _int64(value: Any) -> bool:
    return type(value) is int and _INT64_MIN <= value <= _INT64_MAX


def _seconds(value: Any) -> bool:
    try:
        return type(value) in (int, float) and math.isfinite(value)
    except OverflowError:  # an int beyond float range
        return False


def _check_order(n: int, record: Any) -> None:
    where = f"exec_router state: working order #{n}"
    if not isinstance(record, Mapping):
        raise StateError(f"{where} is not a mapping: {type(record).__name__}")
    missing = [key for key in _ORDER_KEYS if key not in record]
    if missing:
        raise StateError(f"{where} lacks {', '.join(missing)}")
    checks = {
        "action": type(record["action"]) is str and record["action"] in ("ENTER", "EXIT"),
        "position_side": type(record["position_side"]) is str,
        "plan": isinstance(record["plan"], Mapping),
        "submitted_at": _seconds(record["submitted_at"]),
        "deadline": _seconds(record["deadline"]),
        "retries_left": _int64(record["retries_left"]),
        "retry_n": _int64(record["retry_n"]),
    }
    bad = [name for name, ok in checks.items() if not ok]
    if bad:
        raise StateError(f"{where} has an invalid {', '.join(bad)}")


def restore_orders(router: _Router, plan_type: type, records: Iterable[Mapping[str, Any]]) -> None:
    """Register ``records`` (from ``order_record``) on ``router``, in order."""
    offset = wall_offset(router)
    for n, record in enumerate(records):
        _check_order(n, record)
        wo = router.register_working(
            trade_id=record["trade_id"],
            asset=record["asset"],
            position_side=record["position_side"],
            plan=plan_type(**record["plan"]),
            base_trade_id=record["base_trade_id"],
            retry_n=record["retry_n"],
        )
        wo.action = record["action"]
        wo.submitted_at = record["submitted_at"] - offset
        wo.deadline = record["deadline"] - offset
        wo.retries_left = record["retries_left"]


def check_version(state: Mapping[str, Any]) -> None:
    """Refuse anything that is not an exec_router state this version can read."""
    if not isinstance(state, Mapping) or type(state.get("format")) is not str:
        raise StateError(f"not an exec_router state (expected format {FORMAT!r})")
    if state["format"] != FORMAT:
        raise StateError(f"not an exec_router state (expected format {FORMAT!r})")
    version = state.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise StateError(f"exec_router state has an invalid version: {version!r:.40}")
    if version > VERSION:
        raise StateError(
            f"exec_router state version {version} is newer than this exec_router reads "
            f"(up to {VERSION}); upgrade exec_router to restore it"
        )


def from_state(
    router_type: type[R],
    plan_type: type,
    state: Mapping[str, Any],
    config: ExecConfig | None = None,
    *,
    logger: Any = None,
    clock: Any = None,
) -> R:
    """A new ``router_type`` holding ``state``; ``config`` overrides the saved one."""
    check_version(state)
    try:
        saved, records, counters = state["config"], state["working"], state["counters"]
    except KeyError as err:
        raise StateError(f"exec_router state lacks {err}") from None
    if config is None:
        try:
            config = ExecConfig(**saved)
        except (TypeError, ValueError) as err:
            raise StateError(f"exec_router state has a malformed config: {err}") from err
    if not isinstance(counters, Mapping) or not isinstance(records, (list, tuple)):
        raise StateError("exec_router state has malformed counters or working orders")
    bad = [key for key, value in counters.items() if key not in COUNTER_KEYS or not _int64(value)]
    if bad:
        raise StateError(f"exec_router state has invalid counters: {bad!r:.80}")
    router = router_type(config, logger=logger, clock=clock)
    try:
        restore_orders(router, plan_type, records)
    except (TypeError, ValueError, KeyError) as err:
        if isinstance(err, StateError):
            raise
        raise StateError(f"exec_router state has a malformed working order: {err}") from err
    for key, value in counters.items():
        router.counters[key] = value
    return router
