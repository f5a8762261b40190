"""The journal's cost, per backend and sync mode.

- ``test_register_fill``: ``INNER`` register_working + note_fill pairs on fresh
  trade ids, with no journal ("off") or one attached with ``sync="process"``,
  ``"power"`` (a sync per change) or ``"group"`` (``sync="power", group_ms=2``).
  Compare "process" with "off" in the same run (the issue's target: <= 2x).
- ``test_restore``: ``Journal.restore()`` of a journal of N orders.
- ``test_compacting_call``: the one register_working that crosses the
  compaction threshold, at N live orders (the target: <= 5 ms at 10,000).
  The native core writes the snapshot in a thread; the call pays collecting
  the live bodies and starting it.
- ``test_switching_call``: native, the register_working that finds that
  compaction done and switches files (copies the frames appended meanwhile,
  renames; the process-mode directory sync is left to the thread). Power mode
  also syncs those frames and the directory there: its stats' ``last_switch_s``
  (filling a power-mode log up to the threshold takes minutes).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from exec_router.journal import Journal

from .conftest import INNER, MAX_N, PURE_MAX_N, Impl

IDS = [f"t{i}" for i in range(INNER)]
MODES = {"off": 100, "process": 60, "power": 3, "group": 30}


@pytest.fixture(params=list(MODES))
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def journal_path(tmp_path: Path) -> Path:
    return tmp_path / "bench.journal"


def open_journal(path: Path, mode: str) -> Journal:
    if mode == "process":
        return Journal(path)
    return Journal(path, sync="power", group_ms=2.0 if mode == "group" else None)


def maker_exit(impl: Impl, r: Any) -> Any:
    plan = r.plan_entry(trade_id="x", asset="BTCUSDT", position_side="LONG", reference_price=6e4)
    fields = {f.name: getattr(plan, f.name) for f in dataclasses.fields(plan)}
    return impl.module.ExecutionPlan(**{**fields, "action": "EXIT"})


def pairs(impl: Impl, journal: Journal | None) -> tuple[Any, Callable[[], None]]:
    """A router (journaled by ``journal``) and its loop of ``INNER`` register + fill pairs,
    run once and checked (``journal_ratio.py`` uses it too)."""
    r = impl.router()
    plan = maker_exit(impl, r)
    if journal is not None:
        journal.attach(r)
    register, fill = r.register_working, r.note_fill

    def run() -> None:
        for tid in IDS:
            register(trade_id=tid, asset="BTCUSDT", position_side="LONG", plan=plan)
        for tid in IDS:
            fill(tid)

    run()
    assert r.working_orders() == []
    assert r.counters["fills_working"] == INNER
    return r, run


def test_register_fill(benchmark: Any, impl: Impl, mode: str, journal_path: Path) -> None:
    journal = None if mode == "off" else open_journal(journal_path, mode)
    _, run = pairs(impl, journal)
    if journal is not None:
        replay = journal.replay()
        assert replay.orders == {}
        assert replay.counters["fills_working"] == INNER
    benchmark.group = f"journal: register_working + note_fill ({impl.name})"
    benchmark.extra_info.update(inner=INNER, impl=impl.name, journal=mode)
    benchmark.pedantic(run, rounds=MODES[mode], iterations=1)
    if journal is not None:
        benchmark.extra_info.update(stats=journal.stats())
        journal.close()


def _sizes(impl: Impl, wanted: list[int]) -> list[int]:
    top = MAX_N if impl.name == "native" else min(MAX_N, PURE_MAX_N)
    return [n for n in wanted if n <= top] or [top]


def _journal_of(impl: Impl, path: Path, n: int) -> Any:
    r = impl.router()
    plan = maker_exit(impl, r)
    with Journal(path) as journal:
        for i in range(n):
            r.register_working(trade_id=i, asset="BTCUSDT", position_side="LONG", plan=plan)
        journal.attach(r)  # one snapshot of n orders
    return r


@pytest.mark.parametrize("n", [10_000, 100_000, 1_000_000])
def test_restore(benchmark: Any, impl: Impl, n: int, journal_path: Path) -> None:
    if n not in _sizes(impl, [10_000, 100_000, 1_000_000]):
        pytest.skip(f"{impl.name}: up to {_sizes(impl, [n])[-1]} orders here")
    _journal_of(impl, journal_path, n)
    journal = Journal(journal_path)

    def run() -> Any:
        return journal.restore(router_type=impl.module.ExecutionRouter)

    restored = run()
    assert len(restored.working_orders()) == n
    assert restored.working(n - 1) is not None
    benchmark.group = f"journal: restore ({impl.name})"
    benchmark.extra_info.update(inner=1, impl=impl.name, n=n, bytes=os.path.getsize(journal_path))
    benchmark.pedantic(run, rounds=3 if n < 1_000_000 else 1, iterations=1)
    journal.close()


def _compacting(impl: Impl, n: int, journal_path: Path) -> tuple[Any, Journal, Any, Any, Any]:
    """A router of ``n`` orders, journaled; ``near_threshold()`` registers and clears
    "x" until a register padded to the room left crosses, ``run(padded)`` is that call."""
    r = impl.router()
    plan = maker_exit(impl, r)
    for i in range(n):
        r.register_working(trade_id=i, asset="BTCUSDT", position_side="LONG", plan=plan)
    journal = Journal(journal_path)
    journal.attach(r)
    register, clear = r.register_working, r.clear_working
    size = journal.stats()["bytes"]
    register(trade_id="x", asset="BTCUSDT", position_side="LONG", plan=plan)
    put = journal.stats()["bytes"] - size
    clear("x")
    pair = journal.stats()["bytes"] - size

    fields = {f.name: getattr(plan, f.name) for f in dataclasses.fields(plan)}

    def near_threshold() -> tuple[tuple[Any], dict[str, Any]]:
        """Register and clear "x" until a register padded to the room left crosses
        (no compaction running: the last one is switched to first)."""
        journal._settle()
        clear("x")
        while True:
            stats = journal.stats()
            room = stats["compact_at"] - stats["bytes"]
            if room < put + 2 * pair:
                padded = impl.module.ExecutionPlan(**{**fields, "metadata": {"pad": "z" * room}})
                return (padded,), {}
            for _ in range(max(1, (room - put) // pair // 2)):
                register(trade_id="x", asset="BTCUSDT", position_side="LONG", plan=plan)
                clear("x")

    def run(padded: Any) -> None:
        register(trade_id="x", asset="BTCUSDT", position_side="LONG", plan=padded)

    return r, journal, plan, near_threshold, run


@pytest.mark.parametrize("n", [10_000, 100_000])
def test_compacting_call(benchmark: Any, impl: Impl, n: int, journal_path: Path) -> None:
    if n not in _sizes(impl, [10_000, 100_000]) or (impl.name == "pure" and n > 10_000):
        pytest.skip(f"{impl.name}: not at {n} orders here")
    r, journal, _, near_threshold, run = _compacting(impl, n, journal_path)
    args, _ = near_threshold()
    before = journal.stats()["compactions"]
    run(*args)
    journal._settle()
    assert journal.stats()["compactions"] == before + 1
    assert len(r.working_orders()) == n + 1
    benchmark.group = f"journal: the call that compacts ({impl.name})"
    benchmark.extra_info.update(inner=1, impl=impl.name, n=n)
    benchmark.pedantic(run, setup=near_threshold, rounds=5, iterations=1)
    journal._settle()
    benchmark.extra_info.update(stats=journal.stats())
    journal.close()


@pytest.mark.parametrize("n", [10_000, 100_000])
def test_switching_call(benchmark: Any, impl: Impl, n: int, journal_path: Path) -> None:
    if impl.name != "native" or n not in _sizes(impl, [10_000, 100_000]):
        pytest.skip(f"{impl.name}: compacts synchronously, or not at {n} orders here")
    r, journal, plan, near_threshold, run = _compacting(impl, n, journal_path)

    def compacted() -> tuple[tuple[Any], dict[str, Any]]:
        """A compaction started, its file written: the next change switches."""
        args, _ = near_threshold()
        run(*args)
        while not journal.stats()["compaction_ready"]:
            time.sleep(0.001)
        return (plan,), {}

    def switch(plan: Any) -> None:
        r.clear_working("x")

    args, _ = compacted()
    before = journal.stats()["compactions"]
    switch(*args)
    stats = journal.stats()
    assert stats["compactions"] == before + 1
    assert not stats["compacting"]
    benchmark.group = f"journal: the call that switches files ({impl.name})"
    benchmark.extra_info.update(inner=1, impl=impl.name, n=n)
    benchmark.pedantic(switch, setup=compacted, rounds=5, iterations=1)
    benchmark.extra_info.update(stats=journal.stats())
    journal.close()
