"""The journal's cost: register_working and note_fill with and without a journal attached.

Each round times ``INNER`` calls on fresh trade ids (a setup outside the
timing empties or fills the registry first). ``journal`` is "off" (no journal),
"NORMAL" (the default: durable against a process crash) or "FULL" (an fsync
per change: durable against power loss).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exec_router.journal import Journal

from .conftest import INNER, Impl

IDS = [f"t{i}" for i in range(INNER)]
ROUNDS = {"off": 200, "NORMAL": 40, "FULL": 5}


@pytest.fixture(params=list(ROUNDS))
def journal(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Journal | None]:
    if request.param == "off":
        yield None
        return
    with Journal(tmp_path / "bench.journal", synchronous=request.param) as j:
        yield j


def setup_router(impl: Impl, journal: Journal | None) -> tuple[Any, Any]:
    r = impl.router()
    plan = r.plan_entry(trade_id="x", asset="BTCUSDT", position_side="LONG", reference_price=6e4)
    fields = {f.name: getattr(plan, f.name) for f in dataclasses.fields(plan)}
    plan = impl.module.ExecutionPlan(**{**fields, "action": "EXIT"})  # a maker exit
    if journal is not None:
        journal.attach(r)
    return r, plan


def mode(journal: Journal | None) -> str:
    return "off" if journal is None else journal.synchronous


def test_register_working(benchmark: Any, impl: Impl, journal: Journal | None) -> None:
    r, plan = setup_router(impl, journal)
    register, clear = r.register_working, r.clear_working

    def empty() -> None:
        for tid in IDS:
            clear(tid)

    def run() -> None:
        for tid in IDS:
            register(trade_id=tid, asset="BTCUSDT", position_side="LONG", plan=plan)

    run()
    assert [wo.trade_id for wo in r.working_orders()] == IDS
    if journal is not None:
        assert [o["trade_id"] for o in journal.state()["working"]] == IDS
    benchmark.group = f"journal: register_working ({impl.name})"
    benchmark.extra_info.update(inner=INNER, impl=impl.name, journal=mode(journal))
    benchmark.pedantic(run, setup=empty, rounds=ROUNDS[mode(journal)], iterations=1)


def test_note_fill(benchmark: Any, impl: Impl, journal: Journal | None) -> None:
    r, plan = setup_router(impl, journal)
    register, fill = r.register_working, r.note_fill

    def full() -> None:
        for tid in IDS:
            register(trade_id=tid, asset="BTCUSDT", position_side="LONG", plan=plan)

    def run() -> None:
        for tid in IDS:
            fill(tid)

    full()
    run()
    assert r.working_orders() == []
    assert r.counters["fills_working"] == INNER
    if journal is not None:
        assert journal.state()["working"] == []
        assert journal.state()["counters"]["fills_working"] == INNER
    benchmark.group = f"journal: note_fill ({impl.name})"
    benchmark.extra_info.update(inner=INNER, impl=impl.name, journal=mode(journal))
    benchmark.pedantic(run, setup=full, rounds=ROUNDS[mode(journal)], iterations=1)
