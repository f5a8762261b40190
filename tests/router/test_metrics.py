"""The Prometheus collector, scraped over HTTP from a real prometheus_client server."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from exec_router.constants import COUNTER_KEYS

prometheus_client = pytest.importorskip("prometheus_client")

from prometheus_client import CollectorRegistry, start_http_server  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from exec_router.metrics import RouterCollector  # noqa: E402


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def scrape(registry: CollectorRegistry) -> Iterator[Any]:
    """Start prometheus_client's HTTP server on a free loopback port; stop it after."""
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    url = f"http://127.0.0.1:{server.server_port}/metrics"

    def get() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    try:
        yield get
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    assert not thread.is_alive()


def test_scrape_counters_working_orders_and_age(
    impl: Any, registry: CollectorRegistry, scrape: Any
) -> None:
    now = [100.0]
    router = impl.router(clock=lambda: now[0])
    registry.register(RouterCollector(router, labels={"bot": "pink"}))
    bot = (("bot", "pink"),)

    empty = scrape()
    for key in COUNTER_KEYS:
        assert empty[(f"exec_router_{key}_total", bot)] == 0
    assert empty[("exec_router_working_orders", (("action", "ENTER"), *bot))] == 0
    assert empty[("exec_router_oldest_working_order_age_seconds", bot)] == 0

    entry = router.plan_entry(
        trade_id="t1", asset="BTCUSDT", position_side="LONG", reference_price=65_000.0
    )
    router.register_working(trade_id="t1", asset="BTCUSDT", position_side="LONG", plan=entry)
    now[0] = 103.5
    for tid in ("t2", "t3"):
        tp = router.plan_exit(
            trade_id=tid,
            asset="BTCUSDT",
            position_side="SHORT",
            reference_price=64_000.0,
            reason="TAKE_PROFIT",
        )
        router.register_working(trade_id=tid, asset="BTCUSDT", position_side="SHORT", plan=tp)
    router.note_fill("t3")
    now[0] = 110.0

    seen = scrape()
    assert seen[("exec_router_plans_entry_total", bot)] == 1
    assert seen[("exec_router_maker_exits_total", bot)] == 2
    assert seen[("exec_router_fills_working_total", bot)] == 1
    assert seen[("exec_router_working_orders", (("action", "ENTER"), *bot))] == 1
    assert seen[("exec_router_working_orders", (("action", "EXIT"), *bot))] == 1
    assert seen[("exec_router_oldest_working_order_age_seconds", bot)] == pytest.approx(10.0)

    router.counters["cancels"] = 5  # a live read on every scrape
    assert scrape()[("exec_router_cancels_total", bot)] == 5


def test_one_collector_per_registry(impl: Any, registry: CollectorRegistry) -> None:
    registry.register(RouterCollector(impl.router(), labels={"bot": "a"}))
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        registry.register(RouterCollector(impl.router(), labels={"bot": "b"}))


@pytest.mark.parametrize(
    ("labels", "error"),
    [({"0bad": "x"}, ValueError), ({"action": "x"}, ValueError), ({"bot": 1}, TypeError)],
)
def test_bad_labels_are_refused(impl: Any, labels: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="labels"):
        RouterCollector(impl.router(), labels=labels)
