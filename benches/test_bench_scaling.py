"""How the registry's costs grow: with k due orders, not with n working ones.

``expired(now)`` is timed for k due out of n = 1k … 1M (``BENCH_MAX_N``), and
the duplicate guard (``plan_entry``) and ``plan_exit`` with n working orders.
The pure reference scans its registry, so it stops at ``PURE_MAX_N``.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest

from .conftest import IMPLS, MAX_N, PURE_MAX_N, Impl, timed
from .test_bench_router import entry, exit_, fields, registry

SIZES = [n for n in (1_000, 10_000, 100_000, 1_000_000) if n <= MAX_N]
PURE = next(i for i in IMPLS if i.name == "pure")
INNER = 10


@cache
def shared(impl: Impl, n: int, action: str, due: int) -> Any:
    return registry(impl, n, action, due)


def skip_slow(impl: Impl, n: int) -> None:
    if impl.name == "pure" and n > PURE_MAX_N:
        pytest.skip("the pure reference scans its registry: too slow at this size")


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("k", [1, 10, 100])
def test_expired_k_due_of_n(benchmark: Any, impl: Impl, n: int, k: int) -> None:
    skip_slow(impl, n)
    r = shared(impl, n, "EXIT", 100)
    due = r.expired(1001.0)
    assert len(due) == 100
    # k due: the k-th due deadline is 1001.0 for all; time ``expired`` at a
    # registry holding exactly k due orders by filling the others first.
    for wo in due[k:]:
        r.note_fill(wo.trade_id)
    assert len(r.expired(1001.0)) == k
    expired = r.expired

    def run() -> None:
        for _ in range(INNER):
            expired(1001.0)

    try:
        timed(benchmark, f"scaling: expired(), k={k} due of n", run, impl, INNER, n=n)
    finally:
        for wo in due[k:]:
            r.register_working(
                trade_id=wo.trade_id, asset=wo.asset, position_side=wo.side, plan=wo.plan
            )


@pytest.mark.parametrize("n", SIZES)
def test_duplicate_guard_flat_in_n(benchmark: Any, impl: Impl, n: int) -> None:
    skip_slow(impl, n)
    r = shared(impl, n, "EXIT", 0)
    assert fields(entry(r)) == fields(entry(PURE.router()))
    run = lambda: [entry(r) for _ in range(INNER)]  # noqa: E731
    timed(benchmark, "scaling: plan_entry, n working exits", run, impl, INNER, n=n)


@pytest.mark.parametrize("n", SIZES)
def test_plan_exit_flat_in_n(benchmark: Any, impl: Impl, n: int) -> None:
    skip_slow(impl, n)
    r = shared(impl, n, "EXIT", 0)
    assert fields(exit_(r, "TAKE_PROFIT")) == fields(exit_(PURE.router(), "TAKE_PROFIT"))
    run = lambda: [exit_(r, "TAKE_PROFIT") for _ in range(INNER)]  # noqa: E731
    timed(benchmark, "scaling: plan_exit, n working exits", run, impl, INNER, n=n)
