"""Prometheus metrics for a live router (the ``prometheus`` extra: prometheus-client).

Register one collector per router and registry (a second router in the same process needs
its own ``CollectorRegistry``); every scrape reads the router as it is then::

    from prometheus_client import REGISTRY, start_http_server
    from exec_router.metrics import RouterCollector

    REGISTRY.register(RouterCollector(router, labels={"bot": "pink"}))
    start_http_server(9108, addr="127.0.0.1")

Metrics (each with the given labels):

- ``exec_router_<counter>_total``: the router's 16 counters, as Prometheus counters;
- ``exec_router_working_orders{action="ENTER"|"EXIT"}``: working orders by action;
- ``exec_router_oldest_working_order_age_seconds``: the age of the oldest working order on
  the router's clock (0 when none is working).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .constants import COUNTER_KEYS

__all__ = ["PREFIX", "RouterCollector"]

PREFIX = "exec_router"
_ACTIONS = ("ENTER", "EXIT")
_COUNTER_HELP = {
    "plans_entry": "plan_entry calls",
    "plans_exit": "plan_exit calls",
    "maker_entries": "entry plans returned as maker quotes",
    "maker_exits": "exit plans returned as maker quotes",
    "taker_entries": "entry plans returned as taker orders",
    "taker_exits": "exit plans returned as taker orders",
    "suppressed_dup_enter": "entries suppressed by the duplicate guard",
    "suppressed_dup_exit": "exits suppressed by the duplicate guard",
    "spread_gate_taker": "maker entries refused by the spread gate",
    "entry_miss_skip": "missed entries skipped",
    "entry_miss_retry": "missed entries re-quoted",
    "entry_miss_market": "missed entries sent as MARKET",
    "exit_escalations": "urgent pre-emptions and exit TTL fallbacks",
    "fills_working": "fills of registered working orders",
    "cancels": "cancels of registered working orders",
    "hook_errors": "exceptions raised by hooks",
}


class RouterCollector(Collector):
    """A ``prometheus_client`` collector reading one router's counters and working orders."""

    def __init__(self, router: Any, labels: Mapping[str, str] | None = None) -> None:
        labels = dict(labels or {})
        for name, value in labels.items():
            if not isinstance(name, str) or not name.isidentifier() or name.startswith("__"):
                raise ValueError(f"labels: {name!r} is not a valid Prometheus label name")
            if not isinstance(value, str):
                raise TypeError(f"labels: the value of {name!r} must be str")
            if name == "action":
                raise ValueError("labels: 'action' is reserved for exec_router_working_orders")
        self.router = router
        self._names = list(labels)
        self._values = list(labels.values())

    def describe(self) -> Iterator[Metric]:
        """The metric families, without reading the router (used at registration)."""
        return self._families(None)

    def collect(self) -> Iterator[Metric]:
        return self._families(self.router)

    def _families(self, router: Any) -> Iterator[Metric]:
        counters: dict[str, int] = dict(router.counters) if router is not None else {}
        for key in COUNTER_KEYS:
            family = CounterMetricFamily(
                f"{PREFIX}_{key}", _COUNTER_HELP.get(key, key), labels=self._names
            )
            if router is not None:
                family.add_metric(self._values, counters.get(key, 0))
            yield family

        working = GaugeMetricFamily(
            f"{PREFIX}_working_orders",
            "working (registered, not filled or cancelled) orders, by action",
            labels=[*self._names, "action"],
        )
        oldest = GaugeMetricFamily(
            f"{PREFIX}_oldest_working_order_age_seconds",
            "age of the oldest working order on the router's clock (0 when none)",
            labels=self._names,
        )
        if router is not None:
            orders = router.snapshot()["working"]
            for action in _ACTIONS:
                count = sum(1 for wo in orders if wo["action"] == action)
                working.add_metric([*self._values, action], count)
            oldest.add_metric(self._values, max((wo["age_s"] for wo in orders), default=0.0))
        yield working
        yield oldest
