"""Helpers shared by the behavioural tests: quotes, planning calls, a logger."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

#: The latest time ``expired(now)`` accepts (a ``now`` must be finite): every order is due.
FAR_FUTURE = sys.float_info.max

if TYPE_CHECKING:
    from .conftest import Impl


def maker_plan(impl: Impl, action: str = "ENTER", ttl_s: Any = 5.0, **fields: Any) -> Any:
    """A resting maker LIMIT quote as the runtime would register it.

    Price 100.0, post-only, ``maker_entry`` / ``maker_exit:TAKE_PROFIT`` by
    action; ``fields`` override any ``ExecutionPlan`` field.
    """
    args: dict[str, Any] = {
        "order_type": "LIMIT",
        "limit_price": 100.0,
        "post_only": True,
        "ttl_s": ttl_s,
        "is_maker": True,
        "action": action,
        "reason": "maker_entry" if action == "ENTER" else "maker_exit:TAKE_PROFIT",
    }
    args.update(fields)
    return impl.ExecutionPlan(**args)


def register(
    router: Any, impl: Impl, trade_id: Any, action: str = "ENTER", ttl_s: Any = 5.0
) -> Any:
    """Register a working ``maker_plan`` quote for a LONG BTCUSDT position."""
    return router.register_working(
        trade_id=trade_id,
        asset="BTCUSDT",
        position_side="LONG",
        plan=maker_plan(impl, action, ttl_s),
    )


PLANNED: dict[str, Any] = {"asset": "BTCUSDT", "position_side": "LONG", "reference_price": 65000.0}


def entry_plan(router: Any, trade_id: Any = "T1", **kwargs: Any) -> Any:
    """``router.plan_entry`` with ``PLANNED`` defaults; kwargs override."""
    return router.plan_entry(**{**PLANNED, "trade_id": trade_id, **kwargs})


def exit_plan(router: Any, trade_id: Any = "T1", **kwargs: Any) -> Any:
    """``router.plan_exit`` with ``PLANNED`` defaults and TAKE_PROFIT; kwargs override."""
    return router.plan_exit(**{**PLANNED, "trade_id": trade_id, "reason": "TAKE_PROFIT", **kwargs})


class RecordingLogger:
    """Stands in for ``logging.Logger``; keeps (level, formatted message)."""

    def __init__(self) -> None:
        self.records: list[tuple[str, str]] = []

    @property
    def messages(self) -> list[str]:
        """The formatted messages, in order, whatever their level."""
        return [message for _, message in self.records]

    def warning(self, msg: str, *args: Any) -> None:
        self.records.append(("warning", msg % args))

    def info(self, msg: str, *args: Any) -> None:
        self.records.append(("info", msg % args))

    def error(self, msg: str, *args: Any) -> None:
        self.records.append(("error", msg % args))

    def debug(self, msg: str, *args: Any) -> None:
        self.records.append(("debug", msg % args))
