"""Garbage collection: cycles through native objects are found and freed,
and a collection at any allocation never sees a half-built object."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

from ..conftest import Impl


@pytest.fixture
def gc_every_allocation() -> Iterator[None]:
    """Run a collection at (almost) every container allocation."""
    old = gc.get_threshold()
    gc.set_threshold(1, 1, 1)
    try:
        yield
    finally:
        gc.set_threshold(*old)


def cyclic_router(impl: Impl) -> Any:
    """A router reachable only through cycles: hook, working order, metadata."""
    router = impl.router(clock=lambda: 1.0)
    router.register_hook("pre_submit", lambda plan, ctx, r=router: r.snapshot())
    unregister = router.register_hook("on_fill", lambda wo, ctx, r=router: None)
    plan = router.plan_entry(
        trade_id="t", asset="BTCUSDT", position_side="LONG", reference_price=100.0
    )
    plan.metadata["router"] = router
    plan.metadata["unregister"] = unregister
    wo = router.register_working(trade_id="t", asset="BTCUSDT", position_side="LONG", plan=plan)
    wo.asset = router
    return router


def test_routers_in_cycles_are_collected(impl: Impl) -> None:
    gc.collect()
    refs = [weakref.ref(cyclic_router(impl)) for _ in range(2000)]
    gc.collect()
    assert sum(r() is not None for r in refs) <= 10


def test_collection_during_construction_is_safe(impl: Impl, gc_every_allocation: None) -> None:
    config = impl.ExecConfig(style="maker_both")
    for _ in range(300):
        # Empty the dict free list so that allocations really allocate.
        spare = [{} for _ in range(100)]
        impl.ExecutionRouter(config)
        del spare
        router = cyclic_router(impl)
        router.expired(2.0)
        router.snapshot()
        router.note_fill("t")
    gc.collect()


def test_native_router_is_final() -> None:
    from exec_router import _core

    with pytest.raises(TypeError):
        type("Sub", (_core.ExecutionRouter,), {})
