"""Threads: one router shared by several threads, with hooks that re-enter it
and hooks registered and unregistered while they run. Both backends give the
same guarantees (legacy gave none).

The GIL is handed over as often as possible (``sys.setswitchinterval(1e-6)``) so
that router calls, hook dispatch and registry updates interleave. Every thread
uses its own trade ids, so the final counters are exact whatever the
interleaving.
"""

from __future__ import annotations

import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from exec_router.config import ExecConfig

from ..conftest import Impl

THREADS = 8
ROUNDS = 600
LEFT_WORKING = 5  # every fifth round leaves its quote working


@pytest.fixture(autouse=True)
def fast_switching() -> Iterator[None]:
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


class Tally:
    """Thread-safe call counts, by stage."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()

    def add(self, key: str) -> None:
        with self.lock:
            self.counts[key] += 1


class ListLogger:
    """Appends each warning (list.append is atomic)."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def warning(self, msg: str, *args: Any) -> None:
        self.messages.append(msg % args)


def run_threads(work: Callable[[int], None], n: int = THREADS) -> list[BaseException]:
    """Run ``work(t)`` for t in range(n), started together; returns what they raised."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(n)

    def target(t: int) -> None:
        try:
            barrier.wait()
            work(t)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=target, args=(t,)) for t in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a thread is stuck"
    return errors


def make_router(impl: Impl, logger: ListLogger) -> tuple[Any, list[float]]:
    now = [1000.0]
    config = ExecConfig(style="maker_both", entry_ttl_s=8.0, exit_ttl_s=5.0)
    router = impl.ExecutionRouter(config, logger=logger, clock=lambda: now[0])
    return router, now


def test_threads_share_one_router_with_exact_counts(impl: Impl) -> None:
    logger = ListLogger()
    router, now = make_router(impl, logger)
    tally = Tally()
    for stage in ("pre_plan", "pre_submit", "on_working", "on_fill", "on_cancel", "on_miss"):
        router.register_hook(stage, lambda _p, _c, stage=stage: tally.add(stage))

    def failing(_payload: Any, _ctx: dict[str, Any]) -> None:
        raise RuntimeError("fill hook failed")

    router.register_hook("on_fill", failing)
    bad_expiry: list[tuple[float, Any]] = []

    def work(t: int) -> None:
        for i in range(ROUNDS):
            tid = f"T{t}-{i}"
            entry = router.plan_entry(
                trade_id=tid, asset="BTCUSDT", position_side="LONG", reference_price=100.0
            )
            assert entry.is_maker, entry
            assert entry.limit_price == 99.9, entry
            plan = router.plan_exit(
                trade_id=tid,
                asset="ETHUSDT",
                position_side="SHORT",
                reference_price=50.0,
                reason="TAKE_PROFIT",
            )
            assert plan.is_maker, plan
            assert plan.limit_price == 49.99, plan
            wo = router.register_working(
                trade_id=tid, asset="ETHUSDT", position_side="SHORT", plan=plan
            )
            assert router.working(tid) is not None
            dup = router.plan_exit(
                trade_id=tid,
                asset="ETHUSDT",
                position_side="SHORT",
                reference_price=50.0,
                reason="TAKE_PROFIT",
            )
            assert dup.suppress, dup
            assert dup.reason == "working_exit_exists", dup
            urgent = router.plan_exit(
                trade_id=tid,
                asset="ETHUSDT",
                position_side="SHORT",
                reference_price=50.0,
                reason="STOP_LOSS",
            )
            assert urgent.reason == "escalate:STOP_LOSS", urgent
            now[0] += 0.001
            cutoff = now[0]
            for due in router.expired(cutoff):
                if not due.deadline <= cutoff:
                    bad_expiry.append((cutoff, due))
            router.snapshot()
            if i % LEFT_WORKING == LEFT_WORKING - 1:
                continue
            if i % 2:
                router.note_cancel(tid)
            else:
                router.note_fill(tid)
            assert router.working(tid) is None
            assert router.entry_miss_action(wo) == "skip"

    errors = run_threads(work)
    assert errors == []
    assert bad_expiry == []

    total = THREADS * ROUNDS
    left = THREADS * (ROUNDS // LEFT_WORKING)
    resolved = total - left
    fills = THREADS * sum(1 for i in range(ROUNDS) if i % LEFT_WORKING != 4 and i % 2 == 0)
    cancels = resolved - fills
    expected = dict.fromkeys(router.counters, 0)
    expected.update(
        plans_entry=total,
        maker_entries=total,
        plans_exit=3 * total,
        maker_exits=total,
        suppressed_dup_exit=total,
        exit_escalations=total,
        entry_miss_skip=resolved,
        fills_working=fills,
        cancels=cancels,
        hook_errors=fills,
    )
    assert dict(router.counters) == expected
    assert tally.counts == {
        "pre_plan": 4 * total,
        "pre_submit": 3 * total,
        "on_working": total,
        "on_fill": fills,
        "on_cancel": cancels,
        "on_miss": resolved,
    }
    assert len(logger.messages) == fills
    assert all("fill hook failed" in m for m in logger.messages)

    # The registry: exactly the quotes left working, each thread's in its own order.
    working = router.working_orders()
    ids = [wo.trade_id for wo in working]
    kept = [i for i in range(ROUNDS) if i % LEFT_WORKING == LEFT_WORKING - 1]
    assert sorted(ids) == sorted(f"T{t}-{i}" for t in range(THREADS) for i in kept)
    for t in range(THREADS):
        mine = [int(tid.split("-")[1]) for tid in ids if tid.startswith(f"T{t}-")]
        assert mine == kept
    assert all(wo.action == "EXIT" for wo in working)
    assert [router.working(tid).trade_id for tid in ids] == ids
    assert not router.has_working_entry()
    assert [wo.trade_id for wo in router.expired(sys.float_info.max)] == ids
    assert [w["trade_id"] for w in router.snapshot()["working"]] == ids


def test_hooks_reenter_the_router_from_several_threads(impl: Impl) -> None:
    logger = ListLogger()
    router, now = make_router(impl, logger)
    local = threading.local()
    seen: Counter[str] = Counter()
    lock = threading.Lock()
    problems: list[str] = []

    def count(key: str) -> None:
        with lock:
            seen[key] += 1

    def pre_plan(_payload: Any, ctx: dict[str, Any]) -> None:
        snap = router.snapshot()
        router.working_orders()
        if set(snap) != {"style", "working", "counters"}:
            problems.append(f"snapshot keys {sorted(snap)}")
        count("pre_plan")

    def pre_submit(plan: Any, ctx: dict[str, Any]) -> None:
        count("pre_submit")
        if getattr(local, "depth", 0) or ctx["action"] != "ENTER":
            return
        local.depth = 1
        try:
            nested = router.plan_exit(
                trade_id=f"{ctx['trade_id']}-x",
                asset="BTCUSDT",
                position_side="LONG",
                reference_price=100.0,
                reason="STOP_LOSS",
            )
            if nested.reason != "taker_exit:STOP_LOSS":
                problems.append(f"nested plan {nested!r}")
        finally:
            local.depth = 0

    def on_working(wo: Any, ctx: dict[str, Any]) -> None:
        count("on_working")
        found = router.working(ctx["trade_id"])
        if found is None or found.trade_id != wo.trade_id:
            problems.append(f"on_working cannot see {ctx['trade_id']}")
        router.has_working_entry()
        # Churn the hook table from inside a dispatch.
        router.register_hook("on_escalate", lambda _p, _c: count("temporary"))()

    def on_cancel(wo: Any, ctx: dict[str, Any]) -> None:
        count("on_cancel")
        router.note_fill(ctx["trade_id"])  # already gone: a no-op
        if router.working(ctx["trade_id"]) is not None:
            problems.append(f"{ctx['trade_id']} still working in on_cancel")

    router.register_hook("pre_plan", pre_plan)
    router.register_hook("pre_submit", pre_submit)
    router.register_hook("on_working", on_working)
    router.register_hook("on_cancel", on_cancel)

    def work(t: int) -> None:
        for i in range(ROUNDS):
            tid = f"R{t}-{i}"
            entry = router.plan_entry(
                trade_id=tid, asset="BTCUSDT", position_side="LONG", reference_price=100.0
            )
            assert entry.reason == "maker_entry", entry
            plan = impl.ExecutionPlan(
                order_type="LIMIT",
                limit_price=101.0,
                ttl_s=5.0,
                is_maker=True,
                action="EXIT",
                reason="maker_exit:TAKE_PROFIT",
            )
            router.register_working(trade_id=tid, asset="BTCUSDT", position_side="LONG", plan=plan)
            now[0] += 0.001
            router.note_cancel(tid)

    errors = run_threads(work)
    assert errors == []
    assert problems == []
    total = THREADS * ROUNDS
    expected = dict.fromkeys(router.counters, 0)
    expected.update(
        plans_entry=total,
        maker_entries=total,
        plans_exit=total,
        taker_exits=total,
        cancels=total,
    )
    assert dict(router.counters) == expected
    assert seen == {
        "pre_plan": 2 * total,
        "pre_submit": 2 * total,
        "on_working": total,
        "on_cancel": total,
    }
    assert router.working_orders() == []
    assert logger.messages == []


def test_hook_churn_while_threads_plan(impl: Impl) -> None:
    """Two threads register and unregister hooks at every stage while eight
    others trade: no error, exact counters, and every permanent hook runs."""
    logger = ListLogger()
    router, now = make_router(impl, logger)
    tally = Tally()
    stages = ("pre_plan", "pre_submit", "on_working", "on_fill", "on_cancel", "on_miss")
    for stage in stages:
        router.register_hook(stage, lambda _p, _c, stage=stage: tally.add(stage))
    stop = threading.Event()
    churned = [0, 0]

    def churn(c: int) -> None:
        while True:  # at least once, however late this thread starts
            handles = [router.register_hook(s, lambda _p, _c: tally.add("temp")) for s in stages]
            for handle in reversed(handles) if c else handles:
                handle()
            churned[c] += 1
            if stop.is_set():
                return

    def work(t: int) -> None:
        if t >= THREADS:
            churn(t - THREADS)
            return
        try:
            for i in range(ROUNDS):
                tid = f"C{t}-{i}"
                plan = router.plan_exit(
                    trade_id=tid,
                    asset="BTCUSDT",
                    position_side="LONG",
                    reference_price=100.0,
                    reason="TAKE_PROFIT",
                )
                wo = router.register_working(
                    trade_id=tid, asset="BTCUSDT", position_side="LONG", plan=plan
                )
                router.expired(now[0])
                router.has_working_entry()
                router.snapshot()
                if i % 2:
                    router.note_fill(tid)
                else:
                    router.note_cancel(tid)
                router.entry_miss_action(wo)
        finally:
            if t == 0:
                stop.set()

    errors = run_threads(work, THREADS + 2)
    assert errors == []
    assert min(churned) > 0
    total = THREADS * ROUNDS
    expected = dict.fromkeys(router.counters, 0)
    expected.update(
        plans_exit=total,
        maker_exits=total,
        fills_working=total // 2,
        cancels=total // 2,
        entry_miss_skip=total,
    )
    assert dict(router.counters) == expected
    assert {k: v for k, v in tally.counts.items() if k != "temp"} == {
        "pre_plan": total,
        "pre_submit": total,
        "on_working": total,
        "on_fill": total // 2,
        "on_cancel": total // 2,
        "on_miss": total,
    }
    assert router.working_orders() == []
    assert logger.messages == []
